/*
 * NATS driver: the NATS client text protocol, core NATS (no JetStream).
 *
 * Session: the server greets with INFO; we send CONNECT (verbose off, so no
 * +OK per command), then SUB P.<k> <sid> per group, then PING: NATS handles
 * a connection's commands in order, so the PONG confirms every SUB.
 * Publish: PUB P.<k> <n>\r\n<body>\r\n (P: the workload's group prefix); the
 * body header carries the publisher's seq for the group, which the
 * subscribers check, and the timestamp.
 * Incoming: MSG <subject> <sid> [reply-to] <n>\r\n<payload>\r\n, PING (we
 * answer PONG), PONG, +OK, -ERR, INFO.
 */
#include <stdio.h>
#include <string.h>

#include "driver.h"

#define NATS_MAX_LINE 4096u   /* a control line longer than this is a protocol error */
#define NATS_MAX_TOKENS 4     /* MSG <subject> <sid> [reply-to] <#bytes> */

static bench_params g_params;
static bench_table g_pub_hdr;   /* "PUB P.<k> <n>\r\n" per group */
static char g_prefix[BENCH_PREFIX_MAX + 1];   /* "P." */
static size_t g_prefix_len;

static int emit_pub_hdr(rc_buf *out, uint32_t g, const void *arg)
{
    return bench_printf(out, "PUB %s%u %u\r\n", g_prefix, g, *(const uint32_t *)arg);
}

static int nats_init(const bench_params *p)
{
    g_params = *p;
    snprintf(g_prefix, sizeof g_prefix, "%s.", p->prefix);
    g_prefix_len = strlen(g_prefix);
    return bench_table_build(&g_pub_hdr, p->groups, emit_pub_hdr, &p->body_len);
}

static void nats_fini(void)
{
    bench_table_free(&g_pub_hdr);
}

static int nats_setup(bench_conn *c, const uint32_t *groups, uint32_t n)
{
    if (bench_printf(&c->out, "CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"%c%u\"}\r\n",
                     c->role == BENCH_SUB ? 's' : 'p', c->index) < 0)
        return -1;
    if (c->role == BENCH_SUB)
        for (uint32_t i = 0; i < n; i++)
            if (bench_printf(&c->out, "SUB %s%u %u\r\n", g_prefix, groups[i], i + 1) < 0)
                return -1;
    if (rc_buf_append(&c->out, "PING\r\n", 6) < 0)
        return -1;
    c->pending = 1; /* the PONG */
    return 0;
}

static int nats_publish(bench_conn *c, uint32_t g, uint64_t seq, uint64_t ts_ns)
{
    return bench_append_seq_msg(&c->out, &g_pub_hdr, g, g_params.body, g_params.body_len, seq,
                                ts_ns);
}

static bool starts(const uint8_t *line, size_t n, const char *word)
{
    size_t w = strlen(word);
    return n >= w && memcmp(line, word, w) == 0;
}

/* Splits line[0..n) at spaces into at most NATS_MAX_TOKENS tokens. */
static int tokenize(const uint8_t *line, size_t n, const uint8_t **tok, size_t *tok_len)
{
    int count = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && line[i] == ' ')
            i++;
        if (i == n)
            break;
        if (count == NATS_MAX_TOKENS)
            return -1;
        size_t start = i;
        while (i < n && line[i] != ' ')
            i++;
        tok[count] = line + start;
        tok_len[count++] = i - start;
    }
    return count;
}

static bool parse_size(const uint8_t *s, size_t n, size_t *v)
{
    if (n == 0 || n > 9)
        return false;
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *v = *v * 10 + (size_t)(s[i] - '0');
    }
    return true;
}

/*
 * Handles the MSG whose control line (without "MSG " and "\r\n") is
 * args[0..n); payload points after the line, avail bytes there. Returns the
 * payload bytes consumed (payload + CRLF), 0 if incomplete, -1 on error.
 */
static ssize_t handle_msg(bench_conn *c, const uint8_t *args, size_t n, const uint8_t *payload,
                          size_t avail)
{
    const uint8_t *tok[NATS_MAX_TOKENS];
    size_t tok_len[NATS_MAX_TOKENS], size;
    int nt = tokenize(args, n, tok, tok_len);
    if (nt < 3 || !parse_size(tok[nt - 1], tok_len[nt - 1], &size))
        return -1;
    if (avail < size + 2)
        return 0;
    uint64_t seq;
    uint32_t g = bench_parse_group(tok[0], tok_len[0], g_prefix, g_prefix_len);
    if (g == BENCH_NO_GROUP || size < BENCH_SEQ_HEX || !bench_get_hex16(payload, &seq) ||
        payload[size] != '\r' || payload[size + 1] != '\n')
        return -1;
    bench_on_delivery(c, g, seq, payload, size);
    return (ssize_t)(size + 2);
}

static ssize_t nats_parse(bench_conn *c, const uint8_t *in, size_t len)
{
    size_t off = 0;
    while (off < len) {
        const uint8_t *line = in + off;
        const uint8_t *nl = memchr(line, '\n', len - off);
        if (!nl) {
            if (len - off > NATS_MAX_LINE)
                return -1;
            break;
        }
        size_t n = (size_t)(nl - line);          /* line without its '\n' */
        if (n == 0 || line[n - 1] != '\r')
            return -1;
        n--;                                     /* and without its '\r' */
        size_t used = n + 2;
        if (starts(line, n, "MSG ")) {
            ssize_t body = handle_msg(c, line + 4, n - 4, nl + 1, len - off - used);
            if (body < 0)
                return -1;
            if (body == 0)
                break;
            used += (size_t)body;
        } else if (starts(line, n, "PING")) {
            if (bench_reply(c, "PONG\r\n", 6) < 0)
                return -1;
        } else if (starts(line, n, "PONG")) {
            bench_on_confirm(c, BENCH_NO_GROUP, 0);
        } else if (starts(line, n, "-ERR")) {
            bench_on_server_error(c, (const char *)line, n);
        } else if (!starts(line, n, "INFO") && !starts(line, n, "+OK")) {
            return -1;
        }
        off += used;
    }
    return (ssize_t)off;
}

const bench_driver bench_drv_nats = {
    .name = "nats",
    .default_port = 4222,
    .acks_carry_seq = false,
    .has_acks = false,
    .init = nats_init,
    .fini = nats_fini,
    .setup = nats_setup,
    .publish = nats_publish,
    .parse = nats_parse,
};
