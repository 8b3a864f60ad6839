/*
 * The scalar parsers (counts, ints, sizes, durations, bools, numbers), environment substitution and the
 * typo suggestions of the config loader, tested directly.
 */
#include "config/config_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef struct ustate_s {
    sl__arena_t *arena;
} ustate_t;

static int setup(void **state)
{
    ustate_t *us = calloc(1, sizeof *us);
    assert_non_null(us);
    us->arena = sl__arena_new();
    *state = us;
    return 0;
}

static int teardown(void **state)
{
    ustate_t *us = *state;
    sl__arena_destroy(us->arena);
    free(us);
    return 0;
}

static void test_count(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_int_equal(sl__parse_count("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(sl__parse_count("1_000_000", &v), 0);
    assert_int_equal(v, 1000000);
    assert_int_equal(sl__parse_count("+12", &v), 0);
    assert_int_equal(v, 12);
    assert_int_equal(sl__parse_count("9223372036854775807", &v), 0);
    assert_int_equal(v, INT64_MAX);
    assert_int_equal(sl__parse_count("9223372036854775808", &v), SL__ERANGE);
    assert_int_equal(sl__parse_count("99999999999999999999", &v), SL__ERANGE);
    const char *bad[] = {"", "-1", "1_", "_1", "1__0", "1e3", "0x10", "1.0", " 1", "1 ", "lots", "1k", "+"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++)
        assert_int_equal(sl__parse_count(bad[i], &v), SL_EINVAL);
}

static void test_int(void **state)
{
    (void)state;
    int64_t v;
    assert_int_equal(sl__parse_int("-5", &v), 0);
    assert_int_equal(v, -5);
    assert_int_equal(sl__parse_int("-9_223_372_036_854_775_808", &v), 0);
    assert_true(v == INT64_MIN);
    assert_int_equal(sl__parse_int("9223372036854775808", &v), SL__ERANGE);
    assert_int_equal(sl__parse_int("-9223372036854775809", &v), SL__ERANGE);
    assert_int_equal(sl__parse_int("--1", &v), SL_EINVAL);
    assert_int_equal(sl__parse_int("-", &v), SL_EINVAL);
}

static void test_size(void **state)
{
    (void)state;
    uint64_t v;
    struct {
        const char *s;
        uint64_t want;
    } ok[] = {
        {"0", 0},
        {"512", 512},
        {"180B", 180},
        {"64KiB", 65536},
        {"1 MiB", 1048576},
        {"64mib", 67108864},
        {"1GiB", 1073741824},
        {"1TiB", UINT64_C(1099511627776)},
        {"10KB", 10000},
        {"10MB", 10000000},
        {"1GB", 1000000000},
        {"2TB", UINT64_C(2000000000000)},
        {"1_024KiB", 1048576},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(ok); i++) {
        assert_int_equal(sl__parse_size(ok[i].s, &v), 0);
        assert_int_equal(v, ok[i].want);
    }
    assert_int_equal(sl__parse_size("16777215TiB", &v), 0); /* the largest whole TiB count that fits */
    assert_int_equal(sl__parse_size("16777216TiB", &v), SL__ERANGE);
    assert_int_equal(sl__parse_size("99999999999999999999GiB", &v), SL__ERANGE);
    assert_int_equal(sl__parse_size("18446744073709551615", &v), 0);
    assert_int_equal(sl__parse_size("18446744073709551616", &v), SL__ERANGE);
    const char *bad[] = {"",       "MiB",   "1.5MiB", "1M",    "1K",     "1 MiBs",
                         "1  MiB", "1MiB ", "-1KiB",  "1Kib2", "1 _KiB", "1Xb"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++)
        assert_int_equal(sl__parse_size(bad[i], &v), SL_EINVAL);
}

static void test_duration(void **state)
{
    (void)state;
    uint64_t v;
    struct {
        const char *s;
        uint64_t want;
    } ok[] = {
        {"0", 0},
        {"0s", 0},
        {"250ms", 250 * SL_NS_PER_MS},
        {"5s", 5 * SL_NS_PER_S},
        {"1m", 60 * SL_NS_PER_S},
        {"1h", 3600 * SL_NS_PER_S},
        {"1d", 86400 * SL_NS_PER_S},
        {"10us", 10000},
        {"10\xc2\xb5s", 10000},
        {"7ns", 7},
        {"1h30m", 5400 * SL_NS_PER_S},
        {"1_000ms", SL_NS_PER_S},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(ok); i++) {
        assert_int_equal(sl__parse_duration(ok[i].s, &v), 0);
        assert_int_equal(v, ok[i].want);
    }
    assert_int_equal(sl__parse_duration("18446744073709551615ns", &v), 0);
    assert_int_equal(sl__parse_duration("18446744073709551615ns1ns", &v), SL__ERANGE);
    assert_int_equal(sl__parse_duration("99999999999999999999s", &v), SL__ERANGE);
    assert_int_equal(sl__parse_duration("9999999999h", &v), SL__ERANGE);
    const char *bad[] = {"", "5", "1m 30s", "1.5s", "5 seconds", "1S", "1M", "s", "5s!", "-1s", "1h-", "0x"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++)
        assert_int_equal(sl__parse_duration(bad[i], &v), SL_EINVAL);
}

static void test_bool_double(void **state)
{
    (void)state;
    bool b;
    assert_int_equal(sl__parse_bool("true", &b), 0);
    assert_true(b);
    assert_int_equal(sl__parse_bool("FALSE", &b), 0);
    assert_false(b);
    assert_int_equal(sl__parse_bool("yes", &b), SL_EINVAL);
    assert_int_equal(sl__parse_bool("on", &b), SL_EINVAL);
    assert_int_equal(sl__parse_bool("1", &b), SL_EINVAL);
    double d;
    assert_int_equal(sl__parse_double("0.5", &d), 0);
    assert_true(d == 0.5);
    assert_int_equal(sl__parse_double("-1e3", &d), 0);
    assert_true(d == -1000.0);
    assert_int_equal(sl__parse_double("1e999", &d), SL__ERANGE);
    assert_int_equal(sl__parse_double("nan", &d), SL_EINVAL);
    assert_int_equal(sl__parse_double("0x1p3", &d), SL_EINVAL);
    assert_int_equal(sl__parse_double(" 1", &d), SL_EINVAL);
    assert_int_equal(sl__parse_double("", &d), SL_EINVAL);
}

static void test_fmt_size(void **state)
{
    (void)state;
    char buf[32];
    sl__fmt_size(0, buf, sizeof buf);
    assert_string_equal(buf, "0 B");
    sl__fmt_size(1023, buf, sizeof buf);
    assert_string_equal(buf, "1023 B");
    sl__fmt_size(1 << 20, buf, sizeof buf);
    assert_string_equal(buf, "1 MiB");
    sl__fmt_size(3u << 29, buf, sizeof buf);
    assert_string_equal(buf, "1.50 GiB");
    sl__fmt_size(UINT64_MAX, buf, sizeof buf);
    assert_string_equal(buf, "16.00 EiB");
}

static const char *fake_env(void *ctx, const char *name)
{
    (void)ctx;
    if (strcmp(name, "HOST") == 0)
        return "broker.local";
    if (strcmp(name, "EMPTY") == 0)
        return "";
    if (strcmp(name, "NESTED") == 0)
        return "${HOST}";
    return NULL;
}

static const char *subst(ustate_t *us, const char *in, int *rc)
{
    const char *out = NULL, *why = NULL;
    *rc = sl__env_subst(us->arena, in, strlen(in), fake_env, NULL, &out, &why);
    return *rc == 0 ? out : why;
}

static void test_env(void **state)
{
    ustate_t *us = *state;
    int rc;
    assert_string_equal(subst(us, "tcp://${HOST}:1883", &rc), "tcp://broker.local:1883");
    assert_int_equal(rc, 0);
    assert_string_equal(subst(us, "${MISSING:-fallback}", &rc), "fallback");
    assert_string_equal(subst(us, "${EMPTY:-fallback}", &rc), "fallback");
    assert_string_equal(subst(us, "${HOST:-fallback}", &rc), "broker.local");
    assert_string_equal(subst(us, "${EMPTY}", &rc), "");
    assert_int_equal(rc, 0);
    assert_string_equal(subst(us, "${MISSING:-}", &rc), "");
    assert_string_equal(subst(us, "cost: $$5 and $", &rc), "cost: $5 and $");
    assert_string_equal(subst(us, "$$${HOST}", &rc), "$broker.local");
    assert_string_equal(subst(us, "${NESTED}", &rc), "${HOST}"); /* not substituted again */
    assert_string_equal(subst(us, "${HOST:?needed}", &rc), "broker.local");
    assert_string_equal(subst(us, "${MISSING:?set MISSING to the broker}", &rc),
                        "environment variable MISSING is required: set MISSING to the broker");
    assert_int_equal(rc, SL_EINVAL);
    assert_string_equal(subst(us, "${EMPTY:?}", &rc), "environment variable EMPTY is required but not set");
    assert_string_equal(subst(us, "${MISSING}", &rc),
                        "environment variable MISSING is not set (write ${MISSING:-} to allow it to be empty)");
    assert_int_equal(rc, SL_EINVAL);
    subst(us, "${HOST", &rc);
    assert_int_equal(rc, SL_EINVAL);
    subst(us, "${}", &rc);
    assert_int_equal(rc, SL_EINVAL);
    subst(us, "${A B}", &rc);
    assert_int_equal(rc, SL_EINVAL);
    subst(us, "${HOST:=x}", &rc);
    assert_int_equal(rc, SL_EINVAL);
    subst(us, "${HOST:}", &rc);
    assert_int_equal(rc, SL_EINVAL);
    const char *plain = "no dollars here";
    const char *out, *why;
    assert_int_equal(sl__env_subst(us->arena, plain, strlen(plain), fake_env, NULL, &out, &why), 0);
    assert_ptr_equal(out, plain); /* nothing copied */
}

static void test_suggest(void **state)
{
    (void)state;
    const char *keys[] = {"max_demand", "min_demand", "capacity", "concurrency", "from", "type"};
    assert_string_equal(sl__suggest("max_demnd", keys, 6), "max_demand");
    assert_string_equal(sl__suggest("mxa_demand", keys, 6), "max_demand"); /* transposition */
    assert_string_equal(sl__suggest("CAPACITY", keys, 6), "capacity");
    assert_string_equal(sl__suggest("frm", keys, 6), "from");
    assert_null(sl__suggest("favourite_colour", keys, 6));
    assert_null(sl__suggest("x", keys, 6));
    assert_int_equal(sl__edit_distance("kitten", "sitting", 5), 3);
    assert_int_equal(sl__edit_distance("abc", "abc", 2), 0);
    assert_int_equal(sl__edit_distance("a", "abcdefgh", 2), 3); /* capped */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_int, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bool_double, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fmt_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_suggest, setup, teardown),
    };
    return cmocka_run_group_tests_name("config_units", tests, NULL, NULL);
}
