/*
 * The one clock of the project: monotonic nanoseconds for durations and
 * deadlines, wall-clock milliseconds for timestamps that leave the process
 * (a message's `ts`, a dead letter's time), and a loop-cached "now" for hot
 * loops that read the time many times per turn.
 *
 * Header-only (static inline) so every layer, the client library included,
 * uses the same functions without a link dependency.
 */
#ifndef RC_CORE_CLOCK_H
#define RC_CORE_CLOCK_H

#include <stdint.h>
#include <time.h>

#define RC_NS_PER_MS 1000000ull
#define RC_NS_PER_SEC 1000000000ull

/* Monotonic time in nanoseconds (CLOCK_MONOTONIC): for durations, timeouts
 * and deadlines; never goes back. */
static inline uint64_t rc_clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * RC_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static inline uint64_t rc_clock_mono_ms(void)
{
    return rc_clock_mono_ns() / RC_NS_PER_MS;
}

/* Wall-clock time in unix milliseconds (CLOCK_REALTIME): for timestamps
 * other machines read. */
static inline uint64_t rc_clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / RC_NS_PER_MS;
}

/* A loop's cached monotonic time: refreshed once per loop turn
 * (rc_loop_clock_tick), read as often as needed (rc_loop_clock_now) without
 * a clock_gettime call. Owned by one thread. */
typedef struct rc_loop_clock {
    uint64_t now_ns; /* monotonic time at the last tick */
} rc_loop_clock;

static inline uint64_t rc_loop_clock_tick(rc_loop_clock *c)
{
    c->now_ns = rc_clock_mono_ns();
    return c->now_ns;
}

static inline uint64_t rc_loop_clock_now(const rc_loop_clock *c)
{
    return c->now_ns;
}

#endif
