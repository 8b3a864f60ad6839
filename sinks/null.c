/*
 * The `null` sink: counts and discards. With verify_sequence it also checks, per device (the record key),
 * that the "seq" field of the JSON payload increases by exactly one, and reports what was lost (gaps),
 * delivered twice (seq below the expected one) and unparseable, at the end and in its counters.
 *
 * The per-device table is open addressing keyed by the device id; it doubles when half full, so its
 * allocations are amortised to nothing per event. The check is exact for one ordered stream per device:
 * with concurrency > 1, feed the sink with `dispatcher: partition` on the key.
 */
#include <stdlib.h>
#include <string.h>

#include "sinks/sinks.h"

#define SL_NULL_KEY_MAX 64

typedef struct sl_dev_s {
    uint8_t key_len;
    char key[SL_NULL_KEY_MAX];
    uint64_t next; /* expected seq */
} sl_dev_t;

typedef struct sl_null_s {
    bool verify;
    sl_dev_t *tab;
    size_t cap, used;
    uint64_t events, lost, dups, bad;
} sl_null_t;

static int sl__null_init(sl_ctx_t *ctx, void **state)
{
    sl_null_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return SL_ENOMEM;
    s->verify = sl_conf_bool(sl_ctx_node(ctx), "verify_sequence");
    *state = s;
    return 0;
}

static sl_dev_t *sl__null_slot(sl_dev_t *tab, size_t cap, const uint8_t *key, size_t len)
{
    size_t i = sl_hash(key, len) & (cap - 1);
    while (tab[i].key_len && !(tab[i].key_len == len && memcmp(tab[i].key, key, len) == 0))
        i = (i + 1) & (cap - 1);
    return &tab[i];
}

static int sl__null_grow(sl_null_t *s)
{
    size_t cap = s->cap ? s->cap * 2 : 1024;
    sl_dev_t *tab = calloc(cap, sizeof *tab);
    if (tab == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < s->cap; i++)
        if (s->tab[i].key_len)
            *sl__null_slot(tab, cap, (const uint8_t *)s->tab[i].key, s->tab[i].key_len) = s->tab[i];
    free(s->tab);
    s->tab = tab;
    s->cap = cap;
    return 0;
}

/* Parses the "seq" field of a payload; returns 0 or SL_EBADMSG. */
static int sl__null_seq(const sl_event_t *ev, uint64_t *seq)
{
    const char *p = memmem(ev->payload, ev->payload_len, "\"seq\":", 6);
    if (p == NULL)
        return SL_EBADMSG;
    p += 6;
    const char *end = (const char *)ev->payload + ev->payload_len;
    uint64_t v = 0;
    size_t digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 20) {
        v = v * 10 + (uint64_t)(*p++ - '0');
        digits++;
    }
    if (digits == 0)
        return SL_EBADMSG;
    *seq = v;
    return 0;
}

static int sl__null_check(sl_null_t *s, const sl_event_t *ev)
{
    uint64_t seq;
    if (ev->key_len == 0 || ev->key_len > SL_NULL_KEY_MAX || sl__null_seq(ev, &seq) != 0) {
        s->bad++;
        return 0;
    }
    if ((s->used + 1) * 2 > s->cap && sl__null_grow(s) != 0)
        return SL_ENOMEM;
    sl_dev_t *d = sl__null_slot(s->tab, s->cap, ev->key, ev->key_len);
    if (d->key_len == 0) {
        d->key_len = (uint8_t)ev->key_len;
        memcpy(d->key, ev->key, ev->key_len);
        s->used++;
    }
    if (seq < d->next) {
        s->dups++;
        return 0;
    }
    s->lost += seq - d->next;
    d->next = seq + 1;
    return 0;
}

static int sl__null_events(sl_ctx_t *ctx, void *state, const sl_event_t *evs, size_t n)
{
    sl_null_t *s = state;
    s->events += n;
    if (!s->verify)
        return 0;
    for (size_t i = 0; i < n; i++) {
        int rc = sl__null_check(s, &evs[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void sl__null_terminate(sl_ctx_t *ctx, void *state, int reason)
{
    sl_null_t *s = state;
    if (s == NULL)
        return;
    if (!s->verify)
        sl_log(SL_LOG_INFO, sl_ctx_name(ctx), 0, "took %llu events", (unsigned long long)s->events);
    else
        sl_log(SL_LOG_INFO, sl_ctx_name(ctx), 0,
               "verify: %llu events from %zu devices; lost %llu, duplicates %llu, unparseable %llu",
               (unsigned long long)s->events, s->used, (unsigned long long)s->lost, (unsigned long long)s->dups,
               (unsigned long long)s->bad);
    free(s->tab);
    free(s);
}

const sl_stage_ops_t sl_sink_null_ops = {
    .type = "null",
    .kind = SL_KIND_CONSUMER,
    .init = sl__null_init,
    .handle_events = sl__null_events,
    .terminate = sl__null_terminate,
};
