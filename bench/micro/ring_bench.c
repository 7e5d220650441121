/*
 * Ring throughput: rc_ring (src/core/ring.h) against Concurrency Kit's
 * ck_ring, same capacity, same item count, same threads, same waiting policy,
 * measured in the same run and interleaved rep by rep.
 *
 * One run moves `items` tagged pointers from P producer threads through one
 * ring to one consumer thread. A tag is (producer id << 40 | sequence), so
 * the consumer can check that every producer's items arrive once, in order,
 * and that the sum of all tags equals the producers' sum: a run that loses,
 * duplicates or reorders an item is reported as FAIL, whatever its speed.
 *
 * Shapes: SPSC (P = 1) and MPSC (P = 2, 4), each with single-item operations
 * and with batches of MICRO_RING_BATCH. rc_ring single items are
 * rc_ring_enqueue / rc_ring_dequeue; rc_ring batches are one
 * rc_ring_enqueue_bulk (all or nothing) and one rc_ring_dequeue_burst per
 * batch. ck_ring has no bulk or burst operation, so its batched rows are the
 * same number of single ck operations in a loop; the row shows what a caller
 * holding a batch gets from each library. ck functions used:
 * ck_ring_enqueue_spsc / ck_ring_dequeue_spsc for P = 1, ck_ring_enqueue_mpsc
 * / ck_ring_dequeue_mpsc for P > 1.
 *
 * Time: from the release of the started, waiting threads to the consumer
 * taking the last item. Ops/s is items delivered per second (each item is
 * one enqueue and one dequeue). A run that exceeds the time limit stops its
 * producers, drains the ring, still checks what was sent, and is flagged.
 */
#include "micro.h"

#include "core/ring.h"

#include <ck_pr.h>
#include <ck_ring.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE_LINE 64u
#define MICRO_RING_BATCH 32u
#define MAX_PRODUCERS 4u
#define SEQ_BITS 40u
#define SEQ_MASK ((UINT64_C(1) << SEQ_BITS) - 1)
/* A thread that finds the ring full (or empty) pauses this many times, then
 * gives its CPU away: with more threads than CPUs the thread it waits for
 * may be the one that is not running. The same policy for both rings. */
#define SPINS_BEFORE_YIELD 64u
/* Producers look at the stop flag once per this many items (a power of two
 * and a multiple of MICRO_RING_BATCH). */
#define STOP_CHECK_ITEMS 256u

_Static_assert(sizeof(void *) == sizeof(uint64_t), "tags are 64-bit pointers");
_Static_assert(STOP_CHECK_ITEMS % MICRO_RING_BATCH == 0, "stop checks fall on batch starts");

#define FORCE_INLINE static inline __attribute__((always_inline))

typedef enum ring_impl { IMPL_RC = 0, IMPL_CK = 1, IMPL_COUNT } ring_impl;

static const char *const impl_name[IMPL_COUNT] = { "rc_ring", "ck_ring" };

typedef struct ring_shape {
    uint32_t producers; /* producer threads; one consumer thread always */
    uint32_t batch;     /* 1 or MICRO_RING_BATCH */
} ring_shape;

