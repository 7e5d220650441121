/*
 * A token bucket (src/ARCHITECTURE.md §3.7): `rate` tokens a second, at most
 * `burst` banked. Whole tokens are counted in millionths so a rate of a few
 * per second refills smoothly without floating point. rate 0: no limit.
 * One owner thread per bucket (a connection's io thread, a group's shard).
 */
#ifndef RC_CORE_BUCKET_H
#define RC_CORE_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

#define RC_BUCKET_UNIT 1000000u /* one token, in the bucket's units */

typedef struct rc_bucket {
    uint64_t level;   /* tokens banked, in RC_BUCKET_UNIT */
    uint64_t last_ns; /* when it was last refilled; 0: never used (starts full) */
} rc_bucket;

/* Takes one token at now_ns; false when none is left (the request is over
 * the limit). burst 0 means burst = rate (at least 1). */
static inline bool rc_bucket_take(rc_bucket *b, uint32_t rate, uint32_t burst, uint64_t now_ns)
{
    if (rate == 0)
        return true;
    uint64_t cap = (uint64_t)(burst ? burst : rate) * RC_BUCKET_UNIT;
    if (b->last_ns == 0) {
        b->level = cap;
    } else if (now_ns > b->last_ns) {
        /* tokens per ns = rate / 1e9; in units: rate * 1e6 / 1e9 = rate / 1000 per ns */
        uint64_t dt = now_ns - b->last_ns, add = dt / 1000u * rate;
        b->level = add >= cap || b->level + add >= cap ? cap : b->level + add;
    }
    b->last_ns = now_ns;
    if (b->level < RC_BUCKET_UNIT)
        return false;
    b->level -= RC_BUCKET_UNIT;
    return true;
}

#endif
