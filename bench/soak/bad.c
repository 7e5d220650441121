/*
 * Bad clients: one case after another at --bad-rate, each on a connection
 * of its own (the blocking client library, include/ringcast/client.h), each
 * with the outcome proto/PROTOCOL.md prescribes:
 *
 *   EX_ERR        an `err` with this code (and the request's rid, where it
 *                 could be read: §2.2), and the connection stays usable: a
 *                 probe (`ping`, or `hello` before a session) is answered;
 *   EX_ERR_CLOSE  an `err` with this code, then the server closes (§1: a
 *                 bad length);
 *   EX_ANY_ERR    some `err`, the connection stays usable (random bytes);
 *   EX_REPLY      an odd but valid frame: its normal reply, no `err` (§2);
 *   EX_JOIN_SINCE a `join` with an odd `since`: what comes between `joined`
 *                 and `synced` is seq since+1 on (later only when synced
 *                 says `lost`), by exactly 1, up to synced's seq; nothing
 *                 for a since at or past the group's last seq (§6.3);
 *   EX_HIST_PIPE  many `hist` requests (limit 1000) written at once, read at
 *                 once or after a pause: each answered in order with at most
 *                 `limit` messages below `before`, ascending by 1, `more`
 *                 when the reply budget cut it (§6.5); the server slows a
 *                 pipeline it is not read of (§6.6, "2 requests"), so every
 *                 reply must come;
 *   EX_HANG       a connection left hanging (half a frame, half a length,
 *                 nothing at all, before or after `hello`): the server must
 *                 close it by hello_timeout_ms (before `welcome`) or
 *                 idle_timeout_ms (no whole frame), §6.6; we wait that long
 *                 plus HANG_SLACK_S. A `hello` one byte at a time must get
 *                 `welcome` when it is whole within hello_timeout_ms, and be
 *                 closed when it is not.
 *
 * Faults of the server are: no answer (timeouts), a success where an err
 * was due (no_err), a reply that breaks the protocol (bad_reply), a frame
 * that does not decode, a connection kept that must be closed
 * (not_closed). Another err code than prescribed (wrong_code) or a close of
 * a connection that should stay open (closed) are deviations from the
 * contract and are reported as such.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <msgpack.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <ringcast/client.h>

#include "soak.h"

#define BAD_RID 4242u                 /* the rid of the bad request */
#define PROBE_RID 777u                /* the rid of the probe after it */
#define PIPE_RID 100000u              /* first rid of a hist pipeline */
#define BAD_USERS 32u                 /* bad<k>: a bounded pool of users */
#define ERR_GRACE_MS 1000             /* after the probe's reply, wait this long for a shard's err */
#define CLOSE_WAIT_MS 5000            /* an err that must close: wait this long for the close */
#define SINCE_TIMEOUT_MS 15000
#define HIST_TIMEOUT_MS 30000
#define HIST_LIMIT 1000u
#define HIST_PIPE_FAST 50u            /* requests of the pipeline read at once */
#define HIST_PIPE_UNREAD 100u         /* requests of the pipeline read after a pause */
#define HIST_PIPE_PAUSE_MS 5000
#define HIST_ODD_BEFORE 20u
#define HELLO_SLOW_SHARE 0.5          /* a slow hello is whole at this share of hello_timeout_ms */
#define HELLO_SLOWER_SHARE 2.0        /* a slower one would be, and must be closed first */
#define HANG_SLACK_S 10.0             /* a timeout may close this much late */
#define HANG_MAX 256u
#define HANG_IN 4096u                 /* a hanging connection's receive buffer (welcome, ping, bye, err) */
#define DEEP_LEVELS 40u               /* nesting of too_deep (the bound is 32, §2.1) */
#define RANDOM_MAX 64u
#define DETAILS_PER_CASE 3u           /* first deviations of a case told on stderr */
#define SOCKET_TIMEOUT_S 5            /* SO_SNDTIMEO/SO_RCVTIMEO: blocking calls stay bounded */

typedef enum expect_kind {
    EX_ERR, EX_ERR_CLOSE, EX_ANY_ERR, EX_REPLY, EX_JOIN_SINCE, EX_HIST_PIPE, EX_HANG
} expect_kind;

/* What a hanging connection waits for. */
typedef enum hang_kind {
    HANG_HELLO_TIMEOUT,   /* closed by hello_timeout_ms */
    HANG_IDLE_TIMEOUT,    /* closed by idle_timeout_ms */
    HANG_SLOW_HELLO,      /* welcome, the hello being whole in time */
    HANG_SLOWER_HELLO     /* closed by hello_timeout_ms before the hello is whole */
} hang_kind;

typedef struct bad_ctx {
    soak_bad *b;
    uint32_t k;                       /* the user pool index */
    char user[SOAK_NAME_MAX];
    char group[SOAK_NAME_MAX];        /* a busy group the session joined (when `join`) */
    char nongroup[SOAK_NAME_MAX];     /* a group nobody joins */
    uint64_t last_seq;                /* the group's seq at the join */
    uint64_t rid;                     /* the rid the reply or err must echo */
    uint64_t since;                   /* EX_JOIN_SINCE: the since sent */
    uint32_t pipe_n;                  /* EX_HIST_PIPE: requests sent */
    uint64_t pipe_before[HIST_PIPE_UNREAD]; /* their `before`, 0: none */
} bad_ctx;

typedef struct bad_case {
    const char *name;
    expect_kind kind;
    rc_err code;                      /* EX_ERR, EX_ERR_CLOSE */
    bool session;                     /* hello first */
    bool join;                        /* and join a busy group */
    bool rid;                         /* the err must echo the rid */
    unsigned weight;                  /* relative frequency */
    void (*build)(bad_ctx *x, rc_buf *out);
    const char *expect;               /* the outcome in words */
} bad_case;

typedef struct hang {
    bool used;
    uint32_t case_i;
    hang_kind kind;
    rc_client c;
    uint64_t until_ns;                /* the outcome is due by then */
    uint64_t byte_ns;                 /* a slow hello: one byte this often */
    uint64_t next_byte_ns;
    rc_buf rest;                      /* a slow hello: its bytes */
    size_t rest_off;
    uint8_t in[HANG_IN];              /* received, not yet decoded: read raw, since the client
                                       * library would answer the server's ping and end the hang */
    size_t in_len;
} hang;

struct soak_bad {
    const soak_options *o;
    pthread_t tid;
    rc_rng rng;
    uint64_t run_n;
    hang hangs[HANG_MAX];
    uint32_t n_hangs;
    uint8_t details[SOAK_BAD_CASES_MAX];
    soak_bad_stats st;
};

/* ---- building frames, malformed ones included (msgpack-c's packer) ---- */

typedef struct pk {
    msgpack_sbuffer sb;
    msgpack_packer p;
} pk;

static void pk_begin(pk *k)
{
    msgpack_sbuffer_init(&k->sb);
    msgpack_packer_init(&k->p, &k->sb, msgpack_sbuffer_write);
}

static void ps(pk *k, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(&k->p, n);
    msgpack_pack_str_body(&k->p, s, n);
}

static void psn(pk *k, const char *s, size_t n)
{
    msgpack_pack_str(&k->p, n);
    msgpack_pack_str_body(&k->p, s, n);
}

static void pu(pk *k, uint64_t v)
{
    msgpack_pack_uint64(&k->p, v);
}

