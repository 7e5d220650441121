/*
 * What travels between io threads and shards, and how each side wakes the
 * other. This is the only vocabulary the two layers share:
 *
 *   io thread --rc_job*-->  shard inbound ring (MPSC, one per shard)
 *   shard --rc_outbatch*--> io outbound ring (MPSC, one per io thread)
 *
 * A job carries one client request (copied out of the receive buffer, so the
 * buffer can be recycled at once). An outbatch carries many deliveries, each
 * a reference to a shared encoded frame plus the connection it goes to; a
 * `msg` frame is encoded once and its reference count covers every
 * recipient.
 */
#ifndef RC_CORE_DISPATCH_H
#define RC_CORE_DISPATCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "ringcast/proto.h"

/* ---- connection ids ---- */

/* A connection id names an io thread, a slot in its table, and the slot's
 * generation, so a late delivery to a reused slot is recognised and dropped. */
typedef uint64_t rc_conn_id;

#define RC_CONN_IO_BITS 8u
#define RC_CONN_SLOT_BITS 24u
#define RC_MAX_IO_THREADS (1u << RC_CONN_IO_BITS)
#define RC_MAX_CONN_SLOTS (1u << RC_CONN_SLOT_BITS)

static inline rc_conn_id rc_conn_id_make(uint32_t io, uint32_t slot, uint32_t gen)
{
    return ((uint64_t)io << 56) | ((uint64_t)slot << 32) | gen;
}
static inline uint32_t rc_conn_io(rc_conn_id c) { return (uint32_t)(c >> 56); }
static inline uint32_t rc_conn_slot(rc_conn_id c) { return (uint32_t)(c >> 32) & (RC_MAX_CONN_SLOTS - 1); }
static inline uint32_t rc_conn_gen(rc_conn_id c) { return (uint32_t)c; }

/* ---- shared frames ---- */

/* What a frame tells the io thread: bytes to send, or an instruction. */
enum rc_frame_kind {
    RC_FRAME_WIRE = 0,        /* data is an encoded frame for the socket */
    RC_FRAME_JOIN_REFUSED = 1, /* data is a group id the session failed to join */
    RC_FRAME_VOID = 2,        /* withdrawn before it left the shard (its write failed): skip */
    RC_FRAME_REDELIVER = 3,   /* data is a redelivery: see rc_frame_redeliver_new */
    RC_FRAME_ANSWERED = 4,    /* no data: the shard has answered the connection's reply-heavy request (rc_job_heavy) */
    RC_FRAME_CAUGHT_UP = 5,   /* data is an rc_caught_up then the group id: one catch-up page is out (src/net/catchup.c) */
};

/* The end of one page of a slow reader's catch-up from history (RC_JOB_CATCHUP). */
typedef struct rc_caught_up {
    uint64_t next;  /* first seq the page did not cover: where the next page starts */
    uint64_t first; /* first seq the page covered; with `lost`, since + 1 .. first - 1 were gone from history */
    uint8_t more;   /* the page stopped at max_reply_bytes: the reader is still behind */
    uint8_t lost;   /* history no longer held some of what the reader missed */
} rc_caught_up;

/* One encoded frame (length prefix included), shared by reference count. */
typedef struct rc_frame {
    _Atomic uint32_t refs;
    uint32_t len;
    uint8_t kind;             /* enum rc_frame_kind */
    uint8_t data[];
} rc_frame;

rc_frame *rc_frame_new(const uint8_t *p, uint32_t len);
/* An empty WIRE frame (len 0, one reference) with room for cap bytes. NULL on ENOMEM. */
rc_frame *rc_frame_alloc(size_t cap);
/* Copies one encoded frame out of b (from offset `from` to its end) and
 * truncates b back to `from`. NULL on ENOMEM. */
rc_frame *rc_frame_take(rc_buf *b, size_t from);

/* A replayed slow_consumer letter going back to its recipient: data holds
 * one byte with the length of the user `to`, `to`, then the encoded `msg`
 * frame (length prefix included). One frame goes to every subscriber of the
 * group; the io thread sends it only to a connection of `to` that still
 * owes that (group, seq), and drops it for every other one: a filter, not a
 * loss. NULL on ENOMEM. */
rc_frame *rc_frame_redeliver_new(rc_str to, const uint8_t *wire, uint32_t wire_len);

static inline rc_str rc_frame_redeliver_to(const rc_frame *f)
{
    return (rc_str){ (const char *)f->data + 1, f->data[0] };
}

