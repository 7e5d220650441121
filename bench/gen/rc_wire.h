/*
 * The ringcast protocol as the generator reads it, its pure piece (no
 * sockets, no shared state): a strict scanner of one server map
 * (proto/PROTOCOL.md §2) that extracts only what the benchmark checks
 * (t, g, seq, body, and an err's code or a bye's reason).
 *
 * It is not rc_decode on purpose: it allocates nothing and costs a few
 * nanoseconds per frame (the generator shares the cores with the server),
 * and a decoder bug cannot hide itself by being on both ends. Strict means:
 * one map, string keys, the fields it reads of the right type, any other
 * value well-formed (nested at most RW_MAX_DEPTH deep), nothing after the
 * map, and a `t`.
 */
#ifndef RC_BENCH_RC_WIRE_H
#define RC_BENCH_RC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RW_MAX_DEPTH 8 /* nesting the scanner follows when skipping a value */

/* What the benchmark reads from one server map; pointers into its bytes,
 * NULL for a key the map does not have. */
typedef struct rw_frame {
    const uint8_t *t;
    uint32_t t_len;
    const uint8_t *g;
    uint32_t g_len;
    uint64_t seq;
    bool has_seq;
    const uint8_t *body;     /* bin, or str per proto/PROTOCOL.md §2.1 */
    uint32_t body_len;
    const uint8_t *code;     /* err: code; bye: reason */
    uint32_t code_len;
} rw_frame;

/* Scans the map p[0..len) into f: 0, or -1 unless it is exactly one
 * well-formed map with a `t`. */
int rw_scan(const uint8_t *p, size_t len, rw_frame *f);

#endif
