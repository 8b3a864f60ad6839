/*
 * Stages: GenStage-style demand, dispatchers, the stage behaviour interface, the worker loop that runs one
 * stage instance per process, the shared statistics block, and the runtime (topology + master) that
 * forks and supervises the workers.
 *
 * Invariants:
 *  - A consumer never holds more than it asked for: demand on each input subscription follows GenStage
 *    (ask max at start, take chunks of at most max - min, ask back up to max whenever what is outstanding
 *    falls to min or below). A producer never publishes more than asked - sent on a channel.
 *  - An input event is acknowledged (committed) only after everything derived from it is published
 *    downstream, or, for a sink, after the outside world has it.
 *  - Stage code keeps its state in the state pointer it returns from init and in its context: no globals,
 *    so the same code could run in a thread executor.
 */
#ifndef SL_STAGES_H
#define SL_STAGES_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "backpressure/backpressure.h"
#include "common/sl.h"
#include "config/config.h"

/* ---- demand (GenStage consumer side, one per input subscription) ---------------------------------- */

typedef struct sl_demand_s {
    uint32_t max, min;
    uint64_t asked; /* cumulative events asked */
    uint64_t taken; /* cumulative events received */
} sl_demand_t;

/* Validates the pair: max >= 1 and min < max. Returns 0 or SL_EINVAL (nothing changed). */
int sl_demand_init(sl_demand_t *d, uint32_t max, uint32_t min);
/* Starts (or restarts, after re-attaching at taken events) a subscription whose cumulative ask was
 * asked_before; returns the cumulative ask to send: at least taken + max, never less than asked_before. */
uint64_t sl_demand_start(sl_demand_t *d, uint64_t taken, uint64_t asked_before);
/* Largest number of events to take before the next demand decision: max - min. */
static inline uint32_t sl_demand_chunk(const sl_demand_t *d) { return d->max - d->min; }
/* Events asked and not received yet. */
static inline uint64_t sl_demand_pending(const sl_demand_t *d) { return d->asked - d->taken; }
/* Records that n events were received and handled. Returns the new cumulative ask when outstanding
 * demand fell to min or below (the consumer asks back up to max), or 0 when no ask is due. */
uint64_t sl_demand_handled(sl_demand_t *d, uint64_t n);

/* ---- events and the stage behaviour ------------------------------------------------------------ */

/* A view of one event; pointers are into the input channel and valid until the event is committed. */
typedef struct sl_event_s {
    const sl_rec_t *rec;
    const char *topic;
    const uint8_t *key;
    const uint8_t *attrs;
    const uint8_t *payload;
    uint32_t topic_len, key_len, attr_len, payload_len;
    uint64_t ingest_ns;
    uint64_t token; /* for sl_ack() */
} sl_event_t;

void sl_event_from_rec(sl_event_t *ev, const sl_rec_t *rec);

typedef enum sl_stage_kind_e {
    SL_KIND_PRODUCER = 0,
    SL_KIND_PRODUCER_CONSUMER = 1,
    SL_KIND_CONSUMER = 2,
} sl_stage_kind_t;

typedef struct sl_ctx_s sl_ctx_t;

/*
 * The behaviour of a stage type: a const struct of callbacks (GenStage's callbacks). Every callback runs in
 * the stage instance's own worker process, single-threaded.
 *  - init: reads the node's params, allocates state (*state). Returns 0, or a negative code: the worker then
 *    exits SL_EXIT_FATAL ("cannot start"), which its supervisor never respawns.
 *  - handle_demand (producers): emit up to demand events with sl_emit(). Returns the number emitted (0 when
 *    nothing is available now), SL_EOF when the stream has ended, or a negative code (crash).
 *  - handle_events (producer_consumers and consumers): handle n events; emit derived events with
 *    sl_emit(). Returns 0, or a negative code (the worker treats it as a crash).
 *  - handle_timer: called when the deadline set with sl_ctx_set_timer() passes.
 *  - terminate: flush and free; reason is 0 on a normal end (drain), negative otherwise.
 */
/* Consumers: events are acknowledged with sl_ack(), possibly after handle_events returned and in any
 * order; the input is committed over the acknowledged prefix. Without it, returning from handle_events
 * acknowledges the batch. */
#define SL_STAGE_ASYNC_ACK 0x1u
/* Producers: events arrive on a thread of the stage's own (a client library's callback thread) and are
 * emitted there with sl_emit_wait() / sl_emit_overdraft(); the worker thread never calls handle_demand,
 * only handle_timer, and never touches the outputs while the stage runs. */
#define SL_STAGE_EXTERNAL 0x2u

