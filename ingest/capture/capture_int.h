/*
 * Private interface of the capture readers (ingest/capture/): the reader's buffered input, shared by the
 * binary format (capture.c) and the line formats (capture_text.c).
 *
 * The input is a window [pos, end) of buf over the uncompressed stream; base is the stream offset of
 * buf[0]. sl__cap_fill() slides the window (memmove of what is left, never more than one record) and
 * grows buf only when one record needs more room than it has, so reading allocates nothing per record.
 */
#ifndef SL_CAPTURE_INT_H
#define SL_CAPTURE_INT_H

#include <zlib.h>

#include "ingest/capture/capture.h"

#define SL__CAP_CHUNK (64u << 10)    /* initial buffer and read size */
#define SL__CAP_MAX_LINE (64u << 20) /* longest NDJSON or mosquitto_sub line */

struct sl_cap_reader_s {
    gzFile gz;
    int fd;
    uint8_t *buf;
    size_t cap, pos, end;
    uint64_t base;       /* stream offset of buf[0] */
    bool eof;            /* the input has nothing more */
    uint64_t data_start; /* stream offset of the first record */
    uint64_t next_index; /* index of the next record */
    bool header_bad;     /* capture header corrupt: report once, then resynchronise */
    uint8_t *scratch;    /* text formats: decoded topic, properties and payload */
    size_t scratch_cap;
    uint64_t file_size;
    sl_cap_info_t info;
};

/* Makes at least need bytes available at buf + pos. Returns 0, SL_EOF when the input ends first (what
 * there is stays available), SL_EMSGSIZE when need exceeds the limits, or SL_EIO. */
int sl__cap_fill(sl_cap_reader_t *rd, size_t need);

/* Records a problem at (index, offset) in info; returns SL_EBADMSG. */
int sl__cap_bad(sl_cap_reader_t *rd, uint64_t index, uint64_t offset, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The line formats (capture_text.c). */
int sl__cap_next_ndjson(sl_cap_reader_t *rd, sl_cap_rec_t *rec);
int sl__cap_next_mosq(sl_cap_reader_t *rd, sl_cap_rec_t *rec);

/* Parses an RFC 3339 time ("2024-05-01T12:00:00.5Z", "+02:00" offsets) into ns since the epoch. 0 or
 * SL_EINVAL. */
int sl__cap_parse_rfc3339(const char *s, size_t n, uint64_t *ns);

#endif /* SL_CAPTURE_INT_H */
