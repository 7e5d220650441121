/*
 * ringcast-bench: a fan-out load generator for ringcast and its peers.
 *
 * One thread, one epoll loop, non-blocking sockets. The run has four phases:
 * SETUP (connect, open sessions, subscribe; wait until every connection is
 * confirmed), RUN (warm-up, then the measured window: publishers keep their
 * windows full, see fanout.c), DRAIN (stop publishing, wait a bounded time
 * for what is in flight so lost messages can be told from late ones), DONE.
 * The generator shares the machine with the server, so it is built to be
 * cheap: frames are pre-encoded, each write carries many frames, each read
 * takes up to BENCH_IN_CAP bytes, and it reports its own CPU time.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
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

#include "driver.h"
#include "fanout.h"

#define BENCH_IN_CAP (128u << 10)     /* receive buffer per connection; > max frame */
#define OUT_COMPACT_AT (64u << 10)    /* move unsent bytes to the front past this offset */
#define READS_PER_EVENT 8             /* reads per readiness event before moving on */
#define MAX_EVENTS 256
#define LOOP_TICK_MS 10               /* longest epoll wait: phase deadlines are checked this often */
#define SETUP_TIMEOUT_S 60.0
#define DRAIN_TIMEOUT_S 5.0
#define DRAIN_CHECK_S 0.1
#define CONNECT_TIMEOUT_S 5
#define MAX_DURATION_S 600
#define MAX_WARMUP_S 60
#define MAX_CONNS 20000u
#define MAX_GROUPS 1000000u
#define MAX_BODY 60000u               /* stays below ringcast's default max_frame */
#define MAX_WINDOW 1000000u
#define BENCH_DEFAULT_WINDOW 4000u  /* see README.md, "The window" */

typedef enum phase { PH_SETUP, PH_RUN, PH_DRAIN, PH_DONE } phase;

typedef struct options {
    const char *system;
    const char *host;
    int port;                 /* 0: the driver's default */
    fanout_cfg fo;
    double duration;
    double warmup;
    const char *json;
    long server_pid;          /* 0: none */
} options;

/* Counters and clocks at one instant; a measurement is the difference of two. */
typedef struct snapshot {
    double t;                 /* CLOCK_MONOTONIC seconds */
    double cpu;               /* generator user + system seconds */
    double server_cpu;        /* server user + system seconds, -1 if unknown */
    fanout_counters n;
} snapshot;

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* utime + stime of pid from /proc/PID/stat (fields 14 and 15), or -1. */
static double proc_cpu_s(long pid)
{
    if (pid <= 0)
        return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
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

static snapshot take_snapshot(const options *o)
{
    snapshot s = { now_s(), self_cpu_s(), proc_cpu_s(o->server_pid), *fanout_counts() };
    return s;
}

/* ---- options ---- */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: ringcast-bench [fanout] [options]\n"
        "\n"
        "Fan-out load generator: G groups of M members spread over C subscriber\n"
        "connections; P publisher connections publish round robin to their groups\n"
        "(publisher j owns the groups g with g %% P == j), closed loop. Counts\n"
        "subscriber deliveries and checks per (subscriber, group) order.\n"
        "\n"
        "  --system NAME     ringcast | nats | redis (default ringcast)\n"
        "  --host HOST       server address (default 127.0.0.1)\n"
        "  --port PORT       server port (default 7400 / 4222 / 6379 by system)\n"
        "  --groups G        groups (default 1000)\n"
        "  --members M       subscriber connections per group, <= subs (default 10)\n"
        "  --subs C          subscriber connections (default 200); each joins\n"
        "                    about G*M/C groups\n"
        "  --pubs P          publisher connections (default 2)\n"
        "  --body BYTES      message body size, %u..%u (default 100); NATS and\n"
        "                    Redis bodies start with a 16-hex-digit sequence number\n"
        "  --window N        messages in flight per publisher (default %u): a\n"
        "                    message is done when acked (ringcast, Redis) and\n"
        "                    delivered to its M members\n"
        "  --duration S      measured seconds, 1..%d (default 10)\n"
        "  --warmup S        seconds of load before measuring, 0..%d (default 2)\n"
        "  --json FILE       also write the result as one JSON object to FILE\n"
        "  --server-pid PID  report this process's CPU %% over the measured window\n"
        "                    and its peak RSS (from /proc)\n"
        "  --help            this text\n"
        "\n"
        "Prints one line of key=value results. Exit status: 0 ok, 1 bad usage or\n"
        "setup failed, 2 nothing was delivered, 130 interrupted (SIGINT; partial\n"
        "results are printed; missing=-1, as in-flight messages were not waited for).\n",
        BENCH_SEQ_HEX, MAX_BODY, BENCH_DEFAULT_WINDOW, MAX_DURATION_S, MAX_WARMUP_S);
}

