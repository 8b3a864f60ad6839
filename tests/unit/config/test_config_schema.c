/*
 * The schema table checked against itself and against docs/config.md, and secret keys (which no built-in
 * node type has yet) checked through a schema extended with a test-only sink type.
 *
 * SLUICE_UPDATE_DOCS=1 rewrites docs/config.md from the table instead of comparing.
 */
#include "config/config_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

typedef struct sstate_s {
    char src[4096];
    char dir[64]; /* a temporary folder for secret files */
    sl__key_t *keys;
    sl__type_t *types;
    sl__schema_t schema; /* the built-in one plus the "vault" sink */
} sstate_t;

static int check_no_space(const char *text, const char **why)
{
    *why = "expected a token without spaces";
    return strchr(text, ' ') ? SL_EINVAL : 0;
}

static int setup(void **state)
{
    sstate_t *ss = calloc(1, sizeof *ss);
    assert_non_null(ss);
    const char *src = getenv("SLUICE_SRC");
    snprintf(ss->src, sizeof ss->src, "%s", src ? src : __FILE__);
    for (int i = 0; src == NULL && i < 4; i++)
        *strrchr(ss->src, '/') = '\0';
    snprintf(ss->dir, sizeof ss->dir, "/tmp/sluice-config-test-XXXXXX");
    assert_non_null(mkdtemp(ss->dir));
    const sl__schema_t *b = sl__schema_builtin();
    ss->keys = calloc(b->n_keys + 2, sizeof *ss->keys);
    ss->types = calloc(b->n_types + 1, sizeof *ss->types);
    assert_true(ss->keys && ss->types);
    memcpy(ss->keys, b->keys, b->n_keys * sizeof *ss->keys);
    memcpy(ss->types, b->types, b->n_types * sizeof *ss->types);
    ss->keys[b->n_keys] = (sl__key_t){.section = "sinks.vault",
                                      .key = "token",
                                      .kind = SL_PARAM_STRING,
                                      .check = check_no_space,
                                      .flags = SL__KEY_SECRET | SL__KEY_REQUIRED,
                                      .doc = "API token."};
    ss->keys[b->n_keys + 1] = (sl__key_t){.section = "sinks.vault",
                                          .key = "pin",
                                          .kind = SL_PARAM_COUNT,
                                          .def = "0",
                                          .max = "9999",
                                          .flags = SL__KEY_SECRET,
                                          .doc = "PIN."};
    ss->types[b->n_types] = (sl__type_t){SL_ROLE_SINK, "vault", "sinks.vault", "A sink with secrets."};
    ss->schema = (sl__schema_t){ss->keys, b->n_keys + 2, ss->types, b->n_types + 1};
    *state = ss;
    return 0;
}

static int teardown(void **state)
{
    sstate_t *ss = *state;
    char path[128];
    snprintf(path, sizeof path, "%s/token.txt", ss->dir);
    unlink(path);
    assert_int_equal(rmdir(ss->dir), 0); /* nothing else was left behind */
    free(ss->keys);
    free(ss->types);
    free(ss);
    return 0;
}

