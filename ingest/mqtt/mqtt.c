/*
 * The `mqtt` source: subscribes to a broker with Eclipse Paho MQTTAsync and emits every message as an
 * event, with demand-driven flow control that never costs the session.
 *
 * Threads: Paho's threads run the callbacks (messages in mqtt_recv.c; connect, disconnect and connection
 * loss here); they are the only ones that emit. The worker thread runs handle_timer every few
 * milliseconds: it owns the decisions that take time or need the demand figure (reconnect with backoff
 * and jitter, pause, resume), and it never touches the outputs while a connection may deliver messages
 * (it reads the demand only in state PAUSED, when no callback runs).
 *
 * Invariants:
 *  - A message is acknowledged to the broker only after its event is published in the output channel
 *    (see mqtt_recv.c for the one window Paho leaves open).
 *  - The session survives everything but clean_start: the client id is stable, pauses are clean
 *    disconnects of a persistent session, and every (re)connect resubscribes.
 *  - terminate() destroys the Paho client before it returns, so no callback runs after it.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ingest/ingest.h"
#include "ingest/mqtt/mqtt_int.h"

#define SL_MQTT_TICK_NS (10 * SL_NS_PER_MS) /* how often the worker looks at the connection */

const char *sl_mqtt_state_name(int st)
{
    switch (st) {
#define SL_MQTT_STATE_NAME(name, text) \
    case SL_MQTT_##name: return text;
        SL_MQTT_STATE_MAP(SL_MQTT_STATE_NAME)
#undef SL_MQTT_STATE_NAME
    }
    return "?";
}

/* Moves from `from` to `to` if still in `from`; false when another thread moved first. */
static bool sl__mqtt_move(sl_mqtt_t *m, int from, int to)
{
    bool ok = atomic_compare_exchange_strong(&m->state, &from, to);
    if (ok)
        sl_log(SL_LOG_DEBUG, m->who, 0, "connection %s -> %s", sl_mqtt_state_name(from), sl_mqtt_state_name(to));
    return ok;
}

static void sl__mqtt_down(sl_mqtt_t *m, int from)
{
    if (sl__mqtt_move(m, from, SL_MQTT_DOWN))
        atomic_fetch_add(&m->downs, 1);
}

/* ---- Paho's threads ------------------------------------------------------------------------------ */

static void sl__mqtt_subscribed(void *context, MQTTAsync_successData *r)
{
    sl_mqtt_t *m = context;
    for (int i = 0; i < m->n_filters; i++) {
        int q = m->n_filters == 1 ? r->alt.qos : r->alt.qosList[i];
        if (q == 0x80)
            sl_log(SL_LOG_ERROR, m->who, 0, "subscription to %s refused by the broker", m->filters[i]);
    }
    sl_log(SL_LOG_INFO, m->who, 0, "subscribed to %d filter%s", m->n_filters, m->n_filters == 1 ? "" : "s");
}

static void sl__mqtt_subscribed5(void *context, MQTTAsync_successData5 *r)
{
    sl_mqtt_t *m = context;
    /* Paho reports one subscription's reason code in reasonCode, several in the alt.sub array. */
    for (int i = 0; i < m->n_filters; i++) {
        enum MQTTReasonCodes rc = m->n_filters == 1                ? r->reasonCode
                                  : i < r->alt.sub.reasonCodeCount ? r->alt.sub.reasonCodes[i]
                                                                   : MQTTREASONCODE_SUCCESS;
        if (rc >= 0x80)
            sl_log(SL_LOG_ERROR, m->who, 0, "subscription to %s refused by the broker: %s", m->filters[i],
                   MQTTReasonCode_toString(rc));
    }
    sl_log(SL_LOG_INFO, m->who, 0, "subscribed to %d filter%s", m->n_filters, m->n_filters == 1 ? "" : "s");
}

static void sl__mqtt_sub_failed(void *context, MQTTAsync_failureData *r)
{
    sl_mqtt_t *m = context;
    sl_log(SL_LOG_ERROR, m->who, 0, "subscribe failed: %s (code %d)", r->message ? r->message : "", r->code);
}

