/*
 * The RocksDB store (src/store): format marker on creation, history keys of
 * groups whose ids are prefixes of each other never mixing, scan bounds,
 * limits and early stop, snapshots with oldest/newest seq at recovery,
 * retention deletes, reopen, every durability mode, poisoned batches, and
 * every way an existing directory must be refused (other format, corrupt
 * CURRENT, missing files, foreign files, no permission). Then read-only
 * access next to a writer, the statistics report, the WAL's checksum, and a
 * timed 100k-message write, reopen and recovery.
 *
 * Each test works in its own directory under one mkdtemp root in /tmp,
 * removed at the end.
 */
#define _GNU_SOURCE
#include "store/store.h"

#include <CUnit/CUnit.h>
#include <dirent.h>
#include <errno.h>
#include <dlfcn.h>
#include <ftw.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/group.h"
#include "core/snapshot.h"
#include "store/rocks.h"
#include "testutil.h"

#define ERR_LEN 512u
#define PATH_LEN 512u
#define VAL_LEN 320u       /* room for a 255-byte group id in a value */
#define MAX_SEEN 256u          /* entries a collecting scan keeps */
#define MAX_GROUPS_SEEN 16u    /* groups a small load_groups keeps */
#define SCALE_GROUPS 1000u
#define SCALE_MSGS 100000u     /* spread evenly over SCALE_GROUPS */
#define SCALE_BATCH 1000u      /* messages per commit: one shard tick */
#define SCALE_BODY 120u        /* bytes per stored msg map */
#define OTHER_FORMAT 99u
#define NOBODY_ID 65534        /* uid and gid of nobody/nogroup on Debian */

static char root[] = "/tmp/rc_store_XXXXXX";
static unsigned dirs_made;

static const rc_persist_ops *ops;

