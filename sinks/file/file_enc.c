/*
 * Encoding and compression of the file sink's batches.
 *
 * Formats: `ndjson` writes one envelope object per line (topic, key, qos, receive time, attributes, and
 * the payload inline when it is one valid JSON value without a raw newline, else base64 in
 * payload_base64); `raw` writes the payload bytes and a newline. A batch is encoded into one reused
 * buffer, then compressed:
 *  - gzip: one complete gzip member per batch (concatenated members are a valid file for gzip -d);
 *  - zstd: one frame per file, kept open by the file's own compression stream: each batch is compressed
 *    with ZSTD_e_flush (its data complete in the file at the batch's commit) and followed by a batch marker,
 *    an empty raw block that is not the last (three zero bytes, which decoders skip); the frame is ended
 *    (last block, checksum) when the file is completed. The history is kept across batches, so the file is
 *    as small as one zstd stream of the same bytes.
 * A file left by a crash is cut back to its last complete unit (sl__codec_valid_prefix): a whole gzip
 * member, a whole zstd frame or a batch marker; an unfinished zstd frame is then sealed (sl__zstd_seal).
 *
 * No allocation per event: buffers grow geometrically and are kept for the life of the instance.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "ingest/capture/capture.h"
#include "sinks/file/file_int.h"

int sl__buf_reserve(sl_buf_t *b, size_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + more)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (p == NULL)
        return SL_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

void sl__buf_free(sl_buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- a small JSON validator (RFC 8259 grammar; no allocation, bounded depth) ---- */

typedef struct {
    const uint8_t *p, *end;
    int depth;
} sl_js_t;

static void sl__js_ws(sl_js_t *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r'))
        j->p++;
}

static bool sl__js_value(sl_js_t *j);

/* Bytes that stand for themselves inside a JSON string: not '"', not '\\', not a control character.
 * (The validator lets DEL through, as JSON does; the encoder escapes it, see sl__put_jstr.) */
static const uint8_t sl__js_plain[] = {
#define SL_R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    SL_R16(0), SL_R16(0), /* 0x00-0x1f */
    1,         1,         0,         1,         1,         1,         1,         1,         1,         1,
    1,         1,         1,         1,         1,         1, /* 0x20-0x2f: '"' */
    SL_R16(1), SL_R16(1), 1,         1,         1,         1,         1,         1,         1,         1,
    1,         1,         1,         1,         0,         1,         1,         1, /* 0x50-0x5f: '\\' */
    SL_R16(1), SL_R16(1), SL_R16(1), SL_R16(1), SL_R16(1), SL_R16(1), SL_R16(1), SL_R16(1), SL_R16(1), SL_R16(1),
#undef SL_R16
};
_Static_assert(sizeof sl__js_plain == 256, "one entry per byte value");

/* SWAR tests on 8 bytes at once (exact, no false positives): a byte equal to zero, a byte below n. */
#define SL_ONES UINT64_C(0x0101010101010101)
#define SL_HIGHS UINT64_C(0x8080808080808080)
static inline uint64_t sl__has_zero(uint64_t v) { return (v - SL_ONES) & ~v & SL_HIGHS; }
static inline uint64_t sl__has_below(uint64_t v, uint8_t n) { return (v - SL_ONES * n) & ~v & SL_HIGHS; }

/* Length of the longest prefix of p[0..n) made of bytes that stand for themselves in a JSON string
 * (no '"', '\\' or control character; with del, no 0x7f either): eight bytes per step. */
static size_t sl__plain_run(const uint8_t *p, size_t n, bool del)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        uint64_t bad = sl__has_below(v, 0x20) | sl__has_zero(v ^ (SL_ONES * '"')) | sl__has_zero(v ^ (SL_ONES * '\\'));
        if (del)
            bad |= sl__has_zero(v ^ (SL_ONES * 0x7f));
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* The lowest flagged byte is always a real match (a false flag needs a borrow from below). */
        if (bad)
            return i + (size_t)(__builtin_ctzll(bad) >> 3);
#else
        if (bad)
            break;
#endif
    }
    while (i < n && sl__js_plain[p[i]] && !(del && p[i] == 0x7f))
        i++;
    return i;
}

