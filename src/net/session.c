/*
 * The protocol session (session.h): framing, dispatch, the io thread's own
 * replies. Every effect goes through rc_session_out.
 */
#include "net/session.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/chash.h"
#include "core/clock.h"
#include "core/letters.h"
#include "core/stats.h"

void rc_session_init(rc_session *s, uint64_t sid)
{
    memset(s, 0, sizeof(*s));
    s->sid = sid;
    s->allowed.all = true;
    rc_strmap_init(&s->groups);
}

void rc_session_free(rc_session *s)
{
    rc_strmap_free(&s->groups);
    rc_token_groups_free(&s->allowed);
}

const char *rc_auth_fail_name(int reason)
{
    switch (reason) {
    case RC_AUTH_FAIL_USER_MISMATCH: return "user_mismatch";
    case RC_AUTH_FAIL_NO_TOKEN: return "no_token";
    case RC_AUTH_FAIL_ADMIN_TOKEN: return "admin_token";
    default: return rc_token_result_name((rc_token_result)reason);
    }
}

/* ---- replies ---- */

void rc_session_reply(const rc_session_env *env, const rc_msg *m)
{
    env->scratch->len = 0;
    if (rc_encode(env->scratch, m) == 0)
        env->out->send(env->out->self, env->scratch->data, env->scratch->len);
}

void rc_session_error(const rc_session_env *env, const rc_msg *req, rc_err code, const char *text)
{
    bool has_rid = req && (req->has & RC_HAS_RID);
    RC_STAT_ADD(env->stats->errors[code], 1);
    env->scratch->len = 0;
    if (rc_encode_err(env->scratch, has_rid, has_rid ? req->rid : 0, code, text) == 0)
        env->out->send(env->out->self, env->scratch->data, env->scratch->len);
}

/* ---- the session's groups ---- */

/* A hash set by name, so that a session in 20,000 groups joins and leaves
 * in constant time; names are compared by length and bytes. */
static bool group_has(const rc_session *s, rc_str g)
{
    return rc_strmap_get(&s->groups, g.ptr, g.len) != NULL;
}

void rc_session_forget(rc_session *s, rc_str g)
{
    rc_strmap_del(&s->groups, g.ptr, g.len);
}

/* ---- requests ---- */

static void route(rc_session *s, const rc_session_env *env, const rc_msg *m, rc_job_kind kind)
{
    env->out->route(env->out->self, kind, (rc_str){ s->user, s->user_len }, m);
}

static uint64_t wall_s(const rc_session_env *env)
{
    return env->out->wall_s ? env->out->wall_s(env->out->self) : rc_clock_wall_ms() / 1000u;
}

static bool checks_tokens(const rc_session_env *env)
{
    return env->lim->auth && env->lim->auth->n > 0;
}

/* The admin token, compared in constant time (its length aside). */
static bool is_admin_token(const rc_session_env *env, rc_str token)
{
    const char *admin = env->lim->admin_token ? env->lim->admin_token : "";
    size_t n = strlen(admin);
    return n > 0 && token.len == n && CRYPTO_memcmp(token.ptr, admin, n) == 0;
}

/* E_AUTH_FAILED, then `bye` and close (proto/PROTOCOL.md §6.8): a client
 * that presents a bad credential is not given another try on the same
 * connection. */
static void session_bye(rc_session *s, const rc_session_env *env, const char *reason)
{
    rc_msg bye = { .type = RC_T_BYE, .reason = rc_str_c(reason) };
    rc_session_reply(env, &bye);
    s->closed = true;
    env->out->close(env->out->self);
}

static void auth_failed(rc_session *s, const rc_session_env *env, const rc_msg *m, int reason, const char *text)
{
    RC_STAT_ADD(env->stats->auth_failures[reason], 1);
    rc_session_error(env, m, RC_E_AUTH_FAILED, text);
    session_bye(s, env, "auth_failed");
}

