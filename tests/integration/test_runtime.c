/*
 * The stage runtime through the real binary: a chain that drains with every sequence number once and in
 * order; fan-in and partitioning across instances; a draining SIGTERM; a worker SIGKILLed mid-stream and
 * restarted without loss.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/sl.h"
#include "harness_cmocka.h"

static void assert_clean_exit(sl_th_t *th, int timeout_ms) { sl_th_assert_exit(th, timeout_ms, 0); }

static void assert_verified(sl_th_t *th, uint64_t events, bool allow_dups)
{
    uint64_t n = sl_th_log_sum(th, "verify: ", "verify: ");
    uint64_t lost = sl_th_log_sum(th, "verify: ", "lost ");
    uint64_t dups = sl_th_log_sum(th, "verify: ", "duplicates ");
    uint64_t bad = sl_th_log_sum(th, "verify: ", "unparseable ");
    if (lost != 0 || bad != 0 || (!allow_dups && dups != 0) || (events && n - dups != events))
        fail_msg("verify: %llu events (want %llu), lost %llu, dups %llu, bad %llu; log:\n%s", (unsigned long long)n,
                 (unsigned long long)events, (unsigned long long)lost, (unsigned long long)dups,
                 (unsigned long long)bad, sl_th_log(th));
}

static void test_chain_drains_in_order(void **state)
{
    sl_th_t *th = *state;
    sl_th_config(th, "pipeline: { name: chain }\n"
                     "sources: [ { name: fleet, type: generator, count: 1_000_000, devices: 500 } ]\n"
                     "stages:\n"
                     "  - { name: a, type: passthrough, from: fleet }\n"
                     "  - { name: b, type: passthrough, from: a }\n"
                     "sinks: [ { name: out, type: null, from: b, verify_sequence: true } ]\n");
    sl_th_start(th, "run", NULL);
    assert_clean_exit(th, 120000);
    assert_verified(th, 1000000, false);
    assert_int_equal(sl_th_log_sum(th, "generated ", "generated "), 1000000);
    assert_non_null(strstr(sl_th_log(th), "pipeline drained"));
}

/* Two generator instances fan in to three relays partitioned by device, which fan in to one sink: every
 * device's events stay in order through the partition. */
static void test_fan_in_and_partition(void **state)
{
    sl_th_t *th = *state;
    sl_th_config(th, "pipeline: { name: fan }\n"
                     "sources: [ { name: fleet, type: generator, count: 600_000, devices: 300, concurrency: 2 } ]\n"
                     "stages:\n"
                     "  - { name: relay, type: passthrough, from: fleet, concurrency: 3,\n"
                     "      dispatcher: partition, partition_by: key }\n"
                     "sinks: [ { name: out, type: null, from: relay, verify_sequence: true } ]\n");
    sl_th_start(th, "run", "-v");
    assert_clean_exit(th, 120000);
    assert_verified(th, 600000, false);
    assert_true(sl_th_worker_pid(th, "fleet#1") > 0);
    assert_true(sl_th_worker_pid(th, "relay#2") > 0);
    assert_int_equal(sl_th_log_count(th, "crashed"), 0);
}

/* SIGTERM during a full-speed run: sources stop, everything accepted reaches the sink, exit 0. */
static void test_sigterm_drains(void **state)
{
    sl_th_t *th = *state;
    sl_th_config(th, "pipeline: { name: drain }\n"
                     "metrics: { summary_interval: 100ms }\n"
                     "sources: [ { name: fleet, type: generator, devices: 100 } ]\n"
                     "stages: [ { name: relay, type: passthrough, from: fleet, concurrency: 2,\n"
                     "            dispatcher: partition, partition_by: key } ]\n"
                     "sinks: [ { name: out, type: null, from: relay, verify_sequence: true } ]\n");
    sl_th_start(th, "run", NULL);
    assert_true(sl_th_wait_flow(th, "fleet out ", 30000));
    kill(th->pid, SIGTERM);
    assert_clean_exit(th, 60000);
    uint64_t generated = sl_th_log_sum(th, "generated ", "generated ");
    assert_true(generated > 0);
    assert_verified(th, generated, false);
    assert_non_null(strstr(sl_th_log(th), "SIGTERM: draining"));
}

