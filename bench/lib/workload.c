/*
 * Workload generators: xoshiro256** PRNG, Zipf by inverse CDF, a sinusoidal
 * diurnal rate, and Poisson arrivals on it by thinning.
 *
 * The PRNG follows the reference code at https://prng.di.unimi.it/ (public
 * domain) and the unbiased bounded integer is Lemire's multiply-and-reject
 * ("Fast Random Integer Generation in an Interval", 2019).
 */
#include "workload.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SPLITMIX64_GAMMA UINT64_C(0x9E3779B97F4A7C15)
#define UNIFORM_BITS 53 /* a double's mantissa: [0,1) in steps of 2^-53 */

static const double TWO_PI = 6.283185307179586476925286766559;

/* ---- PRNG ---------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += SPLITMIX64_GAMMA);
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void rc_rng_seed(rc_rng *r, uint64_t seed)
{
    /* splitmix64 is a bijection of its counter, so at most one of the four
     * outputs can be zero and the state is never all zero. */
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

uint64_t rc_rng_next(rc_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5u, 7) * 9u;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rc_rng_uniform(rc_rng *r)
{
    return (double)(rc_rng_next(r) >> (64 - UNIFORM_BITS)) * ldexp(1.0, -UNIFORM_BITS);
}

/* The high 64 bits of x * n are uniform on [0,n) except that some values get
 * one extra preimage; rejecting low halves below 2^64 mod n removes exactly
 * those extras. The division only runs in the rare candidate-reject case. */
