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
 * 2. With history too short to hold what the reader missed, what history
 *    no longer holds becomes slow_consumer letters (ringcast-kafka-dev as
 *    the broker, read back with kcat): the reader stays connected, sees in
 *    each group rising seqs, with a gap per catch-up and everything history
 *    still holds at the end; the letters addressed to it are exactly the
 *    seqs of the gaps, each once.
 * 3. With history_ttl expiring everything the reader missed before it reads
 *    again, its catch-up page reports it lost: the same letters, and the
 *    reader goes on with the next live message.
 *
 * Counts, not times: every loop is bounded in rounds and by a deadline.
 */
#define _GNU_SOURCE
#include "itest.h"

#include <inttypes.h>
#include <msgpack.h>
#include <sys/socket.h>

#define N_GROUPS 2
#define N_MSGS 3000            /* per group */
#define BODY_BYTES 1000
#define WINDOW 64              /* sends in flight */
#define SCENE_LIMIT_MS 60000
#define READER_RCVBUF 65536    /* the reader's socket takes little: the server's queue grows */
#define FAIL_TEXT 256
#define SHORT_HISTORY 200      /* history_max of scene 2: far less than a reader misses */
#define TTL_WAIT_MS 2100       /* scene 3 waits this long: past a history_ttl of 1 s */

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
    int gaps[N_GROUPS];              /* with allow_gaps: jumps in each group's seqs */
    bool seen[N_GROUPS][N_MSGS + 2]; /* seqs the reader received (scene 3 reads one past N_MSGS) */
    bool allow_gaps;
    char failure[FAIL_TEXT];
} got;

/* Reads until every group's last seq is `want`, checking each group's
 * sequence rises by one (with allow_gaps: rises, counting the jumps); a
 * `bye` is a failure. */
static bool read_all(rc_client *r, uint64_t want, got *gt)
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
            snprintf(gt->failure, sizeof(gt->failure), "reader: bye %.*s", (int)m.reason.len, m.reason.ptr);
            return false;
        }
        if (m.type != RC_T_MSG)
            continue;
        int g = group_index(m.g);
        bool next = g >= 0 && m.seq == gt->last[g] + 1;
        if (g < 0 || m.seq > want || !(next || (gt->allow_gaps && m.seq > gt->last[g]))) {
            snprintf(gt->failure, sizeof(gt->failure), "reader: group %d seq %" PRIu64 " after %" PRIu64 " (a %s)",
                     g, m.seq, g >= 0 ? gt->last[g] : 0, gt->allow_gaps ? "dup" : "gap or a dup");
            return false;
        }
        gt->gaps[g] += !next;
        gt->seen[g][m.seq] = true;
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
 * messages of history per group (and its letters to `brokers`, or the
 * embedded broker when NULL); a sender and a reader that has stopped
 * reading; the sender's messages all sent and acked; the reader reads
 * again. */
static void scene_ttl(const char *history_max, const char *ttl_s, const char *brokers, rc_client *s, rc_client *r)
{
    const char *flags[] = { "--slow-consumer-policy", "catchup", "--outbound-high-bytes", "131072",
                            "--outbound-stall-ms", "100", "--max-reply-bytes", "65536", "--max-frame", "8192",
                            "--history-max", history_max, "--history-ttl", ttl_s, "--durability", "off",
                            "--scale-interval-ms", "0", brokers ? "--kafka-brokers" : NULL, brokers, NULL };
    CU_ASSERT_FATAL(it_start(&srv, flags) == 0);
    setup(s, r);
    CU_ASSERT_FATAL(send_all(s) == 0);
}

static void scene(const char *history_max, const char *brokers, rc_client *s, rc_client *r)
{
    scene_ttl(history_max, "604800", brokers, s, r);
    reader_wakes(r);
}

static void test_reader_catches_up(void)
{
    rc_client s, r;
    scene("10000", NULL, &s, &r);
    static got gt;
    memset(&gt, 0, sizeof(gt));
    bool ok = read_all(&r, N_MSGS, &gt);
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

/* The slow_consumer letters kcat read back for the reader, by group and seq. */
typedef struct letters_read {
    int count[N_GROUPS][N_MSGS + 1];
    int others; /* records not for the reader's groups and seqs */
} letters_read;

static const msgpack_object *map_get(const msgpack_object *map, const char *key)
{
    for (uint32_t i = 0; map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, kv->key.via.str.size) == 0)
            return &kv->val;
    }
    return NULL;
}

