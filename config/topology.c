/*
 * Checks of the pipeline graph: every `from` names an existing source or stage, nothing feeds itself
 * (cycles are reported as "a -> b -> a"), every source and stage has a consumer, and the channels fit in
 * channels.memory_limit.
 *
 * The memory bound counts one channel per (producer instance, consumer instance) pair of every edge,
 * each of the consumer's capacity: edge U -> D costs U.concurrency x D.concurrency x D.capacity. Names
 * are looked up through a sorted index and cycles are found by an iterative depth-first search, so a
 * generated config with 100k nodes is checked in well under a second and never recurses deeply.
 */
#include "config/config_int.h"

#include <stdlib.h>
#include <string.h>

typedef struct sl__nref_s {
    const char *name;
    size_t idx;
} sl__nref_t;

static int sl__nref_cmp(const void *a, const void *b)
{
    return strcmp(((const sl__nref_t *)a)->name, ((const sl__nref_t *)b)->name);
}

/* Sorted (name, index) pairs of the named nodes; the caller frees. */
static sl__nref_t *sl__nindex(const sl_config_t *cfg, size_t *n)
{
    sl__nref_t *v = sl__xrealloc(NULL, (cfg->n_nodes + 1) * sizeof *v);
    *n = 0;
    for (size_t i = 0; i < cfg->n_nodes; i++)
        if (cfg->nodes[i].name != NULL)
            v[(*n)++] = (sl__nref_t){cfg->nodes[i].name, i};
    qsort(v, *n, sizeof *v, sl__nref_cmp);
    return v;
}

static long sl__nfind(const sl__nref_t *v, size_t n, const char *name)
{
    sl__nref_t key = {name, 0};
    const sl__nref_t *r = bsearch(&key, v, n, sizeof *v, sl__nref_cmp);
    return r ? (long)r->idx : -1;
}

/* The resolved edges of a config: edge e runs from node eu[e] into node ed[e] (its from entry ej[e]). */
typedef struct sl__edges_s {
    size_t n;
    size_t *eu, *ed, *ej;
} sl__edges_t;

static void sl__edges_free(sl__edges_t *e)
{
    free(e->eu);
    free(e->ed);
    free(e->ej);
}

/* Resolves every from entry; with lc, reports those that name nothing usable. */
static sl__edges_t sl__edges(sl__lctx_t *lc, const sl_config_t *cfg)
{
    size_t total = 0, nn;
    for (size_t i = 0; i < cfg->n_nodes; i++)
        total += cfg->nodes[i].n_from;
    sl__edges_t e = {0, sl__xrealloc(NULL, (total + 1) * sizeof(size_t)),
                     sl__xrealloc(NULL, (total + 1) * sizeof(size_t)),
                     sl__xrealloc(NULL, (total + 1) * sizeof(size_t))};
    sl__nref_t *ix = sl__nindex(cfg, &nn);
    size_t *seen = calloc(cfg->n_nodes + 1, sizeof *seen);
    if (seen == NULL)
        sl__xrealloc(NULL, SIZE_MAX);
    for (size_t d = 0; d < cfg->n_nodes; d++) {
        const sl_conf_node_t *nd = &cfg->nodes[d];
        for (size_t j = 0; j < nd->n_from; j++) {
            long u = sl__nfind(ix, nn, nd->from[j]);
            const sl__ynode_t *at = lc ? lc->nx[d].from_at[j] : NULL;
            const char *path = lc ? sl__arena_printf(lc->tmp, "%s.from", lc->nx[d].path) : NULL;
            /* seen[u] == d + 1: node d already listed u (a stamp, so long from lists stay linear). */
            bool twice = u >= 0 && seen[u] == d + 1;
            if (u >= 0)
                seen[u] = d + 1;
            if (lc != NULL && (u < 0 || cfg->nodes[u].role == SL_ROLE_SINK))
                lc->from_broken = true;
            if (u < 0 && lc != NULL) {
                /* Suggestions cost a scan of every name: fine for any hand-written pipeline. */
                const char *sug = NULL;
                if (cfg->n_nodes <= 4096) {
                    const char *cands[4096];
                    for (size_t k = 0; k < cfg->n_nodes; k++)
                        cands[k] = cfg->nodes[k].role != SL_ROLE_SINK ? cfg->nodes[k].name : NULL;
                    sug = sl__suggest(nd->from[j], cands, cfg->n_nodes);
                }
                sl__err(lc, at->line, at->col, path, "no source or stage is named \"%.64s\"%s%s%s", nd->from[j],
                        sug ? "; did you mean \"" : "", sug ? sug : "", sug ? "\"?" : "");
            } else if (u >= 0 && cfg->nodes[u].role == SL_ROLE_SINK) {
                if (lc != NULL)
                    sl__err(lc, at->line, at->col, path,
                            "\"%s\" is a sink, which has no output (from names "
                            "sources and stages)",
                            nd->from[j]);
            } else if (twice) {
                if (lc != NULL)
                    sl__err(lc, at->line, at->col, path, "\"%s\" is listed twice", nd->from[j]);
            } else if (u >= 0) {
                e.eu[e.n] = (size_t)u;
                e.ed[e.n] = d;
                e.ej[e.n++] = j;
            }
        }
    }
    free(ix);
    free(seen);
    return e;
}

