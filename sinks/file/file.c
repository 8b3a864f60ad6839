/*
 * The `file` sink: batches events per output file (the expanded path template) and, with batch_key, per
 * key value too (file_batch.c), writes each batch as one complete unit, and acknowledges its events only once the batch
 * reached the configured durability (see file_int.h for the invariants).
 *
 * Backpressure: a failed open or write (disk full, read-only file system, quota, permissions) is never a
 * loss and never a crash. The batch stays in hand, every later event is deferred in arrival order, and the
 * write is retried every SL_FILE_RETRY_NS. While nothing is acknowledged the runtime's acknowledgement
 * window fills and the worker stops taking input, so the pressure reaches the source. Each episode is
 * logged once when it starts and once when it ends, with figures, and counted.
 *
 * Timers: one deadline covers the batch timeouts, the file ages, the interval fsync and the retry.
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sinks/file/file_int.h"

#define SL_FILE_RETRY_NS (500 * SL_NS_PER_MS)
/* zstd: open files holding a compression stream at once (one is 1.3 MB at level 1, 3.6 MB at level 3). */
#define SL_FILE_ZSTD_STREAMS 8

/* ---- pending events ---- */

static int sl__pend_get(sl_fsink_t *fs, const sl_event_t *ev, uint32_t *out)
{
    uint32_t i;
    if (sl__slab_alloc((void **)&fs->pend, &fs->pend_cap, &fs->pend_free, sizeof *fs->pend, offsetof(sl_pend_t, next),
                       4096, &i) != 0)
        return SL_ENOMEM;
    fs->pend[i].ev = *ev;
    fs->pend[i].next = SL_PEND_NIL;
    fs->pend[i].dead = false;
    fs->held++;
    fs->held_bytes += ev->rec ? SL_ALIGN_UP((uint64_t)ev->rec->len, SL_REC_ALIGN) : 0;
    *out = i;
    return 0;
}

static void sl__plist_push(sl_fsink_t *fs, sl_plist_t *l, uint32_t i)
{
    if (l->n == 0)
        l->head = i;
    else
        fs->pend[l->tail].next = i;
    l->tail = i;
    l->n++;
}

/* Moves all of src to the end of dst. */
static void sl__plist_move(sl_fsink_t *fs, sl_plist_t *dst, sl_plist_t *src)
{
    if (src->n == 0)
        return;
    if (dst->n == 0)
        *dst = *src;
    else {
        fs->pend[dst->tail].next = src->head;
        dst->tail = src->tail;
        dst->n += src->n;
    }
    memset(src, 0, sizeof *src);
}

/* Acknowledges every event of l and gives their slots back. */
static void sl__plist_ack(sl_fsink_t *fs, sl_plist_t *l)
{
    for (uint32_t i = l->head, k = 0; k < l->n; k++) {
        uint32_t next = fs->pend[i].next;
        sl_ack(fs->ctx, fs->pend[i].ev.token);
        fs->held--;
        fs->held_bytes -= fs->pend[i].ev.rec ? SL_ALIGN_UP((uint64_t)fs->pend[i].ev.rec->len, SL_REC_ALIGN) : 0;
        fs->pend[i].next = fs->pend_free;
        fs->pend_free = i;
        i = next;
    }
    memset(l, 0, sizeof *l);
}

/* ---- writing batches ---- */

static void sl__fsink_block(sl_fsink_t *fs, sl_file_t *f, int err, const char *what)
{
    uint64_t now = sl_now_ns();
    fs->retry_ns = now + SL_FILE_RETRY_NS;
    fs->blocked = true;
    if (fs->episode) {
        fs->blocked_retries++;
        sl__metric_add(fs->m_blocked_retries, 1);
        return;
    }
    fs->episode = true;
    fs->blocked_err = err;
    fs->blocked_since_ns = now;
    fs->blocked_episodes++;
    sl__metric_add(fs->m_blocked_episodes, 1);
    sl__metric_set(fs->m_blocked, 1);
    sl_log(SL_LOG_WARN, fs->who, err,
           "%s %s/%s failed: holding %u events, retrying every %llu ms (backpressure, nothing is dropped; "
           "episode %llu)",
           what, fs->dir, f->fd >= 0 ? f->final : f->rel, fs->held,
           (unsigned long long)(SL_FILE_RETRY_NS / SL_NS_PER_MS), (unsigned long long)fs->blocked_episodes);
}

