/*
 * String map: put/get/update/del, growth through many resizes, backward-shift
 * deletion (including runs that wrap around the end of the table), keys with
 * embedded NUL bytes, freeing after deletes, and a long randomized
 * differential run against a plain array. Deterministic: every random choice
 * comes from a seeded splitmix64.
 */
#include "core/strmap.h"

#include <CUnit/CUnit.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/chash.h"
#include "testutil.h"

#define GROW_KEYS 100000u
#define GROW_SEED UINT64_C(0x57A7AB1E)
#define KEY_BUF 32u

/* The differential runs: keys are drawn from a pool of ids; the live set
 * grows in insert-heavy phases and shrinks in delete-heavy ones. The large
 * run takes the table through many sizes; the small one keeps it at a few
 * dozen slots with keys changing all the time, so runs often wrap around. */
#define DIFF_POOL (1u << 20)   /* ids keys are drawn from */
#define DIFF_OPS 400000u
#define DIFF_PHASE 50000u      /* ops per phase */
#define DIFF_SMALL_OPS 300000u
#define DIFF_SMALL_PHASE 64u
#define DIFF_SMALL_LIVE 24u    /* the small run never holds more keys than this */
#define DIFF_CHECK_EVERY 20000u /* full comparison this often */
#define DIFF_SEED UINT64_C(0xD1FF5EED)
#define DIFF_KEY_MAX 16u       /* longest generated key, bytes (ids < 3^14) */

#define WRAP_CAP 8u          /* table size the wrap-around test works in */
#define WRAP_KEYS 4u         /* keys it uses: at most WRAP_CAP / 2 */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static uint32_t rnd_below(uint64_t *state, uint32_t n)
{
    return (uint32_t)(splitmix64(state) % n);
}

