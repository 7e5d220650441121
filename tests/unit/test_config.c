/*
 * Unit tests for the configuration loader (src/core/config.c): defaults,
 * file < environment < flag precedence, both flag forms, and every kind of
 * bad input producing an error that names the key, the value and the range.
 */
#include "ringcast/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <ini.h>

#define ERR_SIZE 512
#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Environment variables the tests set; cleared before each test. */
static const char *const test_env[] = {
    "RINGCAST_PORT", "RINGCAST_HTTP_PORT", "RINGCAST_ADMIN_PORT", "RINGCAST_SHARDS",
    "RINGCAST_DURABILITY", "RINGCAST_DATA_DIR", "RINGCAST_LOG_FORMAT",
};

static char ini_path[64];

static void clear_env(void)
{
    for (size_t i = 0; i < sizeof test_env / sizeof test_env[0]; i++)
        unsetenv(test_env[i]);
}

/* Write n bytes to a fresh temporary INI file; its path is in ini_path. */
static void write_ini_bytes(const char *bytes, size_t n)
{
    snprintf(ini_path, sizeof ini_path, "/tmp/rc_test_config_XXXXXX");
    int fd = mkstemp(ini_path);
    CU_ASSERT_FATAL(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT(fwrite(bytes, 1, n, f) == n);
    fclose(f);
}

static void write_ini(const char *text)
{
    write_ini_bytes(text, strlen(text));
}

static void remove_ini(void)
{
    unlink(ini_path);
}

/* Load with argv; returns rc and leaves the message in err. */
static int load(rc_config *c, int argc, char **argv, char *err)
{
    clear_env();
    return rc_config_load(c, argc, argv, err, ERR_SIZE);
}

/* Expect rc_config_load to fail with a message containing every needle. */
static void expect_error(int argc, char **argv, const char *n1, const char *n2, const char *n3)
{
    rc_config c;
    char err[ERR_SIZE];
    rc_config_defaults(&c);
    c.port = 1; /* untouched on error */
    CU_ASSERT_EQUAL(rc_config_load(&c, argc, argv, err, sizeof err), -1);
    CU_ASSERT_EQUAL(c.port, 1);
    const char *needles[] = { n1, n2, n3 };
    for (int i = 0; i < 3; i++) {
        if (needles[i] && !strstr(err, needles[i])) {
            fprintf(stderr, "\n  message \"%s\" lacks \"%s\"\n", err, needles[i]);
            CU_FAIL("error message lacks an expected part");
        }
    }
}

static void test_defaults(void)
{
    rc_config c;
    rc_config_defaults(&c);
    CU_ASSERT_STRING_EQUAL(c.host, "127.0.0.1");
    CU_ASSERT_EQUAL(c.port, 7400);
    CU_ASSERT_EQUAL(c.http_port, 7480);
    CU_ASSERT_STRING_EQUAL(c.admin_host, "127.0.0.1");
    CU_ASSERT_EQUAL(c.admin_port, 7481);
    CU_ASSERT_STRING_EQUAL(c.admin_token, "");
    CU_ASSERT_STRING_EQUAL(c.auth_secret, "");
    CU_ASSERT_STRING_EQUAL(c.data_dir, "./data");
    CU_ASSERT_STRING_EQUAL(c.durability, "batch");
    CU_ASSERT_STRING_EQUAL(c.kafka_brokers, "");
    CU_ASSERT_STRING_EQUAL(c.dlq_topic, "ringcast.deadletter");
    CU_ASSERT_EQUAL(c.shards, 2);
    CU_ASSERT_EQUAL(c.min_shards, 1);
    CU_ASSERT_EQUAL(c.max_shards, 8);
    CU_ASSERT_EQUAL(c.io_threads, 1);
    CU_ASSERT_EQUAL(c.max_frame, 65536);
    CU_ASSERT_EQUAL(c.history_max, 1000);
    CU_ASSERT_EQUAL(c.dedup_window, 1000);
    CU_ASSERT_EQUAL(c.outbound_high_bytes, 4194304u);
    CU_ASSERT_EQUAL(c.outbound_kill_bytes, 16777216u);
    CU_ASSERT_EQUAL(c.max_connections, 20000);
    CU_ASSERT_EQUAL(c.max_groups_per_session, 1024);
    CU_ASSERT_EQUAL(c.max_members_per_group, 100000);
    CU_ASSERT_EQUAL(c.ring_capacity, 65536);
    CU_ASSERT_EQUAL(c.vnodes, 160);
    CU_ASSERT_EQUAL(c.recv_buffers, 1024);
    CU_ASSERT_EQUAL(c.recv_buffer_size, 16384);
    CU_ASSERT_EQUAL(c.shutdown_timeout_ms, 5000);
    CU_ASSERT_STRING_EQUAL(c.log_level, "info");
    CU_ASSERT_STRING_EQUAL(c.log_format, "text");
}

static void test_no_arguments_gives_defaults(void)
{
    rc_config c, d;
    char err[ERR_SIZE];
    char *argv[] = { "ringcastd" };
    memset(&c, 0x5a, sizeof c);
    CU_ASSERT_EQUAL(load(&c, ARGC(argv), argv, err), 0);
    rc_config_defaults(&d);
    CU_ASSERT_EQUAL(memcmp(&c, &d, sizeof c), 0);
    CU_ASSERT_EQUAL(rc_config_load(&c, 0, NULL, err, sizeof err), 0);
    CU_ASSERT_EQUAL(memcmp(&c, &d, sizeof c), 0);
}

static void test_precedence(void)
{
    write_ini("; comment\n"
              "port = 1111\n"
              "http_port = 2222\n"
              "[server]\n"
              "  admin_port = 3333\n"
              "  durability = sync ; inline comment\n"
              "[storage]\n"
              "data_dir = /var/lib/ringcast\n");
    char *argv[] = { "ringcastd", "--config", ini_path, "--admin-port", "6666" };
    rc_config c;
    char err[ERR_SIZE];
    clear_env();
    setenv("RINGCAST_HTTP_PORT", "4444", 1);
    setenv("RINGCAST_ADMIN_PORT", "5555", 1);
    int rc = rc_config_load(&c, ARGC(argv), argv, err, sizeof err);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0)
        fprintf(stderr, "\n  %s\n", err);
    CU_ASSERT_EQUAL(c.port, 1111);       /* file over default */
    CU_ASSERT_EQUAL(c.http_port, 4444);  /* environment over file */
    CU_ASSERT_EQUAL(c.admin_port, 6666); /* flag over environment */
    CU_ASSERT_STRING_EQUAL(c.durability, "sync");
    CU_ASSERT_STRING_EQUAL(c.data_dir, "/var/lib/ringcast");
    CU_ASSERT_EQUAL(c.shards, 2); /* untouched: default */
    clear_env();
    remove_ini();
}

