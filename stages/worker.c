/*
 * The worker loop: runs one stage instance in its own process.
 *
 * Invariants:
 *  - An input event is committed only after the events derived from it are published (or, for a sink,
 *    after handle_events returned). While the stash holds events, nothing taken since is committed and no
 *    new input is taken.
 *  - A producer_consumer takes input only while downstream has demand, at most that many events, so a
 *    1:1 stage never needs the stash.
 *  - The instance sleeps on its bell only after a pass that made no progress; peers ring it.
 *  - Counters in the stats slot are written with plain stores of local totals (one writer), once per pass.
 *
 * Signals: SIGTERM asks for a draining stop (a producer closes its outputs; other stages go on until their
 * inputs are closed and drained), SIGINT is ignored (the master orchestrates Ctrl-C), and the worker dies
 * with its master (PR_SET_PDEATHSIG delivers SIGTERM, so what is in the channels still drains).
 */
#include <assert.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stages/stages_int.h"

#define SL_WORKER_TICK_NS (100 * SL_NS_PER_MS)

static volatile sig_atomic_t sl__worker_stop;
static pid_t sl__worker_master;         /* set before the handler is installed */
static unsigned sl__worker_orphan_secs; /* how long an orphan may take to drain */

/* SIGTERM: drain. When it comes because the master died (PR_SET_PDEATHSIG), the drain gets the node's
 * shutdown_timeout and then SIGALRM's default action ends the process: an orphan never lingers, even one
 * stuck in a stage. Only async-signal-safe calls here. */
static void sl__on_term(int sig)
{
    (void)sig;
    sl__worker_stop = 1;
    if (getppid() != sl__worker_master)
        alarm(sl__worker_orphan_secs);
}

static bool sl__stop_requested(const sl_inst_t *inst)
{
    return sl__worker_stop != 0 || atomic_load_explicit(&inst->stats->stop, memory_order_relaxed) != 0;
}

struct sl_ctx_s {
    sl_runtime_t *rt;
    sl_inst_t *inst;
    const sl_conf_node_t *node;
    void *state;
    sl_demand_t *dem;             /* [n_in] */
    bool *eof;                    /* [n_in] */
    bool *uncommitted;            /* [n_in]: taken events waiting for the stash to drain before commit */
    uint64_t *careful_until;      /* [n_in]: after a crash, replay one event at a time up to this event count */
    sl_ackwin_t *ack;             /* [n_in] for SL_STAGE_ASYNC_ACK consumers, else NULL */
    uint32_t *targets;            /* [n_out], scratch of sl_emit_wait() */
    bool external;                /* SL_STAGE_EXTERNAL: outputs belong to the stage's own thread */
    uint64_t ext_out;             /* events emitted by that thread (only it writes this) */
    _Atomic uint64_t ext_kick_ns; /* when that thread last kicked its consumers (only it writes this) */
    _Atomic bool ext_kick_due;    /* it published without kicking: the worker thread rings for it */
    bool ext_idle;                /* the worker thread sleeps with nothing due (worker thread only) */
    size_t ext_need;              /* record bytes of the event it waits to emit */
    uint8_t *dl_buf;              /* attributes of a dead-lettered event */
    uint64_t dl_logged_ns, dl_unlogged;
    sl_event_t *evs;
    size_t evs_cap;
    sl_stash_t stash;
    uint64_t timer_ns;
    uint32_t rr;
    bool idle; /* a producer that had demand and emitted nothing: wait for its timer or a wake */
    /* Local totals, copied to the stats slot once per pass (events_out by the external thread itself). */
    uint64_t in, out, bytes_in, bytes_out, failed, redelivered, corrupt;
    /* metrics.latency on a sink: its stats slot's histogram, and for async sinks the ingest time of each
     * event in the acknowledgement windows ([n_in][window]); NULL when off. */
    uint64_t *lat, *lat_ingest;
};

void sl_event_from_rec(sl_event_t *ev, const sl_rec_t *rec)
{
    ev->rec = rec;
    ev->topic = sl_rec_topic(rec);
    ev->key = sl_rec_key(rec);
    ev->attrs = sl_rec_attrs(rec);
    ev->payload = sl_rec_payload(rec);
    ev->topic_len = rec->topic_len;
    ev->key_len = rec->key_len;
    ev->attr_len = rec->attr_len;
    ev->payload_len = rec->payload_len;
    ev->ingest_ns = rec->ingest_ns;
}

int sl_emit(sl_ctx_t *ctx, const sl_emit_t *em)
{
    int rc = sl__out_emit(ctx->inst, &ctx->stash, em, NULL, false);
    if (rc == 0) {
        ctx->out++;
        ctx->bytes_out += sl_rec_body_len(em->topic_len, em->key_len, em->attr_len, em->payload_len);
    }
    return rc;
}

/* Emits a whole record (em, when given, adds its flags) and counts it. */
static int sl__emit_raw(sl_ctx_t *ctx, const sl_emit_t *em, const sl_rec_t *rec)
{
    int rc = sl__out_emit(ctx->inst, &ctx->stash, em, rec, false);
    if (rc == 0) {
        ctx->out++;
        ctx->bytes_out += rec->len;
    }
    return rc;
}

int sl_emit_event(sl_ctx_t *ctx, const sl_event_t *ev) { return sl__emit_raw(ctx, NULL, ev->rec); }

