/*
 * Dispatchers: how one producer instance spreads its events over the instances of each downstream node.
 *
 * Every downstream node gets every event (a tee); within a node, the node's dispatcher picks the
 * instance(s):
 *  - demand: the instance with the largest outstanding demand takes events until that grant is used up,
 *    then the largest is looked up again (GenStage's DemandDispatcher);
 *  - broadcast: every instance gets every event, so the group moves at the pace of the slowest;
 *  - partition: hash(key or attribute) % n, so the order per key is kept.
 * An event that finds no demand or no ring space goes to the instance's stash, in order; while the stash
 * holds anything, every later event goes behind it, and the worker takes no new input. Order per channel
 * is therefore the emission order.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "stages/stages_int.h"

typedef struct sl_stash_hdr_s {
    uint32_t group;
    uint32_t chan; /* or SL_STASH_ANY: pick by demand when flushed */
    uint64_t size; /* of the entry, header included, aligned */
} sl_stash_hdr_t;

int sl__stash_init(sl_stash_t *st, size_t cap)
{
    memset(st, 0, sizeof *st);
    st->buf = malloc(cap);
    if (st->buf == NULL)
        return SL_ENOMEM;
    st->cap = cap;
    return 0;
}

void sl__stash_free(sl_stash_t *st)
{
    free(st->buf);
    memset(st, 0, sizeof *st);
}

static size_t sl__em_len(const sl_emit_t *em, const sl_rec_t *raw)
{
    if (raw != NULL)
        return raw->len;
    return sl_rec_body_len(em->topic_len, em->key_len, em->attr_len, em->payload_len);
}

/* Lays the event out as a record at r (whose len is already set): raw copied whole (em, when given, adds
 * its flags), or em's parts. */
static void sl__fill(sl_rec_t *r, const sl_emit_t *em, const sl_rec_t *raw)
{
    if (raw != NULL) {
        memcpy(r, raw, raw->len);
        if (em != NULL)
            r->flags |= em->flags;
        return;
    }
    r->flags = em->flags;
    r->qos = em->qos;
    r->topic_len = (uint16_t)em->topic_len;
    r->key_len = em->key_len;
    r->attr_len = em->attr_len;
    r->payload_len = em->payload_len;
    r->ingest_ns = em->ingest_ns;
    uint8_t *p = (uint8_t *)(r + 1);
    if (em->topic_len)
        memcpy(p, em->topic, em->topic_len);
    p += em->topic_len;
    if (em->key_len)
        memcpy(p, em->key, em->key_len);
    p += em->key_len;
    if (em->attr_len)
        memcpy(p, em->attrs, em->attr_len);
    p += em->attr_len;
    if (em->payload_len)
        memcpy(p, em->payload, em->payload_len);
}

static int sl__write(sl_chan_t *ch, const sl_emit_t *em, const sl_rec_t *raw, size_t len)
{
    sl_rec_t *r;
    int rc = sl_chan_reserve(ch, len, &r);
    if (rc != 0)
        return rc;
    sl__fill(r, em, raw);
    sl_chan_push(ch);
    sl_chan_publish_due(ch); /* a long pass shows its first records before its end */
    return 0;
}

static int sl__stash_put(sl_stash_t *st, uint32_t group, uint32_t chan, const sl_emit_t *em, const sl_rec_t *raw,
                         size_t len)
{
    uint64_t size = sizeof(sl_stash_hdr_t) + SL_ALIGN_UP((uint64_t)len, SL_REC_ALIGN);
    if (st->tail + size > st->cap)
        return SL_ENOSPC;
    sl_stash_hdr_t *h = (sl_stash_hdr_t *)(st->buf + st->tail);
    h->group = group;
    h->chan = chan;
    h->size = size;
    sl_rec_t *r = (sl_rec_t *)(h + 1);
    memset(r, 0, sizeof *r);
    r->len = (uint32_t)len;
    sl__fill(r, em, raw);
    st->tail += size;
    st->events++;
    return 0;
}

/* The demand dispatcher's choice: the channel with the largest grant, kept until the grant is used. */
static uint32_t sl__pick_demand_slow(sl_out_group_t *g)
{
    uint64_t best = 0;
    for (uint32_t c = 0; c < g->n; c++) {
        uint64_t gr = sl_chan_grant(g->chans[c], true);
        if (gr > best) {
            best = gr;
            g->cur = c;
        }
    }
    if (best == 0)
        return SL_STASH_ANY;
    g->cur_grant = best - 1;
    return g->cur;
}

