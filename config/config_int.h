/*
 * Private interface of the configuration loader, shared by the files of config/ and its unit tests.
 *
 * Loading runs in four steps, each in its own file: yaml.c turns the bytes into a small tree that keeps
 * the line:column of every key and value; load.c and load_nodes.c check that tree against the schema
 * table (schema.c) and fill an sl_config_t, with env.c substituting ${VAR} in scalars and units.c parsing
 * typed values; topology.c checks the graph and the memory bound. Every step reports into one sl__lctx_t
 * and goes on after an error, so one run reports every problem. Out of memory while loading is fatal
 * (the loader runs once at start-up, on input bounded to SL__MAX_FILE bytes, before any worker exists).
 */
#ifndef SL_CONFIG_INT_H
#define SL_CONFIG_INT_H

#include "common/sl.h"
#include "config/config.h"

#include <stdarg.h>

#define SL__MAX_FILE (16u << 20)  /* larger files are refused before parsing */
#define SL__MAX_DEPTH 64          /* YAML nesting; deeper is refused (the schema needs 4) */
#define SL__MAX_DIAGS 200         /* beyond this, diagnostics are counted, not kept */
#define SL__MAX_SECRET_FILE 65536 /* bytes of a *_file secret */
#define SL__ERANGE SL_ERANGE      /* a well-formed number that does not fit */

/* ---- arena (arena.c) ---- */

