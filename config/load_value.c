/*
 * Checking one map of the file against the schema rows of its section(s): unknown keys (with a
 * suggestion), duplicate keys, types, bounds, allowed values, required keys, secrets given as
 * <key>_file, and environment substitution in every scalar.
 *
 * Every problem is reported at the position of what is wrong (the key for unknown and duplicate keys,
 * the value for wrong values, the map for missing keys) and checking goes on with the next key, so one
 * run reports all of them. A value that is wrong falls back to its default so later checks (topology,
 * memory) still have something sensible to work with; the load fails anyway. Secret values never reach
 * a diagnostic: messages about them say what was expected, not what was found.
 */
#include "config/config_int.h"

#include <assert.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *sl__kind_expect(sl_param_kind_t k)
{
    switch (k) {
#define SL_PARAM_EXPECT(name, ref, expect) \
    case SL_PARAM_##name: return expect;
        SL_PARAM_KIND_MAP(SL_PARAM_EXPECT)
#undef SL_PARAM_EXPECT
    }
    return "?";
}

static const char *sl__path(sl__lctx_t *lc, const char *path, const char *key)
{
    return path[0] ? sl__arena_printf(lc->tmp, "%s.%s", path, key) : key;
}

/* What was found, for "got ...": quoted and cut short, or the node's shape. */
static const char *sl__got(sl__lctx_t *lc, const sl__ynode_t *n, const char *text, bool secret)
{
    if (n != NULL && n->kind == SL__Y_MAP)
        return "a map";
    if (n != NULL && n->kind == SL__Y_SEQ)
        return "a list";
    if (text == NULL && sl__ynull(n))
        return "nothing";
    if (text == NULL)
        text = n != NULL && n->text != NULL ? n->text : "";
    if (secret)
        return "a value that is not shown (secret)";
    char buf[64];
    size_t o = 0, i = 0;
    for (; text[i] != '\0' && o < 40; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
            o += (size_t)snprintf(buf + o, sizeof buf - o, c == '"' || c == '\\' ? "\\%c" : "\\x%02x", c);
        else
            buf[o++] = (char)c;
    }
    buf[o] = '\0';
    return sl__arena_printf(lc->tmp, "\"%s\"%s", buf, text[i] != '\0' ? "..." : "");
}

const char *sl__scalar_quiet(sl__lctx_t *lc, const sl__ynode_t *n)
{
    const char *out, *why;
    if (n == NULL || n->kind != SL__Y_SCALAR || (n->plain && n->text[0] == '\0'))
        return NULL;
    if (sl__env_subst(lc->tmp, n->text, strlen(n->text), lc->env, lc->env_ctx, &out, &why) != 0)
        return NULL;
    return out;
}

int sl__value_parse(sl_param_kind_t kind, const char *text, sl__val_t *v)
{
    switch (kind) {
    case SL_PARAM_INT: return sl__parse_int(text, &v->v.i);
    case SL_PARAM_COUNT: return sl__parse_count(text, &v->v.u);
    case SL_PARAM_SIZE: return sl__parse_size(text, &v->v.u);
    case SL_PARAM_DURATION: return sl__parse_duration(text, &v->v.u);
    case SL_PARAM_BOOL: return sl__parse_bool(text, &v->v.b);
    case SL_PARAM_DOUBLE: return sl__parse_double(text, &v->v.d);
    default: return 0;
    }
}

/* -1, 0, 1 as a is below, equal to or above b (both parsed as the key's kind). */
static int sl__val_cmp(sl_param_kind_t kind, const sl__val_t *a, const sl__val_t *b)
{
    if (kind == SL_PARAM_INT)
        return a->v.i < b->v.i ? -1 : a->v.i > b->v.i;
    if (kind == SL_PARAM_DOUBLE)
        return a->v.d < b->v.d ? -1 : a->v.d > b->v.d;
    return a->v.u < b->v.u ? -1 : a->v.u > b->v.u;
}

/* Checks bounds; returns NULL or the "(expected ...)" text. */
static const char *sl__range_why(sl__lctx_t *lc, const sl__key_t *k, const sl__val_t *v)
{
    sl__val_t lo = {0}, hi = {0};
    bool below = k->min && sl__value_parse(k->kind, k->min, &lo) == 0 && sl__val_cmp(k->kind, v, &lo) < 0;
    bool above = k->max && sl__value_parse(k->kind, k->max, &hi) == 0 && sl__val_cmp(k->kind, v, &hi) > 0;
    if (!below && !above)
        return NULL;
    if (k->min && k->max)
        return sl__arena_printf(lc->tmp, "expected %s..%s", k->min, k->max);
    return sl__arena_printf(lc->tmp, "expected at %s %s", below ? "least" : "most", below ? k->min : k->max);
}

