/*
 * The `passthrough` stage: forwards every event unchanged. It is the cheapest producer_consumer there is,
 * so a chain of them measures the runtime itself (bench/run chain).
 */
#include "stages/stages.h"

static int sl__pt_events(sl_ctx_t *ctx, void *state, const sl_event_t *evs, size_t n)
{
    (void)state;
    return sl_forward(ctx, evs, n);
}

const sl_stage_ops_t sl_stage_passthrough_ops = {
    .type = "passthrough",
    .kind = SL_KIND_PRODUCER_CONSUMER,
    .handle_events = sl__pt_events,
};
