/*
 * Supervision through the real binary: a poison event is quarantined after one replay; a crash loop
 * escalates exactly as configured for each strategy (with the restart order checked); a hang is caught
 * by the watchdog; random SIGKILLs of any worker during a million-event run lose nothing.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/sl.h"
#include "harness_cmocka.h"

/* Offset of the first occurrence of needle at or after from, or -1. */
static long find_from(const char *log, long from, const char *needle)
{
    const char *p = strstr(log + from, needle);
    return p ? (long)(p - log) : -1;
}

/* One event (seq 4242 of the only device) crashes the stage every time: it crashes it twice, is then
 * quarantined to the dead-letter sink, and every other event arrives; the pipeline never stops. */
static void test_poison_quarantined_after_one_replay(void **state)
{
    sl_th_t *th = *state;
    sl_th_config(th, "pipeline: { name: poison }\n"
                     "sources: [ { name: fleet, type: generator, count: 20_000, devices: 1 } ]\n"
                     "stages:\n"
                     "  - { name: flaky, type: chaos, from: fleet, crash_on_payload: \"\\\"seq\\\":4242 \",\n"
                     "      dead_letter: quarantine }\n"
                     "sinks:\n"
                     "  - { name: out, type: null, from: flaky, verify_sequence: true }\n"
                     "  - { name: quarantine, type: null }\n");
    sl_th_start(th, "run", NULL);
    sl_th_assert_exit(th, 60000, 0);
    assert_int_equal(sl_th_log_count(th, "chaos: raising"), 2);
    assert_int_equal(sl_th_log_count(th, "quarantined event 4242 "), 1);
    assert_int_equal(sl_th_number(th, "verify:", "lost "), 1); /* exactly the quarantined one */
    assert_int_equal(sl_th_number(th, "verify:", "verify: ") - sl_th_number(th, "verify:", "duplicates "), 19999);
    assert_int_equal(sl_th_number(th, "[quarantine#0] took", "took "), 1);
}

/*
 * A crash loop on instance k of three (the partition that owns the poison device) with max_restarts 1:
 * the first crash restarts what the strategy says, in start order; the second exceeds the intensity, the
 * group is terminated and escalates, and the root (max_restarts 0) gives up: exit 1, naming the group.
 */
static void crash_loop(sl_th_t *th, const char *strategy)
{
    sl_th_config(th,
                 "pipeline: { name: loop }\n"
                 "supervision: { max_restarts: 0 }\n"
                 "sources: [ { name: fleet, type: generator, devices: 3, rate: 20_000 } ]\n"
                 "stages:\n"
                 "  - { name: flaky, type: chaos, from: fleet, concurrency: 3, crash_on_key: dev-0000001,\n"
                 "      dispatcher: partition, partition_by: key,\n"
                 "      supervision: { strategy: %s, max_restarts: 1, max_seconds: 60s } }\n"
                 "sinks: [ { name: out, type: null, from: flaky } ]\n",
                 strategy);
    sl_th_start(th, "run", "-v");
    sl_th_assert_exit(th, 60000, 1);
    const char *log = sl_th_log(th);
    assert_non_null(strstr(log, "group flaky: more than 1 restarts in 60.0s; terminating its instances"));
    assert_non_null(strstr(log, "supervision gave up on \"flaky\""));
    assert_non_null(strstr(log, "pipeline stopped: supervision gave up on \"flaky\""));
}

static int owner_of_poison(void) { return (int)(sl_hash("dev-0000001", 11) % 3); }

static int starts(sl_th_t *th, int j)
{
    char needle[64];
    snprintf(needle, sizeof needle, "flaky#%d: started as pid", j);
    return sl_th_log_count(th, needle);
}

static void test_one_for_one_restarts_only_the_crashed(void **state)
{
    sl_th_t *th = *state;
    crash_loop(th, "one_for_one");
    int k = owner_of_poison();
    for (int j = 0; j < 3; j++)
        assert_int_equal(starts(th, j), j == k ? 2 : 1);
}

