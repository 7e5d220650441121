/*
 * Latency histogram (bench/lib/hist.c): percentiles of known distributions
 * stay within the documented relative error, small values are exact, and the
 * bookkeeping (min, max, mean, total, overflow, merge, reset, iteration) is
 * right. Deterministic: samples come from a fixed-seed rc_rng.
 */
#include "hist.h"
#include "testutil.h"
#include "workload.h"

#include <CUnit/Basic.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NS UINT64_C(60000000000) /* 60 s in ns: the load generator's range */
#define UNIFORM_N 1000000u
#define EXP_N 200000u
#define EXP_MEAN_NS 50000.0
#define SAMPLE_SEED UINT64_C(0xB0BA)
#define SWEEP_SEED UINT64_C(0x5EE9)
#define SWEEP_N 2000u
#define POINT_VALUE UINT64_C(1234567)
#define POINT_N 10000u
#define OVERFLOW_MAX UINT64_C(1000)

/* Percentiles whose rank p/100 * n is an integer for the sample sizes used. */
static const double PCTS[] = { 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99 };
#define NPCTS (sizeof PCTS / sizeof PCTS[0])

/* got reports the exact value `want` within the stated bound: never below it
 * (upper-bound representatives) and above by less than rel_error of it. */
static int within_bound(uint64_t got, uint64_t want)
{
    return got >= want && (double)(got - want) <= rc_hist_rel_error() * (double)want;
}

static void test_rel_error_constant(void)
{
    CU_ASSERT_DOUBLE_EQUAL(rc_hist_rel_error(), 1.0 / 128.0, 0.0);
    CU_ASSERT_EQUAL(RC_HIST_SUB_COUNT, 1u << RC_HIST_SUB_BITS);
}

