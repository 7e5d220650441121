/*
 * The message flow: publishers in a closed or an open loop, and the
 * bench_on_* events of driver.h, which count deliveries, measure latency and
 * check that every (subscriber, group) stream is gapless and in order.
 *
 * Closed loop (--max), the same for every system: a message counts as done
 * when its publisher has seen both its ack (systems that ack: ringcast,
 * Redis) and its subscriber deliveries, i.e.
 *     in flight = sent - refused - min(acked, delivered / fan-out)
 * where fan-out is the mean group size of what this publisher sent. This
 * bounds what sits in the server's queues end to end, not only up to the
 * ack, so no system is flattered by buffering undelivered messages. A
 * publisher refills only when at least window/16 slots are free, so each
 * write carries many frames.
 *
 * Open loop (--rate, --sweep): each publisher has its own Poisson arrival
 * process (rate = offered rate x its share of the groups' rates; chat-day:
 * on a diurnal curve). A message carries its *scheduled* time, and latency
 * is measured from it, so when the server (or the socket) holds the
 * publisher back, the wait counts: no coordinated omission. Messages due but
 * not yet written stay scheduled (the backlog) until the window ends; what
 * is still unsent after the drain is counted as `unsent`.
 *
 * Flood (--flood): no window at all. A publisher queues sends whenever its
 * output buffer runs low (flood.h) and the socket takes them as fast as the
 * server reads; acks, echoes and errors are still read and counted, so our
 * side never blocks. Whatever the server cannot carry shows up as refused
 * sends (by error code), disconnected readers and gaps. The drain waits for
 * what can still come: every send acked or refused (systems that ack) and
 * every live stream caught up with what was sent (acked, for ringcast).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define FILL_BATCH_DIVISOR 16u          /* closed loop: refill when window/16 slots are free */
#define MAX_REPORTED_ERRORS 5           /* server error texts printed, then only counted */
#define MAX_REPORTED_STREAMS 5          /* broken streams printed, then only counted */
#define CUT_COUNT_MAX 50000000u         /* backlog messages counted one by one, then estimated */

gen_state G;

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

int flow_init(void)
{
    const plan *pl = &g_plan;
    G.fill_batch = pl->cfg.window / FILL_BATCH_DIVISOR ? pl->cfg.window / FILL_BATCH_DIVISOR : 1;
    G.ring_acks = G.drv->has_acks && !G.drv->acks_carry_seq;
    G.pubs = calloc(pl->P, sizeof *G.pubs);
    G.last_seq = calloc(pl->nslots ? pl->nslots : 1, sizeof *G.last_seq);
    G.slot_bad = calloc(pl->nslots ? pl->nslots : 1, 1);
    G.gsent = calloc(pl->G, sizeof *G.gsent);
    G.gacked = calloc(pl->G, sizeof *G.gacked);
    if (!G.pubs || !G.last_seq || !G.slot_bad || !G.gsent || !G.gacked)
        return -1;
    uint64_t ring = (pl->cfg.window > OPEN_MAX_INFLIGHT ? pl->cfg.window : OPEN_MAX_INFLIGHT) + 1u;
    for (uint32_t j = 0; j < pl->P; j++) {
        pub_state *p = &G.pubs[j];
        p->next_ns = UINT64_MAX;
        rc_rng_seed(&p->rng, pl->cfg.seed * 1000003u + j);
        if (G.ring_acks) {
            p->ring_mask = pow2_at_least(ring) - 1;
            p->ring = malloc(sizeof *p->ring * ((size_t)p->ring_mask + 1));
            if (!p->ring)
                return -1;
        }
    }
    return 0;
}

void flow_free(void)
{
    if (G.pubs)
        for (uint32_t j = 0; j < g_plan.P; j++)
            free(G.pubs[j].ring);
    free(G.pubs);
    free(G.last_seq);
    free(G.slot_bad);
    free(G.gsent);
    free(G.gacked);
    G.pubs = NULL;
    G.last_seq = G.gsent = G.gacked = NULL;
    G.slot_bad = NULL;
}

/* ---- publishers ---- */

