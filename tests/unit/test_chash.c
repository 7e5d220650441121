/*
 * Consistent hash ring (src/core/chash.h): balance of keyspace and of keys
 * for 2..16 shards, movement on growing and shrinking (only what must move,
 * only to or from the shards that come or go), determinism, the table
 * answering as the ring's successor search, and the edge cases (empty ring,
 * ids out of order, more shards than vnodes). Deterministic: the group ids
 * and hashes come from a seeded splitmix64.
 */
#include "core/chash.h"

#include <CUnit/Basic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NKEYS 200000u
#define VNODES RC_CHASH_DEFAULT_VNODES
#define MIN_SHARDS 2u
#define MAX_SHARDS 16u
#define KEY_SEED UINT64_C(0x5EED)
#define KEY_MAX_LEN 32u
#define MAX_KEYS_RATIO 1.05  /* keys on the fullest shard / mean, over NKEYS ids */
#define SHARE_EPSILON 1e-9   /* a shard's keyspace share differs from 1/n by at most this (relative) */
#define MOVE_SLACK 1.10      /* moved keys at most MOVE_SLACK x the ideal 1/(n+1) */
#define MOVE_FLOOR 0.90      /* and at least MOVE_FLOOR x (something did move) */
#define FEW_VNODES 3u        /* a ring with more shards than vnodes per shard */
#define MANY_SHARDS 40u
#define TABLE_PROBES 100000u /* random hashes checked against the successor search per ring */

typedef struct key_set {
    char (*keys)[KEY_MAX_LEN];
    size_t *lens;
} key_set;

static key_set g_keys;

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static int make_keys(void)
{
    g_keys.keys = calloc(NKEYS, sizeof *g_keys.keys);
    g_keys.lens = calloc(NKEYS, sizeof *g_keys.lens);
    if (g_keys.keys == NULL || g_keys.lens == NULL) {
        free(g_keys.keys);
        free(g_keys.lens);
        return -1;
    }
    uint64_t state = KEY_SEED;
    for (size_t i = 0; i < NKEYS; i++) {
        int n = snprintf(g_keys.keys[i], KEY_MAX_LEN, "group-%llu", (unsigned long long)splitmix64(&state));
        g_keys.lens[i] = (size_t)n;
    }
    return 0;
}

static int free_keys(void)
{
    free(g_keys.keys);
    free(g_keys.lens);
    return 0;
}

static uint32_t lookup_key(const rc_chash *c, size_t i)
{
    return rc_chash_lookup(c, g_keys.keys[i], g_keys.lens[i]);
}

static void owners(const rc_chash *c, uint32_t *out)
{
    for (size_t i = 0; i < NKEYS; i++)
        out[i] = lookup_key(c, i);
}

static void test_balance(void)
{
    double worst_keys = 0, worst_share = 0;
    for (uint32_t n = MIN_SHARDS; n <= MAX_SHARDS; n++) {
        rc_chash *c = rc_chash_build(n, VNODES);
        CU_ASSERT_PTR_NOT_NULL_FATAL(c);
        CU_ASSERT_EQUAL(rc_chash_shards(c), n);
        size_t load[MAX_SHARDS] = { 0 }, unknown_shard = 0;
        for (size_t i = 0; i < NKEYS; i++) {
            uint32_t s = lookup_key(c, i);
            if (s < n)
                load[s]++;
            else
                unknown_shard++;
        }
        CU_ASSERT_EQUAL(unknown_shard, 0);
        double sum = 0;
        for (uint32_t s = 0; s < n; s++) {
            double keys = (double)load[s] / ((double)NKEYS / n), share = rc_chash_share(c, s) * n;
            CU_ASSERT(keys <= MAX_KEYS_RATIO);
            CU_ASSERT_DOUBLE_EQUAL(share, 1.0, SHARE_EPSILON);
            worst_keys = keys > worst_keys ? keys : worst_keys;
            worst_share = share > worst_share ? share : worst_share;
            sum += rc_chash_share(c, s);
        }
        CU_ASSERT_DOUBLE_EQUAL(sum, 1.0, SHARE_EPSILON); /* the shares cover the circle */
        rc_chash_destroy(c);
    }
    printf("\n  2..16 shards: keys max/mean %.4f (bound %.2f), keyspace max/mean %.12f ", worst_keys,
           MAX_KEYS_RATIO, worst_share);
}

/* Grow n -> n+1 for n = 1..16: about 1/(n+1) of the keys move, every one to
 * shard n, and the new shard owns exactly 1/(n+1) of the circle; removing
 * it puts every key back where it was. */
