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

typedef struct rc_test_server {
    pid_t pid;
    uint16_t port, admin_port;
} rc_test_server;

/* Starts $RINGCASTD on free ports with extra args (NULL-terminated) and waits
 * until its TCP port accepts. 0 or -1. */
int rc_test_server_start(rc_test_server *s, const char *const *extra_args);
/* SIGTERM and wait; returns the exit status (or -1). */
int rc_test_server_stop(rc_test_server *s);

/* Reads /metrics and returns the value of the first line starting with
 * `prefix` (e.g. "ringcast_connections_open{io=\"0\"}"), summing lines that
 * match when sum is set. -1 on failure. */
double rc_test_metric(uint16_t admin_port, const char *prefix, int sum);

#endif
