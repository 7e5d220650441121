/*
 * Rate limits (token buckets, src/ARCHITECTURE.md §3.7): conn_rate per
 * connection, group_rate per group across its senders. What a user sees:
 *  - a burst past the bucket gets E_RATE_LIMITED (with its rid) for the
 *    excess, never more acks than the bucket allows for the time it took;
 *  - a refused send is not sequenced (the acked seqs stay 1..n) and is not
 *    a dead letter;
 *  - the bucket refills: after a pause a send is acked again;
 *  - one connection's limit does not touch another connection, and one
 *    group's limit does not touch another group;
 *  - each refusal is counted (ringcast_rate_limited_total{scope}).
 */
#define _GNU_SOURCE
#include "itest.h"

#define RATE 20          /* per second */
#define BURST 5
#define FLOOD 40         /* sends pipelined at once */
#define REFILL_MS 600    /* > 1/RATE s for several tokens */

static it_server srv;

static int cleanup(void)
{
    return it_cleanup(&srv);
}

typedef struct tally {
    int acked, limited, other;
    uint64_t seqs[FLOOD * 2];
} tally;

/* Pipelines n sends to g (rids from rid0), then reads n answers. */
static int64_t flood(rc_client *c, const char *g, int n, uint64_t rid0, tally *t)
{
    int64_t t0 = it_now_ms();
    for (int i = 0; i < n; i++) {
        rc_msg m = { .type = RC_T_SEND, .g = rc_str_c(g), .body = rc_str_c("x"), .body_is_str = true };
        CU_ASSERT_FATAL(it_request(c, &m, rid0 + (uint64_t)i) == 0);
    }
    for (int i = 0; i < n; i++) {
        rc_msg m;
        int r = it_next(c, &m);
        CU_ASSERT_FATAL(r == 1);
        while (m.type == RC_T_MSG) /* our own messages come back too */
            CU_ASSERT_FATAL(it_next(c, &m) == 1);
        if (m.type == RC_T_ACK && t->acked < (int)(sizeof(t->seqs) / sizeof(t->seqs[0])))
            t->seqs[t->acked++] = m.seq;
        else if (it_is_err(&m, RC_E_RATE_LIMITED, true, m.rid) && m.rid >= rid0 && m.rid < rid0 + (uint64_t)n)
            t->limited++;
        else
            t->other++;
    }
    return it_now_ms() - t0;
}

/* At most the bucket plus what refilled while the flood lasted (+1 for a
 * token that refilled between two reads). */
static int allowed(int64_t elapsed_ms)
{
    return BURST + (int)(elapsed_ms * RATE / 1000) + 1;
}

static void join(rc_client *c, const char *g)
{
    uint64_t seq;
    CU_ASSERT_FATAL(rc_client_join(c, g, IT_TIMEOUT_MS, &seq) == 0);
}

static int send_one(rc_client *c, const char *g, uint64_t rid, rc_msg *m)
{
    rc_msg s = { .type = RC_T_SEND, .g = rc_str_c(g), .body = rc_str_c("y"), .body_is_str = true };
    if (it_request(c, &s, rid) != 0)
        return -1;
    return it_wait(c, RC_T_ACK, rid, m, NULL);
}

