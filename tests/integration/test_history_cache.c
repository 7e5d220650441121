/*
 * The history cache (src/ARCHITECTURE.md §6.1): with history_cache_mb = 1
 * and N_GROUPS groups of HIST messages each (several MiB of history), the
 * server keeps about 1 MiB in memory and gives the rest back, and what a
 * user asks of an evicted group is still all there:
 *  - ringcast_history_cache_evictions_total > 0 and
 *    ringcast_history_cache_bytes stays near the budget;
 *  - `join since 0` on an evicted group replays all HIST messages, seq
 *    1..HIST gapless with the bodies that were sent, then `synced`;
 *  - `hist` on an evicted group returns its newest messages;
 *  - a resent mid of an evicted group is still recognised (`dup: true`,
 *    the original seq): the dedup window is read back with the history;
 *  - each of those reads counts in ringcast_history_loads_total, and
 *    reads what the request reads: nothing for a join without since or a
 *    presence query, a hist page, the messages after a join's since.
 * And with many more groups than the cache holds, sends to cold groups go
 * on (each one acked with the next seq), reading back at most the dedup
 * window: a send without a mid to a cold group reads nothing, one with a
 * mid reads the window and still finds a mid sent before the eviction
 * (`dup: true`, its seq), and each group's history stays gapless.
 * Concurrent senders on two shards keep each group's order while its
 * history is evicted and read back: every group gets seqs 1..N, each once,
 * each sender's messages in its order, resent mids are dups with their
 * seqs. And kill -9 with such a cache loses nothing acked: after the restart every
 * group's history is whole and gapless, a mid sent before the kill is still
 * a dup with its seq, and the next send gets the next seq.
 */
#define _GNU_SOURCE
#include "itest.h"

#include <signal.h>
#include <sys/wait.h>

#define N_GROUPS 40
#define HIST 150
#define BODY 300
#define BUDGET_BYTES (1u << 20)
#define SLACK_BYTES (256u << 10) /* the group used last may stay above the budget */

static it_server srv;

static int cleanup(void)
{
    return it_cleanup(&srv);
}

static void body_of(char *out, int g, int i)
{
    memset(out, 'a' + (g + i) % 26, BODY);
    snprintf(out, 32, "g%d-m%d-", g, i);
    out[strlen(out)] = '-';
}

static double metric(const char *name)
{
    return rc_test_metric(srv.s.admin_port, name, 1);
}

/* `join since` on group g (body_of's gi) from c: the number of messages
 * replayed before `synced` (which must say nothing more and nothing lost);
 * *wrong counts those not at their seq (since + 1, since + 2, ...) with the
 * body that was sent. */
static int replay_since(rc_client *c, const char *g, int gi, uint64_t since, uint64_t rid, int *wrong)
{
    char body[BODY + 1];
    rc_msg jm = { .type = RC_T_JOIN, .g = rc_str_c(g), .has = RC_HAS_SINCE, .since = since };
    CU_ASSERT_FATAL(it_request(c, &jm, rid) == 0);
    rc_msg m;
    CU_ASSERT_FATAL(it_expect(c, &m, RC_T_JOINED));
    int got = 0;
    *wrong = 0;
    for (;;) {
        CU_ASSERT_FATAL(it_next(c, &m) == 1);
        if (m.type == RC_T_SYNCED)
            break;
        CU_ASSERT_FATAL(m.type == RC_T_MSG);
        got++;
        body_of(body, gi, (int)since + got);
        *wrong += m.seq != since + (uint64_t)got || m.body.len != BODY || memcmp(m.body.ptr, body, BODY) != 0;
    }
    CU_ASSERT(!m.more);
    CU_ASSERT(!m.lost);
    return got;
}

static int replay_all(rc_client *c, const char *g, int gi, uint64_t rid, int *wrong)
{
    return replay_since(c, g, gi, 0, rid, wrong);
}

/* A server with a 1 MiB cache and N_GROUPS groups c0, c1, ... of HIST
 * messages each (body_of, mids m1, m2, ...) sent by `a`, logged in as
 * alice: the groups sent to first are evicted by the time it returns. */
