/*
 * The `generator` source: a synthetic fleet of devices publishing JSON telemetry.
 *
 * Device d (0 <= d < devices) belongs to instance d % concurrency. Instance k emits its devices in turn;
 * its j-th event is device k + concurrency * (j % nd) with per-device sequence number j / nd, so a sink
 * can count loss and duplicates per device. After a restart the instance resumes at j = the number of
 * events its outputs already hold, so the sequences continue without a gap or a repeat.
 *
 * The whole record (topic, key, attributes, payload) is a template laid out once; each event only rewrites
 * the fixed-width device, seq and ts fields in place (JSON allows the padding spaces) and is emitted with
 * one copy, so generating costs no formatting per event.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/ingest.h"

#define SL_GEN_SEQ_W 20
#define SL_GEN_TS_W 13

typedef struct sl_gen_s {
    uint64_t count; /* events this instance emits in all; 0 = until stopped */
    double rate;    /* events/s for this instance; 0 = as fast as demand allows */
    uint64_t nd;    /* devices of this instance */
    uint32_t first, stride;
    uint64_t j;     /* events emitted so far (including by predecessors) */
    uint64_t dev_i; /* j % nd, kept without a division per event */
    uint64_t start_ns, start_j;
    sl_rec_t *rec;  /* the template record, parts included */
    char *dev[4];   /* the 7 device digits in the topic, key, attribute value and payload */
    char *seq, *ts; /* in the payload */
} sl_gen_t;

#define SL_GEN_TOPIC "fleet/dev-0000000/telemetry"
#define SL_GEN_DEV_W 7

/* Writes v left-aligned into w bytes, padding with spaces (valid JSON whitespace after a number). */
static void sl__put_num(char *p, size_t w, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < sizeof tmp);
    size_t i = 0;
    while (n > 0 && i < w)
        p[i++] = tmp[--n];
    memset(p + i, ' ', w - i);
}

static int sl__gen_layout(sl_gen_t *g, size_t want)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "{\"device\":\"dev-0000000\",\"seq\":%*s,\"ts\":%*s,"
                     "\"temp\":21.50,\"hum\":40.2,\"bat\":3.71,\"pad\":\"",
                     SL_GEN_SEQ_W, "", SL_GEN_TS_W, "");
    size_t base = (size_t)n + 2, payload_len = want > base ? want : base;
    size_t topic_len = strlen(SL_GEN_TOPIC), key_len = 4 + SL_GEN_DEV_W, attr_len = 4 + 9 + key_len;
    size_t len = sl_rec_body_len(topic_len, key_len, attr_len, payload_len);
    if (len > UINT32_MAX)
        return SL_EINVAL;
    g->rec = calloc(1, SL_ALIGN_UP(len, SL_REC_ALIGN));
    if (g->rec == NULL)
        return SL_ENOMEM;
    sl_rec_t *r = g->rec;
    r->len = (uint32_t)len;
    r->topic_len = (uint16_t)topic_len;
    r->key_len = (uint32_t)key_len;
    r->attr_len = (uint32_t)attr_len;
    r->payload_len = (uint32_t)payload_len;
    r->qos = 1;
    char *topic = (char *)(r + 1), *key = topic + topic_len, *attrs = key + key_len, *payload = attrs + attr_len;
    memcpy(topic, SL_GEN_TOPIC, topic_len);
    memcpy(key, "dev-0000000", key_len);
    size_t alen = 0;
    sl_rec_attr_put((uint8_t *)attrs, attr_len, &alen, "device_id", 9, key, key_len);
    memcpy(payload, head, (size_t)n);
    memset(payload + n, 'x', payload_len - base);
    memcpy(payload + payload_len - 2, "\"}", 2);
    g->dev[0] = topic + strlen("fleet/dev-");
    g->dev[1] = key + 4;
    g->dev[2] = attrs + 4 + 9 + 4;
    g->dev[3] = payload + strlen("{\"device\":\"dev-");
    g->seq = payload + strlen("{\"device\":\"dev-0000000\",\"seq\":");
    g->ts = g->seq + SL_GEN_SEQ_W + strlen(",\"ts\":");
    return 0;
}

/* Sets the device digits of the template to device d (mod 10^7): the digits are made in a register, two
 * at a time, and stored whole (reading back digits just stored byte by byte stalls the store buffer). */
