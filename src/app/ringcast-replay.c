/*
 * ringcast-replay: re-injects dead letters (ARCHITECTURE §7; records as
 * proto/PROTOCOL.md §9 specifies them) through the protocol's `replay`
 * command (proto/PROTOCOL.md §3, §6.2).
 *
 * It consumes the dead-letter topic in its own consumer group with manual
 * commits, decodes each record's MessagePack map, filters it (reason, group,
 * time, offset), and sends every match as one `replay` over a single admin
 * session, waiting for its `ack` before it commits the record's offset
 * (synchronously). Replay is idempotent on the server (dedup by mid, or by
 * group+seq+to), so a record replayed twice is delivered once; the second
 * ack says dup:true (a redelivered slow_consumer letter's ack says so only
 * when nobody in its group is online: the recipient's io thread, not the
 * shard that acks, knows whether it was still owed).
 *
 * The tool assigns itself every partition of the topic instead of joining
 * the group's rebalancing (a join waits for the broker's rebalance delay and
 * for members that left): the consumer group only holds committed offsets,
 * so run one instance per consumer group at a time.
 *
 * Offsets: a Kafka commit means "everything below this offset is done", so a
 * committed record also passes the records before it that were filtered out
 * or undecodable. Use one consumer group per filter. Once a replay fails in a
 * partition, nothing after it in that partition is committed in this run, so
 * the next run starts again at the failed record.
 *
 * Every run is bounded: it stops after --idle-ms without a record, after
 * --limit replays, on SIGINT/SIGTERM, or when the server connection is lost.
 * Exit status: 0 no replay failed, 1 some failed, 2 bad usage or the server
 * or broker could not be reached (or refused the admin session).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <msgpack.h>

#include "core/clock.h"
#include "ringcast/client.h"

#define DEFAULT_TOPIC "ringcast.deadletter"
#define DEFAULT_GROUP "ringcast-replay"
#define DEFAULT_SERVER "127.0.0.1:7400"
#define DEFAULT_USER "ringcast-replay"
#define DEFAULT_IDLE_MS 3000
#define TOKEN_ENV "RINGCAST_ADMIN_TOKEN"
#define RECORD_VERSION 1          /* the record's `v` this tool understands */
#define MAX_REASONS 16            /* --reason values */
#define REASON_TEXT 64            /* longest reason name kept for counting */
#define SERVER_TIMEOUT_MS 5000    /* connect, hello */
#define REPLAY_TIMEOUT_MS 10000   /* one replay's ack */
#define METADATA_TIMEOUT_MS 5000  /* broker reachability check */
#define POLL_MS 100               /* consumer poll step */
#define PROGRESS_MS 500           /* progress line refresh on a terminal */
#define RATE_BURST_S 0.1          /* token bucket depth, seconds of --rate (at least 1) */
#define ERRSTR 512

#define EXIT_OK 0
#define EXIT_FAILED 1
#define EXIT_UNAVAILABLE 2

typedef struct options {
    const char *brokers, *topic, *cgroup, *server, *token, *user;
    char host[256];
    uint16_t port;
    const char *reasons[MAX_REASONS];
    int n_reasons;
    const char *group;            /* --group filter, NULL: any */
    bool has_since, has_until;
    uint64_t since, until;        /* record ts bounds, unix ms, inclusive */
    int64_t from_offset;          /* -1: committed offset (or earliest) */
    uint64_t limit;               /* 0: no limit */
    double rate;                  /* records/s, 0: unlimited */
    int idle_ms;
    bool dry_run;
} options;

/* One decoded record value; strings point into the Kafka message. */
typedef struct letter {
    rc_str reason, g, from, to, mid, body;
    bool body_is_str, has_seq;
    uint64_t seq, ts;
} letter;

typedef struct reason_count {
    char name[REASON_TEXT];
    uint64_t n;
} reason_count;

typedef struct counters {
    uint64_t read, matched, replayed, dup, skipped, failed, undecodable;
    reason_count by_reason[MAX_REASONS * 2];
    int n_by_reason;
} counters;

