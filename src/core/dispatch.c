/* Frames, jobs and wake-ups shared by io threads and shards (see dispatch.h). */
#include "core/dispatch.h"

#include "core/ring.h"

#include <linux/futex.h>
#include <limits.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

rc_frame *rc_frame_alloc(size_t cap)
{
    rc_frame *f = malloc(sizeof(*f) + cap);
    if (!f)
        return NULL;
    atomic_init(&f->refs, 1);
    f->len = 0;
    f->kind = RC_FRAME_WIRE;
    return f;
}

rc_frame *rc_frame_new(const uint8_t *p, uint32_t len)
{
    rc_frame *f = rc_frame_alloc(len);
    if (!f)
        return NULL;
    f->len = len;
    memcpy(f->data, p, len);
    return f;
}

rc_frame *rc_frame_take(rc_buf *b, size_t from)
{
    rc_frame *f = rc_frame_new(b->data + from, (uint32_t)(b->len - from));
    b->len = from;
    return f;
}

rc_frame *rc_frame_redeliver_new(rc_str to, const uint8_t *wire, uint32_t wire_len)
{
    uint8_t to_len = (uint8_t)to.len; /* user names are at most RC_MAX_USER bytes */
    rc_frame *f = malloc(sizeof(*f) + 1u + to_len + wire_len);
    if (!f)
        return NULL;
    atomic_init(&f->refs, 1);
    f->len = 1u + to_len + wire_len;
    f->kind = RC_FRAME_REDELIVER;
    f->data[0] = to_len;
    memcpy(f->data + 1, to.ptr, to_len);
    memcpy(f->data + 1 + to_len, wire, wire_len);
    return f;
}

rc_job *rc_job_new(rc_job_kind kind, rc_conn_id conn, rc_str user, const rc_msg *m)
{
    uint32_t g_len = m ? m->g.len : 0, mid_len = m ? m->mid.len : 0, body_len = m ? m->body.len : 0;
    uint32_t to_len = m && (m->has & RC_HAS_TO) ? m->to.len : 0;
    rc_job *j = malloc(sizeof(*j) + g_len + user.len + mid_len + body_len + to_len);
    if (!j)
        return NULL;
    memset(j, 0, sizeof(*j));
    j->kind = kind;
    j->conn = conn;
    j->g_len = (uint16_t)g_len;
    j->user_len = (uint8_t)user.len;
    j->mid_len = (uint8_t)mid_len;
    j->body_len = body_len;
    j->to_len = (uint8_t)to_len;
    if (m) {
        j->has = m->has;
        j->rid = m->rid;
        j->since = m->since;
        j->before = m->before;
        j->limit = m->limit;
        j->seq = m->seq;
        j->ts = m->ts;
        j->body_is_str = m->body_is_str;
        j->presence = m->presence;
        j->publish = m->type == RC_T_PUBLISH;
        j->receipts = m->receipts;
        if (g_len)
            memcpy(j->data, m->g.ptr, g_len);
        if (mid_len)
            memcpy(j->data + g_len + user.len, m->mid.ptr, mid_len);
        if (body_len)
            memcpy(j->data + g_len + user.len + mid_len, m->body.ptr, body_len);
        if (to_len)
            memcpy(j->data + g_len + user.len + mid_len + body_len, m->to.ptr, to_len);
    }
    if (user.len)
        memcpy(j->data + g_len, user.ptr, user.len);
    return j;
}

int rc_waker_init(rc_waker *w)
{
    atomic_init(&w->sleeping, 0);
    w->efd = eventfd(0, EFD_CLOEXEC);
    return w->efd < 0 ? -1 : 0;
}

void rc_waker_close(rc_waker *w)
{
    if (w->efd >= 0)
        close(w->efd);
    w->efd = -1;
}

void rc_waker_kick(rc_waker *w)
{
    uint64_t one = 1;
    ssize_t r = write(w->efd, &one, sizeof(one));
    (void)r; /* EAGAIN means the counter is already non-zero: the consumer wakes anyway */
}

void rc_waker_wake(rc_waker *w)
{
    /* acq_rel RMW on `sleeping`: every access to the flag is an RMW, so all
     * of them sit in one modification order. Either this RMW reads the
     * consumer's "1" (and we wake it), or the consumer's later exchange reads
     * our RMW, which releases our ring push to its acquire, so its re-check
     * of the ring sees the item. No fence needed (and ThreadSanitizer can
     * check it). */
    if (atomic_fetch_or_explicit(&w->sleeping, 0, memory_order_acq_rel))
        rc_waker_kick(w);
}

int rc_waker_prepare_sleep(rc_waker *w)
{
    /* acq_rel: pairs with rc_waker_wake's RMW (see there). */
    return atomic_exchange_explicit(&w->sleeping, 1, memory_order_acq_rel);
}

void rc_waker_awake(rc_waker *w)
{
    atomic_exchange_explicit(&w->sleeping, 0, memory_order_acq_rel);
}

uint32_t rc_room_prepare(rc_room *r)
{
    uint32_t seq = atomic_load_explicit(&r->seq, memory_order_acquire);
    /* acq_rel: pairs with rc_room_taken's RMW. Either that RMW reads this
     * announcement (and wakes us), or ours reads it, which releases the
     * consumer's take to us, so our re-check of the ring sees the room. */
    atomic_fetch_add_explicit(&r->waiters, 1, memory_order_acq_rel);
    return seq;
}

void rc_room_wait(rc_room *r, uint32_t seq, uint64_t max_ns)
{
    struct timespec ts = { .tv_sec = (time_t)(max_ns / 1000000000u), .tv_nsec = (long)(max_ns % 1000000000u) };
    /* Returns at once when seq moved on since rc_room_prepare read it. */
    syscall(SYS_futex, &r->seq, FUTEX_WAIT_PRIVATE, seq, &ts, NULL, 0);
    atomic_fetch_sub_explicit(&r->waiters, 1, memory_order_acq_rel);
}

void rc_room_cancel(rc_room *r)
{
    atomic_fetch_sub_explicit(&r->waiters, 1, memory_order_acq_rel);
}

void rc_room_taken(rc_room *r)
{
    if (atomic_fetch_or_explicit(&r->waiters, 0, memory_order_acq_rel) == 0)
        return;
    atomic_fetch_add_explicit(&r->seq, 1, memory_order_release);
    syscall(SYS_futex, &r->seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

void rc_outbatch_recycle(rc_outbatch *b)
{
    b->n = 0;
    if (!b->home || !rc_ring_enqueue(b->home, b))
        free(b);
}
