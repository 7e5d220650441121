/*
 * The client's WebSocket transport (proto/PROTOCOL.md §1.2): the RFC 6455
 * upgrade, written here and its answer read by the packaged http_parser,
 * with Sec-WebSocket-Accept checked by libcrypto's SHA-1; then wslay's
 * event API in client mode (every frame masked, pings answered, the close
 * handshake). Each map the client sends is one binary message; each
 * message received goes into the client's receive buffer behind a 4-byte
 * length prefix, so rc_client_recv frames WebSocket and TCP alike.
 *
 * No permessage-deflate: none is offered, and a server that names an
 * extension anyway is refused (RFC 6455 §4.1; src/ARCHITECTURE.md §3.6).
 */
#define _GNU_SOURCE
#include "client/websocket.h"

#include <errno.h>
#include <http_parser.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <wslay/wslay.h>

#include "core/clock.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455 §1.3 */
#define WS_SUBPROTOCOL "ringcast.v1"
#define WS_KEY_RAW 16u       /* random bytes of Sec-WebSocket-Key */
#define WS_KEY_LEN 24u       /* their base64 */
#define WS_ACCEPT_LEN 28u    /* base64 of a SHA-1 */
#define WS_DEFAULT_PORT 80u  /* of a ws:// URL without one (RFC 6455 §3) */
#define WS_HEAD_MAX 8192u    /* bytes of the server's answer to the upgrade, head and quoted body */
#define WS_VALUE_MAX 256u    /* bytes kept of one answer header's value */
#define WS_BODY_SHOWN 160u   /* bytes of a refusal's body quoted in the error */
/* Largest message taken from a server: one reply of max_reply_bytes
 * (at most 2^30) with room for its envelope. Past it wslay closes 1009. */
#define WS_MAX_MSG ((1ull << 30) + 65536u)

struct rc_client_ws {
    wslay_event_context_ptr ctx;
    rc_client *c;
    uint8_t pre[WS_HEAD_MAX]; /* bytes read past the answer's head: the first frames */
    size_t pre_len, pre_pos;
    bool appended;            /* the last pump put a message into c->rbuf */
    bool closed;              /* a close frame came, or the stream ended or broke: c->err says which */
};

/* ---- bytes in and out for wslay: the socket, never blocking on reads ---- */

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    (void)flags;
    struct rc_client_ws *t = ud;
    if (t->pre_pos < t->pre_len) {
        size_t n = t->pre_len - t->pre_pos < len ? t->pre_len - t->pre_pos : len;
        memcpy(buf, t->pre + t->pre_pos, n);
        t->pre_pos += n;
        return (ssize_t)n;
    }
    ssize_t n = recv(t->c->fd, buf, len, MSG_DONTWAIT);
    if (n > 0)
        return n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (!t->closed)
        snprintf(t->c->err, sizeof(t->c->err), "%s",
                 n == 0 ? "connection closed by the server without a WebSocket close frame" : strerror(errno));
    t->closed = true;
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)flags;
    struct rc_client_ws *t = ud;
    if (t->closed) { /* the answer to a close: the server may be gone already, its reason stays the error */
        char why[sizeof(t->c->err)];
        memcpy(why, t->c->err, sizeof(why));
        int r = rc_client_send_raw(t->c, data, len);
        memcpy(t->c->err, why, sizeof(why));
        if (r != 0) {
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
            return -1;
        }
        return (ssize_t)len;
    }
    if (rc_client_send_raw(t->c, data, len) != 0) {
        t->closed = true;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static int ws_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *ud)
{
    (void)ud;
    if (RAND_bytes(buf, (int)len) != 1) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return 0;
}

