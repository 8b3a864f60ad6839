/*
 * sluice configuration: the validated pipeline description that the rest of sluice consumes.
 *
 * Invariants once sl_config_load() returned 0:
 *  - every key in the file was known to the schema table (config/schema.c), had the right type and a value
 *    within its range; defaults are filled in for every key the file left out;
 *  - every node has a unique name, every `from` names an existing source or stage, the graph has no cycle,
 *    every source and stage has at least one consumer, min_demand < max_demand everywhere, partition
 *    dispatchers have partition_by, and the sum of channel capacities is within channels.memory_limit;
 *  - secrets (keys marked secret in the schema, and *_file contents) never appear in diagnostics.
 * The config is immutable after loading and is shared by the master and (through fork) every worker.
 */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum sl_conf_role_e {
    SL_ROLE_SOURCE = 0,
    SL_ROLE_STAGE = 1,
    SL_ROLE_SINK = 2,
} sl_conf_role_t;

/* X(enum suffix, yaml spelling) */
#define SL_DISPATCHER_MAP(X)  \
    X(DEMAND, "demand")       \
    X(BROADCAST, "broadcast") \
    X(PARTITION, "partition")

typedef enum sl_dispatcher_e {
#define SL_DISP_ENUM(name, text) SL_DISP_##name,
    SL_DISPATCHER_MAP(SL_DISP_ENUM)
#undef SL_DISP_ENUM
} sl_dispatcher_t;

#define SL_STRATEGY_MAP(X)        \
    X(ONE_FOR_ONE, "one_for_one") \
    X(ONE_FOR_ALL, "one_for_all") \
    X(REST_FOR_ONE, "rest_for_one")

typedef enum sl_strategy_e {
#define SL_STRAT_ENUM(name, text) SL_STRATEGY_##name,
    SL_STRATEGY_MAP(SL_STRAT_ENUM)
#undef SL_STRAT_ENUM
} sl_strategy_t;

#define SL_RESTART_MAP(X)     \
    X(PERMANENT, "permanent") \
    X(TRANSIENT, "transient") \
    X(TEMPORARY, "temporary")

typedef enum sl_restart_e {
#define SL_RESTART_ENUM(name, text) SL_RESTART_##name,
    SL_RESTART_MAP(SL_RESTART_ENUM)
#undef SL_RESTART_ENUM
} sl_restart_t;

/* Supervision settings of one group (defaults from `supervision:`, overridable per node). */
typedef struct sl_conf_sup_s {
    sl_strategy_t strategy;
    sl_restart_t restart;
    uint32_t max_restarts;
    uint64_t max_seconds_ns;
    uint64_t watchdog_ns; /* 0 = no watchdog */
    uint64_t shutdown_timeout_ns;
} sl_conf_sup_t;

/* Kinds of schema values: X(enum suffix, name in the reference, what a diagnostic says was expected). */
#define SL_PARAM_KIND_MAP(X)                                                                      \
    X(STRING, "string", "a string")                                                               \
    X(INT, "int", "an integer like -5 or 1_000")                                                  \
    X(COUNT, "count", "a count (an integer like 1000 or 1_000)")                                  \
    X(SIZE, "size", "a size (bytes, or an integer with a unit like 512KiB, 64MiB, 1GiB or 10MB)") \
    X(DURATION, "duration", "a duration (an integer with a unit like 250ms, 5s, 1m or 1h30m)")    \
    X(BOOL, "bool", "true or false")                                                              \
    X(ENUM, "enum", "one of the listed values")                                                   \
    X(DOUBLE, "number", "a number like 0.5 or 1e3")                                               \
    X(LIST, "list", "a name or a list of names")                                                  \
    X(MAP, "map", "a map of keys")

typedef enum sl_param_kind_e {
#define SL_PARAM_ENUM(name, ref, expect) SL_PARAM_##name,
    SL_PARAM_KIND_MAP(SL_PARAM_ENUM)
#undef SL_PARAM_ENUM
} sl_param_kind_t;

/* One entry of a free-form property map (a MAP key of the schema without a section, e.g. `librdkafka:`). */
typedef struct sl_conf_prop_s {
    const char *name;  /* as written (a NAME_file entry is stored under NAME) */
    const char *value; /* scalar text after env substitution, or the contents of NAME_file's file */
    int line, col;     /* of the entry's key */
} sl_conf_prop_t;

/* A type-specific key of a node, already checked against the node type's schema. */
typedef struct sl_conf_param_s {
    const char *key;
    const char *value; /* scalar text after env substitution; for secrets, the secret itself */
    int line, col;
    int kind;                    /* SL_PARAM_* of the schema entry */
    const sl_conf_prop_t *props; /* free-form MAP: its entries in file order */
    size_t n_props;
} sl_conf_param_t;

