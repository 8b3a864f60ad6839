/*
 * bench/run mqtt: sluice ingesting from a local mosquitto into a null sink, against a raw Paho MQTTAsync
 * subscriber that only counts, on the same broker in the same run, at QoS 0 and QoS 1, in two modes:
 *  - live: the subscriber is connected and a publisher sends n messages as fast as it can (the broker is
 *    usually the limit);
 *  - backlog: n messages are queued for an offline persistent session, then the subscriber connects and
 *    drains them (the subscriber is the limit).
 * Payloads are 180-byte JSON objects with a per-device sequence number. Both sides are timed alike: from
 * the publisher's start (live) or from the subscriber's connection (backlog: sluice's "connected to" log
 * line, the raw client's connect callback) to the arrival of the last message (sluice: the first summary
 * line, every 10 ms, whose sink count reached its final value). A side that stops receiving before n (QoS
 * 0 may lose) is timed to its last message after 3 s without progress, and the count is reported. sluice's
 * null sink checks the sequence of every device: lost and duplicated messages are reported per case.
 * Each case ends with a line a script reads (bench/common/bench.h); memory is sampled over the whole
 * sluice process tree just before it stops.
 */
#include <MQTTAsync.h>
#include <mosquitto.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/common/bench.h"
#include "common/sl.h"
#include "sinks/sinks.h"
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

/* The raw side checks each device's sequence as sluice's null sink does (the same work per message, and
 * the same figures: a gap counts as lost, a number below the next expected one as a duplicate), so that
 * a reordering seen on one side can be looked for on the other. Paho calls back on one thread. */
#define RAW_DEVICES 1024
static uint64_t raw_next[RAW_DEVICES], raw_lost, raw_dups;

static void raw_check(const char *p, size_t len)
{
    const char *d = memmem(p, len, "\"dev-", 5);
    uint64_t seq;
    if (d == NULL || sl_sink_null_seq(p, len, &seq) != 0)
        return;
    unsigned long dev = strtoul(d + 5, NULL, 10);
    if (dev >= RAW_DEVICES)
        return;
    if (seq >= raw_next[dev]) {
        raw_lost += seq - raw_next[dev];
        raw_next[dev] = seq + 1;
    } else {
        raw_dups++;
    }
}

