/*
 * Bad input (proto/PROTOCOL.md §1, §2, §5): every class of bad
 * input gets its documented error code, framing errors close only the
 * offending connection, and the server keeps serving everyone else.
 *
 * One server runs through the whole suite. Two healthy clients are members
 * of group "bad-g"; after every bad input, check_healthy() has one of them
 * send and both receive, and checks the group's seqs stayed gapless (no bad
 * input ever sequenced anything in bad-g). Bad clients are separate
 * connections, most of them members of bad-g too, so their closing also
 * exercises the detach path. Raw frames are built with msgpack-c, since the
 * library encoder only writes valid maps.
 */
#define _GNU_SOURCE
#include "itest.h"

#define GROUP "bad-g"
#define HEALTHY_RID0 50000u /* rids of check_healthy's sends */
#define PING_RID 777u

static it_server srv;
static rc_client h1, h2;       /* the healthy members of GROUP */
static uint64_t healthy_seq;   /* last seq of GROUP */
static uint64_t healthy_rid = HEALTHY_RID0;

static int cleanup(void)
{
    if (srv.up) {
        rc_client_close(&h1);
        rc_client_close(&h2);
    }
    return it_cleanup(&srv);
}

/* Starts the suite's server and its healthy clients on first use. */
static void ensure_server(void)
{
    if (srv.up)
        return;
    CU_ASSERT_FATAL(it_start(&srv, NULL) == 0);
    CU_ASSERT_FATAL(it_login(&h1, &srv, "healthy1") == 0);
    CU_ASSERT_FATAL(it_login(&h2, &srv, "healthy2") == 0);
    CU_ASSERT_FATAL(rc_client_join(&h1, GROUP, IT_TIMEOUT_MS, NULL) == 0);
    CU_ASSERT_FATAL(rc_client_join(&h2, GROUP, IT_TIMEOUT_MS, NULL) == 0);
    healthy_seq = 0;
}

/* healthy1 sends; it gets its ack and its own msg, healthy2 the msg, with the
 * next seq of GROUP and nothing else in between. */
static void check_healthy(void)
{
    char body[48];
    uint64_t rid = healthy_rid++;
    snprintf(body, sizeof(body), "still serving %llu", (unsigned long long)rid);
    rc_msg m = { .type = RC_T_SEND, .g = rc_str_c(GROUP), .body = rc_str_c(body) };
    CU_ASSERT_FATAL(it_request(&h1, &m, rid) == 0);
    int acks = 0, msgs = 0;
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_FATAL(it_next(&h1, &m) == 1);
        if (m.type == RC_T_ACK && m.rid == rid && m.seq == healthy_seq + 1)
            acks++;
        else if (m.type == RC_T_MSG && m.seq == healthy_seq + 1 && rc_str_eq(m.body, rc_str_c(body)))
            msgs++;
    }
    CU_ASSERT(acks == 1 && msgs == 1);
    CU_ASSERT_FATAL(it_expect(&h2, &m, RC_T_MSG));
    CU_ASSERT(m.seq == healthy_seq + 1 && it_str_is(m.from, "healthy1") && rc_str_eq(m.body, rc_str_c(body)));
    healthy_seq++;
}

/* A bad client: connected, hello'd as user and, when g is set, a member of g. */
static void bad_login(rc_client *c, const char *user, const char *g)
{
    CU_ASSERT_FATAL(it_login(c, &srv, user) == 0);
    if (g)
        CU_ASSERT_FATAL(rc_client_join(c, g, IT_TIMEOUT_MS, NULL) == 0);
}

