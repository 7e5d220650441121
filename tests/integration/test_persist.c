/* Durable group state (ARCHITECTURE §6): restarts keep membership, seqs and
 * history; SIGKILL loses no acked message and never reuses a seq; retention
 * reports `lost`; a bad data directory is a clear error. */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ringcast/client.h"
#include "testutil.h"

#define T_MS 5000
#define CRASH_ROUNDS 5
#define CRASH_ROUNDS_SYNC 2
#define CRASH_SENDERS 3
#define CRASH_MAX_SENDS 20000      /* per sender per round, at most */
#define CRASH_WINDOW 64            /* sends in flight per sender */
#define CRASH_MAX_ACKED 400000
#define BAD_DIR_WAIT_MS 10000     /* a refused start must exit within this */

static void login(rc_client *c, const rc_test_server *srv, const char *user)
{
    CU_ASSERT_FATAL(rc_client_connect(c, "127.0.0.1", srv->port, T_MS) == 0);
    CU_ASSERT_FATAL(rc_client_hello(c, user, T_MS) == 0);
}

static bool str_is(rc_str s, const char *z)
{
    return s.len == strlen(z) && memcmp(s.ptr, z, s.len) == 0;
}

/* Sends a join with since and collects the msgs up to `synced`. */
static int join_since(rc_client *c, const char *g, uint64_t since, uint64_t *seqs, int max, rc_msg *synced)
{
    rc_msg m = { .type = RC_T_JOIN, .g = rc_str_c(g), .has = RC_HAS_SINCE | RC_HAS_RID, .since = since, .rid = 77 };
    CU_ASSERT_FATAL(rc_client_send(c, &m) == 0);
    int n = 0;
    for (;;) {
        rc_msg r;
        if (rc_client_recv(c, &r, T_MS) != 1)
            return -1;
        if (r.type == RC_T_MSG && str_is(r.g, g) && n < max)
            seqs[n++] = r.seq;
        if (r.type == RC_T_SYNCED) {
            *synced = r;
            return n;
        }
        if (r.type == RC_T_ERR)
            return -1;
    }
}

static void test_restart_keeps_state(void)
{
    rc_test_server srv;
    CU_ASSERT_FATAL(rc_test_server_start(&srv, NULL) == 0);
    rc_client a, b;
    login(&a, &srv, "alice");
    login(&b, &srv, "bob");
    CU_ASSERT(rc_client_join(&a, "room", T_MS, NULL) == 0);
    CU_ASSERT(rc_client_join(&b, "room", T_MS, NULL) == 0);
    char mid[16], body[32];
    for (int i = 1; i <= 5; i++) {
        snprintf(mid, sizeof(mid), "m%d", i);
        snprintf(body, sizeof(body), "body %d", i);
        rc_msg ack;
        CU_ASSERT(rc_client_publish(&a, "room", body, strlen(body), mid, T_MS, &ack) == 0 && ack.seq == (uint64_t)i);
    }
    rc_client_close(&a);
    rc_client_close(&b);
    CU_ASSERT_EQUAL_FATAL(rc_test_server_stop_keep(&srv), 0);

    CU_ASSERT_FATAL(rc_test_server_restart(&srv, NULL) == 0);
    login(&b, &srv, "bob");
    uint64_t seqs[16];
    rc_msg synced;
    int n = join_since(&b, "room", 2, seqs, 16, &synced);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT(n == 3 && seqs[0] == 3 && seqs[1] == 4 && seqs[2] == 5);
    CU_ASSERT(synced.seq == 5 && !synced.lost);

    /* alice is still a member: she sends without joining again. */
    login(&a, &srv, "alice");
    rc_msg ack;
    CU_ASSERT(rc_client_publish(&a, "room", "after", 5, "m6", T_MS, &ack) == 0 && ack.seq == 6 && !ack.dup);
    /* The dedup window survived the restart. */
    CU_ASSERT(rc_client_publish(&a, "room", "body 5", 6, "m5", T_MS, &ack) == 0 && ack.seq == 5 && ack.dup);
    rc_client_close(&a);
    rc_client_close(&b);
    CU_ASSERT_EQUAL(rc_test_server_stop(&srv), 0);
}

