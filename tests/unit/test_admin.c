/*
 * Unit tests for the admin HTTP server (src/net/admin.c) and its request
 * parser (src/net/http.c).
 *
 * The parser is driven directly, without sockets: requests split into single
 * bytes, pipelined requests, chunked bodies, every limit and malformed input.
 * The server is driven through plain client sockets: routing to the handler,
 * query strings, HEAD, keep-alive, the server's own 400/405/408/413/431/500/
 * 503 answers, large bodies, bind errors, many slow clients at once, the
 * deadlines and the counters, and that stop returns promptly even with an
 * idle client connected.
 */
#include "ringcast/admin.h"

#include "net/http.h"
#include "testutil.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#define CLIENT_TIMEOUT_MS 5000
#define BIG_LINES 20000
#define OVERSIZED_HEADER 10000
#define STOP_LIMIT_MS 1000

static rc_admin *server;
static atomic_int handler_calls;

static int handler(void *ud, const rc_admin_request *req, struct rc_admin_body *body, const char **ctype)
{
    (void)ud;
    const char *path = req->path;
    atomic_fetch_add(&handler_calls, 1);
    if (strcmp(req->method, "POST") == 0) {
        rc_admin_body_printf(body, "post %s auth=%s body=%.*s\n", path, req->authorization ? req->authorization : "-",
                             (int)req->body_len, req->body ? req->body : "");
        return 200;
    }
    if (strcmp(path, "/healthz") == 0) {
        rc_admin_body_printf(body, "ok\n");
        return 200;
    }
    if (strcmp(path, "/metrics") == 0) {
        *ctype = "text/plain; version=0.0.4";
        for (int i = 0; i < BIG_LINES; i++)
            if (rc_admin_body_printf(body, "rc_test_metric{n=\"%d\"} %d\n", i, i) != 0)
                return 500;
        return 200;
    }
    if (strcmp(path, "/broken") == 0)
        return 42;
    rc_admin_body_printf(body, "not found: %s\n", path);
    return 404;
}

/* ---- a tiny blocking client ---- */

static void send_all(int fd, const char *p, size_t len)
{
    for (size_t off = 0; off < len;) {
        ssize_t n = send(fd, p + off, len - off, MSG_NOSIGNAL);
        CU_ASSERT_FATAL(n > 0);
        off += (size_t)n;
    }
}

/* Reads until EOF (or a reset, which ends the response too); malloc'ed, NUL-terminated. */
static char *read_to_eof(int fd)
{
    size_t cap = 4096, used = 0;
    char *resp = malloc(cap);
    CU_ASSERT_FATAL(resp != NULL);
    for (;;) {
        if (used + 1 == cap) {
            cap *= 2;
            resp = realloc(resp, cap);
            CU_ASSERT_FATAL(resp != NULL);
        }
        ssize_t n = recv(fd, resp + used, cap - used - 1, 0);
        CU_ASSERT_FATAL(n >= 0 || errno == ECONNRESET);
        if (n <= 0)
            break;
        used += (size_t)n;
    }
    resp[used] = '\0';
    return resp;
}

/* Send request to port, read the whole response until EOF. */
static char *exchange_on(uint16_t port, const char *request, size_t len)
{
    int fd = rc_test_tcp_connect(port, CLIENT_TIMEOUT_MS);
    CU_ASSERT_FATAL(fd >= 0);
    send_all(fd, request, len);
    char *resp = read_to_eof(fd);
    close(fd);
    return resp;
}

static char *exchange(const char *request, size_t len)
{
    return exchange_on(rc_admin_port(server), request, len);
}

static char *get(const char *target)
{
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", target);
    return exchange(req, (size_t)n);
}

