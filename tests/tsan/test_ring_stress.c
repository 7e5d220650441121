/*
 * Concurrent stress of the rings, built with -fsanitize=thread.
 *
 * Each item's pointer value carries its producer id and a per-producer
 * sequence number. The consumer checks that every producer's items arrive
 * exactly once and in order: no loss, no duplication, no reordering within a
 * producer. Producers mix single, bulk and burst enqueues of varying sizes;
 * the consumer mixes single, bulk and burst dequeues, its bursts asking for
 * twice the capacity, so that an overfilled ring would hand it more than
 * capacity items.
 *
 * Every thread also checks, at each of its operations, that rc_ring_count
 * never exceeds the capacity (an exact snapshot above capacity means the
 * ring was overfilled). Threads only record what they see; the assertions
 * run on the main thread once they are joined (CUnit is not thread-safe).
 *
 * Loops are bounded in count and in time: producers stop at the item count or
 * at RUN_LIMIT_S, whichever comes first, and the checks then apply to what
 * was sent; the consumer stops once every producer is done and the ring is
 * empty, or fails the case DRAIN_GRACE_S after that. Counts are sized to
 * finish within seconds under TSan on two cores.
 */
#include "core/ring.h"

#include <CUnit/Basic.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_PRODUCERS 4u
#define BATCH_MAX 32u       /* largest producer batch */
#define PID_SHIFT 40u       /* item = (pid << PID_SHIFT) | (seq + 1) */
#define SEQ_MASK ((UINT64_C(1) << PID_SHIFT) - 1)
#define ENQ_MODES 3u        /* single, bulk, burst */
#define DEQ_MODES 3u        /* single, bulk, burst of twice the capacity */
#define RUN_LIMIT_S 5.0     /* producers stop sending after this long */
#define DRAIN_GRACE_S 5.0   /* then the consumer has this long to empty the ring */
#define CLOCK_CHECK_OPS 64u /* operations between two looks at the clock */

typedef struct stress_case {
    const char *name;
    rc_ring_kind kind;
    uint32_t producers;    /* at most MAX_PRODUCERS; 1 for SPSC */
    uint64_t per_producer; /* items each producer sends unless stopped by time */
    uint32_t capacity;
} stress_case;

static const stress_case CASES[] = {
    { "MPSC 4 producers, capacity 1024", RC_RING_MPSC, 4, 1000000, 1024 },
    /* A small ring is full most of the time: every claim races the others
     * and the consumer at the boundary where a wrong free count overfills. */
    { "MPSC 3 producers, capacity 8", RC_RING_MPSC, 3, 300000, 8 },
    { "SPSC, capacity 1024", RC_RING_SPSC, 1, 2000000, 1024 },
    /* The cached indices are refreshed at almost every operation. */
    { "SPSC, capacity 4", RC_RING_SPSC, 1, 1000000, 4 },
};
#define NCASES (sizeof CASES / sizeof CASES[0])

typedef struct shared {
    rc_ring *ring;
    uint32_t capacity;
    double deadline;                  /* producers stop here */
    _Atomic uint32_t producers_done;  /* producers that have stopped */
} shared;

typedef struct producer {
    shared *sh;
    uint64_t pid;
    uint64_t items;
    uint64_t rng;        /* xorshift state: batch sizes and modes */
    uint64_t sent;       /* items enqueued; final once joined */
    uint64_t count_over; /* rc_ring_count above capacity */
    bool stopped;        /* stopped by the deadline before sending all */
} producer;

typedef struct tally {
    uint64_t next[MAX_PRODUCERS]; /* next expected seq per producer */
    uint64_t received;
    uint64_t bad_pid;
    uint64_t out_of_order; /* lost, duplicated or reordered */
    uint64_t count_over;   /* rc_ring_count above capacity */
    uint64_t take_over;    /* one dequeue returned more than capacity */
    uint32_t max_count;    /* largest rc_ring_count seen */
    bool timed_out;        /* the ring was not empty DRAIN_GRACE_S after the deadline */
} tally;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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
        return rc_ring_enqueue(p->sh->ring, batch[0]) ? 1 : 0;
    case 1:
        return rc_ring_enqueue_bulk(p->sh->ring, batch, n);
    default:
        return rc_ring_enqueue_burst(p->sh->ring, batch, n);
    }
}

static void *produce(void *arg)
{
    producer *p = arg;
    shared *sh = p->sh;
    uint64_t seq = 0;
    for (uint64_t op = 0; seq < p->items; op++) {
        if (op % CLOCK_CHECK_OPS == 0 && now_seconds() > sh->deadline) {
            p->stopped = true;
            break;
        }
        uint64_t left = p->items - seq;
        uint32_t n = 1 + (uint32_t)(xorshift(&p->rng) % BATCH_MAX);
        n = n > left ? (uint32_t)left : n;
        unsigned mode = (unsigned)(xorshift(&p->rng) % ENQ_MODES);
        uint32_t put = put_batch(p, seq, n, mode);
        p->count_over += rc_ring_count(sh->ring) > sh->capacity;
        if (put == 0)
            sched_yield(); /* full: let the consumer run */
        seq += put;
    }
    p->sent = seq;
    /* Release: every enqueue above happens before the consumer's acquire of
     * producers_done, so the consumer's next dequeue sees all of them. */
    atomic_fetch_add_explicit(&sh->producers_done, 1, memory_order_release);
    return NULL;
}

