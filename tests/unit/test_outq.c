/*
 * Tests of a connection's output queue (src/net/outq.h), without sockets:
 * the iovec a send is prepared with, whole and short sends (inside a frame
 * and at a frame boundary), sends of more than RC_OUTQ_IOV frames, growth
 * and wrap-around of the ring, the frames not covered by the send in
 * flight, the memory an idle queue gives back, and the reference counts of
 * the frames it holds. The kernel is played by the test: it "takes" n bytes
 * of the prepared iovec and checks them against the stream it expects.
 */
#include "net/outq.h"

#include <CUnit/Basic.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define FRAME_ID_BYTES 4u  /* a frame starts with its id (little-endian) */
#define FRAME_LEN_SPREAD 29u
#define WRAP_CYCLES 20000u
#define WRAP_MAX_QUEUED 40u /* under 64 slots: the ring wraps rather than grows */
#define WRAP_CAP_LIMIT 64u

/* Frame id's byte j: the id itself first, then a pattern of id and j. */
static uint8_t frame_byte(uint32_t id, uint32_t j)
{
    if (j < FRAME_ID_BYTES)
        return (uint8_t)(id >> (8 * j));
    return (uint8_t)(id * 31u + j * 7u);
}

static uint32_t frame_len(uint32_t id)
{
    return FRAME_ID_BYTES + id % FRAME_LEN_SPREAD;
}

/* A frame whose payload identifies it, with one reference (the queue's). */
static rc_frame *frame(uint32_t id)
{
    uint8_t buf[FRAME_ID_BYTES + FRAME_LEN_SPREAD];
    uint32_t len = frame_len(id);
    for (uint32_t j = 0; j < len; j++)
        buf[j] = frame_byte(id, j);
    rc_frame *f = rc_frame_new(buf, len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    return f;
}

/* The same, with an extra reference the test holds (refs == 2). */
static rc_frame *held(uint32_t id)
{
    rc_frame *f = frame(id);
    rc_frame_ref(f, 1);
    return f;
}

static uint32_t refs(rc_frame *f)
{
    return atomic_load(&f->refs);
}

static void push(rc_outq *q, rc_frame *f)
{
    CU_ASSERT_EQUAL_FATAL(rc_outq_push(q, f), 0);
}

static size_t iov_bytes(const struct msghdr *m)
{
    size_t sum = 0;
    for (size_t i = 0; i < m->msg_iovlen; i++)
        sum += m->msg_iov[i].iov_len;
    return sum;
}

/* The byte stream a peer expects: frame `id`, `off` bytes into it. */
typedef struct stream {
    uint32_t id, off;
} stream;

/* Takes n bytes of the prepared send like the kernel would, checking each
 * against the stream. Returns false at the first byte out of order. */
/* The test's own references: each frame is back to just it, then dropped. */
static void release(rc_frame **f, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        CU_ASSERT_EQUAL(refs(f[i]), 1);
        rc_frame_unref(f[i]);
    }
}

static bool take(const struct msghdr *m, size_t n, stream *s)
{
    for (size_t i = 0; i < m->msg_iovlen && n > 0; i++) {
        const uint8_t *p = m->msg_iov[i].iov_base;
        for (size_t j = 0; j < m->msg_iov[i].iov_len && n > 0; j++, n--) {
            if (p[j] != frame_byte(s->id, s->off))
                return false;
            if (++s->off == frame_len(s->id)) {
                s->id++;
                s->off = 0;
            }
        }
    }
    return n == 0;
}

static void test_push_prepare(void)
{
    rc_outq q = { 0 };
    CU_ASSERT_TRUE(rc_outq_empty(&q));
    CU_ASSERT_PTR_NULL(rc_outq_prepare(&q)); /* nothing to send */
    CU_ASSERT_EQUAL(q.inflight, 0);

    enum { N = 7 };
    rc_frame *f[N];
    size_t sum = 0;
    for (uint32_t i = 0; i < N; i++) {
        push(&q, f[i] = frame(i));
        sum += f[i]->len;
        CU_ASSERT_EQUAL(rc_outq_bytes(&q), sum);
    }
    CU_ASSERT_FALSE(rc_outq_empty(&q));
    struct msghdr *m = rc_outq_prepare(&q);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL_FATAL(m->msg_iovlen, N);
    for (uint32_t i = 0; i < N; i++) {
        CU_ASSERT_PTR_EQUAL(m->msg_iov[i].iov_base, f[i]->data);
        CU_ASSERT_EQUAL(m->msg_iov[i].iov_len, f[i]->len);
    }
    CU_ASSERT_EQUAL(iov_bytes(m), sum);
    CU_ASSERT_EQUAL(rc_outq_bytes(&q), sum); /* in flight still counts */
    CU_ASSERT_PTR_NULL(m->msg_name);
    CU_ASSERT_PTR_NULL(m->msg_control);
    CU_ASSERT_EQUAL(q.inflight, N);
    rc_outq_free(&q);
}

