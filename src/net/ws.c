/*
 * The public HTTP port (ws.h): the upgrade to WebSocket by net/http.c, the
 * frames by wslay's event API, the maps by the session. wslay never touches
 * the socket: its recv callback reads from the bytes io.c hands in, its send
 * callback appends to the connection's output queue, so the io_uring loop
 * stays the only one doing I/O.
 */
#include "net/ws.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>

#include "core/log.h"
#include "core/stats.h"
#include "net/http.h"
#include "net/webpage.h"
#include "ringcast/json.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455 §1.3 */
#define WS_KEY_LEN 24u          /* base64 of the 16-byte Sec-WebSocket-Key */
#define WS_ACCEPT_LEN 28u       /* base64 of a SHA-1 */
#define WS_MAX_HEADER 10u      /* a server frame's header: 2 bytes and up to 8 of length */
#define WS_CLOSE_NORMAL 1000
#define WS_CLOSE_PROTOCOL 1002
#define WS_CLOSE_POLICY 1008    /* the Origin is not allowed */
#define WS_CLOSE_TOO_BIG 1009
#define WS_CLOSE_INTERNAL 1011  /* out of memory while a message came */
#define WS_MSG_KEEP 16384u      /* bytes of a message buffer kept between messages; a larger one is freed */

enum ws_state { WS_HTTP, WS_OPEN, WS_CLOSING };

struct rc_ws {
    enum ws_state state;
    rc_http_conn http;
    wslay_event_context_ptr ctx;
    bool text;            /* the client's last message was text: answer in JSON */
    uint64_t msg_bytes;   /* payload of the message being received so far (its frames) */
    /* The data message being received (wslay buffers only control frames,
     * ws_on_chunk): the chunk that is all of it, still in wslay's input
     * buffer until ws_on_msg, or what its chunks added up to so far. */
    const uint8_t *whole;
    size_t whole_len;
    rc_buf msg;
    uint64_t frame_len;   /* payload of the frame being received */
    bool in_control;      /* that frame is a control frame (wslay buffers it) */
    bool one_frame;       /* the message's first frame has FIN: it may come as one chunk */
    bool drop;            /* the message is not handed on: refused past max_frame, or no memory */
    /* while a call runs: its env (bounds, way out, counters), its bytes */
    const rc_ws_env *env;
    const uint8_t *in;
    size_t in_left;
    rc_buf scratch;       /* a JSON message turned into MessagePack, or a frame into JSON */
};

rc_ws *rc_ws_new(void)
{
    rc_ws *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    rc_http_limits lim = rc_http_limits_default();
    lim.max_head = RC_WS_MAX_HEAD;
    lim.max_body = 0; /* GET only */
    if (rc_http_conn_init(&w->http, &lim) != 0) {
        free(w);
        return NULL;
    }
    rc_buf_init(&w->scratch);
    rc_buf_init(&w->msg);
    return w;
}

void rc_ws_free(rc_ws *w)
{
    if (!w)
        return;
    if (w->ctx)
        wslay_event_context_free(w->ctx);
    rc_http_conn_free(&w->http);
    rc_buf_free(&w->scratch);
    rc_buf_free(&w->msg);
    free(w);
}

/* ---- wslay callbacks: bytes in from what io.c handed us, out to the queue ---- */

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    (void)flags;
    rc_ws *w = ud;
    if (!w->in_left || !w->env->out->reading(w->env->out->self)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < w->in_left ? len : w->in_left;
    memcpy(buf, w->in, n);
    w->in += n;
    w->in_left -= n;
    return (ssize_t)n;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)flags;
    rc_ws *w = ud;
    const rc_ws_out *out = w->env->out;
    if (out->dead(out->self)) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    out->write(out->self, data, len, NULL, 0);
    return (ssize_t)len;
}

/* A map that could not be read: the same `err` a TCP client gets. */
static void ws_content_error(rc_ws *w, rc_err code, const char *why)
{
    w->env->out->error(w->env->out->self, code, why);
}

static void ws_close(rc_ws *w, uint16_t code, const char *reason)
{
    wslay_event_queue_close(w->ctx, code, (const uint8_t *)reason, strlen(reason));
    wslay_event_shutdown_read(w->ctx);
}

/* A data message's payload as wslay reads it, unmasked in its input
 * buffer: kept where it is when one chunk is all of the message (the
 * common case, no copy), else added up in w->msg. */
