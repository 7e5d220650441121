/*
 * Logging facility: level and format names, filtering (a disabled level
 * writes nothing and formats nothing), the text form byte for byte, the JSON
 * form (numbers stay numbers, quoted values unescaped and escaped again,
 * bare words in "msg", control characters escaped) and lines too long for
 * the buffer (cut, marked, still one line, JSON still an object). stderr is
 * captured through a pipe.
 */
#include "core/log.h"

#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define CAPTURE_MAX 16384u
#define LONG_VALUE 5000u /* longer than RC_LOG_LINE_MAX */
#define TS 1764580000123ull

/* ---- stderr capture ---- */

static int saved_stderr = -1, capture_rd = -1;

static void capture_begin(void)
{
    int p[2];
    CU_ASSERT_FATAL(pipe(p) == 0);
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    CU_ASSERT_FATAL(saved_stderr >= 0);
    CU_ASSERT_FATAL(dup2(p[1], STDERR_FILENO) == STDERR_FILENO);
    close(p[1]);
    capture_rd = p[0];
}

/* Restores stderr and returns what was written meanwhile (NUL-terminated). */
static const char *capture_end(void)
{
    static char buf[CAPTURE_MAX];
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < sizeof buf && (r = read(capture_rd, buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r;
    close(capture_rd);
    buf[n] = '\0';
    return buf;
}

static unsigned count_char(const char *s, char c)
{
    unsigned n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && memcmp(s + n - m, tail, m) == 0;
}

/* ---- names ---- */

static void test_level_and_format_names(void)
{
    const char *names[] = { "debug", "info", "warn", "error" };
    for (int i = 0; i < 4; i++) {
        rc_log_level l = RC_LEVEL_ERROR;
        CU_ASSERT_EQUAL(rc_log_level_parse(names[i], &l), 0);
        CU_ASSERT_EQUAL(l, (rc_log_level)i);
        CU_ASSERT_STRING_EQUAL(rc_log_level_name(l), names[i]);
    }
    const char *bad[] = { "INFO", "warning", "", "info ", "err", "debug2" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rc_log_level l = RC_LEVEL_WARN;
        CU_ASSERT_EQUAL(rc_log_level_parse(bad[i], &l), -1);
        CU_ASSERT_EQUAL(l, RC_LEVEL_WARN); /* untouched on error */
    }
    CU_ASSERT_STRING_EQUAL(rc_log_level_name((rc_log_level)7), "unknown");

    rc_log_format f = RC_LOG_FORMAT_JSON;
    CU_ASSERT_EQUAL(rc_log_format_parse("text", &f), 0);
    CU_ASSERT_EQUAL(f, RC_LOG_FORMAT_TEXT);
    CU_ASSERT_EQUAL(rc_log_format_parse("json", &f), 0);
    CU_ASSERT_EQUAL(f, RC_LOG_FORMAT_JSON);
    CU_ASSERT_EQUAL(rc_log_format_parse("JSON", &f), -1);
    CU_ASSERT_EQUAL(rc_log_format_parse("", &f), -1);
}

/* ---- filtering ---- */

static int formatted; /* bumped by an argument: proves whether it was evaluated */

static int bump(void)
{
    return ++formatted;
}

static void test_filtering(void)
{
    rc_log_configure(RC_LEVEL_INFO, RC_LOG_FORMAT_TEXT);
    CU_ASSERT_FALSE(rc_log_enabled(RC_LEVEL_DEBUG));
    CU_ASSERT_TRUE(rc_log_enabled(RC_LEVEL_INFO));
    CU_ASSERT_TRUE(rc_log_enabled(RC_LEVEL_ERROR));
    formatted = 0;
    capture_begin();
    RC_LOG_DEBUG("t", "event=hidden n=%d", bump());
    RC_LOG_INFO("t", "event=shown");
    const char *out = capture_end();
    CU_ASSERT_STRING_EQUAL(out, "level=info component=t event=shown\n");
    CU_ASSERT_EQUAL(formatted, 0); /* a disabled level formats nothing */

    rc_log_configure(RC_LEVEL_WARN, RC_LOG_FORMAT_TEXT);
    capture_begin();
    RC_LOG_DEBUG("t", "event=a");
    RC_LOG_INFO("t", "event=b");
    RC_LOG_WARN("t", "event=c");
    RC_LOG_ERROR("t", "event=d");
    out = capture_end();
    CU_ASSERT_STRING_EQUAL(out, "level=warn component=t event=c\nlevel=error component=t event=d\n");

    rc_log_configure(RC_LEVEL_DEBUG, RC_LOG_FORMAT_TEXT);
    capture_begin();
    RC_LOG_DEBUG("t", "event=a n=%d", bump());
    out = capture_end();
    CU_ASSERT_STRING_EQUAL(out, "level=debug component=t event=a n=1\n");
    rc_log_configure(RC_LEVEL_INFO, RC_LOG_FORMAT_TEXT);
}

/* ---- text form ---- */

static void test_text_exact_bytes(void)
{
    rc_log_configure(RC_LEVEL_INFO, RC_LOG_FORMAT_TEXT);
    capture_begin();
    RC_LOG_WARN("io", "event=slow_consumer_closed sid=%u queued=%u", 7u, 1048576u);
    RC_LOG_ERROR("shard", "id=%u event=store_write_failed attempts=%u err=\"%s\"", 1u, 3u, "disk full");
    const char *out = capture_end();
    CU_ASSERT_STRING_EQUAL(out, "level=warn component=io event=slow_consumer_closed sid=7 queued=1048576\n"
                                "level=error component=shard id=1 event=store_write_failed attempts=3 "
                                "err=\"disk full\"\n");

    /* A newline inside a value does not start a second line. */
    capture_begin();
    RC_LOG_INFO("t", "event=x err=\"%s\"", "two\nlines\r");
    out = capture_end();
    CU_ASSERT_STRING_EQUAL(out, "level=info component=t event=x err=\"two lines \"\n");
}

static void test_text_too_long(void)
{
    char *big = malloc(LONG_VALUE + 1);
    CU_ASSERT_FATAL(big != NULL);
    memset(big, 'v', LONG_VALUE);
    big[LONG_VALUE] = '\0';
    rc_log_configure(RC_LEVEL_INFO, RC_LOG_FORMAT_TEXT);
    capture_begin();
    RC_LOG_INFO("t", "event=big v=%s", big);
    const char *out = capture_end();
    CU_ASSERT_EQUAL(count_char(out, '\n'), 1);
    CU_ASSERT_TRUE(ends_with(out, "...\n"));
    CU_ASSERT_EQUAL(strncmp(out, "level=info component=t event=big v=vvv", 38), 0);
    CU_ASSERT_TRUE(strlen(out) <= RC_LOG_LINE_MAX + 256u);
    free(big);
}

/* ---- JSON form ---- */

static void json_is(const char *pairs, const char *want)
{
    char out[RC_LOG_LINE_MAX + 256];
    unsigned n = rc_log_format_json(out, sizeof out, TS, RC_LEVEL_WARN, "io", pairs);
    CU_ASSERT_EQUAL(n, strlen(out));
    CU_ASSERT_STRING_EQUAL(out, want);
    if (strcmp(out, want) != 0)
        fprintf(stderr, "\n  pairs: %s\n  got:   %s\n  want:  %s\n", pairs, out, want);
}

#define HEAD "{\"ts\":1764580000123,\"level\":\"warn\",\"component\":\"io\""

static void test_json_fields(void)
{
    json_is("event=slow_consumer_closed sid=7 queued=1048576",
            HEAD ",\"event\":\"slow_consumer_closed\",\"sid\":7,\"queued\":1048576}");
    /* numbers stay numbers; what JSON would not read as one is a string */
    json_is("a=0 b=-3 c=007 d=1.5 e=- f=12345678901234567890 g=1234567890123456789 h=\"42\"",
            HEAD ",\"a\":0,\"b\":-3,\"c\":\"007\",\"d\":\"1.5\",\"e\":\"-\",\"f\":\"12345678901234567890\","
                 "\"g\":1234567890123456789,\"h\":\"42\"}");
    /* quoted values: unescaped, then escaped again for JSON */
    json_is("event=x err=\"say \\\"hi\\\" to C:\\\\tmp\" next=1",
            HEAD ",\"event\":\"x\",\"err\":\"say \\\"hi\\\" to C:\\\\tmp\",\"next\":1}");
    json_is("path=C:\\dir q=\"\"", HEAD ",\"path\":\"C:\\\\dir\",\"q\":\"\"}");
    /* bare words go to msg, in order */
    json_is("event=x hello there n=2 world", HEAD ",\"event\":\"x\",\"n\":2,\"msg\":\"hello there world\"}");
    json_is("", HEAD "}");
    json_is("  event=x   n=1  ", HEAD ",\"event\":\"x\",\"n\":1}");
    /* an unterminated quote ends the value at the end of the line */
    json_is("event=x err=\"open", HEAD ",\"event\":\"x\",\"err\":\"open\"}");
}

static void test_json_control_characters(void)
{
    json_is("err=\"a\nb\tc\x01\" raw=x\ry",
            HEAD ",\"err\":\"a\\u000ab\\u0009c\\u0001\",\"raw\":\"x\\u000dy\"}");
    char out[256];
    rc_log_format_json(out, sizeof out, TS, RC_LEVEL_INFO, "we\"ird\n", "event=x");
    CU_ASSERT_STRING_EQUAL(out, "{\"ts\":1764580000123,\"level\":\"info\",\"component\":\"we\\\"ird\\u000a\","
                                "\"event\":\"x\"}");
}

/* A line longer than the buffer keeps its whole fields, says it was cut and
 * is still one closed object. */
static void test_json_too_long(void)
{
    char pairs[1024], out[200];
    snprintf(pairs, sizeof pairs, "event=big a=1 b=\"%0300d\" c=2", 0);
    unsigned n = rc_log_format_json(out, sizeof out, TS, RC_LEVEL_WARN, "io", pairs);
    CU_ASSERT_EQUAL(n, strlen(out));
    CU_ASSERT_TRUE(n < sizeof out);
    CU_ASSERT_STRING_EQUAL(out, HEAD ",\"event\":\"big\",\"a\":1,\"cut\":true}");

    /* escapes never split at the edge */
    memset(pairs, '\n', 200);
    memcpy(pairs, "v=\"", 3);
    pairs[200] = '\0';
    n = rc_log_format_json(out, sizeof out, TS, RC_LEVEL_WARN, "io", pairs);
    CU_ASSERT_STRING_EQUAL(out, HEAD ",\"cut\":true}");

    /* through rc_log_write: one line, one object */
    char *big = malloc(LONG_VALUE + 1);
    CU_ASSERT_FATAL(big != NULL);
    memset(big, '\t', LONG_VALUE);
    big[LONG_VALUE] = '\0';
    rc_log_configure(RC_LEVEL_INFO, RC_LOG_FORMAT_JSON);
    capture_begin();
    RC_LOG_INFO("t", "event=big n=5 v=\"%s\"", big);
    const char *line = capture_end();
    rc_log_configure(RC_LEVEL_INFO, RC_LOG_FORMAT_TEXT);
    CU_ASSERT_EQUAL(count_char(line, '\n'), 1);
    CU_ASSERT_TRUE(ends_with(line, ",\"event\":\"big\",\"n\":5,\"cut\":true}\n"));
    CU_ASSERT_EQUAL(strncmp(line, "{\"ts\":", 6), 0);
    free(big);

    /* a buffer too small for anything gives an empty string, not a fragment */
    char tiny[8];
    CU_ASSERT_EQUAL(rc_log_format_json(tiny, sizeof tiny, TS, RC_LEVEL_WARN, "io", "a=1"), 0);
    CU_ASSERT_STRING_EQUAL(tiny, "");
}

static void test_json_through_write(void)
{
    rc_log_configure(RC_LEVEL_INFO, RC_LOG_FORMAT_JSON);
    capture_begin();
    RC_LOG_INFO("server", "event=listening tcp=%s:%u shards=%u", "127.0.0.1", 7400u, 2u);
    RC_LOG_DEBUG("server", "event=hidden");
    const char *out = capture_end();
    rc_log_configure(RC_LEVEL_INFO, RC_LOG_FORMAT_TEXT);
    unsigned long long ts = 0;
    CU_ASSERT_EQUAL(sscanf(out, "{\"ts\":%llu,", &ts), 1);
    CU_ASSERT_TRUE(ts > TS / 2); /* a wall-clock time in unix ms */
    CU_ASSERT_TRUE(ends_with(out, ",\"level\":\"info\",\"component\":\"server\",\"event\":\"listening\","
                                  "\"tcp\":\"127.0.0.1:7400\",\"shards\":2}\n"));
    CU_ASSERT_EQUAL(count_char(out, '\n'), 1);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("log", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "level and format names", test_level_and_format_names) ||
        !CU_add_test(s, "filtering", test_filtering) ||
        !CU_add_test(s, "text form, exact bytes", test_text_exact_bytes) ||
        !CU_add_test(s, "text form, too long", test_text_too_long) ||
        !CU_add_test(s, "JSON fields", test_json_fields) ||
        !CU_add_test(s, "JSON control characters", test_json_control_characters) ||
        !CU_add_test(s, "JSON too long", test_json_too_long) ||
        !CU_add_test(s, "JSON through rc_log_write", test_json_through_write)) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    return rc_test_run();
}
