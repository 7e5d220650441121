/*
 * Persistence as core sees it: a small interface that core defines and
 * src/store implements with RocksDB (ARCHITECTURE §6). core never includes a
 * database header; a shard holds an rc_persist and calls these functions.
 *
 * Write path: a shard gathers one tick's writes in a batch (history entries,
 * group snapshots, retention deletes) and commits it once: group commit.
 * Read path: recovery at start (every group's snapshot and newest history
 * seq) and history scans for `join since` and `hist`.
 *
 * Every function returns 0 on success or -1 with a human message in err.
 */
#ifndef RC_CORE_PERSIST_H
#define RC_CORE_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_PERSIST_FORMAT 5u /* on-disk format version, stored in the meta column family */
/* Format 1 had no `reads` and `user_groups` families; format 2 keyed history
 * without the group tag; format 3 had no tick log and one message per
 * history value; format 4 kept the tick log in the `ticks` family instead of
 * segment files. Opening any of them read-write migrates it
 * (src/store/README.md, Opening). */
#define RC_PERSIST_FORMAT_V1 1u
#define RC_PERSIST_FORMAT_V2 2u
#define RC_PERSIST_FORMAT_V3 3u
#define RC_PERSIST_FORMAT_V4 4u
/* What the store derives from a group id for the keys of its history
 * (src/store/README.md, On disk): `group_tag` computes it, the caller keeps
 * it with the group and hands it to every put_msg and trim_before, so a
 * message costs no hash of its group id. */
#define RC_PERSIST_TAG_BYTES 16u

typedef enum rc_durability {
    RC_DURABILITY_NONE = 0,  /* write behind: no WAL; a crash may lose the last moments */
    RC_DURABILITY_BATCH = 1, /* the batch reaches the WAL before acks leave (no fsync) */
    RC_DURABILITY_SYNC = 2,  /* WAL fsync before acks leave */
} rc_durability;

typedef struct rc_persist rc_persist;
typedef struct rc_persist_batch rc_persist_batch;

/* One group's snapshot as recovery hands it over. The snapshot map is the
 * MessagePack value of the `groups` column family (ARCHITECTURE §6: v,
 * version, last_seq, members, created, updated). */
typedef struct rc_persist_group {
    const char *g;
    uint32_t g_len;
    const uint8_t *snapshot;
    uint32_t snapshot_len;
    uint64_t newest_seq;  /* newest seq in history, 0 when none: history wins over last_seq */
    uint64_t oldest_seq;  /* oldest retained seq, 0 when none */
} rc_persist_group;

typedef int (*rc_persist_group_fn)(void *ud, const rc_persist_group *grp);

/* One group a user is a stored member of, as the per-user index gives it
 * (ARCHITECTURE §6.2): the user's read cursor and the group's newest stored
 * message. */
typedef struct rc_persist_member_group {
    const char *g;
    uint32_t g_len;
    uint64_t read;        /* the user's read cursor, 0 when none */
    uint64_t seq;         /* newest seq in history, 0 when none */
    const uint8_t *map;   /* that message's `msg` map (no length prefix), NULL when none */
    uint32_t map_len;
} rc_persist_member_group;
typedef int (*rc_persist_member_fn)(void *ud, const rc_persist_member_group *mg);
/* A history entry: the stored `msg` map (no length prefix). Return non-zero to stop. */
typedef int (*rc_persist_msg_fn)(void *ud, uint64_t seq, const uint8_t *map, uint32_t len);

typedef struct rc_persist_ops {
    rc_persist_batch *(*batch_begin)(rc_persist *p);
    /* g's tag, RC_PERSIST_TAG_BYTES bytes, into tag. */
    void (*group_tag)(const char *g, uint32_t g_len, uint8_t *tag);
    /* tag: group_tag(g) as computed before, or NULL to have it computed. */
    void (*put_msg)(rc_persist_batch *b, const char *g, uint32_t g_len, const uint8_t *tag, uint64_t seq,
                    const uint8_t *map, uint32_t len);
    void (*put_group)(rc_persist_batch *b, const char *g, uint32_t g_len, const uint8_t *snapshot, uint32_t len);
    /* Deletes history entries of g with seq < before (retention). */
    void (*trim_before)(rc_persist_batch *b, const char *g, uint32_t g_len, const uint8_t *tag, uint64_t before);
    /* Writes the batch atomically with the given durability and frees it. */
    int (*batch_commit)(rc_persist *p, rc_persist_batch *b, rc_durability d, char *err, size_t errlen);
    void (*batch_abort)(rc_persist_batch *b);
    /* Recovery: calls fn for every stored group. */
    int (*load_groups)(rc_persist *p, rc_persist_group_fn fn, void *ud, char *err, size_t errlen);
    /* Calls fn for history entries of g with from <= seq <= to, ascending, at most limit. */
    int (*scan)(rc_persist *p, const char *g, uint32_t g_len, uint64_t from, uint64_t to, uint32_t limit,
                rc_persist_msg_fn fn, void *ud, char *err, size_t errlen);
    /* The per-user membership index: user is (member) or is no longer
     * (!member) a stored member of g. Goes in the batch of the group's
     * membership change. */
    void (*put_member)(rc_persist_batch *b, const char *g, uint32_t g_len, const char *user, uint32_t user_len,
                       bool member);
    /* The user's read cursor of g. */
    void (*put_read)(rc_persist_batch *b, const char *g, uint32_t g_len, const char *user, uint32_t user_len,
                     uint64_t seq);
    /* The stored read cursor of (g, user) in *seq, 0 when none. */
    int (*get_read)(rc_persist *p, const char *g, uint32_t g_len, const char *user, uint32_t user_len, uint64_t *seq,
                    char *err, size_t errlen);
    /* Calls fn for each group user is a stored member of (one prefix scan
     * of the index), in byte order of the ids, at most max; *more says
     * that there were more. */
    int (*user_groups)(rc_persist *p, const char *user, uint32_t user_len, uint32_t max, rc_persist_member_fn fn,
                       void *ud, bool *more, char *err, size_t errlen);
} rc_persist_ops;

#endif
