/*
 * Server-side bounds and stream handling against the real server
 * (ARCHITECTURE §8, proto/PROTOCOL.md §1 and §6.6):
 *  - max_members_per_group: a new member past the bound gets E_LIMIT, while
 *    existing members still (re)join and the group keeps working;
 *  - a slow consumer that never reads is closed past outbound_kill_bytes
 *    while healthy members of its group miss nothing;
 *  - admission on a tiny shard ring: every pipelined send gets exactly one
 *    reply, an ack or E_OVERLOADED, acked seqs stay gapless and the metric
 *    counts every E_OVERLOADED;
 *  - frame reassembly: one byte per send(), 100 frames per send(), and a
 *    frame split at every offset;
 *  - a frame of exactly max_frame is accepted and delivered intact, one byte
 *    more is E_FRAME_TOO_LARGE and close;
 *  - `ringcast chat` as a user runs it, through its stdin and stdout.
 *
 * Every test starts its own server (own data directory) and stops it,
 * asserting exit status 0. Every loop is bounded in iterations and time.
 */
#define _GNU_SOURCE
#include "itest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define SYNC_RID 9000000u /* rid of ping barriers */



/* Keeps the first failure's text in buf; always returns false. */
/* ================================================================== */
/* 1. max_members_per_group                                             */
/* ================================================================== */

#define MEMBER_LIMIT 3

static void test_max_members_per_group(void)
{
    char limit[16];
    snprintf(limit, sizeof(limit), "%d", MEMBER_LIMIT);
    const char *flags[] = { "--max-members-per-group", limit, NULL };
    it_suite_start(flags);

    rc_client u[MEMBER_LIMIT + 1];
    for (int i = 0; i <= MEMBER_LIMIT; i++) {
        char user[16];
        snprintf(user, sizeof(user), "mm-u%d", i);
        it_suite_login(&u[i], user);
    }
    for (int i = 0; i < MEMBER_LIMIT; i++)
        it_suite_join(&u[i], "mm", 0);

    /* A 4th user is one member too many. */
    rc_msg m = { .type = RC_T_JOIN, .g = rc_str_c("mm") };
    CU_ASSERT_FATAL(it_request(&u[MEMBER_LIMIT], &m, 77) == 0);
    CU_ASSERT(it_next(&u[MEMBER_LIMIT], &m) == 1 && it_is_err(&m, RC_E_LIMIT, true, 77));
    /* ... and the refused join made it no member. */
    m = (rc_msg){ .type = RC_T_SEND, .g = rc_str_c("mm"), .body = rc_str_c("sneak") };
    CU_ASSERT_FATAL(it_request(&u[MEMBER_LIMIT], &m, 78) == 0);
    CU_ASSERT(it_next(&u[MEMBER_LIMIT], &m) == 1 && it_is_err(&m, RC_E_NOT_MEMBER, true, 78));

    /* Existing members re-join: in the same session and in a new one. */
    it_suite_join(&u[0], "mm", 0);
    rc_client again;
    it_suite_login(&again, "mm-u1");
    it_suite_join(&again, "mm", 0);
    /* Still full for newcomers. */
    m = (rc_msg){ .type = RC_T_JOIN, .g = rc_str_c("mm") };
    CU_ASSERT_FATAL(it_request(&u[MEMBER_LIMIT], &m, 79) == 0);
    CU_ASSERT(it_next(&u[MEMBER_LIMIT], &m) == 1 && it_is_err(&m, RC_E_LIMIT, true, 79));

    /* The group keeps working for its members. */
    m = (rc_msg){ .type = RC_T_SEND, .g = rc_str_c("mm"), .body = rc_str_c("still here"), .body_is_str = true };
    CU_ASSERT_FATAL(it_request(&u[2], &m, 80) == 0);
    rc_msg r;
    int skipped = 0;
    CU_ASSERT_FATAL(it_wait(&u[2], RC_T_ACK, 80, &r, &skipped) == 1 && r.type == RC_T_ACK);
    CU_ASSERT_EQUAL(r.seq, 1);
    CU_ASSERT_EQUAL(skipped + it_pending_msgs(&u[2]), 1); /* its own msg */
    rc_client *readers[] = { &u[0], &u[1], &again };
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_FATAL(it_expect(readers[i], &r, RC_T_MSG));
        CU_ASSERT(r.seq == 1 && it_str_is(r.from, "mm-u2") && it_str_is(r.body, "still here"));
    }
    CU_ASSERT_EQUAL(it_pending_msgs(&u[MEMBER_LIMIT]), 0); /* the refused user got nothing */

    /* Leaving frees a place for the newcomer. */
    CU_ASSERT(rc_client_leave(&u[2], "mm", IT_TIMEOUT_MS) == 0);
    it_suite_join(&u[MEMBER_LIMIT], "mm", 1);

    for (int i = 0; i <= MEMBER_LIMIT; i++)
        rc_client_close(&u[i]);
    rc_client_close(&again);
    it_suite_stop();
}

/* A join refused with E_LIMIT has no effect (PROTOCOL §6.3): it must not
 * occupy one of the session's max_groups_per_session places. */
