/* A Kafka outage end to end (ARCHITECTURE §7): with ringcast-kafka-dev's brokers
 * down, the server's breaker opens and slow_consumer letters go to the
 * RocksDB spool (ringcast_dlq_spool_letters rises to exactly the letters
 * made); with the brokers up, the spool drains to zero and kcat, an
 * independent reader, finds every letter in the topic exactly once and in
 * seq order. */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ringcast/client.h"
#include "testutil.h"

#define T_MS 5000
#define BODY_BYTES 1000
#define MAX_SENDS 20000
#define WANT_LETTERS 200     /* slow_consumer letters made during the outage */
#define BURST 20             /* sends between reads of the healthy member */
#define SLOW_RCVBUF 4096
#define WAIT_MS 30000        /* bounded wait for the breaker and the drain */
#define WAIT_POLL_US 50000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Polls a metric until it equals want or WAIT_MS passes; returns the last value. */
static double wait_metric(uint16_t admin_port, const char *name, double want)
{
    int64_t deadline = now_ms() + WAIT_MS;
    double v = rc_test_metric(admin_port, name, 1);
    while (v != want && now_ms() < deadline) {
        usleep(WAIT_POLL_US);
        v = rc_test_metric(admin_port, name, 1);
    }
    return v;
}

/* Deliveries already on their way keep becoming letters for a moment:
 * waits until the letters made stop rising and all of them are in the
 * spool. Returns how many there are. */
static double wait_spool_settled(uint16_t admin_port)
{
    int64_t deadline = now_ms() + WAIT_MS;
    double last = -1;
    for (;;) {
        double made = rc_test_metric(admin_port, "ringcast_slow_consumer_letters_total", 1);
        double spooled = rc_test_metric(admin_port, "ringcast_dlq_spool_letters", 0);
        if ((made == last && made == spooled) || now_ms() >= deadline)
            return made;
        last = made;
        usleep(WAIT_POLL_US);
    }
}

static void login(rc_client *c, const rc_test_server *srv, const char *user, bool slow)
{
    memset(c, 0, sizeof(*c));
    CU_ASSERT_FATAL(rc_client_connect(c, "127.0.0.1", srv->port, T_MS) == 0);
    if (slow) {
        /* A tiny receive buffer makes the server's queue fill quickly. */
        int fd = socket(AF_INET, SOCK_STREAM, 0), sz = SLOW_RCVBUF;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(srv->port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        CU_ASSERT_FATAL(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
        close(c->fd);
        c->fd = fd;
    }
    CU_ASSERT_FATAL(rc_client_hello(c, user, T_MS) == 0);
    CU_ASSERT_FATAL(rc_client_join(c, "busy", T_MS, NULL) == 0);
}

static void drain(rc_client *c)
{
    rc_msg m;
    while (rc_client_recv(c, &m, 0) == 1)
        ;
}

/* Sends until the member that never reads has made want letters. */
static double make_letters(const rc_test_server *srv, rc_client *sender, double want)
{
    static char body[BODY_BYTES];
    memset(body, 'x', sizeof(body));
    double letters = 0;
    for (int sent = 0; sent < MAX_SENDS && letters < want; sent += BURST) {
        for (int k = 0; k < BURST; k++) {
            rc_msg m = { .type = RC_T_SEND, .g = rc_str_c("busy"), .body = { body, sizeof(body) } };
            CU_ASSERT_FATAL(rc_client_send(sender, &m) == 0);
        }
        drain(sender);
        letters = rc_test_metric(srv->admin_port, "ringcast_slow_consumer_letters_total", 1);
    }
    return letters;
}

static uint64_t map_uint(const msgpack_object *map, const char *key)
{
    for (uint32_t i = 0; map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, kv->key.via.str.size) == 0 &&
            kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            return kv->val.via.u64;
    }
    return 0;
}

/* The recipient a letter names (`to`), or "" without one. */
static void map_to(const msgpack_object *map, char *out, size_t cap)
{
    out[0] = '\0';
    for (uint32_t i = 0; map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 2 && memcmp(kv->key.via.str.ptr, "to", 2) == 0 &&
            kv->val.type == MSGPACK_OBJECT_STR)
            snprintf(out, cap, "%.*s", (int)kv->val.via.str.size, kv->val.via.str.ptr);
    }
}

#define MAX_RECIPIENTS 8 /* members of the test's group */

/* The slow_consumer seqs kcat read so far, by recipient. */
typedef struct order_check {
    char names[MAX_RECIPIENTS][64];
    uint64_t last[MAX_RECIPIENTS];
    int n_names, letters;
    bool ordered;
} order_check;

/* One record: its seq must rise over the last one of the same recipient,
 * so in order and never twice (a member that reads but fell behind for a
 * moment may have letters of its own, interleaved with the slow one's). */
