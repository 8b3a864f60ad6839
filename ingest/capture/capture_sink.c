/*
 * The `capture` sink: writes every event it takes into a capture file (docs/capture.md), the other half
 * of `replay`. `sluice record` runs a config's MQTT source into it.
 *
 * Each event becomes one record: its ingest time (for the MQTT source, when the broker's message
 * arrived), QoS, topic, attributes (the MQTT 5 properties and the topic template's captures) and payload.
 * Limits (count, duration, size) end the recording: the sink asks the master for a draining shutdown
 * (sl_ctx_request_shutdown()), and events that still arrive are acknowledged without being written, counted.
 *
 * Durability: records go through zlib's buffer and reach the file when it fills and at the end; an
 * acknowledged event may be lost if the sink itself crashes (a recorder, not a store). A restarted
 * instance appends (a gzip file gets a new member; a record cut by the crash is reported and skipped by
 * readers), so nothing written before is lost.
 */
#include <stdlib.h>
#include <string.h>

#include "ingest/capture/capture.h"
#include "ingest/ingest.h"

typedef struct sl_capsink_s {
    const char *path;
    sl_cap_writer_t *w;
    uint64_t count, size, written, after_limit;
    bool done;
} sl_capsink_t;

static void sl__capsink_stop(sl_ctx_t *ctx, sl_capsink_t *s, const char *why)
{
    if (s->done)
        return;
    s->done = true;
    sl_log(SL_LOG_INFO, sl_ctx_name(ctx), 0, "%s reached after %llu records: stopping the pipeline", why,
           (unsigned long long)s->written);
    sl_ctx_request_shutdown(ctx); /* the master drains everything, as on an operator's SIGTERM */
}

static int sl__capsink_init(sl_ctx_t *ctx, void **state)
{
    const sl_conf_node_t *node = sl_ctx_node(ctx);
    if (node->concurrency != 1) {
        sl_log(SL_LOG_ERROR, sl_ctx_name(ctx), 0, "a capture sink writes one file: concurrency must be 1");
        return SL_EINVAL;
    }
    sl_capsink_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return SL_ENOMEM;
    s->path = sl_conf_str(node, "file");
    s->count = (uint64_t)sl_conf_int(node, "count");
    s->size = sl_conf_size(node, "size");
    sl_cap_wopts_t o = {
        .gzip_level = (int)sl_conf_int(node, "gzip_level"), .desc = sl_conf_str(node, "description"), .append = true};
    int rc = sl_cap_writer_open(s->path, &o, &s->w);
    if (rc != 0) {
        sl_log(SL_LOG_ERROR, sl_ctx_name(ctx), rc, "cannot write capture %s", s->path);
        free(s);
        return rc;
    }
    uint64_t d = sl_conf_duration(node, "duration");
    if (d)
        sl_ctx_set_timer(ctx, sl_now_ns() + d);
    *state = s;
    return 0;
}

static int sl__capsink_events(sl_ctx_t *ctx, void *state, const sl_event_t *evs, size_t n)
{
    sl_capsink_t *s = state;
    for (size_t i = 0; i < n; i++) {
        if (s->done) {
            s->after_limit++;
            continue;
        }
        const sl_event_t *ev = &evs[i];
        sl_cap_rec_t r = {.ts_ns = ev->ingest_ns,
                          .qos = ev->rec->qos,
                          .flags = (uint8_t)(ev->rec->flags & SL_REC_BINARY ? SL_CAP_F_BINARY : 0),
                          .topic = ev->topic,
                          .topic_len = ev->topic_len,
                          .props = ev->attrs,
                          .props_len = ev->attr_len,
                          .payload = ev->payload,
                          .payload_len = ev->payload_len};
        int rc = sl_cap_writer_put(s->w, &r);
        if (rc == SL_EIO)
            return rc; /* a crash: the restarted instance appends, the input is delivered again */
        if (rc != 0) {
            sl_dead_letter(ctx, ev, "unrecordable", sl_strerror(rc));
            continue;
        }
        s->written++;
        if (s->count && s->written >= s->count)
            sl__capsink_stop(ctx, s, "count");
        else if (s->size && sl_cap_writer_bytes(s->w) >= s->size)
            sl__capsink_stop(ctx, s, "size");
    }
    return 0;
}

static int sl__capsink_timer(sl_ctx_t *ctx, void *state)
{
    sl__capsink_stop(ctx, state, "duration");
    return 0;
}

static void sl__capsink_terminate(sl_ctx_t *ctx, void *state, int reason)
{
    sl_capsink_t *s = state;
    if (s == NULL)
        return;
    uint64_t bytes = sl_cap_writer_bytes(s->w);
    int rc = sl_cap_writer_close(s->w);
    if (rc != 0)
        sl_log(SL_LOG_ERROR, sl_ctx_name(ctx), rc, "closing capture %s failed: it is incomplete", s->path);
    sl_log(SL_LOG_INFO, sl_ctx_name(ctx), 0,
           "recorded %llu records, %llu bytes to %s; %llu after the limit not written", (unsigned long long)s->written,
           (unsigned long long)bytes, s->path, (unsigned long long)s->after_limit);
    free(s);
}

const sl_stage_ops_t sl_sink_capture_ops = {
    .type = "capture",
    .kind = SL_KIND_CONSUMER,
    .init = sl__capsink_init,
    .handle_events = sl__capsink_events,
    .handle_timer = sl__capsink_timer,
    .terminate = sl__capsink_terminate,
};