static const ring_shape shapes[] = {
    { 1, 1 }, { 1, MICRO_RING_BATCH }, { 2, 1 }, { 2, MICRO_RING_BATCH },
    { 4, 1 }, { 4, MICRO_RING_BATCH },
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

typedef struct run_result {
    double seconds;    /* release of the threads to the last item taken */
    double ops_per_s;  /* received / seconds */
    uint64_t sent;     /* items the producers enqueued */
    uint64_t received; /* items the consumer dequeued */
    bool intact;       /* received == sent, sums equal, every producer in order */
    bool timed_out;    /* producers were stopped at the time limit */
} run_result;

struct ring_results {
    uint32_t capacity;
    uint64_t items;
    unsigned reps;
    unsigned cpus;
    run_result runs[NSHAPES][IMPL_COUNT][MICRO_MAX_REPS];
};

/* The queue under test: exactly one of rc / ck is set. */
typedef struct bench_queue {
    ring_impl impl;
    bool multi; /* more than one producer: MPSC operations */
    rc_ring *rc;
    ck_ring_t *ck;
    ck_ring_buffer_t *ck_slots;
} bench_queue;

struct run;

typedef struct producer {
    alignas(CACHE_LINE) struct run *run;
    uint32_t id;
    uint64_t count; /* items to send */
    uint64_t sent;  /* items sent: count, or fewer when stopped */
    uint64_t sum;   /* sum of the tags sent */
    pthread_t thread;
} producer;

typedef struct consumer {
    alignas(CACHE_LINE) struct run *run;
    uint64_t received;
    uint64_t sum;
    uint64_t misordered;                /* tags not equal to their producer's next */
    uint64_t last_seq[MAX_PRODUCERS];   /* last sequence seen per producer */
    double t_end;
    pthread_t thread;
} consumer;

typedef struct run {
    bench_queue q;       /* read-only while the threads run */
    uint32_t producers;
    uint32_t batch;
    uint64_t target;     /* items all producers together are to send */
    producer prod[MAX_PRODUCERS];
    consumer cons;
    alignas(CACHE_LINE) _Atomic uint32_t ready; /* threads started and waiting */
    _Atomic bool go;
    alignas(CACHE_LINE) _Atomic bool stop;      /* set by main at the time limit */
    alignas(CACHE_LINE) _Atomic uint32_t producers_done;
    pthread_mutex_t lock; /* guards consumer_done, signalled through done_cv */
    pthread_cond_t done_cv;
    bool consumer_done;
} run;

FORCE_INLINE void wait_a_little(uint32_t *spins)
{
    if (++*spins < SPINS_BEFORE_YIELD) {
        ck_pr_stall();
        return;
    }
    *spins = 0;
    sched_yield();
}

FORCE_INLINE void *tag(uint32_t producer_id, uint64_t seq)
{
    return (void *)(uintptr_t)(((uint64_t)producer_id << SEQ_BITS) | (seq + 1));
}

/* ---- the two rings behind one set of calls; impl and multi are constants
 * at every call site, so each thread body compiles to direct calls. */

FORCE_INLINE bool ck_put(bench_queue *q, bool multi, void *obj)
{
    return multi ? ck_ring_enqueue_mpsc(q->ck, q->ck_slots, obj)
                 : ck_ring_enqueue_spsc(q->ck, q->ck_slots, obj);
}

FORCE_INLINE bool ck_take(bench_queue *q, bool multi, void **obj)
{
    return multi ? ck_ring_dequeue_mpsc(q->ck, q->ck_slots, obj)
                 : ck_ring_dequeue_spsc(q->ck, q->ck_slots, obj);
}

/* Enqueue n objects, waiting while the ring is full. */
FORCE_INLINE void put_all(bench_queue *q, ring_impl impl, bool multi, void *const *objs, uint32_t n,
                          uint32_t *spins)
{
    if (impl == IMPL_RC && n == 1) {
        while (!rc_ring_enqueue(q->rc, objs[0]))
            wait_a_little(spins);
        return;
    }
    if (impl == IMPL_RC) {
        while (rc_ring_enqueue_bulk(q->rc, objs, n) != n)
            wait_a_little(spins);
        return;
    }
    for (uint32_t i = 0; i < n; i++)
        while (!ck_put(q, multi, objs[i]))
            wait_a_little(spins);
}

/* Dequeue up to n objects without waiting; returns how many. */
FORCE_INLINE uint32_t take_some(bench_queue *q, ring_impl impl, bool multi, void **objs, uint32_t n)
{
    if (impl == IMPL_RC)
        return n == 1 ? (uint32_t)rc_ring_dequeue(q->rc, objs) : rc_ring_dequeue_burst(q->rc, objs, n);
    uint32_t got = 0;
    while (got < n && ck_take(q, multi, &objs[got]))
        got++;
    return got;
}

/* ---- thread bodies */

static void wait_for_go(run *r)
{
    atomic_fetch_add_explicit(&r->ready, 1, memory_order_relaxed);
    /* Acquire pairs with main's release of go: the run set-up (queue, counts)
     * is visible before the first operation. Yield while waiting: there may
     * be more threads than CPUs. */
    while (!atomic_load_explicit(&r->go, memory_order_acquire))
        sched_yield();
}

FORCE_INLINE void produce(producer *p, ring_impl impl, bool multi, uint32_t batch)
{
    run *r = p->run;
    void *objs[MICRO_RING_BATCH];
    uint32_t spins = 0;
    uint64_t seq = 0, sum = 0;
    while (seq < p->count) {
        /* Relaxed: the flag only ends the loop; the counts are published by
         * the release on producers_done below. */
        if ((seq & (STOP_CHECK_ITEMS - 1)) == 0 &&
            atomic_load_explicit(&r->stop, memory_order_relaxed))
            break;
        uint32_t n = p->count - seq < batch ? (uint32_t)(p->count - seq) : batch;
        for (uint32_t i = 0; i < n; i++) {
            objs[i] = tag(p->id, seq + i);
            sum += (uintptr_t)objs[i];
        }
        put_all(&r->q, impl, multi, objs, n, &spins);
        seq += n;
    }
    p->sent = seq;
    p->sum = sum;
    /* Release: sent and sum are visible to whoever acquires producers_done. */
    atomic_fetch_add_explicit(&r->producers_done, 1, memory_order_release);
}

static void *producer_main(void *arg)
{
    producer *p = arg;
    run *r = p->run;
    wait_for_go(r);
    bool batched = r->batch > 1;
    if (r->q.impl == IMPL_RC)
        produce(p, IMPL_RC, r->q.multi, batched ? MICRO_RING_BATCH : 1);
    else if (!r->q.multi)
        produce(p, IMPL_CK, false, batched ? MICRO_RING_BATCH : 1);
    else
        produce(p, IMPL_CK, true, batched ? MICRO_RING_BATCH : 1);
    return NULL;
}

FORCE_INLINE void accept(consumer *c, void *obj)
{
    uint64_t v = (uintptr_t)obj;
    uint64_t id = v >> SEQ_BITS, seq = v & SEQ_MASK;
    if (id < MAX_PRODUCERS && seq == c->last_seq[id] + 1)
        c->last_seq[id] = seq;
    else
        c->misordered++;
    c->sum += v;
    c->received++;
}

/* True once every producer has finished and everything it sent is taken. */
static bool all_sent_taken(run *r, const consumer *c)
{
    /* Acquire pairs with each producer's release: their sent counts are final. */
    if (atomic_load_explicit(&r->producers_done, memory_order_acquire) != r->producers)
        return false;
    uint64_t sent = 0;
    for (uint32_t i = 0; i < r->producers; i++)
        sent += r->prod[i].sent;
    return c->received >= sent;
}

FORCE_INLINE void consume(consumer *c, ring_impl impl, bool multi, uint32_t batch)
{
    run *r = c->run;
    void *objs[MICRO_RING_BATCH];
    uint32_t spins = 0;
    for (;;) {
        uint32_t n = take_some(&r->q, impl, multi, objs, batch);
        if (n != 0) {
            for (uint32_t i = 0; i < n; i++)
                accept(c, objs[i]);
            spins = 0;
            if (c->received == r->target)
                break;
            continue;
        }
        if (all_sent_taken(r, c))
            break;
        wait_a_little(&spins);
    }
    c->t_end = micro_now();
}

static void *consumer_main(void *arg)
{
    consumer *c = arg;
    run *r = c->run;
    wait_for_go(r);
    bool batched = r->batch > 1;
    if (r->q.impl == IMPL_RC)
        consume(c, IMPL_RC, r->q.multi, batched ? MICRO_RING_BATCH : 1);
    else if (!r->q.multi)
        consume(c, IMPL_CK, false, batched ? MICRO_RING_BATCH : 1);
    else
        consume(c, IMPL_CK, true, batched ? MICRO_RING_BATCH : 1);
    pthread_mutex_lock(&r->lock);
    r->consumer_done = true;
    pthread_cond_signal(&r->done_cv);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* ---- one run */

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

static int queue_open(bench_queue *q, ring_impl impl, uint32_t producers, uint32_t capacity)
{
    memset(q, 0, sizeof *q);
    q->impl = impl;
    q->multi = producers > 1;
    if (impl == IMPL_RC) {
        q->rc = rc_ring_create(capacity, q->multi ? RC_RING_MPSC : RC_RING_SPSC);
        return q->rc != NULL ? 0 : -1;
    }
    q->ck = aligned_alloc(CACHE_LINE, round_up(sizeof *q->ck, CACHE_LINE));
    q->ck_slots = aligned_alloc(CACHE_LINE, round_up((size_t)capacity * sizeof *q->ck_slots, CACHE_LINE));
    if (q->ck == NULL || q->ck_slots == NULL) {
        free(q->ck);
        free(q->ck_slots);
        return -1;
    }
    ck_ring_init(q->ck, capacity);
    return 0;
}

static void queue_close(bench_queue *q)
{
    rc_ring_destroy(q->rc);
    free(q->ck);
    free(q->ck_slots);
}

static run *run_new(ring_impl impl, const ring_shape *shape, const micro_opts *o)
{
    run *r = aligned_alloc(CACHE_LINE, round_up(sizeof *r, CACHE_LINE));
    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof *r);
    if (queue_open(&r->q, impl, shape->producers, o->capacity) != 0) {
        free(r);
        return NULL;
    }
    r->producers = shape->producers;
    r->batch = shape->batch;
    r->target = o->items;
    for (uint32_t i = 0; i < r->producers; i++) {
        r->prod[i].run = r;
        r->prod[i].id = i;
        /* Spread the items evenly; the first producers take the remainder. */
        r->prod[i].count = o->items / r->producers + (i < o->items % r->producers ? 1 : 0);
    }
    r->cons.run = r;
    atomic_init(&r->ready, 0);
    atomic_init(&r->go, false);
    atomic_init(&r->stop, false);
    atomic_init(&r->producers_done, 0);
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&r->done_cv, &attr);
    pthread_condattr_destroy(&attr);
    return r;
}

