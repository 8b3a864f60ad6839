/*
 * sluice common definitions: error codes, logging, clocks.
 *
 * One error channel: functions return 0 on success or a negative SL_E* code. Codes that have an errno
 * equivalent use it (negated), so sl_strerror() and strerror() agree; SL_EAGAIN is backpressure ("not
 * now") and is never logged as an error. The codes and their names come from one X-macro list so that a
 * new code cannot be half-added.
 */
#ifndef SL_H
#define SL_H

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* X(name, value, text) */
#define SL_ERRNO_MAP(X)                                                   \
    X(EAGAIN, -EAGAIN, "resource temporarily unavailable (backpressure)") \
    X(EINVAL, -EINVAL, "invalid argument")                                \
    X(ERANGE, -ERANGE, "value out of range")                              \
    X(ENOMEM, -ENOMEM, "out of memory")                                   \
    X(ENOSPC, -ENOSPC, "no space left")                                   \
    X(EMSGSIZE, -EMSGSIZE, "record too large")                            \
    X(EBADMSG, -EBADMSG, "corrupt record framing")                        \
    X(EIO, -EIO, "input/output error")                                    \
    X(ENOENT, -ENOENT, "no such file or entry")                           \
    X(EEXIST, -EEXIST, "already exists")                                  \
    X(ENOTSUP, -ENOTSUP, "operation not supported")                       \
    X(ETIMEDOUT, -ETIMEDOUT, "timed out")                                 \
    X(ECANCELED, -ECANCELED, "canceled")                                  \
    X(EOF, -4096, "end of stream")                                        \
    X(ERETRY, -4097, "temporary failure, retry later")                    \
    X(ECONFIG, -4098, "configuration error")                              \
    X(ECRASH, -4099, "stage crashed")

enum {
#define SL_ERR_ENUM(name, value, text) SL_##name = (value),
    SL_ERRNO_MAP(SL_ERR_ENUM)
#undef SL_ERR_ENUM
};

/* Returns a static description of an SL_E* code (or of a negated errno). Any process, any thread. */
const char *sl_strerror(int err);
/* Returns the symbolic name ("SL_EAGAIN") of a code, or "SL_E?" for one we do not know. */
const char *sl_err_name(int err);

/*
 * Exit code of a worker or of the master that "cannot start" (bad config, missing file, unreachable
 * required resource during init). A supervisor reports it once and never respawns it, so a bad config
 * cannot become a crash loop (nginx uses 2 for the same purpose).
 */
#define SL_EXIT_FATAL 2

typedef enum sl_log_level_e {
    SL_LOG_ERROR = 0,
    SL_LOG_WARN = 1,
    SL_LOG_INFO = 2,
    SL_LOG_DEBUG = 3,
} sl_log_level_t;

/* The level at or below which messages are written; set from the CLI (-v, -q). Default SL_LOG_INFO. */
void sl_log_set_level(sl_log_level_t level);
sl_log_level_t sl_log_get_level(void);

/*
 * Writes one line to stderr: "<time> <LEVEL> [<who>] <message>[: <strerror(err)>]".
 * who names the stage instance ("decode#1") or the component ("master"); err is 0 or an SL_E* code or a
 * negated errno. The line is written with one write(2) so lines of concurrent processes do not interleave.
 */
void sl_log(sl_log_level_t level, const char *who, int err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Monotonic clock in nanoseconds (CLOCK_MONOTONIC). */
uint64_t sl_now_ns(void);
/* Wall clock in nanoseconds since the epoch (CLOCK_REALTIME). */
uint64_t sl_wall_ns(void);

/* FNV-1a over n bytes: the partition dispatcher's hash (stable across processes and versions). */
uint32_t sl_hash(const void *p, size_t n);

#define SL_NS_PER_MS UINT64_C(1000000)
#define SL_NS_PER_S UINT64_C(1000000000)

#define SL_CACHELINE 64
#define SL_ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((__typeof__(x))(a)-1))
#define SL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SL_MAX(a, b) ((a) > (b) ? (a) : (b))
#define SL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define SL_LIKELY(x) __builtin_expect(!!(x), 1)
#define SL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define SL_LIKELY(x) (x)
#define SL_UNLIKELY(x) (x)
#endif

#endif /* SL_H */
