/*
 * The load generator's wire readers for the durable peers (bench/gen/
 * nats_wire.c, bench/gen/resp.c): NATS items are taken whole or not at all,
 * split anywhere; a header block's status and a JetStream API error are
 * recognised; RESP stream replies (XREAD, XREVRANGE) hand over every entry
 * in order, only once the whole reply has arrived, and anything of another
 * shape is refused.
 */
#define _GNU_SOURCE /* memmem, for the files built in below */
#include "testutil.h"

#include <CUnit/Basic.h>
#include <stdbool.h>
#include <string.h>

/* The generator is a program, not a library: its pure files are built in. */
#include "../../bench/gen/nats_wire.c"
#include "../../bench/gen/resp.c"

#define S(lit) ((const uint8_t *)(lit)), (sizeof(lit) - 1)

static bool is(const uint8_t *p, size_t n, const char *want)
{
    return p && n == strlen(want) && memcmp(p, want, n) == 0;
}

/* ---- NATS ---- */

static void test_nats_msg(void)
{
    nw_item it;
    const char msg[] = "MSG g.7 3 $JS.ACK.S.C.1.5.5.17.0 5\r\nhello\r\nPING\r\n";
    ssize_t n = nw_next(S(msg), &it);
    CU_ASSERT_EQUAL(n, (ssize_t)strlen("MSG g.7 3 $JS.ACK.S.C.1.5.5.17.0 5\r\nhello\r\n"));
    CU_ASSERT_EQUAL(it.kind, NW_MSG);
    CU_ASSERT_TRUE(is(it.subject, it.subject_len, "g.7"));
    CU_ASSERT_TRUE(is(it.reply, it.reply_len, "$JS.ACK.S.C.1.5.5.17.0"));
    CU_ASSERT_TRUE(is(it.payload, it.payload_len, "hello"));
    CU_ASSERT_PTR_NULL(it.hdr);
    CU_ASSERT_EQUAL(nw_next((const uint8_t *)msg + n, strlen(msg) - (size_t)n, &it), 6);
    CU_ASSERT_EQUAL(it.kind, NW_PING);

    /* no reply subject; the server's double space before the size */
    const char ack[] = "MSG _R.p0.a 1  30\r\n{\"stream\":\"RCB_g\", \"seq\":8001}\r\n";
    CU_ASSERT_EQUAL(nw_next(S(ack), &it), (ssize_t)strlen(ack));
    CU_ASSERT_PTR_NULL(it.reply);
    CU_ASSERT_TRUE(is(it.payload, it.payload_len, "{\"stream\":\"RCB_g\", \"seq\":8001}"));
    CU_ASSERT_TRUE(nw_js_puback(it.payload, it.payload_len));

    /* an empty payload */
    CU_ASSERT_EQUAL(nw_next(S("MSG a 1 0\r\n\r\n"), &it), 13);
    CU_ASSERT_EQUAL(it.payload_len, 0);
}

static void test_nats_split(void)
{
    /* every prefix of a complete item is "incomplete", never an error */
    const char all[] = "HMSG _R.p1.a 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n";
    nw_item it;
    for (size_t cut = 0; cut < strlen(all); cut++)
        CU_ASSERT_EQUAL(nw_next((const uint8_t *)all, cut, &it), 0);
    CU_ASSERT_EQUAL(nw_next(S(all), &it), (ssize_t)strlen(all));
    CU_ASSERT_EQUAL(it.kind, NW_HMSG);
    CU_ASSERT_EQUAL(it.hdr_len, 16);
    CU_ASSERT_EQUAL(it.payload_len, 0);
    CU_ASSERT_EQUAL(nw_status(it.hdr, it.hdr_len), 503);
}

