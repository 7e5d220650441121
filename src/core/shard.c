/*
 * Shard worker: where a message is sequenced.
 *
 * The loop takes up to RC_SHARD_BATCH jobs, applies each to its group, and
 * then flushes the per-io-thread outbatches it filled, so one ring push
 * carries up to RC_OUTBATCH_CAP deliveries. A `msg` frame is encoded once per
 * message; each recipient's delivery holds one reference to it and history
 * holds one more.
 */
#include "core/shard.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/backoff.h"
#include "core/clock.h"
#include "core/group.h"
#include "core/log.h"
#include "core/persist.h"
#include "core/shard_persist.h"
#include "core/stats.h"

#define RC_HIST_DEFAULT_LIMIT 100u /* hist without limit returns this many */
#define RC_DKEY_MAX (RC_MAX_USER + 1u + RC_MAX_MID)
#define RC_CACHE_LOW_PCT 75u /* an over-budget history cache is trimmed to this share of its budget (ARCHITECTURE §6.1) */

/* ---- output ---- */

/* Hands every filled outbatch to its io thread. The io threads always drain
 * their rings, so a full ring is waited out (and counted), never dropped:
 * asleep until the io thread has taken something (rc_room, dispatch.h),
 * not yielding in a loop, which on a small box takes the CPU the io thread
 * needs to catch up. */
static void flush_outbatches(rc_shard *s)
{
    for (uint32_t i = 0; i < s->out.n; i++) {
        rc_outbatch *b = s->pending[i];
        if (!b || b->n == 0)
            continue;
        uint64_t t0 = 0;
        while (!rc_ring_enqueue(s->out.rings[i], b)) {
            if (!t0)
                t0 = rc_clock_mono_ns();
            RC_STAT_ADD(s->stats.out_stalls, 1);
            rc_waker_kick(s->out.wakers[i]);
            uint32_t seq = rc_room_prepare(s->out.rooms[i]);
            if (rc_ring_enqueue(s->out.rings[i], b)) {
                rc_room_cancel(s->out.rooms[i]);
                break;
            }
            rc_room_wait(s->out.rooms[i], seq, RC_SHARD_ROOM_WAIT_NS);
        }
        if (t0) /* the autoscaler reads it: shards that wait for io threads are not what to grow */
            RC_STAT_ADD(s->stats.out_stall_ns, rc_clock_mono_ns() - t0);
        s->pending[i] = NULL;
        rc_waker_wake(s->out.wakers[i]);
    }
}

/* An empty outbatch: a recycled one when io threads gave some back. */
static rc_outbatch *outbatch_get(rc_shard *s)
{
    rc_outbatch *b = NULL;
    if (rc_ring_dequeue_burst(s->spare, (void **)&b, 1) == 0) {
        while (!(b = malloc(sizeof(*b)))) {
            /* Out of memory: wait for io threads to free frames and batches. */
            flush_outbatches(s);
            sched_yield();
        }
    }
    b->n = 0;
    b->home = s->spare;
    return b;
}

/* Queues one delivery of f (the caller gave it a reference) to conn. */
void rc_shard_deliver(rc_shard *s, rc_conn_id conn, rc_frame *f)
{
    rc_shard_deliver_flags(s, conn, f, 0);
}

void rc_shard_deliver_flags(rc_shard *s, rc_conn_id conn, rc_frame *f, uint32_t flags)
{
    uint32_t io = rc_conn_io(conn);
    if (s->pending[io] && s->pending[io]->n == RC_OUTBATCH_CAP)
        flush_outbatches(s);
    if (!s->pending[io])
        s->pending[io] = outbatch_get(s);
    rc_outbatch *b = s->pending[io];
    b->d[b->n++] = (rc_delivery){ f, conn, flags };
}

/* Encodes m into a fresh frame for one recipient; returns the frame (NULL
 * when out of memory, which is logged). */
static rc_frame *reply(rc_shard *s, rc_conn_id conn, const rc_msg *m)
{
    s->scratch.len = 0;
    rc_frame *f = NULL;
    if (rc_encode(&s->scratch, m) == 0)
        f = rc_frame_take(&s->scratch, 0);
    if (!f) {
        RC_LOG_ERROR("shard", "id=%u event=reply_nomem type=%s", s->id,
                rc_type_name(m->type));
        return NULL;
    }
    rc_shard_deliver(s, conn, f);
    return f;
}

void rc_shard_reply_err(rc_shard *s, const rc_job *j, rc_err code, const char *text)
{
    rc_msg m = { .type = RC_T_ERR, .code = code, .text = rc_str_c(text) };
    if (j->has & RC_HAS_RID) {
        m.has |= RC_HAS_RID;
        m.rid = j->rid;
    }
    RC_STAT_ADD(s->stats.errors[code], 1);
    reply(s, j->conn, &m);
}

static rc_msg reply_to(const rc_job *j, rc_type t, const rc_group *g)
{
    rc_msg m = { .type = t };
    if (j->has & RC_HAS_RID) {
        m.has |= RC_HAS_RID;
        m.rid = j->rid;
    }
    m.g = (rc_str){ g ? g->name : rc_job_g(j), g ? g->name_len : j->g_len };
    return m;
}

/* ---- groups and the history cache (ARCHITECTURE §6.1) ---- */

static void lru_remove(rc_shard *s, rc_group *g)
{
    if (!g->in_lru)
        return;
    if (g->lru_prev)
        g->lru_prev->lru_next = g->lru_next;
    else
        s->lru_head = g->lru_next;
    if (g->lru_next)
        g->lru_next->lru_prev = g->lru_prev;
    else
        s->lru_tail = g->lru_prev;
    g->lru_prev = g->lru_next = NULL;
    g->in_lru = false;
}

/* g was just used: it is the last the cache gives up. */
static void lru_touch(rc_shard *s, rc_group *g)
{
    if (s->lru_head == g)
        return;
    lru_remove(s, g);
    g->lru_next = s->lru_head;
    if (s->lru_head)
        s->lru_head->lru_prev = g;
    s->lru_head = g;
    if (!s->lru_tail)
        s->lru_tail = g;
    g->in_lru = true;
}

/* This shard's share of history_cache_bytes: the budget over the shards
 * on its route. */
static uint64_t cache_budget(const rc_shard *s)
{
    uint32_t n = s->route && s->route->n ? s->route->n : 1;
    return s->limits.history_cache_bytes / n;
}

/* End of a tick (its write done): once the groups' history holds more
 * than the budget, the least recently used groups' history leaves memory
 * until it holds RC_CACHE_LOW_PCT of the budget, so the next ticks have
 * room before the next eviction (a working set, not one eviction per
 * tick); a group's next use reads back what it needs from storage
 * (group_find). Only with storage: without it history lives in memory
 * alone. The group used last stays, whatever its size. */
static void cache_trim(rc_shard *s)
{
    uint64_t budget = cache_budget(s);
    if (budget && s->store.persist && s->hist_bytes > budget) {
        uint64_t low = budget / 100u * RC_CACHE_LOW_PCT;
        while (s->hist_bytes > low && s->lru_tail && s->lru_tail != s->lru_head) {
            rc_group *g = s->lru_tail;
            lru_remove(s, g);
            if (g->hist_bytes) /* a cold group used since holds only what it needed */
                RC_STAT_ADD(s->stats.cache_evictions, 1);
            rc_group_evict_history(g);
        }
    }
    RC_STAT_SET(s->stats.cache_bytes, s->hist_bytes);
}

/* The oldest seq of g's history job j reads, last_seq + 1 when it reads
 * none: what a cold group must hold in memory for it, so that
 * rc_shard_group_load reads back from storage only that much, never the
 * whole history for one page of it (src/ARCHITECTURE.md §6.1).
 *  - send: nothing without a mid (it appends to the ring's tail), else the
 *    dedup window, the group's last dedup_window messages;
 *  - hist: the `limit` messages before `before` (do_hist's page);
 *  - join with since, catch-up: the messages after since (send_since,
 *    do_catchup; a later page reads on from there);
 *  - redeliver: from the letter's seq (redeliver_frame);
 *  - presence, typing, read, leave, join without since: nothing. */
static uint64_t after_since(const rc_group *g, const rc_job *j)
{
    return j->since < g->last_seq ? j->since + 1 : g->last_seq + 1; /* since may be any uint64 */
}

static uint64_t history_need(const rc_group *g, const rc_job *j)
{
    uint64_t none = g->last_seq + 1;
    switch (j->kind) {
    case RC_JOB_SEND:
        if (j->mid_len == 0 || g->dedup_window == 0)
            return none;
        return none > g->dedup_window ? none - g->dedup_window : 1;
    case RC_JOB_HIST: {
        uint64_t before = (j->has & RC_HAS_BEFORE) && j->before < none ? j->before : none;
        uint64_t limit = (j->has & RC_HAS_LIMIT) ? j->limit : RC_HIST_DEFAULT_LIMIT;
        if (before <= 1)
            return none;
        return before > limit ? before - limit : 1;
    }
    case RC_JOB_JOIN:
        return (j->has & RC_HAS_SINCE) ? after_since(g, j) : none;
    case RC_JOB_CATCHUP:
        return after_since(g, j);
    case RC_JOB_REDELIVER:
        return j->seq >= 1 && j->seq <= g->last_seq ? j->seq : none;
    default:
        return none;
    }
}

