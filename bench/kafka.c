/*
 * bench/run kafka: the same events through sluice's Kafka sink (generator -> kafka, the real binary) and
 * through a raw librdkafka producer with the same settings, in the same run, against one librdkafka mock
 * cluster that this program hosts (its brokers listen on 127.0.0.1, so sluice reaches them over TCP).
 *
 * Settings on both sides: idempotent, acks=all, linger 5 ms, batch.num.messages 10000, batch.size 1 MiB,
 * no message timeout, no compression, no headers (-H adds sluice's headers on both sides); keys are the
 * 11-byte device ids of 1000 devices, payloads 180 bytes. A run ends when every delivery report is in.
 * The mock keeps only ~5 MiB per partition: nobody reads back here, the tests verify. The last line is the
 * one a script reads: medians over the runs, and the peak RSS of the sluice process tree (wait4).
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "common/sl.h"

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

/* The raw limit: one producer, same shape of messages, zero-copy payloads like the sink. */
static double run_raw(const char *brokers, uint64_t n, bool headers)
{
    rd_kafka_t *rk = raw_producer(brokers);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, "bench", NULL);
    static char payload[PAYLOAD], keys[DEVICES][12];
    memset(payload, 'x', sizeof payload);
    for (int d = 0; d < DEVICES; d++)
        snprintf(keys[d], sizeof keys[d], "dev-%07d", d);
    g_delivered = g_failed = 0;
    uint64_t t0 = sl_now_ns();
    for (uint64_t i = 0; i < n;) {
        rd_kafka_headers_t *h = NULL;
        if (headers) {
            h = rd_kafka_headers_new(8);
            rd_kafka_header_add(h, "mqtt_topic", -1, "fleet/dev-0000042/telemetry", -1);
            rd_kafka_header_add(h, "mqtt_qos", -1, "1", 1);
            rd_kafka_header_add(h, "received_ns", -1, "1795619255282188584", -1);
            rd_kafka_header_add(h, "device_id", -1, keys[i % DEVICES], 11);
        }
        rd_kafka_resp_err_t err =
            rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(0), RD_KAFKA_V_VALUE(payload, PAYLOAD),
                              RD_KAFKA_V_KEY(keys[i % DEVICES], 11), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            i++;
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
    if (g_delivered != n || g_failed) {
        fprintf(stderr, "raw: %llu delivered, %llu failed of %llu\n", (unsigned long long)g_delivered,
                (unsigned long long)g_failed, (unsigned long long)n);
        return 0;
    }
    return (double)n / secs;
}

/*
 * sluice runs are started by a spawner process forked at the very start of main, while this process is
 * still small: a fork (or vfork) from here later would count this process's pages (the mock cluster, the
 * encoded lines) in the child's peak RSS before its exec. Requests and answers go over two pipes.
 */
static int g_spawn_req = -1, g_spawn_ans = -1;

static void spawner_loop(int req, int ans)
{
    char cfg[600];
    while (read(req, cfg, sizeof cfg) == (ssize_t)sizeof cfg) {
        double res[2] = {0, 0};
        uint64_t t0 = sl_now_ns();
        pid_t pid = fork();
        if (pid == 0) {
            execl(cfg + 300, cfg + 300, "run", "-q", "-c", cfg, (char *)NULL);
            _exit(127);
        }
        int status;
        struct rusage ru;
        if (pid > 0 && wait4(pid, &status, 0, &ru) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0)
            res[0] = (double)(sl_now_ns() - t0) / 1e9, res[1] = (double)ru.ru_maxrss;
        else
            fprintf(stderr, "sluice failed (status %d)\n", status);
        if (write(ans, res, sizeof res) != (ssize_t)sizeof res)
            break;
    }
    _exit(0);
}

static void spawner_start(void)
{
    int req[2], ans[2];
    if (pipe(req) != 0 || pipe(ans) != 0)
        exit(1);
    if (fork() == 0) {
        close(req[1]), close(ans[0]);
        spawner_loop(req[0], ans[1]);
    }
    close(req[0]), close(ans[1]);
    g_spawn_req = req[1], g_spawn_ans = ans[0];
}

/* Runs sluice on cfg; returns events/s (0 on failure) and the peak RSS of its process tree. */
static double run_sluice(const char *sluice, const char *cfg, uint64_t n, long *rss_kb)
{
    char msg[600] = {0};
    snprintf(msg, 300, "%s", cfg);
    snprintf(msg + 300, 300, "%s", sluice);
    double res[2];
    if (write(g_spawn_req, msg, sizeof msg) != (ssize_t)sizeof msg ||
        read(g_spawn_ans, res, sizeof res) != (ssize_t)sizeof res || res[0] <= 0)
        return 0;
    *rss_kb = (long)res[1];
    return (double)n / res[0];
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    spawner_start();
    uint64_t n = 1000 * 1000;
    int runs = 3, c;
    bool headers = false;
    const char *sluice = "build/sluice";
    /* The sink's input ring bounds the events in flight to Kafka (they stay in it until their delivery
     * report): 16 MiB holds ~60k of these events, several of librdkafka's batches. */
    const char *capacity = "16MiB";
    while ((c = getopt(argc, argv, "n:r:s:Hc:")) != -1) {
        switch (c) {
        case 'n': n = strtoull(optarg, NULL, 10); break;
        case 'r': runs = atoi(optarg); break;
        case 's': sluice = optarg; break;
        case 'H': headers = true; break;
        case 'c': capacity = optarg; break;
        default:
            fprintf(stderr,
                    "usage: bench_kafka [-n EVENTS] [-r RUNS] [-s SLUICE_BINARY] [-H (headers)] [-c SINK_CAPACITY]\n");
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
    char cfg[] = "/tmp/sluice-bench-kafka-XXXXXX";
    FILE *f = fdopen(mkstemp(cfg), "w");
    fprintf(f,
            "pipeline: { name: bench-kafka }\n"
            "metrics: { summary_interval: 0s }\n"
            "sources: [ { name: fleet, type: generator, count: %llu, devices: %d, payload_size: %d } ]\n"
            "sinks: [ { name: out, type: kafka, from: fleet, brokers: '%s', topic: bench, headers: %s,\n"
            "           capacity: %s, max_demand: 5000 } ]\n",
            (unsigned long long)n, DEVICES, PAYLOAD, brokers, headers ? "true" : "false", capacity);
    fclose(f);
    double sl[99], raw[99];
    long rss = 0;
    for (int r = 0; r < runs; r++) {
        long rk = 0;
        raw[r] = run_raw(brokers, n, headers);
        sl[r] = run_sluice(sluice, cfg, n, &rk);
        rss = rk > rss ? rk : rss;
        printf("run %d: sluice %.2fM events/s, raw librdkafka %.2fM events/s, ratio %.2f, peak RSS %ld kB\n", r + 1,
               sl[r] / 1e6, raw[r] / 1e6, raw[r] > 0 ? sl[r] / raw[r] : 0, rk);
        fflush(stdout);
    }
    unlink(cfg);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(host);
    double ms = median(sl, runs), mr = median(raw, runs);
    printf("kafka%s: events_per_s=%.0f raw_events_per_s=%.0f ratio=%.2f peak_rss_kb=%ld\n", headers ? "_headers" : "",
           ms, mr, mr > 0 ? ms / mr : 0, rss);
    return ms > 0 && mr > 0 ? 0 : 1;
}