static void ws_on_chunk(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_chunk_arg *arg, void *ud)
{
    (void)ctx;
    rc_ws *w = ud;
    if (w->in_control || arg->data_length == 0 || w->drop)
        return; /* wslay buffers control frames; a message refused is not kept */
    if (w->one_frame && !w->whole && w->msg.len == 0 && arg->data_length == w->frame_len) {
        w->whole = arg->data;
        w->whole_len = arg->data_length;
        return;
    }
    if (w->whole) { /* cannot happen: a whole frame comes as one chunk; kept safe all the same */
        if (rc_buf_append(&w->msg, w->whole, w->whole_len) != 0)
            goto nomem;
        w->whole = NULL;
    }
    if (rc_buf_append(&w->msg, arg->data, arg->data_length) == 0)
        return;
nomem:
    RC_LOG_ERROR("ws", "event=message_nomem bytes=%llu", (unsigned long long)w->msg_bytes);
    w->drop = true;
    ws_close(w, WS_CLOSE_INTERNAL, "out of memory");
}

static void ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *ud)
{
    (void)ctx;
    rc_ws *w = ud;
    if (arg->opcode >= 0x8)
        return; /* ping: wslay queued the pong; close: wslay queued the answer */
    const uint8_t *p = w->whole ? w->whole : w->msg.data;
    size_t n = w->whole ? w->whole_len : w->msg.len;
    w->whole = NULL;
    w->msg.len = 0;
    if (w->msg.cap > WS_MSG_KEEP)
        rc_buf_free(&w->msg);
    if (w->drop)
        return; /* refused as its first frame came (ws_on_frame_start), wslay read it to the end */
    if (arg->opcode == WSLAY_BINARY_FRAME) {
        w->text = false;
        RC_STAT_ADD(w->env->stats->messages_in, 1);
        w->env->out->message(w->env->out->self, p, n);
    } else if (arg->opcode == WSLAY_TEXT_FRAME) {
        /* wslay has checked it is UTF-8 (else it closed with 1007) */
        w->text = true;
        RC_STAT_ADD(w->env->stats->messages_in, 1);
        const char *why = NULL;
        w->scratch.len = 0;
        rc_err e = rc_json_to_msgpack((const char *)p, n, &w->scratch, &why);
        if (e != RC_OK) {
            ws_content_error(w, e, why ? why : "a text message must hold one JSON object");
            return;
        }
        if (w->scratch.len > w->env->max_frame) { /* `1e0` is 3 bytes of JSON, 9 of float64 */
            ws_content_error(w, RC_E_FRAME_TOO_LARGE, "the message is longer than max_frame as MessagePack");
            return;
        }
        w->env->out->message(w->env->out->self, w->scratch.data, w->scratch.len);
    }
}

/* A message longer than max_frame, in one frame or in several, is refused
 * as its frame header arrives, before the payload is buffered:
 * E_FRAME_TOO_LARGE, then close 1009, as on TCP (proto/PROTOCOL.md §1.2). */
static void ws_on_frame_start(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_start_arg *arg,
                              void *ud)
{
    (void)ctx;
    rc_ws *w = ud;
    w->in_control = arg->opcode >= 0x8;
    if (w->in_control)
        return; /* control frames are at most 125 bytes (wslay checks) */
    w->frame_len = arg->payload_length;
    if (arg->opcode != WSLAY_CONTINUATION_FRAME) {
        w->msg_bytes = 0;
        w->one_frame = arg->fin;
        w->whole = NULL;
        w->msg.len = 0;
        w->drop = false;
    }
    w->msg_bytes += arg->payload_length;
    if (w->drop || w->msg_bytes <= w->env->max_frame)
        return;
    w->drop = true;
    ws_content_error(w, RC_E_FRAME_TOO_LARGE, "the message is longer than max_frame; closing");
    ws_close(w, WS_CLOSE_TOO_BIG, "message longer than max_frame");
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = ws_recv,
    .send_callback = ws_send,
    .on_frame_recv_start_callback = ws_on_frame_start,
    .on_frame_recv_chunk_callback = ws_on_chunk,
    .on_msg_recv_callback = ws_on_msg,
};

static void ws_flush(rc_ws *w);

/* ---- the HTTP request ---- */

static void http_answer(rc_ws *w, int status, const char *ctype, const char *body, size_t body_len,
                        const char *extra)
{
    char head[RC_HTTP_RESPONSE_HEAD_MAX + 256];
    int n = rc_http_response_head(head, sizeof(head), status, ctype, body_len, false, extra ? extra : "");
    const rc_ws_out *out = w->env->out;
    if (n > 0)
        out->write(out->self, (const uint8_t *)head, (size_t)n, (const uint8_t *)body, body_len);
    out->close(out->self);
}

