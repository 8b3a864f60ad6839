/*
 * Supervision (OTP semantics) over the stage instances: the root supervisor, one group supervisor per
 * node, and the instances.
 *
 * Invariants:
 *  - Instance and group states change only through sl__inst_go() / sl__group_go(), which look the
 *    transition up in an explicit state/event table and log it at debug level (s6, PostgreSQL's
 *    UpdatePMState). An unexpected event is a bug and is asserted.
 *  - A group restart counts once against the group's intensity, however many instances it restarts;
 *    instances the supervisor stops itself are not crashes and count nothing.
 *  - Instances start in start order (config order: sources, stages, sinks; instance index within a node)
 *    and are terminated in reverse start order.
 *  - A group whose intensity is exceeded terminates its instances and escalates to the root, which
 *    restarts it under its own strategy and intensity; past the root's intensity, sluice drains what can
 *    be drained and exits non-zero naming the group.
 *  - Exit 0 is a finished drain and is final for every restart type; "cannot start" is final and stops
 *    the pipeline; a temporary instance is never restarted.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "stages/stages_int.h"

static const char *const sl__inst_state_names[] = {
#define SL_X(name, text) text,
    SL_INST_STATE_MAP(SL_X)
#undef SL_X
};
static const char *const sl__inst_event_names[] = {
#define SL_X(name, text) text,
    SL_INST_EVENT_MAP(SL_X)
#undef SL_X
};
static const char *const sl__group_state_names[] = {
#define SL_X(name, text) text,
    SL_GROUP_STATE_MAP(SL_X)
#undef SL_X
};
static const char *const sl__group_event_names[] = {
#define SL_X(name, text) text,
    SL_GROUP_EVENT_MAP(SL_X)
#undef SL_X
};
static const char *const sl__cause_names[] = {
#define SL_X(name, text) text,
    SL_CAUSE_MAP(SL_X)
#undef SL_X
};

const char *sl_cause_name(sl_cause_t c)
{
    return (unsigned)c < SL_ARRAY_LEN(sl__cause_names) ? sl__cause_names[c] : "?";
}

#define SL__NO (-1)

/* next[state][event]: the state an instance moves to, or SL__NO when the event cannot happen there. */
static const int sl__inst_next[SL_INST__STATES][SL_IEV__EVENTS] = {
    [SL_INST_DOWN] = {[SL_IEV_START] = SL_INST_RUNNING,
                      [SL_IEV_EXIT_NORMAL] = SL__NO,
                      [SL_IEV_EXIT_FATAL] = SL__NO,
                      [SL_IEV_CRASH] = SL__NO,
                      [SL_IEV_TERMINATE] = SL__NO,
                      [SL_IEV_GIVE_UP] = SL_INST_FAILED},
    [SL_INST_RUNNING] = {[SL_IEV_START] = SL__NO,
                         [SL_IEV_EXIT_NORMAL] = SL_INST_DONE,
                         [SL_IEV_EXIT_FATAL] = SL_INST_FAILED,
                         [SL_IEV_CRASH] = SL_INST_DOWN,
                         [SL_IEV_TERMINATE] = SL_INST_STOPPING,
                         [SL_IEV_GIVE_UP] = SL__NO},
    [SL_INST_STOPPING] = {[SL_IEV_START] = SL__NO,
                          [SL_IEV_EXIT_NORMAL] = SL_INST_DONE,
                          [SL_IEV_EXIT_FATAL] = SL_INST_FAILED,
                          [SL_IEV_CRASH] = SL_INST_DOWN,
                          [SL_IEV_TERMINATE] = SL_INST_STOPPING,
                          [SL_IEV_GIVE_UP] = SL__NO},
    [SL_INST_DONE] = {[SL_IEV_START] = SL__NO,
                      [SL_IEV_EXIT_NORMAL] = SL__NO,
                      [SL_IEV_EXIT_FATAL] = SL__NO,
                      [SL_IEV_CRASH] = SL__NO,
                      [SL_IEV_TERMINATE] = SL_INST_DONE,
                      [SL_IEV_GIVE_UP] = SL_INST_DONE},
    [SL_INST_FAILED] = {[SL_IEV_START] = SL__NO,
                        [SL_IEV_EXIT_NORMAL] = SL__NO,
                        [SL_IEV_EXIT_FATAL] = SL__NO,
                        [SL_IEV_CRASH] = SL__NO,
                        [SL_IEV_TERMINATE] = SL_INST_FAILED,
                        [SL_IEV_GIVE_UP] = SL_INST_FAILED},
};

