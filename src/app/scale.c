/*
 * Changing the shard count while serving (src/ARCHITECTURE.md §4.1): the
 * server's side of a move (rc_server_resize), the autoscaler thread that
 * decides when (src/core/scaler.h), and /admin/shards.
 *
 * A resize publishes a new route and waits until every shard of the old
 * and the new route has done its part (src/core/route.h); only then is the
 * old route freed and a shard that left the route joined. Shards are set up
 * the first time they are used and kept until the server stops, so an io
 * thread may still give an emptied outbatch back to a shard that left.
 */
#define _GNU_SOURCE
#include "app/server.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/stats.h"
#include "store/store.h"

#define RC_MOVE_POLL_US 200u          /* how often a resize looks at the shards' progress */
#define RC_SCALE_OFF_POLL_MS 1000u    /* with scale_interval_ms = 0 the thread still looks for a reload this often */
#define RC_MOVE_WARN_MS 5000u         /* a move still under way after this is logged (and again each time) */

static rc_durability durability_of(const char *name)
{
    return strcmp(name, "none") == 0 ? RC_DURABILITY_NONE
         : strcmp(name, "sync") == 0 ? RC_DURABILITY_SYNC
                                     : RC_DURABILITY_BATCH;
}

int rc_server_shard_setup(rc_server *s, uint32_t i, char *err, size_t errlen)
{
    if (s->shards[i].inbound)
        return 0;
    rc_shard_limits lim = { s->cfg.history_max, s->cfg.dedup_window, s->cfg.max_members_per_group,
                            s->cfg.snapshot_every, s->cfg.snapshot_interval_ms, s->cfg.history_ttl * 1000u,
                            s->cfg.max_reply_bytes, s->cfg.group_rate, s->cfg.group_burst,
                            (uint64_t)s->cfg.history_cache_mb << 20, s->cfg.inbox_scan_max };
    rc_shard_store store = { s->persist, rc_store_ops(), (int)durability_of(s->cfg.durability) };
    if (rc_shard_init(&s->shards[i], i, s->cfg.ring_capacity, &lim, &s->outlets, &store) != 0) {
        snprintf(err, errlen, "cannot set up shard %u: %s", i, strerror(errno));
        return -1;
    }
    rc_shard_set_letters(&s->shards[i], s->dlq ? &s->letters : NULL, s->cfg.max_queue_ms);
    s->shards[i].live = &s->live; /* a reload since start reaches it at its first burst */
    /* release: the admin thread reads shard i's rings and counters once it sees it counted. */
    if (atomic_load_explicit(&s->n_inited, memory_order_relaxed) < i + 1)
        atomic_store_explicit(&s->n_inited, i + 1, memory_order_release);
    return 0;
}

static uint64_t groups_moved(rc_server *s)
{
    uint64_t n = 0, k = atomic_load_explicit(&s->n_inited, memory_order_acquire);
    for (uint32_t i = 0; i < k; i++)
        n += rc_stat_get(&s->shards[i].stats.groups_moved);
    return n;
}

void rc_server_route_stats(rc_server *s, const rc_route *r)
{
    RC_STAT_SET(s->route_tokens, rc_chash_tokens(r->chash));
    RC_STAT_SET(s->route_split_ppm, rc_chash_table_split(r->chash) * 1e6);
}

