/*
 * Channel ring, in one process: framing, wrap-around, full/empty edges, demand limits, commit and
 * redelivery, corruption detection, end of stream.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backpressure/backpressure.h"

static int setup(void **state)
{
    sl_chan_t *ch;
    if (sl_chan_create("test", 4096, &ch) != 0)
        return -1;
    sl_chan_producer_attach(ch);
    sl_chan_consumer_attach(ch);
    *state = ch;
    return 0;
}

static int teardown(void **state)
{
    sl_chan_destroy(*state);
    return 0;
}

/* Publishes one record whose payload is len bytes of a pattern derived from seq. */
static int put(sl_chan_t *ch, uint64_t seq, size_t len)
{
    sl_rec_t *r;
    int rc = sl_chan_reserve(ch, sl_rec_body_len(0, 0, 0, len), &r);
    if (rc != 0)
        return rc;
    r->payload_len = (uint32_t)len;
    r->ingest_ns = seq;
    uint8_t *p = (uint8_t *)sl_rec_payload(r);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seq * 31 + i);
    sl_chan_push(ch);
    return 0;
}

static void check(const sl_rec_t *r, uint64_t seq, size_t len)
{
    assert_int_equal(r->ingest_ns, seq);
    assert_int_equal(r->payload_len, len);
    const uint8_t *p = sl_rec_payload(r);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(p[i], (uint8_t)(seq * 31 + i));
}

static void test_capacity_rounding(void **state)
{
    sl_chan_t *ch = *state;
    assert_int_equal(sl_chan_capacity(ch), 4096);
    assert_int_equal(sl_chan_max_record(ch), 2048);
    sl_chan_t *big;
    assert_int_equal(sl_chan_create("big", 5000, &big), 0);
    assert_int_equal(sl_chan_capacity(big), 8192);
    sl_chan_destroy(big);
    sl_chan_destroy(NULL);
}

/* Every record size from empty to the largest, many times round the ring, each checked byte by byte. */
static void test_wrap_every_size(void **state)
{
    sl_chan_t *ch = *state;
    sl_chan_ask(ch, UINT64_MAX / 2);
    size_t max_payload = sl_chan_max_record(ch) - sizeof(sl_rec_t);
    uint64_t seq = 0;
    for (int round = 0; round < 3; round++) {
        for (size_t len = 0; len <= max_payload; len++, seq++) {
            assert_int_equal(put(ch, seq, len), 0);
            assert_int_equal(sl_chan_publish(ch), 1);
            const sl_rec_t *r;
            assert_int_equal(sl_chan_next(ch, &r), 0);
            check(r, seq, len);
            assert_int_equal(sl_chan_next(ch, &r), SL_EAGAIN);
            sl_chan_commit(ch, sl_chan_read_pos(ch), sl_chan_read_events(ch));
        }
    }
    sl_chan_stat_t st;
    sl_chan_stat(ch, &st);
    assert_true(st.head > 3 * sl_chan_capacity(ch)); /* it really wrapped, many times */
    assert_int_equal(st.sent, seq);
    assert_int_equal(st.commit_events, seq);
    assert_int_equal(put(ch, seq, max_payload + 1), SL_EMSGSIZE);
}

/* sl_chan_publish_due publishes once a sixteenth of the ring (256 of 4096 bytes) waits unpublished, and
 * not before: a long pass shows its first records early, a short one still publishes at its end. */