static void http_error(rc_ws *w, int status, const char *text)
{
    RC_STAT_ADD(w->env->stats->http_refused, 1);
    http_answer(w, status, "text/plain; charset=utf-8", text, strlen(text), NULL);
}

/* True when the comma-separated header value holds token (case-insensitive). */
static bool header_has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    for (const char *p = value; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *last = end;
        while (last > p && (last[-1] == ' ' || last[-1] == '\t'))
            last--;
        if ((size_t)(last - p) == tl && strncasecmp(p, token, tl) == 0)
            return true;
        p = end;
    }
    return false;
}

static void ws_accept_key(const char *key, char out[WS_ACCEPT_LEN + 1])
{
    char buf[WS_KEY_LEN + sizeof(WS_GUID)];
    unsigned char sha[SHA_DIGEST_LENGTH];
    snprintf(buf, sizeof(buf), "%s%s", key, WS_GUID);
    SHA1((const unsigned char *)buf, strlen(buf), sha);
    EVP_EncodeBlock((unsigned char *)out, sha, SHA_DIGEST_LENGTH);
}

/* allowed_origins empty: any. Otherwise a browser's Origin must be in the
 * list (byte for byte, case-insensitive); a client that sends no Origin is
 * not a browser page, and is let in. */
static bool origin_allowed(const char *allowed, const char *origin)
{
    if (!allowed || !allowed[0] || !origin)
        return true;
    return header_has_token(allowed, origin);
}

/* GET /ws with a valid RFC 6455 §4.2.1 handshake: 101 and WebSocket from
 * here on. Anything else is answered in plain HTTP and closed. */
static void http_upgrade(rc_ws *w, const rc_http_request *r)
{
    const char *upgrade = rc_http_header_get(r, "Upgrade");
    const char *connection = rc_http_header_get(r, "Connection");
    const char *version = rc_http_header_get(r, "Sec-WebSocket-Version");
    const char *key = rc_http_header_get(r, "Sec-WebSocket-Key");
    const char *protocols = rc_http_header_get(r, "Sec-WebSocket-Protocol");
    if (!upgrade || !header_has_token(upgrade, "websocket") || !connection ||
        !header_has_token(connection, "upgrade") || !key || strlen(key) != WS_KEY_LEN) {
        http_error(w, 400, "a WebSocket handshake needs Upgrade: websocket, Connection: Upgrade and a Sec-WebSocket-Key\n");
        return;
    }
    if (!version || strcmp(version, "13") != 0) {
        RC_STAT_ADD(w->env->stats->http_refused, 1);
        http_answer(w, 426, "text/plain; charset=utf-8", "WebSocket version 13 only\n", 26,
                    "Sec-WebSocket-Version: 13\r\n");
        return;
    }
    if (wslay_event_context_server_init(&w->ctx, &ws_callbacks, w) != 0) {
        http_error(w, 500, "out of memory\n");
        return;
    }
    /* ws_on_frame_start refuses past max_frame with an `err` first; wslay's
     * own bound (a bare 1009) is the backstop behind it. */
    wslay_event_config_set_max_recv_msg_length(w->ctx, (uint64_t)w->env->max_frame * 2 + RC_WS_MAX_HEAD);
    /* data messages are kept by ws_on_chunk, with no allocation and no copy
     * when a message comes in one piece (wslay would copy it twice) */
    wslay_event_config_set_no_buffering(w->ctx, 1);
    char accept[WS_ACCEPT_LEN + 1];
    ws_accept_key(key, accept);
    char head[RC_HTTP_RESPONSE_HEAD_MAX];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n%s\r\n",
                     accept, protocols && header_has_token(protocols, RC_WS_SUBPROTOCOL)
                                 ? "Sec-WebSocket-Protocol: " RC_WS_SUBPROTOCOL "\r\n" : "");
    w->env->out->write(w->env->out->self, (const uint8_t *)head, (size_t)n, NULL, 0);
    w->state = WS_OPEN;
    RC_STAT_ADD(w->env->stats->upgrades, 1);
    if (!origin_allowed(w->env->allowed_origins, rc_http_header_get(r, "Origin"))) {
        /* upgraded first, so that the page learns why (a 403 tells it nothing) */
        RC_STAT_ADD(w->env->stats->origin_refused, 1);
        ws_close(w, WS_CLOSE_POLICY, "origin not allowed");
        ws_flush(w);
    }
}