static void test_nats_control(void)
{
    nw_item it;
    CU_ASSERT_EQUAL(nw_next(S("PONG\r\n"), &it), 6);
    CU_ASSERT_EQUAL(it.kind, NW_PONG);
    CU_ASSERT_EQUAL(nw_next(S("+OK\r\n"), &it), 5);
    CU_ASSERT_EQUAL(it.kind, NW_OK);
    CU_ASSERT_EQUAL(nw_next(S("-ERR 'Slow Consumer'\r\n"), &it), 22);
    CU_ASSERT_EQUAL(it.kind, NW_ERR);
    CU_ASSERT_TRUE(is(it.line, it.line_len, "-ERR 'Slow Consumer'"));
    CU_ASSERT_EQUAL(nw_next(S("INFO {\"jetstream\":true}\r\n"), &it), 25);
    CU_ASSERT_EQUAL(it.kind, NW_INFO);
}

static void test_nats_bad(void)
{
    nw_item it;
    CU_ASSERT_EQUAL(nw_next(S("PONG\n"), &it), -1);                 /* bare LF */
    CU_ASSERT_EQUAL(nw_next(S("HELLO\r\n"), &it), -1);              /* unknown op */
    CU_ASSERT_EQUAL(nw_next(S("PINGX\r\n"), &it), -1);
    CU_ASSERT_EQUAL(nw_next(S("MSG a 1\r\n"), &it), -1);            /* no size */
    CU_ASSERT_EQUAL(nw_next(S("MSG a 1 b c 5\r\nhello\r\n"), &it), -1); /* too many */
    CU_ASSERT_EQUAL(nw_next(S("MSG a 1 x5\r\nhello\r\n"), &it), -1);
    CU_ASSERT_EQUAL(nw_next(S("MSG a 1 5\r\nhelloXY"), &it), -1);   /* no CRLF after */
    CU_ASSERT_EQUAL(nw_next(S("MSG a 1 1234567890\r\n"), &it), -1); /* 10 digits */
    CU_ASSERT_EQUAL(nw_next(S("HMSG a 1 9 5\r\nNATS/1.0\r\n\r\n"), &it), -1); /* hdr > total */
    /* a line that never ends is refused once it is longer than allowed */
    static uint8_t longline[NW_MAX_LINE + 2];
    memset(longline, 'A', sizeof longline);
    CU_ASSERT_EQUAL(nw_next(longline, NW_MAX_LINE, &it), 0);
    CU_ASSERT_EQUAL(nw_next(longline, sizeof longline, &it), -1);
}

static void test_nats_status(void)
{
    CU_ASSERT_EQUAL(nw_status(S("NATS/1.0 503\r\n\r\n")), 503);
    CU_ASSERT_EQUAL(nw_status(S("NATS/1.0 100 Idle Heartbeat\r\n\r\n")), 100);
    CU_ASSERT_EQUAL(nw_status(S("NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\n\r\n")), 408);
    CU_ASSERT_EQUAL(nw_status(S("NATS/1.0\r\nNats-Msg-Id: 1\r\n\r\n")), 0);
    CU_ASSERT_EQUAL(nw_status(S("HTTP/1.1 200\r\n\r\n")), -1);
    CU_ASSERT_EQUAL(nw_status(S("NATS/1.0 50\r\n\r\n")), -1);
    CU_ASSERT_EQUAL(nw_status(S("NATS/1.0 5030\r\n\r\n")), -1);
    CU_ASSERT_EQUAL(nw_status(S("NATS/1.0x\r\n\r\n")), -1);
    CU_ASSERT_EQUAL(nw_status(S("NATS/1.0 503")), -1);
}

