/*
 * bench/run kafka: the same events through sluice's Kafka sink (generator -> kafka, the real binary) and
 * through a raw librdkafka producer with the same settings, in the same run, against one librdkafka mock
 * cluster that this program hosts (its brokers listen on 127.0.0.1, so sluice reaches them over TCP).
 *
 * Settings on both sides: idempotent, acks=all, linger 5 ms, batch.num.messages 10000, batch.size 1 MiB,
 * no message timeout, no compression, no headers (-H adds sluice's headers on both sides). Both send the
 * same kind of events: the generator's (keys the 11-byte ids of 1000 devices, 180-byte JSON payloads with
 * a per-device sequence number). A run ends when every delivery report is in.
 * Both sides are timed over the same window, from the first produce to the last delivery report (sluice's
 * sink logs its window); sluice's whole run, fork to exit, is printed too. CPU per event: sluice's process
 * tree (master, generator, sink, librdkafka's threads) against the raw producer's threads, each over its
 * whole life (create to destroy); the mock cluster's threads, hosted here, are counted apart. An uncounted
 * raw run warms the mock cluster up first.
 * The raw producer gets what sluice's sink has that a raw program could have too (raw_child): a process of
 * its own per run, the sink's allocator settings, the sink's bound on events in flight, and its events in
 * as much memory as the sink's ring, built before the run. Until 2026-11-26 it ran in this process, warmed
 * by the runs before (heaps grown: no page faults), with glibc's default thresholds and librdkafka's
 * default 100k queue, reading a million records laid out in 270 MB (and before 2026-11-26 one static
 * 180-byte buffer a million times); 1.1-1.5M events/s here that day, 1.25-1.7M as now.
 * The mock keeps only ~5 MiB per partition: nobody reads back here, the tests verify. The last line is the
 * one a script reads: medians over the runs and the memory of the sluice process tree (bench/common/bench.h).
 * With -C, sluice replays a capture of n sensor messages from `sluice gen` (replay -> kafka) and the raw
 * producer reads the same file with the capture reader.
 */
#include <dirent.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "bench/common/bench.h"
#include "common/sl.h"
#include "config/config_int.h"
#include "ingest/capture/capture.h"
#include "sinks/sinks.h"
#include "stages/stages.h"

#define PAYLOAD 180
#define DEVICES 1000

static uint64_t g_delivered, g_failed, g_n, g_last_ns;

static void raw_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    if (m->err)
        g_failed++;
    else
        g_delivered++;
    if (g_delivered + g_failed == g_n)
        g_last_ns = sl_now_ns();
}

/* The mock cluster's threads (and its host handle's): every thread of this process but the main one, as
 * they are before the raw producer starts. Their CPU from schedstat (nanoseconds). */
static int g_mock_tid[64], g_n_mock;

static void mock_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int self = (int)syscall(SYS_gettid);
    while (d && (e = readdir(d)) != NULL && g_n_mock < 64)
        if (e->d_name[0] != '.' && atoi(e->d_name) != self)
            g_mock_tid[g_n_mock++] = atoi(e->d_name);
    if (d)
        closedir(d);
}

static double mock_cpu(void)
{
    unsigned long long sum = 0;
    for (int i = 0; i < g_n_mock; i++) {
        char path[64];
        unsigned long long ns = 0;
        snprintf(path, sizeof path, "/proc/self/task/%d/schedstat", g_mock_tid[i]);
        FILE *f = fopen(path, "r");
        if (f && fscanf(f, "%llu", &ns) == 1)
            sum += ns;
        if (f)
            fclose(f);
    }
    return (double)sum / 1e9;
}

static double process_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* sluice's window from the sink's log: "delivered N events in S s (first produce to last delivery report)". */
static double sluice_window(const char *log, uint64_t n)
{
    FILE *f = fopen(log, "r");
    char line[4096];
    double secs = 0;
    while (f && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "] delivered ");
        unsigned long long got;
        double s;
        if (p && sscanf(p, "] delivered %llu events in %lf s", &got, &s) == 2 && got == n)
            secs = s;
    }
    if (f)
        fclose(f);
    return secs;
}