static bool sl__js_string(sl_js_t *j)
{
    j->p++; /* the opening quote */
    for (;;) {
        j->p += sl__plain_run(j->p, (size_t)(j->end - j->p), false);
        if (j->p >= j->end)
            return false;
        uint8_t c = *j->p++;
        if (c == '"')
            return true;
        if (c != '\\')
            return false; /* a control character */
        if (j->p >= j->end)
            return false;
        c = *j->p++;
        if (c == 'u') {
            for (int i = 0; i < 4; i++, j->p++)
                if (j->p >= j->end ||
                    !((*j->p >= '0' && *j->p <= '9') || ((*j->p | 0x20) >= 'a' && (*j->p | 0x20) <= 'f')))
                    return false;
        } else if (!strchr("\"\\/bfnrt", c) || c == 0) {
            return false;
        }
    }
}

static bool sl__js_digits(sl_js_t *j)
{
    const uint8_t *s = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
        j->p++;
    return j->p > s;
}

static bool sl__js_number(sl_js_t *j)
{
    if (*j->p == '-')
        j->p++;
    if (j->p < j->end && *j->p == '0')
        j->p++;
    else if (!sl__js_digits(j))
        return false;
    if (j->p < j->end && *j->p == '.' && (j->p++, !sl__js_digits(j)))
        return false;
    if (j->p < j->end && (*j->p | 0x20) == 'e') {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (!sl__js_digits(j))
            return false;
    }
    return true;
}

static bool sl__js_container(sl_js_t *j, uint8_t close)
{
    if (++j->depth > 64)
        return false;
    j->p++;
    sl__js_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++, j->depth--;
        return true;
    }
    for (;;) {
        sl__js_ws(j);
        if (close == '}') {
            if (j->p >= j->end || *j->p != '"' || !sl__js_string(j))
                return false;
            sl__js_ws(j);
            if (j->p >= j->end || *j->p++ != ':')
                return false;
        }
        if (!sl__js_value(j))
            return false;
        sl__js_ws(j);
        if (j->p >= j->end)
            return false;
        uint8_t c = *j->p++;
        if (c == close) {
            j->depth--;
            return true;
        }
        if (c != ',')
            return false;
    }
}

static bool sl__js_lit(sl_js_t *j, const char *w, size_t n)
{
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0)
        return false;
    j->p += n;
    return true;
}