static void test_grow_shrink_by_one(void)
{
    uint32_t *before = malloc(NKEYS * sizeof *before), *after = malloc(NKEYS * sizeof *after);
    CU_ASSERT_PTR_NOT_NULL_FATAL(before);
    CU_ASSERT_PTR_NOT_NULL_FATAL(after);
    rc_chash *c = rc_chash_build(1, VNODES);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    double worst = 0;
    for (uint32_t n = 1; n <= MAX_SHARDS; n++) {
        owners(c, before);
        CU_ASSERT_EQUAL_FATAL(rc_chash_add(c, n), 0);
        owners(c, after);
        size_t moved = 0, elsewhere = 0;
        for (size_t i = 0; i < NKEYS; i++) {
            moved += after[i] != before[i];
            elsewhere += after[i] != before[i] && after[i] != n;
        }
        double ratio = (double)moved / ((double)NKEYS / (n + 1));
        worst = ratio > worst ? ratio : worst;
        CU_ASSERT(ratio <= MOVE_SLACK);
        CU_ASSERT(ratio >= MOVE_FLOOR);
        CU_ASSERT_EQUAL(elsewhere, 0);
        CU_ASSERT_DOUBLE_EQUAL(rc_chash_share(c, n) * (n + 1), 1.0, SHARE_EPSILON);

        CU_ASSERT_EQUAL_FATAL(rc_chash_remove(c, n), 0);
        owners(c, after);
        size_t not_back = 0;
        for (size_t i = 0; i < NKEYS; i++)
            not_back += after[i] != before[i];
        CU_ASSERT_EQUAL(not_back, 0);
        CU_ASSERT_EQUAL_FATAL(rc_chash_add(c, n), 0); /* on to n + 1 */
    }
    printf("\n  moved / ideal at most %.4f (bound %.2f) ", worst, MOVE_SLACK);
    rc_chash_destroy(c);
    free(before);
    free(after);
}

/* The autoscaler's steps change several shards at once: growing 4 -> 13
 * moves keys only to shards 4..12, shrinking back moves only their keys,
 * each to the shard it had on 4 shards. */
static void test_grow_shrink_by_many(void)
{
    enum { FROM = 4, TO = 13 };
    uint32_t *small = malloc(NKEYS * sizeof *small), *big = malloc(NKEYS * sizeof *big);
    CU_ASSERT_PTR_NOT_NULL_FATAL(small);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    rc_chash *a = rc_chash_build(FROM, VNODES), *b = rc_chash_build(TO, VNODES);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    owners(a, small);
    owners(b, big);
    size_t moved = 0, between_stayers = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        moved += small[i] != big[i];
        between_stayers += small[i] != big[i] && big[i] < FROM;
    }
    double ideal = (double)NKEYS * (TO - FROM) / TO;
    CU_ASSERT_EQUAL(between_stayers, 0);
    CU_ASSERT(moved <= MOVE_SLACK * ideal);
    CU_ASSERT(moved >= MOVE_FLOOR * ideal);
    for (uint32_t s = TO; s-- > FROM;)
        CU_ASSERT_EQUAL_FATAL(rc_chash_remove(b, s), 0);
    size_t differ = 0;
    for (size_t i = 0; i < NKEYS; i++)
        differ += lookup_key(b, i) != small[i];
    CU_ASSERT_EQUAL(differ, 0);
    rc_chash_destroy(a);
    rc_chash_destroy(b);
    free(small);
    free(big);
}

static bool same_tokens(const rc_chash *a, const rc_chash *b)
{
    if (rc_chash_tokens(a) != rc_chash_tokens(b) || rc_chash_shards(a) != rc_chash_shards(b))
        return false;
    for (size_t i = 0; i < rc_chash_tokens(a); i++) {
        uint64_t pa, pb;
        uint32_t sa, sb;
        if (rc_chash_token(a, i, &pa, &sa) != 0 || rc_chash_token(b, i, &pb, &sb) != 0 || pa != pb || sa != sb)
            return false;
    }
    return true;
}

/* The ring is a function of (n, vnodes): built at once, shard by shard, or
 * shrunk down from a larger ring, it has the same tokens. And it is the same
 * ring on every host and run: the owners of g0..g15 on 8 shards at 160
 * vnodes, as computed when the placement was written (a change to them is a
 * change of every deployment's placement). */
