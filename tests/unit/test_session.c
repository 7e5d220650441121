/*
 * The protocol session without sockets (src/net/session.h): frames go in
 * as bytes, and what the session does is recorded by a fake
 * rc_session_out — the frames it would send (decoded back), the jobs it
 * would route, whether it closed. Covers framing (whole, split, pipelined,
 * zero and oversize lengths), hello first, the admin token, join's
 * per-session limit, server-only types, bad maps, shutting down, holding
 * (input stops where `reading` says), the replay rules, and signed
 * tokens: hello with and without one, groups, refresh, expiry.
 */
#include "net/session.h"

#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/stats.h"

#define MAX_OUT 64
#define MAX_FRAME 1024u
#define MAX_GROUPS 2u
#define TOKEN "s3cret"
#define SECRET "a-secret-of-32-bytes-for-hs256!!"
#define OTHER_SECRET "another-secret-nobody-configured"
#define NOW 1700000000u

/* What the fake writer saw. */
typedef struct fake {
    rc_msg sent[MAX_OUT];           /* decoded replies */
    rc_decoder decs[MAX_OUT];       /* one per reply: its strings point into it */
    int n_sent;
    rc_job_kind routed[MAX_OUT];
    char routed_from[MAX_OUT][RC_MAX_USER + 1];
    char routed_mid[MAX_OUT][RC_MAX_MID + 1];
    char routed_g[MAX_OUT][RC_MAX_GROUP + 1];
    int n_routed;
    bool closed, stopping;
    int reads_left;                 /* `reading` answers true this many times (-1: always) */
    uint64_t now_s;                 /* the wall clock the session reads */
} fake;

static void f_send(void *self, const uint8_t *frame, size_t len)
{
    fake *f = self;
    CU_ASSERT_FATAL(f->n_sent < MAX_OUT);
    CU_ASSERT_FATAL(len >= RC_FRAME_HEADER && rc_frame_len(frame) == len - RC_FRAME_HEADER);
    rc_decoder_init(&f->decs[f->n_sent]);
    /* The decoder refuses server types as requests only in the session; here any type decodes. */
    const char *why = NULL;
    rc_decode(&f->decs[f->n_sent], frame + RC_FRAME_HEADER, len - RC_FRAME_HEADER, &f->sent[f->n_sent], &why);
    f->n_sent++;
}

static void f_route(void *self, rc_job_kind kind, rc_str from, const rc_msg *m)
{
    fake *f = self;
    CU_ASSERT_FATAL(f->n_routed < MAX_OUT);
    f->routed[f->n_routed] = kind;
    snprintf(f->routed_from[f->n_routed], sizeof(f->routed_from[0]), "%.*s", (int)from.len, from.ptr);
    snprintf(f->routed_mid[f->n_routed], sizeof(f->routed_mid[0]), "%.*s", (int)m->mid.len, m->mid.ptr);
    snprintf(f->routed_g[f->n_routed], sizeof(f->routed_g[0]), "%.*s", (int)m->g.len, m->g.ptr);
    f->n_routed++;
}

static bool f_reading(void *self)
{
    fake *f = self;
    if (f->closed || f->reads_left == 0)
        return false;
    if (f->reads_left > 0)
        f->reads_left--;
    return true;
}

static void f_close(void *self)
{
    ((fake *)self)->closed = true;
}

static bool f_stopping(void *self)
{
    return ((fake *)self)->stopping;
}

static uint64_t f_wall(void *self)
{
    return ((fake *)self)->now_s;
}

/* One session with its fake world. */
typedef struct scene {
    fake f;
    rc_session s;
    rc_session_limits lim;
    rc_token_keys keys;
    rc_session_out out;
    rc_session_stats stats;
    rc_decoder dec;
    rc_buf scratch;
    rc_session_env env;
} scene;

static scene *scene_new(void)
{
    scene *sc = calloc(1, sizeof(*sc));
    CU_ASSERT_PTR_NOT_NULL_FATAL(sc);
    sc->f.reads_left = -1;
    sc->f.now_s = NOW;
    sc->lim = (rc_session_limits){ .max_frame = MAX_FRAME, .max_groups = MAX_GROUPS, .admin_token = TOKEN };
    sc->out = (rc_session_out){ &sc->f, f_send, f_route, f_reading, f_close, f_stopping, f_wall };
    rc_decoder_init_requests(&sc->dec);
    rc_buf_init(&sc->scratch);
    sc->env = (rc_session_env){ &sc->lim, &sc->out, &sc->dec, &sc->scratch, &sc->stats };
    rc_session_init(&sc->s, 42);
    return sc;
}

