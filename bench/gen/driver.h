/*
 * ringcast-bench: the interface between the load generator and the systems it
 * drives (ringcast, NATS, Redis, and the durable NATS JetStream and Redis
 * Streams; the speed-of-light server ringcast-sol speaks
 * the ringcast protocol and uses the ringcast driver).
 *
 * The generator (ringcast-bench.c) owns the sockets, the epoll loops and the
 * workload; a driver only knows its system's wire protocol. It turns "open a
 * session and subscribe to these groups" and "publish one message to group g"
 * into bytes appended to a connection's output buffer, and it turns received
 * bytes back into events (bench_on_*), which the workload counts and checks.
 * A new system (the WebSocket driver, say) is one more drv_*.c file defining
 * one more bench_driver, listed in bench_drivers[] (ringcast-bench.c).
 *
 * Drivers are called from several generator threads at once (one epoll loop
 * per thread, each with its own connections): after init() they may only
 * read their global state.
 *
 * Groups are numbered 0..G-1; each driver names them in its own way from the
 * workload's prefix P ("P7" for ringcast, "P.7" for NATS, "P:7" for Redis).
 *
 * Every body starts with BENCH_HDR_LEN bytes of header: the publisher's
 * sequence number for the group, then the time the message was scheduled (or
 * sent) in CLOCK_MONOTONIC nanoseconds, each as 16 hex digits. Receivers
 * compute send-to-deliver latency from the second; NATS and Redis receivers
 * check order with the first (ringcast sequences itself: `seq`).
 */
#ifndef RC_BENCH_DRIVER_H
#define RC_BENCH_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ringcast/proto.h> /* rc_buf */

#define BENCH_NO_GROUP UINT32_MAX   /* an event that belongs to no group */
#define BENCH_SEQ_HEX 16u           /* hex digits of each header field */
#define BENCH_TS_OFF 16u            /* offset of the timestamp in the body */
#define BENCH_HDR_LEN 32u           /* seq + timestamp: the shortest body */
#define BENCH_PREFIX_MAX 8u         /* group name prefix, bytes */
#define BENCH_IN_CAP (128u << 10)   /* receive buffer per connection: one item must fit */

