/*
 * Smoke test of the load generator (bench/gen, $RINGCAST_BENCH): a short,
 * small fan-out run against ringcastd, nats-server and redis-server, each
 * started here on free loopback ports, must exit 0, deliver something and
 * report no gaps, duplicates, reorders or missing deliveries; so must the
 * durable peers, NATS JetStream (nats-server -js, a file store in a fresh
 * directory) and Redis Streams (appendonly yes, appendfsync everysec), each
 * twice on the same server, since a second run finds the first one's stream
 * and must still see only its own messages; a short
 * open-loop (--rate) run against ringcastd must report latency percentiles
 * in order; a step load (--rate --schedule) must offer each phase's rate
 * and account for every delivery in its --timeline rows; a short flood
 * (--flood) against ringcastd must deliver and report
 * its refusals and disconnections; a run with --presence, --receipts and
 * --read-every must count reads, their marked answers and receipt events
 * and still deliver every message in order. Every child is bounded in time and killed
 * at the end.
 */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

#define BENCH_TIMEOUT_MS 40000   /* one ringcast-bench run, setup and drain included */
#define PEER_START_MS 10000      /* a peer server must accept within this */
#define PEER_STOP_MS 5000
#define OUT_CAP 8192
#define FLOOD_MESSAGES "20000"   /* the flood's window ends after this many sends */

/* The small fan-out shape of every run: 50 groups x 4 members on 20
 * subscriber connections, 2 s measured, no warm-up. */
#define SHAPE "--groups", "50", "--subs", "20", "--members", "4", "--duration", "2", "--warmup", "0", \
              "--no-progress"

/* ---- child processes ---- */

typedef struct child {
    pid_t pid;
    uint16_t port;
} child;

