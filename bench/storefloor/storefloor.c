/*
 * ringcast-storefloor: what RocksDB alone costs per stored message, with
 * nothing else running: no sockets, no shards, no encoding. It is the floor
 * under `durability=batch`: whatever ringcastd does around it, each message
 * costs at least this much CPU (src/ARCHITECTURE.md §6).
 *
 * It writes --messages messages of --body bytes spread over --groups groups
 * in write batches of --batch messages (a shard's tick), with the options
 * of ringcastd's history column family (src/store/rocks.c: 64 MiB write
 * buffers, LZ4, levels sized dynamically, two background jobs, memtable
 * insert hints by the 17-byte group prefix, the WAL on and not synced).
 * --per-record K stores K consecutive messages of a batch as one RocksDB
 * record: 1 is storage format 3 (one key per message and group), K = --batch
 * a layout with one record per tick. CPU is the whole process's (RocksDB's
 * flush and compaction threads included), once for the writes and once more
 * after the memtables are flushed and compactions have finished.
 *
 *   ringcast-storefloor [--messages N] [--groups G] [--body B] [--batch J]
 *                       [--per-record K] [--memtable skiplist|vector]
 *                       [--no-hints] [--dir PATH]
 */
#include <rocksdb/c.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../lib/args.h"

#define SF_KEY_BYTES 33u        /* tag (16) + length byte + "g-000000" (8) + seq (8): a format 3 key */
#define SF_PREFIX_BYTES 17u     /* tag + length byte: the insert hint's prefix (src/store/rocks.h) */
#define SF_WRITE_BUFFER_MB 64u  /* the history family's write buffer */
#define SF_WRITE_BUFFERS 3
#define SF_BACKGROUND_JOBS 2
#define SF_MAX_BODY 4096u
#define SF_MAX_BATCH 65536u
#define SF_MAX_GROUPS 1000000u
#define SF_SETTLE_POLL_US 100000u /* between checks that compactions have finished */
#define SF_SETTLE_MAX_POLLS 600u  /* a minute at most */

typedef struct sf_opts {
    unsigned long messages, groups, body, batch, per_record;
    int vector, hints;
    const char *dir;
} sf_opts;

static double cpu_s(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

static double wall_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static unsigned long arg_num(const char *s, unsigned long min, unsigned long max, const char *name)
{
    return rc_bench_arg("ringcast-storefloor", s, min, max, name);
}

static void parse(int argc, char **argv, sf_opts *o)
{
    *o = (sf_opts){ .messages = 3000000, .groups = 1000, .body = 170, .batch = 256, .per_record = 1, .hints = 1,
                    .dir = "storefloor-db" };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-hints")) {
            o->hints = 0;
            continue;
        }
        if (!v) {
            fprintf(stderr, "ringcast-storefloor: unknown or incomplete option %s\n", a);
            exit(2);
        }
        i++;
        if (!strcmp(a, "--messages"))
            o->messages = arg_num(v, 1, 1000000000ul, a);
        else if (!strcmp(a, "--groups"))
            o->groups = arg_num(v, 1, SF_MAX_GROUPS, a);
        else if (!strcmp(a, "--body"))
            o->body = arg_num(v, 0, SF_MAX_BODY, a);
        else if (!strcmp(a, "--batch"))
            o->batch = arg_num(v, 1, SF_MAX_BATCH, a);
        else if (!strcmp(a, "--per-record"))
            o->per_record = arg_num(v, 1, SF_MAX_BATCH, a);
        else if (!strcmp(a, "--memtable") && (!strcmp(v, "skiplist") || !strcmp(v, "vector")))
            o->vector = !strcmp(v, "vector");
        else if (!strcmp(a, "--dir"))
            o->dir = v;
        else {
            fprintf(stderr, "ringcast-storefloor: unknown option %s %s\n", a, v);
            exit(2);
        }
    }
}

static rocksdb_options_t *history_options(const sf_opts *o)
{
    rocksdb_options_t *base = rocksdb_options_create(), *opts = base;
    char *err = NULL;
    if (o->hints) {
        opts = rocksdb_options_create();
        rocksdb_get_options_from_string(base, "memtable_insert_with_hint_prefix_extractor=fixed:17", opts, &err);
        rocksdb_options_destroy(base);
        if (err) {
            fprintf(stderr, "ringcast-storefloor: %s\n", err);
            exit(1);
        }
    }
    rocksdb_options_set_create_if_missing(opts, 1);
    rocksdb_options_set_write_buffer_size(opts, (size_t)SF_WRITE_BUFFER_MB << 20);
    rocksdb_options_set_max_write_buffer_number(opts, SF_WRITE_BUFFERS);
    rocksdb_options_set_level_compaction_dynamic_level_bytes(opts, 1);
    rocksdb_options_set_compression(opts, rocksdb_lz4_compression);
    rocksdb_options_set_max_background_jobs(opts, SF_BACKGROUND_JOBS);
    rocksdb_options_set_allow_concurrent_memtable_write(opts, 0);
    if (o->vector)
        rocksdb_options_set_memtable_vector_rep(opts);
    return opts;
}