uint64_t rc_rng_below(rc_rng *r, uint64_t n)
{
    if (n == 0)
        return 0;
    unsigned __int128 m = (unsigned __int128)rc_rng_next(r) * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t threshold = ((uint64_t)0 - n) % n; /* 2^64 mod n */
        while (low < threshold) {
            m = (unsigned __int128)rc_rng_next(r) * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

double rc_rng_exp(rc_rng *r, double rate)
{
    if (!(rate > 0.0))
        return INFINITY;
    /* 1 - u lies in (0,1], so the logarithm is finite. */
    return -log1p(-rc_rng_uniform(r)) / rate;
}

/* ---- Zipf ---------------------------------------------------------------- */

int rc_zipf_init(rc_zipf *z, uint32_t lo, uint32_t hi, double s)
{
    if (z == NULL || lo > hi || !(s >= 0.0) || isinf(s)) {
        errno = EINVAL;
        return -1;
    }
    size_t n = (size_t)hi - lo + 1u;
    double *cdf = malloc(n * sizeof *cdf);
    if (cdf == NULL) {
        errno = ENOMEM;
        return -1;
    }
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        sum += pow((double)(i + 1u), -s);
        cdf[i] = sum;
    }
    for (size_t i = 0; i < n; i++)
        cdf[i] /= sum;
    cdf[n - 1] = 1.0; /* exact, so a sample in [0,1) always finds a value */
    *z = (rc_zipf){ .lo = lo, .hi = hi, .s = s, .cdf = cdf };
    return 0;
}

void rc_zipf_free(rc_zipf *z)
{
    if (z == NULL)
        return;
    free(z->cdf);
    z->cdf = NULL;
}

/* Inverse CDF: the first index whose cumulative probability exceeds u. */
uint32_t rc_zipf_sample(const rc_zipf *z, rc_rng *r)
{
    double u = rc_rng_uniform(r);
    size_t lo = 0, hi = (size_t)z->hi - z->lo; /* the answer is in [lo, hi] */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (z->cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return z->lo + (uint32_t)lo;
}

double rc_zipf_pmf(const rc_zipf *z, uint32_t k)
{
    if (k < z->lo || k > z->hi)
        return 0.0;
    size_t i = (size_t)k - z->lo;
    return i == 0 ? z->cdf[0] : z->cdf[i] - z->cdf[i - 1];
}

/* ---- Rate schedule --------------------------------------------------------- */

int rc_schedule_parse(const char *text, rc_schedule *s)
{
    memset(s, 0, sizeof *s);
    const char *p = text;
    double end = 0.0;
    while (p && *p) {
        char *q;
        errno = 0;
        double len = strtod(p, &q);
        if (errno || q == p || *q != ':' || !(len > 0.0) || !isfinite(len))
            return -1;
        p = q + 1;
        double mult = strtod(p, &q);
        if (errno || q == p || (*q != ',' && *q != '\0') || !(mult >= 0.0) || mult > RC_SCHEDULE_MULT_MAX)
            return -1;
        if (s->n == RC_SCHEDULE_MAX)
            return -1;
        end += len;
        s->end_s[s->n] = end;
        s->mult[s->n++] = mult;
        p = *q == ',' ? q + 1 : q;
        if (*q == ',' && *p == '\0')
            return -1; /* a trailing comma */
    }
    return s->n > 0 ? 0 : -1;
}

double rc_schedule_mult(const rc_schedule *s, double t_s)
{
    if (s->n == 0)
        return 1.0;
    for (uint32_t i = 0; i < s->n; i++)
        if (t_s < s->end_s[i])
            return s->mult[i];
    return s->mult[s->n - 1];
}

double rc_schedule_total_s(const rc_schedule *s)
{
    return s->n ? s->end_s[s->n - 1] : 0.0;
}

double rc_schedule_max_mult(const rc_schedule *s)
{
    double m = s->n ? 0.0 : 1.0;
    for (uint32_t i = 0; i < s->n; i++)
        m = s->mult[i] > m ? s->mult[i] : m;
    return m;
}

double rc_schedule_mean_mult(const rc_schedule *s, double t0_s, double t1_s)
{
    if (!(t1_s > t0_s))
        return rc_schedule_mult(s, t0_s);
    if (s->n == 0)
        return 1.0;
    double sum = 0.0, from = t0_s;
    for (uint32_t i = 0; i < s->n && from < t1_s; i++) {
        double to = i + 1 == s->n || s->end_s[i] > t1_s ? t1_s : s->end_s[i];
        if (to > from) {
            sum += (to - from) * s->mult[i];
            from = to;
        }
    }
    return sum / (t1_s - t0_s);
}

/* ---- Diurnal rate ---------------------------------------------------------- */

/* Relative amplitude a of the sinusoid, in [0,1]. */
static double diurnal_amplitude(const rc_diurnal *d)
{
    double ratio = d->peak_to_trough;
    if (!(ratio > 1.0))
        return 0.0;
    if (isinf(ratio))
        return 1.0;
    return (ratio - 1.0) / (ratio + 1.0);
}

double rc_diurnal_rate(const rc_diurnal *d, double t_s)
{
    if (d->sched)
        return d->mean_rate * rc_schedule_mult(d->sched, t_s);
    if (!(d->period_s > 0.0))
        return d->mean_rate;
    double phase = TWO_PI * fmod(t_s, d->period_s) / d->period_s;
    return d->mean_rate * (1.0 - diurnal_amplitude(d) * cos(phase));
}

double rc_diurnal_max_rate(const rc_diurnal *d)
{
    if (d->sched)
        return d->mean_rate * rc_schedule_max_mult(d->sched);
    if (!(d->period_s > 0.0))
        return d->mean_rate;
    return d->mean_rate * (1.0 + diurnal_amplitude(d));
}

/* ---- Arrivals ---------------------------------------------------------------- */

void rc_arrivals_init(rc_arrivals *a, const rc_diurnal *d, uint64_t seed)
{
    a->d = *d;
    rc_rng_seed(&a->rng, seed);
    a->t = 0.0;
}

double rc_arrivals_next(rc_arrivals *a)
{
    double peak = rc_diurnal_max_rate(&a->d);
    if (!(peak > 0.0) || isinf(peak))
        return INFINITY;
    double t = a->t;
    for (;;) {
        t += rc_rng_exp(&a->rng, peak);
        if (rc_rng_uniform(&a->rng) * peak < rc_diurnal_rate(&a->d, t))
            break;
    }
    /* A zero gap (u = 0, or t too large to move) would repeat a time. */
    if (!(t > a->t))
        t = nextafter(a->t, INFINITY);
    a->t = t;
    return t;
}
