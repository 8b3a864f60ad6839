/*
 * The MQTT source's pure helpers: topic templates (captures, literals, `+`, a final `#`, the key
 * capture), attribute encoding and its bounds, and topic filter parsing (QoS suffix, shared groups,
 * misplaced wildcards).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ingest/mqtt/mqtt_int.h"

/* Finds attribute name in a; returns its value as a NUL-terminated copy in out, or false. */
static bool attr(const uint8_t *a, size_t len, const char *name, char *out, size_t cap)
{
    for (size_t o = 0; o + 4 <= len;) {
        uint16_t nl, vl;
        memcpy(&nl, a + o, 2);
        memcpy(&vl, a + o + 2, 2);
        if (nl == strlen(name) && memcmp(a + o + 4, name, nl) == 0 && vl < cap) {
            memcpy(out, a + o + 4 + nl, vl);
            out[vl] = '\0';
            return true;
        }
        o += 4u + nl + vl;
    }
    return false;
}

static void test_template_captures(void **state)
{
    sl_mqtt_tpl_t t;
    const char *why = NULL;
    assert_int_equal(sl_mqtt_tpl_compile(&t, "factory/{site}/{device_id}/telemetry", "device_id", &why), 0);
    uint8_t a[256];
    size_t len = 0, kl = 0;
    const char *key = NULL, *topic = "factory/lyon/dev-7/telemetry";
    assert_int_equal(sl_mqtt_tpl_match(&t, topic, strlen(topic), a, sizeof a, &len, &key, &kl), 1);
    char v[64];
    assert_true(attr(a, len, "site", v, sizeof v));
    assert_string_equal(v, "lyon");
    assert_true(attr(a, len, "device_id", v, sizeof v));
    assert_string_equal(v, "dev-7");
    assert_int_equal(kl, 5);
    assert_memory_equal(key, "dev-7", 5);
}

static void test_template_mismatch_writes_nothing(void **state)
{
    sl_mqtt_tpl_t t;
    const char *why;
    assert_int_equal(sl_mqtt_tpl_compile(&t, "a/{x}/c", "", &why), 0);
    uint8_t a[64];
    size_t len = 0, kl = 0;
    const char *key = NULL;
    static const char *const bad[] = {"a/b", "a/b/c/d", "z/b/c", "a/b/cc", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sl_mqtt_tpl_match(&t, bad[i], strlen(bad[i]), a, sizeof a, &len, &key, &kl), 0);
        assert_int_equal(len, 0);
    }
    assert_int_equal(sl_mqtt_tpl_match(&t, "a//c", 4, a, sizeof a, &len, &key, &kl), 1); /* an empty level */
}

static void test_template_wildcards(void **state)
{
    sl_mqtt_tpl_t t;
    const char *why;
    assert_int_equal(sl_mqtt_tpl_compile(&t, "+/{dev}/#", "dev", &why), 0);
    uint8_t a[64];
    size_t len = 0, kl = 0;
    const char *key = NULL;
    assert_int_equal(sl_mqtt_tpl_match(&t, "x/d1/y/z", 8, a, sizeof a, &len, &key, &kl), 1);
    assert_int_equal(kl, 2);
    assert_int_equal(sl_mqtt_tpl_match(&t, "x/d2", 4, a, sizeof a, &len, &key, &kl), 1); /* '#' takes the parent */
    assert_int_equal(sl_mqtt_tpl_compile(&t, "a/#/b", "", &why), SL_EINVAL);
    assert_int_equal(sl_mqtt_tpl_compile(&t, "a/{}/b", "", &why), SL_EINVAL);
    assert_int_equal(sl_mqtt_tpl_compile(&t, "a/x{y}/b", "", &why), SL_EINVAL);
    assert_int_equal(sl_mqtt_tpl_compile(&t, "a/{y}", "z", &why), SL_EINVAL); /* key_from names no capture */
    assert_int_equal(sl_mqtt_tpl_compile(&t, "", "", &why), 0);
    assert_int_equal(sl_mqtt_tpl_match(&t, "a", 1, a, sizeof a, &len, &key, &kl), 0); /* no template */
}

static void test_attr_bounds(void **state)
{
    uint8_t a[16];
    size_t len = 0;
    assert_int_equal(sl_rec_attr_put(a, sizeof a, &len, "k", 1, "vvvv", 4), 0);
    assert_int_equal(len, 9);
    assert_int_equal(sl_rec_attr_put(a, sizeof a, &len, "k", 1, "vvvv", 4), SL_ENOSPC);
    assert_int_equal(len, 9); /* a failed call changes nothing */
    sl_mqtt_tpl_t t;
    const char *why, *key;
    size_t kl;
    assert_int_equal(sl_mqtt_tpl_compile(&t, "{a}/{b}", "", &why), 0);
    len = 0;
    assert_int_equal(sl_mqtt_tpl_match(&t, "xxxxxxx/yyyyyyy", 15, a, sizeof a, &len, &key, &kl), SL_ENOSPC);
}

static void test_filters(void **state)
{
    char out[SL_MQTT_FILTER_MAX];
    int qos;
    const char *why;
    assert_int_equal(sl_mqtt_filter_parse("a/+/b", 5, 1, "", out, sizeof out, &qos, &why), 0);
    assert_string_equal(out, "a/+/b");
    assert_int_equal(qos, 1);
    assert_int_equal(sl_mqtt_filter_parse("a/#;qos=2", 9, 1, "grp", out, sizeof out, &qos, &why), 0);
    assert_string_equal(out, "$share/grp/a/#");
    assert_int_equal(qos, 2);
    static const char *const bad[] = {"", "a/b+", "a/#/b", "a#", "a;qos=3", "a;q=1", ";qos=1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sl_mqtt_filter_parse(bad[i], strlen(bad[i]), 0, "", out, sizeof out, &qos, &why), SL_EINVAL);
    assert_int_equal(sl_mqtt_filter_parse("abcdef", 6, 0, "", out, 4, &qos, &why), SL_EINVAL); /* too long */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_template_captures),
        cmocka_unit_test(test_template_mismatch_writes_nothing),
        cmocka_unit_test(test_template_wildcards),
        cmocka_unit_test(test_attr_bounds),
        cmocka_unit_test(test_filters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
