/*
 * The whole server process: config, the consistent-hash ring, shards, io
 * threads and the admin HTTP endpoint, started and stopped in order.
 */
#ifndef RC_NET_SERVER_H
#define RC_NET_SERVER_H

#include "core/chash.h"
#include "core/letters.h"
#include "core/persist.h"
#include "dlq/dlq.h"
#include "core/shard.h"
#include "net/io.h"
#include "net/iplimit.h"
#include "ringcast/admin.h"
#include "ringcast/config.h"


typedef struct rc_server {
    rc_config cfg;
    _Atomic uint32_t io_pressure; /* readers over the pause mark on all io threads (net/io.h) */
    rc_iplimit per_ip;    /* open connections per client address (max_connections_per_ip) */
    bool per_ip_ready;
    rc_chash *chash;
    rc_shard *shards;
    rc_shard **shard_ptrs;
    uint32_t n_shards;
    rc_io *ios;
    rc_ring **out_rings;   /* per io thread: its outbound ring (shards' outlets) */
    rc_waker **out_wakers; /* per io thread: its waker */
    uint32_t n_io;
    rc_admin *admin;
    uint16_t port;        /* bound TCP port */
    int *listen_fds;      /* one listening socket per io thread, bound before anything else takes a port */
    int *http_fds;        /* the same for the public HTTP port (web page, WebSocket) */
    uint16_t http_port;   /* bound HTTP port */
    uint64_t started_ns;
    rc_persist *persist;  /* the data directory (RocksDB) */
    rc_dlq *dlq;          /* dead-letter producer (Kafka) */
    rc_letter_sink letters; /* the io threads' way to it */
    uint64_t recovered_groups;
    uint64_t recovery_ns; /* time the start-up recovery took */
    _Atomic int ready;    /* /readyz: recovery done and serving */
} rc_server;

/* Starts everything; on failure returns -1 with the cause in err and leaves
 * nothing running. */
int rc_server_start(rc_server *s, const rc_config *cfg, char *err, size_t errlen);
/* Drains and stops: stop input, let shards finish, say bye, close. */
void rc_server_stop(rc_server *s);

/* Prometheus text exposition of every counter. */
void rc_server_metrics(rc_server *s, struct rc_admin_body *out);

#endif
