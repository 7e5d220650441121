/*
 * ringcast-bench: a load generator for ringcast and its peers (NATS, Redis).
 *
 * Worker threads (--threads, default 1) each run one epoll loop over their
 * share of the non-blocking connections; the main thread coordinates. A run
 * goes through SETUP (connect, open sessions, subscribe; wait until every
 * connection is confirmed), then one step per measurement (--max, --rate and
 * --flood: one; --sweep: one per offered load), each LOAD (warm-up, then the measured
 * window), PAUSE (stop publishing, wait a bounded time for what is in flight
 * so lost messages can be told from late ones), CUT (threads count what was
 * never sent and close the step's latency histogram); then DONE.
 *
 * The generator shares the machine with the server, so it is built to be
 * cheap: frames are pre-encoded, each write carries many frames, each read
 * takes up to BENCH_IN_CAP bytes, the delivery clock is read once per read,
 * not per message, and it reports its own CPU (per thread too) so that its
 * share is visible. See bench/README.md for the method.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "bench.h"
#include "report.h"

#define OUT_COMPACT_AT (64u << 10)    /* move unsent bytes to the front past this offset */
#define READS_PER_EVENT 8             /* reads per readiness event before moving on */
#define MAX_EVENTS 256
#define IDLE_TICK_NS 10000000u        /* longest epoll wait: phase changes are seen this fast */
#define BUSY_TICK_NS 1000000u         /* wait while a publisher waits on other threads */
#define COORD_TICK_NS 10000000u       /* the coordinator's clock */
#define SETUP_TIMEOUT_S 60.0
#define DRAIN_TIMEOUT_S 5.0
#define DRAIN_MAX_S 30.0              /* ... while the backlog keeps shrinking */
#define DRAIN_CHECK_NS 50000000u
#define CUT_TIMEOUT_S 30.0
#define CONNECT_TIMEOUT_S 5
#define PROGRESS_EVERY_S 1.0
#define PROGRESS_MIN_RUN_S 3.0        /* shorter runs get no progress line by default */
#define MAX_DURATION_S 600
#define MAX_WARMUP_S 60
#define MAX_CONNS 20000u
#define MAX_GROUPS 1000000u
#define MAX_BODY 60000u               /* stays below ringcast's default max_frame */
#define MAX_WINDOW 1000000u
#define MAX_RATE 1e8
#define DAY_SLICES 24                 /* chat-day: the window's "hours" */
#define SWEEP_DEFAULT_DURATION 3.0
#define SWEEP_DEFAULT_WARMUP 1.0
#define KNEE_SUSTAINED 0.95           /* sweep: a step keeps up if it sent this share of its offer */
#define KNEE_LATENCY_FACTOR 5.0       /* ... and its p99 is within this factor of the lightest step's */
#define THREAD_BUSY_WARN_PCT 90.0
#define DEFAULT_TICK_US 0u            /* open loop: shortest loop turn (0: as due) */
#define MAX_TICK_US 10000u
#define MAX_READ_EVERY 1000000u /* --read-every */
#define TIMELINE_SLACK_S 32u          /* --timeline: seconds kept past the window, for its drain */

static const bench_driver *const bench_drivers[] = {
    &bench_drv_ringcast, &bench_drv_ringcast_ws, &bench_drv_nats, &bench_drv_redis,
    &bench_drv_jetstream, &bench_drv_redis_streams,
};

/* Set by SIGINT/SIGTERM (lock-free atomics are async-signal-safe) and read
 * by every thread. */
static int g_interrupted_flag;

static bool interrupted(void)
{
    return LOAD(g_interrupted_flag);
}

static void on_sigint(int sig)
{
    (void)sig;
    STORE(g_interrupted_flag, 1);
}