/* A fresh path under the root (not created). */
static void new_path(char *out, const char *tag)
{
    snprintf(out, PATH_LEN, "%s/%s%u", root, tag, dirs_made++);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static rc_persist *open_ok(const char *dir)
{
    char err[ERR_LEN] = "";
    rc_persist *p = rc_store_open(dir, NULL, err, sizeof(err));
    if (!p)
        fprintf(stderr, "open %s: %s\n", dir, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    return p;
}

/* A store whose tick log is 2 MiB in segments of 64 KiB: folds come soon. */
static rc_persist *open_small_log(const char *dir, char *err, size_t errlen)
{
    rc_store_options o;
    rc_store_options_default(&o);
    o.tick_log_mb = 2;
    return rc_store_open(dir, &o, err, errlen);
}

/* A store in a fresh directory under the root. */
static rc_persist *open_new(const char *tag)
{
    char dir[PATH_LEN];
    new_path(dir, tag);
    return open_ok(dir);
}

/* Expects rc_store_open to fail with a message containing both needles. */
static void open_fails(const char *dir, const char *needle1, const char *needle2)
{
    char err[ERR_LEN] = "";
    rc_persist *p = rc_store_open(dir, NULL, err, sizeof(err));
    CU_ASSERT_PTR_NULL(p);
    rc_store_close(p);
    printf("\n    refused as expected: %s\n   ", err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, needle1));
    if (needle2)
        CU_ASSERT_PTR_NOT_NULL(strstr(err, needle2));
}

static void val_of(char *out, const char *g, uint64_t seq)
{
    snprintf(out, VAL_LEN, "msg %s #%llu", g, (unsigned long long)seq);
}

/* Odd seqs go with the tag group_tag computed (as a shard puts them), even
 * ones with none (the store computes it): every read of them checks that
 * both make the same key. */
static void put_msgs(rc_persist_batch *b, const char *g, uint64_t from, uint64_t to)
{
    char v[VAL_LEN];
    uint8_t tag[RC_PERSIST_TAG_BYTES];
    ops->group_tag(g, (uint32_t)strlen(g), tag);
    for (uint64_t s = from; s <= to; s++) {
        val_of(v, g, s);
        ops->put_msg(b, g, (uint32_t)strlen(g), s % 2 ? tag : NULL, s, (const uint8_t *)v, (uint32_t)strlen(v));
        if (s == UINT64_MAX)
            break;
    }
}

static void commit_ok(rc_persist *p, rc_persist_batch *b, rc_durability d)
{
    char err[ERR_LEN] = "";
    int rc = ops->batch_commit(p, b, d, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "commit: %s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
}

/* One batch of g's messages from..to, committed with durability batch. */
static void add_msgs(rc_persist *p, const char *g, uint64_t from, uint64_t to)
{
    rc_persist_batch *b = ops->batch_begin(p);
    put_msgs(b, g, from, to);
    commit_ok(p, b, RC_DURABILITY_BATCH);
}

/* ---- collecting scans ---- */

typedef struct seen {
    const char *g;     /* the group scanned: every value must name it */
    uint32_t n;
    uint32_t stop_after; /* fn returns non-zero after this many, 0 = never */
    uint64_t seq[MAX_SEEN];
    uint64_t prev;     /* the last seq seen */
    bool values_ok;
    bool gapless;      /* every seq was the one before it + 1 */
} seen;

static int collect(void *ud, uint64_t seq, const uint8_t *map, uint32_t len)
{
    seen *s = ud;
    char want[VAL_LEN];
    val_of(want, s->g, seq);
    if (len != strlen(want) || memcmp(map, want, len) != 0)
        s->values_ok = false;
    if (s->n < MAX_SEEN)
        s->seq[s->n] = seq;
    if (s->n > 0 && seq != s->prev + 1)
        s->gapless = false;
    s->prev = seq;
    s->n++;
    return s->stop_after && s->n >= s->stop_after;
}

static seen scan_of(rc_persist *p, const char *g, uint64_t from, uint64_t to, uint32_t limit, uint32_t stop_after)
{
    seen s = { .g = g, .stop_after = stop_after, .values_ok = true, .gapless = true };
    char err[ERR_LEN] = "";
    int rc = ops->scan(p, g, (uint32_t)strlen(g), from, to, limit, collect, &s, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "scan: %s\n", err);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(s.values_ok);
    return s;
}

/* Asserts a scan saw exactly first..last, ascending. */
static void expect_run(const seen *s, uint64_t first, uint64_t last)
{
    if (s->n != last - first + 1 || (s->n > 0 && (s->seq[0] != first || s->prev != last)))
        fprintf(stderr, "scan of %s: %u entries %llu..%llu, expected %llu..%llu\n", s->g, s->n,
                (unsigned long long)(s->n ? s->seq[0] : 0), (unsigned long long)s->prev, (unsigned long long)first,
                (unsigned long long)last);
    CU_ASSERT_EQUAL_FATAL(s->n, last - first + 1);
    CU_ASSERT(s->gapless);
    CU_ASSERT_EQUAL(s->prev, last);
    for (uint32_t i = 0; i < s->n && i < MAX_SEEN; i++)
        CU_ASSERT_EQUAL(s->seq[i], first + i);
}

/* ---- collecting recovery ---- */

typedef struct group_seen {
    char g[VAL_LEN];
    char snap[VAL_LEN];
    uint64_t oldest, newest;
} group_seen;

typedef struct groups_seen {
    uint32_t n;
    group_seen g[MAX_GROUPS_SEEN];
} groups_seen;

static int collect_group(void *ud, const rc_persist_group *grp)
{
    groups_seen *gs = ud;
    if (gs->n < MAX_GROUPS_SEEN) {
        group_seen *e = &gs->g[gs->n];
        snprintf(e->g, sizeof(e->g), "%.*s", (int)grp->g_len, grp->g);
        snprintf(e->snap, sizeof(e->snap), "%.*s", (int)grp->snapshot_len, (const char *)grp->snapshot);
        e->oldest = grp->oldest_seq;
        e->newest = grp->newest_seq;
    }
    gs->n++;
    return 0;
}

static groups_seen load_of(rc_persist *p)
{
    groups_seen gs = { 0 };
    char err[ERR_LEN] = "";
    int rc = ops->load_groups(p, collect_group, &gs, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "load_groups: %s\n", err);
    CU_ASSERT_EQUAL(rc, 0);
    return gs;
}

static const group_seen *find_group(const groups_seen *gs, const char *g)
{
    for (uint32_t i = 0; i < gs->n && i < MAX_GROUPS_SEEN; i++)
        if (!strcmp(gs->g[i].g, g))
            return &gs->g[i];
    return NULL;
}

static void put_snapshot(rc_persist_batch *b, const char *g)
{
    char v[VAL_LEN];
    snprintf(v, sizeof(v), "snap of %s", g);
    ops->put_group(b, g, (uint32_t)strlen(g), (const uint8_t *)v, (uint32_t)strlen(v));
}

static void expect_group(const groups_seen *gs, const char *g, uint64_t oldest, uint64_t newest)
{
    const group_seen *e = find_group(gs, g);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    char want[VAL_LEN];
    snprintf(want, sizeof(want), "snap of %s", g);
    CU_ASSERT_STRING_EQUAL(e->snap, want);
    CU_ASSERT_EQUAL(e->oldest, oldest);
    CU_ASSERT_EQUAL(e->newest, newest);
}

/* ---- raw RocksDB access, for what the store API cannot (and must not) do ---- */

static const char *const families[] = { "default", "groups", "history", "spool", "meta", "reads", "user_groups", "ticks" };
#define N_FAMILIES 8
#define V1_FAMILIES 5 /* format 1 had no reads, user_groups */

/* A directory opened with RocksDB alone, not through the store: its first
 * n families (V1_FAMILIES for format 1), created when missing if `create`,
 * read-only if `readonly`. */
typedef struct raw_db {
    rocksdb_options_t *o;
    rocksdb_t *db;
    rocksdb_column_family_handle_t *h[N_FAMILIES];
    int n;
} raw_db;

static void raw_open(raw_db *r, const char *dir, int n, bool create, bool readonly)
{
    memset(r, 0, sizeof(*r));
    r->n = n;
    r->o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(r->o, create);
    rocksdb_options_set_create_missing_column_families(r->o, create);
    const rocksdb_options_t *co[N_FAMILIES] = { r->o, r->o, r->o, r->o, r->o, r->o, r->o, r->o };
    char *e = NULL;
    r->db = readonly ? rocksdb_open_for_read_only_column_families(r->o, dir, n, families, co, r->h, 0, &e)
                     : rocksdb_open_column_families(r->o, dir, n, families, co, r->h, &e);
    if (e)
        fprintf(stderr, "raw open: %s\n", e);
    rocksdb_free(e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r->db);
}

static void raw_close(raw_db *r)
{
    for (int i = 0; i < r->n; i++)
        rocksdb_column_family_handle_destroy(r->h[i]);
    rocksdb_close(r->db);
    rocksdb_options_destroy(r->o);
}

/* Reads (value_to_write == 0) or overwrites the format marker directly. */
static uint32_t raw_format(const char *dir, uint32_t value_to_write)
{
    raw_db rd;
    raw_open(&rd, dir, N_FAMILIES, false, value_to_write == 0);
    rocksdb_t *db = rd.db;
    rocksdb_column_family_handle_t **h = rd.h;
    char *e = NULL;
    uint32_t format = 0;
    if (value_to_write) {
        uint8_t v[4] = { (uint8_t)(value_to_write >> 24), (uint8_t)(value_to_write >> 16),
                         (uint8_t)(value_to_write >> 8), (uint8_t)value_to_write };
        rocksdb_writeoptions_t *w = rocksdb_writeoptions_create();
        rocksdb_put_cf(db, w, h[4], "format", 6, (const char *)v, 4, &e);
        rocksdb_writeoptions_destroy(w);
        CU_ASSERT_PTR_NULL(e);
        format = value_to_write;
    } else {
        rocksdb_readoptions_t *r = rocksdb_readoptions_create();
        size_t len = 0;
        char *v = rocksdb_get_cf(db, r, h[4], "format", 6, &len, &e);
        rocksdb_readoptions_destroy(r);
        CU_ASSERT_PTR_NOT_NULL(v);
        CU_ASSERT_EQUAL(len, 4);
        for (size_t i = 0; v && i < len; i++)
            format = (format << 8) | (uint8_t)v[i];
        rocksdb_free(v);
    }
    raw_close(&rd);
    return format;
}

static void write_file(const char *dir, const char *name, const char *content)
{
    char path[PATH_LEN + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(content, f);
    fclose(f);
}

/* The name of the first file in dir whose name ends in suffix (or starts
 * with it when prefix is set). */
static bool find_file(const char *dir, const char *affix, bool prefix, char *out, size_t outlen)
{
    char cmd[PATH_LEN + 128];
    snprintf(cmd, sizeof(cmd), "ls '%s' | grep -m1 '%s%s%s'", dir, prefix ? "^" : "", affix, prefix ? "" : "$");
    FILE *f = popen(cmd, "r");
    if (!f)
        return false;
    bool ok = fgets(out, (int)outlen, f) != NULL;
    pclose(f);
    if (ok)
        out[strcspn(out, "\n")] = '\0';
    return ok && out[0];
}

/* A small database: two groups' history, flushed to an SST by close. */
static void make_small_db(const char *dir)
{
    rc_persist *p = open_ok(dir);
    rc_persist_batch *b = ops->batch_begin(p);
    put_snapshot(b, "g");
    put_msgs(b, "g", 1, 10);
    commit_ok(p, b, RC_DURABILITY_NONE); /* no WAL: close flushes an SST */
    rc_store_close(p);
}

/* ---- tests ---- */

static void test_new_dir_format(void)
{
    char dir[PATH_LEN];
    new_path(dir, "new");
    rc_persist *p = open_ok(dir); /* missing directory: created */
    rc_store_close(p);
    CU_ASSERT_EQUAL(raw_format(dir, 0), RC_PERSIST_FORMAT);

    new_path(dir, "empty");
    CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0700), 0); /* existing empty directory: initialised */
    rc_store_close(open_ok(dir));
    CU_ASSERT_EQUAL(raw_format(dir, 0), RC_PERSIST_FORMAT);
}

static void test_prefix_groups_never_mix(void)
{
    rc_persist *p = open_new("prefix");
    rc_persist_batch *b = ops->batch_begin(p);
    put_msgs(b, "g", 1, 5);
    put_msgs(b, "g1", 1, 3);
    put_msgs(b, "a", 1, 4);
    put_msgs(b, "ab", 1, 2);
    put_msgs(b, "b", 1, 2);
    put_msgs(b, "\xff", UINT64_MAX - 1, UINT64_MAX); /* highest byte and seq: bound edge cases */
    commit_ok(p, b, RC_DURABILITY_BATCH);

    static const struct { const char *g; uint64_t first, last; } want[] = {
        { "g", 1, 5 }, { "g1", 1, 3 }, { "a", 1, 4 }, { "ab", 1, 2 }, { "b", 1, 2 },
        { "\xff", UINT64_MAX - 1, UINT64_MAX },
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        seen s = scan_of(p, want[i].g, 0, UINT64_MAX, 1000, 0);
        expect_run(&s, want[i].first, want[i].last);
    }
    seen none = scan_of(p, "g2", 0, UINT64_MAX, 1000, 0);
    CU_ASSERT_EQUAL(none.n, 0);
    none = scan_of(p, "ab1", 0, UINT64_MAX, 1000, 0);
    CU_ASSERT_EQUAL(none.n, 0);
    rc_store_close(p);
}

static void test_scan_bounds_limit_stop(void)
{
    rc_persist *p = open_new("scan");
    add_msgs(p, "s", 1, 100);
    add_msgs(p, "s0", 1, 100);

    seen s = scan_of(p, "s", 10, 20, 1000, 0);
    expect_run(&s, 10, 20);
    s = scan_of(p, "s", 10, 20, 5, 0); /* limit */
    expect_run(&s, 10, 14);
    s = scan_of(p, "s", 10, 20, 1000, 3); /* fn stops early */
    expect_run(&s, 10, 12);
    s = scan_of(p, "s", 95, UINT64_MAX, 1000, 0);
    expect_run(&s, 95, 100);
    s = scan_of(p, "s", 0, 1, 1000, 0);
    expect_run(&s, 1, 1);
    s = scan_of(p, "s", 20, 10, 1000, 0); /* from > to */
    CU_ASSERT_EQUAL(s.n, 0);
    s = scan_of(p, "s", 1, 100, 0, 0); /* limit 0 */
    CU_ASSERT_EQUAL(s.n, 0);
    s = scan_of(p, "s", 101, UINT64_MAX, 1000, 0);
    CU_ASSERT_EQUAL(s.n, 0);
    s = scan_of(p, "s", 50, 50, 1000, 0);
    expect_run(&s, 50, 50);

    char err[ERR_LEN] = "";
    seen bad = { .g = "" };
    CU_ASSERT_EQUAL(ops->scan(p, "", 0, 0, 10, 10, collect, &bad, err, sizeof(err)), -1);
    CU_ASSERT(err[0] != '\0');
    rc_store_close(p);
}

static void test_groups_and_seq_bounds(void)
{
    rc_persist *p = open_new("groups");
    rc_persist_batch *b = ops->batch_begin(p);
    static const char *const gs[] = { "g", "g1", "a", "ab", "quiet" };
    for (size_t i = 0; i < 5; i++)
        put_snapshot(b, gs[i]);
    put_msgs(b, "g", 3, 7);
    put_msgs(b, "g1", 1, 9);
    put_msgs(b, "a", 42, 42);
    put_msgs(b, "ab", 1, 2);
    put_msgs(b, "orphan", 1, 2); /* history without snapshot: not a group */
    commit_ok(p, b, RC_DURABILITY_BATCH);

    groups_seen got = load_of(p);
    CU_ASSERT_EQUAL(got.n, 5);
    expect_group(&got, "g", 3, 7);
    expect_group(&got, "g1", 1, 9);
    expect_group(&got, "a", 42, 42);
    expect_group(&got, "ab", 1, 2);
    expect_group(&got, "quiet", 0, 0);

    /* a snapshot is replaced, not duplicated */
    b = ops->batch_begin(p);
    ops->put_group(b, "g", 1, (const uint8_t *)"snap of g", 9);
    commit_ok(p, b, RC_DURABILITY_BATCH);
    CU_ASSERT_EQUAL(load_of(p).n, 5);
    rc_store_close(p);
}

/* Recovery finds the newest entry by stepping forward through a short
 * history and by a seek in a longer one: every length around the step
 * count, and holes left by retention, come out exact, in the memtable and
 * in SST files after a reopen. */
#define BOUNDS_GROUPS 600u
#define BOUNDS_LEN_MAX 40u /* history lengths 1..40 straddle the walk's 16 steps */

static uint64_t bounds_first(uint32_t i) { return 1u + (i % 7u) * 5u; }
static uint64_t bounds_last(uint32_t i) { return bounds_first(i) + (i % BOUNDS_LEN_MAX); }

typedef struct bounds_check {
    uint32_t n, bad;
} bounds_check;

/* A recovered group's name, and its index when the name is `prefix`
 * followed by a number below max; -1 when it is not. */
static int group_index(const rc_persist_group *grp, char prefix, unsigned max, char *name, size_t cap)
{
    char fmt[8] = { prefix, '%', 'u', '%', 'c', '\0' };
    unsigned i;
    char tail;
    snprintf(name, cap, "%.*s", (int)grp->g_len, grp->g);
    return sscanf(name, fmt, &i, &tail) == 1 && i < max ? (int)i : -1;
}

static int check_bounds(void *ud, const rc_persist_group *grp)
{
    bounds_check *c = ud;
    char name[32];
    int at = group_index(grp, 'b', BOUNDS_GROUPS, name, sizeof(name));
    if (at < 0) {
        c->bad++;
        return 0;
    }
    unsigned i = (unsigned)at;
    c->n++;
    uint64_t first = bounds_first(i), last = bounds_last(i);
    if (i % 3u == 0)
        first = last - (last - first) / 2; /* trimmed below */
    if (grp->oldest_seq != first || grp->newest_seq != last) {
        if (c->bad++ < 5)
            fprintf(stderr, "group %.*s: oldest %llu newest %llu, expected %llu %llu\n", (int)grp->g_len, grp->g,
                    (unsigned long long)grp->oldest_seq, (unsigned long long)grp->newest_seq,
                    (unsigned long long)first, (unsigned long long)last);
    }
    return 0;
}

static void test_seq_bounds_every_length(void)
{
    char dir[PATH_LEN];
    new_path(dir, "bounds");
    rc_persist *p = open_ok(dir);
    rc_persist_batch *b = ops->batch_begin(p);
    char g[32];
    for (uint32_t i = 0; i < BOUNDS_GROUPS; i++) {
        snprintf(g, sizeof(g), "b%u", i);
        put_snapshot(b, g);
        put_msgs(b, g, bounds_first(i), bounds_last(i));
        if (i % 3u == 0)
            ops->trim_before(b, g, (uint32_t)strlen(g), NULL,
                             bounds_last(i) - (bounds_last(i) - bounds_first(i)) / 2);
    }
    commit_ok(p, b, RC_DURABILITY_BATCH);
    for (int round = 0; round < 2; round++) {
        bounds_check c = { 0, 0 };
        char err[ERR_LEN] = "";
        CU_ASSERT_EQUAL(ops->load_groups(p, check_bounds, &c, err, sizeof(err)), 0);
        CU_ASSERT_EQUAL(c.n, BOUNDS_GROUPS);
        CU_ASSERT_EQUAL(c.bad, 0);
        rc_store_close(p);
        p = open_ok(dir); /* the second round reads SST files */
    }
    rc_store_close(p);
}

/* Recovery reads history once in key order, where groups come by tag,
 * not by id, and looks each group up from the walk over `groups`. Many
 * groups (tags interleaved with the ids' order) whose runs are spread over
 * two SST files and the memtable, of lengths on both sides of the walk's
 * steps, some trimmed in part or whole by a range delete in the memtable,
 * some without history, and history without a snapshot between them: every
 * group comes back once, in byte order of its id, with exact bounds, before
 * and after a reopen that replays the WAL. */
#define RI_GROUPS 400u
#define RI_LEN_MAX 90u /* history lengths 1..90: most runs are longer than the walk's steps */

static uint64_t ri_len(uint32_t i) { return i % 11u == 0 ? 0 : 1u + (i * 37u) % RI_LEN_MAX; }
static uint64_t ri_first(uint32_t i) { return 1u + i % 4u; }

/* The part of i's history written in round r (0, 1: SST files; 2: memtable). */
static void ri_round(uint32_t i, int r, uint64_t *from, uint64_t *to)
{
    uint64_t len = ri_len(i), f = ri_first(i);
    uint64_t cut[4] = { f, f + len / 3u, f + 2u * len / 3u, f + len };
    *from = cut[r];
    *to = cut[r + 1] - 1u; /* from > to: nothing this round */
}

/* Bounds after the trims of round 2: i % 17 loses all, i % 5 its older half. */
static void ri_expect(uint32_t i, uint64_t *oldest, uint64_t *newest)
{
    uint64_t len = ri_len(i), f = ri_first(i);
    *oldest = *newest = 0;
    if (len == 0 || i % 17u == 0)
        return;
    *oldest = i % 5u == 0 ? f + len / 2u : f;
    *newest = f + len - 1u;
}

typedef struct ri_check {
    uint32_t n, bad;
    char prev[32];
    bool seen[RI_GROUPS];
} ri_check;

static int ri_group(void *ud, const rc_persist_group *grp)
{
    ri_check *c = ud;
    char name[32];
    int at = group_index(grp, 'r', RI_GROUPS, name, sizeof(name));
    bool ordered = c->n == 0 || strcmp(c->prev, name) < 0;
    snprintf(c->prev, sizeof(c->prev), "%s", name);
    c->n++;
    char want[VAL_LEN];
    snprintf(want, sizeof(want), "snap of %s", name);
    if (at < 0 || c->seen[at] || !ordered ||
        grp->snapshot_len != strlen(want) || memcmp(grp->snapshot, want, grp->snapshot_len) != 0) {
        if (c->bad++ < 5)
            fprintf(stderr, "group %s: unexpected, repeated, out of order or with another snapshot\n", name);
        return 0;
    }
    c->seen[at] = true;
    uint64_t oldest, newest;
    ri_expect((unsigned)at, &oldest, &newest);
    if (grp->oldest_seq != oldest || grp->newest_seq != newest) {
        if (c->bad++ < 5)
            fprintf(stderr, "group %s: oldest %llu newest %llu, expected %llu %llu\n", name,
                    (unsigned long long)grp->oldest_seq, (unsigned long long)grp->newest_seq,
                    (unsigned long long)oldest, (unsigned long long)newest);
    }
    return 0;
}

static void test_recovery_interleaved_tags(void)
{
    char dir[PATH_LEN], g[32];
    new_path(dir, "interleave");
    rc_persist *p = open_ok(dir);
    for (int r = 0; r < 3; r++) {
        rc_persist_batch *b = ops->batch_begin(p);
        for (uint32_t i = 0; i < RI_GROUPS; i++) {
            snprintf(g, sizeof(g), "r%u", i);
            if (r == 0)
                put_snapshot(b, g);
            uint64_t from, to;
            ri_round(i, r, &from, &to);
            if (from <= to)
                put_msgs(b, g, from, to);
            if (r == 2 && ri_len(i) > 0 && (i % 17u == 0 || i % 5u == 0))
                ops->trim_before(b, g, (uint32_t)strlen(g), NULL,
                                 i % 17u == 0 ? ri_first(i) + ri_len(i) : ri_first(i) + ri_len(i) / 2u);
            if (i % 13u == 0 && r != 1) {
                snprintf(g, sizeof(g), "orphan%u", i); /* history without a snapshot: not a group */
                put_msgs(b, g, 1u + 3u * (uint64_t)r, 3u + 3u * (uint64_t)r);
            }
        }
        commit_ok(p, b, r < 2 ? RC_DURABILITY_NONE : RC_DURABILITY_BATCH);
        if (r < 2) {
            rc_store_close(p); /* without the WAL, closing writes the round's SST file */
            p = open_ok(dir);
        }
    }
    for (int round = 0; round < 2; round++) {
        ri_check c = { 0 };
        char err[ERR_LEN] = "";
        CU_ASSERT_EQUAL(ops->load_groups(p, ri_group, &c, err, sizeof(err)), 0);
        CU_ASSERT_EQUAL(c.n, RI_GROUPS);
        CU_ASSERT_EQUAL(c.bad, 0);
        rc_store_close(p);
        p = open_ok(dir); /* the second round: the memtable's round replayed from the WAL */
    }
    rc_store_close(p);
}

/* A history key that is not one recovery can read (too short for a tag,
 * length byte and seq) fails recovery with a message, instead of being
 * passed over or read as another group's. */
static void test_recovery_corrupt_history_key(void)
{
    char dir[PATH_LEN];
    new_path(dir, "badkey");
    rc_persist *p = open_ok(dir);
    add_msgs(p, "k", 1, 3);
    rc_persist_batch *b = ops->batch_begin(p);
    put_snapshot(b, "k");
    commit_ok(p, b, RC_DURABILITY_BATCH);
    rc_store_close(p);

    raw_db r;
    raw_open(&r, dir, N_FAMILIES, false, false);
    rocksdb_writeoptions_t *w = rocksdb_writeoptions_create();
    char *e = NULL;
    rocksdb_put_cf(r.db, w, r.h[2], "\0\1\2\3\4", 5, "x", 1, &e);
    CU_ASSERT_PTR_NULL(e);
    rocksdb_writeoptions_destroy(w);
    raw_close(&r);

    p = open_ok(dir);
    groups_seen gs = { 0 };
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL(ops->load_groups(p, collect_group, &gs, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "history key of 5 bytes: corrupt"));
    CU_ASSERT_EQUAL(gs.n, 0);
    rc_store_close(p);
}

/* History files carry a partitioned index and partitioned filters (a
 * whole filter of a file with many groups outgrows a shard of the block
 * cache and was read again by every recovery seek). Their table
 * properties say so: "# index partitions" appears only for a partitioned
 * index. */
static void test_history_index_partitioned(void)
{
    char dir[PATH_LEN];
    new_path(dir, "parts");
    rc_persist *p = open_ok(dir);
    rc_persist_batch *b = ops->batch_begin(p);
    char g[32];
    for (uint32_t i = 0; i < BOUNDS_GROUPS; i++) {
        snprintf(g, sizeof(g), "p%u", i);
        put_snapshot(b, g);
        put_msgs(b, g, 1, 3);
    }
    commit_ok(p, b, RC_DURABILITY_NONE);
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL(rc_ticklog_fold_all(p, err, sizeof(err)), 0); /* the messages into history records */
    rc_store_close(p); /* closing flushes the memtables to SST files */

    raw_db r;
    raw_open(&r, dir, N_FAMILIES, false, true);
    char *props = rocksdb_property_value_cf(r.db, r.h[2], "rocksdb.aggregated-table-properties");
    CU_ASSERT_PTR_NOT_NULL(props);
    if (props) {
        if (!strstr(props, "# index partitions"))
            fprintf(stderr, "history table properties: %s\n", props);
        CU_ASSERT_PTR_NOT_NULL(strstr(props, "# index partitions"));
        /* the fold made each group's 3 messages one record */
        char want[32];
        snprintf(want, sizeof(want), "# entries=%u;", BOUNDS_GROUPS);
        if (!strstr(props, want))
            fprintf(stderr, "history table properties: %s\n", props);
        CU_ASSERT_PTR_NOT_NULL(strstr(props, want));
        rocksdb_free(props);
    }
    raw_close(&r);
}

static void test_trim_before(void)
{
    rc_persist *p = open_new("trim");
    rc_persist_batch *b = ops->batch_begin(p);
    put_snapshot(b, "t");
    put_snapshot(b, "t1");
    put_msgs(b, "t", 1, 50);
    put_msgs(b, "t1", 1, 50);
    put_msgs(b, "u", 1, 5);
    commit_ok(p, b, RC_DURABILITY_BATCH);

    b = ops->batch_begin(p);
    uint8_t t_tag[RC_PERSIST_TAG_BYTES];
    ops->group_tag("t", 1, t_tag);
    ops->trim_before(b, "t", 1, t_tag, 20); /* with the tag computed before, as a shard trims */
    ops->trim_before(b, "u", 1, NULL, 0); /* no-op */
    commit_ok(p, b, RC_DURABILITY_BATCH);
    seen s = scan_of(p, "t", 0, UINT64_MAX, 1000, 0);
    expect_run(&s, 20, 50);
    s = scan_of(p, "t1", 0, UINT64_MAX, 1000, 0); /* a longer id sharing the prefix is untouched */
    expect_run(&s, 1, 50);
    s = scan_of(p, "u", 0, UINT64_MAX, 1000, 0);
    expect_run(&s, 1, 5);
    groups_seen got = load_of(p);
    expect_group(&got, "t", 20, 50);
    expect_group(&got, "t1", 1, 50);

    /* trim and append in one batch, as a shard does at retention */
    b = ops->batch_begin(p);
    put_msgs(b, "t", 51, 51);
    ops->trim_before(b, "t", 1, NULL, 51);
    commit_ok(p, b, RC_DURABILITY_BATCH);
    s = scan_of(p, "t", 0, UINT64_MAX, 1000, 0);
    expect_run(&s, 51, 51);

    b = ops->batch_begin(p);
    ops->trim_before(b, "t", 1, NULL, UINT64_MAX); /* everything */
    commit_ok(p, b, RC_DURABILITY_BATCH);
    got = load_of(p);
    expect_group(&got, "t", 0, 0);
    rc_store_close(p);
}

static void test_reopen_and_durability(void)
{
    char dir[PATH_LEN];
    new_path(dir, "reopen");
    rc_persist *p = open_ok(dir);
    static const rc_durability modes[] = { RC_DURABILITY_NONE, RC_DURABILITY_BATCH, RC_DURABILITY_SYNC };
    static const char *const gs[] = { "none", "batch", "sync" };
    for (int i = 0; i < 3; i++) {
        rc_persist_batch *b = ops->batch_begin(p);
        put_snapshot(b, gs[i]);
        put_msgs(b, gs[i], 1, 10);
        commit_ok(p, b, modes[i]);
    }
    commit_ok(p, ops->batch_begin(p), RC_DURABILITY_SYNC); /* an empty batch */
    rc_store_close(p);

    p = open_ok(dir);
    groups_seen got = load_of(p);
    CU_ASSERT_EQUAL(got.n, 3);
    for (int i = 0; i < 3; i++) {
        expect_group(&got, gs[i], 1, 10);
        seen s = scan_of(p, gs[i], 0, UINT64_MAX, 1000, 0);
        expect_run(&s, 1, 10);
    }
    rc_store_close(p);
}

static void test_poisoned_batch_and_abort(void)
{
    rc_persist *p = open_new("poison");
    char err[ERR_LEN] = "";
    char long_id[RC_STORE_GROUP_MAX + 2];
    memset(long_id, 'x', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';

    rc_persist_batch *b = ops->batch_begin(p);
    put_msgs(b, "ok", 1, 3);
    put_msgs(b, long_id, 1, 1); /* 256 bytes: no room in the length byte */
    CU_ASSERT_EQUAL(ops->batch_commit(p, b, RC_DURABILITY_BATCH, err, sizeof(err)), -1);
    printf("\n    refused as expected: %s\n   ", err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "256"));
    seen s = scan_of(p, "ok", 0, UINT64_MAX, 1000, 0);
    CU_ASSERT_EQUAL(s.n, 0); /* nothing of the batch was written */

    b = ops->batch_begin(p);
    ops->put_group(b, "", 0, (const uint8_t *)"x", 1);
    CU_ASSERT_EQUAL(ops->batch_commit(p, b, RC_DURABILITY_BATCH, err, sizeof(err)), -1);

    b = ops->batch_begin(p);
    put_msgs(b, "ok", 1, 3);
    ops->batch_abort(b);
    s = scan_of(p, "ok", 0, UINT64_MAX, 1000, 0);
    CU_ASSERT_EQUAL(s.n, 0);

    long_id[RC_STORE_GROUP_MAX] = '\0'; /* 255 bytes: the longest id that fits */
    b = ops->batch_begin(p);
    put_msgs(b, long_id, 1, 2);
    commit_ok(p, b, RC_DURABILITY_BATCH);
    s = scan_of(p, long_id, 0, UINT64_MAX, 1000, 0);
    expect_run(&s, 1, 2);
    rc_store_close(p);
}

static void test_wrong_format(void)
{
    char dir[PATH_LEN], want[64];
    new_path(dir, "format");
    rc_store_close(open_ok(dir));
    raw_format(dir, OTHER_FORMAT);
    snprintf(want, sizeof(want), "has format %u", OTHER_FORMAT);
    char reads[64];
    snprintf(reads, sizeof(reads), "this build reads %u", RC_PERSIST_FORMAT);
    open_fails(dir, want, reads);
    CU_ASSERT_EQUAL(raw_format(dir, 0), OTHER_FORMAT); /* refused without touching it */
    char err[ERR_LEN] = "";
    CU_ASSERT_PTR_NULL(rc_store_open_readonly(dir, err, sizeof(err)));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, want));
}