typedef struct sl__arena_s sl__arena_t;
sl__arena_t *sl__arena_new(void);
void sl__arena_destroy(sl__arena_t *a);
void *sl__arena_alloc(sl__arena_t *a, size_t n); /* zeroed, 16-byte aligned, never NULL */
char *sl__arena_strndup(sl__arena_t *a, const char *s, size_t n);
char *sl__arena_strdup(sl__arena_t *a, const char *s);
char *sl__arena_printf(sl__arena_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *sl__arena_vprintf(sl__arena_t *a, const char *fmt, va_list ap);
void *sl__xrealloc(void *p, size_t n); /* realloc that aborts when memory is exhausted */

/* Damerau-Levenshtein (optimal string alignment) distance, capped at cap + 1. */
size_t sl__edit_distance(const char *a, const char *b, size_t cap);
/* The candidate closest to word when close enough to be a likely typo, else NULL. */
const char *sl__suggest(const char *word, const char *const *cands, size_t n);

/* ---- unit parsers (units.c): 0, SL_EINVAL (malformed) or SL__ERANGE (does not fit) ---- */

int sl__parse_int(const char *s, int64_t *out);          /* -12, 1_000 */
int sl__parse_count(const char *s, uint64_t *out);       /* 0, 1_000_000 */
int sl__parse_size(const char *s, uint64_t *out);        /* 512, 64KiB, 1 GiB, 10MB */
int sl__parse_duration(const char *s, uint64_t *out_ns); /* 0, 250ms, 5s, 1h30m, 10us */
int sl__parse_bool(const char *s, bool *out);            /* true, false */
int sl__parse_double(const char *s, double *out);
/* Writes bytes in the largest binary unit that keeps it readable ("1 MiB", "1.5 GiB", "100 B"). */
void sl__fmt_size(uint64_t bytes, char *buf, size_t len);

/* ---- environment substitution (env.c) ---- */

typedef const char *(*sl__getenv_fn)(void *ctx, const char *name);

/*
 * Substitutes ${VAR}, ${VAR:-default}, ${VAR:?message} and $$ in in[0..len). Returns 0 and sets *out
 * (in the arena, or in itself when there is nothing to substitute), or SL_EINVAL and sets *why to what is
 * wrong. An unset ${VAR} is an error too: a silently empty broker address helps nobody.
 */
int sl__env_subst(sl__arena_t *a, const char *in, size_t len, sl__getenv_fn env, void *env_ctx, const char **out,
                  const char **why);

/* ---- YAML tree (yaml.c) ---- */

typedef enum sl__ykind_e {
    SL__Y_SCALAR,
    SL__Y_MAP,
    SL__Y_SEQ,
    SL__Y_BAD, /* an alias or other refused construct; already reported */
} sl__ykind_t;

typedef struct sl__ynode_s sl__ynode_t;
struct sl__ynode_s {
    sl__ykind_t kind;
    int line, col;     /* 1-based */
    bool plain;        /* scalar written without quotes */
    int dup_of;        /* a map key repeating an earlier one: that one's line (the loader reports it) */
    const char *text;  /* scalar text, NUL-terminated */
    sl__ynode_t **kid; /* map: key0, value0, key1, value1, ...; seq: the items */
    size_t n;          /* map: pairs; seq: items */
};

/* ---- schema (schema.c) ---- */

enum {
    SL__KEY_REQUIRED = 1u << 0,
    SL__KEY_SECRET = 1u << 1, /* never printed; may also be given as <key>_file: PATH */
};

typedef struct sl__key_s {
    const char *section; /* "channels", "supervision", "node" (every node), "sources.generator", ... */
    const char *key;
    sl_param_kind_t kind;
    const char *def;       /* default, written as in a file; NULL when required or computed */
    const char *def_doc;   /* how a computed default is derived (reference only) */
    const char *min, *max; /* inclusive bounds written as in a file; NULL = none */
    const char *values;    /* ENUM: "a|b|c"; MAP: the section whose keys it holds, NULL = free-form */
    int (*check)(const char *text, const char **why); /* extra check of a STRING, or NULL */
    const char *check_doc;                            /* what check() allows (reference only) */
    unsigned flags;                                   /* SL__KEY_* */
    const char *doc;                                  /* one line */
} sl__key_t;

typedef struct sl__type_s {
    sl_conf_role_t role;
    const char *name;
    const char *section; /* its keys' section: "sources.generator" */
    const char *doc;
} sl__type_t;

typedef struct sl__schema_s {
    const sl__key_t *keys;
    size_t n_keys;
    const sl__type_t *types;
    size_t n_types;
} sl__schema_t;

const sl__schema_t *sl__schema_builtin(void);
/* Free-form MAP keys: the check of one entry (name and value): 0, or SL_EINVAL with why[cap] set, which
 * must not quote the value (it may be a password). NULL = any name, any scalar. */
typedef int (*sl__prop_check_fn)(const char *name, const char *value, char *why, size_t cap);
sl__prop_check_fn sl__schema_prop_check(const sl__key_t *k);
const sl__key_t *sl__schema_key(const sl__schema_t *sc, const char *section, const char *key);
const sl__type_t *sl__schema_type(const sl__schema_t *sc, sl_conf_role_t role, const char *name);
const char *sl__role_section(sl_conf_role_t role); /* "sources", "stages", "sinks" */
const char *sl__role_name(sl_conf_role_t role);    /* "source", "stage", "sink" */
int sl__check_ident(const char *text, const char **why);
void sl__schema_reference(const sl__schema_t *sc, FILE *to);

/* ---- loading (load.c, load_value.c, load_nodes.c) ---- */

typedef struct sl__lctx_s {
    const char *file; /* as shown in diagnostics */
    const char *dir;  /* directory of the file, for relative *_file paths; NULL = working directory */
    sl_diags_t *diags;
    size_t n_err; /* errors reported by this load, kept or not */
    size_t max_diags;
    sl__arena_t *tmp;  /* the tree and scratch values; released when loading ends */
    sl__arena_t *keep; /* the config's arena */
    const sl__schema_t *schema;
    sl__getenv_fn env;
    void *env_ctx;
    sl_config_t *cfg;
    struct sl__nodex_s *nx; /* per node: where its keys were, for the topology checks */
    /* Problems that make some topology findings mere echoes of an error already reported. */
    bool from_broken; /* a from that did not load or names nothing usable: skip "no consumer" */
    bool names_dup;   /* two nodes share a name: from is ambiguous, skip graph checks */
} sl__lctx_t;

void sl__err(sl__lctx_t *lc, int line, int col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void sl__diag_add(sl_diags_t *d, const char *file, int line, int col, const char *path, const char *msg);

/* Builds the tree; reports syntax and structural problems. Returns 0 or SL_ECONFIG (*root then NULL). */
int sl__yaml_parse(sl__lctx_t *lc, const char *buf, size_t len, sl__ynode_t **root);
/* The scalar of map key `key` (first occurrence) or NULL. */
const sl__ynode_t *sl__ymap_get(const sl__ynode_t *map, const char *key);
bool sl__ynull(const sl__ynode_t *n); /* ~, null, or nothing, written plain */

/* One schema key's value in a map, parsed and range-checked. */
typedef struct sl__val_s {
    const sl__key_t *key;
    const sl__ynode_t *at; /* the value node, NULL when defaulted */
    const char *text;      /* after substitution; the default when not given */
    bool given, ok;        /* ok: given and valid */
    union {
        int64_t i;
        uint64_t u;
        double d;
        bool b;
    } v;
    const char **list; /* LIST items */
    const sl__ynode_t **list_at;
    size_t n_list;
    sl_conf_prop_t *props; /* free-form MAP entries */
    size_t n_props;
} sl__val_t;

typedef struct sl__vals_s {
    sl__val_t *v;
    size_t n;
} sl__vals_t;

/*
 * Checks map (NULL or null = empty) against the keys of the given sections: unknown keys (unless
 * lenient), types, ranges, required keys. Every key of those sections gets a value, defaulted when not
 * given and valid. path names the map in diagnostics. Release the result with sl__vals_free().
 */
sl__vals_t sl__section_load(sl__lctx_t *lc, const char *path, const sl__ynode_t *map, const char *const *sections,
                            size_t n_sections, bool lenient);
sl__val_t *sl__vals_get(const sl__vals_t *vs, const char *key); /* asserts it exists */
void sl__vals_free(sl__vals_t *vs);                             /* the array; list items and texts live in lc->tmp */
/* Parses a default or bound text of a key (schema texts are trusted; tests check they all parse). */
int sl__value_parse(sl_param_kind_t kind, const char *text, sl__val_t *v);
/* Substitutes env in a scalar without reporting; NULL when it is not a usable scalar. */
const char *sl__scalar_quiet(sl__lctx_t *lc, const sl__ynode_t *n);

/* Enum value of text for "dispatcher", "strategy" or "restart" (text already checked by the schema). */
int sl__enum_value(const char *kind, const char *text);
/* Copies supervision values into sup: all of them, or only those given and valid in the file. */
void sl__sup_apply(const sl__vals_t *vs, sl_conf_sup_t *sup, bool only_given);

/* Fills lc->cfg->nodes from the sources, stages and sinks lists. */
void sl__nodes_load(sl__lctx_t *lc, const sl__ynode_t *roles[3]);

/* Per-node locations the topology checks need. */
typedef struct sl__nodex_s {
    const char *path;                                 /* "stages.relay" or "stages[2]" */
    const sl__ynode_t *at;                            /* the node's map */
    const sl__ynode_t *name_at, *from_key, **from_at; /* from_at[i]: item i of from */
    const sl__ynode_t *min_at, *max_at, *disp_at, *part_at, *dl_at;
    bool named;   /* has a valid name */
    bool no_from; /* a sink without from: valid only as some node's dead_letter */
} sl__nodex_t;

/* Topology checks (topology.c); memory_at locates channels.memory_limit (may be NULL). */
void sl__topology_check(sl__lctx_t *lc, const sl__ynode_t *memory_at);
/* Instances, channels and the memory bound of a config; saturates at UINT64_MAX. */
void sl__topology_totals(const sl_config_t *cfg, uint64_t *instances, uint64_t *channels, uint64_t *bytes);

/*
 * The loader behind sl_config_load*: schema NULL = built-in, env NULL = getenv, dir for *_file paths.
 * Tests use it to load with a fake environment or an extended schema.
 */
int sl__config_load_ex(const char *name, const char *dir, const char *buf, size_t len, const sl__schema_t *schema,
                       sl__getenv_fn env, void *env_ctx, sl_config_t **out, sl_diags_t *diags);

/* sl_cli_validate with its streams given (for tests). */
int sl__cli_validate(int argc, char **argv, FILE *out, FILE *err);

#endif /* SL_CONFIG_INT_H */