static void scene_free(scene *sc)
{
    for (int i = 0; i < sc->f.n_sent; i++)
        rc_decoder_free(&sc->f.decs[i]);
    rc_session_free(&sc->s);
    rc_decoder_free(&sc->dec);
    rc_buf_free(&sc->scratch);
    free(sc);
}

/* Encodes m with rid and hands the frame to the session; returns what it consumed. */
static size_t feed(scene *sc, rc_msg m, uint64_t rid)
{
    rc_buf b;
    rc_buf_init(&b);
    m.has |= RC_HAS_RID;
    m.rid = rid;
    CU_ASSERT_FATAL(rc_encode(&b, &m) == 0);
    size_t used = rc_session_input(&sc->s, &sc->env, b.data, b.len);
    CU_ASSERT_EQUAL(used, b.len);
    rc_buf_free(&b);
    return used;
}

static const rc_msg *last_sent(const scene *sc)
{
    CU_ASSERT_FATAL(sc->f.n_sent > 0);
    return &sc->f.sent[sc->f.n_sent - 1];
}

static void assert_err(const scene *sc, rc_err code, uint64_t rid)
{
    const rc_msg *m = last_sent(sc);
    CU_ASSERT_EQUAL(m->type, RC_T_ERR);
    CU_ASSERT_EQUAL(m->code, code);
    CU_ASSERT(m->has & RC_HAS_RID);
    CU_ASSERT_EQUAL(m->rid, rid);
}

static void hello(scene *sc, const char *user, const char *token)
{
    rc_msg m = { .type = RC_T_HELLO, .user = rc_str_c(user) };
    if (token) {
        m.token = rc_str_c(token);
        m.has |= RC_HAS_TOKEN;
    }
    feed(sc, m, 1);
}

static void test_hello_first(void)
{
    scene *sc = scene_new();
    feed(sc, (rc_msg){ .type = RC_T_JOIN, .g = rc_str_c("g") }, 7);
    assert_err(sc, RC_E_NOT_AUTHENTICATED, 7);
    CU_ASSERT_EQUAL(sc->f.n_routed, 0);
    hello(sc, "alice", NULL);
    CU_ASSERT_EQUAL(last_sent(sc)->type, RC_T_WELCOME);
    CU_ASSERT_EQUAL(last_sent(sc)->sid, 42);
    CU_ASSERT_EQUAL(last_sent(sc)->max_frame, MAX_FRAME);
    CU_ASSERT(sc->s.authed && !sc->s.admin);
    hello(sc, "alice", NULL);
    assert_err(sc, RC_E_FORBIDDEN, 1);
    feed(sc, (rc_msg){ .type = RC_T_PING }, 9);
    CU_ASSERT_EQUAL(last_sent(sc)->type, RC_T_PONG);
    CU_ASSERT_EQUAL(last_sent(sc)->rid, 9);
    CU_ASSERT_EQUAL(rc_stat_get(&sc->stats.errors[RC_E_NOT_AUTHENTICATED]), 1);
    CU_ASSERT_EQUAL(rc_stat_get(&sc->stats.frames_in[RC_T_HELLO]), 2);
    scene_free(sc);
}

/* The frames before the last: err E_AUTH_FAILED, then bye, then closed. */
static void assert_auth_failed(const scene *sc, uint64_t rid, const char *why)
{
    CU_ASSERT_FATAL(sc->f.n_sent >= 2);
    const rc_msg *e = &sc->f.sent[sc->f.n_sent - 2], *b = &sc->f.sent[sc->f.n_sent - 1];
    CU_ASSERT_EQUAL(e->type, RC_T_ERR);
    CU_ASSERT_EQUAL(e->code, RC_E_AUTH_FAILED);
    CU_ASSERT_EQUAL(e->rid, rid);
    CU_ASSERT_EQUAL(b->type, RC_T_BYE);
    CU_ASSERT(rc_str_eq(b->reason, rc_str_c("auth_failed")));
    CU_ASSERT(sc->f.closed);
    CU_ASSERT(!sc->s.authed);
    if (why)
        CU_ASSERT(e->text.len > 0);
}

