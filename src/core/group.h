/*
 * One chat group as its owning shard holds it: stored membership, the
 * connections subscribed now, the sequence counter, recent history and the
 * dedup window. Only the owning shard's thread touches a group.
 */
#ifndef RC_CORE_GROUP_H
#define RC_CORE_GROUP_H

#include <stdbool.h>
#include <stdint.h>

#include "core/bucket.h"
#include "core/dispatch.h"
#include "core/persist.h"
#include "core/strmap.h"

/* One sequenced message kept for `join since`, `hist` and dedup. */
typedef struct rc_hist_entry {
    uint64_t seq;
    uint64_t ts;        /* unix ms it was sequenced */
    rc_frame *frame;    /* the encoded `msg` frame; history holds one reference */
    const char *dkey;   /* dedup key (user NUL mid), the dedup map's own copy; NULL without mid or once expired */
    uint32_t dkey_len;
} rc_hist_entry;

typedef struct rc_group {
    char *name;
    uint32_t name_len;
    uint64_t last_seq;      /* last sequenced message; 0 before the first */
    rc_strmap members;      /* stored membership: user -> 1 */
    rc_conn_id *subs;       /* connections that joined in their session */
    uint64_t *sub_users;    /* ... the hash of each one's user (typing skips the typist's sessions) */
    uint8_t *sub_flags;     /* ... RC_SUB_* of each */
    uint32_t n_subs, cap_subs;
    rc_strmap online;       /* presence: user -> sessions of the user subscribed now (ARCHITECTURE §3.8) */
    rc_strmap typed;        /* typing: user -> monotonic ms of the last typing forwarded */
    rc_strmap reads;        /* read cursors known in memory: member -> cursor (ARCHITECTURE §3.11); the rest are read from storage */
    rc_bucket sends;        /* group_rate: sends accepted per second, all senders (moves with the group) */
    rc_hist_entry *hist;    /* ring of the last `hist_max` messages, oldest at hist_head */
    uint32_t hist_max;      /* history_max: messages retained */
    uint32_t hist_cap;      /* slots allocated (grows to hist_max) */
    uint32_t hist_n, hist_head;
    uint32_t dedup_window;  /* mids remembered: min(dedup_window, history_max) */
    rc_strmap dedup;        /* user NUL mid -> seq */
    /* Persistence (ARCHITECTURE §6); unused when the server keeps no store. */
    uint64_t version;       /* snapshot version: rises with each snapshot written */
    uint64_t created_ms, updated_ms;
    uint32_t changes;       /* messages and membership changes since the last snapshot */
    uint64_t snap_ms;       /* monotonic ms of the last snapshot */
    uint8_t store_tag[RC_PERSIST_TAG_BYTES]; /* the store's tag of this id, computed once for every history key */
    bool has_store_tag;
    bool warm;              /* history ring holds every retained message (false after recovery or an eviction, until loaded);
                             * cold, it holds a gapless tail ending at last_seq, maybe empty (ARCHITECTURE §6.1) */
    /* The history cache (ARCHITECTURE §6.1): what this group's history
     * holds in memory, added to its shard's total, and its place in the
     * shard's least-recently-used list of warm groups. */
    uint64_t hist_bytes;
    uint64_t *acct;         /* the owning shard's total (NULL: none) */
    struct rc_group *lru_prev, *lru_next;
    bool in_lru;
    bool snap_queued;       /* on the shard's list of groups to snapshot this tick */
} rc_group;

rc_group *rc_group_new(const char *name, uint32_t len, uint32_t history_max, uint32_t dedup_window);
void rc_group_free(rc_group *g);

enum {
    RC_SUB_PRESENCE = 1u << 0, /* receives online/offline events */
    RC_SUB_RECEIPTS = 1u << 1, /* receives receipt events */
};

/* Online subscribers: 0, or -1 on ENOMEM. Subscribing twice is one subscription. */
int rc_group_subscribe(rc_group *g, rc_conn_id c);
/* The same, with the session's user (its hash) and RC_SUB_* flags (updated
 * when c was subscribed already); *added says whether c is new. */
int rc_group_subscribe_as(rc_group *g, rc_conn_id c, uint64_t user_hash, uint8_t flags, bool *added);
bool rc_group_unsubscribe(rc_group *g, rc_conn_id c);

/* Sequences a message: last_seq rises by one and the message, encoded with
 * that seq, is kept in history; takes the caller's frame reference. dkey may
 * be NULL. 0, or -1 on ENOMEM (nothing changed). */
int rc_group_remember(rc_group *g, uint64_t ts, rc_frame *f, const char *dkey, uint32_t dkey_len);

/* Undoes the last rc_group_remember (a write that did not reach storage):
 * last_seq falls by one, the entry and its dedup key are dropped and its
 * frame reference released. Only valid right after remember. */
void rc_group_forget_last(rc_group *g);

/* The history entry of seq, or NULL when it is not retained. */
const rc_hist_entry *rc_group_hist_at(const rc_group *g, uint64_t seq);
/* Oldest retained seq (last_seq + 1 when history is empty). */
uint64_t rc_group_first_seq(const rc_group *g);
/* Oldest retained seq whose message is not older than cutoff_ms (unix ms):
 * history_ttl applied on top of history_max. */
uint64_t rc_group_first_live_seq(const rc_group *g, uint64_t cutoff_ms);
/* Starts loading what the next rc_group_remember touches far from the
 * group itself: the history entry whose dedup key leaves the window (and,
 * with a full ring, the entry it evicts), a message the group sent
 * dedup_window messages ago and long out of the cache. */
void rc_group_prefetch_remember(const rc_group *g);

/* Drops the history held in memory (frames, dedup keys, the ring) but not
 * last_seq: the group is cold and its next use reads history back from
 * storage (ARCHITECTURE §6.1). */
void rc_group_evict_history(rc_group *g);

/* Gives g the history ring and dedup window of `from` (a scratch group
 * holding the same group's messages, up to g's last_seq), and `from` g's
 * old ones, to be freed with it; the bytes held move to g's account. */
void rc_group_take_history(rc_group *g, rc_group *from);

/* Seq a user's mid was sequenced at, or 0. */
uint64_t rc_group_find_dup(const rc_group *g, const char *dkey, uint32_t dkey_len);

#endif