static void test_retention_reports_lost(void)
{
    const char *flags[] = { "--history-max", "10", NULL };
    rc_test_server srv;
    CU_ASSERT_FATAL(rc_test_server_start(&srv, flags) == 0);
    rc_client a;
    login(&a, &srv, "alice");
    CU_ASSERT(rc_client_join(&a, "short", T_MS, NULL) == 0);
    for (int i = 0; i < 30; i++)
        CU_ASSERT(rc_client_publish(&a, "short", "x", 1, NULL, T_MS, NULL) == 0);
    rc_client_close(&a);
    CU_ASSERT_EQUAL_FATAL(rc_test_server_stop_keep(&srv), 0);
    CU_ASSERT_FATAL(rc_test_server_restart(&srv, flags) == 0);
    rc_client b;
    login(&b, &srv, "bob");
    uint64_t seqs[40];
    rc_msg synced;
    int n = join_since(&b, "short", 5, seqs, 40, &synced);
    CU_ASSERT_EQUAL(n, 10);
    CU_ASSERT(n == 10 && seqs[0] == 21 && seqs[9] == 30);
    CU_ASSERT(synced.seq == 30 && synced.lost);
    rc_client_close(&b);
    CU_ASSERT_EQUAL(rc_test_server_stop(&srv), 0);
}

static void test_history_ttl(void)
{
    const char *flags[] = { "--history-ttl", "1", NULL };
    rc_test_server srv;
    CU_ASSERT_FATAL(rc_test_server_start(&srv, flags) == 0);
    rc_client a;
    login(&a, &srv, "alice");
    CU_ASSERT(rc_client_join(&a, "ttl", T_MS, NULL) == 0);
    for (int i = 0; i < 5; i++)
        CU_ASSERT(rc_client_publish(&a, "ttl", "old", 3, NULL, T_MS, NULL) == 0);
    struct timespec pause = { 1, 300000000L };
    nanosleep(&pause, NULL);
    for (int i = 0; i < 2; i++)
        CU_ASSERT(rc_client_publish(&a, "ttl", "new", 3, NULL, T_MS, NULL) == 0);
    rc_client b;
    login(&b, &srv, "bob");
    uint64_t seqs[16];
    rc_msg synced;
    int n = join_since(&b, "ttl", 0, seqs, 16, &synced);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT(n == 2 && seqs[0] == 6 && seqs[1] == 7);
    CU_ASSERT(synced.seq == 7 && synced.lost);
    rc_client_close(&a);
    rc_client_close(&b);
    CU_ASSERT_EQUAL(rc_test_server_stop(&srv), 0);
}

static void test_durability_off_stores_nothing(void)
{
    const char *flags[] = { "--durability", "off", NULL };
    rc_test_server srv;
    CU_ASSERT_FATAL(rc_test_server_start(&srv, flags) == 0);
    rc_client a;
    login(&a, &srv, "alice");
    uint64_t seq = 99;
    CU_ASSERT(rc_client_join(&a, "mem", T_MS, &seq) == 0 && seq == 0);
    CU_ASSERT(rc_client_publish(&a, "mem", "x", 1, NULL, T_MS, NULL) == 0);
    rc_client_close(&a);
    CU_ASSERT_EQUAL_FATAL(rc_test_server_stop_keep(&srv), 0);
    CU_ASSERT_FATAL(rc_test_server_restart(&srv, flags) == 0);
    login(&a, &srv, "alice");
    seq = 99;
    CU_ASSERT(rc_client_join(&a, "mem", T_MS, &seq) == 0);
    CU_ASSERT_EQUAL(seq, 0); /* memory only: the restart forgot the group */
    rc_client_close(&a);
    CU_ASSERT_EQUAL(rc_test_server_stop(&srv), 0);
}

/* ---- crash test ---- */

typedef struct acked {
    uint32_t sender, n; /* mid "s<sender>-<n>" */
    uint64_t seq;
} acked;

static acked *acks;
static uint32_t n_acks;

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Pipelines sends from every sender until the server dies; records acks. */
static void load_until_killed(rc_test_server *srv, uint32_t round, int kill_after_ms)
{
    rc_client c[CRASH_SENDERS];
    uint32_t sent[CRASH_SENDERS] = { 0 }, done[CRASH_SENDERS] = { 0 };
    bool alive[CRASH_SENDERS];
    char user[16];
    for (int i = 0; i < CRASH_SENDERS; i++) {
        snprintf(user, sizeof(user), "w%d", i);
        login(&c[i], srv, user);
        CU_ASSERT_FATAL(rc_client_join(&c[i], "crash", T_MS, NULL) == 0);
        alive[i] = true;
    }
    pid_t killer = fork();
    if (killer == 0) {
        sleep_ms(kill_after_ms);
        kill(srv->pid, SIGKILL);
        _exit(0);
    }
    int live = CRASH_SENDERS;
    while (live > 0) {
        for (int i = 0; i < CRASH_SENDERS; i++) {
            if (!alive[i])
                continue;
            while (sent[i] - done[i] < CRASH_WINDOW && sent[i] < CRASH_MAX_SENDS) {
                char mid[32];
                snprintf(mid, sizeof(mid), "r%u-s%d-%u", round, i, sent[i]);
                rc_msg m = { .type = RC_T_SEND, .g = rc_str_c("crash"), .body = { mid, (uint32_t)strlen(mid) },
                             .has = RC_HAS_MID | RC_HAS_RID, .mid = rc_str_c(mid), .rid = sent[i] };
                if (rc_client_send(&c[i], &m) != 0)
                    break;
                sent[i]++;
            }
            rc_msg r;
            int got = rc_client_recv(&c[i], &r, 20);
            if (got < 0 || (got == 0 && sent[i] >= CRASH_MAX_SENDS && sent[i] == done[i])) {
                alive[i] = false;
                live--;
                continue;
            }
            if (got == 1 && r.type == RC_T_ACK && n_acks < CRASH_MAX_ACKED) {
                acks[n_acks++] = (acked){ round * 16 + (uint32_t)i, (uint32_t)r.rid, r.seq };
                done[i]++;
            }
        }
    }
    int st;
    waitpid(killer, &st, 0);
    waitpid(srv->pid, &st, 0);
    CU_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    for (int i = 0; i < CRASH_SENDERS; i++)
        rc_client_close(&c[i]);
}