/* Encodes and compresses batch b into fs->out (or fs->enc when uncompressed); returns the unit. */
static int sl__fsink_encode(sl_fsink_t *fs, const sl_fbatch_t *b, const uint8_t **data, size_t *len)
{
    fs->enc.len = 0;
    if (fs->fmt == SL_FILE_FMT_CAPTURE && b->f->size == 0) { /* a capture file starts with its header */
        int rc = sl__file_capture_header(&fs->enc, fs->cap_desc);
        if (rc != 0)
            return rc;
    }
    for (uint32_t i = b->ev.head, k = 0; k < b->ev.n; k++, i = fs->pend[i].next) {
        sl_pend_t *p = &fs->pend[i];
        if (k + 1 < b->ev.n && fs->pend[p->next].ev.rec != NULL) {
            /* The next record was written by the producer on another core: start fetching it now. */
            const char *r = (const char *)fs->pend[p->next].ev.rec;
            for (uint32_t o = 0; o < fs->pend[p->next].ev.rec->len; o += 64)
                __builtin_prefetch(r + o);
        }
        if (p->dead)
            continue;
        int rc = sl__file_encode(&fs->enc, fs->fmt, &p->ev);
        if (rc == SL_EINVAL || rc == SL_EMSGSIZE) {
            /* A capture cannot hold it (no topic, QoS above 2, malformed attributes): dead-lettered once,
             * acknowledged with its batch. */
            p->dead = true;
            sl__metric_add(fs->m_dead, 1);
            sl_dead_letter(fs->ctx, &p->ev, "unencodable",
                           rc == SL_EINVAL ? "not valid in a capture record" : "too large for a capture record");
            continue;
        }
        if (rc != 0)
            return rc;
    }
    sl_codec_t *codec = b->f->zs != NULL ? b->f->zs : fs->codec;
    if (codec == NULL) {
        *data = fs->enc.p, *len = fs->enc.len;
        return 0;
    }
    int rc = sl__codec_unit(codec, fs->enc.p, fs->enc.len, &fs->out);
    *data = fs->out.p, *len = fs->out.len;
    return rc;
}

/* fdatasync of f, then acknowledges what waited for it. A failed sync is treated like a failed write. */
static int sl__fsink_sync(sl_fsink_t *fs, sl_file_t *f)
{
    if (f->unsynced.n == 0)
        return 0;
    if (f->fd >= 0 && fdatasync(f->fd) != 0) {
        sl__fsink_block(fs, f, -errno, "fdatasync of");
        return SL_EAGAIN;
    }
    sl__plist_ack(fs, &f->unsynced);
    return 0;
}

static int sl__fsink_flush(sl_fsink_t *fs, uint32_t bi);

/* zstd: makes f's stream ready for the next batch. A stream that took a batch whose write failed is ahead
 * of the file: the frame is sealed at the file's end (its last batch marker) and the next batch starts a
 * new frame. Returns 0 or the failed write's code. */
static int sl__fsink_zs_ready(sl_file_t *f)
{
    if (f->zs_broken) {
        if (f->frame_start != UINT64_MAX && f->size > f->frame_start) {
            int rc = sl__zstd_seal(f->fd, f->frame_start, f->size);
            if (rc != 0)
                return rc;
            f->size += 3;
        }
        sl__codec_abandon(f->zs);
        f->frame_start = UINT64_MAX;
        f->zs_broken = false;
    }
    return 0;
}

/* zstd: ends f's open frame (before the file is completed). Returns 0 or the failed write's code. */
static int sl__fsink_zs_end(sl_fsink_t *fs, sl_file_t *f)
{
    int rc = sl__fsink_zs_ready(f);
    if (rc != 0 || f->frame_start == UINT64_MAX)
        return rc;
    if ((rc = sl__codec_end(f->zs, &fs->out)) == 0)
        rc = sl__file_write(fs, f, fs->out.p, fs->out.len);
    if (rc != 0) {
        f->zs_broken = true;
        return rc;
    }
    f->frame_start = UINT64_MAX;
    return 0;
}

/* zstd: gives f a stream for its next batch. Past SL_FILE_ZSTD_STREAMS streams, the least recently used
 * other file's frame is ended and its stream freed (its next batch starts a new frame in the same file),
 * so max_open_files does not multiply the memory of a stream. */
