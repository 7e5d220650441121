/*
 * libFuzzer target: the protocol session's frame walker and dispatch
 * (rc_session_input, src/net/session.c) on an arbitrary byte stream from a
 * client, driven through its writer interface (rc_session_out) without
 * sockets, as tests/unit/test_session.c drives it.
 *
 * The stream is fed twice to a fresh session: once whole, and once cut into
 * reads of 1..FUZZ_MAX_READ bytes with `reading` saying no now and then (a
 * held connection), the unused tail kept and fed again first, as io.c does
 * with c->in. A crash, besides any sanitizer report:
 *  - a reply that is not one well-formed frame the codec decodes, an `err`
 *    with E_INTERNAL or an unknown code, or output after `close`;
 *  - a routed request without a group or sender in bounds, or of a kind its
 *    type does not ask for;
 *  - consuming more than was given, or nothing of a whole frame while reading;
 *  - the two runs doing anything differently: framing and dispatch must not
 *    depend on how the bytes arrive.
 */
#include "fuzz.h"

#include <stdbool.h>
#include <string.h>

#include "net/session.h"

#define FUZZ_MAX_FRAME 1024u /* small max_frame, so that E_FRAME_TOO_LARGE is near */
#define FUZZ_MAX_GROUPS 4u   /* max_groups_per_session, so that E_LIMIT is near */
#define FUZZ_TOKEN "s3cret"  /* admin token: a hello with it may replay */
#define FUZZ_MAX_READ 64u    /* longest read of the cut run */
#define FUZZ_HOLD_ONE_IN 8u  /* the cut run's `reading` says no about once in this many calls */
#define FUZZ_SID 42u

/* One run's world: what the session did, written down in order. */
typedef struct world {
    rc_buf log;           /* every effect, serialised, to compare the two runs */
    rc_buf scratch;       /* encoding of a routed request */
    rc_decoder reply_dec; /* decodes each reply to check it */
    bool closed;
    bool holds;           /* the cut run: `reading` says no now and then */
    fuzz_rng rng;
} world;

static void log_bytes(world *w, char tag, const void *p, size_t n)
{
    uint32_t len = (uint32_t)n;
    FUZZ_CHECK(rc_buf_append(&w->log, &tag, 1) == 0 && rc_buf_append(&w->log, &len, sizeof len) == 0 &&
                   rc_buf_append(&w->log, p, n) == 0,
               "out of memory in the harness");
}

static void w_send(void *self, const uint8_t *frame, size_t len)
{
    world *w = self;
    FUZZ_CHECK(!w->closed, "nothing is sent after close");
    FUZZ_CHECK(len > RC_FRAME_HEADER && rc_frame_len(frame) == len - RC_FRAME_HEADER,
               "a reply is one frame with its length prefix");
    rc_msg m;
    const char *why = NULL;
    rc_err e = rc_decode(&w->reply_dec, frame + RC_FRAME_HEADER, len - RC_FRAME_HEADER, &m, &why);
    if (e != RC_OK)
        fprintf(stderr, "reply does not decode: %s (%s)\n", rc_err_name(e), why);
    FUZZ_CHECK(e == RC_OK, "every reply decodes");
    if (m.type == RC_T_ERR && m.code == RC_E_INTERNAL)
        fprintf(stderr, "E_INTERNAL reply: %.*s\n", (int)m.text.len, m.text.ptr);
    FUZZ_CHECK(m.type != RC_T_ERR || (m.code != RC_E_INTERNAL && m.code < RC_E_COUNT),
               "client input is never answered E_INTERNAL");
    log_bytes(w, 'S', frame, len);
}

/* The message types a job kind is made from (session.c handle_request, on_replay). */
static bool kind_fits(rc_job_kind kind, rc_type t)
{
    switch (kind) {
    case RC_JOB_JOIN: return t == RC_T_JOIN;
    case RC_JOB_LEAVE: return t == RC_T_LEAVE;
    case RC_JOB_SEND: return t == RC_T_SEND || t == RC_T_REPLAY || t == RC_T_PUBLISH;
    case RC_JOB_HIST: return t == RC_T_HIST;
    case RC_JOB_REDELIVER: return t == RC_T_REPLAY;
    case RC_JOB_PRESENCE: return t == RC_T_PRESENCE;
    case RC_JOB_TYPING: return t == RC_T_TYPING;
    case RC_JOB_READ: return t == RC_T_READ;
    case RC_JOB_INBOX: return t == RC_T_INBOX; /* its g is the session's user (src/net/session.c on_inbox) */
    default: return false;
    }
}

