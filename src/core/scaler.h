/*
 * The autoscaler's decision, without threads or clocks of its own
 * (src/ARCHITECTURE.md §4.1): fed one sample per scale_interval_ms, it says
 * whether the shard count should change, to what, and why.
 *
 * Grow by RC_SCALE_GROW_PCT (at least one shard) when the fullest shard's
 * queue is above RC_SCALE_HIGH_PCT of what its ring admits and the QPS of
 * the last RC_SCALE_RECENT_MS is above RC_SCALE_GROW_QPS_PCT of the
 * baseline (the mean over the RC_SCALE_BASELINE_MS before the recent
 * window; QPS counts requests routed to the shards, which a full queue
 * does not hold back as it holds back what they process), or when the queue has
 * stayed above the high mark for RC_SCALE_HIGH_SAMPLES samples in a row (a
 * steady overload has no spike). Shrink by RC_SCALE_SHRINK_PCT (at least
 * one) when the queue is below RC_SCALE_LOW_PCT and recent QPS is below
 * RC_SCALE_SHRINK_QPS_PCT of the baseline, or when the queue has stayed
 * below the low mark for RC_SCALE_LOW_MS and no grow came in the last
 * RC_SCALE_LOW_AFTER_GROW_MS (a burst that is over leaves more shards than
 * the load needs once the baseline forgot it), or when nothing at all was
 * processed over the recent window (an idle server goes down to
 * min_shards). Always within [min_shards, max_shards], and never two
 * events within the cooldown. Steady load changes nothing: recent QPS is
 * its own baseline. No grow while a shard waited RC_SCALE_IO_BOUND_PCT of
 * the interval or more for an io thread to take its output: the io threads
 * are the bottleneck then (a big fan-out), and more shards would only take
 * CPU from them.
 */
#ifndef RC_CORE_SCALER_H
#define RC_CORE_SCALER_H

#include <stdint.h>

#define RC_SCALE_BASELINE_MS 60000u  /* QPS baseline: mean over this long, before the recent window */
#define RC_SCALE_RECENT_MS 10000u    /* recent QPS: mean over this long */
#define RC_SCALE_HIGH_PCT 80u        /* queue high watermark, % of what a shard's ring admits */
#define RC_SCALE_LOW_PCT 20u         /* queue low watermark */
#define RC_SCALE_GROW_QPS_PCT 150u   /* recent QPS above this % of the baseline (with a high queue): grow */
#define RC_SCALE_SHRINK_QPS_PCT 70u  /* recent QPS below this % of the baseline (with a low queue): shrink */
#define RC_SCALE_GROW_PCT 25u        /* a grow adds this % of the shards (at least one) */
#define RC_SCALE_SHRINK_PCT 15u      /* a shrink removes this % (at least one) */
#define RC_SCALE_HIGH_SAMPLES 2u     /* samples in a row above the high mark: grow whatever the QPS */
#define RC_SCALE_LOW_MS 120000u      /* the queue below the low mark this long: shrink whatever the QPS ... */
#define RC_SCALE_LOW_AFTER_GROW_MS 120000u /* ... but not this soon after a grow (the load that needed it may return) */
#define RC_SCALE_IO_BOUND_PCT 25u    /* a shard waited this % of the interval for room in an io thread's ring: no grow */
#define RC_SCALE_SAMPLES_MAX 4096u   /* samples kept (the baseline window at the shortest interval) */

typedef struct rc_scale_sample {
    uint64_t t_ms;      /* when (monotonic) */
    uint64_t jobs;      /* requests the io threads routed to shards since start (cumulative) */
    uint32_t fill_pct;  /* the queue over the last interval, % of what a ring admits (100: requests waited outside the rings all along; src/app/scale.c fill_pct) */
    uint32_t io_wait_pct; /* the most any shard waited for room in an io thread's outbound ring, % of the interval */
} rc_scale_sample;

typedef struct rc_scaler {
    uint32_t min, max;
    uint64_t cooldown_ms;
    uint64_t last_event_ms;  /* 0: none yet */
    uint32_t high_run;       /* samples in a row above RC_SCALE_HIGH_PCT */
    uint64_t low_since_ms;   /* the queue has been below RC_SCALE_LOW_PCT since then (0: it is not) */
    uint64_t last_grow_ms;   /* 0: none yet */
    rc_scale_sample ring[RC_SCALE_SAMPLES_MAX];
    uint32_t head, n;        /* the newest is ring[(head + n - 1) % MAX] */
} rc_scaler;

typedef enum { RC_SCALE_STAY = 0, RC_SCALE_GROW = 1, RC_SCALE_SHRINK = -1 } rc_scale_dir;

typedef struct rc_scale_decision {
    rc_scale_dir dir;
    uint32_t target;          /* shard count wanted (the current one when STAY) */
    double qps_recent, qps_baseline;
    uint32_t fill_pct, io_wait_pct;
    const char *why;          /* "queue_and_qps", "steady_overload", "quiet", "steady_low", "idle", or why nothing changed ("io_bound", "cooldown", ...) */
} rc_scale_decision;

void rc_scaler_init(rc_scaler *sc, uint32_t min, uint32_t max, uint64_t cooldown_ms);
/* Takes one sample; current = shards now. The caller applies the decision
 * and then calls rc_scaler_applied. */
rc_scale_decision rc_scaler_step(rc_scaler *sc, uint32_t current, const rc_scale_sample *smp);
/* The decision was carried out at t_ms: the cooldown starts. */
void rc_scaler_applied(rc_scaler *sc, uint64_t t_ms, rc_scale_dir dir);
/* New bounds (min <= max), e.g. from a reload. */
void rc_scaler_bounds(rc_scaler *sc, uint32_t min, uint32_t max, uint64_t cooldown_ms);

#endif
