/*
 * The publishers' message body: "SK", the group (8 hex digits), the
 * publisher's own count of messages to that group (16), the send time in
 * CLOCK_MONOTONIC nanoseconds (16), then a filler of letters that starts
 * at a place derived from that count. A reader checks all of it, so a body
 * cut, padded, mixed up with another message's or delivered to the wrong
 * group does not pass as a good delivery.
 */
#include <string.h>

#include "soak.h"

#define FILLER "abcdefghijklmnopqrstuvwxyz"
#define FILLER_LEN 26u
#define OFF_GROUP 2u
#define OFF_PSEQ 10u
#define OFF_TS 26u

static const char hexd[] = "0123456789abcdef";

static void put_hex(uint8_t *p, uint64_t v, unsigned digits)
{
    for (unsigned i = digits; i-- > 0; v >>= 4)
        p[i] = (uint8_t)hexd[v & 15];
}

static bool get_hex(const uint8_t *p, unsigned digits, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned i = 0; i < digits; i++) {
        uint8_t c = p[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return false;
        r = (r << 4) | d;
    }
    *v = r;
    return true;
}

/* The filler of a body with this publisher seq, FILLER_LEN-periodic: one
 * compare of the whole tail against a doubled alphabet would need a long
 * template, so it is compared in alphabet-sized pieces. */
static void fill(uint8_t *p, uint32_t n, uint64_t pseq)
{
    uint32_t start = (uint32_t)(pseq % FILLER_LEN);
    for (uint32_t i = 0; i < n; i++)
        p[i] = (uint8_t)FILLER[(start + i) % FILLER_LEN];
}

static bool filler_ok(const uint8_t *p, uint32_t n, uint64_t pseq)
{
    static const char twice[] = FILLER FILLER;
    uint32_t start = (uint32_t)(pseq % FILLER_LEN);
    for (uint32_t i = 0; i < n; i += FILLER_LEN) {
        uint32_t k = n - i < FILLER_LEN ? n - i : FILLER_LEN;
        if (memcmp(p + i, twice + start, k) != 0)
            return false;
    }
    return true;
}

void soak_body_make(uint8_t *b, uint32_t len, uint32_t g, uint64_t pseq, uint64_t ts_ns)
{
    memcpy(b, SOAK_BODY_MAGIC, 2);
    put_hex(b + OFF_GROUP, g, 8);
    put_hex(b + OFF_PSEQ, pseq, 16);
    put_hex(b + OFF_TS, ts_ns, 16);
    fill(b + SOAK_BODY_HDR, len - SOAK_BODY_HDR, pseq);
}

int soak_body_check(const uint8_t *b, uint32_t len, uint32_t want_len, uint32_t *g, uint64_t *pseq,
                    uint64_t *ts_ns)
{
    uint64_t gv;
    if (len != want_len || len < SOAK_BODY_HDR || memcmp(b, SOAK_BODY_MAGIC, 2) != 0 ||
        !get_hex(b + OFF_GROUP, 8, &gv) || !get_hex(b + OFF_PSEQ, 16, pseq) ||
        !get_hex(b + OFF_TS, 16, ts_ns))
        return -1;
    *g = (uint32_t)gv;
    return filler_ok(b + SOAK_BODY_HDR, len - SOAK_BODY_HDR, *pseq) ? 0 : -1;
}
