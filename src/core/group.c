/*
 * Group state. History is a ring of the last history_max messages; the dedup
 * map holds the mids of the last dedup_window of them. A mid leaves the map
 * when its message leaves the window, which is never later than when it
 * leaves history, so the map never names a message history has dropped.
 */
#include "core/group.h"

#include <stdlib.h>
#include <string.h>

#define RC_GROUP_MIN_SUBS 4u
#define RC_GROUP_MIN_HIST 8u /* history slots allocated at first; doubles up to history_max */

rc_group *rc_group_new(const char *name, uint32_t len, uint32_t history_max, uint32_t dedup_window)
{
    rc_group *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->name = malloc(len + 1u);
    if (!g->name) {
        free(g);
        return NULL;
    }
    memcpy(g->name, name, len);
    g->name[len] = '\0';
    g->name_len = len;
    g->hist_max = history_max;
    g->dedup_window = dedup_window < history_max ? dedup_window : history_max;
    rc_strmap_init(&g->members);
    rc_strmap_init(&g->dedup);
    rc_strmap_init(&g->online);
    rc_strmap_init(&g->typed);
    rc_strmap_init(&g->reads);
    return g;
}

/* Memory one history entry holds beyond the ring's slot: the frame and, with
 * a mid, the dedup map's key and slot. */
#define RC_GROUP_DKEY_OVERHEAD 32u

static uint64_t entry_bytes(const rc_frame *f, uint32_t dkey_len)
{
    return sizeof(rc_frame) + f->len + (dkey_len ? dkey_len + RC_GROUP_DKEY_OVERHEAD : 0);
}

static void account(rc_group *g, int64_t delta)
{
    g->hist_bytes += (uint64_t)delta;
    if (g->acct)
        *g->acct += (uint64_t)delta;
}

static rc_hist_entry *hist_slot(const rc_group *g, uint32_t i)
{
    uint32_t k = g->hist_head + i; /* both < hist_cap: one subtraction wraps it */
    return &g->hist[k >= g->hist_cap ? k - g->hist_cap : k];
}

void rc_group_free(rc_group *g)
{
    if (!g)
        return;
    for (uint32_t i = 0; i < g->hist_n; i++) {
        rc_hist_entry *e = hist_slot(g, i);
        rc_frame_unref(e->frame); /* dkey belongs to the dedup map, freed below */
    }
    rc_strmap_free(&g->members);
    rc_strmap_free(&g->dedup);
    rc_strmap_free(&g->online);
    rc_strmap_free(&g->typed);
    rc_strmap_free(&g->reads);
    free(g->hist);
    free(g->subs);
    free(g->sub_users);
    free(g->sub_flags);
    free(g->name);
    free(g);
}

int rc_group_subscribe_as(rc_group *g, rc_conn_id c, uint64_t user_hash, uint8_t flags, bool *added)
{
    *added = false;
    for (uint32_t i = 0; i < g->n_subs; i++)
        if (g->subs[i] == c) {
            g->sub_flags[i] = flags;
            return 0;
        }
    if (g->n_subs == g->cap_subs) {
        uint32_t cap = g->cap_subs ? g->cap_subs * 2 : RC_GROUP_MIN_SUBS;
        rc_conn_id *p = realloc(g->subs, cap * sizeof(*p));
        if (!p)
            return -1;
        g->subs = p;
        uint64_t *u = realloc(g->sub_users, cap * sizeof(*u));
        if (!u)
            return -1; /* subs grew, the rest did not: cap_subs is unchanged, so the next try grows them */
        g->sub_users = u;
        uint8_t *fl = realloc(g->sub_flags, cap * sizeof(*fl));
        if (!fl)
            return -1;
        g->sub_flags = fl;
        g->cap_subs = cap;
    }
    g->subs[g->n_subs] = c;
    g->sub_users[g->n_subs] = user_hash;
    g->sub_flags[g->n_subs] = flags;
    g->n_subs++;
    *added = true;
    return 0;
}

int rc_group_subscribe(rc_group *g, rc_conn_id c)
{
    bool added;
    return rc_group_subscribe_as(g, c, 0, 0, &added);
}

bool rc_group_unsubscribe(rc_group *g, rc_conn_id c)
{
    for (uint32_t i = 0; i < g->n_subs; i++) {
        if (g->subs[i] == c) {
            --g->n_subs;
            g->subs[i] = g->subs[g->n_subs];
            g->sub_users[i] = g->sub_users[g->n_subs];
            g->sub_flags[i] = g->sub_flags[g->n_subs];
            return true;
        }
    }
    return false;
}

uint64_t rc_group_first_seq(const rc_group *g)
{
    return g->last_seq + 1 - g->hist_n;
}

uint64_t rc_group_first_live_seq(const rc_group *g, uint64_t cutoff_ms)
{
    /* Timestamps rise with seq within a group, so binary search the ring. */
    uint32_t lo = 0, hi = g->hist_n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (hist_slot(g, mid)->ts < cutoff_ms)
            lo = mid + 1;
        else
            hi = mid;
    }
    return rc_group_first_seq(g) + lo;
}

const rc_hist_entry *rc_group_hist_at(const rc_group *g, uint64_t seq)
{
    uint64_t first = rc_group_first_seq(g);
    if (seq < first || seq > g->last_seq)
        return NULL;
    return hist_slot(g, (uint32_t)(seq - first));
}

void rc_group_prefetch_remember(const rc_group *g)
{
    if (g->last_seq + 1 > g->dedup_window && g->dedup_window > 0) {
        const rc_hist_entry *e = rc_group_hist_at(g, g->last_seq + 1 - g->dedup_window);
        if (e)
            __builtin_prefetch(e);
    }
    if (g->hist_n == g->hist_max && g->hist_n > 0)
        __builtin_prefetch(hist_slot(g, 0));
}

