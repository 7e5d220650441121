/*
 * libFuzzer target: the public HTTP port's input path (rc_ws_input,
 * src/net/ws.c) on an arbitrary byte stream from a client: an HTTP request
 * (the upgrade to WebSocket, the page, anything), then WebSocket frames,
 * driven through its writer interface (rc_ws_out) without sockets. Each
 * message handed to the session is answered with one server frame through
 * rc_ws_write_frame, as a session's reply would be.
 *
 * The stream is fed twice to a fresh connection: once whole, and once cut
 * into reads of 1..FUZZ_MAX_READ bytes with `reading` saying no now and
 * then (a held connection), the unused tail kept and fed again first, as
 * io.c does with c->in. A crash, besides any sanitizer report:
 *  - an HTTP answer that is not "HTTP/1.1 NNN" with a status the port
 *    gives (never 500), or anything but WebSocket frames after a 101;
 *  - a server frame that is masked, fragmented, has a reserved bit set (no
 *    extension is ever negotiated, src/ARCHITECTURE.md §3.6), an unknown
 *    opcode, a control frame over 125 bytes, or anything after a close;
 *  - a message to the session longer than max_frame, an `err` with
 *    E_INTERNAL, output after `close`, or consuming more than was given;
 *  - the two runs answering differently: the HTTP answer, the data frames,
 *    the close code, the messages and errors must not depend on how the
 *    bytes arrive (pongs may come at other points between the data frames,
 *    and one queued when the server closes may not be sent at all; wslay's
 *    own closes (1002, 1007, an echo) count as one answer and end the
 *    comparison, and the statuses of a bad request count as one, as in
 *    fuzz_http.c).
 */
#define _GNU_SOURCE /* memmem */
#include "fuzz.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "net/ws.h"

#define FUZZ_MAX_FRAME 1024u /* small max_frame, so that 1009 is near */
#define FUZZ_ORIGINS "http://ok.example" /* allowed_origins: a browser elsewhere gets 1008 */
#define FUZZ_MAX_READ 64u    /* longest read of the cut run */
#define FUZZ_HOLD_ONE_IN 8u  /* the cut run's `reading` says no about once in this many calls */
#define WS_CONTROL_MAX 125u  /* RFC 6455 §5.5 */

/* The close codes ringcast itself sends (net/ws.c, proto/PROTOCOL.md §1.2):
 * closing, stopping, Origin refused, message too big. */
static bool ringcast_close(unsigned code)
{
    return code == 1000 || code == 1001 || code == 1008 || code == 1009;
}

enum out_state { OUT_HEAD, OUT_BODY, OUT_FRAMES };

/* One run's world: what the connection did, written down in order. */
typedef struct world {
    rc_buf events;  /* messages, errors, close, the HTTP answer's head, data frames: compared */
    rc_buf control; /* ping and pong frames: compared, in their own order */
    rc_buf out;     /* bytes written, not yet parsed */
    enum out_state ostate;
    int status;
    bool closed;           /* `close` called */
    bool close_frame_sent; /* a close frame was written */
    bool holds;
    size_t wslay_closed_at; /* events.len when wslay first closed for the client's frames, or SIZE_MAX */
    rc_ws *w;
    const rc_ws_env *env;
    fuzz_rng rng;
} world;

static void log_bytes(rc_buf *b, char tag, const void *p, size_t n)
{
    uint32_t len = (uint32_t)n;
    FUZZ_CHECK(rc_buf_append(b, &tag, 1) == 0 && rc_buf_append(b, &len, sizeof len) == 0 &&
                   (n == 0 || rc_buf_append(b, p, n) == 0),
               "out of memory in the harness");
}

/* A request http_parser or its bounds refused (net/http.c). */
static bool bad_request(int status)
{
    return status == 400 || status == 413 || status == 431 || status == 505;
}

/* Every answer the port gives: the upgrade, the page, not found, not GET,
 * not version 13, or a bad request. */
static bool known_status(int status)
{
    return status == 101 || status == 200 || status == 404 || status == 405 || status == 426 || bad_request(status);
}

/* The HTTP answer's head: its status line, checked and logged. */
static size_t parse_head(world *w)
{
    const char *p = (const char *)w->out.data;
    size_t n = w->out.len;
    const char *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end)
        return 0;
    FUZZ_CHECK(n >= 13 && memcmp(p, "HTTP/1.1 ", 9) == 0, "an answer starts with HTTP/1.1 and a status");
    w->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (!known_status(w->status))
        fuzz_dump("answer", p, (size_t)(end - p));
    FUZZ_CHECK(w->status != 500, "a client's request is never answered 500");
    FUZZ_CHECK(known_status(w->status), "101, the page, or a 4xx/505 that says what was wrong");
    if (bad_request(w->status))
        log_bytes(&w->events, 'E', NULL, 0); /* which fault, when there are two, depends on the reads (fuzz_http.c) */
    else
        log_bytes(&w->events, 'H', p, (size_t)(end + 4 - p));
    w->ostate = w->status == 101 ? OUT_FRAMES : OUT_BODY;
    return (size_t)(end + 4 - p);
}