static int raw_arrived(void *ctx, char *topic, int tl, MQTTAsync_message *m)
{
    raw_check(m->payload, (size_t)m->payloadlen);
    atomic_fetch_add_explicit(&raw_count, 1, memory_order_relaxed);
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

static _Atomic int raw_state; /* 0 connecting, 1 subscribed */
static _Atomic uint64_t raw_connected_ns;
static int raw_qos;
static void raw_sub_ok(void *c, MQTTAsync_successData *r) { atomic_store(&raw_state, 1); }
static void raw_conn_ok(void *c, MQTTAsync_successData *r)
{
    atomic_store(&raw_connected_ns, sl_now_ns());
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

/*
 * The publisher: libmosquitto, which queues a publish without waiting (its network thread writes as fast as
 * the socket takes it; up to 1000 QoS 1 messages unacknowledged). Paho's publisher waits about a round trip
 * per message here (~10k msg/s at QoS 0, ~3k at QoS 1, measured): in live mode it, not the broker or the
 * subscriber, was the limit, and every ratio read about 1 whatever the subscriber did. n messages, 100
 * devices round robin, each with its own "seq" from 0, on bench/dev-D/telemetry, ~180-byte JSON payloads.
 * Returns when the broker has them all (QoS 1: acknowledged; QoS 0: written to the socket).
 */
static void mosq_published(struct mosquitto *mosq, void *obj, int mid)
{
    (void)mosq, (void)mid;
    atomic_fetch_add_explicit((_Atomic uint64_t *)obj, 1, memory_order_relaxed);
}

static void publish(bench_t *b, int qos)
{
    static _Atomic uint64_t acked;
    atomic_store(&acked, 0);
    mosquitto_lib_init();
    char id[64];
    snprintf(id, sizeof id, "bench-pub-%d", (int)getpid());
    struct mosquitto *mosq = mosquitto_new(id, true, (void *)&acked);
    if (mosq == NULL || mosquitto_max_inflight_messages_set(mosq, 1000) != MOSQ_ERR_SUCCESS ||
        mosquitto_connect(mosq, "127.0.0.1", b->mq.port, 60) != MOSQ_ERR_SUCCESS ||
        mosquitto_loop_start(mosq) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "bench: the libmosquitto publisher cannot connect\n");
        mosquitto_destroy(mosq);
        return;
    }
    mosquitto_publish_callback_set(mosq, mosq_published);
    char topic[64], payload[256];
    uint64_t sent = 0;
    for (uint64_t i = 0; i < b->n / 100; i++)
        for (unsigned d = 0; d < 100; d++) {
            snprintf(topic, sizeof topic, "bench/dev-%u/telemetry", d);
            int len =
                snprintf(payload, sizeof payload, "{\"device\":\"dev-%u\",\"seq\":%llu,\"pad\":\"%.130s\"}", d,
                         (unsigned long long)i,
                         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
            /* Never let libmosquitto queue a QoS 1 message behind its in-flight window: a publish made while
             * its network thread frees the window goes out ahead of the queued ones, and a whole window of
             * 1000 then arrives late (both subscribers, sluice's and the raw one, saw such a block: 1000
             * gaps and 1000 late duplicates, once in ~25 runs). */
            while (qos > 0 && sent - atomic_load(&acked) >= 900)
                nanosleep(&(struct timespec){0, 100000}, NULL);
            if (mosquitto_publish(mosq, NULL, topic, len, payload, qos, false) == MOSQ_ERR_SUCCESS)
                sent++;
        }
    for (int i = 0; i < 120000 && atomic_load(&acked) < sent; i++)
        pause_ms(1);
    if (atomic_load(&acked) < b->n)
        fprintf(stderr, "bench: the publisher got %llu of %llu messages through\n",
                (unsigned long long)atomic_load(&acked), (unsigned long long)b->n);
    mosquitto_disconnect(mosq);
    mosquitto_loop_stop(mosq, false);
    mosquitto_destroy(mosq);
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
        if (n <= 0 || sl_bench_human(hit + strlen(needle)) >= n)
            return sl_bench_log_ms(l);
    }
    return 0;
}

static void wipe_session(bench_t *b, const char *id)
{
    MQTTAsync cli = raw_connect(b, id, 0, true);
    raw_close(cli);
}

static void sluice_config(bench_t *b, int qos, int concurrency)
{
    sl_th_config(&b->th,
                 "pipeline: { name: bench }\n"
                 "metrics: { summary_interval: 10ms }\n"
                 "sources:\n"
                 "  - { name: mq, type: mqtt, urls: \"%s\", client_id: bench-sl, topics: \"bench/#\", qos: %d,\n"
                 "      mqtt_version: \"3.1.1\", concurrency: %d, shared_group: \"%s\", in_flight: 100,\n"
                 "      topic_template: \"bench/{device_id}/telemetry\", key_from: device_id }\n"
                 "sinks:\n"
                 "  - { name: out, type: null, from: mq, verify_sequence: true }\n",
                 b->url, qos, concurrency, concurrency > 1 ? "bench" : "");
}

static void sluice_stop(bench_t *b, sl_bench_proc_t *mem)
{
    if (mem)
        sl_bench_tree_sample(b->th.pid, mem);
    kill(b->th.pid, SIGTERM);
    sl_th_wait(&b->th, 60000);
}

/* The null sink's sequence check from the log of the run that just ended: lost and duplicates. */
static void verify_counts(bench_t *b, uint64_t *lost, uint64_t *dups)
{
    const char *hit = strstr(sl_th_log(&b->th), "] verify: ");
    unsigned long long l = 0, d = 0;
    if (hit == NULL || sscanf(strstr(hit, "lost "), "lost %llu, duplicates %llu", &l, &d) != 2)
        fprintf(stderr, "bench: no verify line in sluice's log\n");
    if ((l || d) && b->concurrency == 1) { /* one connection keeps the order: keep the evidence */
        char path[96];
        snprintf(path, sizeof path, "/tmp/sluice-bench-mqtt-seq-%d-%llu.log", (int)getpid(),
                 (unsigned long long)wall_ms());
        FILE *f = fopen(path, "w");
        if (f != NULL) {
            fputs(sl_th_log(&b->th), f);
            fclose(f);
        }
        fprintf(stderr, "bench: sequence check of one connection: lost %llu, duplicates %llu; sluice's log in %s\n", l,
                d, path);
    }
    *lost += l;
    *dups += d;
}

/* The sink's count in the last summary line and the time of the first line that showed it. */
static double sink_progress(bench_t *b, uint64_t *t_ms)
{
    return sl_bench_summary_count(sl_th_log(&b->th), "out", t_ms);
}

static bool sluice_start(bench_t *b)
{
    sl_th_start(&b->th, "run", NULL);
    /* Every instance has its session and subscription (a shared group: each member's). */
    for (int i = 0; i < 20000; i += 5) {
        if (sl_th_log_count(&b->th, "subscribed to") >= b->concurrency)
            return true;
        pause_ms(5);
    }
    return false;
}

/* One run of sluice; returns events/s. */
/* CPU seconds (user + system, every thread) of pid and its children, from /proc. */
static double tree_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    double s = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f && fgets(buf, sizeof buf, f)) {
        const char *p = strrchr(buf, ')'); /* the command may hold spaces: fields count from after it */
        unsigned long long ut = 0, st = 0;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
            s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    }
    if (f)
        fclose(f);
    pid_t kids[64];
    size_t n = sl_th_children(pid, kids, 64);
    for (size_t i = 0; i < n; i++)
        s += tree_cpu_s(kids[i]);
    return s;
}

