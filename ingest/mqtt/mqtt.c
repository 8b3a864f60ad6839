/*
 * The `mqtt` source: subscribes to a broker with Eclipse Paho MQTTAsync and emits every message as an
 * event, with demand-driven flow control that never costs the session.
 *
 * Threads: Paho's threads run the callbacks (messages in mqtt_recv.c; connect, disconnect and connection
 * loss here); they are the only ones that emit. The worker thread runs handle_timer every few
 * milliseconds: it owns the decisions that take time or need the demand figure (reconnect with backoff
 * and jitter, resume), and it never touches the outputs (in state PAUSED, when no callback runs, it peeks
 * at the demand read-only). A pause starts in the message callback itself, at the first event without
 * demand, so the flow stops at once (sl__mqtt_pause).
 *
 * Invariants:
 *  - A message is acknowledged to the broker only after its event is published in the output channel
 *    (see mqtt_recv.c for the one window Paho leaves open).
 *  - The session survives everything but clean_start: the client id is stable, pauses end the connection
 *    of a persistent session (a disconnect, and the socket shut down), and every (re)connect resubscribes.
 *  - terminate() destroys the Paho client before it returns, so no callback runs after it.
 */
#include <dirent.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

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

/* The TCP port of a broker URL as Paho connected to it ("tcp://h:1883", "ssl://[::1]:8883", "tcp://h"). */
static int sl__mqtt_url_port(const char *uri)
{
    const char *host = strstr(uri, "://");
    host = host ? host + 3 : uri;
    const char *colon = strrchr(host, ':'), *bracket = strrchr(host, ']');
    if (colon != NULL && (bracket == NULL || colon > bracket))
        return atoi(colon + 1);
    bool tls = strncmp(uri, "ssl://", 6) == 0 || strncmp(uri, "mqtts://", 8) == 0;
    return tls ? 8883 : 1883;
}

/* Whether fd is a TCP socket connected to port. */
static bool sl__mqtt_sock_to(int fd, int port)
{
    int type = 0;
    socklen_t tl = sizeof type;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM ||
        getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return false;
    int peer = ss.ss_family == AF_INET    ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
               : ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                          : -1;
    return peer == port;
}

/*
 * Finds the socket of the connection Paho just made, so that a pause can stop the flow at once (see
 * sl__mqtt_pause). Paho does not expose it: it is the one TCP socket of this worker process connected to
 * the broker's port. Anything else (none, or two candidates) leaves -1, and a pause then relies on the
 * queued disconnect alone. Paho's thread, from the connect callback (the socket cannot be closed meanwhile).
 * The open descriptors come from /proc/self/fd: probing every number up to RLIMIT_NOFILE cost 20,000
 * failed getsockopt calls per connect (20 ms of CPU; 0.2 us per message of a 100k-message backlog drain).
 */
static void sl__mqtt_find_sock(sl_mqtt_t *m, const char *uri)
{
    int port = uri ? sl__mqtt_url_port(uri) : 0, found = -1, n = 0;
    DIR *d = port > 0 ? opendir("/proc/self/fd") : NULL;
    if (d != NULL) {
        int skip = dirfd(d);
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            int fd = e->d_name[0] >= '0' && e->d_name[0] <= '9' ? atoi(e->d_name) : -1;
            if (fd >= 0 && fd != skip && sl__mqtt_sock_to(fd, port)) {
                found = fd;
                n++;
            }
        }
        closedir(d);
    } else {
        /* No /proc: probe the descriptor numbers themselves. */
        struct rlimit rl;
        int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
        for (int fd = 0; port > 0 && fd < max; fd++)
            if (sl__mqtt_sock_to(fd, port)) {
                found = fd;
                n++;
            }
    }
    atomic_store(&m->sock, n == 1 ? found : -1);
    if (n != 1)
        sl_log(SL_LOG_DEBUG, m->who, 0, "%d sockets to port %d: a pause will wait for Paho's disconnect", n, port);
}

/* Every (re)connect resubscribes: a broker that lost the session (expiry, restart without persistence)
 * has forgotten the subscriptions, and resubscribing a kept session is harmless. */