/* The encoded `msg` frame inside a redelivery; *len receives its length. */
static inline const uint8_t *rc_frame_redeliver_wire(const rc_frame *f, uint32_t *len)
{
    uint32_t off = 1u + f->data[0];
    *len = f->len - off;
    return f->data + off;
}

static inline void rc_frame_ref(rc_frame *f, uint32_t n)
{
    /* relaxed: the caller already holds a reference, so the frame cannot be
     * freed concurrently; publication to other threads happens through the
     * ring's release/acquire pair. */
    atomic_fetch_add_explicit(&f->refs, n, memory_order_relaxed);
}

static inline void rc_frame_unref_n(rc_frame *f, uint32_t n)
{
    /* acq_rel, as in rc_frame_unref. */
    if (atomic_fetch_sub_explicit(&f->refs, n, memory_order_acq_rel) == n)
        free(f);
}

static inline void rc_frame_unref(rc_frame *f)
{
    /* acq_rel: release so this thread's reads of the frame happen before a
     * free by another thread; acquire on the last reference so the freeing
     * thread sees every other thread's reads as done. */
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
        free(f);
}

/* ---- io -> shard ---- */

typedef enum rc_job_kind {
    RC_JOB_JOIN,   /* join g (since?) */
    RC_JOB_LEAVE,  /* leave g */
    RC_JOB_SEND,   /* send g body mid? */
    RC_JOB_HIST,   /* hist g before? limit? */
    RC_JOB_DETACH, /* the connection closed: drop its subscription to g */
    RC_JOB_REDELIVER, /* replayed slow_consumer letter: g seq ts body mid? from (user) to */
    RC_JOB_PRESENCE, /* presence g: who is online */
    RC_JOB_TYPING, /* typing g: forwarded to the other users' sessions, at most once a second per user */
    RC_JOB_READ,   /* read g seq: the user's read cursor */
    RC_JOB_CATCHUP, /* a slow reader's next page of g from history: seq > since, then RC_FRAME_CAUGHT_UP (src/net/catchup.c) */
    RC_JOB_INBOX,  /* inbox limit?: the user's groups; g holds the user, which picks the shard (no group of its own) */
    RC_JOB_STOP,   /* shutdown barrier: everything before it is processed */
    /* Moving groups between shards (src/core/route.h): */
    RC_JOB_EPOCH,  /* io thread -> shard of the old route: seq = new route's version; nothing routed by the old one follows */
    RC_JOB_ADOPT,  /* old owner -> new owner: group = the group handed over; seq = version; ts = 1 when its snapshot is due */
    RC_JOB_HANDED, /* old shard -> new route's shards: seq = version; ts = the sending shard's id; its last ADOPT is in */
} rc_job_kind;

typedef struct rc_job {
    rc_job_kind kind;
    rc_conn_id conn;
    uint32_t has;       /* RC_HAS_* of the request */
    uint64_t rid, since, before, limit;
    uint64_t seq, ts;   /* redeliver: the letter's seq and original time */
    uint64_t enq_ns;    /* when the io thread queued it (monotonic) */
    uint64_t ring_ns;   /* when it was pushed into the shard's ring (monotonic) */
    struct rc_group *group; /* RC_JOB_ADOPT: the group changing owner */
    uint16_t g_len;
    uint8_t user_len, mid_len, to_len;
    bool body_is_str;
    bool presence;      /* join: the session receives online/offline events of g */
    bool receipts;      /* join: the session receives receipt events of g */
    bool no_echo;       /* send: not delivered to the sending connection (hello echo: false) */
    bool publish;       /* send: a `publish` from an admin session (the Server API): `from` need not be a member */
    uint32_t body_len;
    char data[];        /* g, user, mid, body, to, back to back */
} rc_job;

static inline const char *rc_job_g(const rc_job *j) { return j->data; }
static inline const char *rc_job_user(const rc_job *j) { return j->data + j->g_len; }
static inline const char *rc_job_mid(const rc_job *j) { return j->data + j->g_len + j->user_len; }
static inline const char *rc_job_body(const rc_job *j)
{
    return j->data + j->g_len + j->user_len + j->mid_len;
}
static inline const char *rc_job_to(const rc_job *j) { return rc_job_body(j) + j->body_len; }

/* Builds a job from a decoded request; strings are copied (`to` only when
 * the request has one). NULL on ENOMEM. */
rc_job *rc_job_new(rc_job_kind kind, rc_conn_id conn, rc_str user, const rc_msg *m);

