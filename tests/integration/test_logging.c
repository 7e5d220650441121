/*
 * ringcastd honours log_format and log_level from the start: with
 * `--log-format json` every line it writes from start to stop is one JSON
 * object (checked by python3's json module, an independent parser), and with
 * `--log-level warn` its info start-up lines are gone while its warnings
 * stay. The server's stderr goes to a file for each run.
 */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define LOG_MAX 65536u
#define LISTEN_WAIT_MS 5000 /* the `listening` line follows /readyz */

/* Every line a JSON object with an integer ts and string level, component
 * and event; one of them the `listening` line with numbers as numbers. */
static const char *const json_check =
    "import json, sys\n"
    "seen = set()\n"
    "for n, line in enumerate(open(sys.argv[1]), 1):\n"
    "    o = json.loads(line)\n"
    "    assert isinstance(o, dict), n\n"
    "    assert isinstance(o['ts'], int) and o['ts'] > 0, n\n"
    "    assert o['level'] in ('info', 'warn', 'error'), n\n"
    "    assert isinstance(o['component'], str) and isinstance(o['event'], str), n\n"
    "    seen.add(o['event'])\n"
    "    if o['event'] == 'listening':\n"
    "        assert isinstance(o['shards'], int) and isinstance(o['tcp'], str), line\n"
    "for e in ('listening', 'embedded_broker', 'stopping', 'stopped'):\n"
    "    assert e in seen, e\n";

static char log_path[64];

/* Starts ringcastd with its stderr in a fresh file (log_path). */
static int start_logged(rc_test_server *srv, const char *const *args)
{
    snprintf(log_path, sizeof log_path, "/tmp/ringcast-test-log-XXXXXX");
    int fd = mkstemp(log_path);
    if (fd < 0)
        return -1;
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    int r = rc_test_server_start(srv, args);
    dup2(saved, STDERR_FILENO);
    close(saved);
    return r;
}

/* The server's log so far (static buffer). */
static const char *read_log(void)
{
    static char buf[LOG_MAX];
    FILE *f = fopen(log_path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    return buf;
}

static void wait_for(const char *needle)
{
    struct timespec ts = { 0, 20 * 1000000L };
    for (int waited = 0; waited < LISTEN_WAIT_MS && !strstr(read_log(), needle); waited += 20)
        nanosleep(&ts, NULL);
}

static void show_log_on_failure(unsigned failures_before)
{
    if (CU_get_number_of_failures() != failures_before)
        fprintf(stderr, "\n--- ringcastd log ---\n%s--- end ---\n", read_log());
}

static void test_json_lines(void)
{
    unsigned failures = CU_get_number_of_failures();
    const char *args[] = { "--log-format", "json", NULL };
    rc_test_server srv;
    CU_ASSERT_FATAL(start_logged(&srv, args) == 0);
    wait_for("\"event\":\"listening\"");
    CU_ASSERT_EQUAL(rc_test_server_stop(&srv), 0);
    const char *log = read_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "\"event\":\"listening\""));
    CU_ASSERT_PTR_NULL(strstr(log, "level=")); /* no text line slipped through */
    CU_ASSERT_PTR_NULL(strstr(log, "\"level\":\"debug\"")); /* not at the default level */

    char cmd[256], script[64];
    snprintf(script, sizeof script, "/tmp/ringcast-test-json-XXXXXX");
    int fd = mkstemp(script);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(write(fd, json_check, strlen(json_check)) == (ssize_t)strlen(json_check));
    close(fd);
    snprintf(cmd, sizeof cmd, "python3 %s %s", script, log_path);
    CU_ASSERT_EQUAL(system(cmd), 0);
    unlink(script);
    show_log_on_failure(failures);
    unlink(log_path);
}

static void test_warn_hides_info(void)
{
    unsigned failures = CU_get_number_of_failures();
    const char *args[] = { "--log-level", "warn", NULL };
    rc_test_server srv;
    CU_ASSERT_FATAL(start_logged(&srv, args) == 0);
    CU_ASSERT_EQUAL(rc_test_server_stop(&srv), 0);
    const char *log = read_log();
    /* the warning is there, in the text form */
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "level=warn component=dlq event=embedded_broker bootstrap="));
    CU_ASSERT_PTR_NULL(strstr(log, "level=info"));
    CU_ASSERT_PTR_NULL(strstr(log, "level=debug"));
    CU_ASSERT_PTR_NULL(strstr(log, "event=listening"));
    CU_ASSERT_PTR_NULL(strstr(log, "event=stopped"));
    show_log_on_failure(failures);
    unlink(log_path);
}

static void test_bad_format_is_a_config_error(void)
{
    const char *args[] = { "--log-format", "xml", NULL };
    rc_test_server srv;
    CU_ASSERT_EQUAL(start_logged(&srv, args), -1);
    const char *log = read_log();
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "log_format"));
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "text|json"));
    rc_test_remove_dir(srv.dir);
    unlink(log_path);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("logging", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "--log-format json: every line an object", test_json_lines) ||
        !CU_add_test(s, "--log-level warn hides info", test_warn_hides_info) ||
        !CU_add_test(s, "--log-format xml: config error", test_bad_format_is_a_config_error)) {
        CU_cleanup_registry();
        return 1;
    }
    return rc_test_run();
}
