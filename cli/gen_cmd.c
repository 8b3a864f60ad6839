/*
 * `sluice gen`: a synthetic fleet into a capture file, or published to a broker.
 *
 * gen writes the recorded timeline it is asked for (rate, bursts) as the records' receive times, as fast
 * as the disk allows; replaying the file at speed 1 reproduces that rate. To a broker (--mqtt) it
 * publishes at that timeline in real time. Device d's n-th message carries "seq":n, round robin over the
 * devices (message i is device i % devices, seq i / devices), so whoever receives them can count loss and
 * duplicates (`sluice verify`, or a `null` sink with verify_sequence); malformed payloads (a given
 * fraction, chosen by a seeded generator, so a file is reproducible) keep their device and sequence but
 * are not valid JSON.
 *
 * SIGINT/SIGTERM stop it cleanly: no message after the one being sent, the confirmations of what was
 * published are awaited, and the last line says how many were published (with --count 0, publishing to a
 * broker runs until then).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config_int.h"
#include "ingest/capture/capture.h"

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
    uint64_t sent; /* records written or published */
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
    for (uint64_t i = 0; (o->count == 0 || i < o->count) && rc == 0 && !sl_cli_stopped(); i++) {
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
        if (out.pub != NULL) { /* to a broker: at the timeline's pace, and a stop ends it here */
            sl_cli_pace(out.t0_mono + (ts > out.t0_wall ? ts - out.t0_wall : 0));
            if (sl_cli_stopped())
                break;
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
        g->sent += rc == 0;
        if (tty && (i & 1023) == 0 && sl_now_ns() >= next_progress) {
            sl_cli_progress(what, "messages", i, o->count, t0, false);
            next_progress = sl_now_ns() + 250 * SL_NS_PER_MS;
        }
    }
    int crc = sl__gen_close(&out, g);
    if (rc == 0)
        rc = crc;
    if (tty)
        sl_cli_progress(what, "messages", g->sent, o->count, t0, true);
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
                "  -n, --count N           messages in all (default 100000; with --mqtt and a rate, 0 = until\n"
                "                          SIGINT/SIGTERM, which stop any run cleanly)\n"
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
    if (o->count == 0 && (o->mqtt == NULL || o->rate <= 0)) {
        fprintf(stderr, "sluice gen: --count 0 (until stopped) needs --mqtt and a --rate above 0\n");
        return SL_EINVAL;
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
    sl_cli_catch_stop();
    uint64_t t0 = sl_now_ns();
    rc = sl__gen_write(&o, &g);
    double secs = (double)(sl_now_ns() - t0) / 1e9;
    if (o.mqtt)
        printf("sluice gen: published %llu messages (%llu malformed, %llu confirmed, %llu failed) for %llu devices "
               "to %s in %.2f s%s\n",
               (unsigned long long)g.sent, (unsigned long long)g.malformed, (unsigned long long)g.confirmed,
               (unsigned long long)g.failed, (unsigned long long)o.devices, o.mqtt, secs,
               sl_cli_stopped() ? " (stopped)" : "");
    else if (rc == 0)
        printf("sluice gen: wrote %llu records (%llu malformed, %llu bytes%s) for %llu devices to %s in %.2f s%s\n",
               (unsigned long long)g.sent, (unsigned long long)g.malformed, (unsigned long long)g.bytes,
               o.gzip ? " before gzip" : "", (unsigned long long)o.devices, o.out, secs,
               sl_cli_stopped() ? " (stopped)" : "");
    return rc == 0 ? 0 : 1;
}
