/*
 * The MQTT source and the decode stage through the real binary, against a real mosquitto started on a
 * free loopback port: QoS 0/1/2 with wildcards and topic-template attributes (MQTT 3.1.1 and 5), MQTT 5
 * user properties as attributes, dead-lettering of bad payloads, the source worker SIGKILLed mid-stream
 * with a persistent session, a broker restart, a sink stalled for several keep-alives (overflow pause),
 * two sluice instances in one shared group, and TLS with generated certificates.
 *
 * Every wait polls a condition against a deadline; counts stay below 10,000 per node so that the
 * summary line prints them exactly.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "ingest/capture/capture.h"

typedef struct fx_s {
    sl_th_t th, th2;
    sl_th_mosq_t mq;
    char url[64];
} fx_t;

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    if (fx == NULL || sl_th_init(&fx->th, "mqtt") != 0)
        return -1;
    snprintf(fx->th2.dir, sizeof fx->th2.dir, "%.200s/second", fx->th.dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    bool was_running = fx->th.pid > 0 || fx->th2.pid > 0;
    if (fx->th2.pid > 0) {
        kill(fx->th2.pid, SIGKILL);
        waitpid(fx->th2.pid, NULL, 0);
    }
    sl_th_mosq_stop(&fx->mq);
    sl_th_cleanup(&fx->th);
    free(fx);
    assert_false(was_running); /* every test stops what it started */
    return 0;
}

/* Every broker gets limits above the test's stream: a publisher outpaces any subscriber for a moment,
 * and the broker's default queue limit (1000) must not be what drops messages; and mosquitto silently
 * drops incoming QoS 2 messages of a 3.1.1 publisher past max_inflight_messages (default 20, measured),
 * while the test publisher keeps up to 1000 in flight (Paho's publisher waits ~40 ms per round trip here,
 * so a window of 20 would make the tests slow). */
static void start_broker(fx_t *fx, const char *extra)
{
    char conf[2048];
    snprintf(conf, sizeof conf, "max_queued_messages 100000\nmax_inflight_messages 1000\n%s", extra ? extra : "");
    if (sl_th_mosq_start(&fx->th, &fx->mq, conf) != 0)
        fail_msg("mosquitto did not start");
    snprintf(fx->url, sizeof fx->url, "tcp://127.0.0.1:%d", fx->mq.port);
}

/* The last value of "<node> in N " (or "<node> out N ") in the summary lines of th's log, or 0. */
static uint64_t node_count(sl_th_t *th, const char *node, const char *dir)
{
    char tag[96];
    snprintf(tag, sizeof tag, " %s %s ", node, dir);
    const char *log = sl_th_log(th), *last = NULL;
    for (const char *p = log; (p = strstr(p, tag)) != NULL; p++)
        last = p;
    return last ? strtoull(last + strlen(tag), NULL, 10) : 0;
}

static void wait_count(sl_th_t *th, const char *node, const char *dir, uint64_t want, int timeout_ms)
{
    for (int waited = 0; node_count(th, node, dir) < want; waited += 20) {
        if (waited >= timeout_ms)
            fail_msg("%s %s stayed at %llu of %llu; log:\n%s", node, dir, (unsigned long long)node_count(th, node, dir),
                     (unsigned long long)want, sl_th_log(th));
        sl_th_wait_log(th, "\x01never", 20);
    }
}

static void start_sluice(sl_th_t *th, const char *extra)
{
    sl_th_start(th, "run", extra);
    for (int waited = 0; !sl_th_wait_log(th, "subscribed to", 50); waited += 50)
        if (waited >= 15000 || sl_th_wait(th, 0))
            fail_msg("the source did not subscribe; log:\n%s", sl_th_log(th));
}

static void stop_sluice(sl_th_t *th)
{
    kill(th->pid, SIGTERM);
    if (!sl_th_wait(th, 30000))
        fail_msg("sluice did not drain; log:\n%s", sl_th_log(th));
    if (!WIFEXITED(th->status) || WEXITSTATUS(th->status) != 0)
        fail_msg("sluice exited with status 0x%x; log:\n%s", th->status, sl_th_log(th));
}

