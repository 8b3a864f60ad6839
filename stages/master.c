/*
 * The master process: forks one worker per stage instance, reaps and restarts them, runs the draining
 * shutdown, and prints the live summary.
 *
 * Invariants (PostgreSQL's postmaster): the master never reads or writes payloads and never runs stage
 * code; it touches the channels' control blocks only (cursor reads for statistics, the closed flag for a
 * producer that is gone for good). Signal handlers only write the signal number to a self-pipe.
 *
 * Exit classification (nginx/PostgreSQL): exit 0 is a finished drain; SL_EXIT_FATAL is "cannot start"
 * and is never respawned; any other exit or a signal is a crash, restarted within the node's restart
 * intensity (max_restarts in max_seconds). The full supervision tree (strategies, escalation, watchdog)
 * builds on this loop.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stages/stages_int.h"

static int sl__sigpipe[2] = {-1, -1};

static void sl__master_on_signal(int sig)
{
    int saved = errno;
    unsigned char c = (unsigned char)sig;
    ssize_t w = write(sl__sigpipe[1], &c, 1);
    (void)w;
    errno = saved;
}

typedef struct sl_master_s {
    sl_runtime_t *rt;
    bool stopping;
    bool failed;
    uint64_t deadline_ns; /* shutdown: SIGKILL what is left after this */
    uint64_t last_summary_ns;
    uint64_t *last_counts; /* per node, for rates */
    const char *why;       /* first reason for a non-zero exit */
} sl_master_t;

static int sl__spawn(sl_runtime_t *rt, sl_inst_t *inst)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        sl_log(SL_LOG_ERROR, "master", -errno, "fork() for %s failed", inst->name);
        return -errno;
    }
    if (pid == 0) {
        close(sl__sigpipe[0]);
        close(sl__sigpipe[1]);
        _exit(sl__worker_main(rt, inst));
    }
    inst->pid = pid;
    inst->state = SL_INST_RUNNING;
    inst->started_ns = sl_now_ns();
    atomic_store(&inst->stats->pid, pid);
    atomic_store(&inst->stats->state, SL_INST_RUNNING);
    sl_log(SL_LOG_DEBUG, "master", 0, "%s: started as pid %d", inst->name, (int)pid);
    return 0;
}

static void sl__begin_shutdown(sl_master_t *m, const char *why)
{
    sl_runtime_t *rt = m->rt;
    if (m->stopping)
        return;
    m->stopping = true;
    m->deadline_ns = sl_now_ns() + rt->cfg->sup.shutdown_timeout_ns;
    sl_log(SL_LOG_INFO, "master", 0, "%s: draining (sources stop, stages drain, sinks commit; deadline %.1fs)", why,
           (double)rt->cfg->sup.shutdown_timeout_ns / 1e9);
    for (size_t i = 0; i < rt->n_inst; i++) {
        sl_inst_t *inst = &rt->inst[i];
        if (inst->ops->kind != SL_KIND_PRODUCER)
            continue;
        /* A flag rather than a signal: a producer restarted during the drain sees it from its first pass. */
        atomic_store(&inst->stats->stop, 1);
        sl_bell_ring(inst->bell);
    }
}

/* An instance is gone for good: close its outputs so its consumers drain and finish. */
static void sl__give_up(sl_master_t *m, sl_inst_t *inst, const char *why)
{
    inst->state = SL_INST_FAILED;
    atomic_store(&inst->stats->state, SL_INST_FAILED);
    for (uint32_t g = 0; g < inst->n_out; g++)
        for (uint32_t c = 0; c < inst->out[g].n; c++)
            sl_chan_mark_closed(inst->out[g].chans[c]);
    if (!m->failed) {
        m->failed = true;
        m->why = why;
    }
    sl__begin_shutdown(m, why);
}

/* Records a restart; returns false when it would exceed max_restarts within max_seconds. */
static bool sl__intensity_ok(const sl_runtime_t *rt, sl_inst_t *inst)
{
    const sl_conf_sup_t *sup = &rt->cfg->nodes[inst->node].sup;
    if (sup->max_restarts == 0)
        return false;
    uint64_t now = sl_now_ns();
    uint64_t oldest = inst->restart_times[inst->restart_pos];
    if (oldest != 0 && now - oldest < sup->max_seconds_ns)
        return false;
    inst->restart_times[inst->restart_pos] = now;
    inst->restart_pos = (inst->restart_pos + 1) % sup->max_restarts;
    return true;
}

