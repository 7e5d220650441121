/*
 * An io thread: one io_uring event loop that owns a listening socket and the
 * connections it accepted. This is where a message enters (recv, framing,
 * decoding, routing to its group's shard) and where it leaves (outbatches
 * from shards copied into per-connection output, one send per connection in
 * flight, at most one new send per connection per loop turn).
 */
#ifndef RC_NET_IO_H
#define RC_NET_IO_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/call.h"
#include "core/chash.h"
#include "core/route.h"
#include "core/clock.h"
#include "core/dispatch.h"
#include "core/live.h"
#include "core/letters.h"
#include "core/ring.h"
#include "core/shard.h"
#include "net/session.h"
#include "net/uring.h"
#include "net/ws.h"

#define RC_IO_OUT_RING 256u   /* outbatches queued to one io thread */
/* (group, seq) pairs one connection remembers as owed to it because they
 * became slow_consumer letters, so a replay can redeliver them once. 16
 * bytes each, allocated at the first letter; past this the oldest are
 * forgotten (counted): their replay delivers nothing, history covers them. */
#define RC_CONN_LETTERED_MAX 1024u

/* What an io thread needs to know; copied from the server config. */
typedef struct rc_io_limits {
    uint32_t max_frame;              /* bytes of map per frame */
    uint32_t max_connections;        /* this thread's share of max_connections */
    uint32_t max_groups_per_session; /* groups one connection may join */
    uint32_t recv_buffers;           /* provided buffers (power of two) */
    uint32_t recv_buffer_size;       /* bytes each */
    uint64_t outbound_high_bytes;    /* queued output past which deliveries become dead letters */
    uint64_t outbound_kill_bytes;    /* queued output past which a connection is closed */
    const rc_letter_sink *letters;   /* where dead letters go (NULL: no dead letters) */
    const char *admin_token;         /* hello token that makes a session admin ("" : none) */
    const rc_token_keys *auth;       /* auth_secret at start, parsed (NULL or none: hello trusts user) */
    uint32_t max_queue_ms;           /* a request that waited longer for room in its shard's ring: E_OVERLOADED */
    uint32_t outbound_stall_ms;      /* output above the pause mark this long: the connection is a slow consumer */
    _Atomic uint32_t *pressure;      /* connections over the pause mark on every io thread (NULL: this thread's own count) */
    struct rc_iplimit *per_ip;       /* open connections per client address, shared by the io threads (NULL: no bound) */
    uint32_t hello_timeout_ms;       /* a connection that has not said hello this long is closed (0: never) */
    uint32_t idle_timeout_ms;        /* a connection that sent no frame this long is closed; pinged at half (0: never) */
    const char *allowed_origins;     /* WebSocket Origins allowed, comma-separated ("" or NULL: any) */
    uint32_t conn_rate, conn_burst;  /* sends per second per connection, bucket size (0: no limit) */
    bool catchup;                    /* slow_consumer_policy = catchup: slow readers catch up from history (net/catchup.c) */
    uint32_t history_max;            /* messages a group's history retains: what a reader catching up may hold per group */
} rc_io_limits;

/* While a connection that keeps up has more than outbound_high_bytes /
 * RC_IO_PAUSE_DIVISOR queued (the pause mark), on any io thread, senders
 * are not read further. */
#define RC_IO_PAUSE_DIVISOR 2u
/* A shard whose inbound ring holds work that has waited longer than
 * max_queue_ms / RC_IO_ADMIT_DIVISOR takes no more until it catches up. */
#define RC_IO_ADMIT_DIVISOR 8u
/* ... and no more than this many jobs in its ring, whatever their cost. */
#define RC_IO_ADMIT_MAX_JOBS 16384u
/* Reply-heavy requests (a hist, a join with since: up to max_reply_bytes
 * of answer each) one connection may have at the shards; the next waits,
 * unread, for an answer. With the pause mark this bounds what a client
 * that pipelines requests and reads nothing can make the server hold. */
#define RC_IO_HEAVY_MAX 2u
/* Deliveries of at most this many bytes are copied into the connection's
 * output chunk; larger ones are sent from the shard's shared frame
 * (net/outq.h). */
#define RC_IO_COPY_MAX 2048u
/* Bytes of the next message's frame an outbatch's delivery asks into the
 * cache while the current one is copied to its recipients: a 100-byte
 * `msg` with its header. */
#define RC_IO_FRAME_PREFETCH 192u
/* The loop looks for connections past hello_timeout_ms or idle_timeout_ms
 * this often, so a timeout fires up to this late. */
