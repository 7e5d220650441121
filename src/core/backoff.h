/*
 * Retrying a failed step with exponential backoff and jitter: the wait
 * before retry k (1, 2, ...) is base << (k - 1) plus up to half of that
 * again, drawn from a per-thread xorshift state, so threads that failed
 * together do not retry in lockstep.
 */
#ifndef RC_CORE_BACKOFF_H
#define RC_CORE_BACKOFF_H

#include <stdint.h>
#include <time.h>

static inline uint64_t rc_backoff_next(uint64_t *state)
{
    uint64_t x = *state ? *state : UINT64_C(0x9E3779B97F4A7C15);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

/* Microseconds to wait before retry `k` (k >= 1). */
static inline uint64_t rc_backoff_us(uint32_t k, uint64_t base_us, uint64_t *state)
{
    uint64_t us = base_us << (k - 1);
    return us + rc_backoff_next(state) % (us / 2 + 1);
}

static inline void rc_backoff_sleep(uint64_t us)
{
    struct timespec ts = { (time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L };
    nanosleep(&ts, NULL);
}

#endif
