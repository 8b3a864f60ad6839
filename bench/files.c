/*
 * bench/run files: sluice's file sink (generator -> file, the real binary) writing NDJSON plain, gzip
 * level 1 and 6, and zstd level 1, against the raw limit in the same run: the same bytes (the NDJSON lines
 * the sink writes, encoded beforehand by the sink's own encoder) written with fwrite, gzwrite (zlib, same
 * level) or a zstd stream (same level), in one file, from memory.
 *
 * The sink runs with sync: none (the raw side does not fsync either), batches of 1000 events, one file
 * (rotate_size large). Each run deletes its output. The last line per variant is the one a script reads:
 * medians over the runs and the memory of the sluice process tree (bench/common/bench.h).
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "bench/common/bench.h"
#include "sinks/file/file_int.h"

#define PAYLOAD 180
#define DEVICES 1000

typedef struct variant_s {
    const char *name, *compression, *ext;
    int level;
} variant_t;

/* The NDJSON the sink writes for the generator's events, built with the sink's encoder. */
static void build_lines(uint64_t n, sl_buf_t *out)
{
    uint8_t rec[1024];
    for (uint64_t i = 0; i < n; i++) {
        char topic[40], key[12], payload[PAYLOAD + 1];
        unsigned d = (unsigned)(i % DEVICES);
        snprintf(topic, sizeof topic, "fleet/dev-%07u/telemetry", d);
        snprintf(key, sizeof key, "dev-%07u", d);
        int pl = snprintf(payload, sizeof payload,
                          "{\"device\":\"dev-%07u\",\"seq\":%-20llu,\"ts\":1795617851537,\"temp\":21.50,\"hum\":40.2,"
                          "\"bat\":3.71,\"pad\":\"",
                          d, (unsigned long long)(i / DEVICES));
        while (pl < PAYLOAD - 2)
            payload[pl++] = 'x';
        payload[pl++] = '"', payload[pl++] = '}';
        sl_rec_t *r = (sl_rec_t *)rec;
        memset(r, 0, sizeof *r);
        r->topic_len = (uint16_t)strlen(topic), r->key_len = 11, r->attr_len = 4 + 9 + 11, r->payload_len = PAYLOAD;
        r->qos = 1, r->ingest_ns = sl_wall_ns();
        uint8_t *p = (uint8_t *)(r + 1);
        memcpy(p, topic, r->topic_len), p += r->topic_len;
        memcpy(p, key, 11), p += 11;
        uint16_t nl = 9, vl = 11;
        memcpy(p, &nl, 2), memcpy(p + 2, &vl, 2), memcpy(p + 4, "device_id", 9), memcpy(p + 13, key, 11), p += 24;
        memcpy(p, payload, PAYLOAD);
        r->len = (uint32_t)sl_rec_body_len(r->topic_len, 11, 24, PAYLOAD);
        sl_event_t ev;
        sl_event_from_rec(&ev, r);
        sl__file_encode(out, SL_FILE_FMT_NDJSON, &ev);
    }
}

static double run_raw(const variant_t *v, const sl_buf_t *lines, uint64_t n, const char *path)
{
    const size_t chunk = 1 << 18;
    uint64_t t0 = sl_now_ns();
    if (strcmp(v->compression, "none") == 0) {
        FILE *f = fopen(path, "w");
        for (size_t o = 0; o < lines->len; o += chunk)
            fwrite(lines->p + o, 1, SL_MIN(chunk, lines->len - o), f);
        fclose(f);
    } else if (strcmp(v->compression, "gzip") == 0) {
        char mode[8];
        snprintf(mode, sizeof mode, "wb%d", v->level);
        gzFile gz = gzopen(path, mode);
        gzbuffer(gz, 1 << 17);
        for (size_t o = 0; o < lines->len; o += chunk)
            gzwrite(gz, lines->p + o, (unsigned)SL_MIN(chunk, lines->len - o));
        gzclose(gz);
    } else {
        FILE *f = fopen(path, "w");
        ZSTD_CCtx *zc = ZSTD_createCCtx();
        ZSTD_CCtx_setParameter(zc, ZSTD_c_compressionLevel, v->level);
        size_t cap = ZSTD_CStreamOutSize();
        uint8_t *buf = malloc(cap);
        for (size_t o = 0; o <= lines->len; o += chunk) {
            bool last = o + chunk >= lines->len;
            ZSTD_inBuffer in = {lines->p + o, last ? lines->len - o : chunk, 0};
            size_t left;
            do {
                ZSTD_outBuffer out = {buf, cap, 0};
                left = ZSTD_compressStream2(zc, &out, &in, last ? ZSTD_e_end : ZSTD_e_continue);
                fwrite(buf, 1, out.pos, f);
            } while (last ? left != 0 : in.pos < in.size);
            if (last)
                break;
        }
        free(buf);
        ZSTD_freeCCtx(zc);
        fclose(f);
    }
    double secs = (double)(sl_now_ns() - t0) / 1e9;
    unlink(path);
    return (double)n / secs;
}