static void test_whole_send(void)
{
    rc_outq q = { 0 };
    enum { SENT = 3, LATE = 2 };
    rc_frame *f[SENT + LATE];
    size_t sent = 0, late = 0;
    for (uint32_t i = 0; i < SENT; i++) {
        push(&q, f[i] = held(i));
        sent += f[i]->len;
    }
    struct msghdr *m = rc_outq_prepare(&q);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->msg_iovlen, SENT);
    /* Pushed while the send is in flight: not part of it. */
    for (uint32_t i = SENT; i < SENT + LATE; i++) {
        push(&q, f[i] = held(i));
        late += f[i]->len;
    }
    CU_ASSERT_EQUAL(m->msg_iovlen, SENT);
    stream s = { 0, 0 };
    CU_ASSERT_TRUE(take(m, sent, &s));

    CU_ASSERT_TRUE(rc_outq_sent(&q, sent));
    for (uint32_t i = 0; i < SENT; i++)
        CU_ASSERT_EQUAL(refs(f[i]), 1); /* the queue's reference dropped */
    for (uint32_t i = SENT; i < SENT + LATE; i++)
        CU_ASSERT_EQUAL(refs(f[i]), 2); /* still queued */
    CU_ASSERT_EQUAL(q.n, LATE);
    CU_ASSERT_EQUAL(q.inflight, 0);
    CU_ASSERT_EQUAL(rc_outq_bytes(&q), late);

    m = rc_outq_prepare(&q);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL_FATAL(m->msg_iovlen, LATE);
    CU_ASSERT_PTR_EQUAL(m->msg_iov[0].iov_base, f[SENT]->data);
    CU_ASSERT_TRUE(take(m, late, &s));
    CU_ASSERT_TRUE(rc_outq_sent(&q, late));
    CU_ASSERT_TRUE(rc_outq_empty(&q));
    CU_ASSERT_EQUAL(rc_outq_bytes(&q), 0);
    release(f, SENT + LATE);
    rc_outq_free(&q);
}

