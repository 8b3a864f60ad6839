/*
 * Private helpers shared by the sinks (sinks/): their own metrics (metrics.c).
 */
#ifndef SL_SINKS_INT_H
#define SL_SINKS_INT_H

#include <stdatomic.h>
#include <stddef.h>

#include "sinks/sinks.h"

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
