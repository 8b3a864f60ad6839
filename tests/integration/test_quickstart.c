/*
 * The README's main job, bounded: the pipeline scripts/quickstart runs, with its parts as they are
 * (examples/quickstart.yaml unchanged, a real mosquitto with the quickstart's limits, `sluice gen --mqtt`
 * at QoS 1 with malformed payloads, `sluice verify` over the files), for a fixed count of messages instead
 * of until Ctrl-C. Every message the broker confirmed must be in the files (the valid ones in files/, the
 * malformed ones dead-lettered into rejects/): lost 0, duplicates 0, and the counts agree with sluice's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "harness_cmocka.h"

#define QS_COUNT 20000

typedef struct qs_s {
    sl_th_t th; /* first: the harness's teardown takes it */
    sl_th_mosq_t mq;
} qs_t;

static int qs_setup(void **state)
{
    qs_t *q = calloc(1, sizeof *q);
    if (q == NULL || sl_th_init(&q->th, "quickstart") != 0) {
        free(q);
        return -1;
    }
    *state = q;
    return 0;
}

/* Stops the broker by its PID (also when the test failed half-way), then the harness's own teardown. */
static int qs_teardown(void **state)
{
    qs_t *q = *state;
    if (q->mq.pid > 0)
        sl_th_mosq_stop(&q->mq);
    return sl_th_teardown(state); /* frees q: th is its first member */
}

typedef struct taken_s {
    int port;
    uint64_t want;
} taken_t;

/* The source took want events and no sink has any queued: then the drain writes nothing more. */
static bool all_taken(void *arg)
{
    const taken_t *t = arg;
    uint64_t took = 0, queued = 1;
    return sl_th_metric(t->port, "events_out_total", "fleet", &took) == 0 &&
           sl_th_metric(t->port, "queued_events", NULL, &queued) == 0 && took >= t->want && queued == 0;
}

static bool wait_taken(int port, uint64_t want, int timeout_ms)
{
    taken_t t = {port, want};
    return sl_th_until(all_taken, &t, timeout_ms);
}

static void test_quickstart_pipeline(void **state)
{
    qs_t *q = *state;
    sl_th_t *th = &q->th;
    /* The quickstart broker's limits (scripts/quickstart): a Receive Maximum of 1000, unbounded queues. */
    assert_int_equal(
        sl_th_mosq_start(th, &q->mq, "max_inflight_messages 1000\nmax_queued_messages 0\nmax_queued_bytes 0\n"), 0);
    char url[64], metrics[64], cfg[512], files[300], rejects[300];
    int mport = sl_th_free_port();
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", q->mq.port);
    snprintf(metrics, sizeof metrics, "127.0.0.1:%d", mport);
    snprintf(cfg, sizeof cfg, "%s/examples/quickstart.yaml", getenv("SLUICE_SRC") ? getenv("SLUICE_SRC") : ".");
    snprintf(files, sizeof files, "%s/files", th->dir);
    snprintf(rejects, sizeof rejects, "%s/rejects", th->dir);
    setenv("SLUICE_MQTT_URL", url, 1);
    setenv("SLUICE_METRICS", metrics, 1);
    setenv("SLUICE_QUICKSTART_DIR", th->dir, 1);
    const char *run[] = {"run", "-c", cfg, NULL};
    sl_th_start_argv(th, run);
    if (!sl_th_wait_log(th, "subscribed to 1 filter", 30000))
        fail_msg("sluice did not subscribe; log:\n%s", sl_th_log(th));

    sl_th_t gen = *th; /* gen's own log */
    snprintf(gen.log, sizeof gen.log, "%s/gen.log", th->dir);
    gen.pid = 0;
    const char *gen_args[] = {"gen",     "--mqtt", url,     "--devices", "200",         "--rate", "5000",
                              "--count", "20000",  "--qos", "1",         "--malformed", "0.002",  NULL};
    int gen_rc = sl_th_run_argv(&gen, gen_args, 120000);
    char gen_out[1024];
    snprintf(gen_out, sizeof gen_out, "%s", sl_th_log(&gen));
    uint64_t published = 0, confirmed = 0, malformed = 0;
    const char *p = strstr(gen_out, "published ");
    if (gen_rc != 0 || p == NULL ||
        sscanf(p, "published %lu messages (%lu malformed, %lu confirmed", &published, &malformed, &confirmed) != 3)
        fail_msg("gen exited %d: %s", gen_rc, gen_out);
    assert_int_equal(published, QS_COUNT);
    assert_int_equal(confirmed, QS_COUNT);
    assert_true(malformed > 0); /* some go to rejects/, so the check covers the dead-letter path too */

    if (!wait_taken(mport, QS_COUNT, 120000))
        fail_msg("sluice did not take the %d messages; log:\n%s", QS_COUNT, sl_th_log(th));
    uint64_t written = 0, rejected = 0;
    assert_int_equal(sl_th_metric(mport, "events_in_total", "files", &written), 0);
    assert_int_equal(sl_th_metric(mport, "events_in_total", "rejects", &rejected), 0);
    assert_int_equal(written + rejected, QS_COUNT);
    assert_int_equal(rejected, malformed);
    kill(th->pid, SIGINT);
    sl_th_assert_exit(th, 60000, 0);

    sl_th_t v = *th;
    snprintf(v.log, sizeof v.log, "%s/verify.log", th->dir);
    v.pid = 0;
    const char *verify[] = {"verify", "--expect", "20000", files, rejects, NULL};
    int vrc = sl_th_run_argv(&v, verify, 60000);
    char want[200];
    snprintf(want, sizeof want, "%d distinct of %d expected, lost 0, duplicates 0, unparseable 0, corrupt 0", QS_COUNT,
             QS_COUNT);
    if (vrc != 0 || strstr(sl_th_log(&v), want) == NULL)
        fail_msg("verify exited %d: %s", vrc, sl_th_log(&v));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_quickstart_pipeline, qs_setup, qs_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
