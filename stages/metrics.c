/*
 * The master's HTTP endpoint: GET /metrics (Prometheus text exposition of every instance's counters and
 * of its channels' queue and demand) and GET /healthz (200 while no instance failed, else 503).
 *
 * Invariants: it runs inside the master's poll loop, never blocks (non-blocking sockets; a client that
 * has not sent its request line within a few polls, or sends more than a small buffer, is dropped), and
 * reads only the shared statistics and channel cursors, never payloads. At most SL_HTTP_CLIENTS clients
 * are served at once; more wait in the listen backlog. A port that cannot be bound is a warning, not a
 * reason to stop ingesting.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stages/stages_int.h"

#define SL_HTTP_REQ_MAX 2048

static int sl__http_listen(const char *hostport)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (colon == NULL || (size_t)(colon - hostport) >= sizeof host)
        return SL_EINVAL;
    size_t hl = (size_t)(colon - hostport);
    memcpy(host, hostport, hl);
    host[hl] = 0;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') { /* [::1] */
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai) != 0 || ai == NULL)
        return SL_EINVAL;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    int rc = fd < 0 ? -errno : 0;
    if (rc == 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (rc == 0 && (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 16) != 0))
        rc = -errno;
    freeaddrinfo(ai);
    if (rc != 0) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    return fd;
}

int sl__http_start(sl_http_t *h, const char *hostport)
{
    memset(h, 0, sizeof *h);
    h->listen_fd = -1;
    for (int i = 0; i < SL_HTTP_CLIENTS; i++)
        h->client[i].fd = -1;
    int fd = sl__http_listen(hostport);
    if (fd < 0) {
        sl_log(SL_LOG_WARN, "metrics", fd, "cannot listen on %s; /metrics and /healthz are off", hostport);
        return fd;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char addr[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, addr, sizeof addr);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        } else {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, addr, sizeof addr);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    h->listen_fd = fd;
    sl_log(SL_LOG_INFO, "metrics", 0, "serving http://%s%s%s:%d/metrics and /healthz",
           ss.ss_family == AF_INET6 ? "[" : "", addr, ss.ss_family == AF_INET6 ? "]" : "", port);
    return 0;
}

void sl__http_stop(sl_http_t *h)
{
    for (int i = 0; i < SL_HTTP_CLIENTS; i++)
        if (h->client[i].fd >= 0)
            close(h->client[i].fd);
    if (h->listen_fd >= 0)
        close(h->listen_fd);
    h->listen_fd = -1;
}

/* Appends to a growing text buffer (the master's: allocations here are per request, not per event). */
typedef struct sl_buf_s {
    char *p;
    size_t len, cap;
} sl_buf_t;

static void sl__buf_printf(sl_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sl__buf_printf(sl_buf_t *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = b->p ? vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap) : -1;
        va_end(ap);
        if (n >= 0 && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 16384;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return;
        b->p = p;
        b->cap = cap;
    }
}

/* One counter or gauge family over every instance. */
static void sl__metric(sl_buf_t *b, const sl_master_t *m, const char *name, const char *type, const char *help,
                       uint64_t (*value)(const sl_runtime_t *rt, const sl_inst_t *inst))
{
    const sl_runtime_t *rt = m->rt;
    sl__buf_printf(b, "# HELP sluice_%s %s\n# TYPE sluice_%s %s\n", name, help, name, type);
    for (size_t i = 0; i < rt->n_inst; i++) {
        const sl_inst_t *inst = &rt->inst[i];
        sl__buf_printf(b, "sluice_%s{pipeline=\"%s\",node=\"%s\",instance=\"%u\"} %llu\n", name, rt->cfg->pipeline_name,
                       rt->cfg->nodes[inst->node].name, inst->index, (unsigned long long)value(rt, inst));
    }
}

#define SL__STAT(field)                                                          \
    static uint64_t sl__m_##field(const sl_runtime_t *rt, const sl_inst_t *inst) \
    {                                                                            \
        (void)rt;                                                                \
        return atomic_load_explicit(&inst->stats->field, memory_order_relaxed);  \
    }
SL__STAT(events_in)
SL__STAT(events_out)
SL__STAT(bytes_in)
SL__STAT(bytes_out)
SL__STAT(failed)
SL__STAT(redelivered)
SL__STAT(quarantined)
SL__STAT(restarts)
#undef SL__STAT

static uint64_t sl__m_queued(const sl_runtime_t *rt, const sl_inst_t *inst)
{
    uint64_t q = 0;
    for (uint32_t c = 0; c < inst->n_in; c++) {
        sl_chan_stat_t st;
        sl_chan_stat(inst->in[c], &st);
        q += st.sent - st.commit_events;
    }
    return q;
}