int rc_server_resize(rc_server *s, uint32_t n, const char *why, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->scale_lock);
    int rc = -1;
    rc_route *old = s->route, *nr = NULL;
    if (n < s->cfg.min_shards || n > s->cfg.max_shards) {
        snprintf(err, errlen, "shard count %u outside min_shards..max_shards (%u..%u)", n, s->cfg.min_shards,
                 s->cfg.max_shards);
        goto out;
    }
    if (s->stopping) {
        snprintf(err, errlen, "the server is stopping");
        goto out;
    }
    if (n == old->n) {
        rc = 0;
        goto out;
    }
    nr = rc_route_new(old->version + 1, n, s->cfg.vnodes);
    if (!nr) {
        snprintf(err, errlen, "out of memory building the new route");
        goto out;
    }
    /* New shards start on the old route: they learn of the move as the
     * others do, from the published route. */
    for (uint32_t i = old->n; i < n; i++) {
        if (rc_server_shard_setup(s, i, err, errlen) != 0)
            goto out;
        rc_shard_set_routing(&s->shards[i], &s->routing, s->shard_ptrs, old);
        if (rc_shard_start(&s->shards[i]) != 0) {
            snprintf(err, errlen, "cannot start shard %u: %s", i, strerror(errno));
            for (uint32_t k = old->n; k < i; k++) { /* nothing was published: stop the ones started */
                rc_job *stop = rc_job_new(RC_JOB_STOP, 0, (rc_str){ 0 }, NULL);
                while (stop && rc_shard_submit(&s->shards[k], &stop, 1) == 0)
                    usleep(RC_MOVE_POLL_US);
                rc_shard_join(&s->shards[k]);
                s->shards[k].started = false;
            }
            goto out;
        }
        s->shards[i].started = true;
    }
    uint64_t t0 = rc_clock_mono_ns(), moved0 = groups_moved(s);
    uint32_t parts = old->n > n ? old->n : n;
    atomic_store_explicit(&s->routing.done, 0, memory_order_relaxed);
    /* release: the new route's ring is complete for every thread that sees it. */
    atomic_store_explicit(&s->routing.cur, nr, memory_order_release);
    for (uint32_t i = 0; i < s->n_io; i++)
        rc_waker_kick(&s->ios[i].waker);
    for (uint32_t i = 0; i < parts; i++)
        rc_waker_kick(&s->shards[i].waker);
    uint64_t warn_at = t0 + (uint64_t)RC_MOVE_WARN_MS * RC_NS_PER_MS;
    /* acquire: pairs with each shard's release when its part is done. */
    while (atomic_load_explicit(&s->routing.done, memory_order_acquire) < parts) {
        usleep(RC_MOVE_POLL_US);
        if (rc_clock_mono_ns() > warn_at) {
            RC_LOG_WARN("scale", "event=move_slow version=%" PRIu64 " done=%u of=%u", nr->version,
                        atomic_load_explicit(&s->routing.done, memory_order_relaxed), parts);
            warn_at += (uint64_t)RC_MOVE_WARN_MS * RC_NS_PER_MS;
        }
    }
    for (uint32_t i = n; i < old->n; i++) { /* they end on their own once done */
        rc_shard_join(&s->shards[i]);
        s->shards[i].started = false;
    }
    uint64_t took = rc_clock_mono_ns() - t0;
    uint32_t old_n = old->n;
    s->route = nr;
    rc_server_route_stats(s, nr);
    atomic_store_explicit(&s->n_active, n, memory_order_release);
    rc_route_free(old);
    nr = NULL;
    bool grow = n > old_n;
    rc_stat_add_shared(&s->scale_events[grow ? 0 : 1], 1);
    RC_STAT_SET(s->move_ns_last, took);
    RC_LOG_INFO("scale", "event=%s shards=%u->%u why=%s groups_moved=%" PRIu64 " ms=%.2f version=%" PRIu64,
                grow ? "grow" : "shrink", old_n, n, why,
                groups_moved(s) - moved0, (double)took / 1e6, s->route->version);
    rc = 0;
out:
    if (rc != 0)
        rc_stat_add_shared(&s->moves_failed, 1);
    rc_route_free(nr);
    pthread_mutex_unlock(&s->scale_lock);
    return rc;
}

/* ---- the autoscaler ---- */

/* How full the queue was over the last interval, in % of what the io
 * threads admit into a ring (RC_IO_ADMIT_MAX_JOBS jobs, or admit_ns of
 * work: see src/net/handoff.c admit_room): the larger of
 *  - the share of the interval during which some io thread held requests
 *    outside full rings (ringcast_io_unadmitted_nanoseconds_total; 100 %:
 *    requests waited the whole interval), which sees an overload however
 *    the rings fill and drain between two samples, and
 *  - the fullest shard's ring now, which sees a ring filling before
 *    anything waits outside it.
 * last_ns holds each io thread's counter at the previous sample. */
static uint32_t fill_pct(rc_server *s, uint32_t n, uint32_t max_queue_ms, uint64_t *last_ns, uint64_t dt_ms)
{
    uint64_t admit_ns = (uint64_t)max_queue_ms * RC_NS_PER_MS / RC_IO_ADMIT_DIVISOR, cap = s->cfg.ring_capacity;
    if (cap > RC_IO_ADMIT_MAX_JOBS)
        cap = RC_IO_ADMIT_MAX_JOBS;
    uint64_t worst = 0;
    for (uint32_t i = 0; i < s->n_io; i++) {
        uint64_t t = rc_stat_get(&s->ios[i].stats.unadmitted_ns);
        uint64_t f = dt_ms ? (t - last_ns[i]) * 100u / (dt_ms * RC_NS_PER_MS) : 0;
        last_ns[i] = t;
        if (f > worst)
            worst = f;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint64_t by_jobs = (uint64_t)rc_shard_depth(&s->shards[i]) * 100u / cap;
        uint64_t by_time = admit_ns ? rc_shard_ring_wait_ns(&s->shards[i]) * 100u / admit_ns : 0;
        uint64_t f = by_jobs > by_time ? by_jobs : by_time;
        if (f > worst)
            worst = f;
    }
    return worst > 100 ? 100 : (uint32_t)worst;
}