/* The common case, inline: the current channel still has grant. */
static inline uint32_t sl__pick_demand(sl_out_group_t *g)
{
    if (SL_LIKELY(g->cur_grant != 0)) {
        g->cur_grant--;
        return g->cur;
    }
    return sl__pick_demand_slow(g);
}

static const uint8_t *sl__attr_find(const uint8_t *p, size_t len, const char *name, size_t nlen, size_t *vlen)
{
    const uint8_t *end = p + len;
    while (end - p >= 4) {
        uint16_t nl, vl;
        memcpy(&nl, p, 2);
        memcpy(&vl, p + 2, 2);
        p += 4;
        if ((size_t)(end - p) < (size_t)nl + vl)
            return NULL;
        if (nl == nlen && memcmp(p, name, nl) == 0) {
            *vlen = vl;
            return p + nl;
        }
        p += nl + vl;
    }
    return NULL;
}

static uint32_t sl__pick_partition(const sl_out_group_t *g, const sl_emit_t *em, const sl_rec_t *raw)
{
    const uint8_t *k;
    size_t klen;
    if (g->by_key) {
        k = raw ? sl_rec_key(raw) : em->key;
        klen = raw ? raw->key_len : em->key_len;
    } else {
        const uint8_t *attrs = raw ? sl_rec_attrs(raw) : em->attrs;
        size_t alen = raw ? raw->attr_len : em->attr_len;
        k = sl__attr_find(attrs, alen, g->attr, g->attr_len, &klen);
        if (k == NULL) /* Events without the attribute all go to one partition, in order. */
            klen = 0;
    }
    return klen ? sl_hash(k, klen) % g->n : 0;
}

/* Delivers to channel c of group gi, or stashes it there; SL_ENOSPC if the stash is full. */
static int sl__deliver(sl_inst_t *inst, sl_stash_t *st, uint32_t gi, uint32_t c, const sl_emit_t *em,
                       const sl_rec_t *raw, size_t len)
{
    sl_out_group_t *g = &inst->out[gi];
    if (c != SL_STASH_ANY && sl__stash_empty(st)) {
        int rc = sl__write(g->chans[c], em, raw, len);
        if (rc == 0)
            return 0;
        assert(rc == SL_EAGAIN);
        if (g->kind == SL_DISP_DEMAND) {
            g->cur_grant = 0;
            c = SL_STASH_ANY;
        }
    }
    return sl__stash_put(st, gi, c, em, raw, len);
}