/* Checks the null sink's verify line: events, devices, lost, duplicates; returns the duplicates. */
static uint64_t assert_verify(sl_th_t *th, const char *sink, uint64_t events_min, uint64_t devices)
{
    char tag[64];
    snprintf(tag, sizeof tag, "[%s#0] verify:", sink);
    uint64_t ev = 0, dev = 0, lost = 1, dups = 0, bad = 1;
    if (!sl_th_log_number(th, tag, "verify: ", &ev) || !sl_th_log_number(th, tag, " from ", &dev) ||
        !sl_th_log_number(th, tag, "lost ", &lost) || !sl_th_log_number(th, tag, "duplicates ", &dups) ||
        !sl_th_log_number(th, tag, "unparseable ", &bad))
        fail_msg("no verify line; log:\n%s", sl_th_log(th));
    if (lost != 0 || bad != 0 || ev < events_min || dev != devices)
        fail_msg("verify: %llu events (want >= %llu) from %llu devices (want %llu), lost %llu, unparseable %llu; "
                 "log:\n%s",
                 (unsigned long long)ev, (unsigned long long)events_min, (unsigned long long)dev,
                 (unsigned long long)devices, (unsigned long long)lost, (unsigned long long)bad, sl_th_log(th));
    return dups;
}

/* Publishers speak MQTT 3.1.1 whatever the source speaks: Paho's MQTT 5 publisher waits about 40 ms per
 * QoS 1/2 message here (measured: 300 messages in 14 s, against 0.2 s with 3.1.1), which would only slow
 * the tests down. The MQTT 5 path of the source is what the tests exercise. */
static void publish(fx_t *fx, int version, int qos, const char *topic_fmt, unsigned devices, uint64_t first,
                    uint64_t count)
{
    version = 4;
    sl_th_pub_t p = {.url = fx->url,
                     .version = version,
                     .qos = qos,
                     .topic_fmt = topic_fmt,
                     .devices = devices,
                     .first_seq = first,
                     .count = count,
                     .pad = 120};
    long n = sl_th_publish(&p);
    assert_int_equal(n, (long)(devices * count));
}

/* QoS 0, 1 and 2 on three filters (`+` and `#`), device ids from the topic template as record keys. */
static void qos_wildcards(fx_t *fx, const char *version, int pub_version)
{
    start_broker(fx, NULL);
    sl_th_config(&fx->th,
                 "pipeline: { name: t }\n"
                 "metrics: { summary_interval: 100ms }\n"
                 "sources:\n"
                 "  - { name: mq, type: mqtt, urls: \"%s\", mqtt_version: \"%s\", client_id: qos-test,\n"
                 "      topics: [\"q0/+/t;qos=0\", \"q1/+/t\", \"q2/#;qos=2\"], qos: 1,\n"
                 "      topic_template: \"{level}/{device_id}/t\", key_from: device_id }\n"
                 "stages:\n"
                 "  - { name: dec, type: decode, from: mq }\n"
                 "sinks:\n"
                 "  - { name: out, type: null, from: dec, verify_sequence: true }\n",
                 fx->url, version);
    start_sluice(&fx->th, NULL);
    publish(fx, pub_version, 0, "q0/a%u/t", 4, 0, 200);
    publish(fx, pub_version, 1, "q1/b%u/t", 4, 0, 200);
    publish(fx, pub_version, 2, "q2/c%u/t", 4, 0, 200);
    wait_count(&fx->th, "out", "in", 2400, 20000);
    stop_sluice(&fx->th);
    assert_int_equal(assert_verify(&fx->th, "out", 2400, 12), 0);
}

static void test_qos_wildcards_v5(void **state) { qos_wildcards(*state, "5", 5); }
static void test_qos_wildcards_v311(void **state) { qos_wildcards(*state, "3.1.1", 4); }