static void start_filled(rc_client *a)
{
    const char *flags[] = { "--history-cache-mb", "1", "--history-max", "150", "--shards", "1",
                            "--min-shards", "1", "--max-shards", "1", NULL };
    CU_ASSERT_FATAL(it_start(&srv, flags) == 0);
    CU_ASSERT_FATAL(it_login(a, &srv, "alice") == 0);
    char g[16], mid[32], body[BODY + 1];
    for (int gi = 0; gi < N_GROUPS; gi++) {
        snprintf(g, sizeof(g), "c%d", gi);
        uint64_t seq;
        CU_ASSERT_FATAL(rc_client_join(a, g, IT_TIMEOUT_MS, &seq) == 0);
        for (int i = 1; i <= HIST; i++) {
            body_of(body, gi, i);
            snprintf(mid, sizeof(mid), "m%d", i);
            rc_msg ack;
            CU_ASSERT_FATAL(rc_client_publish(a, g, body, BODY, mid, IT_TIMEOUT_MS, &ack) == 0);
            CU_ASSERT_EQUAL_FATAL(ack.seq, (uint64_t)i);
        }
    }
}

static void test_evicted_history_reads_back(void)
{
    rc_client a;
    start_filled(&a);
    char g[16], body[BODY + 1];
    double evicted = metric("ringcast_history_cache_evictions_total");
    double held = metric("ringcast_history_cache_bytes");
    printf("\n    %d groups x %d messages of %d bytes: %.0f evictions, %.0f bytes held (budget %u)\n", N_GROUPS,
           HIST, BODY, evicted, held, BUDGET_BYTES);
    CU_ASSERT(evicted > 0);
    CU_ASSERT(held <= BUDGET_BYTES + SLACK_BYTES);
    double loads0 = metric("ringcast_history_loads_total");

    /* Dedup of an evicted group: c1 went cold long ago. */
    rc_msg ack;
    body_of(body, 1, 10);
    CU_ASSERT_EQUAL(rc_client_publish(&a, "c1", body, BODY, "m10", IT_TIMEOUT_MS, &ack), 0);
    CU_ASSERT_EQUAL(ack.seq, 10);
    CU_ASSERT(ack.has & RC_HAS_DUP);
    CU_ASSERT(ack.dup);

    /* join since 0 on evicted groups: everything, gapless, as sent. */
    rc_client b;
    CU_ASSERT_FATAL(it_login(&b, &srv, "bob") == 0);
    for (int gi = 2; gi < 6; gi++) {
        snprintf(g, sizeof(g), "c%d", gi);
        int wrong;
        CU_ASSERT_EQUAL(replay_all(&b, g, gi, 100 + (uint64_t)gi, &wrong), HIST);
        CU_ASSERT_EQUAL(wrong, 0);
    }
    /* hist on an evicted group: its newest messages. */
    rc_msg h = { .type = RC_T_HIST, .g = rc_str_c("c7"), .has = RC_HAS_LIMIT, .limit = 20 };
    rc_msg jm = { .type = RC_T_JOIN, .g = rc_str_c("c7") };
    CU_ASSERT_FATAL(it_request(&b, &jm, 200) == 0);
    rc_msg m;
    CU_ASSERT_FATAL(it_wait(&b, RC_T_JOINED, 200, &m, NULL) == 1);
    CU_ASSERT_FATAL(it_request(&b, &h, 201) == 0);
    CU_ASSERT_FATAL(it_wait(&b, RC_T_HIST, 201, &m, NULL) == 1);
    CU_ASSERT_EQUAL(m.n_msgs, 20);
    if (m.n_msgs == 20) {
        CU_ASSERT_EQUAL(m.msgs[0].seq, HIST - 19);
        CU_ASSERT_EQUAL(m.msgs[19].seq, HIST);
    }
    CU_ASSERT(metric("ringcast_history_loads_total") >= loads0 + 6);
    rc_client_close(&a);
    rc_client_close(&b);
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
}

