/*
 * ringcast driver: TCP frames of proto/PROTOCOL.md §1 (4-byte big-endian
 * length, then one MessagePack map).
 *
 * Outgoing frames are encoded with the project's codec (rc_encode); the
 * `send` frame of every group is encoded once at init, so publishing is one
 * memcpy plus writing the body header (seq, timestamp) at its known offset.
 * Incoming frames are read by the strict scanner of rc_wire.h, which extracts
 * only what the benchmark checks (t, g, seq, body, err code), and reported
 * by dispatch().
 *
 * ringcast-ws is the same maps over WebSocket (proto/PROTOCOL.md §1.2):
 * an HTTP upgrade first, then one binary message per map. Client frames
 * must be masked; the mask key is zero, which RFC 6455 allows, so the
 * masked payload is the map itself and the pre-encoded `send` frames serve
 * both transports (a WebSocket header replaces the length prefix).
 */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "rc_wire.h"

#define WS_MAX_HDR_READ 6u        /* a masked client header of a payload under 126 bytes */

static bench_table g_send;        /* the `send` frame of every group */
static bool g_ws;                 /* ringcast-ws: WebSocket framing */
static uint32_t *g_body_off;      /* [G]: offset of the body within group g's frame */
static bool g_presence, g_receipts; /* subscribers join with presence / receipts: true */
static bool g_echo;                 /* publishers keep the default echo: true (--echo) */
static uint32_t g_read_every;     /* a subscriber reads every this many deliveries (0: never) */
static char g_prefix[BENCH_PREFIX_MAX];
static size_t g_prefix_len;

static rc_str group_name(uint32_t g, char *buf, size_t n)
{
    int len = snprintf(buf, n, "%s%u", g_prefix, g);
    return (rc_str){ buf, (uint32_t)len };
}

static int emit_send(rc_buf *out, uint32_t g, const void *arg)
{
    const bench_params *p = arg;
    char name[16];
    rc_msg m = { .type = RC_T_SEND, .g = group_name(g, name, sizeof name),
                 .body = { (const char *)p->body, p->body_len } };
    return rc_encode(out, &m);
}

static int rc_init(const bench_params *p)
{
    snprintf(g_prefix, sizeof g_prefix, "%s", p->prefix);
    g_prefix_len = strlen(g_prefix);
    g_presence = p->presence;
    g_echo = p->echo;
    g_receipts = p->receipts;
    g_read_every = p->read_every;
    if (bench_table_build(&g_send, p->groups, emit_send, p) < 0)
        return -1;
    g_body_off = malloc(sizeof *g_body_off * (p->groups ? p->groups : 1));
    if (!g_body_off)
        return -1;
    /* The body template (zero header, then letters) occurs once per frame. */
    for (uint32_t g = 0; g < p->groups; g++) {
        const uint8_t *f = g_send.bytes.data + g_send.off[g];
        size_t n = g_send.off[g + 1] - g_send.off[g];
        const uint8_t *b = memmem(f, n, p->body, p->body_len);
        if (!b)
            return -1;
        g_body_off[g] = (uint32_t)(b - f);
    }
    return 0;
}

static void rc_fini(void)
{
    bench_table_free(&g_send);
    free(g_body_off);
    g_body_off = NULL;
}

/* A publisher's hello says echo: false unless --echo: like a NATS or Redis
 * publisher, which is no subscriber, it does not receive what it sends
 * (proto/PROTOCOL.md §6.9); with --echo it does, counted as echoes. */
static rc_msg hello_of(const bench_conn *c, const char *user)
{
    rc_msg hello = { .type = RC_T_HELLO, .user = rc_str_c(user) };
    if (c->role == BENCH_PUB && !g_echo) {
        hello.echo = false;
        hello.has |= RC_HAS_ECHO;
    }
    return hello;
}

/* The optional join keys a subscriber sends (--presence, --receipts). */
static uint32_t join_has(const bench_conn *c)
{
    if (c->role != BENCH_SUB)
        return 0;
    return (g_presence ? RC_HAS_PRESENCE : 0u) | (g_receipts ? RC_HAS_RECEIPTS : 0u);
}

