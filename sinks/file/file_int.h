/*
 * Private interface of the `file` sink (sinks/file/): path templates (file_path.c), encoding and
 * compression of a batch (file_enc.c), files on disk (file_io.c) and the stage callbacks (file.c).
 *
 * Invariants:
 *  - An event is acknowledged only after the batch holding it was written to its file and reached the
 *    configured durability (`sync`): none = write(2) returned, batch = fdatasync after the batch,
 *    interval = the next periodic fdatasync. Until then its view in the input channel stays valid (the
 *    runtime commits only acknowledged prefixes), so the sink keeps views, never copies.
 *  - Every batch is written as one unit (a complete gzip member, whole lines, or for zstd the batch's
 *    flushed blocks and a batch marker in the file's one frame), with one pwrite at the file's known end.
 *    A write that fails is cut back (ftruncate) to that end, so a file never holds half a batch while
 *    sluice runs, and a file left by a crash is cut back to its last complete unit before it is renamed
 *    (recovery; an unfinished zstd frame is sealed there: see file_enc.c).
 *  - A file is written as NAME.part and renamed to NAME once complete (rotation, drain), so readers never
 *    see half a file. The .part files an instance has open are listed in its state file under the base
 *    directory, so a restarted instance finalises what its predecessor left.
 *  - Expanded paths never leave the base directory: attribute values are sanitised (no '/', NUL, control
 *    characters, and no component that is "." or ".."), and the whole relative path is checked again.
 */
#ifndef SL_SINK_FILE_INT_H
#define SL_SINK_FILE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sinks/sinks_int.h"

#define SL_FILE_PATH_MAX 1024
#define SL_FILE_VALUE_MAX 128 /* bytes of one attribute value in a path; longer values are cut */

/* X(enum suffix, yaml spelling) */
#define SL_FILE_FORMAT_MAP(X) X(NDJSON, "ndjson") X(RAW, "raw") X(CAPTURE, "capture")
#define SL_FILE_COMP_MAP(X) X(NONE, "none") X(GZIP, "gzip") X(ZSTD, "zstd")
#define SL_FILE_SYNC_MAP(X) X(NONE, "none") X(BATCH, "batch") X(INTERVAL, "interval")

typedef enum {
#define SL_X(n, s) SL_FILE_FMT_##n,
    SL_FILE_FORMAT_MAP(SL_X)
#undef SL_X
} sl_file_format_t;
typedef enum {
#define SL_X(n, s) SL_FILE_COMP_##n,
    SL_FILE_COMP_MAP(SL_X)
#undef SL_X
} sl_file_comp_t;
typedef enum {
#define SL_X(n, s) SL_FILE_SYNC_##n,
    SL_FILE_SYNC_MAP(SL_X)
#undef SL_X
} sl_file_sync_t;

/* ---- path templates (file_path.c) ---- */

typedef enum { SL_TPL_LIT, SL_TPL_TIME, SL_TPL_KEY, SL_TPL_TOPIC, SL_TPL_ATTR } sl_tpl_kind_t;

typedef struct sl_tpl_seg_s {
    sl_tpl_kind_t kind;
    char *text; /* LIT: the text; TIME: the strftime format; ATTR: the attribute name */
    size_t len;
    /* TIME: the formatted text of the cached second (one strftime per second, not per event). */
    int64_t cached_sec;
    char cached[128];
    size_t cached_len;
} sl_tpl_seg_t;

typedef struct sl_tpl_s {
    sl_tpl_seg_t *segs;
    size_t n;
} sl_tpl_t;

/* Compiles a template: literal text, strftime conversions (%Y ...), {key}, {topic} and {ATTRIBUTE}.
 * Returns 0, or SL_EINVAL with *why set (a literal part that is absolute or has a "." / ".." component,
 * an unclosed brace). The template owns its memory: free with sl__tpl_free. */
int sl__tpl_compile(sl_tpl_t *tpl, const char *text, const char **why);
void sl__tpl_free(sl_tpl_t *tpl);
/* Expands tpl for ev (time from its ingest_ns, UTC) into out[cap]. Returns the length, or SL_ENAMETOOLONG
 * style SL_ERANGE when it does not fit, or SL_EINVAL when the result is not a safe relative path (cannot
 * happen with a compiled template and sanitised values; checked anyway). */
int sl__tpl_expand(sl_tpl_t *tpl, const sl_event_t *ev, char *out, size_t cap);
/* Appends value[0..len) to out at *o sanitised for a path component; returns false when it does not fit. */
bool sl__path_put_value(char *out, size_t cap, size_t *o, const uint8_t *value, size_t len);
/* True when rel is a relative path whose components are non-empty and neither "." nor "..". */
bool sl__path_is_safe(const char *rel, size_t len);