/* ---- the per-user index and read cursors (format 2) ---- */

typedef struct member_seen {
    uint32_t n;
    char g[4][16];
    uint64_t read[4], seq[4];
    char last[4][VAL_LEN];
} member_seen;

static int member_fn(void *ud, const rc_persist_member_group *mg)
{
    member_seen *w = ud;
    if (w->n < 4) {
        snprintf(w->g[w->n], sizeof(w->g[0]), "%.*s", (int)mg->g_len, mg->g);
        w->read[w->n] = mg->read;
        w->seq[w->n] = mg->seq;
        snprintf(w->last[w->n], VAL_LEN, "%.*s", mg->map ? (int)mg->map_len : 0, mg->map ? (const char *)mg->map : "");
    }
    w->n++;
    return 0;
}

static member_seen groups_of(rc_persist *p, const char *user, uint32_t max, bool *more)
{
    member_seen w = { 0 };
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL(ops->user_groups(p, user, (uint32_t)strlen(user), max, member_fn, &w, more, err, sizeof(err)), 0);
    return w;
}

static void member(rc_persist *p, const char *g, const char *user, bool is)
{
    rc_persist_batch *b = ops->batch_begin(p);
    ops->put_member(b, g, (uint32_t)strlen(g), user, (uint32_t)strlen(user), is);
    commit_ok(p, b, RC_DURABILITY_BATCH);
}

static void cursor(rc_persist *p, const char *g, const char *user, uint64_t seq)
{
    rc_persist_batch *b = ops->batch_begin(p);
    ops->put_read(b, g, (uint32_t)strlen(g), user, (uint32_t)strlen(user), seq);
    commit_ok(p, b, RC_DURABILITY_BATCH);
}

static uint64_t cursor_of(rc_persist *p, const char *g, const char *user)
{
    uint64_t seq = 12345;
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL(ops->get_read(p, g, (uint32_t)strlen(g), user, (uint32_t)strlen(user), &seq, err, sizeof(err)), 0);
    return seq;
}

static void test_member_index_and_cursors(void)
{
    rc_persist *p = open_new("members");
    member(p, "g2", "alice", true);
    member(p, "g1", "alice", true);
    member(p, "g1", "al", true);     /* a user whose name is a prefix of another's */
    member(p, "g3", "alicex", true);
    add_msgs(p, "g1", 1, 3);
    cursor(p, "g1", "alice", 2);
    cursor(p, "g9", "alice", 7);     /* a cursor outlives the membership: not listed */
    bool more = true;
    member_seen w = groups_of(p, "alice", 10, &more);
    CU_ASSERT_FALSE(more);
    CU_ASSERT_EQUAL_FATAL(w.n, 2);
    CU_ASSERT_STRING_EQUAL(w.g[0], "g1"); /* byte order of the ids */
    CU_ASSERT_EQUAL(w.read[0], 2);
    CU_ASSERT_EQUAL(w.seq[0], 3);
    CU_ASSERT_STRING_EQUAL(w.last[0], "msg g1 #3");
    CU_ASSERT_STRING_EQUAL(w.g[1], "g2");
    CU_ASSERT_EQUAL(w.read[1], 0);
    CU_ASSERT_EQUAL(w.seq[1], 0);
    CU_ASSERT_STRING_EQUAL(w.last[1], "");
    w = groups_of(p, "al", 10, &more);
    CU_ASSERT_EQUAL(w.n, 1);
    CU_ASSERT_STRING_EQUAL(w.g[0], "g1");
    CU_ASSERT_EQUAL(w.read[0], 0); /* alice's cursor is not al's */
    w = groups_of(p, "alice", 1, &more);
    CU_ASSERT_EQUAL(w.n, 1);
    CU_ASSERT_TRUE(more);
    CU_ASSERT_EQUAL(cursor_of(p, "g1", "alice"), 2);
    CU_ASSERT_EQUAL(cursor_of(p, "g9", "alice"), 7);
    CU_ASSERT_EQUAL(cursor_of(p, "g1", "bob"), 0);
    member(p, "g2", "alice", false);
    w = groups_of(p, "alice", 10, &more);
    CU_ASSERT_EQUAL(w.n, 1);
    w = groups_of(p, "nobody", 10, &more);
    CU_ASSERT_EQUAL(w.n, 0);
    rc_store_close(p);
    /* survives a reopen */
}

/* A format-1 directory as the build before read cursors left it: five
 * families, marker 1, a snapshot of `room` (members alice and bob) and
 * three history entries. */
static void raw_v1(const char *dir)
{
    raw_db r;
    raw_open(&r, dir, V1_FAMILIES, true, false);
    rocksdb_t *db = r.db;
    rocksdb_column_family_handle_t **h = r.h;
    char *e = NULL;
    rocksdb_writeoptions_t *w = rocksdb_writeoptions_create();
    rc_group *g = rc_group_new("room", 4, 16, 16);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    rc_strmap_put(&g->members, "alice", 5, 1);
    rc_strmap_put(&g->members, "bob", 3, 1);
    g->last_seq = 3;
    rc_buf snap;
    rc_buf_init(&snap);
    CU_ASSERT_EQUAL_FATAL(rc_snapshot_encode(g, &snap), 0);
    rocksdb_put_cf(db, w, h[1], "room", 4, (const char *)snap.data, snap.len, &e);
    for (char seq = 1; seq <= 3; seq++) {
        char key[] = { 4, 'r', 'o', 'o', 'm', 0, 0, 0, 0, 0, 0, 0, seq };
        rocksdb_put_cf(db, w, h[2], key, sizeof(key), "old", 3, &e);
    }
    const char v1[4] = { 0, 0, 0, 1 };
    rocksdb_put_cf(db, w, h[4], "format", 6, v1, 4, &e);
    CU_ASSERT_PTR_NULL(e);
    rc_buf_free(&snap);
    rc_group_free(g);
    rocksdb_writeoptions_destroy(w);
    raw_close(&r);
}

static void test_migrate_v1(void)
{
    char dir[PATH_LEN], err[ERR_LEN] = "";
    new_path(dir, "v1");
    raw_v1(dir);
    CU_ASSERT_PTR_NULL(rc_store_open_readonly(dir, err, sizeof(err))); /* read-only cannot migrate */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "migrated when ringcastd"));
    rc_persist *p = open_ok(dir);
    bool more;
    member_seen w = groups_of(p, "alice", 10, &more);
    CU_ASSERT_EQUAL_FATAL(w.n, 1);
    CU_ASSERT_STRING_EQUAL(w.g[0], "room");
    CU_ASSERT_EQUAL(w.seq[0], 3);
    CU_ASSERT_EQUAL(w.read[0], 0);
    CU_ASSERT_STRING_EQUAL(w.last[0], "old");
    CU_ASSERT_EQUAL(groups_of(p, "bob", 10, &more).n, 1);
    CU_ASSERT_EQUAL(groups_of(p, "carol", 10, &more).n, 0);
    cursor(p, "room", "alice", 2);
    rc_store_close(p);
    CU_ASSERT_EQUAL(raw_format(dir, 0), RC_PERSIST_FORMAT);
    p = open_ok(dir); /* the current format now: opened as it is */
    CU_ASSERT_EQUAL(cursor_of(p, "room", "alice"), 2);
    CU_ASSERT_EQUAL(groups_of(p, "alice", 10, &more).n, 1);
    rc_store_close(p);
}