static void raw_frame(rc_buf *out, const void *p, size_t n)
{
    uint8_t h[RC_FRAME_HEADER];
    rc_frame_put_len(h, (uint32_t)n);
    rc_buf_append(out, h, sizeof h);
    rc_buf_append(out, p, n);
}

/* Frames the packed bytes and releases the packer. */
static void pk_end(pk *k, rc_buf *out)
{
    raw_frame(out, k->sb.data, k->sb.size);
    msgpack_sbuffer_destroy(&k->sb);
}

/* {t: type, rid: x->rid} plus `extra` more pairs the caller packs next. */
static void map_head(pk *k, bad_ctx *x, const char *type, unsigned extra)
{
    msgpack_pack_map(&k->p, 2 + extra);
    ps(k, "t");
    ps(k, type);
    ps(k, "rid");
    pu(k, x->rid);
}

static void str_of(char *buf, char c, size_t n)
{
    memset(buf, c, n);
    buf[n] = '\0';
}

/* ---- the cases' frames ---- */

static void b_len_zero(bad_ctx *x, rc_buf *out) { (void)x; rc_buf_append(out, "\0\0\0\0", 4); }

static void b_len_over(bad_ctx *x, rc_buf *out)
{
    (void)x;
    uint8_t h[RC_FRAME_HEADER];
    rc_frame_put_len(h, RC_DEFAULT_MAX_FRAME + 1);
    rc_buf_append(out, h, sizeof h);
}

static void b_len_huge(bad_ctx *x, rc_buf *out) { (void)x; rc_buf_append(out, "\xff\xff\xff\xff", 4); }

static void b_len_over_payload(bad_ctx *x, rc_buf *out)
{
    (void)x;
    size_t n = RC_DEFAULT_MAX_FRAME + RC_DEFAULT_MAX_FRAME / 2;
    uint8_t *junk = calloc(1, n);
    if (junk) {
        memset(junk, 0x90, n); /* empty arrays, as far as a decoder would see */
        raw_frame(out, junk, n);
        free(junk);
    }
}

static void b_reserved(bad_ctx *x, rc_buf *out) { (void)x; raw_frame(out, "\xc1", 1); }
static void b_truncated(bad_ctx *x, rc_buf *out) { (void)x; raw_frame(out, "\x83\xa1t\xa4pi", 6); }
static void b_array(bad_ctx *x, rc_buf *out) { (void)x; raw_frame(out, "\x93\x01\x02\x03", 4); }
static void b_string(bad_ctx *x, rc_buf *out) { (void)x; raw_frame(out, "\xa3" "abc", 4); }

static void b_trailing(bad_ctx *x, rc_buf *out)
{
    pk k;
    pk_begin(&k);
    map_head(&k, x, "ping", 0);
    msgpack_pack_nil(&k.p);
    pk_end(&k, out);
}

static void b_too_deep(bad_ctx *x, rc_buf *out)
{
    pk k;
    pk_begin(&k);
    map_head(&k, x, "ping", 1);
    ps(&k, "x");
    for (unsigned i = 0; i < DEEP_LEVELS; i++)
        msgpack_pack_array(&k.p, i + 1 < DEEP_LEVELS ? 1 : 0);
    pk_end(&k, out);
}

static void b_count_beyond(bad_ctx *x, rc_buf *out)
{
    pk k;
    pk_begin(&k);
    map_head(&k, x, "ping", 1);
    ps(&k, "x");
    msgpack_pack_array(&k.p, 0xffffffffu);
    pk_end(&k, out);
}

static void b_random(bad_ctx *x, rc_buf *out)
{
    uint8_t r[RANDOM_MAX];
    size_t n = 1 + rc_rng_below(&x->b->rng, RANDOM_MAX);
    for (size_t i = 0; i < n; i++)
        r[i] = (uint8_t)rc_rng_next(&x->b->rng);
    if ((r[0] & 0xf0) == 0x80 || r[0] == 0xde || r[0] == 0xdf)
        r[0] = 0xc1; /* never by chance a map: this case wants an err */
    raw_frame(out, r, n);
}

static void b_no_t(bad_ctx *x, rc_buf *out)
{
    pk k;
    pk_begin(&k);
    msgpack_pack_map(&k.p, 2);
    ps(&k, "rid");
    pu(&k, x->rid);
    ps(&k, "g");
    ps(&k, x->group);
    pk_end(&k, out);
}

static void b_t_int(bad_ctx *x, rc_buf *out)
{
    pk k;
    pk_begin(&k);
    msgpack_pack_map(&k.p, 2);
    ps(&k, "t");
    pu(&k, 7);
    ps(&k, "rid");
    pu(&k, x->rid);
    pk_end(&k, out);
}

static void b_t_bin(bad_ctx *x, rc_buf *out)
{
    pk k;
    pk_begin(&k);
    msgpack_pack_map(&k.p, 2);
    ps(&k, "t");
    msgpack_pack_bin(&k.p, 4);
    msgpack_pack_bin_body(&k.p, "ping", 4);
    ps(&k, "rid");
    pu(&k, x->rid);
    pk_end(&k, out);
}

static void b_unknown(bad_ctx *x, rc_buf *out)
{
    pk k;
    pk_begin(&k);
    map_head(&k, x, "subscribe", 1);
    ps(&k, "g");
    ps(&k, x->group);
    pk_end(&k, out);
}

static void b_server_msg(bad_ctx *x, rc_buf *out)
{
    pk k;
    pk_begin(&k);
    map_head(&k, x, "msg", 5);
    ps(&k, "g"); ps(&k, x->group);
    ps(&k, "seq"); pu(&k, 1);
    ps(&k, "from"); ps(&k, x->user);
    ps(&k, "ts"); pu(&k, 1);
    ps(&k, "body"); ps(&k, "forged");
    pk_end(&k, out);
}

static void b_server_ack(bad_ctx *x, rc_buf *out)
{
    pk k;
    pk_begin(&k);
    map_head(&k, x, "ack", 3);
    ps(&k, "g"); ps(&k, x->group);
    ps(&k, "seq"); pu(&k, 1);
    ps(&k, "ts"); pu(&k, 1);
    pk_end(&k, out);
}

/* {t: type, rid, key: <value written by put>} */
static void one_field(bad_ctx *x, rc_buf *out, const char *type, const char *key, void (*put)(pk *k, bad_ctx *x))
{
    pk k;
    pk_begin(&k);
    map_head(&k, x, type, 1);
    ps(&k, key);
    put(&k, x);
    pk_end(&k, out);
}

/* {t: type, rid, g: the joined group, key: <value>} */
static void group_field(bad_ctx *x, rc_buf *out, const char *type, const char *g, const char *key,
                        void (*put)(pk *k, bad_ctx *x))
{
    pk k;
    pk_begin(&k);
    map_head(&k, x, type, key ? 2 : 1);
    ps(&k, "g");
    ps(&k, g);
    if (key) {
        ps(&k, key);
        put(&k, x);
    }
    pk_end(&k, out);
}

