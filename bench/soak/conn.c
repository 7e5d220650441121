/*
 * Non-blocking connection: see conn.h.
 */
#define _GNU_SOURCE
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "soak.h"

int soak_conn_open(soak_conn *c, uint16_t port, int rcvbuf)
{
    memset(c, 0, sizeof *c);
    rc_buf_init(&c->out);
    rc_decoder_init(&c->dec);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (rcvbuf > 0)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS)
        goto fail;
    struct pollfd p = { c->fd, POLLOUT, 0 };
    int err = 0;
    socklen_t el = sizeof err;
    if (poll(&p, 1, SOAK_CONNECT_TIMEOUT_MS) != 1 ||
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0)
        goto fail;
    return 0;
fail:
    soak_conn_close(c);
    return -1;
}

void soak_conn_close(soak_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    rc_buf_free(&c->out);
    c->out_off = 0;
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
    rc_decoder_free(&c->dec);
}

int soak_conn_queue(soak_conn *c, const rc_msg *m)
{
    if (c->out_off == c->out.len)
        c->out_off = c->out.len = 0;
    return rc_encode(&c->out, m);
}

soak_conn_rc soak_conn_flush(soak_conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t w = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return SOAK_CONN_OK;
        return SOAK_CONN_CLOSED;
    }
    c->out_off = c->out.len = 0;
    return SOAK_CONN_OK;
}

/* Decodes the complete frames at the front of the input and keeps the rest. */
static soak_conn_rc decode_frames(soak_conn *c, soak_frame_fn fn, void *ud)
{
    size_t off = 0;
    while (c->in_len - off >= RC_FRAME_HEADER) {
        uint32_t n = rc_frame_len(c->in + off);
        if (n == 0 || n > SOAK_MAX_SERVER_FRAME)
            return SOAK_CONN_BAD_FRAME;
        if (c->in_len - off - RC_FRAME_HEADER < n)
            break;
        rc_msg m;
        const char *why = NULL;
        if (rc_decode(&c->dec, c->in + off + RC_FRAME_HEADER, n, &m, &why) != RC_OK)
            return SOAK_CONN_BAD_FRAME;
        fn(ud, &m);
        off += RC_FRAME_HEADER + n;
    }
    if (off > 0) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    return SOAK_CONN_OK;
}

/* Room for at least `want` more bytes; -1 on ENOMEM. */
static int in_reserve(soak_conn *c, size_t want)
{
    if (c->in_cap - c->in_len >= want)
        return 0;
    size_t cap = c->in_cap ? c->in_cap : 2 * SOAK_CONN_READ;
    while (cap - c->in_len < want)
        cap *= 2;
    uint8_t *p = realloc(c->in, cap);
    if (!p)
        return -1;
    c->in = p;
    c->in_cap = cap;
    return 0;
}

soak_conn_rc soak_conn_read(soak_conn *c, size_t max, soak_frame_fn fn, void *ud, size_t *got)
{
    *got = 0;
    while (*got < max) {
        size_t ask = max - *got < SOAK_CONN_READ ? max - *got : SOAK_CONN_READ;
        if (in_reserve(c, ask) < 0)
            return SOAK_CONN_CLOSED;
        ssize_t r = recv(c->fd, c->in + c->in_len, ask, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (r <= 0)
            return SOAK_CONN_CLOSED;
        c->in_len += (size_t)r;
        c->bytes_in += (uint64_t)r;
        *got += (size_t)r;
        soak_conn_rc rc = decode_frames(c, fn, ud);
        if (rc != SOAK_CONN_OK)
            return rc;
        if ((size_t)r < ask)
            break; /* the socket is empty for now */
    }
    return SOAK_CONN_OK;
}
