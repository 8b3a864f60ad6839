/*
 * bench/run overload: a source that cannot be paused, fed at three times what the pipeline can take, and
 * what sluice does about it. The pipeline: mosquitto -> mqtt source (QoS 0) -> chaos stage with `delay`
 * (default 200us per event: a slow stage, at most ~5k events/s, steady whatever the disk does) -> decode ->
 * file sink (sync: none), 1 MiB channels. (An fdatasync-bound sink was the limit before: it moved from 1.6k/s
 * to 10.8k/s with the other agents' disk load, and one publisher could not offer 3x the fast end.)
 *
 *  1. The maximum M: the same pipeline fed by `sluice replay` of n messages as fast as demand allows.
 *  2. For each overflow policy (drop_newest with wait_timeout 100ms, 10ms and 0s, pause with 100ms): `sluice gen
 * --mqtt` publishes QoS 0 at 3 x M for a few seconds (MQTT QoS 0 cannot be slowed by the subscriber: the broker sends,
 * or drops when the client is away or its queue is full). The memory of the sluice process tree is sampled every 50 ms;
 * at the end the source's own counters (received, dropped, pauses, connects) and the sink's sequence check are read
 * from the log.
 *
 * The result line per policy: events_per_s = events the sink took per second (from the first publish to
 * the sink's last event), raw = M, and
 * factor (offered / M: what was really offered, the publisher's achieved rate may fall short of 3 x M),
 * offered (the publisher's achieved rate), published, received by sluice, dropped by sluice (counted),
 * lost elsewhere (published - received: the broker's drops, for a paused client QoS 0 is not queued),
 * pauses, and the sink's lost/duplicates by sequence (every message sluice did not deliver, by any cause).
 */
#include <MQTTAsync.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/common/bench.h"
#include "common/sl.h"
/* The integration tests' helpers (mosquitto on a free port, Paho publishers), compiled in. */
#include "tests/integration/harness.c"

typedef struct ov_s {
    const char *sluice;
    sl_th_t th;
    sl_th_mosq_t mq;
    char url[64];
    const char *delay; /* the chaos stage's per-event delay */
} ov_t;

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t wall_ms(void) { return sl_wall_ns() / SL_NS_PER_MS; }

static void config(ov_t *o, int qos, const char *overflow, const char *wait)
{
    /* A client id and a clean session of its own per policy: nothing queued for another phase reaches it. */
    sl_th_config(
        &o->th,
        "pipeline: { name: bench-overload }\n"
        "metrics: { enabled: false, summary_interval: 10ms }\n"
        "channels: { capacity: 1MiB }\n"
        "sources:\n"
        "  - { name: mq, type: mqtt, urls: \"%s\", client_id: bench-ov-%s-%s, clean_start: true, topics: \"fleet/#\",\n"
        "      qos: %d,"
        "      overflow: %s, wait_timeout: %s, topic_template: \"fleet/{device_id}/telemetry\",\n"
        "      key_from: device_id }\n"
        "stages:\n"
        "  - { name: slow, type: chaos, from: mq, delay: %s }\n"
        "  - { name: decode, type: decode, from: slow }\n"
        "sinks:\n"
        "  - { name: out, type: file, from: decode, dir: '%s/files', path: 'x.ndjson', sync: none,\n"
        "      rotate_size: 64MiB }\n"
        "  - { name: check, type: null, from: decode, verify_sequence: true }\n",
        o->url, overflow, wait, qos, overflow, wait, o->delay, o->th.dir);
}

static bool start(ov_t *o)
{
    sl_th_start(&o->th, "run", NULL);
    return sl_th_wait_log(&o->th, "subscribed to", 20000);
}

static void stop(ov_t *o)
{
    kill(o->th.pid, SIGTERM);
    sl_th_wait(&o->th, 120000);
}

/* The file sink's count in the last summary line and the time of the first line that showed it. */
static double sink_count(ov_t *o, uint64_t *t_ms) { return sl_bench_summary_count(sl_th_log(&o->th), "out", t_ms); }

/* Waits until the sink has n events or made no progress for quiet_ms; returns its count. */
static double await_sink(ov_t *o, double n, int quiet_ms, uint64_t *t_ms)
{
    double got = 0;
    uint64_t seen = wall_ms();
    while (got < n && wall_ms() - seen < (uint64_t)quiet_ms) {
        pause_ms(20);
        double now = sink_count(o, t_ms);
        if (now > got)
            got = now, seen = wall_ms();
    }
    return got;
}

