/*
 * Dead letters to Kafka (ARCHITECTURE §7). rc_dlq owns one idempotent librdkafka
 * producer and implements core's rc_letter_sink: each letter becomes one
 * record on the dead-letter topic, key = group id, value = a MessagePack map,
 * headers reason, node and ts (proto/PROTOCOL.md §9). A background thread serves delivery reports
 * and counts delivered / failed letters per reason for /metrics.
 *
 * Every letter is written to the spool (core/spool.h: RocksDB, or memory
 * with durability=off) before submit returns, and leaves it only when Kafka
 * acknowledged it: with the RocksDB spool a kill -9 loses no letter submit
 * took, and the next open sends what was not acknowledged. A circuit
 * breaker (breaker.h) watches Kafka: while it is closed and no older letter
 * waits, submit also hands the letter to librdkafka at once; while it is
 * open, or older letters still wait, the letter waits in the spool, in the
 * order it was submitted. Once a probe finds Kafka back, the waiting
 * letters drain in that order and only then do letters go straight to
 * Kafka again. At spool_max_bytes (letters waiting plus letters not yet
 * acknowledged) a letter is refused: submit returns -1, the refusal is
 * counted per reason and logged. Letters Kafka gives back (delivery
 * timeout, purged at close) wait again under their original place in the
 * order.
 *
 * With no brokers configured, rc_dlq starts librdkafka's in-process mock
 * cluster (rdkafka_mock.h) as a development broker; its contents vanish when
 * the process exits.
 */
#ifndef RC_DLQ_DLQ_H
#define RC_DLQ_DLQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/letters.h"
#include "core/spool.h"
#include "dlq/breaker.h"

#define RC_DLQ_DEFAULT_TOPIC "ringcast.deadletter"
#define RC_DLQ_DEFAULT_NODE "ringcastd"
#define RC_DLQ_VERSION 1 /* the record's `v` field */
#define RC_DLQ_DEFAULT_SPOOL_MAX_BYTES (UINT64_C(256) << 20)
#define RC_DLQ_DEFAULT_BREAKER_MS 1000u
/* A letter Kafka has not acknowledged after this long goes to the spool
 * (and opens the breaker): it waits in librdkafka's memory at most this
 * long, not librdkafka's default 300 s, when brokers answer but cannot
 * take it (a partition without a leader). */
#define RC_DLQ_DEFAULT_DELIVERY_TIMEOUT_MS 30000u

typedef struct rc_dlq rc_dlq;

typedef struct rc_dlq_config {
    const char *brokers;      /* "host:port,..."; NULL or "": embedded mock cluster */
    const char *topic;        /* NULL or "": RC_DLQ_DEFAULT_TOPIC */
    const char *node;         /* the `node` header; NULL or "": RC_DLQ_DEFAULT_NODE */
    uint32_t queue_max;       /* local queue bound, messages; 0: librdkafka default (100000) */
    uint32_t delivery_timeout_ms; /* librdkafka gives a letter back (to the spool) after this; 0: RC_DLQ_DEFAULT_DELIVERY_TIMEOUT_MS */
    rc_spool spool;           /* every letter until Kafka acknowledged it; ops NULL: an in-memory spool */
    bool spool_durable;       /* the spool outlives the process (else what is left at close is lost, logged) */
    uint64_t spool_max_bytes; /* spool bound; 0: RC_DLQ_DEFAULT_SPOOL_MAX_BYTES */
    uint32_t breaker_ms;      /* open breaker's wait before a probe; 0: RC_DLQ_DEFAULT_BREAKER_MS */
} rc_dlq_config;

/* Counters, all monotonic. spooled = taken by submit (0 returned); every
 * spooled letter ends delivered or failed, or is still in the spool. */
typedef struct rc_dlq_stats {
    uint64_t submitted[RC_LETTER_REASONS];  /* handed to librdkafka by submit itself (direct) */
    uint64_t delivered[RC_LETTER_REASONS];  /* acknowledged by Kafka (direct or drained) */
    uint64_t failed[RC_LETTER_REASONS];     /* refused for good by Kafka or librdkafka, or left in a memory spool at close */
    uint64_t queue_full[RC_LETTER_REASONS]; /* submit found librdkafka's queue full: the letter waits in the spool */
    uint64_t rejected[RC_LETTER_REASONS];   /* submit returned -1: not encodable, or a producer error no retry cures */
    uint64_t invalid;                       /* submit returned -1: reason out of range */
    uint64_t spooled[RC_LETTER_REASONS];    /* written to the spool: every letter submit took */
    uint64_t spool_full[RC_LETTER_REASONS]; /* refused at spool_max_bytes (logged) */
    uint64_t drained;                       /* letters that waited in the spool and Kafka has acknowledged */
    uint64_t spool_errors;                  /* spool reads and writes that failed (logged) */
    uint64_t produce_errors;                /* delivery reports with an error */
    uint64_t breaker_opens;                 /* closed -> open transitions */
    rc_breaker_state breaker;               /* now */
    uint64_t spool_letters, spool_bytes;    /* now: in the spool, waiting or not yet acknowledged (gauges) */
    uint64_t inflight;                      /* now: of those, in librdkafka awaiting Kafka's acknowledgement (gauge) */
    uint64_t spool_found;                   /* letters an earlier run left in the spool, counted at open */
    uint64_t spool_max_bytes;               /* the bound in force */
    uint64_t queued;                        /* now: in librdkafka's queues (gauge) */
} rc_dlq_stats;

/* Creates the producer (and the mock cluster when no brokers are given),
 * counts what an earlier run left in the spool (it drains first), and starts
 * the thread that serves delivery reports, probes and drains. NULL with a
 * message in err on failure. */
rc_dlq *rc_dlq_open(const rc_dlq_config *cfg, char *err, size_t errlen);

/* The core-facing sink; valid until rc_dlq_close. submit is thread-safe. */
rc_letter_sink rc_dlq_sink(rc_dlq *d);

/* Writes one letter (what the sink's submit calls) to the spool and, when
 * nothing older waits, hands it to librdkafka: 0 once it is in the spool
 * (durable with a RocksDB spool), or -1 if it could not be taken (counted
 * in stats). */
int rc_dlq_submit(rc_dlq *d, const rc_letter *l);

/* Waits up to timeout_ms for letters queued in librdkafka to be delivered;
 * returns the number still queued there (the spool is not counted). */
int rc_dlq_flush(rc_dlq *d, int timeout_ms);

/* The bootstrap list in use (the mock cluster's when embedded). */
const char *rc_dlq_bootstrap(const rc_dlq *d);
const char *rc_dlq_topic(const rc_dlq *d);

void rc_dlq_stats_read(rc_dlq *d, rc_dlq_stats *out);

/* Flushes for up to timeout_ms; what Kafka has not acknowledged stays in
 * the spool, where a durable spool keeps it for the next start (a memory
 * spool's contents are counted as failed and logged). Then destroys the
 * producer and the mock cluster. The spool itself is the caller's.
 * NULL is a no-op. */
void rc_dlq_close(rc_dlq *d, int timeout_ms);

#endif
