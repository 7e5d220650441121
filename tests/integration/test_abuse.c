/*
 * Abuse from outside: input and behaviour meant to break the server, and
 * the bounds that stop it (proto/PROTOCOL.md §2.1, §6.3, §6.5, §6.6;
 * src/ARCHITECTURE.md §8):
 *  - an empty container at nesting level 33 is E_BAD_FRAME, not E_INTERNAL;
 *  - a 0x00 byte in a name is E_BAD_FIELD, and connect/join/close cycles
 *    leave no subscriber behind;
 *  - `join` with since = 2^64-1 replays nothing;
 *  - `hist` and join backlogs stop at max_reply_bytes (`more: true`) and a
 *    client pages through them to the whole history;
 *  - pipelined `hist`s that are never read do not grow the server;
 *  - hello_timeout_ms, idle_timeout_ms (with the server's ping) and
 *    max_connections_per_ip close or refuse what they should, and only that.
 * Each scene starts its own server with the bounds it needs.
 */
#define _GNU_SOURCE
#include "itest.h"

#include <sys/socket.h>

#define BIG_BODY 10000u        /* body of the paging scenes' messages */
#define PAGED_MSGS 30u         /* messages the paging scenes store */
#define SMALL_REPLY "70000"    /* --max-reply-bytes of the paging scenes: six BIG_BODY messages */
#define FLOOD_BODY 60000u      /* body of the pipelined-hist scene's messages */
#define FLOOD_MSGS 200u        /* ...and how many it stores */
#define PIPELINED 40u          /* hist requests the scene pipelines without reading */
#define RSS_GROWTH_MAX_KB (96u * 1024u) /* the pipelined hists may grow the server by this much at most */
#define CYCLES 200u            /* connect/join/close rounds of the NUL scene */
#define PER_IP 3               /* --max-connections-per-ip of its scene */

static it_server srv;

static int cleanup(void)
{
    return it_cleanup(&srv);
}

/* Starts this scene's server, stopping one a failed scene left running. */
static int start(const char *const *flags)
{
    it_cleanup(&srv);
    return it_start(&srv, flags);
}

/* Sends n messages of `len` bytes to g from c and waits for each ack. */
static void fill_group(rc_client *c, const char *g, uint32_t n, uint32_t len)
{
    char *body = malloc(len);
    CU_ASSERT_FATAL(body != NULL);
    memset(body, 'b', len);
    for (uint32_t i = 0; i < n; i++) {
        rc_msg ack;
        CU_ASSERT_FATAL(rc_client_publish(c, g, body, len, NULL, IT_TIMEOUT_MS, &ack) == 0);
        CU_ASSERT_FATAL(ack.seq == i + 1);
    }
    free(body);
}

/* ---- codec holes, seen from a socket ---- */

static void test_depth_33_empty_container(void)
{
    CU_ASSERT_FATAL(start(NULL) == 0);
    rc_client c;
    CU_ASSERT_FATAL(it_login(&c, &srv, "deep") == 0);
    /* {t: "ping", rid: 7, x: [[[...[]...]]]}: 31 arrays holding an empty one, level 33 */
    uint8_t frame[64];
    size_t n = 0;
    memcpy(frame, "\x83\xa1t\xa4ping\xa3rid\x07\xa1x", 15);
    n = 15;
    memset(frame + n, 0x91, 31);
    n += 31;
    frame[n++] = 0x90;
    CU_ASSERT_FATAL(it_send_frame(&c, frame, n) == 0);
    rc_msg m;
    CU_ASSERT_FATAL(it_expect(&c, &m, RC_T_ERR));
    CU_ASSERT_EQUAL(m.code, RC_E_BAD_FRAME);
    /* the connection stays open and served */
    m = (rc_msg){ .type = RC_T_PING };
    CU_ASSERT_FATAL(it_request(&c, &m, 8) == 0);
    CU_ASSERT_FATAL(it_expect(&c, &m, RC_T_PONG));
    CU_ASSERT_EQUAL(m.rid, 8);
    CU_ASSERT_EQUAL(rc_test_metric(srv.s.admin_port, "ringcast_errors_total{code=\"E_INTERNAL\"", 1), 0);
    rc_client_close(&c);
    it_stop(&srv);
}

/* Before names refused 0x00, "ro\0om" was joined as "ro\0om" by its shard
 * but kept as "ro" by the session, so the detach at close went to "ro" and
 * every cycle left a stale subscriber behind. */
