/*
 * Chat features against the real server (proto/PROTOCOL.md §6.9,
 * src/ARCHITECTURE.md §3.8), as a chat client sees them:
 *  - hello echo: false: that session gets acks for its sends but not the
 *    messages themselves; everyone else (its user's other sessions too)
 *    gets them;
 *  - presence: `joined` says how many users are online; a session that
 *    joined with presence: true gets `online` when a user's first session
 *    joins and `offline` when its last one leaves or disconnects, and
 *    nothing for a second session of a user already online; `presence`
 *    lists who is online; non-members get E_NOT_MEMBER;
 *  - typing: forwarded to the other users' sessions, never back to the
 *    typist, at most one per user and group per second; non-members get
 *    E_NOT_MEMBER.
 * "Nothing arrived" is checked with a barrier: a `presence` request to the
 * group, answered by its shard after everything it did for the group before.
 */
#define _GNU_SOURCE
#include "itest.h"

#define TYPING_GAP_MS 1100 /* past the server's once-a-second typing bound */

static it_server srv;

static int cleanup(void)
{
    return it_cleanup(&srv);
}

/* hello with explicit fields (echo), waits for welcome. */
static int hello_echo(rc_client *c, const char *user, bool echo)
{
    if (rc_client_connect(c, IT_HOST, srv.s.port, IT_TIMEOUT_MS) != 0)
        return -1;
    rc_msg h = { .type = RC_T_HELLO, .user = rc_str_c(user), .has = RC_HAS_ECHO, .echo = echo };
    if (it_request(c, &h, 1) != 0)
        return -1;
    rc_msg m;
    return it_wait(c, RC_T_WELCOME, 1, &m, NULL) == 1 ? 0 : -1;
}

static int join(rc_client *c, const char *g, bool presence, uint64_t rid, rc_msg *out)
{
    rc_msg j = { .type = RC_T_JOIN, .g = rc_str_c(g) };
    if (presence) {
        j.has |= RC_HAS_PRESENCE;
        j.presence = true;
    }
    if (it_request(c, &j, rid) != 0)
        return -1;
    return it_wait(c, RC_T_JOINED, rid, out, NULL) == 1 ? 0 : -1;
}

/* What reached c up to a barrier: a `presence` request for g, which the
 * group's shard answers after everything it did for g before (a ping would
 * not do: the io thread answers it at once). */
typedef struct seen {
    int msgs, events, errs;
    rc_type last_type;
    char last_user[RC_MAX_USER + 1], last_from[RC_MAX_USER + 1];
} seen;

static int drain_in(rc_client *c, const char *g, uint64_t rid, seen *out)
{
    memset(out, 0, sizeof(*out));
    rc_msg p = { .type = RC_T_PRESENCE, .g = rc_str_c(g) };
    if (it_request(c, &p, rid) != 0)
        return -1;
    int64_t end = it_now_ms() + IT_TIMEOUT_MS;
    while (it_now_ms() < end) {
        rc_msg m;
        if (it_next(c, &m) != 1)
            return -1;
        if (m.type == RC_T_PRESENCE && m.rid == rid)
            return 0;
        if (m.type == RC_T_MSG) {
            out->msgs++;
            continue;
        }
        if (m.type == RC_T_ERR)
            out->errs++;
        else
            out->events++;
        out->last_type = m.type;
        snprintf(out->last_user, sizeof(out->last_user), "%.*s", (int)m.user.len, m.user.ptr ? m.user.ptr : "");
        snprintf(out->last_from, sizeof(out->last_from), "%.*s", (int)m.from.len, m.from.ptr ? m.from.ptr : "");
    }
    return -1;
}

