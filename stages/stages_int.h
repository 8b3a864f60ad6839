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
int sl__out_emit(sl_inst_t *inst, sl_stash_t *st, const sl_emit_t *em, const sl_rec_t *raw);
int sl__out_flush_stash(sl_inst_t *inst, sl_stash_t *st);
uint64_t sl__out_demand(sl_inst_t *inst);
uint64_t sl__out_publish(sl_inst_t *inst);
bool sl__out_ready(sl_inst_t *inst, const sl_stash_t *st);
void sl__out_close(sl_inst_t *inst);
void sl__out_kick(sl_inst_t *inst);

#endif /* SL_STAGES_INT_H */