static int rc_setup(bench_conn *c, const uint32_t *groups, uint32_t n)
{
    char user[24], name[16];
    snprintf(user, sizeof user, "%c%u", c->role == BENCH_SUB ? 's' : 'p', c->index);
    rc_msg hello = hello_of(c, user);
    if (rc_encode(&c->out, &hello) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        rc_msg join = { .type = RC_T_JOIN, .g = group_name(groups[i], name, sizeof name),
                        .presence = c->role == BENCH_SUB && g_presence,
                        .receipts = c->role == BENCH_SUB && g_receipts, .has = join_has(c) };
        if (rc_encode(&c->out, &join) < 0)
            return -1;
    }
    c->pending = 1 + n; /* welcome + one joined per group */
    return 0;
}

static int rc_publish(bench_conn *c, uint32_t g, uint64_t seq, uint64_t ts_ns)
{
    size_t at = c->out.len;
    if (bench_table_append(&c->out, &g_send, g) < 0)
        return -1;
    /* the server sequences; seq in the body is only informative here */
    bench_body_stamp(c->out.data + at + g_body_off[g], seq, ts_ns);
    return 0;
}

/* --read-every: queues read {g, seq} (proto/PROTOCOL.md §6.11) after every
 * g_read_every deliveries of a subscriber, for the group and seq of the last. */
static int maybe_read(bench_conn *c, const rw_frame *f)
{
    if (g_read_every == 0 || c->role != BENCH_SUB || ++c->since_read < g_read_every)
        return 0;
    c->since_read = 0;
    rc_buf tmp; /* one small map; a read is sent per read_every deliveries */
    rc_buf_init(&tmp);
    uint8_t ws_hdr[WS_MAX_HDR_READ];
    rc_msg read = { .type = RC_T_READ, .g = { (const char *)f->g, f->g_len }, .seq = f->seq };
    int rc;
    if (rc_encode(&tmp, &read) < 0) {
        rc = -1;
    } else if (g_ws) {
        size_t n = tmp.len - RC_FRAME_HEADER;
        ws_hdr[0] = 0x82;
        ws_hdr[1] = (uint8_t)(0x80 | n); /* a read map is well under 126 bytes */
        memset(ws_hdr + 2, 0, 4);
        rc = bench_reply(c, ws_hdr, 6) < 0 || bench_reply(c, tmp.data + RC_FRAME_HEADER, n) < 0 ? -1 : 0;
    } else {
        rc = bench_reply(c, tmp.data, tmp.len);
    }
    rc_buf_free(&tmp);
    if (rc == 0)
        bench_on_event(c, BENCH_EV_READ_SENT);
    return rc;
}

static bool type_is(const rw_frame *f, const char *name)
{
    return f->t_len == strlen(name) && memcmp(f->t, name, f->t_len) == 0;
}

/* Reports one scanned map; -1 if it is not a map the benchmark expects. */
static int dispatch(bench_conn *c, const rw_frame *f)
{
    uint32_t g = f->g ? bench_parse_group(f->g, f->g_len, g_prefix, g_prefix_len) : BENCH_NO_GROUP;
    if (type_is(f, "msg")) {
        if (g == BENCH_NO_GROUP || !f->has_seq || !f->body)
            return -1;
        bench_on_delivery(c, g, f->seq, f->body, f->body_len);
        if (maybe_read(c, f) < 0)
            return -1;
    } else if (type_is(f, "online") || type_is(f, "offline")) {
        bench_on_event(c, BENCH_EV_PRESENCE);
    } else if (type_is(f, "receipt")) {
        bench_on_event(c, BENCH_EV_RECEIPT);
    } else if (type_is(f, "typing")) {
        bench_on_event(c, BENCH_EV_TYPING);
    } else if (type_is(f, "marked")) {
        bench_on_event(c, BENCH_EV_MARKED);
    } else if (type_is(f, "ack")) {
        if (g == BENCH_NO_GROUP || !f->has_seq)
            return -1;
        bench_on_ack(c, g, f->seq, -1);
    } else if (type_is(f, "joined")) {
        if (g == BENCH_NO_GROUP)
            return -1;
        bench_on_confirm(c, g, f->seq);
    } else if (type_is(f, "welcome")) {
        bench_on_confirm(c, BENCH_NO_GROUP, 0);
    } else if (type_is(f, "err")) {
        bench_on_server_error(c, f->code ? (const char *)f->code : (const char *)f->t,
                              f->code ? f->code_len : f->t_len);
    } else if (type_is(f, "bye")) {
        bench_on_bye(c, f->code ? (const char *)f->code : (const char *)f->t,
                     f->code ? f->code_len : f->t_len);
    } else if (type_is(f, "ping")) {
        /* the server checks a silent connection (idle_timeout_ms): answer it */
        static const uint8_t pong[] = { 0, 0, 0, 8, 0x81, 0xa1, 't', 0xa4, 'p', 'o', 'n', 'g' };
        static const uint8_t ws_pong[] = { 0x82, 0x88, 0, 0, 0, 0, 0x81, 0xa1, 't', 0xa4, 'p', 'o', 'n', 'g' };
        if (g_ws ? bench_reply(c, ws_pong, sizeof ws_pong) < 0 : bench_reply(c, pong, sizeof pong) < 0)
            return -1;
    } else if (!type_is(f, "pong")) {
        return -1;
    }
    return 0;
}

