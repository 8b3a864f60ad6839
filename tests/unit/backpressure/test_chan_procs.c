/*
 * Channels across processes: a forked producer and consumer move 10 million records, every sequence
 * number arriving once and in order; a consumer SIGKILLed mid-stream and replaced receives everything
 * from commit on, so nothing is lost and the duplicates are exactly the unacknowledged window.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "stages/stages.h"

#define TICK (100 * SL_NS_PER_MS)

static bool producer_ready(void *arg) { return !sl_chan_blocked(arg, sl_rec_body_len(0, 0, 0, 148)); }
static bool consumer_ready(void *arg) { return sl_chan_readable(arg); }

/* Child: publishes seq 0..n-1 as 180-byte records (148 payload bytes), in batches, then closes. */
static void produce(sl_chan_t *ch, uint64_t n)
{
    sl_chan_producer_attach(ch);
    uint64_t seq = 0;
    while (seq < n) {
        sl_rec_t *r;
        if (sl_chan_reserve(ch, sl_rec_body_len(0, 0, 0, 148), &r) == 0) {
            r->payload_len = 148;
            r->ingest_ns = seq;
            memcpy((uint8_t *)sl_rec_payload(r) + 140, &seq, sizeof seq);
            sl_chan_push(ch);
            if (++seq % 512 == 0)
                sl_chan_publish(ch);
            continue;
        }
        sl_chan_publish(ch);
        sl_chan_kick(ch);
        sl_bell_wait(sl_chan_producer_bell(ch), producer_ready, ch, TICK);
    }
    sl_chan_close(ch);
    _exit(0);
}

/*
 * Consumes with GenStage demand (1000/500) until EOF, checking that records arrive in order starting at
 * the committed count. Counts each seq in seen[] (shared). If stop_at is non-zero, stops itself with
 * SIGSTOP after taking that many events, mid-chunk, with events taken and not committed. Returns the
 * exit code: 0 ok, 3 out of order, 4 corrupt.
 */
static int consume(sl_chan_t *ch, uint8_t *seen, uint64_t stop_at)
{
    sl_chan_consumer_attach(ch);
    sl_demand_t d;
    sl_demand_init(&d, 1000, 500);
    sl_chan_ask(ch, sl_demand_start(&d, sl_chan_read_events(ch), sl_chan_asked(ch)));
    uint64_t expect = sl_chan_read_events(ch);
    uint64_t in_chunk = 0;
    for (;;) {
        const sl_rec_t *r;
        int rc = sl_chan_next(ch, &r);
        if (rc == 0) {
            uint64_t seq;
            memcpy(&seq, sl_rec_payload(r) + 140, sizeof seq);
            if (seq != expect || r->ingest_ns != seq)
                return 3;
            if (seen)
                seen[seq]++;
            expect++;
            if (stop_at && expect == stop_at)
                raise(SIGSTOP);
            if (++in_chunk == sl_demand_chunk(&d)) {
                sl_chan_commit(ch, sl_chan_read_pos(ch), sl_chan_read_events(ch));
                uint64_t ask = sl_demand_handled(&d, in_chunk);
                if (ask)
                    sl_chan_ask(ch, ask);
                in_chunk = 0;
            }
            continue;
        }
        if (rc == SL_EOF)
            break;
        if (rc != SL_EAGAIN)
            return 4;
        if (in_chunk) { /* nothing more now: handle the partial chunk */
            sl_chan_commit(ch, sl_chan_read_pos(ch), sl_chan_read_events(ch));
            uint64_t ask = sl_demand_handled(&d, in_chunk);
            if (ask)
                sl_chan_ask(ch, ask);
            in_chunk = 0;
        }
        sl_bell_wait(sl_chan_consumer_bell(ch), consumer_ready, ch, TICK);
    }
    sl_chan_commit(ch, sl_chan_read_pos(ch), sl_chan_read_events(ch));
    return 0;
}

static pid_t spawn_producer(sl_chan_t *ch, uint64_t n)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        produce(ch, n);
    return pid;
}

static void assert_exit_ok(pid_t pid)
{
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_ten_million_in_order(void **state)
{
    sl_chan_t *ch;
    assert_int_equal(sl_chan_create("procs", 1 << 20, &ch), 0);
    const uint64_t n = 10 * 1000 * 1000;
    pid_t p = spawn_producer(ch, n);
    assert_int_equal(consume(ch, NULL, 0), 0);
    assert_exit_ok(p);
    sl_chan_stat_t st;
    sl_chan_stat(ch, &st);
    assert_int_equal(st.sent, n);
    assert_int_equal(st.commit_events, n);
    assert_true(st.sent <= st.asked);
    sl_chan_destroy(ch);
}

static void test_sigkill_consumer_loses_nothing(void **state)
{
    sl_chan_t *ch;
    assert_int_equal(sl_chan_create("kill", 1 << 18, &ch), 0);
    const uint64_t n = 1000 * 1000;
    uint8_t *seen = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(seen != MAP_FAILED);
    pid_t p = spawn_producer(ch, n);
    const uint64_t stop_at = n / 3 + 137; /* not a chunk boundary */
    pid_t c1 = fork();
    assert_true(c1 >= 0);
    if (c1 == 0)
        _exit(consume(ch, seen, stop_at));
    int status;
    assert_int_equal(waitpid(c1, &status, WUNTRACED), c1);
    assert_true(WIFSTOPPED(status));
    kill(c1, SIGKILL);
    assert_int_equal(waitpid(c1, &status, 0), c1);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    sl_chan_stat_t st;
    sl_chan_stat(ch, &st);
    assert_int_equal(st.read_events, stop_at);
    uint64_t window = st.read_events - st.commit_events;
    assert_true(window >= 1 && window <= 500); /* the event it stopped on was never acknowledged */
    /* The replacement resumes at commit: the unacknowledged window comes again, in order. */
    pid_t c2 = fork();
    assert_true(c2 >= 0);
    if (c2 == 0)
        _exit(consume(ch, seen, 0));
    assert_exit_ok(c2);
    assert_exit_ok(p);
    uint64_t missing = 0, dups = 0;
    for (uint64_t s = 0; s < n; s++) {
        missing += seen[s] == 0;
        dups += seen[s] > 1 ? seen[s] - 1u : 0;
    }
    assert_int_equal(missing, 0);
    assert_int_equal(dups, window);
    munmap(seen, n);
    sl_chan_destroy(ch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ten_million_in_order),
        cmocka_unit_test(test_sigkill_consumer_loses_nothing),
    };
    return cmocka_run_group_tests_name("chan_procs", tests, NULL, NULL);
}