static void test_refused_join_takes_no_session_place(void)
{
    const char *flags[] = { "--max-members-per-group", "1", "--max-groups-per-session", "1", NULL };
    it_suite_start(flags);
    rc_client a, b;
    it_suite_login(&a, "rj-a");
    it_suite_login(&b, "rj-b");
    it_suite_join(&a, "rj-full", 0);
    rc_msg m = { .type = RC_T_JOIN, .g = rc_str_c("rj-full") };
    CU_ASSERT_FATAL(it_request(&b, &m, 5) == 0);
    CU_ASSERT(it_next(&b, &m) == 1 && it_is_err(&m, RC_E_LIMIT, true, 5));
    /* b's session holds no group, so its one place is free. */
    m = (rc_msg){ .type = RC_T_JOIN, .g = rc_str_c("rj-other") };
    CU_ASSERT_FATAL(it_request(&b, &m, 6) == 0);
    CU_ASSERT_FATAL(it_next(&b, &m) == 1);
    if (m.type == RC_T_ERR)
        printf("\n    join after a refused join: err %s: %.*s\n", rc_err_name(m.code), (int)m.text.len, m.text.ptr);
    CU_ASSERT(m.type == RC_T_JOINED && m.rid == 6 && it_str_is(m.g, "rj-other"));
    rc_client_close(&a);
    rc_client_close(&b);
    it_suite_stop();
}

/* ================================================================== */
/* 2. Slow consumer                                                     */
/* ================================================================== */

#define SLOW_HIGH "1048576"  /* healthy members with a 64-message window stay far below */
#define SLOW_KILL "4194304"
#define SLOW_RCVBUF 4096
#define SLOW_MAX_MSGS 20000
#define SLOW_BODY 1000
#define SLOW_WINDOW 64          /* sends not yet acked and received by B, at most */
#define SLOW_METRIC_EVERY 256   /* sends between two /metrics reads */
#define SLOW_RUN_MS 25000       /* sending until the kill, at most */
#define SLOW_TAIL_MS 10000      /* collecting the last acks and msgs, at most */
#define SLOW_EOF_MS 10000       /* reading the slow socket to its end, at most */
#define SLOW_EOF_MAX_BYTES (64u << 20)
#define SLOW_RID0 1000u
#define SLOW_METRIC "ringcast_slow_consumer_closed_total{"

typedef struct slow_state {
    int sent, acked;        /* A's sends and acks (ack k has rid SLOW_RID0 + k, seq k + 1) */
    uint64_t a_seq, b_seq;  /* last msg seq A and B received */
    char failure[256];
} slow_state;

static void slow_body(int k, char *out)
{
    memset(out, 'x', SLOW_BODY);
    char head[16];
    int n = snprintf(head, sizeof(head), "m%07d:", k);
    memcpy(out, head, (size_t)n);
}

static bool slow_frame(void *ud, int idx, const rc_msg *m)
{
    slow_state *st = ud;
    char *f = st->failure;
    size_t fl = sizeof(st->failure);
    if (m->type == RC_T_ACK && idx == 0) {
        if (!(m->has & RC_HAS_RID) || m->rid != SLOW_RID0 + (uint64_t)st->acked || m->seq != (uint64_t)st->acked + 1 ||
            !it_str_is(m->g, "g"))
            return it_failf(f, fl, "ack %d: rid %" PRIu64 " seq %" PRIu64, st->acked, m->rid, m->seq);
        st->acked++;
        return true;
    }
    if (m->type == RC_T_MSG) {
        uint64_t *last = idx == 0 ? &st->a_seq : &st->b_seq;
        char body[SLOW_BODY];
        slow_body((int)*last, body);
        if (m->seq != *last + 1 || !it_str_is(m->g, "g") || !it_str_is(m->from, "alice") ||
            m->body.len != SLOW_BODY || memcmp(m->body.ptr, body, SLOW_BODY) != 0)
            return it_failf(f, fl, "%s: msg seq %" PRIu64 " after %" PRIu64 " (or wrong body/sender)",
                         idx == 0 ? "A" : "B", m->seq, *last);
        (*last)++;
        return true;
    }
    if (m->type == RC_T_ERR)
        return it_failf(f, fl, "%s: err %s: %.*s", idx == 0 ? "A" : "B", rc_err_name(m->code), (int)m->text.len,
                     m->text.ptr);
    return it_failf(f, fl, "%s: unexpected %s", idx == 0 ? "A" : "B", rc_type_name(m->type));
}

/* Connects like rc_client_connect, with a small receive buffer set before
 * connect (so the window the server sees is small from the start). */
static int connect_small_rcvbuf(rc_client *c, uint16_t port, int rcvbuf)
{
    memset(c, 0, sizeof(*c));
    c->next_rid = 1;
    rc_decoder_init(&c->dec);
    rc_buf_init(&c->out);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    return connect(c->fd, (struct sockaddr *)&a, sizeof(a));
}