typedef struct sl_stage_ops_s {
    const char *type;
    sl_stage_kind_t kind;
    unsigned flags; /* SL_STAGE_* */
    int (*init)(sl_ctx_t *ctx, void **state);
    int (*handle_demand)(sl_ctx_t *ctx, void *state, uint64_t demand);
    int (*handle_events)(sl_ctx_t *ctx, void *state, const sl_event_t *evs, size_t n);
    int (*handle_timer)(sl_ctx_t *ctx, void *state);
    void (*terminate)(sl_ctx_t *ctx, void *state, int reason);
} sl_stage_ops_t;

/* Finds the behaviour of a node type for a role; NULL if none. */
const sl_stage_ops_t *sl_stage_lookup(sl_conf_role_t role, const char *type);

/* What a stage instance emits: copied into the chosen output channel(s). */
typedef struct sl_emit_s {
    const char *topic;
    const void *key;
    const void *attrs;
    const void *payload;
    uint32_t topic_len, key_len, attr_len, payload_len;
    uint16_t flags;
    uint8_t qos;
    uint64_t ingest_ns;
} sl_emit_t;

/*
 * Emits one event downstream. Returns 0 (published at the next flush, or held in the instance's bounded
 * overflow stash until a consumer has demand for it), SL_EMSGSIZE when it is larger than the channel's
 * largest record, or SL_ENOSPC when the stash is full (a stage that emits far more events than it takes
 * must check sl_ctx_demand()). Stage callbacks only.
 */
int sl_emit(sl_ctx_t *ctx, const sl_emit_t *em);
/* Re-emits an input event unchanged (the pass-through fast path). */
int sl_emit_event(sl_ctx_t *ctx, const sl_event_t *ev);
/* Emits a record the stage laid out itself, header and parts (rec->len = sl_rec_body_len() of the parts),
 * copied whole: a source that keeps a template record (the generator). */
int sl_emit_rec(sl_ctx_t *ctx, const sl_rec_t *rec);
/* The same with SL_REC_* flags added to the record. */
int sl_emit_event_flags(sl_ctx_t *ctx, const sl_event_t *ev, uint16_t flags);
/* Re-emits evs[0..n) unchanged, exactly as n calls of sl_emit_event() would (same order and dispatch;
 * the first error is returned, the events before it are emitted). Where the events lie back to back in
 * the input ring and the instance has one output channel, whole runs are copied at once. */
int sl_forward(sl_ctx_t *ctx, const sl_event_t *evs, size_t n);
/* Events the instance may emit now without stashing: the downstream demand. */
uint64_t sl_ctx_demand(sl_ctx_t *ctx);
/* The downstream demand, read only: writes nothing the emitting thread caches. For the worker thread of an
 * SL_STAGE_EXTERNAL producer (handle_timer), which must not touch the outputs its stage's thread owns. */
uint64_t sl_ctx_demand_peek(sl_ctx_t *ctx);

/*
 * SL_STAGE_EXTERNAL producers, from their one event thread: waits up to timeout_ns for demand and ring
 * room on every output, then writes the event into the channel(s) and publishes it, so it survives a
 * crash of the worker as soon as this returns. Returns 0; SL_ETIMEDOUT when no demand or room came in
 * time (nothing was emitted: the caller applies its overflow policy); SL_ECANCELED when the instance is
 * stopping; SL_EMSGSIZE when it can never fit.
 */
int sl_emit_wait(sl_ctx_t *ctx, const sl_emit_t *em, uint64_t timeout_ns);
/*
 * Same thread: writes the event beyond the demand, into the channel's overdraft of at most `overdraft`
 * events past the grant (design: the `pause` policy keeps the event in hand this way, in shared memory,
 * so a crash of the worker cannot lose it). Returns 0, or SL_EAGAIN when the overdraft or the ring is full.
 */
int sl_emit_overdraft(sl_ctx_t *ctx, const sl_emit_t *em, uint32_t overdraft);

/*
 * Routes a failed event to the node's dead-letter sink (the `dead_letter:` of its node), with the reason
 * (a short stable word: "bad_json", "oversize", "unroutable", "kafka_permanent", "crashed_stage", ...)
 * and a human-readable error text, as attributes dl_reason, dl_stage and dl_error beside the event's own.
 * The event counts as failed either way; without a dead-letter sink it is logged (rate-limited, with the
 * running count) instead. The caller still acknowledges the event (sync stages: by returning).
 * Returns 0, or what sl_emit() returns for the dead-letter channel.
 */
int sl_dead_letter(sl_ctx_t *ctx, const sl_event_t *ev, const char *reason, const char *error);

/* SL_STAGE_ASYNC_ACK consumers: acknowledges one event handed to handle_events, by its token, in any
 * order. Returns 0, or SL_EINVAL for a token that is not outstanding. Worker thread only. */
int sl_ack(sl_ctx_t *ctx, uint64_t token);