/* Appends one message to the receive buffer as a length-prefixed frame. */
static int rbuf_put_frame(rc_client *c, const uint8_t *p, size_t n)
{
    size_t need = c->rlen + RC_FRAME_HEADER + n;
    if (need > c->rcap) {
        size_t cap = c->rcap ? c->rcap : 65536u;
        while (cap < need)
            cap *= 2;
        uint8_t *b = realloc(c->rbuf, cap);
        if (!b)
            return -1;
        c->rbuf = b;
        c->rcap = cap;
    }
    uint8_t *h = c->rbuf + c->rlen;
    h[0] = (uint8_t)(n >> 24);
    h[1] = (uint8_t)(n >> 16);
    h[2] = (uint8_t)(n >> 8);
    h[3] = (uint8_t)n;
    memcpy(h + RC_FRAME_HEADER, p, n);
    c->rlen = need;
    return 0;
}

static void ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *ud)
{
    (void)ctx;
    struct rc_client_ws *t = ud;
    rc_client *c = t->c;
    if (t->closed)
        return;
    if (arg->opcode == WSLAY_BINARY_FRAME) {
        if (rbuf_put_frame(c, arg->msg, arg->msg_length) != 0) {
            snprintf(c->err, sizeof(c->err), "out of memory");
            t->closed = true;
            return;
        }
        t->appended = true;
    } else if (arg->opcode == WSLAY_TEXT_FRAME) {
        snprintf(c->err, sizeof(c->err), "the server sent a text message to a binary session");
        t->closed = true;
    } else if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        /* the payload is the 2-byte code, then the reason (wslay checked it is UTF-8) */
        size_t rl = arg->msg_length >= 2 ? arg->msg_length - 2 : 0;
        const char *reason = rl ? (const char *)arg->msg + 2 : "";
        if (arg->status_code)
            snprintf(c->err, sizeof(c->err), "the server closed the WebSocket: %u %.*s", arg->status_code,
                     (int)rl, reason);
        else
            snprintf(c->err, sizeof(c->err), "the server closed the WebSocket without a status code");
        t->closed = true;
    }
    /* ping: wslay queued the pong */
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = ws_recv,
    .send_callback = ws_send,
    .genmask_callback = ws_genmask,
    .on_msg_recv_callback = ws_on_msg,
};

/* Reads what the socket holds now and sends what wslay queued (pongs, the
 * answer to a close). 1 a message came, 0 none, -1 closed or broken. */
static int ws_pump(rc_client *c)
{
    struct rc_client_ws *t = c->ws;
    t->appended = false;
    if (wslay_event_recv(t->ctx) != 0 && !t->closed) {
        snprintf(c->err, sizeof(c->err), "bad WebSocket frame from the server");
        t->closed = true;
    }
    if (wslay_event_want_write(t->ctx))
        wslay_event_send(t->ctx);
    if (t->appended)
        return 1;
    return t->closed ? -1 : 0;
}

int rc_client_ws_fill(rc_client *c, int timeout_ms)
{
    struct rc_client_ws *t = c->ws;
    if (t->closed)
        return -1;
    struct pollfd pfd = { c->fd, POLLIN, 0 };
    int r = poll(&pfd, 1, timeout_ms);
    if (r == 0)
        return 0;
    if (r < 0)
        return errno == EINTR ? 0 : -1;
    r = ws_pump(c);
    return r == 0 ? 1 : r; /* 1: bytes came, a message may follow with the next */
}

int rc_client_ws_send(rc_client *c, const uint8_t *map, size_t len)
{
    struct rc_client_ws *t = c->ws;
    if (t->closed) {
        if (!c->err[0])
            snprintf(c->err, sizeof(c->err), "the WebSocket is closed");
        return -1;
    }
    struct wslay_event_msg m = { WSLAY_BINARY_FRAME, map, len };
    if (wslay_event_queue_msg(t->ctx, &m) != 0 || wslay_event_send(t->ctx) != 0) {
        if (!t->closed) /* else c->err says why already */
            snprintf(c->err, sizeof(c->err), "cannot send on the WebSocket");
        t->closed = true;
        return -1;
    }
    return 0;
}