static void test_echo_false(void)
{
    rc_client a, a2, b;
    CU_ASSERT_FATAL(hello_echo(&a, "alice", false) == 0);
    CU_ASSERT_FATAL(hello_echo(&a2, "alice", true) == 0);
    CU_ASSERT_FATAL(hello_echo(&b, "bob", true) == 0);
    rc_msg m;
    CU_ASSERT_FATAL(join(&a, "e", false, 2, &m) == 0);
    CU_ASSERT_FATAL(join(&a2, "e", false, 2, &m) == 0);
    CU_ASSERT_FATAL(join(&b, "e", false, 2, &m) == 0);
    rc_msg ack;
    CU_ASSERT_EQUAL(rc_client_publish(&a, "e", "a1", 2, NULL, IT_TIMEOUT_MS, &ack), 0); /* no msg comes before its ack */
    CU_ASSERT_EQUAL(ack.seq, 1);
    rc_msg send = { .type = RC_T_SEND, .g = rc_str_c("e"), .body = rc_str_c("b1"), .body_is_str = true };
    CU_ASSERT_FATAL(it_request(&b, &send, 21) == 0);
    seen sa, sa2, sb;
    CU_ASSERT_FATAL(drain_in(&b, "e", 90, &sb) == 0 && drain_in(&a, "e", 90, &sa) == 0 && drain_in(&a2, "e", 90, &sa2) == 0);
    CU_ASSERT_EQUAL(sa.msgs, 1);  /* bob's only: not its own */
    CU_ASSERT_EQUAL(sa2.msgs, 2); /* alice's other session gets both */
    CU_ASSERT_EQUAL(sb.msgs, 2);  /* alice's and its own */
    CU_ASSERT_EQUAL(sb.events, 1); /* its ack */
    rc_client_close(&a);
    rc_client_close(&a2);
    rc_client_close(&b);
}

