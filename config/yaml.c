/*
 * YAML bytes -> a small tree that remembers where every key and value was (1-based line:column).
 *
 * The tree is built from libyaml's event API, never its document API, so nothing is expanded behind our
 * back: anchors and aliases are refused (an alias bomb therefore costs nothing), nesting deeper than
 * SL__MAX_DEPTH is refused before libyaml's own stacks can grow, files larger than SL__MAX_FILE are
 * refused before parsing, and libyaml's scanner looks ahead at most 1024 characters, so memory stays
 * proportional to the input. Duplicate keys are only marked here (with the line of the first
 * occurrence); the loader reports them, because it knows the key's path in the schema.
 */
#include "config/config_int.h"

#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef struct sl__ylevel_s {
    sl__ynode_t *node;
    sl__ynode_t **kid;
    size_t n, cap;
} sl__ylevel_t;

typedef struct sl__ybuild_s {
    sl__lctx_t *lc;
    const char *buf;
    size_t len;
    sl__ylevel_t lv[SL__MAX_DEPTH + 1];
    size_t depth;
    sl__ynode_t *root;
    int docs;
    int refused; /* anchors and aliases seen */
} sl__ybuild_t;

/* The path of the value being built ("stages[1].from"), for problems found before the loader runs. */
static char *sl__ybuild_path(sl__ybuild_t *yb)
{
    char path[512];
    size_t o = 0;
    path[0] = '\0';
    for (size_t i = 0; i < yb->depth && o < sizeof path - 1; i++) {
        const sl__ylevel_t *l = &yb->lv[i];
        int w;
        if (l->node->kind == SL__Y_SEQ)
            w = snprintf(path + o, sizeof path - o, "[%zu]", l->n);
        else if (l->n % 2 == 1 && l->kid[l->n - 1]->kind == SL__Y_SCALAR)
            w = snprintf(path + o, sizeof path - o, "%s%.64s", o ? "." : "", l->kid[l->n - 1]->text);
        else
            w = 0;
        if (w < 0)
            break;
        o += (size_t)w;
    }
    return sl__arena_strdup(yb->lc->tmp, path);
}

static void sl__yattach(sl__ybuild_t *yb, sl__ynode_t *nd)
{
    if (yb->depth == 0) {
        yb->root = nd;
        return;
    }
    sl__ylevel_t *l = &yb->lv[yb->depth - 1];
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->kid = sl__xrealloc(l->kid, l->cap * sizeof *l->kid);
    }
    l->kid[l->n++] = nd;
}

static int sl__key_cmp(const void *a, const void *b)
{
    const sl__ynode_t *x = *(sl__ynode_t *const *)a, *y = *(sl__ynode_t *const *)b;
    int c = strcmp(x->text, y->text);
    if (c != 0)
        return c;
    return x->line != y->line ? (x->line < y->line ? -1 : 1) : (x->col < y->col ? -1 : x->col > y->col);
}

/* Marks each key that repeats an earlier one of the same map. Sorting keeps a 10 MB map O(n log n). */
static void sl__ymark_dups(sl__ybuild_t *yb, sl__ynode_t *map)
{
    size_t n = 0;
    sl__ynode_t **keys = sl__arena_alloc(yb->lc->tmp, map->n * sizeof *keys);
    for (size_t i = 0; i < map->n; i++)
        if (map->kid[2 * i]->kind == SL__Y_SCALAR)
            keys[n++] = map->kid[2 * i];
    qsort(keys, n, sizeof *keys, sl__key_cmp);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(keys[i]->text, keys[i - 1]->text) == 0) {
            keys[i]->dup_of = keys[i - 1]->dup_of ? keys[i - 1]->dup_of : keys[i - 1]->line;
        }
    }
}

static void sl__yclose(sl__ybuild_t *yb)
{
    sl__ylevel_t *l = &yb->lv[--yb->depth];
    sl__ynode_t *nd = l->node;
    nd->kid = sl__arena_alloc(yb->lc->tmp, l->n * sizeof *nd->kid);
    if (l->n > 0)
        memcpy(nd->kid, l->kid, l->n * sizeof *nd->kid);
    nd->n = nd->kind == SL__Y_MAP ? l->n / 2 : l->n;
    l->n = 0;
    if (nd->kind == SL__Y_MAP)
        sl__ymark_dups(yb, nd);
    sl__yattach(yb, nd);
}

