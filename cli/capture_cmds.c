/*
 * `sluice gen`: a synthetic fleet into a capture file. `sluice replay`: a capture through a pipeline
 * config, in place of its sources.
 *
 * gen writes the recorded timeline it is asked for (rate, bursts) as the records' receive times, as fast
 * as the disk allows; replaying the file at speed 1 reproduces that rate. Device d's n-th message carries
 * "seq":n, round robin over the devices, so a `null` sink with verify_sequence counts loss and duplicates;
 * malformed payloads (a given fraction, chosen by a seeded generator, so a file is reproducible) keep
 * their device and sequence but are not valid JSON.
 *
 * replay loads the config, turns every source node into a `replay` node on FILE (keeping its name, its
 * concurrency and, for mqtt sources, its topic_template and key_from, so keys and attributes come out as
 * they would live), and runs the pipeline as `sluice run` would. The schema's defaults of the replay type
 * fill the keys the command line does not set.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/capture_cmds.h"
#include "config/config_int.h"
#include "ingest/capture/capture.h"
#include "stages/stages.h"

/* ---- sluice gen -------------------------------------------------------------------------------------- */

#define SL_GEN_PROFILE_MAP(X) \
    X(SENSOR, "sensor")       \
    X(LORAWAN, "lorawan")     \
    X(BINARY, "binary")       \
    X(MIXED, "mixed")

typedef enum sl_gen_profile_e {
#define SL_GEN_PROFILE_ENUM(name, text) SL_GEN_##name,
    SL_GEN_PROFILE_MAP(SL_GEN_PROFILE_ENUM)
#undef SL_GEN_PROFILE_ENUM
} sl_gen_profile_t;

static const char *const sl__gen_profiles[] = {
#define SL_GEN_PROFILE_TEXT(name, text) text,
    SL_GEN_PROFILE_MAP(SL_GEN_PROFILE_TEXT)
#undef SL_GEN_PROFILE_TEXT
};

typedef struct sl_genopt_s {
    const char *out, *mqtt;
    uint64_t devices, count, duration_ns, burst, burst_every_ns, seed;
    double rate, malformed;
    sl_gen_profile_t profile;
    int gzip, qos;
} sl_genopt_t;

typedef struct sl_genrun_s {
    uint64_t rng;
    uint64_t malformed, bytes, confirmed, failed;
    char payload[2048];
} sl_genrun_t;

static uint64_t sl__rand(sl_genrun_t *g)
{
    g->rng ^= g->rng >> 12, g->rng ^= g->rng << 25, g->rng ^= g->rng >> 27; /* xorshift64* */
    return g->rng * UINT64_C(2685821657736338717);
}
static double sl__rand01(sl_genrun_t *g) { return (double)(sl__rand(g) >> 11) / 9007199254740992.0; }

static void sl__iso_time(uint64_t ns, char *buf, size_t len)
{
    time_t s = (time_t)(ns / SL_NS_PER_S);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%09lluZ", (unsigned long long)(ns % SL_NS_PER_S));
}

static int sl__gen_sensor(sl_genrun_t *g, uint64_t dev, uint64_t seq, uint64_t ts)
{
    return snprintf(g->payload, sizeof g->payload,
                    "{\"device\":\"dev-%07llu\",\"seq\":%llu,\"ts\":%llu,\"temp\":%.2f,\"hum\":%.1f,\"bat\":%.2f,"
                    "\"rssi\":%d,\"fw\":\"1.4.2\",\"status\":\"ok\",\"loc\":[52.%04u,4.%04u]}",
                    (unsigned long long)dev, (unsigned long long)seq, (unsigned long long)(ts / SL_NS_PER_MS),
                    15 + 15 * sl__rand01(g), 20 + 60 * sl__rand01(g), 3.3 + 0.9 * sl__rand01(g),
                    -40 - (int)(sl__rand(g) % 80), (unsigned)(sl__rand(g) % 10000), (unsigned)(sl__rand(g) % 10000));
}

