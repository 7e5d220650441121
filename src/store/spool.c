/*
 * The dead-letter spool (core/spool.h) on RocksDB's `spool` column family:
 * key = the u64 as rc_store_be64_put writes it (byte order is key order),
 * value = the record.
 * Writes go through the WAL (no fsync), whatever the history durability:
 * every dead letter is written here before the producer hands it to
 * Kafka, and it is the last trace of a message that could not be
 * delivered, so it must survive a crash of the process (kill -9 leaves the
 * WAL's write in the page cache; an OS crash may lose its last moments).
 */
#include <stdio.h>
#include <stdlib.h>

#include "store/rocks.h"

/* RocksDB's error string into err, freed. Returns -1. */
static int spool_fail(char *err, size_t errlen, const char *what, char *rerr)
{
    snprintf(err, errlen, "spool %s: %s", what, rerr ? rerr : "failed");
    free(rerr);
    return -1;
}

static int spool_put(void *self, uint64_t key, const uint8_t *rec, uint32_t len, char *err, size_t errlen)
{
    rc_persist *p = self;
    char k[RC_STORE_SEQ_BYTES], *rerr = NULL;
    rc_store_be64_put(k, key);
    rocksdb_put_cf(p->db, p->wopts[RC_DURABILITY_BATCH], p->cf[RC_CF_SPOOL], k, sizeof k, (const char *)rec, len,
                   &rerr);
    return rerr ? spool_fail(err, errlen, "write", rerr) : 0;
}

/* One WriteBatch for all of them: a delete costs about what a put does,
 * mostly the WAL write, so Kafka's acknowledgements are removed in bulk. */
static int spool_del(void *self, const uint64_t *keys, uint32_t n, char *err, size_t errlen)
{
    rc_persist *p = self;
    char k[RC_STORE_SEQ_BYTES], *rerr = NULL;
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    for (uint32_t i = 0; i < n; i++) {
        rc_store_be64_put(k, keys[i]);
        rocksdb_writebatch_delete_cf(b, p->cf[RC_CF_SPOOL], k, sizeof k); /* copies the key */
    }
    rocksdb_write(p->db, p->wopts[RC_DURABILITY_BATCH], b, &rerr);
    rocksdb_writebatch_destroy(b);
    return rerr ? spool_fail(err, errlen, "delete", rerr) : 0;
}

static int spool_scan(void *self, uint64_t from, uint32_t limit, rc_spool_fn fn, void *ud, char *err,
                      size_t errlen)
{
    rc_persist *p = self;
    char k[RC_STORE_SEQ_BYTES], *rerr = NULL;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(ro, 0); /* read once, then deleted */
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(p->db, ro, p->cf[RC_CF_SPOOL]);
    rc_store_be64_put(k, from);
    for (rocksdb_iter_seek(it, k, sizeof k); limit > 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it), limit--) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(it, &klen);
        const char *val = rocksdb_iter_value(it, &vlen);
        if (klen != RC_STORE_SEQ_BYTES || vlen > UINT32_MAX)
            continue; /* not ours: left alone */
        if (fn(ud, rc_store_be64_get(key), (const uint8_t *)val, (uint32_t)vlen) != 0)
            break;
    }
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rerr ? spool_fail(err, errlen, "read", rerr) : 0;
}

static const rc_spool_ops store_spool_ops = { .put = spool_put, .del = spool_del, .scan = spool_scan };

rc_spool rc_store_spool(rc_persist *p)
{
    return (rc_spool){ .ops = &store_spool_ops, .self = p };
}
