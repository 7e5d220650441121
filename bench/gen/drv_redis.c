/*
 * Redis driver: RESP2 pub/sub.
 *
 * Subscribers send one SUBSCRIBE P:<k> ... with all their channels; Redis
 * confirms each channel with a ["subscribe", channel, count] push. Publishers
 * send PING (confirmed by +PONG), then PUBLISH P:<k> <body> (P: the
 * workload's group prefix); each PUBLISH is answered with :N, the number of
 * subscribers it reached, which we check against the group's size. The body
 * header carries the publisher's seq for the group and the timestamp.
 * Deliveries arrive as ["message", channel, payload] pushes. RESP is read
 * with resp.h.
 */
#include <stdio.h>
#include <string.h>

#include "driver.h"
#include "resp.h"

static bench_params g_params;
static bench_table g_pub_hdr;   /* the PUBLISH command up to the body, per group */
static char g_prefix[BENCH_PREFIX_MAX + 1];   /* "P:" */
static size_t g_prefix_len;

static int emit_pub_hdr(rc_buf *out, uint32_t g, const void *arg)
{
    char ch[32];
    int chlen = snprintf(ch, sizeof ch, "%s%u", g_prefix, g);
    return bench_printf(out, "*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%u\r\n", chlen, ch,
                        *(const uint32_t *)arg);
}

static int redis_init(const bench_params *p)
{
    g_params = *p;
    snprintf(g_prefix, sizeof g_prefix, "%s:", p->prefix);
    g_prefix_len = strlen(g_prefix);
    return bench_table_build(&g_pub_hdr, p->groups, emit_pub_hdr, &p->body_len);
}

static void redis_fini(void)
{
    bench_table_free(&g_pub_hdr);
}

static int redis_setup(bench_conn *c, const uint32_t *groups, uint32_t n)
{
    if (c->role == BENCH_PUB || n == 0) {
        c->pending = 1; /* +PONG */
        return rc_buf_append(&c->out, "PING\r\n", 6);
    }
    if (bench_printf(&c->out, "*%u\r\n$9\r\nSUBSCRIBE\r\n", n + 1) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        char ch[32];
        int chlen = snprintf(ch, sizeof ch, "%s%u", g_prefix, groups[i]);
        if (bench_printf(&c->out, "$%d\r\n%s\r\n", chlen, ch) < 0)
            return -1;
    }
    c->pending = n; /* one subscribe confirmation per channel */
    return 0;
}

static int redis_publish(bench_conn *c, uint32_t g, uint64_t seq, uint64_t ts_ns)
{
    return bench_append_seq_msg(&c->out, &g_pub_hdr, g, g_params.body, g_params.body_len, seq,
                                ts_ns);
}

static bool bulk_is(const uint8_t *s, size_t n, const char *word)
{
    return n == strlen(word) && memcmp(s, word, n) == 0;
}

/* Handles one ["message"|"subscribe", channel, payload|count] push. */
static int resp_push(bench_conn *c, resp_cur *cur)
{
    int64_t items;
    const uint8_t *kind, *ch, *payload;
    size_t kind_len, ch_len, payload_len;
    int rc = resp_int(cur, '*', &items);
    if (rc == RESP_OK && items != 3)
        rc = RESP_BAD;
    if (rc == RESP_OK)
        rc = resp_bulk(cur, &kind, &kind_len);
    if (rc == RESP_OK)
        rc = resp_bulk(cur, &ch, &ch_len);
    if (rc != RESP_OK)
        return rc;
    uint32_t g = bench_parse_group(ch, ch_len, g_prefix, g_prefix_len);
    if (g == BENCH_NO_GROUP)
        return RESP_BAD;
    if (bulk_is(kind, kind_len, "message")) {
        uint64_t seq;
        rc = resp_bulk(cur, &payload, &payload_len);
        if (rc != RESP_OK)
            return rc;
        if (payload_len < BENCH_SEQ_HEX || !bench_get_hex16(payload, &seq))
            return RESP_BAD;
        bench_on_delivery(c, g, seq, payload, payload_len);
        return RESP_OK;
    }
    if (bulk_is(kind, kind_len, "subscribe")) {
        int64_t count;
        rc = resp_int(cur, ':', &count);
        if (rc == RESP_OK)
            bench_on_confirm(c, g, 0);
        return rc;
    }
    return RESP_BAD;
}

/* Handles one reply or push at cur. */
static int resp_item(bench_conn *c, resp_cur *cur)
{
    const uint8_t *line;
    size_t n;
    int64_t v;
    int rc;
    switch (*cur->p) {
    case ':':
        rc = resp_int(cur, ':', &v);
        if (rc == RESP_OK)
            bench_on_ack(c, BENCH_NO_GROUP, 0, v);
        return rc;
    case '*':
        return resp_push(c, cur);
    case '+':
    case '-':
        cur->p++;
        rc = resp_line(cur, &line, &n);
        if (rc != RESP_OK)
            return rc;
        if (line[-1] == '-')
            bench_on_server_error(c, (const char *)line, n);
        else if (bulk_is(line, n, "PONG"))
            bench_on_confirm(c, BENCH_NO_GROUP, 0);
        return RESP_OK;
    default:
        return RESP_BAD;
    }
}

static ssize_t redis_parse(bench_conn *c, const uint8_t *in, size_t len)
{
    resp_cur cur = { in, in + len };
    const uint8_t *done = in;
    while (cur.p < cur.end) {
        int rc = resp_item(c, &cur);
        if (rc == RESP_BAD) {
            fprintf(stderr, "ringcast-bench: bad RESP reply on %c%u\n",
                    c->role == BENCH_SUB ? 's' : 'p', c->index);
            return -1;
        }
        if (rc == RESP_MORE)
            break;
        done = cur.p;
    }
    return (ssize_t)(done - in);
}

const bench_driver bench_drv_redis = {
    .name = "redis",
    .default_port = 6379,
    .acks_carry_seq = false,
    .has_acks = true,
    .init = redis_init,
    .fini = redis_fini,
    .setup = redis_setup,
    .publish = redis_publish,
    .parse = redis_parse,
};