int sl_emit_rec(sl_ctx_t *ctx, const sl_rec_t *rec)
{
    assert(rec->len == sl_rec_body_len(rec->topic_len, rec->key_len, rec->attr_len, rec->payload_len));
    return sl__emit_raw(ctx, NULL, rec);
}

int sl_emit_event_flags(sl_ctx_t *ctx, const sl_event_t *ev, uint16_t flags)
{
    sl_emit_t em = {.flags = flags}; /* with a raw record, only its flags are used */
    return sl__emit_raw(ctx, flags ? &em : NULL, ev->rec);
}

int sl_forward(sl_ctx_t *ctx, const sl_event_t *evs, size_t n)
{
    sl_chan_t *ch = ctx->inst->single;
    size_t i = 0;
    while (i < n) {
        if (ch != NULL && sl__stash_empty(&ctx->stash)) {
            uint64_t grant, room = sl_chan_run_room(ch, &grant), bytes = 0, lens = 0;
            size_t max_rec = sl_chan_max_record(ch), k = i;
            const uint8_t *start = (const uint8_t *)evs[i].rec;
            for (; k < n && k - i < grant; k++) {
                const sl_rec_t *r = evs[k].rec;
                uint64_t sz = SL_ALIGN_UP((uint64_t)r->len, SL_REC_ALIGN);
                if ((const uint8_t *)r != start + bytes || bytes + sz > room || r->len > max_rec)
                    break;
                bytes += sz;
                lens += r->len;
            }
            if (k > i) {
                sl_chan_append_run(ch, start, bytes, k - i);
                sl_chan_publish_due(ch);
                ctx->inst->out[0].cur_grant = 0; /* the demand dispatcher's cached grant is stale now */
                ctx->out += k - i;
                ctx->bytes_out += lens;
                i = k;
                continue;
            }
        }
        /* Not back to back (the input ring's end), the output's end, no grant or room: one at a time. */
        int rc = sl_emit_event(ctx, &evs[i++]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The external thread may try again: stopping, or demand and room for the event it holds (a full ring with
 * demand left used to make this true at once, and the thread spun until the consumer freed room). */
static bool sl__ext_ready(void *arg)
{
    sl_ctx_t *ctx = arg;
    return sl__stop_requested(ctx->inst) || sl__out_can_direct(ctx->inst, ctx->ext_need);
}

/*
 * The external thread's emission: direct to the channels and published at once (the event must be in
 * shared memory before the caller acknowledges it anywhere), but the consumers are kicked on a clock, like
 * the worker loop does: at most once a millisecond. A consumer faster than the client library otherwise
 * sleeps after every event and costs a futex wake here and a wait there per event. A publish that does not
 * kick leaves ext_kick_due for the worker thread, which rings the consumers' bells once this thread has not
 * kicked for a millisecond (the tail of a burst; sl__ext_ring_due). Only the first publish left unkicked
 * after the worker rang rings the worker's own bell (it may be in a long sleep), so a steady flow costs
 * this thread no system call but its own kicks.
 */
static int sl__emit_direct(sl_ctx_t *ctx, const sl_emit_t *em, uint32_t overdraft)
{
    int rc = sl__out_emit_direct(ctx->inst, ctx->targets, em, overdraft);
    if (rc != 0)
        return rc;
    sl__out_publish(ctx->inst);
    uint64_t now = sl_now_ns();
    if (now - atomic_load_explicit(&ctx->ext_kick_ns, memory_order_relaxed) >= SL_NS_PER_MS) {
        atomic_store_explicit(&ctx->ext_kick_ns, now, memory_order_relaxed);
        sl__out_kick(ctx->inst);
    } else if (!atomic_load_explicit(&ctx->ext_kick_due, memory_order_relaxed) &&
               !atomic_exchange(&ctx->ext_kick_due, true)) {
        sl_bell_ring(ctx->inst->bell); /* the worker thread: only if it sleeps */
    }
    atomic_store_explicit(&ctx->inst->stats->events_out, ++ctx->ext_out, memory_order_relaxed);
    return 0;
}

int sl_emit_wait(sl_ctx_t *ctx, const sl_emit_t *em, uint64_t timeout_ns)
{
    assert(ctx->external);
    uint64_t deadline = sl_now_ns() + timeout_ns;
    ctx->ext_need = sl_rec_body_len(em->topic_len, em->key_len, em->attr_len, em->payload_len);
    for (;;) {
        if (sl__stop_requested(ctx->inst))
            return SL_ECANCELED;
        int rc = sl__emit_direct(ctx, em, 0);
        if (rc != SL_EAGAIN)
            return rc;
        uint64_t now = sl_now_ns();
        if (now >= deadline)
            return SL_ETIMEDOUT;
        sl__out_kick(ctx->inst); /* nothing published waits for the clock while we wait for demand */
        atomic_store_explicit(&ctx->ext_kick_ns, now, memory_order_relaxed);
        sl_bell_wait(ctx->inst->bell, sl__ext_ready, ctx, SL_MIN(deadline - now, SL_WORKER_TICK_NS));
    }
}

int sl_emit_overdraft(sl_ctx_t *ctx, const sl_emit_t *em, uint32_t overdraft)
{
    assert(ctx->external);
    return sl__emit_direct(ctx, em, overdraft);
}

/* Appends a dead-letter attribute, its value cut to what fits (the error text may be long). */
static void sl__dl_attr(uint8_t *buf, size_t cap, size_t *len, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = value ? strlen(value) : 0;
    if (*len + 4 + nl > cap)
        return;
    vl = SL_MIN(vl, SL_MIN((size_t)UINT16_MAX, cap - *len - 4 - nl));
    sl_rec_attr_put(buf, cap, len, name, nl, value, vl);
}

#define SL_DL_BUF 16384

int sl_dead_letter(sl_ctx_t *ctx, const sl_event_t *ev, const char *reason, const char *error)
{
    sl_inst_t *inst = ctx->inst;
    ctx->failed++;
    bool routed = false;
    for (uint32_t g = 0; g < inst->n_out; g++)
        routed |= inst->out[g].dead_letter;
    if (!routed) {
        /* No dead-letter sink: the event is counted and logged, at most one line a second. */
        uint64_t now = sl_now_ns();
        ctx->dl_unlogged++;
        if (now - ctx->dl_logged_ns >= SL_NS_PER_S) {
            sl_log(SL_LOG_WARN, inst->name, 0,
                   "failed event (%s): %s; %llu failed in all, %llu since the last line (no dead_letter sink)", reason,
                   error ? error : "", (unsigned long long)ctx->failed, (unsigned long long)ctx->dl_unlogged);
            ctx->dl_logged_ns = now;
            ctx->dl_unlogged = 0;
        }
        return 0;
    }
    size_t len = SL_MIN((size_t)ev->attr_len, SL_DL_BUF / 2);
    memcpy(ctx->dl_buf, ev->attrs, len);
    sl__dl_attr(ctx->dl_buf, SL_DL_BUF, &len, "dl_reason", reason);
    sl__dl_attr(ctx->dl_buf, SL_DL_BUF, &len, "dl_stage", inst->name);
    sl__dl_attr(ctx->dl_buf, SL_DL_BUF, &len, "dl_error", error);
    sl_emit_t em = {.topic = ev->topic,
                    .topic_len = ev->topic_len,
                    .key = ev->key,
                    .key_len = ev->key_len,
                    .attrs = ctx->dl_buf,
                    .attr_len = (uint32_t)len,
                    .payload = ev->payload,
                    .payload_len = ev->payload_len,
                    .flags = ev->rec ? ev->rec->flags : 0,
                    .qos = ev->rec ? ev->rec->qos : 0,
                    .ingest_ns = ev->ingest_ns};
    return sl__out_emit(inst, &ctx->stash, &em, NULL, true);
}

uint64_t sl_ctx_demand(sl_ctx_t *ctx) { return sl__stash_empty(&ctx->stash) ? sl__out_demand(ctx->inst) : 0; }
uint64_t sl_ctx_demand_peek(sl_ctx_t *ctx) { return sl__out_demand_peek(ctx->inst); }
uint64_t sl_ctx_published(sl_ctx_t *ctx)
{
    if (ctx->inst->n_out == 0)
        return 0;
    const sl_out_group_t *g = &ctx->inst->out[0];
    uint64_t n = 0;
    for (uint32_t c = 0; c < g->n; c++) {
        sl_chan_stat_t st;
        sl_chan_stat(g->chans[c], &st);
        if (g->kind == SL_DISP_BROADCAST)
            return st.sent;
        n += st.sent;
    }
    return n;
}

const sl_conf_node_t *sl_ctx_node(const sl_ctx_t *ctx) { return ctx->node; }
const char *sl_ctx_name(const sl_ctx_t *ctx) { return ctx->inst->name; }
uint32_t sl_ctx_instance(const sl_ctx_t *ctx) { return ctx->inst->index; }

bool sl_ctx_stopping(const sl_ctx_t *ctx) { return sl__stop_requested(ctx->inst); }
void sl_ctx_set_timer(sl_ctx_t *ctx, uint64_t deadline_ns) { ctx->timer_ns = deadline_ns; }

void sl_ctx_request_shutdown(sl_ctx_t *ctx)
{
    /* Only our own master: after its death getppid() is a reaper (pid 1 in a container) to leave alone. */
    if (getppid() == ctx->rt->master_pid)
        kill(ctx->rt->master_pid, SIGTERM);
}
void sl_ctx_count_failed(sl_ctx_t *ctx, uint64_t n) { ctx->failed += n; }

static bool sl__metric_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= SL_METRIC_NAME_MAX || (name[0] >= '0' && name[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '_'))
            return false;
    return true;
}

_Atomic uint64_t *sl_ctx_metric(sl_ctx_t *ctx, const char *name, sl_metric_kind_t kind, const char *help)
{
    sl_stats_slot_t *s = ctx->inst->stats;
    uint32_t n = atomic_load_explicit(&s->n_metrics, memory_order_acquire);
    for (uint32_t i = 0; i < n; i++) /* a restarted instance finds its predecessor's */
        if (strcmp(s->metric[i].name, name) == 0)
            return &s->metric[i].value;
    if (!sl__metric_name_ok(name) || n >= SL_STAGE_METRICS) {
        sl_log(SL_LOG_ERROR, ctx->inst->name, SL_EINVAL, "metric %s not registered (%s)", name,
               n >= SL_STAGE_METRICS ? "no room left in the stats slot" : "invalid name");
        return NULL;
    }
    struct sl_stage_metric_s *e = &s->metric[n];
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->help, sizeof e->help, "%s", help ? help : "");
    e->kind = (uint32_t)kind;
    atomic_store_explicit(&e->value, 0, memory_order_relaxed);
    atomic_store_explicit(&s->n_metrics, n + 1, memory_order_release); /* the master may read it from now on */
    return &e->value;
}

static uint64_t sl__ctx_publish_stats(sl_ctx_t *ctx)
{
    uint64_t now = sl_now_ns();
    sl_stats_slot_t *s = ctx->inst->stats;
    atomic_store_explicit(&s->events_in, ctx->in, memory_order_relaxed);
    if (!ctx->external) {
        atomic_store_explicit(&s->events_out, ctx->out, memory_order_relaxed);
        atomic_store_explicit(&s->bytes_out, ctx->bytes_out, memory_order_relaxed);
    }
    atomic_store_explicit(&s->bytes_in, ctx->bytes_in, memory_order_relaxed);
    atomic_store_explicit(&s->failed, ctx->failed, memory_order_relaxed);
    atomic_store_explicit(&s->redelivered, ctx->redelivered, memory_order_relaxed);
    atomic_store_explicit(&s->corrupt, ctx->corrupt, memory_order_relaxed);
    atomic_store_explicit(&s->heartbeat_ns, now, memory_order_relaxed);
    return now;
}

/* Commits what was taken from every input, once the stash no longer holds events derived from it. */
static void sl__ctx_commit_inputs(sl_ctx_t *ctx)
{
    for (uint32_t i = 0; i < ctx->inst->n_in; i++) {
        if (!ctx->uncommitted[i])
            continue;
        sl_chan_t *ch = ctx->inst->in[i];
        sl_chan_commit(ch, sl_chan_read_pos(ch), sl_chan_read_events(ch));
        ctx->uncommitted[i] = false;
    }
}

/* Async consumers: commits every input over its acknowledged prefix, once what the acknowledged events
 * sent to the dead-letter sink is published (a commit must never overtake what it derived). */
static void sl__ctx_commit_acked(sl_ctx_t *ctx)
{
    if (ctx->ack == NULL || !sl__stash_empty(&ctx->stash))
        return;
    sl__out_publish(ctx->inst);
    for (uint32_t i = 0; ctx->ack && i < ctx->inst->n_in; i++) {
        uint64_t pos, events;
        if (sl__ackwin_advance(&ctx->ack[i], &pos, &events))
            sl_chan_commit(ctx->inst->in[i], pos, events);
    }
}

int sl_ack(sl_ctx_t *ctx, uint64_t token)
{
    uint32_t i = (uint32_t)(token >> 48);
    if (ctx->ack == NULL || i >= ctx->inst->n_in)
        return SL_EINVAL;
    uint64_t idx = token & ((UINT64_C(1) << 48) - 1);
    int rc = sl__ackwin_ack(&ctx->ack[i], idx);
    if (rc == 0 && ctx->lat_ingest)
        sl_lat_add(ctx->lat, sl_wall_ns(), ctx->lat_ingest[i * ctx->ack[i].cap + (idx & (ctx->ack[i].cap - 1))]);
    return rc;
}

/* Events an SL_STAGE_ASYNC_ACK consumer may hold unacknowledged on one input (its acknowledgement window):
 * several demand batches, so a sink can keep a few batches outstanding with the outside world. */
static uint64_t sl__ack_window(const sl_conf_node_t *node) { return SL_MAX(4096u, 8u * node->max_demand); }

uint64_t sl_ctx_hold_limit(const sl_ctx_t *ctx)
{
    return ctx->ack != NULL && ctx->inst->n_in > 0 ? ctx->ack[0].cap : sl__ack_window(ctx->node);
}

uint64_t sl_ctx_ack_slots(const sl_ctx_t *ctx) { return ctx->ack != NULL ? ctx->inst->n_in * ctx->ack[0].cap : 0; }

/* The same place as the latency array's (ctx->lat_ingest): input * window + number modulo the window. */
uint64_t sl_ctx_ack_slot(const sl_ctx_t *ctx, uint64_t token)
{
    uint64_t cap = ctx->ack[0].cap;
    return (token >> 48) * cap + (token & (cap - 1));
}

static int sl__ctx_init(sl_ctx_t *ctx, sl_runtime_t *rt, sl_inst_t *inst)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->rt = rt;
    ctx->inst = inst;
    ctx->node = &rt->cfg->nodes[inst->node];
    uint32_t n_in = inst->n_in ? inst->n_in : 1;
    ctx->dem = calloc(n_in, sizeof *ctx->dem);
    ctx->eof = calloc(n_in, sizeof *ctx->eof);
    ctx->uncommitted = calloc(n_in, sizeof *ctx->uncommitted);
    ctx->careful_until = calloc(n_in, sizeof *ctx->careful_until);
    ctx->evs_cap = ctx->node->max_demand;
    ctx->evs = calloc(ctx->evs_cap, sizeof *ctx->evs);
    ctx->targets = calloc(inst->n_out ? inst->n_out : 1, sizeof *ctx->targets);
    ctx->dl_buf = malloc(SL_DL_BUF);
    ctx->external = (inst->ops->flags & SL_STAGE_EXTERNAL) != 0;
    inst->single = sl__out_single(inst);
    if (inst->ops->flags & SL_STAGE_ASYNC_ACK) {
        ctx->ack = calloc(n_in, sizeof *ctx->ack);
        if (ctx->ack == NULL)
            return SL_ENOMEM;
    }
    /* The stash holds what one input batch can emit beyond the downstream demand: with 1:1 stages that
     * is nothing; fan-out stages get one max-size record per output group plus slack. */
    size_t stash_cap = 256 * 1024;
    for (uint32_t g = 0; g < inst->n_out; g++)
        stash_cap += sl_chan_max_record(inst->out[g].chans[0]) + 64;
    if (!ctx->dem || !ctx->eof || !ctx->uncommitted || !ctx->careful_until || !ctx->evs || !ctx->targets ||
        !ctx->dl_buf || sl__stash_init(&ctx->stash, stash_cap))
        return SL_ENOMEM;
    /* Counters are cumulative over restarts: start from what the predecessor published. */
    sl_stats_slot_t *s = inst->stats;
    ctx->in = atomic_load_explicit(&s->events_in, memory_order_relaxed);
    ctx->out = ctx->ext_out = atomic_load_explicit(&s->events_out, memory_order_relaxed);
    ctx->bytes_in = atomic_load_explicit(&s->bytes_in, memory_order_relaxed);
    ctx->bytes_out = atomic_load_explicit(&s->bytes_out, memory_order_relaxed);
    ctx->failed = atomic_load_explicit(&s->failed, memory_order_relaxed);
    ctx->redelivered = atomic_load_explicit(&s->redelivered, memory_order_relaxed);
    ctx->corrupt = atomic_load_explicit(&s->corrupt, memory_order_relaxed);
    uint64_t before = ctx->redelivered;
    for (uint32_t i = 0; i < inst->n_in; i++) {
        if (sl_demand_init(&ctx->dem[i], ctx->node->max_demand, ctx->node->min_demand) != 0)
            return SL_EINVAL;
        uint64_t again = sl_chan_consumer_attach(inst->in[i]);
        ctx->redelivered += again;
        sl_chan_t *ch = inst->in[i];
        /* What a crashed predecessor held is replayed one event at a time: the event that kills us again
         * is then known (stats->suspect) and quarantined by our successor. */
        if (atomic_load(&s->restarts) > 0 && again > 0)
            ctx->careful_until[i] = sl_chan_read_events(ch) + again;
        /* The window bounds the events in flight (sl__ack_window). */
        if (ctx->ack && sl__ackwin_init(&ctx->ack[i], sl__ack_window(ctx->node), sl_chan_read_events(ch)) != 0)
            return SL_ENOMEM;
        sl_chan_ask(ch, sl_demand_start(&ctx->dem[i], sl_chan_read_events(ch), sl_chan_asked(ch)));
    }
    if (rt->cfg->metrics_latency && inst->ops->kind == SL_KIND_CONSUMER) {
        ctx->lat = s->lat;
        if (ctx->ack && inst->n_in && !(ctx->lat_ingest = calloc(inst->n_in * ctx->ack[0].cap, sizeof(uint64_t))))
            return SL_ENOMEM;
    }
    for (uint32_t g = 0; g < inst->n_out; g++)
        for (uint32_t c = 0; c < inst->out[g].n; c++)
            sl_chan_producer_attach(inst->out[g].chans[c]);
    if (ctx->redelivered > before)
        sl_log(SL_LOG_INFO, inst->name, 0, "resuming at the last commit: %llu events will be delivered again",
               (unsigned long long)(ctx->redelivered - before));
    return 0;
}

