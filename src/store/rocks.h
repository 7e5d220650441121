/*
 * Private to src/store: the open database (rocks.c opens and tunes it,
 * history.c reads and writes it) and the history key layout both use.
 *
 * history key (format 3):
 *   [16 bytes: group tag][1 byte: group id length n][n bytes: group id][8 bytes: seq, big-endian]
 *
 * The tag is the first 16 bytes of the group id's SHA-256 with the first
 * byte set to 0, which keeps format 3 keys apart from format 2's (whose
 * first byte, the length, is 1..255) while a directory is migrated. Tag and
 * length byte, 17 bytes, are the fixed-length prefix RocksDB's memtable
 * insert hints key on (src/store/README.md, The write path): each group's
 * new entry is put next to its previous one instead of searched for from
 * the top of the skip list. A retention range delete starts at the bare
 * 16-byte tag, a key shorter than the hint prefix, so RocksDB 7.8 gives it
 * no hint: that version keys the range-deletion table's hints in the same
 * map as the entries', and a hint of the other skip list corrupts it. Two
 * ids with one tag would need a SHA-256 collision in 120 bits; the length
 * byte and the id that follow the tag still keep every group's keys one
 * contiguous range, and make 16 + 1 + n bytes a prefix that is a function
 * of the key alone: the prefix extractor and its bloom filters work on it.
 * Big-endian seq makes byte order equal seq order.
 *
 * format 2 history key (read only by the migration): [n][group id][seq BE]
 *
 * member key (families `reads` and `user_groups`):
 *   [1 byte: user length u][u bytes: user][1 byte: group id length n][n bytes: group id]
 *
 * One user's keys are one contiguous range (the length byte again), so the
 * groups of a user are one prefix scan, and both families sort a user's
 * groups alike, so they can be read side by side.
 */
#ifndef RC_STORE_ROCKS_H
#define RC_STORE_ROCKS_H

#include <rocksdb/c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "store/store.h"


#define RC_STORE_SEQ_BYTES 8u
#define RC_STORE_TAG_BYTES RC_PERSIST_TAG_BYTES /* the group tag that starts a history key (16) */
#define RC_STORE_HINT_BYTES (RC_STORE_TAG_BYTES + 1u) /* tag and length byte: the memtable hint prefix */
/* Bytes of a history key before its seq: tag, length byte, id. */
#define RC_STORE_HISTORY_PREFIX_LEN(g_len) (RC_STORE_TAG_BYTES + 1u + (g_len))
#define RC_STORE_KEY_MAX (RC_STORE_HISTORY_PREFIX_LEN(RC_STORE_GROUP_MAX) + RC_STORE_SEQ_BYTES)
#define RC_STORE_USER_MAX 255u
#define RC_STORE_MEMBER_KEY_MAX (1u + RC_STORE_USER_MAX + 1u + RC_STORE_GROUP_MAX)
/* An exclusive upper bound just above key(g, seq): key(g, seq) + one 0 byte. */
#define RC_STORE_BOUND_MAX (RC_STORE_KEY_MAX + 1u)

enum rc_store_cf {
    RC_CF_DEFAULT = 0, /* required by RocksDB, unused */
    RC_CF_GROUPS,      /* group id -> snapshot map */
    RC_CF_HISTORY,     /* history key -> msg map */
    RC_CF_SPOOL,       /* dead letters waiting for Kafka (src/dlq) */
    RC_CF_META,        /* "format" -> big-endian u32 RC_PERSIST_FORMAT */
    RC_CF_READS,       /* member key -> read cursor, u64 BE (format 2) */
    RC_CF_USER_GROUPS, /* member key -> empty: the groups a user is a stored member of (format 2) */
    RC_CF_TICKS,       /* u64 BE -> tick record: format 4's tick log, folded and emptied when opened (ticklog.c) */
    RC_CF_COUNT
};

extern const char *const rc_store_cf_names[RC_CF_COUNT];

typedef struct rc_ticklog rc_ticklog;

/* The tick log's segment files (format 5, ticklog.c), under the data directory. */
#define RC_STORE_TICKLOG_DIR "ticklog"

