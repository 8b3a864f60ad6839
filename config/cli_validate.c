/*
 * `sluice validate -c FILE`: load the config and either list every problem (stderr, exit 1) or print the
 * topology summary (stdout, exit 0). Usage errors exit 2 (SL_EXIT_FATAL), like every other command.
 *
 * Arguments are parsed by hand rather than with getopt(), whose state is process-wide.
 */
#include "config/config_int.h"

#include <string.h>

static const char sl__validate_usage[] = "usage: sluice validate -c FILE\n"
                                         "       sluice validate --config FILE\n"
                                         "Checks a pipeline config: prints every problem as "
                                         "FILE:LINE:COL: key: message and exits 1,\n"
                                         "or prints the topology and exits 0.\n";

int sl__cli_validate(int argc, char **argv, FILE *out, FILE *err)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(sl__validate_usage, out);
            return 0;
        }
        bool opt = strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0;
        const char *why = NULL, *file = NULL;
        if (opt && i + 1 < argc)
            file = argv[++i];
        else if (strncmp(a, "--config=", 9) == 0 && a[9] != '\0')
            file = a + 9;
        else
            why = opt ? "missing FILE after" : "unknown argument";
        if (file != NULL && path != NULL)
            why = "more than one config file:";
        if (why != NULL) {
            fprintf(err, "sluice validate: %s %s\n%s", why, file ? file : a, sl__validate_usage);
            return SL_EXIT_FATAL;
        }
        path = file;
    }
    if (path == NULL) {
        fprintf(err, "sluice validate: no config file given\n%s", sl__validate_usage);
        return SL_EXIT_FATAL;
    }
    sl_config_t *cfg;
    sl_diags_t diags = {0};
    int rc = sl_config_load(path, &cfg, &diags);
    if (rc != 0) {
        sl_diags_print(&diags, err);
        fprintf(err, "%s: invalid configuration\n", path);
        sl_diags_free(&diags);
        return 1;
    }
    sl_config_print_summary(cfg, out);
    sl_config_destroy(cfg);
    sl_diags_free(&diags);
    return 0;
}

int sl_cli_validate(int argc, char **argv) { return sl__cli_validate(argc, argv, stdout, stderr); }
