/*
 * Slow readers that catch up from history (slow_consumer_policy = catchup,
 * src/ARCHITECTURE.md §3.12, proto/PROTOCOL.md §6.6).
 *
 * A connection that is a slow consumer (over the pause mark for
 * outbound_stall_ms) and has more than outbound_high_bytes queued no
 * longer gets live `msg`s of a group it falls behind in: the first one it
 * misses starts an entry in c->behind (group -> rc_behind), and every later
 * live msg of that group is skipped, since history holds it. When its
 * output drains under the pause mark, it asks the group's owner for one
 * page of what it missed (RC_JOB_CATCHUP: seq >= first missed, at most
 * max_reply_bytes), one page at a time per connection; the page arrives as
 * ordinary msg frames followed by an RC_FRAME_CAUGHT_UP frame. The owner
 * shard queues the page behind every live delivery of the group it made
 * before and ahead of every later one, on the same outbound ring: skipping
 * every live msg of the group until the end frame, and none after it once
 * the page reached the group's last seq, gives the reader one gapless
 * sequence. A page that stopped short (`more`) leaves the entry at the
 * page's end, and the next drain asks for the next page.
 *
 * What history no longer holds becomes slow_consumer letters. A skipped
 * live msg is not copied: the entry keeps a reference to its frame, the
 * very frame the group's history holds (rc_behind.held, consecutive seqs
 * from `first`). So the content of every message the reader missed stays
 * at hand until the reader has it or it is lettered:
 *  - when more than history_max of them are held, the oldest is one the
 *    group's history no longer holds (history_max newer ones were
 *    sequenced after it): it becomes a letter at once, and `first` moves
 *    past it (not while a page is out, which may still carry it);
 *  - a page that finds messages gone (`lost`: history_ttl expired them, or
 *    history_max trimmed them first) letters the held ones before the
 *    page's first seq.
 * The reader then sees a gap exactly where the letters are, and goes on
 * gapless after it. What it holds beyond what history holds is at most the
 * messages in flight while one page is out (the rings between the shard and
 * this thread), so the hold stays near history_max frames per group.
 */
#include "net/conn.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/stats.h"

#define RC_BEHIND_MIN_CAP 16u /* held frames a new entry has room for; doubles as needed */

/* One group a connection catches up in. */
typedef struct rc_behind {
    uint64_t first;  /* first seq it has not got: the next page starts there */
    rc_frame **held; /* ring of the live frames skipped since, seqs first, first + 1, ... */
    uint32_t head, n, cap;
    bool page_out;   /* the page at the shard (c->catchup_out) is this group's */
} rc_behind;

static rc_behind *behind_of(const rc_conn *c, const char *g, uint32_t g_len)
{
    uint64_t *v = c->behind ? rc_strmap_get(c->behind, g, g_len) : NULL;
    return v ? (rc_behind *)(uintptr_t)*v : NULL;
}

/* The oldest held frame leaves the hold (its reference goes to the caller). */
static rc_frame *held_pop(rc_io *io, rc_behind *e)
{
    rc_frame *f = e->held[e->head];
    e->head = (e->head + 1) % e->cap;
    e->n--;
    e->first++;
    RC_STAT_ADD(io->stats.catchup_held, (uint64_t)-1);
    return f;
}

static void behind_free(rc_io *io, rc_behind *e)
{
    while (e->n)
        rc_frame_unref(held_pop(io, e));
    free(e->held);
    free(e);
}

static bool held_grow(rc_behind *e)
{
    uint32_t cap = e->cap ? e->cap * 2 : RC_BEHIND_MIN_CAP;
    rc_frame **h = malloc((size_t)cap * sizeof(*h));
    if (!h)
        return false;
    for (uint32_t i = 0; i < e->n; i++)
        h[i] = e->held[(e->head + i) % e->cap];
    free(e->held);
    e->held = h;
    e->head = 0;
    e->cap = cap;
    return true;
}

