/*
 * The `null` sink: counts and discards. With verify_sequence it also checks, per device (the record key),
 * that the "seq" field of the JSON payload increases by exactly one, and reports what was lost (gaps),
 * delivered twice (seq below the expected one) and unparseable, at the end and in its counters.
 *
 * The per-device table is open addressing keyed by the device id; it doubles when half full, so its
 * allocations are amortised to nothing per event. The check is exact for one ordered stream per device:
 * with concurrency > 1, feed the sink with `dispatcher: partition` on the key.
 *
 * With verify_state: PATH the table and the totals live in a file mapped shared (PATH.<instance>, a fixed
 * table of SL_NULL_FILE_SLOTS devices), so they survive a crash of the sink: the events its successor
 * receives again from the last commit then count as duplicates, and a gap anywhere still counts as lost.
 * Crash tests that kill the sink itself verify delivery this way. A SIGKILL can land between any two
 * stores, so each event changes one word where it can (a duplicate: `dups`; the next in order: the device's
 * `next`), and the totals are derived at the end: unique = sum(next - gaps), events = unique + dups. A gap
 * is stored before `next`, so a kill between the two can count a real gap twice but never hide one.
 */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sinks/sinks.h"

#define SL_NULL_KEY_MAX 64

typedef struct sl_dev_s {
    uint8_t key_len;
    char key[SL_NULL_KEY_MAX];
    uint64_t next; /* expected seq */
    uint64_t gaps; /* seqs below next never seen */
} sl_dev_t;

#define SL_NULL_FILE_SLOTS 65536u

typedef struct sl_null_tot_s {
    uint64_t events, dups, bad, used; /* events: without verify_sequence only */
} sl_null_tot_t;

typedef struct sl_null_s {
    bool verify;
    sl_dev_t *tab;
    size_t cap;
    sl_null_tot_t *t; /* &mem, or the head of the state file */
    sl_null_tot_t mem;
    void *map; /* the state file's mapping, or NULL */
    size_t map_len;
} sl_null_t;

/* Maps PATH.<instance>: totals, then the fixed device table. */
static int sl__null_map(sl_ctx_t *ctx, sl_null_t *s, const char *path)
{
    char file[4096];
    snprintf(file, sizeof file, "%s.%u", path, sl_ctx_instance(ctx));
    int fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    s->map_len = sizeof(sl_null_tot_t) + SL_NULL_FILE_SLOTS * sizeof(sl_dev_t);
    if (fd < 0 || ftruncate(fd, (off_t)s->map_len) != 0) {
        sl_log(SL_LOG_ERROR, sl_ctx_name(ctx), -errno, "verify_state: cannot open %s", file);
        if (fd >= 0)
            close(fd);
        return SL_EIO;
    }
    void *p = mmap(NULL, s->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        sl_log(SL_LOG_ERROR, sl_ctx_name(ctx), -errno, "mmap(%zu) of %s failed", s->map_len, file);
        return SL_EIO;
    }
    s->map = p;
    s->t = p;
    s->tab = (sl_dev_t *)(s->t + 1);
    s->cap = SL_NULL_FILE_SLOTS;
    return 0;
}

static int sl__null_init(sl_ctx_t *ctx, void **state)
{
    sl_null_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return SL_ENOMEM;
    s->verify = sl_conf_bool(sl_ctx_node(ctx), "verify_sequence");
    s->t = &s->mem;
    const char *path = sl_conf_str(sl_ctx_node(ctx), "verify_state");
    if (s->verify && path[0] != 0 && sl__null_map(ctx, s, path) != 0) {
        free(s);
        return SL_EIO;
    }
    *state = s;
    return 0;
}

static sl_dev_t *sl__null_slot(sl_dev_t *tab, size_t cap, const uint8_t *key, size_t len)
{
    size_t i = sl_hash(key, len) & (cap - 1);
    while (tab[i].key_len && !(tab[i].key_len == len && memcmp(tab[i].key, key, len) == 0))
        i = (i + 1) & (cap - 1);
    return &tab[i];
}