/* What a cold group's request reads back is what it reads, not the whole
 * history: nothing for a join without since or a presence query, a hist
 * page for a hist (and the page before it for the next), the messages
 * after since for a join with since. Each answer is what the user asked
 * for. Reading whole histories here would read HIST messages a group. */
static double loaded(void)
{
    return metric("ringcast_history_loaded_messages_total");
}

static void test_cold_reads_read_their_page(void)
{
    rc_client a, b;
    start_filled(&a);
    CU_ASSERT_FATAL(it_login(&b, &srv, "bob") == 0);
    double read0 = loaded();

    rc_msg m, jm = { .type = RC_T_JOIN, .g = rc_str_c("c11") };
    CU_ASSERT_FATAL(it_request(&b, &jm, 300) == 0);
    CU_ASSERT_FATAL(it_wait(&b, RC_T_JOINED, 300, &m, NULL) == 1);
    CU_ASSERT_EQUAL(m.seq, HIST);
    rc_msg pm = { .type = RC_T_PRESENCE, .g = rc_str_c("c11") };
    CU_ASSERT_FATAL(it_request(&b, &pm, 301) == 0);
    CU_ASSERT_FATAL(it_wait(&b, RC_T_PRESENCE, 301, &m, NULL) == 1);
    CU_ASSERT_EQUAL(loaded() - read0, 0); /* neither reads history */

    /* hist: its page (c11 was cold: the page is read back), then the one before. */
    rc_msg h = { .type = RC_T_HIST, .g = rc_str_c("c11"), .has = RC_HAS_LIMIT, .limit = 20 };
    CU_ASSERT_FATAL(it_request(&b, &h, 302) == 0);
    CU_ASSERT_FATAL(it_wait(&b, RC_T_HIST, 302, &m, NULL) == 1);
    CU_ASSERT_EQUAL(m.n_msgs, 20);
    if (m.n_msgs == 20)
        CU_ASSERT(m.msgs[0].seq == HIST - 19 && m.msgs[19].seq == HIST);
    CU_ASSERT_EQUAL(loaded() - read0, 20);
    h.has |= RC_HAS_BEFORE;
    h.before = HIST - 19;
    CU_ASSERT_FATAL(it_request(&b, &h, 303) == 0);
    CU_ASSERT_FATAL(it_wait(&b, RC_T_HIST, 303, &m, NULL) == 1);
    CU_ASSERT_EQUAL(m.n_msgs, 20);
    if (m.n_msgs == 20)
        CU_ASSERT(m.msgs[0].seq == HIST - 39 && m.msgs[19].seq == HIST - 20);
    CU_ASSERT_EQUAL(loaded() - read0, 40);

    /* join since on another cold group: the messages after since, gapless, as sent. */
    int wrong;
    CU_ASSERT_EQUAL(replay_since(&b, "c12", 12, HIST - 5, 304, &wrong), 5);
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT_EQUAL(loaded() - read0, 45);
    rc_client_close(&a);
    rc_client_close(&b);
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
}

#define MANY_GROUPS 60
#define BEFORE 100 /* messages with mids per group before the groups go cold */

static void many_group(char *out, size_t len, int gi)
{
    snprintf(out, len, "t%d", gi);
}