/* MQTT 5 user properties become attributes: the decode stage takes the record key from one. */
static void test_mqtt5_user_properties(void **state)
{
    fx_t *fx = *state;
    start_broker(fx, NULL);
    sl_th_config(&fx->th,
                 "pipeline: { name: t }\n"
                 "metrics: { summary_interval: 100ms }\n"
                 "sources:\n"
                 "  - { name: mq, type: mqtt, urls: \"%s\", client_id: props-test, topics: \"props/t\" }\n"
                 "stages:\n"
                 "  - { name: dec, type: decode, from: mq, key_from: device_id }\n"
                 "sinks:\n"
                 "  - { name: out, type: null, from: dec, verify_sequence: true }\n",
                 fx->url);
    start_sluice(&fx->th, NULL);
    sl_th_pub_t p = {.url = fx->url,
                     .version = 5,
                     .qos = 1,
                     .topic_fmt = "props/t",
                     .devices = 3,
                     .count = 10,
                     .user_prop = "device_id"};
    assert_int_equal(sl_th_publish(&p), 30);
    wait_count(&fx->th, "out", "in", 30, 20000);
    stop_sluice(&fx->th);
    assert_verify(&fx->th, "out", 30, 3); /* three keys: the user property, not the one topic */
}

/* Garbage, oversize and invalid UTF-8 payloads go to the dead-letter sink with their reasons. */
static void test_dead_letter(void **state)
{
    fx_t *fx = *state;
    start_broker(fx, NULL);
    sl_th_config(&fx->th,
                 "pipeline: { name: t }\n"
                 "metrics: { summary_interval: 100ms }\n"
                 "sources:\n"
                 "  - { name: mq, type: mqtt, urls: \"%s\", client_id: dl-test, topics: \"dl/+\",\n"
                 "      topic_template: \"dl/{device_id}\", key_from: device_id }\n"
                 "stages:\n"
                 "  - { name: dec, type: decode, from: mq, max_payload: 1KiB, dead_letter: dl }\n"
                 "sinks:\n"
                 "  - { name: out, type: null, from: dec, verify_sequence: true }\n"
                 "  - { name: dl, type: null }\n",
                 fx->url);
    start_sluice(&fx->th, NULL);
    publish(fx, 5, 1, "dl/d%u", 2, 0, 50);
    static const char bad_utf8[] = "{\"seq\":1,\"s\":\"\xc3\x28\"}";
    static char big[2048];
    memset(big, ' ', sizeof big);
    memcpy(big, "{\"seq\":1}", 9);
    sl_th_pub_t garbage = {.url = fx->url,
                           .version = 4,
                           .qos = 1,
                           .topic_fmt = "dl/x",
                           .devices = 1,
                           .count = 5,
                           .raw = "not json {",
                           .raw_len = 10};
    sl_th_pub_t utf8 = garbage, over = garbage, trailing = garbage;
    utf8.raw = bad_utf8, utf8.raw_len = sizeof bad_utf8 - 1, utf8.count = 2;
    over.raw = big, over.raw_len = sizeof big, over.count = 3;
    trailing.raw = "{\"seq\":1} {}", trailing.raw_len = 12, trailing.count = 1;
    assert_int_equal(sl_th_publish(&garbage), 5);
    assert_int_equal(sl_th_publish(&utf8), 2);
    assert_int_equal(sl_th_publish(&over), 3);
    assert_int_equal(sl_th_publish(&trailing), 1);
    wait_count(&fx->th, "dl", "in", 11, 20000);
    wait_count(&fx->th, "out", "in", 100, 20000);
    stop_sluice(&fx->th);
    assert_verify(&fx->th, "out", 100, 2);
    uint64_t failed = 0;
    assert_true(sl_th_log_number(&fx->th, "[total]", "failed ", &failed));
    assert_int_equal(failed, 11);
    assert_int_equal(node_count(&fx->th, "dl", "in"), 11);
}

typedef struct pub_thread_s {
    fx_t *fx;
    sl_th_pub_t p;
    long sent;
} pub_thread_t;

static void *pub_thread(void *arg)
{
    pub_thread_t *pt = arg;
    pt->sent = sl_th_publish(&pt->p);
    return NULL;
}

/* The source worker is SIGKILLed during a QoS 1 stream: its supervisor restarts it, the persistent session
 * brings back what it had not acknowledged, and every sequence number arrives (duplicates counted). */
