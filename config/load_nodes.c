/*
 * Loading the sources, stages and sinks lists into cfg->nodes.
 *
 * A node's keys are the common node keys plus the keys of its type, checked in one pass so an unknown key
 * gets a suggestion from both. The node's name is read first (quietly) because every diagnostic about
 * the node is located by it ("stages.relay.from"); a node without a usable name is located by index
 * ("stages[2]"). When the type is unknown its own keys cannot be judged, so keys outside the common set
 * are not reported as unknown: one clear "unknown type" beats a cascade.
 */
#include "config/config_int.h"

#include <stdlib.h>
#include <string.h>

/* "expected one of generator, ..." for the role, with a suggestion. */
static void sl__type_unknown(sl__lctx_t *lc, const char *path, sl_conf_role_t role, const sl__val_t *tv)
{
    const sl__schema_t *sc = lc->schema;
    const char **cands = sl__arena_alloc(lc->tmp, (sc->n_types + 1) * sizeof *cands);
    size_t n = 0;
    char list[512];
    size_t o = 0;
    list[0] = '\0';
    for (size_t i = 0; i < sc->n_types; i++) {
        if (sc->types[i].role != role)
            continue;
        cands[n++] = sc->types[i].name;
        if (o < sizeof list - 64)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", o ? ", " : "", sc->types[i].name);
    }
    const char *sug = sl__suggest(tv->text, cands, n);
    const char *tpath = sl__arena_printf(lc->tmp, "%s.type", path);
    for (int r = 0; r < 3; r++) {
        if (r != (int)role && sl__schema_type(sc, (sl_conf_role_t)r, tv->text) != NULL) {
            sl__err(lc, tv->at->line, tv->at->col, tpath, "\"%s\" is a %s type, not a %s type (expected one of %s)",
                    tv->text, sl__role_name((sl_conf_role_t)r), sl__role_name(role), list);
            return;
        }
    }
    sl__err(lc, tv->at->line, tv->at->col, tpath, "unknown %s type \"%.40s\" (expected one of %s)%s%s%s",
            sl__role_name(role), tv->text, list, sug ? "; did you mean \"" : "", sug ? sug : "", sug ? "\"?" : "");
}

/* Keys that only make sense for a node with input are errors on a source, rather than silently unused. */
static void sl__source_extras(sl__lctx_t *lc, const char *path, const sl__vals_t *vs, const char *name)
{
    static const char *const keys[] = {"from", "max_demand", "min_demand", "dispatcher", "partition_by", "capacity"};
    for (size_t i = 0; i < SL_ARRAY_LEN(keys); i++) {
        const sl__val_t *v = sl__vals_get(vs, keys[i]);
        if (!v->given)
            continue;
        if (i == 0)
            sl__err(lc, v->at->line, v->at->col, sl__arena_printf(lc->tmp, "%s.from", path),
                    "a source takes no input (remove from, or make this node a stage)");
        else
            sl__err(lc, v->at->line, v->at->col, sl__arena_printf(lc->tmp, "%s.%s", path, keys[i]),
                    "a source has no input channel, so %s does not apply (set it on the nodes that take "
                    "from \"%s\")",
                    keys[i], name ? name : path);
    }
}

/* Demand, dispatcher, partitioning and capacity of a node with input. */
static void sl__node_input(sl__lctx_t *lc, const char *path, const sl__vals_t *vs, sl_conf_node_t *nd, sl__nodex_t *x)
{
    const sl_config_t *cfg = lc->cfg;
    const sl__val_t *max = sl__vals_get(vs, "max_demand"), *min = sl__vals_get(vs, "min_demand");
    nd->max_demand = max->ok ? (uint32_t)max->v.u : cfg->max_demand;
    nd->min_demand = min->ok ? (uint32_t)min->v.u : max->ok ? nd->max_demand / 2 : cfg->min_demand;
    x->min_at = min->at;
    x->max_at = max->at;
    if (nd->min_demand >= nd->max_demand && (min->ok || max->ok)) {
        const sl__ynode_t *at = min->ok ? min->at : max->at;
        sl__err(lc, at->line, at->col, sl__arena_printf(lc->tmp, "%s.%s", path, min->ok ? "min_demand" : "max_demand"),
                "min_demand (%u%s) must be below max_demand (%u%s)", nd->min_demand,
                min->ok ? "" : ", from channels.min_demand", nd->max_demand,
                max->ok ? "" : ", from channels.max_demand");
    }
    const sl__val_t *disp = sl__vals_get(vs, "dispatcher"), *part = sl__vals_get(vs, "partition_by");
    nd->dispatcher = (sl_dispatcher_t)sl__enum_value("dispatcher", disp->text);
    x->disp_at = disp->at;
    x->part_at = part->at;
    nd->partition_by = part->ok ? sl__arena_strdup(lc->keep, part->text) : NULL;
    if (nd->dispatcher == SL_DISP_PARTITION && !part->given)
        sl__err(lc, disp->at->line, disp->at->col, sl__arena_printf(lc->tmp, "%s.dispatcher", path),
                "the partition dispatcher needs partition_by (what to partition on, e.g. partition_by: key)");
    if (part->given && nd->dispatcher != SL_DISP_PARTITION && disp->ok == disp->given)
        sl__err(lc, part->at->line, part->at->col, sl__arena_printf(lc->tmp, "%s.partition_by", path),
                "partition_by is only used by the partition dispatcher (dispatcher is %s)",
                sl_dispatcher_name(nd->dispatcher));
    const sl__val_t *cap = sl__vals_get(vs, "capacity");
    nd->capacity = cap->ok ? cap->v.u : cfg->capacity;
}

