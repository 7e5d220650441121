/*
 * Calls: a question the admin thread asks an io thread or a shard, answered
 * by that thread on its own between two loop turns (src/ARCHITECTURE.md
 * §3.10). The Server API reads groups and sessions with them, and closes a
 * user's sessions, without a lock on anything the owner uses: the owner
 * alone reads its groups or connections and writes the answer.
 *
 * One call at a time per thread: a slot holds the call posted and not yet
 * taken. A call has two references, the asker's and the owner's, so an
 * asker that stops waiting (its timeout) can leave the call behind: the
 * owner answers it later into memory that is still the call's, and the last
 * reference frees it.
 */
#ifndef RC_CORE_CALL_H
#define RC_CORE_CALL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ringcast/proto.h"

#define RC_CALL_MAX_NAMES 1000u /* names one answer lists; `n` counts them all */

typedef enum rc_call_kind {
    RC_CALL_GROUP,         /* shard: group `name`'s last seq, stored members, users online */
    RC_CALL_USER_GROUPS,   /* shard: its groups that hold user `name` as a stored member */
    RC_CALL_USER_SESSIONS, /* io: the sessions of user `name` */
    RC_CALL_DISCONNECT,    /* io: close the sessions of user `name` with bye "disconnected" */
} rc_call_kind;

typedef struct rc_call {
    rc_call_kind kind;
    _Atomic uint32_t refs;       /* the asker's and, once posted, the owner's */
    _Atomic bool done;           /* the owner answered */
    char name[RC_MAX_GROUP];     /* the group or user asked about */
    uint32_t name_len;
    /* The answer. */
    bool found;                  /* RC_CALL_GROUP: the shard holds the group */
    uint64_t seq, members;       /* RC_CALL_GROUP: last seq, stored members */
    uint64_t n;                  /* users online, groups matched, sessions counted or closed */
    rc_buf names;                /* up to RC_CALL_MAX_NAMES of them, each a length byte then the bytes */
    uint32_t n_names;
} rc_call;

typedef struct rc_call_slot {
    _Atomic(rc_call *) posted;   /* the call waiting for its owner, or NULL */
} rc_call_slot;

/* A call about name (at most RC_MAX_GROUP bytes), with the asker's
 * reference. NULL when memory runs out. */
static inline rc_call *rc_call_new(rc_call_kind kind, const char *name, uint32_t len)
{
    rc_call *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->kind = kind;
    atomic_init(&c->refs, 1);
    atomic_init(&c->done, false);
    c->name_len = len < RC_MAX_GROUP ? len : RC_MAX_GROUP;
    memcpy(c->name, name, c->name_len);
    rc_buf_init(&c->names);
    return c;
}

static inline void rc_call_put(rc_call *c)
{
    /* acq_rel: the last holder sees every write of the other before it frees. */
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
        rc_buf_free(&c->names);
        free(c);
    }
}

/* Asker: hands c to the slot's owner (then wake the owner). False when the
 * owner has not taken the previous call yet. */
static inline bool rc_call_post(rc_call_slot *slot, rc_call *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed); /* the owner's; the asker holds one */
    rc_call *none = NULL;
    /* release: the owner that takes c sees the question written. */
    if (atomic_compare_exchange_strong_explicit(&slot->posted, &none, c, memory_order_release, memory_order_relaxed))
        return true;
    atomic_fetch_sub_explicit(&c->refs, 1, memory_order_relaxed);
    return false;
}

/* Owner, once per loop turn: the call posted, or NULL (one relaxed load
 * when there is none). */
static inline rc_call *rc_call_take(rc_call_slot *slot)
{
    /* relaxed: only a hint; the exchange below synchronises. */
    if (!atomic_load_explicit(&slot->posted, memory_order_relaxed))
        return NULL;
    /* acquire: pairs with rc_call_post's release. */
    return atomic_exchange_explicit(&slot->posted, NULL, memory_order_acquire);
}

/* Owner: the answer is written; drops the owner's reference. */
static inline void rc_call_answer(rc_call *c)
{
    /* release: the asker that sees done reads the whole answer. */
    atomic_store_explicit(&c->done, true, memory_order_release);
    rc_call_put(c);
}

/* Asker: the owner answered. */
static inline bool rc_call_answered(rc_call *c)
{
    return atomic_load_explicit(&c->done, memory_order_acquire); /* acquire: pairs with rc_call_answer */
}

/* Owner: one name for the answer (while fewer than RC_CALL_MAX_NAMES are
 * listed); `n` is counted by the caller. Out of memory lists fewer. */
static inline void rc_call_add_name(rc_call *c, const char *p, uint32_t len)
{
    uint8_t n = (uint8_t)(len < UINT8_MAX ? len : UINT8_MAX);
    if (c->n_names >= RC_CALL_MAX_NAMES || rc_buf_reserve(&c->names, 1u + n) != 0)
        return;
    c->names.data[c->names.len++] = n;
    memcpy(c->names.data + c->names.len, p, n);
    c->names.len += n;
    c->n_names++;
}

/* At the owner's end (its thread stopped): a call never taken is dropped. */
static inline void rc_call_slot_clear(rc_call_slot *slot)
{
    rc_call *c = atomic_exchange_explicit(&slot->posted, NULL, memory_order_acquire);
    if (c)
        rc_call_put(c);
}

#endif
