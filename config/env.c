/*
 * Environment substitution in scalar values: ${VAR}, ${VAR:-default}, ${VAR:?message} and $$.
 *
 * Substitution happens once, on the scalar's text, before the text is parsed as its type, so
 * `capacity: ${CAP:-1MiB}` is a size like any other. The result is not scanned again: a variable whose
 * value holds "${X}" stays literal, so the environment cannot inject further lookups. A lone `$` that
 * starts nothing is kept as is. As in the shell, `:-` and `:?` treat an empty variable like an unset one;
 * unlike the shell, a plain ${VAR} that is unset is an error (write ${VAR:-} to allow empty).
 */
#include "config/config_int.h"

#include <stdlib.h>
#include <string.h>

typedef struct sl__buf_s {
    char *p;
    size_t n, cap;
} sl__buf_t;

static void sl__buf_put(sl__buf_t *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = sl__xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static bool sl__var_char(char c, bool first)
{
    return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (!first && c >= '0' && c <= '9');
}

/*
 * Expands the ${...} whose body is body[0..n) into b. Returns 0, or SL_EINVAL with *why set.
 */
static int sl__expand(sl__arena_t *a, const char *body, size_t n, sl__getenv_fn env, void *env_ctx, sl__buf_t *b,
                      const char **why)
{
    size_t k = 0;
    while (k < n && sl__var_char(body[k], k == 0))
        k++;
    if (k == 0 || (k < n && body[k] != ':')) {
        *why = sl__arena_printf(a,
                                "\"${%.*s}\" is not a valid variable reference (expected ${NAME}, "
                                "${NAME:-default} or ${NAME:?message})",
                                (int)SL_MIN(n, 40), body);
        return SL_EINVAL;
    }
    char *name = sl__arena_strndup(a, body, k);
    const char *val = env(env_ctx, name);
    if (k == n) {
        if (val == NULL) {
            *why = sl__arena_printf(a,
                                    "environment variable %s is not set (write ${%s:-} to allow it "
                                    "to be empty)",
                                    name, name);
            return SL_EINVAL;
        }
        sl__buf_put(b, val, strlen(val));
        return 0;
    }
    if (k + 1 >= n || (body[k + 1] != '-' && body[k + 1] != '?')) {
        *why = sl__arena_printf(a,
                                "\"${%.*s}\" has an unknown operator (expected ${%s:-default} or "
                                "${%s:?message})",
                                (int)SL_MIN(n, 40), body, name, name);
        return SL_EINVAL;
    }
    const char *arg = body + k + 2;
    size_t arg_n = n - k - 2;
    if (val != NULL && val[0] != '\0') {
        sl__buf_put(b, val, strlen(val));
        return 0;
    }
    if (body[k + 1] == '-') {
        sl__buf_put(b, arg, arg_n);
        return 0;
    }
    if (arg_n == 0)
        *why = sl__arena_printf(a, "environment variable %s is required but not set", name);
    else
        *why = sl__arena_printf(a, "environment variable %s is required: %.*s", name, (int)arg_n, arg);
    return SL_EINVAL;
}

int sl__env_subst(sl__arena_t *a, const char *in, size_t len, sl__getenv_fn env, void *env_ctx, const char **out,
                  const char **why)
{
    if (memchr(in, '$', len) == NULL) {
        *out = in;
        return 0;
    }
    sl__buf_t b = {0};
    sl__buf_put(&b, "", 0);
    int rc = 0;
    size_t i = 0;
    while (i < len && rc == 0) {
        const char *d = memchr(in + i, '$', len - i);
        size_t stop = d ? (size_t)(d - in) : len;
        sl__buf_put(&b, in + i, stop - i);
        i = stop;
        if (i >= len)
            break;
        if (i + 1 < len && in[i + 1] == '$') {
            sl__buf_put(&b, "$", 1);
            i += 2;
        } else if (i + 1 < len && in[i + 1] == '{') {
            const char *close = memchr(in + i + 2, '}', len - i - 2);
            if (close == NULL) {
                *why = "unterminated \"${\" (expected a closing \"}\"; write $$ for a literal $)";
                rc = SL_EINVAL;
                break;
            }
            rc = sl__expand(a, in + i + 2, (size_t)(close - in - i - 2), env, env_ctx, &b, why);
            i = (size_t)(close - in) + 1;
        } else {
            sl__buf_put(&b, "$", 1);
            i++;
        }
    }
    if (rc == 0)
        *out = sl__arena_strndup(a, b.p, b.n);
    free(b.p);
    return rc;
}
