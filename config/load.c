/*
 * The entry points of the loader: file -> bytes -> tree -> sections -> nodes -> topology -> config.
 *
 * Nothing here stops at the first problem: each step reports what it finds and the next step still
 * runs on what is usable, so one `sluice validate` lists every mistake in the file. Only a file that
 * does not parse as YAML stops after the syntax error, because its tree is partial. Diagnostics are
 * sorted by position before they are returned, so they read top to bottom like the file, and at most
 * SL__MAX_DIAGS are kept (a 10 MB file of mistakes does not produce 10 MB of diagnostics).
 */
#include "config/config_int.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *sl__getenv(void *ctx, const char *name)
{
    (void)ctx;
    return getenv(name);
}

/* Index of text in a name table, or -1. */
static int sl__enum_index(const char *const *names, size_t n, const char *text)
{
    for (size_t i = 0; i < n; i++)
        if (text != NULL && strcmp(names[i], text) == 0)
            return (int)i;
    return -1;
}

int sl__enum_value(const char *kind, const char *text)
{
#define SL__TEXT(name, text) text,
    static const char *const disp[] = {SL_DISPATCHER_MAP(SL__TEXT)};
    static const char *const strat[] = {SL_STRATEGY_MAP(SL__TEXT)};
    static const char *const rest[] = {SL_RESTART_MAP(SL__TEXT)};
#undef SL__TEXT
    int v = -1;
    if (strcmp(kind, "dispatcher") == 0)
        v = sl__enum_index(disp, SL_ARRAY_LEN(disp), text);
    else if (strcmp(kind, "strategy") == 0)
        v = sl__enum_index(strat, SL_ARRAY_LEN(strat), text);
    else if (strcmp(kind, "restart") == 0)
        v = sl__enum_index(rest, SL_ARRAY_LEN(rest), text);
    return v < 0 ? 0 : v; /* the schema only lets listed values through */
}

void sl__sup_apply(const sl__vals_t *vs, sl_conf_sup_t *sup, bool only_given)
{
    const sl__val_t *v;
#define SL__TAKE(key) ((v = sl__vals_get(vs, key)) != NULL && (v->ok || (!only_given && !v->given)))
    if (SL__TAKE("strategy"))
        sup->strategy = (sl_strategy_t)sl__enum_value("strategy", v->text);
    if (SL__TAKE("restart"))
        sup->restart = (sl_restart_t)sl__enum_value("restart", v->text);
    if (SL__TAKE("max_restarts"))
        sup->max_restarts = (uint32_t)v->v.u;
    if (SL__TAKE("max_seconds"))
        sup->max_seconds_ns = v->v.u;
    if (SL__TAKE("watchdog"))
        sup->watchdog_ns = v->v.u;
    if (SL__TAKE("shutdown_timeout"))
        sup->shutdown_timeout_ns = v->v.u;
#undef SL__TAKE
}

/* channels: the demand pair is checked here, where both values and their positions are known. */
static const sl__ynode_t *sl__channels_load(sl__lctx_t *lc, const sl__ynode_t *map)
{
    static const char *const sec[] = {"channels"};
    sl_config_t *cfg = lc->cfg;
    sl__vals_t vs = sl__section_load(lc, "channels", map, sec, 1, false);
    const sl__val_t *max = sl__vals_get(&vs, "max_demand"), *min = sl__vals_get(&vs, "min_demand");
    cfg->max_demand = (uint32_t)max->v.u;
    cfg->min_demand = min->ok ? (uint32_t)min->v.u : cfg->max_demand / 2;
    if (min->ok && max->v.u > 0 && cfg->min_demand >= cfg->max_demand)
        sl__err(lc, min->at->line, min->at->col, "channels.min_demand", "%u must be below max_demand (%u)",
                cfg->min_demand, cfg->max_demand);
    cfg->capacity = sl__vals_get(&vs, "capacity")->v.u;
    const sl__val_t *lim = sl__vals_get(&vs, "memory_limit");
    cfg->memory_limit = lim->v.u;
    const char *dir = sl__vals_get(&vs, "dir")->text;
    cfg->channels_dir = dir != NULL && dir[0] != 0 ? sl__arena_strdup(lc->keep, dir) : NULL;
    const sl__ynode_t *at = lim->at;
    sl__vals_free(&vs);
    return at;
}

