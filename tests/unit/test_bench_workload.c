/*
 * Workload generators (bench/lib/workload.c): the PRNG is deterministic per
 * seed and unbiased, the exponential and Zipf samplers match their
 * distributions, the diurnal curve has the documented shape, and thinned
 * arrivals follow it. Every stream has a fixed seed, so each statistical
 * check either always passes or always fails; the thresholds sit several
 * standard deviations out so a correct change of stream stays green.
 */
#include "testutil.h"
#include "workload.h"

#include <CUnit/Basic.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SEED_A UINT64_C(42)
#define SEED_B UINT64_C(43)
#define STREAM_N 10000u

#define CHI_BUCKETS 10u
#define CHI_N 1000000u
#define CHI_LIMIT 40.0 /* chi-square, 9 degrees of freedom: p < 1e-5 */
#define BIAS_N 200000u

#define EXP_N 200000u
#define EXP_RATE 250.0
#define EXP_TOLERANCE 0.02

#define ZIPF_LO 2u
#define ZIPF_HI 2000u
#define ZIPF_S 1.1
#define ZIPF_N 500000u
#define ZIPF_HEAD 10u
#define ZIPF_TOLERANCE 0.05

#define DIURNAL_MEAN 1000.0
#define DIURNAL_RATIO 4.0
#define DIURNAL_PERIOD 86400.0
#define DIURNAL_STEPS 100000u
#define DIURNAL_TOLERANCE 0.005

#define ARRIVAL_MEAN 20000.0
#define ARRIVAL_PERIOD 10.0
#define ARRIVAL_TOLERANCE 0.03
#define TENTH_TOLERANCE 0.10

static double rel_diff(double got, double want)
{
    return fabs(got - want) / fabs(want);
}

/* ---- PRNG ---------------------------------------------------------------- */

/* Known answers, so a change to the stream (which would silently change
 * every recorded benchmark workload) is caught. Computed independently from
 * the reference algorithms. */
static void test_rng_known_answers(void)
{
    static const uint64_t seed0[] = { UINT64_C(0x99ec5f36cb75f2b4), UINT64_C(0xbf6e1f784956452a),
                                      UINT64_C(0x1a5f849d4933e6e0), UINT64_C(0x6aa594f1262d2d2c) };
    static const uint64_t seed42[] = { UINT64_C(0x15780b2e0c2ec716), UINT64_C(0x6104d9866d113a7e),
                                       UINT64_C(0xae17533239e499a1), UINT64_C(0xecb8ad4703b360a1) };
    rc_rng a, b;
    rc_rng_seed(&a, 0);
    rc_rng_seed(&b, SEED_A);
    for (size_t i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(rc_rng_next(&a), seed0[i]);
        CU_ASSERT_EQUAL(rc_rng_next(&b), seed42[i]);
    }
}

static void test_rng_determinism(void)
{
    rc_rng a, b, c;
    rc_rng_seed(&a, SEED_A);
    rc_rng_seed(&b, SEED_A);
    rc_rng_seed(&c, SEED_B);
    unsigned differ = 0, same_as_other = 0;
    for (unsigned i = 0; i < STREAM_N; i++) {
        uint64_t x = rc_rng_next(&a), y = rc_rng_next(&b), z = rc_rng_next(&c);
        differ += x != y;
        same_as_other += x == z;
    }
    CU_ASSERT_EQUAL(differ, 0);
    CU_ASSERT_EQUAL(same_as_other, 0);

    /* Re-seeding restarts the stream. */
    rc_rng_seed(&a, SEED_B);
    rc_rng_seed(&c, SEED_B);
    CU_ASSERT_EQUAL(rc_rng_next(&a), rc_rng_next(&c));
}

static void test_rng_uniform(void)
{
    rc_rng r;
    rc_rng_seed(&r, SEED_A);
    double sum = 0, lo = 1, hi = 0;
    for (unsigned i = 0; i < STREAM_N; i++) {
        double u = rc_rng_uniform(&r);
        sum += u;
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
    }
    CU_ASSERT(lo >= 0.0 && hi < 1.0);
    CU_ASSERT(fabs(sum / STREAM_N - 0.5) < 0.01);
}

