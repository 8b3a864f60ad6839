/*
 * Captures: files of recorded (or generated) MQTT telemetry, and the readers and writer of them.
 *
 * The sluice capture format (docs/capture.md) is a header and then self-delimiting records, each with a
 * marker, a length and a CRC-32, optionally gzip-compressed as a whole. Readers also take NDJSON (one
 * `{"ts":..,"topic":..,"payload":..}` object per line, which includes what the file sink writes) and the
 * output of `mosquitto_sub -v` (`topic payload` per line); sl_cap_reader_open() detects which, and gzip.
 *
 * Invariants:
 *  - A reader never trusts its input: every length is checked against what is there, a record whose
 *    checksum fails is reported (record index and byte offset) and skipped by resynchronising on the next
 *    record marker, so one bad byte costs one record, and nothing in a file can make it crash or allocate
 *    without bound (a record is at most SL_CAP_MAX_RECORD bytes).
 *  - Reading costs no allocation per record: a record is a view into the reader's buffer, valid until the
 *    next call; the buffer grows (amortised) only to the largest record seen.
 *  - Byte offsets are offsets in the uncompressed stream (what `gzip -dc` shows), so `dd`/`xxd` find them.
 */
#ifndef SL_CAPTURE_H
#define SL_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sl.h"

#define SL_CAP_VERSION 1
#define SL_CAP_MAGIC "\x89SLCAP\r\n" /* 8 bytes: a non-ASCII first byte and a CR LF catch text-mode mangling */
#define SL_CAP_MAGIC_LEN 8
#define SL_CAP_MAX_RECORD (256u << 20) /* MQTT's own maximum packet size */
#define SL_CAP_MAX_DESC 4096           /* bytes of the header's free-form description */

/* Record flags (one byte in the file). */
#define SL_CAP_F_RETAIN 0x01u
#define SL_CAP_F_BINARY 0x02u /* the payload is not text (sluice emits it with SL_REC_BINARY) */

/* X(name, text) */
#define SL_CAP_FORMAT_MAP(X) \
    X(CAPTURE, "capture")    \
    X(NDJSON, "ndjson")      \
    X(MOSQUITTO, "mosquitto_sub -v")

typedef enum sl_cap_format_e {
#define SL_CAP_FORMAT_ENUM(name, text) SL_CAP_FMT_##name,
    SL_CAP_FORMAT_MAP(SL_CAP_FORMAT_ENUM)
#undef SL_CAP_FORMAT_ENUM
} sl_cap_format_t;

const char *sl_cap_format_name(sl_cap_format_t f);

/* One record: a view. On read, the pointers are into the reader's buffer, valid until the next call. */
typedef struct sl_cap_rec_s {
    uint64_t ts_ns; /* receive time, ns since the epoch; 0 = unknown (mosquitto_sub -v) */
    uint8_t qos;
    uint8_t flags; /* SL_CAP_F_* */
    const char *topic;
    const uint8_t *props; /* MQTT 5 properties as sluice attributes: [u16 nl][u16 vl][name][value]... */
    const uint8_t *payload;
    uint32_t topic_len, props_len, payload_len;
    uint64_t index;  /* on read: the record's number in the file, from 0 (corrupt records count too) */
    uint64_t offset; /* on read: byte offset of its first byte (capture: its marker; text: its line) */
} sl_cap_rec_t;

/* What the reader knows about its file and what it has met so far. */
typedef struct sl_cap_info_s {
    sl_cap_format_t format;
    bool gzip;
    uint16_t version, flags; /* capture header */
    uint64_t created_ns;     /* capture header; 0 when unknown */
    char desc[SL_CAP_MAX_DESC + 1];
    uint64_t records;       /* records returned */
    uint64_t corrupt;       /* records reported corrupt (each a skipped region) */
    uint64_t skipped_bytes; /* bytes skipped while resynchronising */
    /* The last problem: what sl_cap_reader_next() returned SL_EBADMSG for. */
    uint64_t err_index, err_offset;
    char err[160];
} sl_cap_info_t;