static void sl__on_exit(sl_master_t *m, sl_inst_t *inst, int status)
{
    sl_runtime_t *rt = m->rt;
    inst->pid = 0;
    atomic_store(&inst->stats->pid, 0);
    atomic_store(&inst->stats->last_status, status);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        inst->state = SL_INST_DONE;
        atomic_store(&inst->stats->state, SL_INST_DONE);
        sl_log(SL_LOG_DEBUG, "master", 0, "%s: finished", inst->name);
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == SL_EXIT_FATAL) {
        sl_log(SL_LOG_ERROR, "master", 0, "%s: cannot start (exit %d); not restarted", inst->name, SL_EXIT_FATAL);
        sl__give_up(m, inst, "a stage cannot start");
        return;
    }
    if (WIFSIGNALED(status))
        sl_log(SL_LOG_WARN, "master", 0, "%s: crashed: killed by signal %d (%s)%s", inst->name, WTERMSIG(status),
               strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
    else
        sl_log(SL_LOG_WARN, "master", 0, "%s: crashed: exit status %d", inst->name, WEXITSTATUS(status));
    if (!sl__intensity_ok(rt, inst)) {
        const sl_conf_sup_t *sup = &rt->cfg->nodes[inst->node].sup;
        sl_log(SL_LOG_ERROR, "master", 0, "%s: more than %u restarts in %.1fs; giving up", inst->name,
               sup->max_restarts, (double)sup->max_seconds_ns / 1e9);
        sl__give_up(m, inst, "restart intensity exceeded");
        return;
    }
    atomic_fetch_add(&inst->stats->restarts, 1);
    if (sl__spawn(rt, inst) != 0)
        sl__give_up(m, inst, "cannot fork a worker");
}

static void sl__reap(sl_master_t *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < m->rt->n_inst; i++) {
            if (m->rt->inst[i].pid == pid) {
                sl__on_exit(m, &m->rt->inst[i], status);
                break;
            }
        }
    }
}

static bool sl__all_ended(const sl_runtime_t *rt)
{
    for (size_t i = 0; i < rt->n_inst; i++)
        if (rt->inst[i].state == SL_INST_RUNNING)
            return false;
    return true;
}

static void sl__human(char *buf, size_t len, double v)
{
    if (v >= 1e9)
        snprintf(buf, len, "%.2fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, len, "%.2fM", v / 1e6);
    else if (v >= 1e4)
        snprintf(buf, len, "%.1fk", v / 1e3);
    else
        snprintf(buf, len, "%.0f", v);
}

/* Events queued in the instance's input channels: published and not yet acknowledged. */
static uint64_t sl__node_queue(const sl_runtime_t *rt, size_t node)
{
    uint64_t q = 0;
    for (size_t i = rt->node_first[node]; i < rt->node_first[node + 1]; i++) {
        for (uint32_t c = 0; c < rt->inst[i].n_in; c++) {
            sl_chan_stat_t st;
            sl_chan_stat(rt->inst[i].in[c], &st);
            q += st.sent - st.commit_events;
        }
    }
    return q;
}

static void sl__summary(sl_master_t *m, bool final)
{
    sl_runtime_t *rt = m->rt;
    uint64_t now = sl_now_ns();
    double dt = (double)(now - m->last_summary_ns) / 1e9;
    char line[1024];
    size_t len = 0;
    for (size_t n = 0; n < rt->cfg->n_nodes && len < sizeof line - 128; n++) {
        const sl_conf_node_t *node = &rt->cfg->nodes[n];
        sl_node_totals_t t;
        sl_runtime_node_totals(rt, n, &t);
        uint64_t count = node->role == SL_ROLE_SOURCE ? t.events_out : t.events_in;
        char a[32], r[32], q[32];
        sl__human(a, sizeof a, (double)count);
        sl__human(r, sizeof r, dt > 0 ? (double)(count - m->last_counts[n]) / dt : 0);
        sl__human(q, sizeof q, (double)sl__node_queue(rt, n));
        m->last_counts[n] = count;
        len += (size_t)snprintf(line + len, sizeof line - len, "%s%s %s %s", n ? " | " : "", node->name,
                                node->role == SL_ROLE_SOURCE ? "out" : "in", a);
        if (!final)
            len += (size_t)snprintf(line + len, sizeof line - len, " %s/s", r);
        if (node->role != SL_ROLE_SOURCE)
            len += (size_t)snprintf(line + len, sizeof line - len, " q %s", q);
        if (t.failed)
            len += (size_t)snprintf(line + len, sizeof line - len, " failed %llu", (unsigned long long)t.failed);
        if (t.redelivered)
            len += (size_t)snprintf(line + len, sizeof line - len, " dup %llu", (unsigned long long)t.redelivered);
        if (t.restarts)
            len += (size_t)snprintf(line + len, sizeof line - len, " restarts %llu", (unsigned long long)t.restarts);
    }
    m->last_summary_ns = now;
    sl_log(SL_LOG_INFO, final ? "total" : "summary", 0, "%s", line);
}

static void sl__master_signals(bool install)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = install ? sl__master_on_signal : SIG_DFL;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
}