static void test_slow_consumer(void)
{
    const char *flags[] = { "--outbound-stall-ms", "50", "--outbound-high-bytes", SLOW_HIGH, "--outbound-kill-bytes", SLOW_KILL, NULL };
    it_suite_start(flags);

    rc_client s;
    CU_ASSERT_FATAL(connect_small_rcvbuf(&s, it_srv.s.port, SLOW_RCVBUF) == 0);
    CU_ASSERT_FATAL(rc_client_hello(&s, "slow", IT_TIMEOUT_MS) == 0);
    it_suite_join(&s, "g", 0);

    rc_client ab[2];
    it_suite_login(&ab[0], "alice");
    it_suite_login(&ab[1], "bob");
    it_suite_join(&ab[0], "g", 0);
    it_suite_join(&ab[1], "g", 0);

    static slow_state st;
    memset(&st, 0, sizeof(st));
    char body[SLOW_BODY];
    double kills = 0;
    int next_metric = SLOW_METRIC_EVERY;
    bool ok = true;
    int64_t end = it_now_ms() + SLOW_RUN_MS;
    for (int round = 0; round < 4 * SLOW_MAX_MSGS && ok && kills < 1 && st.sent < SLOW_MAX_MSGS &&
                        it_now_ms() < end;
         round++) {
        int lag = st.sent - (st.acked < (int)st.b_seq ? st.acked : (int)st.b_seq);
        for (; lag < SLOW_WINDOW && st.sent < SLOW_MAX_MSGS; lag++) {
            slow_body(st.sent, body);
            rc_msg m = { .type = RC_T_SEND, .g = rc_str_c("g"), .body = { body, SLOW_BODY } };
            if (it_request(&ab[0], &m, SLOW_RID0 + (uint64_t)st.sent) != 0) {
                ok = it_failf(st.failure, sizeof(st.failure), "A: %s", ab[0].err);
                break;
            }
            st.sent++;
        }
        if (ok && it_pump(ab, 2, 50, slow_frame, &st) < 0)
            ok = it_failf(st.failure, sizeof(st.failure), "pump failed: A: %s B: %s", ab[0].err, ab[1].err);
        if (st.sent >= next_metric) {
            next_metric += SLOW_METRIC_EVERY;
            kills = rc_test_metric(it_srv.s.admin_port, SLOW_METRIC, 1);
        }
    }
    if (kills < 1)
        kills = rc_test_metric(it_srv.s.admin_port, SLOW_METRIC, 1);
    printf("\n    %d messages sent until the slow consumer was closed (slow_consumer_closed_total %g)\n", st.sent,
           kills);
    if (st.failure[0])
        printf("    %s\n", st.failure);
    CU_ASSERT_FATAL(ok);
    CU_ASSERT_FATAL(kills >= 1);

    /* Everything A's acks reported reached B, gapless and in order. */
    int64_t tail_end = it_now_ms() + SLOW_TAIL_MS;
    for (int i = 0; i < 100000 && ok && (st.acked < st.sent || (int)st.b_seq < st.sent) && it_now_ms() < tail_end; i++)
        if (it_pump(ab, 2, 50, slow_frame, &st) < 0)
            ok = it_failf(st.failure, sizeof(st.failure), "pump failed: A: %s B: %s", ab[0].err, ab[1].err);
    if (st.failure[0])
        printf("    %s\n", st.failure);
    CU_ASSERT(ok);
    CU_ASSERT_EQUAL(st.acked, st.sent);
    CU_ASSERT_EQUAL((int)st.b_seq, st.acked);
    CU_ASSERT_EQUAL((int)st.a_seq, st.acked);
    CU_ASSERT_EQUAL(it_pending_msgs(&ab[0]), 0);
    CU_ASSERT_EQUAL(it_pending_msgs(&ab[1]), 0);

    /* The slow socket: what was queued, then the end of the stream. */
    size_t got = 0;
    int end_kind = 0; /* 1 EOF, -errno on an error, 0 timeout */
    static char sink[65536];
    int64_t eof_end = it_now_ms() + SLOW_EOF_MS;
    while (got < SLOW_EOF_MAX_BYTES && it_now_ms() < eof_end) {
        struct pollfd p = { s.fd, POLLIN, 0 };
        int64_t left = eof_end - it_now_ms();
        if (poll(&p, 1, (int)(left > 0 ? left : 0)) <= 0)
            continue;
        ssize_t n = recv(s.fd, sink, sizeof(sink), 0);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        end_kind = n == 0 ? 1 : -errno;
        break;
    }
    printf("    slow socket: %zu bytes, then %s\n", got,
           end_kind == 1 ? "EOF" : end_kind == 0 ? "nothing (timeout)" : strerror(-end_kind));
    CU_ASSERT_EQUAL(end_kind, 1);
    rc_client_close(&s);

    /* The server still serves: a newcomer joins, sends, and the members get it. */
    rc_client n;
    it_suite_login(&n, "newbie");
    it_suite_join(&n, "g", (uint64_t)st.acked);
    rc_msg m = { .type = RC_T_SEND, .g = rc_str_c("g"), .body = rc_str_c("after"), .body_is_str = true };
    CU_ASSERT_FATAL(it_request(&n, &m, 3) == 0);
    rc_msg r;
    CU_ASSERT_FATAL(it_wait(&n, RC_T_ACK, 3, &r, NULL) == 1 && r.type == RC_T_ACK);
    CU_ASSERT_EQUAL(r.seq, (uint64_t)st.acked + 1);
    CU_ASSERT_FATAL(it_expect(&ab[1], &r, RC_T_MSG));
    CU_ASSERT(r.seq == (uint64_t)st.acked + 1 && it_str_is(r.from, "newbie") && it_str_is(r.body, "after"));

    rc_client_close(&ab[0]);
    rc_client_close(&ab[1]);
    rc_client_close(&n);
    it_suite_stop();
}

/* ================================================================== */
/* 3. Overload admission                                                */
/* ================================================================== */