static const char *token_refusal(rc_token_result r)
{
    switch (r) {
    case RC_TOKEN_TOO_LONG: return "the token is longer than the protocol allows";
    case RC_TOKEN_ALGORITHM: return "the token must be signed HS256 (alg none and other algorithms are refused)";
    case RC_TOKEN_SIGNATURE: return "the token's signature does not match any of the server's secrets";
    case RC_TOKEN_CLAIMS: return "the token needs sub (1..64 bytes), exp, and well-formed nbf, iat, groups";
    case RC_TOKEN_EXPIRED: return "the token has expired; get a new one";
    case RC_TOKEN_NOT_YET_VALID: return "the token is not valid yet (nbf or iat in the future)";
    default: return "the token is not a JWT (three base64url parts of JSON objects)";
    }
}

/* Verifies m->token; on failure answers and closes, returning false. */
static bool verify_token(rc_session *s, const rc_session_env *env, const rc_msg *m, rc_token_claims *claims)
{
    rc_token_result r = rc_token_verify(env->lim->auth, m->token.ptr, m->token.len, wall_s(env), claims);
    if (r == RC_TOKEN_OK)
        return true;
    auth_failed(s, env, m, r, token_refusal(r));
    return false;
}

static void set_user(rc_session *s, rc_str user)
{
    memcpy(s->user, user.ptr, user.len);
    s->user_len = (uint8_t)user.len;
}

/* The session's user is set: it is authenticated now. */
static void welcome(rc_session *s, const rc_session_env *env, const rc_msg *m)
{
    s->no_echo = (m->has & RC_HAS_ECHO) && !m->echo;
    s->authed = true;
    rc_msg r = { .type = RC_T_WELCOME, .has = m->has & RC_HAS_RID, .rid = m->rid, .sid = s->sid,
                 .srv = rc_str_c(RC_SESSION_SERVER_NAME), .max_frame = env->lim->max_frame };
    rc_session_reply(env, &r);
}

/* Verifies m->token and makes it the session's: its exp and groups, and,
 * before welcome, its sub as the user. The sub must equal want when want
 * is not empty; a token that fails has been answered and the session
 * closed (false). */
static bool take_token(rc_session *s, const rc_session_env *env, const rc_msg *m, rc_str want, const char *mismatch)
{
    rc_token_claims claims;
    if (!verify_token(s, env, m, &claims))
        return false;
    rc_str sub = { claims.sub, claims.sub_len };
    if (want.len && !rc_str_eq(want, sub)) {
        rc_token_claims_free(&claims);
        auth_failed(s, env, m, RC_AUTH_FAIL_USER_MISMATCH, mismatch);
        return false;
    }
    if (!s->authed)
        set_user(s, sub);
    s->token_exp = claims.exp;
    rc_token_groups_move(&s->allowed, &claims.groups);
    return true;
}

/* hello with a token while auth_secret is set: the token names the user. */
static void hello_with_token(rc_session *s, const rc_session_env *env, const rc_msg *m)
{
    if (!take_token(s, env, m, m->user, "user differs from the token's sub"))
        return;
    RC_STAT_ADD(env->stats->auth_tokens, 1);
    welcome(s, env, m);
}

/* Order: the admin token (it works with and without auth_secret), then a
 * signed token when auth_secret is set, else the trusted user name. */
static void on_hello(rc_session *s, const rc_session_env *env, const rc_msg *m)
{
    if (s->authed) {
        rc_session_error(env, m, RC_E_FORBIDDEN, "hello was already accepted on this connection");
        return;
    }
    bool has_token = m->has & RC_HAS_TOKEN;
    if (has_token && is_admin_token(env, m->token)) {
        if (!m->user.len) {
            rc_session_error(env, m, RC_E_MISSING_FIELD, "an admin hello names its user");
            return;
        }
        s->admin = true;
        set_user(s, m->user);
        welcome(s, env, m);
        return;
    }
    if (checks_tokens(env)) {
        if (!has_token) {
            RC_STAT_ADD(env->stats->auth_failures[RC_AUTH_FAIL_NO_TOKEN], 1);
            rc_session_error(env, m, RC_E_NOT_AUTHENTICATED, "this server needs a token in hello");
            return;
        }
        hello_with_token(s, env, m);
        return;
    }
    if (has_token && env->lim->admin_token && env->lim->admin_token[0]) {
        auth_failed(s, env, m, RC_AUTH_FAIL_ADMIN_TOKEN, "the token is not valid for this server");
        return;
    }
    if (!m->user.len) {
        rc_session_error(env, m, RC_E_MISSING_FIELD, "hello needs user (this server does not read tokens)");
        return;
    }
    set_user(s, m->user);
    welcome(s, env, m);
}