static double now_s(void)
{
    return (double)mono_ns() / 1e9;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
    nanosleep(&ts, NULL);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double thread_cpu_s(pthread_t tid)
{
    clockid_t cid;
    struct timespec ts;
    if (pthread_getcpuclockid(tid, &cid) != 0 || clock_gettime(cid, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* VmHWM (peak resident set) of pid in kB from /proc/PID/status, or -1. */
static long proc_peak_rss_kb(long pid)
{
    if (pid <= 0)
        return -1;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static void take_snapshot(const options *o, snapshot *s)
{
    memset(s, 0, sizeof *s);
    s->t = now_s();
    s->cpu = self_cpu_s();
    for (uint32_t t = 0; t < G.T; t++)
        s->thread_cpu[t] = G.thr[t].started ? thread_cpu_s(G.thr[t].tid) : 0;
    s->server_cpu = bench_proc_cpu_s(o->server_pid);
    flow_sum(&s->n);
}

/* ---- options ---- */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: ringcast-bench [WORKLOAD] [options]\n"
        "\n"
        "Load generator for ringcast and its peers. Subscriber connections join\n"
        "groups; publisher connections send to them (group g only from publisher\n"
        "g %% P, so each group has one order); every delivery is counted, timed\n"
        "and checked for gaps, duplicates and reordering per (subscriber, group).\n"
        "\n"
        "Workloads (presets, named by a bare word or --workload NAME; the flags\n"
        "below override any part):\n"
        "  fanout       1000 groups x 10 members on 200 connections, 2 publishers,\n"
        "               100-byte bodies (the default)\n"
        "  rooms        20 groups x 500 members on 1000 connections, 64-byte bodies\n"
        "  many-groups  10000 groups x 5 members on 500 connections, 10 publishers,\n"
        "               64-byte bodies\n"
        "  chat-day     2000 users (connections) in 2000 groups whose sizes follow a\n"
        "               Zipf over 2..2000 (exponent 1.8); per-user send rates (Zipf\n"
        "               levels 1..100) spread over each user's groups; open loop:\n"
        "               Poisson arrivals on a diurnal curve (peak = 3 x trough)\n"
        "               compressed so that the measured window is one day; mean rate\n"
        "               500 msgs/s unless --rate; reports day_msgs (messages/day)\n"
        "\n"
        "Target:\n"
        "  --system NAME     ringcast | ringcast-ws | nats | redis | jetstream |\n"
        "                    redis-streams (default ringcast; use ringcast for\n"
        "                    ringcast-sol too). jetstream: nats-server -js, one\n"
        "                    file-store stream, publishes acked once stored, a push\n"
        "                    consumer per group; redis-streams: a stream per group\n"
        "                    (XADD), readers on XREAD BLOCK (bench/README.md)\n"
        "  --host HOST       server address (default 127.0.0.1)\n"
        "  --port PORT       server port (default 7400 / 4222 / 6379 by system)\n"
        "  --server-pid PID  report this process's CPU %% over each window and its\n"
        "                    peak RSS (from /proc)\n"
        "\n"
        "Shape:\n"
        "  --groups G        groups\n"
        "  --members M       members per group, <= subs (uniform workloads)\n"
        "  --subs C          subscriber connections (--users C: the same; chat-day\n"
        "                    users)\n"
        "  --pubs P          publisher connections; ringcastd lets one session join\n"
        "                    at most 1024 groups by default, so keep G/P below that\n"
        "  --body BYTES      body size, %u..%u; every body starts with the sender's\n"
        "                    seq and the send time (16 hex digits each)\n"
        "  --size-min N, --size-max N, --size-zipf S\n"
        "                    chat-day group sizes (2, 2000, 1.8; capped at subs)\n"
        "  --activity-zipf S chat-day exponent of the users' send-rate levels (1.0)\n"
        "  --peak-to-trough R  diurnal curve of open-loop runs (chat-day 3, else 1 =\n"
        "                    flat); the curve's period is the measured window\n"
        "  --seed N          seed of membership, rates and arrivals (1)\n"
        "\n"
        "Mode (one of):\n"
        "  --max             closed loop, peak throughput (default except chat-day):\n"
        "                    each publisher keeps --window messages in flight\n"
        "  --rate R          open loop at R messages/s (mean over the curve): Poisson\n"
        "                    arrivals; latency is measured from each message's\n"
        "                    scheduled time, so waiting behind a slow server counts\n"
        "                    (coordinated omission corrected)\n"
        "  --sweep           offered load in steps: a closed-loop step measures the\n"
        "                    peak (or --peak R gives it), then one open-loop step per\n"
        "                    percentage of --steps; prints one line per step and\n"
        "                    reports the knee (the highest step that still sends\n"
        "                    >= 95%% of its offer with p99 within 5x the lightest's)\n"
        "  --schedule LIST   with --rate: the offered load in phases,\n"
        "                    SECONDS:MULTIPLE of --rate, comma-separated (\"60:1,40:4,90:1\":\n"
        "                    a step load); one step whose warm-up (default 0) and\n"
        "                    window together last the phases' sum\n"
        "  --peak R          sweep: the 100%% rate in messages/s\n"
        "  --steps LIST      sweep: comma-separated percentages (default\n"
        "                    10,20,30,40,50,60,70,80,90,100,110,120)\n"
        "  --flood           no window: every publisher writes sends as fast as its\n"
        "                    socket takes them (still reading its acks and errors),\n"
        "                    then stops and drains; reports refused sends by error\n"
        "                    code and the readers the server disconnected\n"
        "  --window N        closed loop: messages in flight per publisher (presets:\n"
        "                    %u, rooms 400): a message is done when acked (ringcast,\n"
        "                    Redis) and delivered to all its group's subscribers\n"
        "\n"
        "Chat features (ringcast and ringcast-ws, proto/PROTOCOL.md §6.9, §6.11):\n"
        "  --presence        subscribers join with presence: true (online/offline\n"
        "                    events are counted: presence_events)\n"
        "  --receipts        subscribers join with receipts: true (receipt_events)\n"
        "  --echo            publishers' sessions receive their own messages (hello\n"
        "                    echo: true, counted as echoes); by default they say\n"
        "                    echo: false, as NATS and Redis publishers, which\n"
        "                    subscribe to nothing, receive nothing\n"
        "  --read-every N    each subscriber sends read {g, seq} after every N\n"
        "                    messages it receives, for the last one (reads_sent,\n"
        "                    marked)\n"
        "\n"
        "Time and count (every step is bounded):\n"
        "  --duration S      measured seconds per step, 1..%d (default 10; sweep 3)\n"
        "  --warmup S        seconds of load before measuring, 0..%d (default 2;\n"
        "                    sweep 1)\n"
        "  --messages N      end a measured window early after N publishes\n"
        "                    (checked every 10 ms)\n"
        "  Setup is bounded by %.0f s and each drain by %.0f s (up to %.0f s while\n"
        "  what is in flight keeps shrinking).\n"
        "\n"
        "Generator:\n"
        "  --threads N       worker threads, each with its own epoll loop and a share\n"
        "                    of the connections, 1..%u (default 1)\n"
        "  --tick-us N       open loop: each loop turn lasts at least N us, so reads\n"
        "                    and writes carry more messages (less generator CPU; adds\n"
        "                    up to N us to measured latency); default 0\n"
        "\n"
        "Output:\n"
        "  --json FILE       the result as JSON: the last step's keys at the top\n"
        "                    level, every step in \"steps\"\n"
        "  --csv FILE        one row per step (for bench/plot.sh)\n"
        "  --hist-out FILE   latency histogram as value_ns,count,cumulative lines\n"
        "                    (sweeps: FILE.stepK per step)\n"
        "  --timeline FILE   one CSV row per second since the load started (not with\n"
        "                    --sweep): messages sent, and the count and latency\n"
        "                    percentiles of deliveries of the messages sent in it\n"
        "  --progress        a progress line on stderr every second (default: when\n"
        "                    stderr is a terminal and the run takes over %.0f s)\n"
        "  --no-progress     never\n"
        "  --help            this text\n"
        "\n"
        "Prints one line of key=value results per step. Latency is send (or\n"
        "scheduled) time to delivery, in microseconds, over the window's messages.\n"
        "Exit status: 0 ok; 1 bad usage or setup failed; 2 nothing was delivered;\n"
        "3 loss or disorder it cannot explain (gaps, dups, reorders, stray,\n"
        "corrupt, missing, short fan-out, lost connections; said on stderr);\n"
        "130 interrupted (SIGINT/SIGTERM: partial results are printed, missing=-1).\n",
        BENCH_HDR_LEN, MAX_BODY, 4000u, MAX_DURATION_S, MAX_WARMUP_S, SETUP_TIMEOUT_S,
        DRAIN_TIMEOUT_S, DRAIN_MAX_S, MAX_THREADS, PROGRESS_MIN_RUN_S);
}

static int parse_u32(const char *s, const char *flag, uint32_t lo, uint32_t hi, uint32_t *v)
{
    char *end;
    errno = 0;
    unsigned long x = strtoul(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || x < lo || x > hi) {
        fprintf(stderr, "ringcast-bench: %s wants an integer in %u..%u, got '%s'\n", flag, lo, hi, s);
        return -1;
    }
    *v = (uint32_t)x;
    return 0;
}

static int parse_num(const char *s, const char *flag, double lo, double hi, double *v)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "ringcast-bench: %s wants a number in %g..%g, got '%s'\n", flag, lo, hi, s);
        return -1;
    }
    *v = x;
    return 0;
}

static int parse_steps(const char *s, options *o)
{
    o->npcts = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (errno || end == p || !(x > 0 && x <= 1000) || o->npcts >= MAX_STEPS - 1 ||
            (*end && *end != ',')) {
            fprintf(stderr, "ringcast-bench: --steps wants up to %u percentages in (0, 1000] "
                            "separated by commas, got '%s'\n", MAX_STEPS - 1, s);
            return -1;
        }
        o->pcts[o->npcts++] = x;
        p = *end ? end + 1 : end;
    }
    if (o->npcts == 0) {
        fprintf(stderr, "ringcast-bench: --steps is empty\n");
        return -1;
    }
    return 0;
}

