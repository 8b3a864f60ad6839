/*
 * The line formats a capture reader also takes: NDJSON and `mosquitto_sub -v` output.
 *
 * NDJSON: one object per line with "topic" (required), "payload" (any JSON value: a string stands for its
 * text, anything else for its JSON text), or "payload_base64" for binary; "ts" (seconds, ms, us or ns by
 * magnitude, or an RFC 3339 string), "timestamp" (same) or "received_ns"; "qos"; "retain"; "attributes"
 * or "properties" (an object of names to values). That includes the envelope the file sink writes, so
 * its output replays. Other keys are ignored. mosquitto_sub -v: the topic, one space, the payload.
 *
 * A line that does not parse is a corrupt record (index and offset reported) and the next line is read;
 * the decoded topic, properties and payload go into one scratch buffer that grows with the longest line,
 * so reading allocates nothing per record. The JSON scanner is small and strict, and bounded in depth.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ingest/capture/capture_int.h"

#define SL__JS_MAX_DEPTH 64

/* Takes the next non-empty line: returns 0 with the line (without its end), its length and offset;
 * SL_EOF; SL_EBADMSG for a line longer than SL__CAP_MAX_LINE (skipped); or SL_EIO. */
static int sl__cap_line(sl_cap_reader_t *rd, const uint8_t **line, size_t *len, uint64_t *off)
{
    for (;;) {
        size_t scanned = 0; /* relative to pos: fill slides the window */
        uint8_t *nl;
        while ((nl = memchr(rd->buf + rd->pos + scanned, '\n', rd->end - rd->pos - scanned)) == NULL) {
            scanned = rd->end - rd->pos;
            if (scanned > SL__CAP_MAX_LINE) { /* skip the monster line and report it */
                uint64_t at = rd->base + rd->pos;
                while ((nl = memchr(rd->buf + rd->pos, '\n', rd->end - rd->pos)) == NULL) {
                    rd->info.skipped_bytes += rd->end - rd->pos;
                    rd->pos = rd->end;
                    if (sl__cap_fill(rd, 1) != 0)
                        break;
                }
                if (nl != NULL) {
                    rd->info.skipped_bytes += (size_t)(nl - rd->buf) + 1 - rd->pos;
                    rd->pos = (size_t)(nl - rd->buf) + 1;
                }
                rd->info.corrupt++;
                return sl__cap_bad(rd, rd->next_index++, at, "line longer than %u bytes", SL__CAP_MAX_LINE);
            }
            int rc = sl__cap_fill(rd, scanned + 1);
            if (rc == SL_EOF) {
                if (rd->end == rd->pos)
                    return SL_EOF;
                break; /* a last line without a newline */
            }
            if (rc != 0)
                return rc;
        }
        const uint8_t *s = rd->buf + rd->pos;
        size_t n = nl ? (size_t)(nl - s) : rd->end - rd->pos;
        *off = rd->base + rd->pos;
        rd->pos += n + (nl != NULL);
        if (n > 0 && s[n - 1] == '\r')
            n--;
        if (n == 0)
            continue;
        *line = s;
        *len = n;
        return 0;
    }
}

/* A scratch buffer of three regions of len + 16 bytes each: topic, properties, payload. */
static int sl__cap_scratch(sl_cap_reader_t *rd, size_t len)
{
    size_t need = 3 * (len + 16);
    if (need <= rd->scratch_cap)
        return 0;
    size_t cap = rd->scratch_cap ? rd->scratch_cap : 4096;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(rd->scratch, cap);
    if (p == NULL)
        return SL_ENOMEM;
    rd->scratch = p;
    rd->scratch_cap = cap;
    return 0;
}