static void test_publish_due(void **state)
{
    sl_chan_t *ch = *state;
    const sl_rec_t *r;
    sl_chan_ask(ch, 1000);
    assert_int_equal(put(ch, 0, 96), 0); /* 128 bytes pushed */
    assert_int_equal(sl_chan_publish_due(ch), 0);
    assert_int_equal(sl_chan_next(ch, &r), SL_EAGAIN);
    assert_int_equal(put(ch, 1, 88), 0); /* 248 */
    assert_int_equal(sl_chan_publish_due(ch), 0);
    assert_int_equal(put(ch, 2, 0), 0); /* 280: past 256 */
    assert_int_equal(sl_chan_publish_due(ch), 3);
    for (uint64_t seq = 0; seq < 3; seq++) {
        assert_int_equal(sl_chan_next(ch, &r), 0);
        check(r, seq, seq == 0 ? 96 : seq == 1 ? 88 : 0);
    }
    assert_int_equal(sl_chan_publish_due(ch), 0); /* nothing new */
    assert_int_equal(put(ch, 3, 8), 0);
    assert_int_equal(sl_chan_publish_due(ch), 0);
    assert_int_equal(sl_chan_publish(ch), 1); /* the end of a pass publishes the rest */
}

/* Fill to the brim: the producer is refused exactly when the bytes would pass capacity, and one commit
 * makes room again. Nothing is visible before publish. */
static void test_full_empty_edges(void **state)
{
    sl_chan_t *ch = *state;
    const sl_rec_t *r;
    assert_int_equal(sl_chan_next(ch, &r), SL_EAGAIN);
    sl_chan_ask(ch, 1000);
    int n = 0;
    while (put(ch, (uint64_t)n, 96) == 0) /* 32 + 96 = 128 bytes: exactly 32 fit in 4096 */
        n++;
    assert_int_equal(n, 32);
    assert_int_equal(sl_chan_next(ch, &r), SL_EAGAIN); /* pushed, not published */
    assert_true(sl_chan_blocked(ch, 128));
    assert_int_equal(sl_chan_publish(ch), 32);
    assert_int_equal(sl_chan_next(ch, &r), 0);
    check(r, 0, 96);
    assert_int_equal(put(ch, 99, 96), SL_EAGAIN); /* taken is not freed: only commit frees */
    sl_chan_commit(ch, sl_chan_read_pos(ch), sl_chan_read_events(ch));
    assert_false(sl_chan_blocked(ch, 128));
    assert_int_equal(put(ch, 32, 96), 0);
    assert_int_equal(put(ch, 33, 96), SL_EAGAIN);
    sl_chan_publish(ch);
    for (uint64_t i = 1; i <= 32; i++) {
        assert_int_equal(sl_chan_next(ch, &r), 0);
        check(r, i, 96);
    }
    assert_int_equal(sl_chan_next(ch, &r), SL_EAGAIN);
}

/* Forwarding whole runs: records taken from one ring are appended to another as runs that never cross
 * the end of either ring (at the end of the second, a record goes through reserve, which pads), and the
 * consumer of the second ring reads every record intact and in order, many times round both rings. */
static size_t run_len(uint64_t seq) { return (size_t)((seq * 37) % 300); }