static void sl__mqtt_sub_failed5(void *context, MQTTAsync_failureData5 *r)
{
    sl_mqtt_t *m = context;
    sl_log(SL_LOG_ERROR, m->who, 0, "subscribe failed: %s (%s)", r->message ? r->message : "",
           MQTTReasonCode_toString(r->reasonCode));
}

/* Every (re)connect resubscribes: a broker that lost the session (expiry, restart without persistence)
 * has forgotten the subscriptions, and resubscribing a kept session is harmless. */
static void sl__mqtt_connected(sl_mqtt_t *m, const char *uri, int session_present)
{
    if (!sl__mqtt_move(m, SL_MQTT_CONNECTING, SL_MQTT_UP))
        return;
    atomic_store(&m->reset_backoff, true);
    m->connects++;
    sl_log(SL_LOG_INFO, m->who, 0, "connected to %s as %s (MQTT %s, session %s); subscribing to %d filter%s",
           uri ? uri : "?", m->client_id, m->version == MQTTVERSION_5 ? "5" : "3.1.1",
           session_present ? "present" : "new", m->n_filters, m->n_filters == 1 ? "" : "s");
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.context = m;
    if (m->version == MQTTVERSION_5) {
        ro.onSuccess5 = sl__mqtt_subscribed5;
        ro.onFailure5 = sl__mqtt_sub_failed5;
    } else {
        ro.onSuccess = sl__mqtt_subscribed;
        ro.onFailure = sl__mqtt_sub_failed;
    }
    int rc = MQTTAsync_subscribeMany(m->cli, m->n_filters, m->filters, m->qos, &ro);
    if (rc != MQTTASYNC_SUCCESS)
        sl_log(SL_LOG_ERROR, m->who, 0, "MQTTAsync_subscribeMany failed: %s", MQTTAsync_strerror(rc));
}

static void sl__mqtt_on_connect(void *context, MQTTAsync_successData *r)
{
    sl__mqtt_connected(context, r->alt.connect.serverURI, r->alt.connect.sessionPresent);
}

static void sl__mqtt_on_connect5(void *context, MQTTAsync_successData5 *r)
{
    sl__mqtt_connected(context, r->alt.connect.serverURI, r->alt.connect.sessionPresent);
}

static void sl__mqtt_connect_failed(sl_mqtt_t *m, const char *msg, int code, const char *reason)
{
    sl_log(SL_LOG_WARN, m->who, 0, "connect to %s%s failed: %s%s%s (code %d)", m->urls[0],
           m->n_urls > 1 ? " (and failover URLs)" : "", msg ? msg : "connection refused or unreachable",
           reason ? ": " : "", reason ? reason : "", code);
    sl__mqtt_down(m, SL_MQTT_CONNECTING);
}

static void sl__mqtt_on_connect_fail(void *context, MQTTAsync_failureData *r)
{
    sl__mqtt_connect_failed(context, r ? r->message : NULL, r ? r->code : 0, NULL);
}

static void sl__mqtt_on_connect_fail5(void *context, MQTTAsync_failureData5 *r)
{
    sl__mqtt_connect_failed(context, r ? r->message : NULL, r ? r->code : 0,
                            r && r->reasonCode ? MQTTReasonCode_toString(r->reasonCode) : NULL);
}

static void sl__mqtt_lost(void *context, char *cause)
{
    sl_mqtt_t *m = context;
    int st = atomic_load(&m->state);
    if (st == SL_MQTT_PAUSING) {
        atomic_store(&m->disc_done, true);
        sl__mqtt_move(m, SL_MQTT_PAUSING, SL_MQTT_PAUSED);
        return;
    }
    if (st == SL_MQTT_STOPPED)
        return;
    sl_log(SL_LOG_WARN, m->who, 0, "connection lost: %s; reconnecting", cause ? cause : "(no cause given)");
    sl__mqtt_down(m, SL_MQTT_UP);
}

static void sl__mqtt_disconnected(void *context, MQTTAsync_successData *r)
{
    sl_mqtt_t *m = context;
    atomic_store(&m->disc_done, true);
    sl__mqtt_move(m, SL_MQTT_PAUSING, SL_MQTT_PAUSED);
}