/* A relay worker SIGKILLed mid-stream is restarted and resumes at its commit: nothing is lost, and the
 * duplicates it causes are counted. */
static void test_sigkill_worker_restarts_without_loss(void **state)
{
    sl_th_t *th = *state;
    sl_th_config(th, "pipeline: { name: kill }\n"
                     "metrics: { summary_interval: 100ms }\n"
                     "sources: [ { name: fleet, type: generator, devices: 100, rate: 200_000 } ]\n"
                     "stages: [ { name: relay, type: passthrough, from: fleet } ]\n"
                     "sinks: [ { name: out, type: null, from: relay, verify_sequence: true } ]\n");
    sl_th_start(th, "run", "-v");
    assert_true(sl_th_wait_flow(th, "fleet out ", 30000));
    pid_t victim = sl_th_worker_pid(th, "relay#0");
    assert_true(victim > 0);
    assert_int_equal(kill(victim, SIGKILL), 0);
    assert_true(sl_th_wait_log(th, "relay#0: crashed: killed by signal 9", 30000));
    assert_true(sl_th_wait_log(th, "restarts 1", 30000)); /* the summary shows it running again */
    pid_t again = sl_th_worker_pid(th, "relay#0");
    assert_true(again > 0 && again != victim);
    kill(th->pid, SIGTERM);
    assert_clean_exit(th, 60000);
    uint64_t generated = sl_th_log_sum(th, "generated ", "generated ");
    assert_verified(th, generated, true);
}

/* Failed events go to the dead-letter sink and are committed; nothing is lost between the two sinks. */
static void test_dead_letter_routing(void **state)
{
    sl_th_t *th = *state;
    sl_th_config(th, "pipeline: { name: dlq }\n"
                     "sources: [ { name: fleet, type: generator, count: 100_000, devices: 10 } ]\n"
                     "stages:\n"
                     "  - { name: flaky, type: chaos, from: fleet, fail_every: 10, dead_letter: failed }\n"
                     "sinks:\n"
                     "  - { name: out, type: null, from: flaky }\n"
                     "  - { name: failed, type: null }\n");
    sl_th_start(th, "run", NULL);
    assert_clean_exit(th, 120000);
    uint64_t out = 0, failed = 0;
    assert_true(sl_th_log_number(th, "[out#0] took", "took ", &out));
    assert_true(sl_th_log_number(th, "[failed#0] took", "took ", &failed));
    assert_int_equal(out + failed, 100000);
    assert_int_equal(failed, 10000);
    assert_non_null(strstr(sl_th_log(th), "failed 10000")); /* the summary counts them as failed */
}

/* The slow stage (chaos delay): every event arrives, in order per device, none twice, and the stage says
 * which delay it applies (the figure is parsed from the config, 250us = 250000 ns). */
static void test_chaos_delay_keeps_order(void **state)
{
    sl_th_t *th = *state;
    sl_th_config(th, "pipeline: { name: slow }\n"
                     "sources: [ { name: fleet, type: generator, count: 2000, devices: 7 } ]\n"
                     "stages: [ { name: slow, type: chaos, from: fleet, delay: 250us, max_demand: 50 } ]\n"
                     "sinks: [ { name: out, type: null, from: slow, verify_sequence: true } ]\n");
    sl_th_start(th, "run", NULL);
    assert_clean_exit(th, 120000);
    assert_non_null(strstr(sl_th_log(th), "chaos: holding each event 250000 ns before forwarding it"));
    assert_verified(th, 2000, false); /* the sink counted 2000 events, no gap, no duplicate */
}