uint64_t rc_group_find_dup(const rc_group *g, const char *dkey, uint32_t dkey_len)
{
    const uint64_t *seq = rc_strmap_get(&g->dedup, dkey, dkey_len);
    return seq ? *seq : 0;
}

/* Forgets the mid of the message that leaves the dedup window when
 * last_seq + 1 is added. */
static void dedup_expire(rc_group *g)
{
    if (g->last_seq + 1 <= g->dedup_window)
        return;
    rc_hist_entry *e = (rc_hist_entry *)rc_group_hist_at(g, g->last_seq + 1 - g->dedup_window);
    if (e && e->dkey) {
        rc_strmap_del(&g->dedup, e->dkey, e->dkey_len); /* frees the key e->dkey points to */
        e->dkey = NULL;
        account(g, -(int64_t)(e->dkey_len + RC_GROUP_DKEY_OVERHEAD));
    }
}

/* Adds dkey to the dedup map for the next seq; *stored gets the map's copy,
 * which the history entry borrows. A key already there (a mid sequenced
 * again after a restart reloaded it) moves to the new entry: the old entry
 * lets go of it, so the map's copy is never freed under a borrower. */
static int dedup_add(rc_group *g, const char *dkey, uint32_t dkey_len, const char **stored)
{
    uint64_t prev = 0;
    if (rc_strmap_put_key(&g->dedup, dkey, dkey_len, g->last_seq + 1, stored, &prev) != 0)
        return -1;
    rc_hist_entry *e = prev ? (rc_hist_entry *)rc_group_hist_at(g, prev) : NULL;
    if (e && e->dkey) {
        e->dkey = NULL;
        account(g, -(int64_t)(e->dkey_len + RC_GROUP_DKEY_OVERHEAD));
    }
    return 0;
}

/* History grows by doubling until history_max; hist_head stays 0 until the
 * ring is full, so growing never has to move entries. */
static int hist_reserve(rc_group *g)
{
    if (g->hist_n < g->hist_cap || g->hist_cap == g->hist_max)
        return 0;
    uint32_t cap = g->hist_cap ? g->hist_cap * 2 : RC_GROUP_MIN_HIST;
    if (cap > g->hist_max)
        cap = g->hist_max;
    rc_hist_entry *p = realloc(g->hist, cap * sizeof(*p));
    if (!p)
        return -1;
    account(g, (int64_t)(cap - g->hist_cap) * (int64_t)sizeof(*p));
    g->hist = p;
    g->hist_cap = cap;
    return 0;
}

int rc_group_remember(rc_group *g, uint64_t ts, rc_frame *f, const char *dkey, uint32_t dkey_len)
{
    const char *key = NULL;
    if (hist_reserve(g) != 0)
        return -1;
    /* Expire first: the key leaving the window may equal the new one. */
    dedup_expire(g);
    if (dkey && g->dedup_window > 0 && dedup_add(g, dkey, dkey_len, &key) != 0)
        return -1;
    if (g->hist_n == g->hist_max) {
        rc_hist_entry *old = hist_slot(g, 0);
        account(g, -(int64_t)entry_bytes(old->frame, old->dkey ? old->dkey_len : 0));
        rc_frame_unref(old->frame);
        if (old->dkey) /* still in the window only when dedup_window > history_max: never, but cheap */
            rc_strmap_del(&g->dedup, old->dkey, old->dkey_len);
        g->hist_head = g->hist_head + 1 == g->hist_cap ? 0 : g->hist_head + 1;
        g->hist_n--;
    }
    g->last_seq++;
    *hist_slot(g, g->hist_n) = (rc_hist_entry){ g->last_seq, ts, f, key, dkey_len };
    g->hist_n++;
    account(g, (int64_t)entry_bytes(f, key ? dkey_len : 0));
    return 0;
}

void rc_group_evict_history(rc_group *g)
{
    for (uint32_t i = 0; i < g->hist_n; i++)
        rc_frame_unref(hist_slot(g, i)->frame); /* dkeys belong to the dedup map, freed next */
    rc_strmap_free(&g->dedup);
    rc_strmap_init(&g->dedup);
    free(g->hist);
    g->hist = NULL;
    g->hist_cap = g->hist_n = g->hist_head = 0;
    account(g, -(int64_t)g->hist_bytes);
    g->warm = false;
}

void rc_group_take_history(rc_group *g, rc_group *from)
{
#define RC_SWAP(a, b) do { __typeof__(a) t_ = (a); (a) = (b); (b) = t_; } while (0)
    RC_SWAP(g->hist, from->hist);
    RC_SWAP(g->hist_cap, from->hist_cap);
    RC_SWAP(g->hist_n, from->hist_n);
    RC_SWAP(g->hist_head, from->hist_head);
    RC_SWAP(g->dedup, from->dedup);
#undef RC_SWAP
    uint64_t now = from->hist_bytes, before = g->hist_bytes;
    from->hist_bytes = before;
    from->acct = NULL;
    g->hist_bytes = 0;
    account(g, (int64_t)now);
    if (g->acct)
        *g->acct -= before;
}

void rc_group_forget_last(rc_group *g)
{
    if (g->hist_n == 0)
        return;
    rc_hist_entry *e = hist_slot(g, g->hist_n - 1);
    account(g, -(int64_t)entry_bytes(e->frame, e->dkey ? e->dkey_len : 0));
    if (e->dkey)
        rc_strmap_del(&g->dedup, e->dkey, e->dkey_len); /* frees the key e->dkey points to */
    rc_frame_unref(e->frame);
    g->hist_n--;
    g->last_seq--;
}