uint64_t flow_outstanding(uint32_t j)
{
    const pub_state *p = &G.pubs[j];
    uint64_t sent = LOAD(p->sent), acked = LOAD(p->acked), rej = LOAD(p->rejected);
    uint64_t expected = LOAD(p->expected), deliv = 0;
    for (uint32_t t = 0; t < G.T; t++)
        deliv += LOAD(G.thr[t].deliv[j]);
    uint64_t live = sent > rej ? sent - rej : 0;
    uint64_t by_ack = G.drv->has_acks && live > acked ? live - acked : 0;
    uint64_t by_deliv = 0;
    if (expected > deliv) {
        /* undelivered deliveries, in messages of this publisher's mean size */
        double msgs = ceil((double)(expected - deliv) * (double)sent / (double)expected);
        by_deliv = msgs > (double)rej ? (uint64_t)msgs - rej : 0;
    }
    return by_ack > by_deliv ? by_ack : by_deliv;
}

static uint32_t next_group(pub_state *p, uint32_t j)
{
    const plan *pl = &g_plan;
    uint32_t lo = pl->pbase[j], n = pl->pbase[j + 1] - lo;
    if (!pl->cfg.zipf) {
        uint32_t g = pl->pgroup[lo + p->cursor];
        p->cursor = p->cursor + 1 == n ? 0 : p->cursor + 1;
        return g;
    }
    double u = rc_rng_uniform(&p->rng);
    uint32_t a = 0, b = n - 1; /* first index whose cdf exceeds u */
    while (a < b) {
        uint32_t mid = a + (b - a) / 2;
        if (pl->pcdf[lo + mid] > u)
            b = mid;
        else
            a = mid + 1;
    }
    return pl->pgroup[lo + a];
}

static void mark_dirty(gen_thread *t, bench_conn *c)
{
    if (!c->dirty && c->out.len > c->out_off) {
        c->dirty = true;
        t->dirty[t->ndirty++] = c;
    }
}

/* Queues one message of publisher j to its next group, stamped ts. */
/* --timeline: the second since the load began that holds ts, or -1. The
 * run has one step then (step 0); its start is read, like the windows in
 * record_latency, after the acquire of G.step or G.phase. */
static int64_t timeline_second(const gen_thread *t, uint64_t ts)
{
    uint64_t t0 = G.steps[0].t0_ns;
    if (!t->tl_n || t0 == 0 || ts < t0)
        return -1;
    uint64_t i = (ts - t0) / 1000000000u;
    return i < t->tl_n ? (int64_t)i : -1;
}

static int publish_one(gen_thread *t, pub_state *p, uint32_t j, uint64_t ts)
{
    uint32_t g = next_group(p, j);
    uint64_t seq = LOAD(G.gsent[g]) + 1;
    if (G.drv->publish(p->conn, g, seq, ts) < 0)
        return -1;
    STORE(G.gsent[g], seq);
    uint32_t size = g_plan.gsize[g];
    BUMP(p->expected, size);
    BUMP(p->sent, 1);
    BUMP(t->n.published, 1);
    int64_t sec = timeline_second(t, ts);
    if (sec >= 0)
        t->tl_sent[sec]++;
    if (p->ring) {
        p->ring[(p->ring_head + p->ring_len) & p->ring_mask] = size;
        p->ring_len++;
    }
    return 0;
}

static size_t unsent_bytes(const bench_conn *c)
{
    return c->out.len - c->out_off;
}

int flow_fill_closed(gen_thread *t, pub_state *p, uint32_t j, uint64_t now)
{
    uint32_t window = g_plan.cfg.window;
    uint64_t out = flow_outstanding(j);
    if (out + G.fill_batch > window || unsent_bytes(p->conn) > OUT_MAX_UNSENT)
        return 0;
    for (uint64_t i = out; i < window; i++)
        if (publish_one(t, p, j, now) < 0)
            return -1;
    mark_dirty(t, p->conn);
    return 0;
}

int flow_fill_flood(gen_thread *t, pub_state *p, uint32_t j)
{
    bench_conn *c = p->conn;
    size_t room = flood_room(unsent_bytes(c), FLOOD_LOW_WATER, FLOOD_HIGH_WATER);
    if (room == 0)
        return 0;
    size_t goal = unsent_bytes(c) + room;
    uint64_t now = mono_ns(); /* one clock read per batch, like a receive */
    /* Redis: the ack ring must hold every unanswered publish */
    while (unsent_bytes(c) < goal && !(p->ring && p->ring_len > p->ring_mask - 1))
        if (publish_one(t, p, j, now) < 0)
            return -1;
    mark_dirty(t, c);
    return 0;
}