static void test_rng_below_chi_square(void)
{
    rc_rng r;
    rc_rng_seed(&r, SEED_A);
    unsigned counts[CHI_BUCKETS] = { 0 };
    unsigned out_of_range = 0;
    for (unsigned i = 0; i < CHI_N; i++) {
        uint64_t v = rc_rng_below(&r, CHI_BUCKETS);
        if (v < CHI_BUCKETS)
            counts[v]++;
        else
            out_of_range++;
    }
    CU_ASSERT_EQUAL(out_of_range, 0);
    double expected = (double)CHI_N / CHI_BUCKETS, chi2 = 0;
    for (unsigned k = 0; k < CHI_BUCKETS; k++)
        chi2 += (counts[k] - expected) * (counts[k] - expected) / expected;
    CU_ASSERT(chi2 < CHI_LIMIT);
}

/* With n = 3 * 2^62, plain `x % n` maps a whole extra quarter of the 64-bit
 * range onto [0, 2^62), giving it probability 1/2 instead of 1/3: a bias a
 * 10-bucket test cannot see. */
static void test_rng_below_large_n_unbiased(void)
{
    const uint64_t third = UINT64_C(1) << 62, n = 3 * third;
    rc_rng r;
    rc_rng_seed(&r, SEED_B);
    unsigned low = 0, out_of_range = 0;
    for (unsigned i = 0; i < BIAS_N; i++) {
        uint64_t v = rc_rng_below(&r, n);
        low += v < third;
        out_of_range += v >= n;
    }
    CU_ASSERT_EQUAL(out_of_range, 0);
    CU_ASSERT(fabs((double)low / BIAS_N - 1.0 / 3.0) < 0.01);
}

static void test_rng_below_edges(void)
{
    rc_rng r;
    rc_rng_seed(&r, SEED_A);
    unsigned bad = 0;
    for (unsigned i = 0; i < STREAM_N; i++) {
        bad += rc_rng_below(&r, 0) != 0;
        bad += rc_rng_below(&r, 1) != 0;
        bad += rc_rng_below(&r, 2) > 1;
    }
    CU_ASSERT_EQUAL(bad, 0);
    (void)rc_rng_below(&r, UINT64_MAX); /* any value is in range */
}

static void test_rng_exp_mean(void)
{
    rc_rng r;
    rc_rng_seed(&r, SEED_A);
    double sum = 0;
    unsigned negative = 0;
    for (unsigned i = 0; i < EXP_N; i++) {
        double x = rc_rng_exp(&r, EXP_RATE);
        negative += !(x >= 0.0);
        sum += x;
    }
    CU_ASSERT_EQUAL(negative, 0);
    CU_ASSERT(rel_diff(sum / EXP_N, 1.0 / EXP_RATE) < EXP_TOLERANCE);
    CU_ASSERT(isinf(rc_rng_exp(&r, 0.0)));
    CU_ASSERT(isinf(rc_rng_exp(&r, -1.0)));
}

/* ---- Zipf ---------------------------------------------------------------- */

static void test_zipf_frequencies(void)
{
    rc_zipf z;
    CU_ASSERT_FATAL(rc_zipf_init(&z, ZIPF_LO, ZIPF_HI, ZIPF_S) == 0);
    unsigned *counts = calloc(ZIPF_HI + 1u, sizeof *counts);
    CU_ASSERT_FATAL(counts != NULL);
    rc_rng r;
    rc_rng_seed(&r, SEED_A);
    unsigned out_of_range = 0;
    for (unsigned i = 0; i < ZIPF_N; i++) {
        uint32_t k = rc_zipf_sample(&z, &r);
        if (k < ZIPF_LO || k > ZIPF_HI)
            out_of_range++;
        else
            counts[k]++;
    }
    CU_ASSERT_EQUAL(out_of_range, 0);
    for (uint32_t k = ZIPF_LO; k < ZIPF_LO + ZIPF_HEAD; k++) {
        double want = rc_zipf_pmf(&z, k) * ZIPF_N;
        CU_ASSERT(rel_diff(counts[k], want) < ZIPF_TOLERANCE);
    }
    free(counts);
    rc_zipf_free(&z);
}

