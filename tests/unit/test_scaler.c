/*
 * The autoscaler's decision rule (src/core/scaler.h), fed synthetic samples
 * one second apart: steady load never changes anything, a step up grows
 * within two samples (a queue high twice in a row), a steady overload grows without a QPS spike, calm
 * after a spike shrinks, an idle server goes down to min_shards, the bounds
 * and the cooldown hold, and the sizes follow +25 % / -15 % (at least one).
 */
#include "core/scaler.h"

#include <CUnit/Basic.h>
#include <stdint.h>

#include "testutil.h"

#define STEP_MS 1000u
#define COOLDOWN_MS 10000u

typedef struct sim {
    rc_scaler sc;
    uint64_t t_ms, jobs;
    uint32_t shards;
    int grows, shrinks;
} sim;

static void sim_init(sim *s, uint32_t min, uint32_t max, uint32_t shards)
{
    *s = (sim){ .shards = shards, .t_ms = 1000 };
    rc_scaler_init(&s->sc, min, max, COOLDOWN_MS);
}

/* One sample of `qps` jobs/s and a queue `fill` % full; applies the
 * decision as the server would. Returns the decision. */
static rc_scale_decision step(sim *s, uint64_t qps, uint32_t fill)
{
    s->t_ms += STEP_MS;
    s->jobs += qps * STEP_MS / 1000u;
    rc_scale_sample smp = { .t_ms = s->t_ms, .jobs = s->jobs, .fill_pct = fill };
    rc_scale_decision d = rc_scaler_step(&s->sc, s->shards, &smp);
    if (d.dir != RC_SCALE_STAY) {
        s->grows += d.dir == RC_SCALE_GROW;
        s->shrinks += d.dir == RC_SCALE_SHRINK;
        s->shards = d.target;
        rc_scaler_applied(&s->sc, s->t_ms, d.dir);
    }
    return d;
}

static void test_steady_never_flaps(void)
{
    sim s;
    sim_init(&s, 1, 8, 2);
    for (int i = 0; i < 600; i++)
        step(&s, 50000, 50); /* busy but keeping up */
    CU_ASSERT_EQUAL(s.grows + s.shrinks, 0);
    CU_ASSERT_EQUAL(s.shards, 2);
    for (int i = 0; i < 600; i++)
        step(&s, 50000 + (uint64_t)(i % 7) * 2000, 30 + (uint32_t)(i % 5) * 8); /* noisy, still steady */
    CU_ASSERT_EQUAL(s.grows + s.shrinks, 0);
}

static void test_step_up_grows_within_two_samples(void)
{
    sim s;
    sim_init(&s, 1, 8, 4);
    for (int i = 0; i < 60; i++)
        step(&s, 10000, 10);
    int took = 0;
    for (; took < 10 && s.grows == 0; took++)
        step(&s, 40000, 95);
    CU_ASSERT_EQUAL(s.grows, 1);
    CU_ASSERT(took <= 2);
    CU_ASSERT_EQUAL(s.shards, 5); /* 4 + 25 % */
}

static void test_steady_overload_grows_then_waits_cooldown(void)
{
    sim s;
    sim_init(&s, 1, 8, 2);
    int first = -1, second = -1;
    for (int i = 0; i < 40; i++) {
        rc_scale_decision d = step(&s, 20000, 100); /* no spike: QPS is its own baseline */
        if (d.dir == RC_SCALE_GROW && first < 0)
            first = i;
        else if (d.dir == RC_SCALE_GROW && second < 0)
            second = i;
    }
    CU_ASSERT_EQUAL(first, (int)RC_SCALE_HIGH_SAMPLES - 1);
    CU_ASSERT(second - first >= (int)(COOLDOWN_MS / STEP_MS));
    CU_ASSERT(s.shards > 2);
}

static void test_calm_after_spike_shrinks(void)
{
    sim s;
    sim_init(&s, 1, 8, 6);
    for (int i = 0; i < 60; i++)
        step(&s, 80000, 60);
    int took = 0;
    for (; took < 20 && s.shrinks == 0; took++)
        step(&s, 10000, 5);
    CU_ASSERT_EQUAL(s.shrinks, 1);
    CU_ASSERT(took <= (int)(COOLDOWN_MS / STEP_MS)); /* the 10 s mean falls below 70 % of the 60 s one */
    CU_ASSERT_EQUAL(s.shards, 5); /* 6 - 15 % rounds to one */
}

static void test_idle_goes_to_min(void)
{
    sim s;
    sim_init(&s, 2, 8, 6);
    for (int i = 0; i < 300; i++)
        step(&s, 0, 0);
    CU_ASSERT_EQUAL(s.shards, 2);
    CU_ASSERT_EQUAL(s.grows, 0);
    rc_scale_decision d = step(&s, 0, 0);
    CU_ASSERT_EQUAL(d.dir, RC_SCALE_STAY);
}