int sl__cap_next_mosq(sl_cap_reader_t *rd, sl_cap_rec_t *rec)
{
    const uint8_t *s;
    size_t n;
    uint64_t off;
    int rc = sl__cap_line(rd, &s, &n, &off);
    if (rc != 0)
        return rc;
    const uint8_t *sp = memchr(s, ' ', n);
    size_t tl = sp ? (size_t)(sp - s) : n;
    uint64_t idx = rd->next_index++;
    if (tl == 0 || tl > UINT16_MAX || n - tl > SL_CAP_MAX_RECORD) {
        rd->info.corrupt++;
        return sl__cap_bad(rd, idx, off, tl == 0 ? "no topic before the payload" : "topic or payload too long");
    }
    memset(rec, 0, sizeof *rec);
    rec->topic = (const char *)s;
    rec->topic_len = (uint32_t)tl;
    rec->payload = sp ? sp + 1 : s + n;
    rec->payload_len = sp ? (uint32_t)(n - tl - 1) : 0;
    rec->index = idx;
    rec->offset = off;
    rd->info.records++;
    return 0;
}

/* ---- a small strict JSON scanner over one line ---------------------------------------------------- */

typedef struct sl__js_s {
    const uint8_t *p, *end;
} sl__js_t;

static void sl__js_ws(sl__js_t *js)
{
    while (js->p < js->end && (*js->p == ' ' || *js->p == '\t' || *js->p == '\r' || *js->p == '\n'))
        js->p++;
}

static int sl__js_hex4(const uint8_t *p, uint32_t *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        *v = *v << 4 | (uint32_t)d;
    }
    return 0;
}

static size_t sl__utf8_put(uint8_t *o, uint32_t cp)
{
    if (cp < 0x80)
        return o[0] = (uint8_t)cp, 1;
    if (cp < 0x800)
        return o[0] = (uint8_t)(0xC0 | cp >> 6), o[1] = (uint8_t)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000)
        return o[0] = (uint8_t)(0xE0 | cp >> 12), o[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F)),
               o[2] = (uint8_t)(0x80 | (cp & 0x3F)), 3;
    return o[0] = (uint8_t)(0xF0 | cp >> 18), o[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F)),
           o[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F)), o[3] = (uint8_t)(0x80 | (cp & 0x3F)), 4;
}

/* Parses a string at p (on its '"'); when out is set, writes its decoded bytes there (never more than the
 * string's source length) and sets *olen. Returns 0 or -1. */
static int sl__js_str(sl__js_t *js, uint8_t *out, size_t *olen)
{
    if (js->p >= js->end || *js->p != '"')
        return -1;
    js->p++;
    size_t o = 0;
    while (js->p < js->end && *js->p != '"') {
        uint8_t c = *js->p++;
        if (c < 0x20)
            return -1;
        if (c != '\\') {
            if (out)
                out[o] = c;
            o++;
            continue;
        }
        if (js->p >= js->end)
            return -1;
        c = *js->p++;
        uint32_t cp;
        const char *esc = strchr("\"\\/bfnrt", c);
        if (c != 0 && esc != NULL) {
            static const char map[] = "\"\\/\b\f\n\r\t";
            if (out)
                out[o] = (uint8_t)map[esc - "\"\\/bfnrt"];
            o++;
            continue;
        }
        if (c != 'u' || js->end - js->p < 4 || sl__js_hex4(js->p, &cp) != 0)
            return -1;
        js->p += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && js->end - js->p >= 6 && js->p[0] == '\\' && js->p[1] == 'u') {
            uint32_t lo;
            if (sl__js_hex4(js->p + 2, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                js->p += 6;
            }
        }
        uint8_t tmp[4];
        size_t k = sl__utf8_put(out ? out + o : tmp, cp); /* at most 4 bytes from 6 or 12 of source */
        o += k;
    }
    if (js->p >= js->end)
        return -1;
    js->p++;
    if (olen)
        *olen = o;
    return 0;
}

