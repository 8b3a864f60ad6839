/*
 * The `chaos` stage: a pass-through that misbehaves on command, for rehearsing failure.
 *
 * Counts are per incarnation (they restart at zero when the supervisor restarts the instance):
 *  - crash_every N: raise `signal` on the N-th event after each start;
 *  - crash_on_key K: raise `signal` on every event whose key is K (a poison message);
 *  - crash_on_payload T: raise `signal` on every event whose payload contains the text T;
 *  - hang_after N: stop making progress (and stop heartbeating) after N events, until killed;
 *  - exit_after N: exit with exit_code after N events;
 *  - fail_every N: send every N-th event to the dead-letter path (reason "chaos") instead of forwarding it;
 *  - delay D: a slow stage (for rehearsing backpressure): each batch of n events is held n x D before it is
 *    forwarded. The sleeps run to an absolute deadline that advances by n x D from the later of the last
 *    deadline and now, so the average per event is D however the sleeps are rounded, and idle time is not
 *    banked as credit.
 * The event that triggers the misbehaviour is not forwarded.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stages/stages.h"

typedef struct sl_chaos_s {
    uint64_t seen;
    uint64_t crash_every, hang_after, exit_after, fail_every;
    uint64_t delay_ns, due_ns; /* per-event delay; the CLOCK_MONOTONIC deadline of the last batch */
    int sig, exit_code;
    const char *key, *text;
    size_t key_len, text_len;
} sl_chaos_t;

static int sl__chaos_signal(const char *name)
{
    static const struct {
        const char *name;
        int sig;
    } sigs[] = {{"SIGSEGV", SIGSEGV}, {"SIGABRT", SIGABRT}, {"SIGKILL", SIGKILL}, {"SIGBUS", SIGBUS}};
    for (size_t i = 0; i < SL_ARRAY_LEN(sigs); i++)
        if (strcmp(sigs[i].name, name) == 0)
            return sigs[i].sig;
    return 0;
}

static int sl__chaos_init(sl_ctx_t *ctx, void **state)
{
    const sl_conf_node_t *node = sl_ctx_node(ctx);
    sl_chaos_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return SL_ENOMEM;
    c->crash_every = (uint64_t)sl_conf_int(node, "crash_every");
    c->fail_every = (uint64_t)sl_conf_int(node, "fail_every");
    c->hang_after = (uint64_t)sl_conf_int(node, "hang_after");
    c->exit_after = (uint64_t)sl_conf_int(node, "exit_after");
    c->exit_code = (int)sl_conf_int(node, "exit_code");
    c->delay_ns = sl_conf_duration(node, "delay");
    c->sig = sl__chaos_signal(sl_conf_str(node, "signal"));
    c->key = sl_conf_str(node, "crash_on_key");
    c->key_len = strlen(c->key);
    c->text = sl_conf_str(node, "crash_on_payload");
    c->text_len = strlen(c->text);
    if (c->sig == 0) {
        free(c);
        return SL_EINVAL;
    }
    if (c->delay_ns)
        sl_log(SL_LOG_INFO, sl_ctx_name(ctx), 0, "chaos: holding each event %llu ns before forwarding it",
               (unsigned long long)c->delay_ns);
    *state = c;
    return 0;
}

static void sl__chaos_misbehave(sl_ctx_t *ctx, sl_chaos_t *c, const sl_event_t *ev)
{
    c->seen++;
    bool poison = (c->key_len && ev->key_len == c->key_len && memcmp(ev->key, c->key, c->key_len) == 0) ||
                  (c->text_len && memmem(ev->payload, ev->payload_len, c->text, c->text_len) != NULL);
    if (poison || (c->crash_every && c->seen % c->crash_every == 0)) {
        sl_log(SL_LOG_WARN, sl_ctx_name(ctx), 0, "chaos: raising %s on event %llu%s", strsignal(c->sig),
               (unsigned long long)c->seen, poison ? " (poison)" : "");
        raise(c->sig);
    }
    if (c->exit_after && c->seen == c->exit_after) {
        sl_log(SL_LOG_WARN, sl_ctx_name(ctx), 0, "chaos: exiting with %d after %llu events", c->exit_code,
               (unsigned long long)c->seen);
        _exit(c->exit_code);
    }
    if (c->hang_after && c->seen == c->hang_after) {
        sl_log(SL_LOG_WARN, sl_ctx_name(ctx), 0, "chaos: hanging after %llu events", (unsigned long long)c->seen);
        for (;;)
            pause();
    }
}

static void sl__chaos_delay(sl_chaos_t *c, size_t n)
{
    uint64_t now_ns = sl_now_ns(); /* CLOCK_MONOTONIC */
    c->due_ns = (c->due_ns > now_ns ? c->due_ns : now_ns) + c->delay_ns * n;
    struct timespec due = {(time_t)(c->due_ns / SL_NS_PER_S), (long)(c->due_ns % SL_NS_PER_S)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR)
        ;
}

static int sl__chaos_events(sl_ctx_t *ctx, void *state, const sl_event_t *evs, size_t n)
{
    if (((sl_chaos_t *)state)->delay_ns)
        sl__chaos_delay(state, n);
    for (size_t i = 0; i < n; i++) {
        sl_chaos_t *c = state;
        sl__chaos_misbehave(ctx, c, &evs[i]);
        int rc = c->fail_every && c->seen % c->fail_every == 0 ? sl_dead_letter(ctx, &evs[i], "chaos", "fail_every")
                                                               : sl_emit_event(ctx, &evs[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void sl__chaos_terminate(sl_ctx_t *ctx, void *state, int reason) { free(state); }

const sl_stage_ops_t sl_stage_chaos_ops = {
    .type = "chaos",
    .kind = SL_KIND_PRODUCER_CONSUMER,
    .init = sl__chaos_init,
    .handle_events = sl__chaos_events,
    .terminate = sl__chaos_terminate,
};