/* Reports the cycle closed by edge e: the stack from node v (at stack[from]) up to e's producer. */
static void sl__cycle_report(sl__lctx_t *lc, const sl__edges_t *e, size_t ei, const size_t *stack, size_t from,
                             size_t top)
{
    const sl_config_t *cfg = lc->cfg;
    char buf[640];
    size_t o = 0;
    for (size_t i = from; i <= top && o < 512; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s -> ", cfg->nodes[stack[i]].name);
    if (o >= 512)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "... -> ");
    snprintf(buf + o, sizeof buf - o, "%s", cfg->nodes[stack[from]].name);
    size_t d = e->ed[ei];
    const sl__ynode_t *at = lc->nx[d].from_at[e->ej[ei]];
    sl__err(lc, at->line, at->col, sl__arena_printf(lc->tmp, "%s.from", lc->nx[d].path),
            "the stages form a cycle: %s (events would circulate forever)", buf);
}

/* Iterative DFS along data flow; a grey successor closes a cycle. */
static void sl__cycles(sl__lctx_t *lc, const sl__edges_t *e)
{
    size_t n = lc->cfg->n_nodes;
    size_t *off = calloc(n + 2, sizeof *off), *adj = sl__xrealloc(NULL, (e->n + 1) * sizeof *adj);
    size_t *pos = calloc(n + 1, sizeof *pos), *stack = sl__xrealloc(NULL, (n + 1) * sizeof *stack);
    size_t *spos = sl__xrealloc(NULL, (n + 1) * sizeof *spos);
    unsigned char *color = calloc(n + 1, 1);
    if (off == NULL || pos == NULL || color == NULL)
        sl__xrealloc(NULL, SIZE_MAX);
    for (size_t i = 0; i < e->n; i++)
        off[e->eu[i] + 2]++;
    for (size_t i = 2; i < n + 2; i++)
        off[i] += off[i - 1];
    for (size_t i = 0; i < e->n; i++)
        adj[off[e->eu[i] + 1]++] = i; /* off[u]..off[u+1]: edges out of u */
    for (size_t s = 0; s < n; s++) {
        if (color[s] != 0)
            continue;
        size_t top = 0;
        stack[0] = s;
        spos[s] = 0;
        color[s] = 1;
        for (;;) {
            size_t u = stack[top];
            if (off[u] + pos[u] < off[u + 1]) {
                size_t ei = adj[off[u] + pos[u]++], v = e->ed[ei];
                if (color[v] == 0) {
                    color[v] = 1;
                    stack[++top] = v;
                    spos[v] = top;
                } else if (color[v] == 1) {
                    sl__cycle_report(lc, e, ei, stack, spos[v], top);
                }
                continue;
            }
            color[u] = 2;
            if (top == 0)
                break;
            top--;
        }
    }
    free(off), free(adj), free(pos), free(stack), free(spos), free(color);
}

