/*
 * `sluice replay FILE -c CONFIG`: a capture through a pipeline config, in place of its sources; or
 * `sluice replay FILE --mqtt URL`: the capture published to a broker.
 *
 * With a config, every source node becomes a `replay` node on FILE (keeping its name, its concurrency and,
 * for mqtt sources, its topic_template and key_from, so keys and attributes come out as they would live),
 * and the pipeline runs as `sluice run` would. The schema's defaults of the replay type fill the keys the
 * command line does not set.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config_int.h"
#include "ingest/capture/capture.h"
#include "stages/stages.h"

typedef struct sl_replayopt_s {
    const char *file, *config, *mqtt, *speed, *loops, *start_record, *start_time, *count, *key_level, *key_from;
} sl_replayopt_t;

/*
 * Turns source node nd into a replay node: every key of the replay type, from the command line, from the
 * node (mqtt's topic_template and key_from), or the schema's default. *params is the caller's to free.
 */
static int sl__replay_node(sl_conf_node_t *nd, const sl_replayopt_t *o, bool progress, sl_conf_param_t **params)
{
    const sl_cli_kv_t over[] = {{"file", o->file},
                                {"speed", o->speed},
                                {"loops", o->loops},
                                {"start_record", o->start_record},
                                {"start_time", o->start_time},
                                {"count", o->count},
                                {"key_level", o->key_level},
                                {"key_from", o->key_from},
                                {"topic_template", sl_cli_param(nd, "topic_template")},
                                {"key_from", sl_cli_param(nd, "key_from")},
                                {"progress", progress ? "true" : NULL},
                                {NULL, NULL}};
    size_t n;
    sl_conf_param_t *p = sl_cli_params("sources.replay", over, NULL, &n);
    if (p == NULL)
        return SL_ENOMEM;
    for (size_t i = 0; i < n; i++)
        p[i].line = nd->line, p[i].col = nd->col;
    nd->type = "replay";
    nd->params = p;
    nd->n_params = n;
    *params = p;
    return 0;
}

/* Checks the command-line values as the config loader would check them in a file. */
static const char *sl__replay_check(const sl_replayopt_t *o)
{
    uint64_t u;
    int64_t i;
    double d;
    if (o->speed && (sl__parse_double(o->speed, &d) != 0 || !(d >= 0 && d <= 1e6)))
        return "--speed wants a number from 0 (as fast as possible) up";
    if (o->loops && sl__parse_count(o->loops, &u) != 0)
        return "--loop wants a count (0 = forever)";
    if (o->start_record && sl__parse_count(o->start_record, &u) != 0)
        return "--start wants a record index (1000) or a time offset (90s)";
    if (o->start_time && sl__parse_duration(o->start_time, &u) != 0)
        return "--start wants a record index (1000) or a time offset (90s)";
    if (o->count && sl__parse_count(o->count, &u) != 0)
        return "--count wants a count";
    if (o->key_level && (sl__parse_int(o->key_level, &i) != 0 || i < -1 || i > 31))
        return "--key-level wants a topic level from 0 to 31";
    return NULL;
}

static void sl__replay_usage(FILE *to)
{
    fprintf(to, "usage: sluice replay FILE -c CONFIG [options]\n"
                "  FILE                    sluice capture, NDJSON or mosquitto_sub -v output; gzip or not\n"
                "  -c, --config CONFIG     the pipeline; each of its sources replays FILE instead\n"
                "      --mqtt URL          or: publish FILE to a broker (tcp://HOST:PORT, MQTT 5)\n"
                "  -s, --speed S           1 = recorded pace (default), N = N times faster, 0 or max = as fast\n"
                "                          as demand allows\n"
                "  -l, --loop[=N]          replay N times (without N: until stopped)\n"
                "      --start N|DURATION  begin at record index N, or DURATION after the first record\n"
                "  -n, --count N           stop after N events\n"
                "      --key-level N       topic level that becomes the record key\n"
                "      --key-from NAME     template capture or recorded property that becomes the key\n"
                "  -v, --verbose / -q, --quiet\n");
}

