/* Dead letters end to end (ARCHITECTURE §7, proto/PROTOCOL.md §9): a member that joins and never
 * reads passes outbound_high_bytes; further deliveries to it become
 * slow_consumer letters in Kafka (ringcast-kafka-dev as the broker), which
 * kcat reads back with the group as key and the reason header, while the
 * other members get every message. */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ringcast/client.h"
#include "testutil.h"

#define T_MS 5000
#define BODY_BYTES 1000
#define MAX_SENDS 20000
/* Well past what the kernel buffers for one socket (tcp_wmem max 4 MB here),
 * so output for the member that never reads is still queued at the stop. */
#define SHUTDOWN_SENDS 10000
#define BURST 20 /* sends between reads: healthy members stay far below the bound */
#define SLOW_RCVBUF 4096
#define KCAT_OUT (1u << 20)

static pid_t broker_pid;
static char bootstrap[256];

static int broker_start(void)
{
    broker_pid = rc_test_kafka_dev_start(bootstrap, sizeof(bootstrap));
    return broker_pid > 0 ? 0 : -1;
}

static void broker_stop(void)
{
    rc_test_kafka_dev_stop(broker_pid);
}

static void login(rc_client *c, const rc_test_server *srv, const char *user, bool slow)
{
    memset(c, 0, sizeof(*c));
    if (slow) {
        /* A tiny receive buffer makes the server's queue fill quickly. */
        int fd = socket(AF_INET, SOCK_STREAM, 0), sz = SLOW_RCVBUF;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(srv->port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        CU_ASSERT_FATAL(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
        CU_ASSERT_FATAL(rc_client_connect(c, "127.0.0.1", srv->port, T_MS) == 0);
        close(c->fd);
        c->fd = fd;
    } else {
        CU_ASSERT_FATAL(rc_client_connect(c, "127.0.0.1", srv->port, T_MS) == 0);
    }
    CU_ASSERT_FATAL(rc_client_hello(c, user, T_MS) == 0);
    CU_ASSERT_FATAL(rc_client_join(c, "busy", T_MS, NULL) == 0);
}

/* Drains whatever a healthy client has, counting msgs; never blocks long. */
static void drain(rc_client *c, uint64_t *msgs, uint64_t *next_seq, bool *ordered)
{
    rc_msg m;
    while (rc_client_recv(c, &m, 0) == 1) {
        if (m.type != RC_T_MSG)
            continue;
        *ordered &= m.seq == *next_seq;
        *next_seq = m.seq + 1;
        (*msgs)++;
    }
}

static void test_slow_consumer_letters(void)
{
    CU_ASSERT_FATAL(broker_start() == 0);
    char brokers[256];
    snprintf(brokers, sizeof(brokers), "%s", bootstrap);
    const char *flags[] = { "--kafka-brokers", brokers, "--outbound-stall-ms", "50", "--outbound-high-bytes", "1048576",
                            "--outbound-kill-bytes", "1073741824", NULL };
    rc_test_server srv;
    CU_ASSERT_FATAL(rc_test_server_start(&srv, flags) == 0);
    rc_client slow, a, b;
    login(&slow, &srv, "slowpoke", true);
    login(&a, &srv, "alice", false);
    login(&b, &srv, "bob", false);

    static char body[BODY_BYTES];
    memset(body, 'x', sizeof(body));
    uint64_t a_msgs = 0, b_msgs = 0, a_next = 1, b_next = 1, sent = 0;
    bool a_ord = true, b_ord = true;
    double letters = 0;
    while (sent < MAX_SENDS && letters < 50) {
        for (int k = 0; k < BURST; k++, sent++) {
            rc_msg m = { .type = RC_T_SEND, .g = rc_str_c("busy"), .body = { body, sizeof(body) } };
            CU_ASSERT_FATAL(rc_client_send(&a, &m) == 0);
        }
        drain(&a, &a_msgs, &a_next, &a_ord);
        drain(&b, &b_msgs, &b_next, &b_ord);
        letters = rc_test_metric(srv.admin_port, "ringcast_slow_consumer_letters_total", 1);
    }
    CU_ASSERT(letters >= 50);
    /* The healthy members still get everything, in order. */
    for (int i = 0; i < 200 && (a_msgs < sent || b_msgs < sent); i++) {
        drain(&a, &a_msgs, &a_next, &a_ord);
        drain(&b, &b_msgs, &b_next, &b_ord);
        usleep(10000);
    }
    CU_ASSERT_EQUAL(a_msgs, sent);
    CU_ASSERT_EQUAL(b_msgs, sent);
    CU_ASSERT(a_ord && b_ord);
    letters = rc_test_metric(srv.admin_port, "ringcast_slow_consumer_letters_total", 1);
    printf("\n    %llu sent, %.0f slow_consumer letters", (unsigned long long)sent, letters);
    rc_client_close(&slow);
    rc_client_close(&a);
    rc_client_close(&b);
    CU_ASSERT_EQUAL(rc_test_server_stop(&srv), 0); /* flushes the producer */

    /* kcat, an independent client, reads the letters back. */
    unsigned n = 0;
    int good = rc_test_kcat_count(bootstrap, "busy", "reason=slow_consumer", &n);
    printf(", kcat read %u records (%d with key busy and reason=slow_consumer)", n, good);
    CU_ASSERT_EQUAL(n, (unsigned)letters);
    CU_ASSERT_EQUAL(good, (int)n);
    broker_stop();
}

/* A forced stop: output still queued for a member that never reads
 * becomes `shutdown` letters. */
static void test_shutdown_letters(void)
{
    CU_ASSERT_FATAL(broker_start() == 0);
    char brokers[256];
    snprintf(brokers, sizeof(brokers), "%s", bootstrap);
    const char *flags[] = { "--kafka-brokers", brokers, "--shutdown-timeout-ms", "300", "--outbound-stall-ms", "50", "--outbound-high-bytes",
                            "67108864", "--outbound-kill-bytes", "134217728", NULL };
    rc_test_server srv;
    CU_ASSERT_FATAL(rc_test_server_start(&srv, flags) == 0);
    rc_client slow, a;
    login(&slow, &srv, "sleeper", true);
    login(&a, &srv, "alice", false);
    static char body[BODY_BYTES];
    memset(body, 'y', sizeof(body));
    uint64_t a_msgs = 0, a_next = 1;
    bool ord = true;
    for (int i = 0; i < SHUTDOWN_SENDS; i++) {
        rc_msg m = { .type = RC_T_SEND, .g = rc_str_c("busy"), .body = { body, sizeof(body) } };
        CU_ASSERT_FATAL(rc_client_send(&a, &m) == 0);
        if (i % BURST == 0)
            drain(&a, &a_msgs, &a_next, &ord);
    }
    for (int i = 0; i < 1000 && a_msgs < SHUTDOWN_SENDS; i++) {
        drain(&a, &a_msgs, &a_next, &ord);
        usleep(10000);
    }
    CU_ASSERT_EQUAL(a_msgs, SHUTDOWN_SENDS);
    rc_client_close(&a);
    CU_ASSERT_EQUAL(rc_test_server_stop(&srv), 0); /* the sleeper's queue is still full at the deadline */
    rc_client_close(&slow);

    int shutdown = rc_test_kcat_count(bootstrap, "busy", "reason=shutdown", NULL);
    printf("\n    %d shutdown letters read back by kcat", shutdown);
    CU_ASSERT(shutdown > 0);
    broker_stop();
}

/* Sends that wait longer than max_queue_ms are not sequenced: E_OVERLOADED
 * to the sender and a letter each: `overloaded` when the wait was for room
 * in the shard's ring (the io thread refuses it), `expired` when it was in
 * the ring (the shard refuses it). */
static void test_expired_letters(void)
{
    CU_ASSERT_FATAL(broker_start() == 0);
    char brokers[256];
    snprintf(brokers, sizeof(brokers), "%s", bootstrap);
    const char *flags[] = { "--kafka-brokers", brokers, "--max-queue-ms", "1", "--shards", "1", NULL };
    rc_test_server srv;
    CU_ASSERT_FATAL(rc_test_server_start(&srv, flags) == 0);
    enum { CLIENTS = 8, SENDS = 1000 };
    static rc_client c[CLIENTS];
    char user[16];
    for (int i = 0; i < CLIENTS; i++) {
        snprintf(user, sizeof(user), "u%d", i);
        login(&c[i], &srv, user, false);
    }
    for (int i = 0; i < CLIENTS; i++)
        for (int k = 0; k < SENDS; k++) {
            rc_msg m = { .type = RC_T_SEND, .g = rc_str_c("busy"), .body = { "tick", 4 }, .has = RC_HAS_RID,
                         .rid = (uint64_t)k + 1 };
            CU_ASSERT_FATAL(rc_client_send(&c[i], &m) == 0);
        }
    unsigned acks = 0, expired = 0, other = 0;
    for (int i = 0; i < CLIENTS; i++) {
        unsigned replies = 0;
        rc_msg r;
        while (replies < SENDS && rc_client_recv(&c[i], &r, T_MS) == 1) {
            if (r.type == RC_T_ACK) {
                acks++;
                replies++;
            } else if (r.type == RC_T_ERR) {
                replies++;
                if (r.code == RC_E_OVERLOADED)
                    expired++;
                else
                    other++;
            }
        }
    }
    printf("\n    %u acked, %u refused", acks, expired);
    CU_ASSERT_EQUAL(acks + expired, CLIENTS * SENDS); /* every send answered once */
    CU_ASSERT_EQUAL(other, 0);
    CU_ASSERT(expired > 0);
    double in_ring = rc_test_metric(srv.admin_port, "ringcast_expired_letters_total", 1);
    double before_ring = rc_test_metric(srv.admin_port, "ringcast_overloaded_letters_total", 1);
    printf(" (%.0f in the ring, %.0f before it)", in_ring, before_ring);
    CU_ASSERT_EQUAL(in_ring + before_ring, (double)expired);
    for (int i = 0; i < CLIENTS; i++)
        rc_client_close(&c[i]);
    CU_ASSERT_EQUAL(rc_test_server_stop(&srv), 0);

    int read_expired = rc_test_kcat_count(bootstrap, "busy", "reason=expired", NULL);
    int read_overloaded = rc_test_kcat_count(bootstrap, "busy", "reason=overloaded", NULL);
    printf(", %d expired and %d overloaded letters read back by kcat", read_expired, read_overloaded);
    CU_ASSERT_EQUAL(read_expired, (int)in_ring);
    CU_ASSERT_EQUAL(read_overloaded, (int)before_ring);
    broker_stop();
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("dead letters", NULL, NULL);
    CU_add_test(s, "slow consumer deliveries become letters kcat reads", test_slow_consumer_letters);
    CU_add_test(s, "queued output at a forced stop becomes shutdown letters", test_shutdown_letters);
    CU_add_test(s, "sends past max_queue_ms become expired or overloaded letters", test_expired_letters);
    return rc_test_run();
}