static void test_admin_token(void)
{
    scene *sc = scene_new();
    hello(sc, "ops", "wrong");
    assert_auth_failed(sc, 1, NULL);
    CU_ASSERT_EQUAL(rc_stat_get(&sc->stats.auth_failures[RC_AUTH_FAIL_ADMIN_TOKEN]), 1);
    scene_free(sc);
    /* what follows a refused hello in the same read is consumed, not
     * answered (tests/fuzz/regress/session/auth-failed-consumes-the-rest) */
    sc = scene_new();
    rc_buf b;
    rc_buf_init(&b);
    rc_msg bad = { .type = RC_T_HELLO, .has = RC_HAS_TOKEN, .user = rc_str_c("ops"), .token = rc_str_c("wrong") };
    CU_ASSERT_FATAL(rc_encode(&b, &bad) == 0 && rc_encode(&b, &(rc_msg){ .type = RC_T_PING }) == 0);
    CU_ASSERT_EQUAL(rc_session_input(&sc->s, &sc->env, b.data, b.len), b.len);
    CU_ASSERT_EQUAL(last_sent(sc)->type, RC_T_BYE);
    rc_session_frame(&sc->s, &sc->env, b.data + RC_FRAME_HEADER, b.len - RC_FRAME_HEADER); /* nothing more */
    CU_ASSERT_EQUAL(last_sent(sc)->type, RC_T_BYE);
    rc_buf_free(&b);
    scene_free(sc);
    sc = scene_new();
    hello(sc, "ops", TOKEN);
    CU_ASSERT_EQUAL(last_sent(sc)->type, RC_T_WELCOME);
    CU_ASSERT(sc->s.admin);
    scene_free(sc);
}

/* ---- signed tokens (proto/PROTOCOL.md §6.8) ---- */

static scene *scene_auth(void)
{
    scene *sc = scene_new();
    char err[128];
    CU_ASSERT_FATAL(rc_token_keys_parse(&sc->keys, SECRET, err, sizeof(err)) == 0);
    sc->lim.auth = &sc->keys;
    return sc;
}

/* A token for sub, valid [NOW - 1, NOW + ttl), signed with secret. */
static const char *mint(const char *secret, const char *sub, uint64_t ttl, const char *groups)
{
    static char buf[RC_MAX_TOKEN + 1];
    char err[128];
    int n = rc_token_mint((const uint8_t *)secret, strlen(secret), sub, NOW - 1, NOW + ttl, groups, buf,
                          sizeof(buf), err, sizeof(err));
    CU_ASSERT_FATAL(n > 0);
    return buf;
}

static void hello_token(scene *sc, const char *user, const char *token, uint64_t rid)
{
    rc_msg m = { .type = RC_T_HELLO, .has = RC_HAS_TOKEN, .token = rc_str_c(token) };
    if (user)
        m.user = rc_str_c(user);
    feed(sc, m, rid);
}

static void test_token_hello(void)
{
    scene *sc = scene_auth();
    hello(sc, "alice", NULL); /* no token: refused, the session stays open for a hello with one */
    assert_err(sc, RC_E_NOT_AUTHENTICATED, 1);
    CU_ASSERT(!sc->f.closed && !sc->s.authed);
    CU_ASSERT_EQUAL(rc_stat_get(&sc->stats.auth_failures[RC_AUTH_FAIL_NO_TOKEN]), 1);
    hello_token(sc, NULL, mint(SECRET, "alice", 60, NULL), 2); /* user omitted: the token's sub */
    CU_ASSERT_EQUAL(last_sent(sc)->type, RC_T_WELCOME);
    CU_ASSERT(sc->s.authed && !sc->s.admin);
    CU_ASSERT_EQUAL(sc->s.token_exp, NOW + 60);
    feed(sc, (rc_msg){ .type = RC_T_SEND, .g = rc_str_c("any"), .body = rc_str_c("x") }, 3);
    CU_ASSERT_EQUAL(sc->f.n_routed, 1);
    CU_ASSERT_STRING_EQUAL(sc->f.routed_from[0], "alice");
    CU_ASSERT_EQUAL(rc_stat_get(&sc->stats.auth_tokens), 1);
    scene_free(sc);

    sc = scene_auth(); /* user present and equal to sub */
    hello_token(sc, "alice", mint(SECRET, "alice", 60, NULL), 1);
    CU_ASSERT_EQUAL(last_sent(sc)->type, RC_T_WELCOME);
    scene_free(sc);

    sc = scene_auth(); /* a stranger claiming alice with a token of his own */
    hello_token(sc, "alice", mint(SECRET, "mallory", 60, NULL), 4);
    assert_auth_failed(sc, 4, "user");
    CU_ASSERT_EQUAL(rc_stat_get(&sc->stats.auth_failures[RC_AUTH_FAIL_USER_MISMATCH]), 1);
    scene_free(sc);

    sc = scene_auth(); /* a token signed with a secret the server does not have */
    hello_token(sc, "alice", mint(OTHER_SECRET, "alice", 60, NULL), 5);
    assert_auth_failed(sc, 5, "signature");
    CU_ASSERT_EQUAL(rc_stat_get(&sc->stats.auth_failures[RC_TOKEN_SIGNATURE]), 1);
    CU_ASSERT_EQUAL(rc_stat_get(&sc->stats.errors[RC_E_AUTH_FAILED]), 1);
    scene_free(sc);

    sc = scene_auth(); /* an expired one */
    const char *t = mint(SECRET, "alice", 60, NULL);
    sc->f.now_s = NOW + 60;
    hello_token(sc, NULL, t, 6);
    assert_auth_failed(sc, 6, "expired");
    CU_ASSERT_EQUAL(rc_stat_get(&sc->stats.auth_failures[RC_TOKEN_EXPIRED]), 1);
    scene_free(sc);

    sc = scene_auth(); /* the admin token still makes an admin session, with auth_secret set */
    hello(sc, "ops", TOKEN);
    CU_ASSERT_EQUAL(last_sent(sc)->type, RC_T_WELCOME);
    CU_ASSERT(sc->s.admin);
    CU_ASSERT_EQUAL(sc->s.token_exp, 0);
    scene_free(sc);

    sc = scene_new(); /* without auth_secret a hello needs its user */
    feed(sc, (rc_msg){ .type = RC_T_HELLO }, 7);
    assert_err(sc, RC_E_MISSING_FIELD, 7);
    scene_free(sc);
}

