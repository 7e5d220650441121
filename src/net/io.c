/*
 * The event loop of one io thread: its connections, from accept to close
 * (src/ARCHITECTURE.md §3). What it is built on, one concept per file:
 *   net/uring.c    io_uring set-up, SQEs, receive buffers, user_data packing
 *   net/session.c  the protocol: framing, dispatch, replies (no sockets)
 *   net/outq.c     a connection's output: shared frames sent by iovec
 *   net/handoff.c  requests to shards, and the backpressure that holds a
 *                  connection's reading
 *   net/letters.c  the io side's dead letters
 * (net/conn.h is the connection they share.) What stays here: connections
 * and their lifetimes (accept, hold, kill, reap); their output, the pause
 * mark and the slow-consumer decision (conn_congest, check_stalls,
 * rc_io_conn_over_limit); and the loop turn itself (io_main): drain
 * deliveries from shards, push the jobs the turn produced, start sends,
 * then one submit-and-wait.
 *
 * Every submission carries its operation and connection in user_data
 * (rc_ud_make: op, slot, generation), so a completion goes straight to its
 * work and a late one for a reused slot is recognised by its generation.
 * Reads use one multishot recv per connection on the provided-buffer ring:
 * the bytes are parsed in place (only a partial frame's tail is copied) and
 * the buffer goes back at once.
 */
#define _GNU_SOURCE
#include "net/io.h"
#include "net/conn.h"
#include "net/outq.h"
#include "net/session.h"
#include "net/ws.h"

#include "core/log.h"
#include "core/stats.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RC_IO_QUEUE_DEPTH 4096u      /* SQ entries; CQ is twice that */
#define RC_IO_LISTEN_BACKLOG 4096
#define RC_IO_BUF_SHRINK 65536u      /* free idle buffers larger than this */
#define RC_IO_OUT_BURST 64u          /* outbatches popped at once */
#define RC_IO_FINAL_TICK_MS 50u      /* wake-up period while closing */
#define RC_IO_SUBMIT_ERROR_PAUSE_NS 1000000L /* after a submit that failed for good, before the next turn */
#define DRAIN_ALL UINT32_MAX         /* drain_outbound: everything, pause or not (shutdown) */

enum op { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_WAKE, OP_CANCEL, OP_ACCEPT_HTTP };


static _Atomic uint64_t next_sid = 1;

static uint64_t ud_make(enum op op, const rc_conn *c)
{
    return c ? rc_ud_make(op, c->slot, c->gen) : rc_ud_make(op, 0, 0);
}

/* ------------------------------------------------------------------ */
/* Set-up                                                               */
/* ------------------------------------------------------------------ */