static void test_deterministic(void)
{
    rc_chash *a = rc_chash_build(MAX_SHARDS / 2, VNODES), *b = rc_chash_create(VNODES);
    rc_chash *big = rc_chash_build(MAX_SHARDS, VNODES);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    for (uint32_t s = 0; s < MAX_SHARDS / 2; s++)
        CU_ASSERT_EQUAL(rc_chash_add(b, s), 0);
    for (uint32_t s = MAX_SHARDS; s-- > MAX_SHARDS / 2;)
        CU_ASSERT_EQUAL(rc_chash_remove(big, s), 0);
    CU_ASSERT(same_tokens(a, b));
    CU_ASSERT(same_tokens(a, big));
    CU_ASSERT_EQUAL(rc_chash_tokens(a), (size_t)VNODES * (MAX_SHARDS / 2));

    static const uint32_t expect[16] = { 7, 2, 3, 6, 0, 3, 5, 7, 4, 0, 3, 0, 6, 2, 6, 4 };
    char key[8];
    size_t differ = 0;
    for (uint32_t i = 0; i < 16; i++) {
        int len = snprintf(key, sizeof key, "g%u", i);
        differ += rc_chash_lookup(a, key, (size_t)len) != expect[i];
    }
    CU_ASSERT_EQUAL(differ, 0);
    rc_chash_destroy(a);
    rc_chash_destroy(b);
    rc_chash_destroy(big);
}

/* The table answers as the successor search, for random hashes, for each
 * token's position and its neighbours, and at every slice's edges; and the
 * successor search answers as a plain scan of the tokens. */
static size_t table_wrong(const rc_chash *c, uint64_t seed)
{
    size_t wrong = 0, n = rc_chash_tokens(c);
    for (size_t i = 0; i < TABLE_PROBES; i++) {
        uint64_t h = splitmix64(&seed);
        wrong += rc_chash_lookup_hash(c, h) != rc_chash_successor(c, h);
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t pos;
        uint32_t shard;
        CU_ASSERT_EQUAL(rc_chash_token(c, i, &pos, &shard), 0);
        wrong += rc_chash_successor(c, pos) != shard; /* a token owns its own position */
        for (int d = -1; d <= 1; d++) {
            uint64_t h = pos + (uint64_t)(int64_t)d;
            wrong += rc_chash_lookup_hash(c, h) != rc_chash_successor(c, h);
        }
    }
    uint32_t bits = rc_chash_table_bits(c);
    for (uint64_t b = 0; b < (UINT64_C(1) << bits); b++) {
        uint64_t start = b << (64 - bits);
        wrong += rc_chash_lookup_hash(c, start) != rc_chash_successor(c, start);
        wrong += rc_chash_lookup_hash(c, start - 1) != rc_chash_successor(c, start - 1);
    }
    return wrong;
}

static uint32_t scan_successor(const rc_chash *c, uint64_t h)
{
    uint64_t pos;
    uint32_t shard, first = RC_CHASH_NO_SHARD;
    for (size_t i = 0; rc_chash_token(c, i, &pos, &shard) == 0; i++) {
        if (i == 0)
            first = shard;
        if (pos >= h)
            return shard;
    }
    return first; /* past the last token: wraps */
}

static void test_table_matches_successor(void)
{
    for (uint32_t n = 1; n <= MAX_SHARDS; n++) {
        rc_chash *c = rc_chash_build(n, VNODES);
        CU_ASSERT_PTR_NOT_NULL_FATAL(c);
        CU_ASSERT_EQUAL(table_wrong(c, KEY_SEED + n), 0);
        size_t by_key = 0;
        for (size_t i = 0; i < NKEYS; i++)
            by_key += lookup_key(c, i) != rc_chash_successor(c, rc_hash64(g_keys.keys[i], g_keys.lens[i]));
        CU_ASSERT_EQUAL(by_key, 0);
        CU_ASSERT(rc_chash_table_split(c) < 0.1); /* most lookups are one table read */
        uint64_t st = KEY_SEED * n;
        size_t scan = 0;
        for (int i = 0; i < 1000; i++) {
            uint64_t h = splitmix64(&st);
            scan += rc_chash_successor(c, h) != scan_successor(c, h);
        }
        scan += rc_chash_successor(c, 0) != scan_successor(c, 0);
        scan += rc_chash_successor(c, UINT64_MAX) != scan_successor(c, UINT64_MAX);
        CU_ASSERT_EQUAL(scan, 0);
        rc_chash_destroy(c);
    }
}

/* With fewer vnodes than shards a joining shard still takes its share from
 * every other one (it places a token per shard): balance stays exact. */
static void test_more_shards_than_vnodes(void)
{
    rc_chash *c = rc_chash_build(MANY_SHARDS, FEW_VNODES);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    for (uint32_t s = 0; s < MANY_SHARDS; s++)
        CU_ASSERT_DOUBLE_EQUAL(rc_chash_share(c, s) * MANY_SHARDS, 1.0, SHARE_EPSILON);
    CU_ASSERT_EQUAL(table_wrong(c, KEY_SEED), 0);
    rc_chash_destroy(c);
    rc_chash *one = rc_chash_build(2, 1); /* one token each */
    CU_ASSERT_PTR_NOT_NULL_FATAL(one);
    CU_ASSERT_EQUAL(rc_chash_tokens(one), 2);
    CU_ASSERT_DOUBLE_EQUAL(rc_chash_share(one, 0), 0.5, SHARE_EPSILON);
    CU_ASSERT_EQUAL(table_wrong(one, KEY_SEED), 0);
    rc_chash_destroy(one);
}