static void test_uniform_percentiles(void)
{
    rc_hist h;
    CU_ASSERT_FATAL(rc_hist_init(&h, MAX_NS) == 0);
    for (uint64_t v = 1; v <= UNIFORM_N; v++)
        rc_hist_record(&h, v);
    for (size_t i = 0; i < NPCTS; i++) {
        uint64_t want = (uint64_t)llround(PCTS[i] / 100.0 * UNIFORM_N);
        CU_ASSERT(within_bound(rc_hist_percentile(&h, PCTS[i]), want));
    }
    CU_ASSERT_EQUAL(rc_hist_percentile(&h, 0), 1);
    CU_ASSERT_EQUAL(rc_hist_percentile(&h, 100), UNIFORM_N);
    CU_ASSERT_EQUAL(h.total, UNIFORM_N);
    CU_ASSERT_EQUAL(h.min, 1);
    CU_ASSERT_EQUAL(h.max, UNIFORM_N);
    CU_ASSERT_DOUBLE_EQUAL(rc_hist_mean(&h), (UNIFORM_N + 1) / 2.0, 1e-6);
    rc_hist_free(&h);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Exponential samples: compared with the exact order statistics of the same
 * samples. */
static void test_exponential_percentiles(void)
{
    uint64_t *v = malloc(EXP_N * sizeof *v);
    CU_ASSERT_FATAL(v != NULL);
    rc_hist h;
    CU_ASSERT_FATAL(rc_hist_init(&h, MAX_NS) == 0);
    rc_rng r;
    rc_rng_seed(&r, SAMPLE_SEED);
    double sum = 0;
    for (size_t i = 0; i < EXP_N; i++) {
        v[i] = (uint64_t)llround(rc_rng_exp(&r, 1.0 / EXP_MEAN_NS));
        sum += (double)v[i];
        rc_hist_record(&h, v[i]);
    }
    qsort(v, EXP_N, sizeof *v, cmp_u64);
    for (size_t i = 0; i < NPCTS; i++) {
        size_t rank = (size_t)llround(PCTS[i] / 100.0 * EXP_N);
        CU_ASSERT(within_bound(rc_hist_percentile(&h, PCTS[i]), v[rank - 1]));
    }
    CU_ASSERT_EQUAL(h.min, v[0]);
    CU_ASSERT_EQUAL(h.max, v[EXP_N - 1]);
    CU_ASSERT_EQUAL(rc_hist_percentile(&h, 100), v[EXP_N - 1]);
    CU_ASSERT_DOUBLE_EQUAL(rc_hist_mean(&h), sum / EXP_N, 1e-9 * EXP_MEAN_NS);
    rc_hist_free(&h);
    free(v);
}

static void test_point_mass(void)
{
    static const double ps[] = { 0, 0.001, 1, 50, 99, 99.999, 100 };
    rc_hist h;
    CU_ASSERT_FATAL(rc_hist_init(&h, MAX_NS) == 0);
    rc_hist_record_n(&h, POINT_VALUE, POINT_N);
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        CU_ASSERT_EQUAL(rc_hist_percentile(&h, ps[i]), POINT_VALUE);
    CU_ASSERT_EQUAL(h.total, POINT_N);
    CU_ASSERT_DOUBLE_EQUAL(rc_hist_mean(&h), (double)POINT_VALUE, 0.0);
    rc_hist_free(&h);
}

typedef struct collected {
    uint64_t values[2 * RC_HIST_SUB_COUNT];
    uint64_t counts[2 * RC_HIST_SUB_COUNT];
    size_t n;
} collected;

static void collect(void *ud, uint64_t value, uint64_t count, uint64_t cumulative)
{
    collected *c = ud;
    (void)cumulative;
    if (c->n < 2 * RC_HIST_SUB_COUNT) {
        c->values[c->n] = value;
        c->counts[c->n] = count;
    }
    c->n++;
}

/* Every value below 2^(SUB_BITS + 1), which includes the documented
 * 2^SUB_BITS, has its own bucket: percentiles and iteration are exact. */
static void test_small_values_exact(void)
{
    const uint64_t n = 2 * RC_HIST_SUB_COUNT;
    rc_hist h;
    CU_ASSERT_FATAL(rc_hist_init(&h, MAX_NS) == 0);
    for (uint64_t v = 0; v < n; v++)
        rc_hist_record_n(&h, v, v + 1);
    uint64_t total = n * (n + 1) / 2, below = 0;
    for (uint64_t v = 0; v < n; v++) {
        /* The first and last rank that hold v. */
        double first = 100.0 * (double)(below + 1) / (double)total;
        below += v + 1;
        double last = 100.0 * (double)below / (double)total;
        CU_ASSERT_EQUAL(rc_hist_percentile(&h, first), v);
        CU_ASSERT_EQUAL(rc_hist_percentile(&h, last), v);
    }
    collected c = { .n = 0 };
    rc_hist_each(&h, collect, &c);
    CU_ASSERT_EQUAL_FATAL(c.n, n);
    for (uint64_t v = 0; v < n; v++) {
        CU_ASSERT_EQUAL(c.values[v], v);
        CU_ASSERT_EQUAL(c.counts[v], v + 1);
    }
    rc_hist_free(&h);
}

/* A value recorded alone is reported (by rc_hist_each, unclamped) within the
 * bound, across the whole 64-bit range. */
static void test_bound_across_range(void)
{
    rc_hist h;
    CU_ASSERT_FATAL(rc_hist_init(&h, UINT64_MAX) == 0);
    rc_rng r;
    rc_rng_seed(&r, SWEEP_SEED);
    int bad = 0;
    for (unsigned i = 0; i < SWEEP_N; i++) {
        /* Uniform magnitude: shift a random word right by 0..63. */
        uint64_t v = rc_rng_next(&r) >> rc_rng_below(&r, 64);
        if (i < 64)
            v = UINT64_MAX >> i; /* the all-ones values end buckets */
        rc_hist_reset(&h);
        rc_hist_record(&h, v);
        collected c = { .n = 0 };
        rc_hist_each(&h, collect, &c);
        bad += c.n != 1 || !within_bound(c.values[0], v);
    }
    CU_ASSERT_EQUAL(bad, 0);
    rc_hist_free(&h);
}

static void test_min_max_mean_total(void)
{
    static const uint64_t vals[] = { 1000, 5, 123456789, 77 };
    rc_hist h;
    CU_ASSERT_FATAL(rc_hist_init(&h, MAX_NS) == 0);
    CU_ASSERT_EQUAL(h.total, 0);
    CU_ASSERT_EQUAL(h.min, 0);
    CU_ASSERT_EQUAL(h.max, 0);
    CU_ASSERT_EQUAL(rc_hist_percentile(&h, 50), 0);
    CU_ASSERT_EQUAL(rc_hist_percentile(&h, 100), 0);
    CU_ASSERT_DOUBLE_EQUAL(rc_hist_mean(&h), 0.0, 0.0);
    double sum = 0;
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        rc_hist_record(&h, vals[i]);
        sum += (double)vals[i];
    }
    rc_hist_record_n(&h, 42, 0); /* no-op */
    CU_ASSERT_EQUAL(h.total, 4);
    CU_ASSERT_EQUAL(h.min, 5);
    CU_ASSERT_EQUAL(h.max, 123456789);
    CU_ASSERT_EQUAL(h.overflow, 0);
    CU_ASSERT_DOUBLE_EQUAL(rc_hist_mean(&h), sum / 4, 1e-9);
    CU_ASSERT_EQUAL(rc_hist_percentile(&h, 0), 5);
    CU_ASSERT_EQUAL(rc_hist_percentile(&h, 25), 5);
    CU_ASSERT_EQUAL(rc_hist_percentile(&h, 50), 77);
    CU_ASSERT(within_bound(rc_hist_percentile(&h, 75), 1000));
    CU_ASSERT_EQUAL(rc_hist_percentile(&h, 100), 123456789);
    /* Out-of-range p is clamped rather than trusted. */
    CU_ASSERT_EQUAL(rc_hist_percentile(&h, -5), 5);
    CU_ASSERT_EQUAL(rc_hist_percentile(&h, 250), 123456789);
    CU_ASSERT_EQUAL(rc_hist_percentile(&h, NAN), 5);
    rc_hist_free(&h);
}