static void run_free(run *r)
{
    pthread_cond_destroy(&r->done_cv);
    pthread_mutex_destroy(&r->lock);
    queue_close(&r->q);
    free(r);
}

/* Wait for the consumer; past the time limit tell the producers to stop
 * (the consumer then drains what they sent) and keep waiting. */
static bool wait_consumer(run *r, double limit_s)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    time_t whole = (time_t)limit_s; /* limit_s > 0: the cast rounds down */
    deadline.tv_sec += whole;
    deadline.tv_nsec += (long)((limit_s - (double)whole) * 1e9);
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    bool timed_out = false;
    pthread_mutex_lock(&r->lock);
    while (!r->consumer_done) {
        if (timed_out) {
            pthread_cond_wait(&r->done_cv, &r->lock);
        } else if (pthread_cond_timedwait(&r->done_cv, &r->lock, &deadline) == ETIMEDOUT &&
                   !r->consumer_done) {
            timed_out = true;
            atomic_store_explicit(&r->stop, true, memory_order_relaxed);
        }
    }
    pthread_mutex_unlock(&r->lock);
    return timed_out;
}

static void check_run(const run *r, run_result *res)
{
    uint64_t sent = 0, sum = 0;
    for (uint32_t i = 0; i < r->producers; i++) {
        sent += r->prod[i].sent;
        sum += r->prod[i].sum;
    }
    const consumer *c = &r->cons;
    bool in_order = c->misordered == 0;
    for (uint32_t i = 0; i < r->producers; i++)
        in_order = in_order && c->last_seq[i] == r->prod[i].sent;
    res->sent = sent;
    res->received = c->received;
    res->intact = c->received == sent && c->sum == sum && in_order &&
                  (res->timed_out || sent == r->target);
}

