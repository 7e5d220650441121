/* Shared helpers for CUnit programs: running suites and starting ringcastd. */
#ifndef RC_TESTUTIL_H
#define RC_TESTUTIL_H

#include <CUnit/CUnit.h>
#include <stdint.h>
#include <sys/types.h>

/* Runs every registered suite verbosely; returns the process exit code. */
int rc_test_run(void);

/* A free loopback TCP port (bound and released). */
uint16_t rc_test_free_port(void);

/* A blocking TCP connection to 127.0.0.1:port whose sends and receives give
 * up after timeout_ms (SO_SNDTIMEO, SO_RCVTIMEO). The fd, or -1. */
int rc_test_tcp_connect(uint16_t port, int timeout_ms);

typedef struct rc_test_server {
    pid_t pid;
    uint16_t port, admin_port;
    char dir[64]; /* its data directory, under /tmp */
} rc_test_server;

/* Starts $RINGCASTD on free ports and a fresh data directory with extra
 * args (NULL-terminated) and waits until /readyz says ready. 0 or -1. */
int rc_test_server_start(rc_test_server *s, const char *const *extra_args);
/* Starts $RINGCASTD again on the data directory s->dir (new ports). */
int rc_test_server_restart(rc_test_server *s, const char *const *extra_args);
/* Removes a /tmp/ringcast-test-* directory and what it holds. */
void rc_test_remove_dir(const char *dir);

/* SIGTERM and wait; returns the exit status (or -1). Removes the data
 * directory; the _keep variant leaves it for a restart. */
int rc_test_server_stop(rc_test_server *s);
int rc_test_server_stop_keep(rc_test_server *s);

/* Starts $RINGCAST_KAFKA_DEV and reads its `bootstrap=HOST:PORT` line into
 * bootstrap. Returns its pid, or -1. The _args variant passes it flags
 * (NULL-terminated, e.g. "--rtt-ms", "100"). */
pid_t rc_test_kafka_dev_start(char *bootstrap, size_t len);
pid_t rc_test_kafka_dev_start_args(char *bootstrap, size_t len, const char *const *args);
void rc_test_kafka_dev_stop(pid_t pid);

/* Reads the whole dead-letter topic with kcat (an independent client) and
 * counts the records whose key is `key` and whose headers contain `header`
 * (e.g. "reason=expired"); *total receives the count of all records. -1 when
 * kcat cannot run. */
int rc_test_kcat_count(const char *bootstrap, const char *key, const char *header, unsigned *total);

/* Reads the whole dead-letter topic with kcat and hands each record's
 * value (the MessagePack map) to fn, in topic order. Returns the records
 * read, or -1 when kcat cannot run. */
typedef void (*rc_test_value_fn)(void *ud, const char *value, uint32_t len);
int rc_test_kcat_values(const char *bootstrap, rc_test_value_fn fn, void *ud);

/* GET path on 127.0.0.1:port; returns the malloc'ed body (NULL on failure)
 * and the HTTP status in *status. */
char *rc_test_http_get(uint16_t port, const char *path, int *status);

/* Reads /metrics and returns the value of the first line starting with
 * `prefix` (e.g. "ringcast_connections_open{io=\"0\"}"), summing lines that
 * match when sum is set. -1 on failure. */
double rc_test_metric(uint16_t admin_port, const char *prefix, int sum);

/* A process's resident set (VmRSS in /proc/PID/status), kB; -1 if unknown. */
long rc_test_rss_kb(pid_t pid);

#endif
