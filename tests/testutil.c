#define _GNU_SOURCE
#include "testutil.h"

#include <CUnit/Basic.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_WAIT_MS 10000 /* how long a server may take to accept */
#define STOP_WAIT_MS 15000  /* how long SIGTERM may take */
#define PROBE_SETTLE_MS 3000 /* how long the start-up probes may take to be seen closed */

int rc_test_run(void)
{
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}

uint16_t rc_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t l = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || getsockname(fd, (struct sockaddr *)&a, &l) != 0) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    close(fd);
    return ntohs(a.sin_port);
}

int rc_test_tcp_connect(uint16_t port, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int port_accepts(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* The server accepts the start-up probes in its own time and holds each
 * one's place (max_connections, max_connections_per_ip) until it sees it
 * closed: a test that counts places must not race them. Waits, at most
 * PROBE_SETTLE_MS, until every probe was accepted or refused and none is
 * open. */
static void settle_probes(const rc_test_server *s, int probes)
{
    for (int waited = 0; waited < PROBE_SETTLE_MS; waited += 10) {
        static const char *const counted[] = { "ringcast_connections_accepted_total{",
                                               "ringcast_connections_rejected_total{",
                                               "ringcast_connections_rejected_per_ip_total{" };
        double seen = 0;
        for (size_t i = 0; i < sizeof(counted) / sizeof(counted[0]); i++) {
            double v = rc_test_metric(s->admin_port, counted[i], 1);
            seen += v > 0 ? v : 0;
        }
        if (seen >= probes && rc_test_metric(s->admin_port, "ringcast_connections_open{", 1) == 0)
            return;
        sleep_ms(10);
    }
}

int rc_test_server_start(rc_test_server *s, const char *const *extra)
{
    snprintf(s->dir, sizeof(s->dir), "/tmp/ringcast-test-XXXXXX");
    if (!mkdtemp(s->dir)) {
        fprintf(stderr, "cannot create a data directory: %s\n", strerror(errno));
        return -1;
    }
    return rc_test_server_restart(s, extra);
}

int rc_test_server_restart(rc_test_server *s, const char *const *extra)
{
    const char *bin = getenv("RINGCASTD");
    if (!bin) {
        fprintf(stderr, "RINGCASTD is not set\n");
        return -1;
    }
    s->port = rc_test_free_port();
    s->admin_port = rc_test_free_port();
    char port[8], admin[8];
    snprintf(port, sizeof(port), "%u", s->port);
    snprintf(admin, sizeof(admin), "%u", s->admin_port);
    const char *argv[64] = { bin, "--port", port, "--admin-port", admin, "--http-port", "0", "--data-dir", s->dir };
    int n = 9;
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    s->pid = fork();
    if (s->pid == 0) {
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int probes = 0; /* connections made to see the port listen */
    for (int waited = 0; waited < START_WAIT_MS; waited += 20) {
        int status = -1;
        int up = port_accepts(s->port);
        probes += up;
        char *body = up ? rc_test_http_get(s->admin_port, "/readyz", &status) : NULL;
        free(body);
        if (status == 200) {
            settle_probes(s, probes);
            return 0;
        }
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            fprintf(stderr, "ringcastd exited during start (status %d)\n", st);
            return -1;
        }
        sleep_ms(20);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    return -1;
}

/* Removes the server's data directory (one level of files and folders:
 * RocksDB keeps everything at the top level). */
void rc_test_remove_dir(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (strncmp(dir, "/tmp/ringcast-test-", 19) == 0 && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

int rc_test_server_stop(rc_test_server *s)
{
    int st = rc_test_server_stop_keep(s);
    rc_test_remove_dir(s->dir);
    return st;
}

int rc_test_server_stop_keep(rc_test_server *s)
{
    kill(s->pid, SIGTERM);
    for (int waited = 0; waited < STOP_WAIT_MS; waited += 10) {
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        sleep_ms(10);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    return -1;
}

char *rc_test_http_get(uint16_t port, const char *path, int *status)
{
    *status = -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    char req[256];
    int rl = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
    if (write(fd, req, (size_t)rl) < 0) {
        close(fd);
        return NULL;
    }
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    ssize_t n;
    while (buf && len < cap - 1 && (n = read(fd, buf + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    if (!buf)
        return NULL;
    buf[len] = '\0';
    if (strncmp(buf, "HTTP/1.", 7) == 0 && len > 12)
        *status = atoi(buf + 9);
    char *body = strstr(buf, "\r\n\r\n");
    if (body)
        memmove(buf, body + 4, strlen(body + 4) + 1);
    return buf;
}

double rc_test_metric(uint16_t admin_port, const char *prefix, int sum)
{
    int status;
    char *buf = rc_test_http_get(admin_port, "/metrics", &status);
    if (!buf)
        return -1;
    double total = -1;
    size_t pl = strlen(prefix);
    for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, prefix, pl) == 0) {
            /* The value follows the first space after the name and labels
             * (the prefix may already end with that space). */
            char *sp = pl && prefix[pl - 1] == ' ' ? line + pl - 1 : strchr(line + pl, ' ');
            double v = sp ? strtod(sp + 1, NULL) : 0;
            total = total < 0 ? v : total + v;
            if (!sum)
                break;
        }
    }
    free(buf);
    return total;
}

#define KAFKA_DEV_WAIT_MS 10000 /* ringcast-kafka-dev prints its address within this */
#define KAFKA_DEV_MAX_ARGS 16
#define KCAT_TIMEOUT_S 30
#define KCAT_MAX_BYTES (64u << 20) /* topic bytes rc_test_kcat_values reads at most */
#define KCAT_LEN_BYTES 4           /* kcat's %R: the value's length, 32-bit big-endian */

pid_t rc_test_kafka_dev_start(char *bootstrap, size_t len)
{
    return rc_test_kafka_dev_start_args(bootstrap, len, NULL);
}

pid_t rc_test_kafka_dev_start_args(char *bootstrap, size_t len, const char *const *args)
{
    const char *bin = getenv("RINGCAST_KAFKA_DEV");
    const char *argv[KAFKA_DEV_MAX_ARGS + 2] = { bin };
    int p[2], n = 1;
    for (; args && args[n - 1] && n <= KAFKA_DEV_MAX_ARGS; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    if (!bin || pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    FILE *f = fdopen(p[0], "r");
    char line[256] = "";
    struct pollfd pfd = { p[0], POLLIN, 0 };
    int ok = poll(&pfd, 1, KAFKA_DEV_WAIT_MS) == 1 && fgets(line, sizeof(line), f) &&
             strncmp(line, "bootstrap=", 10) == 0;
    fclose(f);
    if (!ok) {
        rc_test_kafka_dev_stop(pid);
        return -1;
    }
    line[strcspn(line, "\n")] = '\0';
    snprintf(bootstrap, len, "%s", line + 10);
    return pid;
}

void rc_test_kafka_dev_stop(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
}

int rc_test_kcat_count(const char *bootstrap, const char *key, const char *header, unsigned *total)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "timeout %d kcat -b %s -t ringcast.deadletter -C -e -o beginning -q -f '%%k\\t%%h\\n' 2>&1",
             KCAT_TIMEOUT_S, bootstrap);
    FILE *k = popen(cmd, "r");
    if (!k)
        return -1;
    char line[1024];
    size_t kl = strlen(key);
    unsigned n = 0, match = 0;
    while (fgets(line, sizeof(line), k)) {
        n++;
        match += strncmp(line, key, kl) == 0 && line[kl] == '\t' && strstr(line + kl, header) != NULL;
    }
    pclose(k);
    if (total)
        *total = n;
    return (int)match;
}

int rc_test_kcat_values(const char *bootstrap, rc_test_value_fn fn, void *ud)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "timeout %d kcat -b %s -t ringcast.deadletter -C -e -o beginning -q -f '%%R%%s' 2>/dev/null",
             KCAT_TIMEOUT_S, bootstrap);
    uint8_t *buf = malloc(KCAT_MAX_BYTES);
    FILE *k = buf ? popen(cmd, "r") : NULL;
    if (!k) {
        free(buf);
        return -1;
    }
    size_t n = fread(buf, 1, KCAT_MAX_BYTES, k);
    pclose(k);
    int records = 0;
    for (size_t off = 0; off + KCAT_LEN_BYTES <= n; records++) {
        uint32_t len = (uint32_t)buf[off] << 24 | (uint32_t)buf[off + 1] << 16 | (uint32_t)buf[off + 2] << 8 |
                       buf[off + 3];
        off += KCAT_LEN_BYTES;
        if (len > n - off)
            break;
        fn(ud, (const char *)buf + off, len);
        off += len;
    }
    free(buf);
    return records;
}

long rc_test_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}