int main(int argc, char **argv)
{
    sl_bench_spawner_start();
    uint64_t n = 1000 * 1000;
    int runs = 3, c;
    const char *sluice = "build/sluice", *dir = "/tmp";
    while ((c = getopt(argc, argv, "n:r:s:d:")) != -1) {
        switch (c) {
        case 'n': n = strtoull(optarg, NULL, 10); break;
        case 'r': runs = atoi(optarg); break;
        case 's': sluice = optarg; break;
        case 'd': dir = optarg; break;
        default: fprintf(stderr, "usage: bench_files [-n EVENTS] [-r RUNS] [-s SLUICE_BINARY] [-d DIR]\n"); return 2;
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
    sl_buf_t lines = {0};
    build_lines(n, &lines);
    char out[200], raw_path[220], cfg[220];
    snprintf(out, sizeof out, "%s/sluice-bench-files-%d", dir, (int)getpid());
    snprintf(raw_path, sizeof raw_path, "%s.raw", out);
    snprintf(cfg, sizeof cfg, "%s.yaml", out);
    int rc = 0;
    for (size_t k = 0; k < SL_ARRAY_LEN(variants); k++) {
        const variant_t *v = &variants[k];
        FILE *f = fopen(cfg, "w");
        fprintf(f,
                "pipeline: { name: bench-files }\n"
                "metrics: { enabled: false, summary_interval: 0s }\n"
                "sources: [ { name: fleet, type: generator, count: %llu, devices: %d, payload_size: %d } ]\n"
                "sinks: [ { name: out, type: file, from: fleet, dir: '%s', path: 'bench.%s', sync: none,\n"
                "           compression: %s, compression_level: %d, rotate_size: 1TiB } ]\n",
                (unsigned long long)n, DEVICES, PAYLOAD, out, v->ext, v->compression, v->level);
        fclose(f);
        double sl[99], raw[99];
        sl_bench_proc_t mem = {0};
        for (int r = 0; r < runs; r++) {
            sl_bench_proc_t pr;
            raw[r] = run_raw(v, &lines, n, raw_path);
            sl[r] = sl_bench_run_sluice(sluice, cfg, NULL, &pr) == 0 ? (double)n / pr.secs : 0;
            char rm[700];
            snprintf(rm, sizeof rm, "rm -rf '%s'", out);
            if (system(rm) != 0)
                rc = 1;
            sl_bench_mem_max(&mem, &pr);
            printf("%s run %d: sluice %.2fM events/s, raw %.2fM events/s, ratio %.2f, peak RSS %ld kB (one process), "
                   "%ld kB PSS (all)\n",
                   v->name, r + 1, sl[r] / 1e6, raw[r] / 1e6, raw[r] > 0 ? sl[r] / raw[r] : 0, pr.max_rss_kb,
                   pr.pss_kb);
            fflush(stdout);
        }
        double ms = sl_bench_median(sl, runs), mr = sl_bench_median(raw, runs);
        sl_bench_result(v->name, ms, mr, &mem, NULL);
        rc |= !(ms > 0 && mr > 0);
    }
    unlink(cfg);
    sl__buf_free(&lines);
    return rc;
}
