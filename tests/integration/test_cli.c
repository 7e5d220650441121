/*
 * The command-line programs as a user runs them: `ringcast send`, `tail`
 * and `stats` against a live server ($RINGCAST_CLI), and `ringcastd --help`
 * and bad flags ($RINGCASTD). Every child runs with a deadline and is
 * killed (by its pid) when it passes it, so a hanging command fails the test
 * instead of hanging it.
 */
#define _GNU_SOURCE
#include "itest.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#define CMD_TIMEOUT_MS 10000
#define OUT_CAP (256 * 1024)
#define MAX_ARGS 24

static it_server srv;

static int cleanup(void)
{
    return it_cleanup(&srv);
}

typedef struct cmd_result {
    int status;   /* exit status, 128+signal, or -1 when it had to be killed */
    char out[OUT_CAP], err[OUT_CAP];
} cmd_result;

/* Appends what fd has to buf (NUL-terminated, truncated at OUT_CAP). Returns
 * false at EOF. */
static bool drain_fd(int fd, char *buf, size_t *len)
{
    char tmp[4096];
    ssize_t n = read(fd, tmp, sizeof(tmp));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n <= 0)
        return false;
    size_t take = (size_t)n < OUT_CAP - 1 - *len ? (size_t)n : OUT_CAP - 1 - *len;
    memcpy(buf + *len, tmp, take);
    *len += take;
    buf[*len] = '\0';
    return true;
}

/* Runs argv (argv[0] a path) with stdin from /dev/null, capturing stdout and
 * stderr, for at most CMD_TIMEOUT_MS. */
