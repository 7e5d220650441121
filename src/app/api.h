/*
 * The Server API on the admin port (src/ARCHITECTURE.md §3.10; the
 * endpoints in README.md, "Running it in production"): what a backend asks
 * of the server with `Authorization: Bearer <admin_token>`.
 *
 *   POST /api/publish      {g, from, body, mid?} -> {g, seq, ts, dup}
 *   POST /api/disconnect   {user}                -> {closed}
 *   GET  /api/groups/<g>                         -> {g, seq, members, online, n_online}
 *   GET  /api/users/<u>                          -> {user, sessions, groups, n_groups}
 *
 * A publish goes the way a client's send goes: over the API's own session,
 * a loopback connection to the server's TCP port that said hello with the
 * admin token, as a `publish` request (proto/PROTOCOL.md §6.10), so it is
 * routed, ordered, deduplicated, rate limited and stored like any send and
 * answered only with its ack. Reads and disconnects are calls (core/call.h)
 * answered by the threads that own what they read. Everything runs on the
 * admin thread, one request at a time.
 */
#ifndef RC_APP_API_H
#define RC_APP_API_H

#include <stdbool.h>
#include <stdint.h>

#include "ringcast/admin.h"
#include "ringcast/client.h"

#define RC_API_MAX_BODY 32768u       /* request body, bytes; larger is 413 (the admin server stops at RC_ADMIN_MAX_BODY) */
#define RC_API_TIMEOUT_MS 5000u      /* the server's answer to one API request; later is 503 */
#define RC_API_CONNECT_TIMEOUT_MS 2000u /* the API session's connect and hello */
#define RC_API_POLL_US 200u          /* how often a wait for calls looks at them */
#define RC_API_USER "ringcast.api"   /* the user the API's session says hello as */

enum rc_api_endpoint { RC_API_PUBLISH, RC_API_DISCONNECT, RC_API_GROUPS, RC_API_USERS, RC_API_OTHER, RC_API_ENDPOINTS };
#define RC_API_CODES 11u             /* HTTP statuses counted apart (api.c's table; the last one is "any other") */

typedef struct rc_api {
    rc_client client;                /* the API's session (publish) */
    bool connected;                  /* client is open and welcomed */
    rc_decoder dec;                  /* checks a publish before it is sent */
    bool dec_ready;
    _Atomic uint64_t requests[RC_API_ENDPOINTS][RC_API_CODES]; /* answered, by endpoint and status */
} rc_api;

struct rc_server;

/* Serves one request whose path starts with /api/ (admin thread). */
int rc_api_handle(struct rc_server *s, const rc_admin_request *req, struct rc_admin_body *body, const char **ctype);
/* ringcast_api_requests_total{endpoint,code}. */
void rc_api_metrics(struct rc_server *s, struct rc_admin_body *out);
/* Closes the API's session; after the admin thread stopped. */
void rc_api_close(rc_api *a);

#endif
