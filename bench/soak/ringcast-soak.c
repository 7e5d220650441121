/*
 * ringcast-soak: the main thread. Parses the options, opens the chat
 * connections (SETUP), starts the slow consumers, churn and bad clients
 * (RUN), samples the server every --sample seconds into the CSV and a
 * progress line, then stops the senders (STOP), audits every steady group's
 * last seq with a fresh session, waits for every reader to reach it
 * (DRAIN), and prints the summary and the verdict (DONE). soak.h says what
 * each thread does and how they share counters.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <ringcast/client.h>

#include "soak.h"

#define SETUP_TIMEOUT_S 60.0
#define ACK_WAIT_S 30.0               /* STOP: wait this long for the publishers' last acks */
#define DRAIN_WAIT_S 10.0             /* DRAIN: readers reach the audit within this ... */
#define DRAIN_MAX_S 60.0              /* ... extended while they progress, up to this */
#define POLL_MS 100
#define MAX_SAMPLES 200000u
#define MAX_DURATION_S 86400.0
#define MIN_RATE_S 1.0                /* rates are not computed over a shorter sample interval */
#define FLOOR_WINDOW_S 300.0          /* RSS floor: the lowest sample of each such window */

int g_soak_phase;
static int g_interrupted;

bool soak_interrupted(void) { return LOAD(g_interrupted); }
static void on_signal(int sig) { (void)sig; STORE(g_interrupted, 1); }

uint64_t soak_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void soak_sleep_ms(uint32_t ms)
{
    struct timespec ts = { ms / 1000u, (long)(ms % 1000u) * 1000000L };
    nanosleep(&ts, NULL);
}

void soak_codes_bump(soak_codes *c, rc_err e)
{
    BUMP(c->n[e > RC_OK && e < RC_E_COUNT ? e : RC_OK], 1);
}

const char *soak_codes_str(const soak_codes *c, char *buf, size_t n)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int e = 0; e < RC_E_COUNT; e++) {
        uint64_t v = LOAD(c->n[e]);
        if (v && at < n)
            at += (size_t)snprintf(buf + at, n - at, "%s%s=%llu", at ? "," : "",
                                   e == RC_OK ? "unknown" : rc_err_name((rc_err)e), (unsigned long long)v);
    }
    return at ? buf : "none";
}

const char *soak_name(char *buf, const char *prefix, uint32_t n)
{
    snprintf(buf, SOAK_NAME_MAX, "%s%u", prefix, n);
    return buf;
}

uint32_t soak_parse_name(const char *s, size_t len, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (len <= pl || len > pl + 9 || memcmp(s, prefix, pl) != 0)
        return UINT32_MAX;
    uint32_t v = 0;
    for (size_t i = pl; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return UINT32_MAX;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    return v;
}

/* This process's user + system CPU, seconds (all threads). */
static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void set_phase(soak_phase p)
{
    STORE_REL(g_soak_phase, (int)p);
}

/* ---- options ---- */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: ringcast-soak --server-pid PID [options]\n"
        "A long mixed load against a running ringcastd on 127.0.0.1 (bench/README.md, Soak).\n"
        "  --port N            ringcastd TCP port (7400)\n"
        "  --admin-port N      its admin port for /metrics (7481; 0: none)\n"
        "  --server-pid PID    ringcastd's pid: RSS, fds, CPU from /proc (required)\n"
        "  --broker-pid PID    the dead-letter broker's pid, sampled too\n"
        "  --duration S        seconds of load (1800; at most 86400)\n"
        "  --sample S          sampling period (10)\n"
        "  --idle S            after the drain, sample S more seconds with no load (60)\n"
        "  --csv FILE          one row per sample\n"
        "  --seed N            (1)\n"
        "chat:  --groups 200 --hot 40 --hot-share 0.5 --members 10 --readers 100\n"
        "       --publishers 4 --rate 2000 (msgs/s) --body 200 (bytes) --window 1000\n"
        "slow consumers:  --slow 4 --slow-groups 100 --slow-stall 90 (s) --slow-read-bps 65536\n"
        "churn:  --churn-rate 20 (sessions/s) --churn-users 200\n"
        "bad clients:  --bad-rate 5 (cases/s) --hang-max 32\n"
        "       --hello-timeout 10 --idle-timeout 300 (s: the server's hello_timeout_ms and\n"
        "       idle_timeout_ms, by which it must close a hanging connection)\n"
        "Exit status: 0 clean, 1 usage or setup failed, 3 a fault (loss, disorder, a bad\n"
        "client unanswered, the server gone), 130 interrupted.\n");
}

static int num(const char *s, const char *flag, double lo, double hi, double *v)
{
    char *end;
    double d = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || !(d >= lo && d <= hi)) {
        fprintf(stderr, "ringcast-soak: %s must be a number in %g..%g\n", flag, lo, hi);
        return -1;
    }
    *v = d;
    return 0;
}

