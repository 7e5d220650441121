/*
 * HTTP/1.x requests and responses (src/net/http.h).
 *
 * http_parser calls back with pieces: the target, then each header's name
 * and value, each possibly split across reads. The pieces are appended to
 * one arena allocated once per connection, NUL-separated, so the request's
 * pointers never move and nothing is allocated per request except a body.
 * The arena holds at most max_head bytes plus one NUL per piece, which is
 * why its size is fixed: the head limit is checked before bytes are fed.
 *
 * The parser is paused in on_message_complete: http_parser_execute() then
 * returns the count of bytes up to the end of that request, and the rest
 * waits for rc_http_next().
 */
#define _GNU_SOURCE /* strcasecmp */
#include "net/http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ARENA_SLACK (2u * RC_HTTP_MAX_HEADERS + 2u) /* the NULs ending the pieces */
#define BODY_MIN_CAP 1024u                          /* first allocation of a request body */

enum piece { PIECE_NONE, PIECE_URL, PIECE_FIELD, PIECE_VALUE };

rc_http_limits rc_http_limits_default(void)
{
    return (rc_http_limits){ .max_head = RC_HTTP_MAX_HEAD_DEFAULT, .max_body = RC_HTTP_MAX_BODY_DEFAULT };
}

/* ---- callbacks: collect the pieces ---- */

static int fail(rc_http_conn *c, int status)
{
    c->error_status = status;
    return -1;
}

/* Ends the piece in progress with a NUL; the arena always has room for it. */
static void end_piece(rc_http_conn *c)
{
    if (c->last_piece != PIECE_NONE)
        c->arena[c->arena_len++] = '\0';
}

/* Appends to the piece of kind `kind`, starting a new one when kind changes.
 * Fields after the head are a chunked body's trailer: they are not headers
 * and are dropped (http_parser still bounds their size, 431 past it); kept,
 * the last one's value would have no NUL, as on_headers_complete ends the
 * pieces. */
