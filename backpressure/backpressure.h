/*
 * Channels: the mailboxes between stage instances, and the doorbells their ends sleep on.
 *
 * A channel is a single-producer/single-consumer ring of variable-length records in shared memory
 * (memfd_create), created by the master before it forks, so it outlives both ends. Its control block
 * keeps byte cursors head (published), read (taken) and commit (acknowledged), and event counters sent
 * (published) and asked (demanded), each group on its own cache line, in the shared memory itself.
 *
 * Invariants:
 *  - commit <= read <= head <= commit + capacity; all cursors grow monotonically (they are never wrapped,
 *    offsets are cursor & (capacity - 1)).
 *  - A record becomes visible only when head moves past it (release store), so a producer that dies
 *    mid-write leaves nothing half-written; reserved but unpublished bytes are simply never seen.
 *  - Records are 8-byte aligned and never split across the end of the ring: a padding record fills the
 *    tail instead. Space is freed only up to commit, so what was taken but not acknowledged stays intact
 *    for redelivery when a consumer re-attaches (read := commit).
 *  - sent <= asked always (a producer cannot publish more events than demanded), and bytes in flight never
 *    exceed capacity. Both are backpressure: the producer gets SL_EAGAIN.
 *  - Shared memory holds no pointers: a process-local handle (sl_chan_t) holds the mapping and cursors
 *    cached for the end that process plays.
 *  - A consumer validates framing before trusting a record; a bad record is SL_EBADMSG, never followed.
 *
 * Sleeping: each stage instance has one doorbell (sl_bell_t). Its process sleeps on the bell when none of
 * its channels lets it progress; a peer rings the bell after publishing (producer) or acknowledging or
 * demanding (consumer), but only makes the futex call when the sleeper announced that it sleeps, so a busy
 * pipeline makes no system call per event (libuv's uv_async_send coalesces the same way).
 */
#ifndef SL_BACKPRESSURE_H
#define SL_BACKPRESSURE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sl.h"

/* ---- doorbells ---------------------------------------------------------------------------------- */

typedef struct sl_bell_s {
    _Alignas(SL_CACHELINE) _Atomic uint32_t sleeping; /* futex word: 1 while the owner sleeps */
    _Atomic uint32_t rings;                           /* futex wakes made, for statistics */
    char pad_[SL_CACHELINE - 2 * sizeof(uint32_t)];
} sl_bell_t;

/*
 * Allocates n zeroed bells in anonymous shared memory (inherited across fork). Returns NULL and sets errno
 * on failure. Free with sl_bells_free(bells, n). Master process, before forking.
 */
sl_bell_t *sl_bells_new(size_t n);
void sl_bells_free(sl_bell_t *bells, size_t n);

/*
 * Sleeps on bell b until it is rung, ready(arg) returns true, or timeout_ns passes. ready() is evaluated
 * after announcing the sleep, so a ring that happens between the caller's last check and the futex call is
 * never missed. Returns 0 when woken or ready, SL_ETIMEDOUT on timeout. Only the bell's owner calls it.
 */
int sl_bell_wait(sl_bell_t *b, bool (*ready)(void *arg), void *arg, uint64_t timeout_ns);

/* sl_bell_wait() without its two sched_yield() first: for a thread that waits for a clock, not for a peer
 * that may be runnable on its core. */
int sl_bell_sleep(sl_bell_t *b, bool (*ready)(void *arg), void *arg, uint64_t timeout_ns);

/*
 * Wakes the owner of b if, and only if, it announced that it sleeps. The caller has already made the
 * state change visible (with a release store); a full fence here orders that store before the read of the
 * sleeping flag (the owner does the mirror image). Any process.
 */
void sl_bell_ring(sl_bell_t *b);

/* ---- records ------------------------------------------------------------------------------------ */

#define SL_REC_ALIGN 8u
#define SL_REC_PAD 0x0001u    /* filler to the end of the ring; not an event */
#define SL_REC_BINARY 0x0002u /* payload is not text */
#define SL_REC_RETAIN 0x0004u /* MQTT: the message was the topic's retained message */
/* The payload is one JSON value without a line break, checked by the decode stage: a sink that inlines it
 * (the file sink's NDJSON envelope) need not check it again. Set only by stages, never from input. */
#define SL_REC_JSON 0x0008u

/*
 * A record in a channel: this header, then topic, key, attributes and payload bytes, then padding to
 * SL_REC_ALIGN. len counts the header and the four parts, not the padding.
 */
typedef struct sl_rec_s {
    uint32_t len;
    uint16_t flags;
    uint16_t topic_len;
    uint32_t key_len;
    uint32_t attr_len; /* attributes: repeated [u16 name_len][u16 value_len][name][value] */
    uint32_t payload_len;
    uint8_t qos;
    uint8_t reserved_[3];
    uint64_t ingest_ns; /* when the event entered sluice (wall clock), for latency */
} sl_rec_t;

