/*
 * The tick log (storage format 5, src/store/README.md *The tick log*).
 *
 * Storing each message as its own RocksDB entry costs about 5 µs of CPU a
 * message on this project's 2-core box (a memtable insert, then flush and
 * compaction of a small entry), where 16 messages an entry cost 1.2 µs and a
 * tick's 256 0.7 µs (bench/RESULTS.md, *The storage floor*). A shard's tick
 * spreads its messages over many groups, though, so a tick rarely holds two
 * messages of one group. And on a flood most messages leave retention
 * (history_max) within seconds: writing them through RocksDB's memtables,
 * flushes and compactions cost `durability=batch` about 100 ns of server
 * CPU a delivery (bench/RESULTS.md, *What durability=batch still costs on
 * the flood*). Hence:
 *
 * 1. A commit's messages and retention deletes are one tick record,
 *    appended to the newest segment file of the log
 *    (<data_dir>/ticklog/<first record number, 16 hex digits>.tlog) before
 *    the commit's acks leave; the commit's RocksDB writes (snapshots,
 *    retention range deletes, cursors) are in the same record and then go
 *    to RocksDB (see Crashes). The table points each group at its messages
 *    in the record through a read-only mapping of the segment: a message is
 *    not copied again, nor held in the process's memory, until a read or a
 *    fold touches it.
 * 2. When the segments hold more than `log_bytes` (the store option
 *    tick_log_mb), the oldest is folded: each group's messages in the table
 *    that lie in it become history records of up to
 *    RC_STORE_RECORD_MAX_MSGS messages (rocks.h, keyed by their newest seq),
 *    written through RocksDB's WAL in pieces of FOLD_PIECE_BYTES, and the
 *    segment file is deleted. Retention deletes drop a group's messages
 *    from the table as they come, so a message that leaves retention before
 *    its segment is folded never reaches RocksDB: on a flood the oldest
 *    segment is older than every busy group's retained messages, and its
 *    fold writes little.
 *
 * Reads of history see both: scans copy a group's table entries, then read
 * its records up to the first of them (history.c).
 *
 * Crashes. An ack leaves after its record's write() (durability batch and
 * none: into the page cache, which outlives a killed process) or its
 * fdatasync (sync). A record cut short by a crash can only be the last of
 * the newest segment, and was never acked: open truncates it. The RocksDB
 * writes of a commit carry the meta key `tick_log`, the record's number, so
 * open knows which records RocksDB has: the ones after it (at most the last,
 * when the crash came between the two writes; more with durability none,
 * whose RocksDB writes skip the WAL) are written to RocksDB again from the
 * log. A fold's pieces are in RocksDB's WAL before its segment is deleted
 * (with durability none, the memtables are flushed first); a crash between
 * pieces, or before the delete, leaves history records of messages still in
 * the log, and open drops from the table every message at or below its
 * group's newest history record (one seek a group in the table), so a
 * message is never in both.
 *
 * Format 4 kept tick records in the `ticks` family instead: a read-write
 * open reads them and folds them at once (the migration to format 5).
 *
 * Order: one mutex covers a commit from the fold check to the table update
 * after the writes, so records, folds and the table change in one order
 * and a fold never deletes a segment whose messages it did not write.
 * Shards' writes are serialized by it; with durability sync each commit
 * waits for its own fdatasync.
 */
#define _GNU_SOURCE /* sync_file_range */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "store/rocks.h"

#define TABLE_MIN_BUCKETS 1024u /* first size of the table's hash */
#define POOL_MAX 64u            /* tick record buffers kept for later batches */
#define TICK_RECORD_VERSION 1u  /* first byte of a record's ops */
#define OP_PUT 1u               /* a message: history prefix, then an entry */
#define OP_TRIM 2u              /* a retention delete: history prefix, then `before`, u64 BE */
#define FOLD_PIECE_BYTES (1u << 20) /* a fold is written in pieces of about this (see fold()) */
#define SEGMENTS 32u            /* a segment is log_bytes / SEGMENTS: the oldest is folded at a time */
#define SEGMENT_MIN (64u * 1024u) /* ... but at least this */
/* The table's memory past which the oldest segment is folded too: log_bytes
 * / TABLE_SHARE (64 MiB at the default), at least TABLE_MIN_BYTES. A group costs the table about 150
 * bytes whatever its messages, so a log of many groups with a message or
 * two each (a million groups is 150 MB) would otherwise hold memory in
 * proportion to the groups, not the bytes. */
#define TABLE_SHARE 8u
#define TABLE_MIN_BYTES (4u << 20)
#define ENT_MIN 4u              /* first size of a group's array of entries */
#define FILE_MAGIC "RCTICKS1"   /* a segment file's first 8 bytes */
#define FILE_HDR 16u            /* magic, then the number of the segment's first record, u64 BE */
#define REC_HDR 12u             /* payload length, its CRC32C, the ops' length: u32 LE each */
#define REC_PAYLOAD_MAX (1u << 30) /* a longer record is refused (and, read back, corrupt) */
#define MARK_KEY "tick_log"     /* meta: number of the newest record whose RocksDB writes RocksDB has */
#define FOLD_KEY "tick_log_fold" /* meta: the segment a fold is writing, or wrote: its number u64 BE, FOLD_* */
#define FOLD_STARTED 1u
#define FOLD_DONE 2u
#define APPLY_TRIES 3u          /* RocksDB writes of a logged record, tried this often before the process stops */
#define SEGMENT_SUFFIX ".tlog"

/* One group's messages in the table: pointers to its entries (laid out as
 * in a history record, rocks.h) inside the segments' mappings (or, while a
 * format 4 directory is read, inside tick records held in memory), oldest
 * first, with seqs rising. */
typedef struct tl_group {
    struct tl_group *next; /* the bucket's chain */
    uint64_t hash;         /* from the tag */
    const uint8_t **ent;   /* [n]: each entry's [seq][len][map] */
    uint32_t n, cap;
    uint32_t fold_k;       /* during a fold: its first fold_k entries are being folded */
    bool idle;             /* it had no entries at the last fold */
    bool rocks_empty;      /* RocksDB holds no history record of it (see retention()) */
    bool empties;          /* during a commit: its retention delete leaves RocksDB without a record of it */
    uint64_t first, last;  /* oldest and newest seq */
    size_t prefix_len;
    char prefix[];         /* tag, length byte, id: the start of its history keys */
} tl_group;

/* One file of the log. */
typedef struct tl_seg {
    uint64_t first;   /* number of its first record (its name) */
    int fd;           /* the newest segment's, for writing; -1 for the others (their mappings keep them) */
    uint8_t *map;     /* read-only, shared: the table's entries point into it */
    size_t map_len;
    size_t len;       /* bytes written: the file's size */
    size_t synced;    /* writeback started up to here (sync_bytes) */
} tl_seg;