static int sl__replay_parse(int argc, char **argv, sl_replayopt_t *o)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"speed", required_argument, NULL, 's'},
                                         {"mqtt", required_argument, NULL, 'M'},
                                         {"loop", optional_argument, NULL, 'l'},
                                         {"start", required_argument, NULL, 'S'},
                                         {"count", required_argument, NULL, 'n'},
                                         {"key-level", required_argument, NULL, 'K'},
                                         {"key-from", required_argument, NULL, 'F'},
                                         {"verbose", no_argument, NULL, 'v'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    memset(o, 0, sizeof *o);
    while ((c = getopt_long(argc, argv, "c:s:l::n:vqh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': o->config = optarg; break;
        case 'M': o->mqtt = optarg; break;
        case 's': o->speed = strcmp(optarg, "max") == 0 ? "0" : optarg; break;
        case 'l': o->loops = optarg ? optarg : "0"; break;
        case 'S':
            *(strspn(optarg, "0123456789_") == strlen(optarg) ? &o->start_record : &o->start_time) = optarg;
            break;
        case 'n': o->count = optarg; break;
        case 'K': o->key_level = optarg; break;
        case 'F': o->key_from = optarg; break;
        case 'v': sl_log_set_level(SL_LOG_DEBUG); break;
        case 'q': sl_log_set_level(SL_LOG_WARN); break;
        case 'h': sl__replay_usage(stdout); return 1;
        default: sl__replay_usage(stderr); return SL_EINVAL;
        }
    }
    if (optind + 1 != argc || (o->config == NULL) == (o->mqtt == NULL)) {
        fprintf(stderr, "sluice replay: %s\n",
                optind + 1 != argc ? "expected one capture FILE" : "give one of -c CONFIG and --mqtt URL");
        return SL_EINVAL;
    }
    o->file = argv[optind];
    const char *why = sl__replay_check(o);
    if (why != NULL) {
        fprintf(stderr, "sluice replay: %s\n", why);
        return SL_EINVAL;
    }
    return 0;
}

/* Opens the capture once in the master, to refuse an unreadable file before anything starts. */
static int sl__replay_probe(const char *file)
{
    sl_cap_reader_t *rd;
    int rc = sl_cap_reader_open(file, &rd);
    if (rc != 0) {
        fprintf(stderr, "sluice replay: cannot read %s: %s\n", file, sl_strerror(rc));
        return rc;
    }
    const sl_cap_info_t *in = sl_cap_reader_info(rd);
    sl_log(SL_LOG_INFO, "master", 0, "capture %s: %s%s%s%s", file, sl_cap_format_name(in->format),
           in->gzip ? ", gzip" : "", in->desc[0] ? ", " : "", in->desc);
    sl_cap_reader_destroy(rd);
    return 0;
}

/* Publishes the capture to a broker at the asked speed, loops, start and count (like the replay source,
 * with one publisher). Returns the exit code. */
static int sl__replay_publish(const sl_replayopt_t *o)
{
    double speed = 1;
    uint64_t loops = 1, start = 0, start_ns = 0, count = 0, sent = 0, first = 0, done = 0, failed = 0;
    if (o->speed)
        (void)sl__parse_double(o->speed, &speed);
    if (o->loops)
        (void)sl__parse_count(o->loops, &loops);
    if (o->start_record)
        (void)sl__parse_count(o->start_record, &start);
    if (o->start_time)
        (void)sl__parse_duration(o->start_time, &start_ns);
    if (o->count)
        (void)sl__parse_count(o->count, &count);
    sl_cap_reader_t *rd;
    sl_cap_pub_t *pub;
    if (sl_cap_reader_open(o->file, &rd) != 0)
        return SL_EXIT_FATAL;
    if (sl_cap_pub_open(o->mqtt, NULL, &pub) != 0) {
        fprintf(stderr, "sluice replay: cannot connect to %s\n", o->mqtt);
        sl_cap_reader_destroy(rd);
        return SL_EXIT_FATAL;
    }
    int rc = 0;
    for (uint64_t pass = 0; rc == 0 && (loops == 0 || pass < loops) && !(count && sent >= count) && !sl_cli_stopped();
         pass++) {
        uint64_t anchor = 0, anchor_ts = 0, before = sent;
        sl_cap_rec_t r;
        int n;
        if (pass > 0 && sl_cap_reader_rewind(rd) != 0)
            break;
        while (rc == 0 && !(count && sent >= count) && (n = sl_cap_reader_next(rd, &r)) != SL_EOF) {
            if (n != 0) {
                if (n == SL_EBADMSG)
                    sl_log(SL_LOG_WARN, "replay", 0, "%s: corrupt record %llu at byte %llu: %s; skipped", o->file,
                           (unsigned long long)sl_cap_reader_info(rd)->err_index,
                           (unsigned long long)sl_cap_reader_info(rd)->err_offset, sl_cap_reader_info(rd)->err);
                if (n == SL_EBADMSG)
                    continue;
                rc = n;
                break;
            }
            first = first ? first : r.ts_ns;
            if (r.index < start || (start_ns && r.ts_ns < first + start_ns))
                continue;
            if (speed > 0 && r.ts_ns) {
                if (anchor == 0)
                    anchor = sl_now_ns(), anchor_ts = r.ts_ns;
                sl_cli_pace(anchor + (r.ts_ns > anchor_ts ? (uint64_t)((double)(r.ts_ns - anchor_ts) / speed) : 0));
            }
            if (sl_cli_stopped())
                break;
            rc = sl_cap_pub_put(pub, &r, -1);
            sent++;
        }
        if (sent == before)
            break; /* nothing in a whole pass: do not spin */
    }
    int crc = sl_cap_pub_close(pub, &done, &failed);
    printf("sluice replay: published %llu messages from %s to %s (%llu confirmed, %llu failed)\n",
           (unsigned long long)sent, o->file, o->mqtt, (unsigned long long)done, (unsigned long long)failed);
    sl_cap_reader_destroy(rd);
    return rc == 0 && crc == 0 && failed == 0 ? 0 : 1;
}

int sl_cli_replay(int argc, char **argv)
{
    sl_replayopt_t o;
    int rc = sl__replay_parse(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : SL_EXIT_FATAL;
    if (sl__replay_probe(o.file) != 0)
        return SL_EXIT_FATAL;
    if (o.mqtt != NULL) {
        sl_cli_catch_stop();
        return sl__replay_publish(&o);
    }
    sl_config_t *cfg = NULL;
    if (sl_cli_load("replay", o.config, &cfg) != 0)
        return SL_EXIT_FATAL;
    /* A progress line replaces the summary lines on a terminal: both would fight over the same line. */
    bool progress = isatty(2) && sl_log_get_level() >= SL_LOG_INFO;
    if (progress)
        cfg->summary_interval_ns = 0;
    sl_conf_param_t *params[64] = {0};
    size_t n_src = 0;
    for (size_t i = 0; i < cfg->n_nodes && rc == 0; i++) {
        if (cfg->nodes[i].role != SL_ROLE_SOURCE)
            continue;
        if (n_src == SL_ARRAY_LEN(params))
            rc = SL_ERANGE;
        else {
            rc = sl__replay_node(&cfg->nodes[i], &o, progress && n_src == 0, &params[n_src]);
            n_src++;
        }
    }
    if (n_src > 1)
        sl_log(SL_LOG_WARN, "master", 0, "%zu sources: each of them replays all of %s", n_src, o.file);
    int status = SL_EXIT_FATAL;
    if (rc == 0) {
        char what[1024];
        snprintf(what, sizeof what, "replaying %s through pipeline \"%s\" from %s", o.file, cfg->pipeline_name,
                 o.config);
        status = sl_cli_run(cfg, what);
    }
    sl_config_destroy(cfg);
    for (size_t i = 0; i < n_src; i++)
        free(params[i]);
    return status;
}
