/*
 * Wire protocol v1 against the real server (proto/PROTOCOL.md): every request type
 * and its reply fields, dedup by mid, join with since, hist paging, leave,
 * stored membership, history retention, and the server-side limits
 * (groups per session, connections) answered with E_LIMIT.
 *
 * Each test starts its own server (with its own data directory), so seqs
 * always start at 1 and no test sees another's groups. Receives are read
 * frame by frame with rc_client_recv, never skipped, and "no delivery" is
 * proven with a ping barrier (it_sync): whatever the server queued for a
 * session before the ping reaches it before the pong.
 */
#define _GNU_SOURCE
#include "itest.h"

#define SEND_RID0 100u     /* rid of the i-th send of collect_sends: SEND_RID0 + i */
#define SYNC_RID 9000u     /* rid of ping barriers */
#define N_SINCE 5          /* messages before a join with since */
#define SINCE 2
#define N_HIST 10          /* messages behind the hist tests */
#define RETAIN 10          /* --history-max of the retention test */
#define N_RETAIN 30        /* messages sent in the retention test */
#define RETAIN_SINCE 5
#define GROUP_LIMIT 3      /* --max-groups-per-session of the limit test */
#define CONN_LIMIT 5       /* --max-connections of the limit test */


static void body_text(int i, char *out, size_t n)
{
    snprintf(out, n, "message %d", i);
}

/* Sends n messages (bodies "message <first+i>") to g and reads until their n
 * acks and the n msg echoes arrived; checks the acks carry seqs first_seq..,
 * in order, and the echoes the same seqs. 0 or -1. */
static int collect_sends(rc_client *c, const char *g, int n, int first, uint64_t first_seq)
{
    char body[32];
    for (int i = 0; i < n; i++) {
        body_text(first + i, body, sizeof(body));
        rc_msg m = { .type = RC_T_SEND, .g = rc_str_c(g), .body = rc_str_c(body), .body_is_str = true };
        if (it_request(c, &m, SEND_RID0 + (uint64_t)i) != 0)
            return -1;
    }
    int acks = 0, msgs = 0;
    for (int k = 0; k < 4 * n && (acks < n || msgs < n); k++) {
        rc_msg m;
        if (it_next(c, &m) != 1)
            return -1;
        if (m.type == RC_T_ACK) {
            if (m.rid != SEND_RID0 + (uint64_t)acks || m.seq != first_seq + (uint64_t)acks || !it_str_is(m.g, g))
                return -1;
            acks++;
        } else if (m.type == RC_T_MSG) {
            if (m.seq != first_seq + (uint64_t)msgs || !it_str_is(m.g, g))
                return -1;
            msgs++;
        } else {
            return -1;
        }
    }
    return acks == n && msgs == n ? 0 : -1;
}

/* Checks a delivered msg: group, seq, sender and the body collect_sends gave it. */
static bool msg_is(const rc_msg *m, const char *g, uint64_t seq, const char *from, int body_no)
{
    char body[32];
    body_text(body_no, body, sizeof(body));
    return m->type == RC_T_MSG && it_str_is(m->g, g) && m->seq == seq && it_str_is(m->from, from) &&
           rc_str_eq(m->body, rc_str_c(body)) && m->ts > 0;
}


/* ---- hello, ping, join ---- */

static void test_hello_welcome(void)
{
    it_suite_start(NULL);
    rc_client a, b;
    rc_msg m = { .type = RC_T_HELLO, .user = rc_str_c("alice") };
    CU_ASSERT_FATAL(rc_client_connect(&a, IT_HOST, it_srv.s.port, IT_TIMEOUT_MS) == 0);
    CU_ASSERT(it_request(&a, &m, 7) == 0);
    CU_ASSERT_FATAL(it_expect(&a, &m, RC_T_WELCOME));
    CU_ASSERT(m.has & RC_HAS_RID);
    CU_ASSERT_EQUAL(m.rid, 7);
    CU_ASSERT(m.sid > 0);
    CU_ASSERT(m.srv.len > 0); /* server name and version */
    CU_ASSERT_EQUAL(m.max_frame, RC_DEFAULT_MAX_FRAME);
    uint64_t sid_a = m.sid;

    it_suite_login(&b, "bob");
    CU_ASSERT(b.sid > 0 && b.sid != sid_a); /* every session has its own id */
    rc_client_close(&a);
    rc_client_close(&b);
    it_suite_stop();

    /* max_frame in welcome is the server's configured value. */
    const char *flags[] = { "--max-frame", "1024", NULL };
    it_suite_start(flags);
    it_suite_login(&a, "alice");
    CU_ASSERT_EQUAL(a.max_frame, 1024);
    rc_client_close(&a);
    it_suite_stop();
}