static uint64_t sl__m_demand(const sl_runtime_t *rt, const sl_inst_t *inst)
{
    uint64_t d = 0;
    for (uint32_t c = 0; c < inst->n_in; c++) {
        sl_chan_stat_t st;
        sl_chan_stat(inst->in[c], &st);
        d += st.asked > st.sent ? st.asked - st.sent : 0;
    }
    return d;
}

static uint64_t sl__m_up(const sl_runtime_t *rt, const sl_inst_t *inst) { return inst->state == SL_INST_RUNNING; }

/* The family of stage metric `name` (first seen in instance first, entry e): HELP and TYPE once, then a
 * sample for every instance that registered it. Names and help come from the workers' shared slots: the
 * help is written escaped (backslash, newline) as the exposition format wants. */
static void sl__stage_family(sl_buf_t *b, const sl_runtime_t *rt, size_t first, const struct sl_stage_metric_s *e)
{
    int nl = (int)strnlen(e->name, sizeof e->name); /* shared memory: never trust a terminator */
    sl__buf_printf(b, "# HELP sluice_%.*s ", nl, e->name);
    for (const char *h = e->help; *h && h < e->help + sizeof e->help; h++)
        sl__buf_printf(b, "%s", *h == '\\' ? "\\\\" : *h == '\n' ? "\\n" : (char[2]){*h, 0});
    sl__buf_printf(b, "\n# TYPE sluice_%.*s %s\n", nl, e->name, e->kind == SL_METRIC_GAUGE ? "gauge" : "counter");
    for (size_t i = first; i < rt->n_inst; i++) {
        const sl_inst_t *inst = &rt->inst[i];
        uint32_t n = SL_MIN(atomic_load_explicit(&inst->stats->n_metrics, memory_order_acquire), SL_STAGE_METRICS);
        for (uint32_t k = 0; k < n; k++) {
            const struct sl_stage_metric_s *x = &inst->stats->metric[k];
            if (strncmp(x->name, e->name, sizeof x->name) != 0)
                continue;
            sl__buf_printf(b, "sluice_%.*s{pipeline=\"%s\",node=\"%s\",instance=\"%u\"} %llu\n", nl, e->name,
                           rt->cfg->pipeline_name, rt->cfg->nodes[inst->node].name, inst->index,
                           (unsigned long long)atomic_load_explicit(&x->value, memory_order_relaxed));
            break;
        }
    }
}

/* Every metric of the stages' own (sl_ctx_metric), one family per name, in the order first seen. */
static void sl__stage_metrics(const sl_master_t *m, sl_buf_t *b)
{
    const sl_runtime_t *rt = m->rt;
    for (size_t i = 0; i < rt->n_inst; i++) {
        const sl_stats_slot_t *s = rt->inst[i].stats;
        uint32_t n = SL_MIN(atomic_load_explicit(&s->n_metrics, memory_order_acquire), SL_STAGE_METRICS);
        for (uint32_t k = 0; k < n; k++) {
            bool seen = false; /* by an earlier instance (another node of the same type, or a sibling) */
            for (size_t j = 0; j < i && !seen; j++) {
                const sl_stats_slot_t *o = rt->inst[j].stats;
                uint32_t on = SL_MIN(atomic_load_explicit(&o->n_metrics, memory_order_acquire), SL_STAGE_METRICS);
                for (uint32_t q = 0; q < on && !seen; q++)
                    seen = strncmp(o->metric[q].name, s->metric[k].name, sizeof o->metric[q].name) == 0;
            }
            if (!seen)
                sl__stage_family(b, rt, i, &s->metric[k]);
        }
    }
}

static void sl__metrics_text(const sl_master_t *m, sl_buf_t *b)
{
    sl__metric(b, m, "events_in_total", "counter", "Events taken by the instance (redeliveries included).",
               sl__m_events_in);
    sl__metric(b, m, "events_out_total", "counter", "Events emitted by the instance.", sl__m_events_out);
    sl__metric(b, m, "bytes_in_total", "counter", "Record bytes taken.", sl__m_bytes_in);
    sl__metric(b, m, "bytes_out_total", "counter", "Record bytes emitted.", sl__m_bytes_out);
    sl__metric(b, m, "failed_total", "counter", "Events that failed (dead-lettered or counted).", sl__m_failed);
    sl__metric(b, m, "redelivered_total", "counter", "Events delivered again after a restart.", sl__m_redelivered);
    sl__metric(b, m, "quarantined_total", "counter", "Poison events sent to dead-letter.", sl__m_quarantined);
    sl__metric(b, m, "restarts_total", "counter", "Restarts of the instance.", sl__m_restarts);
    sl__metric(b, m, "queued_events", "gauge", "Events published to its inputs and not yet acknowledged.",
               sl__m_queued);
    sl__metric(b, m, "demand_events", "gauge", "Events asked on its inputs and not yet sent.", sl__m_demand);
    sl__metric(b, m, "up", "gauge", "1 while the instance runs.", sl__m_up);
    sl__stage_metrics(m, b);
}