static void check_item(tally *t, void *obj)
{
    uint64_t v = (uint64_t)(uintptr_t)obj;
    uint64_t pid = v >> PID_SHIFT;
    t->received++;
    if (pid >= MAX_PRODUCERS) {
        t->bad_pid++;
        return;
    }
    uint64_t seq = (v & SEQ_MASK) - 1;
    if (seq != t->next[pid])
        t->out_of_order++;
    t->next[pid] = seq + 1;
}

/* One dequeue in a mode picked by the round number; returns how many. */
static uint32_t take(rc_ring *r, void **out, uint32_t capacity, uint64_t round)
{
    switch (round % DEQ_MODES) {
    case 0:
        return rc_ring_dequeue(r, out) ? 1 : 0;
    case 1:
        return rc_ring_dequeue_bulk(r, out, 1 + (uint32_t)(round / DEQ_MODES % capacity));
    default:
        return rc_ring_dequeue_burst(r, out, 2 * capacity);
    }
}

static void observe_count(tally *t, const shared *sh)
{
    uint32_t count = rc_ring_count(sh->ring);
    t->count_over += count > sh->capacity;
    t->max_count = count > t->max_count ? count : t->max_count;
}

/* Drain until every producer is done and the ring is empty, or give up
 * DRAIN_GRACE_S after the producers' deadline. */
static void consume(shared *sh, uint32_t nproducers, void **out, tally *t)
{
    for (uint64_t round = 0;; round++) {
        /* Acquire pairs with each producer's release: read before the
         * dequeue, so a ring found empty after all are done stays empty. */
        bool all_done =
            atomic_load_explicit(&sh->producers_done, memory_order_acquire) == nproducers;
        observe_count(t, sh);
        uint32_t got = take(sh->ring, out, sh->capacity, round);
        t->take_over += got > sh->capacity;
        for (uint32_t i = 0; i < got; i++)
            check_item(t, out[i]);
        if (got != 0)
            continue;
        /* A bulk dequeue also comes back empty-handed from a ring holding
         * fewer than it asked for; once all are done the count is exact. */
        if (all_done && rc_ring_count(sh->ring) == 0)
            return;
        if (round % CLOCK_CHECK_OPS == 0 && now_seconds() > sh->deadline + DRAIN_GRACE_S) {
            t->timed_out = true;
            return;
        }
        sched_yield(); /* empty: let producers run */
    }
}

static void run_case(const stress_case *c)
{
    CU_ASSERT_FATAL(c->producers >= 1 && c->producers <= MAX_PRODUCERS);
    shared sh = { .ring = rc_ring_create(c->capacity, c->kind), .capacity = c->capacity };
    void **out = calloc(2 * (size_t)c->capacity, sizeof *out);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sh.ring);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    atomic_init(&sh.producers_done, 0);
    double t0 = now_seconds();
    sh.deadline = t0 + RUN_LIMIT_S;

    producer prods[MAX_PRODUCERS];
    pthread_t threads[MAX_PRODUCERS];
    uint32_t started = 0;
    for (uint32_t i = 0; i < c->producers; i++) {
        prods[i] = (producer){ .sh = &sh, .pid = i, .items = c->per_producer,
                               .rng = 0x9E3779B97F4A7C15ull * (i + 1) };
        if (pthread_create(&threads[i], NULL, produce, &prods[i]) != 0)
            break;
        started++;
    }
    /* Producers that did not start count as done, so the drain can end. */
    atomic_fetch_add_explicit(&sh.producers_done, c->producers - started, memory_order_relaxed);
    tally t = { 0 };
    consume(&sh, c->producers, out, &t);
    for (uint32_t i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    CU_ASSERT_EQUAL_FATAL(started, c->producers);

    uint64_t sent = 0, producer_count_over = 0;
    bool stopped = false;
    for (uint32_t i = 0; i < c->producers; i++) {
        sent += prods[i].sent;
        producer_count_over += prods[i].count_over;
        stopped = stopped || prods[i].stopped;
    }
    printf("\n  %s: %llu of %llu items in %.2f s%s, largest count %u ", c->name,
           (unsigned long long)sent, (unsigned long long)c->producers * c->per_producer,
           now_seconds() - t0, stopped ? " (stopped at the time limit)" : "", t.max_count);

    CU_ASSERT_FALSE(t.timed_out);
    CU_ASSERT_EQUAL(producer_count_over, 0);
    CU_ASSERT_EQUAL(t.count_over, 0);
    CU_ASSERT_EQUAL(t.take_over, 0);
    CU_ASSERT_EQUAL(t.bad_pid, 0);
    CU_ASSERT_EQUAL(t.out_of_order, 0);
    CU_ASSERT_EQUAL(t.received, sent);
    CU_ASSERT(sent > 0);
    for (uint32_t i = 0; i < c->producers; i++)
        CU_ASSERT_EQUAL(t.next[i], prods[i].sent); /* every item, none extra */
    CU_ASSERT_EQUAL(rc_ring_count(sh.ring), 0);
    free(out);
    rc_ring_destroy(sh.ring);
}

static void test_case_0(void) { run_case(&CASES[0]); }
static void test_case_1(void) { run_case(&CASES[1]); }
static void test_case_2(void) { run_case(&CASES[2]); }
static void test_case_3(void) { run_case(&CASES[3]); }

static void (*const CASE_TESTS[])(void) = { test_case_0, test_case_1, test_case_2, test_case_3 };
_Static_assert(sizeof CASE_TESTS / sizeof CASE_TESTS[0] == NCASES, "one test per case");

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("ring stress", NULL, NULL);
    bool ok = s != NULL;
    for (size_t i = 0; ok && i < NCASES; i++)
        ok = CU_add_test(s, CASES[i].name, CASE_TESTS[i]) != NULL;
    if (!ok) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failures ? 1 : 0;
}
