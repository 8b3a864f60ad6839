/*
 * bench/run files: sluice's file sink (generator -> file, the real binary) writing NDJSON plain, gzip
 * level 1 and 6, and zstd level 1, against the raw limit in the same run.
 *
 * What each side does, so that they compare like with like:
 *  - sluice: the generator process makes each event and publishes it into the sink's channel; the sink
 *    process takes it, encodes the NDJSON envelope (topic, key, qos, received_ns, attributes, payload
 *    checked as JSON and inlined), and per batch of 1000 events writes one pwrite (plain), one gzip member
 *    (deflate, same level) or the next part of the file's zstd frame (same level, flushed, with its
 *    checksum at the end), sync: none, one file.
 *  - raw: one process, events already built in memory in the channel's record layout (the same topic,
 *    key, attribute and 180-byte payload as the generator's); it encodes each with the sink's own encoder
 *    (the same bytes) into a 256 KiB buffer and writes that with fwrite, gzwrite (one gzip stream, same
 *    level) or a zstd stream (same level, with a checksum), one file, no fsync.
 * So the raw side does the encoding and the writing; what it does not do is generate the events and move
 * them between processes. Each run deletes its output. The last line per variant is the one a script
 * reads: medians over the runs and the memory of the sluice process tree (bench/common/bench.h), and
 * the CPU per event (user + system) of the sluice tree and of the raw side, steadier than throughput when
 * the machine is loaded. -V NAME runs only the variants whose name contains NAME.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "bench/common/bench.h"
#include "sinks/file/file_int.h"

#define PAYLOAD 180
#define DEVICES 1000
#define CHUNK (256u << 10)

typedef struct variant_s {
    const char *name, *compression, *ext;
    int level;
} variant_t;

typedef struct raw_out_s {
    FILE *f;
    gzFile gz;
    ZSTD_CCtx *zc;
    uint8_t *zbuf;
    size_t zcap;
} raw_out_t;

/* Writes buf[0..len) to the raw output; last ends the zstd frame. */
static void raw_write(raw_out_t *o, const uint8_t *buf, size_t len, bool last)
{
    if (o->gz) {
        gzwrite(o->gz, buf, (unsigned)len);
        return;
    }
    if (o->zc == NULL) {
        fwrite(buf, 1, len, o->f);
        return;
    }
    ZSTD_inBuffer in = {buf, len, 0};
    size_t left;
    do {
        ZSTD_outBuffer out = {o->zbuf, o->zcap, 0};
        left = ZSTD_compressStream2(o->zc, &out, &in, last ? ZSTD_e_end : ZSTD_e_continue);
        fwrite(o->zbuf, 1, out.pos, o->f);
    } while (last ? left != 0 : in.pos < in.size);
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* The raw limit: encode every record with the sink's encoder, write in CHUNK-sized pieces. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double run_raw(const variant_t *v, const sl_buf_t *recs, uint64_t n, const char *path, uint64_t *bytes,
                      uint64_t *file_bytes, double *cpu)
{
    double c0 = cpu_now();
    raw_out_t o = {0};
    sl_buf_t enc = {0};
    if (sl__buf_reserve(&enc, CHUNK + 65536) != 0)
        exit(1);
    uint64_t t0 = sl_now_ns();
    if (strcmp(v->compression, "gzip") == 0) {
        char mode[8];
        snprintf(mode, sizeof mode, "wb%d", v->level);
        o.gz = gzopen(path, mode);
        gzbuffer(o.gz, 1 << 17);
    } else {
        o.f = fopen(path, "w");
    }
    if (strcmp(v->compression, "zstd") == 0) {
        o.zc = ZSTD_createCCtx();
        ZSTD_CCtx_setParameter(o.zc, ZSTD_c_compressionLevel, v->level);
        ZSTD_CCtx_setParameter(o.zc, ZSTD_c_checksumFlag, 1);
        o.zcap = ZSTD_CStreamOutSize();
        o.zbuf = malloc(o.zcap);
    }
    *bytes = 0;
    for (size_t off = 0; off < recs->len;) {
        const sl_rec_t *r = (const sl_rec_t *)(recs->p + off);
        sl_event_t ev;
        sl_event_from_rec(&ev, r);
        sl__file_encode(&enc, SL_FILE_FMT_NDJSON, &ev);
        off += SL_ALIGN_UP((size_t)r->len, SL_REC_ALIGN);
        if (enc.len >= CHUNK || off >= recs->len) {
            raw_write(&o, enc.p, enc.len, off >= recs->len);
            *bytes += enc.len;
            enc.len = 0;
        }
    }
    if (o.gz)
        gzclose(o.gz);
    else
        fclose(o.f);
    double secs = (double)(sl_now_ns() - t0) / 1e9;
    *cpu = cpu_now() - c0;
    ZSTD_freeCCtx(o.zc);
    free(o.zbuf);
    sl__buf_free(&enc);
    *file_bytes = file_size(path);
    unlink(path);
    return (double)n / secs;
}

