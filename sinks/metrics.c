/*
 * The sinks' own metrics (disk-blocked episodes, queue-full episodes, retries, dead letters): registered
 * with the runtime's sl_ctx_metric() from a table, so each sink lists its metrics in one place. A metric the
 * runtime cannot give (all slots taken: logged by it) falls back to a spare word of the sink's own, so the
 * sink's code never checks for NULL.
 */
#include "sinks/sinks_int.h"

void sl__sink_metrics(sl_ctx_t *ctx, void *state, const sl_sink_metric_t *defs, size_t n, _Atomic uint64_t *spare)
{
    for (size_t i = 0; i < n; i++) {
        _Atomic uint64_t **slot = (_Atomic uint64_t **)((char *)state + defs[i].off);
        *slot = sl_ctx_metric(ctx, defs[i].name, defs[i].kind, defs[i].help);
        if (*slot == NULL)
            *slot = &spare[i];
    }
}