static int parse_u32(const char *s, const char *flag, uint32_t lo, uint32_t hi, uint32_t *v)
{
    char *end;
    errno = 0;
    unsigned long x = strtoul(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi) {
        fprintf(stderr, "ringcast-bench: %s wants an integer in %u..%u, got '%s'\n", flag, lo, hi, s);
        return -1;
    }
    *v = (uint32_t)x;
    return 0;
}

static int parse_secs(const char *s, const char *flag, double lo, double hi, double *v)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "ringcast-bench: %s wants seconds in %g..%g, got '%s'\n", flag, lo, hi, s);
        return -1;
    }
    *v = x;
    return 0;
}

/* Returns 0 to run, 1 after --help, -1 on bad usage. */
static int parse_options(int argc, char **argv, options *o)
{
    enum { O_SYSTEM = 256, O_HOST, O_PORT, O_GROUPS, O_MEMBERS, O_SUBS, O_PUBS, O_BODY,
           O_WINDOW, O_DURATION, O_WARMUP, O_JSON, O_SERVER_PID, O_HELP };
    static const struct option longopts[] = {
        { "system", required_argument, 0, O_SYSTEM },
        { "host", required_argument, 0, O_HOST },
        { "port", required_argument, 0, O_PORT },
        { "groups", required_argument, 0, O_GROUPS },
        { "members", required_argument, 0, O_MEMBERS },
        { "subs", required_argument, 0, O_SUBS },
        { "pubs", required_argument, 0, O_PUBS },
        { "body", required_argument, 0, O_BODY },
        { "window", required_argument, 0, O_WINDOW },
        { "duration", required_argument, 0, O_DURATION },
        { "warmup", required_argument, 0, O_WARMUP },
        { "json", required_argument, 0, O_JSON },
        { "server-pid", required_argument, 0, O_SERVER_PID },
        { "help", no_argument, 0, O_HELP },
        { 0, 0, 0, 0 },
    };
    *o = (options){ .system = "ringcast", .host = "127.0.0.1", .duration = 10, .warmup = 2,
                    .fo = { .groups = 1000, .members = 10, .subs = 200, .pubs = 2,
                            .window = BENCH_DEFAULT_WINDOW, .body = 100 } };
    uint32_t port = 0, pid = 0;
    int opt, rc = 0;
    while (rc == 0 && (opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case O_SYSTEM: o->system = optarg; break;
        case O_HOST: o->host = optarg; break;
        case O_PORT: rc = parse_u32(optarg, "--port", 1, 65535, &port); break;
        case O_GROUPS: rc = parse_u32(optarg, "--groups", 1, MAX_GROUPS, &o->fo.groups); break;
        case O_MEMBERS: rc = parse_u32(optarg, "--members", 1, MAX_CONNS, &o->fo.members); break;
        case O_SUBS: rc = parse_u32(optarg, "--subs", 1, MAX_CONNS, &o->fo.subs); break;
        case O_PUBS: rc = parse_u32(optarg, "--pubs", 1, MAX_CONNS, &o->fo.pubs); break;
        case O_BODY: rc = parse_u32(optarg, "--body", BENCH_SEQ_HEX, MAX_BODY, &o->fo.body); break;
        case O_WINDOW: rc = parse_u32(optarg, "--window", 1, MAX_WINDOW, &o->fo.window); break;
        case O_DURATION: rc = parse_secs(optarg, "--duration", 1, MAX_DURATION_S, &o->duration); break;
        case O_WARMUP: rc = parse_secs(optarg, "--warmup", 0, MAX_WARMUP_S, &o->warmup); break;
        case O_JSON: o->json = optarg; break;
        case O_SERVER_PID: rc = parse_u32(optarg, "--server-pid", 1, INT32_MAX, &pid); break;
        case O_HELP: case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
    }
    if (rc < 0)
        return -1;
    for (; optind < argc; optind++) {
        if (strcmp(argv[optind], "fanout") != 0) {
            fprintf(stderr, "ringcast-bench: unknown workload '%s' (only 'fanout')\n", argv[optind]);
            return -1;
        }
    }
    if (o->fo.subs + o->fo.pubs > MAX_CONNS) {
        fprintf(stderr, "ringcast-bench: at most %u connections\n", MAX_CONNS);
        return -1;
    }
    o->port = (int)port;
    o->server_pid = pid;
    return 0;
}

static const bench_driver *find_driver(const char *name)
{
    static const bench_driver *const all[] = { &bench_drv_ringcast, &bench_drv_nats, &bench_drv_redis };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->name, name) == 0)
            return all[i];
    return NULL;
}