static void w_route(void *self, rc_job_kind kind, rc_str from, const rc_msg *m)
{
    world *w = self;
    FUZZ_CHECK(!w->closed, "nothing is routed after close");
    FUZZ_CHECK(kind_fits(kind, m->type), "a request is routed as its own kind of job");
    FUZZ_CHECK(from.len >= 1 && from.len <= RC_MAX_USER, "a routed request has a sender");
    FUZZ_CHECK(m->g.len >= 1 && m->g.len <= RC_MAX_GROUP, "a routed request has a group");
    w->scratch.len = 0;
    FUZZ_CHECK(rc_encode(&w->scratch, m) == 0, "a routed request encodes");
    uint8_t k = (uint8_t)kind;
    log_bytes(w, 'R', &k, 1);
    log_bytes(w, 'F', from.ptr, from.len);
    log_bytes(w, 'M', w->scratch.data, w->scratch.len);
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
    log_bytes(w, 'C', NULL, 0);
}

static bool w_stopping(void *self)
{
    (void)self;
    return false;
}

/* One call of rc_session_input, with the checks every call gets. */
static size_t feed(rc_session *s, const rc_session_env *env, world *w, const uint8_t *p, size_t n)
{
    size_t used = rc_session_input(s, env, p, n);
    FUZZ_CHECK(used <= n, "rc_session_input consumes at most what it was given");
    if (w->closed)
        FUZZ_CHECK(used == n, "after a framing error everything counts as consumed");
    return used;
}

/* Feeds the stream whole (w->holds false) or cut into reads with holds. */
static void run(world *w, const uint8_t *data, size_t size)
{
    static const rc_session_limits lim = { .max_frame = FUZZ_MAX_FRAME, .max_groups = FUZZ_MAX_GROUPS,
                                           .admin_token = FUZZ_TOKEN };
    rc_session_out out = { w, w_send, w_route, w_reading, w_close, w_stopping, NULL };
    rc_session_stats stats;
    memset(&stats, 0, sizeof stats);
    rc_decoder dec;
    rc_decoder_init_requests(&dec); /* as io.c's: a server's decoder */
    rc_buf scratch, in;
    rc_buf_init(&scratch);
    rc_buf_init(&in);
    rc_session_env env = { &lim, &out, &dec, &scratch, &stats };
    rc_session s;
    rc_session_init(&s, FUZZ_SID);

    size_t off = 0;
    while (!w->closed && off < size) {
        size_t n = w->holds ? fuzz_rng_chunk(&w->rng, FUZZ_MAX_READ) : size;
        if (n > size - off)
            n = size - off;
        FUZZ_CHECK(rc_buf_append(&in, data + off, n) == 0, "out of memory in the harness");
        off += n;
        size_t used = feed(&s, &env, w, in.data, in.len);
        memmove(in.data, in.data + used, in.len - used);
        in.len -= used;
        if (off == size && !w->closed) {
            /* Everything has arrived: the held rest is read until only a
             * partial frame is left, as a connection is read again once
             * its hold ends. */
            bool was_holding = w->holds;
            w->holds = false;
            used = feed(&s, &env, w, in.data, in.len);
            w->holds = was_holding;
            size_t left = in.len - used;
            FUZZ_CHECK(w->closed || left < RC_FRAME_HEADER || left < RC_FRAME_HEADER + (size_t)rc_frame_len(in.data + used),
                       "while reading, only a partial frame is left over");
            break;
        }
    }
    rc_session_free(&s);
    rc_decoder_free(&dec);
    rc_buf_free(&scratch);
    rc_buf_free(&in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    world whole = { .holds = false }, cut = { .holds = true, .rng = fuzz_rng_from(data, size) };
    world *runs[] = { &whole, &cut };
    for (int i = 0; i < 2; i++) {
        rc_buf_init(&runs[i]->log);
        rc_buf_init(&runs[i]->scratch);
        rc_decoder_init(&runs[i]->reply_dec);
        run(runs[i], data, size);
    }
    fuzz_check_same("the session does the same whether the bytes come whole or in pieces", whole.log.data,
                    whole.log.len, cut.log.data, cut.log.len);
    for (int i = 0; i < 2; i++) {
        rc_buf_free(&runs[i]->log);
        rc_buf_free(&runs[i]->scratch);
        rc_decoder_free(&runs[i]->reply_dec);
    }
    return 0;
}