/* The job's group, with the history it reads in memory (read back from
 * storage after a restart or an eviction), or NULL. */
static rc_group *group_find(rc_shard *s, const rc_job *j)
{
    uint64_t *v = rc_strmap_get(&s->groups, rc_job_g(j), j->g_len);
    rc_group *g = v ? (rc_group *)(uintptr_t)*v : NULL;
    if (!g || j->kind == RC_JOB_DETACH)
        return g;
    uint64_t need = g->warm ? 0 : history_need(g, j);
    if (g->warm || rc_group_first_seq(g) <= need)
        RC_STAT_ADD(s->stats.cache_hits, 1); /* in memory already, or nothing to read */
    else
        rc_shard_group_load(s, g, need);
    lru_touch(s, g);
    return g;
}

static rc_group *group_get_or_create(rc_shard *s, const rc_job *j)
{
    rc_group *g = group_find(s, j);
    if (g)
        return g;
    g = rc_group_new(rc_job_g(j), j->g_len, s->limits.history_max, s->limits.dedup_window);
    if (!g)
        return NULL;
    g->created_ms = g->updated_ms = rc_clock_wall_ms();
    g->warm = true; /* nothing stored yet */
    g->acct = &s->hist_bytes;
    lru_touch(s, g);
    if (rc_strmap_put(&s->groups, g->name, g->name_len, (uint64_t)(uintptr_t)g) != 0) {
        rc_group_free(g);
        return NULL;
    }
    RC_STAT_ADD(s->stats.groups, 1);
    return g;
}

static bool is_member(const rc_group *g, const rc_job *j)
{
    return rc_strmap_get(&g->members, rc_job_user(j), j->user_len) != NULL;
}

/* ---- requests ---- */

uint64_t rc_shard_first_served(const rc_shard *s, const rc_group *g)
{
    uint64_t now = rc_clock_wall_ms();
    uint64_t cutoff = now > s->limits.history_ttl_ms ? now - s->limits.history_ttl_ms : 0;
    return rc_group_first_live_seq(g, cutoff);
}

/* One answer (a hist reply, a join's backlog) holds at most max_reply_bytes
 * of messages (proto/PROTOCOL.md §6.5): true when `len` more would pass it.
 * The first message always goes, so a reply makes progress. */
static bool reply_full(const rc_shard *s, uint64_t bytes, uint32_t len)
{
    return s->limits.max_reply_bytes && bytes + len > s->limits.max_reply_bytes;
}

/* Sends conn g's history from seq `from` on, oldest first, at most
 * max_reply_bytes of it (the first message always); returns the first seq
 * not sent (last_seq + 1 when all went). */
static uint64_t send_page(rc_shard *s, rc_conn_id conn, const rc_group *g, uint64_t from)
{
    uint64_t seq = from, bytes = 0;
    for (; seq <= g->last_seq; seq++) {
        const rc_hist_entry *e = rc_group_hist_at(g, seq);
        if (seq > from && reply_full(s, bytes, e->frame->len))
            break;
        bytes += e->frame->len;
        rc_frame_ref(e->frame, 1);
        rc_shard_deliver_flags(s, conn, e->frame, RC_DELIVERY_SYNC);
    }
    return seq;
}

/* Sends history entries with seq > since (oldest first, at most
 * max_reply_bytes of them), then `synced`. */
static void send_since(rc_shard *s, const rc_job *j, rc_group *g)
{
    uint64_t first = rc_shard_first_served(s, g);
    /* since may be any uint64: at or past last_seq nothing is missed (and
     * since + 1 must not wrap to 0, which would replay everything). */
    bool behind = j->since < g->last_seq;
    uint64_t from = !behind ? g->last_seq + 1 : j->since + 1 > first ? j->since + 1 : first;
    uint64_t seq = send_page(s, j->conn, g, from);
    rc_msg m = reply_to(j, RC_T_SYNCED, g);
    m.seq = g->last_seq;
    m.lost = behind && j->since + 1 < first;
    m.more = seq <= g->last_seq; /* the client joins again with since = the last seq it got */
    if (m.more)
        RC_STAT_ADD(s->stats.replies_paged, 1);
    reply(s, j->conn, &m);
}

/* A slow reader's next page of g from history (src/net/catchup.c): the
 * messages with seq > since, oldest first, at most max_reply_bytes of them,
 * then an RC_FRAME_CAUGHT_UP frame saying where the page began and ended.
 * Later live deliveries of g to this connection come after it in the same
 * outbound ring, so the reader sees one gapless sequence. What history no
 * longer holds (seq > since but before the first served) is reported as
 * `lost`: the page starts at the first served, and the io thread letters
 * the rest from the frames it held. A connection no longer subscribed gets
 * the end frame alone (more = 0): it stops catching up. */
static void do_catchup(rc_shard *s, const rc_job *j)
{
    rc_group *g = group_find(s, j);
    rc_caught_up cu = { .next = j->since + 1, .first = j->since + 1 };
    bool subscribed = false;
    for (uint32_t i = 0; g && i < g->n_subs && !subscribed; i++)
        subscribed = g->subs[i] == j->conn;
    if (subscribed && j->since < g->last_seq) {
        uint64_t first = rc_shard_first_served(s, g);
        uint64_t from = j->since + 1 < first ? first : j->since + 1;
        uint64_t seq = from <= g->last_seq ? send_page(s, j->conn, g, from) : from;
        cu.lost = from > j->since + 1;
        cu.first = from;
        cu.more = seq <= g->last_seq;
        cu.next = seq;
        RC_STAT_ADD(s->stats.catchup_msgs, seq - from);
    }
    rc_frame *f;
    while (!(f = rc_frame_alloc(sizeof(cu) + j->g_len))) {
        /* Out of memory: the io thread waits for this frame to go on with
         * the reader, so wait for io threads to free frames and batches. */
        flush_outbatches(s);
        sched_yield();
    }
    memcpy(f->data, &cu, sizeof(cu));
    memcpy(f->data + sizeof(cu), rc_job_g(j), j->g_len);
    f->len = (uint32_t)(sizeof(cu) + j->g_len);
    f->kind = RC_FRAME_CAUGHT_UP;
    rc_shard_deliver(s, j->conn, f);
}

/* Answers a refused join, and tells the io thread the session did not join
 * (it counted the group against max_groups_per_session when it routed). */
static void refuse_join(rc_shard *s, const rc_job *j, rc_err code, const char *text)
{
    rc_shard_reply_err(s, j, code, text);
    rc_frame *f = rc_frame_new((const uint8_t *)rc_job_g(j), j->g_len);
    if (!f)
        return; /* the session keeps the place until it leaves or closes */
    f->kind = RC_FRAME_JOIN_REFUSED;
    rc_shard_deliver(s, j->conn, f);
}

/* ---- presence and typing (ARCHITECTURE §3.8) ---- */

/* Notes that user went online or offline in g this tick. Events go out at
 * the end of the tick (presence_flush), one per user and group at most: a
 * user who left and came back within the tick produces none. */
static void presence_change(rc_shard *s, rc_group *g, const char *user, uint32_t user_len, bool now_online)
{
    char key[sizeof(g) + RC_MAX_USER];
    memcpy(key, &g, sizeof(g));
    memcpy(key + sizeof(g), user, user_len);
    uint32_t len = (uint32_t)sizeof(g) + user_len;
    uint64_t *v = rc_strmap_get(&s->presence_tick, key, len);
    if (v) {
        *v = (*v & 1u) | (now_online ? 2u : 0u);
        return;
    }
    if (rc_strmap_put(&s->presence_tick, key, len, (now_online ? 0u : 1u) | (now_online ? 2u : 0u)) != 0)
        RC_LOG_ERROR("shard", "id=%u event=presence_nomem group=%.*s", s->id, (int)g->name_len, g->name);
}

static void online_add(rc_shard *s, rc_group *g, const rc_job *j)
{
    uint64_t *v = rc_strmap_get(&g->online, rc_job_user(j), j->user_len);
    if (v) {
        (*v)++;
        return;
    }
    if (rc_strmap_put(&g->online, rc_job_user(j), j->user_len, 1) == 0)
        presence_change(s, g, rc_job_user(j), j->user_len, true);
}

static void online_drop(rc_shard *s, rc_group *g, const rc_job *j)
{
    uint64_t *v = rc_strmap_get(&g->online, rc_job_user(j), j->user_len);
    if (!v || --*v > 0)
        return;
    rc_strmap_del(&g->online, rc_job_user(j), j->user_len);
    presence_change(s, g, rc_job_user(j), j->user_len, false);
}

/* One frame to every subscriber of g whose flags have `flag` (0: all) and
 * whose user is not `skip_user` (0: none). */
