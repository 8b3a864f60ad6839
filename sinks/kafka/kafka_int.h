/*
 * Private interface of the `kafka` sink (sinks/kafka/): configuration and the librdkafka handle
 * (kafka_conf.c), producing and delivery reports (kafka_produce.c), the stage callbacks (kafka.c).
 *
 * Invariants:
 *  - An event is acknowledged only from its delivery report with success, on the worker thread
 *    (rd_kafka_poll runs there, from handle_events, handle_timer and the drain). The runtime commits the
 *    acknowledged prefix, so an event whose report never came is delivered again after a restart.
 *  - Payloads (and keys taken verbatim) are handed to librdkafka without a copy: they point into the input
 *    channel, which keeps them until the event is committed, i.e. after its delivery report.
 *  - Queue-full is backpressure: the event waits in the backlog, in arrival order, and so does every later
 *    event, until librdkafka has room. Retriable delivery failures are produced again; permanent ones go
 *    to the dead-letter path with librdkafka's error text, then are acknowledged.
 *  - At the drain, what is not confirmed within the node's shutdown_timeout is purged and left
 *    unacknowledged (delivered again on the next start), never acknowledged blindly.
 */
#ifndef SL_SINK_KAFKA_INT_H
#define SL_SINK_KAFKA_INT_H

#include <librdkafka/rdkafka.h>

#include "sinks/sinks_int.h"

#define SL_KAFKA_NAME_MAX 256

/* A topic or key template: literal text, {key}, {topic} and {ATTRIBUTE}. */
typedef enum { SL_KT_LIT, SL_KT_KEY, SL_KT_TOPIC, SL_KT_ATTR } sl_kt_kind_t;
typedef struct sl_kseg_s {
    sl_kt_kind_t kind;
    char *text;
    size_t len;
} sl_kseg_t;
typedef struct sl_ktpl_s {
    sl_kseg_t *segs;
    size_t n;
    bool constant;     /* literal only */
    bool verbatim_key; /* exactly {key}: the record key is passed without a copy */
} sl_ktpl_t;

int sl__ktpl_compile(sl_ktpl_t *t, const char *text);
void sl__ktpl_free(sl_ktpl_t *t);
/* Expands t for ev into out[cap] (topic_chars: only Kafka topic characters, others become '_').
 * Returns the length, or SL_ERANGE when it does not fit. */
int sl__ktpl_expand(const sl_ktpl_t *t, const sl_event_t *ev, bool topic_chars, char *out, size_t cap);

/* Events handed to librdkafka or waiting in the backlog are known by their acknowledgement token, which is
 * also the opaque of their librdkafka message: a successful delivery report acknowledges it without
 * touching any sink state. Their records are kept in a flat array indexed by the token's slot in the
 * runtime's acknowledgement window (sl_ctx_ack_slot: one per outstanding event, no allocation, no free
 * list); they are read only to produce from the backlog or to dead-letter. */
typedef struct sl_ktopic_s {
    char name[SL_KAFKA_NAME_MAX];
    rd_kafka_topic_t *rkt;
} sl_ktopic_t;

typedef struct sl_ksink_s {
    sl_ctx_t *ctx;
    const char *who;
    rd_kafka_t *rk;
    sl_ktpl_t topic_tpl, key_tpl;
    rd_kafka_topic_t *const_rkt; /* the topic when its template is constant (no lookup per event) */
    bool headers;
    /* Topic handles by name (a small table: topic templates yield few topics). */
    sl_ktopic_t *topics;
    uint32_t n_topics, cap_topics;
    /* Records of the outstanding events by slot; the backlog: a FIFO of tokens in a ring of as many
     * entries (at most every outstanding event waits). */
    const sl_rec_t **recs;
    uint64_t *backlog;
    uint64_t n_slots, backlog_head, backlog_n;
    uint64_t in_flight;
    /* Figures; first_ns / last_ns: the first produce and the last delivery report (the log's window). */
    uint64_t first_ns, last_ns;
    uint64_t delivered, retried, dead, queue_full, backlog_episodes;
    /* In /metrics (kafka_conf.c registers them). */
    _Atomic uint64_t *m_queue_full, *m_retries, *m_dead, *m_in_flight, *m_backlog;
    _Atomic uint64_t m_spare[5];
    bool fatal; /* librdkafka raised a fatal error: the instance must restart */
} sl_ksink_t;

/* kafka_conf.c */
int sl__ksink_setup(sl_ctx_t *ctx, sl_ksink_t *ks);
void sl__ksink_free(sl_ksink_t *ks);
rd_kafka_topic_t *sl__ksink_topic(sl_ksink_t *ks, const char *name);

/* kafka_produce.c */
/* Takes event ev: produces it, or puts it in the backlog. Returns 0 or a fatal code. */
int sl__ksink_take(sl_ksink_t *ks, const sl_event_t *ev);
/* Produces from the backlog until it is empty or librdkafka is full. */
int sl__ksink_backlog(sl_ksink_t *ks);
/* Serves delivery reports (acknowledgements) without blocking, or up to timeout_ms. */
void sl__ksink_poll(sl_ksink_t *ks, int timeout_ms);
void sl__ksink_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

#endif /* SL_SINK_KAFKA_INT_H */
