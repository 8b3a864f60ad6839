/*
 * The benchmarks' shared helpers (bench.h): the spawner with its memory sampling, medians, result lines.
 */
#include "bench/common/bench.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backpressure/backpressure.h"
#include "common/sl.h"

#define SL_BENCH_MSG 8192
#define SL_BENCH_SAMPLE_MS 50
#define SL_BENCH_PIDS 512

static int g_spawn_req = -1, g_spawn_ans = -1;

/* The tree under root as it is now: root and every process whose parent chain reaches it. */
static size_t tree_pids(pid_t root, pid_t *out, size_t cap)
{
    pid_t pid[1024], ppid[1024];
    size_t n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL && n < 1024) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t len = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0)
            close(fd);
        if (len <= 0)
            continue;
        buf[len] = 0;
        const char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
        int pp;
        if (p == NULL || sscanf(p + 2, "%*c %d", &pp) != 1)
            continue;
        pid[n] = atoi(e->d_name), ppid[n] = pp, n++;
    }
    if (d)
        closedir(d);
    size_t k = 0;
    out[k++] = root;
    for (size_t done = 0; done < k; done++) /* breadth first over the parent links */
        for (size_t i = 0; i < n && k < cap; i++)
            if (ppid[i] == out[done])
                out[k++] = pid[i];
    return k;
}

/* A "Name:   N kB" field of a /proc file; -1 when absent. */
static long proc_kb(pid_t pid, const char *file, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    FILE *f = fopen(path, "r");
    long kb = -1;
    size_t fl = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, fl) == 0) {
            kb = atol(line + fl);
            break;
        }
    if (f)
        fclose(f);
    return kb;
}

typedef struct sampler_s {
    pid_t pid[SL_BENCH_PIDS];
    long hwm[SL_BENCH_PIDS];
    size_t n;
    long pss;
} sampler_t;

static void sample(sampler_t *s, pid_t root)
{
    pid_t now[SL_BENCH_PIDS];
    size_t k = tree_pids(root, now, SL_BENCH_PIDS);
    long pss = 0;
    for (size_t i = 0; i < k; i++) {
        long hwm = proc_kb(now[i], "status", "VmHWM:");
        long p = proc_kb(now[i], "smaps_rollup", "Pss:");
        pss += p > 0 ? p : 0;
        size_t j = 0;
        while (j < s->n && s->pid[j] != now[i])
            j++;
        if (j == s->n) {
            if (s->n == SL_BENCH_PIDS)
                continue;
            s->pid[s->n] = now[i], s->hwm[s->n] = 0, s->n++;
        }
        s->hwm[j] = SL_MAX(s->hwm[j], hwm);
    }
    s->pss = SL_MAX(s->pss, pss);
}

