/*
 * Memory and diagnostics helpers of the configuration loader.
 *
 * A config is many small strings that live exactly as long as the config, so they come from one arena
 * that sl_config_destroy() releases at once; the same goes for the text of diagnostics (sl_diags_t owns
 * its own arena, because diagnostics outlive a config that failed to load). Exhausting memory aborts:
 * the loader runs once at start-up, on input bounded to SL__MAX_FILE bytes.
 */
#include "config/config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SL__ARENA_CHUNK 65536

typedef struct sl__chunk_s {
    struct sl__chunk_s *next;
    size_t used, size;
    max_align_t data[];
} sl__chunk_t;

struct sl__arena_s {
    sl__chunk_t *head;
};

static void sl__oom(size_t n)
{
    sl_log(SL_LOG_ERROR, "config", SL_ENOMEM, "allocating %zu bytes while loading the configuration", n);
    abort();
}

void *sl__xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        sl__oom(n);
    return q;
}

sl__arena_t *sl__arena_new(void)
{
    sl__arena_t *a = calloc(1, sizeof *a);
    if (a == NULL)
        sl__oom(sizeof *a);
    return a;
}

void sl__arena_destroy(sl__arena_t *a)
{
    if (a == NULL)
        return;
    sl__chunk_t *c = a->head;
    while (c != NULL) {
        sl__chunk_t *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

void *sl__arena_alloc(sl__arena_t *a, size_t n)
{
    n = SL_ALIGN_UP(n ? n : 1, (size_t)16);
    sl__chunk_t *c = a->head;
    if (c == NULL || c->size - c->used < n) {
        /* A request bigger than a chunk gets a chunk of its own, behind the current one, so the space
         * left in the current chunk is not wasted. */
        size_t size = n > SL__ARENA_CHUNK / 4 ? n : SL__ARENA_CHUNK;
        sl__chunk_t *nc = malloc(sizeof *nc + size);
        if (nc == NULL)
            sl__oom(size);
        nc->used = 0;
        nc->size = size;
        if (c != NULL && size != SL__ARENA_CHUNK) {
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            a->head = nc;
        }
        c = nc;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

char *sl__arena_strndup(sl__arena_t *a, const char *s, size_t n)
{
    char *p = sl__arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *sl__arena_strdup(sl__arena_t *a, const char *s) { return sl__arena_strndup(a, s, strlen(s)); }

char *sl__arena_vprintf(sl__arena_t *a, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        n = 0;
    char *p = sl__arena_alloc(a, (size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *sl__arena_printf(sl__arena_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = sl__arena_vprintf(a, fmt, ap);
    va_end(ap);
    return p;
}

void sl__diag_add(sl_diags_t *d, const char *file, int line, int col, const char *path, const char *msg)
{
    if (d->arena_ == NULL)
        d->arena_ = sl__arena_new();
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 16;
        d->v = sl__xrealloc(d->v, d->cap * sizeof *d->v);
    }
    sl_diag_t *g = &d->v[d->n++];
    g->file = sl__arena_strdup(d->arena_, file ? file : "");
    g->line = line;
    g->col = col;
    g->path = sl__arena_strdup(d->arena_, path ? path : "");
    g->msg = sl__arena_strdup(d->arena_, msg);
}

void sl__err(sl__lctx_t *lc, int line, int col, const char *path, const char *fmt, ...)
{
    lc->n_err++;
    if (lc->n_err > lc->max_diags)
        return; /* counted; load() says how many were left out */
    va_list ap;
    va_start(ap, fmt);
    char *msg = sl__arena_vprintf(lc->tmp, fmt, ap);
    va_end(ap);
    sl__diag_add(lc->diags, lc->file, line, col, path, msg);
}

void sl_diags_free(sl_diags_t *diags)
{
    if (diags == NULL)
        return;
    free(diags->v);
    sl__arena_destroy(diags->arena_);
    memset(diags, 0, sizeof *diags);
}

void sl_diags_print(const sl_diags_t *diags, FILE *to)
{
    for (size_t i = 0; i < diags->n; i++) {
        const sl_diag_t *g = &diags->v[i];
        if (g->line > 0)
            fprintf(to, "%s:%d:%d: ", g->file, g->line, g->col);
        else
            fprintf(to, "%s: ", g->file);
        if (g->path[0] != '\0')
            fprintf(to, "%s: ", g->path);
        fprintf(to, "%s\n", g->msg);
    }
}

size_t sl__edit_distance(const char *a, const char *b, size_t cap)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return cap + 1; /* names are short; a long word is no typo of one */
    if ((la > lb ? la - lb : lb - la) > cap)
        return cap + 1;
    size_t d[65][65];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t v = SL_MIN(d[i - 1][j] + 1, d[i][j - 1] + 1);
            v = SL_MIN(v, d[i - 1][j - 1] + cost);
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                v = SL_MIN(v, d[i - 2][j - 2] + 1); /* transposition: "max_dmeand" */
            d[i][j] = v;
        }
    }
    return SL_MIN(d[la][lb], cap + 1);
}

const char *sl__suggest(const char *word, const char *const *cands, size_t n)
{
    size_t len = strlen(word);
    /* Short words tolerate fewer edits, or every 3-letter word would suggest every other. */
    size_t cap = len <= 3 ? 1 : len <= 6 ? 2 : 3;
    const char *best = NULL;
    size_t best_d = cap + 1;
    for (size_t i = 0; i < n; i++) {
        if (cands[i] == NULL)
            continue;
        size_t dist = strcasecmp(word, cands[i]) == 0 ? 0 : sl__edit_distance(word, cands[i], cap);
        if (dist < best_d) {
            best = cands[i];
            best_d = dist;
        }
    }
    return best;
}
