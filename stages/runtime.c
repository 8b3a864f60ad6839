/*
 * The runtime topology: instances, channels, bells and statistics built from a validated config.
 *
 * Built once in the master before any fork, so every worker inherits the same mappings at the same
 * addresses; process-local handles (sl_chan_t) may hold pointers, the shared memory itself holds none.
 * For every edge U -> D there is one channel per (U instance, D instance) pair: each channel has exactly
 * one producer and one consumer process, which is what makes the rings single-producer/single-consumer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stages/stages_int.h"

static int sl__rt_alloc_instances(sl_runtime_t *rt)
{
    const sl_config_t *cfg = rt->cfg;
    rt->node_first = calloc(cfg->n_nodes + 1, sizeof *rt->node_first);
    if (rt->node_first == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        rt->node_first[i] = rt->n_inst;
        rt->n_inst += cfg->nodes[i].concurrency;
    }
    rt->node_first[cfg->n_nodes] = rt->n_inst;
    rt->inst = calloc(rt->n_inst, sizeof *rt->inst);
    rt->bells = sl_bells_new(rt->n_inst);
    rt->stats =
        mmap(NULL, rt->n_inst * sizeof(sl_stats_slot_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (rt->stats == MAP_FAILED)
        rt->stats = NULL;
    if (rt->inst == NULL || rt->bells == NULL || rt->stats == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        const sl_conf_node_t *node = &cfg->nodes[i];
        const sl_stage_ops_t *ops = sl_stage_lookup(node->role, node->type);
        if (ops == NULL) {
            sl_log(SL_LOG_ERROR, "runtime", 0, "%s: no stage type \"%s\" is built in", node->name, node->type);
            return SL_ECONFIG;
        }
        for (uint32_t k = 0; k < node->concurrency; k++) {
            size_t id = rt->node_first[i] + k;
            sl_inst_t *inst = &rt->inst[id];
            inst->node = i;
            inst->index = k;
            inst->ops = ops;
            inst->bell = &rt->bells[id];
            inst->stats = &rt->stats[id];
            snprintf(inst->name, sizeof inst->name, "%s#%u", node->name, k);
            snprintf(inst->stats->name, sizeof inst->stats->name, "%s", inst->name);
        }
    }
    return 0;
}

/* A channel: in anonymous memory, or in channels.dir, where one a previous run left is recovered. */
static int sl__rt_chan(sl_runtime_t *rt, const char *name, uint64_t capacity, sl_chan_t **out, char **path_out)
{
    *path_out = NULL;
    const char *dir = rt->cfg->channels_dir;
    if (dir == NULL) {
        int rc = sl_chan_create(name, capacity, out);
        if (rc != 0)
            sl_log(SL_LOG_ERROR, "runtime", rc, "channel %s (%llu bytes)", name, (unsigned long long)capacity);
        return rc;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.chan", dir, name);
    for (char *p = path + strlen(dir) + 1; *p; p++)
        if (*p == '>' || *p == '#')
            *p = *p == '>' ? '~' : '.'; /* node names are [A-Za-z0-9_-]: the path stays plain */
    bool recovered;
    int rc = sl_chan_open(path, name, capacity, &recovered, out);
    if (rc != 0) {
        sl_log(SL_LOG_ERROR, "runtime", rc, "channel file %s (%llu bytes)", path, (unsigned long long)capacity);
        return rc;
    }
    *path_out = strdup(path);
    if (recovered) {
        sl_chan_stat_t st;
        sl_chan_stat(*out, &st);
        uint64_t held = st.sent - st.commit_events;
        rt->recovered += held;
        sl_log(SL_LOG_INFO, "runtime", 0, "recovered channel %s: %llu events not yet acknowledged", name,
               (unsigned long long)held);
    }
    return 0;
}

/* Takes channels.dir for this runtime (creating it): one sluice at a time may use its channel files. */
static int sl__rt_lock_dir(sl_runtime_t *rt)
{
    const char *dir = rt->cfg->channels_dir;
    if (dir == NULL)
        return 0;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        sl_log(SL_LOG_ERROR, "runtime", -errno, "channels.dir: mkdir(%s) failed", dir);
        return SL_EIO;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/lock", dir);
    rt->dir_lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (rt->dir_lock < 0 || flock(rt->dir_lock, LOCK_EX | LOCK_NB) != 0) {
        sl_log(SL_LOG_ERROR, "runtime", -errno, "channels.dir %s is in use by another sluice (lock %s)", dir, path);
        return SL_EIO;
    }
    return 0;
}

void sl__runtime_forget_channels(sl_runtime_t *rt)
{
    for (size_t c = 0; rt->chan_paths != NULL && c < rt->n_chans; c++)
        if (rt->chan_paths[c] != NULL)
            unlink(rt->chan_paths[c]);
}

/* Adds the channels of edge up -> down (node indexes); dead_letter marks the group that only
 * sl_dead_letter() feeds. */
static int sl__rt_connect(sl_runtime_t *rt, size_t up, size_t down, bool dead_letter)
{
    const sl_conf_node_t *dn = &rt->cfg->nodes[down];
    const sl_conf_node_t *un = &rt->cfg->nodes[up];
    for (uint32_t u = 0; u < un->concurrency; u++) {
        sl_inst_t *pi = &rt->inst[rt->node_first[up] + u];
        sl_out_group_t *grp = realloc(pi->out, (pi->n_out + 1) * sizeof *grp);
        if (grp == NULL)
            return SL_ENOMEM;
        pi->out = grp;
        sl_out_group_t *g = &pi->out[pi->n_out++];
        memset(g, 0, sizeof *g);
        g->kind = dead_letter ? SL_DISP_DEMAND : dn->dispatcher;
        g->dead_letter = dead_letter;
        g->n = dn->concurrency;
        g->by_key = dn->partition_by == NULL || strcmp(dn->partition_by, "key") == 0;
        g->attr = dn->partition_by;
        g->attr_len = dn->partition_by ? strlen(dn->partition_by) : 0;
        g->chans = calloc(g->n, sizeof *g->chans);
        if (g->chans == NULL)
            return SL_ENOMEM;
        for (uint32_t d = 0; d < dn->concurrency; d++) {
            sl_inst_t *ci = &rt->inst[rt->node_first[down] + d];
            char name[112];
            snprintf(name, sizeof name, "%s>%s", pi->name, ci->name);
            sl_chan_t *ch;
            char *path;
            int rc = sl__rt_chan(rt, name, dn->capacity, &ch, &path);
            if (rc != 0)
                return rc;
            char **paths = realloc(rt->chan_paths, (rt->n_chans + 1) * sizeof *paths);
            if (paths == NULL) {
                free(path);
                sl_chan_destroy(ch);
                return SL_ENOMEM;
            }
            rt->chan_paths = paths;
            paths[rt->n_chans] = path; /* n_chans grows below, with rt->chans */
            sl_chan_bind_bells(ch, pi->bell, ci->bell);
            sl_chan_t **all = realloc(rt->chans, (rt->n_chans + 1) * sizeof *all);
            sl_chan_t **in = realloc(ci->in, (ci->n_in + 1) * sizeof *in);
            if (all)
                rt->chans = all;
            if (in)
                ci->in = in;
            if (all == NULL || in == NULL) {
                free(path);
                sl_chan_destroy(ch);
                return SL_ENOMEM;
            }
            rt->chans[rt->n_chans++] = ch;
            ci->in[ci->n_in++] = ch;
            g->chans[d] = ch;
            if (pi->max_record == 0 || sl_chan_max_record(ch) < pi->max_record)
                pi->max_record = sl_chan_max_record(ch);
        }
    }
    return 0;
}

int sl_runtime_new(const sl_config_t *cfg, sl_runtime_t **out)
{
    sl_runtime_t *rt = calloc(1, sizeof *rt);
    if (rt == NULL)
        return SL_ENOMEM;
    rt->cfg = cfg;
    rt->master_pid = getpid();
    rt->dir_lock = -1;
    int rc = sl__rt_lock_dir(rt);
    if (rc == 0)
        rc = sl__rt_alloc_instances(rt);
    for (size_t d = 0; rc == 0 && d < cfg->n_nodes; d++) {
        for (size_t f = 0; rc == 0 && f < cfg->nodes[d].n_from; f++) {
            int up = sl_config_find(cfg, cfg->nodes[d].from[f]);
            rc = up < 0 ? SL_ECONFIG : sl__rt_connect(rt, (size_t)up, d, false);
        }
    }
    /* Dead-letter groups come after every normal group, so out[0] is always a normal output. */
    for (size_t u = 0; rc == 0 && u < cfg->n_nodes; u++) {
        if (cfg->nodes[u].dead_letter == NULL)
            continue;
        int d = sl_config_find(cfg, cfg->nodes[u].dead_letter);
        rc = d < 0 ? SL_ECONFIG : sl__rt_connect(rt, u, (size_t)d, true);
    }
    if (rc != 0) {
        sl_runtime_destroy(rt);
        return rc;
    }
    *out = rt;
    return 0;
}

void sl_runtime_destroy(sl_runtime_t *rt)
{
    if (rt == NULL)
        return;
    for (size_t i = 0; rt->inst && i < rt->n_inst; i++) {
        sl_inst_t *inst = &rt->inst[i];
        for (uint32_t g = 0; g < inst->n_out; g++)
            free(inst->out[g].chans);
        free(inst->out);
        free(inst->in);
    }
    for (size_t c = 0; c < rt->n_chans; c++)
        sl_chan_destroy(rt->chans[c]);
    for (size_t c = 0; rt->chan_paths != NULL && c < rt->n_chans; c++)
        free(rt->chan_paths[c]);
    free(rt->chan_paths);
    if (rt->dir_lock >= 0)
        close(rt->dir_lock); /* releases the directory's lock */
    free(rt->chans);
    free(rt->inst);
    free(rt->node_first);
    sl_bells_free(rt->bells, rt->n_inst);
    if (rt->stats)
        munmap(rt->stats, rt->n_inst * sizeof(sl_stats_slot_t));
    free(rt);
}

void sl_runtime_node_totals(const sl_runtime_t *rt, size_t node, sl_node_totals_t *t)
{
    memset(t, 0, sizeof *t);
    for (size_t i = rt->node_first[node]; i < rt->node_first[node + 1]; i++) {
        const sl_stats_slot_t *s = rt->inst[i].stats;
        t->events_in += atomic_load_explicit(&s->events_in, memory_order_relaxed);
        t->events_out += atomic_load_explicit(&s->events_out, memory_order_relaxed);
        t->bytes_in += atomic_load_explicit(&s->bytes_in, memory_order_relaxed);
        t->bytes_out += atomic_load_explicit(&s->bytes_out, memory_order_relaxed);
        t->failed += atomic_load_explicit(&s->failed, memory_order_relaxed);
        t->redelivered += atomic_load_explicit(&s->redelivered, memory_order_relaxed);
        t->restarts += atomic_load_explicit(&s->restarts, memory_order_relaxed);
        t->quarantined += atomic_load_explicit(&s->quarantined, memory_order_relaxed);
        for (uint32_t c = 0; c < rt->inst[i].n_in; c++) {
            sl_chan_stat_t st;
            sl_chan_stat(rt->inst[i].in[c], &st);
            t->queued += st.sent - st.commit_events;
            t->demand += st.asked > st.sent ? st.asked - st.sent : 0;
        }
    }
}
