/*
 * io_uring plumbing (uring.h).
 */
#define _GNU_SOURCE
#include "net/uring.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Ring set-ups, best first; the first the kernel accepts is used.
 *  - SINGLE_ISSUER + DEFER_TASKRUN (6.1+): only the loop's thread submits,
 *    and completion work runs when it asks for events, not by interrupting
 *    it. The ring is created disabled (R_DISABLED) by the thread that sets
 *    the server up and registers the buffer ring; the loop's thread enables
 *    it (rc_uring_enable), which makes it the ring's single issuer.
 *    TASKRUN_FLAG tells liburing when deferred work waits.
 *  - COOP_TASKRUN (5.19+): no interrupting task work either, any issuer.
 *  - plain. */
static const unsigned setups[] = {
    IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
        IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_R_DISABLED,
    IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
    IORING_SETUP_CQSIZE,
};

static int setup_ring(rc_uring *u, uint32_t depth, char *err, size_t errlen)
{
    int r = -EINVAL;
    for (size_t i = 0; i < sizeof(setups) / sizeof(setups[0]) && r == -EINVAL; i++) {
        struct io_uring_params p = { .flags = setups[i], .cq_entries = depth * 2 };
        r = io_uring_queue_init_params(depth, &u->ring, &p);
        if (r == 0)
            u->flags = setups[i];
    }
    if (r != 0) {
        const char *hint = "";
        if (r == -EPERM || r == -ENOSYS)
            hint = " (io_uring is disabled: check the kernel.io_uring_disabled sysctl, "
                   "seccomp profiles of the container, or a kernel built without CONFIG_IO_URING)";
        else if (r == -ENOMEM)
            hint = " (raise RLIMIT_MEMLOCK or free memory)";
        snprintf(err, errlen, "io_uring_queue_init failed: %s%s", strerror(-r), hint);
        return -1;
    }
    return 0;
}

static int setup_buffers(rc_uring *u, char *err, size_t errlen)
{
    size_t ring_bytes = u->n_bufs * sizeof(struct io_uring_buf);
    void *ring_mem = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (ring_mem == MAP_FAILED) {
        snprintf(err, errlen, "cannot map the buffer ring: %s", strerror(errno));
        return -1;
    }
    u->br = ring_mem;
    /* The receive buffers are a fixed reservation (src/ARCHITECTURE.md §8):
     * mapped and populated here, so they are resident from the start and the
     * first flood takes no page faults, and VmRSS does not creep up by
     * however much of them the traffic so far happened to touch. */
    void *bufs = mmap(NULL, (size_t)u->n_bufs * u->buf_size, PROT_READ | PROT_WRITE,
                      MAP_ANONYMOUS | MAP_PRIVATE | MAP_POPULATE, -1, 0);
    if (bufs == MAP_FAILED) {
        snprintf(err, errlen, "cannot map %u receive buffers of %u bytes: %s", u->n_bufs, u->buf_size,
                 strerror(errno));
        return -1;
    }
    u->bufs = bufs;
    struct io_uring_buf_reg reg = { .ring_addr = (unsigned long)ring_mem, .ring_entries = u->n_bufs,
                                    .bgid = RC_URING_BGID };
    int r = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (r != 0) {
        snprintf(err, errlen, "io_uring_register_buf_ring failed: %s (kernel 5.19 or newer is needed)", strerror(-r));
        return -1;
    }
    io_uring_buf_ring_init(u->br);
    for (uint32_t i = 0; i < u->n_bufs; i++)
        io_uring_buf_ring_add(u->br, rc_uring_buf(u, i), u->buf_size, (unsigned short)i,
                              io_uring_buf_ring_mask(u->n_bufs), (int)i);
    io_uring_buf_ring_advance(u->br, (int)u->n_bufs);
    return 0;
}

int rc_uring_init(rc_uring *u, uint32_t depth, uint32_t n_bufs, uint32_t buf_size, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    u->n_bufs = n_bufs;
    u->buf_size = buf_size;
    if (setup_ring(u, depth, err, errlen) != 0)
        return -1;
    return setup_buffers(u, err, errlen);
}

int rc_uring_enable(rc_uring *u)
{
    if (!(u->flags & IORING_SETUP_R_DISABLED))
        return 0;
    /* liburing 2.3's shared library does not export io_uring_enable_rings: the syscall. */
    if (syscall(__NR_io_uring_register, u->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
        return -errno;
    return 0;
}

void rc_uring_destroy(rc_uring *u)
{
    if (u->ring.ring_fd > 0) /* 0: never set up (a zeroed rc_uring) */
        io_uring_queue_exit(&u->ring);
    if (u->br)
        munmap(u->br, u->n_bufs * sizeof(struct io_uring_buf));
    if (u->bufs)
        munmap(u->bufs, (size_t)u->n_bufs * u->buf_size);
    free(u->deferred);
    memset(u, 0, sizeof(*u));
}

/* Moves every completion waiting in the CQ to u->deferred, to be handled
 * first by the next round of completions. Used when the kernel refuses
 * submissions until the CQ has room (-EBUSY), at a point where handling
 * completions directly would re-enter the code that asked for an SQE. */
static void defer_completions(rc_uring *u)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&u->ring, head, cqe) {
        if (u->n_deferred == u->cap_deferred) {
            uint32_t cap = u->cap_deferred ? u->cap_deferred * 2 : RC_URING_CQE_BATCH;
            struct io_uring_cqe *p = realloc(u->deferred, cap * sizeof(*p));
            if (!p)
                break; /* leave the rest in the CQ; it is handled next turn */
            u->deferred = p;
            u->cap_deferred = cap;
        }
        u->deferred[u->n_deferred++] = *cqe;
        n++;
    }
    io_uring_cq_advance(&u->ring, n);
}

struct io_uring_sqe *rc_uring_sqe(rc_uring *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    while (!sqe) {
        /* SQ full: submit what is queued to make room. */
        int r = io_uring_submit(&u->ring);
        if (r == -EBUSY || r == -EAGAIN)
            defer_completions(u);
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

int rc_uring_submit_wait(rc_uring *u, unsigned wait, uint64_t timeout_ns)
{
    if (wait && timeout_ns) {
        struct __kernel_timespec ts = { (long long)(timeout_ns / 1000000000u), (long long)(timeout_ns % 1000000000u) };
        struct io_uring_cqe *cqe;
        return io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
    }
    /* A deferred-taskrun ring posts completions only when asked for events,
     * so a turn that does not wait still asks. */
    if (!wait && (u->flags & IORING_SETUP_DEFER_TASKRUN))
        return io_uring_submit_and_get_events(&u->ring);
    return io_uring_submit_and_wait(&u->ring, wait);
}

void rc_uring_recycle(rc_uring *u, uint32_t bid)
{
    io_uring_buf_ring_add(u->br, rc_uring_buf(u, bid), u->buf_size, (unsigned short)bid,
                          io_uring_buf_ring_mask(u->n_bufs), 0);
    io_uring_buf_ring_advance(u->br, 1);
}
