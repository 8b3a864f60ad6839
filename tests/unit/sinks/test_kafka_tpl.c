/*
 * The Kafka sink's topic and key templates: {key}, {topic} and attributes; topic names keep only Kafka's
 * characters; a key that is exactly {key} is passed without a copy; values that do not fit are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sinks/kafka/kafka_int.h"

static void make_event(uint8_t *buf, size_t cap, const char *topic, const char *key, const char *aname,
                       const char *aval, sl_event_t *ev)
{
    memset(buf, 0, cap);
    sl_rec_t *r = (sl_rec_t *)buf;
    size_t tl = strlen(topic), kl = strlen(key), nl = strlen(aname), vl = strlen(aval);
    r->topic_len = (uint16_t)tl, r->key_len = (uint32_t)kl, r->attr_len = (uint32_t)(4 + nl + vl), r->payload_len = 2;
    r->len = (uint32_t)sl_rec_body_len(tl, kl, r->attr_len, 2);
    uint8_t *p = (uint8_t *)(r + 1);
    memcpy(p, topic, tl), p += tl;
    memcpy(p, key, kl), p += kl;
    uint16_t n16 = (uint16_t)nl, v16 = (uint16_t)vl;
    memcpy(p, &n16, 2), memcpy(p + 2, &v16, 2), p += 4;
    memcpy(p, aname, nl), p += nl;
    memcpy(p, aval, vl), p += vl;
    memcpy(p, "{}", 2);
    sl_event_from_rec(ev, r);
}

static void test_expand(void **state)
{
    uint8_t buf[1024];
    sl_event_t ev;
    make_event(buf, sizeof buf, "plant/7/line a", "dev-1", "site", "north/1", &ev);
    sl_ktpl_t t;
    char out[256];
    assert_int_equal(sl__ktpl_compile(&t, "tele-{site}-{topic}"), 0);
    assert_false(t.constant);
    assert_int_equal(sl__ktpl_expand(&t, &ev, true, out, sizeof out), (int)strlen("tele-north_1-plant_7_line_a"));
    assert_string_equal(out, "tele-north_1-plant_7_line_a");
    /* As a key, values stay as they are. */
    assert_true(sl__ktpl_expand(&t, &ev, false, out, sizeof out) > 0);
    assert_string_equal(out, "tele-north/1-plant/7/line a");
    sl__ktpl_free(&t);
    assert_int_equal(sl__ktpl_compile(&t, "{key}"), 0);
    assert_true(t.verbatim_key);
    sl__ktpl_free(&t);
    assert_int_equal(sl__ktpl_compile(&t, "telemetry"), 0);
    assert_true(t.constant && !t.verbatim_key);
    sl__ktpl_free(&t);
    /* A missing attribute expands to nothing; a result that does not fit is refused. */
    assert_int_equal(sl__ktpl_compile(&t, "x{nope}y"), 0);
    assert_int_equal(sl__ktpl_expand(&t, &ev, true, out, sizeof out), 2);
    assert_string_equal(out, "xy");
    sl__ktpl_free(&t);
    assert_int_equal(sl__ktpl_compile(&t, "{topic}"), 0);
    char small[8];
    assert_int_equal(sl__ktpl_expand(&t, &ev, true, small, sizeof small), SL_ERANGE);
    sl__ktpl_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_expand)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
