/*
 * The workload's shape: who is in which group, which publisher connection
 * sends to which group, and how often. Built once before the run and only
 * read afterwards (by every generator thread).
 *
 * Connections: C subscriber connections ("users") and P publisher
 * connections. Group g is published to only by publisher g % P, so each
 * group has one sender connection and one total order on every system (NATS
 * and Redis keep the order of one connection, not across connections).
 *
 * Uniform presets (fanout, rooms, many-groups): G groups of M members. Member
 * slot s (0 <= s < G*M) is member s % M of group s / M and lives on
 * subscriber s % C, so every group has M distinct connections and each
 * connection holds G*M/C groups. A publisher sends round robin over its
 * groups.
 *
 * chat-day: every group's size is drawn from a Zipf distribution over
 * size_min..size_max (small groups common, a few large ones), its members
 * are distinct users drawn uniformly; every user gets a send-rate level
 * from a Zipf over 1..ACTIVITY_LEVELS and spreads its messages evenly over
 * its groups. A group's message rate is the sum of its members' shares; a
 * publisher picks among its groups in proportion to that rate. Arrivals are
 * Poisson on a diurnal curve (see flow.c).
 */
#ifndef RC_BENCH_PLAN_H
#define RC_BENCH_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "driver.h"

typedef struct plan_cfg {
    const char *name;          /* the preset: fanout, rooms, many-groups, chat-day */
    char prefix[BENCH_PREFIX_MAX]; /* group name prefix, one per preset */
    bool zipf;                 /* chat-day membership and rates */
    uint32_t groups;           /* G */
    uint32_t members;          /* M (uniform presets) */
    uint32_t subs;             /* C */
    uint32_t pubs;             /* P */
    uint32_t window;           /* closed loop: messages in flight per publisher */
    uint32_t body;             /* body bytes */
    uint32_t size_min, size_max; /* chat-day group sizes */
    double size_s;             /* Zipf exponent of group sizes */
    double activity_s;         /* Zipf exponent of the users' send-rate levels */
    double rate;               /* default offered rate of open-loop runs, msgs/s (0: none) */
    double peak_to_trough;     /* diurnal curve of open-loop runs; 1 = flat */
    uint64_t seed;
} plan_cfg;

typedef struct plan {
    plan_cfg cfg;
    uint32_t G, C, P;
    uint64_t nslots;           /* member slots: sum of group sizes */
    uint32_t *gsize;           /* [G] members per group */
    uint32_t max_size;
    uint64_t *gbase;           /* [G + 1] group g's slots are gbase[g]..gbase[g+1]) */
    uint32_t *slot_sub;        /* [nslots] the subscriber of each slot */
    uint64_t *sbase;           /* [C + 1] subscriber c's entries are sbase[c]..sbase[c+1]) */
    uint32_t *sgroup;          /* [nslots] its groups, ascending */
    uint64_t *sslot;           /* [nslots] and the matching slots */
    uint32_t *pbase;           /* [P + 1] publisher j's groups are pgroup[pbase[j]..pbase[j+1]) */
    uint32_t *pgroup;          /* [G] */
    double *pcdf;              /* [G] cumulative rate weight within each publisher (zipf) */
    double *pshare;            /* [P] publisher's share of all messages */
    double mean_fanout;        /* subscriber deliveries per message, over the message mix */
    uint32_t max_sub_groups;   /* most groups of one subscriber */
} plan;

extern plan g_plan;

/* Fills cfg with the preset's defaults; -1 for an unknown name. */
int plan_preset(const char *name, plan_cfg *cfg);
/* Lists the preset names (for usage). */
const char *plan_preset_names(void);
/* Checks cfg (message on stderr) and builds g_plan. 0 or -1. */
int plan_build(const plan_cfg *cfg);
void plan_free(void);

/* The slot of subscriber sub in group g, or -1 if it is no member. */
static inline int64_t plan_slot(uint32_t sub, uint32_t g)
{
    const plan *p = &g_plan;
    if (g >= p->G)
        return -1;
    if (!p->cfg.zipf) {
        /* the slot g*M + m with (g*M + m) % C == sub */
        uint64_t C = p->C, base = (uint64_t)g * p->cfg.members;
        uint64_t m = (sub + C - base % C) % C;
        return m < p->cfg.members ? (int64_t)(base + m) : -1;
    }
    uint64_t lo = p->sbase[sub], hi = p->sbase[sub + 1];
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (p->sgroup[mid] < g)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < p->sbase[sub + 1] && p->sgroup[lo] == g ? (int64_t)p->sslot[lo] : -1;
}

static inline uint32_t plan_pub_of(uint32_t g)
{
    return g % g_plan.P;
}

#endif