static void test_ping_pong(void)
{
    it_suite_start(NULL);
    rc_client a;
    it_suite_login(&a, "alice");
    rc_msg m = { .type = RC_T_PING };
    CU_ASSERT(it_request(&a, &m, 42) == 0);
    CU_ASSERT_FATAL(it_expect(&a, &m, RC_T_PONG));
    CU_ASSERT((m.has & RC_HAS_RID) && m.rid == 42);
    m = (rc_msg){ .type = RC_T_PING }; /* without rid: a pong without rid */
    CU_ASSERT(rc_client_send(&a, &m) == 0);
    CU_ASSERT_FATAL(it_expect(&a, &m, RC_T_PONG));
    CU_ASSERT(!(m.has & RC_HAS_RID));
    rc_client_close(&a);
    it_suite_stop();
}

static void test_join_joined_seq(void)
{
    it_suite_start(NULL);
    rc_client a, b;
    it_suite_login(&a, "alice");
    rc_msg m = { .type = RC_T_JOIN, .g = rc_str_c("pj") };
    CU_ASSERT(it_request(&a, &m, 5) == 0);
    CU_ASSERT_FATAL(it_expect(&a, &m, RC_T_JOINED));
    CU_ASSERT((m.has & RC_HAS_RID) && m.rid == 5);
    CU_ASSERT(it_str_is(m.g, "pj"));
    CU_ASSERT_EQUAL(m.seq, 0); /* a new group */
    CU_ASSERT(collect_sends(&a, "pj", 3, 1, 1) == 0);
    it_suite_login(&b, "bob");
    it_suite_join(&b, "pj", 3); /* joined carries the group's last seq */
    it_suite_join(&a, "pj", 3); /* joining again is harmless */
    CU_ASSERT_EQUAL(it_pending_msgs(&b), 0);
    rc_client_close(&a);
    rc_client_close(&b);
    it_suite_stop();
}

/* ---- dedup ---- */

static void test_dedup_by_mid(void)
{
    it_suite_start(NULL);
    rc_client a, b;
    it_suite_login(&a, "alice");
    it_suite_login(&b, "bob");
    it_suite_join(&a, "dd", 0);
    it_suite_join(&b, "dd", 0);

    rc_msg m = { .type = RC_T_SEND, .g = rc_str_c("dd"), .body = rc_str_c("one"), .mid = rc_str_c("m1"),
                 .has = RC_HAS_MID };
    rc_msg r;
    CU_ASSERT(it_request(&a, &m, 1) == 0);
    int echo = 0;
    CU_ASSERT_FATAL(it_wait(&a, RC_T_ACK, 1, &r, &echo) == 1 && r.type == RC_T_ACK);
    CU_ASSERT_EQUAL(r.seq, 1);
    CU_ASSERT(!((r.has & RC_HAS_DUP) && r.dup));
    uint64_t ts = r.ts;
    CU_ASSERT(ts > 0);
    CU_ASSERT_EQUAL(echo + it_pending_msgs(&a), 1); /* the sender's own msg, once */
    CU_ASSERT_FATAL(it_expect(&b, &r, RC_T_MSG));
    CU_ASSERT(r.seq == 1 && it_str_is(r.mid, "m1") && (r.has & RC_HAS_MID));

    /* The same mid again: the original ack with dup, nothing sequenced. */
    CU_ASSERT(it_request(&a, &m, 2) == 0);
    int skipped = 0;
    CU_ASSERT_FATAL(it_wait(&a, RC_T_ACK, 2, &r, &skipped) == 1 && r.type == RC_T_ACK);
    CU_ASSERT((r.has & RC_HAS_DUP) && r.dup);
    CU_ASSERT_EQUAL(r.seq, 1);
    CU_ASSERT_EQUAL(r.ts, ts);
    CU_ASSERT(it_str_is(r.g, "dd"));
    CU_ASSERT_EQUAL(skipped + it_pending_msgs(&a), 0); /* no second msg for the sender */
    CU_ASSERT_EQUAL(it_pending_msgs(&b), 0);           /* nor for the other member */

    /* A new mid takes the next seq: the duplicate did not use one. */
    m.mid = rc_str_c("m2");
    CU_ASSERT(it_request(&a, &m, 3) == 0);
    CU_ASSERT_FATAL(it_wait(&a, RC_T_ACK, 3, &r, NULL) == 1 && r.type == RC_T_ACK);
    CU_ASSERT_EQUAL(r.seq, 2);
    CU_ASSERT(!((r.has & RC_HAS_DUP) && r.dup));

    /* Dedup is per sender: bob's m1 is a different message. */
    m.mid = rc_str_c("m1");
    CU_ASSERT(it_request(&b, &m, 4) == 0);
    CU_ASSERT_FATAL(it_wait(&b, RC_T_ACK, 4, &r, NULL) == 1 && r.type == RC_T_ACK);
    CU_ASSERT_EQUAL(r.seq, 3);
    CU_ASSERT(!((r.has & RC_HAS_DUP) && r.dup));
    rc_client_close(&a);
    rc_client_close(&b);
    it_suite_stop();
}