#define OV_CLIENTS 8
#define OV_GROUPS 4
#define OV_PER_CLIENT 2000
#define OV_BURST 100            /* sends per client per round-robin turn */
#define OV_RID0 1000u
#define OV_MAX_SEQ (OV_CLIENTS * OV_PER_CLIENT) /* a group's seqs, at most */
#define OV_READ_MS 30000        /* collecting every reply and msg, at most */
#define OV_METRIC "ringcast_errors_total{code=\"E_OVERLOADED\"}"

enum { OV_NONE = 0, OV_ACKED, OV_OVERLOADED };

typedef struct ov_state {
    uint8_t reply[OV_CLIENTS][OV_PER_CLIENT];
    uint64_t last_ack[OV_CLIENTS][OV_GROUPS];   /* last acked seq, per client and group */
    uint64_t last_msg[OV_CLIENTS][OV_GROUPS];   /* last delivered seq, per member and group */
    int32_t *owner[OV_GROUPS];                  /* [seq]: client * OV_PER_CLIENT + k, -1 unknown */
    uint64_t n_acked[OV_GROUPS];
    long replies, overloaded, deliveries;
    char failure[512];
} ov_state;

static int ov_group_of(int i, int k)
{
    return (i + k % 2) % OV_GROUPS; /* client i is in groups i % 4 and (i + 1) % 4 */
}

static bool ov_member(int i, int g)
{
    return g == i % OV_GROUPS || g == (i + 1) % OV_GROUPS;
}

static int ov_group_index(rc_str g)
{
    if (g.len != 5 || memcmp(g.ptr, "ov-g", 4) != 0 || g.ptr[4] < '0' || g.ptr[4] >= '0' + OV_GROUPS)
        return -1;
    return g.ptr[4] - '0';
}

/* Records that seq of group g carries message key; the first observer (ack
 * or msg) sets it, every later one must agree. */
static bool ov_own(ov_state *st, int g, uint64_t seq, int32_t key)
{
    if (seq < 1 || seq > OV_MAX_SEQ)
        return it_failf(st->failure, sizeof(st->failure), "group %d: seq %" PRIu64 " out of range", g, seq);
    if (st->owner[g][seq] < 0)
        st->owner[g][seq] = key;
    else if (st->owner[g][seq] != key)
        return it_failf(st->failure, sizeof(st->failure), "group %d seq %" PRIu64 ": message %d and %d", g, seq,
                     st->owner[g][seq], key);
    return true;
}

static bool ov_frame(void *ud, int i, const rc_msg *m)
{
    ov_state *st = ud;
    char *f = st->failure;
    size_t fl = sizeof(st->failure);
    if (m->type == RC_T_ACK || m->type == RC_T_ERR) {
        if (!(m->has & RC_HAS_RID) || m->rid < OV_RID0 || m->rid >= OV_RID0 + OV_PER_CLIENT)
            return it_failf(f, fl, "client %d: %s without a send's rid (code %s)", i, rc_type_name(m->type),
                         rc_err_name(m->code));
        int k = (int)(m->rid - OV_RID0);
        if (st->reply[i][k] != OV_NONE)
            return it_failf(f, fl, "client %d send %d: a second reply (%s)", i, k, rc_type_name(m->type));
        st->replies++;
        if (m->type == RC_T_ERR) {
            if (m->code != RC_E_OVERLOADED)
                return it_failf(f, fl, "client %d send %d: err %s: %.*s", i, k, rc_err_name(m->code), (int)m->text.len,
                             m->text.ptr);
            st->reply[i][k] = OV_OVERLOADED;
            st->overloaded++;
            return true;
        }
        st->reply[i][k] = OV_ACKED;
        int g = ov_group_of(i, k);
        if (ov_group_index(m->g) != g)
            return it_failf(f, fl, "client %d send %d: ack for the wrong group", i, k);
        if ((m->has & RC_HAS_DUP) && m->dup)
            return it_failf(f, fl, "client %d send %d: ack with dup (its mid is new)", i, k);
        if (m->seq <= st->last_ack[i][g])
            return it_failf(f, fl, "client %d group %d: ack seq %" PRIu64 " after %" PRIu64, i, g, m->seq,
                         st->last_ack[i][g]);
        st->last_ack[i][g] = m->seq;
        st->n_acked[g]++;
        return ov_own(st, g, m->seq, (int32_t)(i * OV_PER_CLIENT + k));
    }
    if (m->type == RC_T_MSG) {
        int g = ov_group_index(m->g), from = -1, k = -1;
        char mid[32];
        if (g < 0 || !ov_member(i, g))
            return it_failf(f, fl, "client %d: msg of a group it is not in", i);
        if (m->seq != st->last_msg[i][g] + 1)
            return it_failf(f, fl, "client %d group %d: msg seq %" PRIu64 " after %" PRIu64, i, g, m->seq,
                         st->last_msg[i][g]);
        st->last_msg[i][g] = m->seq;
        snprintf(mid, sizeof(mid), "%.*s", (int)m->mid.len, m->mid.ptr);
        if (!(m->has & RC_HAS_MID) || sscanf(mid, "o%d-%d", &from, &k) != 2 || from < 0 || from >= OV_CLIENTS ||
            k < 0 || k >= OV_PER_CLIENT || ov_group_of(from, k) != g)
            return it_failf(f, fl, "client %d: msg with a bad mid %s", i, mid);
        char user[16], body[32];
        snprintf(user, sizeof(user), "ov-u%d", from);
        snprintf(body, sizeof(body), "b%d-%d", from, k);
        if (!it_str_is(m->from, user) || !it_str_is(m->body, body))
            return it_failf(f, fl, "client %d: msg %s with the wrong sender or body", i, mid);
        st->deliveries++;
        return ov_own(st, g, m->seq, (int32_t)(from * OV_PER_CLIENT + k));
    }
    return it_failf(f, fl, "client %d: unexpected %s", i, rc_type_name(m->type));
}