static void test_nul_in_names(void)
{
    CU_ASSERT_FATAL(start(NULL) == 0);
    for (uint32_t i = 0; i < CYCLES; i++) {
        rc_client c;
        CU_ASSERT_FATAL(it_login(&c, &srv, "nul") == 0);
        it_map mp;
        it_map_init(&mp, 3);
        it_map_str(&mp, "t", "join");
        it_map_uint(&mp, "rid", i + 1);
        it_pack_str(&mp.pk, "g", 1);
        it_pack_str(&mp.pk, "ro\0om", 5);
        CU_ASSERT_FATAL(it_map_send(&c, &mp) == 0);
        rc_msg m;
        CU_ASSERT_FATAL(it_expect(&c, &m, RC_T_ERR));
        CU_ASSERT(it_is_err(&m, RC_E_BAD_FIELD, true, i + 1));
        CU_ASSERT_FATAL(rc_client_join(&c, "room", IT_TIMEOUT_MS, NULL) == 0);
        rc_client_close(&c);
    }
    /* every cycle's subscription went with its connection */
    CU_ASSERT_EQUAL(it_wait_metric(&srv, IT_OPEN_CONNS, 0), 0);
    rc_client s;
    CU_ASSERT_FATAL(it_login(&s, &srv, "nul") == 0);
    CU_ASSERT_FATAL(rc_client_join(&s, "room", IT_TIMEOUT_MS, NULL) == 0);
    rc_msg ack;
    CU_ASSERT_FATAL(rc_client_publish(&s, "room", "x", 1, NULL, IT_TIMEOUT_MS, &ack) == 0);
    CU_ASSERT_EQUAL(rc_test_metric(srv.s.admin_port, "ringcast_deliveries_to_closed_total", 1), 0);
    CU_ASSERT_EQUAL(rc_test_metric(srv.s.admin_port, "ringcast_fanout_total", 1), 1);
    rc_client_close(&s);
    it_stop(&srv);
}

static void test_since_max(void)
{
    CU_ASSERT_FATAL(start(NULL) == 0);
    rc_client c;
    CU_ASSERT_FATAL(it_login(&c, &srv, "wrap") == 0);
    CU_ASSERT_FATAL(rc_client_join(&c, "w", IT_TIMEOUT_MS, NULL) == 0);
    fill_group(&c, "w", 5, 10);
    rc_client r;
    CU_ASSERT_FATAL(it_login(&r, &srv, "wrap2") == 0);
    for (int k = 0; k < 2; k++) {
        uint64_t since = k == 0 ? UINT64_MAX : UINT64_MAX - 1;
        rc_msg m = { .type = RC_T_JOIN, .g = rc_str_c("w"), .has = RC_HAS_SINCE, .since = since };
        CU_ASSERT_FATAL(it_request(&r, &m, 10 + (uint64_t)k) == 0);
        CU_ASSERT_FATAL(it_expect(&r, &m, RC_T_JOINED));
        CU_ASSERT_FATAL(it_expect(&r, &m, RC_T_SYNCED)); /* no msg before it */
        CU_ASSERT_EQUAL(m.seq, 5);
        CU_ASSERT_FALSE(m.lost);
        CU_ASSERT_FALSE(m.more);
    }
    rc_client_close(&r);
    rc_client_close(&c);
    it_stop(&srv);
}

/* ---- reply budget ---- */

