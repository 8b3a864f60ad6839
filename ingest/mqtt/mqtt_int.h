/*
 * Private interface of the MQTT source (ingest/mqtt/): the pure helpers that turn what a broker delivers
 * into an event (topic template matching, attribute encoding, topic filter parsing), shared by mqtt.c and
 * the unit tests. None of them allocates: they write into buffers the caller owns, so the message-arrived
 * path costs no allocation of ours.
 */
#ifndef SL_MQTT_INT_H
#define SL_MQTT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sl.h"

#define SL_MQTT_TPL_MAX 32     /* topic levels a template may have */
#define SL_MQTT_FILTER_MAX 512 /* bytes of one topic filter, with its $share prefix */

/* A compiled topic template such as "factory/{site}/{device_id}/telemetry": literal levels must match,
 * `{name}` levels capture the level into attribute `name`, `+` matches any level, a final `#` any rest. */
typedef struct sl_mqtt_tpl_s {
    size_t n;
    struct {
        const char *text; /* literal text, or the attribute name of a capture (into the template string) */
        uint16_t len;
        uint8_t what; /* SL_MQTT_LV_* */
    } lv[SL_MQTT_TPL_MAX];
    bool tail;     /* ends with '#' */
    int key_level; /* the capture that gives the record key, or -1 */
} sl_mqtt_tpl_t;

enum { SL_MQTT_LV_LITERAL = 0, SL_MQTT_LV_CAPTURE = 1, SL_MQTT_LV_ANY = 2 };

/*
 * Compiles tpl (kept by reference: it must outlive t) and resolves key_from ("" = none) to one of its
 * captures. An empty tpl compiles to a template that captures nothing. Returns 0, or SL_EINVAL with *why.
 */
int sl_mqtt_tpl_compile(sl_mqtt_tpl_t *t, const char *tpl, const char *key_from, const char **why);

/*
 * Matches topic[0..len) against t. On a match appends one attribute per capture to attrs (at *attr_len,
 * at most cap bytes) and points *key and *key_len at the key capture (inside topic) when there is one.
 * Returns 1 on a match, 0 when the topic does not fit the template (nothing written), SL_ENOSPC when the
 * attributes do not fit cap (those that fit are written).
 */
int sl_mqtt_tpl_match(const sl_mqtt_tpl_t *t, const char *topic, size_t len, uint8_t *attrs, size_t cap,
                      size_t *attr_len, const char **key, size_t *key_len);

/*
 * Parses one `topics:` item, "FILTER" or "FILTER;qos=N", into out (with the "$share/<group>/" prefix when
 * group is not empty) and *qos (def_qos when not given). Returns 0, or SL_EINVAL with *why for an empty
 * filter, a misplaced wildcard, a bad qos or a filter that does not fit cap.
 */
int sl_mqtt_filter_parse(const char *item, size_t len, int def_qos, const char *group, char *out, size_t cap, int *qos,
                         const char **why);

/* ---- the source itself (mqtt.c, mqtt_conf.c, mqtt_recv.c) ---------------------------------------- */

#include <MQTTAsync.h>
#include <pthread.h>
#include <stdatomic.h>

#include "stages/stages.h"

/* Connection states. X(name, text). Who moves where is written at each transition. */
#define SL_MQTT_STATE_MAP(X)                                                                         \
    X(DOWN, "down")             /* not connected; the worker thread reconnects after a backoff */    \
    X(CONNECTING, "connecting") /* a connect is in flight; Paho's thread reports the outcome */      \
    X(UP, "up")                                                                                      \
    X(PAUSING, "pausing") /* the `pause` policy disconnects; Paho's thread reports when done */      \
    X(PAUSED, "paused")   /* disconnected on purpose, session kept: reconnect when demand returns */ \
    X(STOPPED, "stopped")

typedef enum sl_mqtt_state_e {
#define SL_MQTT_STATE_ENUM(name, text) SL_MQTT_##name,
    SL_MQTT_STATE_MAP(SL_MQTT_STATE_ENUM)
#undef SL_MQTT_STATE_ENUM
} sl_mqtt_state_t;