/* Partitions where a replay failed: their later offsets are not committed. */
#define MAX_BLOCKED 1024
typedef struct run_state {
    const options *o;
    rd_kafka_t *rk;
    rc_client cl;
    bool connected;
    counters c;
    int32_t blocked[MAX_BLOCKED];
    int n_blocked;
    double tokens;
    int64_t last_refill_ms;
    bool progress;
    int64_t last_progress_ms;
} run_state;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ---- command line ---------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ringcast-replay --brokers HOST:PORT [options]\n"
            "  --brokers HOST:PORT     Kafka bootstrap list (required)\n"
            "  --topic T               dead-letter topic (default " DEFAULT_TOPIC ")\n"
            "  --consumer-group ID     Kafka consumer group (default " DEFAULT_GROUP ")\n"
            "  --server HOST:PORT      ringcastd TCP address (default " DEFAULT_SERVER ")\n"
            "  --admin-token TOKEN     admin token (or env " TOKEN_ENV ")\n"
            "  --user NAME             session user (default " DEFAULT_USER ")\n"
            "filters:\n"
            "  --reason R[,R...]       only these reasons (repeatable)\n"
            "  --group G               only this group\n"
            "  --since MS, --until MS  only records with since <= ts <= until (unix ms)\n"
            "  --from-offset N         start every partition at offset N\n"
            "  --limit N               replay at most N records\n"
            "run:\n"
            "  --dry-run               print what would be replayed; send and commit nothing\n"
            "  --rate R                at most R records per second\n"
            "  --idle-ms M             stop when no record came for M ms (default %d)\n"
            "Exit: 0 no replay failed, 1 some failed, 2 bad usage or server/broker unreachable.\n",
            DEFAULT_IDLE_MS);
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    uint64_t p;
    if (!colon || colon == s || (size_t)(colon - s) >= hostlen || parse_u64(colon + 1, &p) != 0 || p == 0 ||
        p > 65535)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    *port = (uint16_t)p;
    return 0;
}

/* Splits a comma list into o->reasons (the list stays in argv). */
static int add_reasons(options *o, char *list)
{
    for (char *save = NULL, *r = strtok_r(list, ",", &save); r; r = strtok_r(NULL, ",", &save)) {
        if (o->n_reasons == MAX_REASONS)
            return -1;
        o->reasons[o->n_reasons++] = r;
    }
    return 0;
}

static int bad_value(const char *flag, const char *v)
{
    fprintf(stderr, "ringcast-replay: bad value for %s: '%s' (see --help)\n", flag, v);
    return -1;
}

/* 0 to run, 1 after --help, -1 on a bad command line (message printed). */
static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){ .topic = DEFAULT_TOPIC, .cgroup = DEFAULT_GROUP, .server = DEFAULT_SERVER,
                    .user = DEFAULT_USER, .from_offset = -1, .idle_ms = DEFAULT_IDLE_MS };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(a, "--dry-run") == 0) {
            o->dry_run = true;
            continue;
        }
        if (i + 1 >= argc || strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "ringcast-replay: %s %s (see --help)\n", a,
                    strncmp(a, "--", 2) == 0 ? "needs a value" : "is not an option");
            return -1;
        }
        char *v = argv[++i];
        uint64_t n;
        if (strcmp(a, "--brokers") == 0 && *v)
            o->brokers = v;
        else if (strcmp(a, "--topic") == 0 && *v)
            o->topic = v;
        else if (strcmp(a, "--consumer-group") == 0 && *v)
            o->cgroup = v;
        else if (strcmp(a, "--server") == 0)
            o->server = v;
        else if (strcmp(a, "--admin-token") == 0)
            o->token = v;
        else if (strcmp(a, "--user") == 0 && *v && strlen(v) <= RC_MAX_USER)
            o->user = v;
        else if (strcmp(a, "--reason") == 0) {
            if (add_reasons(o, v) != 0)
                return bad_value(a, v);
        } else if (strcmp(a, "--group") == 0 && *v)
            o->group = v;
        else if (strcmp(a, "--since") == 0 && parse_u64(v, &o->since) == 0)
            o->has_since = true;
        else if (strcmp(a, "--until") == 0 && parse_u64(v, &o->until) == 0)
            o->has_until = true;
        else if (strcmp(a, "--from-offset") == 0 && parse_u64(v, &n) == 0 && n <= INT64_MAX)
            o->from_offset = (int64_t)n;
        else if (strcmp(a, "--limit") == 0 && parse_u64(v, &n) == 0 && n > 0)
            o->limit = n;
        else if (strcmp(a, "--rate") == 0 && (o->rate = strtod(v, NULL)) > 0)
            ;
        else if (strcmp(a, "--idle-ms") == 0 && parse_u64(v, &n) == 0 && n > 0 && n <= INT32_MAX)
            o->idle_ms = (int)n;
        else
            return bad_value(a, v);
    }
    if (!o->brokers) {
        fprintf(stderr, "ringcast-replay: --brokers HOST:PORT is required (see --help)\n");
        return -1;
    }
    if (parse_hostport(o->server, o->host, sizeof(o->host), &o->port) != 0)
        return bad_value("--server", o->server);
    if (!o->token)
        o->token = getenv(TOKEN_ENV);
    if (!o->dry_run && (!o->token || !*o->token)) {
        fprintf(stderr, "ringcast-replay: an admin token is required: --admin-token TOKEN or %s\n", TOKEN_ENV);
        return -1;
    }
    return 0;
}

