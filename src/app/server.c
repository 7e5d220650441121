/*
 * Server assembly and orderly shutdown.
 *
 * Start: hash ring -> io threads (their outbound rings exist before any
 * shard can push) -> shards -> threads -> admin endpoint.
 * Stop: io threads stop input and push what they queued; a STOP job behind
 * everything in each shard ring lets shards finish; io threads then deliver
 * what shards produced, say `bye`, and close within shutdown_timeout_ms.
 */
#define _GNU_SOURCE
#include "app/server.h"

#include "store/store.h"
#include "core/clock.h"
#include "core/log.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RC_STOP_POLL_US 1000u /* how often stop checks io threads' progress */
/* The dead-letter producer's last flush at a stop gets what is left of
 * shutdown_timeout_ms, but at least this: the shutdown letters of that
 * moment are made at the deadline itself. What it cannot hand to Kafka in
 * time goes to the spool (kept on disk for the next start). */
#define RC_DLQ_CLOSE_MIN_MS 1000u

static int admin_handler(void *ud, const char *path, struct rc_admin_body *body, const char **ctype)
{
    rc_server *s = ud;
    bool ready = atomic_load_explicit(&s->ready, memory_order_acquire);
    if (strcmp(path, "/healthz") == 0) {
        rc_admin_body_printf(body, "ok\n");
        return 200;
    }
    if (strcmp(path, "/readyz") == 0) {
        rc_admin_body_printf(body, ready ? "ready\n" : "recovering\n");
        return ready ? 200 : 503;
    }
    if (strcmp(path, "/metrics") == 0 && !ready) {
        rc_admin_body_printf(body, "# ringcastd is recovering; metrics follow once it serves\n"
                                   "ringcast_ready 0\n");
        return 200;
    }
    if (strcmp(path, "/metrics") == 0) {
        *ctype = "text/plain; version=0.0.4";
        rc_server_metrics(s, body);
        return 200;
    }
    rc_admin_body_printf(body, "not found: try /metrics, /healthz or /readyz\n");
    return 404;
}

static rc_durability durability_of(const char *name)
{
    return strcmp(name, "none") == 0 ? RC_DURABILITY_NONE
         : strcmp(name, "sync") == 0 ? RC_DURABILITY_SYNC
                                     : RC_DURABILITY_BATCH;
}

typedef struct recovery_ctx {
    rc_server *s;
    char *err;
    size_t errlen;
} recovery_ctx;

static int adopt_group(void *ud, const rc_persist_group *pg)
{
    recovery_ctx *r = ud;
    uint32_t shard = rc_chash_lookup(r->s->chash, pg->g, pg->g_len);
    if (rc_shard_adopt(&r->s->shards[shard], pg, r->err, r->errlen) != 0)
        return -1;
    r->s->recovered_groups++;
    return 0;
}

/* Loads every stored group into the shard that owns it now. */
static int recover(rc_server *s, char *err, size_t errlen)
{
    if (!s->persist) {
        RC_LOG_WARN("server", "event=memory_only msg=\"durability=off: nothing is stored; a restart forgets every group\"");
        return 0;
    }
    uint64_t t0 = rc_clock_mono_ns();
    recovery_ctx r = { s, err, errlen };
    if (rc_store_ops()->load_groups(s->persist, adopt_group, &r, err, errlen) != 0)
        return -1;
    s->recovery_ns = rc_clock_mono_ns() - t0;
    RC_LOG_INFO("server", "event=recovered groups=%llu ms=%.1f data_dir=%s",
            (unsigned long long)s->recovered_groups, (double)s->recovery_ns / 1e6, s->cfg.data_dir);
    return 0;
}

static int start_shards(rc_server *s, rc_outlets *out, char *err, size_t errlen)
{
    rc_shard_limits lim = { s->cfg.history_max, s->cfg.dedup_window, s->cfg.max_members_per_group,
                            s->cfg.snapshot_every, s->cfg.snapshot_interval_ms, s->cfg.history_ttl * 1000u,
                            s->cfg.max_reply_bytes };
    rc_shard_store store = { s->persist, rc_store_ops(), (int)durability_of(s->cfg.durability) };
    for (uint32_t i = 0; i < s->n_shards; i++) {
        if (rc_shard_init(&s->shards[i], i, s->cfg.ring_capacity, &lim, out, &store) != 0) {
            snprintf(err, errlen, "cannot set up shard %u: %s", i, strerror(errno));
            return -1;
        }
        if (rc_chash_add(s->chash, i) != 0) {
            snprintf(err, errlen, "cannot add shard %u to the hash ring", i);
            return -1;
        }
    }
    return 0;
}