/* Runs one request: log path, then argv, NUL-separated, ended by an empty string. */
static void spawn_one(const char *msg, sl_bench_proc_t *res)
{
    const char *log = msg;
    char *argv[64];
    size_t argc = 0;
    for (const char *p = log + strlen(log) + 1; *p && argc < 63; p += strlen(p) + 1)
        argv[argc++] = (char *)p;
    argv[argc] = NULL;
    memset(res, 0, sizeof *res);
    uint64_t t0 = sl_now_ns();
    pid_t pid = fork();
    if (pid == 0) {
        if (log[0]) {
            int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (fd >= 0)
                dup2(fd, 1), dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    if (pid < 0)
        return;
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    sampler_t *s = calloc(1, sizeof *s);
    for (;;) {
        struct pollfd p = {.fd = pfd, .events = POLLIN};
        if (pfd >= 0 && poll(&p, 1, SL_BENCH_SAMPLE_MS) > 0)
            break;
        if (pfd < 0 && waitpid(pid, NULL, WNOHANG | WNOWAIT) == pid)
            break;
        if (s)
            sample(s, pid);
    }
    struct rusage ru;
    if (wait4(pid, &res->status, 0, &ru) == pid) {
        res->secs = (double)(sl_now_ns() - t0) / 1e9;
        res->max_rss_kb = ru.ru_maxrss;
        res->cpu_secs = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                        (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    }
    if (pfd >= 0)
        close(pfd);
    if (s) {
        for (size_t i = 0; i < s->n; i++)
            res->sum_rss_kb += SL_MAX(s->hwm[i], 0);
        /* A process that lived less than one sample period is known only by ru_maxrss. */
        res->sum_rss_kb = SL_MAX(res->sum_rss_kb, res->max_rss_kb);
        res->pss_kb = s->pss;
        res->nprocs = (uint32_t)s->n;
        free(s);
    }
}

void sl_bench_tree_sample(int root_pid, sl_bench_proc_t *acc)
{
    pid_t now[SL_BENCH_PIDS];
    size_t k = tree_pids((pid_t)root_pid, now, SL_BENCH_PIDS);
    long sum = 0, pss = 0;
    for (size_t i = 0; i < k; i++) {
        long hwm = proc_kb(now[i], "status", "VmHWM:"), p = proc_kb(now[i], "smaps_rollup", "Pss:");
        acc->max_rss_kb = SL_MAX(acc->max_rss_kb, hwm);
        sum += SL_MAX(hwm, 0);
        pss += SL_MAX(p, 0);
    }
    acc->sum_rss_kb = SL_MAX(acc->sum_rss_kb, sum);
    acc->pss_kb = SL_MAX(acc->pss_kb, pss);
    acc->nprocs = SL_MAX(acc->nprocs, (uint32_t)k);
}

static void spawner_loop(int req, int ans)
{
    static char msg[SL_BENCH_MSG];
    while (read(req, msg, sizeof msg) == (ssize_t)sizeof msg) {
        sl_bench_proc_t res;
        spawn_one(msg, &res);
        if (write(ans, &res, sizeof res) != (ssize_t)sizeof res)
            break;
    }
    _exit(0);
}

void sl_bench_spawner_start(void)
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

int sl_bench_spawn(char *const argv[], const char *log_path, sl_bench_proc_t *res)
{
    static char msg[SL_BENCH_MSG];
    memset(msg, 0, sizeof msg);
    size_t o = (size_t)snprintf(msg, SL_BENCH_MSG / 2, "%s", log_path ? log_path : "") + 1;
    for (size_t i = 0; argv[i] && o < SL_BENCH_MSG - 2; i++)
        o += (size_t)snprintf(msg + o, SL_BENCH_MSG - 1 - o, "%s", argv[i]) + 1;
    memset(res, 0, sizeof *res);
    if (g_spawn_req < 0 || write(g_spawn_req, msg, sizeof msg) != (ssize_t)sizeof msg ||
        read(g_spawn_ans, res, sizeof *res) != (ssize_t)sizeof *res)
        return -1;
    if (!WIFEXITED(res->status) || WEXITSTATUS(res->status) != 0 || res->secs <= 0) {
        fprintf(stderr, "bench: %s %s failed (status 0x%x)%s%s\n", argv[0], argv[1] ? argv[1] : "", res->status,
                log_path ? "; log: " : "", log_path ? log_path : "");
        return -1;
    }
    return 0;
}

int sl_bench_run_sluice(const char *sluice, const char *cfg, const char *log_path, sl_bench_proc_t *res)
{
    char *quiet[] = {(char *)sluice, "run", "-q", "-c", (char *)cfg, NULL};
    char *logged[] = {(char *)sluice, "run", "-c", (char *)cfg, NULL};
    return sl_bench_spawn(log_path ? logged : quiet, log_path, res);
}

void sl_bench_mem_max(sl_bench_proc_t *acc, const sl_bench_proc_t *run)
{
    acc->max_rss_kb = SL_MAX(acc->max_rss_kb, run->max_rss_kb);
    acc->sum_rss_kb = SL_MAX(acc->sum_rss_kb, run->sum_rss_kb);
    acc->pss_kb = SL_MAX(acc->pss_kb, run->pss_kb);
    acc->nprocs = SL_MAX(acc->nprocs, run->nprocs);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double sl_bench_median(double *v, int n)
{
    if (n <= 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void sl_bench_result(const char *name, double events, double raw, const sl_bench_proc_t *mem, const char *extra)
{
    printf("%s: events_per_s=%.0f raw_events_per_s=%.0f ratio=%.2f peak_rss_kb=%ld sum_rss_kb=%ld pss_kb=%ld "
           "procs=%u%s%s\n",
           name, events, raw, raw > 0 ? events / raw : 0, mem->max_rss_kb, mem->sum_rss_kb, mem->pss_kb, mem->nprocs,
           extra && extra[0] ? " " : "", extra ? extra : "");
    fflush(stdout);
}

int sl_bench_latency(const char *log_path, const char *sink, double us[3])
{
    FILE *f = fopen(log_path, "r");
    char line[4096], pat[128];
    int rc = -1;
    snprintf(pat, sizeof pat, "%s in ", sink);
    while (f && fgets(line, sizeof line, f)) {
        if (strstr(line, "[total]") == NULL)
            continue;
        const char *p = strstr(line, pat);
        p = p ? strstr(p, " lat p50 ") : NULL;
        unsigned long long a, b, c;
        if (p && sscanf(p, " lat p50 %lluus p99 %lluus p999 %lluus", &a, &b, &c) == 3)
            us[0] = (double)a, us[1] = (double)b, us[2] = (double)c, rc = 0;
    }
    if (f)
        fclose(f);
    return rc;
}

uint64_t sl_bench_log_ms(const char *line)
{
    int h, m, s, ms;
    if (sscanf(line, "%d:%d:%d.%d", &h, &m, &s, &ms) != 4)
        return 0;
    uint64_t day = sl_wall_ns() / SL_NS_PER_MS / 86400000 * 86400000;
    return day + (uint64_t)(((h * 60 + m) * 60 + s) * 1000 + ms);
}

double sl_bench_human(const char *p)
{
    char *e;
    double v = strtod(p, &e);
    return *e == 'k' ? v * 1e3 : *e == 'M' ? v * 1e6 : *e == 'G' ? v * 1e9 : v;
}

double sl_bench_summary_count(const char *log, const char *node, uint64_t *t_ms)
{
    char needle[80];
    int nl = snprintf(needle, sizeof needle, " %s in ", node);
    double count = 0;
    *t_ms = 0;
    for (const char *l = log; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        const char *eol = strchr(l, '\n'), *hit = strstr(l, needle);
        if (hit == NULL || (eol && hit > eol))
            continue;
        double v = sl_bench_human(hit + nl);
        if (v > count)
            count = v, *t_ms = sl_bench_log_ms(l);
    }
    return count;
}

uint8_t *sl_bench_gen_records(uint64_t n, unsigned devices, unsigned payload_size, size_t *len)
{
    char topic[40], key[16], payload[4096];
    if (devices == 0 || payload_size < 120 || payload_size >= sizeof payload)
        exit(2);
    size_t topic_len = (size_t)snprintf(topic, sizeof topic, "fleet/dev-%07u/telemetry", 0u);
    size_t step = SL_ALIGN_UP(sl_rec_body_len(topic_len, 11, 24, payload_size), SL_REC_ALIGN);
    uint8_t *buf = malloc(n * step + 1);
    if (buf == NULL)
        exit(1);
    uint64_t wall = 0;
    for (uint64_t i = 0; i < n; i++) {
        /* Like the generator: one receive time (and payload ts) per demand batch of 500 events. */
        if (i % 500 == 0)
            wall = sl_wall_ns();
        unsigned d = (unsigned)(i % devices);
        snprintf(topic, sizeof topic, "fleet/dev-%07u/telemetry", d);
        snprintf(key, sizeof key, "dev-%07u", d);
        int pl = snprintf(payload, sizeof payload,
                          "{\"device\":\"dev-%07u\",\"seq\":%-20llu,\"ts\":%13llu,\"temp\":21.50,\"hum\":40.2,"
                          "\"bat\":3.71,\"pad\":\"",
                          d, (unsigned long long)(i / devices), (unsigned long long)(wall / SL_NS_PER_MS));
        while (pl < (int)payload_size - 2)
            payload[pl++] = 'x';
        payload[pl++] = '"', payload[pl++] = '}';
        sl_rec_t *r = (sl_rec_t *)(buf + i * step);
        memset(r, 0, step);
        r->topic_len = (uint16_t)topic_len, r->key_len = 11, r->attr_len = 4 + 9 + 11;
        r->payload_len = payload_size;
        r->qos = 1, r->ingest_ns = wall;
        uint8_t *p = (uint8_t *)(r + 1);
        memcpy(p, topic, topic_len), p += topic_len;
        memcpy(p, key, 11), p += 11;
        size_t alen = 0;
        sl_rec_attr_put(p, 24, &alen, "device_id", 9, key, 11), p += 24;
        memcpy(p, payload, payload_size);
        r->len = (uint32_t)sl_rec_body_len(topic_len, 11, 24, payload_size);
    }
    *len = n * step;
    return buf;
}