static void test_token_groups(void)
{
    scene *sc = scene_auth();
    hello_token(sc, NULL, mint(SECRET, "alice", 60, "lobby,team-*"), 1);
    CU_ASSERT_FATAL(last_sent(sc)->type == RC_T_WELCOME);
    feed(sc, (rc_msg){ .type = RC_T_JOIN, .g = rc_str_c("lobby") }, 2);
    feed(sc, (rc_msg){ .type = RC_T_JOIN, .g = rc_str_c("team-red") }, 3);
    CU_ASSERT_EQUAL(sc->f.n_routed, 2);
    rc_msg outside[] = {
        { .type = RC_T_JOIN, .g = rc_str_c("secret") },
        { .type = RC_T_SEND, .g = rc_str_c("secret"), .body = rc_str_c("x") },
        { .type = RC_T_HIST, .g = rc_str_c("secret") },
        { .type = RC_T_LEAVE, .g = rc_str_c("secret") },
        { .type = RC_T_JOIN, .g = rc_str_c("team") },     /* the prefix is "team-" */
        { .type = RC_T_JOIN, .g = rc_str_c("lobby2") },   /* lobby is not a prefix */
    };
    for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++) {
        feed(sc, outside[i], 10 + i);
        assert_err(sc, RC_E_FORBIDDEN, 10 + i);
    }
    CU_ASSERT_EQUAL(sc->f.n_routed, 2);
    CU_ASSERT(!sc->f.closed);
    CU_ASSERT_EQUAL(sc->s.groups.n, 2); /* a refused join takes no slot */
    feed(sc, (rc_msg){ .type = RC_T_SEND, .g = rc_str_c("team-red"), .body = rc_str_c("x") }, 20);
    CU_ASSERT_EQUAL(sc->f.n_routed, 3); /* the session goes on */
    scene_free(sc);
}

static void refresh(scene *sc, const char *token, uint64_t rid)
{
    feed(sc, (rc_msg){ .type = RC_T_REFRESH, .has = RC_HAS_TOKEN, .token = rc_str_c(token) }, rid);
}