/* The maximum: the same pipeline fed by a replay of n messages as fast as demand allows (`sluice replay`
 * keeps the mqtt source's topic_template and key_from): the chaos stage's delay is the limit (the MQTT
 * source at QoS 0, decode and the file sink take far more here). */
static double measure_max(ov_t *o, uint64_t n)
{
    config(o, 0, "pause", "100ms");
    char cap[300], count[32], files[320];
    snprintf(cap, sizeof cap, "%s/max.cap", o->th.dir);
    snprintf(count, sizeof count, "%llu", (unsigned long long)n);
    snprintf(files, sizeof files, "rm -rf '%s/files'", o->th.dir);
    char *gen[] = {(char *)o->sluice, "gen", "-o", cap, "-n", count, "-d", "100", "-p", "sensor", NULL};
    char *rep[] = {(char *)o->sluice, "replay", cap, "-c", o->th.cfg, "--speed", "max", "-q", NULL};
    sl_bench_proc_t pr;
    if (sl_bench_spawn(gen, NULL, &pr) != 0 || sl_bench_spawn(rep, NULL, &pr) != 0 || system(files) != 0)
        return 0;
    unlink(cap);
    printf("maximum: %llu events replayed through chaos (delay %s) -> decode -> file in %.2f s: %.0f events/s\n",
           (unsigned long long)n, o->delay, pr.secs, (double)n / pr.secs);
    return (double)n / pr.secs;
}

/* The number just before `word` on the line of log that contains `tag` ("... 12 dropped, ..."); 0 if none. */
static unsigned long long before(const char *log, const char *tag, const char *word)
{
    const char *l = strstr(log, tag), *eol = l ? strchr(l, '\n') : NULL, *w = l ? strstr(l, word) : NULL;
    if (w == NULL || (eol && w > eol))
        return 0;
    while (w > l && w[-1] >= '0' && w[-1] <= '9')
        w--;
    return strtoull(w, NULL, 10);
}

static unsigned long long field(const char *log, const char *after, const char *fmt)
{
    const char *p = strstr(log, after);
    unsigned long long v = 0;
    if (p == NULL || sscanf(p + strlen(after), fmt, &v) != 1)
        return 0;
    return v;
}

