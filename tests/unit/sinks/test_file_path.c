/*
 * The file sink's pure parts: path templates against hostile attribute values (nothing may climb out of
 * the base directory or add a component), the JSON check that decides what is inlined in NDJSON, the
 * NDJSON envelope, and the recovery cut of gzip, zstd and plain files left half-written.
 */
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
#include <zstd.h>

#include "sinks/file/file_int.h"

/* Builds a record with one attribute in buf and the event view of it. */
static void make_event(uint8_t *buf, size_t cap, const char *topic, const char *key, const char *aname,
                       const uint8_t *aval, size_t alen, const char *payload, sl_event_t *ev)
{
    memset(buf, 0, cap);
    sl_rec_t *r = (sl_rec_t *)buf;
    size_t tl = strlen(topic), kl = strlen(key), nl = strlen(aname), pl = strlen(payload);
    r->topic_len = (uint16_t)tl;
    r->key_len = (uint32_t)kl;
    r->attr_len = (uint32_t)(4 + nl + alen);
    r->payload_len = (uint32_t)pl;
    r->len = (uint32_t)sl_rec_body_len(tl, kl, r->attr_len, pl);
    assert_true(r->len <= cap);
    r->ingest_ns = UINT64_C(1700000000) * SL_NS_PER_S; /* 2023-11-14 22:13:20 UTC */
    uint8_t *p = (uint8_t *)(r + 1);
    memcpy(p, topic, tl), p += tl;
    memcpy(p, key, kl), p += kl;
    uint16_t n16 = (uint16_t)nl, v16 = (uint16_t)alen;
    memcpy(p, &n16, 2), memcpy(p + 2, &v16, 2), p += 4;
    memcpy(p, aname, nl), p += nl;
    memcpy(p, aval, alen), p += alen;
    memcpy(p, payload, pl);
    sl_event_from_rec(ev, r);
}

static int expand(const char *tpl_text, const uint8_t *val, size_t vlen, char *out, size_t cap)
{
    static uint8_t buf[16384];
    sl_event_t ev;
    make_event(buf, sizeof buf, "t/x", "dev-1", "site", val, vlen, "{}", &ev);
    sl_tpl_t tpl;
    const char *why;
    assert_int_equal(sl__tpl_compile(&tpl, tpl_text, &why), 0);
    int n = sl__tpl_expand(&tpl, &ev, out, cap);
    sl__tpl_free(&tpl);
    return n;
}

static void test_template_plain(void **state)
{
    char out[SL_FILE_PATH_MAX];
    int n = expand("archive/{site}/%Y/%m/%d/%H-{key}.ndjson.gz", (const uint8_t *)"plant-7", 7, out, sizeof out);
    assert_true(n > 0);
    assert_string_equal(out, "archive/plant-7/2023/11/14/22-dev-1.ndjson.gz");
    n = expand("{topic}/{missing}.log", (const uint8_t *)"x", 1, out, sizeof out);
    assert_string_equal(out, "t_x/_.log"); /* '/' in a value is not a component; a missing value is "_" */
}

static void test_template_hostile_values(void **state)
{
    static const struct {
        const char *v;
        size_t len;
    } hostile[] = {
        {"..", 2},        {".", 1},           {"", 0},       {"../../etc/passwd", 16}, {"/etc/passwd", 11},
        {"a/../../b", 9}, {"..\\..\\win", 9}, {"ev\0il", 5}, {"new\nline", 8},         {"\x1b[31m", 5},
        {"....", 4},      {"\x7f", 1},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(hostile); i++) {
        char out[SL_FILE_PATH_MAX];
        int n = expand("{site}", (const uint8_t *)hostile[i].v, hostile[i].len, out, sizeof out);
        assert_true(n > 0);
        assert_int_equal(strlen(out), (size_t)n); /* no NUL inside */
        assert_null(strchr(out, '/'));
        assert_true(sl__path_is_safe(out, (size_t)n));
        for (int k = 0; k < n; k++)
            assert_true((unsigned char)out[k] >= 0x20 && out[k] != 0x7f && out[k] != '\\');
        /* Inside a longer template too: still exactly one component per literal slash. */
        n = expand("a/{site}/b", (const uint8_t *)hostile[i].v, hostile[i].len, out, sizeof out);
        assert_true(n > 0 && sl__path_is_safe(out, (size_t)n));
        assert_int_equal(out[0], 'a');
        assert_non_null(strchr(out + 2, '/'));
        assert_null(strchr(strchr(out + 2, '/') + 1, '/'));
    }
    /* A very long value is cut, and a template that would overflow is refused, not truncated. */
    uint8_t big[5000];
    memset(big, 'x', sizeof big);
    char out[SL_FILE_PATH_MAX];
    assert_int_equal(expand("{site}", big, sizeof big, out, sizeof out), SL_FILE_VALUE_MAX);
    char small[16];
    assert_int_equal(expand("{site}", big, 100, small, sizeof small), SL_ERANGE);
}