static void run(cmd_result *r, const char *const *argv)
{
    memset(r, 0, sizeof(*r));
    r->status = -1;
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) != 0)
        return;
    if (pipe2(pe, O_CLOEXEC) != 0) {
        close(po[0]);
        close(po[1]);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    size_t lo = 0, le = 0;
    bool open_o = pid > 0, open_e = pid > 0;
    int64_t end = it_now_ms() + CMD_TIMEOUT_MS;
    while ((open_o || open_e) && it_now_ms() < end) {
        struct pollfd p[2] = { { open_o ? po[0] : -1, POLLIN, 0 }, { open_e ? pe[0] : -1, POLLIN, 0 } };
        int64_t left = end - it_now_ms();
        if (poll(p, 2, (int)(left > 0 ? left : 0)) <= 0)
            continue;
        if (p[0].revents)
            open_o = drain_fd(po[0], r->out, &lo);
        if (p[1].revents)
            open_e = drain_fd(pe[0], r->err, &le);
    }
    close(po[0]);
    close(pe[0]);
    if (pid <= 0)
        return;
    int st = 0;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (it_now_ms() >= end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            printf("\n    %s did not finish within %d ms; killed\n", argv[0], CMD_TIMEOUT_MS);
            return;
        }
        it_sleep_ms(10);
    }
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* argv = { $RINGCAST_CLI, command, --host, --port P, --admin-port A, args... } */
static void cli(cmd_result *r, const char *command, const char *const *args)
{
    const char *bin = getenv("RINGCAST_CLI");
    CU_ASSERT_FATAL(bin != NULL);
    char port[8], admin[8];
    snprintf(port, sizeof(port), "%u", srv.s.port);
    snprintf(admin, sizeof(admin), "%u", srv.s.admin_port);
    const char *argv[MAX_ARGS] = { bin, command, "--host", IT_HOST, "--port", port, "--admin-port", admin };
    int n = 8;
    for (int i = 0; args && args[i] && n < MAX_ARGS - 1; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    run(r, argv);
}

/* Runs a command that must succeed; shows its stderr when it did not. */
static bool cli_ok(cmd_result *r, const char *command, const char *const *args)
{
    cli(r, command, args);
    if (r->status != 0)
        printf("\n    ringcast %s: status %d, stderr: %s\n", command, r->status, r->err);
    return r->status == 0;
}

static cmd_result res; /* large: off the stack */

static void test_send_tail_stats(void)
{
    it_cleanup(&srv);
    CU_ASSERT_FATAL(it_start(&srv, NULL) == 0);

    const char *send_args[] = { "--user", "cli-a", "--group", "cli-g", "hello from the cli", NULL };
    CU_ASSERT(cli_ok(&res, "send", send_args));
    CU_ASSERT(strncmp(res.out, "ack g=cli-g seq=1 ", 18) == 0);
    CU_ASSERT(strstr(res.out, " ts=") != NULL);
    CU_ASSERT(strstr(res.out, "dup=true") == NULL);

    const char *tail_args[] = { "--user", "cli-b", "--group", "cli-g", "--since", "0", "--count", "1", "--json", NULL };
    CU_ASSERT(cli_ok(&res, "tail", tail_args));
    CU_ASSERT(res.out[0] == '{');
    CU_ASSERT(strstr(res.out, "\"g\":\"cli-g\"") != NULL);
    CU_ASSERT(strstr(res.out, "\"seq\":1") != NULL);
    CU_ASSERT(strstr(res.out, "\"from\":\"cli-a\"") != NULL);
    CU_ASSERT(strstr(res.out, "\"body\":\"hello from the cli\"") != NULL);
    CU_ASSERT(strchr(res.out, '\n') == res.out + strlen(res.out) - 1); /* exactly one line */

    /* send with a mid twice: the second prints the original ack with dup. */
    const char *mid_args[] = { "--user", "cli-a", "--group", "cli-g", "--mid", "cli-mid-1", "again", NULL };
    CU_ASSERT(cli_ok(&res, "send", mid_args));
    CU_ASSERT(strncmp(res.out, "ack g=cli-g seq=2 ", 18) == 0);
    CU_ASSERT(cli_ok(&res, "send", mid_args));
    CU_ASSERT(strncmp(res.out, "ack g=cli-g seq=2 ", 18) == 0);
    CU_ASSERT(strstr(res.out, "dup=true") != NULL);

    CU_ASSERT(cli_ok(&res, "stats", NULL));
    CU_ASSERT(strstr(res.out, "ringcast_messages_sequenced_total") != NULL);
    CU_ASSERT(strstr(res.out, "HTTP/1.1") == NULL); /* the body only, no response head */

    /* Mistakes are reported, with a non-zero status. */
    const char *no_text[] = { "--user", "cli-a", "--group", "cli-g", NULL };
    cli(&res, "send", no_text);
    CU_ASSERT(res.status > 0 && res.status < 128 && res.err[0] != '\0');
    cli(&res, "frobnicate", NULL);
    CU_ASSERT(res.status > 0 && res.status < 128 && strstr(res.err, "frobnicate") != NULL);
    const char *bad_port[] = { "--port", "99999", NULL };
    cli(&res, "stats", bad_port);
    CU_ASSERT(res.status > 0 && res.status < 128 && res.err[0] != '\0');
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
}

static void test_inbox_read(void)
{
    it_cleanup(&srv);
    CU_ASSERT_FATAL(it_start(&srv, NULL) == 0);
    const char *s1[] = { "--user", "ivy", "--group", "in-a", "one", NULL };
    const char *s2[] = { "--user", "ivy", "--group", "in-b", "two", NULL };
    const char *s3[] = { "--user", "ivy", "--group", "in-b", "three", NULL };
    CU_ASSERT(cli_ok(&res, "send", s1));
    usleep(2000); /* ts is in ms: in-b's messages are newer */
    CU_ASSERT(cli_ok(&res, "send", s2));
    CU_ASSERT(cli_ok(&res, "send", s3));
    const char *read_args[] = { "--user", "ivy", "--group", "in-b", "--seq", "1", NULL };
    CU_ASSERT(cli_ok(&res, "read", read_args));
    CU_ASSERT_STRING_EQUAL(res.out, "marked g=in-b seq=1\n");
    const char *inbox_args[] = { "--user", "ivy", NULL };
    CU_ASSERT(cli_ok(&res, "inbox", inbox_args));
    CU_ASSERT_STRING_EQUAL(res.out, "in-b seq=2 read=1 unread=1 last: ivy: three\n"
                                    "in-a seq=1 read=0 unread=1 last: ivy: one\n");
    const char *json_args[] = { "--user", "ivy", "--count", "1", "--json", NULL };
    CU_ASSERT(cli_ok(&res, "inbox", json_args));
    static const char want_json[] = "{\"g\":\"in-b\",\"seq\":2,\"read\":1,\"unread\":1,\"ts\":";
    CU_ASSERT(strncmp(res.out, want_json, sizeof(want_json) - 1) == 0);
    CU_ASSERT(strchr(res.out, '\n') == res.out + strlen(res.out) - 1); /* --count 1: one line */
    const char *past[] = { "--user", "ivy", "--group", "in-b", "--seq", "9", NULL };
    cli(&res, "read", past);
    CU_ASSERT(res.status == 1 && strstr(res.err, "E_BAD_FIELD") != NULL);
    const char *stranger[] = { "--user", "zed", "--group", "in-b", "--seq", "1", NULL };
    cli(&res, "read", stranger);
    CU_ASSERT(res.status == 1 && strstr(res.err, "E_NOT_MEMBER") != NULL);
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
}

/* ringcast presence: who is online in a group, the asking user included
 * (it joins first), as text and as JSON. */
static void test_presence_cli(void)
{
    it_cleanup(&srv);
    CU_ASSERT_FATAL(it_start(&srv, NULL) == 0);
    rc_client pat;
    CU_ASSERT_FATAL(it_login(&pat, &srv, "pat") == 0);
    uint64_t seq;
    CU_ASSERT_FATAL(rc_client_join(&pat, "pr-g", IT_TIMEOUT_MS, &seq) == 0);
    const char *args[] = { "--user", "quinn", "--group", "pr-g", NULL };
    CU_ASSERT(cli_ok(&res, "presence", args));
    CU_ASSERT(strncmp(res.out, "2 online in pr-g\n", 17) == 0);
    CU_ASSERT(strstr(res.out, "\npat\n") != NULL);
    CU_ASSERT(strstr(res.out, "\nquinn\n") != NULL);
    const char *json_args[] = { "--user", "quinn", "--group", "pr-g", "--json", NULL };
    CU_ASSERT(cli_ok(&res, "presence", json_args));
    static const char want_json[] = "{\"g\":\"pr-g\",\"n\":2,\"users\":[";
    CU_ASSERT(strncmp(res.out, want_json, sizeof(want_json) - 1) == 0);
    CU_ASSERT(strstr(res.out, "\"pat\"") != NULL);
    rc_client_close(&pat);
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
}

static void test_ringcastd_help(void)
{
    const char *bin = getenv("RINGCASTD");
    CU_ASSERT_FATAL(bin != NULL);
    const char *argv[] = { bin, "--help", NULL };
    run(&res, argv);
    CU_ASSERT_EQUAL(res.status, 0);
    /* The key, its flag and its environment variable. */
    CU_ASSERT(strcasestr(res.out, "outbound_kill_bytes") != NULL);
    CU_ASSERT(strstr(res.out, "--outbound-kill-bytes") != NULL);
    CU_ASSERT(strstr(res.out, "RINGCAST_OUTBOUND_KILL_BYTES") != NULL);
    CU_ASSERT(strstr(res.out, "--max-frame") != NULL);
    CU_ASSERT(strstr(res.out, "--history-max") != NULL);
}

static void test_ringcastd_bad_flags(void)
{
    const char *bin = getenv("RINGCASTD");
    CU_ASSERT_FATAL(bin != NULL);
    char dir[] = "/tmp/ringcast-it-XXXXXX";
    CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
    /* Ports 0 and a scratch data dir, so a server that wrongly starts
     * disturbs nothing before it is killed. */
    const char *unknown[] = { bin, "--port", "0", "--admin-port", "0", "--http-port", "0", "--data-dir", dir,
                              "--no-such-flag", "1", NULL };
    run(&res, unknown);
    CU_ASSERT(res.status > 0 && res.status < 128);
    CU_ASSERT(strstr(res.err, "no-such-flag") != NULL);

    const char *bad_value[] = { bin, "--port", "not-a-port", "--admin-port", "0", "--http-port", "0", "--data-dir",
                                dir, NULL };
    run(&res, bad_value);
    CU_ASSERT(res.status > 0 && res.status < 128);
    CU_ASSERT(strstr(res.err, "port") != NULL);

    const char *out_of_range[] = { bin, "--port", "0", "--admin-port", "0", "--http-port", "0", "--data-dir", dir,
                                   "--max-frame", "0", NULL };
    run(&res, out_of_range);
    CU_ASSERT(res.status > 0 && res.status < 128);
    CU_ASSERT(strstr(res.err, "max") != NULL);
    nftw(dir, it_rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("cli", NULL, cleanup);
    if (!s) {
        CU_cleanup_registry();
        return 1;
    }
    CU_add_test(s, "ringcast send, tail --json, stats", test_send_tail_stats);
    CU_add_test(s, "ringcast inbox, read", test_inbox_read);
    CU_add_test(s, "ringcast presence", test_presence_cli);
    CU_add_test(s, "ringcastd --help lists the keys", test_ringcastd_help);
    CU_add_test(s, "ringcastd refuses bad flags with a message", test_ringcastd_bad_flags);
    return rc_test_run();
}
