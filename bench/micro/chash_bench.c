/*
 * Consistent hash: rc_chash (src/core/chash.h) with 160, 500 and 1,000
 * virtual nodes per shard, and Jump consistent hash (Lamping & Veach, 2014,
 * "A Fast, Minimal Memory, Consistent Hash Algorithm") as the reference.
 *
 * Keys are group ids "g0" .. "g<N-1>", the names the load generator uses,
 * generated once into fixed 16-byte slots before anything is timed.
 *
 * For each ring, with shards 0..7:
 *   - lookup ns/op: N lookups of the key strings, hashing included
 *     (rc_chash_lookup; Jump: rc_hash64 then jump_hash), best of the reps;
 *   - balance: keys per shard over the N keys, as max/mean, min/mean and the
 *     coefficient of variation (population stddev / mean);
 *   - moved: after adding shard 8, the fraction of keys whose shard changed
 *     (ideal 1/9), and how many of those went anywhere but shard 8 (must be 0).
 * Jump is the ideal: O(1) memory, balance at the sampling-noise floor, exactly
 * the minimal movement. The noise floor of the CV for N keys thrown uniformly
 * at S shards is micro_sqrt((S - 1) / N); it is printed with the table.
 */
#include "micro.h"

#include "core/chash.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS 8u
#define KEY_SLOT 16u /* bytes per pre-generated key; "g" + up to 10 digits fits */

static const uint32_t vnode_counts[] = { 160, 500, 1000 };
#define NVNODES (sizeof vnode_counts / sizeof vnode_counts[0])
#define NROWS (NVNODES + 1) /* the rc_chash rows, then Jump */

typedef struct chash_row {
    const char *name;       /* "rc_chash" or "jump" */
    uint32_t vnodes;        /* per shard; 0 for Jump */
    double build_us;        /* create + add 8 shards, best of reps (rc_chash only) */
    double lookup_ns;       /* per key, hashing included, best of reps */
    double max_over_mean;   /* keys on the fullest shard / mean */
    double min_over_mean;   /* keys on the emptiest shard / mean */
    double cv;              /* stddev / mean of keys per shard */
    uint64_t moved;         /* keys whose shard changed when shard 8 was added */
    uint64_t moved_astray;  /* of those, keys that went to a shard other than 8 */
} chash_row;

struct chash_results {
    uint32_t keys;
    unsigned reps;
    double hash_ns;  /* rc_hash64 alone per key, best of reps */
    double cv_floor; /* sqrt((SHARDS - 1) / keys) */
    chash_row rows[NROWS];
};

typedef struct keyset {
    uint32_t n;
    char *bytes;  /* n slots of KEY_SLOT bytes */
    uint8_t *len; /* length of each key */
} keyset;

static int keyset_init(keyset *k, uint32_t n)
{
    k->n = n;
    k->bytes = malloc((size_t)n * KEY_SLOT);
    k->len = malloc(n);
    if (k->bytes == NULL || k->len == NULL) {
        free(k->bytes);
        free(k->len);
        return -1;
    }
    for (uint32_t i = 0; i < n; i++)
        k->len[i] = (uint8_t)snprintf(k->bytes + (size_t)i * KEY_SLOT, KEY_SLOT, "g%u", i);
    return 0;
}

static void keyset_free(keyset *k)
{
    free(k->bytes);
    free(k->len);
}

static const char *key_at(const keyset *k, uint32_t i)
{
    return k->bytes + (size_t)i * KEY_SLOT;
}

/* Jump consistent hash, as published: the bucket in [0, buckets) for key.
 * Each step jumps to the next bucket count at which the key would move. */
static uint32_t jump_hash(uint64_t key, uint32_t buckets)
{
    int64_t b = -1, j = 0;
    while (j < (int64_t)buckets) {
        b = j;
        key = key * 2862933555777941757ULL + 1;
        j = (int64_t)((double)(b + 1) * ((double)(1LL << 31) / (double)((key >> 33) + 1)));
    }
    return (uint32_t)b;
}

/* ---- the three timed loops; each writes one uint32_t per key to out so
 * the work cannot be optimised away and the stores cost the same for all. */

static double time_hash_only(const keyset *k, uint32_t *out)
{
    double t0 = micro_now();
    for (uint32_t i = 0; i < k->n; i++)
        out[i] = (uint32_t)rc_hash64(key_at(k, i), k->len[i]);
    return micro_now() - t0;
}