/* from, copied into the config; its positions stay in x for the topology checks. */
static void sl__node_from(sl__lctx_t *lc, const char *path, const sl__vals_t *vs, const sl__ynode_t *map,
                          sl_conf_node_t *nd, sl__nodex_t *x)
{
    const sl__val_t *from = sl__vals_get(vs, "from");
    lc->from_broken |= from->given && !from->ok;
    if (!from->given && nd->role == SL_ROLE_SINK) {
        x->no_from = true; /* fine for a dead-letter sink; the topology check decides */
        return;
    }
    if (!from->given) {
        sl__err(lc, map->line, map->col, path,
                "missing required key \"from\" (a %s takes input from sources "
                "or stages)",
                sl__role_name(nd->role));
        return;
    }
    nd->from = sl__arena_alloc(lc->keep, (from->n_list + 1) * sizeof *nd->from);
    for (size_t i = 0; i < from->n_list; i++)
        nd->from[i] = sl__arena_strdup(lc->keep, from->list[i]);
    nd->n_from = from->n_list;
    x->from_at = from->list_at;
}

/* The type's own keys, every one present (defaults filled in), in schema order. */
static void sl__node_params(sl__lctx_t *lc, const sl__vals_t *vs, const sl__type_t *type, sl_conf_node_t *nd)
{
    size_t n = 0;
    for (size_t i = 0; i < vs->n; i++)
        n += strcmp(vs->v[i].key->section, type->section) == 0;
    nd->params = sl__arena_alloc(lc->keep, (n + 1) * sizeof *nd->params);
    for (size_t i = 0; i < vs->n; i++) {
        const sl__val_t *v = &vs->v[i];
        if (strcmp(v->key->section, type->section) != 0)
            continue;
        sl_conf_param_t *p = &nd->params[nd->n_params++];
        p->key = v->key->key;
        p->value = sl__arena_strdup(lc->keep, v->text ? v->text : "");
        /* A LIST keeps its items one per line: the node types that take lists (topic filters, broker
         * URLs) hold values that cannot contain a newline. */
        for (size_t j = 0; j < v->n_list; j++)
            p->value = j == 0 ? sl__arena_strdup(lc->keep, v->list[0])
                              : sl__arena_printf(lc->keep, "%s\n%s", p->value, v->list[j]);
        p->line = v->at ? v->at->line : 0;
        p->col = v->at ? v->at->col : 0;
        p->kind = (int)v->key->kind;
        if (v->n_props > 0) {
            sl_conf_prop_t *props = sl__arena_alloc(lc->keep, v->n_props * sizeof *props);
            for (size_t j = 0; j < v->n_props; j++)
                props[j] =
                    (sl_conf_prop_t){sl__arena_strdup(lc->keep, v->props[j].name),
                                     sl__arena_strdup(lc->keep, v->props[j].value), v->props[j].line, v->props[j].col};
            p->props = props;
            p->n_props = v->n_props;
        }
    }
}