static int u32(const char *s, const char *flag, double lo, double hi, uint32_t *v)
{
    double d;
    if (num(s, flag, lo, hi, &d) < 0 || d != floor(d))
        return -1;
    *v = (uint32_t)d;
    return 0;
}

static void defaults(soak_options *o)
{
    *o = (soak_options){
        .port = 7400, .admin_port = 7481, .duration_s = 1800, .sample_s = 10, .idle_s = 60, .seed = 1,
        .groups = 200, .hot = 40, .hot_share = 0.5, .members = 10, .readers = 100, .publishers = 4,
        .rate = 2000, .body = 200, .window = 1000,
        .slow = 4, .slow_groups = 100, .slow_stall_s = 90, .slow_read_bps = 65536,
        .churn_rate = 20, .churn_users = 200,
        .bad_rate = 5, .hang_max = 32, .hello_timeout_s = 10, .idle_timeout_s = 300,
    };
}

static int check_options(const soak_options *o)
{
    const char *why = NULL;
    if (o->server_pid <= 0)
        why = "--server-pid is required";
    else if (o->hot > o->groups)
        why = "--hot must not exceed --groups";
    else if (o->members > o->readers)
        why = "--members must not exceed --readers (each member of a group is another connection)";
    else if ((uint64_t)o->groups * o->members / o->readers >= 1024)
        why = "each reader would join 1024 groups or more (max_groups_per_session)";
    else if (o->groups / o->publishers >= 1024)
        why = "each publisher would join 1024 groups or more: add --publishers";
    else if (o->slow_groups > o->groups)
        why = "--slow-groups must not exceed --groups";
    if (why)
        fprintf(stderr, "ringcast-soak: %s\n", why);
    return why ? -1 : 0;
}

static int parse_options(int argc, char **argv, soak_options *o)
{
    enum { O_PORT = 256, O_ADMIN, O_PID, O_BROKER, O_DUR, O_SAMPLE, O_CSV, O_SEED, O_GROUPS, O_HOT,
           O_HOTSHARE, O_MEMBERS, O_READERS, O_PUBS, O_RATE, O_BODY, O_WINDOW, O_SLOW, O_SLOWG,
           O_STALL, O_BPS, O_CHURN, O_CHURNU, O_BAD, O_HANGMAX, O_HELLO_TO, O_IDLE_TO, O_IDLE, O_HELP };
    static const struct option opts[] = {
        { "port", 1, 0, O_PORT }, { "admin-port", 1, 0, O_ADMIN }, { "server-pid", 1, 0, O_PID },
        { "broker-pid", 1, 0, O_BROKER }, { "duration", 1, 0, O_DUR }, { "sample", 1, 0, O_SAMPLE },
        { "csv", 1, 0, O_CSV }, { "seed", 1, 0, O_SEED }, { "groups", 1, 0, O_GROUPS },
        { "hot", 1, 0, O_HOT }, { "hot-share", 1, 0, O_HOTSHARE }, { "members", 1, 0, O_MEMBERS },
        { "readers", 1, 0, O_READERS }, { "publishers", 1, 0, O_PUBS }, { "rate", 1, 0, O_RATE },
        { "body", 1, 0, O_BODY }, { "window", 1, 0, O_WINDOW }, { "slow", 1, 0, O_SLOW },
        { "slow-groups", 1, 0, O_SLOWG }, { "slow-stall", 1, 0, O_STALL },
        { "slow-read-bps", 1, 0, O_BPS }, { "churn-rate", 1, 0, O_CHURN },
        { "churn-users", 1, 0, O_CHURNU }, { "bad-rate", 1, 0, O_BAD }, { "hang-max", 1, 0, O_HANGMAX },
        { "hello-timeout", 1, 0, O_HELLO_TO }, { "idle-timeout", 1, 0, O_IDLE_TO }, { "idle", 1, 0, O_IDLE }, { "help", 0, 0, O_HELP }, { 0, 0, 0, 0 },
    };
    defaults(o);
    int c;
    uint32_t v;
    double d;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case O_PORT: rc = u32(optarg, "--port", 1, 65535, &v); o->port = (uint16_t)v; break;
        case O_ADMIN: rc = u32(optarg, "--admin-port", 0, 65535, &v); o->admin_port = (uint16_t)v; break;
        case O_PID: rc = num(optarg, "--server-pid", 1, 4194304, &d); o->server_pid = (long)d; break;
        case O_BROKER: rc = num(optarg, "--broker-pid", 0, 4194304, &d); o->broker_pid = (long)d; break;
        case O_DUR: rc = num(optarg, "--duration", 1, MAX_DURATION_S, &o->duration_s); break;
        case O_SAMPLE: rc = num(optarg, "--sample", 1, 600, &o->sample_s); break;
        case O_CSV: o->csv = optarg; break;
        case O_SEED: rc = num(optarg, "--seed", 0, 1e15, &d); o->seed = (uint64_t)d; break;
        case O_GROUPS: rc = u32(optarg, "--groups", 1, 100000, &o->groups); break;
        case O_HOT: rc = u32(optarg, "--hot", 0, 100000, &o->hot); break;
        case O_HOTSHARE: rc = num(optarg, "--hot-share", 0, 1, &o->hot_share); break;
        case O_MEMBERS: rc = u32(optarg, "--members", 1, 1000, &o->members); break;
        case O_READERS: rc = u32(optarg, "--readers", 1, 5000, &o->readers); break;
        case O_PUBS: rc = u32(optarg, "--publishers", 1, 64, &o->publishers); break;
        case O_RATE: rc = num(optarg, "--rate", 0, 100000, &o->rate); break;
        case O_BODY: rc = u32(optarg, "--body", SOAK_BODY_MIN, SOAK_BODY_MAX, &o->body); break;
        case O_WINDOW: rc = u32(optarg, "--window", 1, 100000, &o->window); break;
        case O_SLOW: rc = u32(optarg, "--slow", 0, 64, &o->slow); break;
        case O_SLOWG: rc = u32(optarg, "--slow-groups", 1, 1000, &o->slow_groups); break;
        case O_STALL: rc = num(optarg, "--slow-stall", 1, 600, &o->slow_stall_s); break;
        case O_BPS: rc = u32(optarg, "--slow-read-bps", 1024, 1e9, &o->slow_read_bps); break;
        case O_CHURN: rc = num(optarg, "--churn-rate", 0, 1000, &o->churn_rate); break;
        case O_CHURNU: rc = u32(optarg, "--churn-users", 1, 100000, &o->churn_users); break;
        case O_BAD: rc = num(optarg, "--bad-rate", 0, 1000, &o->bad_rate); break;
        case O_HANGMAX: rc = u32(optarg, "--hang-max", 0, 256, &o->hang_max); break;
        case O_HELLO_TO: rc = num(optarg, "--hello-timeout", 1, 3600, &o->hello_timeout_s); break;
        case O_IDLE_TO: rc = num(optarg, "--idle-timeout", 1, 86400, &o->idle_timeout_s); break;
        case O_IDLE: rc = num(optarg, "--idle", 0, 3600, &o->idle_s); break;
        case O_HELP: usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
        if (rc < 0)
            return -1;
    }
    if (optind < argc) {
        usage(stderr);
        return -1;
    }
    if (o->hot == 0)
        o->hot_share = 0;
    return check_options(o);
}

