/*
 * The `replay` source: emits the records of a capture file (sluice capture, NDJSON or mosquitto_sub -v,
 * gzip or not; docs/capture.md) as events, at the recorded pace, `speed` times it, or as fast as demand
 * allows (speed 0), `loops` times (0 = until stopped), from `start_record` / `start_time` on.
 *
 * Invariants:
 *  - Order: records are emitted in file order. With concurrency n, instance k emits the records whose key
 *    hashes to k (sl_hash(key) % n), so every key's records stay in one instance, in order, and
 *    `partition_by: key` downstream keeps per-device order.
 *  - Restart: the events this instance emitted before are counted by its output channel
 *    (sl_ctx_published()); a restarted instance re-reads the file and skips that many of its own records
 *    (across loops) before it emits again, so nothing is emitted twice or lost. Skipping is a read, not a
 *    seek: a capture has no index.
 *  - Bad input never stops it: a corrupt or truncated record is logged with its index and byte offset,
 *    counted as failed, and skipped; the reader resynchronises on the next record.
 *  - Timing: the first record emitted in a pass (or after a restart) anchors the recorded clock to the
 *    monotonic clock; record r is due at anchor + (r.ts - first.ts) / speed. Records with no time (0) or
 *    going back in time are due at once.
 *  - No allocation per event: the record is a view into the reader's buffer, attributes are built in a
 *    buffer that only grows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ingest/capture/capture.h"
#include "ingest/ingest.h"
#include "ingest/mqtt/mqtt_int.h"

#define SL_REPLAY_LOG_CORRUPT 20 /* corrupt records logged one by one; the rest are only counted */

typedef struct sl_replay_s {
    const char *who, *path;
    sl_cap_reader_t *rd;
    double speed;
    uint64_t loops, pass; /* passes to make (0 = forever), passes begun */
    uint64_t start_record, start_time_ns, first_ts;
    uint64_t count;     /* events this instance emits at most (its share of the node's count) */
    bool limited;       /* count applies */
    uint64_t emitted;   /* events emitted by this instance and its predecessors */
    uint64_t skip;      /* of our own records still to skip after a restart */
    uint64_t pass_hits; /* our records met in this pass */
    uint32_t k, n;
    int key_level;
    const char *key_from;
    bool tpl_key, have_tpl;
    sl_mqtt_tpl_t tpl;
    /* The record in hand: read, not emitted yet (no demand, not due, or a full stash). */
    bool have;
    sl_cap_rec_t rec;
    const uint8_t *key;
    size_t key_len;
    uint8_t *attrs;
    size_t attr_len, attr_cap;
    bool anchored;
    uint64_t anchor_ns, anchor_ts;
    /* Progress line (a terminal only). */
    bool progress;
    uint64_t started_ns, next_progress_ns;
    uint64_t corrupt_logged;
} sl_replay_t;

static int sl__replay_conf(sl_replay_t *r, const sl_conf_node_t *node)
{
    r->path = sl_conf_str(node, "file");
    r->speed = sl_conf_double(node, "speed");
    r->loops = (uint64_t)sl_conf_int(node, "loops");
    r->start_record = (uint64_t)sl_conf_int(node, "start_record");
    r->start_time_ns = sl_conf_duration(node, "start_time");
    uint64_t count = (uint64_t)sl_conf_int(node, "count");
    r->limited = count > 0;
    r->count = count / node->concurrency + (r->k < count % node->concurrency);
    r->key_level = (int)sl_conf_int(node, "key_level");
    r->key_from = sl_conf_str(node, "key_from");
    r->progress = sl_conf_bool(node, "progress") && isatty(2);
    const char *tpl = sl_conf_str(node, "topic_template"), *why = NULL;
    if (sl_mqtt_tpl_compile(&r->tpl, tpl, "", &why) != 0) {
        sl_log(SL_LOG_ERROR, r->who, 0, "topic_template \"%s\": %s", tpl, why);
        return SL_EINVAL;
    }
    r->have_tpl = tpl[0] != '\0';
    /* key_from names a capture of the template, or else a recorded property (an MQTT 5 user property). */
    if (r->key_from[0] != '\0' && sl_mqtt_tpl_compile(&r->tpl, tpl, r->key_from, &why) == 0)
        r->tpl_key = true;
    else
        (void)sl_mqtt_tpl_compile(&r->tpl, tpl, "", &why);
    return 0;
}