static void sl__sections_load(sl__lctx_t *lc, const sl__ynode_t *sec[4], const sl__ynode_t **memory_at)
{
    static const char *const pipe[] = {"pipeline"}, *const sup[] = {"supervision"}, *const met[] = {"metrics"};
    sl_config_t *cfg = lc->cfg;
    sl__vals_t vs = sl__section_load(lc, "pipeline", sec[0], pipe, 1, false);
    cfg->pipeline_name = sl__arena_strdup(lc->keep, sl__vals_get(&vs, "name")->text);
    sl__vals_free(&vs);
    *memory_at = sl__channels_load(lc, sec[1]);
    vs = sl__section_load(lc, "supervision", sec[2], sup, 1, false);
    sl__sup_apply(&vs, &cfg->sup, false);
    sl__vals_free(&vs);
    vs = sl__section_load(lc, "metrics", sec[3], met, 1, false);
    cfg->metrics_enabled = sl__vals_get(&vs, "enabled")->v.b;
    cfg->metrics_listen = sl__arena_strdup(lc->keep, sl__vals_get(&vs, "listen")->text);
    cfg->summary_interval_ns = sl__vals_get(&vs, "summary_interval")->v.u;
    cfg->metrics_latency = sl__vals_get(&vs, "latency")->v.b;
    sl__vals_free(&vs);
}

/* The top-level map: pipeline, channels, supervision, metrics, sources, stages, sinks. */
static void sl__top_load(sl__lctx_t *lc, const sl__ynode_t *root)
{
    static const char *const keys[] = {"pipeline", "channels", "supervision", "metrics", "sources", "stages", "sinks"};
    const sl__ynode_t *v[SL_ARRAY_LEN(keys)] = {0};
    for (size_t i = 0; i < root->n; i++) {
        const sl__ynode_t *k = root->kid[2 * i];
        if (k->kind != SL__Y_SCALAR) {
            if (k->kind != SL__Y_BAD)
                sl__err(lc, k->line, k->col, "", "a key must be a name, not a %s",
                        k->kind == SL__Y_MAP ? "map" : "list");
            continue;
        }
        if (k->dup_of) {
            sl__err(lc, k->line, k->col, k->text, "duplicate key (first given at line %d)", k->dup_of);
            continue;
        }
        int idx = sl__enum_index(keys, SL_ARRAY_LEN(keys), k->text);
        if (idx >= 0) {
            v[idx] = root->kid[2 * i + 1];
            continue;
        }
        const char *sug = sl__suggest(k->text, keys, SL_ARRAY_LEN(keys));
        if (sug != NULL)
            sl__err(lc, k->line, k->col, k->text, "unknown section; did you mean \"%s\"?", sug);
        else
            sl__err(lc, k->line, k->col, k->text,
                    "unknown section (expected pipeline, channels, "
                    "supervision, metrics, sources, stages or sinks)");
    }
    const sl__ynode_t *memory_at = NULL;
    sl__sections_load(lc, v, &memory_at);
    sl__nodes_load(lc, v + 4);
    sl__topology_check(lc, memory_at);
}

static int sl__diag_cmp(const sl_diag_t *a, const sl_diag_t *b)
{
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    return a->col < b->col ? -1 : a->col > b->col;
}

/* Stable insertion sort of the diagnostics this load added (at most SL__MAX_DIAGS). */
static void sl__diags_sort(sl_diags_t *d, size_t from)
{
    for (size_t i = from + 1; i < d->n; i++) {
        sl_diag_t g = d->v[i];
        size_t j = i;
        while (j > from && sl__diag_cmp(&d->v[j - 1], &g) > 0) {
            d->v[j] = d->v[j - 1];
            j--;
        }
        d->v[j] = g;
    }
}

