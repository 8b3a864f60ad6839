/*
 * Reading a loaded config: node lookup, typed access to a node's type-specific keys, and the summary
 * that `sluice validate` prints.
 *
 * A node's params hold every key of its type (defaults filled in) as the text that passed the schema's
 * checks, so the typed accessors parse text that is known to be valid; asking for a key the node's type
 * does not have is a programming error (asserted) and yields a zero value in release builds.
 */
#include "config/config_int.h"

#include <assert.h>
#include <string.h>

int sl_config_find(const sl_config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_nodes; i++)
        if (cfg->nodes[i].name != NULL && strcmp(cfg->nodes[i].name, name) == 0)
            return (int)i;
    return -1;
}

static const sl_conf_param_t *sl__param(const sl_conf_node_t *node, const char *key)
{
    for (size_t i = 0; i < node->n_params; i++)
        if (strcmp(node->params[i].key, key) == 0)
            return &node->params[i];
    assert(!"no such key for this node type");
    return NULL;
}

const char *sl_conf_str(const sl_conf_node_t *node, const char *key)
{
    const sl_conf_param_t *p = sl__param(node, key);
    return p ? p->value : "";
}

int64_t sl_conf_int(const sl_conf_node_t *node, const char *key)
{
    const sl_conf_param_t *p = sl__param(node, key);
    int64_t v = 0;
    if (p != NULL)
        sl__parse_int(p->value, &v); /* counts are integers too */
    return v;
}

uint64_t sl_conf_size(const sl_conf_node_t *node, const char *key)
{
    const sl_conf_param_t *p = sl__param(node, key);
    uint64_t v = 0;
    if (p != NULL)
        sl__parse_size(p->value, &v);
    return v;
}

uint64_t sl_conf_duration(const sl_conf_node_t *node, const char *key)
{
    const sl_conf_param_t *p = sl__param(node, key);
    uint64_t v = 0;
    if (p != NULL)
        sl__parse_duration(p->value, &v);
    return v;
}

bool sl_conf_bool(const sl_conf_node_t *node, const char *key)
{
    const sl_conf_param_t *p = sl__param(node, key);
    bool v = false;
    if (p != NULL)
        sl__parse_bool(p->value, &v);
    return v;
}

double sl_conf_double(const sl_conf_node_t *node, const char *key)
{
    const sl_conf_param_t *p = sl__param(node, key);
    double v = 0;
    if (p != NULL)
        sl__parse_double(p->value, &v);
    return v;
}

/* "a, b" cut to fit a column. */
static void sl__from_text(const sl_conf_node_t *nd, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    if (nd->n_from == 0)
        snprintf(buf, len, "-");
    for (size_t i = 0; i < nd->n_from && o < len; i++) {
        int w = snprintf(buf + o, len - o, "%s%s", i ? "," : "", nd->from[i]);
        if (w < 0 || (size_t)w >= len - o) {
            snprintf(buf + (len > 4 ? len - 4 : 0), 4, "...");
            break;
        }
        o += (size_t)w;
    }
}

typedef struct sl__row_s {
    char from[48], disp[16], demand[32], cap[24], inst[12];
} sl__row_t;

static void sl__row(const sl_conf_node_t *nd, sl__row_t *r)
{
    sl__from_text(nd, r->from, sizeof r->from);
    snprintf(r->inst, sizeof r->inst, "%u", nd->concurrency);
    if (nd->role == SL_ROLE_SOURCE) {
        snprintf(r->disp, sizeof r->disp, "-");
        snprintf(r->demand, sizeof r->demand, "-");
        snprintf(r->cap, sizeof r->cap, "-");
        return;
    }
    snprintf(r->disp, sizeof r->disp, "%s", sl_dispatcher_name(nd->dispatcher));
    snprintf(r->demand, sizeof r->demand, "%u..%u", nd->min_demand, nd->max_demand);
    sl__fmt_size(nd->capacity, r->cap, sizeof r->cap);
}

void sl_config_print_summary(const sl_config_t *cfg, FILE *to)
{
    int wn = 4, wt = 4, wf = 4;
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        sl__row_t r;
        sl__row(&cfg->nodes[i], &r);
        wn = SL_MAX(wn, (int)strlen(cfg->nodes[i].name));
        wt = SL_MAX(wt, (int)strlen(cfg->nodes[i].type));
        wf = SL_MAX(wf, (int)strlen(r.from));
    }
    fprintf(to, "pipeline %s (%s)\n", cfg->pipeline_name, cfg->path);
    fprintf(to, "  %-6s  %-*s  %-*s  %9s  %-*s  %-10s  %-13s  %s\n", "ROLE", wn, "NAME", wt, "TYPE", "INSTANCES", wf,
            "FROM", "DISPATCHER", "DEMAND", "CAPACITY");
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        const sl_conf_node_t *nd = &cfg->nodes[i];
        sl__row_t r;
        sl__row(nd, &r);
        fprintf(to, "  %-6s  %-*s  %-*s  %9s  %-*s  %-10s  %-13s  %s\n", sl__role_name(nd->role), wn, nd->name, wt,
                nd->type, r.inst, wf, r.from, r.disp, r.demand, r.cap);
    }
    uint64_t inst, chans, bytes;
    sl__topology_totals(cfg, &inst, &chans, &bytes);
    char b[32], l[32];
    sl__fmt_size(bytes, b, sizeof b);
    sl__fmt_size(cfg->memory_limit, l, sizeof l);
    fprintf(to, "%zu node%s, %llu instance%s, %llu channel%s, memory bound %s of %s (channels.memory_limit)\n",
            cfg->n_nodes, cfg->n_nodes == 1 ? "" : "s", (unsigned long long)inst, inst == 1 ? "" : "s",
            (unsigned long long)chans, chans == 1 ? "" : "s", b, l);
}

size_t sl_conf_props(const sl_conf_node_t *node, const char *key, const sl_conf_prop_t **out)
{
    const sl_conf_param_t *p = sl__param(node, key);
    *out = p ? p->props : NULL;
    return p ? p->n_props : 0;
}
