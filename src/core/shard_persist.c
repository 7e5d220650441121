/*
 * Shard persistence: group commit of each tick's writes, bounded retries of
 * a failed write, undo and `poison` letters when every try failed, recovery
 * of stored groups and lazy loading of their history.
 * See shard_persist.h for the contract.
 */
#include "core/shard_persist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/persist.h"
#include "core/snapshot.h"
#include "core/backoff.h"
#include "core/stats.h"

#define RC_TRIM_EVERY 64u      /* retention deletes are issued every this many messages */
#define RC_TICK_MIN 64u        /* first allocation of the tick lists */

static bool persisting(const rc_shard *s)
{
    return s->store.persist != NULL;
}

static int grow(void **p, uint32_t *cap, size_t elem)
{
    uint32_t n = *cap ? *cap * 2 : RC_TICK_MIN;
    void *q = realloc(*p, n * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

static struct rc_persist_batch *tick_batch(rc_shard *s)
{
    if (!s->batch)
        s->batch = s->store.ops->batch_begin(s->store.persist);
    return s->batch;
}

/* ---- recovery ---- */

int rc_shard_adopt(rc_shard *s, const rc_persist_group *pg, char *err, size_t errlen)
{
    rc_group *g = rc_group_new(pg->g, pg->g_len, s->limits.history_max, s->limits.dedup_window);
    const char *why = "out of memory";
    if (!g || rc_snapshot_apply(g, pg->snapshot, pg->snapshot_len, &why) != 0) {
        snprintf(err, errlen, "group %.*s: bad snapshot: %s", (int)pg->g_len, pg->g, why);
        rc_group_free(g);
        return -1;
    }
    /* History wins: messages may have been stored after the last snapshot. */
    if (pg->newest_seq > g->last_seq)
        g->last_seq = pg->newest_seq;
    g->warm = false;
    g->snap_ms = rc_clock_mono_ms();
    g->acct = &s->hist_bytes;
    if (rc_strmap_put(&s->groups, g->name, g->name_len, (uint64_t)(uintptr_t)g) != 0) {
        snprintf(err, errlen, "out of memory adopting group %.*s", (int)pg->g_len, pg->g);
        rc_group_free(g);
        return -1;
    }
    RC_STAT_ADD(s->stats.groups, 1);
    return 0;
}

/* ---- lazy history load ---- */

typedef struct warm_ctx {
    rc_shard *s;
    rc_group *g;
    bool broken;
} warm_ctx;

static int warm_one(void *ud, uint64_t seq, const uint8_t *map, uint32_t len)
{
    warm_ctx *w = ud;
    rc_msg m;
    const char *why;
    if (w->g->hist_n == 0 && seq > w->g->last_seq + 1)
        w->g->last_seq = seq - 1; /* older entries left by history_ttl */
    if (seq != w->g->last_seq + 1 || rc_decode(&w->s->dec, map, len, &m, &why) != RC_OK || m.type != RC_T_MSG) {
        w->broken = true;
        return 1;
    }
    char dkey[RC_MAX_USER + 1 + RC_MAX_MID];
    uint32_t dkey_len = 0;
    if (m.has & RC_HAS_MID) {
        memcpy(dkey, m.from.ptr, m.from.len);
        dkey[m.from.len] = '\0';
        memcpy(dkey + m.from.len + 1, m.mid.ptr, m.mid.len);
        dkey_len = m.from.len + 1u + m.mid.len;
    }
    uint64_t ts = m.ts;
    rc_frame *f = malloc(sizeof(*f) + RC_FRAME_HEADER + len);
    if (!f) {
        w->broken = true;
        return 1;
    }
    atomic_init(&f->refs, 1);
    f->kind = RC_FRAME_WIRE;
    f->len = RC_FRAME_HEADER + len;
    rc_frame_put_len(f->data, len);
    memcpy(f->data + RC_FRAME_HEADER, map, len);
    if (rc_group_remember(w->g, ts, f, dkey_len ? dkey : NULL, dkey_len) != 0) {
        rc_frame_unref(f);
        w->broken = true;
        return 1;
    }
    return 0;
}

uint64_t rc_shard_retained_from(const rc_group *g)
{
    return g->last_seq >= g->hist_max ? g->last_seq - g->hist_max + 1 : 1;
}

/* Appends g's tail (the ring it holds now) to t, which holds the messages
 * just before it: 0, or -1 on ENOMEM. */
static int append_tail(rc_group *t, const rc_group *g)
{
    for (uint64_t seq = rc_group_first_seq(g); seq <= g->last_seq; seq++) {
        const rc_hist_entry *e = rc_group_hist_at(g, seq);
        rc_frame_ref(e->frame, 1);
        if (rc_group_remember(t, e->ts, e->frame, e->dkey, e->dkey ? e->dkey_len : 0) != 0) {
            rc_frame_unref(e->frame);
            return -1;
        }
    }
    return 0;
}

void rc_shard_group_load(rc_shard *s, rc_group *g, uint64_t from)
{
    if (g->warm || !persisting(s))
        return;
    uint64_t kept = rc_shard_retained_from(g), first = rc_group_first_seq(g);
    bool whole = from <= kept;
    if (whole)
        from = kept;
    if (from >= first) { /* the ring holds it already */
        g->warm = whole;
        return;
    }
    /* The older part is read into a scratch group, the tail in memory is
     * appended to it (the dedup window rebuilt in seq order), and g takes
     * the result: what this tick sequenced, not yet stored, stays. */
    rc_group *t = rc_group_new(g->name, g->name_len, g->hist_max, g->dedup_window);
    if (!t) {
        RC_LOG_ERROR("shard", "id=%u event=history_load_nomem group=%s", s->id, g->name);
        return;
    }
    t->last_seq = from - 1;
    warm_ctx w = { s, t, false };
    char err[256] = "";
    int r = s->store.ops->scan(s->store.persist, g->name, g->name_len, from, first - 1, (uint32_t)(first - from),
                               warm_one, &w, err, sizeof(err));
    if (t->hist_n == 0)
        t->last_seq = first - 1; /* nothing stored before the tail (history_ttl removed it) */
    if (r != 0 || w.broken || t->last_seq != first - 1) {
        /* Retention or a failed read left a gap before the tail: the ring
         * must stay gapless up to last_seq, so it keeps the tail alone. */
        RC_LOG_WARN("shard", "id=%u event=history_incomplete group=%s from=%llu to=%llu err=\"%s\"", s->id, g->name,
                    (unsigned long long)from, (unsigned long long)first - 1, err);
        rc_group_free(t);
        g->warm = whole;
        return;
    }
    RC_STAT_ADD(s->stats.warm_msgs, t->hist_n);
    if (append_tail(t, g) != 0) {
        RC_LOG_ERROR("shard", "id=%u event=history_load_nomem group=%s", s->id, g->name);
        rc_group_free(t);
        return;
    }
    rc_group_take_history(g, t);
    rc_group_free(t);
    g->warm = whole;
    RC_STAT_ADD(s->stats.warmups, 1);
}

/* ---- the tick ---- */

void rc_shard_persist_snapshot(rc_shard *s, rc_group *g)
{
    if (!persisting(s) || g->snap_queued)
        return;
    if (s->n_snap == s->cap_snap && grow((void **)&s->snap, &s->cap_snap, sizeof(*s->snap)) != 0)
        return; /* written with a later tick, when memory allows */
    g->snap_queued = true;
    s->snap[s->n_snap++] = g;
}

/* Keeps a reference to the tick's frames until the write is known. */
static void tick_record(rc_shard *s, rc_tick_send t)
{
    if (s->n_tick == s->cap_tick && grow((void **)&s->tick, &s->cap_tick, sizeof(*s->tick)) != 0) {
        RC_LOG_ERROR("shard", "id=%u event=tick_nomem", s->id);
        s->tick_unrecorded = true; /* a rebuilt batch would miss this send: no retry */
        return; /* without a record a failed write cannot withdraw these frames */
    }
    if (t.msg)
        rc_frame_ref(t.msg, 1);
    if (t.ack)
        rc_frame_ref(t.ack, 1);
    s->tick[s->n_tick++] = t;
}

void rc_shard_persist_dup(rc_shard *s, rc_group *g, const rc_job *j, uint64_t seq, rc_frame *ack)
{
    for (uint32_t i = 0; i < s->n_tick; i++) {
        if (s->tick[i].g == g && s->tick[i].msg && s->tick[i].seq == seq) {
            tick_record(s, (rc_tick_send){ g, seq, NULL, ack, j->conn, j->rid, j->has, false });
            return;
        }
    }
}

/* Puts one history entry into the tick's batch, with the retention delete
 * that every RC_TRIM_EVERY-th seq carries. */
static void put_history(rc_shard *s, rc_group *g, uint64_t seq, const rc_frame *msg)
{
    struct rc_persist_batch *b = tick_batch(s);
    if (!g->has_store_tag) { /* a hash of the id: once per group, not per message */
        s->store.ops->group_tag(g->name, g->name_len, g->store_tag);
        g->has_store_tag = true;
    }
    s->store.ops->put_msg(b, g->name, g->name_len, g->store_tag, seq, msg->data + RC_FRAME_HEADER,
                          msg->len - RC_FRAME_HEADER);
    if (seq % RC_TRIM_EVERY == 0) {
        /* history_max and history_ttl; a cold group's ring holds only its
         * tail, so it goes by history_max alone (history_ttl at its next load). */
        uint64_t keep = g->warm ? rc_shard_first_served(s, g) : rc_shard_retained_from(g);
        if (keep > 1)
            s->store.ops->trim_before(b, g->name, g->name_len, g->store_tag, keep);
    }
}

void rc_shard_persist_msg(rc_shard *s, rc_group *g, const rc_job *j, rc_frame *msg, rc_frame *ack)
{
    if (!persisting(s))
        return;
    put_history(s, g, g->last_seq, msg);
    tick_record(s, (rc_tick_send){ g, g->last_seq, msg, ack, j->conn, j->rid, j->has, false });
    g->updated_ms = s->tick_wall_ms; /* the burst's clock, read once (shard_main), not twice a message */
    if (++g->changes >= s->limits.snapshot_every ||
        s->tick_ns / RC_NS_PER_MS - g->snap_ms >= s->limits.snapshot_interval_ms)
        rc_shard_persist_snapshot(s, g);
}

void rc_shard_persist_member(rc_shard *s, rc_group *g, const char *user, uint32_t user_len, bool member)
{
    if (!persisting(s))
        return;
    char key[sizeof(g) + RC_MAX_USER];
    memcpy(key, &g, sizeof(g));
    memcpy(key + sizeof(g), user, user_len);
    if (rc_strmap_put(&s->member_tick, key, (uint32_t)sizeof(g) + user_len, member) != 0)
        RC_LOG_ERROR("shard", "id=%u event=member_index_nomem group=%s", s->id, g->name);
}

void rc_shard_persist_marked(rc_shard *s, const rc_job *j, rc_frame *f)
{
    if (persisting(s) && f)
        tick_record(s, (rc_tick_send){ NULL, 0, NULL, f, j->conn, j->rid, j->has, true });
}

/* The tick's per-user index changes and moved read cursors (s->member_tick,
 * s->read_tick, keyed by group pointer and user) into the batch; put again
 * on every attempt, like the snapshots. */
static void put_keyed(rc_shard *s, const rc_strmap *t, bool reads)
{
    for (uint32_t i = 0; i < t->cap; i++) {
        const rc_strmap_slot *sl = &t->slots[i];
        if (!sl->hash)
            continue;
        rc_group *g;
        memcpy(&g, sl->key, sizeof(g));
        const char *user = sl->key + sizeof(g);
        uint32_t user_len = sl->len - (uint32_t)sizeof(g);
        if (reads)
            s->store.ops->put_read(tick_batch(s), g->name, g->name_len, user, user_len, sl->val);
        else
            s->store.ops->put_member(tick_batch(s), g->name, g->name_len, user, user_len, sl->val != 0);
    }
}

/* Puts every due snapshot into the batch; versions rise with each. */
static int put_snapshots(rc_shard *s, rc_buf *buf)
{
    uint64_t now = rc_clock_mono_ms();
    for (uint32_t i = 0; i < s->n_snap; i++) {
        rc_group *g = s->snap[i];
        buf->len = 0;
        g->version++;
        if (rc_snapshot_encode(g, buf) != 0)
            return -1;
        s->store.ops->put_group(tick_batch(s), g->name, g->name_len, buf->data, (uint32_t)buf->len);
        g->changes = 0;
        g->snap_ms = now;
    }
    return 0;
}

/* The write failed: undo the tick's sends, newest first. */
static void undo_tick(rc_shard *s)
{
    for (uint32_t i = s->n_tick; i-- > 0;) {
        rc_tick_send *t = &s->tick[i];
        if (t->msg) {
            rc_group_forget_last(t->g);
            t->g->warm = false; /* the ring may have dropped an older entry: reload it on next use */
            t->msg->kind = RC_FRAME_VOID;
        }
        if (t->ack)
            t->ack->kind = RC_FRAME_VOID;
        rc_job j = { .conn = t->conn, .rid = t->rid, .has = t->has };
        rc_shard_reply_err(s, &j, RC_E_INTERNAL,
                           t->read ? "the read cursor could not be stored; retry"
                                   : "the message could not be stored; it was not sent; retry");
    }
}

static void tick_reset(rc_shard *s, bool keep_snapshots)
{
    for (uint32_t i = 0; i < s->n_tick; i++) {
        if (s->tick[i].msg)
            rc_frame_unref(s->tick[i].msg);
        if (s->tick[i].ack)
            rc_frame_unref(s->tick[i].ack);
    }
    s->n_tick = 0;
    s->tick_unrecorded = false;
    if (!keep_snapshots) {
        for (uint32_t i = 0; i < s->n_snap; i++)
            s->snap[i]->snap_queued = false;
        s->n_snap = 0;
        rc_strmap_free(&s->member_tick);
        rc_strmap_init(&s->member_tick);
    }
    s->batch = NULL;
}

/* One attempt at writing the tick: due snapshots into the batch, then the
 * commit, which frees the batch whatever its outcome. 0, or -1 with err. */
static int commit_once(rc_shard *s, char *err, size_t errlen)
{
    uint64_t t0 = rc_clock_mono_ns();
    put_keyed(s, &s->member_tick, false);
    put_keyed(s, &s->read_tick, true);
    int r = put_snapshots(s, &s->scratch);
    if (r != 0) {
        snprintf(err, errlen, "out of memory encoding snapshots");
        if (s->batch)
            s->store.ops->batch_abort(s->batch);
    } else {
        r = s->store.ops->batch_commit(s->store.persist, tick_batch(s), (rc_durability)s->store.durability, err,
                                       errlen);
    }
    s->batch = NULL;
    RC_STAT_ADD(s->stats.store_commit_ns, rc_clock_mono_ns() - t0);
    return r;
}

/* Before retry number `tried` (1, 2, ...): logs the failure and waits a
 * short, doubling backoff, so a store that failed for a moment (a full
 * disk being cleared, a stalled write) can recover within the tick. The
 * tick's replies and deliveries wait with it; nothing else is held. */
static void retry_wait(rc_shard *s, uint32_t tried, const char *err)
{
    RC_STAT_ADD(s->stats.store_retries, 1);
    RC_LOG_WARN("shard", "id=%u event=store_write_retry attempt=%u of=%u err=\"%s\"", s->id,
            tried, RC_POISON_ATTEMPTS, err);
    rc_backoff_sleep(rc_backoff_us(tried, RC_POISON_BACKOFF_US, &s->backoff_rng));
}

/* The failed commit freed its batch: puts the tick's history entries into
 * a new one. Snapshots need nothing here: put_snapshots re-encodes them on
 * every attempt (each attempt takes a new version; versions only have to
 * rise, and a failed attempt stored none). */
static void rebuild_batch(rc_shard *s)
{
    tick_batch(s);
    for (uint32_t i = 0; i < s->n_tick; i++)
        if (s->tick[i].msg)
            put_history(s, s->tick[i].g, s->tick[i].seq, s->tick[i].msg);
}

/* Every send of a tick whose write failed on each attempt becomes a
 * `poison` dead letter (proto/PROTOCOL.md §9: failed processing repeatedly), oldest
 * first, so the message outlives the E_INTERNAL its sender gets. Its seq is
 * given back, so the letter carries none: a replay sequences it anew as
 * from its sender. A dup ack (msg NULL) names a message of this tick and
 * gets no letter of its own: that message's letter covers it. */
static void poison_tick(rc_shard *s, uint32_t attempts, const char *err)
{
    for (uint32_t i = 0; i < s->n_tick; i++) {
        const rc_tick_send *t = &s->tick[i];
        if (!t->msg)
            continue;
        RC_STAT_ADD(s->stats.poison_letters, 1);
        rc_msg m;
        if (rc_decode(&s->dec, t->msg->data + RC_FRAME_HEADER, t->msg->len - RC_FRAME_HEADER, &m, NULL) != RC_OK) {
            /* Our own frame only fails to decode when memory runs out. */
            RC_LOG_ERROR("shard", "id=%u event=letter_lost reason=poison group=%s", s->id,
                    t->g->name);
            continue;
        }
        rc_letter l = { .reason = RC_LETTER_POISON, .g = { t->g->name, t->g->name_len }, .from = m.from,
                        .ts = m.ts, .mid = m.mid, .body = m.body, .body_is_str = m.body_is_str,
                        .attempts = attempts, .err = rc_str_c(err) };
        rc_shard_submit_letter(s, &l);
    }
}

/* Writes the tick, retrying a failed write up to RC_POISON_ATTEMPTS tries in
 * all. Retrying here, inside the tick, is possible because nothing of the
 * tick has left yet: replies and deliveries wait in the outbatches until the
 * write is known. */
bool rc_shard_persist_commit(rc_shard *s)
{
    if (!persisting(s) || (s->n_snap == 0 && !s->batch && s->member_tick.n == 0 && s->read_tick.n == 0))
        return true;
    char err[256] = "";
    uint32_t tries = 1;
    int r = commit_once(s, err, sizeof(err));
    while (r != 0 && tries < RC_POISON_ATTEMPTS && !s->tick_unrecorded) {
        retry_wait(s, tries, err);
        rebuild_batch(s);
        r = commit_once(s, err, sizeof(err));
        tries++;
    }
    if (r == 0) {
        RC_STAT_ADD(s->stats.store_commits, 1);
        RC_STAT_ADD(s->stats.snapshots, s->n_snap);
        tick_reset(s, false);
        return true;
    }
    RC_STAT_ADD(s->stats.store_errors, 1);
    RC_LOG_ERROR("shard",
            "id=%u event=store_write_failed attempts=%u sends=%u snapshots=%u err=\"%s\"",
            s->id, tries, s->n_tick, s->n_snap, err);
    poison_tick(s, tries, err);
    undo_tick(s);
    tick_reset(s, true); /* membership snapshots and index entries are retried with the next batch */
    return false;
}

void rc_shard_persist_free(rc_shard *s)
{
    if (s->batch)
        s->store.ops->batch_abort(s->batch);
    s->batch = NULL;
    tick_reset(s, false);
    free(s->tick);
    free(s->snap);
    s->tick = NULL;
    s->snap = NULL;
    s->cap_tick = s->cap_snap = 0;
}