/* The next frame is err(code), with rid when has_rid. */
static bool next_err(rc_client *c, rc_err code, bool has_rid, uint64_t rid)
{
    rc_msg m;
    if (!it_expect(c, &m, RC_T_ERR))
        return false;
    if (!it_is_err(&m, code, has_rid, rid)) {
        printf("\n    expected err %s (rid %s%llu), got %s (rid %s%llu)\n", rc_err_name(code), has_rid ? "" : "none ",
               (unsigned long long)rid, rc_err_name(m.code), (m.has & RC_HAS_RID) ? "" : "none ",
               (unsigned long long)m.rid);
        return false;
    }
    return m.text.len > 0; /* the human text says what to do */
}

/* Like next_err, but the rid is not checked (framing-level errors). */
static bool next_err_code(rc_client *c, rc_err code)
{
    rc_msg m;
    return it_expect(c, &m, RC_T_ERR) && m.code == code;
}

/* The server closed the connection (after sending what it had queued). */
static bool closed_by_server(rc_client *c)
{
    rc_msg m;
    int r = it_next(c, &m);
    if (r == 1)
        printf("\n    expected a close, got %s\n", rc_type_name(m.type));
    return r == -1;
}

/* The connection still answers ping. */
static bool still_open(rc_client *c)
{
    rc_msg m = { .type = RC_T_PING };
    return it_request(c, &m, PING_RID) == 0 && it_expect(c, &m, RC_T_PONG) && m.rid == PING_RID;
}

static void send_bytes(rc_client *c, const void *p, size_t n)
{
    CU_ASSERT_FATAL(it_send_frame(c, p, n) == 0);
}

/* ---- framing ---- */

static void test_zero_length_frame(void)
{
    ensure_server();
    rc_client b;
    bad_login(&b, "bad-zero", GROUP);
    send_bytes(&b, NULL, 0);
    CU_ASSERT(next_err_code(&b, RC_E_BAD_FRAME));
    CU_ASSERT(closed_by_server(&b));
    rc_client_close(&b);
    check_healthy();
}

static void test_frame_too_large(void)
{
    ensure_server();
    static const uint8_t lens[][RC_FRAME_HEADER] = {
        { 0x00, 0x01, 0x00, 0x01 }, /* max_frame + 1 */
        { 0xff, 0xff, 0xff, 0xff }, /* the largest length */
    };
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        rc_client b;
        bad_login(&b, "bad-large", GROUP);
        CU_ASSERT_FATAL(rc_client_send_raw(&b, lens[i], RC_FRAME_HEADER) == 0);
        CU_ASSERT(next_err_code(&b, RC_E_FRAME_TOO_LARGE));
        CU_ASSERT(closed_by_server(&b));
        rc_client_close(&b);
        check_healthy();
    }
    /* Exactly max_frame is allowed: a ping padded with an ignored key. */
    rc_client b;
    bad_login(&b, "bad-maxframe", NULL);
    it_map m;
    it_map_init(&m, 3);
    it_map_str(&m, "t", "ping");
    it_map_uint(&m, "rid", PING_RID);
    it_pack_str(&m.pk, "pad", 3);
    size_t pad = RC_DEFAULT_MAX_FRAME - m.sb.size - 3; /* str16 header: 3 bytes */
    char *filler = malloc(pad);
    CU_ASSERT_FATAL(filler != NULL);
    memset(filler, 'p', pad);
    it_pack_str(&m.pk, filler, pad);
    free(filler);
    CU_ASSERT_EQUAL(m.sb.size, RC_DEFAULT_MAX_FRAME);
    CU_ASSERT_FATAL(it_map_send(&b, &m) == 0);
    rc_msg r;
    CU_ASSERT(it_expect(&b, &r, RC_T_PONG) && r.rid == PING_RID);
    rc_client_close(&b);
    check_healthy();
}

