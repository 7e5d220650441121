/*
 * The tick log (storage format 4, src/store/README.md *The tick log*).
 *
 * Storing each message as its own RocksDB entry costs about 5 µs of CPU a
 * message on this project's 2-core box (a memtable insert, then flush and
 * compaction of a small entry), where 16 messages an entry cost 1.2 µs and a
 * tick's 256 0.7 µs (bench/RESULTS.md, *The storage floor*). A shard's tick
 * spreads its messages over many groups, though, so a tick rarely holds two
 * messages of one group. Hence two steps:
 *
 * 1. A tick's messages (and its retention deletes) are one record of the
 *    `ticks` family, written in the tick's own WriteBatch: one WAL record
 *    and one memtable insert for the whole tick, before its acks leave. The
 *    record's buffer then stays here, in memory, and the table points each
 *    group at its messages in it: a message is not copied again until the
 *    fold.
 * 2. When the table holds `fold_bytes` (the store option tick_log_fold_mb),
 *    it is folded: every group's messages become history records of up to
 *    RC_STORE_RECORD_MAX_MSGS messages (rocks.h, keyed by their newest seq),
 *    written in pieces of FOLD_PIECE_BYTES, and the last piece range-deletes
 *    every tick record. The table is then empty.
 *
 * Reads of history see both: scans copy a group's table entries, then read
 * its records up to the first of them (history.c). At open the tick records
 * are read back into the table, and a read-write open folds them at once; a
 * clean close folds too. So a message is in its tick record until the fold
 * that writes its history record and then deletes the tick record; a crash
 * in between keeps both, and the next open folds the tick record again into
 * the same history record (see fold()).
 *
 * A fold is written without the WAL: its history records repeat messages
 * whose tick records are in the WAL already, and writing them there again
 * cost a second copy of every message. A crash before the fold reaches an
 * SST file loses the fold (or its pieces written so far) and its range
 * delete alike, and the tick records come back from the WAL (or from the
 * SST file they were flushed to) to be folded at the next open. Atomic flush (rocks.c) makes every family's
 * memtable reach disk at one point, so a WAL file is dropped only when the
 * folds of its tick records are on disk too. Folds at open and close go
 * through the WAL.
 *
 * Order: one mutex covers a commit from the table check to the table update
 * after the write, so tick records, folds and the table change in one order
 * and a fold never deletes a tick record whose messages it did not write.
 * Shards' writes are serialized by it; RocksDB puts concurrent writes into
 * one write group anyway (allow_concurrent_memtable_write is off), but with
 * durability sync each commit now waits for its own fsync.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "store/rocks.h"

#define TABLE_MIN_BUCKETS 1024u /* first size of the table's hash */
#define POOL_MAX 64u            /* tick record buffers kept for later batches after a fold */
#define TICK_RECORD_VERSION 1u  /* first byte of a tick record */
#define OP_PUT 1u               /* a message: history prefix, then an entry */
#define OP_TRIM 2u              /* a retention delete: history prefix, then `before`, u64 BE */
#define FOLD_PIECE_BYTES (1u << 20) /* a fold is written in pieces of about this (see fold()) */

/* One group's messages in the table: pointers to its entries (laid out as
 * in a history record, rocks.h) inside the tick records the table holds,
 * oldest first, with seqs rising. */
typedef struct tl_group {
    struct tl_group *next; /* the bucket's chain */
    uint64_t hash;         /* from the tag */
    const uint8_t **ent;   /* [n]: each entry's [seq][len][map] */
    uint32_t n, cap;
    uint64_t first, last;  /* oldest and newest seq */
    size_t prefix_len;
    char prefix[];         /* tag, length byte, id: the start of its history keys */
} tl_group;