static double time_chash(const rc_chash *c, const keyset *k, uint32_t *out)
{
    double t0 = micro_now();
    for (uint32_t i = 0; i < k->n; i++)
        out[i] = rc_chash_lookup(c, key_at(k, i), k->len[i]);
    return micro_now() - t0;
}

static double time_jump(uint32_t buckets, const keyset *k, uint32_t *out)
{
    double t0 = micro_now();
    for (uint32_t i = 0; i < k->n; i++)
        out[i] = jump_hash(rc_hash64(key_at(k, i), k->len[i]), buckets);
    return micro_now() - t0;
}

/* ---- what the owners say */

static void balance(const uint32_t *owner, uint32_t n, chash_row *row)
{
    uint64_t count[SHARDS] = { 0 };
    for (uint32_t i = 0; i < n; i++)
        if (owner[i] < SHARDS)
            count[owner[i]]++;
    double mean = (double)n / SHARDS, var = 0, max = 0, min = INFINITY;
    for (uint32_t s = 0; s < SHARDS; s++) {
        double d = (double)count[s] - mean;
        var += d * d / SHARDS;
        max = micro_max(max, (double)count[s]);
        min = micro_min(min, (double)count[s]);
    }
    row->max_over_mean = max / mean;
    row->min_over_mean = min / mean;
    row->cv = micro_sqrt(var) / mean;
}

static void movement(const uint32_t *before, const uint32_t *after, uint32_t n, chash_row *row)
{
    row->moved = row->moved_astray = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (before[i] == after[i])
            continue;
        row->moved++;
        if (after[i] != SHARDS)
            row->moved_astray++;
    }
}

/* ---- the rows */

static rc_chash *build_ring(uint32_t vnodes, uint32_t shards)
{
    rc_chash *c = rc_chash_create(vnodes);
    if (c == NULL)
        return NULL;
    for (uint32_t s = 0; s < shards; s++) {
        if (rc_chash_add(c, s) != 0) {
            rc_chash_destroy(c);
            return NULL;
        }
    }
    return c;
}

static int chash_row_run(uint32_t vnodes, const keyset *k, unsigned reps, uint32_t *before,
                         uint32_t *after, chash_row *row)
{
    row->name = "rc_chash";
    row->vnodes = vnodes;
    row->build_us = INFINITY;
    rc_chash *c = NULL;
    for (unsigned rep = 0; rep < reps; rep++) {
        rc_chash_destroy(c);
        double t0 = micro_now();
        c = build_ring(vnodes, SHARDS);
        row->build_us = micro_min(row->build_us, (micro_now() - t0) * 1e6);
        if (c == NULL)
            return -1;
    }
    double best = INFINITY;
    for (unsigned rep = 0; rep < reps; rep++)
        best = micro_min(best, time_chash(c, k, before));
    row->lookup_ns = best / k->n * 1e9;
    balance(before, k->n, row);
    int rc = rc_chash_add(c, SHARDS);
    if (rc == 0) {
        time_chash(c, k, after);
        movement(before, after, k->n, row);
    }
    rc_chash_destroy(c);
    return rc;
}

static void jump_row_run(const keyset *k, unsigned reps, uint32_t *before, uint32_t *after,
                         chash_row *row)
{
    row->name = "jump";
    row->vnodes = 0;
    row->build_us = 0;
    double best = INFINITY;
    for (unsigned rep = 0; rep < reps; rep++)
        best = micro_min(best, time_jump(SHARDS, k, before));
    row->lookup_ns = best / k->n * 1e9;
    balance(before, k->n, row);
    time_jump(SHARDS + 1, k, after);
    movement(before, after, k->n, row);
}