/* A The Things Stack v3 style uplink with two gateways: about 1 KiB of nested JSON. */
static int sl__gen_lorawan(sl_genrun_t *g, uint64_t dev, uint64_t seq, uint64_t ts)
{
    char at[40];
    sl__iso_time(ts, at, sizeof at);
    int n = snprintf(g->payload, sizeof g->payload,
                     "{\"seq\":%llu,\"end_device_ids\":{\"device_id\":\"dev-%07llu\",\"application_ids\":"
                     "{\"application_id\":\"fleet\"},\"dev_eui\":\"70B3D57ED%07llX\",\"join_eui\":\"0000000000000000\","
                     "\"dev_addr\":\"260B%04X\"},\"received_at\":\"%s\",\"uplink_message\":{\"f_port\":2,"
                     "\"f_cnt\":%llu,\"frm_payload\":\"AQIDBAUGBwgJCgsM\",\"decoded_payload\":{\"temperature\":%.2f,"
                     "\"humidity\":%.1f,\"battery\":%.2f,\"motion\":%s},\"rx_metadata\":[",
                     (unsigned long long)seq, (unsigned long long)dev, (unsigned long long)dev,
                     (unsigned)(dev & 0xFFFF), at, (unsigned long long)seq, 15 + 15 * sl__rand01(g),
                     20 + 60 * sl__rand01(g), 3.3 + 0.9 * sl__rand01(g), sl__rand(g) & 1 ? "true" : "false");
    for (int gw = 0; gw < 2; gw++)
        n +=
            snprintf(g->payload + n, sizeof g->payload - (size_t)n,
                     "%s{\"gateway_ids\":{\"gateway_id\":\"gw-%02d\",\"eui\":\"B827EBFFFE%06X\"},\"time\":\"%s\","
                     "\"timestamp\":%u,\"rssi\":%d,\"channel_rssi\":%d,\"snr\":%.1f,\"location\":{\"latitude\":52.%04u,"
                     "\"longitude\":4.%04u,\"altitude\":%d,\"source\":\"SOURCE_REGISTRY\"},\"channel_index\":%d}",
                     gw ? "," : "", gw, (unsigned)(sl__rand(g) & 0xFFFFFF), at, (unsigned)(sl__rand(g) >> 32),
                     -60 - gw * 20, -60 - gw * 20, 9.5 - 4 * gw, (unsigned)(sl__rand(g) % 10000),
                     (unsigned)(sl__rand(g) % 10000), 3 + gw, (int)(sl__rand(g) % 8));
    n += snprintf(g->payload + n, sizeof g->payload - (size_t)n,
                  "],\"settings\":{\"data_rate\":{\"lora\":{\"bandwidth\":125000,\"spreading_factor\":%d,"
                  "\"coding_rate\":\"4/5\"}},\"frequency\":\"868%d00000\"},\"consumed_airtime\":\"0.061696s\","
                  "\"network_ids\":{\"net_id\":\"000013\",\"tenant_id\":\"ttn\",\"cluster_id\":\"eu1\"}}}",
                  7 + (int)(sl__rand(g) % 6), 1 + (int)(sl__rand(g) % 5));
    return n;
}

/* A packed binary reading: magic, device, seq, ms time, six int16 channels, then noise to 64 bytes. */
static int sl__gen_binary(sl_genrun_t *g, uint64_t dev, uint64_t seq, uint64_t ts)
{
    uint8_t *p = (uint8_t *)g->payload;
    uint64_t ms = ts / SL_NS_PER_MS;
    p[0] = 0xB1, p[1] = 0x0B;
    for (int i = 0; i < 4; i++)
        p[2 + i] = (uint8_t)(dev >> (8 * i));
    for (int i = 0; i < 8; i++)
        p[6 + i] = (uint8_t)(seq >> (8 * i)), p[14 + i] = (uint8_t)(ms >> (8 * i));
    for (int i = 22; i < 64; i++)
        p[i] = (uint8_t)sl__rand(g);
    return 64;
}

/* Breaks a JSON payload in one of three ways, each certainly invalid; the device and seq stay. */
static int sl__gen_break(sl_genrun_t *g, int n)
{
    switch (sl__rand(g) % 3) {
    case 0: return n - 1 - (int)(sl__rand(g) % 8);          /* truncated: the closing brace is gone */
    case 1: g->payload[n - 3] = (char)0xFF; return n;       /* invalid UTF-8 inside the last string or number */
    default: memcpy(g->payload + n, "}}", 2); return n + 2; /* trailing garbage */
    }
}

static int sl__gen_payload(sl_genrun_t *g, const sl_genopt_t *o, uint64_t dev, uint64_t seq, uint64_t ts,
                           uint8_t *flags)
{
    sl_gen_profile_t p = o->profile;
    if (p == SL_GEN_MIXED) {
        double r = sl__rand01(g);
        p = r < 0.80 ? SL_GEN_SENSOR : r < 0.95 ? SL_GEN_LORAWAN : SL_GEN_BINARY;
    }
    *flags = 0;
    if (p == SL_GEN_BINARY) {
        *flags = SL_CAP_F_BINARY;
        return sl__gen_binary(g, dev, seq, ts);
    }
    int n = p == SL_GEN_SENSOR ? sl__gen_sensor(g, dev, seq, ts) : sl__gen_lorawan(g, dev, seq, ts);
    if (o->malformed > 0 && sl__rand01(g) < o->malformed) {
        g->malformed++;
        n = sl__gen_break(g, n);
    }
    return n;
}

static void sl__gen_progress(const char *what, uint64_t done, uint64_t total, uint64_t t0, bool last)
{
    double secs = (double)(sl_now_ns() - t0) / 1e9, rate = secs > 0 ? (double)done / secs : 0;
    double left = rate > 0 ? (double)(total - done) / rate : 0;
    fprintf(stderr, "\r%s: %llu/%llu records, %.0f/s, ETA %um%02us%s", what, (unsigned long long)done,
            (unsigned long long)total, rate, (unsigned)(left / 60), (unsigned)left % 60, last ? "\n" : "   ");
}

/* Where the fleet goes: a capture file, or a broker (paced to the recorded timeline in real time). */
typedef struct sl_genout_s {
    sl_cap_writer_t *w;
    sl_cap_pub_t *pub;
    int qos;
    uint64_t t0_mono, t0_wall;
} sl_genout_t;

