/*
 * Open connections per client IP address, shared by every io thread, so
 * that one address cannot take the whole of max_connections
 * (max_connections_per_ip, src/ARCHITECTURE.md §8).
 *
 * An open-addressing table of (address, count) under one mutex: it is
 * touched twice per connection (accept and close), never per message.
 * Addresses are kept as 16 bytes, IPv4 as IPv4-mapped IPv6, so 127.0.0.1
 * over AF_INET and ::ffff:127.0.0.1 over AF_INET6 are one address.
 */
#ifndef RC_NET_IPLIMIT_H
#define RC_NET_IPLIMIT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define RC_IP_LEN 16u /* bytes of an address as the table keeps it */

typedef struct rc_ip {
    uint8_t b[RC_IP_LEN];
} rc_ip;

typedef struct rc_iplimit {
    pthread_mutex_t mu;
    uint32_t max_per_ip; /* connections one address may have open */
    struct rc_ip_slot *slots;
    uint32_t cap;        /* power of two, or 0 */
    uint32_t n;          /* addresses with at least one connection */
} rc_iplimit;

int rc_iplimit_init(rc_iplimit *t, uint32_t max_per_ip);
void rc_iplimit_free(rc_iplimit *t);
/* A new bound (a reload); any thread. */
void rc_iplimit_set_max(rc_iplimit *t, uint32_t max_per_ip);

/* The address of a socket's peer; false when it has none we can read (a
 * Unix socket): such a connection is not counted. */
bool rc_ip_of_peer(int fd, rc_ip *out);

/* One more connection from ip: false when ip has max_per_ip open already,
 * or when the table cannot grow. */
bool rc_iplimit_take(rc_iplimit *t, const rc_ip *ip);
/* One connection from ip closed. */
void rc_iplimit_release(rc_iplimit *t, const rc_ip *ip);
/* Open connections from ip now (for tests and metrics). */
uint32_t rc_iplimit_count(rc_iplimit *t, const rc_ip *ip);

#endif