static int sl__replay_init(sl_ctx_t *ctx, void **state)
{
    const sl_conf_node_t *node = sl_ctx_node(ctx);
    sl_replay_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return SL_ENOMEM;
    r->who = sl_ctx_name(ctx);
    r->k = sl_ctx_instance(ctx);
    r->n = node->concurrency;
    int rc = sl__replay_conf(r, node);
    if (rc == 0 && (rc = sl_cap_reader_open(r->path, &r->rd)) != 0)
        sl_log(SL_LOG_ERROR, r->who, rc, "cannot read capture %s", r->path);
    if (rc != 0) {
        free(r);
        return rc;
    }
    const sl_cap_info_t *in = sl_cap_reader_info(r->rd);
    r->emitted = r->skip = sl_ctx_published(ctx);
    r->started_ns = sl_now_ns();
    sl_log(SL_LOG_INFO, r->who, 0, "replaying %s (%s%s%s%s), speed %g%s, %s", r->path, sl_cap_format_name(in->format),
           in->gzip ? ", gzip" : "", in->desc[0] ? ": " : "", in->desc, r->speed,
           r->speed > 0 ? "x recorded" : " (as fast as demand allows)", r->skip ? "resuming" : "from the start");
    if (r->skip)
        sl_log(SL_LOG_INFO, r->who, 0, "resuming after the %llu records already emitted", (unsigned long long)r->skip);
    *state = r;
    return 0;
}

/* The record key: a topic level, the template's key capture, a recorded property, or the topic. */
static void sl__replay_key(sl_replay_t *r, const sl_cap_rec_t *c)
{
    r->key = (const uint8_t *)c->topic;
    r->key_len = c->topic_len;
    if (r->key_level >= 0) {
        size_t i = 0, lv = 0;
        while (lv < (size_t)r->key_level && i < c->topic_len) {
            const char *s = memchr(c->topic + i, '/', c->topic_len - i);
            if (s == NULL)
                return; /* fewer levels: the whole topic */
            i = (size_t)(s - c->topic) + 1;
            lv++;
        }
        const char *s = memchr(c->topic + i, '/', c->topic_len - i);
        r->key = (const uint8_t *)c->topic + i;
        r->key_len = s ? (size_t)(s - c->topic) - i : c->topic_len - i;
        return;
    }
    if (r->key_from[0] != '\0' && !r->tpl_key) {
        size_t nl = strlen(r->key_from);
        for (const uint8_t *a = c->props, *end = c->props + c->props_len; a + 4 <= end;) {
            uint16_t an = (uint16_t)(a[0] | a[1] << 8), av = (uint16_t)(a[2] | a[3] << 8);
            if (an == nl && memcmp(a + 4, r->key_from, nl) == 0) {
                r->key = a + 4 + an;
                r->key_len = av;
                return;
            }
            a += 4u + an + av;
        }
    }
}

/* Whether the attribute blob a[0..n) has an attribute named name. */
static bool sl__replay_has(const uint8_t *a, size_t n, const uint8_t *name, size_t nl)
{
    for (const uint8_t *end = a + n; a + 4 <= end;) {
        uint16_t an = (uint16_t)(a[0] | a[1] << 8), av = (uint16_t)(a[2] | a[3] << 8);
        if (an == nl && memcmp(a + 4, name, nl) == 0)
            return true;
        a += 4u + an + av;
    }
    return false;
}

/* Drops the template captures (after the first `props` bytes) that the record already has as properties:
 * a capture recorded from an mqtt source with the same template carries them. */
static void sl__replay_dedupe(sl_replay_t *r, size_t props)
{
    size_t at = props;
    while (at + 4 <= r->attr_len) {
        uint16_t an = (uint16_t)(r->attrs[at] | r->attrs[at + 1] << 8);
        size_t len = 4u + an + (uint16_t)(r->attrs[at + 2] | r->attrs[at + 3] << 8);
        if (sl__replay_has(r->attrs, props, r->attrs + at + 4, an)) {
            memmove(r->attrs + at, r->attrs + at + len, r->attr_len - at - len);
            r->attr_len -= len;
        } else {
            at += len;
        }
    }
}

