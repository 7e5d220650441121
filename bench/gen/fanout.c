/*
 * The fan-out workload (see fanout.h): membership, the closed loop, and the
 * per-(subscriber, group) order check behind the bench_on_* events.
 *
 * Closed loop, the same for every system: a message counts as done when its
 * publisher has seen both its ack (systems that ack: ringcast, Redis) and M
 * subscriber deliveries for its groups, i.e. in flight = sent - refused -
 * min(acked, delivered / M). This bounds what sits in the server's queues
 * end to end, not only up to the ack, so no system is flattered by buffering
 * undelivered messages. A publisher refills only when at least window/16
 * slots are free, so each write carries many frames.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fanout.h"

#define FILL_BATCH_DIVISOR 16u          /* refill when window/16 slots are free */
#define OUT_MAX_UNSENT (4u << 20)       /* stop filling above this many unsent bytes */
#define MAX_REPORTED_ERRORS 5           /* server error texts printed, then only counted */

typedef struct fanout_pub {
    uint64_t sent;
    uint64_t acked;
    uint64_t rejected;
    uint64_t delivered;   /* subscriber deliveries of this publisher's groups */
    uint32_t cursor;      /* next of its groups to publish to, round robin */
} fanout_pub;

static struct {
    fanout_cfg cfg;
    const bench_driver *drv;
    bool running;
    bool setup_failed;
    uint32_t fill_batch;
    fanout_counters n;
    fanout_pub *pubs;         /* [P] */
    uint64_t *last_seq;       /* [G*M] last seq seen by member slot */
    uint64_t *group_sent;     /* [G] publishes queued per group */
    uint64_t *group_acked;    /* [G] highest acked seq per group (ringcast) */
    int reported;
} fo;

int fanout_init(const fanout_cfg *cfg, const bench_driver *drv)
{
    const char *why = NULL;
    if (cfg->groups == 0 || cfg->members == 0 || cfg->subs == 0 || cfg->pubs == 0)
        why = "groups, members, subs and pubs must be at least 1";
    else if (cfg->members > cfg->subs)
        why = "members must not exceed subs (a group's members are distinct connections)";
    else if ((uint64_t)cfg->groups * cfg->members < cfg->subs)
        why = "groups * members must be at least subs (every subscriber needs a group)";
    else if (cfg->pubs > cfg->groups)
        why = "pubs must not exceed groups (every publisher needs a group)";
    if (why) {
        fprintf(stderr, "ringcast-bench: %s\n", why);
        return -1;
    }
    memset(&fo, 0, sizeof fo);
    fo.cfg = *cfg;
    fo.drv = drv;
    fo.fill_batch = cfg->window / FILL_BATCH_DIVISOR ? cfg->window / FILL_BATCH_DIVISOR : 1;
    size_t slots = (size_t)cfg->groups * cfg->members;
    fo.pubs = calloc(cfg->pubs, sizeof *fo.pubs);
    fo.last_seq = calloc(slots, sizeof *fo.last_seq);
    fo.group_sent = calloc(cfg->groups, sizeof *fo.group_sent);
    fo.group_acked = calloc(cfg->groups, sizeof *fo.group_acked);
    if (!fo.pubs || !fo.last_seq || !fo.group_sent || !fo.group_acked) {
        fanout_free();
        fprintf(stderr, "ringcast-bench: out of memory\n");
        return -1;
    }
    return 0;
}

void fanout_free(void)
{
    free(fo.pubs);
    free(fo.last_seq);
    free(fo.group_sent);
    free(fo.group_acked);
    memset(&fo, 0, sizeof fo);
}

uint32_t fanout_max_groups(void)
{
    uint64_t slots = (uint64_t)fo.cfg.groups * fo.cfg.members;
    uint64_t per_sub = (slots + fo.cfg.subs - 1) / fo.cfg.subs;
    uint64_t per_pub = (fo.cfg.groups + fo.cfg.pubs - 1) / fo.cfg.pubs;
    return (uint32_t)(per_sub > per_pub ? per_sub : per_pub);
}

uint32_t fanout_sub_groups(uint32_t sub, uint32_t *out)
{
    uint64_t slots = (uint64_t)fo.cfg.groups * fo.cfg.members;
    uint32_t n = 0;
    for (uint64_t s = sub; s < slots; s += fo.cfg.subs)
        out[n++] = (uint32_t)(s / fo.cfg.members);
    return n;
}

uint32_t fanout_pub_groups(uint32_t pub, uint32_t *out)
{
    uint32_t n = 0;
    for (uint32_t g = pub; g < fo.cfg.groups; g += fo.cfg.pubs)
        out[n++] = g;
    return n;
}

/* The member slot of subscriber `sub` in group g, or -1 if it is no member:
 * the slot g*M + m with (g*M + m) % C == sub. */