static ssize_t rc_parse(bench_conn *c, const uint8_t *in, size_t len)
{
    size_t off = 0;
    while (len - off >= RC_FRAME_HEADER) {
        uint32_t n = rc_frame_len(in + off);
        if (rc_frame_check_len(n, RC_DEFAULT_MAX_FRAME) != RC_OK) {
            fprintf(stderr, "ringcast-bench: bad frame length %u\n", n);
            return -1;
        }
        if (len - off - RC_FRAME_HEADER < n)
            break;
        rw_frame f;
        if (rw_scan(in + off + RC_FRAME_HEADER, n, &f) < 0 || dispatch(c, &f) < 0) {
            fprintf(stderr, "ringcast-bench: unexpected frame (%u bytes) on %s%u\n", n,
                    c->role == BENCH_SUB ? "s" : "p", c->index);
            return -1;
        }
        off += RC_FRAME_HEADER + n;
    }
    return (ssize_t)off;
}

const bench_driver bench_drv_ringcast = {
    .name = "ringcast",
    .default_port = 7400,
    .acks_carry_seq = true,
    .has_acks = true,
    .init = rc_init,
    .fini = rc_fini,
    .setup = rc_setup,
    .publish = rc_publish,
    .parse = rc_parse,
};

/* ---- ringcast-ws ---- */

#define WS_MAX_HDR 8u /* a client frame header: 2 bytes, 2 of extended length, 4 of mask */

typedef struct ws_state {
    bool upgraded;
    uint32_t n;       /* groups to join once the upgrade is answered */
    uint32_t groups[];
} ws_state;

/* A masked (key 0) binary frame header for n bytes of payload at p; its length. */
static size_t ws_header(uint8_t *p, size_t n)
{
    p[0] = 0x82; /* FIN, binary */
    if (n < 126) {
        p[1] = (uint8_t)(0x80 | n);
        memset(p + 2, 0, 4);
        return 6;
    }
    p[1] = 0x80 | 126;
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
    memset(p + 4, 0, 4);
    return 8;
}

/* Appends one TCP-framed map (length prefix, map) as a WebSocket message. */
static int ws_append(rc_buf *out, const uint8_t *frame, size_t len)
{
    uint8_t h[WS_MAX_HDR];
    size_t hl = ws_header(h, len - RC_FRAME_HEADER);
    if (rc_buf_append(out, h, hl) < 0 || rc_buf_append(out, frame + RC_FRAME_HEADER, len - RC_FRAME_HEADER) < 0)
        return -1;
    return 0;
}

static int ws_init(const bench_params *p)
{
    g_ws = true;
    return rc_init(p);
}

static int ws_setup(bench_conn *c, const uint32_t *groups, uint32_t n)
{
    ws_state *st = malloc(sizeof(*st) + n * sizeof(*groups));
    if (!st)
        return -1;
    st->upgraded = false;
    st->n = n;
    memcpy(st->groups, groups, n * sizeof(*groups));
    c->drv_data = st;
    static const char req[] = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if (rc_buf_append(&c->out, req, sizeof(req) - 1) < 0)
        return -1;
    c->pending = 2 + n; /* the upgrade, welcome, one joined per group */
    return 0;
}