static void v_int7(pk *k, bad_ctx *x) { (void)x; pu(k, 7); }
static void v_neg(pk *k, bad_ctx *x) { (void)x; msgpack_pack_int64(&k->p, -5); }
static void v_nil(pk *k, bad_ctx *x) { (void)x; msgpack_pack_nil(&k->p); }
static void v_true(pk *k, bad_ctx *x) { (void)x; msgpack_pack_true(&k->p); }
static void v_float(pk *k, bad_ctx *x) { (void)x; msgpack_pack_double(&k->p, 1.5); }
static void v_empty_map(pk *k, bad_ctx *x) { (void)x; msgpack_pack_map(&k->p, 0); }
static void v_zero(pk *k, bad_ctx *x) { (void)x; pu(k, 0); }
static void v_1001(pk *k, bad_ctx *x) { (void)x; pu(k, RC_MAX_HIST_LIMIT + 1); }
static void v_str(pk *k, bad_ctx *x) { (void)x; ps(k, "100"); }
static void v_empty_str(pk *k, bad_ctx *x) { (void)x; psn(k, "", 0); }
static void v_body(pk *k, bad_ctx *x) { (void)x; ps(k, "hello from a bad client"); }

static void v_long_group(pk *k, bad_ctx *x)
{
    char g[RC_MAX_GROUP + 2];
    (void)x;
    str_of(g, 'g', RC_MAX_GROUP + 1);
    ps(k, g);
}

static void v_nul_group(pk *k, bad_ctx *x) { (void)x; psn(k, "sg0\0evil", 8); }

static void v_long_user(pk *k, bad_ctx *x)
{
    char u[RC_MAX_USER + 2];
    (void)x;
    str_of(u, 'u', RC_MAX_USER + 1);
    ps(k, u);
}

static void v_other_user(pk *k, bad_ctx *x) { (void)x; ps(k, "someone-else"); }

static void b_join_g_int(bad_ctx *x, rc_buf *out) { one_field(x, out, "join", "g", v_int7); }
static void b_join_g_long(bad_ctx *x, rc_buf *out) { one_field(x, out, "join", "g", v_long_group); }
static void b_join_g_empty(bad_ctx *x, rc_buf *out) { one_field(x, out, "join", "g", v_empty_str); }
static void b_join_g_nul(bad_ctx *x, rc_buf *out) { one_field(x, out, "join", "g", v_nul_group); }
static void b_since_neg(bad_ctx *x, rc_buf *out) { group_field(x, out, "join", x->group, "since", v_neg); }
static void b_since_nil(bad_ctx *x, rc_buf *out) { group_field(x, out, "join", x->group, "since", v_nil); }
static void b_since_bool(bad_ctx *x, rc_buf *out) { group_field(x, out, "join", x->group, "since", v_true); }
static void b_since_float(bad_ctx *x, rc_buf *out) { group_field(x, out, "join", x->group, "since", v_float); }
static void b_body_int(bad_ctx *x, rc_buf *out) { group_field(x, out, "send", x->group, "body", v_int7); }
static void b_body_map(bad_ctx *x, rc_buf *out) { group_field(x, out, "send", x->group, "body", v_empty_map); }
static void b_no_body(bad_ctx *x, rc_buf *out) { group_field(x, out, "send", x->group, NULL, NULL); }
static void b_hist_limit0(bad_ctx *x, rc_buf *out) { group_field(x, out, "hist", x->group, "limit", v_zero); }
static void b_hist_limit_big(bad_ctx *x, rc_buf *out) { group_field(x, out, "hist", x->group, "limit", v_1001); }
static void b_hist_limit_str(bad_ctx *x, rc_buf *out) { group_field(x, out, "hist", x->group, "limit", v_str); }
static void b_leave_g_int(bad_ctx *x, rc_buf *out) { one_field(x, out, "leave", "g", v_int7); }
static void b_send_nonmember(bad_ctx *x, rc_buf *out) { group_field(x, out, "send", x->nongroup, "body", v_body); }
static void b_hist_nonmember(bad_ctx *x, rc_buf *out) { group_field(x, out, "hist", x->nongroup, NULL, NULL); }
static void b_hello_long(bad_ctx *x, rc_buf *out) { one_field(x, out, "hello", "user", v_long_user); }
static void b_hello_empty(bad_ctx *x, rc_buf *out) { one_field(x, out, "hello", "user", v_empty_str); }
static void b_hello_again(bad_ctx *x, rc_buf *out) { one_field(x, out, "hello", "user", v_other_user); }
static void b_join_plain(bad_ctx *x, rc_buf *out) { group_field(x, out, "join", x->group, NULL, NULL); }
static void b_send_plain(bad_ctx *x, rc_buf *out) { group_field(x, out, "send", x->group, "body", v_body); }

static void b_mid_long(bad_ctx *x, rc_buf *out)
{
    char mid[RC_MAX_MID + 2];
    pk k;
    str_of(mid, 'm', RC_MAX_MID + 1);
    pk_begin(&k);
    map_head(&k, x, "send", 3);
    ps(&k, "g"); ps(&k, x->group);
    ps(&k, "body"); ps(&k, "x");
    ps(&k, "mid"); ps(&k, mid);
    pk_end(&k, out);
}

static void b_rid_neg(bad_ctx *x, rc_buf *out)
{
    pk k;
    (void)x;
    pk_begin(&k);
    msgpack_pack_map(&k.p, 2);
    ps(&k, "t"); ps(&k, "ping");
    ps(&k, "rid"); msgpack_pack_int64(&k.p, -1);
    pk_end(&k, out);
}

static void b_rid_str(bad_ctx *x, rc_buf *out)
{
    pk k;
    (void)x;
    pk_begin(&k);
    msgpack_pack_map(&k.p, 2);
    ps(&k, "t"); ps(&k, "ping");
    ps(&k, "rid"); ps(&k, "1");
    pk_end(&k, out);
}

static void b_dup_key(bad_ctx *x, rc_buf *out)
{
    pk k;
    pk_begin(&k);
    map_head(&k, x, "ping", 1);
    ps(&k, "t"); ps(&k, "ping");
    pk_end(&k, out);
}

static void b_replay(bad_ctx *x, rc_buf *out)
{
    pk k;
    pk_begin(&k);
    map_head(&k, x, "replay", 6);
    ps(&k, "g"); ps(&k, x->group);
    ps(&k, "from"); ps(&k, x->user);
    ps(&k, "ts"); pu(&k, 1);
    ps(&k, "body"); ps(&k, "replayed by a bad client");
    ps(&k, "reason"); ps(&k, "overloaded");
    ps(&k, "v"); pu(&k, 1);
    pk_end(&k, out);
}

static void b_ignored_keys(bad_ctx *x, rc_buf *out)
{
    pk k;
    pk_begin(&k);
    map_head(&k, x, "ping", 3);
    pu(&k, 5); pu(&k, 6);                                 /* a non-string key */
    ps(&k, "zz"); msgpack_pack_array(&k.p, 2); pu(&k, 1); msgpack_pack_map(&k.p, 0);
    ps(&k, "g"); pu(&k, 9);                               /* another type's key, any value */
    pk_end(&k, out);
}

static void b_long_encodings(bad_ctx *x, rc_buf *out)
{
    /* map16 of 2, "t" as str8, "ping" as str8, "rid" as str8, rid as uint64 */
    uint8_t p[] = { 0xde, 0, 2, 0xd9, 1, 't', 0xd9, 4, 'p', 'i', 'n', 'g', 0xd9, 3, 'r', 'i', 'd',
                    0xcf, 0, 0, 0, 0, 0, 0, 0, 0 };
    for (int i = 0; i < 8; i++)
        p[18 + i] = (uint8_t)(x->rid >> (56 - 8 * i));
    raw_frame(out, p, sizeof p);
}

static void b_rid_max(bad_ctx *x, rc_buf *out)
{
    x->rid = UINT64_MAX;
    one_field(x, out, "ping", "zz", v_zero);
}