struct rc_ticklog {
    pthread_mutex_t mu;  /* everything below, and the order of commits (see the top) */
    tl_group **buckets;
    size_t n_buckets, n_groups; /* n_groups counts groups kept empty since the last fold */
    size_t live;         /* groups with entries */
    size_t bytes;        /* entry bytes in the table: the fold trigger */
    size_t fold_bytes;   /* tick_log_fold_mb */
    rc_ticklog_ops *records; /* the tick records the entries point into, until the fold */
    size_t n_records, cap_records;
    size_t held;         /* their buffers' bytes: the table's memory */
    rc_ticklog_ops pool[POOL_MAX]; /* buffers of folded tick records, for later batches */
    uint32_t n_pool;
    uint64_t next_key;   /* key of the next tick record, u64 BE */
    rocksdb_writebatch_t *fold_wb; /* a fold's pieces, kept from piece to piece (see fold()) */
    size_t fold_wb_bytes; /* the largest piece it held: its capacity, within a factor of 2 */
    rc_ticklog_stats st;
};

/* The tag's bytes after the first (always 0) are uniform: a hash for free. */
static uint64_t prefix_hash(const char *prefix)
{
    uint64_t v = 0;
    for (unsigned i = 1; i <= 8; i++)
        v = (v << 8) | (uint8_t)prefix[i];
    return v;
}

static tl_group **slot_of(rc_ticklog *t, const char *prefix, size_t prefix_len, uint64_t h)
{
    tl_group **s = &t->buckets[h & (t->n_buckets - 1)];
    while (*s && !((*s)->hash == h && (*s)->prefix_len == prefix_len && memcmp((*s)->prefix, prefix, prefix_len) == 0))
        s = &(*s)->next;
    return s;
}

static tl_group *find(rc_ticklog *t, const char *prefix, size_t prefix_len)
{
    return *slot_of(t, prefix, prefix_len, prefix_hash(prefix));
}