/* SL_STAGE_ASYNC_ACK consumers: how many events the runtime hands over on one input before it waits for
 * acknowledgements (the acknowledgement window). A batching sink must write its batches before it holds
 * that many, or it waits for a timeout. Any stage callback, init included. */
uint64_t sl_ctx_hold_limit(const sl_ctx_t *ctx);
/* SL_STAGE_ASYNC_ACK consumers: the place of an outstanding event in the acknowledgement windows, in
 * [0, sl_ctx_ack_slots(ctx)), shared by no other event handed over and not yet acknowledged, so a sink can
 * keep per-event state in one flat array (no allocation, no free list). Any stage callback. */
uint64_t sl_ctx_ack_slots(const sl_ctx_t *ctx);
uint64_t sl_ctx_ack_slot(const sl_ctx_t *ctx, uint64_t token);

/* Events already published on the instance's first output (by it and its predecessors): where a
 * restarted producer resumes. */
uint64_t sl_ctx_published(sl_ctx_t *ctx);

const sl_conf_node_t *sl_ctx_node(const sl_ctx_t *ctx);
const char *sl_ctx_name(const sl_ctx_t *ctx); /* "relay#1" */
uint32_t sl_ctx_instance(const sl_ctx_t *ctx);
bool sl_ctx_stopping(const sl_ctx_t *ctx);                  /* shutdown requested: producers stop taking input */
void sl_ctx_set_timer(sl_ctx_t *ctx, uint64_t deadline_ns); /* monotonic; 0 = none */
/* Asks the master for the draining shutdown an operator's SIGTERM starts (a sink that reached a limit).
 * Does nothing when this worker's master is gone. */
void sl_ctx_request_shutdown(sl_ctx_t *ctx);
/* Counts events that failed (bad input, dead-lettered) for the statistics. */
void sl_ctx_count_failed(sl_ctx_t *ctx, uint64_t n);

/* ---- metrics of a stage's own ------------------------------------------------------------------- */

typedef enum sl_metric_kind_e { SL_METRIC_COUNTER = 0, SL_METRIC_GAUGE = 1 } sl_metric_kind_t;

#define SL_STAGE_METRICS 12 /* metrics of its own per instance */
#define SL_METRIC_NAME_MAX 48
#define SL_METRIC_HELP_MAX 104

/*
 * Registers a metric that only this stage type knows (a source's pauses, a sink's retries) in the instance's
 * shared stats slot; the master serves it at /metrics as `sluice_<name>{pipeline,node,instance}` with help as
 * its HELP text (cut to SL_METRIC_HELP_MAX - 1 bytes). name is [a-z_][a-z0-9_]*, shorter than
 * SL_METRIC_NAME_MAX, and by Prometheus convention a counter's ends in `_total`; stage types prefix it with
 * their own (`mqtt_`, `kafka_`, `file_`).
 * Returns the metric's value word, which any thread of the instance may update with relaxed atomics
 * (atomic_fetch_add_explicit / atomic_store_explicit, no lock, no system call); or NULL (logged) when the
 * name is invalid or the slot's SL_STAGE_METRICS are taken. The value survives restarts of the instance:
 * registering the same name again returns the same word, so counters stay cumulative like the built-in
 * ones. Worker thread, from init (before the stage starts threads of its own).
 */
_Atomic uint64_t *sl_ctx_metric(sl_ctx_t *ctx, const char *name, sl_metric_kind_t kind, const char *help);

/* ---- statistics (shared memory, one slot per instance) ------------------------------------------ */

/* Latency histogram: microseconds in log-linear buckets, 8 per power of two, so a bucket is at most 12.5%
 * wide; 0-7 us exact, the last bucket (from about 4.7 hours) takes everything above. */
#define SL_LAT_BUCKETS 256
static inline unsigned sl_lat_bucket(uint64_t us)
{
    if (us < 8)
        return (unsigned)us;
    unsigned e = 63u - (unsigned)__builtin_clzll(us);
    unsigned b = (e - 2) * 8 + (unsigned)((us >> (e - 3)) & 7);
    return b < SL_LAT_BUCKETS ? b : SL_LAT_BUCKETS - 1;
}
/* Adds one event ingested at ingest_ns (wall clock) and acknowledged at now_ns to h. */
static inline void sl_lat_add(uint64_t *h, uint64_t now_ns, uint64_t ingest_ns)
{
    h[sl_lat_bucket(now_ns > ingest_ns ? (now_ns - ingest_ns) / 1000 : 0)]++;
}
/* The q-quantile (0 < q <= 1) of histogram h in microseconds: the upper bound of the bucket that holds it
 * (so at most 12.5% high, never low); 0 when h is empty. */
uint64_t sl_lat_quantile_us(const uint64_t *h, double q);