static int init_ios(rc_server *s, char *err, size_t errlen)
{
    if (rc_iplimit_init(&s->per_ip, s->cfg.max_connections_per_ip) != 0) {
        snprintf(err, errlen, "cannot create the per-address connection table");
        return -1;
    }
    s->per_ip_ready = true;
    rc_io_limits lim = {
        .max_frame = s->cfg.max_frame,
        .max_connections = (s->cfg.max_connections + s->n_io - 1) / s->n_io,
        .max_groups_per_session = s->cfg.max_groups_per_session,
        .recv_buffers = s->cfg.recv_buffers,
        .recv_buffer_size = s->cfg.recv_buffer_size,
        .outbound_high_bytes = s->cfg.outbound_high_bytes,
        .outbound_kill_bytes = s->cfg.outbound_kill_bytes,
        .letters = s->dlq ? &s->letters : NULL,
        .admin_token = s->cfg.admin_token,
        .max_queue_ms = s->cfg.max_queue_ms,
        .outbound_stall_ms = s->cfg.outbound_stall_ms,
        .pressure = &s->io_pressure,
        .per_ip = &s->per_ip,
        .hello_timeout_ms = s->cfg.hello_timeout_ms,
        .idle_timeout_ms = s->cfg.idle_timeout_ms,
        .allowed_origins = s->cfg.allowed_origins,
    };
    for (uint32_t i = 0; i < s->n_io; i++)
        if (rc_io_init(&s->ios[i], i, s->listen_fds[i], s->http_fds[i], &lim, s->shard_ptrs, s->n_shards, s->chash,
                       err, errlen) != 0)
            return -1;
    return 0;
}

/* Binds the client port (one SO_REUSEPORT socket per io thread) before the
 * embedded Kafka broker starts: that broker listens on an ephemeral port,
 * and the kernel could otherwise hand it the very port asked for here when
 * that port is itself a recently released ephemeral one (tests do that). */
static int listen_all(rc_server *s, char *err, size_t errlen)
{
    s->port = s->cfg.port;
    s->http_port = s->cfg.http_port;
    for (uint32_t i = 0; i < s->n_io; i++) {
        s->listen_fds[i] = rc_io_listen(s->cfg.host, &s->port, err, errlen);
        if (s->listen_fds[i] < 0)
            return -1;
        s->http_fds[i] = rc_io_listen(s->cfg.host, &s->http_port, err, errlen); /* page and WebSocket */
        if (s->http_fds[i] < 0)
            return -1;
    }
    return 0;
}

