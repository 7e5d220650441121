/* The autoscaler's decision rule (scaler.h). */
#include "core/scaler.h"

#include <stdbool.h>
#include <string.h>

void rc_scaler_init(rc_scaler *sc, uint32_t min, uint32_t max, uint64_t cooldown_ms)
{
    memset(sc, 0, sizeof(*sc));
    rc_scaler_bounds(sc, min, max, cooldown_ms);
}

void rc_scaler_bounds(rc_scaler *sc, uint32_t min, uint32_t max, uint64_t cooldown_ms)
{
    sc->min = min;
    sc->max = max;
    sc->cooldown_ms = cooldown_ms;
}

static const rc_scale_sample *at(const rc_scaler *sc, uint32_t i)
{
    return &sc->ring[(sc->head + i) % RC_SCALE_SAMPLES_MAX];
}

/* Mean QPS from the oldest sample within `window_ms` of the newest one to
 * the newest; 0 with fewer than two samples. */
static double qps_over(const rc_scaler *sc, uint64_t window_ms)
{
    if (sc->n < 2)
        return 0;
    const rc_scale_sample *last = at(sc, sc->n - 1), *first = last;
    for (uint32_t i = sc->n - 1; i-- > 0;) {
        const rc_scale_sample *p = at(sc, i);
        if (last->t_ms - p->t_ms > window_ms)
            break;
        first = p;
    }
    if (last->t_ms <= first->t_ms)
        return 0;
    return (double)(last->jobs - first->jobs) * 1000.0 / (double)(last->t_ms - first->t_ms);
}

/* Mean QPS over the RC_SCALE_BASELINE_MS before the recent window (so a
 * spike does not raise its own baseline: included, a 10 s spike needs
 * 1.67x the earlier rate to pass 1.5x the 60 s mean); while fewer samples
 * than that exist, the mean over the whole baseline window. */
static double qps_baseline(const rc_scaler *sc)
{
    if (sc->n < 2)
        return 0;
    const rc_scale_sample *now = at(sc, sc->n - 1), *last = NULL, *first = NULL;
    for (uint32_t i = sc->n; i-- > 0;) {
        const rc_scale_sample *p = at(sc, i);
        if (!last) {
            if (now->t_ms - p->t_ms >= RC_SCALE_RECENT_MS)
                last = first = p;
            continue;
        }
        if (last->t_ms - p->t_ms > RC_SCALE_BASELINE_MS)
            break;
        first = p;
    }
    if (!last || last->t_ms <= first->t_ms)
        return qps_over(sc, RC_SCALE_BASELINE_MS);
    return (double)(last->jobs - first->jobs) * 1000.0 / (double)(last->t_ms - first->t_ms);
}

static void push(rc_scaler *sc, const rc_scale_sample *smp)
{
    if (sc->n == RC_SCALE_SAMPLES_MAX) {
        sc->head = (sc->head + 1) % RC_SCALE_SAMPLES_MAX;
        sc->n--;
    }
    sc->ring[(sc->head + sc->n) % RC_SCALE_SAMPLES_MAX] = *smp;
    sc->n++;
}

static uint32_t clamp(const rc_scaler *sc, uint32_t n)
{
    return n < sc->min ? sc->min : n > sc->max ? sc->max : n;
}

rc_scale_decision rc_scaler_step(rc_scaler *sc, uint32_t current, const rc_scale_sample *smp)
{
    push(sc, smp);
    sc->high_run = smp->fill_pct > RC_SCALE_HIGH_PCT ? sc->high_run + 1 : 0;
    if (smp->fill_pct >= RC_SCALE_LOW_PCT)
        sc->low_since_ms = 0;
    else if (!sc->low_since_ms)
        sc->low_since_ms = smp->t_ms ? smp->t_ms : 1;
    bool steady_low = sc->low_since_ms && smp->t_ms - sc->low_since_ms >= RC_SCALE_LOW_MS &&
                      (!sc->last_grow_ms || smp->t_ms - sc->last_grow_ms >= RC_SCALE_LOW_AFTER_GROW_MS);
    rc_scale_decision d = { .dir = RC_SCALE_STAY, .target = current, .fill_pct = smp->fill_pct, .io_wait_pct = smp->io_wait_pct };
    d.qps_recent = qps_over(sc, RC_SCALE_RECENT_MS);
    d.qps_baseline = qps_baseline(sc);
    /* Idle: nothing processed over a whole recent window. */
    bool idle = sc->n >= 2 && smp->t_ms - at(sc, 0)->t_ms >= RC_SCALE_RECENT_MS && d.qps_recent == 0 &&
                smp->fill_pct == 0;
    if (smp->fill_pct > RC_SCALE_HIGH_PCT && d.qps_recent * 100.0 > d.qps_baseline * RC_SCALE_GROW_QPS_PCT) {
        d.dir = RC_SCALE_GROW;
        d.why = "queue_and_qps";
    } else if (sc->high_run >= RC_SCALE_HIGH_SAMPLES) {
        d.dir = RC_SCALE_GROW;
        d.why = "steady_overload";
    } else if (smp->fill_pct < RC_SCALE_LOW_PCT && d.qps_recent * 100.0 < d.qps_baseline * RC_SCALE_SHRINK_QPS_PCT) {
        d.dir = RC_SCALE_SHRINK;
        d.why = "quiet";
    } else if (idle) {
        d.dir = RC_SCALE_SHRINK;
        d.why = "idle";
    } else if (steady_low) {
        d.dir = RC_SCALE_SHRINK;
        d.why = "steady_low";
    } else {
        d.why = "steady";
        return d;
    }
    if (d.dir == RC_SCALE_GROW && smp->io_wait_pct >= RC_SCALE_IO_BOUND_PCT) {
        d.dir = RC_SCALE_STAY;
        d.why = "io_bound";
        return d;
    }
    uint32_t step = d.dir == RC_SCALE_GROW ? current * RC_SCALE_GROW_PCT / 100u : current * RC_SCALE_SHRINK_PCT / 100u;
    if (step == 0)
        step = 1;
    uint32_t want = clamp(sc, d.dir == RC_SCALE_GROW ? current + step : current > step ? current - step : 0);
    if (want == current) {
        d.dir = RC_SCALE_STAY;
        d.why = current >= sc->max ? "at_max_shards" : "at_min_shards";
        return d;
    }
    if (sc->last_event_ms && smp->t_ms - sc->last_event_ms < sc->cooldown_ms) {
        d.dir = RC_SCALE_STAY;
        d.why = "cooldown";
        return d;
    }
    d.target = want;
    return d;
}

void rc_scaler_applied(rc_scaler *sc, uint64_t t_ms, rc_scale_dir dir)
{
    sc->last_event_ms = t_ms ? t_ms : 1;
    sc->high_run = 0;
    if (dir == RC_SCALE_GROW)
        sc->last_grow_ms = sc->last_event_ms;
}
