/*
 * GenStage demand, consumer side: one state per input subscription.
 *
 * The rules follow gen_stage's consumer (lib/gen_stage.ex, split_batches): ask max_demand at start, handle
 * events in batches of at most max - min, and after each batch, when the outstanding demand is at or below
 * min_demand, ask for enough to bring it back to max. With min = 0 that is "ask max, take all of it, ask
 * max again"; with min = max - 1 it is "ask one more after every event".
 *
 * Cumulative counters instead of GenStage's deltas: the channel stores asked and sent as totals, so a
 * restarted consumer can resume at the committed event count and the producer can never be granted twice.
 */
#include "stages/stages.h"

int sl_demand_init(sl_demand_t *d, uint32_t max, uint32_t min)
{
    if (max == 0 || min >= max)
        return SL_EINVAL;
    d->max = max;
    d->min = min;
    d->asked = 0;
    d->taken = 0;
    return 0;
}

uint64_t sl_demand_start(sl_demand_t *d, uint64_t taken, uint64_t asked_before)
{
    d->taken = taken;
    d->asked = taken + d->max;
    /* The producer may already have been granted more by a predecessor; a grant cannot be taken back. */
    if (asked_before > d->asked)
        d->asked = asked_before;
    return d->asked;
}

uint64_t sl_demand_handled(sl_demand_t *d, uint64_t n)
{
    d->taken += n;
    uint64_t pending = d->asked > d->taken ? d->asked - d->taken : 0;
    if (pending > d->min)
        return 0;
    d->asked = d->taken + d->max;
    return d->asked;
}