/* Skips one value of any kind. Returns 0 or -1. */
static int sl__js_skip(sl__js_t *js, int depth)
{
    sl__js_ws(js);
    if (js->p >= js->end || depth > SL__JS_MAX_DEPTH)
        return -1;
    uint8_t c = *js->p;
    if (c == '"')
        return sl__js_str(js, NULL, NULL);
    if (c == '{' || c == '[') {
        uint8_t close = c == '{' ? '}' : ']';
        js->p++;
        sl__js_ws(js);
        if (js->p < js->end && *js->p == close)
            return js->p++, 0;
        for (;;) {
            if (c == '{') {
                sl__js_ws(js);
                if (sl__js_str(js, NULL, NULL) != 0)
                    return -1;
                sl__js_ws(js);
                if (js->p >= js->end || *js->p++ != ':')
                    return -1;
            }
            if (sl__js_skip(js, depth + 1) != 0)
                return -1;
            sl__js_ws(js);
            if (js->p >= js->end)
                return -1;
            if (*js->p == close)
                return js->p++, 0;
            if (*js->p++ != ',')
                return -1;
        }
    }
    const uint8_t *s = js->p;
    while (js->p < js->end &&
           (strchr("+-.eE", *js->p) || (*js->p >= '0' && *js->p <= '9') || (*js->p >= 'a' && *js->p <= 'z')))
        js->p++;
    size_t n = (size_t)(js->p - s);
    if ((n == 4 && (memcmp(s, "true", 4) == 0 || memcmp(s, "null", 4) == 0)) || (n == 5 && memcmp(s, "false", 5) == 0))
        return 0;
    if (n == 0 || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')))
        return -1;
    char num[64];
    if (n >= sizeof num)
        return -1;
    memcpy(num, s, n);
    num[n] = 0;
    char *e;
    (void)strtod(num, &e);
    return *e == 0 ? 0 : -1;
}

static int sl__b64_val(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' || c == '-' ? 62 : c == '/' || c == '_' ? 63 : -1;
}

/* Decodes base64 (standard or URL alphabet, padding optional) in place-safe fashion into out. */
static int sl__b64_dec(const uint8_t *in, size_t n, uint8_t *out, size_t *olen)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '=')
            break;
        int v = sl__b64_val(in[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    *olen = o;
    return 0;
}

/* A number value as ns since the epoch, by magnitude: s, ms, us or ns. */
static int sl__js_ts(sl__js_t *js, bool ns_only, uint64_t *ts)
{
    sl__js_ws(js);
    const uint8_t *s = js->p;
    if (js->p < js->end && *js->p == '"') {
        size_t n;
        if (sl__js_str(js, NULL, &n) != 0)
            return -1;
        return sl__cap_parse_rfc3339((const char *)s + 1, (size_t)(js->p - s) - 2, ts);
    }
    if (sl__js_skip(js, 0) != 0)
        return -1;
    char num[64];
    size_t n = (size_t)(js->p - s);
    if (n >= sizeof num)
        return -1;
    memcpy(num, s, n);
    num[n] = 0;
    char *e;
    double v = strtod(num, &e);
    if (*e != 0 || !(v >= 0) || v > 1.8e19)
        return -1;
    if (ns_only || v >= 1e17)
        *ts = strchr(num, '.') || strchr(num, 'e') ? (uint64_t)v : strtoull(num, NULL, 10);
    else {
        double ns = v * (v < 1e11 ? 1e9 : v < 1e14 ? 1e6 : 1e3);
        if (ns > 1.8e19)
            return -1; /* past 2540 in ns: not a time */
        *ts = (uint64_t)ns;
    }
    return 0;
}

typedef struct sl__ndj_s {
    uint8_t *topic, *props, *payload;
    size_t tl, pl, yl;
    bool have_topic;
    int qos;
    bool retain, binary;
    uint64_t ts;
} sl__ndj_t;

/* "attributes": {"name": value, ...}: strings decoded, other values as their JSON text. */
static int sl__ndj_props(sl__js_t *js, sl__ndj_t *r)
{
    sl__js_ws(js);
    if (js->p >= js->end || *js->p != '{')
        return sl__js_skip(js, 0); /* not an object: ignored */
    js->p++;
    r->pl = 0;
    for (;;) {
        sl__js_ws(js);
        if (js->p < js->end && *js->p == '}' && r->pl == 0)
            return js->p++, 0;
        size_t nl, vl;
        uint8_t *at = r->props + r->pl;
        if (sl__js_str(js, at + 4, &nl) != 0)
            return -1;
        sl__js_ws(js);
        if (js->p >= js->end || *js->p++ != ':')
            return -1;
        sl__js_ws(js);
        const uint8_t *vs = js->p;
        if (js->p < js->end && *js->p == '"') {
            if (sl__js_str(js, at + 4 + nl, &vl) != 0)
                return -1;
        } else {
            if (sl__js_skip(js, 1) != 0)
                return -1;
            vl = (size_t)(js->p - vs);
            memmove(at + 4 + nl, vs, vl);
        }
        if (nl > UINT16_MAX || vl > UINT16_MAX)
            return -1;
        at[0] = (uint8_t)nl, at[1] = (uint8_t)(nl >> 8), at[2] = (uint8_t)vl, at[3] = (uint8_t)(vl >> 8);
        r->pl += 4 + nl + vl;
        sl__js_ws(js);
        if (js->p >= js->end)
            return -1;
        if (*js->p == '}')
            return js->p++, 0;
        if (*js->p++ != ',')
            return -1;
    }
}

/* One member of the top-level object. */
static int sl__ndj_member(sl__js_t *js, sl__ndj_t *r, const uint8_t *k, size_t kl)
{
#define SL__K(s) (kl == sizeof(s) - 1 && memcmp(k, s, kl) == 0)
    sl__js_ws(js);
    if (SL__K("topic"))
        return r->have_topic = true, sl__js_str(js, r->topic, &r->tl);
    if (SL__K("payload")) {
        r->binary = false;
        if (js->p < js->end && *js->p == '"')
            return sl__js_str(js, r->payload, &r->yl);
        const uint8_t *s = js->p;
        if (sl__js_skip(js, 0) != 0)
            return -1;
        r->yl = (size_t)(js->p - s);
        memcpy(r->payload, s, r->yl);
        return 0;
    }
    if (SL__K("payload_base64")) {
        const uint8_t *s = js->p;
        if (sl__js_str(js, NULL, NULL) != 0)
            return -1;
        r->binary = true;
        return sl__b64_dec(s + 1, (size_t)(js->p - s) - 2, r->payload, &r->yl);
    }
    if (SL__K("ts") || SL__K("timestamp") || SL__K("received_ns"))
        return sl__js_ts(js, SL__K("received_ns"), &r->ts);
    if (SL__K("qos") || SL__K("retain")) {
        const uint8_t *s = js->p;
        if (sl__js_skip(js, 0) != 0)
            return -1;
        size_t n = (size_t)(js->p - s);
        if (SL__K("retain"))
            return r->retain = n == 4 && memcmp(s, "true", 4) == 0, 0;
        if (n != 1 || *s < '0' || *s > '2')
            return -1;
        return r->qos = *s - '0', 0;
    }
    if (SL__K("attributes") || SL__K("properties"))
        return sl__ndj_props(js, r);
    return sl__js_skip(js, 0);
#undef SL__K
}

static const char *sl__ndj_parse(sl__js_t *js, sl__ndj_t *r)
{
    uint8_t key[32];
    sl__js_ws(js);
    if (js->p >= js->end || *js->p++ != '{')
        return "not a JSON object";
    sl__js_ws(js);
    if (js->p < js->end && *js->p == '}')
        js->p++;
    else
        for (;;) {
            sl__js_ws(js);
            sl__js_t peek = *js;
            size_t kl;
            if (sl__js_str(&peek, NULL, &kl) != 0)
                return "bad JSON (a member name was expected)";
            if (kl > sizeof key)
                kl = 0, js->p = peek.p; /* too long for a known key: skip its value below */
            else if (sl__js_str(js, key, &kl) != 0)
                return "bad JSON";
            sl__js_ws(js);
            if (js->p >= js->end || *js->p++ != ':')
                return "bad JSON (':' expected)";
            if (sl__ndj_member(js, r, key, kl) != 0)
                return "bad JSON value";
            sl__js_ws(js);
            if (js->p < js->end && *js->p == '}') {
                js->p++;
                break;
            }
            if (js->p >= js->end || *js->p++ != ',')
                return "bad JSON (',' or '}' expected)";
        }
    sl__js_ws(js);
    if (js->p != js->end)
        return "text after the JSON object";
    if (!r->have_topic || r->tl == 0 || r->tl > UINT16_MAX)
        return "no usable \"topic\"";
    return NULL;
}

int sl__cap_next_ndjson(sl_cap_reader_t *rd, sl_cap_rec_t *rec)
{
    const uint8_t *s;
    size_t n;
    uint64_t off;
    int rc = sl__cap_line(rd, &s, &n, &off);
    if (rc != 0)
        return rc;
    uint64_t idx = rd->next_index++;
    if (sl__cap_scratch(rd, n) != 0)
        return SL_ENOMEM;
    sl__ndj_t r = {.topic = rd->scratch, .props = rd->scratch + n + 16, .payload = rd->scratch + 2 * (n + 16)};
    sl__js_t js = {s, s + n};
    const char *why = sl__ndj_parse(&js, &r);
    if (why != NULL) {
        rd->info.corrupt++;
        return sl__cap_bad(rd, idx, off, "%s", why);
    }
    *rec = (sl_cap_rec_t){.ts_ns = r.ts,
                          .qos = (uint8_t)r.qos,
                          .flags = (uint8_t)((r.retain ? SL_CAP_F_RETAIN : 0) | (r.binary ? SL_CAP_F_BINARY : 0)),
                          .topic = (const char *)r.topic,
                          .topic_len = (uint32_t)r.tl,
                          .props = r.props,
                          .props_len = (uint32_t)r.pl,
                          .payload = r.payload,
                          .payload_len = (uint32_t)r.yl,
                          .index = idx,
                          .offset = off};
    rd->info.records++;
    return 0;
}

static int sl__digits(const char *s, size_t n, int *v)
{
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        *v = *v * 10 + (s[i] - '0');
    }
    return 0;
}

