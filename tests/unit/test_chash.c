/*
 * Consistent hash ring: balance, minimal movement on add/remove, and the
 * edge cases (empty ring, duplicate add, missing remove). Deterministic: the
 * group ids come from a seeded splitmix64.
 */
#include "core/chash.h"

#include <CUnit/Basic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define NKEYS 100000u
#define NSHARDS 8u
#define NEW_SHARD NSHARDS /* the 9th shard's id */
#define KEY_SEED UINT64_C(0x5EED)
#define KEY_MAX_LEN 32u
#define MAX_LOAD_RATIO 1.15
#define MOVE_SLACK 1.25 /* allowed moves: MOVE_SLACK * 1/(NSHARDS + 1) */

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
        int n = snprintf(g_keys.keys[i], KEY_MAX_LEN, "group-%llu",
                         (unsigned long long)splitmix64(&state));
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

static rc_chash *ring_of(uint32_t nshards)
{
    rc_chash *c = rc_chash_create(RC_CHASH_DEFAULT_VNODES);
    if (c == NULL)
        return NULL;
    for (uint32_t s = 0; s < nshards; s++)
        if (rc_chash_add(c, s) != 0) {
            rc_chash_destroy(c);
            return NULL;
        }
    return c;
}

static void test_balance(void)
{
    rc_chash *c = ring_of(NSHARDS);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(rc_chash_shards(c), NSHARDS);
    size_t load[NSHARDS] = { 0 };
    size_t unknown_shard = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        uint32_t s = lookup_key(c, i);
        if (s < NSHARDS)
            load[s]++;
        else
            unknown_shard++;
    }
    CU_ASSERT_EQUAL(unknown_shard, 0);
    size_t max = 0;
    for (uint32_t s = 0; s < NSHARDS; s++)
        max = load[s] > max ? load[s] : max;
    double ratio = (double)max / ((double)NKEYS / NSHARDS);
    printf("\n  max/mean load %.4f (bound %.2f) ", ratio, MAX_LOAD_RATIO);
    CU_ASSERT(ratio <= MAX_LOAD_RATIO);
    rc_chash_destroy(c);
}

static void test_add_remove_movement(void)
{
    rc_chash *c = ring_of(NSHARDS);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    uint32_t *before = malloc(NKEYS * sizeof *before);
    CU_ASSERT_PTR_NOT_NULL_FATAL(before);
    for (size_t i = 0; i < NKEYS; i++)
        before[i] = lookup_key(c, i);

    CU_ASSERT_EQUAL_FATAL(rc_chash_add(c, NEW_SHARD), 0);
    CU_ASSERT_EQUAL(rc_chash_shards(c), NSHARDS + 1);
    size_t moved = 0, moved_elsewhere = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        uint32_t now = lookup_key(c, i);
        moved += now != before[i];
        moved_elsewhere += now != before[i] && now != NEW_SHARD;
    }
    double fraction = (double)moved / NKEYS;
    double bound = MOVE_SLACK / (NSHARDS + 1);
    printf("\n  moved %.4f (bound %.4f) ", fraction, bound);
    CU_ASSERT(fraction <= bound);
    CU_ASSERT(moved > 0);
    CU_ASSERT_EQUAL(moved_elsewhere, 0);

    CU_ASSERT_EQUAL_FATAL(rc_chash_remove(c, NEW_SHARD), 0);
    CU_ASSERT_EQUAL(rc_chash_shards(c), NSHARDS);
    size_t not_back = 0;
    for (size_t i = 0; i < NKEYS; i++)
        not_back += lookup_key(c, i) != before[i];
    CU_ASSERT_EQUAL(not_back, 0);
    free(before);
    rc_chash_destroy(c);
}

static void test_empty_ring(void)
{
    rc_chash *c = rc_chash_create(RC_CHASH_DEFAULT_VNODES);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(rc_chash_shards(c), 0);
    CU_ASSERT_EQUAL(rc_chash_lookup(c, "group-1", strlen("group-1")), RC_CHASH_NO_SHARD);
    CU_ASSERT_EQUAL(rc_chash_lookup_hash(c, 0), RC_CHASH_NO_SHARD);
    /* Emptied again after use. */
    CU_ASSERT_EQUAL(rc_chash_add(c, 3), 0);
    CU_ASSERT_EQUAL(rc_chash_lookup(c, "group-1", strlen("group-1")), 3);
    CU_ASSERT_EQUAL(rc_chash_remove(c, 3), 0);
    CU_ASSERT_EQUAL(rc_chash_lookup(c, "group-1", strlen("group-1")), RC_CHASH_NO_SHARD);
    rc_chash_destroy(c);
}

