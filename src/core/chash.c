/*
 * Consistent hash ring with virtual nodes (see chash.h).
 *
 * Tokens. The ring is a sorted array of tokens (position, shard), all at
 * distinct positions. The token at position t owns the arc (t', t], t' being
 * the token before it (wrapping): the keys whose successor it is.
 *
 * Placement. Shard 0 puts its `vnodes` tokens at XXH3-64 of 8 bytes (shard
 * id 0 then the token's index, each 32-bit little endian). Shard k >= 1
 * joins the ring of shards 0..k-1 and takes from each shard j exactly
 * owned(j) / (k+1) of the circle, which is 1/(k(k+1)) when j owns 1/k: after
 * it, every shard owns 1/(k+1). It does so with its tokens: a token put
 * inside an arc (t', t] of shard j, at t' + d, takes the part (t', t' + d]
 * of that arc and leaves (t' + d, t] to j. Shard k has max(vnodes, k)
 * tokens, shared out as evenly as they go among the k shards (place_shard);
 * the c tokens taken from shard j go into j's c largest arcs, each arc
 * giving the same fraction of itself, so that together they give exactly
 * j's due (to under one part in 2^64 per token). When j's c largest arcs
 * together are not larger than the due, more of its arcs are used.
 * Everything is integer arithmetic on the positions, so the ring for
 * (n, vnodes) is the same on every host and every run, and the ring of
 * shards 0..n-1 is the ring of 0..n-2 plus shard n-1's tokens: adding a
 * shard moves keys only to it, removing the last one moves only its keys.
 *
 * Measured (tests/unit/test_chash.c, bench/micro): at 160 vnodes every
 * shard's share of the circle is 1/n to within 1e-15 for n = 1..16; over
 * 200,000 random group ids the fullest shard holds at most what sampling
 * noise gives (max/mean at most 1.015 for 2..16 shards), as Jump hash does.
 *
 * The table. The top k bits of a hash pick one of 2^k slices of the circle
 * (at least RC_CHASH_TABLE_PER_TOKEN slices per token, k at most
 * RC_CHASH_TABLE_MAX_BITS). table[slice] is the shard that owns all of the
 * slice, or RC_CHASH_SPLIT when the slice holds a boundary between two
 * shards (at most one slice per token, so under 1/RC_CHASH_TABLE_PER_TOKEN
 * of them); a split slice is answered from the tokens, starting at
 * index[slice], the first token at or after the slice (a token or two to
 * read). Both arrays are rebuilt whenever the tokens change.
 *
 * add and remove build fresh arrays and swap them in only on success, so a
 * failed call leaves the ring unchanged.
 */
#include "core/chash.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#define XXH_INLINE_ALL /* the hash is on every request's path: no call through the library */
#include <xxhash.h>

#define RC_CHASH_POINT_KEY_BYTES 8u   /* shard id (4, LE) + token index (4, LE) */
#define RC_CHASH_TABLE_PER_TOKEN 32u  /* table entries per token, at least (so split slices stay under 1/32) */
#define RC_CHASH_TABLE_MAX_BITS 20u   /* at most 2^20 entries: 2 MiB of shard ids, 4 MiB of token indexes */
#define RC_CHASH_SPLIT UINT16_MAX     /* table entry: the slice holds a boundary between shards */

typedef unsigned __int128 rc_u128; /* arc lengths: one arc can be the whole circle, 2^64 */
#define RC_CHASH_CIRCLE ((rc_u128)1 << 64)

typedef struct rc_chash_point {
    uint64_t pos;   /* position on the circle */
    uint32_t shard; /* shard owning the arc ending here */
} rc_chash_point;

/* The lookup structure derived from sorted tokens. */
typedef struct rc_chash_table {
    uint16_t *owner;  /* [slice]: its only shard, or RC_CHASH_SPLIT */
    uint32_t *index;  /* [slice]: first token at or after the slice's start */
    uint32_t bits;    /* 2^bits slices */
    size_t nsplit;    /* slices marked RC_CHASH_SPLIT */
} rc_chash_table;

struct rc_chash {
    /* read by every lookup: first */
    size_t npoints;         /* tokens on the ring */
    uint32_t shift;         /* 64 - table bits: a hash's slice is h >> shift */
    const uint16_t *owner;  /* = tab.owner */
    rc_chash_point *points; /* sorted by position; NULL when empty */
    rc_chash_table tab;
    uint32_t vnodes;        /* tokens per shard (at least) */
    uint32_t nshards;       /* shards on the ring: ids 0..nshards-1 */
};

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