struct rc_ticklog {
    pthread_mutex_t mu;  /* everything below, and the order of commits (see the top) */
    tl_group **buckets;
    size_t n_buckets, n_groups;
    size_t live;         /* groups with entries */
    size_t entries;      /* entries in the table */
    size_t index;        /* the table's memory: groups and their pointer arrays */
    size_t log_bytes;    /* tick_log_mb: the segments' bytes past which the oldest is folded */
    size_t seg_bytes;    /* a segment's size */
    size_t sync_bytes;   /* bytes_per_sync_kb: writeback of the newest segment is started every this many bytes */
    size_t table_max;    /* log_bytes / TABLE_SHARE, at least TABLE_MIN_BYTES: the table's memory past which the oldest
                            segment is folded */
    char *dir;           /* <data_dir>/ticklog */
    tl_seg *segs;        /* oldest first; the last is written */
    size_t n_segs, cap_segs;
    size_t disk;         /* the segments' bytes */
    bool unflushed;      /* RocksDB writes without the WAL (durability none) since the last flush */
    rc_ticklog_ops *records; /* format 4's tick records read at open, until their fold */
    size_t n_records, cap_records;
    size_t held;         /* their buffers' bytes */
    uint64_t cf_end;     /* key after format 4's last tick record: the fold's range delete ends there */
    rc_ticklog_ops pool[POOL_MAX]; /* buffers for later batches */
    uint32_t n_pool;
    uint64_t next_key;   /* number of the next record */
    rocksdb_writebatch_t *fold_wb; /* a fold's pieces, kept from piece to piece (see fold()) */
    size_t fold_wb_bytes; /* the largest piece it held: its capacity, within a factor of 2 */
    rc_ticklog_stats st;
};

static void le32_put(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t le32_get(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

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
    t->index += (n - t->n_buckets) * sizeof(*b);
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
    t->index += sizeof(*g) + prefix_len;
    return g;
}

static void group_free(rc_ticklog *t, tl_group *g)
{
    t->index -= sizeof(*g) + g->prefix_len + (size_t)g->cap * sizeof(*g->ent);
    t->n_groups--;
    free(g->ent);
    free(g);
}

/* After a fold: a group that had no entries at this fold and the last is
 * freed (at once while the table is over table_max); one that was refilled
 * keeps its array (a flood refills the same groups, and fresh memory would
 * be faulted in again). all: free every group (the table's end). */
static void sweep(rc_ticklog *t, bool all)
{
    for (size_t i = 0; i < t->n_buckets; i++) {
        tl_group **s = &t->buckets[i];
        while (*s) {
            tl_group *g = *s;
            if (all || (g->n == 0 && (g->idle || t->index > t->table_max))) {
                *s = g->next;
                group_free(t, g);
                continue;
            }
            g->idle = g->n == 0;
            s = &g->next;
        }
    }
}

rc_ticklog *rc_ticklog_new(size_t log_bytes, size_t sync_bytes)
{
    rc_ticklog *t = calloc(1, sizeof(*t));
    if (!t || !(t->buckets = calloc(TABLE_MIN_BUCKETS, sizeof(*t->buckets)))) {
        free(t);
        return NULL;
    }
    t->n_buckets = TABLE_MIN_BUCKETS;
    t->index = TABLE_MIN_BUCKETS * sizeof(*t->buckets);
    t->log_bytes = log_bytes;
    t->sync_bytes = sync_bytes;
    t->table_max = log_bytes / TABLE_SHARE > TABLE_MIN_BYTES ? log_bytes / TABLE_SHARE : TABLE_MIN_BYTES;
    t->seg_bytes = log_bytes / SEGMENTS < SEGMENT_MIN ? SEGMENT_MIN : log_bytes / SEGMENTS;
    pthread_mutex_init(&t->mu, NULL);
    return t;
}

static void seg_close(tl_seg *s)
{
    if (s->map)
        munmap(s->map, s->map_len);
    if (s->fd >= 0)
        close(s->fd);
    *s = (tl_seg){ .fd = -1 };
}

static void records_free(rc_ticklog *t)
{
    for (size_t i = 0; i < t->n_records; i++)
        rc_ticklog_ops_free(&t->records[i]);
    free(t->records);
    t->records = NULL;
    t->n_records = t->cap_records = 0;
    t->held = 0;
}

void rc_ticklog_free(rc_ticklog *t)
{
    if (!t)
        return;
    sweep(t, true);
    records_free(t);
    for (size_t i = 0; i < t->n_segs; i++)
        seg_close(&t->segs[i]);
    free(t->segs);
    for (uint32_t i = 0; i < t->n_pool; i++)
        rc_ticklog_ops_free(&t->pool[i]);
    free(t->buckets);
    free(t->dir);
    if (t->fold_wb)
        rocksdb_writebatch_destroy(t->fold_wb);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* ---- the table ---- */

/* Points the group at one more entry: `entry` is where it is read now,
 * `at` where it stays (a segment's mapping, or a held tick record). A seq
 * at or below the group's newest is a repeat (a record read back twice
 * cannot happen, but costs nothing to refuse) and is skipped. */
static int table_put(rc_ticklog *t, const char *prefix, size_t prefix_len, const uint8_t *entry, const uint8_t *at)
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
        uint32_t cap = g->cap ? g->cap * 2 : ENT_MIN;
        const uint8_t **e = realloc(g->ent, cap * sizeof(*e));
        if (!e)
            return -1;
        t->index += (size_t)(cap - g->cap) * sizeof(*e);
        g->ent = e;
        g->cap = cap;
    }
    g->ent[g->n] = at;
    t->entries++;
    if (g->n++ == 0) {
        g->first = seq;
        t->live++;
    }
    g->last = seq;
    return 0;
}

/* A group's seqs are gapless as a rule (each seq it gave out is stored
 * once), so an entry's place follows from its seq and nothing needs to be
 * read from the mappings: pages of messages that leave retention are never
 * touched. */
static bool gapless(const tl_group *g)
{
    return g->n > 0 && g->last - g->first == (uint64_t)g->n - 1;
}

/* Drops the group's first k entries. */
static void drop_front(rc_ticklog *t, tl_group *g, uint32_t k)
{
    if (k == 0)
        return;
    bool step = gapless(g);
    memmove(g->ent, g->ent + k, (g->n - k) * sizeof(*g->ent));
    g->n -= k;
    t->entries -= k;
    if (g->n == 0)
        t->live--;
    else if (step)
        g->first += k;
    else
        rc_store_entry_get(g->ent[0], &g->first, &(uint32_t){ 0 });
}

