/*
 * Codec for wire protocol v1: strict decoding of MessagePack maps into
 * rc_msg, and encoding of rc_msg into length-prefixed frames.
 *
 * Decoding is two passes over the map msgpack-c built: the first finds `t`
 * and `rid` (so every error can echo the rid), the second reads only the keys
 * that type defines, checking each one's MessagePack type and length bounds.
 * Keys a type does not define are ignored, as the protocol promises forward
 * compatibility. Strings and bodies are not copied: msgpack-c's unpacker
 * points str/bin objects into the caller's buffer.
 */
#include "ringcast/proto.h"

#include <stdlib.h>
#include <string.h>

#define RC_DECODER_ZONE_CHUNK 4096u /* msgpack zone chunk: one hist reply fits a few chunks */

static const char *const type_names[RC_T_COUNT] = {
    [RC_T_NONE] = "?",       [RC_T_HELLO] = "hello",   [RC_T_JOIN] = "join",
    [RC_T_LEAVE] = "leave",  [RC_T_SEND] = "send",     [RC_T_HIST] = "hist",
    [RC_T_PING] = "ping",    [RC_T_REPLAY] = "replay", [RC_T_WELCOME] = "welcome",
    [RC_T_JOINED] = "joined", [RC_T_SYNCED] = "synced", [RC_T_LEFT] = "left",
    [RC_T_ACK] = "ack",      [RC_T_MSG] = "msg",       [RC_T_PONG] = "pong",
    [RC_T_ERR] = "err",      [RC_T_BYE] = "bye",       [RC_T_PRESENCE] = "presence",
    [RC_T_TYPING] = "typing", [RC_T_ONLINE] = "online", [RC_T_OFFLINE] = "offline",
    [RC_T_REFRESH] = "refresh", [RC_T_REFRESHED] = "refreshed", [RC_T_PUBLISH] = "publish",
    [RC_T_READ] = "read",    [RC_T_INBOX] = "inbox",   [RC_T_MARKED] = "marked",
    [RC_T_RECEIPT] = "receipt",
};

static const char *const err_names[RC_E_COUNT] = {
    [RC_OK] = "OK",
    [RC_E_BAD_FRAME] = "E_BAD_FRAME",
    [RC_E_FRAME_TOO_LARGE] = "E_FRAME_TOO_LARGE",
    [RC_E_UNKNOWN_TYPE] = "E_UNKNOWN_TYPE",
    [RC_E_MISSING_FIELD] = "E_MISSING_FIELD",
    [RC_E_BAD_FIELD] = "E_BAD_FIELD",
    [RC_E_NOT_AUTHENTICATED] = "E_NOT_AUTHENTICATED",
    [RC_E_AUTH_FAILED] = "E_AUTH_FAILED",
    [RC_E_FORBIDDEN] = "E_FORBIDDEN",
    [RC_E_NOT_MEMBER] = "E_NOT_MEMBER",
    [RC_E_RATE_LIMITED] = "E_RATE_LIMITED",
    [RC_E_OVERLOADED] = "E_OVERLOADED",
    [RC_E_LIMIT] = "E_LIMIT",
    [RC_E_SHUTTING_DOWN] = "E_SHUTTING_DOWN",
    [RC_E_INTERNAL] = "E_INTERNAL",
};

const char *rc_type_name(rc_type t)
{
    return (t > RC_T_NONE && t < RC_T_COUNT) ? type_names[t] : "?";
}

const char *rc_err_name(rc_err e)
{
    return (e >= RC_OK && e < RC_E_COUNT) ? err_names[e] : "E_UNKNOWN";
}

rc_err rc_err_from_name(const char *s, size_t len)
{
    for (int e = RC_E_BAD_FRAME; e < RC_E_COUNT; e++)
        if (strlen(err_names[e]) == len && memcmp(err_names[e], s, len) == 0)
            return (rc_err)e;
    return RC_E_COUNT;
}