static void assert_same(const rc_hist *a, const rc_hist *b)
{
    CU_ASSERT_EQUAL_FATAL(a->n_buckets, b->n_buckets);
    CU_ASSERT(memcmp(a->counts, b->counts, a->n_buckets * sizeof *a->counts) == 0);
    CU_ASSERT_EQUAL(a->total, b->total);
    CU_ASSERT_EQUAL(a->min, b->min);
    CU_ASSERT_EQUAL(a->max, b->max);
    CU_ASSERT_EQUAL(a->overflow, b->overflow);
    CU_ASSERT_DOUBLE_EQUAL(a->sum, b->sum, 0.0); /* integer sums below 2^53 */
}

static void test_merge(void)
{
    rc_hist a, b, all, other;
    CU_ASSERT_FATAL(rc_hist_init(&a, MAX_NS) == 0 && rc_hist_init(&b, MAX_NS) == 0 &&
                    rc_hist_init(&all, MAX_NS) == 0 && rc_hist_init(&other, MAX_NS / 2) == 0);
    /* Merging an empty histogram into an empty one stays empty. */
    CU_ASSERT_EQUAL(rc_hist_merge(&a, &b), 0);
    CU_ASSERT_EQUAL(a.total, 0);
    rc_rng r;
    rc_rng_seed(&r, SAMPLE_SEED);
    for (unsigned i = 0; i < EXP_N; i++) {
        uint64_t v = (uint64_t)rc_rng_exp(&r, 1.0 / EXP_MEAN_NS);
        if (i % 3 == 0)
            v += MAX_NS; /* some overflow on both sides */
        rc_hist_record(i % 2 ? &a : &b, v);
        rc_hist_record(&all, v);
    }
    CU_ASSERT_EQUAL(rc_hist_merge(&a, &b), 0);
    assert_same(&a, &all);
    for (size_t i = 0; i < NPCTS; i++)
        CU_ASSERT_EQUAL(rc_hist_percentile(&a, PCTS[i]), rc_hist_percentile(&all, PCTS[i]));

    /* Into an empty destination: the source's min must win over 0. */
    rc_hist_reset(&b);
    CU_ASSERT_EQUAL(rc_hist_merge(&b, &all), 0);
    assert_same(&b, &all);

    /* Different max_value: refused, destination untouched. */
    rc_hist_record(&other, 1);
    CU_ASSERT_EQUAL(rc_hist_merge(&a, &other), -1);
    CU_ASSERT_EQUAL(rc_hist_merge(&other, &a), -1);
    assert_same(&a, &all);
    CU_ASSERT_EQUAL(other.total, 1);
    rc_hist_free(&a);
    rc_hist_free(&b);
    rc_hist_free(&all);
    rc_hist_free(&other);
}

