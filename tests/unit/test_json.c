/*
 * JSON for WebSocket text messages (src/proto/json.c; the mapping is in
 * include/ringcast/json.h and proto/PROTOCOL.md §1.2): UTF-8 validation;
 * every request written as JSON against its MessagePack form; numbers,
 * strings, nesting, and text that is not one JSON object; every server
 * message as JSON, and back.
 *
 * Two messages are the same when rc_encode writes the same bytes for both:
 * the encoder writes every field a type carries, so this compares them all.
 */
#include "ringcast/json.h"

#include <CUnit/Basic.h>
#include "testutil.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S(x) rc_str_c(x)
#define TS UINT64_C(1700000000000)
#define DEEP 100000u /* levels of a text far past the nesting bound */

/* ------------------------------------------------------------------ */
/* Helpers                                                              */
/* ------------------------------------------------------------------ */

#define CHECK(cond, label)                                                                         \
    do {                                                                                           \
        bool ok_ = (cond);                                                                         \
        if (!ok_)                                                                                  \
            fprintf(stderr, "\n  FAIL %s: %s", (label), #cond);                                    \
        CU_ASSERT(ok_);                                                                            \
    } while (0)

/* One JSON text through rc_json_to_msgpack and then rc_decode. The decoded
 * message points into mp, so it lives until the next run. */
typedef struct json_run {
    rc_buf mp;       /* the MessagePack map rc_json_to_msgpack wrote */
    rc_decoder dec;  /* a server's (requests) or a client's */
    rc_msg m;        /* what rc_decode made of mp */
    rc_err conv;     /* rc_json_to_msgpack's answer */
    rc_err code;     /* rc_decode's, when conv is RC_OK */
    const char *why; /* the reason the last failing step gave */
} json_run;

static void run_init(json_run *r, bool requests)
{
    memset(r, 0, sizeof(*r));
    rc_buf_init(&r->mp);
    if (requests)
        rc_decoder_init_requests(&r->dec);
    else
        rc_decoder_init(&r->dec);
}

static void run_free(json_run *r)
{
    rc_buf_free(&r->mp);
    rc_decoder_free(&r->dec);
}

/* The first error of the two steps, or RC_OK. */
static rc_err run_json(json_run *r, const char *text, size_t len)
{
    r->mp.len = 0;
    r->why = NULL;
    r->code = RC_E_COUNT;
    r->conv = rc_json_to_msgpack(text, len, &r->mp, &r->why);
    CU_ASSERT_PTR_NOT_NULL(r->why);
    if (r->conv != RC_OK) {
        CU_ASSERT(r->why && r->why[0]);
        CU_ASSERT_EQUAL(r->mp.len, 0);
        return r->conv;
    }
    r->code = rc_decode(&r->dec, r->mp.data, r->mp.len, &r->m, &r->why);
    return r->code;
}

#define RUN(r, lit) run_json((r), (lit), sizeof(lit) - 1)

/* rc_encode's payload for m (the frame without its length prefix). */
static void encode_payload(rc_buf *b, const rc_msg *m)
{
    b->len = 0;
    CU_ASSERT_EQUAL_FATAL(rc_encode(b, m), 0);
    memmove(b->data, b->data + RC_FRAME_HEADER, b->len - RC_FRAME_HEADER);
    b->len -= RC_FRAME_HEADER;
}

static bool bytes_same(const rc_buf *a, const rc_buf *b)
{
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

static bool same_msg(const rc_msg *a, const rc_msg *b)
{
    rc_buf ea, eb;
    rc_buf_init(&ea);
    rc_buf_init(&eb);
    encode_payload(&ea, a);
    encode_payload(&eb, b);
    bool same = bytes_same(&ea, &eb);
    rc_buf_free(&ea);
    rc_buf_free(&eb);
    return same;
}

/* The JSON rc_msgpack_to_json writes for m's frame, as a malloc'd C string
 * (NULL when it fails). */
static char *server_json(const rc_msg *m)
{
    rc_buf mp, js;
    rc_buf_init(&mp);
    rc_buf_init(&js);
    encode_payload(&mp, m);
    char *s = NULL;
    if (rc_msgpack_to_json(mp.data, mp.len, &js) == 0 && (s = malloc(js.len + 1))) {
        memcpy(s, js.data, js.len);
        s[js.len] = '\0';
    }
    rc_buf_free(&mp);
    rc_buf_free(&js);
    return s;
}

/* rc_msgpack_to_json of the len bytes at p: the text (malloc'd) or NULL. */
static char *raw_json(const char *p, size_t len)
{
    rc_buf js;
    rc_buf_init(&js);
    char *s = NULL;
    if (rc_msgpack_to_json((const uint8_t *)p, len, &js) == 0 && (s = malloc(js.len + 1))) {
        memcpy(s, js.data, js.len);
        s[js.len] = '\0';
    }
    rc_buf_free(&js);
    return s;
}

#define RAW_JSON(lit) raw_json((lit), sizeof(lit) - 1)

/* Checks that the len bytes at p convert to the MessagePack bytes want. */
static void check_bytes(const char *json, const char *want, size_t want_len)
{
    rc_buf b;
    rc_buf_init(&b);
    const char *why = NULL;
    rc_err e = rc_json_to_msgpack(json, strlen(json), &b, &why);
    CHECK(e == RC_OK, json);
    CHECK(b.len == want_len && memcmp(b.data, want, want_len) == 0, json);
    rc_buf_free(&b);
}

#define CHECK_BYTES(json, lit) check_bytes((json), (lit), sizeof(lit) - 1)

/* ------------------------------------------------------------------ */
/* UTF-8                                                                */
/* ------------------------------------------------------------------ */

typedef struct utf8_case {
    const char *bytes;
    size_t len;
    bool valid;
    const char *what;
} utf8_case;

#define U8(lit, valid, what) { (lit), sizeof(lit) - 1, (valid), (what) }

static void test_utf8(void)
{
    static const utf8_case cases[] = {
        U8("", true, "empty"),
        U8("plain ASCII, longer than one eight-byte word", true, "ASCII"),
        U8("a\0b", true, "NUL is a character"),
        U8("\x7f", true, "U+007F"),
        U8("\xc2\x80", true, "U+0080, first two-byte"),
        U8("\xdf\xbf", true, "U+07FF, last two-byte"),
        U8("\xe0\xa0\x80", true, "U+0800, first three-byte"),
        U8("\xed\x9f\xbf", true, "U+D7FF, below the surrogates"),
        U8("\xee\x80\x80", true, "U+E000, above the surrogates"),
        U8("\xef\xbf\xbf", true, "U+FFFF"),
        U8("\xf0\x90\x80\x80", true, "U+10000, first four-byte"),
        U8("\xf4\x8f\xbf\xbf", true, "U+10FFFF, the last"),
        U8("h\xc3\xa9llo w\xc3\xb6rld \xf0\x9f\x98\x80 \xe2\x82\xac", true, "mixed"),
        U8("\xc0\x80", false, "overlong NUL"),
        U8("\xc1\xbf", false, "overlong U+007F"),
        U8("\xe0\x9f\xbf", false, "overlong U+07FF"),
        U8("\xf0\x8f\xbf\xbf", false, "overlong U+FFFF"),
        U8("\xed\xa0\x80", false, "U+D800, a surrogate"),
        U8("\xed\xbf\xbf", false, "U+DFFF, a surrogate"),
        U8("\xed\xa0\xbd\xed\xb8\x80", false, "a surrogate pair written as UTF-8 (CESU-8)"),
        U8("\xf4\x90\x80\x80", false, "U+110000"),
        U8("\xf5\x80\x80\x80", false, "F5 first byte"),
        U8("\xff", false, "FF"),
        U8("\xfe", false, "FE"),
        U8("\x80", false, "a lone continuation byte"),
        U8("abc\xbf", false, "a continuation byte after ASCII"),
        U8("\xc3", false, "two-byte cut short"),
        U8("\xe2\x82", false, "three-byte cut short"),
        U8("\xf0\x9f\x98", false, "four-byte cut short"),
        U8("\xc3\x28", false, "a second byte that is not a continuation"),
        U8("\xe2\x28\xa1", false, "a second byte that is not a continuation, three-byte"),
        U8("0123456789abcde\xff", false, "bad byte after two ASCII words"),
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECK(rc_utf8_valid(cases[i].bytes, cases[i].len) == cases[i].valid, cases[i].what);
}

/* ------------------------------------------------------------------ */
/* Requests: JSON against the MessagePack form                          */
/* ------------------------------------------------------------------ */

typedef struct request_case {
    const char *json; /* keys in rc_encode's order, so the bytes match too */
    rc_msg m;
} request_case;

static void test_requests(void)
{
    static const request_case cases[] = {
        { "{\"t\":\"hello\",\"user\":\"alice\"}", { .type = RC_T_HELLO, .user = { "alice", 5 } } },
        { "{\"t\":\"hello\",\"rid\":1,\"user\":\"alice\",\"token\":\"s3cret\"}",
          { .type = RC_T_HELLO, .has = RC_HAS_RID | RC_HAS_TOKEN, .rid = 1, .user = { "alice", 5 },
            .token = { "s3cret", 6 } } },
        { "{\"t\":\"hello\",\"user\":\"a\",\"token\":\"\"}",
          { .type = RC_T_HELLO, .has = RC_HAS_TOKEN, .user = { "a", 1 }, .token = { "", 0 } } },
        { "{\"t\":\"join\",\"g\":\"room\"}", { .type = RC_T_JOIN, .g = { "room", 4 } } },
        { "{\"t\":\"join\",\"rid\":2,\"g\":\"room\",\"since\":18446744073709551615}",
          { .type = RC_T_JOIN, .has = RC_HAS_RID | RC_HAS_SINCE, .rid = 2, .g = { "room", 4 },
            .since = UINT64_MAX } },
        { "{\"t\":\"join\",\"g\":\"r\",\"since\":0}",
          { .type = RC_T_JOIN, .has = RC_HAS_SINCE, .g = { "r", 1 }, .since = 0 } },
        { "{\"t\":\"leave\",\"rid\":3,\"g\":\"room\"}",
          { .type = RC_T_LEAVE, .has = RC_HAS_RID, .rid = 3, .g = { "room", 4 } } },
        { "{\"t\":\"send\",\"g\":\"room\",\"body\":\"hello\"}",
          { .type = RC_T_SEND, .g = { "room", 4 }, .body = { "hello", 5 }, .body_is_str = true } },
        { "{\"t\":\"send\",\"rid\":4,\"g\":\"caf\\u00e9\",\"body\":\"h\\u00e9llo \\ud83d\\ude00\",\"mid\":\"c-1\"}",
          { .type = RC_T_SEND, .has = RC_HAS_RID | RC_HAS_MID, .rid = 4, .g = { "caf\xc3\xa9", 5 },
            .body = { "h\xc3\xa9llo \xf0\x9f\x98\x80", 11 }, .body_is_str = true, .mid = { "c-1", 3 } } },
        { "{\"t\":\"send\",\"g\":\"room\",\"body\":\"\"}",
          { .type = RC_T_SEND, .g = { "room", 4 }, .body = { "", 0 }, .body_is_str = true } },
        { "{\"t\":\"hist\",\"g\":\"room\"}", { .type = RC_T_HIST, .g = { "room", 4 } } },
        { "{\"t\":\"hist\",\"rid\":5,\"g\":\"room\",\"before\":500,\"limit\":1000}",
          { .type = RC_T_HIST, .has = RC_HAS_RID | RC_HAS_BEFORE | RC_HAS_LIMIT, .rid = 5, .g = { "room", 4 },
            .before = 500, .limit = RC_MAX_HIST_LIMIT } },
        { "{\"t\":\"ping\"}", { .type = RC_T_PING } },
        { "{\"t\":\"ping\",\"rid\":18446744073709551615}", { .type = RC_T_PING, .has = RC_HAS_RID, .rid = UINT64_MAX } },
        { "{\"t\":\"pong\",\"rid\":7}", { .type = RC_T_PONG, .has = RC_HAS_RID, .rid = 7 } },
        { "{\"t\":\"replay\",\"rid\":6,\"g\":\"room\",\"body\":\"x\",\"mid\":\"c-9\",\"seq\":9,\"ts\":1700000000000,"
          "\"from\":\"alice\",\"reason\":\"slow_consumer\",\"to\":\"bob\"}",
          { .type = RC_T_REPLAY, .has = RC_HAS_RID | RC_HAS_SEQ | RC_HAS_TO | RC_HAS_MID, .rid = 6,
            .g = { "room", 4 }, .seq = 9, .from = { "alice", 5 }, .to = { "bob", 3 }, .ts = TS,
            .mid = { "c-9", 3 }, .body = { "x", 1 }, .body_is_str = true, .reason = { "slow_consumer", 13 } } },
    };
    json_run r;
    run_init(&r, true);
    rc_buf want;
    rc_buf_init(&want);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const request_case *c = &cases[i];
        CHECK(run_json(&r, c->json, strlen(c->json)) == RC_OK, c->json);
        if (r.code != RC_OK)
            continue;
        CHECK(same_msg(&r.m, &c->m), c->json);
        encode_payload(&want, &c->m);
        CHECK(bytes_same(&r.mp, &want), c->json); /* the very bytes a binary client would send */
    }
    rc_buf_free(&want);
    run_free(&r);
}

/* Key order, whitespace, keys the type does not define, and a key twice. */
static void test_request_shapes(void)
{
    json_run r;
    run_init(&r, true);
    rc_msg want = { .type = RC_T_JOIN, .has = RC_HAS_RID | RC_HAS_SINCE, .rid = 9, .g = S("room"), .since = 41 };
    CU_ASSERT_EQUAL(RUN(&r, " \t\r\n{ \"since\" : 41 ,\n\t\"g\":\"room\", \"rid\":9,\"t\" :\"join\" } \n"), RC_OK);
    CU_ASSERT(same_msg(&r.m, &want));
    CU_ASSERT_EQUAL(RUN(&r, "{\"t\":\"join\",\"g\":\"room\",\"rid\":9,\"since\":41,\"x\":{\"deep\":[1,-2,3.5,\"s\","
                            "null,true,false,{}]},\"user\":17,\"body\":[]}"),
                    RC_OK);
    CU_ASSERT(same_msg(&r.m, &want));
    /* a key twice is passed on twice, and the codec reports it (§2) */
    CU_ASSERT_EQUAL(RUN(&r, "{\"t\":\"ping\",\"t\":\"ping\"}"), RC_E_BAD_FIELD);
    CU_ASSERT_EQUAL(r.conv, RC_OK);
    CU_ASSERT_EQUAL(RUN(&r, "{\"t\":\"leave\",\"rid\":1,\"g\":\"a\",\"g\":\"a\"}"), RC_E_BAD_FIELD);
    CU_ASSERT(r.m.has & RC_HAS_RID);
    /* the codec's other answers come through as they are */
    CU_ASSERT_EQUAL(RUN(&r, "{}"), RC_E_MISSING_FIELD);
    CU_ASSERT_EQUAL(RUN(&r, "{\"t\":1}"), RC_E_BAD_FIELD);
    CU_ASSERT_EQUAL(RUN(&r, "{\"t\":\"nope\",\"rid\":3}"), RC_E_UNKNOWN_TYPE);
    CU_ASSERT_EQUAL(r.m.rid, 3);
    CU_ASSERT_EQUAL(RUN(&r, "{\"t\":\"send\",\"rid\":4,\"g\":\"room\"}"), RC_E_MISSING_FIELD);
    CU_ASSERT_EQUAL(RUN(&r, "{\"t\":\"join\",\"g\":\"room\",\"since\":null}"), RC_E_BAD_FIELD);   /* nil is not absent */
    CU_ASSERT_EQUAL(RUN(&r, "{\"t\":\"join\",\"g\":\"room\",\"since\":true}"), RC_E_BAD_FIELD);
    CU_ASSERT_EQUAL(RUN(&r, "{\"t\":\"join\",\"g\":\"room\",\"since\":\"5\"}"), RC_E_BAD_FIELD);
    CU_ASSERT_EQUAL(RUN(&r, "{\"t\":\"send\",\"g\":\"room\",\"body\":[104,105]}"), RC_E_BAD_FIELD);
    CU_ASSERT_EQUAL(RUN(&r, "{\"t\":\"hist\",\"g\":\"room\",\"limit\":1001}"), RC_E_BAD_FIELD);
    CU_ASSERT_EQUAL(RUN(&r, "{\"t\":\"hello\",\"user\":\"\"}"), RC_E_BAD_FIELD);
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* Numbers                                                              */
/* ------------------------------------------------------------------ */

static void test_numbers_exact(void)
{
    static const struct {
        const char *json;
        uint64_t rid;
    } cases[] = {
        { "{\"t\":\"ping\",\"rid\":0}", 0 },
        { "{\"t\":\"ping\",\"rid\":-0}", 0 },
        { "{\"t\":\"ping\",\"rid\":127}", 127 },
        { "{\"t\":\"ping\",\"rid\":4294967296}", UINT64_C(4294967296) },
        { "{\"t\":\"ping\",\"rid\":9007199254740992}", UINT64_C(9007199254740992) },  /* 2^53 */
        { "{\"t\":\"ping\",\"rid\":9007199254740993}", UINT64_C(9007199254740993) },  /* 2^53+1: no double holds it */
        { "{\"t\":\"ping\",\"rid\":9223372036854775808}", UINT64_C(9223372036854775808) }, /* 2^63 */
        { "{\"t\":\"ping\",\"rid\":18446744073709551614}", UINT64_MAX - 1 },
        { "{\"t\":\"ping\",\"rid\":18446744073709551615}", UINT64_MAX },
    };
    json_run r;
    run_init(&r, true);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK(run_json(&r, cases[i].json, strlen(cases[i].json)) == RC_OK, cases[i].json);
        CHECK(r.m.has == RC_HAS_RID && r.m.rid == cases[i].rid, cases[i].json);
    }
    run_free(&r);

    /* the MessagePack each number becomes: shortest uint, shortest int, float64 */
    CHECK_BYTES("{\"a\":0}", "\x81\xa1" "a" "\x00");
    CHECK_BYTES("{\"a\":255}", "\x81\xa1" "a" "\xcc\xff");
    CHECK_BYTES("{\"a\":18446744073709551615}", "\x81\xa1" "a" "\xcf\xff\xff\xff\xff\xff\xff\xff\xff");
    CHECK_BYTES("{\"a\":-1}", "\x81\xa1" "a" "\xff");
    CHECK_BYTES("{\"a\":-33}", "\x81\xa1" "a" "\xd0\xdf");
    CHECK_BYTES("{\"a\":-129}", "\x81\xa1" "a" "\xd1\xff\x7f");
    CHECK_BYTES("{\"a\":-9223372036854775808}", "\x81\xa1" "a" "\xd3\x80\x00\x00\x00\x00\x00\x00\x00");
    CHECK_BYTES("{\"a\":1.5}", "\x81\xa1" "a" "\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00");
    CHECK_BYTES("{\"a\":1.0}", "\x81\xa1" "a" "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00");
    CHECK_BYTES("{\"a\":1e0}", "\x81\xa1" "a" "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00");
    CHECK_BYTES("{\"a\":-0.0}", "\x81\xa1" "a" "\xcb\x80\x00\x00\x00\x00\x00\x00\x00");
    CHECK_BYTES("{\"a\":18446744073709551616}", "\x81\xa1" "a" "\xcb\x43\xf0\x00\x00\x00\x00\x00\x00"); /* 2^64 */
    CHECK_BYTES("{\"a\":-9223372036854775809}", "\x81\xa1" "a" "\xcb\xc3\xe0\x00\x00\x00\x00\x00\x00");
    CHECK_BYTES("{\"a\":[true,false,null]}", "\x81\xa1" "a" "\x93\xc3\xc2\xc0");
}

/* Numbers that are not uints where the protocol wants one: E_BAD_FIELD, as
 * for the same values in MessagePack, with the rid echoed when it was read. */
static void test_numbers_not_uint(void)
{
    static const char *const bad_since[] = {
        "{\"t\":\"join\",\"rid\":5,\"g\":\"room\",\"since\":-1}",
        "{\"t\":\"join\",\"rid\":5,\"g\":\"room\",\"since\":-9223372036854775809}",
        "{\"t\":\"join\",\"rid\":5,\"g\":\"room\",\"since\":1.0}",
        "{\"t\":\"join\",\"rid\":5,\"g\":\"room\",\"since\":0.5}",
        "{\"t\":\"join\",\"rid\":5,\"g\":\"room\",\"since\":1e3}",
        "{\"t\":\"join\",\"rid\":5,\"g\":\"room\",\"since\":1E+2}",
        "{\"t\":\"join\",\"rid\":5,\"g\":\"room\",\"since\":18446744073709551616}",
        "{\"t\":\"join\",\"rid\":5,\"g\":\"room\",\"since\":1e400}",
        "{\"t\":\"join\",\"rid\":5,\"g\":\"room\",\"since\":99999999999999999999999999999999999999}",
    };
    json_run r;
    run_init(&r, true);
    for (size_t i = 0; i < sizeof(bad_since) / sizeof(bad_since[0]); i++) {
        CHECK(run_json(&r, bad_since[i], strlen(bad_since[i])) == RC_E_BAD_FIELD && r.conv == RC_OK, bad_since[i]);
        CHECK((r.m.has & RC_HAS_RID) && r.m.rid == 5, bad_since[i]);
    }
    /* a rid that is not a uint is itself bad: no rid to echo */
    CU_ASSERT_EQUAL(RUN(&r, "{\"t\":\"ping\",\"rid\":-1}"), RC_E_BAD_FIELD);
    CU_ASSERT_FALSE(r.m.has & RC_HAS_RID);
    CU_ASSERT_EQUAL(RUN(&r, "{\"t\":\"ping\",\"rid\":18446744073709551616}"), RC_E_BAD_FIELD);
    CU_ASSERT_FALSE(r.m.has & RC_HAS_RID);
    CU_ASSERT_EQUAL(RUN(&r, "{\"t\":\"ping\",\"rid\":7.0}"), RC_E_BAD_FIELD);
    CU_ASSERT_FALSE(r.m.has & RC_HAS_RID);
    run_free(&r);
}

/* Number text RFC 8259 does not allow: E_BAD_FRAME, like any text that is
 * not JSON, even where cJSON alone would take it. */
static void test_numbers_syntax(void)
{
    static const char *const bad[] = {
        "{\"a\":01}", "{\"a\":-01}", "{\"a\":00}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":+1}", "{\"a\":-}",
        "{\"a\":1e}", "{\"a\":1e+}", "{\"a\":1.e5}", "{\"a\":0x10}", "{\"a\":1.5.5}", "{\"a\":1e5e5}",
        "{\"a\":NaN}", "{\"a\":Infinity}", "{\"a\":-Infinity}", "{\"a\":--1}", "{\"a\":1-}",
    };
    json_run r;
    run_init(&r, true);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(run_json(&r, bad[i], strlen(bad[i])) == RC_E_BAD_FRAME, bad[i]);
    /* a long number is read whole (Debian's cJSON has no bound of its own on its length) */
    char text[1024];
    snprintf(text, sizeof(text), "{\"t\":\"ping\",\"x\":[0.%0300d,%0300d]}", 1, 0);
    CHECK(run_json(&r, text, strlen(text)) == RC_E_BAD_FRAME, "leading zeros, 300 of them");
    snprintf(text, sizeof(text), "{\"t\":\"ping\",\"x\":0.%0300d}", 1);
    CHECK(run_json(&r, text, strlen(text)) == RC_OK, "300 digits");
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* Strings                                                              */
/* ------------------------------------------------------------------ */

static void test_strings(void)
{
    json_run r;
    run_init(&r, true);
    CU_ASSERT_EQUAL(RUN(&r, "{\"t\":\"send\",\"g\":\"room\",\"body\":\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t "
                            "\\u0041\\u00e9\\u20ac\\uD83D\\uDE00 raw \xc3\xa9\xf0\x9f\x98\x80\"}"),
                    RC_OK);
    const char want[] = "q\" b\\ s/ \b\f\n\r\t A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 raw \xc3\xa9\xf0\x9f\x98\x80";
    CU_ASSERT(rc_str_eq(r.m.body, (rc_str){ want, sizeof(want) - 1 }));
    CU_ASSERT(r.m.body_is_str);

    /* \u0000 is the byte 0x00: data in a body, E_BAD_FIELD in a name (§2.1) */
    CU_ASSERT_EQUAL(RUN(&r, "{\"t\":\"send\",\"g\":\"room\",\"body\":\"a\\u0000b\\u0000\"}"), RC_OK);
    CU_ASSERT(rc_str_eq(r.m.body, (rc_str){ "a\0b\0", 4 }));
    CU_ASSERT_EQUAL(RUN(&r, "{\"t\":\"join\",\"g\":\"ro\\u0000om\"}"), RC_E_BAD_FIELD);
    CU_ASSERT_EQUAL(r.conv, RC_OK);

    /* bounds are bytes: 64 two-byte characters are 128 bytes, too long for a user */
    char text[1024] = "{\"t\":\"hello\",\"user\":\"";
    for (int i = 0; i < 64; i++)
        strcat(text, "\\u00e9");
    strcat(text, "\"}");
    CU_ASSERT_EQUAL(run_json(&r, text, strlen(text)), RC_E_BAD_FIELD);

    static const char *const bad[] = {
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"\\x\"}",
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"\\'\"}",
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"\\u12\"}",
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"\\uZZZZ\"}",      /* cJSON alone reads U+0000 */
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"\\u00g1\"}",
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"\\ud800\"}",      /* a high surrogate alone */
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"\\udc00\"}",      /* a low surrogate alone */
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"\\ud800\\u0041\"}",
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"\\ud800\\ud800\"}",
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"\\udbff\"}",
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"tab\there\"}",  /* a raw control byte */
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"nl\nhere\"}",
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"\x1f\"}",
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"unterminated}",
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"ends in a backslash\\",
        "{\"t\":\"send\",\"g\":\"room\",\"body\":'single quotes'}",
        "{\"t\x01\":\"ping\"}",                                    /* in a key too */
        "{\"t\\u\":\"ping\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(run_json(&r, bad[i], strlen(bad[i])) == RC_E_BAD_FRAME, bad[i]);

    /* a raw NUL inside a string is a control byte */
    static const char nul_in_string[] = "{\"t\":\"send\",\"g\":\"room\",\"body\":\"a\0b\"}";
    CU_ASSERT_EQUAL(run_json(&r, nul_in_string, sizeof(nul_in_string) - 1), RC_E_BAD_FRAME);
    run_free(&r);
}

/* ------------------------------------------------------------------ */
/* Structure: nesting, text that is not one object                      */
/* ------------------------------------------------------------------ */

/* {"t":"ping","x":[[...]]}, levels deep in all (the object is level 1, levels >= 2). */
static char *nested_arrays(unsigned levels)
{
    size_t n = levels - 1;
    char *s = malloc(2 * n + 32);
    if (!s)
        return NULL;
    size_t k = (size_t)sprintf(s, "{\"t\":\"ping\",\"x\":");
    memset(s + k, '[', n);
    memset(s + k + n, ']', n);
    k += 2 * n;
    s[k++] = '}';
    s[k] = '\0';
    return s;
}

/* {"t":"ping","x":{"a":1,"x":{...}}}, levels deep in all (levels >= 1). */
static char *nested_objects(unsigned levels)
{
    char *s = malloc(16u * levels + 32); /* 12 bytes a level */
    if (!s)
        return NULL;
    size_t k = (size_t)sprintf(s, "{\"t\":\"ping\"");
    for (unsigned i = 1; i < levels; i++)
        k += (size_t)sprintf(s + k, ",\"x\":{\"a\":1");
    for (unsigned i = 1; i < levels; i++)
        s[k++] = '}';
    s[k++] = '}';
    s[k] = '\0';
    return s;
}

static void test_nesting(void)
{
    json_run r;
    run_init(&r, true);
    static const struct {
        unsigned levels;
        rc_err want;
    } cases[] = { { 2, RC_OK }, { 31, RC_OK }, { 32, RC_OK }, { 33, RC_E_BAD_FRAME }, { 1000, RC_E_BAD_FRAME },
                  { 1001, RC_E_BAD_FRAME }, { DEEP, RC_E_BAD_FRAME } };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char label[64];
        snprintf(label, sizeof(label), "arrays %u levels deep", cases[i].levels);
        char *s = nested_arrays(cases[i].levels);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        CHECK(run_json(&r, s, strlen(s)) == cases[i].want, label);
        free(s);
        snprintf(label, sizeof(label), "objects %u levels deep", cases[i].levels);
        s = nested_objects(cases[i].levels);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        CHECK(run_json(&r, s, strlen(s)) == cases[i].want, label);
        free(s);
    }
    /* brackets inside strings are not nesting */
    char *s = malloc(2 * DEEP + 64);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    size_t k = (size_t)sprintf(s, "{\"t\":\"ping\",\"x\":\"");
    for (unsigned i = 0; i < DEEP; i++)
        s[k++] = i % 2 ? '{' : '[';
    k += (size_t)sprintf(s + k, "\\\"[\"}");
    CU_ASSERT_EQUAL(run_json(&r, s, k), RC_OK);
    free(s);
    /* a wide array is not deep */
    enum { WIDE = 30000 };
    s = malloc(2 * WIDE + 64);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    k = (size_t)sprintf(s, "{\"t\":\"ping\",\"x\":[0");
    for (unsigned i = 1; i < WIDE; i++)
        k += (size_t)sprintf(s + k, ",%u", i % 10);
    k += (size_t)sprintf(s + k, "]}");
    CU_ASSERT_EQUAL(run_json(&r, s, k), RC_OK);
    free(s);
    run_free(&r);
}

static void test_not_one_object(void)
{
    static const char *const bad[] = {
        "[]", "[{\"t\":\"ping\"}]", "\"ping\"", "1", "-1", "true", "false", "null", " ", "\n\t ",
        "hello", "{", "}", "{\"t\"", "{\"t\":", "{\"t\":\"ping\"", "{\"t\":}", "{\"t\" \"ping\"}",
        "{\"t\":\"ping\",}", "{,\"t\":\"ping\"}", "{t:\"ping\"}", "{'t':'ping'}", "{\"t\":\"ping\"}}",
        "{\"t\":\"ping\"} {\"t\":\"ping\"}", "{\"t\":\"ping\"}{}", "{\"t\":\"ping\"} x", "{\"t\":\"ping\"},",
        "{\"t\":\"ping\"} // comment", "/* c */ {\"t\":\"ping\"}", "{\"t\":\"ping\",\"x\":[1,]}",
        "{\"t\":\"ping\",\"x\":[,1]}", "{\"t\":\"ping\",\"x\":tru}", "{\"t\":\"ping\",\"x\":nul}",
        "{\"t\":\"ping\",\"x\":True}", "{\"t\":\"ping\",\"x\":undefined}", "{1:2}", "{\"t\":\"ping\",\"x\":[1 2]}",
        "\xef\xbb\xbf{\"t\":\"ping\"}",   /* a byte order mark: cJSON alone skips it */
        "{\x01\"t\":\"ping\"}",           /* a control byte where whitespace goes: cJSON alone skips it */
        "{\"t\":\"ping\"\x0b}", "{\"t\":\"ping\"}\x0c", "\x1f{\"t\":\"ping\"}",
        "{\"t\":\"ping\",\"x\":\302\2401}", /* U+00A0 is not JSON whitespace */
    };
    json_run r;
    run_init(&r, true);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(run_json(&r, bad[i], strlen(bad[i])) == RC_E_BAD_FRAME, bad[i]);
    CU_ASSERT_EQUAL(run_json(&r, "", 0), RC_E_BAD_FRAME);
    CU_ASSERT_EQUAL(run_json(&r, NULL, 0), RC_E_BAD_FRAME);
    static const char nul_between[] = "{\"t\":\"ping\"\0}";
    CU_ASSERT_EQUAL(run_json(&r, nul_between, sizeof(nul_between) - 1), RC_E_BAD_FRAME);
    static const char nul_after[] = "{\"t\":\"ping\"}\0";
    CU_ASSERT_EQUAL(run_json(&r, nul_after, sizeof(nul_after) - 1), RC_E_BAD_FRAME);
    /* only len bytes are read: the same text cut short is not an object */
    static const char ping[] = "{\"t\":\"ping\"}";
    CU_ASSERT_EQUAL(run_json(&r, ping, sizeof(ping) - 2), RC_E_BAD_FRAME);
    CU_ASSERT_EQUAL(run_json(&r, ping, sizeof(ping) - 1), RC_OK);
    run_free(&r);
}

static void test_not_utf8(void)
{
    static const char *const bad[] = {
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"\xff\"}",
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"\xc0\x80\"}",         /* overlong NUL */
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"\xed\xa0\x80\"}",     /* a surrogate */
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"\xf4\x90\x80\x80\"}", /* above U+10FFFF */
        "{\"t\":\"send\",\"g\":\"room\",\"body\":\"\xe2\x82\"}",         /* cut short */
        "{\"t\":\"ping\"}\x80",
        "\xfe\xff{}",
    };
    json_run r;
    run_init(&r, true);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(!rc_utf8_valid(bad[i], strlen(bad[i])), bad[i]);
        CHECK(run_json(&r, bad[i], strlen(bad[i])) == RC_E_BAD_FRAME, bad[i]);
    }
    run_free(&r);
}

/* Output is appended; a failure leaves what was there. */
static void test_append(void)
{
    rc_buf b;
    rc_buf_init(&b);
    CU_ASSERT_EQUAL_FATAL(rc_buf_append(&b, "xyz", 3), 0);
    const char *why = NULL;
    CU_ASSERT_EQUAL(rc_json_to_msgpack("{\"t\":\"ping\"}", 12, &b, &why), RC_OK);
    CU_ASSERT(b.len == 3 + 8 && memcmp(b.data, "xyz\x81\xa1t\xa4ping", 11) == 0);
    CU_ASSERT_EQUAL(rc_json_to_msgpack("{\"t\":\"ping\",\"x\":[01]}", 21, &b, &why), RC_E_BAD_FRAME);
    CU_ASSERT_EQUAL(rc_json_to_msgpack("{\"t\":\"ping\",\"x\":[1]", 19, &b, NULL), RC_E_BAD_FRAME);
    CU_ASSERT_EQUAL(b.len, 11);
    CU_ASSERT_EQUAL(rc_msgpack_to_json((const uint8_t *)"\x81\xa1t\xa4ping", 8, &b), 0);
    CU_ASSERT(b.len == 11 + 12 && memcmp(b.data + 11, "{\"t\":\"ping\"}", 12) == 0);
    CU_ASSERT_EQUAL(rc_msgpack_to_json((const uint8_t *)"\x81\xa1t\xa4ping", 7, &b), -1);
    CU_ASSERT_EQUAL(b.len, 23);
    rc_buf_free(&b);
}

/* ------------------------------------------------------------------ */
/* Server messages to JSON, and back                                    */
/* ------------------------------------------------------------------ */

typedef struct server_case {
    rc_msg m;
    const char *json;
} server_case;

static rc_msg msg_of(uint64_t seq, rc_str body, bool body_is_str, bool with_mid)
{
    rc_msg m = { .type = RC_T_MSG, .has = RC_HAS_SEQ, .g = S("room"), .seq = seq, .from = S("alice"),
                 .ts = TS + seq, .body = body, .body_is_str = body_is_str };
    if (with_mid) {
        m.has |= RC_HAS_MID;
        m.mid = S("c-1");
    }
    return m;
}

static void test_server_messages(void)
{
    rc_msg three[3] = { msg_of(1, S("hi"), true, false), msg_of(2, (rc_str){ "\x00\x01\xff", 3 }, false, true),
                        msg_of(3, S("caf\xc3\xa9"), false, true) };
    const server_case cases[] = {
        { { .type = RC_T_WELCOME, .has = RC_HAS_RID, .rid = 1, .sid = 42, .srv = S("ringcast/0.1.0"),
            .max_frame = RC_DEFAULT_MAX_FRAME },
          "{\"t\":\"welcome\",\"rid\":1,\"srv\":\"ringcast/0.1.0\",\"sid\":42,\"max_frame\":65536}" },
        { { .type = RC_T_JOINED, .has = RC_HAS_RID | RC_HAS_SEQ, .rid = 2, .g = S("room"), .seq = 0 },
          "{\"t\":\"joined\",\"rid\":2,\"g\":\"room\",\"seq\":0}" },
        { { .type = RC_T_SYNCED, .has = RC_HAS_SEQ, .g = S("room"), .seq = 42, .lost = true },
          "{\"t\":\"synced\",\"g\":\"room\",\"seq\":42,\"lost\":true}" },
        { { .type = RC_T_SYNCED, .has = RC_HAS_RID | RC_HAS_SEQ, .rid = 3, .g = S("room"), .seq = 7, .more = true },
          "{\"t\":\"synced\",\"rid\":3,\"g\":\"room\",\"seq\":7,\"lost\":false,\"more\":true}" },
        { { .type = RC_T_LEFT, .has = RC_HAS_RID, .rid = 3, .g = S("room") }, "{\"t\":\"left\",\"rid\":3,\"g\":\"room\"}" },
        { { .type = RC_T_ACK, .has = RC_HAS_RID | RC_HAS_SEQ, .rid = UINT64_MAX, .g = S("room"), .seq = 1, .ts = TS },
          "{\"t\":\"ack\",\"rid\":18446744073709551615,\"g\":\"room\",\"seq\":1,\"ts\":1700000000000}" },
        { { .type = RC_T_ACK, .has = RC_HAS_RID | RC_HAS_SEQ | RC_HAS_DUP, .rid = 4, .g = S("room"), .seq = 1,
            .ts = TS, .dup = true },
          "{\"t\":\"ack\",\"rid\":4,\"g\":\"room\",\"seq\":1,\"ts\":1700000000000,\"dup\":true}" },
        { msg_of(1, S("hi there"), true, false),
          "{\"t\":\"msg\",\"g\":\"room\",\"body\":\"hi there\",\"seq\":1,\"ts\":1700000000001,\"from\":\"alice\"}" },
        { msg_of(UINT64_MAX, S(""), true, true),
          "{\"t\":\"msg\",\"g\":\"room\",\"body\":\"\",\"mid\":\"c-1\",\"seq\":18446744073709551615,"
          "\"ts\":1699999999999,\"from\":\"alice\"}" },
        /* a bin body that is UTF-8 is a string; one that is not is base64 under body_b64 */
        { msg_of(2, S("caf\xc3\xa9 \xf0\x9f\x98\x80"), false, false),
          "{\"t\":\"msg\",\"g\":\"room\",\"body\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\",\"seq\":2,\"ts\":1700000000002,"
          "\"from\":\"alice\"}" },
        { msg_of(3, (rc_str){ "\x00\x01\xff", 3 }, false, true),
          "{\"t\":\"msg\",\"g\":\"room\",\"body_b64\":\"AAH/\",\"mid\":\"c-1\",\"seq\":3,\"ts\":1700000000003,"
          "\"from\":\"alice\"}" },
        /* so is a str body that is not UTF-8 (the codec does not check str) */
        { msg_of(4, (rc_str){ "\xc3", 1 }, true, false),
          "{\"t\":\"msg\",\"g\":\"room\",\"body_b64\":\"ww==\",\"seq\":4,\"ts\":1700000000004,\"from\":\"alice\"}" },
        /* escapes: quote, backslash, control bytes (0x00 too); DEL and UTF-8 go as they are */
        { msg_of(5, (rc_str){ "\"\\/\b\f\n\r\t\x01\x1f\x7f\x00 \xc3\xa9", 15 }, true, false),
          "{\"t\":\"msg\",\"g\":\"room\",\"body\":\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\\u0000 \xc3\xa9\","
          "\"seq\":5,\"ts\":1700000000005,\"from\":\"alice\"}" },
        { { .type = RC_T_HIST, .has = RC_HAS_RID | RC_HAS_MSGS, .rid = 5, .g = S("room"), .n_msgs = 0 },
          "{\"t\":\"hist\",\"rid\":5,\"g\":\"room\",\"msgs\":[]}" },
        { { .type = RC_T_HIST, .has = RC_HAS_RID | RC_HAS_MSGS, .rid = 6, .g = S("room"), .n_msgs = 3, .msgs = three,
            .more = true },
          "{\"t\":\"hist\",\"rid\":6,\"g\":\"room\",\"msgs\":["
          "{\"t\":\"msg\",\"g\":\"room\",\"body\":\"hi\",\"seq\":1,\"ts\":1700000000001,\"from\":\"alice\"},"
          "{\"t\":\"msg\",\"g\":\"room\",\"body_b64\":\"AAH/\",\"mid\":\"c-1\",\"seq\":2,\"ts\":1700000000002,"
          "\"from\":\"alice\"},"
          "{\"t\":\"msg\",\"g\":\"room\",\"body\":\"caf\xc3\xa9\",\"mid\":\"c-1\",\"seq\":3,\"ts\":1700000000003,"
          "\"from\":\"alice\"}],\"more\":true}" },
        { { .type = RC_T_PONG }, "{\"t\":\"pong\"}" },
        { { .type = RC_T_PONG, .has = RC_HAS_RID, .rid = 7 }, "{\"t\":\"pong\",\"rid\":7}" },
        { { .type = RC_T_PING }, "{\"t\":\"ping\"}" },
        { { .type = RC_T_ERR, .has = RC_HAS_RID, .rid = 8, .code = RC_E_NOT_MEMBER,
            .text = S("join the group before sending to it") },
          "{\"t\":\"err\",\"rid\":8,\"code\":\"E_NOT_MEMBER\",\"msg\":\"join the group before sending to it\"}" },
        { { .type = RC_T_ERR, .code = RC_E_BAD_FRAME, .text = S("a text message must hold one JSON object") },
          "{\"t\":\"err\",\"code\":\"E_BAD_FRAME\",\"msg\":\"a text message must hold one JSON object\"}" },
        { { .type = RC_T_BYE, .reason = S("server shutting down") },
          "{\"t\":\"bye\",\"reason\":\"server shutting down\"}" },
        /* a name that is not UTF-8 (a binary client chose it) is not lost either */
        { { .type = RC_T_LEFT, .g = { "r\xff", 2 } }, "{\"t\":\"left\",\"g_b64\":\"cv8=\"}" },
    };
    json_run r;
    run_init(&r, false);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const server_case *c = &cases[i];
        char *got = server_json(&c->m);
        CHECK(got && strcmp(got, c->json) == 0, c->json);
        if (got && strcmp(got, c->json) != 0)
            fprintf(stderr, "\n    got  %s", got);
        CHECK(got && rc_utf8_valid(got, strlen(got)), c->json);
        free(got);
        /* and back: the same message, its bodies now str (JSON has no bin) */
        bool b64 = strstr(c->json, "_b64") != NULL;
        rc_err e = run_json(&r, c->json, strlen(c->json));
        if (b64) {
            CHECK(e == RC_E_MISSING_FIELD, c->json); /* body_b64 (g_b64) is not body (g) */
            continue;
        }
        CHECK(e == RC_OK, c->json);
        if (e != RC_OK)
            continue;
        rc_msg want = c->m;
        rc_msg msgs[3];
        want.body_is_str = c->m.type == RC_T_MSG;
        for (uint32_t k = 0; k < want.n_msgs; k++) {
            msgs[k] = want.msgs[k];
            msgs[k].body_is_str = true;
        }
        want.msgs = want.n_msgs ? msgs : NULL;
        CHECK(same_msg(&r.m, &want), c->json);
    }
    for (int code = RC_E_BAD_FRAME; code < RC_E_COUNT; code++) {
        rc_msg m = { .type = RC_T_ERR, .code = (rc_err)code, .text = S("say what to do") };
        char *got = server_json(&m);
        CU_ASSERT_PTR_NOT_NULL_FATAL(got);
        CU_ASSERT_EQUAL(run_json(&r, got, strlen(got)), RC_OK);
        CU_ASSERT_EQUAL(r.m.code, (rc_err)code);
        free(got);
    }
    run_free(&r);
}

/* A large body: 64 KiB of text, and of bytes that are not UTF-8. */
static void test_large_bodies(void)
{
    enum { N = 65536 };
    char *body = malloc(N);
    CU_ASSERT_PTR_NOT_NULL_FATAL(body);
    for (size_t i = 0; i < N; i++)
        body[i] = (char)('a' + i % 26);
    body[N / 2] = '"';
    json_run r;
    run_init(&r, false);
    for (int binary = 0; binary < 2; binary++) {
        if (binary)
            body[N / 3] = (char)0xff;
        rc_msg m = msg_of(9, (rc_str){ body, N }, true, true);
        char *got = server_json(&m);
        CU_ASSERT_PTR_NOT_NULL_FATAL(got);
        CU_ASSERT(rc_utf8_valid(got, strlen(got)));
        CU_ASSERT_EQUAL(strstr(got, "\"body_b64\":\"") != NULL, binary);
        if (!binary) {
            CU_ASSERT_EQUAL(run_json(&r, got, strlen(got)), RC_OK);
            CU_ASSERT(same_msg(&r.m, &m));
        }
        free(got);
    }
    run_free(&r);
    free(body);
}

/* ------------------------------------------------------------------ */
/* MessagePack to JSON: what the server never sends, and bad bytes      */
/* ------------------------------------------------------------------ */

typedef struct raw_case {
    const char *mp;
    size_t len;
    const char *json; /* NULL: rc_msgpack_to_json must fail */
    const char *what;
} raw_case;

#define RAW(lit, json, what) { (lit), sizeof(lit) - 1, (json), (what) }

static void test_to_json_values(void)
{
    static const raw_case cases[] = {
        RAW("\x80", "{}", "empty map"),
        RAW("\xde\x00\x01\xa1" "a" "\x01", "{\"a\":1}", "map 16"),
        RAW("\xdf\x00\x00\x00\x01\xa1" "a" "\x01", "{\"a\":1}", "map 32"),
        RAW("\x81\xd9\x01" "a" "\xc0", "{\"a\":null}", "str 8 key"),
        RAW("\x81\xa1" "a" "\x93\xc3\xc2\xc0", "{\"a\":[true,false,null]}", "array of bool and nil"),
        RAW("\x81\xa1" "a" "\xdc\x00\x02\x90\x80", "{\"a\":[[],{}]}", "array 16, empty containers"),
        RAW("\x81\xa1" "a" "\x95\xff\xe0\xd0\x80\xd1\x80\x00\xd2\x80\x00\x00\x00",
            "{\"a\":[-1,-32,-128,-32768,-2147483648]}", "negative ints"),
        RAW("\x81\xa1" "a" "\x91\xd3\x80\x00\x00\x00\x00\x00\x00\x00", "{\"a\":[-9223372036854775808]}", "int 64 min"),
        RAW("\x81\xa1" "a" "\x93\xcc\xff\xcd\xff\xff\xce\xff\xff\xff\xff", "{\"a\":[255,65535,4294967295]}", "uints"),
        RAW("\x81\xa1" "a" "\x91\xd0\x05", "{\"a\":[5]}", "int 8 holding a positive value"),
        RAW("\x81\xa1" "a" "\x94\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00\xcb\x80\x00\x00\x00\x00\x00\x00\x00"
            "\xca\x3f\xc0\x00\x00\xcb\x40\x59\x00\x00\x00\x00\x00\x00",
            "{\"a\":[1.5,-0.0,1.5,100.0]}", "floats keep a fraction"),
        RAW("\x81\xa1" "a" "\x93\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00\xcb\xff\xf8\x00\x00\x00\x00\x00\x00"
            "\xca\x7f\xc0\x00\x00",
            "{\"a\":[null,null,null]}", "infinity and NaN are null"),
        RAW("\x81\xa1" "a" "\xcb\x3f\xb9\x99\x99\x99\x99\x99\x9a", "{\"a\":0.10000000000000001}", "0.1, exactly"),
        RAW("\x81\xa1" "a" "\xcb\x7e\x37\xe4\x3c\x88\x00\x75\x9c", "{\"a\":1.0000000000000001e+300}", "exponent"),
        /* bytes that are not UTF-8 where no key can say so: U+FFFD per maximal subpart */
        RAW("\x81\xa1" "a" "\x92\xa3" "a\xff" "b" "\xc4\x02\xe2\x82",
            "{\"a\":[\"a\xef\xbf\xbd" "b\",\"\xef\xbf\xbd\"]}", "U+FFFD in arrays"),
        RAW("\x81\xa1" "a" "\x91\xa3\xf0\x80\x80",
            "{\"a\":[\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"]}", "an overlong form is three bad bytes"),
        RAW("\x81\xa1" "a" "\x91\xa3\xed\xa0\x80",
            "{\"a\":[\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"]}", "a surrogate is three bad bytes"),
        RAW("\x81\xa2\xff" "k" "\x01", "{\"\xef\xbf\xbd" "k\":1}", "a key that is not UTF-8"),
        RAW("\x81\xa2\"\\\x01", "{\"\\\"\\\\\":1}", "a key with escapes"),
        /* base64 of every tail length */
        RAW("\x81\xa1" "b" "\xc4\x01\xff", "{\"b_b64\":\"/w==\"}", "base64, 1 byte"),
        RAW("\x81\xa1" "b" "\xc4\x02\xff\xfe", "{\"b_b64\":\"//4=\"}", "base64, 2 bytes"),
        RAW("\x81\xa1" "b" "\xc4\x03\xff\xfe\xfd", "{\"b_b64\":\"//79\"}", "base64, 3 bytes"),
        RAW("\x81\xa1" "b" "\xc4\x04\xfb\xef\xbe\x80", "{\"b_b64\":\"++++gA==\"}", "base64, 4 bytes"),
        RAW("\x81\xa1" "b" "\xc5\x00\x00", "{\"b\":\"\"}", "empty bin 16"),
        RAW("\x81\xa1" "b" "\xc6\x00\x00\x00\x01" "x", "{\"b\":\"x\"}", "bin 32"),
        RAW("\x81\xa1" "b" "\xdb\x00\x00\x00\x01" "x", "{\"b\":\"x\"}", "str 32"),
        /* not one map JSON can hold */
        RAW("", NULL, "nothing"),
        RAW("\x90", NULL, "an array"),
        RAW("\xa1" "x", NULL, "a str"),
        RAW("\xc0", NULL, "nil"),
        RAW("\x80\x80", NULL, "a second map"),
        RAW("\x80\x00", NULL, "a byte after the map"),
        RAW("\x81\xa1" "a", NULL, "value missing"),
        RAW("\x82\xa1" "a" "\x01", NULL, "an entry missing"),
        RAW("\x81\xa1" "a" "\xa2" "x", NULL, "str cut short"),
        RAW("\x81\xa1" "a" "\xcd\x01", NULL, "uint 16 cut short"),
        RAW("\x81\xa1" "a" "\xcb\x00\x00", NULL, "float 64 cut short"),
        RAW("\x81\xa1" "a" "\xc4", NULL, "bin length missing"),
        RAW("\x81\xa1" "a" "\xdd\xff\xff\xff\xff", NULL, "array declares 2^32-1 elements"),
        RAW("\xdf\xff\xff\xff\xff", NULL, "map declares 2^32-1 entries"),
        RAW("\x81\xa1" "a" "\xdb\xff\xff\xff\xff" "xx", NULL, "str declares 2^32-1 bytes"),
        RAW("\x81\xa1" "a" "\xc1", NULL, "reserved byte 0xc1"),
        RAW("\x81\xa1" "a" "\xd4\x01\x00", NULL, "fixext 1"),
        RAW("\x81\xa1" "a" "\xc7\x01\x05\x00", NULL, "ext 8"),
        RAW("\x81\x01\x01", NULL, "an int key"),
        RAW("\x81\xc4\x01" "a" "\x01", NULL, "a bin key"),
        RAW("\x81\x80\x01", NULL, "a map key"),
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const raw_case *c = &cases[i];
        char *got = raw_json(c->mp, c->len);
        if (c->json) {
            CHECK(got && strcmp(got, c->json) == 0, c->what);
            if (got && strcmp(got, c->json) != 0)
                fprintf(stderr, "\n    got  %s", got);
            /* whatever it writes reads back as JSON */
            rc_buf b;
            rc_buf_init(&b);
            CHECK(got && rc_json_to_msgpack(got, strlen(got), &b, NULL) == RC_OK, c->what);
            rc_buf_free(&b);
        } else {
            CHECK(got == NULL, c->what);
        }
        free(got);
    }
}