static int sl__gen_open(const sl_genopt_t *o, const char *desc, sl_genout_t *out)
{
    int rc;
    if (o->mqtt != NULL) {
        out->qos = o->qos;
        if ((rc = sl_cap_pub_open(o->mqtt, NULL, &out->pub)) != 0)
            sl_log(SL_LOG_ERROR, "gen", rc, "cannot connect to %s", o->mqtt);
        return rc;
    }
    sl_cap_wopts_t wo = {.gzip_level = o->gzip, .desc = desc};
    if ((rc = sl_cap_writer_open(o->out, &wo, &out->w)) != 0)
        sl_log(SL_LOG_ERROR, "gen", rc, "cannot create %s", o->out);
    return rc;
}

static int sl__gen_put(sl_genout_t *out, const sl_cap_rec_t *r)
{
    if (out->w != NULL)
        return sl_cap_writer_put(out->w, r);
    uint64_t due = out->t0_mono + (r->ts_ns > out->t0_wall ? r->ts_ns - out->t0_wall : 0), now = sl_now_ns();
    if (due > now) {
        struct timespec ts = {(time_t)((due - now) / SL_NS_PER_S), (long)((due - now) % SL_NS_PER_S)};
        nanosleep(&ts, NULL); /* pacing a publisher to its timeline, not waiting for a condition */
    }
    return sl_cap_pub_put(out->pub, r, out->qos);
}

static int sl__gen_close(sl_genout_t *out, sl_genrun_t *g)
{
    if (out->w != NULL) {
        g->bytes = sl_cap_writer_bytes(out->w);
        return sl_cap_writer_close(out->w);
    }
    int rc = sl_cap_pub_close(out->pub, &g->confirmed, &g->failed);
    return rc == 0 && g->failed == 0 ? 0 : SL_EIO;
}

/* Writes or publishes the fleet. Returns 0 or a negative code (logged). */
static int sl__gen_write(const sl_genopt_t *o, sl_genrun_t *g)
{
    char desc[256], topic[64];
    snprintf(desc, sizeof desc, "sluice gen: %llu devices, profile %s, rate %g/s, malformed %g, seed %llu",
             (unsigned long long)o->devices, sl__gen_profiles[o->profile], o->rate, o->malformed,
             (unsigned long long)o->seed);
    sl_genout_t out = {0};
    int rc = sl__gen_open(o, desc, &out);
    if (rc != 0)
        return rc;
    const char *what = o->mqtt ? o->mqtt : o->out;
    bool tty = isatty(2);
    uint64_t t0 = sl_now_ns(), next_progress = t0, start = sl_wall_ns(), burst_left = 0, burst_ts = 0;
    uint64_t next_burst = o->burst ? start + o->burst_every_ns : UINT64_MAX;
    out.t0_mono = t0;
    out.t0_wall = start;
    double vt = 0; /* recorded time since start, ns */
    uint8_t props[64];
    for (uint64_t i = 0; i < o->count && rc == 0; i++) {
        uint64_t dev = i % o->devices, seq = i / o->devices, ts;
        if (burst_left > 0) {
            burst_left--;
            ts = burst_ts;
        } else {
            vt += o->rate > 0 ? 1e9 / o->rate : 0;
            ts = o->rate > 0 ? start + (uint64_t)vt : sl_wall_ns();
            if (ts >= next_burst) { /* this one opens a burst: burst - 1 more at the same instant */
                burst_ts = ts;
                burst_left = o->burst - 1;
                next_burst += o->burst_every_ns;
            }
        }
        snprintf(topic, sizeof topic, "fleet/dev-%07llu/telemetry", (unsigned long long)dev);
        size_t pl = 0;
        (void)sl_cap_attr_put(props, sizeof props, &pl, "device_id", 9, topic + 6, 11);
        sl_cap_rec_t r = {.ts_ns = ts,
                          .qos = (uint8_t)o->qos,
                          .topic = topic,
                          .topic_len = 27,
                          .props = props,
                          .props_len = (uint32_t)pl,
                          .payload = (const uint8_t *)g->payload};
        r.payload_len = (uint32_t)sl__gen_payload(g, o, dev, seq, ts, &r.flags);
        rc = sl__gen_put(&out, &r);
        if (tty && (i & 1023) == 0 && sl_now_ns() >= next_progress) {
            sl__gen_progress(what, i, o->count, t0, false);
            next_progress = sl_now_ns() + 250 * SL_NS_PER_MS;
        }
    }
    int crc = sl__gen_close(&out, g);
    if (rc == 0)
        rc = crc;
    if (tty)
        sl__gen_progress(what, rc == 0 ? o->count : 0, o->count, t0, true);
    if (rc != 0)
        sl_log(SL_LOG_ERROR, "gen", rc, "%s to %s failed", o->mqtt ? "publishing" : "writing", what);
    return rc;
}