static void test_js_replies(void)
{
    const uint8_t *d;
    size_t dn;
    const char err[] = "{\"type\":\"io.nats.jetstream.api.v1.consumer_create_response\","
                       "\"error\":{\"code\":400,\"err_code\":10012,\"description\":\"consumer \\\"x\\\" bad\"}}";
    CU_ASSERT_TRUE(nw_js_error(S(err), &d, &dn));
    CU_ASSERT_TRUE(is(d, dn, "consumer \\\"x\\\" bad"));
    CU_ASSERT_FALSE(nw_js_puback(S(err)));
    CU_ASSERT_TRUE(nw_js_error(S("{\"error\":{\"code\":503}}"), &d, &dn));
    CU_ASSERT_PTR_NULL(d);
    const char ok[] = "{\"type\":\"io.nats.jetstream.api.v1.stream_create_response\",\"config\":{}}";
    CU_ASSERT_FALSE(nw_js_error(S(ok), &d, &dn));
    CU_ASSERT_TRUE(nw_js_puback(S("{\"stream\":\"RCB_g\",\"seq\":1}")));
    CU_ASSERT_TRUE(nw_js_puback(S("{\"stream\":\"RCB_g\", \"seq\":2, \"duplicate\":true}")));
    CU_ASSERT_FALSE(nw_js_puback(S("{\"stream\":\"RCB_g\"}")));
    CU_ASSERT_FALSE(nw_js_puback(S("{\"stream\":\"RCB_g\",\"seq\":1")));
    CU_ASSERT_FALSE(nw_js_puback(S("")));
}

/* ---- RESP ---- */

#define MAX_SEEN 16

typedef struct seen {
    int n;
    char key[MAX_SEEN][32], id[MAX_SEEN][48], value[MAX_SEEN][64];
    int stop_at;        /* fn fails at this entry (or -1) */
} seen;

static int on_entry(void *arg, const uint8_t *key, size_t key_len, const uint8_t *id, size_t id_len,
                    const uint8_t *value, size_t value_len)
{
    seen *s = arg;
    if (s->n == s->stop_at || s->n == MAX_SEEN)
        return -1;
    snprintf(s->key[s->n], sizeof s->key[0], "%.*s", (int)key_len, key ? (const char *)key : "");
    snprintf(s->id[s->n], sizeof s->id[0], "%.*s", (int)id_len, (const char *)id);
    snprintf(s->value[s->n], sizeof s->value[0], "%.*s", (int)value_len, (const char *)value);
    s->n++;
    return 0;
}

/* Two streams, three entries, then a +PONG that is not part of the reply. */
static const char XREAD[] =
    "*2\r\n"
    "*2\r\n$3\r\nm:1\r\n*2\r\n"
    "*2\r\n$3\r\n5-0\r\n*2\r\n$1\r\nb\r\n$5\r\nhello\r\n"
    "*2\r\n$3\r\n5-1\r\n*2\r\n$1\r\nb\r\n$0\r\n\r\n"
    "*2\r\n$3\r\nm:2\r\n*1\r\n"
    "*2\r\n$15\r\n1700000000000-7\r\n*2\r\n$1\r\nb\r\n$4\r\nx\r\ny\r\n";

static void test_resp_xread(void)
{
    char buf[sizeof XREAD + 16];
    snprintf(buf, sizeof buf, "%s+PONG\r\n", XREAD);
    seen s = { .stop_at = -1 };
    resp_cur c = { (const uint8_t *)buf, (const uint8_t *)buf + strlen(buf) };
    CU_ASSERT_EQUAL(resp_xread(&c, on_entry, &s), RESP_OK);
    CU_ASSERT_EQUAL((size_t)(c.p - (const uint8_t *)buf), strlen(XREAD));
    CU_ASSERT_EQUAL_FATAL(s.n, 3);
    CU_ASSERT_STRING_EQUAL(s.key[0], "m:1");
    CU_ASSERT_STRING_EQUAL(s.id[0], "5-0");
    CU_ASSERT_STRING_EQUAL(s.value[0], "hello");
    CU_ASSERT_STRING_EQUAL(s.id[1], "5-1");
    CU_ASSERT_STRING_EQUAL(s.value[1], "");
    CU_ASSERT_STRING_EQUAL(s.key[2], "m:2");
    CU_ASSERT_STRING_EQUAL(s.id[2], "1700000000000-7");
    CU_ASSERT_STRING_EQUAL(s.value[2], "x\r\ny"); /* a bulk body may hold CRLF */
}

