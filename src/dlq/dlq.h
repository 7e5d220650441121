/*
 * Dead letters to Kafka (DESIGN §3). rc_dlq owns one idempotent librdkafka
 * producer and implements core's rc_letter_sink: each letter becomes one
 * record on the dead-letter topic, key = group id, value = a MessagePack map,
 * headers reason, node and ts. A background thread serves delivery reports
 * and counts delivered / failed letters per reason for /metrics.
 *
 * With no brokers configured, rc_dlq starts librdkafka's in-process mock
 * cluster (rdkafka_mock.h) as a development broker; its contents vanish when
 * the process exits.
 */
#ifndef RC_DLQ_DLQ_H
#define RC_DLQ_DLQ_H

#include <stddef.h>
#include <stdint.h>

#include "core/letters.h"

#define RC_DLQ_DEFAULT_TOPIC "ringcast.deadletter"
#define RC_DLQ_DEFAULT_NODE "ringcastd"
#define RC_DLQ_VERSION 1 /* the record's `v` field */

typedef struct rc_dlq rc_dlq;

typedef struct rc_dlq_config {
    const char *brokers;      /* "host:port,..."; NULL or "": embedded mock cluster */
    const char *topic;        /* NULL or "": RC_DLQ_DEFAULT_TOPIC */
    const char *node;         /* the `node` header; NULL or "": RC_DLQ_DEFAULT_NODE */
    uint32_t queue_max;       /* local queue bound, messages; 0: librdkafka default (100000) */
    uint32_t delivery_timeout_ms; /* give up on a letter after this; 0: librdkafka default (300 s) */
} rc_dlq_config;

/* Counters, all monotonic. submitted = accepted into the local queue; every
 * submitted letter ends delivered or failed (or is still queued). */
typedef struct rc_dlq_stats {
    uint64_t submitted[RC_LETTER_REASONS];
    uint64_t delivered[RC_LETTER_REASONS];
    uint64_t failed[RC_LETTER_REASONS];     /* delivery report with an error, or purged at close */
    uint64_t queue_full[RC_LETTER_REASONS]; /* submit returned -1: local queue full */
    uint64_t rejected[RC_LETTER_REASONS];   /* submit returned -1: any other producer error */
    uint64_t invalid;                       /* submit returned -1: reason out of range */
    uint64_t queued;                        /* now: in librdkafka's queues (gauge) */
} rc_dlq_stats;

/* Creates the producer (and the mock cluster when no brokers are given) and
 * starts the delivery-report thread. NULL with a message in err on failure. */
rc_dlq *rc_dlq_open(const rc_dlq_config *cfg, char *err, size_t errlen);

/* The core-facing sink; valid until rc_dlq_close. submit is thread-safe. */
rc_letter_sink rc_dlq_sink(rc_dlq *d);

/* Queues one letter (what the sink's submit calls): 0, or -1 if it could
 * not be queued (counted in stats). */
int rc_dlq_submit(rc_dlq *d, const rc_letter *l);

/* Waits up to timeout_ms for queued letters to be delivered; returns the
 * number still queued (0: all delivered or failed). */
int rc_dlq_flush(rc_dlq *d, int timeout_ms);

/* The bootstrap list in use (the mock cluster's when embedded). */
const char *rc_dlq_bootstrap(const rc_dlq *d);
const char *rc_dlq_topic(const rc_dlq *d);

void rc_dlq_stats_read(rc_dlq *d, rc_dlq_stats *out);

/* Flushes for up to timeout_ms, counts what is left as failed (logged),
 * then destroys the producer and the mock cluster. NULL is a no-op. */
void rc_dlq_close(rc_dlq *d, int timeout_ms);

#endif