static void sl__mqtt_connected(sl_mqtt_t *m, const char *uri, int session_present)
{
    if (!sl__mqtt_move(m, SL_MQTT_CONNECTING, SL_MQTT_UP))
        return;
    atomic_store(&m->reset_backoff, true);
    sl__mqtt_add(m->connects, 1);
    sl__mqtt_find_sock(m, uri);
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

/*
 * Paho 1.3.12 has no call that stops the flow at once: a disconnect is queued to its send thread, which
 * needs the client lock that the receive thread holds while it delivers, and takes again at once while the
 * socket has data (measured: 100 more messages within 23 ms of the request, before the disconnect ran). So
 * the message callback (which holds that lock, so the socket cannot be closed or reused under it) also
 * shuts the socket down: Paho's next read or write fails, it reports the connection lost (PAUSING ->
 * PAUSED), and the broker, which gets no more acknowledgements, has at most its in-flight window (Receive
 * Maximum, mosquitto's max_inflight_messages for 3.1.1) sent and unacknowledged: that, read from the socket
 * buffer, is all that still reaches the overdraft. The session is kept either way (clean_start false); the
 * broker delivers again what it sent and never had acknowledged.
 */
bool sl__mqtt_pause(sl_mqtt_t *m, bool in_callback)
{
    if (!sl__mqtt_move(m, SL_MQTT_UP, SL_MQTT_PAUSING))
        return false;
    atomic_store(&m->paused_ns, sl_now_ns());
    sl__mqtt_add(m->pauses, 1);
    atomic_store_explicit(m->paused, 1, memory_order_relaxed);
    int rc = sl__mqtt_disconnect(m, 0);
    int fd = atomic_exchange(&m->sock, -1);
    if (in_callback && fd >= 0)
        shutdown(fd, SHUT_RDWR);
    if (rc != 0)
        sl__mqtt_move(m, SL_MQTT_PAUSING, SL_MQTT_PAUSED);
    return true;
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
        /* The callback pauses at once; this catches a request that raced with a reconnect. */
        if (atomic_load(&m->pause_req))
            sl__mqtt_pause(m, false);
        break;
    case SL_MQTT_DOWN:
        if (atomic_load(&m->pause_req)) {
            if (sl__mqtt_move(m, SL_MQTT_DOWN, SL_MQTT_PAUSED)) {
                atomic_store(&m->paused_ns, now);
                sl__mqtt_add(m->pauses, 1);
                atomic_store_explicit(m->paused, 1, memory_order_relaxed);
            }
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
        /* No callback runs now; the peek reads the outputs' demand without touching what the producer
         * side caches. */
        uint64_t d = sl_ctx_demand_peek(ctx);
        if (d == 0)
            break;
        sl_log(SL_LOG_INFO, m->who, 0,
               "overflow pause: resuming after %llu ms paused (pause %llu; demand %llu; %llu received, %llu in "
               "the overdraft in all, at most %llu in one pause)",
               (unsigned long long)((now - atomic_load(&m->paused_ns)) / SL_NS_PER_MS),
               (unsigned long long)sl__mqtt_get(m->pauses), (unsigned long long)d,
               (unsigned long long)sl__mqtt_get(m->received), (unsigned long long)sl__mqtt_get(m->overdrafted),
               (unsigned long long)sl__mqtt_get(m->overdraft_peak));
        atomic_store_explicit(m->paused, 0, memory_order_relaxed);
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

/* The source's figures in the shared stats slot, for /metrics (a slot without room keeps them local). */
static void sl__mqtt_metrics(sl_mqtt_t *m, sl_ctx_t *ctx)
{
    static const struct {
        size_t off;
        const char *name, *help;
        sl_metric_kind_t kind;
    } defs[] = {
        {offsetof(sl_mqtt_t, received), "mqtt_received_total", "Messages delivered by the broker.", SL_METRIC_COUNTER},
        {offsetof(sl_mqtt_t, dropped), "mqtt_dropped_total",
         "Messages dropped: overflow drop_newest, or larger than the channel can ever hold.", SL_METRIC_COUNTER},
        {offsetof(sl_mqtt_t, overdrafted), "mqtt_overdraft_total",
         "Events put into the channel's overdraft (beyond demand) while the flow was paused.", SL_METRIC_COUNTER},
        {offsetof(sl_mqtt_t, overdraft_peak), "mqtt_overdraft_peak_events",
         "The most events one overflow pause put into the overdraft (size `overdraft` above it).", SL_METRIC_GAUGE},
        {offsetof(sl_mqtt_t, unacked), "mqtt_overdraft_full_waits_total",
         "Times a message waited for room because even the overdraft was full.", SL_METRIC_COUNTER},
        {offsetof(sl_mqtt_t, pauses), "mqtt_pauses_total", "Overflow pauses (clean disconnects, session kept).",
         SL_METRIC_COUNTER},
        {offsetof(sl_mqtt_t, paused), "mqtt_paused", "1 while the flow is paused for lack of demand.", SL_METRIC_GAUGE},
        {offsetof(sl_mqtt_t, connects), "mqtt_connects_total", "Successful connects to the broker.", SL_METRIC_COUNTER},
        {offsetof(sl_mqtt_t, cut_attrs), "mqtt_attrs_cut_total",
         "Events whose attributes (topic captures, MQTT 5 properties) did not all fit.", SL_METRIC_COUNTER},
    };
    _Static_assert(SL_ARRAY_LEN(defs) <= SL_ARRAY_LEN(m->spare_), "a spare word for each metric");
    for (size_t i = 0; i < SL_ARRAY_LEN(defs); i++) {
        _Atomic uint64_t **slot = (_Atomic uint64_t **)((char *)m + defs[i].off);
        *slot = sl_ctx_metric(ctx, defs[i].name, defs[i].kind, defs[i].help);
        if (*slot == NULL)
            *slot = &m->spare_[i];
    }
    atomic_store_explicit(m->paused, 0, memory_order_relaxed); /* a restarted worker starts connected */
}

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
    atomic_store(&m->sock, -1);
    sl__mqtt_metrics(m, ctx);
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
           "mqtt: %llu received, %llu emitted by this worker; in all: %llu into the overdraft (at most %llu in one "
           "pause), %llu dropped, %llu overdraft-full waits, %llu pauses, %llu connects, %llu events with "
           "attributes cut",
           (unsigned long long)sl__mqtt_get(m->received), (unsigned long long)m->emitted,
           (unsigned long long)sl__mqtt_get(m->overdrafted), (unsigned long long)sl__mqtt_get(m->overdraft_peak),
           (unsigned long long)sl__mqtt_get(m->dropped), (unsigned long long)sl__mqtt_get(m->unacked),
           (unsigned long long)sl__mqtt_get(m->pauses), (unsigned long long)sl__mqtt_get(m->connects),
           (unsigned long long)sl__mqtt_get(m->cut_attrs));
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
