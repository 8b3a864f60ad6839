/*
 * Private helpers shared by the sinks (sinks/, sinks_util.c): slabs of slots on a free list, and the sinks'
 * own metrics.
 */
#ifndef SL_SINKS_INT_H
#define SL_SINKS_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "sinks/sinks.h"

#define SL_SLAB_NIL UINT32_MAX

/* Takes a free slot of a slab of elements of `size` bytes whose uint32_t free-list link is at `next_off`,
 * growing the slab geometrically (first slots at the start) when none is free: no allocation per event.
 * Returns 0 and *out (the slot's content is the caller's to set), or SL_ENOMEM (nothing changed). */
int sl__slab_alloc(void **slab, uint32_t *cap, uint32_t *free_head, size_t size, size_t next_off, uint32_t first,
                   uint32_t *out);

/* One metric of a sink: where its pointer lives in the sink's state, and what it is. */
typedef struct sl_sink_metric_s {
    size_t off; /* offsetof(state type, _Atomic uint64_t *member) */
    const char *name, *help;
    sl_metric_kind_t kind;
} sl_sink_metric_t;

/* Registers defs[0..n) (sl_ctx_metric) and points each member at its word, or at spare[i] when the runtime
 * has no slot left. spare has n words and lives as long as the state. Worker thread, from init. */
void sl__sink_metrics(sl_ctx_t *ctx, void *state, const sl_sink_metric_t *defs, size_t n, _Atomic uint64_t *spare);

/* Adds n to a sink metric (relaxed: a counter read by the master, no ordering needed). */
static inline void sl__metric_add(_Atomic uint64_t *m, uint64_t n)
{
    atomic_fetch_add_explicit(m, n, memory_order_relaxed);
}
static inline void sl__metric_set(_Atomic uint64_t *m, uint64_t v)
{
    atomic_store_explicit(m, v, memory_order_relaxed);
}

#endif /* SL_SINKS_INT_H */
