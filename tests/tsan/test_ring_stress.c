/*
 * Concurrent stress of the rings, built with -fsanitize=thread.
 *
 * Each item's pointer value carries its producer id and a per-producer
 * sequence number. The consumer checks that every producer's items arrive
 * exactly once and in order: no loss, no duplication, no reordering within a
 * producer. Producers mix single, bulk and burst enqueues of varying sizes.
 * Counts are sized to finish within seconds under TSan on two cores.
 */
#include "core/ring.h"

#include <CUnit/Basic.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define MPSC_PRODUCERS 4u
#define MPSC_ITEMS_PER_PRODUCER 1000000u
#define SPSC_ITEMS 2000000u
#define RING_CAPACITY 1024u
#define BATCH_MAX 32u    /* largest producer batch */
#define DRAIN_MAX 64u    /* largest consumer burst */
#define PID_SHIFT 40u    /* item = (pid << PID_SHIFT) | (seq + 1) */
#define SEQ_MASK ((UINT64_C(1) << PID_SHIFT) - 1)
#define ENQ_MODES 3u     /* single, bulk, burst */

typedef struct producer {
    rc_ring *ring;
    uint64_t pid;
    uint64_t items;
    uint64_t rng; /* xorshift state: batch sizes and modes */
} producer;

static void *encode(uint64_t pid, uint64_t seq)
{
    return (void *)(uintptr_t)((pid << PID_SHIFT) | (seq + 1));
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Enqueue items [seq, seq + n) in one mode; returns how many went in. */
static uint32_t put_batch(producer *p, uint64_t seq, uint32_t n, unsigned mode)
{
    void *batch[BATCH_MAX];
    for (uint32_t i = 0; i < n; i++)
        batch[i] = encode(p->pid, seq + i);
    switch (mode) {
    case 0:
        return rc_ring_enqueue(p->ring, batch[0]) ? 1 : 0;
    case 1:
        return rc_ring_enqueue_bulk(p->ring, batch, n);
    default:
        return rc_ring_enqueue_burst(p->ring, batch, n);
    }
}

static void *produce(void *arg)
{
    producer *p = arg;
    uint64_t seq = 0;
    while (seq < p->items) {
        uint64_t left = p->items - seq;
        uint32_t n = 1 + (uint32_t)(xorshift(&p->rng) % BATCH_MAX);
        n = n > left ? (uint32_t)left : n;
        unsigned mode = (unsigned)(xorshift(&p->rng) % ENQ_MODES);
        uint32_t put = put_batch(p, seq, n, mode);
        if (put == 0)
            sched_yield(); /* full: let the consumer run */
        seq += put;
    }
    return NULL;
}

typedef struct tally {
    uint64_t next[MPSC_PRODUCERS]; /* next expected seq per producer */
    uint64_t received;
    uint64_t bad_pid;
    uint64_t out_of_order; /* lost, duplicated or reordered */
} tally;

static void check_item(tally *t, void *obj)
{
    uint64_t v = (uint64_t)(uintptr_t)obj;
    uint64_t pid = v >> PID_SHIFT;
    t->received++;
    if (pid >= MPSC_PRODUCERS) {
        t->bad_pid++;
        return;
    }
    uint64_t seq = (v & SEQ_MASK) - 1;
    if (seq != t->next[pid])
        t->out_of_order++;
    t->next[pid] = seq + 1;
}

/* Drain until `total` items have arrived; bulk_too mixes in bulk dequeues. */
static void consume(rc_ring *r, uint64_t total, bool bulk_too, tally *t)
{
    void *out[DRAIN_MAX];
    uint32_t round = 0;
    while (t->received < total) {
        uint32_t want = 1 + round % DRAIN_MAX;
        uint32_t got = bulk_too && round % 2 ? rc_ring_dequeue_bulk(r, out, want)
                                             : rc_ring_dequeue_burst(r, out, DRAIN_MAX);
        round++;
        if (got == 0)
            sched_yield(); /* empty: let producers run */
        for (uint32_t i = 0; i < got; i++)
            check_item(t, out[i]);
    }
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void run_stress(rc_ring_kind kind, uint32_t nproducers, uint64_t per_producer,
                       bool bulk_dequeue)
{
    rc_ring *r = rc_ring_create(RING_CAPACITY, kind);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    producer prods[MPSC_PRODUCERS];
    pthread_t threads[MPSC_PRODUCERS];
    uint32_t started = 0;
    double t0 = now_seconds();
    for (uint32_t i = 0; i < nproducers; i++) {
        prods[i] = (producer){ .ring = r, .pid = i, .items = per_producer,
                               .rng = 0x9E3779B97F4A7C15ull * (i + 1) };
        if (pthread_create(&threads[i], NULL, produce, &prods[i]) != 0)
            break;
        started++;
    }
    CU_ASSERT_EQUAL_FATAL(started, nproducers);
    tally t = { 0 };
    consume(r, (uint64_t)nproducers * per_producer, bulk_dequeue, &t);
    for (uint32_t i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    printf("\n  %s: %u x %llu items in %.2f s ", kind == RC_RING_MPSC ? "MPSC" : "SPSC",
           (unsigned)nproducers, (unsigned long long)per_producer, now_seconds() - t0);

    CU_ASSERT_EQUAL(t.bad_pid, 0);
    CU_ASSERT_EQUAL(t.out_of_order, 0);
    CU_ASSERT_EQUAL(t.received, (uint64_t)nproducers * per_producer);
    for (uint32_t i = 0; i < nproducers; i++)
        CU_ASSERT_EQUAL(t.next[i], per_producer); /* every item, none extra */
    CU_ASSERT_EQUAL(rc_ring_count(r), 0);
    rc_ring_destroy(r);
}

static void test_mpsc_stress(void)
{
    run_stress(RC_RING_MPSC, MPSC_PRODUCERS, MPSC_ITEMS_PER_PRODUCER, false);
}

static void test_spsc_stress(void)
{
    run_stress(RC_RING_SPSC, 1, SPSC_ITEMS, true);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("ring stress", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "MPSC 4 producers", test_mpsc_stress) ||
        !CU_add_test(s, "SPSC", test_spsc_stress)) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failures ? 1 : 0;
}