bool rc_str_eq(rc_str a, rc_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

bool rc_name_valid(const char *p, size_t len, size_t max)
{
    return len >= 1 && len <= max && !memchr(p, '\0', len);
}

rc_err rc_frame_check_len(uint32_t n, uint32_t max_frame)
{
    if (n == 0)
        return RC_E_BAD_FRAME;
    if (n > max_frame)
        return RC_E_FRAME_TOO_LARGE;
    return RC_OK;
}

/* ------------------------------------------------------------------ */
/* Field table: every key the protocol knows, its MessagePack kind and  */
/* bounds. A type's spec lists which of these it requires or accepts.   */
/* ------------------------------------------------------------------ */

typedef enum field_id {
    F_RID, F_USER, F_TOKEN, F_G, F_SINCE, F_BODY, F_MID, F_BEFORE, F_LIMIT,
    F_SEQ, F_TS, F_FROM, F_CODE, F_TEXT, F_REASON, F_SRV, F_SID, F_MAX_FRAME,
    F_DUP, F_LOST, F_MSGS, F_TO, F_MORE, F_ECHO, F_PRESENCE, F_ONLINE, F_USERS, F_N, F_RECEIPTS, F_READ, F_GROUPS, F_EXP, F_COUNT
} field_id;

/* K_NAME is a K_STR that names something (a user, a group, a message id):
 * it may not hold the byte 0x00 (proto/PROTOCOL.md §2.1), so a name is the
 * same string to every layer that keys, logs or prints it. */
typedef enum field_kind { K_UINT, K_STR, K_NAME, K_BODY, K_BOOL, K_ARRAY, K_NAMES, K_INBOX } field_kind;

typedef struct field_def {
    const char *key;
    uint32_t key_len; /* strlen(key): a key is matched by length first */
    field_kind kind;
    uint32_t min_len; /* K_STR: bytes */
    uint32_t max_len;
} field_def;

#define FIELD_KEY(s) s, sizeof(s) - 1u
static const field_def fields[F_COUNT] = {
    [F_RID] = { FIELD_KEY("rid"), K_UINT, 0, 0 },
    [F_USER] = { FIELD_KEY("user"), K_NAME, 1, RC_MAX_USER },
    [F_TOKEN] = { FIELD_KEY("token"), K_STR, 0, RC_MAX_TOKEN },
    [F_G] = { FIELD_KEY("g"), K_NAME, 1, RC_MAX_GROUP },
    [F_SINCE] = { FIELD_KEY("since"), K_UINT, 0, 0 },
    [F_BODY] = { FIELD_KEY("body"), K_BODY, 0, UINT32_MAX },
    [F_MID] = { FIELD_KEY("mid"), K_NAME, 1, RC_MAX_MID },
    [F_BEFORE] = { FIELD_KEY("before"), K_UINT, 0, 0 },
    [F_LIMIT] = { FIELD_KEY("limit"), K_UINT, 1, RC_MAX_HIST_LIMIT },
    [F_SEQ] = { FIELD_KEY("seq"), K_UINT, 0, 0 },
    [F_TS] = { FIELD_KEY("ts"), K_UINT, 0, 0 },
    [F_FROM] = { FIELD_KEY("from"), K_NAME, 1, RC_MAX_USER },
    [F_CODE] = { FIELD_KEY("code"), K_STR, 1, 64 },
    [F_TEXT] = { FIELD_KEY("msg"), K_STR, 0, RC_MAX_TEXT },
    [F_REASON] = { FIELD_KEY("reason"), K_STR, 0, RC_MAX_TEXT },
    [F_SRV] = { FIELD_KEY("srv"), K_STR, 0, RC_MAX_TEXT },
    [F_SID] = { FIELD_KEY("sid"), K_UINT, 0, 0 },
    [F_MAX_FRAME] = { FIELD_KEY("max_frame"), K_UINT, 0, 0 },
    [F_DUP] = { FIELD_KEY("dup"), K_BOOL, 0, 0 },
    [F_LOST] = { FIELD_KEY("lost"), K_BOOL, 0, 0 },
    [F_MSGS] = { FIELD_KEY("msgs"), K_ARRAY, 0, 0 },
    [F_TO] = { FIELD_KEY("to"), K_NAME, 1, RC_MAX_USER },
    [F_MORE] = { FIELD_KEY("more"), K_BOOL, 0, 0 },
    [F_ECHO] = { FIELD_KEY("echo"), K_BOOL, 0, 0 },
    [F_PRESENCE] = { FIELD_KEY("presence"), K_BOOL, 0, 0 },
    [F_ONLINE] = { FIELD_KEY("online"), K_UINT, 0, 0 },
    [F_USERS] = { FIELD_KEY("users"), K_NAMES, 0, RC_MAX_PRESENCE_USERS },
    [F_N] = { FIELD_KEY("n"), K_UINT, 0, 0 },
    [F_EXP] = { FIELD_KEY("exp"), K_UINT, 0, 0 },
    [F_RECEIPTS] = { FIELD_KEY("receipts"), K_BOOL, 0, 0 },
    [F_READ] = { FIELD_KEY("read"), K_UINT, 0, 0 },
    [F_GROUPS] = { FIELD_KEY("groups"), K_INBOX, 0, RC_MAX_INBOX_LIMIT },
};

/* A type's spec: bit f = field f required, bit 64 + f = optional, so up
 * to 64 fields (a GCC/clang extension; the protocol outgrew 32). */
__extension__ typedef unsigned __int128 spec_t;
#define REQ(f) ((spec_t)1 << (f))
#define OPT(f) ((spec_t)1 << ((f) + 64))
/* Keys of a type that only its reply carries: hist is both a request and a reply. */
#define REPLY_ONLY (OPT(F_MSGS) | OPT(F_MORE) | OPT(F_USERS) | OPT(F_N) | OPT(F_FROM) | OPT(F_GROUPS))

/* Required and optional fields per type (bit f = required, bit 64+f = optional). */
static const spec_t type_spec[RC_T_COUNT] = {
    [RC_T_HELLO] = OPT(F_USER) | OPT(F_TOKEN) | OPT(F_ECHO), /* the session requires user or token (proto/PROTOCOL.md §6.8) */
    [RC_T_JOIN] = REQ(F_G) | OPT(F_SINCE) | OPT(F_PRESENCE) | OPT(F_RECEIPTS),
    [RC_T_READ] = REQ(F_G) | REQ(F_SEQ),
    /* inbox is a request and, with the reply-only keys, its reply */
    [RC_T_INBOX] = OPT(F_LIMIT) | OPT(F_GROUPS) | OPT(F_MORE),
    [RC_T_MARKED] = REQ(F_G) | REQ(F_SEQ),
    [RC_T_RECEIPT] = REQ(F_G) | REQ(F_USER) | REQ(F_SEQ),
    /* presence and typing are requests and, with the reply-only keys
     * (REPLY_ONLY), the reply / the event others receive */
    [RC_T_PRESENCE] = REQ(F_G) | OPT(F_USERS) | OPT(F_N),
    [RC_T_TYPING] = REQ(F_G) | OPT(F_FROM),
    [RC_T_ONLINE] = REQ(F_G) | REQ(F_USER),
    [RC_T_OFFLINE] = REQ(F_G) | REQ(F_USER),
    [RC_T_LEAVE] = REQ(F_G),
    [RC_T_SEND] = REQ(F_G) | REQ(F_BODY) | OPT(F_MID),
    [RC_T_PUBLISH] = REQ(F_G) | REQ(F_FROM) | REQ(F_BODY) | OPT(F_MID),
    [RC_T_HIST] = REQ(F_G) | OPT(F_BEFORE) | OPT(F_LIMIT) | OPT(F_MSGS) | OPT(F_MORE),
    [RC_T_PING] = 0,
    [RC_T_REFRESH] = REQ(F_TOKEN),
    [RC_T_REPLAY] = REQ(F_G) | REQ(F_FROM) | REQ(F_TS) | REQ(F_BODY) | REQ(F_REASON) | OPT(F_SEQ) | OPT(F_TO) |
                    OPT(F_MID),
    [RC_T_WELCOME] = REQ(F_SID) | REQ(F_SRV) | REQ(F_MAX_FRAME),
    [RC_T_JOINED] = REQ(F_G) | REQ(F_SEQ) | OPT(F_ONLINE) | OPT(F_READ),
    [RC_T_SYNCED] = REQ(F_G) | REQ(F_SEQ) | REQ(F_LOST) | OPT(F_MORE),
    [RC_T_LEFT] = REQ(F_G),
    [RC_T_ACK] = REQ(F_G) | REQ(F_SEQ) | REQ(F_TS) | OPT(F_DUP),
    [RC_T_MSG] = REQ(F_G) | REQ(F_SEQ) | REQ(F_FROM) | REQ(F_TS) | REQ(F_BODY) | OPT(F_MID),
    [RC_T_PONG] = 0,
    [RC_T_ERR] = REQ(F_CODE) | REQ(F_TEXT),
    [RC_T_BYE] = REQ(F_REASON),
    [RC_T_REFRESHED] = REQ(F_EXP),
};

void rc_decoder_init(rc_decoder *d)
{
    d->zone_ready = msgpack_zone_init(&d->zone, RC_DECODER_ZONE_CHUNK);
    d->requests = false;
}

void rc_decoder_init_requests(rc_decoder *d)
{
    rc_decoder_init(d);
    d->requests = true;
}

void rc_decoder_free(rc_decoder *d)
{
    if (d->zone_ready)
        msgpack_zone_destroy(&d->zone);
    d->zone_ready = false;
}

/* True when the n bytes at p spell the C string s. Every frame's keys are
 * looked up in tables by this, so the first byte is compared before the
 * length is worked out: most table entries fail there. */
static bool str_is(const char *p, uint32_t n, const char *s)
{
    return n > 0 && p[0] == s[0] && strlen(s) == n && memcmp(p, s, n) == 0;
}

static bool key_is(const msgpack_object *k, const char *s)
{
    return k->type == MSGPACK_OBJECT_STR && str_is(k->via.str.ptr, k->via.str.size, s);
}

static rc_type type_from_str(const msgpack_object_str *s)
{
    for (int t = RC_T_HELLO; t < RC_T_COUNT; t++)
        if (str_is(s->ptr, s->size, type_names[t]))
            return (rc_type)t;
    return RC_T_NONE;
}

static field_id field_lookup(const msgpack_object *k)
{
    if (k->type != MSGPACK_OBJECT_STR)
        return F_COUNT;
    const char *p = k->via.str.ptr;
    uint32_t n = k->via.str.size;
    for (int f = 0; f < F_COUNT; f++)
        if (fields[f].key_len == n && n > 0 && p[0] == fields[f].key[0] && memcmp(p, fields[f].key, n) == 0)
            return (field_id)f;
    return F_COUNT;
}

static rc_err decode_map(rc_decoder *d, const msgpack_object *o, rc_msg *out, const char **why, int depth);

/* Keys of one inbox entry (proto/PROTOCOL.md §6.11). */
enum { E_G, E_SEQ, E_READ, E_UNREAD, E_TS, E_LAST, E_KEYS };
static const char *const entry_keys[E_KEYS] = { "g", "seq", "read", "unread", "ts", "last" };
#define ENTRY_REQUIRED ((1u << E_G) | (1u << E_SEQ) | (1u << E_READ) | (1u << E_UNREAD))

static rc_err entry_field(rc_decoder *d, int k, const msgpack_object *v, rc_inbox_entry *e, const char **why,
                          int depth)
{
    if (k == E_G) {
        if (v->type != MSGPACK_OBJECT_STR || v->via.str.size < 1 || v->via.str.size > RC_MAX_GROUP ||
            memchr(v->via.str.ptr, '\0', v->via.str.size)) {
            *why = "an inbox entry's g must be a group id";
            return RC_E_BAD_FIELD;
        }
        e->g = (rc_str){ v->via.str.ptr, v->via.str.size };
        return RC_OK;
    }
    if (k == E_LAST) {
        e->last = msgpack_zone_malloc(&d->zone, sizeof(rc_msg));
        if (!e->last) {
            *why = "out of memory decoding an inbox entry";
            return RC_E_INTERNAL;
        }
        if (v->type != MSGPACK_OBJECT_MAP) {
            *why = "an inbox entry's last must be a msg map";
            return RC_E_BAD_FIELD;
        }
        rc_err r = decode_map(d, v, e->last, why, depth + 1);
        if (r == RC_OK && e->last->type != RC_T_MSG) {
            *why = "an inbox entry's last must be a msg map";
            r = RC_E_BAD_FIELD;
        }
        e->has_last = r == RC_OK;
        return r;
    }
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *why = "an inbox entry's seq, read, unread and ts must be unsigned integers";
        return RC_E_BAD_FIELD;
    }
    uint64_t *dst[E_KEYS] = { [E_SEQ] = &e->seq, [E_READ] = &e->read, [E_UNREAD] = &e->unread, [E_TS] = &e->ts };
    *dst[k] = v->via.u64;
    return RC_OK;
}