static bool sl__js_value(sl_js_t *j)
{
    sl__js_ws(j);
    if (j->p >= j->end)
        return false;
    switch (*j->p) {
    case '{': return sl__js_container(j, '}');
    case '[': return sl__js_container(j, ']');
    case '"': return sl__js_string(j);
    case 't': return sl__js_lit(j, "true", 4);
    case 'f': return sl__js_lit(j, "false", 5);
    case 'n': return sl__js_lit(j, "null", 4);
    default: return (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')) && sl__js_number(j);
    }
}

bool sl__json_valid(const uint8_t *p, size_t n)
{
    /* '\n' is not accepted as whitespace: an inlined payload must stay on its line. */
    sl_js_t j = {p, p + n, 0};
    if (!sl__js_value(&j))
        return false;
    sl__js_ws(&j);
    return j.p == j.end;
}

/* ---- NDJSON envelope ---- */

static void sl__put(sl_buf_t *b, const void *s, size_t n)
{
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* A JSON string of arbitrary bytes: worst case 6 bytes per input byte plus quotes. Runs of bytes that
 * need no escape are copied whole. */
static void sl__put_jstr(sl_buf_t *b, const uint8_t *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    b->p[b->len++] = '"';
    size_t i = 0;
    while (i < n) {
        size_t run = i + sl__plain_run(s + i, n - i, true);
        sl__put(b, s + i, run - i);
        if (run == n)
            break;
        uint8_t c = s[run];
        if (c == '"' || c == '\\') {
            b->p[b->len++] = '\\';
            b->p[b->len++] = c;
        } else {
            sl__put(b, "\\u00", 4);
            b->p[b->len++] = hex[c >> 4];
            b->p[b->len++] = hex[c & 15];
        }
        i = run + 1;
    }
    b->p[b->len++] = '"';
}

/* Decimal digits of v (no snprintf on the per-event path). */
static void sl__put_u64(sl_buf_t *b, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        b->p[b->len++] = (uint8_t)tmp[--n];
}

static void sl__put_b64(sl_buf_t *b, const uint8_t *s, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        uint8_t *o = b->p + b->len;
        o[0] = t[v >> 18], o[1] = t[(v >> 12) & 63], o[2] = t[(v >> 6) & 63], o[3] = t[v & 63];
        b->len += 4;
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        uint8_t *o = b->p + b->len;
        o[0] = t[v >> 18], o[1] = t[(v >> 12) & 63];
        o[2] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        o[3] = '=';
        b->len += 4;
    }
}

static int sl__enc_ndjson(sl_buf_t *b, const sl_event_t *ev)
{
    size_t need = 160 + 6 * ((size_t)ev->topic_len + ev->key_len + ev->attr_len) + 2 * (size_t)ev->payload_len + 8;
    if (sl__buf_reserve(b, need) != 0)
        return SL_ENOMEM;
    sl__put(b, "{\"topic\":", 9);
    sl__put_jstr(b, (const uint8_t *)ev->topic, ev->topic_len);
    sl__put(b, ",\"key\":", 7);
    sl__put_jstr(b, ev->key, ev->key_len);
    sl__put(b, ",\"qos\":", 7);
    sl__put_u64(b, ev->rec ? ev->rec->qos : 0);
    sl__put(b, ",\"received_ns\":", 15);
    sl__put_u64(b, ev->ingest_ns);
    sl__put(b, ",\"attributes\":{", 15);
    const uint8_t *a = ev->attrs, *end = ev->attrs + ev->attr_len;
    bool first = true;
    while (end - a >= 4) {
        uint16_t nl, vl;
        memcpy(&nl, a, 2);
        memcpy(&vl, a + 2, 2);
        if ((size_t)(end - a - 4) < (size_t)nl + vl)
            break; /* framing was checked by the channel; a short tail is ignored, not followed */
        if (!first)
            b->p[b->len++] = ',';
        sl__put_jstr(b, a + 4, nl);
        b->p[b->len++] = ':';
        sl__put_jstr(b, a + 4 + nl, vl);
        first = false;
        a += 4 + (size_t)nl + vl;
    }
    b->p[b->len++] = '}';
    uint16_t flags = ev->rec ? ev->rec->flags : 0;
    if ((flags & SL_REC_JSON) || (!(flags & SL_REC_BINARY) && sl__json_valid(ev->payload, ev->payload_len))) {
        sl__put(b, ",\"payload\":", 11);
        sl__put(b, ev->payload, ev->payload_len);
    } else {
        sl__put(b, ",\"payload_base64\":\"", 19);
        sl__put_b64(b, ev->payload, ev->payload_len);
        b->p[b->len++] = '"';
    }
    sl__put(b, "}\n", 2);
    return 0;
}

/* A capture record (docs/capture.md), encoded by the capture module itself. */
static int sl__enc_capture(sl_buf_t *b, const sl_event_t *ev)
{
    sl_cap_rec_t r;
    sl_cap_rec_of_event(ev, &r);
    size_t n = sl_cap_record_size(&r);
    if (sl__buf_reserve(b, n) != 0)
        return SL_ENOMEM;
    int rc = sl_cap_record_encode(&r, b->p + b->len);
    if (rc == 0)
        b->len += n;
    return rc;
}

int sl__file_capture_header(sl_buf_t *b, const char *desc)
{
    if (sl__buf_reserve(b, SL_CAP_HEADER_MAX) != 0)
        return SL_ENOMEM;
    b->len += sl_cap_header_encode(b->p + b->len, desc, 0);
    return 0;
}

int sl__file_encode(sl_buf_t *b, sl_file_format_t fmt, const sl_event_t *ev)
{
    if (fmt == SL_FILE_FMT_NDJSON)
        return sl__enc_ndjson(b, ev);
    if (fmt == SL_FILE_FMT_CAPTURE)
        return sl__enc_capture(b, ev);
    if (sl__buf_reserve(b, (size_t)ev->payload_len + 1) != 0)
        return SL_ENOMEM;
    sl__put(b, ev->payload, ev->payload_len);
    b->p[b->len++] = '\n';
    return 0;
}

/* ---- codecs ---- */

struct sl_codec_s {
    sl_file_comp_t comp;
    int level;
    z_stream z;
    bool z_init;
    ZSTD_CCtx *zc;
};

int sl__codec_new(sl_file_comp_t comp, int level, sl_codec_t **out)
{
    sl_codec_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return SL_ENOMEM;
    c->comp = comp;
    c->level = level;
    if (comp == SL_FILE_COMP_GZIP) {
        /* windowBits 15 + 16: a gzip header and trailer around the deflate stream. */
        if (deflateInit2(&c->z, level ? level : Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
            Z_OK) {
            free(c);
            return SL_ENOMEM;
        }
        c->z_init = true;
    } else if (comp == SL_FILE_COMP_ZSTD) {
        c->zc = ZSTD_createCCtx();
        if (c->zc == NULL ||
            ZSTD_isError(ZSTD_CCtx_setParameter(c->zc, ZSTD_c_compressionLevel, level ? level : ZSTD_CLEVEL_DEFAULT))) {
            ZSTD_freeCCtx(c->zc);
            free(c);
            return SL_EINVAL;
        }
        ZSTD_CCtx_setParameter(c->zc, ZSTD_c_checksumFlag, 1);
    }
    *out = c;
    return 0;
}

void sl__codec_destroy(sl_codec_t *c)
{
    if (c == NULL)
        return;
    if (c->z_init)
        deflateEnd(&c->z);
    ZSTD_freeCCtx(c->zc);
    free(c);
}

/* zstd block headers (RFC 8878 3.1.1.2): 3 bytes little-endian, bit 0 Last_Block, bits 1-2 the type (0 raw,
 * 1 RLE, 2 compressed, 3 reserved), bits 3-23 the size. */
static const uint8_t sl__zstd_marker[3] = {0, 0, 0}; /* an empty raw block, not the last: a batch ends here */
static const uint8_t sl__zstd_last[3] = {1, 0, 0};   /* an empty raw block, the last: ends a sealed frame */

/* Runs the zstd stream over in[0..n) with op, appending to out. */
static int sl__zstd_run(sl_codec_t *c, const uint8_t *in, size_t n, ZSTD_EndDirective op, sl_buf_t *out)
{
    ZSTD_inBuffer zi = {in, n, 0};
    size_t left;
    do {
        if (sl__buf_reserve(out, ZSTD_compressBound(n - zi.pos) + 64) != 0)
            return SL_ENOMEM;
        ZSTD_outBuffer zo = {out->p + out->len, out->cap - out->len, 0};
        left = ZSTD_compressStream2(c->zc, &zo, &zi, op);
        if (ZSTD_isError(left))
            return SL_EIO;
        out->len += zo.pos;
    } while (left != 0 || zi.pos < zi.size);
    return 0;
}

int sl__codec_end(sl_codec_t *c, sl_buf_t *out)
{
    out->len = 0;
    return c->comp == SL_FILE_COMP_ZSTD ? sl__zstd_run(c, NULL, 0, ZSTD_e_end, out) : 0;
}

void sl__codec_abandon(sl_codec_t *c)
{
    if (c->comp == SL_FILE_COMP_ZSTD)
        ZSTD_CCtx_reset(c->zc, ZSTD_reset_session_only);
}

int sl__codec_unit(sl_codec_t *c, const uint8_t *in, size_t n, sl_buf_t *out)
{
    out->len = 0;
    if (c->comp == SL_FILE_COMP_ZSTD) {
        int rc = sl__zstd_run(c, in, n, ZSTD_e_flush, out);
        if (rc != 0)
            return rc;
        memcpy(out->p + out->len, sl__zstd_marker, sizeof sl__zstd_marker); /* room: the reserve's 64 bytes */
        out->len += sizeof sl__zstd_marker;
        return 0;
    }
    size_t bound = deflateBound(&c->z, (uLong)n) + 64;
    if (sl__buf_reserve(out, bound) != 0)
        return SL_ENOMEM;
    deflateReset(&c->z);
    c->z.next_in = (Bytef *)in;
    c->z.avail_in = (uInt)n;
    c->z.next_out = out->p;
    c->z.avail_out = (uInt)bound;
    if (deflate(&c->z, Z_FINISH) != Z_STREAM_END)
        return SL_EIO;
    out->len = bound - c->z.avail_out;
    return 0;
}

static size_t sl__gzip_prefix(const uint8_t *data, size_t n)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return 0;
    uint8_t sink[16384];
    size_t good = 0;
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)n;
    for (;;) {
        z.next_out = sink;
        z.avail_out = sizeof sink;
        int rc = inflate(&z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END) {
            good = n - z.avail_in;
            if (z.avail_in == 0 || inflateReset(&z) != Z_OK)
                break;
            continue;
        }
        if (rc != Z_OK)
            break; /* a truncated or corrupt member: cut before it */
    }
    inflateEnd(&z);
    return good;
}