/* ---- record decoding ------------------------------------------------- */

static bool obj_str(const msgpack_object *v, rc_str *out, uint32_t lo, uint32_t hi)
{
    if (v->type != MSGPACK_OBJECT_STR || v->via.str.size < lo || v->via.str.size > hi)
        return false;
    *out = (rc_str){ v->via.str.ptr, v->via.str.size };
    return true;
}

static bool key_is(const msgpack_object *k, const char *name)
{
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && memcmp(k->via.str.ptr, name, n) == 0;
}

/* Reads one field of the map into l; unknown keys are ignored. Sets *seen's
 * bit for required fields. false with *why on a bad value. */
enum { SEEN_V = 1, SEEN_REASON = 2, SEEN_G = 4, SEEN_FROM = 8, SEEN_TS = 16, SEEN_BODY = 32, SEEN_ALL = 63 };

static bool decode_field(const msgpack_object *k, const msgpack_object *v, letter *l, unsigned *seen,
                         const char **why)
{
    if (key_is(k, "v")) {
        *seen |= SEEN_V;
        if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 != RECORD_VERSION)
            return *why = "unsupported record version (v)", false;
    } else if (key_is(k, "reason")) {
        *seen |= SEEN_REASON;
        if (!obj_str(v, &l->reason, 1, REASON_TEXT - 1))
            return *why = "bad reason", false;
    } else if (key_is(k, "g")) {
        *seen |= SEEN_G;
        if (!obj_str(v, &l->g, 1, RC_MAX_GROUP))
            return *why = "bad g", false;
    } else if (key_is(k, "from")) {
        *seen |= SEEN_FROM;
        if (!obj_str(v, &l->from, 1, RC_MAX_USER))
            return *why = "bad from", false;
    } else if (key_is(k, "to")) {
        if (!obj_str(v, &l->to, 1, RC_MAX_USER))
            return *why = "bad to", false;
    } else if (key_is(k, "mid")) {
        if (!obj_str(v, &l->mid, 1, RC_MAX_MID))
            return *why = "bad mid", false;
    } else if (key_is(k, "seq")) {
        if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return *why = "bad seq", false;
        l->has_seq = true;
        l->seq = v->via.u64;
    } else if (key_is(k, "ts")) {
        *seen |= SEEN_TS;
        if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return *why = "bad ts", false;
        l->ts = v->via.u64;
    } else if (key_is(k, "body")) {
        *seen |= SEEN_BODY;
        if (v->type == MSGPACK_OBJECT_STR)
            l->body = (rc_str){ v->via.str.ptr, v->via.str.size }, l->body_is_str = true;
        else if (v->type == MSGPACK_OBJECT_BIN)
            l->body = (rc_str){ v->via.bin.ptr, v->via.bin.size }, l->body_is_str = false;
        else
            return *why = "bad body", false;
    }
    return true;
}

