/*
 * Bounded lock-free rings of pointers, after DPDK's rte_ring.
 *
 * Indices are free-running uint32_t counters; a slot is `index & mask`, and
 * unsigned subtraction gives the distance between two indices even after the
 * counters wrap past 2^32 (capacity is at most 2^30, so the distance always
 * fits).
 *
 * Producers: `prod.tail` is the first index not yet published to the
 * consumer. In an MPSC ring `prod.head` is the next index to claim: a
 * producer claims n slots by CAS on prod.head, writes the slots, waits until
 * prod.tail reaches its old head (so producers publish in claim order) and
 * store-releases prod.tail = old head + n. In an SPSC ring the one producer
 * has nobody to claim against, so prod.tail is also its head and prod.head
 * is unused.
 *
 * Consumer: there is exactly one, so its head and tail are one index,
 * `cons.tail`: it reads up to prod.tail, copies the slots out, and
 * store-releases cons.tail, handing the slots back to the producers.
 *
 * Each side keeps a copy of the other side's index on its own cache line
 * (the SPSC producer a copy of cons.tail, the consumer a copy of prod.tail)
 * and reloads the real index only when its copy says the ring is full (or
 * empty); the two reloads are rc_ring_sp_free_ and rc_ring_filled_ in
 * ring.h, shared by the inline single-item operations and the code here.
 * A copy only ever lags the real index, so it understates the free (or
 * filled) slots and never lets a side touch a slot it does not own.
 * MPSC producers share prod.head, so they cannot share a plain copy and
 * load cons.tail on every claim.
 *
 * Invariant: cons.tail <= prod.tail <= prod.head <= cons.tail + capacity
 * (in the wrapped, distance sense; SPSC: prod.head reads as prod.tail).
 */
#include "core/ring.h"

#include <assert.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RC_RING_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define RC_RING_CPU_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define RC_RING_CPU_RELAX() ((void)0)
#endif

#define RC_RING_MIN_CAPACITY 2u
/* Spins on a busy index before giving the CPU away; a producer we wait for
 * may have been preempted, and spinning longer would only delay it. */
#define RC_RING_SPINS_BEFORE_YIELD 64u
/* rc_ring_count retries this many times for a snapshot in which cons.tail
 * did not move, then settles for a clamped one. */
#define RC_RING_COUNT_TRIES 4u

