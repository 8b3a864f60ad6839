/*
 * The Kafka sink's allocator settings (sl_sink_kafka_malloc_setup): librdkafka's produce-request buffers
 * come from the heap and stay there when freed, instead of being mapped and unmapped, or trimmed, each time
 * (each page that comes back costs a page fault); small blocks (a message's headers) do not go to
 * fastbins. glibc's own allocator only: under AddressSanitizer the allocator is ASan's and the tests are
 * skipped.
 */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sinks/sinks.h"

#if defined(__SANITIZE_ADDRESS__)
#define SL_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SL_TEST_ASAN 1
#endif
#endif

/* An 8 MiB buffer (a few produce requests' worth) is neither mapped on its own nor given back when freed. */
static void test_malloc_setup_keeps_buffers(void **state)
{
    (void)state;
#ifdef SL_TEST_ASAN
    skip();
#else
    size_t len = 8u << 20;
    sl_sink_kafka_malloc_setup();
    struct mallinfo2 before = mallinfo2();
    volatile unsigned char *p = malloc(len);
    assert_non_null((void *)p);
    memset((void *)p, 1, len);
    struct mallinfo2 held = mallinfo2();
    assert_int_equal(held.hblkhd, before.hblkhd); /* from the heap: glibc's default maps it (over 128 KiB) */
    assert_true(held.arena >= before.arena + len);
    free((void *)p);
    struct mallinfo2 after = mallinfo2();
    assert_int_equal(after.arena, held.arena); /* kept: the default trims a free top over 128 KiB */
    assert_true(after.fordblks >= len);
#endif
}

/* Small blocks freed in a burst (a batch's delivery reports) are not kept in fastbins. */
static void test_malloc_setup_no_fastbins(void **state)
{
    (void)state;
#ifdef SL_TEST_ASAN
    skip();
#else
    sl_sink_kafka_malloc_setup();
    void *p[256];
    for (size_t i = 0; i < 256; i++)
        assert_non_null(p[i] = malloc(48 + i % 3 * 16)); /* the sizes of a message's headers */
    for (size_t i = 0; i < 256; i++)
        free(p[i]);
    assert_int_equal(mallinfo2().fsmblks, 0); /* glibc's default keeps all but a few in fastbins */
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_malloc_setup_keeps_buffers),
                                       cmocka_unit_test(test_malloc_setup_no_fastbins)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
