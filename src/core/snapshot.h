/*
 * Group snapshots: the value of the `groups` column family (ARCHITECTURE §6), a
 * MessagePack map {v, version, last_seq, members, created, updated}.
 * Pure encoding and decoding; the store only sees bytes.
 */
#ifndef RC_CORE_SNAPSHOT_H
#define RC_CORE_SNAPSHOT_H

#include <stdint.h>

#include "core/group.h"
#include "ringcast/proto.h"

#define RC_SNAPSHOT_V 1u /* snapshot record version (`v`) */

/* Appends g's snapshot (with its current version) to out (no length
 * prefix). 0, or -1 on ENOMEM. */
int rc_snapshot_encode(const rc_group *g, rc_buf *out);

/* Applies a stored snapshot to a fresh group: version, last_seq, members,
 * created, updated. 0, or -1 when the bytes are not a valid snapshot
 * (message in *why). */
int rc_snapshot_apply(rc_group *g, const uint8_t *p, uint32_t len, const char **why);

#endif
