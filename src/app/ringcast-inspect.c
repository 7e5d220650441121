/*
 * ringcast-inspect: reads a data directory read-only (it may run next to a
 * live server) and prints what is stored.
 *
 *   ringcast-inspect --data-dir DIR                   every group: last seq, members, retained range
 *   ringcast-inspect --data-dir DIR --group G [--tail N]  G's snapshot and its newest N messages
 *   ringcast-inspect --data-dir DIR --user U          U's groups (the per-user index) with read cursors
 *   ringcast-inspect --data-dir DIR --stats           RocksDB statistics
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/group.h"
#include "core/snapshot.h"
#include "store/store.h"

#define INSPECT_DEFAULT_TAIL 20u
#define INSPECT_MAX_TAIL 100000u
#define INSPECT_STATS_BYTES (1u << 20)
#define INSPECT_BODY_PREVIEW 60u

typedef struct inspect_opts {
    const char *dir, *group, *user;
    uint32_t tail;
    bool stats;
} inspect_opts;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ringcast-inspect --data-dir DIR [--group G [--tail N]] [--user U] [--stats]\n"
            "Opens a ringcastd data directory read-only and prints:\n"
            "  (default)    one line per group: last seq, members, retained history range\n"
            "  --group G    G's snapshot (version, last_seq, members with their read cursors, created, updated)\n"
            "  --tail N     with --group: its newest N stored messages (default %u)\n"
            "  --user U     the groups U is a stored member of: last seq, read cursor, unread\n"
            "  --stats      RocksDB statistics (keys, sizes, cache, compaction)\n"
            "Exit status: 0 ok, 1 the directory cannot be read, 2 bad usage or unknown group.\n",
            INSPECT_DEFAULT_TAIL);
}

static int parse(int argc, char **argv, inspect_opts *o)
{
    o->tail = INSPECT_DEFAULT_TAIL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--stats") == 0) {
            o->stats = true;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (v && strcmp(a, "--data-dir") == 0) {
            o->dir = v;
            i++;
        } else if (v && strcmp(a, "--user") == 0) {
            o->user = v;
            i++;
        } else if (v && strcmp(a, "--group") == 0) {
            o->group = v;
            i++;
        } else if (v && strcmp(a, "--tail") == 0) {
            char *end;
            unsigned long n = strtoul(v, &end, 10);
            if (*end || n > INSPECT_MAX_TAIL) {
                fprintf(stderr, "ringcast-inspect: --tail takes 0..%u\n", INSPECT_MAX_TAIL);
                return -1;
            }
            o->tail = (uint32_t)n;
            i++;
        } else {
            fprintf(stderr, "ringcast-inspect: unknown or incomplete option %s\n", a);
            return -1;
        }
    }
    if (!o->dir) {
        fprintf(stderr, "ringcast-inspect: --data-dir is required\n");
        return -1;
    }
    return 0;
}

typedef struct group_walk {
    const inspect_opts *o;
    rc_persist *p;
    uint64_t groups;
    bool found;
} group_walk;

static void print_msg(uint64_t seq, const uint8_t *map, uint32_t len)
{
    rc_decoder d;
    rc_decoder_init(&d);
    rc_msg m;
    const char *why = "";
    if (rc_decode(&d, map, len, &m, &why) != RC_OK || m.type != RC_T_MSG) {
        printf("  #%llu  (undecodable: %s)\n", (unsigned long long)seq, why);
    } else {
        uint32_t n = m.body.len < INSPECT_BODY_PREVIEW ? m.body.len : INSPECT_BODY_PREVIEW;
        printf("  #%llu  ts=%llu from=%.*s%s%.*s%s body(%u)=", (unsigned long long)seq, (unsigned long long)m.ts,
               (int)m.from.len, m.from.ptr, (m.has & RC_HAS_MID) ? " mid=" : "", (int)m.mid.len,
               (m.has & RC_HAS_MID) ? m.mid.ptr : "", "", m.body.len);
        for (uint32_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)m.body.ptr[i];
            putchar(c >= 0x20 && c < 0x7f ? c : '.');
        }
        printf("%s\n", n < m.body.len ? "..." : "");
    }
    rc_decoder_free(&d);
}

static int tail_fn(void *ud, uint64_t seq, const uint8_t *map, uint32_t len)
{
    (void)ud;
    print_msg(seq, map, len);
    return 0;
}

static void print_group(group_walk *w, const rc_persist_group *pg, const rc_group *g)
{
    printf("group %.*s\n  snapshot version=%llu last_seq=%llu created=%llu updated=%llu\n", (int)pg->g_len, pg->g,
           (unsigned long long)g->version, (unsigned long long)g->last_seq, (unsigned long long)g->created_ms,
           (unsigned long long)g->updated_ms);
    printf("  history newest=%llu oldest=%llu\n  members (%u):", (unsigned long long)pg->newest_seq,
           (unsigned long long)pg->oldest_seq, g->members.n);
    for (uint32_t i = 0; i < g->members.cap; i++) {
        const rc_strmap_slot *m = &g->members.slots[i];
        uint64_t read = 0;
        char err[256];
        if (!m->hash)
            continue;
        if (rc_store_ops()->get_read(w->p, pg->g, pg->g_len, m->key, m->len, &read, err, sizeof(err)) != 0)
            printf(" %s(read=?)", m->key);
        else
            printf(" %s(read=%llu)", m->key, (unsigned long long)read);
    }
    printf("\n");
    if (w->o->tail == 0 || pg->newest_seq == 0)
        return;
    uint64_t from = pg->newest_seq > w->o->tail ? pg->newest_seq - w->o->tail + 1 : 1;
    if (from < pg->oldest_seq)
        from = pg->oldest_seq;
    printf("  newest %llu messages:\n", (unsigned long long)(pg->newest_seq - from + 1));
    char err[256];
    if (rc_store_ops()->scan(w->p, pg->g, pg->g_len, from, pg->newest_seq, w->o->tail, tail_fn, NULL, err,
                             sizeof(err)) != 0)
        printf("  (cannot read history: %s)\n", err);
}

static int group_fn(void *ud, const rc_persist_group *pg)
{
    group_walk *w = ud;
    if (w->o->group && (strlen(w->o->group) != pg->g_len || memcmp(w->o->group, pg->g, pg->g_len) != 0))
        return 0;
    rc_group *g = rc_group_new(pg->g, pg->g_len, 1, 0);
    const char *why = "out of memory";
    if (!g || rc_snapshot_apply(g, pg->snapshot, pg->snapshot_len, &why) != 0) {
        printf("group %.*s: unreadable snapshot: %s\n", (int)pg->g_len, pg->g, why);
    } else if (w->o->group) {
        print_group(w, pg, g);
        w->found = true;
    } else {
        printf("%-40.*s last_seq=%-10llu members=%-6u history=%llu..%llu version=%llu\n", (int)pg->g_len, pg->g,
               (unsigned long long)(g->last_seq > pg->newest_seq ? g->last_seq : pg->newest_seq), g->members.n,
               (unsigned long long)pg->oldest_seq, (unsigned long long)pg->newest_seq,
               (unsigned long long)g->version);
    }
    rc_group_free(g);
    w->groups++;
    return 0;
}

static int user_group_fn(void *ud, const rc_persist_member_group *mg)
{
    (*(uint64_t *)ud)++;
    printf("%-40.*s seq=%-10llu read=%-10llu unread=%llu\n", (int)mg->g_len, mg->g, (unsigned long long)mg->seq,
           (unsigned long long)mg->read, (unsigned long long)(mg->seq > mg->read ? mg->seq - mg->read : 0));
    return 0;
}

/* --user: one prefix scan of the per-user index (src/store/README.md). */
static int print_user(rc_persist *p, const char *user)
{
    uint64_t n = 0;
    bool more = false;
    char err[512];
    if (rc_store_ops()->user_groups(p, user, (uint32_t)strlen(user), UINT32_MAX, user_group_fn, &n, &more, err,
                                    sizeof(err)) != 0) {
        fprintf(stderr, "ringcast-inspect: %s\n", err);
        return 1;
    }
    printf("%llu groups of %s\n", (unsigned long long)n, user);
    return 0;
}

int main(int argc, char **argv)
{
    inspect_opts o = { 0 };
    if (parse(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    char err[512];
    rc_persist *p = rc_store_open_readonly(o.dir, err, sizeof(err));
    if (!p) {
        fprintf(stderr, "ringcast-inspect: %s\n", err);
        return 1;
    }
    int rc = 0;
    if (o.stats) {
        char *buf = malloc(INSPECT_STATS_BYTES);
        if (buf && rc_store_stats(p, buf, INSPECT_STATS_BYTES) >= 0)
            fputs(buf, stdout);
        free(buf);
    } else if (o.user) {
        rc = print_user(p, o.user);
    } else {
        group_walk w = { &o, p, 0, false };
        if (rc_store_ops()->load_groups(p, group_fn, &w, err, sizeof(err)) != 0) {
            fprintf(stderr, "ringcast-inspect: %s\n", err);
            rc = 1;
        } else if (o.group && !w.found) {
            fprintf(stderr, "ringcast-inspect: no group %s in %s\n", o.group, o.dir);
            rc = 2;
        } else if (!o.group) {
            printf("%llu groups\n", (unsigned long long)w.groups);
        }
    }
    rc_store_close(p);
    return rc;
}