static const int sl__group_next[SL_GROUP__STATES][SL_GEV__EVENTS] = {
    [SL_GROUP_RUNNING] = {[SL_GEV_RESTART] = SL_GROUP_RESTARTING,
                          [SL_GEV_STARTED] = SL_GROUP_RUNNING,
                          [SL_GEV_INTENSITY] = SL_GROUP_ESCALATED,
                          [SL_GEV_ROOT_RESTART] = SL_GROUP_RESTARTING,
                          [SL_GEV_GIVE_UP] = SL_GROUP_FAILED,
                          [SL_GEV_ALL_DONE] = SL_GROUP_DONE},
    [SL_GROUP_RESTARTING] = {[SL_GEV_RESTART] = SL_GROUP_RESTARTING,
                             [SL_GEV_STARTED] = SL_GROUP_RUNNING,
                             [SL_GEV_INTENSITY] = SL_GROUP_ESCALATED,
                             [SL_GEV_ROOT_RESTART] = SL_GROUP_RESTARTING,
                             [SL_GEV_GIVE_UP] = SL_GROUP_FAILED,
                             [SL_GEV_ALL_DONE] = SL_GROUP_DONE},
    [SL_GROUP_ESCALATED] = {[SL_GEV_RESTART] = SL_GROUP_ESCALATED,
                            [SL_GEV_STARTED] = SL__NO,
                            [SL_GEV_INTENSITY] = SL_GROUP_ESCALATED,
                            [SL_GEV_ROOT_RESTART] = SL_GROUP_RESTARTING,
                            [SL_GEV_GIVE_UP] = SL_GROUP_FAILED,
                            [SL_GEV_ALL_DONE] = SL_GROUP_DONE},
    [SL_GROUP_DONE] = {[SL_GEV_RESTART] = SL__NO,
                       [SL_GEV_STARTED] = SL__NO,
                       [SL_GEV_INTENSITY] = SL__NO,
                       [SL_GEV_ROOT_RESTART] = SL__NO,
                       [SL_GEV_GIVE_UP] = SL_GROUP_DONE,
                       [SL_GEV_ALL_DONE] = SL_GROUP_DONE},
    [SL_GROUP_FAILED] = {[SL_GEV_RESTART] = SL_GROUP_FAILED,
                         [SL_GEV_STARTED] = SL__NO,
                         [SL_GEV_INTENSITY] = SL_GROUP_FAILED,
                         [SL_GEV_ROOT_RESTART] = SL__NO,
                         [SL_GEV_GIVE_UP] = SL_GROUP_FAILED,
                         [SL_GEV_ALL_DONE] = SL_GROUP_FAILED},
};

static void sl__inst_go(sl_inst_t *inst, sl_inst_event_t ev)
{
    int next = sl__inst_next[inst->state][ev];
    assert(next != SL__NO);
    if (next == SL__NO)
        return;
    sl_log(SL_LOG_DEBUG, "supervisor", 0, "%s: %s --%s--> %s", inst->name, sl__inst_state_names[inst->state],
           sl__inst_event_names[ev], sl__inst_state_names[next]);
    inst->state = (sl_inst_state_t)next;
    atomic_store(&inst->stats->state, (uint32_t)next);
}

static void sl__group_go(sl_master_t *m, sl_group_t *g, sl_group_event_t ev)
{
    int next = sl__group_next[g->state][ev];
    assert(next != SL__NO);
    if (next == SL__NO)
        return;
    sl_log(SL_LOG_DEBUG, "supervisor", 0, "group %s: %s --%s--> %s", m->rt->cfg->nodes[g->node].name,
           sl__group_state_names[g->state], sl__group_event_names[ev], sl__group_state_names[next]);
    g->state = (sl_group_state_t)next;
}

static int sl__intensity_init(sl_intensity_t *in, uint32_t max, uint64_t window_ns)
{
    in->max = max;
    in->window_ns = window_ns;
    in->pos = 0;
    in->times = calloc(SL_MAX(max, 1u), sizeof *in->times);
    return in->times ? 0 : SL_ENOMEM;
}

/* Records a restart at now; false when it makes more than max within the window. */
static bool sl__intensity_record(sl_intensity_t *in, uint64_t now)
{
    if (in->max == 0)
        return false;
    uint64_t oldest = in->times[in->pos];
    if (oldest != 0 && now - oldest < in->window_ns)
        return false;
    in->times[in->pos] = now;
    in->pos = (in->pos + 1) % in->max;
    return true;
}

