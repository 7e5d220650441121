/*
 * Seeded, deterministic workload generators for the load generator: a PRNG,
 * a Zipf distribution (which groups are hot), a diurnal rate curve, and a
 * Poisson arrival process that follows that curve.
 *
 * Everything here is a pure function of its seed: the same seed gives the
 * same stream on every machine, so a benchmark run can be repeated exactly.
 * Nothing is thread-safe; give each thread its own rc_rng (seeded from a base
 * seed plus the thread's index, say).
 */
#ifndef RC_BENCH_WORKLOAD_H
#define RC_BENCH_WORKLOAD_H

#include <stdint.h>

/* PRNG: xoshiro256** (Blackman and Vigna), its state filled from the seed by
 * splitmix64, which never yields the forbidden all-zero state. */
typedef struct rc_rng {
    uint64_t s[4]; /* xoshiro256** state */
} rc_rng;

void rc_rng_seed(rc_rng *r, uint64_t seed);
uint64_t rc_rng_next(rc_rng *r);
double rc_rng_uniform(rc_rng *r);             /* [0,1) with 53 bits */
uint64_t rc_rng_below(rc_rng *r, uint64_t n); /* uniform in [0,n), unbiased; 0 when n = 0 */
double rc_rng_exp(rc_rng *r, double rate);    /* exponential, mean 1/rate; +inf if rate <= 0 */

/* Zipf over lo..hi: P(k) proportional to (k - lo + 1)^-s, so lo is the most
 * likely value. Sampling is a binary search over the precomputed CDF, so
 * memory is 8 bytes per value and a sample costs log2(hi - lo + 1) steps. */
typedef struct rc_zipf {
    uint32_t lo, hi; /* inclusive range of values */
    double s;        /* exponent, >= 0 (0 is uniform) */
    double *cdf;     /* cdf[i] = P(value <= lo + i); cdf[hi - lo] = 1 */
} rc_zipf;

/* 0, or -1 with errno: EINVAL (lo > hi, s negative or not finite, NULL z),
 * ENOMEM. */
int rc_zipf_init(rc_zipf *z, uint32_t lo, uint32_t hi, double s);
void rc_zipf_free(rc_zipf *z);
uint32_t rc_zipf_sample(const rc_zipf *z, rc_rng *r);
double rc_zipf_pmf(const rc_zipf *z, uint32_t k); /* 0 outside lo..hi */

/* Diurnal rate curve: a sinusoid with its trough at t = 0 and its peak at
 * period/2, averaging mean_rate over a period:
 *   rate(t) = mean_rate * (1 - a * cos(2 pi t / period)),
 *   a = (peak_to_trough - 1) / (peak_to_trough + 1).
 * peak_to_trough below 1 (or NaN) is taken as 1 (a flat rate), +inf as a
 * trough of zero; period_s <= 0 also gives a flat rate. */
typedef struct rc_diurnal {
    double mean_rate;      /* events per second, averaged over one period */
    double peak_to_trough; /* rate(period/2) / rate(0), >= 1 */
    double period_s;       /* seconds from trough to trough */
} rc_diurnal;

double rc_diurnal_rate(const rc_diurnal *d, double t_s);
double rc_diurnal_max_rate(const rc_diurnal *d); /* rate at the peak */

/* Arrivals of a non-homogeneous Poisson process with rate rc_diurnal_rate(),
 * by thinning (Lewis and Shedler): candidates come at the peak rate and each
 * is kept with probability rate(t) / peak rate. */
typedef struct rc_arrivals {
    rc_diurnal d; /* the rate curve (a copy) */
    rc_rng rng;   /* drives candidates and their acceptance */
    double t;     /* time of the last arrival, seconds from 0 */
} rc_arrivals;

void rc_arrivals_init(rc_arrivals *a, const rc_diurnal *d, uint64_t seed);
/* Time of the next arrival, seconds from 0; +inf if the rate is never
 * positive. */
double rc_arrivals_next(rc_arrivals *a);

#endif
