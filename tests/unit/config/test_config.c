/*
 * The config loader against its corpus: every file in tests/config/bad/ must fail with exactly the
 * diagnostics in its .expect sidecar, every file in tests/config/good/ and examples/ must load (and print
 * the summary in its .summary sidecar when there is one), every file in tests/config/fuzz-regressions/
 * must load or fail without crashing. Also: 10 MB inputs, the size limit, the public accessors and
 * `sluice validate`'s exit codes.
 *
 * SLUICE_UPDATE_EXPECT=1 rewrites the sidecars from the current output (review the diff before
 * committing). Paths in diagnostics are shown relative to the corpus folder.
 */
#include "config/config_int.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

typedef struct tstate_s {
    char src[4096]; /* the source tree */
    bool update;    /* SLUICE_UPDATE_EXPECT=1 */
    char *out;      /* captured text of the last render */
    size_t out_len;
} tstate_t;

static int setup(void **state)
{
    tstate_t *ts = calloc(1, sizeof *ts);
    assert_non_null(ts);
    const char *src = getenv("SLUICE_SRC");
    if (src != NULL) {
        snprintf(ts->src, sizeof ts->src, "%s", src);
    } else {
        /* Run by hand: this file is <src>/tests/unit/config/test_config.c. */
        snprintf(ts->src, sizeof ts->src, "%s", __FILE__);
        for (int i = 0; i < 4; i++) {
            char *slash = strrchr(ts->src, '/');
            if (slash != NULL)
                *slash = '\0';
        }
    }
    const char *up = getenv("SLUICE_UPDATE_EXPECT");
    ts->update = up != NULL && strcmp(up, "1") == 0;
    *state = ts;
    return 0;
}

static int teardown(void **state)
{
    tstate_t *ts = *state;
    free(ts->out);
    free(ts);
    return 0;
}

/* Sorted names in dir ending with suffix; the caller frees names[i] and names. */
static size_t list_dir(const char *dir, const char *suffix, char ***names)
{
    DIR *d = opendir(dir);
    size_t n = 0, cap = 0;
    *names = NULL;
    if (d == NULL)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name), sl = strlen(suffix);
        if (e->d_name[0] == '.' || l < sl || strcmp(e->d_name + l - sl, suffix) != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            *names = realloc(*names, cap * sizeof **names);
            assert_non_null(*names);
        }
        (*names)[n++] = strdup(e->d_name);
    }
    closedir(d);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp((*names)[j - 1], (*names)[j]) > 0; j--) {
            char *t = (*names)[j];
            (*names)[j] = (*names)[j - 1];
            (*names)[j - 1] = t;
        }
    return n;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Whole file as a NUL-terminated string (NULL if it cannot be read). */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&buf, &n);
    char chunk[65536];
    size_t r;
    while ((r = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, r, m);
    fclose(f);
    fclose(m);
    if (len != NULL)
        *len = n;
    return buf;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Removes every "<dir>/" from s in place, so expectations name files relative to the corpus folder. */
static void strip_prefix(char *s, const char *dir)
{
    char pre[4200];
    snprintf(pre, sizeof pre, "%s/", dir);
    size_t pl = strlen(pre);
    char *w = s;
    for (char *r = s; *r != '\0';) {
        if (strncmp(r, pre, pl) == 0) {
            r += pl;
            continue;
        }
        *w++ = *r++;
    }
    *w = '\0';
}

/* Loads dir/name; returns the rc and leaves the diagnostics (or the summary) in ts->out. */
static int render(tstate_t *ts, const char *dir, const char *name, bool summary)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    sl_config_t *cfg = NULL;
    sl_diags_t diags = {0};
    int rc = sl_config_load(path, &cfg, &diags);
    free(ts->out);
    ts->out = NULL;
    FILE *m = open_memstream(&ts->out, &ts->out_len);
    sl_diags_print(&diags, m);
    if (rc == 0 && summary)
        sl_config_print_summary(cfg, m);
    fclose(m);
    strip_prefix(ts->out, dir);
    if (rc == 0) {
        assert_non_null(cfg);
        assert_int_equal(diags.n, 0);
    } else {
        assert_null(cfg);
        assert_int_equal(rc, SL_ECONFIG);
        assert_true(diags.n > 0);
    }
    sl_config_destroy(cfg);
    sl_diags_free(&diags);
    return rc;
}

