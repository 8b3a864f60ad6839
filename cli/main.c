/*
 * The sluice command line: `sluice run`, `sluice validate`, `sluice gen`, `sluice replay`, `sluice record`,
 * `sluice verify`, `sluice config-reference`, `sluice version` (each command in its own file of cli/).
 *
 * Exit codes: 0 success; 1 the pipeline failed or the config is invalid; 2 usage errors and "cannot
 * start" (SL_EXIT_FATAL), so a service manager does not restart sluice into the same bad config.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/sl.h"
#include "config/config.h"
#include "stages/stages.h"

#define SL_VERSION "0.1.0"

static void sl__usage(FILE *to)
{
    fprintf(to, "usage: sluice <command> [options]\n"
                "\n"
                "commands:\n"
                "  run -c FILE [-v] [-q]     run the pipeline described by FILE until it drains or is stopped\n"
                "                            (SIGINT/SIGTERM drain it; a second SIGINT stops at once)\n"
                "  validate -c FILE          check FILE and print every error, or the topology summary\n"
                "  gen -o FILE [options]     generate a synthetic fleet into a capture file (gen --help)\n"
                "  replay FILE -c CONFIG     run CONFIG with FILE replayed in place of its sources\n"
                "                            (--speed S, --loop[=N], --start N|DURATION; replay --help)\n"
                "  record -c CONFIG -o FILE  record what CONFIG's source takes into a capture file, until\n"
                "                            --count, --duration, --size or SIGINT (record --help)\n"
                "  verify [--expect N] PATH  check per-device sequence numbers in files: lost, duplicates\n"
                "  config-reference          print the configuration reference (Markdown)\n"
                "  version                   print the version\n"
                "\n"
                "options:\n"
                "  -c, --config FILE         the pipeline's YAML file\n"
                "  -v, --verbose             log debug lines (supervision transitions, worker starts)\n"
                "  -q, --quiet               log warnings and errors only\n");
}

static int sl__cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"verbose", no_argument, NULL, 'v'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:vqh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'v': sl_log_set_level(SL_LOG_DEBUG); break;
        case 'q': sl_log_set_level(SL_LOG_WARN); break;
        case 'h': sl__usage(stdout); return 0;
        default: sl__usage(stderr); return SL_EXIT_FATAL;
        }
    }
    if (path == NULL || optind != argc) {
        fprintf(stderr, "sluice run: %s\n", path ? "unexpected argument" : "missing -c FILE");
        return SL_EXIT_FATAL;
    }
    sl_config_t *cfg = NULL;
    if (sl_cli_load("run", path, &cfg) != 0)
        return SL_EXIT_FATAL;
    char what[512];
    snprintf(what, sizeof what, "pipeline \"%s\" from %s: %zu nodes, starting", cfg->pipeline_name, path, cfg->n_nodes);
    int status = sl_cli_run(cfg, what);
    sl_config_destroy(cfg);
    return status;
}

/*
 * Makes sure descriptors 0, 1 and 2 are open (on /dev/null when the caller closed them, as some service
 * managers and CI runners do for stdin). Otherwise the next socket can get descriptor 0, which Paho takes
 * for "no socket": its connect then never completes (measured: the mqtt source hung in its first connect
 * whenever stdin was closed and no metrics listener took descriptor 0 first).
 */
static void sl__std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            int nfd = open("/dev/null", O_RDWR);
            if (nfd >= 0 && nfd != fd) /* lower descriptors are open: open() took this one or a higher */
                close(nfd);
        }
}

int main(int argc, char **argv)
{
    sl__std_fds();
    if (argc < 2) {
        sl__usage(stderr);
        return SL_EXIT_FATAL;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0)
        return sl__cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "validate") == 0)
        return sl_cli_validate(argc - 1, argv + 1);
    if (strcmp(cmd, "gen") == 0)
        return sl_cli_gen(argc - 1, argv + 1);
    if (strcmp(cmd, "replay") == 0)
        return sl_cli_replay(argc - 1, argv + 1);
    if (strcmp(cmd, "record") == 0)
        return sl_cli_record(argc - 1, argv + 1);
    if (strcmp(cmd, "verify") == 0)
        return sl_cli_verify(argc - 1, argv + 1);
    if (strcmp(cmd, "config-reference") == 0) {
        sl_config_reference(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("sluice %s\n", SL_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        sl__usage(stdout);
        return 0;
    }
    fprintf(stderr, "sluice: unknown command \"%s\"\n\n", cmd);
    sl__usage(stderr);
    return SL_EXIT_FATAL;
}
