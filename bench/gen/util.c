/*
 * Small helpers shared by the generator and its drivers: formatted appends,
 * per-group tables of pre-encoded bytes, group names, and the header (seq and
 * timestamp, 16 hex digits each) that every body starts with.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

int bench_printf(rc_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || rc_buf_reserve(b, (size_t)n + 1) < 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int bench_table_build(bench_table *t, uint32_t groups,
                      int (*emit)(rc_buf *out, uint32_t g, const void *arg), const void *arg)
{
    rc_buf_init(&t->bytes);
    t->off = calloc((size_t)groups + 1, sizeof *t->off);
    if (!t->off)
        return -1;
    for (uint32_t g = 0; g < groups; g++) {
        t->off[g] = t->bytes.len;
        if (emit(&t->bytes, g, arg) < 0) {
            bench_table_free(t);
            return -1;
        }
    }
    t->off[groups] = t->bytes.len;
    return 0;
}

void bench_table_free(bench_table *t)
{
    rc_buf_free(&t->bytes);
    free(t->off);
    t->off = NULL;
}

int bench_table_append(rc_buf *out, const bench_table *t, uint32_t g)
{
    return rc_buf_append(out, t->bytes.data + t->off[g], t->off[g + 1] - t->off[g]);
}

int bench_append_seq_msg(rc_buf *out, const bench_table *t, uint32_t g, const uint8_t *body,
                         size_t body_len, uint64_t seq, uint64_t ts_ns)
{
    size_t prefix = t->off[g + 1] - t->off[g];
    if (rc_buf_reserve(out, prefix + body_len + 2) < 0)
        return -1;
    uint8_t *p = out->data + out->len;
    memcpy(p, t->bytes.data + t->off[g], prefix);
    memcpy(p + prefix, body, body_len);
    bench_body_stamp(p + prefix, seq, ts_ns);
    memcpy(p + prefix + body_len, "\r\n", 2);
    out->len += prefix + body_len + 2;
    return 0;
}

uint32_t bench_parse_group(const uint8_t *s, size_t n, const char *prefix, size_t prefix_len)
{
    if (n <= prefix_len || n > prefix_len + 9 || memcmp(s, prefix, prefix_len) != 0)
        return BENCH_NO_GROUP;
    uint32_t g = 0;
    for (size_t i = prefix_len; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return BENCH_NO_GROUP;
        g = g * 10 + (uint32_t)(s[i] - '0');
    }
    return g; /* the caller checks g < G */
}

static const char HEX[] = "0123456789abcdef";

void bench_put_hex16(uint8_t *p, uint64_t v)
{
    for (int i = BENCH_SEQ_HEX - 1; i >= 0; i--) {
        p[i] = (uint8_t)HEX[v & 0xf];
        v >>= 4;
    }
}

bool bench_get_hex16(const uint8_t *p, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned i = 0; i < BENCH_SEQ_HEX; i++) {
        unsigned c = p[i], d;
        if (c - '0' <= 9u)
            d = c - '0';
        else if (c - 'a' <= 5u)
            d = c - 'a' + 10;
        else
            return false;
        x = (x << 4) | d;
    }
    *v = x;
    return true;
}

void bench_body_stamp(uint8_t *body, uint64_t seq, uint64_t ts_ns)
{
    bench_put_hex16(body, seq);
    bench_put_hex16(body + BENCH_TS_OFF, ts_ns);
}

void bench_body_fill(uint8_t *body, size_t len)
{
    for (size_t i = 0; i < len; i++)
        body[i] = (uint8_t)('a' + i % 26);
    if (len >= BENCH_HDR_LEN)
        bench_body_stamp(body, 0, 0);
}
