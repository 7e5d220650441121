/*
 * Results: one per step, printed as a line of key=value pairs on stdout and
 * written as JSON (--json), CSV (--csv) and latency histograms (--hist-out).
 * All three carry the same keys (report.c builds one list of them).
 */
#ifndef RC_BENCH_REPORT_H
#define RC_BENCH_REPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "bench.h"

/* Counters and clocks at one instant; a measurement is the difference of two. */
typedef struct snapshot {
    double t;                       /* CLOCK_MONOTONIC seconds */
    double cpu;                     /* generator user + system seconds, all threads */
    double thread_cpu[MAX_THREADS]; /* per worker thread */
    double server_cpu;              /* server user + system seconds, -1 if unknown */
    counters n;
} snapshot;

typedef struct step_result {
    uint32_t k;
    step s;                /* a copy of the step (rate filled in) */
    snapshot a, b;         /* the measured window's start and end */
    counters end;          /* after the drain: the run's counters so far */
    int64_t missing;       /* -1: not known (interrupted) */
    int64_t groups_lossy;  /* groups with a broken or incomplete live stream; -1: not known */
    bool measured;         /* the window began (else a/b span the warm-up) */
    bool interrupted;
    bool drained;
    bool drain_cut;        /* the drain hit its time limit while deliveries still came */
    rc_hist hist;          /* latency of messages sent in the window, ns */
    double day_peak, day_trough; /* chat-day: busiest and quietest 1/24 of the window, msgs/s */
    long rss_kb;           /* server VmHWM, -1 if unknown */
} step_result;

/* Derived figures of a result. */
double result_secs(const step_result *r);
double result_msgs_per_s(const step_result *r);

/* The key=value line of one step on stdout. */
void report_line(const options *o, const step_result *r);
/* --json, --csv and --hist-out for all steps; knee_rate < 0 when not a sweep.
 * 0, or -1 if a file could not be written (said on stderr). */
int report_files(const options *o, const step_result *rs, uint32_t n, double knee_rate);

#endif
