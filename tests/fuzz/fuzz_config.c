/*
 * libFuzzer target for the config loader: arbitrary bytes through sl_config_load_buffer(), and on success
 * through the summary and the typed accessors; the bytes are also fed to each scalar parser.
 * Built and run by run_config_fuzz.sh (clang, -fsanitize=fuzzer,address,undefined), outside CMake.
 */
#include "config/config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_config_t *cfg = NULL;
    sl_diags_t diags = {0};
    int rc = sl_config_load_buffer("fuzz.yaml", (const char *)data, size, &cfg, &diags);
    if ((rc == 0) != (cfg != NULL) || (rc != 0 && diags.n == 0))
        abort(); /* the contract of sl_config_load_buffer() */
    FILE *null = fopen("/dev/null", "w");
    if (null != NULL) {
        sl_diags_print(&diags, null);
        if (cfg != NULL)
            sl_config_print_summary(cfg, null);
        fclose(null);
    }
    for (size_t i = 0; cfg != NULL && i < cfg->n_nodes; i++) {
        const sl_conf_node_t *nd = &cfg->nodes[i];
        if (nd->min_demand >= nd->max_demand && nd->role != SL_ROLE_SOURCE)
            abort(); /* an invariant of a loaded config */
        for (size_t p = 0; p < nd->n_params; p++)
            (void)sl_conf_str(nd, nd->params[p].key);
    }
    sl_config_destroy(cfg);
    sl_diags_free(&diags);

    /* The scalar parsers on the same bytes, as a string. */
    char buf[256];
    size_t n = size < sizeof buf - 1 ? size : sizeof buf - 1;
    memcpy(buf, data, n);
    buf[n] = '\0';
    uint64_t u;
    int64_t i;
    bool b;
    double d;
    (void)sl__parse_size(buf, &u);
    (void)sl__parse_duration(buf, &u);
    (void)sl__parse_count(buf, &u);
    (void)sl__parse_int(buf, &i);
    (void)sl__parse_bool(buf, &b);
    (void)sl__parse_double(buf, &d);
    return 0;
}
