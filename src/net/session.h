/*
 * The protocol session of one client connection: framing, the dispatch of
 * each request, and the replies the io thread makes itself
 * (proto/PROTOCOL.md §1-§6; src/ARCHITECTURE.md §3.1 steps 2-4).
 *
 * No sockets and no shards here. Everything a session does leaves through
 * rc_session_out: the io thread implements it over a connection (io.c),
 * tests over a buffer (tests/unit/test_session.c), so every protocol rule
 * can be tested without a server.
 */
#ifndef RC_NET_SESSION_H
#define RC_NET_SESSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/bucket.h"
#include "core/dispatch.h"
#include "core/strmap.h"
#include "ringcast/proto.h"
#include "ringcast/token.h"

#define RC_SESSION_SERVER_NAME "ringcast/" RC_VERSION

/* Where a session's effects go. */
typedef struct rc_session_out {
    void *self;
    /* Queues one encoded frame (length prefix included) to the client. */
    void (*send)(void *self, const uint8_t *frame, size_t len);
    /* Hands a request to its group's shard as a job from `from`. */
    void (*route)(void *self, rc_job_kind kind, rc_str from, const rc_msg *m);
    /* False once input must stop for now (the connection is held or
     * closing): the rest of the bytes wait for a later call. */
    bool (*reading)(void *self);
    /* A framing error was answered: read nothing more, close once the
     * output has been sent. */
    void (*close)(void *self);
    /* True while the server is shutting down (requests get E_SHUTTING_DOWN). */
    bool (*stopping)(void *self);
    /* Unix time in seconds, for token expiry (NULL: the system's wall clock). */
    uint64_t (*wall_s)(void *self);
} rc_session_out;

/* What the protocol allows; copied from the server config. */
typedef struct rc_session_limits {
    uint32_t max_frame;              /* bytes of map per frame */
    uint32_t max_groups;             /* groups one session may join (max_groups_per_session) */
    const char *admin_token;         /* hello token that makes a session admin ("" or NULL: none) */
    uint32_t conn_rate, conn_burst;  /* sends per second per connection, bucket size (0: no limit) */
    const rc_token_keys *auth;       /* auth_secret: hello needs a token signed with one of them (NULL or none: hello trusts user) */
} rc_session_limits;

/* Why a hello or refresh was refused (ringcast_auth_failures_total{reason}):
 * the token's own faults (rc_token_result), then the session's. */
enum {
    RC_AUTH_FAIL_USER_MISMATCH = RC_TOKEN_RESULTS, /* user in hello, or the refreshing token's sub, is not the session's */
    RC_AUTH_FAIL_NO_TOKEN,                          /* hello without a token while auth_secret is set: E_NOT_AUTHENTICATED */
    RC_AUTH_FAIL_ADMIN_TOKEN,                       /* without auth_secret, a token that is not admin_token */
    RC_AUTH_FAIL_REASONS
};
const char *rc_auth_fail_name(int reason); /* metric label: "signature", "user_mismatch", ... */

/* Counters, written by the owning io thread only (single writer). */
typedef struct rc_session_stats {
    _Atomic uint64_t frames_in[RC_T_COUNT]; /* frames received, by type (RC_T_NONE: undecodable) */
    _Atomic uint64_t errors[RC_E_COUNT];    /* err replies by code */
    _Atomic uint64_t replay_redeliver;      /* replayed letters sent on for redelivery to their recipient */
    _Atomic uint64_t replay_history;        /* replayed letters history already covers: acked dup, nothing sent */
    _Atomic uint64_t replay_send;           /* replayed letters never sequenced: sent as from their sender */
    _Atomic uint64_t replay_refused;        /* replay commands refused (not admin, unknown reason) */
    _Atomic uint64_t rate_limited;          /* sends refused with E_RATE_LIMITED by conn_rate */
    _Atomic uint64_t auth_failures[RC_AUTH_FAIL_REASONS]; /* hellos and refreshes refused, by reason (index 0 unused) */
    _Atomic uint64_t auth_tokens;           /* hellos accepted with a valid token */
    _Atomic uint64_t auth_refreshes;        /* refreshes accepted */
    _Atomic uint64_t token_expired;         /* sessions closed with bye token_expired */
} rc_session_stats;

/* One session's state. */
typedef struct rc_session {
    bool authed;            /* said hello */
    bool admin;             /* said hello with the admin token: may replay dead letters */
    bool closed;            /* the session ended itself (E_AUTH_FAILED, token_expired): nothing more is read */
    uint64_t token_exp;     /* unix seconds when the session's token expires (0: no token) */
    rc_token_groups allowed; /* groups the token allows (all when there is no token) */
    char user[RC_MAX_USER];
    uint8_t user_len;
    uint64_t sid;
    rc_strmap groups;       /* groups joined in this session, by name (E_LIMIT, detach on close); values unused */
    rc_bucket sends;        /* conn_rate */
    bool no_echo;           /* hello echo: false: its own sends are not delivered back to it */
} rc_session;

/* What a session works with: its limits, its way out, the io thread's
 * decoder, encoding scratch and counters. */
typedef struct rc_session_env {
    const rc_session_limits *lim;
    const rc_session_out *out;
    rc_decoder *dec;
    rc_buf *scratch;
    rc_session_stats *stats;
} rc_session_env;

void rc_session_init(rc_session *s, uint64_t sid);
void rc_session_free(rc_session *s);

/* Handles the whole frames at the start of p[0..n): returns the bytes
 * consumed (a partial frame's tail is left to the caller). After a framing
 * error, or once the session has closed itself (out->close called),
 * everything counts as consumed. */
size_t rc_session_input(rc_session *s, const rc_session_env *env, const uint8_t *p, size_t n);

/* One map without a length prefix (a WebSocket message, net/ws.c), at most
 * max_frame bytes: decoded, checked and handled like a TCP frame's. */
void rc_session_frame(rc_session *s, const rc_session_env *env, const uint8_t *p, size_t len);

/* Replies the io thread makes itself: an encoded map, an `err`. */
void rc_session_reply(const rc_session_env *env, const rc_msg *m);
void rc_session_error(const rc_session_env *env, const rc_msg *req, rc_err code, const char *text);

/* The session's groups: g is no longer one (a refused join, an overloaded one). */
void rc_session_forget(rc_session *s, rc_str g);

/* Token expiry (proto/PROTOCOL.md §6.8): true once the session's token has
 * expired at now_s; rc_session_expire then says `bye` {reason:
 * "token_expired"} and closes. The io thread's timeout sweep asks every
 * session; a request arriving first finds it too. */
bool rc_session_token_expired(const rc_session *s, uint64_t now_s);
void rc_session_expire(rc_session *s, const rc_session_env *env);

#endif
