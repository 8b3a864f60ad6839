/*
 * The MQTT source's options: read once at init from the node's params into the source's state.
 *
 * Everything a connect needs (URLs, filters with their QoS, the client id, TLS files) is laid out here so
 * that reconnecting later allocates nothing new. Problems an operator can fix (a missing certificate, a
 * bad topic filter, a wait_timeout that would get the connection dropped by the broker) are logged with
 * the key they concern, and init then fails, which the supervisor reports once and never respawns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ingest/mqtt/mqtt_int.h"

/* Splits a LIST param (items one per line) into a NULL-terminated array of strings in one allocation. */
static char **sl__lines(const char *text, int *n)
{
    size_t len = strlen(text);
    int count = len ? 1 : 0;
    for (size_t i = 0; i < len; i++)
        count += text[i] == '\n';
    char **v = malloc((size_t)(count + 1) * sizeof *v + len + 1);
    if (v == NULL)
        return NULL;
    char *buf = (char *)(v + count + 1);
    memcpy(buf, text, len + 1);
    int k = 0;
    for (char *p = buf; k < count; k++) {
        v[k] = p;
        char *nl = strchr(p, '\n');
        if (nl == NULL)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    v[count] = NULL;
    *n = count;
    return v;
}

static int sl__mqtt_conf_filters(sl_mqtt_t *m, const sl_conf_node_t *node)
{
    int n;
    char **items = sl__lines(sl_conf_str(node, "topics"), &n);
    if (items == NULL)
        return SL_ENOMEM;
    const char *group = sl_conf_str(node, "shared_group");
    int def_qos = (int)sl_conf_int(node, "qos");
    m->filters = calloc((size_t)n + 1, sizeof *m->filters);
    m->qos = calloc((size_t)n + 1, sizeof *m->qos);
    int rc = m->filters && m->qos ? 0 : SL_ENOMEM;
    for (int i = 0; rc == 0 && i < n; i++) {
        char buf[SL_MQTT_FILTER_MAX];
        const char *why;
        rc = sl_mqtt_filter_parse(items[i], strlen(items[i]), def_qos, group, buf, sizeof buf, &m->qos[i], &why);
        if (rc != 0)
            sl_log(SL_LOG_ERROR, m->who, 0, "topics: \"%s\": %s", items[i], why);
        else if ((m->filters[i] = strdup(buf)) == NULL)
            rc = SL_ENOMEM;
        else
            m->n_filters++;
    }
    free(items);
    return rc;
}

/* A TLS file must be readable now: a typo is a "cannot start", not an endless reconnect loop. */
static int sl__mqtt_conf_file(sl_mqtt_t *m, const sl_conf_node_t *node, const char *key, const char **out)
{
    const char *path = sl_conf_str(node, key);
    *out = path[0] ? path : NULL;
    if (*out && access(path, R_OK) != 0) {
        sl_log(SL_LOG_ERROR, m->who, -errno, "%s: cannot read \"%s\"", key, path);
        return SL_ENOENT;
    }
    return 0;
}

static int sl__mqtt_conf_tls(sl_mqtt_t *m, const sl_conf_node_t *node)
{
    MQTTAsync_SSLOptions init = MQTTAsync_SSLOptions_initializer;
    m->ssl = init;
    m->tls = false;
    for (int i = 0; i < m->n_urls; i++)
        m->tls |= strncmp(m->urls[i], "ssl://", 6) == 0 || strncmp(m->urls[i], "mqtts://", 8) == 0;
    int rc = sl__mqtt_conf_file(m, node, "tls_ca_file", &m->ssl.trustStore);
    if (rc == 0)
        rc = sl__mqtt_conf_file(m, node, "tls_cert_file", &m->ssl.keyStore);
    if (rc == 0)
        rc = sl__mqtt_conf_file(m, node, "tls_key_file", &m->ssl.privateKey);
    if (rc != 0)
        return rc;
    if ((m->ssl.trustStore || m->ssl.keyStore) && !m->tls)
        sl_log(SL_LOG_WARN, m->who, 0, "tls_* files are set but no URL is ssl://: they are not used");
    bool verify = sl_conf_bool(node, "tls_verify");
    m->ssl.enableServerCertAuth = verify;
    m->ssl.verify = verify;
    return 0;
}

static int sl__mqtt_conf_timing(sl_mqtt_t *m, const sl_conf_node_t *node)
{
    uint64_t ka = sl_conf_duration(node, "keepalive");
    m->keepalive_s = (int)(ka / SL_NS_PER_S);
    m->connect_timeout_s = (int)SL_MAX(sl_conf_duration(node, "connect_timeout") / SL_NS_PER_S, 1);
    m->wait_ns = sl_conf_duration(node, "wait_timeout");
    /* Paho services nothing on the connection while the callback waits, and the broker drops a client
     * silent for 1.5 keep-alives: a wait of a third of the keep-alive leaves room for a late PINGREQ. */
    if (m->wait_ns > ka / 3) {
        sl_log(SL_LOG_ERROR, m->who, 0,
               "wait_timeout (%llu ms) must be at most a third of keepalive (%llu ms): the broker would drop "
               "the connection while a message waits for demand",
               (unsigned long long)(m->wait_ns / SL_NS_PER_MS), (unsigned long long)(ka / SL_NS_PER_MS));
        return SL_EINVAL;
    }
    m->reconnect_min_ns = sl_conf_duration(node, "reconnect_min");
    m->reconnect_max_ns = SL_MAX(sl_conf_duration(node, "reconnect_max"), m->reconnect_min_ns);
    m->backoff_ns = m->reconnect_min_ns;
    uint64_t exp = sl_conf_duration(node, "session_expiry") / SL_NS_PER_S;
    m->session_expiry_s = exp > UINT32_MAX ? UINT32_MAX : (uint32_t)exp;
    return 0;
}

int sl__mqtt_conf(sl_mqtt_t *m, const sl_conf_node_t *node, uint32_t instance)
{
    m->version = strcmp(sl_conf_str(node, "mqtt_version"), "5") == 0 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
    m->urls = sl__lines(sl_conf_str(node, "urls"), &m->n_urls);
    if (m->urls == NULL)
        return SL_ENOMEM;
    for (int i = 0; i < m->n_urls; i++)
        if (strstr(m->urls[i], "://") == NULL) {
            sl_log(SL_LOG_ERROR, m->who, 0, "urls: \"%s\" is not tcp://HOST:PORT or ssl://HOST:PORT", m->urls[i]);
            return SL_EINVAL;
        }
    int rc = sl__mqtt_conf_filters(m, node);
    if (rc == 0)
        rc = sl__mqtt_conf_tls(m, node);
    if (rc == 0)
        rc = sl__mqtt_conf_timing(m, node);
    if (rc != 0)
        return rc;
    const char *why;
    if (sl_mqtt_tpl_compile(&m->tpl, sl_conf_str(node, "topic_template"), sl_conf_str(node, "key_from"), &why) != 0) {
        sl_log(SL_LOG_ERROR, m->who, 0, "topic_template \"%s\": %s", sl_conf_str(node, "topic_template"), why);
        return SL_EINVAL;
    }
    /* The client id must be stable across restarts (the broker keeps the session under it) and distinct
     * per instance (a second connection with the same id takes the session over). */
    const char *id = sl_conf_str(node, "client_id");
    int w = id[0] ? snprintf(m->client_id, sizeof m->client_id, "%s", id)
                  : snprintf(m->client_id, sizeof m->client_id, "sluice-%s", node->name);
    if (node->concurrency > 1 && w > 0 && (size_t)w < sizeof m->client_id)
        snprintf(m->client_id + w, sizeof m->client_id - (size_t)w, "-%u", instance);
    m->username = sl_conf_str(node, "username")[0] ? sl_conf_str(node, "username") : NULL;
    m->password = sl_conf_str(node, "password")[0] ? sl_conf_str(node, "password") : NULL;
    m->clean_start = sl_conf_bool(node, "clean_start");
    m->in_flight = (int)sl_conf_int(node, "in_flight");
    m->pause_policy = strcmp(sl_conf_str(node, "overflow"), "pause") == 0;
    m->overdraft = (uint32_t)sl_conf_int(node, "overdraft");
    return 0;
}

void sl__mqtt_conf_free(sl_mqtt_t *m)
{
    for (int i = 0; m->filters && i < m->n_filters; i++)
        free(m->filters[i]);
    free(m->filters);
    free(m->qos);
    free(m->urls);
}