static void test_bounds(void)
{
    sim s;
    sim_init(&s, 1, 10, 8);
    for (int i = 0; i < 100; i++)
        step(&s, 20000, 100);
    CU_ASSERT_EQUAL(s.shards, 10); /* 8 + 2, then clamped */
    CU_ASSERT_EQUAL(s.grows, 1);
    rc_scale_decision d = step(&s, 20000, 100);
    CU_ASSERT_EQUAL(d.dir, RC_SCALE_STAY);
    CU_ASSERT_STRING_EQUAL(d.why, "at_max_shards");
    /* min == max: nothing ever moves. */
    sim_init(&s, 3, 3, 3);
    for (int i = 0; i < 100; i++)
        step(&s, (uint64_t)(i % 2) * 90000, i % 2 ? 100 : 0);
    CU_ASSERT_EQUAL(s.grows + s.shrinks, 0);
}

static void test_burst_over_comes_back(void)
{
    sim s;
    sim_init(&s, 1, 8, 2);
    for (int i = 0; i < 60; i++)
        step(&s, 10000, 5);
    for (int i = 0; i < 40; i++)
        step(&s, 40000, 100); /* the burst: the queue full throughout */
    CU_ASSERT(s.shards >= 4);
    uint32_t top = s.shards;
    int grows = s.grows;
    /* Calm again at the old rate, the queue low: within a few minutes the
     * count comes down (the 60 s baseline forgets the burst, so the QPS
     * rule alone would stop), and nothing grows meanwhile. */
    for (int i = 0; i < 600; i++)
        step(&s, 10000, 5);
    CU_ASSERT_EQUAL(s.grows, grows);
    CU_ASSERT(s.shards < top);
    CU_ASSERT_EQUAL(s.shards, 1); /* a low queue all along: down to min_shards */
}

static void test_low_queue_waits_after_grow(void)
{
    sim s;
    sim_init(&s, 1, 8, 2);
    step(&s, 20000, 100);
    step(&s, 20000, 100); /* grows */
    CU_ASSERT_EQUAL(s.grows, 1);
    int i = 0;
    for (; i < 300 && s.shrinks == 0; i++)
        step(&s, 20000, 5); /* the same QPS, now with a low queue */
    CU_ASSERT_EQUAL(s.shrinks, 1);
    CU_ASSERT(i * (int)STEP_MS >= (int)RC_SCALE_LOW_AFTER_GROW_MS - (int)STEP_MS);
}

/* A full queue whose shards wait for the io threads to take their output
 * (a big fan-out on few cores) is not grown: more shards would only take
 * CPU from the io threads. Once the shards stop waiting, it grows. */
static void test_io_bound_does_not_grow(void)
{
    sim s;
    sim_init(&s, 1, 8, 2);
    for (int i = 0; i < 30; i++) {
        s.t_ms += STEP_MS;
        s.jobs += 20000;
        rc_scale_sample smp = { .t_ms = s.t_ms, .jobs = s.jobs, .fill_pct = 100, .io_wait_pct = 60 };
        rc_scale_decision d = rc_scaler_step(&s.sc, s.shards, &smp);
        CU_ASSERT_EQUAL(d.dir, RC_SCALE_STAY);
        if (i >= (int)RC_SCALE_HIGH_SAMPLES) /* before, it is too early to grow anyway */
            CU_ASSERT_STRING_EQUAL(d.why, "io_bound");
    }
    s.t_ms += STEP_MS;
    s.jobs += 20000;
    rc_scale_sample smp = { .t_ms = s.t_ms, .jobs = s.jobs, .fill_pct = 100, .io_wait_pct = RC_SCALE_IO_BOUND_PCT - 1 };
    rc_scale_decision d = rc_scaler_step(&s.sc, s.shards, &smp);
    CU_ASSERT_EQUAL(d.dir, RC_SCALE_GROW);
    CU_ASSERT_EQUAL(d.target, 3);
}

/* The baseline is the minute before the recent window: a rise to 1.6x
 * that lasts 10 s passes 1.5x of it (a baseline that included the rise
 * would have risen to 1.1x the old rate, and 1.6 / 1.1 < 1.5). The queue
 * is high every other sample, so only the QPS rule can grow. */
static void test_spike_does_not_raise_its_baseline(void)
{
    sim s;
    sim_init(&s, 1, 8, 2);
    for (int i = 0; i < 70; i++)
        step(&s, 10000, 10);
    int k = 1;
    for (; k <= 10 && s.grows == 0; k++)
        step(&s, 16000, k % 2 ? 90 : 50);
    CU_ASSERT_EQUAL(s.grows, 1);
    CU_ASSERT(k - 1 <= 10);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("scaler", NULL, NULL);
    CU_add_test(s, "steady load never flaps", test_steady_never_flaps);
    CU_add_test(s, "a step up grows within two samples", test_step_up_grows_within_two_samples);
    CU_add_test(s, "a steady overload grows, then waits the cooldown", test_steady_overload_grows_then_waits_cooldown);
    CU_add_test(s, "calm after a spike shrinks", test_calm_after_spike_shrinks);
    CU_add_test(s, "an idle server goes down to min_shards", test_idle_goes_to_min);
    CU_add_test(s, "min_shards and max_shards hold", test_bounds);
    CU_add_test(s, "after a burst the count comes back down", test_burst_over_comes_back);
    CU_add_test(s, "a low queue shrinks, but not right after a grow", test_low_queue_waits_after_grow);
    CU_add_test(s, "shards waiting for the io threads are not grown", test_io_bound_does_not_grow);
    CU_add_test(s, "a spike does not raise its own baseline", test_spike_does_not_raise_its_baseline);
    return rc_test_run();
}