void rc_client_ws_close(rc_client *c)
{
    struct rc_client_ws *t = c->ws;
    if (!t)
        return;
    if (!t->closed && c->fd >= 0 && !wslay_event_get_close_sent(t->ctx)) {
        wslay_event_queue_close(t->ctx, WSLAY_CODE_NORMAL_CLOSURE, NULL, 0);
        wslay_event_send(t->ctx);
    }
    wslay_event_context_free(t->ctx);
    free(t);
    c->ws = NULL;
}

/* ---- the ws:// URL ---- */

int rc_client_ws_parse_url(const char *url, char host[RC_CLIENT_WS_HOST_MAX], uint16_t *port,
                           char path[RC_CLIENT_WS_PATH_MAX], char *err, size_t errcap)
{
    const char *p = url;
    if (strncasecmp(p, "wss://", 6) == 0) {
        snprintf(err, errcap, "%s: wss:// (TLS) is not supported; use ws:// or a TLS-terminating proxy", url);
        return -1;
    }
    if (strncasecmp(p, "ws://", 5) != 0) {
        snprintf(err, errcap, "%s: not a ws:// URL (ws://host[:port][/path])", url);
        return -1;
    }
    p += 5;
    const char *hs = p, *he;
    if (*p == '[') {
        hs = ++p;
        while (*p && *p != ']')
            p++;
        if (*p != ']') {
            snprintf(err, errcap, "%s: unclosed [ in the host", url);
            return -1;
        }
        he = p++;
    } else {
        while (*p && *p != ':' && *p != '/' && *p != '?' && *p != '#')
            p++;
        he = p;
    }
    if (he == hs || (size_t)(he - hs) >= RC_CLIENT_WS_HOST_MAX) {
        snprintf(err, errcap, "%s: %s host", url, he == hs ? "no" : "too long a");
        return -1;
    }
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    *port = WS_DEFAULT_PORT;
    if (*p == ':') {
        char *end;
        unsigned long v = strtoul(++p, &end, 10);
        if (end == p || v == 0 || v > 65535 || (*end && *end != '/' && *end != '?')) {
            snprintf(err, errcap, "%s: bad port", url);
            return -1;
        }
        *port = (uint16_t)v;
        p = end;
    } else if (*p && *p != '/' && *p != '?') {
        snprintf(err, errcap, "%s: bad host", url);
        return -1;
    }
    const char *ps = *p ? p : "/";
    size_t pl = strcspn(ps, "#");
    if (pl >= RC_CLIENT_WS_PATH_MAX || strpbrk(ps, " \r\n\t")) {
        snprintf(err, errcap, "%s: bad path", url);
        return -1;
    }
    if (*ps == '?')
        snprintf(path, RC_CLIENT_WS_PATH_MAX, "/%.*s", (int)pl, ps);
    else
        snprintf(path, RC_CLIENT_WS_PATH_MAX, "%.*s", (int)pl, ps);
    return 0;
}

/* ---- the upgrade ---- */

enum { HDR_NONE, HDR_ACCEPT, HDR_EXTENSIONS, HDR_PROTOCOL, HDR_COUNT };

/* What the server answered, as http_parser reads it. */
typedef struct answer {
    char status[64];                     /* reason phrase */
    char value[HDR_COUNT][WS_VALUE_MAX]; /* the headers looked at */
    char field[64];
    size_t field_len;
    int cur;                             /* the header whose value is being read */
    bool in_value;
    char body[WS_BODY_SHOWN + 1];
    size_t body_len;
    bool done;                           /* the whole head (and a refusal's body) is read */
} answer;

static void append(char *dst, size_t cap, const char *p, size_t n)
{
    size_t l = strlen(dst);
    if (l + 1 >= cap)
        return;
    if (n > cap - 1 - l)
        n = cap - 1 - l;
    memcpy(dst + l, p, n);
    dst[l + n] = '\0';
}

static int on_status(http_parser *hp, const char *p, size_t n)
{
    answer *a = hp->data;
    append(a->status, sizeof(a->status), p, n);
    return 0;
}

static int on_field(http_parser *hp, const char *p, size_t n)
{
    answer *a = hp->data;
    if (a->in_value) {
        a->in_value = false;
        a->field[0] = '\0';
    }
    append(a->field, sizeof(a->field), p, n);
    return 0;
}