static void sl__ctx_free(sl_ctx_t *ctx)
{
    for (uint32_t i = 0; ctx->ack && i < ctx->inst->n_in; i++)
        sl__ackwin_free(&ctx->ack[i]);
    free(ctx->ack);
    free(ctx->lat_ingest);
    free(ctx->targets);
    free(ctx->dl_buf);
    free(ctx->dem);
    free(ctx->eof);
    free(ctx->uncommitted);
    free(ctx->careful_until);
    free(ctx->evs);
    sl__stash_free(&ctx->stash);
}

/* Takes up to limit events, and no more once max_bytes of records are taken, from input i into ctx->evs;
 * marks EOF; skips (and counts) corrupt framing. */
static size_t sl__take(sl_ctx_t *ctx, uint32_t i, size_t limit, uint64_t max_bytes)
{
    sl_chan_t *ch = ctx->inst->in[i];
    sl_ackwin_t *w = ctx->ack ? &ctx->ack[i] : NULL;
    size_t n = 0;
    uint64_t bytes = 0;
    while (n < limit && bytes < max_bytes && !(w && sl__ackwin_full(w))) {
        const sl_rec_t *rec;
        int rc = sl_chan_next(ch, &rec);
        if (rc == 0) {
            sl_event_t *ev = &ctx->evs[n++];
            sl_event_from_rec(ev, rec);
            uint64_t idx = w ? sl__ackwin_push(w, sl_chan_read_pos(ch)) : sl_chan_read_events(ch) - 1;
            ev->token = (uint64_t)i << 48 | idx;
            if (ctx->lat_ingest)
                ctx->lat_ingest[i * w->cap + (idx & (w->cap - 1))] = rec->ingest_ns;
            ctx->bytes_in += rec->len;
            bytes += rec->len;
            continue;
        }
        if (rc == SL_EOF) {
            ctx->eof[i] = true;
        } else if (rc == SL_EBADMSG) {
            uint64_t skipped = sl_chan_skip_corrupt(ch);
            ctx->corrupt += skipped;
            sl_log(SL_LOG_ERROR, ctx->inst->name, rc, "input %s: corrupt record framing, skipped %llu bytes",
                   sl_chan_name(ch), (unsigned long long)skipped);
        }
        break;
    }
    return n;
}