static void test_short_send_inside_frame(void)
{
    rc_outq q = { 0 };
    rc_frame *f[3];
    size_t total = 0;
    for (uint32_t i = 0; i < 3; i++) {
        push(&q, f[i] = held(10 + i)); /* lengths 14, 15, 16 */
        total += f[i]->len;
    }
    const uint32_t into = 5; /* bytes of f[1] the short send takes */
    size_t n = f[0]->len + into;

    struct msghdr *m = rc_outq_prepare(&q);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    stream s = { 10, 0 };
    CU_ASSERT_TRUE(take(m, n, &s));
    CU_ASSERT_FALSE(rc_outq_sent(&q, n));
    CU_ASSERT_EQUAL(refs(f[0]), 1); /* left whole */
    CU_ASSERT_EQUAL(refs(f[1]), 2); /* partly sent: still queued */
    CU_ASSERT_EQUAL(q.n, 2);
    CU_ASSERT_EQUAL(q.head_off, into);
    CU_ASSERT_EQUAL(rc_outq_bytes(&q), total - n);

    /* The rest of the send: from inside f[1]. */
    m = rc_outq_prepare(&q);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL_FATAL(m->msg_iovlen, 2);
    CU_ASSERT_PTR_EQUAL(m->msg_iov[0].iov_base, f[1]->data + into);
    CU_ASSERT_EQUAL(m->msg_iov[0].iov_len, f[1]->len - into);
    CU_ASSERT_PTR_EQUAL(m->msg_iov[1].iov_base, f[2]->data);
    CU_ASSERT_EQUAL(m->msg_iov[1].iov_len, f[2]->len);
    CU_ASSERT_EQUAL(iov_bytes(m), total - n);

    /* Short again, one byte short of finishing f[1]; then one byte more. */
    n = f[1]->len - into - 1;
    CU_ASSERT_TRUE(take(m, n, &s));
    CU_ASSERT_FALSE(rc_outq_sent(&q, n));
    CU_ASSERT_EQUAL(q.head_off, f[1]->len - 1);
    CU_ASSERT_EQUAL(refs(f[1]), 2);
    m = rc_outq_prepare(&q);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_PTR_EQUAL(m->msg_iov[0].iov_base, f[1]->data + f[1]->len - 1);
    CU_ASSERT_EQUAL(m->msg_iov[0].iov_len, 1);
    CU_ASSERT_TRUE(take(m, 1, &s));
    CU_ASSERT_FALSE(rc_outq_sent(&q, 1)); /* f[2] still to go */
    CU_ASSERT_EQUAL(refs(f[1]), 1);          /* finished: popped */
    CU_ASSERT_EQUAL(q.head_off, 0);
    CU_ASSERT_EQUAL(q.n, 1);

    m = rc_outq_prepare(&q);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->msg_iovlen, 1);
    CU_ASSERT_PTR_EQUAL(m->msg_iov[0].iov_base, f[2]->data);
    CU_ASSERT_TRUE(take(m, f[2]->len, &s));
    CU_ASSERT_TRUE(rc_outq_sent(&q, f[2]->len));
    CU_ASSERT_TRUE(rc_outq_empty(&q));
    CU_ASSERT_EQUAL(rc_outq_bytes(&q), 0);
    CU_ASSERT_EQUAL(s.id, 13);
    release(f, 3);
    rc_outq_free(&q);
}

static void test_short_send_at_boundary(void)
{
    rc_outq q = { 0 };
    rc_frame *f[3];
    size_t total = 0;
    for (uint32_t i = 0; i < 3; i++) {
        push(&q, f[i] = held(i));
        total += f[i]->len;
    }
    struct msghdr *m = rc_outq_prepare(&q);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    size_t n = f[0]->len + f[1]->len; /* ends exactly where f[2] starts */
    CU_ASSERT_FALSE(rc_outq_sent(&q, n));
    CU_ASSERT_EQUAL(refs(f[0]), 1);
    CU_ASSERT_EQUAL(refs(f[1]), 1);
    CU_ASSERT_EQUAL(refs(f[2]), 2);
    CU_ASSERT_EQUAL(q.head_off, 0);
    CU_ASSERT_EQUAL(rc_outq_bytes(&q), total - n);

    m = rc_outq_prepare(&q);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL_FATAL(m->msg_iovlen, 1);
    CU_ASSERT_PTR_EQUAL(m->msg_iov[0].iov_base, f[2]->data);
    CU_ASSERT_EQUAL(m->msg_iov[0].iov_len, f[2]->len);
    CU_ASSERT_TRUE(rc_outq_sent(&q, f[2]->len));
    CU_ASSERT_TRUE(rc_outq_empty(&q));
    release(f, 3);
    rc_outq_free(&q);
}

static void test_more_than_iov(void)
{
    rc_outq q = { 0 };
    const uint32_t extra = 5, total = 2 * RC_OUTQ_IOV + extra;
    for (uint32_t i = 0; i < total; i++)
        push(&q, frame(i));
    stream s = { 0, 0 };
    const uint32_t expect[] = { RC_OUTQ_IOV, RC_OUTQ_IOV, extra };
    for (size_t k = 0; k < sizeof expect / sizeof expect[0]; k++) {
        struct msghdr *m = rc_outq_prepare(&q);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        CU_ASSERT_EQUAL_FATAL(m->msg_iovlen, expect[k]);
        uint32_t first = s.id;
        size_t n = iov_bytes(m);
        CU_ASSERT_TRUE(take(m, n, &s));
        CU_ASSERT_EQUAL(s.id, first + expect[k]);
        CU_ASSERT_TRUE(rc_outq_sent(&q, n));
        size_t left = 0;
        for (uint32_t i = s.id; i < total; i++)
            left += frame_len(i);
        CU_ASSERT_EQUAL(rc_outq_bytes(&q), left);
        CU_ASSERT_EQUAL(q.n, total - s.id);
    }
    CU_ASSERT_TRUE(rc_outq_empty(&q));
    CU_ASSERT_PTR_NULL(rc_outq_prepare(&q));
    rc_outq_free(&q);
}

