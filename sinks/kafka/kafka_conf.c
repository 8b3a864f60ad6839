/*
 * Setting up a `kafka` sink instance: its librdkafka producer from the node's keys (safe defaults:
 * idempotent, acks=all, no message timeout, so an outage is waited out, never turned into a loss), any
 * librdkafka property passed through, topic and key templates, and the cache of topic handles.
 *
 * A property librdkafka refuses is "cannot start", logged with librdkafka's own text, so a typo in the
 * config never becomes a crash loop.
 */
#include <malloc.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sinks/kafka/kafka_int.h"

int sl__ktpl_compile(sl_ktpl_t *t, const char *text)
{
    memset(t, 0, sizeof *t);
    const char *p = text;
    while (*p) {
        const char *open = strchr(p, '{'), *close = open ? strchr(open, '}') : NULL;
        size_t lit = open && close ? (size_t)(open - p) : strlen(p);
        size_t need = (lit ? 1 : 0) + (open && close ? 1 : 0);
        sl_kseg_t *segs = realloc(t->segs, (t->n + need) * sizeof *segs);
        if (segs == NULL)
            return SL_ENOMEM;
        t->segs = segs;
        if (lit) {
            segs[t->n++] = (sl_kseg_t){SL_KT_LIT, strndup(p, lit), lit};
            p += lit;
        }
        if (open && close) {
            size_t n = (size_t)(close - open - 1);
            sl_kt_kind_t k = n == 3 && !memcmp(open + 1, "key", 3)     ? SL_KT_KEY
                             : n == 5 && !memcmp(open + 1, "topic", 5) ? SL_KT_TOPIC
                                                                       : SL_KT_ATTR;
            segs[t->n++] = (sl_kseg_t){k, strndup(open + 1, n), n};
            p = close + 1;
        }
    }
    t->constant = true;
    for (size_t i = 0; i < t->n; i++)
        t->constant = t->constant && t->segs[i].kind == SL_KT_LIT;
    t->verbatim_key = t->n == 1 && t->segs[0].kind == SL_KT_KEY;
    return 0;
}

void sl__ktpl_free(sl_ktpl_t *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->segs[i].text);
    free(t->segs);
    memset(t, 0, sizeof *t);
}

static bool sl__ktopic_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

int sl__ktpl_expand(const sl_ktpl_t *t, const sl_event_t *ev, bool topic_chars, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < t->n; i++) {
        const sl_kseg_t *s = &t->segs[i];
        const uint8_t *v = (const uint8_t *)s->text;
        size_t n = s->len;
        if (s->kind == SL_KT_KEY)
            v = ev->key, n = ev->key_len;
        else if (s->kind == SL_KT_TOPIC)
            v = (const uint8_t *)ev->topic, n = ev->topic_len;
        else if (s->kind == SL_KT_ATTR && (ev->rec == NULL || sl_rec_attr_get(ev->rec, s->text, s->len, &v, &n) != 0))
            v = NULL, n = 0;
        if (o + n >= cap)
            return SL_ERANGE;
        for (size_t k = 0; k < n; k++)
            out[o++] = (char)(topic_chars && !sl__ktopic_char(v[k]) ? '_' : v[k]);
    }
    out[o] = '\0';
    return (int)o;
}

rd_kafka_topic_t *sl__ksink_topic(sl_ksink_t *ks, const char *name)
{
    for (uint32_t i = 0; i < ks->n_topics; i++)
        if (strcmp(ks->topics[i].name, name) == 0)
            return ks->topics[i].rkt;
    if (ks->n_topics == ks->cap_topics) {
        uint32_t cap = ks->cap_topics ? ks->cap_topics * 2 : 8;
        sl_ktopic_t *t = realloc(ks->topics, cap * sizeof *t);
        if (t == NULL)
            return NULL;
        ks->topics = t;
        ks->cap_topics = cap;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(ks->rk, name, NULL);
    if (rkt == NULL)
        return NULL;
    sl_ktopic_t *t = &ks->topics[ks->n_topics++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rkt = rkt;
    return rkt;
}

static int sl__kconf_set(sl_ksink_t *ks, rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[512];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) == RD_KAFKA_CONF_OK)
        return 0;
    sl_log(SL_LOG_ERROR, ks->who, SL_EINVAL, "librdkafka property %s: %s", k, err);
    return SL_EINVAL;
}

/* librdkafka's message without the value (it quotes it, and a value may be a password). */
static void sl__kconf_why(const char *err, const char *value, char *why, size_t cap)
{
    size_t o = 0, vl = strlen(value);
    for (const char *p = err; *p != '\0' && o + 1 < cap;) {
        if (vl > 0 && strncmp(p, value, vl) == 0) {
            o += (size_t)snprintf(why + o, cap - o, "(value not shown)");
            o = SL_MIN(o, cap - 1);
            p += vl;
        } else {
            why[o++] = *p++;
        }
    }
    why[o] = '\0';
}