/* One inbox entry: a map with g, seq, read, unread, and ts and last when
 * the group has a message. Other keys are ignored, as in any map. */
static rc_err decode_entry(rc_decoder *d, const msgpack_object *o, rc_inbox_entry *e, const char **why, int depth)
{
    memset(e, 0, sizeof(*e));
    if (o->type != MSGPACK_OBJECT_MAP) {
        *why = "groups must hold inbox entry maps";
        return RC_E_BAD_FIELD;
    }
    unsigned seen = 0;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *key = &o->via.map.ptr[i].key;
        int k = 0;
        while (k < E_KEYS && !key_is(key, entry_keys[k]))
            k++;
        if (k == E_KEYS)
            continue;
        if (seen & (1u << k)) {
            *why = "a key appears twice in an inbox entry";
            return RC_E_BAD_FIELD;
        }
        seen |= 1u << k;
        rc_err r = entry_field(d, k, &o->via.map.ptr[i].val, e, why, depth);
        if (r != RC_OK)
            return r;
    }
    if ((seen & ENTRY_REQUIRED) != ENTRY_REQUIRED) {
        *why = "an inbox entry needs g, seq, read and unread";
        return RC_E_MISSING_FIELD;
    }
    return RC_OK;
}

/* Stores one field's value into out after checking its kind and bounds. */
static rc_err store_field(rc_decoder *d, field_id f, const msgpack_object *v, rc_msg *out,
                          const char **why, int depth)
{
    const field_def *def = &fields[f];
    rc_str s = { 0 };
    uint64_t u = 0;

    switch (def->kind) {
    case K_UINT:
        if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
            *why = "field must be an unsigned integer";
            return RC_E_BAD_FIELD;
        }
        u = v->via.u64;
        if (def->max_len && (u < def->min_len || u > def->max_len)) {
            *why = "integer field out of range";
            return RC_E_BAD_FIELD;
        }
        break;
    case K_STR:
    case K_NAME:
        if (v->type != MSGPACK_OBJECT_STR) {
            *why = "field must be a string";
            return RC_E_BAD_FIELD;
        }
        s.ptr = v->via.str.ptr;
        s.len = v->via.str.size;
        if (s.len < def->min_len || s.len > def->max_len) {
            *why = "string field outside its length bounds";
            return RC_E_BAD_FIELD;
        }
        if (def->kind == K_NAME && memchr(s.ptr, '\0', s.len)) {
            *why = "names (user, g, mid, from, to) may not contain the byte 0x00";
            return RC_E_BAD_FIELD;
        }
        break;
    case K_BODY:
        if (v->type == MSGPACK_OBJECT_STR) {
            out->body = (rc_str){ v->via.str.ptr, v->via.str.size };
            out->body_is_str = true;
        } else if (v->type == MSGPACK_OBJECT_BIN) {
            out->body = (rc_str){ v->via.bin.ptr, v->via.bin.size };
            out->body_is_str = false;
        } else {
            *why = "body must be bin or str";
            return RC_E_BAD_FIELD;
        }
        return RC_OK;
    case K_BOOL:
        if (v->type != MSGPACK_OBJECT_BOOLEAN) {
            *why = "field must be a boolean";
            return RC_E_BAD_FIELD;
        }
        break;
    case K_ARRAY:
        if (v->type != MSGPACK_OBJECT_ARRAY || depth > 0) {
            *why = "msgs must be an array of msg maps";
            return RC_E_BAD_FIELD;
        }
        out->n_msgs = v->via.array.size;
        out->msgs = NULL;
        out->has |= RC_HAS_MSGS;
        if (out->n_msgs) {
            out->msgs = msgpack_zone_malloc(&d->zone, sizeof(rc_msg) * out->n_msgs);
            if (!out->msgs) {
                *why = "out of memory decoding msgs";
                return RC_E_INTERNAL;
            }
        }
        for (uint32_t i = 0; i < out->n_msgs; i++) {
            if (v->via.array.ptr[i].type != MSGPACK_OBJECT_MAP) {
                *why = "msgs must hold msg maps";
                return RC_E_BAD_FIELD;
            }
            rc_err e = decode_map(d, &v->via.array.ptr[i], &out->msgs[i], why, depth + 1);
            if (e != RC_OK)
                return e;
            if (out->msgs[i].type != RC_T_MSG) {
                *why = "msgs must hold msg maps";
                return RC_E_BAD_FIELD;
            }
        }
        return RC_OK;
    case K_NAMES:
        if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size > def->max_len) {
            *why = "users must be an array of at most 1000 user names";
            return RC_E_BAD_FIELD;
        }
        out->n_users = v->via.array.size;
        out->users = out->n_users ? msgpack_zone_malloc(&d->zone, sizeof(rc_str) * out->n_users) : NULL;
        if (out->n_users && !out->users) {
            *why = "out of memory decoding users";
            return RC_E_INTERNAL;
        }
        for (uint32_t i = 0; i < out->n_users; i++) {
            const msgpack_object *e = &v->via.array.ptr[i];
            if (e->type != MSGPACK_OBJECT_STR || e->via.str.size < 1 || e->via.str.size > RC_MAX_USER ||
                memchr(e->via.str.ptr, '\0', e->via.str.size)) {
                *why = "users must hold user names";
                return RC_E_BAD_FIELD;
            }
            out->users[i] = (rc_str){ e->via.str.ptr, e->via.str.size };
        }
        out->has |= RC_HAS_USERS;
        return RC_OK;
    case K_INBOX:
        if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size > def->max_len || depth > 0) {
            *why = "groups must be an array of at most 1000 inbox entries";
            return RC_E_BAD_FIELD;
        }
        out->n_groups = v->via.array.size;
        out->groups = out->n_groups ? msgpack_zone_malloc(&d->zone, sizeof(rc_inbox_entry) * out->n_groups) : NULL;
        if (out->n_groups && !out->groups) {
            *why = "out of memory decoding groups";
            return RC_E_INTERNAL;
        }
        out->has |= RC_HAS_GROUPS;
        for (uint32_t i = 0; i < out->n_groups; i++) {
            rc_err e = decode_entry(d, &v->via.array.ptr[i], &out->groups[i], why, depth);
            if (e != RC_OK)
                return e;
        }
        return RC_OK;
    }

    switch (f) {
    case F_RID: out->rid = u; out->has |= RC_HAS_RID; break;
    case F_USER: out->user = s; break;
    case F_TOKEN: out->token = s; out->has |= RC_HAS_TOKEN; break;
    case F_G: out->g = s; break;
    case F_SINCE: out->since = u; out->has |= RC_HAS_SINCE; break;
    case F_MID: out->mid = s; out->has |= RC_HAS_MID; break;
    case F_BEFORE: out->before = u; out->has |= RC_HAS_BEFORE; break;
    case F_LIMIT: out->limit = u; out->has |= RC_HAS_LIMIT; break;
    case F_SEQ: out->seq = u; out->has |= RC_HAS_SEQ; break;
    case F_TS: out->ts = u; break;
    case F_FROM: out->from = s; break;
    case F_CODE:
        out->code = rc_err_from_name(s.ptr, s.len);
        break;
    case F_TEXT: out->text = s; break;
    case F_REASON: out->reason = s; break;
    case F_SRV: out->srv = s; break;
    case F_SID: out->sid = u; break;
    case F_MAX_FRAME: out->max_frame = u; break;
    case F_DUP: out->dup = v->via.boolean; out->has |= RC_HAS_DUP; break;
    case F_LOST: out->lost = v->via.boolean; break;
    case F_TO: out->to = s; out->has |= RC_HAS_TO; break;
    case F_MORE: out->more = v->via.boolean; break;
    case F_ECHO: out->echo = v->via.boolean; out->has |= RC_HAS_ECHO; break;
    case F_PRESENCE: out->presence = v->via.boolean; out->has |= RC_HAS_PRESENCE; break;
    case F_ONLINE: out->online = u; out->has |= RC_HAS_ONLINE; break;
    case F_N: out->n = u; break;
    case F_EXP: out->exp = u; break;
    case F_RECEIPTS: out->receipts = v->via.boolean; out->has |= RC_HAS_RECEIPTS; break;
    case F_READ: out->read = u; out->has |= RC_HAS_READ; break;
    default: break;
    }
    return RC_OK;
}

