/*
 * Record and replay through the real binary: `sluice gen` -> capture -> `sluice replay` into a null sink
 * that checks every device's sequence (nothing lost); the malformed fraction counted by decode; a corrupt
 * record skipped and reported at its index and offset while the rest is delivered; recorded timing
 * (never early, in order: checked on the file sink's output, read back with the NDJSON reader, without
 * an upper time bound); a SIGKILLed replay worker resumes where its channel says; NDJSON and
 * mosquitto_sub -v samples; an unreadable file does not start; `sluice record` from a real mosquitto.
 */
#include <dirent.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "ingest/capture/capture.h"

static int setup(void **state)
{
    sl_th_t *th = calloc(1, sizeof *th);
    if (th == NULL || sl_th_init(th, "replay") != 0)
        return -1;
    *state = th;
    return 0;
}

static int teardown(void **state)
{
    sl_th_t *th = *state;
    bool was_running = th->pid > 0;
    sl_th_cleanup(th);
    free(th);
    assert_false(was_running); /* every test stops what it started */
    return 0;
}

/* Runs it to the end; returns its exit code (fails the test on a timeout or a signal). */
static int run_args(sl_th_t *th, const char *const *args, int timeout_ms)
{
    int rc = sl_th_run_argv(th, args, timeout_ms);
    if (rc < 0)
        fail_msg("sluice %s ran past %d ms or died (status 0x%x); log:\n%s", args[0], timeout_ms, th->status,
                 sl_th_log(th));
    return rc;
}

/* sluice gen into dir/name with extra options; returns how many malformed payloads it wrote. */
static uint64_t gen(sl_th_t *th, const char *name, char *path, size_t len, const char *const *opts)
{
    snprintf(path, len, "%s/%s", th->dir, name);
    const char *args[24] = {"gen", "-o", path};
    size_t n = 3;
    while (opts && *opts && n < 23)
        args[n++] = *opts++;
    args[n] = NULL;
    int rc = run_args(th, args, 60000);
    if (rc != 0)
        fail_msg("sluice gen exited %d; log:\n%s", rc, sl_th_log(th));
    uint64_t bad = 0;
    assert_true(sl_th_log_number(th, "sluice gen: wrote", "(", &bad));
    return bad;
}

/* Sums a number over every log line containing tag. */
static uint64_t sum_lines(sl_th_t *th, const char *tag, const char *after)
{
    uint64_t sum = 0;
    for (const char *p = sl_th_log(th); (p = strstr(p, tag)) != NULL; p++) {
        const char *eol = strchr(p, '\n'), *v = strstr(p, after);
        if (v && (!eol || v < eol))
            sum += strtoull(v + strlen(after), NULL, 10);
    }
    return sum;
}

static void assert_verified(sl_th_t *th, uint64_t events, uint64_t lost, uint64_t dups)
{
    uint64_t n = sum_lines(th, "verify: ", "verify: "), l = sum_lines(th, "verify: ", "lost "),
             d = sum_lines(th, "verify: ", "duplicates "), bad = sum_lines(th, "verify: ", "unparseable ");
    if (n != events || l != lost || d != dups || bad != 0)
        fail_msg("verify: %llu events (want %llu), lost %llu (want %llu), dups %llu (want %llu), bad %llu; log:\n%s",
                 (unsigned long long)n, (unsigned long long)events, (unsigned long long)l, (unsigned long long)lost,
                 (unsigned long long)d, (unsigned long long)dups, (unsigned long long)bad, sl_th_log(th));
}

static const char relay_cfg[] = "pipeline: { name: replay }\n"
                                "sources: [ { name: fleet, type: generator } ]\n"
                                "stages:\n"
                                "  - { name: relay, type: passthrough, from: fleet, concurrency: 2,\n"
                                "      dispatcher: partition, partition_by: key }\n"
                                "sinks:\n"
                                "  - { name: out, type: null, from: relay, concurrency: 2, dispatcher: partition,\n"
                                "      partition_by: key, verify_sequence: true }\n";

static void test_gen_replay_nothing_lost(void **state)
{
    sl_th_t *th = *state;
    char cap[300];
    const char *opts[] = {"-n", "50000", "-d", "300", "-z", NULL};
    assert_int_equal(gen(th, "fleet.cap.gz", cap, sizeof cap, opts), 0);
    sl_th_config(th, "%s", relay_cfg);
    const char *args[] = {"replay", cap, "-c", th->cfg, "--speed", "max", NULL};
    assert_int_equal(run_args(th, args, 60000), 0);
    assert_verified(th, 50000, 0, 0);
    assert_non_null(strstr(sl_th_log(th), "[fleet#0] replayed 50000 events"));
}

