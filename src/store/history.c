/*
 * core's persistence operations on the open database: batches (history
 * entries, group snapshots, retention range deletes) committed with the
 * requested durability, recovery (every group snapshot with the oldest and
 * newest seq of its history), and bounded history scans.
 *
 * Reads of history stay in one group's key range, but for recovery's one
 * walk over all of it in key order: scans set both iterator bounds inside
 * the group, and the prefix-mode iterators (recovery's newest-entry seeks,
 * user_groups) have the prefix of whatever they return checked (RocksDB only
 * promises results inside the sought prefix; beyond it they may be missing
 * or arbitrary).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/rocks.h"

#define WHY_MAX 160u /* first problem recorded in a batch */
#define RUN_STEPS 16u /* steps through a group's history at recovery before seeking its newest entry */
/* Bytes recovery's history iterators read ahead, per file: 2 MiB held 64 MB
 * more at the peak over 16 files for no gain. */
#define RECOVERY_READAHEAD (256u * 1024u)

struct rc_persist_batch {
    rc_persist *p;
    rocksdb_writebatch_t *wb; /* snapshots, member index, cursors, retention deletes */
    rc_ticklog_ops ops;       /* messages and retention deletes: the tick record (ticklog.c) */
    bool bad;                 /* an operation was refused: the commit fails */
    char why[WHY_MAX];        /* the first refusal */
};

/* ---- batches ---- */

/* put_* and trim_before cannot return an error; a refused operation poisons
 * the batch, and batch_commit reports it instead of writing part of it. */
static void refuse(rc_persist_batch *b, const char *why)
{
    if (!b->bad)
        snprintf(b->why, sizeof(b->why), "%s: batch not written", why);
    b->bad = true;
}

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
    b->ops = rc_ticklog_ops_take(p); /* a buffer a fold freed: no growth by copies, no fresh pages */
    return b;
}

static void group_tag(const char *g, uint32_t g_len, uint8_t *tag)
{
    rc_store_history_tag((char *)tag, g, g_len);
}

static void put_msg(rc_persist_batch *b, const char *g, uint32_t g_len, const uint8_t *tag, uint64_t seq,
                    const uint8_t *map, uint32_t len)
{
    if (!b || !group_ok(b, g_len))
        return;
    char key[RC_STORE_KEY_MAX];
    size_t klen = tag ? rc_store_history_key_tagged(key, tag, g, g_len, seq) : rc_store_history_key(key, g, g_len, seq);
    if (rc_ticklog_ops_put(&b->ops, key, klen - RC_STORE_SEQ_BYTES, seq, map, len) != 0)
        refuse(b, "out of memory");
}

static void put_group(rc_persist_batch *b, const char *g, uint32_t g_len, const uint8_t *snapshot, uint32_t len)
{
    if (!b || !group_ok(b, g_len))
        return;
    rocksdb_writebatch_put_cf(b->wb, b->p->cf[RC_CF_GROUPS], g, g_len, (const char *)snapshot, len);
}

static void trim_before(rc_persist_batch *b, const char *g, uint32_t g_len, const uint8_t *tag, uint64_t before)
{
    if (!b || !group_ok(b, g_len) || before == 0)
        return;
    uint8_t own[RC_STORE_TAG_BYTES];
    if (!tag) {
        group_tag(g, g_len, own);
        tag = own;
    }
    /* The tick record carries the trim: the commit drops the older
     * messages from the tick log's table and, where RocksDB may hold
     * records of g, adds their range delete from the bare tag (rocks.h:
     * shorter than the memtable hint prefix, so RocksDB gives it no hint)
     * to key(g, before), and g's trim mark, key(g, 0) = before (ticklog.c,
     * retention()). Records are keyed by their newest seq: the range
     * removes the records wholly below `before`, a record holding `before`
     * and older seqs stays whole, and reads skip what lies before the mark. */
    char to[RC_STORE_KEY_MAX];
    size_t tlen = rc_store_history_key_tagged(to, tag, g, g_len, before);
    if (rc_ticklog_ops_trim(&b->ops, to, tlen - RC_STORE_SEQ_BYTES, before) != 0)
        refuse(b, "out of memory");
}