/* Start the consumer, then the producers. On a failed pthread_create the
 * producers not started count as done with nothing sent and everyone is
 * released with stop set, so the started threads finish at once. Returns
 * the number of threads started (consumer first); all started on success. */
static uint32_t start_threads(run *r)
{
    if (pthread_create(&r->cons.thread, NULL, consumer_main, &r->cons) != 0)
        return 0;
    for (uint32_t i = 0; i < r->producers; i++) {
        if (pthread_create(&r->prod[i].thread, NULL, producer_main, &r->prod[i]) != 0) {
            atomic_store(&r->stop, true);
            atomic_fetch_add(&r->producers_done, r->producers - i);
            atomic_store(&r->go, true);
            return 1 + i;
        }
    }
    return 1 + r->producers;
}

static void join_threads(run *r, uint32_t started)
{
    if (started == 0)
        return;
    pthread_join(r->cons.thread, NULL);
    for (uint32_t i = 0; i + 1 < started; i++)
        pthread_join(r->prod[i].thread, NULL);
}

static int run_once(ring_impl impl, const ring_shape *shape, const micro_opts *o, run_result *res)
{
    run *r = run_new(impl, shape, o);
    if (r == NULL) {
        fprintf(stderr, "ringcast-micro: ring set-up failed (capacity %u)\n", o->capacity);
        return -1;
    }
    uint32_t started = start_threads(r);
    if (started != r->producers + 1) {
        fprintf(stderr, "ringcast-micro: cannot start %u threads\n", r->producers + 1);
        join_threads(r, started);
        run_free(r);
        return -1;
    }
    while (atomic_load_explicit(&r->ready, memory_order_relaxed) != started)
        sched_yield();
    double t0 = micro_now();
    /* Release: the set-up above is visible to every thread's acquire of go. */
    atomic_store_explicit(&r->go, true, memory_order_release);
    res->timed_out = wait_consumer(r, o->time_limit_s);
    join_threads(r, started);
    res->seconds = r->cons.t_end - t0;
    check_run(r, res);
    res->ops_per_s = res->seconds > 0 ? (double)res->received / res->seconds : 0;
    run_free(r);
    return 0;
}