/* Records of 2 KB at the default demand (1000, chunks of 500 events = 1 MB) in front of a slow stage: a
 * pass used to take more than the full output ring and the stash could hold, and the relay crashed in a
 * loop ("no space left"). It now takes only what its outputs can hold: no crash, every event once. */
static void test_large_records_before_slow_stage(void **state)
{
    sl_th_t *th = *state;
    sl_th_config(th, "pipeline: { name: big }\n"
                     "sources: [ { name: fleet, type: generator, count: 20000, devices: 50, payload_size: 2000 } ]\n"
                     "stages:\n"
                     "  - { name: relay, type: passthrough, from: fleet }\n"
                     "  - { name: slow, type: chaos, from: relay, delay: 20us }\n"
                     "sinks: [ { name: out, type: null, from: slow, verify_sequence: true } ]\n");
    sl_th_start(th, "run", NULL);
    assert_clean_exit(th, 120000);
    assert_int_equal(sl_th_log_count(th, "crashed"), 0);
    assert_int_equal(sl_th_log_count(th, "no space left"), 0);
    assert_verified(th, 20000, false);
}

/* /metrics serves every instance's counters in Prometheus text; /healthz says 200 ok while all is well. */
static void test_metrics_and_healthz(void **state)
{
    sl_th_t *th = *state;
    sl_th_config(th, "pipeline: { name: m }\n"
                     "metrics: { listen: \"127.0.0.1:0\" }\n"
                     "sources: [ { name: fleet, type: generator, devices: 10, rate: 20_000 } ]\n"
                     "sinks: [ { name: out, type: null, from: fleet } ]\n");
    sl_th_start(th, "run", NULL);
    assert_true(sl_th_wait_log(th, "serving http://127.0.0.1:", 30000));
    uint64_t port = 0;
    assert_true(sl_th_log_number(th, "serving http://127.0.0.1:", "127.0.0.1:", &port));
    assert_true(port > 0 && port < 65536);
    const char *needle = "sluice_events_in_total{pipeline=\"m\",node=\"out\",instance=\"0\"} ";
    uint64_t in = 0, deadline = sl_now_ns() + 30 * SL_NS_PER_S;
    while (in == 0 && sl_now_ns() < deadline) {
        const char *r = sl_th_http_get((int)port, "/metrics");
        assert_non_null(r);
        assert_non_null(strstr(r, "HTTP/1.1 200 OK"));
        assert_non_null(strstr(r, "# TYPE sluice_events_in_total counter"));
        const char *v = strstr(r, needle);
        assert_non_null(v);
        in = strtoull(v + strlen(needle), NULL, 10);
    }
    assert_true(in > 0);
    const char *h = sl_th_http_get((int)port, "/healthz");
    assert_non_null(h);
    assert_non_null(strstr(h, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(h, "\r\n\r\nok\n"));
    assert_non_null(strstr(sl_th_http_get((int)port, "/nope"), "404 Not Found"));
    kill(th->pid, SIGTERM);
    assert_clean_exit(th, 60000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chain_drains_in_order, sl_th_setup, sl_th_teardown),
        cmocka_unit_test_setup_teardown(test_fan_in_and_partition, sl_th_setup, sl_th_teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_drains, sl_th_setup, sl_th_teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_worker_restarts_without_loss, sl_th_setup, sl_th_teardown),
        cmocka_unit_test_setup_teardown(test_dead_letter_routing, sl_th_setup, sl_th_teardown),
        cmocka_unit_test_setup_teardown(test_metrics_and_healthz, sl_th_setup, sl_th_teardown),
        cmocka_unit_test_setup_teardown(test_chaos_delay_keeps_order, sl_th_setup, sl_th_teardown),
        cmocka_unit_test_setup_teardown(test_large_records_before_slow_stage, sl_th_setup, sl_th_teardown),
    };
    return cmocka_run_group_tests_name("runtime", tests, NULL, NULL);
}