/* Decodes a record value. The rc_str fields point into buf or into up's
 * zone; both must outlive l. false with *why when it is not a letter. */
static bool decode_letter(msgpack_unpacked *up, const void *buf, size_t len, letter *l, const char **why)
{
    size_t off = 0;
    *l = (letter){ 0 };
    if (!buf || len == 0)
        return *why = "empty value", false;
    if (msgpack_unpack_next(up, buf, len, &off) != MSGPACK_UNPACK_SUCCESS)
        return *why = "not MessagePack", false;
    if (off != len)
        return *why = "trailing bytes after the map", false;
    const msgpack_object *o = &up->data;
    if (o->type != MSGPACK_OBJECT_MAP)
        return *why = "not a map", false;
    unsigned seen = 0;
    for (uint32_t i = 0; i < o->via.map.size; i++)
        if (!decode_field(&o->via.map.ptr[i].key, &o->via.map.ptr[i].val, l, &seen, why))
            return false;
    if (seen != SEEN_ALL) {
        *why = !(seen & SEEN_V) ? "missing v" : !(seen & SEEN_REASON) ? "missing reason" : !(seen & SEEN_G) ? "missing g"
             : !(seen & SEEN_FROM) ? "missing from" : !(seen & SEEN_TS) ? "missing ts" : "missing body";
        return false;
    }
    return true;
}

/* ---- filters and counting -------------------------------------------- */

static bool matches(const options *o, const letter *l)
{
    if (o->n_reasons) {
        bool any = false;
        for (int i = 0; i < o->n_reasons && !any; i++)
            any = rc_str_eq(l->reason, rc_str_c(o->reasons[i]));
        if (!any)
            return false;
    }
    if (o->group && !rc_str_eq(l->g, rc_str_c(o->group)))
        return false;
    if (o->has_since && l->ts < o->since)
        return false;
    if (o->has_until && l->ts > o->until)
        return false;
    return true;
}

static void count_reason(counters *c, rc_str reason)
{
    for (int i = 0; i < c->n_by_reason; i++)
        if (rc_str_eq(reason, rc_str_c(c->by_reason[i].name))) {
            c->by_reason[i].n++;
            return;
        }
    if (c->n_by_reason == (int)(sizeof(c->by_reason) / sizeof(c->by_reason[0])))
        return; /* absurdly many distinct reasons: the summary shows the first ones */
    reason_count *r = &c->by_reason[c->n_by_reason++];
    snprintf(r->name, sizeof(r->name), "%.*s", (int)reason.len, reason.ptr);
    r->n = 1;
}

static bool partition_blocked(const run_state *st, int32_t p)
{
    for (int i = 0; i < st->n_blocked; i++)
        if (st->blocked[i] == p)
            return true;
    return false;
}

static void block_partition(run_state *st, int32_t p)
{
    if (!partition_blocked(st, p) && st->n_blocked < MAX_BLOCKED)
        st->blocked[st->n_blocked++] = p;
}

static void clear_progress(run_state *st)
{
    if (st->progress && st->last_progress_ms)
        fputs("\r\033[K", stderr);
}

static void show_progress(run_state *st, bool force)
{
    int64_t t = (int64_t)rc_clock_mono_ms();
    if (!st->progress || (!force && t - st->last_progress_ms < PROGRESS_MS))
        return;
    st->last_progress_ms = t;
    const counters *c = &st->c;
    fprintf(stderr,
            "\r\033[Kreplay: read=%" PRIu64 " matched=%" PRIu64 " replayed=%" PRIu64 " failed=%" PRIu64
            " undecodable=%" PRIu64,
            c->read, c->matched, c->replayed, c->failed, c->undecodable);
}

/* Prints a line to stderr without tearing the progress line. */
static void report(run_state *st, const char *fmt, ...)
{
    va_list ap;
    clear_progress(st);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    st->last_progress_ms = 0;
}

/* ---- rate limit ------------------------------------------------------ */

