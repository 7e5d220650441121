/*
 * libFuzzer target: the admin server's HTTP request parser (rc_http_feed,
 * src/net/http.c, over the packaged http_parser) on an arbitrary byte
 * stream from a client, fed the way src/net/admin.c feeds it: while a
 * request is incomplete, what is left is fed again; a whole request is
 * answered (here: checked and written down) and rc_http_next() starts the
 * next; an error ends the connection.
 *
 * The stream is parsed twice, once whole and once cut into reads of
 * 1..FUZZ_MAX_READ bytes. The limits are small (FUZZ_MAX_HEAD,
 * FUZZ_MAX_BODY) so that 431 and 413 are a few mutations away. A crash,
 * besides any sanitizer report (a leak included):
 *  - a 500 (the server's own failure) or a status not in http.h's list;
 *  - a request missing its method, path or query, with more headers than
 *    RC_HTTP_MAX_HEADERS, a body over max_body, or a version other than 1.x;
 *  - rc_http_feed using more than it was given, or nothing while a request
 *    is incomplete (admin.c would spin);
 *  - the two runs parsing different requests, or one ending in an error
 *    and the other not: the requests must not depend on how the bytes
 *    arrive (the status of the error may: see feed()).
 */
#include "fuzz.h"

#include <stdbool.h>
#include <string.h>

#include "net/http.h"
#include "ringcast/proto.h" /* rc_buf */

#define FUZZ_MAX_HEAD 512u  /* max_head: request line and headers, bytes */
#define FUZZ_MAX_BODY 1024u /* max_body */
#define FUZZ_MAX_READ 64u   /* longest read of the cut run */

static void log_str(rc_buf *log, const char *s, size_t n)
{
    uint32_t len = (uint32_t)n;
    FUZZ_CHECK(rc_buf_append(log, &len, sizeof len) == 0 && rc_buf_append(log, s, n) == 0,
               "out of memory in the harness");
}

/* Checks a whole request and writes it down. */
static void take_request(const rc_http_conn *c, rc_buf *log)
{
    const rc_http_request *r = &c->req;
    FUZZ_CHECK(r->method && r->path && r->query, "a request has a method, a path and a query");
    FUZZ_CHECK(r->http_major == 1, "only HTTP/1.x requests are taken");
    FUZZ_CHECK(r->n_headers <= RC_HTTP_MAX_HEADERS, "at most RC_HTTP_MAX_HEADERS headers");
    FUZZ_CHECK(r->body_len <= c->limits.max_body, "the body is within max_body");
    FUZZ_CHECK((r->body == NULL) == (r->body_len == 0), "body is NULL exactly when it is empty");
    log_str(log, "R", 1);
    log_str(log, r->method, strlen(r->method));
    log_str(log, r->path, strlen(r->path));
    log_str(log, r->query, strlen(r->query));
    for (unsigned i = 0; i < r->n_headers; i++) {
        FUZZ_CHECK(r->headers[i].name && r->headers[i].value, "a header has a name and a value");
        log_str(log, r->headers[i].name, strlen(r->headers[i].name));
        log_str(log, r->headers[i].value, strlen(r->headers[i].value));
    }
    if (r->body_len)
        log_str(log, r->body, r->body_len);
    char tail[16];
    int n = snprintf(tail, sizeof tail, "%u.%u %d", r->http_major, r->http_minor, r->keep_alive);
    log_str(log, tail, (size_t)n);
}

static bool known_error(int status)
{
    return status == 400 || status == 413 || status == 431 || status == 505;
}

/* Feeds p[0..n) into c as admin.c does; false once the connection ends. */
static bool feed(rc_http_conn *c, const char *p, size_t n, rc_buf *log)
{
    size_t off = 0;
    while (off < n) {
        size_t used = rc_http_feed(c, p + off, n - off);
        FUZZ_CHECK(used <= n - off, "rc_http_feed uses at most what it was given");
        off += used;
        if (c->state == RC_HTTP_REQUEST) {
            take_request(c, log);
            rc_http_next(c);
        } else if (c->state == RC_HTTP_ERROR) {
            if (c->error_status == 500)
                fprintf(stderr, "500 for client bytes\n");
            FUZZ_CHECK(known_error(c->error_status), "a bad request is the client's: 400, 413, 431 or 505");
            /* Which error is not written down: http_parser calls back with a
             * field only at its end or at the end of a read, so a request
             * with two faults may show either first (400 or 431). */
            log_str(log, "E", 1);
            return false;
        } else {
            FUZZ_CHECK(used > 0, "an incomplete request takes every byte it is given");
        }
    }
    return true;
}

/* Parses the whole stream, in one read (rng NULL) or in pieces. */
static void run(const uint8_t *data, size_t size, fuzz_rng *rng, rc_buf *log)
{
    const rc_http_limits lim = { .max_head = FUZZ_MAX_HEAD, .max_body = FUZZ_MAX_BODY };
    rc_http_conn c;
    FUZZ_CHECK(rc_http_conn_init(&c, &lim) == 0, "out of memory in the harness");
    const char *p = (const char *)data;
    for (size_t off = 0; off < size;) {
        size_t n = rng ? fuzz_rng_chunk(rng, FUZZ_MAX_READ) : size;
        if (n > size - off)
            n = size - off;
        if (!feed(&c, p + off, n, log))
            break;
        off += n;
    }
    log_str(log, "end", 3);
    log_str(log, rc_http_started(&c) ? "started" : "idle", rc_http_started(&c) ? 7 : 4);
    rc_http_conn_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rc_buf whole, cut;
    rc_buf_init(&whole);
    rc_buf_init(&cut);
    fuzz_rng rng = fuzz_rng_from(data, size);
    run(data, size, NULL, &whole);
    run(data, size, &rng, &cut);
    fuzz_check_same("the same requests whether the bytes come whole or in pieces", whole.data, whole.len, cut.data,
                    cut.len);
    rc_buf_free(&whole);
    rc_buf_free(&cut);
    return 0;
}
