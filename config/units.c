/*
 * Parsers of the typed scalars a config holds: integers and counts (with `_` digit separators), sizes
 * with binary and decimal units, durations with units, booleans and numbers.
 *
 * Each returns 0, SL_EINVAL when the text is not of the kind, or SL__ERANGE when it is but does not fit
 * 64 bits; none of them accepts leading or trailing garbage, so "5 s" is a duration but "5s!" is not.
 * They are pure functions of their text: the schema table's defaults and bounds go through the same code
 * as the file's values, so a default can never mean something else than the same text in a file.
 */
#include "config/config_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * Reads digits with single `_` separators between them ("1_000_000", not "_1", "1__0" or "1_").
 * Advances *p past them. Reports SL__ERANGE only after the whole run of digits is consumed, so the
 * caller's error points at the number rather than at its middle.
 */
static int sl__digits(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    bool over = false;
    if (*s < '0' || *s > '9')
        return SL_EINVAL;
    for (;;) {
        if (*s >= '0' && *s <= '9') {
            unsigned d = (unsigned)(*s - '0');
            if (v > (UINT64_MAX - d) / 10)
                over = true;
            else
                v = v * 10 + d;
            s++;
        } else if (*s == '_' && s[1] >= '0' && s[1] <= '9') {
            s++;
        } else {
            break;
        }
    }
    if (*s == '_')
        return SL_EINVAL; /* "1_" or "1__000" */
    *p = s;
    *out = v;
    return over ? SL__ERANGE : 0;
}

int sl__parse_count(const char *s, uint64_t *out)
{
    uint64_t v;
    if (*s == '+')
        s++;
    int rc = sl__digits(&s, &v);
    if (rc == SL_EINVAL || *s != '\0')
        return SL_EINVAL;
    if (rc == 0 && v > (uint64_t)INT64_MAX)
        rc = SL__ERANGE; /* counts convert to int64_t in sl_conf_int() */
    if (rc == 0)
        *out = v;
    return rc;
}

int sl__parse_int(const char *s, int64_t *out)
{
    bool neg = *s == '-';
    if (*s == '-' || *s == '+')
        s++;
    uint64_t v;
    int rc = sl__digits(&s, &v);
    if (rc == SL_EINVAL || *s != '\0')
        return SL_EINVAL;
    if (rc == 0 && v > (uint64_t)INT64_MAX + (neg ? 1u : 0u))
        rc = SL__ERANGE;
    if (rc != 0)
        return rc;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

typedef struct sl__unit_s {
    const char *name;
    uint64_t mult;
} sl__unit_t;

static const sl__unit_t sl__size_units[] = {
    {"B", 1},
    {"KiB", UINT64_C(1) << 10},
    {"MiB", UINT64_C(1) << 20},
    {"GiB", UINT64_C(1) << 30},
    {"TiB", UINT64_C(1) << 40},
    {"KB", UINT64_C(1000)},
    {"MB", UINT64_C(1000000)},
    {"GB", UINT64_C(1000000000)},
    {"TB", UINT64_C(1000000000000)},
};

static const sl__unit_t sl__duration_units[] = {
    {"ns", 1},
    {"us", UINT64_C(1000)},
    {"\xc2\xb5s", UINT64_C(1000)}, /* µs */
    {"ms", UINT64_C(1000000)},
    {"s", UINT64_C(1000000000)},
    {"m", UINT64_C(60000000000)},
    {"h", UINT64_C(3600000000000)},
    {"d", UINT64_C(86400000000000)},
};

/* Finds the unit at *p (the longest run of letters, or µ), advancing past it; NULL if unknown. */
static const sl__unit_t *sl__unit(const char **p, const sl__unit_t *units, size_t n, bool nocase)
{
    const char *s = *p;
    size_t len = 0;
    while ((s[len] >= 'a' && s[len] <= 'z') || (s[len] >= 'A' && s[len] <= 'Z') || (unsigned char)s[len] == 0xc2 ||
           (unsigned char)s[len] == 0xb5)
        len++;
    for (size_t i = 0; i < n; i++) {
        if (strlen(units[i].name) != len)
            continue;
        if (nocase ? strncasecmp(s, units[i].name, len) == 0 : strncmp(s, units[i].name, len) == 0) {
            *p = s + len;
            return &units[i];
        }
    }
    return NULL;
}

int sl__parse_size(const char *s, uint64_t *out)
{
    uint64_t v;
    int rc = sl__digits(&s, &v);
    if (rc == SL_EINVAL)
        return rc;
    if (*s == ' ')
        s++;
    uint64_t mult = 1;
    if (*s != '\0') {
        /* Units ignore case: "64mib" cannot mean anything else. */
        const sl__unit_t *u = sl__unit(&s, sl__size_units, SL_ARRAY_LEN(sl__size_units), true);
        if (u == NULL || *s != '\0')
            return SL_EINVAL;
        mult = u->mult;
    }
    if (rc != 0)
        return rc;
    if (v != 0 && mult > UINT64_MAX / v)
        return SL__ERANGE;
    *out = v * mult;
    return 0;
}

int sl__parse_duration(const char *s, uint64_t *out_ns)
{
    if (strcmp(s, "0") == 0) {
        *out_ns = 0; /* zero needs no unit */
        return 0;
    }
    uint64_t total = 0;
    bool over = false;
    do {
        uint64_t v;
        int rc = sl__digits(&s, &v);
        if (rc == SL_EINVAL)
            return rc;
        over |= rc != 0;
        if (*s == ' ')
            s++;
        /* Case matters here: "m" is minutes and "M" would be a guess. */
        const sl__unit_t *u = sl__unit(&s, sl__duration_units, SL_ARRAY_LEN(sl__duration_units), false);
        if (u == NULL)
            return SL_EINVAL; /* "5" alone is ambiguous: seconds? milliseconds? */
        if (v != 0 && u->mult > UINT64_MAX / v)
            over = true;
        else if (total > UINT64_MAX - v * u->mult)
            over = true;
        else
            total += v * u->mult;
    } while (*s != '\0'); /* "1h30m" */
    if (over)
        return SL__ERANGE;
    *out_ns = total;
    return 0;
}

int sl__parse_bool(const char *s, bool *out)
{
    /* YAML 1.2 core schema only: "yes", "on" and "n" are not booleans (the Norway problem). */
    if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0) {
        *out = true;
        return 0;
    }
    if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0) {
        *out = false;
        return 0;
    }
    return SL_EINVAL;
}

int sl__parse_double(const char *s, double *out)
{
    /* strtod also takes hex, "inf", "nan" and leading blanks; a config number is decimal. */
    for (const char *p = s; *p != '\0'; p++)
        if (strchr("0123456789+-.eE", *p) == NULL)
            return SL_EINVAL;
    if (*s == '\0')
        return SL_EINVAL;
    char *end;
    double d = strtod(s, &end);
    if (*end != '\0' || end == s)
        return SL_EINVAL;
    if (!isfinite(d))
        return SL__ERANGE;
    *out = d;
    return 0;
}

void sl__fmt_size(uint64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    size_t u = 0;
    while (u + 1 < SL_ARRAY_LEN(units) && bytes >= (UINT64_C(1) << (10 * (u + 1))))
        u++;
    uint64_t mult = UINT64_C(1) << (10 * u);
    if (bytes % mult == 0)
        snprintf(buf, len, "%llu %s", (unsigned long long)(bytes / mult), units[u]);
    else
        snprintf(buf, len, "%.2f %s", (double)bytes / (double)mult, units[u]);
}