static void test_truncated_frame_then_disconnect(void)
{
    ensure_server();
    rc_client b;
    bad_login(&b, "bad-trunc", GROUP);
    static const uint8_t part[] = { 0x00, 0x00, 0x00, 0x64, 0x82, 0xa1, 't', 0xa4, 's', 'e', 'n', 'd' };
    CU_ASSERT_FATAL(rc_client_send_raw(&b, part, sizeof(part)) == 0); /* 100 announced, 8 sent */
    rc_client_close(&b);
    check_healthy();
    /* A frame split over several writes is fine, of course. */
    bad_login(&b, "bad-split", NULL);
    it_map m;
    it_map_init(&m, 2);
    it_map_str(&m, "t", "ping");
    it_map_uint(&m, "rid", PING_RID);
    uint8_t hdr[RC_FRAME_HEADER];
    rc_frame_put_len(hdr, (uint32_t)m.sb.size);
    CU_ASSERT(rc_client_send_raw(&b, hdr, 2) == 0);
    it_sleep_ms(20);
    CU_ASSERT(rc_client_send_raw(&b, hdr + 2, 2) == 0);
    it_sleep_ms(20);
    CU_ASSERT(rc_client_send_raw(&b, m.sb.data, 3) == 0);
    it_sleep_ms(20);
    CU_ASSERT(rc_client_send_raw(&b, m.sb.data + 3, m.sb.size - 3) == 0);
    msgpack_sbuffer_destroy(&m.sb);
    rc_msg r;
    CU_ASSERT(it_expect(&b, &r, RC_T_PONG) && r.rid == PING_RID);
    rc_client_close(&b);
    /* Every bad connection so far is gone: only the two healthy ones stay. */
    CU_ASSERT_EQUAL(it_wait_metric(&srv, IT_OPEN_CONNS, 2), 2);
    check_healthy();
}

/* ---- payloads that are not one valid map ---- */

static void test_not_a_map(void)
{
    ensure_server();
    rc_client b;
    bad_login(&b, "bad-notmap", GROUP);
    static const uint8_t array[] = { 0x92, 0x01, 0x02 };   /* [1, 2] */
    static const uint8_t integer[] = { 0x05 };             /* 5 */
    static const uint8_t string[] = { 0xa4, 'p', 'i', 'n', 'g' };
    static const uint8_t nil[] = { 0xc0 };
    static const struct { const uint8_t *p; size_t n; } cases[] = {
        { array, sizeof(array) }, { integer, sizeof(integer) }, { string, sizeof(string) }, { nil, sizeof(nil) },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        send_bytes(&b, cases[i].p, cases[i].n);
        CU_ASSERT(next_err_code(&b, RC_E_BAD_FRAME));
        CU_ASSERT(still_open(&b)); /* the framing is intact: the session goes on */
    }
    check_healthy();
    rc_client_close(&b);
}

static void test_invalid_msgpack(void)
{
    ensure_server();
    rc_client b;
    bad_login(&b, "bad-c1", GROUP);
    static const uint8_t never_used[] = { 0xc1 };
    send_bytes(&b, never_used, sizeof(never_used));
    CU_ASSERT(next_err_code(&b, RC_E_BAD_FRAME));
    rc_client_close(&b);
    check_healthy();
    /* A map cut short inside its frame: {t: "pi */
    bad_login(&b, "bad-short", GROUP);
    static const uint8_t cut[] = { 0x81, 0xa1, 't', 0xa4, 'p', 'i' };
    send_bytes(&b, cut, sizeof(cut));
    CU_ASSERT(next_err_code(&b, RC_E_BAD_FRAME));
    rc_client_close(&b);
    check_healthy();
}

static void test_trailing_bytes(void)
{
    ensure_server();
    rc_client b;
    bad_login(&b, "bad-trail", GROUP);
    it_map m;
    it_map_init(&m, 2);
    it_map_str(&m, "t", "ping");
    it_map_uint(&m, "rid", 3);
    msgpack_pack_nil(&m.pk); /* one byte after the map, inside the frame */
    CU_ASSERT_FATAL(it_map_send(&b, &m) == 0);
    CU_ASSERT(next_err_code(&b, RC_E_BAD_FRAME));
    rc_client_close(&b);
    check_healthy();
}