static int on_value(http_parser *hp, const char *p, size_t n)
{
    answer *a = hp->data;
    if (!a->in_value) {
        a->in_value = true;
        a->cur = strcasecmp(a->field, "Sec-WebSocket-Accept") == 0       ? HDR_ACCEPT
                 : strcasecmp(a->field, "Sec-WebSocket-Extensions") == 0 ? HDR_EXTENSIONS
                 : strcasecmp(a->field, "Sec-WebSocket-Protocol") == 0   ? HDR_PROTOCOL
                                                                         : HDR_NONE;
    }
    if (a->cur != HDR_NONE)
        append(a->value[a->cur], WS_VALUE_MAX, p, n);
    return 0;
}

static int on_body(http_parser *hp, const char *p, size_t n)
{
    answer *a = hp->data;
    size_t room = WS_BODY_SHOWN - a->body_len;
    if (n > room)
        n = room;
    memcpy(a->body + a->body_len, p, n);
    a->body_len += n;
    a->body[a->body_len] = '\0';
    return 0;
}

static int on_complete(http_parser *hp)
{
    answer *a = hp->data;
    a->done = true;
    http_parser_pause(hp, 1); /* what follows is not HTTP */
    return 0;
}

static const http_parser_settings answer_settings = {
    .on_status = on_status,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_body = on_body,
    .on_message_complete = on_complete,
};

static void expected_accept(const char *key, char out[WS_ACCEPT_LEN + 1])
{
    char buf[WS_KEY_LEN + sizeof(WS_GUID)];
    unsigned char sha[SHA_DIGEST_LENGTH];
    snprintf(buf, sizeof(buf), "%s%s", key, WS_GUID);
    SHA1((const unsigned char *)buf, strlen(buf), sha);
    EVP_EncodeBlock((unsigned char *)out, sha, SHA_DIGEST_LENGTH);
}

/* A refused upgrade in one line: the status, then the first line of the body. */
static void refused(rc_client *c, const http_parser *hp, const answer *a, const char *path)
{
    size_t bl = strcspn(a->body, "\r\n");
    bool wrong_path = (hp->status_code == 200 || hp->status_code == 404) && strcmp(path, "/ws") != 0;
    snprintf(c->err, sizeof(c->err), "WebSocket upgrade refused: HTTP %u %s%s%.*s%s", hp->status_code, a->status,
             bl ? ": " : "", (int)bl, a->body, wrong_path ? " (ringcastd serves WebSocket at /ws)" : "");
}

/* Reads the server's answer to the upgrade, at most until the deadline.
 * 0 upgraded (bytes past the head kept in t->pre), -1 with c->err. */
