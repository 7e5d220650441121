/*
 * ringcastd configuration (include/ringcast/config.h).
 *
 * Everything here is driven by one table, `keys`: a row per key with its
 * type, default (as text, parsed by the same code as every other source, so
 * a bad default fails the first rc_config_defaults() assert), bounds, place
 * in rc_config and one line of help. The usage text, the INI handler, the
 * environment and flag lookups, validation and the dump all walk that table.
 *
 * Sources are applied lowest precedence first into a scratch struct: defaults,
 * then the --config file, then RINGCAST_<KEY> variables, then flags. Each
 * value is validated as it is applied, so an error names where it came from;
 * the cross-key checks run last, on the merged result, and the caller's
 * struct is written only when everything passed.
 *
 * The file is read through ini_parse_stream() with our own line reader so
 * that error messages carry the line number, lines longer than inih's
 * buffer and NUL bytes are an error instead of being cut silently, and
 * leading blanks are dropped (inih would otherwise take an indented line as
 * the continuation of the previous value).
 */
#include "ringcast/config.h"
#include "ringcast/token.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#ifndef RC_VERSION
#define RC_VERSION "0.0.0-dev"
#endif

#define DEFAULT_PROG "ringcastd"
#define ENV_PREFIX "RINGCAST_"
#define CONFIG_FLAG "config"
#define REDACTED "<redacted>"
#define MSG_SIZE 512u      /* one validation message, before its origin is prefixed */
#define NAME_SIZE 64u      /* longest key name, flag or environment variable name */
#define ALLOWED_SIZE 96u   /* the "allowed: ..." part of a message */
#define SHOWN_VALUE_MAX 64 /* bytes of an offending value quoted in a message */

typedef enum key_type {
    KEY_STR,  /* char array; min/max bound the length in bytes */
    KEY_U16,  /* uint16_t (ports) */
    KEY_U32,  /* uint32_t */
    KEY_U64,  /* uint64_t */
    KEY_ENUM, /* char array holding one of `choices` */
} key_type;

#define KEY_POW2 0x1u   /* number must be a power of two */
#define KEY_SECRET 0x2u /* never echo the value (messages, dump) */

typedef struct key_def {
    const char *name;    /* key name == rc_config field name */
    key_type type;
    const char *def;     /* default, as text */
    uint64_t min, max;   /* numbers: value bounds; strings: length bounds */
    unsigned flags;      /* KEY_POW2, KEY_SECRET */
    const char *choices; /* enum: allowed values separated by '|' */
    size_t offset, size; /* place of the field in rc_config */
    const char *help;    /* one line */
} key_def;

#define FIELD(f) .offset = offsetof(rc_config, f), .size = sizeof(((rc_config *)0)->f)
#define STR(f, d, minlen, fl, h)                                                                   \
    { .name = #f, .type = KEY_STR, .def = d, .min = minlen,                                        \
      .max = sizeof(((rc_config *)0)->f) - 1, .flags = fl, FIELD(f), .help = h }
