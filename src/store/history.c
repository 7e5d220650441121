/*
 * core's persistence operations on the open database: batches (history
 * entries, group snapshots, retention range deletes) committed with the
 * requested durability, recovery (every group snapshot with the oldest and
 * newest seq of its history), and bounded history scans.
 *
 * Reads of history never leave one group's key range: scans set both
 * iterator bounds inside it, and recovery checks the prefix of whatever the
 * prefix-mode iterator returns (RocksDB only promises results inside the
 * sought prefix; beyond it they may be missing or arbitrary).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/rocks.h"

#define WHY_MAX 160u /* first problem recorded in a batch */

struct rc_persist_batch {
    rc_persist *p;
    rocksdb_writebatch_t *wb;
    bool bad;          /* an operation was refused: the commit fails */
    char why[WHY_MAX]; /* the first refusal */
};

/* ---- batches ---- */

/* put_* and trim_before cannot return an error; a refused operation poisons
 * the batch, and batch_commit reports it instead of writing part of it. */
static bool group_ok(rc_persist_batch *b, uint32_t g_len)
{
    if (g_len >= 1 && g_len <= RC_STORE_GROUP_MAX)
        return true;
    if (!b->bad)
        snprintf(b->why, sizeof(b->why), "group id of %u bytes (must be 1..%u): batch not written", g_len,
                 RC_STORE_GROUP_MAX);
    b->bad = true;
    return false;
}

static rc_persist_batch *batch_begin(rc_persist *p)
{
    rc_persist_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL; /* put_* ignore NULL; batch_commit reports it */
    b->p = p;
    b->wb = rocksdb_writebatch_create();
    return b;
}

static void put_msg(rc_persist_batch *b, const char *g, uint32_t g_len, uint64_t seq, const uint8_t *map, uint32_t len)
{
    if (!b || !group_ok(b, g_len))
        return;
    char key[RC_STORE_KEY_MAX];
    size_t klen = rc_store_history_key(key, g, g_len, seq);
    rocksdb_writebatch_put_cf(b->wb, b->p->cf[RC_CF_HISTORY], key, klen, (const char *)map, len);
}

static void put_group(rc_persist_batch *b, const char *g, uint32_t g_len, const uint8_t *snapshot, uint32_t len)
{
    if (!b || !group_ok(b, g_len))
        return;
    rocksdb_writebatch_put_cf(b->wb, b->p->cf[RC_CF_GROUPS], g, g_len, (const char *)snapshot, len);
}

static void trim_before(rc_persist_batch *b, const char *g, uint32_t g_len, uint64_t before)
{
    if (!b || !group_ok(b, g_len) || before == 0)
        return;
    char from[RC_STORE_KEY_MAX], to[RC_STORE_KEY_MAX];
    size_t flen = rc_store_history_key(from, g, g_len, 0);
    size_t tlen = rc_store_history_key(to, g, g_len, before); /* exclusive end: deletes seq < before */
    rocksdb_writebatch_delete_range_cf(b->wb, b->p->cf[RC_CF_HISTORY], from, flen, to, tlen);
}

static void batch_abort(rc_persist_batch *b)
{
    if (!b)
        return;
    rocksdb_writebatch_destroy(b->wb);
    free(b);
}

static int batch_commit(rc_persist *p, rc_persist_batch *b, rc_durability d, char *err, size_t errlen)
{
    const char *dir = p ? p->dir : "(null)";
    int rc = 0;
    if (!b)
        rc = rc_store_fail(err, errlen, dir, "out of memory starting a batch: batch not written");
    else if (b->p != p)
        rc = rc_store_fail(err, errlen, dir, "batch committed to another store than it was begun on");
    else if (b->bad)
        rc = rc_store_fail(err, errlen, dir, "%s", b->why);
    else if (d != RC_DURABILITY_NONE && d != RC_DURABILITY_BATCH && d != RC_DURABILITY_SYNC)
        rc = rc_store_fail(err, errlen, dir, "unknown durability %d: batch not written", (int)d);
    else if (p->readonly)
        rc = rc_store_fail(err, errlen, dir, "opened read-only: batch not written");
    else if (rocksdb_writebatch_count(b->wb) > 0) {
        char *rerr = NULL;
        rocksdb_write(p->db, p->wopts[d], b->wb, &rerr);
        if (rerr) {
            rc = rc_store_fail(err, errlen, dir, "write failed: %s", rerr);
            rocksdb_free(rerr);
        }
    }
    batch_abort(b);
    return rc;
}

/* ---- recovery ---- */

/* Checks that an iterator's current key is a history key of the group whose
 * prefix (length byte + id) is `prefix`; sets *seq. */
static bool history_entry_of(rocksdb_iterator_t *it, const char *prefix, size_t prefix_len, uint64_t *seq)
{
    if (!rocksdb_iter_valid(it))
        return false;
    size_t klen = 0;
    const char *k = rocksdb_iter_key(it, &klen);
    if (klen != prefix_len + RC_STORE_SEQ_BYTES || memcmp(k, prefix, prefix_len) != 0)
        return false;
    *seq = rc_store_history_seq(k, prefix_len);
    return true;
}

static int iter_error(rocksdb_iterator_t *it, const char *dir, const char *what, char *err, size_t errlen)
{
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    if (!rerr)
        return 0;
    rc_store_fail(err, errlen, dir, "%s: %s", what, rerr);
    rocksdb_free(rerr);
    return -1;
}

/* Oldest and newest seq of g in history (0, 0 when none): two seeks of a
 * prefix-mode iterator, answered by the prefix bloom filters when g has no
 * history at all. */
