/*
 * A spool: an ordered store of byte records keyed by a u64, where every
 * dead letter is kept from the moment it is made until Kafka acknowledged
 * it: waiting while Kafka is away or older letters wait, then in flight
 * (ARCHITECTURE §7). core defines the interface; src/store implements it on
 * RocksDB's `spool` column family (a put is in the WAL when it returns, so
 * it survives a kill -9 and a restart), and rc_spool_mem below keeps it in
 * memory (durability=off, and tests: a crash loses it). src/dlq is the only
 * user.
 *
 * Keys order the records: scan returns them ascending. Every function
 * returns 0, or -1 with a human message in err. An rc_spool is used by one
 * thread at a time (the dead-letter producer serialises its calls).
 */
#ifndef RC_CORE_SPOOL_H
#define RC_CORE_SPOOL_H

#include <stddef.h>
#include <stdint.h>

/* One record handed to a scan callback; rec is valid only during the call.
 * Return non-zero to stop the scan. */
typedef int (*rc_spool_fn)(void *ud, uint64_t key, const uint8_t *rec, uint32_t len);

typedef struct rc_spool_ops {
    int (*put)(void *self, uint64_t key, const uint8_t *rec, uint32_t len, char *err, size_t errlen);
    /* Removes the records under keys[0..n), in one write; a key that is not
     * there is no error. */
    int (*del)(void *self, const uint64_t *keys, uint32_t n, char *err, size_t errlen);
    /* Calls fn for records with key >= from, ascending, at most limit of them. */
    int (*scan)(void *self, uint64_t from, uint32_t limit, rc_spool_fn fn, void *ud, char *err, size_t errlen);
} rc_spool_ops;

typedef struct rc_spool {
    const rc_spool_ops *ops;
    void *self;
} rc_spool;

/* The in-memory spool: contents vanish with the process. */
typedef struct rc_spool_mem rc_spool_mem;
rc_spool_mem *rc_spool_mem_new(void);
void rc_spool_mem_free(rc_spool_mem *m); /* NULL is a no-op */
rc_spool rc_spool_mem_spool(rc_spool_mem *m);

#endif