static void test_malformed_fraction_counted(void **state)
{
    sl_th_t *th = *state;
    char cap[300];
    const char *opts[] = {"-n", "4000", "-d", "40", "-m", "0.05", "-p", "mixed", "--seed", "3", NULL};
    uint64_t bad = gen(th, "bad.cap", cap, sizeof cap, opts);
    assert_true(bad > 100 && bad < 300); /* about 5 % of the ~95 % JSON payloads */
    sl_th_config(th,
                 "pipeline: { name: malformed }\n"
                 "sources: [ { name: fleet, type: replay, file: %s, speed: 0 } ]\n"
                 "stages: [ { name: dec, type: decode, from: fleet } ]\n"
                 "sinks: [ { name: out, type: null, from: dec } ]\n",
                 cap);
    const char *args[] = {"run", "-c", th->cfg, NULL};
    assert_int_equal(run_args(th, args, 60000), 0);
    /* decode dead-letters every malformed payload and every binary one (the mixed profile's 5 %). */
    sl_cap_reader_t *rd;
    assert_int_equal(sl_cap_reader_open(cap, &rd), 0);
    sl_cap_rec_t r;
    uint64_t binary = 0;
    while (sl_cap_reader_next(rd, &r) == 0)
        binary += (r.flags & SL_CAP_F_BINARY) != 0;
    sl_cap_reader_destroy(rd);
    uint64_t failed = 0;
    assert_true(sl_th_log_number(th, "[total]", "failed ", &failed));
    if (failed != bad + binary)
        fail_msg("decode failed %llu, want %llu malformed + %llu binary; log:\n%s", (unsigned long long)failed,
                 (unsigned long long)bad, (unsigned long long)binary, sl_th_log(th));
}

static void test_corrupt_record_skipped(void **state)
{
    sl_th_t *th = *state;
    char cap[300];
    const char *opts[] = {"-n", "1000", "-d", "10", NULL};
    gen(th, "c.cap", cap, sizeof cap, opts);
    /* Find record 500's offset with the reader, then flip a byte in its payload. */
    sl_cap_reader_t *rd;
    assert_int_equal(sl_cap_reader_open(cap, &rd), 0);
    sl_cap_rec_t r;
    uint64_t off = 0;
    while (sl_cap_reader_next(rd, &r) == 0)
        if (r.index == 500)
            off = r.offset;
    sl_cap_reader_destroy(rd);
    assert_true(off > 0);
    int fd = open(cap, O_RDWR);
    assert_true(fd >= 0);
    uint8_t c;
    assert_int_equal(pread(fd, &c, 1, (off_t)off + 100), 1);
    c ^= 0x20;
    assert_int_equal(pwrite(fd, &c, 1, (off_t)off + 100), 1);
    close(fd);
    sl_th_config(th, "%s", relay_cfg);
    const char *args[] = {"replay", cap, "-c", th->cfg, "--speed", "0", NULL};
    assert_int_equal(run_args(th, args, 60000), 0);
    char want[128];
    snprintf(want, sizeof want, "corrupt record 500 at byte %llu: checksum mismatch; skipped", (unsigned long long)off);
    if (strstr(sl_th_log(th), want) == NULL)
        fail_msg("no \"%s\" in the log:\n%s", want, sl_th_log(th));
    /* Record 500 is device 0's seq 50: one gap. */
    assert_verified(th, 999, 1, 0);
}

/* The one .ndjson file the file sink completed in dir (its name carries the instance). */
static void find_ndjson(const char *dir, char *path, size_t len)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    path[0] = 0;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 7 && strcmp(e->d_name + n - 7, ".ndjson") == 0)
            snprintf(path, len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
}

/* decode marks a payload it validated as one-line JSON, and the file sink inlines it without checking it
 * again; a valid payload with a line break in its whitespace stays base64, so every NDJSON line is whole. */