/* Group g's format 3 key prefix: a tag (not SHA-256 here: any 16 bytes
 * that differ per group place the keys alike), the length byte, the name. */
static void group_prefix(char *k, unsigned long g)
{
    memset(k, 0, 16);
    uint64_t mix = (uint64_t)g * 0x9e3779b97f4a7c15ull;
    memcpy(k + 1, &mix, sizeof(mix));
    k[16] = 8;
    char name[16];
    snprintf(name, sizeof(name), "g-%06lu", g % 1000000ul);
    memcpy(k + SF_PREFIX_BYTES, name, 8);
}

static int settled(rocksdb_t *db)
{
    uint64_t pending = 1, running = 1;
    if (!rocksdb_property_int(db, "rocksdb.compaction-pending", &pending) &&
        !rocksdb_property_int(db, "rocksdb.num-running-compactions", &running))
        return pending == 0 && running == 0;
    return 0;
}

int main(int argc, char **argv)
{
    sf_opts o;
    parse(argc, argv, &o);
    if (o.per_record > o.batch) {
        fprintf(stderr, "ringcast-storefloor: --per-record must not exceed --batch\n");
        return 2;
    }
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", o.dir);
    if (strchr(o.dir, '\'') || system(cmd) != 0) {
        fprintf(stderr, "ringcast-storefloor: cannot clear %s\n", o.dir);
        return 1;
    }
    rocksdb_options_t *opts = history_options(&o);
    char *err = NULL;
    rocksdb_t *db = rocksdb_open(opts, o.dir, &err);
    if (err) {
        fprintf(stderr, "ringcast-storefloor: open %s: %s\n", o.dir, err);
        return 1;
    }
    rocksdb_writeoptions_t *w = rocksdb_writeoptions_create(); /* the WAL on, not synced: durability=batch */
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    uint64_t *seq = calloc(o.groups, sizeof(*seq));
    char *value = malloc(o.body * o.per_record + 1);
    if (!seq || !value)
        return 1;
    memset(value, 'v', o.body * o.per_record + 1);

    unsigned long records = 0;
    double c0 = cpu_s(), t0 = wall_s();
    for (unsigned long i = 0; i < o.messages;) {
        rocksdb_writebatch_clear(wb);
        for (unsigned long k = 0; k < o.batch && i < o.messages;) {
            unsigned long n = o.per_record;
            if (n > o.batch - k)
                n = o.batch - k;
            if (n > o.messages - i)
                n = o.messages - i;
            unsigned long g = (i * 7919ul) % o.groups; /* groups interleaved, as a flood's sends are */
            char key[SF_KEY_BYTES];
            group_prefix(key, g);
            uint64_t s = seq[g] + 1;
            seq[g] += n;
            for (int b = 0; b < 8; b++)
                key[25 + b] = (char)(s >> (56 - 8 * b));
            rocksdb_writebatch_put(wb, key, sizeof(key), value, o.body * n);
            records++;
            i += n;
            k += n;
        }
        rocksdb_write(db, w, wb, &err);
        if (err) {
            fprintf(stderr, "ringcast-storefloor: write: %s\n", err);
            return 1;
        }
    }
    double c1 = cpu_s(), t1 = wall_s();
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    rocksdb_flush(db, fo, &err);
    if (err) {
        fprintf(stderr, "ringcast-storefloor: flush: %s\n", err);
        return 1;
    }
    unsigned polls = 0;
    while (!settled(db) && polls++ < SF_SETTLE_MAX_POLLS)
        usleep(SF_SETTLE_POLL_US);
    double c2 = cpu_s();
    printf("ringcast-storefloor messages=%lu groups=%lu body=%lu batch=%lu per_record=%lu memtable=%s hints=%d "
           "records=%lu write_cpu_ns_per_msg=%.0f write_wall_ns_per_msg=%.0f settled_cpu_ns_per_msg=%.0f settled=%d\n",
           o.messages, o.groups, o.body, o.batch, o.per_record, o.vector ? "vector" : "skiplist", o.hints, records,
           (c1 - c0) * 1e9 / (double)o.messages, (t1 - t0) * 1e9 / (double)o.messages,
           (c2 - c0) * 1e9 / (double)o.messages, settled(db));
    rocksdb_flushoptions_destroy(fo);
    rocksdb_writebatch_destroy(wb);
    rocksdb_writeoptions_destroy(w);
    rocksdb_close(db);
    rocksdb_options_destroy(opts);
    free(seq);
    free(value);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", o.dir);
    return system(cmd) == 0 ? 0 : 1;
}