static void test_hist_pages(void)
{
    const char *flags[] = { "--max-reply-bytes", SMALL_REPLY, NULL };
    CU_ASSERT_FATAL(start(flags) == 0);
    rc_client c;
    CU_ASSERT_FATAL(it_login(&c, &srv, "pager") == 0);
    CU_ASSERT_FATAL(rc_client_join(&c, "p", IT_TIMEOUT_MS, NULL) == 0);
    fill_group(&c, "p", PAGED_MSGS, BIG_BODY);
    int64_t end = it_now_ms() + IT_TIMEOUT_MS;
    while (it_now_ms() < end) { /* the group's own fan-out to c */
        rc_msg m;
        if (rc_client_recv(&c, &m, 100) == 0)
            break;
    }
    /* hist pages back from the newest: each page the newest under before, at most 70000 bytes of msgs */
    bool seen[PAGED_MSGS + 1] = { false };
    uint64_t before = 0;
    int pages = 0;
    bool more = true;
    for (uint64_t rid = 100; more && pages < (int)PAGED_MSGS; rid++, pages++) {
        rc_msg m = { .type = RC_T_HIST, .g = rc_str_c("p"), .has = RC_HAS_LIMIT, .limit = RC_MAX_HIST_LIMIT };
        if (before) {
            m.has |= RC_HAS_BEFORE;
            m.before = before;
        }
        CU_ASSERT_FATAL(it_request(&c, &m, rid) == 0);
        CU_ASSERT_FATAL(rc_client_wait(&c, RC_T_HIST, rid, &m, IT_TIMEOUT_MS) == 1);
        CU_ASSERT_FATAL(m.type == RC_T_HIST && m.n_msgs > 0);
        CU_ASSERT(m.n_msgs * BIG_BODY <= 70000u);
        for (uint32_t i = 0; i < m.n_msgs; i++) {
            CU_ASSERT(m.msgs[i].seq >= 1 && m.msgs[i].seq <= PAGED_MSGS);
            CU_ASSERT(i == 0 || m.msgs[i].seq == m.msgs[i - 1].seq + 1);
            if (m.msgs[i].seq <= PAGED_MSGS)
                seen[m.msgs[i].seq] = true;
        }
        CU_ASSERT(before == 0 || m.msgs[m.n_msgs - 1].seq == before - 1);
        before = m.msgs[0].seq;
        more = m.more;
    }
    CU_ASSERT(pages > 1);
    CU_ASSERT_FALSE(more);
    for (uint32_t s = 1; s <= PAGED_MSGS; s++)
        CU_ASSERT(seen[s]);
    CU_ASSERT(rc_test_metric(srv.s.admin_port, "ringcast_replies_paged_total", 1) >= 1);
    rc_client_close(&c);
    it_stop(&srv);
}

static void test_join_since_pages(void)
{
    const char *flags[] = { "--max-reply-bytes", SMALL_REPLY, NULL };
    CU_ASSERT_FATAL(start(flags) == 0);
    rc_client w;
    CU_ASSERT_FATAL(it_login(&w, &srv, "writer") == 0);
    CU_ASSERT_FATAL(rc_client_join(&w, "q", IT_TIMEOUT_MS, NULL) == 0);
    fill_group(&w, "q", PAGED_MSGS, BIG_BODY);
    rc_client c;
    CU_ASSERT_FATAL(it_login(&c, &srv, "catcher") == 0);
    rc_msg m = { .type = RC_T_JOIN, .g = rc_str_c("q"), .has = RC_HAS_SINCE, .since = 0 };
    CU_ASSERT_FATAL(it_request(&c, &m, 1) == 0);
    uint64_t want = 1;
    int pages = 0, page_msgs = 0;
    for (int64_t end = it_now_ms() + 4 * IT_TIMEOUT_MS; it_now_ms() < end;) {
        CU_ASSERT_FATAL(it_next(&c, &m) == 1);
        if (m.type == RC_T_MSG) {
            CU_ASSERT_EQUAL(m.seq, want); /* gapless across pages */
            want = m.seq + 1;
            page_msgs++;
        } else if (m.type == RC_T_SYNCED) {
            pages++;
            CU_ASSERT(page_msgs * BIG_BODY <= 70000u);
            page_msgs = 0;
            if (!m.more)
                break;
            m = (rc_msg){ .type = RC_T_JOIN, .g = rc_str_c("q"), .has = RC_HAS_SINCE, .since = want - 1 };
            CU_ASSERT_FATAL(rc_client_send(&c, &m) == 0);
        }
    }
    CU_ASSERT(pages > 1);
    CU_ASSERT_EQUAL(want, PAGED_MSGS + 1);
    rc_client_close(&c);
    rc_client_close(&w);
    it_stop(&srv);
}

/* 40 hist requests of limit 1000 over 12 MB of history, pipelined and never
 * read: before the reply budget each built the whole 12 MB reply (the
 * server grew by about 40 x 12 MB and closed the requester); now each
 * reply is at most max_reply_bytes, and a connection that does not read its
 * answers is not read further. Reading them afterwards gets every one. */