#define PORT(f, d, h)                                                                              \
    { .name = #f, .type = KEY_U16, .def = d, .min = 0, .max = UINT16_MAX, FIELD(f), .help = h }
#define U32(f, d, lo, hi, fl, h)                                                                   \
    { .name = #f, .type = KEY_U32, .def = d, .min = lo, .max = hi, .flags = fl, FIELD(f), .help = h }
#define U64(f, d, lo, hi, h)                                                                       \
    { .name = #f, .type = KEY_U64, .def = d, .min = lo, .max = hi, FIELD(f), .help = h }
#define ENUM(f, d, ch, h)                                                                          \
    { .name = #f, .type = KEY_ENUM, .def = d, .choices = ch, FIELD(f), .help = h }

static const key_def keys[] = {
    STR(host, "127.0.0.1", 1, 0, "listen address for TCP and WebSocket clients"),
    PORT(port, "7400", "TCP protocol port (0 picks a free port)"),
    PORT(http_port, "7480", "public HTTP/WebSocket port (0 picks a free port)"),
    STR(admin_host, "127.0.0.1", 1, 0, "listen address of the admin HTTP server"),
    PORT(admin_port, "7481", "admin HTTP port: /metrics, /healthz, /readyz, /admin/..."),
    STR(allowed_origins, "", 0, 0,
        "WebSocket Origin headers allowed, comma-separated (http://chat.example.com,...); empty: any. Others are closed with 1008"),
    STR(admin_token, "", 0, KEY_SECRET, "bearer token of POST /admin/shards and the Server API /api/..., and admin sessions' hello token (empty: none; /api/ answers 403)"),
    STR(auth_secret, "", 0, KEY_SECRET,
        "HS256 secrets hello tokens are signed with, comma-separated for rotation, each 16..256 bytes (empty: hello trusts user)"),
    STR(data_dir, "./data", 1, 0, "directory for history, snapshots and the dead-letter spool"),
    ENUM(durability, "batch", "off|none|batch|sync",
         "when history writes reach the disk (off: memory only, nothing is stored)"),
    U32(block_cache_mb, "8", 1, 65536, 0,
        "MiB of RocksDB block cache (index and filter blocks of the store's files, blocks read at recovery)"),
    U32(tick_log_mb, "512", 1, 65536, 0,
        "MiB of tick log files (data_dir/ticklog) kept before the oldest is folded into RocksDB; a message trimmed sooner never reaches RocksDB"),
    STR(kafka_brokers, "", 0, 0, "Kafka bootstrap host:port list (empty: an embedded development broker)"),
    STR(dlq_topic, "ringcast.deadletter", 1, 0, "Kafka topic for dead letters"),
    U64(spool_max_bytes, "268435456", 4096, UINT64_C(1) << 40,
        "dead letters kept in the spool while Kafka is away, bytes; past it letters are refused (logged)"),
    U32(dlq_breaker_ms, "1000", 10, 600000, 0, "wait before probing Kafka after a broker error, ms (doubles per failed probe)"),
    U32(shards, "2", 1, 256, 0, "shards at start (min_shards..max_shards)"),
    U32(min_shards, "1", 1, 256, 0, "fewest shards the autoscaler keeps"),
    U32(max_shards, "8", 1, 256, 0, "most shards the autoscaler starts"),
    U32(conn_rate, "0", 0, 100000000, 0, "sends per second one connection may make (token bucket; 0: no limit; over it: E_RATE_LIMITED)"),
    U32(conn_burst, "0", 0, 100000000, 0, "sends a connection may make at once above conn_rate (0: conn_rate)"),
    U32(group_rate, "0", 0, 100000000, 0, "sends per second one group accepts from all its senders (0: no limit; over it: E_RATE_LIMITED)"),
    U32(group_burst, "0", 0, 100000000, 0, "sends a group accepts at once above group_rate (0: group_rate)"),
    U32(scale_interval_ms, "1000", 0, 3600000, 0, "the autoscaler samples shards' QPS and queues this often, ms (0: off)"),
    U32(scale_cooldown_ms, "10000", 0, 86400000, 0, "the autoscaler waits this long after a shard-count change, ms"),
    U32(io_threads, "1", 1, 64, 0, "network I/O threads"),
    U32(max_frame, "65536", 16, 16777216, 0, "largest accepted frame, bytes"),
    U32(history_max, "1000", 1, 1000000, 0, "messages of history kept per group"),
    U32(history_cache_mb, "256", 0, 1048576, 0,
        "history kept in memory by all shards, MiB; past it the least recently used groups' history is read back from storage when needed (0: no bound; durability=off keeps all)"),
    U32(dedup_window, "1000", 0, 1000000, 0, "recent message ids remembered per sender (0: off)"),
    U64(history_ttl, "604800", 1, UINT64_C(1) << 40, "seconds a message is kept in history (also bounded by history_max)"),
    U32(snapshot_interval_ms, "1000", 1, 3600000, 0, "a changed group's snapshot is written at least this often, ms"),
    U32(snapshot_every, "1000", 1, 100000000, 0, "a group's snapshot is written after this many changes"),
    U64(outbound_high_bytes, "4194304", 1, UINT64_C(1) << 40,
        "queued outbound bytes that mark a session slow"),
    U64(outbound_kill_bytes, "16777216", 1, UINT64_C(1) << 40,
        "queued outbound bytes that close a session"),
    U32(outbound_stall_ms, "500", 1, 600000, 0,
        "a connection whose output stays over outbound_high_bytes / 2 this long is a slow consumer, ms"),
    ENUM(slow_consumer_policy, "letter", "letter|catchup",
         "what a slow consumer's msgs past outbound_high_bytes become: slow_consumer dead letters, or skipped and sent again from history as its socket drains (catchup)"),
    U32(max_connections, "20000", 1, 1000000, 0, "open client connections at most"),
    U32(max_connections_per_ip, "4096", 1, 1000000, 0,
        "open client connections from one IP address at most; past it a new one gets E_LIMIT and is closed"),
    U32(hello_timeout_ms, "10000", 1, 3600000, 0, "a connection that has not said hello this long is closed, ms"),
    U32(idle_timeout_ms, "300000", 0, 86400000, 0,
        "a connection that sent no frame this long is closed; at half of it the server pings, ms (0: never)"),
    U64(max_reply_bytes, "1048576", 4096, UINT64_C(1) << 30,
        "largest reply (a hist, a join's missed messages); more is paged (`more: true`), bytes"),
    U32(max_groups_per_session, "1024", 1, 1048576, 0, "groups one session may join"),
    U32(max_members_per_group, "100000", 1, 10000000, 0, "members one group may have"),
    U32(inbox_scan_max, "10000", 1, 10000000, 0,
        "groups of one user an inbox looks at; past it the reply says `more: true`"),
    U32(ring_capacity, "65536", 2, UINT32_C(1) << 30, KEY_POW2, "slots in each shard's rings"),
    U32(vnodes, "160", 1, 65536, 0, "virtual nodes per shard on the consistent-hash ring"),
    U32(recv_buffers, "1024", 1, 32768, KEY_POW2, "provided receive buffers per I/O thread"),
    U32(recv_buffer_size, "16384", 512, 1048576, 0, "bytes per receive buffer"),
    U32(shutdown_timeout_ms, "5000", 1, 600000, 0, "time SIGTERM allows for draining, ms"),
    U32(max_queue_ms, "2000", 1, 600000, 0, "a send that waited longer for its shard (E_OVERLOADED: overloaded or expired dead letter), ms"),
    ENUM(log_level, "info", "debug|info|warn|error", "lowest level of log line written"),
    ENUM(log_format, "text", "text|json", "log lines as key=value text or as one JSON object each"),
};

#define NKEYS (sizeof keys / sizeof keys[0])

/* ---- small helpers ---- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* "ring_capacity" -> "ring-capacity" */
static void flag_name(const key_def *k, char *out, size_t n)
{
    size_t i = 0;
    for (; k->name[i] && i + 1 < n; i++)
        out[i] = k->name[i] == '_' ? '-' : k->name[i];
    out[i] = '\0';
}

/* "ring_capacity" -> "RINGCAST_RING_CAPACITY" */
static void env_name(const key_def *k, char *out, size_t n)
{
    size_t len = strlen(ENV_PREFIX);
    snprintf(out, n, "%s", ENV_PREFIX);
    for (size_t i = 0; k->name[i] && len + 1 < n; i++)
        out[len++] = (char)toupper((unsigned char)k->name[i]);
    out[len < n ? len : n - 1] = '\0';
}

static const key_def *find_key(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

/* Flags spell '_' as '-'; `--ring_capacity` is not accepted. */
static const key_def *find_flag(const char *name, size_t len)
{
    char flag[NAME_SIZE];
    for (size_t i = 0; i < NKEYS; i++) {
        flag_name(&keys[i], flag, sizeof flag);
        if (strlen(flag) == len && memcmp(flag, name, len) == 0)
            return &keys[i];
    }
    return NULL;
}

static bool is_number(const key_def *k)
{
    return k->type == KEY_U16 || k->type == KEY_U32 || k->type == KEY_U64;
}

static uint64_t num_load(const rc_config *c, const key_def *k)
{
    const char *p = (const char *)c + k->offset;
    uint16_t v16;
    uint32_t v32;
    uint64_t v64;
    switch (k->type) {
    case KEY_U16: memcpy(&v16, p, sizeof v16); return v16;
    case KEY_U32: memcpy(&v32, p, sizeof v32); return v32;
    default: memcpy(&v64, p, sizeof v64); return v64;
    }
}

/* v is already within the key's bounds, which fit the field's type. */
static void num_store(rc_config *c, const key_def *k, uint64_t v)
{
    char *p = (char *)c + k->offset;
    uint16_t v16 = (uint16_t)v;
    uint32_t v32 = (uint32_t)v;
    switch (k->type) {
    case KEY_U16: memcpy(p, &v16, sizeof v16); break;
    case KEY_U32: memcpy(p, &v32, sizeof v32); break;
    default: memcpy(p, &v, sizeof v); break;
    }
}

/* What a key accepts, for messages and usage: "1..256", "none|batch|sync", ... */
static void describe_allowed(const key_def *k, char *out, size_t n)
{
    if (k->type == KEY_ENUM)
        snprintf(out, n, "%s", k->choices);
    else if (k->type == KEY_STR)
        snprintf(out, n, "%" PRIu64 "..%" PRIu64 " bytes", k->min, k->max);
    else if (k->flags & KEY_POW2)
        snprintf(out, n, "power of two in %" PRIu64 "..%" PRIu64, k->min, k->max);
    else
        snprintf(out, n, "%" PRIu64 "..%" PRIu64, k->min, k->max);
}

/* ---- setting one key from text: the only place values are validated ---- */

typedef enum parse_result { PARSE_OK, PARSE_BAD, PARSE_RANGE } parse_result;

/* Plain decimal only: no sign, no blanks, no base prefix, no suffix. */
static parse_result parse_u64(const char *s, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return PARSE_BAD;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0')
        return PARSE_BAD;
    if (errno == ERANGE)
        return PARSE_RANGE;
    *out = v;
    return PARSE_OK;
}

static int set_number(rc_config *c, const key_def *k, const char *v, char *msg, size_t n)
{
    char allowed[ALLOWED_SIZE];
    describe_allowed(k, allowed, sizeof allowed);
    uint64_t x = 0;
    parse_result r = parse_u64(v, &x);
    if (r == PARSE_BAD) {
        snprintf(msg, n, "invalid value \"%.*s\" for key %s: not a decimal number; allowed: %s",
                 SHOWN_VALUE_MAX, v, k->name, allowed);
        return -1;
    }
    if (r == PARSE_RANGE || x < k->min || x > k->max) {
        snprintf(msg, n, "value \"%.*s\" for key %s is out of range; allowed: %s",
                 SHOWN_VALUE_MAX, v, k->name, allowed);
        return -1;
    }
    if ((k->flags & KEY_POW2) && (x & (x - 1)) != 0) {
        snprintf(msg, n, "value \"%.*s\" for key %s is not a power of two; allowed: %s",
                 SHOWN_VALUE_MAX, v, k->name, allowed);
        return -1;
    }
    num_store(c, k, x);
    return 0;
}

static int set_string(rc_config *c, const key_def *k, const char *v, char *msg, size_t n)
{
    size_t len = strlen(v);
    if (len < k->min || len > k->max) {
        char allowed[ALLOWED_SIZE];
        describe_allowed(k, allowed, sizeof allowed);
        snprintf(msg, n, "value for key %s is %zu bytes long; allowed: %s", k->name, len, allowed);
        return -1;
    }
    memcpy((char *)c + k->offset, v, len + 1);
    return 0;
}

static int set_enum(rc_config *c, const key_def *k, const char *v, char *msg, size_t n)
{
    size_t len = strlen(v);
    for (const char *p = k->choices; *p;) {
        size_t clen = strcspn(p, "|");
        if (clen == len && memcmp(p, v, len) == 0 && len < k->size) {
            memcpy((char *)c + k->offset, v, len + 1);
            return 0;
        }
        p += clen + (p[clen] == '|');
    }
    snprintf(msg, n, "invalid value \"%.*s\" for key %s; allowed: %s", SHOWN_VALUE_MAX, v,
             k->name, k->choices);
    return -1;
}

/* Returns 0, or -1 with a message (without its origin) in msg. */
static int key_set(rc_config *c, const key_def *k, const char *v, char *msg, size_t n)
{
    switch (k->type) {
    case KEY_STR: return set_string(c, k, v, msg, n);
    case KEY_ENUM: return set_enum(c, k, v, msg, n);
    default: return set_number(c, k, v, msg, n);
    }
}

/* ---- defaults ---- */

void rc_config_defaults(rc_config *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &keys[i];
        char msg[MSG_SIZE];
        /* Table invariants: the field fits the type and the default is valid. */
        assert(k->type != KEY_U16 || k->size == sizeof(uint16_t));
        assert(k->type != KEY_U32 || (k->size == sizeof(uint32_t) && k->max <= UINT32_MAX));
        assert(k->type != KEY_U64 || k->size == sizeof(uint64_t));
        assert(strlen(k->name) + strlen(ENV_PREFIX) < NAME_SIZE);
        int rc = key_set(c, k, k->def, msg, sizeof msg);
        assert(rc == 0);
        (void)rc;
    }
}

/* ---- file ---- */

typedef struct file_ctx {
    FILE *fp;
    rc_config *cfg;
    int line;           /* line being parsed, 1-based */
    bool failed;        /* msg holds the first error; stop reading */
    char msg[MSG_SIZE];
} file_ctx;

static void strip_leading_blanks(char *s)
{
    size_t skip = strspn(s, " \t");
    if (skip)
        memmove(s, s + skip, strlen(s + skip) + 1);
}

/* The line reader inih calls instead of fgets(): counts lines, refuses lines
 * longer than inih's buffer, and refuses a NUL byte: inih reads a line only up to its first NUL, so the
 * rest of it would be lost, or, in a line as long as the buffer, read as a
 * line of its own (a comment could hide a key). */
static char *file_read_line(char *str, int num, void *stream)
{
    file_ctx *fc = stream;
    int len = 0, ch = 0;
    if (fc->failed)
        return NULL;
    while (len < num - 1 && ch != '\n' && (ch = getc(fc->fp)) != EOF) {
        if (len == 0)
            fc->line++;
        if (ch == '\0') {
            snprintf(fc->msg, sizeof fc->msg, "NUL byte in the line");
            fc->failed = true;
            return NULL;
        }
        str[len++] = (char)ch;
    }
    if (len == 0)
        return NULL;
    str[len] = '\0';
    if (len == num - 1 && str[len - 1] != '\n') {
        int next = getc(fc->fp);
        if (next != EOF) {
            snprintf(fc->msg, sizeof fc->msg, "line longer than %d bytes", num - 3);
            fc->failed = true;
            return NULL;
        }
    }
    strip_leading_blanks(str);
    return str;
}

static int file_on_key(void *user, const char *section, const char *name, const char *value)
{
    (void)section; /* keys may sit in any section */
    file_ctx *fc = user;
    if (fc->failed)
        return 0;
    const key_def *k = find_key(name);
    if (!k)
        snprintf(fc->msg, sizeof fc->msg, "unknown key \"%.*s\"", SHOWN_VALUE_MAX, name);
    else if (key_set(fc->cfg, k, value, fc->msg, sizeof fc->msg) == 0)
        return 1;
    fc->failed = true;
    return 0;
}

static int load_file(rc_config *c, const char *path, char *err, size_t errlen)
{
    file_ctx fc = { .cfg = c };
    fc.fp = fopen(path, "r");
    if (!fc.fp) {
        set_err(err, errlen, "config file %s: %s", path, strerror(errno));
        return -1;
    }
    int rc = ini_parse_stream(file_read_line, &fc, file_on_key, &fc);
    bool read_error = ferror(fc.fp) != 0;
    fclose(fc.fp);
    if (fc.failed) {
        set_err(err, errlen, "%s:%d: %s", path, fc.line, fc.msg);
        return -1;
    }
    if (read_error) {
        set_err(err, errlen, "config file %s: read error", path);
        return -1;
    }
    if (rc != 0) {
        set_err(err, errlen, "%s:%d: syntax error (expected \"key = value\" or \"[section]\")",
                path, rc);
        return -1;
    }
    return 0;
}

/* ---- environment ---- */

static int load_env(rc_config *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < NKEYS; i++) {
        char var[NAME_SIZE], msg[MSG_SIZE];
        env_name(&keys[i], var, sizeof var);
        const char *v = getenv(var);
        if (v && key_set(c, &keys[i], v, msg, sizeof msg) != 0) {
            set_err(err, errlen, "environment %s: %s", var, msg);
            return -1;
        }
    }
    return 0;
}

/* ---- flags ---- */

typedef enum arg_kind { ARG_KEY, ARG_CONFIG, ARG_HELP, ARG_VERSION, ARG_GENCONFIG, ARG_CHECK } arg_kind;

typedef struct arg {
    arg_kind kind;
    const key_def *key; /* ARG_KEY */
    const char *value;  /* ARG_KEY, ARG_CONFIG */
    const char *flag;   /* the flag as written, for messages */
    int flag_len;       /* its length, without any "=VALUE" */
} arg;

/* Parse argv[*i] (and its value, advancing *i) into a. */
static int next_arg(int argc, char **argv, int *i, arg *a, char *err, size_t errlen)
{
    const char *s = argv[*i];
    *a = (arg){ .flag = s, .flag_len = (int)strlen(s) };
    if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
        a->kind = ARG_HELP;
        return 0;
    }
    if (strcmp(s, "--version") == 0 || strcmp(s, "-V") == 0) {
        a->kind = ARG_VERSION;
        return 0;
    }
    if (strcmp(s, "--genconfig") == 0) {
        a->kind = ARG_GENCONFIG;
        return 0;
    }
    if (strcmp(s, "--check-config") == 0 || strncmp(s, "--check-config=", 15) == 0) {
        a->kind = ARG_CHECK;
        if (s[14] == '=') {
            a->value = s + 15;
        } else if (*i + 1 < argc) {
            a->value = argv[++*i];
        } else {
            set_err(err, errlen, "flag %s needs a file", s);
            return -1;
        }
        return 0;
    }
    if (strncmp(s, "--", 2) != 0 || s[2] == '\0') {
        set_err(err, errlen, "unexpected argument \"%s\" (see --help)", s);
        return -1;
    }
    const char *name = s + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    a->flag_len = (int)(len + 2);
    if (len == strlen(CONFIG_FLAG) && memcmp(name, CONFIG_FLAG, len) == 0) {
        a->kind = ARG_CONFIG;
    } else if (!(a->key = find_flag(name, len))) {
        set_err(err, errlen, "unknown flag %.*s (see --help)", a->flag_len, s);
        return -1;
    }
    if (eq) {
        a->value = eq + 1;
    } else if (*i + 1 < argc) {
        a->value = argv[++*i];
    } else {
        set_err(err, errlen, "flag %s needs a value", s);
        return -1;
    }
    return 0;
}

static void print_version(const char *prog)
{
    printf("%s %s\n", base_name(prog), RC_VERSION);
}

static int check_cross_keys(const rc_config *c, char *err, size_t errlen);

/* --check-config FILE: the file alone over the defaults, cross-key checks
 * included. 1 (valid, said on stdout) or 2 (err says why). */
static int check_file(const char *path, char *err, size_t errlen)
{
    rc_config tmp;
    rc_config_defaults(&tmp);
    if (load_file(&tmp, path, err, errlen) != 0 || check_cross_keys(&tmp, err, errlen) != 0)
        return 2;
    printf("%s: ok\n", path);
    return 1;
}

/*
 * First pass over argv: check every flag's syntax, act on --help,
 * --version, --genconfig and --check-config, find --config. Returns 1 when
 * one of those was answered, 2 for a file --check-config refused, 0, or -1.
 */
static int scan_args(int argc, char **argv, const char *prog, const char **file, char *err,
                     size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        arg a;
        if (next_arg(argc, argv, &i, &a, err, errlen) != 0)
            return -1;
        if (a.kind == ARG_HELP) {
            rc_config_usage(stdout, prog);
            return 1;
        }
        if (a.kind == ARG_VERSION) {
            print_version(prog);
            return 1;
        }
        if (a.kind == ARG_GENCONFIG) {
            rc_config_genconfig(stdout);
            return 1;
        }
        if (a.kind == ARG_CHECK)
            return check_file(a.value, err, errlen);
        if (a.kind == ARG_CONFIG)
            *file = a.value;
    }
    return 0;
}

/* Second pass, after file and environment: apply the key flags. */
static int load_flags(rc_config *c, int argc, char **argv, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        arg a;
        char msg[MSG_SIZE];
        if (next_arg(argc, argv, &i, &a, err, errlen) != 0)
            return -1;
        if (a.kind == ARG_KEY && key_set(c, a.key, a.value, msg, sizeof msg) != 0) {
            set_err(err, errlen, "flag %.*s: %s", a.flag_len, a.flag, msg);
            return -1;
        }
    }
    return 0;
}