/* ---- sampling ---- */

typedef struct run {
    const soak_options *o;
    FILE *csv;
    soak_chat *chat;
    soak_slow *slow;
    soak_churn *churn;
    soak_bad *bad;
    uint64_t t0_ns;          /* load start */
    soak_sample *samples;    /* during the load */
    double *sample_t;        /* their times, s from t0 */
    uint32_t n_samples;
    soak_sample first, last, after, idle;
    double prev_cpu_s, prev_t;
    double prev_gen_cpu_s;
    double gen_cpu_load_s;   /* our CPU during the load */
    uint64_t prev_sent, prev_deliv;
    bool server_died;
} run;

static void csv_header(FILE *f)
{
    fprintf(f, "t_s,rss_kb,hwm_kb,rss_anon_kb,rss_file_kb,fds,fd_sockets,fd_files,fd_other,threads,server_cpu_pct,broker_rss_kb,conns_open,sent,acked,deliveries,"
               "msgs_per_s,deliveries_per_s,gaps,dups,reorders,lat_p50_ms,lat_p99_ms,lat_max_ms,slow_marked,"
               "slow_letters,slow_closed,pressure_holds,churn_sessions,bad_cases,hangs_open,server_errors,gen_cpu_pct,phase\n");
}

static void take_sample(run *r, double t, const char *phase)
{
    const soak_options *o = r->o;
    const soak_chat_stats *cs = soak_chat_stats_of(r->chat);
    soak_sample s;
    soak_sample_take(o, &s);
    if (!s.alive) {
        r->server_died = true;
        return;
    }
    double dt = t - r->prev_t >= MIN_RATE_S ? t - r->prev_t : 0; /* no rate over a blink */
    double cpu = dt > 0 ? 100.0 * (s.cpu_s - r->prev_cpu_s) / dt : 0;
    double gen_now = self_cpu_s();
    double gen = dt > 0 ? 100.0 * (gen_now - r->prev_gen_cpu_s) / dt : 0;
    r->prev_gen_cpu_s = gen_now;
    uint64_t sent = LOAD(cs->sent), deliv = LOAD(cs->deliveries);
    double mps = dt > 0 ? (double)(sent - r->prev_sent) / dt : 0;
    double dps = dt > 0 ? (double)(deliv - r->prev_deliv) / dt : 0;
    r->prev_t = t;
    r->prev_cpu_s = s.cpu_s;
    r->prev_sent = sent;
    r->prev_deliv = deliv;
    const soak_churn_stats *ch = r->churn ? soak_churn_stats_of(r->churn) : NULL;
    const soak_bad_stats *bs = r->bad ? soak_bad_stats_of(r->bad) : NULL;
    uint64_t hangs = bs ? LOAD(bs->hang_opened) - LOAD(bs->hang_closed_by_server) - LOAD(bs->hang_open_at_end) : 0;
    double p50 = LOAD(cs->lat_p50_ns) / 1e6, p99 = LOAD(cs->lat_p99_ns) / 1e6, mx = LOAD(cs->lat_max_ns) / 1e6;
    if (r->csv) {
        fprintf(r->csv, "%.1f,%ld,%ld,%ld,%ld,%ld,%ld,%ld,%ld,%ld,%.1f,%ld,%llu,%llu,%llu,%llu,%.0f,%.0f,%llu,%llu,%llu,%.3f,%.3f,%.3f,"
                "%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%.1f,%s\n",
                t, s.rss_kb, s.hwm_kb, s.anon_kb, s.file_kb, s.fds, s.fd_sockets, s.fd_files, s.fd_other,
                s.threads, cpu, s.broker_rss_kb, (unsigned long long)s.conns_open,
                (unsigned long long)sent, (unsigned long long)LOAD(cs->acked), (unsigned long long)deliv, mps, dps,
                (unsigned long long)LOAD(cs->gaps), (unsigned long long)LOAD(cs->dups),
                (unsigned long long)LOAD(cs->reorders), p50, p99, mx, (unsigned long long)s.slow_marked,
                (unsigned long long)s.slow_letters, (unsigned long long)s.slow_closed,
                (unsigned long long)s.pressure_holds, (unsigned long long)(ch ? LOAD(ch->sessions) : 0),
                (unsigned long long)(bs ? LOAD(bs->cases_run) : 0), (unsigned long long)hangs,
                (unsigned long long)s.errors, gen, phase);
        fflush(r->csv);
    }
    fprintf(stderr, "ringcast-soak: t=%.0fs rss=%.1fMB fds=%ld cpu=%.0f%% gen=%.0f%% msgs/s=%.0f deliv/s=%.0f p99=%.1fms "
            "max=%.0fms gaps=%llu slow(marked=%llu letters=%llu closed=%llu) churn=%llu bad=%llu\n",
            t, s.rss_kb / 1024.0, s.fds, cpu, gen, mps, dps, p99, mx, (unsigned long long)LOAD(cs->gaps),
            (unsigned long long)s.slow_marked, (unsigned long long)s.slow_letters, (unsigned long long)s.slow_closed,
            (unsigned long long)(ch ? LOAD(ch->sessions) : 0), (unsigned long long)(bs ? LOAD(bs->cases_run) : 0));
    if (strcmp(phase, "load") == 0 && r->n_samples < MAX_SAMPLES) {
        r->samples[r->n_samples] = s;
        r->sample_t[r->n_samples++] = t;
    }
    r->last = s;
}

