/*
 * io_uring plumbing for one event loop: ring set-up that fits the kernel,
 * the provided receive-buffer ring, SQEs that never fail, submit-and-wait
 * with a timeout, and the user_data packing every completion is decoded
 * from (src/ARCHITECTURE.md §3). Knows nothing of connections or
 * messages: io.c is built on it, the way Redis's networking is built on ae.
 */
#ifndef RC_NET_URING_H
#define RC_NET_URING_H

#include <liburing.h>
#include <stdint.h>

#define RC_URING_BGID 1u      /* provided-buffer group id */
#define RC_URING_CQE_BATCH 256u /* completions taken from the CQ at once */

typedef struct rc_uring {
    struct io_uring ring;
    unsigned flags;                 /* the IORING_SETUP_* the kernel accepted */
    struct io_uring_buf_ring *br;   /* provided receive buffers */
    uint8_t *bufs;                  /* n_bufs * buf_size bytes */
    uint32_t n_bufs, buf_size;
    struct io_uring_cqe *deferred;  /* completions taken off a full CQ, handled next (rc_uring_take_deferred) */
    uint32_t n_deferred, cap_deferred;
} rc_uring;

/* Creates the ring (the best set-up the kernel accepts, see uring.c) and
 * registers n_bufs receive buffers of buf_size bytes. 0, or -1 with a
 * message naming the cause (io_uring disabled, memlock, old kernel). */
int rc_uring_init(rc_uring *u, uint32_t depth, uint32_t n_bufs, uint32_t buf_size, char *err, size_t errlen);
/* From the thread that will drive the ring, before its first submit (that
 * thread becomes the single issuer where the set-up has one). 0 or -errno. */
int rc_uring_enable(rc_uring *u);
void rc_uring_destroy(rc_uring *u);

/* An SQE; when the SQ is full, what is queued is submitted first. */
struct io_uring_sqe *rc_uring_sqe(rc_uring *u);

/* Submits, then waits for at least one completion when `wait`, for at
 * most timeout_ns when that is not 0. The liburing result. */
int rc_uring_submit_wait(rc_uring *u, unsigned wait, uint64_t timeout_ns);

/* Receive buffer bid's bytes, and giving it back to the kernel. */
static inline uint8_t *rc_uring_buf(const rc_uring *u, uint32_t bid)
{
    return u->bufs + (size_t)bid * u->buf_size;
}
void rc_uring_recycle(rc_uring *u, uint32_t bid);

/* user_data: [op 8 bits][slot 24 bits][generation 32 bits]. */
static inline uint64_t rc_ud_make(unsigned op, uint32_t slot, uint32_t gen)
{
    return ((uint64_t)op << 56) | ((uint64_t)(slot & 0xffffffu) << 32) | gen;
}
static inline unsigned rc_ud_op(uint64_t ud) { return (unsigned)(ud >> 56); }
static inline uint32_t rc_ud_slot(uint64_t ud) { return (uint32_t)(ud >> 32) & 0xffffffu; }
static inline uint32_t rc_ud_gen(uint64_t ud) { return (uint32_t)ud; }

#endif
