/*
 * Producing events to Kafka and handling their delivery reports.
 *
 * Each message's opaque is its event's acknowledgement token: the delivery report acknowledges it directly,
 * and finds its record (by the token's slot) only to dead-letter it or produce it again. The payload goes to librdkafka
 * without a copy (flags 0: librdkafka neither copies nor frees it); a key is copied only when its template is more than
 * {key}.
 */
#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sinks/kafka/kafka_int.h"

/* The token at position k of the backlog (k < backlog_n). */
static uint64_t *sl__backlog_at(sl_ksink_t *ks, uint64_t k)
{
    return &ks->backlog[(ks->backlog_head + k) % ks->n_slots];
}

static void sl__backlog_push(sl_ksink_t *ks, uint64_t token)
{
    if (ks->backlog_n == 0) {
        ks->backlog_episodes++;
        sl__metric_add(ks->m_queue_full, 1);
    }
    assert(ks->backlog_n < ks->n_slots); /* only outstanding events wait, one slot each */
    *sl__backlog_at(ks, ks->backlog_n++) = token;
}

/* Headers: the MQTT topic, QoS, receive time and every attribute (MQTT 5 user properties among them).
 * librdkafka copies them: this is the one allocation per message we add, and `headers: false` drops it. */
static rd_kafka_headers_t *sl__kheaders(const sl_event_t *ev)
{
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    char num[24];
    rd_kafka_header_add(h, "mqtt_topic", -1, ev->topic, ev->topic_len);
    snprintf(num, sizeof num, "%u", ev->rec ? ev->rec->qos : 0);
    rd_kafka_header_add(h, "mqtt_qos", -1, num, -1);
    snprintf(num, sizeof num, "%llu", (unsigned long long)ev->ingest_ns);
    rd_kafka_header_add(h, "received_ns", -1, num, -1);
    const uint8_t *a = ev->attrs, *end = ev->attrs + ev->attr_len;
    while (end - a >= 4) {
        uint16_t nl, vl;
        memcpy(&nl, a, 2);
        memcpy(&vl, a + 2, 2);
        if ((size_t)(end - a - 4) < (size_t)nl + vl)
            break;
        rd_kafka_header_add(h, (const char *)a + 4, nl, a + 4 + nl, vl);
        a += 4 + (size_t)nl + vl;
    }
    return h;
}

/* The event view of an outstanding event (pointers into the input channel, valid until it is acknowledged). */
static void sl__kmsg_event(const sl_ksink_t *ks, uint64_t token, sl_event_t *ev)
{
    sl_event_from_rec(ev, ks->recs[sl_ctx_ack_slot(ks->ctx, token)]);
    ev->token = token;
}

/* Dead-letters an outstanding event with err's text and acknowledges it. */
static void sl__kmsg_dead(sl_ksink_t *ks, uint64_t token, rd_kafka_resp_err_t err)
{
    sl_event_t ev;
    sl__kmsg_event(ks, token, &ev);
    sl_dead_letter(ks->ctx, &ev, "kafka_permanent", rd_kafka_err2str(err));
    ks->dead++;
    sl__metric_add(ks->m_dead, 1);
    sl_ack(ks->ctx, token);
}

