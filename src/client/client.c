/*
 * Blocking protocol client. Frames are read into one growing buffer;
 * rc_client_recv decodes the next complete frame in place.
 */
#define _GNU_SOURCE
#include "ringcast/client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client/websocket.h"
#include "core/clock.h"

#define RC_CLIENT_READ 65536u /* bytes read per recv call */

static void client_init(rc_client *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->next_rid = 1;
    rc_decoder_init(&c->dec);
    rc_buf_init(&c->out);
}

/* The TCP connection of an initialised client. 0, or -1 with c->err. */
static int tcp_connect(rc_client *c, const char *host, uint16_t port, int timeout_ms)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *ai = NULL;
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", port);
    int r = getaddrinfo(host, ps, &hints, &ai);
    if (r != 0) {
        snprintf(c->err, sizeof(c->err), "cannot resolve %s: %s", host, gai_strerror(r));
        return -1;
    }
    c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        snprintf(c->err, sizeof(c->err), "cannot connect to %s:%u: %s", host, port, strerror(errno));
        freeaddrinfo(ai);
        if (c->fd >= 0)
            close(c->fd);
        c->fd = -1;
        return -1;
    }
    freeaddrinfo(ai);
    (void)timeout_ms;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

int rc_client_connect(rc_client *c, const char *host, uint16_t port, int timeout_ms)
{
    client_init(c);
    return tcp_connect(c, host, port, timeout_ms);
}

int rc_client_connect_url(rc_client *c, const char *url, int timeout_ms)
{
    char host[RC_CLIENT_WS_HOST_MAX], path[RC_CLIENT_WS_PATH_MAX];
    uint16_t port;
    client_init(c);
    if (rc_client_ws_parse_url(url, host, &port, path, c->err, sizeof(c->err)) != 0 ||
        tcp_connect(c, host, port, timeout_ms) != 0)
        return -1;
    return rc_client_ws_upgrade(c, host, port, path, timeout_ms);
}

int rc_client_open(rc_client *c, const char *addr, uint16_t port, int timeout_ms)
{
    if (strstr(addr, "://"))
        return rc_client_connect_url(c, addr, timeout_ms);
    return rc_client_connect(c, addr, port, timeout_ms);
}

void rc_client_close(rc_client *c)
{
    rc_client_ws_close(c);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->rbuf);
    c->rbuf = NULL;
    c->rlen = c->rcap = c->rpos = 0;
    rc_buf_free(&c->out);
    rc_decoder_free(&c->dec);
}

int rc_client_send_raw(rc_client *c, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(c->err, sizeof(c->err), "send failed: %s", strerror(errno));
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int rc_client_send(rc_client *c, const rc_msg *m)
{
    c->out.len = 0;
    if (rc_encode(&c->out, m) != 0) {
        snprintf(c->err, sizeof(c->err), "cannot encode %s", rc_type_name(m->type));
        return -1;
    }
    if (c->ws)
        return rc_client_ws_send(c, c->out.data + RC_FRAME_HEADER, c->out.len - RC_FRAME_HEADER);
    return rc_client_send_raw(c, c->out.data, c->out.len);
}

/* Reads more bytes, waiting at most timeout_ms: 1, 0 timeout, -1 closed. */
static int fill(rc_client *c, int timeout_ms)
{
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    if (c->rcap - c->rlen < RC_CLIENT_READ) {
        size_t cap = c->rcap ? c->rcap * 2 : RC_CLIENT_READ * 2;
        uint8_t *p = realloc(c->rbuf, cap);
        if (!p) {
            snprintf(c->err, sizeof(c->err), "out of memory");
            return -1;
        }
        c->rbuf = p;
        c->rcap = cap;
    }
    if (c->ws)
        return rc_client_ws_fill(c, timeout_ms);
    struct pollfd pfd = { c->fd, POLLIN, 0 };
    int r = poll(&pfd, 1, timeout_ms);
    if (r == 0)
        return 0;
    if (r < 0)
        return errno == EINTR ? 0 : -1;
    ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
    if (n <= 0) {
        snprintf(c->err, sizeof(c->err), "%s", n == 0 ? "connection closed by the server" : strerror(errno));
        return -1;
    }
    c->rlen += (size_t)n;
    return 1;
}

int rc_client_recv(rc_client *c, rc_msg *out, int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : (int64_t)rc_clock_mono_ms() + timeout_ms;
    for (;;) {
        size_t avail = c->rlen - c->rpos;
        if (avail >= RC_FRAME_HEADER) {
            uint32_t len = rc_frame_len(c->rbuf + c->rpos);
            if (avail - RC_FRAME_HEADER >= len) {
                const uint8_t *p = c->rbuf + c->rpos + RC_FRAME_HEADER;
                c->rpos += RC_FRAME_HEADER + len;
                const char *why = NULL;
                rc_err e = rc_decode(&c->dec, p, len, out, &why);
                if (e != RC_OK) {
                    snprintf(c->err, sizeof(c->err), "bad frame from server: %s (%s)", rc_err_name(e), why);
                    return -1;
                }
                if (out->type == RC_T_PING) { /* the server checks a silent connection (idle_timeout_ms) */
                    rc_msg pong = { .type = RC_T_PONG };
                    if (rc_client_send(c, &pong) != 0)
                        return -1;
                    continue;
                }
                return 1;
            }
        }
        /* timeout 0 still reads what the socket already holds. */
        int64_t left = deadline - (int64_t)rc_clock_mono_ms();
        if (left < 0)
            left = 0;
        int r = fill(c, timeout_ms < 0 ? -1 : (int)left);
        if (r < 0)
            return -1;
        if (r == 0 && left == 0)
            return 0;
    }
}

int rc_client_wait(rc_client *c, rc_type type, uint64_t rid, rc_msg *out, int timeout_ms)
{
    int64_t deadline = (int64_t)rc_clock_mono_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - (int64_t)rc_clock_mono_ms();
        if (left <= 0)
            return 0;
        int r = rc_client_recv(c, out, (int)left);
        if (r <= 0)
            return r;
        if ((out->type == type || out->type == RC_T_ERR) && (out->has & RC_HAS_RID) && out->rid == rid)
            return 1;
        if (out->type == RC_T_BYE) {
            snprintf(c->err, sizeof(c->err), "server said bye: %.*s", (int)out->reason.len, out->reason.ptr);
            return -1;
        }
    }
}

