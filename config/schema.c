/*
 * The schema: the one table of every configuration key, and the table of node types.
 *
 * Everything about a key lives in its row: type, default, bounds or allowed values, whether it is
 * secret, and its one-line description. The loader checks files against these rows, the reference
 * (docs/config.md, from sl_config_reference()) is generated from them, and a unit test checks that every
 * default and bound parses and that every default is within its bounds. Defaults and bounds are written
 * the way a user writes them in a file ("64KiB", "5s") and go through the same parsers.
 *
 * Adding a node type = one row in sl__types[] plus one row per key of its own in sl__keys[] (section
 * "<role section>.<type>"); the runtime then reads them with sl_conf_int() and friends.
 */
#include "config/config_int.h"
#include "sinks/sinks.h"

#include <stdio.h>
#include <string.h>

int sl__check_ident(const char *text, const char **why)
{
    size_t n = strlen(text);
    if (n == 0 || n > 64) {
        *why = "expected 1 to 64 letters, digits, '_' or '-'";
        return SL_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            *why = "expected only letters, digits, '_' and '-'";
            return SL_EINVAL;
        }
    }
    return 0;
}

static int sl__check_hostport(const char *text, const char **why)
{
    const char *colon = strrchr(text, ':');
    *why = "expected HOST:PORT like 127.0.0.1:9464, [::1]:9464 or :9464 (all interfaces)";
    if (colon == NULL || colon[1] == '\0')
        return SL_EINVAL;
    if (strchr(text, ':') != colon && (text[0] != '[' || colon[-1] != ']'))
        return SL_EINVAL; /* an IPv6 address needs brackets */
    uint64_t port;
    if (sl__parse_count(colon + 1, &port) != 0 || port > 65535 || strchr(colon, '_') != NULL)
        return SL_EINVAL;
    return 0;
}

static int sl__check_nonempty(const char *text, const char **why)
{
    *why = "expected a non-empty string";
    return text[0] == '\0' ? SL_EINVAL : 0;
}

#define SL__IDENT sl__check_ident, "letters, digits, `_`, `-`"
#define SL__NOCHECK NULL, NULL

