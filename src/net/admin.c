/*
 * The admin HTTP server (include/ringcast/admin.h).
 *
 * One thread, one connection at a time. The thread sleeps in poll() on the
 * listening socket and on the read end of a self-pipe; rc_admin_stop()
 * writes one byte to the pipe and never drains it, so from then on every
 * poll() in this file returns at once and the thread unwinds: stopping
 * takes no longer than the request in progress takes to notice.
 *
 * Sockets are non-blocking and every wait is a poll() with a deadline, so a
 * client that connects and says nothing holds the thread for at most
 * RC_ADMIN_IO_TIMEOUT_MS. After answering we shut down our side and drain
 * what the client still sends for a moment before close(): closing a socket
 * with unread input makes the kernel send RST, which can destroy the
 * response in flight (the 405 and 431 cases, where the client is still
 * sending).
 */
#define _GNU_SOURCE /* accept4, pipe2, memmem */
#include "ringcast/admin.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define BODY_MIN_CAP 256u          /* first allocation of a response body */
#define RESPONSE_HEAD_SIZE 512u    /* status line + our few headers */
#define ACCEPT_BACKOFF_MS 100      /* pause after accept() fails (EMFILE and friends) */
#define LINGER_MAX_BYTES 65536u    /* unread input we are willing to drain before close */
#define LINGER_CHUNK 4096u

struct rc_admin {
    int listen_fd;
    int wake[2]; /* self-pipe: [1] written once by rc_admin_stop, [0] polled */
    uint16_t port;
    rc_admin_handler fn;
    void *ud;
    pthread_t thread;
};

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

/* ---- waiting, with a deadline and the stop pipe ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 1 when fd is ready for events, 0 on timeout or stop, -1 on error. */
static int wait_fd(const rc_admin *a, int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p[2] = { { .fd = a->wake[0], .events = POLLIN },
                               { .fd = fd, .events = events } };
        int n = poll(p, 2, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (p[0].revents)
            return 0;
        if (p[1].revents)
            return 1;
    }
}

static bool stopping(const rc_admin *a)
{
    struct pollfd p = { .fd = a->wake[0], .events = POLLIN };
    return poll(&p, 1, 0) > 0;
}

/* ---- one connection ---- */

typedef enum head_result { HEAD_OK, HEAD_TOO_BIG, HEAD_GONE } head_result;

static bool head_complete(const char *buf, size_t len)
{
    return memmem(buf, len, "\r\n\r\n", 4) || memmem(buf, len, "\n\n", 2);
}

/* Read until the blank line ending the head; buf has RC_ADMIN_MAX_HEAD + 1 bytes. */
static head_result read_head(const rc_admin *a, int fd, char *buf, size_t *len)
{
    int64_t deadline = now_ms() + RC_ADMIN_IO_TIMEOUT_MS;
    *len = 0;
    while (*len < RC_ADMIN_MAX_HEAD) {
        if (wait_fd(a, fd, POLLIN, deadline) <= 0)
            return HEAD_GONE;
        ssize_t n = recv(fd, buf + *len, RC_ADMIN_MAX_HEAD - *len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            continue;
        if (n <= 0)
            return HEAD_GONE;
        *len += (size_t)n;
        buf[*len] = '\0';
        if (head_complete(buf, *len))
            return HEAD_OK;
    }
    return HEAD_TOO_BIG;
}

static int send_all(const rc_admin *a, int fd, const char *p, size_t len, int64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(a, fd, POLLOUT, deadline) <= 0)
                return -1;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return status < 400 ? "OK" : "Error";
    }
}

static void respond(const rc_admin *a, int fd, int status, const char *ctype, const char *body,
                    size_t len, const char *extra_headers)
{
    char head[RESPONSE_HEAD_SIZE];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n"
                     "%s\r\n",
                     status, reason_phrase(status), ctype, len, extra_headers);
    if (n < 0 || (size_t)n >= sizeof head)
        return;
    int64_t deadline = now_ms() + RC_ADMIN_IO_TIMEOUT_MS;
    if (send_all(a, fd, head, (size_t)n, deadline) == 0 && len > 0)
        send_all(a, fd, body, len, deadline);
}

static void respond_text(const rc_admin *a, int fd, int status, const char *text,
                         const char *extra_headers)
{
    respond(a, fd, status, RC_ADMIN_DEFAULT_CTYPE, text, strlen(text), extra_headers);
}

/*
 * Split "METHOD SP TARGET SP HTTP/1.x" in place. *path ends at '?' or '#'.
 * Returns 0 or -1 for a malformed request line.
 */
static int parse_request_line(char *buf, char **method, char **path)
{
    char *eol = strchr(buf, '\n');
    if (!eol)
        return -1;
    *eol = '\0';
    if (eol > buf && eol[-1] == '\r')
        eol[-1] = '\0';
    char *target = strchr(buf, ' ');
    if (!target || target == buf)
        return -1;
    *target++ = '\0';
    char *version = strchr(target, ' ');
    if (!version || *target != '/' || strncmp(version + 1, "HTTP/1.", 7) != 0)
        return -1;
    *version = '\0';
    target[strcspn(target, "?#")] = '\0';
    *method = buf;
    *path = target;
    return 0;
}

