/*
 * The admin port under slow and malformed clients, against the real
 * ringcastd: many connections trickle a request a byte a second and never
 * finish it, others send garbage, and meanwhile /metrics on a fresh
 * connection must still be answered, every time, well before the server's
 * own header deadline. Then the trickling connections must be closed by the
 * server (they never stop sending), the garbage ones answered with a 4xx,
 * and the counters of both must show in /metrics.
 */
#include "itest.h"

#include <errno.h>
#include <sys/socket.h>

#define SLOW_CONNS 60              /* connections that trickle a request */
#define TRICKLE_EVERY_MS 1000      /* one byte per connection this often */
#define PROBES 6                   /* GET /metrics tries while they trickle */
#define PROBE_EVERY_MS 400
#define PROBE_TIMEOUT_MS 2500      /* below the server's header timeout (3000 ms) */
#define CLOSE_WAIT_MS 20000        /* the server closes the trickling ones by then */
#define ANSWER_TIMEOUT_MS 5000     /* a garbage connection's 4xx arrives by then */
#define BIG_HEADER 10000           /* past the admin server's 8 KiB head limit */
#define RESPONSE_MAX 65536

/* Never completed: the trickle stops long before the blank line. */
static const char trickle[] = "GET /metrics HTTP/1.1\r\nHost: slow-client.example\r\nUser-Agent: drip\r\n"
                              "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";

static bool send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Reads until EOF, reset or the socket's timeout into buf (NUL-terminated).
 * Returns 1 at EOF or reset, 0 on timeout. */
static int read_answer(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    while (len + 1 < cap) {
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return 1;
        if (n < 0)
            return 0;
        len += (size_t)n;
        buf[len] = '\0';
    }
    return 1;
}

/* GET /metrics on a fresh connection: true when answered 200 with metric lines in time. */
static bool probe_metrics(uint16_t port)
{
    static char resp[1 << 20];
    int fd = rc_test_tcp_connect(port, PROBE_TIMEOUT_MS);
    if (fd < 0)
        return false;
    const char *req = "GET /metrics HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n";
    bool ok = send_all(fd, req, strlen(req)) && read_answer(fd, resp, sizeof resp) == 1 &&
              strncmp(resp, "HTTP/1.1 200 ", 13) == 0 && strstr(resp, "\nringcast_uptime_seconds ") &&
              strstr(resp, "\nringcast_admin_requests_total ");
    close(fd);
    return ok;
}

typedef struct garbage {
    const char *what;
    char *bytes;
    size_t len;
    int fd;
} garbage;

static char *dup_bytes(const char *p, size_t len)
{
    char *b = malloc(len);
    CU_ASSERT_FATAL(b != NULL);
    memcpy(b, p, len);
    return b;
}

