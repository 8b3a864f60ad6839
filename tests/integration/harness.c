/*
 * The integration test harness (see harness.h).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char sl__th_buf[4 << 20];

#define SL_TH_MIN(a, b) ((a) < (b) ? (a) : (b))

static uint64_t sl__th_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The polling interval of every wait: short enough to be prompt, long enough not to steal a core. */
static void sl__th_poll_pause(void)
{
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

bool sl_th_until(bool (*cond)(void *arg), void *arg, int timeout_ms)
{
    uint64_t deadline = sl__th_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (cond(arg))
            return true;
        if (sl__th_ms() >= deadline)
            return false;
        sl__th_poll_pause();
    }
}

int sl_th_init(sl_th_t *th, const char *name)
{
    memset(th, 0, sizeof *th);
    snprintf(th->dir, sizeof th->dir, "/tmp/sluice-it-%s-XXXXXX", name);
    if (mkdtemp(th->dir) == NULL)
        return -1;
    snprintf(th->cfg, sizeof th->cfg, "%s/pipeline.yaml", th->dir);
    snprintf(th->log, sizeof th->log, "%s/sluice.log", th->dir);
    return 0;
}

void sl_th_cleanup(sl_th_t *th)
{
    if (th->pid > 0) {
        kill(th->pid, SIGKILL);
        waitpid(th->pid, NULL, 0);
        th->pid = 0;
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", th->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "harness: could not remove %s\n", th->dir);
}

void sl_th_config(sl_th_t *th, const char *fmt, ...)
{
    FILE *f = fopen(th->cfg, "w");
    if (f == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

pid_t sl_th_start_argv(sl_th_t *th, const char *const *args)
{
    const char *bin = getenv("SLUICE_BIN");
    char *argv[32];
    size_t n = 0;
    argv[n++] = (char *)(bin ? bin : "build/sluice");
    while (*args && n < 31)
        argv[n++] = (char *)*args++;
    argv[n] = NULL;
    /* Emptied before the fork, not only by the child: a wait for a log line right after this call must not
     * find the previous run's (it did, in bench/mqtt.c: a backlog published before sluice had connected). */
    if (truncate(th->log, 0) != 0 && errno != ENOENT)
        perror("truncate");
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(th->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    th->pid = pid;
    return pid;
}

pid_t sl_th_start(sl_th_t *th, const char *cmd, const char *extra)
{
    const char *args[] = {cmd, "-c", th->cfg, extra, NULL};
    return sl_th_start_argv(th, args);
}

int sl_th_run_argv(sl_th_t *th, const char *const *args, int timeout_ms)
{
    sl_th_start_argv(th, args);
    if (!sl_th_wait(th, timeout_ms)) {
        kill(th->pid, SIGKILL);
        (void)sl_th_wait(th, 5000);
        return -1;
    }
    return WIFEXITED(th->status) ? WEXITSTATUS(th->status) : -1;
}

bool sl_th_wait(sl_th_t *th, int timeout_ms)
{
    uint64_t deadline = sl__th_ms() + (uint64_t)timeout_ms;
    while (th->pid > 0) {
        pid_t r = waitpid(th->pid, &th->status, WNOHANG);
        if (r == th->pid) {
            th->pid = 0;
            return true;
        }
        if (sl__th_ms() >= deadline)
            return false;
        sl__th_poll_pause();
    }
    return true;
}

const char *sl_th_log(sl_th_t *th)
{
    sl__th_buf[0] = 0;
    FILE *f = fopen(th->log, "r");
    if (f == NULL)
        return sl__th_buf;
    size_t n = fread(sl__th_buf, 1, sizeof sl__th_buf - 1, f);
    sl__th_buf[n] = 0;
    fclose(f);
    return sl__th_buf;
}

typedef struct sl__th_needle_s {
    sl_th_t *th;
    const char *needle;
} sl__th_needle_t;

static bool sl__th_has_line(void *arg)
{
    sl__th_needle_t *n = arg;
    return strstr(sl_th_log(n->th), n->needle) != NULL;
}

bool sl_th_wait_log(sl_th_t *th, const char *needle, int timeout_ms)
{
    sl__th_needle_t n = {th, needle};
    return sl_th_until(sl__th_has_line, &n, timeout_ms);
}

static bool sl__th_flowing(void *arg)
{
    sl__th_needle_t *n = arg;
    uint64_t v;
    return sl_th_log_number(n->th, "[summary]", n->needle, &v) && v > 0;
}

bool sl_th_wait_flow(sl_th_t *th, const char *after, int timeout_ms)
{
    sl__th_needle_t n = {th, after};
    return sl_th_until(sl__th_flowing, &n, timeout_ms);
}

int sl_th_log_count(sl_th_t *th, const char *needle)
{
    int n = 0;
    for (const char *p = sl_th_log(th); (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

uint64_t sl_th_log_sum(sl_th_t *th, const char *tag, const char *after)
{
    const char *log = sl_th_log(th);
    uint64_t sum = 0;
    for (const char *p = log; (p = strstr(p, tag)) != NULL; p++) {
        const char *eol = strchr(p, '\n');
        const char *v = strstr(p, after);
        if (v && (!eol || v < eol))
            sum += strtoull(v + strlen(after), NULL, 10);
    }
    return sum;
}

bool sl_th_log_number(sl_th_t *th, const char *line_tag, const char *after, uint64_t *out)
{
    const char *log = sl_th_log(th), *line = NULL;
    for (const char *p = log; (p = strstr(p, line_tag)) != NULL; p++)
        line = p;
    if (line == NULL)
        return false;
    const char *eol = strchr(line, '\n');
    const char *v = strstr(line, after);
    if (v == NULL || (eol && v > eol))
        return false;
    *out = strtoull(v + strlen(after), NULL, 10);
    return true;
}

pid_t sl_th_worker_pid(sl_th_t *th, const char *name)
{
    char needle[128];
    snprintf(needle, sizeof needle, "%s: started as pid ", name);
    const char *log = sl_th_log(th), *last = NULL;
    for (const char *p = log; (p = strstr(p, needle)) != NULL; p++)
        last = p;
    return last ? (pid_t)atoi(last + strlen(needle)) : 0;
}

size_t sl_th_children(pid_t parent, pid_t *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)parent, (int)parent);
    FILE *f = fopen(path, "r");
    size_t n = 0;
    if (f == NULL)
        return 0;
    int pid;
    while (n < cap && fscanf(f, "%d", &pid) == 1) {
        /* Workers name themselves "sl:NODE#I"; any other child (LeakSanitizer's tracer at the master's
         * exit, under ASan) is not one. */
        char comm[32] = "";
        snprintf(path, sizeof path, "/proc/%d/comm", pid);
        FILE *c = fopen(path, "r");
        if (c != NULL) {
            if (fgets(comm, sizeof comm, c) == NULL)
                comm[0] = 0;
            fclose(c);
        }
        if (strncmp(comm, "sl:", 3) == 0)
            out[n++] = pid;
    }
    fclose(f);
    return n;
}

typedef struct sl__th_kids_s {
    pid_t parent, *out;
    size_t cap, want, n;
} sl__th_kids_t;

static bool sl__th_enough_kids(void *arg)
{
    sl__th_kids_t *k = arg;
    return (k->n = sl_th_children(k->parent, k->out, k->cap)) >= k->want;
}

size_t sl_th_wait_children(pid_t parent, pid_t *out, size_t cap, size_t want, int timeout_ms)
{
    sl__th_kids_t k = {parent, out, cap, want, 0};
    sl_th_until(sl__th_enough_kids, &k, timeout_ms);
    return k.n;
}

/* ---- mosquitto and MQTT publishers --------------------------------------------------------------- */

#include <MQTTAsync.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdatomic.h>
#include <sys/socket.h>

/* GET path from 127.0.0.1:port; returns the whole response (static buffer) or NULL. */
const char *sl_th_http_get(int port, const char *path)
{
    static char resp[1 << 16];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return NULL;
    }
    size_t len = 0;
    ssize_t r;
    while (len < sizeof resp - 1 && (r = read(fd, resp + len, sizeof resp - 1 - len)) > 0)
        len += (size_t)r;
    resp[len] = 0;
    close(fd);
    return resp;
}

int sl_th_metric(int port, const char *name, const char *node, uint64_t *out)
{
    const char *buf = sl_th_http_get(port, "/metrics");
    if (buf == NULL || strstr(buf, "\r\n\r\n") == NULL)
        return -1;
    char want[128], who[128];
    snprintf(want, sizeof want, "\nsluice_%s{", name);
    snprintf(who, sizeof who, "node=\"%s\"", node ? node : "");
    uint64_t sum = 0;
    for (const char *p = buf; (p = strstr(p, want)) != NULL; p++) {
        const char *eol = strchr(p + 1, '\n'), *sp = eol ? memrchr(p + 1, ' ', (size_t)(eol - p - 1)) : NULL;
        const char *at = node ? strstr(p, who) : p;
        if (sp != NULL && at != NULL && at < eol)
            sum += strtoull(sp + 1, NULL, 10);
    }
    *out = sum;
    return 0;
}

int sl_th_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static bool sl__th_port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

int sl_th_mosq_start(sl_th_t *th, sl_th_mosq_t *mq, const char *extra_conf)
{
    if (mq->port == 0) {
        mq->port = sl_th_free_port();
        snprintf(mq->conf, sizeof mq->conf, "%s/mosquitto.conf", th->dir);
        snprintf(mq->log, sizeof mq->log, "%s/mosquitto.log", th->dir);
        snprintf(mq->data, sizeof mq->data, "%s/mosquitto-data/", th->dir);
        mkdir(mq->data, 0755);
    }
    FILE *f = fopen(mq->conf, "w");
    if (f == NULL || mq->port == 0)
        return -1;
    /* Started as root, mosquitto drops to user "mosquitto" unless told to stay who we are. */
    struct passwd *pw = getpwuid(getuid());
    fprintf(f,
            "user %s\nlistener %d 127.0.0.1\nallow_anonymous true\nlog_dest stderr\nlog_type all\n"
            "persistence_location %s\n%s\n",
            pw ? pw->pw_name : "root", mq->port, mq->data, extra_conf ? extra_conf : "");
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(mq->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execlp("mosquitto", "mosquitto", "-c", mq->conf, (char *)NULL);
        _exit(127);
    }
    mq->pid = pid;
    uint64_t deadline = sl__th_ms() + 10000;
    while (!sl__th_port_open(mq->port)) {
        if (sl__th_ms() >= deadline || waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "harness: mosquitto did not start on port %d (see %s)\n", mq->port, mq->log);
            return -1;
        }
        sl__th_poll_pause();
    }
    return 0;
}

void sl_th_mosq_stop(sl_th_mosq_t *mq)
{
    if (mq->pid <= 0)
        return;
    kill(mq->pid, SIGTERM);
    uint64_t deadline = sl__th_ms() + 5000;
    while (waitpid(mq->pid, NULL, WNOHANG) != mq->pid) {
        if (sl__th_ms() >= deadline) {
            kill(mq->pid, SIGKILL);
            waitpid(mq->pid, NULL, 0);
            break;
        }
        sl__th_poll_pause();
    }
    mq->pid = 0;
}

int sl_th_mosq_log_count(sl_th_mosq_t *mq, const char *needle)
{
    sl_th_t tmp;
    memset(&tmp, 0, sizeof tmp);
    snprintf(tmp.log, sizeof tmp.log, "%s", mq->log);
    return sl_th_log_count(&tmp, needle);
}

typedef struct sl__th_pubctx_s {
    _Atomic int connected; /* 1 ok, -1 failed */
    _Atomic long done, failed;
} sl__th_pubctx_t;

static void sl__th_pub_ok(void *c, MQTTAsync_successData *r) { atomic_fetch_add(&((sl__th_pubctx_t *)c)->done, 1); }
static void sl__th_pub_fail(void *c, MQTTAsync_failureData *r) { atomic_fetch_add(&((sl__th_pubctx_t *)c)->failed, 1); }
static void sl__th_pub_ok5(void *c, MQTTAsync_successData5 *r) { atomic_fetch_add(&((sl__th_pubctx_t *)c)->done, 1); }
static void sl__th_pub_fail5(void *c, MQTTAsync_failureData5 *r)
{
    atomic_fetch_add(&((sl__th_pubctx_t *)c)->failed, 1);
}
static void sl__th_conn_ok(void *c, MQTTAsync_successData *r) { atomic_store(&((sl__th_pubctx_t *)c)->connected, 1); }
static void sl__th_conn_fail(void *c, MQTTAsync_failureData *r)
{
    atomic_store(&((sl__th_pubctx_t *)c)->connected, -1);
}
static void sl__th_conn_ok5(void *c, MQTTAsync_successData5 *r) { atomic_store(&((sl__th_pubctx_t *)c)->connected, 1); }
static void sl__th_conn_fail5(void *c, MQTTAsync_failureData5 *r)
{
    atomic_store(&((sl__th_pubctx_t *)c)->connected, -1);
}

static bool sl__th_pub_connect(MQTTAsync cli, const sl_th_pub_t *p, sl__th_pubctx_t *pc)
{
    MQTTAsync_connectOptions o3 = MQTTAsync_connectOptions_initializer;
    MQTTAsync_connectOptions o5 = MQTTAsync_connectOptions_initializer5;
    MQTTAsync_connectOptions *o = p->version == 5 ? &o5 : &o3;
    o->context = pc;
    o->maxInflight = 1000;
    if (p->version == 5) {
        o->onSuccess5 = sl__th_conn_ok5;
        o->onFailure5 = sl__th_conn_fail5;
    } else {
        o->onSuccess = sl__th_conn_ok;
        o->onFailure = sl__th_conn_fail;
    }
    if (MQTTAsync_connect(cli, o) != MQTTASYNC_SUCCESS)
        return false;
    uint64_t deadline = sl__th_ms() + 10000;
    while (atomic_load(&pc->connected) == 0 && sl__th_ms() < deadline)
        sl__th_poll_pause();
    return atomic_load(&pc->connected) == 1;
}

/* Sends one message; keeps at most 1000 unconfirmed so a long stream does not queue without bound. */
static bool sl__th_pub_one(MQTTAsync cli, const sl_th_pub_t *p, sl__th_pubctx_t *pc, const char *topic,
                           const void *payload, size_t len, unsigned d, long sent)
{
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    char dev[32];
    msg.payload = (void *)payload;
    msg.payloadlen = (int)len;
    msg.qos = p->qos;
    ro.context = pc;
    if (p->version == 5) {
        ro.onSuccess5 = sl__th_pub_ok5;
        ro.onFailure5 = sl__th_pub_fail5;
        if (p->user_prop) {
            MQTTProperty prop = {.identifier = MQTTPROPERTY_CODE_USER_PROPERTY};
            snprintf(dev, sizeof dev, "dev-%u", d);
            prop.value.data.data = (char *)p->user_prop;
            prop.value.data.len = (int)strlen(p->user_prop);
            prop.value.value.data = dev;
            prop.value.value.len = (int)strlen(dev);
            MQTTProperties_add(&msg.properties, &prop);
        }
    } else {
        ro.onSuccess = sl__th_pub_ok;
        ro.onFailure = sl__th_pub_fail;
    }
    uint64_t deadline = sl__th_ms() + 30000;
    while (sent - atomic_load(&pc->done) - atomic_load(&pc->failed) >= 1000 && sl__th_ms() < deadline)
        sl__th_poll_pause();
    int rc;
    /* Paho refuses past its buffer limits ("max buffered", "max in flight"): try again as it drains. */
    while ((rc = MQTTAsync_sendMessage(cli, topic, &msg, &ro)) == MQTTASYNC_MAX_BUFFERED ||
           rc == MQTTASYNC_MAX_MESSAGES_INFLIGHT || rc == MQTTASYNC_MAX_BUFFERED_MESSAGES) {
        if (sl__th_ms() >= deadline)
            break;
        sl__th_poll_pause();
    }
    MQTTProperties_free(&msg.properties);
    if (rc != MQTTASYNC_SUCCESS)
        fprintf(stderr, "harness: MQTTAsync_sendMessage: %s\n", MQTTAsync_strerror(rc));
    return rc == MQTTASYNC_SUCCESS;
}

long sl_th_publish(const sl_th_pub_t *p)
{
    MQTTAsync cli;
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    co.MQTTVersion = p->version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
    co.maxBufferedMessages = 2000; /* above the 1000 kept unconfirmed */
    char id[64];
    snprintf(id, sizeof id, "sl-th-pub-%d-%llu", (int)getpid(), (unsigned long long)sl__th_ms());
    if (MQTTAsync_createWithOptions(&cli, p->url, id, MQTTCLIENT_PERSISTENCE_NONE, NULL, &co) != MQTTASYNC_SUCCESS)
        return -1;
    sl__th_pubctx_t pc = {0};
    long sent = -1;
    if (sl__th_pub_connect(cli, p, &pc)) {
        sent = 0;
        char topic[256], payload[65536];
        for (uint64_t i = 0; i < p->count; i++)
            for (unsigned d = 0; d < p->devices; d++) {
                snprintf(topic, sizeof topic, p->topic_fmt, d);
                size_t len = p->raw_len;
                if (p->raw == NULL) {
                    int w = snprintf(payload, sizeof payload, "{\"device\":\"dev-%u\",\"seq\":%llu,\"pad\":\"", d,
                                     (unsigned long long)(p->first_seq + i));
                    size_t pad = SL_TH_MIN(p->pad, sizeof payload - (size_t)w - 3);
                    memset(payload + w, 'x', pad);
                    memcpy(payload + w + pad, "\"}", 3);
                    len = (size_t)w + pad + 2;
                }
                if (!sl__th_pub_one(cli, p, &pc, topic, p->raw ? (const void *)p->raw : payload, len, d, sent))
                    break;
                sent++;
            }
        uint64_t deadline = sl__th_ms() + 60000;
        while (atomic_load(&pc.done) + atomic_load(&pc.failed) < sent && sl__th_ms() < deadline)
            sl__th_poll_pause();
        MQTTAsync_disconnectOptions dopt = MQTTAsync_disconnectOptions_initializer;
        dopt.timeout = 1000;
        MQTTAsync_disconnect(cli, &dopt);
    }
    MQTTAsync_destroy(&cli);
    return sent < 0 ? -1 : atomic_load(&pc.done);
}
