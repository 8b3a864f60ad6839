/*
 * bench/run kafka: the same events through sluice's Kafka sink (generator -> kafka, the real binary) and
 * through a raw librdkafka producer with the same settings, in the same run, against one librdkafka mock
 * cluster that this program hosts (its brokers listen on 127.0.0.1, so sluice reaches them over TCP).
 *
 * Settings on both sides: idempotent, acks=all, linger 5 ms, batch.num.messages 10000, batch.size 1 MiB,
 * no message timeout, no compression, no headers (-H adds sluice's headers on both sides); keys are the
 * 11-byte device ids of 1000 devices, payloads 180 bytes. A run ends when every delivery report is in.
 * The mock keeps only ~5 MiB per partition: nobody reads back here, the tests verify. The last line is the
 * one a script reads: medians over the runs and the memory of the sluice process tree (bench/common/bench.h).
 * With -C, sluice replays a capture of n sensor messages from `sluice gen` (replay -> kafka) and the raw
 * producer reads the same file with the capture reader.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "bench/common/bench.h"
#include "common/sl.h"
#include "ingest/capture/capture.h"

#define PAYLOAD 180
#define DEVICES 1000

static uint64_t g_delivered, g_failed;

static void raw_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    if (m->err)
        g_failed++;
    else
        g_delivered++;
}

static rd_kafka_t *raw_producer(const char *brokers)
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
    rd_kafka_conf_set_dr_msg_cb(conf, raw_dr);
    return rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
}

/* The raw limit: one producer, same shape of messages, zero-copy payloads like the sink. With a capture,
 * its payloads are read with the capture reader and copied into librdkafka (the reader reuses its buffer). */
static double run_raw(const char *brokers, uint64_t n, bool headers, const char *capture)
{
    sl_cap_reader_t *rd = NULL;
    if (capture && sl_cap_reader_open(capture, &rd) != 0)
        return 0;
    rd_kafka_t *rk = raw_producer(brokers);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, "bench", NULL);
    static char payload[PAYLOAD], keys[DEVICES][12];
    memset(payload, 'x', sizeof payload);
    for (int d = 0; d < DEVICES; d++)
        snprintf(keys[d], sizeof keys[d], "dev-%07d", d);
    g_delivered = g_failed = 0;
    uint64_t t0 = sl_now_ns();
    sl_cap_rec_t rec;
    bool have = false;
    for (uint64_t i = 0; i < n;) {
        rd_kafka_headers_t *h = NULL;
        if (headers) {
            h = rd_kafka_headers_new(8);
            rd_kafka_header_add(h, "mqtt_topic", -1, "fleet/dev-0000042/telemetry", -1);
            rd_kafka_header_add(h, "mqtt_qos", -1, "1", 1);
            rd_kafka_header_add(h, "received_ns", -1, "1795619255282188584", -1);
            rd_kafka_header_add(h, "device_id", -1, keys[i % DEVICES], 11);
        }
        const void *value = payload;
        size_t value_len = PAYLOAD;
        if (rd) {
            if (!have && sl_cap_reader_next(rd, &rec) != 0)
                break;
            have = true;
            value = rec.payload, value_len = rec.payload_len;
        }
        rd_kafka_resp_err_t err =
            rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(rd ? RD_KAFKA_MSG_F_COPY : 0),
                              RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_KEY(keys[i % DEVICES], 11),
                              RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            i++;
            have = false;
            continue;
        }
        if (h)
            rd_kafka_headers_destroy(h);
        rd_kafka_poll(rk, 1); /* queue full: serve reports, then try again */
    }
    rd_kafka_flush(rk, 600000);
    double secs = (double)(sl_now_ns() - t0) / 1e9;
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    sl_cap_reader_destroy(rd);
    if (g_delivered != n || g_failed) {
        fprintf(stderr, "raw: %llu delivered, %llu failed of %llu\n", (unsigned long long)g_delivered,
                (unsigned long long)g_failed, (unsigned long long)n);
        return 0;
    }
    return (double)n / secs;
}