static void test_schema_consistent(void **state)
{
    (void)state;
    const sl__schema_t *sc = sl__schema_builtin();
    for (size_t i = 0; i < sc->n_keys; i++) {
        const sl__key_t *k = &sc->keys[i];
        sl__val_t d = {0}, lo = {0}, hi = {0};
        printf("# %s.%s\n", k->section, k->key);
        assert_non_null(k->doc);
        assert_true(strlen(k->doc) > 10);
        assert_true(k->def != NULL || k->def_doc != NULL || (k->flags & SL__KEY_REQUIRED));
        if (k->def != NULL)
            assert_int_equal(sl__value_parse(k->kind, k->def, &d), 0);
        if (k->min != NULL)
            assert_int_equal(sl__value_parse(k->kind, k->min, &lo), 0);
        if (k->max != NULL)
            assert_int_equal(sl__value_parse(k->kind, k->max, &hi), 0);
        if (k->def != NULL && k->min != NULL)
            assert_true(k->kind == SL_PARAM_INT ? d.v.i >= lo.v.i : d.v.u >= lo.v.u);
        if (k->def != NULL && k->max != NULL)
            assert_true(k->kind == SL_PARAM_INT ? d.v.i <= hi.v.i : d.v.u <= hi.v.u);
        if (k->kind == SL_PARAM_ENUM) {
            assert_non_null(k->values);
            char bar[64];
            snprintf(bar, sizeof bar, "|%s|", k->def);
            char all[256];
            snprintf(all, sizeof all, "|%s|", k->values);
            assert_non_null(strstr(all, bar));
        }
        if (k->kind == SL_PARAM_MAP && k->values != NULL)
            assert_non_null(sl__schema_key(sc, k->values, "strategy")); /* the section it holds exists */
        if (k->kind == SL_PARAM_MAP && k->values == NULL) /* free-form: entries are checked, and documented */
            assert_true(sl__schema_prop_check(k) != NULL && k->check_doc != NULL);
        if (k->def != NULL && k->check != NULL) {
            const char *why;
            assert_int_equal(k->check(k->def, &why), 0);
        }
        /* A section is a plain one, the node keys, or the section of a known type. */
        const char *dot = strchr(k->section, '.');
        if (dot != NULL) {
            bool found = false;
            for (size_t t = 0; t < sc->n_types; t++)
                found |= strcmp(sc->types[t].section, k->section) == 0;
            assert_true(found);
        }
        assert_ptr_equal(sl__schema_key(sc, k->section, k->key), k); /* no key twice */
    }
    for (size_t t = 0; t < sc->n_types; t++) {
        char want[128];
        snprintf(want, sizeof want, "%s.%s", sl__role_section(sc->types[t].role), sc->types[t].name);
        assert_string_equal(sc->types[t].section, want);
    }
    /* The enums of config.h and the schema's allowed values agree. */
    assert_int_equal(sl__enum_value("dispatcher", "partition"), SL_DISP_PARTITION);
    assert_int_equal(sl__enum_value("strategy", "rest_for_one"), SL_STRATEGY_REST_FOR_ONE);
    assert_int_equal(sl__enum_value("restart", "temporary"), SL_RESTART_TEMPORARY);
    assert_string_equal(sl_param_kind_name(SL_PARAM_DURATION), "duration");
}

static void test_reference_current(void **state)
{
    sstate_t *ss = *state;
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    sl_config_reference(m);
    fclose(m);
    char path[4200];
    snprintf(path, sizeof path, "%s/docs/config.md", ss->src);
    const char *up = getenv("SLUICE_UPDATE_DOCS");
    if (up != NULL && strcmp(up, "1") == 0) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
    }
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *doc = calloc(1, len + 2);
    assert_non_null(doc);
    size_t n = fread(doc, 1, len + 1, f);
    fclose(f);
    if (n != len || memcmp(doc, text, len) != 0)
        printf("docs/config.md is stale: regenerate it with SLUICE_UPDATE_DOCS=1 ctest -R test_config_schema\n");
    assert_int_equal(n, len);
    assert_memory_equal(doc, text, len);
    /* Every key of the table is documented. */
    const sl__schema_t *sc = sl__schema_builtin();
    for (size_t i = 0; i < sc->n_keys; i++) {
        char cell[96];
        snprintf(cell, sizeof cell, "| `%s` |", sc->keys[i].key);
        assert_non_null(strstr(text, cell));
    }
    free(doc);
    free(text);
}

static const char *fake_env(void *ctx, const char *name)
{
    (void)ctx;
    return strcmp(name, "VAULT_TOKEN") == 0 ? "leaked hunter3" : NULL;
}

