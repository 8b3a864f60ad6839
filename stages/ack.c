/*
 * The acknowledgement window of one input of a sink that acknowledges asynchronously (a Kafka delivery
 * report, a file that reached its durability): events are taken in order, acknowledged in any order, and
 * the input is committed over the contiguous acknowledged prefix only (BroadwayKafka's offset tracking).
 *
 * The window is a ring of cap slots indexed by the input's cumulative event number. While it is full the
 * worker takes nothing more from that input: that bounds the events in flight, and with them what a
 * restart delivers again.
 */
#include <stdlib.h>

#include "stages/stages_int.h"

int sl__ackwin_init(sl_ackwin_t *w, uint64_t cap, uint64_t start)
{
    uint64_t c = 64;
    while (c < cap)
        c <<= 1;
    w->end_pos = calloc(c, sizeof *w->end_pos);
    w->done = calloc(c, sizeof *w->done);
    if (w->end_pos == NULL || w->done == NULL) {
        sl__ackwin_free(w);
        return SL_ENOMEM;
    }
    w->cap = c;
    w->base = w->next = start;
    return 0;
}

void sl__ackwin_free(sl_ackwin_t *w)
{
    free(w->end_pos);
    free(w->done);
    w->end_pos = NULL;
    w->done = NULL;
}

uint64_t sl__ackwin_push(sl_ackwin_t *w, uint64_t end_pos)
{
    uint64_t idx = w->next++;
    w->end_pos[idx & (w->cap - 1)] = end_pos;
    w->done[idx & (w->cap - 1)] = 0;
    return idx;
}

int sl__ackwin_ack(sl_ackwin_t *w, uint64_t idx)
{
    if (idx < w->base || idx >= w->next)
        return SL_EINVAL;
    w->done[idx & (w->cap - 1)] = 1;
    return 0;
}

bool sl__ackwin_advance(sl_ackwin_t *w, uint64_t *pos, uint64_t *events)
{
    bool moved = false;
    while (w->base < w->next && w->done[w->base & (w->cap - 1)]) {
        *pos = w->end_pos[w->base & (w->cap - 1)];
        w->base++;
        moved = true;
    }
    *events = w->base;
    return moved;
}
