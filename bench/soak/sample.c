/*
 * The server as the operating system and its own metrics see it: VmRSS,
 * VmHWM and Threads from /proc/PID/status, utime + stime from
 * /proc/PID/stat, the number of entries of /proc/PID/fd, and a few counters
 * of the admin server's /metrics page (summed over their labels). Every
 * read is bounded: the metrics request by METRICS_TIMEOUT_MS and
 * METRICS_MAX bytes.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proc.h"
#include "soak.h"

#define METRICS_TIMEOUT_MS 2000
#define METRICS_MAX (1u << 20)

static long status_field(long pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t kn = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kn) == 0 && line[kn] == ':') {
            v = strtol(line + kn + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* Counts /proc/PID/fd entries, and by what they point at. */
static long count_fds(long pid, soak_sample *s)
{
    char path[64], link[128], target[256];
    snprintf(path, sizeof path, "/proc/%ld/fd", pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        n++;
        snprintf(link, sizeof link, "%s/%.16s", path, e->d_name);
        ssize_t k = readlink(link, target, sizeof target - 1);
        target[k > 0 ? k : 0] = '\0';
        if (strncmp(target, "socket:", 7) == 0)
            s->fd_sockets++;
        else if (target[0] == '/')
            s->fd_files++;
        else
            s->fd_other++;
    }
    closedir(d);
    return n;
}

/* GET /metrics into a malloc'd, NUL-terminated buffer; NULL on failure. */
static char *fetch_metrics(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    char *buf = malloc(METRICS_MAX + 1);
    size_t len = 0;
    if (!buf || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1))
        goto fail;
    uint64_t deadline = soak_now_ns() + (uint64_t)METRICS_TIMEOUT_MS * 1000000u;
    for (;;) {
        uint64_t now = soak_now_ns();
        struct pollfd p = { fd, POLLIN, 0 };
        if (now >= deadline || poll(&p, 1, (int)((deadline - now) / 1000000u) + 1) <= 0)
            goto fail;
        ssize_t r = recv(fd, buf + len, METRICS_MAX - len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto fail;
        if (r == 0)
            break;
        len += (size_t)r;
        if (len == METRICS_MAX)
            break;
    }
    close(fd);
    buf[len] = '\0';
    return buf;
fail:
    close(fd);
    free(buf);
    return NULL;
}

/* Sum of every series of metric `name` (any labels) in text. */
static uint64_t metric_sum(const char *text, const char *name)
{
    size_t nl = strlen(name);
    uint64_t sum = 0;
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, nl) != 0 || (p[nl] != '{' && p[nl] != ' '))
            continue;
        const char *v = p + nl;
        if (*v == '{' && !(v = strchr(v, '}')))
            continue;
        sum += strtoull(v + 1, NULL, 10);
    }
    return sum;
}

void soak_sample_take(const soak_options *o, soak_sample *s)
{
    memset(s, 0, sizeof *s);
    s->rss_kb = status_field(o->server_pid, "VmRSS");
    s->hwm_kb = status_field(o->server_pid, "VmHWM");
    s->threads = status_field(o->server_pid, "Threads");
    s->anon_kb = status_field(o->server_pid, "RssAnon");
    s->file_kb = status_field(o->server_pid, "RssFile");
    s->fds = count_fds(o->server_pid, s);
    s->cpu_s = bench_proc_cpu_s(o->server_pid);
    s->alive = s->rss_kb >= 0;
    s->broker_rss_kb = o->broker_pid ? status_field(o->broker_pid, "VmRSS") : -1;
    char *m = o->admin_port ? fetch_metrics(o->admin_port) : NULL;
    if (!m)
        return;
    s->metrics = true;
    s->conns_open = metric_sum(m, "ringcast_connections_open");
    s->slow_marked = metric_sum(m, "ringcast_slow_consumers_total");
    s->slow_letters = metric_sum(m, "ringcast_slow_consumer_letters_total");
    s->slow_closed = metric_sum(m, "ringcast_slow_consumer_closed_total");
    s->pressure_holds = metric_sum(m, "ringcast_io_pressure_holds_total");
    s->errors = metric_sum(m, "ringcast_errors_total");
    s->letters_refused = metric_sum(m, "ringcast_letters_refused_total");
    s->spool_letters = metric_sum(m, "ringcast_dlq_spool_letters");
    s->sequenced = metric_sum(m, "ringcast_messages_sequenced_total");
    free(m);
}