/* Compares ts->out with dir/base+sidecar (or rewrites it); returns the number of mismatches. */
static int compare_sidecar(tstate_t *ts, const char *dir, const char *yaml, const char *sidecar)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%.*s%s", dir, (int)(strlen(yaml) - 5), yaml, sidecar);
    if (ts->update) {
        write_file(path, ts->out);
        return 0;
    }
    char *want = read_file(path, NULL);
    if (want == NULL) {
        printf("missing %s; got:\n%s", path, ts->out);
        return 1;
    }
    int bad = strcmp(want, ts->out) != 0;
    if (bad)
        printf("--- %s: expected:\n%s--- got:\n%s", yaml, want, ts->out);
    free(want);
    return bad;
}

static void test_bad_corpus(void **state)
{
    tstate_t *ts = *state;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/tests/config/bad", ts->src);
    char **names;
    size_t n = list_dir(dir, ".yaml", &names);
    assert_true(n >= 30);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (render(ts, dir, names[i], false) != SL_ECONFIG) {
            printf("%s loaded but must not\n", names[i]);
            bad++;
            continue;
        }
        bad += compare_sidecar(ts, dir, names[i], ".expect");
    }
    free_names(names, n);
    /* Every sidecar belongs to a file, so a renamed case cannot leave a stale expectation behind. */
    n = list_dir(dir, ".expect", &names);
    for (size_t i = 0; i < n; i++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%.*s.yaml", dir, (int)(strlen(names[i]) - 7), names[i]);
        if (access(path, F_OK) != 0) {
            printf("%s has no .yaml\n", names[i]);
            bad++;
        }
    }
    free_names(names, n);
    assert_int_equal(bad, 0);
}

static int check_good_dir(tstate_t *ts, const char *dir)
{
    char **names;
    size_t n = list_dir(dir, ".yaml", &names);
    int bad = 0;
    assert_true(n >= 1);
    for (size_t i = 0; i < n; i++) {
        if (render(ts, dir, names[i], true) != 0) {
            printf("%s does not load:\n%s", names[i], ts->out);
            bad++;
            continue;
        }
        char side[4400];
        snprintf(side, sizeof side, "%s/%.*s.summary", dir, (int)(strlen(names[i]) - 5), names[i]);
        if (ts->update || access(side, F_OK) == 0)
            bad += compare_sidecar(ts, dir, names[i], ".summary");
    }
    free_names(names, n);
    return bad;
}

static void test_good_corpus(void **state)
{
    tstate_t *ts = *state;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/tests/config/good", ts->src);
    assert_int_equal(check_good_dir(ts, dir), 0);
}

static void test_examples(void **state)
{
    tstate_t *ts = *state;
    char dir[4200];
    bool update = ts->update;
    ts->update = false; /* examples carry no sidecars */
    snprintf(dir, sizeof dir, "%s/examples", ts->src);
    assert_int_equal(check_good_dir(ts, dir), 0);
    ts->update = update;
}

static void test_fuzz_regressions(void **state)
{
    tstate_t *ts = *state;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/tests/config/fuzz-regressions", ts->src);
    char **names;
    size_t n = list_dir(dir, "", &names);
    for (size_t i = 0; i < n; i++) {
        char path[4400];
        size_t len;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        char *buf = read_file(path, &len);
        assert_non_null(buf);
        sl_config_t *cfg = NULL;
        sl_diags_t diags = {0};
        int rc = sl_config_load_buffer(names[i], buf, len, &cfg, &diags);
        assert_true(rc == 0 || rc == SL_ECONFIG); /* any verdict; it must just not crash or leak */
        assert_true((rc == 0) == (cfg != NULL));
        sl_config_destroy(cfg);
        sl_diags_free(&diags);
        free(buf);
    }
    free_names(names, n);
}

