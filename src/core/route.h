/*
 * Which shard owns a group, one version at a time, and how the owner of a
 * group changes without breaking the single-owner rule
 * (src/ARCHITECTURE.md §4.1).
 *
 * A route is a consistent-hash ring over shards 0..n-1 and a version. The
 * server publishes a new route when the shard count changes (rc_routing.cur);
 * io threads pick it up at the start of a loop turn, and from then on route
 * every request by it. The move from version v to v+1 is ordered by three
 * kinds of job, all travelling in the shards' inbound rings behind the
 * requests they order:
 *
 *   RC_JOB_EPOCH   io thread -> every shard of the old route, queued behind
 *                  the last request it routed by the old route;
 *   RC_JOB_ADOPT   old owner -> new owner, one per group that changes owner,
 *                  once the old owner has seen every io thread's EPOCH (so
 *                  nothing more for the group can reach it) and written and
 *                  flushed everything it did for the group;
 *   RC_JOB_HANDED  old shard -> every other shard of the new route, after
 *                  its last ADOPT: "nothing more comes from me".
 *
 * A shard of the new route keeps (parks) a request for a group whose old
 * owner is another shard until that shard's HANDED has arrived, then runs
 * the parked requests in their order. Rings are FIFO per producer, so a
 * group's requests are sequenced by one shard at a time, in the order they
 * were routed: nothing lost, duplicated or reordered by a move.
 */
#ifndef RC_CORE_ROUTE_H
#define RC_CORE_ROUTE_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/chash.h"

#define RC_MAX_SHARDS 256u /* shard ids are below this (max_shards) */

typedef struct rc_route {
    uint64_t version;   /* 1 at start, +1 per change */
    uint32_t n;         /* shards on the ring: ids 0..n-1 */
    rc_chash *chash;
} rc_route;

/* A route over shards 0..n-1 with `vnodes` points each. NULL on ENOMEM. */
rc_route *rc_route_new(uint64_t version, uint32_t n, uint32_t vnodes);
void rc_route_free(rc_route *r);

static inline uint32_t rc_route_shard(const rc_route *r, const void *g, uint32_t len)
{
    return rc_chash_lookup(r->chash, g, len);
}

/* What io threads and shards share about the current route. */
typedef struct rc_routing {
    _Atomic(rc_route *) cur;   /* written by the server (release), read by io threads and shards (acquire) */
    uint32_t n_io;             /* EPOCH jobs each shard of an old route waits for */
    _Atomic uint32_t done;     /* shards that finished their part of the move under way */
} rc_routing;

static inline rc_route *rc_routing_cur(rc_routing *r)
{
    /* acquire: pairs with the release in the server's publication, so the
     * route's ring is fully built for whoever sees the pointer. */
    return atomic_load_explicit(&r->cur, memory_order_acquire);
}

#endif