_Static_assert(sizeof(sl_rec_t) == 32, "record header is 32 bytes");

static inline const char *sl_rec_topic(const sl_rec_t *r) { return (const char *)(r + 1); }
static inline const uint8_t *sl_rec_key(const sl_rec_t *r) { return (const uint8_t *)(r + 1) + r->topic_len; }
static inline const uint8_t *sl_rec_attrs(const sl_rec_t *r) { return sl_rec_key(r) + r->key_len; }
static inline const uint8_t *sl_rec_payload(const sl_rec_t *r) { return sl_rec_attrs(r) + r->attr_len; }
static inline size_t sl_rec_body_len(size_t topic, size_t key, size_t attr, size_t payload)
{
    return sizeof(sl_rec_t) + topic + key + attr + payload;
}

/* Appends attribute name=value to the blob buf[0..cap) at *len (advanced). Returns 0, or SL_ENOSPC (nothing
 * written) when it does not fit or a part passes 65535 bytes. */
int sl_rec_attr_put(uint8_t *buf, size_t cap, size_t *len, const char *name, size_t name_len, const void *val,
                    size_t val_len);

/* Looks up attribute name in r; returns 0 and sets *val and *vlen, or SL_ENOENT. */
int sl_rec_attr_get(const sl_rec_t *r, const char *name, size_t name_len, const uint8_t **val, size_t *vlen);

/* ---- channels ----------------------------------------------------------------------------------- */

typedef struct sl_chan_s sl_chan_t;

/*
 * Creates a channel of capacity bytes (rounded up to a power of two, at least 4 KiB) in a new memfd named
 * name, mapped shared. The largest record is capacity / 2, so an empty ring always has room for one.
 * Returns 0 and *out (free with sl_chan_destroy), or a negative SL_E* code. Any process; the handle and
 * the mapping are inherited by children forked afterwards. The channel starts with its own two bells;
 * sl_chan_bind_bells() points its ends at the bells of the instances that use it.
 */
int sl_chan_create(const char *name, size_t capacity, sl_chan_t **out);
void sl_chan_destroy(sl_chan_t *ch);

/*
 * Same, in the file at path (on tmpfs such as /dev/shm it is as fast as memfd), so the channel survives
 * every process that uses it: when the file already holds a valid channel of this capacity, it is
 * recovered as it is (*recovered = true; cursors and unacknowledged records kept, the closed flag
 * cleared); otherwise it is reset. Returns 0 or a negative code. The caller owns the file's name.
 */
int sl_chan_open(const char *path, const char *name, size_t capacity, bool *recovered, sl_chan_t **out);

/* The bell the producer sleeps on (rung by the consumer) and the one the consumer sleeps on. */
void sl_chan_bind_bells(sl_chan_t *ch, sl_bell_t *producer_bell, sl_bell_t *consumer_bell);
sl_bell_t *sl_chan_producer_bell(const sl_chan_t *ch);
sl_bell_t *sl_chan_consumer_bell(const sl_chan_t *ch);

size_t sl_chan_capacity(const sl_chan_t *ch);
size_t sl_chan_max_record(const sl_chan_t *ch);
int sl_chan_fd(const sl_chan_t *ch);
const char *sl_chan_name(const sl_chan_t *ch);

/* Producer end. Only the one process that attached as producer calls these. */

/* (Re)attaches as producer: local cursors := published cursors. What a dead predecessor reserved and
 * never published is overwritten. */
void sl_chan_producer_attach(sl_chan_t *ch);

/* Events the producer may still publish: asked - sent (re-reads asked only when the cached grant ran
 * out, unless refresh is set). */
uint64_t sl_chan_grant(sl_chan_t *ch, bool refresh);
/* The same figure, read fresh, without writing the producer's cached state: for a thread of the producer's
 * process that is not the one writing (while that one is known to be idle). */
uint64_t sl_chan_grant_peek(const sl_chan_t *ch);

/*
 * Reserves room for a record whose header plus parts take body_len bytes (sl_rec_body_len()). Returns 0
 * and *rec, with rec->len set and every other header field zeroed, or SL_EAGAIN when the demand or the
 * ring space does not allow it now, or SL_EMSGSIZE when body_len exceeds sl_chan_max_record(). The record
 * is not visible until sl_chan_push() then sl_chan_publish(). At most one reservation is open at a time.
 */
int sl_chan_reserve(sl_chan_t *ch, size_t body_len, sl_rec_t **rec);

/* Same, but allows up to overdraft events past the demand (the ring space limit still holds). The one
 * sanctioned way for sent to pass asked: a source's overflow policy parks the event in hand there. */
int sl_chan_reserve_over(sl_chan_t *ch, size_t body_len, sl_rec_t **rec, uint32_t overdraft);

/* Appends the reserved record to the producer's unpublished batch. */
void sl_chan_push(sl_chan_t *ch);

