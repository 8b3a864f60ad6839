/*
 * The MQTT source's message path: Paho's message-arrived callback, on Paho's own thread.
 *
 * Acknowledgement: Paho 1.3 MQTTAsync acknowledges a QoS 1/2 message it delivers inline only after this
 * callback returns 1, so the callback returns 1 only once the event is published in the source's output
 * channel (shared memory that outlives this worker): a crash before that leaves the message
 * unacknowledged and the broker delivers it again. The window that stays at risk is Paho's own: when its
 * internal queue already holds messages (the callback fell behind), a new one is queued and acknowledged
 * at once, and a crash loses what that queue held (README, "What a crash of the source can lose").
 *
 * Flow control: Paho services nothing on the connection while this callback runs, and the broker drops a
 * client that is silent for 1.5 keep-alives, so the wait for demand is bounded (wait_timeout, at most a
 * third of the keep-alive). Past it the overflow policy applies: `pause` puts the event into the
 * channel's bounded overdraft (still shared memory) and pauses the flow right here (sl__mqtt_pause: a
 * disconnect that keeps the session, and the socket shut down so nothing more than the broker's in-flight
 * window arrives); `drop_newest` drops it, counted and logged at most once a second.
 */
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "ingest/mqtt/mqtt_int.h"

#define SL_MQTT_RETRY_NS (50 * SL_NS_PER_MS) /* extra wait when even the overdraft is full */

/* Rate-limited report of drops and of waits for room past the overdraft, with the figures since the last line. */
static void sl__mqtt_report(sl_mqtt_t *m, const char *what)
{
    uint64_t now = sl_now_ns();
    if (now - m->log_ns < SL_NS_PER_S)
        return;
    uint64_t dropped = sl__mqtt_get(m->dropped), unacked = sl__mqtt_get(m->unacked);
    sl_log(SL_LOG_WARN, m->who, 0,
           "%s: %llu dropped in all (%llu since the last line), %llu overdraft-full waits (%llu since), "
           "no demand within %llu ms",
           what, (unsigned long long)dropped, (unsigned long long)(dropped - m->log_dropped),
           (unsigned long long)unacked, (unsigned long long)(unacked - m->log_unacked),
           (unsigned long long)(m->wait_ns / SL_NS_PER_MS));
    m->log_ns = now;
    m->log_dropped = dropped;
    m->log_unacked = unacked;
}

/* MQTT 5 properties that become attributes: user properties by their own name, content type, response
 * topic. What does not fit the attribute buffer is cut and counted. */
static void sl__mqtt_props(sl_mqtt_t *m, const MQTTProperties *props, size_t *len)
{
    for (int i = 0; i < props->count; i++) {
        const MQTTProperty *p = &props->array[i];
        int rc = 0;
        switch (p->identifier) {
        case MQTTPROPERTY_CODE_USER_PROPERTY:
            rc = sl_rec_attr_put(m->attrs, sizeof m->attrs, len, p->value.data.data, (size_t)p->value.data.len,
                                 p->value.value.data, (size_t)p->value.value.len);
            break;
        case MQTTPROPERTY_CODE_CONTENT_TYPE:
            rc = sl_rec_attr_put(m->attrs, sizeof m->attrs, len, "content_type", 12, p->value.data.data,
                                 (size_t)p->value.data.len);
            break;
        case MQTTPROPERTY_CODE_RESPONSE_TOPIC:
            rc = sl_rec_attr_put(m->attrs, sizeof m->attrs, len, "response_topic", 14, p->value.data.data,
                                 (size_t)p->value.data.len);
            break;
        default: break;
        }
        if (rc != 0)
            sl__mqtt_add(m->cut_attrs, 1);
    }
}

/* Emits em under the overflow policy. Returns 1 when the message may be acknowledged, 0 when Paho must
 * keep it (it offers it again). */