/* ---- maps with bad contents ---- */

static void test_unknown_type(void)
{
    ensure_server();
    rc_client b;
    bad_login(&b, "bad-type", GROUP);
    it_map m;
    it_map_init(&m, 2);
    it_map_str(&m, "t", "frobnicate");
    it_map_uint(&m, "rid", 11);
    CU_ASSERT_FATAL(it_map_send(&b, &m) == 0);
    CU_ASSERT(next_err(&b, RC_E_UNKNOWN_TYPE, true, 11));
    /* No t at all: a missing field; t not a string: a bad field. */
    it_map_init(&m, 1);
    it_map_uint(&m, "rid", 12);
    CU_ASSERT_FATAL(it_map_send(&b, &m) == 0);
    CU_ASSERT(next_err(&b, RC_E_MISSING_FIELD, true, 12));
    it_map_init(&m, 2);
    it_map_uint(&m, "t", 5);
    it_map_uint(&m, "rid", 13);
    CU_ASSERT_FATAL(it_map_send(&b, &m) == 0);
    CU_ASSERT(next_err(&b, RC_E_BAD_FIELD, true, 13));
    CU_ASSERT(still_open(&b));
    check_healthy();
    rc_client_close(&b);
}

static void test_missing_field(void)
{
    ensure_server();
    rc_client b;
    bad_login(&b, "bad-missing", GROUP);
    it_map m;
    it_map_init(&m, 3); /* send without body */
    it_map_str(&m, "t", "send");
    it_map_str(&m, "g", GROUP);
    it_map_uint(&m, "rid", 14);
    CU_ASSERT_FATAL(it_map_send(&b, &m) == 0);
    CU_ASSERT(next_err(&b, RC_E_MISSING_FIELD, true, 14));
    it_map_init(&m, 2); /* join without g */
    it_map_str(&m, "t", "join");
    it_map_uint(&m, "rid", 15);
    CU_ASSERT_FATAL(it_map_send(&b, &m) == 0);
    CU_ASSERT(next_err(&b, RC_E_MISSING_FIELD, true, 15));
    CU_ASSERT(still_open(&b));
    rc_client_close(&b);

    rc_client f; /* hello without user */
    CU_ASSERT_FATAL(rc_client_connect(&f, IT_HOST, srv.s.port, IT_TIMEOUT_MS) == 0);
    it_map_init(&m, 2);
    it_map_str(&m, "t", "hello");
    it_map_uint(&m, "rid", 16);
    CU_ASSERT_FATAL(it_map_send(&f, &m) == 0);
    CU_ASSERT(next_err(&f, RC_E_MISSING_FIELD, true, 16));
    rc_client_close(&f);
    check_healthy();
}

static void test_wrong_field_type(void)
{
    ensure_server();
    rc_client b;
    bad_login(&b, "bad-field", GROUP);
    it_map m;
    it_map_init(&m, 3); /* g as an integer */
    it_map_str(&m, "t", "join");
    it_map_uint(&m, "g", 42);
    it_map_uint(&m, "rid", 17);
    CU_ASSERT_FATAL(it_map_send(&b, &m) == 0);
    CU_ASSERT(next_err(&b, RC_E_BAD_FIELD, true, 17));
    it_map_init(&m, 4); /* body as an integer */
    it_map_str(&m, "t", "send");
    it_map_str(&m, "g", GROUP);
    it_map_uint(&m, "body", 5);
    it_map_uint(&m, "rid", 18);
    CU_ASSERT_FATAL(it_map_send(&b, &m) == 0);
    CU_ASSERT(next_err(&b, RC_E_BAD_FIELD, true, 18));
    it_map_init(&m, 4); /* since as a string */
    it_map_str(&m, "t", "join");
    it_map_str(&m, "g", GROUP);
    it_map_str(&m, "since", "3");
    it_map_uint(&m, "rid", 19);
    CU_ASSERT_FATAL(it_map_send(&b, &m) == 0);
    CU_ASSERT(next_err(&b, RC_E_BAD_FIELD, true, 19));
    it_map_init(&m, 2); /* rid itself as a string: nothing to echo */
    it_map_str(&m, "t", "ping");
    it_map_str(&m, "rid", "20");
    CU_ASSERT_FATAL(it_map_send(&b, &m) == 0);
    CU_ASSERT(next_err(&b, RC_E_BAD_FIELD, false, 0));
    CU_ASSERT(still_open(&b));
    check_healthy();
    rc_client_close(&b);
}