const char *sl_mqtt_state_name(int st);

#define SL_MQTT_ATTR_CAP 16384 /* attribute bytes of one event; more are cut and counted */

typedef struct sl_mqtt_s {
    sl_ctx_t *ctx;
    const char *who;
    MQTTAsync cli;
    /* Options, fixed after init (mqtt_conf.c). */
    int version; /* MQTTVERSION_3_1_1 or MQTTVERSION_5 */
    char **urls;
    int n_urls;
    char **filters;
    int *qos;
    int n_filters;
    char client_id[256];
    const char *username, *password;
    bool tls;
    MQTTAsync_SSLOptions ssl;
    bool clean_start;
    uint32_t session_expiry_s;
    int keepalive_s, connect_timeout_s, in_flight;
    sl_mqtt_tpl_t tpl;
    bool pause_policy;
    uint64_t wait_ns;
    uint32_t overdraft;
    uint64_t reconnect_min_ns, reconnect_max_ns;
    /* Connection state: written by both threads, as the transitions say. */
    _Atomic int state;
    _Atomic uint32_t downs;     /* times Paho's thread set DOWN: the worker schedules a reconnect */
    _Atomic bool pause_req;     /* the callback thread found no demand: the worker pauses */
    _Atomic bool tls_error;     /* OpenSSL reported an error (init refuses to start on it) */
    _Atomic bool reset_backoff; /* a connect succeeded */
    _Atomic bool disc_done;     /* the last disconnect completed */
    _Atomic uint64_t paused_ns; /* when the current pause began (set by the thread that paused) */
    _Atomic int sock;           /* the connection's socket, found at each connect; -1 when not known */
    /* Worker thread only. */
    uint32_t downs_seen;
    uint64_t backoff_ns, retry_at_ns;
    unsigned seed;
    /* Callback thread only. */
    uint8_t attrs[SL_MQTT_ATTR_CAP];
    uint64_t log_ns, log_dropped, log_unacked;
    uint64_t emitted;
    uint64_t episode_over; /* events into the overdraft since the current pause was asked for */
    pthread_t rcv_thread;  /* the thread last moved to SCHED_OTHER (sl__mqtt_arrived) */
    bool rcv_sched_set;
    /* Metrics in the instance's shared stats slot (sl_ctx_metric: /metrics), cumulative over restarts;
     * written with relaxed atomics by whichever thread counts (mostly Paho's callback thread). */
    _Atomic uint64_t *received, *overdrafted, *dropped, *unacked, *cut_attrs, *pauses, *connects;
    _Atomic uint64_t *paused, *overdraft_peak; /* gauges: 1 while paused; the most one pause used */
    _Atomic uint64_t spare_[9];                /* where a metric lives when the slot had no room */
} sl_mqtt_t;

/* Reads the node's params into m (mqtt_conf.c). Returns 0, or SL_EINVAL/SL_ENOENT after logging why.
 * Worker thread, from init. */
int sl__mqtt_conf(sl_mqtt_t *m, const sl_conf_node_t *node, uint32_t instance);
void sl__mqtt_conf_free(sl_mqtt_t *m);

/* Paho's message-arrived callback (mqtt_recv.c): turns the message into an event and emits it, applying
 * the overflow policy. Returns 1 when the message may be acknowledged to the broker. Paho's thread. */
int sl__mqtt_arrived(void *context, char *topic, int topic_len, MQTTAsync_message *msg);

/* Pauses the flow now: moves UP -> PAUSING and starts the disconnect that keeps the session; from the
 * message callback (in_callback) it also shuts the connection's socket down, so the flow stops at once.
 * Either thread (Paho allows its calls from its callbacks: the disconnect is queued to its send thread).
 * Returns true when this call paused. */
bool sl__mqtt_pause(sl_mqtt_t *m, bool in_callback);

static inline void sl__mqtt_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}
static inline uint64_t sl__mqtt_get(_Atomic uint64_t *c) { return atomic_load_explicit(c, memory_order_relaxed); }

#endif /* SL_MQTT_INT_H */