static int grow_buckets(rc_ticklog *t)
{
    size_t n = t->n_buckets * 2;
    tl_group **b = calloc(n, sizeof(*b));
    if (!b)
        return -1;
    for (size_t i = 0; i < t->n_buckets; i++) {
        for (tl_group *g = t->buckets[i], *next; g; g = next) {
            next = g->next;
            g->next = b[g->hash & (n - 1)];
            b[g->hash & (n - 1)] = g;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->n_buckets = n;
    return 0;
}

static tl_group *find_or_add(rc_ticklog *t, const char *prefix, size_t prefix_len)
{
    uint64_t h = prefix_hash(prefix);
    tl_group **s = slot_of(t, prefix, prefix_len, h);
    if (*s)
        return *s;
    if (t->n_groups >= t->n_buckets && grow_buckets(t) == 0)
        s = slot_of(t, prefix, prefix_len, h);
    tl_group *g = calloc(1, sizeof(*g) + prefix_len);
    if (!g)
        return NULL;
    g->hash = h;
    g->prefix_len = prefix_len;
    memcpy(g->prefix, prefix, prefix_len);
    *s = g;
    t->n_groups++;
    return g;
}

/* Empties the table after a fold. A group that had entries keeps its
 * buffer for the next round (a flood refills the same groups, and fresh
 * memory would be faulted in again); one that stayed empty for a whole
 * round is freed. all: free every group (the table's end). */
static void clear(rc_ticklog *t, bool all)
{
    for (size_t i = 0; i < t->n_buckets; i++) {
        tl_group **s = &t->buckets[i];
        while (*s) {
            tl_group *g = *s;
            if (all || g->n == 0) {
                *s = g->next;
                free(g->ent);
                free(g);
                t->n_groups--;
                continue;
            }
            g->n = 0;
            s = &g->next;
        }
    }
    t->live = 0;
    t->bytes = 0;
    for (size_t i = 0; i < t->n_records; i++) { /* the buffers go to later batches */
        if (!all && t->n_pool < POOL_MAX && t->records[i].cap <= RC_TICKLOG_SPARE_MAX)
            t->pool[t->n_pool++] = t->records[i];
        else
            rc_ticklog_ops_free(&t->records[i]);
    }
    t->n_records = 0;
    t->held = 0;
}

rc_ticklog *rc_ticklog_new(size_t fold_bytes)
{
    rc_ticklog *t = calloc(1, sizeof(*t));
    if (!t || !(t->buckets = calloc(TABLE_MIN_BUCKETS, sizeof(*t->buckets)))) {
        free(t);
        return NULL;
    }
    t->n_buckets = TABLE_MIN_BUCKETS;
    t->fold_bytes = fold_bytes;
    pthread_mutex_init(&t->mu, NULL);
    return t;
}

void rc_ticklog_free(rc_ticklog *t)
{
    if (!t)
        return;
    clear(t, true);
    free(t->records);
    for (uint32_t i = 0; i < t->n_pool; i++)
        rc_ticklog_ops_free(&t->pool[i]);
    free(t->buckets);
    if (t->fold_wb)
        rocksdb_writebatch_destroy(t->fold_wb);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* ---- the table ---- */

/* Points the group at one more entry (inside a tick record the table
 * holds); a seq at or below the group's newest is a repeat (a tick record
 * read back twice cannot happen, but costs nothing to refuse) and is
 * skipped. */
static int table_put(rc_ticklog *t, const char *prefix, size_t prefix_len, const uint8_t *entry)
{
    tl_group *g = find_or_add(t, prefix, prefix_len);
    if (!g)
        return -1;
    uint64_t seq;
    uint32_t len;
    rc_store_entry_get(entry, &seq, &len);
    if (g->n && seq <= g->last)
        return 0;
    if (g->n == g->cap) {
        uint32_t cap = g->cap ? g->cap * 2 : 16;
        const uint8_t **e = realloc(g->ent, cap * sizeof(*e));
        if (!e)
            return -1;
        g->ent = e;
        g->cap = cap;
    }
    g->ent[g->n] = entry;
    t->bytes += RC_STORE_ENTRY_HDR + len;
    if (g->n++ == 0) {
        g->first = seq;
        t->live++;
    }
    g->last = seq;
    return 0;
}

/* Drops the group's entries with seq < before. */
static void table_trim(rc_ticklog *t, const char *prefix, size_t prefix_len, uint64_t before)
{
    tl_group *g = find(t, prefix, prefix_len);
    if (!g || g->n == 0 || g->first >= before)
        return;
    uint32_t k = 0;
    size_t bytes = 0;
    for (; k < g->n; k++) {
        uint64_t seq;
        uint32_t len;
        rc_store_entry_get(g->ent[k], &seq, &len);
        if (seq >= before)
            break;
        bytes += RC_STORE_ENTRY_HDR + len;
    }
    memmove(g->ent, g->ent + k, (g->n - k) * sizeof(*g->ent));
    g->n -= k;
    t->bytes -= bytes;
    if (g->n == 0)
        t->live--;
    else
        rc_store_entry_get(g->ent[0], &g->first, &(uint32_t){ 0 });
}

/* The table takes the tick record buffer of o until the next fold; o is
 * left empty. */
static int hold_record(rc_ticklog *t, rc_ticklog_ops *o)
{
    if (t->n_records == t->cap_records) {
        size_t cap = t->cap_records ? t->cap_records * 2 : 256;
        rc_ticklog_ops *r = realloc(t->records, cap * sizeof(*r));
        if (!r)
            return -1;
        t->records = r;
        t->cap_records = cap;
    }
    t->records[t->n_records++] = *o;
    t->held += o->cap;
    *o = (rc_ticklog_ops){ 0 };
    return 0;
}

/* Applies a tick record's ops (without its version byte) to the table,
 * which points into them: the record must be one the table holds
 * (hold_record). -1 when they are not well formed, or out of memory (*oom). */
static int table_apply(rc_ticklog *t, const uint8_t *op, size_t len, uint64_t *msgs, bool *oom)
{
    const uint8_t *end = op + len;
    while (op < end) {
        if (end - op < 1 + RC_STORE_HINT_BYTES + RC_STORE_SEQ_BYTES)
            return -1;
        unsigned kind = *op++;
        size_t prefix_len = RC_STORE_HISTORY_PREFIX_LEN(op[RC_STORE_TAG_BYTES]);
        if (op[0] != 0 || op[RC_STORE_TAG_BYTES] == 0 || (size_t)(end - op) < prefix_len + RC_STORE_SEQ_BYTES)
            return -1;
        const char *prefix = (const char *)op;
        op += prefix_len;
        if (kind == OP_TRIM) {
            table_trim(t, prefix, prefix_len, rc_store_be64_get((const char *)op));
            op += RC_STORE_SEQ_BYTES;
            continue;
        }
        uint64_t seq;
        uint32_t mlen;
        if (kind != OP_PUT || (size_t)(end - op) < RC_STORE_ENTRY_HDR)
            return -1;
        rc_store_entry_get(op, &seq, &mlen);
        if ((size_t)(end - op) - RC_STORE_ENTRY_HDR < mlen)
            return -1;
        if (table_put(t, prefix, prefix_len, op) != 0) {
            *oom = true;
            return -1;
        }
        op += RC_STORE_ENTRY_HDR + mlen;
        (*msgs)++;
    }
    return 0;
}

/* ---- a batch's ops ---- */

static int ops_reserve(rc_ticklog_ops *o, size_t more)
{
    more += o->len == 0; /* the version byte */
    if (o->len + more > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 4096;
        while (cap < o->len + more)
            cap *= 2;
        uint8_t *b = realloc(o->buf, cap);
        if (!b)
            return -1;
        o->buf = b;
        o->cap = cap;
    }
    if (o->len == 0)
        o->buf[o->len++] = TICK_RECORD_VERSION;
    return 0;
}

int rc_ticklog_ops_put(rc_ticklog_ops *o, const char *prefix, size_t prefix_len, uint64_t seq, const uint8_t *map,
                       uint32_t len)
{
    if (ops_reserve(o, 2 + prefix_len + RC_STORE_ENTRY_HDR + len) != 0)
        return -1;
    uint8_t *p = o->buf + o->len;
    *p++ = OP_PUT;
    memcpy(p, prefix, prefix_len);
    p += prefix_len;
    rc_store_entry_put(p, seq, len);
    memcpy(p + RC_STORE_ENTRY_HDR, map, len);
    o->len += 1 + prefix_len + RC_STORE_ENTRY_HDR + len;
    o->put_bytes += RC_STORE_ENTRY_HDR + len;
    return 0;
}

int rc_ticklog_ops_trim(rc_ticklog_ops *o, const char *prefix, size_t prefix_len, uint64_t before)
{
    if (ops_reserve(o, 2 + prefix_len + RC_STORE_SEQ_BYTES) != 0)
        return -1;
    uint8_t *p = o->buf + o->len;
    *p++ = OP_TRIM;
    memcpy(p, prefix, prefix_len);
    rc_store_be64_put((char *)p + prefix_len, before);
    o->len += 1 + prefix_len + RC_STORE_SEQ_BYTES;
    return 0;
}

void rc_ticklog_ops_free(rc_ticklog_ops *o)
{
    free(o->buf);
    *o = (rc_ticklog_ops){ 0 };
}

/* ---- the fold ---- */

void (*rc_ticklog_after_piece)(void);

/* Puts one group's entries as history records of at most
 * RC_STORE_RECORD_MAX_MSGS messages or RC_STORE_RECORD_MAX_BYTES bytes
 * (one larger message alone), gathered from the tick records; returns the
 * records. */
static uint64_t fold_group(rc_persist *p, rocksdb_writebatch_t *wb, const tl_group *g)
{
    static const char mark = (char)RC_STORE_RECORD_MARK;
    char key[RC_STORE_KEY_MAX];
    memcpy(key, g->prefix, g->prefix_len);
    const char *keys[1] = { key };
    size_t ksizes[1] = { g->prefix_len + RC_STORE_SEQ_BYTES };
    const char *vals[1 + RC_STORE_RECORD_MAX_MSGS];
    size_t sizes[1 + RC_STORE_RECORD_MAX_MSGS];
    uint64_t records = 0;
    for (uint32_t k = 0; k < g->n;) {
        vals[0] = &mark;
        sizes[0] = 1;
        size_t n = 0, bytes = 0;
        uint64_t newest = 0; /* the record's key */
        while (k < g->n && n < RC_STORE_RECORD_MAX_MSGS) {
            uint64_t seq;
            uint32_t len;
            rc_store_entry_get(g->ent[k], &seq, &len);
            size_t e = RC_STORE_ENTRY_HDR + len;
            if (n > 0 && bytes + e > RC_STORE_RECORD_MAX_BYTES)
                break;
            vals[1 + n] = (const char *)g->ent[k];
            sizes[1 + n] = e;
            bytes += e;
            newest = seq;
            n++;
            k++;
        }
        rc_store_be64_put(key + g->prefix_len, newest);
        rocksdb_writebatch_putv_cf(wb, p->cf[RC_CF_HISTORY], 1, keys, ksizes, (int)(1 + n), vals, sizes);
        records++;
    }
    return records;
}

/* Writes the fold batch (wb) and clears it for the next piece. */
static int write_piece(rc_persist *p, rocksdb_writeoptions_t *wo, rocksdb_writebatch_t *wb, char *err,
                       size_t errlen)
{
    rc_ticklog *t = p->tl;
    size_t wb_bytes;
    rocksdb_writebatch_data(wb, &wb_bytes);
    if (wb_bytes > t->fold_wb_bytes)
        t->fold_wb_bytes = wb_bytes;
    char *rerr = NULL;
    rocksdb_write(p->db, wo, wb, &rerr);
    rocksdb_writebatch_clear(wb);
    if (rerr) {
        rc_store_fail(err, errlen, p->dir, "folding the tick log failed: %s", rerr);
        rocksdb_free(rerr);
        return -1;
    }
    return 0;
}

/* Writes every group of the table as history records, in pieces of about
 * FOLD_PIECE_BYTES, and deletes every tick record with the last piece;
 * empties the table. Called with mu held.
 *
 * Pieces, not one write of tick_log_fold_mb: a WriteBatch is one growing
 * string, and one of 8 MiB, made anew for each fold, was copied at every
 * doubling into pages faulted in anew (5 % of the server's CPU under a
 * flood with durability=batch); kept from fold to fold it held 16 MiB for
 * good and took the 20,000-group flood past 512 MiB (bench/RESULTS.md
 * *The fold's batch*). One batch of a piece is kept and cleared instead.
 *
 * A crash between pieces leaves history records of messages whose tick
 * records are still there. The next open reads those tick records into the
 * same table (the same entries of the same groups) and folds it again into
 * the same records under the same keys, so the repeat overwrites them with
 * themselves. Reads meanwhile see no message twice: they take from records
 * only the seqs below the table's first (history.c). */
static int fold(rc_persist *p, rocksdb_writeoptions_t *wo, char *err, size_t errlen)
{
    rc_ticklog *t = p->tl;
    if (t->live == 0 && t->next_key == 0)
        return 0;
    if (!t->fold_wb)
        t->fold_wb = rocksdb_writebatch_create();
    rocksdb_writebatch_t *wb = t->fold_wb;
    uint64_t records = 0, msgs = 0;
    for (size_t i = 0; i < t->n_buckets; i++) {
        for (tl_group *g = t->buckets[i]; g; g = g->next) {
            if (g->n == 0)
                continue;
            records += fold_group(p, wb, g);
            msgs += g->n;
            size_t wb_bytes;
            rocksdb_writebatch_data(wb, &wb_bytes);
            if (wb_bytes >= FOLD_PIECE_BYTES) {
                if (write_piece(p, wo, wb, err, errlen) != 0)
                    return -1;
                if (rc_ticklog_after_piece)
                    rc_ticklog_after_piece();
            }
        }
    }
    char lo[RC_STORE_SEQ_BYTES], hi[RC_STORE_SEQ_BYTES];
    rc_store_be64_put(lo, 0);
    rc_store_be64_put(hi, t->next_key);
    rocksdb_writebatch_delete_range_cf(wb, p->cf[RC_CF_TICKS], lo, sizeof(lo), hi, sizeof(hi));
    if (write_piece(p, wo, wb, err, errlen) != 0)
        return -1;
    clear(t, false);
    t->st.folds++;
    t->st.folded_records += records;
    t->st.folded_msgs += msgs;
    return 0;
}

/* ---- commits ---- */

int rc_ticklog_commit(rc_persist *p, rocksdb_writebatch_t *wb, rc_ticklog_ops *ops, rc_durability d, char *err,
                      size_t errlen)
{
    rc_ticklog *t = p->tl;
    int rc = 0;
    pthread_mutex_lock(&t->mu);
    if (ops->put_bytes && t->bytes + ops->put_bytes > t->fold_bytes && t->bytes > 0)
        rc = fold(p, p->wopts[RC_DURABILITY_NONE], err, errlen);
    char key[RC_STORE_SEQ_BYTES];
    if (rc == 0 && ops->len > 0) {
        rc_store_be64_put(key, t->next_key);
        rocksdb_writebatch_put_cf(wb, p->cf[RC_CF_TICKS], key, sizeof(key), (const char *)ops->buf, ops->len);
    }
    if (rc == 0 && rocksdb_writebatch_count(wb) > 0) {
        char *rerr = NULL;
        rocksdb_write(p->db, p->wopts[d], wb, &rerr);
        if (rerr) {
            rc = rc_store_fail(err, errlen, p->dir, "write failed: %s", rerr);
            rocksdb_free(rerr);
        }
    }
    if (rc == 0 && ops->len > 0) {
        t->next_key++;
        t->st.records++;
        uint64_t msgs = 0;
        bool oom = false;
        const uint8_t *rec = ops->buf;
        size_t len = ops->len;
        if (hold_record(t, ops) != 0 || table_apply(t, rec + 1, len - 1, &msgs, &oom) != 0) {
            /* The record is written: only memory can have failed. Without
             * its messages in the table, scans would miss them until the
             * next open reads them back, so stop rather than answer wrong. */
            RC_LOG_ERROR("store", "event=tick_log_failed dir=%s msg=\"out of memory keeping a written tick\"", p->dir);
            abort();
        }
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

int rc_ticklog_fold_all(rc_persist *p, char *err, size_t errlen)
{
    if (!p->tl || p->readonly)
        return 0;
    pthread_mutex_lock(&p->tl->mu);
    int rc = fold(p, p->wopts[RC_DURABILITY_BATCH], err, errlen);
    pthread_mutex_unlock(&p->tl->mu);
    return rc;
}

/* ---- open ---- */

int rc_ticklog_open(rc_persist *p, char *err, size_t errlen)
{
    rc_ticklog *t = p->tl;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(p->db, ro, p->cf[RC_CF_TICKS]);
    int rc = 0;
    uint64_t records = 0, msgs = 0;
    pthread_mutex_lock(&t->mu);
    for (rocksdb_iter_seek_to_first(it); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen = 0, vlen = 0;
        const char *k = rocksdb_iter_key(it, &klen);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        bool oom = false;
        rc_ticklog_ops rec = { .buf = malloc(vlen ? vlen : 1), .len = vlen, .cap = vlen };
        if (rec.buf)
            memcpy(rec.buf, v, vlen);
        const uint8_t *held = rec.buf;
        if (!held || hold_record(t, &rec) != 0) {
            free(rec.buf);
            rc = rc_store_fail(err, errlen, p->dir, "out of memory reading the tick log");
            break;
        }
        if (klen != RC_STORE_SEQ_BYTES || vlen < 1 || held[0] != TICK_RECORD_VERSION ||
            table_apply(t, held + 1, vlen - 1, &msgs, &oom) != 0) {
            rc = oom ? rc_store_fail(err, errlen, p->dir, "out of memory reading the tick log")
                     : rc_store_fail(err, errlen, p->dir, "tick record of %zu bytes under a %zu-byte key: corrupt",
                                     vlen, klen);
            break;
        }
        t->next_key = rc_store_be64_get(k) + 1;
        records++;
    }
    if (rc == 0)
        rc = rc_store_iter_error(it, p->dir, "cannot read the tick log", err, errlen);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (rc == 0 && records > 0) {
        RC_LOG_INFO("store", "event=tick_log_read dir=%s records=%llu messages=%llu groups=%zu", p->dir,
                    (unsigned long long)records, (unsigned long long)msgs, t->live);
        if (!p->readonly)
            rc = fold(p, p->wopts[RC_DURABILITY_SYNC], err, errlen);
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

/* ---- reads ---- */

int rc_ticklog_copy(rc_persist *p, const char *prefix, size_t prefix_len, uint64_t from, uint64_t to, uint32_t limit,
                    rc_ticklog_tail *out)
{
    rc_ticklog *t = p->tl;
    *out = (rc_ticklog_tail){ .first = UINT64_MAX };
    pthread_mutex_lock(&t->mu);
    const tl_group *g = find(t, prefix, prefix_len);
    int rc = 0;
    if (g && g->n > 0) {
        out->first = g->first;
        uint32_t k = 0, end;
        size_t bytes = 0;
        uint64_t seq;
        uint32_t len;
        for (; k < g->n; k++) { /* the first entry at or after from */
            rc_store_entry_get(g->ent[k], &seq, &len);
            if (seq >= from)
                break;
        }
        for (end = k; end < g->n && end - k < limit; end++) {
            rc_store_entry_get(g->ent[end], &seq, &len);
            if (seq > to)
                break;
            bytes += RC_STORE_ENTRY_HDR + len;
        }
        if (end > k && !(out->buf = malloc(bytes))) {
            rc = -1;
        } else {
            for (uint32_t i = k; i < end; i++) {
                rc_store_entry_get(g->ent[i], &seq, &len);
                memcpy(out->buf + out->len, g->ent[i], RC_STORE_ENTRY_HDR + len);
                out->len += RC_STORE_ENTRY_HDR + len;
            }
            out->n = end - k;
        }
    }
    pthread_mutex_unlock(&t->mu);
    if (rc != 0)
        *out = (rc_ticklog_tail){ .first = UINT64_MAX };
    return rc;
}

/* A buffer for a batch's tick record: one a fold left, or an empty one. */
rc_ticklog_ops rc_ticklog_ops_take(rc_persist *p)
{
    rc_ticklog *t = p->tl;
    rc_ticklog_ops o = { 0 };
    pthread_mutex_lock(&t->mu);
    if (t->n_pool > 0)
        o = t->pool[--t->n_pool];
    pthread_mutex_unlock(&t->mu);
    o.len = o.put_bytes = 0;
    return o;
}

/* Gives back the buffer of a batch that was not committed. */
void rc_ticklog_ops_give(rc_persist *p, rc_ticklog_ops *o)
{
    rc_ticklog *t = p->tl;
    if (!o->buf)
        return;
    pthread_mutex_lock(&t->mu);
    if (t->n_pool < POOL_MAX && o->cap <= RC_TICKLOG_SPARE_MAX) {
        t->pool[t->n_pool++] = *o;
        *o = (rc_ticklog_ops){ 0 };
    }
    pthread_mutex_unlock(&t->mu);
    rc_ticklog_ops_free(o);
}

bool rc_ticklog_bounds(rc_persist *p, const char *prefix, size_t prefix_len, uint64_t *oldest, uint64_t *newest)
{
    rc_ticklog *t = p->tl;
    pthread_mutex_lock(&t->mu);
    const tl_group *g = find(t, prefix, prefix_len);
    bool has = g && g->n > 0;
    if (has) {
        *oldest = g->first;
        *newest = g->last;
    }
    pthread_mutex_unlock(&t->mu);
    return has;
}

void rc_ticklog_stats_read(rc_persist *p, rc_ticklog_stats *s)
{
    rc_ticklog *t = p->tl;
    pthread_mutex_lock(&t->mu);
    *s = t->st;
    s->bytes = t->bytes;
    s->held = t->held;
    s->groups = t->live;
    s->fold_batch = t->fold_wb_bytes;
    pthread_mutex_unlock(&t->mu);
}