static int add_piece(rc_http_conn *c, enum piece kind, const char *at, size_t len)
{
    rc_http_request *r = &c->req;
    if (c->head_done)
        return 0;
    if (c->last_piece != (int)kind) {
        end_piece(c);
        if (kind == PIECE_FIELD) {
            if (r->n_headers == RC_HTTP_MAX_HEADERS)
                return fail(c, 431);
            r->headers[r->n_headers].name = c->arena + c->arena_len;
            r->headers[r->n_headers].value = "";
            r->n_headers++;
        } else if (kind == PIECE_VALUE) {
            if (r->n_headers == 0) /* the parser gives a name first; never trust that blindly */
                return fail(c, 400);
            r->headers[r->n_headers - 1].value = c->arena + c->arena_len;
        }
        c->last_piece = kind;
    }
    if (len + 1 > c->arena_cap - c->arena_len) /* + 1: this piece's NUL */
        return fail(c, 431);
    memcpy(c->arena + c->arena_len, at, len);
    c->arena_len += len;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    return add_piece(p->data, PIECE_URL, at, len);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    return add_piece(p->data, PIECE_FIELD, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    return add_piece(p->data, PIECE_VALUE, at, len);
}

/* Splits the target (arena start) into path and query, in place. */
static int split_target(rc_http_conn *c, bool is_connect)
{
    char *url = c->arena;
    size_t len = strlen(url);
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (len == 0 || http_parser_parse_url(url, len, is_connect, &u) != 0)
        return -1;
    bool has_path = u.field_set & (1u << UF_PATH), has_query = u.field_set & (1u << UF_QUERY);
    size_t path_off = u.field_data[UF_PATH].off, path_end = path_off + u.field_data[UF_PATH].len;
    size_t query_off = u.field_data[UF_QUERY].off, query_end = query_off + u.field_data[UF_QUERY].len;
    c->req.path = has_path ? url + path_off : "/";
    c->req.query = has_query ? url + query_off : "";
    if (has_path)
        url[path_end] = '\0';
    if (has_query)
        url[query_end] = '\0';
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    rc_http_conn *c = p->data;
    end_piece(c);
    c->last_piece = PIECE_NONE;
    c->head_done = true;
    if (p->http_major != 1)
        return fail(c, 505);
    c->req.method = http_method_str((enum http_method)p->method);
    c->req.http_major = p->http_major;
    c->req.http_minor = p->http_minor;
    if (split_target(c, p->method == HTTP_CONNECT) != 0)
        return fail(c, 400);
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->limits.max_body)
        return fail(c, 413);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    rc_http_conn *c = p->data;
    if (len > c->limits.max_body - c->body_len)
        return fail(c, 413);
    if (c->body_len + len > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : BODY_MIN_CAP;
        while (cap < c->body_len + len)
            cap *= 2;
        if (cap > c->limits.max_body)
            cap = c->limits.max_body;
        char *body = realloc(c->body, cap);
        if (!body)
            return fail(c, 500);
        c->body = body;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    rc_http_conn *c = p->data;
    c->req.body = c->body_len ? c->body : NULL;
    c->req.body_len = c->body_len;
    /* Kept alive only when asked for: a plain HTTP/1.1 request is answered
     * with Connection: close, which every client handles. */
    c->req.keep_alive = (p->flags & F_CONNECTION_KEEP_ALIVE) && !p->upgrade && http_should_keep_alive(p);
    c->state = RC_HTTP_REQUEST;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- the connection ---- */

static void start_request(rc_http_conn *c)
{
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->state = RC_HTTP_READING;
    c->error_status = 0;
    memset(&c->req, 0, sizeof c->req);
    c->arena_len = 0;
    c->body_len = 0;
    c->head_bytes = 0;
    c->head_done = false;
    c->last_piece = PIECE_NONE;
}

int rc_http_conn_init(rc_http_conn *c, const rc_http_limits *limits)
{
    memset(c, 0, sizeof *c);
    c->limits = limits ? *limits : rc_http_limits_default();
    c->arena_cap = c->limits.max_head + ARENA_SLACK;
    c->arena = malloc(c->arena_cap);
    if (!c->arena)
        return -1;
    start_request(c);
    return 0;
}

void rc_http_conn_free(rc_http_conn *c)
{
    free(c->arena);
    free(c->body);
    c->arena = c->body = NULL;
}

void rc_http_next(rc_http_conn *c)
{
    start_request(c);
}

bool rc_http_started(const rc_http_conn *c)
{
    return c->head_bytes > 0 || c->head_done;
}

size_t rc_http_feed(rc_http_conn *c, const char *data, size_t len)
{
    if (c->state != RC_HTTP_READING || len == 0) /* len 0 would tell the parser "EOF" */
        return 0;
    size_t n = len;
    if (!c->head_done && n > c->limits.max_head - c->head_bytes)
        n = c->limits.max_head - c->head_bytes; /* so the 431 comes at the limit, not after */
    size_t used = http_parser_execute(&c->parser, &settings, data, n);
    if (!c->head_done)
        c->head_bytes += used;
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_PAUSED)
        return used; /* on_message_complete: state is RC_HTTP_REQUEST */
    if (e != HPE_OK) {
        c->state = RC_HTTP_ERROR;
        if (!c->error_status)
            c->error_status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
    } else if (!c->head_done && c->head_bytes >= c->limits.max_head) {
        c->state = RC_HTTP_ERROR;
        c->error_status = 431;
    }
    return used;
}

const char *rc_http_header_get(const rc_http_request *r, const char *name)
{
    for (unsigned i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

/* ---- responses ---- */

const char *rc_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return status < 400 ? "OK" : "Error";
    }
}

int rc_http_response_head(char *buf, size_t cap, int status, const char *ctype, size_t content_length,
                          bool keep_alive, const char *extra)
{
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: %s\r\n"
                     "%s\r\n",
                     status, rc_http_reason(status), ctype, content_length,
                     keep_alive ? "keep-alive" : "close", extra ? extra : "");
    return n < 0 || (size_t)n >= cap ? -1 : n;
}