static int overload(ov_t *o, const char *overflow, const char *wait, double max, double secs)
{
    config(o, 0, overflow, wait);
    char files[300];
    snprintf(files, sizeof files, "rm -rf '%s/files'", o->th.dir);
    if (system(files) != 0 || !start(o))
        return -1;
    double rate = 3 * max;
    char r[32], d[32], out[400];
    snprintf(r, sizeof r, "%.0f", rate);
    snprintf(d, sizeof d, "%.0fs", secs);
    snprintf(out, sizeof out, "%s/gen.out", o->th.dir);
    /* The publisher runs as its own process, timed; sluice's tree is sampled meanwhile. */
    pid_t gen = fork();
    if (gen == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0)
            dup2(fd, 1), dup2(fd, 2);
        execl(o->sluice, o->sluice, "gen", "--mqtt", o->url, "-d", "100", "-r", r, "-t", d, "--qos", "0", (char *)NULL);
        _exit(127);
    }
    sl_bench_proc_t mem = {0};
    uint64_t t0 = sl_now_ns(), w0 = wall_ms();
    int status;
    while (waitpid(gen, &status, WNOHANG) == 0) {
        sl_bench_tree_sample(o->th.pid, &mem);
        pause_ms(50);
    }
    double pub_secs = (double)(sl_now_ns() - t0) / 1e9;
    uint64_t t1;
    double got = await_sink(o, 1e18, 3000, &t1);
    sl_bench_tree_sample(o->th.pid, &mem);
    stop(o);
    const char *log = sl_th_log(&o->th);
    unsigned long long received = before(log, "] mqtt: ", " received"), dropped = before(log, "] mqtt: ", " dropped"),
                       pauses = before(log, "] mqtt: ", " pauses"), connects = before(log, "] mqtt: ", " connects"),
                       lost = field(log, "[check#0] verify: ", "%*u events from %*u devices; lost %llu"),
                       dups =
                           field(log, "[check#0] verify: ", "%*u events from %*u devices; lost %*u, duplicates %llu");
    char gen_text[512] = {0};
    FILE *f = fopen(out, "r");
    if (f) {
        size_t n = fread(gen_text, 1, sizeof gen_text - 1, f);
        gen_text[n] = 0;
        fclose(f);
    }
    unsigned long long published = field(gen_text, "sluice gen: published ", "%llu");
    /* gen paces at `rate` and stops when its -t window ends: published / window is the rate it offered while
     * publishing (49,180 = 9,836/s x 5 s when it keeps up). The process's whole life (start, connect, the
     * wait for its last confirmations: pub_secs) would understate it by ~6%. */
    double offered = secs > 0 ? (double)published / secs : 0;
    /* The sink's rate over the time from the first publish to the summary that showed its last event (the
     * channels hold a backlog that drains after the publisher stops). */
    double sink_secs = t1 > w0 ? (double)(t1 - w0) / 1e3 : pub_secs, sink_rate = sink_secs > 0 ? got / sink_secs : 0;
    double factor = max > 0 ? offered / max : 0;
    printf("overload %s (wait_timeout %s): offered %.0f/s = %.2f x the maximum %.0f/s (asked 3 x = %.0f/s) for "
           "%.1f s: published %llu, sluice "
           "received %llu, dropped %llu (counted), %llu pauses, %llu connects; the file sink took %.0f in %.1f s "
           "(%.0f/s); "
           "sequence check: lost %llu, duplicates %llu; peak RSS %ld kB (one process), PSS %ld kB (all %u)\n",
           overflow, wait, offered, factor, max, rate, pub_secs, published, received, dropped, pauses, connects, got,
           sink_secs, sink_rate, lost, dups, mem.max_rss_kb, mem.pss_kb, mem.nprocs);
    char name[64], extra[400];
    snprintf(name, sizeof name, "overload_%s_wait%s", overflow, wait);
    snprintf(extra, sizeof extra,
             "factor=%.2f offered_per_s=%.0f published=%llu received=%llu dropped_counted=%llu lost_at_broker=%llu "
             "pauses=%llu "
             "delivered=%.0f seq_lost=%llu seq_dups=%llu",
             factor, offered, published, received, dropped, published > received ? published - received : 0, pauses,
             got, lost, dups);
    sl_bench_result(name, sink_rate, max, &mem, extra);
    return received > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    sl_bench_spawner_start();
    ov_t o = {0};
    uint64_t n = 20000;
    double secs = 5;
    int c;
    o.delay = "200us";
    while ((c = getopt(argc, argv, "s:n:t:D:")) != -1) {
        if (c == 's')
            o.sluice = optarg;
        else if (c == 'n')
            n = strtoull(optarg, NULL, 10);
        else if (c == 't')
            secs = atof(optarg);
        else if (c == 'D')
            o.delay = optarg;
    }
    if (o.sluice == NULL || n < 100) {
        fprintf(stderr, "usage: bench_overload -s SLUICE [-n MAX_RUN_MESSAGES] [-t SECONDS] [-D CHAOS_DELAY]\n");
        return 2;
    }
    setenv("SLUICE_BIN", o.sluice, 1);
    /* mosquitto's defaults: QoS 0 is not queued for an absent client, as an operator gets it. */
    if (sl_th_init(&o.th, "bench-overload") != 0 || sl_th_mosq_start(&o.th, &o.mq, "") != 0)
        return 1;
    snprintf(o.url, sizeof o.url, "tcp://127.0.0.1:%d", o.mq.port);
    double max = measure_max(&o, n);
    int rc = max > 0 ? 0 : 1;
    if (rc == 0)
        rc |= overload(&o, "drop_newest", "100ms", max, secs) != 0;
    if (rc == 0)
        rc |= overload(&o, "drop_newest", "10ms", max, secs) != 0;
    if (rc == 0)
        rc |= overload(&o, "drop_newest", "0s", max, secs) != 0;
    if (rc == 0)
        rc |= overload(&o, "pause", "100ms", max, secs) != 0;
    sl_th_mosq_stop(&o.mq);
    if (!getenv("SLUICE_BENCH_KEEP"))
        sl_th_cleanup(&o.th);
    return rc;
}