/* How many of the group's first entries have seq < before. */
static uint32_t count_below(const tl_group *g, uint64_t before)
{
    if (before <= g->first)
        return 0;
    if (before > g->last)
        return g->n;
    if (gapless(g))
        return (uint32_t)(before - g->first);
    uint32_t lo = 0, hi = g->n; /* rising seqs: a binary search, reading the entries */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        uint64_t seq;
        rc_store_entry_get(g->ent[mid], &seq, &(uint32_t){ 0 });
        if (seq < before)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Drops the group's entries with seq < before. */
static void table_trim(rc_ticklog *t, const char *prefix, size_t prefix_len, uint64_t before)
{
    tl_group *g = find(t, prefix, prefix_len);
    if (g && g->n > 0)
        drop_front(t, g, count_below(g, before));
}

/* The table takes the tick record buffer of o (format 4's, read at open)
 * until its fold; o is left empty. */
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

/* Applies a record's ops (without their version byte), read at op, to the
 * table; `kept` is where the same bytes stay, which the entries point into.
 * -1 when they are not well formed, or out of memory (*oom). */
static int table_apply(rc_ticklog *t, const uint8_t *op, size_t len, const uint8_t *kept, uint64_t *msgs, bool *oom)
{
    const uint8_t *start = op, *end = op + len;
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
        if (table_put(t, prefix, prefix_len, op, kept + (op - start)) != 0) {
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
    if (ops_reserve(o, 2 + prefix_len + RC_STORE_SEQ_BYTES) != 0 || o->len > UINT32_MAX)
        return -1;
    if (o->n_trims == o->cap_trims) {
        uint32_t cap = o->cap_trims ? o->cap_trims * 2 : 64;
        uint32_t *v = realloc(o->trims, cap * sizeof(*v));
        if (!v)
            return -1;
        o->trims = v;
        o->cap_trims = cap;
    }
    o->trims[o->n_trims++] = (uint32_t)o->len;
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
    free(o->trims);
    *o = (rc_ticklog_ops){ 0 };
}

/* ---- segments ---- */

static size_t page_round(size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (n + page - 1) / page * page;
}

static void seg_path(const rc_ticklog *t, uint64_t first, char *out, size_t len)
{
    snprintf(out, len, "%s/%016llx%s", t->dir, (unsigned long long)first, SEGMENT_SUFFIX);
}

/* Maps s->fd for reading, room for `len` bytes (a segment's size at least). */
static int seg_map(rc_ticklog *t, tl_seg *s, size_t len)
{
    s->map_len = page_round(len > t->seg_bytes ? len : t->seg_bytes);
    void *m = mmap(NULL, s->map_len, PROT_READ, MAP_SHARED, s->fd, 0);
    if (m == MAP_FAILED) {
        s->map = NULL;
        return -1;
    }
    s->map = m;
    return 0;
}

static tl_seg *seg_add(rc_ticklog *t)
{
    if (t->n_segs == t->cap_segs) {
        size_t cap = t->cap_segs ? t->cap_segs * 2 : SEGMENTS + 2;
        tl_seg *v = realloc(t->segs, cap * sizeof(*v));
        if (!v)
            return NULL;
        t->segs = v;
        t->cap_segs = cap;
    }
    tl_seg *s = &t->segs[t->n_segs++];
    *s = (tl_seg){ .fd = -1 };
    return s;
}

/* With durability sync, a new segment's name must be on disk as its
 * records will be. */
static int dir_sync(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    int rc = fsync(dfd);
    int e = errno;
    close(dfd);
    errno = e;
    return rc;
}

/* Starts a segment whose first record is number `first` and is `need`
 * bytes long. */
static int seg_start(rc_persist *p, uint64_t first, size_t need, bool sync, char *err, size_t errlen)
{
    rc_ticklog *t = p->tl;
    char path[4096];
    seg_path(t, first, path, sizeof(path));
    tl_seg *s = seg_add(t);
    if (!s)
        return rc_store_fail(err, errlen, p->dir, "out of memory starting a tick log segment");
    s->first = first;
    uint8_t hdr[FILE_HDR];
    memcpy(hdr, FILE_MAGIC, 8);
    rc_store_be64_put((char *)hdr + 8, first);
    const char *what = "cannot create";
    errno = ENOSPC; /* a short write of the header sets none */
    if ((s->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0 ||
        (what = "cannot write", pwrite(s->fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) ||
        (what = "cannot sync the directory of", sync && dir_sync(t->dir) != 0) ||
        (what = "cannot map", seg_map(t, s, FILE_HDR + need) != 0)) {
        int e = errno;
        seg_close(s);
        unlink(path);
        t->n_segs--;
        return rc_store_fail(err, errlen, p->dir, "tick log: %s %s: %s", what, path, strerror(e));
    }
    s->len = FILE_HDR;
    t->disk += FILE_HDR;
    /* Only now is the previous segment written whole: had the new file
     * failed, it would still be the newest, and written on. What a failed
     * record's cut left behind it (append) is cut again, or the next open
     * would read it as a bad record before a later segment: corrupt. */
    tl_seg *prev = t->n_segs > 1 ? &t->segs[t->n_segs - 2] : NULL;
    if (prev && prev->fd >= 0) {
        if (ftruncate(prev->fd, (off_t)prev->len) != 0)
            RC_LOG_ERROR("store", "event=tick_log_failed dir=%s msg=\"cannot cut a segment at its end: %s\"",
                         p->dir, strerror(errno));
        close(prev->fd);
        prev->fd = -1;
    }
    return 0;
}

/* Appends one record (ops, then the RocksDB batch's bytes) to the newest
 * segment, or a new one; *ops_at: where its ops now are, in the mapping. */
static int append(rc_persist *p, const rc_ticklog_ops *ops, const char *wb, size_t wb_len, rc_durability d,
                  const uint8_t **ops_at, char *err, size_t errlen)
{
    rc_ticklog *t = p->tl;
    size_t payload = 4 + ops->len + wb_len, rec = 8 + payload;
    if (payload > REC_PAYLOAD_MAX)
        return rc_store_fail(err, errlen, p->dir, "tick record of %zu bytes (at most %u): batch not written",
                             payload, REC_PAYLOAD_MAX);
    tl_seg *s = t->n_segs ? &t->segs[t->n_segs - 1] : NULL;
    if (s && s->len == FILE_HDR && s->len + rec > s->map_len) {
        /* No record yet (a crash, or a failed first write, came before
         * one), so its name is next_key's: a new segment would be this
         * file again, opened anew, and the table would hold it twice.
         * It is mapped larger instead. */
        if (s->map)
            munmap(s->map, s->map_len);
        if (seg_map(t, s, FILE_HDR + rec) != 0) {
            s->map_len = 0; /* unmapped: the next record maps it again */
            return rc_store_fail(err, errlen, p->dir, "tick log: cannot map a segment for a record of %zu bytes: %s",
                                 rec, strerror(errno));
        }
    }
    if (!s || s->len + rec > s->map_len || (s->len > FILE_HDR && s->len + rec > t->seg_bytes)) {
        if (seg_start(p, t->next_key, rec, d == RC_DURABILITY_SYNC, err, errlen) != 0)
            return -1;
        s = &t->segs[t->n_segs - 1];
    }
    uint8_t hdr[REC_HDR];
    le32_put(hdr, (uint32_t)payload);
    le32_put(hdr + 8, (uint32_t)ops->len);
    uint32_t crc = rc_store_crc32c(0, hdr + 8, 4);
    crc = rc_store_crc32c(crc, ops->buf, ops->len);
    crc = rc_store_crc32c(crc, wb, wb_len);
    le32_put(hdr + 4, crc);
    struct iovec iov[3] = { { hdr, sizeof(hdr) }, { ops->buf, ops->len }, { (void *)wb, wb_len } };
    ssize_t n = pwritev(s->fd, iov, wb_len ? 3 : 2, (off_t)s->len);
    int e = n < 0 ? errno : ENOSPC; /* a short write to a file: no room left */
    const char *what = "write";
    if (n == (ssize_t)rec) {
        if (d != RC_DURABILITY_SYNC || fdatasync(s->fd) == 0) {
            *ops_at = s->map + s->len + REC_HDR;
            s->len += rec;
            t->disk += rec;
            if (d != RC_DURABILITY_SYNC && s->len - s->synced >= t->sync_bytes) {
                /* Start the kernel's writeback, as RocksDB's wal_bytes_per_sync
                 * did for the WAL: what an OS crash can take stays small,
                 * and dirty pages never pile up into a stall. */
                sync_file_range(s->fd, (off_t)s->synced, (off_t)(s->len - s->synced), SYNC_FILE_RANGE_WRITE);
                s->synced = s->len;
            }
            return 0;
        }
        e = errno;
        what = "fdatasync";
    }
    if (ftruncate(s->fd, (off_t)s->len) != 0) /* no part of it may be read back */
        RC_LOG_ERROR("store", "event=tick_log_failed dir=%s msg=\"cannot cut a failed record off: %s\"", p->dir,
                     strerror(errno));
    return rc_store_fail(err, errlen, p->dir, "tick log %s failed: %s: batch not written", what, strerror(e));
}

/* ---- the fold ---- */

void (*rc_ticklog_after_piece)(void);
void (*rc_ticklog_after_fold)(void);
size_t rc_ticklog_piece_bytes = FOLD_PIECE_BYTES;

/* How many of the group's first entries lie in segment s (all when s is NULL). */
static uint32_t in_segment(const tl_group *g, const tl_seg *s)
{
    if (!s)
        return g->n;
    uintptr_t lo = (uintptr_t)s->map, hi = lo + s->len;
    uint32_t k = 0;
    while (k < g->n && (uintptr_t)g->ent[k] >= lo && (uintptr_t)g->ent[k] < hi)
        k++;
    return k;
}

/* Puts the group's first k entries as history records of at most
 * RC_STORE_RECORD_MAX_MSGS messages or RC_STORE_RECORD_MAX_BYTES bytes
 * (one larger message alone); returns the records. */
static uint64_t fold_group(rc_persist *p, rocksdb_writebatch_t *wb, const tl_group *g, uint32_t k_end)
{
    static const char mark = (char)RC_STORE_RECORD_MARK;
    char key[RC_STORE_KEY_MAX];
    memcpy(key, g->prefix, g->prefix_len);
    const char *keys[1] = { key };
    size_t ksizes[1] = { g->prefix_len + RC_STORE_SEQ_BYTES };
    const char *vals[1 + RC_STORE_RECORD_MAX_MSGS];
    size_t sizes[1 + RC_STORE_RECORD_MAX_MSGS];
    uint64_t records = 0;
    for (uint32_t k = 0; k < k_end;) {
        vals[0] = &mark;
        sizes[0] = 1;
        size_t n = 0, bytes = 0;
        uint64_t newest = 0; /* the record's key */
        while (k < k_end && n < RC_STORE_RECORD_MAX_MSGS) {
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

/* Writes the table's entries in segment seg (every entry when seg is NULL,
 * with the range delete of format 4's tick records) as history records,
 * in pieces of about FOLD_PIECE_BYTES through the WAL, then drops them from
 * the table. Called with mu held.
 *
 * Pieces, not one write: a WriteBatch is one growing string, and one of
 * 8 MiB, made anew for each fold, was copied at every doubling into pages
 * faulted in anew (5 % of the server's CPU under a flood with
 * durability=batch); kept from fold to fold it held 16 MiB for good
 * (bench/RESULTS.md *The fold's batch*). One batch of a piece is kept and
 * cleared instead. A group's records are all in one piece.
 *
 * A failed piece leaves the table as it was: the next fold writes the same
 * records under the same keys again. */
static int fold(rc_persist *p, const tl_seg *seg, rocksdb_writeoptions_t *wo, char *err, size_t errlen)
{
    rc_ticklog *t = p->tl;
    if (!t->fold_wb)
        t->fold_wb = rocksdb_writebatch_create();
    rocksdb_writebatch_t *wb = t->fold_wb;
    uint64_t records = 0, msgs = 0;
    int rc = 0;
    char fk[RC_STORE_SEQ_BYTES + 1];
    if (seg) { /* with the first piece: which segment is being folded (see rc_ticklog_open) */
        rc_store_be64_put(fk, seg->first);
        fk[RC_STORE_SEQ_BYTES] = (char)FOLD_STARTED;
        rocksdb_writebatch_put_cf(wb, p->cf[RC_CF_META], FOLD_KEY, strlen(FOLD_KEY), fk, sizeof(fk));
    }
    for (size_t i = 0; i < t->n_buckets && rc == 0; i++) {
        for (tl_group *g = t->buckets[i]; g && rc == 0; g = g->next) {
            g->fold_k = in_segment(g, seg);
            if (g->fold_k == 0)
                continue;
            records += fold_group(p, wb, g, g->fold_k);
            msgs += g->fold_k;
            size_t wb_bytes;
            rocksdb_writebatch_data(wb, &wb_bytes);
            if (wb_bytes >= rc_ticklog_piece_bytes) {
                rc = write_piece(p, wo, wb, err, errlen);
                if (rc == 0 && rc_ticklog_after_piece)
                    rc_ticklog_after_piece();
            }
        }
    }
    if (rc == 0 && seg) { /* with the last: it is written whole */
        fk[RC_STORE_SEQ_BYTES] = (char)FOLD_DONE;
        rocksdb_writebatch_put_cf(wb, p->cf[RC_CF_META], FOLD_KEY, strlen(FOLD_KEY), fk, sizeof(fk));
    }
    if (rc == 0 && !seg && t->cf_end > 0) {
        char lo[RC_STORE_SEQ_BYTES], hi[RC_STORE_SEQ_BYTES];
        rc_store_be64_put(lo, 0);
        rc_store_be64_put(hi, t->cf_end);
        rocksdb_writebatch_delete_range_cf(wb, p->cf[RC_CF_TICKS], lo, sizeof(lo), hi, sizeof(hi));
    }
    if (rc == 0 && rocksdb_writebatch_count(wb) > 0)
        rc = write_piece(p, wo, wb, err, errlen);
    rocksdb_writebatch_clear(wb);
    for (size_t i = 0; i < t->n_buckets; i++) {
        for (tl_group *g = t->buckets[i]; g; g = g->next) {
            if (g->fold_k > 0) {
                if (rc == 0)
                    drop_front(t, g, g->fold_k);
                g->rocks_empty = false; /* RocksDB holds records of it again (or may: a failed fold's pieces) */
            }
            g->fold_k = 0;
        }
    }
    if (rc != 0)
        return -1;
    sweep(t, false);
    if (!seg) {
        records_free(t);
        t->cf_end = 0;
    }
    t->st.folds++;
    t->st.folded_records += records;
    t->st.folded_msgs += msgs;
    return 0;
}

/* Folds the oldest segment and deletes its file. */
static int fold_oldest(rc_persist *p, rc_durability d, char *err, size_t errlen)
{
    rc_ticklog *t = p->tl;
    tl_seg *s = &t->segs[0];
    /* RocksDB writes of its records that skipped the WAL (durability
     * none): on disk before the fold's last piece says the segment is
     * folded, after which an open reads it no more (rc_ticklog_open). */
    if (t->unflushed) {
        rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
        rocksdb_flushoptions_set_wait(fo, 1);
        char *rerr = NULL;
        for (int i = RC_CF_GROUPS; i < RC_CF_COUNT && !rerr; i++)
            rocksdb_flush_cf(p->db, fo, p->cf[i], &rerr);
        rocksdb_flushoptions_destroy(fo);
        if (rerr) {
            rc_store_fail(err, errlen, p->dir, "flushing before a tick log segment is folded failed: %s", rerr);
            rocksdb_free(rerr);
            return -1;
        }
        t->unflushed = false;
    }
    if (fold(p, s, p->wopts[d == RC_DURABILITY_SYNC ? RC_DURABILITY_SYNC : RC_DURABILITY_BATCH], err, errlen) != 0)
        return -1;
    if (rc_ticklog_after_fold)
        rc_ticklog_after_fold();
    char path[4096];
    seg_path(t, s->first, path, sizeof(path));
    if (unlink(path) != 0)
        RC_LOG_WARN("store", "event=tick_log_unlink_failed path=%s msg=\"%s\"", path, strerror(errno));
    t->disk -= s->len;
    seg_close(s);
    memmove(t->segs, t->segs + 1, (t->n_segs - 1) * sizeof(*t->segs));
    t->n_segs--;
    t->st.segments_folded++;
    return 0;
}

/* ---- commits ---- */

/* A logged record's RocksDB writes. The record is the commit: if RocksDB
 * refuses them every time, the process stops rather than answer from a
 * state the log contradicts, and the next open writes them again. */
static void apply(rc_persist *p, rocksdb_writebatch_t *wb, rc_durability d)
{
    /* With sync, the log's fdatasync has the record; the WAL is synced by
     * the next fold before the segment goes. */
    rocksdb_writeoptions_t *wo = p->wopts[d == RC_DURABILITY_SYNC ? RC_DURABILITY_BATCH : d];
    for (unsigned i = 0;; i++) {
        char *rerr = NULL;
        rocksdb_write(p->db, wo, wb, &rerr);
        if (!rerr)
            return;
        RC_LOG_ERROR("store", "event=tick_log_apply_failed dir=%s try=%u msg=\"%s\"", p->dir, i + 1, rerr);
        rocksdb_free(rerr);
        if (i + 1 == APPLY_TRIES)
            abort();
        nanosleep(&(struct timespec){ .tv_nsec = 1000000L << i }, NULL);
    }
}

/* The RocksDB half of a commit's retention deletes, added to wb (mu held).
 * A retention delete removes the group's history records wholly below
 * `before` (a range delete from the bare tag) and writes its trim mark
 * (rocks.h). Every record of a group is older than its first message in
 * the table (folds take the oldest), so a delete whose `before` reaches
 * the table leaves RocksDB without a record of the group, and until a fold
 * writes one again another delete would find nothing: it is left out, mark
 * and all (reads then take everything from the table). On a flood, where
 * nothing is folded, that is every retention delete but a group's first,
 * and RocksDB's memtable does not fill with range tombstones, whose
 * fragmenting at a memtable switch stopped the writer for 3.4 s once
 * 230,000 of them had gathered (bench/RESULTS.md, *The tick log on disk*).
 * A group with nothing in the table gets its delete. */
static void retention(rc_persist *p, rocksdb_writebatch_t *wb, const rc_ticklog_ops *ops)
{
    rc_ticklog *t = p->tl;
    for (uint32_t i = 0; i < ops->n_trims; i++) {
        const uint8_t *op = ops->buf + ops->trims[i] + 1;
        size_t prefix_len = RC_STORE_HISTORY_PREFIX_LEN(op[RC_STORE_TAG_BYTES]);
        uint64_t before = rc_store_be64_get((const char *)op + prefix_len);
        tl_group *g = find(t, (const char *)op, prefix_len);
        if (g && g->rocks_empty)
            continue;
        if (g && g->n > 0 && before >= g->first)
            g->empties = true;
        char to[RC_STORE_KEY_MAX], v[RC_STORE_SEQ_BYTES];
        memcpy(to, op, prefix_len + RC_STORE_SEQ_BYTES); /* prefix, then `before`: deletes seq < before */
        rocksdb_writebatch_delete_range_cf(wb, p->cf[RC_CF_HISTORY], (const char *)op, RC_STORE_TAG_BYTES, to,
                                           prefix_len + RC_STORE_SEQ_BYTES);
        memcpy(v, op + prefix_len, RC_STORE_SEQ_BYTES);
        rc_store_be64_put(to + prefix_len, RC_STORE_TRIM_MARK_SEQ);
        rocksdb_writebatch_put_cf(wb, p->cf[RC_CF_HISTORY], to, prefix_len + RC_STORE_SEQ_BYTES, v, sizeof(v));
        t->st.trims_written++;
    }
}

/* After the commit's record was written (written) or not: what retention()
 * found takes effect, or is forgotten. */
static void retention_done(rc_persist *p, const rc_ticklog_ops *ops, bool written)
{
    for (uint32_t i = 0; i < ops->n_trims; i++) {
        const uint8_t *op = ops->buf + ops->trims[i] + 1;
        tl_group *g = find(p->tl, (const char *)op, RC_STORE_HISTORY_PREFIX_LEN(op[RC_STORE_TAG_BYTES]));
        if (g && g->empties) {
            g->rocks_empty = written;
            g->empties = false;
        }
    }
}

int rc_ticklog_commit(rc_persist *p, rocksdb_writebatch_t *wb, rc_ticklog_ops *ops, rc_durability d, char *err,
                      size_t errlen)
{
    rc_ticklog *t = p->tl;
    int rc = 0;
    pthread_mutex_lock(&t->mu);
    if (ops->len == 0) { /* no messages and no retention: RocksDB alone */
        char *rerr = NULL;
        rocksdb_write(p->db, p->wopts[d], wb, &rerr);
        if (rerr) {
            rc = rc_store_fail(err, errlen, p->dir, "write failed: %s", rerr);
            rocksdb_free(rerr);
        } else if (d == RC_DURABILITY_NONE) {
            t->unflushed = true;
        }
        pthread_mutex_unlock(&t->mu);
        return rc;
    }
    while (rc == 0 && t->n_segs > 1 && (t->disk + ops->len > t->log_bytes || t->index > t->table_max))
        rc = fold_oldest(p, d, err, errlen);
    if (rc == 0)
        retention(p, wb, ops);
    bool rocks = rocksdb_writebatch_count(wb) > 0;
    const uint8_t *at = NULL;
    if (rc == 0) {
        size_t wb_len = 0;
        const char *wb_data = NULL;
        if (rocks) { /* which record RocksDB has last (see the top) */
            char v[RC_STORE_SEQ_BYTES];
            rc_store_be64_put(v, t->next_key);
            rocksdb_writebatch_put_cf(wb, p->cf[RC_CF_META], MARK_KEY, strlen(MARK_KEY), v, sizeof(v));
            wb_data = rocksdb_writebatch_data(wb, &wb_len);
        }
        rc = append(p, ops, wb_data, wb_len, d, &at, err, errlen);
    }
    retention_done(p, ops, rc == 0);
    if (rc == 0) {
        t->next_key++;
        t->st.records++;
        uint64_t msgs = 0;
        bool oom = false;
        if (table_apply(t, ops->buf + 1, ops->len - 1, at + 1, &msgs, &oom) != 0) {
            /* The record is written: only memory can have failed. Without
             * its messages in the table, scans would miss them until the
             * next open reads them back, so stop rather than answer wrong. */
            RC_LOG_ERROR("store", "event=tick_log_failed dir=%s msg=\"out of memory keeping a written tick\"", p->dir);
            abort();
        }
        if (rocks)
            apply(p, wb, d);
        if (rocks && d == RC_DURABILITY_NONE)
            t->unflushed = true;
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

int rc_ticklog_fold_all(rc_persist *p, char *err, size_t errlen)
{
    if (!p->tl || p->readonly)
        return 0;
    rc_ticklog *t = p->tl;
    pthread_mutex_lock(&t->mu);
    int rc = 0;
    while (rc == 0 && t->n_segs > 0)
        rc = fold_oldest(p, RC_DURABILITY_SYNC, err, errlen);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

/* ---- open ---- */

/* Format 4's tick records, in the `ticks` family: held in memory, and
 * folded at once by a read-write open (the migration to format 5). */
static int read_ticks_family(rc_persist *p, char *err, size_t errlen)
{
    rc_ticklog *t = p->tl;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(p->db, ro, p->cf[RC_CF_TICKS]);
    int rc = 0;
    uint64_t records = 0, msgs = 0;
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
            table_apply(t, held + 1, vlen - 1, held + 1, &msgs, &oom) != 0) {
            rc = oom ? rc_store_fail(err, errlen, p->dir, "out of memory reading the tick log")
                     : rc_store_fail(err, errlen, p->dir, "tick record of %zu bytes under a %zu-byte key: corrupt",
                                     vlen, klen);
            break;
        }
        t->cf_end = rc_store_be64_get(k) + 1;
        records++;
    }
    if (rc == 0)
        rc = rc_store_iter_error(it, p->dir, "cannot read the tick log", err, errlen);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (rc == 0 && records > 0) {
        RC_LOG_INFO("store", "event=tick_log_read dir=%s family=ticks records=%llu messages=%llu groups=%zu", p->dir,
                    (unsigned long long)records, (unsigned long long)msgs, t->live);
        if (!p->readonly)
            rc = fold(p, NULL, p->wopts[RC_DURABILITY_SYNC], err, errlen);
    }
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A segment's name as seg_path() writes it: 16 lowercase hex digits, then
 * the suffix (strtoull alone would take "0x1", a sign or spaces too). */
static bool segment_name(const char *name, uint64_t *first)
{
    for (int i = 0; i < 16; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return false; /* the name's end included */
    if (strcmp(name + 16, SEGMENT_SUFFIX) != 0)
        return false;
    *first = strtoull(name, NULL, 16);
    return true;
}

/* The segments' numbers, sorted; *n 0 when there is no directory. */

static int list_segments(rc_persist *p, uint64_t **out, size_t *n, char *err, size_t errlen)
{
    rc_ticklog *t = p->tl;
    *out = NULL;
    *n = 0;
    DIR *d = opendir(t->dir);
    if (!d)
        return errno == ENOENT ? 0 : rc_store_fail(err, errlen, p->dir, "cannot read %s: %s", t->dir, strerror(errno));
    size_t cap = 0;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        uint64_t v;
        if (!segment_name(e->d_name, &v))
            continue; /* not a segment (a stray file is left alone) */
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            uint64_t *v2 = realloc(*out, cap * sizeof(**out));
            if (!v2) {
                rc = rc_store_fail(err, errlen, p->dir, "out of memory listing the tick log");
                break;
            }
            *out = v2;
        }
        (*out)[(*n)++] = v;
    }
    closedir(d);
    if (rc == 0 && *n > 1)
        qsort(*out, *n, sizeof(**out), cmp_u64);
    return rc;
}

typedef struct open_counts {
    uint64_t records, msgs, replayed, skipped;
    bool have_mark;
    uint64_t mark;
    bool have_fold;   /* FOLD_KEY: the last fold's segment and whether it was written whole */
    uint64_t fold_seg;
    unsigned fold_state;
} open_counts;

/* Writes a record's RocksDB writes again (open, when RocksDB may lack them). */
static int replay(rc_persist *p, const uint8_t *wb, size_t len, char *err, size_t errlen)
{
    rocksdb_writebatch_t *b = rocksdb_writebatch_create_from((const char *)wb, len);
    char *rerr = NULL;
    rocksdb_write(p->db, p->wopts[RC_DURABILITY_BATCH], b, &rerr);
    rocksdb_writebatch_destroy(b);
    if (rerr) {
        rc_store_fail(err, errlen, p->dir, "writing a tick record's batch again failed: %s", rerr);
        rocksdb_free(rerr);
        return -1;
    }
    return 0;
}

static bool all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* Reads one segment into the table. Only the last may end in a record cut
 * short (never acked: a read-write open cuts it off). */
static int load_segment(rc_persist *p, uint64_t first, bool last, open_counts *c, char *err, size_t errlen)
{
    rc_ticklog *t = p->tl;
    char path[4096];
    seg_path(t, first, path, sizeof(path));
    tl_seg *s = seg_add(t);
    if (!s)
        return rc_store_fail(err, errlen, p->dir, "out of memory reading the tick log");
    s->first = first;
    struct stat st;
    if ((s->fd = open(path, (p->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC)) < 0 || fstat(s->fd, &st) != 0) {
        int e = errno;
        seg_close(s);
        t->n_segs--;
        if (e == ENOENT && p->readonly)
            return 0; /* folded by the server meanwhile */
        return rc_store_fail(err, errlen, p->dir, "cannot open %s: %s", path, strerror(e));
    }
    size_t size = (size_t)st.st_size;
    uint8_t hdr[FILE_HDR];
    if (size < FILE_HDR || pread(s->fd, hdr, FILE_HDR, 0) != (ssize_t)FILE_HDR) {
        seg_close(s);
        t->n_segs--;
        if (!last)
            return rc_store_fail(err, errlen, p->dir, "tick log segment %s has no header: corrupt", path);
        if (!p->readonly && unlink(path) != 0)
            return rc_store_fail(err, errlen, p->dir, "cannot remove %s: %s", path, strerror(errno));
        return 0; /* created, never written */
    }
    if (memcmp(hdr, FILE_MAGIC, 8) != 0 || rc_store_be64_get((const char *)hdr + 8) != first)
        return rc_store_fail(err, errlen, p->dir, "%s is not a tick log segment of its name: corrupt", path);
    if (seg_map(t, s, size) != 0)
        return rc_store_fail(err, errlen, p->dir, "cannot map %s: %s", path, strerror(errno));
    size_t off = FILE_HDR;
    uint64_t n = 0;
    const char *bad = NULL;
    bool ends = false; /* the bad record reaches the file's end: nothing can follow it */
    while (off < size) {
        const uint8_t *r = s->map + off;
        if (size - off < REC_HDR) {
            bad = "cut short";
            ends = true;
            break;
        }
        uint32_t payload = le32_get(r), ops_len = le32_get(r + 8);
        if (payload < 4 || payload > REC_PAYLOAD_MAX) {
            bad = "has a bad length";
            break;
        }
        if (size - off - 8 < payload) {
            bad = "cut short";
            ends = true;
            break;
        }
        if (rc_store_crc32c(0, r + 8, payload) != le32_get(r + 4)) {
            bad = "fails its checksum";
            ends = size - off - 8 == payload;
            break;
        }
        if (ops_len > payload - 4 || (ops_len > 0 && r[REC_HDR] != TICK_RECORD_VERSION))
            return rc_store_fail(err, errlen, p->dir, "%s: record at %zu has a bad layout: corrupt", path, off);
        bool oom = false;
        if (ops_len > 1 && table_apply(t, r + REC_HDR + 1, ops_len - 1, r + REC_HDR + 1, &c->msgs, &oom) != 0)
            return oom ? rc_store_fail(err, errlen, p->dir, "out of memory reading the tick log")
                       : rc_store_fail(err, errlen, p->dir, "%s: record at %zu: bad ops: corrupt", path, off);
        size_t wb_len = payload - 4 - ops_len;
        if (wb_len > 0 && !p->readonly && (!c->have_mark || first + n > c->mark)) {
            if (replay(p, r + REC_HDR + ops_len, wb_len, err, errlen) != 0)
                return -1;
            c->replayed++;
        }
        off += 8 + (size_t)payload;
        n++;
    }
    /* What a crash leaves is the newest segment's last record cut short,
     * or (the machine's, before the kernel wrote every page back) ending in
     * pages never written, read back as zeros. A bad record anywhere else
     * has acked records after it: cutting it would drop them. */
    if (bad && !last)
        return rc_store_fail(err, errlen, p->dir,
                             "%s: record at %zu %s, and later segments follow: corrupt", path, off, bad);
    bool zeros = bad && !ends && all_zero(s->map + off, size - off);
    if (bad && !ends && !zeros)
        return rc_store_fail(err, errlen, p->dir,
                             "%s: record at %zu %s, and the segment goes on for %zu bytes after it: corrupt", path,
                             off, bad, size - off);
    if (bad && !p->readonly) {
        if (zeros)
            RC_LOG_WARN("store", "event=tick_log_cut path=%s offset=%zu bytes=%zu msg=\"the segment ends in zeros: "
                        "pages the machine's crash kept from being written\"", path, off, size - off);
        else
            RC_LOG_WARN("store", "event=tick_log_cut path=%s offset=%zu bytes=%zu msg=\"the last record %s: "
                        "a write a crash cut short\"", path, off, size - off, bad);
        if (ftruncate(s->fd, (off_t)off) != 0)
            return rc_store_fail(err, errlen, p->dir, "cannot cut %s at %zu: %s", path, off, strerror(errno));
    }
    madvise(s->map, s->map_len, MADV_DONTNEED); /* the pages read stay cached, not in this process */
    if (!last || p->readonly) { /* written no more */
        close(s->fd);
        s->fd = -1;
    }
    s->len = off;
    t->disk += off;
    c->records += n;
    if (first + n > t->next_key)
        t->next_key = first + n;
    return 0;
}

/* A crash in a fold, or before its segment's delete, left history records
 * of messages still in the log: the table keeps only what is newer than a
 * group's newest record (see the top). */
static int drop_folded(rc_persist *p, uint64_t *dropped, char *err, size_t errlen)
{
    rc_ticklog *t = p->tl;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_total_order_seek(ro, 1);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(p->db, ro, p->cf[RC_CF_HISTORY]);
    int rc = 0;
    for (size_t i = 0; i < t->n_buckets && rc == 0; i++) {
        for (tl_group *g = t->buckets[i]; g && rc == 0; g = g->next) {
            if (g->n == 0)
                continue;
            char key[RC_STORE_KEY_MAX];
            memcpy(key, g->prefix, g->prefix_len);
            rc_store_be64_put(key + g->prefix_len, UINT64_MAX);
            rocksdb_iter_seek_for_prev(it, key, g->prefix_len + RC_STORE_SEQ_BYTES);
            size_t klen = 0;
            const char *k = rocksdb_iter_valid(it) ? rocksdb_iter_key(it, &klen) : NULL;
            if (k && klen == g->prefix_len + RC_STORE_SEQ_BYTES && memcmp(k, g->prefix, g->prefix_len) == 0) {
                uint64_t newest = rc_store_be64_get(k + g->prefix_len); /* 0: the trim mark alone */
                if (newest >= g->first) {
                    uint32_t k_drop = count_below(g, newest + 1);
                    *dropped += k_drop;
                    drop_front(t, g, k_drop);
                }
            }
            rc = rc_store_iter_error(it, p->dir, "cannot read history", err, errlen);
        }
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

static int meta_get(rc_persist *p, const char *key, char **v, size_t *len, char *err, size_t errlen)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *rerr = NULL;
    *v = rocksdb_get_cf(p->db, ro, p->cf[RC_CF_META], key, strlen(key), len, &rerr);
    rocksdb_readoptions_destroy(ro);
    if (!rerr)
        return 0;
    rc_store_fail(err, errlen, p->dir, "cannot read meta/%s: %s", key, rerr);
    rocksdb_free(rerr);
    return -1;
}

/* A segment a fold wrote whole: deleted (read-write) or passed over. */
static int skip_segment(rc_persist *p, uint64_t first, open_counts *c, char *err, size_t errlen)
{
    rc_ticklog *t = p->tl;
    if (first + 1 > t->next_key)
        t->next_key = first + 1; /* its name is not used again */
    c->skipped++;
    if (p->readonly)
        return 0;
    char path[4096];
    seg_path(t, first, path, sizeof(path));
    if (unlink(path) != 0 && errno != ENOENT)
        return rc_store_fail(err, errlen, p->dir, "cannot remove %s: %s", path, strerror(errno));
    return 0;
}

int rc_ticklog_open(rc_persist *p, char *err, size_t errlen)
{
    rc_ticklog *t = p->tl;
    size_t dlen = strlen(p->dir) + sizeof("/" RC_STORE_TICKLOG_DIR);
    if (!(t->dir = malloc(dlen)))
        return rc_store_fail(err, errlen, p->dir, "out of memory");
    snprintf(t->dir, dlen, "%s/%s", p->dir, RC_STORE_TICKLOG_DIR);
    pthread_mutex_lock(&t->mu);
    int rc = read_ticks_family(p, err, errlen);
    if (rc == 0 && !p->readonly && mkdir(t->dir, 0755) != 0 && errno != EEXIST)
        rc = rc_store_fail(err, errlen, p->dir, "cannot create %s: %s", t->dir, strerror(errno));
    open_counts c = { 0 };
    char *v = NULL;
    size_t len = 0;
    if (rc == 0 && (rc = meta_get(p, MARK_KEY, &v, &len, err, errlen)) == 0 && v) {
        if (len != RC_STORE_SEQ_BYTES) {
            rc = rc_store_fail(err, errlen, p->dir, "meta/%s of %zu bytes: corrupt", MARK_KEY, len);
        } else {
            c.have_mark = true;
            c.mark = rc_store_be64_get(v);
            t->next_key = c.mark + 1;
        }
    }
    rocksdb_free(v);
    v = NULL;
    if (rc == 0 && (rc = meta_get(p, FOLD_KEY, &v, &len, err, errlen)) == 0 && v) {
        unsigned state = len == RC_STORE_SEQ_BYTES + 1 ? (uint8_t)v[RC_STORE_SEQ_BYTES] : 0;
        if (state != FOLD_STARTED && state != FOLD_DONE) {
            rc = rc_store_fail(err, errlen, p->dir, "meta/%s of %zu bytes: corrupt", FOLD_KEY, len);
        } else {
            c.have_fold = true;
            c.fold_seg = rc_store_be64_get(v);
            c.fold_state = state;
        }
    }
    rocksdb_free(v);
    uint64_t *firsts = NULL;
    size_t n = 0;
    if (rc == 0)
        rc = list_segments(p, &firsts, &n, err, errlen);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        /* Folded whole (a crash came before its delete, or a delete failed):
         * its messages are in history, its RocksDB writes in RocksDB. */
        if (c.have_fold && (firsts[i] < c.fold_seg || (firsts[i] == c.fold_seg && c.fold_state == FOLD_DONE))) {
            rc = skip_segment(p, firsts[i], &c, err, errlen);
            continue;
        }
        rc = load_segment(p, firsts[i], i + 1 == n, &c, err, errlen);
    }
    free(firsts);
    uint64_t dropped = 0;
    /* Only a fold cut short leaves records of messages still in the log. */
    if (rc == 0 && t->live > 0 && c.have_fold && c.fold_state == FOLD_STARTED)
        rc = drop_folded(p, &dropped, err, errlen);
    /* Every segment read, every retention delete applied: a table over its
     * memory folds as a commit would, with the WAL synced: open does not
     * know whether the server runs with durability sync, whose acked
     * messages must not rest on an unsynced WAL once their segment is gone. */
    while (rc == 0 && !p->readonly && t->n_segs > 1 && t->index > t->table_max)
        rc = fold_oldest(p, RC_DURABILITY_SYNC, err, errlen);
    if (rc == 0 && n > 0)
        RC_LOG_INFO("store",
                    "event=tick_log_read dir=%s segments=%zu bytes=%zu records=%llu messages=%llu groups=%zu "
                    "replayed=%llu already_folded=%llu segments_already_folded=%llu",
                    p->dir, t->n_segs, t->disk, (unsigned long long)c.records, (unsigned long long)c.msgs, t->live,
                    (unsigned long long)c.replayed, (unsigned long long)dropped, (unsigned long long)c.skipped);
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

/* A buffer for a batch's tick record: one an earlier batch left, or an empty one. */
rc_ticklog_ops rc_ticklog_ops_take(rc_persist *p)
{
    rc_ticklog *t = p->tl;
    rc_ticklog_ops o = { 0 };
    pthread_mutex_lock(&t->mu);
    if (t->n_pool > 0)
        o = t->pool[--t->n_pool];
    pthread_mutex_unlock(&t->mu);
    o.len = o.put_bytes = 0;
    o.n_trims = 0;
    return o;
}

/* Gives back the buffer of a batch, committed or not (a commit copies it into the log). */
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
    s->entries = t->entries;
    s->held = t->index + t->held;
    s->groups = t->live;
    s->fold_batch = t->fold_wb_bytes;
    s->segments = t->n_segs;
    s->disk = t->disk;
    pthread_mutex_unlock(&t->mu);
}
