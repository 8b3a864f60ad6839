/*
 * The latency histogram of metrics.latency: every value lands in a bucket whose bounds hold it and are at
 * most 12.5% apart, buckets are ordered, and quantiles are never below the true value nor more than one
 * bucket above it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "stages/stages.h"

/* The largest value of bucket b, as sl_lat_quantile_us reports it: a histogram with one event there. */
static uint64_t upper(unsigned b)
{
    uint64_t h[SL_LAT_BUCKETS] = {0};
    h[b] = 1;
    return sl_lat_quantile_us(h, 0.5);
}

static void test_buckets(void **state)
{
    unsigned last = 0;
    for (uint64_t us = 0; us < (UINT64_C(1) << 33); us = us < 64 ? us + 1 : us + us / 7 + 1) {
        unsigned b = sl_lat_bucket(us);
        assert_true(b >= last); /* monotonic */
        last = b;
        assert_true(us <= upper(b));
        if (b > 0)
            assert_true(us > upper(b - 1));
        if (us >= 8)
            assert_true((double)upper(b) <= (double)us * 1.125 + 1);
        else
            assert_int_equal(upper(b), us); /* exact below 8 us */
    }
    assert_int_equal(sl_lat_bucket(UINT64_MAX), SL_LAT_BUCKETS - 1);
}

static void test_quantiles(void **state)
{
    uint64_t h[SL_LAT_BUCKETS] = {0};
    assert_int_equal(sl_lat_quantile_us(h, 0.99), 0); /* empty */
    /* 1..10000 us, once each: p50 = 5000, p99 = 9900, p999 = 9990 (true values). */
    for (uint64_t us = 1; us <= 10000; us++)
        sl_lat_add(h, 1000000000 + us * 1000, 1000000000);
    static const struct {
        double q;
        uint64_t truth;
    } cases[] = {{0.5, 5000}, {0.99, 9900}, {0.999, 9990}, {1.0, 10000}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t got = sl_lat_quantile_us(h, cases[i].q);
        assert_true(got >= cases[i].truth);
        assert_true((double)got <= (double)cases[i].truth * 1.125 + 1);
    }
    /* An acknowledgement stamped before its ingest time (clocks of two processes) counts as 0. */
    memset(h, 0, sizeof h);
    sl_lat_add(h, 1000, 5000);
    assert_int_equal(h[0], 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_quantiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