/* Flood: publishes of j neither acked nor refused yet (0 for systems
 * without acks, whose deliveries are awaited through flow_missing). */
static uint64_t flood_unanswered(uint32_t j)
{
    const pub_state *p = &G.pubs[j];
    if (!G.drv->has_acks)
        return 0;
    uint64_t sent = LOAD(p->sent), answered = LOAD(p->acked) + LOAD(p->rejected);
    return sent > answered ? sent - answered : 0;
}

uint64_t flow_flood_pending(void)
{
    uint64_t n = flow_missing();
    for (uint32_t j = 0; j < g_plan.P; j++)
        if (!LOAD(G.pubs[j].conn->dead))
            n += flood_unanswered(j);
    return n;
}

/* The next arrival of p, as CLOCK_MONOTONIC ns. */
static uint64_t next_arrival(pub_state *p)
{
    double s = rc_arrivals_next(&p->arr) - p->arr_origin;
    if (!isfinite(s) || s > 1e6)
        return UINT64_MAX;
    return p->arr_t0 + (uint64_t)(s * 1e9);
}

bool flow_pub_blocked(const pub_state *p, uint32_t j)
{
    (void)j;
    return unsent_bytes(p->conn) > OUT_MAX_UNSENT || (p->ring && p->ring_len > p->ring_mask - 1);
}

int flow_fill_open(gen_thread *t, pub_state *p, uint32_t j, uint64_t limit)
{
    if (p->next_ns > limit)
        return 0;
    uint64_t out = flow_outstanding(j);
    uint64_t room = out < OPEN_MAX_INFLIGHT ? OPEN_MAX_INFLIGHT - out : 0;
    while (p->next_ns <= limit && room > 0 && !flow_pub_blocked(p, j)) {
        if (publish_one(t, p, j, p->next_ns) < 0)
            return -1;
        room--;
        STORE(p->next_ns, next_arrival(p));
    }
    mark_dirty(t, p->conn);
    return 0;
}

/* Sets up the thread's publishers for step k (open loop: their arrivals). */
void flow_start_step(gen_thread *t, uint32_t k)
{
    const step *s = &G.steps[k];
    const plan_cfg *pc = &g_plan.cfg;
    for (uint32_t i = 0; i < t->npubs; i++) {
        uint32_t j = t->pubs[i];
        pub_state *p = &G.pubs[j];
        if (!s->open) {
            STORE(p->next_ns, UINT64_MAX);
            continue;
        }
        bool day = pc->peak_to_trough > 1 && !G.opt->sched.n;
        rc_diurnal d = { .mean_rate = s->rate * g_plan.pshare[j],
                         .peak_to_trough = pc->peak_to_trough,
                         .period_s = day ? s->duration : 0,
                         .sched = G.opt->sched.n ? &G.opt->sched : NULL }; /* from the load's start */
        rc_arrivals_init(&p->arr, &d, pc->seed * 7919u + (uint64_t)k * 104729u + j);
        /* The day's trough (t = 0 of the curve) falls on the start of the
         * measured window: the warm-up is the end of the previous day. */
        p->arr_origin = day ? fmod(d.period_s - fmod(s->warmup, d.period_s), d.period_s) : 0;
        p->arr.t = p->arr_origin;
        p->arr_t0 = s->t0_ns;
        STORE(p->next_ns, next_arrival(p));
    }
    t->step = k;
}

/* Ends step k on this thread: counts the backlog its publishers never sent
 * and closes the step's histogram. */
void flow_cut(gen_thread *t, uint32_t k)
{
    const step *s = &G.steps[k];
    for (uint32_t i = 0; i < t->npubs; i++) {
        pub_state *p = &G.pubs[t->pubs[i]];
        uint64_t n = 0;
        uint64_t m1 = LOAD(s->m1_ns);
        while (p->next_ns < m1 && n < CUT_COUNT_MAX) {
            n++;
            STORE(p->next_ns, next_arrival(p));
        }
        if (p->next_ns < m1) /* estimate the rest from the mean rate */
            n += (uint64_t)((double)(m1 - p->next_ns) / 1e9 * p->arr.d.mean_rate);
        BUMP(t->n.unsent, n);
        STORE(p->next_ns, UINT64_MAX);
    }
    t->hist_from = k + 1;
    STORE_REL(t->cut_done, k + 1);
}