/* An uncompressed capture: the header, then whole records, as far as the capture reader reads them
 * without a problem (a torn last record ends the prefix). Reads from a memory file: the reader is the
 * capture module's own. */
static size_t sl__capture_prefix(const uint8_t *data, size_t n)
{
    if (n < 16 || memcmp(data, SL_CAP_MAGIC, SL_CAP_MAGIC_LEN) != 0)
        return 0;
    uint64_t end = (uint64_t)data[12] | (uint64_t)data[13] << 8 | (uint64_t)data[14] << 16 | (uint64_t)data[15] << 24;
    if (end > n)
        return 0; /* not even the header is whole */
    int fd = memfd_create("sluice-recover", MFD_CLOEXEC);
    sl_cap_reader_t *rd = NULL;
    if (fd < 0 || write(fd, data, n) != (ssize_t)n || lseek(fd, 0, SEEK_SET) != 0) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    if (sl_cap_reader_open_fd(fd, "recovered .part", &rd) != 0) /* takes fd, also on failure */
        return 0;
    sl_cap_rec_t rec;
    while (sl_cap_reader_next(rd, &rec) == 0)
        end = rec.offset + sl_cap_record_size(&rec);
    sl_cap_reader_destroy(rd);
    return (size_t)end;
}

static uint32_t sl__le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* zstd: the end of the last complete frame, or of the last batch marker of an unfinished last frame (then
 * *open is where that frame starts). Walks the frame and block headers only (RFC 8878). */
