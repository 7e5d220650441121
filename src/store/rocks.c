/*
 * Opening, tuning and closing the RocksDB data directory, the on-disk format
 * marker, and the statistics report.
 *
 * The rule that shapes rc_store_open: a server must never start silently
 * empty on top of data it failed to read. So only a missing or empty
 * directory is initialised. A directory holding a RocksDB database (it has a
 * CURRENT file) is opened without create_if_missing, must carry all of our
 * column families and the format marker of this build; everything else
 * (unrelated files, a corrupt or unreadable database, another format) is an
 * error naming the directory and the cause.
 */
#define _GNU_SOURCE
#include "store/rocks.h"

#include <dirent.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/group.h"
#include "core/log.h"
#include "core/snapshot.h"

#define MB (1024u * 1024u)
#define KB 1024u
#define FORMAT_KEY "format"
#define FORMAT_BYTES 4u
#define LOG_FILE_MAX_MB 16u     /* RocksDB's own LOG file, rotated at this size */
#define LOG_FILES_KEPT 5u       /* old LOG files kept */
#define WRITE_BUFFERS 3         /* memtables per family: one active, two flushing */
#define METADATA_BLOCK_BYTES 4096u /* index and filter partition size (partitioned index and filters) */
#define PREFIX_EXTRACTOR_NAME "ringcast.history.group.v2" /* v1: format 2's keys, without the tag */
/* Memtable insert hints by tag and length byte (RC_STORE_HINT_BYTES,
 * rocks.h): not in RocksDB's C API but in its options syntax. */
#define HINT_OPTION "memtable_insert_with_hint_prefix_extractor=fixed:17"
#define NOT_LINKED "not linked with the binary" /* RocksDB's message for a missing compression library */

const char *const rc_store_cf_names[RC_CF_COUNT] = {
    [RC_CF_DEFAULT] = "default", [RC_CF_GROUPS] = "groups", [RC_CF_HISTORY] = "history",
    [RC_CF_SPOOL] = "spool",     [RC_CF_META] = "meta",    [RC_CF_READS] = "reads",
    [RC_CF_USER_GROUPS] = "user_groups", [RC_CF_TICKS] = "ticks",
};

/* The newest format that lacked family cf (0: every format has it) and the
 * flag that says it was created at this open: `reads` and `user_groups`
 * came with format 2 (migrate_v1 fills them), `ticks` with format 4
 * (empty until the first tick). Created when such a directory is opened
 * read-write. */
static uint32_t lacked_by(rc_persist *p, int cf, bool **added)
{
    if (cf == RC_CF_READS || cf == RC_CF_USER_GROUPS) {
        *added = &p->added_families;
        return RC_PERSIST_FORMAT_V1;
    }
    if (cf == RC_CF_TICKS) {
        *added = &p->added_ticks;
        return RC_PERSIST_FORMAT_V3;
    }
    *added = NULL;
    return 0;
}

#define MIGRATE_BATCH 4096u /* entries per write while migrating */
#define MIGRATE_BATCH_BYTES (4u * MB) /* bytes per write while migrating */

/* Compression, best first; open falls back when the library lacks one. */
enum compression_profile { COMPRESS_LZ4_ZSTD, COMPRESS_LZ4, COMPRESS_NONE, COMPRESS_PROFILES };

/* What rc_store_open finds at the data directory path. */
enum dir_state { DIR_MISSING, DIR_EMPTY, DIR_DATABASE };

void rc_store_options_default(rc_store_options *opt)
{
    *opt = (rc_store_options){
        .write_buffer_mb = 64,
        .small_write_buffer_mb = 8,
        .block_cache_mb = 8, /* the server's block_cache_mb: index and filter blocks, reads at recovery (README, Tuning) */
        .max_background_jobs = 2,
        .bytes_per_sync_kb = 1024,
        .bloom_bits_per_key = 10,
        .memtable_prefix_bloom = 0.05,
        .max_open_files = 512,
        .compression = true,
        .statistics = true,
        .tick_log_mb = 512, /* README, The tick log: more than a flood's retained messages */
        .l0_compaction_files = 12, /* README, Tuning: the level below rewritten a third as often as with RocksDB's 4 */
    };
}