/* ---- the phases ---- */

static int wait_ready(run *r)
{
    const soak_options *o = r->o;
    uint64_t deadline = soak_now_ns() + (uint64_t)(SETUP_TIMEOUT_S * 1e9);
    while (LOAD(soak_chat_stats_of(r->chat)->ready) < o->readers + o->publishers) {
        if (soak_now_ns() > deadline || soak_interrupted()) {
            fprintf(stderr, "ringcast-soak: setup: %llu of %u chat connections ready after %.0f s\n",
                    (unsigned long long)LOAD(soak_chat_stats_of(r->chat)->ready), o->readers + o->publishers,
                    SETUP_TIMEOUT_S);
            return -1;
        }
        soak_sleep_ms(POLL_MS);
    }
    return 0;
}

static void run_load(run *r)
{
    const soak_options *o = r->o;
    uint64_t period = (uint64_t)(o->sample_s * 1e9), next = r->t0_ns;
    uint64_t end = r->t0_ns + (uint64_t)(o->duration_s * 1e9);
    for (;;) {
        uint64_t now = soak_now_ns();
        if (now >= next) {
            take_sample(r, (double)(now - r->t0_ns) / 1e9, "load");
            if (r->n_samples == 1)
                r->first = r->samples[0];
            next += period;
        }
        if (now >= end || r->server_died || soak_interrupted())
            break;
        uint64_t wake = next < end ? next : end;
        soak_sleep_ms(wake > now + POLL_MS * 1000000ull ? POLL_MS : (uint32_t)((wake - now) / 1000000u) + 1);
    }
}

/* After the drain: the chat sessions stay, nothing is sent; samples go on
 * for --idle seconds, to see what memory the server gives back. */
static void run_idle(run *r)
{
    uint64_t period = (uint64_t)(r->o->sample_s * 1e9), now = soak_now_ns();
    uint64_t end = now + (uint64_t)(r->o->idle_s * 1e9), next = now + period;
    while (!r->server_died && !soak_interrupted()) {
        now = soak_now_ns();
        if (now >= next && next <= end) {
            take_sample(r, (double)(now - r->t0_ns) / 1e9, "idle");
            next += period;
        }
        if (next > end)
            break;
        soak_sleep_ms(POLL_MS);
    }
}

