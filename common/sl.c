/*
 * Error names, logging and clocks shared by every sluice process.
 *
 * The log level is the only process-wide state here; it is set once by the CLI before any worker is
 * forked, so workers inherit it and nothing writes it afterwards.
 */
#include "common/sl.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static sl_log_level_t sl__log_level = SL_LOG_INFO;

const char *sl_strerror(int err)
{
    switch (err) {
#define SL_ERR_TEXT(name, value, text) \
    case (value): return text;
        SL_ERRNO_MAP(SL_ERR_TEXT)
#undef SL_ERR_TEXT
    default: break;
    }
    if (err < 0 && err > -4096)
        return strerror(-err);
    return "unknown error";
}

const char *sl_err_name(int err)
{
    switch (err) {
#define SL_ERR_NAME(name, value, text) \
    case (value): return "SL_" #name;
        SL_ERRNO_MAP(SL_ERR_NAME)
#undef SL_ERR_NAME
    default: return "SL_E?";
    }
}

void sl_log_set_level(sl_log_level_t level) { sl__log_level = level; }

sl_log_level_t sl_log_get_level(void) { return sl__log_level; }

void sl_log(sl_log_level_t level, const char *who, int err, const char *fmt, ...)
{
    static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    if (level > sl__log_level)
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld %-5s [%s] ", tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, names[level], who ? who : "sluice");
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (err != 0 && n > 0 && (size_t)n < sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, ": %s", sl_strerror(err));
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line - 1)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    /* One write per line: lines from concurrent workers sharing stderr stay whole. */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

uint64_t sl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * SL_NS_PER_S + (uint64_t)ts.tv_nsec;
}

uint64_t sl_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * SL_NS_PER_S + (uint64_t)ts.tv_nsec;
}

uint32_t sl_hash(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 16777619u;
    }
    return h;
}