/* Hands event ev to librdkafka. Returns 0 (in flight, or dead-lettered), SL_EAGAIN (queue full). */
static int sl__kmsg_produce(sl_ksink_t *ks, const sl_event_t *ev)
{
    char topic[SL_KAFKA_NAME_MAX], key[1024];
    const void *kp = ev->key;
    size_t kl = ev->key_len;
    int msgflags = 0;
    rd_kafka_topic_t *rkt = ks->const_rkt;
    if (rkt == NULL) {
        if (sl__ktpl_expand(&ks->topic_tpl, ev, true, topic, sizeof topic) <= 0) {
            sl__kmsg_dead(ks, ev->token, RD_KAFKA_RESP_ERR__INVALID_ARG);
            return 0;
        }
        if ((rkt = sl__ksink_topic(ks, topic)) == NULL)
            return SL_ENOMEM;
        if (ks->topic_tpl.constant)
            ks->const_rkt = rkt; /* owned by the topic table */
    }
    if (!ks->key_tpl.verbatim_key) {
        int n = sl__ktpl_expand(&ks->key_tpl, ev, false, key, sizeof key);
        kp = key, kl = n > 0 ? (size_t)n : 0;
        msgflags = RD_KAFKA_MSG_F_COPY; /* the rendered key lives on this stack; the payload is copied too */
    }
    rd_kafka_headers_t *h = ks->headers ? sl__kheaders(ev) : NULL;
    rd_kafka_resp_err_t err =
        rd_kafka_producev(ks->rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(msgflags),
                          RD_KAFKA_V_VALUE((void *)ev->payload, ev->payload_len), RD_KAFKA_V_KEY(kp, kl),
                          RD_KAFKA_V_OPAQUE((void *)(uintptr_t)ev->token), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (ks->first_ns == 0)
            ks->first_ns = sl_now_ns();
        ks->in_flight++;
        return 0;
    }
    if (h)
        rd_kafka_headers_destroy(h); /* not taken on failure */
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        ks->queue_full++;
        return SL_EAGAIN;
    }
    sl__kmsg_dead(ks, ev->token, err); /* too large, unknown partition, ...: never accepted, never will be */
    return 0;
}

int sl__ksink_backlog(sl_ksink_t *ks)
{
    while (ks->backlog_n > 0) {
        sl_event_t ev;
        sl__kmsg_event(ks, *sl__backlog_at(ks, 0), &ev);
        int rc = sl__kmsg_produce(ks, &ev);
        if (rc == SL_EAGAIN)
            return 0;
        if (rc != 0)
            return rc;
        ks->backlog_head = (ks->backlog_head + 1) % ks->n_slots;
        ks->backlog_n--;
    }
    return 0;
}

int sl__ksink_take(sl_ksink_t *ks, const sl_event_t *ev)
{
    assert(ev->rec != NULL); /* the runtime's events are views of channel records */
    ks->recs[sl_ctx_ack_slot(ks->ctx, ev->token)] = ev->rec;
    /* Once anything waits, later events wait behind it: per-key order is kept. */
    int rc;
    if (ks->backlog_n > 0 || (rc = sl__kmsg_produce(ks, ev)) == SL_EAGAIN) {
        sl__backlog_push(ks, ev->token);
        return 0;
    }
    return rc;
}

/* Errors no retry can fix: the event goes to the dead-letter path. Everything else is produced again. */
static bool sl__kerr_permanent(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC: return true;
    default: return false;
    }
}

void sl__ksink_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    sl_ksink_t *ks = opaque;
    uint64_t token = (uint64_t)(uintptr_t)m->_private;
    ks->in_flight--;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ks->delivered++;
        sl_ack(ks->ctx, token);
    } else if (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT ||
               m->err == RD_KAFKA_RESP_ERR__DESTROY) {
        /* the drain gave up on it: unacknowledged, delivered again on restart */
    } else if (sl__kerr_permanent(m->err)) {
        sl__kmsg_dead(ks, token, m->err);
    } else {
        sl__metric_add(ks->m_retries, 1);
        if (ks->retried++ == 0)
            sl_log(SL_LOG_WARN, ks->who, 0, "delivery failed (%s): producing again (counted, logged once)",
                   rd_kafka_err2str(m->err));
        sl__backlog_push(ks, token);
    }
}

void sl__ksink_poll(sl_ksink_t *ks, int timeout_ms)
{
    uint64_t delivered = ks->delivered;
    rd_kafka_poll(ks->rk, timeout_ms);
    if (ks->delivered != delivered)
        ks->last_ns = sl_now_ns();
    char err[512];
    if (!ks->fatal && rd_kafka_fatal_error(ks->rk, err, sizeof err) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ks->fatal = true;
        sl_log(SL_LOG_ERROR, ks->who, SL_EIO, "librdkafka fatal error: %s (restarting the instance)", err);
    }
}
