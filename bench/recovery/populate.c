/*
 * ringcast-populate: fills a fresh data directory with G groups, each with
 * M members and K stored messages, through the same store code ringcastd
 * uses, so recovery can be timed on a known amount of state
 * (bench/recovery.sh).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/args.h"
#include "core/group.h"
#include "core/snapshot.h"
#include "store/store.h"

#define POP_BATCH_GROUPS 500u  /* groups per write batch */
#define POP_MAX_GROUPS 10000000u
#define POP_MAX_HISTORY 100000u
#define POP_MAX_MEMBERS 10000u
#define POP_BODY 64u

static unsigned long arg(const char *s, unsigned long max, const char *name)
{
    return rc_bench_arg("ringcast-populate", s, 0, max, name);
}

static int put_group(const rc_persist_ops *ops, rc_persist_batch *b, uint32_t gi, uint32_t members,
                     uint32_t history, rc_buf *buf)
{
    char name[32], user[32];
    int n = snprintf(name, sizeof(name), "group-%u", gi);
    rc_group *g = rc_group_new(name, (uint32_t)n, 1, 0);
    if (!g)
        return -1;
    for (uint32_t m = 0; m < members; m++) {
        int ul = snprintf(user, sizeof(user), "user-%u", (gi * 7u + m) % 1000000u);
        rc_strmap_put(&g->members, user, (uint32_t)ul, 1);
    }
    g->version = 1;
    g->last_seq = history;
    g->created_ms = g->updated_ms = (uint64_t)time(NULL) * 1000u;
    buf->len = 0;
    int r = rc_snapshot_encode(g, buf);
    if (r == 0)
        ops->put_group(b, name, (uint32_t)n, buf->data, (uint32_t)buf->len);
    static const char body[POP_BODY] = "stored message body for the recovery benchmark .............";
    for (uint32_t seq = 1; r == 0 && seq <= history; seq++) {
        rc_msg msg = { .type = RC_T_MSG, .g = { name, (uint32_t)n }, .seq = seq, .ts = g->created_ms,
                       .from = rc_str_c("user-1"), .body = { body, POP_BODY } };
        buf->len = 0;
        r = rc_encode(buf, &msg);
        if (r == 0)
            ops->put_msg(b, name, (uint32_t)n, NULL, seq, buf->data + RC_FRAME_HEADER, (uint32_t)buf->len - RC_FRAME_HEADER);
    }
    rc_group_free(g);
    return r;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    uint32_t groups = 100000, history = 10, members = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--data-dir") == 0) dir = argv[i + 1];
        else if (strcmp(argv[i], "--groups") == 0) groups = (uint32_t)arg(argv[i + 1], POP_MAX_GROUPS, "--groups");
        else if (strcmp(argv[i], "--history") == 0) history = (uint32_t)arg(argv[i + 1], POP_MAX_HISTORY, "--history");
        else if (strcmp(argv[i], "--members") == 0) members = (uint32_t)arg(argv[i + 1], POP_MAX_MEMBERS, "--members");
        else {
            fprintf(stderr, "usage: ringcast-populate --data-dir DIR [--groups G] [--history K] [--members M]\n");
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "usage: ringcast-populate --data-dir DIR [--groups G] [--history K] [--members M]\n");
        return 2;
    }
    char err[512];
    rc_persist *p = rc_store_open(dir, NULL, err, sizeof(err));
    if (!p) {
        fprintf(stderr, "ringcast-populate: %s\n", err);
        return 1;
    }
    const rc_persist_ops *ops = rc_store_ops();
    rc_buf buf;
    rc_buf_init(&buf);
    int rc = 0;
    for (uint32_t gi = 0; gi < groups && rc == 0; gi += POP_BATCH_GROUPS) {
        rc_persist_batch *b = ops->batch_begin(p);
        for (uint32_t k = gi; k < gi + POP_BATCH_GROUPS && k < groups && rc == 0; k++)
            rc = put_group(ops, b, k, members, history, &buf);
        if (rc == 0 && ops->batch_commit(p, b, RC_DURABILITY_BATCH, err, sizeof(err)) != 0) {
            fprintf(stderr, "ringcast-populate: %s\n", err);
            rc = 1;
        }
    }
    rc_buf_free(&buf);
    rc_store_close(p);
    if (rc == 0)
        printf("populated %s: groups=%u members=%u history=%u\n", dir, groups, members, history);
    return rc;
}
