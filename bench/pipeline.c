/*
 * bench/run pipeline: the headline path, replay -> decode -> file sink, through the real binary:
 * a capture of n sensor messages from `sluice gen` (~180-byte JSON), replayed as fast as demand allows,
 * every payload validated as JSON by the decode stage, written as NDJSON to one file (sync: none, so
 * neither side fsyncs). Three worker processes and the master on the 2-core machine.
 *
 * The raw limit, same run: the same file read with the capture reader and written as the same NDJSON
 * lines (the file sink's own encoder) with fwrite, in one process, with nothing else done (no JSON
 * validation, no channels). The capture is in the page cache for both (the raw side goes first).
 *
 * bench/run latency (-L): the same pipeline with metrics.latency on, replaying at the recorded pace a
 * capture recorded at half the maximum rate measured first (the median of the throughput runs, or -R);
 * latency is from the replay of each message (its ingest time) to its acknowledgement by the file sink
 * (written, sync: none), p50/p99/p999 from the sink's histogram in the final log line.
 *
 * The last line is the one a script reads (bench/common/bench.h): medians over the runs.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/common/bench.h"
#include "ingest/capture/capture.h"
#include "sinks/file/file_int.h"

typedef struct opts_s {
    const char *sluice, *dir, *sync;
    uint64_t n;
    int runs, decoders, batch; /* batch: the file sink's batch_size */
    double rate;               /* latency mode: the maximum rate to take half of; 0 = measure it */
    double secs;               /* latency mode: length of the paced replay */
    bool latency;
} opts_t;

/* The raw limit: read every record, encode the file sink's NDJSON line, fwrite it. */
static double run_raw(const char *file, const char *out, uint64_t n)
{
    sl_cap_reader_t *rd;
    if (sl_cap_reader_open(file, &rd) != 0)
        return 0;
    FILE *f = fopen(out, "w");
    if (f == NULL) {
        sl_cap_reader_destroy(rd);
        return 0;
    }
    sl_buf_t buf = {0};
    uint64_t t0 = sl_now_ns(), got = 0;
    sl_cap_rec_t r;
    while (sl_cap_reader_next(rd, &r) == 0) {
        sl_event_t ev = {.topic = r.topic,
                         .topic_len = r.topic_len,
                         .payload = r.payload,
                         .payload_len = r.payload_len,
                         .ingest_ns = r.ts_ns};
        sl__file_encode(&buf, SL_FILE_FMT_NDJSON, &ev);
        if (buf.len >= (1u << 18)) {
            fwrite(buf.p, 1, buf.len, f);
            buf.len = 0;
        }
        got++;
    }
    fwrite(buf.p, 1, buf.len, f);
    int rc = fclose(f);
    double secs = (double)(sl_now_ns() - t0) / 1e9;
    sl__buf_free(&buf);
    sl_cap_reader_destroy(rd);
    unlink(out);
    if (got != n || rc != 0) {
        fprintf(stderr, "raw: read %llu of %llu records\n", (unsigned long long)got, (unsigned long long)n);
        return 0;
    }
    return (double)n / secs;
}

static int write_config(const char *cfg, const char *outdir, const opts_t *o, bool latency)
{
    FILE *f = fopen(cfg, "w");
    if (f == NULL)
        return -1;
    fprintf(f,
            "pipeline: { name: bench-pipeline }\n"
            "metrics: { enabled: false, summary_interval: 0s, latency: %s }\n"
            "sources: [ { name: capture, type: generator } ]\n"
            "stages: [ { name: decode, type: decode, from: capture, concurrency: %d } ]\n"
            "sinks: [ { name: out, type: file, from: decode, dir: '%s', path: 'bench.ndjson', sync: %s,\n"
            "           batch_size: %d, rotate_size: 1TiB } ]\n",
            latency ? "true" : "false", o->decoders, outdir, o->sync, o->batch);
    return fclose(f);
}

static int gen_capture(const opts_t *o, const char *file, uint64_t n, double rate)
{
    char count[32], r[32];
    snprintf(count, sizeof count, "%llu", (unsigned long long)n);
    snprintf(r, sizeof r, "%.0f", rate);
    char *gen[] = {(char *)o->sluice, "gen", "-o", (char *)file, "-n", count, "-d", "1000", "-p",
                   "sensor",          "-r",  r,    NULL};
    sl_bench_proc_t pr;
    return sl_bench_spawn(gen, NULL, &pr);
}

static void rm_rf(const char *dir)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench: cannot remove %s\n", dir);
}