static sl__ynode_t *sl__ynew(sl__ybuild_t *yb, sl__ykind_t kind, const yaml_event_t *ev)
{
    sl__ynode_t *nd = sl__arena_alloc(yb->lc->tmp, sizeof *nd);
    nd->kind = kind;
    nd->line = (int)ev->start_mark.line + 1;
    nd->col = (int)ev->start_mark.column + 1;
    return nd;
}

/* Refuses anchors and foreign tags; returns false when the node must be marked bad. */
static bool sl__ycheck_props(sl__ybuild_t *yb, const yaml_event_t *ev, const yaml_char_t *anchor,
                             const yaml_char_t *tag)
{
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    if (anchor != NULL && yb->refused++ > 0) {
        yb->lc->n_err++; /* the first one was reported; an alias bomb needs no hundred lines */
        return false;
    }
    if (anchor != NULL) {
        sl__err(yb->lc, line, col, sl__ybuild_path(yb),
                "YAML anchors (&%.40s) and aliases are not supported (write the value out)", anchor);
        return false;
    }
    if (tag != NULL && strncmp((const char *)tag, "tag:yaml.org,2002:", 18) != 0) {
        sl__err(yb->lc, line, col, sl__ybuild_path(yb), "YAML tag %.40s is not supported (remove it)", tag);
        return false;
    }
    return true;
}

static void sl__yscalar(sl__ybuild_t *yb, const yaml_event_t *ev)
{
    sl__ynode_t *nd = sl__ynew(yb, SL__Y_SCALAR, ev);
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    nd->text = sl__arena_strndup(yb->lc->tmp, v, n);
    nd->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (!sl__ycheck_props(yb, ev, ev->data.scalar.anchor, ev->data.scalar.tag)) {
        nd->kind = SL__Y_BAD;
    } else if (memchr(v, '\0', n) != NULL) {
        /* A "\0" escape: C strings would silently cut the value there. */
        sl__err(yb->lc, nd->line, nd->col, sl__ybuild_path(yb), "a value cannot contain a NUL character");
        nd->kind = SL__Y_BAD;
    }
    sl__yattach(yb, nd);
}

/* Byte offset of the character at 0-based (line, column), or len when past the end. */
static size_t sl__yoffset(const char *buf, size_t len, size_t line, size_t col)
{
    size_t i = 0;
    for (size_t l = 0; l < line && i < len; i++)
        if (buf[i] == '\n')
            l++;
    for (size_t c = 0; c < col && i < len; c++) {
        i++;
        while (i < len && ((unsigned char)buf[i] & 0xc0) == 0x80)
            i++;
    }
    return i;
}

static void sl__yreader_error(sl__ybuild_t *yb, const yaml_parser_t *p)
{
    /* Reader errors carry a byte offset rather than a mark. */
    size_t off = SL_MIN(p->problem_offset, yb->len);
    int line = 1, col = 1;
    for (size_t i = 0; i < off; i++) {
        if (yb->buf[i] == '\n') {
            line++;
            col = 1;
        } else if (((unsigned char)yb->buf[i] & 0xc0) != 0x80) {
            col++;
        }
    }
    if (p->problem_value != -1)
        sl__err(yb->lc, line, col, "", "not a valid UTF-8 text file: %s (byte 0x%02x)", p->problem,
                (unsigned)p->problem_value & 0xffu);
    else
        sl__err(yb->lc, line, col, "", "not a valid UTF-8 text file: %s", p->problem);
}

