/*
 * A shard: one worker thread that owns a set of groups (chosen by the
 * consistent hash of the group id) and is the only sequencer of their
 * messages. It consumes jobs from its inbound MPSC ring in batches, applies
 * them to its groups, and sends replies and deliveries to the io threads in
 * batches over their outbound rings. No locks on this path.
 */
#ifndef RC_CORE_SHARD_H
#define RC_CORE_SHARD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/call.h"
#include "core/dispatch.h"
#include "core/letters.h"
#include "core/live.h"
#include "core/ring.h"
#include "core/route.h"
#include "core/strmap.h"

#define RC_SHARD_BATCH 256u        /* jobs taken from the inbound ring at once */
#define RC_SHARD_SPIN 64u          /* empty polls before the shard sleeps */
#define RC_SHARD_SPARE 256u        /* emptied outbatches kept for reuse */
#define RC_SHARD_ROOM_WAIT_NS 10000000u /* longest sleep waiting for room in a full io ring (woken sooner when there is) */
#define RC_SHARD_COST_WEIGHT 8u    /* job_ns falls 1/8 of the way to a cheaper burst's cost */
/* A tick's store write is tried this many times before its sends fail with
 * E_INTERNAL and become `poison` dead letters (ARCHITECTURE §7). */
#define RC_POISON_ATTEMPTS 3u
/* Wait before the first retry of a failed write or sequencing; doubles with
 * each retry, plus up to half again of jitter (core/backoff.h), so a failing
 * store holds the shard for at most 1.5 + 3 ms per tick. */
#define RC_POISON_BACKOFF_US 1000u

/* Limits a shard applies: copied in at start; a reload changes some of them (follow_live, core/live.h). */
typedef struct rc_shard_limits {
    uint32_t history_max;           /* messages kept per group */
    uint32_t dedup_window;          /* mids remembered per group */
    uint32_t max_members_per_group; /* stored members per group */
    uint32_t snapshot_every;        /* changes per snapshot */
    uint32_t snapshot_interval_ms;  /* a changed group's snapshot at least this often */
    uint64_t history_ttl_ms;        /* messages older than this leave history */
    uint64_t max_reply_bytes;       /* a hist reply or a join's backlog stops here (`more: true`); 0: no bound */
    uint32_t group_rate, group_burst; /* sends per second per group, bucket size (0: no limit) */
    uint64_t history_cache_bytes;   /* history kept in memory by all shards together (0: no bound; ARCHITECTURE §6.1) */
    uint32_t inbox_scan_max;        /* groups of one user an inbox looks at, at most (ARCHITECTURE §3.11) */
} rc_shard_limits;

/* Storage a shard writes through (NULL persist: memory only). */
typedef struct rc_shard_store {
    struct rc_persist *persist;
    const struct rc_persist_ops *ops;
    int durability;                 /* rc_durability */
} rc_shard_store;

/* One message sequenced in the current tick, kept until its write lands. */
typedef struct rc_tick_send {
    struct rc_group *g;
    uint64_t seq;
    rc_frame *msg, *ack;        /* msg NULL: a dup ack naming a seq of this tick, or a `marked` (read) */
    rc_conn_id conn;
    uint64_t rid;
    uint32_t has;
    bool read;                  /* ack is the `marked` of a read cursor this tick moved */
} rc_tick_send;

