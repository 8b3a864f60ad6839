/*
 * The `kafka` sink: produces every event with librdkafka and acknowledges it from its delivery report
 * (see kafka_int.h for the invariants).
 *
 * Nothing in the runtime polls librdkafka, so the sink does: after each handle_events, from a timer every
 * SL_KAFKA_POLL_NS while messages are in flight, and while events wait in the backlog (librdkafka's queue
 * is full) from a timer due at once whose poll blocks until the first delivery report, at most
 * SL_KAFKA_POLL_NS (a raw producer's rd_kafka_poll(rk, 1) on queue-full). Batching is librdkafka's
 * (linger, batch_size, batch_bytes per partition): the sink hands it events as they come.
 */
#include <stdlib.h>

#include "sinks/kafka/kafka_int.h"

#define SL_KAFKA_POLL_NS (1 * SL_NS_PER_MS)

static void sl__ksink_arm(sl_ksink_t *ks)
{
    sl__metric_set(ks->m_in_flight, ks->in_flight);
    sl__metric_set(ks->m_backlog, ks->backlog_n);
    /* While events wait for room, the timer is due at once and its poll blocks (below). */
    uint64_t due = ks->backlog_n ? sl_now_ns() : ks->in_flight ? sl_now_ns() + SL_KAFKA_POLL_NS : 0;
    sl_ctx_set_timer(ks->ctx, due);
}

static int sl__ksink_events(sl_ctx_t *ctx, void *state, const sl_event_t *evs, size_t n)
{
    sl_ksink_t *ks = state;
    for (size_t k = 0; k < n; k++) {
        int rc = sl__ksink_take(ks, &evs[k]);
        if (rc != 0)
            return rc;
    }
    sl__ksink_poll(ks, 0);
    if (ks->fatal)
        return SL_EIO;
    sl__ksink_arm(ks);
    return 0;
}

static int sl__ksink_timer(sl_ctx_t *ctx, void *state)
{
    sl_ksink_t *ks = state;
    /* librdkafka's queue is full: wait for its first delivery report (which makes room) in librdkafka,
     * at most SL_KAFKA_POLL_NS, as a raw producer does, rather than sleeping a whole tick. */
    sl__ksink_poll(ks, ks->backlog_n ? (int)(SL_KAFKA_POLL_NS / SL_NS_PER_MS) : 0);
    int rc = sl__ksink_backlog(ks);
    if (rc != 0)
        return rc;
    if (ks->fatal)
        return SL_EIO;
    sl__ksink_arm(ks);
    return 0;
}

/* Drain: produce the backlog and wait for every delivery report, up to the node's shutdown_timeout (less
 * a margin for the rest of the exit); then purge what is left, unacknowledged. */
static void sl__ksink_drain(sl_ksink_t *ks)
{
    uint64_t budget = sl_ctx_node(ks->ctx)->sup.shutdown_timeout_ns;
    uint64_t deadline = sl_now_ns() + budget - budget / 10;
    while ((ks->in_flight || ks->backlog_n) && sl_now_ns() < deadline && !ks->fatal) {
        sl__ksink_backlog(ks);
        sl__ksink_poll(ks, 10); /* blocks in librdkafka for reports, at most 10 ms */
    }
    if (ks->in_flight || ks->backlog_n) {
        sl_log(SL_LOG_WARN, ks->who, SL_ETIMEDOUT,
               "drain: %llu events not confirmed and %llu not produced in time; left unacknowledged (delivered "
               "again on the next start)",
               (unsigned long long)ks->in_flight, (unsigned long long)ks->backlog_n);
        rd_kafka_purge(ks->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        sl__ksink_poll(ks, 0);
    }
}

static void sl__ksink_terminate(sl_ctx_t *ctx, void *state, int reason)
{
    sl_ksink_t *ks = state;
    if (ks == NULL)
        return;
    if (reason == 0)
        sl__ksink_drain(ks);
    sl_log(SL_LOG_INFO, ks->who, 0,
           "delivered %llu events in %.3f s (first produce to last delivery report); %llu produced again after a "
           "failed delivery, %llu dead-lettered, queue full %llu times",
           (unsigned long long)ks->delivered,
           ks->last_ns > ks->first_ns ? (double)(ks->last_ns - ks->first_ns) / 1e9 : 0.0,
           (unsigned long long)ks->retried, (unsigned long long)ks->dead, (unsigned long long)ks->queue_full);
    sl__ksink_free(ks);
}

static int sl__ksink_init(sl_ctx_t *ctx, void **state)
{
    sl_ksink_t *ks = calloc(1, sizeof *ks);
    if (ks == NULL)
        return SL_ENOMEM;
    int rc = sl__ksink_setup(ctx, ks);
    if (rc != 0) {
        sl__ksink_free(ks);
        return rc;
    }
    *state = ks;
    return 0;
}

const sl_stage_ops_t sl_sink_kafka_ops = {
    .type = "kafka",
    .kind = SL_KIND_CONSUMER,
    .flags = SL_STAGE_ASYNC_ACK,
    .init = sl__ksink_init,
    .handle_events = sl__ksink_events,
    .handle_timer = sl__ksink_timer,
    .terminate = sl__ksink_terminate,
};