static void test_flag_equals_form(void)
{
    char *argv[] = { "ringcastd", "--max-frame=1024", "--data-dir=/srv/rc", "--durability=none",
                     "--port=0", "--kafka-brokers=", "--outbound-high-bytes", "1000",
                     "--outbound-kill-bytes=1099511627776", "--log-level=warn", "--log-format", "json" };
    rc_config c;
    char err[ERR_SIZE];
    CU_ASSERT_EQUAL_FATAL(load(&c, ARGC(argv), argv, err), 0);
    CU_ASSERT_EQUAL(c.max_frame, 1024);
    CU_ASSERT_STRING_EQUAL(c.data_dir, "/srv/rc");
    CU_ASSERT_STRING_EQUAL(c.durability, "none");
    CU_ASSERT_EQUAL(c.port, 0);
    CU_ASSERT_STRING_EQUAL(c.kafka_brokers, "");
    CU_ASSERT_EQUAL(c.outbound_high_bytes, 1000u);
    CU_ASSERT_EQUAL(c.outbound_kill_bytes, 1099511627776u);
    CU_ASSERT_STRING_EQUAL(c.log_level, "warn");
    CU_ASSERT_STRING_EQUAL(c.log_format, "json");
}

static void test_unknown_key(void)
{
    write_ini("port = 7400\n[x]\nno_such_key = 1\n");
    char *argv[] = { "ringcastd", "--config", ini_path };
    clear_env();
    expect_error(ARGC(argv), argv, "unknown key", "no_such_key", ":3:");
    remove_ini();

    char *flag[] = { "ringcastd", "--no-such-key", "1" };
    expect_error(ARGC(flag), flag, "unknown flag", "--no-such-key", NULL);
    char *underscore[] = { "ringcastd", "--http_port", "1" };
    expect_error(ARGC(underscore), underscore, "unknown flag", "--http_port", NULL);
    char *positional[] = { "ringcastd", "stray" };
    expect_error(ARGC(positional), positional, "unexpected argument", "stray", NULL);
    char *missing[] = { "ringcastd", "--port" };
    expect_error(ARGC(missing), missing, "--port", "needs a value", NULL);
}