/* refresh: a new token for the same user replaces the session's. */
static void on_refresh(rc_session *s, const rc_session_env *env, const rc_msg *m)
{
    if (!checks_tokens(env) || !s->token_exp) {
        rc_session_error(env, m, RC_E_FORBIDDEN, "this session has no token to refresh");
        return;
    }
    if (!take_token(s, env, m, (rc_str){ s->user, s->user_len }, "a refresh token must name the session's user"))
        return;
    RC_STAT_ADD(env->stats->auth_refreshes, 1);
    rc_msg r = { .type = RC_T_REFRESHED, .has = m->has & RC_HAS_RID, .rid = m->rid, .exp = s->token_exp };
    rc_session_reply(env, &r);
}

bool rc_session_token_expired(const rc_session *s, uint64_t now_s)
{
    return s->token_exp && now_s >= s->token_exp;
}

void rc_session_expire(rc_session *s, const rc_session_env *env)
{
    RC_STAT_ADD(env->stats->token_expired, 1);
    s->token_exp = 0; /* said once */
    session_bye(s, env, "token_expired");
}

/* Requests that name a group act on it only when the token allows it. */
static bool names_group(rc_type t)
{
    return t == RC_T_JOIN || t == RC_T_LEAVE || t == RC_T_SEND || t == RC_T_HIST;
}

static void on_join(rc_session *s, const rc_session_env *env, const rc_msg *m)
{
    if (!group_has(s, m->g) && s->groups.n >= env->lim->max_groups) {
        rc_session_error(env, m, RC_E_LIMIT, "this session has joined max_groups_per_session groups; leave one first");
        return;
    }
    if (rc_strmap_put(&s->groups, m->g.ptr, m->g.len, 1) != 0) {
        rc_session_error(env, m, RC_E_INTERNAL, "out of memory joining; try again later");
        return;
    }
    route(s, env, m, RC_JOB_JOIN);
}

/* inbox names no group: the job carries the user as its group id, so the
 * user's inbox requests always go to one shard, which answers them from
 * storage (src/ARCHITECTURE.md §3.11). */
static void on_inbox(rc_session *s, const rc_session_env *env, const rc_msg *m)
{
    rc_msg q = *m;
    q.g = (rc_str){ s->user, s->user_len };
    route(s, env, &q, RC_JOB_INBOX);
}

/* The letter reason a replay names, or -1 when it names none. */
static int replay_reason(const rc_msg *m)
{
    for (int r = 0; r < RC_LETTER_REASONS; r++)
        if (rc_str_eq(m->reason, rc_str_c(rc_letter_reason_name((rc_letter_reason)r))))
            return r;
    return -1;
}

/* A letter for one recipient of a sequenced message: redelivered to it. */
static bool replay_redelivers(int reason, const rc_msg *m)
{
    return (reason == RC_LETTER_SLOW_CONSUMER || reason == RC_LETTER_SHUTDOWN) && (m->has & RC_HAS_SEQ) &&
           (m->has & RC_HAS_TO);
}

/* A letter that was never sequenced is sent now as from its sender, with
 * its mid or, without one, a mid derived from the letter: the dedup window
 * makes a second replay an ack with dup: true. */
