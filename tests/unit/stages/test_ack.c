/*
 * The acknowledgement window: out-of-order acknowledgements commit only over the contiguous prefix, a
 * full window stops intake, and unknown tokens are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "stages/stages_int.h"

static void test_prefix_only(void **state)
{
    sl_ackwin_t w;
    assert_int_equal(sl__ackwin_init(&w, 8, 100), 0);
    assert_int_equal(w.cap, 64);
    uint64_t idx[5];
    for (int i = 0; i < 5; i++)
        idx[i] = sl__ackwin_push(&w, 1000 + 10 * (uint64_t)i);
    assert_int_equal(idx[0], 100);
    uint64_t pos = 0, ev = 0;
    assert_int_equal(sl__ackwin_ack(&w, idx[2]), 0);
    assert_int_equal(sl__ackwin_ack(&w, idx[1]), 0);
    assert_false(sl__ackwin_advance(&w, &pos, &ev)); /* idx[0] still out: nothing moves */
    assert_int_equal(ev, 100);
    assert_int_equal(sl__ackwin_ack(&w, idx[0]), 0);
    assert_true(sl__ackwin_advance(&w, &pos, &ev));
    assert_int_equal(pos, 1020); /* up to and including idx[2] */
    assert_int_equal(ev, 103);
    assert_int_equal(sl__ackwin_ack(&w, idx[0]), SL_EINVAL); /* already committed */
    assert_int_equal(sl__ackwin_ack(&w, 105), SL_EINVAL);    /* never taken */
    assert_int_equal(sl__ackwin_ack(&w, idx[4]), 0);
    assert_false(sl__ackwin_advance(&w, &pos, &ev));
    assert_int_equal(sl__ackwin_ack(&w, idx[3]), 0);
    assert_true(sl__ackwin_advance(&w, &pos, &ev));
    assert_int_equal(pos, 1040);
    assert_int_equal(ev, 105);
    sl__ackwin_free(&w);
}

static void test_full_window_and_wrap(void **state)
{
    sl_ackwin_t w;
    assert_int_equal(sl__ackwin_init(&w, 64, 0), 0);
    uint64_t pos = 0, ev = 0;
    for (uint64_t round = 0; round < 10; round++) {
        uint64_t first = w.next;
        while (!sl__ackwin_full(&w))
            sl__ackwin_push(&w, w.next * 8 + 8);
        assert_int_equal(w.next - w.base, 64);
        /* Acknowledge backwards: only the last one makes it all move. */
        for (uint64_t i = w.next; i-- > first + 1;)
            assert_int_equal(sl__ackwin_ack(&w, i), 0);
        assert_false(sl__ackwin_advance(&w, &pos, &ev));
        assert_int_equal(sl__ackwin_ack(&w, first), 0);
        assert_true(sl__ackwin_advance(&w, &pos, &ev));
        assert_int_equal(ev, w.next);
        assert_int_equal(pos, w.next * 8);
    }
    sl__ackwin_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_only),
        cmocka_unit_test(test_full_window_and_wrap),
    };
    return cmocka_run_group_tests_name("ack", tests, NULL, NULL);
}