/*
 * Forwarding whole records already framed (a stage re-emitting its input unchanged): sl_chan_run_room()
 * returns the bytes the producer may append at head in one piece (up to the commit and, since a run is
 * never split, up to the end of the ring) and sets *events to the grant; sl_chan_append_run() copies
 * bytes of back-to-back records (each SL_REC_ALIGN-aligned, as a consumer sees them in its ring) holding
 * events events, within both limits, as one push. No reservation may be open.
 */
uint64_t sl_chan_run_room(sl_chan_t *ch, uint64_t *events);
void sl_chan_append_run(sl_chan_t *ch, const void *recs, uint64_t bytes, uint64_t events);

/* Makes every pushed record visible at once. Rings the consumer's bell (if it sleeps) once at least an
 * eighth of the ring was published since the last ring. Returns the number of events published. */
uint64_t sl_chan_publish(sl_chan_t *ch);

/* sl_chan_publish() once at least a sixteenth of the ring waits pushed and unpublished; else nothing.
 * A stage that emits a long pass calls it after each push, so that its first records do not wait for the
 * end of the pass. Returns the number of events published. */
uint64_t sl_chan_publish_due(sl_chan_t *ch);

/* Rings the consumer's bell (if it sleeps) when anything was published since the last ring. A producer
 * calls it before it goes to sleep or idles, so no published record waits for a batch to fill. */
void sl_chan_kick(sl_chan_t *ch);

/* Marks the stream finished: after the consumer has taken everything published it sees SL_EOF. Publishes
 * pending records first. */
void sl_chan_close(sl_chan_t *ch);

/* Sets the closed flag without publishing anything, for a supervisor whose producer instance is gone
 * for good: the consumer then drains what was published and sees SL_EOF. Any process. */
void sl_chan_mark_closed(sl_chan_t *ch);

/* Bytes the producer may still reserve before it catches up with the consumer's commit (re-reads the
 * commit). A record that would cross the end of the ring also takes the padding to it. */
uint64_t sl_chan_room(sl_chan_t *ch);

/* True when the producer could not proceed for lack of ring space for need bytes, or of demand. */
bool sl_chan_blocked(sl_chan_t *ch, size_t need);
/* True when sl_chan_reserve_over(ch, need, .., overdraft) would succeed now. When the ring is what stops
 * it, asks the consumer to wake this producer once enough is free. */
bool sl_chan_can_reserve(sl_chan_t *ch, size_t need, uint32_t overdraft);

/* Consumer end. Only the one process that attached as consumer calls these. */

/* (Re)attaches as consumer: read := commit, so what a predecessor took and did not acknowledge is
 * delivered again. Returns the number of events that will be delivered again. */
uint64_t sl_chan_consumer_attach(sl_chan_t *ch);

/*
 * Takes the next record after the read cursor. Returns 0 and *rec (valid until committed), SL_EAGAIN when
 * nothing is published beyond read, SL_EOF when the producer closed and everything was taken, or
 * SL_EBADMSG when the framing at read is corrupt (length out of bounds, misaligned, or crossing the end);
 * a corrupt record is reported, never followed: see sl_chan_skip_corrupt().
 */
int sl_chan_next(sl_chan_t *ch, const sl_rec_t **rec);

/* Bytes and events taken so far (cumulative cursors): the values to pass to sl_chan_commit(). */
uint64_t sl_chan_read_pos(const sl_chan_t *ch);
uint64_t sl_chan_read_events(const sl_chan_t *ch);

/* Acknowledges everything up to byte cursor pos, which holds events cumulative events (a boundary
 * previously obtained from sl_chan_read_pos/_events). Frees the space and rings the producer if it
 * sleeps. Committing backwards is a no-op. */
void sl_chan_commit(sl_chan_t *ch, uint64_t pos, uint64_t events);

/* Sets the cumulative demand to asked (never lowered) and rings the producer if it sleeps. */
void sl_chan_ask(sl_chan_t *ch, uint64_t asked);
uint64_t sl_chan_asked(const sl_chan_t *ch);

/* After SL_EBADMSG: gives up everything published so far (read := head), and returns how many bytes were
 * skipped. The caller logs and counts it; there is no way to find the next record boundary safely. */
uint64_t sl_chan_skip_corrupt(sl_chan_t *ch);

/* True when records are published beyond the consumer's read cursor, or the channel was closed. */
bool sl_chan_readable(sl_chan_t *ch);

/* Cursor snapshot for statistics; any process (the master reads these, never the payloads). */
typedef struct sl_chan_stat_s {
    uint64_t head, read, commit, sent, asked, read_events, commit_events;
    bool closed;
} sl_chan_stat_t;
void sl_chan_stat(const sl_chan_t *ch, sl_chan_stat_t *st);

#endif /* SL_BACKPRESSURE_H */