/* Counters, written by the shard thread only, read by the metrics page. */
typedef struct rc_shard_stats {
    _Atomic uint64_t jobs;          /* jobs processed */
    _Atomic uint64_t batches;       /* inbound bursts processed */
    _Atomic uint64_t sequenced;     /* messages sequenced */
    _Atomic uint64_t deliveries;    /* msg frames handed to io threads (fan-out) */
    _Atomic uint64_t dups;          /* sends answered with dup: true */
    _Atomic uint64_t errors[RC_E_COUNT]; /* error replies sent, by code */
    _Atomic uint64_t groups;        /* groups held */
    _Atomic uint64_t out_stalls;    /* times an io outbound ring was full */
    _Atomic uint64_t out_stall_ns;  /* time spent waiting for room in full io outbound rings */
    _Atomic uint64_t catchup_msgs;  /* messages sent from history to slow readers catching up (src/net/catchup.c) */
    _Atomic uint64_t job_ns;        /* gauge: a job's share of its burst's time, recent (waits on io threads included) */
    _Atomic uint64_t sleeps;        /* times the shard went to sleep */
    _Atomic uint64_t store_commits; /* batches written */
    _Atomic uint64_t store_commit_ns; /* time spent writing them */
    _Atomic uint64_t store_errors;  /* batches that failed every attempt (their sends got E_INTERNAL) */
    _Atomic uint64_t store_retries; /* writes tried again after a failure */
    _Atomic uint64_t sequence_retries; /* sends sequenced again after running out of memory */
    _Atomic uint64_t snapshots;     /* group snapshots written */
    _Atomic uint64_t warmups;       /* groups whose history was loaded from storage */
    _Atomic uint64_t warm_msgs;     /* messages those loads read from storage */
    _Atomic uint64_t expired;       /* sends that waited past max_queue_ms: E_OVERLOADED and a letter */
    _Atomic uint64_t poison_letters; /* sends whose write failed RC_POISON_ATTEMPTS times: E_INTERNAL and a letter */
    _Atomic uint64_t letters_refused; /* expired and poison letters the sink could not queue (logged) */
    _Atomic uint64_t redeliveries;  /* replayed slow_consumer letters sent to the group's io threads */
    _Atomic uint64_t replies_paged; /* hist replies and join backlogs cut at max_reply_bytes (`more: true`) */
    _Atomic uint64_t rate_limited;  /* sends refused with E_RATE_LIMITED by group_rate */
    _Atomic uint64_t presence_events; /* online/offline events sent (one frame each, to every presence subscriber) */
    _Atomic uint64_t presence_coalesced; /* presence changes undone within their tick: no event */
    _Atomic uint64_t typing_forwarded; /* typing notices sent on */
    _Atomic uint64_t typing_dropped;   /* typing notices within a second of the user's last one in the group */
    _Atomic uint64_t reads_moved;   /* read requests that moved a cursor */
    _Atomic uint64_t receipts;      /* receipt events sent (one frame each, to every receipts subscriber) */
    _Atomic uint64_t receipts_coalesced; /* cursor moves folded into a receipt of the same tick */
    _Atomic uint64_t inbox_requests; /* inbox requests answered from storage */
    _Atomic uint64_t inbox_truncated; /* inbox replies cut by max_reply_bytes or inbox_scan_max (`more: true`) */
    _Atomic uint64_t cache_bytes;   /* gauge: history held in memory (hist_bytes, published each tick) */
    _Atomic uint64_t cache_hits;    /* requests whose group's history was in memory */
    _Atomic uint64_t cache_evictions; /* groups whose history left memory for the budget */
    /* Requests for this shard that io threads refused before its ring
     * (several writers: rc_stat_add_shared): */
    _Atomic uint64_t refused_overloaded; /* waited past max_queue_ms for room: E_OVERLOADED */
    _Atomic uint64_t refused_shutdown;   /* still waiting at a forced stop: E_SHUTTING_DOWN */
    _Atomic uint64_t groups_moved;  /* groups handed to another shard by a move (route.h) */
    _Atomic uint64_t moves;         /* moves this shard took part in */
    _Atomic uint64_t parked;        /* requests kept until their group's old owner handed it over */
    _Atomic uint64_t park_ns;       /* time those requests waited, summed */
    _Atomic uint64_t park_ns_max;   /* gauge: the longest one waited in the last move */
} rc_shard_stats;

/* A shard's part in a move from one route to the next (src/core/route.h),
 * owned by its thread. */
typedef struct rc_shard_move {
    const rc_route *from, *to;      /* to NULL: no move under way */
    uint32_t epochs;                /* EPOCH jobs seen (one per io thread) */
    uint32_t handed_in;             /* HANDED jobs seen (one per other shard of `from`) */
    bool hand_due;                  /* every EPOCH is in: hand over at the end of the tick */
    bool handed;                    /* this shard's ADOPTs and HANDEDs are out */
    uint64_t src_done[RC_MAX_SHARDS / 64]; /* old shards whose HANDED arrived */
    rc_job **parked;                /* requests waiting for their group's old owner, in arrival order */
    uint32_t *parked_src;           /* ... and that owner */
    uint64_t *parked_ns;            /* ... and when each was parked */
    uint32_t n_parked, cap_parked;
    uint64_t block_max_ns;          /* the longest a parked request waited in this move */
} rc_shard_move;

/* Where a shard's output goes: one outbound ring, waker and room per io
 * thread. */
typedef struct rc_outlets {
    uint32_t n;
    rc_ring **rings;
    rc_waker **wakers;
    rc_room **rooms;
} rc_outlets;