static void http_request(rc_ws *w)
{
    const rc_http_request *r = &w->http.req;
    RC_STAT_ADD(w->env->stats->http_requests, 1);
    if (strcmp(r->method, "GET") != 0) {
        http_error(w, 405, "only GET is served here\n");
    } else if (strcmp(r->path, RC_WS_PATH) == 0) {
        http_upgrade(w, r);
    } else if (strcmp(r->path, "/") == 0 || strcmp(r->path, "/index.html") == 0) {
        http_answer(w, 200, RC_WEBPAGE_INDEX_TYPE, rc_webpage_index, rc_webpage_index_len,
                    "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n");
    } else {
        http_error(w, 404, "not found: the chat page is at / and WebSocket at /ws\n");
    }
}

/* ---- io.c's calls ---- */

/* wslay's own queue out, and the connection closed once the close
 * handshake is done either way. */
static void ws_flush(rc_ws *w)
{
    if (wslay_event_send(w->ctx) != 0 ||
        (!wslay_event_want_read(w->ctx) && !wslay_event_want_write(w->ctx))) {
        w->state = WS_CLOSING;
        w->env->out->close(w->env->out->self);
    }
}

size_t rc_ws_input(rc_ws *w, const rc_ws_env *env, const uint8_t *p, size_t n)
{
    w->env = env;
    size_t used = 0;
    if (w->state == WS_HTTP) {
        used = rc_http_feed(&w->http, (const char *)p, n);
        if (w->http.state == RC_HTTP_READING)
            return used;
        if (w->http.state == RC_HTTP_ERROR) {
            http_error(w, w->http.error_status, "bad request\n");
            return n;
        }
        http_request(w);
        if (w->state != WS_OPEN)
            return n; /* answered in HTTP: closing */
    }
    if (w->state != WS_OPEN)
        return n;
    w->in = p + used;
    w->in_left = n - used;
    if (wslay_event_recv(w->ctx) != 0) {
        ws_close(w, WS_CLOSE_PROTOCOL, "protocol error");
        w->in_left = 0;
    }
    size_t left = w->in_left;
    w->in_left = 0;
    ws_flush(w);
    return w->state == WS_OPEN ? n - left : n;
}

/* The header of an unmasked, unfragmented server frame (RFC 6455 §5.2);
 * its length. */
static size_t ws_frame_header(uint8_t h[WS_MAX_HEADER], uint8_t opcode, size_t n)
{
    h[0] = (uint8_t)(0x80 | opcode); /* FIN */
    if (n < 126) {
        h[1] = (uint8_t)n;
        return 2;
    }
    if (n <= UINT16_MAX) {
        h[1] = 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    return 10;
}

/* Data messages bypass wslay's queue: the map goes straight into the
 * output queue behind its frame header, one copy as for a small TCP frame.
 * Order with wslay's own frames (pong, close) holds because ws_send takes
 * everything wslay offers at once, so wslay never holds a partial frame. */
void rc_ws_write_frame(rc_ws *w, const rc_ws_env *env, const uint8_t *frame, size_t len)
{
    if (w->state != WS_OPEN || len < RC_FRAME_HEADER)
        return;
    const uint8_t *p = frame + RC_FRAME_HEADER;
    size_t n = len - RC_FRAME_HEADER;
    uint8_t opcode = WSLAY_BINARY_FRAME;
    if (w->text) {
        w->scratch.len = 0;
        if (rc_msgpack_to_json(p, n, &w->scratch) != 0) {
            RC_LOG_ERROR("ws", "event=json_encode_failed bytes=%zu", n);
            return;
        }
        p = w->scratch.data;
        n = w->scratch.len;
        opcode = WSLAY_TEXT_FRAME;
    }
    uint8_t h[WS_MAX_HEADER];
    size_t hl = ws_frame_header(h, opcode, n);
    RC_STAT_ADD(env->stats->messages_out, 1);
    env->out->write(env->out->self, h, hl, p, n);
}

void rc_ws_goodbye(rc_ws *w, const rc_ws_env *env, uint16_t code, const char *reason)
{
    if (w->state != WS_OPEN)
        return;
    /* May run inside rc_ws_input (a message the session closes on): the
     * caller's env is put back for the rest of its call. */
    const rc_ws_env *outer = w->env;
    w->env = env;
    w->state = WS_CLOSING;
    wslay_event_queue_close(w->ctx, code, (const uint8_t *)reason, strlen(reason));
    wslay_event_send(w->ctx);
    w->env = outer;
}