/* ---- whole configuration ---- */

static int check_cross_keys(const rc_config *c, char *err, size_t errlen)
{
    if (c->min_shards > c->max_shards) {
        set_err(err, errlen, "min_shards=%" PRIu32 " exceeds max_shards=%" PRIu32,
                c->min_shards, c->max_shards);
        return -1;
    }
    if (c->shards < c->min_shards || c->shards > c->max_shards) {
        set_err(err, errlen,
                "shards=%" PRIu32 " outside min_shards..max_shards; allowed: %" PRIu32
                "..%" PRIu32,
                c->shards, c->min_shards, c->max_shards);
        return -1;
    }
    if (c->max_reply_bytes < (uint64_t)c->max_frame + RC_CONFIG_REPLY_SLACK) {
        set_err(err, errlen,
                "max_reply_bytes=%" PRIu64 " is below max_frame + %u: one message must fit in a reply",
                c->max_reply_bytes, RC_CONFIG_REPLY_SLACK);
        return -1;
    }
    if (c->outbound_high_bytes > c->outbound_kill_bytes) {
        set_err(err, errlen,
                "outbound_high_bytes=%" PRIu64 " exceeds outbound_kill_bytes=%" PRIu64,
                c->outbound_high_bytes, c->outbound_kill_bytes);
        return -1;
    }
    rc_token_keys secrets; /* the secrets' count and lengths (the message never shows a secret) */
    if (rc_token_keys_parse(&secrets, c->auth_secret, err, errlen) != 0)
        return -1;
    return 0;
}