static void test_template_bad(void **state)
{
    static const char *const bad[] = {"/abs/x", "../x", "a/../x", "a//b", "./a", "x/{site",
                                      "a/{}",   "x%",   "%n",     "a/",   ""};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        const char *why = NULL;
        assert_int_not_equal(sl_sink_file_path_check(bad[i], &why), 0);
        assert_non_null(why);
    }
    const char *why;
    assert_int_equal(sl_sink_file_path_check("%Y/{site}/x.ndjson", &why), 0);
    assert_false(sl__path_is_safe("a/./b", 5));
    assert_false(sl__path_is_safe("a/..", 4));
    assert_false(sl__path_is_safe("a\0b", 3));
    assert_true(sl__path_is_safe("a/...b/c", 8));
}

static void test_json_valid(void **state)
{
    static const char *const good[] = {
        "{}", "[]", "{\"a\":1,\"b\":[true,false,null,-1.5e3,\"x\\u00e9\"]}", "0", " \"s\" ", "{\"a\":{\"b\":{}}}",
        /* long runs (validated eight bytes at a time) with escapes inside */
        "\"abcdefghijklmnop\\\"qrstuvwxyz0123456789\\n\"", "[\"abcdefgh\",\"\x7f\xc3\xa9\"]"};
    static const char *const bad[] = {"",
                                      "{",
                                      "{\"a\":}",
                                      "[1,]",
                                      "{\"a\" 1}",
                                      "01x",
                                      "{\"a\":1}\n",
                                      "{\n\"a\":1}",
                                      "tru",
                                      "\"\\x\"",
                                      "{} {}",
                                      "[\"\x01\"]",
                                      "-",
                                      "1.",
                                      "\"abcdefghi\x01jklmnopq\"",
                                      "\"abcdefghijklmnopqrs",
                                      "\"abcdefgh\\"};
    for (size_t i = 0; i < SL_ARRAY_LEN(good); i++)
        assert_true(sl__json_valid((const uint8_t *)good[i], strlen(good[i])));
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++)
        assert_false(sl__json_valid((const uint8_t *)bad[i], strlen(bad[i])));
    char deep[200];
    memset(deep, '[', 100), memset(deep + 100, ']', 100);
    assert_false(sl__json_valid((const uint8_t *)deep, 200)); /* depth is bounded */
}

static void test_ndjson_envelope(void **state)
{
    uint8_t buf[4096];
    sl_event_t ev;
    sl_buf_t b = {0};
    make_event(buf, sizeof buf, "fleet/\"q\"", "k\n", "site", (const uint8_t *)"p\x01", 3, "{\"seq\":5}", &ev);
    assert_int_equal(sl__file_encode(&b, SL_FILE_FMT_NDJSON, &ev), 0);
    const char *want = "{\"topic\":\"fleet/\\\"q\\\"\",\"key\":\"k\\u000a\",\"qos\":0,\"received_ns\":"
                       "1700000000000000000,\"attributes\":{\"site\":\"p\\u0001\\u0000\"},\"payload\":{\"seq\":5}}\n";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.p, want, b.len);
    /* A payload that is not JSON goes in base64. */
    b.len = 0;
    make_event(buf, sizeof buf, "t", "k", "a", (const uint8_t *)"v", 1, "{bad", &ev);
    assert_int_equal(sl__file_encode(&b, SL_FILE_FMT_NDJSON, &ev), 0);
    assert_non_null(memmem(b.p, b.len, "\"payload_base64\":\"e2JhZA==\"}\n", 28));
    /* Escapes inside and at the ends of long runs; DEL is escaped too. */
    b.len = 0;
    make_event(buf, sizeof buf, "abcdefghij\"klmnopqrstuvwxyz\\",
               "\x7f"
               "0123456789",
               "a", (const uint8_t *)"v", 1, "1", &ev);
    assert_int_equal(sl__file_encode(&b, SL_FILE_FMT_NDJSON, &ev), 0);
    want = "{\"topic\":\"abcdefghij\\\"klmnopqrstuvwxyz\\\\\",\"key\":\"\\u007f0123456789\",";
    assert_memory_equal(b.p, want, strlen(want));
    sl__buf_free(&b);
}