static void test_cold_sends_progress(void)
{
    const char *flags[] = { "--history-cache-mb", "1", "--history-max", "150", "--dedup-window", "100", "--shards", "1",
                            "--min-shards", "1", "--max-shards", "1", NULL };
    CU_ASSERT_FATAL(it_start(&srv, flags) == 0);
    rc_client a;
    CU_ASSERT_FATAL(it_login(&a, &srv, "alice") == 0);
    char g[16], mid[32], body[BODY + 1];
    rc_msg ack;
    for (int gi = 0; gi < MANY_GROUPS; gi++) {
        many_group(g, sizeof(g), gi);
        CU_ASSERT_FATAL(rc_client_join(&a, g, IT_TIMEOUT_MS, NULL) == 0);
    }
    for (int i = 1; i <= BEFORE; i++) /* round the groups: every group's history leaves memory many times */
        for (int gi = 0; gi < MANY_GROUPS; gi++) {
            many_group(g, sizeof(g), gi);
            body_of(body, gi, i);
            snprintf(mid, sizeof(mid), "p%d", i);
            CU_ASSERT_FATAL(rc_client_publish(&a, g, body, BODY, i % 2 ? mid : NULL, IT_TIMEOUT_MS, &ack) == 0);
            CU_ASSERT_EQUAL_FATAL(ack.seq, (uint64_t)i);
        }
    double evicted = metric("ringcast_history_cache_evictions_total");
    double loads0 = metric("ringcast_history_loads_total"), read0 = metric("ringcast_history_loaded_messages_total");
    int bad = 0;
    for (int gi = 0; gi < MANY_GROUPS; gi++) {
        many_group(g, sizeof(g), gi);
        body_of(body, gi, BEFORE + 1); /* no mid: appended to the cold group's tail */
        bad += rc_client_publish(&a, g, body, BODY, NULL, IT_TIMEOUT_MS, &ack) != 0 || ack.seq != BEFORE + 1 || ack.dup;
        body_of(body, gi, BEFORE + 2); /* a mid: the dedup window is read back, the tail kept */
        bad += rc_client_publish(&a, g, body, BODY, "q", IT_TIMEOUT_MS, &ack) != 0 || ack.seq != BEFORE + 2 || ack.dup;
        body_of(body, gi, 51); /* a mid from before the eviction, inside the window: a dup */
        bad += rc_client_publish(&a, g, body, BODY, "p51", IT_TIMEOUT_MS, &ack) != 0 || ack.seq != 51 || !ack.dup;
        bad += rc_client_publish(&a, g, body, BODY, "q", IT_TIMEOUT_MS, &ack) != 0 || ack.seq != BEFORE + 2 || !ack.dup;
    }
    double loads = metric("ringcast_history_loads_total") - loads0;
    double read = metric("ringcast_history_loaded_messages_total") - read0;
    printf("\n    %d groups: %.0f evictions; then %.0f loads reading %.0f messages for %d sends, %d wrong acks\n",
           MANY_GROUPS, evicted, loads, read, 4 * MANY_GROUPS, bad);
    CU_ASSERT(evicted > 0);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(read <= loads * 100); /* a send's load reads at most the dedup window, never history_max */
    /* The history of a group that was cold for those sends is whole. */
    rc_client b;
    CU_ASSERT_FATAL(it_login(&b, &srv, "bob") == 0);
    for (int gi = 0; gi < MANY_GROUPS; gi += MANY_GROUPS / 4) {
        many_group(g, sizeof(g), gi);
        int wrong;
        CU_ASSERT_EQUAL(replay_all(&b, g, gi, 300 + (uint64_t)gi, &wrong), BEFORE + 2);
        CU_ASSERT_EQUAL(wrong, 0);
    }
    rc_client_close(&a);
    rc_client_close(&b);
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
}

#define C_SENDERS 4
#define C_GROUPS 40
#define C_ROUNDS 40  /* messages per sender and group */
#define C_WINDOW 64  /* sends in flight per sender */
#define C_TOTAL (C_SENDERS * C_GROUPS * C_ROUNDS)

static uint64_t c_seq[C_SENDERS][C_GROUPS][C_ROUNDS]; /* the acked seq of each send (0: none yet) */

/* The body of sender s's i-th message to group gi: its identity, then
 * filler up to BODY bytes. */
static void c_body(char *out, int s, int gi, int i)
{
    memset(out, 'x', BODY);
    int n = snprintf(out, 40, "s%d g%d i%d ", s, gi, i);
    out[n] = '.';
}