static uint32_t deliver_event(rc_shard *s, rc_group *g, const rc_msg *m, uint8_t flag, uint64_t skip_user)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < g->n_subs; i++)
        n += (!flag || (g->sub_flags[i] & flag)) && (!skip_user || g->sub_users[i] != skip_user);
    if (n == 0)
        return 0;
    s->scratch.len = 0;
    rc_frame *f = rc_encode(&s->scratch, m) == 0 ? rc_frame_take(&s->scratch, 0) : NULL;
    if (!f) {
        RC_LOG_ERROR("shard", "id=%u event=event_nomem type=%s", s->id, rc_type_name(m->type));
        return 0;
    }
    rc_frame_ref(f, n - 1);
    for (uint32_t i = 0; i < g->n_subs; i++)
        if ((!flag || (g->sub_flags[i] & flag)) && (!skip_user || g->sub_users[i] != skip_user))
            rc_shard_deliver(s, g->subs[i], f);
    return n;
}

/* End of a burst: the tick's net presence changes as online/offline events
 * to the sessions that joined with presence. */
static void presence_flush(rc_shard *s)
{
    rc_strmap *t = &s->presence_tick;
    if (t->n == 0)
        return;
    for (uint32_t i = 0; i < t->cap; i++) {
        const rc_strmap_slot *sl = &t->slots[i];
        if (!sl->hash)
            continue;
        bool was = sl->val & 1u, is = sl->val & 2u;
        if (was == is) {
            RC_STAT_ADD(s->stats.presence_coalesced, 1);
            continue;
        }
        rc_group *g;
        memcpy(&g, sl->key, sizeof(g));
        rc_msg m = { .type = is ? RC_T_ONLINE : RC_T_OFFLINE, .g = { g->name, g->name_len },
                     .user = { sl->key + sizeof(g), sl->len - (uint32_t)sizeof(g) } };
        deliver_event(s, g, &m, RC_SUB_PRESENCE, 0);
        RC_STAT_ADD(s->stats.presence_events, 1);
    }
    rc_strmap_free(t);
    rc_strmap_init(t);
}

static void do_presence(rc_shard *s, const rc_job *j)
{
    rc_group *g = group_find(s, j);
    if (!g || !is_member(g, j)) {
        rc_shard_reply_err(s, j, RC_E_NOT_MEMBER, "join the group before asking who is online");
        return;
    }
    uint32_t n = g->online.n < RC_MAX_PRESENCE_USERS ? g->online.n : RC_MAX_PRESENCE_USERS, k = 0;
    rc_str *users = n ? malloc(n * sizeof(*users)) : NULL;
    if (n && !users) {
        rc_shard_reply_err(s, j, RC_E_INTERNAL, "out of memory listing who is online; try again later");
        return;
    }
    for (uint32_t i = 0; i < g->online.cap && k < n; i++)
        if (g->online.slots[i].hash)
            users[k++] = (rc_str){ g->online.slots[i].key, g->online.slots[i].len };
    rc_msg m = reply_to(j, RC_T_PRESENCE, g);
    m.has |= RC_HAS_USERS;
    m.users = users;
    m.n_users = k;
    m.n = g->online.n;
    reply(s, j->conn, &m);
    free(users);
}

#define RC_TYPING_EVERY_MS 1000u /* typing forwarded at most once per user per group this often */

static void do_typing(rc_shard *s, const rc_job *j)
{
    rc_group *g = group_find(s, j);
    if (!g || !is_member(g, j)) {
        rc_shard_reply_err(s, j, RC_E_NOT_MEMBER, "join the group before typing in it");
        return;
    }
    uint64_t now = s->tick_ns / 1000000u;
    uint64_t *last = rc_strmap_get(&g->typed, rc_job_user(j), j->user_len);
    if (last && now - *last < RC_TYPING_EVERY_MS) {
        RC_STAT_ADD(s->stats.typing_dropped, 1); /* silently, as the protocol says */
        return;
    }
    if (last)
        *last = now;
    else if (rc_strmap_put(&g->typed, rc_job_user(j), j->user_len, now) != 0)
        return; /* out of memory: a typing notice is not worth an error */
    rc_msg m = { .type = RC_T_TYPING, .g = { g->name, g->name_len }, .from = { rc_job_user(j), j->user_len } };
    deliver_event(s, g, &m, 0, rc_hash64(rc_job_user(j), j->user_len));
    RC_STAT_ADD(s->stats.typing_forwarded, 1);
}

/* ---- read cursors, receipts and the inbox (ARCHITECTURE §3.11) ---- */

/* The user's read cursor of g: from memory, or read from storage once and
 * kept (entries exist for stored members only: a leave drops its entry).
 * 0, or -1 when storage failed (logged). */
static int read_cursor(rc_shard *s, rc_group *g, const char *user, uint32_t user_len, uint64_t *out)
{
    const uint64_t *v = rc_strmap_get(&g->reads, user, user_len);
    if (v) {
        *out = *v;
        return 0;
    }
    *out = 0;
    if (s->store.persist) {
        char err[256] = "";
        if (s->store.ops->get_read(s->store.persist, g->name, g->name_len, user, user_len, out, err,
                                   sizeof(err)) != 0) {
            RC_LOG_ERROR("shard", "id=%u event=read_cursor_failed group=%.*s err=\"%s\"", s->id, (int)g->name_len,
                         g->name, err);
            return -1;
        }
    }
    if (rc_strmap_put(&g->reads, user, user_len, *out) != 0)
        RC_LOG_WARN("shard", "id=%u event=read_cursor_nomem group=%.*s", s->id, (int)g->name_len, g->name);
    return 0;
}

/* The key of (g, user) in the tick's maps keyed by group and user. */
static uint32_t tick_key(char *key, const rc_group *g, const char *user, uint32_t user_len)
{
    memcpy(key, &g, sizeof(g));
    memcpy(key + sizeof(g), user, user_len);
    return (uint32_t)sizeof(g) + user_len;
}

static void do_read(rc_shard *s, const rc_job *j)
{
    rc_group *g = group_find(s, j);
    if (!g || !is_member(g, j)) {
        rc_shard_reply_err(s, j, RC_E_NOT_MEMBER, "join the group before marking it read");
        return;
    }
    if (j->seq > g->last_seq) {
        rc_shard_reply_err(s, j, RC_E_BAD_FIELD, "seq is past the group's last seq");
        return;
    }
    uint64_t cur;
    if (read_cursor(s, g, rc_job_user(j), j->user_len, &cur) != 0) {
        rc_shard_reply_err(s, j, RC_E_INTERNAL, "the read cursor could not be read; retry");
        return;
    }
    char key[sizeof(g) + RC_MAX_USER];
    uint32_t klen = tick_key(key, g, rc_job_user(j), j->user_len);
    if (j->seq > cur) {
        uint64_t *v = rc_strmap_get(&g->reads, rc_job_user(j), j->user_len);
        bool noted = rc_strmap_get(&s->read_tick, key, klen) != NULL;
        if ((!v && rc_strmap_put(&g->reads, rc_job_user(j), j->user_len, j->seq) != 0) ||
            rc_strmap_put(&s->read_tick, key, klen, j->seq) != 0) {
            rc_strmap_del(&g->reads, rc_job_user(j), j->user_len); /* read from storage again next time */
            rc_shard_reply_err(s, j, RC_E_INTERNAL, "out of memory storing the read cursor; retry");
            return;
        }
        if (v)
            *v = j->seq;
        cur = j->seq;
        RC_STAT_ADD(s->stats.reads_moved, 1);
        if (noted)
            RC_STAT_ADD(s->stats.receipts_coalesced, 1);
    }
    rc_msg m = reply_to(j, RC_T_MARKED, g);
    m.seq = cur;
    rc_frame *f = reply(s, j->conn, &m);
    if (rc_strmap_get(&s->read_tick, key, klen))
        rc_shard_persist_marked(s, j, f); /* this tick moved the cursor: the reply shares its write's fate */
}

/* After the tick's write: each cursor the tick moved as one `receipt` to
 * the sessions that joined with receipts (coalesced: the tick's last value
 * per user and group). A write that failed moved nothing: the cursors are
 * forgotten in memory (read back from storage at next use) and the marked
 * replies were withdrawn with E_INTERNAL. */
static void receipt_flush(rc_shard *s, bool written)
{
    rc_strmap *t = &s->read_tick;
    if (t->n == 0)
        return;
    for (uint32_t i = 0; i < t->cap; i++) {
        const rc_strmap_slot *sl = &t->slots[i];
        if (!sl->hash)
            continue;
        rc_group *g;
        memcpy(&g, sl->key, sizeof(g));
        rc_str user = { sl->key + sizeof(g), sl->len - (uint32_t)sizeof(g) };
        if (!written) {
            rc_strmap_del(&g->reads, user.ptr, user.len);
            continue;
        }
        rc_msg m = { .type = RC_T_RECEIPT, .g = { g->name, g->name_len }, .user = user, .seq = sl->val };
        if (deliver_event(s, g, &m, RC_SUB_RECEIPTS, 0))
            RC_STAT_ADD(s->stats.receipts, 1);
    }
    rc_strmap_free(t);
    rc_strmap_init(t);
}