static void test_to_json_nesting(void)
{
    /* {"a":[[...]]}: the map is level 1, so levels - 1 arrays */
    for (unsigned levels = 31; levels <= 34; levels++) {
        char mp[64];
        size_t n = 0;
        mp[n++] = (char)0x81;
        mp[n++] = (char)0xa1;
        mp[n++] = 'a';
        for (unsigned i = 1; i < levels; i++)
            mp[n++] = (char)(i + 1 < levels ? 0x91 : 0x90);
        char *got = raw_json(mp, n);
        char label[32];
        snprintf(label, sizeof(label), "%u levels", levels);
        CHECK((got != NULL) == (levels <= RC_MAX_DEPTH), label);
        free(got);
    }
    CU_ASSERT_PTR_NULL(RAW_JSON("\x81\xa1" "a" "\x91\x91\x91"));
}

/* ------------------------------------------------------------------ */

static int add_tests(void)
{
    CU_pSuite s = CU_add_suite("json_in", NULL, NULL);
    if (!s || !CU_add_test(s, "UTF-8: overlongs, surrogates, range, cut short", test_utf8) ||
        !CU_add_test(s, "every request as JSON is its MessagePack form", test_requests) ||
        !CU_add_test(s, "key order, whitespace, unknown and twice-seen keys", test_request_shapes) ||
        !CU_add_test(s, "integers are exact up to 2^64-1", test_numbers_exact) ||
        !CU_add_test(s, "negative, fractional and too large numbers are E_BAD_FIELD", test_numbers_not_uint) ||
        !CU_add_test(s, "number text RFC 8259 does not allow", test_numbers_syntax) ||
        !CU_add_test(s, "strings: escapes, \\u0000, surrogates, control bytes", test_strings) ||
        !CU_add_test(s, "nesting: 32 levels, not 33", test_nesting) ||
        !CU_add_test(s, "text that is not one JSON object", test_not_one_object) ||
        !CU_add_test(s, "text that is not UTF-8", test_not_utf8) ||
        !CU_add_test(s, "output is appended, and left alone on failure", test_append))
        return -1;
    s = CU_add_suite("json_out", NULL, NULL);
    if (!s || !CU_add_test(s, "every server message as JSON, and back", test_server_messages) ||
        !CU_add_test(s, "64 KiB bodies", test_large_bodies) ||
        !CU_add_test(s, "MessagePack values and bad bytes", test_to_json_values) ||
        !CU_add_test(s, "nesting: 32 levels, not 33", test_to_json_nesting))
        return -1;
    return 0;
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    if (add_tests() != 0) {
        CU_cleanup_registry();
        return 1;
    }
    return rc_test_run();
}
