/*
 * Slow readers catch up from history (slow_consumer_policy = catchup,
 * src/net/catchup.c, proto/PROTOCOL.md §6.6).
 *
 * 1. A reader that stops reading while a sender writes N_MSGS messages to
 *    each of two groups becomes a slow consumer far past
 *    outbound_high_bytes. When it reads again it receives every message of
 *    both groups exactly once, in seq order, gapless; nothing became a
 *    slow_consumer letter, the reader was not closed, and the server says
 *    it skipped live messages and sent pages from history.
 * 2. With history too short to hold what the reader missed, the reader
 *    gets a gapless prefix of each group and then `bye` {reason:
 *    "slow_consumer"}, never a gap.
 *
 * Counts, not times: every loop is bounded in rounds and by a deadline.
 */
#define _GNU_SOURCE
#include "itest.h"

#include <inttypes.h>
#include <sys/socket.h>

#define N_GROUPS 2
#define N_MSGS 3000            /* per group */
#define BODY_BYTES 1000
#define WINDOW 64              /* sends in flight */
#define SCENE_LIMIT_MS 60000
#define READER_RCVBUF 65536    /* the reader's socket takes little: the server's queue grows */
#define FAIL_TEXT 256

static it_server srv;

static int cleanup(void)
{
    return it_cleanup(&srv);
}

static const char *group_name(int g)
{
    return g == 0 ? "cu-a" : "cu-b";
}

static int group_index(rc_str g)
{
    for (int i = 0; i < N_GROUPS; i++)
        if (it_str_is(g, group_name(i)))
            return i;
    return -1;
}

/* The sender writes N_MSGS to each group, WINDOW at a time, and waits for
 * every ack (its own msgs come back too: echo). 0, or -1. */
static int send_all(rc_client *s)
{
    static char body[BODY_BYTES];
    memset(body, 'c', sizeof(body));
    int sent = 0, acked = 0, total = N_GROUPS * N_MSGS;
    int64_t end = it_now_ms() + SCENE_LIMIT_MS;
    for (int round = 0; acked < total && round < 10 * total && it_now_ms() < end; round++) {
        while (sent < total && sent - acked < WINDOW) {
            rc_msg m = { .type = RC_T_SEND, .g = rc_str_c(group_name(sent % N_GROUPS)), .body = { body, sizeof(body) },
                         .body_is_str = true };
            if (it_request(s, &m, 1000u + (uint64_t)sent) != 0)
                return -1;
            sent++;
        }
        rc_msg m;
        int r = rc_client_recv(s, &m, IT_TIMEOUT_MS);
        if (r != 1) {
            printf("\n    sender: %s after %d acks\n", r == 0 ? "timeout" : s->err, acked);
            return -1;
        }
        if (m.type == RC_T_ERR) {
            printf("\n    sender: err %s: %.*s\n", rc_err_name(m.code), (int)m.text.len, m.text.ptr);
            return -1;
        }
        if (m.type == RC_T_ACK)
            acked++;
    }
    return acked == total ? 0 : -1;
}

typedef struct got {
    uint64_t last[N_GROUPS];
    long msgs;
    bool bye_slow;
    char failure[FAIL_TEXT];
} got;

/* Reads until every group's last seq is `want` (or, with stop_on_bye, a
 * `bye` arrives), checking each group's sequence is 1, 2, 3, ... */
static bool read_all(rc_client *r, uint64_t want, bool stop_on_bye, got *gt)
{
    int64_t end = it_now_ms() + SCENE_LIMIT_MS;
    for (long round = 0; round < 100L * N_GROUPS * N_MSGS && it_now_ms() < end; round++) {
        bool done = true;
        for (int g = 0; g < N_GROUPS; g++)
            done = done && gt->last[g] == want;
        if (done)
            return true;
        rc_msg m;
        int rr = rc_client_recv(r, &m, IT_TIMEOUT_MS);
        if (rr != 1) {
            snprintf(gt->failure, sizeof(gt->failure), "reader: %.120s at %" PRIu64 "/%" PRIu64,
                     rr == 0 ? "timeout" : r->err, gt->last[0], gt->last[1]);
            return false;
        }
        if (m.type == RC_T_BYE) {
            gt->bye_slow = it_str_is(m.reason, "slow_consumer");
            if (!stop_on_bye)
                snprintf(gt->failure, sizeof(gt->failure), "reader: bye %.*s", (int)m.reason.len, m.reason.ptr);
            return stop_on_bye && gt->bye_slow;
        }
        if (m.type != RC_T_MSG)
            continue;
        int g = group_index(m.g);
        if (g < 0 || m.seq != gt->last[g] + 1) {
            snprintf(gt->failure, sizeof(gt->failure), "reader: group %d seq %" PRIu64 " after %" PRIu64 " (a gap or a dup)",
                     g, m.seq, g >= 0 ? gt->last[g] : 0);
            return false;
        }
        gt->last[g] = m.seq;
        gt->msgs++;
    }
    snprintf(gt->failure, sizeof(gt->failure), "reader: not everything arrived within the bounds (at %" PRIu64 "/%" PRIu64 ")",
             gt->last[0], gt->last[1]);
    return false;
}

