/*
 * The sequence check over captured telemetry (`sluice verify`, the quickstart's loss = 0): which device
 * sequence numbers are there, which twice, and which are missing.
 *
 * A device is a topic (`sluice gen`, the generator source and the test publishers give each device its own
 * topic); its sequence number is the payload's top-level-looking "seq": N (JSON, also inside a payload made
 * malformed on purpose, which keeps its "seq") or bytes 6..13 of a `sluice gen` binary payload (magic B1 0B).
 * Each device has a bitmap of the numbers seen, so duplicates are exact however records are ordered
 * (files of several instances, redeliveries after a restart). Memory: one bit per number up to the
 * largest seen, per device; numbers past SL_CAP_SEQ_MAX are refused (counted), so hostile input cannot
 * ask for gigabytes.
 */
#include <stdlib.h>
#include <string.h>

#include "ingest/capture/capture.h"

#define SL_CAP_SEQ_MAX (UINT64_C(1) << 28) /* 32 MiB of bitmap for one device at most */

typedef struct sl_seqdev_s {
    uint64_t *bits;
    uint64_t nwords;   /* allocated 64-bit words */
    uint64_t distinct; /* numbers seen at least once */
    uint64_t top;      /* largest number seen + 1; 0 = none */
    uint32_t topic_off, topic_len;
} sl_seqdev_t;

struct sl_cap_seq_s {
    sl_seqdev_t *dev;
    size_t n_dev, cap_dev;
    uint32_t *slots; /* open addressing: device index + 1, 0 = empty */
    size_t n_slots;  /* a power of two, at least twice n_dev */
    char *topics;    /* every device's topic, back to back */
    size_t topics_len, topics_cap;
    uint64_t records, duplicates, unparseable;
};

int sl_cap_seq_new(sl_cap_seq_t **out)
{
    sl_cap_seq_t *s = calloc(1, sizeof *s);
    if (s != NULL && (s->slots = calloc(1024, sizeof *s->slots)) != NULL)
        s->n_slots = 1024;
    if (s == NULL || s->slots == NULL) {
        free(s);
        return SL_ENOMEM;
    }
    *out = s;
    return 0;
}

void sl_cap_seq_destroy(sl_cap_seq_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_dev; i++)
        free(s->dev[i].bits);
    free(s->dev);
    free(s->slots);
    free(s->topics);
    free(s);
}

/* The sequence number of a payload, or SL_EBADMSG. */
static int sl__seq_of(const sl_cap_rec_t *r, uint64_t *seq)
{
    const uint8_t *p = r->payload;
    if (r->payload_len == 64 && p[0] == 0xB1 && p[1] == 0x0B) { /* sluice gen --profile binary */
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
            v = v << 8 | p[6 + i];
        *seq = v;
        return 0;
    }
    const uint8_t *at = r->payload_len ? memmem(p, r->payload_len, "\"seq\":", 6) : NULL;
    if (at == NULL)
        return SL_EBADMSG;
    const uint8_t *q = at + 6, *end = p + r->payload_len;
    while (q < end && (*q == ' ' || *q == '\t'))
        q++;
    uint64_t v = 0;
    const uint8_t *digits = q;
    while (q < end && *q >= '0' && *q <= '9' && q - digits < 19)
        v = v * 10 + (uint64_t)(*q++ - '0');
    if (q == digits || (q < end && *q >= '0' && *q <= '9'))
        return SL_EBADMSG;
    *seq = v;
    return 0;
}

static int sl__seq_grow_slots(sl_cap_seq_t *s)
{
    size_t n = s->n_slots * 2;
    uint32_t *slots = calloc(n, sizeof *slots);
    if (slots == NULL)
        return SL_ENOMEM;
    for (size_t d = 0; d < s->n_dev; d++) {
        size_t h = sl_hash(s->topics + s->dev[d].topic_off, s->dev[d].topic_len) & (n - 1);
        while (slots[h] != 0)
            h = (h + 1) & (n - 1);
        slots[h] = (uint32_t)d + 1;
    }
    free(s->slots);
    s->slots = slots;
    s->n_slots = n;
    return 0;
}

