/*
 * RESP2's pure pieces (resp.h): lines, integers, bulk strings, skipping a
 * value, stream entries.
 */
#include <string.h>

#include "resp.h"

int resp_line(resp_cur *c, const uint8_t **line, size_t *n)
{
    const uint8_t *nl = memchr(c->p, '\n', (size_t)(c->end - c->p));
    if (!nl)
        return (size_t)(c->end - c->p) > RESP_MAX_LINE ? RESP_BAD : RESP_MORE;
    if (nl == c->p || nl[-1] != '\r' || (size_t)(nl - c->p) > RESP_MAX_LINE)
        return RESP_BAD;
    *line = c->p;
    *n = (size_t)(nl - c->p) - 1;
    c->p = nl + 1;
    return RESP_OK;
}

static bool parse_int(const uint8_t *s, size_t n, int64_t *v)
{
    bool neg = n > 0 && s[0] == '-';
    size_t i = neg ? 1 : 0;
    if (n == i || n - i > 18)
        return false;
    int64_t x = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (s[i] - '0');
    }
    *v = neg ? -x : x;
    return true;
}

int resp_int(resp_cur *c, uint8_t type, int64_t *v)
{
    if (c->p >= c->end)
        return RESP_MORE;
    if (*c->p != type)
        return RESP_BAD;
    resp_cur at = { c->p + 1, c->end };
    const uint8_t *line;
    size_t n;
    int rc = resp_line(&at, &line, &n);
    if (rc != RESP_OK)
        return rc;
    if (!parse_int(line, n, v))
        return RESP_BAD;
    c->p = at.p;
    return RESP_OK;
}

int resp_bulk(resp_cur *c, const uint8_t **s, size_t *n)
{
    resp_cur at = *c;
    int64_t len;
    int rc = resp_int(&at, '$', &len);
    if (rc != RESP_OK)
        return rc;
    if (len < 0)
        return RESP_BAD;
    if ((size_t)(at.end - at.p) < (size_t)len + 2)
        return RESP_MORE;
    if (at.p[len] != '\r' || at.p[len + 1] != '\n')
        return RESP_BAD;
    *s = at.p;
    *n = (size_t)len;
    c->p = at.p + len + 2;
    return RESP_OK;
}

static int skip_depth(resp_cur *c, int depth)
{
    if (c->p >= c->end)
        return RESP_MORE;
    const uint8_t *line, *s;
    size_t n;
    int64_t v;
    int rc;
    switch (*c->p) {
    case '+':
    case '-':
        c->p++;
        return resp_line(c, &line, &n);
    case ':':
        return resp_int(c, ':', &v);
    case '$':
        rc = resp_int(&(resp_cur){ c->p, c->end }, '$', &v);
        if (rc == RESP_OK && v == -1)
            return resp_int(c, '$', &v); /* null bulk */
        return rc == RESP_OK ? resp_bulk(c, &s, &n) : rc;
    case '*':
        rc = resp_int(c, '*', &v);
        if (rc != RESP_OK || v == -1)
            return rc;
        if (v < 0 || v > RESP_MAX_ITEMS || depth >= RESP_MAX_DEPTH)
            return RESP_BAD;
        for (int64_t i = 0; i < v; i++)
            if ((rc = skip_depth(c, depth + 1)) != RESP_OK)
                return rc;
        return RESP_OK;
    default:
        return RESP_BAD;
    }
}

int resp_skip(resp_cur *c)
{
    return skip_depth(c, 0);
}

/* An array header of exactly `want` elements (want < 0: any count >= 0). */
static int array_of(resp_cur *c, int64_t want, int64_t *got)
{
    int64_t v;
    int rc = resp_int(c, '*', &v);
    if (rc != RESP_OK)
        return rc;
    if (v < 0 || v > RESP_MAX_ITEMS || (want >= 0 && v != want))
        return RESP_BAD;
    *got = v;
    return RESP_OK;
}

/* The entries at c, which hold a complete value. */
static int walk_entries(resp_cur *c, const uint8_t *key, size_t key_len, resp_entry_fn fn, void *arg)
{
    int64_t m, two;
    int rc = array_of(c, -1, &m);
    for (int64_t i = 0; rc == RESP_OK && i < m; i++) {
        const uint8_t *id, *field, *value;
        size_t id_len, field_len, value_len;
        if ((rc = array_of(c, 2, &two)) != RESP_OK || (rc = resp_bulk(c, &id, &id_len)) != RESP_OK ||
            (rc = array_of(c, 2, &two)) != RESP_OK || (rc = resp_bulk(c, &field, &field_len)) != RESP_OK ||
            (rc = resp_bulk(c, &value, &value_len)) != RESP_OK)
            break;
        if (!resp_stream_id_ok(id, id_len) || fn(arg, key, key_len, id, id_len, value, value_len) != 0)
            rc = RESP_BAD;
    }
    return rc == RESP_MORE ? RESP_BAD : rc; /* complete: MORE cannot happen */
}

int resp_entries(resp_cur *c, const uint8_t *key, size_t key_len, resp_entry_fn fn, void *arg)
{
    resp_cur probe = *c;
    int rc = resp_skip(&probe);
    if (rc != RESP_OK)
        return rc;
    resp_cur at = *c;
    rc = walk_entries(&at, key, key_len, fn, arg);
    if (rc == RESP_OK && at.p != probe.p)
        rc = RESP_BAD;
    if (rc == RESP_OK)
        c->p = at.p;
    return rc;
}

int resp_xread(resp_cur *c, resp_entry_fn fn, void *arg)
{
    resp_cur probe = *c;
    int rc = resp_skip(&probe);
    if (rc != RESP_OK)
        return rc;
    resp_cur at = *c;
    int64_t n, two;
    if (resp_int(&(resp_cur){ at.p, at.end }, '*', &n) == RESP_OK && n == -1) {
        c->p = probe.p; /* the null array: nothing arrived before the timeout */
        return RESP_OK;
    }
    rc = array_of(&at, -1, &n);
    for (int64_t i = 0; rc == RESP_OK && i < n; i++) {
        const uint8_t *key;
        size_t key_len;
        if ((rc = array_of(&at, 2, &two)) == RESP_OK && (rc = resp_bulk(&at, &key, &key_len)) == RESP_OK)
            rc = walk_entries(&at, key, key_len, fn, arg);
    }
    if (rc == RESP_MORE || (rc == RESP_OK && at.p != probe.p))
        rc = RESP_BAD;
    if (rc == RESP_OK)
        c->p = at.p;
    return rc;
}

bool resp_stream_id_ok(const uint8_t *id, size_t n)
{
    size_t i = 0, a = 0, b = 0;
    while (i < n && id[i] >= '0' && id[i] <= '9' && a < 20)
        i++, a++;
    if (a == 0 || i == n || id[i] != '-')
        return false;
    for (i++; i < n && id[i] >= '0' && id[i] <= '9' && b < 20; i++)
        b++;
    return b > 0 && i == n;
}
