/*
 * Consistent hash: rc_chash (src/core/chash.h) with 160, 500 and 1,000
 * virtual nodes per shard, and Jump consistent hash (Lamping & Veach, 2014,
 * "A Fast, Minimal Memory, Consistent Hash Algorithm") as the reference.
 *
 * Keys are group ids "g0" .. "g<N-1>", the names the load generator uses,
 * generated once into fixed 16-byte slots before anything is timed.
 *
 * Lookup ns/op, with shards 0..7: N lookups of the key strings, hashing
 * included: rc_chash_lookup (hash + table, what io threads call), the same
 * ring's successor search without the table (rc_hash64 + rc_chash_successor,
 * a binary search over the tokens), and Jump (rc_hash64 + jump_hash). The
 * reps are the outer loop, so every variant sees the same load; the median
 * of the reps is reported, with the range.
 *
 * Balance, two ways:
 *   - keyspace: each shard's share of the 2^64 hashes (rc_chash_share, the
 *     sum of its arcs), max/mean; exact, no sampling;
 *   - keys: group ids per shard over the N keys, max/mean, min/mean and the
 *     coefficient of variation (population stddev / mean). Even a perfect
 *     placement shows sampling noise here: a CV of about sqrt((S - 1) / N).
 * Movement: shard 8 added, every key looked up again: the moved fraction
 * (ideal 1/9), its ratio to the ideal, keys that moved to a shard other than
 * 8 (must be 0); then shard 8 removed: keys not back on their first shard
 * (must be 0). Every lookup of every row is also checked against the
 * ring's successor search (must agree for every key).
 *
 * The sweep, at 160 vnodes, for n = 2..16 shards: keyspace and keys
 * max/mean on n shards, and the moved fraction / ideal when shard n is
 * added, for rc_chash and Jump.
 */
#include "micro.h"

#include "core/chash.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS 8u
#define KEY_SLOT 16u     /* bytes per pre-generated key; "g" + up to 10 digits fits */
#define SWEEP_VNODES 160u
#define SWEEP_MIN 2u
#define SWEEP_MAX 16u
#define NSWEEP (SWEEP_MAX - SWEEP_MIN + 1)
#define LOADAVG_MAX 64u

static const uint32_t vnode_counts[] = { 160, 500, 1000 };
#define NVNODES (sizeof vnode_counts / sizeof vnode_counts[0])
#define NROWS (NVNODES + 2) /* the rc_chash rows, the successor search at 160, then Jump */

typedef enum { ROW_TABLE, ROW_SUCCESSOR, ROW_JUMP } row_kind;

typedef struct chash_row {
    row_kind kind;
    uint32_t vnodes;        /* per shard; 0 for Jump */
    size_t tokens;          /* on the 8-shard ring */
    uint32_t table_bits;    /* 2^bits table entries */
    double table_split;     /* fraction of entries answered from the tokens */
    double build_us;        /* rc_chash_build of 8 shards, median of reps */
    double lookup_ns;       /* per key, hashing included, median of reps */
    double lookup_lo, lookup_hi; /* range over the reps */
    double space_max;       /* largest keyspace share / mean (0 for Jump) */
    double max_over_mean;   /* keys on the fullest shard / mean */
    double min_over_mean;   /* keys on the emptiest shard / mean */
    double cv;              /* stddev / mean of keys per shard */
    uint64_t moved;         /* keys whose shard changed when shard 8 was added */
    uint64_t moved_astray;  /* of those, keys that went to a shard other than 8 */
    uint64_t not_back;      /* keys not on their first shard once shard 8 was removed */
    uint64_t mismatched;    /* lookups that disagreed with the successor search */
} chash_row;

typedef struct sweep_row {
    uint32_t n;                /* shards */
    double space_max;          /* rc_chash keyspace max/mean on n shards */
    double keys_max, jump_max; /* keys max/mean on n shards */
    double moved, jump_moved;  /* moved fraction / ideal 1/(n+1) on adding shard n */
    uint64_t astray;           /* rc_chash keys that moved elsewhere than shard n (must be 0) */
} sweep_row;

