/*
 * The sluice capture format (docs/capture.md): the reader's input layer and format detection, the binary
 * records with resynchronisation, and the writer.
 *
 * Every file goes through zlib's gzFile, which reads plain files transparently, so gzip needs no separate
 * path. A record is [marker][u32 len][body][u32 crc]; the CRC (zlib's crc32) covers len and body, so a bad
 * length is caught like bad content. After a bad record the reader scans for the next marker whose record
 * checks out; a marker-like byte sequence inside a payload is rejected by its checksum.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ingest/capture/capture_int.h"

static const uint8_t sl__cap_marker[4] = {0xD2, 0xE1, 0xC3, 0x5A};

#define SL__CAP_HDR_FIXED 30u  /* magic 8, version 2, flags 2, header_len 4, created 8, desc_len 2, crc 4 */
#define SL__CAP_BODY_FIXED 20u /* ts 8, qos 1, flags 1, topic_len 2, props_len 4, payload_len 4 */
_Static_assert(SL_CAP_REC_HEAD == 8u + SL__CAP_BODY_FIXED, "marker, length, fixed body");
_Static_assert(SL_CAP_HEADER_MAX == SL__CAP_HDR_FIXED + SL_CAP_MAX_DESC, "header and description");
#define SL__CAP_REC_MIN (4u + 4u + SL__CAP_BODY_FIXED + 4u)

const char *sl_cap_format_name(sl_cap_format_t f)
{
    switch (f) {
#define SL_CAP_FORMAT_NAME(name, text) \
    case SL_CAP_FMT_##name: return text;
        SL_CAP_FORMAT_MAP(SL_CAP_FORMAT_NAME)
#undef SL_CAP_FORMAT_NAME
    }
    return "?";
}

static uint16_t sl__ld16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t sl__ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t sl__ld64(const uint8_t *p) { return sl__ld32(p) | (uint64_t)sl__ld32(p + 4) << 32; }
static void sl__st16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void sl__st32(uint8_t *p, uint32_t v) { sl__st16(p, (uint16_t)v), sl__st16(p + 2, (uint16_t)(v >> 16)); }
static void sl__st64(uint8_t *p, uint64_t v) { sl__st32(p, (uint32_t)v), sl__st32(p + 4, (uint32_t)(v >> 32)); }

int sl__cap_bad(sl_cap_reader_t *rd, uint64_t index, uint64_t offset, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rd->info.err, sizeof rd->info.err, fmt, ap);
    va_end(ap);
    rd->info.err_index = index;
    rd->info.err_offset = offset;
    return SL_EBADMSG;
}

int sl__cap_fill(sl_cap_reader_t *rd, size_t need)
{
    if (rd->end - rd->pos >= need)
        return 0;
    if (need > SL_CAP_MAX_RECORD + 64u && need > SL__CAP_MAX_LINE + 64u)
        return SL_EMSGSIZE;
    if (rd->pos > 0) { /* slide what is left to the front */
        memmove(rd->buf, rd->buf + rd->pos, rd->end - rd->pos);
        rd->base += rd->pos;
        rd->end -= rd->pos;
        rd->pos = 0;
    }
    if (need > rd->cap) {
        size_t cap = rd->cap;
        while (cap < need)
            cap *= 2;
        uint8_t *b = realloc(rd->buf, cap);
        if (b == NULL)
            return SL_ENOMEM;
        rd->buf = b;
        rd->cap = cap;
    }
    while (rd->end < need && !rd->eof) {
        size_t room = rd->cap - rd->end;
        int n = gzread(rd->gz, rd->buf + rd->end, (unsigned)(room > (1u << 30) ? 1u << 30 : room));
        if (n < 0)
            return SL_EIO;
        if (n == 0) {
            int zerr;
            gzerror(rd->gz, &zerr);
            rd->eof = true;
            if (zerr != Z_OK && zerr != Z_BUF_ERROR)
                return SL_EIO;
        }
        rd->end += (size_t)n;
    }
    return rd->end - rd->pos >= need ? 0 : SL_EOF;
}