static void sl__gen_usage(FILE *to)
{
    fprintf(to, "usage: sluice gen -o FILE | --mqtt URL [options]\n"
                "  -o, --output FILE       capture file to write (FILE.gz or --gzip: gzip-compressed)\n"
                "      --mqtt URL          or: publish to a broker (tcp://HOST:PORT, MQTT 5) at --rate in real time\n"
                "  -d, --devices N         simulated devices (default 1000)\n"
                "  -n, --count N           messages in all (default 100000)\n"
                "  -t, --duration D        or: messages for this long at --rate (10s, 5m)\n"
                "  -r, --rate R            messages per second in the recorded timeline (default 1000;\n"
                "                          0 = stamp each with the wall clock as it is written)\n"
                "  -p, --profile P         sensor (JSON, ~180 B), lorawan (nested JSON, ~1 KiB), binary (64 B),\n"
                "                          mixed (80/15/5 %%) (default sensor)\n"
                "  -m, --malformed F       fraction of JSON payloads made invalid (0..1, default 0)\n"
                "      --burst N           every --burst-every, N messages at the same instant\n"
                "      --burst-every D     (default 10s)\n"
                "  -z, --gzip[=LEVEL]      compress (level 1-9, default 6)\n"
                "      --qos N             QoS recorded for every message (default 1)\n"
                "      --seed N            seed of the random values (default 1): the same seed, the same file\n");
}

static int sl__gen_parse(int argc, char **argv, sl_genopt_t *o)
{
    static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                         {"devices", required_argument, NULL, 'd'},
                                         {"count", required_argument, NULL, 'n'},
                                         {"duration", required_argument, NULL, 't'},
                                         {"rate", required_argument, NULL, 'r'},
                                         {"profile", required_argument, NULL, 'p'},
                                         {"malformed", required_argument, NULL, 'm'},
                                         {"burst", required_argument, NULL, 'B'},
                                         {"burst-every", required_argument, NULL, 'E'},
                                         {"gzip", optional_argument, NULL, 'z'},
                                         {"qos", required_argument, NULL, 'Q'},
                                         {"seed", required_argument, NULL, 'S'},
                                         {"mqtt", required_argument, NULL, 'M'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    *o = (sl_genopt_t){
        .devices = 1000, .count = 100000, .rate = 1000, .burst_every_ns = 10 * SL_NS_PER_S, .seed = 1, .qos = 1};
    bool count_set = false;
    int c, bad = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:d:n:t:r:p:m:z::h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': o->out = optarg; break;
        case 'M': o->mqtt = optarg; break;
        case 'd': bad |= sl__parse_count(optarg, &o->devices) != 0 || o->devices == 0 || o->devices > 10000000; break;
        case 'n': bad |= sl__parse_count(optarg, &o->count) != 0, count_set = true; break;
        case 't': bad |= sl__parse_duration(optarg, &o->duration_ns) != 0; break;
        case 'r': bad |= sl__parse_double(optarg, &o->rate) != 0 || !(o->rate >= 0); break;
        case 'm':
            bad |= sl__parse_double(optarg, &o->malformed) != 0 || !(o->malformed >= 0 && o->malformed <= 1);
            break;
        case 'B': bad |= sl__parse_count(optarg, &o->burst) != 0; break;
        case 'E': bad |= sl__parse_duration(optarg, &o->burst_every_ns) != 0 || o->burst_every_ns == 0; break;
        case 'z': o->gzip = optarg ? atoi(optarg) : 6, bad |= o->gzip < 1 || o->gzip > 9; break;
        case 'Q': o->qos = atoi(optarg), bad |= o->qos < 0 || o->qos > 2; break;
        case 'S': bad |= sl__parse_count(optarg, &o->seed) != 0; break;
        case 'p':
            bad |= 1;
            for (size_t i = 0; i < SL_ARRAY_LEN(sl__gen_profiles); i++)
                if (strcmp(optarg, sl__gen_profiles[i]) == 0)
                    o->profile = (sl_gen_profile_t)i, bad &= ~1;
            break;
        case 'h': sl__gen_usage(stdout); return 1;
        default: sl__gen_usage(stderr); return SL_EINVAL;
        }
        if (bad) {
            fprintf(stderr, "sluice gen: bad value for -%c: \"%s\"\n", c, optarg ? optarg : "");
            return SL_EINVAL;
        }
    }
    if ((o->out == NULL) == (o->mqtt == NULL) || optind != argc) {
        fprintf(stderr, "sluice gen: %s\n",
                optind != argc ? "unexpected argument" : "give one of -o FILE and --mqtt URL");
        return SL_EINVAL;
    }
    if (o->duration_ns && !count_set) {
        if (o->rate <= 0) {
            fprintf(stderr, "sluice gen: --duration needs a --rate above 0\n");
            return SL_EINVAL;
        }
        o->count = (uint64_t)((double)o->duration_ns / 1e9 * o->rate);
    }
    size_t ol = o->out ? strlen(o->out) : 0;
    if (o->gzip == 0 && ol > 3 && strcmp(o->out + ol - 3, ".gz") == 0)
        o->gzip = 6;
    return 0;
}

