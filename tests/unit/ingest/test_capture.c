/*
 * The capture readers and writer: round trips (plain and gzip), a flipped byte anywhere reported at the
 * exact record with every other record still read, truncation at every length, the header, NDJSON and
 * mosquitto_sub -v input (the samples in tests/capture/ too), and rewinding.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "ingest/capture/capture.h"

#define NREC 5

typedef struct tc_s {
    char path[64];
    uint8_t *file; /* the whole written capture */
    size_t len;
    uint64_t off[NREC + 1]; /* record offsets; off[NREC] = end */
    char topic[NREC][64];
    char payload[NREC][300];
    uint8_t props[NREC][64];
    size_t props_len[NREC];
} tc_t;

static void fill_rec(tc_t *t, int i, sl_cap_rec_t *r)
{
    snprintf(t->topic[i], sizeof t->topic[i], "factory/dev-%d/telemetry", i);
    int n = snprintf(t->payload[i], sizeof t->payload[i], "{\"device\":\"dev-%d\",\"seq\":%d,\"pad\":\"%.*s\"}", i, i,
                     i * 40,
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    t->props_len[i] = 0;
    if (i % 2)
        assert_int_equal(sl_cap_attr_put(t->props[i], sizeof t->props[i], &t->props_len[i], "unit", 4, "C", 1), 0);
    *r = (sl_cap_rec_t){.ts_ns = 1700000000000000000ull + (uint64_t)i * 1000000,
                        .qos = (uint8_t)(i % 3),
                        .flags = i == 3 ? SL_CAP_F_RETAIN : 0,
                        .topic = t->topic[i],
                        .topic_len = (uint32_t)strlen(t->topic[i]),
                        .props = t->props[i],
                        .props_len = (uint32_t)t->props_len[i],
                        .payload = (const uint8_t *)t->payload[i],
                        .payload_len = (uint32_t)n};
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len + 1);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void write_capture(tc_t *t, int gzip)
{
    sl_cap_writer_t *w;
    sl_cap_wopts_t o = {.gzip_level = gzip, .desc = "unit test", .created_ns = 42};
    assert_int_equal(sl_cap_writer_open(t->path, &o, &w), 0);
    for (int i = 0; i < NREC; i++) {
        sl_cap_rec_t r;
        fill_rec(t, i, &r);
        t->off[i] = sl_cap_writer_bytes(w);
        assert_int_equal(sl_cap_writer_put(w, &r), 0);
    }
    t->off[NREC] = sl_cap_writer_bytes(w);
    assert_int_equal(sl_cap_writer_close(w), 0);
    free(t->file);
    t->file = slurp(t->path, &t->len);
}

static int setup(void **state)
{
    tc_t *t = calloc(1, sizeof *t);
    snprintf(t->path, sizeof t->path, "/tmp/sl-test-capture-XXXXXX");
    int fd = mkstemp(t->path);
    if (fd < 0)
        return -1;
    close(fd);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    tc_t *t = *state;
    unlink(t->path);
    free(t->file);
    free(t);
    return 0;
}

/* Opens bytes as a reader through a memfd. */
static sl_cap_reader_t *open_bytes(const void *b, size_t n)
{
    int fd = memfd_create("cap", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b, n), (ssize_t)n);
    lseek(fd, 0, SEEK_SET);
    sl_cap_reader_t *rd;
    assert_int_equal(sl_cap_reader_open_fd(fd, "mem", &rd), 0);
    return rd;
}

static void assert_rec(tc_t *t, int i, const sl_cap_rec_t *r)
{
    sl_cap_rec_t want;
    fill_rec(t, i, &want);
    assert_int_equal(r->index, i);
    assert_int_equal(r->offset, t->off[i]);
    assert_int_equal(r->ts_ns, want.ts_ns);
    assert_int_equal(r->qos, want.qos);
    assert_int_equal(r->flags, want.flags);
    assert_int_equal(r->topic_len, want.topic_len);
    assert_memory_equal(r->topic, want.topic, want.topic_len);
    assert_int_equal(r->props_len, want.props_len);
    if (want.props_len)
        assert_memory_equal(r->props, want.props, want.props_len);
    assert_int_equal(r->payload_len, want.payload_len);
    assert_memory_equal(r->payload, want.payload, want.payload_len);
}