/* The most any shard waited for room in an io thread's outbound ring over
 * the last interval, % of it (last_ns: each shard's counter at the
 * previous sample). */
static uint32_t io_wait_pct(rc_server *s, uint32_t inited, uint64_t *last_ns, uint64_t dt_ms)
{
    uint64_t worst = 0;
    for (uint32_t i = 0; i < inited; i++) {
        uint64_t t = rc_stat_get(&s->shards[i].stats.out_stall_ns);
        uint64_t f = dt_ms ? (t - last_ns[i]) * 100u / (dt_ms * RC_NS_PER_MS) : 0;
        last_ns[i] = t;
        if (f > worst)
            worst = f;
    }
    return worst > 100 ? 100 : (uint32_t)worst;
}

static void scale_sample(rc_server *s, uint32_t max_queue_ms, uint64_t *last_unadmitted, uint64_t *last_stall,
                         uint64_t dt_ms)
{
    uint32_t n = atomic_load_explicit(&s->n_active, memory_order_acquire), inited = atomic_load_explicit(&s->n_inited, memory_order_acquire);
    uint64_t now_ms = rc_clock_mono_ns() / RC_NS_PER_MS, jobs = 0;
    for (uint32_t i = 0; i < s->n_io; i++) /* arrivals: a full queue holds back what is processed */
        jobs += rc_stat_get(&s->ios[i].stats.jobs_routed);
    rc_scale_sample smp = { .t_ms = now_ms, .jobs = jobs, .fill_pct = fill_pct(s, n, max_queue_ms, last_unadmitted, dt_ms),
                           .io_wait_pct = io_wait_pct(s, inited, last_stall, dt_ms) };
    rc_scale_decision d = rc_scaler_step(&s->scaler, n, &smp);
    if (d.dir == RC_SCALE_STAY)
        return;
    char why[160], err[256];
    snprintf(why, sizeof(why), "%s(fill=%u%%,io_wait=%u%%,qps_10s=%.0f,qps_60s=%.0f)", d.why, d.fill_pct,
             d.io_wait_pct, d.qps_recent, d.qps_baseline);
    if (rc_server_resize(s, d.target, why, err, sizeof(err)) != 0) {
        RC_LOG_ERROR("scale", "event=resize_failed shards=%u->%u err=\"%s\"", n, d.target, err);
        return;
    }
    rc_scaler_applied(&s->scaler, now_ms, d.dir);
}

/* Per-shard jobs/s over the last interval, for /admin/shards. */
static void note_qps(rc_server *s, uint64_t *last_jobs, uint64_t dt_ms)
{
    uint32_t inited = atomic_load_explicit(&s->n_inited, memory_order_acquire);
    for (uint32_t i = 0; i < inited; i++) {
        uint64_t j = rc_stat_get(&s->shards[i].stats.jobs);
        RC_STAT_SET(s->shard_qps[i], dt_ms ? (j - last_jobs[i]) * 1000u / dt_ms : 0);
        last_jobs[i] = j;
    }
}

static void *scaler_main(void *arg)
{
    rc_server *s = arg;
    uint64_t *last_jobs = calloc(s->max_shards, sizeof(*last_jobs));
    uint64_t *last_unadmitted = calloc(s->n_io, sizeof(*last_unadmitted));
    uint64_t *last_stall = calloc(s->max_shards, sizeof(*last_stall));
    uint64_t prev_ms = rc_clock_mono_ns() / RC_NS_PER_MS;
    pthread_mutex_lock(&s->scale_lock);
    while (!s->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint32_t every = s->cfg.scale_interval_ms ? s->cfg.scale_interval_ms : RC_SCALE_OFF_POLL_MS;
        uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)every * RC_NS_PER_MS;
        until.tv_sec += (time_t)(ns / 1000000000u);
        until.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&s->scaler_cond, &s->scale_lock, &until);
        if (s->stopping)
            break;
        if (s->scaler_bounds_due) { /* a reload: the configuration is read under scale_lock */
            rc_scaler_bounds(&s->scaler, s->cfg.min_shards, s->cfg.max_shards, s->cfg.scale_cooldown_ms);
            s->scaler_bounds_due = false;
        }
        bool on = s->cfg.scale_interval_ms && s->cfg.min_shards < s->cfg.max_shards;
        uint32_t max_queue_ms = s->cfg.max_queue_ms;
        pthread_mutex_unlock(&s->scale_lock); /* a resize takes it */
        uint64_t now_ms = rc_clock_mono_ns() / RC_NS_PER_MS;
        if (last_jobs)
            note_qps(s, last_jobs, now_ms - prev_ms);
        if (on && last_unadmitted && last_stall) {
            scale_sample(s, max_queue_ms, last_unadmitted, last_stall, now_ms - prev_ms);
        } else if (last_unadmitted && last_stall) { /* off: the first interval after it comes on starts from now */
            for (uint32_t i = 0; i < s->n_io; i++)
                last_unadmitted[i] = rc_stat_get(&s->ios[i].stats.unadmitted_ns);
            uint32_t inited = atomic_load_explicit(&s->n_inited, memory_order_acquire);
            for (uint32_t i = 0; i < inited; i++)
                last_stall[i] = rc_stat_get(&s->shards[i].stats.out_stall_ns);
        }
        prev_ms = now_ms;
        pthread_mutex_lock(&s->scale_lock);
    }
    pthread_mutex_unlock(&s->scale_lock);
    free(last_jobs);
    free(last_unadmitted);
    free(last_stall);
    return NULL;
}