/* Token bucket: waits until one token is available, then takes it. */
static void rate_wait(run_state *st)
{
    double rate = st->o->rate, depth = rate * RATE_BURST_S < 1 ? 1 : rate * RATE_BURST_S;
    if (rate <= 0)
        return;
    for (;;) {
        int64_t t = (int64_t)rc_clock_mono_ms();
        st->tokens += (double)(t - st->last_refill_ms) * rate / 1000.0;
        if (st->tokens > depth)
            st->tokens = depth;
        st->last_refill_ms = t;
        if (st->tokens >= 1 || stop_requested) {
            st->tokens -= 1;
            return;
        }
        sleep_ms((int64_t)((1 - st->tokens) * 1000.0 / rate) + 1);
    }
}

/* ---- server session -------------------------------------------------- */

/* Connects and says hello with the admin token. 0, or -1 (message printed). */
static int server_open(run_state *st)
{
    const options *o = st->o;
    rc_msg m = { .type = RC_T_HELLO, .has = RC_HAS_RID | RC_HAS_TOKEN, .user = rc_str_c(o->user),
                 .token = rc_str_c(o->token) }, r;
    if (rc_client_connect(&st->cl, o->host, o->port, SERVER_TIMEOUT_MS) != 0) {
        fprintf(stderr, "ringcast-replay: cannot reach the server at %s: %s\n", o->server, st->cl.err);
        rc_client_close(&st->cl);
        return -1;
    }
    m.rid = ++st->cl.next_rid;
    int w = rc_client_send(&st->cl, &m) == 0 ? rc_client_wait(&st->cl, RC_T_WELCOME, m.rid, &r, SERVER_TIMEOUT_MS) : -1;
    if (w == 1 && r.type == RC_T_WELCOME) {
        st->cl.max_frame = (uint32_t)r.max_frame;
        st->cl.sid = r.sid;
        st->connected = true;
        return 0;
    }
    if (w == 1)
        fprintf(stderr, "ringcast-replay: the server refused the admin session (%s: %.*s); check --admin-token\n",
                rc_err_name(r.code), (int)r.text.len, r.text.ptr);
    else
        fprintf(stderr, "ringcast-replay: no welcome from %s: %s\n", o->server, w == 0 ? "timeout" : st->cl.err);
    rc_client_close(&st->cl);
    return -1;
}

typedef enum replay_result { REPLAY_ACK, REPLAY_ERR, REPLAY_FATAL } replay_result;

/* Sends one letter as `replay` and waits for its ack. On REPLAY_ERR and
 * REPLAY_FATAL the cause has been reported. */
static replay_result replay_one(run_state *st, const rd_kafka_message_t *km, const letter *l, bool *dup)
{
    rc_msg m = { .type = RC_T_REPLAY, .has = RC_HAS_RID, .g = l->g, .from = l->from, .ts = l->ts,
                 .body = l->body, .body_is_str = l->body_is_str, .reason = l->reason }, r;
    if (l->has_seq)
        m.has |= RC_HAS_SEQ, m.seq = l->seq;
    if (l->to.len)
        m.has |= RC_HAS_TO, m.to = l->to;
    if (l->mid.len)
        m.has |= RC_HAS_MID, m.mid = l->mid;
    m.rid = ++st->cl.next_rid;
    int w = rc_client_send(&st->cl, &m) == 0 ? rc_client_wait(&st->cl, RC_T_ACK, m.rid, &r, REPLAY_TIMEOUT_MS) : -1;
    if (w == 1 && r.type == RC_T_ACK) {
        *dup = (r.has & RC_HAS_DUP) && r.dup;
        return REPLAY_ACK;
    }
    if (w == 1) {
        report(st, "ringcast-replay: partition %" PRId32 " offset %" PRId64 " failed: %s: %.*s\n", km->partition,
               km->offset, rc_err_name(r.code), (int)r.text.len, r.text.ptr);
        if (r.code == RC_E_FORBIDDEN || r.code == RC_E_NOT_AUTHENTICATED || r.code == RC_E_AUTH_FAILED) {
            report(st, "ringcast-replay: the server does not accept replay from this session; check --admin-token\n");
            return REPLAY_FATAL;
        }
        return REPLAY_ERR;
    }
    report(st, "ringcast-replay: partition %" PRId32 " offset %" PRId64 " failed: %s\n", km->partition, km->offset,
           w == 0 ? "no ack (timeout)" : st->cl.err);
    return REPLAY_FATAL; /* the session is unusable: stop the run */
}

