/*
 * ringcastd configuration: one struct, one table of keys, four sources.
 *
 * Every key has a default and may be set, from lowest to highest precedence,
 * in the INI file named by `--config FILE` (at top level or in any section;
 * the section name is ignored), in the environment variable RINGCAST_<KEY>
 * (key in upper case), and by the flag `--<key>` with '_' written as '-'
 * (`--http-port 7480` or `--http-port=7480`). ARCHITECTURE §8.
 *
 * config.c holds the table (name, type, default, bounds, help); the usage
 * text, the parser, the validation and the dump are all driven by it, so a
 * new key is one table row plus one field here. Every value is validated
 * when it is read: an unknown key, a bad number, a value out of bounds or
 * a bad enum is an error naming the key, the value and what is allowed.
 */
#ifndef RINGCAST_CONFIG_H
#define RINGCAST_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Sizes of the string fields, terminating NUL included. */
#define RC_CONFIG_HOST_SIZE 256u    /* host name or numeric address */
#define RC_CONFIG_PATH_SIZE 4096u   /* file system path */
#define RC_CONFIG_BROKERS_SIZE 1024u /* comma-separated host:port list */
#define RC_CONFIG_TOPIC_SIZE 250u   /* Kafka topic names are at most 249 bytes */
#define RC_CONFIG_TOKEN_SIZE 256u   /* admin bearer token */
#define RC_CONFIG_SECRETS_SIZE 2112u /* auth_secret: up to 8 secrets of 256 bytes, commas between */
#define RC_CONFIG_ENUM_SIZE 16u     /* enum keys, stored as their name */
#define RC_CONFIG_ORIGINS_SIZE 1024u /* comma-separated WebSocket origins */
#define RC_CONFIG_REPLY_SLACK 2048u /* max_reply_bytes >= max_frame + this: a msg (body plus envelope) always fits */

/*
 * The effective configuration. Field names equal key names; the comment
 * gives the default and the accepted range (strings: length in bytes).
 */