int rc_server_scaler_start(rc_server *s, char *err, size_t errlen)
{
    rc_scaler_init(&s->scaler, s->cfg.min_shards, s->cfg.max_shards, s->cfg.scale_cooldown_ms);
    if (s->cfg.scale_interval_ms == 0)
        RC_LOG_INFO("scale", "event=autoscaler_off shards=%u msg=\"scale_interval_ms=0: the shard count changes only by POST /admin/shards (or a reload that sets it)\"",
                    s->route->n);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int e = pthread_cond_init(&s->scaler_cond, &ca);
    pthread_condattr_destroy(&ca);
    if (e == 0 && (e = pthread_create(&s->scaler_thread, NULL, scaler_main, s)) != 0)
        pthread_cond_destroy(&s->scaler_cond);
    if (e) {
        snprintf(err, errlen, "cannot start the autoscaler: %s", strerror(e));
        return -1;
    }
    s->scaler_running = true;
    return 0;
}

void rc_server_scaler_stop(rc_server *s)
{
    if (!s->scale_lock_ready)
        return;
    pthread_mutex_lock(&s->scale_lock); /* waits for a resize under way */
    s->stopping = true;
    if (s->scaler_running)
        pthread_cond_signal(&s->scaler_cond);
    pthread_mutex_unlock(&s->scale_lock);
    if (s->scaler_running) {
        pthread_join(s->scaler_thread, NULL);
        pthread_cond_destroy(&s->scaler_cond);
        s->scaler_running = false;
    }
}

/* ---- /admin/shards ---- */

void rc_server_shards_json(rc_server *s, struct rc_admin_body *out)
{
    pthread_mutex_lock(&s->scale_lock); /* the bounds a reload changes */
    uint32_t n = atomic_load_explicit(&s->n_active, memory_order_acquire);
    rc_admin_body_printf(out,
                         "{\"shards\":%u,\"min_shards\":%u,\"max_shards\":%u,\"scale_interval_ms\":%u,"
                         "\"scale_cooldown_ms\":%u,\"grow_events\":%" PRIu64 ",\"shrink_events\":%" PRIu64
                         ",\"groups_moved\":%" PRIu64 ",\"last_move_ms\":%.3f,\"list\":[",
                         n, s->cfg.min_shards, s->cfg.max_shards, s->cfg.scale_interval_ms, s->cfg.scale_cooldown_ms,
                         rc_stat_get(&s->scale_events[0]), rc_stat_get(&s->scale_events[1]), groups_moved(s),
                         (double)rc_stat_get(&s->move_ns_last) / 1e6);
    for (uint32_t i = 0; i < n; i++) {
        const rc_shard *sh = &s->shards[i];
        rc_admin_body_printf(out, "%s{\"id\":%u,\"groups\":%" PRIu64 ",\"queue\":%u,\"capacity\":%u,\"qps\":%" PRIu64
                                  ",\"jobs\":%" PRIu64 ",\"parked\":%" PRIu64 "}",
                             i ? "," : "", i, rc_stat_get(&sh->stats.groups), rc_shard_depth(sh),
                             rc_ring_capacity(sh->inbound), rc_stat_get(&s->shard_qps[i]), rc_stat_get(&sh->stats.jobs),
                             rc_stat_get(&sh->stats.parked));
    }
    rc_admin_body_printf(out, "]}\n");
    pthread_mutex_unlock(&s->scale_lock);
}