/* A ring that has wrapped (live slots at its end and its start) grows:
 * the order survives the unwrapping. */
static void test_grow_wrapped(void)
{
    rc_outq q = { 0 };
    uint32_t next = 0;
    for (; next < 10; next++)
        push(&q, frame(next));
    CU_ASSERT_EQUAL(q.cap, RC_OUTQ_MIN_CAP);
    struct msghdr *m = rc_outq_prepare(&q);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    stream s = { 0, 0 };
    size_t n = frame_len(0) + frame_len(1) + frame_len(2) + 3; /* into frame 3 */
    CU_ASSERT_TRUE(take(m, n, &s));
    CU_ASSERT_FALSE(rc_outq_sent(&q, n));
    CU_ASSERT_EQUAL(q.head, 3);
    while (q.n < RC_OUTQ_MIN_CAP)
        push(&q, frame(next++));
    CU_ASSERT_EQUAL(q.cap, RC_OUTQ_MIN_CAP); /* full and wrapped */
    push(&q, frame(next++));                  /* grows */
    CU_ASSERT_EQUAL(q.cap, 2 * RC_OUTQ_MIN_CAP);
    CU_ASSERT_EQUAL(q.head, 0);
    CU_ASSERT_EQUAL(q.head_off, 3);

    while ((m = rc_outq_prepare(&q))) {
        n = iov_bytes(m);
        CU_ASSERT_TRUE(take(m, n, &s));
        CU_ASSERT_TRUE(rc_outq_sent(&q, n));
    }
    CU_ASSERT_EQUAL(s.id, next);
    CU_ASSERT_EQUAL(s.off, 0);
    CU_ASSERT_EQUAL(rc_outq_bytes(&q), 0);
    rc_outq_free(&q);
}

/* Deterministic pseudo-random numbers (a 32-bit LCG's high bits). */
static uint32_t lcg(uint32_t *state)
{
    *state = *state * 1664525u + 1013904223u;
    return *state >> 8;
}

/* Many push/send cycles with short sends and pushes during a send: the
 * ring wraps many times, every byte arrives once and in order. */
static void test_wraparound(void)
{
    rc_outq q = { 0 };
    uint32_t rnd = 12345, next = 0;
    size_t queued = 0; /* bytes pushed and not yet taken */
    stream s = { 0, 0 };
    uint32_t wraps = 0, prev_head = 0;
    for (uint32_t cycle = 0; cycle < WRAP_CYCLES; cycle++) {
        uint32_t k = lcg(&rnd) % 8;
        for (uint32_t i = 0; i < k && q.n < WRAP_MAX_QUEUED; i++) {
            queued += frame_len(next);
            push(&q, frame(next++));
        }
        struct msghdr *m = rc_outq_prepare(&q);
        if (!m) {
            CU_ASSERT_TRUE(rc_outq_empty(&q));
            continue;
        }
        for (uint32_t i = 0, late = lcg(&rnd) % 3; i < late && q.n < WRAP_MAX_QUEUED; i++) {
            queued += frame_len(next);
            push(&q, frame(next++)); /* during the send: not in it */
        }
        size_t prepared = iov_bytes(m);
        size_t n = lcg(&rnd) % 2 ? prepared : 1 + lcg(&rnd) % prepared;
        if (!take(m, n, &s)) {
            CU_FAIL("bytes out of order");
            break;
        }
        CU_ASSERT_EQUAL(rc_outq_sent(&q, n), n == prepared);
        queued -= n;
        CU_ASSERT_EQUAL(rc_outq_bytes(&q), queued);
        if (q.head < prev_head)
            wraps++;
        prev_head = q.head;
    }
    CU_ASSERT(q.cap <= WRAP_CAP_LIMIT);
    CU_ASSERT(wraps > 100);
    struct msghdr *m;
    while ((m = rc_outq_prepare(&q))) {
        size_t n = iov_bytes(m);
        CU_ASSERT_TRUE(take(m, n, &s));
        CU_ASSERT_TRUE(rc_outq_sent(&q, n));
    }
    CU_ASSERT_EQUAL(s.id, next);
    CU_ASSERT_EQUAL(s.off, 0);
    CU_ASSERT_EQUAL(rc_outq_bytes(&q), 0);
    rc_outq_free(&q);
}

