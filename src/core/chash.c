/*
 * Consistent hash ring with virtual nodes (see chash.h).
 *
 * The ring is a sorted array of points (hash, shard). A point's hash is
 * XXH3-64 of 8 bytes: the shard id then the vnode index, each 32-bit little
 * endian, so placement is the same on every host and every run. Points are
 * ordered by hash, then by shard id, so that even a hash collision between
 * two shards resolves the same way everywhere.
 *
 * Measured with 160 vnodes on shards 0..7: shard arcs are within 0.89..1.07
 * of the mean (100,000 random group ids: max/mean about 1.07); adding shard 8
 * moves about 10.3% of the keys, all to shard 8 (see tests/unit/test_chash.c).
 *
 * Lookup is O(1) on average: an index of 2^k buckets by the top k bits of
 * the hash (at least two buckets per point, build_index) gives the first
 * point of the key's bucket, and a bucket holds under one point on
 * average, so a lookup reads one index entry and one or two points.
 *
 * add merges the new shard's sorted points into the array; remove filters
 * its points out. Both build a fresh array and swap it in only on success,
 * so a failed call leaves the ring unchanged.
 */
#include "core/chash.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define RC_CHASH_POINT_KEY_BYTES 8u /* shard id (4, LE) + vnode index (4, LE) */

typedef struct rc_chash_point {
    uint64_t hash;  /* position on the ring */
    uint32_t shard; /* shard owning the arc ending at this point */
} rc_chash_point;

/* Buckets of the lookup index: at least RC_CHASH_INDEX_PER_POINT per point
 * (so a bucket holds well under one point on average), a power of two, at
 * most 2^RC_CHASH_INDEX_MAX_BITS. */
#define RC_CHASH_INDEX_PER_POINT 2u
#define RC_CHASH_INDEX_MAX_BITS 16u

struct rc_chash {
    uint32_t vnodes;        /* points per shard */
    uint32_t nshards;       /* shards on the ring */
    size_t npoints;         /* nshards * vnodes */
    rc_chash_point *points; /* sorted by (hash, shard); NULL when empty */
    uint32_t *index;        /* [b]: first point whose hash's top index_bits bits are >= b; NULL when empty */
    uint32_t index_bits;
};

/* The lookup index over sorted points: bucket b (the top `bits` bits of a
 * hash) starts at the first point at or after b's range. 0 or -1 (ENOMEM). */
static int build_index(const rc_chash_point *pts, size_t n, uint32_t **out, uint32_t *out_bits)
{
    *out = NULL;
    *out_bits = 0;
    if (n == 0)
        return 0;
    uint32_t bits = 1;
    while (bits < RC_CHASH_INDEX_MAX_BITS && (UINT64_C(1) << bits) < (uint64_t)n * RC_CHASH_INDEX_PER_POINT)
        bits++;
    size_t nb = (size_t)1 << bits;
    uint32_t *idx = malloc(nb * sizeof(*idx));
    if (!idx)
        return -1;
    size_t i = 0;
    for (size_t b = 0; b < nb; b++) {
        while (i < n && (pts[i].hash >> (64 - bits)) < b)
            i++;
        idx[b] = (uint32_t)i;
    }
    *out = idx;
    *out_bits = bits;
    return 0;
}

uint64_t rc_hash64(const void *p, size_t len)
{
    return XXH3_64bits(p, len);
}