static bool on_path(const char *prog)
{
    const char *path = getenv("PATH");
    if (!path)
        return false;
    char *dup = strdup(path), *save = NULL;
    bool found = false;
    for (char *dir = strtok_r(dup, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", dir, prog);
        found = access(full, X_OK) == 0;
    }
    free(dup);
    return found;
}

static bool port_open(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Starts argv (argv[0] looked up on PATH) with output to /dev/null and waits
 * until it accepts on port. 0 or -1. */
static int peer_start(child *c, uint16_t port, char *const *argv)
{
    c->port = port;
    c->pid = fork();
    if (c->pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    if (c->pid < 0)
        return -1;
    for (int64_t end = it_now_ms() + PEER_START_MS; it_now_ms() < end; it_sleep_ms(20)) {
        if (port_open(port))
            return 0;
        if (waitpid(c->pid, NULL, WNOHANG) == c->pid) {
            c->pid = 0;
            return -1;
        }
    }
    return -1;
}

static void child_stop(child *c)
{
    if (c->pid <= 0)
        return;
    kill(c->pid, SIGTERM);
    for (int64_t end = it_now_ms() + PEER_STOP_MS; it_now_ms() < end; it_sleep_ms(10))
        if (waitpid(c->pid, NULL, WNOHANG) == c->pid) {
            c->pid = 0;
            return;
        }
    kill(c->pid, SIGKILL);
    waitpid(c->pid, NULL, 0);
    c->pid = 0;
}

/*
 * Runs $RINGCAST_BENCH with args (NULL-terminated) and returns its exit
 * status (-1 if it could not run or was killed at the timeout); its stdout
 * goes to out. stderr stays the test's, so the log shows the generator's
 * complaints.
 */
static int run_bench(const char *const *args, char *out, size_t cap)
{
    const char *bench = getenv("RINGCAST_BENCH");
    out[0] = 0;
    if (!bench) {
        printf("\n    RINGCAST_BENCH is not set\n");
        return -1;
    }
    const char *argv[64] = { bench };
    int n = 1;
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        execv(bench, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return -1;
    }
    size_t len = 0;
    bool timed_out = false;
    int64_t end = it_now_ms() + BENCH_TIMEOUT_MS;
    for (;;) {
        int64_t left = end - it_now_ms();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd p = { .fd = fds[0], .events = POLLIN };
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        char buf[4096];
        ssize_t r = read(fds[0], buf, sizeof buf);
        if (r <= 0)
            break;
        size_t take = (size_t)r < cap - 1 - len ? (size_t)r : cap - 1 - len;
        memcpy(out + len, buf, take);
        len += take;
        out[len] = 0;
    }
    close(fds[0]);
    if (timed_out) {
        printf("\n    ringcast-bench did not finish within %d ms\n", BENCH_TIMEOUT_MS);
        kill(pid, SIGINT);
        it_sleep_ms(2000);
        kill(pid, SIGKILL);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid || timed_out)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The value of " key=" in the result line; false if absent. */
static bool kv(const char *out, const char *key, double *v)
{
    const char *line = strstr(out, "ringcast-bench system=");
    if (!line)
        return false;
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *p = strstr(line, pat);
    const char *eol = strchr(line, '\n');
    if (!p || (eol && p > eol))
        return false;
    char *end;
    *v = strtod(p + strlen(pat), &end);
    return end != p + strlen(pat);
}

/* Asserts a clean closed-loop result: status 0, deliveries, no disorder. */
static void check_clean(const char *what, int status, const char *out)
{
    double deliveries = -1, gaps = -1, dups = -1, reorders = -1, missing = -1, stray = -1;
    bool parsed = kv(out, "deliveries", &deliveries) && kv(out, "gaps", &gaps) &&
                  kv(out, "dups", &dups) && kv(out, "reorders", &reorders) &&
                  kv(out, "missing", &missing) && kv(out, "stray", &stray);
    if (status != 0 || !parsed || deliveries <= 0 || gaps || dups || reorders || missing || stray)
        printf("\n    %s: status %d, output: %s\n", what, status, out);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_TRUE(parsed);
    CU_ASSERT(deliveries > 0);
    CU_ASSERT_EQUAL(gaps, 0);
    CU_ASSERT_EQUAL(dups, 0);
    CU_ASSERT_EQUAL(reorders, 0);
    CU_ASSERT_EQUAL(missing, 0);
    CU_ASSERT_EQUAL(stray, 0);
}

/* ---- tests ---- */

static it_server g_rc;

static void test_ringcast(void)
{
    CU_ASSERT_FATAL(it_start(&g_rc, NULL) == 0);
    char port[8], pid[16], out[OUT_CAP];
    snprintf(port, sizeof port, "%u", g_rc.s.port);
    snprintf(pid, sizeof pid, "%d", (int)g_rc.s.pid);
    const char *args[] = { "fanout", "--system", "ringcast", "--port", port, "--server-pid", pid,
                           "--threads", "2", SHAPE, NULL };
    int st = run_bench(args, out, sizeof out);
    check_clean("ringcast", st, out);
    double cpu = -1, echoes = -1;
    CU_ASSERT_TRUE(kv(out, "server_cpu_pct", &cpu) && cpu >= 0);
    /* Publishers said hello with echo: false: none of their messages came back. */
    CU_ASSERT_TRUE(kv(out, "echoes", &echoes));
    CU_ASSERT_EQUAL(echoes, 0);
}

static void test_ringcast_rate(void)
{
    CU_ASSERT_FATAL(g_rc.up);
    char port[8], out[OUT_CAP];
    snprintf(port, sizeof port, "%u", g_rc.s.port);
    const char *args[] = { "fanout", "--system", "ringcast", "--port", port, "--rate", "2000",
                           "--echo", SHAPE, NULL };
    int st = run_bench(args, out, sizeof out);
    check_clean("ringcast --rate", st, out);
    /* --echo: publishers, members of their groups, get their own messages
     * back (echoes counts the whole run, published the window). */
    double echoes = -1, published = -1;
    CU_ASSERT_TRUE(kv(out, "echoes", &echoes) && kv(out, "published", &published));
    CU_ASSERT(published > 0);
    CU_ASSERT(echoes >= published);
    double n = -1, p50 = -1, p90 = -1, p99 = -1, p999 = -1, max = -1, offered = -1;
    CU_ASSERT_TRUE(kv(out, "lat_count", &n) && kv(out, "lat_p50_us", &p50) &&
                   kv(out, "lat_p90_us", &p90) && kv(out, "lat_p99_us", &p99) &&
                   kv(out, "lat_p999_us", &p999) && kv(out, "lat_max_us", &max) &&
                   kv(out, "offered_msgs_per_s", &offered));
    if (!(n > 0 && p50 > 0 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max))
        printf("\n    latency not in order: %s\n", out);
    CU_ASSERT(n > 0);
    CU_ASSERT(p50 > 0);
    CU_ASSERT(p50 <= p90);
    CU_ASSERT(p90 <= p99);
    CU_ASSERT(p99 <= p999);
    CU_ASSERT(p999 <= max);
    CU_ASSERT_EQUAL(offered, 2000);
}

/* Chat features: subscribers that join with presence and receipts and mark
 * read every 5 messages get their marked answers and receipt events, and
 * none of these frames is taken for a delivery or breaks a stream. */
static void test_ringcast_chat(void)
{
    CU_ASSERT_FATAL(g_rc.up);
    char port[8], out[OUT_CAP];
    snprintf(port, sizeof port, "%u", g_rc.s.port);
    const char *args[] = { "fanout", "--system", "ringcast", "--port", port, "--rate", "2000",
                           "--presence", "--receipts", "--read-every", "5", SHAPE, NULL };
    int st = run_bench(args, out, sizeof out);
    check_clean("ringcast --presence --receipts --read-every 5", st, out);
    double reads = -1, marked = -1, receipts = -1;
    CU_ASSERT_TRUE(kv(out, "reads_sent", &reads) && kv(out, "marked", &marked) &&
                   kv(out, "receipt_events", &receipts));
    if (!(reads > 0 && marked > 0 && receipts > 0))
        printf("\n    no reads, marked or receipts: %s\n", out);
    CU_ASSERT(reads > 0);
    CU_ASSERT(marked > 0);
    CU_ASSERT(receipts > 0);
}

/* --schedule 1:1,1:3 at --rate 1000: the window offers 2,000 msgs/s on
 * average, the second second about three times the first (by scheduled
 * time, not by how fast the box is), and the timeline's rows count every
 * delivery the run's latency counted. */
static void test_ringcast_schedule(void)
{
    CU_ASSERT_FATAL(g_rc.up);
    char port[8], out[OUT_CAP], tl[sizeof g_rc.dir + 32];
    snprintf(port, sizeof port, "%u", g_rc.s.port);
    snprintf(tl, sizeof tl, "%s/timeline.csv", g_rc.dir);
    const char *args[] = { "fanout", "--system", "ringcast", "--port", port, "--rate", "1000", "--schedule", "1:1,1:3",
                           "--timeline", tl, "--groups", "50", "--subs", "20", "--members", "4", "--no-progress", NULL };
    int st = run_bench(args, out, sizeof out);
    check_clean("ringcast --schedule", st, out);
    double offered = -1, lat_count = -1;
    CU_ASSERT_TRUE(kv(out, "offered_msgs_per_s", &offered) && kv(out, "lat_count", &lat_count));
    CU_ASSERT_EQUAL(offered, 2000);
    FILE *f = fopen(tl, "r");
    CU_ASSERT_FATAL(f != NULL);
    char line[256];
    CU_ASSERT_TRUE(fgets(line, sizeof line, f) && strncmp(line, "t_s,unix_s,phase,sent,lat_count,", 32) == 0);
    unsigned sec, rows = 0;
    double unix_s, sent[2] = { 0 }, count = 0, p50, p90, p99, max, c, n;
    char part[16];
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%u,%lf,%15[a-z],%lf,%lf,%lf,%lf,%lf,%lf", &sec, &unix_s, part, &n, &c, &p50, &p90, &p99,
                   &max) != 9) {
            printf("\n    bad timeline row: %s", line);
            CU_FAIL("timeline row");
            break;
        }
        if (sec < 2)
            sent[sec] = n;
        count += c;
        rows++;
        CU_ASSERT(c == 0 || (p50 <= p90 && p90 <= p99 && p99 <= max));
    }
    fclose(f);
    CU_ASSERT(rows >= 2);
    CU_ASSERT(sent[0] > 500 && sent[0] < 1500);
    CU_ASSERT(sent[1] > 2 * sent[0]);
    CU_ASSERT_EQUAL(count, lat_count);
}

/* A flood may legitimately be refused or lose deliveries (status 3): only
 * that it ran, delivered and reported its flood keys is checked. Its window
 * ends after FLOOD_MESSAGES sends, so the server may deliver them only after
 * the window (in the drain): deliveries_total counts the whole run. */
static void test_ringcast_flood(void)
{
    CU_ASSERT_FATAL(g_rc.up);
    char port[8], out[OUT_CAP];
    snprintf(port, sizeof port, "%u", g_rc.s.port);
    const char *args[] = { "fanout", "--system", "ringcast", "--port", port, "--flood",
                           "--messages", FLOOD_MESSAGES, SHAPE, NULL };
    int st = run_bench(args, out, sizeof out);
    static const char *const keys[] = {
        "published_total", "deliveries_total", "refused", "refused_pct", "refused_overloaded", "refused_rate_limited",
        "refused_other", "disconnected_readers", "disconnected_writers", "byes", "groups_lossy",
    };
    double deliveries = -1, v;
    bool flood = strstr(out, " mode=flood ") && strstr(out, " loop=flood ");
    bool parsed = kv(out, "deliveries_total", &deliveries);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        bool has = kv(out, keys[i], &v);
        if (!has)
            printf("\n    flood: no %s= in the result\n", keys[i]);
        CU_ASSERT_TRUE(has);
        CU_ASSERT(!has || v >= 0);
    }
    if (!(st == 0 || st == 3) || !flood || !parsed || deliveries <= 0)
        printf("\n    flood: status %d, output: %s\n", st, out);
    CU_ASSERT(st == 0 || st == 3);
    CU_ASSERT_TRUE(flood);
    CU_ASSERT_TRUE(parsed);
    CU_ASSERT(deliveries > 0);
    CU_ASSERT_EQUAL(it_stop(&g_rc), 0);
}

