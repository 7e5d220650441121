/*
 * Consistent hashing with virtual nodes: group id -> shard id.
 *
 * Each shard owns `vnodes` points on a 64-bit ring (XXH3 of the shard id and
 * the point's index); a key belongs to the first point at or after its own
 * hash, wrapping around. Lookup is O(1) on average: a bucket index over the
 * sorted points (chash.c).
 * Adding a shard moves only keys that the new shard's points capture, so
 * about 1/(n+1) of the keys move, all of them to the new shard.
 *
 * Not thread-safe for writers: build it, then share it read-only.
 */
#ifndef RC_CORE_CHASH_H
#define RC_CORE_CHASH_H

#include <stddef.h>
#include <stdint.h>

#define RC_CHASH_DEFAULT_VNODES 160u
#define RC_CHASH_MAX_VNODES 65536u
#define RC_CHASH_NO_SHARD UINT32_MAX

typedef struct rc_chash rc_chash;

/* 64-bit hash used for keys and points (XXH3-64). */
uint64_t rc_hash64(const void *p, size_t len);

rc_chash *rc_chash_create(uint32_t vnodes_per_shard); /* NULL on ENOMEM or vnodes out of range */
void rc_chash_destroy(rc_chash *c);

/* 0, or -1 (already present / not present / ENOMEM; a failed call changes
 * nothing). RC_CHASH_NO_SHARD is not a valid shard id. */
int rc_chash_add(rc_chash *c, uint32_t shard);
int rc_chash_remove(rc_chash *c, uint32_t shard);

/* Shard owning the key, or RC_CHASH_NO_SHARD when the ring is empty. */
uint32_t rc_chash_lookup(const rc_chash *c, const void *key, size_t len);
uint32_t rc_chash_lookup_hash(const rc_chash *c, uint64_t h);

uint32_t rc_chash_shards(const rc_chash *c); /* number of shards on the ring */

#endif