static void b_rid_int8(bad_ctx *x, rc_buf *out)
{
    uint8_t p[] = { 0x82, 0xa1, 't', 0xa4, 'p', 'i', 'n', 'g', 0xa3, 'r', 'i', 'd', 0xd0, 0x05 };
    x->rid = 5;
    raw_frame(out, p, sizeof p);
}

/* ---- odd since ---- */

static void since_join(bad_ctx *x, rc_buf *out, uint64_t since)
{
    pk k;
    x->since = since;
    pk_begin(&k);
    map_head(&k, x, "join", 2);
    ps(&k, "g"); ps(&k, x->group);
    ps(&k, "since"); pu(&k, since);
    pk_end(&k, out);
}

static void b_since_max(bad_ctx *x, rc_buf *out) { since_join(x, out, UINT64_MAX); }
static void b_since_ahead(bad_ctx *x, rc_buf *out) { since_join(x, out, x->last_seq + 1000000u); }
static void b_since_zero(bad_ctx *x, rc_buf *out) { since_join(x, out, 0); }
static void b_since_last(bad_ctx *x, rc_buf *out) { since_join(x, out, x->last_seq); }
static void b_since_recent(bad_ctx *x, rc_buf *out) { since_join(x, out, x->last_seq > 10 ? x->last_seq - 10 : 0); }
static void b_since_gone(bad_ctx *x, rc_buf *out) { since_join(x, out, x->last_seq > 5000 ? x->last_seq - 5000 : 1); }

/* ---- hist pipelines ---- */

static void hist_pipe(bad_ctx *x, rc_buf *out, uint32_t n, bool odd_before)
{
    x->pipe_n = n;
    for (uint32_t i = 0; i < n; i++) {
        static const uint64_t odd[] = { 0, 1, 2, UINT64_MAX };
        uint64_t before = 0;
        if (odd_before)
            before = i < 4 ? odd[i] : x->last_seq - (x->last_seq > i ? i : 0);
        x->pipe_before[i] = before;
        rc_msg m = { .type = RC_T_HIST, .has = RC_HAS_RID | RC_HAS_LIMIT | (odd_before ? RC_HAS_BEFORE : 0),
                     .rid = PIPE_RID + i, .g = rc_str_c(x->group), .limit = HIST_LIMIT, .before = before };
        rc_encode(out, &m);
    }
}

static void b_hist_fast(bad_ctx *x, rc_buf *out) { hist_pipe(x, out, HIST_PIPE_FAST, false); }
static void b_hist_unread(bad_ctx *x, rc_buf *out) { hist_pipe(x, out, HIST_PIPE_UNREAD, false); }
static void b_hist_before(bad_ctx *x, rc_buf *out) { hist_pipe(x, out, HIST_ODD_BEFORE, true); }

/* ---- hanging ---- */

static void b_half_frame(bad_ctx *x, rc_buf *out)
{
    (void)x;
    rc_buf_append(out, "\0\0\0\x64" "\x82\xa1t\xa4ping\xa3", 14); /* 10 of 100 bytes */
}

static void b_half_len(bad_ctx *x, rc_buf *out) { (void)x; rc_buf_append(out, "\0\0", 2); }
static void b_nothing(bad_ctx *x, rc_buf *out) { (void)x; (void)out; }

static void b_slow_hello(bad_ctx *x, rc_buf *out)
{
    rc_msg m = { .type = RC_T_HELLO, .has = RC_HAS_RID, .rid = PROBE_RID, .user = rc_str_c(x->user) };
    rc_encode(out, &m);
}

static void b_slower_hello(bad_ctx *x, rc_buf *out) { b_slow_hello(x, out); }

#define ERR(n, c, s, j, r, w, b, e) { n, EX_ERR, c, s, j, r, w, b, e }
#define ERRC(n, c, s, w, b, e) { n, EX_ERR_CLOSE, c, s, false, false, w, b, e }
#define CASE(n, k, s, j, w, b, e) { n, k, RC_OK, s, j, false, w, b, e }

