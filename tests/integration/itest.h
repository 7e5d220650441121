/*
 * Helpers shared by the integration programs (tests/integration/test_*.c).
 *
 * This is a header of static inline functions rather than a .c file because
 * every test_*.c here is built as its own program from that one file; the
 * helpers sit on top of tests/testutil.h (server start/stop, metrics) and the
 * blocking client library (include/ringcast/client.h).
 *
 * What they add:
 *  - it_server: a ringcastd with its own temporary data directory, so no two
 *    servers (or two runs) ever share history, and the directory is removed
 *    when the server stops;
 *  - small blocking steps with a timeout on every receive (it_login, it_next,
 *    it_sync: a ping barrier that counts the `msg` frames delivered before it);
 *  - raw frames built with msgpack-c, for input the encoder would refuse;
 *  - it_pump: a poll(2) reader over many clients that hands every decoded
 *    frame to a callback, for tests that must see every message.
 */
#ifndef RC_ITEST_H
#define RC_ITEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <CUnit/CUnit.h>
#include <ftw.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

#include "ringcast/client.h"
#include "testutil.h"

#define IT_HOST "127.0.0.1"
#define IT_TIMEOUT_MS 5000      /* longest wait for any one reply */
#define IT_MAX_EXTRA_ARGS 24    /* server flags a test may add */
#define IT_SETTLE_MS 5000       /* longest wait for a gauge to settle */
#define IT_POLL_STEP_MS 20      /* sleep between gauge reads */

/* ---- time ---- */

static inline int64_t it_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void it_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ---- server with a private data directory ---- */

typedef struct it_server {
    rc_test_server s;
    char dir[64];
    bool up;
} it_server;

static inline int it_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Starts ringcastd with --data-dir in a fresh temporary directory plus the
 * NULL-terminated extra flags. 0 or -1. */