/* ---- sessions ---- */

static void test_before_hello(void)
{
    ensure_server();
    rc_client b;
    CU_ASSERT_FATAL(rc_client_connect(&b, IT_HOST, srv.s.port, IT_TIMEOUT_MS) == 0);
    rc_msg m = { .type = RC_T_JOIN, .g = rc_str_c(GROUP) };
    CU_ASSERT(it_request(&b, &m, 21) == 0);
    CU_ASSERT(next_err(&b, RC_E_NOT_AUTHENTICATED, true, 21));
    m = (rc_msg){ .type = RC_T_SEND, .g = rc_str_c(GROUP), .body = rc_str_c("sneaky") };
    CU_ASSERT(it_request(&b, &m, 22) == 0);
    CU_ASSERT(next_err(&b, RC_E_NOT_AUTHENTICATED, true, 22));
    m = (rc_msg){ .type = RC_T_PING };
    CU_ASSERT(it_request(&b, &m, 23) == 0);
    CU_ASSERT(next_err(&b, RC_E_NOT_AUTHENTICATED, true, 23));
    m = (rc_msg){ .type = RC_T_HIST, .g = rc_str_c(GROUP) };
    CU_ASSERT(it_request(&b, &m, 24) == 0);
    CU_ASSERT(next_err(&b, RC_E_NOT_AUTHENTICATED, true, 24));
    /* The connection stays usable: hello now works. */
    CU_ASSERT(rc_client_hello(&b, "late", IT_TIMEOUT_MS) == 0);
    CU_ASSERT(still_open(&b));
    rc_client_close(&b);
    check_healthy();
}

static void test_send_without_membership(void)
{
    ensure_server();
    rc_client b;
    bad_login(&b, "stranger", NULL);
    rc_msg m = { .type = RC_T_SEND, .g = rc_str_c(GROUP), .body = rc_str_c("let me in") };
    CU_ASSERT(it_request(&b, &m, 25) == 0);
    CU_ASSERT(next_err(&b, RC_E_NOT_MEMBER, true, 25));
    rc_client_close(&b);
    check_healthy(); /* and nothing was sequenced: the seq goes on by one */
}

/* hello with a user of n bytes: 0 welcome, else the err code (-1 failure). */
static int hello_len(rc_client *c, size_t n, uint64_t rid)
{
    char user[RC_MAX_USER + 2];
    memset(user, 'u', n);
    user[n] = '\0';
    rc_msg m = { .type = RC_T_HELLO, .user = rc_str_c(user) };
    if (it_request(c, &m, rid) != 0 || it_next(c, &m) != 1 || m.rid != rid)
        return -1;
    return m.type == RC_T_WELCOME ? 0 : m.type == RC_T_ERR ? (int)m.code : -1;
}