static void put_le32(unsigned char *out, uint32_t v)
{
    for (unsigned i = 0; i < sizeof(uint32_t); i++)
        out[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t point_hash(uint32_t shard, uint32_t vnode)
{
    unsigned char key[RC_CHASH_POINT_KEY_BYTES];
    put_le32(key, shard);
    put_le32(key + sizeof(uint32_t), vnode);
    return rc_hash64(key, sizeof key);
}

static int point_cmp(const rc_chash_point *a, const rc_chash_point *b)
{
    if (a->hash != b->hash)
        return a->hash < b->hash ? -1 : 1;
    if (a->shard != b->shard)
        return a->shard < b->shard ? -1 : 1;
    return 0;
}

static int point_qsort_cmp(const void *a, const void *b)
{
    return point_cmp(a, b);
}

rc_chash *rc_chash_create(uint32_t vnodes_per_shard)
{
    if (vnodes_per_shard == 0 || vnodes_per_shard > RC_CHASH_MAX_VNODES)
        return NULL;
    rc_chash *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->vnodes = vnodes_per_shard;
    return c;
}

void rc_chash_destroy(rc_chash *c)
{
    if (c == NULL)
        return;
    free(c->points);
    free(c->index);
    free(c);
}

static bool has_shard(const rc_chash *c, uint32_t shard)
{
    for (size_t i = 0; i < c->npoints; i++)
        if (c->points[i].shard == shard)
            return true;
    return false;
}

/* Merge two sorted point arrays into out (room for na + nb). */
static void merge_points(const rc_chash_point *a, size_t na, const rc_chash_point *b, size_t nb,
                         rc_chash_point *out)
{
    size_t i = 0, j = 0, k = 0;
    while (i < na && j < nb)
        out[k++] = point_cmp(&a[i], &b[j]) <= 0 ? a[i++] : b[j++];
    while (i < na)
        out[k++] = a[i++];
    while (j < nb)
        out[k++] = b[j++];
}

int rc_chash_add(rc_chash *c, uint32_t shard)
{
    if (shard == RC_CHASH_NO_SHARD || has_shard(c, shard))
        return -1;
    size_t total = c->npoints + c->vnodes;
    if (total > SIZE_MAX / sizeof(rc_chash_point))
        return -1;
    rc_chash_point *fresh = malloc(c->vnodes * sizeof *fresh);
    rc_chash_point *merged = malloc(total * sizeof *merged);
    if (fresh == NULL || merged == NULL) {
        free(fresh);
        free(merged);
        return -1;
    }
    for (uint32_t v = 0; v < c->vnodes; v++)
        fresh[v] = (rc_chash_point){ .hash = point_hash(shard, v), .shard = shard };
    qsort(fresh, c->vnodes, sizeof *fresh, point_qsort_cmp);
    merge_points(c->points, c->npoints, fresh, c->vnodes, merged);
    free(fresh);
    uint32_t *index, bits;
    if (build_index(merged, total, &index, &bits) != 0) {
        free(merged);
        return -1;
    }
    free(c->points);
    free(c->index);
    c->index = index;
    c->index_bits = bits;
    c->points = merged;
    c->npoints = total;
    c->nshards++;
    return 0;
}

int rc_chash_remove(rc_chash *c, uint32_t shard)
{
    if (!has_shard(c, shard))
        return -1;
    size_t remaining = c->npoints - c->vnodes;
    rc_chash_point *kept = NULL;
    if (remaining > 0) {
        kept = malloc(remaining * sizeof *kept);
        if (kept == NULL)
            return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < c->npoints; i++)
        if (c->points[i].shard != shard)
            kept[k++] = c->points[i];
    uint32_t *index, bits;
    if (build_index(kept, remaining, &index, &bits) != 0) {
        free(kept);
        return -1;
    }
    free(c->index);
    c->index = index;
    c->index_bits = bits;
    free(c->points);
    c->points = kept;
    c->npoints = remaining;
    c->nshards--;
    return 0;
}

uint32_t rc_chash_lookup_hash(const rc_chash *c, uint64_t h)
{
    if (c->npoints == 0)
        return RC_CHASH_NO_SHARD;
    /* First point with hash >= h; past the last point, wrap to the first.
     * Every point before index[b] is below h's bucket, so the answer is in
     * [index[b], index[b + 1]] (the first point of a later bucket). */
    size_t b = (size_t)(h >> (64 - c->index_bits)), nb = (size_t)1 << c->index_bits;
    size_t i = c->index[b], end = b + 1 < nb ? c->index[b + 1] : c->npoints;
    while (i < end && c->points[i].hash < h)
        i++;
    return c->points[i == c->npoints ? 0 : i].shard;
}

uint32_t rc_chash_lookup(const rc_chash *c, const void *key, size_t len)
{
    return rc_chash_lookup_hash(c, rc_hash64(key, len));
}

uint32_t rc_chash_shards(const rc_chash *c)
{
    return c->nshards;
}
