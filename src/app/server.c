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
#include <openssl/crypto.h>
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

bool rc_server_admin_authorized(const rc_server *s, const char *authorization)
{
    static const char prefix[] = "Bearer ";
    const char *tok = s->cfg.admin_token, *got = authorization;
    if (!tok[0] || !got || strncmp(got, prefix, sizeof(prefix) - 1) != 0)
        return false;
    got += sizeof(prefix) - 1;
    size_t n = strlen(tok);
    /* Constant time in the bytes, as the session's admin check
     * (src/net/session.c); the length is not a secret. */
    return strlen(got) == n && CRYPTO_memcmp(got, tok, n) == 0;
}

/* GET /admin/shards: each shard's groups, queue and QPS. POST
 * /admin/shards?count=N (Authorization: Bearer admin_token): change the
 * shard count now, moving groups in order (src/ARCHITECTURE.md §4.1). */
static int admin_shards(rc_server *s, const rc_admin_request *req, struct rc_admin_body *body, const char **ctype)
{
    *ctype = "application/json";
    if (strcmp(req->method, "POST") == 0) {
        if (!s->cfg.admin_token[0]) {
            rc_admin_body_printf(body, "{\"error\":\"set admin_token to change the shard count over HTTP\"}\n");
            return 403;
        }
        if (!rc_server_admin_authorized(s, req->authorization)) {
            rc_admin_body_printf(body, "{\"error\":\"Authorization: Bearer <admin_token> required\"}\n");
            return 401;
        }
        const char *q = strstr(req->query, "count=");
        char *end = NULL;
        unsigned long n = q ? strtoul(q + 6, &end, 10) : 0;
        if (!q || end == q + 6 || (*end && *end != '&') || n > RC_MAX_SHARDS) {
            rc_admin_body_printf(body, "{\"error\":\"give the shard count as ?count=N\"}\n");
            return 400;
        }
        char err[256];
        if (rc_server_resize(s, (uint32_t)n, "admin", err, sizeof(err)) != 0) {
            rc_admin_body_printf(body, "{\"error\":\"%s\"}\n", err);
            return strstr(err, "outside") ? 400 : 409;
        }
    }
    rc_server_shards_json(s, body);
    return 200;
}

static int admin_handler(void *ud, const rc_admin_request *req, struct rc_admin_body *body, const char **ctype)
{
    rc_server *s = ud;
    const char *path = req->path;
    bool ready = atomic_load_explicit(&s->ready, memory_order_acquire);
    if (strncmp(path, "/api/", 5) == 0)
        return rc_api_handle(s, req, body, ctype); /* the Server API (app/api.h) */
    if (strcmp(path, "/admin/shards") == 0) {
        if (!ready) {
            rc_admin_body_printf(body, "recovering\n");
            return 503;
        }
        return admin_shards(s, req, body, ctype);
    }
    if (strcmp(req->method, "POST") == 0) {
        rc_admin_body_printf(body, "POST is served for /admin/shards and /api/ only\n");
        return 405;
    }
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
    rc_admin_body_printf(body, "not found: try /metrics, /healthz, /readyz, /admin/shards or /api/\n");
    return 404;
}

typedef struct recovery_ctx {
    rc_server *s;
    char *err;
    size_t errlen;
} recovery_ctx;

static int adopt_group(void *ud, const rc_persist_group *pg)
{
    recovery_ctx *r = ud;
    uint32_t shard = rc_route_shard(r->s->route, pg->g, pg->g_len);
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

/* Sets up the shards of the first route (1, over `shards` shards). */
static int start_shards(rc_server *s, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < s->route->n; i++) {
        if (rc_server_shard_setup(s, i, err, errlen) != 0)
            return -1;
        rc_shard_set_routing(&s->shards[i], &s->routing, s->shard_ptrs, s->route);
    }
    return 0;
}

/* auth_secret (proto/PROTOCOL.md §6.8): without it every hello is trusted,
 * which an operator must not miss in the log. At start and at each reload
 * that changes it. */
