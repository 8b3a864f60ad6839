/*
 * Internals of the stage runtime shared by dispatch.c, worker.c, runtime.c and master.c.
 */
#ifndef SL_STAGES_INT_H
#define SL_STAGES_INT_H

#include <poll.h>
#include <signal.h>

#include "stages/stages.h"

/* The channels from one producer instance to the instances of one downstream node. */
typedef struct sl_out_group_s {
    sl_dispatcher_t kind;
    uint32_t n;
    sl_chan_t **chans; /* [n], one per consumer instance */
    bool by_key;       /* partition on the record key, else on attribute attr */
    const char *attr;
    size_t attr_len;
    bool dead_letter;   /* the group to the node's dead-letter sink: only sl_dead_letter() uses it */
    uint32_t cur;       /* demand dispatcher: the channel being filled */
    uint64_t cur_grant; /* events it may still take before we look again */
} sl_out_group_t;

/* A bounded FIFO of emitted events that had no demand or room yet (GenStage's producer buffer). It is
 * allocated once per instance; the worker takes no input while it holds anything, so it never grows past
 * what one batch of input can emit. */
typedef struct sl_stash_s {
    uint8_t *buf;
    size_t cap, head, tail; /* entries live in [head, tail) */
    uint64_t events;
} sl_stash_t;

#define SL_STASH_ANY UINT32_MAX

/* Acknowledgement window of one input (ack.c). */
typedef struct sl_ackwin_s {
    uint64_t *end_pos; /* [cap]: byte cursor just after the event */
    uint8_t *done;     /* [cap] */
    uint64_t cap;      /* a power of two */
    uint64_t base;     /* cumulative number of the oldest unacknowledged event (= committed events) */
    uint64_t next;     /* cumulative number of the next event to take */
} sl_ackwin_t;

int sl__ackwin_init(sl_ackwin_t *w, uint64_t cap, uint64_t start);
void sl__ackwin_free(sl_ackwin_t *w);
static inline bool sl__ackwin_full(const sl_ackwin_t *w) { return w->next - w->base >= w->cap; }
/* Records a taken event ending at byte cursor end_pos; returns its number. */
uint64_t sl__ackwin_push(sl_ackwin_t *w, uint64_t end_pos);
/* Marks event idx acknowledged; SL_EINVAL when it is not in the window. */
int sl__ackwin_ack(sl_ackwin_t *w, uint64_t idx);
/* Moves over the acknowledged prefix; returns true and the new commit point when it moved. */
bool sl__ackwin_advance(sl_ackwin_t *w, uint64_t *pos, uint64_t *events);

/* Supervision state machines (supervisor.c): X(name, text). Each transition is looked up in a table
 * and logged at debug level; an event a state does not expect is a bug (asserted). */
#define SL_INST_STATE_MAP(X)                                                                                   \
    X(DOWN, "down") /* not running; its supervisor decides whether it starts again */                          \
    X(RUNNING, "running")                                                                                      \
    X(STOPPING, "stopping") /* killed by its supervisor (group restart or escalation); waiting for the exit */ \
    X(DONE, "done")         /* exited 0 after draining: final */                                               \
    X(FAILED, "failed")     /* never started again: cannot start, temporary, or supervision gave up */

#define SL_INST_EVENT_MAP(X)    \
    X(START, "start")           \
    X(EXIT_NORMAL, "exit 0")    \
    X(EXIT_FATAL, "fatal exit") \
    X(CRASH, "crash")           \
    X(TERMINATE, "terminate")   \
    X(GIVE_UP, "give up")

typedef enum sl_inst_state_e {
#define SL_X(name, text) SL_INST_##name,
    SL_INST_STATE_MAP(SL_X)
#undef SL_X
        SL_INST__STATES
} sl_inst_state_t;

typedef enum sl_inst_event_e {
#define SL_X(name, text) SL_IEV_##name,
    SL_INST_EVENT_MAP(SL_X)
#undef SL_X
        SL_IEV__EVENTS
} sl_inst_event_t;