/* Attributes: the recorded properties, then the template's captures. Returns 0 or SL_ENOMEM. */
static int sl__replay_attrs(sl_replay_t *r, const sl_cap_rec_t *c)
{
    size_t need = c->props_len + 2u * c->topic_len + 4u * SL_MQTT_TPL_MAX + 1024u;
    if (need > r->attr_cap) {
        uint8_t *p = realloc(r->attrs, need * 2);
        if (p == NULL)
            return SL_ENOMEM;
        r->attrs = p;
        r->attr_cap = need * 2;
    }
    if (c->props_len)
        memcpy(r->attrs, c->props, c->props_len);
    r->attr_len = c->props_len;
    if (r->have_tpl) {
        const char *key = NULL;
        size_t kl = 0;
        int m = sl_mqtt_tpl_match(&r->tpl, c->topic, c->topic_len, r->attrs, r->attr_cap, &r->attr_len, &key, &kl);
        if (m == 1 && r->tpl_key && key != NULL) {
            r->key = (const uint8_t *)key;
            r->key_len = kl;
        }
        if (m != 0 && c->props_len)
            sl__replay_dedupe(r, c->props_len);
    }
    return 0;
}

static void sl__replay_corrupt(sl_ctx_t *ctx, sl_replay_t *r)
{
    const sl_cap_info_t *in = sl_cap_reader_info(r->rd);
    if (r->k != 0)
        return; /* every instance reads the whole file: instance 0 counts and reports */
    sl_ctx_count_failed(ctx, 1);
    if (r->corrupt_logged++ < SL_REPLAY_LOG_CORRUPT)
        sl_log(SL_LOG_WARN, r->who, 0, "%s: corrupt record %llu at byte %llu: %s; skipped", r->path,
               (unsigned long long)in->err_index, (unsigned long long)in->err_offset, in->err);
    else if (r->corrupt_logged == SL_REPLAY_LOG_CORRUPT + 1)
        sl_log(SL_LOG_WARN, r->who, 0, "%s: more corrupt records: counted, no longer logged", r->path);
}

/* Begins the next pass; returns false when every pass is done. */
static bool sl__replay_next_pass(sl_ctx_t *ctx, sl_replay_t *r)
{
    if (r->pass > 0 && r->pass_hits == 0) {
        if (r->loops != 1)
            sl_log(SL_LOG_WARN, r->who, 0, "%s: a whole pass found nothing to emit; stopping", r->path);
        return false;
    }
    if (r->loops != 0 && r->pass >= r->loops)
        return false;
    if (r->pass > 0 && sl_cap_reader_rewind(r->rd) != 0)
        return false;
    r->pass++;
    r->pass_hits = 0;
    r->anchored = false;
    return true;
}

/*
 * Reads until a record of ours that is due for emission is in hand. Returns 1 (in hand), 0 (EOF of all
 * passes), or a negative code (SL_EIO: the file cannot be read any further).
 */
static int sl__replay_take(sl_ctx_t *ctx, sl_replay_t *r)
{
    for (;;) {
        if (r->pass == 0 && !sl__replay_next_pass(ctx, r))
            return 0;
        int rc = sl_cap_reader_next(r->rd, &r->rec);
        if (rc == SL_EBADMSG) {
            sl__replay_corrupt(ctx, r);
            continue;
        }
        if (rc == SL_EOF) {
            if (!sl__replay_next_pass(ctx, r))
                return 0;
            continue;
        }
        if (rc != 0)
            return rc;
        if (r->first_ts == 0)
            r->first_ts = r->rec.ts_ns;
        if (r->rec.index < r->start_record || (r->start_time_ns && r->rec.ts_ns < r->first_ts + r->start_time_ns))
            continue;
        sl__replay_key(r, &r->rec);
        if (sl__replay_attrs(r, &r->rec) != 0)
            return SL_ENOMEM;
        if (r->n > 1 && sl_hash(r->key, r->key_len) % r->n != r->k)
            continue;
        r->pass_hits++;
        if (r->skip > 0) {
            r->skip--;
            continue;
        }
        r->have = true;
        return 1;
    }
}

