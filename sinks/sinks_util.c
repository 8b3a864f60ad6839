/*
 * Helpers shared by the sinks: slabs of slots threaded on a free list, and the sinks' own metrics (disk-blocked
 * episodes, queue-full episodes, retries, dead letters): registered with the runtime's sl_ctx_metric() from a table, so
 * each sink lists its metrics in one place. A metric the runtime cannot give (all slots taken: logged by it) falls back
 * to a spare word of the sink's own, so the sink's code never checks for NULL.
 */
#include <stdlib.h>
#include <string.h>

#include "sinks/sinks_int.h"

int sl__slab_alloc(void **slab, uint32_t *cap, uint32_t *free_head, size_t size, size_t next_off, uint32_t first,
                   uint32_t *out)
{
    if (*free_head == SL_SLAB_NIL) {
        uint32_t n = *cap ? *cap * 2 : first;
        char *p = realloc(*slab, (size_t)n * size);
        if (p == NULL)
            return SL_ENOMEM;
        for (uint32_t i = *cap; i < n; i++) {
            uint32_t next = i + 1 < n ? i + 1 : SL_SLAB_NIL;
            memcpy(p + (size_t)i * size + next_off, &next, sizeof next);
        }
        *slab = p;
        *free_head = *cap;
        *cap = n;
    }
    uint32_t i = *free_head;
    memcpy(free_head, (char *)*slab + (size_t)i * size + next_off, sizeof *free_head);
    *out = i;
    return 0;
}

void sl__sink_metrics(sl_ctx_t *ctx, void *state, const sl_sink_metric_t *defs, size_t n, _Atomic uint64_t *spare)
{
    for (size_t i = 0; i < n; i++) {
        _Atomic uint64_t **slot = (_Atomic uint64_t **)((char *)state + defs[i].off);
        *slot = sl_ctx_metric(ctx, defs[i].name, defs[i].kind, defs[i].help);
        if (*slot == NULL)
            *slot = &spare[i];
    }
}