static void test_one_for_all_restarts_all_in_order(void **state)
{
    sl_th_t *th = *state;
    crash_loop(th, "one_for_all");
    for (int j = 0; j < 3; j++)
        assert_int_equal(starts(th, j), 2);
    /* After the first crash: siblings terminated in reverse start order, then all started in order. */
    const char *log = sl_th_log(th);
    long crash = find_from(log, 0, ": crashed: "); /* a signal, or an exit code under ASan */
    assert_true(crash >= 0);
    long prev = crash;
    for (int j = 0; j < 3; j++) {
        char needle[64];
        snprintf(needle, sizeof needle, "flaky#%d: started as pid", j);
        long at = find_from(log, crash, needle);
        assert_true(at > prev);
        prev = at;
    }
    long t2 = find_from(log, crash, "flaky#2: running --terminate--> stopping");
    long t0 = find_from(log, crash, "flaky#0: running --terminate--> stopping");
    int k = owner_of_poison();
    if (k != 2 && k != 0)
        assert_true(t2 >= 0 && t0 > t2);
}

static void test_rest_for_one_restarts_the_rest(void **state)
{
    sl_th_t *th = *state;
    crash_loop(th, "rest_for_one");
    int k = owner_of_poison();
    for (int j = 0; j < 3; j++)
        assert_int_equal(starts(th, j), j >= k ? 2 : 1);
}

/* A stage that stops making progress is killed by the watchdog and recovered; nothing is lost. */
static void test_watchdog_recovers_a_hang(void **state)
{
    sl_th_t *th = *state;
    sl_th_config(th, "pipeline: { name: hang }\n"
                     "sources: [ { name: fleet, type: generator, count: 10_000, devices: 10 } ]\n"
                     "stages:\n"
                     "  - { name: stuck, type: chaos, from: fleet, hang_after: 3000,\n"
                     "      supervision: { watchdog: 300ms, max_restarts: 10 } }\n"
                     "sinks: [ { name: out, type: null, from: stuck, verify_sequence: true } ]\n");
    sl_th_start(th, "run", NULL);
    sl_th_assert_exit(th, 60000, 0);
    assert_true(sl_th_log_count(th, "no heartbeat for") >= 1);
    assert_true(sl_th_log_count(th, "by the watchdog") >= 1);
    assert_int_equal(sl_th_number(th, "verify:", "lost "), 0);
    assert_int_equal(sl_th_number(th, "verify:", "verify: ") - sl_th_number(th, "verify:", "duplicates "), 10000);
}

/* Pacing of the killer (not a wait for a condition): 50-200 ms between kills. */
static void pause_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A million events through source -> chaos -> passthrough -> sink while random workers (any of them,
 * the sink included) are SIGKILLed every 50-200 ms: every sequence number reaches the sink, duplicates
 * are counted and stay within the unacknowledged windows of the kills. */
static void test_random_kills_lose_nothing(void **state)
{
    sl_th_t *th = *state;
    sl_th_config(th,
                 "pipeline: { name: kills }\n"
                 "channels: { max_demand: 1000 }\n" /* the bound on duplicates below */
                 "supervision: { max_restarts: 100_000, max_seconds: 1s }\n"
                 "sources: [ { name: fleet, type: generator, count: 1_000_000, devices: 100, rate: 100_000 } ]\n"
                 "stages:\n"
                 "  - { name: chaos, type: chaos, from: fleet }\n"
                 "  - { name: relay, type: passthrough, from: chaos }\n"
                 "sinks: [ { name: out, type: null, from: relay, verify_sequence: true,\n"
                 "           verify_state: \"%s/verify\" } ]\n",
                 th->dir);
    sl_th_start(th, "run", NULL);
    srand(42);
    int kills = 0;
    uint64_t deadline = sl_now_ns() + 180 * SL_NS_PER_S;
    /* Kill until the source has produced everything, and only workers ("sl:" names): at its exit the
     * master's child may be LeakSanitizer's tracer (under ASan), and shooting it hangs the master. */
    while (th->pid > 0 && !sl_th_wait(th, 0) && sl_now_ns() < deadline &&
           strstr(sl_th_log(th), "generated 1000000 events") == NULL) {
        pause_ms(50 + (unsigned)(rand() % 151));
        pid_t kids[16];
        size_t n = sl_th_children(th->pid, kids, 16);
        if (n > 0 && kill(kids[rand() % (int)n], SIGKILL) == 0)
            kills++;
    }
    sl_th_assert_exit(th, 60000, 0);
    print_message("# %d workers killed\n", kills);
    assert_true(kills >= 10);
    uint64_t n = sl_th_number(th, "verify:", "verify: "), dups = sl_th_number(th, "verify:", "duplicates ");
    uint64_t lost = sl_th_number(th, "verify:", "lost "), generated = sl_th_number(th, "generated ", "generated ");
    if (lost != 0 || n - dups != 1000000 || generated != 1000000)
        fail_msg("lost %llu, unique %llu, generated %llu; log:\n%s", (unsigned long long)lost,
                 (unsigned long long)(n - dups), (unsigned long long)generated, sl_th_log(th));
    assert_true(dups <= (uint64_t)kills * 1000); /* at most max_demand per kill */
}