static const char *body_of(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");
    return p ? p + 4 : "";
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- tests ---- */

static int suite_init(void)
{
    char err[256];
    server = rc_admin_start("127.0.0.1", 0, handler, NULL, err, sizeof err);
    if (!server)
        fprintf(stderr, "rc_admin_start: %s\n", err);
    return server ? 0 : 1;
}

static int suite_cleanup(void)
{
    rc_admin_stop(server);
    server = NULL;
    return 0;
}

static void test_port_picked(void)
{
    CU_ASSERT_NOT_EQUAL(rc_admin_port(server), 0);
}

static void test_healthz(void)
{
    char *r = get("/healthz");
    CU_ASSERT_EQUAL(strncmp(r, "HTTP/1.1 200 OK\r\n", 17), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(r, "Content-Length: 3\r\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r, "Connection: close\r\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r, "Content-Type: text/plain; charset=utf-8\r\n"));
    CU_ASSERT_STRING_EQUAL(body_of(r), "ok\n");
    free(r);
}

static void test_query_string_removed(void)
{
    char *r = get("/healthz?verbose=1");
    CU_ASSERT_EQUAL(strncmp(r, "HTTP/1.1 200 ", 13), 0);
    CU_ASSERT_STRING_EQUAL(body_of(r), "ok\n");
    free(r);
}

static void test_unknown_path(void)
{
    char *r = get("/nope");
    CU_ASSERT_EQUAL(strncmp(r, "HTTP/1.1 404 Not Found\r\n", 24), 0);
    CU_ASSERT_STRING_EQUAL(body_of(r), "not found: /nope\n");
    free(r);
}

static void test_post_reaches_handler(void)
{
    const char *req = "POST /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k1\r\nContent-Length: 5\r\n\r\nhello";
    int before = atomic_load(&handler_calls);
    char *r = exchange(req, strlen(req));
    CU_ASSERT_EQUAL(strncmp(r, "HTTP/1.1 200 ", 13), 0);
    CU_ASSERT_STRING_EQUAL(body_of(r), "post /healthz auth=Bearer k1 body=hello\n");
    CU_ASSERT_EQUAL(atomic_load(&handler_calls), before + 1);
    free(r);
}

static void test_oversized_head_is_431(void)
{
    size_t len = OVERSIZED_HEADER + 64;
    char *req = malloc(len);
    CU_ASSERT_FATAL(req != NULL);
    int n = snprintf(req, len, "GET /healthz HTTP/1.1\r\nX-Big: ");
    memset(req + n, 'a', OVERSIZED_HEADER);
    memcpy(req + n + OVERSIZED_HEADER, "\r\n\r\n", 4);
    char *r = exchange(req, (size_t)n + OVERSIZED_HEADER + 4);
    CU_ASSERT_EQUAL(strncmp(r, "HTTP/1.1 431 ", 13), 0);
    free(r);
    free(req);
}

static void test_malformed_is_400(void)
{
    const char *bad[] = { "garbage\r\n\r\n", "GET\r\n\r\n", "GET nopath HTTP/1.1\r\n\r\n",
                          "GET / SPDY/3\r\n\r\n" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *r = exchange(bad[i], strlen(bad[i]));
        CU_ASSERT_EQUAL(strncmp(r, "HTTP/1.1 400 ", 13), 0);
        free(r);
    }
}

static void test_large_body(void)
{
    char *r = get("/metrics");
    CU_ASSERT_EQUAL(strncmp(r, "HTTP/1.1 200 ", 13), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(r, "Content-Type: text/plain; version=0.0.4\r\n"));
    const char *body = body_of(r);
    char expect[64];
    snprintf(expect, sizeof expect, "Content-Length: %zu\r\n", strlen(body));
    CU_ASSERT_PTR_NOT_NULL(strstr(r, expect));
    snprintf(expect, sizeof expect, "rc_test_metric{n=\"%d\"} %d\n", BIG_LINES - 1, BIG_LINES - 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(body, expect));
    free(r);
}

static void test_bad_status_is_500(void)
{
    char *r = get("/broken");
    CU_ASSERT_EQUAL(strncmp(r, "HTTP/1.1 500 ", 13), 0);
    free(r);
}

static void test_body_printf(void)
{
    struct rc_admin_body b = { 0 };
    CU_ASSERT_EQUAL(rc_admin_body_printf(&b, "%s", ""), 0);
    CU_ASSERT_EQUAL(b.len, 0);
    for (int i = 0; i < 1000; i++)
        CU_ASSERT_EQUAL(rc_admin_body_printf(&b, "%04d,", i), 0);
    CU_ASSERT_EQUAL(b.len, 5000);
    CU_ASSERT_TRUE(b.cap > b.len);
    CU_ASSERT_EQUAL(b.data[b.len], '\0');
    CU_ASSERT_EQUAL(strncmp(b.data + 4995, "0999,", 5), 0);
    free(b.data);
}

static void test_port_in_use(void)
{
    char err[256] = "";
    rc_admin *other = rc_admin_start("127.0.0.1", rc_admin_port(server), handler, NULL, err,
                                     sizeof err);
    CU_ASSERT_PTR_NULL(other);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot listen"));
    rc_admin_stop(other);
}

static void test_stop_with_idle_client(void)
{
    char err[256];
    rc_admin *a = rc_admin_start("127.0.0.1", 0, handler, NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    uint16_t port = rc_admin_port(a);
    int idle = rc_test_tcp_connect(port, CLIENT_TIMEOUT_MS); /* connects, never sends */
    CU_ASSERT(idle >= 0);
    usleep(50 * 1000); /* let the server pick it up and wait in read */
    int64_t t0 = now_ms();
    rc_admin_stop(a);
    CU_ASSERT(now_ms() - t0 < STOP_LIMIT_MS);
    close(idle);
    int fd = rc_test_tcp_connect(port, CLIENT_TIMEOUT_MS);
    CU_ASSERT(fd < 0); /* nobody listens any more */
    if (fd >= 0)
        close(fd);
}

/* ---- the parser alone: no sockets ---- */

#define SMALL_HEAD 256u
#define SMALL_BODY 64u

static rc_http_conn parser;

static void parser_open(size_t max_head, size_t max_body)
{
    rc_http_limits lim = { .max_head = max_head, .max_body = max_body };
    CU_ASSERT_FATAL(rc_http_conn_init(&parser, &lim) == 0);
}

/* Feeds all of s (the rest after a request stays unfed); returns bytes used. */
static size_t parser_feed(const char *s, size_t len)
{
    size_t used = 0;
    while (used < len && parser.state == RC_HTTP_READING) {
        size_t n = rc_http_feed(&parser, s + used, len - used);
        if (n == 0)
            break;
        used += n;
    }
    return used;
}

static void test_parse_split_into_bytes(void)
{
    const char *req = "GET /a/b?x=1&y HTTP/1.1\r\nHost: h\r\nX-Long:  spaced value \r\n\r\n";
    parser_open(RC_HTTP_MAX_HEAD_DEFAULT, RC_HTTP_MAX_BODY_DEFAULT);
    size_t len = strlen(req);
    CU_ASSERT_FALSE(rc_http_started(&parser));
    for (size_t i = 0; i < len; i++) {
        CU_ASSERT_EQUAL_FATAL(parser.state, RC_HTTP_READING);
        CU_ASSERT_EQUAL(rc_http_feed(&parser, req + i, 1), 1);
        CU_ASSERT_TRUE(rc_http_started(&parser));
    }
    CU_ASSERT_EQUAL_FATAL(parser.state, RC_HTTP_REQUEST);
    CU_ASSERT_STRING_EQUAL(parser.req.method, "GET");
    CU_ASSERT_STRING_EQUAL(parser.req.path, "/a/b");
    CU_ASSERT_STRING_EQUAL(parser.req.query, "x=1&y");
    CU_ASSERT_EQUAL(parser.req.n_headers, 2);
    CU_ASSERT_STRING_EQUAL(rc_http_header_get(&parser.req, "host"), "h");
    CU_ASSERT_STRING_EQUAL(rc_http_header_get(&parser.req, "x-long"), "spaced value ");
    CU_ASSERT_PTR_NULL(rc_http_header_get(&parser.req, "missing"));
    CU_ASSERT_PTR_NULL(parser.req.body);
    CU_ASSERT_FALSE(parser.req.keep_alive); /* HTTP/1.1 without Connection: keep-alive */
    rc_http_conn_free(&parser);
}

static void test_parse_pipelined(void)
{
    const char *reqs = "GET /1 HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"
                       "POST /2 HTTP/1.1\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"
                       "\r\nGET /3 HTTP/1.0\r\n\r\n"
                       "GET /4";
    size_t len = strlen(reqs), off = 0;
    parser_open(RC_HTTP_MAX_HEAD_DEFAULT, RC_HTTP_MAX_BODY_DEFAULT);
    off += parser_feed(reqs + off, len - off);
    CU_ASSERT_EQUAL_FATAL(parser.state, RC_HTTP_REQUEST);
    CU_ASSERT_EQUAL(off, strlen("GET /1 HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"));
    CU_ASSERT_STRING_EQUAL(parser.req.path, "/1");
    CU_ASSERT_TRUE(parser.req.keep_alive);
    CU_ASSERT_EQUAL(rc_http_feed(&parser, reqs + off, len - off), 0); /* waits for rc_http_next */
    rc_http_next(&parser);
    off += parser_feed(reqs + off, len - off);
    CU_ASSERT_EQUAL_FATAL(parser.state, RC_HTTP_REQUEST);
    CU_ASSERT_STRING_EQUAL(parser.req.method, "POST");
    CU_ASSERT_STRING_EQUAL(parser.req.path, "/2");
    CU_ASSERT_EQUAL_FATAL(parser.req.body_len, 5);
    CU_ASSERT_EQUAL(memcmp(parser.req.body, "hello", 5), 0);
    CU_ASSERT_TRUE(parser.req.keep_alive);
    rc_http_next(&parser);
    off += parser_feed(reqs + off, len - off); /* the stray CRLF before a request is allowed */
    CU_ASSERT_EQUAL_FATAL(parser.state, RC_HTTP_REQUEST);
    CU_ASSERT_STRING_EQUAL(parser.req.path, "/3");
    CU_ASSERT_EQUAL(parser.req.http_minor, 0);
    CU_ASSERT_FALSE(parser.req.keep_alive);
    rc_http_next(&parser);
    off += parser_feed(reqs + off, len - off);
    CU_ASSERT_EQUAL(off, len);
    CU_ASSERT_EQUAL(parser.state, RC_HTTP_READING); /* "GET /4" is not whole */
    CU_ASSERT_TRUE(rc_http_started(&parser));
    rc_http_conn_free(&parser);
}

static void test_parse_chunked_body(void)
{
    const char *req = "POST /api HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    parser_open(RC_HTTP_MAX_HEAD_DEFAULT, RC_HTTP_MAX_BODY_DEFAULT);
    for (size_t i = 0; req[i]; i++) /* byte by byte: chunk sizes split too */
        CU_ASSERT_EQUAL(rc_http_feed(&parser, req + i, 1), 1);
    CU_ASSERT_EQUAL_FATAL(parser.state, RC_HTTP_REQUEST);
    CU_ASSERT_EQUAL_FATAL(parser.req.body_len, 11);
    CU_ASSERT_EQUAL(memcmp(parser.req.body, "hello world", 11), 0);
    rc_http_conn_free(&parser);
}

/* Parses req with small limits; returns the error status (0 when it parsed). */
static int parse_status(const char *req, size_t len)
{
    parser_open(SMALL_HEAD, SMALL_BODY);
    parser_feed(req, len);
    int status = parser.state == RC_HTTP_ERROR ? parser.error_status : parser.state == RC_HTTP_REQUEST ? 0 : -1;
    rc_http_conn_free(&parser);
    return status;
}

/* Found by tests/fuzz/fuzz_http (tests/fuzz/regress/http/): a chunked
 * body's trailer fields were taken as headers after the head was ended,
 * the last value without its NUL, so reading it ran past the arena. */
static void test_parse_trailer_is_not_headers(void)
{
    const char *req = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n0\r\nTrailer: t\r\nX-Other: value\r\n\r\n";
    parser_open(SMALL_HEAD, SMALL_BODY);
    CU_ASSERT_EQUAL(parser_feed(req, strlen(req)), strlen(req));
    CU_ASSERT_EQUAL_FATAL(parser.state, RC_HTTP_REQUEST);
    CU_ASSERT_EQUAL_FATAL(parser.req.n_headers, 1);
    CU_ASSERT_STRING_EQUAL(parser.req.headers[0].value, "chunked");
    CU_ASSERT_PTR_NULL(rc_http_header_get(&parser.req, "x-other"));
    CU_ASSERT_EQUAL_FATAL(parser.req.body_len, 5);
    CU_ASSERT_EQUAL(memcmp(parser.req.body, "hello", 5), 0);
    rc_http_conn_free(&parser);

    /* Dropped, a trailer is still bounded: http_parser's header size is 431. */
    const char *head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Big: ";
    size_t n = strlen(head), len = n + HTTP_MAX_HEADER_SIZE + 4;
    char *big = malloc(len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memcpy(big, head, n);
    memset(big + n, 'a', len - n - 4);
    memcpy(big + len - 4, "\r\n\r\n", 4);
    CU_ASSERT_EQUAL(parse_status(big, len), 431);
    free(big);
}

static void test_parse_limits(void)
{
    char req[4 * SMALL_HEAD];
    int n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nX-Big: ");
    memset(req + n, 'a', sizeof req - (size_t)n);
    parser_open(SMALL_HEAD, SMALL_BODY);
    size_t used = parser_feed(req, sizeof req);
    CU_ASSERT_EQUAL(parser.state, RC_HTTP_ERROR);
    CU_ASSERT_EQUAL(parser.error_status, 431);
    CU_ASSERT_EQUAL(used, SMALL_HEAD); /* refused at the limit, not after reading on */
    rc_http_conn_free(&parser);

    n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\n");
    for (unsigned i = 0; i <= RC_HTTP_MAX_HEADERS; i++)
        n += snprintf(req + n, sizeof req - (size_t)n, "a:\r\n");
    n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
    CU_ASSERT_EQUAL(parse_status(req, (size_t)n), 431); /* too many header lines */

    n = snprintf(req, sizeof req, "POST / HTTP/1.1\r\nContent-Length: %u\r\n\r\n", SMALL_BODY + 1);
    CU_ASSERT_EQUAL(parse_status(req, (size_t)n), 413); /* declared: refused before the body */
    n = snprintf(req, sizeof req, "POST / HTTP/1.1\r\nContent-Length: %u\r\n\r\n", SMALL_BODY);
    memset(req + n, 'b', SMALL_BODY);
    CU_ASSERT_EQUAL(parse_status(req, (size_t)n + SMALL_BODY), 0); /* exactly the limit is fine */
    n = snprintf(req, sizeof req, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 5; i++)
        n += snprintf(req + n, sizeof req - (size_t)n, "10\r\n0123456789abcdef\r\n");
    CU_ASSERT_EQUAL(parse_status(req, (size_t)n), 413); /* chunked: at the chunk that crosses */
}

static void test_parse_malformed(void)
{
    const char *bad[] = { "garbage\r\n\r\n", "GET\r\n\r\n", "GET nopath HTTP/1.1\r\n\r\n",
                          "GET / SPDY/3\r\n\r\n", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                          "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                          "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                          "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_EQUAL(parse_status(bad[i], strlen(bad[i])), 400);
    const char *v2 = "GET / HTTP/2.0\r\n\r\n";
    int st = parse_status(v2, strlen(v2));
    CU_ASSERT(st == 505 || st == 400);
}

static void test_parse_absolute_target(void)
{
    const char *req = "GET http://localhost:7481/metrics?x HTTP/1.1\r\n\r\n";
    parser_open(RC_HTTP_MAX_HEAD_DEFAULT, RC_HTTP_MAX_BODY_DEFAULT);
    parser_feed(req, strlen(req));
    CU_ASSERT_EQUAL_FATAL(parser.state, RC_HTTP_REQUEST);
    CU_ASSERT_STRING_EQUAL(parser.req.path, "/metrics");
    CU_ASSERT_STRING_EQUAL(parser.req.query, "x");
    rc_http_conn_free(&parser);
}

static void test_response_head(void)
{
    char buf[RC_HTTP_RESPONSE_HEAD_MAX];
    int n = rc_http_response_head(buf, sizeof buf, 413, "text/plain", 7, false, "X-A: b\r\n");
    CU_ASSERT_FATAL(n > 0);
    CU_ASSERT_STRING_EQUAL(buf, "HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\n"
                                "Content-Length: 7\r\nConnection: close\r\nX-A: b\r\n\r\n");
    CU_ASSERT_EQUAL(rc_http_response_head(buf, 16, 200, "text/plain", 0, true, ""), -1);
}

/* ---- the server: HEAD, keep-alive, limits, many clients at once ---- */

#define SLOW_CLIENTS 20
#define SPLIT_SEND_PAUSE_US 1000

static void test_head_request(void)
{
    const char *req = "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    char *r = exchange(req, strlen(req));
    CU_ASSERT_EQUAL(strncmp(r, "HTTP/1.1 200 OK\r\n", 17), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(r, "Content-Length: 3\r\n"));
    CU_ASSERT_STRING_EQUAL(body_of(r), "");
    free(r);
}

static void test_other_methods_are_405(void)
{
    const char *reqs[] = { "PUT /healthz HTTP/1.1\r\n\r\n", "DELETE /x HTTP/1.1\r\n\r\n",
                           "OPTIONS /healthz HTTP/1.1\r\n\r\n" };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        char *r = exchange(reqs[i], strlen(reqs[i]));
        CU_ASSERT_EQUAL(strncmp(r, "HTTP/1.1 405 ", 13), 0);
        free(r);
    }
}

static void test_body_too_big_is_413(void)
{
    char req[256];
    int n = snprintf(req, sizeof req, "GET /healthz HTTP/1.1\r\nContent-Length: %u\r\n\r\nsome of it",
                     RC_ADMIN_MAX_BODY + 1);
    int before = atomic_load(&handler_calls);
    char *r = exchange(req, (size_t)n);
    CU_ASSERT_EQUAL(strncmp(r, "HTTP/1.1 413 ", 13), 0);
    CU_ASSERT_EQUAL(atomic_load(&handler_calls), before);
    free(r);
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_pipelined_keep_alive(void)
{
    const char *reqs = "GET /healthz HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"
                       "GET /nope HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"
                       "HEAD /healthz HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"
                       "GET /healthz HTTP/1.1\r\n\r\n";
    char *r = exchange(reqs, strlen(reqs));
    CU_ASSERT_EQUAL(count_of(r, "HTTP/1.1 "), 4);
    const char *first = strstr(r, "HTTP/1.1 200"), *second = strstr(r, "HTTP/1.1 404");
    CU_ASSERT_PTR_NOT_NULL(first);
    CU_ASSERT(first && second && first < second); /* answered in order */
    CU_ASSERT_EQUAL(count_of(r, "Connection: keep-alive\r\n"), 3);
    CU_ASSERT_EQUAL(count_of(r, "Connection: close\r\n"), 1);
    const char *tail = strstr(r, "Connection: close\r\n");
    CU_ASSERT(tail && strcmp(body_of(tail), "ok\n") == 0); /* the last answer, then EOF */
    free(r);
}

static void test_split_into_bytes(void)
{
    const char *req = "GET /healthz?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    int fd = rc_test_tcp_connect(rc_admin_port(server), CLIENT_TIMEOUT_MS);
    CU_ASSERT_FATAL(fd >= 0);
    for (size_t i = 0; req[i]; i++) {
        send_all(fd, req + i, 1);
        usleep(SPLIT_SEND_PAUSE_US);
    }
    char *r = read_to_eof(fd);
    close(fd);
    CU_ASSERT_EQUAL(strncmp(r, "HTTP/1.1 200 ", 13), 0);
    CU_ASSERT_STRING_EQUAL(body_of(r), "ok\n");
    free(r);
}

/* Half-sent requests on many connections do not hold up a whole one. */
static void test_slow_clients_do_not_block(void)
{
    int slow[SLOW_CLIENTS];
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        slow[i] = rc_test_tcp_connect(rc_admin_port(server), CLIENT_TIMEOUT_MS);
        CU_ASSERT_FATAL(slow[i] >= 0);
        send_all(slow[i], "GET /heal", 9);
    }
    int64_t t0 = now_ms();
    char *r = get("/healthz");
    CU_ASSERT_EQUAL(strncmp(r, "HTTP/1.1 200 ", 13), 0);
    CU_ASSERT(now_ms() - t0 < RC_ADMIN_HEADER_TIMEOUT_MS); /* not after the slow ones time out */
    free(r);
    struct rc_admin_stats st;
    rc_admin_stats_read(server, &st);
    CU_ASSERT(st.connections_open >= SLOW_CLIENTS);
    for (int i = 0; i < SLOW_CLIENTS; i++)
        close(slow[i]);
}

/* ---- a server with small limits and short deadlines ---- */

#define TIGHT_CONNS 4
#define TIGHT_HEADER_MS 300
#define TIGHT_REQUEST_MS 1000
#define TIGHT_LINGER_MS 100
#define TIGHT_REQUESTS 2
#define SETTLE_MS 3000 /* longest wait for the server to see a close */

static rc_admin *tight;

static int tight_init(void)
{
    rc_admin_limits lim = rc_admin_limits_default();
    lim.max_conns = TIGHT_CONNS;
    lim.header_timeout_ms = TIGHT_HEADER_MS;
    lim.request_timeout_ms = TIGHT_REQUEST_MS;
    lim.linger_ms = TIGHT_LINGER_MS;
    lim.max_requests_per_conn = TIGHT_REQUESTS;
    char err[256];
    tight = rc_admin_start_limits("127.0.0.1", 0, handler, NULL, &lim, err, sizeof err);
    if (!tight)
        fprintf(stderr, "rc_admin_start_limits: %s\n", err);
    return tight ? 0 : 1;
}

static int tight_cleanup(void)
{
    rc_admin_stop(tight);
    tight = NULL;
    return 0;
}

static struct rc_admin_stats tight_stats(void)
{
    struct rc_admin_stats st;
    rc_admin_stats_read(tight, &st);
    return st;
}

/* Waits until the tight server serves `want` connections; true when it did. */
static bool tight_wait_open(uint64_t want)
{
    for (int64_t end = now_ms() + SETTLE_MS; now_ms() < end; usleep(5000))
        if (tight_stats().connections_open == want)
            return true;
    return false;
}

static void test_zero_limit_refused(void)
{
    rc_admin_limits lim = rc_admin_limits_default();
    lim.max_conns = 0;
    char err[256] = "";
    CU_ASSERT_PTR_NULL(rc_admin_start_limits("127.0.0.1", 0, handler, NULL, &lim, err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "limit"));
}

static void test_header_timeout_is_408(void)
{
    uint64_t before = tight_stats().timeouts_header;
    int fd = rc_test_tcp_connect(rc_admin_port(tight), CLIENT_TIMEOUT_MS);
    CU_ASSERT_FATAL(fd >= 0);
    send_all(fd, "GET /heal", 9);
    char *r = read_to_eof(fd); /* ends when the server closes */
    close(fd);
    CU_ASSERT_EQUAL(strncmp(r, "HTTP/1.1 408 ", 13), 0);
    CU_ASSERT_EQUAL(tight_stats().timeouts_header, before + 1);
    free(r);
}

static void test_idle_connection_closed(void)
{
    uint64_t before = tight_stats().timeouts_header;
    int fd = rc_test_tcp_connect(rc_admin_port(tight), CLIENT_TIMEOUT_MS);
    CU_ASSERT_FATAL(fd >= 0);
    char *r = read_to_eof(fd);
    close(fd);
    CU_ASSERT_STRING_EQUAL(r, ""); /* closed without a word */
    CU_ASSERT_EQUAL(tight_stats().timeouts_header, before + 1);
    free(r);
}

static void test_slow_body_closed(void)
{
    uint64_t before = tight_stats().timeouts_request;
    int fd = rc_test_tcp_connect(rc_admin_port(tight), CLIENT_TIMEOUT_MS);
    CU_ASSERT_FATAL(fd >= 0);
    const char *req = "GET /healthz HTTP/1.1\r\nContent-Length: 10\r\n\r\nab";
    send_all(fd, req, strlen(req));
    int64_t t0 = now_ms();
    char *r = read_to_eof(fd);
    close(fd);
    CU_ASSERT_STRING_EQUAL(r, "");
    CU_ASSERT(now_ms() - t0 >= TIGHT_HEADER_MS); /* the head was whole: the request deadline applies */
    CU_ASSERT_EQUAL(tight_stats().timeouts_request, before + 1);
    free(r);
}

static void test_busy_is_503(void)
{
    CU_ASSERT_FATAL(tight_wait_open(0));
    uint64_t before = tight_stats().rejected_busy;
    int held[TIGHT_CONNS];
    for (int i = 0; i < TIGHT_CONNS; i++) {
        held[i] = rc_test_tcp_connect(rc_admin_port(tight), CLIENT_TIMEOUT_MS);
        CU_ASSERT_FATAL(held[i] >= 0);
    }
    CU_ASSERT_FATAL(tight_wait_open(TIGHT_CONNS));
    const char *req = "GET /healthz HTTP/1.1\r\n\r\n";
    char *r = exchange_on(rc_admin_port(tight), req, strlen(req));
    CU_ASSERT_EQUAL(strncmp(r, "HTTP/1.1 503 ", 13), 0);
    CU_ASSERT_EQUAL(tight_stats().rejected_busy, before + 1);
    free(r);
    for (int i = 0; i < TIGHT_CONNS; i++)
        close(held[i]);
    CU_ASSERT_FATAL(tight_wait_open(0)); /* slots come back */
    r = exchange_on(rc_admin_port(tight), req, strlen(req));
    CU_ASSERT_EQUAL(strncmp(r, "HTTP/1.1 200 ", 13), 0);
    free(r);
}

static void test_requests_per_connection(void)
{
    const char *reqs = "GET /healthz HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"
                       "GET /healthz HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"
                       "GET /healthz HTTP/1.1\r\nConnection: keep-alive\r\n\r\n";
    char *r = exchange_on(rc_admin_port(tight), reqs, strlen(reqs));
    CU_ASSERT_EQUAL(count_of(r, "HTTP/1.1 200 "), TIGHT_REQUESTS);
    CU_ASSERT_EQUAL(count_of(r, "Connection: close\r\n"), 1); /* the last one allowed says so */
    free(r);
}

static void test_stats_count_refusals(void)
{
    struct rc_admin_stats a = tight_stats();
    const char *bad = "garbage\r\n\r\n", *put = "PUT / HTTP/1.1\r\n\r\n";
    free(exchange_on(rc_admin_port(tight), bad, strlen(bad)));
    free(exchange_on(rc_admin_port(tight), put, strlen(put)));
    struct rc_admin_stats b = tight_stats();
    CU_ASSERT_EQUAL(b.rejected_bad_request, a.rejected_bad_request + 1);
    CU_ASSERT_EQUAL(b.rejected_method, a.rejected_method + 1);
    CU_ASSERT_EQUAL(b.requests, a.requests + 2);
    CU_ASSERT_EQUAL(b.connections_accepted, a.connections_accepted + 2);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite p = CU_add_suite("http parser", NULL, NULL);
    CU_pSuite s = CU_add_suite("admin", suite_init, suite_cleanup);
    CU_pSuite l = CU_add_suite("admin limits", tight_init, tight_cleanup);
    CU_pSuite t = CU_add_suite("admin lifecycle", NULL, NULL);
    if (!p || !s || !l || !t) {
        CU_cleanup_registry();
        return 1;
    }
    CU_add_test(s, "port 0 picks a port", test_port_picked);
    CU_add_test(s, "GET /healthz", test_healthz);
    CU_add_test(s, "query string removed", test_query_string_removed);
    CU_add_test(s, "unknown path is the handler's 404", test_unknown_path);
    CU_add_test(s, "POST reaches the handler with its body", test_post_reaches_handler);
    CU_add_test(s, "oversized head is 431", test_oversized_head_is_431);
    CU_add_test(s, "malformed request is 400", test_malformed_is_400);
    CU_add_test(s, "large body", test_large_body);
    CU_add_test(s, "bad handler status is 500", test_bad_status_is_500);
    CU_add_test(s, "port in use", test_port_in_use);
    CU_add_test(s, "HEAD has no body", test_head_request);
    CU_add_test(s, "PUT, DELETE, OPTIONS are 405", test_other_methods_are_405);
    CU_add_test(s, "body too big is 413", test_body_too_big_is_413);
    CU_add_test(s, "pipelined keep-alive requests, in order", test_pipelined_keep_alive);
    CU_add_test(s, "request split into bytes", test_split_into_bytes);
    CU_add_test(s, "slow clients do not block others", test_slow_clients_do_not_block);
    CU_add_test(p, "split into bytes", test_parse_split_into_bytes);
    CU_add_test(p, "pipelined", test_parse_pipelined);
    CU_add_test(p, "chunked body", test_parse_chunked_body);
    CU_add_test(p, "a chunked body's trailer is not headers", test_parse_trailer_is_not_headers);
    CU_add_test(p, "limits: 431, 413", test_parse_limits);
    CU_add_test(p, "malformed is 400", test_parse_malformed);
    CU_add_test(p, "absolute-form target", test_parse_absolute_target);
    CU_add_test(p, "response head", test_response_head);
    CU_add_test(l, "a zero limit is refused", test_zero_limit_refused);
    CU_add_test(l, "head timeout is 408", test_header_timeout_is_408);
    CU_add_test(l, "idle connection closed", test_idle_connection_closed);
    CU_add_test(l, "slow body closed at the request deadline", test_slow_body_closed);
    CU_add_test(l, "past max_conns is 503", test_busy_is_503);
    CU_add_test(l, "requests per connection", test_requests_per_connection);
    CU_add_test(l, "refusals are counted", test_stats_count_refusals);
    CU_add_test(t, "body printf grows", test_body_printf);
    CU_add_test(t, "stop with an idle client", test_stop_with_idle_client);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    int f = CU_get_number_of_failures();
    CU_cleanup_registry();
    return f ? 1 : 0;
}