int sl__config_load_ex(const char *name, const char *dir, const char *buf, size_t len, const sl__schema_t *schema,
                       sl__getenv_fn env, void *env_ctx, sl_config_t **out, sl_diags_t *diags)
{
    sl__lctx_t lc = {
        .file = name,
        .dir = dir,
        .diags = diags,
        .max_diags = SL__MAX_DIAGS,
        .schema = schema ? schema : sl__schema_builtin(),
        .env = env ? env : sl__getenv,
        .env_ctx = env_ctx,
    };
    size_t first = diags->n;
    *out = NULL;
    lc.tmp = sl__arena_new();
    lc.keep = sl__arena_new();
    lc.cfg = sl__arena_alloc(lc.keep, sizeof *lc.cfg);
    lc.cfg->impl_ = lc.keep;
    lc.cfg->path = sl__arena_strdup(lc.keep, name);
    sl__ynode_t *root;
    if (sl__yaml_parse(&lc, buf, len, &root) == 0) {
        if (root == NULL)
            sl__err(&lc, 0, 0, "", "the file is empty (expected a map with at least sources and sinks)");
        else if (root->kind != SL__Y_MAP && root->kind != SL__Y_BAD)
            sl__err(&lc, root->line, root->col, "",
                    "the top level must be a map of sections (pipeline, "
                    "channels, supervision, metrics, sources, stages, "
                    "sinks), got %s",
                    root->kind == SL__Y_SEQ ? "a list"
                    : sl__ynull(root)       ? "nothing"
                                            : "a scalar");
        else if (root->kind == SL__Y_MAP)
            sl__top_load(&lc, root);
    }
    sl__diags_sort(diags, first);
    if (lc.n_err > lc.max_diags) {
        char msg[96];
        snprintf(msg, sizeof msg, "too many errors; %zu more not shown", lc.n_err - lc.max_diags);
        sl__diag_add(diags, name, 0, 0, "", msg);
    }
    sl__arena_destroy(lc.tmp);
    if (lc.n_err > 0) {
        sl__arena_destroy(lc.keep);
        return SL_ECONFIG;
    }
    *out = lc.cfg;
    return 0;
}

int sl_config_load_buffer(const char *name, const char *buf, size_t len, sl_config_t **out, sl_diags_t *diags)
{
    return sl__config_load_ex(name, NULL, buf, len, NULL, NULL, NULL, out, diags);
}

int sl_config_load(const char *path, sl_config_t **out, sl_diags_t *diags)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    const char *why = NULL;
    if (fd < 0 || fstat(fd, &st) != 0)
        why = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    else if ((uint64_t)st.st_size > SL__MAX_FILE)
        why = "larger than 16 MiB, the most a config file may have";
    if (why != NULL) {
        char msg[256];
        snprintf(msg, sizeof msg, "cannot load the config: %s", why);
        sl__diag_add(diags, path, 0, 0, "", msg);
        if (fd >= 0)
            close(fd);
        return SL_ECONFIG;
    }
    char *buf = sl__xrealloc(NULL, (size_t)st.st_size + 1);
    size_t got = 0;
    errno = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* a file that shrank while read is loaded as far as it went */
        got += (size_t)n;
    }
    if (got < (size_t)st.st_size && errno != 0 && errno != EINTR) {
        char msg[256];
        snprintf(msg, sizeof msg, "cannot load the config: %s", strerror(errno));
        sl__diag_add(diags, path, 0, 0, "", msg);
        close(fd);
        free(buf);
        return SL_ECONFIG;
    }
    close(fd);
    /* Relative *_file paths are relative to the config file, so a config and its secrets move together. */
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : NULL;
    int rc = sl__config_load_ex(path, dir, buf, got, NULL, NULL, NULL, out, diags);
    free(dir);
    free(buf);
    return rc;
}

void sl_config_destroy(sl_config_t *cfg)
{
    if (cfg != NULL)
        sl__arena_destroy(cfg->impl_); /* the config itself lives in its arena */
}
