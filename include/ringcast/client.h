/*
 * A small blocking client for the protocol, over TCP or over WebSocket
 * (proto/PROTOCOL.md §1.2), used by the `ringcast` CLI, the tests and the
 * benchmarks. One rc_client is one connection; it is not thread-safe. Messages returned by rc_client_recv point into the client's
 * receive buffer and stay valid until the next receive.
 */
#ifndef RINGCAST_CLIENT_H
#define RINGCAST_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcast/proto.h"

typedef struct rc_client {
    int fd;
    rc_decoder dec;
    uint8_t *rbuf;       /* received bytes not yet returned */
    size_t rlen, rcap, rpos;
    rc_buf out;          /* encoding scratch */
    uint64_t next_rid;
    uint32_t max_frame;  /* server's, from welcome */
    uint64_t sid;        /* session id, from welcome */
    char err[256];       /* last error, human text */
    struct rc_client_ws *ws; /* NULL over TCP; the WebSocket transport (src/client/websocket.h) */
} rc_client;

/* Connects to host:port (numeric or name). 0, or -1 with c->err set. */
int rc_client_connect(rc_client *c, const char *host, uint16_t port, int timeout_ms);
/* Connects to ws://host[:port][/path] (port 80 when not given; ringcastd
 * serves WebSocket at /ws on its http_port) and upgrades: every call below
 * then works as over TCP, each map one binary message. 0, or -1 with
 * c->err: a bad URL, a refused upgrade (its HTTP status), a bad
 * Sec-WebSocket-Accept. A close frame from the server later ends recv and
 * send with its code and reason in c->err. */
int rc_client_connect_url(rc_client *c, const char *url, int timeout_ms);
/* addr is a ws:// URL (rc_client_connect_url, port unused) or a host
 * (rc_client_connect to host:port). */
int rc_client_open(rc_client *c, const char *addr, uint16_t port, int timeout_ms);
void rc_client_close(rc_client *c);

/* Sends one message (encoded as a frame). 0 or -1. */
int rc_client_send(rc_client *c, const rc_msg *m);
/* Sends raw bytes as they are, on the socket (tests of bad input; over
 * WebSocket they are not framed). 0 or -1. */
int rc_client_send_raw(rc_client *c, const void *p, size_t n);

/* Receives one message: 1 got one, 0 timeout, -1 closed or error (c->err).
 * A frame that does not decode is an error too. timeout_ms < 0 waits forever.
 * A `ping` from the server (idle_timeout_ms) is answered with `pong` here
 * and not returned. */
int rc_client_recv(rc_client *c, rc_msg *out, int timeout_ms);

/* Waits for a reply of `type` (or `err`) with this rid, skipping other
 * messages (msg deliveries are skipped too: use recv for them). 1, 0, -1. */
int rc_client_wait(rc_client *c, rc_type type, uint64_t rid, rc_msg *out, int timeout_ms);

/* Request helpers: each sends with a fresh rid and waits for its reply.
 * They return 0 on the expected reply, the rc_err code on `err`, -1 on
 * connection failure or timeout. */
int rc_client_hello(rc_client *c, const char *user, int timeout_ms);
/* hello with a token (proto/PROTOCOL.md §6.8): a signed token when the
 * server has auth_secret, or its admin_token. user may be NULL when the
 * token names the user; token NULL is rc_client_hello. */
int rc_client_hello_token(rc_client *c, const char *user, const char *token, int timeout_ms);
/* Replaces the session's token before it expires; *exp (if not NULL) gets
 * the new expiry, unix seconds. */
int rc_client_refresh(rc_client *c, const char *token, int timeout_ms, uint64_t *exp);
int rc_client_join(rc_client *c, const char *group, int timeout_ms, uint64_t *last_seq);
int rc_client_leave(rc_client *c, const char *group, int timeout_ms);
int rc_client_publish(rc_client *c, const char *group, const void *body, size_t len, const char *mid,
                      int timeout_ms, rc_msg *ack);

#endif