/* First pass: `t` and `rid`, so that later errors can echo the rid. */
static rc_err decode_header(const msgpack_object_map *map, rc_msg *out, const char **why)
{
    const msgpack_object *t = NULL;
    bool seen_rid = false;
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *k = &map->ptr[i].key, *v = &map->ptr[i].val;
        if ((key_is(k, "rid") && seen_rid) || (key_is(k, "t") && t)) {
            out->has &= ~(uint32_t)RC_HAS_RID; /* which rid to echo is ambiguous */
            *why = "a key appears twice in the map";
            return RC_E_BAD_FIELD;
        }
        if (key_is(k, "rid")) {
            seen_rid = true;
            if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
                *why = "rid must be an unsigned integer";
                return RC_E_BAD_FIELD;
            }
            out->rid = v->via.u64;
            out->has |= RC_HAS_RID;
        } else if (key_is(k, "t")) {
            t = v;
        }
    }
    if (!t) {
        *why = "every map needs a `t` (type) key";
        return RC_E_MISSING_FIELD;
    }
    if (t->type != MSGPACK_OBJECT_STR) {
        *why = "`t` must be a string";
        return RC_E_BAD_FIELD;
    }
    out->type = type_from_str(&t->via.str);
    if (out->type == RC_T_NONE) {
        *why = "unknown message type `t`";
        return RC_E_UNKNOWN_TYPE;
    }
    return RC_OK;
}