static void test_out_of_range(void)
{
    clear_env();
    char *zero[] = { "ringcastd", "--shards=0" };
    expect_error(ARGC(zero), zero, "shards", "\"0\"", "1..256");
    char *big[] = { "ringcastd", "--shards", "300" };
    expect_error(ARGC(big), big, "shards", "\"300\"", "1..256");
    char *port[] = { "ringcastd", "--port", "65536" };
    expect_error(ARGC(port), port, "port", "\"65536\"", "0..65535");
    char *huge[] = { "ringcastd", "--outbound-kill-bytes", "99999999999999999999999" };
    expect_error(ARGC(huge), huge, "outbound_kill_bytes", "out of range", NULL);
    char *frame[] = { "ringcastd", "--max-frame", "15" };
    expect_error(ARGC(frame), frame, "max_frame", "\"15\"", "16..16777216");

    char *argv[] = { "ringcastd" };
    setenv("RINGCAST_SHARDS", "999", 1);
    expect_error(ARGC(argv), argv, "RINGCAST_SHARDS", "\"999\"", "1..256");
    clear_env();

    char longhost[400];
    memset(longhost, 'h', sizeof longhost - 1);
    longhost[sizeof longhost - 1] = '\0';
    char *host[] = { "ringcastd", "--host", longhost };
    expect_error(ARGC(host), host, "host", "399 bytes", "1..255 bytes");
    char *empty[] = { "ringcastd", "--data-dir=" };
    expect_error(ARGC(empty), empty, "data_dir", "1..4095 bytes", NULL);
}

static void test_bad_number(void)
{
    clear_env();
    const char *bad[] = { "abc", "-1", " 5", "5 ", "0x10", "", "12k", "+3" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[] = { "ringcastd", "--port", (char *)bad[i] };
        expect_error(ARGC(argv), argv, "port", "not a decimal number", "0..65535");
    }
}

static void test_bad_enum(void)
{
    clear_env();
    char *argv[] = { "ringcastd", "--durability", "fast" };
    expect_error(ARGC(argv), argv, "durability", "\"fast\"", "none|batch|sync");
    char *level[] = { "ringcastd", "--log-level=INFO" };
    expect_error(ARGC(level), level, "log_level", "\"INFO\"", "debug|info|warn|error");
    char *format[] = { "ringcastd", "--log-format", "xml" };
    expect_error(ARGC(format), format, "log_format", "\"xml\"", "text|json");
    setenv("RINGCAST_LOG_FORMAT", "JSON", 1);
    char *env[] = { "ringcastd" };
    expect_error(ARGC(env), env, "RINGCAST_LOG_FORMAT", "\"JSON\"", "text|json");
    clear_env();
}

static void test_ring_capacity_power_of_two(void)
{
    clear_env();
    char *argv[] = { "ringcastd", "--ring-capacity", "1000" };
    expect_error(ARGC(argv), argv, "ring_capacity", "power of two", "2..1073741824");
    char *one[] = { "ringcastd", "--ring-capacity", "1" };
    expect_error(ARGC(one), one, "ring_capacity", "\"1\"", "2..1073741824");
    char *bufs[] = { "ringcastd", "--recv-buffers", "3" };
    expect_error(ARGC(bufs), bufs, "recv_buffers", "power of two", NULL);

    char *ok[] = { "ringcastd", "--ring-capacity", "1073741824", "--recv-buffers", "1" };
    rc_config c;
    char err[ERR_SIZE];
    CU_ASSERT_EQUAL(load(&c, ARGC(ok), ok, err), 0);
    CU_ASSERT_EQUAL(c.ring_capacity, 1u << 30);
    CU_ASSERT_EQUAL(c.recv_buffers, 1);
}