/* A valid 10 MB config: `nodes` generator sources, one sink taking from all of them. */
static char *big_config(size_t target, size_t *len, size_t *nodes)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&buf, &n);
    fprintf(m, "channels: { capacity: 64KiB, memory_limit: 1TiB }\nsources:\n");
    size_t k = 0;
    for (; (size_t)ftell(m) < target * 4 / 5; k++)
        fprintf(m, "  - { name: s%07zu, type: generator, devices: 10 }\n", k);
    fprintf(m, "sinks:\n  - name: out\n    type: null\n    from:\n");
    for (size_t i = 0; i < k; i++)
        fprintf(m, "      - s%07zu\n", i);
    fclose(m);
    *len = n;
    *nodes = k + 1;
    return buf;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void test_big_valid(void **state)
{
    (void)state;
    size_t len, nodes;
    char *buf = big_config(10u << 20, &len, &nodes);
    assert_true(len >= 10u << 20);
    sl_config_t *cfg = NULL;
    sl_diags_t diags = {0};
    double t0 = now_s();
    int rc = sl_config_load_buffer("big.yaml", buf, len, &cfg, &diags);
    double dt = now_s() - t0;
    printf("# loaded a %zu-byte config with %zu nodes in %.3f s\n", len, nodes, dt);
    if (rc != 0)
        sl_diags_print(&diags, stdout);
    assert_int_equal(rc, 0);
    assert_int_equal(cfg->n_nodes, nodes);
    assert_int_equal(cfg->nodes[nodes - 1].n_from, nodes - 1);
    /* No time bound here (tests carry no timing thresholds): the figure is printed for the record. */
    sl_config_destroy(cfg);
    sl_diags_free(&diags);
    free(buf);
}

static void test_big_errors(void **state)
{
    (void)state;
    /* 10 MB of unknown keys: every one is an error, but only SL__MAX_DIAGS are kept. */
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    fprintf(m, "channels:\n");
    for (size_t k = 0; (size_t)ftell(m) < (10u << 20); k++)
        fprintf(m, "  unknown_%zu: 1\n", k);
    fclose(m);
    sl_config_t *cfg = NULL;
    sl_diags_t diags = {0};
    double t0 = now_s();
    int rc = sl_config_load_buffer("junk.yaml", buf, len, &cfg, &diags);
    printf("# rejected a %zu-byte file of unknown keys in %.3f s\n", len, now_s() - t0);
    assert_int_equal(rc, SL_ECONFIG);
    assert_int_equal(diags.n, SL__MAX_DIAGS + 1);
    assert_non_null(strstr(diags.v[diags.n - 1].msg, "too many errors"));
    sl_diags_free(&diags);
    free(buf);
}

static void test_too_large(void **state)
{
    (void)state;
    size_t len = SL__MAX_FILE + 1;
    char *buf = malloc(len);
    assert_non_null(buf);
    memset(buf, '#', len);
    sl_config_t *cfg = NULL;
    sl_diags_t diags = {0};
    assert_int_equal(sl_config_load_buffer("huge.yaml", buf, len, &cfg, &diags), SL_ECONFIG);
    assert_int_equal(diags.n, 1);
    assert_string_equal(diags.v[0].msg, "the file is 16777217 bytes; a config file may have at most 16 MiB");
    sl_diags_free(&diags);
    free(buf);
}

static void test_missing_file(void **state)
{
    (void)state;
    sl_config_t *cfg = NULL;
    sl_diags_t diags = {0};
    assert_int_equal(sl_config_load("/nonexistent/pipe.yaml", &cfg, &diags), SL_ECONFIG);
    assert_null(cfg);
    assert_int_equal(diags.n, 1);
    assert_string_equal(diags.v[0].msg, "cannot load the config: No such file or directory");
    assert_int_equal(diags.v[0].line, 0);
    sl_diags_free(&diags);
    sl_diags_free(NULL);
}

static const char quick[] = "pipeline: { name: q }\n"
                            "supervision: { max_restarts: 7, watchdog: 2s }\n"
                            "sources:\n"
                            "  - { name: fleet, type: generator, count: 1_000, payload_size: 1KiB }\n"
                            "stages:\n"
                            "  - name: boom\n"
                            "    type: chaos\n"
                            "    from: fleet\n"
                            "    concurrency: 3\n"
                            "    max_demand: 100\n"
                            "    dispatcher: partition\n"
                            "    partition_by: key\n"
                            "    exit_code: 7\n"
                            "    supervision: { max_restarts: 1, restart: transient }\n"
                            "sinks:\n"
                            "  - { name: out, type: null, from: [boom], min_demand: 10 }\n";