/* Format 2 written without the store (untagged history keys, rocks.h):
 * g's entries from..to with val_of values, through the WAL or not (then
 * close flushes them to an SST); `snapshot` also puts g's snapshot; the
 * format marker is set to 2. Returns the history keys whose first byte is
 * not 0 (untagged) found after the writes. */
static unsigned raw_v2(const char *dir, const char *g, uint64_t from, uint64_t to, bool wal, bool snapshot)
{
    raw_db rd;
    raw_open(&rd, dir, N_FAMILIES, true, false);
    rocksdb_t *db = rd.db;
    rocksdb_column_family_handle_t **h = rd.h;
    char *e = NULL;
    rocksdb_writeoptions_t *w = rocksdb_writeoptions_create();
    rocksdb_writeoptions_disable_WAL(w, !wal);
    size_t g_len = strlen(g);
    for (uint64_t seq = from; seq <= to && g_len; seq++) {
        char key[1 + 16 + 8], v[VAL_LEN];
        key[0] = (char)g_len;
        memcpy(key + 1, g, g_len);
        for (int i = 0; i < 8; i++)
            key[1 + g_len + i] = (char)(seq >> (56 - 8 * i));
        val_of(v, g, seq);
        rocksdb_put_cf(db, w, h[2], key, 1 + g_len + 8, v, strlen(v), &e);
    }
    if (snapshot) {
        char v[VAL_LEN];
        snprintf(v, sizeof(v), "snap of %s", g);
        rocksdb_put_cf(db, w, h[1], g, g_len, v, strlen(v), &e);
    }
    const char v2[4] = { 0, 0, 0, 2 };
    rocksdb_put_cf(db, w, h[4], "format", 6, v2, 4, &e);
    CU_ASSERT_PTR_NULL(e);
    unsigned untagged = 0;
    rocksdb_readoptions_t *r = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db, r, h[2]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen;
        untagged += rocksdb_iter_key(it, &klen)[0] != 0;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(r);
    rocksdb_writeoptions_destroy(w);
    raw_close(&rd);
    return untagged;
}

static void test_migrate_v2(void)
{
    char dir[PATH_LEN], err[ERR_LEN] = "";
    new_path(dir, "v2");
    raw_v2(dir, "g", 1, 5, false, true); /* in an SST */
    CU_ASSERT_EQUAL(raw_v2(dir, "g1", 1, 3, true, true), 8); /* in the WAL; "g" is a prefix of "g1" */
    CU_ASSERT_PTR_NULL(rc_store_open_readonly(dir, err, sizeof(err))); /* read-only cannot migrate */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "migrated when ringcastd"));
    CU_ASSERT_EQUAL(raw_format(dir, 0), RC_PERSIST_FORMAT_V2); /* refused without touching it */

    rc_persist *p = open_ok(dir);
    groups_seen gs = load_of(p);
    CU_ASSERT_EQUAL(gs.n, 2);
    expect_group(&gs, "g", 1, 5);
    expect_group(&gs, "g1", 1, 3);
    seen s = scan_of(p, "g", 1, UINT64_MAX, 100, 0);
    expect_run(&s, 1, 5);
    s = scan_of(p, "g1", 1, UINT64_MAX, 100, 0);
    expect_run(&s, 1, 3);
    add_msgs(p, "g", 6, 7);
    rc_store_close(p);
    CU_ASSERT_EQUAL(raw_format(dir, 0), RC_PERSIST_FORMAT);

    /* A migration cut short (marker still 2, untagged entries left) is done
     * again, over what it already wrote; only untagged keys were left. */
    CU_ASSERT_EQUAL(raw_v2(dir, "g1", 4, 4, true, false), 1);
    p = open_ok(dir);
    gs = load_of(p);
    expect_group(&gs, "g", 1, 7);
    expect_group(&gs, "g1", 1, 4);
    s = scan_of(p, "g", 1, UINT64_MAX, 100, 0);
    expect_run(&s, 1, 7);
    s = scan_of(p, "g1", 1, UINT64_MAX, 100, 0);
    expect_run(&s, 1, 4);
    rc_store_close(p);
    CU_ASSERT_EQUAL(raw_format(dir, 0), RC_PERSIST_FORMAT);
}

/* A RocksDB database made without the store: the given families (default
 * always), optionally one history entry, never a format marker. */
static void raw_create(const char *dir, int n_families, bool history_entry)
{
    raw_db r;
    raw_open(&r, dir, n_families, true, false);
    if (history_entry) {
        char *e = NULL;
        rocksdb_writeoptions_t *w = rocksdb_writeoptions_create();
        rocksdb_put_cf(r.db, w, r.h[2], "\001g\0\0\0\0\0\0\0\001", 10, "x", 1, &e);
        rocksdb_writeoptions_destroy(w);
        CU_ASSERT_PTR_NULL(e);
    }
    raw_close(&r);
}

static void raw_add_family(const char *dir, const char *name)
{
    raw_db r;
    raw_open(&r, dir, N_FAMILIES, false, false);
    char *e = NULL;
    rocksdb_column_family_handle_t *extra = rocksdb_create_column_family(r.db, r.o, name, &e);
    CU_ASSERT_PTR_NULL(e);
    rocksdb_column_family_handle_destroy(extra);
    raw_close(&r);
}

static void test_interrupted_or_foreign_database(void)
{
    char dir[PATH_LEN];
    new_path(dir, "interrupted");
    raw_create(dir, N_FAMILIES, false); /* families made, marker not yet written */
    rc_store_close(open_ok(dir));
    CU_ASSERT_EQUAL(raw_format(dir, 0), RC_PERSIST_FORMAT);

    new_path(dir, "nomarker");
    raw_create(dir, N_FAMILIES, true);
    open_fails(dir, "no format marker", "holds data");

    new_path(dir, "newer");
    rc_store_close(open_ok(dir));
    raw_add_family(dir, "added_by_a_newer_build");
    rc_persist *p = open_ok(dir); /* opened along, left alone */
    add_msgs(p, "g", 1, 2);
    rc_store_close(p);
    rc_store_close(open_ok(dir));

    new_path(dir, "otherdb");
    raw_create(dir, 1, false); /* someone else's RocksDB */
    open_fails(dir, "without the column family 'groups'", NULL);
}

static void test_corrupt_or_missing_files(void)
{
    char dir[PATH_LEN];
    new_path(dir, "current");
    make_small_db(dir);
    write_file(dir, "CURRENT", "garbage without newline");
    open_fails(dir, dir, "CURRENT");

    char name[256];
    new_path(dir, "manifest");
    make_small_db(dir);
    CU_ASSERT_FATAL(find_file(dir, "MANIFEST-", true, name, sizeof(name)));
    char path[PATH_LEN + 300];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    CU_ASSERT_EQUAL(unlink(path), 0);
    open_fails(dir, dir, NULL);

    new_path(dir, "sst");
    make_small_db(dir);
    CU_ASSERT_FATAL(find_file(dir, ".sst", false, name, sizeof(name)));
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    CU_ASSERT_EQUAL(unlink(path), 0);
    open_fails(dir, dir, NULL);

    new_path(dir, "nocurrent");
    make_small_db(dir);
    snprintf(path, sizeof(path), "%s/CURRENT", dir);
    CU_ASSERT_EQUAL(unlink(path), 0);
    open_fails(dir, dir, "no CURRENT");
}

static void test_foreign_directory(void)
{
    char dir[PATH_LEN];
    new_path(dir, "foreign");
    CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0700), 0);
    write_file(dir, "notes.txt", "not a database\n");
    open_fails(dir, dir, "not empty");
    char name[256];
    CU_ASSERT_FALSE(find_file(dir, "CURRENT", true, name, sizeof(name))); /* nothing created */

    new_path(dir, "file");
    CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0700), 0);
    char path[PATH_LEN + 16];
    snprintf(path, sizeof(path), "%s/plain", dir);
    write_file(dir, "plain", "x");
    open_fails(path, path, "not a directory");

    snprintf(path, sizeof(path), "%s/no/such/parent", root);
    open_fails(path, path, NULL);

    char err[ERR_LEN] = "";
    CU_ASSERT_PTR_NULL(rc_store_open("", NULL, err, sizeof(err)));
    rc_store_options o;
    rc_store_options_default(&o);
    o.block_cache_mb = 0;
    new_path(dir, "badopt");
    CU_ASSERT_PTR_NULL(rc_store_open(dir, &o, err, sizeof(err)));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cache"));
}

/* Runs rc_store_open(dir) as user nobody in a child; returns the message
 * (empty when it opened). Root ignores permissions, so the test drops them. */
static void open_as_nobody(const char *dir, char *err, size_t errlen)
{
    int fd[2];
    CU_ASSERT_EQUAL_FATAL(pipe(fd), 0);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        close(fd[0]);
        char msg[ERR_LEN] = "";
        if (setgid(NOBODY_ID) != 0 || setuid(NOBODY_ID) != 0)
            snprintf(msg, sizeof(msg), "setuid failed");
        else {
            rc_persist *p = rc_store_open(dir, NULL, msg, sizeof(msg));
            if (p)
                msg[0] = '\0';
            rc_store_close(p);
        }
        ssize_t w = write(fd[1], msg, strlen(msg));
        (void)w;
        _exit(0); /* no exit handlers: RocksDB's belong to the parent */
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < errlen && (r = read(fd[0], err + n, errlen - 1 - n)) > 0)
        n += (size_t)r;
    err[n] = '\0';
    close(fd[0]);
    waitpid(pid, NULL, 0);
}

static void test_no_permission(void)
{
    char dir[PATH_LEN], err[ERR_LEN] = "";
    new_path(dir, "perm");
    make_small_db(dir);
    if (geteuid() != 0) {
        CU_ASSERT_EQUAL_FATAL(chmod(dir, 0), 0);
        open_fails(dir, dir, "Permission denied");
        CU_ASSERT_EQUAL(chmod(dir, 0700), 0);
        return;
    }
    /* as root: let nobody reach the directory, then deny it the directory... */
    CU_ASSERT_EQUAL_FATAL(chmod(root, 0711), 0);
    CU_ASSERT_EQUAL_FATAL(chmod(dir, 0700), 0);
    open_as_nobody(dir, err, sizeof(err));
    printf("\n    refused as expected (user nobody): %s\n   ", err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, dir));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "Permission denied"));
    /* ...then only RocksDB's files: the error now comes from RocksDB */
    CU_ASSERT_EQUAL_FATAL(chmod(dir, 0777), 0);
    char path[PATH_LEN + 16];
    snprintf(path, sizeof(path), "%s/CURRENT", dir);
    CU_ASSERT_EQUAL_FATAL(chmod(path, 0600), 0);
    open_as_nobody(dir, err, sizeof(err));
    printf("\n    refused as expected (user nobody): %s\n   ", err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, dir));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "Permission denied"));
    CU_ASSERT_EQUAL(chmod(root, 0700), 0);
}

static void test_readonly(void)
{
    char dir[PATH_LEN], err[ERR_LEN] = "";
    new_path(dir, "ro");
    CU_ASSERT_PTR_NULL(rc_store_open_readonly(dir, err, sizeof(err))); /* missing: nothing to read */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "read-only"));

    rc_persist *w = open_ok(dir);
    rc_persist_batch *b = ops->batch_begin(w);
    put_snapshot(b, "g");
    put_msgs(b, "g", 1, 10);
    commit_ok(w, b, RC_DURABILITY_BATCH); /* in the WAL only: the reader replays it */

    rc_persist *r = rc_store_open_readonly(dir, err, sizeof(err));
    if (!r)
        fprintf(stderr, "readonly: %s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    seen s = scan_of(r, "g", 0, UINT64_MAX, 1000, 0);
    expect_run(&s, 1, 10);
    groups_seen got = load_of(r);
    expect_group(&got, "g", 1, 10);
    b = ops->batch_begin(r);
    put_msgs(b, "g", 11, 11);
    CU_ASSERT_EQUAL(ops->batch_commit(r, b, RC_DURABILITY_BATCH, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "read-only"));
    rc_store_close(r);
    rc_store_close(w);
}

static void test_stats(void)
{
    rc_persist *p = open_new("stats");
    add_msgs(p, "g", 1, 100);
    seen s = scan_of(p, "g", 1, 100, 1000, 0);
    CU_ASSERT_EQUAL(s.n, 100);

    size_t cap = 1u << 20;
    char *buf = malloc(cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    int n = rc_store_stats(p, buf, cap);
    CU_ASSERT(n > 0 && (size_t)n < cap);
    CU_ASSERT_EQUAL((size_t)n, strlen(buf));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "cf history:"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, " crc32c "));
    /* one commit: one tick record in the log's one segment, its 100
     * messages in the tick log's table until a fold; RocksDB got the
     * format marker alone */
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "rocksdb.number.keys.written COUNT : 1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "tick_log records=1 folds=0 segments_folded=0 folded_records=0 folded_messages=0"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "table_entries=100 "));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "table_groups=1 fold_batch=0 segments=1 disk="));
    char small[32];
    CU_ASSERT(rc_store_stats(p, small, sizeof(small)) > (int)sizeof(small)); /* truncated, full length told */
    CU_ASSERT_EQUAL(strlen(small), sizeof(small) - 1);
    CU_ASSERT_EQUAL(rc_store_stats(NULL, small, sizeof(small)), -1);
    printf("\n    report: %d bytes\n   ", n);
    free(buf);
    rc_store_close(p);
}

/* ---- the WAL's checksum (crc32c.c) ---- */

#define CRC_MAX_LEN 300u   /* every length up to this */
#define CRC_ALIGNS 8u      /* at every offset in a word */

/* What every CRC32C must give: RFC 3720 B.4 and the usual check value.
 * Then the library's own function on random buffers of every length at
 * every alignment, whole and continued from a split, and the bitwise
 * fallback on the same buffers: same values, so WAL files written by
 * either read back with the other. Last, RocksDB itself binds to this
 * executable's definition. */