/* A source, stage or sink. */
typedef struct sl_conf_node_s {
    const char *name;
    const char *type; /* "generator", "passthrough", "null", ... (validated against the schema) */
    sl_conf_role_t role;
    const char **from; /* names of the nodes it takes input from (sources: none) */
    size_t n_from;
    uint32_t concurrency;
    uint32_t max_demand, min_demand; /* demand on each of its input subscriptions */
    /* How each upstream instance spreads events over this node's instances (Broadway puts partition_by on
     * the consuming group the same way). Every downstream node gets every event of its upstream. */
    sl_dispatcher_t dispatcher;
    const char *partition_by; /* for the partition dispatcher: "key" or an attribute name */
    uint64_t capacity;        /* bytes of each input channel of each instance */
    const char *dead_letter;  /* sink that takes its failed events, or NULL */
    sl_conf_sup_t sup;
    sl_conf_param_t *params; /* every schema key of its type, defaults filled in */
    size_t n_params;
    int line, col; /* where the node starts in the file */
} sl_conf_node_t;

typedef struct sl_config_s {
    const char *path;
    const char *pipeline_name;
    sl_conf_node_t *nodes; /* sources first, then stages, then sinks, each in file order */
    size_t n_nodes;
    sl_conf_sup_t sup;        /* the defaults, also the root's */
    uint32_t max_demand;      /* channels.max_demand default */
    uint32_t min_demand;      /* channels.min_demand default */
    uint64_t capacity;        /* channels.capacity default */
    uint64_t memory_limit;    /* channels.memory_limit */
    const char *channels_dir; /* channels.dir, or NULL: channels in anonymous memory (not recoverable) */
    bool metrics_enabled;
    const char *metrics_listen;   /* "127.0.0.1:9464" */
    uint64_t summary_interval_ns; /* metrics.summary_interval; 0 = no periodic summary line */
    bool metrics_latency;         /* metrics.latency: sinks record ingest -> acknowledgement latency */
    void *impl_;                  /* the loader's arena; owned by the config */
} sl_config_t;

/* One problem found while loading, located in the file. */
typedef struct sl_diag_s {
    const char *file;
    int line, col;    /* 1-based; 0 when the problem concerns the file as a whole */
    const char *path; /* "stages.decode.max_demand", or "" */
    const char *msg;  /* what is wrong (what was expected) */
} sl_diag_t;

typedef struct sl_diags_s {
    sl_diag_t *v;
    size_t n, cap;
    void *arena_;
} sl_diags_t;

/*
 * Loads, substitutes, validates and checks the topology of the YAML file at path. Collects every problem
 * into diags (which the caller initialises zeroed and releases with sl_diags_free) rather than stopping at
 * the first. Returns 0 and sets *out (owned by the caller, free with sl_config_destroy) when there was no
 * error; otherwise returns SL_ECONFIG, sets *out to NULL and diags holds at least one entry.
 * Any thread; uses no global state.
 */
int sl_config_load(const char *path, sl_config_t **out, sl_diags_t *diags);

/* Same, from a buffer; name is used in diagnostics as the file name. */
int sl_config_load_buffer(const char *name, const char *buf, size_t len, sl_config_t **out, sl_diags_t *diags);

void sl_config_destroy(sl_config_t *cfg);
void sl_diags_free(sl_diags_t *diags);

/* Writes each diagnostic as "FILE:LINE:COL: path: message\n". */
void sl_diags_print(const sl_diags_t *diags, FILE *to);

/* Typed access to a node's params (the schema guarantees presence and type after a successful load). */
const char *sl_conf_str(const sl_conf_node_t *node, const char *key);
int64_t sl_conf_int(const sl_conf_node_t *node, const char *key);
uint64_t sl_conf_size(const sl_conf_node_t *node, const char *key);     /* bytes */
uint64_t sl_conf_duration(const sl_conf_node_t *node, const char *key); /* nanoseconds */
bool sl_conf_bool(const sl_conf_node_t *node, const char *key);
double sl_conf_double(const sl_conf_node_t *node, const char *key);
/* The entries of a free-form MAP key (e.g. a kafka sink's `librdkafka:`); returns how many, *out the array. */
size_t sl_conf_props(const sl_conf_node_t *node, const char *key, const sl_conf_prop_t **out);

/* Index of node `name` in cfg->nodes, or -1. */
int sl_config_find(const sl_config_t *cfg, const char *name);

/* Writes the generated config reference (Markdown) from the schema table. */
void sl_config_reference(FILE *to);

/* Prints the topology summary of a valid config: nodes, instances, channels, memory bound. */
void sl_config_print_summary(const sl_config_t *cfg, FILE *to);

/* `sluice validate` (argv[0] is "validate"). Returns the process exit code: 0 valid, 1 invalid, 2 usage. */
int sl_cli_validate(int argc, char **argv);

/* Name tables for the enums above. */
const char *sl_dispatcher_name(sl_dispatcher_t d);
const char *sl_strategy_name(sl_strategy_t s);
const char *sl_restart_name(sl_restart_t r);
const char *sl_param_kind_name(sl_param_kind_t k); /* "count", "size", ... */

#endif /* SL_CONFIG_H */