/* max_in_flight: librdkafka's queue bound, the events the sink's input ring holds (the sink's bound on
 * what is in flight: an event stays in the ring until its delivery report). */
static rd_kafka_t *raw_producer(const char *brokers, uint64_t max_in_flight)
{
    static const char *const set[][2] = {
        {"enable.idempotence", "true"},  {"acks", "all"},           {"linger.ms", "5.000"},
        {"batch.num.messages", "10000"}, {"batch.size", "1048576"}, {"message.timeout.ms", "0"},
        {"compression.codec", "none"},
    };
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err);
    for (size_t i = 0; i < SL_ARRAY_LEN(set); i++)
        if (rd_kafka_conf_set(conf, set[i][0], set[i][1], err, sizeof err) != RD_KAFKA_CONF_OK)
            fprintf(stderr, "raw: %s: %s\n", set[i][0], err);
    char qmax[24];
    snprintf(qmax, sizeof qmax, "%llu", (unsigned long long)max_in_flight);
    if (rd_kafka_conf_set(conf, "queue.buffering.max.messages", qmax, err, sizeof err) != RD_KAFKA_CONF_OK)
        fprintf(stderr, "raw: queue.buffering.max.messages: %s\n", err);
    rd_kafka_conf_set_dr_msg_cb(conf, raw_dr);
    return rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
}

/* The raw limit: one producer sending the generator's events (sl_bench_gen_records: the same keys and
 * payloads, distinct bytes per record, read from memory as the sink reads them from its ring, lap after lap
 * through recs), payloads zero-copy like the sink; with -H the same headers as the sink's, made from each
 * event. With a capture, its payloads are read with the capture reader and copied into librdkafka (the
 * reader reuses its buffer). */
static double run_raw(const char *brokers, const uint8_t *recs, size_t recs_len, uint64_t n, bool headers,
                      const char *capture, uint64_t max_in_flight, double *cpu)
{
    sl_cap_reader_t *rd = NULL;
    if (capture && sl_cap_reader_open(capture, &rd) != 0)
        return 0;
    double c0 = process_cpu(), m0 = mock_cpu();
    rd_kafka_t *rk = raw_producer(brokers, max_in_flight);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, "bench", NULL);
    g_delivered = g_failed = g_last_ns = 0;
    g_n = n;
    uint64_t t0 = sl_now_ns();
    sl_cap_rec_t rec;
    bool have = false;
    size_t off = 0;
    for (uint64_t i = 0; i < n;) {
        if (off >= recs_len)
            off = 0; /* the next lap (records are read-only: two in flight may share one) */
        sl_event_t ev;
        sl_event_from_rec(&ev, (const sl_rec_t *)(recs + off));
        rd_kafka_headers_t *h = NULL;
        if (headers) {
            char num[24];
            h = rd_kafka_headers_new(8);
            rd_kafka_header_add(h, "mqtt_topic", -1, ev.topic, ev.topic_len);
            snprintf(num, sizeof num, "%u", ev.rec->qos);
            rd_kafka_header_add(h, "mqtt_qos", -1, num, -1);
            snprintf(num, sizeof num, "%llu", (unsigned long long)ev.ingest_ns);
            rd_kafka_header_add(h, "received_ns", -1, num, -1);
            rd_kafka_header_add(h, "device_id", -1, ev.key, ev.key_len);
        }
        const void *value = ev.payload;
        size_t value_len = ev.payload_len;
        if (rd) {
            if (!have && sl_cap_reader_next(rd, &rec) != 0)
                break;
            have = true;
            value = rec.payload, value_len = rec.payload_len;
        }
        rd_kafka_resp_err_t err =
            rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(rd ? RD_KAFKA_MSG_F_COPY : 0),
                              RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_KEY(ev.key, ev.key_len),
                              RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            i++;
            have = false;
            off += SL_ALIGN_UP((size_t)ev.rec->len, SL_REC_ALIGN);
            continue;
        }
        if (h)
            rd_kafka_headers_destroy(h);
        rd_kafka_poll(rk, 1); /* queue full: serve reports, then try again */
    }
    rd_kafka_flush(rk, 600000);
    double secs = (double)(g_last_ns - t0) / 1e9;
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    sl_cap_reader_destroy(rd);
    *cpu = process_cpu() - c0 - (mock_cpu() - m0);
    if (g_delivered != n || g_failed || g_last_ns <= t0) {
        fprintf(stderr, "raw: %llu delivered, %llu failed of %llu\n", (unsigned long long)g_delivered,
                (unsigned long long)g_failed, (unsigned long long)n);
        return 0;
    }
    return (double)n / secs;
}

