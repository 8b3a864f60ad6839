/*
 * `sluice gen`, `sluice replay` and `sluice record` (cli/capture_cmds.c). Each takes argv with argv[0] the command name
 * and returns the process exit code: 0 done, 1 failed, 2 usage or "cannot start" (SL_EXIT_FATAL).
 */
#ifndef SL_CLI_CAPTURE_CMDS_H
#define SL_CLI_CAPTURE_CMDS_H

int sl_cli_gen(int argc, char **argv);
int sl_cli_replay(int argc, char **argv);
int sl_cli_record(int argc, char **argv);

#endif /* SL_CLI_CAPTURE_CMDS_H */
