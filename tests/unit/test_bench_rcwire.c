/*
 * The load generator's scanner of ringcast server maps (bench/gen/rc_wire.c):
 * it reads what the server's own encoder writes (rc_encode), the same
 * fields from every other valid encoding of them (the general readers
 * behind the inline ones), and refuses whatever is not exactly one
 * well-formed map with a `t`: cut short anywhere, followed by more bytes,
 * a field of the wrong type, nesting past RW_MAX_DEPTH. Counting
 * deliveries, gaps and refusals in every benchmark rests on it.
 */
#include "testutil.h"

#include <CUnit/Basic.h>
#include <stdbool.h>
#include <string.h>

#include "ringcast/proto.h"

/* The generator is a program, not a library: its pure file is built in. */
#include "../../bench/gen/rc_wire.c"

static bool is(const uint8_t *p, uint32_t n, const char *want)
{
    return p && n == strlen(want) && memcmp(p, want, n) == 0;
}

/* A map the server's encoder writes, without its frame header. */
static size_t server_map(const rc_msg *m, uint8_t *out, size_t cap)
{
    rc_buf b;
    rc_buf_init(&b);
    CU_ASSERT_EQUAL_FATAL(rc_encode(&b, m), 0);
    size_t n = b.len - RC_FRAME_HEADER;
    CU_ASSERT_FATAL(n <= cap);
    memcpy(out, b.data + RC_FRAME_HEADER, n);
    rc_buf_free(&b);
    return n;
}

static void test_server_msg(void)
{
    uint8_t body[200];
    memset(body, 'x', sizeof(body));
    rc_msg m = { .type = RC_T_MSG, .has = RC_HAS_MID, .g = rc_str_c("lobby"), .seq = 4294967301u,
                 .from = rc_str_c("alice"), .mid = rc_str_c("m-17"), .ts = 1764633600123u,
                 .body = { (const char *)body, sizeof(body) } };
    uint8_t map[512];
    size_t n = server_map(&m, map, sizeof(map));
    rw_frame f;
    CU_ASSERT_EQUAL(rw_scan(map, n, &f), 0);
    CU_ASSERT_TRUE(is(f.t, f.t_len, "msg"));
    CU_ASSERT_TRUE(is(f.g, f.g_len, "lobby"));
    CU_ASSERT_TRUE(f.has_seq);
    CU_ASSERT_EQUAL(f.seq, 4294967301u);
    CU_ASSERT_EQUAL(f.body_len, sizeof(body));
    CU_ASSERT_TRUE(f.body && memcmp(f.body, body, sizeof(body)) == 0);
    CU_ASSERT_PTR_NULL(f.code);

    /* every seq width the encoder picks */
    const uint64_t seqs[] = { 1, 127, 128, 255, 256, 65535, 65536, 4294967295u, 18446744073709551615u };
    for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
        m.seq = seqs[i];
        m.body = rc_str_c("hi");
        n = server_map(&m, map, sizeof(map));
        CU_ASSERT_EQUAL(rw_scan(map, n, &f), 0);
        CU_ASSERT_EQUAL(f.seq, seqs[i]);
        CU_ASSERT_TRUE(is(f.body, f.body_len, "hi"));
    }

    /* a str body (proto/PROTOCOL.md §2.1) */
    m.body_is_str = true;
    n = server_map(&m, map, sizeof(map));
    CU_ASSERT_EQUAL(rw_scan(map, n, &f), 0);
    CU_ASSERT_TRUE(is(f.body, f.body_len, "hi"));
}

static void test_server_err_and_bye(void)
{
    uint8_t map[256];
    rc_buf b;
    rc_buf_init(&b);
    CU_ASSERT_EQUAL_FATAL(rc_encode_err(&b, true, 9, RC_E_OVERLOADED, "shard queue full"), 0);
    rw_frame f;
    CU_ASSERT_EQUAL(rw_scan((const uint8_t *)b.data + RC_FRAME_HEADER, b.len - RC_FRAME_HEADER, &f), 0);
    CU_ASSERT_TRUE(is(f.t, f.t_len, "err"));
    CU_ASSERT_TRUE(is(f.code, f.code_len, "E_OVERLOADED"));
    CU_ASSERT_FALSE(f.has_seq);
    rc_buf_free(&b);

    rc_msg bye = { .type = RC_T_BYE, .reason = rc_str_c("slow_consumer") };
    size_t n = server_map(&bye, map, sizeof(map));
    CU_ASSERT_EQUAL(rw_scan(map, n, &f), 0);
    CU_ASSERT_TRUE(is(f.t, f.t_len, "bye"));
    CU_ASSERT_TRUE(is(f.code, f.code_len, "slow_consumer"));
}

/* The same fields in the encodings the inline readers leave to the general
 * ones: a map16 header, str8 keys and values, uint64 seq, bin16 body, and
 * unknown keys holding every kind of value. */
