/*
 * An io thread's connections, as the files of src/net that serve them see
 * them: io.c (the loop, the connections' lifetimes and output), handoff.c
 * (requests to shards, and the backpressure that holds a connection's
 * reading) and letters.c (the io side's dead letters). Private to src/net;
 * io.h is the public face.
 */
#ifndef RC_NET_CONN_H
#define RC_NET_CONN_H

#include "net/io.h"
#include "net/iplimit.h"
#include "net/outq.h"
#include "net/session.h"
#include "core/strmap.h"

enum conn_state {
    CS_OPEN,     /* reading and writing */
    CS_DRAINING, /* no more input; closes once its output is sent */
    CS_DEAD,     /* socket shut down; freed when no operation is in flight */
};

/* One message a connection missed because it became a slow_consumer letter:
 * the group (by its 64-bit hash: two groups would need the same hash and
 * the same seq to be confused) and the seq; seq 0 marks a slot already
 * redelivered. */
typedef struct owed_msg {
    uint64_t g_hash, seq;
} owed_msg;

typedef struct rc_conn {
    int fd;
    uint32_t slot, gen;
    enum conn_state state;
    struct rc_ws *ws; /* accepted on the HTTP port: HTTP, then WebSocket (net/ws.h); NULL for TCP. Beside the fields every delivery reads */
    bool recv_armed;
    bool send_inflight;
    bool dirty;
    bool reaping; /* queued on io->reap: freed at the end of the loop turn */
    bool held;    /* not read: some of its requests wait for room in their shard's ring */
    bool congested; /* over the pause mark since congested_ns: new deliveries wait for it */
    bool in_cong_list; /* listed in io->congested */
    bool slow;    /* stayed over the pause mark for outbound_stall_ms: deliveries past outbound_high_bytes become letters */
    bool resume_listed; /* listed in io->resume */
    bool pressure_hold; /* held as a sender while a reader is over the pause mark; listed in io->pressured */
    uint32_t jobs_queued; /* its jobs in io->pending, not yet in a shard's ring */
    uint32_t heavy;       /* its reply-heavy requests (rc_job_heavy) not yet answered: at most RC_IO_HEAVY_MAX */
    uint64_t congested_ns;
    uint64_t opened_ns;   /* accepted (hello_timeout_ms runs from here) */
    uint64_t heard_ns;    /* its last complete frame, or its accept (idle_timeout_ms runs from here) */
    bool pinged;          /* the server pinged it since heard_ns */
    bool ip_counted;      /* holds a place in lim.per_ip under ip */
    rc_ip ip;
    rc_buf in;    /* bytes of a frame not yet complete */
    rc_outq outq; /* output: shared frames, sent by iovec (net/outq.h) */
    uint64_t lettered; /* bytes turned into dead letters since the queue passed outbound_high_bytes */
    owed_msg *owed;    /* ring of RC_CONN_LETTERED_MAX lettered messages (NULL until the first), oldest at owed_head */
    uint32_t owed_head, n_owed;
    rc_strmap *behind;      /* catchup: group -> its rc_behind (first seq missed, the frames skipped since), for groups it catches up in from history (net/catchup.c); NULL: none */
    bool catchup_out;       /* one catch-up page of it is at a shard */
    rc_session sess;        /* the protocol session (net/session.h) */
} rc_conn;

/* Output bytes waiting: queued plus the unsent part of the send in flight. */
static inline size_t rc_conn_queued(const rc_conn *c)
{
    return rc_outq_bytes(&c->outq);
}

/* c's own answers pile up: its output is over the pause mark (it does not
 * read what it asked for), or RC_IO_HEAVY_MAX of its reply-heavy requests
 * are unanswered. It is not read further meanwhile. */
static inline bool rc_conn_answers_pending(const rc_io *io, const rc_conn *c)
{
    return rc_conn_queued(c) > io->pause_bytes || c->heavy >= RC_IO_HEAVY_MAX;
}

/* Whether a held c may be read again: none of its requests waits for room
 * in a shard's ring, it is not held as a sender (a reader is over the pause
 * mark), and its own answers do not pile up. */
static inline bool rc_conn_readable(const rc_io *io, const rc_conn *c)
{
    return !c->jobs_queued && !c->pressure_hold && !rc_conn_answers_pending(io, c);
}

/* ---- io.c, for the files beside it ---- */

/* The connection an id names, or NULL when it closed (or its slot was
 * reused since). */
rc_conn *rc_io_conn(rc_io *io, rc_conn_id id);
/* Answers a request with an `err` (proto/PROTOCOL.md §4). */
void rc_io_conn_error(rc_io *io, rc_conn *c, const rc_msg *req, rc_err code, const char *text);
/* Stops reading c (its multishot receive is cancelled) / reads it again:
 * first what arrived meanwhile, then the socket. */
void rc_io_conn_hold(rc_io *io, rc_conn *c);
void rc_io_conn_unhold(rc_io *io, rc_conn *c);
/* Stops the connection now: no more input or output. */
void rc_io_conn_kill(rc_io *io, rc_conn *c);
/* The one outbound-limit check: closes c (event=slow_consumer_closed,
 * ringcast_slow_consumer_closed_total) when its queued output, what
 * became letters since it fell behind, and `extra` bytes about to be
 * queued pass outbound_kill_bytes. True when it closed c. */
