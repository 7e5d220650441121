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
 * (c->ws != NULL).
 */
#ifndef RC_NET_WS_H
#define RC_NET_WS_H

#include <stddef.h>
#include <stdint.h>

#define RC_WS_PATH "/ws"
#define RC_WS_SUBPROTOCOL "ringcast.v1"
#define RC_WS_MAX_HEAD 8192u /* bytes of the upgrade request's head; more is 431 */

struct rc_io;
struct rc_conn;
typedef struct rc_ws rc_ws;

/* A connection accepted on the HTTP port: expects an HTTP request first.
 * NULL when out of memory. */
rc_ws *rc_ws_new(void);
void rc_ws_free(rc_ws *w); /* NULL is a no-op */

/* Bytes read from the socket: the HTTP request, then WebSocket frames.
 * Returns how many were used; the rest waits (the connection was held
 * meanwhile, or the request is answered and the connection closing). */
size_t rc_ws_input(struct rc_io *io, struct rc_conn *c, const uint8_t *p, size_t n);

/* One server frame (4-byte length prefix, then a MessagePack map) to send
 * as a WebSocket message; dropped before the upgrade (there is no one to
 * read a map yet). */
void rc_ws_write_frame(struct rc_io *io, struct rc_conn *c, const uint8_t *frame, size_t len);

/* The connection is about to close: a WebSocket close frame (1000, or
 * 1001 when the server is stopping) goes out first. */
void rc_ws_goodbye(struct rc_io *io, struct rc_conn *c, uint16_t code, const char *reason);

#endif