/* Decompresses a whole zstd buffer (every frame complete, checksums checked) into out. */
static void zstd_decode_all(const uint8_t *p, size_t n, sl_buf_t *out)
{
    ZSTD_DCtx *d = ZSTD_createDCtx();
    ZSTD_inBuffer zi = {p, n, 0};
    size_t left = 0;
    out->len = 0;
    while (zi.pos < zi.size) {
        assert_int_equal(sl__buf_reserve(out, 65536), 0);
        ZSTD_outBuffer zo = {out->p + out->len, out->cap - out->len, 0};
        left = ZSTD_decompressStream(d, &zo, &zi);
        assert_false(ZSTD_isError(left));
        out->len += zo.pos;
    }
    assert_int_equal(left, 0); /* the last frame is complete */
    ZSTD_freeDCtx(d);
}

/* Three batches as the sink writes them (gzip: a member each; zstd: one frame, a flush and a batch marker
 * each; plain: lines); a file cut anywhere is cut back to whole batches. */
static void test_valid_prefix(void **state)
{
    for (int comp = SL_FILE_COMP_NONE; comp <= SL_FILE_COMP_ZSTD; comp++) {
        sl_codec_t *c = NULL;
        sl_buf_t file = {0}, unit = {0}, text_all = {0};
        size_t ends[3];
        for (int k = 0; k < 3; k++) {
            char text[256];
            int n = snprintf(text, sizeof text, "line %d of a batch\nanother line %d\n", k, k);
            if (comp == SL_FILE_COMP_NONE) {
                assert_int_equal(sl__buf_reserve(&unit, (size_t)n), 0);
                memcpy(unit.p, text, (size_t)n);
                unit.len = (size_t)n;
            } else {
                if (c == NULL)
                    assert_int_equal(sl__codec_new((sl_file_comp_t)comp, 1, &c), 0);
                assert_int_equal(sl__codec_unit(c, (const uint8_t *)text, (size_t)n, &unit), 0);
            }
            assert_int_equal(sl__buf_reserve(&file, unit.len), 0);
            memcpy(file.p + file.len, unit.p, unit.len);
            file.len += unit.len;
            ends[k] = file.len;
            assert_int_equal(sl__buf_reserve(&text_all, (size_t)n), 0);
            memcpy(text_all.p + text_all.len, text, (size_t)n);
            text_all.len += (size_t)n;
        }
        size_t open = 0;
        assert_int_equal(sl__codec_valid_prefix((sl_file_comp_t)comp, SL_FILE_FMT_NDJSON, file.p, file.len, &open),
                         ends[2]);
        /* zstd: the frame is still open (the file is not complete), it starts at 0. */
        assert_int_equal(open, comp == SL_FILE_COMP_ZSTD ? 0 : SIZE_MAX);
        /* Cut anywhere inside the last unit: recovery keeps the first two units (plain: every whole line). */
        for (size_t cut = ends[1] + 1; cut < ends[2]; cut++) {
            size_t want = ends[1];
            for (size_t k = ends[1]; comp == SL_FILE_COMP_NONE && k < cut; k++)
                want = file.p[k] == '\n' ? k + 1 : want;
            assert_int_equal(sl__codec_valid_prefix((sl_file_comp_t)comp, SL_FILE_FMT_NDJSON, file.p, cut, NULL), want);
        }
        assert_int_equal(sl__codec_valid_prefix((sl_file_comp_t)comp, SL_FILE_FMT_NDJSON, file.p, ends[0] - 1, NULL),
                         comp == SL_FILE_COMP_NONE ? ends[0] - strlen("another line 0\n") : 0);
        if (comp == SL_FILE_COMP_ZSTD) {
            /* A file cut inside the third batch, sealed as recovery does: two batches, readable by libzstd. */
            int fd = memfd_create("test-zstd", 0);
            assert_true(fd >= 0);
            assert_int_equal(write(fd, file.p, ends[2] - 1), (ssize_t)(ends[2] - 1));
            size_t good = sl__codec_valid_prefix(SL_FILE_COMP_ZSTD, SL_FILE_FMT_NDJSON, file.p, ends[2] - 1, &open);
            assert_int_equal(good, ends[1]);
            assert_int_equal(open, 0);
            assert_int_equal(ftruncate(fd, (off_t)good), 0);
            assert_int_equal(sl__zstd_seal(fd, open, good), 0);
            sl_buf_t sealed = {0}, plain = {0};
            assert_int_equal(sl__buf_reserve(&sealed, good + 3), 0);
            assert_int_equal(pread(fd, sealed.p, good + 3, 0), (ssize_t)(good + 3));
            sealed.len = good + 3;
            assert_int_equal(sl__codec_valid_prefix(SL_FILE_COMP_ZSTD, SL_FILE_FMT_NDJSON, sealed.p, sealed.len, &open),
                             sealed.len);
            assert_int_equal(open, SIZE_MAX);
            zstd_decode_all(sealed.p, sealed.len, &plain);
            size_t two = strlen("line 0 of a batch\nanother line 0\n") * 2;
            assert_int_equal(plain.len, two);
            assert_memory_equal(plain.p, text_all.p, two);
            close(fd);
            /* The end of the stream completes the frame (with its checksum); a next unit starts a new one. */
            assert_int_equal(sl__codec_end(c, &unit), 0);
            assert_int_equal(sl__buf_reserve(&file, unit.len), 0);
            memcpy(file.p + file.len, unit.p, unit.len);
            file.len += unit.len;
            assert_int_equal(sl__codec_unit(c, (const uint8_t *)"more\n", 5, &unit), 0);
            assert_int_equal(sl__codec_end(c, &sealed), 0);
            size_t first = file.len;
            assert_int_equal(sl__buf_reserve(&file, unit.len + sealed.len), 0);
            memcpy(file.p + file.len, unit.p, unit.len), file.len += unit.len;
            memcpy(file.p + file.len, sealed.p, sealed.len), file.len += sealed.len;
            assert_int_equal(sl__codec_valid_prefix(SL_FILE_COMP_ZSTD, SL_FILE_FMT_NDJSON, file.p, first, &open),
                             first);
            assert_int_equal(open, SIZE_MAX);
            zstd_decode_all(file.p, file.len, &plain);
            assert_int_equal(plain.len, text_all.len + 5);
            assert_memory_equal(plain.p, text_all.p, text_all.len);
            sl__buf_free(&sealed);
            sl__buf_free(&plain);
        }
        sl__codec_destroy(c);
        sl__buf_free(&file);
        sl__buf_free(&unit);
        sl__buf_free(&text_all);
    }
}