static void test_overload_admission(void)
{
    const char *flags[] = { "--ring-capacity", "2", "--shards", "1", NULL };
    it_suite_start(flags);
    static ov_state st;
    memset(&st, 0, sizeof(st));
    for (int g = 0; g < OV_GROUPS; g++) {
        st.owner[g] = malloc((OV_MAX_SEQ + 1) * sizeof(int32_t));
        CU_ASSERT_FATAL(st.owner[g] != NULL);
        memset(st.owner[g], 0xff, (OV_MAX_SEQ + 1) * sizeof(int32_t));
    }

    rc_client cs[OV_CLIENTS];
    for (int i = 0; i < OV_CLIENTS; i++) {
        char user[16], g1[8], g2[8];
        snprintf(user, sizeof(user), "ov-u%d", i);
        snprintf(g1, sizeof(g1), "ov-g%d", i % OV_GROUPS);
        snprintf(g2, sizeof(g2), "ov-g%d", (i + 1) % OV_GROUPS);
        it_suite_login(&cs[i], user);
        CU_ASSERT_FATAL(rc_client_join(&cs[i], g1, IT_TIMEOUT_MS, NULL) == 0);
        CU_ASSERT_FATAL(rc_client_join(&cs[i], g2, IT_TIMEOUT_MS, NULL) == 0);
    }

    /* Every client pipelines all its sends (round-robin bursts) before any
     * reply is read. */
    bool ok = true;
    for (int k0 = 0; k0 < OV_PER_CLIENT && ok; k0 += OV_BURST)
        for (int i = 0; i < OV_CLIENTS && ok; i++)
            for (int k = k0; k < k0 + OV_BURST && k < OV_PER_CLIENT; k++) {
                char g[8], mid[32], body[32];
                snprintf(g, sizeof(g), "ov-g%d", ov_group_of(i, k));
                snprintf(mid, sizeof(mid), "o%d-%d", i, k);
                snprintf(body, sizeof(body), "b%d-%d", i, k);
                rc_msg m = { .type = RC_T_SEND, .g = rc_str_c(g), .body = rc_str_c(body), .body_is_str = true,
                             .mid = rc_str_c(mid), .has = RC_HAS_MID };
                if (it_request(&cs[i], &m, OV_RID0 + (uint64_t)k) != 0) {
                    printf("\n    client %d send %d: %s\n", i, k, cs[i].err);
                    ok = false;
                    break;
                }
            }
    CU_ASSERT_FATAL(ok);

    /* Read until every send has its reply and every member every msg of
     * its groups (known once all replies are in). */
    const long want_replies = (long)OV_CLIENTS * OV_PER_CLIENT;
    long want_deliveries = -1;
    int64_t end = it_now_ms() + OV_READ_MS;
    for (int round = 0; round < 1000000 && it_now_ms() < end; round++) {
        if (st.replies == want_replies && want_deliveries < 0) {
            want_deliveries = 0;
            for (int i = 0; i < OV_CLIENTS; i++)
                for (int g = 0; g < OV_GROUPS; g++)
                    if (ov_member(i, g))
                        want_deliveries += (long)st.n_acked[g];
        }
        if (want_deliveries >= 0 && st.deliveries >= want_deliveries)
            break;
        if (it_pump(cs, OV_CLIENTS, 100, ov_frame, &st) < 0) {
            ok = false;
            break;
        }
    }
    printf("\n    %ld of %ld sends overloaded, %ld acked, %ld deliveries\n", st.overloaded, want_replies,
           st.replies - st.overloaded, st.deliveries);
    if (st.failure[0])
        printf("    %s\n", st.failure);
    CU_ASSERT(ok);
    CU_ASSERT_EQUAL(st.replies, want_replies);
    CU_ASSERT_EQUAL(st.deliveries, want_deliveries);

    /* Acked seqs per group: exactly 1..n_acked, each owned by one send
     * (so no mid was sequenced twice and no overloaded send was sequenced). */
    long unowned = 0;
    for (int g = 0; g < OV_GROUPS; g++)
        for (uint64_t seq = 1; seq <= st.n_acked[g]; seq++)
            if (st.owner[g][seq] < 0 || st.reply[st.owner[g][seq] / OV_PER_CLIENT][st.owner[g][seq] % OV_PER_CLIENT] !=
                                            OV_ACKED)
                unowned++;
    CU_ASSERT_EQUAL(unowned, 0);
    for (int g = 0; g < OV_GROUPS; g++)
        CU_ASSERT(st.owner[g][st.n_acked[g] + 1] < 0); /* nothing past the last ack */
    for (int i = 0; i < OV_CLIENTS; i++)
        for (int g = 0; g < OV_GROUPS; g++)
            if (ov_member(i, g))
                CU_ASSERT_EQUAL(st.last_msg[i][g], st.n_acked[g]);

    /* No reply or msg beyond those. */
    for (int i = 0; i < OV_CLIENTS; i++)
        CU_ASSERT_EQUAL(it_pending_msgs(&cs[i]), 0);

    double metric = it_wait_metric(&it_srv, OV_METRIC, (double)st.overloaded);
    CU_ASSERT_EQUAL(metric, (double)st.overloaded);
    /* Every refused send also left a trace: an `overloaded` dead letter. */
    double letters = it_wait_metric(&it_srv, "ringcast_overloaded_letters_total{", (double)st.overloaded);
    CU_ASSERT_EQUAL(letters, (double)st.overloaded);
    double submitted = it_wait_metric(&it_srv, "ringcast_letters_total{reason=\"overloaded\",state=\"submitted\"}",
                                      (double)st.overloaded);
    CU_ASSERT_EQUAL(submitted, (double)st.overloaded);

    for (int i = 0; i < OV_CLIENTS; i++)
        rc_client_close(&cs[i]);
    for (int g = 0; g < OV_GROUPS; g++)
        free(st.owner[g]);
    it_suite_stop();
}