/* Every steady group's last seq, as a fresh session's joins report it. */
static int audit(const soak_options *o, uint64_t *last)
{
    rc_client c;
    char g[SOAK_NAME_MAX];
    int rc = -1;
    if (rc_client_connect(&c, SOAK_HOST, o->port, SOAK_CONNECT_TIMEOUT_MS) == 0 &&
        rc_client_hello(&c, SOAK_AUDIT_USER, SOAK_IO_TIMEOUT_MS) == 0) {
        rc = 0;
        for (uint32_t i = 0; i < o->groups && rc == 0; i++)
            if (rc_client_join(&c, soak_name(g, SOAK_STEADY_PREFIX, i), SOAK_IO_TIMEOUT_MS, &last[i]) != 0)
                rc = -1;
    }
    if (rc != 0)
        fprintf(stderr, "ringcast-soak: audit failed: %s\n", c.err);
    rc_client_close(&c);
    return rc;
}

/* STOP and DRAIN: senders stop, the last acks arrive, the audit, readers catch up. */
static void stop_and_drain(run *r, uint64_t *audit_seq, uint64_t *behind, uint64_t *missing, uint64_t *unacked,
                           bool *audited)
{
    set_phase(SOAK_STOP);
    if (r->churn)
        soak_churn_join(r->churn);
    if (r->bad)
        soak_bad_join(r->bad);
    if (r->slow)
        soak_slow_join(r->slow);
    uint64_t deadline = soak_now_ns() + (uint64_t)(ACK_WAIT_S * 1e9);
    while ((*unacked = soak_chat_unacked(r->chat)) > 0 && soak_now_ns() < deadline && !soak_interrupted())
        soak_sleep_ms(POLL_MS);
    *audited = audit(r->o, audit_seq) == 0;
    set_phase(SOAK_DRAIN);
    uint64_t start = soak_now_ns(), quiet = start + (uint64_t)(DRAIN_WAIT_S * 1e9);
    uint64_t cap = start + (uint64_t)(DRAIN_MAX_S * 1e9), prev = UINT64_MAX;
    *behind = *missing = 0;
    while (*audited && !soak_interrupted()) {
        *behind = soak_chat_behind(r->chat, audit_seq, missing);
        uint64_t now = soak_now_ns();
        if (*behind == 0 || now >= cap)
            break;
        if (*missing < prev) { /* progress: give it more time */
            prev = *missing;
            quiet = now + (uint64_t)(DRAIN_WAIT_S * 1e9);
        }
        if (now >= quiet)
            break;
        soak_sleep_ms(POLL_MS);
    }
}

/* ---- the summary ---- */

/* Least-squares slope of RSS over the second half of the load, kB per minute. */
static double rss_slope_kb_per_min(const run *r)
{
    uint32_t from = r->n_samples / 2, n = r->n_samples - from;
    if (n < 3)
        return 0;
    double st = 0, sv = 0, stt = 0, stv = 0;
    for (uint32_t i = from; i < r->n_samples; i++) {
        double t = r->sample_t[i] / 60.0, v = (double)r->samples[i].rss_kb;
        st += t; sv += v; stt += t * t; stv += t * v;
    }
    double den = n * stt - st * st;
    return den > 0 ? (n * stv - st * sv) / den : 0;
}

/* The lowest RSS of each FLOOR_WINDOW_S window of the load: the sawtooth of
 * slow consumers' queues filling and being dropped rides on this floor, so a
 * floor that keeps rising is memory that is not given back. */
/* The floor window of a sample at t: the sample at the load's last instant
 * belongs to the window before, not to one of its own. */
static uint32_t floor_window(const run *r, double t)
{
    double last = r->o->duration_s - 1e-3;
    return (uint32_t)((t < last ? t : last) / FLOOR_WINDOW_S);
}

static void print_floors(const run *r)
{
    printf("rss_floor_per_%.0fs_kb=", FLOOR_WINDOW_S);
    const char *sep = "";
    long lo = LONG_MAX;
    for (uint32_t i = 0; i < r->n_samples; i++) {
        lo = r->samples[i].rss_kb < lo ? r->samples[i].rss_kb : lo;
        bool window_ends = i + 1 == r->n_samples || floor_window(r, r->sample_t[i + 1]) != floor_window(r, r->sample_t[i]);
        if (window_ends) {
            printf("%s%ld", sep, lo);
            sep = ",";
            lo = LONG_MAX;
        }
    }
    printf("\n");
}