static const bad_case cases[] = {
    ERRC("len_zero", RC_E_BAD_FRAME, true, 10, b_len_zero, "E_BAD_FRAME, closed"),
    ERRC("len_over_max", RC_E_FRAME_TOO_LARGE, true, 10, b_len_over, "E_FRAME_TOO_LARGE, closed"),
    ERRC("len_huge_before_hello", RC_E_FRAME_TOO_LARGE, false, 10, b_len_huge, "E_FRAME_TOO_LARGE, closed"),
    ERRC("len_over_with_payload", RC_E_FRAME_TOO_LARGE, true, 5, b_len_over_payload, "E_FRAME_TOO_LARGE, closed"),
    ERR("reserved_byte", RC_E_BAD_FRAME, true, false, false, 10, b_reserved, "E_BAD_FRAME, open"),
    ERR("truncated_map", RC_E_BAD_FRAME, true, false, false, 10, b_truncated, "E_BAD_FRAME, open"),
    ERR("array_not_map", RC_E_BAD_FRAME, true, false, false, 10, b_array, "E_BAD_FRAME, open"),
    ERR("string_not_map", RC_E_BAD_FRAME, true, false, false, 10, b_string, "E_BAD_FRAME, open"),
    ERR("trailing_bytes", RC_E_BAD_FRAME, true, false, false, 10, b_trailing, "E_BAD_FRAME, open"),
    ERR("too_deep", RC_E_BAD_FRAME, true, false, false, 10, b_too_deep, "E_BAD_FRAME, open"),
    ERR("count_beyond_frame", RC_E_BAD_FRAME, true, false, false, 10, b_count_beyond, "E_BAD_FRAME, open"),
    CASE("random_bytes", EX_ANY_ERR, true, false, 10, b_random, "an err, open"),
    ERR("no_t", RC_E_MISSING_FIELD, true, false, true, 10, b_no_t, "E_MISSING_FIELD with rid, open"),
    ERR("t_int", RC_E_BAD_FIELD, true, false, true, 10, b_t_int, "E_BAD_FIELD with rid, open"),
    ERR("t_bin", RC_E_BAD_FIELD, true, false, true, 10, b_t_bin, "E_BAD_FIELD with rid, open"),
    ERR("unknown_type", RC_E_UNKNOWN_TYPE, true, false, true, 10, b_unknown, "E_UNKNOWN_TYPE with rid, open"),
    ERR("unknown_type_before_hello", RC_E_UNKNOWN_TYPE, false, false, true, 10, b_unknown, "E_UNKNOWN_TYPE with rid, open"),
    ERR("server_type_msg", RC_E_UNKNOWN_TYPE, true, true, true, 10, b_server_msg, "E_UNKNOWN_TYPE with rid, open"),
    ERR("server_type_ack", RC_E_UNKNOWN_TYPE, true, true, true, 10, b_server_ack, "E_UNKNOWN_TYPE with rid, open"),
    ERR("join_g_int", RC_E_BAD_FIELD, true, false, true, 10, b_join_g_int, "E_BAD_FIELD with rid, open"),
    ERR("join_g_129_bytes", RC_E_BAD_FIELD, true, false, true, 10, b_join_g_long, "E_BAD_FIELD with rid, open"),
    ERR("join_g_empty", RC_E_BAD_FIELD, true, false, true, 10, b_join_g_empty, "E_BAD_FIELD with rid, open"),
    ERR("join_g_nul", RC_E_BAD_FIELD, true, false, true, 10, b_join_g_nul, "E_BAD_FIELD with rid, open"),
    ERR("join_since_negative", RC_E_BAD_FIELD, true, false, true, 10, b_since_neg, "E_BAD_FIELD with rid, open"),
    ERR("join_since_nil", RC_E_BAD_FIELD, true, false, true, 10, b_since_nil, "E_BAD_FIELD with rid, open"),
    ERR("join_since_bool", RC_E_BAD_FIELD, true, false, true, 10, b_since_bool, "E_BAD_FIELD with rid, open"),
    ERR("join_since_float", RC_E_BAD_FIELD, true, false, true, 10, b_since_float, "E_BAD_FIELD with rid, open"),
    ERR("send_body_int", RC_E_BAD_FIELD, true, true, true, 10, b_body_int, "E_BAD_FIELD with rid, open"),
    ERR("send_body_map", RC_E_BAD_FIELD, true, true, true, 10, b_body_map, "E_BAD_FIELD with rid, open"),
    ERR("send_no_body", RC_E_MISSING_FIELD, true, true, true, 10, b_no_body, "E_MISSING_FIELD with rid, open"),
    ERR("send_mid_65_bytes", RC_E_BAD_FIELD, true, true, true, 10, b_mid_long, "E_BAD_FIELD with rid, open"),
    ERR("send_not_member", RC_E_NOT_MEMBER, true, false, true, 10, b_send_nonmember, "E_NOT_MEMBER with rid, open"),
    ERR("hist_not_member", RC_E_NOT_MEMBER, true, false, true, 10, b_hist_nonmember, "E_NOT_MEMBER with rid, open"),
    ERR("hist_limit_0", RC_E_BAD_FIELD, true, true, true, 10, b_hist_limit0, "E_BAD_FIELD with rid, open"),
    ERR("hist_limit_1001", RC_E_BAD_FIELD, true, true, true, 10, b_hist_limit_big, "E_BAD_FIELD with rid, open"),
    ERR("hist_limit_str", RC_E_BAD_FIELD, true, true, true, 10, b_hist_limit_str, "E_BAD_FIELD with rid, open"),
    ERR("leave_g_int", RC_E_BAD_FIELD, true, false, true, 10, b_leave_g_int, "E_BAD_FIELD with rid, open"),
    ERR("rid_negative", RC_E_BAD_FIELD, true, false, false, 10, b_rid_neg, "E_BAD_FIELD, open"),
    ERR("rid_string", RC_E_BAD_FIELD, true, false, false, 10, b_rid_str, "E_BAD_FIELD, open"),
    ERR("duplicate_key", RC_E_BAD_FIELD, true, false, false, 10, b_dup_key, "E_BAD_FIELD, open"),
    ERR("hello_user_65_bytes", RC_E_BAD_FIELD, false, false, true, 10, b_hello_long, "E_BAD_FIELD with rid, open"),
    ERR("hello_user_empty", RC_E_BAD_FIELD, false, false, true, 10, b_hello_empty, "E_BAD_FIELD with rid, open"),
    ERR("hello_twice", RC_E_FORBIDDEN, true, false, true, 10, b_hello_again, "E_FORBIDDEN with rid, open"),
    ERR("join_before_hello", RC_E_NOT_AUTHENTICATED, false, false, true, 10, b_join_plain, "E_NOT_AUTHENTICATED with rid, open"),
    ERR("send_before_hello", RC_E_NOT_AUTHENTICATED, false, false, true, 10, b_send_plain, "E_NOT_AUTHENTICATED with rid, open"),
    ERR("bad_field_before_hello", RC_E_BAD_FIELD, false, false, true, 10, b_join_g_int, "E_BAD_FIELD with rid, open"),
    ERR("replay_not_admin", RC_E_FORBIDDEN, true, true, true, 10, b_replay, "E_FORBIDDEN with rid, open"),
    CASE("ignored_keys", EX_REPLY, true, false, 10, b_ignored_keys, "pong with rid"),
    CASE("long_encodings", EX_REPLY, true, false, 10, b_long_encodings, "pong with rid"),
    CASE("rid_max", EX_REPLY, true, false, 10, b_rid_max, "pong with rid 2^64-1"),
    CASE("rid_int8", EX_REPLY, true, false, 10, b_rid_int8, "pong with rid 5"),
    CASE("since_max", EX_JOIN_SINCE, true, true, 10, b_since_max, "joined, nothing, synced"),
    CASE("since_far_ahead", EX_JOIN_SINCE, true, true, 10, b_since_ahead, "joined, nothing, synced"),
    CASE("since_last", EX_JOIN_SINCE, true, true, 10, b_since_last, "joined, what came since, synced"),
    CASE("since_zero", EX_JOIN_SINCE, true, true, 5, b_since_zero, "joined, history, synced lost"),
    CASE("since_recent", EX_JOIN_SINCE, true, true, 10, b_since_recent, "joined, since+1.., synced"),
    CASE("since_gone", EX_JOIN_SINCE, true, true, 5, b_since_gone, "joined, history, synced lost"),
    CASE("hist_pipeline_50", EX_HIST_PIPE, true, true, 2, b_hist_fast, "50 hist replies in order"),
    CASE("hist_pipeline_100_unread", EX_HIST_PIPE, true, true, 1, b_hist_unread, "100 hist replies in order (the server slows the pipeline)"),
    CASE("hist_odd_before", EX_HIST_PIPE, true, true, 5, b_hist_before, "20 hist replies below before"),
    CASE("hang_half_frame", EX_HANG, false, false, 3, b_half_frame, "closed by hello_timeout"),
    CASE("hang_half_length", EX_HANG, false, false, 3, b_half_len, "closed by hello_timeout"),
    CASE("hang_silent", EX_HANG, false, false, 3, b_nothing, "closed by hello_timeout"),
    CASE("hang_half_frame_in_session", EX_HANG, true, false, 1, b_half_frame, "closed by idle_timeout"),
    CASE("hang_silent_in_session", EX_HANG, true, false, 1, b_nothing, "closed by idle_timeout"),
    CASE("hang_slow_hello", EX_HANG, false, false, 3, b_slow_hello, "welcome (whole at half of hello_timeout)"),
    CASE("hang_slower_hello", EX_HANG, false, false, 3, b_slower_hello, "closed by hello_timeout (whole at twice it)"),
};
#define N_CASES (sizeof cases / sizeof cases[0])
_Static_assert(N_CASES <= SOAK_BAD_CASES_MAX, "raise SOAK_BAD_CASES_MAX");

/* ---- reading the answers ---- */

typedef struct seen {
    bool err;                /* an err arrived (the first one is kept) */
    rc_err code;
    bool err_has_rid;
    uint64_t err_rid;
    bool reply;              /* a non-err reply with the bad request's rid */
    bool probe;              /* the probe's reply */
    bool closed;             /* EOF, reset, or a frame that does not decode */
    bool bad_frame;
} seen;

static uint64_t now_ms(void)
{
    return soak_now_ns() / 1000000u;
}

static void note_frame(soak_bad *b, const bad_ctx *x, const rc_msg *m, seen *s)
{
    if (m->type == RC_T_ERR) {
        soak_codes_bump(&b->st.codes, m->code);
        if (!s->err) {
            s->err = true;
            s->code = m->code;
            s->err_has_rid = m->has & RC_HAS_RID;
            s->err_rid = m->rid;
        }
        return;
    }
    if (!(m->has & RC_HAS_RID) || m->type == RC_T_MSG)
        return;
    if (m->rid == PROBE_RID && (m->type == RC_T_PONG || m->type == RC_T_WELCOME))
        s->probe = true;
    else if (m->rid == x->rid)
        s->reply = true;
}

