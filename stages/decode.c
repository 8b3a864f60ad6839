/*
 * The `decode` stage: checks each event's payload, extracts attributes, and dead-letters what is bad.
 *
 * Per event, in order: the topic must be UTF-8 (reason `bad_topic`), the payload at most max_payload bytes
 * (`oversize`), and with format json one well-formed JSON value with valid UTF-8 strings (`bad_json`,
 * with the parser's message). Top-level fields named in `extract` become attributes; `key_from` picks
 * the attribute that becomes the record key. An event that needs no change goes out unchanged on the
 * zero-copy path.
 *
 * JSON is parsed with yajl's SAX (event) interface, chosen by measurement (README, "The decode stage").
 * yajl allocates its handle and buffers for every document; here every allocation comes from an arena
 * owned by the stage and reset after each event, so decoding costs no malloc per event (yajl's API has
 * no reset of a handle, the arena gives the same effect).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "stages/stages.h"

#define SL_DECODE_ARENA (64 * 1024)
#define SL_DECODE_ATTRS (64 * 1024)
#define SL_DECODE_MAX_EXTRACT 32

typedef struct sl_decode_s {
    bool json;
    uint64_t max_payload;
    const char *extract[SL_DECODE_MAX_EXTRACT];
    size_t extract_len[SL_DECODE_MAX_EXTRACT];
    size_t n_extract;
    char *extract_buf;
    const char *key_from;
    /* The arena yajl allocates from; blocks carry their size, heap blocks (when it overflows) a flag. */
    uint8_t *arena;
    size_t arena_used, last_off;
    /* Parse state of the current event. */
    int depth;
    int pending; /* index into extract of the value that comes next at depth 1, or -1 */
    uint8_t *attrs;
    size_t attr_len;
    bool cut;
    uint64_t cut_events;
} sl_decode_t;

/* ---- the arena yajl allocates from ------------------------------------------------------------------ */

typedef struct sl_blk_s {
    uint64_t size; /* bytes usable; the top bit marks a heap block */
} sl_blk_t;

#define SL_BLK_HEAP (UINT64_C(1) << 63)

static void *sl__dec_malloc(void *ctx, size_t sz)
{
    sl_decode_t *d = ctx;
    size_t need = sizeof(sl_blk_t) + SL_ALIGN_UP(sz, (size_t)16);
    sl_blk_t *b;
    if (d->arena_used + need <= SL_DECODE_ARENA) {
        d->last_off = d->arena_used;
        b = (sl_blk_t *)(d->arena + d->arena_used);
        d->arena_used += need;
        b->size = need - sizeof *b;
    } else {
        /* A document with huge strings: rare, and bounded by max_payload. */
        b = malloc(sizeof *b + sz);
        if (b == NULL)
            return NULL;
        b->size = sz | SL_BLK_HEAP;
    }
    return b + 1;
}

static void sl__dec_free(void *ctx, void *p)
{
    if (p == NULL)
        return;
    sl_blk_t *b = (sl_blk_t *)p - 1;
    if (b->size & SL_BLK_HEAP)
        free(b);
}

static void *sl__dec_realloc(void *ctx, void *p, size_t sz)
{
    sl_decode_t *d = ctx;
    if (p == NULL)
        return sl__dec_malloc(ctx, sz);
    sl_blk_t *b = (sl_blk_t *)p - 1;
    uint64_t have = b->size & ~SL_BLK_HEAP;
    if (sz <= have)
        return p;
    if (!(b->size & SL_BLK_HEAP) && (uint8_t *)b == d->arena + d->last_off &&
        d->last_off + sizeof *b + SL_ALIGN_UP(sz, (size_t)16) <= SL_DECODE_ARENA) {
        d->arena_used = d->last_off + sizeof *b + SL_ALIGN_UP(sz, (size_t)16); /* the last block grows */
        b->size = SL_ALIGN_UP(sz, (size_t)16);
        return p;
    }
    void *q = sl__dec_malloc(ctx, sz);
    if (q == NULL)
        return NULL;
    memcpy(q, p, have);
    sl__dec_free(ctx, p);
    return q;
}

/* ---- SAX callbacks: only top-level fields named in `extract` are kept ----------------------------- */

static void sl__dec_attr(sl_decode_t *d, const char *name, size_t nl, const void *v, size_t vl)
{
    if (d->attr_len + 4 + nl + vl > SL_DECODE_ATTRS || vl > UINT16_MAX) {
        d->cut = true;
        return;
    }
    uint16_t n16 = (uint16_t)nl, v16 = (uint16_t)vl;
    memcpy(d->attrs + d->attr_len, &n16, 2);
    memcpy(d->attrs + d->attr_len + 2, &v16, 2);
    memcpy(d->attrs + d->attr_len + 4, name, nl);
    memcpy(d->attrs + d->attr_len + 4 + nl, v, vl);
    d->attr_len += 4 + nl + vl;
}