/* Member keys hold a user and a group id of 1..255 bytes each. */
static bool member_ok(rc_persist_batch *b, uint32_t g_len, uint32_t user_len)
{
    if (!group_ok(b, g_len))
        return false;
    if (user_len >= 1 && user_len <= RC_STORE_USER_MAX)
        return true;
    if (!b->bad)
        snprintf(b->why, sizeof(b->why), "user of %u bytes (must be 1..%u): batch not written", user_len,
                 RC_STORE_USER_MAX);
    b->bad = true;
    return false;
}

static void put_member(rc_persist_batch *b, const char *g, uint32_t g_len, const char *user, uint32_t user_len,
                       bool member)
{
    if (!b || !member_ok(b, g_len, user_len))
        return;
    char key[RC_STORE_MEMBER_KEY_MAX];
    size_t klen = rc_store_member_key(key, user, user_len, g, g_len);
    if (member)
        rocksdb_writebatch_put_cf(b->wb, b->p->cf[RC_CF_USER_GROUPS], key, klen, "", 0);
    else
        rocksdb_writebatch_delete_cf(b->wb, b->p->cf[RC_CF_USER_GROUPS], key, klen);
}

static void put_read(rc_persist_batch *b, const char *g, uint32_t g_len, const char *user, uint32_t user_len,
                     uint64_t seq)
{
    if (!b || !member_ok(b, g_len, user_len))
        return;
    char key[RC_STORE_MEMBER_KEY_MAX], v[RC_STORE_SEQ_BYTES];
    size_t klen = rc_store_member_key(key, user, user_len, g, g_len);
    rc_store_be64_put(v, seq);
    rocksdb_writebatch_put_cf(b->wb, b->p->cf[RC_CF_READS], key, klen, v, sizeof(v));
}

static void batch_abort(rc_persist_batch *b)
{
    if (!b)
        return;
    rocksdb_writebatch_destroy(b->wb);
    rc_ticklog_ops_give(b->p, &b->ops); /* empty when the table took it */
    free(b);
}

/* RocksDB counts every key comparison of a memtable insert into a
 * thread-local perf context unless the thread's perf level says not to
 * (counting is its default); nothing reads those counts here, and they cost
 * a few per cent of a write (bench/RESULTS.md, Cheaper durable writes). */
static _Thread_local bool perf_counts_off;

static int batch_commit(rc_persist *p, rc_persist_batch *b, rc_durability d, char *err, size_t errlen)
{
    if (!perf_counts_off) {
        rocksdb_set_perf_level(rocksdb_disable);
        perf_counts_off = true;
    }
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
    else if (rocksdb_writebatch_count(b->wb) > 0 || b->ops.len > 0)
        rc = rc_ticklog_commit(p, b->wb, &b->ops, d, err, errlen);
    batch_abort(b);
    return rc;
}

/* ---- history values: one map, or a record of several (rocks.h) ---- */

int rc_store_record_each(uint64_t key_seq, const char *v, size_t vlen, rc_store_entry_fn fn, void *ud)
{
    if (vlen == 0 || (uint8_t)v[0] != RC_STORE_RECORD_MARK) { /* format 3: one map, its seq in the key */
        if (vlen > UINT32_MAX)
            return -1;
        return fn(ud, key_seq, (const uint8_t *)v, (uint32_t)vlen) != 0 ? 1 : 0;
    }
    /* Checked whole before the first call: a bad record reports no part of itself. */
    const uint8_t *at = (const uint8_t *)v + 1, *end = (const uint8_t *)v + vlen;
    uint64_t seq = 0, prev = 0;
    uint32_t len;
    for (bool first = true; at < end; first = false) {
        if ((size_t)(end - at) < RC_STORE_ENTRY_HDR)
            return -1;
        rc_store_entry_get(at, &seq, &len);
        at += RC_STORE_ENTRY_HDR;
        if ((size_t)(end - at) < len || (!first && seq <= prev))
            return -1;
        at += len;
        prev = seq;
    }
    if (at == (const uint8_t *)v + 1 || seq != key_seq)
        return -1;
    for (at = (const uint8_t *)v + 1; at < end; at += RC_STORE_ENTRY_HDR + len) {
        rc_store_entry_get(at, &seq, &len);
        if (fn(ud, seq, at + RC_STORE_ENTRY_HDR, len) != 0)
            return 1;
    }
    return 0;
}