/* section, key, kind, default, computed-default doc, min, max, values, check, check doc, flags, doc */
static const sl__key_t sl__keys[] = {
    {"pipeline", "name", SL_PARAM_STRING, "sluice", NULL, NULL, NULL, NULL, SL__IDENT, 0,
     "Name of the pipeline in logs, metrics and the summary."},

    {"channels", "max_demand", SL_PARAM_COUNT, "4000", NULL, "1", "1_000_000", NULL, SL__NOCHECK, 0,
     "Events a consumer asks for at once; the default of every node's max_demand."},
    {"channels", "min_demand", SL_PARAM_COUNT, NULL, "max_demand / 2", "0", "999_999", NULL, SL__NOCHECK, 0,
     "A consumer asks again when its outstanding demand falls to this; must be below max_demand."},
    {"channels", "capacity", SL_PARAM_SIZE, "1MiB", NULL, "64KiB", "1GiB", NULL, SL__NOCHECK, 0,
     "Bytes of each channel (one per producer instance and consumer instance); the nodes' default."},
    {"channels", "memory_limit", SL_PARAM_SIZE, "256MiB", NULL, "1MiB", "1TiB", NULL, SL__NOCHECK, 0,
     "Upper bound of the sum of all channel capacities; a config above it does not load."},
    {"channels", "dir", SL_PARAM_STRING, "", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Directory for the channels' files (tmpfs such as /dev/shm is fastest), so a restarted sluice recovers what they "
     "held; empty = anonymous memory."},

    {"supervision", "strategy", SL_PARAM_ENUM, "one_for_one", NULL, NULL, NULL, "one_for_one|one_for_all|rest_for_one",
     SL__NOCHECK, 0,
     "Which instances restart when one crashes: itself, its whole group, or it and those started after."},
    {"supervision", "restart", SL_PARAM_ENUM, "permanent", NULL, NULL, NULL, "permanent|transient|temporary",
     SL__NOCHECK, 0, "Restart always, only after a crash, or never."},
    {"supervision", "max_restarts", SL_PARAM_COUNT, "3", NULL, "0", "1_000_000", NULL, SL__NOCHECK, 0,
     "Restarts allowed within max_seconds before the group gives up and escalates."},
    {"supervision", "max_seconds", SL_PARAM_DURATION, "5s", NULL, "1ms", "24h", NULL, SL__NOCHECK, 0,
     "The window of max_restarts."},
    {"supervision", "watchdog", SL_PARAM_DURATION, "0s", NULL, "0s", "1h", NULL, SL__NOCHECK, 0,
     "Kill an instance whose heartbeat is older than this while it has work; 0s = off."},
    {"supervision", "shutdown_timeout", SL_PARAM_DURATION, "30s", NULL, "0s", "1h", NULL, SL__NOCHECK, 0,
     "How long a draining shutdown may take before the remaining workers are killed."},

    {"metrics", "enabled", SL_PARAM_BOOL, "true", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Serve Prometheus /metrics and /healthz."},
    {"metrics", "listen", SL_PARAM_STRING, "127.0.0.1:9464", NULL, NULL, NULL, NULL, sl__check_hostport, "`HOST:PORT`",
     0, "Address of the metrics endpoint (loopback by default); port 0 takes a free port, logged at start."},
    {"metrics", "summary_interval", SL_PARAM_DURATION, "1s", NULL, "0s", "1h", NULL, SL__NOCHECK, 0,
     "Period of the one-line throughput summary in the log; 0s = none."},
    {"metrics", "latency", SL_PARAM_BOOL, "false", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Record each event's latency from ingest (receive, replay or generation time) to its acknowledgement by a "
     "sink in a histogram; the final `total` log line then shows p50/p99/p999 per sink. Off: no cost."},

    {"node", "name", SL_PARAM_STRING, NULL, NULL, NULL, NULL, NULL, SL__IDENT, SL__KEY_REQUIRED,
     "Unique name of the node among all sources, stages and sinks."},
    {"node", "type", SL_PARAM_STRING, NULL, NULL, NULL, NULL, NULL, SL__NOCHECK, SL__KEY_REQUIRED,
     "What the node does: one of the types below for its role."},
    {"node", "from", SL_PARAM_LIST, NULL, "none", NULL, NULL, NULL, SL__NOCHECK, 0,
     "Sources or stages it takes input from; required for stages and sinks, not allowed for sources."},
    {"node", "concurrency", SL_PARAM_COUNT, "1", NULL, "1", "256", NULL, SL__NOCHECK, 0,
     "Instances (worker processes) of the node."},
    {"node", "max_demand", SL_PARAM_COUNT, NULL, "channels.max_demand", "1", "1_000_000", NULL, SL__NOCHECK, 0,
     "Demand of each of its input subscriptions."},
    {"node", "min_demand", SL_PARAM_COUNT, NULL, "channels.min_demand, or max_demand / 2 when the node sets max_demand",
     "0", "999_999", NULL, SL__NOCHECK, 0, "Must be below max_demand."},
    {"node", "dispatcher", SL_PARAM_ENUM, "demand", NULL, NULL, NULL, "demand|broadcast|partition", SL__NOCHECK, 0,
     "How each upstream instance spreads events over this node's instances."},
    {"node", "partition_by", SL_PARAM_STRING, NULL, "none", NULL, NULL, NULL, sl__check_nonempty, "non-empty", 0,
     "Partition key (`key` or an attribute name); required by, and only for, partition."},
    {"node", "dead_letter", SL_PARAM_STRING, NULL, "none", NULL, NULL, NULL, SL__IDENT, 0,
     "Sink that receives this node's failed events, with dl_reason, dl_stage and dl_error attributes."},
    {"node", "capacity", SL_PARAM_SIZE, NULL, "channels.capacity", "64KiB", "1GiB", NULL, SL__NOCHECK, 0,
     "Bytes of each of its input channels."},
    {"node", "supervision", SL_PARAM_MAP, NULL, "the supervision section", NULL, NULL, "supervision", SL__NOCHECK, 0,
     "Overrides any key of the supervision section for this node."},

    {"sources.generator", "count", SL_PARAM_COUNT, "0", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Events to generate; 0 = until stopped."},
    {"sources.generator", "rate", SL_PARAM_COUNT, "0", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Events per second; 0 = as fast as demand allows."},
    {"sources.generator", "devices", SL_PARAM_COUNT, "1000", NULL, "1", "10_000_000", NULL, SL__NOCHECK, 0,
     "Distinct simulated devices (event keys)."},
    {"sources.generator", "payload_size", SL_PARAM_SIZE, "180B", NULL, "64B", "1MiB", NULL, SL__NOCHECK, 0,
     "Bytes of each event's payload."},

    {"sources.mqtt", "urls", SL_PARAM_LIST, "tcp://127.0.0.1:1883", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Broker URLs (`tcp://HOST:PORT` or `ssl://HOST:PORT`), tried in order: the others are failover."},
    {"sources.mqtt", "topics", SL_PARAM_LIST, NULL, NULL, NULL, NULL, NULL, SL__NOCHECK, SL__KEY_REQUIRED,
     "Topic filters (`+` and `#` wildcards) at the `qos` below; `FILTER;qos=N` gives one filter its own."},
    {"sources.mqtt", "qos", SL_PARAM_INT, "1", NULL, "0", "2", NULL, SL__NOCHECK, 0,
     "QoS of the subscriptions: 1 or 2 with a persistent session lose nothing sluice acknowledged."},
    {"sources.mqtt", "client_id", SL_PARAM_STRING, "", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Stable client id (the broker keeps the session under it), `sluice-<node>` when empty; `${HOSTNAME}` works; "
     "`-<instance>` is appended when concurrency > 1."},
    {"sources.mqtt", "clean_start", SL_PARAM_BOOL, "false", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Start a new session at every connect; false keeps the broker's queue across restarts and pauses."},
    {"sources.mqtt", "session_expiry", SL_PARAM_DURATION, "1h", NULL, "0s", "49710d", NULL, SL__NOCHECK, 0,
     "MQTT 5: how long the broker keeps the session after a disconnect."},
    {"sources.mqtt", "keepalive", SL_PARAM_DURATION, "30s", NULL, "2s", "18h", NULL, SL__NOCHECK, 0,
     "MQTT keep-alive; the broker drops a client silent for 1.5 times this."},
    {"sources.mqtt", "mqtt_version", SL_PARAM_ENUM, "5", NULL, NULL, NULL, "3.1.1|5", SL__NOCHECK, 0,
     "Protocol version."},
    {"sources.mqtt", "shared_group", SL_PARAM_STRING, "", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Subscribe as `$share/<group>/<filter>` so several connections split the stream; empty = not shared."},
    {"sources.mqtt", "username", SL_PARAM_STRING, "", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "User name; empty = none."},
    {"sources.mqtt", "password", SL_PARAM_STRING, "", NULL, NULL, NULL, NULL, SL__NOCHECK, SL__KEY_SECRET,
     "Password (or `password_file: PATH`)."},
    {"sources.mqtt", "tls_ca_file", SL_PARAM_STRING, "", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "PEM CA bundle that verifies the broker (`ssl://` URLs); empty = the system's."},
    {"sources.mqtt", "tls_cert_file", SL_PARAM_STRING, "", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "PEM client certificate; empty = none."},
    {"sources.mqtt", "tls_key_file", SL_PARAM_STRING, "", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "PEM private key of the client certificate."},
    {"sources.mqtt", "tls_verify", SL_PARAM_BOOL, "true", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Verify the broker's certificate and host name."},
    {"sources.mqtt", "in_flight", SL_PARAM_COUNT, "100", NULL, "1", "65535", NULL, SL__NOCHECK, 0,
     "MQTT 5 Receive Maximum: QoS 1/2 messages the broker may have unacknowledged at once."},
    {"sources.mqtt", "topic_template", SL_PARAM_STRING, "", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Topic levels to attributes, e.g. `factory/{site}/{device_id}/telemetry`; empty = none."},
    {"sources.mqtt", "key_from", SL_PARAM_STRING, "", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Template attribute that becomes the record key (e.g. `device_id`); empty = the topic."},
    {"sources.mqtt", "overflow", SL_PARAM_ENUM, "pause", NULL, NULL, NULL, "pause|drop_newest", SL__NOCHECK, 0,
     "When no demand comes within wait_timeout: pause the connection (session kept), or drop the message. "
     "No `drop_oldest`: older events are already published to the next stage; for freshness let the broker "
     "expire them (MQTT 5 message expiry) while paused."},
    {"sources.mqtt", "wait_timeout", SL_PARAM_DURATION, "2s", NULL, "0s", "1h", NULL, SL__NOCHECK, 0,
     "How long a message waits for demand before `overflow` applies; kept under a third of keepalive."},
    {"sources.mqtt", "overdraft", SL_PARAM_COUNT, "1000", NULL, "1", "1_000_000", NULL, SL__NOCHECK, 0,
     "`pause`: events that may go into the channel past the demand while the connection closes: what the "
     "broker had in flight (in_flight; mosquitto's max_inflight_messages for 3.1.1) is enough."},
    {"sources.mqtt", "reconnect_min", SL_PARAM_DURATION, "100ms", NULL, "1ms", "1h", NULL, SL__NOCHECK, 0,
     "First reconnect delay; it doubles (with jitter) up to reconnect_max."},
    {"sources.mqtt", "reconnect_max", SL_PARAM_DURATION, "30s", NULL, "1ms", "1h", NULL, SL__NOCHECK, 0,
     "Longest reconnect delay."},
    {"sources.mqtt", "connect_timeout", SL_PARAM_DURATION, "10s", NULL, "1s", "1h", NULL, SL__NOCHECK, 0,
     "How long one connection attempt may take."},

    {"sources.replay", "file", SL_PARAM_STRING, NULL, NULL, NULL, NULL, NULL, sl__check_nonempty, "non-empty",
     SL__KEY_REQUIRED, "Capture to replay: sluice capture, NDJSON or `mosquitto_sub -v` lines; gzip is detected."},
    {"sources.replay", "speed", SL_PARAM_DOUBLE, "1", NULL, "0", "1e6", NULL, SL__NOCHECK, 0,
     "1 = at the recorded pace, N = N times faster, 0 = as fast as demand allows."},
    {"sources.replay", "loops", SL_PARAM_COUNT, "1", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Passes over the file; 0 = until stopped."},
    {"sources.replay", "start_record", SL_PARAM_COUNT, "0", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Skip the records before this index (from 0) in every pass."},
    {"sources.replay", "start_time", SL_PARAM_DURATION, "0s", NULL, "0s", "3650d", NULL, SL__NOCHECK, 0,
     "Skip the records recorded less than this after the file's first record, in every pass."},
    {"sources.replay", "count", SL_PARAM_COUNT, "0", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Stop after this many events (split over the instances); 0 = when the passes are done."},
    {"sources.replay", "key_level", SL_PARAM_INT, "-1", NULL, "-1", "31", NULL, SL__NOCHECK, 0,
     "Topic level (from 0) that becomes the record key (1: `factory/dev-17/telemetry` -> `dev-17`); -1 = not used."},
    {"sources.replay", "topic_template", SL_PARAM_STRING, "", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Topic levels to attributes, as for mqtt (`factory/{site}/{device_id}/telemetry`); empty = none."},
    {"sources.replay", "key_from", SL_PARAM_STRING, "", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Template capture or recorded property that becomes the record key; empty (and no key_level) = the topic."},
    {"sources.replay", "progress", SL_PARAM_BOOL, "false", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Show a progress line (events, rate, ETA) on stderr when it is a terminal."},

    {"stages.decode", "format", SL_PARAM_ENUM, "json", NULL, NULL, NULL, "json|raw", SL__NOCHECK, 0,
     "`json`: the payload must be one valid JSON value (UTF-8 checked); `raw`: passed through as binary."},
    {"stages.decode", "max_payload", SL_PARAM_SIZE, "64KiB", NULL, "1B", "512MiB", NULL, SL__NOCHECK, 0,
     "Larger payloads are dead-lettered with reason `oversize`."},
    {"stages.decode", "extract", SL_PARAM_LIST, "", "none", NULL, NULL, NULL, SL__NOCHECK, 0,
     "Top-level JSON fields copied into attributes of the same name (strings unquoted, numbers as text)."},
    {"stages.decode", "key_from", SL_PARAM_STRING, "", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Attribute (from the topic template or `extract`) that becomes the record key; empty = keep the key."},

    {"stages.chaos", "crash_every", SL_PARAM_COUNT, "0", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Crash after every this many events; 0 = never."},
    {"stages.chaos", "signal", SL_PARAM_ENUM, "SIGSEGV", NULL, NULL, NULL, "SIGSEGV|SIGABRT|SIGKILL|SIGBUS",
     SL__NOCHECK, 0, "How to crash."},
    {"stages.chaos", "crash_on_key", SL_PARAM_STRING, "", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Crash on every event with this key (a poison message); empty = none."},
    {"stages.chaos", "fail_every", SL_PARAM_COUNT, "0", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Send every this-many-th event to the dead-letter path (reason chaos) instead of forwarding it; 0 = never."},
    {"stages.chaos", "crash_on_payload", SL_PARAM_STRING, "", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Crash on every event whose payload contains this text (a poison message); empty = none."},
    {"stages.chaos", "hang_after", SL_PARAM_COUNT, "0", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Stop making progress after this many events (for the watchdog); 0 = never."},
    {"stages.chaos", "exit_after", SL_PARAM_COUNT, "0", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Exit with exit_code after this many events; 0 = never."},
    {"stages.chaos", "exit_code", SL_PARAM_INT, "1", NULL, "0", "255", NULL, SL__NOCHECK, 0,
     "Exit status used by exit_after."},
    {"stages.chaos", "delay", SL_PARAM_DURATION, "0s", NULL, "0s", "1s", NULL, SL__NOCHECK, 0,
     "Hold each event this long before forwarding it (slept per batch, averaged exactly): a slow stage for "
     "rehearsing backpressure; 0s = none."},

    {"sinks.null", "verify_sequence", SL_PARAM_BOOL, "false", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Check that each device's sequence numbers arrive without gaps (duplicates are counted)."},

    {"sinks.capture", "file", SL_PARAM_STRING, NULL, NULL, NULL, NULL, NULL, sl__check_nonempty, "non-empty",
     SL__KEY_REQUIRED, "Capture file to write (docs/capture.md); appended to when it exists."},
    {"sinks.capture", "gzip_level", SL_PARAM_INT, "0", NULL, "0", "9", NULL, SL__NOCHECK, 0,
     "gzip level 1-9; 0 = not compressed."},
    {"sinks.capture", "description", SL_PARAM_STRING, "", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Free-form text for the file header (what was recorded, from where)."},
    {"sinks.capture", "count", SL_PARAM_COUNT, "0", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Stop the pipeline (a draining shutdown) after this many records; 0 = no limit."},
    {"sinks.capture", "duration", SL_PARAM_DURATION, "0s", NULL, "0s", "3650d", NULL, SL__NOCHECK, 0,
     "Stop the pipeline this long after the sink started; 0s = no limit."},
    {"sinks.capture", "size", SL_PARAM_SIZE, "0B", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Stop the pipeline once this many bytes (uncompressed) are written; 0B = no limit."},
    {"sinks.capture", "sync", SL_PARAM_ENUM, "none", NULL, NULL, NULL, "none|batch", SL__NOCHECK, 0,
     "Events are acknowledged once their batch is in the file (a crash of sluice loses none of them); "
     "`batch` also fdatasyncs each batch first (a power cut loses none either)."},
    {"sinks.capture", "progress", SL_PARAM_BOOL, "false", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Show a progress line (records, rate, bytes, the limit's ETA) on stderr when it is a terminal."},
    {"sinks.null", "verify_state", SL_PARAM_STRING, "", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "File (one per instance: PATH.<n>) that keeps the sequence check across restarts of the sink; empty = memory."},

    {"sinks.file", "dir", SL_PARAM_STRING, NULL, NULL, NULL, NULL, NULL, sl__check_nonempty, "non-empty",
     SL__KEY_REQUIRED, "Base directory (created if missing); every file lands below it."},
    {"sinks.file", "path", SL_PARAM_STRING, "%Y/%m/%d/%H.ndjson", NULL, NULL, NULL, NULL, sl_sink_file_path_check,
     "relative; strftime `%Y`.. (UTC receive time), `{key}`, `{topic}`, `{ATTRIBUTE}`", 0,
     "File path template under dir; values are sanitised, and `-INSTANCE-N` goes before the extensions."},
    {"sinks.file", "format", SL_PARAM_ENUM, "ndjson", NULL, NULL, NULL, "ndjson|raw|capture", SL__NOCHECK, 0,
     "ndjson: one envelope per line (topic, key, qos, received_ns, attributes, payload or payload_base64); "
     "raw: the payload and a newline; capture: sluice's capture format (docs/capture.md, `sluice replay` reads "
     "it; compression none or gzip)."},
    {"sinks.file", "compression", SL_PARAM_ENUM, "none", NULL, NULL, NULL, "none|gzip|zstd", SL__NOCHECK, 0,
     "gzip: each batch becomes one gzip member (concatenated, as gzip -d reads them); zstd: one frame per file, "
     "flushed at each batch (with a batch marker) and ended when the file completes."},
    {"sinks.file", "compression_level", SL_PARAM_INT, "0", NULL, "0", "19", NULL, SL__NOCHECK, 0,
     "gzip 1-9 or zstd 1-19; 0 = the codec's default (gzip 6, zstd 3)."},
    {"sinks.file", "rotate_size", SL_PARAM_SIZE, "128MiB", NULL, "1KiB", "1TiB", NULL, SL__NOCHECK, 0,
     "Complete a file (rename NAME.part to NAME) once it holds this many bytes (as written, compressed)."},
    {"sinks.file", "rotate_age", SL_PARAM_DURATION, "1h", NULL, "0s", "30d", NULL, SL__NOCHECK, 0,
     "Complete a file this long after it was opened; 0s = no age limit."},
    {"sinks.file", "sync", SL_PARAM_ENUM, "batch", NULL, NULL, NULL, "none|batch|interval", SL__NOCHECK, 0,
     "When events are acknowledged: none = once written, batch = after the batch's fdatasync, "
     "interval = after the next periodic fdatasync."},
    {"sinks.file", "sync_interval", SL_PARAM_DURATION, "1s", NULL, "1ms", "1h", NULL, SL__NOCHECK, 0,
     "Period of the fdatasync with sync: interval."},
    {"sinks.file", "batch_size", SL_PARAM_COUNT, "1000", NULL, "1", "1_000_000", NULL, SL__NOCHECK, 0,
     "Events per batch (per file); a full batch is written at once."},
    {"sinks.file", "batch_bytes", SL_PARAM_SIZE, "1MiB", NULL, "1KiB", "256MiB", NULL, SL__NOCHECK, 0,
     "A batch is written once its events take this many bytes."},
    {"sinks.file", "batch_timeout", SL_PARAM_DURATION, "1s", NULL, "1ms", "1h", NULL, SL__NOCHECK, 0,
     "A batch is written this long after its first event at the latest."},
    {"sinks.file", "batch_key", SL_PARAM_STRING, "", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Batches are kept per file and per value of this: `key` (the record key), `topic`, or an attribute; each "
     "batch is written on its own size, bytes and timeout; empty = one batch per file."},
    {"sinks.file", "max_open_files", SL_PARAM_COUNT, "64", NULL, "1", "4096", NULL, SL__NOCHECK, 0,
     "Files open at once per instance; past it the least recently used file is completed."},
    {"sinks.kafka", "brokers", SL_PARAM_STRING, NULL, NULL, NULL, NULL, NULL, sl__check_nonempty, "non-empty",
     SL__KEY_REQUIRED, "Bootstrap servers, HOST:PORT[,HOST:PORT...] (librdkafka bootstrap.servers)."},
    {"sinks.kafka", "topic", SL_PARAM_STRING, "telemetry", NULL, NULL, NULL, NULL, sl__check_nonempty, "non-empty", 0,
     "Topic template: text, `{key}`, `{topic}` (MQTT topic) and `{ATTRIBUTE}`; other characters become `_`."},
    {"sinks.kafka", "key", SL_PARAM_STRING, "{key}", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Message key template (the device id by default, so a device's events keep their order in one partition)."},
    {"sinks.kafka", "compression", SL_PARAM_ENUM, "none", NULL, NULL, NULL, "none|gzip|snappy|lz4|zstd", SL__NOCHECK, 0,
     "Compression of the produced batches."},
    {"sinks.kafka", "acks", SL_PARAM_ENUM, "all", NULL, NULL, NULL, "all|1", SL__NOCHECK, 0,
     "Broker acknowledgements before a delivery report succeeds (and sluice commits)."},
    {"sinks.kafka", "idempotence", SL_PARAM_BOOL, "true", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Idempotent producer: librdkafka's retries neither duplicate nor reorder."},
    {"sinks.kafka", "linger", SL_PARAM_DURATION, "5ms", NULL, "0s", "10s", NULL, SL__NOCHECK, 0,
     "How long librdkafka waits to fill a batch (linger.ms)."},
    {"sinks.kafka", "batch_size", SL_PARAM_COUNT, "10000", NULL, "1", "1_000_000", NULL, SL__NOCHECK, 0,
     "Events per produced batch at most (batch.num.messages)."},
    {"sinks.kafka", "batch_bytes", SL_PARAM_SIZE, "1MiB", NULL, "1KiB", "2GiB", NULL, SL__NOCHECK, 0,
     "Bytes per produced batch at most (batch.size)."},
    {"sinks.kafka", "headers", SL_PARAM_BOOL, "true", NULL, NULL, NULL, NULL, SL__NOCHECK, 0,
     "Add headers mqtt_topic, mqtt_qos, received_ns and one per attribute (MQTT 5 user properties)."},
    {"sinks.kafka", "librdkafka", SL_PARAM_MAP, NULL, "none", NULL, NULL, NULL, NULL,
     "any librdkafka property as `name: value`; `name_file: PATH` reads the value from a file", 0,
     "More librdkafka properties (TLS, SASL, tuning), applied after sluice's own; checked at load, values never "
     "shown."},
    {"sinks.stdout", "format", SL_PARAM_ENUM, "ndjson", NULL, NULL, NULL, "ndjson|raw", SL__NOCHECK, 0,
     "ndjson: the file sink's envelope, one per line; raw: the payload and a newline."},
};

static const sl__type_t sl__types[] = {
    {SL_ROLE_SOURCE, "generator", "sources.generator", "Synthetic fleet telemetry, as fast or as slow as asked."},
    {SL_ROLE_SOURCE, "mqtt", "sources.mqtt",
     "Subscribes to an MQTT broker (Paho MQTTAsync), 3.1.1 or 5, with flow control."},
    {SL_ROLE_SOURCE, "replay", "sources.replay",
     "Replays a capture file (docs/capture.md) at the recorded pace, faster, or as fast as demand allows."},
    {SL_ROLE_STAGE, "decode", "stages.decode", "Validates JSON payloads, extracts attributes, dead-letters bad input."},
    {SL_ROLE_STAGE, "passthrough", "stages.passthrough", "Forwards every event unchanged."},
    {SL_ROLE_STAGE, "chaos", "stages.chaos", "Forwards events and misbehaves on purpose, for testing supervision."},
    {SL_ROLE_SINK, "null", "sinks.null", "Acknowledges and discards every event."},
    {SL_ROLE_SINK, "capture", "sinks.capture", "Writes every event into a capture file (what `sluice record` uses)."},
    {SL_ROLE_SINK, "stdout", "sinks.stdout", "Writes each event to standard output (debugging)."},
    {SL_ROLE_SINK, "kafka", "sinks.kafka",
     "Produces to Kafka; acknowledged on each delivery report (idempotent, acks=all)."},
    {SL_ROLE_SINK, "file", "sinks.file",
     "Batches to files: NDJSON or raw, gzip or zstd, rotation, acknowledged at the sync level."},
};

static const sl__schema_t sl__builtin = {
    sl__keys,
    SL_ARRAY_LEN(sl__keys),
    sl__types,
    SL_ARRAY_LEN(sl__types),
};

const sl__schema_t *sl__schema_builtin(void) { return &sl__builtin; }

/* The entry checks of the free-form MAP keys (kept beside the table: one row each). */
static const struct {
    const char *section, *key;
    sl__prop_check_fn check;
} sl__prop_checks[] = {
    {"sinks.kafka", "librdkafka", sl_sink_kafka_prop_check},
};

sl__prop_check_fn sl__schema_prop_check(const sl__key_t *k)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(sl__prop_checks); i++)
        if (strcmp(sl__prop_checks[i].section, k->section) == 0 && strcmp(sl__prop_checks[i].key, k->key) == 0)
            return sl__prop_checks[i].check;
    return NULL;
}

const sl__key_t *sl__schema_key(const sl__schema_t *sc, const char *section, const char *key)
{
    for (size_t i = 0; i < sc->n_keys; i++)
        if (strcmp(sc->keys[i].section, section) == 0 && strcmp(sc->keys[i].key, key) == 0)
            return &sc->keys[i];
    return NULL;
}

const sl__type_t *sl__schema_type(const sl__schema_t *sc, sl_conf_role_t role, const char *name)
{
    for (size_t i = 0; i < sc->n_types; i++)
        if (sc->types[i].role == role && strcmp(sc->types[i].name, name) == 0)
            return &sc->types[i];
    return NULL;
}

const char *sl__role_section(sl_conf_role_t role)
{
    static const char *const s[] = {"sources", "stages", "sinks"};
    return s[role];
}

const char *sl__role_name(sl_conf_role_t role)
{
    static const char *const s[] = {"source", "stage", "sink"};
    return s[role];
}

const char *sl_dispatcher_name(sl_dispatcher_t d)
{
    switch (d) {
#define SL_DISP_NAME(name, text) \
    case SL_DISP_##name: return text;
        SL_DISPATCHER_MAP(SL_DISP_NAME)
#undef SL_DISP_NAME
    }
    return "?";
}

const char *sl_strategy_name(sl_strategy_t s)
{
    switch (s) {
#define SL_STRAT_NAME(name, text) \
    case SL_STRATEGY_##name: return text;
        SL_STRATEGY_MAP(SL_STRAT_NAME)
#undef SL_STRAT_NAME
    }
    return "?";
}

const char *sl_restart_name(sl_restart_t r)
{
    switch (r) {
#define SL_RESTART_NAME(name, text) \
    case SL_RESTART_##name: return text;
        SL_RESTART_MAP(SL_RESTART_NAME)
#undef SL_RESTART_NAME
    }
    return "?";
}

const char *sl_param_kind_name(sl_param_kind_t k)
{
    switch (k) {
#define SL_PARAM_NAME(name, ref, expect) \
    case SL_PARAM_##name: return ref;
        SL_PARAM_KIND_MAP(SL_PARAM_NAME)
#undef SL_PARAM_NAME
    }
    return "?";
}
