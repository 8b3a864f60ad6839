/*
 * The sluice command line's commands (the files of cli/) and the pieces they share (cli/cli_common.c).
 *
 * Each command takes argv with argv[0] the command name and returns the process exit code: 0 done, 1
 * failed, 2 usage or "cannot start" (SL_EXIT_FATAL), so a service manager does not restart sluice into
 * the same bad invocation. All of this runs in the master process, before and around sl_runtime_run().
 */
#ifndef SL_CLI_H
#define SL_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"

int sl_cli_gen(int argc, char **argv);    /* cli/gen_cmd.c */
int sl_cli_replay(int argc, char **argv); /* cli/replay_cmd.c */
int sl_cli_record(int argc, char **argv); /* cli/record_cmd.c */
int sl_cli_verify(int argc, char **argv); /* cli/verify_cmd.c */

/* Loads path; on errors prints them and "sluice CMD: N errors in PATH; not starting". 0 and *cfg (free with
 * sl_config_destroy), or SL_EXIT_FATAL. */
int sl_cli_load(const char *cmd, const char *path, sl_config_t **cfg);

/* Builds the runtime of cfg and runs it until it drains, after logging what (a sentence). Returns the exit
 * status of sl_runtime_run(), or SL_EXIT_FATAL when the pipeline cannot be built. */
int sl_cli_run(const sl_config_t *cfg, const char *what);

/*
 * The params of a node of schema section `section` ("sources.replay"): every key of it, with the value of
 * the first override pair {key, value} that names it and has a value, else the node's own param of that
 * name when from_node is set and has one, else the schema's default. Overrides end with a NULL key.
 * Returns the array (the caller frees it; values point into the overrides, the node or the schema) and *n,
 * or NULL when out of memory.
 */
typedef struct sl_cli_kv_s {
    const char *key, *value;
} sl_cli_kv_t;
sl_conf_param_t *sl_cli_params(const char *section, const sl_cli_kv_t *over, const sl_conf_node_t *from_node,
                               size_t *n);
/* The value of param key of a node, or NULL. */
const char *sl_cli_param(const sl_conf_node_t *nd, const char *key);

/* A progress line on stderr (the caller checks isatty): "WHAT: DONE/TOTAL UNIT, RATE/s, ETA" (total 0:
 * no total, no ETA), ending the line when last. */
void sl_cli_progress(const char *what, const char *unit, uint64_t done, uint64_t total, uint64_t t0_ns, bool last);

/* Sleeps until the monotonic time due_ns (pacing to a timeline: not a wait for a condition). */
void sl_cli_pace(uint64_t due_ns);

/* SIGINT and SIGTERM set a flag instead of ending the process (commands that stop cleanly on them);
 * sl_cli_stopped() reads it. A second one ends the process as if there were no handler. */
void sl_cli_catch_stop(void);
bool sl_cli_stopped(void);

#endif /* SL_CLI_H */
