/*
 * The admin HTTP server (include/ringcast/admin.h).
 *
 * One thread, one level-triggered epoll set: the listening socket, an
 * eventfd that rc_admin_stop() writes, and every connection. A connection
 * is in one of three phases, and its epoll interest follows the phase:
 *
 *   READ    bytes go to its rc_http_conn until a request is whole (EPOLLIN)
 *   WRITE   the response goes out, as far as the socket takes it (EPOLLOUT)
 *   LINGER  our side is shut, we drain what the client still sends (EPOLLIN)
 *
 * While a response is being written the connection reads nothing, so a
 * pipelined request waits in its buffer (or the kernel's) and requests are
 * answered in order. Every phase has a deadline, and each turn of the loop
 * sleeps until the nearest one: a client that sends a byte a second is
 * closed at header_timeout_ms, one that never reads its answer at
 * request_timeout_ms. Connections are at most max_conns, so a scan of them
 * per turn is cheap and needs no timer structure.
 *
 * Closing a socket with unread input makes the kernel send RST, which can
 * destroy the response in flight (the 405 and 431 cases, where the client
 * is still sending). So an answer that ends a connection is followed by
 * shutdown(SHUT_WR) and a short drain before close(): the LINGER phase.
 */
#define _GNU_SOURCE /* accept4 */
#include "ringcast/admin.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/stats.h"
#include "net/http.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define BODY_MIN_CAP 256u       /* first allocation of a response body */
#define READ_CHUNK 4096u        /* input buffer of one connection */
#define EPOLL_BATCH 64          /* events taken per epoll_wait */
#define ACCEPT_BURST 32         /* accepts per turn, so connections already open get their turn */
#define ACCEPT_BACKOFF_MS 100   /* pause accepting after accept() fails (EMFILE and friends) */
#define LINGER_MAX_BYTES 65536u /* unread input we are willing to drain before close */
#define LINGER_CHUNK 4096u
#define REJECT_DRAIN_BYTES 4096u /* input read off a rejected connection before its 503 */

/* ---- counters ---- */

#define ADMIN_COUNTERS(X)                                                                          \
    X(connections_accepted) X(connections_open) X(requests) X(timeouts_header) X(timeouts_request) \
    X(rejected_busy) X(rejected_bad_request) X(rejected_head_too_large) X(rejected_body_too_large) \
    X(rejected_method)

/* Written by the admin thread only (RC_STAT_ADD), read from any. */
struct admin_counters {
#define X(name) _Atomic uint64_t name;
    ADMIN_COUNTERS(X)
#undef X
};

#define COUNT(a, name) RC_STAT_ADD((a)->counters.name, 1)

/* ---- connections ---- */

typedef enum conn_phase { PHASE_READ, PHASE_WRITE, PHASE_LINGER } conn_phase;

typedef struct admin_conn {
    int fd;
    unsigned slot;            /* index in rc_admin.conns */
    conn_phase phase;
    rc_http_conn http;        /* the request being read */
    unsigned answered;        /* requests answered on this connection */
    int64_t head_deadline;    /* the request head must be complete by then */
    int64_t request_deadline; /* the whole exchange must be done by then */
    int64_t linger_deadline;  /* LINGER: close by then */
    bool close_after;         /* WRITE: linger and close once the response is out */
    char in[READ_CHUNK];      /* bytes read, in[in_off..in_len) not yet parsed */
    size_t in_off, in_len;
    char head[RC_HTTP_RESPONSE_HEAD_MAX]; /* WRITE: response head */
    size_t head_len;
    struct rc_admin_body body; /* WRITE: response body */
    size_t body_send;          /* body bytes to send: 0 for HEAD */
    size_t sent;               /* bytes of head, then body, written */
    size_t drained;            /* LINGER: bytes drained */
} admin_conn;

struct rc_admin {
    int listen_fd;
    int epoll_fd;
    int wake_fd; /* eventfd: written once by rc_admin_stop */
    uint16_t port;
    rc_admin_handler fn;
    void *ud;
    rc_admin_limits lim;
    pthread_t thread;
    admin_conn **conns; /* lim.max_conns slots, NULL when free */
    unsigned n_conns;
    int64_t accept_resume; /* accepting paused until then; 0 when not paused */
    struct admin_counters counters;
};