/* Reaps, as subreaper, every pid in kids within timeout_ms; returns how many are left. */
static size_t reap_all(const pid_t *kids, size_t n, int timeout_ms)
{
    uint64_t deadline = sl_now_ns() + (uint64_t)timeout_ms * SL_NS_PER_MS;
    size_t gone = 0;
    while (gone < n && sl_now_ns() < deadline) {
        int status;
        pid_t r = waitpid(-1, &status, WNOHANG);
        if (r > 0) {
            for (size_t i = 0; i < n; i++)
                gone += kids[i] == r;
            continue;
        }
        pause_ms(5);
    }
    return n - gone;
}

/* The master SIGKILLed: its workers are told (PR_SET_PDEATHSIG), the source stops, the stages drain what
 * the channels hold into the sink, and every worker exits: no orphan keeps running, nothing is lost. */
static void test_master_killed_leaves_no_orphan(void **state)
{
    sl_th_t *th = *state;
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0); /* orphans become ours to reap */
    sl_th_config(th, "pipeline: { name: orphans }\n"
                     "metrics: { summary_interval: 100ms }\n"
                     "sources: [ { name: fleet, type: generator, devices: 100, rate: 200_000 } ]\n"
                     "stages: [ { name: relay, type: passthrough, from: fleet, concurrency: 2,\n"
                     "            dispatcher: partition, partition_by: key } ]\n"
                     "sinks: [ { name: out, type: null, from: relay, verify_sequence: true } ]\n");
    sl_th_start(th, "run", NULL);
    assert_true(sl_th_wait_flow(th, "fleet out ", 30000));
    pid_t kids[16];
    size_t n = sl_th_wait_children(th->pid, kids, 16, 4, 10000);
    assert_int_equal(n, 4);
    kill(th->pid, SIGKILL);
    assert_true(sl_th_wait(th, 10000));
    size_t left = reap_all(kids, n, 30000);
    prctl(PR_SET_CHILD_SUBREAPER, 0);
    if (left > 0) {
        for (size_t i = 0; i < n; i++)
            kill(kids[i], SIGKILL);
        fail_msg("%zu of %zu workers still ran 30 s after the master died; log:\n%s", left, n, sl_th_log(th));
    }
    uint64_t generated = sl_th_number(th, "generated ", "generated ");
    assert_true(generated > 0);
    assert_int_equal(sl_th_number(th, "verify:", "lost "), 0);
    assert_int_equal(sl_th_number(th, "verify:", "verify: ") - sl_th_number(th, "verify:", "duplicates "), generated);
}

/* A stage that cannot drain (it hangs) is SIGKILLed at shutdown_timeout, and the exit status and the log
 * say so. */
static void test_shutdown_deadline_kills_and_says_so(void **state)
{
    sl_th_t *th = *state;
    sl_th_config(th, "pipeline: { name: deadline }\n"
                     "supervision: { shutdown_timeout: 1s }\n"
                     "sources: [ { name: fleet, type: generator, devices: 10, rate: 10_000 } ]\n"
                     "stages: [ { name: stuck, type: chaos, from: fleet, hang_after: 100 } ]\n"
                     "sinks: [ { name: out, type: null, from: stuck } ]\n");
    sl_th_start(th, "run", NULL);
    assert_true(sl_th_wait_log(th, "chaos: hanging after 100 events", 30000));
    kill(th->pid, SIGTERM);
    sl_th_assert_exit(th, 30000, 1);
    assert_non_null(strstr(sl_th_log(th), "stuck#0: still running at the shutdown deadline; SIGKILL"));
    assert_non_null(strstr(sl_th_log(th), "pipeline stopped: the shutdown deadline passed"));
}