static bool sl__healthy(const sl_master_t *m)
{
    for (size_t i = 0; i < m->rt->n_inst; i++)
        if (m->rt->inst[i].state == SL_INST_FAILED)
            return false;
    return !m->failed;
}

static void sl__http_respond(sl_master_t *m, int fd, const char *req)
{
    sl_buf_t body = {0};
    const char *status = "200 OK", *type = "text/plain; version=0.0.4";
    if (strncmp(req, "GET /metrics", 12) == 0 && (req[12] == ' ' || req[12] == '?')) {
        sl__metrics_text(m, &body);
    } else if (strncmp(req, "GET /healthz", 12) == 0 && (req[12] == ' ' || req[12] == '?')) {
        bool ok = sl__healthy(m);
        status = ok ? "200 OK" : "503 Service Unavailable";
        type = "text/plain";
        sl__buf_printf(&body, "%s\n", ok ? "ok" : m->why[0] ? m->why : "an instance failed");
    } else {
        status = "404 Not Found";
        type = "text/plain";
        sl__buf_printf(&body, "try /metrics or /healthz\n");
    }
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
                      type, body.len);
    /* Small answers into an idle socket: the kernel buffer takes them; what it refuses is dropped. */
    ssize_t w = send(fd, head, (size_t)hn, MSG_NOSIGNAL);
    for (size_t off = 0; w >= 0 && off < body.len; off += (size_t)w)
        if ((w = send(fd, body.p + off, body.len - off, MSG_NOSIGNAL)) <= 0)
            break;
    free(body.p);
}

size_t sl__http_pollfds(sl_http_t *h, struct pollfd *pfd)
{
    size_t n = 0;
    if (h->listen_fd < 0)
        return 0;
    pfd[n++] = (struct pollfd){.fd = h->listen_fd, .events = POLLIN};
    for (int i = 0; i < SL_HTTP_CLIENTS; i++)
        if (h->client[i].fd >= 0)
            pfd[n++] = (struct pollfd){.fd = h->client[i].fd, .events = POLLIN};
    return n;
}

static void sl__http_read(sl_master_t *m, sl_http_client_t *c)
{
    ssize_t r = recv(c->fd, c->req + c->len, sizeof c->req - 1 - c->len, 0);
    if (r > 0) {
        c->len += (size_t)r;
        c->req[c->len] = 0;
    }
    bool line = strstr(c->req, "\r\n") != NULL || strchr(c->req, '\n') != NULL;
    if (line)
        sl__http_respond(m, c->fd, c->req);
    if (line || r == 0 || (r < 0 && errno != EAGAIN) || c->len >= sizeof c->req - 1 || ++c->polls > 50) {
        close(c->fd);
        c->fd = -1;
    }
}

void sl__http_serve(sl_master_t *m, sl_http_t *h)
{
    if (h->listen_fd < 0)
        return;
    for (int i = 0; i < SL_HTTP_CLIENTS; i++)
        if (h->client[i].fd >= 0)
            sl__http_read(m, &h->client[i]);
    for (int i = 0; i < SL_HTTP_CLIENTS; i++) {
        if (h->client[i].fd >= 0)
            continue;
        int fd = accept4(h->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        h->client[i] = (sl_http_client_t){.fd = fd};
        sl__http_read(m, &h->client[i]);
    }
}

uint64_t sl_lat_quantile_us(const uint64_t *h, double q)
{
    uint64_t total = 0, seen = 0;
    for (unsigned b = 0; b < SL_LAT_BUCKETS; b++)
        total += h[b];
    if (total == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)total + 0.5);
    want = want ? want : 1;
    for (unsigned b = 0; b < SL_LAT_BUCKETS; b++) {
        seen += h[b];
        if (seen < want)
            continue;
        if (b < 8)
            return b;
        unsigned e = b / 8 + 2, sub = b % 8;
        return ((uint64_t)(8 + sub + 1) << (e - 3)) - 1;
    }
    return UINT64_MAX;
}