typedef struct rc_shard {
    uint32_t id;
    rc_ring *inbound;           /* MPSC: io threads -> this shard */
    rc_waker waker;             /* wakes this shard when it sleeps */
    rc_shard_limits limits;
    rc_outlets out;
    rc_outbatch **pending;      /* per io thread: batch being filled */
    rc_ring *spare;             /* MPSC: emptied outbatches coming back from io threads */
    rc_strmap groups;           /* group id -> rc_group* */
    rc_buf scratch;             /* encoding buffer */
    rc_decoder dec;
    pthread_t thread;
    rc_shard_store store;
    struct rc_persist_batch *batch; /* the tick's writes, or NULL */
    rc_tick_send *tick;             /* the tick's sequenced messages */
    uint32_t n_tick, cap_tick;
    bool tick_unrecorded;           /* a send of this tick got no record (ENOMEM): its write is not retried */
    struct rc_group **snap;         /* groups whose snapshot goes out this tick */
    uint32_t n_snap, cap_snap;
    const rc_letter_sink *letters;  /* dead letters (NULL: none) */
    uint64_t max_queue_ns;          /* max_queue_ms; 0: sends never expire */
    uint64_t tick_ns;               /* monotonic time the current burst started */
    uint64_t tick_wall_ms;          /* wall-clock time it started: the `ts` of the messages it sequences */
    rc_routing *routing;            /* the route io threads use; NULL: one fixed route, no moves */
    struct rc_shard *const *peers;  /* every shard by id (RC_MAX_SHARDS at most): where ADOPT and HANDED go */
    const rc_route *route;          /* the route this shard last finished moving to */
    rc_shard_move move;
    uint64_t hist_bytes;            /* history its groups hold in memory (group.c keeps it) */
    uint64_t backoff_rng;           /* jitter of retries (core/backoff.h) */
    uint32_t fail_sequencing;       /* tests only: this many sequencing attempts fail as out of memory would */
    struct rc_group *lru_head, *lru_tail; /* warm groups, most recently used first */
    rc_strmap presence_tick;        /* this tick's presence changes: (group, user) -> was / is online (shard.c) */
    rc_strmap read_tick;            /* this tick's moved read cursors: (group, user) -> cursor (written, then receipts) */
    rc_strmap member_tick;          /* this tick's membership changes for the per-user index: (group, user) -> 1 joined, 0 left */
    bool started;                   /* its thread runs (set and cleared by the server) */
    rc_live *live;                  /* values a reload changes (core/live.h); NULL: none */
    uint64_t live_version;          /* the version applied */
    _Atomic uint64_t live_ack;      /* ... acknowledged to the reloader */
    rc_call_slot call;              /* a question of the Server API's about its groups (core/call.h) */
    rc_shard_stats stats;
} rc_shard;

int rc_shard_init(rc_shard *s, uint32_t id, uint32_t ring_capacity, const rc_shard_limits *lim,
                  const rc_outlets *out, const rc_shard_store *store);
/* Recovery, before the shard starts: takes over one stored group. 0 or -1
 * (message in err). */
struct rc_persist_group;
int rc_shard_adopt(rc_shard *s, const struct rc_persist_group *pg, char *err, size_t errlen);
/* Before start: where dead letters go (expired sends, poison sends whose
 * write failed every try), and after how long a send expires. */
void rc_shard_set_letters(rc_shard *s, const rc_letter_sink *letters, uint32_t max_queue_ms);
/* Before start: the routing io threads follow, every shard by id, and the
 * route this shard starts on (route.h). Without it a shard never moves. */
void rc_shard_set_routing(rc_shard *s, rc_routing *routing, rc_shard *const *peers, const rc_route *route);
int rc_shard_start(rc_shard *s);
/* Waits for the thread to end (it ends after processing an RC_JOB_STOP, or
 * once a move to a route without it is done). */
void rc_shard_join(rc_shard *s);
void rc_shard_destroy(rc_shard *s);

/* Queues jobs for the shard (any io thread), in order, as many as fit:
 * returns how many were queued, and wakes the shard if it sleeps. */
uint32_t rc_shard_submit(rc_shard *s, rc_job *const *jobs, uint32_t n);

/* How long a job pushed now would wait in the shard's inbound ring: the
 * jobs already there times a job's recent cost (any thread). A `rooms` job
 * that fans out 500 times costs a hundred times a `fanout` one, so the io
 * threads admit by this rather than by the ring's free slots alone. */
uint64_t rc_shard_ring_wait_ns(const rc_shard *s);
/* Jobs in the shard's inbound ring now (any thread). */
uint32_t rc_shard_depth(const rc_shard *s);

/* Oldest seq of g that history still serves (history_max and history_ttl). */
struct rc_group;
uint64_t rc_shard_first_served(const rc_shard *s, const struct rc_group *g);

#endif