static double metric(const char *name)
{
    return rc_test_metric(srv.s.admin_port, name, 1);
}

/* Sender and reader join both groups; the reader's socket is made small
 * and it stops reading. */
static void setup(rc_client *s, rc_client *r)
{
    CU_ASSERT_FATAL(it_login(s, &srv, "cu-sender") == 0);
    CU_ASSERT_FATAL(it_login(r, &srv, "cu-reader") == 0);
    for (int g = 0; g < N_GROUPS; g++) {
        uint64_t seq;
        CU_ASSERT_FATAL(rc_client_join(s, group_name(g), IT_TIMEOUT_MS, &seq) == 0);
        CU_ASSERT_FATAL(rc_client_join(r, group_name(g), IT_TIMEOUT_MS, &seq) == 0);
    }
    int small = READER_RCVBUF;
    CU_ASSERT(setsockopt(r->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) == 0);
}

/* The reader reads again, with a socket of normal size (a tiny window
 * would make loopback TCP crawl on delayed acks). */
static void reader_wakes(rc_client *r)
{
    int big = 1 << 20;
    CU_ASSERT(setsockopt(r->fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big)) == 0);
}

/* A server with the catch-up policy and small bounds, history_max
 * messages of history per group; a sender and a reader that has stopped
 * reading; the sender's messages all sent and acked; the reader reads
 * again. */
static void scene(const char *history_max, rc_client *s, rc_client *r)
{
    const char *flags[] = { "--slow-consumer-policy", "catchup", "--outbound-high-bytes", "131072",
                            "--outbound-stall-ms", "100", "--max-reply-bytes", "65536", "--max-frame", "8192",
                            "--history-max", history_max, "--durability", "off", "--scale-interval-ms", "0", NULL };
    CU_ASSERT_FATAL(it_start(&srv, flags) == 0);
    setup(s, r);
    CU_ASSERT_FATAL(send_all(s) == 0);
    reader_wakes(r);
}

static void test_reader_catches_up(void)
{
    rc_client s, r;
    scene("10000", &s, &r);
    got gt = { 0 };
    bool ok = read_all(&r, N_MSGS, false, &gt);
    printf("\n    %ld msgs read; catch-ups %.0f, live msgs skipped %.0f, pages %.0f, done %.0f, from history %.0f\n",
           gt.msgs, metric("ringcast_catchup_started_total{"), metric("ringcast_catchup_skipped_total{"),
           metric("ringcast_catchup_pages_total{"), metric("ringcast_catchup_done_total{"),
           metric("ringcast_shard_catchup_messages_total{"));
    if (!ok)
        printf("    %s\n", gt.failure);
    CU_ASSERT(ok);
    CU_ASSERT_EQUAL(gt.msgs, (long)N_GROUPS * N_MSGS);
    CU_ASSERT(metric("ringcast_catchup_started_total{") >= 1);  /* it really fell behind */
    CU_ASSERT(metric("ringcast_catchup_skipped_total{") > 0);
    CU_ASSERT(metric("ringcast_catchup_done_total{") >= 1);
    CU_ASSERT(metric("ringcast_shard_catchup_messages_total{") >= metric("ringcast_catchup_skipped_total{"));
    CU_ASSERT_EQUAL(metric("ringcast_catchup_lost_total{"), 0);
    CU_ASSERT_EQUAL(metric("ringcast_slow_consumer_letters_total{"), 0);
    CU_ASSERT_EQUAL(metric("ringcast_slow_consumer_closed_total{"), 0);
    /* Caught up: a live message arrives as usual. */
    rc_msg ack, m;
    CU_ASSERT(rc_client_publish(&s, group_name(0), "live", 4, NULL, IT_TIMEOUT_MS, &ack) == 0);
    CU_ASSERT(it_expect(&r, &m, RC_T_MSG) && it_str_is(m.g, group_name(0)) && m.seq == N_MSGS + 1);
    rc_client_close(&s);
    rc_client_close(&r);
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
}

static void test_history_too_short(void)
{
    rc_client s, r;
    scene("200", &s, &r);
    got gt = { 0 };
    bool ok = read_all(&r, N_MSGS, true, &gt);
    printf("\n    %ld msgs read, then bye slow_consumer: %s; lost %.0f\n", gt.msgs, gt.bye_slow ? "yes" : "no",
           metric("ringcast_catchup_lost_total{"));
    if (!ok)
        printf("    %s\n", gt.failure);
    CU_ASSERT(ok);
    CU_ASSERT(gt.bye_slow);
    CU_ASSERT(gt.msgs < (long)N_GROUPS * N_MSGS);
    CU_ASSERT(metric("ringcast_catchup_lost_total{") >= 1);
    CU_ASSERT_EQUAL(metric("ringcast_slow_consumer_letters_total{"), 0);
    rc_client_close(&s);
    rc_client_close(&r);
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite su = CU_add_suite("catch-up from history", NULL, cleanup);
    CU_add_test(su, "a slow reader catches up from history, gapless", test_reader_catches_up);
    CU_add_test(su, "history too short: a gapless prefix, then bye", test_history_too_short);
    return rc_test_run();
}
