/*
 * The io side's dead letters, in one place (src/ARCHITECTURE.md §7): a
 * delivery to a slow consumer past outbound_high_bytes becomes a
 * `slow_consumer` letter (and is remembered as owed, for a replay to
 * redeliver once); a send that never reached its shard an `overloaded` or
 * `shutdown` one; output still queued at a forced stop `shutdown` letters.
 */
#include "net/conn.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/chash.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/stats.h"

/* A send that never reached its shard becomes a dead letter of `reason`
 * (overloaded, shutdown), so no message is refused without a trace
 * (proto/PROTOCOL.md, dead letters). */
void rc_io_letter_refused(rc_io *io, const rc_job *j, rc_letter_reason reason, const char *why)
{
    if (j->kind != RC_JOB_SEND || !io->lim.letters)
        return;
    rc_letter l = { .reason = reason, .g = { rc_job_g(j), j->g_len },
                    .from = { rc_job_user(j), j->user_len }, .ts = rc_clock_wall_ms(),
                    .mid = { rc_job_mid(j), j->mid_len }, .body = { rc_job_body(j), j->body_len },
                    .body_is_str = j->body_is_str, .attempts = 1, .err = rc_str_c(why) };
    if (io->lim.letters->submit(io->lim.letters->self, &l) == 0) {
        if (reason == RC_LETTER_OVERLOADED)
            RC_STAT_ADD(io->stats.overload_letters, 1);
        else
            RC_STAT_ADD(io->stats.shutdown_letters, 1);
    } else {
        RC_STAT_ADD(io->stats.letters_refused, 1);
        RC_LOG_ERROR("io", "event=letter_refused reason=%s group=%.*s from=%.*s", rc_letter_reason_name(reason),
                     (int)j->g_len, rc_job_g(j), (int)j->user_len, rc_job_user(j));
    }
}

/* Remembers that c missed (g, seq) because it became a letter. When the ring
 * is full the oldest pair is forgotten (counted): its replay then delivers
 * nothing, and history still serves it. */
static void owed_remember(rc_io *io, rc_conn *c, rc_str g, uint64_t seq)
{
    if (!c->owed && !(c->owed = calloc(RC_CONN_LETTERED_MAX, sizeof(*c->owed)))) {
        RC_LOG_ERROR("io", "event=owed_nomem sid=%llu", (unsigned long long)c->sess.sid);
        return; /* a replay of this letter will deliver nothing; history covers it */
    }
    if (c->n_owed == RC_CONN_LETTERED_MAX) {
        if (c->owed[c->owed_head].seq)
            RC_STAT_ADD(io->stats.lettered_forgotten, 1);
        c->owed_head = (c->owed_head + 1) % RC_CONN_LETTERED_MAX;
        c->n_owed--;
    }
    c->owed[(c->owed_head + c->n_owed++) % RC_CONN_LETTERED_MAX] = (owed_msg){ rc_hash64(g.ptr, g.len), seq };
}

/* True when c owed (g, seq), which it then no longer owes. */
static bool owed_take(rc_conn *c, rc_str g, uint64_t seq)
{
    uint64_t h = rc_hash64(g.ptr, g.len);
    for (uint32_t i = 0; seq && i < c->n_owed; i++) {
        owed_msg *o = &c->owed[(c->owed_head + i) % RC_CONN_LETTERED_MAX];
        if (o->seq == seq && o->g_hash == h) {
            o->seq = 0;
            while (c->n_owed && c->owed[c->owed_head].seq == 0) { /* replays usually come oldest first */
                c->owed_head = (c->owed_head + 1) % RC_CONN_LETTERED_MAX;
                c->n_owed--;
            }
            return true;
        }
    }
    return false;
}

/* A slow consumer (check_stalls) past outbound_high_bytes, with dead
 * letters on: its msg deliveries become slow_consumer letters. Checked
 * before anything else on every delivery; rc_io_letter_delivery is the rare
 * path behind it. */
bool rc_io_past_high(const rc_io *io, const rc_conn *c)
{
    return c->slow && io->lim.letters && rc_conn_queued(c) > io->lim.outbound_high_bytes;
}

/* One encoded `msg` (p, len bytes with its length prefix) for c as a dead
 * letter of `reason` to c's user; a slow_consumer one is remembered as owed,
 * for a replay to rc_io_redeliver. False when the frame is not a msg. */
