/*
 * Bounded lock-free rings of pointers: SPSC and MPSC (single consumer).
 *
 * Power-of-two capacity; producer and consumer indices live on separate cache
 * lines so the two sides never write the same line. Every operation has a
 * bulk form (all n or nothing) and a burst form (as many as fit / as are
 * there); both claim their n slots with one index update, in the manner of
 * DPDK's rte_ring. Memory ordering is explained at each atomic in ring.c.
 */
#ifndef RC_CORE_RING_H
#define RC_CORE_RING_H

#include <stdbool.h>
#include <stdint.h>

#define RC_RING_MAX_CAPACITY (1u << 30)

typedef enum rc_ring_kind {
    RC_RING_SPSC = 0, /* one producer thread, one consumer thread */
    RC_RING_MPSC = 1, /* any number of producer threads, one consumer thread */
} rc_ring_kind;

typedef struct rc_ring rc_ring;

/* capacity must be a power of two in [2, RC_RING_MAX_CAPACITY]; NULL otherwise or on ENOMEM. */
rc_ring *rc_ring_create(uint32_t capacity, rc_ring_kind kind);
void rc_ring_destroy(rc_ring *r);

/* Enqueue exactly n objects or none: returns n or 0. */
uint32_t rc_ring_enqueue_bulk(rc_ring *r, void *const *objs, uint32_t n);
/* Enqueue as many of the n objects as fit, in order: returns how many. */
uint32_t rc_ring_enqueue_burst(rc_ring *r, void *const *objs, uint32_t n);
/* Dequeue exactly n objects or none (consumer thread only). */
uint32_t rc_ring_dequeue_bulk(rc_ring *r, void **objs, uint32_t n);
/* Dequeue up to n objects (consumer thread only): returns how many. */
uint32_t rc_ring_dequeue_burst(rc_ring *r, void **objs, uint32_t n);

static inline bool rc_ring_enqueue(rc_ring *r, void *obj)
{
    return rc_ring_enqueue_bulk(r, &obj, 1) == 1;
}

/* Approximate number of objects in the ring (exact when quiescent); any thread. */
uint32_t rc_ring_count(const rc_ring *r);
uint32_t rc_ring_capacity(const rc_ring *r);

#endif