void rc_server_log_auth(const rc_token_keys *k)
{
    if (k->n)
        RC_LOG_INFO("server", "event=auth mode=token secrets=%u alg=" RC_TOKEN_ALG, k->n);
    else
        RC_LOG_WARN("server", "event=auth mode=trusted msg=\"auth_secret is not set: hello trusts the user name "
                              "a client claims; anyone can speak as anyone. Set auth_secret in production\"");
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
        .auth = &s->live.slot[0].auth,
        .max_queue_ms = s->cfg.max_queue_ms,
        .outbound_stall_ms = s->cfg.outbound_stall_ms,
        .pressure = &s->io_pressure,
        .per_ip = &s->per_ip,
        .hello_timeout_ms = s->cfg.hello_timeout_ms,
        .idle_timeout_ms = s->cfg.idle_timeout_ms,
        .allowed_origins = s->cfg.allowed_origins,
        .conn_rate = s->cfg.conn_rate,
        .conn_burst = s->cfg.conn_burst,
        .catchup = strcmp(s->cfg.slow_consumer_policy, "catchup") == 0,
        .history_max = s->cfg.history_max,
    };
    for (uint32_t i = 0; i < s->n_io; i++)
        if (rc_io_init(&s->ios[i], i, s->listen_fds[i], s->http_fds[i], &lim, s->shard_ptrs, s->max_shards,
                       &s->routing, err, errlen) != 0)
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
    s->max_shards = cfg->max_shards;
    s->n_io = cfg->io_threads;
    s->started_ns = rc_clock_mono_ns();
    s->route = rc_route_new(1, cfg->shards, cfg->vnodes);
    if (s->route)
        rc_server_route_stats(s, s->route);
    atomic_store_explicit(&s->routing.cur, s->route, memory_order_relaxed); /* published by starting the threads */
    atomic_store_explicit(&s->n_active, cfg->shards, memory_order_relaxed);
    s->routing.n_io = s->n_io;
    rc_server_live_values(cfg, &s->live.slot[0]);
    if (pthread_mutex_init(&s->scale_lock, NULL) == 0)
        s->scale_lock_ready = true;
    s->shards = calloc(s->max_shards, sizeof(*s->shards));
    s->shard_ptrs = calloc(s->max_shards, sizeof(*s->shard_ptrs));
    s->shard_qps = calloc(s->max_shards, sizeof(*s->shard_qps));
    s->ios = calloc(s->n_io, sizeof(*s->ios));
    rc_ring **rings = s->out_rings = calloc(s->n_io, sizeof(*rings));
    rc_waker **wakers = s->out_wakers = calloc(s->n_io, sizeof(*wakers));
    rc_room **rooms = s->out_rooms = calloc(s->n_io, sizeof(*rooms));
    s->listen_fds = calloc(s->n_io, sizeof(*s->listen_fds));
    s->http_fds = calloc(s->n_io, sizeof(*s->http_fds));
    if (!s->route || !s->scale_lock_ready || !s->shards || !s->shard_ptrs || !s->shard_qps || !s->ios || !rings ||
        !wakers || !rooms || !s->listen_fds || !s->http_fds) {
        snprintf(err, errlen, "out of memory starting the server");
        goto fail;
    }
    for (uint32_t i = 0; i < s->n_io; i++)
        s->ios[i].listen_fd = -1;
    rc_server_log_auth(&s->live.slot[0].auth);
    s->admin = rc_admin_start(cfg->admin_host, cfg->admin_port, admin_handler, s, err, errlen);
    if (!s->admin || listen_all(s, err, errlen) != 0)
        goto fail;
    /* durability=off keeps everything in memory: nothing is stored or
     * recovered, and the dead-letter spool is in memory too. */
    if (strcmp(cfg->durability, "off") != 0) {
        rc_store_options so;
        rc_store_options_default(&so);
        so.block_cache_mb = cfg->block_cache_mb;
        so.tick_log_mb = cfg->tick_log_mb;
        s->persist = rc_store_open(cfg->data_dir, &so, err, errlen);
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
    for (uint32_t i = 0; i < s->max_shards; i++)
        s->shard_ptrs[i] = &s->shards[i];
    if (init_ios(s, err, errlen) != 0)
        goto fail;
    for (uint32_t i = 0; i < s->n_io; i++) {
        s->ios[i].live = &s->live;
        rings[i] = s->ios[i].outbound;
        wakers[i] = &s->ios[i].waker;
        rooms[i] = &s->ios[i].out_room;
    }
    s->outlets = (rc_outlets){ s->n_io, rings, wakers, rooms };
    if (start_shards(s, err, errlen) != 0)
        goto fail;
    if (recover(s, err, errlen) != 0)
        goto fail;
    for (uint32_t i = 0; i < s->route->n; i++) {
        if (rc_shard_start(&s->shards[i]) != 0) {
            snprintf(err, errlen, "cannot start shard thread: %s", strerror(errno));
            goto fail; /* threads already started are left to process exit */
        }
        s->shards[i].started = true;
    }
    for (uint32_t i = 0; i < s->n_io; i++)
        if (rc_io_start(&s->ios[i]) != 0) {
            snprintf(err, errlen, "cannot start io thread: %s", strerror(errno));
            goto fail;
        }
    if (rc_server_scaler_start(s, err, errlen) != 0)
        goto fail;
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
    rc_server_scaler_stop(s); /* a move under way finishes first; none starts after */
    uint64_t deadline = rc_clock_mono_ns() + (uint64_t)s->cfg.shutdown_timeout_ms * RC_NS_PER_MS;
    for (uint32_t i = 0; i < s->n_io; i++)
        rc_io_set_phase(&s->ios[i], RC_IO_STOP_INPUT, deadline);
    for (uint32_t i = 0; i < s->n_io; i++)
        /* acquire: pairs with the io thread's release after its last push. */
        while (!atomic_load_explicit(&s->ios[i].input_stopped, memory_order_acquire) && rc_clock_mono_ns() < deadline)
            usleep(RC_STOP_POLL_US);
    for (uint32_t i = 0; i < s->route->n; i++) {
        rc_job *stop = rc_job_new(RC_JOB_STOP, 0, (rc_str){ 0 }, NULL);
        while (stop && rc_shard_submit(&s->shards[i], &stop, 1) == 0)
            usleep(RC_STOP_POLL_US);
    }
    for (uint32_t i = 0; i < s->route->n; i++) {
        rc_shard_join(&s->shards[i]);
        s->shards[i].started = false;
    }
    for (uint32_t i = 0; i < s->n_io; i++)
        rc_io_set_phase(&s->ios[i], RC_IO_FINAL, deadline);
    for (uint32_t i = 0; i < s->n_io; i++)
        rc_io_join(&s->ios[i]);
    rc_admin_stop(s->admin);
    rc_api_close(&s->api);
    for (uint32_t i = 0; i < s->max_shards; i++)
        if (s->shards[i].inbound)
            rc_shard_destroy(&s->shards[i]);
    for (uint32_t i = 0; i < s->n_io; i++)
        rc_io_destroy(&s->ios[i]);
#ifndef RC_NO_DLQ
    uint64_t now = rc_clock_mono_ns(), left_ms = now < deadline ? (deadline - now) / RC_NS_PER_MS : 0;
    rc_dlq_close(s->dlq, (int)(left_ms > RC_DLQ_CLOSE_MIN_MS ? left_ms : RC_DLQ_CLOSE_MIN_MS));
#endif
    rc_store_close(s->persist);
    rc_route_free(s->route);
    if (s->scale_lock_ready)
        pthread_mutex_destroy(&s->scale_lock);
    free(s->shard_qps);
    free(s->shards);
    free(s->shard_ptrs);
    free(s->ios);
    if (s->per_ip_ready)
        rc_iplimit_free(&s->per_ip);
    free(s->out_rings);
    free(s->out_wakers);
    free(s->out_rooms);
    free(s->listen_fds);
    free(s->http_fds);
}