/* One frame, or false when the connection ended or time ran out. */
static bool recv_one(soak_bad *b, rc_client *c, rc_msg *m, uint64_t deadline, seen *s)
{
    uint64_t now = now_ms();
    if (now >= deadline)
        return false;
    int r = rc_client_recv(c, m, (int)(deadline - now));
    if (r == 1)
        return true;
    if (r < 0) {
        s->closed = true;
        if (strncmp(c->err, "bad frame from server", 21) == 0) {
            s->bad_frame = true;
            BUMP(b->st.bad_frames, 1);
        }
    }
    return false;
}

/* Reads until the probe is answered and (if want_err) an err came, the
 * connection ends, or the deadline. */
static void collect(soak_bad *b, const bad_ctx *x, rc_client *c, seen *s, bool want_err, uint64_t deadline)
{
    uint64_t probe_ms = 0;
    rc_msg m;
    while (!s->closed) {
        if (s->probe && (!want_err || s->err))
            break;
        uint64_t d = s->probe ? probe_ms + ERR_GRACE_MS : deadline;
        if (!recv_one(b, c, &m, d < deadline ? d : deadline, s))
            break;
        note_frame(b, x, &m, s);
        if (s->probe && !probe_ms)
            probe_ms = now_ms();
    }
}

static int send_probe(rc_client *c, bool session, const char *user)
{
    rc_msg m = session ? (rc_msg){ .type = RC_T_PING, .has = RC_HAS_RID, .rid = PROBE_RID }
                       : (rc_msg){ .type = RC_T_HELLO, .has = RC_HAS_RID, .rid = PROBE_RID, .user = rc_str_c(user) };
    return rc_client_send(c, &m);
}

/* ---- judging ---- */

static void detail(soak_bad *b, uint32_t ci, const char *what, const seen *s)
{
    if (b->details[ci] >= DETAILS_PER_CASE)
        return;
    b->details[ci]++;
    fprintf(stderr, "ringcast-soak: bad client %s: %s (expected %s; got %s%s%s%s)\n", cases[ci].name, what,
            cases[ci].expect, s && s->err ? rc_err_name(s->code) : "no err",
            s && s->err && s->err_has_rid ? " with rid" : "", s && s->closed ? ", closed" : "",
            s && s->probe ? ", probe answered" : "");
}

static void judge_err(soak_bad *b, uint32_t ci, const bad_ctx *x, const seen *s)
{
    const bad_case *bc = &cases[ci];
    soak_bad_case_stats *cs = &b->st.per_case[ci];
    bool code_ok = bc->kind == EX_ANY_ERR ||
                   (s->code == bc->code && (!bc->rid || (s->err_has_rid && s->err_rid == x->rid)));
    if (s->bad_frame) {
        BUMP(cs->bad_reply, 1);
        detail(b, ci, "a server frame that does not decode", s);
    } else if (s->err && !code_ok) {
        BUMP(cs->wrong_code, 1);
        detail(b, ci, "another err", s);
    } else if (s->err && s->closed) {
        BUMP(cs->closed, 1);
        detail(b, ci, "closed a connection that should stay open", s);
    } else if (s->err && s->probe) {
        BUMP(cs->ok, 1);
    } else if (s->err) {
        BUMP(cs->timeouts, 1);
        detail(b, ci, "the probe after the err got no answer", s);
    } else if (s->probe || s->reply) {
        BUMP(cs->no_err, 1);
        detail(b, ci, "no err: the request was taken", s);
    } else if (s->closed) {
        BUMP(cs->closed, 1);
        detail(b, ci, "closed without an err", s);
    } else {
        BUMP(cs->timeouts, 1);
        detail(b, ci, "no answer", s);
    }
}

static void judge_close(soak_bad *b, uint32_t ci, const seen *s)
{
    const bad_case *bc = &cases[ci];
    soak_bad_case_stats *cs = &b->st.per_case[ci];
    if (s->bad_frame) {
        BUMP(cs->bad_reply, 1);
        detail(b, ci, "a server frame that does not decode", s);
    } else if (s->err && s->code != bc->code) {
        BUMP(cs->wrong_code, 1);
        detail(b, ci, "another err", s);
    } else if (s->err && s->closed) {
        BUMP(cs->ok, 1);
    } else if (s->err) {
        BUMP(cs->not_closed, 1);
        detail(b, ci, "not closed after the err", s);
    } else if (s->closed) {
        BUMP(cs->wrong_code, 1);
        detail(b, ci, "closed without an err", s);
    } else {
        BUMP(cs->timeouts, 1);
        detail(b, ci, "no answer", s);
    }
}

static void judge_reply(soak_bad *b, uint32_t ci, const seen *s)
{
    soak_bad_case_stats *cs = &b->st.per_case[ci];
    if (s->reply && !s->err && !s->closed)
        BUMP(cs->ok, 1);
    else if (s->err) {
        BUMP(cs->wrong_code, 1);
        detail(b, ci, "an err for a valid frame", s);
    } else if (s->closed) {
        BUMP(cs->closed, 1);
        detail(b, ci, "closed", s);
    } else {
        BUMP(cs->timeouts, 1);
        detail(b, ci, "no answer", s);
    }
}

/* ---- the structured cases ---- */

/* EX_JOIN_SINCE: joined (rid), the replay, synced; checked as the header says. */
static void run_since(soak_bad *b, uint32_t ci, const bad_ctx *x, rc_client *c)
{
    soak_bad_case_stats *cs = &b->st.per_case[ci];
    uint64_t deadline = now_ms() + SINCE_TIMEOUT_MS;
    bool joined = false, synced = false, whole = true;
    uint64_t first = 0, next = 0, n = 0;
    seen s = { 0 };
    rc_msg m;
    while (!synced && recv_one(b, c, &m, deadline, &s)) {
        if (m.type == RC_T_ERR) {
            note_frame(b, x, &m, &s);
            break;
        }
        if (m.type == RC_T_JOINED && (m.has & RC_HAS_RID) && m.rid == x->rid) {
            joined = true;
        } else if (m.type == RC_T_MSG && joined && rc_str_eq(m.g, rc_str_c(x->group))) {
            n++;
            if (!first) {
                first = m.seq;
                whole = m.seq > x->since;
            } else if (m.seq != next) {
                whole = false;
            }
            next = m.seq + 1;
        } else if (m.type == RC_T_SYNCED && joined && rc_str_eq(m.g, rc_str_c(x->group))) {
            synced = true;
            if (first && (m.more ? next - 1 > m.seq : next - 1 != m.seq))
                whole = false;                          /* does not end at synced's seq (a page may end before) */
            if (first && first != x->since + 1 && !m.lost)
                whole = false;                          /* skipped seqs without saying lost */
            if (x->since >= m.seq && (n > 0 || m.lost))
                whole = false;                          /* nothing was due */
        }
    }
    BUMP(b->st.since_replayed, n);
    if (s.err) {
        BUMP(cs->wrong_code, 1);
        detail(b, ci, "an err for a valid join", &s);
    } else if (!synced) {
        BUMP(*(s.closed ? &cs->closed : &cs->timeouts), 1);
        detail(b, ci, joined ? "no synced" : "no joined", &s);
    } else if (!whole) {
        BUMP(cs->bad_reply, 1);
        if (b->details[ci] < DETAILS_PER_CASE) {
            b->details[ci]++;
            fprintf(stderr, "ringcast-soak: bad client %s: since=%llu (group %s at %llu): replay of %llu msgs "
                    "from seq %llu to %llu is not what synced allows\n", cases[ci].name,
                    (unsigned long long)x->since, x->group, (unsigned long long)x->last_seq,
                    (unsigned long long)n, (unsigned long long)first, (unsigned long long)(next ? next - 1 : 0));
        }
    } else {
        BUMP(cs->ok, 1);
    }
}