/* One whole server frame at the start of w->out, checked and logged; its
 * length, or 0 while it is not whole. */
static size_t parse_frame(world *w)
{
    const uint8_t *p = w->out.data;
    size_t n = w->out.len;
    if (n < 2)
        return 0;
    FUZZ_CHECK(!w->close_frame_sent, "nothing is written after a close frame");
    FUZZ_CHECK((p[0] & 0x80) != 0, "server frames are not fragmented");
    FUZZ_CHECK((p[0] & 0x70) == 0, "no reserved bit is set: no extension is negotiated");
    FUZZ_CHECK((p[1] & 0x80) == 0, "server frames are not masked");
    uint8_t op = p[0] & 0x0f;
    FUZZ_CHECK(op == 0x1 || op == 0x2 || op == 0x8 || op == 0x9 || op == 0xa, "a known opcode");
    uint64_t len = p[1] & 0x7f;
    size_t off = 2;
    if (len == 126) {
        if (n < 4)
            return 0;
        len = (uint64_t)p[2] << 8 | p[3];
        off = 4;
        FUZZ_CHECK(len >= 126, "the shortest length form");
    } else if (len == 127) {
        if (n < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
        off = 10;
        FUZZ_CHECK(len > UINT16_MAX, "the shortest length form");
    }
    if (op >= 0x8)
        FUZZ_CHECK(len <= WS_CONTROL_MAX, "a control frame holds at most 125 bytes");
    if (n - off < len)
        return 0;
    if (op == 0x9 || op == 0xa) {
        log_bytes(&w->control, (char)op, p + off, (size_t)len);
    } else {
        if (op == 0x8) {
            FUZZ_CHECK(len == 0 || len >= 2, "a close frame has no code or a whole one");
            w->close_frame_sent = true;
            unsigned code = len >= 2 ? (unsigned)(p[off] << 8 | p[off + 1]) : 0;
            if (!ringcast_close(code)) {
                /* wslay's own answer to the client's frames: 1002, 1007,
                 * or the client's close echoed. Which one, and when,
                 * depends on where reads end for a close frame whose
                 * reason is not UTF-8 (wslay checks it read by read), so
                 * the runs are compared up to the first of these only. */
                if (w->wslay_closed_at == SIZE_MAX)
                    w->wslay_closed_at = w->events.len;
                log_bytes(&w->events, 'X', NULL, 0);
                return off + (size_t)len;
            }
        }
        log_bytes(&w->events, (char)op, p + off, (size_t)len);
    }
    return off + (size_t)len;
}

/* Checks and logs what was written so far, as far as it is whole. */
static void parse_out(world *w)
{
    for (;;) {
        size_t used = 0;
        if (w->ostate == OUT_HEAD)
            used = parse_head(w);
        else if (w->ostate == OUT_FRAMES)
            used = parse_frame(w);
        else
            used = w->out.len; /* a refusal's body: the head said what it is */
        if (used == 0)
            return;
        memmove(w->out.data, w->out.data + used, w->out.len - used);
        w->out.len -= used;
    }
}

static void w_write(void *self, const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    world *w = self;
    FUZZ_CHECK(!w->closed, "nothing is written after close");
    FUZZ_CHECK(rc_buf_append(&w->out, a, na) == 0 && (nb == 0 || rc_buf_append(&w->out, b, nb) == 0),
               "out of memory in the harness");
    parse_out(w);
}

/* The session's reply to every message: a small `err` map, so that the
 * outgoing path (binary, or JSON for a text client) runs too. */
static void w_message(void *self, const uint8_t *map, size_t len)
{
    world *w = self;
    FUZZ_CHECK(!w->closed, "no message reaches the session after close");
    FUZZ_CHECK(len <= FUZZ_MAX_FRAME, "no message longer than max_frame reaches the session");
    FUZZ_CHECK(w->status == 101, "messages come only after the upgrade");
    log_bytes(&w->events, 'M', map, len);
    rc_msg reply = { .type = RC_T_ERR, .code = RC_E_BAD_FRAME, .text = rc_str_c("echo") };
    reply.has |= RC_HAS_RID;
    reply.rid = len;
    rc_buf f;
    rc_buf_init(&f);
    FUZZ_CHECK(rc_encode(&f, &reply) == 0, "the reply encodes");
    rc_ws_write_frame(w->w, w->env, f.data, f.len);
    rc_buf_free(&f);
}

static void w_error(void *self, rc_err code, const char *text)
{
    world *w = self;
    FUZZ_CHECK(code != RC_E_INTERNAL && code < RC_E_COUNT, "client input is never answered E_INTERNAL");
    FUZZ_CHECK(text && text[0], "an error says why");
    uint8_t c = (uint8_t)code;
    log_bytes(&w->events, 'E', &c, 1);
}

static bool w_reading(void *self)
{
    world *w = self;
    if (w->closed)
        return false;
    return !w->holds || fuzz_rng_next(&w->rng) % FUZZ_HOLD_ONE_IN != 0;
}

static void w_close(void *self)
{
    world *w = self;
    FUZZ_CHECK(!w->closed, "close is called once");
    w->closed = true;
    log_bytes(&w->events, 'C', NULL, 0);
}

static bool w_dead(void *self)
{
    (void)self;
    return false;
}

static size_t feed(world *w, const uint8_t *p, size_t n)
{
    size_t used = rc_ws_input(w->w, w->env, p, n);
    FUZZ_CHECK(used <= n, "rc_ws_input consumes at most what it was given");
    if (w->closed)
        FUZZ_CHECK(used == n, "a closing connection takes everything");
    return used;
}

/* Feeds the stream whole (w->holds false) or cut into reads with holds. */
static void run(world *w, const uint8_t *data, size_t size)
{
    rc_ws_out out = { w, w_write, w_message, w_error, w_reading, w_close, w_dead };
    rc_ws_stats stats;
    memset(&stats, 0, sizeof stats);
    rc_ws_env env = { FUZZ_MAX_FRAME, FUZZ_ORIGINS, &out, &stats };
    w->env = &env;
    w->w = rc_ws_new();
    FUZZ_CHECK(w->w != NULL, "out of memory in the harness");
    rc_buf in;
    rc_buf_init(&in);
    size_t off = 0;
    while (!w->closed && off < size) {
        size_t n = w->holds ? fuzz_rng_chunk(&w->rng, FUZZ_MAX_READ) : size;
        if (n > size - off)
            n = size - off;
        FUZZ_CHECK(rc_buf_append(&in, data + off, n) == 0, "out of memory in the harness");
        off += n;
        size_t used = feed(w, in.data, in.len);
        memmove(in.data, in.data + used, in.len - used);
        in.len -= used;
        if (off == size && !w->closed) {
            /* everything has arrived: the held rest is read, as a
             * connection is read again once its hold ends */
            bool was_holding = w->holds;
            w->holds = false;
            feed(w, in.data, in.len);
            w->holds = was_holding;
        }
    }
    if (w->closed && w->status != 101)
        FUZZ_CHECK(w->ostate != OUT_HEAD, "a request answered in HTTP has its whole head written");
    rc_ws_free(w->w);
    rc_buf_free(&in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    world whole = { .holds = false, .wslay_closed_at = SIZE_MAX },
          cut = { .holds = true, .wslay_closed_at = SIZE_MAX, .rng = fuzz_rng_from(data, size) };
    world *runs[] = { &whole, &cut };
    for (int i = 0; i < 2; i++) {
        rc_buf_init(&runs[i]->events);
        rc_buf_init(&runs[i]->control);
        rc_buf_init(&runs[i]->out);
        run(runs[i], data, size);
    }
    size_t upto = whole.wslay_closed_at < cut.wslay_closed_at ? whole.wslay_closed_at : cut.wslay_closed_at;
    if (upto == SIZE_MAX)
        fuzz_check_same("the connection does the same whether the bytes come whole or in pieces", whole.events.data,
                        whole.events.len, cut.events.data, cut.events.len);
    else
        fuzz_check_same("the connection does the same whether the bytes come whole or in pieces, up to wslay's close",
                        whole.events.data, upto <= whole.events.len ? upto : whole.events.len, cut.events.data,
                        upto <= cut.events.len ? upto : cut.events.len);
    /* A pong still queued when a bad frame makes the server close is not
     * sent; read in pieces, it may have gone out before the bad frame came.
     * So once either run closed, the pongs one sent are the first of the
     * other's; without a close they are the same. */
    size_t wl = whole.control.len, cl = cut.control.len;
    if (upto != SIZE_MAX || whole.close_frame_sent || cut.close_frame_sent)
        wl = cl = wl < cl ? wl : cl;
    fuzz_check_same("the same pings and pongs whether the bytes come whole or in pieces", whole.control.data, wl,
                    cut.control.data, cl);
    for (int i = 0; i < 2; i++) {
        rc_buf_free(&runs[i]->events);
        rc_buf_free(&runs[i]->control);
        rc_buf_free(&runs[i]->out);
    }
    return 0;
}