static int seq_bounds(rc_persist *p, rocksdb_iterator_t *it, const char *g, uint32_t g_len, uint64_t *oldest,
                      uint64_t *newest, char *err, size_t errlen)
{
    char key[RC_STORE_KEY_MAX];
    size_t prefix_len = 1u + g_len;
    *oldest = *newest = 0;
    size_t klen = rc_store_history_key(key, g, g_len, 0);
    rocksdb_iter_seek(it, key, klen);
    if (!history_entry_of(it, key, prefix_len, oldest))
        return iter_error(it, p->dir, "cannot read history", err, errlen);
    klen = rc_store_history_key(key, g, g_len, UINT64_MAX);
    rocksdb_iter_seek_for_prev(it, key, klen);
    if (!history_entry_of(it, key, prefix_len, newest)) {
        if (iter_error(it, p->dir, "cannot read history", err, errlen) != 0)
            return -1;
        *newest = *oldest; /* the oldest entry exists, so this cannot happen short of an error */
    }
    return 0;
}

static int load_groups(rc_persist *p, rc_persist_group_fn fn, void *ud, char *err, size_t errlen)
{
    rocksdb_readoptions_t *gro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(gro, 0); /* one pass at start: do not evict hot blocks for it */
    rocksdb_readoptions_t *hro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_prefix_same_as_start(hro, 1);
    rocksdb_iterator_t *git = rocksdb_create_iterator_cf(p->db, gro, p->cf[RC_CF_GROUPS]);
    rocksdb_iterator_t *hit = rocksdb_create_iterator_cf(p->db, hro, p->cf[RC_CF_HISTORY]);
    int rc = 0;
    for (rocksdb_iter_seek_to_first(git); rc == 0 && rocksdb_iter_valid(git); rocksdb_iter_next(git)) {
        size_t klen = 0, vlen = 0;
        const char *k = rocksdb_iter_key(git, &klen);
        const char *v = rocksdb_iter_value(git, &vlen);
        if (klen < 1 || klen > RC_STORE_GROUP_MAX || vlen > UINT32_MAX) {
            rc = rc_store_fail(err, errlen, p->dir, "groups entry with a %zu-byte id or %zu-byte snapshot: corrupt",
                               klen, vlen);
            break;
        }
        rc_persist_group grp = { .g = k, .g_len = (uint32_t)klen, .snapshot = (const uint8_t *)v,
                                 .snapshot_len = (uint32_t)vlen };
        rc = seq_bounds(p, hit, k, (uint32_t)klen, &grp.oldest_seq, &grp.newest_seq, err, errlen);
        if (rc == 0 && fn(ud, &grp) != 0)
            rc = rc_store_fail(err, errlen, p->dir, "recovery stopped by the caller at group '%.*s'", (int)klen, k);
    }
    if (rc == 0)
        rc = iter_error(git, p->dir, "cannot read groups", err, errlen);
    rocksdb_iter_destroy(hit);
    rocksdb_iter_destroy(git);
    rocksdb_readoptions_destroy(hro);
    rocksdb_readoptions_destroy(gro);
    return rc;
}

/* ---- scans ---- */

static int scan(rc_persist *p, const char *g, uint32_t g_len, uint64_t from, uint64_t to, uint32_t limit,
                rc_persist_msg_fn fn, void *ud, char *err, size_t errlen)
{
    if (g_len < 1 || g_len > RC_STORE_GROUP_MAX)
        return rc_store_fail(err, errlen, p->dir, "scan of a group id of %u bytes (must be 1..%u)", g_len,
                             RC_STORE_GROUP_MAX);
    if (from > to || limit == 0)
        return 0;
    /* [key(g, from), key(g, to) + "\0"): the upper bound sorts after key(g, to)
     * and before key(g, to + 1), and exists even for to = UINT64_MAX. */
    char lo[RC_STORE_KEY_MAX], hi[RC_STORE_BOUND_MAX];
    size_t lo_len = rc_store_history_key(lo, g, g_len, from);
    size_t hi_len = rc_store_history_key(hi, g, g_len, to);
    hi[hi_len++] = '\0';
    size_t prefix_len = 1u + g_len;

    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(ro, lo, lo_len); /* ro points at lo and hi: they outlive it */
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, hi_len);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(p->db, ro, p->cf[RC_CF_HISTORY]);
    int rc = 0;
    uint32_t n = 0;
    uint64_t seq;
    for (rocksdb_iter_seek(it, lo, lo_len); n < limit && history_entry_of(it, lo, prefix_len, &seq);
         rocksdb_iter_next(it)) {
        size_t vlen = 0;
        const char *v = rocksdb_iter_value(it, &vlen);
        if (vlen > UINT32_MAX) {
            rc = rc_store_fail(err, errlen, p->dir, "history entry of %zu bytes: corrupt", vlen);
            break;
        }
        n++;
        if (fn(ud, seq, (const uint8_t *)v, (uint32_t)vlen) != 0)
            break;
    }
    if (rc == 0)
        rc = iter_error(it, p->dir, "cannot read history", err, errlen);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

const rc_persist_ops *rc_store_ops(void)
{
    static const rc_persist_ops ops = {
        .batch_begin = batch_begin,
        .put_msg = put_msg,
        .put_group = put_group,
        .trim_before = trim_before,
        .batch_commit = batch_commit,
        .batch_abort = batch_abort,
        .load_groups = load_groups,
        .scan = scan,
    };
    return &ops;
}