/* An uncompressed capture left by a crash is cut back to its header and whole records. */
static void test_capture_prefix(void **state)
{
    uint8_t buf[4096];
    sl_event_t ev;
    sl_buf_t b = {0};
    assert_int_equal(sl__file_capture_header(&b, "test"), 0);
    size_t ends[4] = {b.len};
    for (int k = 0; k < 3; k++) {
        make_event(buf, sizeof buf, "fleet/dev-1/telemetry", "dev-1", "site", (const uint8_t *)"s", 1, "{\"seq\":1}",
                   &ev);
        assert_int_equal(sl__file_encode(&b, SL_FILE_FMT_CAPTURE, &ev), 0);
        ends[k + 1] = b.len;
    }
    assert_int_equal(sl__codec_valid_prefix(SL_FILE_COMP_NONE, SL_FILE_FMT_CAPTURE, b.p, b.len, NULL), ends[3]);
    for (size_t cut = ends[2]; cut < ends[3]; cut++)
        assert_int_equal(sl__codec_valid_prefix(SL_FILE_COMP_NONE, SL_FILE_FMT_CAPTURE, b.p, cut, NULL), ends[2]);
    assert_int_equal(sl__codec_valid_prefix(SL_FILE_COMP_NONE, SL_FILE_FMT_CAPTURE, b.p, ends[0], NULL), ends[0]);
    assert_int_equal(sl__codec_valid_prefix(SL_FILE_COMP_NONE, SL_FILE_FMT_CAPTURE, b.p, ends[0] - 1, NULL), 0);
    /* An event a capture cannot hold (no topic) is refused, nothing appended. */
    size_t before = b.len;
    make_event(buf, sizeof buf, "", "k", "a", (const uint8_t *)"v", 1, "{}", &ev);
    assert_int_equal(sl__file_encode(&b, SL_FILE_FMT_CAPTURE, &ev), SL_EINVAL);
    assert_int_equal(b.len, before);
    sl__buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_template_plain),  cmocka_unit_test(test_template_hostile_values),
        cmocka_unit_test(test_template_bad),    cmocka_unit_test(test_json_valid),
        cmocka_unit_test(test_ndjson_envelope), cmocka_unit_test(test_valid_prefix),
        cmocka_unit_test(test_capture_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