static void test_round_trip(void **state)
{
    tc_t *t = *state;
    for (int gz = 0; gz <= 9; gz += 9) {
        write_capture(t, gz);
        sl_cap_reader_t *rd;
        assert_int_equal(sl_cap_reader_open(t->path, &rd), 0);
        const sl_cap_info_t *in = sl_cap_reader_info(rd);
        assert_int_equal(in->format, SL_CAP_FMT_CAPTURE);
        assert_int_equal(in->gzip, gz != 0);
        assert_int_equal(in->version, SL_CAP_VERSION);
        assert_int_equal(in->created_ns, 42);
        assert_string_equal(in->desc, "unit test");
        for (int pass = 0; pass < 2; pass++) { /* and again after a rewind */
            sl_cap_rec_t r;
            for (int i = 0; i < NREC; i++) {
                assert_int_equal(sl_cap_reader_next(rd, &r), 0);
                assert_rec(t, i, &r);
            }
            assert_int_equal(sl_cap_reader_next(rd, &r), SL_EOF);
            assert_int_equal(sl_cap_reader_rewind(rd), 0);
        }
        assert_int_equal(in->records, 2 * NREC);
        assert_int_equal(in->corrupt, 0);
        sl_cap_reader_destroy(rd);
    }
}

/* Reads everything; returns the records seen (bitmask by index) and the errors. */
static unsigned read_all(tc_t *t, sl_cap_reader_t *rd, int *errors, uint64_t *err_index, uint64_t *err_off)
{
    unsigned seen = 0;
    sl_cap_rec_t r;
    int rc;
    *errors = 0;
    while ((rc = sl_cap_reader_next(rd, &r)) != SL_EOF) {
        if (rc == SL_EBADMSG) {
            (*errors)++;
            *err_index = sl_cap_reader_info(rd)->err_index;
            *err_off = sl_cap_reader_info(rd)->err_offset;
            continue;
        }
        assert_int_equal(rc, 0);
        assert_true(r.index < NREC);
        assert_rec(t, (int)r.index, &r);
        seen |= 1u << r.index;
    }
    return seen;
}

static void test_corrupt_every_byte(void **state)
{
    tc_t *t = *state;
    write_capture(t, 0);
    uint8_t *b = malloc(t->len);
    for (size_t at = 0; at < t->len; at++) {
        memcpy(b, t->file, t->len);
        b[at] ^= 0xFF;
        sl_cap_reader_t *rd = open_bytes(b, t->len);
        int errors;
        uint64_t ei = ~0ull, eo = ~0ull;
        unsigned seen = read_all(t, rd, &errors, &ei, &eo);
        if (at < t->off[0]) { /* the header: reported, every record still read */
            if (errors != 1 || seen != (1u << NREC) - 1)
                fail_msg("header byte %zu: %d errors, records seen 0x%x", at, errors, seen);
            assert_int_equal(sl_cap_reader_info(rd)->corrupt, 0);
        } else {
            int k = 0;
            while (at >= t->off[k + 1])
                k++;
            if (errors != 1 || ei != (uint64_t)k || eo != t->off[k] || seen != (((1u << NREC) - 1) & ~(1u << k)))
                fail_msg("byte %zu (record %d at %llu): %d errors, at record %llu offset %llu (%s), seen 0x%x", at, k,
                         (unsigned long long)t->off[k], errors, (unsigned long long)ei, (unsigned long long)eo,
                         sl_cap_reader_info(rd)->err, seen);
            assert_int_equal(sl_cap_reader_info(rd)->corrupt, 1);
            assert_int_equal(sl_cap_reader_info(rd)->records, NREC - 1);
        }
        sl_cap_reader_destroy(rd);
    }
    free(b);
}