int sl_sink_kafka_prop_check(const char *name, const char *value, char *why, size_t cap)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[512];
    rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, name, value, err, sizeof err);
    rd_kafka_conf_destroy(conf);
    if (res == RD_KAFKA_CONF_OK)
        return 0;
    if (res == RD_KAFKA_CONF_UNKNOWN)
        snprintf(why, cap, "unknown librdkafka property \"%s\" (expected a name from librdkafka's CONFIGURATION.md)",
                 name);
    else
        sl__kconf_why(err, value, why, cap);
    return SL_EINVAL;
}

/* `librdkafka:` properties, after sluice's own settings, so they win. The schema checked each at load;
 * a failure here (another librdkafka than the one that validated) is still reported without the value. */
static int sl__kconf_passthrough(sl_ksink_t *ks, const sl_conf_node_t *node, rd_kafka_conf_t *conf)
{
    const sl_conf_prop_t *props;
    size_t n = sl_conf_props(node, "librdkafka", &props);
    for (size_t i = 0; i < n; i++) {
        char err[512], why[512];
        if (rd_kafka_conf_set(conf, props[i].name, props[i].value, err, sizeof err) == RD_KAFKA_CONF_OK)
            continue;
        sl__kconf_why(err, props[i].value, why, sizeof why);
        sl_log(SL_LOG_ERROR, ks->who, SL_EINVAL, "librdkafka property %s (line %d): %s", props[i].name, props[i].line,
               why);
        return SL_EINVAL;
    }
    return 0;
}

static int sl__kconf_build(sl_ksink_t *ks, const sl_conf_node_t *node, rd_kafka_conf_t *conf)
{
    char num[32];
    const char *set[][2] = {
        {"bootstrap.servers", sl_conf_str(node, "brokers")},
        {"enable.idempotence", sl_conf_bool(node, "idempotence") ? "true" : "false"},
        {"acks", sl_conf_str(node, "acks")},
        {"compression.codec", sl_conf_str(node, "compression")},
        /* Wait out outages: an event is never given up on for lack of time, only on a permanent error. */
        {"message.timeout.ms", "0"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(set); i++)
        if (sl__kconf_set(ks, conf, set[i][0], set[i][1]) != 0)
            return SL_EINVAL;
    snprintf(num, sizeof num, "%.3f", (double)sl_conf_duration(node, "linger") / 1e6);
    if (sl__kconf_set(ks, conf, "linger.ms", num) != 0)
        return SL_EINVAL;
    snprintf(num, sizeof num, "%lld", (long long)sl_conf_int(node, "batch_size"));
    if (sl__kconf_set(ks, conf, "batch.num.messages", num) != 0)
        return SL_EINVAL;
    snprintf(num, sizeof num, "%llu", (unsigned long long)sl_conf_size(node, "batch_bytes"));
    if (sl__kconf_set(ks, conf, "batch.size", num) != 0)
        return SL_EINVAL;
    rd_kafka_conf_set_dr_msg_cb(conf, sl__ksink_dr);
    rd_kafka_conf_set_opaque(conf, ks);
    return sl__kconf_passthrough(ks, node, conf);
}

static void sl__ksink_metrics(sl_ctx_t *ctx, sl_ksink_t *ks)
{
    static const sl_sink_metric_t defs[] = {
        {offsetof(sl_ksink_t, m_queue_full), "kafka_queue_full_episodes_total",
         "Times librdkafka's queue was full and events waited in the backlog (backpressure).", SL_METRIC_COUNTER},
        {offsetof(sl_ksink_t, m_retries), "kafka_retries_total",
         "Events produced again after a retriable delivery failure.", SL_METRIC_COUNTER},
        {offsetof(sl_ksink_t, m_dead), "kafka_dead_lettered_total",
         "Events sent to the dead-letter path after a permanent error (too large, authorisation, ...).",
         SL_METRIC_COUNTER},
        {offsetof(sl_ksink_t, m_in_flight), "kafka_in_flight", "Events handed to librdkafka, not yet confirmed.",
         SL_METRIC_GAUGE},
        {offsetof(sl_ksink_t, m_backlog), "kafka_backlog", "Events waiting for room in librdkafka's queue.",
         SL_METRIC_GAUGE},
    };
    _Static_assert(SL_ARRAY_LEN(defs) == SL_ARRAY_LEN(ks->m_spare), "a spare word per metric");
    sl__sink_metrics(ctx, ks, defs, SL_ARRAY_LEN(defs), ks->m_spare);
    sl__metric_set(ks->m_in_flight, 0); /* a restarted instance starts with nothing in flight */
    sl__metric_set(ks->m_backlog, 0);
}

/*
 * The allocator, for librdkafka's pattern: every message is a few allocations, freed thousands at a time
 * when a batch's delivery reports come, and every produce request a buffer of up to batch.size, freed
 * when the broker answers.
 *  - Thresholds: with glibc's defaults (mmap from 128 KiB, raised to the largest block freed; a thread's
 *    heap trimmed once twice that is free at its top) the request buffers' pages went back to the kernel
 *    again and again, and each one that comes back costs a page fault: 11-14k faults per million 180-byte
 *    events, ~12 us each on this paravirtual VM, most of them in the busiest broker thread. Fixed at the
 *    ceilings glibc's own adjustment stops at (mmap 32 MiB on 64 bits, trim twice that), the buffers stay
 *    in the heaps, which keep at most what the process held at its peak (the input ring bounds what is
 *    in flight). Generator -> kafka, 1M events, 6 alternated runs: window 0.94 -> 0.83 s, CPU 1.46 -> 1.27 s.
 *  - No fastbins: with headers (the default) a message is six small blocks (librdkafka allocates the
 *    list and each header), and taking them back from glibc's fastbins, singly linked lists of blocks
 *    freed in delivery order, missed the cache on every link (66% of malloc's samples on one load).
 *    Without fastbins freed neighbours merge and are handed out again (likely why it is faster; measured
 *    is only the effect, with the memory price: the sink's peak RSS 30-35 MiB against 26-30). With
 *    headers, generator -> kafka, 5 alternated runs: window 2.37 -> 1.79 s, CPU 3.86 -> 2.85 s; without
 *    headers no change.
 */
void sl_sink_kafka_malloc_setup(void)
{
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_MXFAST, 0);
}

