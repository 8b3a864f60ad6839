/*
 * Publishing capture records to an MQTT broker (Paho MQTTAsync, MQTT 5): what `sluice gen --mqtt` and
 * `sluice replay --mqtt` use to drive a broker the way a fleet would.
 *
 * At most `window` messages are unconfirmed at a time (QoS 1/2: PUBACK/PUBCOMP; QoS 0: written to the
 * socket), so a long stream neither queues without bound in Paho nor outruns the broker; the caller waits
 * on a condition variable, never polls. The window is SL_CAP_PUB_WINDOW, or the broker's Receive Maximum
 * from its CONNACK when that is lower (mosquitto: max_inflight_messages, 20 by default). Past the Receive
 * Maximum Paho does not send a message at once but queues it for its send thread, which looks at its
 * queue only once a second when nothing else wakes it: measured, 71 messages/s against a default
 * mosquitto, against thousands per second with the window kept within the broker's limit.
 * Record properties go out as MQTT 5 user properties. One publisher is used by one thread; Paho's
 * callbacks only count.
 */
#include <MQTTAsync.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ingest/capture/capture.h"

#define SL_CAP_PUB_WINDOW 1000

struct sl_cap_pub_s {
    MQTTAsync cli;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int connected;   /* 1 up, -1 failed */
    uint64_t window; /* unconfirmed messages allowed */
    uint64_t sent, done, failed;
};

