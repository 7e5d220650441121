/*
 * libFuzzer target: rc_decode (src/proto/codec.c) on arbitrary bytes, taken
 * as one frame's payload (proto/PROTOCOL.md §1-§3), by a client's decoder
 * and by a server's.
 *
 * A crash, besides any sanitizer report:
 *  - E_INTERNAL, or no code of rc_err at all: a decode error is always the
 *    client's (PROTOCOL §5, "A protocol decode error never returns
 *    E_INTERNAL"), and an error always comes with a reason;
 *  - a decoded map that does not survive a round trip: rc_encode of it must
 *    succeed and decode back to the very same fields, so the encoder and
 *    the decoder agree on every type's fields and bounds.
 */
#include "fuzz.h"

#include <string.h>

#include "ringcast/proto.h"

static bool str_same(rc_str a, rc_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* The first field in which two decoded messages differ, or NULL. */
static const char *first_difference(const rc_msg *a, const rc_msg *b)
{
#define SAME_NUM(f) if (a->f != b->f) return #f
#define SAME_STR(f) if (!str_same(a->f, b->f)) return #f
    SAME_NUM(type);
    SAME_NUM(has);
    SAME_NUM(rid);
    SAME_STR(user);
    SAME_STR(token);
    SAME_STR(g);
    SAME_STR(mid);
    SAME_STR(body);
    SAME_NUM(body_is_str);
    SAME_STR(from);
    SAME_STR(to);
    SAME_STR(text);
    SAME_STR(reason);
    SAME_STR(srv);
    SAME_NUM(code);
    SAME_NUM(since);
    SAME_NUM(before);
    SAME_NUM(limit);
    SAME_NUM(seq);
    SAME_NUM(ts);
    SAME_NUM(sid);
    SAME_NUM(max_frame);
    SAME_NUM(dup);
    SAME_NUM(lost);
    SAME_NUM(n_msgs);
    SAME_NUM(read);
    SAME_NUM(receipts);
    SAME_NUM(n_groups);
    for (uint32_t i = 0; i < a->n_groups; i++) {
        SAME_STR(groups[i].g);
        SAME_NUM(groups[i].seq);
        SAME_NUM(groups[i].read);
        SAME_NUM(groups[i].unread);
        SAME_NUM(groups[i].ts);
        SAME_NUM(groups[i].has_last);
        const char *d = a->groups[i].has_last ? first_difference(a->groups[i].last, b->groups[i].last) : NULL;
        if (d)
            return d;
    }
#undef SAME_NUM
#undef SAME_STR
    for (uint32_t i = 0; i < a->n_msgs; i++) {
        const char *d = first_difference(&a->msgs[i], &b->msgs[i]);
        if (d)
            return d;
    }
    return NULL;
}

/* rc_encode(m), then rc_decode of that frame, must give m back. */
static void check_round_trip(const rc_msg *m)
{
    static rc_decoder dec;
    static rc_buf frame;
    static bool ready;
    if (!ready) {
        rc_decoder_init(&dec);
        rc_buf_init(&frame);
        ready = true;
    }
    frame.len = 0;
    FUZZ_CHECK(rc_encode(&frame, m) == 0, "a decoded map must encode");
    FUZZ_CHECK(frame.len >= RC_FRAME_HEADER && rc_frame_len(frame.data) == frame.len - RC_FRAME_HEADER,
               "rc_encode writes one frame with its length prefix");
    rc_msg back;
    const char *why = NULL;
    rc_err e = rc_decode(&dec, frame.data + RC_FRAME_HEADER, frame.len - RC_FRAME_HEADER, &back, &why);
    if (e != RC_OK)
        fprintf(stderr, "re-decode: %s (%s)\n", rc_err_name(e), why);
    FUZZ_CHECK(e == RC_OK, "what rc_encode wrote must decode");
    const char *d = first_difference(m, &back);
    if (d)
        fprintf(stderr, "round trip changed field %s\n", d);
    FUZZ_CHECK(d == NULL, "decode(encode(m)) == m");
}

/* One decode of the input, with the checks every decode gets. */
static void check_decode(rc_decoder *dec, const uint8_t *data, size_t size)
{
    rc_msg m;
    const char *why = NULL;
    rc_err e = rc_decode(dec, data, size, &m, &why);
    FUZZ_CHECK(e >= RC_OK && e < RC_E_COUNT, "rc_decode returns a code of rc_err");
    FUZZ_CHECK(why != NULL, "rc_decode always sets why");
    if (e != RC_OK) {
        if (e == RC_E_INTERNAL)
            fprintf(stderr, "E_INTERNAL for client bytes: %s\n", why);
        FUZZ_CHECK(e != RC_E_INTERNAL, "a decode error is the client's, never E_INTERNAL");
        FUZZ_CHECK(why[0] != '\0', "an error says why");
        return;
    }
    FUZZ_CHECK(m.type > RC_T_NONE && m.type < RC_T_COUNT, "a decoded map has a known type");
    FUZZ_CHECK(!dec->requests || m.n_msgs == 0, "a server's decoder ignores msgs");
    for (uint32_t i = 0; i < m.n_msgs; i++)
        FUZZ_CHECK(m.msgs[i].type == RC_T_MSG && m.msgs[i].n_msgs == 0, "msgs holds msg maps, not nested");
    check_round_trip(&m);
}

/* Every input goes through both decoders: a client's, which reads every
 * key a type defines, and a server's (rc_decoder_init_requests). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static rc_decoder any, requests;
    static bool ready;
    if (!ready) {
        rc_decoder_init(&any);
        rc_decoder_init_requests(&requests);
        ready = true;
    }
    check_decode(&any, data, size);
    check_decode(&requests, data, size);
    return 0;
}