/*
 * `bench_kafka --raw BROKERS N HEADERS(0|1) RING_BYTES [CAPTURE]`: one raw run in this fresh process;
 * prints "raw EVENTS_PER_S CPU_SECONDS". What sluice's sink has, the raw producer gets too: the sink's
 * allocator settings; at most as many events in flight as a ring of RING_BYTES holds (the sink's bound:
 * an event stays in its ring until its delivery report); and its events in as much memory: it cycles
 * through that many distinct records, built before the run, as the sink reads its ring lap after lap.
 * Until 2026-11-26 it read a million records built in 270 MB, each once, from memory no cache held:
 * 10-15% slower than from a ring's worth (1.32-1.48M against 1.44-1.73M events/s, same minutes).
 */
static int raw_child(int argc, char **argv)
{
    if (argc < 6)
        return 2;
    sl_sink_kafka_malloc_setup();
    uint64_t n = strtoull(argv[3], NULL, 10), ring = strtoull(argv[5], NULL, 10);
    const char *capture = argc > 6 ? argv[6] : NULL;
    /* Bytes an event takes in the ring: the generator's record, or for a capture its average record
     * (a capture record and a ring record frame the same fields in about as many bytes). */
    size_t per_event;
    free(sl_bench_gen_records(1, DEVICES, PAYLOAD, &per_event));
    struct stat st;
    if (capture && stat(capture, &st) == 0 && st.st_size > 0)
        per_event = (size_t)st.st_size / n;
    uint64_t in_flight = SL_MAX(ring / SL_MAX(per_event, 1), 1);
    size_t recs_len;
    uint8_t *recs = sl_bench_gen_records(SL_MIN(n, in_flight), DEVICES, PAYLOAD, &recs_len);
    double cpu = 0, eps = run_raw(argv[2], recs, recs_len, n, argv[4][0] == '1', capture, in_flight, &cpu);
    printf("raw %.0f %.6f\n", eps, cpu);
    free(recs);
    return eps > 0 ? 0 : 1;
}

/*
 * A raw run in a process of its own, as sluice's run is: a producer in a process that earlier runs warmed
 * up skips the page faults of growing its heaps (glibc keeps them), which a fresh process pays, ~12 us a
 * page on this VM: measured 2026-11-26, a raw producer's first run in a process 1.13-1.33M events/s
 * (1240-1430 ns CPU per event), its second 1.38-1.61M (990-1040 ns). Returns events/s (0 on failure) and
 * its CPU in *cpu (create to destroy of the producer).
 */
