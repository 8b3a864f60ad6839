/*
 * bench/run files: sluice's file sink (generator -> file, the real binary) writing NDJSON plain, gzip
 * level 1 and 6, and zstd level 1, against the raw limit in the same run: the same bytes (the NDJSON lines
 * the sink writes, encoded beforehand by the sink's own encoder) written with fwrite, gzwrite (zlib, same
 * level) or a zstd stream (same level), in one file, from memory.
 *
 * The sink runs with sync: none (the raw side does not fsync either), batches of 1000 events, one file
 * (rotate_size large). Each run deletes its output. The last line per variant is the one a script reads:
 * medians over the runs, and the peak RSS of the sluice process tree (wait4).
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

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
                "metrics: { summary_interval: 0s }\n"
                "sources: [ { name: fleet, type: generator, count: %llu, devices: %d, payload_size: %d } ]\n"
                "sinks: [ { name: out, type: file, from: fleet, dir: '%s', path: 'bench.%s', sync: none,\n"
                "           compression: %s, compression_level: %d, rotate_size: 1TiB } ]\n",
                (unsigned long long)n, DEVICES, PAYLOAD, out, v->ext, v->compression, v->level);
        fclose(f);
        double sl[99], raw[99];
        long rss = 0;
        for (int r = 0; r < runs; r++) {
            long rk = 0;
            raw[r] = run_raw(v, &lines, n, raw_path);
            sl[r] = run_sluice(sluice, cfg, n, &rk);
            char rm[700];
            snprintf(rm, sizeof rm, "rm -rf '%s'", out);
            if (system(rm) != 0)
                rc = 1;
            rss = rk > rss ? rk : rss;
            printf("%s run %d: sluice %.2fM events/s, raw %.2fM events/s, ratio %.2f, peak RSS %ld kB\n", v->name,
                   r + 1, sl[r] / 1e6, raw[r] / 1e6, raw[r] > 0 ? sl[r] / raw[r] : 0, rk);
            fflush(stdout);
        }
        double ms = median(sl, runs), mr = median(raw, runs);
        printf("%s: events_per_s=%.0f raw_events_per_s=%.0f ratio=%.2f peak_rss_kb=%ld\n", v->name, ms, mr,
               mr > 0 ? ms / mr : 0, rss);
        rc |= !(ms > 0 && mr > 0);
    }
    unlink(cfg);
    sl__buf_free(&lines);
    return rc;
}