static void test_nats(void)
{
    if (!on_path("nats-server")) {
        printf("\n    SKIPPED: nats-server is not on PATH\n");
        return;
    }
    uint16_t p = rc_test_free_port();
    char port[8], out[OUT_CAP];
    snprintf(port, sizeof port, "%u", p);
    char *argv[] = { "nats-server", "-a", "127.0.0.1", "-p", port, NULL };
    child c = { 0 };
    CU_ASSERT_FATAL(peer_start(&c, p, argv) == 0);
    const char *args[] = { "fanout", "--system", "nats", "--port", port, SHAPE, NULL };
    int st = run_bench(args, out, sizeof out);
    child_stop(&c);
    check_clean("nats", st, out);
}

static void test_redis(void)
{
    if (!on_path("redis-server")) {
        printf("\n    SKIPPED: redis-server is not on PATH\n");
        return;
    }
    uint16_t p = rc_test_free_port();
    char port[8], out[OUT_CAP];
    snprintf(port, sizeof port, "%u", p);
    char *argv[] = { "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", NULL };
    child c = { 0 };
    CU_ASSERT_FATAL(peer_start(&c, p, argv) == 0);
    const char *args[] = { "fanout", "--system", "redis", "--port", port, SHAPE, NULL };
    int st = run_bench(args, out, sizeof out);
    child_stop(&c);
    check_clean("redis", st, out);
}

