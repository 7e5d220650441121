/*
 * The allocator gives freed memory back (src/ARCHITECTURE.md §8,
 * "allocator"). ringcastd links jemalloc, which returns a freed page to the
 * system dirty_decay_ms after its release only if something purges it; its
 * background threads (RC_MALLOC_CONF in src/app/ringcastd.c) do that for
 * every arena, also for one no thread allocates from any more, so a server
 * that goes quiet after a burst shrinks back.
 *
 * The test needs a ringcastd linked with jemalloc: $RINGCASTD is the
 * non-sanitized ringcastd-jemalloc the test build makes for it. It checks:
 *  - /metrics says ringcast_allocator_background_thread 1;
 *  - after a burst that frees BURST_CONNS × PARTIAL_BYTES of input buffers
 *    at once (connections each holding most of a frame, then closed) and
 *    nothing else, ringcast_allocator_dirty_bytes falls below DIRTY_BOUND
 *    and VmRSS comes back to within RSS_BOUND_KB of where it was before the
 *    burst, both within SETTLE_MS (after a first burst, which also brings
 *    the receive buffers into memory). Without the background threads the
 *    pages stay resident: the io thread that freed them allocates nothing
 *    while the server is idle.
 */
#define _GNU_SOURCE
#include "itest.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#define BURST_CONNS 256
#define PARTIAL_BYTES 60000             /* of a frame of FRAME_BYTES: under max_frame */
#define FRAME_BYTES 60100
#define BURST_HELD_MIN (12 * 1024 * 1024) /* the burst must have held at least this much */
#define DIRTY_BOUND (4 * 1024 * 1024)
#define RSS_BOUND_KB (6 * 1024)
#define SETTLE_MS 30000                 /* many times dirty_decay_ms (2 s, src/app/ringcastd.c) */
#define STEP_MS 250

static it_server srv;

static int cleanup(void)
{
    return it_cleanup(&srv);
}

static double metric(const char *name)
{
    return rc_test_metric(srv.s.admin_port, name, 0);
}

static void test_background_thread_on(void)
{
    CU_ASSERT_FATAL(it_start(&srv, NULL) == 0);
    CU_ASSERT(metric("ringcast_allocator_background_thread ") == 1);
    CU_ASSERT(metric("ringcast_allocator_allocated_bytes ") > 0);
    CU_ASSERT(metric("ringcast_allocator_resident_bytes ") >= metric("ringcast_allocator_active_bytes "));
    CU_ASSERT(it_stop(&srv) == 0);
}

/* Sends the length prefix of a FRAME_BYTES frame and PARTIAL_BYTES of it. */
static int send_partial(int fd, const char *fill)
{
    uint32_t len = htonl(FRAME_BYTES);
    if (send(fd, &len, sizeof(len), MSG_NOSIGNAL) != (ssize_t)sizeof(len))
        return -1;
    for (size_t off = 0; off < PARTIAL_BYTES;) {
        ssize_t n = send(fd, fill + off, PARTIAL_BYTES - off, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    return 0;
}

/* Opens BURST_CONNS connections that each hold most of a frame, waits until
 * the server holds their input, closes them and waits until it has closed
 * them too. Returns VmRSS (kB) just after, or -1. */
static long burst(void)
{
    static char fill[PARTIAL_BYTES];
    memset(fill, 0xa1, sizeof(fill)); /* a str8..32 never ends here: the frame stays incomplete */
    int fds[BURST_CONNS], open = 0;
    for (int i = 0; i < BURST_CONNS; i++) {
        fds[i] = rc_test_tcp_connect(srv.s.port, IT_TIMEOUT_MS);
        if (fds[i] >= 0 && send_partial(fds[i], fill) == 0)
            open++;
    }
    double held = 0;
    for (int64_t end = it_now_ms() + IT_SETTLE_MS; it_now_ms() < end; it_sleep_ms(STEP_MS)) {
        held = metric("ringcast_allocator_allocated_bytes ");
        if (held >= BURST_HELD_MIN)
            break;
    }
    for (int i = 0; i < BURST_CONNS; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    bool closed = it_wait_metric(&srv, IT_OPEN_CONNS, 0) == 0;
    if (!(open == BURST_CONNS && held >= BURST_HELD_MIN && closed))
        printf("\n  burst: %d of %d connections held their partial frame, the allocator held %.0f bytes "
               "(at least %d wanted), the server %s closed them\n", open, BURST_CONNS, held, BURST_HELD_MIN,
               closed ? "has" : "has not");
    CU_ASSERT(open == BURST_CONNS && held >= BURST_HELD_MIN && closed);
    return open == BURST_CONNS && held >= BURST_HELD_MIN && closed ? rc_test_rss_kb(srv.s.pid) : -1;
}

/* Waits up to SETTLE_MS until the allocator holds less than DIRTY_BOUND of
 * freed pages and, when rss_max_kb >= 0, VmRSS is below it. */
static bool settles(long rss_max_kb, double *dirty, long *rss)
{
    for (int64_t end = it_now_ms() + SETTLE_MS; it_now_ms() < end; it_sleep_ms(STEP_MS)) {
        *dirty = metric("ringcast_allocator_dirty_bytes ");
        *rss = rc_test_rss_kb(srv.s.pid);
        if (*dirty >= 0 && *dirty < DIRTY_BOUND && (rss_max_kb < 0 || *rss < rss_max_kb))
            return true;
    }
    return false;
}

static void test_burst_given_back(void)
{
    CU_ASSERT_FATAL(it_start(&srv, NULL) == 0);
    /* The io thread's receive buffers (recv_buffers x recv_buffer_size) are
     * resident from the start (src/net/uring.c); the first burst brings in
     * what else a burst leaves behind by design (thread caches, the
     * connection table), so the second measures what is given back. */
    double dirty = -1;
    long rss = -1;
    CU_ASSERT_FATAL(burst() > 0);
    CU_ASSERT(settles(-1, &dirty, &rss));
    long before = rc_test_rss_kb(srv.s.pid);
    long peak = burst();
    CU_ASSERT_FATAL(peak > 0);
    bool back = settles(before + RSS_BOUND_KB, &dirty, &rss);
    printf("\n  VmRSS %ld kB before the burst, %ld kB when it ended, %ld kB after; allocator: allocated %.0f, "
           "active %.0f, resident %.0f, dirty %.0f bytes\n", before, peak, rss,
           metric("ringcast_allocator_allocated_bytes "), metric("ringcast_allocator_active_bytes "),
           metric("ringcast_allocator_resident_bytes "), dirty);
    CU_ASSERT(peak - before >= BURST_HELD_MIN / 1024 / 2); /* the burst showed */
    CU_ASSERT(back);
    CU_ASSERT(dirty >= 0 && dirty < DIRTY_BOUND);
    CU_ASSERT(rss - before < RSS_BOUND_KB);
    CU_ASSERT(it_stop(&srv) == 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite su = CU_add_suite("allocator", NULL, cleanup);
    CU_add_test(su, "background threads purge the allocator's arenas", test_background_thread_on);
    CU_add_test(su, "memory freed by a burst is given back when idle", test_burst_given_back);
    return rc_test_run();
}