int sl_cli_gen(int argc, char **argv)
{
    sl_genopt_t o;
    int rc = sl__gen_parse(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : SL_EXIT_FATAL;
    sl_genrun_t g = {.rng = o.seed * UINT64_C(0x9E3779B97F4A7C15) | 1};
    uint64_t t0 = sl_now_ns();
    if (sl__gen_write(&o, &g) != 0)
        return 1;
    if (o.mqtt)
        printf(
            "sluice gen: published %llu messages (%llu malformed, %llu confirmed) for %llu devices to %s in %.2f s\n",
            (unsigned long long)o.count, (unsigned long long)g.malformed, (unsigned long long)g.confirmed,
            (unsigned long long)o.devices, o.mqtt, (double)(sl_now_ns() - t0) / 1e9);
    else
        printf("sluice gen: wrote %llu records (%llu malformed, %llu bytes%s) for %llu devices to %s in %.2f s\n",
               (unsigned long long)o.count, (unsigned long long)g.malformed, (unsigned long long)g.bytes,
               o.gzip ? " before gzip" : "", (unsigned long long)o.devices, o.out, (double)(sl_now_ns() - t0) / 1e9);
    return 0;
}

/* ---- sluice replay ----------------------------------------------------------------------------------- */

typedef struct sl_replayopt_s {
    const char *file, *config, *mqtt, *speed, *loops, *start_record, *start_time, *count, *key_level, *key_from;
} sl_replayopt_t;

static const char *sl__param_of(const sl_conf_node_t *nd, const char *key)
{
    for (size_t i = 0; i < nd->n_params; i++)
        if (strcmp(nd->params[i].key, key) == 0)
            return nd->params[i].value;
    return NULL;
}

/*
 * Turns source node nd into a replay node: every key of the replay type, from the command line, from the
 * node (mqtt's topic_template and key_from), or the schema's default. *params is the caller's to free.
 */
static int sl__replay_node(sl_conf_node_t *nd, const sl_replayopt_t *o, bool progress, sl_conf_param_t **params)
{
    const sl__schema_t *sc = sl__schema_builtin();
    size_t n = 0;
    for (size_t i = 0; i < sc->n_keys; i++)
        n += strcmp(sc->keys[i].section, "sources.replay") == 0;
    sl_conf_param_t *p = calloc(n, sizeof *p);
    if (p == NULL)
        return SL_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < sc->n_keys; i++) {
        const sl__key_t *key = &sc->keys[i];
        if (strcmp(key->section, "sources.replay") != 0)
            continue;
        const char *v = key->def ? key->def : "";
#define SL__SET(name, val)                            \
    if (strcmp(key->key, name) == 0 && (val) != NULL) \
        v = (val);
        SL__SET("file", o->file)
        SL__SET("speed", o->speed)
        SL__SET("loops", o->loops)
        SL__SET("start_record", o->start_record)
        SL__SET("start_time", o->start_time)
        SL__SET("count", o->count)
        SL__SET("key_level", o->key_level)
        SL__SET("topic_template", sl__param_of(nd, "topic_template"))
        SL__SET("key_from", o->key_from ? o->key_from : sl__param_of(nd, "key_from"))
        SL__SET("progress", progress ? "true" : NULL)
#undef SL__SET
        p[k++] =
            (sl_conf_param_t){.key = key->key, .value = v, .line = nd->line, .col = nd->col, .kind = (int)key->kind};
    }
    nd->type = "replay";
    nd->params = p;
    nd->n_params = k;
    *params = p;
    return 0;
}

/* Checks the command-line values as the config loader would check them in a file. */
static const char *sl__replay_check(const sl_replayopt_t *o)
{
    uint64_t u;
    int64_t i;
    double d;
    if (o->speed && (sl__parse_double(o->speed, &d) != 0 || !(d >= 0 && d <= 1e6)))
        return "--speed wants a number from 0 (as fast as possible) up";
    if (o->loops && sl__parse_count(o->loops, &u) != 0)
        return "--loop wants a count (0 = forever)";
    if (o->start_record && sl__parse_count(o->start_record, &u) != 0)
        return "--start wants a record index (1000) or a time offset (90s)";
    if (o->start_time && sl__parse_duration(o->start_time, &u) != 0)
        return "--start wants a record index (1000) or a time offset (90s)";
    if (o->count && sl__parse_count(o->count, &u) != 0)
        return "--count wants a count";
    if (o->key_level && (sl__parse_int(o->key_level, &i) != 0 || i < -1 || i > 31))
        return "--key-level wants a topic level from 0 to 31";
    return NULL;
}

static void sl__replay_usage(FILE *to)
{
    fprintf(to, "usage: sluice replay FILE -c CONFIG [options]\n"
                "  FILE                    sluice capture, NDJSON or mosquitto_sub -v output; gzip or not\n"
                "  -c, --config CONFIG     the pipeline; each of its sources replays FILE instead\n"
                "      --mqtt URL          or: publish FILE to a broker (tcp://HOST:PORT, MQTT 5)\n"
                "  -s, --speed S           1 = recorded pace (default), N = N times faster, 0 or max = as fast\n"
                "                          as demand allows\n"
                "  -l, --loop[=N]          replay N times (without N: until stopped)\n"
                "      --start N|DURATION  begin at record index N, or DURATION after the first record\n"
                "  -n, --count N           stop after N events\n"
                "      --key-level N       topic level that becomes the record key\n"
                "      --key-from NAME     template capture or recorded property that becomes the key\n"
                "  -v, --verbose / -q, --quiet\n");
}