static void test_pipelined_hist_bounded(void)
{
    const char *flags[] = { "--history-max", "1000", NULL };
    CU_ASSERT_FATAL(start(flags) == 0);
    rc_client w;
    CU_ASSERT_FATAL(it_login(&w, &srv, "filler") == 0);
    CU_ASSERT_FATAL(rc_client_join(&w, "h", IT_TIMEOUT_MS, NULL) == 0);
    fill_group(&w, "h", FLOOD_MSGS, FLOOD_BODY);
    rc_client_close(&w); /* its own fan-out is not what this scene measures */

    rc_client c;
    CU_ASSERT_FATAL(it_login(&c, &srv, "filler") == 0); /* a stored member: hist is allowed */
    long before = rc_test_rss_kb(srv.s.pid);
    for (uint32_t i = 0; i < PIPELINED; i++) {
        rc_msg m = { .type = RC_T_HIST, .g = rc_str_c("h"), .has = RC_HAS_LIMIT | RC_HAS_RID,
                     .limit = RC_MAX_HIST_LIMIT, .rid = 1000 + i };
        CU_ASSERT_FATAL(rc_client_send(&c, &m) == 0);
    }
    CU_ASSERT(it_wait_metric(&srv, "ringcast_io_reply_holds_total", 1) >= 1);
    it_sleep_ms(500);
    long grown = rc_test_rss_kb(srv.s.pid) - before;
    printf("\n    %u pipelined hists unread: server RSS grew %ld kB", PIPELINED, grown);
    CU_ASSERT(grown < (long)RSS_GROWTH_MAX_KB);
    uint32_t got = 0;
    for (int64_t end = it_now_ms() + 4 * IT_TIMEOUT_MS; got < PIPELINED && it_now_ms() < end;) {
        rc_msg m;
        int r = it_next(&c, &m);
        if (r != 1)
            printf("\n    after %u replies: %s", got, r == 0 ? "nothing more came" : c.err);
        CU_ASSERT_FATAL(r == 1);
        if (m.type == RC_T_HIST) {
            CU_ASSERT_EQUAL(m.rid, 1000 + got);
            CU_ASSERT(m.more);
            CU_ASSERT(m.n_msgs > 0 && (uint64_t)m.n_msgs * FLOOD_BODY <= 1048576u);
            got++;
        }
    }
    CU_ASSERT_EQUAL(got, PIPELINED);
    CU_ASSERT_EQUAL(rc_test_metric(srv.s.admin_port, "ringcast_slow_consumer_closed_total", 1), 0);
    rc_client_close(&c);
    it_stop(&srv);
}

/* ---- timeouts and per-address bound ---- */

/* Reads until the server closes c; true when a `bye` whose reason starts
 * with `why` came first. Meanwhile `keep` (if any) is read through the
 * client library, which answers the server's pings; it must get nothing
 * else (*kept_quiet turns false otherwise). */
static bool closed_with_bye(rc_client *c, const char *why, bool *pinged, rc_client *keep, bool *kept_quiet)
{
    bool bye = false;
    for (int64_t end = it_now_ms() + 2 * IT_TIMEOUT_MS; it_now_ms() < end;) {
        rc_msg km;
        if (keep && rc_client_recv(keep, &km, 0) != 0)
            *kept_quiet = false;
        /* raw reads: rc_client_recv would answer a ping itself */
        uint8_t buf[4096];
        struct pollfd p = { c->fd, POLLIN, 0 };
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
        if (n <= 0)
            return bye;
        for (ssize_t off = 0; off + (ssize_t)RC_FRAME_HEADER <= n;) {
            uint32_t len = rc_frame_len(buf + off);
            if (off + (ssize_t)RC_FRAME_HEADER + (ssize_t)len > n)
                break;
            rc_msg m;
            if (rc_decode(&c->dec, buf + off + RC_FRAME_HEADER, len, &m, NULL) == RC_OK) {
                if (m.type == RC_T_PING && pinged)
                    *pinged = true;
                if (m.type == RC_T_BYE && m.reason.len >= strlen(why) &&
                    memcmp(m.reason.ptr, why, strlen(why)) == 0)
                    bye = true;
            }
            off += RC_FRAME_HEADER + len;
        }
    }
    return false;
}

static void test_hello_timeout(void)
{
    const char *flags[] = { "--hello-timeout-ms", "300", NULL };
    CU_ASSERT_FATAL(start(flags) == 0);
    rc_client mute, talker;
    CU_ASSERT_FATAL(rc_client_connect(&mute, IT_HOST, srv.s.port, IT_TIMEOUT_MS) == 0);
    CU_ASSERT_FATAL(rc_client_send_raw(&mute, "\x00\x00\x00\x40\x82", 5) == 0); /* half a frame, then nothing */
    CU_ASSERT_FATAL(it_login(&talker, &srv, "talker") == 0);
    CU_ASSERT(closed_with_bye(&mute, "hello_timeout", NULL, NULL, NULL));
    CU_ASSERT_EQUAL(rc_test_metric(srv.s.admin_port, "ringcast_hello_timeouts_total", 1), 1);
    /* the one that said hello is still served */
    rc_msg m = { .type = RC_T_PING };
    CU_ASSERT_FATAL(it_request(&talker, &m, 3) == 0);
    CU_ASSERT(it_expect(&talker, &m, RC_T_PONG));
    rc_client_close(&mute);
    rc_client_close(&talker);
    it_stop(&srv);
}