static void test_resp_xread_split(void)
{
    /* a reply cut anywhere gives no entry and leaves the cursor alone */
    for (size_t cut = 0; cut < strlen(XREAD); cut++) {
        seen s = { .stop_at = -1 };
        resp_cur c = { (const uint8_t *)XREAD, (const uint8_t *)XREAD + cut };
        int rc = resp_xread(&c, on_entry, &s);
        CU_ASSERT_EQUAL(rc, RESP_MORE);
        CU_ASSERT_EQUAL(s.n, 0);
        CU_ASSERT_PTR_EQUAL(c.p, (const uint8_t *)XREAD);
        if (rc != RESP_MORE || s.n)
            printf("\n    cut at %zu: rc %d, %d entries\n", cut, rc, s.n);
    }
}

static void test_resp_xread_null(void)
{
    seen s = { .stop_at = -1 };
    resp_cur c = { (const uint8_t *)"*-1\r\n", NULL };
    c.end = c.p + 5;
    CU_ASSERT_EQUAL(resp_xread(&c, on_entry, &s), RESP_OK);
    CU_ASSERT_EQUAL(s.n, 0);
    CU_ASSERT_PTR_EQUAL(c.p, c.end);
}

static int xread_of(const char *text, seen *s)
{
    resp_cur c = { (const uint8_t *)text, (const uint8_t *)text + strlen(text) };
    return resp_xread(&c, on_entry, s);
}

static void test_resp_bad_shapes(void)
{
    seen s = { .stop_at = -1 };
    /* an entry with two fields */
    CU_ASSERT_EQUAL(xread_of("*1\r\n*2\r\n$1\r\nk\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*4\r\n$1\r\nb\r\n$1\r\nx\r\n"
                             "$1\r\nc\r\n$1\r\ny\r\n", &s), RESP_BAD);
    /* an id that is not <ms>-<seq> */
    CU_ASSERT_EQUAL(xread_of("*1\r\n*2\r\n$1\r\nk\r\n*1\r\n*2\r\n$3\r\n1_1\r\n*2\r\n$1\r\nb\r\n$1\r\nx\r\n",
                             &s), RESP_BAD);
    /* a stream without its entries */
    CU_ASSERT_EQUAL(xread_of("*1\r\n*1\r\n$1\r\nk\r\n", &s), RESP_BAD);
    /* an error or an integer where the reply should be */
    CU_ASSERT_EQUAL(xread_of("-ERR wrong\r\n", &s), RESP_BAD);
    CU_ASSERT_EQUAL(xread_of(":1\r\n", &s), RESP_BAD);
    /* not RESP at all */
    CU_ASSERT_EQUAL(xread_of("hello\r\n", &s), RESP_BAD);
    CU_ASSERT_EQUAL(xread_of("*x\r\n", &s), RESP_BAD);
    CU_ASSERT_EQUAL(xread_of("$3\r\nabcd\r\n", &s), RESP_BAD);
    CU_ASSERT_EQUAL(s.n, 0);
    /* the callback refusing an entry stops the walk */
    seen stop = { .stop_at = 1 };
    CU_ASSERT_EQUAL(xread_of(XREAD, &stop), RESP_BAD);
    CU_ASSERT_EQUAL(stop.n, 1);
}