/*
 * Input bytes a producer_consumer may take in one pass. What it emits must fit in its output rings or,
 * beyond them, in the stash, or the emission fails and the stage crashes. Demand alone does not bound
 * it: max_demand events of 2 KB payloads hold more bytes than the stash and a full ring (a passthrough
 * in front of a slow stage crashed in a loop at the default settings). Half of what both can hold leaves
 * room for records that grow on the way (decode adds attributes) and for the stash's entry headers; the
 * take stops after the record that reaches it, and the stash keeps a largest record's slack for that.
 */
static uint64_t sl__take_budget(sl_ctx_t *ctx)
{
    uint64_t room = sl__out_room(ctx->inst), stash = ctx->stash.cap - ctx->stash.tail;
    return room > UINT64_MAX - stash ? UINT64_MAX / 2 : (room + stash) / 2; /* no limit when no group counts */
}

/* One pass over the inputs, fairly (round-robin start). Returns events handled, or a negative code. */
static int64_t sl__consume_pass(sl_ctx_t *ctx)
{
    sl_inst_t *inst = ctx->inst;
    int64_t total = 0;
    for (uint32_t k = 0; k < inst->n_in; k++) {
        uint32_t i = (ctx->rr + k) % inst->n_in;
        if (ctx->eof[i])
            continue;
        size_t limit = SL_MIN((size_t)sl_demand_chunk(&ctx->dem[i]), ctx->evs_cap);
        bool careful = sl_chan_read_events(inst->in[i]) < ctx->careful_until[i];
        /* One event per call, so a crash inside handle_events names its event. A synchronous stage also
         * commits each before the next; an asynchronous sink does not wait for the acknowledgement (a
         * batching sink acknowledges a whole batch at once: waiting would stall it for a batch timeout
         * per event), so for it only crashes inside handle_events are attributed. */
        if (careful)
            limit = 1;
        uint64_t max_bytes = UINT64_MAX;
        if (inst->n_out > 0) {
            uint64_t d = sl_ctx_demand(ctx);
            if (d == 0)
                break;
            limit = (size_t)SL_MIN((uint64_t)limit, d);
            max_bytes = sl__take_budget(ctx);
        }
        size_t n = sl__take(ctx, i, limit, max_bytes);
        if (n == 0)
            continue;
        atomic_store_explicit(&inst->stats->suspect, careful ? (uint64_t)i << 48 | sl_chan_read_events(inst->in[i]) : 0,
                              memory_order_relaxed);
        int rc = inst->ops->handle_events(ctx, ctx->state, ctx->evs, n);
        if (rc < 0)
            return rc;
        if (careful && ctx->ack) /* handed over intact; a later crash (a flush) is not this event's */
            atomic_store_explicit(&inst->stats->suspect, 0, memory_order_relaxed);
        ctx->in += n;
        if (ctx->lat && ctx->ack == NULL) {
            uint64_t now = sl_wall_ns();
            for (size_t e = 0; e < n; e++)
                sl_lat_add(ctx->lat, now, ctx->evs[e].ingest_ns);
        }
        if (ctx->ack == NULL) {
            ctx->uncommitted[i] = true;
            sl__out_publish(inst);
            if (sl__stash_empty(&ctx->stash))
                sl__ctx_commit_inputs(ctx);
        } else {
            sl__ctx_commit_acked(ctx);
        }
        uint64_t ask = sl_demand_handled(&ctx->dem[i], n);
        if (ask)
            sl_chan_ask(inst->in[i], ask);
        total += (int64_t)n;
    }
    ctx->rr++;
    return total;
}