static void test_other_encodings(void)
{
    uint8_t p[600];
    size_t n = 0;
#define B(...) do { const uint8_t b_[] = { __VA_ARGS__ }; memcpy(p + n, b_, sizeof(b_)); n += sizeof(b_); } while (0)
    B(0xde, 0x00, 0x07);                                   /* map16, 7 pairs */
    B(0xd9, 0x01, 't', 0xd9, 0x03, 'm', 's', 'g');         /* str8 key and value */
    B(0xda, 0x00, 0x01, 'g', 0xdb, 0x00, 0x00, 0x00, 0x02, 'g', '1'); /* str16 key, str32 value */
    B(0xa3, 's', 'e', 'q', 0xcf, 0, 0, 0, 0, 0, 0, 0, 42);   /* uint64 of a small value */
    B(0xa4, 'b', 'o', 'd', 'y', 0xc5, 0x01, 0x2c);          /* bin16, 300 bytes */
    memset(p + n, 'b', 300);
    n += 300;
    B(0xa1, 'x', 0x93, 0xc0, 0xc3, 0x81, 0xa1, 'k', 0x92, 0xd0, 0x80, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0);
    /* x: [nil, true, {k: [-128 (int8), 0.0 (float64)]}] */
    B(0xa2, 'e', 'x', 0xc7, 0x03, 0x05, 1, 2, 3);           /* ext8 */
    B(0xa2, 'f', 'x', 0xd6, 0x05, 1, 2, 3, 4);              /* fixext4 */
#undef B
    rw_frame f;
    CU_ASSERT_EQUAL(rw_scan(p, n, &f), 0);
    CU_ASSERT_TRUE(is(f.t, f.t_len, "msg"));
    CU_ASSERT_TRUE(is(f.g, f.g_len, "g1"));
    CU_ASSERT_EQUAL(f.seq, 42);
    CU_ASSERT_EQUAL(f.body_len, 300);
    CU_ASSERT_TRUE(f.body && f.body[0] == 'b' && f.body[299] == 'b');
}

static void test_refused(void)
{
    uint8_t map[256];
    rc_msg m = { .type = RC_T_MSG, .g = rc_str_c("g"), .seq = 7, .from = rc_str_c("u"), .ts = 1,
                 .body = rc_str_c("hello") };
    size_t n = server_map(&m, map, sizeof(map));
    rw_frame f;
    CU_ASSERT_EQUAL_FATAL(rw_scan(map, n, &f), 0);
    for (size_t cut = 0; cut < n; cut++) /* every prefix */
        CU_ASSERT_EQUAL(rw_scan(map, cut, &f), -1);
    map[n] = 0xc0; /* one byte more */
    CU_ASSERT_EQUAL(rw_scan(map, n + 1, &f), -1);

    const uint8_t no_t[] = { 0x81, 0xa1, 'g', 0xa1, 'x' };
    const uint8_t t_int[] = { 0x81, 0xa1, 't', 0x05 };
    const uint8_t seq_str[] = { 0x82, 0xa1, 't', 0xa1, 'm', 0xa3, 's', 'e', 'q', 0xa1, '1' };
    const uint8_t seq_neg[] = { 0x82, 0xa1, 't', 0xa1, 'm', 0xa3, 's', 'e', 'q', 0xff };
    const uint8_t body_int[] = { 0x82, 0xa1, 't', 0xa1, 'm', 0xa4, 'b', 'o', 'd', 'y', 0x01 };
    const uint8_t key_int[] = { 0x82, 0xa1, 't', 0xa1, 'm', 0x01, 0x02 };
    const uint8_t never_used[] = { 0x82, 0xa1, 't', 0xa1, 'm', 0xa1, 'x', 0xc1 };
    const uint8_t array[] = { 0x92, 0xa1, 't', 0xa1, 'm' };
    const uint8_t bin_len_past_end[] = { 0x82, 0xa1, 't', 0xa1, 'm', 0xa4, 'b', 'o', 'd', 'y', 0xc4, 0x09, 'a' };
    const struct {
        const uint8_t *p;
        size_t n;
    } bad[] = { { no_t, sizeof(no_t) }, { t_int, sizeof(t_int) }, { seq_str, sizeof(seq_str) },
                { seq_neg, sizeof(seq_neg) }, { body_int, sizeof(body_int) }, { key_int, sizeof(key_int) },
                { never_used, sizeof(never_used) }, { array, sizeof(array) },
                { bin_len_past_end, sizeof(bin_len_past_end) } };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CU_ASSERT_EQUAL(rw_scan(bad[i].p, bad[i].n, &f), -1);
    CU_ASSERT_EQUAL(rw_scan(map, 0, &f), -1);
}

/* An unknown key's value nested RW_MAX_DEPTH deep is skipped; one deeper is refused. */
static void test_depth(void)
{
    for (int extra = 0; extra <= 1; extra++) {
        uint8_t p[64];
        size_t n = 0;
        p[n++] = 0x82;
        p[n++] = 0xa1;
        p[n++] = 't';
        p[n++] = 0xa1;
        p[n++] = 'm';
        p[n++] = 0xa1;
        p[n++] = 'x';
        for (int d = 0; d < RW_MAX_DEPTH + extra; d++)
            p[n++] = 0x91; /* an array of one */
        p[n++] = 0x01;
        rw_frame f;
        CU_ASSERT_EQUAL(rw_scan(p, n, &f), extra ? -1 : 0);
    }
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("bench_rcwire", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "a server msg as rc_encode writes it", test_server_msg) ||
        !CU_add_test(s, "a server err and bye", test_server_err_and_bye) ||
        !CU_add_test(s, "the same fields in other valid encodings", test_other_encodings) ||
        !CU_add_test(s, "anything but one whole map with a t is refused", test_refused) ||
        !CU_add_test(s, "nesting is bounded", test_depth)) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    return rc_test_run();
}