typedef struct sl_stats_slot_s {
    _Alignas(SL_CACHELINE) char name[48];
    _Atomic int32_t pid;
    _Atomic uint32_t state; /* SL_INST_* */
    /* Written by the worker. */
    _Alignas(SL_CACHELINE) _Atomic uint64_t events_in;
    _Atomic uint64_t events_out;
    _Atomic uint64_t bytes_in;
    _Atomic uint64_t bytes_out;
    _Atomic uint64_t failed;
    _Atomic uint64_t redelivered; /* events delivered again after a restart (duplicates) */
    _Atomic uint64_t corrupt;     /* corrupt records skipped (bytes) */
    _Atomic uint64_t heartbeat_ns;
    _Atomic uint64_t quarantined; /* events that crashed the instance twice, sent to dead-letter */
    /* The event being replayed alone after a crash: input << 48 | cumulative event number + 1; 0 = none.
     * If the instance dies while it is set, its successor knows which event killed it. */
    _Atomic uint64_t suspect;
    /* Written by the master. */
    _Alignas(SL_CACHELINE) _Atomic uint64_t restarts;
    _Atomic int32_t last_status; /* wait status of the last exit */
    _Atomic uint32_t last_cause; /* SL_CAUSE_* of the last exit */
    _Atomic uint32_t stop;       /* shutdown requested: a producer stops taking input */
    /* Sinks under metrics.latency: events by latency from ingest to acknowledgement (sl_lat_bucket). One
     * writer (the worker), plain counters: the master reads them for the final summary, after the exit. */
    _Alignas(SL_CACHELINE) uint64_t lat[SL_LAT_BUCKETS];
    /* Metrics of the stage's own (sl_ctx_metric): entries [0, n_metrics) are set up; each entry's name, help
     * and kind are written before n_metrics is raised past it (release), and never change after. */
    _Alignas(SL_CACHELINE) _Atomic uint32_t n_metrics;
    struct sl_stage_metric_s {
        char name[SL_METRIC_NAME_MAX];
        char help[SL_METRIC_HELP_MAX];
        uint32_t kind; /* sl_metric_kind_t */
        _Atomic uint64_t value;
    } metric[SL_STAGE_METRICS];
} sl_stats_slot_t;

/* Why an instance last ended; the poison check trusts only causes the event itself can have caused. */
#define SL_CAUSE_MAP(X)                                                                                  \
    X(NONE, "none")                                                                                      \
    X(NORMAL, "finished")                                                                                \
    X(FATAL, "cannot start")                                                                             \
    X(FAULT, "crashed")                  /* SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGTRAP, SIGSYS */ \
    X(EXIT_CODE, "exited with an error") /* any other non-zero exit */                                   \
    X(WATCHDOG, "hung (watchdog)")                                                                       \
    X(KILLED, "killed from outside") /* SIGKILL/SIGTERM we did not send: OOM killer, an operator */      \
    X(SUPERVISOR, "stopped by its supervisor")

typedef enum sl_cause_e {
#define SL_CAUSE_ENUM(name, text) SL_CAUSE_##name,
    SL_CAUSE_MAP(SL_CAUSE_ENUM)
#undef SL_CAUSE_ENUM
} sl_cause_t;

const char *sl_cause_name(sl_cause_t c);

/* ---- runtime: topology, workers, master ---------------------------------------------------------- */

typedef struct sl_runtime_s sl_runtime_t;

/*
 * Builds the runtime topology of a validated config: one instance per node and concurrency, one channel
 * per (producer instance, consumer instance) pair of every edge, a bell per instance, a stats slot per
 * instance. Returns 0 and *out, or a negative code (logged). Master process, before forking. The config
 * must outlive the runtime.
 */
int sl_runtime_new(const sl_config_t *cfg, sl_runtime_t **out);
void sl_runtime_destroy(sl_runtime_t *rt);

/*
 * Forks every worker, supervises them until the pipeline has drained (every worker exited 0) or
 * supervision gave up. Prints a summary line every cfg->summary_interval_ns to stderr. Handles SIGTERM
 * and SIGINT as a draining shutdown. Returns the process exit status: 0 when everything drained.
 */
int sl_runtime_run(sl_runtime_t *rt);

/* Totals over the instances of a node, for summaries and tests. */
typedef struct sl_node_totals_s {
    uint64_t events_in, events_out, bytes_in, bytes_out, failed, redelivered, restarts, quarantined;
    uint64_t queued; /* events published to its inputs and not yet acknowledged */
    uint64_t demand; /* events it asked for on its inputs and has not been sent yet */
} sl_node_totals_t;
void sl_runtime_node_totals(const sl_runtime_t *rt, size_t node, sl_node_totals_t *t);

#endif /* SL_STAGES_H */