static int sl__fsink_zs_get(sl_fsink_t *fs, sl_file_t *f)
{
    if (f->zs != NULL)
        return 0;
    if (fs->n_zs >= SL_FILE_ZSTD_STREAMS) {
        sl_file_t *lru = NULL;
        for (uint32_t i = 0; i < fs->n_files; i++) {
            sl_file_t *g = &fs->files[i];
            if (g != f && g->in_use && g->zs != NULL && (lru == NULL || g->used_ns < lru->used_ns))
                lru = g;
        }
        if (lru != NULL && sl__fsink_zs_end(fs, lru) == 0) { /* when it fails, one stream more for now */
            sl__codec_destroy(lru->zs);
            lru->zs = NULL;
            fs->n_zs--;
        }
    }
    int rc = sl__codec_new(fs->comp, fs->level, &f->zs);
    if (rc != 0)
        return rc;
    fs->n_zs++;
    f->frame_start = UINT64_MAX;
    f->zs_broken = false;
    return 0;
}

/* Writes every batch bound for f. Returns 0, SL_EAGAIN (some stay: backpressure) or a fatal code. */
static int sl__fsink_flush_file(sl_fsink_t *fs, sl_file_t *f)
{
    for (uint32_t i = fs->open_head; i != SL_PEND_NIL && f->n_batches > 0;) {
        uint32_t next = fs->batches[i].next_open;
        if (fs->batches[i].f == f) {
            int rc = sl__fsink_flush(fs, i);
            if (rc != 0)
                return rc;
        }
        i = next;
    }
    return 0;
}

/* Writes f's batches, syncs and renames f, acknowledging what waited for it; the slot becomes free. */
static int sl__fsink_close(sl_fsink_t *fs, sl_file_t *f, const char *why)
{
    f->closing = true; /* its batches' writes must not start another close */
    int rc = sl__fsink_flush_file(fs, f);
    f->closing = false;
    if (rc != 0)
        return rc;
    if (f->zs != NULL && f->fd >= 0 && (rc = sl__fsink_zs_end(fs, f)) != 0) {
        sl__fsink_block(fs, f, rc, "ending the zstd frame of");
        return SL_EAGAIN;
    }
    if (fs->last_file == f)
        fs->last_file = NULL;
    sl_log(SL_LOG_DEBUG, fs->who, 0, "completing %s (%s, %llu bytes)", f->fd >= 0 ? f->final : f->rel, why,
           (unsigned long long)f->size);
    if (fs->sync == SL_FILE_SYNC_INTERVAL && sl__fsink_sync(fs, f) != 0)
        return SL_EAGAIN;
    sl__file_finish(fs, f);
    f->in_use = false;
    return 0;
}

/* Writes batch bi to its file. Returns 0 (the batch is gone), SL_EAGAIN (backpressure: the batch stays),
 * or a fatal code. */
static int sl__fsink_flush(sl_fsink_t *fs, uint32_t bi)
{
    sl_fbatch_t *b = &fs->batches[bi];
    sl_file_t *f = b->f;
    if (fs->blocked)
        return SL_EAGAIN;
    int rc = f->fd >= 0 ? 0 : sl__file_open(fs, f);
    if (rc != 0) {
        sl__fsink_block(fs, f, rc, "creating");
        return SL_EAGAIN;
    }
    if (fs->comp == SL_FILE_COMP_ZSTD && (rc = sl__fsink_zs_get(fs, f)) != 0)
        return rc;
    if (f->zs != NULL && (rc = sl__fsink_zs_ready(f)) != 0) {
        sl__fsink_block(fs, f, rc, "writing");
        return SL_EAGAIN;
    }
    if (f->zs != NULL && f->frame_start == UINT64_MAX)
        f->frame_start = f->size;
    const uint8_t *data;
    size_t len;
    if ((rc = sl__fsink_encode(fs, b, &data, &len)) != 0)
        return rc;
    uint64_t before = f->size;
    rc = sl__file_write(fs, f, data, len);
    if (rc == 0 && fs->sync == SL_FILE_SYNC_BATCH && fdatasync(f->fd) != 0) {
        rc = -errno;
        f->size = before;
        if (ftruncate(f->fd, (off_t)before) != 0)
            rc = SL_EIO;
    }
    if (rc != 0) {
        f->zs_broken = f->zs != NULL; /* the stream has the batch, the file does not */
        sl__fsink_block(fs, f, rc, "writing");
        return SL_EAGAIN;
    }
    fs->events_written += b->ev.n;
    fs->bytes_written += len;
    f->used_ns = sl_now_ns();
    if (fs->sync == SL_FILE_SYNC_INTERVAL)
        sl__plist_move(fs, &f->unsynced, &b->ev);
    else
        sl__plist_ack(fs, &b->ev);
    sl__fbatch_drop(fs, bi);
    if (f->size >= fs->rotate_size && !f->closing)
        return sl__fsink_close(fs, f, "rotate_size");
    return 0;
}