static void test_append_runs(void **state)
{
    sl_chan_t *src = *state, *dst;
    assert_int_equal(sl_chan_create("dst", 4096, &dst), 0);
    sl_chan_producer_attach(dst);
    sl_chan_consumer_attach(dst);
    uint64_t grant;
    assert_int_equal(sl_chan_run_room(dst, &grant), 4096);
    assert_int_equal(grant, 0); /* nothing asked yet */
    sl_chan_ask(dst, 3);
    sl_chan_run_room(dst, &grant);
    assert_int_equal(grant, 3);
    sl_chan_ask(src, UINT64_MAX / 2);
    sl_chan_ask(dst, UINT64_MAX / 2);
    uint64_t seq = 0, got = 0, runs = 0, singles = 0;
    for (int round = 0; round < 300; round++) {
        for (int n = 0; n < 7; n++, seq++)
            assert_int_equal(put(src, seq, run_len(seq)), 0);
        sl_chan_publish(src);
        const sl_rec_t *r;
        const uint8_t *first = NULL;
        uint64_t bytes = 0, events = 0, room = sl_chan_run_room(dst, &grant);
        assert_true(room <= 4096 && grant > 1000);
        while (sl_chan_next(src, &r) == 0) {
            uint64_t sz = SL_ALIGN_UP((uint64_t)r->len, SL_REC_ALIGN);
            if (first != NULL && ((const uint8_t *)r != first + bytes || bytes + sz > room)) {
                sl_chan_append_run(dst, first, bytes, events);
                runs++;
                first = NULL;
                bytes = events = 0;
                room = sl_chan_run_room(dst, &grant);
            }
            if (first == NULL && sz > room) {
                sl_rec_t *w;
                assert_int_equal(sl_chan_reserve(dst, r->len, &w), 0);
                memcpy(w, r, r->len);
                sl_chan_push(dst);
                singles++;
                room = sl_chan_run_room(dst, &grant);
                continue;
            }
            if (first == NULL)
                first = (const uint8_t *)r;
            bytes += sz;
            events++;
        }
        if (events) {
            sl_chan_append_run(dst, first, bytes, events);
            runs++;
        }
        sl_chan_publish(dst);
        while (sl_chan_next(dst, &r) == 0) {
            check(r, got, run_len(got));
            got++;
        }
        sl_chan_commit(dst, sl_chan_read_pos(dst), sl_chan_read_events(dst));
        sl_chan_commit(src, sl_chan_read_pos(src), sl_chan_read_events(src));
    }
    assert_int_equal(got, seq);
    assert_true(runs > 300 && singles > 10); /* both paths taken, many times */
    sl_chan_stat_t st;
    sl_chan_stat(dst, &st);
    assert_true(st.head > 50 * sl_chan_capacity(dst));
    sl_chan_destroy(dst);
}