/* One hist reply of a pipeline: in order, within limit and before, ascending by 1. */
static bool hist_reply_ok(const bad_ctx *x, const rc_msg *m, uint32_t i)
{
    if (m->rid != PIPE_RID + i || m->n_msgs > HIST_LIMIT)
        return false;
    uint64_t before = x->pipe_before[i];
    for (uint32_t k = 0; k < m->n_msgs; k++) {
        if (before && m->msgs[k].seq >= before)
            return false;
        if (k && m->msgs[k].seq != m->msgs[k - 1].seq + 1)
            return false;
    }
    return true;
}

static void run_hist_pipe(soak_bad *b, uint32_t ci, const bad_ctx *x, rc_client *c, bool pause)
{
    soak_bad_case_stats *cs = &b->st.per_case[ci];
    if (pause)
        soak_sleep_ms(HIST_PIPE_PAUSE_MS);
    uint64_t deadline = now_ms() + HIST_TIMEOUT_MS;
    uint32_t got = 0;
    bool ok = true;
    seen s = { 0 };
    rc_msg m;
    while (got < x->pipe_n && recv_one(b, c, &m, deadline, &s)) {
        if (m.type == RC_T_ERR) {
            note_frame(b, x, &m, &s);
            got++;
        } else if (m.type == RC_T_HIST) {
            ok = ok && hist_reply_ok(x, &m, got);
            BUMP(b->st.hist_replies, 1);
            BUMP(b->st.hist_msgs, m.n_msgs);
            got++;
        }
    }
    if (!ok) {
        BUMP(cs->bad_reply, 1);
        detail(b, ci, "a hist reply out of order, over its limit or not ascending by 1", &s);
    } else if (s.err) {
        BUMP(cs->wrong_code, 1);
        detail(b, ci, "refused", &s);
    } else if (got == x->pipe_n) {
        BUMP(cs->ok, 1);
    } else {
        BUMP(*(s.closed ? &cs->closed : &cs->timeouts), 1);
        detail(b, ci, s.closed ? "closed before every reply" : "not every reply in time", &s);
    }
}

/* ---- hanging connections ---- */

static hang_kind hang_kind_of(const bad_case *bc)
{
    if (bc->build == b_slow_hello)
        return HANG_SLOW_HELLO;
    if (bc->build == b_slower_hello)
        return HANG_SLOWER_HELLO;
    return bc->session ? HANG_IDLE_TIMEOUT : HANG_HELLO_TIMEOUT;
}

static void hang_end(soak_bad *b, hang *h)
{
    rc_client_close(&h->c);
    rc_buf_free(&h->rest);
    h->used = false;
    b->n_hangs--;
}

/* The server closed the connection: right unless it owed a welcome. */
static void hang_closed(soak_bad *b, hang *h)
{
    soak_bad_case_stats *cs = &b->st.per_case[h->case_i];
    BUMP(b->st.hang_closed_by_server, 1);
    if (h->kind == HANG_SLOW_HELLO) {
        BUMP(cs->closed, 1);
        detail(b, h->case_i, "closed a hello that was whole in time", NULL);
    } else {
        BUMP(cs->ok, 1);
    }
    hang_end(b, h);
}

static void hang_start(soak_bad *b, uint32_t ci, rc_client *c, rc_buf *bytes)
{
    hang *h = NULL;
    for (uint32_t i = 0; i < HANG_MAX && !h; i++)
        if (!b->hangs[i].used)
            h = &b->hangs[i];
    if (!h)
        return;
    memset(h, 0, sizeof *h);
    h->used = true;
    h->case_i = ci;
    h->kind = hang_kind_of(&cases[ci]);
    h->c = *c;
    double wait_s = (h->kind == HANG_IDLE_TIMEOUT ? b->o->idle_timeout_s : b->o->hello_timeout_s) + HANG_SLACK_S;
    h->until_ns = soak_now_ns() + (uint64_t)(wait_s * 1e9);
    rc_buf_init(&h->rest);
    b->n_hangs++;
    BUMP(b->st.hang_opened, 1);
    if (h->kind == HANG_SLOW_HELLO || h->kind == HANG_SLOWER_HELLO) {
        /* whole at half of hello_timeout, or at twice it */
        double share = h->kind == HANG_SLOW_HELLO ? HELLO_SLOW_SHARE : HELLO_SLOWER_SHARE;
        h->byte_ns = (uint64_t)(b->o->hello_timeout_s * share / (double)(bytes->len ? bytes->len : 1) * 1e9);
        rc_buf_append(&h->rest, bytes->data, bytes->len);
    } else if (bytes->len && rc_client_send_raw(&h->c, bytes->data, bytes->len) != 0) {
        hang_closed(b, h);
    }
}

/* What the server sent a hanging connection, read without answering:
 * 1 something new, 0 nothing, -1 closed. */
static int hang_read(soak_bad *b, hang *h, bool *welcomed)
{
    ssize_t r = recv(h->c.fd, h->in + h->in_len, sizeof h->in - h->in_len, MSG_DONTWAIT);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        return -1;
    if (r < 0)
        return 0;
    h->in_len += (size_t)r;
    size_t off = 0;
    while (h->in_len - off >= RC_FRAME_HEADER) {
        uint32_t n = rc_frame_len(h->in + off);
        if (n > sizeof h->in - RC_FRAME_HEADER)
            return -1; /* nothing this long is due here: take it as a fault close */
        if (h->in_len - off - RC_FRAME_HEADER < n)
            break;
        rc_msg m;
        const char *why;
        if (rc_decode(&h->c.dec, h->in + off + RC_FRAME_HEADER, n, &m, &why) != RC_OK) {
            BUMP(b->st.bad_frames, 1);
            return -1;
        }
        if (m.type == RC_T_ERR)
            soak_codes_bump(&b->st.codes, m.code);
        else if (m.type == RC_T_BYE)
            BUMP(b->st.hang_byes, 1);
        else if (m.type == RC_T_PING)
            BUMP(b->st.hang_pings, 1);
        else if (m.type == RC_T_WELCOME && (m.has & RC_HAS_RID) && m.rid == PROBE_RID)
            *welcomed = true;
        off += RC_FRAME_HEADER + n;
    }
    memmove(h->in, h->in + off, h->in_len - off);
    h->in_len -= off;
    return 1;
}