/* ---- encoding (file_enc.c) ---- */

typedef struct sl_buf_s {
    uint8_t *p;
    size_t len, cap;
} sl_buf_t;

int sl__buf_reserve(sl_buf_t *b, size_t more);
void sl__buf_free(sl_buf_t *b);

/* Appends one event in the format to b: an NDJSON line, a raw payload line, or a capture record
 * (ingest/capture's encoding). Returns 0, SL_ENOMEM, or for capture SL_EINVAL / SL_EMSGSIZE (an event the
 * format cannot hold; nothing appended). */
int sl__file_encode(sl_buf_t *b, sl_file_format_t fmt, const sl_event_t *ev);
/* Appends the capture file header (what starts a `format: capture` file). */
int sl__file_capture_header(sl_buf_t *b, const char *desc);
/* True when p[0..n) is one complete JSON value with no raw newline (it can be inlined in an NDJSON line). */
bool sl__json_valid(const uint8_t *p, size_t n);

typedef struct sl_codec_s sl_codec_t;
/* A compressor reused for every batch of an instance. level 0 = the codec's default. */
int sl__codec_new(sl_file_comp_t comp, int level, sl_codec_t **out);
void sl__codec_destroy(sl_codec_t *c);
/* Compresses in[0..n) into out (replacing its content): gzip, one complete member; zstd, the next part of
 * the stream's frame (started when none is open), flushed, then a batch marker. */
int sl__codec_unit(sl_codec_t *c, const uint8_t *in, size_t n, sl_buf_t *out);
/* zstd: the bytes that end the open frame (last block, checksum) into out; gzip: nothing. */
int sl__codec_end(sl_codec_t *c, sl_buf_t *out);
/* zstd: forgets the open frame (what it took did not reach the file); the next unit starts a new frame. */
void sl__codec_abandon(sl_codec_t *c);
/* The length of the longest prefix of data[0..n) made of complete units of comp (whole lines for none;
 * whole capture records after the header for an uncompressed capture; whole gzip members; whole zstd
 * frames, or up to the last batch marker of an unfinished frame, whose start is then in *open_frame, else
 * SIZE_MAX; open_frame may be NULL): where a file left by a crash is cut back to. */
size_t sl__codec_valid_prefix(sl_file_comp_t comp, sl_file_format_t fmt, const uint8_t *data, size_t n,
                              size_t *open_frame);
/* Ends the unfinished zstd frame of fd that starts at frame_start and whose data ends at end (a batch
 * marker): clears its checksum flag (the checksum of its content is unknown) and appends an empty last
 * block at end (3 bytes). Returns 0 or a negative code (then the file is cut back to end). */
int sl__zstd_seal(int fd, uint64_t frame_start, uint64_t end);

/* ---- files (file_io.c) ---- */

typedef struct sl_file_s sl_file_t;
typedef struct sl_fsink_s sl_fsink_t;

/* Opens f's NAME.part under the base directory (creating directories), choosing a name no file has. */
int sl__file_open(sl_fsink_t *fs, sl_file_t *f);
/* Writes data at f's end; on failure cuts the file back and returns a negative errno (nothing written). */
int sl__file_write(sl_fsink_t *fs, sl_file_t *f, const uint8_t *data, size_t n);
/* Syncs (unless sync: none), closes and renames NAME.part to NAME; an empty file is removed instead. */
int sl__file_finish(sl_fsink_t *fs, sl_file_t *f);
/* Rewrites the state file listing the .part files this instance has open. */
int sl__file_state_save(sl_fsink_t *fs);
/* Finalises the .part files listed in the state file left by a predecessor. Returns how many. */
int sl__file_recover(sl_fsink_t *fs);

/* ---- the sink (file.c) ---- */

/* One pending event: a view into the input channel, valid until acknowledged. */
typedef struct sl_pend_s {
    sl_event_t ev;
    uint32_t next; /* next in its list, or SL_PEND_NIL */
    bool dead;     /* the format cannot hold it: dead-lettered, skipped when its batch is written */
} sl_pend_t;
#define SL_PEND_NIL UINT32_MAX

typedef struct sl_plist_s {
    uint32_t head, tail, n;
} sl_plist_t;

struct sl_file_s {
    char rel[SL_FILE_PATH_MAX]; /* the expanded template: the batch key */
    size_t rel_len;
    uint32_t hash;
    char final[SL_FILE_PATH_MAX + 32]; /* relative to the base directory, once opened */
    int fd;                            /* -1 until opened */
    uint64_t size;                     /* bytes written */
    uint64_t opened_ns;                /* monotonic */
    uint64_t used_ns;                  /* last batch, for closing the least recently used */
    uint32_t n_batches;                /* open batches bound for it */
    uint32_t cur_batch;                /* without batch_key: its one open batch + 1, or 0 (no lookup per event) */
    sl_plist_t unsynced;               /* written, waiting for the interval fdatasync */
    /* zstd: the file's own stream (one frame, flushed at every batch, ended when the file completes). */
    sl_codec_t *zs;
    uint64_t frame_start; /* where its open frame starts in the file; UINT64_MAX when none is open */
    bool zs_broken;       /* the stream took a batch whose write failed: seal the frame, start a new one */
    bool in_use;
    bool closing; /* being completed: writing its batches must not start another completion */
};