static void test_empty_ring(void)
{
    rc_chash *c = rc_chash_create(VNODES);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(rc_chash_shards(c), 0);
    CU_ASSERT_EQUAL(rc_chash_tokens(c), 0);
    CU_ASSERT_EQUAL(rc_chash_lookup(c, "group-1", strlen("group-1")), RC_CHASH_NO_SHARD);
    CU_ASSERT_EQUAL(rc_chash_lookup_hash(c, 0), RC_CHASH_NO_SHARD);
    CU_ASSERT_EQUAL(rc_chash_successor(c, 0), RC_CHASH_NO_SHARD);
    /* One shard owns everything; emptied again after use. */
    CU_ASSERT_EQUAL(rc_chash_add(c, 0), 0);
    CU_ASSERT_EQUAL(rc_chash_lookup(c, "group-1", strlen("group-1")), 0);
    CU_ASSERT_EQUAL(rc_chash_lookup_hash(c, UINT64_MAX), 0);
    CU_ASSERT_DOUBLE_EQUAL(rc_chash_share(c, 0), 1.0, SHARE_EPSILON);
    CU_ASSERT_EQUAL(rc_chash_remove(c, 0), 0);
    CU_ASSERT_EQUAL(rc_chash_lookup(c, "group-1", strlen("group-1")), RC_CHASH_NO_SHARD);
    CU_ASSERT_EQUAL(rc_chash_tokens(c), 0);
    rc_chash_destroy(c);
    rc_chash *zero = rc_chash_build(0, VNODES);
    CU_ASSERT_PTR_NOT_NULL_FATAL(zero);
    CU_ASSERT_EQUAL(rc_chash_lookup_hash(zero, 1), RC_CHASH_NO_SHARD);
    rc_chash_destroy(zero);
}

static void test_bad_arguments(void)
{
    CU_ASSERT_PTR_NULL(rc_chash_create(0));
    CU_ASSERT_PTR_NULL(rc_chash_create(RC_CHASH_MAX_VNODES + 1));
    CU_ASSERT_PTR_NULL(rc_chash_build(2, 0));
    rc_chash *c = rc_chash_build(2, VNODES);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    size_t tokens = rc_chash_tokens(c);
    CU_ASSERT_EQUAL(rc_chash_add(c, 1), -1); /* present */
    CU_ASSERT_EQUAL(rc_chash_add(c, 3), -1); /* not the next id */
    CU_ASSERT_EQUAL(rc_chash_add(c, RC_CHASH_NO_SHARD), -1);
    CU_ASSERT_EQUAL(rc_chash_remove(c, 0), -1); /* not the last */
    CU_ASSERT_EQUAL(rc_chash_remove(c, 7), -1); /* missing */
    CU_ASSERT_EQUAL(rc_chash_shards(c), 2);
    CU_ASSERT_EQUAL(rc_chash_tokens(c), tokens); /* refused calls changed nothing */
    uint64_t pos;
    uint32_t shard;
    CU_ASSERT_EQUAL(rc_chash_token(c, tokens, &pos, &shard), -1);
    CU_ASSERT_EQUAL(rc_chash_remove(c, 1), 0);
    CU_ASSERT_EQUAL(rc_chash_remove(c, 1), -1); /* already removed */
    CU_ASSERT_EQUAL(rc_chash_shards(c), 1);
    rc_chash_destroy(c);
    rc_chash_destroy(NULL);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("chash", make_keys, free_keys);
    if (s == NULL || !CU_add_test(s, "balance on 2..16 shards", test_balance) ||
        !CU_add_test(s, "grow and shrink by one move only the new shard's keys", test_grow_shrink_by_one) ||
        !CU_add_test(s, "grow and shrink by many never move between stayers", test_grow_shrink_by_many) ||
        !CU_add_test(s, "a function of (n, vnodes)", test_deterministic) ||
        !CU_add_test(s, "the table answers as the successor search", test_table_matches_successor) ||
        !CU_add_test(s, "more shards than vnodes", test_more_shards_than_vnodes) ||
        !CU_add_test(s, "empty ring", test_empty_ring) ||
        !CU_add_test(s, "bad arguments", test_bad_arguments)) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failures ? 1 : 0;
}