static void test_unsent(void)
{
    rc_outq q = { 0 };
    enum { FLIGHT = 4, LATE = 3 };
    rc_frame *f[FLIGHT + LATE];
    size_t flight = 0;
    for (uint32_t i = 0; i < FLIGHT; i++) {
        push(&q, f[i] = held(i));
        flight += f[i]->len;
    }
    /* No send in flight: every frame is unsent. */
    for (uint32_t i = 0; i < FLIGHT; i++)
        CU_ASSERT_PTR_EQUAL(rc_outq_unsent(&q, i), f[i]);
    CU_ASSERT_PTR_NULL(rc_outq_unsent(&q, FLIGHT));

    /* A short send into f[0], then the rest of it in flight. */
    struct msghdr *m = rc_outq_prepare(&q);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    const uint32_t into = 2;
    CU_ASSERT_FALSE(rc_outq_sent(&q, into));
    flight -= into;
    m = rc_outq_prepare(&q);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->msg_iovlen, FLIGHT);
    CU_ASSERT_PTR_NULL(rc_outq_unsent(&q, 0)); /* all of it in flight */

    for (uint32_t i = FLIGHT; i < FLIGHT + LATE; i++)
        push(&q, f[i] = held(i));
    for (uint32_t i = 0; i < LATE; i++)
        CU_ASSERT_PTR_EQUAL(rc_outq_unsent(&q, i), f[FLIGHT + i]);
    CU_ASSERT_PTR_NULL(rc_outq_unsent(&q, LATE));

    rc_outq_drop_unsent(&q);
    CU_ASSERT_EQUAL(q.n, FLIGHT);
    CU_ASSERT_EQUAL(rc_outq_bytes(&q), flight); /* head_off counted */
    CU_ASSERT_PTR_NULL(rc_outq_unsent(&q, 0));
    for (uint32_t i = 0; i < FLIGHT; i++)
        CU_ASSERT_EQUAL(refs(f[i]), 2);
    for (uint32_t i = FLIGHT; i < FLIGHT + LATE; i++)
        CU_ASSERT_EQUAL(refs(f[i]), 1);

    /* The send in flight completes as prepared. */
    stream s = { 0, into };
    CU_ASSERT_TRUE(take(m, flight, &s));
    CU_ASSERT_TRUE(rc_outq_sent(&q, flight));
    CU_ASSERT_TRUE(rc_outq_empty(&q));
    CU_ASSERT_EQUAL(rc_outq_bytes(&q), 0);
    release(f, FLIGHT + LATE);
    rc_outq_free(&q);
}

/* After a short send and before the next prepare, nothing is in flight: the
 * partly sent head is unsent too, and dropping it leaves a queue that
 * starts the next frame at its first byte. */
static void test_drop_unsent_after_short_send(void)
{
    rc_outq q = { 0 };
    rc_frame *a = held(1), *b = held(2);
    push(&q, a);
    push(&q, b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rc_outq_prepare(&q));
    const uint32_t into = 3;
    CU_ASSERT_FALSE(rc_outq_sent(&q, into));
    CU_ASSERT_EQUAL(rc_outq_bytes(&q), a->len - into + b->len);
    CU_ASSERT_PTR_EQUAL(rc_outq_unsent(&q, 0), a);
    CU_ASSERT_PTR_EQUAL(rc_outq_unsent(&q, 1), b);

    rc_outq_drop_unsent(&q);
    CU_ASSERT_TRUE(rc_outq_empty(&q));
    CU_ASSERT_EQUAL(rc_outq_bytes(&q), 0);
    CU_ASSERT_EQUAL(q.head_off, 0);
    CU_ASSERT_EQUAL(refs(a), 1);
    CU_ASSERT_EQUAL(refs(b), 1);

    rc_frame *c = frame(3);
    push(&q, c);
    CU_ASSERT_EQUAL(rc_outq_bytes(&q), c->len);
    struct msghdr *m = rc_outq_prepare(&q);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_PTR_EQUAL(m->msg_iov[0].iov_base, c->data);
    CU_ASSERT_EQUAL(m->msg_iov[0].iov_len, c->len);
    CU_ASSERT_TRUE(rc_outq_sent(&q, c->len));
    CU_ASSERT_EQUAL(rc_outq_bytes(&q), 0);
    rc_frame_unref(a);
    rc_frame_unref(b);
    rc_outq_free(&q);
}