static bool is_power_of_two(uint32_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

rc_ring *rc_ring_create(uint32_t capacity, rc_ring_kind kind)
{
    if (capacity < RC_RING_MIN_CAPACITY || capacity > RC_RING_MAX_CAPACITY ||
        !is_power_of_two(capacity))
        return NULL;
    if (kind != RC_RING_SPSC && kind != RC_RING_MPSC)
        return NULL;
    size_t size = sizeof(rc_ring) + (size_t)capacity * sizeof(void *);
    /* aligned_alloc wants a size that is a multiple of the alignment. */
    size = (size + RC_RING_CACHE_LINE - 1) / RC_RING_CACHE_LINE * RC_RING_CACHE_LINE;
    rc_ring *r = aligned_alloc(RC_RING_CACHE_LINE, size);
    if (r == NULL)
        return NULL;
    r->capacity = capacity;
    r->mask = capacity - 1;
    r->kind = kind;
    /* Not yet shared with any other thread: no ordering needed. */
    atomic_init(&r->prod.head, 0);
    atomic_init(&r->prod.tail, 0);
    r->prod.cons_tail_seen = 0;
    atomic_init(&r->cons.tail, 0);
    r->cons.prod_tail_seen = 0;
    return r;
}

void rc_ring_destroy(rc_ring *r)
{
    free(r);
}

uint32_t rc_ring_capacity(const rc_ring *r)
{
    return r->capacity;
}

/*
 * A snapshot is exact when cons.tail is the same before and after the
 * prod.tail load: then 0 <= count <= capacity, so a larger count means the
 * ring really was overfilled (the stress test relies on that). Why it holds:
 * the producer that stored the prod.tail we read checked it against a
 * cons.tail it had seen, no more than capacity behind; our acquire of
 * prod.tail makes that producer's load of cons.tail happen before our second
 * load, which therefore sees that value or a later one.
 */
uint32_t rc_ring_count(const rc_ring *r)
{
    uint32_t cons_tail = 0, prod_tail = 0;
    for (uint32_t try = 0; try < RC_RING_COUNT_TRIES; try++) {
        /* Acquire pairs with the consumer's release of cons.tail, which it
         * made after loading a prod.tail at least this large: our prod.tail
         * load below then sees at least that, so the count is never negative. */
        cons_tail = atomic_load_explicit(&r->cons.tail, memory_order_acquire);
        /* Acquire pairs with the release of prod.tail (see the comment above
         * the function) and keeps the cons.tail reload below after this load. */
        prod_tail = atomic_load_explicit(&r->prod.tail, memory_order_acquire);
        /* Relaxed: only compared with the first load; the acquire above
         * already orders it. */
        if (atomic_load_explicit(&r->cons.tail, memory_order_relaxed) == cons_tail)
            return prod_tail - cons_tail;
    }
    /* cons.tail kept moving: the consumer may have freed slots and producers
     * refilled them between the loads, so the snapshot can overstate; clamp. */
    uint32_t count = prod_tail - cons_tail;
    return count > r->capacity ? r->capacity : count;
}

/* How many of n to take when `avail` are available: all-or-nothing for
 * bulk, as many as possible for burst. */
static uint32_t fit(uint32_t n, uint32_t avail, bool bulk)
{
    if (n <= avail)
        return n;
    return bulk ? 0 : avail;
}

static void backoff(uint32_t *spins)
{
    if (++*spins < RC_RING_SPINS_BEFORE_YIELD) {
        RC_RING_CPU_RELAX();
        return;
    }
    *spins = 0;
    sched_yield();
}

/* Single producer: nobody else moves prod.tail, so it is our head. Returns
 * the claimed count and the first claimed index in *old_head. */
static uint32_t sp_claim(rc_ring *r, uint32_t n, bool bulk, uint32_t *old_head)
{
    /* Relaxed: this thread is the only writer of prod.tail. */
    uint32_t head = atomic_load_explicit(&r->prod.tail, memory_order_relaxed);
    /* The acquire of cons.tail that makes the free slots ours is inside. */
    uint32_t free_slots = rc_ring_sp_free_(r, head, n);
    *old_head = head;
    return fit(n, free_slots, bulk);
}

/* Multiple producers: claim [old_head, old_head + n) by CAS on prod.head.
 *
 * The danger is a head newer than the cons.tail we compare it with: another
 * producer claimed up to head against a cons.tail we have not seen yet, and
 * capacity + cons_tail - head wraps to a huge free count. Two things rule
 * it out: every successful CAS is a release and every load of head an
 * acquire, so the cons.tail load of the producer that stored the head we
 * hold happens before ours, and ours sees that value or a later one; and a
 * free count above capacity (which also covers a head gone stale while we
 * read cons.tail) reloads head instead of being trusted. */
static uint32_t mp_claim(rc_ring *r, uint32_t n, bool bulk, uint32_t *old_head)
{
    /* Acquire pairs with the release of the CAS that stored this head (see
     * above), and keeps the cons.tail load below after this one. */
    uint32_t head = atomic_load_explicit(&r->prod.head, memory_order_acquire);
    uint32_t take;
    for (;;) {
        /* Acquire pairs with the consumer's release of cons.tail: its reads
         * of the freed slots happen before we overwrite them. */
        uint32_t cons_tail = atomic_load_explicit(&r->cons.tail, memory_order_acquire);
        uint32_t free_slots = r->capacity + cons_tail - head;
        if (free_slots > r->capacity) {
            /* Acquire: as for the first load of head. */
            head = atomic_load_explicit(&r->prod.head, memory_order_acquire);
            continue;
        }
        take = fit(n, free_slots, bulk);
        if (take == 0)
            break;
        /* Success: release, so the cons.tail load above happens before the
         * cons.tail load of whichever producer acquires this head next (the
         * acquire half is not needed: C11 only wants the failure order no
         * stronger than the success order). Failure: acquire, as for the
         * first load, since the reloaded head feeds the next cons.tail load. */
        if (atomic_compare_exchange_weak_explicit(&r->prod.head, &head, head + take,
                                                  memory_order_acq_rel, memory_order_acquire))
            break;
    }
    *old_head = head;
    return take;
}

#define RC_RING_COPY_LOOP 4u /* up to this many pointers: a loop beats a memcpy call */

static void copy_in(rc_ring *r, uint32_t head, void *const *objs, uint32_t n)
{
    if (n <= RC_RING_COPY_LOOP) {
        for (uint32_t i = 0; i < n; i++)
            r->slots[(head + i) & r->mask] = objs[i];
        return;
    }
    uint32_t idx = head & r->mask;
    uint32_t first = r->capacity - idx < n ? r->capacity - idx : n;
    memcpy(&r->slots[idx], objs, first * sizeof(void *));
    memcpy(&r->slots[0], objs + first, (n - first) * sizeof(void *));
}

static void copy_out(const rc_ring *r, uint32_t tail, void **objs, uint32_t n)
{
    if (n <= RC_RING_COPY_LOOP) {
        for (uint32_t i = 0; i < n; i++)
            objs[i] = r->slots[(tail + i) & r->mask];
        return;
    }
    uint32_t idx = tail & r->mask;
    uint32_t first = r->capacity - idx < n ? r->capacity - idx : n;
    memcpy(objs, &r->slots[idx], first * sizeof(void *));
    memcpy(objs + first, &r->slots[0], (n - first) * sizeof(void *));
}

/* MPSC: wait until every claim before old_head is published. */
static void wait_for_earlier_claims(rc_ring *r, uint32_t old_head)
{
    uint32_t spins = 0;
    /* Acquire pairs with the earlier producer's release of prod.tail, so its
     * slot writes happen before our release of prod.tail and reach the
     * consumer through it (a relaxed wait would break that chain in C11). */
    while (atomic_load_explicit(&r->prod.tail, memory_order_acquire) != old_head)
        backoff(&spins);
}

static uint32_t enqueue(rc_ring *r, void *const *objs, uint32_t n, bool bulk)
{
    uint32_t head;
    bool multi = r->kind == RC_RING_MPSC;
    uint32_t claimed = multi ? mp_claim(r, n, bulk, &head) : sp_claim(r, n, bulk, &head);
    if (claimed == 0)
        return 0;
    assert(claimed <= r->capacity);
    copy_in(r, head, objs, claimed);
    if (multi)
        wait_for_earlier_claims(r, head);
    /* Release: our slot writes (and, via the acquire in the wait, those of
     * every earlier producer) happen before the consumer's acquire of
     * prod.tail. */
    atomic_store_explicit(&r->prod.tail, head + claimed, memory_order_release);
    return claimed;
}

static uint32_t dequeue(rc_ring *r, void **objs, uint32_t n, bool bulk)
{
    /* Relaxed: the single consumer is the only writer of cons.tail. */
    uint32_t tail = atomic_load_explicit(&r->cons.tail, memory_order_relaxed);
    /* The acquire of prod.tail that makes the filled slots readable is inside. */
    uint32_t avail = rc_ring_filled_(r, tail, n);
    n = fit(n, avail, bulk);
    if (n == 0)
        return 0;
    copy_out(r, tail, objs, n);
    /* Release: our slot reads happen before a producer's acquire of
     * cons.tail lets it overwrite those slots. */
    atomic_store_explicit(&r->cons.tail, tail + n, memory_order_release);
    return n;
}

uint32_t rc_ring_enqueue_bulk(rc_ring *r, void *const *objs, uint32_t n)
{
    return enqueue(r, objs, n, true);
}

uint32_t rc_ring_enqueue_burst(rc_ring *r, void *const *objs, uint32_t n)
{
    return enqueue(r, objs, n, false);
}

uint32_t rc_ring_dequeue_bulk(rc_ring *r, void **objs, uint32_t n)
{
    return dequeue(r, objs, n, true);
}

uint32_t rc_ring_dequeue_burst(rc_ring *r, void **objs, uint32_t n)
{
    return dequeue(r, objs, n, false);
}