struct rc_persist {
    rocksdb_t *db;
    rocksdb_column_family_handle_t *cf[RC_CF_COUNT];
    rocksdb_column_family_handle_t **extra_cf; /* unknown families a newer build left (opened, unused) */
    size_t n_extra_cf;
    rocksdb_options_t *db_opts;                /* kept: it owns the statistics object */
    rocksdb_options_t *cf_opts[RC_CF_COUNT];
    rocksdb_cache_t *cache;
    rocksdb_writeoptions_t *wopts[3];          /* indexed by rc_durability */
    bool readonly;
    bool added_families;                       /* the families format 2 added were missing and got created */
    bool added_ticks;                          /* `ticks` (format 4) was missing and got created */
    bool from_v4;                              /* format 4, opened read-write: marked 5 once the tick log is read */
    rc_ticklog *tl;                            /* the tick log's table and order (ticklog.c) */
    char *dir;
};

/* A u64 as RC_STORE_SEQ_BYTES big-endian bytes, so byte order is number
 * order: the seq of a history key, the place of a spool record. */
static inline void rc_store_be64_put(char *out, uint64_t v)
{
    for (unsigned i = 0; i < RC_STORE_SEQ_BYTES; i++)
        out[i] = (char)(uint8_t)(v >> (8 * (RC_STORE_SEQ_BYTES - 1 - i)));
}

static inline uint64_t rc_store_be64_get(const char *in)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < RC_STORE_SEQ_BYTES; i++)
        v = (v << 8) | (uint8_t)in[i];
    return v;
}

/* Writes g's tag, RC_STORE_TAG_BYTES bytes, into out: the start of its
 * history keys, and alone the start of its retention range deletes. */
void rc_store_history_tag(char *out, const char *g, uint32_t g_len);

/* Writes the history key of (g, seq) into out (RC_STORE_KEY_MAX bytes),
 * with g's tag as rc_store_history_tag computed it; returns its length.
 * g_len must be 1..RC_STORE_GROUP_MAX. */
static inline size_t rc_store_history_key_tagged(char *out, const uint8_t *tag, const char *g, uint32_t g_len,
                                                 uint64_t seq)
{
    memcpy(out, tag, RC_STORE_TAG_BYTES);
    out[RC_STORE_TAG_BYTES] = (char)(uint8_t)g_len;
    memcpy(out + RC_STORE_TAG_BYTES + 1, g, g_len);
    rc_store_be64_put(out + RC_STORE_HISTORY_PREFIX_LEN(g_len), seq);
    return RC_STORE_HISTORY_PREFIX_LEN(g_len) + RC_STORE_SEQ_BYTES;
}

/* The same, computing the tag. */
static inline size_t rc_store_history_key(char *out, const char *g, uint32_t g_len, uint64_t seq)
{
    uint8_t tag[RC_STORE_TAG_BYTES];
    rc_store_history_tag((char *)tag, g, g_len);
    return rc_store_history_key_tagged(out, tag, g, g_len, seq);
}

/* Length of a format 2 history key of g_len id bytes. */
#define RC_STORE_V2_KEY_LEN(g_len) (1u + (g_len) + RC_STORE_SEQ_BYTES)

/* Writes the member key of (user, g) into out (RC_STORE_MEMBER_KEY_MAX
 * bytes); returns its length. Both lengths must be 1..255. */
static inline size_t rc_store_member_key(char *out, const char *user, uint32_t user_len, const char *g, uint32_t g_len)
{
    out[0] = (char)(uint8_t)user_len;
    for (uint32_t i = 0; i < user_len; i++)
        out[1 + i] = user[i];
    out[1 + user_len] = (char)(uint8_t)g_len;
    for (uint32_t i = 0; i < g_len; i++)
        out[2 + user_len + i] = g[i];
    return 2u + user_len + g_len;
}

/* The seq of a history key whose group part is prefix_len bytes long. */
static inline uint64_t rc_store_history_seq(const char *key, size_t prefix_len)
{
    return rc_store_be64_get(key + prefix_len);
}

/* Length of the group part (tag, length byte, id) of a well-formed history key. */
static inline size_t rc_store_history_prefix_len(const char *key)
{
    return RC_STORE_HISTORY_PREFIX_LEN((uint8_t)key[RC_STORE_TAG_BYTES]);
}