int main(int argc, char **argv)
{
    sl_bench_spawner_start();
    uint64_t n = 1000 * 1000;
    int runs = 3, c;
    bool headers = false, replay = false;
    const char *sluice = "build/sluice", *dir = "/tmp";
    /* The sink's input ring bounds the events in flight to Kafka (they stay in it until their delivery
     * report): 16 MiB holds ~60k of these events, several of librdkafka's batches. */
    const char *capacity = "16MiB";
    while ((c = getopt(argc, argv, "n:r:s:Hc:Cd:")) != -1) {
        switch (c) {
        case 'C': replay = true; break;
        case 'd': dir = optarg; break;
        case 'n': n = strtoull(optarg, NULL, 10); break;
        case 'r': runs = atoi(optarg); break;
        case 's': sluice = optarg; break;
        case 'H': headers = true; break;
        case 'c': capacity = optarg; break;
        default:
            fprintf(stderr,
                    "usage: bench_kafka [-n EVENTS] [-r RUNS] [-s SLUICE_BINARY] [-H (headers)] [-c SINK_CAPACITY]\n"
                    "                   [-C (replay a capture of sensor messages from sluice gen) [-d DIR]]\n");
            return 2;
        }
    }
    if (runs < 1 || runs > 99)
        runs = 3;
    char err[512];
    rd_kafka_conf_t *mconf = rd_kafka_conf_new();
    rd_kafka_conf_set(mconf, "log_level", "3", err, sizeof err);
    rd_kafka_t *host = rd_kafka_new(RD_KAFKA_PRODUCER, mconf, err, sizeof err);
    rd_kafka_mock_cluster_t *mc = host ? rd_kafka_mock_cluster_new(host, 3) : NULL;
    if (mc == NULL || rd_kafka_mock_topic_create(mc, "bench", 8, 1) != 0) {
        fprintf(stderr, "cannot start the mock cluster\n");
        return 1;
    }
    const char *brokers = rd_kafka_mock_cluster_bootstraps(mc);
    char cfg[] = "/tmp/sluice-bench-kafka-XXXXXX", capture[512], count[32];
    snprintf(capture, sizeof capture, "%s/sluice-bench-kafka-%d.cap", dir, (int)getpid());
    snprintf(count, sizeof count, "%llu", (unsigned long long)n);
    sl_bench_proc_t pr;
    char *gen[] = {(char *)sluice, "gen", "-o", capture, "-n", count, "-d", "1000", "-p", "sensor", NULL};
    if (replay && sl_bench_spawn(gen, NULL, &pr) != 0)
        return 1;
    char *rep_argv[] = {(char *)sluice, "replay", capture, "-c", cfg, "--speed", "max", "-q", NULL};
    FILE *f = fdopen(mkstemp(cfg), "w");
    fprintf(f,
            "pipeline: { name: bench-kafka }\n"
            "metrics: { enabled: false, summary_interval: 0s }\n"
            "sources: [ { name: fleet, type: generator, count: %llu, devices: %d, payload_size: %d } ]\n"
            "sinks: [ { name: out, type: kafka, from: fleet, brokers: '%s', topic: bench, headers: %s,\n"
            "           capacity: %s, max_demand: 5000 } ]\n",
            (unsigned long long)n, DEVICES, PAYLOAD, brokers, headers ? "true" : "false", capacity);
    fclose(f);
    double sl[99], raw[99];
    sl_bench_proc_t mem = {0};
    for (int r = 0; r < runs; r++) {
        raw[r] = run_raw(brokers, n, headers, replay ? capture : NULL);
        int rc = replay ? sl_bench_spawn(rep_argv, NULL, &pr) : sl_bench_run_sluice(sluice, cfg, NULL, &pr);
        sl[r] = rc == 0 ? (double)n / pr.secs : 0;
        sl_bench_mem_max(&mem, &pr);
        printf("run %d: sluice %.2fM events/s, raw librdkafka %.2fM events/s, ratio %.2f, peak RSS %ld kB (one "
               "process), %ld kB PSS (all)\n",
               r + 1, sl[r] / 1e6, raw[r] / 1e6, raw[r] > 0 ? sl[r] / raw[r] : 0, pr.max_rss_kb, pr.pss_kb);
        fflush(stdout);
    }
    unlink(cfg);
    if (replay)
        unlink(capture);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(host);
    double ms = sl_bench_median(sl, runs), mr = sl_bench_median(raw, runs);
    char name[64];
    snprintf(name, sizeof name, "kafka%s%s", replay ? "_replay" : "", headers ? "_headers" : "");
    sl_bench_result(name, ms, mr, &mem, NULL);
    return ms > 0 && mr > 0 ? 0 : 1;
}
