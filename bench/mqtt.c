/*
 * bench/run mqtt: sluice ingesting from a local mosquitto into a null sink, against a raw Paho MQTTAsync
 * subscriber that only counts, on the same broker in the same run, at QoS 0 and QoS 1, in two modes:
 *  - live: the subscriber is connected and a publisher sends n messages as fast as it can (the broker is
 *    usually the limit);
 *  - backlog: n messages are queued for an offline persistent session, then the subscriber connects and
 *    drains them (the subscriber is the limit).
 * Payloads are 180-byte JSON objects. sluice's time runs from its connect (backlog) or the publisher's
 * start (live) to the summary line (every 10 ms) that shows the sink has all n; the raw time likewise.
 * Each case prints its runs; the last line is the medians over every case and the peak RSS (VmHWM) summed
 * over the sluice process tree.
 */
#include <MQTTAsync.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/sl.h"
/* The integration tests' helpers (mosquitto on a free port, Paho publishers), compiled in: benchmarks are
 * one file each. */
#include "tests/integration/harness.c"

typedef struct bench_s {
    const char *sluice;
    uint64_t n;
    int runs, concurrency;
    sl_th_t th;
    sl_th_mosq_t mq;
    char url[64];
} bench_t;

static _Atomic uint64_t raw_count;