static int sl__mqtt_take(sl_mqtt_t *m, const sl_emit_t *em)
{
    bool pausing = atomic_load_explicit(&m->pause_req, memory_order_relaxed);
    int rc = sl_emit_wait(m->ctx, em, pausing ? 0 : m->wait_ns);
    if (rc == 0) {
        m->emitted++;
        return 1;
    }
    if (rc == SL_EMSGSIZE) {
        sl__mqtt_add(m->dropped, 1);
        sl_log(SL_LOG_ERROR, m->who, rc, "message of %u bytes on %.*s can never fit the channel: dropped",
               em->payload_len, (int)em->topic_len, em->topic);
        return 1;
    }
    if (rc == SL_ETIMEDOUT && !m->pause_policy) {
        sl__mqtt_add(m->dropped, 1);
        sl__mqtt_report(m, "overflow drop_newest");
        return 1;
    }
    /* `pause`, or stopping: keep the event in the overdraft so that it is acknowledged exactly once. */
    if (sl_emit_overdraft(m->ctx, em, m->overdraft) == 0) {
        sl__mqtt_add(m->overdrafted, 1);
        if (rc == SL_ETIMEDOUT && !atomic_exchange(&m->pause_req, true)) {
            m->episode_over = 0;
            /* Pause from here, at once: the disconnect is queued to Paho's send thread now rather than at the
             * worker's next tick, so what arrives meanwhile (and must fit the overdraft) is only what Paho
             * reads before its send thread gets the client's lock. */
            bool paused = sl__mqtt_pause(m, true);
            sl_log(SL_LOG_WARN, m->who, 0,
                   "overflow pause: no demand within %llu ms; %s with the session kept (%llu received, %llu in "
                   "the overdraft so far)",
                   (unsigned long long)(m->wait_ns / SL_NS_PER_MS),
                   paused ? "disconnecting" : "pausing once the connection is up",
                   (unsigned long long)sl__mqtt_get(m->received), (unsigned long long)sl__mqtt_get(m->overdrafted));
        }
        if (++m->episode_over > sl__mqtt_get(m->overdraft_peak))
            atomic_store_explicit(m->overdraft_peak, m->episode_over, memory_order_relaxed);
        return 1;
    }
    /* The overdraft is full too. A message left to Paho (returning 0) is not offered again after the
     * reconnect (measured: the stalled-sink test lost them), so wait for room instead, in bounded slices,
     * reporting each: the worst case is the broker dropping the connection for silence, after which it
     * delivers again what was not acknowledged (duplicates, no loss). Only a stop leaves it to Paho. */
    while (rc != SL_ECANCELED) {
        sl__mqtt_add(m->unacked, 1);
        sl__mqtt_report(m, "overflow pause: overdraft full, waiting for room");
        rc = sl_emit_wait(m->ctx, em, m->wait_ns ? m->wait_ns : SL_MQTT_RETRY_NS);
        if (rc == 0) {
            m->emitted++;
            return 1;
        }
    }
    return 0;
}

/*
 * Paho's receive thread inherits the worker's SCHED_BATCH, which suits workers that wake each other (a
 * woken peer does not preempt its waker) but not a thread woken by the network: a SCHED_BATCH thread woken
 * by the broker's data waits for the running task's time slice to end, and at QoS 1 the broker stops
 * sending once its in-flight window is unacknowledged, so every such delay stalls the flow. The raw Paho
 * client it is measured against runs SCHED_OTHER; so does this thread from its first message on.
 */
static void sl__mqtt_rcv_sched(sl_mqtt_t *m)
{
    struct sched_param sp = {.sched_priority = 0};
    int rc = pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp);
    if (rc != 0)
        sl_log(SL_LOG_DEBUG, m->who, -rc, "pthread_setschedparam(SCHED_OTHER) failed");
    m->rcv_thread = pthread_self();
    m->rcv_sched_set = true;
}

int sl__mqtt_arrived(void *context, char *topic, int topic_len, MQTTAsync_message *msg)
{
    sl_mqtt_t *m = context;
    if (SL_UNLIKELY(!m->rcv_sched_set || !pthread_equal(m->rcv_thread, pthread_self())))
        sl__mqtt_rcv_sched(m);
    size_t tlen = topic_len > 0 ? (size_t)topic_len : strlen(topic);
    sl__mqtt_add(m->received, 1);
    size_t alen = 0;
    const char *key = topic;
    size_t key_len = tlen;
    if (sl_mqtt_tpl_match(&m->tpl, topic, tlen, m->attrs, sizeof m->attrs, &alen, &key, &key_len) < 0)
        sl__mqtt_add(m->cut_attrs, 1);
    if (msg->properties.count > 0)
        sl__mqtt_props(m, &msg->properties, &alen);
    sl_emit_t em = {.topic = topic,
                    .topic_len = (uint32_t)SL_MIN(tlen, (size_t)UINT16_MAX),
                    .key = key,
                    .key_len = (uint32_t)key_len,
                    .attrs = m->attrs,
                    .attr_len = (uint32_t)alen,
                    .payload = msg->payload,
                    .payload_len = (uint32_t)msg->payloadlen,
                    .flags = msg->retained ? SL_REC_RETAIN : 0,
                    .qos = (uint8_t)msg->qos,
                    .ingest_ns = sl_wall_ns()};
    int ack = sl__mqtt_take(m, &em);
    if (ack) {
        MQTTAsync_freeMessage(&msg);
        MQTTAsync_free(topic);
    }
    return ack;
}