static double process_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * SLUICE_BENCH_MQTT_CPU=1: where the CPU of a backlog drain goes, per thread of every process involved
 * (mosquitto; the raw subscriber's process; sluice's master and each worker), from /proc: CPU seconds,
 * cores (CPU / drain wall time), microseconds and context switches per message. It answers "is the broker
 * or the machine the limit?" with figures, and shows which thread of sluice costs what.
 */
#define CPU_THREADS 64
typedef struct th_cpu_s {
    int pid, tid;
    char comm[24];
    double cpu;     /* user + system seconds */
    long vcs, nvcs; /* voluntary, involuntary context switches */
} th_cpu_t;

typedef struct cpu_snap_s {
    size_t n;
    th_cpu_t t[CPU_THREADS];
} cpu_snap_t;

static bool cpu_split_on(void) { return getenv("SLUICE_BENCH_MQTT_CPU") != NULL; }

static void snap_thread(cpu_snap_t *s, int pid, int tid)
{
    if (s->n >= CPU_THREADS)
        return;
    th_cpu_t *t = &s->t[s->n];
    memset(t, 0, sizeof *t);
    t->pid = pid;
    t->tid = tid;
    char path[96], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/task/%d/stat", pid, tid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    bool ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    const char *open = strchr(buf, '('), *close = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (!ok || open == NULL || close == NULL ||
        sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return;
    snprintf(t->comm, sizeof t->comm, "%.*s", (int)SL_MIN((size_t)(close - open - 1), sizeof t->comm - 1), open + 1);
    t->cpu = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    snprintf(path, sizeof path, "/proc/%d/task/%d/status", pid, tid);
    f = fopen(path, "r");
    while (f && fgets(buf, sizeof buf, f)) {
        sscanf(buf, "voluntary_ctxt_switches: %ld", &t->vcs);
        sscanf(buf, "nonvoluntary_ctxt_switches: %ld", &t->nvcs);
    }
    if (f)
        fclose(f);
    s->n++;
}

