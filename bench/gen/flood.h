/*
 * Flood mode's pure pieces (no sockets, no shared state), unit-tested in
 * tests/unit/test_bench_flood.c.
 *
 * In a flood (--flood) publishers keep no window: each one queues sends
 * whenever fewer than FLOOD_LOW_WATER bytes wait in its output buffer, up to
 * FLOOD_HIGH_WATER, so the socket always has something to take and our own
 * buffer stays small. What the server does with more than it can carry is
 * the measurement: refusals (counted by error code, below), readers it
 * disconnects, and deliveries it drops (gaps).
 */
#ifndef RC_BENCH_FLOOD_H
#define RC_BENCH_FLOOD_H

#include <stddef.h>

#define FLOOD_LOW_WATER (64u << 10)   /* refill a publisher below this many unsent bytes */
#define FLOOD_HIGH_WATER (256u << 10) /* ... up to this many */

/* The refusal codes a flood counts apart (proto/PROTOCOL.md §5); every other
 * error reply to a send (a code this build does not know, a NATS -ERR, a
 * Redis -ERR) is FLOOD_REFUSED_OTHER. */
typedef enum flood_code {
    FLOOD_OVERLOADED,
    FLOOD_RATE_LIMITED,
    FLOOD_NOT_MEMBER,
    FLOOD_LIMIT,
    FLOOD_SHUTTING_DOWN,
    FLOOD_INTERNAL,
    FLOOD_REFUSED_OTHER,
    FLOOD_NCODES
} flood_code;

/* The protocol's name of code c ("E_OVERLOADED"; "other" for the rest). */
const char *flood_code_name(flood_code c);
/* The result key of code c ("refused_overloaded", ..., "refused_other"). */
const char *flood_code_key(flood_code c);
/* The code an error reply's text names: an exact protocol code, else
 * FLOOD_REFUSED_OTHER. text need not be NUL-terminated. */
flood_code flood_code_of(const char *text, size_t len);
/* Bytes a publisher with `unsent` bytes queued may add now: 0 at or above
 * low, else up to high. */
size_t flood_room(size_t unsent, size_t low, size_t high);

#endif