#define RC_IO_SWEEP_NS 250000000u
/* While requests wait for room in a shard's ring, the loop wakes at least
 * this often to retry them (the shard does not signal freed room). */
#define RC_IO_HOLD_RETRY_NS 250000u
/* While a connection is over the pause mark, the loop wakes at least this
 * often to check outbound_stall_ms. */
#define RC_IO_STALL_TICK_NS 10000000u

/* Counters, written by the io thread only, read by the metrics page. */
typedef struct rc_io_stats {
    _Atomic uint64_t accepted, closed, open, rejected;
    _Atomic uint64_t frames_out;        /* frames queued to sockets */
    _Atomic uint64_t deliveries;        /* msg deliveries queued to sockets */
    _Atomic uint64_t dropped_closed;    /* frames for connections already closed */
    _Atomic uint64_t bytes_in, bytes_out;
    rc_session_stats session;           /* frames in, err replies, replays (net/session.h) */
    _Atomic uint64_t loops, cqes, enobufs, sends, slow_kills;
    _Atomic uint64_t holds;             /* times a connection stopped being read: its requests waited for a full shard ring */
    _Atomic uint64_t admit_waits;       /* pushes deferred: the shard's ring held more than admit_ns of work */
    _Atomic uint64_t held_conns;        /* gauge: connections not read now for that reason */
    _Atomic uint64_t jobs_waiting;      /* gauge: requests queued in this thread for a shard, pushed or not yet this turn */
    _Atomic uint64_t jobs_unadmitted;   /* gauge: of them, those a push left waiting: their ring had no room (set after each push) */
    _Atomic uint64_t jobs_routed;       /* client requests queued for shards (the autoscaler's QPS: what arrives, not what a full queue lets through) */
    _Atomic uint64_t unadmitted_ns;     /* time requests waited in this thread outside full rings: from a push that left some waiting to the next push (the autoscaler's queue fill, src/app/scale.c) */
    _Atomic uint64_t pressure_holds;    /* times a sender stopped being read while a reader was over the pause mark */
    _Atomic uint64_t hello_timeouts;    /* connections closed for not saying hello within hello_timeout_ms */
    _Atomic uint64_t idle_timeouts;     /* connections closed for sending no frame within idle_timeout_ms */
    _Atomic uint64_t server_pings;      /* pings sent to connections silent for idle_timeout_ms / 2 */
    _Atomic uint64_t rejected_per_ip;   /* connections refused: their address had max_connections_per_ip open */
    rc_ws_stats ws;                     /* the public HTTP port: requests, upgrades, messages (net/ws.h) */
    _Atomic uint64_t reply_holds;       /* times a connection stopped being read for its own answers: output over the pause mark, or RC_IO_HEAVY_MAX heavy requests out */
    _Atomic uint64_t congested;         /* gauge: connections over the pause mark (not yet slow consumers) */
    _Atomic uint64_t slow_marked;       /* connections that stayed over the pause mark for outbound_stall_ms */
    _Atomic uint64_t slow_letters;      /* deliveries turned into slow_consumer letters */
    _Atomic uint64_t catchup_started;   /* times a slow reader fell behind in a group and started catching up from history */
    _Atomic uint64_t catchup_skipped;   /* live msgs not queued to a reader behind in their group (history holds them) */
    _Atomic uint64_t catchup_pages;     /* catch-up pages asked of shards */
    _Atomic uint64_t catchup_done;      /* catch-ups that reached their group's last seq */
    _Atomic uint64_t catchup_lost;      /* messages a reader catching up missed that history no longer held: slow_consumer letters */
    _Atomic uint64_t catchup_held;      /* gauge: skipped live frames readers catching up hold (net/catchup.c) */
    _Atomic uint64_t overload_letters;  /* sends refused with E_OVERLOADED, sent as letters */
    _Atomic uint64_t shutdown_letters;  /* deliveries still queued at a forced stop, sent as letters */
    _Atomic uint64_t letters_refused;   /* letters the sink could not queue (logged) */
    _Atomic uint64_t redelivered;       /* replayed slow_consumer letters sent to the connection that missed them */
    _Atomic uint64_t redelivery_skipped; /* replays for a connection of `to` that does not owe that (g, seq) */
    _Atomic uint64_t lettered_forgotten; /* owed (g, seq) pairs dropped past RC_CONN_LETTERED_MAX (history covers them) */
    _Atomic uint64_t api_disconnects;   /* sessions closed with bye "disconnected" by POST /api/disconnect */
} rc_io_stats;

