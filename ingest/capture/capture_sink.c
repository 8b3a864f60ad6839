/*
 * The `capture` sink: writes every event it takes into a capture file (docs/capture.md), the other half
 * of `replay`. `sluice record` runs a config's MQTT source into it.
 *
 * Each event becomes one record: its ingest time (for the MQTT source, when the broker's message
 * arrived), QoS, retain flag, topic, attributes (the MQTT 5 properties and the topic template's captures)
 * and payload. Limits (count, duration, size) end the recording: the sink asks the master for a draining
 * shutdown (sl_ctx_request_shutdown()), and events that still arrive are acknowledged without being
 * written, counted.
 *
 * Durability: handle_events writes its batch and flushes it into the file (gzip: as one complete member;
 * `sync: batch` also fdatasyncs) before it returns, and returning is what acknowledges the batch. So
 * everything acknowledged is in the file, and a crash of the sink loses nothing: what it had not
 * acknowledged is delivered again to the restarted instance, which appends after cutting off what the
 * crash left half-written (sl_cap_writer_open with append). A failed write or flush is a crash too (the
 * supervisor's restart intensity bounds a disk that keeps failing). Duplicates are possible: a batch in the
 * file whose acknowledgement the crash prevented.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ingest/capture/capture.h"
#include "ingest/ingest.h"

#define SL_CAPSINK_PROGRESS_NS (500 * SL_NS_PER_MS)

typedef struct sl_capsink_s {
    const char *path;
    sl_cap_writer_t *w;
    uint64_t count, size, written, after_limit;
    uint64_t started_ns, deadline_ns, next_progress_ns;
    bool sync, progress, done;
} sl_capsink_t;

/* The progress line on a terminal: records, rate, bytes, and how far the limit is. */
static void sl__capsink_progress(sl_ctx_t *ctx, sl_capsink_t *s, bool last)
{
    uint64_t now = sl_now_ns();
    if (!s->progress || (!last && now < s->next_progress_ns))
        return;
    s->next_progress_ns = now + SL_CAPSINK_PROGRESS_NS;
    double secs = (double)(now - s->started_ns) / 1e9, rate = secs > 0 ? (double)s->written / secs : 0;
    double mib = (double)sl_cap_writer_bytes(s->w) / 1048576.0, left = -1;
    if (s->count && rate > 0)
        left = (double)(s->count - SL_MIN(s->written, s->count)) / rate;
    else if (s->deadline_ns)
        left = s->deadline_ns > now ? (double)(s->deadline_ns - now) / 1e9 : 0;
    else if (s->size && mib > 0)
        left = secs * ((double)s->size / 1048576.0 - mib) / mib;
    char eta[32] = "";
    if (left >= 0 && !last)
        snprintf(eta, sizeof eta, ", ETA %um%02us", (unsigned)(left / 60), (unsigned)left % 60);
    char line[256];
    int n = snprintf(line, sizeof line, "\r%s: %llu records, %.0f/s, %.1f MiB to %s%s%s", sl_ctx_name(ctx),
                     (unsigned long long)s->written, rate, mib, s->path, eta, last ? "\n" : "   ");
    if (write(2, line, (size_t)SL_MIN(n, (int)sizeof line - 1)) < 0)
        s->progress = false;
}

/* The next deadline: the duration limit, and the progress line's next tick. */
static void sl__capsink_arm(sl_ctx_t *ctx, sl_capsink_t *s)
{
    uint64_t t = s->done ? 0 : s->deadline_ns;
    if (s->progress)
        t = t ? SL_MIN(t, s->next_progress_ns) : s->next_progress_ns;
    sl_ctx_set_timer(ctx, t);
}

static void sl__capsink_stop(sl_ctx_t *ctx, sl_capsink_t *s, const char *why)
{
    if (s->done)
        return;
    s->done = true;
    if (s->progress)
        sl__capsink_progress(ctx, s, true), s->progress = false;
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
    s->sync = strcmp(sl_conf_str(node, "sync"), "batch") == 0;
    s->progress = sl_conf_bool(node, "progress") && isatty(2);
    sl_cap_wopts_t o = {
        .gzip_level = (int)sl_conf_int(node, "gzip_level"), .desc = sl_conf_str(node, "description"), .append = true};
    int rc = sl_cap_writer_open(s->path, &o, &s->w);
    if (rc != 0) {
        sl_log(SL_LOG_ERROR, sl_ctx_name(ctx), rc, "cannot write capture %s%s", s->path,
               rc == SL_EINVAL ? " (it exists, compressed differently)" : "");
        free(s);
        return rc;
    }
    if (sl_cap_writer_cut(s->w))
        sl_log(SL_LOG_WARN, sl_ctx_name(ctx), 0,
               "%s: cut %llu bytes a crash left half-written (never acknowledged: delivered again)", s->path,
               (unsigned long long)sl_cap_writer_cut(s->w));
    s->started_ns = sl_now_ns();
    s->next_progress_ns = s->started_ns;
    uint64_t d = sl_conf_duration(node, "duration");
    s->deadline_ns = d ? s->started_ns + d : 0;
    sl__capsink_arm(ctx, s);
    *state = s;
    return 0;
}

void sl_cap_rec_of_event(const sl_event_t *ev, sl_cap_rec_t *r)
{
    uint16_t f = ev->rec ? ev->rec->flags : 0;
    *r = (sl_cap_rec_t){
        .ts_ns = ev->ingest_ns,
        .qos = ev->rec ? ev->rec->qos : 0,
        .flags = (uint8_t)((f & SL_REC_BINARY ? SL_CAP_F_BINARY : 0) | (f & SL_REC_RETAIN ? SL_CAP_F_RETAIN : 0)),
        .topic = ev->topic,
        .topic_len = ev->topic_len,
        .props = ev->attrs,
        .props_len = ev->attr_len,
        .payload = ev->payload,
        .payload_len = ev->payload_len};
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
        sl_cap_rec_t r;
        sl_cap_rec_of_event(ev, &r);
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
    /* Returning acknowledges the batch: it must be in the file first. */
    int rc = sl_cap_writer_flush(s->w, s->sync);
    if (rc != 0) {
        sl_log(SL_LOG_ERROR, sl_ctx_name(ctx), rc, "writing %s failed", s->path);
        return rc;
    }
    sl__capsink_progress(ctx, s, false);
    return 0;
}

static int sl__capsink_timer(sl_ctx_t *ctx, void *state)
{
    sl_capsink_t *s = state;
    if (s->deadline_ns && sl_now_ns() >= s->deadline_ns)
        sl__capsink_stop(ctx, s, "duration");
    sl__capsink_progress(ctx, s, false);
    sl__capsink_arm(ctx, s);
    return 0;
}

static void sl__capsink_terminate(sl_ctx_t *ctx, void *state, int reason)
{
    sl_capsink_t *s = state;
    if (s == NULL)
        return;
    sl__capsink_progress(ctx, s, true);
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