typedef struct last_seen {
    uint64_t value, count, cumulative;
} last_seen;

static void remember_last(void *ud, uint64_t value, uint64_t count, uint64_t cumulative)
{
    *(last_seen *)ud = (last_seen){ value, count, cumulative };
}

static void test_overflow(void)
{
    rc_hist h;
    CU_ASSERT_FATAL(rc_hist_init(&h, OVERFLOW_MAX) == 0);
    for (uint64_t v = 1; v <= 10; v++)
        rc_hist_record(&h, v);
    rc_hist_record(&h, OVERFLOW_MAX); /* the limit itself is not overflow */
    rc_hist_record(&h, OVERFLOW_MAX + 1);
    rc_hist_record_n(&h, 5000, 2);
    rc_hist_record(&h, UINT64_MAX);
    CU_ASSERT_EQUAL(h.overflow, 4);
    CU_ASSERT_EQUAL(h.total, 15);
    CU_ASSERT_EQUAL(h.max, UINT64_MAX);
    CU_ASSERT_EQUAL(rc_hist_percentile(&h, 100), UINT64_MAX);
    /* The top bucket holds max_value and everything above it. */
    last_seen top = { 0, 0, 0 };
    rc_hist_each(&h, remember_last, &top);
    CU_ASSERT_EQUAL(top.count, 5);
    CU_ASSERT_EQUAL(top.cumulative, 15);
    CU_ASSERT(within_bound(top.value, OVERFLOW_MAX));
    CU_ASSERT_EQUAL(h.counts[h.n_buckets - 1], 5);
    CU_ASSERT(within_bound(rc_hist_percentile(&h, 90), OVERFLOW_MAX));
    rc_hist_free(&h);
}

static void test_reset(void)
{
    rc_hist h;
    CU_ASSERT_FATAL(rc_hist_init(&h, OVERFLOW_MAX) == 0);
    uint32_t n_buckets = h.n_buckets;
    rc_hist_record_n(&h, 17, 3);
    rc_hist_record(&h, OVERFLOW_MAX * 10);
    rc_hist_reset(&h);
    CU_ASSERT_EQUAL(h.total, 0);
    CU_ASSERT_EQUAL(h.min, 0);
    CU_ASSERT_EQUAL(h.max, 0);
    CU_ASSERT_EQUAL(h.overflow, 0);
    CU_ASSERT_EQUAL(h.n_buckets, n_buckets);
    CU_ASSERT_EQUAL(h.max_value, OVERFLOW_MAX);
    CU_ASSERT_DOUBLE_EQUAL(h.sum, 0.0, 0.0);
    CU_ASSERT_EQUAL(rc_hist_percentile(&h, 50), 0);
    last_seen none = { 0, 0, 0 };
    rc_hist_each(&h, remember_last, &none);
    CU_ASSERT_EQUAL(none.cumulative, 0);
    /* Usable again, with min taken afresh. */
    rc_hist_record(&h, 900);
    CU_ASSERT_EQUAL(h.min, 900);
    CU_ASSERT_EQUAL(h.max, 900);
    CU_ASSERT_EQUAL(rc_hist_percentile(&h, 50), 900);
    rc_hist_free(&h);
}