static void test_kill_source_qos1(void **state)
{
    fx_t *fx = *state;
    start_broker(fx, NULL);
    sl_th_config(&fx->th,
                 "pipeline: { name: t }\n"
                 "metrics: { summary_interval: 100ms }\n"
                 "sources:\n"
                 "  - { name: mq, type: mqtt, urls: \"%s\", client_id: kill-test, topics: \"k/+\",\n"
                 "      topic_template: \"k/{device_id}\", key_from: device_id, reconnect_min: 10ms }\n"
                 "sinks:\n"
                 "  - { name: out, type: null, from: mq, verify_sequence: true }\n",
                 fx->url);
    start_sluice(&fx->th, "-v");
    pid_t src = sl_th_worker_pid(&fx->th, "mq#0");
    assert_true(src > 0);
    pub_thread_t pt = {
        .fx = fx,
        .p = {.url = fx->url, .version = 4, .qos = 1, .topic_fmt = "k/d%u", .devices = 4, .count = 2000, .pad = 120}};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, pub_thread, &pt), 0);
    wait_count(&fx->th, "mq", "out", 500, 20000);
    assert_int_equal(kill(src, SIGKILL), 0);
    pthread_join(t, NULL);
    assert_int_equal(pt.sent, 8000);
    wait_count(&fx->th, "out", "in", 8000, 30000);
    stop_sluice(&fx->th);
    assert_true(sl_th_log_count(&fx->th, "session present") >= 1);
    uint64_t dups = assert_verify(&fx->th, "out", 8000, 4);
    print_message("kill -9 of the source mid-stream: lost 0, duplicates %llu\n", (unsigned long long)dups);
}

/* mosquitto (without persistence: the session is gone) stops and restarts mid-stream: sluice reconnects,
 * resubscribes and goes on. */
static void test_broker_restart(void **state)
{
    fx_t *fx = *state;
    start_broker(fx, NULL);
    sl_th_config(&fx->th,
                 "pipeline: { name: t }\n"
                 "metrics: { summary_interval: 100ms }\n"
                 "sources:\n"
                 "  - { name: mq, type: mqtt, urls: \"%s\", client_id: restart-test, topics: \"r/+\",\n"
                 "      topic_template: \"r/{device_id}\", key_from: device_id, reconnect_min: 20ms,\n"
                 "      reconnect_max: 200ms }\n"
                 "sinks:\n"
                 "  - { name: out, type: null, from: mq, verify_sequence: true }\n",
                 fx->url);
    start_sluice(&fx->th, NULL);
    publish(fx, 5, 1, "r/d%u", 3, 0, 300);
    wait_count(&fx->th, "out", "in", 900, 20000);
    sl_th_mosq_stop(&fx->mq);
    assert_true(sl_th_wait_log(&fx->th, "connection lost", 10000));
    start_broker(fx, NULL);
    for (int waited = 0; sl_th_log_count(&fx->th, "subscribed to") < 2; waited += 20) {
        if (waited > 20000)
            fail_msg("no resubscription; log:\n%s", sl_th_log(&fx->th));
        sl_th_wait_log(&fx->th, "\x01never", 20);
    }
    publish(fx, 5, 1, "r/d%u", 3, 300, 300);
    wait_count(&fx->th, "out", "in", 1800, 20000);
    stop_sluice(&fx->th);
    assert_verify(&fx->th, "out", 1800, 3);
}

/* The log without its summary lines (they crowd out the rest in a failure message). */
static const char *log_tail(sl_th_t *th)
{
    static char out[24000];
    size_t n = 0;
    for (const char *l = sl_th_log(th); l && *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) + 1 : strlen(l);
        if (!memmem(l, len, "[summary]", 9) && n + len < sizeof out) {
            memcpy(out + n, l, len);
            n += len;
        }
        l += len;
    }
    out[n] = 0;
    return out;
}

/* The value of sample `name{...node="NODE"...}` in a /metrics answer, or -1. */
static long long metric_value(const char *resp, const char *name, const char *node)
{
    char tag[160];
    snprintf(tag, sizeof tag, "sluice_%s{pipeline=\"t\",node=\"%s\",instance=\"0\"} ", name, node);
    const char *p = resp ? strstr(resp, tag) : NULL;
    return p ? strtoll(p + strlen(tag), NULL, 10) : -1;
}