static void replay_send(const rc_session_env *env, const rc_msg *m)
{
    rc_msg send = *m;
    char mid[RC_MAX_MID];
    if (!(m->has & RC_HAS_MID)) {
        uint64_t h = rc_hash64(m->body.ptr, m->body.len) ^ (m->ts * 0x9e3779b97f4a7c15ull);
        snprintf(mid, sizeof(mid), "dl-%016llx", (unsigned long long)h);
        send.mid = rc_str_c(mid);
        send.has |= RC_HAS_MID;
    }
    env->out->route(env->out->self, RC_JOB_SEND, m->from, &send);
}

/* A dead letter brought back by ringcast-replay (proto/PROTOCOL.md §9,
 * src/ARCHITECTURE.md §7):
 *  - slow_consumer (or shutdown of a queued delivery) with seq and `to`:
 *    one recipient missed a sequenced message. It goes to the group's shard
 *    (RC_JOB_REDELIVER), which sends it towards every subscriber; only a
 *    connection of `to` that still owes that (g, seq) receives it, so
 *    replaying twice delivers once. A recipient not online now finds it in
 *    history (join with since). The shard acks; dup: true when the group
 *    has nobody online.
 *  - any other letter with a seq (or a slow_consumer letter without one):
 *    history covers it; acknowledged with dup: true, nothing sent.
 *  - a letter without seq (overloaded, expired, poison, ...) was never
 *    sequenced: sent now as from its original sender (replay_send). */
static void on_replay(rc_session *s, const rc_session_env *env, const rc_msg *m)
{
    if (!s->admin) {
        RC_STAT_ADD(env->stats->replay_refused, 1);
        rc_session_error(env, m, RC_E_FORBIDDEN, "replay is for admin sessions only (hello with the admin token)");
        return;
    }
    int reason = replay_reason(m);
    if (reason < 0) {
        RC_STAT_ADD(env->stats->replay_refused, 1);
        rc_session_error(env, m, RC_E_BAD_FIELD, "reason must be slow_consumer, overloaded, expired, shutdown or poison");
        return;
    }
    if (replay_redelivers(reason, m)) {
        RC_STAT_ADD(env->stats->replay_redeliver, 1);
        env->out->route(env->out->self, RC_JOB_REDELIVER, m->from, m);
    } else if (reason == RC_LETTER_SLOW_CONSUMER || (m->has & RC_HAS_SEQ)) {
        RC_STAT_ADD(env->stats->replay_history, 1);
        rc_msg ack = { .type = RC_T_ACK, .has = (m->has & RC_HAS_RID) | RC_HAS_DUP, .rid = m->rid, .g = m->g,
                       .seq = m->seq, .ts = m->ts, .dup = true };
        rc_session_reply(env, &ack);
    } else {
        RC_STAT_ADD(env->stats->replay_send, 1);
        replay_send(env, m);
    }
}

/* publish (proto/PROTOCOL.md §6.10): the Server API's session sends as
 * `from`, sequenced as that user's send; membership is not asked. Not
 * counted against conn_rate: that one connection speaks for every user the
 * backend publishes as; group_rate still applies at the shard. */
static void on_publish(rc_session *s, const rc_session_env *env, const rc_msg *m)
{
    if (!s->admin) {
        rc_session_error(env, m, RC_E_FORBIDDEN, "publish is for admin sessions only (hello with the admin token)");
        return;
    }
    env->out->route(env->out->self, RC_JOB_SEND, m->from, m);
}

