/*
 * What the commands of cli/ share: loading a config with its diagnostics, running a pipeline, building a
 * node's params from the schema, the progress line, pacing, and a stop flag set by SIGINT/SIGTERM.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "config/config_int.h"
#include "stages/stages.h"

int sl_cli_load(const char *cmd, const char *path, sl_config_t **cfg)
{
    sl_diags_t diags = {0};
    *cfg = NULL;
    if (sl_config_load(path, cfg, &diags) != 0) {
        sl_diags_print(&diags, stderr);
        fprintf(stderr, "sluice %s: %zu error%s in %s; not starting\n", cmd, diags.n, diags.n == 1 ? "" : "s", path);
        sl_diags_free(&diags);
        return SL_EXIT_FATAL;
    }
    sl_diags_free(&diags);
    return 0;
}

int sl_cli_run(const sl_config_t *cfg, const char *what)
{
    sl_runtime_t *rt = NULL;
    int rc = sl_runtime_new(cfg, &rt);
    if (rc != 0) {
        sl_log(SL_LOG_ERROR, "master", rc, "cannot build the pipeline");
        return SL_EXIT_FATAL;
    }
    sl_log(SL_LOG_INFO, "master", 0, "%s", what);
    int status = sl_runtime_run(rt);
    sl_runtime_destroy(rt);
    return status;
}

const char *sl_cli_param(const sl_conf_node_t *nd, const char *key)
{
    for (size_t i = 0; nd != NULL && i < nd->n_params; i++)
        if (strcmp(nd->params[i].key, key) == 0)
            return nd->params[i].value;
    return NULL;
}

sl_conf_param_t *sl_cli_params(const char *section, const sl_cli_kv_t *over, const sl_conf_node_t *from_node, size_t *n)
{
    const sl__schema_t *sc = sl__schema_builtin();
    sl_conf_param_t *p = calloc(sc->n_keys, sizeof *p);
    if (p == NULL)
        return NULL;
    *n = 0;
    for (size_t i = 0; i < sc->n_keys; i++) {
        const sl__key_t *key = &sc->keys[i];
        if (strcmp(key->section, section) != 0)
            continue;
        const char *v = NULL;
        for (const sl_cli_kv_t *o = over; o != NULL && o->key != NULL && v == NULL; o++)
            if (o->value != NULL && strcmp(o->key, key->key) == 0)
                v = o->value;
        if (v == NULL)
            v = sl_cli_param(from_node, key->key);
        if (v == NULL)
            v = key->def ? key->def : "";
        p[(*n)++] = (sl_conf_param_t){.key = key->key,
                                      .value = v,
                                      .line = from_node ? from_node->line : 0,
                                      .col = from_node ? from_node->col : 0,
                                      .kind = (int)key->kind};
    }
    return p;
}

void sl_cli_progress(const char *what, const char *unit, uint64_t done, uint64_t total, uint64_t t0_ns, bool last)
{
    double secs = (double)(sl_now_ns() - t0_ns) / 1e9, rate = secs > 0 ? (double)done / secs : 0;
    if (total == 0) {
        fprintf(stderr, "\r%s: %llu %s, %.0f/s, %.0f s%s", what, (unsigned long long)done, unit, rate, secs,
                last ? "\n" : "   ");
        return;
    }
    double left = rate > 0 && total > done ? (double)(total - done) / rate : 0;
    fprintf(stderr, "\r%s: %llu/%llu %s, %.0f/s, ETA %um%02us%s", what, (unsigned long long)done,
            (unsigned long long)total, unit, rate, (unsigned)(left / 60), (unsigned)left % 60, last ? "\n" : "   ");
}

void sl_cli_pace(uint64_t due_ns)
{
    uint64_t now = sl_now_ns();
    if (due_ns <= now)
        return;
    struct timespec ts = {(time_t)((due_ns - now) / SL_NS_PER_S), (long)((due_ns - now) % SL_NS_PER_S)};
    nanosleep(&ts, NULL); /* a signal ends it early: the caller's loop looks at its stop flag */
}

static volatile sig_atomic_t sl__cli_stop;

static void sl__cli_on_stop(int sig)
{
    if (sl__cli_stop) { /* a second one: stop at once, as without the handler */
        signal(sig, SIG_DFL);
        raise(sig);
    }
    sl__cli_stop = 1;
}

void sl_cli_catch_stop(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sl__cli_on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

bool sl_cli_stopped(void) { return sl__cli_stop != 0; }