/* Checks an attribute blob's framing. */
static bool sl__cap_attrs_ok(const uint8_t *a, size_t n)
{
    while (n > 0) {
        if (n < 4)
            return false;
        size_t l = 4u + sl__ld16(a) + sl__ld16(a + 2);
        if (l > n)
            return false;
        a += l;
        n -= l;
    }
    return true;
}

/*
 * Tries to take the record at pos. Returns 0 (rec filled, pos moved past it), SL_EBADMSG with *why, or
 * SL_EOF when the input ends inside it (*why says how much was missing). Nothing moves on failure.
 */
static int sl__cap_try(sl_cap_reader_t *rd, sl_cap_rec_t *rec, char *why, size_t why_len)
{
    int rc = sl__cap_fill(rd, 8);
    if (rc != 0 && rc != SL_EOF)
        return rc;
    size_t have = rd->end - rd->pos;
    const uint8_t *p = rd->buf + rd->pos;
    if (have >= 4 && memcmp(p, sl__cap_marker, 4) != 0)
        return snprintf(why, why_len, "no record marker"), SL_EBADMSG;
    if (have < 8)
        return snprintf(why, why_len, "truncated: %zu of at least %u bytes", have, SL__CAP_REC_MIN), SL_EOF;
    uint32_t len = sl__ld32(p + 4);
    if (len < SL__CAP_BODY_FIXED || len > SL_CAP_MAX_RECORD)
        return snprintf(why, why_len, "impossible record length %u", len), SL_EBADMSG;
    rc = sl__cap_fill(rd, 12u + len);
    if (rc == SL_EOF)
        return snprintf(why, why_len, "truncated: %zu of %u bytes", rd->end - rd->pos, 12u + len), SL_EOF;
    if (rc != 0)
        return rc;
    p = rd->buf + rd->pos;
    uint32_t crc = (uint32_t)crc32(0L, p + 4, 4u + len);
    if (crc != sl__ld32(p + 8 + len))
        return snprintf(why, why_len, "checksum mismatch"), SL_EBADMSG;
    const uint8_t *b = p + 8;
    uint32_t tl = sl__ld16(b + 10), pl = sl__ld32(b + 12), yl = sl__ld32(b + 16);
    if ((uint64_t)SL__CAP_BODY_FIXED + tl + pl + yl != len || b[8] > 2 || tl == 0 || !sl__cap_attrs_ok(b + 20 + tl, pl))
        return snprintf(why, why_len, "inconsistent record fields"), SL_EBADMSG;
    rec->ts_ns = sl__ld64(b);
    rec->qos = b[8];
    rec->flags = b[9];
    rec->topic = (const char *)b + 20;
    rec->topic_len = tl;
    rec->props = b + 20 + tl;
    rec->props_len = pl;
    rec->payload = b + 20 + tl + pl;
    rec->payload_len = yl;
    rec->offset = rd->base + rd->pos;
    rd->pos += 12u + len;
    return 0;
}

/* Skips to the next record that checks out, or to the end. The byte at pos is known bad. Returns whether
 * a good record was found (pos is then at it). */
static bool sl__cap_resync(sl_cap_reader_t *rd)
{
    uint64_t from = rd->base + rd->pos;
    sl_cap_rec_t tmp;
    char why[8];
    bool found = false;
    rd->pos++;
    for (;;) {
        uint8_t *hit = rd->pos < rd->end ? memmem(rd->buf + rd->pos, rd->end - rd->pos, sl__cap_marker, 4) : NULL;
        if (hit == NULL) {
            size_t keep = SL_MIN(rd->end - rd->pos, (size_t)3);
            rd->pos = rd->end - keep;
            if (rd->eof || sl__cap_fill(rd, keep + 1) != 0) {
                rd->pos = rd->end;
                break;
            }
            continue;
        }
        uint64_t at = rd->base + (size_t)(hit - rd->buf);
        rd->pos = (size_t)(hit - rd->buf);
        int rc = sl__cap_try(rd, &tmp, why, sizeof why);
        rd->pos = (size_t)(at - rd->base); /* sl__cap_try may have slid the window */
        if (rc == 0) {
            found = true;
            break;
        }
        if (rc != SL_EBADMSG && rc != SL_EOF) {
            rd->pos = rd->end;
            break;
        }
        rd->pos++;
    }
    rd->info.skipped_bytes += rd->base + rd->pos - from;
    return found;
}

