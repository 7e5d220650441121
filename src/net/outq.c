/*
 * A connection's output queue (outq.h).
 */
#include "net/outq.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

static rc_frame *at(const rc_outq *q, uint32_t i)
{
    return q->frames[(q->head + i) & (q->cap - 1)];
}

/* Doubles the ring, unwrapping it so the live slots start at 0. */
static int grow(rc_outq *q)
{
    uint32_t cap = q->cap ? q->cap * 2 : RC_OUTQ_MIN_CAP;
    rc_frame **frames = malloc(cap * sizeof(*frames));
    if (!frames)
        return -1;
    for (uint32_t i = 0; i < q->n; i++)
        frames[i] = at(q, i);
    free(q->frames);
    q->frames = frames;
    q->cap = cap;
    q->head = 0;
    return 0;
}

static int append(rc_outq *q, rc_frame *f)
{
    if (q->n == q->cap && grow(q) != 0)
        return -1;
    q->frames[(q->head + q->n) & (q->cap - 1)] = f;
    q->n++;
    q->bytes += f->len;
    return 0;
}

/* The next copy into this chunk comes many deliveries later (one per
 * group the connection shares with each message), and a chunk is memory
 * the cache no longer holds: the lines that copy will write are asked for
 * now, so that they are there by then. */
static inline void prefetch_tail(const rc_frame *c, uint32_t room)
{
    uintptr_t line = (uintptr_t)(c->data + c->len) & ~(uintptr_t)63; /* the tail's line, written already */
    uint32_t ahead = room < RC_OUTQ_PREFETCH ? room : RC_OUTQ_PREFETCH;
    for (uint32_t off = 64; off < ahead + 64; off += 64)
        __builtin_prefetch((const void *)(line + off), 1); /* a hint: never faults */
}

int rc_outq_push_copy(rc_outq *q, const uint8_t *p, size_t n)
{
    /* The last frame is a chunk with room, and not part of the send in
     * flight (whose iovec already has its length): append to it. */
    if (q->tail_room >= n && q->n > q->inflight) {
        rc_frame *c = at(q, q->n - 1);
        memcpy(c->data + c->len, p, n);
        c->len += (uint32_t)n;
        q->tail_room -= (uint32_t)n;
        q->bytes += n;
        prefetch_tail(c, q->tail_room);
        return 0;
    }
    size_t cap = n > RC_OUTQ_CHUNK ? n : RC_OUTQ_CHUNK;
    rc_frame *c = rc_frame_alloc(cap);
    if (!c)
        return -1;
    c->len = (uint32_t)n;
    memcpy(c->data, p, n);
    if (append(q, c) != 0) {
        free(c);
        return -1;
    }
    q->tail_room = (uint32_t)(cap - n);
    prefetch_tail(c, q->tail_room);
    return 0;
}

int rc_outq_push(rc_outq *q, rc_frame *f)
{
    if (f->len <= q->copy_max)
        return rc_outq_push_copy(q, f->data, f->len) == 0 ? 1 : -1;
    if (append(q, f) != 0)
        return -1;
    q->tail_room = 0; /* the last frame is a shared one now */
    return 0;
}

/* Room for k iovec entries: the smallest power of two from RC_OUTQ_IOV_MIN
 * that holds them (k <= RC_OUTQ_IOV). Nothing is in flight, so the old
 * entries need not be kept. */
static int grow_iov(rc_outq *q, uint32_t k)
{
    uint32_t cap = RC_OUTQ_IOV_MIN;
    while (cap < k)
        cap *= 2;
    struct iovec *iov = malloc(cap * sizeof(*iov));
    if (!iov)
        return -1;
    free(q->iov);
    q->iov = iov;
    q->iov_cap = cap;
    return 0;
}

struct msghdr *rc_outq_prepare(rc_outq *q)
{
    assert(q->inflight == 0); /* one send in flight */
    if (q->n == 0)
        return NULL;
    uint32_t k = q->n < RC_OUTQ_IOV ? q->n : RC_OUTQ_IOV;
    if (k > q->iov_cap && grow_iov(q, k) != 0)
        return NULL;
    for (uint32_t i = 0; i < k; i++) {
        rc_frame *f = at(q, i);
        uint32_t off = i == 0 ? q->head_off : 0;
        q->iov[i] = (struct iovec){ f->data + off, f->len - off };
    }
    q->inflight = k;
    memset(&q->msg, 0, sizeof(q->msg));
    q->msg.msg_iov = q->iov;
    q->msg.msg_iovlen = k;
    return &q->msg;
}

static void pop(rc_outq *q)
{
    rc_frame_unref(at(q, 0));
    q->head = (q->head + 1) & (q->cap - 1);
    q->n--;
    q->head_off = 0;
    if (q->n == 0)
        q->tail_room = 0;
}

/* An empty queue that grew large gives its memory back: the frame ring
 * past RC_OUTQ_IDLE_CAP slots, the iovec past RC_OUTQ_IOV_IDLE entries
 * (nothing is in flight once the queue is empty). */
static void shrink_idle(rc_outq *q)
{
    if (q->n != 0)
        return;
    if (q->cap > RC_OUTQ_IDLE_CAP) {
        free(q->frames);
        q->frames = NULL;
        q->cap = q->head = 0;
    }
    if (q->iov_cap > RC_OUTQ_IOV_IDLE) {
        free(q->iov);
        q->iov = NULL;
        q->iov_cap = 0;
    }
}

bool rc_outq_sent(rc_outq *q, size_t n)
{
    assert(n <= q->bytes);
    q->bytes -= n;
    uint32_t covered = q->inflight;
    q->inflight = 0;
    while (n > 0) {
        rc_frame *f = at(q, 0);
        size_t left = f->len - q->head_off;
        if (n < left) {
            q->head_off += (uint32_t)n;
            return false;
        }
        n -= left;
        pop(q);
        covered--;
    }
    shrink_idle(q);
    return covered == 0;
}

rc_frame *rc_outq_unsent(const rc_outq *q, uint32_t i)
{
    uint32_t idx = q->inflight + i;
    return idx < q->n ? at(q, idx) : NULL;
}

void rc_outq_drop_unsent(rc_outq *q)
{
    while (q->n > q->inflight) {
        uint32_t last = q->n - 1;
        rc_frame *f = at(q, last);
        q->bytes -= f->len - (last == 0 ? q->head_off : 0);
        rc_frame_unref(f);
        q->n--;
    }
    if (q->n == 0)
        q->head_off = 0; /* the partly sent head went too: the next frame starts whole */
    q->tail_room = 0; /* the last frame now is one in flight, or none */
}

void rc_outq_free(rc_outq *q)
{
    while (q->n)
        pop(q);
    free(q->frames);
    free(q->iov);
    memset(q, 0, sizeof(*q));
}