static void test_zipf_cdf_and_pmf(void)
{
    rc_zipf z;
    CU_ASSERT_FATAL(rc_zipf_init(&z, ZIPF_LO, ZIPF_HI, ZIPF_S) == 0);
    size_t n = ZIPF_HI - ZIPF_LO + 1u;
    CU_ASSERT_DOUBLE_EQUAL(z.cdf[n - 1], 1.0, 0.0);
    unsigned not_increasing = 0;
    for (size_t i = 1; i < n; i++)
        not_increasing += !(z.cdf[i] > z.cdf[i - 1]);
    CU_ASSERT_EQUAL(not_increasing, 0);
    double total = 0;
    for (uint32_t k = ZIPF_LO; k <= ZIPF_HI; k++)
        total += rc_zipf_pmf(&z, k);
    CU_ASSERT_DOUBLE_EQUAL(total, 1.0, 1e-9);
    /* P(k) is proportional to (k - lo + 1)^-s. */
    CU_ASSERT_DOUBLE_EQUAL(rc_zipf_pmf(&z, ZIPF_LO) / rc_zipf_pmf(&z, ZIPF_LO + 1), pow(2.0, ZIPF_S), 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(rc_zipf_pmf(&z, ZIPF_LO) / rc_zipf_pmf(&z, ZIPF_LO + 9), pow(10.0, ZIPF_S), 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(rc_zipf_pmf(&z, ZIPF_LO - 1), 0.0, 0.0);
    CU_ASSERT_DOUBLE_EQUAL(rc_zipf_pmf(&z, ZIPF_HI + 1), 0.0, 0.0);
    rc_zipf_free(&z);
    rc_zipf_free(&z); /* idempotent */
}

static void test_zipf_edges(void)
{
    rc_zipf z;
    CU_ASSERT_EQUAL(rc_zipf_init(&z, 10, 9, 1.0), -1);
    CU_ASSERT_EQUAL(rc_zipf_init(&z, 1, 9, -0.5), -1);
    CU_ASSERT_EQUAL(rc_zipf_init(&z, 1, 9, NAN), -1);
    CU_ASSERT_EQUAL(rc_zipf_init(&z, 1, 9, INFINITY), -1);
    CU_ASSERT_EQUAL(rc_zipf_init(NULL, 1, 9, 1.0), -1);

    rc_rng r;
    rc_rng_seed(&r, SEED_A);
    /* One value: always it. */
    CU_ASSERT_FATAL(rc_zipf_init(&z, 7, 7, ZIPF_S) == 0);
    CU_ASSERT_DOUBLE_EQUAL(rc_zipf_pmf(&z, 7), 1.0, 0.0);
    unsigned bad = 0;
    for (unsigned i = 0; i < 1000; i++)
        bad += rc_zipf_sample(&z, &r) != 7;
    CU_ASSERT_EQUAL(bad, 0);
    rc_zipf_free(&z);

    /* s = 0 is uniform; the range may reach UINT32_MAX. */
    CU_ASSERT_FATAL(rc_zipf_init(&z, UINT32_MAX - 3, UINT32_MAX, 0.0) == 0);
    for (uint32_t k = UINT32_MAX - 3; k != 0; k++)
        CU_ASSERT_DOUBLE_EQUAL(rc_zipf_pmf(&z, k), 0.25, 1e-12);
    for (unsigned i = 0; i < 1000; i++)
        bad += rc_zipf_sample(&z, &r) < UINT32_MAX - 3;
    CU_ASSERT_EQUAL(bad, 0);
    rc_zipf_free(&z);
}

/* ---- Diurnal rate ---------------------------------------------------------- */

static const rc_diurnal DIURNAL = { DIURNAL_MEAN, DIURNAL_RATIO, DIURNAL_PERIOD, NULL };

static void test_diurnal_shape(void)
{
    double trough = rc_diurnal_rate(&DIURNAL, 0);
    double peak = rc_diurnal_rate(&DIURNAL, DIURNAL_PERIOD / 2);
    /* mean (1 -+ a) with a = (R-1)/(R+1): trough 2M/(R+1), peak 2MR/(R+1). */
    CU_ASSERT_DOUBLE_EQUAL(trough, 2 * DIURNAL_MEAN / (DIURNAL_RATIO + 1), 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(peak, 2 * DIURNAL_MEAN * DIURNAL_RATIO / (DIURNAL_RATIO + 1), 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(peak / trough, DIURNAL_RATIO, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(rc_diurnal_max_rate(&DIURNAL), peak, 1e-9);

    double sum = 0, lowest = INFINITY, highest = 0;
    const double dt = DIURNAL_PERIOD / DIURNAL_STEPS;
    for (unsigned i = 0; i < DIURNAL_STEPS; i++) {
        double rate = rc_diurnal_rate(&DIURNAL, (i + 0.5) * dt); /* midpoint rule */
        sum += rate * dt;
        lowest = rate < lowest ? rate : lowest;
        highest = rate > highest ? rate : highest;
    }
    CU_ASSERT(rel_diff(sum / DIURNAL_PERIOD, DIURNAL_MEAN) < DIURNAL_TOLERANCE);
    CU_ASSERT(lowest >= trough && highest <= peak * (1 + 1e-12));
    /* Periodic. */
    CU_ASSERT_DOUBLE_EQUAL(rc_diurnal_rate(&DIURNAL, 3 * DIURNAL_PERIOD + 1234),
                           rc_diurnal_rate(&DIURNAL, 1234), 1e-6);
}

static void test_diurnal_degenerate(void)
{
    const rc_diurnal flat = { 500, 1.0, 60, NULL }, below_one = { 500, 0.5, 60, NULL }, no_period = { 500, 4.0, 0, NULL };
    const rc_diurnal zero_trough = { 500, INFINITY, 60, NULL };
    for (double t = 0; t < 60; t += 7.5) {
        CU_ASSERT_DOUBLE_EQUAL(rc_diurnal_rate(&flat, t), 500, 1e-9);
        CU_ASSERT_DOUBLE_EQUAL(rc_diurnal_rate(&below_one, t), 500, 1e-9);
        CU_ASSERT_DOUBLE_EQUAL(rc_diurnal_rate(&no_period, t), 500, 1e-9);
    }
    CU_ASSERT_DOUBLE_EQUAL(rc_diurnal_max_rate(&no_period), 500, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(rc_diurnal_rate(&zero_trough, 0), 0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(rc_diurnal_max_rate(&zero_trough), 1000, 1e-9);
}

/* ---- Arrivals ---------------------------------------------------------------- */

/* Integral of the rate over [t0, t1], numerically. */
static double expected_count(const rc_diurnal *d, double t0, double t1)
{
    const double dt = (t1 - t0) / DIURNAL_STEPS;
    double sum = 0;
    for (unsigned i = 0; i < DIURNAL_STEPS; i++)
        sum += rc_diurnal_rate(d, t0 + (i + 0.5) * dt) * dt;
    return sum;
}

static void test_arrivals_follow_rate(void)
{
    const rc_diurnal d = { ARRIVAL_MEAN, DIURNAL_RATIO, ARRIVAL_PERIOD, NULL };
    const double tenth = ARRIVAL_PERIOD / 10;
    const double mid0 = ARRIVAL_PERIOD / 2 - tenth / 2, mid1 = ARRIVAL_PERIOD / 2 + tenth / 2;
    rc_arrivals a;
    rc_arrivals_init(&a, &d, SEED_A);
    unsigned n = 0, first = 0, middle = 0, not_increasing = 0;
    double prev = 0, t;
    while ((t = rc_arrivals_next(&a)) < ARRIVAL_PERIOD) {
        not_increasing += !(t > prev);
        prev = t;
        n++;
        first += t < tenth;
        middle += t >= mid0 && t < mid1;
    }
    CU_ASSERT_EQUAL(not_increasing, 0);
    CU_ASSERT(rel_diff(n, ARRIVAL_MEAN * ARRIVAL_PERIOD) < ARRIVAL_TOLERANCE);
    /* The first tenth straddles only half the trough, so its expected count is
     * the integral of the rate there, not trough * tenth (which is 10% off). */
    CU_ASSERT_FATAL(first > 0 && middle > 0);
    double want_first = expected_count(&d, 0, tenth), want_middle = expected_count(&d, mid0, mid1);
    CU_ASSERT(rel_diff((double)first / middle, want_first / want_middle) < TENTH_TOLERANCE);
    CU_ASSERT(rel_diff(want_first / want_middle, 1 / DIURNAL_RATIO) < 0.15);
}

static void test_arrivals_deterministic_and_flat(void)
{
    const rc_diurnal d = { ARRIVAL_MEAN, DIURNAL_RATIO, ARRIVAL_PERIOD, NULL };
    rc_arrivals a, b;
    rc_arrivals_init(&a, &d, SEED_B);
    rc_arrivals_init(&b, &d, SEED_B);
    unsigned differ = 0;
    for (unsigned i = 0; i < STREAM_N; i++)
        differ += rc_arrivals_next(&a) != rc_arrivals_next(&b);
    CU_ASSERT_EQUAL(differ, 0);

    /* A curve that is never positive never produces an arrival. */
    const rc_diurnal zero = { 0, DIURNAL_RATIO, ARRIVAL_PERIOD, NULL }, negative = { -5, 1, 0, NULL };
    rc_arrivals_init(&a, &zero, SEED_A);
    CU_ASSERT(isinf(rc_arrivals_next(&a)));
    rc_arrivals_init(&a, &negative, SEED_A);
    CU_ASSERT(isinf(rc_arrivals_next(&a)));
}

/* ---- Rate schedule ------------------------------------------------------------- */

static void test_schedule_parse(void)
{
    rc_schedule s;
    CU_ASSERT_EQUAL_FATAL(rc_schedule_parse("30:1,60:4,90:1", &s), 0);
    CU_ASSERT_EQUAL(s.n, 3);
    CU_ASSERT_DOUBLE_EQUAL(rc_schedule_total_s(&s), 180, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(rc_schedule_max_mult(&s), 4, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(rc_schedule_mult(&s, -1), 1, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(rc_schedule_mult(&s, 29.99), 1, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(rc_schedule_mult(&s, 30), 4, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(rc_schedule_mult(&s, 89.99), 4, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(rc_schedule_mult(&s, 90), 1, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(rc_schedule_mult(&s, 500), 1, 1e-9);
    /* 10 s at 1 and 20 s at 4 */
    CU_ASSERT_DOUBLE_EQUAL(rc_schedule_mean_mult(&s, 20, 50), 3, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(rc_schedule_mean_mult(&s, 0, 180), 2, 1e-9); /* (30 + 240 + 90) / 180 */
    CU_ASSERT_EQUAL(rc_schedule_parse("0.5:0,1.5:2.5", &s), 0);
    CU_ASSERT_DOUBLE_EQUAL(rc_schedule_total_s(&s), 2, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(rc_schedule_mult(&s, 1), 2.5, 1e-9);
    const char *bad[] = { "", "30", "30:", ":1", "0:1", "-5:1", "30:-1", "30:1,", "30:1;60:2", "30:1x",
                          "30:1001", "inf:1", "nan:1", "30:nan" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_EQUAL(rc_schedule_parse(bad[i], &s), -1);
    char many[512] = "";
    for (unsigned i = 0; i <= RC_SCHEDULE_MAX; i++)
        strcat(many, i ? ",1:1" : "1:1");
    CU_ASSERT_EQUAL(rc_schedule_parse(many, &s), -1); /* one phase too many */
}

static void test_arrivals_follow_schedule(void)
{
    rc_schedule sc;
    CU_ASSERT_EQUAL_FATAL(rc_schedule_parse("20:1,20:4,20:1", &sc), 0);
    const rc_diurnal d = { ARRIVAL_MEAN, 0, 0, &sc };
    CU_ASSERT_DOUBLE_EQUAL(rc_diurnal_max_rate(&d), 4 * ARRIVAL_MEAN, 1e-9);
    rc_arrivals a;
    rc_arrivals_init(&a, &d, SEED_A);
    unsigned n[3] = { 0 };
    double t;
    while ((t = rc_arrivals_next(&a)) < 60)
        n[(unsigned)(t / 20)]++;
    CU_ASSERT(rel_diff(n[0], ARRIVAL_MEAN * 20) < ARRIVAL_TOLERANCE);
    CU_ASSERT(rel_diff(n[1], 4 * ARRIVAL_MEAN * 20) < ARRIVAL_TOLERANCE);
    CU_ASSERT(rel_diff(n[2], ARRIVAL_MEAN * 20) < ARRIVAL_TOLERANCE);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("bench_workload", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "rng known answers", test_rng_known_answers) ||
        !CU_add_test(s, "rng determinism per seed", test_rng_determinism) ||
        !CU_add_test(s, "rng uniform in [0,1)", test_rng_uniform) ||
        !CU_add_test(s, "rng below: chi-square", test_rng_below_chi_square) ||
        !CU_add_test(s, "rng below: no modulo bias", test_rng_below_large_n_unbiased) ||
        !CU_add_test(s, "rng below: edges", test_rng_below_edges) ||
        !CU_add_test(s, "rng exp mean", test_rng_exp_mean) ||
        !CU_add_test(s, "zipf frequencies", test_zipf_frequencies) ||
        !CU_add_test(s, "zipf cdf and pmf", test_zipf_cdf_and_pmf) ||
        !CU_add_test(s, "zipf edges", test_zipf_edges) ||
        !CU_add_test(s, "diurnal shape", test_diurnal_shape) ||
        !CU_add_test(s, "diurnal degenerate", test_diurnal_degenerate) ||
        !CU_add_test(s, "arrivals follow the rate", test_arrivals_follow_rate) ||
        !CU_add_test(s, "arrivals deterministic, zero rate", test_arrivals_deterministic_and_flat) ||
        !CU_add_test(s, "schedule parse and shape", test_schedule_parse) ||
        !CU_add_test(s, "arrivals follow a schedule", test_arrivals_follow_schedule)) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    return rc_test_run();
}