/* One group of an inbox while it is gathered: its key in the sort. */
typedef struct inbox_row {
    char g[RC_MAX_GROUP];
    uint32_t g_len;
    uint64_t seq, read, ts;
} inbox_row;

typedef struct inbox_ctx {
    rc_shard *s;
    inbox_row *rows;
    uint32_t n, cap;
    bool broken;
} inbox_ctx;

static int inbox_collect(void *ud, const rc_persist_member_group *mg)
{
    inbox_ctx *c = ud;
    if (mg->g_len > RC_MAX_GROUP)
        return 0; /* no request can name it */
    if (c->n == c->cap) {
        uint32_t cap = c->cap ? c->cap * 2 : 64;
        inbox_row *r = realloc(c->rows, cap * sizeof(*r));
        if (!r) {
            c->broken = true;
            return 1;
        }
        c->rows = r;
        c->cap = cap;
    }
    inbox_row *r = &c->rows[c->n++];
    memcpy(r->g, mg->g, mg->g_len);
    r->g_len = mg->g_len;
    r->seq = mg->seq;
    r->read = mg->read;
    r->ts = 0;
    rc_msg m;
    if (mg->map && rc_decode(&c->s->dec, mg->map, mg->map_len, &m, NULL) == RC_OK && m.type == RC_T_MSG)
        r->ts = m.ts;
    return 0;
}

/* Newest activity first; groups without a message last, by id. */
static int inbox_order(const void *a, const void *b)
{
    const inbox_row *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? 1 : -1;
    int c = memcmp(x->g, y->g, x->g_len < y->g_len ? x->g_len : y->g_len);
    return c ? c : (x->g_len > y->g_len) - (x->g_len < y->g_len);
}

/* The last message of one listed group, copied out of storage. */
typedef struct inbox_last {
    rc_buf *buf;
    size_t off;
    uint32_t len;
    bool found;
} inbox_last;

static int inbox_take_last(void *ud, uint64_t seq, const uint8_t *map, uint32_t len)
{
    (void)seq;
    inbox_last *l = ud;
    l->off = l->buf->len;
    l->len = len;
    l->found = rc_buf_append(l->buf, map, len) == 0;
    return 1;
}

#define RC_INBOX_ENTRY_BYTES 64u /* an inbox entry's keys and numbers, besides its g and last map */

/* inbox (proto/PROTOCOL.md §6.11): the user's groups from the per-user
 * index in storage, not from the shards' memory: the groups live on every
 * shard, and what storage holds is what every ack and marked already told
 * the clients (each leaves only after its tick's write). One prefix scan of
 * the index, with the read cursors and each group's newest history entry
 * beside it; then the newest `limit` groups' last messages, within
 * max_reply_bytes. */
static void do_inbox(rc_shard *s, const rc_job *j)
{
    if (!s->store.persist) {
        rc_shard_reply_err(s, j, RC_E_INTERNAL, "inbox needs storage; this server runs with durability=off");
        return;
    }
    RC_STAT_ADD(s->stats.inbox_requests, 1);
    inbox_ctx c = { .s = s };
    bool more = false;
    char err[256] = "";
    if (s->store.ops->user_groups(s->store.persist, rc_job_user(j), j->user_len, s->limits.inbox_scan_max,
                                  inbox_collect, &c, &more, err, sizeof(err)) != 0 ||
        c.broken) {
        RC_LOG_ERROR("shard", "id=%u event=inbox_failed err=\"%s\"", s->id, c.broken ? "out of memory" : err);
        free(c.rows);
        rc_shard_reply_err(s, j, RC_E_INTERNAL, "the inbox could not be read; retry");
        return;
    }
    if (c.n > 1)
        qsort(c.rows, c.n, sizeof(*c.rows), inbox_order);
    uint32_t limit = (j->has & RC_HAS_LIMIT) ? (uint32_t)j->limit : RC_INBOX_DEFAULT_LIMIT;
    uint32_t n = c.n < limit ? c.n : limit;
    rc_inbox_entry *e = n ? calloc(n, sizeof(*e)) : NULL;
    size_t *offs = n ? calloc(n, sizeof(*offs)) : NULL;
    rc_buf maps;
    rc_buf_init(&maps);
    if (n && (!e || !offs)) {
        free(e);
        free(offs);
        free(c.rows);
        rc_shard_reply_err(s, j, RC_E_INTERNAL, "out of memory building the inbox; retry");
        return;
    }
    uint64_t bytes = 0;
    uint32_t k = 0;
    for (; k < n; k++) {
        const inbox_row *r = &c.rows[k];
        inbox_last l = { .buf = &maps };
        if (r->seq)
            s->store.ops->scan(s->store.persist, r->g, r->g_len, r->seq, r->seq, 1, inbox_take_last, &l, err,
                               sizeof(err));
        uint64_t cost = RC_INBOX_ENTRY_BYTES + r->g_len + (l.found ? l.len : 0);
        if (k > 0 && reply_full(s, bytes, (uint32_t)cost)) {
            more = true;
            break;
        }
        bytes += cost;
        e[k] = (rc_inbox_entry){ .g = { r->g, r->g_len }, .seq = r->seq, .read = r->read,
                                 .unread = r->seq > r->read ? r->seq - r->read : 0, .ts = r->ts,
                                 .has_last = l.found, .last_map = { NULL, l.len } };
        offs[k] = l.off;
    }
    for (uint32_t i = 0; i < k; i++) /* maps grew while it was filled: point into it now */
        e[i].last_map.ptr = e[i].has_last ? (const char *)maps.data + offs[i] : NULL;
    rc_msg m = reply_to(j, RC_T_INBOX, NULL);
    m.g = (rc_str){ 0 };
    m.has |= RC_HAS_GROUPS;
    m.groups = e;
    m.n_groups = k;
    m.more = more;
    if (more)
        RC_STAT_ADD(s->stats.inbox_truncated, 1);
    reply(s, j->conn, &m);
    rc_buf_free(&maps);
    free(offs);
    free(e);
    free(c.rows);
}

static void do_join(rc_shard *s, const rc_job *j)
{
    rc_group *g = group_get_or_create(s, j);
    if (!g) {
        refuse_join(s, j, RC_E_INTERNAL, "out of memory creating the group; try again later");
        return;
    }
    if (!is_member(g, j)) {
        if (g->members.n >= s->limits.max_members_per_group) {
            refuse_join(s, j, RC_E_LIMIT, "the group has reached max_members_per_group");
            return;
        }
        if (rc_strmap_put(&g->members, rc_job_user(j), j->user_len, 1) != 0) {
            refuse_join(s, j, RC_E_INTERNAL, "out of memory adding the member; try again later");
            return;
        }
        g->updated_ms = rc_clock_wall_ms();
        rc_shard_persist_snapshot(s, g);
        rc_shard_persist_member(s, g, rc_job_user(j), j->user_len, true);
    }
    bool added;
    uint8_t flags = (j->presence ? RC_SUB_PRESENCE : 0) | (j->receipts ? RC_SUB_RECEIPTS : 0);
    if (rc_group_subscribe_as(g, j->conn, rc_hash64(rc_job_user(j), j->user_len), flags, &added) != 0) {
        refuse_join(s, j, RC_E_INTERNAL, "out of memory subscribing; try again later");
        return;
    }
    if (added)
        online_add(s, g, j);
    rc_msg m = reply_to(j, RC_T_JOINED, g);
    m.seq = g->last_seq;
    m.has |= RC_HAS_ONLINE | RC_HAS_READ;
    m.online = g->online.n;
    if (read_cursor(s, g, rc_job_user(j), j->user_len, &m.read) != 0)
        m.has &= ~(uint32_t)RC_HAS_READ; /* logged; the join itself stands */
    reply(s, j->conn, &m);
    if (j->has & RC_HAS_SINCE)
        send_since(s, j, g);
}

static void do_leave(rc_shard *s, const rc_job *j)
{
    rc_group *g = group_find(s, j);
    if (g) {
        if (rc_strmap_del(&g->members, rc_job_user(j), j->user_len)) {
            g->updated_ms = rc_clock_wall_ms();
            rc_shard_persist_snapshot(s, g);
            rc_shard_persist_member(s, g, rc_job_user(j), j->user_len, false);
            if (s->store.persist) /* stored, it outlives the membership; in memory only while a member */
                rc_strmap_del(&g->reads, rc_job_user(j), j->user_len);
        }
        if (rc_group_unsubscribe(g, j->conn))
            online_drop(s, g, j);
    }
    rc_msg m = reply_to(j, RC_T_LEFT, g);
    reply(s, j->conn, &m);
}

static void do_detach(rc_shard *s, const rc_job *j)
{
    rc_group *g = group_find(s, j);
    if (g && rc_group_unsubscribe(g, j->conn))
        online_drop(s, g, j);
}

static rc_frame *ack(rc_shard *s, const rc_job *j, const rc_group *g, uint64_t seq, uint64_t ts, bool dup)
{
    rc_msg m = reply_to(j, RC_T_ACK, g);
    m.seq = seq;
    m.ts = ts;
    if (dup) {
        m.has |= RC_HAS_DUP;
        m.dup = true;
    }
    return reply(s, j->conn, &m);
}

