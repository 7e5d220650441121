/*
 * Redis Streams driver: RESP2 (resp.h), one stream per group.
 *
 * Publishers send PING (confirmed by +PONG), then XADD P:<k> MAXLEN ~ 1000 *
 * b <body> (P: the workload's group prefix): like ringcast's history_max
 * (1000 by default) each stream keeps about the last RS_HISTORY_PER_GROUP
 * entries (approximate trimming, whole nodes at a time). Each XADD is
 * answered with the entry's id, which is the ack; with the server's
 * appendonly yes and appendfsync everysec the reply leaves after the entry
 * is written to the append-only file (bench/README.md, Durable peers).
 *
 * Subscribers first ask for the last entry of each of their streams
 * (XREVRANGE P:<k> + - COUNT 1, one reply per group confirms it), so that
 * they read only what is added after setup, then keep one XREAD COUNT c
 * BLOCK 0 STREAMS <their streams> <last ids> outstanding: every reply
 * carries new entries of some of their streams; the next XREAD starts after
 * the last id seen of each. COUNT (entries per stream and reply) is sized so
 * that a reply fills at most half of the generator's receive buffer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "resp.h"

#define RS_HISTORY_PER_GROUP 1000  /* entries kept per stream (ringcast's history_max default) */
#define RS_ID_MAX 48u              /* "<ms>-<seq>": at most 20 + 1 + 20 digits */
#define RS_ENTRY_OVERHEAD 96u      /* reply bytes of one entry besides its body, at most */
#define RS_MAX_COUNT 1000u         /* XREAD COUNT, at most */

static bench_params g_params;
static bench_table g_xadd_hdr;     /* XADD up to the body, per group */
static char g_prefix[BENCH_PREFIX_MAX + 1];   /* "P:" */
static size_t g_prefix_len;

/* A subscriber's own state: its streams (sorted) and the last id of each. */
typedef struct rs_conn {
    uint32_t n;
    uint32_t *groups;
    char (*ids)[RS_ID_MAX];
    uint8_t *id_len;
    rc_buf keys;           /* "$len\r\nP:<k>\r\n" for each stream, in order */
    rc_buf cmd;            /* the XREAD being built */
    uint32_t setup_seen;   /* XREVRANGE replies so far */
    uint32_t count;        /* XREAD COUNT */
    bench_conn *c;         /* for the entry callback */
} rs_conn;

static int emit_xadd_hdr(rc_buf *out, uint32_t g, const void *arg)
{
    char key[32], maxlen[16];
    int klen = snprintf(key, sizeof key, "%s%u", g_prefix, g);
    int mlen = snprintf(maxlen, sizeof maxlen, "%d", RS_HISTORY_PER_GROUP);
    return bench_printf(out, "*8\r\n$4\r\nXADD\r\n$%d\r\n%s\r\n$6\r\nMAXLEN\r\n$1\r\n~\r\n$%d\r\n%s\r\n"
                             "$1\r\n*\r\n$1\r\nb\r\n$%u\r\n",
                        klen, key, mlen, maxlen, *(const uint32_t *)arg);
}

static int rs_init(const bench_params *p)
{
    g_params = *p;
    snprintf(g_prefix, sizeof g_prefix, "%s:", p->prefix);
    g_prefix_len = strlen(g_prefix);
    return bench_table_build(&g_xadd_hdr, p->groups, emit_xadd_hdr, &p->body_len);
}

static void rs_fini(void)
{
    bench_table_free(&g_xadd_hdr);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void rs_conn_free(bench_conn *c)
{
    rs_conn *s = c->drv_data;
    if (s) {
        free(s->groups);
        free(s->ids);
        free(s->id_len);
        rc_buf_free(&s->keys);
        rc_buf_free(&s->cmd);
    }
    free(s);
    c->drv_data = NULL;
}

static int rs_setup(bench_conn *c, const uint32_t *groups, uint32_t n)
{
    if (c->role == BENCH_PUB || n == 0) {
        c->pending = 1; /* +PONG */
        return rc_buf_append(&c->out, "PING\r\n", 6);
    }
    rs_conn *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    c->drv_data = s;
    s->c = c;
    s->n = n;
    s->groups = malloc(sizeof *s->groups * n);
    s->ids = calloc(n, sizeof *s->ids);
    s->id_len = calloc(n, 1);
    rc_buf_init(&s->keys);
    rc_buf_init(&s->cmd);
    if (!s->groups || !s->ids || !s->id_len)
        return -1;
    memcpy(s->groups, groups, sizeof *groups * n);
    qsort(s->groups, n, sizeof *s->groups, cmp_u32);
    size_t per = g_params.body_len + RS_ENTRY_OVERHEAD;
    size_t budget = BENCH_IN_CAP / 2;
    s->count = (uint32_t)(budget / ((size_t)n * per));
    s->count = s->count < 1 ? 1 : s->count > RS_MAX_COUNT ? RS_MAX_COUNT : s->count;
    for (uint32_t i = 0; i < n; i++) {
        char key[32];
        int klen = snprintf(key, sizeof key, "%s%u", g_prefix, s->groups[i]);
        if (bench_printf(&s->keys, "$%d\r\n%s\r\n", klen, key) < 0 ||
            bench_printf(&c->out, "*6\r\n$9\r\nXREVRANGE\r\n$%d\r\n%s\r\n$1\r\n+\r\n$1\r\n-\r\n"
                                  "$5\r\nCOUNT\r\n$1\r\n1\r\n", klen, key) < 0)
            return -1;
        memcpy(s->ids[i], "0-0", 3); /* an empty or missing stream: from its start */
        s->id_len[i] = 3;
    }
    c->pending = n; /* one XREVRANGE reply per stream */
    return 0;
}

static int rs_publish(bench_conn *c, uint32_t g, uint64_t seq, uint64_t ts_ns)
{
    return bench_append_seq_msg(&c->out, &g_xadd_hdr, g, g_params.body, g_params.body_len, seq,
                                ts_ns);
}

/* Queues the next XREAD of s. */
static int next_xread(bench_conn *c, rs_conn *s)
{
    rc_buf *cmd = &s->cmd;
    cmd->len = 0;
    char count[16];
    int clen = snprintf(count, sizeof count, "%u", s->count);
    int rc = bench_printf(cmd, "*%u\r\n$5\r\nXREAD\r\n$5\r\nCOUNT\r\n$%d\r\n%s\r\n$5\r\nBLOCK\r\n"
                                "$1\r\n0\r\n$7\r\nSTREAMS\r\n", 6 + 2 * s->n, clen, count);
    if (rc == 0)
        rc = rc_buf_append(cmd, s->keys.data, s->keys.len);
    for (uint32_t i = 0; rc == 0 && i < s->n; i++)
        rc = bench_printf(cmd, "$%u\r\n%.*s\r\n", s->id_len[i], (int)s->id_len[i], s->ids[i]);
    if (rc == 0)
        rc = bench_reply(c, cmd->data, cmd->len);
    return rc;
}

/* The index of group g among s's streams, or -1. */
static int64_t stream_index(const rs_conn *s, uint32_t g)
{
    uint32_t lo = 0, hi = s->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->groups[mid] < g)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->n && s->groups[lo] == g ? (int64_t)lo : -1;
}