/* The upgrade was answered: hello and the joins, as WebSocket messages. */
static int ws_open(bench_conn *c, ws_state *st)
{
    char user[24], name[16];
    snprintf(user, sizeof user, "%c%u", c->role == BENCH_SUB ? 's' : 'p', c->index);
    rc_buf tmp, out;
    rc_buf_init(&tmp);
    rc_buf_init(&out);
    rc_msg hello = hello_of(c, user);
    int rc = rc_encode(&tmp, &hello) < 0 || ws_append(&out, tmp.data, tmp.len) < 0 ? -1 : 0;
    for (uint32_t i = 0; rc == 0 && i < st->n; i++) {
        rc_msg join = { .type = RC_T_JOIN, .g = group_name(st->groups[i], name, sizeof name),
                        .presence = c->role == BENCH_SUB && g_presence,
                        .receipts = c->role == BENCH_SUB && g_receipts, .has = join_has(c) };
        tmp.len = 0;
        rc = rc_encode(&tmp, &join) < 0 || ws_append(&out, tmp.data, tmp.len) < 0 ? -1 : 0;
    }
    if (rc == 0)
        rc = bench_reply(c, out.data, out.len) < 0 ? -1 : 0;
    rc_buf_free(&tmp);
    rc_buf_free(&out);
    st->upgraded = true;
    return rc;
}

static int ws_publish(bench_conn *c, uint32_t g, uint64_t seq, uint64_t ts_ns)
{
    const uint8_t *f = g_send.bytes.data + g_send.off[g];
    size_t len = g_send.off[g + 1] - g_send.off[g];
    size_t at = c->out.len;
    if (ws_append(&c->out, f, len) < 0)
        return -1;
    size_t hl = c->out.len - at - (len - RC_FRAME_HEADER);
    bench_body_stamp(c->out.data + at + hl + g_body_off[g] - RC_FRAME_HEADER, seq, ts_ns);
    return 0;
}

static ssize_t ws_parse(bench_conn *c, const uint8_t *in, size_t len)
{
    ws_state *st = c->drv_data;
    size_t off = 0;
    if (!st->upgraded) {
        const uint8_t *end = memmem(in, len, "\r\n\r\n", 4);
        if (!end)
            return 0;
        if (len < 12 || memcmp(in, "HTTP/1.1 101", 12) != 0) {
            fprintf(stderr, "ringcast-bench: the WebSocket upgrade was refused: %.*s\n", (int)(end - in), in);
            return -1;
        }
        off = (size_t)(end - in) + 4;
        c->pending--; /* the upgrade */
        if (ws_open(c, st) < 0)
            return -1;
    }
    while (len - off >= 2) {
        const uint8_t *p = in + off;
        uint8_t op = p[0] & 0x0f;
        uint64_t n = p[1] & 0x7f;
        size_t hl = 2;
        if (n == 126) {
            if (len - off < 4)
                break;
            n = ((uint64_t)p[2] << 8) | p[3];
            hl = 4;
        } else if (n == 127) {
            if (len - off < 10)
                break;
            n = 0;
            for (int i = 0; i < 8; i++)
                n = (n << 8) | p[2 + i];
            hl = 10;
        }
        if (len - off - hl < n)
            break;
        if (op == 0x2) {
            rw_frame f;
            if (rw_scan(p + hl, (size_t)n, &f) < 0 || dispatch(c, &f) < 0) {
                fprintf(stderr, "ringcast-bench: unexpected WebSocket message (%llu bytes)\n", (unsigned long long)n);
                return -1;
            }
        } else if (op == 0x9) { /* WebSocket ping: pong with its payload (at most 125 bytes) */
            uint8_t h[WS_MAX_HDR];
            size_t phl = ws_header(h, (size_t)n);
            h[0] = 0x8a;
            if (bench_reply(c, h, phl) < 0 || bench_reply(c, p + hl, (size_t)n) < 0)
                return -1;
        } else if (op == 0x8) {
            bench_on_bye(c, "websocket close", 15);
            return -1;
        }
        off += hl + (size_t)n;
    }
    return (ssize_t)off;
}

static void ws_conn_free(bench_conn *c)
{
    free(c->drv_data);
    c->drv_data = NULL;
}

const bench_driver bench_drv_ringcast_ws = {
    .name = "ringcast-ws",
    .default_port = 7480,
    .acks_carry_seq = true,
    .has_acks = true,
    .init = ws_init,
    .fini = rc_fini,
    .setup = ws_setup,
    .publish = ws_publish,
    .parse = ws_parse,
    .conn_free = ws_conn_free,
};