typedef struct sl_cap_reader_s sl_cap_reader_t;

/*
 * Opens path (or "-" for stdin) and detects gzip and the format from the first bytes. Returns 0 and *out
 * (free with sl_cap_reader_destroy), SL_ENOENT/SL_EIO (errno-style) when it cannot be opened, or
 * SL_EBADMSG for a capture whose header is unusable (info says why). Any process; the reader is not
 * thread-safe.
 */
int sl_cap_reader_open(const char *path, sl_cap_reader_t **out);
/* Same from an open descriptor (the reader takes ownership of fd, also on failure). */
int sl_cap_reader_open_fd(int fd, const char *name, sl_cap_reader_t **out);
void sl_cap_reader_destroy(sl_cap_reader_t *rd);

/*
 * Reads the next record into *rec. Returns 0; SL_EOF at the end; SL_EBADMSG when a corrupt or truncated
 * record was met and skipped (info->err_index, err_offset and err say which and why; call again for the
 * records after it); SL_EIO when reading failed (gzip stream errors included). Never allocates per record.
 */
int sl_cap_reader_next(sl_cap_reader_t *rd, sl_cap_rec_t *rec);
/* Goes back to the first record (for loops). Counters in info keep counting. Returns 0 or SL_EIO. */
int sl_cap_reader_rewind(sl_cap_reader_t *rd);
const sl_cap_info_t *sl_cap_reader_info(const sl_cap_reader_t *rd);
/* Progress: bytes of the file consumed (compressed bytes for gzip) and the file's size (0 if unknown). */
void sl_cap_reader_progress(const sl_cap_reader_t *rd, uint64_t *done, uint64_t *total);

typedef struct sl_cap_writer_s sl_cap_writer_t;

typedef struct sl_cap_wopts_s {
    int gzip_level;      /* 0 = no compression, 1-9 gzip */
    const char *desc;    /* free-form description of the source (at most SL_CAP_MAX_DESC bytes), or NULL */
    uint64_t created_ns; /* 0 = now */
    bool append;         /* add to an existing file (no second header when it has one; gzip: a new member) */
} sl_cap_wopts_t;

/*
 * Creates (truncates, or with append extends) path and writes the header. With append, an existing file
 * is first cut back to its last complete unit (gzip: member; plain: record that checks out), removing what
 * a crashed writer left half-written after its last sl_cap_writer_flush() (sl_cap_writer_cut() says how
 * much); appending to a file of the other kind (gzip or not) is refused with SL_EINVAL. Returns 0 and
 * *out, or a negative errno-style code. The file is complete only after sl_cap_writer_close() returned 0.
 */
int sl_cap_writer_open(const char *path, const sl_cap_wopts_t *o, sl_cap_writer_t **out);
/* Appends one record (index and offset are ignored). Returns 0, SL_EMSGSIZE (too large) or SL_EIO. */
int sl_cap_writer_put(sl_cap_writer_t *w, const sl_cap_rec_t *rec);
/* The same encoding into memory, for writers of their own (the file sink's `format: capture`, which
 * writes whole batches): the header (at most SL_CAP_HEADER_MAX bytes, the description cut to
 * SL_CAP_MAX_DESC; created_ns 0 = now) returns its length; a record takes sl_cap_record_size() bytes,
 * and sl_cap_record_encode() returns 0, SL_EINVAL or SL_EMSGSIZE like sl_cap_writer_put (nothing
 * written then). sl_cap_record_head() fills the first SL_CAP_REC_HEAD bytes and the CRC of the record
 * (stored little-endian after the payload). Any thread. */
#define SL_CAP_HEADER_MAX (30u + SL_CAP_MAX_DESC)
#define SL_CAP_REC_HEAD 28u
size_t sl_cap_header_encode(uint8_t *out, const char *desc, uint64_t created_ns);
/* The capture record of a pipeline event (a view: pointers into the event's channel record). Defined with
 * the capture sink (capture_sink.c), the other writer of events. */