static void sl__ysyntax_error(sl__ybuild_t *yb, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR) {
        sl__err(yb->lc, 0, 0, "", "out of memory while parsing YAML");
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        sl__yreader_error(yb, p);
        return;
    }
    const char *problem = p->problem ? p->problem : "unknown error";
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    size_t off = sl__yoffset(yb->buf, yb->len, p->problem_mark.line, p->problem_mark.column);
    if (strstr(problem, "tab") != NULL || (off < yb->len && yb->buf[off] == '\t')) {
        sl__err(yb->lc, line, col, "", "tab character in indentation (YAML indents with spaces only)");
        return;
    }
    if (p->context != NULL)
        sl__err(yb->lc, line, col, "", "YAML syntax error: %s (%s at line %d, column %d)", problem, p->context,
                (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
    else
        sl__err(yb->lc, line, col, "", "YAML syntax error: %s", problem);
}

/* Handles one event. Returns 1 to go on, 0 at the end of the stream, SL_ECONFIG to stop. */
static int sl__yevent(sl__ybuild_t *yb, const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (yb->docs++ > 0) {
            sl__err(yb->lc, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1, "",
                    "a second YAML document (a config file holds exactly one)");
            return SL_ECONFIG;
        }
        return 1;
    case YAML_SCALAR_EVENT: sl__yscalar(yb, ev); return 1;
    case YAML_ALIAS_EVENT:
        if (yb->refused++ > 0)
            yb->lc->n_err++;
        else
            sl__err(yb->lc, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1, sl__ybuild_path(yb),
                    "YAML aliases (*%.40s) are not supported (write the value out)", ev->data.alias.anchor);
        sl__yattach(yb, sl__ynew(yb, SL__Y_BAD, ev));
        return 1;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        if (yb->depth == SL__MAX_DEPTH) {
            sl__err(yb->lc, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1, "",
                    "nesting deeper than %d levels", SL__MAX_DEPTH);
            return SL_ECONFIG;
        }
        bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
        sl__ynode_t *nd = sl__ynew(yb, seq ? SL__Y_SEQ : SL__Y_MAP, ev);
        const yaml_char_t *anchor = seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
        const yaml_char_t *tag = seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag;
        sl__ycheck_props(yb, ev, anchor, tag); /* reported; the content is still checked */
        yb->lv[yb->depth++].node = nd;
        return 1;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT: sl__yclose(yb); return 1;
    case YAML_STREAM_END_EVENT: return 0;
    default: return 1;
    }
}

int sl__yaml_parse(sl__lctx_t *lc, const char *buf, size_t len, sl__ynode_t **root)
{
    *root = NULL;
    if (len > SL__MAX_FILE) {
        sl__err(lc, 0, 0, "", "the file is %zu bytes; a config file may have at most %u MiB", len, SL__MAX_FILE >> 20);
        return SL_ECONFIG;
    }
    sl__ybuild_t *yb = calloc(1, sizeof *yb);
    if (yb == NULL)
        sl__xrealloc(NULL, SIZE_MAX); /* aborts */
    yb->lc = lc;
    yb->buf = buf;
    yb->len = len;
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        sl__xrealloc(NULL, SIZE_MAX);
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    int rc = 1;
    while (rc == 1) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            sl__ysyntax_error(yb, &p);
            rc = SL_ECONFIG;
            break;
        }
        rc = sl__yevent(yb, &ev);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    for (size_t i = 0; i <= SL__MAX_DEPTH; i++)
        free(yb->lv[i].kid);
    /* After a syntax error the tree is partial: checking it would only add noise. Refused constructs
     * (anchors, tags, NUL) leave a whole tree whose other problems are still worth reporting. */
    if (rc == 0)
        *root = yb->root;
    free(yb);
    return rc == 0 ? 0 : SL_ECONFIG;
}

const sl__ynode_t *sl__ymap_get(const sl__ynode_t *map, const char *key)
{
    if (map == NULL || map->kind != SL__Y_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++) {
        const sl__ynode_t *k = map->kid[2 * i];
        if (k->kind == SL__Y_SCALAR && !k->dup_of && strcmp(k->text, key) == 0)
            return map->kid[2 * i + 1];
    }
    return NULL;
}

bool sl__ynull(const sl__ynode_t *n)
{
    if (n == NULL)
        return true;
    if (n->kind != SL__Y_SCALAR || !n->plain)
        return false;
    return n->text[0] == '\0' || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
           strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0;
}
