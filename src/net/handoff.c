/*
 * The hand-off of requests to shards, and the backpressure it takes
 * (src/ARCHITECTURE.md §3.1 step 5, §3.4): jobs queue per shard, in order;
 * a push takes what the shard's ring admits (by slots, and by the time the
 * work already in it will take); a connection with jobs still waiting is
 * not read until they are in; a sender is not read while any reader is over
 * the pause mark; a job that waited longer than max_queue_ms is refused.
 * Never sleeps, never drops.
 */
#include "net/conn.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/stats.h"

/* Queues a job for its shard; pushed at the end of the turn, or now when a
 * full batch is waiting. Queueing never blocks or drops: what does not fit
 * the shard's ring waits here (rc_handoff_flush), and its connection is not read
 * meanwhile. */
void rc_handoff_queue(rc_io *io, rc_job *j, uint32_t shard, rc_conn *owner)
{
    rc_jobq *q = &io->pending[shard];
    if (rc_job_has_group(j))
        RC_STAT_ADD(io->stats.jobs_routed, 1);
    if (q->n >= RC_SHARD_BATCH && !io->in_drain)
        rc_handoff_flush(io);
    if (q->head + q->n == q->cap && q->head > 0) { /* slide the live entries to the front */
        memmove(q->jobs, q->jobs + q->head, q->n * sizeof(*q->jobs));
        memmove(q->conns, q->conns + q->head, q->n * sizeof(*q->conns));
        q->head = 0;
    }
    if (q->n == q->cap) {
        uint32_t cap = q->cap * 2;
        rc_job **jobs = realloc(q->jobs, cap * sizeof(*jobs));
        if (jobs)
            q->jobs = jobs;
        rc_conn_id *conns = jobs ? realloc(q->conns, cap * sizeof(*conns)) : NULL;
        if (!conns) {
            RC_LOG_ERROR("io", "event=job_queue_nomem kind=%d", (int)j->kind);
            free(j); /* a lost detach leaves a stale subscription; its deliveries are dropped by generation */
            return;
        }
        q->conns = conns;
        q->cap = cap;
    }
    j->enq_ns = rc_loop_clock_now(&io->clock); /* waits here and in the shard count against max_queue_ms */
    q->jobs[q->head + q->n] = j;
    q->conns[q->head + q->n] = owner ? rc_conn_id_make(io->idx, owner->slot, owner->gen) : 0;
    q->n++;
    if (owner)
        owner->jobs_queued++;
    RC_STAT_ADD(io->stats.jobs_waiting, 1);
}

/* Queues a request as a job for its group's shard, from `from` (the
 * session's user, or a replayed letter's sender). */
void rc_handoff_route(rc_io *io, rc_conn *c, rc_job_kind kind, rc_str from, const rc_msg *m)
{
    rc_job *j = rc_job_new(kind, rc_conn_id_make(io->idx, c->slot, c->gen), from, m);
    if (!j) {
        rc_io_conn_error(io, c, m, RC_E_INTERNAL, "out of memory queueing the request; try again later");
        return;
    }
    c->heavy += rc_job_heavy(j);
    j->no_echo = c->sess.no_echo;
    rc_handoff_queue(io, j, rc_handoff_shard_of(io, m->g.ptr, m->g.len), c);
}

uint32_t rc_handoff_shard_of(rc_io *io, const char *g, uint32_t len)
{
    return rc_route_shard(io->route, g, len);
}

/* At the start of a loop turn: when the server has published a new route
 * (a shard count change), every shard of the old one gets an EPOCH job
 * behind the last request this thread routed to it by the old route, and
 * from now on requests go by the new one (src/core/route.h). */
void rc_handoff_follow_route(rc_io *io)
{
    const rc_route *cur = rc_routing_cur(io->routing);
    if (cur == io->route)
        return;
    for (uint32_t s = 0; s < io->route->n; s++) {
        rc_job *j;
        while (!(j = rc_job_new(RC_JOB_EPOCH, 0, (rc_str){ 0 }, NULL)))
            RC_LOG_ERROR("io", "io=%u event=epoch_nomem", io->idx); /* a move cannot finish without it */
        j->seq = cur->version;
        rc_handoff_queue(io, j, s, NULL);
    }
    RC_LOG_DEBUG("io", "io=%u event=route version=%llu shards=%u", io->idx, (unsigned long long)cur->version, cur->n);
    io->route = cur;
}

/* A job that waited longer than max_queue_ms for room in its shard's ring:
 * the sender gets E_OVERLOADED and the send becomes an `overloaded` letter. */