static int point_qsort_cmp(const void *pa, const void *pb)
{
    const rc_chash_point *a = pa, *b = pb;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* Length of the arc ending at token i of n sorted tokens. */
static rc_u128 arc_of(const rc_chash_point *p, size_t n, size_t i)
{
    if (n == 1)
        return RC_CHASH_CIRCLE;
    return (uint64_t)(p[i].pos - p[i ? i - 1 : n - 1].pos); /* mod 2^64: the first arc wraps */
}

/* ---- the table ---- */

static void table_free(rc_chash_table *t)
{
    free(t->owner);
    free(t->index);
    *t = (rc_chash_table){ 0 };
}

/* The table over n sorted tokens (n >= 1). 0 or -1 (ENOMEM). */
static int table_build(const rc_chash_point *p, size_t n, rc_chash_table *t)
{
    *t = (rc_chash_table){ .bits = 1 };
    while (t->bits < RC_CHASH_TABLE_MAX_BITS && (UINT64_C(1) << t->bits) < (uint64_t)n * RC_CHASH_TABLE_PER_TOKEN)
        t->bits++;
    size_t nb = (size_t)1 << t->bits;
    t->owner = malloc(nb * sizeof(*t->owner));
    t->index = malloc(nb * sizeof(*t->index));
    if (!t->owner || !t->index) {
        table_free(t);
        return -1;
    }
    size_t i = 0;
    for (size_t b = 0; b < nb; b++) {
        while (i < n && (p[i].pos >> (64 - t->bits)) < b)
            i++;
        t->index[b] = (uint32_t)i;
    }
    for (size_t b = 0; b < nb; b++) {
        /* A key of slice b has its successor among the slice's tokens or,
         * past them, the next token (wrapping): one shard for all of them,
         * or the slice is split. */
        size_t end = b + 1 < nb ? t->index[b + 1] : n;
        uint32_t owner = p[end == n ? 0 : end].shard;
        for (size_t k = t->index[b]; k < end && owner != RC_CHASH_SPLIT; k++)
            if (p[k].shard != owner)
                owner = RC_CHASH_SPLIT;
        t->owner[b] = (uint16_t)owner;
        t->nsplit += owner == RC_CHASH_SPLIT;
    }
    return 0;
}

/* Swaps in new tokens (malloc'd, sorted; NULL when n is 0), and with
 * `table` their table, freeing the old ones. 0, or -1 (ENOMEM building the
 * table: pts is freed, the ring unchanged). Without `table` the ring has no
 * table until a later install with one (rc_chash_build's steps). */
static int install(rc_chash *c, rc_chash_point *pts, size_t n, uint32_t nshards, bool table)
{
    rc_chash_table t = { 0 };
    if (table && n > 0 && table_build(pts, n, &t) != 0) {
        free(pts);
        return -1;
    }
    free(c->points);
    table_free(&c->tab);
    c->points = pts;
    c->npoints = n;
    c->nshards = nshards;
    c->tab = t;
    c->owner = t.owner;
    c->shift = 64 - t.bits;
    return 0;
}

/* ---- placement ---- */

/* Shard 0: vnodes distinct positions from XXH3 of (0, index). NULL on ENOMEM. */
static rc_chash_point *place_first(uint32_t vnodes)
{
    rc_chash_point *p = malloc(vnodes * sizeof(*p));
    if (!p)
        return NULL;
    uint32_t n = 0, next = 0;
    while (n < vnodes) { /* a repeated position (never seen in practice) takes the next index */
        while (n < vnodes)
            p[n++] = (rc_chash_point){ point_hash(0, next++), 0 };
        qsort(p, n, sizeof(*p), point_qsort_cmp);
        uint32_t k = 1;
        for (uint32_t i = 1; i < n; i++)
            if (p[i].pos != p[k - 1].pos)
                p[k++] = p[i];
        n = k;
    }
    return p;
}

/* What choosing arcs looks at: the tokens and their arcs' lengths. */
typedef struct arcs {
    const rc_chash_point *p;
    const rc_u128 *len;
} arcs;

/* Token a's arc is taken before token b's: longer, then earlier on the circle. */
static bool arc_before(const arcs *x, uint32_t a, uint32_t b)
{
    if (x->len[a] != x->len[b])
        return x->len[a] > x->len[b];
    return x->p[a].pos < x->p[b].pos;
}

static void swap_u32(uint32_t *a, uint32_t *b)
{
    uint32_t t = *a;
    *a = *b;
    *b = t;
}

/* Reorders ix[0..n) so that its first `top` entries are the `top` arcs
 * taken first (arc_before; a total order, so the set is well defined), in
 * no particular order. Quickselect with a median-of-three pivot. */
static void select_top(const arcs *x, uint32_t *ix, size_t n, size_t top)
{
    size_t lo = 0, hi = n; /* invariant: ix[0..lo) come before ix[lo..hi), which come before ix[hi..n) */
    while (lo < top && top < hi) {
        size_t mid = lo + (hi - lo) / 2, last = hi - 1;
        if (arc_before(x, ix[mid], ix[lo]))
            swap_u32(&ix[mid], &ix[lo]);
        if (arc_before(x, ix[last], ix[lo]))
            swap_u32(&ix[last], &ix[lo]);
        if (arc_before(x, ix[mid], ix[last]))
            swap_u32(&ix[mid], &ix[last]); /* the median of the three is now at last */
        size_t s = lo;
        for (size_t i = lo; i < last; i++)
            if (arc_before(x, ix[i], ix[last]))
                swap_u32(&ix[i], &ix[s++]);
        swap_u32(&ix[s], &ix[last]); /* the pivot is at its rank, s */
        if (s < top)
            lo = s + 1;
        else if (s > top)
            hi = s;
        else
            break;
    }
}

/* Shard k's tokens taken from shard j: `want` of j's arcs (ix, n of them),
 * more if those are too small for the due, each giving the same fraction
 * of itself. Appends to out; returns how many were placed. */
static size_t carve_shard(const arcs *x, size_t npoints, uint32_t *ix, size_t n, size_t want, rc_u128 due,
                          uint32_t k, rc_chash_point *out)
{
    rc_u128 sum = 0;
    for (want = want < n ? want : n;; want = 2 * want < n ? 2 * want : n) {
        select_top(x, ix, n, want);
        sum = 0;
        for (size_t i = 0; i < want; i++)
            sum += x->len[ix[i]];
        if (sum > due || want == n)
            break;
    }
    size_t placed = 0;
    for (size_t i = 0; i < want && sum > due; i++) {
        /* d < len, as due < sum: the token lands strictly inside the arc. */
        uint32_t t = ix[i];
        uint64_t d = (uint64_t)(x->len[t] * due / sum); /* len * due < 2^128: both are at most 2^64 */
        uint64_t from = x->p[t ? t - 1 : npoints - 1].pos;
        if (d > 0)
            out[placed++] = (rc_chash_point){ from + d, k };
    }
    return placed;
}

/* Shard k's tokens on the ring p (n sorted tokens of shards 0..k-1): into
 * *out (malloc'd, sorted), their number in *nout. 0 or -1 (ENOMEM). */
static int place_shard(const rc_chash_point *p, size_t n, uint32_t k, uint32_t vnodes, rc_chash_point **out,
                       size_t *nout)
{
    rc_u128 *len = malloc(n * sizeof(*len));
    uint32_t *ix = malloc(n * sizeof(*ix));
    size_t *first = calloc((size_t)k + 1, sizeof(*first)); /* shard j's tokens: ix[first[j]..first[j+1]) */
    rc_u128 *owned = calloc(k, sizeof(*owned));
    rc_chash_point *fresh = malloc(n * sizeof(*fresh)); /* at most one token per arc */
    int rc = len && ix && first && owned && fresh ? 0 : -1;
    if (rc == 0) {
        for (size_t i = 0; i < n; i++) {
            len[i] = arc_of(p, n, i);
            owned[p[i].shard] += len[i];
            first[p[i].shard + 1]++;
        }
        for (uint32_t j = 0; j < k; j++)
            first[j + 1] += first[j];
        size_t *fill = calloc(k, sizeof(*fill));
        rc = fill ? 0 : -1;
        for (size_t i = 0; fill && i < n; i++)
            ix[first[p[i].shard] + fill[p[i].shard]++] = (uint32_t)i;
        free(fill);
    }
    size_t placed = 0;
    uint32_t tokens = vnodes > k ? vnodes : k;
    arcs x = { p, len };
    for (uint32_t j = 0; rc == 0 && j < k; j++) {
        size_t want = tokens / k + (j < tokens % k);
        placed += carve_shard(&x, n, ix + first[j], first[j + 1] - first[j], want, owned[j] / (k + 1), k,
                              fresh + placed);
    }
    free(len);
    free(ix);
    free(first);
    free(owned);
    if (rc != 0) {
        free(fresh);
        return -1;
    }
    qsort(fresh, placed, sizeof(*fresh), point_qsort_cmp);
    *out = fresh;
    *nout = placed;
    return 0;
}

/* ---- the ring ---- */

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
    table_free(&c->tab);
    free(c);
}