static void serve_handler(const rc_admin *a, int fd, const char *path)
{
    struct rc_admin_body body = { 0 };
    const char *ctype = RC_ADMIN_DEFAULT_CTYPE;
    int status = a->fn(a->ud, path, &body, &ctype);
    if (status < 100 || status > 599) {
        respond_text(a, fd, 500, "handler failed\n", "");
    } else {
        respond(a, fd, status, ctype ? ctype : RC_ADMIN_DEFAULT_CTYPE, body.data, body.len, "");
    }
    free(body.data);
}

static void serve(const rc_admin *a, int fd)
{
    char buf[RC_ADMIN_MAX_HEAD + 1];
    size_t len;
    char *method, *path;
    head_result r = read_head(a, fd, buf, &len);
    if (r == HEAD_GONE)
        return;
    if (r == HEAD_TOO_BIG)
        respond_text(a, fd, 431, "request head too large\n", "");
    else if (parse_request_line(buf, &method, &path) != 0)
        respond_text(a, fd, 400, "bad request\n", "");
    else if (strcmp(method, "GET") != 0)
        respond_text(a, fd, 405, "method not allowed\n", "Allow: GET\r\n");
    else
        serve_handler(a, fd, path);
}

/* Half-close, drain briefly so close() does not RST the response away, close. */
static void linger_close(const rc_admin *a, int fd)
{
    char scratch[LINGER_CHUNK];
    size_t drained = 0;
    int64_t deadline = now_ms() + RC_ADMIN_LINGER_MS;
    shutdown(fd, SHUT_WR);
    while (drained < LINGER_MAX_BYTES && wait_fd(a, fd, POLLIN, deadline) > 0) {
        ssize_t n = recv(fd, scratch, sizeof scratch, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            continue;
        if (n <= 0)
            break;
        drained += (size_t)n;
    }
    close(fd);
}

/* ---- the server thread ---- */

static void accept_one(const rc_admin *a)
{
    int fd = accept4(a->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
        serve(a, fd);
        linger_close(a, fd);
        return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
        return;
    fprintf(stderr, "level=warn component=admin event=accept_failed errno=%d error=\"%s\"\n",
            errno, strerror(errno));
    struct pollfd p = { .fd = a->wake[0], .events = POLLIN };
    poll(&p, 1, ACCEPT_BACKOFF_MS);
}

static void *admin_main(void *arg)
{
    const rc_admin *a = arg;
    while (!stopping(a)) {
        struct pollfd p[2] = { { .fd = a->wake[0], .events = POLLIN },
                               { .fd = a->listen_fd, .events = POLLIN } };
        int n = poll(p, 2, -1);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "level=error component=admin event=poll_failed error=\"%s\"\n",
                    strerror(errno));
            break;
        }
        if (n > 0 && p[1].revents)
            accept_one(a);
    }
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
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
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
        snprintf(err, errlen, "admin: cannot resolve \"%s\": %s", host ? host : "*",
                 gai_strerror(rc));
        return -1;
    }
    int saved = 0;
    for (const struct addrinfo *ai = list; ai && a->listen_fd < 0; ai = ai->ai_next) {
        a->listen_fd = listen_on(ai);
        saved = errno;
    }
    freeaddrinfo(list);
    if (a->listen_fd < 0) {
        snprintf(err, errlen, "admin: cannot listen on %s:%u: %s", host ? host : "*",
                 (unsigned)port, strerror(saved));
        return -1;
    }
    a->port = bound_port(a->listen_fd);
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

static void close_fds(rc_admin *a)
{
    if (a->listen_fd >= 0)
        close(a->listen_fd);
    if (a->wake[0] >= 0)
        close(a->wake[0]);
    if (a->wake[1] >= 0)
        close(a->wake[1]);
}

rc_admin *rc_admin_start(const char *host, uint16_t port, rc_admin_handler fn, void *ud,
                         char *err, size_t errlen)
{
    char scratch[1];
    int rc;
    if (!err || errlen == 0) {
        err = scratch;
        errlen = sizeof scratch;
    }
    rc_admin *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "admin: out of memory");
        return NULL;
    }
    *a = (rc_admin){ .listen_fd = -1, .wake = { -1, -1 }, .fn = fn, .ud = ud };
    if (open_listener(a, host, port, err, errlen) != 0)
        goto fail;
    if (pipe2(a->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(err, errlen, "admin: pipe: %s", strerror(errno));
        goto fail;
    }
    rc = start_thread(a);
    if (rc != 0) {
        snprintf(err, errlen, "admin: cannot start thread: %s", strerror(rc));
        goto fail;
    }
    return a;
fail:
    close_fds(a);
    free(a);
    return NULL;
}

uint16_t rc_admin_port(const rc_admin *a)
{
    return a->port;
}

void rc_admin_stop(rc_admin *a)
{
    if (!a)
        return;
    char one = 1;
    while (write(a->wake[1], &one, 1) < 0 && errno == EINTR) {
    }
    pthread_join(a->thread, NULL);
    close_fds(a);
    free(a);
}