static void test_crc32c(void)
{
    uint8_t buf[32];
    memset(buf, 0, sizeof(buf));
    CU_ASSERT_EQUAL(rc_store_crc32c(0, buf, sizeof(buf)), 0x8a9136aau);
    memset(buf, 0xff, sizeof(buf));
    CU_ASSERT_EQUAL(rc_store_crc32c(0, buf, sizeof(buf)), 0x62a8ab43u);
    for (unsigned i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)i;
    CU_ASSERT_EQUAL(rc_store_crc32c(0, buf, sizeof(buf)), 0x46dd794eu);
    for (unsigned i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(31u - i);
    CU_ASSERT_EQUAL(rc_store_crc32c(0, buf, sizeof(buf)), 0x113fdb5cu);
    CU_ASSERT_EQUAL(rc_store_crc32c(0, "123456789", 9), 0xe3069283u);
    CU_ASSERT_EQUAL(rc_store_crc32c(0x1234u, "", 0), 0x1234u);

    rc_store_crc32c_fn lib = rc_store_crc32c_library();
    CU_ASSERT_PTR_NOT_NULL_FATAL(lib);
    char big[CRC_MAX_LEN + CRC_ALIGNS];
    srand(15);
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(rand() & 0xff);
    unsigned bad = 0;
    for (unsigned a = 0; a < CRC_ALIGNS; a++)
        for (unsigned n = 0; n <= CRC_MAX_LEN; n++) {
            const char *p = big + a;
            uint32_t want = lib(0, p, n);
            if (rc_store_crc32c(0, p, n) != want || rc_store_crc32c_bitwise(0, p, n) != want)
                bad++;
            unsigned cut = n / 3;
            if (rc_store_crc32c(rc_store_crc32c(0, p, cut), p + cut, n - cut) != want)
                bad++;
        }
    CU_ASSERT_EQUAL(bad, 0);

    void *bound = dlsym(RTLD_DEFAULT, RC_STORE_CRC32C_SYMBOL);
    CU_ASSERT_PTR_NOT_NULL(bound);
    CU_ASSERT_PTR_NOT_EQUAL(bound, (void *)lib); /* the executable's definition, not the library's */
    CU_ASSERT_EQUAL(((rc_store_crc32c_fn)bound)(0, "123456789", 9), 0xe3069283u);
    const char *impl = rc_store_crc32c_impl();
    CU_ASSERT(strcmp(impl, "sse4.2") == 0 || strcmp(impl, "library") == 0 || strcmp(impl, "bitwise") == 0);
    printf("\n    crc32c: %s\n   ", impl);
}

/* ---- level 0 (l0_compaction_files) ---- */

#define L0_BODY_BYTES 4000u   /* a message */
#define L0_TICK_MSGS 64u      /* messages per commit, over L0_GROUPS groups */
#define L0_GROUPS 16u
#define L0_WANT_FILES 6u      /* more level-0 files than RocksDB's own trigger of 4 */
#define L0_MAX_COMMITS 2000u  /* about 500 MB: the bound if flushes never came */
#define L0_WAIT_MS 20000u     /* for background flushes and compactions */
#define L0_POLL_MS 20u
#define L0_SETTLE_MS 1500u

static uint64_t l0_files_of(rc_persist *p)
{
    uint64_t n = UINT64_MAX;
    CU_ASSERT_EQUAL(rc_store_l0_files(p, &n), 0);
    return n;
}

/* The history family's trigger as RocksDB wrote it into the newest OPTIONS file. */
static int l0_trigger_in_options(const char *dir)
{
    char cmd[PATH_LEN + 256];
    snprintf(cmd, sizeof(cmd),
             "f=$(ls '%s'/OPTIONS-* | sort | tail -n 1); awk '/^\\[CFOptions \"history\"\\]/ {h=1; next} "
             "/^\\[/ {h=0} h && /level0_file_num_compaction_trigger=/ {split($0, a, \"=\"); print a[2]}' \"$f\"",
             dir);
    FILE *f = popen(cmd, "r");
    int v = -1;
    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = -1;
        pclose(f);
    }
    return v;
}

typedef struct l0_check {
    const uint64_t *next; /* per group: its newest seq + 1 */
    uint32_t n, bad;
} l0_check;

static int check_l0_group(void *ud, const rc_persist_group *grp)
{
    l0_check *c = ud;
    char name[16];
    int at = group_index(grp, 'l', L0_GROUPS, name, sizeof(name));
    c->n++;
    if (at < 0 || grp->oldest_seq != 1 || grp->newest_seq != c->next[at] - 1)
        c->bad++;
    return 0;
}

/* Out-of-range values are refused by name; the default reaches RocksDB;
 * with the largest value the flushed files stay in level 0 past RocksDB's
 * own trigger, and reopened with the smallest, compaction takes them to
 * the level below. Every message still reads back. */