/* Pushes n frames, then sends them all (some sends short). */
static void fill_and_drain(rc_outq *q, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        push(q, frame(i));
    stream s = { 0, 0 };
    struct msghdr *m;
    bool shorten = true;
    while ((m = rc_outq_prepare(q))) {
        size_t len = iov_bytes(m);
        size_t take_n = shorten && len > 1 ? len - 1 : len;
        shorten = !shorten;
        CU_ASSERT_TRUE(take(m, take_n, &s));
        CU_ASSERT_EQUAL(rc_outq_sent(q, take_n), take_n == len);
    }
    CU_ASSERT_EQUAL(s.id, n);
    CU_ASSERT_EQUAL(rc_outq_bytes(q), 0);
}

static void test_idle_shrink(void)
{
    rc_outq q = { 0 };
    fill_and_drain(&q, RC_OUTQ_IDLE_CAP); /* exactly the idle cap: kept */
    CU_ASSERT_EQUAL(q.cap, RC_OUTQ_IDLE_CAP);
    CU_ASSERT_PTR_NOT_NULL(q.frames);

    fill_and_drain(&q, RC_OUTQ_IDLE_CAP + 1); /* grew past it: given back */
    CU_ASSERT_EQUAL(q.cap, 0);
    CU_ASSERT_PTR_NULL(q.frames);
    CU_ASSERT_EQUAL(q.head, 0);
    CU_ASSERT_EQUAL(q.head_off, 0);

    fill_and_drain(&q, 3); /* and still works */
    CU_ASSERT_EQUAL(q.cap, RC_OUTQ_MIN_CAP);
    rc_outq_free(&q);
}

/* An idle connection's queue keeps a small iovec, not one for RC_OUTQ_IOV
 * frames: 18,000 idle sessions held 16 KiB each (4 KiB resident) before. */
static void test_idle_iov(void)
{
    rc_outq q = { 0 };
    fill_and_drain(&q, 3); /* a few frames a send: the smallest iovec, kept */
    CU_ASSERT_PTR_NOT_NULL(q.iov);
    CU_ASSERT_EQUAL(q.iov_cap, RC_OUTQ_IOV_MIN);

    fill_and_drain(&q, 100); /* sends of up to 100 frames, then idle: given back */
    CU_ASSERT_PTR_NULL(q.iov);
    CU_ASSERT_EQUAL(q.iov_cap, 0);

    for (uint32_t i = 0; i < RC_OUTQ_IOV + 5; i++) /* a send still covers RC_OUTQ_IOV frames */
        push(&q, frame(i));
    struct msghdr *m = rc_outq_prepare(&q);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->msg_iovlen, RC_OUTQ_IOV);
    CU_ASSERT_EQUAL(q.iov_cap, RC_OUTQ_IOV);
    rc_outq_free(&q);
    CU_ASSERT_PTR_NULL(q.iov);
}

static void test_free(void)
{
    rc_outq q = { 0 };
    enum { N = 2 * RC_OUTQ_MIN_CAP + 3 };
    rc_frame *f[N];
    for (uint32_t i = 0; i < N; i++)
        push(&q, f[i] = held(i));
    /* One short send, then another in flight, then more queued behind it. */
    CU_ASSERT_PTR_NOT_NULL_FATAL(rc_outq_prepare(&q));
    CU_ASSERT_FALSE(rc_outq_sent(&q, f[0]->len + 1));
    CU_ASSERT_PTR_NOT_NULL_FATAL(rc_outq_prepare(&q));
    rc_outq_free(&q);
    release(f, N);
    CU_ASSERT_PTR_NULL(q.frames);
    CU_ASSERT_PTR_NULL(q.iov);
    CU_ASSERT_EQUAL(q.n, 0);
    CU_ASSERT_EQUAL(q.cap, 0);
    CU_ASSERT_EQUAL(q.inflight, 0);
    CU_ASSERT_EQUAL(rc_outq_bytes(&q), 0);

    rc_outq_free(&q); /* freeing a freed (empty) queue is harmless */
    rc_outq_free(&q);
}