int rc_store_fail(char *err, size_t errlen, const char *dir, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return -1;
    int n = snprintf(err, errlen, "data_dir %s: ", dir ? dir : "(null)");
    if (n >= 0 && (size_t)n < errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int rc_store_iter_error(rocksdb_iterator_t *it, const char *dir, const char *what, char *err, size_t errlen)
{
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    if (!rerr)
        return 0;
    rc_store_fail(err, errlen, dir, "%s: %s", what, rerr);
    rocksdb_free(rerr);
    return -1;
}

/* Reports a RocksDB error string (and frees it). */
static int fail_rocks(char *err, size_t errlen, const char *dir, const char *what, char *rerr)
{
    rc_store_fail(err, errlen, dir, "%s: %s", what, rerr ? rerr : "unknown RocksDB error");
    rocksdb_free(rerr);
    return -1;
}

/* ---- the history tag: SHA-256 of the group id (rocks.h) ---- */

/* OpenSSL 3 looks the algorithm up on every one-shot SHA256() call (about
 * 1 µs, more than the digest); fetched once, with a context per thread
 * reused for every key (about 0.2 µs). */
static pthread_once_t tag_once = PTHREAD_ONCE_INIT;
static EVP_MD *tag_md;
static pthread_key_t tag_ctx_key; /* each thread's EVP_MD_CTX, freed when the thread ends */

static void tag_ctx_free(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void tag_init(void)
{
    tag_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (pthread_key_create(&tag_ctx_key, tag_ctx_free) != 0)
        tag_md = NULL; /* every tag takes the slow path */
}

static bool tag_digest(unsigned char *md, const char *g, uint32_t g_len)
{
    if (pthread_once(&tag_once, tag_init) != 0 || !tag_md)
        return false;
    EVP_MD_CTX *c = pthread_getspecific(tag_ctx_key);
    if (!c) {
        c = EVP_MD_CTX_new();
        if (!c || pthread_setspecific(tag_ctx_key, c) != 0) {
            EVP_MD_CTX_free(c);
            return false;
        }
    }
    unsigned n = 0;
    return EVP_DigestInit_ex(c, tag_md, NULL) && EVP_DigestUpdate(c, g, g_len) && EVP_DigestFinal_ex(c, md, &n) &&
           n >= RC_STORE_TAG_BYTES;
}

void rc_store_history_tag(char *out, const char *g, uint32_t g_len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    if (!tag_digest(md, g, g_len) && !SHA256((const unsigned char *)g, g_len, md)) {
        /* No key can be made: writing under a wrong one would lose history. */
        RC_LOG_ERROR("store", "event=tag_failed msg=\"SHA-256 unavailable (out of memory?): stopping\"");
        abort();
    }
    md[0] = 0; /* format 3 keys start with 0 (rocks.h) */
    memcpy(out, md, RC_STORE_TAG_BYTES);
}

/* ---- the history prefix extractor: tag, length byte and group id (rocks.h) ---- */

static char *history_prefix(void *state, const char *key, size_t len, size_t *dst_len)
{
    (void)state;
    (void)len; /* in_domain guarantees len >= 1 + key[0] */
    *dst_len = rc_store_history_prefix_len(key);
    return (char *)key;
}

static unsigned char history_in_domain(void *state, const char *key, size_t len)
{
    (void)state;
    return len > RC_STORE_TAG_BYTES && len >= rc_store_history_prefix_len(key);
}

static unsigned char history_in_range(void *state, const char *key, size_t len)
{
    (void)state, (void)key, (void)len;
    return 0; /* deprecated by RocksDB, never consulted */
}

static const char *history_prefix_name(void *state)
{
    (void)state;
    return PREFIX_EXTRACTOR_NAME; /* stored in SST properties: change it with the key layout */
}

static void history_prefix_free(void *state)
{
    (void)state; /* stateless */
}

/* ---- tuning ---- */

static void set_compression(rocksdb_options_t *o, enum compression_profile cp)
{
    static const int level[COMPRESS_PROFILES] = { rocksdb_lz4_compression, rocksdb_lz4_compression,
                                                  rocksdb_no_compression };
    static const int bottom[COMPRESS_PROFILES] = { rocksdb_zstd_compression, rocksdb_lz4_compression,
                                                   rocksdb_no_compression };
    rocksdb_options_set_compression(o, level[cp]);
    rocksdb_options_set_bottommost_compression(o, bottom[cp]);
}

/* New options whose memtable puts each history entry with the hint of its
 * group tag (rocks.h): the entry goes right after the group's previous one,
 * found in a step or two, where a search from the top of a skip list of a
 * few hundred thousand entries costs a cache miss per level; on the
 * flood fan-out this halved the writers' CPU per message (bench/RESULTS.md,
 * Cheaper durable writes). Hints apply to writes RocksDB does not insert
 * concurrently, hence allow_concurrent_memtable_write off (db_options). A
 * library that refused the option would only cost speed: logged. */
_Static_assert(RC_STORE_HINT_BYTES == 17, "HINT_OPTION names the hint prefix length");

static rocksdb_options_t *hinted_options(void)
{
    rocksdb_options_t *base = rocksdb_options_create(), *opts = rocksdb_options_create();
    char *rerr = NULL;
    rocksdb_get_options_from_string(base, HINT_OPTION, opts, &rerr);
    rocksdb_options_destroy(base);
    if (rerr) {
        RC_LOG_WARN("store", "event=memtable_hints_off err=\"%s\"", rerr);
        rocksdb_free(rerr);
        rocksdb_options_destroy(opts);
        opts = rocksdb_options_create();
    }
    return opts;
}

/* Options of one column family. Block cache and bloom filters for all; the
 * history family also gets the group prefix extractor with prefix blooms
 * (memtable and SST), and no whole-key filter: history is only ever read by
 * range, never by single key. */
static rocksdb_options_t *cf_options(const rc_store_options *o, rocksdb_cache_t *cache, enum rc_store_cf cf,
                                     enum compression_profile cp)
{
    bool history = cf == RC_CF_HISTORY;
    rocksdb_options_t *opts = history ? hinted_options() : rocksdb_options_create();
    /* The tick log takes every message once more, as fast as history, so
     * the two share write_buffer_mb half and half: with a smaller share
     * either would fill first and, with atomic flush, flush the other's
     * half-empty memtable with it. Folded tick records are range-deleted
     * before their memtable is flushed, so the flush drops them. */
    uint32_t wb_mb = o->small_write_buffer_mb;
    if (history || cf == RC_CF_TICKS)
        wb_mb = o->write_buffer_mb > 1 ? o->write_buffer_mb / 2 : 1;
    rocksdb_options_set_write_buffer_size(opts, (size_t)wb_mb * MB);
    rocksdb_options_set_max_write_buffer_number(opts, WRITE_BUFFERS);
    rocksdb_options_set_level_compaction_dynamic_level_bytes(opts, 1);
    set_compression(opts, cp);

    rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(t, cache);
    rocksdb_block_based_options_set_filter_policy(t, rocksdb_filterpolicy_create_bloom(o->bloom_bits_per_key));
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(t, 1);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks_with_high_priority(t, 1);
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(t, 1);
    /* Partitioned index and filters: a file's filter is cut into
     * METADATA_BLOCK_BYTES partitions under a small top-level index that
     * stays pinned. A whole filter grows with the keys of its file (1.2 MB
     * for a million groups) and is larger than one shard of a small block
     * cache, so it was read again, whole, by every seek: recovering a
     * million groups took 376 s; with partitions a seek reads at most one
     * partition (bench/RESULTS.md, Recovery). */
    rocksdb_block_based_options_set_index_type(t, rocksdb_block_based_table_index_type_two_level_index_search);
    rocksdb_block_based_options_set_partition_filters(t, 1);
    rocksdb_block_based_options_set_metadata_block_size(t, METADATA_BLOCK_BYTES);
    rocksdb_block_based_options_set_pin_top_level_index_and_filter(t, 1);
    rocksdb_block_based_options_set_whole_key_filtering(t, !history);
    rocksdb_options_set_block_based_table_factory(opts, t); /* copies t */
    rocksdb_block_based_options_destroy(t);

    if (history) {
        /* Every flushed history file spans the whole key space (group tags
         * are hashes), so each compaction out of level 0 rewrites the whole
         * level below, which retention keeps about one history_max per
         * group: waiting for 12 files instead of 4 rewrites it a third as
         * often (README, Tuning). Reads check every level-0 file's pinned
         * prefix filter first. */
        rocksdb_options_set_level0_file_num_compaction_trigger(opts, (int)o->l0_compaction_files);
        rocksdb_options_set_level0_slowdown_writes_trigger(opts,
                                                           (int)(o->l0_compaction_files + RC_STORE_L0_SLOWDOWN_MARGIN));
        rocksdb_options_set_level0_stop_writes_trigger(opts, (int)(o->l0_compaction_files + RC_STORE_L0_STOP_MARGIN));
        rocksdb_options_set_prefix_extractor(
            opts, rocksdb_slicetransform_create(NULL, history_prefix_free, history_prefix, history_in_domain,
                                                history_in_range, history_prefix_name)); /* opts owns it */
        rocksdb_options_set_memtable_prefix_bloom_size_ratio(opts, o->memtable_prefix_bloom);
    }
    return opts;
}

/* Database-wide options (they are also the options of `default`). */
static rocksdb_options_t *db_options(const rc_store_options *o, rocksdb_cache_t *cache, enum compression_profile cp)
{
    rocksdb_options_t *opts = cf_options(o, cache, RC_CF_DEFAULT, cp);
    rocksdb_options_set_max_background_jobs(opts, (int)o->max_background_jobs);
    rocksdb_options_set_bytes_per_sync(opts, (uint64_t)o->bytes_per_sync_kb * KB);
    rocksdb_options_set_wal_bytes_per_sync(opts, (uint64_t)o->bytes_per_sync_kb * KB);
    rocksdb_options_set_max_open_files(opts, o->max_open_files);
    /* With durability none the WAL is off; atomic flush keeps the families
     * consistent with each other on disk (no snapshot without its history). */
    rocksdb_options_set_atomic_flush(opts, 1);
    /* The shards' writes go into the memtables one write group member
     * after the other, so each uses the insert hints (hinted_options). */
    rocksdb_options_set_allow_concurrent_memtable_write(opts, 0);
    rocksdb_options_set_max_log_file_size(opts, (size_t)LOG_FILE_MAX_MB * MB);
    rocksdb_options_set_keep_log_file_num(opts, LOG_FILES_KEPT);
    if (o->statistics)
        rocksdb_options_enable_statistics(opts);
    return opts;
}

static int check_options(const rc_store_options *o, const char *dir, char *err, size_t errlen)
{
    if (o->write_buffer_mb == 0 || o->small_write_buffer_mb == 0 || o->block_cache_mb == 0)
        return rc_store_fail(err, errlen, dir, "store options: buffer and cache sizes must be at least 1 MB");
    if (o->max_background_jobs == 0 || o->bytes_per_sync_kb == 0)
        return rc_store_fail(err, errlen, dir, "store options: max_background_jobs and bytes_per_sync must be > 0");
    if (o->tick_log_mb < RC_STORE_TICK_LOG_MB_MIN || o->tick_log_mb > RC_STORE_TICK_LOG_MB_MAX)
        return rc_store_fail(err, errlen, dir, "store options: tick_log_mb must be in %u..%u", RC_STORE_TICK_LOG_MB_MIN,
                             RC_STORE_TICK_LOG_MB_MAX);
    if (o->l0_compaction_files < RC_STORE_L0_FILES_MIN || o->l0_compaction_files > RC_STORE_L0_FILES_MAX)
        return rc_store_fail(err, errlen, dir, "store options: l0_compaction_files must be in %u..%u",
                             RC_STORE_L0_FILES_MIN, RC_STORE_L0_FILES_MAX);
    if (o->memtable_prefix_bloom < 0 || o->memtable_prefix_bloom > 0.25)
        return rc_store_fail(err, errlen, dir, "store options: memtable_prefix_bloom must be in 0..0.25");
    return 0;
}

/* ---- handle lifetime ---- */

static void free_options(rc_persist *p)
{
    for (int i = 0; i < RC_CF_COUNT; i++) {
        if (p->cf_opts[i])
            rocksdb_options_destroy(p->cf_opts[i]);
        p->cf_opts[i] = NULL;
    }
    if (p->db_opts)
        rocksdb_options_destroy(p->db_opts);
    p->db_opts = NULL;
}

static void tune(rc_persist *p, const rc_store_options *o, enum compression_profile cp)
{
    free_options(p);
    p->db_opts = db_options(o, p->cache, cp);
    for (int i = 0; i < RC_CF_COUNT; i++)
        p->cf_opts[i] = i == RC_CF_DEFAULT ? NULL : cf_options(o, p->cache, (enum rc_store_cf)i, cp);
}

static rc_persist *persist_new(const char *dir, const rc_store_options *o, bool readonly)
{
    rc_persist *p = calloc(1, sizeof(*p));
    if (!p || !(p->dir = strdup(dir))) {
        free(p);
        return NULL;
    }
    p->readonly = readonly;
    if (!(p->tl = rc_ticklog_new((size_t)o->tick_log_mb * MB, (size_t)o->bytes_per_sync_kb * KB))) {
        free(p->dir);
        free(p);
        return NULL;
    }
    p->cache = rocksdb_cache_create_lru((size_t)o->block_cache_mb * MB);
    static const rc_durability modes[] = { RC_DURABILITY_NONE, RC_DURABILITY_BATCH, RC_DURABILITY_SYNC };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        rocksdb_writeoptions_t *w = rocksdb_writeoptions_create();
        rocksdb_writeoptions_disable_WAL(w, modes[i] == RC_DURABILITY_NONE);
        rocksdb_writeoptions_set_sync(w, modes[i] == RC_DURABILITY_SYNC);
        p->wopts[modes[i]] = w;
    }
    return p;
}

void rc_store_close(rc_persist *p)
{
    if (!p)
        return;
    for (int i = 0; i < RC_CF_COUNT; i++)
        if (p->cf[i])
            rocksdb_column_family_handle_destroy(p->cf[i]);
    for (size_t i = 0; i < p->n_extra_cf; i++)
        if (p->extra_cf[i])
            rocksdb_column_family_handle_destroy(p->extra_cf[i]);
    free(p->extra_cf);
    if (p->db)
        rocksdb_close(p->db);
    free_options(p);
    for (int i = 0; i < 3; i++)
        if (p->wopts[i])
            rocksdb_writeoptions_destroy(p->wopts[i]);
    if (p->cache)
        rocksdb_cache_destroy(p->cache);
    rc_ticklog_free(p->tl);
    free(p->dir);
    free(p);
}

/* ---- the directory ---- */

/* A file name RocksDB leaves in its directory (to tell "CURRENT is missing"
 * from "these are somebody else's files"). */
static bool rocksdb_file_name(const char *name)
{
    size_t n = strlen(name);
    return strncmp(name, "MANIFEST-", 9) == 0 || strcmp(name, "IDENTITY") == 0 || strncmp(name, "OPTIONS-", 8) == 0 ||
           (n > 4 && strcmp(name + n - 4, ".sst") == 0) || (n > 4 && strcmp(name + n - 4, ".log") == 0) ||
           strcmp(name, RC_STORE_TICKLOG_DIR) == 0;
}

static int dir_state(const char *dir, enum dir_state *state, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT) {
            *state = DIR_MISSING;
            return 0;
        }
        return rc_store_fail(err, errlen, dir, "cannot stat: %s", strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return rc_store_fail(err, errlen, dir, "exists and is not a directory");
    DIR *d = opendir(dir);
    if (!d)
        return rc_store_fail(err, errlen, dir, "cannot read directory: %s", strerror(errno));
    bool current = false, rocks_files = false, other = false;
    char example[64] = ""; /* the first foreign name, for the message */
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, "lost+found"))
            continue;
        if (!strcmp(n, "CURRENT"))
            current = true;
        else if (rocksdb_file_name(n))
            rocks_files = true;
        else if (!other) {
            other = true;
            snprintf(example, sizeof(example), "%.*s", (int)sizeof(example) - 1, n);
        }
    }
    closedir(d);
    if (current) {
        *state = DIR_DATABASE;
        return 0;
    }
    if (rocks_files)
        return rc_store_fail(err, errlen, dir,
                             "holds RocksDB files but no CURRENT file: the database is damaged; "
                             "restore it from a backup or move it away to start empty");
    if (other)
        return rc_store_fail(err, errlen, dir,
                             "is not empty (e.g. '%s') and holds no RocksDB database (no CURRENT file); "
                             "refusing to create one over other files: point data_dir at an empty directory",
                             example);
    *state = DIR_EMPTY;
    return 0;
}