typedef struct rc_config {
    /* Network. Port 0 picks a free port (used by tests). */
    char host[RC_CONFIG_HOST_SIZE];       /* "127.0.0.1"; TCP and WebSocket listen address */
    uint16_t port;                        /* 7400; TCP protocol port */
    uint16_t http_port;                   /* 7480; public HTTP/WebSocket port */
    char admin_host[RC_CONFIG_HOST_SIZE]; /* "127.0.0.1"; admin HTTP listen address */
    uint16_t admin_port;                  /* 7481; admin HTTP port (/metrics, /healthz, ...) */
    char allowed_origins[RC_CONFIG_ORIGINS_SIZE]; /* ""; WebSocket Origins allowed, comma-separated (empty: any) */
    char admin_token[RC_CONFIG_TOKEN_SIZE]; /* ""; bearer token for /admin/..., empty: none */
    char auth_secret[RC_CONFIG_SECRETS_SIZE]; /* ""; HS256 secrets for hello tokens, comma-separated; empty: hello trusts user */

    /* Storage and dead letters. */
    char data_dir[RC_CONFIG_PATH_SIZE];   /* "./data"; history, snapshots, spool */
    char durability[RC_CONFIG_ENUM_SIZE]; /* "batch"; off | none | batch | sync (off: memory only) */
    uint32_t block_cache_mb;              /* 8; 1..65536, RocksDB block cache (index, filter, data blocks) */
    uint32_t tick_log_mb;                 /* 512; 1..65536, tick log segment files on disk before the oldest is folded */
    char kafka_brokers[RC_CONFIG_BROKERS_SIZE]; /* ""; empty: embedded development broker (mock cluster) */
    char dlq_topic[RC_CONFIG_TOPIC_SIZE]; /* "ringcast.deadletter" */
    uint64_t spool_max_bytes;             /* 268435456 (256 MiB); 4096..2^40, dead-letter spool bound */
    uint32_t dlq_breaker_ms;              /* 1000; 10..600000, open breaker's first wait before a probe */

    /* Shards and threads. min_shards <= shards <= max_shards. */
    uint32_t shards;                      /* 2; 1..256, shards at start */
    uint32_t min_shards;                  /* 1; 1..256, autoscaler floor */
    uint32_t max_shards;                  /* 8; 1..256, autoscaler ceiling */
    uint32_t conn_rate;                   /* 0; sends/s per connection (0: off) */
    uint32_t conn_burst;                  /* 0; bucket size (0: conn_rate) */
    uint32_t group_rate;                  /* 0; sends/s per group, all senders (0: off) */
    uint32_t group_burst;                 /* 0; bucket size (0: group_rate) */
    uint32_t scale_interval_ms;           /* 1000; 0..3600000, autoscaler sampling period (0: off) */
    uint32_t scale_cooldown_ms;           /* 10000; 0..86400000, quiet time after a shard-count change */
    uint32_t io_threads;                  /* 1; 1..64 */

    /* Protocol and group limits. */
    uint32_t max_frame;                   /* 65536; 16..16777216 bytes */
    uint32_t history_cache_mb;            /* 256; 0..1048576 MiB of history in memory (0: no bound) */
    uint32_t history_max;                 /* 1000; 1..1000000 messages kept per group */
    uint32_t dedup_window;                /* 1000; 0..1000000 message ids remembered per sender */
    uint64_t history_ttl;                 /* 604800 (7 days); seconds a message stays in history */
    uint32_t snapshot_interval_ms;        /* 1000; 1..3600000, a changed group's snapshot at least this often */
    uint32_t snapshot_every;              /* 1000; 1..1e8 changes per snapshot */
    uint32_t max_connections;             /* 20000; 1..1000000 */
    uint32_t max_connections_per_ip;      /* 4096; 1..1000000, open connections from one client IP */
    uint32_t hello_timeout_ms;            /* 10000; 1..3600000, time a connection has to say hello */
    uint32_t idle_timeout_ms;             /* 300000; 0 (never) ..86400000, time without a frame before close; ping at half */
    uint64_t max_reply_bytes;             /* 1048576; 4096..2^30, bytes of one hist reply or join backlog (paged past it) */
    uint32_t max_groups_per_session;      /* 1024; 1..1048576 */
    uint32_t max_members_per_group;       /* 100000; 1..10000000 */
    uint32_t inbox_scan_max;              /* 10000; 1..10000000, memberships one inbox looks at */

    /* Slow consumers. outbound_high_bytes <= outbound_kill_bytes. */
    uint64_t outbound_high_bytes;         /* 4194304; 1..2^40, queued bytes that mark a session slow */
    uint64_t outbound_kill_bytes;         /* 16777216; 1..2^40, queued bytes that close it */
    uint32_t outbound_stall_ms;           /* 500; 1..600000, time over outbound_high_bytes / 2 that makes a connection a slow consumer */
    char slow_consumer_policy[RC_CONFIG_ENUM_SIZE]; /* "letter"; letter (slow_consumer dead letters) | catchup (from history, src/net/catchup.c) */

    /* Internals. */
    uint32_t ring_capacity;               /* 65536; power of two in 2..2^30, slots per shard ring */
    uint32_t vnodes;                      /* 160; 1..65536 virtual nodes per shard on the hash ring */
    uint32_t recv_buffers;                /* 1024; power of two in 1..32768, provided buffers per io thread */
    uint32_t recv_buffer_size;            /* 16384; 512..1048576 bytes */
    uint32_t shutdown_timeout_ms;         /* 5000; 1..600000, drain time on SIGTERM */
    uint32_t max_queue_ms;                /* 2000; 1..600000, longest wait in a shard queue before a send expires */
    char log_level[RC_CONFIG_ENUM_SIZE];  /* "info"; debug | info | warn | error */
    char log_format[RC_CONFIG_ENUM_SIZE]; /* "text"; text (key=value) | json (one object per line) */
} rc_config;

/* Fill c with every key's default. */
void rc_config_defaults(rc_config *c);

/*
 * Build the configuration from defaults, the --config file, the environment
 * and argv (argv[0] is the program name; argc may be 0). Returns 0 on
 * success; 1 when --help, --version, --genconfig or a passing
 * --check-config FILE was answered on stdout (the caller exits 0); 2 when
 * --check-config found the file invalid (err says why; the caller exits 1);
 * -1 on error with a one-line message in err. c is written only on success.
 */
int rc_config_load(rc_config *c, int argc, char **argv, char *err, size_t errlen);

/* Calls fn with the name of every key whose value differs between a and b
 * (table order); returns how many. */
int rc_config_diff(const rc_config *a, const rc_config *b, void (*fn)(void *ud, const char *key), void *ud);

/* A complete INI file: every key with its default, help and allowed values
 * (ringcastd --genconfig). */
void rc_config_genconfig(FILE *out);

/* Usage: the flag/environment/file rules and every key with default and help. */
void rc_config_usage(FILE *out, const char *prog);

/*
 * One "key = value" line per key, in table order, for logging the effective
 * configuration. A non-empty admin_token is written as "<redacted>".
 */
void rc_config_dump(const rc_config *c, FILE *out);

#endif /* RINGCAST_CONFIG_H */