static uint64_t sl__mul_sat(uint64_t a, uint64_t b) { return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b; }
static uint64_t sl__add_sat(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

/*
 * Resolves every dead_letter: another sink, with no dead_letter of its own (failures must not chain).
 * Returns per node the index of its dead-letter sink or -1; the caller frees. With lc, reports problems.
 */
static long *sl__dead_letters(sl__lctx_t *lc, const sl_config_t *cfg)
{
    size_t nn;
    sl__nref_t *ix = sl__nindex(cfg, &nn);
    long *dl = sl__xrealloc(NULL, (cfg->n_nodes + 1) * sizeof *dl);
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        const sl_conf_node_t *nd = &cfg->nodes[i];
        dl[i] = -1;
        if (nd->dead_letter == NULL)
            continue;
        long t = sl__nfind(ix, nn, nd->dead_letter);
        const char *why = NULL;
        if (t < 0)
            why = "no sink has that name";
        else if (cfg->nodes[t].role != SL_ROLE_SINK)
            why = cfg->nodes[t].role == SL_ROLE_SOURCE ? "it is a source, not a sink" : "it is a stage, not a sink";
        else if ((size_t)t == i)
            why = "a sink cannot be its own dead_letter";
        else if (cfg->nodes[t].dead_letter != NULL)
            why = "that sink has a dead_letter of its own, and failures must not chain";
        if (why == NULL) {
            dl[i] = t;
        } else if (lc != NULL && lc->nx[i].dl_at != NULL) {
            const sl__ynode_t *at = lc->nx[i].dl_at;
            sl__err(lc, at->line, at->col, sl__arena_printf(lc->tmp, "%s.dead_letter", lc->nx[i].path),
                    "\"%.64s\": %s (expected the name of another sink)", nd->dead_letter, why);
        }
    }
    free(ix);
    return dl;
}

/* A sink without from is valid only as the dead_letter of some node. */
static void sl__sinks_without_input(sl__lctx_t *lc, const long *dl)
{
    const sl_config_t *cfg = lc->cfg;
    bool *target = calloc(cfg->n_nodes + 1, sizeof *target);
    if (target == NULL)
        sl__xrealloc(NULL, SIZE_MAX);
    for (size_t i = 0; i < cfg->n_nodes; i++)
        if (dl[i] >= 0)
            target[dl[i]] = true;
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        const sl__nodex_t *x = &lc->nx[i];
        if (x->no_from && !target[i])
            sl__err(lc, x->at->line, x->at->col, x->path,
                    "missing required key \"from\" (a sink takes input from sources or stages, unless it is "
                    "only some node's dead_letter)");
    }
    free(target);
}

/* Bytes of the dead-letter channels of node i: one per (instance of i, instance of its sink). */
static uint64_t sl__dl_bytes(const sl_config_t *cfg, const long *dl, size_t i)
{
    if (dl[i] < 0)
        return 0;
    const sl_conf_node_t *u = &cfg->nodes[i], *d = &cfg->nodes[dl[i]];
    return sl__mul_sat(sl__mul_sat(u->concurrency, d->concurrency), d->capacity);
}

static uint64_t sl__edge_bytes(const sl_config_t *cfg, const sl__edges_t *e, size_t i)
{
    const sl_conf_node_t *u = &cfg->nodes[e->eu[i]], *d = &cfg->nodes[e->ed[i]];
    return sl__mul_sat(sl__mul_sat(u->concurrency, d->concurrency), d->capacity);
}