static void test_cross_key_checks(void)
{
    clear_env();
    char *shards[] = { "ringcastd", "--shards", "9" };
    expect_error(ARGC(shards), shards, "shards=9", "1..8", NULL);
    char *minmax[] = { "ringcastd", "--min-shards", "4", "--max-shards", "2" };
    expect_error(ARGC(minmax), minmax, "min_shards=4", "max_shards=2", NULL);
    char *outbound[] = { "ringcastd", "--outbound-high-bytes", "100",
                         "--outbound-kill-bytes", "50" };
    expect_error(ARGC(outbound), outbound, "outbound_high_bytes=100", "outbound_kill_bytes=50",
                 NULL);
    /* auth_secret: each secret 16..256 bytes, named without being shown */
    char *short_secret[] = { "ringcastd", "--auth-secret", "long-enough-secret-0123,tiny" };
    expect_error(ARGC(short_secret), short_secret, "auth_secret", "secret 2", "16..256");
    char *empty_secret[] = { "ringcastd", "--auth-secret", "long-enough-secret-0123," };
    expect_error(ARGC(empty_secret), empty_secret, "auth_secret", NULL, NULL);

    char *ok[] = { "ringcastd", "--shards", "16", "--max-shards", "32", "--min-shards", "16" };
    rc_config c;
    char err[ERR_SIZE];
    CU_ASSERT_EQUAL(load(&c, ARGC(ok), ok, err), 0);
    CU_ASSERT_EQUAL(c.shards, 16);
    char *two[] = { "ringcastd", "--auth-secret", "long-enough-secret-0123,another-secret-45678" };
    CU_ASSERT_EQUAL(load(&c, ARGC(two), two, err), 0);
}

static void test_file_errors(void)
{
    clear_env();
    char *missing[] = { "ringcastd", "--config=/nonexistent/ringcast.ini" };
    expect_error(ARGC(missing), missing, "/nonexistent/ringcast.ini", "No such file", NULL);

    write_ini("port = 7400\nthis line has no equals sign\n");
    char *syntax[] = { "ringcastd", "--config", ini_path };
    expect_error(ARGC(syntax), syntax, ":2:", "syntax error", NULL);
    remove_ini();

    write_ini("port = 7400\nvnodes = 0\n");
    char *range[] = { "ringcastd", "--config", ini_path };
    expect_error(ARGC(range), range, ":2:", "vnodes", "1..65536");
    remove_ini();

    char text[600];
    int n = snprintf(text, sizeof text, "port = 1\ndata_dir = /");
    memset(text + n, 'd', 400);
    strcpy(text + n + 400, "\nport = 2\n");
    write_ini(text);
    char *longline[] = { "ringcastd", "--config", ini_path };
    expect_error(ARGC(longline), longline, ":2:", "line longer than", NULL);
    remove_ini();
}

/* A NUL byte hid the rest of its line from inih: "port = 74<NUL>00" was
 * read as 74, and in a line as long as inih's buffer what followed the NUL
 * became a line of its own, so a comment could hide a key
 * (tests/fuzz/regress/config/). */
static void test_file_nul_byte(void)
{
    clear_env();
    static const char cut[] = "port = 1\nport = 74\0" "00\n";
    write_ini_bytes(cut, sizeof cut - 1);
    char *argv[] = { "ringcastd", "--config", ini_path };
    expect_error(ARGC(argv), argv, ":2:", "NUL byte", NULL);
    remove_ini();

    char hidden[2 * INI_MAX_LINE];
    int n = snprintf(hidden, sizeof hidden, "# comment");
    hidden[n++] = '\0';
    memset(hidden + n, 'a', INI_MAX_LINE - 1 - (size_t)n); /* the line fills inih's buffer */
    n = INI_MAX_LINE - 1;
    n += snprintf(hidden + n, sizeof hidden - (size_t)n, "port = 1234\n");
    write_ini_bytes(hidden, (size_t)n);
    expect_error(ARGC(argv), argv, ":1:", "NUL byte", NULL);
    remove_ini();
}

