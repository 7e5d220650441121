/*
 * Consistent hashing with virtual nodes: group id -> shard id
 * (src/ARCHITECTURE.md §4.1).
 *
 * The ring: tokens on a 64-bit circle, each owned by a shard; a key belongs
 * to the first token at or after its hash (XXH3-64), wrapping around. The
 * ring over shards 0..n-1 is canonical: it is built by adding shards 0, 1,
 * .., n-1 in that order, and a shard joining k others places its tokens so
 * that it takes the same share, 1/(k(k+1)) of the circle, from each of them
 * (chash.c). So
 *   - every shard owns 1/n of the circle (to a few parts in 2^64);
 *   - adding shard n moves exactly 1/(n+1) of the keys, all to shard n, and
 *     removing it moves exactly those keys back: nothing ever moves between
 *     two shards that stay;
 *   - the ring depends only on (n, vnodes): every thread, host and restart
 *     computes the same one.
 * Shards are therefore added in id order and removed from the top.
 *
 * Lookup is a hash and one table read: a table of 2^k entries indexed by the
 * top k bits of the hash gives the shard owning that whole slice of the
 * circle; the few slices that hold a token boundary between two shards are
 * marked and answered from the tokens themselves. The table is derived from
 * the tokens and always answers as the ring's successor search
 * (rc_chash_successor) does.
 *
 * Not thread-safe for writers: build it, then share it read-only.
 */
#ifndef RC_CORE_CHASH_H
#define RC_CORE_CHASH_H

#include <stddef.h>
#include <stdint.h>

#define RC_CHASH_DEFAULT_VNODES 160u
#define RC_CHASH_MAX_VNODES 65536u
#define RC_CHASH_MAX_SHARDS 65535u /* ids below this fit a table entry; the last value marks a split slice */
#define RC_CHASH_NO_SHARD UINT32_MAX

typedef struct rc_chash rc_chash;

/* 64-bit hash used for keys and tokens (XXH3-64). */
uint64_t rc_hash64(const void *p, size_t len);

/* An empty ring with `vnodes` tokens per shard (a shard joining a ring of
 * more than `vnodes` shards places one per shard it takes from). NULL on
 * ENOMEM or vnodes out of range. */
rc_chash *rc_chash_create(uint32_t vnodes_per_shard);
/* The canonical ring over shards 0..n-1: create, then add 0..n-1. NULL on
 * ENOMEM or an argument out of range. */
rc_chash *rc_chash_build(uint32_t n, uint32_t vnodes_per_shard);
void rc_chash_destroy(rc_chash *c);

/* add: shard must be the next id, rc_chash_shards(c); remove: the last one,
 * rc_chash_shards(c) - 1. 0, or -1 (another id / ENOMEM; a failed call
 * changes nothing). */
int rc_chash_add(rc_chash *c, uint32_t shard);
int rc_chash_remove(rc_chash *c, uint32_t shard);

/* Shard owning the key, or RC_CHASH_NO_SHARD when the ring is empty: the
 * table (the hot path). */
uint32_t rc_chash_lookup(const rc_chash *c, const void *key, size_t len);
uint32_t rc_chash_lookup_hash(const rc_chash *c, uint64_t h);
/* The same answer by binary search over the tokens, without the table:
 * the ring's own definition, for tests and the benchmark. */
uint32_t rc_chash_successor(const rc_chash *c, uint64_t h);

uint32_t rc_chash_shards(const rc_chash *c);                 /* number of shards on the ring */
size_t rc_chash_tokens(const rc_chash *c);                   /* tokens on the ring, all shards */
/* Token i (0 <= i < rc_chash_tokens) in ring order: its position and shard. 0, or -1 out of range. */
int rc_chash_token(const rc_chash *c, size_t i, uint64_t *pos, uint32_t *shard);
double rc_chash_share(const rc_chash *c, uint32_t shard);    /* fraction of the 2^64 hashes the shard owns */
uint32_t rc_chash_table_bits(const rc_chash *c);             /* k: the table has 2^k entries (0 when empty) */
double rc_chash_table_split(const rc_chash *c);              /* fraction of table entries answered from the tokens */

#endif