static void handle_request(rc_session *s, const rc_session_env *env, const rc_msg *m)
{
    if (m->type == RC_T_PONG)
        return; /* the answer to a server ping: arriving was all it had to do */
    if (!s->authed && m->type != RC_T_HELLO) {
        rc_session_error(env, m, RC_E_NOT_AUTHENTICATED, "send hello first");
        return;
    }
    if (env->out->stopping(env->out->self)) {
        rc_session_error(env, m, RC_E_SHUTTING_DOWN, "the server is shutting down; reconnect later");
        return;
    }
    if (s->token_exp && rc_session_token_expired(s, wall_s(env))) { /* the clock only for a token that expires */
        rc_session_expire(s, env);
        return;
    }
    if (names_group(m->type) && !rc_token_group_allowed(&s->allowed, m->g)) {
        rc_session_error(env, m, RC_E_FORBIDDEN, "the token's groups claim does not allow this group");
        return;
    }
    switch (m->type) {
    case RC_T_HELLO: on_hello(s, env, m); break;
    case RC_T_PING: {
        rc_msg r = { .type = RC_T_PONG, .has = m->has & RC_HAS_RID, .rid = m->rid };
        rc_session_reply(env, &r);
        break;
    }
    case RC_T_JOIN: on_join(s, env, m); break;
    case RC_T_LEAVE:
        rc_session_forget(s, m->g);
        route(s, env, m, RC_JOB_LEAVE);
        break;
    case RC_T_SEND:
        /* The clock only when there is a limit: a send is the hot path. */
        if (env->lim->conn_rate &&
            !rc_bucket_take(&s->sends, env->lim->conn_rate, env->lim->conn_burst, rc_clock_mono_ns())) {
            RC_STAT_ADD(env->stats->rate_limited, 1);
            rc_session_error(env, m, RC_E_RATE_LIMITED, "over conn_rate sends per second on this connection; slow down");
            break;
        }
        route(s, env, m, RC_JOB_SEND);
        break;
    case RC_T_HIST: route(s, env, m, RC_JOB_HIST); break;
    case RC_T_PRESENCE: route(s, env, m, RC_JOB_PRESENCE); break;
    case RC_T_TYPING: route(s, env, m, RC_JOB_TYPING); break;
    case RC_T_READ: route(s, env, m, RC_JOB_READ); break;
    case RC_T_INBOX: on_inbox(s, env, m); break;
    case RC_T_REPLAY: on_replay(s, env, m); break;
    case RC_T_REFRESH: on_refresh(s, env, m); break;
    case RC_T_PUBLISH: on_publish(s, env, m); break;
    default:
        break; /* rc_session_frame answered server-only types already */
    }
}

/* Types a client may send; the others are server -> client only. ping
 * and pong go both ways: the server pings a silent connection. */
static bool is_request(rc_type t)
{
    return t == RC_T_HELLO || t == RC_T_JOIN || t == RC_T_LEAVE || t == RC_T_SEND || t == RC_T_HIST ||
           t == RC_T_PING || t == RC_T_PONG || t == RC_T_REPLAY || t == RC_T_PRESENCE || t == RC_T_TYPING ||
           t == RC_T_REFRESH || t == RC_T_PUBLISH || t == RC_T_READ || t == RC_T_INBOX;
}

void rc_session_frame(rc_session *s, const rc_session_env *env, const uint8_t *p, size_t len)
{
    if (s->closed)
        return;
    rc_msg m;
    const char *why = NULL;
    rc_err e = rc_decode(env->dec, p, len, &m, &why);
    RC_STAT_ADD(env->stats->frames_in[m.type], 1);
    if (m.type != RC_T_NONE && !is_request(m.type)) {
        rc_session_error(env, &m, RC_E_UNKNOWN_TYPE, "this type is sent by the server, not by clients");
        return;
    }
    if (e != RC_OK) {
        rc_session_error(env, &m, e, why);
        return;
    }
    handle_request(s, env, &m);
}

size_t rc_session_input(rc_session *s, const rc_session_env *env, const uint8_t *p, size_t n)
{
    size_t off = 0;
    while (n - off >= RC_FRAME_HEADER && env->out->reading(env->out->self)) {
        uint32_t len = rc_frame_len(p + off);
        rc_err e = rc_frame_check_len(len, env->lim->max_frame);
        if (e != RC_OK) {
            rc_session_error(env, NULL, e,
                             e == RC_E_BAD_FRAME ? "a frame length of 0 is invalid; closing"
                                                 : "the frame is longer than max_frame; closing");
            env->out->close(env->out->self);
            return n;
        }
        if (n - off - RC_FRAME_HEADER < len)
            break;
        rc_session_frame(s, env, p + off + RC_FRAME_HEADER, len);
        off += RC_FRAME_HEADER + len;
        if (s->closed)
            return n;
    }
    return off;
}
