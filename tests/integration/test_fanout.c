/*
 * Fan-out under concurrent, pipelined load (proto/PROTOCOL.md §6.3, §6.4).
 *
 * 50 clients join a deterministic subset of 20 groups (every group has at
 * least two members), then every client sends 200 messages spread over its
 * groups: 10,000 messages in all, sent in bursts from all clients before any
 * ack is read. One poll(2) reader sees every frame of every client and
 * checks, as frames arrive:
 *  - every send gets exactly one ack, not a duplicate, for the right group;
 *  - every member receives every message of its groups exactly once, in seq
 *    order, seqs gapless from 1 (the sender receives its own message too);
 *  - nobody receives messages of a group it did not join;
 *  - all members and the sender's ack agree on seq -> (from, body, mid, ts).
 * It runs once with the default configuration and once with two io threads
 * and four shards, so deliveries also cross io threads.
 */
#define _GNU_SOURCE
#include "itest.h"

#include <inttypes.h>
#include <stdarg.h>

#define N_CLIENTS 50
#define N_GROUPS 20
#define PER_CLIENT 200                      /* messages each client sends */
#define N_MSGS (N_CLIENTS * PER_CLIENT)     /* 10,000 */
#define MAX_GROUPS_OF 3                     /* groups one client joins at most */
#define BURST 20                            /* sends per client before reading */
#define SEND_RID0 1000u                     /* rid of a client's k-th send: SEND_RID0 + k */
#define RUN_LIMIT_MS 60000                  /* the whole exchange must finish within */
#define DRAIN_ROUNDS 1000                   /* non-blocking reads between bursts, at most */
#define TAIL_MS 300                         /* quiet time to catch frames beyond the expected */

typedef struct seen {
    int32_t key;  /* sender * PER_CLIENT + k, -1 while unknown */
    uint64_t ts;  /* as the first observer saw it */
} seen;

typedef struct fanout {
    bool member[N_CLIENTS][N_GROUPS];
    int groups_of[N_CLIENTS][MAX_GROUPS_OF];
    int n_groups_of[N_CLIENTS];
    uint64_t sent_to[N_GROUPS];           /* messages each group gets */
    uint64_t ack_seq[N_CLIENTS][PER_CLIENT];
    uint64_t next_seq[N_CLIENTS][N_GROUPS];
    seen *by_seq[N_GROUPS];               /* [seq], seq 1..sent_to[g] */
    long acks, deliveries, want_deliveries;
    char failure[512];
} fanout;

static void group_name(int g, char *out, size_t n)
{
    snprintf(out, n, "fan-g%02d", g);
}

static void user_name(int i, char *out, size_t n)
{
    snprintf(out, n, "fan-u%02d", i);
}

static int group_of_send(const fanout *f, int i, int k)
{
    return f->groups_of[i][k % f->n_groups_of[i]];
}

static void mid_of(int i, int k, char *out, size_t n)
{
    snprintf(out, n, "f%d-%d", i, k);
}

/* Bodies differ in length and kind so a mix-up cannot go unnoticed. */
static int body_of(int i, int k, char *out, size_t n)
{
    return snprintf(out, n, "body %d %d %.*s", i, k, k % 17, "xxxxxxxxxxxxxxxxxxxx");
}

/* Parses "fan-gNN" / "fan-uNN" into NN, or -1. */
static int parse_index(rc_str s, const char *prefix, int limit)
{
    size_t pl = strlen(prefix);
    if (s.len != pl + 2 || memcmp(s.ptr, prefix, pl) != 0)
        return -1;
    char a = s.ptr[pl], b = s.ptr[pl + 1];
    if (a < '0' || a > '9' || b < '0' || b > '9')
        return -1;
    int v = (a - '0') * 10 + (b - '0');
    return v < limit ? v : -1;
}