/* ---- join with since ---- */

/* Joins g with since and reads joined, the msgs after since, then synced. */
static void join_since(rc_client *c, const char *g, uint64_t since, uint64_t last, uint64_t first_msg,
                       const char *from, bool lost)
{
    rc_msg m = { .type = RC_T_JOIN, .g = rc_str_c(g), .since = since, .has = RC_HAS_SINCE };
    CU_ASSERT_FATAL(it_request(c, &m, 9) == 0);
    CU_ASSERT_FATAL(it_expect(c, &m, RC_T_JOINED));
    CU_ASSERT(m.rid == 9 && m.seq == last && it_str_is(m.g, g));
    for (uint64_t seq = first_msg; seq <= last; seq++) {
        CU_ASSERT_FATAL(it_expect(c, &m, RC_T_MSG));
        CU_ASSERT(msg_is(&m, g, seq, from, (int)seq));
    }
    CU_ASSERT_FATAL(it_expect(c, &m, RC_T_SYNCED));
    CU_ASSERT(it_str_is(m.g, g));
    CU_ASSERT_EQUAL(m.seq, last);
    CU_ASSERT_EQUAL(m.lost, lost);
    CU_ASSERT_EQUAL(it_pending_msgs(c), 0);
}

static void test_join_since(void)
{
    it_suite_start(NULL);
    rc_client a, b, c, d;
    it_suite_login(&a, "alice");
    it_suite_join(&a, "js", 0);
    CU_ASSERT_FATAL(collect_sends(&a, "js", N_SINCE, 1, 1) == 0);

    it_suite_login(&b, "bob");
    join_since(&b, "js", SINCE, N_SINCE, SINCE + 1, "alice", false); /* msgs 3, 4, 5 */
    it_suite_login(&c, "carol");
    join_since(&c, "js", 0, N_SINCE, 1, "alice", false); /* everything */
    it_suite_login(&d, "dave");
    join_since(&d, "js", N_SINCE, N_SINCE, N_SINCE + 1, "alice", false); /* up to date: none */

    /* After the catch-up, live messages follow without a gap. */
    CU_ASSERT_FATAL(collect_sends(&a, "js", 1, N_SINCE + 1, N_SINCE + 1) == 0);
    rc_msg m;
    CU_ASSERT_FATAL(it_expect(&b, &m, RC_T_MSG));
    CU_ASSERT(msg_is(&m, "js", N_SINCE + 1, "alice", N_SINCE + 1));
    rc_client_close(&a);
    rc_client_close(&b);
    rc_client_close(&c);
    rc_client_close(&d);
    it_suite_stop();
}

/* ---- hist ---- */