/* The oldest seq of the value under an iterator's history key of seq key_seq. */
static bool record_first_seq(rocksdb_iterator_t *it, uint64_t key_seq, uint64_t *seq)
{
    size_t vlen = 0;
    const char *v = rocksdb_iter_value(it, &vlen);
    if (vlen == 0 || (uint8_t)v[0] != RC_STORE_RECORD_MARK) {
        *seq = key_seq;
        return true;
    }
    uint32_t len;
    if (vlen < 1 + RC_STORE_ENTRY_HDR)
        return false;
    rc_store_entry_get((const uint8_t *)v + 1, seq, &len);
    return *seq <= key_seq;
}

/* True when the iterator's history key is not a trim mark (kept stays 0),
 * or is one with a well-formed value (its `before` in *kept, never 0). */
static bool trim_mark_of(rocksdb_iterator_t *it, uint64_t *kept)
{
    size_t klen = 0, vlen = 0;
    const char *k = rocksdb_iter_key(it, &klen);
    if (rc_store_history_seq(k, klen - RC_STORE_SEQ_BYTES) != RC_STORE_TRIM_MARK_SEQ)
        return true;
    const char *v = rocksdb_iter_value(it, &vlen);
    if (vlen != RC_STORE_SEQ_BYTES || rc_store_be64_get(v) == 0)
        return false;
    *kept = rc_store_be64_get(v);
    return true;
}

/* ---- recovery ---- */

/* Checks that an iterator's current key is a history key of the group whose
 * prefix (tag, length byte, id) is `prefix`; sets *seq. */
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

/* Recovery reads history in its own order, by group tag, and groups in
 * theirs, by id. Seeking each group's history from the walk over `groups`
 * lands every seek in another block (tags are hashes of the ids): four
 * times the block reads of format 2, whose history sorted by id like
 * `groups` (bench/RESULTS.md, Recovery). So load_groups first walks history
 * once in key order, where a group's entries are one run and the runs come
 * in tag order, and keeps each run's oldest and newest seq in a table
 * sorted by tag (32 bytes a group with history, and a directory of 4 to 8,
 * freed when recovery ends); then it walks `groups` and looks each group's
 * tag up. */
typedef struct run_bounds {
    unsigned char tag[RC_STORE_TAG_BYTES];
    uint64_t oldest, newest;
} run_bounds;

/* The runs in tag order, with a directory on the tag's leading bits (tags
 * are uniform, so a bucket holds about one run): dir[b] is the first run
 * whose bucket is >= b, dir has (1 << bits) + 1 entries. */
typedef struct run_table {
    run_bounds *v;
    size_t n, cap;
    uint32_t *dir;
    unsigned bits;
} run_table;

#define RUNS_MIN 1024u      /* first allocation of the run table */
#define RUNS_MAX UINT32_MAX /* the directory's indexes are 32-bit */

/* The tag's bytes after the first (always 0, rocks.h), as a number. */
static uint64_t tag_bits(const unsigned char *tag)
{
    uint64_t v = 0;
    for (unsigned i = 1; i <= 8; i++)
        v = (v << 8) | tag[i];
    return v;
}

static size_t tag_bucket(const run_table *t, const unsigned char *tag)
{
    return t->bits ? (size_t)(tag_bits(tag) >> (64 - t->bits)) : 0;
}

static int runs_add(run_table *t, const unsigned char *tag, uint64_t oldest, uint64_t newest)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : RUNS_MIN;
        if (t->n >= RUNS_MAX || cap > SIZE_MAX / sizeof(*t->v))
            return -1;
        run_bounds *v = realloc(t->v, cap * sizeof(*v));
        if (!v)
            return -1;
        t->v = v;
        t->cap = cap;
    }
    run_bounds *r = &t->v[t->n++];
    memcpy(r->tag, tag, sizeof(r->tag));
    r->oldest = oldest;
    r->newest = newest;
    return 0;
}

static int runs_index(run_table *t)
{
    unsigned bits = 0;
    while (bits < 32 && ((size_t)1 << bits) < t->n)
        bits++;
    t->bits = bits;
    size_t buckets = (size_t)1 << bits;
    t->dir = malloc((buckets + 1) * sizeof(*t->dir));
    if (!t->dir)
        return -1;
    size_t i = 0;
    for (size_t b = 0; b <= buckets; b++) {
        while (i < t->n && tag_bucket(t, t->v[i].tag) < b)
            i++;
        t->dir[b] = (uint32_t)i;
    }
    return 0;
}