/* Loads text with the vault schema; returns rc, diagnostics (and summary) in *out, which the caller frees. */
static int load(sstate_t *ss, const char *sink, char **out, sl_config_t **cfgp)
{
    char text[1024];
    snprintf(text, sizeof text, "sources:\n  - { name: g, type: generator }\nsinks:\n  - %s\n", sink);
    sl_config_t *cfg = NULL;
    sl_diags_t diags = {0};
    int rc = sl__config_load_ex("v.yaml", ss->dir, text, strlen(text), &ss->schema, fake_env, NULL, &cfg, &diags);
    size_t n;
    FILE *m = open_memstream(out, &n);
    sl_diags_print(&diags, m);
    if (cfg != NULL)
        sl_config_print_summary(cfg, m);
    fclose(m);
    sl_diags_free(&diags);
    if (cfgp != NULL)
        *cfgp = cfg;
    else
        sl_config_destroy(cfg);
    return rc;
}

static void test_secrets(void **state)
{
    sstate_t *ss = *state;
    char *out;
    assert_int_equal(load(ss, "{ name: v, type: vault, from: g, token: \"hunter2 x\" }", &out, NULL), SL_ECONFIG);
    assert_string_equal(out, "v.yaml:4:45: sinks.v.token: expected a token without spaces, got a value that is "
                             "not shown (secret)\n");
    free(out);
    assert_int_equal(load(ss, "{ name: v, type: vault, from: g, token: t, pin: 123456 }", &out, NULL), SL_ECONFIG);
    assert_string_equal(out, "v.yaml:4:53: sinks.v.pin: the value is out of range (expected at most 9999)\n");
    free(out);
    assert_int_equal(load(ss, "{ name: v, type: vault, from: g, token: t, pin: 12ab }", &out, NULL), SL_ECONFIG);
    assert_null(strstr(out, "12ab"));
    free(out);
    assert_int_equal(load(ss, "{ name: v, type: vault, from: g, token: \"${VAULT_TOKEN}\" }", &out, NULL), SL_ECONFIG);
    assert_null(strstr(out, "hunter3"));
    free(out);
    assert_int_equal(load(ss, "{ name: v, type: vault, from: g, token_file: nope.txt }", &out, NULL), SL_ECONFIG);
    assert_non_null(strstr(out, "sinks.v.token_file: cannot use \""));
    assert_non_null(strstr(out, "/nope.txt\" as a secret file: No such file or directory\n"));
    free(out);
    assert_int_equal(load(ss, "{ name: v, type: vault, from: g }", &out, NULL), SL_ECONFIG);
    assert_string_equal(out, "v.yaml:4:5: sinks.v: missing required key \"token\"\n");
    free(out);
    assert_int_equal(load(ss, "{ name: v, type: vault, from: g, tokn_file: x }", &out, NULL), SL_ECONFIG);
    assert_non_null(strstr(out, "sinks.v.tokn_file: unknown key; did you mean \"token_file\"?"));
    free(out);

    char path[128];
    snprintf(path, sizeof path, "%s/token.txt", ss->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("s3cr3t-value\n", f);
    fclose(f);
    assert_int_equal(load(ss, "{ name: v, type: vault, from: g, token: a, token_file: token.txt }", &out, NULL),
                     SL_ECONFIG);
    assert_string_equal(out, "v.yaml:4:48: sinks.v.token_file: token is already given (write token or "
                             "token_file, not both)\n");
    free(out);
    sl_config_t *cfg;
    assert_int_equal(load(ss, "{ name: v, type: vault, from: g, token_file: token.txt, pin: 42 }", &out, &cfg), 0);
    assert_null(strstr(out, "s3cr3t"));
    assert_null(strstr(out, "42"));
    const sl_conf_node_t *v = &cfg->nodes[sl_config_find(cfg, "v")];
    assert_string_equal(sl_conf_str(v, "token"), "s3cr3t-value");
    assert_int_equal(sl_conf_int(v, "pin"), 42);
    sl_config_destroy(cfg);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_consistent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reference_current, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets, setup, teardown),
    };
    return cmocka_run_group_tests_name("config_schema", tests, NULL, NULL);
}