/* ---- routing events to files ---- */

static sl_file_t *sl__fsink_slot(sl_fsink_t *fs, const char *rel, size_t len)
{
    uint32_t h = sl_hash(rel, len);
    sl_file_t *free_slot = NULL, *lru = NULL;
    for (uint32_t i = 0; i < fs->n_files; i++) {
        sl_file_t *f = &fs->files[i];
        if (f->in_use && f->hash == h && f->rel_len == len && memcmp(f->rel, rel, len) == 0)
            return f;
        if (!f->in_use && free_slot == NULL)
            free_slot = f;
        if (f->in_use && (lru == NULL || f->used_ns < lru->used_ns))
            lru = f;
    }
    if (free_slot == NULL && lru != NULL) {
        /* Too many files open: complete the least recently used one. */
        if (fs->evictions++ == 0)
            sl_log(SL_LOG_WARN, fs->who, 0,
                   "max_open_files (%u) reached: completing the least recently used file early (raise "
                   "max_open_files if the path template yields more files at once)",
                   fs->max_open);
        if (sl__fsink_close(fs, lru, "max_open_files") != 0)
            return NULL;
        free_slot = lru;
    }
    if (free_slot == NULL)
        return NULL;
    memset(free_slot, 0, sizeof *free_slot);
    memcpy(free_slot->rel, rel, len + 1);
    free_slot->rel_len = len;
    free_slot->hash = h;
    free_slot->fd = -1;
    free_slot->in_use = true;
    free_slot->used_ns = sl_now_ns();
    return free_slot;
}

static int sl__fsink_add(sl_fsink_t *fs, sl_file_t *f, uint32_t i);

/* Puts the pending event i in its file's batch. Returns 0, SL_EAGAIN (no file slot now) or fatal. */
static int sl__fsink_route(sl_fsink_t *fs, uint32_t i)
{
    const sl_event_t *ev = &fs->pend[i].ev;
    int64_t sec = (int64_t)(ev->ingest_ns / SL_NS_PER_S);
    sl_file_t *f = fs->tpl_time_only && fs->last_sec == sec ? fs->last_file : NULL;
    if (f != NULL)
        return sl__fsink_add(fs, f, i);
    char rel[SL_FILE_PATH_MAX];
    int len = sl__tpl_expand(&fs->tpl, ev, rel, sizeof rel);
    if (len < 0) {
        sl_dead_letter(fs->ctx, ev, "unroutable", len == SL_ERANGE ? "file path too long" : "unsafe file path");
        sl__metric_add(fs->m_dead, 1);
        sl_plist_t one = {i, i, 1};
        sl__plist_ack(fs, &one);
        return 0;
    }
    f = sl__fsink_slot(fs, rel, (size_t)len);
    if (f == NULL)
        return SL_EAGAIN;
    fs->last_file = f;
    fs->last_sec = sec;
    return sl__fsink_add(fs, f, i);
}

/* The event's batch_key value: the record key, the topic, an attribute (absent = empty), or nothing. */
static size_t sl__fsink_bkey(const sl_fsink_t *fs, const sl_event_t *ev, const char **out)
{
    const uint8_t *v = NULL;
    size_t n = 0;
    if (fs->bkey == SL_BKEY_KEY)
        v = ev->key, n = ev->key_len;
    else if (fs->bkey == SL_BKEY_TOPIC)
        v = (const uint8_t *)ev->topic, n = ev->topic_len;
    else if (fs->bkey == SL_BKEY_ATTR &&
             (ev->rec == NULL || sl_rec_attr_get(ev->rec, fs->bkey_attr, fs->bkey_attr_len, &v, &n) != 0))
        v = NULL, n = 0;
    /* Values longer than a batch key holds share a batch with the others of the same prefix: batching
     * only groups, it never decides where an event lands. */
    *out = v != NULL ? (const char *)v : ""; /* never NULL: it is hashed and copied */
    return SL_MIN(n, (size_t)SL_FILE_VALUE_MAX);
}