/* Sends m with a fresh rid and waits for `reply`: 0, rc_err code, or -1. */
static int request(rc_client *c, rc_msg *m, rc_type reply, rc_msg *out, int timeout_ms)
{
    m->has |= RC_HAS_RID;
    m->rid = c->next_rid++;
    if (rc_client_send(c, m) != 0)
        return -1;
    int r = rc_client_wait(c, reply, m->rid, out, timeout_ms);
    if (r == 0)
        snprintf(c->err, sizeof(c->err), "no %s reply within %d ms", rc_type_name(reply), timeout_ms);
    if (r <= 0)
        return -1;
    if (out->type == RC_T_ERR) {
        snprintf(c->err, sizeof(c->err), "%s: %.*s", rc_err_name(out->code), (int)out->text.len, out->text.ptr);
        return out->code == RC_OK ? RC_E_INTERNAL : (int)out->code;
    }
    return 0;
}

int rc_client_hello(rc_client *c, const char *user, int timeout_ms)
{
    return rc_client_hello_token(c, user, NULL, timeout_ms);
}

int rc_client_hello_token(rc_client *c, const char *user, const char *token, int timeout_ms)
{
    rc_msg m = { .type = RC_T_HELLO, .user = rc_str_c(user) }, r;
    if (token) {
        m.has |= RC_HAS_TOKEN;
        m.token = rc_str_c(token);
    }
    int e = request(c, &m, RC_T_WELCOME, &r, timeout_ms);
    if (e == 0) {
        c->max_frame = (uint32_t)r.max_frame;
        c->sid = r.sid;
    }
    return e;
}

int rc_client_refresh(rc_client *c, const char *token, int timeout_ms, uint64_t *exp)
{
    rc_msg m = { .type = RC_T_REFRESH, .has = RC_HAS_TOKEN, .token = rc_str_c(token) }, r;
    int e = request(c, &m, RC_T_REFRESHED, &r, timeout_ms);
    if (e == 0 && exp)
        *exp = r.exp;
    return e;
}

int rc_client_join(rc_client *c, const char *group, int timeout_ms, uint64_t *last_seq)
{
    rc_msg m = { .type = RC_T_JOIN, .g = rc_str_c(group) }, r;
    int e = request(c, &m, RC_T_JOINED, &r, timeout_ms);
    if (e == 0 && last_seq)
        *last_seq = r.seq;
    return e;
}

int rc_client_leave(rc_client *c, const char *group, int timeout_ms)
{
    rc_msg m = { .type = RC_T_LEAVE, .g = rc_str_c(group) }, r;
    return request(c, &m, RC_T_LEFT, &r, timeout_ms);
}

int rc_client_publish(rc_client *c, const char *group, const void *body, size_t len, const char *mid,
                      int timeout_ms, rc_msg *ack)
{
    rc_msg m = { .type = RC_T_SEND, .g = rc_str_c(group), .body = { body, (uint32_t)len } }, r;
    if (mid) {
        m.has |= RC_HAS_MID;
        m.mid = rc_str_c(mid);
    }
    int e = request(c, &m, RC_T_ACK, ack ? ack : &r, timeout_ms);
    return e;
}