int sl__cap_parse_rfc3339(const char *s, size_t n, uint64_t *ns)
{
    int Y, M, D, h, m, sec;
    if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' ||
        s[16] != ':' || sl__digits(s, 4, &Y) || sl__digits(s + 5, 2, &M) || sl__digits(s + 8, 2, &D) ||
        sl__digits(s + 11, 2, &h) || sl__digits(s + 14, 2, &m) || sl__digits(s + 17, 2, &sec) || Y < 1970 || M < 1 ||
        M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return SL_EINVAL;
    size_t i = 19;
    uint64_t frac = 0, scale = SL_NS_PER_S;
    if (i < n && s[i] == '.') {
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            if (scale > 1)
                frac = frac * 10 + (uint64_t)(s[i] - '0'), scale /= 10;
        frac *= scale;
    }
    long tz = 0;
    int th, tm;
    if (i + 1 == n && (s[i] == 'Z' || s[i] == 'z'))
        tz = 0;
    else if (i + 6 == n && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':' && !sl__digits(s + i + 1, 2, &th) &&
             !sl__digits(s + i + 4, 2, &tm))
        tz = (s[i] == '-' ? -1 : 1) * (th * 3600L + tm * 60L);
    else
        return SL_EINVAL;
    struct tm t = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D, .tm_hour = h, .tm_min = m, .tm_sec = sec};
    time_t e = timegm(&t);
    if (e == (time_t)-1 || (long)e < tz)
        return SL_EINVAL;
    *ns = (uint64_t)(e - tz) * SL_NS_PER_S + frac;
    return 0;
}
