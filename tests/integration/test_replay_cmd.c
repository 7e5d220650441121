#define _GNU_SOURCE
/* The server side of `replay` (proto/PROTOCOL.md §6.2, §9): admin sessions only; an
 * overloaded letter is sequenced as from its original sender with its mid,
 * once however often it is replayed; a slow_consumer letter is acknowledged
 * (history covers it). */
#include <CUnit/CUnit.h>
#include <string.h>

#include "itest.h"

#define TOKEN "s3cret"

static int hello_token(rc_client *c, const char *user, const char *token, rc_msg *reply)
{
    rc_msg m = { .type = RC_T_HELLO, .user = rc_str_c(user), .has = RC_HAS_TOKEN | RC_HAS_RID,
                 .token = rc_str_c(token), .rid = 1 };
    if (rc_client_send(c, &m) != 0)
        return -1;
    return rc_client_wait(c, RC_T_WELCOME, 1, reply, IT_TIMEOUT_MS) == 1 ? 0 : -1;
}

static rc_msg letter(const char *reason, const char *mid, uint64_t rid)
{
    rc_msg m = { .type = RC_T_REPLAY, .has = RC_HAS_RID, .rid = rid, .g = rc_str_c("room"),
                 .from = rc_str_c("alice"), .ts = 1700000000000ull, .body = { "lost words", 10 },
                 .body_is_str = true, .reason = rc_str_c(reason) };
    if (mid) {
        m.has |= RC_HAS_MID;
        m.mid = rc_str_c(mid);
    }
    return m;
}

static int replay(rc_client *admin, rc_msg m, rc_msg *reply)
{
    if (rc_client_send(admin, &m) != 0)
        return -1;
    return rc_client_wait(admin, RC_T_ACK, m.rid, reply, IT_TIMEOUT_MS) == 1 ? 0 : -1;
}

static void test_replay_command(void)
{
    const char *flags[] = { "--admin-token", TOKEN, NULL };
    it_suite_start(flags);
    rc_client alice, bob, admin, bad, plain;
    it_suite_login(&alice, "alice");
    it_suite_login(&bob, "bob");
    it_suite_join(&alice, "room", 0);
    it_suite_join(&bob, "room", 0);

    rc_msg r;
    CU_ASSERT_FATAL(rc_client_connect(&bad, "127.0.0.1", it_srv.s.port, IT_TIMEOUT_MS) == 0);
    CU_ASSERT(hello_token(&bad, "mallory", "guess", &r) == 0 && r.type == RC_T_ERR && r.code == RC_E_AUTH_FAILED);

    it_suite_login(&plain, "carol");
    CU_ASSERT(replay(&plain, letter("overloaded", "m1", 5), &r) == 0 && r.type == RC_T_ERR && r.code == RC_E_FORBIDDEN);

    CU_ASSERT_FATAL(rc_client_connect(&admin, "127.0.0.1", it_srv.s.port, IT_TIMEOUT_MS) == 0);
    CU_ASSERT_FATAL(hello_token(&admin, "replayer", TOKEN, &r) == 0 && r.type == RC_T_WELCOME);

    /* First replay: sequenced as alice's message, delivered to the members. */
    CU_ASSERT(replay(&admin, letter("overloaded", "m1", 10), &r) == 0 && r.type == RC_T_ACK && r.seq == 1 && !r.dup);
    rc_msg m;
    CU_ASSERT_FATAL(it_expect(&bob, &m, RC_T_MSG));
    CU_ASSERT(m.seq == 1 && it_str_is(m.from, "alice") && it_str_is(m.body, "lost words") && it_str_is(m.mid, "m1"));
    /* Second replay of the same letter: delivered once. */
    CU_ASSERT(replay(&admin, letter("overloaded", "m1", 11), &r) == 0 && r.type == RC_T_ACK && r.seq == 1 && r.dup);
    /* Without a mid, the letter's own content makes the replay idempotent. */
    CU_ASSERT(replay(&admin, letter("shutdown", NULL, 12), &r) == 0 && r.type == RC_T_ACK && r.seq == 2 && !r.dup);
    CU_ASSERT(replay(&admin, letter("shutdown", NULL, 13), &r) == 0 && r.type == RC_T_ACK && r.seq == 2 && r.dup);
    CU_ASSERT_FATAL(it_expect(&bob, &m, RC_T_MSG));
    CU_ASSERT(m.seq == 2);
    /* slow_consumer: already in history; acknowledged, nothing new sent. */
    rc_msg sc = letter("slow_consumer", "m1", 14);
    sc.has |= RC_HAS_SEQ;
    sc.seq = 1;
    CU_ASSERT(replay(&admin, sc, &r) == 0 && r.type == RC_T_ACK && r.seq == 1);
    /* A shutdown letter of a queued delivery carries its seq: also history. */
    rc_msg sd = letter("shutdown", "m1", 16);
    sd.has |= RC_HAS_SEQ;
    sd.seq = 1;
    CU_ASSERT(replay(&admin, sd, &r) == 0 && r.type == RC_T_ACK && r.seq == 1 && r.dup);
    CU_ASSERT(replay(&admin, letter("bogus", "m9", 15), &r) == 0 && r.type == RC_T_ERR && r.code == RC_E_BAD_FIELD);
    CU_ASSERT_EQUAL(it_pending_msgs(&bob), 0);
    /* What the server did with each replay, as an operator reads it. */
    uint16_t ap = it_srv.s.admin_port;
    CU_ASSERT_EQUAL(rc_test_metric(ap, "ringcast_replays_send_total", 1), 4);
    CU_ASSERT_EQUAL(rc_test_metric(ap, "ringcast_replays_history_total", 1), 2);
    CU_ASSERT_EQUAL(rc_test_metric(ap, "ringcast_replays_redeliver_total", 1), 0);
    CU_ASSERT_EQUAL(rc_test_metric(ap, "ringcast_replays_refused_total", 1), 2);

    rc_client_close(&alice);
    rc_client_close(&bob);
    rc_client_close(&admin);
    rc_client_close(&bad);
    rc_client_close(&plain);
    it_suite_stop();
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("replay command", NULL, it_suite_cleanup);
    CU_add_test(s, "admin replay: once per letter, forbidden otherwise", test_replay_command);
    return rc_test_run();
}