/* ---- history records (format 4) ----
 *
 * A history value is either one `msg` map (every format 3 value, whose key
 * carries its seq) or a record of several messages: RC_STORE_RECORD_MARK
 * (0xc1, a byte MessagePack never uses, so no map starts with it), then
 * entries [seq u64 BE][length u32 BE][msg map], seqs rising; its key carries
 * the newest seq, so a seek to key(g, s) lands on the record holding s.
 * The tick log (ticklog.c) writes records of at most RC_STORE_RECORD_MAX_MSGS
 * messages and RC_STORE_RECORD_MAX_BYTES bytes (one larger message alone). */
#define RC_STORE_RECORD_MARK 0xc1u
/* key(g, 0) holds g's trim mark: the `before` of its latest retention
 * delete, u64 BE. The delete removes the records wholly below it; reads
 * skip the older messages of the record that holds it. */
#define RC_STORE_TRIM_MARK_SEQ 0u
#define RC_STORE_ENTRY_HDR 12u            /* seq u64 and length u32 before each map */
#define RC_STORE_RECORD_MAX_MSGS 256u     /* a tick's worth: RocksDB's CPU a message stops falling near it */
#define RC_STORE_RECORD_MAX_BYTES (32u * 1024u) /* what one read of a message decompresses at most, roughly */

static inline void rc_store_entry_put(uint8_t *out, uint64_t seq, uint32_t len)
{
    rc_store_be64_put((char *)out, seq);
    for (unsigned i = 0; i < 4; i++)
        out[RC_STORE_SEQ_BYTES + i] = (uint8_t)(len >> (8 * (3 - i)));
}

static inline void rc_store_entry_get(const uint8_t *in, uint64_t *seq, uint32_t *len)
{
    *seq = rc_store_be64_get((const char *)in);
    uint32_t v = 0;
    for (unsigned i = 0; i < 4; i++)
        v = (v << 8) | in[RC_STORE_SEQ_BYTES + i];
    *len = v;
}

/* Calls fn for each message of the history value v stored under a key of
 * seq key_seq: 1 when fn stopped, 0 when done, -1 when v is not well formed
 * (entries cut short, seqs not rising, or a newest seq other than key_seq). */
typedef int (*rc_store_entry_fn)(void *ud, uint64_t seq, const uint8_t *map, uint32_t len);
int rc_store_record_each(uint64_t key_seq, const char *v, size_t vlen, rc_store_entry_fn fn, void *ud);

/* ---- the tick log (ticklog.c) ---- */

/* A batch's messages and retention deletes, as its tick record. */
typedef struct rc_ticklog_ops {
    uint8_t *buf;       /* the tick record: version byte, then ops */
    size_t len, cap;
    size_t put_bytes;   /* entry bytes of its messages (what the table grows by); 0: none */
    uint32_t *trims;    /* [n_trims]: where its retention deletes are in buf */
    uint32_t n_trims, cap_trims;
} rc_ticklog_ops;

#define RC_TICKLOG_SPARE_MAX (1024u * 1024u) /* a tick record buffer larger than this is not kept for a later batch */

/* The tick log's counters (rc_store_stats, /metrics). */
typedef struct rc_ticklog_stats {
    uint64_t records;        /* tick records written */
    uint64_t folds;          /* folds written */
    uint64_t segments_folded; /* segment files folded and deleted */
    uint64_t folded_records; /* history records the folds wrote */
    uint64_t folded_msgs;    /* messages they held */
    uint64_t trims_written;  /* retention deletes that went to RocksDB (the others found nothing there to delete) */
    size_t entries;          /* messages in the table now */
    size_t held;             /* the table's memory: groups, their entry pointers, and format 4's tick records read at open */
    size_t groups;           /* groups in the table now */
    size_t fold_batch;       /* bytes of the largest piece of a fold: the kept fold batch holds at least that much */
    size_t segments;         /* segment files now */
    size_t disk;             /* their bytes */
} rc_ticklog_stats;

/* A copy of one group's table entries (rc_ticklog_copy). */
typedef struct rc_ticklog_tail {
    uint8_t *buf;   /* entries, malloc'd; NULL when n is 0 */
    size_t len;
    uint32_t n;
    uint64_t first; /* the group's oldest seq in the table, UINT64_MAX when it has none */
} rc_ticklog_tail;