/* One turn over the hanging connections; all_done lets every one go. */
static void hang_service(soak_bad *b, bool all_done)
{
    uint64_t now = soak_now_ns();
    for (uint32_t i = 0; i < HANG_MAX; i++) {
        hang *h = &b->hangs[i];
        if (!h->used)
            continue;
        soak_bad_case_stats *cs = &b->st.per_case[h->case_i];
        if (h->rest_off < h->rest.len && now >= h->next_byte_ns) {
            h->next_byte_ns = now + h->byte_ns;
            if (rc_client_send_raw(&h->c, h->rest.data + h->rest_off++, 1) != 0) {
                hang_closed(b, h);
                continue;
            }
        }
        bool welcomed = false;
        int r;
        while ((r = hang_read(b, h, &welcomed)) == 1)
            ;
        if (welcomed) {
            if (h->kind == HANG_SLOW_HELLO) {
                BUMP(cs->ok, 1);
            } else {
                BUMP(cs->no_err, 1);
                detail(b, h->case_i, "welcome for a hello slower than hello_timeout", NULL);
            }
            hang_end(b, h);
            continue;
        }
        if (r < 0) {
            hang_closed(b, h);
            continue;
        }
        if (all_done || now >= h->until_ns) {
            if (now >= h->until_ns) {
                BUMP(b->st.hang_open_at_end, 1);
                BUMP(*(h->kind == HANG_SLOW_HELLO ? &cs->timeouts : &cs->not_closed), 1);
                detail(b, h->case_i, h->kind == HANG_SLOW_HELLO ? "no welcome" : "still open after its timeout", NULL);
            }
            hang_end(b, h); /* at the end of the run: let go, not judged */
        }
    }
}

/* ---- one case ---- */

static void bound_socket(rc_client *c)
{
    struct timeval tv = { SOCKET_TIMEOUT_S, 0 };
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* Opens the case's connection (hello and join as it asks): 0, or -1. */
static int case_open(soak_bad *b, const bad_case *bc, bad_ctx *x, rc_client *c)
{
    x->k = (uint32_t)(b->run_n % BAD_USERS);
    soak_name(x->user, SOAK_BAD_USER, x->k);
    soak_name(x->group, SOAK_STEADY_PREFIX, x->k % (b->o->hot ? b->o->hot : 1));
    soak_name(x->nongroup, SOAK_BAD_PREFIX, x->k);
    x->rid = BAD_RID;
    if (rc_client_connect(c, SOAK_HOST, b->o->port, SOAK_CONNECT_TIMEOUT_MS) != 0)
        return -1;
    bound_socket(c);
    if (bc->session && rc_client_hello(c, x->user, SOAK_IO_TIMEOUT_MS) != 0)
        return -1;
    if (bc->join && rc_client_join(c, x->group, SOAK_IO_TIMEOUT_MS, &x->last_seq) != 0)
        return -1;
    return 0;
}

static void run_case(soak_bad *b, uint32_t ci)
{
    const bad_case *bc = &cases[ci];
    bad_ctx x = { .b = b };
    rc_client c;
    rc_buf bytes;
    rc_buf_init(&bytes);
    BUMP(b->st.cases_run, 1);
    BUMP(b->st.per_case[ci].runs, 1);
    if (case_open(b, bc, &x, &c) != 0) {
        BUMP(b->st.per_case[ci].timeouts, 1);
        detail(b, ci, "could not open the session", NULL);
        rc_client_close(&c);
        rc_buf_free(&bytes);
        return;
    }
    bc->build(&x, &bytes);
    BUMP(b->st.frames_sent, bc->kind == EX_HIST_PIPE ? x.pipe_n : 1);
    BUMP(b->st.bytes_sent, bytes.len);
    if (bc->kind == EX_HANG) {
        hang_start(b, ci, &c, &bytes); /* the hang owns the connection now */
        rc_buf_free(&bytes);
        return;
    }
    rc_client_send_raw(&c, bytes.data, bytes.len); /* a close half-way is judged below */
    seen s = { 0 };
    switch (bc->kind) {
    case EX_ERR:
    case EX_ANY_ERR:
        send_probe(&c, bc->session, x.user);
        collect(b, &x, &c, &s, true, now_ms() + SOAK_IO_TIMEOUT_MS);
        judge_err(b, ci, &x, &s);
        break;
    case EX_ERR_CLOSE: {
        rc_msg m;
        uint64_t deadline = now_ms() + CLOSE_WAIT_MS;
        while (recv_one(b, &c, &m, deadline, &s))
            note_frame(b, &x, &m, &s);
        judge_close(b, ci, &s);
        break;
    }
    case EX_REPLY:
        send_probe(&c, true, x.user);
        collect(b, &x, &c, &s, false, now_ms() + SOAK_IO_TIMEOUT_MS);
        if (!s.reply && !s.closed) { /* the probe came first; the reply may follow */
            rc_msg m;
            uint64_t deadline = now_ms() + ERR_GRACE_MS;
            while (!s.reply && recv_one(b, &c, &m, deadline, &s))
                note_frame(b, &x, &m, &s);
        }
        judge_reply(b, ci, &s);
        break;
    case EX_JOIN_SINCE:
        run_since(b, ci, &x, &c);
        break;
    case EX_HIST_PIPE:
        run_hist_pipe(b, ci, &x, &c, bc->build == b_hist_unread);
        break;
    case EX_HANG:
        break;
    }
    rc_client_close(&c);
    rc_buf_free(&bytes);
}

static uint32_t pick_case(soak_bad *b)
{
    static unsigned total;
    if (!total)
        for (uint32_t i = 0; i < N_CASES; i++)
            total += cases[i].weight;
    uint64_t r = rc_rng_below(&b->rng, total);
    for (uint32_t i = 0; i < N_CASES; i++) {
        if (r < cases[i].weight)
            return i;
        r -= cases[i].weight;
    }
    return 0;
}

static void *bad_main(void *arg)
{
    soak_bad *b = arg;
    uint64_t t0 = soak_now_ns();
    double rate = b->o->bad_rate;
    uint32_t hang_max = b->o->hang_max < HANG_MAX ? b->o->hang_max : HANG_MAX;
    while (soak_phase_now() == SOAK_RUN && rate > 0) {
        hang_service(b, false);
        uint64_t due = t0 + (uint64_t)((double)b->run_n / rate * 1e9), now = soak_now_ns();
        if (now < due) {
            uint64_t ms = (due - now) / 1000000u;
            soak_sleep_ms(ms > 50 ? 50 : (uint32_t)ms + 1);
            continue;
        }
        if ((double)(now - due) / 1e9 > 1.0) /* fell behind (a long case): no burst */
            t0 = now - (uint64_t)((double)b->run_n / rate * 1e9);
        uint32_t ci = pick_case(b);
        if (cases[ci].kind == EX_HANG && b->n_hangs >= hang_max)
            continue; /* room for no more: pick again */
        run_case(b, ci);
        b->run_n++;
    }
    hang_service(b, true);
    return NULL;
}

int soak_bad_start(const soak_options *o, soak_bad **out)
{
    soak_bad *b = calloc(1, sizeof *b);
    if (!b)
        return -1;
    *out = b;
    b->o = o;
    rc_rng_seed(&b->rng, o->seed ^ 0xbadbadu);
    return pthread_create(&b->tid, NULL, bad_main, b) == 0 ? 0 : -1;
}

const soak_bad_stats *soak_bad_stats_of(const soak_bad *b)
{
    return &b->st;
}

uint32_t soak_bad_case_count(void)
{
    return N_CASES;
}

const char *soak_bad_case_name(uint32_t i)
{
    return i < N_CASES ? cases[i].name : "?";
}

const char *soak_bad_case_expect(uint32_t i)
{
    return i < N_CASES ? cases[i].expect : "?";
}

void soak_bad_join(soak_bad *b)
{
    pthread_join(b->tid, NULL);
}