/* Checks an ENUM text against "a|b|c"; on failure reports with the list and a suggestion. */
static bool sl__enum_check(sl__lctx_t *lc, const char *path, const sl__key_t *k, const sl__ynode_t *at,
                           const char *text)
{
    const char *cands[32];
    size_t n = 0;
    char *vals = sl__arena_strdup(lc->tmp, k->values), *save = NULL;
    for (char *t = strtok_r(vals, "|", &save); t != NULL && n < SL_ARRAY_LEN(cands); t = strtok_r(NULL, "|", &save)) {
        if (strcmp(t, text) == 0)
            return true;
        cands[n++] = t;
    }
    char list[512];
    size_t o = 0;
    list[0] = '\0';
    for (size_t i = 0; i < n && o < sizeof list - 64; i++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", cands[i]);
    const char *sug = sl__suggest(text, cands, n);
    sl__err(lc, at->line, at->col, path, "expected one of %s, got %s%s%s%s", list, sl__got(lc, at, text, false),
            sug ? "; did you mean \"" : "", sug ? sug : "", sug ? "\"?" : "");
    return false;
}

/* Parses and checks text as the key's kind; reports at `at`. Returns whether it is valid. */
static bool sl__val_check(sl__lctx_t *lc, const char *path, const sl__key_t *k, const sl__ynode_t *at, const char *text,
                          sl__val_t *v)
{
    bool secret = (k->flags & SL__KEY_SECRET) != 0;
    int rc = sl__value_parse(k->kind, text, v);
    if (rc == SL_EINVAL) {
        sl__err(lc, at->line, at->col, path, "expected %s, got %s", sl__kind_expect(k->kind),
                sl__got(lc, at, text, secret));
        return false;
    }
    if (rc != 0) {
        sl__err(lc, at->line, at->col, path, "%s is too large for %s %s",
                secret ? "the value" : sl__got(lc, at, text, false), k->kind == SL_PARAM_INT ? "an" : "a",
                sl_param_kind_name(k->kind));
        return false;
    }
    if (k->kind == SL_PARAM_ENUM)
        return sl__enum_check(lc, path, k, at, text);
    const char *why = sl__range_why(lc, k, v);
    if (why != NULL) {
        sl__err(lc, at->line, at->col, path, "%s is out of range (%s)", secret ? "the value" : text, why);
        return false;
    }
    if (k->check != NULL && k->check(text, &why) != 0) {
        sl__err(lc, at->line, at->col, path, "%s, got %s", why, sl__got(lc, at, text, secret));
        return false;
    }
    return true;
}

/* A LIST: one scalar, or a sequence of scalars. */
static bool sl__val_list(sl__lctx_t *lc, const char *path, const sl__ynode_t *at, sl__val_t *v)
{
    size_t n = at->kind == SL__Y_SEQ ? at->n : 1;
    if (at->kind == SL__Y_MAP || n == 0) {
        sl__err(lc, at->line, at->col, path, "expected %s, got %s", sl__kind_expect(SL_PARAM_LIST),
                n == 0 ? "an empty list" : "a map");
        return false;
    }
    v->list = sl__arena_alloc(lc->tmp, n * sizeof *v->list);
    v->list_at = sl__arena_alloc(lc->tmp, n * sizeof *v->list_at);
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        const sl__ynode_t *it = at->kind == SL__Y_SEQ ? at->kid[i] : at;
        const char *text, *why;
        if (it->kind == SL__Y_BAD) {
            ok = false;
            continue;
        }
        if (it->kind != SL__Y_SCALAR || (it->plain && it->text[0] == '\0')) {
            sl__err(lc, it->line, it->col, path, "expected a name, got %s", sl__got(lc, it, NULL, false));
            ok = false;
            continue;
        }
        if (sl__env_subst(lc->tmp, it->text, strlen(it->text), lc->env, lc->env_ctx, &text, &why) != 0) {
            sl__err(lc, it->line, it->col, path, "%s", why);
            ok = false;
            continue;
        }
        v->list_at[v->n_list] = it;
        v->list[v->n_list++] = text;
    }
    return ok;
}