static int sl__cap_next_bin(sl_cap_reader_t *rd, sl_cap_rec_t *rec)
{
    char why[96];
    if (rd->header_bad) {
        rd->header_bad = false;
        (void)sl__cap_resync(rd);
        return SL_EBADMSG; /* info was filled at open */
    }
    if (sl__cap_fill(rd, 1) == SL_EOF && rd->end == rd->pos)
        return SL_EOF;
    uint64_t off = rd->base + rd->pos, idx = rd->next_index;
    int rc = sl__cap_try(rd, rec, why, sizeof why);
    if (rc == 0) {
        rec->index = rd->next_index++;
        rd->info.records++;
        return 0;
    }
    if (rc != SL_EBADMSG && rc != SL_EOF)
        return rc;
    rd->next_index++;
    rd->info.corrupt++;
    sl__cap_bad(rd, idx, off, "%s", why);
    if (sl__cap_resync(rd) && rc == SL_EOF) /* a later record checks out: the length was bad */
        snprintf(rd->info.err, sizeof rd->info.err, "record length runs past the next record (%s)", why);
    return SL_EBADMSG;
}

/* Reads the capture header at the start of the stream. */
static int sl__cap_header(sl_cap_reader_t *rd)
{
    rd->info.format = SL_CAP_FMT_CAPTURE;
    (void)sl__cap_fill(rd, SL__CAP_HDR_FIXED);
    const uint8_t *p = rd->buf;
    size_t have = rd->end;
    uint32_t hlen = have >= 16 ? sl__ld32(p + 12) : 0;
    const char *why = NULL;
    if (have < SL__CAP_HDR_FIXED)
        why = "file header truncated";
    else if (hlen < SL__CAP_HDR_FIXED || hlen > SL__CAP_HDR_FIXED + SL_CAP_MAX_DESC + 4096u)
        why = "file header length impossible";
    else if (sl__cap_fill(rd, hlen) != 0)
        why = "file header truncated";
    p = rd->buf;
    if (why == NULL && (uint32_t)crc32(0L, p, hlen - 4) != sl__ld32(p + hlen - 4))
        why = "file header checksum mismatch";
    if (why == NULL && sl__ld16(p + 8) != SL_CAP_VERSION) {
        sl__cap_bad(rd, 0, 0, "capture format version %u is not supported (this sluice reads version %u)",
                    sl__ld16(p + 8), SL_CAP_VERSION);
        return SL_ENOTSUP;
    }
    if (why != NULL) { /* keep what follows usable: the first next() reports this and resynchronises */
        rd->header_bad = true;
        rd->pos = SL_MIN(rd->end, (size_t)SL_CAP_MAGIC_LEN) - 1;
        sl__cap_bad(rd, 0, 0, "%s; reading the records after it", why);
        return 0;
    }
    rd->info.version = sl__ld16(p + 8);
    rd->info.flags = sl__ld16(p + 10);
    rd->info.created_ns = sl__ld64(p + 16);
    size_t dl = SL_MIN((size_t)sl__ld16(p + 24), (size_t)(hlen - SL__CAP_HDR_FIXED));
    dl = SL_MIN(dl, (size_t)SL_CAP_MAX_DESC);
    memcpy(rd->info.desc, p + 26, dl);
    rd->info.desc[dl] = 0;
    rd->pos = hlen;
    return 0;
}