static void check_order(void *ud, const char *value, uint32_t len)
{
    order_check *o = ud;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, value, len, NULL) == MSGPACK_UNPACK_SUCCESS) {
        uint64_t seq = map_uint(&u.data, "seq");
        char to[64];
        map_to(&u.data, to, sizeof(to));
        int r = 0;
        while (r < o->n_names && strcmp(o->names[r], to) != 0)
            r++;
        if (r == o->n_names && o->n_names < MAX_RECIPIENTS)
            snprintf(o->names[o->n_names++], sizeof(o->names[0]), "%s", to);
        o->ordered &= r < MAX_RECIPIENTS && seq > o->last[r];
        if (r < MAX_RECIPIENTS)
            o->last[r] = seq;
        o->letters++;
    }
    msgpack_unpacked_destroy(&u);
}

/* Reads every record with kcat and checks the slow_consumer seqs of each
 * recipient. Returns the number of letters read, or -1. */
static int kcat_check_order(const char *bootstrap, bool *ordered)
{
    static order_check o;
    memset(&o, 0, sizeof(o));
    o.ordered = true;
    int records = rc_test_kcat_values(bootstrap, check_order, &o);
    *ordered = o.ordered;
    return records < 0 ? -1 : o.letters;
}

static void test_outage_spool_then_drain(void)
{
    char bootstrap[256];
    pid_t broker = rc_test_kafka_dev_start(bootstrap, sizeof(bootstrap));
    CU_ASSERT_FATAL(broker > 0);
    const char *flags[] = { "--kafka-brokers", bootstrap, "--dlq-breaker-ms", "200", "--outbound-stall-ms", "50", "--outbound-high-bytes", "1048576",
                            "--outbound-kill-bytes", "1073741824", NULL };
    rc_test_server srv;
    CU_ASSERT_FATAL(rc_test_server_start(&srv, flags) == 0);
    CU_ASSERT_EQUAL(rc_test_metric(srv.admin_port, "ringcast_dlq_breaker_state{state=\"closed\"}", 0), 1);

    kill(broker, SIGUSR1); /* brokers down */
    CU_ASSERT_EQUAL(wait_metric(srv.admin_port, "ringcast_dlq_breaker_state{state=\"closed\"}", 0), 0);
    CU_ASSERT(rc_test_metric(srv.admin_port, "ringcast_dlq_breaker_opens_total", 0) >= 1);

    rc_client slow, alice;
    login(&slow, &srv, "slowpoke", true);
    login(&alice, &srv, "alice", false);
    CU_ASSERT(make_letters(&srv, &alice, WANT_LETTERS) >= WANT_LETTERS);
    /* Every letter is in the spool; none reached Kafka, none was lost. */
    double letters = wait_spool_settled(srv.admin_port);
    CU_ASSERT(letters >= WANT_LETTERS);
    CU_ASSERT_EQUAL(rc_test_metric(srv.admin_port, "ringcast_dlq_spool_letters", 0), letters);
    CU_ASSERT(rc_test_metric(srv.admin_port, "ringcast_dlq_spool_bytes", 0) > 0);
    CU_ASSERT_EQUAL(rc_test_metric(srv.admin_port, "ringcast_letters_refused_total", 1), 0);

    kill(broker, SIGUSR2); /* brokers up */
    CU_ASSERT_EQUAL(wait_metric(srv.admin_port, "ringcast_dlq_spool_letters", 0), 0);
    CU_ASSERT_EQUAL(rc_test_metric(srv.admin_port, "ringcast_dlq_spool_bytes", 0), 0);
    CU_ASSERT_EQUAL(rc_test_metric(srv.admin_port, "ringcast_dlq_breaker_state{state=\"closed\"}", 0), 1);
    CU_ASSERT_EQUAL(rc_test_metric(srv.admin_port, "ringcast_dlq_spool_drained_total", 0), letters);
    CU_ASSERT_EQUAL(rc_test_metric(srv.admin_port, "ringcast_letters_total{reason=\"slow_consumer\",state=\"delivered\"}", 0),
                    letters);

    bool ordered = false;
    int read = kcat_check_order(bootstrap, &ordered);
    printf("\n    %.0f letters spooled during the outage; kcat read %d, in order: %s", letters, read,
           ordered ? "yes" : "no");
    CU_ASSERT_EQUAL(read, (int)letters);
    CU_ASSERT(ordered);

    rc_client_close(&slow);
    rc_client_close(&alice);
    CU_ASSERT_EQUAL(rc_test_server_stop(&srv), 0);
    rc_test_kafka_dev_stop(broker);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("outage", NULL, NULL);
    if (!s || !CU_add_test(s, "brokers down: spool; up: drained once, in order", test_outage_spool_then_drain)) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    return rc_test_run();
}