/* A fresh directory for a peer's files: 0 or -1. */
static int peer_dir(char *dir, size_t n)
{
    snprintf(dir, n, "/tmp/ringcast-test-peer-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

/* Two runs of the small fan-out against system on port; both clean. */
static void durable_runs(const char *system, const char *port)
{
    for (int run = 1; run <= 2; run++) {
        char out[OUT_CAP], what[64];
        const char *args[] = { "fanout", "--system", system, "--port", port, SHAPE, NULL };
        int st = run_bench(args, out, sizeof out);
        snprintf(what, sizeof what, "%s run %d", system, run);
        check_clean(what, st, out);
        double acked = -1, published = -1;
        CU_ASSERT_TRUE(kv(out, "acked", &acked) && kv(out, "published", &published));
        CU_ASSERT(acked > 0); /* every publish is acknowledged by the store */
        CU_ASSERT(acked <= published);
    }
}

static void test_jetstream(void)
{
    if (!on_path("nats-server")) {
        printf("\n    SKIPPED: nats-server is not on PATH\n");
        return;
    }
    char dir[64];
    CU_ASSERT_FATAL(peer_dir(dir, sizeof dir) == 0);
    uint16_t p = rc_test_free_port();
    char port[8];
    snprintf(port, sizeof port, "%u", p);
    char *argv[] = { "nats-server", "-a", "127.0.0.1", "-p", port, "-js", "-sd", dir, NULL };
    child c = { 0 };
    CU_ASSERT_FATAL(peer_start(&c, p, argv) == 0);
    durable_runs("jetstream", port);
    child_stop(&c);
    rc_test_remove_dir(dir);
}

static void test_redis_streams(void)
{
    if (!on_path("redis-server")) {
        printf("\n    SKIPPED: redis-server is not on PATH\n");
        return;
    }
    char dir[64];
    CU_ASSERT_FATAL(peer_dir(dir, sizeof dir) == 0);
    uint16_t p = rc_test_free_port();
    char port[8];
    snprintf(port, sizeof port, "%u", p);
    char *argv[] = { "redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", dir, "--save", "",
                     "--appendonly", "yes", "--appendfsync", "everysec", NULL };
    child c = { 0 };
    CU_ASSERT_FATAL(peer_start(&c, p, argv) == 0);
    durable_runs("redis-streams", port);
    child_stop(&c);
    rc_test_remove_dir(dir);
}

static int suite_cleanup(void)
{
    return it_cleanup(&g_rc);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("bench_smoke", NULL, suite_cleanup);
    CU_add_test(s, "ringcast fanout, 2 threads", test_ringcast);
    CU_add_test(s, "ringcast open loop reports ordered latency", test_ringcast_rate);
    CU_add_test(s, "ringcast step load follows its schedule, timeline counts", test_ringcast_schedule);
    CU_add_test(s, "ringcast with presence, receipts and reads counts their events", test_ringcast_chat);
    CU_add_test(s, "ringcast flood reports refusals and disconnections", test_ringcast_flood); /* stops the server */
    CU_add_test(s, "nats fanout", test_nats);
    CU_add_test(s, "redis fanout", test_redis);
    CU_add_test(s, "jetstream fanout, twice on one stream", test_jetstream);
    CU_add_test(s, "redis-streams fanout, twice on the same streams", test_redis_streams);
    return rc_test_run();
}