/* Sends hist and checks the reply holds exactly seqs first..last, oldest first. */
static void hist_expect(rc_client *c, const char *g, bool has_before, uint64_t before, bool has_limit,
                        uint64_t limit, uint64_t first, uint64_t last)
{
    rc_msg m = { .type = RC_T_HIST, .g = rc_str_c(g), .before = before, .limit = limit };
    m.has = (has_before ? RC_HAS_BEFORE : 0) | (has_limit ? RC_HAS_LIMIT : 0);
    CU_ASSERT_FATAL(it_request(c, &m, 21) == 0);
    CU_ASSERT_FATAL(it_expect(c, &m, RC_T_HIST));
    CU_ASSERT(m.rid == 21 && it_str_is(m.g, g));
    uint32_t want = last >= first ? (uint32_t)(last - first + 1) : 0;
    CU_ASSERT_EQUAL_FATAL(m.n_msgs, want);
    for (uint32_t i = 0; i < m.n_msgs; i++)
        CU_ASSERT(msg_is(&m.msgs[i], g, first + i, "alice", (int)(first + i)));
}

static void test_hist(void)
{
    it_suite_start(NULL);
    rc_client a, b;
    it_suite_login(&a, "alice");
    it_suite_join(&a, "hh", 0);
    CU_ASSERT_FATAL(collect_sends(&a, "hh", N_HIST, 1, 1) == 0);
    it_suite_login(&b, "bob");
    it_suite_join(&b, "hh", N_HIST);
    hist_expect(&b, "hh", false, 0, false, 0, 1, N_HIST);     /* default: all 10 */
    hist_expect(&b, "hh", false, 0, true, 3, N_HIST - 2, N_HIST); /* the latest 3 */
    hist_expect(&b, "hh", true, 5, false, 0, 1, 4);            /* below seq 5 */
    hist_expect(&b, "hh", true, 5, true, 2, 3, 4);             /* the 2 just below seq 5 */
    hist_expect(&b, "hh", true, 1, false, 0, 1, 0);            /* nothing below seq 1 */
    hist_expect(&b, "hh", false, 0, true, 1000, 1, N_HIST);    /* limit beyond what exists */
    CU_ASSERT_EQUAL(it_pending_msgs(&b), 0); /* hist delivers no msg frames */
    rc_client_close(&a);
    rc_client_close(&b);
    it_suite_stop();
}

static void test_hist_not_member(void)
{
    it_suite_start(NULL);
    rc_client a, c;
    it_suite_login(&a, "alice");
    it_suite_join(&a, "hn", 0);
    CU_ASSERT_FATAL(collect_sends(&a, "hn", 1, 1, 1) == 0);
    it_suite_login(&c, "carol");
    rc_msg m = { .type = RC_T_HIST, .g = rc_str_c("hn") };
    CU_ASSERT(it_request(&c, &m, 4) == 0);
    CU_ASSERT(it_next(&c, &m) == 1 && it_is_err(&m, RC_E_NOT_MEMBER, true, 4));
    m = (rc_msg){ .type = RC_T_HIST, .g = rc_str_c("no-such-group") };
    CU_ASSERT(it_request(&c, &m, 5) == 0);
    CU_ASSERT(it_next(&c, &m) == 1 && it_is_err(&m, RC_E_NOT_MEMBER, true, 5));
    rc_client_close(&a);
    rc_client_close(&c);
    it_suite_stop();
}

/* ---- leave ---- */