static void plan(fanout *f)
{
    memset(f, 0, sizeof(*f));
    for (int i = 0; i < N_CLIENTS; i++) {
        int cand[MAX_GROUPS_OF] = { i % N_GROUPS, (i * 3 + 1) % N_GROUPS, (i * 7 + 5) % N_GROUPS };
        for (int c = 0; c < MAX_GROUPS_OF; c++) {
            if (!f->member[i][cand[c]]) {
                f->member[i][cand[c]] = true;
                f->groups_of[i][f->n_groups_of[i]++] = cand[c];
            }
        }
        for (int k = 0; k < PER_CLIENT; k++)
            f->sent_to[group_of_send(f, i, k)]++;
    }
    for (int g = 0; g < N_GROUPS; g++) {
        int members = 0;
        for (int i = 0; i < N_CLIENTS; i++)
            members += f->member[i][g];
        CU_ASSERT_FATAL(members >= 2);
        f->want_deliveries += (long)members * (long)f->sent_to[g];
        f->by_seq[g] = malloc((f->sent_to[g] + 1) * sizeof(seen));
        CU_ASSERT_FATAL(f->by_seq[g] != NULL);
        for (uint64_t s = 0; s <= f->sent_to[g]; s++)
            f->by_seq[g][s] = (seen){ -1, 0 };
        for (int i = 0; i < N_CLIENTS; i++)
            f->next_seq[i][g] = 1;
    }
}

/* Records that seq of group g is the message `key` at ts, or checks that it
 * agrees with what was recorded before. */
static bool agree(fanout *f, int g, uint64_t seq, int32_t key, uint64_t ts, int observer)
{
    if (seq == 0 || seq > f->sent_to[g])
        return it_failf(f->failure, sizeof(f->failure), "client %d: seq %" PRIu64 " outside 1..%" PRIu64 " in group %d", observer, seq,
                    f->sent_to[g], g);
    seen *s = &f->by_seq[g][seq];
    if (s->key < 0) {
        *s = (seen){ key, ts };
        return true;
    }
    if (s->key != key)
        return it_failf(f->failure, sizeof(f->failure), "group %d seq %" PRIu64 ": client %d saw another message than the first observer", g, seq,
                    observer);
    if (s->ts != ts)
        return it_failf(f->failure, sizeof(f->failure), "group %d seq %" PRIu64 ": client %d saw another ts than the first observer", g, seq, observer);
    return true;
}

static bool on_ack(fanout *f, int i, const rc_msg *m)
{
    if (!(m->has & RC_HAS_RID) || m->rid < SEND_RID0 || m->rid >= SEND_RID0 + PER_CLIENT)
        return it_failf(f->failure, sizeof(f->failure), "client %d: ack without a known rid (%" PRIu64 ")", i, m->rid);
    int k = (int)(m->rid - SEND_RID0);
    int g = parse_index(m->g, "fan-g", N_GROUPS);
    if (g != group_of_send(f, i, k))
        return it_failf(f->failure, sizeof(f->failure), "client %d send %d: ack for the wrong group (%d)", i, k, g);
    if (f->ack_seq[i][k])
        return it_failf(f->failure, sizeof(f->failure), "client %d send %d: second ack (seq %" PRIu64 ")", i, k, m->seq);
    if ((m->has & RC_HAS_DUP) && m->dup)
        return it_failf(f->failure, sizeof(f->failure), "client %d send %d: ack says dup for a fresh mid (seq %" PRIu64 ")", i, k, m->seq);
    f->ack_seq[i][k] = m->seq;
    f->acks++;
    return agree(f, g, m->seq, i * PER_CLIENT + k, m->ts, i);
}

