/*
 * The fan-out workload: G groups of M members spread over C subscriber
 * connections, P publisher connections each owning the groups g with
 * g % P == its number, a closed loop of at most `window` messages in flight
 * per publisher. It implements the bench_on_* events of driver.h: it counts
 * deliveries and checks that every (subscriber, group) pair sees the group's
 * sequence gapless and in order.
 *
 * Membership: member slot s (0 <= s < G*M) is member s % M of group s / M
 * and belongs to subscriber connection s % C. Since a group's M slots are
 * consecutive and M <= C, its members are M distinct connections, and every
 * connection holds G*M/C slots (one more for the first G*M % C connections).
 */
#ifndef RC_BENCH_FANOUT_H
#define RC_BENCH_FANOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "driver.h"

typedef struct fanout_cfg {
    uint32_t groups;     /* G */
    uint32_t members;    /* M, subscriber connections per group */
    uint32_t subs;       /* C, subscriber connections */
    uint32_t pubs;       /* P, publisher connections */
    uint32_t window;     /* max messages in flight per publisher */
    uint32_t body;       /* body bytes */
} fanout_cfg;

/* Cumulative counters; the generator snapshots them to measure a window. */
typedef struct fanout_counters {
    uint64_t published;    /* publishes queued */
    uint64_t acked;        /* publishes acknowledged (ringcast ack, Redis :N) */
    uint64_t rejected;     /* publishes refused with an error */
    uint64_t deliveries;   /* messages received by subscriber connections */
    uint64_t echoes;       /* messages received by publishers (ringcast echoes the sender) */
    uint64_t gaps;         /* seqs skipped in a (subscriber, group) stream */
    uint64_t dups;         /* a seq received twice in a row */
    uint64_t reorders;     /* a seq lower than one already received */
    uint64_t stray;        /* deliveries for a group the connection is not a member of */
    uint64_t corrupt;      /* deliveries whose body length is wrong */
    uint64_t short_fanout; /* Redis PUBLISH replies counting other than M receivers */
    uint64_t errors;       /* server error replies and lost connections */
} fanout_counters;

/* Checks cfg (message on stderr) and allocates the state. 0 or -1. */
int fanout_init(const fanout_cfg *cfg, const bench_driver *drv);
void fanout_free(void);

/* Writes the groups of subscriber `sub` / publisher `pub` to out (room for
 * fanout_max_groups()) and returns how many. */
uint32_t fanout_max_groups(void);
uint32_t fanout_sub_groups(uint32_t sub, uint32_t *out);
uint32_t fanout_pub_groups(uint32_t pub, uint32_t *out);

/* Marks the end of setup: from now on an error reply is a refused publish,
 * not a failed setup. */
void fanout_start(void);
/* True once a server error arrived during setup. */
bool fanout_setup_failed(void);

/* Queues publishes on pub until its window is full; -1 on ENOMEM. */
int fanout_fill(bench_conn *pub);
/* Messages in flight on publisher number `pub`. */
uint64_t fanout_outstanding(uint32_t pub);
/* Subscriber deliveries still missing for messages the publishers saw
 * accepted (ringcast: acked seqs; NATS/Redis: published seqs). O(G*M). */
uint64_t fanout_missing(void);

const fanout_counters *fanout_counts(void);
/* Counts a lost connection. */
void fanout_count_error(void);

#endif
