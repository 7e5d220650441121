/*
 * The RocksDB implementation of core's persistence interface (core/persist.h,
 * ARCHITECTURE §6). One rc_persist is one open data directory: a RocksDB database
 * with the column families `groups`, `history`, `spool`, `meta`, `reads`,
 * `user_groups` and `ticks` (plus RocksDB's own `default`, unused), and the
 * tick log's segment files in its `ticklog` directory (ticklog.c). The handle is thread-safe: every shard
 * may use the same one, each with its own batches.
 *
 * Opening never starts silently empty: only a missing or empty directory is
 * initialised; anything else must be a RocksDB database of this build's
 * format (RC_PERSIST_FORMAT), or the open fails with a message naming the
 * directory and the cause. Tuning and the on-disk layout are described in
 * src/store/README.md.
 */
#ifndef RC_STORE_STORE_H
#define RC_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/persist.h"
#include "core/spool.h"

#define RC_STORE_GROUP_MAX 255u /* longest group id the history key can hold (one length byte) */

/* RocksDB tuning, sized for a small (2-core) server. rc_store_options_default
 * fills in the values in brackets; see src/store/README.md for the why. */
typedef struct rc_store_options {
    uint32_t write_buffer_mb;        /* history and ticks memtables, half each, MB [64] */
    uint32_t small_write_buffer_mb;  /* memtable size of groups, spool, meta, MB [8] */
    uint32_t block_cache_mb;         /* shared LRU block cache, MB [8]; the server sets its block_cache_mb */
    uint32_t max_background_jobs;    /* flush + compaction threads [2] */
    uint32_t bytes_per_sync_kb;      /* incremental fsync of SST and WAL writes, KB [1024] */
    uint32_t bloom_bits_per_key;     /* SST bloom filter bits per key (prefix bloom for history) [10] */
    double memtable_prefix_bloom;    /* memtable prefix bloom, fraction of write buffer [0.05] */
    int max_open_files;              /* SST file handles kept open, -1 = all [512] */
    bool compression;                /* lz4, and zstd for the bottommost level [true] */
    bool statistics;                 /* RocksDB statistics for rc_store_stats [true] */
    uint32_t tick_log_mb;            /* the tick log's segment files on disk before the oldest is folded into history records,
                                        MB, RC_STORE_TICK_LOG_MB_MIN..RC_STORE_TICK_LOG_MB_MAX [512] */
    uint32_t l0_compaction_files;    /* history files in level 0 that start their compaction into the level below,
                                        RC_STORE_L0_FILES_MIN..RC_STORE_L0_FILES_MAX [12] */
} rc_store_options;

#define RC_STORE_TICK_LOG_MB_MIN 1u
#define RC_STORE_TICK_LOG_MB_MAX 65536u

/* Bounds of l0_compaction_files. Writes slow down RC_STORE_L0_SLOWDOWN_MARGIN
 * files above it and stop RC_STORE_L0_STOP_MARGIN files above it (RocksDB's
 * own 20 and 36 for its default of 4, kept for the default of 12). */
#define RC_STORE_L0_FILES_MIN 2u
#define RC_STORE_L0_FILES_MAX 64u
#define RC_STORE_L0_SLOWDOWN_MARGIN 8u
#define RC_STORE_L0_STOP_MARGIN 24u

void rc_store_options_default(rc_store_options *opt);

/* Opens (or, when the directory is missing or empty, creates) the data
 * directory. opt NULL means the defaults. NULL with a message in err on
 * failure: another format version, corruption, missing files, permissions,
 * or a non-empty directory that is not a RocksDB database. */
rc_persist *rc_store_open(const char *dir, const rc_store_options *opt, char *err, size_t errlen);

/* Opens an existing data directory read-only (inspection tools; may run next
 * to a live server). Commits on the handle fail. NULL with a message in err. */
rc_persist *rc_store_open_readonly(const char *dir, char *err, size_t errlen);

/* Closes the database and frees the handle; no batch may still be open.
 * Writes made with durability none are flushed to SST files by RocksDB here;
 * the tick log stays as it is, for the next open.
 * NULL is a no-op. */
void rc_store_close(rc_persist *p);

/* The function table core calls through. Where core/persist.h leaves room:
 * - put_msg, put_group, trim_before with a group id outside
 *   1..RC_STORE_GROUP_MAX bytes (or after batch_begin returned NULL) poison
 *   the batch: batch_commit then fails and writes none of it.
 * - batch_commit frees the batch in every case; an empty batch is not written.
 * - load_groups reports groups in byte order of their ids; a callback
 *   returning non-zero stops it and it returns -1 (recovery incomplete).
 *   A group with history but no snapshot is not reported: a group's first
 *   batch must carry its snapshot. A malformed history key fails it (-1,
 *   "corrupt" in err) before any group is reported.
 * - scan with limit 0 or from > to calls fn for nothing and returns 0.
 * - the group and map pointers handed to callbacks are valid only during
 *   the call: copy what you keep. */
const rc_persist_ops *rc_store_ops(void);

/* The dead-letter spool (core/spool.h) on the `spool` column family; valid
 * until rc_store_close. Writes go through the WAL whatever the durability. */
rc_spool rc_store_spool(rc_persist *p);

/* Writes a human-readable report into buf (NUL-terminated, truncated to
 * len - 1): per column family key estimates, SST and memtable sizes, block
 * cache usage, RocksDB's `rocksdb.stats` and, when enabled, its statistics.
 * Returns the length the full report has (snprintf style: >= len means it
 * was truncated), or -1 when p is NULL. */
int rc_store_stats(rc_persist *p, char *buf, size_t len);

/* What RocksDB holds in memory now, in bytes (for /metrics). */
typedef struct rc_store_memory {
    uint64_t memtables;      /* every family's memtables, active and not yet flushed */
    uint64_t table_readers;  /* open SST files' readers, without what sits in the block cache */
    uint64_t block_cache;    /* the shared block cache's usage (data, index and filter blocks) */
    uint64_t block_cache_pinned;
    uint64_t block_cache_capacity; /* block_cache_mb */
    uint64_t tick_log;       /* the tick log's table (8 bytes a message in it, and its groups) and the kept batch of a fold's pieces (1-2 MiB once a fold ran) */
    uint64_t tick_log_disk;  /* not memory: the tick log's segment files (about tick_log_mb) */
} rc_store_memory;

/* Fills m; -1 without a store. Safe next to the shard threads' writes. */
int rc_store_memory_read(rc_persist *p, rc_store_memory *m);

/* The history family's SST files in level 0 now (compaction's backlog:
 * l0_compaction_files starts a compaction); -1 without a store. */
int rc_store_l0_files(rc_persist *p, uint64_t *files);

#endif
