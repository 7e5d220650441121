/* Circuit breaker states and transitions; see breaker.h. */
#include "dlq/breaker.h"

void rc_breaker_init(rc_breaker *b, uint64_t open_ms)
{
    *b = (rc_breaker){ .state = RC_BREAKER_CLOSED, .open_ms = open_ms, .wait_ms = open_ms };
}

bool rc_breaker_trip(rc_breaker *b, uint64_t now_ms)
{
    bool was_closed = b->state == RC_BREAKER_CLOSED;
    if (b->state == RC_BREAKER_HALF_OPEN) {
        rc_breaker_probe_done(b, false, now_ms);
        return false;
    }
    if (was_closed) {
        b->opens++;
        b->wait_ms = b->open_ms;
    }
    b->state = RC_BREAKER_OPEN;
    b->opened_at = now_ms;
    return was_closed;
}

bool rc_breaker_probe_due(rc_breaker *b, uint64_t now_ms)
{
    if (b->state != RC_BREAKER_OPEN || now_ms - b->opened_at < b->wait_ms)
        return false;
    b->state = RC_BREAKER_HALF_OPEN;
    return true;
}

void rc_breaker_probe_done(rc_breaker *b, bool ok, uint64_t now_ms)
{
    if (b->state != RC_BREAKER_HALF_OPEN)
        return; /* tripped meanwhile: already open */
    if (ok) {
        b->state = RC_BREAKER_CLOSED;
        b->wait_ms = b->open_ms;
        return;
    }
    b->state = RC_BREAKER_OPEN;
    b->opened_at = now_ms;
    if (b->wait_ms < b->open_ms * RC_BREAKER_WAIT_CAP_FACTOR)
        b->wait_ms *= 2;
}

const char *rc_breaker_state_name(rc_breaker_state s)
{
    switch (s) {
    case RC_BREAKER_CLOSED: return "closed";
    case RC_BREAKER_OPEN: return "open";
    case RC_BREAKER_HALF_OPEN: return "half_open";
    }
    return "unknown";
}
