/*
 * The `file` sink: batches events per output file (the expanded path template is the batch key), writes
 * each batch as one complete unit, and acknowledges its events only once the batch reached the configured
 * durability (see file_int.h for the invariants).
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
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sinks/file/file_int.h"

#define SL_FILE_RETRY_NS (500 * SL_NS_PER_MS)

/* ---- pending events ---- */

static int sl__pend_get(sl_fsink_t *fs, const sl_event_t *ev, uint32_t *out)
{
    if (fs->pend_free == SL_PEND_NIL) {
        uint32_t cap = fs->pend_cap ? fs->pend_cap * 2 : 4096;
        sl_pend_t *p = realloc(fs->pend, (size_t)cap * sizeof *p);
        if (p == NULL)
            return SL_ENOMEM;
        for (uint32_t i = fs->pend_cap; i < cap; i++)
            p[i].next = i + 1 < cap ? i + 1 : SL_PEND_NIL;
        fs->pend = p;
        fs->pend_free = fs->pend_cap;
        fs->pend_cap = cap;
    }
    uint32_t i = fs->pend_free;
    fs->pend_free = fs->pend[i].next;
    fs->pend[i].ev = *ev;
    fs->pend[i].next = SL_PEND_NIL;
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
        return;
    }
    fs->episode = true;
    fs->blocked_err = err;
    fs->blocked_since_ns = now;
    fs->blocked_episodes++;
    sl_log(SL_LOG_WARN, fs->who, err,
           "%s %s/%s failed: holding %u events, retrying every %llu ms (backpressure, nothing is dropped; "
           "episode %llu)",
           what, fs->dir, f->fd >= 0 ? f->final : f->rel, f->batch.n + f->unsynced.n,
           (unsigned long long)(SL_FILE_RETRY_NS / SL_NS_PER_MS), (unsigned long long)fs->blocked_episodes);
}

/* Encodes and compresses f's batch into fs->out (or fs->enc when uncompressed); returns the unit. */
static int sl__fsink_encode(sl_fsink_t *fs, sl_file_t *f, const uint8_t **data, size_t *len)
{
    fs->enc.len = 0;
    for (uint32_t i = f->batch.head, k = 0; k < f->batch.n; k++, i = fs->pend[i].next) {
        int rc = sl__file_encode(&fs->enc, fs->fmt, &fs->pend[i].ev);
        if (rc != 0)
            return rc;
    }
    if (fs->codec == NULL) {
        *data = fs->enc.p, *len = fs->enc.len;
        return 0;
    }
    int rc = sl__codec_unit(fs->codec, fs->enc.p, fs->enc.len, &fs->out);
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

/* Syncs and renames f, acknowledging what waited for it; the slot becomes free. */
static int sl__fsink_close(sl_fsink_t *fs, sl_file_t *f, const char *why)
{
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

/* Writes f's batch. Returns 0, SL_EAGAIN (backpressure: the batch stays), or a fatal code. */
static int sl__fsink_flush(sl_fsink_t *fs, sl_file_t *f)
{
    if (f->batch.n == 0)
        return 0;
    if (fs->blocked)
        return SL_EAGAIN;
    int rc = f->fd >= 0 ? 0 : sl__file_open(fs, f);
    if (rc != 0) {
        sl__fsink_block(fs, f, rc, "creating");
        return SL_EAGAIN;
    }
    const uint8_t *data;
    size_t len;
    if ((rc = sl__fsink_encode(fs, f, &data, &len)) != 0)
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
        sl__fsink_block(fs, f, rc, "writing");
        return SL_EAGAIN;
    }
    fs->events_written += f->batch.n;
    fs->bytes_written += len;
    f->used_ns = sl_now_ns();
    if (fs->sync == SL_FILE_SYNC_INTERVAL)
        sl__plist_move(fs, &f->unsynced, &f->batch);
    else
        sl__plist_ack(fs, &f->batch);
    f->batch_bytes = 0;
    if (f->size >= fs->rotate_size)
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
        if (sl__fsink_flush(fs, lru) != 0 || sl__fsink_close(fs, lru, "max_open_files") != 0)
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

/* Puts the pending event i in f's batch; writes the batch when full. Returns 0 or a fatal code. */
static int sl__fsink_add(sl_fsink_t *fs, sl_file_t *f, uint32_t i)
{
    const sl_event_t *ev = &fs->pend[i].ev;
    if (f->batch.n == 0)
        f->batch_first_ns = sl_now_ns();
    sl__plist_push(fs, &f->batch, i);
    f->batch_bytes += ev->rec ? ev->rec->len : ev->payload_len;
    if (f->batch.n >= fs->batch_size || f->batch_bytes >= fs->batch_bytes) {
        int rc = sl__fsink_flush(fs, f);
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
    for (uint32_t i = 0; i < fs->n_files; i++) {
        const sl_file_t *f = &fs->files[i];
        if (!f->in_use)
            continue;
        if (f->batch.n > 0)
            t = SL_MIN(t, f->batch_first_ns + fs->batch_timeout_ns);
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
    for (uint32_t i = 0; i < fs->n_files && !fs->blocked; i++) {
        sl_file_t *f = &fs->files[i];
        if (!f->in_use)
            continue;
        if (f->batch.n > 0 && (all || now >= f->batch_first_ns + fs->batch_timeout_ns)) {
            int rc = sl__fsink_flush(fs, f);
            if (rc != 0 && rc != SL_EAGAIN)
                return rc;
        }
        if (!f->in_use || fs->blocked)
            continue;
        if (f->batch.n == 0 && f->fd >= 0 && fs->rotate_age_ns && now >= f->opened_ns + fs->rotate_age_ns)
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
        bool left = fs->deferred.n > 0;
        for (uint32_t i = 0; i < fs->n_files; i++)
            left = left || (fs->files[i].in_use && (fs->files[i].batch.n || fs->files[i].unsynced.n));
        if (!left || sl_now_ns() + SL_FILE_RETRY_NS > deadline)
            break;
        struct timespec ts = {0, (long)SL_FILE_RETRY_NS}; /* the disk is full: nothing to poll but time */
        nanosleep(&ts, NULL);
    }
    for (uint32_t i = 0; i < fs->n_files; i++)
        if (fs->files[i].in_use && fs->files[i].batch.n == 0 && fs->files[i].unsynced.n == 0)
            sl__fsink_close(fs, &fs->files[i], "drain");
}

static void sl__fsink_terminate(sl_ctx_t *ctx, void *state, int reason)
{
    sl_fsink_t *fs = state;
    if (fs == NULL)
        return;
    if (reason == 0)
        sl__fsink_drain(fs);
    uint64_t held = fs->deferred.n;
    for (uint32_t i = 0; i < fs->n_files; i++)
        held += fs->files[i].in_use ? fs->files[i].batch.n + fs->files[i].unsynced.n : 0;
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