static rc_err decode_map(rc_decoder *d, const msgpack_object *o, rc_msg *out, const char **why, int depth)
{
    if (depth > 0)
        memset(out, 0, sizeof(*out)); /* rc_decode cleared the top level's */
    if (o->type != MSGPACK_OBJECT_MAP) {
        *why = "a frame must hold one MessagePack map";
        return RC_E_BAD_FRAME;
    }
    const msgpack_object_map *map = &o->via.map;
    rc_err e = decode_header(map, out, why);
    if (e != RC_OK)
        return e;

    spec_t spec = type_spec[out->type];
    if (d->requests)
        spec &= ~REPLY_ONLY;
    spec_t seen = 0;
    for (uint32_t i = 0; i < map->size; i++) {
        field_id f = field_lookup(&map->ptr[i].key);
        if (f == F_COUNT || f == F_RID || !(spec & (REQ(f) | OPT(f))))
            continue; /* unknown to this type: ignored for forward compatibility */
        if (seen & REQ(f)) {
            *why = "a key appears twice in the map";
            return RC_E_BAD_FIELD;
        }
        seen |= REQ(f);
        e = store_field(d, f, &map->ptr[i].val, out, why, depth);
        if (e != RC_OK)
            return e;
    }
    spec_t required = spec & (spec_t)UINT64_MAX;
    if ((seen & required) != required) {
        *why = "a required field is missing";
        return RC_E_MISSING_FIELD;
    }
    return RC_OK;
}

/*
 * Structural pre-check before msgpack-c builds objects: every array or map
 * may declare no more elements than bytes remain (each element takes at
 * least one byte), and nesting stays within RC_MAX_DEPTH. Without it a
 * 15-byte frame declaring 2^32 elements makes the unpacker try a huge
 * allocation, and deep nesting overflows its fixed stack (RC_MAX_DEPTH is
 * within msgpack-c's).
 */
static uint64_t be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Shape of the item at p (left > 0 bytes): header bytes, payload bytes to
 * skip, and child items that follow. Returns 1 for an array or map (even an
 * empty one: msgpack-c gives every container a level of its stack), 0 for
 * any other item, -1 for a reserved or truncated header. */