/* Merge two sorted token arrays into out (room for na + nb). */
static void merge_points(const rc_chash_point *a, size_t na, const rc_chash_point *b, size_t nb,
                         rc_chash_point *out)
{
    size_t i = 0, j = 0, k = 0;
    while (i < na && j < nb)
        out[k++] = a[i].pos <= b[j].pos ? a[i++] : b[j++];
    while (i < na)
        out[k++] = a[i++];
    while (j < nb)
        out[k++] = b[j++];
}

/* The ring with shard c->nshards added: its tokens into *out (malloc'd,
 * sorted), their number in *nout. 0 or -1 (ENOMEM, too many shards). */
static int grown_tokens(const rc_chash *c, rc_chash_point **out, size_t *nout)
{
    uint32_t k = c->nshards;
    if (k >= RC_CHASH_MAX_SHARDS)
        return -1;
    if (k == 0) {
        *out = place_first(c->vnodes);
        *nout = c->vnodes;
        return *out ? 0 : -1;
    }
    rc_chash_point *fresh;
    size_t nfresh;
    if (place_shard(c->points, c->npoints, k, c->vnodes, &fresh, &nfresh) != 0)
        return -1;
    size_t total = c->npoints + nfresh;
    rc_chash_point *merged = total <= SIZE_MAX / sizeof(*merged) ? malloc(total * sizeof(*merged)) : NULL;
    if (merged)
        merge_points(c->points, c->npoints, fresh, nfresh, merged);
    free(fresh);
    *out = merged;
    *nout = total;
    return merged ? 0 : -1;
}