static void sl__node_load(sl__lctx_t *lc, sl_conf_role_t role, size_t idx, const sl__ynode_t *map, sl_conf_node_t *nd,
                          sl__nodex_t *x)
{
    const char *name = sl__scalar_quiet(lc, sl__ymap_get(map, "name")), *why;
    const char *tname = sl__scalar_quiet(lc, sl__ymap_get(map, "type"));
    x->named = name != NULL && sl__check_ident(name, &why) == 0;
    x->path = x->named ? sl__arena_printf(lc->tmp, "%s.%s", sl__role_section(role), name)
                       : sl__arena_printf(lc->tmp, "%s[%zu]", sl__role_section(role), idx);
    x->at = map;
    nd->role = role;
    nd->line = map->line;
    nd->col = map->col;
    nd->name = x->named ? sl__arena_strdup(lc->keep, name) : NULL;
    if (map->kind != SL__Y_MAP) {
        if (map->kind != SL__Y_BAD)
            sl__err(lc, map->line, map->col, x->path, "expected a map describing the %s (name, type, ...)",
                    sl__role_name(role));
        return;
    }
    const sl__type_t *type = tname ? sl__schema_type(lc->schema, role, tname) : NULL;
    const char *sections[] = {"node", type ? type->section : NULL};
    sl__vals_t vs = sl__section_load(lc, x->path, map, sections, 2, type == NULL);
    x->name_at = sl__vals_get(&vs, "name")->at;
    const sl__val_t *tv = sl__vals_get(&vs, "type");
    if (tv->ok && type == NULL)
        sl__type_unknown(lc, x->path, role, tv);
    nd->type = sl__arena_strdup(lc->keep, tv->ok ? tv->text : "");
    nd->concurrency = (uint32_t)sl__vals_get(&vs, "concurrency")->v.u;
    if (role == SL_ROLE_SOURCE) {
        sl__source_extras(lc, x->path, &vs, nd->name);
    } else {
        sl__node_from(lc, x->path, &vs, map, nd, x);
        sl__node_input(lc, x->path, &vs, nd, x);
    }
    const sl__val_t *dl = sl__vals_get(&vs, "dead_letter");
    nd->dead_letter = dl->ok ? sl__arena_strdup(lc->keep, dl->text) : NULL;
    x->dl_at = dl->at;
    nd->sup = lc->cfg->sup;
    const sl__val_t *sv = sl__vals_get(&vs, "supervision");
    if (sv->ok && sv->at->kind == SL__Y_MAP) {
        static const char *const sup[] = {"supervision"};
        sl__vals_t ov =
            sl__section_load(lc, sl__arena_printf(lc->tmp, "%s.supervision", x->path), sv->at, sup, 1, false);
        sl__sup_apply(&ov, &nd->sup, true);
        sl__vals_free(&ov);
    }
    if (type != NULL)
        sl__node_params(lc, &vs, type, nd);
    sl__vals_free(&vs);
}

static int sl__name_cmp(const void *a, const void *b)
{
    const sl_conf_node_t *x = *(sl_conf_node_t *const *)a, *y = *(sl_conf_node_t *const *)b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : (x->line != y->line ? (x->line < y->line ? -1 : 1) : (x->col > y->col) - (x->col < y->col));
}

/* Names are unique across sources, stages and sinks: `from` could not tell two nodes apart. */
static void sl__names_unique(sl__lctx_t *lc)
{
    sl_config_t *cfg = lc->cfg;
    sl_conf_node_t **v = sl__arena_alloc(lc->tmp, (cfg->n_nodes + 1) * sizeof *v);
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_nodes; i++)
        if (cfg->nodes[i].name != NULL)
            v[n++] = &cfg->nodes[i];
    qsort(v, n, sizeof *v, sl__name_cmp);
    for (size_t i = 1, g = 0; i < n; i++) {
        if (strcmp(v[i]->name, v[g]->name) != 0) {
            g = i;
            continue;
        }
        sl__nodex_t *x = &lc->nx[v[i] - cfg->nodes];
        const sl__nodex_t *fx = &lc->nx[v[g] - cfg->nodes];
        x->named = false; /* its other problems would only repeat this one */
        lc->names_dup = true;
        const sl__ynode_t *at = x->name_at ? x->name_at : x->at;
        sl__err(lc, at->line, at->col, sl__arena_printf(lc->tmp, "%s.name", x->path),
                "another node is already named \"%s\" (at line %d); names must be unique across sources, "
                "stages and sinks",
                v[i]->name, fx->name_at ? fx->name_at->line : fx->at->line);
    }
}

void sl__nodes_load(sl__lctx_t *lc, const sl__ynode_t *roles[3])
{
    sl_config_t *cfg = lc->cfg;
    size_t total = 0;
    for (int r = 0; r < 3; r++)
        if (roles[r] != NULL && roles[r]->kind == SL__Y_SEQ)
            total += roles[r]->n;
    cfg->nodes = sl__arena_alloc(lc->keep, (total + 1) * sizeof *cfg->nodes);
    lc->nx = sl__arena_alloc(lc->tmp, (total + 1) * sizeof *lc->nx);
    for (int r = 0; r < 3; r++) {
        const sl__ynode_t *list = roles[r];
        const char *sec = sl__role_section((sl_conf_role_t)r);
        if (list != NULL && list->kind != SL__Y_SEQ && !sl__ynull(list) && list->kind != SL__Y_BAD) {
            sl__err(lc, list->line, list->col, sec, "expected a list of %s (each item starting with \"- \")", sec);
            continue;
        }
        bool empty = list == NULL || list->kind != SL__Y_SEQ || list->n == 0;
        if (empty && r != SL_ROLE_STAGE && (list == NULL || list->kind != SL__Y_BAD))
            sl__err(lc, list ? list->line : 0, list ? list->col : 0, sec, "a pipeline needs at least one %s",
                    sl__role_name((sl_conf_role_t)r));
        for (size_t i = 0; !empty && i < list->n; i++, cfg->n_nodes++)
            sl__node_load(lc, (sl_conf_role_t)r, i, list->kid[i], &cfg->nodes[cfg->n_nodes], &lc->nx[cfg->n_nodes]);
    }
    sl__names_unique(lc);
}
