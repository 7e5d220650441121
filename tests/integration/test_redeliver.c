#define _GNU_SOURCE
/* Redelivery of replayed slow_consumer letters, end to end
 * (ARCHITECTURE §7, proto/PROTOCOL.md §6.2: replaying a letter twice
 * delivers it once).
 *
 * bob joins a group and stops reading (a tiny receive buffer), alice sends
 * until deliveries to bob become slow_consumer letters (the server's
 * embedded broker takes them), carol reads everything. Then bob drains his
 * socket: the seqs he did not get are exactly the letters (the metric says
 * how many), so the test builds the replay frames from them and alice's
 * acks (seq, ts) instead of reading Kafka back. The admin replays them:
 * bob gets each missing seq once, a second replay gets him nothing, carol
 * never sees a duplicate, and a letter for a user who is not online is
 * acked and delivers nothing. A second test letters more messages than a
 * connection remembers: the oldest are forgotten (counted) and their replay
 * delivers nothing, while the newest are still redelivered.
 *
 * Ordering barrier: the admin waits for every replay's ack before alice
 * sends a marker message; one shard owns the group and each io thread takes
 * its outbatches in order, so anything a replay sent bob or carol reaches
 * them before the marker does.
 */
#include <CUnit/CUnit.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "itest.h"

#define TOKEN "redeliver-token"
#define GROUP "busy"
#define MAX_SEQ 32768u         /* seqs one test may reach */
#define BIG_BODY 1000u         /* bytes: fills bob's queue quickly */
#define SMALL_BODY 16u         /* bytes: cheap letters once bob is past the bound */
#define BURST 20u              /* sends between reads, so alice and carol keep up */
#define MIN_LETTERS 30u        /* letters test 1 waits for */
#define EXTRA_LETTERS 1500u    /* test 2: more than a connection remembers (RC_CONN_LETTERED_MAX, 1024) */
#define SLOW_RCVBUF 4096       /* bob's receive buffer */
#define SEND_BUDGET_MS 60000   /* longest a test sends before giving up */
#define DRAIN_ROUNDS 8         /* ping barriers bob does at most to empty his queue */
#define REPLAY_RID 100000u     /* rids of replays: REPLAY_RID + seq (+ MAX_SEQ the second time) */

static uint64_t ack_ts[MAX_SEQ + 1];      /* seq -> ts from alice's ack */
static uint32_t body_len[MAX_SEQ + 1];    /* seq -> body bytes alice sent */
static uint16_t bob_got[MAX_SEQ + 1];     /* seq -> times bob received it */
static uint16_t carol_got[MAX_SEQ + 1];
static uint64_t acks;                     /* acks alice has read */
static uint32_t bad_content;              /* msgs whose from, body or ts differ from what alice sent */

/* The body of seq: deterministic, so replays can rebuild it. */
static void body_of(uint64_t seq, char *out, uint32_t len)
{
    int n = snprintf(out, len, "b%llu:", (unsigned long long)seq);
    for (uint32_t i = (uint32_t)n; i < len; i++)
        out[i] = (char)('a' + seq % 26);
}

static void reset_state(void)
{
    memset(ack_ts, 0, sizeof(ack_ts));
    memset(body_len, 0, sizeof(body_len));
    memset(bob_got, 0, sizeof(bob_got));
    memset(carol_got, 0, sizeof(carol_got));
    acks = 0;
    bad_content = 0;
}

/* ---- clients ---- */

static void login_join(rc_client *c, const char *user)
{
    memset(c, 0, sizeof(*c));
    it_suite_login(c, user);
    it_suite_join(c, GROUP, 0);
}

