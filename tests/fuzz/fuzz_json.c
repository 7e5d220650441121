/*
 * libFuzzer target: the JSON of WebSocket text messages (src/proto/json.c,
 * proto/PROTOCOL.md §1.2). Every input is read twice: as a client's text
 * message, and as a server frame's map going to a text-mode client.
 *
 * A crash, besides any sanitizer report:
 *  - rc_utf8_valid disagreeing with the plain code point decoder below
 *    (RFC 3629: shortest forms only, no surrogates, nothing above U+10FFFF);
 *  - rc_json_to_msgpack answering anything but OK or E_BAD_FRAME (E_INTERNAL
 *    would be its cursor losing step with cJSON's tree), taking text that is
 *    not UTF-8, or leaving bytes behind when it fails;
 *  - a map it wrote that rc_decode answers E_INTERNAL, that
 *    rc_msgpack_to_json cannot write, or whose JSON does not read back to a
 *    map that decodes the same (and writes the same JSON again);
 *  - a message decoded from the input either way that does not survive
 *    rc_encode -> rc_msgpack_to_json -> rc_json_to_msgpack -> rc_decode:
 *    the same message, bodies now str (JSON has no bin), whenever all its
 *    strings are UTF-8; otherwise the JSON must still be UTF-8 and read;
 *  - rc_msgpack_to_json writing, for any bytes, JSON that is not UTF-8 or
 *    that rc_json_to_msgpack does not take.
 */
#include "fuzz.h"

#include <string.h>

#include "ringcast/json.h"
#include "ringcast/proto.h"

/* RFC 3629 by the book, to check rc_utf8_valid against: decode each code
 * point from its bit pattern, then reject what is not its shortest form, a
 * surrogate, or above U+10FFFF. */
static bool utf8_reference(const uint8_t *p, size_t n)
{
    static const uint32_t shortest[5] = { 0, 0, 0x80, 0x800, 0x10000 }; /* least code point per length */
    for (size_t i = 0; i < n;) {
        uint8_t b = p[i];
        size_t len;
        uint32_t cp;
        if (b < 0x80)
            len = 1, cp = b;
        else if ((b & 0xe0) == 0xc0)
            len = 2, cp = b & 0x1fu;
        else if ((b & 0xf0) == 0xe0)
            len = 3, cp = b & 0x0fu;
        else if ((b & 0xf8) == 0xf0)
            len = 4, cp = b & 0x07u;
        else
            return false;
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3fu);
        }
        if (len > 1 && (cp < shortest[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)))
            return false;
        i += len;
    }
    return true;
}

static bool buf_utf8(const rc_buf *b)
{
    return rc_utf8_valid((const char *)b->data, b->len);
}