/*
 * channels.dir: the master is SIGKILLed while a stage hangs on events it holds. The orphans drain what
 * they can and, past shutdown_timeout, end (even the hung one). A new sluice on the same directory
 * recovers the channels with what they held and delivers it: across both runs nothing is lost. After the
 * clean drain the channel files are gone.
 */
static void test_new_master_recovers_channels(void **state)
{
    sl_th_t *th = *state;
    const char *cfg = "pipeline: { name: recover }\n"
                      "channels: { dir: \"%s/chan\" }\n"
                      "supervision: { shutdown_timeout: 1s }\n"
                      "sources: [ { name: fleet, type: generator, count: 100_000, devices: 10, rate: 50_000 } ]\n"
                      "stages: [ { name: stuck, type: chaos, from: fleet, hang_after: %d } ]\n"
                      "sinks: [ { name: out, type: null, from: stuck, verify_sequence: true,\n"
                      "           verify_state: \"%s/verify\" } ]\n";
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    sl_th_config(th, cfg, th->dir, 30000, th->dir);
    sl_th_start(th, "run", NULL);
    assert_true(sl_th_wait_log(th, "chaos: hanging after 30000 events", 30000));
    pid_t kids[16];
    size_t n = sl_th_wait_children(th->pid, kids, 16, 3, 10000);
    assert_int_equal(n, 3);
    kill(th->pid, SIGKILL);
    assert_true(sl_th_wait(th, 10000));
    size_t left = reap_all(kids, n, 20000);
    prctl(PR_SET_CHILD_SUBREAPER, 0);
    for (size_t i = 0; left && i < n; i++)
        kill(kids[i], SIGKILL);
    assert_int_equal(left, 0);

    sl_th_config(th, cfg, th->dir, 0, th->dir);
    sl_th_start(th, "run", NULL);
    sl_th_assert_exit(th, 60000, 0);
    assert_non_null(strstr(sl_th_log(th), "recovered channel fleet#0>stuck#0: "));
    assert_true(sl_th_number(th, "recovered channel fleet#0>stuck#0: ", "stuck#0: ") > 0);
    /* The generator resumes where the recovered channel says it was, not at zero. */
    assert_true(sl_th_number(th, "resuming the fleet at event ", "at event ") > 30000);
    uint64_t unique = sl_th_number(th, "verify:", "verify: ") - sl_th_number(th, "verify:", "duplicates ");
    assert_int_equal(sl_th_number(th, "verify:", "lost "), 0);
    assert_int_equal(unique, 100000);
    char path[400];
    snprintf(path, sizeof path, "%s/chan/fleet.0~stuck.0.chan", th->dir);
    assert_int_equal(access(path, F_OK), -1); /* a clean drain removes the files */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_poison_quarantined_after_one_replay, sl_th_setup, sl_th_teardown),
        cmocka_unit_test_setup_teardown(test_one_for_one_restarts_only_the_crashed, sl_th_setup, sl_th_teardown),
        cmocka_unit_test_setup_teardown(test_one_for_all_restarts_all_in_order, sl_th_setup, sl_th_teardown),
        cmocka_unit_test_setup_teardown(test_rest_for_one_restarts_the_rest, sl_th_setup, sl_th_teardown),
        cmocka_unit_test_setup_teardown(test_watchdog_recovers_a_hang, sl_th_setup, sl_th_teardown),
        cmocka_unit_test_setup_teardown(test_random_kills_lose_nothing, sl_th_setup, sl_th_teardown),
        cmocka_unit_test_setup_teardown(test_master_killed_leaves_no_orphan, sl_th_setup, sl_th_teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_deadline_kills_and_says_so, sl_th_setup, sl_th_teardown),
        cmocka_unit_test_setup_teardown(test_new_master_recovers_channels, sl_th_setup, sl_th_teardown),
    };
    if (getenv("SLUICE_TEST_FILTER") != NULL) /* e.g. "test_random*": rehearse one case in a loop */
        cmocka_set_test_filter(getenv("SLUICE_TEST_FILTER"));
    return cmocka_run_group_tests_name("supervision", tests, NULL, NULL);
}