static void sl__mqtt_disconnected5(void *context, MQTTAsync_successData5 *r) { sl__mqtt_disconnected(context, NULL); }
static void sl__mqtt_disc_failed(void *context, MQTTAsync_failureData *r) { sl__mqtt_disconnected(context, NULL); }
static void sl__mqtt_disc_failed5(void *context, MQTTAsync_failureData5 *r) { sl__mqtt_disconnected(context, NULL); }

/* OpenSSL's own words for a failed handshake (a wrong CA, an expired certificate) reach the log here. */
static int sl__mqtt_ssl_error(const char *str, size_t len, void *u)
{
    sl_mqtt_t *m = u;
    while (len > 0 && (str[len - 1] == '\n' || str[len - 1] == '\0'))
        len--;
    sl_log(SL_LOG_ERROR, m->who, 0, "TLS: %.*s", (int)len, str);
    atomic_store(&m->tls_error, true);
    return 0;
}

/* ---- the worker thread --------------------------------------------------------------------------- */

static void sl__mqtt_prop_int(MQTTProperties *props, enum MQTTPropertyCodes id, int v)
{
    MQTTProperty p;
    memset(&p, 0, sizeof p);
    p.identifier = id;
    if (id == MQTTPROPERTY_CODE_RECEIVE_MAXIMUM)
        p.value.integer2 = (unsigned short)v;
    else
        p.value.integer4 = (unsigned int)v;
    MQTTProperties_add(props, &p);
}

/* Starts a connect (to the first URL that answers, in order); the outcome arrives on Paho's thread. */
static int sl__mqtt_connect(sl_mqtt_t *m)
{
    MQTTAsync_connectOptions o3 = MQTTAsync_connectOptions_initializer;
    MQTTAsync_connectOptions o5 = MQTTAsync_connectOptions_initializer5;
    MQTTAsync_connectOptions *o = m->version == MQTTVERSION_5 ? &o5 : &o3;
    MQTTProperties props = MQTTProperties_initializer;
    o->keepAliveInterval = m->keepalive_s;
    o->connectTimeout = m->connect_timeout_s;
    o->serverURIs = m->urls;
    o->serverURIcount = m->n_urls;
    o->MQTTVersion = m->version;
    o->username = m->username;
    o->password = m->password;
    o->ssl = m->tls ? &m->ssl : NULL;
    o->context = m;
    o->automaticReconnect = 0; /* ours has jitter, resubscribes, and knows about pauses */
    if (m->version == MQTTVERSION_5) {
        o->cleanstart = m->clean_start;
        sl__mqtt_prop_int(&props, MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL, (int)m->session_expiry_s);
        sl__mqtt_prop_int(&props, MQTTPROPERTY_CODE_RECEIVE_MAXIMUM, m->in_flight);
        o->connectProperties = &props;
        o->onSuccess5 = sl__mqtt_on_connect5;
        o->onFailure5 = sl__mqtt_on_connect_fail5;
    } else {
        o->cleansession = m->clean_start;
        o->onSuccess = sl__mqtt_on_connect;
        o->onFailure = sl__mqtt_on_connect_fail;
    }
    atomic_store(&m->state, SL_MQTT_CONNECTING);
    int rc = MQTTAsync_connect(m->cli, o);
    MQTTProperties_free(&props);
    if (rc != MQTTASYNC_SUCCESS) {
        sl_log(SL_LOG_WARN, m->who, 0, "MQTTAsync_connect failed: %s", MQTTAsync_strerror(rc));
        sl__mqtt_down(m, SL_MQTT_CONNECTING);
        return SL_EIO;
    }
    return 0;
}

/* Starts a clean disconnect that keeps the session (the broker queues for it meanwhile). */
static int sl__mqtt_disconnect(sl_mqtt_t *m, int timeout_ms)
{
    MQTTAsync_disconnectOptions d3 = MQTTAsync_disconnectOptions_initializer;
    MQTTAsync_disconnectOptions d5 = MQTTAsync_disconnectOptions_initializer5;
    MQTTAsync_disconnectOptions *d = m->version == MQTTVERSION_5 ? &d5 : &d3;
    d->timeout = timeout_ms;
    d->context = m;
    if (m->version == MQTTVERSION_5) {
        d->onSuccess5 = sl__mqtt_disconnected5;
        d->onFailure5 = sl__mqtt_disc_failed5;
    } else {
        d->onSuccess = sl__mqtt_disconnected;
        d->onFailure = sl__mqtt_disc_failed;
    }
    atomic_store(&m->disc_done, false);
    int rc = MQTTAsync_disconnect(m->cli, d);
    if (rc != MQTTASYNC_SUCCESS)
        atomic_store(&m->disc_done, true); /* not connected: nothing to wait for */
    return rc == MQTTASYNC_SUCCESS ? 0 : SL_EIO;
}

