/*
 * GenStage demand: the exact ask sequence for (max, min) pairs, the bad pairs, restarts, and a producer
 * that can never exceed its grant through a channel driven by the demand state machine.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "stages/stages.h"

/*
 * Drives a consumer that always has events available: takes a chunk (at most max - min and at most what
 * is pending), handles it, and records each new cumulative ask. Returns the number of asks recorded.
 */
static size_t drive(uint32_t max, uint32_t min, uint64_t events, uint64_t *asks, size_t cap)
{
    sl_demand_t d;
    assert_int_equal(sl_demand_init(&d, max, min), 0);
    size_t n = 0;
    asks[n++] = sl_demand_start(&d, 0, 0);
    while (d.taken < events) {
        uint64_t chunk = SL_MIN((uint64_t)sl_demand_chunk(&d), sl_demand_pending(&d));
        assert_true(chunk > 0); /* the consumer always has demand out: it never stalls itself */
        uint64_t ask = sl_demand_handled(&d, chunk);
        if (ask) {
            assert_true(n < cap);
            asks[n++] = ask;
        }
        assert_true(sl_demand_pending(&d) <= max);
    }
    return n;
}

/* GenStage defaults: max 1000, min 500: ask 1000, then 500 more after every 500 handled. */
static void test_ask_sequence_default(void **state)
{
    uint64_t asks[16];
    size_t n = drive(1000, 500, 3000, asks, 16);
    uint64_t want[] = {1000, 1500, 2000, 2500, 3000, 3500, 4000};
    assert_int_equal(n, SL_ARRAY_LEN(want));
    for (size_t i = 0; i < n; i++)
        assert_int_equal(asks[i], want[i]);
}

/* min = 0: take everything asked in one chunk, then ask max again. */
static void test_ask_sequence_min_zero(void **state)
{
    uint64_t asks[16];
    size_t n = drive(10, 0, 30, asks, 16);
    uint64_t want[] = {10, 20, 30, 40};
    assert_int_equal(n, SL_ARRAY_LEN(want));
    for (size_t i = 0; i < n; i++)
        assert_int_equal(asks[i], want[i]);
}

/* min = max - 1: chunks of one event, one more asked after each. */
static void test_ask_sequence_min_max_minus_one(void **state)
{
    uint64_t asks[16];
    size_t n = drive(10, 9, 5, asks, 16);
    uint64_t want[] = {10, 11, 12, 13, 14, 15};
    assert_int_equal(n, SL_ARRAY_LEN(want));
    for (size_t i = 0; i < n; i++)
        assert_int_equal(asks[i], want[i]);
}

/* Uneven arrival: partial chunks count towards the same threshold. (10, 3): chunk 7. */
static void test_partial_chunks(void **state)
{
    sl_demand_t d;
    assert_int_equal(sl_demand_init(&d, 10, 3), 0);
    assert_int_equal(sl_demand_chunk(&d), 7);
    assert_int_equal(sl_demand_start(&d, 0, 0), 10);
    assert_int_equal(sl_demand_handled(&d, 2), 0);  /* pending 8 > 3 */
    assert_int_equal(sl_demand_handled(&d, 4), 0);  /* pending 4 > 3 */
    assert_int_equal(sl_demand_handled(&d, 1), 17); /* pending 3 <= 3: ask back up to 10 pending */
    assert_int_equal(sl_demand_pending(&d), 10);
}

static void test_bad_pairs_rejected(void **state)
{
    sl_demand_t d = {.max = 7, .min = 3, .asked = 5, .taken = 1};
    assert_int_equal(sl_demand_init(&d, 10, 10), SL_EINVAL);
    assert_int_equal(sl_demand_init(&d, 10, 11), SL_EINVAL);
    assert_int_equal(sl_demand_init(&d, 0, 0), SL_EINVAL);
    /* A failed call changes nothing. */
    assert_int_equal(d.max, 7);
    assert_int_equal(d.asked, 5);
    assert_int_equal(sl_demand_init(&d, 1, 0), 0);
}

/* A restarted consumer resumes at the committed count; a grant already given is never taken back. */
static void test_restart_keeps_grant(void **state)
{
    sl_demand_t d;
    assert_int_equal(sl_demand_init(&d, 100, 50), 0);
    assert_int_equal(sl_demand_start(&d, 40, 150), 150);
    assert_int_equal(sl_demand_pending(&d), 110);
    assert_int_equal(sl_demand_start(&d, 40, 0), 140);
}

/* Random demand through a real channel: the producer pushes as fast as it can and never gets past what
 * the consumer asked. */
static void test_producer_never_exceeds_grant(void **state)
{
    sl_chan_t *ch;
    assert_int_equal(sl_chan_create("grant", 1 << 16, &ch), 0);
    sl_chan_producer_attach(ch);
    sl_chan_consumer_attach(ch);
    sl_demand_t d;
    assert_int_equal(sl_demand_init(&d, 37, 11), 0);
    sl_chan_ask(ch, sl_demand_start(&d, 0, 0));
    srand(7);
    uint64_t published = 0, handled = 0;
    for (int round = 0; round < 2000; round++) {
        for (int k = rand() % 64; k > 0; k--) {
            sl_rec_t *r;
            if (sl_chan_reserve(ch, sl_rec_body_len(0, 0, 0, 8), &r) != 0)
                break;
            r->payload_len = 8;
            sl_chan_push(ch);
            published++;
        }
        sl_chan_publish(ch);
        sl_chan_stat_t st;
        sl_chan_stat(ch, &st);
        assert_true(st.sent <= st.asked);
        assert_true(published - handled <= 37);
        uint64_t take = SL_MIN((uint64_t)(rand() % 40), (uint64_t)sl_demand_chunk(&d));
        uint64_t n = 0;
        const sl_rec_t *r;
        while (n < take && sl_chan_next(ch, &r) == 0)
            n++;
        if (n) {
            handled += n;
            sl_chan_commit(ch, sl_chan_read_pos(ch), sl_chan_read_events(ch));
            uint64_t ask = sl_demand_handled(&d, n);
            if (ask)
                sl_chan_ask(ch, ask);
        }
    }
    assert_true(handled > 10000);
    sl_chan_destroy(ch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ask_sequence_default),
        cmocka_unit_test(test_ask_sequence_min_zero),
        cmocka_unit_test(test_ask_sequence_min_max_minus_one),
        cmocka_unit_test(test_partial_chunks),
        cmocka_unit_test(test_bad_pairs_rejected),
        cmocka_unit_test(test_restart_keeps_grant),
        cmocka_unit_test(test_producer_never_exceeds_grant),
    };
    return cmocka_run_group_tests_name("demand", tests, NULL, NULL);
}