static void test_token_refresh_and_expiry(void)
{
    scene *sc = scene_auth();
    hello_token(sc, NULL, mint(SECRET, "alice", 10, "a"), 1);
    CU_ASSERT_FATAL(last_sent(sc)->type == RC_T_WELCOME);
    refresh(sc, mint(SECRET, "alice", 100, "a,b"), 2);
    CU_ASSERT_EQUAL(last_sent(sc)->type, RC_T_REFRESHED);
    CU_ASSERT_EQUAL(last_sent(sc)->rid, 2);
    CU_ASSERT_EQUAL(last_sent(sc)->exp, NOW + 100);
    CU_ASSERT_EQUAL(sc->s.token_exp, NOW + 100);
    feed(sc, (rc_msg){ .type = RC_T_JOIN, .g = rc_str_c("b") }, 3); /* the new token's groups apply */
    CU_ASSERT_EQUAL(sc->f.n_routed, 1);
    CU_ASSERT_EQUAL(rc_stat_get(&sc->stats.auth_refreshes), 1);
    sc->f.now_s = NOW + 99;
    CU_ASSERT(!rc_session_token_expired(&sc->s, sc->f.now_s));
    sc->f.now_s = NOW + 100; /* exp passed: the next request finds it */
    CU_ASSERT(rc_session_token_expired(&sc->s, sc->f.now_s));
    feed(sc, (rc_msg){ .type = RC_T_PING }, 4);
    CU_ASSERT_EQUAL(last_sent(sc)->type, RC_T_BYE);
    CU_ASSERT(rc_str_eq(last_sent(sc)->reason, rc_str_c("token_expired")));
    CU_ASSERT(sc->f.closed);
    CU_ASSERT_EQUAL(rc_stat_get(&sc->stats.token_expired), 1);
    scene_free(sc);

    sc = scene_auth(); /* a refresh for another user ends the session */
    hello_token(sc, NULL, mint(SECRET, "alice", 10, NULL), 1);
    refresh(sc, mint(SECRET, "bob", 100, NULL), 2);
    CU_ASSERT_FATAL(sc->f.n_sent >= 2);
    CU_ASSERT_EQUAL(sc->f.sent[sc->f.n_sent - 2].code, RC_E_AUTH_FAILED);
    CU_ASSERT_EQUAL(last_sent(sc)->type, RC_T_BYE);
    CU_ASSERT(sc->f.closed);
    scene_free(sc);

    sc = scene_auth(); /* a bad refresh token too */
    hello_token(sc, NULL, mint(SECRET, "alice", 10, NULL), 1);
    refresh(sc, "not.a.token", 2);
    CU_ASSERT_EQUAL(sc->f.sent[sc->f.n_sent - 2].code, RC_E_AUTH_FAILED);
    CU_ASSERT(sc->f.closed);
    CU_ASSERT_EQUAL(rc_stat_get(&sc->stats.auth_failures[RC_TOKEN_MALFORMED]), 1);
    scene_free(sc);

    sc = scene_new(); /* no token to refresh: refused, the session stays */
    hello(sc, "alice", NULL);
    refresh(sc, mint(SECRET, "alice", 10, NULL), 2);
    assert_err(sc, RC_E_FORBIDDEN, 2);
    CU_ASSERT(!sc->f.closed);
    scene_free(sc);

    sc = scene_auth(); /* before hello, refresh is E_NOT_AUTHENTICATED like any request */
    refresh(sc, mint(SECRET, "alice", 10, NULL), 3);
    assert_err(sc, RC_E_NOT_AUTHENTICATED, 3);
    scene_free(sc);
}

static void test_join_limit_and_routes(void)
{
    scene *sc = scene_new();
    hello(sc, "bob", NULL);
    feed(sc, (rc_msg){ .type = RC_T_JOIN, .g = rc_str_c("a") }, 2);
    feed(sc, (rc_msg){ .type = RC_T_JOIN, .g = rc_str_c("a") }, 3); /* the same group again: no new slot */
    feed(sc, (rc_msg){ .type = RC_T_JOIN, .g = rc_str_c("b") }, 4);
    CU_ASSERT_EQUAL(sc->f.n_routed, 3);
    CU_ASSERT_EQUAL(sc->s.groups.n, MAX_GROUPS);
    int sent = sc->f.n_sent;
    feed(sc, (rc_msg){ .type = RC_T_JOIN, .g = rc_str_c("c") }, 5);
    assert_err(sc, RC_E_LIMIT, 5);
    CU_ASSERT_EQUAL(sc->f.n_sent, sent + 1);
    CU_ASSERT_EQUAL(sc->f.n_routed, 3);
    feed(sc, (rc_msg){ .type = RC_T_LEAVE, .g = rc_str_c("a") }, 6);
    CU_ASSERT_EQUAL(sc->s.groups.n, 1);
    feed(sc, (rc_msg){ .type = RC_T_JOIN, .g = rc_str_c("c") }, 7);
    CU_ASSERT_EQUAL(sc->s.groups.n, 2);
    feed(sc, (rc_msg){ .type = RC_T_SEND, .g = rc_str_c("c"), .body = rc_str_c("hi"), .body_is_str = true }, 8);
    CU_ASSERT_EQUAL(sc->f.routed[sc->f.n_routed - 1], RC_JOB_SEND);
    CU_ASSERT_STRING_EQUAL(sc->f.routed_from[sc->f.n_routed - 1], "bob");
    rc_session_forget(&sc->s, rc_str_c("c"));
    CU_ASSERT_EQUAL(sc->s.groups.n, 1);
    scene_free(sc);
}

