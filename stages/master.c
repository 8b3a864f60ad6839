/*
 * The master process: forks one worker per stage instance, reaps and restarts them, runs the draining
 * shutdown, and prints the live summary.
 *
 * Invariants (PostgreSQL's postmaster): the master never reads or writes payloads and never runs stage
 * code; it touches the channels' control blocks only (cursor reads for statistics, the closed flag for a
 * producer that is gone for good). Signal handlers only write the signal number to a self-pipe.
 *
 * What to do when a worker exits is the supervision tree's decision (supervisor.c); this file is the
 * process loop around it: fork, reap, signals, the shutdown deadline and the summary line.
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

int sl__master_spawn(sl_master_t *m, sl_inst_t *inst)
{
    sl_runtime_t *rt = m->rt;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        sl_log(SL_LOG_ERROR, "master", -errno, "fork() for %s failed", inst->name);
        return -errno;
    }
    if (pid == 0) {
        close(sl__sigpipe[0]);
        close(sl__sigpipe[1]);
        sl__http_stop(&m->http); /* the master's sockets are not the worker's */
        _exit(sl__worker_main(rt, inst));
    }
    inst->pid = pid;
    inst->started_ns = sl_now_ns();
    atomic_store(&inst->stats->pid, pid);
    sl_log(SL_LOG_DEBUG, "master", 0, "%s: started as pid %d", inst->name, (int)pid);
    return 0;
}

void sl__master_shutdown(sl_master_t *m, const char *why, bool failure)
{
    sl_runtime_t *rt = m->rt;
    if (failure && !m->failed) {
        m->failed = true;
        snprintf(m->why, sizeof m->why, "%s", why);
    }
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

static void sl__reap(sl_master_t *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < m->rt->n_inst; i++) {
            if (m->rt->inst[i].pid == pid) {
                sl__sup_on_exit(m, &m->rt->inst[i], status);
                break;
            }
        }
    }
}

/* Every instance is done or failed for good: nothing can run any more. */
static bool sl__all_ended(const sl_runtime_t *rt)
{
    for (size_t i = 0; i < rt->n_inst; i++)
        if (rt->inst[i].state != SL_INST_DONE && rt->inst[i].state != SL_INST_FAILED)
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

/* metrics.latency: " lat p50 Xus p99 Yus p999 Zus" over the node's instances; returns the length. */
static size_t sl__summary_latency(const sl_runtime_t *rt, size_t node, char *out, size_t cap)
{
    uint64_t h[SL_LAT_BUCKETS] = {0};
    for (size_t i = rt->node_first[node]; i < rt->node_first[node + 1]; i++)
        for (unsigned b = 0; b < SL_LAT_BUCKETS; b++)
            h[b] += rt->inst[i].stats->lat[b];
    int len =
        snprintf(out, cap, " lat p50 %lluus p99 %lluus p999 %lluus", (unsigned long long)sl_lat_quantile_us(h, 0.5),
                 (unsigned long long)sl_lat_quantile_us(h, 0.99), (unsigned long long)sl_lat_quantile_us(h, 0.999));
    return len > 0 ? SL_MIN((size_t)len, cap - 1) : 0;
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
        sl__human(q, sizeof q, (double)t.queued);
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
        if (t.quarantined)
            len +=
                (size_t)snprintf(line + len, sizeof line - len, " quarantined %llu", (unsigned long long)t.quarantined);
        if (final && rt->cfg->metrics_latency && node->role == SL_ROLE_SINK)
            len += sl__summary_latency(rt, n, line + len, sizeof line - len);
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
                sl__master_shutdown(m, sigs[i] == SIGTERM ? "SIGTERM" : "SIGINT", false);
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
        if (inst->state != SL_INST_RUNNING && inst->state != SL_INST_STOPPING)
            continue;
        sl_log(SL_LOG_ERROR, "master", 0, "%s: still running at the shutdown deadline; SIGKILL", inst->name);
        kill(inst->pid, SIGKILL);
    }
    if (!m->failed) {
        m->failed = true;
        snprintf(m->why, sizeof m->why, "the shutdown deadline passed with stages still running");
    }
    int status;
    while (waitpid(-1, &status, 0) > 0) {
    }
    for (size_t i = 0; i < rt->n_inst; i++)
        if (rt->inst[i].state != SL_INST_DONE)
            rt->inst[i].state = SL_INST_FAILED; /* never restarted after the deadline */
}

int sl_runtime_run(sl_runtime_t *rt)
{
    sl_master_t m = {.rt = rt};
    m.last_counts = calloc(rt->cfg->n_nodes, sizeof *m.last_counts);
    if (m.last_counts == NULL || sl__sup_init(&m) != 0 || pipe2(sl__sigpipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        free(m.last_counts);
        sl__sup_free(&m);
        return SL_EXIT_FATAL;
    }
    rt->master_pid = getpid();
    sl__master_signals(true);
    m.last_summary_ns = sl_now_ns();
    m.http.listen_fd = -1; /* and no clients: a zero fd would be closed by every worker (metrics off) */
    for (int i = 0; i < SL_HTTP_CLIENTS; i++)
        m.http.client[i].fd = -1;
    if (rt->cfg->metrics_enabled)
        sl__http_start(&m.http, rt->cfg->metrics_listen);
    sl__sup_start_all(&m);
    uint64_t interval = rt->cfg->summary_interval_ns;
    while (!sl__all_ended(rt)) {
        uint64_t now = sl_now_ns();
        uint64_t wait = 200 * SL_NS_PER_MS;
        if (interval)
            wait = SL_MIN(wait, m.last_summary_ns + interval > now ? m.last_summary_ns + interval - now : 0);
        struct pollfd pfd[2 + SL_HTTP_CLIENTS] = {{.fd = sl__sigpipe[0], .events = POLLIN}};
        size_t npfd = 1 + sl__http_pollfds(&m.http, pfd + 1);
        /* Rounded up: rounded down, the last millisecond before each summary was a busy loop of poll(0),
         * accept4 and wait4 (measured: 9% of a core for the master of an idle pipeline at 10 ms summaries). */
        poll(pfd, npfd, (int)((wait + SL_NS_PER_MS - 1) / SL_NS_PER_MS));
        sl__master_drain_pipe(&m);
        sl__http_serve(&m, &m.http);
        sl__reap(&m);
        now = sl_now_ns();
        if (interval && now >= m.last_summary_ns + interval)
            sl__summary(&m, false);
        sl__sup_tick(&m, now);
        if (m.stopping && now >= m.deadline_ns && !sl__all_ended(rt))
            sl__kill_remaining(&m);
    }
    sl__summary(&m, true);
    sl__http_stop(&m.http);
    sl__master_signals(false);
    close(sl__sigpipe[0]);
    close(sl__sigpipe[1]);
    free(m.last_counts);
    sl__sup_free(&m);
    if (!m.failed)
        sl__runtime_forget_channels(rt);
    if (m.failed) {
        sl_log(SL_LOG_ERROR, "master", 0, "pipeline stopped: %s", m.why);
        return 1;
    }
    sl_log(SL_LOG_INFO, "master", 0, "pipeline drained; every stage finished");
    return 0;
}