/* Exponential backoff with jitter: a fleet of sluice instances cut off together does not reconnect in
 * lockstep. The delay is uniform in [backoff/2, backoff]. */
static void sl__mqtt_schedule(sl_mqtt_t *m, uint64_t now)
{
    if (atomic_exchange(&m->reset_backoff, false))
        m->backoff_ns = m->reconnect_min_ns;
    uint64_t half = m->backoff_ns / 2;
    m->retry_at_ns = now + half + (half ? (uint64_t)rand_r(&m->seed) % (half + 1) : 0);
    sl_log(SL_LOG_INFO, m->who, 0, "reconnecting in %llu ms",
           (unsigned long long)((m->retry_at_ns - now) / SL_NS_PER_MS));
    m->backoff_ns = SL_MIN(m->backoff_ns * 2, m->reconnect_max_ns);
}

static int sl__mqtt_timer(sl_ctx_t *ctx, void *state)
{
    sl_mqtt_t *m = state;
    uint64_t now = sl_now_ns();
    switch (atomic_load(&m->state)) {
    case SL_MQTT_UP:
        if (atomic_load(&m->pause_req) && sl__mqtt_move(m, SL_MQTT_UP, SL_MQTT_PAUSING)) {
            m->paused_ns = now;
            m->pauses++;
            if (sl__mqtt_disconnect(m, 1000) != 0)
                sl__mqtt_move(m, SL_MQTT_PAUSING, SL_MQTT_PAUSED);
        }
        break;
    case SL_MQTT_DOWN:
        if (atomic_load(&m->pause_req)) {
            m->paused_ns = now;
            m->pauses++;
            sl__mqtt_move(m, SL_MQTT_DOWN, SL_MQTT_PAUSED);
            break;
        }
        if (atomic_load(&m->downs) != m->downs_seen) {
            m->downs_seen = atomic_load(&m->downs);
            sl__mqtt_schedule(m, now);
        }
        if (now >= m->retry_at_ns)
            sl__mqtt_connect(m);
        break;
    case SL_MQTT_PAUSED: {
        /* No callback runs now: the worker may read the outputs' demand. */
        uint64_t d = sl_ctx_demand(ctx);
        if (d == 0)
            break;
        sl_log(SL_LOG_INFO, m->who, 0,
               "overflow pause: resuming after %llu ms paused (pause %llu; demand %llu; %llu received, %llu in "
               "the overdraft in all)",
               (unsigned long long)((now - m->paused_ns) / SL_NS_PER_MS), (unsigned long long)m->pauses,
               (unsigned long long)d, (unsigned long long)m->received, (unsigned long long)m->overdrafted);
        atomic_store(&m->pause_req, false);
        atomic_store(&m->reset_backoff, true);
        sl__mqtt_connect(m);
        break;
    }
    default: break;
    }
    sl_ctx_set_timer(ctx, now + SL_MQTT_TICK_NS);
    return 0;
}

/* Waits (init and terminate only) until pred holds or the deadline passes. */
static bool sl__mqtt_await(sl_mqtt_t *m, bool (*pred)(sl_mqtt_t *), uint64_t timeout_ns)
{
    uint64_t deadline = sl_now_ns() + timeout_ns;
    struct timespec ts = {0, (long)SL_NS_PER_MS};
    while (!pred(m) && sl_now_ns() < deadline)
        nanosleep(&ts, NULL);
    return pred(m);
}

static bool sl__mqtt_settled(sl_mqtt_t *m) { return atomic_load(&m->state) != SL_MQTT_CONNECTING; }
static bool sl__mqtt_disc_done(sl_mqtt_t *m) { return atomic_load(&m->disc_done); }