/* Opens the database with the given families; handles land in p->cf (ours)
 * and p->extra_cf (unknown ones, in names[RC_CF_COUNT..]). */
static int open_families(rc_persist *p, const char *const *names, size_t n, char **rerr)
{
    const rocksdb_options_t **opts = calloc(n, sizeof(*opts));
    rocksdb_column_family_handle_t **h = calloc(n, sizeof(*h));
    if (!opts || !h) {
        free(opts);
        free(h);
        *rerr = strdup("out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        opts[i] = i < RC_CF_COUNT && p->cf_opts[i] ? p->cf_opts[i] : p->db_opts;
    if (p->readonly)
        p->db = rocksdb_open_for_read_only_column_families(p->db_opts, p->dir, (int)n, names, opts, h, 0, rerr);
    else
        p->db = rocksdb_open_column_families(p->db_opts, p->dir, (int)n, names, opts, h, rerr);
    free(opts);
    if (!p->db) {
        free(h);
        return -1;
    }
    memcpy(p->cf, h, RC_CF_COUNT * sizeof(*h));
    p->n_extra_cf = n - RC_CF_COUNT;
    p->extra_cf = p->n_extra_cf ? h : NULL;
    if (p->n_extra_cf)
        memmove(h, h + RC_CF_COUNT, p->n_extra_cf * sizeof(*h));
    else
        free(h);
    return 0;
}

static bool our_family(const char *name)
{
    for (int i = 0; i < RC_CF_COUNT; i++)
        if (!strcmp(name, rc_store_cf_names[i]))
            return true;
    return false;
}

/* The family list of an existing database: ours first (all must exist),
 * then any unknown ones (RocksDB insists every family is opened; in
 * read-only mode a subset will do). */
static int existing_families(rc_persist *p, const char ***names_out, size_t *n_out, char ***listed_out,
                             size_t *n_listed_out, char *err, size_t errlen)
{
    char *rerr = NULL;
    size_t n_listed = 0;
    char **listed = rocksdb_list_column_families(p->db_opts, p->dir, &n_listed, &rerr);
    if (rerr) {
        rocksdb_list_column_families_destroy(listed, n_listed); /* allocated even on error */
        return fail_rocks(err, errlen, p->dir, "cannot read the database", rerr);
    }
    for (int i = 0; i < RC_CF_COUNT; i++) {
        bool found = false;
        for (size_t j = 0; j < n_listed && !found; j++)
            found = !strcmp(listed[j], rc_store_cf_names[i]);
        bool *added;
        uint32_t older = lacked_by(p, i, &added);
        if (!found && older && !p->readonly) {
            *added = true; /* check_format migrates the directory, or marks it 4 */
            continue;
        }
        if (!found && older) {
            rocksdb_list_column_families_destroy(listed, n_listed);
            return rc_store_fail(err, errlen, p->dir,
                                 "has no column family '%s': it is in format %u%s and is migrated when ringcastd "
                                 "opens it (read-write) once",
                                 rc_store_cf_names[i], older, older == RC_PERSIST_FORMAT_V3 ? " or older" : "");
        }
        if (!found) {
            rocksdb_list_column_families_destroy(listed, n_listed);
            return rc_store_fail(err, errlen, p->dir,
                                 "is a RocksDB database without the column family '%s': "
                                 "not a ringcast data directory (or its creation was interrupted)",
                                 rc_store_cf_names[i]);
        }
    }
    const char **names = calloc(n_listed + RC_CF_COUNT, sizeof(*names));
    if (!names) {
        rocksdb_list_column_families_destroy(listed, n_listed);
        return rc_store_fail(err, errlen, p->dir, "out of memory");
    }
    size_t n = 0;
    for (int i = 0; i < RC_CF_COUNT; i++)
        names[n++] = rc_store_cf_names[i];
    for (size_t j = 0; j < n_listed && !p->readonly; j++)
        if (!our_family(listed[j]))
            names[n++] = listed[j];
    *names_out = names;
    *n_out = n;
    *listed_out = listed;
    *n_listed_out = n_listed;
    return 0;
}

/* Opens with the best compression profile the RocksDB library supports. */
static int open_database(rc_persist *p, const rc_store_options *o, bool create, char *err, size_t errlen)
{
    const char **names = (const char **)rc_store_cf_names;
    size_t n = RC_CF_COUNT;
    char **listed = NULL;
    size_t n_listed = 0;
    int rc = -1;
    /* lz4 on every level: recovery seeks each group's newest and oldest
     * history entry, decompressing a block per seek; with zstd at the
     * bottommost level, 100,000 groups x 100 messages took 30-65 s to
     * recover, with lz4 1.4 s (bench/RESULTS.md). */
    enum compression_profile cp = o->compression ? COMPRESS_LZ4 : COMPRESS_NONE;
    for (; cp < COMPRESS_PROFILES; cp++) {
        tune(p, o, cp);
        rocksdb_options_set_create_if_missing(p->db_opts, create);
        if (!create && !listed && existing_families(p, &names, &n, &listed, &n_listed, err, errlen) != 0)
            return -1;
        rocksdb_options_set_create_missing_column_families(p->db_opts, create || p->added_families || p->added_ticks);
        char *rerr = NULL;
        if (open_families(p, (const char *const *)names, n, &rerr) == 0) {
            rc = 0;
            break;
        }
        if (!rerr || !strstr(rerr, NOT_LINKED) || cp + 1 == COMPRESS_PROFILES) {
            fail_rocks(err, errlen, p->dir, create ? "cannot create the database" : "cannot open the database",
                       rerr);
            break;
        }
        rocksdb_free(rerr); /* this RocksDB lacks a compression library: try the next profile */
    }
    if (listed) {
        free(names);
        rocksdb_list_column_families_destroy(listed, n_listed);
    }
    return rc;
}

/* ---- the format marker ---- */

static int family_empty(rc_persist *p, enum rc_store_cf cf, bool *empty, char *err, size_t errlen)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_total_order_seek(ro, 1);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(p->db, ro, p->cf[cf]);
    rocksdb_iter_seek_to_first(it);
    *empty = !rocksdb_iter_valid(it);
    int rc = rc_store_iter_error(it, p->dir, "cannot read", err, errlen);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

static int write_format(rc_persist *p, char *err, size_t errlen)
{
    uint8_t v[FORMAT_BYTES];
    for (unsigned i = 0; i < FORMAT_BYTES; i++)
        v[i] = (uint8_t)(RC_PERSIST_FORMAT >> (8 * (FORMAT_BYTES - 1 - i)));
    char *rerr = NULL;
    rocksdb_put_cf(p->db, p->wopts[RC_DURABILITY_SYNC], p->cf[RC_CF_META], FORMAT_KEY, strlen(FORMAT_KEY),
                   (const char *)v, sizeof(v), &rerr);
    return rerr ? fail_rocks(err, errlen, p->dir, "cannot write the format marker", rerr) : 0;
}

/* A marker that is missing from a database without data means its creation
 * was interrupted between creating the families and writing the marker:
 * finish it. With data present, it is not ours to guess about. */
static int missing_format(rc_persist *p, char *err, size_t errlen)
{
    bool groups_empty, history_empty;
    if (family_empty(p, RC_CF_GROUPS, &groups_empty, err, errlen) != 0 ||
        family_empty(p, RC_CF_HISTORY, &history_empty, err, errlen) != 0)
        return -1;
    if (!groups_empty || !history_empty || p->readonly)
        return rc_store_fail(err, errlen, p->dir, "has no format marker (meta/%s)%s; this build reads format %u",
                             FORMAT_KEY, groups_empty && history_empty ? "" : " but holds data", RC_PERSIST_FORMAT);
    return write_format(p, err, errlen);
}

/* Writes the member index entries of one stored snapshot's members. */
static int index_members(rc_persist *p, rocksdb_writebatch_t *wb, const char *g, size_t g_len, const char *v,
                         size_t v_len, char *err, size_t errlen)
{
    rc_group *grp = rc_group_new(g, (uint32_t)g_len, 1, 1);
    const char *why = "out of memory";
    if (!grp || rc_snapshot_apply(grp, (const uint8_t *)v, (uint32_t)v_len, &why) != 0) {
        rc_group_free(grp);
        return rc_store_fail(err, errlen, p->dir, "migrating format %u: group '%.*s': bad snapshot: %s",
                             RC_PERSIST_FORMAT_V1, (int)g_len, g, why);
    }
    for (uint32_t i = 0; i < grp->members.cap; i++) {
        const rc_strmap_slot *m = &grp->members.slots[i];
        if (!m->hash)
            continue;
        char key[RC_STORE_MEMBER_KEY_MAX];
        size_t klen = rc_store_member_key(key, m->key, m->len, g, (uint32_t)g_len);
        rocksdb_writebatch_put_cf(wb, p->cf[RC_CF_USER_GROUPS], key, klen, "", 0);
    }
    rc_group_free(grp);
    return 0;
}

static int write_batch(rc_persist *p, rocksdb_writebatch_t *wb, char *err, size_t errlen)
{
    char *rerr = NULL;
    rocksdb_write(p->db, p->wopts[RC_DURABILITY_SYNC], wb, &rerr);
    rocksdb_writebatch_clear(wb);
    return rerr ? fail_rocks(err, errlen, p->dir, "migrating: write failed", rerr) : 0;
}

/* Format 1 -> 2: `reads` starts empty (no cursor was stored before), and
 * `user_groups` is built from every group snapshot's members. */
static int index_all_members(rc_persist *p, uint64_t *groups, char *err, size_t errlen)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(p->db, ro, p->cf[RC_CF_GROUPS]);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int rc = 0;
    for (rocksdb_iter_seek_to_first(it); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen = 0, vlen = 0;
        const char *k = rocksdb_iter_key(it, &klen);
        const char *v = rocksdb_iter_value(it, &vlen);
        if (klen < 1 || klen > RC_STORE_GROUP_MAX || vlen > UINT32_MAX)
            rc = rc_store_fail(err, errlen, p->dir, "migrating: groups entry with a %zu-byte id: corrupt", klen);
        else
            rc = index_members(p, wb, k, klen, v, vlen, err, errlen);
        (*groups)++;
        if (rc == 0 && (uint32_t)rocksdb_writebatch_count(wb) >= MIGRATE_BATCH)
            rc = write_batch(p, wb, err, errlen);
    }
    if (rc == 0)
        rc = rc_store_iter_error(it, p->dir, "migrating: cannot read groups", err, errlen);
    if (rc == 0)
        rc = write_batch(p, wb, err, errlen);
    rocksdb_writebatch_destroy(wb);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

/* Format 2 -> 3: every history entry is put again under its tagged key
 * (rocks.h), then one range delete removes the untagged keys: they all
 * start with their length byte, 1..255, where tagged keys start with 0.
 * The iterator reads the state from before the first put. */
static int retag_history(rc_persist *p, uint64_t *entries, char *err, size_t errlen)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_readoptions_set_total_order_seek(ro, 1);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(p->db, ro, p->cf[RC_CF_HISTORY]);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int rc = 0;
    for (rocksdb_iter_seek(it, "\001", 1); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen = 0, vlen = 0, wb_bytes = 0;
        const char *k = rocksdb_iter_key(it, &klen);
        const char *v = rocksdb_iter_value(it, &vlen);
        uint32_t g_len = (uint8_t)k[0];
        if (klen != RC_STORE_V2_KEY_LEN(g_len)) {
            rc = rc_store_fail(err, errlen, p->dir, "migrating format %u: history key of %zu bytes: corrupt",
                               RC_PERSIST_FORMAT_V2, klen);
            break;
        }
        char key[RC_STORE_KEY_MAX];
        size_t nlen = rc_store_history_key(key, k + 1, g_len, rc_store_history_seq(k, 1u + g_len));
        rocksdb_writebatch_put_cf(wb, p->cf[RC_CF_HISTORY], key, nlen, v, vlen);
        (*entries)++;
        rocksdb_writebatch_data(wb, &wb_bytes);
        if ((uint32_t)rocksdb_writebatch_count(wb) >= MIGRATE_BATCH || wb_bytes >= MIGRATE_BATCH_BYTES)
            rc = write_batch(p, wb, err, errlen);
    }
    if (rc == 0)
        rc = rc_store_iter_error(it, p->dir, "migrating: cannot read history", err, errlen);
    if (rc == 0) {
        char end[RC_STORE_V2_KEY_LEN(RC_STORE_GROUP_MAX) + 1]; /* above every untagged key */
        memset(end, 0xff, sizeof(end));
        rocksdb_writebatch_delete_range_cf(wb, p->cf[RC_CF_HISTORY], "\001", 1, end, sizeof(end));
        rc = write_batch(p, wb, err, errlen);
    }
    rocksdb_writebatch_destroy(wb);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

/* Brings a format 1 or 2 directory to format 3. The writes are idempotent
 * puts and a range delete (WAL fsync), and the marker is written last (with
 * fsync), so a migration cut short by a crash is simply done again at the
 * next open. */
static int migrate(rc_persist *p, uint32_t from, char *err, size_t errlen)
{
    RC_LOG_INFO("store", "event=migrating dir=%s from=%u to=%u", p->dir, from, RC_PERSIST_FORMAT);
    uint64_t groups = 0, entries = 0;
    int rc = from == RC_PERSIST_FORMAT_V1 ? index_all_members(p, &groups, err, errlen) : 0;
    if (rc == 0)
        rc = retag_history(p, &entries, err, errlen);
    if (rc == 0)
        rc = write_format(p, err, errlen);
    if (rc == 0)
        RC_LOG_INFO("store", "event=migrated dir=%s from=%u to=%u groups=%llu history_entries=%llu", p->dir, from,
                    RC_PERSIST_FORMAT, (unsigned long long)groups, (unsigned long long)entries);
    return rc;
}

static int check_format(rc_persist *p, char *err, size_t errlen)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *rerr = NULL;
    size_t len = 0;
    char *v = rocksdb_get_cf(p->db, ro, p->cf[RC_CF_META], FORMAT_KEY, strlen(FORMAT_KEY), &len, &rerr);
    rocksdb_readoptions_destroy(ro);
    if (rerr)
        return fail_rocks(err, errlen, p->dir, "cannot read the format marker", rerr);
    if (!v)
        return missing_format(p, err, errlen);
    uint32_t format = 0;
    for (size_t i = 0; i < len && i < FORMAT_BYTES; i++)
        format = (format << 8) | (uint8_t)v[i];
    rocksdb_free(v);
    if (len != FORMAT_BYTES)
        return rc_store_fail(err, errlen, p->dir, "format marker is %zu bytes, expected %u: corrupt", len,
                             FORMAT_BYTES);
    if ((format == RC_PERSIST_FORMAT || format == RC_PERSIST_FORMAT_V4) && p->added_ticks)
        return rc_store_fail(err, errlen, p->dir, "has format %u but lacked the family ticks: corrupt", format);
    if (format == RC_PERSIST_FORMAT_V1 && !p->readonly)
        return migrate(p, format, err, errlen);
    if ((format == RC_PERSIST_FORMAT || format == RC_PERSIST_FORMAT_V2 || format == RC_PERSIST_FORMAT_V3 ||
         format == RC_PERSIST_FORMAT_V4) &&
        p->added_families)
        return rc_store_fail(err, errlen, p->dir, "has format %u but lacked the families reads and user_groups: corrupt",
                             format);
    if (format == RC_PERSIST_FORMAT_V3 && !p->readonly) {
        /* Format 3 history values are read as they are (one map each, rocks.h):
         * the new family is all there is to add. */
        RC_LOG_INFO("store", "event=migrated dir=%s from=%u to=%u", p->dir, format, RC_PERSIST_FORMAT);
        return write_format(p, err, errlen);
    }
    if (format == RC_PERSIST_FORMAT_V2 && !p->readonly)
        return migrate(p, format, err, errlen);
    if (format == RC_PERSIST_FORMAT_V4) {
        /* Format 4's tick records are read from `ticks` (read-only: into
         * memory) and, read-write, folded at once by rc_ticklog_open; the
         * marker says 5 after that (open_dir). */
        p->from_v4 = !p->readonly;
        return 0;
    }
    if (format == RC_PERSIST_FORMAT_V2 || format == RC_PERSIST_FORMAT_V3)
        return rc_store_fail(err, errlen, p->dir,
                             "has format %u: it is migrated when ringcastd opens it (read-write) once", format);
    if (format != RC_PERSIST_FORMAT) {
        if (err && errlen)
            snprintf(err, errlen, "data_dir %s has format %u, this build reads %u", p->dir, format, RC_PERSIST_FORMAT);
        return -1;
    }
    return 0;
}

/* ---- open ---- */

static rc_persist *open_dir(const char *dir, const rc_store_options *opt, bool readonly, char *err, size_t errlen)
{
    rc_store_options o;
    if (opt)
        o = *opt;
    else
        rc_store_options_default(&o);
    if (!dir || !*dir) {
        rc_store_fail(err, errlen, "", "no data directory given");
        return NULL;
    }
    enum dir_state st = DIR_MISSING;
    if (check_options(&o, dir, err, errlen) != 0 || dir_state(dir, &st, err, errlen) != 0)
        return NULL;
    if (readonly && st != DIR_DATABASE) {
        rc_store_fail(err, errlen, dir, "%s: no database to open read-only",
                      st == DIR_MISSING ? "does not exist" : "is empty");
        return NULL;
    }
    rc_persist *p = persist_new(dir, &o, readonly);
    if (!p) {
        rc_store_fail(err, errlen, dir, "out of memory");
        return NULL;
    }
    bool create = st != DIR_DATABASE;
    if (open_database(p, &o, create, err, errlen) != 0 ||
        (create ? write_format(p, err, errlen) : check_format(p, err, errlen)) != 0 ||
        rc_ticklog_open(p, err, errlen) != 0 || (p->from_v4 && write_format(p, err, errlen) != 0)) {
        rc_store_close(p);
        return NULL;
    }
    if (p->from_v4)
        RC_LOG_INFO("store", "event=migrated dir=%s from=%u to=%u", p->dir, RC_PERSIST_FORMAT_V4, RC_PERSIST_FORMAT);
    return p;
}

rc_persist *rc_store_open(const char *dir, const rc_store_options *opt, char *err, size_t errlen)
{
    return open_dir(dir, opt, false, err, errlen);
}

rc_persist *rc_store_open_readonly(const char *dir, char *err, size_t errlen)
{
    return open_dir(dir, NULL, true, err, errlen);
}

/* ---- statistics ---- */

typedef struct report {
    char *buf;
    size_t len, off; /* off counts the full report, even past len */
} report;

static void add(report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(report *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *at = r->off < r->len ? r->buf + r->off : NULL;
    int n = vsnprintf(at, at ? r->len - r->off : 0, fmt, ap);
    va_end(ap);
    if (n > 0)
        r->off += (size_t)n;
}

static void add_property(report *r, rc_persist *p, rocksdb_column_family_handle_t *cf, const char *name)
{
    char *v = cf ? rocksdb_property_value_cf(p->db, cf, name) : rocksdb_property_value(p->db, name);
    if (v)
        add(r, "%s", v);
    rocksdb_free(v);
}

int rc_store_stats(rc_persist *p, char *buf, size_t len)
{
    if (!p)
        return -1;
    report r = { buf, len, 0 };
    if (buf && len)
        buf[0] = '\0';
    static const char *const per_cf[] = { "rocksdb.estimate-num-keys", "rocksdb.total-sst-files-size",
                                          "rocksdb.cur-size-all-mem-tables", "rocksdb.estimate-live-data-size" };
    add(&r, "data_dir %s%s format %u crc32c %s\n", p->dir, p->readonly ? " (read-only)" : "", RC_PERSIST_FORMAT,
        rc_store_crc32c_impl());
    for (int i = RC_CF_GROUPS; i < RC_CF_COUNT; i++) {
        add(&r, "cf %s:", rc_store_cf_names[i]);
        for (size_t j = 0; j < sizeof(per_cf) / sizeof(per_cf[0]); j++) {
            uint64_t v = 0;
            if (rocksdb_property_int_cf(p->db, p->cf[i], per_cf[j], &v) == 0)
                add(&r, " %s=%llu", per_cf[j] + strlen("rocksdb."), (unsigned long long)v);
        }
        add(&r, "\n");
    }
    add(&r, "block_cache usage=%zu capacity=%zu\n", rocksdb_cache_get_usage(p->cache),
        rocksdb_cache_get_capacity(p->cache));
    rc_ticklog_stats t;
    rc_ticklog_stats_read(p, &t);
    add(&r,
        "tick_log records=%llu folds=%llu segments_folded=%llu folded_records=%llu folded_messages=%llu "
        "trims_written=%llu table_entries=%zu table_held=%zu table_groups=%zu fold_batch=%zu segments=%zu disk=%zu\n",
        (unsigned long long)t.records, (unsigned long long)t.folds, (unsigned long long)t.segments_folded,
        (unsigned long long)t.folded_records, (unsigned long long)t.folded_msgs, (unsigned long long)t.trims_written,
        t.entries, t.held, t.groups, t.fold_batch, t.segments, t.disk);
    add(&r, "\n** history **\n");
    add_property(&r, p, p->cf[RC_CF_HISTORY], "rocksdb.cfstats-no-file-histogram");
    add(&r, "\n** groups **\n");
    add_property(&r, p, p->cf[RC_CF_GROUPS], "rocksdb.cfstats-no-file-histogram");
    add_property(&r, p, NULL, "rocksdb.dbstats");
    char *s = rocksdb_options_statistics_get_string(p->db_opts);
    if (s) {
        add(&r, "\n** statistics **\n%s", s);
        rocksdb_free(s);
    }
    return r.off > (size_t)INT32_MAX ? INT32_MAX : (int)r.off;
}

int rc_store_l0_files(rc_persist *p, uint64_t *files)
{
    *files = 0;
    if (!p || !p->db)
        return -1;
    /* a string property (RocksDB has no integer form of it) */
    char *v = rocksdb_property_value_cf(p->db, p->cf[RC_CF_HISTORY], "rocksdb.num-files-at-level0");
    char *end = NULL;
    unsigned long long n = v ? strtoull(v, &end, 10) : 0;
    int rc = v && end != v && *end == '\0' ? 0 : -1;
    rocksdb_free(v);
    *files = rc == 0 ? n : 0;
    return rc;
}

int rc_store_memory_read(rc_persist *p, rc_store_memory *m)
{
    *m = (rc_store_memory){ 0 };
    if (!p || !p->db)
        return -1;
    for (int i = 0; i < RC_CF_COUNT; i++) {
        uint64_t v = 0;
        if (p->cf[i] && rocksdb_property_int_cf(p->db, p->cf[i], "rocksdb.size-all-mem-tables", &v) == 0)
            m->memtables += v;
        v = 0;
        if (p->cf[i] && rocksdb_property_int_cf(p->db, p->cf[i], "rocksdb.estimate-table-readers-mem", &v) == 0)
            m->table_readers += v;
    }
    rc_ticklog_stats t;
    rc_ticklog_stats_read(p, &t);
    m->tick_log = t.held + t.fold_batch;
    m->tick_log_disk = t.disk;
    if (!p->cache)
        return 0;
    m->block_cache = rocksdb_cache_get_usage(p->cache);
    m->block_cache_pinned = rocksdb_cache_get_pinned_usage(p->cache);
    m->block_cache_capacity = rocksdb_cache_get_capacity(p->cache);
    return 0;
}
