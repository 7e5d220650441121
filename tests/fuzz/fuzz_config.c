/*
 * libFuzzer target: the configuration loader (rc_config_load,
 * src/core/config.c) on an arbitrary INI file and command line.
 *
 * The input is the file's text, then optionally two NUL bytes and the
 * command-line words, NUL-separated (a NUL at the very end adds no empty
 * word): rc_config_load sees `ringcastd --config FILE WORD...`, where FILE
 * is a memfd holding the text (which may hold single NULs).
 * Words naming another --config are dropped, so that the fuzzer cannot make
 * the loader read a file of this machine (or wait on a terminal), and no
 * RINGCAST_* variable is set, so that the environment plays no part.
 *
 * A crash, besides any sanitizer report (a leak included):
 *  - a result other than 0, 1, 2 (--check-config refused the file) or -1, an
 *    error without a message, or a message left after success;
 *  - a file holding a NUL byte accepted: inih would not see what follows it;
 *  - an accepted configuration that breaks a rule config.h states: strings
 *    NUL-terminated in their fields, enums among their choices, powers of
 *    two, min_shards <= shards <= max_shards, outbound_high_bytes <=
 *    outbound_kill_bytes.
 */
#define _GNU_SOURCE /* memfd_create, memmem */
#include "fuzz.h"

#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ringcast/config.h"

#define FUZZ_MAX_WORDS 64  /* command-line words taken from one input */
#define FUZZ_ERR_SIZE 256u /* the caller's message buffer (ringcastd passes 512) */
#define FUZZ_PROG "ringcastd"
#define FUZZ_CONFIG_FLAG "--config"
#define FUZZ_ENV_PREFIX "RINGCAST_"
#define FUZZ_WORDS_SEP "\0\0" /* between the file and the words */
#define FUZZ_WORDS_SEP_LEN 2u

extern char **environ;

static int ini_fd = -1;
static char ini_path[64];

/* No RINGCAST_* variable, the INI memfd, --help and --version to /dev/null. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    for (bool again = true; again;) {
        again = false;
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, FUZZ_ENV_PREFIX, strlen(FUZZ_ENV_PREFIX)) == 0) {
                char name[256];
                size_t n = strcspn(*e, "=");
                snprintf(name, sizeof name, "%.*s", (int)n, *e);
                unsetenv(name);
                again = true; /* environ changed under us: start over */
                break;
            }
        }
    }
    ini_fd = memfd_create("fuzz_config.ini", 0);
    FUZZ_CHECK(ini_fd >= 0, "memfd_create");
    snprintf(ini_path, sizeof ini_path, "/proc/self/fd/%d", ini_fd);
    FUZZ_CHECK(freopen("/dev/null", "w", stdout) != NULL, "stdout to /dev/null");
    return 0;
}

static void write_ini(const uint8_t *p, size_t n)
{
    FUZZ_CHECK(ftruncate(ini_fd, 0) == 0, "ftruncate");
    FUZZ_CHECK(n == 0 || pwrite(ini_fd, p, n, 0) == (ssize_t)n, "pwrite");
}

static bool is_enum(const char *v, const char *const *choices)
{
    for (; *choices; choices++)
        if (strcmp(v, *choices) == 0)
            return true;
    return false;
}

static bool terminated(const char *field, size_t size)
{
    return memchr(field, '\0', size) != NULL;
}

static bool pow2(uint32_t x)
{
    return x && (x & (x - 1)) == 0;
}

/* The rules of include/ringcast/config.h an accepted configuration keeps. */
static void check_config(const rc_config *c)
{
    static const char *const durability[] = { "off", "none", "batch", "sync", NULL };
    static const char *const level[] = { "debug", "info", "warn", "error", NULL };
    static const char *const format[] = { "text", "json", NULL };
#define TERMINATED(f) FUZZ_CHECK(terminated(c->f, sizeof c->f), #f " is NUL-terminated")
    TERMINATED(host);
    TERMINATED(admin_host);
    TERMINATED(admin_token);
    TERMINATED(auth_secret);
    TERMINATED(data_dir);
    TERMINATED(durability);
    TERMINATED(kafka_brokers);
    TERMINATED(dlq_topic);
    TERMINATED(log_level);
    TERMINATED(log_format);
#undef TERMINATED
    FUZZ_CHECK(c->host[0] && c->admin_host[0] && c->data_dir[0] && c->dlq_topic[0],
               "required strings are not empty");
    FUZZ_CHECK(is_enum(c->durability, durability), "durability is one of its choices");
    FUZZ_CHECK(is_enum(c->log_level, level), "log_level is one of its choices");
    FUZZ_CHECK(is_enum(c->log_format, format), "log_format is one of its choices");
    FUZZ_CHECK(pow2(c->ring_capacity) && pow2(c->recv_buffers), "ring_capacity and recv_buffers are powers of two");
    FUZZ_CHECK(c->min_shards <= c->shards && c->shards <= c->max_shards, "min_shards <= shards <= max_shards");
    FUZZ_CHECK(c->outbound_high_bytes <= c->outbound_kill_bytes, "outbound_high_bytes <= outbound_kill_bytes");
    FUZZ_CHECK(c->shards >= 1 && c->io_threads >= 1 && c->max_frame >= 16, "counts are at least their minimum");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *sep = memmem(data, size, FUZZ_WORDS_SEP, FUZZ_WORDS_SEP_LEN);
    size_t file_len = sep ? (size_t)(sep - data) : size;
    bool file_has_nul = memchr(data, '\0', file_len) != NULL;
    write_ini(data, file_len);

    /* The words, NUL-terminated in a copy of their own. */
    size_t words_len = sep ? size - file_len - FUZZ_WORDS_SEP_LEN : 0;
    char *words = malloc(words_len + 1);
    FUZZ_CHECK(words != NULL, "out of memory in the harness");
    if (words_len)
        memcpy(words, sep + FUZZ_WORDS_SEP_LEN, words_len);
    words[words_len] = '\0';
    char *argv[3 + FUZZ_MAX_WORDS + 1] = { FUZZ_PROG, FUZZ_CONFIG_FLAG, ini_path };
    int argc = 3;
    for (size_t off = 0; off < words_len && argc < 3 + FUZZ_MAX_WORDS;) {
        char *w = words + off;
        off += strlen(w) + 1;
        if (strncmp(w, FUZZ_CONFIG_FLAG, strlen(FUZZ_CONFIG_FLAG)) != 0)
            argv[argc++] = w;
    }
    argv[argc] = NULL;

    rc_config c;
    char *err = malloc(FUZZ_ERR_SIZE); /* exactly this long, so that ASan sees an overrun */
    FUZZ_CHECK(err != NULL, "out of memory in the harness");
    int rc = rc_config_load(&c, argc, argv, err, FUZZ_ERR_SIZE);
    FUZZ_CHECK(rc >= -1 && rc <= 2, "rc_config_load returns 0, 1, 2 (--check-config refused the file) or -1");
    FUZZ_CHECK(memchr(err, '\0', FUZZ_ERR_SIZE) != NULL, "the message is NUL-terminated");
    if (rc == -1 || rc == 2)
        FUZZ_CHECK(err[0] != '\0', "an error has a message");
    if (rc == 0) {
        FUZZ_CHECK(!file_has_nul, "a file holding a NUL byte is refused");
        FUZZ_CHECK(err[0] == '\0', "success leaves no message");
        check_config(&c);
        rc_config_dump(&c, stdout);
    }
    free(err);
    free(words);
    return 0;
}