/* Reads a *_file secret: a regular file of at most SL__MAX_SECRET_FILE bytes, one trailing newline cut. */
static const char *sl__secret_read(sl__lctx_t *lc, const char *file, const char **why)
{
    const char *p = file[0] != '/' && lc->dir ? sl__arena_printf(lc->tmp, "%s/%s", lc->dir, file) : file;
    int fd = open(p, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > SL__MAX_SECRET_FILE) {
        *why = sl__arena_printf(lc->tmp, "cannot use \"%s\" as a secret file: %s", p,
                                fd < 0                             ? strerror(errno)
                                : st.st_size > SL__MAX_SECRET_FILE ? "larger than 64 KiB"
                                                                   : "not a regular file");
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    char *buf = sl__arena_alloc(lc->tmp, (size_t)st.st_size + 1);
    ssize_t n = read(fd, buf, (size_t)st.st_size);
    close(fd);
    if (n < 0 || memchr(buf, '\0', (size_t)n) != NULL) {
        *why = sl__arena_printf(lc->tmp, "cannot use \"%s\" as a secret file: %s", p,
                                n < 0 ? strerror(errno) : "it contains a NUL byte");
        return NULL;
    }
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return buf;
}

/*
 * A free-form MAP (`librdkafka:`): names to scalar values, each env-substituted; `NAME_file: PATH` reads
 * NAME's value from a file (for secrets). Values are never quoted in diagnostics (any may be a password);
 * the key's check_prop judges each entry (for librdkafka: the property exists and takes the value).
 */
static bool sl__val_props(sl__lctx_t *lc, const char *path, const sl__key_t *k, const sl__ynode_t *at, sl__val_t *v)
{
    bool secret = true, ok = true; /* a property may be a password: its values are never quoted */
    if (sl__ynull(at))
        return true;
    if (at->kind != SL__Y_MAP) {
        if (at->kind == SL__Y_SCALAR)
            sl__err(lc, at->line, at->col, path,
                    "expected a map of property names to values, one `name: value` per line, got a string (not "
                    "shown: it may hold a secret)");
        else
            sl__err(lc, at->line, at->col, path, "expected a map of property names to values (name: value), got %s",
                    sl__got(lc, at, NULL, secret));
        return false;
    }
    v->props = sl__arena_alloc(lc->tmp, (at->n + 1) * sizeof *v->props);
    for (size_t i = 0; i < at->n; i++) {
        const sl__ynode_t *kn = at->kid[2 * i], *vn = at->kid[2 * i + 1];
        if (kn->kind == SL__Y_BAD || vn->kind == SL__Y_BAD) {
            ok = false;
            continue;
        }
        if (kn->kind != SL__Y_SCALAR || kn->text[0] == '\0') {
            sl__err(lc, kn->line, kn->col, path, "a property name must be a non-empty name");
            ok = false;
            continue;
        }
        const char *kpath = sl__path(lc, path, kn->text), *text, *why;
        if (kn->dup_of) {
            sl__err(lc, kn->line, kn->col, kpath, "duplicate key (first given at line %d)", kn->dup_of);
            ok = false;
            continue;
        }
        if (vn->kind != SL__Y_SCALAR || (vn->plain && vn->text[0] == '\0')) {
            sl__err(lc, vn->line, vn->col, kpath, "expected a value (a string, number or bool), got %s",
                    sl__got(lc, vn, NULL, secret));
            ok = false;
            continue;
        }
        if (sl__env_subst(lc->tmp, vn->text, strlen(vn->text), lc->env, lc->env_ctx, &text, &why) != 0) {
            sl__err(lc, vn->line, vn->col, kpath, "%s", why);
            ok = false;
            continue;
        }
        size_t nl = strlen(kn->text);
        bool via_file = nl > 5 && strcmp(kn->text + nl - 5, "_file") == 0;
        const char *name = via_file ? sl__arena_strndup(lc->tmp, kn->text, nl - 5) : kn->text;
        if (via_file && (text = sl__secret_read(lc, text, &why)) == NULL) {
            sl__err(lc, vn->line, vn->col, kpath, "%s", why);
            ok = false;
            continue;
        }
        for (size_t j = 0; j < v->n_props; j++) {
            if (strcmp(v->props[j].name, name) == 0) {
                sl__err(lc, kn->line, kn->col, kpath, "%s is already given at line %d (write %s or %s_file, not both)",
                        name, v->props[j].line, name, name);
                ok = false;
                name = NULL;
                break;
            }
        }
        char msg[512];
        sl__prop_check_fn check = sl__schema_prop_check(k);
        if (name != NULL && check != NULL && check(name, text, msg, sizeof msg) != 0) {
            sl__err(lc, vn->line, vn->col, kpath, "%s", msg);
            ok = false;
            name = NULL;
        }
        if (name != NULL)
            v->props[v->n_props++] = (sl_conf_prop_t){name, text, kn->line, kn->col};
    }
    return ok;
}

/* Loads the value `at` of key k (via_file: `at` names a file holding it) into v. */
static void sl__val_load(sl__lctx_t *lc, const char *path, const sl__key_t *k, const sl__ynode_t *at, bool via_file,
                         sl__val_t *v)
{
    sl__val_t nv = *v;
    nv.given = true;
    nv.at = at;
    if (at->kind == SL__Y_BAD)
        goto out;
    if (k->kind == SL_PARAM_LIST) {
        nv.ok = sl__val_list(lc, path, at, &nv);
        goto out;
    }
    if (k->kind == SL_PARAM_MAP && k->values == NULL) {
        nv.ok = sl__val_props(lc, path, k, at, &nv);
        goto out;
    }
    if (k->kind == SL_PARAM_MAP) {
        nv.ok = at->kind == SL__Y_MAP || sl__ynull(at);
        if (!nv.ok)
            sl__err(lc, at->line, at->col, path, "expected a map of %s keys, got %s", k->values,
                    sl__got(lc, at, NULL, false));
        goto out;
    }
    /* Only an empty value is "nothing" here: `type: null` names the null sink, and `~` is no count. */
    bool empty = at->kind == SL__Y_SCALAR && at->plain && at->text[0] == '\0';
    if (at->kind != SL__Y_SCALAR || empty) {
        sl__err(lc, at->line, at->col, path, "expected %s, got %s%s", sl__kind_expect(k->kind),
                sl__got(lc, at, NULL, false),
                k->kind == SL_PARAM_STRING && empty ? " (write \"\" for an empty string)" : "");
        goto out;
    }
    const char *text, *why;
    if (sl__env_subst(lc->tmp, at->text, strlen(at->text), lc->env, lc->env_ctx, &text, &why) != 0) {
        sl__err(lc, at->line, at->col, path, "%s", why);
        goto out;
    }
    if (via_file && (text = sl__secret_read(lc, text, &why)) == NULL) {
        sl__err(lc, at->line, at->col, path, "%s", why);
        goto out;
    }
    nv.text = text;
    nv.ok = sl__val_check(lc, path, k, at, text, &nv);
out:
    if (nv.ok)
        *v = nv;
    else
        v->given = true, v->at = at; /* keeps the default value; the load fails anyway */
}

/* The row of key, or of its secret *_file spelling (then *via_file is set). */
static sl__val_t *sl__vals_find(const sl__vals_t *vs, const char *key, bool *via_file)
{
    *via_file = false;
    for (size_t i = 0; i < vs->n; i++)
        if (strcmp(vs->v[i].key->key, key) == 0)
            return &vs->v[i];
    size_t n = strlen(key);
    if (n <= 5 || strcmp(key + n - 5, "_file") != 0)
        return NULL;
    for (size_t i = 0; i < vs->n; i++) {
        const sl__key_t *k = vs->v[i].key;
        if ((k->flags & SL__KEY_SECRET) && strlen(k->key) == n - 5 && strncmp(k->key, key, n - 5) == 0) {
            *via_file = true;
            return &vs->v[i];
        }
    }
    return NULL;
}

static void sl__unknown_key(sl__lctx_t *lc, const char *path, const sl__vals_t *vs, const sl__ynode_t *k)
{
    const char **cands = sl__arena_alloc(lc->tmp, (2 * vs->n + 1) * sizeof *cands);
    size_t n = 0;
    char known[512];
    size_t o = 0;
    known[0] = '\0';
    for (size_t i = 0; i < vs->n; i++) {
        cands[n++] = vs->v[i].key->key;
        if (vs->v[i].key->flags & SL__KEY_SECRET)
            cands[n++] = sl__arena_printf(lc->tmp, "%s_file", vs->v[i].key->key);
        if (o < sizeof known - 64)
            o += (size_t)snprintf(known + o, sizeof known - o, "%s%s", i ? ", " : "", vs->v[i].key->key);
    }
    const char *sug = sl__suggest(k->text, cands, n);
    if (sug != NULL)
        sl__err(lc, k->line, k->col, sl__path(lc, path, k->text), "unknown key; did you mean \"%s\"?", sug);
    else if (vs->n == 0)
        sl__err(lc, k->line, k->col, sl__path(lc, path, k->text), "unknown key (this map takes no keys)");
    else
        sl__err(lc, k->line, k->col, sl__path(lc, path, k->text), "unknown key (expected one of %s)", known);
}

/* The rows of the sections, with their defaults. */
static sl__vals_t sl__vals_defaults(sl__lctx_t *lc, const char *const *sections, size_t n_sections)
{
    sl__vals_t vs = {0};
    const sl__schema_t *sc = lc->schema;
    size_t n = 0;
    for (size_t s = 0; s < n_sections; s++)
        for (size_t i = 0; i < sc->n_keys; i++)
            n += sections[s] != NULL && strcmp(sc->keys[i].section, sections[s]) == 0;
    /* Heap, not arena: a config with 100k nodes would otherwise keep 100k value arrays until the end. */
    vs.v = sl__xrealloc(NULL, (n + 1) * sizeof *vs.v);
    memset(vs.v, 0, (n + 1) * sizeof *vs.v);
    for (size_t s = 0; s < n_sections; s++) {
        for (size_t i = 0; i < sc->n_keys; i++) {
            if (sections[s] == NULL || strcmp(sc->keys[i].section, sections[s]) != 0)
                continue;
            sl__val_t *v = &vs.v[vs.n++];
            v->key = &sc->keys[i];
            v->text = sc->keys[i].def;
            if (v->text != NULL)
                sl__value_parse(v->key->kind, v->text, v);
        }
    }
    return vs;
}

sl__vals_t sl__section_load(sl__lctx_t *lc, const char *path, const sl__ynode_t *map, const char *const *sections,
                            size_t n_sections, bool lenient)
{
    sl__vals_t vs = sl__vals_defaults(lc, sections, n_sections);
    if (map != NULL && map->kind == SL__Y_BAD)
        return vs;
    if (map != NULL && !sl__ynull(map) && map->kind != SL__Y_MAP) {
        sl__err(lc, map->line, map->col, path, "expected a map of keys, got %s", sl__got(lc, map, map->text, false));
        return vs;
    }
    for (size_t i = 0; map != NULL && map->kind == SL__Y_MAP && i < map->n; i++) {
        const sl__ynode_t *k = map->kid[2 * i], *val = map->kid[2 * i + 1];
        if (k->kind == SL__Y_BAD)
            continue;
        if (k->kind != SL__Y_SCALAR) {
            sl__err(lc, k->line, k->col, path, "a key must be a name, not %s", sl__got(lc, k, NULL, false));
            continue;
        }
        const char *kpath = sl__path(lc, path, k->text);
        if (k->dup_of) {
            sl__err(lc, k->line, k->col, kpath, "duplicate key (first given at line %d)", k->dup_of);
            continue;
        }
        bool via_file;
        sl__val_t *v = sl__vals_find(&vs, k->text, &via_file);
        if (v == NULL) {
            if (!lenient)
                sl__unknown_key(lc, path, &vs, k);
            continue;
        }
        if (v->given) {
            sl__err(lc, k->line, k->col, kpath, "%s is already given (write %s or %s_file, not both)", v->key->key,
                    v->key->key, v->key->key);
            continue;
        }
        sl__val_load(lc, kpath, v->key, val, via_file, v);
    }
    for (size_t i = 0; i < vs.n; i++) {
        if ((vs.v[i].key->flags & SL__KEY_REQUIRED) && !vs.v[i].given)
            sl__err(lc, map ? map->line : 0, map ? map->col : 0, path, "missing required key \"%s\"", vs.v[i].key->key);
    }
    return vs;
}

void sl__vals_free(sl__vals_t *vs)
{
    free(vs->v);
    vs->v = NULL;
    vs->n = 0;
}

sl__val_t *sl__vals_get(const sl__vals_t *vs, const char *key)
{
    for (size_t i = 0; i < vs->n; i++)
        if (strcmp(vs->v[i].key->key, key) == 0)
            return &vs->v[i];
    assert(!"key not in the schema");
    return NULL;
}