static const run_bounds *runs_find(const run_table *t, const unsigned char *tag)
{
    if (!t->dir)
        return NULL;
    size_t b = tag_bucket(t, tag);
    for (uint32_t i = t->dir[b]; i < t->dir[b + 1]; i++) {
        int c = memcmp(t->v[i].tag, tag, RC_STORE_TAG_BYTES);
        if (c == 0)
            return &t->v[i];
        if (c > 0)
            break;
    }
    return NULL;
}

static void runs_free(run_table *t)
{
    free(t->v);
    free(t->dir);
    *t = (run_table){ 0 };
}

/* A well-formed format 3 history key: tag (first byte 0), length byte of
 * 1..255, id, seq. */
static bool history_key_ok(const char *k, size_t klen)
{
    return klen > RC_STORE_HINT_BYTES && k[0] == 0 && (uint8_t)k[RC_STORE_TAG_BYTES] >= 1 &&
           klen == rc_store_history_prefix_len(k) + RC_STORE_SEQ_BYTES;
}

/* One pass over history in key order: each group's run of entries gives
 * its oldest and newest seq. A run is stepped through up to RUN_STEPS
 * entries; a longer one takes its newest entry from a SeekForPrev of the
 * prefix-mode iterator `last` (the prefix blooms keep it to the files that
 * hold the group) and the walk seeks past its far end, so a long history
 * costs two seeks whatever its length, and they land next to the previous
 * ones. Tags must rise from run to run: two groups with one tag would need
 * a SHA-256 collision in 120 bits (rocks.h), and would be reported rather
 * than have one take the other's seqs. */
static int history_runs(rc_persist *p, rocksdb_iterator_t *it, rocksdb_iterator_t *last, run_table *t, char *err,
                        size_t errlen)
{
    unsigned char prev[RC_STORE_TAG_BYTES];
    bool first = true;
    rocksdb_iter_seek_to_first(it);
    while (rocksdb_iter_valid(it)) {
        size_t klen = 0;
        const char *k = rocksdb_iter_key(it, &klen);
        if (!history_key_ok(k, klen))
            return rc_store_fail(err, errlen, p->dir, "history key of %zu bytes: corrupt", klen);
        char key[RC_STORE_KEY_MAX];
        size_t prefix_len = rc_store_history_prefix_len(k);
        memcpy(key, k, prefix_len);
        const char *id = key + RC_STORE_HINT_BYTES;
        int id_len = (int)(prefix_len - RC_STORE_HINT_BYTES);
        if (!first && memcmp(prev, key, RC_STORE_TAG_BYTES) >= 0)
            return rc_store_fail(err, errlen, p->dir, "history of two groups under one tag (group '%.*s'): corrupt",
                                 id_len, id);
        memcpy(prev, key, RC_STORE_TAG_BYTES);
        first = false;
        uint64_t oldest, newest, seq, kept = 0;
        if (!trim_mark_of(it, &kept))
            return rc_store_fail(err, errlen, p->dir, "trim mark of group '%.*s': corrupt", id_len, id);
        if (kept > 0) { /* the mark first, then the group's records, if any are left */
            rocksdb_iter_next(it);
            if (!history_entry_of(it, key, prefix_len, &newest))
                continue;
        }
        newest = rc_store_history_seq(rocksdb_iter_key(it, &klen), prefix_len);
        if (!record_first_seq(it, newest, &oldest))
            return rc_store_fail(err, errlen, p->dir, "history record of group '%.*s': corrupt", id_len, id);
        if (oldest < kept)
            oldest = kept; /* the record holding the trim point starts before it */
        for (unsigned steps = 0;; steps++) {
            if (steps == RUN_STEPS) { /* a long run: its newest entry, then past its end */
                rc_store_be64_put(key + prefix_len, UINT64_MAX);
                rocksdb_iter_seek_for_prev(last, key, prefix_len + RC_STORE_SEQ_BYTES);
                if (!history_entry_of(last, key, prefix_len, &newest)) {
                    if (rc_store_iter_error(last, p->dir, "cannot read history", err, errlen) != 0)
                        return -1;
                    return rc_store_fail(err, errlen, p->dir, "history of group '%.*s' not found again", id_len, id);
                }
                rocksdb_iter_seek(it, key, prefix_len + RC_STORE_SEQ_BYTES);
                if (history_entry_of(it, key, prefix_len, &seq))
                    rocksdb_iter_next(it); /* an entry at seq UINT64_MAX */
                break;
            }
            rocksdb_iter_next(it);
            if (!history_entry_of(it, key, prefix_len, &seq))
                break; /* past the run: at the next group's first entry, or the end */
            newest = seq;
        }
        if (runs_add(t, (const unsigned char *)key, oldest, newest) != 0)
            return rc_store_fail(err, errlen, p->dir, "out of memory reading history bounds");
    }
    if (rc_store_iter_error(it, p->dir, "cannot read history", err, errlen) != 0)
        return -1;
    return runs_index(t) == 0 ? 0 : rc_store_fail(err, errlen, p->dir, "out of memory reading history bounds");
}