int sl__out_emit(sl_inst_t *inst, sl_stash_t *st, const sl_emit_t *em, const sl_rec_t *raw, bool dead_letter)
{
    size_t len = sl__em_len(em, raw);
    /* One output channel and nothing stashed: the reservation is the whole check (demand, room, size). */
    if (inst->single != NULL && !dead_letter && sl__stash_empty(st)) {
        sl_rec_t *r;
        if (sl_chan_reserve(inst->single, len, &r) == 0) {
            sl__fill(r, em, raw);
            sl_chan_push(inst->single);
            sl_chan_publish_due(inst->single);
            inst->out[0].cur_grant = 0; /* the demand dispatcher's cached grant is stale now */
            return 0;
        }
    }
    if (SL_UNLIKELY(len > inst->max_record))
        for (uint32_t gi = 0; gi < inst->n_out; gi++)
            if (inst->out[gi].dead_letter == dead_letter && len > sl_chan_max_record(inst->out[gi].chans[0]))
                return SL_EMSGSIZE;
    for (uint32_t gi = 0; gi < inst->n_out; gi++) {
        sl_out_group_t *g = &inst->out[gi];
        int rc = 0;
        if (g->dead_letter != dead_letter)
            continue;
        switch (g->kind) {
        case SL_DISP_DEMAND:
            rc = sl__deliver(inst, st, gi, sl__stash_empty(st) ? sl__pick_demand(g) : SL_STASH_ANY, em, raw, len);
            break;
        case SL_DISP_BROADCAST:
            for (uint32_t c = 0; c < g->n && rc == 0; c++)
                rc = sl__deliver(inst, st, gi, c, em, raw, len);
            break;
        case SL_DISP_PARTITION: rc = sl__deliver(inst, st, gi, sl__pick_partition(g, em, raw), em, raw, len); break;
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

int sl__out_flush_stash(sl_inst_t *inst, sl_stash_t *st)
{
    while (st->head < st->tail) {
        sl_stash_hdr_t *h = (sl_stash_hdr_t *)(st->buf + st->head);
        sl_out_group_t *g = &inst->out[h->group];
        uint32_t c = h->chan == SL_STASH_ANY ? sl__pick_demand(g) : h->chan;
        if (c == SL_STASH_ANY)
            return SL_EAGAIN;
        const sl_rec_t *r = (const sl_rec_t *)(h + 1);
        if (sl__write(g->chans[c], NULL, r, r->len) != 0) {
            if (h->chan == SL_STASH_ANY)
                g->cur_grant = 0;
            return SL_EAGAIN;
        }
        st->head += h->size;
        st->events--;
    }
    st->head = st->tail = 0;
    return 0;
}

static uint64_t sl__out_demand_of(sl_inst_t *inst, bool peek)
{
    uint64_t total = UINT64_MAX;
    for (uint32_t gi = 0; gi < inst->n_out; gi++) {
        sl_out_group_t *g = &inst->out[gi];
        uint64_t sum = 0, mn = UINT64_MAX, mx = 0;
        if (g->dead_letter) /* failures are rare: the dead-letter path does not set the pace */
            continue;
        for (uint32_t c = 0; c < g->n; c++) {
            uint64_t gr = peek ? sl_chan_grant_peek(g->chans[c]) : sl_chan_grant(g->chans[c], true);
            sum += gr;
            mn = SL_MIN(mn, gr);
            mx = SL_MAX(mx, gr);
        }
        uint64_t s = sum;
        if (g->kind == SL_DISP_BROADCAST)
            s = mn;
        else if (g->kind == SL_DISP_PARTITION)
            s = mn ? mn : (mx ? 1 : 0); /* one at a time while some partition has no demand */
        total = SL_MIN(total, s);
    }
    return total;
}

uint64_t sl__out_demand(sl_inst_t *inst) { return sl__out_demand_of(inst, false); }
uint64_t sl__out_demand_peek(sl_inst_t *inst) { return sl__out_demand_of(inst, true); }

uint64_t sl__out_room(sl_inst_t *inst)
{
    uint64_t total = UINT64_MAX;
    for (uint32_t gi = 0; gi < inst->n_out; gi++) {
        sl_out_group_t *g = &inst->out[gi];
        if (g->dead_letter)
            continue;
        uint64_t sum = 0, mn = UINT64_MAX;
        for (uint32_t c = 0; c < g->n; c++) {
            uint64_t r = sl_chan_room(g->chans[c]);
            sum += r;
            mn = SL_MIN(mn, r);
        }
        total = SL_MIN(total, g->kind == SL_DISP_DEMAND ? sum : mn);
    }
    return total;
}

uint64_t sl__out_publish(sl_inst_t *inst)
{
    uint64_t n = 0;
    for (uint32_t gi = 0; gi < inst->n_out; gi++)
        for (uint32_t c = 0; c < inst->out[gi].n; c++)
            n += sl_chan_publish(inst->out[gi].chans[c]);
    return n;
}

bool sl__out_ready(sl_inst_t *inst, const sl_stash_t *st)
{
    if (sl__stash_empty(st))
        return sl__out_demand(inst) > 0;
    const sl_stash_hdr_t *h = (const sl_stash_hdr_t *)(st->buf + st->head);
    const sl_out_group_t *g = &inst->out[h->group];
    const sl_rec_t *r = (const sl_rec_t *)(h + 1);
    if (h->chan != SL_STASH_ANY)
        return !sl_chan_blocked(g->chans[h->chan], r->len);
    for (uint32_t c = 0; c < g->n; c++)
        if (!sl_chan_blocked(g->chans[c], r->len))
            return true;
    return false;
}

void sl__out_close(sl_inst_t *inst)
{
    for (uint32_t gi = 0; gi < inst->n_out; gi++)
        for (uint32_t c = 0; c < inst->out[gi].n; c++)
            sl_chan_close(inst->out[gi].chans[c]);
}

void sl__out_kick(sl_inst_t *inst)
{
    for (uint32_t gi = 0; gi < inst->n_out; gi++)
        for (uint32_t c = 0; c < inst->out[gi].n; c++)
            sl_chan_kick(inst->out[gi].chans[c]);
}

bool sl__out_can_direct(sl_inst_t *inst, size_t need)
{
    for (uint32_t gi = 0; gi < inst->n_out; gi++) {
        const sl_out_group_t *g = &inst->out[gi];
        if (g->dead_letter)
            continue;
        bool all = g->kind == SL_DISP_BROADCAST, ok = all;
        for (uint32_t c = 0; c < g->n; c++) {
            bool can = sl_chan_can_reserve(g->chans[c], need, 0); /* asks for a wake-up when room is short */
            ok = all ? ok && can : ok || can;
        }
        if (!ok)
            return false;
    }
    return true;
}

void sl__out_ring(sl_inst_t *inst)
{
    for (uint32_t gi = 0; gi < inst->n_out; gi++)
        for (uint32_t c = 0; c < inst->out[gi].n; c++)
            sl_bell_ring(sl_chan_consumer_bell(inst->out[gi].chans[c]));
}

/* The channel of group g that takes the event now without a stash, or SL_STASH_ANY. */
static uint32_t sl__direct_target(sl_out_group_t *g, const sl_emit_t *em, size_t len, uint32_t overdraft)
{
    if (g->kind == SL_DISP_PARTITION) {
        uint32_t c = sl__pick_partition(g, em, NULL);
        return sl_chan_can_reserve(g->chans[c], len, overdraft) ? c : SL_STASH_ANY;
    }
    if (g->kind == SL_DISP_BROADCAST) {
        for (uint32_t c = 0; c < g->n; c++)
            if (!sl_chan_can_reserve(g->chans[c], len, overdraft))
                return SL_STASH_ANY;
        return 0;
    }
    uint32_t best = SL_STASH_ANY;
    uint64_t best_grant = 0;
    for (uint32_t c = 0; c < g->n; c++) {
        uint64_t gr = sl_chan_grant(g->chans[c], true) + overdraft;
        if (gr > best_grant && sl_chan_can_reserve(g->chans[c], len, overdraft)) {
            best = c;
            best_grant = gr;
        }
    }
    return best;
}

sl_chan_t *sl__out_single(const sl_inst_t *inst)
{
    uint32_t n = inst->n_out - (inst->n_out > 1 && inst->out[inst->n_out - 1].dead_letter);
    return n == 1 && inst->out[0].n == 1 && !inst->out[0].dead_letter ? inst->out[0].chans[0] : NULL;
}

int sl__out_emit_direct(sl_inst_t *inst, uint32_t *targets, const sl_emit_t *em, uint32_t overdraft)
{
    size_t len = sl__em_len(em, NULL);
    /* One consumer (a source feeding one instance, its dead-letter group aside): the reservation itself is
     * the whole check, on the producer's cached demand and room, which it refreshes only when they run out;
     * the general path below re-reads both for every channel of every event. */
    sl_chan_t *ch = sl__out_single(inst);
    if (ch != NULL) {
        sl_rec_t *r;
        int rc = sl_chan_reserve_over(ch, len, &r, overdraft);
        if (rc != 0)
            return rc == SL_EMSGSIZE ? SL_EMSGSIZE : SL_EAGAIN;
        sl__fill(r, em, NULL);
        sl_chan_push(ch);
        return 0;
    }
    for (uint32_t gi = 0; gi < inst->n_out; gi++) {
        targets[gi] = SL_STASH_ANY;
        if (inst->out[gi].dead_letter)
            continue;
        if (len > sl_chan_max_record(inst->out[gi].chans[0]))
            return SL_EMSGSIZE;
        targets[gi] = sl__direct_target(&inst->out[gi], em, len, overdraft);
        if (targets[gi] == SL_STASH_ANY)
            return SL_EAGAIN;
    }
    /* Every target has room and demand, and only this thread writes: the writes cannot fail. */
    for (uint32_t gi = 0; gi < inst->n_out; gi++) {
        sl_out_group_t *g = &inst->out[gi];
        if (g->dead_letter)
            continue;
        uint32_t first = targets[gi], last = g->kind == SL_DISP_BROADCAST ? g->n : first + 1;
        for (uint32_t c = first; c < last; c++) {
            sl_rec_t *r;
            int rc = sl_chan_reserve_over(g->chans[c], len, &r, overdraft);
            assert(rc == 0);
            (void)rc;
            sl__fill(r, em, NULL);
            sl_chan_push(g->chans[c]);
        }
    }
    return 0;
}