static void test_resp_entries(void)
{
    /* XREVRANGE k + - COUNT 1: the last entry, or none */
    const char one[] = "*1\r\n*2\r\n$4\r\n42-3\r\n*2\r\n$1\r\nb\r\n$2\r\nhi\r\n";
    seen s = { .stop_at = -1 };
    resp_cur c = { (const uint8_t *)one, (const uint8_t *)one + strlen(one) };
    CU_ASSERT_EQUAL(resp_entries(&c, (const uint8_t *)"k", 1, on_entry, &s), RESP_OK);
    CU_ASSERT_EQUAL_FATAL(s.n, 1);
    CU_ASSERT_STRING_EQUAL(s.id[0], "42-3");
    CU_ASSERT_STRING_EQUAL(s.key[0], "k");
    CU_ASSERT_PTR_EQUAL(c.p, c.end);
    seen none = { .stop_at = -1 };
    resp_cur e = { (const uint8_t *)"*0\r\n", NULL };
    e.end = e.p + 4;
    CU_ASSERT_EQUAL(resp_entries(&e, NULL, 0, on_entry, &none), RESP_OK);
    CU_ASSERT_EQUAL(none.n, 0);
    resp_cur part = { (const uint8_t *)one, (const uint8_t *)one + 10 };
    CU_ASSERT_EQUAL(resp_entries(&part, NULL, 0, on_entry, &none), RESP_MORE);
    CU_ASSERT_EQUAL(none.n, 0);
}

static void test_resp_skip_depth(void)
{
    /* nesting deeper than RESP_MAX_DEPTH is refused, not followed */
    char deep[4 * (RESP_MAX_DEPTH + 2) + 8] = "";
    for (int i = 0; i < RESP_MAX_DEPTH + 2; i++)
        strcat(deep, "*1\r\n");
    strcat(deep, ":1\r\n");
    resp_cur c = { (const uint8_t *)deep, (const uint8_t *)deep + strlen(deep) };
    CU_ASSERT_EQUAL(resp_skip(&c), RESP_BAD);
    const char nulls[] = "*2\r\n$-1\r\n*-1\r\n";
    resp_cur ok = { (const uint8_t *)nulls, (const uint8_t *)nulls + strlen(nulls) };
    CU_ASSERT_EQUAL(resp_skip(&ok), RESP_OK); /* null bulk and null array */
    CU_ASSERT_PTR_EQUAL(ok.p, ok.end);
}

static void test_stream_ids(void)
{
    CU_ASSERT_TRUE(resp_stream_id_ok(S("0-0")));
    CU_ASSERT_TRUE(resp_stream_id_ok(S("1700000000000-18446744073709551615")));
    CU_ASSERT_FALSE(resp_stream_id_ok(S("")));
    CU_ASSERT_FALSE(resp_stream_id_ok(S("5")));
    CU_ASSERT_FALSE(resp_stream_id_ok(S("5-")));
    CU_ASSERT_FALSE(resp_stream_id_ok(S("-5")));
    CU_ASSERT_FALSE(resp_stream_id_ok(S("5-1-2")));
    CU_ASSERT_FALSE(resp_stream_id_ok(S("5-x")));
    CU_ASSERT_FALSE(resp_stream_id_ok(S("123456789012345678901-1"))); /* 21 digits */
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("bench_wire", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "NATS MSG with and without reply", test_nats_msg) ||
        !CU_add_test(s, "NATS items split anywhere are incomplete", test_nats_split) ||
        !CU_add_test(s, "NATS control lines", test_nats_control) ||
        !CU_add_test(s, "NATS protocol errors", test_nats_bad) ||
        !CU_add_test(s, "header status lines", test_nats_status) ||
        !CU_add_test(s, "JetStream API replies and publish acks", test_js_replies) ||
        !CU_add_test(s, "XREAD entries in order", test_resp_xread) ||
        !CU_add_test(s, "XREAD cut anywhere gives nothing yet", test_resp_xread_split) ||
        !CU_add_test(s, "XREAD null reply", test_resp_xread_null) ||
        !CU_add_test(s, "RESP of another shape is refused", test_resp_bad_shapes) ||
        !CU_add_test(s, "XREVRANGE: the last entry or none", test_resp_entries) ||
        !CU_add_test(s, "RESP nesting is bounded", test_resp_skip_depth) ||
        !CU_add_test(s, "stream ids", test_stream_ids)) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    return rc_test_run();
}