static int load_groups(rc_persist *p, rc_persist_group_fn fn, void *ud, char *err, size_t errlen)
{
    rocksdb_readoptions_t *gro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(gro, 0); /* one pass at start: do not evict hot blocks for it */
    rocksdb_readoptions_t *hro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(hro, 0);
    rocksdb_readoptions_set_total_order_seek(hro, 1); /* across groups: the prefix extractor does not apply */
    rocksdb_readoptions_set_readahead_size(hro, RECOVERY_READAHEAD);
    /* Both iterators are made before either is read: one state of the database. */
    rocksdb_iterator_t *git = rocksdb_create_iterator_cf(p->db, gro, p->cf[RC_CF_GROUPS]);
    rocksdb_readoptions_t *lro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_prefix_same_as_start(lro, 1);
    rocksdb_readoptions_set_readahead_size(lro, RECOVERY_READAHEAD); /* its seeks rise too */
    rocksdb_iterator_t *hit = rocksdb_create_iterator_cf(p->db, hro, p->cf[RC_CF_HISTORY]);
    rocksdb_iterator_t *lit = rocksdb_create_iterator_cf(p->db, lro, p->cf[RC_CF_HISTORY]);
    run_table runs = { 0 };
    int rc = history_runs(p, hit, lit, &runs, err, errlen);
    rocksdb_iter_destroy(lit);
    rocksdb_iter_destroy(hit);
    rocksdb_readoptions_destroy(lro);
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
        unsigned char tag[RC_STORE_TAG_BYTES];
        rc_store_history_tag((char *)tag, k, (uint32_t)klen);
        const run_bounds *r = runs_find(&runs, tag);
        if (r) {
            grp.oldest_seq = r->oldest;
            grp.newest_seq = r->newest;
        }
        char prefix[RC_STORE_KEY_MAX]; /* the tick log's table: messages newer than every record */
        size_t prefix_len = rc_store_history_key_tagged(prefix, tag, k, (uint32_t)klen, 0) - RC_STORE_SEQ_BYTES;
        uint64_t t_oldest, t_newest;
        if (rc_ticklog_bounds(p, prefix, prefix_len, &t_oldest, &t_newest)) {
            grp.oldest_seq = r ? r->oldest : t_oldest;
            grp.newest_seq = t_newest;
        }
        if (fn(ud, &grp) != 0)
            rc = rc_store_fail(err, errlen, p->dir, "recovery stopped by the caller at group '%.*s'", (int)klen, k);
    }
    if (rc == 0)
        rc = rc_store_iter_error(git, p->dir, "cannot read groups", err, errlen);
    runs_free(&runs);
    rocksdb_iter_destroy(git);
    rocksdb_readoptions_destroy(hro);
    rocksdb_readoptions_destroy(gro);
    return rc;
}

/* ---- scans ---- */

/* A scan's walk over records: the messages in [from, to] below `stop` (the
 * group's first seq in the tick log's table), at most limit. */
typedef struct scan_walk {
    uint64_t from, to, stop;
    bool records;   /* reading records, which end where the table starts (stop) */
    bool at_stop;   /* the records reached stop: the copy of the table goes on from there */
    uint32_t limit, n;
    bool done;   /* past to, at limit, or stopped by fn */
    rc_persist_msg_fn fn;
    void *ud;
} scan_walk;