/* ---- counting and checking ---- */

uint64_t flow_missing(void)
{
    const plan *pl = &g_plan;
    uint64_t missing = 0;
    for (uint32_t g = 0; g < pl->G; g++) {
        uint64_t expect = G.drv->acks_carry_seq ? LOAD(G.gacked[g]) : LOAD(G.gsent[g]);
        for (uint64_t s = pl->gbase[g]; s < pl->gbase[g + 1]; s++) {
            if (LOAD(G.conns[pl->slot_sub[s]].dead))
                continue; /* a lost connection: counted in lost_conns */
            uint64_t seen = LOAD(G.last_seq[s]);
            if (expect > seen)
                missing += expect - seen;
        }
    }
    return missing;
}

uint64_t flow_groups_lossy(void)
{
    const plan *pl = &g_plan;
    uint64_t lossy = 0;
    for (uint32_t g = 0; g < pl->G; g++) {
        uint64_t expect = G.drv->acks_carry_seq ? LOAD(G.gacked[g]) : LOAD(G.gsent[g]);
        for (uint64_t s = pl->gbase[g]; s < pl->gbase[g + 1]; s++) {
            bool live = !LOAD(G.conns[pl->slot_sub[s]].dead);
            if (LOAD(G.slot_bad[s]) || (live && expect > LOAD(G.last_seq[s]))) {
                lossy++;
                break;
            }
        }
    }
    return lossy;
}

void flow_sum(counters *out)
{
    uint64_t *o = (uint64_t *)out;
    memset(out, 0, sizeof *out);
    for (uint32_t t = 0; t < G.T; t++) {
        const uint64_t *n = (const uint64_t *)&G.thr[t].n;
        for (size_t i = 0; i < N_COUNTERS; i++)
            o[i] += LOAD(n[i]);
    }
}

/* Counts c once as disconnected (closed under us, or said bye). */
static void count_gone(gen_thread *t, bench_conn *c)
{
    if (c->gone)
        return;
    c->gone = true;
    if (c->role == BENCH_SUB)
        BUMP(t->n.readers_lost, 1);
    else
        BUMP(t->n.writers_lost, 1);
}

void flow_count_lost(gen_thread *t, bench_conn *c)
{
    BUMP(t->n.lost_conns, 1);
    BUMP(t->n.errors, 1);
    count_gone(t, c);
}

void bench_on_confirm(bench_conn *c, uint32_t g, uint64_t last_seq)
{
    gen_thread *t = c->owner;
    if (c->pending == 0 || (g != BENCH_NO_GROUP && g >= g_plan.G)) {
        BUMP(t->n.errors, 1); /* a confirmation nobody asked for */
        return;
    }
    c->pending--;
    if (g == BENCH_NO_GROUP)
        return;
    if (c->role == BENCH_PUB) {
        STORE(G.gacked[g], last_seq);
        return;
    }
    int64_t slot = plan_slot(c->index, g);
    if (slot >= 0)
        STORE(G.last_seq[slot], last_seq);
}

/* Says once per stream what went wrong in it, for the first few streams. */
static void report_stream(const bench_conn *c, uint32_t g, int64_t slot, const char *what,
                          uint64_t last, uint64_t seq)
{
    if (G.slot_bad[slot])
        return;
    STORE(G.slot_bad[slot], 1); /* read by the coordinator (flow_groups_lossy) */
    if (__atomic_fetch_add(&G.reported, 1, __ATOMIC_RELAXED) < MAX_REPORTED_STREAMS)
        fprintf(stderr, "ringcast-bench: s%u group %s%u: %s (after seq %llu came %llu)\n", c->index,
                g_plan.cfg.prefix, g, what, (unsigned long long)last, (unsigned long long)seq);
}

static void record_latency(gen_thread *t, uint64_t ts)
{
    uint32_t k = LOAD_ACQ(G.step); /* the newest step: this thread may not have begun it yet */
    int64_t sec = timeline_second(t, ts);
    if (sec >= 0)
        rc_hist_record(&t->tl[sec], t->now_ns > ts ? t->now_ns - ts : 0);
    while (k > 0 && ts < G.steps[k].m0_ns)
        k--;
    const step *s = &G.steps[k];
    if (k < t->hist_from || ts < s->m0_ns || ts >= LOAD(s->m1_ns))
        return; /* sent during a warm-up or a drain, or its step is closed */
    rc_hist_record(&t->hist[k], t->now_ns > ts ? t->now_ns - ts : 0);
}