static int64_t member_slot(uint32_t sub, uint32_t g)
{
    uint64_t C = fo.cfg.subs, base = (uint64_t)g * fo.cfg.members;
    uint64_t m = (sub + C - base % C) % C;
    return m < fo.cfg.members ? (int64_t)(base + m) : -1;
}

void fanout_start(void)
{
    fo.running = true;
}

bool fanout_setup_failed(void)
{
    return fo.setup_failed;
}

uint64_t fanout_outstanding(uint32_t pub)
{
    const fanout_pub *p = &fo.pubs[pub];
    uint64_t done = p->delivered / fo.cfg.members;
    if (fo.drv->has_acks && p->acked < done)
        done = p->acked;
    done += p->rejected;
    return p->sent > done ? p->sent - done : 0;
}

int fanout_fill(bench_conn *c)
{
    fanout_pub *p = &fo.pubs[c->index];
    uint64_t out = fanout_outstanding(c->index);
    if (out + fo.fill_batch > fo.cfg.window || c->out.len - c->out_off > OUT_MAX_UNSENT)
        return 0;
    uint64_t room = fo.cfg.window - out;
    /* this publisher's groups are pub, pub + P, pub + 2P, ... */
    uint32_t owned = (fo.cfg.groups - c->index + fo.cfg.pubs - 1) / fo.cfg.pubs;
    for (uint64_t i = 0; i < room; i++) {
        uint32_t g = c->index + p->cursor * fo.cfg.pubs;
        p->cursor = p->cursor + 1 == owned ? 0 : p->cursor + 1;
        if (fo.drv->publish(c, g, ++fo.group_sent[g]) < 0) {
            fo.group_sent[g]--;
            return -1;
        }
        p->sent++;
        fo.n.published++;
    }
    return 0;
}

uint64_t fanout_missing(void)
{
    uint64_t missing = 0;
    for (uint32_t g = 0; g < fo.cfg.groups; g++) {
        uint64_t expect = fo.drv->acks_carry_seq ? fo.group_acked[g] : fo.group_sent[g];
        for (uint32_t m = 0; m < fo.cfg.members; m++) {
            uint64_t seen = fo.last_seq[(size_t)g * fo.cfg.members + m];
            if (expect > seen)
                missing += expect - seen;
        }
    }
    return missing;
}

const fanout_counters *fanout_counts(void)
{
    return &fo.n;
}

void fanout_count_error(void)
{
    fo.n.errors++;
}

/* ---- events from the drivers ---- */

void bench_on_confirm(bench_conn *c, uint32_t g, uint64_t last_seq)
{
    if (c->pending == 0 || (g != BENCH_NO_GROUP && g >= fo.cfg.groups)) {
        fo.n.errors++; /* a confirmation nobody asked for */
        return;
    }
    c->pending--;
    if (g == BENCH_NO_GROUP)
        return;
    if (c->role == BENCH_PUB) {
        fo.group_acked[g] = last_seq;
        return;
    }
    int64_t slot = member_slot(c->index, g);
    if (slot >= 0)
        fo.last_seq[slot] = last_seq;
}

void bench_on_delivery(bench_conn *c, uint32_t g, uint64_t seq, size_t body_len)
{
    if (c->role == BENCH_PUB) {
        fo.n.echoes++;
        return;
    }
    int64_t slot = g < fo.cfg.groups ? member_slot(c->index, g) : -1;
    if (slot < 0) {
        fo.n.stray++;
        return;
    }
    fo.n.deliveries++;
    fo.pubs[g % fo.cfg.pubs].delivered++;
    if (body_len != fo.cfg.body)
        fo.n.corrupt++;
    uint64_t *last = &fo.last_seq[slot];
    if (seq == *last + 1) {
        *last = seq;
    } else if (seq > *last + 1) {
        fo.n.gaps += seq - *last - 1;
        *last = seq;
    } else if (seq == *last) {
        fo.n.dups++;
    } else {
        fo.n.reorders++;
    }
}

void bench_on_ack(bench_conn *c, uint32_t g, uint64_t seq, int64_t receivers)
{
    if (c->role != BENCH_PUB) {
        fo.n.errors++;
        return;
    }
    fo.pubs[c->index].acked++;
    fo.n.acked++;
    if (g < fo.cfg.groups && seq > fo.group_acked[g])
        fo.group_acked[g] = seq;
    if (receivers >= 0 && (uint64_t)receivers != fo.cfg.members)
        fo.n.short_fanout++;
}

void bench_on_server_error(bench_conn *c, const char *text, size_t len)
{
    if (fo.reported++ < MAX_REPORTED_ERRORS)
        fprintf(stderr, "ringcast-bench: server error on %c%u: %.*s\n",
                c->role == BENCH_SUB ? 's' : 'p', c->index, (int)len, text);
    fo.n.errors++;
    if (!fo.running) {
        fo.setup_failed = true;
    } else if (c->role == BENCH_PUB) {
        fo.pubs[c->index].rejected++;
        fo.n.rejected++;
    }
}