static int sl__null_grow(sl_null_t *s)
{
    size_t cap = s->cap ? s->cap * 2 : 1024;
    sl_dev_t *tab = calloc(cap, sizeof *tab);
    if (tab == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < s->cap; i++)
        if (s->tab[i].key_len)
            *sl__null_slot(tab, cap, (const uint8_t *)s->tab[i].key, s->tab[i].key_len) = s->tab[i];
    free(s->tab);
    s->tab = tab;
    s->cap = cap;
    return 0;
}

int sl_sink_null_seq(const void *payload, size_t len, uint64_t *seq)
{
    const char *p = memmem(payload, len, "\"seq\":", 6);
    if (p == NULL)
        return SL_EBADMSG;
    p += 6;
    const char *end = (const char *)payload + len;
    uint64_t v = 0;
    size_t digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 20) {
        v = v * 10 + (uint64_t)(*p++ - '0');
        digits++;
    }
    if (digits == 0)
        return SL_EBADMSG;
    *seq = v;
    return 0;
}

static int sl__null_check(sl_null_t *s, const sl_event_t *ev)
{
    uint64_t seq;
    sl_null_tot_t *t = s->t;
    if (ev->key_len == 0 || ev->key_len > SL_NULL_KEY_MAX ||
        sl_sink_null_seq(ev->payload, ev->payload_len, &seq) != 0) {
        t->bad++;
        return 0;
    }
    if ((t->used + 1) * 2 > s->cap) {
        if (s->map != NULL) { /* the file's table is fixed: count, never overflow it */
            t->bad++;
            return 0;
        }
        if (sl__null_grow(s) != 0)
            return SL_ENOMEM;
    }
    sl_dev_t *d = sl__null_slot(s->tab, s->cap, ev->key, ev->key_len);
    if (d->key_len == 0) {
        memcpy(d->key, ev->key, ev->key_len);
        d->next = d->gaps = 0;
        atomic_signal_fence(memory_order_seq_cst); /* the key before the length that claims the slot */
        d->key_len = (uint8_t)ev->key_len;
        t->used++; /* sizing only: the report counts the table */
    }
    if (seq < d->next) {
        t->dups++;
        return 0;
    }
    if (seq > d->next)
        d->gaps += seq - d->next;
    atomic_signal_fence(memory_order_seq_cst); /* the gap before the `next` that settles the event */
    d->next = seq + 1;
    return 0;
}

static int sl__null_events(sl_ctx_t *ctx, void *state, const sl_event_t *evs, size_t n)
{
    sl_null_t *s = state;
    if (!s->verify) {
        s->t->events += n;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = sl__null_check(s, &evs[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void sl__null_terminate(sl_ctx_t *ctx, void *state, int reason)
{
    sl_null_t *s = state;
    if (s == NULL)
        return;
    const sl_null_tot_t *t = s->t;
    if (!s->verify) {
        sl_log(SL_LOG_INFO, sl_ctx_name(ctx), 0, "took %llu events", (unsigned long long)t->events);
    } else {
        uint64_t unique = 0, lost = 0, devices = 0;
        for (size_t i = 0; i < s->cap; i++)
            if (s->tab[i].key_len) {
                devices++;
                unique += s->tab[i].next - s->tab[i].gaps;
                lost += s->tab[i].gaps;
            }
        sl_log(SL_LOG_INFO, sl_ctx_name(ctx), 0,
               "verify: %llu events from %llu devices; lost %llu, duplicates %llu, unparseable %llu",
               (unsigned long long)(unique + t->dups + t->bad), (unsigned long long)devices, (unsigned long long)lost,
               (unsigned long long)t->dups, (unsigned long long)t->bad);
    }
    if (s->map != NULL)
        munmap(s->map, s->map_len);
    else
        free(s->tab);
    free(s);
}

const sl_stage_ops_t sl_sink_null_ops = {
    .type = "null",
    .kind = SL_KIND_CONSUMER,
    .init = sl__null_init,
    .handle_events = sl__null_events,
    .terminate = sl__null_terminate,
};