/* ================================================================== */
/* 4. Frame reassembly                                                  */
/* ================================================================== */

#define RE_CAT 100
#define RE_CAT_RID0 100u
#define RE_SPLIT_RID0 1000u /* uint16 rids: every split frame has one length */

/* Encodes a send of body to "re" with rid into b (appended). */
static int re_encode(rc_buf *b, uint64_t rid, const char *body)
{
    rc_msg m = { .type = RC_T_SEND, .g = rc_str_c("re"), .body = rc_str_c(body), .body_is_str = true,
                 .has = RC_HAS_RID, .rid = rid };
    return rc_encode(b, &m);
}

/* Reads a's ack for rid (skipping its own msg echoes) and b's msg. */
static bool re_expect(rc_client *a, rc_client *b, uint64_t rid, uint64_t seq, const char *body)
{
    rc_msg r;
    if (it_wait(a, RC_T_ACK, rid, &r, NULL) != 1 || r.type != RC_T_ACK || r.seq != seq) {
        printf("\n    rid %" PRIu64 ": no ack with seq %" PRIu64 "\n", rid, seq);
        return false;
    }
    if (!it_expect(b, &r, RC_T_MSG))
        return false;
    if (r.seq != seq || !it_str_is(r.body, body) || !it_str_is(r.from, "re-a") || !r.body_is_str) {
        printf("\n    msg seq %" PRIu64 " (want %" PRIu64 ") body %.*s (want %s)\n", r.seq, seq, (int)r.body.len,
               r.body.ptr, body);
        return false;
    }
    return true;
}