static void test_truncated_every_length(void **state)
{
    tc_t *t = *state;
    write_capture(t, 0);
    for (size_t len = t->off[0]; len <= t->len; len++) {
        sl_cap_reader_t *rd = open_bytes(t->file, len);
        int errors;
        uint64_t ei = ~0ull, eo = ~0ull;
        unsigned seen = read_all(t, rd, &errors, &ei, &eo);
        int whole = 0;
        while (whole < NREC && t->off[whole + 1] <= len)
            whole++;
        bool cut = whole < NREC && len > t->off[whole];
        assert_int_equal(seen, (1u << whole) - 1);
        assert_int_equal(errors, cut ? 1 : 0);
        if (cut) {
            assert_int_equal(ei, whole);
            assert_int_equal(eo, t->off[whole]);
            assert_non_null(strstr(sl_cap_reader_info(rd)->err, "truncated"));
        }
        sl_cap_reader_destroy(rd);
    }
}

static void test_gzip_truncated(void **state)
{
    tc_t *t = *state;
    write_capture(t, 6);
    /* Cut inside the compressed stream: the records before the cut are read, then an error, no crash. */
    sl_cap_reader_t *rd = open_bytes(t->file, t->len - 12);
    assert_true(sl_cap_reader_info(rd)->gzip);
    sl_cap_rec_t r;
    int rc, n = 0;
    while ((rc = sl_cap_reader_next(rd, &r)) == 0 || rc == SL_EBADMSG)
        n += rc == 0;
    assert_true(rc == SL_EOF || rc == SL_EIO);
    assert_true(n <= NREC);
    sl_cap_reader_destroy(rd);
}

static void test_version_refused(void **state)
{
    tc_t *t = *state;
    write_capture(t, 0);
    uint8_t *b = malloc(t->len);
    memcpy(b, t->file, t->len);
    b[8] = 2; /* version 2, with a valid header checksum */
    uint32_t hl = (uint32_t)t->off[0];
    uint32_t c = (uint32_t)crc32(0, b, hl - 4);
    memcpy(b + hl - 4, &c, 4);
    int fd = memfd_create("cap", MFD_CLOEXEC);
    assert_int_equal(write(fd, b, t->len), (ssize_t)t->len);
    lseek(fd, 0, SEEK_SET);
    sl_cap_reader_t *rd;
    assert_int_equal(sl_cap_reader_open_fd(fd, "mem", &rd), SL_ENOTSUP);
    assert_null(rd);
    free(b);
}

static const char ndjson[] =
    "{\"ts\":1700000000.5,\"topic\":\"a/dev-1/t\",\"payload\":{\"seq\":1,\"v\":[1,2,{\"x\":null}]}}\n"
    "\n"
    "{\"ts\":1700000000500,\"topic\":\"a/dev-2/t\",\"payload\":\"text \\\"q\\\" \\u00e9\\ud83d\\ude00\",\"qos\":2,"
    "\"retain\":true}\r\n"
    "not json at all\n"
    "{\"received_ns\":1700000000000000123,\"topic\":\"a/b\",\"key\":\"k\",\"attributes\":{\"device_id\":\"d1\","
    "\"n\":5},\"payload_base64\":\"AAEC/w==\"}\n"
    "{\"topic\":\"a/c\",\"payload\":12.5,\"extra\":[true,false]}\n"
    "{\"ts\":\"2023-11-14T22:13:20.25Z\",\"topic\":\"a/d\"}\n"
    "{\"topic\":\"a/e\",\"payload\":1} trailing\n"
    "{\"topic\":\"a/f\",\"payload\":\"last line, no newline\"}";

