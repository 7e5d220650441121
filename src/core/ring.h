/*
 * Bounded lock-free rings of pointers: SPSC and MPSC (single consumer).
 *
 * Power-of-two capacity; producer and consumer indices live on separate cache
 * lines so the two sides never write the same line. Every operation has a
 * bulk form (all n or nothing) and a burst form (as many as fit / as are
 * there); both claim their n slots with one index update, in the manner of
 * DPDK's rte_ring. Single items have their own entry points, inline below:
 * no copy loop, no bulk/burst choice, no call. Each side keeps a copy of the
 * other side's index and reloads it only when the ring looks full (or
 * empty). Memory ordering is explained at each atomic, here and in ring.c.
 */
#ifndef RC_CORE_RING_H
#define RC_CORE_RING_H

#include <assert.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define RC_RING_MAX_CAPACITY (1u << 30)
#define RC_RING_CACHE_LINE 64u

typedef enum rc_ring_kind {
    RC_RING_SPSC = 0, /* one producer thread, one consumer thread */
    RC_RING_MPSC = 1, /* any number of producer threads, one consumer thread */
} rc_ring_kind;

/* Visible only for the inline single-item operations below: use the
 * functions, never the fields. ring.c explains the indices. */
typedef struct rc_ring {
    /* Read-only after create: shared by every thread without contention. */
    alignas(RC_RING_CACHE_LINE) uint32_t capacity; /* number of slots, power of two */
    uint32_t mask;                                 /* capacity - 1 */
    rc_ring_kind kind;                             /* SPSC or MPSC */
    /* Written by producers only. */
    alignas(RC_RING_CACHE_LINE) struct {
        _Atomic uint32_t head;   /* MPSC: next index to claim (unused in SPSC) */
        _Atomic uint32_t tail;   /* first index not yet published to the consumer */
        uint32_t cons_tail_seen; /* SPSC: the producer's copy of cons.tail */
    } prod;
    /* Written by the consumer only. */
    alignas(RC_RING_CACHE_LINE) struct {
        _Atomic uint32_t tail;   /* first index not yet consumed (head == tail: one consumer) */
        uint32_t prod_tail_seen; /* the consumer's copy of prod.tail */
    } cons;
    alignas(RC_RING_CACHE_LINE) void *slots[]; /* capacity entries */
} rc_ring;

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

/* Approximate number of objects in the ring (exact when quiescent); any thread. */
uint32_t rc_ring_count(const rc_ring *r);
uint32_t rc_ring_capacity(const rc_ring *r);

/* ---- the other side's index, as each side sees it (ring internals) */

/* SPSC producer: free slots after `head`, reloading the copy of cons.tail
 * only when it shows fewer than n. */
static inline uint32_t rc_ring_sp_free_(rc_ring *r, uint32_t head, uint32_t n)
{
    uint32_t free_slots = r->capacity + r->prod.cons_tail_seen - head;
    if (free_slots >= n)
        return free_slots;
    /* Acquire pairs with the consumer's release of cons.tail: its reads of
     * the freed slots happen before we overwrite them. The copy carries that
     * guarantee, since it is only ever set here, before any write to a slot
     * it frees. */
    r->prod.cons_tail_seen = atomic_load_explicit(&r->cons.tail, memory_order_acquire);
    free_slots = r->capacity + r->prod.cons_tail_seen - head;
    assert(free_slots <= r->capacity); /* the consumer never passes what we published */
    return free_slots;
}

/* Consumer: filled slots from `tail`, reloading the copy of prod.tail only
 * when it shows fewer than n. */
static inline uint32_t rc_ring_filled_(rc_ring *r, uint32_t tail, uint32_t n)
{
    uint32_t filled = r->cons.prod_tail_seen - tail;
    if (filled >= n)
        return filled;
    /* Acquire pairs with the producers' release of prod.tail: the slot
     * writes up to prod.tail are visible before we read them. The copy
     * carries that guarantee, since it is only ever set here, before any
     * read of a slot it covers. */
    r->cons.prod_tail_seen = atomic_load_explicit(&r->prod.tail, memory_order_acquire);
    filled = r->cons.prod_tail_seen - tail;
    /* Never more than capacity: every producer checked its claim against a
     * cons.tail no later than ours. */
    assert(filled <= r->capacity);
    return filled;
}

/* ---- single items */

/* Enqueue one object: false when the ring is full. */
static inline bool rc_ring_enqueue(rc_ring *r, void *obj)
{
    if (r->kind == RC_RING_MPSC)
        return rc_ring_enqueue_bulk(r, &obj, 1) == 1;
    /* Relaxed: the single producer is the only writer of prod.tail. */
    uint32_t head = atomic_load_explicit(&r->prod.tail, memory_order_relaxed);
    if (rc_ring_sp_free_(r, head, 1) == 0)
        return false;
    r->slots[head & r->mask] = obj;
    /* Release: the slot write happens before the consumer's acquire of prod.tail. */
    atomic_store_explicit(&r->prod.tail, head + 1, memory_order_release);
    return true;
}

/* Dequeue one object into *obj (consumer thread only): false, *obj untouched, when empty. */
static inline bool rc_ring_dequeue(rc_ring *r, void **obj)
{
    /* Relaxed: the single consumer is the only writer of cons.tail. */
    uint32_t tail = atomic_load_explicit(&r->cons.tail, memory_order_relaxed);
    if (rc_ring_filled_(r, tail, 1) == 0)
        return false;
    *obj = r->slots[tail & r->mask];
    /* Release: the slot read happens before a producer's acquire of
     * cons.tail lets it overwrite the slot. */
    atomic_store_explicit(&r->cons.tail, tail + 1, memory_order_release);
    return true;
}

#endif