typedef struct walk {
    uint64_t prev_value, sum_counts, last_cumulative;
    unsigned calls, bad;
} walk;

static void check_walk(void *ud, uint64_t value, uint64_t count, uint64_t cumulative)
{
    walk *w = ud;
    w->bad += count == 0;
    w->bad += w->calls > 0 && value <= w->prev_value;
    w->sum_counts += count;
    w->bad += cumulative != w->sum_counts;
    w->prev_value = value;
    w->last_cumulative = cumulative;
    w->calls++;
}

static void test_each_ascending(void)
{
    rc_hist h;
    CU_ASSERT_FATAL(rc_hist_init(&h, MAX_NS) == 0);
    rc_rng r;
    rc_rng_seed(&r, SAMPLE_SEED);
    for (unsigned i = 0; i < EXP_N; i++)
        rc_hist_record(&h, (uint64_t)rc_rng_exp(&r, 1.0 / EXP_MEAN_NS));
    walk w = { 0, 0, 0, 0, 0 };
    rc_hist_each(&h, check_walk, &w);
    CU_ASSERT(w.calls > RC_HIST_SUB_COUNT);
    CU_ASSERT_EQUAL(w.bad, 0);
    CU_ASSERT_EQUAL(w.last_cumulative, h.total);
    /* The last bucket holds the maximum. */
    CU_ASSERT(within_bound(w.prev_value, h.max));
    rc_hist_free(&h);
}

static void test_init_edges(void)
{
    CU_ASSERT_EQUAL(rc_hist_init(NULL, MAX_NS), -1);
    rc_hist h;
    CU_ASSERT_FATAL(rc_hist_init(&h, 0) == 0);
    CU_ASSERT_EQUAL(h.n_buckets, 1);
    rc_hist_record(&h, 0);
    rc_hist_record(&h, 1);
    CU_ASSERT_EQUAL(h.overflow, 1);
    CU_ASSERT_EQUAL(rc_hist_percentile(&h, 50), 0);
    rc_hist_free(&h);
    rc_hist_free(&h); /* idempotent */

    CU_ASSERT_FATAL(rc_hist_init(&h, UINT64_MAX) == 0);
    rc_hist_record(&h, UINT64_MAX);
    rc_hist_record(&h, 0);
    CU_ASSERT_EQUAL(h.overflow, 0);
    CU_ASSERT_EQUAL(h.counts[h.n_buckets - 1], 1);
    CU_ASSERT_EQUAL(rc_hist_percentile(&h, 50), 0);
    CU_ASSERT_EQUAL(rc_hist_percentile(&h, 99), UINT64_MAX);
    rc_hist_free(&h);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("bench_hist", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "relative error constant", test_rel_error_constant) ||
        !CU_add_test(s, "uniform 1..1e6 percentiles", test_uniform_percentiles) ||
        !CU_add_test(s, "exponential vs sorted samples", test_exponential_percentiles) ||
        !CU_add_test(s, "point mass", test_point_mass) ||
        !CU_add_test(s, "small values exact", test_small_values_exact) ||
        !CU_add_test(s, "bound across the 64-bit range", test_bound_across_range) ||
        !CU_add_test(s, "min max mean total", test_min_max_mean_total) ||
        !CU_add_test(s, "merge equals recording in one", test_merge) ||
        !CU_add_test(s, "overflow", test_overflow) ||
        !CU_add_test(s, "reset", test_reset) ||
        !CU_add_test(s, "each ascending, cumulative ends at total", test_each_ascending) ||
        !CU_add_test(s, "init edges", test_init_edges)) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    return rc_test_run();
}
