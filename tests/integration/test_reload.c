/*
 * Configuration tooling and SIGHUP reload (src/ARCHITECTURE.md §8.1), as an
 * operator uses them:
 *  - `--genconfig` prints a file that `--check-config` accepts; a file with
 *    an unknown key or a value outside its choices is refused (exit 1) with
 *    the key named; deploy/ringcastd.ini passes;
 *  - SIGHUP with a changed file applies what can change live (conn_rate
 *    starts refusing a burst at once, the autoscaler bounds show in
 *    /admin/shards), keeps what cannot (the client port still answers) and
 *    counts ringcast_config_reloads_total{result="ok"};
 *  - SIGHUP with a bad file changes nothing (the limit in force stays) and
 *    counts result="error"; the server keeps serving.
 */
#define _GNU_SOURCE
#include "itest.h"

#include <signal.h>
#include <sys/wait.h>

#define BURST 3
#define FLOOD 20
#define SETTLE_MS 5000

static it_server srv;
static char conf[64];

static int cleanup(void)
{
    unlink(conf);
    return it_cleanup(&srv);
}

/* Runs ringcastd with args; returns its exit status, stdout and stderr in out. */
static int run_ringcastd(const char *a1, const char *a2, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "'%s' %s %s 2>&1", getenv("RINGCASTD"), a1, a2 ? a2 : "");
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void test_genconfig_and_check(void)
{
    static char out[1 << 16];
    CU_ASSERT_EQUAL(run_ringcastd("--genconfig", NULL, out, sizeof(out)), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\nmax_frame = 65536\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\ndurability = batch\n"));
    char gen[] = "/tmp/ringcast-gen-XXXXXX";
    int fd = mkstemp(gen);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(write(fd, out, strlen(out)), (ssize_t)strlen(out));
    close(fd);
    char msg[4096];
    CU_ASSERT_EQUAL(run_ringcastd("--check-config", gen, msg, sizeof(msg)), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, ": ok"));
    write_file(gen, "port = 7400\nmax_fram = 100\n");
    CU_ASSERT_EQUAL(run_ringcastd("--check-config", gen, msg, sizeof(msg)), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "unknown key \"max_fram\""));
    write_file(gen, "durability = fast\n");
    CU_ASSERT_EQUAL(run_ringcastd("--check-config", gen, msg, sizeof(msg)), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "durability"));
    write_file(gen, "min_shards = 4\nmax_shards = 2\nshards = 2\n");
    CU_ASSERT_EQUAL(run_ringcastd("--check-config", gen, msg, sizeof(msg)), 1);
    unlink(gen);
    char example[512];
    snprintf(example, sizeof(example), "%s/deploy/ringcastd.ini", getenv("RC_SOURCE_DIR") ? getenv("RC_SOURCE_DIR") : ".");
    CU_ASSERT_EQUAL(run_ringcastd("--check-config", example, msg, sizeof(msg)), 0);
}

/* Pipelines n sends; returns how many were refused with E_RATE_LIMITED (-1: another answer). */
static int limited_of(rc_client *c, int n, uint64_t rid0)
{
    for (int i = 0; i < n; i++) {
        rc_msg m = { .type = RC_T_SEND, .g = rc_str_c("g"), .body = rc_str_c("x"), .body_is_str = true };
        if (it_request(c, &m, rid0 + (uint64_t)i) != 0)
            return -1;
    }
    int limited = 0;
    for (int i = 0; i < n; i++) {
        rc_msg m;
        if (it_next(c, &m) != 1)
            return -1;
        while (m.type == RC_T_MSG)
            if (it_next(c, &m) != 1)
                return -1;
        if (it_is_err(&m, RC_E_RATE_LIMITED, true, m.rid))
            limited++;
        else if (m.type != RC_T_ACK)
            return -1;
    }
    return limited;
}

static double reloads(const char *result)
{
    char name[96];
    snprintf(name, sizeof(name), "ringcast_config_reloads_total{result=\"%s\"}", result);
    return rc_test_metric(srv.s.admin_port, name, 1);
}

static bool wait_reloads(const char *result, double want)
{
    for (int64_t end = it_now_ms() + SETTLE_MS; it_now_ms() < end; it_sleep_ms(IT_POLL_STEP_MS))
        if (reloads(result) == want)
            return true;
    return false;
}

static void test_sighup(void)
{
    snprintf(conf, sizeof(conf), "/tmp/ringcast-reload-XXXXXX");
    int fd = mkstemp(conf);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    write_file(conf, "conn_rate = 0\nmin_shards = 1\nmax_shards = 8\n");
    const char *flags[] = { "--config", conf, NULL };
    CU_ASSERT_FATAL(it_start(&srv, flags) == 0);
    rc_client c;
    CU_ASSERT_FATAL(it_login(&c, &srv, "alice") == 0);
    uint64_t seq;
    CU_ASSERT_FATAL(rc_client_join(&c, "g", IT_TIMEOUT_MS, &seq) == 0);
    CU_ASSERT_EQUAL(limited_of(&c, FLOOD, 100), 0); /* no limit yet */

    /* Live keys change; the port (not live) keeps its value. */
    char text[256];
    snprintf(text, sizeof(text), "conn_rate = 1\nconn_burst = %d\nmin_shards = 2\nmax_shards = 6\nport = 1\nlog_level = debug\n", BURST);
    write_file(conf, text);
    CU_ASSERT_EQUAL(kill(srv.s.pid, SIGHUP), 0);
    CU_ASSERT_FATAL(wait_reloads("ok", 1));
    int limited = limited_of(&c, FLOOD, 200);
    CU_ASSERT(limited >= FLOOD - BURST - 1 && limited <= FLOOD - BURST);
    int status;
    char *body = rc_test_http_get(srv.s.admin_port, "/admin/shards", &status);
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT(body && strstr(body, "\"min_shards\":2,\"max_shards\":6"));
    free(body);
    rc_client d;
    CU_ASSERT_EQUAL(it_login(&d, &srv, "bob"), 0); /* still on the port it started on */
    rc_client_close(&d);

    /* A bad file changes nothing. */
    write_file(conf, "conn_rate = lots\n");
    CU_ASSERT_EQUAL(kill(srv.s.pid, SIGHUP), 0);
    CU_ASSERT_FATAL(wait_reloads("error", 1));
    CU_ASSERT_EQUAL(reloads("ok"), 1);
    it_sleep_ms(200);
    CU_ASSERT(limited_of(&c, FLOOD, 300) >= FLOOD - BURST - 1); /* conn_rate = 1 is still in force */
    write_file(conf, "conn_rate = 0\nbogus = 1\n");
    CU_ASSERT_EQUAL(kill(srv.s.pid, SIGHUP), 0);
    CU_ASSERT_FATAL(wait_reloads("error", 2));

    /* And a good one lifts the limit again. */
    write_file(conf, "conn_rate = 0\n");
    CU_ASSERT_EQUAL(kill(srv.s.pid, SIGHUP), 0);
    CU_ASSERT_FATAL(wait_reloads("ok", 2));
    CU_ASSERT_EQUAL(limited_of(&c, FLOOD, 400), 0);
    rc_client_close(&c);
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
    unlink(conf);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("configuration and reload", NULL, cleanup);
    CU_add_test(s, "--genconfig, --check-config", test_genconfig_and_check);
    CU_add_test(s, "SIGHUP applies live keys, keeps the rest, refuses a bad file", test_sighup);
    return rc_test_run();
}