int rc_config_load(rc_config *c, int argc, char **argv, char *err, size_t errlen)
{
    const char *prog = argc > 0 && argv[0] ? argv[0] : DEFAULT_PROG;
    const char *file = NULL;
    rc_config tmp;

    set_err(err, errlen, "%s", "");
    int rc = scan_args(argc, argv, prog, &file, err, errlen);
    if (rc != 0)
        return rc;
    rc_config_defaults(&tmp);
    if (file && load_file(&tmp, file, err, errlen) != 0)
        return -1;
    if (load_env(&tmp, err, errlen) != 0 || load_flags(&tmp, argc, argv, err, errlen) != 0)
        return -1;
    if (check_cross_keys(&tmp, err, errlen) != 0)
        return -1;
    *c = tmp;
    return 0;
}

/* ---- usage and dump ---- */

void rc_config_usage(FILE *out, const char *prog)
{
    const char *p = base_name(prog ? prog : DEFAULT_PROG);
    fprintf(out,
            "usage: %s [--config FILE] [--KEY VALUE | --KEY=VALUE]...\n"
            "       %s --help | --version | --genconfig | --check-config FILE\n"
            "\n"
            "Every key below is set, from lowest to highest precedence, by its default,\n"
            "by \"key = value\" in the INI file named by --config (at top level or in\n"
            "any section; lines of at most %d bytes), by the environment variable\n"
            "%sKEY (key in upper case), and by the flag --key with '_' written as\n"
            "'-'. Numbers are plain decimal.\n"
            "\n"
            "keys:\n",
            p, p, INI_MAX_LINE - 3, ENV_PREFIX);
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &keys[i];
        char flag[NAME_SIZE], var[NAME_SIZE], allowed[ALLOWED_SIZE];
        flag_name(k, flag, sizeof flag);
        env_name(k, var, sizeof var);
        describe_allowed(k, allowed, sizeof allowed);
        fprintf(out, "  --%s %s  [%s]  default \"%s\"\n      %s; allowed: %s\n", flag,
                is_number(k) ? "N" : "VALUE", var, k->def, k->help, allowed);
    }
}