/* The oldest held message becomes a slow_consumer letter: history no
 * longer holds it for this reader. False when there are no letters to
 * make (no sink): the caller closes the reader instead. */
static bool letter_oldest(rc_io *io, rc_conn *c, rc_behind *e, const char *why)
{
    if (!io->lim.letters)
        return false;
    rc_frame *f = held_pop(io, e);
    rc_io_letter_lost(io, c, f->data, f->len, why);
    rc_frame_unref(f);
    RC_STAT_ADD(io->stats.catchup_lost, 1);
    return true;
}

/* What history no longer holds, and no letter can record: the reader is
 * closed, as the letter policy closes one past outbound_kill_bytes; its
 * client joins again with `since` and learns from `synced` {lost: true}. */
static void lost_unlettered(rc_io *io, rc_conn *c, const char *g, uint32_t g_len, uint64_t from, const char *what)
{
    RC_LOG_WARN("io", "event=catchup_lost sid=%llu group=%.*s from=%llu msg=\"%s\"", (unsigned long long)c->sess.sid,
                (int)g_len, g, (unsigned long long)from, what);
    rc_io_conn_bye(io, c, "slow_consumer");
}

/* Holds f, the next live msg of e's group: seq first + n. */
static void hold(rc_io *io, rc_conn *c, rc_behind *e, rc_frame *f, const rc_msg *m)
{
    while (e->n >= io->lim.history_max && e->n && !e->page_out && c->state == CS_OPEN)
        if (!letter_oldest(io, c, e, "history_max newer messages were sequenced before the reader caught up"))
            lost_unlettered(io, c, m->g.ptr, (uint32_t)m->g.len, e->first, "history no longer holds what the reader missed");
    if (c->state != CS_OPEN) { /* closing: nothing more to catch up */
        rc_frame_unref(f);
        return;
    }
    if (m->seq != e->first + e->n || (e->n == e->cap && !held_grow(e))) {
        /* Not the next seq (never seen), or out of memory: the reader's
         * sequence would have a hole no letter records, so it is closed. */
        RC_LOG_ERROR("io", "event=catchup_hold_failed sid=%llu group=%.*s seq=%llu want=%llu",
                     (unsigned long long)c->sess.sid, (int)m->g.len, m->g.ptr, (unsigned long long)m->seq,
                     (unsigned long long)(e->first + e->n));
        rc_io_conn_bye(io, c, "slow_consumer");
        rc_frame_unref(f);
        return;
    }
    e->held[(e->head + e->n++) % e->cap] = f;
    RC_STAT_ADD(io->stats.catchup_held, 1);
}

bool rc_catchup_skip(rc_io *io, rc_conn *c, rc_frame *f)
{
    rc_msg m;
    if (f->len <= RC_FRAME_HEADER ||
        rc_decode(&io->dec, f->data + RC_FRAME_HEADER, f->len - RC_FRAME_HEADER, &m, NULL) != RC_OK ||
        m.type != RC_T_MSG)
        return false; /* replies and events are queued up to the kill bound */
    rc_behind *e = behind_of(c, m.g.ptr, (uint32_t)m.g.len);
    if (!e) {
        if (!c->slow || rc_conn_queued(c) <= io->lim.outbound_high_bytes)
            return false;
        if ((!c->behind && !(c->behind = calloc(1, sizeof(*c->behind)))) || !(e = calloc(1, sizeof(*e))))
            return false; /* out of memory: queued, up to the kill bound */
        e->first = m.seq;
        if (!held_grow(e) || rc_strmap_put(c->behind, m.g.ptr, (uint32_t)m.g.len, (uint64_t)(uintptr_t)e) != 0) {
            free(e->held);
            free(e);
            return false;
        }
        RC_STAT_ADD(io->stats.catchup_started, 1);
    }
    RC_STAT_ADD(io->stats.catchup_skipped, 1);
    hold(io, c, e, f, &m);
    return true;
}