/* Builds the dedup key "user NUL mid"; returns its length, 0 without mid. */
static uint32_t dedup_key(const rc_job *j, char *out)
{
    if (!(j->has & RC_HAS_MID))
        return 0;
    memcpy(out, rc_job_user(j), j->user_len);
    out[j->user_len] = '\0';
    memcpy(out + j->user_len + 1, rc_job_mid(j), j->mid_len);
    return j->user_len + 1u + j->mid_len;
}

/* Encodes the `msg` frame of j's message (from its user) as seq of g. */
static rc_frame *encode_msg(rc_shard *s, const rc_job *j, const rc_group *g, uint64_t seq, uint64_t ts)
{
    rc_msg m = { .type = RC_T_MSG, .seq = seq, .ts = ts };
    m.g = (rc_str){ g->name, g->name_len };
    m.from = (rc_str){ rc_job_user(j), j->user_len };
    m.body = (rc_str){ rc_job_body(j), j->body_len };
    m.body_is_str = j->body_is_str;
    if (j->has & RC_HAS_MID) {
        m.has |= RC_HAS_MID;
        m.mid = (rc_str){ rc_job_mid(j), j->mid_len };
    }
    s->scratch.len = 0;
    if (rc_encode(&s->scratch, &m) != 0)
        return NULL;
    return rc_frame_take(&s->scratch, 0);
}


bool rc_shard_submit_letter(rc_shard *s, const rc_letter *l)
{
    if (!s->letters)
        return false;
    if (s->letters->submit(s->letters->self, l) == 0)
        return true;
    RC_STAT_ADD(s->stats.letters_refused, 1);
    RC_LOG_ERROR("shard", "id=%u event=letter_refused reason=%s group=%.*s", s->id,
            rc_letter_reason_name(l->reason), (int)l->g.len, l->g.ptr);
    return false;
}

/* A send that waited longer than max_queue_ms in the shard's ring is not
 * sequenced: the sender gets E_OVERLOADED and the message an `expired` dead
 * letter (ARCHITECTURE §7), so nothing is refused without a trace. */
static bool expire_send(rc_shard *s, const rc_job *j)
{
    /* From the push into this ring: the time a request waited in its io
     * thread before (its sender held, not read further) is bounded there. */
    uint64_t since = j->ring_ns ? j->ring_ns : j->enq_ns;
    if (!s->max_queue_ns || !since || s->tick_ns <= since || s->tick_ns - since <= s->max_queue_ns)
        return false;
    uint64_t waited_ms = (s->tick_ns - since) / 1000000u;
    char why[96];
    snprintf(why, sizeof(why), "waited %llu ms in the shard queue, over max_queue_ms", (unsigned long long)waited_ms);
    RC_STAT_ADD(s->stats.expired, 1);
    rc_letter l = { .reason = RC_LETTER_EXPIRED, .g = { rc_job_g(j), j->g_len },
                    .from = { rc_job_user(j), j->user_len }, .ts = rc_clock_wall_ms(),
                    .mid = { rc_job_mid(j), j->mid_len }, .body = { rc_job_body(j), j->body_len },
                    .body_is_str = j->body_is_str, .attempts = 1, .err = rc_str_c(why) };
    rc_shard_submit_letter(s, &l);
    rc_shard_reply_err(s, j, RC_E_OVERLOADED, "the message waited longer than max_queue_ms and was not sent; retry");
    return true;
}

/* One try at sequencing j's message as g's next seq: the frame, or NULL
 * when memory ran out (nothing changed). */
static rc_frame *sequence_once(rc_shard *s, const rc_job *j, rc_group *g, uint64_t ts, const char *dkey,
                               uint32_t dkey_len)
{
    if (s->fail_sequencing) {
        s->fail_sequencing--;
        return NULL;
    }
    rc_frame *f = encode_msg(s, j, g, g->last_seq + 1, ts);
    if (f && rc_group_remember(g, ts, f, dkey, dkey_len) == 0)
        return f;
    if (f)
        rc_frame_unref(f);
    return NULL;
}

/* Sequences j's message, trying RC_POISON_ATTEMPTS times with backoff and
 * jitter when memory runs out; after the last try the sender gets
 * E_INTERNAL and the message a `poison` dead letter (ARCHITECTURE §7), as a
 * write that failed every try does. */
static rc_frame *sequence(rc_shard *s, const rc_job *j, rc_group *g, uint64_t ts, const char *dkey, uint32_t dkey_len)
{
    uint32_t tries = 0;
    for (;;) {
        rc_frame *f = sequence_once(s, j, g, ts, dkey, dkey_len);
        tries++;
        if (f)
            return f;
        if (tries >= RC_POISON_ATTEMPTS)
            break;
        RC_STAT_ADD(s->stats.sequence_retries, 1);
        RC_LOG_WARN("shard", "id=%u event=sequence_retry attempt=%u of=%u group=%.*s", s->id, tries,
                    RC_POISON_ATTEMPTS, (int)g->name_len, g->name);
        rc_backoff_sleep(rc_backoff_us(tries, RC_POISON_BACKOFF_US, &s->backoff_rng));
    }
    RC_STAT_ADD(s->stats.poison_letters, 1);
    rc_letter l = { .reason = RC_LETTER_POISON, .g = { rc_job_g(j), j->g_len }, .from = { rc_job_user(j), j->user_len },
                    .ts = ts, .mid = { rc_job_mid(j), j->mid_len }, .body = { rc_job_body(j), j->body_len },
                    .body_is_str = j->body_is_str, .attempts = tries,
                    .err = rc_str_c("out of memory sequencing the message") };
    rc_shard_submit_letter(s, &l);
    rc_shard_reply_err(s, j, RC_E_INTERNAL, "out of memory sequencing the message; try again later");
    return NULL;
}

static void do_send(rc_shard *s, const rc_job *j)
{
    if (expire_send(s, j))
        return;
    rc_group *g = group_find(s, j);
    if (!g && j->publish) {
        rc_shard_reply_err(s, j, RC_E_NOT_MEMBER, "no such group: nobody has joined it");
        return;
    }
    if (!g || (!j->publish && !is_member(g, j))) {
        rc_shard_reply_err(s, j, RC_E_NOT_MEMBER, "join the group before sending to it");
        return;
    }
    char dkey[RC_DKEY_MAX];
    uint32_t dkey_len = dedup_key(j, dkey);
    uint64_t dup_seq = dkey_len ? rc_group_find_dup(g, dkey, dkey_len) : 0;
    if (dup_seq) {
        RC_STAT_ADD(s->stats.dups, 1);
        rc_frame *a = ack(s, j, g, dup_seq, rc_group_hist_at(g, dup_seq)->ts, true);
        rc_shard_persist_dup(s, g, j, dup_seq, a);
        return;
    }
    if (!rc_bucket_take(&g->sends, s->limits.group_rate, s->limits.group_burst, s->tick_ns)) {
        RC_STAT_ADD(s->stats.rate_limited, 1);
        rc_shard_reply_err(s, j, RC_E_RATE_LIMITED, "the group is over group_rate sends per second; slow down");
        return;
    }
    /* One clock read a burst, not one a message: a message's ts is when
     * the burst that sequences it began, at most one burst's work
     * (RC_SHARD_BATCH jobs) early, and never before it was sent. */
    uint64_t ts = s->tick_wall_ms;
    rc_frame *f = sequence(s, j, g, ts, dkey_len ? dkey : NULL, dkey_len);
    if (!f)
        return;
    RC_STAT_ADD(s->stats.sequenced, 1);
    /* History holds the frame's first reference; one more per recipient.
     * A sender that said hello with echo: false is not one. */
    uint32_t skipped = 0;
    rc_frame_ref(f, g->n_subs);
    for (uint32_t i = 0; i < g->n_subs; i++) {
        if (j->no_echo && g->subs[i] == j->conn) {
            skipped++;
            continue;
        }
        rc_shard_deliver(s, g->subs[i], f);
    }
    if (skipped)
        rc_frame_unref_n(f, skipped); /* never the last: history holds one */
    RC_STAT_ADD(s->stats.deliveries, g->n_subs - skipped);
    rc_frame *a = ack(s, j, g, g->last_seq, ts, false); /* NULL when out of memory: stored anyway */
    rc_shard_persist_msg(s, g, j, f, a);
}

/* The redelivery frame of the letter in j: history's own `msg` frame when
 * the group still retains that seq, else one encoded from the letter's
 * fields by the encoder `send` uses. NULL on ENOMEM. */
static rc_frame *redeliver_frame(rc_shard *s, const rc_job *j, const rc_group *g)
{
    const rc_hist_entry *e = rc_group_hist_at(g, j->seq);
    rc_frame *own = e ? NULL : encode_msg(s, j, g, j->seq, j->ts);
    const rc_frame *wire = e ? e->frame : own;
    rc_frame *f = wire ? rc_frame_redeliver_new((rc_str){ rc_job_to(j), j->to_len }, wire->data, wire->len) : NULL;
    if (own)
        rc_frame_unref(own);
    return f;
}