ring_results *ring_bench_run(const micro_opts *o)
{
    ring_results *res = calloc(1, sizeof *res);
    if (res == NULL)
        return NULL;
    res->capacity = o->capacity;
    res->items = o->items;
    res->reps = o->reps;
    res->cpus = micro_cpus();
    /* Reps are the outer loop and the two rings alternate which goes first,
     * so drift in the machine's speed hits both alike. */
    for (unsigned rep = 0; rep < o->reps; rep++) {
        for (size_t s = 0; s < NSHAPES; s++) {
            for (unsigned k = 0; k < IMPL_COUNT; k++) {
                ring_impl impl = (ring_impl)((k + rep) % IMPL_COUNT);
                fprintf(stderr, "ringcast-micro: ring rep %u/%u: %s P=%u batch=%u\n", rep + 1,
                        o->reps, impl_name[impl], shapes[s].producers, shapes[s].batch);
                if (run_once(impl, &shapes[s], o, &res->runs[s][impl][rep]) != 0) {
                    free(res);
                    return NULL;
                }
            }
        }
    }
    return res;
}

/* ---- reporting */

typedef struct case_summary {
    double best, worst; /* ops/s over the reps */
    bool intact;        /* every rep intact */
    bool timed_out;     /* some rep hit the time limit */
    uint64_t received;  /* items received, summed over reps */
} case_summary;

static case_summary summarize(const ring_results *res, size_t s, ring_impl impl)
{
    case_summary cs = { .best = 0, .worst = INFINITY, .intact = true };
    for (unsigned rep = 0; rep < res->reps; rep++) {
        const run_result *rr = &res->runs[s][impl][rep];
        cs.best = micro_max(cs.best, rr->ops_per_s);
        cs.worst = micro_min(cs.worst, rr->ops_per_s);
        cs.intact = cs.intact && rr->intact;
        cs.timed_out = cs.timed_out || rr->timed_out;
        cs.received += rr->received;
    }
    return cs;
}

bool ring_bench_ok(const ring_results *res)
{
    for (size_t s = 0; s < NSHAPES; s++)
        for (unsigned i = 0; i < IMPL_COUNT; i++)
            if (!summarize(res, s, (ring_impl)i).intact)
                return false;
    return true;
}

static const char *check_label(bool rc_intact, bool ck_intact)
{
    if (rc_intact && ck_intact)
        return "ok";
    if (rc_intact)
        return "FAIL (ck_ring)";
    return ck_intact ? "FAIL (rc_ring)" : "FAIL (both)";
}

static const char *pattern_name(const ring_shape *shape)
{
    return shape->producers == 1 ? "SPSC" : "MPSC";
}