static int raw_arrived(void *ctx, char *topic, int tl, MQTTAsync_message *m)
{
    atomic_fetch_add_explicit(&raw_count, 1, memory_order_relaxed);
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

static _Atomic int raw_state; /* 0 connecting, 1 subscribed */
static int raw_qos;
static void raw_sub_ok(void *c, MQTTAsync_successData *r) { atomic_store(&raw_state, 1); }
static void raw_conn_ok(void *c, MQTTAsync_successData *r)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = raw_sub_ok;
    MQTTAsync_subscribe(*(MQTTAsync *)c, "bench/#", raw_qos, &ro);
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Connects client id with a persistent session (or a clean one, which discards it) and subscribes at
 * qos; returns the client. */
static MQTTAsync raw_connect(bench_t *b, const char *id, int qos, bool clean)
{
    static MQTTAsync cli;
    MQTTAsync_create(&cli, b->url, id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
    MQTTAsync_setCallbacks(cli, NULL, NULL, raw_arrived, NULL);
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
    o.cleansession = clean;
    o.keepAliveInterval = 30;
    o.onSuccess = raw_conn_ok;
    o.context = &cli;
    raw_qos = qos;
    atomic_store(&raw_state, 0);
    MQTTAsync_connect(cli, &o);
    for (int i = 0; i < 10000 && atomic_load(&raw_state) != 1; i++)
        pause_ms(1);
    return cli;
}

static void raw_close(MQTTAsync cli)
{
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
    MQTTAsync_disconnect(cli, &d);
    pause_ms(100);
    MQTTAsync_destroy(&cli);
}

static void publish(bench_t *b, int qos)
{
    sl_th_pub_t p = {.url = b->url,
                     .version = 4,
                     .qos = qos,
                     .topic_fmt = "bench/dev-%u/telemetry",
                     .devices = 100,
                     .count = b->n / 100,
                     .pad = 130};
    if (sl_th_publish(&p) != (long)b->n)
        fprintf(stderr, "bench: the publisher did not get every message through\n");
}

typedef struct pubarg_s {
    bench_t *b;
    int qos;
} pubarg_t;

static void *pub_thread(void *arg)
{
    pubarg_t *pa = arg;
    publish(pa->b, pa->qos);
    return NULL;
}

static uint64_t wall_ms(void) { return sl_wall_ns() / SL_NS_PER_MS; }

/* Milliseconds since the epoch of a log line "HH:MM:SS.mmm ..." written today (UTC, as sl_log writes). */
static uint64_t line_ms(const char *line)
{
    int h, m, s, ms;
    if (sscanf(line, "%d:%d:%d.%d", &h, &m, &s, &ms) != 4)
        return 0;
    uint64_t day = wall_ms() / 86400000 * 86400000;
    return day + (uint64_t)(((h * 60 + m) * 60 + s) * 1000 + ms);
}

/* "12", "200.0k", "1.20M" -> the number. */
static double human(const char *p)
{
    char *e;
    double v = strtod(p, &e);
    return *e == 'k' ? v * 1e3 : *e == 'M' ? v * 1e6 : *e == 'G' ? v * 1e9 : v;
}

/* The time of the first log line containing needle, and of the first summary line whose sink count
 * reaches n (0 when not yet). */
static uint64_t log_time(bench_t *b, const char *needle, double n)
{
    const char *log = sl_th_log(&b->th);
    for (const char *l = log; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        const char *eol = strchr(l, '\n');
        const char *hit = strstr(l, needle);
        if (hit == NULL || (eol && hit > eol))
            continue;
        if (n <= 0 || human(hit + strlen(needle)) >= n)
            return line_ms(l);
    }
    return 0;
}

static void wipe_session(bench_t *b, const char *id)
{
    MQTTAsync cli = raw_connect(b, id, 0, true);
    raw_close(cli);
}

static long rss_tree_kb(pid_t pid)
{
    char path[64], line[128];
    long kb = 0;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb += atol(line + 6);
    if (f)
        fclose(f);
    pid_t kids[64];
    size_t n = sl_th_children(pid, kids, 64);
    for (size_t i = 0; i < n; i++)
        kb += rss_tree_kb(kids[i]);
    return kb;
}

static void sluice_config(bench_t *b, int qos, int concurrency)
{
    sl_th_config(&b->th,
                 "pipeline: { name: bench }\n"
                 "metrics: { summary_interval: 10ms }\n"
                 "sources:\n"
                 "  - { name: mq, type: mqtt, urls: \"%s\", client_id: bench-sl, topics: \"bench/#\", qos: %d,\n"
                 "      mqtt_version: \"3.1.1\", concurrency: %d, shared_group: \"%s\", in_flight: 100 }\n"
                 "sinks:\n"
                 "  - { name: out, type: null, from: mq }\n",
                 b->url, qos, concurrency, concurrency > 1 ? "bench" : "");
}

static void sluice_stop(bench_t *b, long *rss)
{
    if (rss)
        *rss = SL_MAX(*rss, rss_tree_kb(b->th.pid));
    kill(b->th.pid, SIGTERM);
    sl_th_wait(&b->th, 60000);
}

static bool sluice_start(bench_t *b)
{
    sl_th_start(&b->th, "run", NULL);
    return sl_th_wait_log(&b->th, "subscribed to", 20000);
}

/* One run of sluice; returns events/s. */
static double run_sluice(bench_t *b, int qos, bool backlog, int concurrency, long *rss)
{
    sluice_config(b, qos, concurrency);
    uint64_t t0 = 0;
    if (backlog) {
        if (!sluice_start(b)) /* creates the session(s) */
            return 0;
        sluice_stop(b, NULL);
        publish(b, qos);
        t0 = 1; /* from the connect line */
    }
    if (!sluice_start(b))
        return 0;
    pthread_t t;
    pubarg_t pa = {b, qos};
    if (!backlog) {
        t0 = wall_ms();
        pthread_create(&t, NULL, pub_thread, &pa);
    } else {
        t0 = log_time(b, "connected to", 0);
    }
    uint64_t t1 = 0;
    for (int i = 0; i < 60000 && (t1 = log_time(b, " out in ", (double)b->n * 0.9995)) == 0; i += 10)
        pause_ms(10);
    if (!backlog)
        pthread_join(t, NULL);
    if (t1 == 0) {
        const char *log = sl_th_log(&b->th);
        fprintf(stderr, "bench: sluice did not get all %llu messages; end of its log:\n%s\n", (unsigned long long)b->n,
                log);
    }
    sluice_stop(b, rss);
    for (int k = 0; k < concurrency; k++) {
        char id[64];
        snprintf(id, sizeof id, concurrency > 1 ? "bench-sl-%d" : "bench-sl", k);
        wipe_session(b, id);
    }
    return t1 > t0 ? (double)b->n * 1000.0 / (double)(t1 - t0) : 0;
}

/* One run of the raw counting subscriber; returns events/s. */
static double run_raw(bench_t *b, int qos, bool backlog)
{
    MQTTAsync cli = raw_connect(b, "bench-raw", qos, false);
    pthread_t t;
    pubarg_t pa = {b, qos};
    if (backlog) {
        raw_close(cli);
        publish(b, qos);
    }
    atomic_store(&raw_count, 0);
    uint64_t t0 = sl_now_ns();
    if (backlog)
        cli = raw_connect(b, "bench-raw", qos, false);
    else
        pthread_create(&t, NULL, pub_thread, &pa);
    for (int i = 0; i < 120000 && atomic_load(&raw_count) < b->n; i++)
        pause_ms(1);
    uint64_t dt = sl_now_ns() - t0;
    if (!backlog)
        pthread_join(t, NULL);
    raw_close(cli);
    wipe_session(b, "bench-raw");
    return (double)b->n * 1e9 / (double)dt;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    bench_t b = {.n = 200000, .runs = 3};
    int c;
    while ((c = getopt(argc, argv, "n:r:s:")) != -1) {
        if (c == 'n')
            b.n = strtoull(optarg, NULL, 10) / 100 * 100;
        else if (c == 'r')
            b.runs = atoi(optarg);
        else if (c == 's')
            b.sluice = optarg;
    }
    if (b.sluice == NULL || b.runs < 1 || b.runs > 32 || b.n < 100) {
        fprintf(stderr, "usage: bench_mqtt -s SLUICE [-n MESSAGES] [-r RUNS]\n");
        return 2;
    }
    setenv("SLUICE_BIN", b.sluice, 1);
    if (sl_th_init(&b.th, "bench-mqtt") != 0 ||
        sl_th_mosq_start(&b.th, &b.mq,
                         "max_queued_messages 0\nmax_queued_bytes 0\nqueue_qos0_messages true\n"
                         "max_inflight_messages 100\n") != 0)
        return 1;
    snprintf(b.url, sizeof b.url, "tcp://127.0.0.1:%d", b.mq.port);
    static const struct {
        int qos, conc;
        bool backlog;
        const char *name;
    } cases[] = {{0, 1, false, "live qos0"},
                 {1, 1, false, "live qos1"},
                 {0, 1, true, "backlog qos0"},
                 {1, 1, true, "backlog qos1"},
                 {1, 2, true, "backlog qos1 x2"}};
    long rss = 0;
    double fin_s = 0, fin_r = 0, fin_x = 0;
    const char *only = getenv("SLUICE_BENCH_MQTT_CASE"); /* e.g. "backlog qos1": run that case alone */
    for (size_t k = 0; k < SL_ARRAY_LEN(cases); k++) {
        double vs[32], vr[32], vx[32];
        if (only && strcmp(only, cases[k].name) != 0)
            continue;
        for (int i = 0; i < b.runs; i++) {
            vs[i] = run_sluice(&b, cases[k].qos, cases[k].backlog, cases[k].conc, &rss);
            vr[i] = run_raw(&b, cases[k].qos, cases[k].backlog);
            vx[i] = vr[i] > 0 ? vs[i] / vr[i] : 0;
            printf("mqtt %s run %d: sluice %.0f/s raw %.0f/s ratio %.2f\n", cases[k].name, i + 1, vs[i], vr[i], vx[i]);
            fflush(stdout);
        }
        double ms = median(vs, b.runs), mr = median(vr, b.runs), mx = median(vx, b.runs);
        printf("mqtt %s: median sluice %.0f/s raw %.0f/s ratio %.2f\n", cases[k].name, ms, mr, mx);
        if (k == 3) /* the last line reports the backlog drain at QoS 1, one connection: sluice's own limit */
            fin_s = ms, fin_r = mr, fin_x = mx;
    }
    sl_th_mosq_stop(&b.mq);
    if (!getenv("SLUICE_BENCH_KEEP")) /* keep the logs (sluice, mosquitto) for a look */
        sl_th_cleanup(&b.th);
    printf("mqtt: events_per_s=%.0f raw_events_per_s=%.0f ratio=%.2f peak_rss_kb=%ld\n", fin_s, fin_r, fin_x, rss);
    return 0;
}
