/*
 * The channel ring: single producer, single consumer, variable-length records in a shared memfd.
 *
 * Layout of the mapping: one page of control block (each group of cursors on its own cache line, written
 * by one side only), then capacity bytes of ring. The cursors are cumulative byte and event counts; the
 * ring offset is cursor & mask. Each side keeps in its process-local handle a cached copy of the peer's
 * cursor (the producer caches commit and asked, the consumer caches head) and re-reads the shared one
 * only when the cached value stops it, so a side touches its peer's cache line about once per batch,
 * not once per record.
 */
#include "backpressure/backpressure.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SL_CHAN_MAGIC UINT64_C(0x736c756963656368) /* "sluicech" */
#define SL_CHAN_VERSION 1u
#define SL_CHAN_CTL_SIZE 4096u
#define SL_CHAN_MIN_CAP 4096u

/*
 * A byte cursor and the event count that goes with it, written together by one 16-byte compare-and-swap
 * (cmpxchg16b): a process killed between two separate stores would otherwise leave them disagreeing, and
 * a successor would resume with its event numbers off (a producer skipping events, a consumer replaying
 * under the wrong numbers). Readers that need one half load it alone.
 */
typedef union sl__pair_u {
    unsigned __int128 both;
    struct {
        _Atomic uint64_t bytes; /* the low half on little-endian machines */
        _Atomic uint64_t events;
    } h;
} sl__pair_t;

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "sl__pair_t assumes little-endian halves");

/* Both halves at one instant. */
static inline void sl__pair_read(sl__pair_t *p, uint64_t *bytes, uint64_t *events)
{
    unsigned __int128 v = __sync_val_compare_and_swap(&p->both, (unsigned __int128)0, (unsigned __int128)0);
    *bytes = (uint64_t)v;
    *events = (uint64_t)(v >> 64);
}

/* Replaces the pair (was_bytes, was_events) by (bytes, events). The caller is the pair's only writer and
 * passes what it last wrote, so one locked instruction does it; the loop only runs when that guess is
 * wrong (never, unless a predecessor's last write was not seen). */
static inline void sl__pair_write(sl__pair_t *p, uint64_t was_bytes, uint64_t was_events, uint64_t bytes,
                                  uint64_t events)
{
    unsigned __int128 want = (unsigned __int128)events << 64 | bytes;
    unsigned __int128 cur = (unsigned __int128)was_events << 64 | was_bytes;
    while (!__sync_bool_compare_and_swap(&p->both, cur, want))
        cur = __sync_val_compare_and_swap(&p->both, (unsigned __int128)0, (unsigned __int128)0);
}

static inline uint64_t sl__pair_bytes(sl__pair_t *p) { return atomic_load_explicit(&p->h.bytes, memory_order_acquire); }
static inline uint64_t sl__pair_events(sl__pair_t *p)
{
    return atomic_load_explicit(&p->h.events, memory_order_acquire);
}

typedef struct sl_chan_ctl_s {
    /* Written once at creation. */
    uint64_t magic;
    uint32_t version;
    uint32_t ctl_size;
    uint64_t capacity;
    uint64_t max_record;
    char name[32];
    /* Producer: published bytes (head) and events (sent), end of stream. */
    _Alignas(SL_CACHELINE) sl__pair_t pub;
    _Atomic uint32_t closed;
    _Atomic uint32_t producer_gen;
    /* The commit level the producer waits for when the ring is full: a consumer rings only once that
     * much is free, so a blocked producer wakes to write a large batch instead of ping-ponging one
     * record at a time (the same hysteresis as a pipe's or socket's low-water mark). */
    _Atomic uint64_t room_wanted;
    /* Consumer: taken (for statistics and redelivery counts only). */
    _Alignas(SL_CACHELINE) _Atomic uint64_t read;
    _Atomic uint64_t read_events;
    /* Consumer: acknowledged bytes (commit) and events; the producer frees space up to here. */
    _Alignas(SL_CACHELINE) sl__pair_t ack;
    _Atomic uint32_t consumer_gen;
    /* Consumer: cumulative demand. */
    _Alignas(SL_CACHELINE) _Atomic uint64_t asked;
    /* Bells used when the channel is not bound to instances' bells (tests, benchmarks). */
    sl_bell_t own_bells[2];
} sl_chan_ctl_t;