static int scan_entry(void *ud, uint64_t seq, const uint8_t *map, uint32_t len)
{
    scan_walk *w = ud;
    if (seq < w->from)
        return 0;
    if (w->records && seq >= w->stop) {
        /* A record of messages still in the table: a fold after the copy
         * was taken, or one cut short by a crash (ticklog.c, fold()). The
         * copy has them. */
        w->at_stop = true;
        return 1;
    }
    if (seq > w->to || w->n == w->limit) {
        w->done = true;
        return 1;
    }
    w->n++;
    if (w->fn(w->ud, seq, map, len) != 0 || w->n == w->limit)
        w->done = true;
    return w->done;
}

static int scan(rc_persist *p, const char *g, uint32_t g_len, uint64_t from, uint64_t to, uint32_t limit,
                rc_persist_msg_fn fn, void *ud, char *err, size_t errlen)
{
    if (g_len < 1 || g_len > RC_STORE_GROUP_MAX)
        return rc_store_fail(err, errlen, p->dir, "scan of a group id of %u bytes (must be 1..%u)", g_len,
                             RC_STORE_GROUP_MAX);
    if (from == RC_STORE_TRIM_MARK_SEQ)
        from = 1; /* seq 0 is the trim mark's key, no message's */
    if (from > to || limit == 0)
        return 0;
    /* [key(g, 0), key(g, UINT64_MAX) + "\0"): the trim mark, if any, then
     * from key(g, from): the record holding `from`
     * is the first whose key (its newest seq) is >= key(g, from); the upper
     * bound is the end of the group's keys, as the record holding `to` may
     * be keyed above it. */
    char lo[RC_STORE_KEY_MAX], hi[RC_STORE_BOUND_MAX];
    size_t lo_len = rc_store_history_key(lo, g, g_len, RC_STORE_TRIM_MARK_SEQ);
    size_t hi_len = rc_store_history_key(hi, g, g_len, UINT64_MAX);
    hi[hi_len++] = '\0';
    size_t prefix_len = RC_STORE_HISTORY_PREFIX_LEN(g_len);
    /* The table first: whatever a fold moves out of it meanwhile is in the
     * records by the time they are read, and is read from the copy alone. */
    rc_ticklog_tail tail;
    if (rc_ticklog_copy(p, lo, prefix_len, from, to, limit, &tail) != 0)
        return rc_store_fail(err, errlen, p->dir, "out of memory reading the tick log");

    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(ro, lo, lo_len); /* ro points at lo and hi: they outlive it */
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, hi_len);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(p->db, ro, p->cf[RC_CF_HISTORY]);
    int rc = 0;
    scan_walk w = { .from = from, .to = to, .stop = tail.first, .records = true, .limit = limit, .fn = fn, .ud = ud };
    uint64_t seq, kept = 0;
    rocksdb_iter_seek(it, lo, lo_len);
    if (history_entry_of(it, lo, prefix_len, &seq) && !trim_mark_of(it, &kept)) {
        free(tail.buf);
        rocksdb_iter_destroy(it);
        rocksdb_readoptions_destroy(ro);
        return rc_store_fail(err, errlen, p->dir, "trim mark of a group: corrupt");
    }
    if (w.from < kept)
        w.from = kept;
    char at[RC_STORE_KEY_MAX];
    size_t at_len = rc_store_history_key(at, g, g_len, w.from);
    for (rocksdb_iter_seek(it, at, at_len);
         !w.done && !w.at_stop && w.from <= to && history_entry_of(it, lo, prefix_len, &seq); rocksdb_iter_next(it)) {
        size_t vlen = 0;
        const char *v = rocksdb_iter_value(it, &vlen);
        if (rc_store_record_each(seq, v, vlen, scan_entry, &w) < 0) {
            rc = rc_store_fail(err, errlen, p->dir, "history record of %zu bytes at seq %llu: corrupt", vlen,
                               (unsigned long long)seq);
            break;
        }
    }
    if (rc == 0)
        rc = rc_store_iter_error(it, p->dir, "cannot read history", err, errlen);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    w.records = false; /* the copy: its entries are in [from, to] and rise */
    for (size_t off = 0; rc == 0 && !w.done && off < tail.len;) {
        uint32_t len;
        rc_store_entry_get(tail.buf + off, &seq, &len);
        scan_entry(&w, seq, tail.buf + off + RC_STORE_ENTRY_HDR, len);
        off += RC_STORE_ENTRY_HDR + len;
    }
    free(tail.buf);
    return rc;
}