static bool sl__all_eof(const sl_ctx_t *ctx)
{
    for (uint32_t i = 0; i < ctx->inst->n_in; i++)
        if (!ctx->eof[i])
            return false;
    return true;
}

static bool sl__ready(void *arg)
{
    sl_ctx_t *ctx = arg;
    sl_inst_t *inst = ctx->inst;
    if (inst->ops->kind == SL_KIND_PRODUCER && sl__stop_requested(inst))
        return true;
    if (ctx->external) /* its outputs are its thread's: the worker thread waits for timers, stop, and a
                        * publish left unkicked while it slept with nothing due (sl__ext_ring_due) */
        return ctx->ext_idle && atomic_load(&ctx->ext_kick_due);
    if (!sl__stash_empty(&ctx->stash))
        return sl__out_ready(inst, &ctx->stash);
    if (inst->n_out > 0 && sl__out_demand(inst) == 0)
        return false;
    if (inst->ops->kind == SL_KIND_PRODUCER)
        return !ctx->idle;
    for (uint32_t i = 0; i < inst->n_in; i++)
        if (!ctx->eof[i] && sl_chan_readable(inst->in[i]))
            return true;
    return false;
}

/*
 * External producers: rings the consumers for what the stage's thread published without kicking once that
 * thread has not kicked for a millisecond (while it goes on emitting, its own kicks deliver: ringing too
 * would wake the consumers twice as often), and returns how long the worker may sleep: until that
 * millisecond is over while something is due, else the caller's whole timeout (ext_idle: the first
 * unkicked publish then wakes the worker; sl__ready sees it). The tail of a burst waits at most about a
 * millisecond, however long the worker slept before the burst.
 */