_Static_assert(sizeof(sl_chan_ctl_t) <= SL_CHAN_CTL_SIZE, "control block fits its page");

struct sl_chan_s {
    sl_chan_ctl_t *ctl;
    uint8_t *data;
    uint64_t cap, mask, max_rec;
    size_t map_len;
    int fd;
    bool in_memory; /* a memfd (sl_chan_create), not a channel file */
    sl_bell_t *pbell, *cbell;
    /* Producer end, process-local. */
    uint64_t p_head, p_sent; /* including pushed, unpublished records */
    uint64_t p_limit;        /* cached commit + cap */
    uint64_t p_asked;        /* cached asked */
    uint64_t p_res_need;     /* aligned size of the open reservation, 0 if none */
    uint64_t p_rung;         /* head when the consumer's bell was last rung */
    uint64_t p_pub_sent;     /* sent as last published */
    uint64_t p_pub_head;     /* head as last published */
    /* Consumer end, process-local. */
    uint64_t c_read, c_read_events;
    uint64_t c_head;                    /* cached head */
    uint64_t c_commit, c_commit_events; /* the pair as last written */
};

static uint64_t sl__pow2(uint64_t v)
{
    uint64_t p = SL_CHAN_MIN_CAP;
    while (p < v)
        p <<= 1;
    return p;
}

/* True when the mapped control block is a channel of this version and capacity: one to recover. */
static bool sl__chan_valid(const sl_chan_ctl_t *c, uint64_t cap)
{
    return c->magic == SL_CHAN_MAGIC && c->version == SL_CHAN_VERSION && c->ctl_size == SL_CHAN_CTL_SIZE &&
           c->capacity == cap && c->max_record == cap / 2;
}

/*
 * Maps fd (sized for cap) into a new handle. With recover, a valid control block is kept as it is (what
 * the channel held survives: cursors, records) and *recovered says so; otherwise the file is reset.
 * Takes fd over, also on failure.
 */
static int sl__chan_map(int fd, const char *name, uint64_t cap, bool recover, bool *recovered, sl_chan_t **out)
{
    sl_chan_t *ch = calloc(1, sizeof *ch);
    size_t len = SL_CHAN_CTL_SIZE + cap;
    struct stat st;
    bool keep = recover && fstat(fd, &st) == 0 && (uint64_t)st.st_size == len;
    int err = ch == NULL ? SL_ENOMEM : 0;
    if (err == 0 && !keep && (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)len) != 0))
        err = -errno;
    void *p = err == 0 ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
    if (err == 0 && p == MAP_FAILED)
        err = -errno;
    if (err != 0) {
        close(fd);
        free(ch);
        return err;
    }
    ch->fd = fd;
    ch->map_len = len;
    ch->ctl = p;
    ch->data = (uint8_t *)p + SL_CHAN_CTL_SIZE;
    ch->cap = cap;
    ch->mask = cap - 1;
    ch->max_rec = cap / 2;
    sl_chan_ctl_t *c = ch->ctl;
    keep = keep && sl__chan_valid(c, cap);
    if (!keep) {
        memset(c, 0, sizeof *c);
        c->magic = SL_CHAN_MAGIC;
        c->version = SL_CHAN_VERSION;
        c->ctl_size = SL_CHAN_CTL_SIZE;
        c->capacity = cap;
        c->max_record = ch->max_rec;
    } else {
        /* What the dead processes left: the stream goes on (a new producer runs), nobody sleeps, and what
         * was taken and not acknowledged is delivered again. */
        atomic_store(&c->closed, 0);
        atomic_store(&c->room_wanted, 0);
        atomic_store(&c->own_bells[0].sleeping, 0);
        atomic_store(&c->own_bells[1].sleeping, 0);
    }
    if (recovered != NULL)
        *recovered = keep;
    snprintf(c->name, sizeof c->name, "%s", name ? name : "");
    ch->pbell = &c->own_bells[0];
    ch->cbell = &c->own_bells[1];
    ch->p_limit = cap;
    *out = ch;
    return 0;
}

