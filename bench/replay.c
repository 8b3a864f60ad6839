/*
 * bench/run replay: a capture of sensor messages from `sluice gen`, replayed as fast as demand allows
 * (replay source -> null sink, 2 worker processes, through the real binary), against the raw limit measured
 * in the same run: the same file read record by record with the capture reader in one process, nothing
 * else done. The file is in the page cache for both (the raw read goes first).
 *
 * Each run prints its figures; the last line is the one a script reads: medians over the runs and the
 * memory of the sluice process tree (bench/common/bench.h).
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/common/bench.h"
#include "ingest/capture/capture.h"

/* The raw limit: every record read, its payload touched. */
static double run_raw(const char *file, uint64_t n)
{
    sl_cap_reader_t *rd;
    if (sl_cap_reader_open(file, &rd) != 0)
        return 0;
    uint64_t t0 = sl_now_ns(), got = 0, sum = 0;
    sl_cap_rec_t r;
    while (sl_cap_reader_next(rd, &r) == 0) {
        sum += r.payload_len + r.payload[r.payload_len / 2];
        got++;
    }
    double secs = (double)(sl_now_ns() - t0) / 1e9;
    sl_cap_reader_destroy(rd);
    if (got != n || sum == 0) {
        fprintf(stderr, "raw: read %llu of %llu records\n", (unsigned long long)got, (unsigned long long)n);
        return 0;
    }
    return (double)n / secs;
}

static double run_replay(const char *sluice, const char *file, const char *cfg, uint64_t n, sl_bench_proc_t *pr)
{
    char *argv[] = {(char *)sluice, "replay", (char *)file, "-c", (char *)cfg, "--speed", "max", "-q", NULL};
    return sl_bench_spawn(argv, NULL, pr) == 0 ? (double)n / pr->secs : 0;
}

int main(int argc, char **argv)
{
    sl_bench_spawner_start();
    const char *sluice = "build-bench/sluice", *dir = "/tmp";
    uint64_t n = 1000000;
    int runs = 5, c;
    bool gzip = false;
    while ((c = getopt(argc, argv, "s:n:r:d:z")) != -1) {
        switch (c) {
        case 's': sluice = optarg; break;
        case 'n': n = strtoull(optarg, NULL, 10); break;
        case 'r': runs = atoi(optarg); break;
        case 'd': dir = optarg; break;
        case 'z': gzip = true; break;
        default: fprintf(stderr, "usage: bench_replay [-s SLUICE] [-n MESSAGES] [-r RUNS] [-d DIR] [-z]\n"); return 2;
        }
    }
    if (runs < 1 || runs > 64 || n == 0)
        return 2;
    char file[512], cfg[512], count[32];
    snprintf(file, sizeof file, "%s/sluice-bench-replay-%d.cap%s", dir, (int)getpid(), gzip ? ".gz" : "");
    snprintf(cfg, sizeof cfg, "%s/sluice-bench-replay-%d.yaml", dir, (int)getpid());
    snprintf(count, sizeof count, "%llu", (unsigned long long)n);
    FILE *f = fopen(cfg, "w");
    if (f == NULL)
        return 1;
    fprintf(f, "pipeline: { name: bench-replay }\nmetrics: { enabled: false, summary_interval: 0s }\n"
               "sources: [ { name: capture, type: generator } ]\n"
               "sinks: [ { name: out, type: null, from: capture } ]\n");
    fclose(f);
    char *gen[] = {(char *)sluice, "gen", "-o", file, "-n", count, "-d", "1000", "-p", "sensor", NULL};
    sl_bench_proc_t pr, mem = {0};
    int rc = sl_bench_spawn(gen, NULL, &pr);
    double ev[64], raw[64];
    for (int i = 0; rc == 0 && i < runs; i++) {
        raw[i] = run_raw(file, n);
        ev[i] = run_replay(sluice, file, cfg, n, &pr);
        sl_bench_mem_max(&mem, &pr);
        printf(
            "run %d: replay %.0f events/s, raw read %.0f events/s, peak RSS %ld kB (one process), %ld kB PSS (all)\n",
            i + 1, ev[i], raw[i], pr.max_rss_kb, pr.pss_kb);
        fflush(stdout);
        if (ev[i] == 0 || raw[i] == 0)
            rc = 1;
    }
    unlink(file);
    unlink(cfg);
    if (rc != 0)
        return 1;
    sl_bench_result("replay", sl_bench_median(ev, runs), sl_bench_median(raw, runs), &mem, NULL);
    return 0;
}
