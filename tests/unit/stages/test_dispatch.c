/*
 * Dispatchers: distribution by demand, broadcast at the slowest consumer's pace, partition order per key,
 * the stash when a consumer has no demand, and fan-out to several downstream nodes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stages/stages_int.h"

#define NCH 3

typedef struct fixture_s {
    sl_chan_t *ch[NCH];
    sl_out_group_t group;
    sl_inst_t inst;
    sl_stash_t stash;
} fixture_t;

static int setup_kind(void **state, sl_dispatcher_t kind)
{
    fixture_t *f = calloc(1, sizeof *f);
    for (int i = 0; i < NCH; i++) {
        char name[16];
        snprintf(name, sizeof name, "c%d", i);
        if (sl_chan_create(name, 1 << 16, &f->ch[i]) != 0)
            return -1;
        sl_chan_producer_attach(f->ch[i]);
        sl_chan_consumer_attach(f->ch[i]);
    }
    f->group.kind = kind;
    f->group.n = NCH;
    f->group.chans = f->ch;
    f->group.by_key = true;
    f->inst.out = &f->group;
    f->inst.n_out = 1;
    if (sl__stash_init(&f->stash, 64 * 1024) != 0)
        return -1;
    *state = f;
    return 0;
}

static int setup_demand(void **state) { return setup_kind(state, SL_DISP_DEMAND); }
static int setup_broadcast(void **state) { return setup_kind(state, SL_DISP_BROADCAST); }
static int setup_partition(void **state) { return setup_kind(state, SL_DISP_PARTITION); }

static int teardown(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < NCH; i++)
        sl_chan_destroy(f->ch[i]);
    sl__stash_free(&f->stash);
    free(f);
    return 0;
}

static int emit(fixture_t *f, const char *key, uint64_t seq)
{
    sl_emit_t em = {.key = key, .key_len = (uint32_t)strlen(key), .payload = &seq, .payload_len = sizeof seq};
    return sl__out_emit(&f->inst, &f->stash, &em, NULL, false);
}

/* Drains channel i; returns how many events it held; stores their seqs in out (if given). */
static size_t drain(fixture_t *f, int i, uint64_t *out, char (*keys)[8])
{
    sl__out_publish(&f->inst);
    size_t n = 0;
    const sl_rec_t *r;
    while (sl_chan_next(f->ch[i], &r) == 0) {
        if (out)
            memcpy(&out[n], sl_rec_payload(r), sizeof(uint64_t));
        if (keys)
            snprintf(keys[n], 8, "%.*s", (int)r->key_len, (const char *)sl_rec_key(r));
        n++;
    }
    sl_chan_commit(f->ch[i], sl_chan_read_pos(f->ch[i]), sl_chan_read_events(f->ch[i]));
    return n;
}

/* The consumer with the largest outstanding demand is served first, up to its demand, then the next. */
static void test_demand_largest_first(void **state)
{
    fixture_t *f = *state;
    sl_chan_ask(f->ch[0], 5);
    sl_chan_ask(f->ch[1], 20);
    sl_chan_ask(f->ch[2], 10);
    assert_int_equal(sl__out_demand(&f->inst), 35);
    uint64_t seqs[64];
    for (uint64_t s = 0; s < 20; s++)
        assert_int_equal(emit(f, "k", s), 0);
    assert_int_equal(drain(f, 1, seqs, NULL), 20);
    for (uint64_t s = 0; s < 20; s++)
        assert_int_equal(seqs[s], s);
    assert_int_equal(drain(f, 0, NULL, NULL), 0);
    for (uint64_t s = 20; s < 30; s++)
        assert_int_equal(emit(f, "k", s), 0);
    assert_int_equal(drain(f, 2, seqs, NULL), 10);
    assert_int_equal(seqs[0], 20);
    assert_int_equal(emit(f, "k", 30), 0);
    assert_int_equal(drain(f, 0, seqs, NULL), 1);
    assert_int_equal(sl__out_demand(&f->inst), 4);
    assert_true(sl__stash_empty(&f->stash));
}

/* No demand anywhere: events wait in the stash, in order, and go out when demand arrives. */
static void test_demand_stash_when_no_demand(void **state)
{
    fixture_t *f = *state;
    sl_chan_ask(f->ch[0], 2);
    for (uint64_t s = 0; s < 5; s++)
        assert_int_equal(emit(f, "k", s), 0);
    assert_int_equal(f->stash.events, 3);
    assert_false(sl__out_ready(&f->inst, &f->stash));
    assert_int_equal(sl__out_flush_stash(&f->inst, &f->stash), SL_EAGAIN);
    sl_chan_ask(f->ch[2], 10);
    assert_true(sl__out_ready(&f->inst, &f->stash));
    assert_int_equal(sl__out_flush_stash(&f->inst, &f->stash), 0);
    uint64_t seqs[8];
    assert_int_equal(drain(f, 0, seqs, NULL), 2);
    assert_int_equal(drain(f, 2, seqs, NULL), 3);
    assert_int_equal(seqs[0], 2);
    assert_int_equal(seqs[2], 4);
}