int rc_config_diff(const rc_config *a, const rc_config *b, void (*fn)(void *ud, const char *key), void *ud)
{
    int n = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &keys[i];
        bool same = is_number(k) ? num_load(a, k) == num_load(b, k)
                                 : strcmp((const char *)a + k->offset, (const char *)b + k->offset) == 0;
        if (!same) {
            n++;
            if (fn)
                fn(ud, k->name);
        }
    }
    return n;
}

void rc_config_genconfig(FILE *out)
{
    fprintf(out, "# ringcastd configuration: every key with its default (written by ringcastd --genconfig).\n"
                 "# Use it with --config FILE. RINGCAST_<KEY> variables and --key-name flags win over it.\n"
                 "# Validate a file with ringcastd --check-config FILE. SIGHUP re-reads it (limits,\n"
                 "# rate limits, outbound bounds, autoscaler bounds, log_level change live).\n");
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &keys[i];
        char allowed[ALLOWED_SIZE];
        describe_allowed(k, allowed, sizeof allowed);
        fprintf(out, "\n# %s\n# allowed: %s\n%s = %s\n", k->help, allowed, k->name, k->def);
    }
}

void rc_config_dump(const rc_config *c, FILE *out)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &keys[i];
        if (is_number(k)) {
            fprintf(out, "%s = %" PRIu64 "\n", k->name, num_load(c, k));
            continue;
        }
        const char *s = (const char *)c + k->offset;
        if ((k->flags & KEY_SECRET) && *s)
            s = REDACTED;
        fprintf(out, "%s = %s\n", k->name, s);
    }
}