/* Handles the signals written to the self-pipe. */
static void sl__master_drain_pipe(sl_master_t *m)
{
    unsigned char sigs[64];
    ssize_t n;
    while ((n = read(sl__sigpipe[0], sigs, sizeof sigs)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (sigs[i] != SIGTERM && sigs[i] != SIGINT)
                continue;
            if (!m->stopping) {
                sl__begin_shutdown(m, sigs[i] == SIGTERM ? "SIGTERM" : "SIGINT");
            } else if (sigs[i] == SIGINT) {
                sl_log(SL_LOG_WARN, "master", 0, "second SIGINT: asking every stage to stop now");
                m->deadline_ns = sl_now_ns();
            }
        }
    }
}

static void sl__kill_remaining(sl_master_t *m)
{
    sl_runtime_t *rt = m->rt;
    for (size_t i = 0; i < rt->n_inst; i++) {
        sl_inst_t *inst = &rt->inst[i];
        if (inst->state != SL_INST_RUNNING)
            continue;
        sl_log(SL_LOG_ERROR, "master", 0, "%s: still running at the shutdown deadline; SIGKILL", inst->name);
        kill(inst->pid, SIGKILL);
        inst->state = SL_INST_FAILED; /* reaped below; never restarted */
    }
    if (!m->failed) {
        m->failed = true;
        m->why = "shutdown deadline passed";
    }
    int status;
    while (waitpid(-1, &status, 0) > 0) {
    }
}

int sl_runtime_run(sl_runtime_t *rt)
{
    sl_master_t m = {.rt = rt};
    m.last_counts = calloc(rt->cfg->n_nodes, sizeof *m.last_counts);
    if (m.last_counts == NULL || pipe2(sl__sigpipe, O_NONBLOCK | O_CLOEXEC) != 0)
        return SL_EXIT_FATAL;
    rt->master_pid = getpid();
    sl__master_signals(true);
    m.last_summary_ns = sl_now_ns();
    /* Consumers first, so every channel has its reader when data starts to flow. */
    for (size_t i = rt->n_inst; i-- > 0;)
        if (sl__spawn(rt, &rt->inst[i]) != 0)
            sl__give_up(&m, &rt->inst[i], "cannot fork a worker");
    uint64_t interval = rt->cfg->summary_interval_ns;
    while (!sl__all_ended(rt)) {
        uint64_t now = sl_now_ns();
        uint64_t wait = 200 * SL_NS_PER_MS;
        if (interval)
            wait = SL_MIN(wait, m.last_summary_ns + interval > now ? m.last_summary_ns + interval - now : 0);
        struct pollfd pfd = {.fd = sl__sigpipe[0], .events = POLLIN};
        poll(&pfd, 1, (int)(wait / SL_NS_PER_MS));
        sl__master_drain_pipe(&m);
        sl__reap(&m);
        now = sl_now_ns();
        if (interval && now >= m.last_summary_ns + interval)
            sl__summary(&m, false);
        if (m.stopping && now >= m.deadline_ns && !sl__all_ended(rt))
            sl__kill_remaining(&m);
    }
    sl__summary(&m, true);
    sl__master_signals(false);
    close(sl__sigpipe[0]);
    close(sl__sigpipe[1]);
    free(m.last_counts);
    if (m.failed) {
        sl_log(SL_LOG_ERROR, "master", 0, "pipeline stopped: %s", m.why);
        return 1;
    }
    sl_log(SL_LOG_INFO, "master", 0, "pipeline drained; every stage finished");
    return 0;
}
