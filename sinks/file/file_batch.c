/*
 * The file sink's batches (Broadway's batcher semantics): events are grouped per output file and, with
 * `batch_key`, per value of the record key, the MQTT topic or an attribute as well. A batch is written
 * when it holds batch_size events or batch_bytes bytes, when batch_timeout has passed since its first
 * event, or at the drain. Several keys' batches may go to one file; each is one complete unit there.
 *
 * Batches live in a slab (indices, never pointers into it, since it grows), found by (file, key) in a
 * chained hash table, and kept in a list in the order of their first event: the head is always the next
 * timeout, so arming the timer and flushing what is due cost nothing per open batch.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "sinks/file/file_int.h"

#define SL_FBATCH_BUCKETS 4096u /* power of two; chains grow past it, never a limit */

static uint32_t sl__fbatch_hash(const sl_fsink_t *fs, const sl_file_t *f, const char *key, size_t len)
{
    return sl_hash(key, len) * 31u + (uint32_t)(f - fs->files);
}

int sl__fbatch_get(sl_fsink_t *fs, sl_file_t *f, const char *key, size_t len, uint32_t *out)
{
    if (fs->buckets == NULL) {
        fs->buckets = malloc(SL_FBATCH_BUCKETS * sizeof *fs->buckets);
        if (fs->buckets == NULL)
            return SL_ENOMEM;
        for (uint32_t i = 0; i < SL_FBATCH_BUCKETS; i++)
            fs->buckets[i] = SL_PEND_NIL;
        fs->bfree = fs->open_head = fs->open_tail = SL_PEND_NIL;
    }
    uint32_t h = sl__fbatch_hash(fs, f, key, len);
    for (uint32_t i = fs->buckets[h & (SL_FBATCH_BUCKETS - 1)]; i != SL_PEND_NIL; i = fs->batches[i].next_hash) {
        const sl_fbatch_t *b = &fs->batches[i];
        if (b->hash == h && b->f == f && b->key_len == len && memcmp(b->key, key, len) == 0) {
            *out = i;
            return 0;
        }
    }
    uint32_t i;
    if (sl__slab_alloc((void **)&fs->batches, &fs->bcap, &fs->bfree, sizeof *fs->batches,
                       offsetof(sl_fbatch_t, next_hash), 64, &i) != 0)
        return SL_ENOMEM;
    sl_fbatch_t *b = &fs->batches[i];
    memset(b, 0, sizeof *b);
    b->f = f;
    b->hash = h;
    b->key_len = (uint32_t)len;
    memcpy(b->key, key, len);
    b->first_ns = sl_now_ns();
    b->next_hash = fs->buckets[h & (SL_FBATCH_BUCKETS - 1)];
    fs->buckets[h & (SL_FBATCH_BUCKETS - 1)] = i;
    b->prev_open = fs->open_tail;
    b->next_open = SL_PEND_NIL;
    if (fs->open_tail == SL_PEND_NIL)
        fs->open_head = i;
    else
        fs->batches[fs->open_tail].next_open = i;
    fs->open_tail = i;
    fs->n_open++;
    f->n_batches++;
    *out = i;
    return 0;
}

void sl__fbatch_drop(sl_fsink_t *fs, uint32_t i)
{
    sl_fbatch_t *b = &fs->batches[i];
    uint32_t *link = &fs->buckets[b->hash & (SL_FBATCH_BUCKETS - 1)];
    while (*link != i)
        link = &fs->batches[*link].next_hash;
    *link = b->next_hash;
    if (b->prev_open == SL_PEND_NIL)
        fs->open_head = b->next_open;
    else
        fs->batches[b->prev_open].next_open = b->next_open;
    if (b->next_open == SL_PEND_NIL)
        fs->open_tail = b->prev_open;
    else
        fs->batches[b->next_open].prev_open = b->prev_open;
    fs->n_open--;
    b->f->n_batches--;
    if (b->f->cur_batch == i + 1)
        b->f->cur_batch = 0;
    b->next_hash = fs->bfree;
    fs->bfree = i;
}

void sl__fbatch_free(sl_fsink_t *fs)
{
    free(fs->batches);
    free(fs->buckets);
    fs->batches = NULL;
    fs->buckets = NULL;
}