static void sl__mqtt_free(sl_mqtt_t *m)
{
    if (m->cli)
        MQTTAsync_destroy(&m->cli);
    sl__mqtt_conf_free(m);
    free(m);
}

/*
 * The first connect happens here, synchronously, so that what can never work stops the instance with
 * "cannot start" (a certificate the broker's CA does not match, refused by OpenSSL) instead of looping.
 * A broker that is merely unreachable is retried with backoff: it may be restarting.
 */
static int sl__mqtt_init(sl_ctx_t *ctx, void **state)
{
    sl_mqtt_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return SL_ENOMEM;
    m->ctx = ctx;
    m->who = sl_ctx_name(ctx);
    m->seed = (unsigned)getpid() ^ (unsigned)sl_now_ns();
    atomic_store(&m->state, SL_MQTT_DOWN);
    int rc = sl__mqtt_conf(m, sl_ctx_node(ctx), sl_ctx_instance(ctx));
    if (rc != 0) {
        sl__mqtt_free(m);
        return rc;
    }
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    co.MQTTVersion = m->version;
    rc = MQTTAsync_createWithOptions(&m->cli, m->urls[0], m->client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
    if (rc == MQTTASYNC_SUCCESS)
        rc = MQTTAsync_setCallbacks(m->cli, m, sl__mqtt_lost, sl__mqtt_arrived, NULL);
    if (rc != MQTTASYNC_SUCCESS) {
        sl_log(SL_LOG_ERROR, m->who, 0, "MQTTAsync_create(%s, %s) failed: %s", m->urls[0], m->client_id,
               MQTTAsync_strerror(rc));
        sl__mqtt_free(m);
        return SL_EINVAL;
    }
    if (m->tls) {
        m->ssl.ssl_error_cb = sl__mqtt_ssl_error;
        m->ssl.ssl_error_context = m;
    }
    sl__mqtt_connect(m);
    sl__mqtt_await(m, sl__mqtt_settled, (uint64_t)(m->connect_timeout_s * m->n_urls + 1) * SL_NS_PER_S);
    if (atomic_load(&m->state) != SL_MQTT_UP && atomic_load(&m->tls_error)) {
        sl_log(SL_LOG_ERROR, m->who, 0,
               "TLS handshake with %s failed (see the TLS line above: check tls_ca_file, tls_cert_file, "
               "tls_key_file and the broker's certificate)",
               m->urls[0]);
        atomic_store(&m->state, SL_MQTT_STOPPED);
        sl__mqtt_free(m);
        return SL_EIO;
    }
    *state = m;
    sl_ctx_set_timer(ctx, sl_now_ns() + SL_MQTT_TICK_NS);
    return 0;
}

static void sl__mqtt_terminate(sl_ctx_t *ctx, void *state, int reason)
{
    sl_mqtt_t *m = state;
    if (m == NULL)
        return;
    int prev = atomic_exchange(&m->state, SL_MQTT_STOPPED);
    if (prev == SL_MQTT_UP || prev == SL_MQTT_CONNECTING || prev == SL_MQTT_PAUSING) {
        if (sl__mqtt_disconnect(m, 500) == 0)
            sl__mqtt_await(m, sl__mqtt_disc_done, 2 * SL_NS_PER_S);
    }
    /* After destroy no callback runs: the worker thread owns the outputs again. */
    MQTTAsync_destroy(&m->cli);
    sl_log(SL_LOG_INFO, m->who, 0,
           "mqtt: %llu received, %llu emitted, %llu into the overdraft, %llu dropped, %llu overdraft-full waits, %llu "
           "pauses, %llu connects, %llu events with attributes cut",
           (unsigned long long)m->received, (unsigned long long)m->emitted, (unsigned long long)m->overdrafted,
           (unsigned long long)m->dropped, (unsigned long long)m->unacked, (unsigned long long)m->pauses,
           (unsigned long long)m->connects, (unsigned long long)m->cut_attrs);
    sl__mqtt_free(m);
}

const sl_stage_ops_t sl_source_mqtt_ops = {
    .type = "mqtt",
    .kind = SL_KIND_PRODUCER,
    .flags = SL_STAGE_EXTERNAL,
    .init = sl__mqtt_init,
    .handle_timer = sl__mqtt_timer,
    .terminate = sl__mqtt_terminate,
};