rc_ticklog *rc_ticklog_new(size_t log_bytes, size_t sync_bytes);
void rc_ticklog_free(rc_ticklog *t);
int rc_ticklog_ops_put(rc_ticklog_ops *o, const char *prefix, size_t prefix_len, uint64_t seq, const uint8_t *map,
                       uint32_t len);
int rc_ticklog_ops_trim(rc_ticklog_ops *o, const char *prefix, size_t prefix_len, uint64_t before);
void rc_ticklog_ops_free(rc_ticklog_ops *o);
/* A buffer for a batch's tick record (one an earlier batch gave back, or an
 * empty one), and back when the batch is done. */
rc_ticklog_ops rc_ticklog_ops_take(rc_persist *p);
void rc_ticklog_ops_give(rc_persist *p, rc_ticklog_ops *o);
/* Appends the tick record of ops and wb to the log (folding its oldest
 * segment first when the log is full), adds its messages to the table and
 * writes wb to RocksDB; without ops, writes wb alone. 0, or -1 with a
 * message when nothing was written. ops keeps its buffer. */
int rc_ticklog_commit(rc_persist *p, rocksdb_writebatch_t *wb, rc_ticklog_ops *ops, rc_durability d, char *err,
                      size_t errlen);
/* Reads the log's segments into the table (and format 4's tick records,
 * which a read-write open folds at once); read-write, writes to RocksDB the
 * batches of records it may lack, and cuts off a record a crash cut short. */
int rc_ticklog_open(rc_persist *p, char *err, size_t errlen);
/* Folds every segment and deletes its file (tests, tools). */
int rc_ticklog_fold_all(rc_persist *p, char *err, size_t errlen);
/* Copies the group's table entries with from <= seq <= to, at most limit;
 * -1 out of memory. */
int rc_ticklog_copy(rc_persist *p, const char *prefix, size_t prefix_len, uint64_t from, uint64_t to, uint32_t limit,
                    rc_ticklog_tail *out);
/* The group's oldest and newest seq in the table; false when it has none there. */
bool rc_ticklog_bounds(rc_persist *p, const char *prefix, size_t prefix_len, uint64_t *oldest, uint64_t *newest);
void rc_ticklog_stats_read(rc_persist *p, rc_ticklog_stats *s);
/* Tests only: called after each piece of a fold but its last (NULL: nothing),
 * after a segment's whole fold, before its file is deleted, and the size of
 * a piece (FOLD_PIECE_BYTES, 1 MiB). */
extern void (*rc_ticklog_after_piece)(void);
extern void (*rc_ticklog_after_fold)(void);
extern size_t rc_ticklog_piece_bytes;

/* The WAL's checksum (crc32c.c): RocksDB's crc32c::Extend, replaced in the
 * executable by the CPU's crc32 instruction where it has one. */
typedef uint32_t (*rc_store_crc32c_fn)(uint32_t crc, const char *buf, size_t n);
/* RocksDB's `uint32_t rocksdb::crc32c::Extend(uint32_t, const char *, size_t)`. */
#define RC_STORE_CRC32C_SYMBOL "_ZN7rocksdb6crc32c6ExtendEjPKcm"
/* CRC32C of n bytes continued from crc (0 to start), RocksDB's convention. */
uint32_t rc_store_crc32c(uint32_t crc, const void *buf, size_t n);
/* What computes it: "sse4.2", "library" (librocksdb's own) or "bitwise". */
const char *rc_store_crc32c_impl(void);
/* librocksdb's own Extend, the one this replaces; NULL if not found. */
rc_store_crc32c_fn rc_store_crc32c_library(void);
/* The last fallback, a bit at a time (also the tests' reference). */
uint32_t rc_store_crc32c_bitwise(uint32_t crc, const char *buf, size_t n);

/* "data_dir <dir>: <what>" into err; returns -1 for `return store_fail(...)`. */
int rc_store_fail(char *err, size_t errlen, const char *dir, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* An iterator's error, if it met one, as "data_dir <dir>: <what>: <error>"
 * into err: -1; 0 when it met none. */
int rc_store_iter_error(rocksdb_iterator_t *it, const char *dir, const char *what, char *err, size_t errlen);

#endif