/*
 * A sink stalled (SIGSTOP) for three keep-alive periods while QoS 1 messages keep coming: the source
 * pauses (logged with figures) by disconnecting with its session kept, the broker never drops it for
 * silence ("exceeded timeout"), and once the sink resumes every sequence number published meanwhile
 * arrives (the broker's queue limit is set above the stream). The channel is small (64 KiB) and the
 * overdraft is the in-flight window (20): at the first event past the demand the callback pauses and shuts
 * the connection down, so only what the broker had sent and not yet had acknowledged can still arrive.
 * Memory stays at its bound: the overdraft never overflowed (no wait for room), and /metrics shows the most
 * one pause used.
 */
static void stalled_sink_pause(void **state, const char *version)
{
    fx_t *fx = *state;
    start_broker(fx, "max_queued_bytes 0");
    sl_th_config(&fx->th,
                 "pipeline: { name: t }\n"
                 "metrics: { summary_interval: 100ms, listen: \"127.0.0.1:0\" }\n"
                 "sources:\n"
                 "  - { name: mq, type: mqtt, urls: \"%s\", client_id: stall-test, topics: \"s/+\",\n"
                 "      mqtt_version: \"%s\",\n"
                 "      topic_template: \"s/{device_id}\", key_from: device_id, keepalive: 2s,\n"
                 "      wait_timeout: 500ms, in_flight: 20, overdraft: 20 }\n"
                 "sinks:\n"
                 "  - { name: out, type: null, from: mq, verify_sequence: true, capacity: 64KiB,\n"
                 "      max_demand: 100 }\n",
                 fx->url, version);
    start_sluice(&fx->th, "-v");
    uint64_t port = 0;
    assert_true(sl_th_log_number(&fx->th, "serving http://127.0.0.1:", "127.0.0.1:", &port));
    pid_t sink = sl_th_worker_pid(&fx->th, "out#0");
    assert_true(sink > 0);
    assert_int_equal(kill(sink, SIGSTOP), 0);
    publish(fx, 5, 1, "s/d%u", 4, 0, 1500);
    assert_true(sl_th_wait_log(&fx->th, "overflow pause: no demand", 10000));
    /* The stall itself: three keep-alives during which the broker must not drop the client. */
    if (sl_th_wait_log(&fx->th, "connection lost", 6000) || sl_th_mosq_log_count(&fx->mq, "exceeded timeout") != 0)
        fail_msg("the broker dropped the paused source; log:\n%s", log_tail(&fx->th));
    const char *r = sl_th_http_get((int)port, "/metrics");
    assert_int_equal(metric_value(r, "mqtt_paused", "mq"), 1);
    assert_int_equal(kill(sink, SIGCONT), 0);
    assert_true(sl_th_wait_log(&fx->th, "overflow pause: resuming after", 20000));
    wait_count(&fx->th, "out", "in", 6000, 30000);
    r = sl_th_http_get((int)port, "/metrics");
    long long peak = metric_value(r, "mqtt_overdraft_peak_events", "mq");
    print_message("stalled sink: %lld pauses, at most %lld events in the overdraft of 20, %lld received\n",
                  metric_value(r, "mqtt_pauses_total", "mq"), peak, metric_value(r, "mqtt_received_total", "mq"));
    assert_true(metric_value(r, "mqtt_pauses_total", "mq") >= 1);
    assert_true(peak >= 1 && peak <= 20);
    assert_int_equal(metric_value(r, "mqtt_overdraft_full_waits_total", "mq"), 0);
    assert_true(metric_value(r, "mqtt_received_total", "mq") >= 6000);
    assert_int_equal(metric_value(r, "mqtt_dropped_total", "mq"), 0);
    assert_non_null(strstr(r, "# TYPE sluice_mqtt_paused gauge"));
    stop_sluice(&fx->th);
    assert_int_equal(sl_th_mosq_log_count(&fx->mq, "exceeded timeout"), 0);
    assert_verify(&fx->th, "out", 6000, 4);
}

/* Sends buf over fd; true when all of it went. */
static bool send_all(int fd, const void *buf, size_t len) { return send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len; }