int main(int argc, char **argv)
{
    sl_bench_spawner_start();
    uint64_t n = 1000 * 1000;
    int runs = 3, c;
    const char *sluice = "build/sluice", *dir = "/tmp", *only = NULL;
    while ((c = getopt(argc, argv, "n:r:s:d:V:")) != -1) {
        switch (c) {
        case 'n': n = strtoull(optarg, NULL, 10); break;
        case 'r': runs = atoi(optarg); break;
        case 's': sluice = optarg; break;
        case 'd': dir = optarg; break;
        case 'V': only = optarg; break; /* only the variants whose name contains this (e.g. zstd) */
        default:
            fprintf(stderr, "usage: bench_files [-n EVENTS] [-r RUNS] [-s SLUICE_BINARY] [-d DIR] [-V VARIANT]\n");
            return 2;
        }
    }
    if (runs < 1 || runs > 99)
        runs = 3;
    static const variant_t variants[] = {
        {"files_plain", "none", "ndjson", 0},
        {"files_gzip1", "gzip", "ndjson.gz", 1},
        {"files_gzip6", "gzip", "ndjson.gz", 6},
        {"files_zstd1", "zstd", "ndjson.zst", 1},
    };
    sl_buf_t recs = {0};
    recs.p = sl_bench_gen_records(n, DEVICES, PAYLOAD, &recs.len);
    recs.cap = recs.len;
    printf("sluice: generator -> file sink (NDJSON envelope, batches of 1000, sync none, one file)\n"
           "raw:    the same records from memory, encoded by the sink's encoder, written by fwrite / gzwrite / "
           "a zstd stream at the same level (one process)\n");
    char out[200], raw_path[220], cfg[220];
    snprintf(out, sizeof out, "%s/sluice-bench-files-%d", dir, (int)getpid());
    snprintf(raw_path, sizeof raw_path, "%s.raw", out);
    snprintf(cfg, sizeof cfg, "%s.yaml", out);
    int rc = 0;
    for (size_t k = 0; k < SL_ARRAY_LEN(variants); k++) {
        const variant_t *v = &variants[k];
        if (only != NULL && strstr(v->name, only) == NULL)
            continue;
        FILE *f = fopen(cfg, "w");
        fprintf(f,
                "pipeline: { name: bench-files }\n"
                "metrics: { enabled: false, summary_interval: 0s }\n"
                "sources: [ { name: fleet, type: generator, count: %llu, devices: %d, payload_size: %d } ]\n"
                "sinks: [ { name: out, type: file, from: fleet, dir: '%s', path: 'bench.%s', sync: none,\n"
                "           compression: %s, compression_level: %d, rotate_size: 1TiB } ]\n",
                (unsigned long long)n, DEVICES, PAYLOAD, out, v->ext, v->compression, v->level);
        fclose(f);
        double sl[99], raw[99], sl_cpu[99], raw_cpu[99];
        sl_bench_proc_t mem = {0};
        for (int r = 0; r < runs; r++) {
            sl_bench_proc_t pr;
            uint64_t raw_bytes = 0, raw_file = 0;
            raw[r] = run_raw(v, &recs, n, raw_path, &raw_bytes, &raw_file, &raw_cpu[r]);
            sl[r] = sl_bench_run_sluice(sluice, cfg, NULL, &pr) == 0 ? (double)n / pr.secs : 0;
            /* CPU per event (user + system, the whole sluice tree vs the raw process): steadier than
             * throughput on a loaded machine. */
            sl_cpu[r] = pr.cpu_secs * 1e9 / (double)n, raw_cpu[r] = raw_cpu[r] * 1e9 / (double)n;
            char sl_path[300];
            snprintf(sl_path, sizeof sl_path, "%s/bench-0-0.%s", out, v->ext);
            uint64_t sl_file = file_size(sl_path);
            char rm[700];
            snprintf(rm, sizeof rm, "rm -rf '%s'", out);
            if (system(rm) != 0)
                rc = 1;
            sl_bench_mem_max(&mem, &pr);
            printf("%s run %d: sluice %.2fM events/s, raw %.2fM events/s, ratio %.2f, peak RSS %ld kB (one process), "
                   "%ld kB PSS (all); CPU ns/event sluice %.0f, raw %.0f; file bytes sluice %llu, raw %llu (NDJSON "
                   "%llu)\n",
                   v->name, r + 1, sl[r] / 1e6, raw[r] / 1e6, raw[r] > 0 ? sl[r] / raw[r] : 0, pr.max_rss_kb, pr.pss_kb,
                   sl_cpu[r], raw_cpu[r], (unsigned long long)sl_file, (unsigned long long)raw_file,
                   (unsigned long long)raw_bytes);
            fflush(stdout);
        }
        double ms = sl_bench_median(sl, runs), mr = sl_bench_median(raw, runs);
        char extra[120];
        double cs = sl_bench_median(sl_cpu, runs), cr = sl_bench_median(raw_cpu, runs);
        snprintf(extra, sizeof extra, "cpu_ns_per_event=%.0f raw_cpu_ns_per_event=%.0f cpu_ratio=%.2f", cs, cr,
                 cs > 0 ? cr / cs : 0);
        sl_bench_result(v->name, ms, mr, &mem, extra);
        rc |= !(ms > 0 && mr > 0);
    }
    unlink(cfg);
    sl__buf_free(&recs);
    return rc;
}