static inline int it_start(it_server *srv, const char *const *extra)
{
    memset(srv, 0, sizeof(*srv));
    snprintf(srv->dir, sizeof(srv->dir), "/tmp/ringcast-it-XXXXXX");
    if (!mkdtemp(srv->dir))
        return -1;
    const char *args[IT_MAX_EXTRA_ARGS + 3] = { "--data-dir", srv->dir };
    int n = 2;
    for (int i = 0; extra && extra[i] && n < IT_MAX_EXTRA_ARGS + 2; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    if (rc_test_server_start(&srv->s, args) != 0) {
        nftw(srv->dir, it_rm_entry, 8, FTW_DEPTH | FTW_PHYS);
        return -1;
    }
    srv->up = true;
    return 0;
}

/* SIGTERM, wait, remove the data directory; returns the exit status. */
static inline int it_stop(it_server *srv)
{
    if (!srv->up)
        return -1;
    int st = rc_test_server_stop(&srv->s);
    srv->up = false;
    nftw(srv->dir, it_rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return st;
}

/* For a suite's cleanup: stops the server a test left running when a fatal
 * assert ended it early. Always 0. */
static inline int it_cleanup(it_server *srv)
{
    if (srv->up)
        it_stop(srv);
    return 0;
}

/* Waits until the metric (summed over matching lines) equals want. Returns
 * the last value read. */
static inline double it_wait_metric(const it_server *srv, const char *prefix, double want)
{
    double v = -1;
    for (int64_t end = it_now_ms() + IT_SETTLE_MS; it_now_ms() < end; it_sleep_ms(IT_POLL_STEP_MS)) {
        v = rc_test_metric(srv->s.admin_port, prefix, 1);
        if (v == want)
            break;
    }
    return v;
}

#define IT_OPEN_CONNS "ringcast_connections_open{"

/* ---- clients ---- */

/* Connects and says hello as user. 0, or -1 (closed client) / rc_err code. */
static inline int it_login(rc_client *c, const it_server *srv, const char *user)
{
    if (rc_client_connect(c, IT_HOST, srv->s.port, IT_TIMEOUT_MS) != 0) {
        rc_client_close(c);
        return -1;
    }
    int e = rc_client_hello(c, user, IT_TIMEOUT_MS);
    if (e != 0)
        rc_client_close(c);
    return e;
}

/* Next frame with the standard timeout: 1, 0 timeout, -1 closed. */
static inline int it_next(rc_client *c, rc_msg *m)
{
    return rc_client_recv(c, m, IT_TIMEOUT_MS);
}

/* Reads the next frame and says whether it has this type; on a mismatch it
 * prints what came instead, so a failed assert has its cause in the log. */
static inline bool it_expect(rc_client *c, rc_msg *m, rc_type type)
{
    int r = it_next(c, m);
    if (r == 1 && m->type == type)
        return true;
    if (r != 1)
        printf("\n    expected %s, got %s: %s\n", rc_type_name(type), r == 0 ? "nothing (timeout)" : "an error",
               c->err);
    else if (m->type == RC_T_ERR)
        printf("\n    expected %s, got err %s: %.*s\n", rc_type_name(type), rc_err_name(m->code), (int)m->text.len,
               m->text.ptr);
    else
        printf("\n    expected %s, got %s\n", rc_type_name(type), rc_type_name(m->type));
    return false;
}

/* True when m is an `err` with this code, and carries rid when has_rid
 * (and no rid otherwise). */
static inline bool it_is_err(const rc_msg *m, rc_err code, bool has_rid, uint64_t rid)
{
    if (m->type != RC_T_ERR || m->code != code)
        return false;
    if (has_rid)
        return (m->has & RC_HAS_RID) && m->rid == rid;
    return !(m->has & RC_HAS_RID);
}

static inline bool it_str_is(rc_str s, const char *want)
{
    return rc_str_eq(s, rc_str_c(want));
}

/* Sends a request built by the caller (rid set from rid). 0 or -1. */
static inline int it_request(rc_client *c, rc_msg *m, uint64_t rid)
{
    m->has |= RC_HAS_RID;
    m->rid = rid;
    return rc_client_send(c, m);
}

/* Ping barrier: sends ping(rid) and reads up to its pong. Every frame the
 * server queued for this session before the ping arrives first; *msgs counts
 * the `msg` frames among them, *others the other frames. 0, or -1 on
 * timeout, close or a bad reply. */
static inline int it_sync(rc_client *c, uint64_t rid, int *msgs, int *others)
{
    rc_msg m = { .type = RC_T_PING };
    if (it_request(c, &m, rid) != 0)
        return -1;
    int64_t end = it_now_ms() + IT_TIMEOUT_MS;
    for (int i = 0; i < 100000 && it_now_ms() < end; i++) {
        if (it_next(c, &m) != 1)
            return -1;
        if (m.type == RC_T_PONG && (m.has & RC_HAS_RID) && m.rid == rid)
            return 0;
        if (m.type == RC_T_MSG && msgs)
            (*msgs)++;
        else if (m.type != RC_T_MSG && others)
            (*others)++;
    }
    return -1;
}

/* Reads until the frame of `type` with this rid (or an err with it), at most
 * IT_TIMEOUT_MS; other frames are counted in *skipped. 1, 0 timeout, -1. */
static inline int it_wait(rc_client *c, rc_type type, uint64_t rid, rc_msg *m, int *skipped)
{
    int64_t end = it_now_ms() + IT_TIMEOUT_MS;
    for (int i = 0; i < 100000; i++) {
        int64_t left = end - it_now_ms();
        if (left <= 0)
            return 0;
        int r = rc_client_recv(c, m, (int)left);
        if (r != 1)
            return r;
        if ((m->type == type || m->type == RC_T_ERR) && (m->has & RC_HAS_RID) && m->rid == rid)
            return 1;
        if (skipped)
            (*skipped)++;
    }
    return 0;
}

/* ---- raw frames ---- */

/* A map under construction: msgpack-c packer writing into a buffer. */
typedef struct it_map {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} it_map;

static inline void it_map_init(it_map *m, uint32_t entries)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
    msgpack_pack_map(&m->pk, entries);
}

static inline void it_pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static inline void it_map_str(it_map *m, const char *k, const char *v)
{
    it_pack_str(&m->pk, k, strlen(k));
    it_pack_str(&m->pk, v, strlen(v));
}

static inline void it_map_uint(it_map *m, const char *k, uint64_t v)
{
    it_pack_str(&m->pk, k, strlen(k));
    msgpack_pack_uint64(&m->pk, v);
}

/* Sends len bytes as one frame (length prefix + payload). 0 or -1. */
static inline int it_send_frame(rc_client *c, const void *p, size_t len)
{
    uint8_t hdr[RC_FRAME_HEADER];
    rc_frame_put_len(hdr, (uint32_t)len);
    if (rc_client_send_raw(c, hdr, sizeof(hdr)) != 0)
        return -1;
    return len ? rc_client_send_raw(c, p, len) : 0;
}

/* Sends the map as one frame and frees it. 0 or -1. */
static inline int it_map_send(rc_client *c, it_map *m)
{
    int r = it_send_frame(c, m->sb.data, m->sb.size);
    msgpack_sbuffer_destroy(&m->sb);
    return r;
}

/* ---- many clients ---- */

/* True when a complete frame is already in the client's receive buffer, so
 * rc_client_recv(c, m, 0) returns it without touching the socket. */
static inline bool it_buffered(const rc_client *c)
{
    size_t avail = c->rlen - c->rpos;
    return avail >= RC_FRAME_HEADER && avail - RC_FRAME_HEADER >= rc_frame_len(c->rbuf + c->rpos);
}

/* Called for every frame: client index, the frame. Return false to fail. */
typedef bool (*it_frame_fn)(void *ud, int idx, const rc_msg *m);

#define IT_PUMP_PARTIAL_MS 200 /* wait for the rest of a frame that has begun */

/* One round: waits up to timeout_ms for input on any of the n clients, then
 * hands every complete frame received to fn. Returns the frames handled, or
 * -1 when a client failed (closed, undecodable frame) or fn returned false. */
static inline int it_pump(rc_client *cs, int n, int timeout_ms, it_frame_fn fn, void *ud)
{
    struct pollfd pfds[n];
    int handled = 0;
    for (int i = 0; i < n; i++) {
        rc_msg m;
        while (it_buffered(&cs[i])) { /* left from an earlier round */
            if (rc_client_recv(&cs[i], &m, 0) != 1 || !fn(ud, i, &m))
                return -1;
            handled++;
        }
        pfds[i] = (struct pollfd){ cs[i].fd, POLLIN, 0 };
    }
    if (handled)
        timeout_ms = 0;
    int r = poll(pfds, (nfds_t)n, timeout_ms);
    if (r <= 0)
        return r < 0 ? -1 : handled;
    for (int i = 0; i < n; i++) {
        if (!pfds[i].revents)
            continue;
        rc_msg m;
        if (rc_client_recv(&cs[i], &m, IT_PUMP_PARTIAL_MS) != 1 || !fn(ud, i, &m))
            return -1;
        handled++;
        while (it_buffered(&cs[i])) {
            if (rc_client_recv(&cs[i], &m, 0) != 1 || !fn(ud, i, &m))
                return -1;
            handled++;
        }
    }
    return handled;
}

/* Keeps the first failure's text in buf; always returns false, for frame
 * callbacks: `return it_failf(st->failure, sizeof(st->failure), ...)`. */
__attribute__((format(printf, 3, 4))) static inline bool it_failf(char *buf, size_t n, const char *fmt, ...)
{
    if (!buf[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, n, fmt, ap);
        va_end(ap);
    }
    return false;
}

/* ---- one server per test program: the short forms the suites use ---- */

static it_server it_srv __attribute__((unused));

/* Suite cleanup: stops a server a fatally failed test left running. */
static inline int it_suite_cleanup(void)
{
    return it_cleanup(&it_srv);
}

static inline void it_suite_start(const char *const *flags)
{
    it_cleanup(&it_srv); /* left by a test that failed fatally */
    CU_ASSERT_FATAL(it_start(&it_srv, flags) == 0);
}

static inline void it_suite_stop(void)
{
    CU_ASSERT_EQUAL(it_stop(&it_srv), 0);
}

static inline void it_suite_login(rc_client *c, const char *user)
{
    CU_ASSERT_FATAL(it_login(c, &it_srv, user) == 0);
}

/* Joins g and checks the `joined` seq. */
static inline void it_suite_join(rc_client *c, const char *g, uint64_t want_seq)
{
    uint64_t seq = UINT64_MAX;
    CU_ASSERT_FATAL(rc_client_join(c, g, IT_TIMEOUT_MS, &seq) == 0);
    CU_ASSERT_EQUAL(seq, want_seq);
}

#define IT_SYNC_RID 999999u /* rid of the ping barrier it_pending_msgs uses */

/* msg frames queued for c right now (ping barrier). -1 on failure or when
 * something other than msg frames was queued. */
static inline int it_pending_msgs(rc_client *c)
{
    int msgs = 0, others = 0;
    if (it_sync(c, IT_SYNC_RID, &msgs, &others) != 0 || others != 0)
        return -1;
    return msgs;
}

#endif