/* Picks the format from the first bytes: the magic (6 of 8 bytes suffice, so one bad byte does not
 * demote a capture to text), a '{' first, or else mosquitto_sub -v lines. */
static int sl__cap_detect(sl_cap_reader_t *rd)
{
    int rc = sl__cap_fill(rd, SL_CAP_MAGIC_LEN);
    if (rc != 0 && rc != SL_EOF)
        return rc;
    rd->info.gzip = gzdirect(rd->gz) == 0;
    size_t same = 0;
    for (size_t i = 0; i < SL_CAP_MAGIC_LEN && i < rd->end; i++)
        same += rd->buf[i] == (uint8_t)SL_CAP_MAGIC[i];
    if (same >= 6) {
        rc = sl__cap_header(rd);
    } else {
        size_t i = 0;
        while (i < rd->end && (rd->buf[i] == ' ' || rd->buf[i] == '\t' || rd->buf[i] == '\r' || rd->buf[i] == '\n'))
            i++;
        rd->info.format = i < rd->end && rd->buf[i] == '{' ? SL_CAP_FMT_NDJSON : SL_CAP_FMT_MOSQUITTO;
    }
    rd->data_start = rd->base + rd->pos;
    return rc;
}

int sl_cap_reader_open_fd(int fd, const char *name, sl_cap_reader_t **out)
{
    *out = NULL;
    sl_cap_reader_t *rd = calloc(1, sizeof *rd);
    if (rd == NULL) {
        close(fd);
        return SL_ENOMEM;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        rd->file_size = (uint64_t)st.st_size;
    rd->fd = fd;
    rd->gz = gzdopen(fd, "rb");
    rd->cap = SL__CAP_CHUNK;
    rd->buf = malloc(rd->cap);
    if (rd->gz == NULL || rd->buf == NULL) {
        if (rd->gz == NULL)
            close(fd);
        rd->fd = -1;
        sl_cap_reader_destroy(rd);
        return SL_ENOMEM;
    }
    gzbuffer(rd->gz, SL__CAP_CHUNK);
    int rc = sl__cap_detect(rd);
    if (rc != 0) {
        sl_cap_reader_destroy(rd);
        return rc;
    }
    (void)name;
    *out = rd;
    return 0;
}

int sl_cap_reader_open(const char *path, sl_cap_reader_t **out)
{
    int fd = strcmp(path, "-") == 0 ? dup(0) : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *out = NULL;
        return -errno;
    }
    return sl_cap_reader_open_fd(fd, path, out);
}

void sl_cap_reader_destroy(sl_cap_reader_t *rd)
{
    if (rd == NULL)
        return;
    if (rd->gz != NULL)
        gzclose(rd->gz); /* closes fd */
    free(rd->buf);
    free(rd->scratch);
    free(rd);
}

int sl_cap_reader_next(sl_cap_reader_t *rd, sl_cap_rec_t *rec)
{
    switch (rd->info.format) {
    case SL_CAP_FMT_CAPTURE: return sl__cap_next_bin(rd, rec);
    case SL_CAP_FMT_NDJSON: return sl__cap_next_ndjson(rd, rec);
    case SL_CAP_FMT_MOSQUITTO: return sl__cap_next_mosq(rd, rec);
    }
    return SL_EINVAL;
}

int sl_cap_reader_rewind(sl_cap_reader_t *rd)
{
    if (rd->base <= rd->data_start && rd->data_start <= rd->base + rd->end) {
        rd->pos = (size_t)(rd->data_start - rd->base); /* still in the buffer: no I/O (small files) */
    } else {
        if (gzrewind(rd->gz) != 0)
            return SL_EIO;
        rd->pos = rd->end = 0;
        rd->base = 0;
        rd->eof = false;
        int rc = sl__cap_fill(rd, (size_t)rd->data_start);
        if (rc != 0)
            return rc == SL_EOF ? SL_EIO : rc;
        rd->pos = (size_t)rd->data_start;
    }
    rd->next_index = 0;
    rd->header_bad = rd->info.format == SL_CAP_FMT_CAPTURE && rd->info.version == 0;
    return 0;
}