int rc_io_listen(const char *host, uint16_t *port, char *err, size_t errlen)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICHOST };
    struct addrinfo *ai = NULL;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", *port);
    int r = getaddrinfo(host, portstr, &hints, &ai);
    if (r != 0) {
        snprintf(err, errlen, "bad listen address %s: %s", host, gai_strerror(r));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, RC_IO_LISTEN_BACKLOG) != 0) {
        snprintf(err, errlen, "cannot listen on %s port %u: %s", host, *port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

int rc_io_init(rc_io *io, uint32_t idx, int listen_fd, int http_fd, const rc_io_limits *lim, rc_shard **shards,
               uint32_t n_shards, rc_routing *routing, char *err, size_t errlen)
{
    memset(io, 0, sizeof(*io));
    io->idx = idx;
    io->listen_fd = listen_fd;
    io->http_fd = http_fd;
    io->lim = *lim;
    io->shards = shards;
    io->n_shards = n_shards;
    io->routing = routing;
    io->route = rc_routing_cur(routing);
    io->n_slots = lim->max_connections;
    rc_decoder_init_requests(&io->dec);
    rc_buf_init(&io->scratch);
    io->waker.efd = -1;
    if (rc_uring_init(&io->uring, RC_IO_QUEUE_DEPTH, lim->recv_buffers, lim->recv_buffer_size, err, errlen) != 0)
        return -1;
    io->outbound = rc_ring_create(RC_IO_OUT_RING, RC_RING_MPSC);
    io->conns = calloc(io->n_slots, sizeof(*io->conns));
    io->gens = calloc(io->n_slots, sizeof(*io->gens));
    io->free_slots = malloc(io->n_slots * sizeof(*io->free_slots));
    io->dirty = malloc(io->n_slots * sizeof(*io->dirty));
    io->reap = malloc(io->n_slots * sizeof(*io->reap));
    io->pending = calloc(n_shards, sizeof(*io->pending));
    io->resume = malloc(2 * (size_t)io->n_slots * sizeof(*io->resume));
    io->congested = malloc(io->n_slots * sizeof(*io->congested));
    io->pressured = malloc(io->n_slots * sizeof(*io->pressured));
    if (!io->lim.pressure)
        io->lim.pressure = &io->own_pressure;
    io->pause_bytes = lim->outbound_high_bytes / RC_IO_PAUSE_DIVISOR;
    io->slim = (rc_session_limits){ .max_frame = lim->max_frame, .max_groups = lim->max_groups_per_session,
                                    .conn_rate = lim->conn_rate, .conn_burst = lim->conn_burst,
                                    .admin_token = lim->admin_token, .auth = &io->auth };
    if (lim->auth)
        io->auth = *lim->auth;
    io->admit_ns = (uint64_t)lim->max_queue_ms * RC_NS_PER_MS / RC_IO_ADMIT_DIVISOR;
    if (!io->outbound || !io->conns || !io->gens || !io->free_slots || !io->dirty || !io->reap || !io->pending ||
        !io->resume || !io->congested || !io->pressured || rc_waker_init(&io->waker) != 0) {
        snprintf(err, errlen, "out of memory setting up io thread %u", idx);
        return -1;
    }
    for (uint32_t s = 0; s < n_shards; s++) {
        rc_jobq *q = &io->pending[s];
        q->jobs = malloc(RC_SHARD_BATCH * sizeof(*q->jobs));
        q->conns = malloc(RC_SHARD_BATCH * sizeof(*q->conns));
        q->cap = RC_SHARD_BATCH;
        if (!q->jobs || !q->conns) {
            snprintf(err, errlen, "out of memory setting up io thread %u", idx);
            return -1;
        }
    }
    for (uint32_t i = 0; i < io->n_slots; i++) {
        io->free_slots[i] = io->n_slots - 1 - i;
        io->gens[i] = 1; /* generation 0 is never live: id 0 names no connection (a job without owner) */
    }
    io->n_free = io->n_slots;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Output                                                               */
/* ------------------------------------------------------------------ */

static void conn_mark_dirty(rc_io *io, rc_conn *c)
{
    if (!c->dirty) {
        c->dirty = true;
        io->dirty[io->n_dirty++] = c->slot;
    }
}

void rc_io_conn_kill(rc_io *io, rc_conn *c);


/* ---- the pause mark ---- */


/* c's output passed the pause mark: until it drains, or until
 * outbound_stall_ms say it does not (check_stalls), no io thread reads
 * further sends (rc_handoff_hold_sender), so the flood slows at its source while
 * every reader keeps being served. A connection already known to be slow
 * no longer holds anyone up. */
static void conn_congest(rc_io *io, rc_conn *c)
{
    if (c->congested || c->slow || c->state == CS_DEAD)
        return;
    c->congested = true;
    c->congested_ns = rc_loop_clock_now(&io->clock);
    io->n_congested++;
    /* relaxed: a count every io thread reads to decide whether to read
     * senders; nothing else is published through it. */
    atomic_fetch_add_explicit(io->lim.pressure, 1, memory_order_relaxed);
    RC_STAT_ADD(io->stats.congested, 1);
    if (!c->in_cong_list) {
        c->in_cong_list = true;
        io->congested[io->n_congested_list++] = rc_conn_id_make(io->idx, c->slot, c->gen);
    }
}

static void conn_uncongest(rc_io *io, rc_conn *c)
{
    if (!c->congested)
        return;
    c->congested = false;
    io->n_congested--;
    atomic_fetch_sub_explicit(io->lim.pressure, 1, memory_order_relaxed); /* relaxed: see conn_congest */
    RC_STAT_ADD(io->stats.congested, (uint64_t)-1);
}

/* The socket took bytes: a connection back under the pause mark keeps up
 * again (and, if it was slow, has caught up: its letter count starts over). */
static void conn_drained(rc_io *io, rc_conn *c)
{
    if (rc_conn_queued(c) > io->pause_bytes)
        return;
    conn_uncongest(io, c);
    c->slow = false;
    c->lettered = 0;
    rc_handoff_wake(io, c); /* held for its own output: read again */
    if (c->behind)
        rc_catchup_pump(io, c);
}

/* The one place that decides a connection is a slow consumer: it stayed
 * over the pause mark for outbound_stall_ms, so its socket does not drain
 * as fast as its groups talk. From then on it no longer pauses deliveries
 * to others; what passes outbound_high_bytes becomes slow_consumer letters
 * (deliver_msg), and past outbound_kill_bytes it is closed. */
static void check_stalls(rc_io *io)
{
    uint64_t now = rc_loop_clock_now(&io->clock);
    uint64_t stall_ns = (uint64_t)io->lim.outbound_stall_ms * RC_NS_PER_MS;
    uint32_t keep = 0;
    for (uint32_t i = 0; i < io->n_congested_list; i++) {
        rc_conn *c = rc_io_conn(io, io->congested[i]);
        if (!c)
            continue; /* closed since: its slot may hold another connection */
        if (c->congested && now - c->congested_ns > stall_ns) {
            conn_uncongest(io, c);
            c->slow = true;
            RC_STAT_ADD(io->stats.slow_marked, 1);
            RC_LOG_WARN("io", "event=slow_consumer sid=%llu queued=%zu stalled_ms=%llu",
                    (unsigned long long)c->sess.sid, rc_conn_queued(c), (unsigned long long)((now - c->congested_ns) / RC_NS_PER_MS));
        }
        if (c->congested)
            io->congested[keep++] = io->congested[i];
        else
            c->in_cong_list = false;
    }
    io->n_congested_list = keep;
}

/* Appends one complete frame to the connection's output. */
bool rc_io_conn_over_limit(rc_io *io, rc_conn *c, size_t extra)
{
    if (rc_conn_queued(c) + c->lettered + extra <= io->lim.outbound_kill_bytes)
        return false;
    RC_STAT_ADD(io->stats.slow_kills, 1);
    RC_LOG_WARN("io", "event=slow_consumer_closed sid=%llu queued=%zu lettered=%llu limit=%llu",
                (unsigned long long)c->sess.sid, rc_conn_queued(c), (unsigned long long)c->lettered,
                (unsigned long long)io->lim.outbound_kill_bytes);
    rc_io_conn_kill(io, c);
    return true;
}

/* Room for n more bytes of output (rc_io_conn_over_limit closes it otherwise). */
static bool conn_room(rc_io *io, rc_conn *c, size_t n)
{
    return c->state != CS_DEAD && !rc_io_conn_over_limit(io, c, n);
}

/* Output was queued (r from rc_outq_push*: -1 is out of memory). */
static void conn_queued_more(rc_io *io, rc_conn *c, int r)
{
    if (r < 0) {
        RC_LOG_ERROR("io", "event=out_nomem sid=%llu", (unsigned long long)c->sess.sid);
        rc_io_conn_kill(io, c);
        return;
    }
    RC_STAT_ADD(io->stats.frames_out, 1);
    if (rc_conn_queued(c) > io->pause_bytes)
        conn_congest(io, c);
    conn_mark_dirty(io, c);
}

/* Queues one shared frame on the connection's output. True when the queue
 * took over the caller's reference (a large frame, sent from where it is);
 * false when it copied the frame or dropped it, and the reference is still
 * the caller's. A WebSocket connection gets it as a message of its own. */
static void conn_ws_frame(rc_io *io, rc_conn *c, const uint8_t *p, size_t n);

static bool conn_push(rc_io *io, rc_conn *c, rc_frame *f)
{
    if (c->ws) {
        conn_ws_frame(io, c, f->data, f->len);
        return false;
    }
    if (!conn_room(io, c, f->len))
        return false;
    int r = rc_outq_push(&c->outq, f);
    conn_queued_more(io, c, r);
    return r == 0;
}

/* Queues a copy of one complete frame built by the io thread itself. */
void rc_io_conn_write(rc_io *io, rc_conn *c, const uint8_t *p, size_t n)
{
    if (c->ws)
        conn_ws_frame(io, c, p, n);
    else
        rc_io_conn_write_raw(io, c, p, n);
}

void rc_io_conn_write_raw(rc_io *io, rc_conn *c, const uint8_t *p, size_t n)
{
    rc_io_conn_write_two(io, c, p, n, NULL, 0);
}

void rc_io_conn_write_two(rc_io *io, rc_conn *c, const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    if (!conn_room(io, c, na + nb))
        return;
    int r = rc_outq_push_copy(&c->outq, a, na);
    if (r == 0 && nb)
        r = rc_outq_push_copy(&c->outq, b, nb);
    conn_queued_more(io, c, r);
}

/* ---- the session's way out (net/session.h) over this connection ---- */

typedef struct conn_ctx {
    rc_io *io;
    rc_conn *c;
} conn_ctx;

static void conn_drain(rc_io *io, rc_conn *c);

static void out_send(void *self, const uint8_t *p, size_t n)
{
    conn_ctx *x = self;
    rc_io_conn_write(x->io, x->c, p, n);
}

/* A send is routed, then its sender may be held (rc_handoff_hold_sender). */
static void out_route(void *self, rc_job_kind kind, rc_str from, const rc_msg *m)
{
    conn_ctx *x = self;
    if (kind == RC_JOB_LEAVE && x->c->behind)
        rc_catchup_forget(x->io, x->c, m->g);
    rc_handoff_route(x->io, x->c, kind, from, m);
    if (kind == RC_JOB_SEND)
        rc_handoff_hold_sender(x->io, x->c);
}

/* Before each frame: a connection whose own answers pile up (output over
 * the pause mark, RC_IO_HEAVY_MAX heavy requests out) is not read further
 * until they go (rc_handoff_wake), so pipelining requests without reading
 * cannot make the server build answers without bound. */
bool rc_io_conn_reading(rc_io *io, rc_conn *c)
{
    if (c->state != CS_OPEN || c->held)
        return false;
    if (!rc_conn_answers_pending(io, c))
        return true;
    RC_STAT_ADD(io->stats.reply_holds, 1);
    rc_io_conn_hold(io, c);
    return false;
}

static bool out_reading(void *self)
{
    conn_ctx *x = self;
    return rc_io_conn_reading(x->io, x->c);
}

static void out_close(void *self)
{
    conn_ctx *x = self;
    conn_drain(x->io, x->c);
}

static bool out_stopping(void *self)
{
    conn_ctx *x = self;
    return atomic_load_explicit(&x->io->phase, memory_order_relaxed) != RC_IO_RUNNING;
}

/* ---- a WebSocket connection's way out (net/ws.h) over this connection ---- */

static void ws_out_write(void *self, const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    conn_ctx *x = self;
    rc_io_conn_write_two(x->io, x->c, a, na, b, nb);
}

static void ws_out_message(void *self, const uint8_t *map, size_t len)
{
    conn_ctx *x = self;
    rc_io_conn_message(x->io, x->c, map, len);
}

static void ws_out_error(void *self, rc_err code, const char *text)
{
    conn_ctx *x = self;
    rc_io_conn_error(x->io, x->c, NULL, code, text);
}

static void ws_out_close(void *self)
{
    conn_ctx *x = self;
    rc_io_conn_close_after_output(x->io, x->c);
}

static bool ws_out_dead(void *self)
{
    conn_ctx *x = self;
    return x->c->state == CS_DEAD;
}

#define WS_ENV(io, c)                                                                                       \
    conn_ctx wctx_ = { (io), (c) };                                                                         \
    rc_ws_out wout_ = { &wctx_, ws_out_write, ws_out_message, ws_out_error, out_reading, ws_out_close,      \
                        ws_out_dead };                                                                      \
    rc_ws_env wenv = { (io)->lim.max_frame, (io)->lim.allowed_origins, &wout_, &(io)->stats.ws }

static void conn_ws_frame(rc_io *io, rc_conn *c, const uint8_t *p, size_t n)
{
    WS_ENV(io, c);
    rc_ws_write_frame(c->ws, &wenv, p, n);
}

#define CONN_ENV(io, c)                                                                                     \
    conn_ctx ctx_ = { (io), (c) };                                                                          \
    rc_session_out out_ = { &ctx_, out_send, out_route, out_reading, out_close, out_stopping, NULL };       \
    rc_session_env env = { &(io)->slim, &out_, &(io)->dec, &(io)->scratch, &(io)->stats.session }

/* Encodes and queues a reply built by the io thread itself. */
static void conn_reply(rc_io *io, rc_conn *c, const rc_msg *m)
{
    CONN_ENV(io, c);
    rc_session_reply(&env, m);
}

void rc_io_conn_error(rc_io *io, rc_conn *c, const rc_msg *req, rc_err code, const char *text)
{
    CONN_ENV(io, c);
    rc_session_error(&env, req, code, text);
}

/* Input for the session: whole frames are handled, the rest is returned. */
/* A whole frame arrived: the client is alive (idle_timeout_ms). */
static void conn_heard(rc_io *io, rc_conn *c)
{
    c->heard_ns = rc_loop_clock_now(&io->clock);
    c->pinged = false;
}

void rc_io_conn_message(rc_io *io, rc_conn *c, const uint8_t *map, size_t len)
{
    CONN_ENV(io, c);
    conn_heard(io, c);
    rc_session_frame(&c->sess, &env, map, len);
}

static size_t conn_session_input(rc_io *io, rc_conn *c, const uint8_t *p, size_t n)
{
    if (c->ws) {
        WS_ENV(io, c);
        size_t used = rc_ws_input(c->ws, &wenv, p, n);
        return c->state == CS_OPEN ? used : n;
    }
    CONN_ENV(io, c);
    size_t used = rc_session_input(&c->sess, &env, p, n);
    if (used)
        conn_heard(io, c);
    return c->state == CS_OPEN ? used : n; /* a closing connection reads nothing more */
}


static void submit_send(rc_io *io, rc_conn *c)
{
    struct msghdr *msg = rc_outq_prepare(&c->outq);
    if (!msg) {
        RC_LOG_ERROR("io", "event=out_nomem sid=%llu", (unsigned long long)c->sess.sid);
        rc_io_conn_kill(io, c);
        return;
    }
    struct io_uring_sqe *sqe = rc_uring_sqe(&io->uring);
    io_uring_prep_sendmsg(sqe, c->fd, msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud_make(OP_SEND, c));
    c->send_inflight = true;
    RC_STAT_ADD(io->stats.sends, 1);
}

static void buf_shrink(rc_buf *b)
{
    if (b->len == 0 && b->cap > RC_IO_BUF_SHRINK)
        rc_buf_free(b);
}

/* Starts one send per dirty connection that has none in flight. */
static void flush_sends(rc_io *io)
{
    uint32_t keep = 0;
    for (uint32_t i = 0; i < io->n_dirty; i++) {
        rc_conn *c = io->conns[io->dirty[i]];
        if (!c)
            continue;
        if (c->send_inflight) {
            io->dirty[keep++] = c->slot; /* try again after the current send completes */
            continue;
        }
        c->dirty = false;
        if (c->state == CS_DEAD || rc_outq_empty(&c->outq))
            continue;
        submit_send(io, c);
    }
    io->n_dirty = keep;
    for (uint32_t i = 0; i < keep; i++)
        io->conns[io->dirty[i]]->dirty = true;
}

/* ------------------------------------------------------------------ */
/* Connections                                                          */
/* ------------------------------------------------------------------ */

static void arm_recv(rc_io *io, rc_conn *c)
{
    struct io_uring_sqe *sqe = rc_uring_sqe(&io->uring);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = RC_URING_BGID;
    io_uring_sqe_set_data64(sqe, ud_make(OP_RECV, c));
    c->recv_armed = true;
}

static void conn_free(rc_io *io, rc_conn *c)
{
    close(c->fd);
    if (c->ip_counted)
        rc_iplimit_release(io->lim.per_ip, &c->ip);
    rc_buf_free(&c->in);
    rc_outq_free(&c->outq);
    rc_session_free(&c->sess);
    rc_ws_free(c->ws);
    free(c->owed);
    rc_catchup_free(io, c);
    io->conns[c->slot] = NULL;
    io->gens[c->slot]++;
    io->free_slots[io->n_free++] = c->slot;
    RC_STAT_ADD(io->stats.closed, 1);
    RC_STAT_ADD(io->stats.open, (uint64_t)-1);
    free(c);
}

/* A dead connection is freed once no operation of it is in flight; freeing
 * waits for the end of the loop turn so no caller up the stack holds a
 * dangling pointer. */
static void conn_reap_later(rc_io *io, rc_conn *c)
{
    if (c->state != CS_DEAD || c->recv_armed || c->send_inflight || c->reaping)
        return;
    c->reaping = true;
    io->reap[io->n_reap++] = c->slot;
}

static void reap_conns(rc_io *io)
{
    for (uint32_t i = 0; i < io->n_reap; i++)
        conn_free(io, io->conns[io->reap[i]]);
    io->n_reap = 0;
}


/* Tells the shards of every group the session joined that it is gone. */
static void conn_detach_all(rc_io *io, rc_conn *c)
{
    rc_conn_id id = rc_conn_id_make(io->idx, c->slot, c->gen);
    const rc_strmap *groups = &c->sess.groups;
    for (uint32_t i = 0; i < groups->cap; i++) {
        if (!groups->slots[i].hash)
            continue;
        rc_msg m = { .g = { groups->slots[i].key, groups->slots[i].len } };
        rc_job *j = rc_job_new(RC_JOB_DETACH, id, (rc_str){ c->sess.user, c->sess.user_len }, &m); /* the user: presence */
        if (!j) {
            RC_LOG_ERROR("io", "event=detach_nomem sid=%llu", (unsigned long long)c->sess.sid);
            continue; /* deliveries to the dead slot are dropped by generation */
        }
        rc_handoff_queue(io, j, rc_handoff_shard_of(io, m.g.ptr, m.g.len), NULL);
    }
}

/* Stops the connection now: no more input or output. Freed once the
 * kernel has returned every operation in flight. */
void rc_io_conn_kill(rc_io *io, rc_conn *c)
{
    if (c->state == CS_DEAD)
        return;
    c->state = CS_DEAD;
    conn_uncongest(io, c);
    if (c->held) {
        c->held = false;
        RC_STAT_ADD(io->stats.held_conns, (uint64_t)-1);
    }
    shutdown(c->fd, SHUT_RDWR);
    conn_detach_all(io, c);
    conn_reap_later(io, c);
}

/* Stops reading; the connection closes when its output has been sent. */
static void conn_drain(rc_io *io, rc_conn *c)
{
    if (c->state != CS_OPEN)
        return;
    if (c->ws) {
        WS_ENV(io, c);
        rc_ws_goodbye(c->ws, &wenv,
                      atomic_load_explicit(&io->phase, memory_order_relaxed) == RC_IO_RUNNING ? 1000 : 1001, "closing");
    }
    c->state = CS_DRAINING;
    if (rc_outq_empty(&c->outq) && !c->send_inflight)
        rc_io_conn_kill(io, c);
}

void rc_io_conn_close_after_output(rc_io *io, rc_conn *c)
{
    conn_drain(io, c);
}

/* A connection refused at accept: E_LIMIT says why, then it closes. The
 * socket is fresh, so a small blocking-free write fits its buffer. */
static void conn_refuse(rc_io *io, int fd, const char *why)
{
    rc_buf b;
    rc_buf_init(&b);
    if (rc_encode_err(&b, false, 0, RC_E_LIMIT, why) == 0) {
        ssize_t w = send(fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
    }
    rc_buf_free(&b);
    close(fd);
    RC_STAT_ADD(io->stats.rejected, 1);
}

static void conn_accept(rc_io *io, int fd, bool http)
{
    if (io->n_free == 0 || atomic_load_explicit(&io->phase, memory_order_relaxed) != RC_IO_RUNNING) {
        conn_refuse(io, fd, "the server is at max_connections; try again later");
        return;
    }
    rc_ip ip;
    bool counted = io->lim.per_ip && rc_ip_of_peer(fd, &ip);
    if (counted && !rc_iplimit_take(io->lim.per_ip, &ip)) {
        RC_STAT_ADD(io->stats.rejected_per_ip, 1);
        conn_refuse(io, fd, "too many connections from this address (max_connections_per_ip); close some first");
        return;
    }
    rc_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        if (counted)
            rc_iplimit_release(io->lim.per_ip, &ip);
        close(fd);
        RC_STAT_ADD(io->stats.rejected, 1);
        return;
    }
    if (http && !(c->ws = rc_ws_new())) {
        if (counted)
            rc_iplimit_release(io->lim.per_ip, &ip);
        free(c);
        close(fd);
        RC_STAT_ADD(io->stats.rejected, 1);
        return;
    }
    c->ip_counted = counted;
    if (counted)
        c->ip = ip;
    c->opened_ns = c->heard_ns = rc_loop_clock_now(&io->clock);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    c->slot = io->free_slots[--io->n_free];
    c->gen = io->gens[c->slot];
    c->state = CS_OPEN;
    rc_session_init(&c->sess, atomic_fetch_add_explicit(&next_sid, 1, memory_order_relaxed));
    c->outq.copy_max = RC_IO_COPY_MAX;
    io->conns[c->slot] = c;
    RC_STAT_ADD(io->stats.accepted, 1);
    RC_STAT_ADD(io->stats.open, 1);
    arm_recv(io, c);
}

/* ------------------------------------------------------------------ */
/* Requests                                                             */
/* ------------------------------------------------------------------ */



/* Parses what waits in c->in (a partial frame's tail, or input that
 * arrived while the connection was held). */
static void conn_parse_in(rc_io *io, rc_conn *c)
{
    size_t used = conn_session_input(io, c, c->in.data, c->in.len);
    memmove(c->in.data, c->in.data + used, c->in.len - used);
    c->in.len -= used;
    buf_shrink(&c->in);
}

/* Bytes from the socket: parsed in place from the receive buffer when
 * nothing waits before them, else appended to c->in. A held connection
 * only keeps them (its receive is being cancelled). */
static void conn_input(rc_io *io, rc_conn *c, const uint8_t *p, size_t n)
{
    RC_STAT_ADD(io->stats.bytes_in, n);
    if (c->state != CS_OPEN)
        return;
    if (c->in.len == 0 && !c->held) {
        size_t used = conn_session_input(io, c, p, n);
        if (used < n && rc_buf_append(&c->in, p + used, n - used) != 0)
            rc_io_conn_kill(io, c);
        return;
    }
    if (rc_buf_append(&c->in, p, n) != 0) {
        rc_io_conn_kill(io, c);
        return;
    }
    if (!c->held)
        conn_parse_in(io, c);
}

/* ------------------------------------------------------------------ */
/* Shards                                                               */
/* ------------------------------------------------------------------ */





/* Stops reading c until its queued jobs are in their rings: TCP then
 * slows that sender alone. The multishot receive is cancelled; bytes that
 * arrive before the cancel lands wait in c->in, unparsed. */
void rc_io_conn_hold(rc_io *io, rc_conn *c)
{
    if (c->held || c->state == CS_DEAD)
        return;
    c->held = true;
    RC_STAT_ADD(io->stats.holds, 1);
    RC_STAT_ADD(io->stats.held_conns, 1);
    if (c->recv_armed) {
        struct io_uring_sqe *sqe = rc_uring_sqe(&io->uring);
        io_uring_prep_cancel64(sqe, ud_make(OP_RECV, c), 0);
        io_uring_sqe_set_data64(sqe, ud_make(OP_CANCEL, NULL));
    }
}




static void conn_parse_in(rc_io *io, rc_conn *c);

/* Reads c again: first what arrived while it was held, then the socket. */
void rc_io_conn_unhold(rc_io *io, rc_conn *c)
{
    c->held = false;
    RC_STAT_ADD(io->stats.held_conns, (uint64_t)-1);
    if (c->in.len)
        conn_parse_in(io, c);
    if (!c->held && !c->recv_armed && c->state == CS_OPEN)
        arm_recv(io, c);
}




/* ---- messages owed to a connection (slow_consumer letters to rc_io_redeliver) ---- */





/* One `msg` (or reply) frame for a live connection: queued, or past
 * outbound_high_bytes a slow_consumer letter (never for history the session
 * asked for). */
static bool deliver_msg(rc_io *io, rc_conn *c, rc_frame *f, uint32_t flags)
{
    if (!(flags & RC_DELIVERY_SYNC)) {
        if (io->lim.catchup) {
            if ((c->behind || c->slow) && rc_catchup_skip(io, c, f))
                return true; /* its reference went into the catch-up hold */
        } else if (rc_io_past_high(io, c) && rc_io_letter_delivery(io, c, f->data, f->len)) {
            return false;
        }
    }
    RC_STAT_ADD(io->stats.deliveries, 1);
    return conn_push(io, c, f); /* a large frame takes the delivery's reference with it */
}


/* The connection an id names, or NULL when it closed (or its slot was
 * reused since). */
rc_conn *rc_io_conn(rc_io *io, rc_conn_id id)
{
    uint32_t slot = rc_conn_slot(id);
    rc_conn *c = slot < io->n_slots ? io->conns[slot] : NULL;
    return c && c->gen == rc_conn_gen(id) && c->state != CS_DEAD ? c : NULL;
}

/* One delivery; true when its reference went with the frame into a
 * connection's output (the caller drops the others). */
static bool deliver_one(rc_io *io, rc_frame *f, const rc_delivery *d)
{
    if (f->kind == RC_FRAME_VOID)
        return false;
    rc_conn *c = rc_io_conn(io, d->conn);
    if (!c) {
        if (f->kind != RC_FRAME_REDELIVER && f->kind != RC_FRAME_ANSWERED && f->kind != RC_FRAME_CAUGHT_UP) /* a closed subscriber owes nothing: filtered */
            RC_STAT_ADD(io->stats.dropped_closed, 1);
    } else if (f->kind == RC_FRAME_ANSWERED) {
        rc_handoff_answered(io, c);
    } else if (f->kind == RC_FRAME_JOIN_REFUSED) {
        rc_session_forget(&c->sess, (rc_str){ (const char *)f->data, f->len });
    } else if (f->kind == RC_FRAME_REDELIVER) {
        rc_io_redeliver(io, c, f);
    } else if (f->kind == RC_FRAME_CAUGHT_UP) {
        rc_catchup_done(io, c, f);
    } else {
        return deliver_msg(io, c, f, d->flags);
    }
    return false;
}

/* Queues one batch's deliveries. A queued delivery's reference travels
 * with the frame into the connection's output (dropped once sent); of
 * consecutive deliveries of one frame (a message's recipients on this
 * thread), the ones not queued drop theirs with one atomic operation. */
static void deliver_batch(rc_io *io, rc_outbatch *b)
{
    uint32_t i = 0;
    while (i < b->n) {
        rc_frame *f = b->d[i].frame;
        uint32_t k = i + 1, kept = 0;
        while (k < b->n && b->d[k].frame == f)
            k++;
        /* The next frame was written on the shard's core: its lines are
         * fetched while this one's recipients get theirs. */
        if (k < b->n) {
            uintptr_t next = (uintptr_t)b->d[k].frame;
            for (uintptr_t off = 0; off < RC_IO_FRAME_PREFETCH; off += 64)
                __builtin_prefetch((const void *)(next + off)); /* a hint: never faults */
        }
        for (uint32_t x = i; x < k; x++)
            kept += deliver_one(io, f, &b->d[x]);
        if (k - i > kept)
            rc_frame_unref_n(f, k - i - kept);
        i = k;
    }
    rc_outbatch_recycle(b);
}

/* Copies up to `max` bursts of outbatches into connection output. A loop
 * turn takes one burst, so it ends (and starts its sends) even while shards
 * keep producing; shutdown takes everything. Deliveries never wait here:
 * the pressure that a reader over the pause mark creates stops senders
 * instead (rc_handoff_hold_sender). */
static void drain_outbound(rc_io *io, uint32_t max)
{
    rc_outbatch *bs[RC_IO_OUT_BURST];
    io->in_drain = true;
    for (uint32_t round = 0; round < max; round++) {
        uint32_t n = rc_ring_dequeue_burst(io->outbound, (void **)bs, RC_IO_OUT_BURST);
        if (n == 0)
            break;
        rc_room_taken(&io->out_room); /* a shard waiting for room may go on */
        for (uint32_t i = 0; i < n; i++)
            deliver_batch(io, bs[i]);
    }
    io->in_drain = false;
}

/* ------------------------------------------------------------------ */
/* Completions                                                          */
/* ------------------------------------------------------------------ */

static void on_recv(rc_io *io, rc_conn *c, const struct io_uring_cqe *cqe)
{
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        if (cqe->res > 0)
            conn_input(io, c, rc_uring_buf(&io->uring, bid), (size_t)cqe->res);
        rc_uring_recycle(&io->uring, bid);
    }
    if (!more)
        c->recv_armed = false;
    if (cqe->res == -ENOBUFS) {
        RC_STAT_ADD(io->stats.enobufs, 1);
    } else if (cqe->res == -ECANCELED) {
        /* rc_io_conn_hold cancelled it; rc_handoff_resume arms it again */
    } else if (cqe->res <= 0) {
        rc_io_conn_kill(io, c); /* EOF or error */
    }
    if (c->state == CS_DEAD) {
        conn_reap_later(io, c);
        return;
    }
    if (!c->recv_armed && !c->held && c->state == CS_OPEN)
        arm_recv(io, c);
}

static void on_send(rc_io *io, rc_conn *c, int res)
{
    c->send_inflight = false;
    if (res <= 0) {
        rc_io_conn_kill(io, c); /* an error, or a socket that takes nothing */
    } else {
        RC_STAT_ADD(io->stats.bytes_out, (uint64_t)res);
        bool whole = rc_outq_sent(&c->outq, (size_t)res);
        conn_drained(io, c);
        if (!whole && c->state != CS_DEAD) {
            submit_send(io, c); /* short send: finish it first */
            return;
        }
        if (!rc_outq_empty(&c->outq))
            conn_mark_dirty(io, c);
        else if (c->state == CS_DRAINING)
            rc_io_conn_kill(io, c);
    }
    conn_reap_later(io, c);
}

static void arm_accept(rc_io *io, bool http)
{
    int fd = http ? io->http_fd : io->listen_fd;
    if (fd < 0)
        return;
    struct io_uring_sqe *sqe = rc_uring_sqe(&io->uring);
    io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud_make(http ? OP_ACCEPT_HTTP : OP_ACCEPT, NULL));
}

static void arm_wake(rc_io *io)
{
    struct io_uring_sqe *sqe = rc_uring_sqe(&io->uring);
    io_uring_prep_read(sqe, io->waker.efd, &io->wake_val, sizeof(io->wake_val), 0);
    io_uring_sqe_set_data64(sqe, ud_make(OP_WAKE, NULL));
}

static void handle_cqe(rc_io *io, const struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    enum op op = (enum op)(ud >> 56);
    uint32_t slot = (uint32_t)(ud >> 32) & (RC_MAX_CONN_SLOTS - 1), gen = (uint32_t)ud;
    if (op == OP_ACCEPT || op == OP_ACCEPT_HTTP) {
        if (cqe->res >= 0)
            conn_accept(io, cqe->res, op == OP_ACCEPT_HTTP);
        if (!(cqe->flags & IORING_CQE_F_MORE) && atomic_load_explicit(&io->phase, memory_order_relaxed) == RC_IO_RUNNING)
            arm_accept(io, op == OP_ACCEPT_HTTP);
        return;
    }
    if (op == OP_WAKE) {
        arm_wake(io);
        return;
    }
    if (op != OP_RECV && op != OP_SEND)
        return;
    rc_conn *c = slot < io->n_slots ? io->conns[slot] : NULL;
    if (!c || c->gen != gen) {
        if (op == OP_RECV && (cqe->flags & IORING_CQE_F_BUFFER))
            rc_uring_recycle(&io->uring, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        return;
    }
    if (op == OP_RECV)
        on_recv(io, c, cqe);
    else
        on_send(io, c, cqe->res);
}

/* ------------------------------------------------------------------ */
/* Shutdown                                                             */
/* ------------------------------------------------------------------ */

static void stop_input(rc_io *io)
{
    int fds[2] = { io->listen_fd, io->http_fd };
    enum op ops[2] = { OP_ACCEPT, OP_ACCEPT_HTTP };
    for (int i = 0; i < 2; i++) {
        if (fds[i] < 0)
            continue;
        struct io_uring_sqe *sqe = rc_uring_sqe(&io->uring);
        io_uring_prep_cancel64(sqe, ud_make(ops[i], NULL), 0);
        io_uring_sqe_set_data64(sqe, ud_make(OP_CANCEL, NULL));
        shutdown(fds[i], SHUT_RDWR);
    }
}




/* ---- timeouts: hello, idle ---- */

/* Closes c after a `bye` that says why (it is sent with what is queued). */
static void conn_bye(rc_io *io, rc_conn *c, const char *reason)
{
    rc_msg bye = { .type = RC_T_BYE, .reason = rc_str_c(reason) };
    conn_reply(io, c, &bye);
    conn_drain(io, c);
}

void rc_io_conn_bye(rc_io *io, rc_conn *c, const char *reason)
{
    conn_bye(io, c, reason);
}

/* A connection must say hello within hello_timeout_ms of its accept, and
 * then send a frame at least every idle_timeout_ms; at half of that it is
 * sent a `ping` (a client answers `pong`, or anything). A connection the server
 * is not reading (held) is never idle: the silence is the server's. Runs
 * every RC_IO_SWEEP_NS over the slots. */
static void sweep_timeouts(rc_io *io)
{
    uint64_t now = rc_loop_clock_now(&io->clock);
    if (now - io->swept_ns < RC_IO_SWEEP_NS)
        return;
    io->swept_ns = now;
    uint64_t hello_ns = (uint64_t)io->lim.hello_timeout_ms * RC_NS_PER_MS;
    uint64_t idle_ns = (uint64_t)io->lim.idle_timeout_ms * RC_NS_PER_MS;
    uint64_t wall_s = rc_clock_wall_ms() / 1000u; /* token expiry is unix time (proto/PROTOCOL.md §6.8) */
    for (uint32_t i = 0; i < io->n_slots; i++) {
        rc_conn *c = io->conns[i];
        if (!c || c->state != CS_OPEN)
            continue;
        if (!c->sess.authed && hello_ns && now - c->opened_ns > hello_ns) {
            RC_STAT_ADD(io->stats.hello_timeouts, 1);
            RC_LOG_INFO("io", "event=hello_timeout sid=%llu timeout_ms=%u", (unsigned long long)c->sess.sid,
                        io->lim.hello_timeout_ms);
            conn_bye(io, c, "hello_timeout: a connection must say hello within hello_timeout_ms");
            continue;
        }
        if (rc_session_token_expired(&c->sess, wall_s)) {
            RC_LOG_INFO("io", "event=token_expired sid=%llu", (unsigned long long)c->sess.sid);
            CONN_ENV(io, c);
            rc_session_expire(&c->sess, &env);
            continue;
        }
        if (!idle_ns || c->held || !c->sess.authed)
            continue; /* before hello, hello_timeout_ms is the bound */
        uint64_t quiet = now - c->heard_ns;
        if (quiet > idle_ns) {
            RC_STAT_ADD(io->stats.idle_timeouts, 1);
            RC_LOG_INFO("io", "event=idle_timeout sid=%llu timeout_ms=%u", (unsigned long long)c->sess.sid,
                        io->lim.idle_timeout_ms);
            conn_bye(io, c, "idle_timeout: no frame within idle_timeout_ms (answer the server's ping)");
        } else if (quiet > idle_ns / 2 && !c->pinged) {
            rc_msg ping = { .type = RC_T_PING };
            conn_reply(io, c, &ping);
            c->pinged = true;
            RC_STAT_ADD(io->stats.server_pings, 1);
        }
    }
}

/* Says bye to every connection; they close as their output drains. */
static void say_bye(rc_io *io)
{
    rc_msg bye = { .type = RC_T_BYE, .reason = rc_str_c("server shutting down") };
    for (uint32_t i = 0; i < io->n_slots; i++) {
        rc_conn *c = io->conns[i];
        if (c && c->state == CS_OPEN) {
            conn_reply(io, c, &bye);
            conn_drain(io, c);
        }
    }
}



static void kill_all(rc_io *io)
{
    for (uint32_t i = 0; i < io->n_slots; i++) {
        if (io->conns[i]) {
            rc_io_letter_queued_output(io, io->conns[i]);
            rc_io_conn_kill(io, io->conns[i]);
        }
    }
}

static uint32_t open_conns(const rc_io *io)
{
    return io->n_slots - io->n_free;
}

/* ------------------------------------------------------------------ */
/* Loop                                                                 */
/* ------------------------------------------------------------------ */

static void handle_completions(rc_io *io)
{
    /* One batch per turn, like the outbound side: multishot receives keep
     * producing completions, and the turn must reach its sends. */
    rc_uring *u = &io->uring;
    for (uint32_t i = 0; i < u->n_deferred; i++) {
        struct io_uring_cqe cqe = u->deferred[i]; /* copy: handling may grow the array */
        handle_cqe(io, &cqe);
    }
    u->n_deferred = 0;
    struct io_uring_cqe *cqes[RC_URING_CQE_BATCH];
    unsigned n = io_uring_peek_batch_cqe(&u->ring, cqes, RC_URING_CQE_BATCH);
    for (unsigned i = 0; i < n; i++)
        handle_cqe(io, cqes[i]);
    io_uring_cq_advance(&u->ring, n);
    RC_STAT_ADD(io->stats.cqes, n);
}

/* Waits for completions unless shards queued work meanwhile. */
static void submit_and_wait(rc_io *io, bool final)
{
    rc_waker_prepare_sleep(&io->waker);
    /* Connections left dirty by flush_sends all have a send in flight: its
     * completion wakes us, so they are no reason to poll. Held connections
     * are retried on a short tick: neither a shard freeing ring room nor
     * another io thread's reader draining signals us. */
    unsigned wait = rc_ring_count(io->outbound) == 0 ? 1 : 0;
    uint64_t tick_ns = final ? RC_IO_FINAL_TICK_MS * RC_NS_PER_MS
                     : rc_handoff_waiting(io) || io->n_pressured ? RC_IO_HOLD_RETRY_NS
                     : io->n_congested_list ? RC_IO_STALL_TICK_NS
                     : open_conns(io) && (io->lim.hello_timeout_ms || io->lim.idle_timeout_ms) ? RC_IO_SWEEP_NS
                     : 0;
    int r = rc_uring_submit_wait(&io->uring, wait, tick_ns);
    if (r < 0 && r != -EINTR && r != -ETIME && r != -EAGAIN && r != -EBUSY) {
        /* A failing submit (not a busy CQ) is a broken ring: say so, and do
         * not spin on it; this is the loop's one wait that is not io_uring. */
        RC_LOG_ERROR("io", "io=%u event=submit_failed err=\"%s\"", io->idx, strerror(-r));
        struct timespec ts = { 0, RC_IO_SUBMIT_ERROR_PAUSE_NS };
        nanosleep(&ts, NULL);
    }
    rc_waker_awake(&io->waker);
}

/* A reload changed limits this thread applies (core/live.h). */
static void follow_live(rc_io *io)
{
    const rc_live_values *v = rc_live_changed(io->live, &io->live_version);
    if (!v)
        return;
    io->slim.conn_rate = io->lim.conn_rate = v->conn_rate;
    io->slim.conn_burst = io->lim.conn_burst = v->conn_burst;
    io->slim.max_groups = io->lim.max_groups_per_session = v->max_groups_per_session;
    io->lim.outbound_high_bytes = v->outbound_high_bytes;
    io->lim.outbound_kill_bytes = v->outbound_kill_bytes;
    io->lim.outbound_stall_ms = v->outbound_stall_ms;
    io->lim.hello_timeout_ms = v->hello_timeout_ms;
    io->lim.idle_timeout_ms = v->idle_timeout_ms;
    io->lim.max_queue_ms = v->max_queue_ms;
    io->pause_bytes = v->outbound_high_bytes / RC_IO_PAUSE_DIVISOR;
    io->admit_ns = (uint64_t)v->max_queue_ms * RC_NS_PER_MS / RC_IO_ADMIT_DIVISOR;
    io->auth = v->auth; /* later hellos and refreshes; welcomed sessions keep their token until its exp */
    rc_live_ack(&io->live_ack, io->live_version);
}

/* The Server API's questions about a user's sessions (core/call.h,
 * src/ARCHITECTURE.md §3.10): this thread's connections are its own, so it
 * counts them, or closes them, itself. A scan of the slots. */
static void answer_call(rc_io *io)
{
    rc_call *call = rc_call_take(&io->call);
    if (!call)
        return;
    rc_str user = { call->name, call->name_len };
    for (uint32_t i = 0; i < io->n_slots; i++) {
        rc_conn *c = io->conns[i];
        if (!c || c->state != CS_OPEN || !c->sess.authed || c->sess.closed ||
            !rc_str_eq(user, (rc_str){ c->sess.user, c->sess.user_len }))
            continue;
        call->n++;
        if (call->kind == RC_CALL_DISCONNECT) {
            RC_STAT_ADD(io->stats.api_disconnects, 1);
            RC_LOG_INFO("io", "event=disconnected sid=%llu", (unsigned long long)c->sess.sid);
            conn_bye(io, c, "disconnected");
        }
    }
    rc_call_answer(call);
}

static void *io_main(void *arg)
{
    rc_io *io = arg;
    int seen_phase = RC_IO_RUNNING;
    int e = rc_uring_enable(&io->uring); /* this thread becomes the ring's single issuer */
    if (e < 0) {
        RC_LOG_ERROR("io", "io=%u event=uring_enable_failed err=\"%s\"", io->idx, strerror(-e));
        return NULL;
    }
    RC_LOG_DEBUG("io", "io=%u event=uring_ready single_issuer=%d defer_taskrun=%d", io->idx,
                 !!(io->uring.flags & IORING_SETUP_SINGLE_ISSUER), !!(io->uring.flags & IORING_SETUP_DEFER_TASKRUN));
    arm_accept(io, false);
    arm_accept(io, true);
    arm_wake(io);
    for (;;) {
        rc_loop_clock_tick(&io->clock);
        int phase = atomic_load_explicit(&io->phase, memory_order_acquire);
        if (phase != seen_phase) {
            if (phase >= RC_IO_STOP_INPUT && seen_phase < RC_IO_STOP_INPUT)
                stop_input(io);
            if (phase == RC_IO_FINAL) {
                rc_handoff_refuse_all(io);
                drain_outbound(io, DRAIN_ALL);
                say_bye(io);
            }
            seen_phase = phase;
        }
        if (phase == RC_IO_FINAL) {
            if (open_conns(io) == 0)
                break;
            if (rc_loop_clock_now(&io->clock) > io->deadline_ns)
                kill_all(io);
        }
        rc_handoff_follow_route(io);
        follow_live(io);
        answer_call(io);
        if (io->n_congested_list)
            check_stalls(io);
        if (phase == RC_IO_RUNNING)
            sweep_timeouts(io);
        drain_outbound(io, phase == RC_IO_FINAL ? DRAIN_ALL : 1);
        rc_handoff_flush(io);
        if (io->n_pressured)
            rc_handoff_release_senders(io);
        rc_handoff_resume(io);
        if (phase == RC_IO_STOP_INPUT)
            rc_handoff_ack_input_stopped(io);
        flush_sends(io);
        submit_and_wait(io, phase == RC_IO_FINAL);
        rc_loop_clock_tick(&io->clock); /* the wait may have been long: what completes is stamped now */
        handle_completions(io);
        reap_conns(io);
        RC_STAT_ADD(io->stats.loops, 1);
    }
    return NULL;
}

int rc_io_start(rc_io *io)
{
    int e = pthread_create(&io->thread, NULL, io_main, io);
    if (e) {
        errno = e;
        return -1;
    }
    return 0;
}

void rc_io_set_phase(rc_io *io, int phase, uint64_t deadline_ns)
{
    io->deadline_ns = deadline_ns;
    /* release: the deadline is visible to the thread that sees the phase. */
    atomic_store_explicit(&io->phase, phase, memory_order_release);
    rc_waker_kick(&io->waker);
}

void rc_io_join(rc_io *io)
{
    pthread_join(io->thread, NULL);
}

void rc_io_destroy(rc_io *io)
{
    rc_call_slot_clear(&io->call);
    if (io->conns)
        for (uint32_t i = 0; i < io->n_slots; i++)
            if (io->conns[i])
                conn_free(io, io->conns[i]);
    if (io->outbound) {
        drain_outbound(io, DRAIN_ALL);
        rc_ring_destroy(io->outbound);
    }
    for (uint32_t s = 0; io->pending && s < io->n_shards; s++) {
        rc_jobq *q = &io->pending[s];
        for (uint32_t i = 0; i < q->n; i++)
            free(q->jobs[q->head + i]);
        free(q->jobs);
        free(q->conns);
    }
    free(io->pending);
    free(io->resume);
    free(io->congested);
    free(io->pressured);
    free(io->conns);
    free(io->gens);
    free(io->free_slots);
    free(io->dirty);
    free(io->reap);
    rc_uring_destroy(&io->uring);
    if (io->listen_fd >= 0)
        close(io->listen_fd);
    if (io->http_fd >= 0)
        close(io->http_fd);
    rc_waker_close(&io->waker);
    rc_decoder_free(&io->dec);
    rc_buf_free(&io->scratch);
}