#define SL_GROUP_STATE_MAP(X)                                                                             \
    X(RUNNING, "running")                                                                                 \
    X(RESTARTING, "restarting") /* waiting for stopping instances to exit, then starting them in order */ \
    X(ESCALATED, "escalated")   /* intensity exceeded: instances terminated, the root decides */          \
    X(DONE, "done")                                                                                       \
    X(FAILED, "failed")

#define SL_GROUP_EVENT_MAP(X)                                                     \
    X(RESTART, "restart") /* strategy restart of some instances (counted once) */ \
    X(STARTED, "started") /* every instance that was to restart runs again */     \
    X(INTENSITY, "intensity exceeded")                                            \
    X(ROOT_RESTART, "root restarts it")                                           \
    X(GIVE_UP, "give up")                                                         \
    X(ALL_DONE, "all done")

typedef enum sl_group_state_e {
#define SL_X(name, text) SL_GROUP_##name,
    SL_GROUP_STATE_MAP(SL_X)
#undef SL_X
        SL_GROUP__STATES
} sl_group_state_t;

typedef enum sl_group_event_e {
#define SL_X(name, text) SL_GEV_##name,
    SL_GROUP_EVENT_MAP(SL_X)
#undef SL_X
        SL_GEV__EVENTS
} sl_group_event_t;

/* Restart intensity: at most max restarts within window_ns (OTP's MaxR in MaxT). */
typedef struct sl_intensity_s {
    uint64_t *times; /* ring of the last max restart times */
    uint32_t max, pos;
    uint64_t window_ns;
} sl_intensity_t;

typedef struct sl_inst_s {
    size_t node; /* index in cfg->nodes */
    uint32_t index;
    char name[48];
    const sl_stage_ops_t *ops;
    sl_chan_t **in;
    uint32_t n_in;
    sl_out_group_t *out;
    uint32_t n_out;
    size_t max_record; /* the smallest largest-record of its output channels: anything up to it fits all */
    sl_bell_t *bell;
    sl_stats_slot_t *stats;
    sl_chan_t *single; /* worker side: sl__out_single(), for emission's fast path */
    /* Master side. */
    pid_t pid;
    sl_inst_state_t state;
    uint64_t started_ns;
    bool watchdog_fired; /* the master killed it for a stale heartbeat */
} sl_inst_t;

/* The supervisor of one node's instances. */
typedef struct sl_group_s {
    size_t node, first, n; /* instances [first, first + n) of rt->inst, in start order */
    const sl_conf_sup_t *sup;
    sl_group_state_t state;
    sl_intensity_t intensity;
    size_t restart_from; /* RESTARTING: instances [restart_from, n) start again once none is stopping */
} sl_group_t;

/* The master's HTTP endpoint (metrics.c). */
#define SL_HTTP_CLIENTS 8
typedef struct sl_http_client_s {
    int fd;
    size_t len;
    unsigned polls;
    char req[2048];
} sl_http_client_t;

typedef struct sl_http_s {
    int listen_fd;
    sl_http_client_t client[SL_HTTP_CLIENTS];
} sl_http_t;

/* The master: the root supervisor and the process loop (master.c, supervisor.c). */
typedef struct sl_master_s {
    sl_runtime_t *rt;
    sl_group_t *groups;       /* one per node, in start order (config order) */
    sl_intensity_t intensity; /* the root's, from the top-level supervision section */
    bool stopping;
    bool failed;
    uint64_t deadline_ns;
    uint64_t last_summary_ns;
    uint64_t *last_counts;
    char why[256]; /* first reason for a non-zero exit */
    sl_http_t http;
} sl_master_t;

/* metrics.c: /metrics and /healthz, served from the master's poll loop. */
int sl__http_start(sl_http_t *h, const char *hostport);
void sl__http_stop(sl_http_t *h);
/* Fills pfd (room for 1 + SL_HTTP_CLIENTS) with the sockets to poll; returns how many. */
size_t sl__http_pollfds(sl_http_t *h, struct pollfd *pfd);
/* Accepts, reads and answers what is ready; never blocks. */
void sl__http_serve(sl_master_t *m, sl_http_t *h);