/* Puts the pending event i in its batch for f; writes the batch when full. Returns 0 or a fatal code. */
static int sl__fsink_add(sl_fsink_t *fs, sl_file_t *f, uint32_t i)
{
    const sl_event_t *ev = &fs->pend[i].ev;
    uint32_t bi = f->cur_batch - 1;
    int rc;
    if (f->cur_batch == 0 || fs->bkey != SL_BKEY_NONE) {
        const char *key;
        size_t klen = sl__fsink_bkey(fs, ev, &key);
        if ((rc = sl__fbatch_get(fs, f, key, klen, &bi)) != 0)
            return rc;
        if (fs->bkey == SL_BKEY_NONE)
            f->cur_batch = bi + 1;
    }
    sl_fbatch_t *b = &fs->batches[bi];
    sl__plist_push(fs, &b->ev, i);
    b->bytes += ev->rec ? ev->rec->len : ev->payload_len;
    if (b->ev.n >= fs->batch_size || b->bytes >= fs->batch_bytes) {
        rc = sl__fsink_flush(fs, bi);
        return rc == SL_EAGAIN ? 0 : rc; /* the event is in the batch: held, not deferred */
    }
    return 0;
}

/* Routes deferred events in order until one cannot be placed. */
static int sl__fsink_undefer(sl_fsink_t *fs)
{
    while (fs->deferred.n > 0 && !fs->blocked) {
        uint32_t i = fs->deferred.head;
        uint32_t next = fs->pend[i].next;
        fs->pend[i].next = SL_PEND_NIL;
        int rc = sl__fsink_route(fs, i);
        if (rc == SL_EAGAIN) {
            fs->pend[i].next = next;
            return 0;
        }
        if (rc != 0)
            return rc;
        fs->deferred.head = next;
        fs->deferred.n--;
    }
    return 0;
}

/* ---- deadlines ---- */

static void sl__fsink_arm(sl_fsink_t *fs)
{
    uint64_t t = UINT64_MAX;
    if (fs->blocked)
        t = fs->retry_ns;
    else if (fs->deferred.n > 0)
        t = sl_now_ns();
    if (fs->n_open > 0) /* the open list is in the order of first events: its head times out first */
        t = SL_MIN(t, fs->batches[fs->open_head].first_ns + fs->batch_timeout_ns);
    for (uint32_t i = 0; i < fs->n_files; i++) {
        const sl_file_t *f = &fs->files[i];
        if (!f->in_use)
            continue;
        if (f->fd >= 0 && fs->rotate_age_ns)
            t = SL_MIN(t, f->opened_ns + fs->rotate_age_ns);
        if (f->unsynced.n > 0)
            t = SL_MIN(t, fs->next_sync_ns);
    }
    sl_ctx_set_timer(fs->ctx, t == UINT64_MAX ? 0 : SL_MAX(t, 1));
}

/* Flushes due batches, completes files past their age, runs the interval fsync. */
static int sl__fsink_due(sl_fsink_t *fs, uint64_t now, bool all)
{
    bool sync_due = now >= fs->next_sync_ns;
    while (fs->n_open > 0 && !fs->blocked) {
        uint32_t bi = fs->open_head;
        if (!all && now < fs->batches[bi].first_ns + fs->batch_timeout_ns)
            break;
        int rc = sl__fsink_flush(fs, bi);
        if (rc != 0 && rc != SL_EAGAIN)
            return rc;
    }
    for (uint32_t i = 0; i < fs->n_files && !fs->blocked; i++) {
        sl_file_t *f = &fs->files[i];
        if (!f->in_use)
            continue;
        if (f->n_batches == 0 && f->fd >= 0 && fs->rotate_age_ns && now >= f->opened_ns + fs->rotate_age_ns)
            sl__fsink_close(fs, f, "rotate_age");
        else if (sync_due || all)
            sl__fsink_sync(fs, f);
    }
    if (sync_due)
        fs->next_sync_ns = now + fs->sync_interval_ns;
    return 0;
}

static int sl__fsink_timer(sl_ctx_t *ctx, void *state)
{
    sl_fsink_t *fs = state;
    uint64_t now = sl_now_ns();
    if (fs->blocked && now < fs->retry_ns) {
        sl__fsink_arm(fs);
        return 0;
    }
    fs->blocked = false;
    int rc = sl__fsink_due(fs, now, fs->episode);
    if (rc == 0)
        rc = sl__fsink_undefer(fs);
    if (rc != 0)
        return rc;
    if (fs->episode && !fs->blocked) {
        sl_log(SL_LOG_INFO, fs->who, 0, "writing again after %.1f s and %llu retries (episode %llu)",
               (double)(now - fs->blocked_since_ns) / 1e9, (unsigned long long)fs->blocked_retries,
               (unsigned long long)fs->blocked_episodes);
        fs->episode = false;
        fs->blocked_retries = 0;
        sl__metric_set(fs->m_blocked, 0);
    }
    sl__fsink_arm(fs);
    return 0;
}

