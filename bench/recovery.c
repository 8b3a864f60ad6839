/*
 * bench/run recovery: how fast a killed stage instance is processing again, and what a kill every 100 ms
 * costs in throughput. Runs the real binary: generator -> passthrough (relay) -> null.
 *
 *  - Recovery: SIGKILL relay#0 (found through the -v "started as pid" lines) N times, about every 100 ms,
 *    while the generator runs at full speed; for each kill, the time from the kill to the replacement's
 *    "processing again after a restart at wall NS" line (wall clock, ns). Median and p99.
 *  - Throughput: the same E events with no kill (the "raw" figure here) and with a kill of relay#0 every
 *    100 ms; the ratio is what supervision under fire keeps.
 * Last line: recovery: recovery_ms_p50=X recovery_ms_p99=Y events_per_s=N raw_events_per_s=N ratio=R
 * peak_rss_kb=N (events_per_s with kills, raw without).
 */
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/sl.h"

static char logbuf[64 << 20];

static const char *read_log(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(logbuf, 1, sizeof logbuf - 1, f) : 0;
    logbuf[n] = 0;
    if (f)
        fclose(f);
    return logbuf;
}

/* The value after the last occurrence of needle, or 0. */
static unsigned long long last_number(const char *log, const char *needle)
{
    const char *last = NULL;
    for (const char *p = log; (p = strstr(p, needle)) != NULL; p++)
        last = p;
    return last ? strtoull(last + strlen(needle), NULL, 10) : 0;
}

static int count(const char *log, const char *needle)
{
    int n = 0;
    for (const char *p = log; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void pause_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static pid_t start(const char *sluice, const char *cfg, const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        dup2(fd, 1);
        execl(sluice, sluice, "run", "-v", "-c", cfg, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void write_cfg(const char *path, unsigned long long events)
{
    FILE *f = fopen(path, "w");
    fprintf(f,
            "pipeline: { name: bench-recovery }\n"
            "metrics: { summary_interval: 0s }\n"
            "supervision: { max_restarts: 1_000_000, max_seconds: 1s }\n"
            "sources: [ { name: fleet, type: generator, count: %llu, devices: 1000 } ]\n"
            "stages: [ { name: relay, type: passthrough, from: fleet } ]\n"
            "sinks: [ { name: out, type: null, from: relay } ]\n",
            events);
    fclose(f);
}

/* Runs E events; kills relay#0 every kill_ms when kill_ms > 0. Returns events/s; *rss gets the peak. */
static double run_throughput(const char *sluice, const char *cfg, const char *log, unsigned long long events,
                             unsigned kill_ms, long *rss, int *kills)
{
    write_cfg(cfg, events);
    uint64_t t0 = sl_now_ns();
    pid_t pid = start(sluice, cfg, log);
    int status;
    struct rusage ru;
    *kills = 0;
    for (;;) {
        pid_t r = wait4(pid, &status, kill_ms ? WNOHANG : 0, &ru);
        if (r == pid)
            break;
        pause_ms(kill_ms);
        pid_t victim = (pid_t)last_number(read_log(log), "relay#0: started as pid ");
        if (victim > 0 && kill(victim, SIGKILL) == 0)
            (*kills)++;
    }
    double secs = (double)(sl_now_ns() - t0) / 1e9;
    *rss = ru.ru_maxrss > *rss ? ru.ru_maxrss : *rss;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "recovery: sluice failed (status 0x%x), see %s\n", status, log);
        return 0;
    }
    return (double)events / secs;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Kills relay#0 n times at full speed; fills ms[] with each recovery time. Returns how many it measured. */
static int run_recovery(const char *sluice, const char *cfg, const char *log, int n, double *ms, long *rss)
{
    write_cfg(cfg, 0);
    pid_t pid = start(sluice, cfg, log);
    int got = 0;
    for (int i = 0; i < n; i++) {
        pause_ms(100);
        const char *text = read_log(log);
        pid_t victim = (pid_t)last_number(text, "relay#0: started as pid ");
        int before = count(text, "processing again after a restart at wall ");
        uint64_t killed_at = sl_wall_ns();
        if (victim <= 0 || kill(victim, SIGKILL) != 0)
            continue;
        uint64_t deadline = sl_now_ns() + 5 * SL_NS_PER_S;
        while (sl_now_ns() < deadline) {
            text = read_log(log);
            if (count(text, "processing again after a restart at wall ") > before) {
                unsigned long long at = last_number(text, "processing again after a restart at wall ");
                ms[got++] = at > killed_at ? (double)(at - killed_at) / 1e6 : 0;
                break;
            }
            pause_ms(1);
        }
    }
    kill(pid, SIGTERM);
    int status;
    struct rusage ru;
    wait4(pid, &status, 0, &ru);
    *rss = ru.ru_maxrss > *rss ? ru.ru_maxrss : *rss;
    return got;
}

int main(int argc, char **argv)
{
    const char *sluice = "build/sluice";
    int kills = 100, c;
    unsigned long long events = 5000000;
    while ((c = getopt(argc, argv, "s:k:n:")) != -1) {
        switch (c) {
        case 's': sluice = optarg; break;
        case 'k': kills = atoi(optarg); break;
        case 'n': events = strtoull(optarg, NULL, 10); break;
        default: fprintf(stderr, "usage: bench_recovery [-s SLUICE] [-k KILLS] [-n EVENTS]\n"); return 2;
        }
    }
    if (kills < 1 || kills > 1000)
        kills = 100;
    char dir[] = "/tmp/sluice-bench-recovery-XXXXXX";
    if (mkdtemp(dir) == NULL)
        return 1;
    char cfg[128], log[128];
    snprintf(cfg, sizeof cfg, "%s/pipeline.yaml", dir);
    snprintf(log, sizeof log, "%s/sluice.log", dir);
    long rss = 0;
    static double ms[1000];
    int got = run_recovery(sluice, cfg, log, kills, ms, &rss);
    if (got == 0) {
        fprintf(stderr, "recovery: no recovery measured; see %s\n", log);
        return 1;
    }
    qsort(ms, (size_t)got, sizeof *ms, cmp_double);
    double p50 = ms[got / 2], p99 = ms[(got * 99) / 100 < got ? (got * 99) / 100 : got - 1];
    printf("recovery over %d kills: median %.2f ms, p99 %.2f ms, max %.2f ms\n", got, p50, p99, ms[got - 1]);
    int k0, k1;
    double plain[3], killed[3];
    for (int r = 0; r < 3; r++) {
        plain[r] = run_throughput(sluice, cfg, log, events, 0, &rss, &k0);
        killed[r] = run_throughput(sluice, cfg, log, events, 100, &rss, &k1);
        printf("run %d: %.2fM events/s without kills, %.2fM events/s with a kill every 100 ms (%d kills)\n", r + 1,
               plain[r] / 1e6, killed[r] / 1e6, k1);
        fflush(stdout);
    }
    qsort(plain, 3, sizeof *plain, cmp_double);
    qsort(killed, 3, sizeof *killed, cmp_double);
    printf("recovery: recovery_ms_p50=%.2f recovery_ms_p99=%.2f events_per_s=%.0f raw_events_per_s=%.0f ratio=%.2f "
           "peak_rss_kb=%ld\n",
           p50, p99, killed[1], plain[1], plain[1] > 0 ? killed[1] / plain[1] : 0, rss);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 && plain[1] > 0 && killed[1] > 0 ? 0 : 1;
}