const sl_cap_info_t *sl_cap_reader_info(const sl_cap_reader_t *rd) { return &rd->info; }

void sl_cap_reader_progress(const sl_cap_reader_t *rd, uint64_t *done, uint64_t *total)
{
    *total = rd->file_size;
    if (rd->info.gzip) {
        z_off_t o = gzoffset(rd->gz);
        *done = o > 0 ? (uint64_t)o : 0;
    } else {
        *done = rd->base + rd->pos;
    }
}

/* ---- writer -------------------------------------------------------------------------------------- */

struct sl_cap_writer_s {
    gzFile gz;
    int fd;
    bool gzip;
    bool dirty; /* written since the last flush */
    uint64_t bytes, cut;
    bool failed;
};

int sl_cap_attr_put(uint8_t *buf, size_t cap, size_t *len, const char *name, size_t nl, const void *val, size_t vl)
{
    if (nl > UINT16_MAX || vl > UINT16_MAX || *len + 4 + nl + vl > cap)
        return SL_ENOSPC;
    sl__st16(buf + *len, (uint16_t)nl);
    sl__st16(buf + *len + 2, (uint16_t)vl);
    memcpy(buf + *len + 4, name, nl);
    if (vl)
        memcpy(buf + *len + 4 + nl, val, vl);
    *len += 4 + nl + vl;
    return 0;
}

static void sl__cap_w(sl_cap_writer_t *w, const void *p, size_t n)
{
    if (n == 0 || w->failed)
        return;
    w->dirty = true;
    if (gzwrite(w->gz, p, (unsigned)n) != (int)n)
        w->failed = true;
    w->bytes += n;
}

/* The end of the last complete gzip member of fd (from its start), or 0. */
static uint64_t sl__cap_gz_members_end(int fd)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return 0;
    uint8_t in[SL__CAP_CHUNK], out[SL__CAP_CHUNK];
    uint64_t read_total = 0, good = 0;
    for (;;) {
        if (z.avail_in == 0) {
            ssize_t n = pread(fd, in, sizeof in, (off_t)read_total);
            if (n <= 0)
                break;
            read_total += (uint64_t)n;
            z.next_in = in;
            z.avail_in = (uInt)n;
        }
        z.next_out = out;
        z.avail_out = sizeof out;
        int rc = inflate(&z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END) {
            good = read_total - z.avail_in;
            if (inflateReset(&z) != Z_OK)
                break;
        } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
            break; /* damaged: what follows the last complete member goes */
        }
    }
    inflateEnd(&z);
    return good;
}

/* The end of the last record of a plain capture that checks out (or of its header), or 0 when even the
 * header is unusable. The reader takes fd's duplicate. */
static uint64_t sl__cap_records_end(int fd)
{
    int dfd = dup(fd);
    sl_cap_reader_t *rd;
    if (dfd < 0 || sl_cap_reader_open_fd(dfd, "", &rd) != 0)
        return 0;
    uint64_t end = rd->info.format == SL_CAP_FMT_CAPTURE && !rd->header_bad ? rd->data_start : 0;
    sl_cap_rec_t r;
    int rc;
    while (end > 0 && (rc = sl_cap_reader_next(rd, &r)) != SL_EOF) {
        if (rc == 0)
            end = r.offset + sl_cap_record_size(&r);
        else if (rc != SL_EBADMSG)
            break;
    }
    sl_cap_reader_destroy(rd);
    return end;
}

/*
 * Before appending: cuts fd back to its last complete unit, so what a crashed writer left half-written
 * (never acknowledged: see sl_cap_writer_flush) cannot make the appended records unreadable. gzip: the
 * last complete member; plain: the last record that checks out. Returns the bytes cut, or a negative code.
 */