/* A replayed slow_consumer letter (io.c on_replay). The shard does not know
 * which user a subscribed connection belongs to, so the message goes to
 * every online subscriber as one redelivery frame naming its recipient, and
 * each io thread hands it only to a connection of that user that still owes
 * it: replaying twice delivers once. Nothing is sequenced or stored. The
 * admin gets an ack with the letter's seq and ts; dup: true when nobody is
 * online in the group at all (history serves the recipient's next join
 * with since). */
static void do_redeliver(rc_shard *s, const rc_job *j)
{
    rc_group *g = group_find(s, j);
    uint32_t n = g ? g->n_subs : 0;
    if (n) {
        rc_frame *f = redeliver_frame(s, j, g);
        if (!f) {
            rc_shard_reply_err(s, j, RC_E_INTERNAL, "out of memory redelivering the letter; try again later");
            return;
        }
        rc_frame_ref(f, n - 1); /* one reference per subscriber */
        for (uint32_t i = 0; i < n; i++)
            rc_shard_deliver(s, g->subs[i], f);
        RC_STAT_ADD(s->stats.redeliveries, 1);
    }
    ack(s, j, g, j->seq, j->ts, n == 0);
}

/* Appends the encoded `hist` reply: header fields, then the stored msg maps
 * copied as they are (their frames minus the length prefix). */
static void do_hist(rc_shard *s, const rc_job *j)
{
    rc_group *g = group_find(s, j);
    if (!g || !is_member(g, j)) {
        rc_shard_reply_err(s, j, RC_E_NOT_MEMBER, "join the group before reading its history");
        return;
    }
    uint64_t before = (j->has & RC_HAS_BEFORE) ? j->before : g->last_seq + 1;
    if (before > g->last_seq + 1)
        before = g->last_seq + 1;
    uint64_t limit = (j->has & RC_HAS_LIMIT) ? j->limit : RC_HIST_DEFAULT_LIMIT;
    uint64_t first = rc_shard_first_served(s, g);
    uint64_t from = before > first + limit ? before - limit : first;
    /* The newest messages under `before` that fit in max_reply_bytes: the
     * client pages back with before = the first seq it got. */
    uint64_t start = before, bytes = 0;
    while (start > from) {
        uint32_t len = rc_group_hist_at(g, start - 1)->frame->len;
        if (start < before && reply_full(s, bytes, len))
            break;
        bytes += len;
        start--;
    }
    bool more = start > from;
    if (more)
        RC_STAT_ADD(s->stats.replies_paged, 1);
    from = start;
    uint32_t n = before > from ? (uint32_t)(before - from) : 0;

    rc_msg m = reply_to(j, RC_T_HIST, g);
    rc_msg *msgs = NULL;
    rc_decoder *d = &s->dec;
    if (n) {
        msgs = calloc(n, sizeof(*msgs));
        if (!msgs) {
            rc_shard_reply_err(s, j, RC_E_INTERNAL, "out of memory reading history; try again later");
            return;
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        const rc_hist_entry *e = rc_group_hist_at(g, from + i);
        /* Decoding our own frame cannot fail; the zone is per message, so
         * copy the decoded scalars and point strings into the frame. */
        rc_decode(d, e->frame->data + RC_FRAME_HEADER, e->frame->len - RC_FRAME_HEADER, &msgs[i], NULL);
    }
    m.has |= RC_HAS_MSGS;
    m.msgs = msgs;
    m.n_msgs = n;
    m.more = more;
    reply(s, j->conn, &m);
    free(msgs);
}

/* ---- moving groups between shards (src/core/route.h) ---- */

static bool bit_get(const uint64_t *b, uint32_t i)
{
    return (b[i / 64] >> (i % 64)) & 1u;
}

static void bit_set(uint64_t *b, uint32_t i)
{
    b[i / 64] |= UINT64_C(1) << (i % 64);
}

/* At the start of a burst: a route newer than the shard's own means a move
 * has begun. Every job of the move (and every request routed by the new
 * route) was pushed after the route was published, so a shard that holds
 * one of them sees the new route here. */
static void move_follow(rc_shard *s)
{
    if (!s->routing || s->move.to)
        return;
    const rc_route *cur = rc_routing_cur(s->routing);
    if (cur->version == s->route->version)
        return;
    rc_shard_move *mv = &s->move;
    mv->from = s->route;
    mv->to = cur;
    mv->epochs = mv->handed_in = 0;
    mv->hand_due = mv->handed = false;
    memset(mv->src_done, 0, sizeof(mv->src_done));
    mv->block_max_ns = 0;
    RC_STAT_ADD(s->stats.moves, 1);
    RC_LOG_DEBUG("shard", "id=%u event=move_begin from_version=%llu to_version=%llu shards=%u->%u", s->id,
                 (unsigned long long)mv->from->version, (unsigned long long)cur->version, mv->from->n, cur->n);
}

/* Keeps a request whose group is moving here from a shard that has not
 * handed it over yet; true when it was kept. */
static bool move_park(rc_shard *s, rc_job *j)
{
    rc_shard_move *mv = &s->move;
    if (!mv->to || !rc_job_has_group(j))
        return false;
    uint32_t src = rc_route_shard(mv->from, rc_job_g(j), j->g_len);
    if (src == s->id || bit_get(mv->src_done, src))
        return false;
    while (mv->n_parked == mv->cap_parked) {
        uint32_t cap = mv->cap_parked ? mv->cap_parked * 2 : RC_SHARD_BATCH;
        rc_job **jobs = realloc(mv->parked, cap * sizeof(*jobs));
        if (jobs)
            mv->parked = jobs;
        uint32_t *src_of = jobs ? realloc(mv->parked_src, cap * sizeof(*src_of)) : NULL;
        if (src_of)
            mv->parked_src = src_of;
        uint64_t *at = src_of ? realloc(mv->parked_ns, cap * sizeof(*at)) : NULL;
        if (at) {
            mv->parked_ns = at;
            mv->cap_parked = cap;
            break;
        }
        /* Running the request now would let two shards sequence one group:
         * wait for memory instead (io threads free frames and batches). */
        RC_LOG_ERROR("shard", "id=%u event=park_nomem parked=%u", s->id, mv->n_parked);
        flush_outbatches(s);
        sched_yield();
    }
    mv->parked[mv->n_parked] = j;
    mv->parked_src[mv->n_parked] = src;
    mv->parked_ns[mv->n_parked] = rc_clock_mono_ns();
    mv->n_parked++;
    RC_STAT_ADD(s->stats.parked, 1);
    return true;
}

static void process_job(rc_shard *s, rc_job *j);

/* An old shard's HANDED: its groups are all here (or were never held), so
 * the requests parked for them run now, in the order they came. */
static void move_handed(rc_shard *s, const rc_job *j)
{
    rc_shard_move *mv = &s->move;
    uint32_t src = (uint32_t)j->ts;
    if (!mv->to || j->seq != mv->to->version || src >= RC_MAX_SHARDS || bit_get(mv->src_done, src)) {
        RC_LOG_ERROR("shard", "id=%u event=move_stray_handed from=%u version=%llu", s->id, src,
                     (unsigned long long)j->seq);
        return;
    }
    bit_set(mv->src_done, src);
    mv->handed_in++;
    uint64_t now = rc_clock_mono_ns();
    uint32_t keep = 0;
    for (uint32_t i = 0; i < mv->n_parked; i++) {
        if (mv->parked_src[i] != src) {
            mv->parked[keep] = mv->parked[i];
            mv->parked_src[keep] = mv->parked_src[i];
            mv->parked_ns[keep] = mv->parked_ns[i];
            keep++;
            continue;
        }
        uint64_t waited = now - mv->parked_ns[i];
        RC_STAT_ADD(s->stats.park_ns, waited);
        if (waited > mv->block_max_ns)
            mv->block_max_ns = waited;
        process_job(s, mv->parked[i]);
        free(mv->parked[i]);
    }
    mv->n_parked = keep;
}

/* A group handed over by its old owner: from now on this shard owns it. */
static void move_adopt(rc_shard *s, const rc_job *j)
{
    rc_group *g = j->group;
    while (rc_strmap_put(&s->groups, g->name, g->name_len, (uint64_t)(uintptr_t)g) != 0) {
        RC_LOG_ERROR("shard", "id=%u event=adopt_nomem group=%.*s", s->id, (int)g->name_len, g->name);
        flush_outbatches(s);
        sched_yield();
    }
    RC_STAT_ADD(s->stats.groups, 1);
    g->acct = &s->hist_bytes;
    s->hist_bytes += g->hist_bytes;
    if (g->warm || g->hist_n)
        lru_touch(s, g);
    if (j->ts)
        rc_shard_persist_snapshot(s, g); /* its snapshot was due at the old owner */
}

static void move_epoch(rc_shard *s, const rc_job *j)
{
    rc_shard_move *mv = &s->move;
    if (!mv->to || j->seq != mv->to->version || s->id >= mv->from->n) {
        RC_LOG_ERROR("shard", "id=%u event=move_stray_epoch version=%llu", s->id, (unsigned long long)j->seq);
        return;
    }
    if (++mv->epochs == s->routing->n_io)
        mv->hand_due = true; /* after this tick's write and flush (move_hand_over) */
}

/* Pushes a job of the move into another shard's ring; waits for room (the
 * other shard keeps draining its ring: what it cannot run yet it parks). */
static void push_to_peer(rc_shard *s, uint32_t t, rc_job *j)
{
    rc_shard *peer = s->peers[t];
    while (rc_shard_submit(peer, &j, 1) == 0) {
        RC_STAT_ADD(s->stats.out_stalls, 1);
        rc_waker_kick(&peer->waker);
        sched_yield();
    }
}

static rc_job *move_job(rc_job_kind kind, uint64_t version, uint64_t ts, rc_group *g)
{
    rc_job *j;
    while (!(j = rc_job_new(kind, 0, (rc_str){ 0 }, NULL)))
        sched_yield(); /* out of memory: a move cannot be abandoned half way */
    j->seq = version;
    j->ts = ts;
    j->group = g;
    return j;
}

/* Every io thread has routed its last request by the old route to this
 * shard, and the tick that ran them is written and flushed: each group the
 * new route gives to another shard goes there (ADOPT), then every other
 * shard of the new route hears that nothing more comes from here (HANDED).
 * A group whose snapshot is still queued (a failed write keeps it) leaves
 * the queue and is queued again by its new owner. */
static void move_hand_over(rc_shard *s)
{
    rc_shard_move *mv = &s->move;
    mv->hand_due = false;
    rc_group **out = NULL;
    while (s->groups.n && !(out = malloc(s->groups.n * sizeof(*out))))
        sched_yield();
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->groups.cap; i++) {
        if (!s->groups.slots || !s->groups.slots[i].hash)
            continue;
        rc_group *g = (rc_group *)(uintptr_t)s->groups.slots[i].val;
        if (rc_route_shard(mv->to, g->name, g->name_len) != s->id)
            out[n++] = g;
    }
    for (uint32_t i = 0; i < n; i++) {
        rc_group *g = out[i];
        rc_strmap_del(&s->groups, g->name, g->name_len);
        lru_remove(s, g);
        s->hist_bytes -= g->hist_bytes;
        g->acct = NULL; /* the new owner counts it */
        bool resnap = g->snap_queued;
        if (resnap) {
            for (uint32_t k = 0; k < s->n_snap; k++)
                if (s->snap[k] == g) {
                    s->snap[k] = s->snap[--s->n_snap];
                    break;
                }
            g->snap_queued = false;
        }
        uint32_t t = rc_route_shard(mv->to, g->name, g->name_len);
        push_to_peer(s, t, move_job(RC_JOB_ADOPT, mv->to->version, resnap, g));
    }
    free(out);
    RC_STAT_ADD(s->stats.groups, (uint64_t)-(int64_t)n);
    RC_STAT_ADD(s->stats.groups_moved, n);
    for (uint32_t t = 0; t < mv->to->n; t++)
        if (t != s->id)
            push_to_peer(s, t, move_job(RC_JOB_HANDED, mv->to->version, s->id, NULL));
    mv->handed = true;
    RC_LOG_DEBUG("shard", "id=%u event=move_handed_over groups=%u version=%llu", s->id, n,
                 (unsigned long long)mv->to->version);
}