static void test_frame_reassembly(void)
{
    it_suite_start(NULL);
    rc_client a, b;
    it_suite_login(&a, "re-a");
    it_suite_login(&b, "re-b");
    it_suite_join(&a, "re", 0);
    it_suite_join(&b, "re", 0);
    int one = 1;
    CU_ASSERT(setsockopt(a.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0);
    rc_buf buf;
    rc_buf_init(&buf);
    uint64_t seq = 0;

    /* One frame, one byte per send(). */
    CU_ASSERT_FATAL(re_encode(&buf, 1, "one byte at a time") == 0);
    bool sent = true;
    for (size_t i = 0; i < buf.len && sent; i++) {
        sent = rc_client_send_raw(&a, buf.data + i, 1) == 0;
        it_sleep_ms(1);
    }
    CU_ASSERT_FATAL(sent);
    CU_ASSERT_FATAL(re_expect(&a, &b, 1, ++seq, "one byte at a time"));

    /* 100 frames in one send(). */
    buf.len = 0;
    char body[32];
    for (int i = 0; i < RE_CAT; i++) {
        snprintf(body, sizeof(body), "cat %d", i);
        CU_ASSERT_FATAL(re_encode(&buf, RE_CAT_RID0 + (uint64_t)i, body) == 0);
    }
    CU_ASSERT_FATAL(send(a.fd, buf.data, buf.len, MSG_NOSIGNAL) == (ssize_t)buf.len);
    bool ok = true;
    for (int i = 0; i < RE_CAT && ok; i++) {
        snprintf(body, sizeof(body), "cat %d", i);
        ok = re_expect(&a, &b, RE_CAT_RID0 + (uint64_t)i, ++seq, body);
    }
    CU_ASSERT_FATAL(ok);

    /* One small frame split in two send()s, at every offset. */
    buf.len = 0;
    CU_ASSERT_FATAL(re_encode(&buf, RE_SPLIT_RID0, "split-000") == 0);
    size_t len = buf.len;
    for (size_t off = 1; off < len && ok; off++) {
        buf.len = 0;
        snprintf(body, sizeof(body), "split-%03zu", off);
        CU_ASSERT_FATAL(re_encode(&buf, RE_SPLIT_RID0 + off, body) == 0);
        CU_ASSERT_FATAL(buf.len == len);
        ok = rc_client_send_raw(&a, buf.data, off) == 0;
        it_sleep_ms(1);
        ok = ok && rc_client_send_raw(&a, buf.data + off, len - off) == 0;
        ok = ok && re_expect(&a, &b, RE_SPLIT_RID0 + off, ++seq, body);
        if (!ok)
            printf("\n    split at offset %zu of %zu failed\n", off, len);
    }
    CU_ASSERT(ok);
    CU_ASSERT_EQUAL(it_pending_msgs(&b), 0);
    rc_buf_free(&buf);
    rc_client_close(&a);
    rc_client_close(&b);
    it_suite_stop();
}

/* ================================================================== */
/* 5. Large frames                                                      */
/* ================================================================== */

#define BIG_MAX_FRAME 65536u

/* Encodes a send to "big" (rid 7) whose payload is exactly payload bytes,
 * with a bin body of the pattern; returns the body length, 0 on failure. */
static uint32_t big_frame(rc_buf *b, uint8_t *body, uint32_t payload)
{
    uint32_t guess = payload - 1000;
    for (int attempt = 0; attempt < 3; attempt++) {
        b->len = 0;
        rc_msg m = { .type = RC_T_SEND, .g = rc_str_c("big"), .body = { (const char *)body, guess },
                     .has = RC_HAS_RID, .rid = 7 };
        if (rc_encode(b, &m) != 0)
            return 0;
        uint32_t got = (uint32_t)(b->len - RC_FRAME_HEADER);
        if (got == payload)
            return guess;
        guess = guess + payload - got;
    }
    return 0;
}

static void test_large_frame(void)
{
    char mf[16];
    snprintf(mf, sizeof(mf), "%u", BIG_MAX_FRAME);
    const char *flags[] = { "--max-frame", mf, NULL };
    it_suite_start(flags);
    rc_client a, b;
    it_suite_login(&a, "big-a");
    it_suite_login(&b, "big-b");
    CU_ASSERT_EQUAL(a.max_frame, BIG_MAX_FRAME);
    it_suite_join(&a, "big", 0);
    it_suite_join(&b, "big", 0);

    uint8_t *body = malloc(BIG_MAX_FRAME + 1);
    CU_ASSERT_FATAL(body != NULL);
    for (uint32_t i = 0; i <= BIG_MAX_FRAME; i++)
        body[i] = (uint8_t)(i * 31u + 7u);
    rc_buf buf;
    rc_buf_init(&buf);

    /* Exactly max_frame: accepted, delivered intact. */
    uint32_t n = big_frame(&buf, body, BIG_MAX_FRAME);
    CU_ASSERT_FATAL(n > 0);
    CU_ASSERT_FATAL(rc_frame_len(buf.data) == BIG_MAX_FRAME);
    CU_ASSERT_FATAL(rc_client_send_raw(&a, buf.data, buf.len) == 0);
    rc_msg r;
    int skipped = 0;
    CU_ASSERT_FATAL(it_wait(&a, RC_T_ACK, 7, &r, &skipped) == 1);
    if (r.type == RC_T_ERR)
        printf("\n    err %s: %.*s\n", rc_err_name(r.code), (int)r.text.len, r.text.ptr);
    CU_ASSERT_FATAL(r.type == RC_T_ACK);
    CU_ASSERT_EQUAL(r.seq, 1);
    CU_ASSERT_FATAL(it_expect(&b, &r, RC_T_MSG));
    CU_ASSERT_EQUAL(r.seq, 1);
    CU_ASSERT(!r.body_is_str);
    CU_ASSERT_EQUAL_FATAL(r.body.len, n);
    CU_ASSERT(memcmp(r.body.ptr, body, n) == 0);
    CU_ASSERT_EQUAL(skipped + it_pending_msgs(&a), 1); /* its own echo */

    /* One byte more: E_FRAME_TOO_LARGE without rid, then close. */
    uint32_t n2 = big_frame(&buf, body, BIG_MAX_FRAME + 1);
    CU_ASSERT_FATAL(n2 == n + 1);
    CU_ASSERT_FATAL(rc_frame_len(buf.data) == BIG_MAX_FRAME + 1);
    (void)rc_client_send_raw(&a, buf.data, buf.len); /* the server may close before reading it all */
    int got = it_next(&a, &r);
    if (got != 1)
        printf("\n    after a frame of max_frame+1: %s\n", got == 0 ? "nothing (timeout)" : a.err);
    CU_ASSERT(got == 1 && it_is_err(&r, RC_E_FRAME_TOO_LARGE, false, 0));
    CU_ASSERT_EQUAL(it_next(&a, &r), -1); /* closed */
    CU_ASSERT_EQUAL(it_pending_msgs(&b), 0); /* nothing was sequenced */

    free(body);
    rc_buf_free(&buf);
    rc_client_close(&a);
    rc_client_close(&b);
    it_suite_stop();
}

/* ================================================================== */
/* 6. ringcast chat                                                     */
/* ================================================================== */

#define CHAT_WAIT_MS 10000
#define CHAT_OUT_CAP 65536

typedef struct chat_proc {
    pid_t pid;
    int in, out, err; /* our ends: its stdin, stdout, stderr */
    char obuf[CHAT_OUT_CAP], ebuf[CHAT_OUT_CAP];
    size_t olen, elen;
} chat_proc;

static int chat_spawn(chat_proc *p, const char *const *argv)
{
    int pi[2], po[2], pe[2];
    if (pipe2(pi, O_CLOEXEC) != 0)
        return -1;
    if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0) {
        close(pi[0]);
        close(pi[1]);
        return -1;
    }
    p->pid = fork();
    if (p->pid == 0) {
        dup2(pi[0], 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pi[0]);
    close(po[1]);
    close(pe[1]);
    p->in = pi[1];
    p->out = po[0];
    p->err = pe[0];
    fcntl(p->out, F_SETFL, O_NONBLOCK);
    fcntl(p->err, F_SETFL, O_NONBLOCK);
    return p->pid > 0 ? 0 : -1;
}

static void chat_read(int fd, char *buf, size_t *len)
{
    for (int i = 0; i < 64 && fd >= 0; i++) {
        ssize_t n = read(fd, buf + *len, CHAT_OUT_CAP - 1 - *len);
        if (n <= 0)
            return;
        *len += (size_t)n;
        buf[*len] = '\0';
    }
}

/* Reads its stdout and stderr until pred holds (or CHAT_WAIT_MS passed). */
static bool chat_until(chat_proc *p, bool (*pred)(const chat_proc *))
{
    int64_t end = it_now_ms() + CHAT_WAIT_MS;
    for (int i = 0; i < 10000 && it_now_ms() < end; i++) {
        if (pred(p))
            return true;
        struct pollfd f[2] = { { p->out, POLLIN, 0 }, { p->err, POLLIN, 0 } };
        poll(f, 2, 20);
        chat_read(p->out, p->obuf, &p->olen);
        chat_read(p->err, p->ebuf, &p->elen);
    }
    return pred(p);
}

static bool chat_joined(const chat_proc *p)
{
    return strstr(p->ebuf, "joined") != NULL;
}

/* A line with the reply and its sender: "[lobby #2] dave: reply". */
static bool chat_saw_reply(const chat_proc *p)
{
    for (const char *l = p->obuf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        const char *nl = strchr(l, '\n');
        if (!nl)
            return false; /* a line is complete only with its newline */
        char line[512];
        snprintf(line, sizeof(line), "%.*s", (int)(nl - l), l);
        if (strstr(line, "reply") && strstr(line, "dave"))
            return true;
    }
    return false;
}

/* Waits for the exit: its status, or -1 when it had to be killed. */
static int chat_wait(chat_proc *p)
{
    int64_t end = it_now_ms() + CHAT_WAIT_MS;
    int st = 0;
    for (int i = 0; i < 100000; i++) {
        pid_t w = waitpid(p->pid, &st, WNOHANG);
        if (w == p->pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (w < 0 || it_now_ms() >= end)
            break;
        chat_read(p->out, p->obuf, &p->olen);
        chat_read(p->err, p->ebuf, &p->elen);
        it_sleep_ms(10);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &st, 0);
    printf("\n    ringcast chat did not exit within %d ms; killed\n", CHAT_WAIT_MS);
    return -1;
}

static void test_cli_chat(void)
{
    const char *bin = getenv("RINGCAST_CLI");
    CU_ASSERT_FATAL(bin != NULL);
    it_suite_start(NULL);
    rc_client d;
    it_suite_login(&d, "dave");
    it_suite_join(&d, "lobby", 0);

    static chat_proc p;
    memset(&p, 0, sizeof(p));
    char port[8];
    snprintf(port, sizeof(port), "%u", it_srv.s.port);
    const char *argv[] = { bin, "chat", "--host", IT_HOST, "--port", port, "--user", "carol", "--group", "lobby", NULL };
    CU_ASSERT_FATAL(chat_spawn(&p, argv) == 0);

    bool joined = chat_until(&p, chat_joined);
    if (!joined)
        printf("\n    chat stderr: %s\n", p.ebuf);
    CU_ASSERT(joined);

    /* A typed line becomes a message from carol. */
    const char line[] = "hello from chat\n";
    CU_ASSERT(write(p.in, line, sizeof(line) - 1) == (ssize_t)(sizeof(line) - 1));
    rc_msg r;
    CU_ASSERT(it_expect(&d, &r, RC_T_MSG) && r.seq == 1 && it_str_is(r.from, "carol") &&
              it_str_is(r.body, "hello from chat") && it_str_is(r.g, "lobby"));

    /* A message from another user shows on chat's stdout. */
    rc_msg ack;
    CU_ASSERT(rc_client_publish(&d, "lobby", "reply", 5, NULL, IT_TIMEOUT_MS, &ack) == 0);
    bool saw = chat_until(&p, chat_saw_reply);
    if (!saw)
        printf("\n    chat stdout: \"%s\"\n    chat stderr: \"%s\"\n", p.obuf, p.ebuf);
    CU_ASSERT(saw);

    /* End of input ends the chat. */
    close(p.in);
    int status = chat_wait(&p);
    CU_ASSERT_EQUAL(status, 0);
    close(p.out);
    close(p.err);
    rc_client_close(&d);
    it_suite_stop();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* a dead chat's stdin must fail a write, not end the run */
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("limits", NULL, it_suite_cleanup);
    if (!s) {
        CU_cleanup_registry();
        return 1;
    }
    CU_add_test(s, "max_members_per_group: E_LIMIT for a new member only", test_max_members_per_group);
    CU_add_test(s, "a join refused with E_LIMIT takes no session place", test_refused_join_takes_no_session_place);
    CU_add_test(s, "slow consumer closed past outbound_kill_bytes", test_slow_consumer);
    CU_add_test(s, "overload admission: one reply per send, gapless acks", test_overload_admission);
    CU_add_test(s, "frame reassembly: byte by byte, concatenated, split", test_frame_reassembly);
    CU_add_test(s, "frame of exactly max_frame; max_frame+1 closes", test_large_frame);
    CU_add_test(s, "ringcast chat through stdin and stdout", test_cli_chat);
    return rc_test_run();
}