static void sl__pub_count(sl_cap_pub_t *p, bool ok)
{
    pthread_mutex_lock(&p->mu);
    if (ok)
        p->done++;
    else
        p->failed++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void sl__pub_ok(void *c, MQTTAsync_successData5 *r) { sl__pub_count(c, true); }
static void sl__pub_fail(void *c, MQTTAsync_failureData5 *r) { sl__pub_count(c, false); }

static void sl__pub_conn(sl_cap_pub_t *p, int v)
{
    pthread_mutex_lock(&p->mu);
    p->connected = v;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}
static void sl__pub_conn_ok(void *c, MQTTAsync_successData5 *r)
{
    sl_cap_pub_t *p = c;
    if (r != NULL && MQTTProperties_hasProperty(&r->properties, MQTTPROPERTY_CODE_RECEIVE_MAXIMUM)) {
        int rm = MQTTProperties_getNumericValue(&r->properties, MQTTPROPERTY_CODE_RECEIVE_MAXIMUM);
        if (rm > 0 && (uint64_t)rm < p->window)
            p->window = (uint64_t)rm; /* read by the publishing thread after sl__pub_conn's unlock */
    }
    sl__pub_conn(p, 1);
}
static void sl__pub_conn_fail(void *c, MQTTAsync_failureData5 *r) { sl__pub_conn(c, -1); }

/* Waits until cond(p) holds or deadline (CLOCK_REALTIME ns) passes; returns whether it holds. */
static bool sl__pub_wait(sl_cap_pub_t *p, bool (*cond)(const sl_cap_pub_t *), uint64_t deadline)
{
    struct timespec ts = {(time_t)(deadline / SL_NS_PER_S), (long)(deadline % SL_NS_PER_S)};
    pthread_mutex_lock(&p->mu);
    while (!cond(p) && pthread_cond_timedwait(&p->cv, &p->mu, &ts) == 0)
        ;
    bool ok = cond(p);
    pthread_mutex_unlock(&p->mu);
    return ok;
}

static bool sl__pub_decided(const sl_cap_pub_t *p) { return p->connected != 0; }
static bool sl__pub_room(const sl_cap_pub_t *p) { return p->sent - p->done - p->failed < p->window; }
static bool sl__pub_idle(const sl_cap_pub_t *p) { return p->sent == p->done + p->failed; }

int sl_cap_pub_open(const char *url, const char *client_id, sl_cap_pub_t **out)
{
    *out = NULL;
    sl_cap_pub_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return SL_ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->window = SL_CAP_PUB_WINDOW;
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer5;
    co.maxBufferedMessages = SL_CAP_PUB_WINDOW * 2;
    char id[64];
    snprintf(id, sizeof id, "sluice-pub-%d", (int)getpid());
    if (MQTTAsync_createWithOptions(&p->cli, url, client_id ? client_id : id, MQTTCLIENT_PERSISTENCE_NONE, NULL, &co) !=
        MQTTASYNC_SUCCESS) {
        free(p);
        return SL_EINVAL;
    }
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer5;
    o.context = p;
    o.cleanstart = 1;
    o.maxInflight = SL_CAP_PUB_WINDOW + 100;
    o.onSuccess5 = sl__pub_conn_ok;
    o.onFailure5 = sl__pub_conn_fail;
    if (MQTTAsync_connect(p->cli, &o) != MQTTASYNC_SUCCESS ||
        !sl__pub_wait(p, sl__pub_decided, sl_wall_ns() + 10 * SL_NS_PER_S) || p->connected != 1) {
        MQTTAsync_destroy(&p->cli);
        free(p);
        return SL_EIO;
    }
    *out = p;
    return 0;
}

int sl_cap_pub_put(sl_cap_pub_t *p, const sl_cap_rec_t *rec, int qos)
{
    if (!sl__pub_wait(p, sl__pub_room, sl_wall_ns() + 30 * SL_NS_PER_S))
        return SL_ETIMEDOUT;
    char topic[65536];
    memcpy(topic, rec->topic, rec->topic_len);
    topic[rec->topic_len] = 0;
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    msg.payload = (void *)rec->payload;
    msg.payloadlen = (int)rec->payload_len;
    msg.qos = qos >= 0 ? qos : rec->qos;
    msg.retained = (rec->flags & SL_CAP_F_RETAIN) != 0;
    for (const uint8_t *a = rec->props, *end = rec->props + rec->props_len; a && a + 4 <= end;) {
        uint16_t nl = (uint16_t)(a[0] | a[1] << 8), vl = (uint16_t)(a[2] | a[3] << 8);
        MQTTProperty prop = {.identifier = MQTTPROPERTY_CODE_USER_PROPERTY};
        prop.value.data.data = (char *)a + 4;
        prop.value.data.len = nl;
        prop.value.value.data = (char *)a + 4 + nl;
        prop.value.value.len = vl;
        MQTTProperties_add(&msg.properties, &prop);
        a += 4u + nl + vl;
    }
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.context = p;
    ro.onSuccess5 = sl__pub_ok;
    ro.onFailure5 = sl__pub_fail;
    pthread_mutex_lock(&p->mu);
    p->sent++;
    pthread_mutex_unlock(&p->mu);
    int rc;
    uint64_t deadline = sl_wall_ns() + 30 * SL_NS_PER_S;
    /* Paho refuses past the broker's receive maximum (mosquitto: 20 by default) instead of queueing:
     * that is backpressure, wait for the next confirmation and try again. */
    while ((rc = MQTTAsync_sendMessage(p->cli, topic, &msg, &ro)) == MQTTASYNC_MAX_MESSAGES_INFLIGHT ||
           rc == MQTTASYNC_MAX_BUFFERED_MESSAGES || rc == MQTTASYNC_MAX_BUFFERED) {
        if (sl_wall_ns() >= deadline)
            break;
        pthread_mutex_lock(&p->mu);
        uint64_t seen = p->done + p->failed, until = sl_wall_ns() + 10 * SL_NS_PER_MS;
        struct timespec ts = {(time_t)(until / SL_NS_PER_S), (long)(until % SL_NS_PER_S)};
        while (p->done + p->failed == seen && pthread_cond_timedwait(&p->cv, &p->mu, &ts) == 0)
            ;
        pthread_mutex_unlock(&p->mu);
    }
    MQTTProperties_free(&msg.properties);
    if (rc != MQTTASYNC_SUCCESS) {
        sl_log(SL_LOG_ERROR, "mqtt", 0, "MQTTAsync_sendMessage(%s): %s", topic, MQTTAsync_strerror(rc));
        sl__pub_count(p, false);
        return SL_EIO;
    }
    return 0;
}

int sl_cap_pub_close(sl_cap_pub_t *p, uint64_t *done, uint64_t *failed)
{
    if (p == NULL)
        return 0;
    bool idle = sl__pub_wait(p, sl__pub_idle, sl_wall_ns() + 30 * SL_NS_PER_S);
    *done = p->done;
    *failed = p->failed;
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer5;
    d.timeout = 1000;
    MQTTAsync_disconnect(p->cli, &d);
    MQTTAsync_destroy(&p->cli);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
    return idle ? 0 : SL_ETIMEDOUT;
}