/* After a burst: is this shard's part of the move done? A shard of the old
 * route has handed over; a shard of the new one has every other old
 * shard's HANDED (so nothing is parked). True when the shard is not on the
 * new route: its thread ends. */
static bool move_check_done(rc_shard *s)
{
    rc_shard_move *mv = &s->move;
    if (!mv->to)
        return false;
    bool in_from = s->id < mv->from->n, in_to = s->id < mv->to->n;
    if (in_from && !mv->handed)
        return false;
    if (in_to && mv->handed_in < mv->from->n - (in_from ? 1u : 0u))
        return false;
    s->route = mv->to;
    mv->from = mv->to = NULL;
    RC_STAT_SET(s->stats.park_ns_max, mv->block_max_ns);
    /* release: this shard's part (its groups handed over or adopted) is
     * complete for the server, which then frees the old route. */
    atomic_fetch_add_explicit(&s->routing->done, 1, memory_order_release);
    return !in_to;
}

/* Tells the io thread that a reply-heavy request has its whole answer
 * queued (rc_job_heavy): the connection may have another one at a shard. */
static void answered(rc_shard *s, const rc_job *j)
{
    rc_frame *f = rc_frame_alloc(0);
    if (!f) {
        RC_LOG_ERROR("shard", "id=%u event=answered_nomem", s->id); /* the connection stays held until it closes */
        return;
    }
    f->kind = RC_FRAME_ANSWERED;
    rc_shard_deliver(s, j->conn, f);
}

static void process_job(rc_shard *s, rc_job *j)
{
    switch (j->kind) {
    case RC_JOB_JOIN: do_join(s, j); break;
    case RC_JOB_LEAVE: do_leave(s, j); break;
    case RC_JOB_SEND: do_send(s, j); break;
    case RC_JOB_HIST: do_hist(s, j); break;
    case RC_JOB_DETACH: do_detach(s, j); break;
    case RC_JOB_REDELIVER: do_redeliver(s, j); break;
    case RC_JOB_PRESENCE: do_presence(s, j); break;
    case RC_JOB_TYPING: do_typing(s, j); break;
    case RC_JOB_READ: do_read(s, j); break;
    case RC_JOB_INBOX: do_inbox(s, j); break;
    case RC_JOB_CATCHUP: do_catchup(s, j); break;
    case RC_JOB_STOP: break;
    case RC_JOB_EPOCH: move_epoch(s, j); break;
    case RC_JOB_ADOPT: move_adopt(s, j); break;
    case RC_JOB_HANDED: move_handed(s, j); break;
    }
    if (rc_job_heavy(j))
        answered(s, j);
}

/* ---- thread ---- */

/* Blocks until a producer wakes us, unless the ring filled meanwhile. */
static void shard_sleep(rc_shard *s)
{
    rc_waker_prepare_sleep(&s->waker);
    if (rc_ring_count(s->inbound) == 0) {
        uint64_t v;
        RC_STAT_ADD(s->stats.sleeps, 1);
        ssize_t r = read(s->waker.efd, &v, sizeof(v));
        (void)r; /* EINTR: the loop re-checks the ring either way */
    }
    rc_waker_awake(&s->waker);
}

/* Memory latency, not work, dominates a job when groups are many: the job
 * was written by an io thread on another core, its group's slot and struct
 * are cold, and so is the history entry whose dedup key the job's message
 * pushes out of the window (written dedup_window messages ago). Before job
 * i is processed, job i + 4 is loaded, the groups-map slot of job i + 3,
 * the group struct of job i + 2 and that history entry of job i + 1, so by
 * the time each job's turn comes its memory is (mostly) in the cache. */
#define RC_PREFETCH_JOB 4u
#define RC_PREFETCH_SLOT 3u
#define RC_PREFETCH_GROUP 2u
#define RC_PREFETCH_HIST 1u

static const rc_group *peek_group(rc_shard *s, const rc_job *j)
{
    const uint64_t *v = rc_strmap_get(&s->groups, rc_job_g(j), j->g_len);
    return v ? (const rc_group *)(uintptr_t)*v : NULL;
}

/* ahead[k] keeps the group looked up for jobs[k] at the group stage, so the
 * history stage one job later does not look it up again. Groups are only
 * freed when the shard is destroyed, so a kept pointer stays valid through
 * the burst; a group created meanwhile is just not prefetched. */
static void prefetch_ahead(rc_shard *s, rc_job *const *jobs, const rc_group **ahead, uint32_t i, uint32_t n)
{
    if (i + RC_PREFETCH_JOB < n) {
        __builtin_prefetch(jobs[i + RC_PREFETCH_JOB]);
        __builtin_prefetch(jobs[i + RC_PREFETCH_JOB]->data);
    }
    if (i + RC_PREFETCH_SLOT < n) {
        const rc_job *j = jobs[i + RC_PREFETCH_SLOT];
        rc_strmap_prefetch(&s->groups, rc_job_g(j), j->g_len);
    }
    if (i + RC_PREFETCH_GROUP < n) {
        const rc_group *g = ahead[i + RC_PREFETCH_GROUP] = peek_group(s, jobs[i + RC_PREFETCH_GROUP]);
        if (g)
            __builtin_prefetch(g);
    }
    if (i + RC_PREFETCH_HIST < n && ahead[i + RC_PREFETCH_HIST] && jobs[i + RC_PREFETCH_HIST]->kind == RC_JOB_SEND)
        rc_group_prefetch_remember(ahead[i + RC_PREFETCH_HIST]);
}

/* A job's cost, for rc_shard_ring_wait_ns: this burst's time per job. A
 * dearer burst raises the estimate at once (admission must stop before the
 * ring holds seconds of work), a cheaper one lowers it by 1/8 of the gap. */
static void note_cost(rc_shard *s, uint32_t n)
{
    uint64_t per_job = (rc_clock_mono_ns() - s->tick_ns) / n, mean = rc_stat_get(&s->stats.job_ns);
    RC_STAT_SET(s->stats.job_ns, per_job >= mean ? per_job : mean - (mean - per_job) / RC_SHARD_COST_WEIGHT);
}