static void test_concurrent_senders(void)
{
    const char *flags[] = { "--history-cache-mb", "1", "--history-max", "200", "--dedup-window", "100",
                            "--shards", "2", "--min-shards", "2", "--max-shards", "2", NULL };
    CU_ASSERT_FATAL(it_start(&srv, flags) == 0);
    rc_client c[C_SENDERS];
    char g[16], user[16], mid[40], body[BODY + 1];
    for (int s = 0; s < C_SENDERS; s++) {
        snprintf(user, sizeof(user), "sender%d", s);
        CU_ASSERT_FATAL(it_login(&c[s], &srv, user) == 0);
        for (int gi = 0; gi < C_GROUPS; gi++) {
            snprintf(g, sizeof(g), "x%d", gi);
            CU_ASSERT_FATAL(rc_client_join(&c[s], g, IT_TIMEOUT_MS, NULL) == 0);
        }
    }
    memset(c_seq, 0, sizeof(c_seq));
    /* Sender s's k-th send (rid k + 1) is message k / C_GROUPS to group k % C_GROUPS. */
    uint32_t sent[C_SENDERS] = { 0 }, acked[C_SENDERS] = { 0 };
    int errors = 0, acks = 0;
    for (int64_t end = it_now_ms() + 60000; acks + errors < C_TOTAL && it_now_ms() < end;) {
        for (int s = 0; s < C_SENDERS; s++) {
            while (sent[s] - acked[s] < C_WINDOW && sent[s] < C_GROUPS * C_ROUNDS) {
                int gi = (int)(sent[s] % C_GROUPS), i = (int)(sent[s] / C_GROUPS);
                snprintf(g, sizeof(g), "x%d", gi);
                snprintf(mid, sizeof(mid), "s%d-g%d-i%d", s, gi, i);
                c_body(body, s, gi, i);
                rc_msg m = { .type = RC_T_SEND, .g = rc_str_c(g), .body = { body, BODY }, .mid = rc_str_c(mid),
                             .has = RC_HAS_MID | RC_HAS_RID, .rid = sent[s] + 1 };
                CU_ASSERT_FATAL(rc_client_send(&c[s], &m) == 0);
                sent[s]++;
            }
            rc_msg r;
            while (rc_client_recv(&c[s], &r, 1) == 1) {
                if (r.type != RC_T_ACK && r.type != RC_T_ERR)
                    continue; /* its members' messages */
                uint64_t k = r.rid - 1;
                acked[s]++;
                if (r.type == RC_T_ERR || k >= (uint64_t)C_GROUPS * C_ROUNDS || r.dup) {
                    errors++;
                    continue;
                }
                c_seq[s][k % C_GROUPS][k / C_GROUPS] = r.seq;
                acks++;
            }
        }
    }
    double evicted = metric("ringcast_history_cache_evictions_total");
    /* Each group: seqs 1..C_SENDERS * C_ROUNDS, each once, each sender's in its order. */
    int bad_groups = 0;
    for (int gi = 0; gi < C_GROUPS; gi++) {
        bool seen[C_SENDERS * C_ROUNDS + 1] = { false };
        bool ok = true;
        for (int s = 0; s < C_SENDERS; s++)
            for (int i = 0; i < C_ROUNDS; i++) {
                uint64_t q = c_seq[s][gi][i];
                ok &= q >= 1 && q <= C_SENDERS * C_ROUNDS && !seen[q] && (i == 0 || q > c_seq[s][gi][i - 1]);
                if (q >= 1 && q <= C_SENDERS * C_ROUNDS)
                    seen[q] = true;
            }
        bad_groups += !ok;
    }
    /* A resent mid (within the dedup window) is a dup with its seq. */
    int bad_dups = 0;
    for (int gi = 0; gi < C_GROUPS; gi++) {
        int s = gi % C_SENDERS, i = C_ROUNDS - 5;
        snprintf(g, sizeof(g), "x%d", gi);
        snprintf(mid, sizeof(mid), "s%d-g%d-i%d", s, gi, i);
        c_body(body, s, gi, i);
        rc_msg ack;
        bad_dups += rc_client_publish(&c[s], g, body, BODY, mid, IT_TIMEOUT_MS, &ack) != 0 || !ack.dup ||
                    ack.seq != c_seq[s][gi][i];
    }
    /* What history gives back of a group matches the acks: the message at
     * each seq is the one that was acked with it. */
    rc_client v;
    CU_ASSERT_FATAL(it_login(&v, &srv, "verifier") == 0);
    int misplaced = 0, replayed = 0;
    for (int gi = 0; gi < C_GROUPS; gi += 7) {
        snprintf(g, sizeof(g), "x%d", gi);
        rc_msg jm = { .type = RC_T_JOIN, .g = rc_str_c(g), .has = RC_HAS_SINCE, .since = 0 };
        CU_ASSERT_FATAL(it_request(&v, &jm, 500 + (uint64_t)gi) == 0);
        rc_msg m;
        CU_ASSERT_FATAL(it_expect(&v, &m, RC_T_JOINED));
        for (;;) {
            CU_ASSERT_FATAL(it_next(&v, &m) == 1);
            if (m.type == RC_T_SYNCED)
                break;
            CU_ASSERT_FATAL(m.type == RC_T_MSG);
            replayed++;
            int s = -1, mg = -1, i = -1;
            char head[48] = { 0 };
            memcpy(head, m.body.ptr, m.body.len < sizeof(head) - 1 ? m.body.len : sizeof(head) - 1);
            misplaced += sscanf(head, "s%d g%d i%d", &s, &mg, &i) != 3 || s < 0 || s >= C_SENDERS || mg != gi ||
                         i < 0 || i >= C_ROUNDS || c_seq[s][gi][i] != m.seq;
        }
    }
    printf("\n    %d senders: %d acked, %d refused or dup; %.0f evictions; %d groups out of order, %d wrong dups, "
           "%d of %d replayed misplaced\n", C_SENDERS, acks, errors, evicted, bad_groups, bad_dups, misplaced, replayed);
    CU_ASSERT_EQUAL(acks, C_TOTAL);
    CU_ASSERT_EQUAL(errors, 0);
    CU_ASSERT(evicted > 0);
    CU_ASSERT_EQUAL(bad_groups, 0);
    CU_ASSERT_EQUAL(bad_dups, 0);
    CU_ASSERT_EQUAL(misplaced, 0);
    CU_ASSERT_EQUAL(replayed, 6 * C_SENDERS * C_ROUNDS); /* groups 0, 7, ..., 35 */
    for (int s = 0; s < C_SENDERS; s++)
        rc_client_close(&c[s]);
    rc_client_close(&v);
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
}

