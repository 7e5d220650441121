/*
 * Small helpers shared by the generator and its drivers: the byte buffer,
 * group names, and the seq that NATS and Redis bodies carry.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

#define BUF_MIN_CAP 4096u

int bench_buf_reserve(bench_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : BUF_MIN_CAP;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int bench_buf_append(bench_buf *b, const void *p, size_t n)
{
    if (bench_buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int bench_buf_printf(bench_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || bench_buf_reserve(b, (size_t)n + 1) < 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void bench_buf_free(bench_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
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

void bench_put_hex16(uint8_t *p, uint64_t seq)
{
    for (int i = BENCH_SEQ_HEX - 1; i >= 0; i--) {
        p[i] = (uint8_t)HEX[seq & 0xf];
        seq >>= 4;
    }
}

bool bench_get_hex16(const uint8_t *p, uint64_t *seq)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < BENCH_SEQ_HEX; i++) {
        uint8_t c = p[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return false;
        v = (v << 4) | d;
    }
    *seq = v;
    return true;
}

void bench_body_fill(uint8_t *body, size_t len, uint64_t seq)
{
    for (size_t i = 0; i < len; i++)
        body[i] = (uint8_t)('a' + i % 26);
    if (len >= BENCH_SEQ_HEX)
        bench_put_hex16(body, seq);
}