static void sl__intensity_reset(sl_intensity_t *in)
{
    memset(in->times, 0, SL_MAX(in->max, 1u) * sizeof *in->times);
    in->pos = 0;
}

int sl__sup_init(sl_master_t *m)
{
    sl_runtime_t *rt = m->rt;
    const sl_config_t *cfg = rt->cfg;
    m->groups = calloc(cfg->n_nodes, sizeof *m->groups);
    if (m->groups == NULL || sl__intensity_init(&m->intensity, cfg->sup.max_restarts, cfg->sup.max_seconds_ns))
        return SL_ENOMEM;
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        sl_group_t *g = &m->groups[i];
        g->node = i;
        g->first = rt->node_first[i];
        g->n = rt->node_first[i + 1] - g->first;
        g->sup = &cfg->nodes[i].sup;
        if (sl__intensity_init(&g->intensity, g->sup->max_restarts, g->sup->max_seconds_ns) != 0)
            return SL_ENOMEM;
    }
    return 0;
}

void sl__sup_free(sl_master_t *m)
{
    for (size_t i = 0; m->groups && i < m->rt->cfg->n_nodes; i++)
        free(m->groups[i].intensity.times);
    free(m->groups);
    free(m->intensity.times);
    m->groups = NULL;
    m->intensity.times = NULL;
}

static void sl__start(sl_master_t *m, sl_inst_t *inst)
{
    if (sl__master_spawn(m, inst) == 0) {
        sl__inst_go(inst, SL_IEV_START);
        return;
    }
    sl__inst_go(inst, SL_IEV_GIVE_UP);
    sl__master_shutdown(m, "cannot fork a worker", true);
}

void sl__sup_start_all(sl_master_t *m)
{
    for (size_t i = 0; i < m->rt->n_inst; i++)
        sl__start(m, &m->rt->inst[i]);
}

/* Terminates instances [from, n) of g that run, in reverse start order. */
static void sl__group_terminate(sl_group_t *g, sl_runtime_t *rt, size_t from)
{
    for (size_t k = g->n; k-- > from;) {
        sl_inst_t *inst = &rt->inst[g->first + k];
        if (inst->state != SL_INST_RUNNING)
            continue;
        sl__inst_go(inst, SL_IEV_TERMINATE);
        kill(inst->pid, SIGKILL);
    }
}

static bool sl__group_any(const sl_group_t *g, const sl_runtime_t *rt, sl_inst_state_t st)
{
    for (size_t k = 0; k < g->n; k++)
        if (rt->inst[g->first + k].state == st)
            return true;
    return false;
}

/* The instances of a group that is gone for good: close their outputs so consumers drain and finish. */
static void sl__group_close_outputs(sl_group_t *g, sl_runtime_t *rt)
{
    for (size_t k = 0; k < g->n; k++) {
        sl_inst_t *inst = &rt->inst[g->first + k];
        if (inst->state == SL_INST_DOWN)
            sl__inst_go(inst, SL_IEV_GIVE_UP);
        if (inst->state == SL_INST_DONE)
            continue; /* it closed them itself */
        for (uint32_t o = 0; o < inst->n_out; o++)
            for (uint32_t c = 0; c < inst->out[o].n; c++)
                sl_chan_mark_closed(inst->out[o].chans[c]);
    }
}

/* Moves a group on once its stopping instances are down: restart them in start order, or (given up)
 * close its outputs. */
static void sl__group_settle(sl_master_t *m, sl_group_t *g)
{
    sl_runtime_t *rt = m->rt;
    if (sl__group_any(g, rt, SL_INST_STOPPING))
        return;
    if (g->state == SL_GROUP_FAILED) {
        sl__group_close_outputs(g, rt);
        return;
    }
    if (g->state != SL_GROUP_RESTARTING)
        return;
    for (size_t k = g->restart_from; k < g->n; k++) {
        sl_inst_t *inst = &rt->inst[g->first + k];
        if (inst->state != SL_INST_DOWN)
            continue;
        atomic_fetch_add(&inst->stats->restarts, 1);
        sl__start(m, inst);
    }
    sl__group_go(m, g, SL_GEV_STARTED);
}

/* The root gives up: the group stays down, and the pipeline drains what it can and exits non-zero. */
static void sl__root_give_up(sl_master_t *m, sl_group_t *g, const char *what)
{
    const char *name = m->rt->cfg->nodes[g->node].name;
    char why[200];
    snprintf(why, sizeof why, "supervision gave up on \"%s\": %s", name, what);
    sl_log(SL_LOG_ERROR, "supervisor", 0, "%s", why);
    sl__group_go(m, g, SL_GEV_GIVE_UP);
    sl__group_terminate(g, m->rt, 0);
    sl__group_settle(m, g);
    sl__master_shutdown(m, why, true);
}

