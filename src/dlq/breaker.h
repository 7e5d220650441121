/*
 * The dead-letter producer's circuit breaker (ARCHITECTURE §7): closed while Kafka
 * answers; a broker error opens it, and letters then go to the spool; after
 * a wait it turns half-open and one probe decides: success closes it (the
 * spool drains), failure opens it again with twice the wait, up to a cap.
 * Pure logic with the clock passed in, so it is tested without Kafka.
 */
#ifndef RC_DLQ_BREAKER_H
#define RC_DLQ_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#define RC_BREAKER_WAIT_CAP_FACTOR 32u /* the wait grows to at most this many times open_ms */

typedef enum rc_breaker_state {
    RC_BREAKER_CLOSED = 0,    /* letters go to Kafka */
    RC_BREAKER_OPEN = 1,      /* Kafka is away: letters go to the spool */
    RC_BREAKER_HALF_OPEN = 2, /* a probe is asking Kafka; letters still spool */
} rc_breaker_state;

typedef struct rc_breaker {
    rc_breaker_state state;
    uint64_t open_ms;   /* first wait before a probe */
    uint64_t wait_ms;   /* current wait: doubles with each failed probe */
    uint64_t opened_at; /* ms (caller's clock) of the last opening */
    uint64_t opens;     /* times it went from closed to open */
} rc_breaker;

void rc_breaker_init(rc_breaker *b, uint64_t open_ms);

/* A broker error. Opens the breaker (a half-open one fails its probe);
 * returns true when it was closed before, so the caller logs the change. */
bool rc_breaker_trip(rc_breaker *b, uint64_t now_ms);

/* True, and the breaker is half-open, when it has been open for its wait:
 * the caller probes now and reports with rc_breaker_probe_done. */
bool rc_breaker_probe_due(rc_breaker *b, uint64_t now_ms);

/* The probe's answer: closed on success, open again (longer wait) otherwise. */
void rc_breaker_probe_done(rc_breaker *b, bool ok, uint64_t now_ms);

const char *rc_breaker_state_name(rc_breaker_state s); /* "closed", "open", "half_open" */

#endif