static bool on_msg(fanout *f, int i, const rc_msg *m)
{
    int g = parse_index(m->g, "fan-g", N_GROUPS);
    if (g < 0 || !f->member[i][g])
        return it_failf(f->failure, sizeof(f->failure), "client %d: msg for group %d it did not join (seq %" PRIu64 ")", i, g, m->seq);
    if (m->seq != f->next_seq[i][g])
        return it_failf(f->failure, sizeof(f->failure), "client %d group %d: got seq %" PRIu64 " out of order, missing or repeated", i, g, m->seq);
    f->next_seq[i][g]++;
    f->deliveries++;
    int s = parse_index(m->from, "fan-u", N_CLIENTS);
    if (s < 0 || !(m->has & RC_HAS_MID))
        return it_failf(f->failure, sizeof(f->failure), "client %d group %d: msg seq %" PRIu64 " has a bad from or no mid", i, g, m->seq);
    char mid[32], body[64], got[RC_MAX_MID + 1];
    int k = -1;
    snprintf(got, sizeof(got), "%.*s", (int)m->mid.len, m->mid.ptr);
    if (sscanf(got, "f%*d-%d", &k) != 1 || k < 0 || k >= PER_CLIENT)
        return it_failf(f->failure, sizeof(f->failure), "client %d group %d: msg seq %" PRIu64 " has an unknown mid", i, g, m->seq);
    mid_of(s, k, mid, sizeof(mid));
    int blen = body_of(s, k, body, sizeof(body));
    if (!it_str_is(m->mid, mid) || group_of_send(f, s, k) != g)
        return it_failf(f->failure, sizeof(f->failure), "client %d group %d: msg seq %" PRIu64 " mid does not match its sender or group", i, g,
                    m->seq);
    if (m->body.len != (uint32_t)blen || memcmp(m->body.ptr, body, (size_t)blen) != 0)
        return it_failf(f->failure, sizeof(f->failure), "client %d group %d: msg seq %" PRIu64 " body differs from what was sent", i, g, m->seq);
    return agree(f, g, m->seq, s * PER_CLIENT + k, m->ts, i);
}

static bool on_frame(void *ud, int i, const rc_msg *m)
{
    fanout *f = ud;
    switch (m->type) {
    case RC_T_ACK: return on_ack(f, i, m);
    case RC_T_MSG: return on_msg(f, i, m);
    case RC_T_ERR:
        return it_failf(f->failure, sizeof(f->failure), "client %d: err %s in reply to rid %" PRIu64 ": %.*s", i, rc_err_name(m->code), m->rid,
                    (int)m->text.len, m->text.ptr);
    default: return it_failf(f->failure, sizeof(f->failure), "client %d: unexpected %s frame (rid %" PRIu64 ")", i, rc_type_name(m->type), m->rid);
    }
}

static int send_one(fanout *f, rc_client *c, int i, int k)
{
    char g[16], mid[32], body[64];
    group_name(group_of_send(f, i, k), g, sizeof(g));
    mid_of(i, k, mid, sizeof(mid));
    int blen = body_of(i, k, body, sizeof(body));
    rc_msg m = { .type = RC_T_SEND, .g = rc_str_c(g), .mid = rc_str_c(mid), .has = RC_HAS_MID,
                 .body = { body, (uint32_t)blen }, .body_is_str = (k % 2) == 0 };
    return it_request(c, &m, SEND_RID0 + (uint64_t)k);
}

static bool done(const fanout *f)
{
    return f->acks == N_MSGS && f->deliveries == f->want_deliveries;
}

/* Reads whatever has arrived, without waiting. -1 on a failure. */
static int drain_ready(fanout *f, rc_client *cs)
{
    for (int round = 0; round < DRAIN_ROUNDS; round++) {
        int r = it_pump(cs, N_CLIENTS, 0, on_frame, f);
        if (r <= 0)
            return r;
    }
    return 0;
}

static void check_final(fanout *f)
{
    for (int i = 0; i < N_CLIENTS; i++) {
        for (int g = 0; g < N_GROUPS; g++) {
            uint64_t got = f->next_seq[i][g] - 1;
            if (f->member[i][g] && got != f->sent_to[g])
                it_failf(f->failure, sizeof(f->failure), "client %d group %d: received %" PRIu64 " msgs, fewer than sent", i, g, got);
        }
        for (int k = 0; k < PER_CLIENT; k++) {
            int g = group_of_send(f, i, k);
            uint64_t seq = f->ack_seq[i][k];
            if (!seq || f->by_seq[g][seq].key != i * PER_CLIENT + k)
                it_failf(f->failure, sizeof(f->failure), "client %d send %d: no ack, or its seq holds another message (seq %" PRIu64 ")", i, k, seq);
        }
    }
}