/* Broadcast: every consumer gets every event; the group's demand is the slowest consumer's. */
static void test_broadcast_slowest_pace(void **state)
{
    fixture_t *f = *state;
    sl_chan_ask(f->ch[0], 100);
    sl_chan_ask(f->ch[1], 4);
    sl_chan_ask(f->ch[2], 50);
    assert_int_equal(sl__out_demand(&f->inst), 4);
    for (uint64_t s = 0; s < 4; s++)
        assert_int_equal(emit(f, "k", s), 0);
    assert_true(sl__stash_empty(&f->stash));
    assert_int_equal(sl__out_demand(&f->inst), 0);
    uint64_t seqs[8];
    for (int i = 0; i < NCH; i++) {
        assert_int_equal(drain(f, i, seqs, NULL), 4);
        assert_int_equal(seqs[3], 3);
    }
    /* One more: the slow consumer's copy waits in the stash, and so does every copy behind it (the stash
     * is one FIFO); the consumer before it gets its copy now. */
    assert_int_equal(emit(f, "k", 4), 0);
    assert_int_equal(f->stash.events, 2);
    assert_int_equal(drain(f, 0, NULL, NULL), 1);
    assert_int_equal(drain(f, 1, NULL, NULL), 0);
    sl_chan_ask(f->ch[1], 5);
    assert_int_equal(sl__out_flush_stash(&f->inst, &f->stash), 0);
    assert_int_equal(drain(f, 1, seqs, NULL), 1);
    assert_int_equal(seqs[0], 4);
    assert_int_equal(drain(f, 2, seqs, NULL), 1);
    assert_int_equal(seqs[0], 4);
}

/* Partition: one key always lands on one consumer, in order. */
static void test_partition_order_per_key(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < NCH; i++)
        sl_chan_ask(f->ch[i], 1000);
    const char *keys[] = {"dev-a", "dev-b", "dev-c", "dev-d", "dev-e", "dev-f", "dev-g"};
    uint64_t next[7] = {0};
    for (int round = 0; round < 100; round++)
        for (int k = 0; k < 7; k++)
            assert_int_equal(emit(f, keys[k], (uint64_t)k * 1000 + next[k]++), 0);
    int owner[7];
    for (int k = 0; k < 7; k++)
        owner[k] = -1;
    size_t total = 0;
    for (int i = 0; i < NCH; i++) {
        uint64_t seqs[800];
        char got[800][8];
        size_t n = drain(f, i, seqs, got);
        total += n;
        uint64_t expect[7] = {0};
        for (size_t e = 0; e < n; e++) {
            int k = (int)(seqs[e] / 1000);
            assert_string_equal(got[e], keys[k]);
            assert_true(owner[k] == -1 || owner[k] == i); /* one key, one consumer */
            owner[k] = i;
            assert_int_equal(seqs[e] % 1000, expect[k]++); /* in order */
        }
    }
    assert_int_equal(total, 700);
    int used = 0;
    for (int i = 0; i < NCH; i++)
        for (int k = 0; k < 7; k++)
            if (owner[k] == i) {
                used++;
                break;
            }
    assert_true(used >= 2); /* the keys really are spread */
}

/* Partition on an attribute: events without it go to one partition. */
static void test_partition_by_attribute(void **state)
{
    fixture_t *f = *state;
    f->group.by_key = false;
    f->group.attr = "site";
    f->group.attr_len = 4;
    for (int i = 0; i < NCH; i++)
        sl_chan_ask(f->ch[i], 1000);
    uint8_t attrs[] = {4, 0, 2, 0, 's', 'i', 't', 'e', 'n', 'y'};
    for (uint64_t s = 0; s < 10; s++) {
        sl_emit_t em = {
            .key = "x", .key_len = 1, .attrs = attrs, .attr_len = sizeof attrs, .payload = &s, .payload_len = sizeof s};
        assert_int_equal(sl__out_emit(&f->inst, &f->stash, &em, NULL, false), 0);
    }
    int target = (int)(sl_hash("ny", 2) % NCH);
    assert_int_equal(drain(f, target, NULL, NULL), 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_demand_largest_first, setup_demand, teardown),
        cmocka_unit_test_setup_teardown(test_demand_stash_when_no_demand, setup_demand, teardown),
        cmocka_unit_test_setup_teardown(test_broadcast_slowest_pace, setup_broadcast, teardown),
        cmocka_unit_test_setup_teardown(test_partition_order_per_key, setup_partition, teardown),
        cmocka_unit_test_setup_teardown(test_partition_by_attribute, setup_partition, teardown),
    };
    return cmocka_run_group_tests_name("dispatch", tests, NULL, NULL);
}
