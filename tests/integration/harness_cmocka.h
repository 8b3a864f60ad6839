/*
 * cmocka glue shared by the integration tests: a fixture that gives each test its own harness (and
 * asserts that the test stopped what it started), and the exit assertion that prints the log on failure.
 * Include after <cmocka.h>.
 */
#ifndef SL_TEST_HARNESS_CMOCKA_H
#define SL_TEST_HARNESS_CMOCKA_H

#include <stdlib.h>
#include <sys/wait.h>

#include "harness.h"

static inline int sl_th_setup(void **state)
{
    sl_th_t *th = calloc(1, sizeof *th);
    if (th == NULL || sl_th_init(th, "it") != 0) {
        free(th);
        return -1;
    }
    *state = th;
    return 0;
}

static inline int sl_th_teardown(void **state)
{
    sl_th_t *th = *state;
    bool was_running = th->pid > 0;
    sl_th_cleanup(th);
    free(th);
    assert_false(was_running); /* every test stops what it started */
    return 0;
}

/* The master exits within timeout_ms with exit status want; else fails with the log. */
static inline void sl_th_assert_exit(sl_th_t *th, int timeout_ms, int want)
{
    if (!sl_th_wait(th, timeout_ms))
        fail_msg("sluice still running after %d ms; log:\n%s", timeout_ms, sl_th_log(th));
    if (!WIFEXITED(th->status) || WEXITSTATUS(th->status) != want)
        fail_msg("sluice exited with status 0x%x, want exit %d; log:\n%s", th->status, want, sl_th_log(th));
}

/* The number after `after` on the last log line with tag; fails with the log when there is none. */
static inline uint64_t sl_th_number(sl_th_t *th, const char *tag, const char *after)
{
    uint64_t v = 0;
    if (!sl_th_log_number(th, tag, after, &v))
        fail_msg("no \"%s\" ... \"%s\" in the log:\n%s", tag, after, sl_th_log(th));
    return v;
}

#endif