static bool map_str_is(const msgpack_object *map, const char *key, const char *want)
{
    const msgpack_object *v = map_get(map, key);
    return v && v->type == MSGPACK_OBJECT_STR && it_str_is((rc_str){ v->via.str.ptr, v->via.str.size }, want);
}

static void see_letter(void *ud, const char *value, uint32_t len)
{
    letters_read *lr = ud;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    bool mine = false;
    if (msgpack_unpack_next(&u, value, len, NULL) == MSGPACK_UNPACK_SUCCESS && map_str_is(&u.data, "to", "cu-reader") &&
        map_str_is(&u.data, "reason", "slow_consumer") && map_str_is(&u.data, "from", "cu-sender")) {
        const msgpack_object *g = map_get(&u.data, "g"), *seq = map_get(&u.data, "seq"), *body = map_get(&u.data, "body");
        int gi = g && g->type == MSGPACK_OBJECT_STR ? group_index((rc_str){ g->via.str.ptr, g->via.str.size }) : -1;
        bool full = body && (body->type == MSGPACK_OBJECT_STR || body->type == MSGPACK_OBJECT_BIN) &&
                    body->via.str.size == BODY_BYTES; /* the letter carries the message itself */
        if (gi >= 0 && full && seq && seq->type == MSGPACK_OBJECT_POSITIVE_INTEGER && seq->via.u64 >= 1 &&
            seq->via.u64 <= N_MSGS) {
            lr->count[gi][seq->via.u64]++;
            mine = true;
        }
    }
    lr->others += !mine;
    msgpack_unpacked_destroy(&u);
}

/* The letters kcat reads back for the reader are exactly the seqs it did
 * not receive (`missed` of them), each once, each with its message. */
static void check_letters(const char *bootstrap, const got *gt, long missed)
{
    static letters_read lr;
    memset(&lr, 0, sizeof(lr));
    int records = rc_test_kcat_values(bootstrap, see_letter, &lr);
    long exact = 0, wrong = 0;
    for (int g = 0; g < N_GROUPS; g++)
        for (int q = 1; q <= N_MSGS; q++) {
            exact += !gt->seen[g][q] && lr.count[g][q] == 1;
            wrong += gt->seen[g][q] ? lr.count[g][q] != 0 : lr.count[g][q] != 1;
        }
    printf("    kcat read %d records: %ld letters for the missed seqs, %ld seqs wrong, %d other records\n", records,
           exact, wrong, lr.others);
    CU_ASSERT_EQUAL(records, missed);
    CU_ASSERT_EQUAL(exact, missed);
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT_EQUAL(lr.others, 0);
}