static int read_answer(rc_client *c, struct rc_client_ws *t, const char *key, const char *path, int64_t deadline)
{
    answer a = { .cur = HDR_NONE };
    http_parser hp;
    http_parser_init(&hp, HTTP_RESPONSE);
    hp.data = &a;
    uint8_t buf[WS_HEAD_MAX];
    size_t len = 0, parsed = 0;
    bool eof = false;
    while (!a.done && !hp.upgrade) {
        int64_t left = deadline - (int64_t)rc_clock_mono_ms();
        if (eof || len == sizeof(buf) || left <= 0) {
            if (eof && hp.status_code && !a.done)
                http_parser_execute(&hp, &answer_settings, NULL, 0); /* the body ends with the stream */
            if (hp.status_code && hp.status_code != 101 && (eof || len == sizeof(buf))) {
                refused(c, &hp, &a, path);
                return -1;
            }
            snprintf(c->err, sizeof(c->err), "no answer to the WebSocket upgrade %s",
                     eof ? "before the server closed the connection"
                         : left <= 0 ? "in time" : "within its size bound");
            return -1;
        }
        struct pollfd pfd = { c->fd, POLLIN, 0 };
        int r = poll(&pfd, 1, (int)left);
        if (r <= 0)
            continue;
        ssize_t n = recv(c->fd, buf + len, sizeof(buf) - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            eof = true;
            continue;
        }
        len += (size_t)n;
        parsed += http_parser_execute(&hp, &answer_settings, (const char *)buf + parsed, len - parsed);
        enum http_errno he = HTTP_PARSER_ERRNO(&hp);
        if (he != HPE_OK && he != HPE_PAUSED) {
            snprintf(c->err, sizeof(c->err), "the answer to the WebSocket upgrade is not HTTP: %s",
                     http_errno_description(he));
            return -1;
        }
    }
    if (hp.status_code != 101) {
        refused(c, &hp, &a, path);
        return -1;
    }
    if (!hp.upgrade) {
        snprintf(c->err, sizeof(c->err), "WebSocket upgrade: 101 without Upgrade: websocket and Connection: Upgrade");
        return -1;
    }
    char want[WS_ACCEPT_LEN + 1];
    expected_accept(key, want);
    if (strcmp(a.value[HDR_ACCEPT], want) != 0) {
        snprintf(c->err, sizeof(c->err), "WebSocket upgrade: bad Sec-WebSocket-Accept \"%.40s\" (expected \"%s\")",
                 a.value[HDR_ACCEPT], want);
        return -1;
    }
    if (a.value[HDR_EXTENSIONS][0]) { /* none was offered (RFC 6455 §4.1) */
        snprintf(c->err, sizeof(c->err), "WebSocket upgrade: the server chose an extension not offered: %.120s",
                 a.value[HDR_EXTENSIONS]);
        return -1;
    }
    if (a.value[HDR_PROTOCOL][0] && strcmp(a.value[HDR_PROTOCOL], WS_SUBPROTOCOL) != 0) {
        snprintf(c->err, sizeof(c->err), "WebSocket upgrade: the server chose subprotocol %.100s, not " WS_SUBPROTOCOL,
                 a.value[HDR_PROTOCOL]);
        return -1;
    }
    t->pre_len = len - parsed;
    memcpy(t->pre, buf + parsed, t->pre_len);
    return 0;
}

/* Sends the upgrade request (RFC 6455 §4.1) and checks the answer. */
static int handshake(rc_client *c, struct rc_client_ws *t, const char *host, uint16_t port, const char *path,
                     int timeout_ms)
{
    int64_t deadline = (int64_t)rc_clock_mono_ms() + timeout_ms;
    uint8_t raw[WS_KEY_RAW];
    char key[WS_KEY_LEN + 1];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        snprintf(c->err, sizeof(c->err), "no random bytes for Sec-WebSocket-Key");
        return -1;
    }
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    char req[RC_CLIENT_WS_PATH_MAX + RC_CLIENT_WS_HOST_MAX + 256];
    bool v6 = strchr(host, ':') != NULL;
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s%s%s:%u\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: " WS_SUBPROTOCOL
                     "\r\n\r\n",
                     path, v6 ? "[" : "", host, v6 ? "]" : "", port, key);
    if (rc_client_send_raw(c, req, (size_t)n) != 0)
        return -1;
    return read_answer(c, t, key, path, deadline);
}

int rc_client_ws_upgrade(rc_client *c, const char *host, uint16_t port, const char *path, int timeout_ms)
{
    struct rc_client_ws *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(c->err, sizeof(c->err), "out of memory");
        return -1;
    }
    t->c = c;
    if (handshake(c, t, host, port, path, timeout_ms) != 0 ||
        wslay_event_context_client_init(&t->ctx, &ws_callbacks, t) != 0) {
        free(t);
        return -1;
    }
    wslay_event_config_set_max_recv_msg_length(t->ctx, WS_MAX_MSG);
    c->ws = t;
    /* Frames that came with the answer (a close for a refused Origin) are
     * read now, so that nothing waits unseen behind a quiet socket. */
    if (t->pre_len && ws_pump(c) < 0 && c->rlen == 0)
        return -1;
    return 0;
}