static void test_bad_arguments(void)
{
    CU_ASSERT_PTR_NULL(rc_chash_create(0));
    CU_ASSERT_PTR_NULL(rc_chash_create(RC_CHASH_MAX_VNODES + 1));
    rc_chash *c = ring_of(2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(rc_chash_add(c, 1), -1); /* duplicate */
    CU_ASSERT_EQUAL(rc_chash_add(c, RC_CHASH_NO_SHARD), -1);
    CU_ASSERT_EQUAL(rc_chash_remove(c, 7), -1); /* missing */
    CU_ASSERT_EQUAL(rc_chash_shards(c), 2);
    CU_ASSERT_EQUAL(rc_chash_remove(c, 1), 0);
    CU_ASSERT_EQUAL(rc_chash_remove(c, 1), -1); /* already removed */
    CU_ASSERT_EQUAL(rc_chash_shards(c), 1);
    rc_chash_destroy(c);
    rc_chash_destroy(NULL);
}

static void test_lookup_hash_matches_lookup(void)
{
    rc_chash *c = ring_of(NSHARDS);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    size_t mismatches = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        uint64_t h = rc_hash64(g_keys.keys[i], g_keys.lens[i]);
        mismatches += rc_chash_lookup_hash(c, h) != lookup_key(c, i);
    }
    CU_ASSERT_EQUAL(mismatches, 0);
    /* Both ends of the hash space land on a shard (UINT64_MAX wraps). */
    CU_ASSERT(rc_chash_lookup_hash(c, 0) < NSHARDS);
    CU_ASSERT(rc_chash_lookup_hash(c, UINT64_MAX) < NSHARDS);
    rc_chash_destroy(c);
}

static void test_deterministic(void)
{
    rc_chash *a = ring_of(NSHARDS);
    rc_chash *b = rc_chash_create(RC_CHASH_DEFAULT_VNODES);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    for (uint32_t s = NSHARDS; s-- > 0;) /* same shards, reverse order */
        CU_ASSERT_EQUAL(rc_chash_add(b, s), 0);
    size_t differ = 0;
    for (size_t i = 0; i < NKEYS; i++)
        differ += lookup_key(a, i) != lookup_key(b, i);
    CU_ASSERT_EQUAL(differ, 0);
    rc_chash_destroy(a);
    rc_chash_destroy(b);
}

/* The ring as documented in chash.c, built here independently: points
 * are XXH3 of (shard LE32, vnode LE32); a hash belongs to the first point at
 * or after it (ties by shard id), wrapping. The index must answer the same as
 * a plain scan of those points, for random hashes and for every point's own
 * hash and its neighbours, on 1..NSHARDS shards. */
typedef struct ref_point {
    uint64_t hash;
    uint32_t shard;
} ref_point;

static int ref_cmp(const void *pa, const void *pb)
{
    const ref_point *a = pa, *b = pb;
    if (a->hash != b->hash)
        return a->hash < b->hash ? -1 : 1;
    return a->shard < b->shard ? -1 : a->shard > b->shard;
}

static uint32_t ref_lookup(const ref_point *p, size_t n, uint64_t h)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return p[lo == n ? 0 : lo].shard;
}

static void test_index_matches_reference(void)
{
    for (uint32_t nsh = 1; nsh <= NSHARDS; nsh++) {
        rc_chash *c = ring_of(nsh);
        CU_ASSERT_PTR_NOT_NULL_FATAL(c);
        size_t n = (size_t)nsh * RC_CHASH_DEFAULT_VNODES;
        ref_point *p = malloc(n * sizeof(*p));
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        for (uint32_t sh = 0, k = 0; sh < nsh; sh++)
            for (uint32_t v = 0; v < RC_CHASH_DEFAULT_VNODES; v++, k++) {
                unsigned char key[8];
                for (int b = 0; b < 4; b++) {
                    key[b] = (unsigned char)(sh >> (8 * b));
                    key[4 + b] = (unsigned char)(v >> (8 * b));
                }
                p[k] = (ref_point){ XXH3_64bits(key, sizeof key), sh };
            }
        qsort(p, n, sizeof(*p), ref_cmp);
        size_t wrong = 0;
        uint64_t st = KEY_SEED + nsh;
        for (size_t i = 0; i < NKEYS; i++) {
            uint64_t h = splitmix64(&st);
            wrong += rc_chash_lookup_hash(c, h) != ref_lookup(p, n, h);
        }
        for (size_t i = 0; i < n; i++)
            for (int d = -1; d <= 1; d++) {
                uint64_t h = p[i].hash + (uint64_t)(int64_t)d;
                wrong += rc_chash_lookup_hash(c, h) != ref_lookup(p, n, h);
            }
        wrong += rc_chash_lookup_hash(c, 0) != ref_lookup(p, n, 0);
        wrong += rc_chash_lookup_hash(c, UINT64_MAX) != ref_lookup(p, n, UINT64_MAX);
        CU_ASSERT_EQUAL(wrong, 0);
        free(p);
        rc_chash_destroy(c);
    }
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("chash", make_keys, free_keys);
    if (s == NULL || !CU_add_test(s, "balance on 8 shards", test_balance) ||
        !CU_add_test(s, "add/remove moves minimal keys", test_add_remove_movement) ||
        !CU_add_test(s, "empty ring", test_empty_ring) ||
        !CU_add_test(s, "bad arguments", test_bad_arguments) ||
        !CU_add_test(s, "lookup_hash matches lookup", test_lookup_hash_matches_lookup) ||
        !CU_add_test(s, "independent of add order", test_deterministic) ||
        !CU_add_test(s, "the index answers as a scan of the points", test_index_matches_reference)) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failures ? 1 : 0;
}