void ring_bench_print_md(FILE *out, const ring_results *res)
{
    fprintf(out, "## Rings: %llu items per run, capacity %u, best of %u\n\n",
            (unsigned long long)res->items, res->capacity, res->reps);
    fprintf(out, "| pattern | threads (P+C) | ops | rc_ring Mops/s | ck_ring Mops/s | rc ÷ ck "
                 "| rc_ring range | ck_ring range | items + sum check |\n");
    fprintf(out, "|---|---|---|---:|---:|---:|---|---|---|\n");
    bool any_timeout = false, any_oversub = false;
    for (size_t s = 0; s < NSHAPES; s++) {
        const ring_shape *sh = &shapes[s];
        case_summary rc = summarize(res, s, IMPL_RC), ck = summarize(res, s, IMPL_CK);
        bool oversub = sh->producers + 1 > res->cpus;
        any_oversub = any_oversub || oversub;
        any_timeout = any_timeout || rc.timed_out || ck.timed_out;
        char ops[64];
        if (sh->batch == 1)
            snprintf(ops, sizeof ops, "single");
        else
            snprintf(ops, sizeof ops, "batch %u (ck: %u singles)", sh->batch, sh->batch);
        fprintf(out, "| %s | %u+1%s | %s | %.1f%s | %.1f%s | %.2f | %.1f–%.1f | %.1f–%.1f | %s |\n",
                pattern_name(sh), sh->producers, oversub ? " (oversubscribed)" : "", ops,
                rc.best / 1e6, rc.timed_out ? "*" : "", ck.best / 1e6, ck.timed_out ? "*" : "",
                ck.best > 0 ? rc.best / ck.best : 0, rc.worst / 1e6, rc.best / 1e6, ck.worst / 1e6,
                ck.best / 1e6,
                check_label(rc.intact, ck.intact));
    }
    fprintf(out, "\nMops/s = millions of items delivered per second, end to end (each item one "
                 "enqueue and one dequeue); range = worst–best of the %u reps. ck_ring has no "
                 "bulk/burst operations, so its batched rows are %u single ck operations in a "
                 "loop. A ck_ring of size %u holds %u items (one slot stays empty).\n",
            res->reps, MICRO_RING_BATCH, res->capacity, res->capacity - 1);
    if (any_oversub)
        fprintf(out, "\n%u online CPUs: rows marked oversubscribed run more threads than CPUs, "
                     "so they measure scheduling as much as the ring. Waiting threads pause %u "
                     "times then sched_yield(); inside the rings, rc_ring's MPSC publish also "
                     "yields after %u spins, while ck_ring's MPSC commit spins until the "
                     "producer before it (possibly preempted) has committed.\n",
                res->cpus, SPINS_BEFORE_YIELD, SPINS_BEFORE_YIELD);
    if (any_timeout)
        fprintf(out, "\n\\* some rep hit the time limit: its producers were stopped early; the "
                     "rate counts only the items delivered.\n");
    fputc('\n', out);
}

void ring_bench_print_json(FILE *out, const ring_results *res)
{
    fprintf(out, "{\"capacity\":%u,\"items\":%llu,\"reps\":%u,\"cpus\":%u,\"cases\":[",
            res->capacity, (unsigned long long)res->items, res->reps, res->cpus);
    for (size_t s = 0; s < NSHAPES; s++) {
        for (unsigned i = 0; i < IMPL_COUNT; i++) {
            case_summary cs = summarize(res, s, (ring_impl)i);
            fprintf(out, "%s{\"pattern\":\"%s\",\"producers\":%u,\"batch\":%u,\"impl\":\"%s\","
                         "\"best_ops_per_s\":%.0f,\"worst_ops_per_s\":%.0f,\"intact\":%s,"
                         "\"timed_out\":%s,\"runs\":[",
                    s + i == 0 ? "" : ",", pattern_name(&shapes[s]), shapes[s].producers,
                    shapes[s].batch, impl_name[i], cs.best, cs.worst, cs.intact ? "true" : "false",
                    cs.timed_out ? "true" : "false");
            for (unsigned rep = 0; rep < res->reps; rep++) {
                const run_result *rr = &res->runs[s][i][rep];
                fprintf(out, "%s{\"seconds\":%.6f,\"ops_per_s\":%.0f,\"sent\":%llu,"
                             "\"received\":%llu,\"intact\":%s,\"timed_out\":%s}",
                        rep == 0 ? "" : ",", rr->seconds, rr->ops_per_s,
                        (unsigned long long)rr->sent, (unsigned long long)rr->received,
                        rr->intact ? "true" : "false", rr->timed_out ? "true" : "false");
            }
            fputs("]}", out);
        }
    }
    fputs("]}", out);
}

void ring_bench_free(ring_results *res)
{
    free(res);
}