static void test_leave(void)
{
    it_suite_start(NULL);
    rc_client a, b;
    it_suite_login(&a, "alice");
    it_suite_login(&b, "bob");
    it_suite_join(&a, "lv", 0);
    it_suite_join(&b, "lv", 0);
    rc_msg m = { .type = RC_T_LEAVE, .g = rc_str_c("lv") };
    CU_ASSERT(it_request(&b, &m, 3) == 0);
    CU_ASSERT_FATAL(it_expect(&b, &m, RC_T_LEFT));
    CU_ASSERT(m.rid == 3 && it_str_is(m.g, "lv"));

    CU_ASSERT_FATAL(collect_sends(&a, "lv", 2, 1, 1) == 0);
    CU_ASSERT_EQUAL(it_pending_msgs(&b), 0); /* no deliveries after left */

    m = (rc_msg){ .type = RC_T_SEND, .g = rc_str_c("lv"), .body = rc_str_c("x") };
    CU_ASSERT(it_request(&b, &m, 5) == 0);
    CU_ASSERT(it_next(&b, &m) == 1 && it_is_err(&m, RC_E_NOT_MEMBER, true, 5));
    CU_ASSERT_EQUAL(it_pending_msgs(&a), 0); /* bob's send was not sequenced */
    m = (rc_msg){ .type = RC_T_HIST, .g = rc_str_c("lv") };
    CU_ASSERT(it_request(&b, &m, 6) == 0);
    CU_ASSERT(it_next(&b, &m) == 1 && it_is_err(&m, RC_E_NOT_MEMBER, true, 6));
    /* The next message of the group takes seq 3: nothing was used by bob. */
    CU_ASSERT(collect_sends(&a, "lv", 1, 3, 3) == 0);
    rc_client_close(&a);
    rc_client_close(&b);
    it_suite_stop();
}

/* ---- stored membership ---- */

static void test_membership_stored(void)
{
    it_suite_start(NULL);
    rc_client a, u;
    it_suite_login(&u, "mem");
    it_suite_join(&u, "ms", 0);
    rc_client_close(&u);

    it_suite_login(&a, "alice");
    it_suite_join(&a, "ms", 0);
    it_suite_login(&u, "mem"); /* a new session of the same user */

    /* Membership is stored: sending needs no new join ... */
    rc_msg m = { .type = RC_T_SEND, .g = rc_str_c("ms"), .body = rc_str_c("back") };
    CU_ASSERT(it_request(&u, &m, 2) == 0);
    CU_ASSERT_FATAL(it_expect(&u, &m, RC_T_ACK));
    CU_ASSERT(m.rid == 2 && m.seq == 1);
    CU_ASSERT_FATAL(it_expect(&a, &m, RC_T_MSG));
    CU_ASSERT(m.seq == 1 && it_str_is(m.from, "mem") && it_str_is(m.body, "back"));

    /* ... but this session receives the group only after it joins. */
    CU_ASSERT_FATAL(collect_sends(&a, "ms", 1, 2, 2) == 0);
    CU_ASSERT_EQUAL(it_pending_msgs(&u), 0);
    it_suite_join(&u, "ms", 2);
    CU_ASSERT_FATAL(collect_sends(&a, "ms", 1, 3, 3) == 0);
    CU_ASSERT_FATAL(it_expect(&u, &m, RC_T_MSG));
    CU_ASSERT(msg_is(&m, "ms", 3, "alice", 3));
    rc_client_close(&a);
    rc_client_close(&u);
    it_suite_stop();
}

/* ---- retention ---- */

static void test_history_max(void)
{
    char retain[16];
    snprintf(retain, sizeof(retain), "%d", RETAIN);
    const char *flags[] = { "--history-max", retain, NULL };
    it_suite_start(flags);
    rc_client a, b;
    it_suite_login(&a, "alice");
    it_suite_join(&a, "hm", 0);
    CU_ASSERT_FATAL(collect_sends(&a, "hm", N_RETAIN, 1, 1) == 0);
    it_suite_login(&b, "bob");
    /* History keeps 21..30 only: since=5 reaches back past it, so lost. */
    join_since(&b, "hm", RETAIN_SINCE, N_RETAIN, N_RETAIN - RETAIN + 1, "alice", true);
    hist_expect(&b, "hm", false, 0, false, 0, N_RETAIN - RETAIN + 1, N_RETAIN);
    rc_client c;
    it_suite_login(&c, "carol"); /* since inside what is kept: not lost */
    join_since(&c, "hm", N_RETAIN - 3, N_RETAIN, N_RETAIN - 2, "alice", false);
    rc_client_close(&a);
    rc_client_close(&b);
    rc_client_close(&c);
    it_suite_stop();
}

/* ---- limits ---- */

