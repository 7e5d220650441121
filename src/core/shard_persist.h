/*
 * The shard's side of persistence (ARCHITECTURE §6), internal to src/core/shard*.c.
 *
 * During a tick the shard records what it changed: each sequenced message
 * (history entry, plus its msg and ack frames) and each group whose snapshot
 * is due. At the end of the tick, before any reply or delivery of the tick
 * leaves, rc_shard_persist_commit writes all of it in one batch (group
 * commit) with the configured durability. A failed write is tried again,
 * RC_POISON_ATTEMPTS tries in all with a short backoff, the batch rebuilt
 * from the tick's records. If every try fails, the tick's sends are undone
 * (seqs given back, frames voided so io threads skip them), answered with
 * E_INTERNAL and each becomes a `poison` dead letter; membership changes
 * stay queued and are written with a later batch.
 */
#ifndef RC_CORE_SHARD_PERSIST_H
#define RC_CORE_SHARD_PERSIST_H

#include "core/group.h"
#include "core/shard.h"

/* Internal helpers of shard.c that persistence uses. */
void rc_shard_deliver(rc_shard *s, rc_conn_id conn, rc_frame *f);
void rc_shard_deliver_flags(rc_shard *s, rc_conn_id conn, rc_frame *f, uint32_t flags);
void rc_shard_reply_err(rc_shard *s, const rc_job *j, rc_err code, const char *text);
/* Hands a dead letter to the shard's sink (if any); a letter the sink
 * refuses is counted (letters_refused) and logged, never lost silently.
 * true when it was queued. */
bool rc_shard_submit_letter(rc_shard *s, const rc_letter *l);

/* Loads what g's ring lacks of its retained history from seq `from` on
 * (1: all of it, and g is warm after), keeping the tail the ring holds. */
void rc_shard_group_load(rc_shard *s, rc_group *g, uint64_t from);
/* First seq history_max retains (history_ttl aside). */
uint64_t rc_shard_retained_from(const rc_group *g);

/* A message was just sequenced in g (rc_group_remember): store it, and
 * remember its frames in case the tick's write fails. */
void rc_shard_persist_msg(rc_shard *s, rc_group *g, const rc_job *j, rc_frame *msg, rc_frame *ack);
/* A dup ack for seq was sent: if seq was sequenced in this tick, the ack
 * must share the fate of that write. */
void rc_shard_persist_dup(rc_shard *s, rc_group *g, const rc_job *j, uint64_t seq, rc_frame *ack);
/* g's membership changed: its snapshot goes out with this tick. */
void rc_shard_persist_snapshot(rc_shard *s, rc_group *g);
/* user joined (member) or left g: the per-user index entry goes out with
 * this tick, in the batch of g's snapshot (ARCHITECTURE §6.2). */
void rc_shard_persist_member(rc_shard *s, rc_group *g, const char *user, uint32_t user_len, bool member);
/* f is the `marked` reply of a read whose cursor this tick moved
 * (s->read_tick): withdrawn with E_INTERNAL if the tick's write fails. */
void rc_shard_persist_marked(rc_shard *s, const rc_job *j, rc_frame *f);
/* Writes the tick's batch; see the header comment. true when it was
 * written (or there was nothing to write), false when every try failed. */
bool rc_shard_persist_commit(rc_shard *s);
void rc_shard_persist_free(rc_shard *s);

#endif