static uint64_t sl__ext_ring_due(sl_ctx_t *ctx, uint64_t now, uint64_t timeout)
{
    ctx->ext_idle = false;
    if (atomic_load(&ctx->ext_kick_due)) {
        uint64_t at = atomic_load_explicit(&ctx->ext_kick_ns, memory_order_relaxed) + SL_NS_PER_MS;
        if (now < at) /* a little past it: the emitting thread's own kick usually comes first */
            return SL_MIN(timeout, at - now + SL_NS_PER_MS / 8);
        atomic_store(&ctx->ext_kick_due, false);
        sl__out_ring(ctx->inst);
    }
    ctx->ext_idle = true;
    return timeout;
}

static bool sl__stash_ready(void *arg)
{
    sl_ctx_t *ctx = arg;
    return sl__out_ready(ctx->inst, &ctx->stash);
}

/* Runs a pass of the instance; returns >0 on progress, 0 when idle, SL_EOF when done, <0 on a crash. */
static int64_t sl__pass(sl_ctx_t *ctx)
{
    sl_inst_t *inst = ctx->inst;
    int64_t progress = 0;
    if (!sl__stash_empty(&ctx->stash)) {
        uint64_t before = ctx->stash.events;
        int rc = sl__out_flush_stash(inst, &ctx->stash);
        progress += (int64_t)(before - ctx->stash.events);
        sl__out_publish(inst);
        if (rc != 0)
            return progress;
        sl__ctx_commit_inputs(ctx);
    }
    if (ctx->timer_ns && sl_now_ns() >= ctx->timer_ns) {
        ctx->timer_ns = 0;
        ctx->idle = false;
        if (inst->ops->handle_timer) {
            int rc = inst->ops->handle_timer(ctx, ctx->state);
            if (rc < 0)
                return rc;
            if (!ctx->external)
                sl__out_publish(inst);
            sl__ctx_commit_acked(ctx);
        }
    }
    if (inst->ops->kind == SL_KIND_PRODUCER) {
        if (sl__stop_requested(inst))
            return SL_EOF;
        if (ctx->external)
            return progress;
        uint64_t d = sl_ctx_demand(ctx);
        if (d == 0)
            return progress;
        int rc = inst->ops->handle_demand(ctx, ctx->state, d);
        sl__out_publish(inst);
        ctx->idle = rc == 0;
        return rc < 0 ? rc : progress + rc;
    }
    int64_t n = sl__consume_pass(ctx);
    if (n < 0)
        return n;
    if (n == 0 && progress == 0 && sl__all_eof(ctx) && sl__stash_empty(&ctx->stash))
        return SL_EOF;
    return progress + n;
}