/* Returns 0 to run, 1 after --help, -1 on bad usage. */
static int parse_options(int argc, char **argv, options *o)
{
    enum { O_SYSTEM = 256, O_HOST, O_PORT, O_GROUPS, O_MEMBERS, O_SUBS, O_PUBS, O_BODY,
           O_WINDOW, O_DURATION, O_WARMUP, O_JSON, O_SERVER_PID, O_HELP, O_THREADS, O_MAX,
           O_RATE, O_SWEEP, O_PEAK, O_STEPS, O_MESSAGES, O_CSV, O_HIST_OUT, O_PROGRESS,
           O_NO_PROGRESS, O_SIZE_MIN, O_SIZE_MAX, O_SIZE_ZIPF, O_ACTIVITY_ZIPF, O_PTT, O_SEED,
           O_WORKLOAD, O_TICK, O_FLOOD, O_SCHEDULE, O_TIMELINE, O_PRESENCE, O_ECHO, O_RECEIPTS,
           O_READ_EVERY };
    static const struct option longopts[] = {
        { "system", required_argument, 0, O_SYSTEM },
        { "host", required_argument, 0, O_HOST },
        { "port", required_argument, 0, O_PORT },
        { "workload", required_argument, 0, O_WORKLOAD },
        { "groups", required_argument, 0, O_GROUPS },
        { "members", required_argument, 0, O_MEMBERS },
        { "subs", required_argument, 0, O_SUBS },
        { "users", required_argument, 0, O_SUBS },
        { "pubs", required_argument, 0, O_PUBS },
        { "body", required_argument, 0, O_BODY },
        { "window", required_argument, 0, O_WINDOW },
        { "size-min", required_argument, 0, O_SIZE_MIN },
        { "size-max", required_argument, 0, O_SIZE_MAX },
        { "size-zipf", required_argument, 0, O_SIZE_ZIPF },
        { "activity-zipf", required_argument, 0, O_ACTIVITY_ZIPF },
        { "peak-to-trough", required_argument, 0, O_PTT },
        { "seed", required_argument, 0, O_SEED },
        { "duration", required_argument, 0, O_DURATION },
        { "warmup", required_argument, 0, O_WARMUP },
        { "messages", required_argument, 0, O_MESSAGES },
        { "threads", required_argument, 0, O_THREADS },
        { "max", no_argument, 0, O_MAX },
        { "rate", required_argument, 0, O_RATE },
        { "sweep", no_argument, 0, O_SWEEP },
        { "flood", no_argument, 0, O_FLOOD },
        { "peak", required_argument, 0, O_PEAK },
        { "steps", required_argument, 0, O_STEPS },
        { "json", required_argument, 0, O_JSON },
        { "csv", required_argument, 0, O_CSV },
        { "hist-out", required_argument, 0, O_HIST_OUT },
        { "schedule", required_argument, 0, O_SCHEDULE },
        { "timeline", required_argument, 0, O_TIMELINE },
        { "presence", no_argument, 0, O_PRESENCE },
        { "echo", no_argument, 0, O_ECHO },
        { "receipts", no_argument, 0, O_RECEIPTS },
        { "read-every", required_argument, 0, O_READ_EVERY },
        { "server-pid", required_argument, 0, O_SERVER_PID },
        { "progress", no_argument, 0, O_PROGRESS },
        { "no-progress", no_argument, 0, O_NO_PROGRESS },
        { "tick-us", required_argument, 0, O_TICK },
        { "help", no_argument, 0, O_HELP },
        { 0, 0, 0, 0 },
    };
    /* The workload comes first (a positional word or --workload), since the
     * other flags override its preset. */
    const char *workload = "fanout", *workload_word = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--workload") == 0 && i + 1 < argc)
            workload = argv[++i];
        else if (strncmp(argv[i], "--workload=", 11) == 0)
            workload = argv[i] + 11;
    }
    *o = (options){ .system = "ringcast", .host = "127.0.0.1", .threads = 1, .mode = MODE_MAX,
                    .duration = -1, .warmup = -1, .progress = -1,
                    .tick_ns = DEFAULT_TICK_US * 1000u };
    int nmodes = 0;
    bool mode_given = false;
    uint32_t port = 0, pid = 0, u;
    double x;
    int opt, rc = 0;
    /* a bare word that is not the value of a flag names the workload */
    for (int i = 1; i < argc; i++) {
        bool value_of_flag = false;
        if (i > 1 && strncmp(argv[i - 1], "--", 2) == 0 && !strchr(argv[i - 1], '='))
            for (const struct option *lo = longopts; lo->name; lo++)
                if (lo->has_arg == required_argument && argv[i - 1][2] &&
                    strncmp(lo->name, argv[i - 1] + 2, strlen(argv[i - 1] + 2)) == 0)
                    value_of_flag = true; /* getopt takes unambiguous prefixes */
        if (argv[i][0] != '-' && !value_of_flag) {
            if (workload_word) {
                fprintf(stderr, "ringcast-bench: one workload at a time ('%s' and '%s')\n",
                        workload_word, argv[i]);
                return -1;
            }
            workload = workload_word = argv[i];
        }
    }
    if (plan_preset(workload, &o->pc) < 0) {
        fprintf(stderr, "ringcast-bench: unknown workload '%s' (%s)\n", workload, plan_preset_names());
        return -1;
    }
    opterr = 1;
    optind = 1;
    while (rc == 0 && (opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case O_SYSTEM: o->system = optarg; break;
        case O_HOST: o->host = optarg; break;
        case O_PORT: rc = parse_u32(optarg, "--port", 1, 65535, &port); break;
        case O_WORKLOAD: break; /* taken above */
        case O_GROUPS: rc = parse_u32(optarg, "--groups", 1, MAX_GROUPS, &o->pc.groups); break;
        case O_MEMBERS: rc = parse_u32(optarg, "--members", 1, MAX_CONNS, &o->pc.members); break;
        case O_SUBS: rc = parse_u32(optarg, "--subs", 1, MAX_CONNS, &o->pc.subs); break;
        case O_PUBS: rc = parse_u32(optarg, "--pubs", 1, MAX_CONNS, &o->pc.pubs); break;
        case O_BODY: rc = parse_u32(optarg, "--body", BENCH_HDR_LEN, MAX_BODY, &o->pc.body); break;
        case O_WINDOW: rc = parse_u32(optarg, "--window", 1, MAX_WINDOW, &o->pc.window); break;
        case O_SIZE_MIN: rc = parse_u32(optarg, "--size-min", 1, MAX_CONNS, &o->pc.size_min); break;
        case O_SIZE_MAX: rc = parse_u32(optarg, "--size-max", 1, MAX_CONNS, &o->pc.size_max); break;
        case O_SIZE_ZIPF: rc = parse_num(optarg, "--size-zipf", 0, 10, &o->pc.size_s); break;
        case O_ACTIVITY_ZIPF: rc = parse_num(optarg, "--activity-zipf", 0, 10, &o->pc.activity_s); break;
        case O_PTT: rc = parse_num(optarg, "--peak-to-trough", 1, 1000, &o->pc.peak_to_trough); break;
        case O_SEED:
            rc = parse_u32(optarg, "--seed", 0, UINT32_MAX, &u);
            o->pc.seed = u;
            break;
        case O_DURATION: rc = parse_num(optarg, "--duration", 1, MAX_DURATION_S, &o->duration); break;
        case O_WARMUP: rc = parse_num(optarg, "--warmup", 0, MAX_WARMUP_S, &o->warmup); break;
        case O_MESSAGES:
            rc = parse_num(optarg, "--messages", 1, 1e15, &x);
            o->max_msgs = (uint64_t)x;
            break;
        case O_THREADS: rc = parse_u32(optarg, "--threads", 1, MAX_THREADS, &o->threads); break;
        case O_MAX: o->mode = MODE_MAX; nmodes++; mode_given = true; break;
        case O_RATE:
            rc = parse_num(optarg, "--rate", 0.001, MAX_RATE, &o->rate);
            o->mode = MODE_RATE;
            nmodes++;
            mode_given = true;
            break;
        case O_SWEEP: o->mode = MODE_SWEEP; nmodes++; mode_given = true; break;
        case O_FLOOD: o->mode = MODE_FLOOD; nmodes++; mode_given = true; break;
        case O_PEAK: rc = parse_num(optarg, "--peak", 0.001, MAX_RATE, &o->peak); break;
        case O_STEPS: rc = parse_steps(optarg, o); break;
        case O_JSON: o->json = optarg; break;
        case O_CSV: o->csv = optarg; break;
        case O_HIST_OUT: o->hist_out = optarg; break;
        case O_TIMELINE: o->timeline = optarg; break;
        case O_PRESENCE: o->presence = true; break;
        case O_ECHO: o->echo = true; break;
        case O_RECEIPTS: o->receipts = true; break;
        case O_READ_EVERY: rc = parse_u32(optarg, "--read-every", 1, MAX_READ_EVERY, &o->read_every); break;
        case O_SCHEDULE:
            if (rc_schedule_parse(optarg, &o->sched) < 0) {
                fprintf(stderr, "ringcast-bench: --schedule wants SECONDS:MULTIPLE,... (at most %u phases, "
                                "each longer than 0 s, multiples 0..%.0f), got '%s'\n",
                        RC_SCHEDULE_MAX, RC_SCHEDULE_MULT_MAX, optarg);
                rc = -1;
            }
            break;
        case O_SERVER_PID: rc = parse_u32(optarg, "--server-pid", 1, INT32_MAX, &pid); break;
        case O_PROGRESS: o->progress = 1; break;
        case O_NO_PROGRESS: o->progress = 0; break;
        case O_TICK:
            rc = parse_u32(optarg, "--tick-us", 0, MAX_TICK_US, &u);
            o->tick_ns = (uint64_t)u * 1000u;
            break;
        case O_HELP: case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
    }
    if (rc < 0)
        return -1;
    if (nmodes > 1) {
        fprintf(stderr, "ringcast-bench: choose one of --max, --rate, --sweep and --flood\n");
        return -1;
    }
    if (!mode_given && o->pc.rate > 0) { /* chat-day is an open-loop workload */
        o->mode = MODE_RATE;
        o->rate = o->pc.rate;
    }
    if (o->npcts == 0) {
        static const double def[] = { 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120 };
        memcpy(o->pcts, def, sizeof def);
        o->npcts = sizeof def / sizeof def[0];
    }
    if (o->sched.n) {
        double total = rc_schedule_total_s(&o->sched);
        if (o->mode != MODE_RATE || !mode_given) {
            fprintf(stderr, "ringcast-bench: --schedule needs --rate (the base rate its multiples scale)\n");
            return -1;
        }
        if (o->duration >= 0) {
            fprintf(stderr, "ringcast-bench: with --schedule the window lasts the phases' sum less the warm-up; "
                            "no --duration\n");
            return -1;
        }
        if (o->pc.peak_to_trough > 1) {
            fprintf(stderr, "ringcast-bench: --schedule replaces the diurnal curve; use --peak-to-trough 1\n");
            return -1;
        }
        if (o->warmup < 0)
            o->warmup = 0;
        if (!(total - o->warmup >= 1) || total - o->warmup > MAX_DURATION_S) {
            fprintf(stderr, "ringcast-bench: --schedule lasts %.1f s: its window (less the %.1f s warm-up) "
                            "must last 1..%d s\n", total, o->warmup, MAX_DURATION_S);
            return -1;
        }
        o->duration = total - o->warmup;
    }
    if (o->timeline && o->mode == MODE_SWEEP) {
        fprintf(stderr, "ringcast-bench: --timeline covers one step; not with --sweep\n");
        return -1;
    }
    if (o->duration < 0)
        o->duration = o->mode == MODE_SWEEP ? SWEEP_DEFAULT_DURATION : 10;
    if (o->warmup < 0)
        o->warmup = o->mode == MODE_SWEEP ? SWEEP_DEFAULT_WARMUP : 2;
    if ((uint64_t)o->pc.subs + o->pc.pubs > MAX_CONNS) {
        fprintf(stderr, "ringcast-bench: at most %u connections\n", MAX_CONNS);
        return -1;
    }
    o->port = (int)port;
    o->server_pid = pid;
    return 0;
}

