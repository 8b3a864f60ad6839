/*
 * Sinks: the consumers at the end of a pipeline (Kafka, files, dead-letter, stdout, null).
 */
#ifndef SL_SINKS_H
#define SL_SINKS_H

#include "stages/stages.h"

/* `null`: discards events after counting them; optionally verifies per-device sequence numbers. */
extern const sl_stage_ops_t sl_sink_null_ops;

#endif /* SL_SINKS_H */