static void test_decode_json_to_ndjson_lines(void **state)
{
    sl_th_t *th = *state;
    char in[512], dir[512], out[600], line[1024];
    snprintf(in, sizeof in, "%s/lines.ndjson", th->dir);
    snprintf(dir, sizeof dir, "%s/files", th->dir);
    FILE *f = fopen(in, "w");
    assert_non_null(f);
    fputs("{\"topic\":\"f/d1/t\",\"payload\":\"{\\\"a\\\":1}\"}\n"       /* one line: inlined */
          "{\"topic\":\"f/d2/t\",\"payload\":\"{\\\"a\\\":\\n2}\"}\n"    /* a line break: base64 */
          "{\"topic\":\"f/d3/t\",\"payload\":\"{\\\"a\\\":\\r\\n3}\"}\n" /* the same */
          "{\"topic\":\"f/d4/t\",\"payload\":\"[1,\\t2]\"}\n",           /* a tab: inlined */
          f);
    fclose(f);
    sl_th_config(th,
                 "pipeline: { name: lines }\n"
                 "metrics: { enabled: false }\n"
                 "sources: [ { name: src, type: replay, file: '%s', speed: 0 } ]\n"
                 "stages: [ { name: decode, type: decode, from: src } ]\n"
                 "sinks: [ { name: out, type: file, from: decode, dir: '%s', path: 'x.ndjson' } ]\n",
                 in, dir);
    const char *args[] = {"run", "-c", th->cfg, NULL};
    assert_int_equal(run_args(th, args, 30000), 0);
    find_ndjson(dir, out, sizeof out);
    assert_true(out[0] != 0);
    f = fopen(out, "r");
    assert_non_null(f);
    int n = 0, inlined = 0, b64 = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        n++;
        assert_true(line[0] == '{' && line[strlen(line) - 1] == '\n');
        inlined += strstr(line, "\"payload\":{\"a\":1}}") != NULL || strstr(line, "\"payload\":[1,\t2]}") != NULL;
        b64 += strstr(line, "\"payload_base64\":\"") != NULL;
    }
    fclose(f);
    assert_int_equal(n, 4);
    assert_int_equal(inlined, 2);
    assert_int_equal(b64, 2);
}

static void test_recorded_timing_order(void **state)
{
    sl_th_t *th = *state;
    char cap[300], out[300];
    /* 600 records at 2000/s with a burst of 50 every 100 ms: 0.3 s recorded, replayed at speed 2. */
    const char *opts[] = {"-n", "600", "-d", "7", "-r", "2000", "--burst", "50", "--burst-every", "100ms", NULL};
    gen(th, "t.cap", cap, sizeof cap, opts);
    snprintf(out, sizeof out, "%s/out", th->dir);
    sl_th_config(th,
                 "pipeline: { name: timing }\n"
                 "sources: [ { name: fleet, type: generator } ]\n"
                 "sinks: [ { name: out, type: file, from: fleet, dir: %s, path: all.ndjson, sync: none,\n"
                 "           batch_timeout: 10ms } ]\n",
                 out);
    const char *args[] = {"replay", cap, "-c", th->cfg, "--speed", "2", NULL};
    assert_int_equal(run_args(th, args, 60000), 0);
    /* Read both back: the same records in the same order, none emitted before its recorded time / 2. */
    char path[600];
    find_ndjson(out, path, sizeof path);
    sl_cap_reader_t *a, *b;
    assert_int_equal(sl_cap_reader_open(cap, &a), 0);
    if (sl_cap_reader_open(path, &b) != 0)
        fail_msg("no %s; log:\n%s", path, sl_th_log(th));
    assert_int_equal(sl_cap_reader_info(b)->format, SL_CAP_FMT_NDJSON);
    sl_cap_rec_t ra, rb;
    uint64_t n = 0, ts0 = 0, at0 = 0;
    while (sl_cap_reader_next(a, &ra) == 0) {
        assert_int_equal(sl_cap_reader_next(b, &rb), 0);
        assert_int_equal(ra.topic_len, rb.topic_len);
        assert_memory_equal(ra.topic, rb.topic, ra.topic_len);
        assert_int_equal(ra.payload_len, rb.payload_len);
        assert_memory_equal(ra.payload, rb.payload, ra.payload_len);
        if (n++ == 0)
            ts0 = ra.ts_ns, at0 = rb.ts_ns;
        uint64_t recorded = (ra.ts_ns - ts0) / 2, replayed = rb.ts_ns - at0;
        if (replayed + 2000000 < recorded) /* 2 ms for the wall clock's steps against the monotonic one */
            fail_msg("record %llu emitted %llu ns after the first, due at %llu", (unsigned long long)n - 1,
                     (unsigned long long)replayed, (unsigned long long)recorded);
    }
    assert_int_equal(sl_cap_reader_next(b, &rb), SL_EOF);
    assert_int_equal(n, 600);
    sl_cap_reader_destroy(a);
    sl_cap_reader_destroy(b);
}

/* The source's count in the last summary line ("fleet out 9539", "fleet out 12.5k"). */
static double summary_out(sl_th_t *th)
{
    const char *log = sl_th_log(th), *last = NULL;
    for (const char *p = log; (p = strstr(p, "[summary] fleet out ")) != NULL; p++)
        last = p;
    if (last == NULL)
        return 0;
    char *end;
    double v = strtod(last + strlen("[summary] fleet out "), &end);
    return *end == 'k' ? v * 1e3 : *end == 'M' ? v * 1e6 : v;
}

