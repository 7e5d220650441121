/*
 * Values that change while the server runs, at a SIGHUP reload
 * (src/ARCHITECTURE.md §8.1), and how they reach the threads that use them
 * without a lock on the hot path.
 *
 * Two slots and a version: the reloader writes the slot the current version
 * does not name, then publishes version + 1 (release). Each io thread and
 * shard looks at the version once per loop turn or burst (acquire) and, when
 * it changed, copies the values into its own fields and acknowledges the
 * version (release). The reloader writes a slot again only after every
 * running reader acknowledged the version after it, so no reader ever copies
 * a slot being written.
 */
#ifndef RC_CORE_LIVE_H
#define RC_CORE_LIVE_H

#include <stdatomic.h>
#include <stdint.h>

#include "ringcast/token.h"

typedef struct rc_live_values {
    uint32_t conn_rate, conn_burst;       /* io: sends per connection */
    uint32_t group_rate, group_burst;     /* shard: sends per group */
    uint64_t outbound_high_bytes, outbound_kill_bytes; /* io */
    uint32_t outbound_stall_ms;           /* io */
    uint32_t hello_timeout_ms, idle_timeout_ms; /* io */
    uint32_t max_queue_ms;                /* io (admission, refusal) and shard (expiry) */
    uint32_t max_groups_per_session;      /* io */
    uint32_t max_members_per_group;       /* shard */
    uint64_t max_reply_bytes;             /* shard */
    uint64_t history_ttl_ms;              /* shard */
    uint32_t snapshot_every, snapshot_interval_ms; /* shard */
    uint64_t history_cache_bytes;         /* shard */
    rc_token_keys auth;                   /* io: auth_secret's secrets (none: hello trusts user) */
} rc_live_values;

typedef struct rc_live {
    _Atomic uint64_t version;  /* the values in force are slot[version & 1] */
    rc_live_values slot[2];
} rc_live;

/* The values when the version moved past *seen (which then follows it), or
 * NULL. The reader acknowledges with rc_live_ack once it applied them. */
static inline const rc_live_values *rc_live_changed(rc_live *l, uint64_t *seen)
{
    if (!l)
        return NULL;
    /* acquire: pairs with the reloader's release; the slot is complete. */
    uint64_t v = atomic_load_explicit(&l->version, memory_order_acquire);
    if (v == *seen)
        return NULL;
    *seen = v;
    return &l->slot[v & 1];
}

static inline void rc_live_ack(_Atomic uint64_t *ack, uint64_t version)
{
    /* release: this reader's copy of the slot happened before the reloader
     * may write that slot again. */
    atomic_store_explicit(ack, version, memory_order_release);
}

#endif