int rc_chash_add(rc_chash *c, uint32_t shard)
{
    rc_chash_point *p;
    size_t n;
    if (shard != c->nshards || grown_tokens(c, &p, &n) != 0)
        return -1;
    return install(c, p, n, shard + 1, true);
}

int rc_chash_remove(rc_chash *c, uint32_t shard)
{
    if (c->nshards == 0 || shard != c->nshards - 1)
        return -1;
    rc_chash_point *kept = malloc(c->npoints * sizeof(*kept));
    if (!kept)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < c->npoints; i++)
        if (c->points[i].shard != shard)
            kept[k++] = c->points[i];
    if (k == 0) {
        free(kept);
        kept = NULL;
    }
    return install(c, kept, k, shard, true);
}

rc_chash *rc_chash_build(uint32_t n, uint32_t vnodes_per_shard)
{
    rc_chash *c = rc_chash_create(vnodes_per_shard);
    int rc = c ? 0 : -1;
    for (uint32_t i = 0; rc == 0 && i < n; i++) { /* one table, at the end */
        rc_chash_point *p;
        size_t np;
        rc = grown_tokens(c, &p, &np);
        if (rc == 0)
            rc = install(c, p, np, i + 1, i + 1 == n);
    }
    if (rc == 0)
        return c;
    rc_chash_destroy(c);
    return NULL;
}

/* A split slice: the first token at or after h is in
 * [index[b], first token of the next slice], or wraps to token 0. */
static uint32_t split_lookup(const rc_chash *c, size_t b, uint64_t h)
{
    size_t nb = (size_t)1 << c->tab.bits;
    size_t i = c->tab.index[b], end = b + 1 < nb ? c->tab.index[b + 1] : c->npoints;
    while (i < end && c->points[i].pos < h)
        i++;
    return c->points[i == c->npoints ? 0 : i].shard;
}

uint32_t rc_chash_lookup_hash(const rc_chash *c, uint64_t h)
{
    if (c->npoints == 0)
        return RC_CHASH_NO_SHARD;
    size_t b = (size_t)(h >> c->shift);
    uint16_t s = c->owner[b];
    return s != RC_CHASH_SPLIT ? s : split_lookup(c, b, h);
}

uint32_t rc_chash_lookup(const rc_chash *c, const void *key, size_t len)
{
    return rc_chash_lookup_hash(c, rc_hash64(key, len));
}

uint32_t rc_chash_successor(const rc_chash *c, uint64_t h)
{
    if (c->npoints == 0)
        return RC_CHASH_NO_SHARD;
    size_t lo = 0, hi = c->npoints; /* first token with pos >= h */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->points[mid].pos < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return c->points[lo == c->npoints ? 0 : lo].shard;
}

uint32_t rc_chash_shards(const rc_chash *c)
{
    return c->nshards;
}

size_t rc_chash_tokens(const rc_chash *c)
{
    return c->npoints;
}

int rc_chash_token(const rc_chash *c, size_t i, uint64_t *pos, uint32_t *shard)
{
    if (i >= c->npoints)
        return -1;
    *pos = c->points[i].pos;
    *shard = c->points[i].shard;
    return 0;
}

double rc_chash_share(const rc_chash *c, uint32_t shard)
{
    rc_u128 sum = 0;
    for (size_t i = 0; i < c->npoints; i++)
        if (c->points[i].shard == shard)
            sum += arc_of(c->points, c->npoints, i);
    return (double)sum / (double)RC_CHASH_CIRCLE;
}

uint32_t rc_chash_table_bits(const rc_chash *c)
{
    return c->npoints ? c->tab.bits : 0;
}

double rc_chash_table_split(const rc_chash *c)
{
    return c->npoints ? (double)c->tab.nsplit / (double)((size_t)1 << c->tab.bits) : 0;
}