int rc_server_start(rc_server *s, const rc_config *cfg, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->cfg = *cfg;
    s->n_shards = cfg->shards;
    s->n_io = cfg->io_threads;
    s->started_ns = rc_clock_mono_ns();
    s->chash = rc_chash_create(cfg->vnodes);
    s->shards = calloc(s->n_shards, sizeof(*s->shards));
    s->shard_ptrs = calloc(s->n_shards, sizeof(*s->shard_ptrs));
    s->ios = calloc(s->n_io, sizeof(*s->ios));
    rc_ring **rings = s->out_rings = calloc(s->n_io, sizeof(*rings));
    rc_waker **wakers = s->out_wakers = calloc(s->n_io, sizeof(*wakers));
    s->listen_fds = calloc(s->n_io, sizeof(*s->listen_fds));
    s->http_fds = calloc(s->n_io, sizeof(*s->http_fds));
    if (!s->chash || !s->shards || !s->shard_ptrs || !s->ios || !rings || !wakers || !s->listen_fds || !s->http_fds) {
        snprintf(err, errlen, "out of memory starting the server");
        goto fail;
    }
    for (uint32_t i = 0; i < s->n_io; i++)
        s->ios[i].listen_fd = -1;
    s->admin = rc_admin_start(cfg->admin_host, cfg->admin_port, admin_handler, s, err, errlen);
    if (!s->admin || listen_all(s, err, errlen) != 0)
        goto fail;
    /* durability=off keeps everything in memory: nothing is stored or
     * recovered, and the dead-letter spool is in memory too. */
    if (strcmp(cfg->durability, "off") != 0) {
        s->persist = rc_store_open(cfg->data_dir, NULL, err, errlen);
        if (!s->persist)
            goto fail;
    }
#ifndef RC_NO_DLQ
    rc_dlq_config dc = { .brokers = cfg->kafka_brokers, .topic = cfg->dlq_topic, .node = "ringcastd",
                         .spool_max_bytes = cfg->spool_max_bytes, .breaker_ms = cfg->dlq_breaker_ms };
    if (s->persist) {
        dc.spool = rc_store_spool(s->persist);
        dc.spool_durable = true;
    }
    s->dlq = rc_dlq_open(&dc, err, errlen);
    if (!s->dlq)
        goto fail;
    s->letters = rc_dlq_sink(s->dlq);
    RC_LOG_INFO("server", "event=dead_letters brokers=%s topic=%s spool=%s",
            rc_dlq_bootstrap(s->dlq), rc_dlq_topic(s->dlq), s->persist ? "rocksdb" : "memory");
#endif
    for (uint32_t i = 0; i < s->n_shards; i++)
        s->shard_ptrs[i] = &s->shards[i];
    if (init_ios(s, err, errlen) != 0)
        goto fail;
    for (uint32_t i = 0; i < s->n_io; i++) {
        rings[i] = s->ios[i].outbound;
        wakers[i] = &s->ios[i].waker;
    }
    rc_outlets out = { s->n_io, rings, wakers };
    if (start_shards(s, &out, err, errlen) != 0)
        goto fail;
    if (recover(s, err, errlen) != 0)
        goto fail;
    for (uint32_t i = 0; i < s->n_shards; i++)
        rc_shard_set_letters(&s->shards[i], s->dlq ? &s->letters : NULL, cfg->max_queue_ms);
    for (uint32_t i = 0; i < s->n_shards; i++)
        if (rc_shard_start(&s->shards[i]) != 0) {
            snprintf(err, errlen, "cannot start shard thread: %s", strerror(errno));
            goto fail; /* threads already started are left to process exit */
        }
    for (uint32_t i = 0; i < s->n_io; i++)
        if (rc_io_start(&s->ios[i]) != 0) {
            snprintf(err, errlen, "cannot start io thread: %s", strerror(errno));
            goto fail;
        }
    /* release: everything set up above is visible to the admin thread. */
    atomic_store_explicit(&s->ready, 1, memory_order_release);
    return 0;
fail:
    /* Only reached before threads run, or at a point where exiting is the
     * caller's next step; the process exit reclaims the rest. */
    return -1;
}

void rc_server_stop(rc_server *s)
{
    atomic_store_explicit(&s->ready, 0, memory_order_release); /* /readyz: draining */
    uint64_t deadline = rc_clock_mono_ns() + (uint64_t)s->cfg.shutdown_timeout_ms * RC_NS_PER_MS;
    for (uint32_t i = 0; i < s->n_io; i++)
        rc_io_set_phase(&s->ios[i], RC_IO_STOP_INPUT, deadline);
    for (uint32_t i = 0; i < s->n_io; i++)
        /* acquire: pairs with the io thread's release after its last push. */
        while (!atomic_load_explicit(&s->ios[i].input_stopped, memory_order_acquire) && rc_clock_mono_ns() < deadline)
            usleep(RC_STOP_POLL_US);
    for (uint32_t i = 0; i < s->n_shards; i++) {
        rc_job *stop = rc_job_new(RC_JOB_STOP, 0, (rc_str){ 0 }, NULL);
        while (stop && rc_shard_submit(&s->shards[i], &stop, 1) == 0)
            usleep(RC_STOP_POLL_US);
    }
    for (uint32_t i = 0; i < s->n_shards; i++)
        rc_shard_join(&s->shards[i]);
    for (uint32_t i = 0; i < s->n_io; i++)
        rc_io_set_phase(&s->ios[i], RC_IO_FINAL, deadline);
    for (uint32_t i = 0; i < s->n_io; i++)
        rc_io_join(&s->ios[i]);
    rc_admin_stop(s->admin);
    for (uint32_t i = 0; i < s->n_shards; i++)
        rc_shard_destroy(&s->shards[i]);
    for (uint32_t i = 0; i < s->n_io; i++)
        rc_io_destroy(&s->ios[i]);
#ifndef RC_NO_DLQ
    uint64_t now = rc_clock_mono_ns(), left_ms = now < deadline ? (deadline - now) / RC_NS_PER_MS : 0;
    rc_dlq_close(s->dlq, (int)(left_ms > RC_DLQ_CLOSE_MIN_MS ? left_ms : RC_DLQ_CLOSE_MIN_MS));
#endif
    rc_store_close(s->persist);
    rc_chash_destroy(s->chash);
    free(s->shards);
    free(s->shard_ptrs);
    free(s->ios);
    if (s->per_ip_ready)
        rc_iplimit_free(&s->per_ip);
    free(s->out_rings);
    free(s->out_wakers);
    free(s->listen_fds);
    free(s->http_fds);
}