static const bench_driver *find_driver(const char *name)
{
    for (size_t i = 0; i < sizeof bench_drivers / sizeof bench_drivers[0]; i++)
        if (strcmp(bench_drivers[i]->name, name) == 0)
            return bench_drivers[i];
    return NULL;
}

/* ---- connections (each touched only by its thread) ---- */

static void mark_dirty(gen_thread *t, bench_conn *c)
{
    if (!c->dirty && c->out.len > c->out_off) {
        c->dirty = true;
        t->dirty[t->ndirty++] = c;
    }
}

int bench_reply(bench_conn *c, const void *p, size_t n)
{
    if (rc_buf_append(&c->out, p, n) < 0)
        return -1;
    mark_dirty(c->owner, c);
    return 0;
}

static void conn_kill(gen_thread *t, bench_conn *c, const char *why)
{
    if (c->dead)
        return;
    if (LOAD_ACQ(G.phase) != PH_DONE)
        fprintf(stderr, "ringcast-bench: connection %c%u lost: %s\n",
                c->role == BENCH_SUB ? 's' : 'p', c->index, why);
    STORE(c->dead, true);
    epoll_ctl(t->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    flow_count_lost(t, c);
}

static int set_epollout(gen_thread *t, bench_conn *c, bool on)
{
    if (c->epollout == on)
        return 0;
    struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c };
    c->epollout = on;
    return epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes what c has queued, as far as the socket takes it. */
static void conn_flush(gen_thread *t, bench_conn *c)
{
    while (!c->dead && c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (set_epollout(t, c, true) < 0)
                conn_kill(t, c, strerror(errno));
            break;
        } else {
            conn_kill(t, c, n == 0 ? "send returned 0" : strerror(errno));
        }
    }
    if (c->dead)
        return;
    if (c->out_off == c->out.len) {
        c->out_off = c->out.len = 0;
        if (set_epollout(t, c, false) < 0)
            conn_kill(t, c, strerror(errno));
    } else if (c->out_off >= OUT_COMPACT_AT) {
        memmove(c->out.data, c->out.data + c->out_off, c->out.len - c->out_off);
        c->out.len -= c->out_off;
        c->out_off = 0;
    }
}

static void flush_dirty(gen_thread *t)
{
    for (uint32_t i = 0; i < t->ndirty; i++) {
        bench_conn *c = t->dirty[i];
        c->dirty = false;
        conn_flush(t, c);
    }
    t->ndirty = 0;
}

/* Reads what the socket holds (up to READS_PER_EVENT reads) and parses it. */
static void conn_read(gen_thread *t, bench_conn *c)
{
    for (int i = 0; i < READS_PER_EVENT && !c->dead; i++) {
        size_t space = c->in_cap - c->in_len;
        if (space == 0) {
            conn_kill(t, c, "an incoming item is larger than the receive buffer");
            return;
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, space, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            conn_kill(t, c, n == 0 ? "closed by the server" : strerror(errno));
            return;
        }
        t->now_ns = mono_ns(); /* the delivery time of everything in this read */
        c->in_len += (size_t)n;
        ssize_t used = G.drv->parse(c, c->in, c->in_len);
        if (used < 0) {
            conn_kill(t, c, "protocol error");
            return;
        }
        c->in_len -= (size_t)used;
        if (c->in_len)
            memmove(c->in, c->in + used, c->in_len);
        if ((size_t)n < space)
            return; /* the socket is drained */
    }
}

static int tcp_connect(const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -1;
    struct timeval tv = { .tv_sec = CONNECT_TIMEOUT_S };
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); /* bounds the blocking connect */
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void poll_once(gen_thread *t, uint64_t timeout_ns)
{
    struct epoll_event evs[MAX_EVENTS];
    struct timespec ts = { (time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u) };
    int n = epoll_pwait2(t->ep, evs, MAX_EVENTS, &ts, NULL);
    if (n < 0 && errno == ENOSYS) /* kernels before 5.11 */
        n = epoll_wait(t->ep, evs, MAX_EVENTS, (int)((timeout_ns + 999999u) / 1000000u));
    for (int i = 0; i < n; i++) {
        bench_conn *c = evs[i].data.ptr;
        if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            conn_read(t, c);
        if (!c->dead && (evs[i].events & EPOLLOUT))
            conn_flush(t, c);
    }
    flush_dirty(t);
}

/* ---- worker threads ---- */

static const struct addrinfo *g_addr;