static void reject_overloaded(rc_io *io, rc_job *j, rc_conn *c, uint32_t shard)
{
    rc_stat_add_shared(&io->shards[shard]->stats.refused_overloaded, 1);
    rc_io_letter_refused(io, j, RC_LETTER_OVERLOADED, "waited longer than max_queue_ms for room in the group's shard ring");
    if (c && rc_job_heavy(j))
        rc_handoff_answered(io, c);
    if (c) {
        rc_msg m = { .has = j->has & RC_HAS_RID, .rid = j->rid };
        if (j->kind == RC_JOB_JOIN) /* the session did not join after all */
            rc_session_forget(&c->sess, (rc_str){ rc_job_g(j), j->g_len });
        rc_io_conn_error(io, c, &m, RC_E_OVERLOADED, "the group's shard is saturated; retry with backoff");
    }
    free(j);
}

/* A held connection may have become readable: it is looked at by the next
 * rc_handoff_resume (not now: this runs inside deliveries and pushes). */
void rc_handoff_wake(rc_io *io, rc_conn *c)
{
    if (!c->held || c->resume_listed || !rc_conn_readable(io, c))
        return;
    assert(io->n_resume < 2 * io->n_slots); /* one entry per live connection, one per slot freed this turn */
    c->resume_listed = true;
    io->resume[io->n_resume++] = rc_conn_id_make(io->idx, c->slot, c->gen);
}

void rc_handoff_answered(rc_io *io, rc_conn *c)
{
    if (c->heavy)
        c->heavy--;
    rc_handoff_wake(io, c);
}

/* One job left io->pending (pushed or refused): its connection waits for
 * one fewer, and is read again once it waits for none (rc_handoff_resume). */
static void job_left(rc_io *io, rc_conn *c)
{
    RC_STAT_ADD(io->stats.jobs_waiting, (uint64_t)-1);
    if (c && --c->jobs_queued == 0)
        rc_handoff_wake(io, c);
}

static void jobq_pop(rc_jobq *q, uint32_t k)
{
    q->head += k;
    q->n -= k;
    q->checked = q->checked > k ? q->checked - k : 0;
    if (q->n == 0)
        q->head = 0;
}

/* Jobs still waiting in q after a push: the oldest past max_queue_ms are
 * refused, and every connection with a job waiting is held. Detach and
 * stop jobs are never refused: they wait for room like the rest. */
static void jobq_settle(rc_io *io, rc_jobq *q)
{
    uint64_t now = rc_loop_clock_now(&io->clock), bound = (uint64_t)io->lim.max_queue_ms * RC_NS_PER_MS;
    while (q->n && now - q->jobs[q->head]->enq_ns > bound && rc_job_refusable(q->jobs[q->head])) {
        rc_job *j = q->jobs[q->head];
        rc_conn *c = rc_io_conn(io, q->conns[q->head]);
        jobq_pop(q, 1);
        job_left(io, c);
        reject_overloaded(io, j, c, (uint32_t)(q - io->pending));
    }
    for (; q->checked < q->n; q->checked++) {
        rc_conn *c = rc_io_conn(io, q->conns[q->head + q->checked]);
        if (c)
            rc_io_conn_hold(io, c);
    }
}

/* How many more jobs the shard's ring is open to: none once it holds
 * admit_ns of work (rc_shard_ring_wait_ns) or RC_IO_ADMIT_MAX_JOBS jobs
 * (a job's cost can rise tenfold after it was admitted, when the io
 * threads fall behind a big group's fan-out). */
static uint32_t admit_room(const rc_io *io, const rc_shard *s)
{
    uint32_t depth = rc_shard_depth(s);
    if (depth >= RC_IO_ADMIT_MAX_JOBS || rc_shard_ring_wait_ns(s) > io->admit_ns)
        return 0;
    return RC_IO_ADMIT_MAX_JOBS - depth;
}

/* Pushes queued jobs to their shards, as many as their rings take, in
 * order. Never waits: what does not fit stays queued for the next turns,
 * and its connection stops being read (jobq_settle). A shard whose ring
 * already holds more than admit_ns of work (max_queue_ms /
 * RC_IO_ADMIT_DIVISOR, by rc_shard_ring_wait_ns) counts as full: a deep
 * ring would otherwise let requests in only to expire there. */
void rc_handoff_flush(rc_io *io)
{
    for (uint32_t s = 0; s < io->n_shards; s++) {
        rc_jobq *q = &io->pending[s];
        if (q->n == 0)
            continue;
        uint32_t k = 0, room = admit_room(io, io->shards[s]), want = q->n < room ? q->n : room;
        if (want) {
            uint64_t now = rc_loop_clock_now(&io->clock);
            for (uint32_t i = 0; i < want; i++)
                q->jobs[q->head + i]->ring_ns = now;
            k = rc_shard_submit(io->shards[s], q->jobs + q->head, want);
        }
        if (want < q->n)
            RC_STAT_ADD(io->stats.admit_waits, 1);
        /* The pushed jobs belong to the shard now: only their owners' ids,
         * kept beside them, are read. */
        for (uint32_t i = 0; i < k; i++)
            job_left(io, rc_io_conn(io, q->conns[q->head + i]));
        jobq_pop(q, k);
        if (q->n)
            jobq_settle(io, q);
    }
    uint32_t waiting = rc_handoff_waiting(io);
    RC_STAT_SET(io->stats.jobs_unadmitted, waiting);
    /* Time with requests outside full rings, counted from push to push:
     * the autoscaler reads it as the share of an interval the queue was
     * full (src/app/scale.c fill_pct), which a reading once a second
     * misses when the rings fill and drain in between. */
    uint64_t now = rc_loop_clock_now(&io->clock);
    if (io->unadmitted_since_ns)
        RC_STAT_ADD(io->stats.unadmitted_ns, now - io->unadmitted_since_ns);
    io->unadmitted_since_ns = waiting ? now : 0;
}