static size_t sl__zstd_prefix(const uint8_t *d, size_t n, size_t *open)
{
    size_t good = 0, pos = 0;
    while (n - pos >= 4) {
        size_t start = pos;
        uint32_t magic = sl__le32(d + pos);
        if ((magic & 0xFFFFFFF0u) == 0x184D2A50u) { /* a skippable frame */
            if (n - pos < 8 || sl__le32(d + pos + 4) > n - pos - 8)
                break;
            pos = good = pos + 8 + sl__le32(d + pos + 4);
            continue;
        }
        if (magic != ZSTD_MAGICNUMBER || n - pos < 5)
            break;
        uint8_t fhd = d[pos + 4];
        static const uint8_t did[4] = {0, 1, 2, 4};
        unsigned fcs = fhd >> 6, single = (fhd >> 5) & 1;
        size_t hdr = 5 + !single + did[fhd & 3] + (fcs == 0 ? single : 1u << fcs);
        if (n - pos < hdr)
            break;
        pos += hdr;
        size_t mark = SIZE_MAX;
        bool done = false;
        while (n - pos >= 3) {
            uint32_t bh = (uint32_t)d[pos] | (uint32_t)d[pos + 1] << 8 | (uint32_t)d[pos + 2] << 16;
            uint32_t type = (bh >> 1) & 3, size = bh >> 3;
            size_t body = type == 1 ? 1 : size;
            if (type == 3 || body > n - pos - 3)
                break;
            pos += 3 + body;
            if (bh & 1) {
                size_t sum = (fhd & 4) ? 4 : 0; /* the content checksum */
                done = n - pos >= sum;
                pos += sum;
                break;
            }
            if (type == 0 && size == 0)
                mark = pos;
        }
        if (done) {
            good = pos;
            continue;
        }
        if (mark != SIZE_MAX) {
            good = mark;
            if (open != NULL)
                *open = start;
        }
        break;
    }
    return good;
}

int sl__zstd_seal(int fd, uint64_t frame_start, uint64_t end)
{
    uint8_t fhd;
    if (pread(fd, &fhd, 1, (off_t)frame_start + 4) != 1)
        return SL_EIO;
    fhd &= (uint8_t)~4u; /* no checksum: the content's is not known here */
    ssize_t w = pwrite(fd, &fhd, 1, (off_t)frame_start + 4);
    if (w == 1)
        w = pwrite(fd, sl__zstd_last, sizeof sl__zstd_last, (off_t)end);
    if (w != (ssize_t)sizeof sl__zstd_last) {
        int rc = w < 0 ? -errno : SL_EIO;
        if (ftruncate(fd, (off_t)end) != 0)
            rc = SL_EIO;
        return rc;
    }
    return 0;
}

size_t sl__codec_valid_prefix(sl_file_comp_t comp, sl_file_format_t fmt, const uint8_t *data, size_t n,
                              size_t *open_frame)
{
    if (open_frame != NULL)
        *open_frame = SIZE_MAX;
    if (comp == SL_FILE_COMP_NONE && fmt == SL_FILE_FMT_CAPTURE)
        return sl__capture_prefix(data, n);
    if (comp == SL_FILE_COMP_GZIP)
        return sl__gzip_prefix(data, n);
    if (comp == SL_FILE_COMP_ZSTD)
        return sl__zstd_prefix(data, n, open_frame);
    while (n > 0 && data[n - 1] != '\n')
        n--;
    return n;
}