static bool emitted_3000(void *th) { return summary_out(th) >= 3000; }

static void test_killed_replay_resumes(void **state)
{
    sl_th_t *th = *state;
    char cap[300];
    /* 1.5 s of recorded time at speed 1, so the kill lands mid-stream. */
    const char *opts[] = {"-n", "30000", "-d", "100", "-r", "20000", NULL};
    gen(th, "k.cap", cap, sizeof cap, opts);
    sl_th_config(th,
                 "pipeline: { name: resume }\n"
                 "metrics: { summary_interval: 100ms }\n"
                 "sources: [ { name: fleet, type: replay, file: %s, concurrency: 2, key_level: 1 } ]\n"
                 "sinks: [ { name: out, type: null, from: fleet, concurrency: 2, dispatcher: partition,\n"
                 "           partition_by: key, verify_sequence: true } ]\n",
                 cap);
    const char *args[] = {"run", "-c", th->cfg, "-v", NULL};
    sl_th_start_argv(th, args);
    /* wait until both instances have emitted, so the successor has something to skip */
    assert_true(sl_th_until(emitted_3000, th, 30000));
    pid_t victim = sl_th_worker_pid(th, "fleet#1");
    assert_true(victim > 0);
    assert_int_equal(kill(victim, SIGKILL), 0);
    assert_true(sl_th_wait_log(th, "[fleet#1] resuming after the", 30000));
    if (!sl_th_wait(th, 60000) || !WIFEXITED(th->status) || WEXITSTATUS(th->status) != 0)
        fail_msg("status 0x%x; log:\n%s", th->status, sl_th_log(th));
    assert_verified(th, 30000, 0, 0);
}

static void test_text_samples(void **state)
{
    sl_th_t *th = *state;
    const char *src = getenv("SLUICE_SRC");
    static const struct {
        const char *file;
        uint64_t events, corrupt;
    } s[] = {{"sample.ndjson", 4, 1}, {"sample.mosq", 5, 0}, {"sensors.cap.gz", 20, 0}};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        char path[512], want[700];
        snprintf(path, sizeof path, "%s/tests/capture/%s", src ? src : ".", s[i].file);
        sl_th_config(th, "pipeline: { name: samples }\n"
                         "sources: [ { name: fleet, type: generator } ]\n"
                         "sinks: [ { name: out, type: null, from: fleet } ]\n");
        const char *args[] = {"replay", path, "-c", th->cfg, "--speed", "0", "--key-level", "1", NULL};
        assert_int_equal(run_args(th, args, 30000), 0);
        snprintf(want, sizeof want, "replayed %llu events from %s in 1 pass; %llu corrupt",
                 (unsigned long long)s[i].events, path, (unsigned long long)s[i].corrupt);
        if (strstr(sl_th_log(th), want) == NULL)
            fail_msg("no \"%s\" in the log:\n%s", want, sl_th_log(th));
    }
}

/* topic_template + key_from on a replay source: the key and attributes as the mqtt source would make them,
 * without repeating an attribute the record already carries (sample.ndjson's dev-3 has device_id). */
