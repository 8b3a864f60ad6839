/*
 * Path templates of the file sink: literal text, strftime conversions (UTC, from the event's receive
 * time), {key}, {topic} and {ATTRIBUTE}.
 *
 * Values come from devices, so they are untrusted: a value can never add a path component or climb out of
 * the base directory. Each byte that is '/', '\\', NUL or a control character becomes '_', a value made
 * only of dots becomes underscores, an empty or missing value becomes "_", and values are cut at
 * SL_FILE_VALUE_MAX bytes. The expanded path is checked once more as a whole (relative, no empty, "." or
 * ".." component) before it is used, so a mistake here fails closed.
 *
 * strftime runs once per second of receive time per segment, not once per event.
 */
#include <stdlib.h>
#include <string.h>

#include "sinks/file/file_int.h"

bool sl__path_is_safe(const char *rel, size_t len)
{
    if (len == 0 || rel[0] == '/')
        return false;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && rel[i] == '\0')
            return false;
        if (i < len && rel[i] != '/')
            continue;
        size_t n = i - start;
        if (n == 0 || (n == 1 && rel[start] == '.') || (n == 2 && rel[start] == '.' && rel[start + 1] == '.'))
            return false;
        if (n > 255)
            return false;
        start = i + 1;
    }
    return true;
}

bool sl__path_put_value(char *out, size_t cap, size_t *o, const uint8_t *value, size_t len)
{
    if (len > SL_FILE_VALUE_MAX)
        len = SL_FILE_VALUE_MAX;
    bool dots = true;
    for (size_t i = 0; i < len; i++)
        dots = dots && value[i] == '.';
    if (len == 0) {
        value = (const uint8_t *)"_";
        len = 1;
        dots = false;
    }
    if (*o + len >= cap)
        return false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = value[i];
        out[(*o)++] = (char)(c < 0x20 || c == 0x7f || c == '/' || c == '\\' || dots ? '_' : c);
    }
    return true;
}

static int sl__tpl_add(sl_tpl_t *tpl, sl_tpl_kind_t kind, const char *text, size_t len)
{
    sl_tpl_seg_t *segs = realloc(tpl->segs, (tpl->n + 1) * sizeof *segs);
    if (segs == NULL)
        return SL_ENOMEM;
    tpl->segs = segs;
    sl_tpl_seg_t *s = &segs[tpl->n];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->text = strndup(text, len);
    s->len = len;
    s->cached_sec = -1;
    if (s->text == NULL)
        return SL_ENOMEM;
    tpl->n++;
    return 0;
}

/* The template with every conversion and placeholder replaced by "x": what the literal text must make
 * a safe relative path of. */
static bool sl__tpl_literal_safe(const char *text, const char **why)
{
    size_t n = strlen(text);
    char *shape = malloc(n + 1);
    size_t o = 0;
    if (shape == NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == '%' && i + 1 < n) {
            shape[o++] = 'x';
            i++;
        } else if (text[i] == '{') {
            const char *close = strchr(text + i, '}');
            shape[o++] = 'x';
            i = close ? (size_t)(close - text) : n;
        } else {
            shape[o++] = text[i];
        }
    }
    bool ok = sl__path_is_safe(shape, o);
    free(shape);
    if (!ok)
        *why = "path must be relative to dir, without empty, \".\" or \"..\" components";
    return ok;
}

static int sl__tpl_brace(sl_tpl_t *tpl, const char *p, const char **end, const char **why)
{
    const char *close = strchr(p, '}');
    if (close == NULL || close == p + 1) {
        *why = close ? "empty {} in path" : "unclosed { in path";
        return SL_EINVAL;
    }
    size_t len = (size_t)(close - p - 1);
    sl_tpl_kind_t kind = SL_TPL_ATTR;
    if (len == 3 && memcmp(p + 1, "key", 3) == 0)
        kind = SL_TPL_KEY;
    else if (len == 5 && memcmp(p + 1, "topic", 5) == 0)
        kind = SL_TPL_TOPIC;
    *end = close + 1;
    return sl__tpl_add(tpl, kind, p + 1, len);
}

int sl__tpl_compile(sl_tpl_t *tpl, const char *text, const char **why)
{
    memset(tpl, 0, sizeof *tpl);
    if (!sl__tpl_literal_safe(text, why))
        return SL_EINVAL;
    const char *p = text;
    while (*p) {
        if (*p == '{') {
            int rc = sl__tpl_brace(tpl, p, &p, why);
            if (rc != 0) {
                sl__tpl_free(tpl);
                return rc;
            }
            continue;
        }
        /* A run up to the next brace: literal, or a strftime format when it holds a conversion. */
        size_t n = strcspn(p, "{");
        bool time = false;
        for (size_t i = 0; i < n; i++) {
            if (p[i] != '%')
                continue;
            if (i + 1 >= n || p[i + 1] == 'n' || p[i + 1] == 't') {
                *why = "path has a trailing '%' or a %n / %t conversion";
                sl__tpl_free(tpl);
                return SL_EINVAL;
            }
            time = true;
            i++;
        }
        if (sl__tpl_add(tpl, time ? SL_TPL_TIME : SL_TPL_LIT, p, n) != 0) {
            sl__tpl_free(tpl);
            return SL_ENOMEM;
        }
        p += n;
    }
    return 0;
}

void sl__tpl_free(sl_tpl_t *tpl)
{
    for (size_t i = 0; i < tpl->n; i++)
        free(tpl->segs[i].text);
    free(tpl->segs);
    memset(tpl, 0, sizeof *tpl);
}

static bool sl__tpl_time(sl_tpl_seg_t *s, uint64_t ingest_ns, char *out, size_t cap, size_t *o)
{
    int64_t sec = (int64_t)(ingest_ns / SL_NS_PER_S);
    if (sec != s->cached_sec) {
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        s->cached_len = strftime(s->cached, sizeof s->cached, s->text, &tm);
        s->cached_sec = sec;
    }
    if (*o + s->cached_len >= cap)
        return false;
    /* Conversions print digits, names and, for %D, slashes: no control character, but keep it closed. */
    for (size_t i = 0; i < s->cached_len; i++) {
        char c = s->cached[i];
        out[(*o)++] = (unsigned char)c < 0x20 || c == 0x7f ? '_' : c;
    }
    return true;
}

int sl__tpl_expand(sl_tpl_t *tpl, const sl_event_t *ev, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < tpl->n; i++) {
        sl_tpl_seg_t *s = &tpl->segs[i];
        bool ok = true;
        const uint8_t *val = NULL;
        size_t vlen = 0;
        switch (s->kind) {
        case SL_TPL_LIT:
            ok = o + s->len < cap;
            if (ok)
                memcpy(out + o, s->text, s->len), o += s->len;
            break;
        case SL_TPL_TIME: ok = sl__tpl_time(s, ev->ingest_ns, out, cap, &o); break;
        case SL_TPL_KEY: ok = sl__path_put_value(out, cap, &o, ev->key, ev->key_len); break;
        case SL_TPL_TOPIC: ok = sl__path_put_value(out, cap, &o, (const uint8_t *)ev->topic, ev->topic_len); break;
        case SL_TPL_ATTR:
            if (ev->rec == NULL || sl_rec_attr_get(ev->rec, s->text, s->len, &val, &vlen) != 0)
                val = NULL, vlen = 0;
            ok = sl__path_put_value(out, cap, &o, val, vlen);
            break;
        }
        if (!ok)
            return SL_ERANGE;
    }
    out[o] = '\0';
    return sl__path_is_safe(out, o) ? (int)o : SL_EINVAL;
}