static int keep_id(rs_conn *s, uint32_t i, const uint8_t *id, size_t id_len)
{
    if (id_len >= RS_ID_MAX)
        return -1;
    memcpy(s->ids[i], id, id_len);
    s->id_len[i] = (uint8_t)id_len;
    return 0;
}

/* XREVRANGE during setup: the last entry of stream setup_seen. */
static int on_last_entry(void *arg, const uint8_t *key, size_t key_len, const uint8_t *id,
                         size_t id_len, const uint8_t *value, size_t value_len)
{
    (void)key, (void)key_len, (void)value, (void)value_len;
    rs_conn *s = arg;
    return keep_id(s, s->setup_seen, id, id_len);
}

/* An XREAD entry: a delivery. */
static int on_entry(void *arg, const uint8_t *key, size_t key_len, const uint8_t *id,
                    size_t id_len, const uint8_t *value, size_t value_len)
{
    rs_conn *s = arg;
    uint64_t seq;
    uint32_t g = bench_parse_group(key, key_len, g_prefix, g_prefix_len);
    int64_t i = g == BENCH_NO_GROUP ? -1 : stream_index(s, g);
    if (i < 0 || value_len < BENCH_SEQ_HEX || !bench_get_hex16(value, &seq) ||
        keep_id(s, (uint32_t)i, id, id_len) < 0)
        return -1;
    bench_on_delivery(s->c, g, seq, value, value_len);
    return 0;
}

/* One reply to a subscriber at cur. */
static int sub_item(bench_conn *c, rs_conn *s, resp_cur *cur)
{
    if (*cur->p == '-') {
        const uint8_t *line;
        size_t n;
        cur->p++;
        int rc = resp_line(cur, &line, &n);
        if (rc == RESP_OK)
            bench_on_server_error(c, (const char *)line, n);
        return rc;
    }
    if (s->setup_seen < s->n) {
        int rc = resp_entries(cur, NULL, 0, on_last_entry, s);
        if (rc != RESP_OK)
            return rc;
        bench_on_confirm(c, s->groups[s->setup_seen], 0);
        if (++s->setup_seen == s->n && next_xread(c, s) < 0)
            return RESP_BAD;
        return RESP_OK;
    }
    int rc = resp_xread(cur, on_entry, s);
    if (rc == RESP_OK && next_xread(c, s) < 0)
        return RESP_BAD;
    return rc;
}

/* One reply to a publisher (or a subscriber without streams) at cur. */
static int pub_item(bench_conn *c, resp_cur *cur)
{
    const uint8_t *line, *id;
    size_t n, id_len;
    int rc;
    switch (*cur->p) {
    case '$':
        rc = resp_bulk(cur, &id, &id_len);
        if (rc != RESP_OK)
            return rc;
        if (!resp_stream_id_ok(id, id_len))
            return RESP_BAD;
        bench_on_ack(c, BENCH_NO_GROUP, 0, -1);
        return RESP_OK;
    case '+':
    case '-':
        cur->p++;
        rc = resp_line(cur, &line, &n);
        if (rc != RESP_OK)
            return rc;
        if (line[-1] == '-')
            bench_on_server_error(c, (const char *)line, n);
        else if (n == 4 && memcmp(line, "PONG", 4) == 0)
            bench_on_confirm(c, BENCH_NO_GROUP, 0);
        else
            return RESP_BAD;
        return RESP_OK;
    default:
        return RESP_BAD;
    }
}

static ssize_t rs_parse(bench_conn *c, const uint8_t *in, size_t len)
{
    rs_conn *s = c->drv_data;
    resp_cur cur = { in, in + len };
    const uint8_t *done = in;
    while (cur.p < cur.end) {
        int rc = s ? sub_item(c, s, &cur) : pub_item(c, &cur);
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

const bench_driver bench_drv_redis_streams = {
    .name = "redis-streams",
    .default_port = 6379,
    .acks_carry_seq = false,
    .has_acks = true,
    .init = rs_init,
    .fini = rs_fini,
    .setup = rs_setup,
    .publish = rs_publish,
    .parse = rs_parse,
    .conn_free = rs_conn_free,
};