/* read goes to its group's shard; inbox names no group and goes by the
 * user's name (src/ARCHITECTURE.md §3.11); marked and receipt are the
 * server's. */
static void test_read_and_inbox_routes(void)
{
    scene *sc = scene_new();
    hello(sc, "bob", NULL);
    feed(sc, (rc_msg){ .type = RC_T_READ, .g = rc_str_c("a"), .seq = 3, .has = RC_HAS_SEQ }, 2);
    feed(sc, (rc_msg){ .type = RC_T_INBOX, .limit = 5, .has = RC_HAS_LIMIT }, 3);
    CU_ASSERT_EQUAL_FATAL(sc->f.n_routed, 2);
    CU_ASSERT_EQUAL(sc->f.routed[0], RC_JOB_READ);
    CU_ASSERT_STRING_EQUAL(sc->f.routed_g[0], "a");
    CU_ASSERT_EQUAL(sc->f.routed[1], RC_JOB_INBOX);
    CU_ASSERT_STRING_EQUAL(sc->f.routed_g[1], "bob");
    CU_ASSERT_STRING_EQUAL(sc->f.routed_from[1], "bob");
    feed(sc, (rc_msg){ .type = RC_T_MARKED, .g = rc_str_c("a"), .seq = 3 }, 4);
    assert_err(sc, RC_E_UNKNOWN_TYPE, 4);
    feed(sc, (rc_msg){ .type = RC_T_RECEIPT, .g = rc_str_c("a"), .user = rc_str_c("x"), .seq = 3 }, 5);
    assert_err(sc, RC_E_UNKNOWN_TYPE, 5);
    CU_ASSERT_EQUAL(sc->f.n_routed, 2);
    scene_free(sc);
}

static void test_server_types_and_bad_maps(void)
{
    scene *sc = scene_new();
    hello(sc, "carol", NULL);
    feed(sc, (rc_msg){ .type = RC_T_ACK, .g = rc_str_c("g"), .seq = 1, .ts = 1 }, 3);
    assert_err(sc, RC_E_UNKNOWN_TYPE, 3);
    /* a map without its required key: E_MISSING_FIELD, rid kept, the session goes on */
    static const uint8_t no_g[] = { 0, 0, 0, 13, 0x82, 0xa1, 't', 0xa4, 'j', 'o', 'i', 'n', 0xa3, 'r', 'i', 'd', 0x05 };
    CU_ASSERT_EQUAL(rc_session_input(&sc->s, &sc->env, no_g, sizeof(no_g)), sizeof(no_g));
    assert_err(sc, RC_E_MISSING_FIELD, 5);
    CU_ASSERT(!sc->f.closed);
    feed(sc, (rc_msg){ .type = RC_T_PING }, 6);
    CU_ASSERT_EQUAL(last_sent(sc)->type, RC_T_PONG);
    /* pong answers a server ping: accepted, and nothing is said back */
    int sent = sc->f.n_sent;
    feed(sc, (rc_msg){ .type = RC_T_PONG }, 7);
    CU_ASSERT_EQUAL(sc->f.n_sent, sent);
    scene_free(sc);
}