/* A shard leaving the route gives back what it kept for reuse: the spare
 * outbatches io threads returned, its encoding scratch. Its rings stay (an
 * io thread may still return an outbatch; a later grow starts it again). */
static void release_idle(rc_shard *s)
{
    void *b;
    while (rc_ring_dequeue_burst(s->spare, &b, 1) == 1)
        free(b);
    rc_buf_free(&s->scratch);
    rc_buf_init(&s->scratch);
}

/* A reload changed the limits a shard applies (core/live.h). */
static void follow_live(rc_shard *s)
{
    const rc_live_values *v = rc_live_changed(s->live, &s->live_version);
    if (!v)
        return;
    s->limits.group_rate = v->group_rate;
    s->limits.group_burst = v->group_burst;
    s->limits.max_members_per_group = v->max_members_per_group;
    s->limits.max_reply_bytes = v->max_reply_bytes;
    s->limits.history_ttl_ms = v->history_ttl_ms;
    s->limits.snapshot_every = v->snapshot_every;
    s->limits.snapshot_interval_ms = v->snapshot_interval_ms;
    s->limits.history_cache_bytes = v->history_cache_bytes;
    s->max_queue_ns = (uint64_t)v->max_queue_ms * 1000000u;
    rc_live_ack(&s->live_ack, s->live_version);
}

/* The Server API's questions (core/call.h, src/ARCHITECTURE.md §3.10),
 * between two bursts: the admin thread asks while it holds scale_lock, so
 * no group is moving and the owner the route names holds the group. */
static void call_group(rc_shard *s, rc_call *c)
{
    uint64_t *v = rc_strmap_get(&s->groups, c->name, c->name_len);
    const rc_group *g = v ? (const rc_group *)(uintptr_t)*v : NULL;
    if (!g)
        return;
    c->found = true;
    c->seq = g->last_seq;
    c->members = g->members.n;
    c->n = g->online.n;
    for (uint32_t i = 0; i < g->online.cap && c->n_names < RC_CALL_MAX_NAMES; i++)
        if (g->online.slots[i].hash)
            rc_call_add_name(c, g->online.slots[i].key, g->online.slots[i].len);
}

/* Membership is stored per group, so this looks the user up in every group
 * the shard holds: one hash lookup per group. */
static void call_user_groups(rc_shard *s, rc_call *c)
{
    for (uint32_t i = 0; i < s->groups.cap; i++) {
        if (!s->groups.slots[i].hash)
            continue;
        const rc_group *g = (const rc_group *)(uintptr_t)s->groups.slots[i].val;
        if (!rc_strmap_get(&g->members, c->name, c->name_len))
            continue;
        c->n++;
        rc_call_add_name(c, g->name, g->name_len);
    }
}

static void answer_call(rc_shard *s)
{
    rc_call *c = rc_call_take(&s->call);
    if (!c)
        return;
    if (c->kind == RC_CALL_GROUP)
        call_group(s, c);
    else if (c->kind == RC_CALL_USER_GROUPS)
        call_user_groups(s, c);
    rc_call_answer(c);
}

static void *shard_main(void *arg)
{
    rc_shard *s = arg;
    rc_job *jobs[RC_SHARD_BATCH];
    const rc_group *ahead[RC_SHARD_BATCH]; /* see prefetch_ahead */
    uint32_t idle = 0;
    bool stop = false;
    while (!stop) {
        follow_live(s);
        answer_call(s);
        uint32_t n = rc_ring_dequeue_burst(s->inbound, (void **)jobs, RC_SHARD_BATCH);
        if (n == 0) {
            if (++idle >= RC_SHARD_SPIN) {
                shard_sleep(s);
                idle = 0;
            }
            continue;
        }
        idle = 0;
        s->tick_ns = rc_clock_mono_ns();
        s->tick_wall_ms = rc_clock_wall_ms();
        move_follow(s);
        for (uint32_t k = 0; k < RC_PREFETCH_GROUP; k++)
            ahead[k] = NULL; /* the first jobs of a burst come before the pipeline fills */
        for (uint32_t i = 0; i < n; i++) {
            prefetch_ahead(s, jobs, ahead, i, n);
            if (move_park(s, jobs[i]))
                continue; /* runs when its group's old owner has handed it over */
            stop |= jobs[i]->kind == RC_JOB_STOP;
            process_job(s, jobs[i]);
            free(jobs[i]);
        }
        RC_STAT_ADD(s->stats.jobs, n);
        RC_STAT_ADD(s->stats.batches, 1);
        presence_flush(s);
        bool written = rc_shard_persist_commit(s); /* replies and deliveries leave only after the write */
        receipt_flush(s, written);
        flush_outbatches(s);
        if (s->move.hand_due)
            move_hand_over(s); /* after the write and the flush: the new owner's output follows ours */
        cache_trim(s);
        note_cost(s, n);
        if (move_check_done(s)) {
            release_idle(s);
            RC_LOG_INFO("shard", "id=%u event=retired version=%llu", s->id, (unsigned long long)s->route->version);
            break;
        }
    }
    return NULL;
}

int rc_shard_init(rc_shard *s, uint32_t id, uint32_t ring_capacity, const rc_shard_limits *lim,
                  const rc_outlets *out, const rc_shard_store *store)
{
    memset(s, 0, sizeof(*s));
    s->id = id;
    s->backoff_rng = UINT64_C(0x9E3779B97F4A7C15) * (id + 1u);
    if (store)
        s->store = *store;
    s->limits = *lim;
    s->out = *out;
    rc_strmap_init(&s->groups);
    rc_strmap_init(&s->presence_tick);
    rc_strmap_init(&s->read_tick);
    rc_strmap_init(&s->member_tick);
    rc_buf_init(&s->scratch);
    rc_decoder_init(&s->dec);
    s->inbound = rc_ring_create(ring_capacity, RC_RING_MPSC);
    s->spare = rc_ring_create(RC_SHARD_SPARE, RC_RING_MPSC);
    s->pending = calloc(out->n, sizeof(*s->pending));
    if (!s->inbound || !s->spare || !s->pending || rc_waker_init(&s->waker) != 0) {
        rc_shard_destroy(s);
        return -1;
    }
    return 0;
}

void rc_shard_set_routing(rc_shard *s, rc_routing *routing, rc_shard *const *peers, const rc_route *route)
{
    s->routing = routing;
    s->peers = peers;
    s->route = route;
}

void rc_shard_set_letters(rc_shard *s, const rc_letter_sink *letters, uint32_t max_queue_ms)
{
    s->letters = letters;
    s->max_queue_ns = (uint64_t)max_queue_ms * 1000000u;
}

int rc_shard_start(rc_shard *s)
{
    int e = pthread_create(&s->thread, NULL, shard_main, s);
    if (e) {
        errno = e;
        return -1;
    }
    return 0;
}

void rc_shard_join(rc_shard *s)
{
    pthread_join(s->thread, NULL);
}

void rc_shard_destroy(rc_shard *s)
{
    rc_call_slot_clear(&s->call);
    rc_shard_persist_free(s);
    for (uint32_t i = 0; i < s->groups.cap; i++)
        if (s->groups.slots && s->groups.slots[i].hash)
            rc_group_free((rc_group *)(uintptr_t)s->groups.slots[i].val);
    rc_strmap_free(&s->groups);
    rc_strmap_free(&s->presence_tick);
    rc_strmap_free(&s->read_tick);
    rc_strmap_free(&s->member_tick);
    if (s->inbound) {
        void *left[RC_SHARD_BATCH];
        uint32_t n;
        while ((n = rc_ring_dequeue_burst(s->inbound, left, RC_SHARD_BATCH)) > 0)
            for (uint32_t i = 0; i < n; i++)
                free(left[i]);
        rc_ring_destroy(s->inbound);
    }
    if (s->spare) {
        void *b;
        while (rc_ring_dequeue_burst(s->spare, &b, 1) == 1)
            free(b);
        rc_ring_destroy(s->spare);
    }
    for (uint32_t i = 0; i < s->move.n_parked; i++)
        free(s->move.parked[i]);
    free(s->move.parked);
    free(s->move.parked_src);
    free(s->move.parked_ns);
    memset(&s->move, 0, sizeof(s->move));
    free(s->pending);
    rc_buf_free(&s->scratch);
    rc_decoder_free(&s->dec);
    rc_waker_close(&s->waker);
    s->inbound = NULL;
    s->spare = NULL;
    s->pending = NULL;
}

uint32_t rc_shard_submit(rc_shard *s, rc_job *const *jobs, uint32_t n)
{
    uint32_t k = rc_ring_enqueue_burst(s->inbound, (void *const *)jobs, n);
    if (k)
        rc_waker_wake(&s->waker);
    return k;
}

uint64_t rc_shard_ring_wait_ns(const rc_shard *s)
{
    return (uint64_t)rc_ring_count(s->inbound) * rc_stat_get(&s->stats.job_ns);
}

uint32_t rc_shard_depth(const rc_shard *s)
{
    return rc_ring_count(s->inbound);
}