/* Inputs that are not a request the admin server serves; each must get a 4xx. */
static int make_garbage(garbage *g)
{
    static const char tls_hello[] = "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00\x00\x00\x00\x00\r\n\r\n";
    static const char *const texts[] = {
        "GARBAGE GARBAGE GARBAGE\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nBad Header Line\r\n\r\n",
        "GET /metrics SPDY/3\r\n\r\n",
        "POST /api/publish HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n{\"g\":",
        "DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    };
    int n = 0;
    g[n++] = (garbage){ "tls hello", dup_bytes(tls_hello, sizeof tls_hello - 1), sizeof tls_hello - 1, -1 };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        g[n++] = (garbage){ texts[i], dup_bytes(texts[i], strlen(texts[i])), strlen(texts[i]), -1 };
    size_t big = BIG_HEADER + 64;
    char *b = malloc(big);
    CU_ASSERT_FATAL(b != NULL);
    int h = snprintf(b, big, "GET /metrics HTTP/1.1\r\nX-Big: ");
    memset(b + h, 'a', BIG_HEADER);
    memcpy(b + h + BIG_HEADER, "\r\n\r\n", 4);
    g[n++] = (garbage){ "oversized head", b, (size_t)h + BIG_HEADER + 4, -1 };
    return n;
}

#define GARBAGE_KINDS 7

/* Sends the next trickle byte on every connection still open. */
static void trickle_once(int *fds, size_t *sent)
{
    for (int i = 0; i < SLOW_CONNS; i++) {
        if (fds[i] < 0 || sent[i] + 1 >= sizeof trickle - 2) /* never the final blank line */
            continue;
        if (send(fds[i], trickle + sent[i], 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
            sent[i]++;
    }
}

/* Polls the trickling connections once; closes and counts those the server closed. */
static int reap_closed(int *fds)
{
    struct pollfd p[SLOW_CONNS];
    int closed = 0;
    for (int i = 0; i < SLOW_CONNS; i++)
        p[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
    if (poll(p, SLOW_CONNS, IT_POLL_STEP_MS) <= 0)
        return 0;
    for (int i = 0; i < SLOW_CONNS; i++) {
        if (fds[i] < 0 || !p[i].revents)
            continue;
        char buf[1024];
        ssize_t n = recv(fds[i], buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            close(fds[i]); /* EOF, or a reset: the server closed it */
            fds[i] = -1;
            closed++;
        } /* n > 0: the 408 before the close */
    }
    return closed;
}

static double admin_metric(const it_server *srv, const char *name)
{
    return rc_test_metric(srv->s.admin_port, name, 0);
}

static void test_slow_and_garbage_clients(void)
{
    it_server srv;
    CU_ASSERT_FATAL(it_start(&srv, NULL) == 0);
    uint16_t port = srv.s.admin_port;

    int slow[SLOW_CONNS];
    size_t sent[SLOW_CONNS] = { 0 };
    for (int i = 0; i < SLOW_CONNS; i++) {
        slow[i] = rc_test_tcp_connect(port, IT_TIMEOUT_MS);
        CU_ASSERT_FATAL(slow[i] >= 0);
    }
    trickle_once(slow, sent);
    int64_t last_trickle = it_now_ms();

    garbage g[GARBAGE_KINDS];
    int n_garbage = make_garbage(g);
    CU_ASSERT_FATAL(n_garbage == GARBAGE_KINDS);
    for (int i = 0; i < n_garbage; i++) {
        g[i].fd = rc_test_tcp_connect(port, ANSWER_TIMEOUT_MS);
        CU_ASSERT_FATAL(g[i].fd >= 0);
        CU_ASSERT(send_all(g[i].fd, g[i].bytes, g[i].len)); /* a 431 may cut a long send short */
    }

    int answered = 0;
    for (int round = 0; round < PROBES; round++) {
        if (it_now_ms() - last_trickle >= TRICKLE_EVERY_MS) {
            trickle_once(slow, sent);
            last_trickle = it_now_ms();
        }
        answered += probe_metrics(port);
        it_sleep_ms(PROBE_EVERY_MS);
    }
    CU_ASSERT_EQUAL(answered, PROBES);

    for (int i = 0; i < n_garbage; i++) {
        char resp[RESPONSE_MAX];
        CU_ASSERT_EQUAL(read_answer(g[i].fd, resp, sizeof resp), 1); /* answered and closed */
        if (strncmp(resp, "HTTP/1.1 4", 10) != 0)
            printf("\n    %s: got \"%.40s\"\n", g[i].what, resp);
        CU_ASSERT_EQUAL(strncmp(resp, "HTTP/1.1 4", 10), 0);
        close(g[i].fd);
        free(g[i].bytes);
    }

    int closed = 0;
    for (int64_t end = it_now_ms() + CLOSE_WAIT_MS; closed < SLOW_CONNS && it_now_ms() < end;) {
        if (it_now_ms() - last_trickle >= TRICKLE_EVERY_MS) { /* they keep trickling to the end */
            trickle_once(slow, sent);
            last_trickle = it_now_ms();
        }
        closed += reap_closed(slow);
    }
    CU_ASSERT_EQUAL(closed, SLOW_CONNS);
    for (int i = 0; i < SLOW_CONNS; i++)
        if (slow[i] >= 0)
            close(slow[i]);

    CU_ASSERT(admin_metric(&srv, "ringcast_admin_timeouts_total{phase=\"header\"}") >= SLOW_CONNS);
    CU_ASSERT(admin_metric(&srv, "ringcast_admin_rejected_total{reason=\"bad_request\"}") >= 4);
    CU_ASSERT(admin_metric(&srv, "ringcast_admin_rejected_total{reason=\"head_too_large\"}") >= 1);
    CU_ASSERT(admin_metric(&srv, "ringcast_admin_rejected_total{reason=\"body_too_large\"}") >= 1);
    CU_ASSERT(admin_metric(&srv, "ringcast_admin_rejected_total{reason=\"method\"}") >= 1);
    CU_ASSERT(admin_metric(&srv, "ringcast_admin_requests_total") >= PROBES);
    /* Nothing leaks: the only connection left is the one asking. */
    CU_ASSERT_EQUAL(it_wait_metric(&srv, "ringcast_admin_connections_open", 1), 1);
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("admin http", NULL, NULL);
    CU_add_test(s, "slow and garbage clients do not starve /metrics", test_slow_and_garbage_clients);
    return rc_test_run();
}
