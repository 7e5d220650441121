/*
 * The whole server process: config, the consistent-hash ring, shards, io
 * threads and the admin HTTP endpoint, started and stopped in order.
 */
#ifndef RC_NET_SERVER_H
#define RC_NET_SERVER_H

#include "app/api.h"
#include "core/chash.h"
#include "core/route.h"
#include "core/scaler.h"
#include "core/letters.h"
#include "core/persist.h"
#include "dlq/dlq.h"
#include "core/shard.h"
#include "net/io.h"
#include "net/iplimit.h"
#include "ringcast/admin.h"
#include "ringcast/config.h"

#include <pthread.h>


typedef struct rc_server {
    rc_config cfg;
    _Atomic uint32_t io_pressure; /* readers over the pause mark on all io threads (net/io.h) */
    rc_iplimit per_ip;    /* open connections per client address (max_connections_per_ip) */
    bool per_ip_ready;
    rc_routing routing;    /* the route io threads and shards follow (core/route.h) */
    rc_route *route;       /* the current route (changed under scale_lock) */
    rc_shard *shards;      /* max_shards of them; set up when first used, kept until stop */
    rc_shard **shard_ptrs;
    uint32_t max_shards;
    _Atomic uint32_t n_active; /* shards on the current route (any thread) */
    _Atomic uint32_t n_inited; /* shards set up so far: their rings and counters can be read (any thread) */
    rc_outlets outlets;    /* the io threads' outbound rings, for shards set up later */
    pthread_mutex_t scale_lock; /* one shard-count change at a time; none once stopping */
    bool scale_lock_ready, stopping;
    pthread_t scaler_thread;
    bool scaler_running;
    pthread_cond_t scaler_cond; /* wakes the autoscaler early to stop */
    rc_scaler scaler;      /* the autoscaler's decision state (its thread only) */
    _Atomic uint64_t *shard_qps; /* per shard: jobs/s over the last sample (the autoscaler writes) */
    _Atomic uint64_t scale_events[2]; /* shard-count changes: [0] grow, [1] shrink */
    _Atomic uint64_t move_ns_last;    /* how long the last change took, publication to every shard done */
    _Atomic uint64_t moves_failed;    /* changes refused (out of memory, thread start) */
    _Atomic uint64_t route_tokens;    /* tokens on the current route's ring */
    _Atomic uint64_t route_split_ppm; /* its table's entries answered from the tokens, per million */
    rc_live live;                     /* values a SIGHUP reload changes (core/live.h) */
    _Atomic uint64_t reloads[2];      /* reloads: [0] applied, [1] refused (bad file, busy) */
    bool scaler_bounds_due;           /* a reload changed the autoscaler's bounds (scale_lock) */
    rc_io *ios;
    rc_ring **out_rings;   /* per io thread: its outbound ring (shards' outlets) */
    rc_waker **out_wakers; /* per io thread: its waker */
    rc_room **out_rooms;   /* per io thread: where shards wait for room in its ring */
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
    rc_api api;           /* the Server API's session and counters (admin thread; app/api.h) */
} rc_server;

/* Starts everything; on failure returns -1 with the cause in err and leaves
 * nothing running. */
int rc_server_start(rc_server *s, const rc_config *cfg, char *err, size_t errlen);
/* Drains and stops: stop input, let shards finish, say bye, close. */
void rc_server_stop(rc_server *s);

/* Changes the shard count to n (min_shards..max_shards), moving only the
 * groups whose owner changes, in order (core/route.h); returns when every
 * shard has done its part. `why` is logged. 0, or -1 with err. Any thread
 * but an io or shard thread. */
int rc_server_resize(rc_server *s, uint32_t n, const char *why, char *err, size_t errlen);
/* Publishes r's ring facts (ringcast_route_tokens, ringcast_route_table_split_ratio); r is the route
 * being installed as s->route (start, or a resize under scale_lock). */
void rc_server_route_stats(rc_server *s, const rc_route *r);
/* Sets up shard i if it never ran (its rings, its stats). */
int rc_server_shard_setup(rc_server *s, uint32_t i, char *err, size_t errlen);
/* The autoscaler thread (scale_interval_ms; 0: none). */
int rc_server_scaler_start(rc_server *s, char *err, size_t errlen);
void rc_server_scaler_stop(rc_server *s);
/* A SIGHUP reload: next is the configuration read again (file, environment,
 * flags). What can change live changes, everywhere; what cannot keeps its
 * value and is named in `kept`. 0, or -1 with err (nothing changed). Main
 * thread. */
int rc_server_reload(rc_server *s, const rc_config *next, char *kept, size_t keptlen, char *err, size_t errlen);
/* Fills the live values (core/live.h) from a configuration. */
void rc_server_live_values(const rc_config *c, rc_live_values *v);
/* Logs whether hello checks tokens (auth_secret), and warns when it does not. */
void rc_server_log_auth(const rc_token_keys *k);

/* The Authorization header's value names admin_token ("Bearer TOKEN"),
 * compared in constant time; false without an admin_token. */
bool rc_server_admin_authorized(const rc_server *s, const char *authorization);

/* GET /admin/shards: JSON of every shard on the route. */
void rc_server_shards_json(rc_server *s, struct rc_admin_body *out);

/* Prometheus text exposition of every counter. */
void rc_server_metrics(rc_server *s, struct rc_admin_body *out);

#endif
