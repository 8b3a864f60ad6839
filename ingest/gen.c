/*
 * The `generator` source: a synthetic fleet of devices publishing JSON telemetry.
 *
 * Device d (0 <= d < devices) belongs to instance d % concurrency. Instance k emits its devices in turn;
 * its j-th event is device k + concurrency * (j % nd) with per-device sequence number j / nd, so a sink
 * can count loss and duplicates per device. After a restart the instance resumes at j = the number of
 * events its outputs already hold, so the sequences continue without a gap or a repeat.
 *
 * The payload is a template laid out once; each event only rewrites the fixed-width device, seq and ts
 * fields in place (JSON allows the padding spaces), so generating costs no formatting per event.
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
    char *payload;
    size_t payload_len;
    size_t off_dev, off_seq, off_ts;
    char topic[48];
    size_t off_tdev;
    uint8_t attrs[4 + 9 + 11];
} sl_gen_t;

/* Writes v right-aligned as decimal digits into exactly w bytes (zero-padded). */
static void sl__put_fixed(char *p, size_t w, uint64_t v)
{
    for (size_t i = w; i-- > 0;) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

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
    size_t base = (size_t)n + 2;
    g->payload_len = want > base ? want : base;
    g->payload = malloc(g->payload_len);
    if (g->payload == NULL)
        return SL_ENOMEM;
    memcpy(g->payload, head, (size_t)n);
    memset(g->payload + n, 'x', g->payload_len - base);
    memcpy(g->payload + g->payload_len - 2, "\"}", 2);
    g->off_dev = strlen("{\"device\":\"dev-");
    g->off_seq = strlen("{\"device\":\"dev-0000000\",\"seq\":");
    g->off_ts = g->off_seq + SL_GEN_SEQ_W + strlen(",\"ts\":");
    snprintf(g->topic, sizeof g->topic, "fleet/dev-0000000/telemetry");
    g->off_tdev = strlen("fleet/dev-");
    uint16_t nl = 9, vl = 11;
    memcpy(g->attrs, &nl, 2);
    memcpy(g->attrs + 2, &vl, 2);
    memcpy(g->attrs + 4, "device_id", 9);
    return 0;
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
    sl__put_num(g->payload + g->off_seq, SL_GEN_SEQ_W, g->j / g->nd);
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
    sl__put_num(g->payload + g->off_ts, SL_GEN_TS_W, wall / SL_NS_PER_MS);
    sl_emit_t em = {.topic = g->topic,
                    .topic_len = (uint32_t)strlen(g->topic),
                    .attrs = g->attrs,
                    .attr_len = sizeof g->attrs,
                    .payload = g->payload,
                    .payload_len = (uint32_t)g->payload_len,
                    .qos = 1,
                    .ingest_ns = wall};
    uint64_t i;
    for (i = 0; i < n; i++) {
        if (g->dev_i == 0) /* a new round: every device's seq is j / nd until the next one */
            sl__put_num(g->payload + g->off_seq, SL_GEN_SEQ_W, g->j / g->nd);
        sl__put_fixed(g->topic + g->off_tdev, 7, g->first + (uint64_t)g->stride * g->dev_i);
        memcpy(g->payload + g->off_dev, g->topic + g->off_tdev, 7);
        memcpy(g->attrs + 13, g->topic + g->off_tdev - 4, 11);
        em.key = g->attrs + 13;
        em.key_len = 11;
        int rc = sl_emit(ctx, &em);
        if (rc == SL_ENOSPC) /* the rings are full and the stash too: the rest waits for room */
            break;
        if (rc != 0)
            return rc;
        g->j++;
        if (++g->dev_i == g->nd)
            g->dev_i = 0;
    }
    return (int)i;
}

static void sl__gen_terminate(sl_ctx_t *ctx, void *state, int reason)
{
    sl_gen_t *g = state;
    if (g == NULL)
        return;
    sl_log(SL_LOG_INFO, sl_ctx_name(ctx), 0, "generated %llu events", (unsigned long long)g->j);
    free(g->payload);
    free(g);
}

const sl_stage_ops_t sl_source_generator_ops = {
    .type = "generator",
    .kind = SL_KIND_PRODUCER,
    .init = sl__gen_init,
    .handle_demand = sl__gen_demand,
    .terminate = sl__gen_terminate,
};
