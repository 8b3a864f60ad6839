/*
 * bench/run replay: a capture of sensor messages from `sluice gen`, replayed as fast as demand allows
 * (replay source -> null sink, 2 worker processes, through the real binary), against the raw limit measured
 * in the same run: the same file read record by record with the capture reader in one process, nothing
 * else done. The file is in the page cache for both (the raw read goes first).
 *
 * Each run prints its figures; the last line is the one a script reads: medians over the runs and the
 * peak RSS of the sluice process tree (wait4's ru_maxrss, what /usr/bin/time -v reports).
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ingest/capture/capture.h"

static int run_cmd(char *const argv[], struct rusage *ru)
{
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    if (wait4(pid, &status, 0, ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "replay: %s %s failed (status 0x%x)\n", argv[0], argv[1], status);
        return -1;
    }
    return 0;
}

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

static double run_replay(const char *sluice, const char *file, const char *cfg, uint64_t n, long *rss_kb)
{
    char *argv[] = {(char *)sluice, "replay", (char *)file, "-c", (char *)cfg, "--speed", "max", "-q", NULL};
    struct rusage ru;
    uint64_t t0 = sl_now_ns();
    if (run_cmd(argv, &ru) != 0)
        return 0;
    *rss_kb = ru.ru_maxrss;
    return (double)n / ((double)(sl_now_ns() - t0) / 1e9);
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
    struct rusage ru;
    int rc = run_cmd(gen, &ru);
    double ev[64], raw[64];
    long rss = 0, peak = 0;
    for (int i = 0; rc == 0 && i < runs; i++) {
        raw[i] = run_raw(file, n);
        ev[i] = run_replay(sluice, file, cfg, n, &rss);
        peak = rss > peak ? rss : peak;
        printf("run %d: replay %.0f events/s, raw read %.0f events/s, peak RSS %ld KiB\n", i + 1, ev[i], raw[i], rss);
        fflush(stdout);
        if (ev[i] == 0 || raw[i] == 0)
            rc = 1;
    }
    unlink(file);
    unlink(cfg);
    if (rc != 0)
        return 1;
    double e = median(ev, runs), r = median(raw, runs);
    printf("replay: events_per_s=%.0f raw_events_per_s=%.0f ratio=%.2f peak_rss_kb=%ld\n", e, r, e / r, peak);
    return 0;
}