/* A producer can never publish more events than were asked, whatever room the ring has. */
static void test_demand_limits_producer(void **state)
{
    sl_chan_t *ch = *state;
    assert_int_equal(sl_chan_grant(ch, true), 0);
    assert_int_equal(put(ch, 0, 8), SL_EAGAIN);
    sl_chan_ask(ch, 3);
    assert_int_equal(sl_chan_grant(ch, true), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(put(ch, (uint64_t)i, 8), 0);
    assert_int_equal(put(ch, 3, 8), SL_EAGAIN);
    assert_int_equal(sl_chan_grant(ch, true), 0);
    sl_chan_ask(ch, 2); /* asking less than before changes nothing: demand is cumulative */
    assert_int_equal(sl_chan_asked(ch), 3);
    assert_int_equal(put(ch, 3, 8), SL_EAGAIN);
    sl_chan_ask(ch, 5);
    assert_int_equal(put(ch, 3, 8), 0);
    assert_int_equal(put(ch, 4, 8), 0);
    assert_int_equal(put(ch, 5, 8), SL_EAGAIN);
    assert_int_equal(sl_chan_publish(ch), 5);
}

/* Taken and not committed is delivered again to a re-attached consumer, from commit on. */
/* A commit rings a sleeping producer only for the room it asked for: a producer that sleeps for demand is
 * not woken by every commit (a room wish used to stay set for ever), and one that waits for room is woken
 * once a quarter of the ring is free, not before. The sleep is simulated by the bell's sleeping word; the
 * bell counts the wake-ups it makes. */
static void test_commit_rings_for_room_only(void **state)
{
    sl_chan_t *ch = *state;
    sl_bell_t *pb = sl_chan_producer_bell(ch);
    sl_chan_ask(ch, 1000);
    for (uint64_t i = 0; i < 8; i++)
        assert_int_equal(put(ch, i, 96), 0);
    sl_chan_publish(ch);
    const sl_rec_t *r;
    uint32_t rings = atomic_load(&pb->rings);
    for (int i = 0; i < 8; i++) { /* the producer sleeps for demand; each commit frees a record */
        assert_int_equal(sl_chan_next(ch, &r), 0);
        atomic_store(&pb->sleeping, 1);
        sl_chan_commit(ch, sl_chan_read_pos(ch), sl_chan_read_events(ch));
    }
    /* The channel starts with a wish of 0 (a recovered producer may wait): the first commit may ring. */
    assert_true(atomic_load(&pb->rings) - rings <= 1);
    atomic_store(&pb->sleeping, 0);
    int n = 0; /* fill to the brim: the producer now wants a quarter of the ring free */
    while (put(ch, 100 + (uint64_t)n, 96) == 0)
        n++;
    assert_int_equal(n, 32);
    sl_chan_publish(ch);
    assert_true(sl_chan_blocked(ch, 128)); /* as a producer checks before it sleeps: the wish, published */
    rings = atomic_load(&pb->rings);
    for (int i = 0; i < 32; i++) {
        assert_int_equal(sl_chan_next(ch, &r), 0);
        atomic_store(&pb->sleeping, 1);
        sl_chan_commit(ch, sl_chan_read_pos(ch), sl_chan_read_events(ch));
        /* 8 records of 128 bytes are a quarter of 4096: rung at the 8th commit, then never again */
        assert_int_equal(atomic_load(&pb->rings) - rings, i < 7 ? 0u : 1u);
    }
    atomic_store(&pb->sleeping, 0);
}

static void test_redelivery_from_commit(void **state)
{
    sl_chan_t *ch = *state;
    sl_chan_ask(ch, 100);
    for (uint64_t i = 0; i < 10; i++)
        assert_int_equal(put(ch, i, 40), 0);
    sl_chan_publish(ch);
    const sl_rec_t *r;
    uint64_t pos4 = 0, ev4 = 0;
    for (uint64_t i = 0; i < 10; i++) {
        assert_int_equal(sl_chan_next(ch, &r), 0);
        check(r, i, 40);
        if (i == 3) {
            pos4 = sl_chan_read_pos(ch);
            ev4 = sl_chan_read_events(ch);
        }
    }
    sl_chan_commit(ch, pos4, ev4);
    sl_chan_commit(ch, pos4 - 8, ev4 - 1); /* backwards: ignored */
    assert_int_equal(sl_chan_consumer_attach(ch), 6);
    for (uint64_t i = 4; i < 10; i++) {
        assert_int_equal(sl_chan_next(ch, &r), 0);
        check(r, i, 40);
    }
    assert_int_equal(sl_chan_next(ch, &r), SL_EAGAIN);
}

/* A record whose parts do not add up to its length is reported, not followed. */
static void test_corrupt_framing_detected(void **state)
{
    sl_chan_t *ch = *state;
    sl_chan_ask(ch, 100);
    assert_int_equal(put(ch, 0, 40), 0);
    sl_rec_t *r;
    assert_int_equal(sl_chan_reserve(ch, sl_rec_body_len(0, 0, 0, 40), &r), 0);
    r->payload_len = 40;
    r->topic_len = 9; /* the parts now claim more than len */
    sl_chan_push(ch);
    assert_int_equal(put(ch, 2, 40), 0);
    sl_chan_publish(ch);
    const sl_rec_t *got;
    assert_int_equal(sl_chan_next(ch, &got), 0);
    check(got, 0, 40);
    assert_int_equal(sl_chan_next(ch, &got), SL_EBADMSG);
    assert_int_equal(sl_chan_next(ch, &got), SL_EBADMSG); /* still refused: never trusted */
    assert_int_equal(sl_chan_skip_corrupt(ch), 2 * 72);
    assert_int_equal(sl_chan_next(ch, &got), SL_EAGAIN);
    /* A length past the largest record is caught as well. */
    assert_int_equal(sl_chan_reserve(ch, sl_rec_body_len(0, 0, 0, 8), &r), 0);
    r->payload_len = 8;
    sl_chan_push(ch);
    r->len = 4000;
    sl_chan_publish(ch);
    assert_int_equal(sl_chan_next(ch, &got), SL_EBADMSG);
}

static void test_close_is_eof_after_drain(void **state)
{
    sl_chan_t *ch = *state;
    sl_chan_ask(ch, 10);
    assert_int_equal(put(ch, 0, 16), 0);
    sl_chan_close(ch); /* publishes what was pushed */
    const sl_rec_t *r;
    assert_true(sl_chan_readable(ch));
    assert_int_equal(sl_chan_next(ch, &r), 0);
    check(r, 0, 16);
    assert_int_equal(sl_chan_next(ch, &r), SL_EOF);
}

static void test_attributes(void **state)
{
    sl_chan_t *ch = *state;
    sl_chan_ask(ch, 10);
    uint8_t attrs[] = {4, 0, 3, 0, 's', 'i', 't', 'e', 'a', 'b', 'c', 2, 0, 1, 0, 'i', 'd', 'x'};
    sl_rec_t *r;
    assert_int_equal(sl_chan_reserve(ch, sl_rec_body_len(0, 0, sizeof attrs, 0), &r), 0);
    r->attr_len = sizeof attrs;
    memcpy((uint8_t *)sl_rec_attrs(r), attrs, sizeof attrs);
    sl_chan_push(ch);
    sl_chan_publish(ch);
    const sl_rec_t *got;
    assert_int_equal(sl_chan_next(ch, &got), 0);
    const uint8_t *v;
    size_t vl;
    assert_int_equal(sl_rec_attr_get(got, "id", 2, &v, &vl), 0);
    assert_int_equal(vl, 1);
    assert_memory_equal(v, "x", 1);
    assert_int_equal(sl_rec_attr_get(got, "site", 4, &v, &vl), 0);
    assert_memory_equal(v, "abc", 3);
    assert_int_equal(sl_rec_attr_get(got, "nope", 4, &v, &vl), SL_ENOENT);
}

/* Pages of the channel's file (memfd or channel file) in memory, counted through a mapping of our own. */
static size_t resident_pages(const sl_chan_t *ch, size_t len)
{
    long page = sysconf(_SC_PAGESIZE);
    void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, sl_chan_fd(ch), 0);
    assert_true(p != MAP_FAILED);
    size_t n = (len + (size_t)page - 1) / (size_t)page, in = 0;
    unsigned char *vec = malloc(n);
    assert_non_null(vec);
    assert_int_equal(mincore(p, len, vec), 0);
    for (size_t i = 0; i < n; i++)
        in += vec[i] & 1;
    free(vec);
    munmap(p, len);
    return in;
}