/* ---- connections ---- */

typedef struct generator {
    const options *opt;
    const bench_driver *drv;
    int ep;
    bench_conn *conns;        /* [C + P]: subscribers first, then publishers */
    uint32_t nconns;
    bench_conn **dirty;       /* connections with bytes to write */
    uint32_t ndirty;
    uint32_t dead;
} generator;

static generator g_gen;

int bench_reply(bench_conn *c, const void *p, size_t n)
{
    if (rc_buf_append(&c->out, p, n) < 0)
        return -1;
    if (!c->dirty) {
        c->dirty = true;
        g_gen.dirty[g_gen.ndirty++] = c;
    }
    return 0;
}

static void mark_dirty(bench_conn *c)
{
    if (!c->dirty && c->out.len > c->out_off) {
        c->dirty = true;
        g_gen.dirty[g_gen.ndirty++] = c;
    }
}

static const char *conn_name(const bench_conn *c, char *buf, size_t n)
{
    snprintf(buf, n, "%c%u", c->role == BENCH_SUB ? 's' : 'p', c->index);
    return buf;
}

static void conn_kill(bench_conn *c, const char *why)
{
    if (c->dead)
        return;
    char name[24];
    fprintf(stderr, "ringcast-bench: connection %s lost: %s\n", conn_name(c, name, sizeof name), why);
    c->dead = true;
    epoll_ctl(g_gen.ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    g_gen.dead++;
    fanout_count_error();
}

static int set_epollout(bench_conn *c, bool on)
{
    if (c->epollout == on)
        return 0;
    struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c };
    c->epollout = on;
    return epoll_ctl(g_gen.ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes what c has queued, as far as the socket takes it. */
static void conn_flush(bench_conn *c)
{
    while (!c->dead && c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (set_epollout(c, true) < 0)
                conn_kill(c, strerror(errno));
            break;
        } else {
            conn_kill(c, n == 0 ? "send returned 0" : strerror(errno));
        }
    }
    if (c->dead)
        return;
    if (c->out_off == c->out.len) {
        c->out_off = c->out.len = 0;
        if (set_epollout(c, false) < 0)
            conn_kill(c, strerror(errno));
    } else if (c->out_off >= OUT_COMPACT_AT) {
        memmove(c->out.data, c->out.data + c->out_off, c->out.len - c->out_off);
        c->out.len -= c->out_off;
        c->out_off = 0;
    }
}

static void flush_dirty(void)
{
    for (uint32_t i = 0; i < g_gen.ndirty; i++) {
        bench_conn *c = g_gen.dirty[i];
        c->dirty = false;
        conn_flush(c);
    }
    g_gen.ndirty = 0;
}

/* Reads what the socket holds (up to READS_PER_EVENT reads) and parses it. */
static void conn_read(bench_conn *c)
{
    for (int i = 0; i < READS_PER_EVENT && !c->dead; i++) {
        size_t space = c->in_cap - c->in_len;
        if (space == 0) {
            conn_kill(c, "an incoming item is larger than the receive buffer");
            return;
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, space, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            conn_kill(c, n == 0 ? "closed by the server" : strerror(errno));
            return;
        }
        c->in_len += (size_t)n;
        ssize_t used = g_gen.drv->parse(c, c->in, c->in_len);
        if (used < 0) {
            conn_kill(c, "protocol error");
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
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
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

/* Connects every connection and queues its setup. 0 or -1. */
static int open_all(const options *o)
{
    char port[8];
    snprintf(port, sizeof port, "%d", o->port ? o->port : g_gen.drv->default_port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
    int rc = getaddrinfo(o->host, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "ringcast-bench: %s: %s\n", o->host, gai_strerror(rc));
        return -1;
    }
    uint32_t *groups = malloc(sizeof *groups * fanout_max_groups());
    rc = groups ? 0 : -1;
    for (uint32_t i = 0; rc == 0 && i < g_gen.nconns; i++) {
        bench_conn *c = &g_gen.conns[i];
        c->role = i < o->fo.subs ? BENCH_SUB : BENCH_PUB;
        c->index = c->role == BENCH_SUB ? i : i - o->fo.subs;
        c->in_cap = BENCH_IN_CAP;
        c->in = malloc(c->in_cap);
        c->fd = c->in ? tcp_connect(ai) : -1;
        if (c->fd < 0) {
            fprintf(stderr, "ringcast-bench: connect to %s:%s (%s): %s\n", o->host, port,
                    g_gen.drv->name, c->in ? strerror(errno) : "out of memory");
            rc = -1;
            break;
        }
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
        uint32_t n = c->role == BENCH_SUB ? fanout_sub_groups(c->index, groups)
                                          : fanout_pub_groups(c->index, groups);
        rc = epoll_ctl(g_gen.ep, EPOLL_CTL_ADD, c->fd, &ev);
        if (rc == 0)
            rc = g_gen.drv->setup(c, groups, n);
        if (rc < 0)
            fprintf(stderr, "ringcast-bench: setup of connection %u failed\n", i);
        mark_dirty(c);
        if (g_gen.ndirty >= g_gen.nconns / 4 + 1)
            flush_dirty(); /* let the server work on early setups while we connect */
    }
    free(groups);
    freeaddrinfo(ai);
    return rc;
}

static void close_all(void)
{
    for (uint32_t i = 0; i < g_gen.nconns; i++) {
        bench_conn *c = &g_gen.conns[i];
        if (c->fd >= 0)
            close(c->fd);
        free(c->in);
        rc_buf_free(&c->out);
    }
    free(g_gen.conns);
    free(g_gen.dirty);
    if (g_gen.ep >= 0)
        close(g_gen.ep);
}

/* ---- the loop ---- */

static void poll_once(int timeout_ms)
{
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(g_gen.ep, evs, MAX_EVENTS, timeout_ms);
    for (int i = 0; i < n; i++) {
        bench_conn *c = evs[i].data.ptr;
        if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            conn_read(c);
        if (!c->dead && (evs[i].events & EPOLLOUT))
            conn_flush(c);
    }
    flush_dirty();
}

static uint32_t ready_count(void)
{
    uint32_t ready = 0;
    for (uint32_t i = 0; i < g_gen.nconns; i++)
        ready += !g_gen.conns[i].dead && g_gen.conns[i].pending == 0;
    return ready;
}

static bool all_pubs_dead(const options *o)
{
    for (uint32_t j = 0; j < o->fo.pubs; j++)
        if (!g_gen.conns[o->fo.subs + j].dead)
            return false;
    return true;
}

static bool drained(const options *o)
{
    for (uint32_t j = 0; j < o->fo.pubs; j++)
        if (!g_gen.conns[o->fo.subs + j].dead && fanout_outstanding(j) > 0)
            return false;
    return fanout_missing() == 0;
}

/* Runs the setup phase; 0 when every connection is confirmed. */
static int run_setup(const options *o)
{
    double deadline = now_s() + SETUP_TIMEOUT_S;
    while (!g_interrupted && !fanout_setup_failed() && g_gen.dead == 0) {
        if (ready_count() == g_gen.nconns)
            return 0;
        if (now_s() > deadline) {
            fprintf(stderr, "ringcast-bench: setup timed out after %.0f s (%u of %u connections ready)\n",
                    SETUP_TIMEOUT_S, ready_count(), g_gen.nconns);
            return -1;
        }
        poll_once(LOOP_TICK_MS);
    }
    if (!g_interrupted)
        fprintf(stderr, "ringcast-bench: setup failed against %s at %s\n", g_gen.drv->name, o->host);
    return -1;
}

/*
 * Runs warm-up and the measured window; fills *start and *end. Returns true
 * if the window began (else *start is the start of the warm-up).
 */
static bool run_load(const options *o, snapshot *start, snapshot *end)
{
    bench_conn *pubs = &g_gen.conns[o->fo.subs];
    *start = take_snapshot(o);
    double t_measure = start->t + o->warmup, t_end = t_measure + o->duration;
    bool measuring = o->warmup == 0;
    while (!g_interrupted && !all_pubs_dead(o)) {
        double t = now_s();
        if (!measuring && t >= t_measure) {
            *start = take_snapshot(o);
            measuring = true;
        }
        if (t >= t_end)
            break;
        for (uint32_t j = 0; j < o->fo.pubs; j++) {
            if (pubs[j].dead)
                continue;
            if (fanout_fill(&pubs[j]) < 0) {
                conn_kill(&pubs[j], "out of memory");
                continue;
            }
            mark_dirty(&pubs[j]);
        }
        flush_dirty();
        poll_once(LOOP_TICK_MS);
    }
    *end = take_snapshot(o);
    return measuring;
}

static void run_drain(const options *o)
{
    double deadline = now_s() + DRAIN_TIMEOUT_S, next_check = 0;
    while (!g_interrupted && now_s() < deadline) {
        if (now_s() >= next_check) {
            if (drained(o))
                return;
            next_check = now_s() + DRAIN_CHECK_S;
        }
        poll_once(LOOP_TICK_MS);
    }
}

/* ---- the report ---- */

static void report(const options *o, const snapshot *a, const snapshot *b, int64_t missing,
                   bool measured, bool interrupted)
{
    double secs = b->t - a->t > 1e-9 ? b->t - a->t : 1e-9;
    uint64_t published = b->n.published - a->n.published;
    uint64_t deliveries = b->n.deliveries - a->n.deliveries;
    double gen_cpu = 100.0 * (b->cpu - a->cpu) / secs;
    double srv_cpu = a->server_cpu >= 0 && b->server_cpu >= 0
                         ? 100.0 * (b->server_cpu - a->server_cpu) / secs : -1;
    long rss = proc_peak_rss_kb(o->server_pid);
    const fanout_counters *n = &b->n; /* correctness counters cover the whole run */
    printf("ringcast-bench system=%s workload=fanout groups=%u members=%u subs=%u pubs=%u "
           "body=%u window=%u seconds=%.2f measured=%s published=%" PRIu64 " deliveries=%" PRIu64
           " deliveries_per_s=%.0f msgs_per_s=%.0f gaps=%" PRIu64 " dups=%" PRIu64
           " reorders=%" PRIu64 " stray=%" PRIu64 " corrupt=%" PRIu64 " missing=%" PRId64
           " rejected=%" PRIu64 " short_fanout=%" PRIu64 " errors=%" PRIu64 " echoes=%" PRIu64
           " gen_cpu_pct=%.1f server_cpu_pct=%.1f server_peak_rss_kb=%ld interrupted=%d\n",
           g_gen.drv->name, o->fo.groups, o->fo.members, o->fo.subs, o->fo.pubs, o->fo.body,
           o->fo.window, secs, measured ? "window" : "warmup", published, deliveries,
           (double)deliveries / secs, (double)published / secs, n->gaps, n->dups, n->reorders,
           n->stray, n->corrupt, missing, n->rejected, n->short_fanout, n->errors, n->echoes,
           gen_cpu, srv_cpu, rss, interrupted);
    fflush(stdout);
    if (!o->json)
        return;
    FILE *f = fopen(o->json, "w");
    if (!f) {
        fprintf(stderr, "ringcast-bench: %s: %s\n", o->json, strerror(errno));
        return;
    }
    fprintf(f,
            "{\"system\":\"%s\",\"workload\":\"fanout\",\"groups\":%u,\"members\":%u,\"subs\":%u,"
            "\"pubs\":%u,\"body\":%u,\"window\":%u,\"seconds\":%.3f,\"measured\":\"%s\","
            "\"published\":%" PRIu64 ",\"deliveries\":%" PRIu64 ",\"deliveries_per_s\":%.1f,"
            "\"msgs_per_s\":%.1f,\"gaps\":%" PRIu64 ",\"dups\":%" PRIu64 ",\"reorders\":%" PRIu64
            ",\"stray\":%" PRIu64 ",\"corrupt\":%" PRIu64 ",\"missing\":%" PRId64
            ",\"rejected\":%" PRIu64 ",\"short_fanout\":%" PRIu64 ",\"errors\":%" PRIu64
            ",\"echoes\":%" PRIu64 ",\"gen_cpu_pct\":%.1f,\"server_cpu_pct\":%.1f,"
            "\"server_peak_rss_kb\":%ld,\"interrupted\":%s}\n",
            g_gen.drv->name, o->fo.groups, o->fo.members, o->fo.subs, o->fo.pubs, o->fo.body,
            o->fo.window, secs, measured ? "window" : "warmup", published, deliveries,
            (double)deliveries / secs, (double)published / secs, n->gaps, n->dups, n->reorders,
            n->stray, n->corrupt, missing, n->rejected, n->short_fanout, n->errors, n->echoes,
            gen_cpu, srv_cpu, rss, interrupted ? "true" : "false");
    fclose(f);
}

static int run(const options *o)
{
    g_gen.nconns = o->fo.subs + o->fo.pubs;
    g_gen.conns = calloc(g_gen.nconns, sizeof *g_gen.conns);
    g_gen.dirty = calloc(g_gen.nconns, sizeof *g_gen.dirty);
    g_gen.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!g_gen.conns || !g_gen.dirty || g_gen.ep < 0) {
        fprintf(stderr, "ringcast-bench: cannot allocate %u connections\n", g_gen.nconns);
        return 1;
    }
    for (uint32_t i = 0; i < g_gen.nconns; i++)
        g_gen.conns[i].fd = -1;
    if (open_all(o) < 0 || run_setup(o) < 0)
        return g_interrupted ? 130 : 1;
    fanout_start();
    snapshot start, end;
    bool measured = run_load(o, &start, &end);
    bool interrupted = g_interrupted;
    if (!interrupted)
        run_drain(o);
    report(o, &start, &end, interrupted ? -1 : (int64_t)fanout_missing(), measured, interrupted);
    if (interrupted)
        return 130;
    if (end.n.deliveries == start.n.deliveries) {
        fprintf(stderr, "ringcast-bench: nothing was delivered\n");
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 1;
    const bench_driver *drv = find_driver(o.system);
    if (!drv) {
        fprintf(stderr, "ringcast-bench: unknown system '%s' (ringcast, nats, redis)\n", o.system);
        return 1;
    }
    struct sigaction sa = { .sa_handler = on_sigint };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    g_gen.drv = drv;
    g_gen.ep = -1;
    uint8_t *body = malloc(o.fo.body);
    if (!body || fanout_init(&o.fo, drv) < 0) {
        free(body);
        return 1;
    }
    bench_body_fill(body, o.fo.body, 0);
    bench_params bp = { .groups = o.fo.groups, .body = body, .body_len = o.fo.body };
    if (drv->init(&bp) < 0) {
        fprintf(stderr, "ringcast-bench: out of memory preparing %s frames\n", drv->name);
        fanout_free();
        free(body);
        return 1;
    }
    rc = run(&o);
    close_all();
    drv->fini();
    fanout_free();
    free(body);
    return rc;
}