static void print_resources(const run *r)
{
    long lo = LONG_MAX, hi = 0, flo = LONG_MAX, fhi = 0;
    for (uint32_t i = 0; i < r->n_samples; i++) {
        const soak_sample *s = &r->samples[i];
        lo = s->rss_kb < lo ? s->rss_kb : lo;
        hi = s->rss_kb > hi ? s->rss_kb : hi;
        flo = s->fds < flo ? s->fds : flo;
        fhi = s->fds > fhi ? s->fds : fhi;
    }
    const soak_sample *mid = r->n_samples ? &r->samples[r->n_samples / 2] : &r->first;
    const soak_sample *end = r->n_samples ? &r->samples[r->n_samples - 1] : &r->first;
    printf("# server resources, sampled every %.0f s during the load (%u samples)\n", r->o->sample_s, r->n_samples);
    printf("rss_start_kb=%ld rss_mid_kb=%ld rss_end_kb=%ld rss_after_drain_kb=%ld rss_idle_end_kb=%ld "
           "rss_min_kb=%ld rss_max_kb=%ld rss_peak_hwm_kb=%ld\n", r->first.rss_kb, mid->rss_kb, end->rss_kb,
           r->after.rss_kb, r->idle.rss_kb, lo, hi, r->idle.hwm_kb);
    printf("rss_anon_start_kb=%ld rss_anon_end_kb=%ld rss_file_start_kb=%ld rss_file_end_kb=%ld\n",
           r->first.anon_kb, end->anon_kb, r->first.file_kb, end->file_kb);
    printf("rss_second_half_slope_kb_per_min=%.1f\n", rss_slope_kb_per_min(r));
    print_floors(r);
    printf("fds_start=%ld fds_mid=%ld fds_end=%ld fds_after_drain=%ld fds_idle_end=%ld fds_min=%ld fds_max=%ld\n",
           r->first.fds, mid->fds, end->fds, r->after.fds, r->idle.fds, flo, fhi);
    printf("fds_start_by_kind=sockets:%ld,files:%ld,other:%ld fds_after_drain_by_kind=sockets:%ld,files:%ld,other:%ld\n",
           r->first.fd_sockets, r->first.fd_files, r->first.fd_other, r->after.fd_sockets, r->after.fd_files,
           r->after.fd_other);
    printf("threads_start=%ld threads_end=%ld broker_rss_start_kb=%ld broker_rss_end_kb=%ld\n", r->first.threads,
           end->threads, r->first.broker_rss_kb, end->broker_rss_kb);
    printf("server_cpu_pct=%.1f gen_cpu_pct=%.1f (of one core, over the load)\n",
           100.0 * (end->cpu_s - r->first.cpu_s) / r->o->duration_s, 100.0 * r->gen_cpu_load_s / r->o->duration_s);
    printf("server_cpu_s=%.1f server_errors_total=%llu letters_refused=%llu spool_letters_end=%llu\n",
           r->after.cpu_s, (unsigned long long)r->after.errors, (unsigned long long)r->after.letters_refused,
           (unsigned long long)r->after.spool_letters);
}

static uint64_t print_chat(const run *r, uint64_t behind, uint64_t missing, uint64_t unacked, bool audited)
{
    const soak_chat_stats *c = soak_chat_stats_of(r->chat);
    const rc_hist *h = soak_chat_latency(r->chat);
    char b1[512], b2[512];
    double secs = r->o->duration_s;
    printf("# chat: %u groups (%u busy), %u readers x %u groups, %u publishers at %.0f msgs/s offered\n",
           r->o->groups, r->o->hot, r->o->readers, r->o->groups * r->o->members / r->o->readers,
           r->o->publishers, r->o->rate);
    printf("sent=%llu acked=%llu refused=%s unacked_at_end=%llu behind_dropped=%llu msgs_per_s=%.0f\n",
           (unsigned long long)c->sent, (unsigned long long)c->acked, soak_codes_str(&c->refused, b1, sizeof b1),
           (unsigned long long)unacked, (unsigned long long)c->behind, (double)c->sent / secs);
    printf("deliveries=%llu deliveries_per_s=%.0f echoes=%llu foreign=%llu (churn messages in the chat groups)\n",
           (unsigned long long)c->deliveries, (double)c->deliveries / secs, (unsigned long long)c->echoes,
           (unsigned long long)c->foreign);
    printf("gaps=%llu dups=%llu reorders=%llu early=%llu stray=%llu corrupt=%llu pub_repeats=%llu pub_jumps=%llu "
           "dup_acks=%llu\n", (unsigned long long)c->gaps, (unsigned long long)c->dups,
           (unsigned long long)c->reorders, (unsigned long long)c->early, (unsigned long long)c->stray,
           (unsigned long long)c->corrupt, (unsigned long long)c->pub_repeats, (unsigned long long)c->pub_jumps,
           (unsigned long long)c->dup_acks);
    printf("server_pings_answered=%llu\n", (unsigned long long)c->pings);
    printf("audited=%d streams_behind_audit=%llu missing=%llu lost_conns=%llu byes=%llu bad_server_frames=%llu "
           "other_errs=%s\n", audited, (unsigned long long)behind, (unsigned long long)missing,
           (unsigned long long)c->lost_conns, (unsigned long long)c->byes, (unsigned long long)c->bad_frames,
           soak_codes_str(&c->other_errs, b2, sizeof b2));
    printf("lat_count=%llu lat_p50_ms=%.2f lat_p99_ms=%.2f lat_p999_ms=%.2f lat_max_ms=%.1f\n",
           (unsigned long long)h->total, rc_hist_percentile(h, 50) / 1e6, rc_hist_percentile(h, 99) / 1e6,
           rc_hist_percentile(h, 99.9) / 1e6, h->max / 1e6);
    return c->gaps + c->dups + c->reorders + c->early + c->stray + c->corrupt + c->pub_repeats + c->dup_acks +
           c->lost_conns + c->byes + c->bad_frames + missing + unacked + (audited ? 0 : 1);
}