static void test_conn_rate(void)
{
    char rate[16], burst[16];
    snprintf(rate, sizeof(rate), "%d", RATE);
    snprintf(burst, sizeof(burst), "%d", BURST);
    const char *flags[] = { "--conn-rate", rate, "--conn-burst", burst, NULL };
    CU_ASSERT_FATAL(it_start(&srv, flags) == 0);
    rc_client alice, bob;
    CU_ASSERT_FATAL(it_login(&alice, &srv, "alice") == 0);
    CU_ASSERT_FATAL(it_login(&bob, &srv, "bob") == 0);
    join(&alice, "g");
    join(&bob, "h");
    tally t = { 0 };
    int64_t took = flood(&alice, "g", FLOOD, 100, &t);
    CU_ASSERT_EQUAL(t.other, 0);
    CU_ASSERT_EQUAL(t.acked + t.limited, FLOOD);
    CU_ASSERT(t.acked >= BURST);
    CU_ASSERT(t.acked <= allowed(took));
    CU_ASSERT(t.limited > 0);
    for (int i = 0; i < t.acked; i++)
        CU_ASSERT_EQUAL(t.seqs[i], (uint64_t)i + 1); /* refused sends took no seq */
    /* Bob has his own bucket. */
    tally tb = { 0 };
    flood(&bob, "h", BURST, 500, &tb);
    CU_ASSERT_EQUAL(tb.acked, BURST);
    CU_ASSERT_EQUAL(tb.limited, 0);
    /* The bucket refills. */
    it_sleep_ms(REFILL_MS);
    rc_msg m;
    CU_ASSERT_EQUAL(send_one(&alice, "g", 900, &m), 1);
    CU_ASSERT_EQUAL(m.type, RC_T_ACK);
    CU_ASSERT_EQUAL(m.seq, (uint64_t)t.acked + 1);
    CU_ASSERT_EQUAL(rc_test_metric(srv.s.admin_port, "ringcast_rate_limited_total{scope=\"conn\"}", 1), t.limited);
    CU_ASSERT_EQUAL(rc_test_metric(srv.s.admin_port, "ringcast_letters_total{reason=\"overloaded\"", 1), 0);
    CU_ASSERT_EQUAL(rc_test_metric(srv.s.admin_port, "ringcast_messages_sequenced_total", 1), t.acked + 1 + BURST);
    rc_client_close(&alice);
    rc_client_close(&bob);
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
}

static void test_group_rate(void)
{
    char rate[16], burst[16];
    snprintf(rate, sizeof(rate), "%d", RATE);
    snprintf(burst, sizeof(burst), "%d", BURST);
    const char *flags[] = { "--group-rate", rate, "--group-burst", burst, NULL };
    CU_ASSERT_FATAL(it_start(&srv, flags) == 0);
    rc_client alice, bob, carol;
    CU_ASSERT_FATAL(it_login(&alice, &srv, "alice") == 0);
    CU_ASSERT_FATAL(it_login(&bob, &srv, "bob") == 0);
    CU_ASSERT_FATAL(it_login(&carol, &srv, "carol") == 0);
    join(&alice, "g");
    join(&bob, "g");
    join(&carol, "h");
    /* Two senders share g's bucket; bob reads alice's messages as he goes. */
    tally ta = { 0 }, tb = { 0 };
    int64_t t0 = it_now_ms();
    flood(&alice, "g", FLOOD / 2, 100, &ta);
    flood(&bob, "g", FLOOD / 2, 300, &tb);
    int64_t took = it_now_ms() - t0;
    CU_ASSERT_EQUAL(ta.other + tb.other, 0);
    int acked = ta.acked + tb.acked, limited = ta.limited + tb.limited;
    CU_ASSERT_EQUAL(acked + limited, FLOOD);
    CU_ASSERT(acked >= BURST);
    CU_ASSERT(acked <= allowed(took));
    CU_ASSERT(limited > 0);
    /* h is not slowed by g: its whole burst is acked. */
    tally tc = { 0 };
    flood(&carol, "h", BURST, 500, &tc);
    CU_ASSERT_EQUAL(tc.acked, BURST);
    CU_ASSERT_EQUAL(tc.limited, 0);
    it_sleep_ms(REFILL_MS);
    rc_msg m;
    CU_ASSERT_EQUAL(send_one(&bob, "g", 900, &m), 1);
    CU_ASSERT_EQUAL(m.type, RC_T_ACK);
    CU_ASSERT_EQUAL(m.seq, (uint64_t)acked + 1); /* g's seqs stayed gapless */
    CU_ASSERT_EQUAL(rc_test_metric(srv.s.admin_port, "ringcast_rate_limited_total{scope=\"group\"}", 1), limited);
    CU_ASSERT_EQUAL(rc_test_metric(srv.s.admin_port, "ringcast_rate_limited_total{scope=\"conn\"}", 1), 0);
    rc_client_close(&alice);
    rc_client_close(&bob);
    rc_client_close(&carol);
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("rate limits", NULL, cleanup);
    CU_add_test(s, "conn_rate per connection", test_conn_rate);
    CU_add_test(s, "group_rate per group, across senders", test_group_rate);
    return rc_test_run();
}
