/*
 * The admin HTTP server: /metrics, /healthz, /readyz, /admin/... (ARCHITECTURE §2).
 *
 * A small HTTP/1.1 server on its own thread: one epoll loop serving up to
 * max_conns connections at once, each with its own deadlines, so a client
 * that sends slowly, sends garbage or never reads holds nothing but its own
 * slot, and only for a bounded time. Requests are parsed by http_parser
 * (src/net/http.h). GET, HEAD and POST are served; anything else is 405.
 * Responses say `Connection: close` unless the client asked for keep-alive.
 * Routing is the caller's: one handler gets the path (query string removed)
 * and fills a growable body.
 *
 * Every bound below has a default here and a field in rc_admin_limits; what
 * each one refused or closed is counted in rc_admin_stats.
 *
 * The handler runs on the admin thread, so whatever it reads from the rest
 * of the server must be safe to read from another thread.
 */
#ifndef RINGCAST_ADMIN_H
#define RINGCAST_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#define RC_ADMIN_MAX_CONNS 128u              /* connections served at once; past it 503 and close */
#define RC_ADMIN_HEADER_TIMEOUT_MS 3000u     /* a request's head must be complete by then (408 and close) */
#define RC_ADMIN_REQUEST_TIMEOUT_MS 10000u   /* head + body + response written, or close */
#define RC_ADMIN_LINGER_MS 500u              /* draining unread input before close */
#define RC_ADMIN_MAX_HEAD 8192u              /* request line + headers, bytes; larger is 431 */
#define RC_ADMIN_MAX_BODY 65536u             /* request body, bytes; larger is 413 */
#define RC_ADMIN_MAX_REQUESTS_PER_CONN 100u  /* requests on one kept-alive connection, then close */
#define RC_ADMIN_BACKLOG 64                  /* listen() backlog */
#define RC_ADMIN_DEFAULT_CTYPE "text/plain; charset=utf-8"

/* The server's bounds; rc_admin_limits_default() gives the RC_ADMIN_* values. */
typedef struct rc_admin_limits {
    unsigned max_conns;             /* connections served at once */
    unsigned header_timeout_ms;     /* from connect (or the previous answer) to the end of the head */
    unsigned request_timeout_ms;    /* from the same moment to the response written */
    unsigned linger_ms;             /* drain after the answer, before close */
    size_t max_head;                /* request line + headers, bytes */
    size_t max_body;                /* request body, bytes */
    unsigned max_requests_per_conn; /* answers on one connection */
} rc_admin_limits;

/* What the server did, counted since start. Read with rc_admin_stats_read(). */
struct rc_admin_stats {
    uint64_t connections_accepted;    /* accepted, the rejected ones included */
    uint64_t connections_open;        /* being served now (gauge) */
    uint64_t requests;                /* requests answered, any status */
    uint64_t timeouts_header;         /* closed: head incomplete at header_timeout_ms */
    uint64_t timeouts_request;        /* closed: exchange unfinished at request_timeout_ms */
    uint64_t rejected_busy;           /* answered 503 at once: max_conns were being served */
    uint64_t rejected_bad_request;    /* answered 400 (or 505): not HTTP/1.x we can parse */
    uint64_t rejected_head_too_large; /* answered 431 */
    uint64_t rejected_body_too_large; /* answered 413 */
    uint64_t rejected_method;         /* answered 405 */
};

/* A response body. The server owns the memory; the handler only appends. */
struct rc_admin_body {
    char *data; /* NUL-terminated once anything was appended, else NULL */
    size_t len; /* bytes of body, without the NUL */
    size_t cap; /* bytes allocated */
};

typedef struct rc_admin rc_admin;

/* One request, as the handler sees it (valid during the call). */
typedef struct rc_admin_request {
    const char *method;        /* "GET", "HEAD" or "POST" */
    const char *path;          /* no query string */
    const char *query;         /* after '?', without it; "" when there is none */
    const char *authorization; /* the Authorization header's value, or NULL */
    const char *body;          /* NULL when there is none */
    size_t body_len;
} rc_admin_request;

/*
 * Serve one GET, HEAD or POST (HEAD is answered from the same call as a GET,
 * without the body; other methods are 405 before the handler is called).
 * Append the body with rc_admin_body_printf(), optionally point *ctype at a
 * static content type (default RC_ADMIN_DEFAULT_CTYPE), return the HTTP
 * status (100..599; anything else is answered 500).
 */
typedef int (*rc_admin_handler)(void *ud, const rc_admin_request *req, struct rc_admin_body *body,
                                const char **ctype);

/* Append formatted text to b. Returns 0, or -1 when out of memory (b unchanged). */
int rc_admin_body_printf(struct rc_admin_body *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The RC_ADMIN_* defaults, for a caller that changes one field. */
rc_admin_limits rc_admin_limits_default(void);

/*
 * Bind host:port (SO_REUSEADDR; port 0 picks a free port), listen, and start
 * the server thread. Binding happens here, so a busy port or bad address is
 * reported now: returns NULL with a message in err. host NULL means every
 * interface. rc_admin_start uses the default limits.
 */
rc_admin *rc_admin_start(const char *host, uint16_t port, rc_admin_handler fn, void *ud,
                         char *err, size_t errlen);
rc_admin *rc_admin_start_limits(const char *host, uint16_t port, rc_admin_handler fn, void *ud,
                                const rc_admin_limits *limits, char *err, size_t errlen);

/* The port actually bound (the picked one when started with port 0). */
uint16_t rc_admin_port(const rc_admin *a);

/* A copy of the counters; safe from any thread (each value exact, not a snapshot of all). */
void rc_admin_stats_read(const rc_admin *a, struct rc_admin_stats *out);

/* Stop accepting, abandon the requests in progress, join the thread, free. NULL is a no-op. */
void rc_admin_stop(rc_admin *a);

#endif /* RINGCAST_ADMIN_H */