/* epoll tags for the two sockets that are not connections. */
static char tag_listen, tag_wake;

/* ---- response bodies ---- */

static int body_reserve(struct rc_admin_body *b, size_t need)
{
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : BODY_MIN_CAP;
    while (cap < need) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    char *data = realloc(b->data, cap);
    if (!data)
        return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

int rc_admin_body_printf(struct rc_admin_body *b, const char *fmt, ...)
{
    for (;;) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0)
            return -1;
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return 0;
        }
        if ((size_t)n >= SIZE_MAX - b->len || body_reserve(b, b->len + (size_t)n + 1) != 0) {
            if (b->data)
                b->data[b->len] = '\0'; /* undo a truncated partial write */
            return -1;
        }
    }
}

/* ---- small helpers ---- */

static int64_t now_ms(void)
{
    return (int64_t)rc_clock_mono_ms();
}

static bool would_block(void)
{
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

static void watch(rc_admin *a, admin_conn *c, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = c };
    epoll_ctl(a->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_close(rc_admin *a, admin_conn *c)
{
    epoll_ctl(a->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    a->conns[c->slot] = NULL;
    a->n_conns--;
    /* relaxed: a gauge for the metrics page; the admin thread is its only writer. */
    atomic_store_explicit(&a->counters.connections_open, a->n_conns, memory_order_relaxed);
    rc_http_conn_free(&c->http);
    free(c->body.data);
    free(c);
}

/* Deadlines of a request that starts now: after accept, or after the previous answer. */
static void arm_request(rc_admin *a, admin_conn *c)
{
    int64_t now = now_ms();
    c->head_deadline = now + a->lim.header_timeout_ms;
    c->request_deadline = now + a->lim.request_timeout_ms;
}

/* ---- writing: the response, then linger or the next request ---- */

static void start_linger(rc_admin *a, admin_conn *c)
{
    shutdown(c->fd, SHUT_WR);
    c->phase = PHASE_LINGER;
    c->linger_deadline = now_ms() + a->lim.linger_ms;
    c->drained = 0;
    watch(a, c, EPOLLIN);
}

static void process_input(rc_admin *a, admin_conn *c);

/* The response is out: close, or make ready for the next request. */
static void response_done(rc_admin *a, admin_conn *c)
{
    free(c->body.data);
    c->body = (struct rc_admin_body){ 0 };
    if (c->close_after) {
        start_linger(a, c);
        return;
    }
    rc_http_next(&c->http);
    arm_request(a, c);
    c->phase = PHASE_READ;
    watch(a, c, EPOLLIN);
    process_input(a, c); /* a pipelined request may already be buffered */
}

/* Writes what the socket takes; returns false when the connection was closed. */
static bool write_some(rc_admin *a, admin_conn *c)
{
    size_t total = c->head_len + c->body_send;
    while (c->sent < total) {
        struct iovec iov[2];
        int n = 0;
        if (c->sent < c->head_len)
            iov[n++] = (struct iovec){ c->head + c->sent, c->head_len - c->sent };
        size_t body_off = c->sent > c->head_len ? c->sent - c->head_len : 0;
        if (c->body_send > body_off)
            iov[n++] = (struct iovec){ c->body.data + body_off, c->body_send - body_off };
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)n };
        ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (w < 0 && would_block())
            return true; /* EPOLLOUT brings us back */
        if (w <= 0) {
            conn_close(a, c);
            return false;
        }
        c->sent += (size_t)w;
    }
    response_done(a, c);
    return true;
}

/* Queues a response (head built here, body taken over) and starts writing it. */
static void respond(rc_admin *a, admin_conn *c, int status, const char *ctype, struct rc_admin_body *body,
                    bool head_only, const char *extra)
{
    COUNT(a, requests);
    c->answered++;
    if (c->answered >= a->lim.max_requests_per_conn)
        c->close_after = true;
    int n = rc_http_response_head(c->head, sizeof c->head, status, ctype, body->len, !c->close_after, extra);
    if (n < 0) { /* cannot happen with our own headers; never send half a head */
        free(body->data);
        conn_close(a, c);
        return;
    }
    c->head_len = (size_t)n;
    c->body = *body;
    c->body_send = head_only ? 0 : body->len;
    c->sent = 0;
    c->phase = PHASE_WRITE;
    watch(a, c, EPOLLOUT);
    write_some(a, c);
}

static bool is_head(const admin_conn *c)
{
    return c->http.head_done && c->http.parser.method == HTTP_HEAD;
}

static void respond_text(rc_admin *a, admin_conn *c, int status, const char *text, const char *extra)
{
    struct rc_admin_body body = { 0 };
    c->close_after = true; /* our own error answers end the connection */
    if (rc_admin_body_printf(&body, "%s", text) != 0) {
        conn_close(a, c);
        return;
    }
    respond(a, c, status, RC_ADMIN_DEFAULT_CTYPE, &body, is_head(c), extra);
}

/* ---- reading: requests and the server's own answers ---- */

static void serve_request(rc_admin *a, admin_conn *c)
{
    const rc_http_request *r = &c->http.req;
    bool head_only = is_head(c);
    unsigned method = c->http.parser.method;
    if (!head_only && method != HTTP_GET && method != HTTP_POST) {
        COUNT(a, rejected_method);
        respond_text(a, c, 405, "method not allowed\n", "Allow: GET, HEAD, POST\r\n");
        return;
    }
    c->close_after = !r->keep_alive;
    struct rc_admin_body body = { 0 };
    const char *ctype = RC_ADMIN_DEFAULT_CTYPE;
    rc_admin_request req = { .method = head_only ? "HEAD" : method == HTTP_POST ? "POST" : "GET",
                             .path = r->path, .query = r->query,
                             .authorization = rc_http_header_get(r, "authorization"),
                             .body = r->body, .body_len = r->body_len };
    int status = a->fn(a->ud, &req, &body, &ctype);
    if (status < 100 || status > 599) {
        free(body.data);
        respond_text(a, c, 500, "handler failed\n", "");
        return;
    }
    respond(a, c, status, ctype ? ctype : RC_ADMIN_DEFAULT_CTYPE, &body, head_only, "");
}

static void serve_error(rc_admin *a, admin_conn *c, int status)
{
    switch (status) {
    case 413:
        COUNT(a, rejected_body_too_large);
        respond_text(a, c, 413, "request body too large\n", "");
        break;
    case 431:
        COUNT(a, rejected_head_too_large);
        respond_text(a, c, 431, "request head too large\n", "");
        break;
    case 505:
        COUNT(a, rejected_bad_request);
        respond_text(a, c, 505, "HTTP/1.x only\n", "");
        break;
    case 500:
        respond_text(a, c, 500, "out of memory\n", "");
        break;
    default:
        COUNT(a, rejected_bad_request);
        respond_text(a, c, 400, "bad request\n", "");
        break;
    }
}

/* Parses buffered input until it is used up or a request (or error) is whole. */
static void process_input(rc_admin *a, admin_conn *c)
{
    while (c->phase == PHASE_READ && c->in_off < c->in_len) {
        c->in_off += rc_http_feed(&c->http, c->in + c->in_off, c->in_len - c->in_off);
        if (c->http.state == RC_HTTP_REQUEST)
            serve_request(a, c); /* may close c: nothing may touch it after this */
        else if (c->http.state == RC_HTTP_ERROR)
            serve_error(a, c, c->http.error_status);
        else
            continue;
        return;
    }
}

static void read_some(rc_admin *a, admin_conn *c)
{
    ssize_t n = recv(c->fd, c->in, sizeof c->in, 0);
    if (n < 0 && would_block())
        return;
    if (n <= 0) { /* the client left, or broke the connection */
        conn_close(a, c);
        return;
    }
    c->in_off = 0;
    c->in_len = (size_t)n;
    process_input(a, c);
}

static void drain_some(rc_admin *a, admin_conn *c)
{
    char scratch[LINGER_CHUNK];
    ssize_t n = recv(c->fd, scratch, sizeof scratch, 0);
    if (n < 0 && would_block())
        return;
    if (n > 0)
        c->drained += (size_t)n;
    if (n <= 0 || c->drained >= LINGER_MAX_BYTES)
        conn_close(a, c);
}

static void conn_event(rc_admin *a, admin_conn *c)
{
    switch (c->phase) {
    case PHASE_READ: read_some(a, c); break;
    case PHASE_WRITE: write_some(a, c); break;
    case PHASE_LINGER: drain_some(a, c); break;
    }
}

/* ---- deadlines ---- */

/* The moment c's current phase runs out. */
static int64_t conn_deadline(const admin_conn *c)
{
    if (c->phase == PHASE_LINGER)
        return c->linger_deadline;
    if (c->phase == PHASE_READ && !c->http.head_done && c->head_deadline < c->request_deadline)
        return c->head_deadline;
    return c->request_deadline;
}

/* A head that did not come in time: 408 when it had begun, silence for an idle connection. */
static void header_timeout(rc_admin *a, admin_conn *c, int64_t now)
{
    COUNT(a, timeouts_header);
    if (!rc_http_started(&c->http)) {
        conn_close(a, c);
        return;
    }
    c->request_deadline = now + a->lim.linger_ms; /* the 408 gets a moment, no more */
    respond_text(a, c, 408, "request head not received in time\n", "");
}

static void expire(rc_admin *a, int64_t now)
{
    for (unsigned i = 0; i < a->lim.max_conns; i++) {
        admin_conn *c = a->conns[i];
        if (!c || conn_deadline(c) > now)
            continue;
        if (c->phase == PHASE_LINGER) {
            conn_close(a, c);
        } else if (c->phase == PHASE_READ && !c->http.head_done && c->head_deadline <= now) {
            header_timeout(a, c, now);
        } else {
            COUNT(a, timeouts_request);
            conn_close(a, c);
        }
    }
}

/* Milliseconds until the nearest deadline, -1 when there is none. */
static int next_timeout(const rc_admin *a, int64_t now)
{
    int64_t next = a->accept_resume ? a->accept_resume : INT64_MAX;
    for (unsigned i = 0; i < a->lim.max_conns; i++)
        if (a->conns[i] && conn_deadline(a->conns[i]) < next)
            next = conn_deadline(a->conns[i]);
    if (next == INT64_MAX)
        return -1;
    return next <= now ? 0 : (int)(next - now < INT32_MAX ? next - now : INT32_MAX);
}

/* ---- accepting ---- */

/* Past max_conns: read what already came (so close() sends no RST over it), 503, close. */
static void reject_busy(rc_admin *a, int fd)
{
    static const char text[] = "too many admin connections\n";
    char scratch[REJECT_DRAIN_BYTES], head[RC_HTTP_RESPONSE_HEAD_MAX];
    COUNT(a, rejected_busy);
    int n = rc_http_response_head(head, sizeof head, 503, RC_ADMIN_DEFAULT_CTYPE, sizeof text - 1, false, "");
    if (n > 0 && (recv(fd, scratch, sizeof scratch, 0) >= 0 || would_block())) {
        struct iovec iov[2] = { { head, (size_t)n }, { (void *)text, sizeof text - 1 } };
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
        if (sendmsg(fd, &msg, MSG_NOSIGNAL) > 0)
            shutdown(fd, SHUT_WR);
    }
    close(fd);
}

static void conn_open(rc_admin *a, int fd)
{
    admin_conn *c = calloc(1, sizeof *c);
    rc_http_limits hl = { .max_head = a->lim.max_head, .max_body = a->lim.max_body };
    if (!c || rc_http_conn_init(&c->http, &hl) != 0) {
        free(c);
        reject_busy(a, fd); /* out of memory: the same answer, try later */
        return;
    }
    unsigned slot = 0;
    while (a->conns[slot])
        slot++; /* n_conns < max_conns, so a slot is free */
    c->fd = fd;
    c->slot = slot;
    c->phase = PHASE_READ;
    arm_request(a, c);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
    if (epoll_ctl(a->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        rc_http_conn_free(&c->http);
        free(c);
        close(fd);
        return;
    }
    a->conns[slot] = c;
    a->n_conns++;
    atomic_store_explicit(&a->counters.connections_open, a->n_conns, memory_order_relaxed);
}

static void pause_accepting(rc_admin *a)
{
    RC_LOG_WARN("admin", "event=accept_failed errno=%d error=\"%s\" pause_ms=%d", errno, strerror(errno),
                ACCEPT_BACKOFF_MS);
    epoll_ctl(a->epoll_fd, EPOLL_CTL_DEL, a->listen_fd, NULL);
    a->accept_resume = now_ms() + ACCEPT_BACKOFF_MS;
}

static void resume_accepting(rc_admin *a, int64_t now)
{
    if (!a->accept_resume || now < a->accept_resume)
        return;
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &tag_listen };
    if (epoll_ctl(a->epoll_fd, EPOLL_CTL_ADD, a->listen_fd, &ev) == 0)
        a->accept_resume = 0;
    else
        a->accept_resume = now + ACCEPT_BACKOFF_MS;
}

static void accept_some(rc_admin *a)
{
    for (int i = 0; i < ACCEPT_BURST; i++) {
        int fd = accept4(a->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
            continue;
        if (fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (fd < 0) {
            pause_accepting(a);
            return;
        }
        COUNT(a, connections_accepted);
        if (a->n_conns >= a->lim.max_conns)
            reject_busy(a, fd);
        else
            conn_open(a, fd);
    }
}

/* ---- the server thread ---- */

static void *admin_main(void *arg)
{
    rc_admin *a = arg;
    struct epoll_event ev[EPOLL_BATCH];
    for (;;) {
        int n = epoll_wait(a->epoll_fd, ev, EPOLL_BATCH, next_timeout(a, now_ms()));
        if (n < 0 && errno != EINTR) {
            RC_LOG_ERROR("admin", "event=epoll_failed error=\"%s\"", strerror(errno));
            break;
        }
        bool stop = false;
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == &tag_wake)
                stop = true;
            else if (ev[i].data.ptr == &tag_listen)
                accept_some(a);
            else
                conn_event(a, ev[i].data.ptr);
        }
        if (stop)
            break;
        int64_t now = now_ms();
        expire(a, now);
        resume_accepting(a, now);
    }
    for (unsigned i = 0; i < a->lim.max_conns; i++)
        if (a->conns[i])
            conn_close(a, a->conns[i]);
    return NULL;
}

/* ---- start and stop ---- */

static uint16_t bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* One socket bound and listening on ai, or -1 with errno set. */
static int listen_on(const struct addrinfo *ai)
{
    int one = 1;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
        bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, RC_ADMIN_BACKLOG) == 0)
        return fd;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