/* A channel in memory has its whole ring in memory once an end attaches (no page faults on the first lap);
 * a channel file gets no disk blocks it was not written (populating its mapping for writing would allocate
 * them all: its page cache is no measure, readahead fills that with its holes). */
static void test_attach_populates_memory_rings(void **state)
{
    (void)state;
    long page = sysconf(_SC_PAGESIZE);
    size_t cap = 1u << 20, pages = cap / (size_t)page;
    sl_chan_t *ch;
    assert_int_equal(sl_chan_create("pop", cap, &ch), 0);
    assert_true(resident_pages(ch, cap) < pages / 2); /* created: the control block only */
    sl_chan_producer_attach(ch);
    assert_true(resident_pages(ch, cap) >= pages);
    sl_chan_destroy(ch);

    char dir[] = "/tmp/sl-test-chan-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/c.chan", dir);
    bool recovered;
    assert_int_equal(sl_chan_open(path, "file", cap, &recovered, &ch), 0);
    sl_chan_producer_attach(ch);
    sl_chan_consumer_attach(ch);
    struct stat st;
    assert_int_equal(fstat(sl_chan_fd(ch), &st), 0);
    assert_true((uint64_t)st.st_blocks * 512 < cap / 2);
    sl_chan_destroy(ch);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_capacity_rounding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrap_every_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_empty_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_demand_limits_producer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_rings_for_room_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redelivery_from_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_framing_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_is_eof_after_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attributes, setup, teardown),
        cmocka_unit_test(test_attach_populates_memory_rings),
    };
    return cmocka_run_group_tests_name("chan", tests, NULL, NULL);
}