static int sl__dec_scalar(void *ctx, const char *v, size_t vl)
{
    sl_decode_t *d = ctx;
    if (d->depth == 1 && d->pending >= 0)
        sl__dec_attr(d, d->extract[d->pending], d->extract_len[d->pending], v, vl);
    d->pending = -1;
    return 1;
}

static int sl__dec_null(void *ctx) { return sl__dec_scalar(ctx, "null", 4); }
static int sl__dec_bool(void *ctx, int b) { return sl__dec_scalar(ctx, b ? "true" : "false", b ? 4 : 5); }
static int sl__dec_number(void *ctx, const char *s, size_t l) { return sl__dec_scalar(ctx, s, l); }
static int sl__dec_string(void *ctx, const unsigned char *s, size_t l)
{
    return sl__dec_scalar(ctx, (const char *)s, l);
}

static int sl__dec_open(void *ctx)
{
    sl_decode_t *d = ctx;
    d->depth++;
    d->pending = -1;
    return 1;
}

static int sl__dec_close(void *ctx)
{
    sl_decode_t *d = ctx;
    d->depth--;
    return 1;
}

static int sl__dec_key(void *ctx, const unsigned char *k, size_t l)
{
    sl_decode_t *d = ctx;
    d->pending = -1;
    if (d->depth != 1)
        return 1;
    for (size_t i = 0; i < d->n_extract; i++)
        if (d->extract_len[i] == l && memcmp(d->extract[i], k, l) == 0)
            d->pending = (int)i;
    return 1;
}

static const yajl_callbacks sl__dec_cb = {
    sl__dec_null, sl__dec_bool, NULL,          NULL,         sl__dec_number, sl__dec_string,
    sl__dec_open, sl__dec_key,  sl__dec_close, sl__dec_open, sl__dec_close,
};

/* ---- per event ------------------------------------------------------------------------------------- */

/* Well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF) without NUL, as MQTT requires of
 * topic names. */
static bool sl__utf8_ok(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c < 0x80) {
            if (c == 0)
                return false;
            i++;
            continue;
        }
        size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
        if (len == 0 || c > 0xF4 || i + len > n)
            return false;
        for (size_t k = 1; k < len; k++)
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
        if ((c == 0xE0 && p[i + 1] < 0xA0) || (c == 0xED && p[i + 1] > 0x9F) || (c == 0xF0 && p[i + 1] < 0x90) ||
            (c == 0xF4 && p[i + 1] > 0x8F))
            return false;
        i += len;
    }
    return true;
}