void bench_on_delivery(bench_conn *c, uint32_t g, uint64_t seq, const uint8_t *body,
                       size_t body_len)
{
    gen_thread *t = c->owner;
    if (c->role == BENCH_PUB) {
        BUMP(t->n.echoes, 1);
        return;
    }
    int64_t slot = plan_slot(c->index, g);
    if (slot < 0) {
        BUMP(t->n.stray, 1);
        return;
    }
    BUMP(t->n.deliveries, 1);
    BUMP(t->deliv[plan_pub_of(g)], 1);
    uint64_t ts;
    if (body_len != g_plan.cfg.body || !bench_get_hex16(body + BENCH_TS_OFF, &ts))
        BUMP(t->n.corrupt, 1);
    else
        record_latency(t, ts);
    uint64_t last = G.last_seq[slot]; /* written only by this thread */
    if (seq == last + 1) {
        STORE(G.last_seq[slot], seq);
    } else if (seq > last + 1) {
        BUMP(t->n.gaps, seq - last - 1);
        report_stream(c, g, slot, "gap", last, seq);
        STORE(G.last_seq[slot], seq);
    } else if (seq == last) {
        BUMP(t->n.dups, 1);
        report_stream(c, g, slot, "duplicate", last, seq);
    } else {
        BUMP(t->n.reorders, 1);
        report_stream(c, g, slot, "reordered", last, seq);
    }
}

/* Redis: the reply to the oldest unanswered publish; its group's size. */
static uint32_t ring_pop(pub_state *p)
{
    if (!p->ring || p->ring_len == 0)
        return UINT32_MAX;
    uint32_t size = p->ring[p->ring_head];
    p->ring_head = (p->ring_head + 1) & p->ring_mask;
    p->ring_len--;
    return size;
}

void bench_on_ack(bench_conn *c, uint32_t g, uint64_t seq, int64_t receivers)
{
    gen_thread *t = c->owner;
    if (c->role != BENCH_PUB) {
        BUMP(t->n.errors, 1);
        return;
    }
    pub_state *p = &G.pubs[c->index];
    BUMP(p->acked, 1);
    BUMP(t->n.acked, 1);
    if (g < g_plan.G && seq > G.gacked[g])
        STORE(G.gacked[g], seq);
    uint32_t size = ring_pop(p);
    if (receivers >= 0 && (uint64_t)receivers != size)
        BUMP(t->n.short_fanout, 1);
}

static void server_error(bench_conn *c, const char *text, size_t len, bool bye)
{
    gen_thread *t = c->owner;
    if (__atomic_fetch_add(&t->reported, 1, __ATOMIC_RELAXED) < MAX_REPORTED_ERRORS)
        fprintf(stderr, "ringcast-bench: server error on %c%u: %.*s\n",
                c->role == BENCH_SUB ? 's' : 'p', c->index, (int)len, text);
    BUMP(t->n.errors, 1);
    if (!LOAD_ACQ(G.running)) {
        STORE(G.setup_failed, true);
    } else if (c->role == BENCH_PUB) {
        pub_state *p = &G.pubs[c->index];
        BUMP(p->rejected, 1);
        BUMP(t->n.rejected, 1);
        if (!bye)
            BUMP(t->n.refused[flood_code_of(text, len)], 1);
        ring_pop(p);
    }
}

void bench_on_event(bench_conn *c, bench_event e)
{
    gen_thread *t = c->owner;
    switch (e) {
    case BENCH_EV_PRESENCE: BUMP(t->n.ev_presence, 1); break;
    case BENCH_EV_RECEIPT: BUMP(t->n.ev_receipt, 1); break;
    case BENCH_EV_TYPING: BUMP(t->n.ev_typing, 1); break;
    case BENCH_EV_READ_SENT: BUMP(t->n.reads_sent, 1); break;
    case BENCH_EV_MARKED: BUMP(t->n.marked, 1); break;
    }
}

void bench_on_server_error(bench_conn *c, const char *text, size_t len)
{
    server_error(c, text, len, false);
}

void bench_on_bye(bench_conn *c, const char *reason, size_t len)
{
    gen_thread *t = c->owner;
    BUMP(t->n.byes, 1);
    count_gone(t, c);
    server_error(c, reason, len, true);
}