/*
 * After a crash during a one-at-a-time replay, the suspect event is the one that crashed the instance
 * twice: it goes to the dead-letter path with reason crashed_stage and is committed, so a poison message
 * can neither take the pipeline down nor pin it in a crash loop. Only causes an event can have (a fault
 * signal, an error exit, a hang) count: an instance killed from outside is simply replayed.
 */
static void sl__quarantine_suspect(sl_ctx_t *ctx)
{
    sl_stats_slot_t *s = ctx->inst->stats;
    uint64_t sus = atomic_exchange(&s->suspect, 0);
    sl_cause_t cause = (sl_cause_t)atomic_load(&s->last_cause);
    if (sus == 0 || (cause != SL_CAUSE_FAULT && cause != SL_CAUSE_WATCHDOG && cause != SL_CAUSE_EXIT_CODE))
        return;
    uint32_t i = (uint32_t)(sus >> 48);
    uint64_t ev = (sus & ((UINT64_C(1) << 48) - 1)) - 1;
    if (i >= ctx->inst->n_in || sl_chan_read_events(ctx->inst->in[i]) != ev)
        return; /* it was committed after all: the crash came later */
    sl_chan_t *ch = ctx->inst->in[i];
    const sl_rec_t *rec;
    if (sl_chan_next(ch, &rec) != 0)
        return;
    sl_event_t e;
    sl_event_from_rec(&e, rec);
    int status = atomic_load(&s->last_status);
    char why[160];
    if (WIFSIGNALED(status))
        snprintf(why, sizeof why, "the event crashed %s twice (%s)", ctx->inst->name, strsignal(WTERMSIG(status)));
    else
        snprintf(why, sizeof why, "the event crashed %s twice (%s)", ctx->inst->name, sl_cause_name(cause));
    sl_log(SL_LOG_WARN, ctx->inst->name, 0, "quarantined event %llu of %s (key \"%.*s\", topic \"%.*s\"): %s",
           (unsigned long long)ev, sl_chan_name(ch), (int)SL_MIN(e.key_len, 64u), (const char *)e.key,
           (int)SL_MIN(e.topic_len, 128u), e.topic, why);
    sl_dead_letter(ctx, &e, "crashed_stage", why);
    atomic_fetch_add(&s->quarantined, 1);
    sl__out_publish(ctx->inst);
    if (ctx->ack) {
        sl__ackwin_ack(&ctx->ack[i], sl__ackwin_push(&ctx->ack[i], sl_chan_read_pos(ch)));
        sl__ctx_commit_acked(ctx);
    } else {
        ctx->uncommitted[i] = true;
        if (sl__stash_empty(&ctx->stash))
            sl__ctx_commit_inputs(ctx);
    }
    ctx->in++;
    uint64_t ask = sl_demand_handled(&ctx->dem[i], 1);
    if (ask)
        sl_chan_ask(ch, ask);
}

static void sl__worker_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sl__on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL); /* an orphan's drain deadline (sl__on_term) */
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
}

