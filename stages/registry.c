/*
 * The built-in stage types, looked up by role and type name when the runtime is built.
 */
#include <string.h>

#include "ingest/ingest.h"
#include "sinks/sinks.h"
#include "stages/stages.h"

extern const sl_stage_ops_t sl_stage_passthrough_ops;
extern const sl_stage_ops_t sl_stage_chaos_ops;
extern const sl_stage_ops_t sl_stage_decode_ops;

static const sl_stage_ops_t *const sl__builtin[] = {
    &sl_source_generator_ops,  &sl_source_mqtt_ops, &sl_source_replay_ops, &sl_stage_decode_ops,
    &sl_stage_passthrough_ops, &sl_stage_chaos_ops, &sl_sink_null_ops,     &sl_sink_capture_ops,
    &sl_sink_file_ops,         &sl_sink_kafka_ops,  &sl_sink_stdout_ops,
};

const sl_stage_ops_t *sl_stage_lookup(sl_conf_role_t role, const char *type)
{
    static const sl_stage_kind_t kind_of_role[] = {
        [SL_ROLE_SOURCE] = SL_KIND_PRODUCER,
        [SL_ROLE_STAGE] = SL_KIND_PRODUCER_CONSUMER,
        [SL_ROLE_SINK] = SL_KIND_CONSUMER,
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(sl__builtin); i++)
        if (sl__builtin[i]->kind == kind_of_role[role] && strcmp(sl__builtin[i]->type, type) == 0)
            return sl__builtin[i];
    return NULL;
}
