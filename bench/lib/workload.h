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

/* A rate schedule: phases of given lengths, each a multiple of a base rate
 * ("30:1,60:4,90:1": 30 s at the base rate, 60 s at 4x, 90 s at 1x). At
 * most RC_SCHEDULE_MAX phases; each lasts more than 0 s and its multiple is
 * within 0..RC_SCHEDULE_MULT_MAX. */
#define RC_SCHEDULE_MAX 32u
#define RC_SCHEDULE_MULT_MAX 1000.0
typedef struct rc_schedule {
    uint32_t n;
    double end_s[RC_SCHEDULE_MAX]; /* phase i covers [end_s[i-1], end_s[i]) */
    double mult[RC_SCHEDULE_MAX];
} rc_schedule;

/* Parses "SECONDS:MULT,..." into *s: 0, or -1 when the text is not that. */
int rc_schedule_parse(const char *text, rc_schedule *s);
/* The multiple at t_s: the phase holding it; the first phase's before 0,
 * the last one's after the end. 1 for an empty schedule. */
double rc_schedule_mult(const rc_schedule *s, double t_s);
double rc_schedule_total_s(const rc_schedule *s); /* the sum of the phases */
double rc_schedule_max_mult(const rc_schedule *s);
/* The mean multiple over [t0_s, t1_s) (t1_s > t0_s). */
double rc_schedule_mean_mult(const rc_schedule *s, double t0_s, double t1_s);

/* Diurnal rate curve: a sinusoid with its trough at t = 0 and its peak at
 * period/2, averaging mean_rate over a period:
 *   rate(t) = mean_rate * (1 - a * cos(2 pi t / period)),
 *   a = (peak_to_trough - 1) / (peak_to_trough + 1).
 * peak_to_trough below 1 (or NaN) is taken as 1 (a flat rate), +inf as a
 * trough of zero; period_s <= 0 also gives a flat rate. With a schedule the
 * curve is that instead: rate(t) = mean_rate * rc_schedule_mult(t) (the
 * sinusoid's fields are then ignored). */
typedef struct rc_diurnal {
    double mean_rate;      /* events per second, averaged over one period (a schedule's base rate) */
    double peak_to_trough; /* rate(period/2) / rate(0), >= 1 */
    double period_s;       /* seconds from trough to trough */
    const rc_schedule *sched; /* NULL: the sinusoid; it must outlive the curve */
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