static void test_presence(void)
{
    rc_client carol, dave, dave2, erin;
    rc_msg m;
    CU_ASSERT_FATAL(hello_echo(&carol, "carol", true) == 0);
    CU_ASSERT_FATAL(hello_echo(&dave, "dave", true) == 0);
    CU_ASSERT_FATAL(hello_echo(&dave2, "dave", true) == 0);
    CU_ASSERT_FATAL(hello_echo(&erin, "erin", true) == 0);
    CU_ASSERT_FATAL(join(&carol, "p", true, 2, &m) == 0);
    CU_ASSERT(m.has & RC_HAS_ONLINE);
    CU_ASSERT_EQUAL(m.online, 1);
    seen s;
    CU_ASSERT_FATAL(drain_in(&carol, "p", 90, &s) == 0);
    CU_ASSERT_EQUAL(s.events, 1); /* its own online */
    CU_ASSERT_FATAL(join(&dave, "p", false, 2, &m) == 0);
    CU_ASSERT_EQUAL(m.online, 2);
    CU_ASSERT_FATAL(drain_in(&carol, "p", 91, &s) == 0);
    CU_ASSERT_EQUAL(s.events, 1);
    CU_ASSERT_EQUAL(s.last_type, RC_T_ONLINE);
    CU_ASSERT_STRING_EQUAL(s.last_user, "dave");
    CU_ASSERT_FATAL(drain_in(&dave, "p", 91, &s) == 0);
    CU_ASSERT_EQUAL(s.events, 0); /* joined without presence: no events */

    /* A second session of a user already online: no event, same count. */
    CU_ASSERT_FATAL(join(&dave2, "p", false, 2, &m) == 0);
    CU_ASSERT_EQUAL(m.online, 2);
    CU_ASSERT_FATAL(drain_in(&carol, "p", 92, &s) == 0);
    CU_ASSERT_EQUAL(s.events, 0);

    /* presence lists who is online; a non-member may not ask. */
    rc_msg p = { .type = RC_T_PRESENCE, .g = rc_str_c("p") };
    CU_ASSERT_FATAL(it_request(&carol, &p, 5) == 0);
    CU_ASSERT_FATAL(it_wait(&carol, RC_T_PRESENCE, 5, &m, NULL) == 1);
    CU_ASSERT_EQUAL(m.n, 2);
    CU_ASSERT_EQUAL(m.n_users, 2);
    bool saw_carol = false, saw_dave = false;
    for (uint32_t i = 0; i < m.n_users; i++) {
        saw_carol |= it_str_is(m.users[i], "carol");
        saw_dave |= it_str_is(m.users[i], "dave");
    }
    CU_ASSERT(saw_carol && saw_dave);
    CU_ASSERT_FATAL(it_request(&erin, &p, 6) == 0);
    CU_ASSERT_FATAL(it_wait(&erin, RC_T_PRESENCE, 6, &m, NULL) == 1);
    CU_ASSERT(it_is_err(&m, RC_E_NOT_MEMBER, true, 6));

    /* dave's first session leaves: still online by the other one. */
    CU_ASSERT_EQUAL(rc_client_leave(&dave, "p", IT_TIMEOUT_MS), 0);
    CU_ASSERT_FATAL(drain_in(&carol, "p", 93, &s) == 0);
    CU_ASSERT_EQUAL(s.events, 0);
    /* ... and its last one disconnects: offline. */
    rc_client_close(&dave2);
    bool offline = false;
    for (int64_t end = it_now_ms() + IT_TIMEOUT_MS; !offline && it_now_ms() < end;) {
        CU_ASSERT_FATAL(drain_in(&carol, "p", 94, &s) == 0);
        offline = s.events == 1 && s.last_type == RC_T_OFFLINE && strcmp(s.last_user, "dave") == 0;
        if (!offline && s.events)
            break;
        if (!offline)
            it_sleep_ms(20);
    }
    CU_ASSERT(offline);
    /* dave left the group (stored membership is gone): rejoin for typing below. */
    CU_ASSERT_FATAL(join(&dave, "p", false, 7, &m) == 0);
    CU_ASSERT_EQUAL(m.online, 2);
    CU_ASSERT_FATAL(drain_in(&carol, "p", 95, &s) == 0);
    CU_ASSERT_EQUAL(s.last_type, RC_T_ONLINE);

    /* typing: to dave, not back to carol; one per second. */
    rc_msg t = { .type = RC_T_TYPING, .g = rc_str_c("p") };
    CU_ASSERT_FATAL(it_request(&carol, &t, 10) == 0);
    CU_ASSERT_FATAL(it_request(&carol, &t, 11) == 0);
    CU_ASSERT_FATAL(drain_in(&dave, "p", 96, &s) == 0);
    CU_ASSERT_EQUAL(s.events, 1);
    CU_ASSERT_EQUAL(s.last_type, RC_T_TYPING);
    CU_ASSERT_STRING_EQUAL(s.last_from, "carol");
    CU_ASSERT_FATAL(drain_in(&carol, "p", 97, &s) == 0);
    CU_ASSERT_EQUAL(s.events + s.errs, 0);
    it_sleep_ms(TYPING_GAP_MS);
    CU_ASSERT_FATAL(it_request(&carol, &t, 12) == 0);
    CU_ASSERT_FATAL(drain_in(&dave, "p", 98, &s) == 0);
    CU_ASSERT_EQUAL(s.events, 1);
    CU_ASSERT_FATAL(it_request(&erin, &t, 13) == 0);
    CU_ASSERT_FATAL(it_wait(&erin, RC_T_TYPING, 13, &m, NULL) == 1);
    CU_ASSERT(it_is_err(&m, RC_E_NOT_MEMBER, true, 13));
    CU_ASSERT(rc_test_metric(srv.s.admin_port, "ringcast_presence_events_total", 1) >= 4);
    CU_ASSERT_EQUAL(rc_test_metric(srv.s.admin_port, "ringcast_typing_forwarded_total", 1), 2);
    CU_ASSERT_EQUAL(rc_test_metric(srv.s.admin_port, "ringcast_typing_dropped_total", 1), 1);
    rc_client_close(&carol);
    rc_client_close(&dave);
    rc_client_close(&erin);
}

static int suite_init(void)
{
    const char *flags[] = { "--durability", "off", NULL };
    return it_start(&srv, flags);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("chat features", suite_init, cleanup);
    CU_add_test(s, "hello echo: false", test_echo_false);
    CU_add_test(s, "presence (online, offline, presence) and typing", test_presence);
    return rc_test_run();
}
