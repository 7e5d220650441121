/*
 * NATS driver: the NATS client text protocol, core NATS (no JetStream).
 *
 * Session: the server greets with INFO; we send CONNECT (verbose off, so no
 * +OK per command), then SUB P.<k> <sid> per group, then PING: NATS handles
 * a connection's commands in order, so the PONG confirms every SUB.
 * Publish: PUB P.<k> <n>\r\n<body>\r\n (P: the workload's group prefix); the
 * body header carries the publisher's seq for the group, which the
 * subscribers check, and the timestamp.
 * Incoming (read with nats_wire.h): MSG <subject> <sid> [reply-to]
 * <n>\r\n<payload>\r\n, PING (we answer PONG), PONG, +OK, -ERR, INFO.
 */
#include <stdio.h>
#include <string.h>

#include "driver.h"
#include "nats_wire.h"

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

static ssize_t nats_parse(bench_conn *c, const uint8_t *in, size_t len)
{
    size_t off = 0;
    while (off < len) {
        nw_item it;
        ssize_t used = nw_next(in + off, len - off, &it);
        if (used < 0)
            return -1;
        if (used == 0)
            break;
        uint64_t seq;
        uint32_t g;
        switch (it.kind) {
        case NW_MSG:
            g = bench_parse_group(it.subject, it.subject_len, g_prefix, g_prefix_len);
            if (g == BENCH_NO_GROUP || it.payload_len < BENCH_SEQ_HEX || !bench_get_hex16(it.payload, &seq))
                return -1;
            bench_on_delivery(c, g, seq, it.payload, it.payload_len);
            break;
        case NW_HMSG:
            return -1; /* our publishes carry no headers */
        case NW_PING:
            if (bench_reply(c, "PONG\r\n", 6) < 0)
                return -1;
            break;
        case NW_PONG:
            bench_on_confirm(c, BENCH_NO_GROUP, 0);
            break;
        case NW_ERR:
            bench_on_server_error(c, (const char *)it.line, it.line_len);
            break;
        case NW_OK:
        case NW_INFO:
            break;
        }
        off += (size_t)used;
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