/* The device of topic, added when new. Returns it, or NULL when out of memory. */
static sl_seqdev_t *sl__seq_dev(sl_cap_seq_t *s, const char *topic, uint32_t len)
{
    size_t h = sl_hash(topic, len) & (s->n_slots - 1);
    for (; s->slots[h] != 0; h = (h + 1) & (s->n_slots - 1)) {
        sl_seqdev_t *d = &s->dev[s->slots[h] - 1];
        if (d->topic_len == len && memcmp(s->topics + d->topic_off, topic, len) == 0)
            return d;
    }
    if (s->n_dev == UINT32_MAX - 1)
        return NULL;
    if (s->n_dev == s->cap_dev) {
        size_t cap = s->cap_dev ? s->cap_dev * 2 : 256;
        sl_seqdev_t *v = realloc(s->dev, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        s->dev = v;
        s->cap_dev = cap;
    }
    if (s->topics_len + len > s->topics_cap) {
        size_t cap = s->topics_cap ? s->topics_cap : 4096;
        while (cap < s->topics_len + len)
            cap *= 2;
        char *t = realloc(s->topics, cap);
        if (t == NULL)
            return NULL;
        s->topics = t;
        s->topics_cap = cap;
    }
    memcpy(s->topics + s->topics_len, topic, len);
    sl_seqdev_t *d = &s->dev[s->n_dev];
    *d = (sl_seqdev_t){.topic_off = (uint32_t)s->topics_len, .topic_len = len};
    s->topics_len += len;
    s->slots[h] = (uint32_t)++s->n_dev;
    if (s->n_dev * 2 > s->n_slots && sl__seq_grow_slots(s) != 0)
        return NULL;
    return &s->dev[s->n_dev - 1];
}

int sl_cap_seq_add(sl_cap_seq_t *s, const sl_cap_rec_t *rec)
{
    uint64_t seq;
    s->records++;
    if (sl__seq_of(rec, &seq) != 0 || seq >= SL_CAP_SEQ_MAX || rec->topic_len == 0) {
        s->unparseable++;
        return SL_EBADMSG;
    }
    sl_seqdev_t *d = sl__seq_dev(s, rec->topic, rec->topic_len);
    if (d == NULL)
        return SL_ENOMEM;
    uint64_t w = seq / 64;
    if (w >= d->nwords) { /* grow by doubling: amortised, not one allocation per record */
        uint64_t n = d->nwords ? d->nwords : 4;
        while (n <= w)
            n *= 2;
        uint64_t *b = realloc(d->bits, n * sizeof *b);
        if (b == NULL)
            return SL_ENOMEM;
        memset(b + d->nwords, 0, (n - d->nwords) * sizeof *b);
        d->bits = b;
        d->nwords = n;
    }
    uint64_t bit = UINT64_C(1) << (seq % 64);
    if (d->bits[w] & bit) {
        s->duplicates++;
        return 0;
    }
    d->bits[w] |= bit;
    d->distinct++;
    d->top = seq + 1 > d->top ? seq + 1 : d->top;
    return 0;
}

void sl_cap_seq_totals(const sl_cap_seq_t *s, uint64_t expect, sl_cap_seq_totals_t *t)
{
    memset(t, 0, sizeof *t);
    t->records = s->records;
    t->duplicates = s->duplicates;
    t->unparseable = s->unparseable;
    t->devices = s->n_dev;
    for (size_t i = 0; i < s->n_dev; i++) {
        t->distinct += s->dev[i].distinct;
        t->gaps += s->dev[i].top - s->dev[i].distinct;
    }
    t->lost = t->gaps;
    if (expect > 0 && expect > t->distinct + t->lost)
        t->lost = expect - t->distinct; /* missing at the end of some devices too */
    t->extra = expect > 0 && t->distinct > expect ? t->distinct - expect : 0;
}