/* A sender is not read further while any reader, on any io thread, is
 * over the pause mark: the flood waits in its own socket (TCP slows it)
 * instead of in the server's memory. The send in hand is still routed. */
void rc_handoff_hold_sender(rc_io *io, rc_conn *c)
{
    if (c->pressure_hold || !atomic_load_explicit(io->lim.pressure, memory_order_relaxed))
        return; /* relaxed: see conn_congest */
    if (io->n_pressured == io->n_slots) { /* full of entries of connections closed since: drop those */
        uint32_t keep = 0;
        for (uint32_t i = 0; i < io->n_pressured; i++)
            if (rc_io_conn(io, io->pressured[i]))
                io->pressured[keep++] = io->pressured[i];
        io->n_pressured = keep;
    }
    c->pressure_hold = true;
    RC_STAT_ADD(io->stats.pressure_holds, 1);
    io->pressured[io->n_pressured++] = rc_conn_id_make(io->idx, c->slot, c->gen);
    rc_io_conn_hold(io, c);
}

/* No reader is over the pause mark any more: senders are read again. */
void rc_handoff_release_senders(rc_io *io)
{
    if (atomic_load_explicit(io->lim.pressure, memory_order_relaxed)) /* relaxed: see conn_congest */
        return;
    for (uint32_t i = 0; i < io->n_pressured; i++) {
        rc_conn *c = rc_io_conn(io, io->pressured[i]);
        if (!c || !c->pressure_hold)
            continue;
        c->pressure_hold = false;
        if (c->held && rc_conn_readable(io, c))
            rc_io_conn_unhold(io, c);
    }
    io->n_pressured = 0;
}

/* Connections whose waiting jobs all entered their rings are read again
 * (unless senders are held for pressure). */
void rc_handoff_resume(rc_io *io)
{
    for (uint32_t i = 0; i < io->n_resume; i++) {
        rc_conn *c = rc_io_conn(io, io->resume[i]);
        if (!c)
            continue;
        c->resume_listed = false;
        if (c->held && rc_conn_readable(io, c))
            rc_io_conn_unhold(io, c);
    }
    io->n_resume = 0;
}

uint32_t rc_handoff_waiting(const rc_io *io)
{
    uint32_t n = 0;
    for (uint32_t s = 0; s < io->n_shards; s++)
        n += io->pending[s].n;
    return n;
}

/* Input has stopped and every job it produced is in a shard's ring: the
 * server may now queue its stop barrier behind them. */
void rc_handoff_ack_input_stopped(rc_io *io)
{
    if (atomic_load_explicit(&io->input_stopped, memory_order_relaxed) || rc_handoff_waiting(io))
        return;
    /* release: the jobs pushed before are visible to whoever sees the flag. */
    atomic_store_explicit(&io->input_stopped, 1, memory_order_release);
}

/* The stop deadline passed with jobs still waiting for their rings (the
 * shards have stopped): each send becomes a `shutdown` letter, and its
 * sender hears E_SHUTTING_DOWN. */
void rc_handoff_refuse_all(rc_io *io)
{
    for (uint32_t s = 0; s < io->n_shards; s++) {
        rc_jobq *q = &io->pending[s];
        while (q->n) {
            rc_job *j = q->jobs[q->head];
            rc_conn *c = rc_io_conn(io, q->conns[q->head]);
            jobq_pop(q, 1);
            job_left(io, c);
            rc_io_letter_refused(io, j, RC_LETTER_SHUTDOWN, "the server stopped before this send reached its shard");
            if (rc_job_refusable(j))
                rc_stat_add_shared(&io->shards[s]->stats.refused_shutdown, 1);
            if (c && rc_job_heavy(j) && c->heavy)
                c->heavy--;
            if (c && rc_job_refusable(j)) {
                rc_msg m = { .has = j->has & RC_HAS_RID, .rid = j->rid };
                rc_io_conn_error(io, c, &m, RC_E_SHUTTING_DOWN, "the server is shutting down; reconnect later");
            }
            free(j);
        }
    }
    io->n_resume = 0;
}