static void test_accessors(void **state)
{
    (void)state;
    sl_config_t *cfg = NULL;
    sl_diags_t diags = {0};
    assert_int_equal(sl_config_load_buffer("q.yaml", quick, strlen(quick), &cfg, &diags), 0);
    assert_string_equal(cfg->pipeline_name, "q");
    assert_int_equal(cfg->n_nodes, 3);
    assert_int_equal(cfg->sup.max_restarts, 7);
    assert_int_equal(cfg->sup.watchdog_ns, 2 * SL_NS_PER_S);
    assert_int_equal(cfg->sup.max_seconds_ns, 5 * SL_NS_PER_S);
    assert_true(cfg->metrics_enabled);
    assert_string_equal(cfg->metrics_listen, "127.0.0.1:9464");
    int b = sl_config_find(cfg, "boom");
    assert_int_equal(b, 1);
    assert_int_equal(sl_config_find(cfg, "nope"), -1);
    const sl_conf_node_t *fleet = &cfg->nodes[0], *boom = &cfg->nodes[b], *out = &cfg->nodes[2];
    assert_int_equal(sl_conf_int(fleet, "count"), 1000);
    assert_int_equal(sl_conf_int(fleet, "devices"), 1000);
    assert_int_equal(sl_conf_size(fleet, "payload_size"), 1024);
    assert_int_equal(fleet->n_params, 4);
    assert_int_equal(fleet->params[0].line, 4); /* given: located */
    assert_int_equal(fleet->params[2].line, 0); /* defaulted */
    assert_int_equal(boom->role, SL_ROLE_STAGE);
    assert_int_equal(boom->concurrency, 3);
    assert_int_equal(boom->max_demand, 100);
    assert_int_equal(boom->min_demand, 50);
    assert_int_equal(boom->dispatcher, SL_DISP_PARTITION);
    assert_string_equal(boom->partition_by, "key");
    assert_int_equal(boom->capacity, 1u << 20);
    assert_int_equal(boom->sup.max_restarts, 1);
    assert_int_equal(boom->sup.restart, SL_RESTART_TRANSIENT);
    assert_int_equal(boom->sup.watchdog_ns, 2 * SL_NS_PER_S); /* inherited */
    assert_int_equal(sl_conf_int(boom, "exit_code"), 7);
    assert_string_equal(sl_conf_str(boom, "signal"), "SIGSEGV");
    assert_string_equal(sl_conf_str(boom, "crash_on_key"), "");
    assert_int_equal(out->max_demand, 4000);
    assert_int_equal(out->min_demand, 10);
    assert_int_equal(out->n_from, 1);
    assert_string_equal(out->from[0], "boom");
    assert_false(sl_conf_bool(out, "verify_sequence"));
    assert_null(out->partition_by);
    uint64_t inst, chans, bytes;
    sl__topology_totals(cfg, &inst, &chans, &bytes);
    assert_int_equal(inst, 5);
    assert_int_equal(chans, 6);
    assert_int_equal(bytes, 6u << 20);
    assert_string_equal(sl_dispatcher_name(SL_DISP_BROADCAST), "broadcast");
    assert_string_equal(sl_strategy_name(SL_STRATEGY_REST_FOR_ONE), "rest_for_one");
    assert_string_equal(sl_restart_name(SL_RESTART_TEMPORARY), "temporary");
    sl_config_destroy(cfg);
    sl_config_destroy(NULL);
    sl_diags_free(&diags);
}

static const char *fake_env(void *ctx, const char *name)
{
    (void)ctx;
    return strcmp(name, "KAFKA_USER") == 0 ? "svc-sluice" : NULL;
}

/* `librdkafka:` is a free-form map: entries in file order, ${VAR} substituted, NAME_file read from a file
 * (relative to the config), the secret never in a diagnostic even when the load fails for another reason. */