#define KILL_GROUPS 20
#define KILL_HIST_SMALL 120 /* messages with mids per group before the kill: all in the tick log's files */
#define KILL_HIST_FOLDED 300 /* ... 2 MB, with a tick log of 1 MiB: the older ones folded into RocksDB */

static void kill_with_small_cache(int hist, const char *history_max, const char *tick_log_mb)
{
    const char *flags[] = { "--history-cache-mb", "1", "--history-max", history_max, "--dedup-window", "100",
                            "--durability", "batch", "--shards", "1", "--min-shards", "1", "--max-shards", "1",
                            "--tick-log-mb", tick_log_mb, NULL };
    CU_ASSERT_FATAL(it_start(&srv, flags) == 0);
    rc_client a;
    CU_ASSERT_FATAL(it_login(&a, &srv, "alice") == 0);
    char g[16], mid[32], body[BODY + 1];
    rc_msg ack;
    for (int gi = 0; gi < KILL_GROUPS; gi++) {
        snprintf(g, sizeof(g), "k%d", gi);
        CU_ASSERT_FATAL(rc_client_join(&a, g, IT_TIMEOUT_MS, NULL) == 0);
    }
    for (int i = 1; i <= hist; i++) /* round the groups, so that most of each history is evicted */
        for (int gi = 0; gi < KILL_GROUPS; gi++) {
            snprintf(g, sizeof(g), "k%d", gi);
            snprintf(mid, sizeof(mid), "k%d", i);
            body_of(body, gi, i);
            CU_ASSERT_FATAL(rc_client_publish(&a, g, body, BODY, mid, IT_TIMEOUT_MS, &ack) == 0);
            CU_ASSERT_EQUAL_FATAL(ack.seq, (uint64_t)i);
        }
    CU_ASSERT(metric("ringcast_history_cache_evictions_total") > 0);
    double disk = metric("ringcast_store_tick_log_disk_bytes");
    printf("\n    before kill -9: tick log %.0f bytes on disk", disk);
    if (hist == KILL_HIST_FOLDED)
        CU_ASSERT(disk > 0 && disk < 1.2 * 1024 * 1024); /* the rest was folded */
    rc_client_close(&a);
    int st = 0;
    CU_ASSERT_FATAL(kill(srv.s.pid, SIGKILL) == 0);
    CU_ASSERT_FATAL(waitpid(srv.s.pid, &st, 0) == srv.s.pid);
    CU_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

    /* The same data directory and flags again. */
    const char *args[IT_MAX_EXTRA_ARGS + 3] = { "--data-dir", srv.dir };
    int n = 2;
    for (int i = 0; flags[i]; i++)
        args[n++] = flags[i];
    args[n] = NULL;
    CU_ASSERT_FATAL(rc_test_server_start(&srv.s, args) == 0);
    CU_ASSERT_FATAL(it_login(&a, &srv, "alice") == 0);
    int bad = 0;
    for (int gi = 0; gi < KILL_GROUPS; gi++) {
        snprintf(g, sizeof(g), "k%d", gi);
        CU_ASSERT_FATAL(rc_client_join(&a, g, IT_TIMEOUT_MS, NULL) == 0);
        int again = hist - 60; /* sent before the kill, inside the dedup window (100) */
        body_of(body, gi, again);
        snprintf(mid, sizeof(mid), "k%d", again);
        bad += rc_client_publish(&a, g, body, BODY, mid, IT_TIMEOUT_MS, &ack) != 0 || ack.seq != (uint64_t)again ||
               !ack.dup;
        body_of(body, gi, hist + 1);
        bad += rc_client_publish(&a, g, body, BODY, "after", IT_TIMEOUT_MS, &ack) != 0 ||
               ack.seq != (uint64_t)hist + 1 || ack.dup;
    }
    CU_ASSERT_EQUAL(bad, 0);
    rc_client b;
    CU_ASSERT_FATAL(it_login(&b, &srv, "bob") == 0);
    int total_wrong = 0, short_groups = 0;
    for (int gi = 0; gi < KILL_GROUPS; gi++) {
        snprintf(g, sizeof(g), "k%d", gi);
        int wrong;
        short_groups += replay_all(&b, g, gi, 400 + (uint64_t)gi, &wrong) != hist + 1;
        total_wrong += wrong;
    }
    printf("\n    after kill -9: %d wrong acks, %d groups short, %d messages out of place\n", bad, short_groups,
           total_wrong);
    CU_ASSERT_EQUAL(short_groups, 0);
    CU_ASSERT_EQUAL(total_wrong, 0);
    rc_client_close(&a);
    rc_client_close(&b);
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
}

static void test_kill_with_small_cache(void)
{
    kill_with_small_cache(KILL_HIST_SMALL, "150", "512");
}

static void test_kill_with_small_cache_and_folds(void)
{
    kill_with_small_cache(KILL_HIST_FOLDED, "400", "1");
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("history cache", NULL, cleanup);
    CU_add_test(s, "evicted history reads back from storage", test_evicted_history_reads_back);
    CU_add_test(s, "a cold group's request reads its page, not the whole history", test_cold_reads_read_their_page);
    CU_add_test(s, "many cold groups: sends go on, dedup holds", test_cold_sends_progress);
    CU_add_test(s, "concurrent senders: order and dedup across evictions", test_concurrent_senders);
    CU_add_test(s, "kill -9 with a small cache loses nothing acked", test_kill_with_small_cache);
    CU_add_test(s, "kill -9 with a small cache and a 1 MiB tick log (folds) loses nothing acked",
                test_kill_with_small_cache_and_folds);
    return rc_test_run();
}