static int sl__replay_parse(int argc, char **argv, sl_replayopt_t *o)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"speed", required_argument, NULL, 's'},
                                         {"mqtt", required_argument, NULL, 'M'},
                                         {"loop", optional_argument, NULL, 'l'},
                                         {"start", required_argument, NULL, 'S'},
                                         {"count", required_argument, NULL, 'n'},
                                         {"key-level", required_argument, NULL, 'K'},
                                         {"key-from", required_argument, NULL, 'F'},
                                         {"verbose", no_argument, NULL, 'v'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    memset(o, 0, sizeof *o);
    while ((c = getopt_long(argc, argv, "c:s:l::n:vqh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': o->config = optarg; break;
        case 'M': o->mqtt = optarg; break;
        case 's': o->speed = strcmp(optarg, "max") == 0 ? "0" : optarg; break;
        case 'l': o->loops = optarg ? optarg : "0"; break;
        case 'S':
            *(strspn(optarg, "0123456789_") == strlen(optarg) ? &o->start_record : &o->start_time) = optarg;
            break;
        case 'n': o->count = optarg; break;
        case 'K': o->key_level = optarg; break;
        case 'F': o->key_from = optarg; break;
        case 'v': sl_log_set_level(SL_LOG_DEBUG); break;
        case 'q': sl_log_set_level(SL_LOG_WARN); break;
        case 'h': sl__replay_usage(stdout); return 1;
        default: sl__replay_usage(stderr); return SL_EINVAL;
        }
    }
    if (optind + 1 != argc || (o->config == NULL) == (o->mqtt == NULL)) {
        fprintf(stderr, "sluice replay: %s\n",
                optind + 1 != argc ? "expected one capture FILE" : "give one of -c CONFIG and --mqtt URL");
        return SL_EINVAL;
    }
    o->file = argv[optind];
    const char *why = sl__replay_check(o);
    if (why != NULL) {
        fprintf(stderr, "sluice replay: %s\n", why);
        return SL_EINVAL;
    }
    return 0;
}

/* Opens the capture once in the master, to refuse an unreadable file before anything starts. */
static int sl__replay_probe(const char *file)
{
    sl_cap_reader_t *rd;
    int rc = sl_cap_reader_open(file, &rd);
    if (rc != 0) {
        fprintf(stderr, "sluice replay: cannot read %s: %s\n", file, sl_strerror(rc));
        return rc;
    }
    const sl_cap_info_t *in = sl_cap_reader_info(rd);
    sl_log(SL_LOG_INFO, "master", 0, "capture %s: %s%s%s%s", file, sl_cap_format_name(in->format),
           in->gzip ? ", gzip" : "", in->desc[0] ? ", " : "", in->desc);
    sl_cap_reader_destroy(rd);
    return 0;
}

/* Publishes the capture to a broker at the asked speed, loops, start and count (like the replay source,
 * with one publisher). Returns the exit code. */
static int sl__replay_publish(const sl_replayopt_t *o)
{
    double speed = 1;
    uint64_t loops = 1, start = 0, start_ns = 0, count = 0, sent = 0, first = 0, done = 0, failed = 0;
    if (o->speed)
        (void)sl__parse_double(o->speed, &speed);
    if (o->loops)
        (void)sl__parse_count(o->loops, &loops);
    if (o->start_record)
        (void)sl__parse_count(o->start_record, &start);
    if (o->start_time)
        (void)sl__parse_duration(o->start_time, &start_ns);
    if (o->count)
        (void)sl__parse_count(o->count, &count);
    sl_cap_reader_t *rd;
    sl_cap_pub_t *pub;
    if (sl_cap_reader_open(o->file, &rd) != 0)
        return SL_EXIT_FATAL;
    if (sl_cap_pub_open(o->mqtt, NULL, &pub) != 0) {
        fprintf(stderr, "sluice replay: cannot connect to %s\n", o->mqtt);
        sl_cap_reader_destroy(rd);
        return SL_EXIT_FATAL;
    }
    int rc = 0;
    for (uint64_t pass = 0; rc == 0 && (loops == 0 || pass < loops) && !(count && sent >= count); pass++) {
        uint64_t anchor = 0, anchor_ts = 0, before = sent;
        sl_cap_rec_t r;
        int n;
        if (pass > 0 && sl_cap_reader_rewind(rd) != 0)
            break;
        while (rc == 0 && !(count && sent >= count) && (n = sl_cap_reader_next(rd, &r)) != SL_EOF) {
            if (n != 0) {
                if (n == SL_EBADMSG)
                    sl_log(SL_LOG_WARN, "replay", 0, "%s: corrupt record %llu at byte %llu: %s; skipped", o->file,
                           (unsigned long long)sl_cap_reader_info(rd)->err_index,
                           (unsigned long long)sl_cap_reader_info(rd)->err_offset, sl_cap_reader_info(rd)->err);
                if (n == SL_EBADMSG)
                    continue;
                rc = n;
                break;
            }
            first = first ? first : r.ts_ns;
            if (r.index < start || (start_ns && r.ts_ns < first + start_ns))
                continue;
            if (speed > 0 && r.ts_ns) {
                if (anchor == 0)
                    anchor = sl_now_ns(), anchor_ts = r.ts_ns;
                uint64_t due = anchor + (r.ts_ns > anchor_ts ? (uint64_t)((double)(r.ts_ns - anchor_ts) / speed) : 0);
                uint64_t now = sl_now_ns();
                if (due > now) {
                    struct timespec ts = {(time_t)((due - now) / SL_NS_PER_S), (long)((due - now) % SL_NS_PER_S)};
                    nanosleep(&ts, NULL); /* pacing to the recorded timeline */
                }
            }
            rc = sl_cap_pub_put(pub, &r, -1);
            sent++;
        }
        if (sent == before)
            break; /* nothing in a whole pass: do not spin */
    }
    int crc = sl_cap_pub_close(pub, &done, &failed);
    printf("sluice replay: published %llu messages from %s to %s (%llu confirmed, %llu failed)\n",
           (unsigned long long)sent, o->file, o->mqtt, (unsigned long long)done, (unsigned long long)failed);
    sl_cap_reader_destroy(rd);
    return rc == 0 && crc == 0 && failed == 0 ? 0 : 1;
}

int sl_cli_replay(int argc, char **argv)
{
    sl_replayopt_t o;
    int rc = sl__replay_parse(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : SL_EXIT_FATAL;
    if (sl__replay_probe(o.file) != 0)
        return SL_EXIT_FATAL;
    if (o.mqtt != NULL)
        return sl__replay_publish(&o);
    sl_diags_t diags = {0};
    sl_config_t *cfg = NULL;
    if (sl_config_load(o.config, &cfg, &diags) != 0) {
        sl_diags_print(&diags, stderr);
        fprintf(stderr, "sluice replay: %zu error%s in %s; not starting\n", diags.n, diags.n == 1 ? "" : "s", o.config);
        sl_diags_free(&diags);
        return SL_EXIT_FATAL;
    }
    sl_diags_free(&diags);
    /* A progress line replaces the summary lines on a terminal: both would fight over the same line. */
    bool progress = isatty(2) && sl_log_get_level() >= SL_LOG_INFO;
    if (progress)
        cfg->summary_interval_ns = 0;
    sl_conf_param_t *params[64] = {0};
    size_t n_src = 0;
    for (size_t i = 0; i < cfg->n_nodes && rc == 0; i++) {
        if (cfg->nodes[i].role != SL_ROLE_SOURCE)
            continue;
        if (n_src == SL_ARRAY_LEN(params))
            rc = SL_ERANGE;
        else {
            rc = sl__replay_node(&cfg->nodes[i], &o, progress && n_src == 0, &params[n_src]);
            n_src++;
        }
    }
    if (n_src > 1)
        sl_log(SL_LOG_WARN, "master", 0, "%zu sources: each of them replays all of %s", n_src, o.file);
    sl_runtime_t *rt = NULL;
    if (rc == 0 && (rc = sl_runtime_new(cfg, &rt)) != 0)
        sl_log(SL_LOG_ERROR, "master", rc, "cannot build the pipeline");
    int status = SL_EXIT_FATAL;
    if (rc == 0) {
        sl_log(SL_LOG_INFO, "master", 0, "replaying %s through pipeline \"%s\" from %s", o.file, cfg->pipeline_name,
               o.config);
        status = sl_runtime_run(rt);
    }
    sl_runtime_destroy(rt);
    sl_config_destroy(cfg);
    for (size_t i = 0; i < n_src; i++)
        free(params[i]);
    return status;
}

/* ---- sluice record ----------------------------------------------------------------------------------- */

typedef struct sl_recordopt_s {
    const char *config, *out, *source, *count, *duration, *size, *gzip;
} sl_recordopt_t;

/* The capture sink's params: the schema's defaults, then the command line. */
static sl_conf_param_t *sl__record_params(const sl_recordopt_t *o, const char *desc, size_t *n)
{
    const sl__schema_t *sc = sl__schema_builtin();
    sl_conf_param_t *p = calloc(sc->n_keys, sizeof *p);
    if (p == NULL)
        return NULL;
    *n = 0;
    for (size_t i = 0; i < sc->n_keys; i++) {
        const sl__key_t *key = &sc->keys[i];
        if (strcmp(key->section, "sinks.capture") != 0)
            continue;
        const char *v = key->def ? key->def : "";
        v = strcmp(key->key, "file") == 0 ? o->out : v;
        v = strcmp(key->key, "description") == 0 ? desc : v;
        v = strcmp(key->key, "count") == 0 && o->count ? o->count : v;
        v = strcmp(key->key, "duration") == 0 && o->duration ? o->duration : v;
        v = strcmp(key->key, "size") == 0 && o->size ? o->size : v;
        v = strcmp(key->key, "gzip_level") == 0 && o->gzip ? o->gzip : v;
        p[(*n)++] = (sl_conf_param_t){.key = key->key, .value = v, .kind = (int)key->kind};
    }
    return p;
}

static int sl__record_parse(int argc, char **argv, sl_recordopt_t *o)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"source", required_argument, NULL, 's'},
                                         {"count", required_argument, NULL, 'n'},
                                         {"duration", required_argument, NULL, 't'},
                                         {"size", required_argument, NULL, 'S'},
                                         {"gzip", optional_argument, NULL, 'z'},
                                         {"verbose", no_argument, NULL, 'v'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    uint64_t u;
    optind = 1;
    memset(o, 0, sizeof *o);
    while ((c = getopt_long(argc, argv, "c:o:s:n:t:z::vqh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': o->config = optarg; break;
        case 'o': o->out = optarg; break;
        case 's': o->source = optarg; break;
        case 'n': o->count = optarg; break;
        case 't': o->duration = optarg; break;
        case 'S': o->size = optarg; break;
        case 'z': o->gzip = optarg ? optarg : "6"; break;
        case 'v': sl_log_set_level(SL_LOG_DEBUG); break;
        case 'q': sl_log_set_level(SL_LOG_WARN); break;
        case 'h':
            printf("usage: sluice record -c CONFIG -o FILE [--source NAME] [--count N] [--duration D] [--size S]"
                   " [--gzip[=L]]\n  records what CONFIG's source (the first, or NAME) takes, until a limit or"
                   " SIGINT/SIGTERM\n");
            return 1;
        default: return SL_EINVAL;
        }
    }
    const char *why =
        o->config == NULL || o->out == NULL || optind != argc     ? "usage: sluice record -c CONFIG -o FILE [...]"
        : o->count && sl__parse_count(o->count, &u) != 0          ? "--count wants a count"
        : o->duration && sl__parse_duration(o->duration, &u) != 0 ? "--duration wants a duration (30s, 5m)"
        : o->size && sl__parse_size(o->size, &u) != 0             ? "--size wants a size (100MiB)"
        : o->gzip && (atoi(o->gzip) < 1 || atoi(o->gzip) > 9)     ? "--gzip wants a level from 1 to 9"
                                                                  : NULL;
    if (why != NULL) {
        fprintf(stderr, "sluice record: %s\n", why);
        return SL_EINVAL;
    }
    return 0;
}

/* Runs the source alone into a capture sink: a config of two nodes built from the loaded one. */
static int sl__record_run(sl_config_t *cfg, const sl_recordopt_t *o)
{
    int at = -1;
    for (size_t i = 0; i < cfg->n_nodes && at < 0; i++)
        if (cfg->nodes[i].role == SL_ROLE_SOURCE && (o->source == NULL || strcmp(cfg->nodes[i].name, o->source) == 0))
            at = (int)i;
    if (at < 0) {
        fprintf(stderr, "sluice record: %s in %s\n", o->source ? "no such source" : "no source", o->config);
        return SL_EXIT_FATAL;
    }
    char desc[512];
    snprintf(desc, sizeof desc, "sluice record: source \"%s\" (%s) of %s", cfg->nodes[at].name, cfg->nodes[at].type,
             o->config);
    const char *from[1] = {cfg->nodes[at].name};
    sl_conf_node_t nodes[2] = {cfg->nodes[at]};
    nodes[0].dead_letter = NULL;
    nodes[1] = (sl_conf_node_t){.name = "record",
                                .type = "capture",
                                .role = SL_ROLE_SINK,
                                .from = from,
                                .n_from = 1,
                                .concurrency = 1,
                                .max_demand = cfg->max_demand,
                                .min_demand = cfg->min_demand,
                                .dispatcher = SL_DISP_DEMAND,
                                .capacity = cfg->capacity,
                                .sup = cfg->sup};
    nodes[1].params = sl__record_params(o, desc, &nodes[1].n_params);
    if (nodes[1].params == NULL)
        return SL_EXIT_FATAL;
    sl_config_t two = *cfg;
    two.nodes = nodes;
    two.n_nodes = 2;
    unlink(o->out); /* the sink appends (so a restarted one keeps what was written): start empty */
    sl_runtime_t *rt = NULL;
    int status = SL_EXIT_FATAL;
    if (sl_runtime_new(&two, &rt) != 0) {
        sl_log(SL_LOG_ERROR, "master", 0, "cannot build the recording pipeline");
    } else {
        sl_log(SL_LOG_INFO, "master", 0, "recording source \"%s\" of %s into %s", nodes[0].name, o->config, o->out);
        status = sl_runtime_run(rt);
    }
    sl_runtime_destroy(rt);
    free(nodes[1].params);
    return status;
}

int sl_cli_record(int argc, char **argv)
{
    sl_recordopt_t o;
    int rc = sl__record_parse(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : SL_EXIT_FATAL;
    sl_diags_t diags = {0};
    sl_config_t *cfg = NULL;
    if (sl_config_load(o.config, &cfg, &diags) != 0) {
        sl_diags_print(&diags, stderr);
        fprintf(stderr, "sluice record: %zu error%s in %s; not starting\n", diags.n, diags.n == 1 ? "" : "s", o.config);
        sl_diags_free(&diags);
        return SL_EXIT_FATAL;
    }
    sl_diags_free(&diags);
    int status = sl__record_run(cfg, &o);
    sl_config_destroy(cfg);
    return status;
}