static void test_librdkafka_map(void **state)
{
    (void)state;
    char dir[] = "/tmp/sinks-cfgXXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/kafka.secret", dir);
    write_file(path, "s3cr3t-pw\n");
    static const char text[] = "sources: [ { name: fleet, type: generator } ]\n"
                               "sinks:\n"
                               "  - name: k\n"
                               "    type: kafka\n"
                               "    from: fleet\n"
                               "    brokers: 127.0.0.1:9092\n"
                               "    librdkafka:\n"
                               "      security.protocol: sasl_plaintext\n"
                               "      sasl.mechanisms: PLAIN\n"
                               "      sasl.username: ${KAFKA_USER}\n"
                               "      sasl.password_file: kafka.secret\n"
                               "      linger.ms: 7\n";
    sl_config_t *cfg = NULL;
    sl_diags_t diags = {0};
    assert_int_equal(sl__config_load_ex("k.yaml", dir, text, strlen(text), NULL, fake_env, NULL, &cfg, &diags), 0);
    const sl_conf_prop_t *props;
    assert_int_equal(sl_conf_props(&cfg->nodes[1], "librdkafka", &props), 5);
    assert_string_equal(props[2].name, "sasl.username");
    assert_string_equal(props[2].value, "svc-sluice");
    assert_string_equal(props[3].name, "sasl.password");
    assert_string_equal(props[3].value, "s3cr3t-pw");
    assert_int_equal(props[3].line, 11);
    assert_string_equal(props[4].value, "7");
    sl_config_destroy(cfg);
    sl_diags_free(&diags);
    /* A refused value is reported by position without the value. */
    static const char bad[] = "sources: [ { name: fleet, type: generator } ]\n"
                              "sinks: [ { name: k, type: kafka, from: fleet, brokers: x,\n"
                              "           librdkafka: { security.protocol: s3cr3t-pw } } ]\n";
    memset(&diags, 0, sizeof diags);
    assert_int_not_equal(sl__config_load_ex("b.yaml", dir, bad, strlen(bad), NULL, fake_env, NULL, &cfg, &diags), 0);
    assert_int_equal(diags.n, 1);
    assert_int_equal(diags.v[0].line, 3);
    assert_string_equal(diags.v[0].path, "sinks.k.librdkafka.security.protocol");
    assert_null(strstr(diags.v[0].msg, "s3cr3t"));
    sl_diags_free(&diags);
    unlink(path);
    rmdir(dir);
}

/* Runs sl__cli_validate on argv; returns the exit code, output in *out and *err (caller frees). */
static int run_cli(int argc, char **argv, char **out, char **err)
{
    size_t on, en;
    FILE *o = open_memstream(out, &on), *e = open_memstream(err, &en);
    int rc = sl__cli_validate(argc, argv, o, e);
    fclose(o);
    fclose(e);
    return rc;
}

static void test_cli(void **state)
{
    tstate_t *ts = *state;
    char good[4400], bad[4400];
    snprintf(good, sizeof good, "%s/examples/quickstart.yaml", ts->src);
    snprintf(bad, sizeof bad, "%s/tests/config/bad/cycle.yaml", ts->src);
    char *out, *err;
    char *a1[] = {"validate", "-c", good};
    assert_int_equal(run_cli(3, a1, &out, &err), 0);
    assert_non_null(strstr(out, "pipeline quickstart"));
    assert_string_equal(err, "");
    free(out), free(err);
    char *a2[] = {"validate", "--config", bad};
    assert_int_equal(run_cli(3, a2, &out, &err), 1);
    assert_string_equal(out, "");
    assert_non_null(strstr(err, "cycle.yaml:4:49: stages.a.from: the stages form a cycle: a -> b -> c -> a"));
    free(out), free(err);
    char cfgarg[4500];
    snprintf(cfgarg, sizeof cfgarg, "--config=%s", good);
    char *a3[] = {"validate", cfgarg};
    assert_int_equal(run_cli(2, a3, &out, &err), 0);
    free(out), free(err);
    char *a4[] = {"validate"};
    assert_int_equal(run_cli(1, a4, &out, &err), 2);
    assert_non_null(strstr(err, "no config file given"));
    free(out), free(err);
    char *a5[] = {"validate", "-c"};
    assert_int_equal(run_cli(2, a5, &out, &err), 2);
    free(out), free(err);
    char *a6[] = {"validate", "-c", good, "extra"};
    assert_int_equal(run_cli(4, a6, &out, &err), 2);
    free(out), free(err);
    char *a7[] = {"validate", "-c", good, "-c", good};
    assert_int_equal(run_cli(5, a7, &out, &err), 2);
    free(out), free(err);
    char *a8[] = {"validate", "--help"};
    assert_int_equal(run_cli(2, a8, &out, &err), 0);
    assert_non_null(strstr(out, "usage: sluice validate"));
    free(out), free(err);
    char *a9[] = {"validate", "-c", "/nonexistent.yaml"};
    assert_int_equal(run_cli(3, a9, &out, &err), 1);
    free(out), free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_corpus, setup, teardown),
        cmocka_unit_test_setup_teardown(test_good_corpus, setup, teardown),
        cmocka_unit_test_setup_teardown(test_examples, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fuzz_regressions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test(test_librdkafka_map),
        cmocka_unit_test_setup_teardown(test_accessors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli, setup, teardown),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