static int item_shape(const uint8_t *p, size_t left, size_t *hdr, uint64_t *skip, uint64_t *children)
{
    uint8_t b = p[0];
    unsigned lb = 0;  /* bytes of a length field after the tag */
    unsigned extra = 0; /* fixed payload bytes (beyond a length) */
    int kind = 0;     /* 0 scalar/fixed, 1 length-prefixed payload, 2 array, 3 map */
    *hdr = 1;
    *skip = 0;
    *children = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 0;
    if (b <= 0x8f) { *children = 2u * (b & 0x0fu); return 1; }
    if (b <= 0x9f) { *children = b & 0x0fu; return 1; }
    if (b <= 0xbf) { *skip = b & 0x1fu; return 0; }
    switch (b) {
    case 0xc4: case 0xd9: lb = 1; kind = 1; break;            /* bin8, str8 */
    case 0xc5: case 0xda: lb = 2; kind = 1; break;            /* bin16, str16 */
    case 0xc6: case 0xdb: lb = 4; kind = 1; break;            /* bin32, str32 */
    case 0xc7: lb = 1; extra = 1; kind = 1; break;            /* ext8: len, type */
    case 0xc8: lb = 2; extra = 1; kind = 1; break;            /* ext16 */
    case 0xc9: lb = 4; extra = 1; kind = 1; break;            /* ext32 */
    case 0xca: case 0xce: case 0xd2: extra = 4; break;        /* float32, uint32, int32 */
    case 0xcb: case 0xcf: case 0xd3: extra = 8; break;        /* float64, uint64, int64 */
    case 0xcc: case 0xd0: extra = 1; break;                   /* uint8, int8 */
    case 0xcd: case 0xd1: extra = 2; break;                   /* uint16, int16 */
    case 0xd4: extra = 2; break;                              /* fixext1: type + 1 */
    case 0xd5: extra = 3; break;
    case 0xd6: extra = 5; break;
    case 0xd7: extra = 9; break;
    case 0xd8: extra = 17; break;
    case 0xdc: lb = 2; kind = 2; break;                       /* array16 */
    case 0xdd: lb = 4; kind = 2; break;                       /* array32 */
    case 0xde: lb = 2; kind = 3; break;                       /* map16 */
    case 0xdf: lb = 4; kind = 3; break;                       /* map32 */
    default: return -1;                                       /* 0xc1: never used */
    }
    if (left < 1u + lb)
        return -1;
    uint64_t n = be(p + 1, lb);
    *hdr = 1u + lb;
    if (kind == 0 || kind == 1) {
        *skip = n + extra;
        return 0;
    }
    *children = kind == 3 ? 2u * n : n;
    return 1;
}

static rc_err prescan(const uint8_t *p, size_t len)
{
    uint64_t pending[RC_MAX_DEPTH + 1]; /* items still to read at each level */
    unsigned depth = 0;
    size_t off = 0;
    pending[0] = 1;
    while (depth > 0 || pending[0] > 0) {
        if (pending[depth] == 0) {
            depth--;
            continue;
        }
        if (off >= len)
            return RC_E_BAD_FRAME;
        size_t hdr;
        uint64_t skip, children;
        int shape = item_shape(p + off, len - off, &hdr, &skip, &children);
        if (shape < 0)
            return RC_E_BAD_FRAME;
        pending[depth]--;
        if (skip > len - off - hdr || children > len - off - hdr)
            return RC_E_BAD_FRAME;
        off += hdr + skip;
        if (shape == 1 && depth == RC_MAX_DEPTH)
            return RC_E_BAD_FRAME; /* the container itself would be level RC_MAX_DEPTH + 1 */
        if (children)
            pending[++depth] = children;
    }
    return RC_OK;
}

rc_err rc_decode(rc_decoder *d, const uint8_t *buf, size_t len, rc_msg *out, const char **why)
{
    static const char *unused;
    if (!why)
        why = &unused;
    *why = "";
    memset(out, 0, sizeof(*out));
    if (!d->zone_ready) {
        *why = "decoder has no memory";
        return RC_E_INTERNAL;
    }
    if (prescan(buf, len) != RC_OK) {
        *why = "the frame is not valid MessagePack, nests too deep, or declares more items than it holds";
        return RC_E_BAD_FRAME;
    }
    msgpack_zone_clear(&d->zone);
    msgpack_object obj;
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack((const char *)buf, len, &off, &d->zone, &obj);
    if (r == MSGPACK_UNPACK_NOMEM_ERROR) {
        *why = "out of memory decoding the frame";
        return RC_E_INTERNAL;
    }
    if (r == MSGPACK_UNPACK_CONTINUE || r == MSGPACK_UNPACK_PARSE_ERROR) {
        *why = "the frame is not valid MessagePack";
        return RC_E_BAD_FRAME;
    }
    if (r == MSGPACK_UNPACK_EXTRA_BYTES || off != len) {
        *why = "bytes follow the map inside the frame";
        return RC_E_BAD_FRAME;
    }
    return decode_map(d, &obj, out, why, 0);
}

/* ------------------------------------------------------------------ */
/* Encoding                                                             */
/* ------------------------------------------------------------------ */

#define RC_BUF_MIN_CAP 256u