/* ---- Kafka ----------------------------------------------------------- */

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[ERRSTR];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "ringcast-replay: kafka config %s=%s: %s\n", k, v, err);
        return -1;
    }
    return 0;
}

/* Checks that the brokers answer and carry the topic; sets *partitions.
 * 0 or -1 (printed). */
static int check_topic(run_state *st, int *partitions)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(st->rk, 1, NULL, &md, METADATA_TIMEOUT_MS);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "ringcast-replay: cannot reach the brokers at %s: %s\n", st->o->brokers, rd_kafka_err2str(e));
        return -1;
    }
    bool found = false;
    for (int i = 0; i < md->topic_cnt && !found; i++)
        if (strcmp(md->topics[i].topic, st->o->topic) == 0 && md->topics[i].err == 0) {
            found = true;
            *partitions = md->topics[i].partition_cnt;
        }
    rd_kafka_metadata_destroy(md);
    if (!found)
        fprintf(stderr, "ringcast-replay: topic %s does not exist on %s\n", st->o->topic, st->o->brokers);
    return found ? 0 : -1;
}

static int consumer_open(run_state *st)
{
    const options *o = st->o;
    char err[ERRSTR];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf_set(conf, "bootstrap.servers", o->brokers) || conf_set(conf, "group.id", o->cgroup) ||
        conf_set(conf, "enable.auto.commit", "false") || conf_set(conf, "enable.auto.offset.store", "false") ||
        conf_set(conf, "auto.offset.reset", "earliest")) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    st->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!st->rk) {
        fprintf(stderr, "ringcast-replay: cannot create the consumer: %s\n", err);
        rd_kafka_conf_destroy(conf); /* rd_kafka_new takes conf only on success */
        return -1;
    }
    rd_kafka_poll_set_consumer(st->rk);
    int partitions = 0;
    if (check_topic(st, &partitions) != 0)
        return -1;
    /* Every partition, from the group's committed offset (INVALID: stored
     * offset, else auto.offset.reset) or from --from-offset. */
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(partitions);
    for (int32_t p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(parts, o->topic, p)->offset =
            o->from_offset >= 0 ? o->from_offset : RD_KAFKA_OFFSET_INVALID;
    rd_kafka_resp_err_t e = rd_kafka_assign(st->rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (e) {
        fprintf(stderr, "ringcast-replay: cannot assign the partitions of %s: %s\n", o->topic, rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

/* ---- the run --------------------------------------------------------- */

static void print_dry(run_state *st, const rd_kafka_message_t *km, const letter *l)
{
    clear_progress(st);
    printf("would replay partition=%" PRId32 " offset=%" PRId64 " reason=%.*s g=%.*s", km->partition, km->offset,
           (int)l->reason.len, l->reason.ptr, (int)l->g.len, l->g.ptr);
    if (l->has_seq)
        printf(" seq=%" PRIu64, l->seq);
    printf(" from=%.*s", (int)l->from.len, l->from.ptr);
    if (l->to.len)
        printf(" to=%.*s", (int)l->to.len, l->to.ptr);
    printf(" ts=%" PRIu64, l->ts);
    if (l->mid.len)
        printf(" mid=%.*s", (int)l->mid.len, l->mid.ptr);
    printf(" bytes=%" PRIu32 "\n", l->body.len);
    st->last_progress_ms = 0;
}

/* Handles one record. false to stop the run (fatal server error). */
static bool handle_record(run_state *st, const rd_kafka_message_t *km)
{
    counters *c = &st->c;
    msgpack_unpacked up;
    letter l;
    const char *why = NULL;
    bool go_on = true;

    c->read++;
    msgpack_unpacked_init(&up);
    if (!decode_letter(&up, km->payload, km->len, &l, &why)) {
        c->undecodable++;
        report(st, "ringcast-replay: partition %" PRId32 " offset %" PRId64 " undecodable: %s (skipped)\n",
               km->partition, km->offset, why);
    } else if (!matches(st->o, &l)) {
        c->skipped++;
    } else {
        c->matched++;
        count_reason(c, l.reason);
        if (st->o->dry_run) {
            print_dry(st, km, &l);
        } else {
            bool dup = false;
            rate_wait(st);
            replay_result rr = replay_one(st, km, &l, &dup);
            if (rr == REPLAY_ACK) {
                c->replayed++;
                c->dup += dup;
                if (!partition_blocked(st, km->partition)) {
                    rd_kafka_resp_err_t e = rd_kafka_commit_message(st->rk, km, 0);
                    if (e) {
                        c->failed++;
                        report(st, "ringcast-replay: partition %" PRId32 " offset %" PRId64
                                   " replayed but not committed: %s\n", km->partition, km->offset, rd_kafka_err2str(e));
                    }
                }
            } else {
                c->failed++;
                block_partition(st, km->partition);
                go_on = rr != REPLAY_FATAL;
            }
        }
    }
    msgpack_unpacked_destroy(&up);
    return go_on;
}

/* Polls until idle, limit, signal or a fatal error: 0, or 1 after a fatal
 * replay error. */
static int consume(run_state *st)
{
    const options *o = st->o;
    int64_t last = (int64_t)rc_clock_mono_ms();
    while (!stop_requested) {
        if (o->limit && st->c.matched >= o->limit)
            break;
        if ((int64_t)rc_clock_mono_ms() - last >= o->idle_ms)
            break;
        rd_kafka_message_t *km = rd_kafka_consumer_poll(st->rk, POLL_MS);
        show_progress(st, false);
        if (!km)
            continue;
        if (km->err) {
            if (km->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                report(st, "ringcast-replay: consumer: %s\n", rd_kafka_message_errstr(km));
            rd_kafka_message_destroy(km);
            continue;
        }
        last = (int64_t)rc_clock_mono_ms();
        bool go_on = handle_record(st, km);
        rd_kafka_message_destroy(km);
        if (!go_on)
            return 1;
    }
    return 0;
}

static void print_summary(run_state *st)
{
    const counters *c = &st->c;
    clear_progress(st);
    if (st->o->dry_run) {
        printf("dry-run: by reason:");
        for (int i = 0; i < c->n_by_reason; i++)
            printf(" %s=%" PRIu64, c->by_reason[i].name, c->by_reason[i].n);
        printf("%s\n", c->n_by_reason ? "" : " none");
    }
    printf("replay: read=%" PRIu64 " matched=%" PRIu64 " replayed=%" PRIu64 " dup=%" PRIu64 " skipped=%" PRIu64
           " failed=%" PRIu64 " undecodable=%" PRIu64 "\n",
           c->read, c->matched, c->replayed, c->dup, c->skipped, c->failed, c->undecodable);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    options o;
    int pr = parse_args(argc, argv, &o);
    if (pr != 0)
        return pr > 0 ? EXIT_OK : EXIT_UNAVAILABLE;

    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    run_state *st = calloc(1, sizeof(*st));
    if (!st) {
        fprintf(stderr, "ringcast-replay: out of memory\n");
        return EXIT_UNAVAILABLE;
    }
    st->o = &o;
    st->cl.fd = -1;
    st->progress = isatty(STDERR_FILENO);
    st->last_refill_ms = (int64_t)rc_clock_mono_ms();

    int rc = EXIT_UNAVAILABLE;
    if ((o.dry_run || server_open(st) == 0) && consumer_open(st) == 0) {
        int cr = consume(st);
        print_summary(st);
        if (cr > 0 && st->c.failed && !st->c.replayed)
            rc = EXIT_UNAVAILABLE; /* refused or lost before anything went through */
        else
            rc = st->c.failed ? EXIT_FAILED : EXIT_OK;
    }
    if (st->rk) {
        rd_kafka_consumer_close(st->rk);
        rd_kafka_destroy(st->rk);
    }
    if (st->connected)
        rc_client_close(&st->cl);
    free(st);
    return rc;
}