enum rc_io_phase {
    RC_IO_RUNNING = 0,
    RC_IO_STOP_INPUT = 1, /* stop accepting and reading; flush queued jobs */
    RC_IO_FINAL = 2,      /* deliver what shards sent, say bye, close everything */
};

struct rc_conn;

/* Jobs queued for one shard, oldest first, with the connection each came
 * from (read before the push: once pushed, a job belongs to the shard). */
typedef struct rc_jobq {
    rc_job **jobs;
    rc_conn_id *conns;
    uint32_t head, n, cap;        /* live entries are [head, head + n) */
    uint32_t checked;             /* entries from head whose owner was already held */
} rc_jobq;

typedef struct rc_io {
    uint32_t idx;
    rc_uring uring;               /* the ring, its receive buffers (net/uring.h) */
    int listen_fd;
    int http_fd;                  /* the public HTTP port (page, WebSocket), or -1 */
    rc_ring *outbound;            /* MPSC: shards -> this thread */
    rc_room out_room;             /* shards wait here for room in outbound */
    rc_waker waker;
    uint64_t wake_val;            /* eventfd read target */
    rc_shard **shards;            /* every shard by id, running or not */
    uint32_t n_shards;            /* entries of shards and pending (max_shards) */
    rc_routing *routing;          /* the route the server publishes (core/route.h) */
    const rc_route *route;        /* the route this thread routes by now */
    rc_live *live;                /* values a reload changes (core/live.h); NULL: none */
    rc_token_keys auth;           /* this thread's copy of auth_secret's secrets; the session reads it (slim.auth) */
    uint64_t live_version;        /* the version applied */
    _Atomic uint64_t live_ack;    /* ... acknowledged to the reloader */
    rc_call_slot call;            /* a question of the Server API's about its sessions (core/call.h) */
    rc_io_limits lim;
    rc_session_limits slim;       /* the protocol's share of lim */
    struct rc_conn **conns;       /* slot -> connection (NULL when free) */
    uint32_t *gens;               /* slot -> generation */
    uint32_t *free_slots;
    uint32_t n_free, n_slots;
    uint32_t *dirty;              /* slots with output waiting for a send */
    uint32_t n_dirty;
    uint32_t *reap;               /* slots of dead connections to free this turn */
    uint32_t n_reap;
    rc_jobq *pending;             /* per shard: jobs waiting for a ring push, oldest first */
    rc_conn_id *resume;           /* connections whose held jobs all entered their rings this turn */
    uint32_t n_resume;
    rc_conn_id *congested;        /* connections over the pause mark (some entries stale), checked each turn */
    uint32_t n_congested_list, n_congested;
    rc_conn_id *pressured;        /* senders held while a reader is over the pause mark (some entries stale) */
    uint32_t n_pressured;
    _Atomic uint32_t own_pressure; /* the pressure count when lim.pressure is NULL */
    rc_loop_clock clock;          /* now, refreshed once per loop turn */
    uint64_t unadmitted_since_ns; /* the last push left requests waiting outside their rings (loop clock; 0: it did not) */
    uint64_t pause_bytes;         /* outbound_high_bytes / RC_IO_PAUSE_DIVISOR */
    uint64_t admit_ns;            /* max_queue_ms / RC_IO_ADMIT_DIVISOR: a shard ring with more work waiting counts as full */
    bool in_drain;                /* delivering outbatches: no nested drain */
    uint64_t swept_ns;            /* when the timeouts were last looked at */
    rc_decoder dec;
    rc_buf scratch;
    _Atomic int phase;
    _Atomic int input_stopped;    /* acknowledges RC_IO_STOP_INPUT */
    uint64_t deadline_ns;         /* forced close time in RC_IO_FINAL */
    pthread_t thread;
    rc_io_stats stats;
} rc_io;

/* Opens a listening TCP socket (SO_REUSEPORT so io threads can share a port).
 * Returns the fd, or -1 with a message in err. *port receives the bound port. */
int rc_io_listen(const char *host, uint16_t *port, char *err, size_t errlen);

/* Sets up the io_uring loop; fails with a message naming the cause when the
 * kernel refuses io_uring (e.g. the kernel.io_uring_disabled sysctl). */
int rc_io_init(rc_io *io, uint32_t idx, int listen_fd, int http_fd, const rc_io_limits *lim, rc_shard **shards,
               uint32_t n_shards, rc_routing *routing, char *err, size_t errlen);
int rc_io_start(rc_io *io);
void rc_io_set_phase(rc_io *io, int phase, uint64_t deadline_ns);
void rc_io_join(rc_io *io);
void rc_io_destroy(rc_io *io);


#endif
