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
/* Starts `sluice ARGS...` (args NULL-terminated, without the program) with stderr and stdout to the log. */
pid_t sl_th_start_argv(sl_th_t *th, const char *const *args);
/* Runs `sluice ARGS...` to its end: its exit code; -1 when it ran past timeout_ms (then SIGKILLed and
 * reaped) or died of a signal. */
int sl_th_run_argv(sl_th_t *th, const char *const *args, int timeout_ms);
/* Waits for the master to exit within timeout_ms; returns true and fills th->status if it did. */
bool sl_th_wait(sl_th_t *th, int timeout_ms);
/* Waits until the log contains needle, up to timeout_ms. */
bool sl_th_wait_log(sl_th_t *th, const char *needle, int timeout_ms);
/* The whole log as a NUL-terminated string (static buffer, replaced on each call). */
const char *sl_th_log(sl_th_t *th);
/* Counts occurrences of needle in the log. */
int sl_th_log_count(sl_th_t *th, const char *needle);
/* The sum of the numbers that follow `after` on every log line containing tag (one line per instance). */
uint64_t sl_th_log_sum(sl_th_t *th, const char *tag, const char *after);
/* Reads an unsigned number that follows `after` in the last line of the log containing `line_tag`. */
bool sl_th_log_number(sl_th_t *th, const char *line_tag, const char *after, uint64_t *out);
/* Waits until the last "[summary]" line shows events flowing: a number above 0 after `after` (e.g.
 * "fleet out "). A first summary alone is not enough: on a loaded machine it can come before any event. */
bool sl_th_wait_flow(sl_th_t *th, const char *after, int timeout_ms);
/* Polls cond(arg) every few milliseconds until it holds (true) or timeout_ms passes (false). */
bool sl_th_until(bool (*cond)(void *arg), void *arg, int timeout_ms);
/* The PIDs of the master's workers (children named "sl:..."); returns how many were stored. */
size_t sl_th_children(pid_t parent, pid_t *out, size_t cap);
/* The same once at least `want` workers are there (a worker names itself just after the fork), or at
 * timeout_ms with what there is. */
size_t sl_th_wait_children(pid_t parent, pid_t *out, size_t cap, size_t want, int timeout_ms);
/* The PID of worker instance `name` ("relay#0"), from the last "started as pid" line of the log (those
 * are debug lines: start sluice with -v). 0 if not found. */
pid_t sl_th_worker_pid(sl_th_t *th, const char *name);

/* The sum over instances of metric sluice_NAME (node: only that node's instances, or NULL: all) from the
 * /metrics endpoint on 127.0.0.1:port. Returns 0 and *out, or -1 when the endpoint did not answer. */
int sl_th_metric(int port, const char *name, const char *node, uint64_t *out);

/* ---- mosquitto and MQTT publishers (tests of the MQTT source) ------------------------------------ */

typedef struct sl_th_mosq_s {
    pid_t pid;
    int port;
    char conf[300]; /* mosquitto.conf */
    char log[300];  /* its stderr (log_dest stderr) */
    char data[300]; /* persistence directory */
} sl_th_mosq_t;

/* GET path from 127.0.0.1:port (/metrics, /healthz); returns the whole response (a static buffer, replaced
 * on each call) or NULL. */
const char *sl_th_http_get(int port, const char *path);
/* A free TCP port on 127.0.0.1 (bound then released), or 0. */
int sl_th_free_port(void);
/*
 * Writes a mosquitto.conf in th->dir for a listener on 127.0.0.1:port (port 0: a free one; the port is
 * kept across restarts), plus extra lines (persistence, queue limits, TLS), and starts mosquitto; waits
 * until it accepts connections. Returns 0, or -1 (logged to stderr).
 */
int sl_th_mosq_start(sl_th_t *th, sl_th_mosq_t *mq, const char *extra_conf);
/* Stops it (SIGTERM by PID, then SIGKILL past 5 s) and reaps it. */
void sl_th_mosq_stop(sl_th_mosq_t *mq);
/* Counts occurrences of needle in its log. */
int sl_th_mosq_log_count(sl_th_mosq_t *mq, const char *needle);

/* What sl_th_publish() sends: per device d in [0, devices), count messages with "seq" first_seq.. on
 * topic_fmt (a printf format of d), payload {"device":"dev-D","seq":N,"pad":"..."} of about pad bytes. */
typedef struct sl_th_pub_s {
    const char *url; /* "tcp://127.0.0.1:PORT" or "ssl://..." */
    int version;     /* 4 = MQTT 3.1.1, 5 = MQTT 5 */
    int qos;
    const char *topic_fmt; /* e.g. "fleet/dev-%u/telemetry" */
    unsigned devices;
    uint64_t first_seq, count;
    const char *user_prop; /* MQTT 5: a user property of this name carries "dev-D"; NULL = none */
    size_t pad;
    const char *raw; /* when set: publish this payload (raw_len bytes) count times on topic_fmt */
    size_t raw_len;
} sl_th_pub_t;

/* Publishes with Paho MQTTAsync and waits until every message is acknowledged (QoS 0: handed to the
 * socket). Returns the number of messages confirmed, or -1 when the connection failed. */
long sl_th_publish(const sl_th_pub_t *p);

#endif