/*
 * What mosquitto does with a PUBLISH whose topic is not UTF-8, spoken byte by byte over TCP (no client
 * library would send it): returns true when the broker answered the CONNECT and then closed the connection
 * on the PUBLISH instead of delivering it.
 */
static bool broker_refuses_bad_topic(int port, const char *topic, size_t tlen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        fail_msg("connect to mosquitto failed");
    /* CONNECT, MQTT 3.1.1, clean session, keep-alive 60 s, client id "raw-bad-topic". */
    static const uint8_t conn[] = {0x10, 25,  0,   4,   'M', 'Q', 'T', 'T', 4,   2,   0,   60,  0,  13,
                                   'r',  'a', 'w', '-', 'b', 'a', 'd', '-', 't', 'o', 'p', 'i', 'c'};
    uint8_t connack[4], pub[256];
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    bool ok = send_all(fd, conn, sizeof conn) && recv(fd, connack, 4, MSG_WAITALL) == 4 && connack[0] == 0x20 &&
              connack[3] == 0;
    /* PUBLISH QoS 0: [0x30][remaining][topic length][topic][payload]. */
    static const char payload[] = "{\"seq\":1}";
    size_t n = 0;
    pub[n++] = 0x30;
    pub[n++] = (uint8_t)(2 + tlen + sizeof payload - 1);
    pub[n++] = 0;
    pub[n++] = (uint8_t)tlen;
    memcpy(pub + n, topic, tlen);
    n += tlen;
    memcpy(pub + n, payload, sizeof payload - 1);
    n += sizeof payload - 1;
    ok = ok && send_all(fd, pub, n);
    char c;
    bool closed = ok && recv(fd, &c, 1, 0) == 0; /* the broker's answer: end of stream, not a timeout */
    close(fd);
    return closed;
}

/*
 * Invalid UTF-8 topics, end to end. mosquitto refuses them at the door: a raw PUBLISH with one gets the
 * publisher disconnected, and the sluice subscribed to `#` receives nothing from it (only the valid
 * messages after). Such topics reach sluice from a broker or bridge that does not check, or from a capture:
 * a capture with two of them, replayed through the same pipeline (its mqtt source turned into a replay
 * source by `sluice replay`), sends both to the dead-letter sink with reason bad_topic, counted as failed,
 * and everything else to the sink.
 */
