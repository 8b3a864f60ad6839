/*
 * The configuration reference (docs/config.md), generated from the schema table.
 *
 * The reference is written only from the rows of config/schema.c, so it cannot describe a key the loader
 * does not know or miss one it does; a unit test regenerates it and compares it with the committed file.
 * The output is deterministic (table order, no dates).
 */
#include "config/config_int.h"

#include <string.h>

static const char sl__ref_intro[] =
    "# sluice configuration reference\n"
    "\n"
    "<!-- Generated from config/schema.c by sl_config_reference(); do not edit by hand. Regenerate with\n"
    "     SLUICE_UPDATE_DOCS=1 ctest -R test_config_schema (the test fails while this file is stale). -->\n"
    "\n"
    "A pipeline is one YAML file: the sections `pipeline`, `channels`, `supervision` and `metrics`, then the\n"
    "lists `sources`, `stages` and `sinks`. Check a file with `sluice validate -c FILE`: it lists every\n"
    "problem as `FILE:LINE:COL: path.to.key: what is wrong (what was expected)`, or prints the topology.\n"
    "\n"
    "```yaml\n"
    "pipeline: { name: fleet-relay }\n"
    "channels: { max_demand: 4000, capacity: 1MiB, memory_limit: 256MiB }\n"
    "sources:\n"
    "  - { name: fleet, type: generator, count: 1_000_000 }\n"
    "stages:\n"
    "  - { name: relay, type: passthrough, from: fleet, concurrency: 2 }\n"
    "sinks:\n"
    "  - { name: out, type: null, from: relay }\n"
    "```\n"
    "\n"
    "## Values\n"
    "\n"
    "- **count**: a non-negative integer; `_` may separate digits: `1_000_000`. **int** may be negative.\n"
    "- **size**: bytes, or an integer with a unit: `B`, `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024) or\n"
    "  `KB`, `MB`, `GB`, `TB` (powers of 1000); units ignore case: `512KiB`, `64MiB`, `1GiB`, `10MB`.\n"
    "- **duration**: integers with units `ns`, `us`, `ms`, `s`, `m`, `h`, `d`, possibly combined:\n"
    "  `250ms`, `5s`, `1h30m`; `0` needs no unit.\n"
    "- **bool**: `true` or `false` (not `yes`/`no`/`on`/`off`).\n"
    "- **list**: one name, or a YAML list of names: `from: a` or `from: [a, b]`.\n"
    "- Environment variables are substituted in every value (not in keys): `${VAR}` (an error when VAR is\n"
    "  unset), `${VAR:-default}` (the default when unset or empty), `${VAR:?message}` (an error with the\n"
    "  message when unset or empty); `$$` is a literal `$`. The result is not substituted again.\n"
    "- A key marked *secret* is never shown in diagnostics or summaries, and may instead be given as\n"
    "  `<key>_file: PATH` (relative to the config file) holding the value; one trailing newline is removed.\n"
    "- YAML anchors, aliases and tags are not supported; a file holds exactly one document of at most\n"
    "  16 MiB. Unknown keys are errors (with a suggestion when one is close).\n";

static void sl__ref_allowed(const sl__key_t *k, FILE *to)
{
    if (k->kind == SL_PARAM_ENUM) {
        for (const char *p = k->values; *p != '\0';) {
            size_t n = strcspn(p, "|");
            fprintf(to, "%s`%.*s`", p == k->values ? "" : ", ", (int)n, p);
            p += n + (p[n] == '|');
        }
    } else if (k->kind == SL_PARAM_MAP && k->values == NULL) {
        fprintf(to, "%s", k->check_doc ? k->check_doc : "names to values");
    } else if (k->kind == SL_PARAM_MAP) {
        fprintf(to, "keys of `%s`", k->values);
    } else if (k->min != NULL && k->max != NULL) {
        fprintf(to, "`%s` .. `%s`", k->min, k->max);
    } else if (k->min != NULL) {
        fprintf(to, "at least `%s`", k->min);
    } else if (k->max != NULL) {
        fprintf(to, "at most `%s`", k->max);
    } else if (k->check_doc != NULL) {
        fprintf(to, "%s", k->check_doc);
    }
}

static void sl__ref_table(const sl__schema_t *sc, const char *section, FILE *to)
{
    size_t n = 0;
    for (size_t i = 0; i < sc->n_keys; i++) {
        const sl__key_t *k = &sc->keys[i];
        if (strcmp(k->section, section) != 0)
            continue;
        if (n++ == 0)
            fprintf(to, "| key | type | default | allowed | description |\n|---|---|---|---|---|\n");
        fprintf(to, "| `%s` | %s%s | ", k->key, sl_param_kind_name(k->kind),
                (k->flags & SL__KEY_SECRET) ? " (secret; or `_file`)" : "");
        if (k->flags & SL__KEY_REQUIRED)
            fprintf(to, "**required**");
        else if (k->def != NULL)
            fprintf(to, k->def[0] ? "`%s`" : "`\"\"`", k->def);
        else if (k->def_doc != NULL)
            fprintf(to, "%s", k->def_doc);
        fprintf(to, " | ");
        sl__ref_allowed(k, to);
        fprintf(to, " | %s |\n", k->doc);
    }
    if (n == 0)
        fprintf(to, "No keys of its own.\n");
}

void sl__schema_reference(const sl__schema_t *sc, FILE *to)
{
    fputs(sl__ref_intro, to);
    /* The plain sections, in the order the table first mentions them. */
    for (size_t i = 0; i < sc->n_keys; i++) {
        const char *s = sc->keys[i].section;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(sc->keys[j].section, s) == 0;
        if (seen || strchr(s, '.') != NULL || strcmp(s, "node") == 0)
            continue;
        fprintf(to, "\n## `%s`\n\n", s);
        sl__ref_table(sc, s, to);
    }
    fprintf(to, "\n## Keys of every node\n\nEvery item of `sources`, `stages` and `sinks` takes these keys "
                "beside the keys of its type. A source takes no input, so `from`, `max_demand`, `min_demand`, "
                "`dispatcher`, `partition_by` and `capacity` are errors on a source.\n\n");
    sl__ref_table(sc, "node", to);
    for (int r = 0; r < 3; r++) {
        const char *sec = sl__role_section((sl_conf_role_t)r);
        fprintf(to, "\n## %c%s\n", sec[0] - 'a' + 'A', sec + 1);
        for (size_t i = 0; i < sc->n_types; i++) {
            const sl__type_t *t = &sc->types[i];
            if (t->role != (sl_conf_role_t)r)
                continue;
            fprintf(to, "\n### `%s` (%s)\n\n%s\n\n", t->name, sl__role_name(t->role), t->doc);
            sl__ref_table(sc, t->section, to);
        }
    }
}

void sl_config_reference(FILE *to) { sl__schema_reference(sl__schema_builtin(), to); }