/* After a restart: every acked message is at its seq with its mid; seqs are
 * gapless; the next send gets max + 1. */
static void verify_after_crash(rc_test_server *srv, uint64_t *last_seq)
{
    rc_client v;
    login(&v, srv, "verifier");
    rc_msg m = { .type = RC_T_JOIN, .g = rc_str_c("crash"), .has = RC_HAS_SINCE | RC_HAS_RID, .since = 0, .rid = 1 };
    CU_ASSERT_FATAL(rc_client_send(&v, &m) == 0);
    static char mids[CRASH_MAX_ACKED][32];
    uint64_t expect = 1;
    bool gapless = true;
    rc_msg r;
    for (;;) {
        CU_ASSERT_FATAL(rc_client_recv(&v, &r, T_MS) == 1);
        if (r.type == RC_T_SYNCED && r.more) { /* the backlog stopped at max_reply_bytes: join on from there */
            m.since = expect - 1;
            CU_ASSERT_FATAL(rc_client_send(&v, &m) == 0);
            continue;
        }
        if (r.type == RC_T_SYNCED)
            break;
        if (r.type != RC_T_MSG || r.seq < expect)
            continue; /* a message the page before already brought */
        gapless &= r.seq == expect;
        if (r.seq < CRASH_MAX_ACKED && r.mid.len > 0 && r.mid.len < 32) {
            memcpy(mids[r.seq], r.mid.ptr, r.mid.len);
            mids[r.seq][r.mid.len] = '\0';
        }
        expect = r.seq + 1;
    }
    CU_ASSERT(gapless);
    uint64_t max = r.seq;
    CU_ASSERT(max == expect - 1);
    uint32_t bad = 0;
    for (uint32_t i = 0; i < n_acks; i++) {
        char want[32];
        snprintf(want, sizeof(want), "r%u-s%u-%u", acks[i].sender / 16, acks[i].sender % 16, acks[i].n);
        if (acks[i].seq > max || strcmp(mids[acks[i].seq], want) != 0)
            bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
    rc_msg ack;
    CU_ASSERT(rc_client_publish(&v, "crash", "next", 4, NULL, T_MS, &ack) == 0);
    CU_ASSERT_EQUAL(ack.seq, max + 1);
    *last_seq = ack.seq;
    printf("\n    round: %u acked so far, stored seqs 1..%llu, next send seq %llu", n_acks,
           (unsigned long long)max, (unsigned long long)ack.seq);
    rc_client_close(&v);
}

static void run_crash_rounds(const char *const *flags, uint32_t rounds)
{
    acks = calloc(CRASH_MAX_ACKED, sizeof(*acks));
    CU_ASSERT_FATAL(acks != NULL);
    n_acks = 0;
    rc_test_server srv;
    CU_ASSERT_FATAL(rc_test_server_start(&srv, flags) == 0);
    srand(12345);
    uint64_t last = 0;
    for (uint32_t round = 0; round < rounds; round++) {
        load_until_killed(&srv, round, 100 + rand() % 400);
        CU_ASSERT_FATAL(rc_test_server_restart(&srv, flags) == 0);
        verify_after_crash(&srv, &last);
    }
    CU_ASSERT(n_acks > 0);
    CU_ASSERT_EQUAL(rc_test_server_stop(&srv), 0);
    free(acks);
}

static void test_sigkill_loses_no_acked_message(void)
{
    const char *flags[] = { "--history-max", "400000", "--dedup-window", "1000", NULL };
    run_crash_rounds(flags, CRASH_ROUNDS);
}

static void test_sigkill_with_sync_durability(void)
{
    const char *flags[] = { "--history-max", "400000", "--durability", "sync", NULL };
    run_crash_rounds(flags, CRASH_ROUNDS_SYNC);
}

/* ---- bad data directories ---- */

/* Runs ringcastd on dir; returns its exit status and its stderr in out. */
static int run_on_dir(const char *dir, char *out, size_t cap)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    char port[8], admin[8];
    snprintf(port, sizeof(port), "%u", rc_test_free_port());
    snprintf(admin, sizeof(admin), "%u", rc_test_free_port());
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        const char *bin = getenv("RINGCASTD");
        execl(bin, bin, "--port", port, "--admin-port", admin, "--data-dir", dir, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    size_t len = 0;
    int st = 0;
    /* Bounded: a server that started after all is killed and reported as 0. */
    for (int waited = 0; waited < BAD_DIR_WAIT_MS; waited += 10) {
        ssize_t n = read(p[0], out + len, cap - 1 - len);
        if (n > 0)
            len += (size_t)n;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            while (len < cap - 1 && (n = read(p[0], out + len, cap - 1 - len)) > 0)
                len += (size_t)n;
            out[len] = '\0';
            close(p[0]);
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        sleep_ms(10);
    }
    out[len] = '\0';
    close(p[0]);
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return 0;
}

static void test_bad_data_dir_is_an_error(void)
{
    rc_test_server srv;
    CU_ASSERT_FATAL(rc_test_server_start(&srv, NULL) == 0);
    CU_ASSERT_EQUAL_FATAL(rc_test_server_stop_keep(&srv), 0);
    char path[128], out[4096];
    snprintf(path, sizeof(path), "%s/CURRENT", srv.dir);
    int fd = open(path, O_WRONLY | O_TRUNC);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(write(fd, "garbage\n", 8) == 8);
    close(fd);
    int st = run_on_dir(srv.dir, out, sizeof(out));
    CU_ASSERT(st != 0);
    CU_ASSERT(strstr(out, srv.dir) != NULL);
    printf("\n    corrupt CURRENT: exit %d: %.200s", st, out);
    rc_test_remove_dir(srv.dir);

    /* A directory with unrelated files is never initialised over. */
    char dir[] = "/tmp/ringcast-test-XXXXXX";
    CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/notes.txt", dir);
    fd = open(path, O_WRONLY | O_CREAT, 0600);
    CU_ASSERT(fd >= 0 && write(fd, "x", 1) == 1);
    close(fd);
    st = run_on_dir(dir, out, sizeof(out));
    CU_ASSERT(st != 0);
    CU_ASSERT(strstr(out, dir) != NULL);
    printf("\n    unrelated files: exit %d: %.200s", st, out);
    rc_test_remove_dir(dir);
}

static void test_readyz_and_recovery_metric(void)
{
    rc_test_server srv;
    CU_ASSERT_FATAL(rc_test_server_start(&srv, NULL) == 0);
    rc_client a;
    login(&a, &srv, "alice");
    CU_ASSERT(rc_client_join(&a, "m1", T_MS, NULL) == 0);
    CU_ASSERT(rc_client_join(&a, "m2", T_MS, NULL) == 0);
    rc_client_close(&a);
    CU_ASSERT_EQUAL_FATAL(rc_test_server_stop_keep(&srv), 0);
    CU_ASSERT_FATAL(rc_test_server_restart(&srv, NULL) == 0);
    CU_ASSERT(rc_test_metric(srv.admin_port, "ringcast_ready ", 0) == 1);
    CU_ASSERT(rc_test_metric(srv.admin_port, "ringcast_recovered_groups ", 0) == 2);
    CU_ASSERT(rc_test_metric(srv.admin_port, "ringcast_recovery_seconds ", 0) >= 0);
    CU_ASSERT_EQUAL(rc_test_server_stop(&srv), 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("persistence", NULL, NULL);
    CU_add_test(s, "restart keeps membership, seqs, history, dedup", test_restart_keeps_state);
    CU_add_test(s, "retention trims to history_max and reports lost", test_retention_reports_lost);
    CU_add_test(s, "history_ttl drops old messages and reports lost", test_history_ttl);
    CU_add_test(s, "durability=off keeps nothing across a restart", test_durability_off_stores_nothing);
    CU_add_test(s, "SIGKILL rounds lose no acked message, reuse no seq", test_sigkill_loses_no_acked_message);
    CU_add_test(s, "SIGKILL rounds with durability=sync", test_sigkill_with_sync_durability);
    CU_add_test(s, "corrupt or foreign data directory is an error", test_bad_data_dir_is_an_error);
    CU_add_test(s, "readyz and recovery metrics", test_readyz_and_recovery_metric);
    return rc_test_run();
}