static void test_ndjson(void **state)
{
    sl_cap_reader_t *rd = open_bytes(ndjson, sizeof ndjson - 1);
    assert_int_equal(sl_cap_reader_info(rd)->format, SL_CAP_FMT_NDJSON);
    sl_cap_rec_t r;
    assert_int_equal(sl_cap_reader_next(rd, &r), 0);
    assert_int_equal(r.ts_ns, 1700000000500000000ull);
    assert_int_equal(r.offset, 0);
    assert_memory_equal(r.payload, "{\"seq\":1,\"v\":[1,2,{\"x\":null}]}", r.payload_len);
    assert_int_equal(sl_cap_reader_next(rd, &r), 0);
    assert_int_equal(r.ts_ns, 1700000000500000000ull);
    assert_int_equal(r.qos, 2);
    assert_int_equal(r.flags, SL_CAP_F_RETAIN);
    assert_int_equal(r.index, 1);
    const char want[] = "text \"q\" \xc3\xa9\xf0\x9f\x98\x80";
    assert_int_equal(r.payload_len, sizeof want - 1);
    assert_memory_equal(r.payload, want, sizeof want - 1);
    assert_int_equal(sl_cap_reader_next(rd, &r), SL_EBADMSG);
    assert_int_equal(sl_cap_reader_info(rd)->err_index, 2);
    assert_int_equal(sl_cap_reader_info(rd)->err_offset, strstr(ndjson, "not json") - ndjson);
    assert_int_equal(sl_cap_reader_next(rd, &r), 0);
    assert_int_equal(r.ts_ns, 1700000000000000123ull);
    assert_int_equal(r.flags, SL_CAP_F_BINARY);
    assert_int_equal(r.payload_len, 4);
    assert_memory_equal(r.payload, "\x00\x01\x02\xff", 4);
    assert_int_equal(r.props_len, 4 + 9 + 2 + 4 + 1 + 1);
    assert_memory_equal(r.props,
                        "\x09\x00\x02\x00"
                        "device_idd1"
                        "\x01\x00\x01\x00"
                        "n5",
                        r.props_len);
    assert_int_equal(sl_cap_reader_next(rd, &r), 0);
    assert_memory_equal(r.payload, "12.5", 4);
    assert_int_equal(r.ts_ns, 0);
    assert_int_equal(sl_cap_reader_next(rd, &r), 0);
    assert_int_equal(r.ts_ns, 1700000000250000000ull);
    assert_int_equal(r.payload_len, 0);
    assert_int_equal(sl_cap_reader_next(rd, &r), SL_EBADMSG); /* trailing text */
    assert_int_equal(sl_cap_reader_next(rd, &r), 0);
    assert_memory_equal(r.topic, "a/f", 3);
    assert_int_equal(r.index, 7);
    assert_int_equal(sl_cap_reader_next(rd, &r), SL_EOF);
    assert_int_equal(sl_cap_reader_info(rd)->records, 6);
    assert_int_equal(sl_cap_reader_info(rd)->corrupt, 2);
    sl_cap_reader_destroy(rd);
}

static void test_mosquitto(void **state)
{
    static const char in[] = "sensors/dev-1/t {\"seq\":1}\nsensors/dev-2/t hello world\nempty/payload\n\n"
                             " no-topic\nsensors/dev-1/t {\"seq\":2}";
    sl_cap_reader_t *rd = open_bytes(in, sizeof in - 1);
    assert_int_equal(sl_cap_reader_info(rd)->format, SL_CAP_FMT_MOSQUITTO);
    sl_cap_rec_t r;
    assert_int_equal(sl_cap_reader_next(rd, &r), 0);
    assert_memory_equal(r.topic, "sensors/dev-1/t", r.topic_len);
    assert_memory_equal(r.payload, "{\"seq\":1}", r.payload_len);
    assert_int_equal(sl_cap_reader_next(rd, &r), 0);
    assert_int_equal(r.payload_len, 11);
    assert_int_equal(sl_cap_reader_next(rd, &r), 0);
    assert_int_equal(r.topic_len, 13);
    assert_int_equal(r.payload_len, 0);
    assert_int_equal(sl_cap_reader_next(rd, &r), SL_EBADMSG);
    assert_int_equal(sl_cap_reader_next(rd, &r), 0);
    assert_int_equal(r.index, 4);
    assert_int_equal(sl_cap_reader_next(rd, &r), SL_EOF);
    assert_int_equal(sl_cap_reader_rewind(rd), 0);
    assert_int_equal(sl_cap_reader_next(rd, &r), 0);
    assert_int_equal(r.index, 0);
    sl_cap_reader_destroy(rd);
}