static void sl__gen_device(sl_gen_t *g, uint64_t d)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    uint32_t v = (uint32_t)(d % 10000000u);
    char s[8];
    s[0] = (char)('0' + v / 1000000u);
    v %= 1000000u;
    memcpy(s + 1, pairs + 2 * (v / 10000u), 2);
    memcpy(s + 3, pairs + 2 * (v / 100u % 100u), 2);
    memcpy(s + 5, pairs + 2 * (v % 100u), 2);
    for (int i = 0; i < 4; i++)
        memcpy(g->dev[i], s, SL_GEN_DEV_W);
}

static int sl__gen_init(sl_ctx_t *ctx, void **state)
{
    const sl_conf_node_t *node = sl_ctx_node(ctx);
    uint32_t k = sl_ctx_instance(ctx), n = node->concurrency;
    sl_gen_t *g = calloc(1, sizeof *g);
    if (g == NULL)
        return SL_ENOMEM;
    uint64_t count = (uint64_t)sl_conf_int(node, "count");
    uint64_t devices = (uint64_t)sl_conf_int(node, "devices");
    g->count = count ? count / n + (k < count % n) : 0;
    g->rate = (double)sl_conf_int(node, "rate") / n;
    g->nd = devices / n + (k < devices % n);
    if (g->nd == 0)
        g->nd = 1; /* more instances than devices: this one reuses device k */
    g->first = k;
    g->stride = n;
    if (sl__gen_layout(g, (size_t)sl_conf_size(node, "payload_size")) != 0) {
        free(g);
        return SL_ENOMEM;
    }
    g->j = g->start_j = sl_ctx_published(ctx);
    g->dev_i = g->j % g->nd;
    sl__put_num(g->seq, SL_GEN_SEQ_W, g->j / g->nd);
    sl__gen_device(g, g->first + (uint64_t)g->stride * g->dev_i);
    g->start_ns = sl_now_ns();
    if (g->j)
        sl_log(SL_LOG_INFO, sl_ctx_name(ctx), 0, "resuming the fleet at event %llu", (unsigned long long)g->j);
    *state = g;
    return 0;
}

static int sl__gen_demand(sl_ctx_t *ctx, void *state, uint64_t demand)
{
    sl_gen_t *g = state;
    if (g->count && g->j >= g->count)
        return SL_EOF;
    uint64_t n = demand;
    if (g->count)
        n = SL_MIN(n, g->count - g->j);
    uint64_t now = sl_now_ns();
    if (g->rate > 0) {
        double due = (double)(now - g->start_ns) / 1e9 * g->rate - (double)(g->j - g->start_j);
        if (due < 1) {
            sl_ctx_set_timer(ctx, now + (uint64_t)((1 - due) / g->rate * 1e9) + 1);
            return 0;
        }
        n = SL_MIN(n, (uint64_t)due);
    }
    uint64_t wall = sl_wall_ns();
    sl__put_num(g->ts, SL_GEN_TS_W, wall / SL_NS_PER_MS);
    g->rec->ingest_ns = wall;
    uint64_t i;
    for (i = 0; i < n; i++) {
        int rc = sl_emit_rec(ctx, g->rec);
        if (rc == SL_ENOSPC) /* the rings are full and the stash too: the rest waits for room */
            break;
        if (rc != 0)
            return rc;
        g->j++;
        if (++g->dev_i == g->nd) { /* a new round: every device's seq is j / nd until the next one */
            g->dev_i = 0;
            sl__put_num(g->seq, SL_GEN_SEQ_W, g->j / g->nd);
        }
        sl__gen_device(g, g->first + (uint64_t)g->stride * g->dev_i);
    }
    return (int)i;
}

static void sl__gen_terminate(sl_ctx_t *ctx, void *state, int reason)
{
    sl_gen_t *g = state;
    if (g == NULL)
        return;
    sl_log(SL_LOG_INFO, sl_ctx_name(ctx), 0, "generated %llu events", (unsigned long long)g->j);
    free(g->rec);
    free(g);
}

const sl_stage_ops_t sl_source_generator_ops = {
    .type = "generator",
    .kind = SL_KIND_PRODUCER,
    .init = sl__gen_init,
    .handle_demand = sl__gen_demand,
    .terminate = sl__gen_terminate,
};