/* Run rc_config_load with stdout sent to /dev/null; returns its result. */
static int load_quietly(int argc, char **argv)
{
    rc_config c;
    char err[ERR_SIZE];
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    FILE *null = freopen("/dev/null", "w", stdout);
    CU_ASSERT(null != NULL);
    int rc = load(&c, argc, argv, err);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    return rc;
}

static void test_help_and_version(void)
{
    char *help[] = { "ringcastd", "--port", "1", "--help" };
    CU_ASSERT_EQUAL(load_quietly(ARGC(help), help), 1);
    char *shorthelp[] = { "ringcastd", "-h" };
    CU_ASSERT_EQUAL(load_quietly(ARGC(shorthelp), shorthelp), 1);
    char *version[] = { "ringcastd", "--version" };
    CU_ASSERT_EQUAL(load_quietly(ARGC(version), version), 1);
}

static void test_usage_lists_every_key(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    CU_ASSERT_FATAL(out != NULL);
    rc_config_usage(out, "/usr/bin/ringcastd");
    fclose(out);
    const char *needles[] = { "usage: ringcastd", "--config FILE", "RINGCAST_",
                              "--ring-capacity N", "[RINGCAST_RING_CAPACITY]",
                              "default \"65536\"", "power of two in 2..1073741824",
                              "--durability VALUE", "none|batch|sync", "--log-level",
                              "--log-format VALUE", "text|json",
                              "--outbound-kill-bytes", "--shutdown-timeout-ms", "--dlq-topic",
                              "default \"ringcast.deadletter\"" };
    for (size_t i = 0; i < sizeof needles / sizeof needles[0]; i++)
        CU_ASSERT_PTR_NOT_NULL(strstr(text, needles[i]));
    free(text);
}

static void test_dump(void)
{
    rc_config c;
    rc_config_defaults(&c);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    CU_ASSERT_FATAL(out != NULL);
    rc_config_dump(&c, out);
    fclose(out);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "host = 127.0.0.1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "port = 7400\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "outbound_kill_bytes = 16777216\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "log_level = info\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "log_format = text\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "admin_token = \n"));
    free(text);

    strcpy(c.admin_token, "s3cret");
    strcpy(c.auth_secret, "hmac-secret-one-0123,hmac-secret-two-0123");
    out = open_memstream(&text, &len);
    CU_ASSERT_FATAL(out != NULL);
    rc_config_dump(&c, out);
    fclose(out);
    CU_ASSERT_PTR_NULL(strstr(text, "s3cret"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "admin_token = <redacted>\n"));
    CU_ASSERT_PTR_NULL(strstr(text, "hmac-secret"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "auth_secret = <redacted>\n"));
    free(text);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("config", NULL, NULL);
    if (!s) {
        CU_cleanup_registry();
        return 1;
    }
    CU_add_test(s, "defaults", test_defaults);
    CU_add_test(s, "no arguments gives defaults", test_no_arguments_gives_defaults);
    CU_add_test(s, "file < env < flag", test_precedence);
    CU_add_test(s, "--key=value form", test_flag_equals_form);
    CU_add_test(s, "unknown key and flag", test_unknown_key);
    CU_add_test(s, "out of range", test_out_of_range);
    CU_add_test(s, "bad number", test_bad_number);
    CU_add_test(s, "bad enum", test_bad_enum);
    CU_add_test(s, "ring_capacity power of two", test_ring_capacity_power_of_two);
    CU_add_test(s, "cross-key checks", test_cross_key_checks);
    CU_add_test(s, "file errors", test_file_errors);
    CU_add_test(s, "a NUL byte in the file", test_file_nul_byte);
    CU_add_test(s, "--help and --version", test_help_and_version);
    CU_add_test(s, "usage lists every key", test_usage_lists_every_key);
    CU_add_test(s, "dump", test_dump);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    int f = CU_get_number_of_failures();
    CU_cleanup_registry();
    return f ? 1 : 0;
}