static void test_l0_compaction_files(void)
{
    char dir[PATH_LEN], err[ERR_LEN] = "";
    rc_store_options o;
    rc_store_options_default(&o);
    CU_ASSERT_EQUAL(o.l0_compaction_files, 12);
    const uint32_t bad[] = { 0, RC_STORE_L0_FILES_MIN - 1, RC_STORE_L0_FILES_MAX + 1 };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o.l0_compaction_files = bad[i];
        new_path(dir, "l0bad");
        CU_ASSERT_PTR_NULL(rc_store_open(dir, &o, err, sizeof(err)));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "l0_compaction_files must be in 2..64"));
    }

    new_path(dir, "l0default");
    rc_persist *p = open_ok(dir);
    CU_ASSERT_EQUAL(l0_trigger_in_options(dir), 12);
    CU_ASSERT_EQUAL(l0_files_of(p), 0);
    rc_store_close(p);
    uint64_t n = 0;
    CU_ASSERT_EQUAL(rc_store_l0_files(NULL, &n), -1);

    rc_store_options_default(&o);
    o.l0_compaction_files = RC_STORE_L0_FILES_MAX;
    o.write_buffer_mb = 2;  /* 1 MiB memtables: a flush every MiB or so */
    o.tick_log_mb = 1;
    new_path(dir, "l0many");
    p = rc_store_open(dir, &o, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(l0_trigger_in_options(dir), (int)RC_STORE_L0_FILES_MAX);
    static char body[L0_BODY_BYTES];
    memset(body, 'b', sizeof(body));
    uint64_t next[L0_GROUPS];
    char g[16];
    for (uint32_t i = 0; i < L0_GROUPS; i++)
        next[i] = 1;
    uint32_t commits = 0;
    uint64_t files = 0;
    for (uint32_t waited = 0; files < L0_WANT_FILES && waited < L0_WAIT_MS;) {
        if (commits < L0_MAX_COMMITS) {
            rc_persist_batch *b = ops->batch_begin(p);
            for (uint32_t k = 0; k < L0_TICK_MSGS; k++) {
                uint32_t i = k % L0_GROUPS;
                snprintf(g, sizeof(g), "l%u", i);
                if (next[i] == 1)
                    put_snapshot(b, g);
                ops->put_msg(b, g, (uint32_t)strlen(g), NULL, next[i]++, (const uint8_t *)body, sizeof(body));
            }
            commit_ok(p, b, RC_DURABILITY_BATCH);
            commits++;
        } else {
            usleep(L0_POLL_MS * 1000u);
            waited += L0_POLL_MS;
        }
        files = l0_files_of(p);
    }
    printf("\n    %u commits: %llu files in level 0\n   ", commits, (unsigned long long)files);
    CU_ASSERT(files >= L0_WANT_FILES);
    usleep(L0_SETTLE_MS * 1000u); /* time enough for a compaction that had started */
    CU_ASSERT(l0_files_of(p) >= files);
    rc_store_close(p);

    o.l0_compaction_files = RC_STORE_L0_FILES_MIN;
    p = rc_store_open(dir, &o, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    files = l0_files_of(p);
    for (uint32_t waited = 0; files >= RC_STORE_L0_FILES_MIN && waited < L0_WAIT_MS; waited += L0_POLL_MS) {
        usleep(L0_POLL_MS * 1000u);
        files = l0_files_of(p);
    }
    CU_ASSERT(files < RC_STORE_L0_FILES_MIN);
    l0_check c = { next, 0, 0 };
    CU_ASSERT_EQUAL(ops->load_groups(p, check_l0_group, &c, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(c.n, L0_GROUPS);
    CU_ASSERT_EQUAL(c.bad, 0);
    rc_store_close(p);
}

/* ---- scale ---- */

typedef struct scale_check {
    uint32_t groups, bad;
} scale_check;

static int check_scale_group(void *ud, const rc_persist_group *grp)
{
    scale_check *c = ud;
    c->groups++;
    if (grp->oldest_seq != 1 || grp->newest_seq != SCALE_MSGS / SCALE_GROUPS || grp->snapshot_len != 8)
        c->bad++;
    return 0;
}

static int count_entry(void *ud, uint64_t seq, const uint8_t *map, uint32_t len)
{
    (void)seq, (void)map;
    *(uint32_t *)ud += len == SCALE_BODY;
    return 0;
}

static void test_scale(void)
{
    char dir[PATH_LEN], g[32];
    new_path(dir, "scale");
    uint8_t body[SCALE_BODY];
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (uint8_t)(i * 7);
    const uint32_t per_group = SCALE_MSGS / SCALE_GROUPS;

    double t0 = now_s();
    rc_persist *p = open_ok(dir);
    rc_persist_batch *b = ops->batch_begin(p);
    uint32_t in_batch = 0;
    /* round-robin over groups, as messages arrive in a busy server */
    for (uint32_t seq = 1; seq <= per_group; seq++) {
        for (uint32_t i = 0; i < SCALE_GROUPS; i++) {
            int glen = snprintf(g, sizeof(g), "room-%u", i);
            ops->put_msg(b, g, (uint32_t)glen, NULL, seq, body, sizeof(body));
            if (seq == per_group)
                ops->put_group(b, g, (uint32_t)glen, (const uint8_t *)"snapshot", 8);
            if (++in_batch == SCALE_BATCH) {
                commit_ok(p, b, RC_DURABILITY_BATCH);
                b = ops->batch_begin(p);
                in_batch = 0;
            }
        }
    }
    commit_ok(p, b, RC_DURABILITY_BATCH);
    double t_write = now_s() - t0;
    rc_store_close(p);

    t0 = now_s();
    p = open_ok(dir);
    double t_open = now_s() - t0;
    t0 = now_s();
    scale_check c = { 0 };
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL(ops->load_groups(p, check_scale_group, &c, err, sizeof(err)), 0);
    double t_load = now_s() - t0;
    CU_ASSERT_EQUAL(c.groups, SCALE_GROUPS);
    CU_ASSERT_EQUAL(c.bad, 0);

    t0 = now_s();
    uint32_t scanned = 0;
    for (uint32_t i = 0; i < SCALE_GROUPS; i++) {
        snprintf(g, sizeof(g), "room-%u", i);
        CU_ASSERT_EQUAL(ops->scan(p, g, (uint32_t)strlen(g), per_group - 49, UINT64_MAX, 1000, count_entry,
                                  &scanned, err, sizeof(err)),
                        0);
    }
    double t_scan = now_s() - t0;
    CU_ASSERT_EQUAL(scanned, SCALE_GROUPS * 50);
    rc_store_close(p);
    printf("\n    %u msgs / %u groups: write %.2f s (%.0f msg/s, batches of %u), reopen %.3f s, "
           "load_groups %.3f s, %u scans of 50 %.3f s",
           SCALE_MSGS, SCALE_GROUPS, t_write, SCALE_MSGS / t_write, SCALE_BATCH, t_open, t_load, SCALE_GROUPS,
           t_scan);
    printf("\n   ");
    CU_ASSERT(t_write + t_open + t_load < 60.0);
}

/* ---- setup ---- */


/* ---- the tick log (format 5) ---- */

#define TL_GROUPS 8u
#define TL_MSGS 6000u   /* per group: ~48,000 messages, ~2 MB of records: folds with tick_log_mb 1 */
#define TL_TICK 1000u   /* messages per commit, spread over the groups */
#define TL_TRIMMED 3u   /* group t3 is trimmed ... */
#define TL_TRIM_AT 3001u /* ... to seq 3001, after the first fold */

static rc_ticklog_stats stats_view(rc_persist *p)
{
    rc_ticklog_stats v;
    rc_ticklog_stats_read(p, &v);
    return v;
}

static rc_persist *open_folding(const char *dir, bool readonly)
{
    char err[ERR_LEN] = "";
    rc_store_options o;
    rc_store_options_default(&o);
    o.tick_log_mb = 1; /* segments of 64 KiB, the oldest folded past 1 MiB */
    rc_persist *p = readonly ? rc_store_open_readonly(dir, err, sizeof(err)) : rc_store_open(dir, &o, err, sizeof(err));
    if (!p)
        fprintf(stderr, "open %s: %s\n", dir, err);
    return p;
}

/* Writes TL_GROUPS groups t0.. of TL_MSGS messages each, round robin in
 * commits of TL_TICK, with t3 trimmed late; returns the store's counters. */
static rc_ticklog_stats write_tick_groups(rc_persist *p)
{
    char g[16];
    uint64_t next[TL_GROUPS];
    for (uint32_t i = 0; i < TL_GROUPS; i++)
        next[i] = 1;
    bool first = true, trimmed = false;
    for (uint32_t done = 0; done < TL_GROUPS * TL_MSGS; first = false) {
        rc_persist_batch *b = ops->batch_begin(p);
        for (uint32_t k = 0; k < TL_TICK && done < TL_GROUPS * TL_MSGS; k++, done++) {
            uint32_t i = done % TL_GROUPS;
            snprintf(g, sizeof(g), "t%u", i);
            if (first && k < TL_GROUPS)
                put_snapshot(b, g);
            put_msgs(b, g, next[i], next[i]);
            next[i]++;
        }
        if (!trimmed && next[TL_TRIMMED] > TL_MSGS * 3 / 4) {
            trimmed = true;
            snprintf(g, sizeof(g), "t%u", TL_TRIMMED);
            ops->trim_before(b, g, (uint32_t)strlen(g), NULL, TL_TRIM_AT);
        }
        commit_ok(p, b, RC_DURABILITY_BATCH);
    }
    return stats_view(p);
}

/* Every tick group's history, gapless, its bounds and pieces of it. */
static void expect_tick_groups(rc_persist *p)
{
    groups_seen gs = load_of(p);
    CU_ASSERT_EQUAL(gs.n, TL_GROUPS);
    char g[16];
    for (uint32_t i = 0; i < TL_GROUPS; i++) {
        snprintf(g, sizeof(g), "t%u", i);
        uint64_t first = i == TL_TRIMMED ? TL_TRIM_AT : 1;
        expect_group(&gs, g, first, TL_MSGS);
        seen s = scan_of(p, g, 0, UINT64_MAX, UINT32_MAX, 0);
        expect_run(&s, first, TL_MSGS);
        /* pieces across record, fold and table boundaries */
        static const struct { uint64_t from, to; uint32_t limit; } piece[] = {
            { 1, 1, 1 }, { 250, 262, 1000 }, { 255, 5999, 7 }, { 2990, 3010, 1000 }, { 5990, 7000, 1000 },
        };
        for (size_t k = 0; k < sizeof(piece) / sizeof(piece[0]); k++) {
            uint64_t from = piece[k].from < first ? first : piece[k].from;
            uint64_t to = piece[k].to > TL_MSGS ? TL_MSGS : piece[k].to;
            s = scan_of(p, g, piece[k].from, piece[k].to, piece[k].limit, 0);
            if (from > to) { /* below the trim */
                CU_ASSERT_EQUAL(s.n, 0);
                continue;
            }
            if (to - from + 1 > piece[k].limit)
                to = from + piece[k].limit - 1;
            expect_run(&s, from, to);
        }
        s = scan_of(p, g, 100, UINT64_MAX, 1000, 5); /* stopped by the callback */
        CU_ASSERT_EQUAL(s.n, 5);
    }
}

/* A writer killed without closing: its newest messages are in the log's
 * segments only, the older ones folded into history records. Both come
 * back, read-only and read-write, and the log stays until it is folded. */
static void test_tick_log_crash(void)
{
    char dir[PATH_LEN];
    new_path(dir, "ticks");
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        rc_persist *p = open_folding(dir, false);
        if (!p)
            _exit(2);
        rc_ticklog_stats v = write_tick_groups(p);
        _exit(v.segments_folded >= 1 && v.groups == TL_GROUPS ? 0 : 3); /* no close */
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT_FATAL(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    rc_persist *p = open_folding(dir, true); /* read-only: the segments read, nothing written */
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    rc_ticklog_stats v = stats_view(p);
    CU_ASSERT_EQUAL(v.groups, TL_GROUPS);
    CU_ASSERT(v.segments >= 2 && v.disk > 1024 * 1024 - 70 * 1024 && v.disk <= 1024 * 1024 + 70 * 1024);
    expect_tick_groups(p);
    rc_store_close(p);

    p = open_folding(dir, false); /* read-write: the same, and writable */
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    v = stats_view(p);
    CU_ASSERT_EQUAL(v.groups, TL_GROUPS);
    CU_ASSERT_EQUAL(v.folds, 0);
    expect_tick_groups(p);
    add_msgs(p, "t0", TL_MSGS + 1, TL_MSGS + 10);
    seen s = scan_of(p, "t0", TL_MSGS - 5, UINT64_MAX, 1000, 0);
    expect_run(&s, TL_MSGS - 5, TL_MSGS + 10);
    rc_store_close(p);

    p = open_folding(dir, false); /* closed cleanly: the log stays; folded whole on request */
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT(stats_view(p).segments >= 2);
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL(rc_ticklog_fold_all(p, err, sizeof(err)), 0);
    v = stats_view(p);
    CU_ASSERT_EQUAL(v.groups, 0);
    CU_ASSERT_EQUAL(v.segments, 0);
    CU_ASSERT_EQUAL(v.disk, 0);
    s = scan_of(p, "t0", 1, UINT64_MAX, UINT32_MAX, 0);
    expect_run(&s, 1, TL_MSGS + 10);
    add_msgs(p, "t0", TL_MSGS + 11, TL_MSGS + 12); /* a new segment */
    rc_store_close(p);
    p = open_folding(dir, false);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(stats_view(p).segments, 1);
    s = scan_of(p, "t0", 1, UINT64_MAX, UINT32_MAX, 0);
    expect_run(&s, 1, TL_MSGS + 12);
    s = scan_of(p, "t5", 1, UINT64_MAX, UINT32_MAX, 0);
    expect_run(&s, 1, TL_MSGS);
    rc_store_close(p);
}

/* A writer killed between two pieces of a fold: some groups' history
 * records are written, and every message is still in the log. Both opens
 * show each message once (the table drops what a group's records hold);
 * the next fold writes the rest. */
static void exit_now(void)
{
    _exit(0);
}

static void test_tick_log_crash_mid_fold(void)
{
    char dir[PATH_LEN];
    new_path(dir, "midfold");
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        char err[ERR_LEN] = "";
        rc_store_options o;
        rc_store_options_default(&o);
        o.tick_log_mb = 128; /* one segment of 4 MiB */
        rc_ticklog_piece_bytes = 256 * 1024; /* its fold in pieces of two groups or so */
        rc_persist *p = rc_store_open(dir, &o, err, sizeof(err));
        if (!p)
            _exit(2);
        write_tick_groups(p);
        rc_ticklog_after_piece = exit_now; /* the first piece written, the rest never */
        rc_ticklog_fold_all(p, err, sizeof(err));
        _exit(4);
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT_FATAL(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    rc_persist *p = open_folding(dir, true);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    rc_ticklog_stats v = stats_view(p);
    CU_ASSERT(v.groups > 0 && v.groups < TL_GROUPS); /* some groups' messages are in records now */
    CU_ASSERT_EQUAL(v.segments, 1);
    expect_tick_groups(p);
    rc_store_close(p);

    p = open_folding(dir, false);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    expect_tick_groups(p);
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL(rc_ticklog_fold_all(p, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(stats_view(p).groups, 0);
    expect_tick_groups(p);
    rc_store_close(p);
}

/* Open descriptors of tick log segments in this process. */
static int tlog_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char link[300], target[PATH_LEN + 300];
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        if (len > 0) {
            target[len] = '\0';
            n += strstr(target, ".tlog") != NULL;
        }
    }
    closedir(d);
    return n;
}

static void test_tick_log_records_and_table(void)
{
    char dir[PATH_LEN];
    new_path(dir, "records");
    rc_persist *p = open_folding(dir, false);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    rc_ticklog_stats v = write_tick_groups(p);
    CU_ASSERT(v.folds >= 1 && v.folds == v.segments_folded);
    CU_ASSERT(v.folded_records >= TL_GROUPS * 2); /* records of at most RC_STORE_RECORD_MAX_MSGS (256) */
    CU_ASSERT_EQUAL(v.groups, TL_GROUPS);
    /* the log keeps about tick_log_mb; the table 8 bytes a message, not the messages */
    CU_ASSERT(v.disk <= 1024 * 1024 + 70 * 1024);
    CU_ASSERT(v.entries > 0 && v.entries < TL_GROUPS * TL_MSGS);
    CU_ASSERT(v.held < 64 * 1024 + 2 * 8 * v.entries + TL_GROUPS * 1024);
    /* the kept fold batch: a piece of a segment's fold, and the gauge counts it */
    CU_ASSERT(v.fold_batch > 0 && v.fold_batch < 3 * 1024 * 1024);
    rc_store_memory mem;
    CU_ASSERT_EQUAL(rc_store_memory_read(p, &mem), 0);
    CU_ASSERT(mem.tick_log >= v.held + v.fold_batch);
    CU_ASSERT_EQUAL(mem.tick_log_disk, v.disk);
    CU_ASSERT(v.segments >= 8);
    CU_ASSERT_EQUAL(tlog_fds(), 1); /* the newest segment's; the others are only mapped */
    expect_tick_groups(p);

    /* 1234 lies inside a record: the record stays, reads start at 1234 */
    rc_persist_batch *b = ops->batch_begin(p);
    ops->trim_before(b, "t1", 2, NULL, 1234);
    commit_ok(p, b, RC_DURABILITY_BATCH);
    seen s = scan_of(p, "t1", 0, UINT64_MAX, UINT32_MAX, 0);
    expect_run(&s, 1234, TL_MSGS);
    s = scan_of(p, "t1", 1000, 1240, 1000, 0);
    expect_run(&s, 1234, 1240);
    groups_seen gs = load_of(p);
    expect_group(&gs, "t1", 1234, TL_MSGS);
    /* past every message: the group has no history left */
    b = ops->batch_begin(p);
    ops->trim_before(b, "t2", 2, NULL, TL_MSGS + 1);
    commit_ok(p, b, RC_DURABILITY_BATCH);
    s = scan_of(p, "t2", 0, UINT64_MAX, UINT32_MAX, 0);
    CU_ASSERT_EQUAL(s.n, 0);
    rc_store_close(p);

    p = open_ok(dir);
    gs = load_of(p);
    expect_group(&gs, "t1", 1234, TL_MSGS);
    expect_group(&gs, "t2", 0, 0);
    s = scan_of(p, "t1", 0, UINT64_MAX, UINT32_MAX, 0);
    expect_run(&s, 1234, TL_MSGS);
    s = scan_of(p, "t2", 0, UINT64_MAX, UINT32_MAX, 0);
    CU_ASSERT_EQUAL(s.n, 0);
    rc_store_close(p);
}

#define SEG_PATH_LEN (PATH_LEN + 300) /* dir, "/ticklog/", a file name */

static void trim_to(rc_persist *p, const char *g, uint64_t before)
{
    rc_persist_batch *b = ops->batch_begin(p);
    ops->trim_before(b, g, (uint32_t)strlen(g), NULL, before);
    commit_ok(p, b, RC_DURABILITY_BATCH);
}

/* A retention delete goes to RocksDB only while RocksDB may hold records of
 * the group: after one that reached the group's messages in the tick log's
 * table, the next ones are left out until a fold writes records again.
 * Reads and recovery see the same history either way. */
static void test_tick_log_retention_writes(void)
{
    char dir[PATH_LEN], err[ERR_LEN] = "";
    new_path(dir, "retention");
    rc_persist *p = open_folding(dir, false);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    rc_persist_batch *b = ops->batch_begin(p);
    put_snapshot(b, "r");
    put_msgs(b, "r", 1, 100);
    commit_ok(p, b, RC_DURABILITY_BATCH);
    static const struct { uint64_t before; uint64_t written; } step1[] = { { 50, 1 }, { 60, 1 } };
    for (size_t i = 0; i < 2; i++) {
        trim_to(p, "r", step1[i].before);
        CU_ASSERT_EQUAL(stats_view(p).trims_written, step1[i].written);
        seen s = scan_of(p, "r", 0, UINT64_MAX, 1000, 0);
        expect_run(&s, step1[i].before, 100);
    }
    CU_ASSERT_EQUAL(rc_ticklog_fold_all(p, err, sizeof(err)), 0); /* one record, 60..100 */
    add_msgs(p, "r", 101, 110);
    /* 70 and 80 fall inside the record: written; 105 reaches the table:
     * written, and it leaves RocksDB no record; 107 is not written */
    static const struct { uint64_t before; uint64_t written; } step2[] = { { 70, 2 }, { 80, 3 }, { 105, 4 }, { 107, 4 } };
    for (size_t i = 0; i < 4; i++) {
        trim_to(p, "r", step2[i].before);
        CU_ASSERT_EQUAL(stats_view(p).trims_written, step2[i].written);
        seen s = scan_of(p, "r", 0, UINT64_MAX, 1000, 0);
        expect_run(&s, step2[i].before, 110);
        groups_seen gs = load_of(p);
        expect_group(&gs, "r", step2[i].before, 110);
    }
    rc_store_close(p);
    p = open_folding(dir, false);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    groups_seen gs = load_of(p);
    expect_group(&gs, "r", 107, 110);
    seen s = scan_of(p, "r", 0, UINT64_MAX, 1000, 0);
    expect_run(&s, 107, 110);
    CU_ASSERT_EQUAL(rc_ticklog_fold_all(p, err, sizeof(err)), 0); /* records again: the next delete is written */
    trim_to(p, "r", 109);
    CU_ASSERT_EQUAL(stats_view(p).trims_written, 1);
    s = scan_of(p, "r", 0, UINT64_MAX, 1000, 0);
    expect_run(&s, 109, 110);
    rc_store_close(p);
}

#define TB_GROUPS 60000u /* one message each: about 10 MB of table, 4 MB of log */
#define TB_TICK 1000u

/* Many groups of a message each: the table's memory, not the log's bytes,
 * starts the folds (tick_log_mb 32: a table of at most 4 MiB, segments of
 * 1 MiB), and every group reads back. */
static void test_tick_log_table_bound(void)
{
    char dir[PATH_LEN], err[ERR_LEN] = "", g[16];
    new_path(dir, "tablebound");
    rc_store_options o;
    rc_store_options_default(&o);
    o.tick_log_mb = 32;
    rc_persist *p = rc_store_open(dir, &o, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    size_t held_max = 0;
    for (uint32_t i = 0; i < TB_GROUPS; i += TB_TICK) {
        rc_persist_batch *b = ops->batch_begin(p);
        for (uint32_t k = i; k < i + TB_TICK; k++) {
            snprintf(g, sizeof(g), "b%u", k);
            put_snapshot(b, g);
            put_msgs(b, g, 1, 1);
        }
        commit_ok(p, b, RC_DURABILITY_BATCH);
        size_t held = stats_view(p).held;
        held_max = held > held_max ? held : held_max;
    }
    rc_ticklog_stats v = stats_view(p);
    printf("\n    %u groups: %llu folds, table at most %zu bytes, log %zu bytes\n   ", TB_GROUPS,
           (unsigned long long)v.folds, held_max, v.disk);
    CU_ASSERT(v.folds >= 1);
    CU_ASSERT(v.disk < 8u << 20); /* the log's bytes never asked for a fold */
    CU_ASSERT(held_max < 8u << 20); /* 4 MiB, and the groups of the segment written since */
    for (uint32_t k = 0; k < TB_GROUPS; k += 997) {
        snprintf(g, sizeof(g), "b%u", k);
        seen s = scan_of(p, g, 0, UINT64_MAX, 10, 0);
        expect_run(&s, 1, 1);
    }
    rc_store_close(p);
    p = rc_store_open(dir, &o, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT(stats_view(p).held < 8u << 20);
    groups_seen gs = load_of(p);
    CU_ASSERT_EQUAL(gs.n, TB_GROUPS);
    expect_group(&gs, "b0", 1, 1); /* the first in byte order: load_of keeps 16 */
    expect_group(&gs, "b10000", 1, 1);
    rc_store_close(p);
}

/* The nth newest segment file of dir's log (its path in out); false if none. */
static bool newest_segment(const char *dir, char *out, size_t len, int nth_from_last)
{
    char tl[PATH_LEN + 16];
    snprintf(tl, sizeof(tl), "%s/" RC_STORE_TICKLOG_DIR, dir);
    struct dirent **names = NULL;
    int n = scandir(tl, &names, NULL, alphasort);
    int seen_segments = 0;
    bool found = false;
    for (int i = n - 1; i >= 0; i--) {
        if (!found && strstr(names[i]->d_name, ".tlog") && seen_segments++ == nth_from_last) {
            snprintf(out, len, "%s/%s", tl, names[i]->d_name);
            found = true;
        }
        free(names[i]);
    }
    free(names);
    return found;
}

static void append_bytes(const char *path, const char *bytes, size_t n)
{
    FILE *f = fopen(path, "ab");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(bytes, 1, n, f), n);
    fclose(f);
}

/* A record cut short at the end of the newest segment (a crash inside its
 * write, so never acked) is cut off by a read-write open, and ignored by a
 * read-only one; a bad record anywhere else fails the open. */
static void test_tick_log_cut_record(void)
{
    char dir[PATH_LEN], seg[SEG_PATH_LEN];
    new_path(dir, "cut");
    rc_persist *p = open_ok(dir);
    rc_persist_batch *b = ops->batch_begin(p);
    put_snapshot(b, "c");
    put_msgs(b, "c", 1, 10);
    commit_ok(p, b, RC_DURABILITY_BATCH);
    add_msgs(p, "c", 11, 20);
    size_t disk = stats_view(p).disk;
    rc_store_close(p);
    CU_ASSERT_FATAL(newest_segment(dir, seg, sizeof(seg), 0));
    static const char torn[] = "\x40\0\0\0\x12\x34\x56\x78\0\0"; /* 64 bytes announced, 10 there */
    append_bytes(seg, torn, sizeof(torn) - 1);

    char err[ERR_LEN] = "";
    p = rc_store_open_readonly(dir, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    seen s = scan_of(p, "c", 0, UINT64_MAX, 100, 0);
    expect_run(&s, 1, 20);
    rc_store_close(p);
    struct stat st;
    CU_ASSERT(stat(seg, &st) == 0 && (size_t)st.st_size == disk + sizeof(torn) - 1); /* read-only: left as it was */

    p = open_ok(dir);
    CU_ASSERT_EQUAL(stats_view(p).disk, disk);
    add_msgs(p, "c", 21, 30);
    s = scan_of(p, "c", 0, UINT64_MAX, 100, 0);
    expect_run(&s, 1, 30);
    rc_store_close(p);
    p = open_ok(dir);
    s = scan_of(p, "c", 0, UINT64_MAX, 100, 0);
    expect_run(&s, 1, 30);
    groups_seen gs = load_of(p);
    expect_group(&gs, "c", 1, 30);
    rc_store_close(p);

    /* a flipped byte inside a record of a segment that others follow */
    char dir2[PATH_LEN];
    new_path(dir2, "flip");
    rc_store_options o;
    rc_store_options_default(&o);
    o.tick_log_mb = 2; /* segments of 64 KiB */
    p = rc_store_open(dir2, &o, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    b = ops->batch_begin(p);
    put_snapshot(b, "f");
    commit_ok(p, b, RC_DURABILITY_BATCH);
    for (uint64_t k = 0; k < 40; k++)
        add_msgs(p, "f", k * 100 + 1, k * 100 + 100); /* ~3 KiB a commit: more than one segment */
    CU_ASSERT(stats_view(p).segments >= 2);
    rc_store_close(p);
    CU_ASSERT_FATAL(newest_segment(dir2, seg, sizeof(seg), 1));
    FILE *f = fopen(seg, "r+b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fseek(f, 100, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 100, SEEK_SET);
    fputc(c ^ 0x20, f);
    fclose(f);
    CU_ASSERT_PTR_NULL(rc_store_open(dir2, &o, err, sizeof(err)));
    printf("\n    refused as expected: %s\n   ", err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "checksum"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "corrupt"));

    /* the newest segment: a flipped byte in its first record, others after it */
    char dir3[PATH_LEN];
    new_path(dir3, "flipnew");
    p = open_ok(dir3);
    b = ops->batch_begin(p);
    put_snapshot(b, "n");
    put_msgs(b, "n", 1, 10);
    commit_ok(p, b, RC_DURABILITY_BATCH);
    for (uint64_t k = 1; k < 10; k++)
        add_msgs(p, "n", k * 10 + 1, k * 10 + 10);
    size_t last_rec = stats_view(p).disk;
    add_msgs(p, "n", 101, 110);
    last_rec = stats_view(p).disk - last_rec; /* the last record's bytes */
    CU_ASSERT_EQUAL(stats_view(p).segments, 1);
    rc_store_close(p);
    CU_ASSERT_FATAL(newest_segment(dir3, seg, sizeof(seg), 0));
    CU_ASSERT_FATAL(stat(seg, &st) == 0);
    off_t size = st.st_size;
    f = fopen(seg, "r+b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fseek(f, 100, SEEK_SET); /* inside the first record */
    c = fgetc(f);
    fseek(f, 100, SEEK_SET);
    fputc(c ^ 0x20, f);
    fclose(f);
    CU_ASSERT_PTR_NULL(rc_store_open(dir3, NULL, err, sizeof(err)));
    printf("    refused as expected: %s\n   ", err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "bytes after it: corrupt"));
    CU_ASSERT(stat(seg, &st) == 0 && st.st_size == size); /* nothing cut */
    f = fopen(seg, "r+b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fseek(f, 100, SEEK_SET);
    fputc(c, f); /* mended */
    fclose(f);
    /* zeros after the last record (an OS crash before writeback): cut */
    static const char zeros[4096];
    append_bytes(seg, zeros, sizeof(zeros));
    p = open_ok(dir3);
    s = scan_of(p, "n", 0, UINT64_MAX, 1000, 0);
    expect_run(&s, 1, 110);
    rc_store_close(p);
    CU_ASSERT(stat(seg, &st) == 0 && st.st_size == size);
    /* the last record, whole but failing its checksum: cut, the others kept */
    f = fopen(seg, "r+b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fseek(f, size - (off_t)last_rec / 2, SEEK_SET);
    c = fgetc(f);
    fseek(f, size - (off_t)last_rec / 2, SEEK_SET);
    fputc(c ^ 0x01, f);
    fclose(f);
    p = open_ok(dir3);
    s = scan_of(p, "n", 0, UINT64_MAX, 1000, 0);
    expect_run(&s, 1, 100);
    rc_store_close(p);
    CU_ASSERT(stat(seg, &st) == 0 && st.st_size == size - (off_t)last_rec);
}

/* With durability none a commit's RocksDB writes skip the WAL: they are
 * flushed before a fold marks its segment folded, after which an open
 * reads the segment no more. Killed after the fold, before the segment's
 * delete: the group whose snapshot was only in that segment is there.
 * The writer is this program run again (NONE_FOLD_CHILD): a forked child
 * has none of RocksDB's background threads, so its flush would wait for
 * ever. */
#define NONE_FOLD_CHILD "--none-fold-writer"

static int none_fold_writer(const char *dir)
{
    ops = rc_store_ops();
    char err[ERR_LEN] = "";
    rc_persist *p = open_small_log(dir, err, sizeof(err));
    if (!p)
        return 2;
    rc_persist_batch *b = ops->batch_begin(p);
    put_snapshot(b, "z"); /* in the first segment only */
    put_msgs(b, "z", 1, 1);
    if (ops->batch_commit(p, b, RC_DURABILITY_NONE, err, sizeof(err)) != 0)
        return 3;
    rc_ticklog_after_fold = exit_now;
    for (uint64_t k = 0; k < 2000; k++) {
        b = ops->batch_begin(p);
        put_snapshot(b, "a");
        put_msgs(b, "a", k * 100 + 1, k * 100 + 100);
        if (ops->batch_commit(p, b, RC_DURABILITY_NONE, err, sizeof(err)) != 0)
            return 3;
    }
    return 4; /* no fold came */
}

static void test_tick_log_none_fold(void)
{
    char dir[PATH_LEN];
    new_path(dir, "nonefold");
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test_store", NONE_FOLD_CHILD, dir, (char *)NULL);
        _exit(5);
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT_FATAL(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char err[ERR_LEN] = "";
    rc_persist *p = open_small_log(dir, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(stats_view(p).segments_folded, 0); /* nothing to fold at open: the folded one is gone */
    groups_seen gs = load_of(p);
    expect_group(&gs, "z", 1, 1);
    seen sz = scan_of(p, "z", 0, UINT64_MAX, 10, 0);
    expect_run(&sz, 1, 1);
    rc_store_close(p);
}

/* A failed segment start leaves the segment before it the newest, still
 * written on; the next one is started when it can be. Stray files named
 * almost like segments are no segments. */
static void test_tick_log_segment_start_fails(void)
{
    char dir[PATH_LEN], blocker[PATH_LEN + 64], err[ERR_LEN] = "";
    new_path(dir, "segfail");
    rc_persist *p = open_small_log(dir, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    rc_persist_batch *b = ops->batch_begin(p);
    put_snapshot(b, "a");
    put_msgs(b, "a", 1, 100);
    commit_ok(p, b, RC_DURABILITY_BATCH); /* record 0 */
    for (uint64_t k = 1; k < 4; k++)
        add_msgs(p, "a", k * 100 + 1, k * 100 + 100); /* records 1..3 */
    CU_ASSERT_EQUAL(stats_view(p).segments, 1);
    snprintf(blocker, sizeof(blocker), "%s/" RC_STORE_TICKLOG_DIR "/%016llx.tlog", dir, 4ull);
    CU_ASSERT_EQUAL_FATAL(mkdir(blocker, 0755), 0); /* the next segment's name cannot be a file */
    b = ops->batch_begin(p);
    put_msgs(b, "a", 401, 3400); /* more than a segment: a new one */
    CU_ASSERT_NOT_EQUAL(ops->batch_commit(p, b, RC_DURABILITY_BATCH, err, sizeof(err)), 0);
    printf("\n    refused as expected: %s\n   ", err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot create"));
    CU_ASSERT_EQUAL(stats_view(p).segments, 1);
    add_msgs(p, "a", 401, 402); /* fits the segment there is */
    CU_ASSERT_EQUAL(rmdir(blocker), 0);
    add_msgs(p, "a", 403, 3400);
    CU_ASSERT_EQUAL(stats_view(p).segments, 2);
    rc_store_close(p);
    /* files whose names only look like a segment's are left alone */
    static const char *const strays[] = { "0x00000000000001.tlog", "00000000000000AB.tlog", " 000000000000001.tlog",
                                          "+000000000000001.tlog", "00000000000000ab.tlog~" };
    char stray[PATH_LEN + 64];
    for (size_t i = 0; i < sizeof(strays) / sizeof(strays[0]); i++) {
        snprintf(stray, sizeof(stray), "%s/" RC_STORE_TICKLOG_DIR "/%s", dir, strays[i]);
        append_bytes(stray, "x", 1);
    }
    p = open_small_log(dir, err, sizeof(err));
    if (!p)
        fprintf(stderr, "open: %s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(stats_view(p).segments, 2);
    seen sa = scan_of(p, "a", 0, UINT64_MAX, 5000, 0);
    expect_run(&sa, 1, 3400);
    rc_store_close(p);
    struct stat st;
    for (size_t i = 0; i < sizeof(strays) / sizeof(strays[0]); i++) {
        snprintf(stray, sizeof(stray), "%s/" RC_STORE_TICKLOG_DIR "/%s", dir, strays[i]);
        CU_ASSERT(stat(stray, &st) == 0 && st.st_size == 1);
    }
}

/* A newest segment without records (a crash after its header, or a failed
 * first write) takes a record longer than its mapping under its own name:
 * mapped larger, not started again, so no fold can delete it early. */
static void test_tick_log_empty_segment_reused(void)
{
    char dir[PATH_LEN], path[PATH_LEN + 64], err[ERR_LEN] = "";
    new_path(dir, "emptyseg");
    rc_persist *p = open_small_log(dir, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    rc_persist_batch *b = ops->batch_begin(p);
    put_snapshot(b, "z");
    put_msgs(b, "z", 1, 1);
    commit_ok(p, b, RC_DURABILITY_BATCH); /* record 0, segment 0 */
    rc_store_close(p);
    snprintf(path, sizeof(path), "%s/" RC_STORE_TICKLOG_DIR "/%016llx.tlog", dir, 1ull);
    static const char hdr[16] = "RCTICKS1\0\0\0\0\0\0\0\1"; /* segment 1: its header, no record */
    append_bytes(path, hdr, sizeof(hdr));

    p = open_small_log(dir, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(stats_view(p).segments, 2);
    b = ops->batch_begin(p);
    put_snapshot(b, "b");
    put_msgs(b, "b", 1, 2500);
    put_snapshot(b, "c");
    put_msgs(b, "c", 1, 2500); /* more than 64 KiB */
    commit_ok(p, b, RC_DURABILITY_BATCH);
    CU_ASSERT_EQUAL(stats_view(p).segments, 2); /* into segment 1 */
    for (uint64_t k = 0; k < 2000 && stats_view(p).segments_folded < 2; k++)
        add_msgs(p, "a", k * 100 + 1, k * 100 + 100); /* folds of segment 0, then of segment 1 */
    CU_ASSERT_FATAL(stats_view(p).segments_folded >= 2);
    rc_store_close(p);
    p = open_small_log(dir, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    seen sb = scan_of(p, "b", 0, UINT64_MAX, 3000, 0);
    expect_run(&sb, 1, 2500);
    seen sc = scan_of(p, "c", 0, UINT64_MAX, 3000, 0);
    expect_run(&sc, 1, 2500);
    seen sz = scan_of(p, "z", 0, UINT64_MAX, 10, 0);
    expect_run(&sz, 1, 1);
    rc_store_close(p);
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(in);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        CU_ASSERT_EQUAL(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

/* A segment folded whole but still there (a crash before its delete): the
 * next open deletes it unread, and every message is read once, from the
 * history records. */
static void test_tick_log_folded_segment_left(void)
{
    char dir[PATH_LEN], seg[SEG_PATH_LEN], keep[SEG_PATH_LEN + 8], err[ERR_LEN] = "";
    new_path(dir, "leftover");
    rc_store_options o;
    rc_store_options_default(&o);
    o.tick_log_mb = 128; /* one segment */
    rc_persist *p = rc_store_open(dir, &o, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    write_tick_groups(p);
    CU_ASSERT_EQUAL(stats_view(p).segments, 1);
    CU_ASSERT_FATAL(newest_segment(dir, seg, sizeof(seg), 0));
    snprintf(keep, sizeof(keep), "%s.keep", seg);
    copy_file(seg, keep);
    CU_ASSERT_EQUAL(rc_ticklog_fold_all(p, err, sizeof(err)), 0);
    rc_store_close(p);
    CU_ASSERT_EQUAL(rename(keep, seg), 0);

    p = rc_store_open_readonly(dir, err, sizeof(err)); /* passed over */
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(stats_view(p).groups, 0);
    expect_tick_groups(p);
    rc_store_close(p);
    p = rc_store_open(dir, &o, err, sizeof(err)); /* deleted */
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    rc_ticklog_stats v = stats_view(p);
    CU_ASSERT_EQUAL(v.groups, 0);
    CU_ASSERT_EQUAL(v.segments, 0);
    expect_tick_groups(p);
    struct stat st;
    CU_ASSERT(stat(seg, &st) != 0 && errno == ENOENT);
    add_msgs(p, "t0", TL_MSGS + 1, TL_MSGS + 3);
    seen s = scan_of(p, "t0", 1, UINT64_MAX, UINT32_MAX, 0);
    expect_run(&s, 1, TL_MSGS + 3);
    rc_store_close(p);
}

/* The RocksDB half of a commit lost while its record is in the log (a
 * crash between the two writes; with durability none, a killed writer's
 * memtables): the next open writes it again from the log. */
static void test_tick_log_replays_rocksdb_writes(void)
{
    char dir[PATH_LEN];
    new_path(dir, "replay");
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        char err[ERR_LEN] = "";
        rc_persist *p = rc_store_open(dir, NULL, err, sizeof(err));
        if (!p)
            _exit(2);
        for (uint32_t i = 0; i < 3; i++) {
            rc_persist_batch *b = ops->batch_begin(p);
            char g[8];
            snprintf(g, sizeof(g), "n%u", i);
            put_snapshot(b, g); /* no WAL: in the memtable only */
            put_msgs(b, g, 1, 5);
            ops->trim_before(b, g, (uint32_t)strlen(g), NULL, 3);
            if (ops->batch_commit(p, b, RC_DURABILITY_NONE, err, sizeof(err)) != 0)
                _exit(3);
        }
        _exit(0); /* no close: the memtables are lost */
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT_FATAL(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    rc_persist *p = open_ok(dir);
    groups_seen gs = load_of(p);
    CU_ASSERT_EQUAL(gs.n, 3);
    expect_group(&gs, "n0", 3, 5);
    expect_group(&gs, "n2", 3, 5);
    seen s = scan_of(p, "n1", 0, UINT64_MAX, 100, 0);
    expect_run(&s, 3, 5);
    rc_store_close(p);

    /* the snapshot taken away behind the store's back, with the mark that
     * says RocksDB has it: written again from the log */
    raw_db rd;
    raw_open(&rd, dir, N_FAMILIES, false, false);
    char *e = NULL;
    rocksdb_writeoptions_t *w = rocksdb_writeoptions_create();
    rocksdb_delete_cf(rd.db, w, rd.h[1], "n1", 2, &e);
    rocksdb_delete_cf(rd.db, w, rd.h[4], "tick_log", 8, &e);
    CU_ASSERT_PTR_NULL(e);
    rocksdb_writeoptions_destroy(w);
    raw_close(&rd);
    p = open_ok(dir);
    gs = load_of(p);
    CU_ASSERT_EQUAL(gs.n, 3);
    expect_group(&gs, "n1", 3, 5);
    rc_store_close(p);
}

/* A format-4 directory: its tick records in the `ticks` family. Read-only,
 * they are read into memory; read-write, folded into history records, the
 * family emptied and the marker set to 5. */
static void test_migrate_v4(void)
{
    char dir[PATH_LEN], err[ERR_LEN] = "";
    new_path(dir, "v4");
    rc_store_close(open_ok(dir)); /* the families */
    rc_ticklog_ops rec = { 0 };
    for (uint64_t seq = 1; seq <= 40; seq++) {
        char key[RC_STORE_KEY_MAX], v[VAL_LEN];
        size_t klen = rc_store_history_key(key, "g4", 2, seq);
        val_of(v, "g4", seq);
        CU_ASSERT_EQUAL(rc_ticklog_ops_put(&rec, key, klen - RC_STORE_SEQ_BYTES, seq, (const uint8_t *)v,
                                           (uint32_t)strlen(v)), 0);
    }
    raw_db rd;
    raw_open(&rd, dir, N_FAMILIES, false, false);
    char *e = NULL;
    rocksdb_writeoptions_t *w = rocksdb_writeoptions_create();
    char k0[8] = { 0 };
    rocksdb_put_cf(rd.db, w, rd.h[7], k0, sizeof(k0), (const char *)rec.buf, rec.len, &e);
    rocksdb_put_cf(rd.db, w, rd.h[1], "g4", 2, "snap of g4", 10, &e);
    const char v4[4] = { 0, 0, 0, 4 };
    rocksdb_put_cf(rd.db, w, rd.h[4], "format", 6, v4, 4, &e);
    CU_ASSERT_PTR_NULL(e);
    rocksdb_writeoptions_destroy(w);
    raw_close(&rd);
    rc_ticklog_ops_free(&rec);

    rc_persist *p = rc_store_open_readonly(dir, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    seen s = scan_of(p, "g4", 0, UINT64_MAX, 100, 0);
    expect_run(&s, 1, 40);
    rc_store_close(p);
    CU_ASSERT_EQUAL(raw_format(dir, 0), RC_PERSIST_FORMAT_V4);

    p = open_ok(dir);
    rc_ticklog_stats v = stats_view(p);
    CU_ASSERT_EQUAL(v.folds, 1);
    CU_ASSERT_EQUAL(v.folded_msgs, 40);
    CU_ASSERT_EQUAL(v.groups, 0);
    groups_seen gs = load_of(p);
    expect_group(&gs, "g4", 1, 40);
    add_msgs(p, "g4", 41, 50);
    s = scan_of(p, "g4", 0, UINT64_MAX, 100, 0);
    expect_run(&s, 1, 50);
    rc_store_close(p);
    CU_ASSERT_EQUAL(raw_format(dir, 0), RC_PERSIST_FORMAT);
    raw_open(&rd, dir, N_FAMILIES, false, true);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(rd.db, ro, rd.h[7]);
    rocksdb_iter_seek_to_first(it);
    CU_ASSERT(!rocksdb_iter_valid(it)); /* the family is empty */
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    raw_close(&rd);
    p = open_ok(dir);
    s = scan_of(p, "g4", 0, UINT64_MAX, 100, 0);
    expect_run(&s, 1, 50);
    CU_ASSERT_EQUAL(stats_view(p).folds, 0);
    rc_store_close(p);
}

/* A format-3 directory: no `ticks` family, one map per history value. It
 * is read as it is; the family is added and the marker set to 5. */
static void test_migrate_v3(void)
{
    char dir[PATH_LEN], err[ERR_LEN] = "";
    new_path(dir, "v3");
    raw_db rd;
    raw_open(&rd, dir, N_FAMILIES - 1, true, false); /* every family but ticks */
    char *e = NULL;
    rocksdb_writeoptions_t *w = rocksdb_writeoptions_create();
    for (uint64_t seq = 1; seq <= 5; seq++) {
        char key[RC_STORE_KEY_MAX], v[VAL_LEN];
        size_t klen = rc_store_history_key(key, "g", 1, seq);
        val_of(v, "g", seq);
        rocksdb_put_cf(rd.db, w, rd.h[2], key, klen, v, strlen(v), &e);
    }
    rocksdb_put_cf(rd.db, w, rd.h[1], "g", 1, "snap of g", 9, &e);
    const char v3[4] = { 0, 0, 0, 3 };
    rocksdb_put_cf(rd.db, w, rd.h[4], "format", 6, v3, 4, &e);
    CU_ASSERT_PTR_NULL(e);
    rocksdb_writeoptions_destroy(w);
    raw_close(&rd);

    CU_ASSERT_PTR_NULL(rc_store_open_readonly(dir, err, sizeof(err))); /* read-only cannot add the family */
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "migrated when ringcastd"));
    rc_persist *p = open_ok(dir);
    groups_seen gs = load_of(p);
    expect_group(&gs, "g", 1, 5);
    add_msgs(p, "g", 6, 9);
    seen s = scan_of(p, "g", 0, UINT64_MAX, 100, 0);
    expect_run(&s, 1, 9);
    rc_store_close(p); /* 6..9 in the tick log, next to the format 3 values */
    CU_ASSERT_EQUAL(raw_format(dir, 0), RC_PERSIST_FORMAT);
    p = open_ok(dir);
    gs = load_of(p);
    expect_group(&gs, "g", 1, 9);
    s = scan_of(p, "g", 3, 7, 100, 0);
    expect_run(&s, 3, 7);
    rc_store_close(p);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    chmod(path, 0700);
    return remove(path);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], NONE_FOLD_CHILD) == 0)
        return none_fold_writer(argv[2]);
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    ops = rc_store_ops();
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("store", NULL, NULL);
    CU_add_test(s, "new directory gets the format marker", test_new_dir_format);
    CU_add_test(s, "groups sharing a prefix never mix", test_prefix_groups_never_mix);
    CU_add_test(s, "scan bounds, limit and early stop", test_scan_bounds_limit_stop);
    CU_add_test(s, "load_groups: snapshots, oldest and newest seq", test_groups_and_seq_bounds);
    CU_add_test(s, "load_groups: oldest and newest seq of every history length, trimmed too", test_seq_bounds_every_length);
    CU_add_test(s, "load_groups: many groups with interleaved tags over SST files and the memtable",
                test_recovery_interleaved_tags);
    CU_add_test(s, "load_groups: a corrupt history key fails recovery", test_recovery_corrupt_history_key);
    CU_add_test(s, "history files have a partitioned index and filters", test_history_index_partitioned);
    CU_add_test(s, "trim_before deletes exactly seq < before", test_trim_before);
    CU_add_test(s, "reopen keeps every durability mode's writes", test_reopen_and_durability);
    CU_add_test(s, "a refused operation poisons the batch; abort", test_poisoned_batch_and_abort);
    CU_add_test(s, "another format version is refused", test_wrong_format);
    CU_add_test(s, "per-user index and read cursors", test_member_index_and_cursors);
    CU_add_test(s, "a format-1 directory is migrated", test_migrate_v1);
    CU_add_test(s, "a format-2 directory's history is migrated to tagged keys", test_migrate_v2);
    CU_add_test(s, "interrupted creation completed, other databases refused", test_interrupted_or_foreign_database);
    CU_add_test(s, "corrupt CURRENT, missing MANIFEST/SST/CURRENT refused", test_corrupt_or_missing_files);
    CU_add_test(s, "foreign files, a file, a missing parent, bad options", test_foreign_directory);
    CU_add_test(s, "no permission", test_no_permission);
    CU_add_test(s, "read-only open next to a writer", test_readonly);
    CU_add_test(s, "statistics report", test_stats);
    CU_add_test(s, "l0_compaction_files: bounds, the OPTIONS file, files kept in level 0 and compacted", test_l0_compaction_files);
    CU_add_test(s, "the WAL's checksum: CRC32C values, the library's own, RocksDB bound to it", test_crc32c);
    CU_add_test(s, "tick log: a writer killed without closing loses no committed message", test_tick_log_crash);
    CU_add_test(s, "tick log: reads see records and the table; trims inside a record", test_tick_log_records_and_table);
    CU_add_test(s, "tick log: a writer killed between two pieces of a fold", test_tick_log_crash_mid_fold);
    CU_add_test(s, "a format-3 directory gets the tick log", test_migrate_v3);
    CU_add_test(s, "tick log: a record cut short or a zero tail is cut off; a bad one elsewhere refused",
                test_tick_log_cut_record);
    CU_add_test(s, "tick log: durability none, killed after a fold: the segment's RocksDB writes kept",
                test_tick_log_none_fold);
    CU_add_test(s, "tick log: a segment that cannot be started: the one before is still written; stray names",
                test_tick_log_segment_start_fails);
    CU_add_test(s, "tick log: a segment without records takes a long record under its own name",
                test_tick_log_empty_segment_reused);
    CU_add_test(s, "tick log: many groups of a message each: the table's memory starts folds", test_tick_log_table_bound);
    CU_add_test(s, "tick log: a segment folded whole but left behind is deleted unread",
                test_tick_log_folded_segment_left);
    CU_add_test(s, "tick log: retention deletes go to RocksDB only where it may hold records",
                test_tick_log_retention_writes);
    CU_add_test(s, "tick log: RocksDB writes a commit lost are written again from the log",
                test_tick_log_replays_rocksdb_writes);
    CU_add_test(s, "a format-4 directory's tick records are folded, the marker set to 5", test_migrate_v4);
    CU_add_test(s, "100k messages over 1000 groups: write, reopen, recover", test_scale);
    int rc = rc_test_run();
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