static uint64_t print_slow(const run *r)
{
    if (!r->slow)
        return 0;
    const soak_slow_stats *s = soak_slow_stats_of(r->slow);
    char b[512];
    printf("# slow consumers: %u, each in groups 0..%u, lag up to %.0f s (stall / trickle at %u B/s)\n",
           r->o->slow, r->o->slow_groups - 1, r->o->slow_stall_s, r->o->slow_read_bps);
    printf("slow_sessions=%llu lag_cycles=%llu stalls=%llu trickles=%llu closed_by_server=%llu byes=%llu "
           "closed_by_us=%llu\n", (unsigned long long)s->connects, (unsigned long long)s->cycles,
           (unsigned long long)s->stalls, (unsigned long long)s->trickles, (unsigned long long)s->closed_by_server,
           (unsigned long long)s->byes, (unsigned long long)s->left_open);
    printf("slow_live=%llu slow_holes=%llu slow_hole_seqs=%llu slow_replayed=%llu resyncs=%llu resync_lost=%llu "
           "lost_to_history_seqs=%llu\n", (unsigned long long)s->deliveries, (unsigned long long)s->holes,
           (unsigned long long)s->hole_seqs, (unsigned long long)s->replayed, (unsigned long long)s->resyncs,
           (unsigned long long)s->resync_lost, (unsigned long long)s->lost_seqs);
    printf("resync_pages=%llu slow_pings_answered=%llu\n", (unsigned long long)s->pages, (unsigned long long)s->pings);
    printf("resync_bad=%llu slow_disorder=%llu slow_corrupt=%llu slow_bad_server_frames=%llu slow_errs=%s\n",
           (unsigned long long)s->resync_bad, (unsigned long long)s->disorder, (unsigned long long)s->corrupt,
           (unsigned long long)s->bad_frames, soak_codes_str(&s->errs, b, sizeof b));
    printf("server_slow_marked=%llu server_slow_letters=%llu server_slow_closed=%llu server_pressure_holds=%llu\n",
           (unsigned long long)r->after.slow_marked, (unsigned long long)r->after.slow_letters,
           (unsigned long long)r->after.slow_closed, (unsigned long long)r->after.pressure_holds);
    return s->resync_bad + s->disorder + s->corrupt + s->bad_frames;
}

static uint64_t print_churn(const run *r)
{
    if (!r->churn)
        return 0;
    const soak_churn_stats *c = soak_churn_stats_of(r->churn);
    char b[512];
    printf("# churn at %.0f sessions/s\n", r->o->churn_rate);
    printf("churn_sessions=%llu churn_completed=%llu churn_sends_acked=%llu churn_hists=%llu churn_leaves=%llu "
           "churn_failures=%llu churn_errs=%s\n", (unsigned long long)c->sessions, (unsigned long long)c->completed,
           (unsigned long long)c->sends_acked, (unsigned long long)c->hists, (unsigned long long)c->leaves,
           (unsigned long long)c->failures, soak_codes_str(&c->errs, b, sizeof b));
    return c->failures;
}

static uint64_t print_bad(const run *r, uint64_t *deviations)
{
    *deviations = 0;
    if (!r->bad)
        return 0;
    const soak_bad_stats *b = soak_bad_stats_of(r->bad);
    char buf[1024];
    uint64_t faults = b->bad_frames;
    printf("# bad clients at %.0f cases/s\n", r->o->bad_rate);
    printf("bad_cases=%llu bad_frames_sent=%llu bad_bytes_sent=%llu hangs=%llu hangs_closed_by_server=%llu "
           "hangs_open_past_timeout=%llu hang_byes=%llu hang_pings=%llu hist_replies=%llu hist_msgs=%llu "
           "since_replayed=%llu\n",
           (unsigned long long)b->cases_run, (unsigned long long)b->frames_sent, (unsigned long long)b->bytes_sent,
           (unsigned long long)b->hang_opened, (unsigned long long)b->hang_closed_by_server,
           (unsigned long long)b->hang_open_at_end, (unsigned long long)b->hang_byes,
           (unsigned long long)b->hang_pings, (unsigned long long)b->hist_replies,
           (unsigned long long)b->hist_msgs, (unsigned long long)b->since_replayed);
    printf("bad_err_codes=%s\n", soak_codes_str(&b->codes, buf, sizeof buf));
    printf("# case runs ok wrong_code no_err closed not_closed timeouts bad_reply | expected "
           "(runs still pending at the end are not judged)\n");
    for (uint32_t i = 0; i < soak_bad_case_count(); i++) {
        const soak_bad_case_stats *c = &b->per_case[i];
        printf("bad_case %s %llu %llu %llu %llu %llu %llu %llu %llu | %s\n", soak_bad_case_name(i),
               (unsigned long long)c->runs, (unsigned long long)c->ok, (unsigned long long)c->wrong_code,
               (unsigned long long)c->no_err, (unsigned long long)c->closed, (unsigned long long)c->not_closed,
               (unsigned long long)c->timeouts, (unsigned long long)c->bad_reply,
               soak_bad_case_expect(i));
        faults += c->no_err + c->not_closed + c->timeouts + c->bad_reply;
        *deviations += c->wrong_code + c->closed;
    }
    return faults;
}