static int64_t sl__cap_cut_tail(int fd, bool *gzip_file)
{
    struct stat st;
    uint8_t magic[2] = {0, 0};
    if (fstat(fd, &st) != 0)
        return -errno;
    if (st.st_size == 0)
        return 0;
    if (pread(fd, magic, 2, 0) != 2)
        return SL_EIO;
    *gzip_file = magic[0] == 0x1f && magic[1] == 0x8b;
    uint64_t keep = *gzip_file ? sl__cap_gz_members_end(fd) : sl__cap_records_end(fd);
    if (keep >= (uint64_t)st.st_size)
        return 0;
    if (ftruncate(fd, (off_t)keep) != 0)
        return -errno;
    return (int64_t)((uint64_t)st.st_size - keep);
}

size_t sl_cap_header_encode(uint8_t *out, const char *desc, uint64_t created_ns)
{
    size_t dl = desc ? SL_MIN(strlen(desc), (size_t)SL_CAP_MAX_DESC) : 0;
    memcpy(out, SL_CAP_MAGIC, SL_CAP_MAGIC_LEN);
    sl__st16(out + 8, SL_CAP_VERSION);
    sl__st16(out + 10, 0);
    sl__st32(out + 12, (uint32_t)(SL__CAP_HDR_FIXED + dl));
    sl__st64(out + 16, created_ns ? created_ns : sl_wall_ns());
    sl__st16(out + 24, (uint16_t)dl);
    if (dl)
        memcpy(out + SL__CAP_HDR_FIXED - 4, desc, dl);
    uLong crc = crc32(0L, out, (uInt)(SL__CAP_HDR_FIXED - 4 + dl));
    sl__st32(out + SL__CAP_HDR_FIXED - 4 + dl, (uint32_t)crc);
    return SL__CAP_HDR_FIXED + dl;
}

int sl_cap_writer_open(const char *path, const sl_cap_wopts_t *o, sl_cap_writer_t **out)
{
    *out = NULL;
    size_t dl = o->desc ? strlen(o->desc) : 0;
    if (dl > SL_CAP_MAX_DESC || o->gzip_level < 0 || o->gzip_level > 9)
        return SL_EINVAL;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | (o->append ? O_APPEND : O_TRUNC), 0644);
    if (fd < 0)
        return -errno;
    bool gzip_file = o->gzip_level > 0;
    int64_t cut = o->append ? sl__cap_cut_tail(fd, &gzip_file) : 0;
    struct stat st;
    if (cut >= 0 && fstat(fd, &st) != 0)
        cut = -errno;
    if (cut >= 0 && st.st_size > 0 && gzip_file != (o->gzip_level > 0))
        cut = SL_EINVAL; /* appending gzip to a plain capture (or the reverse) would make it unreadable */
    if (cut < 0) {
        close(fd);
        return (int)cut;
    }
    bool header = st.st_size == 0;
    char mode[8];
    snprintf(mode, sizeof mode, o->gzip_level ? "wb%d" : "wbT", o->gzip_level);
    sl_cap_writer_t *w = calloc(1, sizeof *w);
    gzFile gz = w ? gzdopen(fd, mode) : NULL;
    if (gz == NULL) {
        close(fd);
        free(w);
        return SL_ENOMEM;
    }
    w->gz = gz;
    w->fd = fd;
    w->gzip = o->gzip_level > 0;
    w->cut = (uint64_t)cut;
    gzbuffer(gz, SL__CAP_CHUNK);
    if (header) {
        uint8_t h[SL_CAP_HEADER_MAX];
        sl__cap_w(w, h, sl_cap_header_encode(h, o->desc, o->created_ns));
    }
    *out = w;
    return 0;
}

size_t sl_cap_record_size(const sl_cap_rec_t *rec)
{
    return SL_CAP_REC_HEAD + (size_t)rec->topic_len + rec->props_len + rec->payload_len + 4u;
}

