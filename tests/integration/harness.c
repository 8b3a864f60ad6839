/*
 * The integration test harness (see harness.h).
 */
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char sl__th_buf[4 << 20];

static uint64_t sl__th_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The polling interval of every wait: short enough to be prompt, long enough not to steal a core. */
static void sl__th_poll_pause(void)
{
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

int sl_th_init(sl_th_t *th, const char *name)
{
    memset(th, 0, sizeof *th);
    snprintf(th->dir, sizeof th->dir, "/tmp/sluice-it-%s-XXXXXX", name);
    if (mkdtemp(th->dir) == NULL)
        return -1;
    snprintf(th->cfg, sizeof th->cfg, "%s/pipeline.yaml", th->dir);
    snprintf(th->log, sizeof th->log, "%s/sluice.log", th->dir);
    return 0;
}

void sl_th_cleanup(sl_th_t *th)
{
    if (th->pid > 0) {
        kill(th->pid, SIGKILL);
        waitpid(th->pid, NULL, 0);
        th->pid = 0;
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", th->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "harness: could not remove %s\n", th->dir);
}

void sl_th_config(sl_th_t *th, const char *fmt, ...)
{
    FILE *f = fopen(th->cfg, "w");
    if (f == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

pid_t sl_th_start(sl_th_t *th, const char *cmd, const char *extra)
{
    const char *bin = getenv("SLUICE_BIN");
    if (bin == NULL)
        bin = "build/sluice";
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(th->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        if (extra)
            execl(bin, bin, cmd, "-c", th->cfg, extra, (char *)NULL);
        else
            execl(bin, bin, cmd, "-c", th->cfg, (char *)NULL);
        _exit(127);
    }
    th->pid = pid;
    return pid;
}

bool sl_th_wait(sl_th_t *th, int timeout_ms)
{
    uint64_t deadline = sl__th_ms() + (uint64_t)timeout_ms;
    while (th->pid > 0) {
        pid_t r = waitpid(th->pid, &th->status, WNOHANG);
        if (r == th->pid) {
            th->pid = 0;
            return true;
        }
        if (sl__th_ms() >= deadline)
            return false;
        sl__th_poll_pause();
    }
    return true;
}

const char *sl_th_log(sl_th_t *th)
{
    sl__th_buf[0] = 0;
    FILE *f = fopen(th->log, "r");
    if (f == NULL)
        return sl__th_buf;
    size_t n = fread(sl__th_buf, 1, sizeof sl__th_buf - 1, f);
    sl__th_buf[n] = 0;
    fclose(f);
    return sl__th_buf;
}

bool sl_th_wait_log(sl_th_t *th, const char *needle, int timeout_ms)
{
    uint64_t deadline = sl__th_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (strstr(sl_th_log(th), needle) != NULL)
            return true;
        if (sl__th_ms() >= deadline)
            return false;
        sl__th_poll_pause();
    }
}

int sl_th_log_count(sl_th_t *th, const char *needle)
{
    int n = 0;
    for (const char *p = sl_th_log(th); (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

bool sl_th_log_number(sl_th_t *th, const char *line_tag, const char *after, uint64_t *out)
{
    const char *log = sl_th_log(th), *line = NULL;
    for (const char *p = log; (p = strstr(p, line_tag)) != NULL; p++)
        line = p;
    if (line == NULL)
        return false;
    const char *eol = strchr(line, '\n');
    const char *v = strstr(line, after);
    if (v == NULL || (eol && v > eol))
        return false;
    *out = strtoull(v + strlen(after), NULL, 10);
    return true;
}

pid_t sl_th_worker_pid(sl_th_t *th, const char *name)
{
    char needle[128];
    snprintf(needle, sizeof needle, "%s: started as pid ", name);
    const char *log = sl_th_log(th), *last = NULL;
    for (const char *p = log; (p = strstr(p, needle)) != NULL; p++)
        last = p;
    return last ? (pid_t)atoi(last + strlen(needle)) : 0;
}

size_t sl_th_children(pid_t parent, pid_t *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)parent, (int)parent);
    FILE *f = fopen(path, "r");
    size_t n = 0;
    if (f == NULL)
        return 0;
    int pid;
    while (n < cap && fscanf(f, "%d", &pid) == 1)
        out[n++] = pid;
    fclose(f);
    return n;
}