static void test_bad_topic(void **state)
{
    fx_t *fx = *state;
    start_broker(fx, NULL);
    sl_th_config(&fx->th,
                 "pipeline: { name: t }\n"
                 "metrics: { summary_interval: 100ms }\n"
                 "sources:\n"
                 "  - { name: mq, type: mqtt, urls: \"%s\", client_id: bt-test, topics: \"#\",\n"
                 "      topic_template: \"bt/{device_id}\", key_from: device_id }\n"
                 "stages:\n"
                 "  - { name: dec, type: decode, from: mq, dead_letter: rejects }\n"
                 "sinks:\n"
                 "  - { name: out, type: null, from: dec, verify_sequence: true }\n"
                 "  - { name: rejects, type: file, dir: '%s', path: rejects.ndjson, sync: none }\n",
                 fx->url, fx->th.dir);
    start_sluice(&fx->th, NULL);
    static const char bad1[] = "bt/\xff\xfe", bad2[] = "bt/\xc0\xaf"; /* a stray byte; an overlong '/' */
    assert_true(broker_refuses_bad_topic(fx->mq.port, bad1, sizeof bad1 - 1));
    assert_true(broker_refuses_bad_topic(fx->mq.port, bad2, sizeof bad2 - 1));
    publish(fx, 4, 1, "bt/d%u", 2, 0, 20);
    wait_count(&fx->th, "out", "in", 40, 20000);
    stop_sluice(&fx->th);
    assert_verify(&fx->th, "out", 40, 2);
    assert_int_equal(node_count(&fx->th, "rejects", "in"), 0); /* nothing of the refused publishes got in */
    assert_int_equal(sl_th_mosq_log_count(&fx->mq, "raw-bad-topic disconnected due to malformed packet"), 2);

    /* The same pipeline fed from a capture that carries them. */
    char cap[400];
    snprintf(cap, sizeof cap, "%s/bad-topics.cap", fx->th.dir);
    sl_cap_writer_t *w;
    assert_int_equal(sl_cap_writer_open(cap, &(sl_cap_wopts_t){.desc = "test_bad_topic"}, &w), 0);
    char payload[64], topic[16];
    for (unsigned i = 0; i < 30; i++) {
        const char *t = topic;
        size_t tl = (size_t)snprintf(topic, sizeof topic, "bt/d%u", i % 3);
        if (i == 10 || i == 20) { /* two bad ones, in the middle of the stream */
            t = i == 10 ? bad1 : bad2;
            tl = i == 10 ? sizeof bad1 - 1 : sizeof bad2 - 1;
        }
        int pl = snprintf(payload, sizeof payload, "{\"device\":\"dev-%u\",\"seq\":%u}", i % 3, i / 3);
        sl_cap_rec_t r = {.ts_ns = 1,
                          .qos = 1,
                          .topic = t,
                          .topic_len = (uint32_t)tl,
                          .payload = (const uint8_t *)payload,
                          .payload_len = (uint32_t)pl};
        assert_int_equal(sl_cap_writer_put(w, &r), 0);
    }
    assert_int_equal(sl_cap_writer_close(w), 0);
    unlink(fx->th.log);
    sl_th_start(&fx->th, "replay", cap); /* every record carries the same time: all at once */
    if (!sl_th_wait(&fx->th, 30000) || !WIFEXITED(fx->th.status) || WEXITSTATUS(fx->th.status) != 0)
        fail_msg("sluice replay did not drain; log:\n%s", log_tail(&fx->th));
    uint64_t failed = 0;
    if (!sl_th_log_number(&fx->th, "[total]", "failed ", &failed) || failed != 2 ||
        node_count(&fx->th, "rejects", "in") != 2 || node_count(&fx->th, "out", "in") != 28)
        fail_msg("want 2 failed, 2 dead letters and 28 events; log:\n%s", log_tail(&fx->th));
    /* The dead-letter file (its name gets the instance before the extension): the reasons. */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cat '%s'/rejects*.ndjson | grep -c '\"dl_reason\":\"bad_topic\"'", fx->th.dir);
    FILE *f = popen(cmd, "r");
    int reasons = -1;
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%d", &reasons), 1);
    pclose(f);
    assert_int_equal(reasons, 2);
}

/* MQTT 5 (Receive Maximum = in_flight) and 3.1.1 (the broker's own in-flight limit, 1000 in these tests). */
static void test_stalled_sink_pause(void **state) { stalled_sink_pause(state, "5"); }
static void test_stalled_sink_pause_v311(void **state) { stalled_sink_pause(state, "3.1.1"); }

/* Two sluice instances in one shared group split one stream: together every message, each a share. */
static void test_shared_group(void **state)
{
    fx_t *fx = *state;
    start_broker(fx, NULL);
    sl_th_t *a = &fx->th, *b = &fx->th2;
    mkdir(b->dir, 0755);
    snprintf(b->cfg, sizeof b->cfg, "%s/pipeline.yaml", b->dir);
    snprintf(b->log, sizeof b->log, "%s/sluice.log", b->dir);
    const char *cfg = "pipeline: { name: t }\n"
                      "metrics: { summary_interval: 100ms }\n"
                      "sources:\n"
                      "  - { name: mq, type: mqtt, urls: \"%s\", client_id: %s, topics: \"g/+\",\n"
                      "      shared_group: workers }\n"
                      "sinks:\n"
                      "  - { name: out, type: null, from: mq }\n";
    sl_th_config(a, cfg, fx->url, "member-a");
    sl_th_config(b, cfg, fx->url, "member-b");
    start_sluice(a, NULL);
    start_sluice(b, NULL);
    publish(fx, 5, 1, "g/d%u", 2, 0, 1000);
    for (int waited = 0; node_count(a, "out", "in") + node_count(b, "out", "in") < 2000; waited += 20) {
        if (waited > 20000)
            fail_msg("the group received %llu + %llu of 2000", (unsigned long long)node_count(a, "out", "in"),
                     (unsigned long long)node_count(b, "out", "in"));
        sl_th_wait_log(a, "\x01never", 20);
    }
    stop_sluice(a);
    stop_sluice(b);
    uint64_t na = 0, nb = 0;
    assert_true(sl_th_log_number(a, "[out#0]", "took ", &na));
    assert_true(sl_th_log_number(b, "[out#0]", "took ", &nb));
    print_message("shared group: %llu + %llu of 2000\n", (unsigned long long)na, (unsigned long long)nb);
    assert_int_equal(na + nb, 2000);
    assert_true(na >= 500 && nb >= 500);
}