static int summarize(run *r, uint64_t behind, uint64_t missing, uint64_t unacked, bool audited)
{
    uint64_t deviations;
    print_resources(r);
    uint64_t chat = print_chat(r, behind, missing, unacked, audited);
    uint64_t slow = print_slow(r), churn = print_churn(r), bad = print_bad(r, &deviations);
    printf("# verdict\n");
    printf("server_alive=%d chat_faults=%llu slow_faults=%llu churn_faults=%llu bad_client_faults=%llu "
           "contract_deviations=%llu interrupted=%d\n", !r->server_died, (unsigned long long)chat,
           (unsigned long long)slow, (unsigned long long)churn, (unsigned long long)bad,
           (unsigned long long)deviations, soak_interrupted());
    if (soak_interrupted())
        return 130;
    if (r->server_died || chat || slow || churn || bad) {
        fprintf(stderr, "ringcast-soak: FAILED:%s%s%s%s%s\n", r->server_died ? " the server is gone;" : "",
                chat ? " chat loss or disorder;" : "", slow ? " slow-consumer recovery;" : "",
                churn ? " churn sessions failed;" : "", bad ? " bad clients answered wrongly or not at all;" : "");
        return 3;
    }
    return 0;
}

int main(int argc, char **argv)
{
    soak_options o;
    if (parse_options(argc, argv, &o) < 0)
        return 1;
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    run r = { .o = &o };
    r.samples = calloc(MAX_SAMPLES, sizeof *r.samples);
    r.sample_t = calloc(MAX_SAMPLES, sizeof *r.sample_t);
    uint64_t *audit_seq = calloc(o.groups, sizeof *audit_seq);
    if (!r.samples || !r.sample_t || !audit_seq)
        return 1;
    if (o.csv && !(r.csv = fopen(o.csv, "w"))) {
        fprintf(stderr, "ringcast-soak: cannot write %s\n", o.csv);
        return 1;
    }
    if (r.csv)
        csv_header(r.csv);
    set_phase(SOAK_SETUP);
    if (soak_chat_start(&o, &r.chat) < 0 || wait_ready(&r) < 0) {
        set_phase(SOAK_DONE);
        return 1;
    }
    set_phase(SOAK_RUN);
    r.t0_ns = soak_now_ns();
    soak_sample_take(&o, &r.first);
    r.prev_cpu_s = r.first.cpu_s;
    if ((o.slow && soak_slow_start(&o, &r.slow) < 0) || soak_churn_start(&o, &r.churn) < 0 ||
        soak_bad_start(&o, &r.bad) < 0) {
        fprintf(stderr, "ringcast-soak: cannot start the load threads\n");
        set_phase(SOAK_DONE);
        return 1;
    }
    fprintf(stderr, "ringcast-soak: load for %.0f s: %u readers, %u publishers at %.0f msgs/s, %u slow consumers, "
            "churn %.0f/s, bad clients %.0f/s\n", o.duration_s, o.readers, o.publishers, o.rate, o.slow,
            o.churn_rate, o.bad_rate);
    double gen0 = self_cpu_s();
    r.prev_gen_cpu_s = gen0;
    run_load(&r);
    r.gen_cpu_load_s = self_cpu_s() - gen0;
    uint64_t behind = 0, missing = 0, unacked = 0;
    bool audited = false;
    if (!r.server_died)
        stop_and_drain(&r, audit_seq, &behind, &missing, &unacked, &audited);
    else
        set_phase(SOAK_STOP);
    take_sample(&r, (double)(soak_now_ns() - r.t0_ns) / 1e9, "drained");
    r.after = r.last;
    if (!r.server_died)
        run_idle(&r);
    r.idle = r.last;
    set_phase(SOAK_DONE);
    soak_chat_join(r.chat);
    if (r.server_died) { /* the load threads stop on their own once their requests fail */
        if (r.churn) soak_churn_join(r.churn);
        if (r.bad) soak_bad_join(r.bad);
        if (r.slow) soak_slow_join(r.slow);
    }
    if (r.csv)
        fclose(r.csv);
    return summarize(&r, behind, missing, unacked, audited);
}