/* Adds every thread of pid, and with tree every thread of its sluice workers too. */
static void snap_proc(cpu_snap_t *s, pid_t pid, bool tree)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            snap_thread(s, (int)pid, atoi(e->d_name));
    if (d)
        closedir(d);
    pid_t kids[32];
    size_t n = tree ? sl_th_children(pid, kids, 32) : 0;
    for (size_t i = 0; i < n; i++)
        snap_proc(s, kids[i], false);
}

/* Prints what each thread of `after` spent since `before` (a thread absent from before started after it). */
static void cpu_split_print(const char *side, const cpu_snap_t *before, const cpu_snap_t *after, double wall_s,
                            double msgs)
{
    double total = 0;
    for (size_t i = 0; i < after->n; i++) {
        const th_cpu_t *a = &after->t[i];
        th_cpu_t z = {0};
        const th_cpu_t *b = &z;
        for (size_t k = 0; before && k < before->n; k++)
            if (before->t[k].tid == a->tid)
                b = &before->t[k];
        double cpu = a->cpu - b->cpu;
        long cs = (a->vcs - b->vcs) + (a->nvcs - b->nvcs);
        total += cpu;
        if (cpu < 0.005 && cs < 100)
            continue;
        printf("  cpu %s: %d/%d %-16s %6.2f s %5.2f cores %6.2f us/msg ctxsw %ld+%ld (%.3f/msg)\n", side, a->pid,
               a->tid, a->comm, cpu, wall_s > 0 ? cpu / wall_s : 0, msgs > 0 ? cpu * 1e6 / msgs : 0, a->vcs - b->vcs,
               a->nvcs - b->nvcs, msgs > 0 ? (double)cs / msgs : 0);
    }
    printf("  cpu %s: total %.2f s over %.2f s wall = %.2f cores, %.2f us/msg\n", side, total, wall_s,
           wall_s > 0 ? total / wall_s : 0, msgs > 0 ? total * 1e6 / msgs : 0);
}

/* One run of sluice; returns events/s, and in backlog mode the CPU it spent per message (its whole process
 * tree, from its start to the last message), in *cpu_us. */
static double run_sluice(bench_t *b, int qos, bool backlog, int concurrency, sl_bench_proc_t *mem, uint64_t *lost,
                         uint64_t *dups, double *cpu_us)
{
    sluice_config(b, qos, concurrency);
    b->concurrency = concurrency;
    uint64_t t0 = 0;
    if (backlog) {
        if (!sluice_start(b)) /* creates the session(s) */
            return 0;
        sluice_stop(b, NULL);
        publish(b, qos);
        t0 = 1; /* from the connect line */
    }
    static cpu_snap_t mq0, mq1, sl1;
    mq0.n = mq1.n = sl1.n = 0;
    if (backlog && cpu_split_on())
        snap_proc(&mq0, b->mq.pid, false);
    if (!sluice_start(b))
        return 0;
    /* Backlog: the broker starts sending before "subscribed to" is logged, so the CPU counts from the start
     * of the process (its start-up, a few ms of CPU, is counted with the drain; the raw side's connect is). */
    double cpu0 = backlog ? 0 : tree_cpu_s(b->th.pid);
    pthread_t t;
    pubarg_t pa = {b, qos};
    if (!backlog) {
        t0 = wall_ms();
        pthread_create(&t, NULL, pub_thread, &pa);
    } else {
        t0 = log_time(b, "connected to", 0);
    }
    uint64_t t1 = 0, seen_ms = wall_ms();
    double got = 0;
    for (int i = 0; i < 120000 && got < (double)b->n && wall_ms() - seen_ms < 3000; i += 10) {
        pause_ms(10);
        double now = sink_progress(b, &t1);
        if (now > got)
            got = now, seen_ms = wall_ms();
    }
    if (!backlog)
        pthread_join(t, NULL);
    if (got < (double)b->n)
        fprintf(stderr, "bench: sluice got %.0f of %llu messages (qos %d%s)\n", got, (unsigned long long)b->n, qos,
                backlog ? ", backlog" : "");
    *cpu_us = backlog && got > 0 ? (tree_cpu_s(b->th.pid) - cpu0) * 1e6 / got : 0;
    if (backlog && cpu_split_on()) {
        snap_proc(&sl1, b->th.pid, true);
        snap_proc(&mq1, b->mq.pid, false);
        double wall = t1 > t0 ? (double)(t1 - t0) / 1e3 : 0;
        cpu_split_print("sluice", NULL, &sl1, wall, got);
        cpu_split_print("broker(sluice run)", &mq0, &mq1, wall, got);
    }
    sluice_stop(b, mem);
    verify_counts(b, lost, dups);
    for (int k = 0; k < concurrency; k++) {
        char id[64];
        snprintf(id, sizeof id, concurrency > 1 ? "bench-sl-%d" : "bench-sl", k);
        wipe_session(b, id);
    }
    return t1 > t0 ? got * 1000.0 / (double)(t1 - t0) : 0;
}

