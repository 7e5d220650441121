/*
 * Unit tests for the admin HTTP server (src/net/admin.c), driven through
 * plain client sockets: routing to the handler, query strings, the server's
 * own 400/405/431/500 answers, large bodies, bind errors, and that stop
 * returns promptly even with an idle client connected.
 */
#include "ringcast/admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#define CLIENT_TIMEOUT_S 5
#define BIG_LINES 20000
#define OVERSIZED_HEADER 10000
#define STOP_LIMIT_MS 1000

static rc_admin *server;
static atomic_int handler_calls;

static int handler(void *ud, const char *path, struct rc_admin_body *body, const char **ctype)
{
    (void)ud;
    atomic_fetch_add(&handler_calls, 1);
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

static int connect_local(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = { .tv_sec = CLIENT_TIMEOUT_S };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Send request, read the whole response until EOF; malloc'ed, NUL-terminated. */
static char *exchange(const char *request, size_t len)
{
    int fd = connect_local(rc_admin_port(server));
    CU_ASSERT_FATAL(fd >= 0);
    for (size_t off = 0; off < len;) {
        ssize_t n = send(fd, request + off, len - off, MSG_NOSIGNAL);
        CU_ASSERT_FATAL(n > 0);
        off += (size_t)n;
    }
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
        CU_ASSERT_FATAL(n >= 0);
        if (n == 0)
            break;
        used += (size_t)n;
    }
    resp[used] = '\0';
    close(fd);
    return resp;
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

static void test_post_is_405(void)
{
    const char *req = "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    int before = atomic_load(&handler_calls);
    char *r = exchange(req, strlen(req));
    CU_ASSERT_EQUAL(strncmp(r, "HTTP/1.1 405 ", 13), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(r, "Allow: GET\r\n"));
    CU_ASSERT_EQUAL(atomic_load(&handler_calls), before);
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
    int idle = connect_local(port); /* connects, never sends */
    CU_ASSERT(idle >= 0);
    usleep(50 * 1000); /* let the server pick it up and wait in read */
    int64_t t0 = now_ms();
    rc_admin_stop(a);
    CU_ASSERT(now_ms() - t0 < STOP_LIMIT_MS);
    close(idle);
    int fd = connect_local(port);
    CU_ASSERT(fd < 0); /* nobody listens any more */
    if (fd >= 0)
        close(fd);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("admin", suite_init, suite_cleanup);
    CU_pSuite t = CU_add_suite("admin lifecycle", NULL, NULL);
    if (!s || !t) {
        CU_cleanup_registry();
        return 1;
    }
    CU_add_test(s, "port 0 picks a port", test_port_picked);
    CU_add_test(s, "GET /healthz", test_healthz);
    CU_add_test(s, "query string removed", test_query_string_removed);
    CU_add_test(s, "unknown path is the handler's 404", test_unknown_path);
    CU_add_test(s, "POST is 405", test_post_is_405);
    CU_add_test(s, "oversized head is 431", test_oversized_head_is_431);
    CU_add_test(s, "malformed request is 400", test_malformed_is_400);
    CU_add_test(s, "large body", test_large_body);
    CU_add_test(s, "bad handler status is 500", test_bad_status_is_500);
    CU_add_test(s, "port in use", test_port_in_use);
    CU_add_test(t, "body printf grows", test_body_printf);
    CU_add_test(t, "stop with an idle client", test_stop_with_idle_client);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    int f = CU_get_number_of_failures();
    CU_cleanup_registry();
    return f ? 1 : 0;
}