int sl_cap_record_head(const sl_cap_rec_t *rec, uint8_t *h, uint32_t *crc)
{
    uint64_t len = (uint64_t)SL__CAP_BODY_FIXED + rec->topic_len + rec->props_len + rec->payload_len;
    if (len > SL_CAP_MAX_RECORD || rec->topic_len == 0 || rec->topic_len > UINT16_MAX || rec->qos > 2 ||
        !sl__cap_attrs_ok(rec->props, rec->props_len))
        return rec->topic_len == 0 || rec->qos > 2 ? SL_EINVAL : SL_EMSGSIZE;
    memcpy(h, sl__cap_marker, 4);
    sl__st32(h + 4, (uint32_t)len);
    sl__st64(h + 8, rec->ts_ns);
    h[16] = rec->qos;
    h[17] = rec->flags;
    sl__st16(h + 18, (uint16_t)rec->topic_len);
    sl__st32(h + 20, rec->props_len);
    sl__st32(h + 24, rec->payload_len);
    uLong c = crc32(0L, h + 4, SL_CAP_REC_HEAD - 4);
    /* zlib's crc32() with a NULL buffer returns its initial value (0), whatever the length: a record
     * without properties (props NULL) had its checksum restarted and was read back as corrupt; so was a
     * header without a description. */
    c = crc32(c, (const Bytef *)rec->topic, rec->topic_len);
    if (rec->props_len)
        c = crc32(c, rec->props, rec->props_len);
    if (rec->payload_len)
        c = crc32(c, rec->payload, rec->payload_len);
    *crc = (uint32_t)c;
    return 0;
}

int sl_cap_record_encode(const sl_cap_rec_t *rec, uint8_t *out)
{
    uint32_t crc;
    int rc = sl_cap_record_head(rec, out, &crc);
    if (rc != 0)
        return rc;
    uint8_t *p = out + SL_CAP_REC_HEAD;
    memcpy(p, rec->topic, rec->topic_len), p += rec->topic_len;
    if (rec->props_len)
        memcpy(p, rec->props, rec->props_len), p += rec->props_len;
    if (rec->payload_len)
        memcpy(p, rec->payload, rec->payload_len), p += rec->payload_len;
    sl__st32(p, crc);
    return 0;
}

int sl_cap_writer_put(sl_cap_writer_t *w, const sl_cap_rec_t *rec)
{
    uint8_t h[SL_CAP_REC_HEAD], c[4];
    uint32_t crc;
    int rc = sl_cap_record_head(rec, h, &crc);
    if (rc != 0)
        return rc;
    sl__st32(c, crc);
    sl__cap_w(w, h, sizeof h);
    sl__cap_w(w, rec->topic, rec->topic_len);
    sl__cap_w(w, rec->props, rec->props_len);
    sl__cap_w(w, rec->payload, rec->payload_len);
    sl__cap_w(w, c, 4);
    return w->failed ? SL_EIO : 0;
}

uint64_t sl_cap_writer_bytes(const sl_cap_writer_t *w) { return w->bytes; }
uint64_t sl_cap_writer_cut(const sl_cap_writer_t *w) { return w->cut; }

int sl_cap_writer_flush(sl_cap_writer_t *w, bool sync)
{
    if (w->failed)
        return SL_EIO;
    if (w->dirty) {
        /* gzip: Z_FINISH completes the member (the next write starts a new one), so the file is always
         * a run of complete members plus at most one cut short by a crash, which a restart removes. */
        if (gzflush(w->gz, w->gzip ? Z_FINISH : Z_SYNC_FLUSH) != Z_OK) {
            w->failed = true;
            return SL_EIO;
        }
        w->dirty = false;
        if (sync && fdatasync(w->fd) != 0) {
            w->failed = true;
            return -errno;
        }
    }
    return 0;
}

int sl_cap_writer_close(sl_cap_writer_t *w)
{
    if (w == NULL)
        return 0;
    int rc = gzclose(w->gz) == Z_OK && !w->failed ? 0 : SL_EIO;
    free(w);
    return rc;
}