/* The sample files in tests/capture/ (the fuzzer's seeds too). */
static void test_samples(void **state)
{
    static const struct {
        const char *file;
        sl_cap_format_t fmt;
        bool gzip;
        uint64_t records, corrupt;
    } s[] = {
        {"sensors.cap", SL_CAP_FMT_CAPTURE, false, 20, 0},
        {"sensors.cap.gz", SL_CAP_FMT_CAPTURE, true, 20, 0},
        {"sample.ndjson", SL_CAP_FMT_NDJSON, false, 4, 1},
        {"sample.mosq", SL_CAP_FMT_MOSQUITTO, false, 5, 0},
    };
    const char *src = getenv("SLUICE_SRC");
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/tests/capture/%s", src ? src : ".", s[i].file);
        sl_cap_reader_t *rd;
        if (sl_cap_reader_open(path, &rd) != 0)
            fail_msg("cannot open %s", path);
        sl_cap_rec_t r;
        int rc;
        while ((rc = sl_cap_reader_next(rd, &r)) == 0 || rc == SL_EBADMSG)
            ;
        const sl_cap_info_t *in = sl_cap_reader_info(rd);
        if (rc != SL_EOF || in->format != s[i].fmt || in->gzip != s[i].gzip || in->records != s[i].records ||
            in->corrupt != s[i].corrupt)
            fail_msg("%s: rc %d, format %s, gzip %d, %llu records, %llu corrupt", s[i].file, rc,
                     sl_cap_format_name(in->format), in->gzip, (unsigned long long)in->records,
                     (unsigned long long)in->corrupt);
        sl_cap_reader_destroy(rd);
    }
}

/* Inputs the fuzzer once crashed on (tests/fuzz/run_capture_fuzz.sh): each must read to the end. */
static void test_fuzz_regressions(void **state)
{
    const char *src = getenv("SLUICE_SRC");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/capture/fuzz-regressions", src ? src : ".");
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        sl_cap_reader_t *rd;
        if (sl_cap_reader_open(path, &rd) != 0)
            continue;
        sl_cap_rec_t r;
        int rc;
        for (int pass = 0; pass < 2; pass++) {
            while ((rc = sl_cap_reader_next(rd, &r)) == 0 || rc == SL_EBADMSG)
                ;
            assert_true(rc == SL_EOF || rc == SL_EIO);
            if (sl_cap_reader_rewind(rd) != 0)
                break;
        }
        sl_cap_reader_destroy(rd);
        n++;
    }
    closedir(d);
    assert_true(n > 0);
}

/* A record without properties or payload (NULL pointers, zero lengths) reads back intact: zlib's crc32()
 * restarts at 0 on a NULL buffer, which made such records corrupt. */
static void test_null_parts(void **state)
{
    tc_t *t = *state;
    sl_cap_writer_t *w;
    sl_cap_wopts_t o = {0};
    assert_int_equal(sl_cap_writer_open(t->path, &o, &w), 0);
    sl_cap_rec_t r = {
        .ts_ns = 5, .qos = 1, .topic = "a/b", .topic_len = 3, .payload = (const uint8_t *)"{}", .payload_len = 2};
    assert_int_equal(sl_cap_writer_put(w, &r), 0);
    r.payload = NULL;
    r.payload_len = 0;
    assert_int_equal(sl_cap_writer_put(w, &r), 0);
    assert_int_equal(sl_cap_writer_close(w), 0);
    sl_cap_reader_t *rd;
    assert_int_equal(sl_cap_reader_open(t->path, &rd), 0);
    sl_cap_rec_t got;
    assert_int_equal(sl_cap_reader_next(rd, &got), 0);
    assert_int_equal(got.payload_len, 2);
    assert_int_equal(got.props_len, 0);
    assert_int_equal(sl_cap_reader_next(rd, &got), 0);
    assert_int_equal(got.payload_len, 0);
    assert_int_equal(sl_cap_reader_next(rd, &got), SL_EOF);
    assert_int_equal(sl_cap_reader_info(rd)->corrupt, 0);
    sl_cap_reader_destroy(rd);
}

