/*
 * Integration test harness: runs the real sluice binary (SLUICE_BIN) with a config written to a temporary
 * directory, captures its stderr into a file, and waits for conditions against deadlines. Servers and
 * processes a test starts are stopped by their PID, never by name.
 */
#ifndef SL_TEST_HARNESS_H
#define SL_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct sl_th_s {
    char dir[256]; /* temporary directory of this test */
    char cfg[300]; /* config path */
    char log[300]; /* captured stderr of sluice */
    pid_t pid;     /* the sluice master, 0 when not running */
    int status;    /* wait status once exited */
} sl_th_t;

/* Creates the temporary directory; returns 0. */
int sl_th_init(sl_th_t *th, const char *name);
/* Stops anything still running (SIGKILL by PID), removes the directory. */
void sl_th_cleanup(sl_th_t *th);
/* Writes the config file from a printf format. */
void sl_th_config(sl_th_t *th, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Starts `sluice <cmd> -c cfg [extra]` with stderr (and stdout) to the log. */
pid_t sl_th_start(sl_th_t *th, const char *cmd, const char *extra);
/* Waits for the master to exit within timeout_ms; returns true and fills th->status if it did. */
bool sl_th_wait(sl_th_t *th, int timeout_ms);
/* Waits until the log contains needle, up to timeout_ms. */
bool sl_th_wait_log(sl_th_t *th, const char *needle, int timeout_ms);
/* The whole log as a NUL-terminated string (static buffer, replaced on each call). */
const char *sl_th_log(sl_th_t *th);
/* Counts occurrences of needle in the log. */
int sl_th_log_count(sl_th_t *th, const char *needle);
/* Reads an unsigned number that follows `after` in the last line of the log containing `line_tag`. */
bool sl_th_log_number(sl_th_t *th, const char *line_tag, const char *after, uint64_t *out);
/* The PIDs of the master's children (workers); returns how many were stored. */
size_t sl_th_children(pid_t parent, pid_t *out, size_t cap);
/* The PID of worker instance `name` ("relay#0"), from the last "started as pid" line of the log (those
 * are debug lines: start sluice with -v). 0 if not found. */
pid_t sl_th_worker_pid(sl_th_t *th, const char *name);

#endif