static it_server srv;

static int cleanup(void)
{
    return it_cleanup(&srv);
}

static void run_fanout(const char *const *flags)
{
    static fanout f; /* large: keep it off the stack */
    it_cleanup(&srv);
    plan(&f);
    CU_ASSERT_FATAL(it_start(&srv, flags) == 0);
    rc_client *cs = calloc(N_CLIENTS, sizeof(*cs));
    CU_ASSERT_FATAL(cs != NULL);
    int logged_in = 0;
    for (int i = 0; i < N_CLIENTS; i++, logged_in++) {
        char user[16];
        user_name(i, user, sizeof(user));
        if (it_login(&cs[i], &srv, user) != 0)
            break;
        bool joined = true;
        for (int j = 0; j < f.n_groups_of[i] && joined; j++) {
            char g[16];
            group_name(f.groups_of[i][j], g, sizeof(g));
            uint64_t last = 99;
            joined = rc_client_join(&cs[i], g, IT_TIMEOUT_MS, &last) == 0 && last == 0;
        }
        if (!joined) {
            rc_client_close(&cs[i]);
            break;
        }
    }
    CU_ASSERT_EQUAL(logged_in, N_CLIENTS);

    int64_t t0 = it_now_ms(), end = t0 + RUN_LIMIT_MS;
    bool ok = logged_in == N_CLIENTS;
    for (int k0 = 0; ok && k0 < PER_CLIENT; k0 += BURST) {
        for (int i = 0; ok && i < N_CLIENTS; i++)
            for (int k = k0; ok && k < k0 + BURST && k < PER_CLIENT; k++)
                ok = send_one(&f, &cs[i], i, k) == 0;
        ok = ok && drain_ready(&f, cs) >= 0;
    }
    CU_ASSERT(ok);
    while (ok && !done(&f) && it_now_ms() < end)
        ok = it_pump(cs, N_CLIENTS, 100, on_frame, &f) >= 0;
    /* Anything beyond the expected frames (a duplicate) shows up now. */
    for (int64_t tail = it_now_ms() + TAIL_MS; ok && it_now_ms() < tail;)
        ok = it_pump(cs, N_CLIENTS, 50, on_frame, &f) >= 0;
    printf("\n    fanout: %ld acks, %ld of %ld deliveries in %lld ms\n", f.acks, f.deliveries, f.want_deliveries,
           (long long)(it_now_ms() - t0));
    check_final(&f);
    if (f.failure[0])
        printf("    first failure: %s\n", f.failure);
    CU_ASSERT(ok);
    CU_ASSERT_EQUAL(f.acks, N_MSGS);
    CU_ASSERT_EQUAL(f.deliveries, f.want_deliveries);
    CU_ASSERT_STRING_EQUAL(f.failure, "");

    for (int i = 0; i < logged_in; i++)
        rc_client_close(&cs[i]);
    free(cs);
    for (int g = 0; g < N_GROUPS; g++)
        free(f.by_seq[g]);
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
}

static void test_fanout_default(void)
{
    /* The shard count stays put (a move under ThreadSanitizer's slowness
     * can outlast max_queue_ms); moves under load are test_scale's. */
    const char *flags[] = { "--scale-interval-ms", "0", NULL };
    run_fanout(flags);
}

static void test_fanout_two_io_threads(void)
{
    const char *flags[] = { "--io-threads", "2", "--shards", "4", "--scale-interval-ms", "0", NULL };
    run_fanout(flags);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("fanout", NULL, cleanup);
    if (!s) {
        CU_cleanup_registry();
        return 1;
    }
    CU_add_test(s, "50 clients, 20 groups, 10000 pipelined messages", test_fanout_default);
    CU_add_test(s, "same with 2 io threads and 4 shards", test_fanout_two_io_threads);
    return rc_test_run();
}
