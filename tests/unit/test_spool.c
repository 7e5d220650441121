/*
 * The dead-letter spool and circuit breaker:
 * - both spool implementations (memory, and RocksDB's `spool` column
 *   family) keep records in key order whatever order they were put in,
 *   delete from the head and the middle, and scan from a key with a limit;
 * - the breaker's transitions: closed -> open -> half-open -> closed, and a
 *   failed probe opening it again with a doubled (capped) wait;
 * - a durable spool outlives the producer: letters spooled while Kafka is
 *   unreachable are kept on disk at close and drain at the next start;
 * - every letter is in the spool when submit returns: a process that
 *   submits letters while the breaker is still closed (they go straight to
 *   librdkafka) and is killed with SIGKILL at once leaves every one of them
 *   on disk, in order, and the next start sends them.
 */
#define _GNU_SOURCE /* memmem, nftw */
#include <CUnit/CUnit.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/spool.h"
#include "dlq/breaker.h"
#include "dlq/dlq.h"
#include "store/store.h"
#include "testutil.h"

#define ERR_TEXT 512
#define RECS 100            /* records in the order test */
#define SCAN_MAX 1000
#define OPEN_MS 100         /* breaker's first wait in the transition test */
#define UNREACHABLE "127.0.0.1:1"
#define UNREACHABLE_TIMEOUT_MS 300
#define KEPT_LETTERS 25     /* letters spooled on disk across the restart */
#define WAIT_MS 20000       /* bounded wait for the drain */
#define WAIT_POLL_US 20000
#define GARBAGE_KEY (KEPT_LETTERS + 100u) /* after the kept letters' keys 0..KEPT_LETTERS-1 */
#define CRASH_LETTERS 200   /* letters submitted just before the SIGKILL */
#define CRASH_ARG "--submit-and-die" /* argv[1] of the child that is killed */
#define CRASH_NO_SCENE 3    /* the child's exit status when its breaker opened before any letter */
#define CRASH_ATTEMPTS 5

#define DIR_TEXT 64
#define PATH_MAX_TEXT 4096