/* One run of the raw counting subscriber; returns events/s. */
/* One run of the raw counting subscriber; returns events/s, and in backlog mode the CPU of this process
 * (Paho's threads, the 1 ms poll below) per message from its connect to the last message, in *cpu_us. */
static double run_raw(bench_t *b, int qos, bool backlog, double *cpu_us)
{
    MQTTAsync cli = raw_connect(b, "bench-raw", qos, false);
    pthread_t t;
    pubarg_t pa = {b, qos};
    if (backlog) {
        raw_close(cli);
        publish(b, qos);
    }
    atomic_store(&raw_count, 0);
    memset(raw_next, 0, sizeof raw_next);
    raw_lost = raw_dups = 0;
    static cpu_snap_t mq0, mq1, me0, me1;
    mq0.n = mq1.n = me0.n = me1.n = 0;
    if (backlog && cpu_split_on()) {
        snap_proc(&mq0, b->mq.pid, false);
        snap_proc(&me0, getpid(), false);
    }
    uint64_t t0 = sl_now_ns();
    double cpu0 = process_cpu_s();
    if (backlog) {
        cli = raw_connect(b, "bench-raw", qos, false);
        t0 = atomic_load(&raw_connected_ns);
    } else {
        pthread_create(&t, NULL, pub_thread, &pa);
    }
    uint64_t got = 0, t1 = sl_now_ns();
    for (int i = 0; i < 120000 && got < b->n && sl_now_ns() - t1 < 3 * SL_NS_PER_S; i++) {
        pause_ms(1);
        uint64_t now = atomic_load(&raw_count);
        if (now > got)
            got = now, t1 = sl_now_ns();
    }
    if (got < b->n)
        fprintf(stderr, "bench: the raw subscriber got %llu of %llu messages (qos %d%s)\n", (unsigned long long)got,
                (unsigned long long)b->n, qos, backlog ? ", backlog" : "");
    uint64_t dt = t1 - t0;
    *cpu_us = backlog && got > 0 ? (process_cpu_s() - cpu0) * 1e6 / (double)got : 0;
    if (backlog && cpu_split_on()) {
        snap_proc(&me1, getpid(), false);
        snap_proc(&mq1, b->mq.pid, false);
        cpu_split_print("raw", &me0, &me1, (double)dt / 1e9, (double)got);
        cpu_split_print("broker(raw run)", &mq0, &mq1, (double)dt / 1e9, (double)got);
    }
    if (!backlog)
        pthread_join(t, NULL);
    raw_close(cli);
    wipe_session(b, "bench-raw");
    if (raw_lost || raw_dups)
        fprintf(stderr, "bench: sequence check of the raw subscriber: lost %llu, duplicates %llu (qos %d%s)\n",
                (unsigned long long)raw_lost, (unsigned long long)raw_dups, qos, backlog ? ", backlog" : "");
    return (double)got * 1e9 / (double)dt;
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
        const char *name, *id;
    } cases[] = {{0, 1, false, "live qos0", "mqtt_live_qos0"},
                 {1, 1, false, "live qos1", "mqtt_live_qos1"},
                 {0, 1, true, "backlog qos0", "mqtt_backlog_qos0"},
                 {1, 1, true, "backlog qos1", "mqtt_backlog_qos1"},
                 {1, 2, true, "backlog qos1 x2", "mqtt_backlog_qos1_x2"}};
    /* SLUICE_BENCH_MQTT_CASE="backlog qos1,live qos0": run those cases only. */
    char only_buf[256], *only = NULL;
    if (getenv("SLUICE_BENCH_MQTT_CASE"))
        snprintf(only = only_buf, sizeof only_buf, ",%s,", getenv("SLUICE_BENCH_MQTT_CASE"));
    for (size_t k = 0; k < SL_ARRAY_LEN(cases); k++) {
        double vs[32], vr[32], vx[32], cs[32], cr[32];
        sl_bench_proc_t mem = {0};
        uint64_t lost = 0, dups = 0;
        char want[64];
        snprintf(want, sizeof want, ",%s,", cases[k].name);
        if (only && strstr(only, want) == NULL)
            continue;
        for (int i = 0; i < b.runs; i++) {
            /* The two sides take turns going first: the machine's load drifts within minutes. */
            if (i % 2)
                vr[i] = run_raw(&b, cases[k].qos, cases[k].backlog, &cr[i]);
            vs[i] = run_sluice(&b, cases[k].qos, cases[k].backlog, cases[k].conc, &mem, &lost, &dups, &cs[i]);
            if (i % 2 == 0)
                vr[i] = run_raw(&b, cases[k].qos, cases[k].backlog, &cr[i]);
            vx[i] = vr[i] > 0 ? vs[i] / vr[i] : 0;
            printf("mqtt %s run %d: sluice %.0f/s raw %.0f/s ratio %.2f", cases[k].name, i + 1, vs[i], vr[i], vx[i]);
            if (cases[k].backlog)
                printf("; CPU per message: sluice %.2f us, raw %.2f us", cs[i], cr[i]);
            printf("\n");
            fflush(stdout);
        }
        double ms = sl_bench_median(vs, b.runs), mr = sl_bench_median(vr, b.runs), mx = sl_bench_median(vx, b.runs);
        printf("mqtt %s: median sluice %.0f/s raw %.0f/s, median of the per-run ratios %.2f\n", cases[k].name, ms, mr,
               mx);
        char extra[192], cpu[96] = "";
        if (cases[k].backlog) /* CPU per message: a figure the machine's load disturbs less than a rate */
            snprintf(cpu, sizeof cpu, " cpu_us_per_msg=%.2f raw_cpu_us_per_msg=%.2f", sl_bench_median(cs, b.runs),
                     sl_bench_median(cr, b.runs));
        /* A shared group deals a device's messages to both connections: the sink sees them out of order, so
         * its sequence check counts reorderings, not loss. */
        if (cases[k].conc > 1)
            snprintf(extra, sizeof extra, "reordered_lost=%llu reordered_dups=%llu%s", (unsigned long long)lost,
                     (unsigned long long)dups, cpu);
        else
            snprintf(extra, sizeof extra, "lost=%llu dups=%llu%s", (unsigned long long)lost, (unsigned long long)dups,
                     cpu);
        sl_bench_result(cases[k].id, ms, mr, &mem, extra);
    }
    sl_th_mosq_stop(&b.mq);
    if (!getenv("SLUICE_BENCH_KEEP")) /* keep the logs (sluice, mosquitto) for a look */
        sl_th_cleanup(&b.th);
    return 0;
}
