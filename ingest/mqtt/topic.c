/*
 * Topic templates and topic filter parsing for the MQTT source (attributes are encoded with sl_rec_attr_put).
 *
 * These run on Paho's callback thread for every message, so they only walk the bytes they are given and
 * write into the caller's buffers. A template is compiled once at init; matching is one pass over the
 * topic, level by level, and captures point into the topic itself.
 */
#include <stdio.h>
#include <string.h>

#include "ingest/mqtt/mqtt_int.h"

static int sl__tpl_level(sl_mqtt_tpl_t *t, const char *p, size_t n, bool last, const char **why)
{
    if (t->n == SL_MQTT_TPL_MAX) {
        *why = "too many topic levels in topic_template (at most 32)";
        return SL_EINVAL;
    }
    if (n == 1 && p[0] == '#') {
        if (!last) {
            *why = "'#' may only be the last level of topic_template";
            return SL_EINVAL;
        }
        t->tail = true;
        return 0;
    }
    if (n >= 2 && p[0] == '{' && p[n - 1] == '}') {
        if (n == 2 || memchr(p + 1, '{', n - 2) || memchr(p + 1, '}', n - 2)) {
            *why = "a topic_template capture is {name} with a non-empty name";
            return SL_EINVAL;
        }
        t->lv[t->n].what = SL_MQTT_LV_CAPTURE;
        t->lv[t->n].text = p + 1;
        t->lv[t->n].len = (uint16_t)(n - 2);
    } else if (memchr(p, '{', n) || memchr(p, '}', n) || memchr(p, '#', n) || (memchr(p, '+', n) && n != 1)) {
        *why = "a topic_template level is literal text, {name}, '+' or a final '#'";
        return SL_EINVAL;
    } else {
        t->lv[t->n].what = n == 1 && p[0] == '+' ? SL_MQTT_LV_ANY : SL_MQTT_LV_LITERAL;
        t->lv[t->n].text = p;
        t->lv[t->n].len = (uint16_t)n;
    }
    t->n++;
    return 0;
}

int sl_mqtt_tpl_compile(sl_mqtt_tpl_t *t, const char *tpl, const char *key_from, const char **why)
{
    memset(t, 0, sizeof *t);
    t->key_level = -1;
    size_t len = strlen(tpl);
    if (len > UINT16_MAX) {
        *why = "topic_template is too long";
        return SL_EINVAL;
    }
    for (size_t i = 0; len > 0 && i <= len;) {
        const char *slash = memchr(tpl + i, '/', len - i);
        size_t end = slash ? (size_t)(slash - tpl) : len;
        int rc = sl__tpl_level(t, tpl + i, end - i, end == len, why);
        if (rc != 0)
            return rc;
        i = end + 1;
    }
    if (key_from[0] == '\0')
        return 0;
    for (size_t l = 0; l < t->n; l++)
        if (t->lv[l].what == SL_MQTT_LV_CAPTURE && t->lv[l].len == strlen(key_from) &&
            memcmp(t->lv[l].text, key_from, t->lv[l].len) == 0)
            t->key_level = (int)l;
    if (t->key_level < 0) {
        *why = "key_from names no {capture} of topic_template";
        return SL_EINVAL;
    }
    return 0;
}

int sl_mqtt_tpl_match(const sl_mqtt_tpl_t *t, const char *topic, size_t len, uint8_t *attrs, size_t cap,
                      size_t *attr_len, const char **key, size_t *key_len)
{
    if (t->n == 0 && !t->tail)
        return 0;
    /* First pass: does it match? Captures are remembered so nothing is written for a mismatch. */
    const char *cap_p[SL_MQTT_TPL_MAX];
    size_t cap_n[SL_MQTT_TPL_MAX];
    size_t i = 0, l = 0;
    for (; l < t->n; l++) {
        if (i > len)
            return 0; /* fewer levels than the template */
        const char *slash = memchr(topic + i, '/', len - i);
        size_t end = slash ? (size_t)(slash - topic) : len;
        size_t n = end - i;
        if (t->lv[l].what == SL_MQTT_LV_LITERAL && (n != t->lv[l].len || memcmp(topic + i, t->lv[l].text, n) != 0))
            return 0;
        cap_p[l] = topic + i;
        cap_n[l] = n;
        i = end + 1;
    }
    if (i <= len && !t->tail)
        return 0; /* more levels than the template */
    int rc = 1;
    for (l = 0; l < t->n; l++) {
        if (t->lv[l].what != SL_MQTT_LV_CAPTURE)
            continue;
        if (sl_rec_attr_put(attrs, cap, attr_len, t->lv[l].text, t->lv[l].len, cap_p[l], cap_n[l]) != 0)
            rc = SL_ENOSPC;
        if ((int)l == t->key_level) {
            *key = cap_p[l];
            *key_len = cap_n[l];
        }
    }
    return rc;
}

/* A filter is levels separated by '/'; '+' must fill a whole level, '#' the whole last one. */
static bool sl__filter_ok(const char *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool start = i == 0 || f[i - 1] == '/', end = i + 1 == n || f[i + 1] == '/';
        if (f[i] == '+' && !(start && end))
            return false;
        if (f[i] == '#' && !(start && i + 1 == n))
            return false;
        if (f[i] == '\0')
            return false;
    }
    return true;
}

int sl_mqtt_filter_parse(const char *item, size_t len, int def_qos, const char *group, char *out, size_t cap, int *qos,
                         const char **why)
{
    size_t flen = len;
    *qos = def_qos;
    const char *semi = memchr(item, ';', len);
    if (semi != NULL) {
        flen = (size_t)(semi - item);
        size_t rest = len - flen - 1;
        if (rest != 5 || strncmp(semi + 1, "qos=", 4) != 0 || semi[5] < '0' || semi[5] > '2') {
            *why = "a topic is FILTER or FILTER;qos=N with N 0, 1 or 2";
            return SL_EINVAL;
        }
        *qos = semi[5] - '0';
    }
    if (flen == 0 || !sl__filter_ok(item, flen)) {
        *why = "a topic filter is non-empty, with '+' only as a whole level and '#' only as the whole last one";
        return SL_EINVAL;
    }
    int w = group[0] ? snprintf(out, cap, "$share/%s/%.*s", group, (int)flen, item)
                     : snprintf(out, cap, "%.*s", (int)flen, item);
    if (w < 0 || (size_t)w >= cap) {
        *why = "topic filter too long";
        return SL_EINVAL;
    }
    return 0;
}