/* ---- read cursors and the per-user index ---- */

static bool member_args(uint32_t g_len, uint32_t user_len)
{
    return g_len >= 1 && g_len <= RC_STORE_GROUP_MAX && user_len >= 1 && user_len <= RC_STORE_USER_MAX;
}

/* A stored cursor is RC_STORE_SEQ_BYTES big-endian bytes; anything else is
 * reported as corrupt. */
static int cursor_value(rc_persist *p, const char *v, size_t len, uint64_t *seq, char *err, size_t errlen)
{
    if (len != RC_STORE_SEQ_BYTES)
        return rc_store_fail(err, errlen, p->dir, "read cursor of %zu bytes: corrupt", len);
    *seq = rc_store_be64_get(v);
    return 0;
}

static int get_read(rc_persist *p, const char *g, uint32_t g_len, const char *user, uint32_t user_len, uint64_t *seq,
                    char *err, size_t errlen)
{
    *seq = 0;
    if (!member_args(g_len, user_len))
        return rc_store_fail(err, errlen, p->dir, "read cursor of a %u-byte group id or %u-byte user", g_len, user_len);
    char key[RC_STORE_MEMBER_KEY_MAX], *rerr = NULL;
    size_t klen = rc_store_member_key(key, user, user_len, g, g_len), len = 0;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *v = rocksdb_get_cf(p->db, ro, p->cf[RC_CF_READS], key, klen, &len, &rerr);
    rocksdb_readoptions_destroy(ro);
    if (rerr) {
        rc_store_fail(err, errlen, p->dir, "cannot read a read cursor: %s", rerr);
        rocksdb_free(rerr);
        return -1;
    }
    int rc = v ? cursor_value(p, v, len, seq, err, errlen) : 0;
    rocksdb_free(v);
    return rc;
}

/* Byte order of two keys, as RocksDB's default comparator has it. */
static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

/* The cursor stored under key, reading the `reads` iterator forward: both
 * families sort a user's groups alike, so one pass serves every group. */
static int cursor_at(rc_persist *p, rocksdb_iterator_t *rit, const char *key, size_t klen, uint64_t *seq, char *err,
                     size_t errlen)
{
    *seq = 0;
    while (rocksdb_iter_valid(rit)) {
        size_t rlen = 0;
        const char *rk = rocksdb_iter_key(rit, &rlen);
        int c = key_cmp(rk, rlen, key, klen);
        if (c > 0)
            return 0;
        if (c == 0) {
            size_t vlen = 0;
            const char *v = rocksdb_iter_value(rit, &vlen);
            return cursor_value(p, v, vlen, seq, err, errlen);
        }
        rocksdb_iter_next(rit);
    }
    return rc_store_iter_error(rit, p->dir, "cannot read read cursors", err, errlen);
}

static int keep_last(void *ud, uint64_t seq, const uint8_t *map, uint32_t len)
{
    rc_persist_member_group *mg = ud;
    mg->seq = seq;
    mg->map = map;
    mg->map_len = len;
    return 0;
}

/* The newest history entry of g: in the tick log's table (copied into
 * *hold, which the caller frees after using mg), or else the last message
 * of the record one SeekForPrev of a prefix-mode iterator finds. */