static void test_writer_refuses(void **state)
{
    tc_t *t = *state;
    sl_cap_writer_t *w;
    sl_cap_wopts_t o = {0};
    assert_int_equal(sl_cap_writer_open(t->path, &o, &w), 0);
    uint8_t bad_props[3] = {1, 0, 0};
    sl_cap_rec_t r = {.topic = "t", .topic_len = 1, .props = bad_props, .props_len = 3};
    assert_int_equal(sl_cap_writer_put(w, &r), SL_EMSGSIZE);
    r.props_len = 0;
    r.qos = 3;
    assert_int_equal(sl_cap_writer_put(w, &r), SL_EINVAL);
    r.qos = 0;
    r.topic_len = 0;
    assert_int_equal(sl_cap_writer_put(w, &r), SL_EINVAL);
    assert_int_equal(sl_cap_writer_close(w), 0);
    assert_int_equal(sl_cap_writer_close(NULL), 0);
    sl_cap_reader_destroy(NULL);
}

/*
 * Appending after a crash: the records flushed before it are kept, whatever the crash left after the
 * last flush (a record cut short, a gzip member cut short) is cut off at the append, and every record
 * of both writers reads back with nothing reported corrupt. Every cut length of the unflushed tail.
 */
static void append_after_crash(tc_t *t, int gzip)
{
    sl_cap_wopts_t o = {.gzip_level = gzip, .desc = "append", .append = true};
    sl_cap_writer_t *w;
    sl_cap_rec_t r;
    /* A reference file: records 0-1 flushed, then records 2-4 in a second unit (never flushed). */
    unlink(t->path);
    assert_int_equal(sl_cap_writer_open(t->path, &o, &w), 0);
    for (int i = 0; i < 2; i++)
        fill_rec(t, i, &r), assert_int_equal(sl_cap_writer_put(w, &r), 0);
    assert_int_equal(sl_cap_writer_flush(w, true), 0);
    size_t flushed;
    free(slurp(t->path, &flushed));
    uint64_t end[NREC] = {0}; /* plain: where each record ends in the file */
    for (int i = 2; i < NREC; i++) {
        fill_rec(t, i, &r), assert_int_equal(sl_cap_writer_put(w, &r), 0);
        end[i] = sl_cap_writer_bytes(w);
    }
    assert_int_equal(sl_cap_writer_close(w), 0);
    size_t full;
    uint8_t *whole = slurp(t->path, &full);
    assert_true(full > flushed + 8);
    for (size_t keep = flushed; keep < full; keep += 1 + (full - flushed) / 40) {
        FILE *f = fopen(t->path, "wb"); /* the crash: what reached the file of the second unit */
        assert_int_equal(fwrite(whole, 1, keep, f), keep);
        fclose(f);
        /* gzip: the unfinished member goes; plain: the record cut short goes, complete ones stay (they
         * come again from the successor: duplicates, as after any crash before an acknowledgement). */
        size_t good = flushed;
        int dup = 0;
        for (int i = 2; !gzip && i < NREC && end[i] <= keep; i++)
            good = end[i], dup++;
        assert_int_equal(sl_cap_writer_open(t->path, &o, &w), 0);
        assert_int_equal(sl_cap_writer_cut(w), keep - good);
        for (int i = 2; i < NREC; i++) /* the successor writes what was not acknowledged */
            fill_rec(t, i, &r), assert_int_equal(sl_cap_writer_put(w, &r), 0);
        assert_int_equal(sl_cap_writer_close(w), 0);
        sl_cap_reader_t *rd;
        assert_int_equal(sl_cap_reader_open(t->path, &rd), 0);
        int n = 0, rc;
        while ((rc = sl_cap_reader_next(rd, &r)) == 0) {
            int want = n < 2 + dup ? n : n - dup; /* 0, 1, the duplicates, then 2-4 */
            assert_true(n < NREC + dup);
            assert_int_equal(r.payload_len, strlen(t->payload[want]));
            assert_memory_equal(r.payload, t->payload[want], r.payload_len);
            n++;
        }
        assert_int_equal(rc, SL_EOF);
        assert_int_equal(n, NREC + dup);
        assert_int_equal(sl_cap_reader_info(rd)->corrupt, 0);
        sl_cap_reader_destroy(rd);
    }
    free(whole);
    /* The other kind of file is refused, not mixed into it. */
    o.gzip_level = gzip ? 0 : 6;
    assert_int_equal(sl_cap_writer_open(t->path, &o, &w), SL_EINVAL);
}

