/*
 * Internals of the stage runtime shared by dispatch.c, worker.c, runtime.c and master.c.
 */
#ifndef SL_STAGES_INT_H
#define SL_STAGES_INT_H

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

typedef enum sl_inst_state_e {
    SL_INST_DOWN = 0,
    SL_INST_RUNNING = 1,
    SL_INST_DONE = 2,   /* exited 0 after draining */
    SL_INST_FAILED = 3, /* gave up: fatal exit or restart intensity exceeded */
} sl_inst_state_t;

typedef struct sl_inst_s {
    size_t node; /* index in cfg->nodes */
    uint32_t index;
    char name[48];
    const sl_stage_ops_t *ops;
    sl_chan_t **in;
    uint32_t n_in;
    sl_out_group_t *out;
    uint32_t n_out;
    sl_bell_t *bell;
    sl_stats_slot_t *stats;
    /* Master side. */
    pid_t pid;
    sl_inst_state_t state;
    uint64_t started_ns;
    uint64_t *restart_times; /* ring of the last max_restarts restart times */
    uint32_t restart_pos;
} sl_inst_t;

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
};

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
uint64_t sl__out_publish(sl_inst_t *inst);
bool sl__out_ready(sl_inst_t *inst, const sl_stash_t *st);
void sl__out_close(sl_inst_t *inst);
void sl__out_kick(sl_inst_t *inst);
/* Writes the event straight into its channel(s), never the stash, or nothing: SL_EAGAIN when a target
 * lacks demand (beyond overdraft) or room. targets has room for one entry per output group. */
int sl__out_emit_direct(sl_inst_t *inst, uint32_t *targets, const sl_emit_t *em, uint32_t overdraft);

#endif /* SL_STAGES_INT_H */