static double spawn_raw(const char *self, const char *brokers, uint64_t n, bool headers, uint64_t ring,
                        const char *capture, const char *log, double *cpu)
{
    char count[32], ring_bytes[32];
    snprintf(count, sizeof count, "%llu", (unsigned long long)n);
    snprintf(ring_bytes, sizeof ring_bytes, "%llu", (unsigned long long)ring);
    char *argv[] = {(char *)self,        "--raw",    (char *)brokers, count,
                    headers ? "1" : "0", ring_bytes, (char *)capture, NULL};
    sl_bench_proc_t pr;
    double eps = 0;
    *cpu = 0;
    if (sl_bench_spawn(argv, log, &pr) == 0) {
        FILE *f = fopen(log, "r");
        char line[512];
        while (f && fgets(line, sizeof line, f))
            if (sscanf(line, "raw %lf %lf", &eps, cpu) == 2)
                break;
        if (f)
            fclose(f);
    } else {
        fprintf(stderr, "bench: the raw run failed (its log: %s)\n", log);
    }
    return eps;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--raw") == 0)
        return raw_child(argc, argv);
    sl_bench_spawner_start();
    /* This process hosts the mock cluster, which serves both sides: the same allocator settings. */
    sl_sink_kafka_malloc_setup();
    uint64_t n = 1000 * 1000;
    int runs = 3, c;
    bool headers = false, replay = false, raw_only = false;
    const char *external = NULL; /* -b: an outside cluster (with a topic "bench"), e.g. to profile one side */
    const char *sluice = "build/sluice", *dir = "/tmp";
    /* The sink's input ring bounds the events in flight to Kafka (they stay in it until their delivery
     * report): 8 MiB holds ~30k of these events, several of librdkafka's batches. Measured (21:14-21:18,
     * load 4-6, alternating runs): 8 MiB spends 15-25% less CPU per event than 16 MiB (less memory in
     * flight for the broker threads' copies), 4 MiB collapses (small requests, 2x the CPU). -c to compare. */
    const char *capacity = "8MiB";
    while ((c = getopt(argc, argv, "n:r:s:Hc:Cd:b:R")) != -1) {
        switch (c) {
        case 'C': replay = true; break;
        case 'd': dir = optarg; break;
        case 'n': n = strtoull(optarg, NULL, 10); break;
        case 'r': runs = atoi(optarg); break;
        case 's': sluice = optarg; break;
        case 'H': headers = true; break;
        case 'c': capacity = optarg; break;
        case 'b': external = optarg; break;
        case 'R': raw_only = true; break;
        default:
            fprintf(stderr,
                    "usage: bench_kafka [-n EVENTS] [-r RUNS] [-s SLUICE_BINARY] [-H (headers)] [-c SINK_CAPACITY]\n"
                    "                   [-C (replay a capture of sensor messages from sluice gen) [-d DIR]]\n"
                    "                   [-b BROKERS (an outside cluster, topic bench)] [-R (the raw side only)]\n");
            return 2;
        }
    }
    if (runs < 1 || runs > 99)
        runs = 3;
    uint64_t ring;
    if (sl__parse_size(capacity, &ring) != 0) {
        fprintf(stderr, "bench: -c %s: not a size\n", capacity);
        return 2;
    }
    char err[512];
    rd_kafka_conf_t *mconf = rd_kafka_conf_new();
    rd_kafka_conf_set(mconf, "log_level", "3", err, sizeof err);
    rd_kafka_t *host = external ? NULL : rd_kafka_new(RD_KAFKA_PRODUCER, mconf, err, sizeof err);
    rd_kafka_mock_cluster_t *mc = host ? rd_kafka_mock_cluster_new(host, 3) : NULL;
    if (external)
        rd_kafka_conf_destroy(mconf);
    else if (mc == NULL || rd_kafka_mock_topic_create(mc, "bench", 8, 1) != 0) {
        fprintf(stderr, "cannot start the mock cluster\n");
        return 1;
    }
    mock_threads();
    char self[4096];
    ssize_t self_len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (self_len <= 0)
        return 1;
    self[self_len] = 0;
    const char *brokers = external ? external : rd_kafka_mock_cluster_bootstraps(mc);
    char cfg[] = "/tmp/sluice-bench-kafka-XXXXXX", capture[512], count[32], log[512];
    snprintf(capture, sizeof capture, "%s/sluice-bench-kafka-%d.cap", dir, (int)getpid());
    snprintf(log, sizeof log, "%s/sluice-bench-kafka-%d.log", dir, (int)getpid());
    char raw_log[512];
    snprintf(raw_log, sizeof raw_log, "%s/sluice-bench-kafka-raw-%d.log", dir, (int)getpid());
    snprintf(count, sizeof count, "%llu", (unsigned long long)n);
    sl_bench_proc_t pr;
    char *gen[] = {(char *)sluice, "gen", "-o", capture, "-n", count, "-d", "1000", "-p", "sensor", NULL};
    if (replay && sl_bench_spawn(gen, NULL, &pr) != 0)
        return 1;
    char *rep_argv[] = {(char *)sluice, "replay", capture, "-c", cfg, "--speed", "max", NULL};
    FILE *f = fdopen(mkstemp(cfg), "w");
    fprintf(f,
            "pipeline: { name: bench-kafka }\n"
            "metrics: { enabled: false, summary_interval: 0s }\n"
            "sources: [ { name: fleet, type: generator, count: %llu, devices: %d, payload_size: %d } ]\n"
            "sinks: [ { name: out, type: kafka, from: fleet, brokers: '%s', topic: bench, headers: %s,\n"
            "           capacity: %s, max_demand: 5000 } ]\n",
            (unsigned long long)n, DEVICES, PAYLOAD, brokers, headers ? "true" : "false", capacity);
    fclose(f);
    double sl[99], raw[99], whole[99], cpu[99], raw_cpu[99], mock[99], raw_mock[99];
    sl_bench_proc_t mem = {0};
    /* A raw run first, not counted: the mock cluster's first fill of its partition logs (page faults, its
     * connections) would otherwise fall on the first raw run only and lower the raw median. */
    double warm_cpu;
    printf("warm-up (not counted): raw librdkafka %.2fM events/s\n",
           spawn_raw(self, brokers, n, headers, ring, replay ? capture : NULL, raw_log, &warm_cpu) / 1e6);
    for (int r = 0; r < runs; r++) {
        double m0 = mock_cpu();
        raw[r] = spawn_raw(self, brokers, n, headers, ring, replay ? capture : NULL, raw_log, &raw_cpu[r]);
        double m1 = mock_cpu();
        if (raw_only) {
            printf("run %d: raw librdkafka %.2fM events/s, CPU per event %.0f ns\n", r + 1, raw[r] / 1e6,
                   raw_cpu[r] * 1e9 / (double)n);
            continue;
        }
        int rc = replay ? sl_bench_spawn(rep_argv, log, &pr) : sl_bench_run_sluice(sluice, cfg, log, &pr);
        double win = rc == 0 ? sluice_window(log, n) : 0;
        if (rc == 0 && win <= 0)
            fprintf(stderr, "bench: no \"delivered %llu events in S s\" line in %s\n", (unsigned long long)n, log);
        sl[r] = win > 0 ? (double)n / win : 0;
        whole[r] = rc == 0 ? (double)n / pr.secs : 0;
        cpu[r] = pr.cpu_secs * 1e9 / (double)n, raw_cpu[r] *= 1e9 / (double)n;
        raw_mock[r] = (m1 - m0) * 1e9 / (double)n, mock[r] = (mock_cpu() - m1) * 1e9 / (double)n;
        sl_bench_mem_max(&mem, &pr);
        printf("run %d: sluice %.2fM events/s (%.2fM fork to exit), raw librdkafka %.2fM events/s, ratio %.2f; CPU "
               "per event: sluice %.0f ns, raw %.0f ns, raw/sluice %.2f (mock cluster %.0f / %.0f ns); peak RSS %ld "
               "kB (one process), %ld kB PSS (all)\n",
               r + 1, sl[r] / 1e6, whole[r] / 1e6, raw[r] / 1e6, raw[r] > 0 ? sl[r] / raw[r] : 0, cpu[r], raw_cpu[r],
               cpu[r] > 0 ? raw_cpu[r] / cpu[r] : 0, mock[r], raw_mock[r], pr.max_rss_kb, pr.pss_kb);
        fflush(stdout);
    }
    unlink(log);
    unlink(raw_log);
    unlink(cfg);
    if (replay)
        unlink(capture);
    if (raw_only)
        return 0;
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    if (host)
        rd_kafka_destroy(host);
    double ms = sl_bench_median(sl, runs), mr = sl_bench_median(raw, runs);
    double mc_ = sl_bench_median(cpu, runs), mrc = sl_bench_median(raw_cpu, runs);
    char name[64], extra[256];
    snprintf(name, sizeof name, "kafka%s%s", replay ? "_replay" : "", headers ? "_headers" : "");
    snprintf(extra, sizeof extra,
             "fork_to_exit_events_per_s=%.0f cpu_ns_per_event=%.0f raw_cpu_ns_per_event=%.0f cpu_ratio=%.2f "
             "sink_capacity=%s",
             sl_bench_median(whole, runs), mc_, mrc, mc_ > 0 ? mrc / mc_ : 0, capacity);
    sl_bench_result(name, ms, mr, &mem, extra);
    return ms > 0 && mr > 0 ? 0 : 1;
}
