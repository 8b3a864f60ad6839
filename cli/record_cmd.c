/*
 * `sluice record -c CONFIG -o FILE`: runs the config's source alone into a `capture` sink, until a limit
 * (the sink then asks its master for a draining shutdown) or SIGINT/SIGTERM.
 *
 * The recording pipeline is built from the loaded config: its source node as it is, and a capture sink
 * whose params are the schema's defaults and the command line. On a terminal a progress line (records,
 * rate, and the limit's ETA) replaces the summary lines.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config_int.h"
#include "stages/stages.h"

typedef struct sl_recordopt_s {
    const char *config, *out, *source, *count, *duration, *size, *gzip, *sync;
} sl_recordopt_t;

static int sl__record_parse(int argc, char **argv, sl_recordopt_t *o)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},   {"output", required_argument, NULL, 'o'},
        {"source", required_argument, NULL, 's'},   {"count", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 't'}, {"size", required_argument, NULL, 'S'},
        {"gzip", optional_argument, NULL, 'z'},     {"sync", required_argument, NULL, 'Y'},
        {"verbose", no_argument, NULL, 'v'},        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    int c;
    uint64_t u;
    optind = 1;
    memset(o, 0, sizeof *o);
    while ((c = getopt_long(argc, argv, "c:o:s:n:t:z::vqh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': o->config = optarg; break;
        case 'o': o->out = optarg; break;
        case 's': o->source = optarg; break;
        case 'n': o->count = optarg; break;
        case 't': o->duration = optarg; break;
        case 'S': o->size = optarg; break;
        case 'z': o->gzip = optarg ? optarg : "6"; break;
        case 'Y': o->sync = optarg; break;
        case 'v': sl_log_set_level(SL_LOG_DEBUG); break;
        case 'q': sl_log_set_level(SL_LOG_WARN); break;
        case 'h':
            printf("usage: sluice record -c CONFIG -o FILE [--source NAME] [--count N] [--duration D] [--size S]"
                   " [--gzip[=L]] [--sync none|batch]\n  records what CONFIG's source (the first, or NAME) takes,"
                   " until a limit or SIGINT/SIGTERM;\n  --sync batch: fdatasync before acknowledging each batch"
                   " (default none: written to the file)\n");
            return 1;
        default: return SL_EINVAL;
        }
    }
    const char *why =
        o->config == NULL || o->out == NULL || optind != argc     ? "usage: sluice record -c CONFIG -o FILE [...]"
        : o->count && sl__parse_count(o->count, &u) != 0          ? "--count wants a count"
        : o->duration && sl__parse_duration(o->duration, &u) != 0 ? "--duration wants a duration (30s, 5m)"
        : o->size && sl__parse_size(o->size, &u) != 0             ? "--size wants a size (100MiB)"
        : o->gzip && (atoi(o->gzip) < 1 || atoi(o->gzip) > 9)     ? "--gzip wants a level from 1 to 9"
        : o->sync && strcmp(o->sync, "none") != 0 && strcmp(o->sync, "batch") != 0 ? "--sync wants none or batch"
                                                                                   : NULL;
    if (why != NULL) {
        fprintf(stderr, "sluice record: %s\n", why);
        return SL_EINVAL;
    }
    return 0;
}

/* Runs the source alone into a capture sink: a config of two nodes built from the loaded one. */
static int sl__record_run(sl_config_t *cfg, const sl_recordopt_t *o)
{
    int at = -1;
    for (size_t i = 0; i < cfg->n_nodes && at < 0; i++)
        if (cfg->nodes[i].role == SL_ROLE_SOURCE && (o->source == NULL || strcmp(cfg->nodes[i].name, o->source) == 0))
            at = (int)i;
    if (at < 0) {
        fprintf(stderr, "sluice record: %s in %s\n", o->source ? "no such source" : "no source", o->config);
        return SL_EXIT_FATAL;
    }
    char desc[512];
    snprintf(desc, sizeof desc, "sluice record: source \"%s\" (%s) of %s", cfg->nodes[at].name, cfg->nodes[at].type,
             o->config);
    const char *from[1] = {cfg->nodes[at].name};
    sl_conf_node_t nodes[2] = {cfg->nodes[at]};
    nodes[0].dead_letter = NULL;
    nodes[1] = (sl_conf_node_t){.name = "record",
                                .type = "capture",
                                .role = SL_ROLE_SINK,
                                .from = from,
                                .n_from = 1,
                                .concurrency = 1,
                                .max_demand = cfg->max_demand,
                                .min_demand = cfg->min_demand,
                                .dispatcher = SL_DISP_DEMAND,
                                .capacity = cfg->capacity,
                                .sup = cfg->sup};
    /* A progress line replaces the summary lines on a terminal: both would fight over the same line. */
    bool progress = isatty(2) && sl_log_get_level() >= SL_LOG_INFO;
    const sl_cli_kv_t over[] = {
        {"file", o->out},  {"description", desc},   {"count", o->count}, {"duration", o->duration},
        {"size", o->size}, {"gzip_level", o->gzip}, {"sync", o->sync},   {"progress", progress ? "true" : NULL},
        {NULL, NULL}};
    nodes[1].params = sl_cli_params("sinks.capture", over, NULL, &nodes[1].n_params);
    if (nodes[1].params == NULL)
        return SL_EXIT_FATAL;
    sl_config_t two = *cfg;
    two.nodes = nodes;
    two.n_nodes = 2;
    if (progress)
        two.summary_interval_ns = 0;
    unlink(o->out); /* the sink appends (so a restarted one keeps what was written): start empty */
    char what[1024];
    snprintf(what, sizeof what, "recording source \"%s\" of %s into %s", nodes[0].name, o->config, o->out);
    int status = sl_cli_run(&two, what);
    free(nodes[1].params);
    return status;
}

int sl_cli_record(int argc, char **argv)
{
    sl_recordopt_t o;
    int rc = sl__record_parse(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : SL_EXIT_FATAL;
    sl_config_t *cfg = NULL;
    if (sl_cli_load("record", o.config, &cfg) != 0)
        return SL_EXIT_FATAL;
    int status = sl__record_run(cfg, &o);
    sl_config_destroy(cfg);
    return status;
}
