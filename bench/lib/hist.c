/*
 * Log-linear histogram: bucket layout and the queries over it.
 *
 * Layout. Let S = RC_HIST_SUB_BITS and e = floor(log2(v)). Values below
 * 2^(S+1) get one bucket each. Above that, [2^e, 2^(e+1)) is cut into 2^S
 * buckets of width 2^(e-S). Both cases are one formula: with
 * shift = max(0, e - S), the index is shift * 2^S + (v >> shift), and
 * v >> shift always lies in [2^S, 2^(S+1)) once shift > 0. Indices therefore
 * run without gaps from 0 to index(max_value); for max_value = UINT64_MAX
 * that is 57 * 2^S buckets (58 KiB of counts).
 *
 * Error bound. A bucket with shift > 0 holds values >= 2^(shift+S) and is
 * 2^shift wide, so its upper bound exceeds any value in it by less than
 * 2^-S of that value.
 */
#include "hist.h"

#include <assert.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rank arithmetic is done in double; this slack (in ulps of the rank) keeps
 * p = 99.9 of 1000 samples at rank 999 rather than 1000 when 99.9/100 * 1000
 * rounds to 999.0000000000001. */
#define RANK_SLACK_ULPS 8.0

static unsigned bucket_shift(uint64_t v)
{
    if (v < ((uint64_t)RC_HIST_SUB_COUNT << 1))
        return 0;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    return e - RC_HIST_SUB_BITS;
}

static uint32_t bucket_index(uint64_t v)
{
    unsigned shift = bucket_shift(v);
    return (uint32_t)(((uint64_t)shift << RC_HIST_SUB_BITS) + (v >> shift));
}

/* Largest value that maps to bucket i. */
static uint64_t bucket_upper(uint32_t i)
{
    uint32_t group = i >> RC_HIST_SUB_BITS;
    if (group < 2)
        return i;
    unsigned shift = group - 1u;
    uint64_t sub = i - ((uint64_t)shift << RC_HIST_SUB_BITS);
    uint64_t width = (uint64_t)1 << shift;
    return (sub << shift) + (width - 1u);
}

int rc_hist_init(rc_hist *h, uint64_t max_value)
{
    if (h == NULL) {
        errno = EINVAL;
        return -1;
    }
    memset(h, 0, sizeof *h);
    uint32_t n = bucket_index(max_value) + 1u;
    h->counts = calloc(n, sizeof *h->counts);
    if (h->counts == NULL) {
        errno = ENOMEM;
        return -1;
    }
    h->n_buckets = n;
    h->max_value = max_value;
    return 0;
}

void rc_hist_free(rc_hist *h)
{
    if (h == NULL)
        return;
    free(h->counts);
    h->counts = NULL;
    h->n_buckets = 0;
}

void rc_hist_reset(rc_hist *h)
{
    if (h->counts != NULL)
        memset(h->counts, 0, (size_t)h->n_buckets * sizeof *h->counts);
    h->total = h->min = h->max = h->overflow = 0;
    h->sum = 0.0;
}

void rc_hist_record_n(rc_hist *h, uint64_t v, uint64_t n)
{
    if (n == 0)
        return;
    assert(h->counts != NULL && h->n_buckets > 0);
    uint32_t i;
    if (v > h->max_value) {
        i = h->n_buckets - 1u;
        h->overflow += n;
    } else {
        i = bucket_index(v);
    }
    h->counts[i] += n;
    if (h->total == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->total += n;
    h->sum += (double)v * (double)n;
}

void rc_hist_record(rc_hist *h, uint64_t v)
{
    rc_hist_record_n(h, v, 1);
}

int rc_hist_merge(rc_hist *dst, const rc_hist *src)
{
    if (dst->max_value != src->max_value || dst->n_buckets != src->n_buckets)
        return -1;
    if (src->total == 0)
        return 0;
    for (uint32_t i = 0; i < dst->n_buckets; i++)
        dst->counts[i] += src->counts[i];
    if (dst->total == 0 || src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    dst->total += src->total;
    dst->overflow += src->overflow;
    dst->sum += src->sum;
    return 0;
}

/* 1-based rank of the p-th percentile among total values: ceil(p/100 * total),
 * at least 1 and at most total. */
static uint64_t percentile_rank(uint64_t total, double p)
{
    double x = p / 100.0 * (double)total;
    x -= x * RANK_SLACK_ULPS * DBL_EPSILON;
    double r = ceil(x);
    if (r < 1.0)
        return 1;
    if (r >= (double)total)
        return total;
    return (uint64_t)r;
}

uint64_t rc_hist_percentile(const rc_hist *h, double p)
{
    if (h->total == 0)
        return 0;
    if (!(p > 0.0))
        return h->min;
    if (p >= 100.0)
        return h->max;
    uint64_t rank = percentile_rank(h->total, p), seen = 0;
    for (uint32_t i = 0; i < h->n_buckets; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = bucket_upper(i);
            return v < h->max ? v : h->max;
        }
    }
    assert(!"bucket counts sum to less than total");
    return h->max;
}

double rc_hist_mean(const rc_hist *h)
{
    return h->total ? h->sum / (double)h->total : 0.0;
}

double rc_hist_rel_error(void)
{
    return ldexp(1.0, -RC_HIST_SUB_BITS);
}

void rc_hist_each(const rc_hist *h, rc_hist_visit fn, void *ud)
{
    uint64_t cumulative = 0;
    for (uint32_t i = 0; i < h->n_buckets && cumulative < h->total; i++) {
        if (h->counts[i] == 0)
            continue;
        cumulative += h->counts[i];
        fn(ud, bucket_upper(i), h->counts[i], cumulative);
    }
}
