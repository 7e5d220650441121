/*
 * The protocol session (session.h): framing, dispatch, the io thread's own
 * replies. Every effect goes through rc_session_out.
 */
#include "net/session.h"

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
    rc_strmap_init(&s->groups);
}

void rc_session_free(rc_session *s)
{
    rc_strmap_free(&s->groups);
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

static void on_hello(rc_session *s, const rc_session_env *env, const rc_msg *m)
{
    if (s->authed) {
        rc_session_error(env, m, RC_E_FORBIDDEN, "hello was already accepted on this connection");
        return;
    }
    const char *admin = env->lim->admin_token ? env->lim->admin_token : "";
    if ((m->has & RC_HAS_TOKEN) && admin[0]) {
        if (!rc_str_eq(m->token, rc_str_c(admin))) {
            rc_session_error(env, m, RC_E_AUTH_FAILED, "the token is not valid for this server");
            return;
        }
        s->admin = true;
    }
    memcpy(s->user, m->user.ptr, m->user.len);
    s->user_len = (uint8_t)m->user.len;
    s->no_echo = (m->has & RC_HAS_ECHO) && !m->echo;
    s->authed = true;
    rc_msg r = { .type = RC_T_WELCOME, .has = m->has & RC_HAS_RID, .rid = m->rid, .sid = s->sid,
                 .srv = rc_str_c(RC_SESSION_SERVER_NAME), .max_frame = env->lim->max_frame };
    rc_session_reply(env, &r);
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
        if (!rc_bucket_take(&s->sends, env->lim->conn_rate, env->lim->conn_burst, rc_clock_mono_ns())) {
            RC_STAT_ADD(env->stats->rate_limited, 1);
            rc_session_error(env, m, RC_E_RATE_LIMITED, "over conn_rate sends per second on this connection; slow down");
            break;
        }
        route(s, env, m, RC_JOB_SEND);
        break;
    case RC_T_HIST: route(s, env, m, RC_JOB_HIST); break;
    case RC_T_PRESENCE: route(s, env, m, RC_JOB_PRESENCE); break;
    case RC_T_TYPING: route(s, env, m, RC_JOB_TYPING); break;
    case RC_T_REPLAY: on_replay(s, env, m); break;
    default:
        break; /* rc_session_frame answered server-only types already */
    }
}

/* Types a client may send; the others are server -> client only. ping
 * and pong go both ways: the server pings a silent connection. */
static bool is_request(rc_type t)
{
    return t == RC_T_HELLO || t == RC_T_JOIN || t == RC_T_LEAVE || t == RC_T_SEND || t == RC_T_HIST ||
           t == RC_T_PING || t == RC_T_PONG || t == RC_T_REPLAY || t == RC_T_PRESENCE || t == RC_T_TYPING;
}

void rc_session_frame(rc_session *s, const rc_session_env *env, const uint8_t *p, size_t len)
{
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
    }
    return off;
}