/* Appends formatted text to b: 0 or -1 (ENOMEM). */
int bench_printf(rc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One pre-encoded byte string per group (a publish frame, a command prefix). */
typedef struct bench_table {
    rc_buf bytes;          /* the strings, back to back */
    size_t *off;           /* [G + 1]: group g's string is bytes[off[g]..off[g+1]) */
} bench_table;

/* Builds t by calling emit(out, g, arg) for every group; 0 or -1 (ENOMEM). */
int bench_table_build(bench_table *t, uint32_t groups,
                      int (*emit)(rc_buf *out, uint32_t g, const void *arg), const void *arg);
void bench_table_free(bench_table *t);
/* Appends group g's string to out. */
int bench_table_append(rc_buf *out, const bench_table *t, uint32_t g);
/* Appends a text-protocol publish (NATS, Redis): group g's prefix, the body
 * stamped with seq and ts (bench_body_stamp), CRLF. */
int bench_append_seq_msg(rc_buf *out, const bench_table *t, uint32_t g, const uint8_t *body,
                         size_t body_len, uint64_t seq, uint64_t ts_ns);

typedef enum bench_role { BENCH_SUB, BENCH_PUB } bench_role;

/* One client connection of the generator. */
typedef struct bench_conn {
    int fd;
    bench_role role;
    uint32_t index;        /* subscriber number (0..C-1) or publisher number (0..P-1) */
    uint32_t pending;      /* setup replies still awaited; 0 = ready */
    bool dead;             /* closed or failed; no more I/O */
    bool dirty;            /* generator: on its thread's list of connections to flush */
    bool epollout;         /* generator: EPOLLOUT is armed (the socket was full) */
    bool gone;             /* generator: counted as disconnected (closed under us, or bye) */
    rc_buf out;            /* queued bytes; out.data[out_off..out.len) not yet written */
    size_t out_off;
    uint8_t *in;           /* received bytes not yet parsed: in[0..in_len) */
    size_t in_len;
    size_t in_cap;
    void *owner;           /* generator: the thread that runs this connection */
    uint32_t since_read;   /* ringcast --read-every: deliveries since its last read */
    void *drv_data;        /* the driver's own per-connection state, if it needs
                            * any (a handshake in progress, say): set in setup(),
                            * released by the driver's conn_free() */
} bench_conn;

/* The workload parameters a driver needs to prepare its frames. */
typedef struct bench_params {
    uint32_t groups;       /* G */
    const char *prefix;    /* group name prefix, 1..BENCH_PREFIX_MAX - 1 letters */
    const uint8_t *body;   /* the body template (bench_body_fill) */
    uint32_t body_len;     /* body bytes per message, >= BENCH_HDR_LEN */
    bool presence;         /* ringcast: subscribers join with presence: true */
    bool echo;             /* ringcast: publishers receive their own messages (--echo) */
    bool receipts;         /* ringcast: subscribers join with receipts: true */
    uint32_t read_every;   /* ringcast: a subscriber sends read {g, seq} every this
                            * many deliveries (0: never) */
} bench_params;

typedef struct bench_driver {
    const char *name;          /* "ringcast", "nats", "redis" */
    uint16_t default_port;
    bool acks_carry_seq;       /* acks name the group and its seq (ringcast) */
    bool has_acks;             /* every publish gets a reply (ringcast ack, Redis :N) */

    /* Prepares per-run state (pre-encoded frames). 0 or -1 (ENOMEM). */
    int (*init)(const bench_params *p);
    void (*fini)(void);
    /*
     * Queues the session opening of c and its subscription to groups[0..n)
     * (publishers too: ringcast requires membership to send), and sets
     * c->pending to the number of replies that confirm it all.
     */
    int (*setup)(bench_conn *c, const uint32_t *groups, uint32_t n);
    /* Queues one message to group g; seq is the publisher's count for g
     * (1, 2, ...) and ts_ns its scheduled send time; both go into the body
     * header. */
    int (*publish)(bench_conn *c, uint32_t g, uint64_t seq, uint64_t ts_ns);
    /* Parses in[0..len), reporting events; returns the bytes consumed (a
     * trailing partial item stays), or -1 on a protocol error. */
    ssize_t (*parse)(bench_conn *c, const uint8_t *in, size_t len);
    /* Optional: releases c->drv_data when the generator closes c. A driver
     * whose session opening takes a round trip before the first frame (a
     * WebSocket upgrade) keeps its state there and queues the rest from
     * parse() with bench_reply(). */
    void (*conn_free)(bench_conn *c);
} bench_driver;

extern const bench_driver bench_drv_ringcast;
extern const bench_driver bench_drv_ringcast_ws; /* the same maps over WebSocket (binary messages) */
extern const bench_driver bench_drv_nats;
extern const bench_driver bench_drv_redis;
extern const bench_driver bench_drv_jetstream;     /* NATS JetStream: a file-store stream, publish acks */
extern const bench_driver bench_drv_redis_streams; /* Redis Streams: XADD, XREAD BLOCK */

/* ---- events: drivers call these from parse() ---- */

/* A setup reply arrived (welcome, joined, subscribe confirmation, PONG).
 * g is the group it confirms (or BENCH_NO_GROUP); last_seq is the group's
 * last seq at join time (ringcast) or 0. */
void bench_on_confirm(bench_conn *c, uint32_t g, uint64_t last_seq);
/* A message of group g with sequence seq and its body (which carries the
 * header: timestamp and the publisher's seq). */
void bench_on_delivery(bench_conn *c, uint32_t g, uint64_t seq, const uint8_t *body,
                       size_t body_len);
/* A publish was accepted: g and seq if the reply names them (ringcast),
 * receivers if it counts them (Redis), else BENCH_NO_GROUP / 0 / -1. */
void bench_on_ack(bench_conn *c, uint32_t g, uint64_t seq, int64_t receivers);
/* The server reported an error (text is not NUL-terminated); on a
 * publisher after setup it is taken as the refusal of one publish. */
void bench_on_server_error(bench_conn *c, const char *text, size_t len);
/* The server said goodbye (ringcast `bye`, with its reason); counted as a
 * disconnection and, like an error, as a refused publish on a publisher. */
void bench_on_bye(bench_conn *c, const char *reason, size_t len);
/* A chat event that is not a message (ringcast proto/PROTOCOL.md §6.9, §6.11). */
typedef enum bench_event {
    BENCH_EV_PRESENCE,     /* online or offline */
    BENCH_EV_RECEIPT,      /* receipt */
    BENCH_EV_TYPING,       /* typing */
    BENCH_EV_READ_SENT,    /* the driver queued a read */
    BENCH_EV_MARKED,       /* the answer to a read */
} bench_event;
void bench_on_event(bench_conn *c, bench_event e);
/* Queues bytes the driver must answer with (NATS PONG) and marks c for flushing. */
int bench_reply(bench_conn *c, const void *p, size_t n);

/* ---- helpers shared by the drivers ---- */

/* Parses "<prefix><decimal>" into a group number, or BENCH_NO_GROUP (the
 * caller checks g < G). */
uint32_t bench_parse_group(const uint8_t *s, size_t n, const char *prefix, size_t prefix_len);
/* Fills body[0..len) (len >= BENCH_HDR_LEN) with a zero header and letters. */
void bench_body_fill(uint8_t *body, size_t len);
/* Writes seq and ts_ns into the header at body. */
void bench_body_stamp(uint8_t *body, uint64_t seq, uint64_t ts_ns);
/* Writes v as 16 hex digits at p. */
void bench_put_hex16(uint8_t *p, uint64_t v);
/* Reads 16 hex digits at p; false if they are not all hex digits. */
bool bench_get_hex16(const uint8_t *p, uint64_t *v);

#endif
