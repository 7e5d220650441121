/*
 * A string-keyed hash map with uint64_t values: open addressing, linear
 * probing, backward-shift deletion (no tombstones), keys copied and owned.
 *
 * One map serves every keyed table of a shard: group id -> group, a group's
 * stored members, and its dedup window (user + mid -> seq). Single-threaded:
 * a map belongs to the shard that owns it.
 */
#ifndef RC_CORE_STRMAP_H
#define RC_CORE_STRMAP_H

#include <stdbool.h>
#include <stdint.h>

#define RC_STRMAP_MIN_CAP 2u /* smallest table, slots: one key (most groups' members, most sessions' groups) takes 64 bytes, not 256 */

typedef struct rc_strmap_slot {
    uint64_t hash; /* XXH3 of the key; 0 marks an empty slot (real 0 hashes are remapped) */
    char *key;     /* owned copy, NUL-terminated for debugging */
    uint32_t len;  /* key length, bytes */
    uint64_t val;
} rc_strmap_slot;

typedef struct rc_strmap {
    rc_strmap_slot *slots;
    uint32_t cap; /* power of two, or 0 before the first insert */
    uint32_t n;   /* keys stored */
} rc_strmap;

void rc_strmap_init(rc_strmap *m);
void rc_strmap_free(rc_strmap *m);

/* Pointer to the key's value, or NULL. Valid until the next insert or delete. */
uint64_t *rc_strmap_get(const rc_strmap *m, const void *key, uint32_t len);
/* Starts loading the slot key would probe first into the cache, so a
 * lookup a little later does not wait for memory (batch processing). */
void rc_strmap_prefetch(const rc_strmap *m, const void *key, uint32_t len);
/* Inserts or updates: 0, or -1 on ENOMEM (map unchanged). */
int rc_strmap_put(rc_strmap *m, const void *key, uint32_t len, uint64_t val);
/* rc_strmap_put that also hands back the map's own copy of the key in
 * *stored (valid until the key is deleted or the map freed), for a caller
 * that needs the key again later without a copy of its own, and, when old
 * is not NULL, the value it replaced in *old (0 for a new key): one lookup
 * where a get before the put would take two. */
int rc_strmap_put_key(rc_strmap *m, const void *key, uint32_t len, uint64_t val, const char **stored, uint64_t *old);
/* Removes the key: true if it was there. */
bool rc_strmap_del(rc_strmap *m, const void *key, uint32_t len);

/* Iteration: for (uint32_t i = 0; i < m->cap; i++) if (m->slots[i].hash) ... */

#endif