struct sl_event_s;
void sl_cap_rec_of_event(const struct sl_event_s *ev, sl_cap_rec_t *r);
size_t sl_cap_record_size(const sl_cap_rec_t *rec);
int sl_cap_record_encode(const sl_cap_rec_t *rec, uint8_t *out);
int sl_cap_record_head(const sl_cap_rec_t *rec, uint8_t *head, uint32_t *crc);

/* Bytes written so far by this writer (uncompressed). */
uint64_t sl_cap_writer_bytes(const sl_cap_writer_t *w);
/* Bytes the append open cut from the end of the existing file. */
uint64_t sl_cap_writer_cut(const sl_cap_writer_t *w);
/*
 * Puts every record written so far into the file (gzip: completes the current member), and with sync
 * fdatasyncs it: after 0 they survive a crash of this process (with sync, of the machine). Returns 0,
 * SL_EIO or a negative errno; after a failure the writer only fails.
 */
int sl_cap_writer_flush(sl_cap_writer_t *w, bool sync);
/* Flushes and closes; returns 0 or SL_EIO (then the file is incomplete). NULL is a no-op returning 0. */
int sl_cap_writer_close(sl_cap_writer_t *w);

typedef struct sl_cap_pub_s sl_cap_pub_t;

/*
 * Publishing records to an MQTT broker (MQTT 5, Paho MQTTAsync; ingest/capture/capture_pub.c). open
 * connects to url (tcp://HOST:PORT) with a clean session and waits up to 10 s: 0 and *out, or SL_EIO.
 * put publishes one record (properties as user properties) at qos (-1: the record's), waiting while 1000
 * are unconfirmed: 0, SL_ETIMEDOUT or SL_EIO. close waits up to 30 s for the confirmations, disconnects
 * and reports how many were confirmed and failed: 0 or SL_ETIMEDOUT. One thread per publisher.
 */
int sl_cap_pub_open(const char *url, const char *client_id, sl_cap_pub_t **out);
int sl_cap_pub_put(sl_cap_pub_t *p, const sl_cap_rec_t *rec, int qos);
int sl_cap_pub_close(sl_cap_pub_t *p, uint64_t *done, uint64_t *failed);

/*
 * The sequence check (ingest/capture/capture_seq.c, `sluice verify`): records are added one by one; each
 * is a device (its topic) and a sequence number (the payload's "seq": N, or a `sluice gen` binary
 * payload's); totals say how many distinct numbers, duplicates, and gaps there are. Any process, one
 * thread.
 */
typedef struct sl_cap_seq_s sl_cap_seq_t;
typedef struct sl_cap_seq_totals_s {
    uint64_t records;     /* records added */
    uint64_t devices;     /* distinct topics */
    uint64_t distinct;    /* distinct (device, seq) pairs */
    uint64_t duplicates;  /* records whose (device, seq) was seen before */
    uint64_t unparseable; /* records without a sequence number (or past the largest one accepted) */
    uint64_t gaps;        /* numbers missing below each device's largest */
    uint64_t lost;        /* gaps, or expect - distinct when more are expected than that explains */
    uint64_t extra;       /* distinct beyond expect */
} sl_cap_seq_totals_t;

int sl_cap_seq_new(sl_cap_seq_t **out); /* 0 or SL_ENOMEM */
void sl_cap_seq_destroy(sl_cap_seq_t *s);
/* Adds rec: 0, SL_EBADMSG (no sequence number: counted as unparseable) or SL_ENOMEM. */
int sl_cap_seq_add(sl_cap_seq_t *s, const sl_cap_rec_t *rec);
/* The totals; expect > 0 is how many distinct pairs there should be (e.g. what `sluice gen` published). */
void sl_cap_seq_totals(const sl_cap_seq_t *s, uint64_t expect, sl_cap_seq_totals_t *t);

/* Appends attribute name=value to buf at *len (cap bytes). Returns 0 or SL_ENOSPC (nothing written). */
int sl_cap_attr_put(uint8_t *buf, size_t cap, size_t *len, const char *name, size_t nl, const void *val, size_t vl);

#endif /* SL_CAPTURE_H */
