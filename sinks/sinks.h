/*
 * Sinks: the consumers at the end of a pipeline (Kafka, files, dead-letter, stdout, null).
 */
#ifndef SL_SINKS_H
#define SL_SINKS_H

#include "stages/stages.h"

/* `null`: discards events after counting them; optionally verifies per-device sequence numbers. */
extern const sl_stage_ops_t sl_sink_null_ops;
/* The "seq" field of a JSON payload, as the null sink's sequence check reads it (bench/mqtt's raw
 * subscriber reads it the same way): 0, or SL_EBADMSG. */
int sl_sink_null_seq(const void *payload, size_t len, uint64_t *seq);

/* `file`: batches to files (NDJSON or raw lines, gzip or zstd, rotation, NAME.part then rename),
 * acknowledged at the configured durability. */
extern const sl_stage_ops_t sl_sink_file_ops;
/* `stdout`: each event as an NDJSON envelope or raw line on standard output (debugging). */
extern const sl_stage_ops_t sl_sink_stdout_ops;
/* `kafka`: produces with librdkafka, acknowledged on each successful delivery report. */
extern const sl_stage_ops_t sl_sink_kafka_ops;
/* Checks a file sink path template (for the schema): 0, or SL_EINVAL and *why. Any thread. */
int sl_sink_file_path_check(const char *text, const char **why);

/* Checks one `librdkafka:` entry for the schema: the property exists and accepts the value (set on a
 * throw-away librdkafka configuration; no client is created). 0, or SL_EINVAL with why[cap] set; the value
 * is never quoted. Any thread. */
int sl_sink_kafka_prop_check(const char *name, const char *value, char *why, size_t cap);

/* Sets this process's allocator for librdkafka's messages and produce buffers (see kafka_conf.c): the
 * Kafka sink calls it in its own process before it creates its producer; bench/kafka's raw producer too. */
void sl_sink_kafka_malloc_setup(void);

#endif /* SL_SINKS_H */