int sl__ksink_setup(sl_ctx_t *ctx, sl_ksink_t *ks)
{
    const sl_conf_node_t *node = sl_ctx_node(ctx);
    sl__ksink_metrics(ctx, ks);
    ks->ctx = ctx;
    ks->who = sl_ctx_name(ctx);
    _Static_assert(sizeof(void *) >= sizeof(uint64_t), "a token fits in librdkafka's opaque");
    ks->n_slots = sl_ctx_ack_slots(ctx);
    ks->recs = calloc(ks->n_slots, sizeof *ks->recs);
    ks->backlog = calloc(ks->n_slots, sizeof *ks->backlog);
    if (ks->recs == NULL || ks->backlog == NULL)
        return SL_ENOMEM;
    ks->headers = sl_conf_bool(node, "headers");
    if (sl__ktpl_compile(&ks->topic_tpl, sl_conf_str(node, "topic")) != 0 ||
        sl__ktpl_compile(&ks->key_tpl, sl_conf_str(node, "key")) != 0)
        return SL_ENOMEM;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = sl__kconf_build(ks, node, conf);
    if (rc != 0) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    char err[512];
    sl_sink_kafka_malloc_setup(); /* before librdkafka's threads make their heaps */
    /* librdkafka's threads inherit the creating thread's policy: the worker runs SCHED_BATCH (its wake-ups
     * do not preempt), but the broker threads are latency-bound (a socket, a queue, linger timers) and
     * a raw producer runs them SCHED_OTHER; so do we. */
    int policy = sched_getscheduler(0);
    struct sched_param sp = {.sched_priority = 0};
    if (policy == SCHED_BATCH)
        sched_setscheduler(0, SCHED_OTHER, &sp);
    ks->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (policy == SCHED_BATCH)
        sched_setscheduler(0, SCHED_BATCH, &sp);
    if (ks->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        sl_log(SL_LOG_ERROR, ks->who, SL_EINVAL, "cannot create the Kafka producer: %s", err);
        return SL_EINVAL;
    }
    sl_log(SL_LOG_DEBUG, ks->who, 0, "producing to %s, topic %s, key %s, compression %s, acks %s",
           sl_conf_str(node, "brokers"), sl_conf_str(node, "topic"), sl_conf_str(node, "key"),
           sl_conf_str(node, "compression"), sl_conf_str(node, "acks"));
    return 0;
}

void sl__ksink_free(sl_ksink_t *ks)
{
    if (ks == NULL)
        return;
    for (uint32_t i = 0; i < ks->n_topics; i++)
        rd_kafka_topic_destroy(ks->topics[i].rkt);
    if (ks->rk)
        rd_kafka_destroy(ks->rk);
    sl__ktpl_free(&ks->topic_tpl);
    sl__ktpl_free(&ks->key_tpl);
    free(ks->topics);
    free(ks->recs);
    free(ks->backlog);
    free(ks);
}