static int newest_entry(rc_persist *p, rocksdb_iterator_t *hit, const char *g, uint32_t g_len,
                        rc_persist_member_group *mg, rc_ticklog_tail *hold, char *err, size_t errlen)
{
    char key[RC_STORE_KEY_MAX];
    size_t klen = rc_store_history_key(key, g, g_len, UINT64_MAX);
    size_t prefix_len = RC_STORE_HISTORY_PREFIX_LEN(g_len);
    uint64_t oldest, newest;
    if (rc_ticklog_bounds(p, key, prefix_len, &oldest, &newest)) {
        if (rc_ticklog_copy(p, key, prefix_len, newest, newest, 1, hold) != 0)
            return rc_store_fail(err, errlen, p->dir, "out of memory reading the tick log");
        if (hold->n == 1) {
            uint32_t len;
            rc_store_entry_get(hold->buf, &mg->seq, &len);
            mg->map = hold->buf + RC_STORE_ENTRY_HDR;
            mg->map_len = len;
            return 0;
        } /* folded meanwhile: it is in the records now */
    }
    rocksdb_iter_seek_for_prev(hit, key, klen);
    uint64_t seq;
    if (!history_entry_of(hit, key, prefix_len, &seq) || seq == RC_STORE_TRIM_MARK_SEQ) /* trimmed to nothing */
        return rc_store_iter_error(hit, p->dir, "cannot read history", err, errlen);
    size_t vlen = 0;
    const char *v = rocksdb_iter_value(hit, &vlen);
    if (rc_store_record_each(seq, v, vlen, keep_last, mg) < 0)
        return rc_store_fail(err, errlen, p->dir, "history record of %zu bytes: corrupt", vlen);
    return 0;
}

static int user_groups(rc_persist *p, const char *user, uint32_t user_len, uint32_t max, rc_persist_member_fn fn,
                       void *ud, bool *more, char *err, size_t errlen)
{
    *more = false;
    if (user_len < 1 || user_len > RC_STORE_USER_MAX)
        return rc_store_fail(err, errlen, p->dir, "groups of a %u-byte user", user_len);
    char prefix[1 + RC_STORE_USER_MAX];
    prefix[0] = (char)(uint8_t)user_len;
    memcpy(prefix + 1, user, user_len);
    size_t prefix_len = 1u + user_len;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_t *hro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_prefix_same_as_start(hro, 1);
    rocksdb_iterator_t *uit = rocksdb_create_iterator_cf(p->db, ro, p->cf[RC_CF_USER_GROUPS]);
    rocksdb_iterator_t *rit = rocksdb_create_iterator_cf(p->db, ro, p->cf[RC_CF_READS]);
    rocksdb_iterator_t *hit = rocksdb_create_iterator_cf(p->db, hro, p->cf[RC_CF_HISTORY]);
    rocksdb_iter_seek(rit, prefix, prefix_len);
    int rc = 0;
    uint32_t n = 0;
    for (rocksdb_iter_seek(uit, prefix, prefix_len); rc == 0 && rocksdb_iter_valid(uit); rocksdb_iter_next(uit)) {
        size_t klen = 0;
        const char *k = rocksdb_iter_key(uit, &klen);
        if (klen <= prefix_len + 1 || memcmp(k, prefix, prefix_len) != 0)
            break; /* past this user's keys */
        uint32_t g_len = (uint8_t)k[prefix_len];
        if (klen != prefix_len + 1 + g_len || g_len == 0) {
            rc = rc_store_fail(err, errlen, p->dir, "user_groups key of %zu bytes: corrupt", klen);
            break;
        }
        if (n == max) {
            *more = true;
            break;
        }
        rc_persist_member_group mg = { .g = k + prefix_len + 1, .g_len = g_len };
        rc_ticklog_tail hold = { 0 };
        rc = cursor_at(p, rit, k, klen, &mg.read, err, errlen);
        if (rc == 0)
            rc = newest_entry(p, hit, mg.g, g_len, &mg, &hold, err, errlen);
        n++;
        bool stop = rc == 0 && fn(ud, &mg) != 0;
        free(hold.buf);
        if (stop)
            break;
    }
    if (rc == 0)
        rc = rc_store_iter_error(uit, p->dir, "cannot read user_groups", err, errlen);
    rocksdb_iter_destroy(hit);
    rocksdb_iter_destroy(rit);
    rocksdb_iter_destroy(uit);
    rocksdb_readoptions_destroy(hro);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

const rc_persist_ops *rc_store_ops(void)
{
    static const rc_persist_ops ops = {
        .batch_begin = batch_begin,
        .group_tag = group_tag,
        .put_msg = put_msg,
        .put_group = put_group,
        .trim_before = trim_before,
        .batch_commit = batch_commit,
        .batch_abort = batch_abort,
        .load_groups = load_groups,
        .scan = scan,
        .put_member = put_member,
        .put_read = put_read,
        .get_read = get_read,
        .user_groups = user_groups,
    };
    return &ops;
}