int sl_chan_create(const char *name, size_t capacity, sl_chan_t **out)
{
    assert(out != NULL);
    uint64_t cap = sl__pow2(capacity);
    if (cap > (UINT64_C(1) << 40))
        return SL_EINVAL;
    int fd = memfd_create(name ? name : "sluice-chan", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = sl__chan_map(fd, name, cap, false, NULL, out);
    if (rc == 0)
        (*out)->in_memory = true;
    return rc;
}

int sl_chan_open(const char *path, const char *name, size_t capacity, bool *recovered, sl_chan_t **out)
{
    assert(out != NULL && recovered != NULL);
    uint64_t cap = sl__pow2(capacity);
    if (cap > (UINT64_C(1) << 40))
        return SL_EINVAL;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    return sl__chan_map(fd, name, cap, true, recovered, out);
}

void sl_chan_destroy(sl_chan_t *ch)
{
    if (ch == NULL)
        return;
    munmap(ch->ctl, ch->map_len);
    close(ch->fd);
    free(ch);
}

void sl_chan_bind_bells(sl_chan_t *ch, sl_bell_t *producer_bell, sl_bell_t *consumer_bell)
{
    ch->pbell = producer_bell ? producer_bell : &ch->ctl->own_bells[0];
    ch->cbell = consumer_bell ? consumer_bell : &ch->ctl->own_bells[1];
}

sl_bell_t *sl_chan_producer_bell(const sl_chan_t *ch) { return ch->pbell; }
sl_bell_t *sl_chan_consumer_bell(const sl_chan_t *ch) { return ch->cbell; }
size_t sl_chan_capacity(const sl_chan_t *ch) { return ch->cap; }
size_t sl_chan_max_record(const sl_chan_t *ch) { return ch->max_rec; }
int sl_chan_fd(const sl_chan_t *ch) { return ch->fd; }
const char *sl_chan_name(const sl_chan_t *ch) { return ch->ctl->name; }

/*
 * Enters the whole ring in this process's page tables, writable, at once (each process has its own: a
 * child does not inherit them for a shared mapping). Otherwise the first lap faults each 4 KiB page in,
 * in the producer and again in the consumer; a fault costs ~12 us on a paravirtual VM (its shadow page
 * tables), here 2,300 of them, ~30 ms, in the first second of a generator's 8 MiB ring, and the same
 * again after every restart. MADV_POPULATE_WRITE costs ~1.5 us a page for the first process, ~0.2 us for
 * the second. Only for a channel in memory: on a channel file it would allocate every block of the file.
 * Best effort: before Linux 5.14 the call fails and the pages fault in as before.
 */
static void sl__chan_populate(const sl_chan_t *ch)
{
#ifdef MADV_POPULATE_WRITE
    if (ch->in_memory)
        (void)madvise(ch->ctl, ch->map_len, MADV_POPULATE_WRITE);
#else
    (void)ch;
#endif
}

/* ---- producer ------------------------------------------------------------------------------------ */

void sl_chan_producer_attach(sl_chan_t *ch)
{
    sl__chan_populate(ch);
    sl_chan_ctl_t *c = ch->ctl;
    sl__pair_read(&c->pub, &ch->p_head, &ch->p_sent);
    ch->p_pub_sent = ch->p_sent;
    ch->p_pub_head = ch->p_head;
    ch->p_limit = sl__pair_bytes(&c->ack) + ch->cap;
    ch->p_asked = atomic_load_explicit(&c->asked, memory_order_acquire);
    ch->p_res_need = 0;
    ch->p_rung = 0; /* ring at the first opportunity: the consumer may sleep on what the predecessor left */
    atomic_fetch_add_explicit(&c->producer_gen, 1, memory_order_relaxed);
}

uint64_t sl_chan_grant(sl_chan_t *ch, bool refresh)
{
    if (refresh || ch->p_sent >= ch->p_asked)
        ch->p_asked = atomic_load_explicit(&ch->ctl->asked, memory_order_acquire);
    return ch->p_asked > ch->p_sent ? ch->p_asked - ch->p_sent : 0;
}

uint64_t sl_chan_grant_peek(const sl_chan_t *ch)
{
    uint64_t asked = atomic_load_explicit(&ch->ctl->asked, memory_order_acquire);
    return asked > ch->p_sent ? asked - ch->p_sent : 0;
}

/* Bytes a record of aligned size need takes at p_head, counting the padding to the end when it would
 * cross the end of the ring. */
static inline uint64_t sl__chan_span(const sl_chan_t *ch, uint64_t need)
{
    uint64_t tail = ch->cap - (ch->p_head & ch->mask);
    return need <= tail ? need : tail + need;
}

/* Asks to be woken when a quarter of the ring (or span, if larger) is free; never past what is published,
 * so a consumer that commits everything always wakes us. */
static void sl__chan_want_room(sl_chan_t *ch, uint64_t span)
{
    uint64_t want = ch->p_head + SL_MAX(span, ch->cap / 4) - ch->cap;
    uint64_t published = sl__pair_bytes(&ch->ctl->pub);
    atomic_store_explicit(&ch->ctl->room_wanted, SL_MIN(want, published), memory_order_relaxed);
}

/* How far ahead of the record being written the producer asks for the ring's cache lines (bytes). */
#define SL_CHAN_PREFETCH_AHEAD 1024u

/*
 * Asks for the cache lines of ring bytes [from, from + len) for writing, as far as the room known to be
 * free goes. The consumer's core read those lines last and holds them: a store that misses waits ~100 ns
 * for them, and the store buffer drains in order, so every later load of a just-stored byte (the
 * generator's template after rewriting its fields) waited with it. Asked a few records ahead, the lines
 * are here when the stores come: generator -> null, 2M events, 0.28 -> 0.19 s and 0.26 -> 0.18 s of CPU;
 * generator -> kafka 8% less CPU (medians of 5 and 3 alternated runs, 2026-11-26). On x86-64 PREFETCHW
 * (a hint: an older CPU without it executes a no-op).
 */
static inline void sl__chan_prefetch_room(const sl_chan_t *ch, uint64_t from, uint64_t len)
{
    for (uint64_t a = from & ~(uint64_t)63; a < from + len && a + 64 <= ch->p_limit; a += 64) {
#if defined(__x86_64__)
        __asm__ volatile("prefetchw %0" ::"m"(ch->data[a & ch->mask]));
#else
        __builtin_prefetch(&ch->data[a & ch->mask], 1, 3);
#endif
    }
}

int sl_chan_reserve(sl_chan_t *ch, size_t body_len, sl_rec_t **rec)
{
    return sl_chan_reserve_over(ch, body_len, rec, 0);
}

int sl_chan_reserve_over(sl_chan_t *ch, size_t body_len, sl_rec_t **rec, uint32_t overdraft)
{
    if (SL_UNLIKELY(body_len > ch->max_rec || body_len < sizeof(sl_rec_t)))
        return body_len < sizeof(sl_rec_t) ? SL_EINVAL : SL_EMSGSIZE;
    if (SL_UNLIKELY(ch->p_sent >= ch->p_asked + overdraft)) {
        ch->p_asked = atomic_load_explicit(&ch->ctl->asked, memory_order_acquire);
        if (ch->p_sent >= ch->p_asked + overdraft)
            return SL_EAGAIN;
    }
    uint64_t need = SL_ALIGN_UP((uint64_t)body_len, SL_REC_ALIGN);
    uint64_t span = sl__chan_span(ch, need);
    if (SL_UNLIKELY(ch->p_head + span > ch->p_limit)) {
        ch->p_limit = sl__pair_bytes(&ch->ctl->ack) + ch->cap;
        if (ch->p_head + span > ch->p_limit) {
            sl__chan_want_room(ch, span);
            return SL_EAGAIN;
        }
    }
    if (span != need) {
        /* Fill the tail with a padding record; the consumer skips it. It becomes visible with the next
         * publish, together with the record that caused it. */
        sl_rec_t *pad = (sl_rec_t *)(ch->data + (ch->p_head & ch->mask));
        pad->len = (uint32_t)(span - need);
        pad->flags = SL_REC_PAD;
        ch->p_head += span - need;
    }
    sl_rec_t *r = (sl_rec_t *)(ch->data + (ch->p_head & ch->mask));
    sl__chan_prefetch_room(ch, ch->p_head + need + SL_CHAN_PREFETCH_AHEAD, need);
    memset(r, 0, sizeof *r);
    r->len = (uint32_t)body_len;
    ch->p_res_need = need;
    *rec = r;
    return 0;
}

void sl_chan_push(sl_chan_t *ch)
{
    assert(ch->p_res_need != 0);
    ch->p_head += ch->p_res_need;
    ch->p_sent++;
    ch->p_res_need = 0;
}

uint64_t sl_chan_run_room(sl_chan_t *ch, uint64_t *events)
{
    *events = sl_chan_grant(ch, true);
    return SL_MIN(sl_chan_room(ch), ch->cap - (ch->p_head & ch->mask));
}

void sl_chan_append_run(sl_chan_t *ch, const void *recs, uint64_t bytes, uint64_t events)
{
    assert(ch->p_res_need == 0 && ch->p_sent + events <= ch->p_asked && ch->p_head + bytes <= ch->p_limit &&
           (ch->p_head & ch->mask) + bytes <= ch->cap);
    memcpy(ch->data + (ch->p_head & ch->mask), recs, bytes);
    ch->p_head += bytes;
    ch->p_sent += events;
}

uint64_t sl_chan_publish(sl_chan_t *ch)
{
    sl_chan_ctl_t *c = ch->ctl;
    uint64_t before = ch->p_pub_sent;
    if (ch->p_sent == before && ch->p_head == ch->p_pub_head)
        return 0;
    sl__pair_write(&c->pub, ch->p_pub_head, before, ch->p_head, ch->p_sent);
    ch->p_pub_sent = ch->p_sent;
    ch->p_pub_head = ch->p_head;
    /* Under load, wake a sleeping consumer only once a good batch is waiting: it then takes hundreds of
     * records per wake-up instead of one publish's worth. The producer kicks before it sleeps itself
     * (sl_chan_kick), so a light load is delivered at once. */
    if (ch->p_head - ch->p_rung >= ch->cap / 8) {
        ch->p_rung = ch->p_head;
        sl_bell_ring(ch->cbell);
    }
    return ch->p_sent - before;
}

uint64_t sl_chan_publish_due(sl_chan_t *ch)
{
    return ch->p_head - ch->p_pub_head >= ch->cap / 16 ? sl_chan_publish(ch) : 0;
}

void sl_chan_kick(sl_chan_t *ch)
{
    uint64_t head = ch->p_pub_head;
    if (ch->p_rung != head) {
        ch->p_rung = head;
        sl_bell_ring(ch->cbell);
    }
}

void sl_chan_close(sl_chan_t *ch)
{
    sl_chan_publish(ch);
    atomic_store_explicit(&ch->ctl->closed, 1, memory_order_release);
    sl_bell_ring(ch->cbell);
}

void sl_chan_mark_closed(sl_chan_t *ch)
{
    atomic_store_explicit(&ch->ctl->closed, 1, memory_order_release);
    sl_bell_ring(ch->cbell);
}

uint64_t sl_chan_room(sl_chan_t *ch)
{
    ch->p_limit = sl__pair_bytes(&ch->ctl->ack) + ch->cap;
    return ch->p_limit - ch->p_head;
}

bool sl_chan_blocked(sl_chan_t *ch, size_t need) { return !sl_chan_can_reserve(ch, need, 0); }

bool sl_chan_can_reserve(sl_chan_t *ch, size_t need, uint32_t overdraft)
{
    ch->p_asked = atomic_load_explicit(&ch->ctl->asked, memory_order_acquire);
    if (ch->p_sent >= ch->p_asked + overdraft)
        return false;
    ch->p_limit = sl__pair_bytes(&ch->ctl->ack) + ch->cap;
    uint64_t span = sl__chan_span(ch, SL_ALIGN_UP((uint64_t)need, SL_REC_ALIGN));
    if (ch->p_head + span <= ch->p_limit)
        return true;
    sl__chan_want_room(ch, span);
    return false;
}

/* ---- consumer ------------------------------------------------------------------------------------ */

uint64_t sl_chan_consumer_attach(sl_chan_t *ch)
{
    sl__chan_populate(ch);
    sl_chan_ctl_t *c = ch->ctl;
    uint64_t taken = atomic_load_explicit(&c->read_events, memory_order_relaxed);
    sl__pair_read(&c->ack, &ch->c_read, &ch->c_read_events);
    ch->c_commit = ch->c_read;
    ch->c_commit_events = ch->c_read_events;
    ch->c_head = sl__pair_bytes(&c->pub);
    atomic_store_explicit(&c->read, ch->c_read, memory_order_relaxed);
    atomic_store_explicit(&c->read_events, ch->c_read_events, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->consumer_gen, 1, memory_order_relaxed);
    return taken > ch->c_read_events ? taken - ch->c_read_events : 0;
}

/* Checks the framing of the record at offset off; 0 when it may be trusted. */
static int sl__chan_check(const sl_chan_t *ch, const sl_rec_t *r, uint64_t off, uint64_t avail)
{
    uint64_t len = r->len;
    if (r->flags & SL_REC_PAD)
        return (len == ch->cap - off && len <= avail) ? 0 : SL_EBADMSG;
    if (len < sizeof(sl_rec_t) || len > ch->max_rec)
        return SL_EBADMSG;
    uint64_t need = SL_ALIGN_UP(len, SL_REC_ALIGN);
    if (off + need > ch->cap || need > avail)
        return SL_EBADMSG;
    uint64_t parts = (uint64_t)r->topic_len + r->key_len + r->attr_len + r->payload_len;
    return parts + sizeof(sl_rec_t) == len ? 0 : SL_EBADMSG;
}

int sl_chan_next(sl_chan_t *ch, const sl_rec_t **rec)
{
    sl_chan_ctl_t *c = ch->ctl;
    for (;;) {
        if (ch->c_read == ch->c_head) {
            ch->c_head = sl__pair_bytes(&c->pub);
            if (ch->c_read == ch->c_head) {
                if (!atomic_load_explicit(&c->closed, memory_order_acquire))
                    return SL_EAGAIN;
                ch->c_head = sl__pair_bytes(&c->pub);
                if (ch->c_read == ch->c_head)
                    return SL_EOF;
            }
        }
        uint64_t off = ch->c_read & ch->mask;
        const sl_rec_t *r = (const sl_rec_t *)(ch->data + off);
        if (SL_UNLIKELY(sl__chan_check(ch, r, off, ch->c_head - ch->c_read) != 0))
            return SL_EBADMSG;
        if (r->flags & SL_REC_PAD) {
            ch->c_read += r->len;
            continue;
        }
        ch->c_read += SL_ALIGN_UP((uint64_t)r->len, SL_REC_ALIGN);
        ch->c_read_events++;
        /* A store to a line only this side writes: it stays in this core's cache. */
        atomic_store_explicit(&c->read, ch->c_read, memory_order_relaxed);
        atomic_store_explicit(&c->read_events, ch->c_read_events, memory_order_relaxed);
        *rec = r;
        return 0;
    }
}

uint64_t sl_chan_read_pos(const sl_chan_t *ch) { return ch->c_read; }
uint64_t sl_chan_read_events(const sl_chan_t *ch) { return ch->c_read_events; }

void sl_chan_commit(sl_chan_t *ch, uint64_t pos, uint64_t events)
{
    sl_chan_ctl_t *c = ch->ctl;
    assert(pos <= ch->c_read && events <= ch->c_read_events);
    if (pos <= ch->c_commit)
        return;
    sl__pair_write(&c->ack, ch->c_commit, ch->c_commit_events, pos, events);
    ch->c_commit = pos;
    ch->c_commit_events = events;
    /* Dekker again: the producer stores room_wanted, announces its sleep (seq_cst) and re-reads commit;
     * we store commit, fence, and read room_wanted. Either we see its new room_wanted, or it sees our
     * commit and does not sleep. A wish we ring for is consumed (unless the producer has since made
     * another), so a producer that sleeps for demand, not room, is not woken by every later commit. */
    atomic_thread_fence(memory_order_seq_cst);
    uint64_t want = atomic_load_explicit(&c->room_wanted, memory_order_relaxed);
    if (pos >= want) {
        atomic_compare_exchange_strong_explicit(&c->room_wanted, &want, UINT64_MAX, memory_order_relaxed,
                                                memory_order_relaxed);
        sl_bell_ring(ch->pbell);
    }
}

void sl_chan_ask(sl_chan_t *ch, uint64_t asked)
{
    sl_chan_ctl_t *c = ch->ctl;
    if (asked <= atomic_load_explicit(&c->asked, memory_order_relaxed))
        return;
    atomic_store_explicit(&c->asked, asked, memory_order_release);
    sl_bell_ring(ch->pbell);
}

uint64_t sl_chan_asked(const sl_chan_t *ch) { return atomic_load_explicit(&ch->ctl->asked, memory_order_acquire); }

uint64_t sl_chan_skip_corrupt(sl_chan_t *ch)
{
    uint64_t head, sent;
    sl__pair_read(&ch->ctl->pub, &head, &sent);
    uint64_t skipped = head - ch->c_read;
    /* The events count cannot be known for bytes that cannot be parsed; take it from sent. */
    ch->c_read = head;
    ch->c_head = head;
    ch->c_read_events = sent;
    return skipped;
}

bool sl_chan_readable(sl_chan_t *ch)
{
    if (ch->c_read != ch->c_head)
        return true;
    ch->c_head = sl__pair_bytes(&ch->ctl->pub);
    return ch->c_read != ch->c_head || atomic_load_explicit(&ch->ctl->closed, memory_order_acquire);
}

void sl_chan_stat(const sl_chan_t *ch, sl_chan_stat_t *st)
{
    const sl_chan_ctl_t *c = ch->ctl;
    sl__pair_read((sl__pair_t *)&c->pub, &st->head, &st->sent);
    st->read = atomic_load_explicit(&c->read, memory_order_relaxed);
    st->read_events = atomic_load_explicit(&c->read_events, memory_order_relaxed);
    sl__pair_read((sl__pair_t *)&c->ack, &st->commit, &st->commit_events);
    st->asked = atomic_load_explicit(&c->asked, memory_order_relaxed);
    st->closed = atomic_load_explicit(&c->closed, memory_order_relaxed) != 0;
}

int sl_rec_attr_put(uint8_t *buf, size_t cap, size_t *len, const char *name, size_t name_len, const void *val,
                    size_t val_len)
{
    if (name_len > UINT16_MAX || val_len > UINT16_MAX || *len + 4 + name_len + val_len > cap)
        return SL_ENOSPC;
    uint16_t n16 = (uint16_t)name_len, v16 = (uint16_t)val_len;
    memcpy(buf + *len, &n16, 2);
    memcpy(buf + *len + 2, &v16, 2);
    memcpy(buf + *len + 4, name, name_len);
    if (val_len)
        memcpy(buf + *len + 4 + name_len, val, val_len);
    *len += 4 + name_len + val_len;
    return 0;
}

int sl_rec_attr_get(const sl_rec_t *r, const char *name, size_t name_len, const uint8_t **val, size_t *vlen)
{
    const uint8_t *p = sl_rec_attrs(r), *end = p + r->attr_len;
    while (end - p >= 4) {
        uint16_t nl, vl;
        memcpy(&nl, p, 2);
        memcpy(&vl, p + 2, 2);
        p += 4;
        if ((size_t)(end - p) < (size_t)nl + vl)
            return SL_EBADMSG;
        if (nl == name_len && memcmp(p, name, nl) == 0) {
            *val = p + nl;
            *vlen = vl;
            return 0;
        }
        p += nl + vl;
    }
    return SL_ENOENT;
}