/* A job that names a group a client asked about (not a move's control job). */
static inline bool rc_job_has_group(const rc_job *j)
{
    return j->kind <= RC_JOB_CATCHUP;
}

/* A job an io thread may refuse after max_queue_ms (E_OVERLOADED): a
 * client's request. Detach, stop, move and catch-up jobs always wait for
 * room (a catch-up page is the server's own, not the client's). */
static inline bool rc_job_refusable(const rc_job *j)
{
    return j->kind != RC_JOB_DETACH && j->kind != RC_JOB_STOP && j->kind != RC_JOB_EPOCH &&
           j->kind != RC_JOB_CATCHUP;
}

/* A request whose answer can be as large as max_reply_bytes: a hist, a
 * join with since. An io thread lets a connection have at most
 * RC_IO_HEAVY_MAX of them at the shards; the shard ends each one's answer
 * with an RC_FRAME_ANSWERED frame (src/ARCHITECTURE.md §3.5). */
static inline bool rc_job_heavy(const rc_job *j)
{
    return j->kind == RC_JOB_HIST || (j->kind == RC_JOB_JOIN && (j->has & RC_HAS_SINCE));
}

/* ---- shard -> io ---- */

/* Delivery flags. */
enum {
    RC_DELIVERY_SYNC = 1u << 0, /* history the session asked for (join since): never a dead letter */
};

typedef struct rc_delivery {
    rc_frame *frame; /* one reference owned by this delivery */
    rc_conn_id conn;
    uint32_t flags;  /* RC_DELIVERY_* */
} rc_delivery;

#define RC_OUTBATCH_CAP 1024u /* deliveries per batch */

typedef struct rc_outbatch {
    uint32_t n;
    struct rc_ring *home; /* the sending shard's spare ring: where it goes back empty */
    rc_delivery d[RC_OUTBATCH_CAP];
} rc_outbatch;

/* Hands an emptied outbatch back to its shard for reuse (or frees it when
 * the spare ring is full). Any thread. */
void rc_outbatch_recycle(rc_outbatch *b);

/* ---- waking a sleeping consumer ---- */

/*
 * A consumer that finds its ring empty announces `sleeping`
 * (rc_waker_prepare_sleep), re-checks the ring, then blocks on its eventfd,
 * and clears the flag when it wakes (rc_waker_awake). A producer that pushed
 * checks `sleeping` after the push and writes the eventfd only then, so a
 * busy consumer costs producers no syscall. This is the store-load pattern;
 * it is made safe by doing every access to the flag as an RMW (see
 * rc_waker_wake).
 */
typedef struct rc_waker {
    int efd;
    _Atomic int sleeping;
} rc_waker;

int rc_waker_init(rc_waker *w);   /* 0 or -1 (errno) */
void rc_waker_close(rc_waker *w);
void rc_waker_wake(rc_waker *w);  /* producer side, after a push */
int rc_waker_prepare_sleep(rc_waker *w); /* consumer: announce sleep, then re-check */
void rc_waker_awake(rc_waker *w);  /* consumer: clear the announcement */
void rc_waker_kick(rc_waker *w);  /* unconditional wake-up */

/* ---- waiting for room in a full ring ---- */

/*
 * A producer that finds its consumer's ring full (a shard whose io thread
 * is behind, src/core/shard.c flush_outbatches) sleeps until the consumer
 * has taken something, instead of yielding in a loop: on a box with fewer
 * cores than threads a yielding producer takes the very CPU the consumer
 * needs to catch up. The producer announces itself (rc_room_prepare),
 * re-checks the ring, and sleeps on `seq` (a futex) for at most max_ns; the
 * consumer, after taking from the ring, bumps `seq` and wakes the sleepers
 * only when someone announced (rc_room_taken: one RMW when nobody waits).
 * Every access to `waiters` is an RMW, as for rc_waker.
 */
typedef struct rc_room {
    _Atomic uint32_t seq;     /* bumped by the consumer when it took something while someone waited */
    _Atomic uint32_t waiters; /* producers between rc_room_prepare and the end of their wait */
} rc_room;

uint32_t rc_room_prepare(rc_room *r);                    /* producer: announce; returns what to wait on */
void rc_room_wait(rc_room *r, uint32_t seq, uint64_t max_ns); /* producer: sleep, then withdraw */
void rc_room_cancel(rc_room *r);                         /* producer: withdraw without sleeping */
void rc_room_taken(rc_room *r);                          /* consumer: after taking from the ring */

#endif