/* bob: a tiny receive buffer, so the server's queue for him fills fast. */
static void login_slow(rc_client *c, const char *user)
{
    memset(c, 0, sizeof(*c));
    int fd = socket(AF_INET, SOCK_STREAM, 0), sz = SLOW_RCVBUF;
    CU_ASSERT_FATAL(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(it_srv.s.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    CU_ASSERT_FATAL(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    CU_ASSERT_FATAL(rc_client_connect(c, IT_HOST, it_srv.s.port, IT_TIMEOUT_MS) == 0);
    close(c->fd);
    c->fd = fd;
    CU_ASSERT_FATAL(rc_client_hello(c, user, IT_TIMEOUT_MS) == 0);
    it_suite_join(c, GROUP, 0);
}

static void login_admin(rc_client *c)
{
    memset(c, 0, sizeof(*c));
    CU_ASSERT_FATAL(rc_client_connect(c, IT_HOST, it_srv.s.port, IT_TIMEOUT_MS) == 0);
    rc_msg m = { .type = RC_T_HELLO, .user = rc_str_c("replayer"), .has = RC_HAS_TOKEN, .token = rc_str_c(TOKEN) }, r;
    CU_ASSERT_FATAL(it_request(c, &m, 1) == 0);
    CU_ASSERT_FATAL(rc_client_wait(c, RC_T_WELCOME, 1, &r, IT_TIMEOUT_MS) == 1 && r.type == RC_T_WELCOME);
}

/* Counts a msg into got[] (false for a seq out of range) and checks it is
 * what alice sent as that seq (ts once her ack told it). */
static bool count_msg(uint16_t *got, const rc_msg *m)
{
    if (m->seq == 0 || m->seq > MAX_SEQ)
        return false;
    got[m->seq]++;
    static char body[BIG_BODY];
    uint32_t len = body_len[m->seq];
    body_of(m->seq, body, len);
    if (!it_str_is(m->from, "alice") || m->body.len != len || memcmp(m->body.ptr, body, len) != 0 ||
        (ack_ts[m->seq] && m->ts != ack_ts[m->seq]))
        bad_content++;
    return true;
}

/* Notes one of alice's acks: it gives the seq's ts. */
static void alice_frame(const rc_msg *m)
{
    if (m->type == RC_T_ACK && m->seq >= 1 && m->seq <= MAX_SEQ) {
        ack_ts[m->seq] = m->ts;
        acks++;
    }
}

/* Reads what alice has without blocking. */
static void drain_alice(rc_client *c)
{
    rc_msg m;
    while (rc_client_recv(c, &m, 0) == 1)
        alice_frame(&m);
}

/* Reads alice until the ack of seq; false on timeout. */
static bool alice_until_ack(rc_client *c, uint64_t seq)
{
    rc_msg m;
    for (int64_t end = it_now_ms() + IT_TIMEOUT_MS; ack_ts[seq] == 0 && it_now_ms() < end;) {
        if (rc_client_recv(c, &m, IT_TIMEOUT_MS) != 1)
            return false;
        alice_frame(&m);
    }
    return ack_ts[seq] != 0;
}

/* Reads c until the msg with this seq, counting every msg; false on timeout. */
static bool read_until(rc_client *c, uint64_t seq, uint16_t *got)
{
    rc_msg m;
    for (int64_t end = it_now_ms() + IT_TIMEOUT_MS; it_now_ms() < end;) {
        if (rc_client_recv(c, &m, IT_TIMEOUT_MS) != 1)
            return false;
        if (m.type == RC_T_MSG && count_msg(got, &m) && m.seq == seq)
            return true;
    }
    return false;
}

/* Sends seq (the next one) from alice with a body of len bytes. */
static void send_seq(rc_client *alice, uint64_t seq, uint32_t len)
{
    static char body[BIG_BODY];
    body_of(seq, body, len);
    body_len[seq] = len;
    rc_msg m = { .type = RC_T_SEND, .g = rc_str_c(GROUP), .body = { body, len } };
    CU_ASSERT_FATAL(rc_client_send(alice, &m) == 0);
}

static double slow_letters(void)
{
    return rc_test_metric(it_srv.s.admin_port, "ringcast_slow_consumer_letters_total", 1);
}

/* After a burst up to seq: alice and carol read everything of it, so
 * neither ever falls behind by more than a burst (only bob may pass
 * outbound_high_bytes, whatever the machine's load). */
static void keep_up(rc_client *alice, rc_client *carol, uint64_t seq)
{
    CU_ASSERT_FATAL(alice_until_ack(alice, seq));
    if (carol_got[seq] == 0)
        CU_ASSERT_FATAL(read_until(carol, seq, carol_got));
}

/* Sends big bodies in bursts until bob's deliveries have become at least
 * `letters` slow_consumer letters; returns the last seq sent. */
static uint64_t send_until_lettered(rc_client *alice, rc_client *carol, double letters)
{
    uint64_t seq = 0;
    int64_t end = it_now_ms() + SEND_BUDGET_MS;
    while (slow_letters() < letters && seq + BURST <= MAX_SEQ / 2 && it_now_ms() < end) { /* half: room for test 2's extras */
        for (uint32_t k = 0; k < BURST; k++)
            send_seq(alice, ++seq, BIG_BODY);
        keep_up(alice, carol, seq);
    }
    CU_ASSERT_FATAL(slow_letters() >= letters);
    return seq;
}


/* bob reads everything queued for him: ping barriers until one finds no
 * msg. Returns the msgs read. */
static uint64_t bob_drain(rc_client *bob)
{
    uint64_t total = 0;
    for (uint32_t round = 0; round < DRAIN_ROUNDS; round++) {
        rc_msg m = { .type = RC_T_PING };
        uint64_t rid = 500 + round, n = 0;
        CU_ASSERT_FATAL(it_request(bob, &m, rid) == 0);
        for (;;) {
            CU_ASSERT_FATAL(it_next(bob, &m) == 1);
            if (m.type == RC_T_PONG && m.rid == rid)
                break;
            if (m.type == RC_T_MSG) {
                CU_ASSERT(count_msg(bob_got, &m));
                n++;
            }
        }
        total += n;
        if (n == 0)
            return total;
    }
    CU_FAIL("bob's queue did not empty");
    return total;
}

/* ---- replays ---- */

/* Sends the slow_consumer letter of seq for `to`, as the replay tool would. */
static void replay_letter(rc_client *admin, uint64_t seq, const char *to, const char *g, uint64_t rid)
{
    static char body[BIG_BODY];
    body_of(seq, body, body_len[seq]);
    rc_msg m = { .type = RC_T_REPLAY, .has = RC_HAS_SEQ | RC_HAS_TO, .g = rc_str_c(g), .seq = seq,
                 .ts = ack_ts[seq], .from = rc_str_c("alice"), .to = rc_str_c(to), .body = { body, body_len[seq] },
                 .reason = rc_str_c("slow_consumer") };
    CU_ASSERT_FATAL(it_request(admin, &m, rid) == 0);
}

/* Reads the acks of n replays; returns how many said dup. Every one must
 * be an ack (never an err) naming its seq. */
static uint32_t replay_acks(rc_client *admin, uint32_t n)
{
    uint32_t dups = 0;
    for (uint32_t i = 0; i < n; i++) {
        rc_msg r;
        CU_ASSERT_FATAL(it_next(admin, &r) == 1);
        CU_ASSERT_FATAL(r.type == RC_T_ACK);
        CU_ASSERT_EQUAL(r.seq, (r.rid - REPLAY_RID) % MAX_SEQ);
        dups += r.dup;
    }
    return dups;
}

/* Replays the letters of every seq in missing[0..n), pipelined. */
static uint32_t replay_all(rc_client *admin, const uint64_t *missing, uint32_t n, uint64_t rid_base)
{
    for (uint32_t i = 0; i < n; i++)
        replay_letter(admin, missing[i], "bob", GROUP, rid_base + missing[i]);
    return replay_acks(admin, n);
}

/* Sends the marker seq from alice and reads bob and carol up to it. */
static void barrier(rc_client *alice, rc_client *bob, rc_client *carol, uint64_t seq)
{
    send_seq(alice, seq, SMALL_BODY);
    CU_ASSERT_FATAL(read_until(bob, seq, bob_got));
    CU_ASSERT_FATAL(read_until(carol, seq, carol_got));
    drain_alice(alice);
}

/* The seqs in 1..last bob never received, ascending; returns how many. */
static uint32_t missing_seqs(uint64_t last, uint64_t *out)
{
    uint32_t n = 0;
    for (uint64_t s = 1; s <= last; s++)
        if (bob_got[s] == 0)
            out[n++] = s;
    return n;
}

/* Every seq in 1..last was received exactly once, except the `skip` first
 * of missing[] (still never). */
static void check_once(const uint16_t *got, uint64_t last, const uint64_t *missing, uint32_t skip)
{
    uint32_t wrong = 0;
    for (uint64_t s = 1; s <= last; s++) {
        bool skipped = false;
        for (uint32_t i = 0; i < skip; i++)
            skipped |= missing[i] == s;
        wrong += got[s] != (skipped ? 0 : 1);
    }
    CU_ASSERT_EQUAL(wrong, 0);
}

static double metric(const char *name)
{
    return rc_test_metric(it_srv.s.admin_port, name, 1);
}

static const char *const FLAGS[] = { "--admin-token", TOKEN, "--outbound-stall-ms", "50", "--outbound-high-bytes", "1048576",
                                     "--outbound-kill-bytes", "1073741824", "--history-max", "16", NULL };

/* The cast of every test: bob, who stops reading, alice who sends, carol
 * who reads everything, and an admin session that replays. */
static void scene_start(rc_client *alice, rc_client *bob, rc_client *carol, rc_client *admin)
{
    reset_state();
    it_suite_start(FLAGS);
    login_slow(bob, "bob");
    login_join(alice, "alice");
    login_join(carol, "carol");
    login_admin(admin);
}

/* 1. Missing seqs come back once; a second replay and a replay for someone
 * offline deliver nothing; carol never gets a duplicate. */
static void test_redeliver_once(void)
{
    rc_client alice, bob, carol, admin;
    scene_start(&alice, &bob, &carol, &admin);

    uint64_t last = send_until_lettered(&alice, &carol, MIN_LETTERS);
    CU_ASSERT_EQUAL(acks, last);
    uint64_t read = bob_drain(&bob);
    static uint64_t missing[MAX_SEQ];
    uint32_t n = missing_seqs(last, missing);
    double lettered = slow_letters();
    printf("\n    %llu sent, bob read %llu, %u missing, %.0f slow_consumer letters", (unsigned long long)last,
           (unsigned long long)read, n, lettered);
    CU_ASSERT_FATAL(n > 0);
    CU_ASSERT_EQUAL(n, (uint32_t)lettered); /* what bob missed is exactly what was lettered */
    CU_ASSERT_EQUAL(read + n, last);

    /* First replay: acked (people are online), each missing seq once, with
     * its original content (count_msg checks it; history keeps only 16
     * messages here, so most were rebuilt from the letters). */
    CU_ASSERT_EQUAL(replay_all(&admin, missing, n, REPLAY_RID), 0);
    barrier(&alice, &bob, &carol, last + 1);
    check_once(bob_got, last + 1, missing, 0);
    CU_ASSERT_EQUAL(metric("ringcast_redelivered_total"), n);

    /* Second replay of every letter: acked, nothing delivered. */
    CU_ASSERT_EQUAL(replay_all(&admin, missing, n, REPLAY_RID + MAX_SEQ), 0);
    barrier(&alice, &bob, &carol, last + 2);
    check_once(bob_got, last + 2, missing, 0);
    CU_ASSERT_EQUAL(metric("ringcast_redelivered_total"), n);
    CU_ASSERT_EQUAL(metric("ringcast_redelivery_skipped_total"), n);

    /* For someone not online: acked, nothing delivered; a group with nobody
     * online at all: acked with dup. */
    replay_letter(&admin, missing[0], "dave", GROUP, REPLAY_RID + missing[0]);
    CU_ASSERT_EQUAL(replay_acks(&admin, 1), 0);
    replay_letter(&admin, missing[0], "bob", "empty-room", REPLAY_RID + missing[0]);
    CU_ASSERT_EQUAL(replay_acks(&admin, 1), 1);
    barrier(&alice, &bob, &carol, last + 3);
    check_once(bob_got, last + 3, missing, 0);
    check_once(carol_got, last + 3, missing, 0); /* carol: every seq once, no duplicate */
    CU_ASSERT_EQUAL(metric("ringcast_redelivered_total"), n);
    CU_ASSERT_EQUAL(metric("ringcast_lettered_forgotten_total"), 0);
    CU_ASSERT_EQUAL(bad_content, 0);

    rc_client_close(&alice);
    rc_client_close(&bob);
    rc_client_close(&carol);
    rc_client_close(&admin);
    it_suite_stop();
}

/* 2. More letters than a connection remembers: the oldest are forgotten
 * (counted), their replay delivers nothing (history covers them), and the
 * newest are still redelivered once. */
static void test_forgotten(void)
{
    rc_client alice, bob, carol, admin;
    scene_start(&alice, &bob, &carol, &admin);

    uint64_t last = send_until_lettered(&alice, &carol, 1);
    for (uint32_t i = 0; i < EXTRA_LETTERS; i++) {
        send_seq(&alice, ++last, SMALL_BODY); /* bob is past the bound: each one is a letter */
        if ((i + 1) % BURST == 0 || i + 1 == EXTRA_LETTERS)
            keep_up(&alice, &carol, last);
    }
    CU_ASSERT_EQUAL(acks, last);
    bob_drain(&bob);
    static uint64_t missing[MAX_SEQ];
    uint32_t n = missing_seqs(last, missing);
    double forgotten = metric("ringcast_lettered_forgotten_total");
    printf("\n    %u letters for bob, %.0f forgotten", n, forgotten);
    CU_ASSERT_EQUAL(n, (uint32_t)slow_letters());
    CU_ASSERT_FATAL(forgotten > 0 && forgotten < n);

    CU_ASSERT_EQUAL(replay_all(&admin, missing, n, REPLAY_RID), 0);
    barrier(&alice, &bob, &carol, last + 1);
    check_once(bob_got, last + 1, missing, (uint32_t)forgotten); /* the oldest stay missing */
    check_once(carol_got, last + 1, missing, 0);
    CU_ASSERT_EQUAL(metric("ringcast_redelivered_total"), n - forgotten);
    CU_ASSERT_EQUAL(metric("ringcast_redelivery_skipped_total"), forgotten);
    CU_ASSERT_EQUAL(bad_content, 0);

    rc_client_close(&alice);
    rc_client_close(&bob);
    rc_client_close(&carol);
    rc_client_close(&admin);
    it_suite_stop();
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("redelivery of slow_consumer letters", NULL, it_suite_cleanup);
    CU_add_test(s, "a replayed letter reaches its recipient once", test_redeliver_once);
    CU_add_test(s, "letters past the remembered bound are forgotten", test_forgotten);
    return rc_test_run();
}
