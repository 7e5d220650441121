/*
 * ringcast-micro: microbenchmarks of the two hot data structures in
 * src/core, each against an outside reference measured in the same run.
 *
 *   ring_bench.c   rc_ring (SPSC, MPSC) vs Concurrency Kit's ck_ring
 *   chash_bench.c  rc_chash (160/500/1000 vnodes) vs Jump consistent hash
 *   main.c         flags, machine description, Markdown and JSON output
 *
 * Every case checks its own result (items and their sum, keys that moved to
 * the wrong shard) and the program exits 2 when a check fails, so a fast
 * number can never hide a wrong answer.
 */
#ifndef RC_BENCH_MICRO_H
#define RC_BENCH_MICRO_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define MICRO_DEFAULT_REPS 3u
#define MICRO_DEFAULT_ITEMS 20000000ull   /* items per ring case (all producers together) */
#define MICRO_DEFAULT_KEYS 1000000u       /* group ids per consistent-hash case */
#define MICRO_DEFAULT_CAPACITY 4096u      /* ring slots, both implementations */
#define MICRO_DEFAULT_TIME_LIMIT_S 2.0    /* per ring run; producers stop early past it */
#define MICRO_QUICK_REPS 1u
#define MICRO_QUICK_ITEMS 1000000ull
#define MICRO_QUICK_KEYS 100000u
#define MICRO_QUICK_TIME_LIMIT_S 1.0
#define MICRO_MAX_ITEMS (1ull << 36)      /* items are tagged with a 40-bit sequence number */
#define MICRO_MAX_KEYS 50000000u
#define MICRO_MAX_REPS 100u

typedef struct micro_opts {
    unsigned reps;        /* repetitions per case; rings report the best, chash the median */
    uint64_t items;       /* items per ring case */
    uint32_t keys;        /* keys per consistent-hash case */
    uint32_t capacity;    /* ring capacity (power of two) */
    double time_limit_s;  /* wall-clock bound of one ring run */
    bool rings;           /* run the ring cases */
    bool chash;           /* run the consistent-hash cases */
    const char *json;     /* also write results here, or NULL */
} micro_opts;

/* The target links no libm (see bench/CMakeLists.txt), so the little
 * floating-point help the reports need is here. */
static inline double micro_min(double a, double b)
{
    return b < a ? b : a;
}

static inline double micro_max(double a, double b)
{
    return b > a ? b : a;
}

/* Square root by Newton's method; 0 for x <= 0. Exact to the last bit or
 * two, which is plenty for a coefficient of variation. */
static inline double micro_sqrt(double x)
{
    if (!(x > 0))
        return 0;
    double r = x > 1 ? x : 1;
    for (int i = 0; i < 200; i++) {
        double next = 0.5 * (r + x / r);
        if (next >= r)
            break;
        r = next;
    }
    return r;
}

/* Monotonic clock in seconds. */
double micro_now(void);
/* Online CPUs (at least 1). */
unsigned micro_cpus(void);

/* Opaque result sets: run, print as Markdown, print as a JSON value, free.
 * run returns NULL on ENOMEM or a setup failure (message on stderr). */
typedef struct ring_results ring_results;
ring_results *ring_bench_run(const micro_opts *o);
void ring_bench_print_md(FILE *out, const ring_results *r);
void ring_bench_print_json(FILE *out, const ring_results *r);
bool ring_bench_ok(const ring_results *r); /* every item of every run arrived intact */
void ring_bench_free(ring_results *r);

typedef struct chash_results chash_results;
chash_results *chash_bench_run(const micro_opts *o);
void chash_bench_print_md(FILE *out, const chash_results *r);
void chash_bench_print_json(FILE *out, const chash_results *r);
bool chash_bench_ok(const chash_results *r); /* moved keys went to the new shard and back, table = successor search */
void chash_bench_free(chash_results *r);

#endif