int main(int argc, char **argv)
{
    sl_bench_spawner_start();
    opts_t o = {.sluice = "build-bench/sluice",
                .dir = "/tmp",
                .sync = "none",
                .n = 1000000,
                .runs = 3,
                .decoders = 1,
                .batch = 1000,
                .secs = 4};
    int c;
    while ((c = getopt(argc, argv, "s:d:n:r:c:y:b:LR:t:")) != -1) {
        switch (c) {
        case 's': o.sluice = optarg; break;
        case 'd': o.dir = optarg; break;
        case 'n': o.n = strtoull(optarg, NULL, 10); break;
        case 'r': o.runs = atoi(optarg); break;
        case 'c': o.decoders = atoi(optarg); break;
        case 'y': o.sync = optarg; break;
        case 'b': o.batch = atoi(optarg); break;
        case 'L': o.latency = true; break;
        case 'R': o.rate = atof(optarg); break;
        case 't': o.secs = atof(optarg); break;
        default:
            fprintf(stderr,
                    "usage: bench_pipeline [-s SLUICE] [-d DIR] [-n MESSAGES] [-r RUNS] [-c DECODERS] [-y SYNC] [-b "
                    "BATCH]\n"
                    "                      [-L (latency at half the maximum rate) [-R MAX_RATE] [-t SECONDS]]\n");
            return 2;
        }
    }
    if (o.runs < 1 || o.runs > 64 || o.n == 0 || o.decoders < 1 || o.batch < 1)
        return 2;
    char file[512], cfg[512], outdir[512], rawout[512], log[512];
    int pid = (int)getpid();
    snprintf(file, sizeof file, "%s/sluice-bench-pipeline-%d.cap", o.dir, pid);
    snprintf(cfg, sizeof cfg, "%s/sluice-bench-pipeline-%d.yaml", o.dir, pid);
    snprintf(outdir, sizeof outdir, "%s/sluice-bench-pipeline-%d.out", o.dir, pid);
    snprintf(rawout, sizeof rawout, "%s/sluice-bench-pipeline-%d.raw", o.dir, pid);
    snprintf(log, sizeof log, "%s/sluice-bench-pipeline-%d.log", o.dir, pid);
    double ev[64], raw[64];
    sl_bench_proc_t pr, mem = {0};
    int rc = 0;
    double max = o.rate;
    if (!o.latency || max <= 0) {
        /* Throughput: as fast as demand allows. */
        rc = gen_capture(&o, file, o.n, 100000) || write_config(cfg, outdir, &o, false);
        for (int i = 0; rc == 0 && i < o.runs; i++) {
            raw[i] = run_raw(file, rawout, o.n);
            char *argv_[] = {(char *)o.sluice, "replay", file, "-c", cfg, "--speed", "max", "-q", NULL};
            ev[i] = sl_bench_spawn(argv_, NULL, &pr) == 0 ? (double)o.n / pr.secs : 0;
            rm_rf(outdir);
            sl_bench_mem_max(&mem, &pr);
            printf("run %d: replay -> decode -> file %.0f events/s, raw read + write %.0f events/s, ratio %.2f, peak "
                   "RSS %ld kB (one process), %ld kB PSS (all %u)\n",
                   i + 1, ev[i], raw[i], raw[i] > 0 ? ev[i] / raw[i] : 0, pr.max_rss_kb, pr.pss_kb, pr.nprocs);
            fflush(stdout);
            rc |= ev[i] == 0 || raw[i] == 0;
        }
        unlink(file);
        max = rc == 0 ? sl_bench_median(ev, o.runs) : 0;
        if (!o.latency && rc == 0)
            sl_bench_result("pipeline", max, sl_bench_median(raw, o.runs), &mem, NULL);
    }
    if (o.latency && rc == 0 && max > 0) {
        /* Latency at half the maximum: a capture recorded at that rate, replayed at its pace. */
        double rate = max / 2;
        uint64_t n = (uint64_t)(rate * o.secs);
        double lat[3][64], got[64];
        memset(&mem, 0, sizeof mem);
        rc = gen_capture(&o, file, n, rate) || write_config(cfg, outdir, &o, true);
        for (int i = 0; rc == 0 && i < o.runs; i++) {
            char *argv_[] = {(char *)o.sluice, "replay", file, "-c", cfg, "--speed", "1", NULL};
            double us[3];
            if (sl_bench_spawn(argv_, log, &pr) != 0 || sl_bench_latency(log, "out", us) != 0) {
                fprintf(stderr, "bench: no latency line in %s\n", log);
                rc = 1;
                break;
            }
            rm_rf(outdir);
            got[i] = (double)n / pr.secs;
            for (int q = 0; q < 3; q++)
                lat[q][i] = us[q];
            sl_bench_mem_max(&mem, &pr);
            printf("latency run %d: offered %.0f events/s (half of %.0f) for %.1f s, p50 %.0f us, p99 %.0f us, p999 "
                   "%.0f us, peak RSS %ld kB (one process), %ld kB PSS (all)\n",
                   i + 1, rate, max, o.secs, us[0], us[1], us[2], pr.max_rss_kb, pr.pss_kb);
            fflush(stdout);
        }
        unlink(file);
        unlink(log);
        if (rc == 0) {
            char extra[160];
            snprintf(extra, sizeof extra, "p50_us=%.0f p99_us=%.0f p999_us=%.0f", sl_bench_median(lat[0], o.runs),
                     sl_bench_median(lat[1], o.runs), sl_bench_median(lat[2], o.runs));
            /* events_per_s: the rate achieved over the whole run (start-up included); raw: the maximum. */
            sl_bench_result("latency", sl_bench_median(got, o.runs), max, &mem, extra);
        }
    }
    unlink(cfg);
    return rc;
}
