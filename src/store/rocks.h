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
    RC_CF_COUNT
};

extern const char *const rc_store_cf_names[RC_CF_COUNT];

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

/* "data_dir <dir>: <what>" into err; returns -1 for `return store_fail(...)`. */
int rc_store_fail(char *err, size_t errlen, const char *dir, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* An iterator's error, if it met one, as "data_dir <dir>: <what>: <error>"
 * into err: -1; 0 when it met none. */
int rc_store_iter_error(rocksdb_iterator_t *it, const char *dir, const char *what, char *err, size_t errlen);

#endif