bool rc_io_conn_over_limit(rc_io *io, rc_conn *c, size_t extra);
/* Queues a copy of one encoded frame (as a WebSocket message on the HTTP port). */
void rc_io_conn_write(rc_io *io, rc_conn *c, const uint8_t *p, size_t n);
/* Queues bytes for the socket as they are (net/ws.c: HTTP answers, WebSocket frames). */
void rc_io_conn_write_raw(rc_io *io, rc_conn *c, const uint8_t *p, size_t n);
/* The same for two pieces that go out back to back (a header and its payload). */
void rc_io_conn_write_two(rc_io *io, rc_conn *c, const uint8_t *a, size_t na, const uint8_t *b, size_t nb);
/* One map (a WebSocket message's MessagePack) for c's session. */
void rc_io_conn_message(rc_io *io, rc_conn *c, const uint8_t *map, size_t len);
/* Whether c's session takes another request now (out_reading). */
bool rc_io_conn_reading(rc_io *io, rc_conn *c);
/* Reads nothing more; closes once the output has been sent. */
void rc_io_conn_close_after_output(rc_io *io, rc_conn *c);

/* ---- letters.c: the io side's dead letters ---- */

/* A send that never reached its shard becomes a dead letter of `reason`. */
void rc_io_letter_refused(rc_io *io, const rc_job *j, rc_letter_reason reason, const char *why);
/* A slow consumer past outbound_high_bytes: its msgs become letters. */
bool rc_io_past_high(const rc_io *io, const rc_conn *c);
/* Turns one encoded `msg` for c into a slow_consumer letter; false when
 * the frame is not a msg (replies are queued up to the kill bound). */
bool rc_io_letter_delivery(rc_io *io, rc_conn *c, const uint8_t *p, uint32_t len);
/* One encoded `msg` a reader catching up missed and history no longer
 * holds (net/catchup.c): a slow_consumer letter to c's user, owed to it. */
void rc_io_letter_lost(rc_io *io, rc_conn *c, const uint8_t *p, uint32_t len, const char *why);
/* A replayed slow_consumer letter reaching one subscriber (ARCHITECTURE §7). */
void rc_io_redeliver(rc_io *io, rc_conn *c, const rc_frame *f);
/* The stop deadline passed: what c never got becomes `shutdown` letters. */
void rc_io_letter_queued_output(rc_io *io, rc_conn *c);

/* Closes c after a `bye` {reason} (sent after what is queued). */
void rc_io_conn_bye(rc_io *io, rc_conn *c, const char *reason);

/* ---- catchup.c: slow readers that catch up from history ---- */

/* A live msg for c, a slow consumer past outbound_high_bytes or behind in
 * the msg's group: true when it is skipped (c catches up from history) and
 * the delivery's reference went with it (held until the reader has it or it
 * became a letter). */
bool rc_catchup_skip(rc_io *io, rc_conn *c, rc_frame *f);
/* c's output drained: asks for the next page of a group it is behind in. */
void rc_catchup_pump(rc_io *io, rc_conn *c);
/* One page ended (an RC_FRAME_CAUGHT_UP frame). */
void rc_catchup_done(rc_io *io, rc_conn *c, const rc_frame *f);
/* c left g: nothing more to catch up there. */
void rc_catchup_forget(rc_io *io, rc_conn *c, rc_str g);
void rc_catchup_free(rc_io *io, rc_conn *c);

/* ---- handoff.c: requests to shards ---- */

uint32_t rc_handoff_shard_of(rc_io *io, const char *g, uint32_t len);
/* Picks up a route the server published since the last turn (route.h). */
void rc_handoff_follow_route(rc_io *io);
/* Queues a job for its shard (owner: the connection it came from, or
 * NULL); never blocks or drops. */
void rc_handoff_queue(rc_io *io, rc_job *j, uint32_t shard, rc_conn *owner);
/* Queues a request as a job for its group's shard, from `from`. */
void rc_handoff_route(rc_io *io, rc_conn *c, rc_job_kind kind, rc_str from, const rc_msg *m);
/* Pushes what the shards' rings admit; holds the connections whose jobs wait. */
void rc_handoff_flush(rc_io *io);
/* Reads again the held connections that became readable (rc_handoff_wake
 * lists one whose reason to be held went away). */
void rc_handoff_resume(rc_io *io);
void rc_handoff_wake(rc_io *io, rc_conn *c);
/* The shard answered one of c's reply-heavy requests (RC_FRAME_ANSWERED). */
void rc_handoff_answered(rc_io *io, rc_conn *c);
/* After a send: holds its sender while a reader is over the pause mark;
 * and releases the held senders once none is. */
void rc_handoff_hold_sender(rc_io *io, rc_conn *c);
void rc_handoff_release_senders(rc_io *io);
/* Jobs waiting for their rings. */
uint32_t rc_handoff_waiting(const rc_io *io);
/* Stop: input stopped and every job is in: the server may queue its stop
 * barrier (io->input_stopped); past the deadline, what still waits is
 * refused (E_SHUTTING_DOWN, `shutdown` letters). */
void rc_handoff_ack_input_stopped(rc_io *io);
void rc_handoff_refuse_all(rc_io *io);

#endif