static bool buf_same(const rc_buf *a, const rc_buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* rc_encode's payload for m (without the length prefix), in b. */
static void encode_payload(rc_buf *b, const rc_msg *m)
{
    b->len = 0;
    FUZZ_CHECK(rc_encode(b, m) == 0, "a decoded message must encode");
    memmove(b->data, b->data + RC_FRAME_HEADER, b->len - RC_FRAME_HEADER);
    b->len -= RC_FRAME_HEADER;
}

/* Two decoded messages are the same when they encode to the same bytes:
 * the encoder writes every field a type carries. body_is_str counts only
 * for the types with a body. */
static bool msg_same(const rc_msg *a, const rc_msg *b)
{
    static rc_buf ea, eb;
    encode_payload(&ea, a);
    encode_payload(&eb, b);
    return buf_same(&ea, &eb);
}

static bool str_utf8(rc_str s)
{
    return rc_utf8_valid(s.ptr, s.len);
}

/* Whether every string of m, and of the msgs it holds, is UTF-8. */
static bool msg_utf8(const rc_msg *m)
{
    if (!str_utf8(m->user) || !str_utf8(m->token) || !str_utf8(m->g) || !str_utf8(m->mid) ||
        !str_utf8(m->body) || !str_utf8(m->from) || !str_utf8(m->to) || !str_utf8(m->text) ||
        !str_utf8(m->reason) || !str_utf8(m->srv))
        return false;
    for (uint32_t i = 0; i < m->n_msgs; i++)
        if (!msg_utf8(&m->msgs[i]))
            return false;
    for (uint32_t i = 0; i < m->n_groups; i++) /* an inbox reply's last messages */
        if (!str_utf8(m->groups[i].g) || (m->groups[i].has_last && m->groups[i].last && !msg_utf8(m->groups[i].last)))
            return false;
    return true;
}

/* JSON that rc_msgpack_to_json wrote: it must be UTF-8 and read back, into mp. */
static void check_reads_back(const rc_buf *json, rc_buf *mp, const char *what)
{
    FUZZ_CHECK(buf_utf8(json), "rc_msgpack_to_json writes UTF-8");
    mp->len = 0;
    const char *why = NULL;
    rc_err e = rc_json_to_msgpack((const char *)json->data, json->len, mp, &why);
    if (e != RC_OK) {
        fuzz_dump("json", json->data, json->len);
        fprintf(stderr, "rc_json_to_msgpack: %s (%s)\n", rc_err_name(e), why);
    }
    FUZZ_CHECK(e == RC_OK, what);
}

/* rc_encode -> rc_msgpack_to_json -> rc_json_to_msgpack -> rc_decode. */
static void check_round_trip(const rc_msg *m)
{
    static rc_buf frame, json, back;
    static rc_decoder dec;
    static bool ready;
    if (!ready) {
        rc_decoder_init(&dec);
        ready = true;
    }
    encode_payload(&frame, m);
    json.len = 0;
    FUZZ_CHECK(rc_msgpack_to_json(frame.data, frame.len, &json) == 0, "every encoded message writes as JSON");
    check_reads_back(&json, &back, "the JSON of a message reads back");
    rc_msg out;
    const char *why = NULL;
    rc_err e = rc_decode(&dec, back.data, back.len, &out, &why);
    FUZZ_CHECK(e != RC_E_INTERNAL, "what comes back never decodes to E_INTERNAL");
    if (!msg_utf8(m))
        return; /* a string went as base64 under another key (json.h) */
    if (e != RC_OK) {
        fuzz_dump("json", json.data, json.len);
        fprintf(stderr, "rc_decode: %s (%s)\n", rc_err_name(e), why);
    }
    FUZZ_CHECK(e == RC_OK, "a message whose strings are UTF-8 comes back from JSON");
    /* JSON has no bin: every body comes back str */
    rc_msg want = *m;
    want.body_is_str = true;
    rc_msg *msgs = NULL;
    if (m->n_msgs) {
        msgs = malloc(sizeof(rc_msg) * m->n_msgs);
        FUZZ_CHECK(msgs != NULL, "memory for the msgs");
        for (uint32_t i = 0; i < m->n_msgs; i++) {
            msgs[i] = m->msgs[i];
            msgs[i].body_is_str = true;
        }
        want.msgs = msgs;
    }
    rc_inbox_entry *groups = NULL; /* an inbox reply's last messages: bodies as str too */
    rc_msg *lasts = NULL;
    if (m->n_groups) {
        groups = malloc(sizeof(*groups) * m->n_groups);
        lasts = malloc(sizeof(*lasts) * m->n_groups);
        FUZZ_CHECK(groups && lasts, "memory for the groups");
        for (uint32_t i = 0; i < m->n_groups; i++) {
            groups[i] = m->groups[i];
            if (groups[i].has_last && groups[i].last) {
                lasts[i] = *groups[i].last;
                lasts[i].body_is_str = true;
                groups[i].last = &lasts[i];
            }
        }
        want.groups = groups;
    }
    bool same = msg_same(&want, &out);
    free(groups);
    free(lasts);
    free(msgs);
    if (!same)
        fuzz_dump("json", json.data, json.len);
    FUZZ_CHECK(same, "decode(json(encode(m))) == m, bodies as str");
}

/* The input as a client's text message. */
static void check_text(const uint8_t *data, size_t size)
{
    static rc_buf mp, json, mp2, json2;
    static rc_decoder server, client, client2;
    static bool ready;
    if (!ready) {
        rc_decoder_init_requests(&server);
        rc_decoder_init(&client);
        rc_decoder_init(&client2);
        ready = true;
    }
    mp.len = 0;
    const char *why = NULL;
    rc_err e = rc_json_to_msgpack((const char *)data, size, &mp, &why);
    FUZZ_CHECK(why != NULL, "rc_json_to_msgpack always sets why");
    if (e != RC_OK) {
        if (e != RC_E_BAD_FRAME)
            fprintf(stderr, "rc_json_to_msgpack: %s (%s)\n", rc_err_name(e), why);
        FUZZ_CHECK(e == RC_E_BAD_FRAME, "a text message is OK or E_BAD_FRAME, never E_INTERNAL");
        FUZZ_CHECK(why[0] != '\0', "an error says why");
        FUZZ_CHECK(mp.len == 0, "a failure writes nothing");
        return;
    }
    FUZZ_CHECK(rc_utf8_valid((const char *)data, size), "only UTF-8 text converts");

    rc_msg m, m2;
    FUZZ_CHECK(rc_decode(&server, mp.data, mp.len, &m, &why) != RC_E_INTERNAL, "never E_INTERNAL (server)");
    rc_err d1 = rc_decode(&client, mp.data, mp.len, &m, &why);
    FUZZ_CHECK(d1 != RC_E_INTERNAL, "never E_INTERNAL (client)");

    /* the map as JSON again: it reads back, decodes the same, and is a
     * fixed point (only NaN and infinity change, to null, the first time) */
    json.len = 0;
    FUZZ_CHECK(rc_msgpack_to_json(mp.data, mp.len, &json) == 0, "a map from JSON writes as JSON");
    check_reads_back(&json, &mp2, "and reads back");
    json2.len = 0;
    FUZZ_CHECK(rc_msgpack_to_json(mp2.data, mp2.len, &json2) == 0, "and writes again");
    if (!buf_same(&json, &json2)) {
        fuzz_dump("first", json.data, json.len);
        fuzz_dump("second", json2.data, json2.len);
    }
    FUZZ_CHECK(buf_same(&json, &json2), "JSON -> map -> JSON is a fixed point");
    rc_err d2 = rc_decode(&client2, mp2.data, mp2.len, &m2, &why);
    FUZZ_CHECK(d1 == d2, "the map read back decodes with the same answer");
    if (d1 != RC_OK)
        return;
    FUZZ_CHECK(msg_same(&m, &m2), "and to the same message");
    FUZZ_CHECK(msg_utf8(&m), "strings from JSON are UTF-8");
    check_round_trip(&m);
}

/* The input as a server frame's map. */
static void check_map(const uint8_t *data, size_t size)
{
    static rc_buf json, mp;
    static rc_decoder client, back;
    static bool ready;
    if (!ready) {
        rc_decoder_init(&client);
        rc_decoder_init(&back);
        ready = true;
    }
    json.len = 0;
    if (rc_msgpack_to_json(data, size, &json) == 0) {
        check_reads_back(&json, &mp, "what rc_msgpack_to_json writes for any bytes, rc_json_to_msgpack takes");
        rc_msg m;
        const char *why = NULL;
        FUZZ_CHECK(rc_decode(&back, mp.data, mp.len, &m, &why) != RC_E_INTERNAL, "never E_INTERNAL");
    } else {
        FUZZ_CHECK(json.len == 0, "a failure writes nothing");
    }
    rc_msg m;
    const char *why = NULL;
    if (rc_decode(&client, data, size, &m, &why) == RC_OK)
        check_round_trip(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FUZZ_CHECK(rc_utf8_valid((const char *)data, size) == utf8_reference(data, size),
               "rc_utf8_valid agrees with RFC 3629 read by the book");
    check_text(data, size);
    check_map(data, size);
    return 0;
}
