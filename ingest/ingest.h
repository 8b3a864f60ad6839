/*
 * Sources: the producers at the front of a pipeline (MQTT, replay of captures, the synthetic fleet).
 */
#ifndef SL_INGEST_H
#define SL_INGEST_H

#include "stages/stages.h"

/* `generator`: a synthetic fleet of devices emitting JSON telemetry with per-device sequence numbers. */
extern const sl_stage_ops_t sl_source_generator_ops;
/* `mqtt`: subscribes to an MQTT broker (Paho MQTTAsync) with demand-driven flow control (ingest/mqtt/). */
extern const sl_stage_ops_t sl_source_mqtt_ops;
/* `replay`: emits the records of a capture file (ingest/replay.c; the format: ingest/capture/capture.h). */
extern const sl_stage_ops_t sl_source_replay_ops;
/* `capture` sink: writes events into a capture file (ingest/capture/capture_sink.c; `sluice record`). */
extern const sl_stage_ops_t sl_sink_capture_ops;

#endif /* SL_INGEST_H */