static void shuffle(uint32_t *a, uint32_t n, uint64_t *state)
{
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = rnd_below(state, i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* Structural invariant: n matches the occupied slots, the load stays at or
 * below 1/2, and every stored key is reachable from its home slot without
 * crossing an empty slot (what backward-shift deletion must preserve). */
static int map_consistent(const rc_strmap *m)
{
    if (m->cap == 0)
        return m->n == 0 && m->slots == NULL;
    if ((m->cap & (m->cap - 1)) != 0 || m->n * 2u > m->cap)
        return 0;
    uint32_t mask = m->cap - 1, n = 0;
    for (uint32_t i = 0; i < m->cap; i++) {
        const rc_strmap_slot *s = &m->slots[i];
        if (!s->hash)
            continue;
        n++;
        if (s->key == NULL || s->key[s->len] != '\0')
            return 0;
        for (uint32_t j = (uint32_t)s->hash & mask; j != i; j = (j + 1) & mask)
            if (!m->slots[j].hash)
                return 0;
        if (rc_strmap_get(m, s->key, s->len) != &s->val)
            return 0;
    }
    return n == m->n;
}

/* ---- basics ---- */

static void test_empty(void)
{
    rc_strmap m;
    rc_strmap_init(&m);
    CU_ASSERT_PTR_NULL(rc_strmap_get(&m, "a", 1));
    CU_ASSERT_PTR_NULL(rc_strmap_get(&m, "", 0));
    CU_ASSERT_FALSE(rc_strmap_del(&m, "a", 1));
    CU_ASSERT_EQUAL(m.n, 0);
    rc_strmap_free(&m);
    rc_strmap_free(&m); /* free leaves an empty map: freeing again is harmless */
    CU_ASSERT_EQUAL(m.cap, 0);
}

/* The smallest maps are the most numerous (a million groups of one member
 * each, a session per join): their table grows with them from 2 slots. */
static void test_small_maps_stay_small(void)
{
    rc_strmap m;
    rc_strmap_init(&m);
    CU_ASSERT_EQUAL(rc_strmap_put(&m, "only", 4, 1), 0);
    CU_ASSERT_EQUAL(m.cap, 2);
    CU_ASSERT_EQUAL(rc_strmap_put(&m, "second", 6, 2), 0);
    CU_ASSERT_EQUAL(m.cap, 4);
    CU_ASSERT_EQUAL(rc_strmap_put(&m, "third", 5, 3), 0);
    CU_ASSERT_EQUAL(m.cap, 8);
    CU_ASSERT_PTR_NOT_NULL(rc_strmap_get(&m, "only", 4));
    CU_ASSERT_PTR_NOT_NULL(rc_strmap_get(&m, "second", 6));
    CU_ASSERT_PTR_NOT_NULL(rc_strmap_get(&m, "third", 5));
    CU_ASSERT_TRUE(rc_strmap_del(&m, "only", 4));
    CU_ASSERT_PTR_NULL(rc_strmap_get(&m, "only", 4));
    CU_ASSERT_EQUAL(*rc_strmap_get(&m, "third", 5), 3);
    rc_strmap_free(&m);
}

static void test_put_get_update_del(void)
{
    rc_strmap m;
    rc_strmap_init(&m);
    CU_ASSERT_EQUAL(rc_strmap_put(&m, "alpha", 5, 1), 0);
    CU_ASSERT_EQUAL(rc_strmap_put(&m, "beta", 4, 2), 0);
    CU_ASSERT_EQUAL(m.n, 2);
    CU_ASSERT_EQUAL(m.cap, 4); /* load at most 1/2 */

    uint64_t *v = rc_strmap_get(&m, "alpha", 5);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_EQUAL(*v, 1);
    v = rc_strmap_get(&m, "beta", 4);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_EQUAL(*v, 2);
    CU_ASSERT_PTR_NULL(rc_strmap_get(&m, "gamma", 5));
    CU_ASSERT_PTR_NULL(rc_strmap_get(&m, "alph", 4));   /* prefix */
    CU_ASSERT_PTR_NULL(rc_strmap_get(&m, "alphab", 6)); /* extension */

    /* update keeps one entry */
    CU_ASSERT_EQUAL(rc_strmap_put(&m, "alpha", 5, UINT64_MAX), 0);
    CU_ASSERT_EQUAL(m.n, 2);
    v = rc_strmap_get(&m, "alpha", 5);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_EQUAL(*v, UINT64_MAX);

    /* the returned pointer writes through */
    *v = 42;
    CU_ASSERT_EQUAL(*rc_strmap_get(&m, "alpha", 5), 42);

    /* the map owns a copy of the key */
    char buf[] = "delta";
    CU_ASSERT_EQUAL(rc_strmap_put(&m, buf, 5, 4), 0);
    buf[0] = 'X';
    CU_ASSERT_PTR_NOT_NULL(rc_strmap_get(&m, "delta", 5));
    CU_ASSERT_PTR_NULL(rc_strmap_get(&m, buf, 5));

    CU_ASSERT_TRUE(rc_strmap_del(&m, "alpha", 5));
    CU_ASSERT_FALSE(rc_strmap_del(&m, "alpha", 5));
    CU_ASSERT_PTR_NULL(rc_strmap_get(&m, "alpha", 5));
    CU_ASSERT_EQUAL(m.n, 2);
    CU_ASSERT_PTR_NOT_NULL(rc_strmap_get(&m, "beta", 4));

    /* re-insert after delete */
    CU_ASSERT_EQUAL(rc_strmap_put(&m, "alpha", 5, 7), 0);
    CU_ASSERT_EQUAL(*rc_strmap_get(&m, "alpha", 5), 7);
    CU_ASSERT_EQUAL(m.n, 3);
    CU_ASSERT_TRUE(map_consistent(&m));
    rc_strmap_free(&m);
    CU_ASSERT_EQUAL(m.n, 0);
    CU_ASSERT_EQUAL(m.cap, 0);
    CU_ASSERT_PTR_NULL(m.slots);
}

/* put_key hands back the map's copy of the key and the value it replaced:
 * 0 for a key that was not there, the old value for one that was, with
 * the same stored copy both times. */
static void test_put_key_old_value(void)
{
    rc_strmap m;
    rc_strmap_init(&m);
    const char *stored = NULL, *again = NULL;
    uint64_t old = 99;
    CU_ASSERT_EQUAL(rc_strmap_put_key(&m, "mid-1", 5, 7, &stored, &old), 0);
    CU_ASSERT_EQUAL(old, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(stored);
    CU_ASSERT_EQUAL(memcmp(stored, "mid-1", 6), 0); /* a NUL-terminated copy */
    CU_ASSERT_EQUAL(rc_strmap_put_key(&m, "mid-1", 5, 8, &again, &old), 0);
    CU_ASSERT_EQUAL(old, 7);
    CU_ASSERT_PTR_EQUAL(again, stored);
    CU_ASSERT_EQUAL(*rc_strmap_get(&m, "mid-1", 5), 8);
    CU_ASSERT_EQUAL(m.n, 1);
    CU_ASSERT_EQUAL(rc_strmap_put_key(&m, "mid-2", 5, 9, &again, NULL), 0); /* old is optional */
    CU_ASSERT_EQUAL(m.n, 2);
    rc_strmap_free(&m);
}

/* ---- growth and bulk deletion ---- */

static uint32_t grow_key(char *buf, uint32_t i)
{
    return (uint32_t)snprintf(buf, KEY_BUF, "user-%u", i);
}

static void test_growth_and_random_delete(void)
{
    rc_strmap m;
    rc_strmap_init(&m);
    char k[KEY_BUF];
    uint32_t resizes = 0, last_cap = 0;
    for (uint32_t i = 0; i < GROW_KEYS; i++) {
        CU_ASSERT_EQUAL_FATAL(rc_strmap_put(&m, k, grow_key(k, i), i), 0);
        if (m.cap != last_cap) {
            resizes++;
            last_cap = m.cap;
        }
    }
    CU_ASSERT_EQUAL(m.n, GROW_KEYS);
    CU_ASSERT(resizes >= 14); /* 8 -> 262144 */
    CU_ASSERT_TRUE(map_consistent(&m));

    uint32_t bad = 0;
    for (uint32_t i = 0; i < GROW_KEYS; i++) {
        uint64_t *v = rc_strmap_get(&m, k, grow_key(k, i));
        if (!v || *v != i)
            bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
    for (uint32_t i = GROW_KEYS; i < 2 * GROW_KEYS; i++)
        if (rc_strmap_get(&m, k, grow_key(k, i)))
            bad++;
    CU_ASSERT_EQUAL(bad, 0);

    /* Delete half, in random order. With 100k keys in a 256k table, many
     * runs cross the end of the table, so shifts wrap around. */
    uint32_t *order = malloc(GROW_KEYS * sizeof(*order));
    uint8_t *gone = calloc(GROW_KEYS, 1);
    CU_ASSERT_FATAL(order != NULL && gone != NULL);
    for (uint32_t i = 0; i < GROW_KEYS; i++)
        order[i] = i;
    uint64_t seed = GROW_SEED;
    shuffle(order, GROW_KEYS, &seed);
    for (uint32_t i = 0; i < GROW_KEYS / 2; i++) {
        if (!rc_strmap_del(&m, k, grow_key(k, order[i])))
            bad++;
        gone[order[i]] = 1;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(m.n, GROW_KEYS - GROW_KEYS / 2);
    CU_ASSERT_TRUE(map_consistent(&m));

    uint32_t lost = 0, ghosts = 0;
    for (uint32_t i = 0; i < GROW_KEYS; i++) {
        uint64_t *v = rc_strmap_get(&m, k, grow_key(k, i));
        if (gone[i] && v)
            ghosts++;
        if (!gone[i] && (!v || *v != i))
            lost++;
    }
    CU_ASSERT_EQUAL(lost, 0);
    CU_ASSERT_EQUAL(ghosts, 0);
    for (uint32_t i = 0; i < GROW_KEYS / 2; i++)
        if (rc_strmap_del(&m, k, grow_key(k, order[i])))
            bad++;
    CU_ASSERT_EQUAL(bad, 0);

    free(order);
    free(gone);
    rc_strmap_free(&m);
}

/* ---- wrap-around, deterministically ---- */

/* Finds a key "w<i>" whose home slot in a table of WRAP_CAP is `home`,
 * skipping the first `skip` matches. */
static uint32_t key_with_home(char *buf, uint32_t home, uint32_t skip)
{
    for (uint32_t i = 0;; i++) {
        uint32_t len = (uint32_t)snprintf(buf, KEY_BUF, "w%u", i);
        uint64_t h = rc_hash64(buf, len);
        if ((uint32_t)(h ? h : 1) % WRAP_CAP == home && skip-- == 0)
            return len;
    }
}

static void test_wraparound_every_delete_order(void)
{
    /* Homes 7, 7, 7, 0 in an 8-slot table: the run is slots 7, 0, 1, 2. */
    static const uint32_t homes[WRAP_KEYS] = { WRAP_CAP - 1, WRAP_CAP - 1, WRAP_CAP - 1, 0 };
    static const uint32_t skips[WRAP_KEYS] = { 0, 1, 2, 0 };
    char keys[WRAP_KEYS][KEY_BUF];
    uint32_t lens[WRAP_KEYS];
    for (uint32_t k = 0; k < WRAP_KEYS; k++)
        lens[k] = key_with_home(keys[k], homes[k], skips[k]);

    /* Every deletion order of every non-empty subset: 4! orders, deleting a
     * prefix of each of length 1..4. */
    uint32_t perm[WRAP_KEYS] = { 0, 1, 2, 3 };
    uint32_t bad = 0, cases = 0;
    for (uint32_t p = 0; p < 24; p++) {
        /* p-th permutation via factorial digits */
        uint32_t pool[WRAP_KEYS] = { 0, 1, 2, 3 }, left = WRAP_KEYS, x = p;
        for (uint32_t i = 0; i < WRAP_KEYS; i++) {
            uint32_t f = 1;
            for (uint32_t j = 2; j < left; j++)
                f *= j;
            uint32_t d = x / f;
            x %= f;
            perm[i] = pool[d];
            for (uint32_t j = d; j + 1 < left; j++)
                pool[j] = pool[j + 1];
            left--;
        }
        for (uint32_t ndel = 1; ndel <= WRAP_KEYS; ndel++) {
            rc_strmap m;
            rc_strmap_init(&m);
            for (uint32_t k = 0; k < WRAP_KEYS; k++)
                if (rc_strmap_put(&m, keys[k], lens[k], k) != 0)
                    bad++;
            if (m.cap != WRAP_CAP || !m.slots[WRAP_CAP - 1].hash || !m.slots[0].hash ||
                !m.slots[1].hash || !m.slots[2].hash)
                bad++; /* the layout this test relies on */
            uint8_t gone[WRAP_KEYS] = { 0 };
            for (uint32_t i = 0; i < ndel; i++) {
                if (!rc_strmap_del(&m, keys[perm[i]], lens[perm[i]]))
                    bad++;
                gone[perm[i]] = 1;
                if (!map_consistent(&m))
                    bad++;
                for (uint32_t k = 0; k < WRAP_KEYS; k++) {
                    uint64_t *v = rc_strmap_get(&m, keys[k], lens[k]);
                    if (gone[k] ? v != NULL : (v == NULL || *v != k))
                        bad++;
                }
            }
            cases++;
            rc_strmap_free(&m);
        }
    }
    CU_ASSERT_EQUAL(cases, 24 * WRAP_KEYS);
    CU_ASSERT_EQUAL(bad, 0);
}

/* ---- binary keys ---- */

static void test_embedded_nul_and_prefixes(void)
{
    static const struct { const char *p; uint32_t len; } keys[] = {
        { "", 0 },        { "a", 1 },          { "a\0", 2 },     { "a\0b", 3 },
        { "a\0c", 3 },    { "a\0\0", 3 },      { "ab", 2 },      { "\0", 1 },
        { "\0\0", 2 },    { "alice\0m1", 8 },  { "alice\0m", 7 }, { "alic\0em1", 8 },
        { "alice\0m1\0", 9 },
    };
    const uint32_t n = sizeof(keys) / sizeof(keys[0]);
    rc_strmap m;
    rc_strmap_init(&m);
    for (uint32_t i = 0; i < n; i++)
        CU_ASSERT_EQUAL(rc_strmap_put(&m, keys[i].p, keys[i].len, 100 + i), 0);
    CU_ASSERT_EQUAL(m.n, n);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t *v = rc_strmap_get(&m, keys[i].p, keys[i].len);
        CU_ASSERT_PTR_NOT_NULL(v);
        if (v)
            CU_ASSERT_EQUAL(*v, 100 + i);
    }
    CU_ASSERT_PTR_NULL(rc_strmap_get(&m, "a\0d", 3));
    CU_ASSERT_PTR_NULL(rc_strmap_get(&m, "\0\0\0", 3));
    CU_ASSERT_PTR_NULL(rc_strmap_get(&m, "alice", 5));

    /* the stored copy keeps every byte */
    for (uint32_t s = 0; s < m.cap; s++) {
        if (m.slots[s].hash && m.slots[s].len == 3 && m.slots[s].key[0] == 'a') {
            CU_ASSERT_EQUAL(m.slots[s].key[1], '\0');
            CU_ASSERT_EQUAL(m.slots[s].key[3], '\0');
        }
    }

    /* deleting one NUL variant leaves its neighbours alone */
    CU_ASSERT_TRUE(rc_strmap_del(&m, "a\0", 2));
    CU_ASSERT_PTR_NULL(rc_strmap_get(&m, "a\0", 2));
    CU_ASSERT_PTR_NOT_NULL(rc_strmap_get(&m, "a", 1));
    CU_ASSERT_PTR_NOT_NULL(rc_strmap_get(&m, "a\0b", 3));
    CU_ASSERT_PTR_NOT_NULL(rc_strmap_get(&m, "a\0\0", 3));
    CU_ASSERT_TRUE(rc_strmap_del(&m, "", 0));
    CU_ASSERT_PTR_NULL(rc_strmap_get(&m, "", 0));
    CU_ASSERT_PTR_NOT_NULL(rc_strmap_get(&m, "\0", 1));
    CU_ASSERT_EQUAL(m.n, n - 2);
    CU_ASSERT_TRUE(map_consistent(&m));
    rc_strmap_free(&m);
}

/* ---- deletes followed by free (double-free regression) ---- */

static void test_delete_then_free(void)
{
    char k[KEY_BUF];
    /* A few deletes, including ones whose successors shift back, then free:
     * under ASan a key freed by del and again by free aborts. */
    rc_strmap m;
    rc_strmap_init(&m);
    for (uint32_t i = 0; i < 1000; i++)
        CU_ASSERT_EQUAL(rc_strmap_put(&m, k, grow_key(k, i), i), 0);
    for (uint32_t i = 0; i < 1000; i += 3)
        CU_ASSERT_TRUE(rc_strmap_del(&m, k, grow_key(k, i)));
    CU_ASSERT_TRUE(map_consistent(&m));
    for (uint32_t i = 0; i < m.cap; i++)
        if (!m.slots[i].hash)
            CU_ASSERT_PTR_NULL(m.slots[i].key);
    rc_strmap_free(&m);

    /* everything deleted, then free */
    rc_strmap_init(&m);
    for (uint32_t i = 0; i < 100; i++)
        CU_ASSERT_EQUAL(rc_strmap_put(&m, k, grow_key(k, i), i), 0);
    for (uint32_t i = 0; i < 100; i++)
        CU_ASSERT_TRUE(rc_strmap_del(&m, k, grow_key(k, i)));
    CU_ASSERT_EQUAL(m.n, 0);
    CU_ASSERT_PTR_NULL(rc_strmap_get(&m, k, grow_key(k, 5)));
    rc_strmap_free(&m);

    /* delete then grow (the moved-out slots are copied by grow), then free */
    rc_strmap_init(&m);
    for (uint32_t i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(rc_strmap_put(&m, k, grow_key(k, i), i), 0);
    CU_ASSERT_TRUE(rc_strmap_del(&m, k, grow_key(k, 0)));
    CU_ASSERT_TRUE(rc_strmap_del(&m, k, grow_key(k, 1)));
    for (uint32_t i = 10; i < 40; i++)
        CU_ASSERT_EQUAL(rc_strmap_put(&m, k, grow_key(k, i), i), 0);
    CU_ASSERT_EQUAL(m.n, 32);
    CU_ASSERT_TRUE(map_consistent(&m));
    rc_strmap_free(&m);
}

/* ---- randomized differential test ---- */

/* Key id -> bytes: bijective base 3 over { NUL, 'a', 'b' }, so ids map to
 * distinct keys (id 0 is the empty key) that share prefixes and embed NULs. */
static uint32_t diff_key(char *buf, uint32_t id)
{
    static const char digits[3] = { '\0', 'a', 'b' };
    uint32_t len = 0;
    while (id > 0) {
        id--;
        buf[len++] = digits[id % 3];
        id /= 3;
    }
    return len;
}

/* Inverse of diff_key. */
static uint32_t diff_id(const char *key, uint32_t len)
{
    uint32_t id = 0;
    for (uint32_t i = len; i-- > 0;)
        id = id * 3 + (key[i] == '\0' ? 0u : key[i] == 'a' ? 1u : 2u) + 1;
    return id;
}

/* The reference: an array of the live keys (as ids) and their values, plus
 * each id's position in it for O(1) lookup and removal. */
typedef struct ref_map {
    uint32_t *ids;
    uint64_t *vals;
    uint32_t n;
    uint32_t *pos; /* by id: index in ids + 1, or 0 when absent */
} ref_map;

static void ref_put(ref_map *r, uint32_t id, uint64_t v)
{
    if (!r->pos[id]) {
        r->ids[r->n] = id;
        r->pos[id] = ++r->n;
    }
    r->vals[r->pos[id] - 1] = v;
}

static void ref_del(ref_map *r, uint32_t id)
{
    uint32_t p = r->pos[id];
    if (!p)
        return;
    r->n--;
    r->ids[p - 1] = r->ids[r->n];
    r->vals[p - 1] = r->vals[r->n];
    r->pos[r->ids[p - 1]] = p;
    r->pos[id] = 0;
}

/* Full comparison: every live key maps to its value, and every stored slot
 * is a live key with that value. Returns the number of mismatches. */
static uint32_t check_all(const rc_strmap *m, const ref_map *r)
{
    char k[DIFF_KEY_MAX];
    uint32_t bad = 0;
    for (uint32_t i = 0; i < r->n; i++) {
        const uint64_t *v = rc_strmap_get(m, k, diff_key(k, r->ids[i]));
        if (v == NULL || *v != r->vals[i])
            bad++;
    }
    for (uint32_t i = 0; i < m->cap; i++) {
        const rc_strmap_slot *sl = &m->slots[i];
        if (!sl->hash)
            continue;
        uint32_t id = sl->len < DIFF_KEY_MAX ? diff_id(sl->key, sl->len) : DIFF_POOL;
        if (id >= DIFF_POOL || !r->pos[id] || r->vals[r->pos[id] - 1] != sl->val)
            bad++;
    }
    if (m->n != r->n || !map_consistent(m))
        bad++;
    return bad;
}

/* nops random puts, dels and gets, each aimed half the time at a live key
 * and half at a random id, checked op by op against the reference. With
 * max_live keys stored, the next op deletes a live one. */
static void differential(uint32_t nops, uint32_t phase, uint32_t max_live, uint64_t seed)
{
    ref_map r = { calloc(nops, sizeof(uint32_t)), calloc(nops, sizeof(uint64_t)), 0,
                  calloc(DIFF_POOL, sizeof(uint32_t)) };
    CU_ASSERT_FATAL(r.ids != NULL && r.vals != NULL && r.pos != NULL);
    rc_strmap m;
    rc_strmap_init(&m);
    char k[DIFF_KEY_MAX];
    uint32_t bad = 0, puts = 0, dels = 0, gets = 0, hits = 0, peak = 0, cap_peak = 0;

    for (uint32_t op = 0; op < nops && !bad; op++) {
        uint32_t put_pct = ((op / phase) % 2 == 0) ? 60 : 20;
        uint32_t dice = rnd_below(&seed, 100);
        bool live = r.n > 0 && (splitmix64(&seed) & 1);
        if (r.n >= max_live) {
            dice = 69; /* a delete */
            live = true;
        }
        uint32_t id = live ? r.ids[rnd_below(&seed, r.n)] : rnd_below(&seed, DIFF_POOL);
        uint32_t len = diff_key(k, id);
        if (dice < put_pct) {
            uint64_t v = splitmix64(&seed);
            bad += rc_strmap_put(&m, k, len, v) != 0;
            ref_put(&r, id, v);
            puts++;
        } else if (dice < 70) {
            bad += rc_strmap_del(&m, k, len) != (r.pos[id] != 0);
            hits += r.pos[id] != 0;
            ref_del(&r, id);
            dels++;
        } else {
            const uint64_t *v = rc_strmap_get(&m, k, len);
            bad += r.pos[id] ? (v == NULL || *v != r.vals[r.pos[id] - 1]) : v != NULL;
            gets++;
        }
        bad += m.n != r.n;
        if ((op + 1) % DIFF_CHECK_EVERY == 0 || (phase < DIFF_CHECK_EVERY && op % 97 == 0))
            bad += check_all(&m, &r);
        if (bad)
            fprintf(stderr, "differential: first mismatch at op %u\n", op);
        peak = r.n > peak ? r.n : peak;
        cap_peak = m.cap > cap_peak ? m.cap : cap_peak;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(puts > 0 && dels > hits && hits > 0 && gets > 0);
    CU_ASSERT_EQUAL(check_all(&m, &r), 0);
    printf("(%u puts, %u dels of which %u hit, %u gets; peak %u keys in %u slots) ", puts,
           dels, hits, gets, peak, cap_peak);

    rc_strmap_free(&m);
    free(r.ids);
    free(r.vals);
    free(r.pos);
}

static void test_differential(void)
{
    differential(DIFF_OPS, DIFF_PHASE, UINT32_MAX, DIFF_SEED);
}

static void test_differential_small_table(void)
{
    differential(DIFF_SMALL_OPS, DIFF_SMALL_PHASE, DIFF_SMALL_LIVE, DIFF_SEED + 1);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("strmap", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "empty map", test_empty) ||
        !CU_add_test(s, "small maps stay small", test_small_maps_stay_small) ||
        !CU_add_test(s, "put/get/update/del", test_put_get_update_del) ||
        !CU_add_test(s, "put_key hands back the replaced value", test_put_key_old_value) ||
        !CU_add_test(s, "100k keys, delete half at random", test_growth_and_random_delete) ||
        !CU_add_test(s, "wrap-around: every delete order", test_wraparound_every_delete_order) ||
        !CU_add_test(s, "embedded NULs and shared prefixes", test_embedded_nul_and_prefixes) ||
        !CU_add_test(s, "delete then free", test_delete_then_free) ||
        !CU_add_test(s, "differential vs reference", test_differential) ||
        !CU_add_test(s, "differential, small table", test_differential_small_table)) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    return rc_test_run();
}
