/*
 * Slow readers that catch up from history (slow_consumer_policy = catchup,
 * src/ARCHITECTURE.md §3.12, proto/PROTOCOL.md §6.6).
 *
 * A connection that is a slow consumer (over the pause mark for
 * outbound_stall_ms) and has more than outbound_high_bytes queued no
 * longer gets live `msg`s of a group it falls behind in: the first one it
 * misses starts an entry in c->behind (group -> first missed seq), and
 * every later live msg of that group is skipped, since history holds it.
 * When its output drains under the pause mark, it asks the group's owner
 * for one page of what it missed (RC_JOB_CATCHUP: seq >= first missed, at
 * most max_reply_bytes), one page at a time per connection; the page
 * arrives as ordinary msg frames followed by an RC_FRAME_CAUGHT_UP frame.
 * The owner shard queues the page behind every live delivery of the group
 * it made before and ahead of every later one, on the same outbound ring:
 * skipping every live msg of the group until the end frame, and none
 * after it once the page reached the group's last seq, gives the reader
 * one gapless sequence. A page that stopped short (`more`) leaves the
 * entry at the page's end, and the next drain asks for the next page.
 *
 * What history no longer holds cannot be caught up: a page that finds
 * messages gone (`lost`: history_max or history_ttl trimmed them first)
 * closes the connection with `bye` {reason: "slow_consumer"}; its client
 * joins again with `since` and learns from `synced` {lost: true}.
 */
#include "net/conn.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/stats.h"

bool rc_catchup_skip(rc_io *io, rc_conn *c, const rc_frame *f)
{
    rc_msg m;
    if (f->len <= RC_FRAME_HEADER ||
        rc_decode(&io->dec, f->data + RC_FRAME_HEADER, f->len - RC_FRAME_HEADER, &m, NULL) != RC_OK ||
        m.type != RC_T_MSG)
        return false; /* replies and events are queued up to the kill bound */
    if (c->behind && rc_strmap_get(c->behind, m.g.ptr, (uint32_t)m.g.len)) {
        RC_STAT_ADD(io->stats.catchup_skipped, 1);
        return true;
    }
    if (!c->slow || rc_conn_queued(c) <= io->lim.outbound_high_bytes)
        return false;
    if (!c->behind && !(c->behind = calloc(1, sizeof(*c->behind))))
        return false; /* out of memory: queued, up to the kill bound */
    if (rc_strmap_put(c->behind, m.g.ptr, (uint32_t)m.g.len, m.seq) != 0)
        return false;
    RC_STAT_ADD(io->stats.catchup_skipped, 1);
    RC_STAT_ADD(io->stats.catchup_started, 1);
    return true;
}

void rc_catchup_pump(rc_io *io, rc_conn *c)
{
    if (!c->behind || c->catchup_out || c->state != CS_OPEN || rc_conn_queued(c) > io->pause_bytes)
        return;
    for (uint32_t i = 0; i < c->behind->cap; i++) {
        rc_strmap_slot *e = &c->behind->slots[i];
        if (!e->hash)
            continue;
        rc_msg m = { .type = RC_T_JOIN, .g = { e->key, e->len }, .has = RC_HAS_SINCE, .since = e->val - 1 };
        c->catchup_out = true;
        RC_STAT_ADD(io->stats.catchup_pages, 1);
        rc_handoff_route(io, c, RC_JOB_CATCHUP, (rc_str){ c->sess.user, c->sess.user_len }, &m);
        return;
    }
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
    uint64_t *v = c->behind ? rc_strmap_get(c->behind, g, g_len) : NULL;
    if (v && cu.lost) {
        RC_STAT_ADD(io->stats.catchup_lost, 1);
        RC_LOG_WARN("io", "event=catchup_lost sid=%llu group=%.*s from=%llu msg=\"history no longer holds what the "
                    "reader missed\"", (unsigned long long)c->sess.sid, (int)g_len, g,
                    (unsigned long long)*v);
        rc_io_conn_bye(io, c, "slow_consumer");
        return;
    }
    if (v && cu.more) {
        *v = cu.next; /* the next page starts there */
    } else if (v) {
        rc_strmap_del(c->behind, g, g_len); /* caught up: live msgs of g are delivered again */
        RC_STAT_ADD(io->stats.catchup_done, 1);
    }
    if (c->behind && c->behind->n == 0)
        rc_catchup_free(c);
    rc_catchup_pump(io, c);
}

void rc_catchup_forget(rc_conn *c, rc_str g)
{
    if (c->behind && rc_strmap_del(c->behind, g.ptr, (uint32_t)g.len) && c->behind->n == 0 && !c->catchup_out)
        rc_catchup_free(c);
}

void rc_catchup_free(rc_conn *c)
{
    if (!c->behind)
        return;
    rc_strmap_free(c->behind);
    free(c->behind);
    c->behind = NULL;
}