void rc_catchup_pump(rc_io *io, rc_conn *c)
{
    if (!c->behind || c->catchup_out || c->state != CS_OPEN || rc_conn_queued(c) > io->pause_bytes)
        return;
    for (uint32_t i = 0; i < c->behind->cap; i++) {
        rc_strmap_slot *sl = &c->behind->slots[i];
        if (!sl->hash)
            continue;
        rc_behind *e = (rc_behind *)(uintptr_t)sl->val;
        rc_msg m = { .type = RC_T_JOIN, .g = { sl->key, sl->len }, .has = RC_HAS_SINCE, .since = e->first - 1 };
        c->catchup_out = true;
        e->page_out = true;
        RC_STAT_ADD(io->stats.catchup_pages, 1);
        rc_handoff_route(io, c, RC_JOB_CATCHUP, (rc_str){ c->sess.user, c->sess.user_len }, &m);
        return;
    }
}

/* Letters what the page says history no longer held (seqs before cu->first),
 * then lets go of what the page delivered (before cu->next). False when the
 * reader was closed instead. */
static bool page_settle(rc_io *io, rc_conn *c, rc_behind *e, const rc_caught_up *cu, const char *g, uint32_t g_len)
{
    if (cu->lost && e->first < cu->first) {
        if (!io->lim.letters) {
            lost_unlettered(io, c, g, g_len, e->first, "history no longer holds what the reader missed");
            return false;
        }
        uint64_t from = e->first;
        while (e->n && e->first < cu->first)
            letter_oldest(io, c, e, "history no longer held it when the reader caught up");
        RC_LOG_INFO("io", "event=catchup_lettered sid=%llu group=%.*s from=%llu to=%llu", (unsigned long long)c->sess.sid,
                    (int)g_len, g, (unsigned long long)from, (unsigned long long)e->first - 1);
        if (e->first < cu->first) { /* never held (see hold): nothing to letter them from */
            lost_unlettered(io, c, g, g_len, e->first, "history no longer holds what the reader missed, nor does the reader's hold");
            return false;
        }
    }
    while (e->n && e->first < cu->next)
        rc_frame_unref(held_pop(io, e)); /* the page delivered it */
    if (e->first < cu->next)
        e->first = cu->next;
    return true;
}

void rc_catchup_done(rc_io *io, rc_conn *c, const rc_frame *f)
{
    rc_caught_up cu;
    if (f->len < sizeof(cu))
        return;
    memcpy(&cu, f->data, sizeof(cu));
    const char *g = (const char *)f->data + sizeof(cu);
    uint32_t g_len = f->len - (uint32_t)sizeof(cu);
    c->catchup_out = false;
    rc_behind *e = behind_of(c, g, g_len);
    if (e) {
        e->page_out = false;
        if (!page_settle(io, c, e, &cu, g, g_len))
            return;
        if (!cu.more) { /* caught up: live msgs of g are delivered again */
            rc_catchup_forget(io, c, (rc_str){ g, g_len });
            RC_STAT_ADD(io->stats.catchup_done, 1);
        }
    }
    rc_catchup_pump(io, c);
}

void rc_catchup_forget(rc_io *io, rc_conn *c, rc_str g)
{
    rc_behind *e = behind_of(c, g.ptr, (uint32_t)g.len);
    if (!e)
        return;
    rc_strmap_del(c->behind, g.ptr, (uint32_t)g.len);
    behind_free(io, e);
    if (c->behind->n == 0 && !c->catchup_out)
        rc_catchup_free(io, c);
}

void rc_catchup_free(rc_io *io, rc_conn *c)
{
    if (!c->behind)
        return;
    for (uint32_t i = 0; i < c->behind->cap; i++)
        if (c->behind->slots[i].hash)
            behind_free(io, (rc_behind *)(uintptr_t)c->behind->slots[i].val);
    rc_strmap_free(c->behind);
    free(c->behind);
    c->behind = NULL;
}