/* One batch: events bound for one file with one batch_key value (file_batch.c). */
typedef struct sl_fbatch_s {
    sl_file_t *f;
    uint32_t hash; /* of the file and the key value */
    uint32_t key_len;
    char key[SL_FILE_VALUE_MAX];
    sl_plist_t ev;                 /* taken, not written yet, in arrival order */
    size_t bytes;                  /* channel bytes of its events */
    uint64_t first_ns;             /* monotonic time of its first event */
    uint32_t next_hash;            /* bucket chain, or the free list */
    uint32_t prev_open, next_open; /* open batches, in the order of their first event */
} sl_fbatch_t;

/* What `batch_key` names: nothing (one batch per file), the record key, the topic, or an attribute. */
typedef enum { SL_BKEY_NONE, SL_BKEY_KEY, SL_BKEY_TOPIC, SL_BKEY_ATTR } sl_bkey_kind_t;

struct sl_fsink_s {
    sl_ctx_t *ctx;
    const char *who;
    /* Configuration. */
    char *dir;
    int dirfd;
    sl_tpl_t tpl;
    sl_file_format_t fmt;
    sl_file_comp_t comp;
    int level; /* compression_level */
    sl_file_sync_t sync;
    uint64_t rotate_size, rotate_age_ns, sync_interval_ns;
    uint64_t batch_size, batch_bytes, batch_timeout_ns;
    uint32_t max_open;
    uint32_t hold_limit;                   /* events held in batches before every batch is written (see file_conf.c) */
    uint32_t held;                         /* events taken and not acknowledged */
    uint64_t hold_bytes_limit, held_bytes; /* the same in channel bytes */
    char state_path[300];
    /* Files: a small array searched by hash (max_open_files is small by design). */
    sl_file_t *files;
    uint32_t n_files;
    /* Batches (file_batch.c). */
    sl_bkey_kind_t bkey;
    const char *bkey_attr;
    size_t bkey_attr_len;
    sl_fbatch_t *batches;
    uint32_t bcap, bfree, *buckets;
    uint32_t open_head, open_tail, n_open;
    /* Pending events. */
    sl_pend_t *pend;
    uint32_t pend_cap, pend_free;
    /* Scratch: encoded batch, compressed batch. */
    sl_buf_t enc, out;
    sl_codec_t *codec;
    uint32_t n_zs; /* zstd: files holding a stream (at most SL_FILE_ZSTD_STREAMS, see file.c) */
    /* Backpressure: a write that failed holds everything until the retry time. */
    bool blocked, episode;
    int blocked_err;
    uint64_t retry_ns, blocked_since_ns, blocked_episodes, blocked_retries;
    uint64_t next_sync_ns;
    sl_plist_t deferred; /* taken while blocked or without a free file slot, in arrival order */
    /* Route cache for templates that depend on the time only (no {key}, {topic}, {ATTR}): every event of
     * one receive second goes to the same file, found without expanding and hashing the path. */
    bool tpl_time_only;
    sl_file_t *last_file;
    int64_t last_sec;
    /* Figures. */
    uint64_t files_done, events_written, bytes_written, recovered, evictions;
    /* In /metrics (file_conf.c registers them). */
    _Atomic uint64_t *m_blocked_episodes, *m_blocked_retries, *m_blocked, *m_files, *m_dead;
    _Atomic uint64_t m_spare[5];
    uint32_t seq;         /* file name counter */
    const char *cap_desc; /* format capture: the header's description */
};

/* file_batch.c: the batch of (f, key), created (first event now, last in the open list) when absent. */
int sl__fbatch_get(sl_fsink_t *fs, sl_file_t *f, const char *key, size_t len, uint32_t *out);
/* Forgets batch i (its events were written or moved): out of its chain and the open list. */
void sl__fbatch_drop(sl_fsink_t *fs, uint32_t i);
void sl__fbatch_free(sl_fsink_t *fs);

/* file_conf.c: reads the node's keys and prepares the instance (base directory, template, codec,
 * recovery). Returns 0 or a negative code after logging why (the worker then cannot start). */
int sl__fsink_setup(sl_ctx_t *ctx, sl_fsink_t *fs);
void sl__fsink_free(sl_fsink_t *fs);

#endif /* SL_SINK_FILE_INT_H */