static int open_listener(rc_admin *a, const char *host, uint16_t port, char *err, size_t errlen)
{
    char service[8];
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *list;
    snprintf(service, sizeof service, "%u", (unsigned)port);
    int rc = getaddrinfo(host, service, &hints, &list);
    if (rc != 0) {
        snprintf(err, errlen, "admin: cannot resolve \"%s\": %s", host ? host : "*", gai_strerror(rc));
        return -1;
    }
    int saved = 0;
    for (const struct addrinfo *ai = list; ai && a->listen_fd < 0; ai = ai->ai_next) {
        a->listen_fd = listen_on(ai);
        saved = errno;
    }
    freeaddrinfo(list);
    if (a->listen_fd < 0) {
        snprintf(err, errlen, "admin: cannot listen on %s:%u: %s", host ? host : "*", (unsigned)port,
                 strerror(saved));
        return -1;
    }
    a->port = bound_port(a->listen_fd);
    return 0;
}

/* The epoll set with the listener and the stop eventfd in it. */
static int open_loop(rc_admin *a, char *err, size_t errlen)
{
    a->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    a->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = &tag_listen };
    struct epoll_event wev = { .events = EPOLLIN, .data.ptr = &tag_wake };
    if (a->epoll_fd < 0 || a->wake_fd < 0 || epoll_ctl(a->epoll_fd, EPOLL_CTL_ADD, a->listen_fd, &lev) != 0 ||
        epoll_ctl(a->epoll_fd, EPOLL_CTL_ADD, a->wake_fd, &wev) != 0) {
        snprintf(err, errlen, "admin: epoll: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* The thread starts with every signal blocked: signals belong to the main thread. */
static int start_thread(rc_admin *a)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&a->thread, NULL, admin_main, a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static void destroy(rc_admin *a)
{
    if (a->listen_fd >= 0)
        close(a->listen_fd);
    if (a->epoll_fd >= 0)
        close(a->epoll_fd);
    if (a->wake_fd >= 0)
        close(a->wake_fd);
    free(a->conns);
    free(a);
}

static bool limits_valid(const rc_admin_limits *l)
{
    return l->max_conns > 0 && l->header_timeout_ms > 0 && l->request_timeout_ms > 0 && l->max_head > 0 &&
           l->max_requests_per_conn > 0;
}

rc_admin_limits rc_admin_limits_default(void)
{
    return (rc_admin_limits){
        .max_conns = RC_ADMIN_MAX_CONNS,
        .header_timeout_ms = RC_ADMIN_HEADER_TIMEOUT_MS,
        .request_timeout_ms = RC_ADMIN_REQUEST_TIMEOUT_MS,
        .linger_ms = RC_ADMIN_LINGER_MS,
        .max_head = RC_ADMIN_MAX_HEAD,
        .max_body = RC_ADMIN_MAX_BODY,
        .max_requests_per_conn = RC_ADMIN_MAX_REQUESTS_PER_CONN,
    };
}

rc_admin *rc_admin_start_limits(const char *host, uint16_t port, rc_admin_handler fn, void *ud,
                                const rc_admin_limits *limits, char *err, size_t errlen)
{
    char scratch[1];
    if (!err || errlen == 0) {
        err = scratch;
        errlen = sizeof scratch;
    }
    rc_admin_limits lim = limits ? *limits : rc_admin_limits_default();
    if (!limits_valid(&lim)) {
        snprintf(err, errlen, "admin: a limit is zero");
        return NULL;
    }
    rc_admin *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "admin: out of memory");
        return NULL;
    }
    *a = (rc_admin){ .listen_fd = -1, .epoll_fd = -1, .wake_fd = -1, .fn = fn, .ud = ud, .lim = lim };
    a->conns = calloc(lim.max_conns, sizeof *a->conns);
    if (!a->conns) {
        snprintf(err, errlen, "admin: out of memory");
        goto fail;
    }
    if (open_listener(a, host, port, err, errlen) != 0 || open_loop(a, err, errlen) != 0)
        goto fail;
    int rc = start_thread(a);
    if (rc != 0) {
        snprintf(err, errlen, "admin: cannot start thread: %s", strerror(rc));
        goto fail;
    }
    return a;
fail:
    destroy(a);
    return NULL;
}

rc_admin *rc_admin_start(const char *host, uint16_t port, rc_admin_handler fn, void *ud, char *err,
                         size_t errlen)
{
    return rc_admin_start_limits(host, port, fn, ud, NULL, err, errlen);
}

uint16_t rc_admin_port(const rc_admin *a)
{
    return a->port;
}

void rc_admin_stats_read(const rc_admin *a, struct rc_admin_stats *out)
{
#define X(name) out->name = rc_stat_get(&a->counters.name);
    ADMIN_COUNTERS(X)
#undef X
}

void rc_admin_stop(rc_admin *a)
{
    if (!a)
        return;
    uint64_t one = 1;
    while (write(a->wake_fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
    pthread_join(a->thread, NULL);
    destroy(a);
}