static bool letter_msg(rc_io *io, rc_conn *c, rc_letter_reason reason, const uint8_t *p, uint32_t len, const char *why)
{
    rc_msg m;
    if (len <= RC_FRAME_HEADER ||
        rc_decode(&io->dec, p + RC_FRAME_HEADER, len - RC_FRAME_HEADER, &m, NULL) != RC_OK || m.type != RC_T_MSG)
        return false;
    rc_letter l = { .reason = reason, .g = m.g, .has_seq = true, .seq = m.seq, .from = m.from,
                    .to = { c->sess.user, c->sess.user_len }, .ts = m.ts, .mid = m.mid, .body = m.body,
                    .body_is_str = m.body_is_str, .attempts = 1, .err = rc_str_c(why) };
    if (io->lim.letters->submit(io->lim.letters->self, &l) == 0) {
        if (reason == RC_LETTER_SLOW_CONSUMER) {
            RC_STAT_ADD(io->stats.slow_letters, 1);
            owed_remember(io, c, m.g, m.seq);
        } else {
            RC_STAT_ADD(io->stats.shutdown_letters, 1);
        }
    } else {
        RC_STAT_ADD(io->stats.letters_refused, 1);
        RC_LOG_ERROR("io", "event=letter_refused reason=%s group=%.*s seq=%llu to=%.*s", rc_letter_reason_name(reason),
                     (int)m.g.len, m.g.ptr, (unsigned long long)m.seq, (int)c->sess.user_len, c->sess.user);
    }
    return true;
}

/* A delivery to a connection rc_io_past_high: the msg (the encoded frame p, len
 * bytes) becomes a slow_consumer dead letter instead of more
 * queued output (it stays in the group's history, so a reconnect with
 * `since` recovers it), and the connection remembers it is owed, for a
 * replay to rc_io_redeliver. Returns true when the frame was turned into a
 * letter. */
bool rc_io_letter_delivery(rc_io *io, rc_conn *c, const uint8_t *p, uint32_t len)
{
    char why[96];
    snprintf(why, sizeof(why), "outbound queue of %zu bytes passed outbound_high_bytes", rc_conn_queued(c));
    if (!letter_msg(io, c, RC_LETTER_SLOW_CONSUMER, p, len, why))
        return false; /* replies and errors are queued up to the kill bound */
    c->lettered += len;
    rc_io_conn_over_limit(io, c, 0); /* behind by more than the kill bound, counting what became letters */
    return true;
}

/* Not counted against outbound_kill_bytes: the reader's queue has drained
 * (it is catching up), and what it holds is bounded by history_max. */
void rc_io_letter_lost(rc_io *io, rc_conn *c, const uint8_t *p, uint32_t len, const char *why)
{
    letter_msg(io, c, RC_LETTER_SLOW_CONSUMER, p, len, why);
}

/* A replayed slow_consumer letter (rc_frame_redeliver_new) reaching one
 * subscriber of its group: sent only when this connection belongs to the
 * letter's recipient and still owes that (g, seq), which it then no longer
 * owes, so a second replay delivers nothing. Any other connection drops it
 * silently: a filter, not a loss. A connection still past
 * outbound_high_bytes gets it lettered again (and owed again) like any
 * delivery, rather than queued past the bound: a new trace, never a silent
 * drop, and the next replay can try again. */
void rc_io_redeliver(rc_io *io, rc_conn *c, const rc_frame *f)
{
    if (!rc_str_eq(rc_frame_redeliver_to(f), (rc_str){ c->sess.user, c->sess.user_len }))
        return;
    uint32_t len;
    const uint8_t *wire = rc_frame_redeliver_wire(f, &len);
    rc_msg m;
    if (len < RC_FRAME_HEADER ||
        rc_decode(&io->dec, wire + RC_FRAME_HEADER, len - RC_FRAME_HEADER, &m, NULL) != RC_OK ||
        m.type != RC_T_MSG || !owed_take(c, m.g, m.seq)) {
        RC_STAT_ADD(io->stats.redelivery_skipped, 1);
        return;
    }
    if (!rc_io_past_high(io, c) || !rc_io_letter_delivery(io, c, wire, len)) {
        rc_io_conn_write(io, c, wire, len); /* a copy: the wire lies inside the redelivery frame */
        RC_STAT_ADD(io->stats.redelivered, 1);
    }
}

/* The stop deadline passed with output still queued for c: every `msg` in
 * it that the kernel never got becomes a `shutdown` dead letter. (The tail
 * of the send in flight is not: part of it may have left.) */
void rc_io_letter_queued_output(rc_io *io, rc_conn *c)
{
    if (!io->lim.letters || c->state == CS_DEAD)
        return;
    rc_frame *f;
    for (uint32_t i = 0; (f = rc_outq_unsent(&c->outq, i)); i++) {
        /* A chunk holds several encoded frames back to back. */
        for (uint32_t off = 0; off + RC_FRAME_HEADER <= f->len;) {
            uint32_t len = RC_FRAME_HEADER + rc_frame_len(f->data + off);
            if (off + len > f->len)
                break;
            letter_msg(io, c, RC_LETTER_SHUTDOWN, f->data + off, len, "the server stopped before this delivery left");
            off += len;
        }
    }
    rc_outq_drop_unsent(&c->outq);
}