/* Small frames are copied into the queue's own chunks: the caller keeps
 * its reference (push returns 1), consecutive copies share one chunk and
 * one iovec entry, a full chunk starts another, a chunk in flight is not
 * appended to, and a large frame still goes by reference. */
static void test_copy_small_frames(void)
{
    rc_outq q = { 0 };
    q.copy_max = 64;
    uint8_t small[40];
    memset(small, 'x', sizeof(small));
    rc_frame *f = rc_frame_new(small, sizeof(small));
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(rc_outq_push(&q, f), 1);
    CU_ASSERT_EQUAL(refs(f), 1); /* copied: the queue holds no reference */
    CU_ASSERT_EQUAL(q.n, 1);     /* one chunk */
    CU_ASSERT_EQUAL(rc_outq_bytes(&q), 3 * sizeof(small));
    struct msghdr *m = rc_outq_prepare(&q);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(m->msg_iovlen, 1);
    CU_ASSERT_EQUAL(iov_bytes(m), 3 * sizeof(small));
    /* the chunk is in flight: the next copy opens a new one */
    CU_ASSERT_EQUAL(rc_outq_push(&q, f), 1);
    CU_ASSERT_EQUAL(q.n, 2);
    CU_ASSERT_EQUAL(m->msg_iov[0].iov_len, 3 * sizeof(small)); /* the send in flight is as prepared */
    CU_ASSERT(rc_outq_sent(&q, 3 * sizeof(small)));
    CU_ASSERT_EQUAL(q.n, 1);
    /* a frame over copy_max goes by reference, and ends the chunk */
    uint8_t large[100];
    memset(large, 'y', sizeof(large));
    rc_frame *big = rc_frame_new(large, sizeof(large));
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    rc_frame_ref(big, 1);
    CU_ASSERT_FATAL(big->len > q.copy_max);
    CU_ASSERT_EQUAL(rc_outq_push(&q, big), 0);
    CU_ASSERT_EQUAL(refs(big), 2);
    CU_ASSERT_EQUAL(rc_outq_push(&q, f), 1);
    CU_ASSERT_EQUAL(q.n, 3); /* chunk, big, a new chunk */
    /* fill chunks past RC_OUTQ_CHUNK: they split, bytes stay exact */
    size_t want = rc_outq_bytes(&q);
    for (uint32_t i = 0; i < 2 * RC_OUTQ_CHUNK / sizeof(small); i++) {
        CU_ASSERT_EQUAL_FATAL(rc_outq_push(&q, f), 1);
        want += sizeof(small);
    }
    CU_ASSERT_EQUAL(rc_outq_bytes(&q), want);
    CU_ASSERT(q.n >= 5); /* the chunk after big filled up twice over */
    for (uint32_t i = 0; i < q.n; i++)
        CU_ASSERT(rc_outq_unsent(&q, i)->len <= (rc_outq_unsent(&q, i) == big ? big->len : RC_OUTQ_CHUNK));
    rc_outq_free(&q);
    CU_ASSERT_EQUAL(refs(big), 1);
    rc_frame_unref(big);
    rc_frame_unref(f);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("outq", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "push then prepare", test_push_prepare) ||
        !CU_add_test(s, "whole send", test_whole_send) ||
        !CU_add_test(s, "short send inside a frame", test_short_send_inside_frame) ||
        !CU_add_test(s, "short send at a frame boundary", test_short_send_at_boundary) ||
        !CU_add_test(s, "more than RC_OUTQ_IOV frames", test_more_than_iov) ||
        !CU_add_test(s, "growth of a wrapped ring", test_grow_wrapped) ||
        !CU_add_test(s, "wraparound", test_wraparound) || !CU_add_test(s, "unsent", test_unsent) ||
        !CU_add_test(s, "drop unsent after a short send", test_drop_unsent_after_short_send) ||
        !CU_add_test(s, "idle queue gives its slots back", test_idle_shrink) ||
        !CU_add_test(s, "idle queue keeps a small iovec", test_idle_iov) ||
        !CU_add_test(s, "free drops every reference", test_free) ||
        !CU_add_test(s, "small frames are copied into chunks", test_copy_small_frames)) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failures ? 1 : 0;
}