static void test_over_long_strings(void)
{
    ensure_server();
    rc_client b;
    CU_ASSERT_FATAL(rc_client_connect(&b, IT_HOST, srv.s.port, IT_TIMEOUT_MS) == 0);
    CU_ASSERT_EQUAL(hello_len(&b, RC_MAX_USER + 1, 26), RC_E_BAD_FIELD); /* 65 bytes */
    CU_ASSERT_EQUAL(hello_len(&b, 0, 27), RC_E_BAD_FIELD);               /* empty */
    CU_ASSERT_EQUAL(hello_len(&b, RC_MAX_USER, 28), 0);                  /* 64 bytes is fine */

    char g[RC_MAX_GROUP + 2];
    memset(g, 'g', RC_MAX_GROUP + 1);
    g[RC_MAX_GROUP + 1] = '\0'; /* 129 bytes */
    CU_ASSERT_EQUAL(rc_client_join(&b, g, IT_TIMEOUT_MS, NULL), RC_E_BAD_FIELD);
    CU_ASSERT_EQUAL(rc_client_join(&b, "", IT_TIMEOUT_MS, NULL), RC_E_BAD_FIELD);
    g[RC_MAX_GROUP] = '\0'; /* 128 bytes is fine */
    CU_ASSERT_EQUAL(rc_client_join(&b, g, IT_TIMEOUT_MS, NULL), 0);

    char mid[RC_MAX_MID + 2];
    memset(mid, 'm', RC_MAX_MID + 1);
    mid[RC_MAX_MID + 1] = '\0'; /* 65 bytes */
    rc_msg ack;
    CU_ASSERT_EQUAL(rc_client_publish(&b, g, "x", 1, mid, IT_TIMEOUT_MS, &ack), RC_E_BAD_FIELD);
    CU_ASSERT_EQUAL(rc_client_publish(&b, g, "x", 1, "", IT_TIMEOUT_MS, &ack), RC_E_BAD_FIELD);
    mid[RC_MAX_MID] = '\0'; /* 64 bytes is fine */
    CU_ASSERT_EQUAL(rc_client_publish(&b, g, "x", 1, mid, IT_TIMEOUT_MS, &ack), 0);
    CU_ASSERT_EQUAL(ack.seq, 1); /* the refused sends used no seq */
    rc_client_close(&b);
    check_healthy();
}

/* A map of a server-to-client type, with rid; full adds that type's fields. */
static void send_server_type(rc_client *c, const char *t, bool full, uint64_t rid)
{
    it_map m;
    if (!full) {
        it_map_init(&m, 2);
    } else if (strcmp(t, "msg") == 0) {
        it_map_init(&m, 7);
        it_map_str(&m, "g", GROUP);
        it_map_uint(&m, "seq", 1);
        it_map_str(&m, "from", "healthy1");
        it_map_uint(&m, "ts", 1);
        it_map_str(&m, "body", "forged");
    } else { /* welcome */
        it_map_init(&m, 5);
        it_map_uint(&m, "sid", 1);
        it_map_str(&m, "srv", "forged");
        it_map_uint(&m, "max_frame", 1);
    }
    it_map_str(&m, "t", t);
    it_map_uint(&m, "rid", rid);
    CU_ASSERT_FATAL(it_map_send(c, &m) == 0);
}

static void test_server_types_from_client(void)
{
    ensure_server();
    rc_client b;
    bad_login(&b, "bad-forger", GROUP);
    send_server_type(&b, "msg", true, 30); /* a complete, well-formed msg map */
    CU_ASSERT(next_err(&b, RC_E_UNKNOWN_TYPE, true, 30));
    send_server_type(&b, "welcome", true, 31);
    CU_ASSERT(next_err(&b, RC_E_UNKNOWN_TYPE, true, 31));
    send_server_type(&b, "left", false, 32);
    CU_ASSERT(next_err(&b, RC_E_UNKNOWN_TYPE, true, 32));
    /* pong is the one server type a client sends too: the answer to a
     * server ping (idle_timeout_ms). It gets no reply; the next one's err
     * is the next frame. */
    send_server_type(&b, "pong", false, 35);
    /* A bare server type is not a client request either, whatever fields
     * that type would carry from the server. */
    send_server_type(&b, "msg", false, 33);
    CU_ASSERT(next_err(&b, RC_E_UNKNOWN_TYPE, true, 33));
    send_server_type(&b, "ack", false, 34);
    CU_ASSERT(next_err(&b, RC_E_UNKNOWN_TYPE, true, 34));
    CU_ASSERT(still_open(&b));
    check_healthy(); /* the forged msg reached nobody: h2 sees only h1's */
    rc_client_close(&b);
}