chash_results *chash_bench_run(const micro_opts *o)
{
    chash_results *res = calloc(1, sizeof *res);
    keyset k;
    uint32_t *before = malloc((size_t)o->keys * sizeof *before);
    uint32_t *after = malloc((size_t)o->keys * sizeof *after);
    int rc = res != NULL && before != NULL && after != NULL ? keyset_init(&k, o->keys) : -1;
    if (rc == 0) {
        fprintf(stderr, "ringcast-micro: consistent hash, %u keys\n", o->keys);
        res->keys = o->keys;
        res->reps = o->reps;
        res->cv_floor = micro_sqrt((double)(SHARDS - 1) / o->keys);
        double best = INFINITY;
        for (unsigned rep = 0; rep < o->reps; rep++)
            best = micro_min(best, time_hash_only(&k, before));
        res->hash_ns = best / o->keys * 1e9;
        for (size_t i = 0; i < NVNODES && rc == 0; i++)
            rc = chash_row_run(vnode_counts[i], &k, o->reps, before, after, &res->rows[i]);
        if (rc == 0)
            jump_row_run(&k, o->reps, before, after, &res->rows[NVNODES]);
        keyset_free(&k);
    }
    free(before);
    free(after);
    if (rc != 0) {
        fprintf(stderr, "ringcast-micro: consistent-hash set-up failed (out of memory?)\n");
        free(res);
        return NULL;
    }
    return res;
}

bool chash_bench_ok(const chash_results *res)
{
    for (size_t i = 0; i < NROWS; i++)
        if (res->rows[i].moved_astray != 0)
            return false;
    return true;
}

void chash_bench_print_md(FILE *out, const chash_results *res)
{
    fprintf(out, "## Consistent hash: %u group ids, %u shards, then a %uth; best of %u\n\n",
            res->keys, SHARDS, SHARDS + 1, res->reps);
    fprintf(out, "| ring | vnodes/shard | lookup ns/op | build µs | max/mean | min/mean | CV "
                 "| moved on adding shard %u | moved elsewhere |\n",
            SHARDS);
    fprintf(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < NROWS; i++) {
        const chash_row *r = &res->rows[i];
        char vnodes[16], build[32];
        if (r->vnodes != 0) {
            snprintf(vnodes, sizeof vnodes, "%u", r->vnodes);
            snprintf(build, sizeof build, "%.0f", r->build_us);
        } else {
            snprintf(vnodes, sizeof vnodes, "—");
            snprintf(build, sizeof build, "—");
        }
        fprintf(out, "| %s | %s | %.1f | %s | %.3f | %.3f | %.2f %% | %.2f %% | %llu%s |\n",
                r->vnodes != 0 ? "rc_chash" : "Jump (reference)", vnodes, r->lookup_ns, build,
                r->max_over_mean, r->min_over_mean, r->cv * 100,
                100.0 * (double)r->moved / res->keys, (unsigned long long)r->moved_astray,
                r->moved_astray == 0 ? "" : " FAIL");
    }
    fprintf(out, "\nLookups include hashing the key: rc_hash64 (XXH3-64) alone costs %.1f ns/op "
                 "here. Ideal moved fraction 1/%u = %.2f %%; \"moved elsewhere\" counts moved "
                 "keys that did not go to the new shard (must be 0). CV sampling-noise floor "
                 "for %u keys on %u shards: sqrt(%u/N) = %.2f %%.\n\n",
            res->hash_ns, SHARDS + 1, 100.0 / (SHARDS + 1), res->keys, SHARDS, SHARDS - 1,
            res->cv_floor * 100);
}

void chash_bench_print_json(FILE *out, const chash_results *res)
{
    fprintf(out, "{\"keys\":%u,\"shards\":%u,\"reps\":%u,\"hash_ns\":%.2f,\"cv_floor\":%.6f,"
                 "\"ideal_moved_fraction\":%.6f,\"rows\":[",
            res->keys, SHARDS, res->reps, res->hash_ns, res->cv_floor, 1.0 / (SHARDS + 1));
    for (size_t i = 0; i < NROWS; i++) {
        const chash_row *r = &res->rows[i];
        fprintf(out, "%s{\"ring\":\"%s\",\"vnodes\":%u,\"lookup_ns\":%.2f,\"build_us\":%.1f,"
                     "\"max_over_mean\":%.5f,\"min_over_mean\":%.5f,\"cv\":%.6f,"
                     "\"moved\":%llu,\"moved_fraction\":%.6f,\"moved_elsewhere\":%llu}",
                i == 0 ? "" : ",", r->name, r->vnodes, r->lookup_ns, r->build_us,
                r->max_over_mean, r->min_over_mean, r->cv, (unsigned long long)r->moved,
                (double)r->moved / res->keys, (unsigned long long)r->moved_astray);
    }
    fputs("]}", out);
}

void chash_bench_free(chash_results *res)
{
    free(res);
}