static void sl__replay_progress(sl_replay_t *r, uint64_t now, bool last)
{
    if (!r->progress || r->k != 0 || (!last && now < r->next_progress_ns))
        return;
    r->next_progress_ns = now + 500 * SL_NS_PER_MS;
    uint64_t done, total;
    sl_cap_reader_progress(r->rd, &done, &total);
    double secs = (double)(now - r->started_ns) / 1e9, rate = secs > 0 ? (double)r->emitted / secs : 0;
    char eta[32] = "";
    if (total && done && r->loops == 1 && !last) {
        double left = secs * (double)(total - SL_MIN(done, total)) / (double)done;
        snprintf(eta, sizeof eta, ", ETA %um%02us", (unsigned)(left / 60), (unsigned)left % 60);
    }
    char line[160];
    int n = snprintf(line, sizeof line, "\r%s: %llu events, %.0f/s, %.0f%% of the file%s%s", r->who,
                     (unsigned long long)r->emitted, rate,
                     total ? 100.0 * (double)SL_MIN(done, total) / (double)total : 0.0, eta, last ? "\n" : "   ");
    if (write(2, line, (size_t)SL_MIN(n, (int)sizeof line - 1)) < 0)
        r->progress = false;
}

static int sl__replay_demand(sl_ctx_t *ctx, void *state, uint64_t demand)
{
    sl_replay_t *r = state;
    uint64_t now = sl_now_ns(), sent = 0, wall = sl_wall_ns();
    while (sent < demand) {
        if (r->limited && r->emitted >= r->count)
            return sent ? (int)sent : SL_EOF;
        if (!r->have) {
            int rc = sl__replay_take(ctx, r);
            if (rc == 0)
                return sent ? (int)sent : SL_EOF;
            if (rc < 0)
                return rc;
        }
        if (r->speed > 0 && r->rec.ts_ns) {
            if (!r->anchored) {
                r->anchored = true;
                r->anchor_ns = now;
                r->anchor_ts = r->rec.ts_ns;
            }
            uint64_t late = r->rec.ts_ns > r->anchor_ts ? r->rec.ts_ns - r->anchor_ts : 0;
            uint64_t due = r->anchor_ns + (uint64_t)((double)late / r->speed);
            if (due > now && due > (now = sl_now_ns())) {
                sl_ctx_set_timer(ctx, due);
                break;
            }
        }
        sl_emit_t em = {.topic = r->rec.topic,
                        .topic_len = r->rec.topic_len,
                        .key = r->key,
                        .key_len = (uint32_t)r->key_len,
                        .attrs = r->attrs,
                        .attr_len = (uint32_t)r->attr_len,
                        .payload = r->rec.payload,
                        .payload_len = r->rec.payload_len,
                        .flags = (uint16_t)((r->rec.flags & SL_CAP_F_BINARY ? SL_REC_BINARY : 0) |
                                            (r->rec.flags & SL_CAP_F_RETAIN ? SL_REC_RETAIN : 0)),
                        .qos = r->rec.qos,
                        .ingest_ns = r->speed > 0 ? sl_wall_ns() : wall}; /* timed: when it was due */
        int rc = sl_emit(ctx, &em);
        if (rc == SL_ENOSPC) /* the rings and the stash are full: the record stays in hand */
            break;
        r->have = false;
        if (rc == SL_EMSGSIZE) {
            sl_log(SL_LOG_WARN, r->who, rc, "record %llu (%u bytes of payload) does not fit the channel; skipped",
                   (unsigned long long)r->rec.index, r->rec.payload_len);
            sl_ctx_count_failed(ctx, 1);
            continue;
        }
        if (rc != 0)
            return rc;
        r->emitted++;
        sent++;
    }
    sl__replay_progress(r, now, false);
    return (int)sent;
}

static void sl__replay_terminate(sl_ctx_t *ctx, void *state, int reason)
{
    sl_replay_t *r = state;
    if (r == NULL)
        return;
    const sl_cap_info_t *in = sl_cap_reader_info(r->rd);
    sl__replay_progress(r, sl_now_ns(), true);
    sl_log(SL_LOG_INFO, r->who, 0,
           "replayed %llu events from %s in %llu pass%s; %llu corrupt records (%llu bytes skipped)",
           (unsigned long long)r->emitted, r->path, (unsigned long long)r->pass, r->pass == 1 ? "" : "es",
           (unsigned long long)in->corrupt, (unsigned long long)in->skipped_bytes);
    sl_cap_reader_destroy(r->rd);
    free(r->attrs);
    free(r);
}

const sl_stage_ops_t sl_source_replay_ops = {
    .type = "replay",
    .kind = SL_KIND_PRODUCER,
    .init = sl__replay_init,
    .handle_demand = sl__replay_demand,
    .terminate = sl__replay_terminate,
};