/* Parses the payload; returns 0, or SL_EBADMSG with the parser's message in err. */
static int sl__dec_json(sl_decode_t *d, const sl_event_t *ev, char *err, size_t err_cap)
{
    yajl_alloc_funcs af = {sl__dec_malloc, sl__dec_realloc, sl__dec_free, d};
    d->arena_used = d->last_off = 0;
    d->depth = 0;
    d->pending = -1;
    yajl_handle h = yajl_alloc(&sl__dec_cb, &af, d);
    if (h == NULL)
        return SL_ENOMEM;
    yajl_status st = yajl_parse(h, ev->payload, ev->payload_len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    int rc = 0;
    if (st != yajl_status_ok) {
        unsigned char *msg = yajl_get_error(h, 0, ev->payload, ev->payload_len);
        size_t n = msg ? strcspn((const char *)msg, "\n") : 0;
        snprintf(err, err_cap, "%.*s", (int)n, msg ? (const char *)msg : "invalid JSON");
        yajl_free_error(h, msg);
        rc = SL_EBADMSG;
    }
    yajl_free(h);
    return rc;
}

/* Finds attribute name in attrs[0..len); returns 0 and the value, or SL_ENOENT. */
static int sl__dec_attr_find(const uint8_t *a, size_t len, const char *name, const uint8_t **v, size_t *vl)
{
    size_t nl = strlen(name);
    for (size_t o = 0; o + 4 <= len;) {
        uint16_t n16, v16;
        memcpy(&n16, a + o, 2);
        memcpy(&v16, a + o + 2, 2);
        if (o + 4 + n16 + v16 > len)
            break;
        if (n16 == nl && memcmp(a + o + 4, name, nl) == 0) {
            *v = a + o + 4 + n16;
            *vl = v16;
            return 0;
        }
        o += 4 + (size_t)n16 + v16;
    }
    return SL_ENOENT;
}

static int sl__dec_one(sl_ctx_t *ctx, sl_decode_t *d, const sl_event_t *ev)
{
    char err[160];
    if (!sl__utf8_ok((const uint8_t *)ev->topic, ev->topic_len))
        return sl_dead_letter(ctx, ev, "bad_topic", "topic is not valid UTF-8");
    if (ev->payload_len > d->max_payload) {
        snprintf(err, sizeof err, "payload of %u bytes exceeds max_payload %llu", ev->payload_len,
                 (unsigned long long)d->max_payload);
        return sl_dead_letter(ctx, ev, "oversize", err);
    }
    /* The event's own attributes come first, then the extracted ones. */
    d->attr_len = SL_MIN((size_t)ev->attr_len, (size_t)SL_DECODE_ATTRS / 2);
    memcpy(d->attrs, ev->attrs, d->attr_len);
    d->cut = false;
    if (d->json) {
        int rc = sl__dec_json(d, ev, err, sizeof err);
        if (rc == SL_EBADMSG)
            return sl_dead_letter(ctx, ev, "bad_json", err);
        if (rc != 0)
            return rc;
    }
    d->cut_events += d->cut;
    bool binary = !d->json && !(ev->rec->flags & SL_REC_BINARY);
    /* Valid JSON on one line: the file sink inlines it without checking it again (yajl takes a line break
     * for whitespace; an NDJSON line must not hold one). */
    uint16_t json = d->json && memchr(ev->payload, '\n', ev->payload_len) == NULL ? SL_REC_JSON : 0;
    const uint8_t *key = ev->key;
    size_t key_len = ev->key_len;
    if (d->key_from[0] != '\0')
        sl__dec_attr_find(d->attrs, d->attr_len, d->key_from, &key, &key_len);
    if (!binary && d->attr_len == ev->attr_len && key == ev->key)
        return sl_emit_event_flags(ctx, ev, json); /* nothing else changed: the zero-copy path */
    sl_emit_t em = {.topic = ev->topic,
                    .topic_len = ev->topic_len,
                    .key = key,
                    .key_len = (uint32_t)key_len,
                    .attrs = d->attrs,
                    .attr_len = (uint32_t)d->attr_len,
                    .payload = ev->payload,
                    .payload_len = ev->payload_len,
                    .flags = (uint16_t)(ev->rec->flags | (binary ? SL_REC_BINARY : 0) | json),
                    .qos = ev->rec->qos,
                    .ingest_ns = ev->ingest_ns};
    return sl_emit(ctx, &em);
}

static int sl__dec_events(sl_ctx_t *ctx, void *state, const sl_event_t *evs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = sl__dec_one(ctx, state, &evs[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int sl__dec_init(sl_ctx_t *ctx, void **state)
{
    const sl_conf_node_t *node = sl_ctx_node(ctx);
    sl_decode_t *d = calloc(1, sizeof *d);
    if (d == NULL)
        return SL_ENOMEM;
    d->json = strcmp(sl_conf_str(node, "format"), "json") == 0;
    d->max_payload = sl_conf_size(node, "max_payload");
    d->key_from = sl_conf_str(node, "key_from");
    d->extract_buf = strdup(sl_conf_str(node, "extract"));
    d->arena = malloc(SL_DECODE_ARENA);
    d->attrs = malloc(SL_DECODE_ATTRS);
    if (d->extract_buf == NULL || d->arena == NULL || d->attrs == NULL) {
        free(d->extract_buf), free(d->arena), free(d->attrs), free(d);
        return SL_ENOMEM;
    }
    for (char *p = d->extract_buf; *p != '\0';) {
        if (d->n_extract == SL_DECODE_MAX_EXTRACT) {
            sl_log(SL_LOG_ERROR, sl_ctx_name(ctx), 0, "extract: at most %d fields", SL_DECODE_MAX_EXTRACT);
            free(d->extract_buf), free(d->arena), free(d->attrs), free(d);
            return SL_EINVAL;
        }
        size_t l = strcspn(p, "\n");
        d->extract[d->n_extract] = p;
        d->extract_len[d->n_extract++] = l;
        p += l;
        if (*p == '\n')
            *p++ = '\0';
    }
    *state = d;
    return 0;
}

static void sl__dec_terminate(sl_ctx_t *ctx, void *state, int reason)
{
    sl_decode_t *d = state;
    if (d == NULL)
        return;
    if (d->cut_events)
        sl_log(SL_LOG_WARN, sl_ctx_name(ctx), 0, "%llu events had more attributes than fit (cut)",
               (unsigned long long)d->cut_events);
    free(d->extract_buf);
    free(d->arena);
    free(d->attrs);
    free(d);
}

const sl_stage_ops_t sl_stage_decode_ops = {
    .type = "decode",
    .kind = SL_KIND_PRODUCER_CONSUMER,
    .init = sl__dec_init,
    .handle_events = sl__dec_events,
    .terminate = sl__dec_terminate,
};
