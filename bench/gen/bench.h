/*
 * ringcast-bench internals shared by the generator (ringcast-bench.c), the
 * message flow and checks (flow.c) and the report (report.c).
 *
 * Threads. The generator runs T worker threads, each with its own epoll loop
 * and a share of the connections (subscriber s and publisher j on thread
 * s % T and j % T), plus the main thread, which only coordinates: it moves
 * the run through its phases, takes counter snapshots and prints progress.
 *
 * Sharing without locks: every counter and every table entry has one writer
 * (the thread owning the connection it belongs to); other threads read it
 * with relaxed atomic loads (LOAD), and the writer updates it with relaxed
 * atomic stores (STORE, BUMP), which cost the same as plain moves. Phase and
 * step changes are published with release stores and read with acquire
 * loads, so a thread that sees a new step also sees its parameters.
 *
 * Steps. A run is one step (--max, --rate, --rate --schedule, --flood) or several (--sweep). A step has
 * a warm-up and a measured window [m0, m1); latency is attributed to the
 * step whose window holds the message's send (scheduled) time, so a message
 * sent near the end of a step and delivered in the next still counts where
 * it was offered. After the window, publishing stops and the run drains
 * (bounded) before the next step, so steps do not contaminate each other.
 */
#ifndef RC_BENCH_BENCH_H
#define RC_BENCH_BENCH_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "driver.h"
#include "flood.h"
#include "hist.h"      /* bench/lib */
#include "plan.h"
#include "workload.h"  /* bench/lib */

#define MAX_THREADS 16u
#define MAX_STEPS 64u
#define LAT_MAX_NS (UINT64_C(60) * 1000000000u)  /* histogram range; above: overflow */
#define OPEN_MAX_INFLIGHT 262144u  /* open loop: unconfirmed messages per publisher */
#define OUT_MAX_UNSENT (4u << 20)  /* stop queueing above this many unsent bytes */

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define BUMP(x, d) STORE(x, LOAD(x) + (d))   /* single writer only */
#define LOAD_ACQ(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE_REL(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

/* Counters of one thread (summed over threads for a snapshot). Only
 * uint64_t members: they are summed as an array. */
typedef struct counters {
    uint64_t published;    /* publishes queued */
    uint64_t acked;        /* publishes acknowledged (ringcast ack, Redis :N) */
    uint64_t rejected;     /* publishes refused with an error */
    uint64_t deliveries;   /* messages received by subscriber connections */
    uint64_t echoes;       /* messages received by publishers (ringcast echoes the sender) */
    uint64_t gaps;         /* seqs skipped in a (subscriber, group) stream */
    uint64_t dups;         /* a seq received twice in a row */
    uint64_t reorders;     /* a seq lower than one already received */
    uint64_t stray;        /* deliveries for a group the connection is not a member of */
    uint64_t corrupt;      /* deliveries whose body length or header is wrong */
    uint64_t short_fanout; /* Redis PUBLISH replies counting other receivers than the group has */
    uint64_t errors;       /* server error replies and lost connections */
    uint64_t lost_conns;   /* connections closed under us */
    uint64_t unsent;       /* open loop: messages due in a window but never sent */
    uint64_t refused[FLOOD_NCODES]; /* error replies to publishes, by code (flood.h) */
    uint64_t byes;         /* bye frames received (ringcast) */
    uint64_t readers_lost; /* subscriber connections closed under us or sent bye, each once */
    uint64_t writers_lost; /* publisher connections likewise */
    uint64_t ev_presence;  /* online/offline events received (ringcast --presence) */
    uint64_t ev_receipt;   /* receipt events received (ringcast --receipts) */
    uint64_t ev_typing;    /* typing events received */
    uint64_t reads_sent;   /* read requests sent (ringcast --read-every) */
    uint64_t marked;       /* their marked replies */
} counters;
#define N_COUNTERS (sizeof(counters) / sizeof(uint64_t))

typedef enum phase { PH_SETUP, PH_LOAD, PH_PAUSE, PH_CUT, PH_DONE } phase;
typedef enum run_mode { MODE_MAX, MODE_RATE, MODE_SWEEP, MODE_FLOOD } run_mode;

typedef struct step {
    bool open;             /* open loop at `rate`; else closed loop (window) */
    bool flood;            /* no window: publish as fast as the socket takes it (flood.h) */
    double pct;            /* sweep: percent of the peak; 0 otherwise */
    double rate;           /* open loop: offered messages/s (mean, for a diurnal curve; a schedule's base) */
    double offer_mult;     /* --schedule: its mean multiple over the window (0: 1) */
    double warmup, duration;
    uint64_t t0_ns, m0_ns, m1_ns; /* start; measured window [m0, m1) */
} step;