static void test_idle_timeout(void)
{
    const char *flags[] = { "--idle-timeout-ms", "800", NULL };
    CU_ASSERT_FATAL(start(flags) == 0);
    rc_client silent, live;
    CU_ASSERT_FATAL(it_login(&silent, &srv, "silent") == 0);
    CU_ASSERT_FATAL(it_login(&live, &srv, "live") == 0);
    bool pinged = false, quiet = true;
    int64_t t0 = it_now_ms();
    CU_ASSERT(closed_with_bye(&silent, "idle_timeout", &pinged, &live, &quiet));
    CU_ASSERT(pinged); /* it was asked before it was closed */
    CU_ASSERT(quiet);
    printf("\n    silent connection closed after %lld ms", (long long)(it_now_ms() - t0));
    /* the client library answers pings: this one is still open, well past the timeout */
    rc_msg m;
    for (int64_t end = it_now_ms() + 2000; it_now_ms() < end;)
        CU_ASSERT_FATAL(rc_client_recv(&live, &m, 100) == 0);
    m = (rc_msg){ .type = RC_T_PING };
    CU_ASSERT_FATAL(it_request(&live, &m, 4) == 0);
    CU_ASSERT(it_expect(&live, &m, RC_T_PONG));
    CU_ASSERT(rc_test_metric(srv.s.admin_port, "ringcast_server_pings_total", 1) >= 2);
    CU_ASSERT_EQUAL(rc_test_metric(srv.s.admin_port, "ringcast_idle_timeouts_total", 1), 1);
    rc_client_close(&silent);
    rc_client_close(&live);
    it_stop(&srv);
}

static void test_connections_per_ip(void)
{
    char per_ip[8];
    snprintf(per_ip, sizeof(per_ip), "%d", PER_IP);
    const char *flags[] = { "--max-connections-per-ip", per_ip, NULL };
    CU_ASSERT_FATAL(start(flags) == 0);
    rc_client c[PER_IP + 1];
    for (int i = 0; i < PER_IP; i++)
        CU_ASSERT_FATAL(it_login(&c[i], &srv, "many") == 0);
    /* (the start-up probes of the test harness may have been refused already) */
    double refused0 = rc_test_metric(srv.s.admin_port, "ringcast_connections_rejected_per_ip_total", 1);
    CU_ASSERT_FATAL(rc_client_connect(&c[PER_IP], IT_HOST, srv.s.port, IT_TIMEOUT_MS) == 0);
    rc_msg m;
    CU_ASSERT_FATAL(it_expect(&c[PER_IP], &m, RC_T_ERR));
    CU_ASSERT_EQUAL(m.code, RC_E_LIMIT);
    CU_ASSERT_EQUAL(it_next(&c[PER_IP], &m), -1); /* and closed */
    rc_client_close(&c[PER_IP]);
    CU_ASSERT_EQUAL(rc_test_metric(srv.s.admin_port, "ringcast_connections_rejected_per_ip_total", 1) - refused0, 1);
    /* one closes: a place is free again */
    rc_client_close(&c[0]);
    CU_ASSERT_EQUAL(it_wait_metric(&srv, IT_OPEN_CONNS, PER_IP - 1), PER_IP - 1);
    CU_ASSERT_FATAL(it_login(&c[0], &srv, "many") == 0);
    for (int i = 0; i < PER_IP; i++)
        rc_client_close(&c[i]);
    it_stop(&srv);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("abuse", NULL, cleanup);
    CU_add_test(s, "an empty container at level 33 is E_BAD_FRAME", test_depth_33_empty_container);
    CU_add_test(s, "a NUL in a group id is E_BAD_FIELD; cycles leave no subscriber", test_nul_in_names);
    CU_add_test(s, "join since 2^64-1 replays nothing", test_since_max);
    CU_add_test(s, "hist pages at max_reply_bytes", test_hist_pages);
    CU_add_test(s, "join since pages at max_reply_bytes", test_join_since_pages);
    CU_add_test(s, "pipelined unread hists stay bounded", test_pipelined_hist_bounded);
    CU_add_test(s, "hello_timeout_ms closes a mute connection", test_hello_timeout);
    CU_add_test(s, "idle_timeout_ms pings, then closes the silent", test_idle_timeout);
    CU_add_test(s, "max_connections_per_ip", test_connections_per_ip);
    return rc_test_run();
}