static void test_framing(void)
{
    scene *sc = scene_new();
    rc_buf b;
    rc_buf_init(&b);
    rc_msg h = { .type = RC_T_HELLO, .user = rc_str_c("dave"), .has = RC_HAS_RID, .rid = 1 };
    rc_msg p = { .type = RC_T_PING, .has = RC_HAS_RID, .rid = 2 };
    CU_ASSERT_FATAL(rc_encode(&b, &h) == 0 && rc_encode(&b, &p) == 0 && rc_encode(&b, &p) == 0);
    /* byte by byte: nothing is consumed until a frame is whole */
    size_t used = 0;
    for (size_t end = 1; end <= b.len; end++)
        used += rc_session_input(&sc->s, &sc->env, b.data + used, end - used);
    CU_ASSERT_EQUAL(used, b.len);
    CU_ASSERT_EQUAL(sc->f.n_sent, 3); /* welcome, pong, pong: pipelined frames answered in order */
    CU_ASSERT_EQUAL(sc->f.sent[0].type, RC_T_WELCOME);
    CU_ASSERT_EQUAL(sc->f.sent[2].type, RC_T_PONG);
    /* a partial tail is left to the caller: a fresh session given all but
     * the last byte handles the first two frames only */
    size_t f1 = RC_FRAME_HEADER + rc_frame_len(b.data), f2 = RC_FRAME_HEADER + rc_frame_len(b.data + f1);
    scene *fresh = scene_new();
    CU_ASSERT_EQUAL(rc_session_input(&fresh->s, &fresh->env, b.data, b.len - 1), f1 + f2);
    CU_ASSERT_EQUAL(fresh->f.n_sent, 2);
    scene_free(fresh);
    rc_buf_free(&b);
    scene_free(sc);
}

static void test_bad_lengths_close(void)
{
    static const uint8_t zero[] = { 0, 0, 0, 0, 0x90 };
    static const uint8_t huge[] = { 0, 0, 0x10, 0x00 }; /* 4096 > MAX_FRAME */
    const uint8_t *cases[] = { zero, huge };
    size_t lens[] = { sizeof(zero), sizeof(huge) };
    rc_err codes[] = { RC_E_BAD_FRAME, RC_E_FRAME_TOO_LARGE };
    for (int i = 0; i < 2; i++) {
        scene *sc = scene_new();
        CU_ASSERT_EQUAL(rc_session_input(&sc->s, &sc->env, cases[i], lens[i]), lens[i]); /* all consumed */
        CU_ASSERT(sc->f.closed);
        CU_ASSERT_EQUAL(last_sent(sc)->type, RC_T_ERR);
        CU_ASSERT_EQUAL(last_sent(sc)->code, codes[i]);
        scene_free(sc);
    }
}

static void test_holding_stops_input(void)
{
    scene *sc = scene_new();
    hello(sc, "erin", NULL);
    rc_buf b;
    rc_buf_init(&b);
    rc_msg p = { .type = RC_T_PING, .has = RC_HAS_RID, .rid = 2 };
    for (int i = 0; i < 5; i++)
        CU_ASSERT_FATAL(rc_encode(&b, &p) == 0);
    size_t one = b.len / 5;
    sc->f.reads_left = 2; /* held after two frames */
    int before = sc->f.n_sent;
    CU_ASSERT_EQUAL(rc_session_input(&sc->s, &sc->env, b.data, b.len), 2 * one);
    CU_ASSERT_EQUAL(sc->f.n_sent, before + 2);
    sc->f.reads_left = -1; /* resumed: the rest, from where it stopped */
    CU_ASSERT_EQUAL(rc_session_input(&sc->s, &sc->env, b.data + 2 * one, b.len - 2 * one), 3 * one);
    CU_ASSERT_EQUAL(sc->f.n_sent, before + 5);
    rc_buf_free(&b);
    scene_free(sc);
}

static void test_shutting_down(void)
{
    scene *sc = scene_new();
    hello(sc, "frank", NULL);
    sc->f.stopping = true;
    feed(sc, (rc_msg){ .type = RC_T_SEND, .g = rc_str_c("g"), .body = rc_str_c("x"), .body_is_str = true }, 4);
    assert_err(sc, RC_E_SHUTTING_DOWN, 4);
    CU_ASSERT_EQUAL(sc->f.n_routed, 0);
    scene_free(sc);
}

