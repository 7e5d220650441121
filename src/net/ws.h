/*
 * The public HTTP port of an io thread (http_port, default 7480): the web
 * chat page at `/` and RFC 6455 WebSocket at `/ws` (proto/PROTOCOL.md §1.2,
 * src/ARCHITECTURE.md §3.6). A WebSocket connection is an rc_conn like a TCP
 * one, with the same session, groups, bounds and output queue; only the
 * bytes on the wire differ:
 *
 *   in:  HTTP upgrade (net/http.c), then WebSocket frames (wslay) whose
 *        messages are maps (binary: MessagePack; text: JSON, proto/json.c)
 *        handed to the session one by one;
 *   out: every frame the session or a shard makes (length-prefixed
 *        MessagePack) becomes one WebSocket message of the kind the client
 *        used last.
 *
 * io.c calls in here only for connections accepted on the HTTP port
 * (c->ws != NULL), through rc_ws_env: no sockets here.
 */
#ifndef RC_NET_WS_H
#define RC_NET_WS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcast/proto.h"

#define RC_WS_PATH "/ws"
#define RC_WS_SUBPROTOCOL "ringcast.v1"
#define RC_WS_MAX_HEAD 8192u /* bytes of the upgrade request's head; more is 431 */

typedef struct rc_ws rc_ws;

/* Where a WebSocket connection's effects go, as rc_session_out is for a
 * session: io.c implements it over an rc_conn, tests/fuzz/fuzz_ws.c over
 * a buffer, so the handshake and the frames are tested without sockets. */
typedef struct rc_ws_out {
    void *self;
    /* Queues bytes for the socket as they are: a and then b (nb may be 0). */
    void (*write)(void *self, const uint8_t *a, size_t na, const uint8_t *b, size_t nb);
    /* One map (a data message's MessagePack, no length prefix) for the session. */
    void (*message)(void *self, const uint8_t *map, size_t len);
    /* Answers an unreadable message with an `err` (proto/PROTOCOL.md §4). */
    void (*error)(void *self, rc_err code, const char *text);
    /* False once input must stop for now (held or closing): the rest waits. */
    bool (*reading)(void *self);
    /* Reads nothing more; closes once the output has been sent. */
    void (*close)(void *self);
    /* True once the connection is gone: nothing can be written any more. */
    bool (*dead)(void *self);
} rc_ws_out;

/* Counters, written by the owning io thread only (single writer). */
typedef struct rc_ws_stats {
    _Atomic uint64_t http_requests;  /* HTTP requests on the public port (the page, upgrades) */
    _Atomic uint64_t http_refused;   /* of them answered 4xx/5xx and closed */
    _Atomic uint64_t upgrades;       /* connections that became WebSocket */
    _Atomic uint64_t origin_refused; /* of them closed with 1008: their Origin is not in allowed_origins */
    _Atomic uint64_t messages_in, messages_out; /* WebSocket data messages */
} rc_ws_stats;

/* What one call works with: the bounds, the way out, the counters. */
typedef struct rc_ws_env {
    uint32_t max_frame;          /* bytes of map per message (max_frame) */
    const char *allowed_origins; /* allowed_origins ("" or NULL: any) */
    const rc_ws_out *out;
    rc_ws_stats *stats;
} rc_ws_env;

/* A connection accepted on the HTTP port: expects an HTTP request first.
 * NULL when out of memory. */
rc_ws *rc_ws_new(void);
void rc_ws_free(rc_ws *w); /* NULL is a no-op */

/* Bytes read from the socket: the HTTP request, then WebSocket frames.
 * Returns how many were used; the rest waits (reading said no
 * meanwhile, or the request is answered and the connection closing). */
size_t rc_ws_input(rc_ws *w, const rc_ws_env *env, const uint8_t *p, size_t n);

/* One server frame (4-byte length prefix, then a MessagePack map) to send
 * as a WebSocket message; dropped before the upgrade (there is no one to
 * read a map yet). */
void rc_ws_write_frame(rc_ws *w, const rc_ws_env *env, const uint8_t *frame, size_t len);

/* The connection is about to close: a WebSocket close frame (1000, or
 * 1001 when the server is stopping) goes out first. */
void rc_ws_goodbye(rc_ws *w, const rc_ws_env *env, uint16_t code, const char *reason);

#endif