static void test_replay_forbidden(void)
{
    ensure_server();
    rc_client b;
    bad_login(&b, "bad-replay", GROUP);
    it_map m;
    it_map_init(&m, 8);
    it_map_str(&m, "t", "replay");
    it_map_uint(&m, "rid", 35);
    it_map_uint(&m, "v", 1);
    it_map_str(&m, "reason", "slow_consumer");
    it_map_str(&m, "g", GROUP);
    it_map_str(&m, "from", "healthy1");
    it_map_uint(&m, "ts", 1);
    it_map_str(&m, "body", "replayed");
    CU_ASSERT_FATAL(it_map_send(&b, &m) == 0);
    CU_ASSERT(next_err(&b, RC_E_FORBIDDEN, true, 35));
    CU_ASSERT(still_open(&b));
    check_healthy();
    rc_client_close(&b);
}

/* ---- accounting and a clean stop ---- */

static void test_errors_counted_and_clean_stop(void)
{
    ensure_server();
    uint16_t admin = srv.s.admin_port;
    CU_ASSERT(rc_test_metric(admin, "ringcast_errors_total{code=\"E_BAD_FRAME\"}", 0) > 0);
    CU_ASSERT(rc_test_metric(admin, "ringcast_errors_total{code=\"E_FRAME_TOO_LARGE\"}", 0) > 0);
    CU_ASSERT(rc_test_metric(admin, "ringcast_errors_total{code=\"E_UNKNOWN_TYPE\"}", 0) > 0);
    CU_ASSERT(rc_test_metric(admin, "ringcast_errors_total{code=\"E_NOT_AUTHENTICATED\"}", 0) > 0);
    /* Error replies decided by a shard are error replies too. */
    CU_ASSERT(rc_test_metric(admin, "ringcast_errors_total{code=\"E_NOT_MEMBER\"}", 0) > 0);
    check_healthy();
    rc_client_close(&h1);
    rc_client_close(&h2);
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("bad input", NULL, cleanup);
    if (!s) {
        CU_cleanup_registry();
        return 1;
    }
    CU_add_test(s, "zero-length frame: E_BAD_FRAME, closed", test_zero_length_frame);
    CU_add_test(s, "frame above max_frame: E_FRAME_TOO_LARGE, closed", test_frame_too_large);
    CU_add_test(s, "truncated frame then disconnect", test_truncated_frame_then_disconnect);
    CU_add_test(s, "not a map: E_BAD_FRAME, stays open", test_not_a_map);
    CU_add_test(s, "invalid MessagePack: E_BAD_FRAME", test_invalid_msgpack);
    CU_add_test(s, "bytes after the map: E_BAD_FRAME", test_trailing_bytes);
    CU_add_test(s, "unknown t: E_UNKNOWN_TYPE", test_unknown_type);
    CU_add_test(s, "missing field: E_MISSING_FIELD", test_missing_field);
    CU_add_test(s, "wrong field type: E_BAD_FIELD", test_wrong_field_type);
    CU_add_test(s, "before hello: E_NOT_AUTHENTICATED", test_before_hello);
    CU_add_test(s, "send without membership: E_NOT_MEMBER", test_send_without_membership);
    CU_add_test(s, "over-long user, group, mid: E_BAD_FIELD", test_over_long_strings);
    CU_add_test(s, "server types sent by a client: E_UNKNOWN_TYPE", test_server_types_from_client);
    CU_add_test(s, "replay from a normal session: E_FORBIDDEN", test_replay_forbidden);
    CU_add_test(s, "errors counted in /metrics; clean stop", test_errors_counted_and_clean_stop);
    return rc_test_run();
}
