/*
 * HTTP/1.x requests and responses, without sockets (ARCHITECTURE §1, the admin port).
 *
 * An rc_http_conn is the protocol half of one connection. The bytes read
 * from the socket go in through rc_http_feed(), which hands them to the
 * packaged parser (http_parser) and stops at the end of each request, so a
 * pipelined second request stays in the caller's buffer until the first one
 * is answered. Whoever owns the socket (the admin server's epoll loop; the
 * public HTTP port's io thread later) reads, writes and keeps the clock;
 * this module only says what the bytes mean and what the answer looks like.
 *
 * Limits are checked as the bytes arrive, never after buffering them: a head
 * longer than max_head is 431 at byte max_head + 1, a declared body longer
 * than max_body is 413 before any of it is read, a chunked one at the chunk
 * that crosses the bound.
 */
#ifndef RC_NET_HTTP_H
#define RC_NET_HTTP_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>

#define RC_HTTP_MAX_HEAD_DEFAULT 8192u  /* request line + headers, bytes; more is 431 */
#define RC_HTTP_MAX_BODY_DEFAULT 65536u /* request body, bytes; more is 413 */
#define RC_HTTP_MAX_HEADERS 64u         /* header lines in one request; more is 431 */
#define RC_HTTP_RESPONSE_HEAD_MAX 512u  /* status line + the headers we write */

/* Bounds of one connection's requests. */
typedef struct rc_http_limits {
    size_t max_head; /* request line + headers, bytes (431 past it) */
    size_t max_body; /* request body, bytes, declared or chunked (413 past it) */
} rc_http_limits;

typedef struct rc_http_header {
    const char *name;  /* as sent (compare with strcasecmp) */
    const char *value; /* as sent, without surrounding blanks */
} rc_http_header;

/* One whole request. Every pointer lives until rc_http_next() or _free(). */
typedef struct rc_http_request {
    const char *method;  /* "GET", "HEAD", "POST", ... */
    const char *path;    /* the target's path: no query string, no fragment */
    const char *query;   /* after '?', without it; "" when there is none */
    rc_http_header headers[RC_HTTP_MAX_HEADERS]; /* the head's; a chunked body's trailer fields are dropped */
    unsigned n_headers;
    const char *body;    /* NULL when the request has no body */
    size_t body_len;
    unsigned short http_major, http_minor;
    bool keep_alive;     /* the client asked for keep-alive and may have it */
} rc_http_request;

typedef enum rc_http_state {
    RC_HTTP_READING, /* a request is incomplete: feed more bytes */
    RC_HTTP_REQUEST, /* c->req is whole: answer it, then rc_http_next() */
    RC_HTTP_ERROR,   /* bad or over a limit: answer c->error_status, then close */
} rc_http_state;

/* The protocol state of one connection. */
typedef struct rc_http_conn {
    http_parser parser;
    rc_http_limits limits;
    rc_http_state state;
    int error_status;     /* 400, 413, 431, 500 or 505 once state is RC_HTTP_ERROR */
    rc_http_request req;  /* filled while parsing, whole in RC_HTTP_REQUEST */
    char *arena;          /* target, header names and values, NUL-separated */
    size_t arena_len, arena_cap;
    char *body;           /* request body, grown up to limits.max_body */
    size_t body_len, body_cap;
    size_t head_bytes;    /* bytes fed while the head was incomplete */
    bool head_done;       /* headers complete for the request in progress */
    int last_piece;       /* what the arena's last bytes belong to (url, field, value) */
} rc_http_conn;

/* ---- parsing requests ---- */

/* Default limits (the RC_HTTP_*_DEFAULT values). */
rc_http_limits rc_http_limits_default(void);

/* Ready for the first request. 0, or -1 when out of memory. */
int rc_http_conn_init(rc_http_conn *c, const rc_http_limits *limits);
void rc_http_conn_free(rc_http_conn *c);

/*
 * Parse bytes while c->state is RC_HTTP_READING. Returns how many were
 * used; the rest (a pipelined request) belongs to the next request and is
 * fed again after rc_http_next(). Feeds nothing once state has changed.
 */
size_t rc_http_feed(rc_http_conn *c, const char *data, size_t len);

/* After answering an RC_HTTP_REQUEST on a kept-alive connection: start the next one. */
void rc_http_next(rc_http_conn *c);

/* True once any byte of the request in progress has arrived. */
bool rc_http_started(const rc_http_conn *c);

/* The first header called name (case-insensitive), or NULL. */
const char *rc_http_header_get(const rc_http_request *r, const char *name);

/* ---- writing responses ---- */

/* "OK", "Not Found", ... for a status code. */
const char *rc_http_reason(int status);

/*
 * Status line and headers into buf: Content-Type, Content-Length,
 * Connection (keep-alive or close), then extra (whole "Name: value\r\n"
 * lines, may be ""), then the blank line. Returns the length, or -1 when
 * it does not fit in cap.
 */
int rc_http_response_head(char *buf, size_t cap, int status, const char *ctype, size_t content_length,
                          bool keep_alive, const char *extra);

#endif /* RC_NET_HTTP_H */
