/*
 * The one stats macro. Counters are _Atomic uint64_t fields written by one
 * thread (the io thread, the shard, ...) and read by the metrics page from
 * another, so a counter is bumped with a relaxed load and a relaxed store
 * rather than an atomic read-modify-write: with a single writer no update
 * can be lost, and the reader needs no ordering with anything else (a
 * counter is a snapshot, never a synchronisation point). A counter with
 * several writers must use rc_stat_add_shared instead.
 */
#ifndef RC_CORE_STATS_H
#define RC_CORE_STATS_H

#include <stdatomic.h>
#include <stdint.h>

/* Single-writer counter: RC_STAT_ADD(io->stats.sends, 1). */
#define RC_STAT_ADD(counter, n) rc_stat_add(&(counter), (uint64_t)(n))

static inline void rc_stat_add(_Atomic uint64_t *c, uint64_t n)
{
    /* relaxed: one writer, readers only want a recent value. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

/* Single-writer gauge: RC_STAT_SET(s->stats.ring_wait_ns, v). */
#define RC_STAT_SET(gauge, v) atomic_store_explicit(&(gauge), (uint64_t)(v), memory_order_relaxed) /* relaxed: as above */

/* Counter written by several threads. */
static inline void rc_stat_add_shared(_Atomic uint64_t *c, uint64_t n)
{
    /* relaxed: a count, not a synchronisation point. */
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* The value for the metrics page (any thread). */
static inline uint64_t rc_stat_get(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

#endif