int sl__worker_main(sl_runtime_t *rt, sl_inst_t *inst)
{
    sl__worker_stop = 0;
    sl__worker_master = rt->master_pid;
    uint64_t drain_ns = rt->cfg->nodes[inst->node].sup.shutdown_timeout_ns;
    sl__worker_orphan_secs = (unsigned)SL_MAX((drain_ns + SL_NS_PER_S - 1) / SL_NS_PER_S, 1u);
    sl__worker_signals();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    /* `ps`, `top` and `pidof` name the instance ("sl:relay#0"; the kernel keeps 15 bytes). */
    char comm[64];
    snprintf(comm, sizeof comm, "sl:%s", inst->name);
    prctl(PR_SET_NAME, comm); /* truncated by the kernel */
    /* SCHED_BATCH: a worker that rings a peer is not preempted by the peer it woke. With more workers than
     * cores, that halves the context switches of a busy pipeline (measured: chain benchmark, 10M events,
     * 2.3 s -> 1.5 s on 2 cores). Latency is unaffected at the scale of our targets (milliseconds). */
    struct sched_param sp = {.sched_priority = 0};
    sched_setscheduler(0, SCHED_BATCH, &sp);
    if (getppid() != rt->master_pid) { /* the master died before we could ask to be told */
        sl__worker_stop = 1;
        alarm(sl__worker_orphan_secs);
    }
    sl_ctx_t ctx;
    int rc = sl__ctx_init(&ctx, rt, inst);
    if (rc == 0 && inst->ops->init)
        rc = inst->ops->init(&ctx, &ctx.state);
    if (rc != 0) {
        sl_log(SL_LOG_ERROR, inst->name, rc, "cannot start");
        sl__ctx_free(&ctx);
        return SL_EXIT_FATAL;
    }
    sl__quarantine_suspect(&ctx);
    int64_t r;
    uint64_t last_kick = 0, sleeps = 0;
    bool progressed = false;
    for (;;) {
        r = sl__pass(&ctx);
        uint64_t now = sl__ctx_publish_stats(&ctx);
        if (r < 0)
            break;
        if (r > 0) {
            if (SL_UNLIKELY(!progressed)) {
                progressed = true;
                if (atomic_load(&inst->stats->restarts) > 0) /* for the recovery benchmark: wall clock, ns */
                    sl_log(SL_LOG_DEBUG, inst->name, 0, "processing again after a restart at wall %llu",
                           (unsigned long long)sl_wall_ns());
            }
            /* A busy instance never sleeps, so it kicks its consumers on a clock: what it publishes waits
             * at most about a millisecond for the batch threshold. */
            if (now - last_kick >= SL_NS_PER_MS && !ctx.external) {
                sl__out_kick(inst);
                last_kick = now;
            }
            continue;
        }
        uint64_t timeout = SL_WORKER_TICK_NS;
        if (ctx.timer_ns)
            timeout = ctx.timer_ns > now ? SL_MIN(timeout, ctx.timer_ns - now) : 0;
        if (!ctx.external) {
            sl__out_kick(inst); /* nothing published waits on a batch threshold while we sleep */
        } else if (timeout) {
            /* The worker thread of an external producer waits for clocks, not for a peer: no yields. While
             * a tail is due it naps off the bell, which the consumers ring for the emitting thread (their
             * demand asks; until fdacc4d also every commit, through a room wish never cleared: a steady
             * QoS 1 drain woke this thread 3000-4000 times a second); a stop signal interrupts the nap, a
             * stop flag is seen after it. */
            timeout = sl__ext_ring_due(&ctx, now, timeout);
            sleeps++;
            if (ctx.ext_idle) {
                sl_bell_sleep(inst->bell, sl__ready, &ctx, timeout);
                ctx.ext_idle = false;
            } else {
                struct timespec ts = {.tv_sec = (time_t)(timeout / SL_NS_PER_S),
                                      .tv_nsec = (long)(timeout % SL_NS_PER_S)};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        if (timeout) {
            sleeps++;
            sl_bell_wait(inst->bell, sl__ready, &ctx, timeout);
        }
    }
    sl_log(SL_LOG_DEBUG, inst->name, 0, "slept %llu times, woken by a peer %u times", (unsigned long long)sleeps,
           atomic_load(&inst->bell->rings));
    if (r != SL_EOF) {
        sl_log(SL_LOG_ERROR, inst->name, (int)r, "stage callback failed");
        abort(); /* a crash: the supervisor restarts us, and the unacknowledged window is redelivered */
    }
    /* terminate() stops an external stage's own thread before it returns: from here on the worker thread
     * owns the outputs again. */
    if (inst->ops->terminate)
        inst->ops->terminate(&ctx, ctx.state, 0);
    sl__ctx_commit_acked(&ctx);
    sl__out_publish(inst);
    /* A drain ends only when the stash is empty; a terminate callback may have emitted more. */
    while (!sl__stash_empty(&ctx.stash)) {
        if (sl__out_flush_stash(inst, &ctx.stash) != 0) {
            sl__out_kick(inst);
            /* Only room for the stash counts now (sl__ready would call a stopping producer ready and
             * this loop would spin). */
            sl_bell_wait(inst->bell, sl__stash_ready, &ctx, SL_WORKER_TICK_NS);
            sl__ctx_publish_stats(&ctx);
        }
        sl__out_publish(inst);
    }
    sl__ctx_commit_inputs(&ctx);
    sl__out_close(inst);
    sl__ctx_publish_stats(&ctx);
    sl__ctx_free(&ctx);
    return 0;
}
