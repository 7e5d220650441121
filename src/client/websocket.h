/*
 * The WebSocket transport under rc_client (src/client/websocket.c), private
 * to the client library. client.c calls in here only when c->ws is set
 * (rc_client_connect_url); the API above stays the same for both
 * transports.
 */
#ifndef RC_CLIENT_WEBSOCKET_H
#define RC_CLIENT_WEBSOCKET_H

#include <stddef.h>
#include <stdint.h>

#include "ringcast/client.h"

#define RC_CLIENT_WS_HOST_MAX 256u  /* bytes of a ws:// URL's host */
#define RC_CLIENT_WS_PATH_MAX 1024u /* bytes of its path */

/* Splits ws://host[:port][/path] (host may be [v6], port 80 when not
 * given, path / when not given). 0, or -1 with the reason in err
 * (wss:// is refused: no TLS here). */
int rc_client_ws_parse_url(const char *url, char host[RC_CLIENT_WS_HOST_MAX], uint16_t *port,
                           char path[RC_CLIENT_WS_PATH_MAX], char *err, size_t errcap);

/* On a connected c: the RFC 6455 upgrade of `path` (answer within
 * timeout_ms; its status, Sec-WebSocket-Accept, extensions and subprotocol
 * checked), then c->ws is set. 0, or -1 with c->err. */
int rc_client_ws_upgrade(rc_client *c, const char *host, uint16_t port, const char *path, int timeout_ms);

/* One map (no length prefix) as one masked binary message. 0 or -1. */
int rc_client_ws_send(rc_client *c, const uint8_t *map, size_t len);

/* Waits at most timeout_ms for the socket, then reads what it holds: each
 * whole message goes into c->rbuf behind a 4-byte length prefix, as a TCP
 * frame would. 1 read something, 0 timeout, -1 closed or error (c->err:
 * the close frame's code and reason, a bad frame, the end of the stream).
 * Messages that came before a close frame are returned first. */
int rc_client_ws_fill(rc_client *c, int timeout_ms);

/* Sends a close frame (1000) if none was exchanged, frees the transport. */
void rc_client_ws_close(rc_client *c);

#endif