/* supervisor.c */
int sl__sup_init(sl_master_t *m);
void sl__sup_free(sl_master_t *m);
/* Starts every instance in start order. */
void sl__sup_start_all(sl_master_t *m);
/* A worker exited with wait status `status`. */
void sl__sup_on_exit(sl_master_t *m, sl_inst_t *inst, int status);
/* Periodic duties: the watchdog. */
void sl__sup_tick(sl_master_t *m, uint64_t now);
/* Spawns inst (master.c); returns 0 or a negative code. */
int sl__master_spawn(sl_master_t *m, sl_inst_t *inst);
/* Begins the draining shutdown (master.c); failure records why for the exit status. */
void sl__master_shutdown(sl_master_t *m, const char *why, bool failure);

struct sl_runtime_s {
    const sl_config_t *cfg;
    sl_inst_t *inst;
    size_t n_inst;
    size_t *node_first; /* first instance of each node; node_first[n_nodes] = n_inst */
    sl_chan_t **chans;
    size_t n_chans;
    sl_bell_t *bells;
    sl_stats_slot_t *stats;
    pid_t master_pid;
    char **chan_paths;  /* channels.dir: the file of each channel (NULL entries in memory) */
    int dir_lock;       /* channels.dir: the lock file held while this runtime uses the directory, or -1 */
    uint64_t recovered; /* events found unacknowledged in recovered channel files */
};

/* After a clean drain: removes the channel files (they hold nothing any more). */
void sl__runtime_forget_channels(sl_runtime_t *rt);

/* The worker side of an instance: runs it to completion in the current (forked) process and returns the
 * exit code: 0 after a drain, SL_EXIT_FATAL when it cannot start. Crashes do not return. */
int sl__worker_main(sl_runtime_t *rt, sl_inst_t *inst);

/* Dispatch (dispatch.c), used by the worker. */
int sl__stash_init(sl_stash_t *st, size_t cap);
void sl__stash_free(sl_stash_t *st);
static inline bool sl__stash_empty(const sl_stash_t *st) { return st->head == st->tail; }
/* Emits into the normal output groups, or (dead_letter) into the dead-letter group only. */
int sl__out_emit(sl_inst_t *inst, sl_stash_t *st, const sl_emit_t *em, const sl_rec_t *raw, bool dead_letter);
int sl__out_flush_stash(sl_inst_t *inst, sl_stash_t *st);
uint64_t sl__out_demand(sl_inst_t *inst);
/* The same without touching the producer side's cached grants (another thread of the instance may own
 * them). */
uint64_t sl__out_demand_peek(sl_inst_t *inst);
/* Ring bytes the outputs can take now: per group, the sum over its channels (demand) or the smallest
 * (broadcast, partition); the smallest group counts. The dead-letter group is left out. */
uint64_t sl__out_room(sl_inst_t *inst);
uint64_t sl__out_publish(sl_inst_t *inst);
bool sl__out_ready(sl_inst_t *inst, const sl_stash_t *st);
void sl__out_close(sl_inst_t *inst);
void sl__out_kick(sl_inst_t *inst);
/* Rings every consumer's bell (if it sleeps) without touching the producer side's state: for a thread of
 * the producing process other than the one that publishes. */
void sl__out_ring(sl_inst_t *inst);
/* True when an event of need record bytes would find demand and room in every output group now (a
 * partitioned group: in some partition). Registers for a wake-up where room is short. */
bool sl__out_can_direct(sl_inst_t *inst, size_t need);
/* The one channel every event of the instance goes to (one output group of one channel, a dead-letter
 * group aside), or NULL. */
sl_chan_t *sl__out_single(const sl_inst_t *inst);
/* Writes the event straight into its channel(s), never the stash, or nothing: SL_EAGAIN when a target
 * lacks demand (beyond overdraft) or room. targets has room for one entry per output group. */
int sl__out_emit_direct(sl_inst_t *inst, uint32_t *targets, const sl_emit_t *em, uint32_t overdraft);

#endif /* SL_STAGES_INT_H */