/* Group g exceeded its intensity: the root restarts it (and others, by the root's strategy) or gives up. */
static void sl__root_escalate(sl_master_t *m, sl_group_t *g)
{
    const sl_config_t *cfg = m->rt->cfg;
    if (!sl__intensity_record(&m->intensity, sl_now_ns())) {
        char what[128];
        snprintf(what, sizeof what, "the root's intensity (%u restarts in %.1fs) is exceeded too",
                 cfg->sup.max_restarts, (double)cfg->sup.max_seconds_ns / 1e9);
        sl__root_give_up(m, g, what);
        return;
    }
    size_t gi = (size_t)(g - m->groups);
    for (size_t k = cfg->n_nodes; k-- > 0;) {
        bool mine = k == gi || cfg->sup.strategy == SL_STRATEGY_ONE_FOR_ALL ||
                    (cfg->sup.strategy == SL_STRATEGY_REST_FOR_ONE && k > gi);
        sl_group_t *o = &m->groups[k];
        if (!mine || o->state == SL_GROUP_DONE || o->state == SL_GROUP_FAILED)
            continue;
        sl_log(SL_LOG_WARN, "supervisor", 0, "root (%s): restarting group %s", sl_strategy_name(cfg->sup.strategy),
               cfg->nodes[k].name);
        sl__group_terminate(o, m->rt, 0);
        sl__group_go(m, o, SL_GEV_ROOT_RESTART);
        sl__intensity_reset(&o->intensity);
        o->restart_from = 0;
    }
    for (size_t k = 0; k < cfg->n_nodes; k++)
        sl__group_settle(m, &m->groups[k]);
}

/* A crash of instance k of g: restart by the group's strategy, within its intensity. */
static void sl__group_on_crash(sl_master_t *m, sl_group_t *g, sl_inst_t *inst)
{
    const sl_conf_node_t *node = &m->rt->cfg->nodes[g->node];
    if (g->sup->restart == SL_RESTART_TEMPORARY) {
        sl_log(SL_LOG_WARN, "supervisor", 0, "%s: temporary: not restarted", inst->name);
        sl__inst_go(inst, SL_IEV_GIVE_UP);
        for (uint32_t o = 0; o < inst->n_out; o++)
            for (uint32_t c = 0; c < inst->out[o].n; c++)
                sl_chan_mark_closed(inst->out[o].chans[c]);
        return;
    }
    if (g->state == SL_GROUP_ESCALATED || g->state == SL_GROUP_FAILED)
        return; /* being torn down: the root decides what happens next */
    if (!sl__intensity_record(&g->intensity, sl_now_ns())) {
        sl_log(SL_LOG_ERROR, "supervisor", 0,
               "group %s: more than %u restarts in %.1fs; terminating its instances and escalating", node->name,
               g->sup->max_restarts, (double)g->sup->max_seconds_ns / 1e9);
        sl__group_go(m, g, SL_GEV_INTENSITY);
        sl__group_terminate(g, m->rt, 0);
        sl__root_escalate(m, g);
        return;
    }
    size_t k = (size_t)(inst - &m->rt->inst[g->first]);
    size_t from = k;
    if (g->sup->strategy == SL_STRATEGY_ONE_FOR_ALL)
        from = 0;
    if (g->state == SL_GROUP_RESTARTING)
        from = SL_MIN(from, g->restart_from);
    g->restart_from = from;
    sl__group_go(m, g, SL_GEV_RESTART);
    if (g->sup->strategy != SL_STRATEGY_ONE_FOR_ONE) {
        sl_log(SL_LOG_INFO, "supervisor", 0, "group %s (%s): restarting %s", node->name,
               sl_strategy_name(g->sup->strategy),
               g->sup->strategy == SL_STRATEGY_ONE_FOR_ALL ? "every instance" : "it and the instances after it");
        sl__group_terminate(g, m->rt, from);
    }
    sl__group_settle(m, g);
}