static void sh(const char *dir, const char *cmd)
{
    char buf[2048];
    snprintf(buf, sizeof buf, "cd '%s' && (%s) >/dev/null 2>&1", dir, cmd);
    if (system(buf) != 0)
        fail_msg("command failed: %s", cmd);
}

/* A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA; and a second,
 * unrelated CA. */
static void make_certs(const char *dir)
{
    sh(dir, "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=test-ca");
    sh(dir, "openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.crt -days 2 -subj /CN=other");
    sh(dir, "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 && "
            "printf 'subjectAltName=IP:127.0.0.1' > san.ext && "
            "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 "
            "-extfile san.ext");
    sh(dir, "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=sluice && "
            "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 2");
}

/* TLS with client certificates: the right CA connects and delivers; a wrong CA is refused at start with a
 * clear error, and the instance is not respawned. */
static void test_tls(void **state)
{
    fx_t *fx = *state;
    make_certs(fx->th.dir);
    int plain = sl_th_free_port();
    char extra[1024];
    snprintf(extra, sizeof extra,
             "cafile %s/ca.crt\ncertfile %s/server.crt\nkeyfile %s/server.key\nrequire_certificate true\n"
             "listener %d 127.0.0.1\n",
             fx->th.dir, fx->th.dir, fx->th.dir, plain);
    start_broker(fx, extra);
    const char *cfg =
        "pipeline: { name: t }\n"
        "metrics: { summary_interval: 100ms }\n"
        "sources:\n"
        "  - { name: mq, type: mqtt, urls: \"ssl://127.0.0.1:%d\", client_id: tls-test, topics: \"tls/+\",\n"
        "      topic_template: \"tls/{device_id}\", key_from: device_id,\n"
        "      tls_ca_file: %s/%s.crt, tls_cert_file: %s/client.crt, tls_key_file: %s/client.key }\n"
        "sinks:\n"
        "  - { name: out, type: null, from: mq, verify_sequence: true }\n";
    sl_th_config(&fx->th, cfg, fx->mq.port, fx->th.dir, "ca", fx->th.dir, fx->th.dir);
    start_sluice(&fx->th, NULL);
    snprintf(fx->url, sizeof fx->url, "tcp://127.0.0.1:%d", plain);
    publish(fx, 5, 1, "tls/d%u", 2, 0, 100);
    wait_count(&fx->th, "out", "in", 200, 20000);
    stop_sluice(&fx->th);
    assert_verify(&fx->th, "out", 200, 2);

    sl_th_config(&fx->th, cfg, fx->mq.port, fx->th.dir, "other", fx->th.dir, fx->th.dir);
    sl_th_start(&fx->th, "run", NULL);
    if (!sl_th_wait(&fx->th, 30000))
        fail_msg("sluice kept running with a wrong CA; log:\n%s", sl_th_log(&fx->th));
    assert_true(WIFEXITED(fx->th.status) && WEXITSTATUS(fx->th.status) != 0);
    assert_non_null(strstr(sl_th_log(&fx->th), "TLS handshake with ssl://127.0.0.1"));
    assert_non_null(strstr(sl_th_log(&fx->th), "cannot start"));
    assert_int_equal(sl_th_log_count(&fx->th, "TLS handshake with"), 1); /* not respawned */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_qos_wildcards_v5, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qos_wildcards_v311, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mqtt5_user_properties, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_source_qos1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_sink_pause, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_sink_pause_v311, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_topic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls, setup, teardown),
    };
    if (getenv("SL_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SL_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
