/*
 * A connection's output queue: encoded frames, oldest first, sent in order
 * by one sendmsg at a time whose iovec points straight into the frames
 * (src/ARCHITECTURE.md §3.3). A large `msg` frame, encoded once by its shard
 * and shared by every recipient, is queued by reference: a pointer, not a
 * copy, and the kernel copies its bytes once, into the socket. Small frames
 * (up to copy_max bytes) are copied instead into a chunk the queue owns:
 * for a 150-byte message the copy is cheaper than an iovec entry and a
 * reference count each, and one chunk sends many of them.
 *
 * One send in flight per connection (two could reorder bytes when the
 * socket buffer fills): rc_outq_prepare builds the iovec of the next send,
 * rc_outq_sent consumes what the kernel took and drops the references of
 * the frames that left whole. No I/O here; the io thread submits.
 */
#ifndef RC_NET_OUTQ_H
#define RC_NET_OUTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "core/dispatch.h"

#define RC_OUTQ_IOV 1024u      /* frames one send covers at most (UIO_MAXIOV) */
#define RC_OUTQ_MIN_CAP 16u    /* first frame slots of a queue */
#define RC_OUTQ_IDLE_CAP 1024u /* an empty queue keeps at most this many slots */
#define RC_OUTQ_CHUNK 8000u    /* bytes of a chunk small frames are copied into (with its header, within an 8 KiB allocation class) */
#define RC_OUTQ_PREFETCH 192u  /* bytes past a chunk's tail asked into the cache after each copy into it (rc_outq_push_copy) */
#define RC_OUTQ_IOV_MIN 16u    /* first iovec entries of a queue; doubles up to RC_OUTQ_IOV as sends cover more frames */
#define RC_OUTQ_IOV_IDLE 16u   /* an empty queue keeps an iovec of at most this many entries (an idle connection holds 256 bytes, not 16 KiB) */

typedef struct rc_outq {
    rc_frame **frames;     /* ring of cap slots, live ones [head, head + n) */
    uint32_t head, n, cap; /* cap: power of two (0 until the first push) */
    uint32_t head_off;     /* bytes of frames[head] already sent */
    uint32_t inflight;     /* frames the prepared send covers (0: none in flight) */
    size_t bytes;          /* bytes not yet sent, in flight included */
    uint32_t copy_max;     /* frames of at most this many bytes are copied into a chunk (0: never) */
    uint32_t tail_room;    /* bytes still free in the last frame when it is such a chunk (0 otherwise) */
    struct iovec *iov;     /* iov_cap entries (NULL until the first send, and again once idle after a larger one) */
    uint32_t iov_cap;      /* power of two, RC_OUTQ_IOV_MIN..RC_OUTQ_IOV, or 0 */
    struct msghdr msg;     /* the send in flight; stable until its completion */
} rc_outq;

/* Appends f. A frame of more than copy_max bytes is queued by reference,
 * taking over the caller's: 0. A smaller one is copied (rc_outq_push_copy)
 * and the reference stays the caller's: 1. -1 on ENOMEM (the reference is
 * still the caller's). */
int rc_outq_push(rc_outq *q, rc_frame *f);

/* Appends a copy of one encoded frame p[0..n). 0, or -1 on ENOMEM. */
int rc_outq_push_copy(rc_outq *q, const uint8_t *p, size_t n);

static inline size_t rc_outq_bytes(const rc_outq *q) { return q->bytes; }
static inline bool rc_outq_empty(const rc_outq *q) { return q->n == 0; }

/* The next send: up to RC_OUTQ_IOV frames from the head, the first one
 * from head_off. NULL when the queue is empty or out of memory. */
struct msghdr *rc_outq_prepare(rc_outq *q);

/* The kernel took n bytes of the prepared send. Frames sent whole leave
 * the queue (their references dropped). Returns true when the prepared
 * send went out whole (false: a short send, finish it first). */
bool rc_outq_sent(rc_outq *q, size_t n);

/* The i-th frame not covered by the send in flight (0 = the oldest), or
 * NULL past the end: for lettering what never left at a forced stop. A
 * chunk holds several encoded frames back to back. */
rc_frame *rc_outq_unsent(const rc_outq *q, uint32_t i);

/* Drops every frame not covered by the send in flight. */
void rc_outq_drop_unsent(rc_outq *q);

/* Drops every reference and frees the queue's memory. */
void rc_outq_free(rc_outq *q);

#endif