static void test_max_groups_per_session(void)
{
    char limit[16];
    snprintf(limit, sizeof(limit), "%d", GROUP_LIMIT);
    const char *flags[] = { "--max-groups-per-session", limit, NULL };
    it_suite_start(flags);
    rc_client a;
    it_suite_login(&a, "alice");
    it_suite_join(&a, "lim1", 0);
    it_suite_join(&a, "lim2", 0);
    it_suite_join(&a, "lim3", 0);
    rc_msg m = { .type = RC_T_JOIN, .g = rc_str_c("lim4") };
    CU_ASSERT(it_request(&a, &m, 9) == 0);
    CU_ASSERT(it_next(&a, &m) == 1 && it_is_err(&m, RC_E_LIMIT, true, 9));
    it_suite_join(&a, "lim2", 0); /* a group already joined is not a new one */
    CU_ASSERT(rc_client_leave(&a, "lim1", IT_TIMEOUT_MS) == 0);
    it_suite_join(&a, "lim4", 0); /* leaving frees a place */
    /* The refused join did not make alice a member of lim4 before: the
     * session still works and holds lim2, lim3, lim4. */
    CU_ASSERT(collect_sends(&a, "lim4", 1, 1, 1) == 0);
    rc_client_close(&a);
    it_suite_stop();
}

static void test_max_connections(void)
{
    char limit[16];
    snprintf(limit, sizeof(limit), "%d", CONN_LIMIT);
    const char *flags[] = { "--max-connections", limit, NULL };
    it_suite_start(flags);
    /* The start-up probe connection must be gone before counting. The
     * server may accept it only after a first read of the gauge, and holds
     * its place until it sees it closed: a login refused meanwhile is tried
     * again once the gauge is back to the logins made (at most 3 tries). */
    CU_ASSERT_FATAL(it_wait_metric(&it_srv, IT_OPEN_CONNS, 0) == 0);
    rc_client cs[CONN_LIMIT];
    int n = 0;
    for (; n < CONN_LIMIT; n++) {
        char user[16];
        snprintf(user, sizeof(user), "mc%d", n);
        int tries = 0;
        while (it_login(&cs[n], &it_srv, user) != 0 && ++tries < 3)
            it_wait_metric(&it_srv, IT_OPEN_CONNS, n);
        if (tries == 3)
            break;
    }
    CU_ASSERT_EQUAL_FATAL(n, CONN_LIMIT);

    rc_client x;
    CU_ASSERT_FATAL(rc_client_connect(&x, IT_HOST, it_srv.s.port, IT_TIMEOUT_MS) == 0);
    rc_msg m;
    CU_ASSERT(it_next(&x, &m) == 1 && it_is_err(&m, RC_E_LIMIT, false, 0));
    CU_ASSERT_EQUAL(it_next(&x, &m), -1); /* then closed */
    rc_client_close(&x);

    /* The others were not disturbed, and a freed place is usable again. */
    for (int i = 0; i < n; i++)
        CU_ASSERT_EQUAL(it_pending_msgs(&cs[i]), 0);
    rc_client_close(&cs[0]);
    CU_ASSERT(it_wait_metric(&it_srv, IT_OPEN_CONNS, CONN_LIMIT - 1) == CONN_LIMIT - 1);
    CU_ASSERT(it_login(&cs[0], &it_srv, "mc-again") == 0);
    for (int i = 0; i < n; i++)
        rc_client_close(&cs[i]);
    it_suite_stop();
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("protocol", NULL, it_suite_cleanup);
    CU_pSuite l = CU_add_suite("limits", NULL, it_suite_cleanup);
    if (!s || !l) {
        CU_cleanup_registry();
        return 1;
    }
    CU_add_test(s, "hello -> welcome {sid, it_srv, max_frame}", test_hello_welcome);
    CU_add_test(s, "ping -> pong with rid", test_ping_pong);
    CU_add_test(s, "join -> joined with the last seq", test_join_joined_seq);
    CU_add_test(s, "dedup by mid", test_dedup_by_mid);
    CU_add_test(s, "join with since", test_join_since);
    CU_add_test(s, "hist: default, limit, before", test_hist);
    CU_add_test(s, "hist without membership", test_hist_not_member);
    CU_add_test(s, "leave", test_leave);
    CU_add_test(s, "membership is stored", test_membership_stored);
    CU_add_test(l, "history_max retention and lost", test_history_max);
    CU_add_test(l, "max_groups_per_session", test_max_groups_per_session);
    CU_add_test(l, "max_connections", test_max_connections);
    return rc_test_run();
}