static sl_cause_t sl__classify(const sl_inst_t *inst, int status)
{
    if (inst->state == SL_INST_STOPPING)
        return SL_CAUSE_SUPERVISOR;
    if (inst->watchdog_fired)
        return SL_CAUSE_WATCHDOG;
    if (WIFEXITED(status))
        return WEXITSTATUS(status) == 0               ? SL_CAUSE_NORMAL
               : WEXITSTATUS(status) == SL_EXIT_FATAL ? SL_CAUSE_FATAL
                                                      : SL_CAUSE_EXIT_CODE;
    switch (WTERMSIG(status)) {
    case SIGSEGV:
    case SIGBUS:
    case SIGABRT:
    case SIGFPE:
    case SIGILL:
    case SIGTRAP:
    case SIGSYS: return SL_CAUSE_FAULT;
    default: return SL_CAUSE_KILLED;
    }
}

static void sl__log_exit(const sl_inst_t *inst, int status, sl_cause_t cause)
{
    if (cause == SL_CAUSE_NORMAL || cause == SL_CAUSE_SUPERVISOR) {
        sl_log(SL_LOG_DEBUG, "supervisor", 0, "%s: %s", inst->name, sl_cause_name(cause));
    } else if (cause == SL_CAUSE_FATAL) {
        sl_log(SL_LOG_ERROR, "supervisor", 0, "%s: cannot start (exit %d); not restarted", inst->name, SL_EXIT_FATAL);
    } else if (WIFSIGNALED(status)) {
        sl_log(SL_LOG_WARN, "supervisor", 0, "%s: crashed: killed by signal %d (%s)%s%s", inst->name, WTERMSIG(status),
               strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "",
               cause == SL_CAUSE_WATCHDOG ? " by the watchdog" : "");
    } else {
        sl_log(SL_LOG_WARN, "supervisor", 0, "%s: crashed: exit status %d", inst->name, WEXITSTATUS(status));
    }
}

void sl__sup_on_exit(sl_master_t *m, sl_inst_t *inst, int status)
{
    sl_group_t *g = &m->groups[inst->node];
    sl_cause_t cause = sl__classify(inst, status);
    bool was_stopping = inst->state == SL_INST_STOPPING;
    inst->pid = 0;
    inst->watchdog_fired = false;
    atomic_store(&inst->stats->pid, 0);
    atomic_store(&inst->stats->last_status, status);
    atomic_store(&inst->stats->last_cause, (uint32_t)cause);
    sl__log_exit(inst, status, cause);
    if (cause == SL_CAUSE_NORMAL) {
        sl__inst_go(inst, SL_IEV_EXIT_NORMAL);
        bool all = true;
        for (size_t k = 0; k < g->n; k++)
            all &= m->rt->inst[g->first + k].state == SL_INST_DONE;
        if (all)
            sl__group_go(m, g, SL_GEV_ALL_DONE);
        sl__group_settle(m, g);
        return;
    }
    if (cause == SL_CAUSE_FATAL) {
        sl__inst_go(inst, SL_IEV_EXIT_FATAL);
        sl__root_give_up(m, g, "an instance cannot start");
        return;
    }
    sl__inst_go(inst, SL_IEV_CRASH);
    if (was_stopping)
        sl__group_settle(m, g);
    else
        sl__group_on_crash(m, g, inst);
}

/* Events waiting in the instance's inputs, or a producer: work it should be doing. */
static bool sl__has_work(const sl_inst_t *inst)
{
    if (inst->ops->kind == SL_KIND_PRODUCER)
        return true;
    for (uint32_t c = 0; c < inst->n_in; c++) {
        sl_chan_stat_t st;
        sl_chan_stat(inst->in[c], &st);
        if (st.sent != st.commit_events)
            return true;
    }
    return false;
}

void sl__sup_tick(sl_master_t *m, uint64_t now)
{
    sl_runtime_t *rt = m->rt;
    for (size_t i = 0; i < rt->n_inst; i++) {
        sl_inst_t *inst = &rt->inst[i];
        uint64_t wd = rt->cfg->nodes[inst->node].sup.watchdog_ns;
        if (wd == 0 || inst->state != SL_INST_RUNNING || inst->watchdog_fired)
            continue;
        uint64_t hb = atomic_load_explicit(&inst->stats->heartbeat_ns, memory_order_relaxed);
        hb = SL_MAX(hb, inst->started_ns);
        if (now <= hb || now - hb < wd || !sl__has_work(inst))
            continue;
        sl_log(SL_LOG_ERROR, "supervisor", 0,
               "%s: no heartbeat for %.0f ms while it has work (watchdog %.0f ms); "
               "killing it",
               inst->name, (double)(now - hb) / 1e6, (double)wd / 1e6);
        inst->watchdog_fired = true;
        kill(inst->pid, SIGKILL);
    }
}
