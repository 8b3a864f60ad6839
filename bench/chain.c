/*
 * bench/run chain: a 4-process chain (generator -> passthrough -> passthrough -> null) through the real
 * sluice binary, against the raw limit measured in the same run: the same records moved through one ring
 * from one process to another with nothing else done.
 *
 * Both sides move records of the same shape: a 180-byte JSON payload plus the topic, key and attribute
 * the generator attaches (274 bytes with the header). Each run prints its figures; the last line is the
 * one a script reads: medians over the runs, and the memory of the sluice process tree
 * (bench/common/bench.h).
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backpressure/backpressure.h"
#include "bench/common/bench.h"

#define TOPIC "fleet/dev-0000042/telemetry"
#define KEY "dev-0000042"
#define PAYLOAD 180
#define ATTRS 24

static bool raw_producer_ready(void *arg) { return !sl_chan_blocked(arg, 512); }
static bool raw_consumer_ready(void *arg) { return sl_chan_readable(arg); }

/* The raw limit: one producer process, one consumer process, one ring, no demand, no stages. */
static double run_raw(uint64_t n, size_t capacity)
{
    sl_chan_t *ch;
    if (sl_chan_create("raw", capacity, &ch) != 0)
        return 0;
    sl_chan_consumer_attach(ch);
    sl_chan_ask(ch, UINT64_MAX / 2);
    uint8_t body[sizeof TOPIC - 1 + sizeof KEY - 1 + ATTRS + PAYLOAD];
    memset(body, 'x', sizeof body);
    uint64_t t0 = sl_now_ns();
    pid_t pid = fork();
    if (pid == 0) {
        sl_chan_producer_attach(ch);
        uint64_t i = 0;
        while (i < n) {
            sl_rec_t *r;
            if (sl_chan_reserve(ch, sizeof(sl_rec_t) + sizeof body, &r) == 0) {
                r->topic_len = sizeof TOPIC - 1;
                r->key_len = sizeof KEY - 1;
                r->attr_len = ATTRS;
                r->payload_len = PAYLOAD;
                memcpy(r + 1, body, sizeof body);
                sl_chan_push(ch);
                if (++i % 64 == 0)
                    sl_chan_publish(ch);
                continue;
            }
            sl_chan_publish(ch);
            sl_chan_kick(ch);
            sl_bell_wait(sl_chan_producer_bell(ch), raw_producer_ready, ch, 100 * SL_NS_PER_MS);
        }
        sl_chan_close(ch);
        _exit(0);
    }
    uint64_t got = 0, sum = 0;
    for (;;) {
        const sl_rec_t *r;
        int rc = sl_chan_next(ch, &r);
        if (rc == 0) {
            sum += r->payload_len;
            if (++got % 64 == 0)
                sl_chan_commit(ch, sl_chan_read_pos(ch), sl_chan_read_events(ch));
            continue;
        }
        if (rc == SL_EOF)
            break;
        sl_chan_commit(ch, sl_chan_read_pos(ch), sl_chan_read_events(ch));
        sl_bell_wait(sl_chan_consumer_bell(ch), raw_consumer_ready, ch, 100 * SL_NS_PER_MS);
    }
    double secs = (double)(sl_now_ns() - t0) / 1e9;
    waitpid(pid, NULL, 0);
    sl_chan_destroy(ch);
    if (got != n || sum != n * PAYLOAD) {
        fprintf(stderr, "raw: moved %llu of %llu records\n", (unsigned long long)got, (unsigned long long)n);
        return 0;
    }
    return (double)n / secs;
}

int main(int argc, char **argv)
{
    sl_bench_spawner_start();
    uint64_t n = 10 * 1000 * 1000;
    int runs = 5;
    const char *sluice = "build/sluice";
    bool raw_only = false;
    unsigned max_demand = 1000;
    int c;
    while ((c = getopt(argc, argv, "n:r:s:Rd:")) != -1) {
        switch (c) {
        case 'd': max_demand = (unsigned)atoi(optarg); break;
        case 'R': raw_only = true; break;
        case 'n': n = strtoull(optarg, NULL, 10); break;
        case 'r': runs = atoi(optarg); break;
        case 's': sluice = optarg; break;
        default:
            fprintf(stderr,
                    "usage: bench_chain [-n EVENTS] [-r RUNS] [-s SLUICE_BINARY] [-d MAX_DEMAND] [-R (raw only)]\n");
            return 2;
        }
    }
    if (runs < 1 || runs > 99)
        runs = 5;
    char cfg[] = "/tmp/sluice-bench-chain-XXXXXX";
    int fd = mkstemp(cfg);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL) {
        perror("mkstemp");
        return 1;
    }
    fprintf(f,
            "pipeline: { name: bench-chain }\n"
            "metrics: { enabled: false, summary_interval: 0s }\n"
            "channels: { max_demand: %u }\n"
            "sources: [ { name: fleet, type: generator, count: %llu, devices: 1000, payload_size: %d } ]\n"
            "stages:\n"
            "  - { name: relay1, type: passthrough, from: fleet }\n"
            "  - { name: relay2, type: passthrough, from: relay1 }\n"
            "sinks: [ { name: out, type: null, from: relay2 } ]\n",
            max_demand, (unsigned long long)n, PAYLOAD);
    fclose(f);
    double chain[99], raw[99];
    sl_bench_proc_t mem = {0};
    for (int r = 0; r < runs; r++) {
        sl_bench_proc_t pr = {0};
        raw[r] = run_raw(n, 1 << 20);
        chain[r] = !raw_only && sl_bench_run_sluice(sluice, cfg, NULL, &pr) == 0 ? (double)n / pr.secs : 0;
        sl_bench_mem_max(&mem, &pr);
        printf("run %d: chain %.2fM events/s, raw %.2fM events/s, ratio %.2f, peak RSS %ld kB (one process), %ld kB "
               "PSS (all)\n",
               r + 1, chain[r] / 1e6, raw[r] / 1e6, raw[r] > 0 ? chain[r] / raw[r] : 0, pr.max_rss_kb, pr.pss_kb);
        fflush(stdout);
    }
    unlink(cfg);
    double mc = sl_bench_median(chain, runs), mr = sl_bench_median(raw, runs);
    sl_bench_result("chain", mc, mr, &mem, NULL);
    return mc > 0 && mr > 0 ? 0 : 1;
}