static void test_replay_rules(void)
{
    scene *sc = scene_new();
    hello(sc, "nobody", NULL);
    rc_msg letter = { .type = RC_T_REPLAY, .reason = rc_str_c("overloaded"), .g = rc_str_c("g"),
                      .from = rc_str_c("alice"), .body = rc_str_c("lost"), .body_is_str = true, .ts = 5 };
    feed(sc, letter, 2);
    assert_err(sc, RC_E_FORBIDDEN, 2);
    CU_ASSERT_EQUAL(rc_stat_get(&sc->stats.replay_refused), 1);
    scene_free(sc);

    sc = scene_new();
    hello(sc, "ops", TOKEN);
    /* never sequenced: sent as from its sender, with a derived mid */
    feed(sc, letter, 3);
    CU_ASSERT_EQUAL(sc->f.n_routed, 1);
    CU_ASSERT_EQUAL(sc->f.routed[0], RC_JOB_SEND);
    CU_ASSERT_STRING_EQUAL(sc->f.routed_from[0], "alice");
    CU_ASSERT(strncmp(sc->f.routed_mid[0], "dl-", 3) == 0);
    /* the same letter again derives the same mid (the dedup window acks it dup) */
    feed(sc, letter, 4);
    CU_ASSERT_STRING_EQUAL(sc->f.routed_mid[1], sc->f.routed_mid[0]);
    /* a sequenced letter for one recipient: redelivered */
    rc_msg slow = letter;
    slow.reason = rc_str_c("slow_consumer");
    slow.seq = 9;
    slow.to = rc_str_c("bob");
    slow.has = RC_HAS_SEQ | RC_HAS_TO;
    feed(sc, slow, 5);
    CU_ASSERT_EQUAL(sc->f.routed[2], RC_JOB_REDELIVER);
    /* a sequenced letter of another reason: history has it, acked dup */
    rc_msg poison = letter;
    poison.reason = rc_str_c("poison");
    poison.seq = 3;
    poison.has = RC_HAS_SEQ;
    feed(sc, poison, 6);
    CU_ASSERT_EQUAL(sc->f.n_routed, 3);
    CU_ASSERT_EQUAL(last_sent(sc)->type, RC_T_ACK);
    CU_ASSERT(last_sent(sc)->dup);
    /* an unknown reason */
    rc_msg odd = letter;
    odd.reason = rc_str_c("bored");
    feed(sc, odd, 7);
    assert_err(sc, RC_E_BAD_FIELD, 7);
    CU_ASSERT_EQUAL(rc_stat_get(&sc->stats.replay_send), 2);
    CU_ASSERT_EQUAL(rc_stat_get(&sc->stats.replay_redeliver), 1);
    CU_ASSERT_EQUAL(rc_stat_get(&sc->stats.replay_history), 1);
    CU_ASSERT_EQUAL(rc_stat_get(&sc->stats.replay_refused), 1);
    scene_free(sc);
}

/* publish (proto/PROTOCOL.md §6.10): admin sessions only; routed as a send
 * of `from`, with its mid, and not counted against conn_rate. */
static void test_publish_rules(void)
{
    scene *sc = scene_new();
    hello(sc, "nobody", NULL);
    rc_msg pub = { .type = RC_T_PUBLISH, .g = rc_str_c("g"), .from = rc_str_c("backend"), .body = rc_str_c("hi"),
                   .body_is_str = true, .mid = rc_str_c("p1"), .has = RC_HAS_MID };
    feed(sc, pub, 2);
    assert_err(sc, RC_E_FORBIDDEN, 2);
    CU_ASSERT_EQUAL(sc->f.n_routed, 0);
    scene_free(sc);

    sc = scene_new();
    sc->lim.conn_rate = 1;
    sc->lim.conn_burst = 1;
    hello(sc, "ringcast.api", TOKEN);
    for (int i = 0; i < 3; i++)
        feed(sc, pub, 3 + (uint64_t)i);
    CU_ASSERT_EQUAL(sc->f.n_routed, 3);
    CU_ASSERT_EQUAL(sc->f.routed[0], RC_JOB_SEND);
    CU_ASSERT_STRING_EQUAL(sc->f.routed_from[0], "backend");
    CU_ASSERT_STRING_EQUAL(sc->f.routed_mid[0], "p1");
    scene_free(sc);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("session", NULL, NULL);
    if (!s || !CU_add_test(s, "hello first, once", test_hello_first) ||
        !CU_add_test(s, "admin token", test_admin_token) ||
        !CU_add_test(s, "token: hello", test_token_hello) ||
        !CU_add_test(s, "token: groups", test_token_groups) ||
        !CU_add_test(s, "token: refresh and expiry", test_token_refresh_and_expiry) ||
        !CU_add_test(s, "join limit, leave, routes", test_join_limit_and_routes) ||
        !CU_add_test(s, "server-only types and bad maps", test_server_types_and_bad_maps) ||
        !CU_add_test(s, "framing: split and pipelined", test_framing) ||
        !CU_add_test(s, "zero and oversize lengths close", test_bad_lengths_close) ||
        !CU_add_test(s, "a held session stops reading", test_holding_stops_input) ||
        !CU_add_test(s, "shutting down", test_shutting_down) ||
        !CU_add_test(s, "replay rules", test_replay_rules) ||
        !CU_add_test(s, "publish rules", test_publish_rules) ||
        !CU_add_test(s, "read and inbox routes", test_read_and_inbox_routes)) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