struct chash_results {
    uint32_t keys;
    unsigned reps;
    double hash_ns;  /* rc_hash64 alone per key, median of reps */
    double cv_floor; /* sqrt((SHARDS - 1) / keys) */
    char load_before[LOADAVG_MAX], load_after[LOADAVG_MAX]; /* /proc/loadavg's first three fields */
    chash_row rows[NROWS];
    sweep_row sweep[NSWEEP];
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

static void read_loadavg(char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/loadavg", "r");
    if (f == NULL)
        return;
    double a, b, c;
    if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
        snprintf(out, cap, "%.2f %.2f %.2f", a, b, c);
    fclose(f);
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

/* ---- the timed loops; each writes one uint32_t per key to out so the
 * work cannot be optimised away and the stores cost the same for all. */

static double time_hash_only(const keyset *k, uint32_t *out)
{
    double t0 = micro_now();
    for (uint32_t i = 0; i < k->n; i++)
        out[i] = (uint32_t)rc_hash64(key_at(k, i), k->len[i]);
    return micro_now() - t0;
}

static double time_table(const rc_chash *c, const keyset *k, uint32_t *out)
{
    double t0 = micro_now();
    for (uint32_t i = 0; i < k->n; i++)
        out[i] = rc_chash_lookup(c, key_at(k, i), k->len[i]);
    return micro_now() - t0;
}

static double time_successor(const rc_chash *c, const keyset *k, uint32_t *out)
{
    double t0 = micro_now();
    for (uint32_t i = 0; i < k->n; i++)
        out[i] = rc_chash_successor(c, rc_hash64(key_at(k, i), k->len[i]));
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

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of n samples (sorts them); lo and hi get the range. */
static double median(double *v, unsigned n, double *lo, double *hi)
{
    qsort(v, n, sizeof(*v), cmp_double);
    if (lo)
        *lo = v[0];
    if (hi)
        *hi = v[n - 1];
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void balance(const uint32_t *owner, uint32_t n, uint32_t shards, double *max_over_mean,
                    double *min_over_mean, double *cv)
{
    uint64_t count[SWEEP_MAX + 1] = { 0 };
    for (uint32_t i = 0; i < n; i++)
        if (owner[i] < shards)
            count[owner[i]]++;
    double mean = (double)n / shards, var = 0, max = 0, min = INFINITY;
    for (uint32_t s = 0; s < shards; s++) {
        double d = (double)count[s] - mean;
        var += d * d / shards;
        max = micro_max(max, (double)count[s]);
        min = micro_min(min, (double)count[s]);
    }
    *max_over_mean = max / mean;
    if (min_over_mean)
        *min_over_mean = min / mean;
    if (cv)
        *cv = micro_sqrt(var) / mean;
}

static double space_max(const rc_chash *c)
{
    uint32_t n = rc_chash_shards(c);
    double max = 0;
    for (uint32_t s = 0; s < n; s++)
        max = micro_max(max, rc_chash_share(c, s) * n);
    return max;
}

/* Keys whose owner changed; *astray: of those, not to new_shard. */
static uint64_t movement(const uint32_t *before, const uint32_t *after, uint32_t n, uint32_t new_shard,
                         uint64_t *astray)
{
    uint64_t moved = 0;
    *astray = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (before[i] == after[i])
            continue;
        moved++;
        *astray += after[i] != new_shard;
    }
    return moved;
}

/* Lookups in out that the successor search answers otherwise. */
static uint64_t mismatches(const rc_chash *c, const keyset *k, const uint32_t *out)
{
    uint64_t bad = 0;
    for (uint32_t i = 0; i < k->n; i++)
        bad += out[i] != rc_chash_successor(c, rc_hash64(key_at(k, i), k->len[i]));
    return bad;
}

/* ---- the rows */

typedef struct bench_ctx {
    const keyset *k;
    unsigned reps;
    uint32_t *before, *after;
    double *samples; /* reps x (NROWS + 1) timings, row-major by rep */
} bench_ctx;

static void ring_facts(rc_chash *c, uint32_t vnodes, row_kind kind, chash_row *row)
{
    row->kind = kind;
    row->vnodes = vnodes;
    row->tokens = rc_chash_tokens(c);
    row->table_bits = rc_chash_table_bits(c);
    row->table_split = rc_chash_table_split(c);
    row->space_max = space_max(c);
}

/* Balance and movement of an 8-shard ring, grown to 9 and back. */
static int ring_movement(rc_chash *c, const bench_ctx *x, chash_row *row)
{
    const keyset *k = x->k;
    time_table(c, k, x->before);
    row->mismatched = mismatches(c, k, x->before);
    balance(x->before, k->n, SHARDS, &row->max_over_mean, &row->min_over_mean, &row->cv);
    if (rc_chash_add(c, SHARDS) != 0)
        return -1;
    time_table(c, k, x->after);
    row->mismatched += mismatches(c, k, x->after);
    row->moved = movement(x->before, x->after, k->n, SHARDS, &row->moved_astray);
    if (rc_chash_remove(c, SHARDS) != 0)
        return -1;
    time_table(c, k, x->after);
    uint64_t unused;
    row->not_back = movement(x->before, x->after, k->n, SHARDS, &unused);
    return 0;
}

static void jump_movement(const bench_ctx *x, chash_row *row)
{
    const keyset *k = x->k;
    row->kind = ROW_JUMP;
    time_jump(SHARDS, k, x->before);
    balance(x->before, k->n, SHARDS, &row->max_over_mean, &row->min_over_mean, &row->cv);
    time_jump(SHARDS + 1, k, x->after);
    row->moved = movement(x->before, x->after, k->n, SHARDS, &row->moved_astray);
}

/* The timings: reps as the outer loop, every variant once per rep. */
static int time_all(rc_chash *const *rings, const bench_ctx *x, chash_results *res)
{
    double *hash = x->samples + (size_t)x->reps * NROWS, *build = hash + x->reps;
    for (unsigned rep = 0; rep < x->reps; rep++) {
        double *s = x->samples + (size_t)rep * NROWS;
        hash[rep] = time_hash_only(x->k, x->before);
        for (size_t i = 0; i < NVNODES; i++)
            s[i] = time_table(rings[i], x->k, x->before);
        s[NVNODES] = time_successor(rings[0], x->k, x->before);
        s[NVNODES + 1] = time_jump(SHARDS, x->k, x->before);
        for (size_t i = 0; i < NVNODES; i++) {
            double t0 = micro_now();
            rc_chash *c = rc_chash_build(SHARDS, vnode_counts[i]);
            build[rep * NVNODES + i] = (micro_now() - t0) * 1e6;
            if (c == NULL)
                return -1;
            rc_chash_destroy(c);
        }
    }
    double *col = build + (size_t)x->reps * NVNODES; /* scratch: one column */
    for (size_t i = 0; i < NROWS; i++) {
        for (unsigned rep = 0; rep < x->reps; rep++)
            col[rep] = x->samples[(size_t)rep * NROWS + i] / x->k->n * 1e9;
        chash_row *r = &res->rows[i];
        r->lookup_ns = median(col, x->reps, &r->lookup_lo, &r->lookup_hi);
        if (i < NVNODES) {
            for (unsigned rep = 0; rep < x->reps; rep++)
                col[rep] = build[rep * NVNODES + i];
            r->build_us = median(col, x->reps, NULL, NULL);
        }
    }
    res->hash_ns = median(hash, x->reps, NULL, NULL) / x->k->n * 1e9;
    return 0;
}

/* n = SWEEP_MIN..SWEEP_MAX at SWEEP_VNODES: balance on n, movement to n+1. */
static int sweep_run(const bench_ctx *x, chash_results *res)
{
    const keyset *k = x->k;
    rc_chash *c = rc_chash_build(SWEEP_MIN, SWEEP_VNODES);
    if (c == NULL)
        return -1;
    for (uint32_t n = SWEEP_MIN; n <= SWEEP_MAX; n++) {
        sweep_row *w = &res->sweep[n - SWEEP_MIN];
        w->n = n;
        w->space_max = space_max(c);
        time_table(c, k, x->before);
        balance(x->before, k->n, n, &w->keys_max, NULL, NULL);
        if (rc_chash_add(c, n) != 0) {
            rc_chash_destroy(c);
            return -1;
        }
        time_table(c, k, x->after);
        double ideal = (double)k->n / (n + 1);
        w->moved = (double)movement(x->before, x->after, k->n, n, &w->astray) / ideal;
        time_jump(n, k, x->before);
        balance(x->before, k->n, n, &w->jump_max, NULL, NULL);
        time_jump(n + 1, k, x->after);
        uint64_t unused;
        w->jump_moved = (double)movement(x->before, x->after, k->n, n, &unused) / ideal;
    }
    rc_chash_destroy(c);
    return 0;
}

static int chash_cases(const keyset *k, unsigned reps, uint32_t *before, uint32_t *after, chash_results *res)
{
    rc_chash *rings[NVNODES] = { 0 };
    double *samples = malloc(((size_t)reps * (NROWS + 1 + 2 * NVNODES)) * sizeof(*samples));
    bench_ctx x = { k, reps, before, after, samples };
    int rc = samples ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < NVNODES; i++) {
        rings[i] = rc_chash_build(SHARDS, vnode_counts[i]);
        rc = rings[i] ? 0 : -1;
    }
    if (rc == 0)
        rc = time_all(rings, &x, res);
    for (size_t i = 0; rc == 0 && i < NVNODES; i++) {
        ring_facts(rings[i], vnode_counts[i], ROW_TABLE, &res->rows[i]);
        rc = ring_movement(rings[i], &x, &res->rows[i]);
    }
    if (rc == 0) {
        chash_row *succ = &res->rows[NVNODES], timed = *succ;
        *succ = res->rows[0]; /* the same ring and answers as 160 vnodes, without the table */
        succ->kind = ROW_SUCCESSOR;
        succ->lookup_ns = timed.lookup_ns;
        succ->lookup_lo = timed.lookup_lo;
        succ->lookup_hi = timed.lookup_hi;
        jump_movement(&x, &res->rows[NVNODES + 1]);
        rc = sweep_run(&x, res);
    }
    for (size_t i = 0; i < NVNODES; i++)
        rc_chash_destroy(rings[i]);
    free(samples);
    return rc;
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
        read_loadavg(res->load_before, sizeof res->load_before);
        rc = chash_cases(&k, o->reps, before, after, res);
        read_loadavg(res->load_after, sizeof res->load_after);
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

static bool row_ok(const chash_row *r)
{
    return r->moved_astray == 0 && r->not_back == 0 && r->mismatched == 0;
}

bool chash_bench_ok(const chash_results *res)
{
    for (size_t i = 0; i < NROWS; i++)
        if (!row_ok(&res->rows[i]))
            return false;
    for (size_t i = 0; i < NSWEEP; i++)
        if (res->sweep[i].astray != 0)
            return false;
    return true;
}

static const char *row_name(const chash_row *r)
{
    return r->kind == ROW_TABLE ? "rc_chash (table)"
         : r->kind == ROW_SUCCESSOR ? "rc_chash (successor search)"
                                    : "Jump (reference)";
}

static void print_rows_md(FILE *out, const chash_results *res)
{
    fprintf(out, "| ring | vnodes/shard | tokens | table | lookup ns/op (median) | range | build µs "
                 "| keyspace max/mean | keys max/mean | keys min/mean | keys CV | moved adding shard %u "
                 "| moved ÷ ideal | moved elsewhere | not back after removing it | ≠ successor |\n",
            SHARDS);
    fprintf(out, "|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < NROWS; i++) {
        const chash_row *r = &res->rows[i];
        double frac = (double)r->moved / res->keys;
        if (r->kind == ROW_JUMP)
            fprintf(out, "| %s | — | — | — | %.1f | %.1f–%.1f | — | — | %.4f | %.4f | %.2f %% | %.2f %% "
                         "| %.3f | %llu | — | — |\n",
                    row_name(r), r->lookup_ns, r->lookup_lo, r->lookup_hi, r->max_over_mean,
                    r->min_over_mean, r->cv * 100, 100 * frac, frac * (SHARDS + 1),
                    (unsigned long long)r->moved_astray);
        else
            fprintf(out, "| %s | %u | %zu | 2^%u, %.1f %% split | %.1f | %.1f–%.1f | %.0f | %.6f | %.4f "
                         "| %.4f | %.2f %% | %.2f %% | %.3f | %llu%s | %llu%s | %llu%s |\n",
                    row_name(r), r->vnodes, r->tokens, r->table_bits, r->table_split * 100,
                    r->lookup_ns, r->lookup_lo, r->lookup_hi, r->build_us, r->space_max, r->max_over_mean,
                    r->min_over_mean, r->cv * 100, 100 * frac, frac * (SHARDS + 1),
                    (unsigned long long)r->moved_astray, r->moved_astray ? " FAIL" : "",
                    (unsigned long long)r->not_back, r->not_back ? " FAIL" : "",
                    (unsigned long long)r->mismatched, r->mismatched ? " FAIL" : "");
    }
}

static void print_sweep_md(FILE *out, const chash_results *res)
{
    fprintf(out, "### Shards 2..%u at %u vnodes: balance on n shards, movement adding shard n\n\n", SWEEP_MAX,
            SWEEP_VNODES);
    fprintf(out, "| n | rc_chash keyspace max/mean | rc_chash keys max/mean | Jump keys max/mean "
                 "| rc_chash moved ÷ ideal 1/(n+1) | Jump moved ÷ ideal | rc_chash moved elsewhere |\n");
    fprintf(out, "|---:|---:|---:|---:|---:|---:|---:|\n");
    sweep_row worst = { 0 };
    for (size_t i = 0; i < NSWEEP; i++) {
        const sweep_row *w = &res->sweep[i];
        fprintf(out, "| %u | %.6f | %.4f | %.4f | %.4f | %.4f | %llu%s |\n", w->n, w->space_max, w->keys_max,
                w->jump_max, w->moved, w->jump_moved, (unsigned long long)w->astray, w->astray ? " FAIL" : "");
        worst.space_max = micro_max(worst.space_max, w->space_max);
        worst.keys_max = micro_max(worst.keys_max, w->keys_max);
        worst.jump_max = micro_max(worst.jump_max, w->jump_max);
        worst.moved = micro_max(worst.moved, w->moved);
        worst.jump_moved = micro_max(worst.jump_moved, w->jump_moved);
        worst.astray += w->astray;
    }
    fprintf(out, "| worst | %.6f | %.4f | %.4f | %.4f | %.4f | %llu |\n\n", worst.space_max, worst.keys_max,
            worst.jump_max, worst.moved, worst.jump_moved, (unsigned long long)worst.astray);
}

void chash_bench_print_md(FILE *out, const chash_results *res)
{
    fprintf(out, "## Consistent hash: %u group ids, %u shards, then a %uth; median of %u\n\n", res->keys, SHARDS,
            SHARDS + 1, res->reps);
    fprintf(out, "Load average (1, 5, 15 min) before: %s; after: %s.\n\n", res->load_before, res->load_after);
    print_rows_md(out, res);
    fprintf(out, "\nLookups include hashing the key: rc_hash64 (XXH3-64) alone costs %.1f ns/op here. "
                 "The successor-search row is the 160-vnode ring looked up by binary search over its tokens "
                 "instead of the table (same answers). Keyspace max/mean: the largest share of the 2^64 "
                 "hashes over the mean, exact; keys: group ids per shard over the %u keys, where sampling "
                 "alone gives a CV of sqrt(%u/N) = %.2f %%. Ideal moved fraction 1/%u = %.2f %%; \"moved "
                 "elsewhere\" counts moved keys that did not go to the new shard, \"not back\" keys not on "
                 "their first shard after it left, \"≠ successor\" table lookups that disagree with the "
                 "ring's successor search (all must be 0).\n\n",
            res->hash_ns, res->keys, SHARDS - 1, res->cv_floor * 100, SHARDS + 1, 100.0 / (SHARDS + 1));
    print_sweep_md(out, res);
}

void chash_bench_print_json(FILE *out, const chash_results *res)
{
    fprintf(out, "{\"keys\":%u,\"shards\":%u,\"reps\":%u,\"hash_ns\":%.2f,\"cv_floor\":%.6f,"
                 "\"ideal_moved_fraction\":%.6f,\"loadavg_before\":\"%s\",\"loadavg_after\":\"%s\",\"rows\":[",
            res->keys, SHARDS, res->reps, res->hash_ns, res->cv_floor, 1.0 / (SHARDS + 1), res->load_before,
            res->load_after);
    for (size_t i = 0; i < NROWS; i++) {
        const chash_row *r = &res->rows[i];
        fprintf(out, "%s{\"ring\":\"%s\",\"vnodes\":%u,\"tokens\":%zu,\"table_bits\":%u,\"table_split\":%.6f,"
                     "\"lookup_ns\":%.2f,\"lookup_ns_min\":%.2f,\"lookup_ns_max\":%.2f,\"build_us\":%.1f,"
                     "\"keyspace_max_over_mean\":%.8f,\"max_over_mean\":%.5f,\"min_over_mean\":%.5f,\"cv\":%.6f,"
                     "\"moved\":%llu,\"moved_fraction\":%.6f,\"moved_elsewhere\":%llu,\"not_back\":%llu,"
                     "\"mismatched\":%llu}",
                i == 0 ? "" : ",",
                r->kind == ROW_TABLE ? "rc_chash" : r->kind == ROW_SUCCESSOR ? "rc_chash_successor" : "jump",
                r->vnodes, r->tokens, r->table_bits, r->table_split, r->lookup_ns, r->lookup_lo, r->lookup_hi,
                r->build_us, r->space_max, r->max_over_mean, r->min_over_mean, r->cv,
                (unsigned long long)r->moved, (double)r->moved / res->keys, (unsigned long long)r->moved_astray,
                (unsigned long long)r->not_back, (unsigned long long)r->mismatched);
    }
    fputs("],\"sweep\":[", out);
    for (size_t i = 0; i < NSWEEP; i++) {
        const sweep_row *w = &res->sweep[i];
        fprintf(out, "%s{\"n\":%u,\"keyspace_max_over_mean\":%.8f,\"keys_max_over_mean\":%.5f,"
                     "\"jump_keys_max_over_mean\":%.5f,\"moved_over_ideal\":%.5f,\"jump_moved_over_ideal\":%.5f,"
                     "\"moved_elsewhere\":%llu}",
                i == 0 ? "" : ",", w->n, w->space_max, w->keys_max, w->jump_max, w->moved, w->jump_moved,
                (unsigned long long)w->astray);
    }
    fputs("]}", out);
}

void chash_bench_free(chash_results *res)
{
    free(res);
}