/* A fresh directory under /tmp for one RocksDB database. */
static int temp_dir(char *dir, size_t len)
{
    snprintf(dir, len, "/tmp/rc_spool_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_dir(const char *dir)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

typedef struct seen {
    uint64_t keys[SCAN_MAX];
    char text[SCAN_MAX][16];
    uint32_t n;
} seen;

static int collect(void *ud, uint64_t key, const uint8_t *rec, uint32_t len)
{
    seen *s = ud;
    s->keys[s->n] = key;
    snprintf(s->text[s->n], sizeof s->text[0], "%.*s", (int)len, (const char *)rec);
    return ++s->n == SCAN_MAX;
}

static void put_text(rc_spool sp, uint64_t key)
{
    char err[ERR_TEXT], text[16];
    int n = snprintf(text, sizeof text, "r%llu", (unsigned long long)key);
    CU_ASSERT_EQUAL(sp.ops->put(sp.self, key, (const uint8_t *)text, (uint32_t)n, err, sizeof err), 0);
}

static void scan_all(rc_spool sp, uint64_t from, uint32_t limit, seen *s)
{
    char err[ERR_TEXT];
    memset(s, 0, sizeof *s);
    CU_ASSERT_EQUAL(sp.ops->scan(sp.self, from, limit, collect, s, err, sizeof err), 0);
}

/* Odd keys first, then even ones: a scan returns 0..RECS-1 in order. */
static void check_order_and_deletes(rc_spool sp)
{
    static seen s;
    char err[ERR_TEXT];
    for (uint64_t k = 1; k < RECS; k += 2)
        put_text(sp, k);
    for (uint64_t k = 0; k < RECS; k += 2)
        put_text(sp, k);
    scan_all(sp, 0, SCAN_MAX, &s);
    CU_ASSERT_EQUAL_FATAL(s.n, RECS);
    for (uint32_t i = 0; i < RECS; i++) {
        char want[16];
        snprintf(want, sizeof want, "r%u", i);
        CU_ASSERT_EQUAL(s.keys[i], i);
        CU_ASSERT_STRING_EQUAL(s.text[i], want);
    }
    /* The head, one in the middle, and one that is not there. */
    const uint64_t some[] = { 0, 50, RECS + 7 };
    CU_ASSERT_EQUAL(sp.ops->del(sp.self, some, 1, err, sizeof err), 0);
    CU_ASSERT_EQUAL(sp.ops->del(sp.self, some + 1, 2, err, sizeof err), 0);
    scan_all(sp, 0, SCAN_MAX, &s);
    CU_ASSERT_EQUAL(s.n, RECS - 2);
    CU_ASSERT_EQUAL(s.keys[0], 1);
    CU_ASSERT_EQUAL(s.keys[49], 51);
    /* From a key, with a limit. */
    scan_all(sp, 40, 5, &s);
    CU_ASSERT_EQUAL(s.n, 5);
    CU_ASSERT_EQUAL(s.keys[0], 40);
    CU_ASSERT_EQUAL(s.keys[4], 44);
    scan_all(sp, 48, 3, &s);
    CU_ASSERT_EQUAL(s.keys[2], 51);
    /* Empty it in one call: nothing left to scan, and it still takes new
     * records. */
    uint64_t all[RECS];
    for (uint64_t k = 0; k < RECS; k++)
        all[k] = RECS - 1 - k; /* any order */
    CU_ASSERT_EQUAL(sp.ops->del(sp.self, all, RECS, err, sizeof err), 0);
    CU_ASSERT_EQUAL(sp.ops->del(sp.self, all, 0, err, sizeof err), 0);
    scan_all(sp, 0, SCAN_MAX, &s);
    CU_ASSERT_EQUAL(s.n, 0);
    put_text(sp, RECS * 2);
    scan_all(sp, 0, SCAN_MAX, &s);
    CU_ASSERT_EQUAL(s.n, 1);
    CU_ASSERT_EQUAL(s.keys[0], RECS * 2);
}

static void test_mem_spool(void)
{
    rc_spool_mem *m = rc_spool_mem_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    check_order_and_deletes(rc_spool_mem_spool(m));
    rc_spool_mem_free(m);
    rc_spool_mem_free(NULL);
}

static void test_store_spool(void)
{
    char dir[DIR_TEXT], err[ERR_TEXT];
    CU_ASSERT_EQUAL_FATAL(temp_dir(dir, sizeof dir), 0);
    rc_persist *p = rc_store_open(dir, NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    check_order_and_deletes(rc_store_spool(p));
    rc_store_close(p);
    /* It is on disk: reopened, the one record left is still there. */
    p = rc_store_open(dir, NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    static seen s;
    scan_all(rc_store_spool(p), 0, SCAN_MAX, &s);
    CU_ASSERT_EQUAL(s.n, 1);
    CU_ASSERT_EQUAL(s.keys[0], RECS * 2);
    rc_store_close(p);
    remove_dir(dir);
}

static void test_breaker(void)
{
    rc_breaker b;
    rc_breaker_init(&b, OPEN_MS);
    CU_ASSERT_EQUAL(b.state, RC_BREAKER_CLOSED);
    CU_ASSERT_FALSE(rc_breaker_probe_due(&b, 0));
    CU_ASSERT_TRUE(rc_breaker_trip(&b, 1000));     /* closed -> open: reported */
    CU_ASSERT_EQUAL(b.state, RC_BREAKER_OPEN);
    CU_ASSERT_FALSE(rc_breaker_trip(&b, 1010));    /* already open: not again */
    CU_ASSERT_EQUAL(b.opens, 1);
    CU_ASSERT_FALSE(rc_breaker_probe_due(&b, 1010 + OPEN_MS - 1));
    CU_ASSERT_TRUE(rc_breaker_probe_due(&b, 1010 + OPEN_MS));
    CU_ASSERT_EQUAL(b.state, RC_BREAKER_HALF_OPEN);
    CU_ASSERT_FALSE(rc_breaker_probe_due(&b, 5000)); /* one probe at a time */
    rc_breaker_probe_done(&b, false, 2000);          /* failed: open, wait doubled */
    CU_ASSERT_EQUAL(b.state, RC_BREAKER_OPEN);
    CU_ASSERT_EQUAL(b.wait_ms, 2 * OPEN_MS);
    CU_ASSERT_FALSE(rc_breaker_probe_due(&b, 2000 + 2 * OPEN_MS - 1));
    CU_ASSERT_TRUE(rc_breaker_probe_due(&b, 2000 + 2 * OPEN_MS));
    rc_breaker_probe_done(&b, true, 3000);           /* success: closed, wait reset */
    CU_ASSERT_EQUAL(b.state, RC_BREAKER_CLOSED);
    CU_ASSERT_EQUAL(b.wait_ms, OPEN_MS);
    /* A trip during a probe counts as its failure. */
    rc_breaker_trip(&b, 4000);
    CU_ASSERT_EQUAL(b.opens, 2);
    CU_ASSERT_TRUE(rc_breaker_probe_due(&b, 4000 + OPEN_MS));
    CU_ASSERT_FALSE(rc_breaker_trip(&b, 4200));
    CU_ASSERT_EQUAL(b.state, RC_BREAKER_OPEN);
    rc_breaker_probe_done(&b, true, 4300);           /* late answer of that probe: ignored */
    CU_ASSERT_EQUAL(b.state, RC_BREAKER_OPEN);
    /* The wait stops growing at its cap. */
    for (int i = 0; i < 20; i++) {
        CU_ASSERT_TRUE(rc_breaker_probe_due(&b, b.opened_at + b.wait_ms));
        rc_breaker_probe_done(&b, false, b.opened_at + b.wait_ms);
    }
    CU_ASSERT(b.wait_ms <= (uint64_t)OPEN_MS * RC_BREAKER_WAIT_CAP_FACTOR * 2);
    CU_ASSERT(b.wait_ms >= (uint64_t)OPEN_MS * RC_BREAKER_WAIT_CAP_FACTOR);
    CU_ASSERT_STRING_EQUAL(rc_breaker_state_name(RC_BREAKER_HALF_OPEN), "half_open");
}

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static rc_dlq *open_on(rc_persist *p, const char *brokers)
{
    char err[ERR_TEXT] = "";
    rc_dlq_config cfg = { .brokers = brokers, .node = "test-node", .delivery_timeout_ms = UNREACHABLE_TIMEOUT_MS,
                          .spool = rc_store_spool(p), .spool_durable = true };
    rc_dlq *d = rc_dlq_open(&cfg, err, sizeof err);
    if (!d)
        fprintf(stderr, "rc_dlq_open: %s\n", err);
    return d;
}

/* Polls the producer until the spool holds want letters and librdkafka
 * none, or WAIT_MS passes; st gets the last read. */
static void wait_spool(rc_dlq *d, uint64_t want, rc_dlq_stats *st)
{
    long long deadline = now_ms() + WAIT_MS;
    do {
        usleep(WAIT_POLL_US);
        rc_dlq_stats_read(d, st);
    } while ((st->spool_letters != want || st->queued != 0) && now_ms() < deadline);
}

/* Kafka unreachable: letters spool to disk and stay there at close; the
 * next start (an embedded broker this time) finds them and drains them. */
static void test_durable_spool_restart(void)
{
    char dir[DIR_TEXT], err[ERR_TEXT];
    rc_dlq_stats st;
    rc_letter l = { .reason = RC_LETTER_EXPIRED, .g = rc_str_c("kept"), .from = rc_str_c("alice"), .ts = 1,
                    .body = rc_str_c("body"), .body_is_str = true, .attempts = 1, .err = rc_str_c("e") };
    CU_ASSERT_EQUAL_FATAL(temp_dir(dir, sizeof dir), 0);
    rc_persist *p = rc_store_open(dir, NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    rc_dlq *d = open_on(p, UNREACHABLE);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    for (int i = 0; i < KEPT_LETTERS; i++)
        CU_ASSERT_EQUAL(rc_dlq_submit(d, &l), 0);
    wait_spool(d, KEPT_LETTERS, &st);
    CU_ASSERT_EQUAL(st.spool_letters, KEPT_LETTERS);
    rc_dlq_close(d, 0);
    rc_store_close(p);

    p = rc_store_open(dir, NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    /* A record no build wrote sits among them: reported, removed, and it
     * does not keep the spool from emptying. */
    rc_spool sp = rc_store_spool(p);
    CU_ASSERT_EQUAL(sp.ops->put(sp.self, GARBAGE_KEY, (const uint8_t *)"junk", 4, err, sizeof err), 0);
    d = open_on(p, "");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    wait_spool(d, 0, &st);
    CU_ASSERT_EQUAL(st.spool_letters, 0);
    CU_ASSERT_EQUAL(st.spool_bytes, 0);
    CU_ASSERT_EQUAL(st.spool_errors, 1);
    CU_ASSERT_EQUAL(st.drained, KEPT_LETTERS);
    CU_ASSERT_EQUAL(st.delivered[RC_LETTER_EXPIRED], KEPT_LETTERS);
    rc_dlq_close(d, 0);
    rc_store_close(p);
    remove_dir(dir);
}

/* The letter the crash test submits, seq i + 1. */
static rc_letter crash_letter(uint64_t i)
{
    return (rc_letter){ .reason = RC_LETTER_SLOW_CONSUMER, .g = rc_str_c("crash"), .has_seq = true, .seq = i + 1,
                        .from = rc_str_c("alice"), .to = rc_str_c("bob"), .ts = 1, .body = rc_str_c("body"),
                        .body_is_str = true, .attempts = 1, .err = rc_str_c("e") };
}

/* The child: a producer whose brokers do not answer yet (its breaker is
 * still closed, so every letter is handed to librdkafka at once), a burst
 * of letters, then SIGKILL before any close or flush. */
static int submit_and_die(const char *dir)
{
    char err[ERR_TEXT];
    rc_persist *p = rc_store_open(dir, NULL, err, sizeof err);
    rc_dlq *d = p ? open_on(p, UNREACHABLE) : NULL;
    if (!d)
        return 1;
    for (uint64_t i = 0; i < CRASH_LETTERS; i++) {
        rc_letter l = crash_letter(i);
        if (rc_dlq_submit(d, &l) != 0)
            return 1;
    }
    rc_dlq_stats st;
    rc_dlq_stats_read(d, &st);
    if (st.submitted[RC_LETTER_SLOW_CONSUMER] == 0)
        return CRASH_NO_SCENE; /* the breaker opened first: the scene did not happen (the parent tries again) */
    raise(SIGKILL);
    return 1;
}

typedef struct crash_seen {
    uint32_t n;
    bool in_order;
} crash_seen;

static int check_crash_record(void *ud, uint64_t key, const uint8_t *rec, uint32_t len)
{
    crash_seen *c = ud;
    c->in_order &= key == c->n && len > 0 && memmem(rec, len, "crash", 5) != NULL;
    c->n++;
    return 0;
}

/* Letters made just before a kill -9 are on disk and the next start sends
 * them: none lived only in librdkafka's memory. */
static void test_letters_survive_kill(void)
{
    char dir[DIR_TEXT], self[PATH_MAX_TEXT], err[ERR_TEXT];
    CU_ASSERT_EQUAL_FATAL(temp_dir(dir, sizeof dir), 0);
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CU_ASSERT_FATAL(n > 0);
    self[n] = '\0';
    int status = 0;
    /* On a busy machine the refused connection can open the breaker before
     * the first letter is submitted; then the child says so and runs again. */
    for (int attempt = 0; attempt < CRASH_ATTEMPTS; attempt++) {
        if (attempt > 0) { /* a fresh directory for the next try */
            remove_dir(dir);
            CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0700), 0);
        }
        pid_t pid = fork();
        if (pid == 0) {
            execl(self, self, CRASH_ARG, dir, (char *)NULL);
            _exit(127);
        }
        CU_ASSERT_EQUAL_FATAL(waitpid(pid, &status, 0), pid);
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == CRASH_NO_SCENE))
            break;
    }
    CU_ASSERT_FATAL(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    rc_persist *p = rc_store_open(dir, NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    crash_seen c = { .in_order = true };
    rc_spool sp = rc_store_spool(p);
    CU_ASSERT_EQUAL(sp.ops->scan(sp.self, 0, UINT32_MAX, check_crash_record, &c, err, sizeof err), 0);
    printf("\n    %u of %u letters on disk after the kill", c.n, CRASH_LETTERS);
    CU_ASSERT_EQUAL(c.n, CRASH_LETTERS);
    CU_ASSERT(c.in_order);

    rc_dlq *d = open_on(p, ""); /* an embedded broker: the restart sends them */
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    rc_dlq_stats st;
    wait_spool(d, 0, &st);
    CU_ASSERT_EQUAL(st.spool_found, CRASH_LETTERS);
    CU_ASSERT_EQUAL(st.spool_letters, 0);
    CU_ASSERT_EQUAL(st.drained, CRASH_LETTERS);
    CU_ASSERT_EQUAL(st.delivered[RC_LETTER_SLOW_CONSUMER], CRASH_LETTERS);
    rc_dlq_close(d, 0);
    rc_store_close(p);
    remove_dir(dir);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], CRASH_ARG) == 0)
        return submit_and_die(argv[2]);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("spool", NULL, NULL);
    if (!s || !CU_add_test(s, "memory spool: order, deletes, scans", test_mem_spool) ||
        !CU_add_test(s, "RocksDB spool: order, deletes, scans, reopen", test_store_spool) ||
        !CU_add_test(s, "breaker transitions", test_breaker) ||
        !CU_add_test(s, "durable spool drains after a restart", test_durable_spool_restart) ||
        !CU_add_test(s, "letters survive a kill -9 right after submit", test_letters_survive_kill)) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    return rc_test_run();
}