static void test_append_after_crash(void **state) { append_after_crash(*state, 0); }
static void test_append_after_crash_gzip(void **state) { append_after_crash(*state, 6); }

/* The sequence check: gaps, duplicates in any order, several devices, the expected total, binary payloads. */
static void test_seq_check(void **state)
{
    (void)state;
    sl_cap_seq_t *s;
    assert_int_equal(sl_cap_seq_new(&s), 0);
    char topic[32], payload[64];
    sl_cap_rec_t r = {.topic = topic, .payload = (const uint8_t *)payload};
    /* 3000 devices (the device table grows), seq 0-9 each except device 7's 5, device 8's 3 twice, out of order. */
    for (int seq = 9; seq >= 0; seq--)
        for (int d = 0; d < 3000; d++) {
            if (d == 7 && seq == 5)
                continue;
            r.topic_len = (uint32_t)snprintf(topic, sizeof topic, "fleet/dev-%d/telemetry", d);
            r.payload_len = (uint32_t)snprintf(payload, sizeof payload, "{\"device\":%d,\"seq\": %d}", d, seq);
            assert_int_equal(sl_cap_seq_add(s, &r), 0);
            if (d == 8 && seq == 3)
                assert_int_equal(sl_cap_seq_add(s, &r), 0);
        }
    uint8_t bin[64] = {0xB1, 0x0B};
    bin[6] = 10; /* a `sluice gen` binary payload: device 0's seq 10 */
    r = (sl_cap_rec_t){.topic = "fleet/dev-0/telemetry", .topic_len = 21, .payload = bin, .payload_len = 64};
    assert_int_equal(sl_cap_seq_add(s, &r), 0);
    r.payload = (const uint8_t *)"{\"temp\":21.5}";
    r.payload_len = 13;
    assert_int_equal(sl_cap_seq_add(s, &r), SL_EBADMSG);
    r.payload = (const uint8_t *)"{\"seq\":999999999999}"; /* past the bitmap's bound: refused, counted */
    r.payload_len = 20;
    assert_int_equal(sl_cap_seq_add(s, &r), SL_EBADMSG);
    sl_cap_seq_totals_t t;
    sl_cap_seq_totals(s, 0, &t);
    assert_int_equal(t.records, 30000 - 1 + 1 + 3);
    assert_int_equal(t.devices, 3000);
    assert_int_equal(t.distinct, 30000);
    assert_int_equal(t.duplicates, 1);
    assert_int_equal(t.unparseable, 2);
    assert_int_equal(t.gaps, 1);
    assert_int_equal(t.lost, 1);
    sl_cap_seq_totals(s, 30001, &t); /* device 0's 10 is there, device 7's 5 is not */
    assert_int_equal(t.lost, 1);
    assert_int_equal(t.extra, 0);
    sl_cap_seq_totals(s, 30100, &t); /* 99 more were expected than the gaps explain */
    assert_int_equal(t.lost, 100);
    sl_cap_seq_totals(s, 29000, &t);
    assert_int_equal(t.extra, 1000);
    sl_cap_seq_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_every_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_every_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gzip_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_refused, setup, teardown),
        cmocka_unit_test(test_ndjson),
        cmocka_unit_test(test_mosquitto),
        cmocka_unit_test(test_samples),
        cmocka_unit_test(test_fuzz_regressions),
        cmocka_unit_test_setup_teardown(test_null_parts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_after_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_after_crash_gzip, setup, teardown),
        cmocka_unit_test(test_seq_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