static void test_history_too_short(void)
{
    char bootstrap[256], history[16];
    pid_t broker = rc_test_kafka_dev_start(bootstrap, sizeof(bootstrap));
    CU_ASSERT_FATAL(broker > 0);
    snprintf(history, sizeof(history), "%d", SHORT_HISTORY);
    rc_client s, r;
    scene(history, bootstrap, &s, &r);
    static got gt;
    memset(&gt, 0, sizeof(gt));
    gt.allow_gaps = true;
    bool ok = read_all(&r, N_MSGS, &gt);
    long missed = (long)N_GROUPS * N_MSGS - gt.msgs;
    printf("\n    %ld msgs read, %ld missed, gaps %d and %d; lost (lettered) %.0f, slow_consumer letters %.0f\n",
           gt.msgs, missed, gt.gaps[0], gt.gaps[1], metric("ringcast_catchup_lost_total{"),
           metric("ringcast_slow_consumer_letters_total{"));
    if (!ok)
        printf("    %s\n", gt.failure);
    CU_ASSERT(ok);
    CU_ASSERT(missed > 0); /* history really was too short */
    /* Each catch-up leaves one gap (a reader whose socket drained for a
     * moment during the flood may have caught up and fallen behind again);
     * after the last one, what history holds arrives, to the end. */
    for (int g = 0; g < N_GROUPS; g++)
        for (int k = 0; k < SHORT_HISTORY; k++)
            CU_ASSERT(gt.seen[g][N_MSGS - k]);
    CU_ASSERT(gt.gaps[0] + gt.gaps[1] >= 1);
    CU_ASSERT_EQUAL(metric("ringcast_catchup_lost_total{"), missed);
    CU_ASSERT_EQUAL(metric("ringcast_slow_consumer_letters_total{"), missed);
    CU_ASSERT_EQUAL(metric("ringcast_letters_refused_total{"), 0);
    CU_ASSERT_EQUAL(metric("ringcast_slow_consumer_closed_total{"), 0);
    CU_ASSERT_EQUAL(metric("ringcast_catchup_held_frames{"), 0); /* caught up: nothing held */
    /* Still connected and caught up: a live message arrives as usual. */
    rc_msg ack, m;
    CU_ASSERT(rc_client_publish(&s, group_name(1), "live", 4, NULL, IT_TIMEOUT_MS, &ack) == 0);
    CU_ASSERT(it_expect(&r, &m, RC_T_MSG) && it_str_is(m.g, group_name(1)) && m.seq == N_MSGS + 1);
    rc_client_close(&s);
    rc_client_close(&r);
    CU_ASSERT_EQUAL(it_stop(&srv), 0); /* flushes the producer */

    check_letters(bootstrap, &gt, missed);
    rc_test_kafka_dev_stop(broker);
}

/* history_ttl expires everything the reader missed before it reads again:
 * the page finds it gone (`lost`), the held messages become letters, and
 * the reader goes on with the next live message of each group. */
static void test_history_expired(void)
{
    char bootstrap[256];
    pid_t broker = rc_test_kafka_dev_start(bootstrap, sizeof(bootstrap));
    CU_ASSERT_FATAL(broker > 0);
    rc_client s, r;
    scene_ttl("10000", "1", bootstrap, &s, &r);
    usleep(TTL_WAIT_MS * 1000); /* the last message sent is older than history_ttl */
    reader_wakes(&r);
    rc_msg ack;
    for (int g = 0; g < N_GROUPS; g++) /* one fresh message per group, after the expired ones */
        CU_ASSERT(rc_client_publish(&s, group_name(g), "live", 4, NULL, IT_TIMEOUT_MS, &ack) == 0);
    static got gt;
    memset(&gt, 0, sizeof(gt));
    gt.allow_gaps = true;
    bool ok = read_all(&r, N_MSGS + 1, &gt);
    long missed = (long)N_GROUPS * (N_MSGS + 1) - gt.msgs;
    printf("\n    %ld msgs read, %ld missed, gaps %d and %d; lost (lettered) %.0f, pages %.0f\n", gt.msgs, missed,
           gt.gaps[0], gt.gaps[1], metric("ringcast_catchup_lost_total{"), metric("ringcast_catchup_pages_total{"));
    if (!ok)
        printf("    %s\n", gt.failure);
    CU_ASSERT(ok);
    CU_ASSERT(missed > 0);
    CU_ASSERT(gt.gaps[0] + gt.gaps[1] >= 1);
    CU_ASSERT_EQUAL(metric("ringcast_catchup_lost_total{"), missed);
    CU_ASSERT_EQUAL(metric("ringcast_slow_consumer_letters_total{"), missed);
    CU_ASSERT_EQUAL(metric("ringcast_slow_consumer_closed_total{"), 0);
    CU_ASSERT_EQUAL(metric("ringcast_catchup_held_frames{"), 0);
    rc_client_close(&s);
    rc_client_close(&r);
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
    check_letters(bootstrap, &gt, missed);
    rc_test_kafka_dev_stop(broker);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite su = CU_add_suite("catch-up from history", NULL, cleanup);
    CU_add_test(su, "a slow reader catches up from history, gapless", test_reader_catches_up);
    CU_add_test(su, "history too short: what it lost becomes letters, the reader stays", test_history_too_short);
    CU_add_test(su, "history expired: the page reports it lost, it becomes letters", test_history_expired);
    return rc_test_run();
}
