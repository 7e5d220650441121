/*
 * Log-linear latency histogram, in the manner of HdrHistogram.
 *
 * Values (any unit; the load generator records nanoseconds) are grouped by
 * power of two, and each power is split into 2^RC_HIST_SUB_BITS linear
 * sub-buckets. A bucket's width is therefore at most 2^-RC_HIST_SUB_BITS of
 * the smallest value it holds, so every value this module reports is within
 * relative error rc_hist_rel_error() of a value that was recorded. Values
 * below 2^(RC_HIST_SUB_BITS + 1) have buckets of width one and are exact.
 *
 * The representative of a bucket is its upper bound (HdrHistogram's "highest
 * equivalent value"): a reported latency is never lower than the one measured.
 *
 * Recording is O(1) and allocation-free. A histogram is not thread-safe: give
 * each thread its own and combine them with rc_hist_merge().
 */
#ifndef RC_BENCH_HIST_H
#define RC_BENCH_HIST_H

#include <stdint.h>

#define RC_HIST_SUB_BITS 7
#define RC_HIST_SUB_COUNT (1u << RC_HIST_SUB_BITS) /* linear sub-buckets per power of two */

typedef struct rc_hist {
    uint64_t *counts;   /* one count per bucket, n_buckets of them */
    uint32_t n_buckets; /* buckets needed to reach max_value */
    uint64_t total;     /* values recorded, including overflow */
    uint64_t min, max;  /* exact extremes of all recorded values; 0 when empty */
    uint64_t overflow;  /* values above max_value (counted in the top bucket) */
    uint64_t max_value; /* largest value with its own bucket */
    double sum;         /* sum of all recorded values (exact values, for the mean) */
} rc_hist;

/* Lifetime. rc_hist_init returns 0, or -1 with errno = ENOMEM (EINVAL for a
 * NULL h). Values above max_value are counted in the top bucket and in
 * `overflow`; min, max, sum and the mean still see their exact values. */
int rc_hist_init(rc_hist *h, uint64_t max_value);
void rc_hist_free(rc_hist *h);
void rc_hist_reset(rc_hist *h); /* empty again, keeping max_value and buckets */

/* Recording. rc_hist_record_n records v n times (n = 0 is a no-op). */
void rc_hist_record(rc_hist *h, uint64_t v);
void rc_hist_record_n(rc_hist *h, uint64_t v, uint64_t n);

/* Adds src into dst. Both need the same max_value: -1 (dst unchanged)
 * otherwise, 0 on success. */
int rc_hist_merge(rc_hist *dst, const rc_hist *src);

/* Queries. rc_hist_percentile(h, p) is the value at rank ceil(p/100 * total):
 * the bucket's upper bound, clamped to max. p <= 0 (or NaN) returns min,
 * p >= 100 returns max, an empty histogram returns 0. */
uint64_t rc_hist_percentile(const rc_hist *h, double p);
double rc_hist_mean(const rc_hist *h); /* sum / total; 0 when empty */
double rc_hist_rel_error(void);        /* the bound, 2^-RC_HIST_SUB_BITS */

/* Calls fn for every non-empty bucket in ascending order with the bucket's
 * upper bound (not clamped to max), its count, and the running count, which
 * ends at total. */
typedef void (*rc_hist_visit)(void *ud, uint64_t value, uint64_t count, uint64_t cumulative);
void rc_hist_each(const rc_hist *h, rc_hist_visit fn, void *ud);

#endif
