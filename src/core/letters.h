/*
 * Dead letters as core sees them (ARCHITECTURE §7): a message that could not be
 * processed or delivered, with its reason. core defines the record and the
 * sink interface; src/dlq implements the sink with Kafka.
 */
#ifndef RC_CORE_LETTERS_H
#define RC_CORE_LETTERS_H

#include <stdbool.h>
#include <stdint.h>

#include "ringcast/proto.h"

typedef enum rc_letter_reason {
    RC_LETTER_SLOW_CONSUMER = 0, /* a recipient's outbound queue passed its bound */
    RC_LETTER_OVERLOADED,        /* shard queue full after retries with backoff */
    RC_LETTER_EXPIRED,           /* waited longer than max_queue_ms */
    RC_LETTER_SHUTDOWN,          /* in flight at a forced stop */
    RC_LETTER_POISON,            /* failed processing repeatedly */
    RC_LETTER_REASONS
} rc_letter_reason;

const char *rc_letter_reason_name(rc_letter_reason r); /* "slow_consumer", ... */

/* One dead letter, fields as proto/PROTOCOL.md §9 names them. Strings point
 * into the caller's memory: a sink copies what it keeps before returning. */
typedef struct rc_letter {
    rc_letter_reason reason;
    rc_str g;            /* group id (also the Kafka key) */
    bool has_seq;
    uint64_t seq;        /* set when the message was sequenced */
    rc_str from;         /* sender */
    rc_str to;           /* recipient, for one failed delivery (len 0: none) */
    uint64_t ts;         /* original time, unix ms */
    rc_str mid;          /* client message id (len 0: none) */
    rc_str body;
    bool body_is_str;
    uint32_t attempts;   /* tries made */
    rc_str err;          /* last error text */
} rc_letter;

/* Where letters go. submit must not block the caller for long: it queues
 * and returns 0, or returns -1 when the letter could not even be queued
 * (the caller counts and logs that loss). Thread-safe. */
typedef struct rc_letter_sink {
    int (*submit)(void *self, const rc_letter *l);
    void *self;
} rc_letter_sink;

#endif