static void sl__memory_check(sl__lctx_t *lc, const sl__edges_t *e, const long *dl, const sl__ynode_t *at)
{
    const sl_config_t *cfg = lc->cfg;
    uint64_t total = 0, big = 0;
    size_t bi = 0;
    for (size_t i = 0; i < cfg->n_nodes; i++)
        total = sl__add_sat(total, sl__dl_bytes(cfg, dl, i));
    for (size_t i = 0; i < e->n; i++) {
        uint64_t b = sl__edge_bytes(cfg, e, i);
        total = sl__add_sat(total, b);
        if (b > big)
            big = b, bi = i;
    }
    if (total <= cfg->memory_limit)
        return;
    char t[32], l[32], c[32], b[32];
    const sl_conf_node_t *u = &cfg->nodes[e->eu[bi]], *d = &cfg->nodes[e->ed[bi]];
    sl__fmt_size(total, t, sizeof t);
    sl__fmt_size(cfg->memory_limit, l, sizeof l);
    sl__fmt_size(d->capacity, c, sizeof c);
    sl__fmt_size(big, b, sizeof b);
    sl__err(lc, at ? at->line : 0, at ? at->col : 0, "channels.memory_limit",
            "the channels need %s (%llu bytes), more than memory_limit %s; largest: %s -> %s, %u x %u instances "
            "x %s = %s (lower concurrency or capacity, or raise memory_limit)",
            t, (unsigned long long)total, l, u->name, d->name, u->concurrency, d->concurrency, c, b);
}

void sl__topology_check(sl__lctx_t *lc, const sl__ynode_t *memory_at)
{
    const sl_config_t *cfg = lc->cfg;
    sl__edges_t e = sl__edges(lc, cfg);
    if (lc->names_dup) {
        sl__edges_free(&e); /* which node a from means is ambiguous: graph findings would be guesses */
        return;
    }
    long *dl = sl__dead_letters(lc, cfg);
    sl__sinks_without_input(lc, dl);
    size_t *consumers = calloc(cfg->n_nodes + 1, sizeof *consumers);
    if (consumers == NULL)
        sl__xrealloc(NULL, SIZE_MAX);
    for (size_t i = 0; i < e.n; i++)
        consumers[e.eu[i]]++;
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        const sl__nodex_t *x = &lc->nx[i];
        if (cfg->nodes[i].role == SL_ROLE_SINK || consumers[i] > 0 || !x->named || lc->from_broken)
            continue;
        const sl__ynode_t *at = x->name_at ? x->name_at : x->at;
        sl__err(lc, at->line, at->col, x->path,
                "nothing takes input from \"%s\" (name it in the from of a stage or sink)", cfg->nodes[i].name);
    }
    free(consumers);
    sl__cycles(lc, &e);
    sl__memory_check(lc, &e, dl, memory_at);
    sl__edges_free(&e);
    free(dl);
}

void sl__topology_totals(const sl_config_t *cfg, uint64_t *instances, uint64_t *channels, uint64_t *bytes)
{
    sl__edges_t e = sl__edges(NULL, cfg);
    long *dl = sl__dead_letters(NULL, cfg);
    *instances = *channels = *bytes = 0;
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        *instances += cfg->nodes[i].concurrency;
        if (dl[i] >= 0)
            *channels = sl__add_sat(*channels, (uint64_t)cfg->nodes[i].concurrency * cfg->nodes[dl[i]].concurrency);
        *bytes = sl__add_sat(*bytes, sl__dl_bytes(cfg, dl, i));
    }
    free(dl);
    for (size_t i = 0; i < e.n; i++) {
        const sl_conf_node_t *u = &cfg->nodes[e.eu[i]], *d = &cfg->nodes[e.ed[i]];
        *channels = sl__add_sat(*channels, (uint64_t)u->concurrency * d->concurrency);
        *bytes = sl__add_sat(*bytes, sl__edge_bytes(cfg, &e, i));
    }
    sl__edges_free(&e);
}