static int sl__fsink_events(sl_ctx_t *ctx, void *state, const sl_event_t *evs, size_t n)
{
    sl_fsink_t *fs = state;
    for (size_t k = 0; k < n; k++) {
        uint32_t i;
        int rc = sl__pend_get(fs, &evs[k], &i);
        if (rc != 0)
            return rc;
        /* Once anything is deferred, later events queue behind it: per-file order is kept. */
        if (fs->blocked || fs->deferred.n > 0 || (rc = sl__fsink_route(fs, i)) == SL_EAGAIN) {
            sl__plist_push(fs, &fs->deferred, i);
            continue;
        }
        if (rc != 0)
            return rc;
    }
    if ((fs->held - fs->deferred.n >= fs->hold_limit || fs->held_bytes >= fs->hold_bytes_limit) && !fs->blocked) {
        int rc = sl__fsink_due(fs, sl_now_ns(), true);
        if (rc != 0)
            return rc;
    }
    sl__fsink_arm(fs);
    return 0;
}

/* Drain: write everything, retrying a blocked disk until the node's shutdown timeout, then complete
 * every file. What could not be written stays unacknowledged and is delivered again after a restart. */
static void sl__fsink_drain(sl_fsink_t *fs)
{
    uint64_t deadline = sl_now_ns() + sl_ctx_node(fs->ctx)->sup.shutdown_timeout_ns;
    for (;;) {
        fs->blocked = false;
        if (sl__fsink_due(fs, sl_now_ns(), true) == 0 && sl__fsink_undefer(fs) == 0 && !fs->blocked)
            sl__fsink_due(fs, sl_now_ns(), true);
        bool left = fs->deferred.n > 0 || fs->n_open > 0;
        for (uint32_t i = 0; i < fs->n_files; i++)
            left = left || (fs->files[i].in_use && fs->files[i].unsynced.n);
        if (!left || sl_now_ns() + SL_FILE_RETRY_NS > deadline)
            break;
        struct timespec ts = {0, (long)SL_FILE_RETRY_NS}; /* the disk is full: nothing to poll but time */
        nanosleep(&ts, NULL);
    }
    for (uint32_t i = 0; i < fs->n_files; i++)
        if (fs->files[i].in_use && fs->files[i].n_batches == 0 && fs->files[i].unsynced.n == 0)
            sl__fsink_close(fs, &fs->files[i], "drain");
}

static void sl__fsink_terminate(sl_ctx_t *ctx, void *state, int reason)
{
    sl_fsink_t *fs = state;
    if (fs == NULL)
        return;
    if (reason == 0)
        sl__fsink_drain(fs);
    uint64_t held = fs->held;
    sl_log(held ? SL_LOG_WARN : SL_LOG_INFO, fs->who, 0,
           "wrote %llu events, %llu bytes, %llu files completed (%llu early, max_open_files), %llu recovered; "
           "disk blocked %llu times; "
           "%llu events not written (delivered again on restart)",
           (unsigned long long)fs->events_written, (unsigned long long)fs->bytes_written,
           (unsigned long long)fs->files_done, (unsigned long long)fs->evictions, (unsigned long long)fs->recovered,
           (unsigned long long)fs->blocked_episodes, (unsigned long long)held);
    sl__fsink_free(fs);
}

static int sl__fsink_init(sl_ctx_t *ctx, void **state)
{
    sl_fsink_t *fs = calloc(1, sizeof *fs);
    if (fs == NULL)
        return SL_ENOMEM;
    int rc = sl__fsink_setup(ctx, fs);
    if (rc != 0) {
        sl__fsink_free(fs);
        return rc;
    }
    *state = fs;
    return 0;
}

const sl_stage_ops_t sl_sink_file_ops = {
    .type = "file",
    .kind = SL_KIND_CONSUMER,
    .flags = SL_STAGE_ASYNC_ACK,
    .init = sl__fsink_init,
    .handle_events = sl__fsink_events,
    .handle_timer = sl__fsink_timer,
    .terminate = sl__fsink_terminate,
};