typedef struct gen_thread {
    uint32_t id;
    pthread_t tid;
    bool started;
    int ep;
    bench_conn **conns;    /* its connections */
    uint32_t nconns;
    uint32_t *pubs;        /* its publisher numbers */
    uint32_t npubs;
    bench_conn **dirty;    /* connections with bytes to write */
    uint32_t ndirty;
    uint64_t now_ns;       /* clock after the last receive: delivery time */
    counters n;
    uint64_t *deliv;       /* [P] subscriber deliveries of each publisher's groups */
    rc_hist *hist;         /* [nsteps] latency of messages sent in each step's window */
    rc_hist *tl;           /* --timeline: [tl_n] latency of messages sent in each second since the load began */
    uint64_t *tl_sent;     /* [tl_n] messages sent (scheduled) in each of those seconds */
    uint32_t tl_n;
    uint32_t ready;        /* connections set up */
    uint32_t step;         /* the step it runs */
    uint32_t hist_from;    /* steps below this are closed: their histograms are final */
    uint32_t cut_done;     /* k + 1 once step k's backlog is cut */
    int reported;          /* server error texts printed */
} gen_thread;

typedef struct pub_state {
    bench_conn *conn;
    uint64_t sent, acked, rejected;
    uint64_t expected;     /* subscriber deliveries the sent messages should make */
    uint64_t next_ns;      /* open loop: scheduled time of the next message (UINT64_MAX: none) */
    uint32_t cursor;       /* round robin over its groups (uniform presets) */
    rc_rng rng;            /* group choice (chat-day) */
    rc_arrivals arr;       /* open loop arrivals */
    double arr_origin;     /* process time at the step's start */
    uint64_t arr_t0;       /* the step's start, ns */
    uint32_t *ring;        /* Redis: group sizes of unacknowledged publishes, in order */
    uint32_t ring_mask, ring_head, ring_len;
} pub_state;

typedef struct options {
    const char *system;
    const char *host;
    int port;              /* 0: the driver's default */
    plan_cfg pc;
    uint32_t threads;
    run_mode mode;
    double rate;           /* --rate */
    double peak;           /* --sweep --peak (0: measure it) */
    double pcts[MAX_STEPS];
    uint32_t npcts;
    double duration, warmup;
    uint64_t max_msgs;     /* end a window after this many publishes (0: no bound) */
    uint64_t tick_ns;      /* open loop: shortest loop turn (0: none) */
    const char *json, *csv, *hist_out, *timeline;
    rc_schedule sched;     /* --schedule (n = 0: none) */
    long server_pid;
    int progress;          /* -1 auto (a terminal), 0 off, 1 on */
    bool presence, receipts; /* ringcast: subscribers join with presence / receipts: true */
    bool echo;               /* ringcast: publishers receive their own messages (hello echo: true) */
    uint32_t read_every;   /* ringcast: a subscriber reads every N deliveries (0: never) */
} options;

typedef struct gen_state {
    const options *opt;
    const bench_driver *drv;
    uint32_t T;
    gen_thread *thr;       /* [T] */
    bench_conn *conns;     /* [C + P]: subscribers first, then publishers */
    uint32_t nconns;
    pub_state *pubs;       /* [P] */
    uint64_t *last_seq;    /* [slots] last seq seen per (subscriber, group) */
    uint8_t *slot_bad;     /* [slots] a problem was reported for this stream */
    uint64_t *gsent;       /* [G] publishes queued per group */
    uint64_t *gacked;      /* [G] highest acked seq per group (ringcast) */
    step steps[MAX_STEPS];
    uint32_t nsteps;
    uint32_t fill_batch;
    bool ring_acks;        /* acks are matched to publishes by order (Redis) */
    /* published by the coordinator */
    int phase;
    uint32_t step;
    bool running;          /* setup is over: an error now refuses a publish */
    bool setup_failed;
    int reported;          /* stream problems printed */
} gen_state;

extern gen_state G;

/* flow.c */
int flow_init(void);
void flow_free(void);
void flow_start_step(gen_thread *t, uint32_t k);
int flow_fill_closed(gen_thread *t, pub_state *p, uint32_t j, uint64_t now);
int flow_fill_open(gen_thread *t, pub_state *p, uint32_t j, uint64_t limit);
int flow_fill_flood(gen_thread *t, pub_state *p, uint32_t j);
uint64_t flow_flood_pending(void);
uint64_t flow_groups_lossy(void);
bool flow_pub_blocked(const pub_state *p, uint32_t j);
void flow_cut(gen_thread *t, uint32_t k);
uint64_t flow_outstanding(uint32_t j);
uint64_t flow_missing(void);
void flow_sum(counters *out);
void flow_count_lost(gen_thread *t, bench_conn *c);

static inline uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