/* Connects the thread's connections and queues their setup. */
static void open_mine(gen_thread *t)
{
    const plan *pl = &g_plan;
    uint32_t *groups = malloc(sizeof *groups * (pl->max_sub_groups > pl->G ? pl->max_sub_groups : pl->G));
    if (!groups) {
        STORE(G.setup_failed, true);
        return;
    }
    for (uint32_t i = 0; i < t->nconns && !interrupted(); i++) {
        bench_conn *c = t->conns[i];
        c->in_cap = BENCH_IN_CAP;
        c->in = malloc(c->in_cap);
        c->fd = c->in ? tcp_connect(g_addr) : -1;
        if (c->fd < 0) {
            fprintf(stderr, "ringcast-bench: connect %c%u (%s): %s\n",
                    c->role == BENCH_SUB ? 's' : 'p', c->index, G.drv->name,
                    c->in ? strerror(errno) : "out of memory");
            STORE(c->dead, true);
            STORE(G.setup_failed, true);
            break;
        }
        uint32_t n = 0;
        if (c->role == BENCH_SUB) {
            for (uint64_t e = pl->sbase[c->index]; e < pl->sbase[c->index + 1]; e++)
                groups[n++] = pl->sgroup[e];
        } else {
            for (uint32_t e = pl->pbase[c->index]; e < pl->pbase[c->index + 1]; e++)
                groups[n++] = pl->pgroup[e];
        }
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
        if (epoll_ctl(t->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0 || G.drv->setup(c, groups, n) < 0) {
            fprintf(stderr, "ringcast-bench: setup of connection %c%u failed\n",
                    c->role == BENCH_SUB ? 's' : 'p', c->index);
            STORE(G.setup_failed, true);
            break;
        }
        mark_dirty(t, c);
        if (t->ndirty >= t->nconns / 4 + 1)
            poll_once(t, 0); /* let the server work on early setups while we connect */
    }
    free(groups);
}

static uint32_t count_ready(const gen_thread *t)
{
    uint32_t ready = 0;
    for (uint32_t i = 0; i < t->nconns; i++)
        ready += !t->conns[i]->dead && t->conns[i]->pending == 0;
    return ready;
}

/* One flood turn: refill every publisher that ran low and write it out at
 * once. Turns follow each other without waiting while some socket still
 * takes more; otherwise EPOLLOUT (or, for Redis, acks) wakes the loop. */
static uint64_t drive_flood(gen_thread *t, int ph, uint32_t k)
{
    if (ph != PH_LOAD || mono_ns() >= LOAD(G.steps[k].m1_ns))
        return IDLE_TICK_NS;
    bool more = false;
    for (uint32_t i = 0; i < t->npubs; i++) {
        uint32_t j = t->pubs[i];
        pub_state *p = &G.pubs[j];
        bench_conn *c = p->conn;
        if (c->dead)
            continue;
        if (flow_fill_flood(t, p, j) < 0) {
            conn_kill(t, c, "out of memory");
            continue;
        }
        conn_flush(t, c);
        if (!c->dead && !c->epollout && !flow_pub_blocked(p, j))
            more = true;
    }
    return more ? 0 : IDLE_TICK_NS;
}

/* One loop turn of a step: publish what is due; returns the epoll timeout. */
static uint64_t drive_step(gen_thread *t, int ph, uint32_t k)
{
    const step *s = &G.steps[k];
    uint64_t now = mono_ns();
    if (ph == PH_CUT) {
        if (LOAD(t->cut_done) != k + 1)
            flow_cut(t, k);
        return IDLE_TICK_NS;
    }
    if (s->flood)
        return drive_flood(t, ph, k);
    if (s->open) {
        uint64_t m1 = LOAD(G.steps[k].m1_ns), limit = now < m1 ? now : m1, next = UINT64_MAX;
        bool busy = false;
        for (uint32_t i = 0; i < t->npubs; i++) {
            uint32_t j = t->pubs[i];
            pub_state *p = &G.pubs[j];
            if (p->conn->dead)
                continue;
            if (flow_fill_open(t, p, j, limit) < 0)
                conn_kill(t, p->conn, "out of memory");
            if (p->next_ns < m1) {
                if (p->next_ns <= now || flow_pub_blocked(p, j))
                    busy = true; /* backlog: waits for the socket, acks or deliveries */
                else if (p->next_ns < next)
                    next = p->next_ns;
            }
        }
        if (busy)
            return BUSY_TICK_NS;
        if (next == UINT64_MAX)
            return IDLE_TICK_NS;
        return next - now < IDLE_TICK_NS ? next - now : IDLE_TICK_NS;
    }
    if (ph != PH_LOAD)
        return IDLE_TICK_NS;
    for (uint32_t i = 0; i < t->npubs; i++) {
        uint32_t j = t->pubs[i];
        pub_state *p = &G.pubs[j];
        if (!p->conn->dead && flow_fill_closed(t, p, j, now) < 0)
            conn_kill(t, p->conn, "out of memory");
    }
    /* deliveries that free a window may arrive on another thread */
    return G.T > 1 ? BUSY_TICK_NS : IDLE_TICK_NS;
}

static void *thread_main(void *arg)
{
    gen_thread *t = arg;
    open_mine(t);
    uint32_t begun = 0; /* steps started */
    uint64_t last_turn = 0;
    for (;;) {
        int ph = LOAD_ACQ(G.phase);
        if (ph == PH_DONE)
            break;
        uint64_t timeout = IDLE_TICK_NS;
        if (ph == PH_SETUP) {
            STORE(t->ready, count_ready(t));
        } else {
            uint32_t k = LOAD_ACQ(G.step);
            if (begun != k + 1) {
                flow_start_step(t, k);
                begun = k + 1;
            }
            timeout = drive_step(t, ph, k);
            /* open loop: at most one turn per tick, so that reads and writes
             * carry several messages (the tick is part of the measured
             * latency, which starts at the scheduled time) */
            uint64_t tick = G.steps[k].open ? G.opt->tick_ns : 0, now = mono_ns();
            if (tick && now - last_turn < tick) {
                flush_dirty(t);
                sleep_ns(tick - (now - last_turn));
                timeout = 0;
            }
            last_turn = mono_ns();
        }
        flush_dirty(t);
        poll_once(t, timeout);
    }
    return NULL;
}

/* ---- the coordinator ---- */

typedef struct progress {
    bool on, tty, shown;
    double next;
    snapshot last;
} progress;

static void progress_clear(progress *pg)
{
    if (pg->on && pg->tty && pg->shown) {
        fputs("\r\033[K", stderr);
        pg->shown = false;
    }
}

/* v with a k/M/G suffix, in buf. */
static const char *human(double v, char *buf, size_t n)
{
    const char *unit = "";
    if (v >= 1e9) {
        v /= 1e9;
        unit = "G";
    } else if (v >= 1e6) {
        v /= 1e6;
        unit = "M";
    } else if (v >= 1e3) {
        v /= 1e3;
        unit = "k";
    }
    snprintf(buf, n, v < 10 && *unit ? "%.2f%s" : "%.0f%s", v, unit);
    return buf;
}

static void progress_tick(progress *pg, const options *o, uint32_t k, const char *what,
                          double t_in, double t_len)
{
    double t = now_s();
    if (!pg->on || t < pg->next)
        return;
    snapshot s;
    take_snapshot(o, &s);
    double dt = s.t - pg->last.t > 1e-9 ? s.t - pg->last.t : 1e-9;
    char step_txt[64] = "", len_txt[32] = "", m[16], d[16];
    if (G.nsteps > 1)
        snprintf(step_txt, sizeof step_txt, " step %u/%u", k + 1, G.nsteps);
    if (t_len > 0)
        snprintf(len_txt, sizeof len_txt, "/%.0f", t_len);
    fprintf(stderr, "%sringcast-bench %s %s%s: %s %.0f%s s, %s msgs/s, %s deliveries/s, "
                    "generator CPU %.0f%%, errors %" PRIu64 "%s",
            pg->tty ? "\r" : "", G.drv->name, g_plan.cfg.name, step_txt, what, t_in, len_txt,
            human((double)(s.n.published - pg->last.n.published) / dt, m, sizeof m),
            human((double)(s.n.deliveries - pg->last.n.deliveries) / dt, d, sizeof d),
            100.0 * (s.cpu - pg->last.cpu) / dt, s.n.errors, pg->tty ? "\033[K" : "\n");
    fflush(stderr);
    pg->shown = true;
    pg->last = s;
    pg->next = t + PROGRESS_EVERY_S;
}

static uint32_t ready_total(void)
{
    uint32_t n = 0;
    for (uint32_t t = 0; t < G.T; t++)
        n += LOAD(G.thr[t].ready);
    return n;
}

static bool all_pubs_dead(void)
{
    for (uint32_t j = 0; j < g_plan.P; j++)
        if (!LOAD(G.pubs[j].conn->dead))
            return false;
    return true;
}

static uint64_t lost_total(void)
{
    counters n;
    flow_sum(&n);
    return n.lost_conns;
}

static int wait_setup(void)
{
    double deadline = now_s() + SETUP_TIMEOUT_S;
    while (!interrupted()) {
        if (LOAD(G.setup_failed) || lost_total() > 0) {
            fprintf(stderr, "ringcast-bench: setup failed against %s\n", G.drv->name);
            return 1;
        }
        if (ready_total() == G.nconns)
            return 0;
        if (now_s() > deadline) {
            fprintf(stderr, "ringcast-bench: setup timed out after %.0f s (%u of %u connections ready)\n",
                    SETUP_TIMEOUT_S, ready_total(), G.nconns);
            return 1;
        }
        sleep_ns(COORD_TICK_NS);
    }
    return 130;
}

static bool drained(uint32_t k)
{
    if (G.steps[k].flood)
        return flow_flood_pending() == 0;
    uint64_t m1 = LOAD(G.steps[k].m1_ns);
    for (uint32_t j = 0; j < g_plan.P; j++) {
        const pub_state *p = &G.pubs[j];
        if (LOAD(p->conn->dead))
            continue;
        if (flow_outstanding(j) > 0 || LOAD(p->next_ns) < m1)
            return false;
    }
    return flow_missing() == 0;
}

/* What the drain of step k waits for: deliveries missing, messages
 * unconfirmed, and (open loop) an estimate of the backlog still to send. */
static uint64_t in_flight(uint32_t k)
{
    const step *s = &G.steps[k];
    if (s->flood)
        return flow_flood_pending();
    uint64_t n = flow_missing(), m1 = LOAD(s->m1_ns);
    for (uint32_t j = 0; j < g_plan.P; j++) {
        if (LOAD(G.pubs[j].conn->dead))
            continue;
        n += flow_outstanding(j);
        uint64_t next = LOAD(G.pubs[j].next_ns);
        if (s->open && next < m1)
            n += 1 + (uint64_t)((double)(m1 - next) / 1e9 * s->rate * g_plan.pshare[j]);
    }
    return n;
}

/* Merges the threads' histograms of step k into r->hist. */
static void merge_hist(step_result *r, uint32_t k)
{
    for (uint32_t t = 0; t < G.T; t++)
        rc_hist_merge(&r->hist, &G.thr[t].hist[k]);
}

/* Runs step k: load, measure, drain, cut. Fills r; returns false when the
 * run must stop (interrupted, or every publisher gone). */
static bool run_step(const options *o, uint32_t k, step_result *r, progress *pg)
{
    step *s = &G.steps[k];
    s->t0_ns = mono_ns();
    s->m0_ns = s->t0_ns + (uint64_t)(s->warmup * 1e9);
    STORE(s->m1_ns, s->m0_ns + (uint64_t)(s->duration * 1e9));
    STORE_REL(G.step, k);
    STORE_REL(G.phase, PH_LOAD);
    r->k = k;
    take_snapshot(o, &r->a);
    pg->last = r->a;
    pg->next = r->a.t + PROGRESS_EVERY_S;
    bool measuring = false;
    double slice = s->duration / DAY_SLICES, next_slice = 0;
    uint64_t slice_pub = 0;
    r->day_peak = 0;
    r->day_trough = -1;
    for (;;) {
        uint64_t now = mono_ns();
        if (interrupted()) {
            r->interrupted = true;
            break;
        }
        if (!measuring && now >= s->m0_ns) {
            take_snapshot(o, &r->a);
            measuring = true;
            next_slice = r->a.t + slice;
            slice_pub = r->a.n.published;
        }
        if (now >= LOAD(s->m1_ns) || all_pubs_dead())
            break;
        if (measuring && o->max_msgs) {
            counters n;
            flow_sum(&n);
            if (n.published - r->a.n.published >= o->max_msgs)
                STORE(s->m1_ns, now); /* ends the window (threads read m1 each turn) */
        }
        if (measuring && now_s() >= next_slice) {
            counters n;
            flow_sum(&n);
            double rate = (double)(n.published - slice_pub) / slice;
            r->day_peak = rate > r->day_peak ? rate : r->day_peak;
            r->day_trough = r->day_trough < 0 || rate < r->day_trough ? rate : r->day_trough;
            slice_pub = n.published;
            next_slice += slice;
        }
        if (measuring)
            progress_tick(pg, o, k, "measuring", (double)(now - s->m0_ns) / 1e9, s->duration);
        else
            progress_tick(pg, o, k, "warm-up", (double)(now - s->t0_ns) / 1e9, s->warmup);
        sleep_ns(COORD_TICK_NS);
    }
    take_snapshot(o, &r->b);
    r->measured = measuring;
    if (r->day_trough < 0)
        r->day_trough = 0;
    if (r->interrupted)
        return false;

    /* Drain: DRAIN_TIMEOUT_S, extended by a second at a time (up to
     * DRAIN_MAX_S) while what is still in flight keeps shrinking, so that
     * late messages are not mistaken for lost ones. */
    STORE_REL(G.phase, PH_PAUSE);
    double start = now_s(), deadline = start + DRAIN_TIMEOUT_S;
    uint64_t left = UINT64_MAX;
    while (!interrupted() && !(r->drained = drained(k))) {
        progress_tick(pg, o, k, "draining", now_s() - start, 0);
        if (now_s() >= deadline) {
            uint64_t n = in_flight(k);
            if (n >= left)
                break; /* stuck: what is missing now is lost */
            if (now_s() >= start + DRAIN_MAX_S) {
                r->drain_cut = true; /* still arriving: late, not lost */
                break;
            }
            left = n;
            deadline = now_s() + 1.0;
        }
        sleep_ns(DRAIN_CHECK_NS);
    }
    if (r->drained && now_s() > start + DRAIN_TIMEOUT_S)
        fprintf(stderr, "ringcast-bench: note: step %u took %.1f s to drain\n", k, now_s() - start);
    if (interrupted()) {
        r->interrupted = true;
        return false;
    }
    STORE_REL(G.phase, PH_CUT);
    deadline = now_s() + CUT_TIMEOUT_S;
    for (uint32_t t = 0; t < G.T; t++)
        while (LOAD_ACQ(G.thr[t].cut_done) != k + 1 && now_s() < deadline)
            sleep_ns(1000000);
    flow_sum(&r->end);
    r->missing = (int64_t)flow_missing();
    r->groups_lossy = (int64_t)flow_groups_lossy();
    r->rss_kb = proc_peak_rss_kb(o->server_pid);
    merge_hist(r, k);
    return !all_pubs_dead();
}

/* The knee of a sweep: the highest offered rate of an open step that sent at
 * least KNEE_SUSTAINED of its offer with p99 within KNEE_LATENCY_FACTOR of
 * the lightest open step's p99; -1 if none. */
static double find_knee(const step_result *rs, uint32_t n)
{
    double base = -1, knee = -1;
    for (uint32_t k = 0; k < n; k++) {
        const step_result *r = &rs[k];
        if (!r->s.open || !r->measured || r->interrupted)
            continue;
        double p99 = (double)rc_hist_percentile(&r->hist, 99);
        if (base < 0)
            base = p99 > 0 ? p99 : 1;
        if (result_msgs_per_s(r) >= KNEE_SUSTAINED * r->s.rate && p99 <= KNEE_LATENCY_FACTOR * base &&
            r->s.rate > knee)
            knee = r->s.rate;
    }
    return knee;
}

/* Flood: what the server refused and whom it disconnected, in words. */
static void flood_summary(const step_result *r)
{
    const counters *c = &r->end;
    char codes[256] = "";
    size_t at = 0;
    uint64_t refused = 0;
    for (int i = 0; i < FLOOD_NCODES; i++) {
        refused += c->refused[i];
        if (c->refused[i] && at < sizeof codes)
            at += (size_t)snprintf(codes + at, sizeof codes - at, "%s%s %" PRIu64, at ? ", " : "",
                                   flood_code_name((flood_code)i), c->refused[i]);
    }
    fprintf(stderr, "ringcast-bench: flood: %" PRIu64 " sends refused%s%s%s, %" PRIu64 " of %u readers "
                    "and %" PRIu64 " of %u publishers disconnected (%" PRIu64 " bye), %" PRId64
                    " of %u groups with gaps or missing deliveries\n",
            refused, refused ? " (" : "", codes, refused ? ")" : "", c->readers_lost, g_plan.C,
            c->writers_lost, g_plan.P, c->byes, r->groups_lossy, g_plan.G);
}

/* Says loudly what went wrong; returns the exit status for the results. */
static int verdict(const step_result *rs, uint32_t n)
{
    const step_result *last = &rs[n - 1];
    const counters *c = &last->end;
    uint64_t delivered = 0;
    for (uint32_t k = 0; k < n; k++)
        delivered += rs[k].b.n.deliveries - rs[k].a.n.deliveries;
    if (last->s.flood) /* a flooded server may deliver only after the window */
        delivered = c->deliveries;
    double worst = 0;
    for (uint32_t k = 0; k < n; k++)
        for (uint32_t t = 0; t < G.T; t++) {
            double secs = result_secs(&rs[k]);
            double p = 100.0 * (rs[k].b.thread_cpu[t] - rs[k].a.thread_cpu[t]) / secs;
            worst = p > worst ? p : worst;
        }
    if (worst > THREAD_BUSY_WARN_PCT)
        fprintf(stderr, "ringcast-bench: warning: a generator thread used %.0f%% of a core; the "
                        "generator may be the bottleneck (try --threads %u)\n", worst,
                G.T < MAX_THREADS ? G.T + 1 : G.T);
    if (c->unsent)
        fprintf(stderr, "ringcast-bench: note: %" PRIu64 " messages due in an open-loop window were "
                        "never sent: the offered load was not sustained\n", c->unsent);
    if (c->rejected)
        fprintf(stderr, "ringcast-bench: note: the server refused %" PRIu64 " publishes\n", c->rejected);
    if (last->s.flood)
        flood_summary(last);
    uint64_t missing = last->missing > 0 ? (uint64_t)last->missing : 0;
    if (missing && last->drain_cut) {
        fprintf(stderr, "ringcast-bench: note: %" PRIu64 " deliveries were still on their way when "
                        "the drain ended after %.0f s (late, not lost: they kept arriving)\n",
                missing, DRAIN_MAX_S);
        missing = 0;
    }
    if (c->gaps || c->dups || c->reorders || c->stray || c->corrupt || c->short_fanout ||
        c->lost_conns || missing) {
        fprintf(stderr,
                "ringcast-bench: FAILED: unexplained loss or disorder: gaps=%" PRIu64 " dups=%" PRIu64
                " reorders=%" PRIu64 " stray=%" PRIu64 " corrupt=%" PRIu64 " missing=%" PRIu64
                " short_fanout=%" PRIu64 " lost_conns=%" PRIu64 "\n",
                c->gaps, c->dups, c->reorders, c->stray, c->corrupt, missing, c->short_fanout,
                c->lost_conns);
        return 3;
    }
    if (delivered == 0) {
        fprintf(stderr, "ringcast-bench: nothing was delivered\n");
        return 2;
    }
    return 0;
}

/* --timeline FILE: one row per second since the load started, the
 * threads' per-second counts and histograms merged (they are final: the
 * threads have ended). unix_s is the second's start on CLOCK_REALTIME. */
static int write_timeline(const options *o)
{
    if (!o->timeline || G.T == 0 || !G.thr[0].tl)
        return 0;
    FILE *f = fopen(o->timeline, "w");
    if (!f) {
        fprintf(stderr, "ringcast-bench: %s: %s\n", o->timeline, strerror(errno));
        return -1;
    }
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    uint64_t mono = mono_ns(), t0 = G.steps[0].t0_ns;
    double real_t0 = (double)rt.tv_sec + (double)rt.tv_nsec / 1e9 - (double)(mono - t0) / 1e9;
    rc_hist h;
    if (rc_hist_init(&h, LAT_MAX_NS) < 0) {
        fclose(f);
        return -1;
    }
    fprintf(f, "t_s,unix_s,phase,sent,lat_count,lat_p50_us,lat_p90_us,lat_p99_us,lat_max_us\n");
    uint32_t n = G.thr[0].tl_n;
    double end = G.steps[0].warmup + G.steps[0].duration;
    for (uint32_t i = 0; i < n && t0 > 0; i++) {
        rc_hist_reset(&h);
        uint64_t sent = 0;
        for (uint32_t t = 0; t < G.T; t++) {
            rc_hist_merge(&h, &G.thr[t].tl[i]);
            sent += G.thr[t].tl_sent[i];
        }
        if (i >= end && sent == 0 && h.total == 0)
            break;
        const char *part = i < G.steps[0].warmup ? "warmup" : i < end ? "window" : "drain";
        fprintf(f, "%u,%.3f,%s,%" PRIu64 ",%" PRIu64 ",%.1f,%.1f,%.1f,%.1f\n", i, real_t0 + i, part, sent, h.total,
                (double)rc_hist_percentile(&h, 50) / 1e3, (double)rc_hist_percentile(&h, 90) / 1e3,
                (double)rc_hist_percentile(&h, 99) / 1e3, (double)h.max / 1e3);
    }
    rc_hist_free(&h);
    if (fclose(f) != 0) {
        fprintf(stderr, "ringcast-bench: %s: %s\n", o->timeline, strerror(errno));
        return -1;
    }
    return 0;
}

/* Lays out the steps of the chosen mode. */
static void plan_steps(const options *o)
{
    G.nsteps = 0;
    step base = { .warmup = o->warmup, .duration = o->duration };
    if (o->mode == MODE_MAX || (o->mode == MODE_SWEEP && o->peak <= 0)) {
        G.steps[G.nsteps] = base;
        G.steps[G.nsteps++].open = false;
    }
    if (o->mode == MODE_FLOOD) {
        G.steps[G.nsteps] = base;
        G.steps[G.nsteps++].flood = true;
    }
    if (o->mode == MODE_RATE) {
        G.steps[G.nsteps] = base;
        G.steps[G.nsteps].open = true;
        if (o->sched.n)
            G.steps[G.nsteps].offer_mult = rc_schedule_mean_mult(&o->sched, o->warmup, o->warmup + o->duration);
        G.steps[G.nsteps++].rate = o->rate;
    }
    if (o->mode == MODE_SWEEP) {
        for (uint32_t i = 0; i < o->npcts && G.nsteps < MAX_STEPS; i++) {
            G.steps[G.nsteps] = base;
            G.steps[G.nsteps].open = true;
            G.steps[G.nsteps].pct = o->pcts[i];
            G.steps[G.nsteps++].rate = o->peak * o->pcts[i] / 100.0; /* 0: after the peak step */
        }
    }
}

/* chat-day: the compressed day in words, on stderr. */
static void day_summary(const step_result *r)
{
    if (!(g_plan.cfg.peak_to_trough > 1) || !r->s.open || !r->measured)
        return;
    double secs = result_secs(r);
    uint64_t msgs = r->b.n.published - r->a.n.published;
    uint64_t deliv = r->b.n.deliveries - r->a.n.deliveries;
    char a[16], b[16], c[16], d[16];
    fprintf(stderr, "ringcast-bench: %s: one day compressed into %.0f s: %" PRIu64 " messages, %" PRIu64
                    " deliveries (busiest hour %.0f msgs/s, quietest %.0f: %.1fx); at real speed this"
                    " curve is %s messages/day, %s deliveries/day (mean %s msgs/s, %s deliveries/s)\n",
            g_plan.cfg.name, secs, msgs, deliv, r->day_peak, r->day_trough,
            r->day_trough > 0 ? r->day_peak / r->day_trough : 0,
            human((double)msgs / secs * 86400, a, sizeof a), human((double)deliv / secs * 86400, b, sizeof b),
            human((double)msgs / secs, c, sizeof c), human((double)deliv / secs, d, sizeof d));
}

static int coordinate(const options *o, step_result *rs, uint32_t *nres)
{
    *nres = 0;
    int rc = wait_setup();
    if (rc != 0)
        return rc;
    STORE_REL(G.running, true);
    double planned = 0;
    for (uint32_t k = 0; k < G.nsteps; k++)
        planned += G.steps[k].warmup + G.steps[k].duration;
    progress pg = { .tty = isatty(STDERR_FILENO) };
    pg.on = o->progress == 1 || (o->progress < 0 && pg.tty && planned > PROGRESS_MIN_RUN_S);
    double peak = o->peak;
    for (uint32_t k = 0; k < G.nsteps; k++) {
        step *s = &G.steps[k];
        if (s->open && !(s->rate > 0)) {
            if (!(peak > 0)) {
                fprintf(stderr, "ringcast-bench: the peak step measured no throughput; no sweep\n");
                break;
            }
            s->rate = peak * s->pct / 100.0;
        }
        step_result *r = &rs[k];
        if (rc_hist_init(&r->hist, LAT_MAX_NS) < 0) {
            fprintf(stderr, "ringcast-bench: out of memory\n");
            return 1;
        }
        r->s = *s;
        *nres = k + 1;
        bool go_on = run_step(o, k, r, &pg);
        r->s = *s;
        if (r->s.open == false && o->mode == MODE_SWEEP)
            peak = result_msgs_per_s(r);
        if (r->interrupted)
            break;
        progress_clear(&pg);
        report_line(o, r);
        day_summary(r);
        if (!go_on)
            break;
    }
    STORE_REL(G.phase, PH_DONE);
    progress_clear(&pg);
    return 0;
}

/* ---- main ---- */

static int setup_threads(const options *o)
{
    const plan *pl = &g_plan;
    G.nconns = pl->C + pl->P;
    G.T = o->threads < G.nconns ? o->threads : G.nconns;
    G.conns = calloc(G.nconns, sizeof *G.conns);
    G.thr = calloc(G.T, sizeof *G.thr);
    if (!G.conns || !G.thr)
        return -1;
    for (uint32_t t = 0; t < G.T; t++) {
        gen_thread *th = &G.thr[t];
        th->id = t;
        th->ep = epoll_create1(EPOLL_CLOEXEC);
        th->conns = calloc(G.nconns / G.T + 2, sizeof *th->conns);
        th->dirty = calloc(G.nconns / G.T + 2, sizeof *th->dirty);
        th->pubs = calloc(pl->P / G.T + 1, sizeof *th->pubs);
        th->deliv = calloc(pl->P, sizeof *th->deliv);
        th->hist = calloc(G.nsteps, sizeof *th->hist);
        if (th->ep < 0 || !th->conns || !th->dirty || !th->pubs || !th->deliv || !th->hist)
            return -1;
        for (uint32_t k = 0; k < G.nsteps; k++)
            if (rc_hist_init(&th->hist[k], LAT_MAX_NS) < 0)
                return -1;
        if (o->timeline) {
            uint32_t n = (uint32_t)ceil(o->warmup + o->duration) + TIMELINE_SLACK_S;
            th->tl = calloc(n, sizeof *th->tl);
            th->tl_sent = calloc(n, sizeof *th->tl_sent);
            if (!th->tl || !th->tl_sent)
                return -1;
            for (uint32_t i = 0; i < n; i++)
                if (rc_hist_init(&th->tl[i], LAT_MAX_NS) < 0)
                    return -1;
            th->tl_n = n;
        }
    }
    for (uint32_t i = 0; i < G.nconns; i++) {
        bench_conn *c = &G.conns[i];
        c->fd = -1;
        c->role = i < pl->C ? BENCH_SUB : BENCH_PUB;
        c->index = c->role == BENCH_SUB ? i : i - pl->C;
        gen_thread *th = &G.thr[c->index % G.T];
        c->owner = th;
        th->conns[th->nconns++] = c;
        if (c->role == BENCH_PUB) {
            th->pubs[th->npubs++] = c->index;
            G.pubs[c->index].conn = c;
        }
    }
    return 0;
}

static void free_threads(void)
{
    for (uint32_t i = 0; G.conns && i < G.nconns; i++) {
        bench_conn *c = &G.conns[i];
        if (c->fd >= 0)
            close(c->fd);
        if (G.drv->conn_free)
            G.drv->conn_free(c);
        free(c->in);
        rc_buf_free(&c->out);
    }
    for (uint32_t t = 0; G.thr && t < G.T; t++) {
        gen_thread *th = &G.thr[t];
        if (th->ep > 0)
            close(th->ep);
        for (uint32_t k = 0; th->hist && k < G.nsteps; k++)
            rc_hist_free(&th->hist[k]);
        free(th->hist);
        for (uint32_t i = 0; th->tl && i < th->tl_n; i++)
            rc_hist_free(&th->tl[i]);
        free(th->tl);
        free(th->tl_sent);
        free(th->conns);
        free(th->dirty);
        free(th->pubs);
        free(th->deliv);
    }
    free(G.thr);
    free(G.conns);
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int run(const options *o, step_result *rs, uint32_t *nres)
{
    char port[8];
    snprintf(port, sizeof port, "%d", o->port ? o->port : G.drv->default_port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
    int rc = getaddrinfo(o->host, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "ringcast-bench: %s: %s\n", o->host, gai_strerror(rc));
        return 1;
    }
    g_addr = ai;
    if (setup_threads(o) < 0) {
        fprintf(stderr, "ringcast-bench: cannot allocate %u connections\n", G.nconns);
        freeaddrinfo(ai);
        return 1;
    }
    /* the workers must not take SIGINT: the coordinator handles it */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    rc = 0;
    for (uint32_t t = 0; t < G.T && rc == 0; t++) {
        if (pthread_create(&G.thr[t].tid, NULL, thread_main, &G.thr[t]) != 0) {
            fprintf(stderr, "ringcast-bench: cannot start thread %u\n", t);
            rc = 1;
        } else {
            G.thr[t].started = true;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0)
        rc = coordinate(o, rs, nres);
    STORE_REL(G.phase, PH_DONE);
    for (uint32_t t = 0; t < G.T; t++)
        if (G.thr[t].started)
            pthread_join(G.thr[t].tid, NULL);
    /* an interrupted step's histogram: the threads are gone, it is final */
    if (*nres > 0 && rs[*nres - 1].interrupted) {
        step_result *r = &rs[*nres - 1];
        merge_hist(r, r->k);
        flow_sum(&r->end);
        r->missing = -1;
        r->groups_lossy = -1;
        r->rss_kb = proc_peak_rss_kb(o->server_pid);
        report_line(o, r);
    }
    if (write_timeline(o) < 0 && rc == 0)
        rc = 1;
    free_threads();
    freeaddrinfo(ai);
    return rc;
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 1;
    G.opt = &o;
    G.drv = find_driver(o.system);
    if (!G.drv) {
        fprintf(stderr, "ringcast-bench: unknown system '%s' (ringcast, ringcast-ws, nats, redis, "
                        "jetstream, redis-streams)\n", o.system);
        return 1;
    }
    if ((o.presence || o.receipts || o.read_every) && G.drv != &bench_drv_ringcast &&
        G.drv != &bench_drv_ringcast_ws) {
        fprintf(stderr, "ringcast-bench: --presence, --receipts and --read-every are ringcast features\n");
        return 1;
    }
    struct sigaction sa = { .sa_handler = on_sigint };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();

    if (plan_build(&o.pc) < 0)
        return 1;
    plan_steps(&o);
    uint8_t *body = malloc(o.pc.body);
    step_result *rs = calloc(MAX_STEPS, sizeof *rs);
    if (!body || !rs || flow_init() < 0) {
        fprintf(stderr, "ringcast-bench: out of memory\n");
        free(body);
        free(rs);
        flow_free();
        plan_free();
        return 1;
    }
    bench_body_fill(body, o.pc.body);
    bench_params bp = { .groups = o.pc.groups, .prefix = o.pc.prefix, .body = body,
                        .body_len = o.pc.body, .presence = o.presence, .receipts = o.receipts, .echo = o.echo,
                        .read_every = o.read_every };
    if (G.drv->init(&bp) < 0) {
        fprintf(stderr, "ringcast-bench: out of memory preparing %s frames\n", G.drv->name);
        rc = 1;
    } else {
        uint32_t nres = 0;
        rc = run(&o, rs, &nres);
        if (nres > 0) {
            double knee = o.mode == MODE_SWEEP ? find_knee(rs, nres) : -1;
            if (o.mode == MODE_SWEEP && knee >= 0)
                fprintf(stderr, "ringcast-bench: sweep knee at about %.0f msgs/s offered\n", knee);
            else if (o.mode == MODE_SWEEP)
                fprintf(stderr, "ringcast-bench: the sweep found no knee\n");
            if (report_files(&o, rs, nres, knee) < 0 && rc == 0)
                rc = 1;
        }
        if (interrupted())
            rc = 130;
        else if (rc == 0 && nres > 0)
            rc = verdict(rs, nres);
    }
    G.drv->fini();
    for (uint32_t k = 0; k < MAX_STEPS; k++)
        rc_hist_free(&rs[k].hist);
    free(rs);
    flow_free();
    plan_free();
    free(body);
    return rc;
}