static void test_template_key_attributes(void **state)
{
    sl_th_t *th = *state;
    const char *src = getenv("SLUICE_SRC");
    sl_th_config(th,
                 "pipeline: { name: tpl }\n"
                 "metrics: { enabled: false }\n"
                 "sources: [ { name: fleet, type: replay, file: %s/tests/capture/sample.ndjson, speed: 0,\n"
                 "             topic_template: \"factory/{device_id}/{kind}\", key_from: device_id } ]\n"
                 "sinks: [ { name: out, type: stdout, from: fleet } ]\n",
                 src ? src : ".");
    const char *args[] = {"run", "-c", th->cfg, NULL};
    assert_int_equal(run_args(th, args, 30000), 0);
    static const char *const want[] = {
        "\"key\":\"dev-1\",\"qos\":0,",
        "\"key\":\"dev-3\",\"qos\":1,",
        "\"attributes\":{\"device_id\":\"dev-3\",\"kind\":\"telemetry\"}",
        "\"attributes\":{\"device_id\":\"dev-2\",\"kind\":\"telemetry\"}",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (strstr(sl_th_log(th), want[i]) == NULL)
            fail_msg("no %s in the log:\n%s", want[i], sl_th_log(th));
}

static void test_loops_start_count(void **state)
{
    sl_th_t *th = *state;
    char cap[300];
    const char *opts[] = {"-n", "100", "-d", "5", NULL};
    gen(th, "l.cap", cap, sizeof cap, opts);
    sl_th_config(th, "pipeline: { name: loops }\n"
                     "sources: [ { name: fleet, type: generator } ]\n"
                     "sinks: [ { name: out, type: null, from: fleet } ]\n");
    /* Three passes from record 40: 3 x 60 events. */
    const char *a1[] = {"replay", cap, "-c", th->cfg, "-s", "0", "--loop=3", "--start", "40", NULL};
    assert_int_equal(run_args(th, a1, 30000), 0);
    assert_non_null(strstr(sl_th_log(th), "[out#0] took 180 events"));
    /* Forever, stopped by --count. */
    const char *a2[] = {"replay", cap, "-c", th->cfg, "-s", "0", "--loop", "--count", "1234", NULL};
    assert_int_equal(run_args(th, a2, 30000), 0);
    assert_non_null(strstr(sl_th_log(th), "[out#0] took 1234 events"));
    /* A start time past the end: nothing to emit, and it ends rather than spinning. */
    const char *a3[] = {"replay", cap, "-c", th->cfg, "-s", "0", "--loop", "--start", "1h", NULL};
    assert_int_equal(run_args(th, a3, 30000), 0);
    assert_non_null(strstr(sl_th_log(th), "[out#0] took 0 events"));
}

static void test_unreadable_does_not_start(void **state)
{
    sl_th_t *th = *state;
    sl_th_config(th, "%s", relay_cfg);
    char path[300];
    snprintf(path, sizeof path, "%s/missing.cap", th->dir);
    const char *args[] = {"replay", path, "-c", th->cfg, NULL};
    assert_int_equal(run_args(th, args, 30000), 2);
    assert_non_null(strstr(sl_th_log(th), "cannot read"));
    /* The same through a config: the worker cannot start, the pipeline stops with 1, no respawn loop. */
    sl_th_config(th,
                 "pipeline: { name: missing }\n"
                 "sources: [ { name: fleet, type: replay, file: %s } ]\n"
                 "sinks: [ { name: out, type: null, from: fleet } ]\n",
                 path);
    const char *a2[] = {"run", "-c", th->cfg, NULL};
    assert_int_equal(run_args(th, a2, 30000), 1);
    assert_int_equal(sl_th_log_count(th, "cannot read capture"), 1);
}

/* A free TCP port on 127.0.0.1 (bound, then released), or 0. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* mosquitto on a free port, started by PID in the test's directory; returns its PID (port in *port). */
static pid_t start_mosquitto(sl_th_t *th, int *port)
{
    char conf[400], log[400];
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", th->dir);
    snprintf(log, sizeof log, "%s/mosquitto.log", th->dir);
    *port = free_port();
    assert_true(*port > 0);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    /* A receive maximum of 1000 (mosquitto's default, 20, holds a QoS 1 publisher to ~700 messages/s). */
    fprintf(f, "listener %d 127.0.0.1\nallow_anonymous true\nuser %s\nmax_inflight_messages 1000\n", *port,
            getenv("USER") ? getenv("USER") : "root");
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execlp("mosquitto", "mosquitto", "-c", conf, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* sluice record: an mqtt source's messages into a capture until --count, then a clean drain. */
static void test_record_from_mosquitto(void **state)
{
    sl_th_t *th = *state;
    int port;
    pid_t mq = start_mosquitto(th, &port);
    char cap[300];
    snprintf(cap, sizeof cap, "%s/rec.cap.gz", th->dir);
    sl_th_config(th,
                 "pipeline: { name: rec }\n"
                 "sources:\n"
                 "  - { name: broker, type: mqtt, urls: \"tcp://127.0.0.1:%d\", topics: \"factory/#\", qos: 1,\n"
                 "      topic_template: \"factory/{device_id}/telemetry\", key_from: device_id,\n"
                 "      reconnect_min: 10ms, reconnect_max: 100ms }\n"
                 "stages: [ { name: dec, type: decode, from: broker } ]\n"
                 "sinks: [ { name: out, type: null, from: dec } ]\n",
                 port);
    /* The topic's retained message is seq 0: the subscription delivers it first, with the retain flag. */
    char cmd[300];
    snprintf(cmd, sizeof cmd,
             "for t in $(seq 100); do mosquitto_pub -p %d -q 1 -r -t factory/dev-7/telemetry -m '{\"seq\":0}' "
             "2>/dev/null && exit 0; sleep 0.1; done; exit 1",
             port);
    assert_int_equal(system(cmd), 0); /* retried while mosquitto starts */
    const char *args[] = {"record", "-c", th->cfg, "-o", cap, "--count", "50", "--gzip", NULL};
    sl_th_start_argv(th, args);
    bool up = sl_th_wait_log(th, "subscribed to 1 filter", 30000);
    /* 60 more messages (seq 1-60), 11 past the limit (acknowledged, not written). */
    snprintf(cmd, sizeof cmd,
             "for i in $(seq 1 60); do echo \"{\\\"seq\\\":$i}\"; done | "
             "mosquitto_pub -p %d -q 1 -t factory/dev-7/telemetry -l",
             port);
    int pub = up ? system(cmd) : -1;
    bool ended = sl_th_wait(th, 30000);
    kill(mq, SIGTERM);
    waitpid(mq, NULL, 0);
    if (!up || pub != 0 || !ended || !WIFEXITED(th->status) || WEXITSTATUS(th->status) != 0)
        fail_msg("up %d, mosquitto_pub %d, ended %d, status 0x%x; log:\n%s", up, pub, ended, th->status, sl_th_log(th));
    assert_non_null(strstr(sl_th_log(th), "count reached after 50 records"));
    sl_cap_reader_t *rd;
    assert_int_equal(sl_cap_reader_open(cap, &rd), 0);
    assert_true(sl_cap_reader_info(rd)->gzip);
    assert_non_null(strstr(sl_cap_reader_info(rd)->desc, "source \"broker\" (mqtt)"));
    sl_cap_rec_t r;
    uint64_t n = 0;
    while (sl_cap_reader_next(rd, &r) == 0) {
        char want[32];
        int wl = snprintf(want, sizeof want, "{\"seq\":%llu}", (unsigned long long)n);
        assert_int_equal(r.payload_len, wl);
        assert_memory_equal(r.payload, want, (size_t)wl);
        assert_int_equal(r.topic_len, strlen("factory/dev-7/telemetry"));
        assert_int_equal(r.qos, 1);
        assert_true(r.ts_ns > 0);
        assert_int_equal(r.props_len, 4 + 9 + 5); /* device_id=dev-7 from the topic template */
        assert_memory_equal(r.props + 4, "device_iddev-7", 14);
        assert_int_equal(r.flags, n == 0 ? SL_CAP_F_RETAIN : 0); /* the retained one is recorded as such */
        n++;
    }
    assert_int_equal(n, 50);
    sl_cap_reader_destroy(rd);
}

/* sluice gen --mqtt -> broker -> sluice record -> capture -> sluice replay -> null verify: nothing lost. */
static void test_gen_to_broker_recorded(void **state)
{
    sl_th_t *th = *state;
    int port;
    pid_t mq = start_mosquitto(th, &port);
    char cap[300], url[64];
    snprintf(cap, sizeof cap, "%s/fleet.cap", th->dir);
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    sl_th_config(th,
                 "pipeline: { name: rec }\n"
                 "sources: [ { name: broker, type: mqtt, urls: \"%s\", topics: \"fleet/#\", qos: 1,\n"
                 "             reconnect_min: 10ms, reconnect_max: 100ms } ]\n"
                 "sinks: [ { name: out, type: null, from: broker } ]\n",
                 url);
    const char *rec[] = {"record", "-c", th->cfg, "-o", cap, "--count", "2000", NULL};
    sl_th_start_argv(th, rec);
    bool up = sl_th_wait_log(th, "subscribed to 1 filter", 30000);
    sl_th_t pub = *th; /* gen's own log, beside record's */
    snprintf(pub.log, sizeof pub.log, "%s/gen.log", th->dir);
    pub.pid = 0;
    const char *gen_args[] = {"gen", "--mqtt", url, "-n", "2000", "-d", "20", "-r", "4000", "--qos", "1", NULL};
    int gen_rc = up ? run_args(&pub, gen_args, 60000) : -1;
    bool ended = sl_th_wait(th, 30000);
    kill(mq, SIGTERM);
    waitpid(mq, NULL, 0);
    if (!up || gen_rc != 0 || !ended || !WIFEXITED(th->status) || WEXITSTATUS(th->status) != 0)
        fail_msg("up %d, gen %d (%s), ended %d, status 0x%x; log:\n%s", up, gen_rc, sl_th_log(&pub), ended, th->status,
                 sl_th_log(th));
    sl_th_config(th, "%s", relay_cfg);
    const char *args[] = {"replay", cap, "-c", th->cfg, "--speed", "0", "--key-level", "1", NULL};
    assert_int_equal(run_args(th, args, 60000), 0);
    assert_verified(th, 2000, 0, 0);
}

/* sluice replay FILE --mqtt: a capture published to a broker, recorded again: the same messages in order. */
static void test_replay_to_broker(void **state)
{
    sl_th_t *th = *state;
    char src[300], again[300], url[64];
    const char *opts[] = {"-n", "500", "-d", "5", "-r", "5000", "-p", "mixed", NULL};
    gen(th, "src.cap", src, sizeof src, opts);
    int port;
    pid_t mq = start_mosquitto(th, &port);
    snprintf(again, sizeof again, "%s/again.cap", th->dir);
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    sl_th_config(th,
                 "pipeline: { name: rec }\n"
                 "sources: [ { name: broker, type: mqtt, urls: \"%s\", topics: \"fleet/#\", qos: 2,\n"
                 "             reconnect_min: 10ms, reconnect_max: 100ms } ]\n"
                 "sinks: [ { name: out, type: null, from: broker } ]\n",
                 url);
    const char *rec[] = {"record", "-c", th->cfg, "-o", again, "--count", "500", NULL};
    sl_th_start_argv(th, rec);
    bool up = sl_th_wait_log(th, "subscribed to 1 filter", 30000);
    sl_th_t pub = *th;
    snprintf(pub.log, sizeof pub.log, "%s/pub.log", th->dir);
    pub.pid = 0;
    const char *args[] = {"replay", src, "--mqtt", url, "--speed", "10", NULL};
    int pub_rc = up ? run_args(&pub, args, 60000) : -1;
    bool ended = sl_th_wait(th, 30000);
    kill(mq, SIGTERM);
    waitpid(mq, NULL, 0);
    if (!up || pub_rc != 0 || !ended || !WIFEXITED(th->status) || WEXITSTATUS(th->status) != 0)
        fail_msg("up %d, replay %d (%s), ended %d, status 0x%x; log:\n%s", up, pub_rc, sl_th_log(&pub), ended,
                 th->status, sl_th_log(th));
    sl_cap_reader_t *a, *b;
    assert_int_equal(sl_cap_reader_open(src, &a), 0);
    assert_int_equal(sl_cap_reader_open(again, &b), 0);
    sl_cap_rec_t ra, rb;
    int n = 0;
    while (sl_cap_reader_next(a, &ra) == 0) {
        assert_int_equal(sl_cap_reader_next(b, &rb), 0);
        assert_int_equal(ra.topic_len, rb.topic_len);
        assert_memory_equal(ra.topic, rb.topic, ra.topic_len);
        assert_int_equal(ra.payload_len, rb.payload_len);
        assert_memory_equal(ra.payload, rb.payload, ra.payload_len);
        assert_int_equal(ra.props_len, rb.props_len); /* device_id, as a user property and back */
        assert_memory_equal(ra.props, rb.props, ra.props_len);
        n++;
    }
    assert_int_equal(n, 500);
    sl_cap_reader_destroy(a);
    sl_cap_reader_destroy(b);
}

/* Runs `sluice verify ARGS...` in th2 (its own log); returns its exit code and leaves its output there. */
static int verify(sl_th_t *th, sl_th_t *th2, const char *const *args)
{
    *th2 = *th;
    snprintf(th2->log, sizeof th2->log, "%s/verify.log", th->dir);
    th2->pid = 0;
    const char *argv[16] = {"verify"};
    size_t n = 1;
    while (*args && n < 15)
        argv[n++] = *args++;
    argv[n] = NULL;
    return run_args(th2, argv, 60000);
}

/*
 * The capture sink acknowledges only what is in the file: SIGKILL it mid-stream (a generator at 40k/s,
 * 200,000 events), and every sequence number is in the capture afterwards (what it had not acknowledged
 * is delivered again to its successor, which cuts what the kill left half-written), checked by
 * `sluice verify`. Plain and gzip.
 */
static bool past_200k(void *path)
{
    struct stat st;
    return stat(path, &st) == 0 && st.st_size >= 200000;
}

static void capture_sink_killed(sl_th_t *th, int gzip)
{
    char cap[300];
    snprintf(cap, sizeof cap, "%s/killed.cap%s", th->dir, gzip ? ".gz" : "");
    sl_th_config(th,
                 "pipeline: { name: capkill }\n"
                 "sources: [ { name: fleet, type: generator, count: 200000, rate: 40000, devices: 100 } ]\n"
                 "sinks: [ { name: rec, type: capture, from: fleet, file: %s, gzip_level: %d } ]\n",
                 cap, gzip);
    const char *args[] = {"run", "-c", th->cfg, "-v", NULL};
    sl_th_start_argv(th, args);
    assert_true(sl_th_until(past_200k, cap, 30000)); /* the capture has grown past a few batches */
    pid_t victim = sl_th_worker_pid(th, "rec#0");
    assert_true(victim > 0);
    assert_int_equal(kill(victim, SIGKILL), 0);
    if (!sl_th_wait(th, 60000) || !WIFEXITED(th->status) || WEXITSTATUS(th->status) != 0)
        fail_msg("status 0x%x; log:\n%s", th->status, sl_th_log(th));
    uint64_t restarts = 0;
    assert_true(sl_th_log_number(th, "[total]", "restarts ", &restarts));
    assert_int_equal(restarts, 1); /* it was killed while the stream ran, and came back */
    sl_th_t v;
    const char *vargs[] = {"--expect", "200000", cap, NULL};
    int rc = verify(th, &v, vargs);
    char out[2048];
    snprintf(out, sizeof out, "%s", sl_th_log(&v)); /* sl_th_log's buffer is replaced by the next call */
    if (rc != 0 || strstr(out, "lost 0,") == NULL || strstr(out, "corrupt 0") == NULL)
        fail_msg("verify exited %d: %s\nrun log:\n%s", rc, out, sl_th_log(th));
}

static void test_capture_sink_killed(void **state) { capture_sink_killed(*state, 0); }
static void test_capture_sink_killed_gzip(void **state) { capture_sink_killed(*state, 6); }

/* sluice verify: lost, duplicates and corrupt records are found and set the exit status. */
static void test_verify_command(void **state)
{
    sl_th_t *th = *state, v;
    char a[300], b[300], dir_path[300], cmd[1024];
    snprintf(dir_path, sizeof dir_path, "%s/files", th->dir);
    assert_int_equal(mkdir(dir_path, 0755), 0);
    const char *opts[] = {"-n", "1000", "-d", "10", "-p", "mixed", "--seed", "5", NULL};
    gen(th, "files/a.cap", a, sizeof a, opts);
    gen(th, "files/b.cap.gz", b, sizeof b, opts); /* the same messages again, gzip */
    const char *ok[] = {"--expect", "1000", a, NULL};
    assert_int_equal(verify(th, &v, ok), 0);
    assert_non_null(strstr(sl_th_log(&v), "1 files, 1000 records from 10 devices: 1000 distinct of 1000 expected, "
                                          "lost 0, duplicates 0, unparseable 0, corrupt 0"));
    const char *short_of[] = {"--expect", "1010", a, NULL}; /* one more message per device than there is */
    assert_int_equal(verify(th, &v, short_of), 1);
    assert_non_null(strstr(sl_th_log(&v), "lost 10,"));
    const char *dir[] = {"--expect", "1000", dir_path, NULL}; /* both files: every message twice */
    assert_int_equal(verify(th, &v, dir), 0);
    assert_non_null(strstr(sl_th_log(&v), "2000 records from 10 devices: 1000 distinct of 1000 expected, lost 0, "
                                          "duplicates 1000"));
    /* Record 500 of a damaged copy: one corrupt record, so its message is lost too. */
    sl_cap_reader_t *rd;
    sl_cap_rec_t r;
    assert_int_equal(sl_cap_reader_open(a, &rd), 0);
    while (sl_cap_reader_next(rd, &r) == 0 && r.index < 500)
        ;
    uint64_t at = r.offset + 20;
    sl_cap_reader_destroy(rd);
    snprintf(cmd, sizeof cmd, "cp %s %s/c.cap && printf 'X' | dd of=%s/c.cap bs=1 seek=%llu conv=notrunc 2>/dev/null",
             a, th->dir, th->dir, (unsigned long long)at);
    assert_int_equal(system(cmd), 0);
    char damaged[300];
    snprintf(damaged, sizeof damaged, "%s/c.cap", th->dir);
    const char *bad[] = {"--expect", "1000", damaged, NULL};
    assert_int_equal(verify(th, &v, bad), 1);
    assert_non_null(strstr(sl_th_log(&v), "corrupt record 500 at byte"));
    assert_non_null(strstr(sl_th_log(&v), "lost 1, duplicates 0, unparseable 0, corrupt 1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gen_replay_nothing_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_fraction_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_record_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_json_to_ndjson_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recorded_timing_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_replay_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_samples, setup, teardown),
        cmocka_unit_test_setup_teardown(test_template_key_attributes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loops_start_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_does_not_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_from_mosquitto, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gen_to_broker_recorded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_to_broker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capture_sink_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capture_sink_killed_gzip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_command, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