void rc_buf_init(rc_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void rc_buf_free(rc_buf *b)
{
    free(b->data);
    rc_buf_init(b);
}

int rc_buf_reserve(rc_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : RC_BUF_MIN_CAP;
    while (cap - b->len < extra)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int rc_buf_append(rc_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (rc_buf_reserve(b, n) != 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* Copies n bytes with at most two fixed-size moves each way when n < 16
 * (the two may overlap): msgpack-c's packer hands over a map a piece at a
 * time (a 1-byte header, a 3-byte key, a 9-byte integer), and a memcpy call
 * for each piece costs more than the piece. */
static inline void copy_small(uint8_t *d, const void *src, size_t n)
{
    const uint8_t *p = src;
    if (n >= 16) {
        memcpy(d, p, n);
    } else if (n >= 8) {
        uint64_t a, b;
        memcpy(&a, p, 8);
        memcpy(&b, p + n - 8, 8);
        memcpy(d, &a, 8);
        memcpy(d + n - 8, &b, 8);
    } else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        memcpy(d, &a, 4);
        memcpy(d + n - 4, &b, 4);
    } else if (n > 0) {
        d[0] = p[0];
        d[n / 2] = p[n / 2];
        d[n - 1] = p[n - 1];
    }
}

/* msgpack_packer write callback: appends to an rc_buf; any failure sticks
 * (every caller drops what was encoded when `failed` is set, so a piece
 * that fits after a failed one changes nothing). */
static int sink_write(void *data, const char *p, size_t n)
{
    rc_buf_sink *s = data;
    rc_buf *b = s->buf;
    if (__builtin_expect(b->cap - b->len >= n, 1)) {
        copy_small(b->data + b->len, p, n);
        b->len += n;
    } else if (rc_buf_append(b, p, n) != 0) {
        s->failed = true;
    }
    return s->failed ? -1 : 0;
}

void rc_buf_packer_init(msgpack_packer *pk, rc_buf_sink *sink, rc_buf *b)
{
    *sink = (rc_buf_sink){ b, false };
    msgpack_packer_init(pk, sink, sink_write);
}

/* The encoder's packer: msgpack-c's own pack template (msgpack/pack_template.h,
 * the code behind msgpack_pack_*) instantiated for an rc_buf, so that every
 * piece it writes is an inline append instead of a call through
 * msgpack_packer's write callback: a `msg` is about twenty pieces, and the
 * calls cost more than the bytes. Any failure sticks, as in sink_write. */
typedef struct rc_pk {
    uint8_t *at, *end; /* where the next byte goes in buf's memory, and its end */
    rc_buf *buf;       /* its len is behind `at` until pk_done */
    bool failed;
} rc_pk;

static void pk_init(rc_pk *x, rc_buf *b)
{
    *x = (rc_pk){ b->data + b->len, b->data + b->cap, b, false };
}

/* The piece does not fit: grow buf and append it there. */
static __attribute__((noinline)) int pk_append_slow(rc_pk *x, const void *p, size_t n)
{
    rc_buf *b = x->buf;
    if (x->failed)
        return -1;
    b->len = (size_t)(x->at - b->data);
    if (rc_buf_append(b, p, n) != 0) {
        x->failed = true;
        x->at = x->end; /* nothing fits any more */
        return -1;
    }
    pk_init(x, b);
    return 0;
}

static inline __attribute__((always_inline)) int pk_append(rc_pk *x, const void *p, size_t n)
{
    if (__builtin_expect((size_t)(x->end - x->at) >= n, 1)) {
        copy_small(x->at, p, n);
        x->at += n;
        return 0;
    }
    return pk_append_slow(x, p, n);
}

/* Brings buf's len up to what was packed; -1 if any piece failed. */
static int pk_done(rc_pk *x)
{
    if (x->failed)
        return -1;
    x->buf->len = (size_t)(x->at - x->buf->data);
    return 0;
}

#define msgpack_pack_inline_func(name) static inline int rc_pk##name
#define msgpack_pack_inline_func_cint(name) static inline int rc_pk##name
#define msgpack_pack_inline_func_fixint(name) static inline int rc_pk_fix##name
#define msgpack_pack_user rc_pk *
#define msgpack_pack_append_buffer(user, buf, len) return pk_append(user, buf, len)
#define msgpack_pack_ext rc_pk_ext /* the template calls it by name (timestamps) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <msgpack/pack_template.h>
#pragma GCC diagnostic pop
#undef msgpack_pack_ext
#undef msgpack_pack_inline_func_cint

/* The field packers are inlined everywhere, so that each literal key's
 * length and bytes are constants. */
#define PK_INLINE static inline __attribute__((always_inline))

/* A key. The keys are short literals: a fixstr, its header and bytes
 * handed to the packer's writer in one piece. */
PK_INLINE void pack_key(rc_pk *pk, const char *k)
{
    size_t n = __builtin_strlen(k); /* constant for the literal keys used below */
    if (n > 31) {
        rc_pk_str(pk, n);
        rc_pk_str_body(pk, k, n);
        return;
    }
    char fix[32];
    fix[0] = (char)(0xa0 | n);
    memcpy(fix + 1, k, n);
    pk_append(pk, fix, n + 1);
}

PK_INLINE void pack_kstr(rc_pk *pk, const char *k, rc_str v)
{
    pack_key(pk, k);
    rc_pk_str(pk, v.len);
    rc_pk_str_body(pk, v.ptr, v.len);
}

PK_INLINE void pack_kuint(rc_pk *pk, const char *k, uint64_t v)
{
    pack_key(pk, k);
    rc_pk_uint64(pk, v);
}

PK_INLINE void pack_kbool(rc_pk *pk, const char *k, bool v)
{
    pack_key(pk, k);
    if (v)
        rc_pk_true(pk);
    else
        rc_pk_false(pk);
}

static void pack_body(rc_pk *pk, const rc_msg *m)
{
    pack_key(pk, "body");
    if (m->body_is_str) {
        rc_pk_str(pk, m->body.len);
        rc_pk_str_body(pk, m->body.ptr, m->body.len);
    } else {
        rc_pk_bin(pk, m->body.len);
        rc_pk_bin_body(pk, m->body.ptr, m->body.len);
    }
}

static bool opt_set(const rc_msg *m, field_id f)
{
    switch (f) {
    case F_USER: return m->user.ptr != NULL; /* hello: absent when never set */
    case F_TOKEN: return m->has & RC_HAS_TOKEN;
    case F_SINCE: return m->has & RC_HAS_SINCE;
    case F_MID: return m->has & RC_HAS_MID;
    case F_BEFORE: return m->has & RC_HAS_BEFORE;
    case F_LIMIT: return m->has & RC_HAS_LIMIT;
    case F_DUP: return m->has & RC_HAS_DUP;
    case F_TO: return m->has & RC_HAS_TO;
    case F_SEQ: return m->has & RC_HAS_SEQ;
    case F_MSGS: return m->has & RC_HAS_MSGS;
    case F_MORE: return m->more; /* sent only when true */
    case F_ECHO: return m->has & RC_HAS_ECHO;
    case F_PRESENCE: return m->has & RC_HAS_PRESENCE;
    case F_ONLINE: return m->has & RC_HAS_ONLINE;
    case F_USERS: return m->has & RC_HAS_USERS;
    case F_N: return m->has & RC_HAS_USERS;
    case F_FROM: return m->from.len > 0; /* typing event */
    case F_RECEIPTS: return m->has & RC_HAS_RECEIPTS;
    case F_READ: return m->has & RC_HAS_READ;
    case F_GROUPS: return m->has & RC_HAS_GROUPS;
    default: return false;
    }
}

static void pack_msg(rc_pk *pk, const rc_msg *m);

/* One inbox entry. `last` goes as the stored map's bytes, unchanged (the
 * server's replies), or, for an entry that was decoded, as its decoded
 * message encoded again; `ts` with it, or whenever it is not 0. */
static void pack_entry(rc_pk *pk, const rc_inbox_entry *e)
{
    bool has_last = e->has_last && (e->last_map.len > 0 || e->last);
    bool has_ts = has_last || e->ts > 0;
    rc_pk_map(pk, 4u + has_ts + has_last);
    pack_kstr(pk, "g", e->g);
    pack_kuint(pk, "seq", e->seq);
    pack_kuint(pk, "read", e->read);
    pack_kuint(pk, "unread", e->unread);
    if (has_ts)
        pack_kuint(pk, "ts", e->ts);
    if (!has_last)
        return;
    pack_key(pk, "last");
    if (e->last_map.len > 0)
        pk_append(pk, e->last_map.ptr, e->last_map.len);
    else
        pack_msg(pk, e->last);
}

PK_INLINE void pack_field(rc_pk *pk, const rc_msg *m, field_id f)
{
    switch (f) {
    case F_USER: pack_kstr(pk, "user", m->user); break;
    case F_TOKEN: pack_kstr(pk, "token", m->token); break;
    case F_G: pack_kstr(pk, "g", m->g); break;
    case F_SINCE: pack_kuint(pk, "since", m->since); break;
    case F_BODY: pack_body(pk, m); break;
    case F_MID: pack_kstr(pk, "mid", m->mid); break;
    case F_BEFORE: pack_kuint(pk, "before", m->before); break;
    case F_LIMIT: pack_kuint(pk, "limit", m->limit); break;
    case F_SEQ: pack_kuint(pk, "seq", m->seq); break;
    case F_TS: pack_kuint(pk, "ts", m->ts); break;
    case F_FROM: pack_kstr(pk, "from", m->from); break;
    case F_CODE: pack_kstr(pk, "code", rc_str_c(rc_err_name(m->code))); break;
    case F_TEXT: pack_kstr(pk, "msg", m->text); break;
    case F_REASON: pack_kstr(pk, "reason", m->reason); break;
    case F_SRV: pack_kstr(pk, "srv", m->srv); break;
    case F_SID: pack_kuint(pk, "sid", m->sid); break;
    case F_MAX_FRAME: pack_kuint(pk, "max_frame", m->max_frame); break;
    case F_DUP: pack_kbool(pk, "dup", m->dup); break;
    case F_LOST: pack_kbool(pk, "lost", m->lost); break;
    case F_TO: pack_kstr(pk, "to", m->to); break;
    case F_MORE: pack_kbool(pk, "more", m->more); break;
    case F_ECHO: pack_kbool(pk, "echo", m->echo); break;
    case F_PRESENCE: pack_kbool(pk, "presence", m->presence); break;
    case F_ONLINE: pack_kuint(pk, "online", m->online); break;
    case F_N: pack_kuint(pk, "n", m->n); break;
    case F_USERS:
        pack_key(pk, "users");
        rc_pk_array(pk, m->n_users);
        for (uint32_t i = 0; i < m->n_users; i++) {
            rc_pk_str(pk, m->users[i].len);
            rc_pk_str_body(pk, m->users[i].ptr, m->users[i].len);
        }
        break;
    case F_EXP: pack_kuint(pk, "exp", m->exp); break;
    case F_RECEIPTS: pack_kbool(pk, "receipts", m->receipts); break;
    case F_READ: pack_kuint(pk, "read", m->read); break;
    case F_GROUPS:
        pack_key(pk, "groups");
        rc_pk_array(pk, m->n_groups);
        for (uint32_t i = 0; i < m->n_groups; i++)
            pack_entry(pk, &m->groups[i]);
        break;
    case F_MSGS:
        pack_key(pk, "msgs");
        rc_pk_array(pk, m->n_msgs);
        for (uint32_t i = 0; i < m->n_msgs; i++)
            pack_msg(pk, &m->msgs[i]);
        break;
    default: break;
    }
}

static void pack_msg(rc_pk *pk, const rc_msg *m)
{
    /* The fields m encodes, in the order of their ids: every required one,
     * and the optional ones it sets. One pass finds them, as the map's
     * header needs their number before the first. */
    spec_t spec = type_spec[m->type];
    uint64_t req = (uint64_t)spec, opt = (uint64_t)(spec >> 64);
    uint8_t enc[64];
    uint32_t n = 0;
    for (uint64_t bits = req | opt; bits; bits &= bits - 1) {
        field_id f = (field_id)__builtin_ctzll(bits);
        if (((req >> f) & 1) || opt_set(m, f))
            enc[n++] = (uint8_t)f;
    }
    bool rid = m->has & RC_HAS_RID;
    rc_pk_map(pk, 1u + rid + n); /* `t`, `rid` if set, then the fields */
    pack_kstr(pk, "t", rc_str_c(rc_type_name(m->type)));
    if (rid)
        pack_kuint(pk, "rid", m->rid);
    for (uint32_t i = 0; i < n; i++)
        pack_field(pk, m, (field_id)enc[i]);
}

int rc_encode(rc_buf *b, const rc_msg *m)
{
    if (m->type <= RC_T_NONE || m->type >= RC_T_COUNT)
        return -1;
    size_t start = b->len;
    uint8_t hdr[RC_FRAME_HEADER] = { 0 };
    if (rc_buf_append(b, hdr, sizeof(hdr)) != 0)
        return -1;
    rc_pk pk;
    pk_init(&pk, b);
    pack_msg(&pk, m);
    if (pk_done(&pk) != 0) {
        b->len = start;
        return -1;
    }
    rc_frame_put_len(b->data + start, (uint32_t)(b->len - start - RC_FRAME_HEADER));
    return 0;
}

int rc_encode_err(rc_buf *b, bool has_rid, uint64_t rid, rc_err code, const char *text)
{
    rc_msg m = { .type = RC_T_ERR, .code = code, .text = rc_str_c(text) };
    if (has_rid) {
        m.has |= RC_HAS_RID;
        m.rid = rid;
    }
    return rc_encode(b, &m);
}
