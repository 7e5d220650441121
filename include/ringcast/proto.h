/*
 * ringcast wire protocol v1: frames <-> messages.
 *
 * A TCP frame is a 4-byte big-endian length N followed by N bytes holding one
 * MessagePack map (proto/PROTOCOL.md). This header is the codec's table of
 * contents: the message types, the decoded message, the error codes, the
 * strict decoder and the encoder. The codec is pure: no I/O, no threads.
 *
 * Decoding never copies strings or bodies: every rc_str points into the frame
 * buffer the caller passed, so a decoded rc_msg lives only as long as that
 * buffer (and, for `hist` replies, as long as the decoder's zone).
 */
#ifndef RINGCAST_PROTO_H
#define RINGCAST_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

/* Limits of the protocol (proto/PROTOCOL.md §1, §3). max_frame is configurable; these are not. */
#define RC_FRAME_HEADER 4u          /* bytes of the big-endian length prefix */
#define RC_DEFAULT_MAX_FRAME 65536u /* default max_frame, bytes of map per frame */
#define RC_MAX_USER 64u             /* user name: 1..64 bytes */
#define RC_MAX_GROUP 128u           /* group id: 1..128 bytes */
#define RC_MAX_MID 64u              /* client message id: 1..64 bytes */
#define RC_MAX_TOKEN 4096u          /* hello/refresh token: 0..4096 bytes */
#define RC_MAX_HIST_LIMIT 1000u     /* hist limit: at most 1000 messages */
#define RC_MAX_TEXT 1024u           /* err msg / bye reason / srv: at most 1024 bytes */
#define RC_MAX_DEPTH 32u            /* nesting of arrays/maps in a map, the map itself level 1 (§2.1) */
#define RC_MAX_PRESENCE_USERS 1000u /* presence reply: users listed at most (n counts them all) */
#define RC_MAX_INBOX_LIMIT 1000u    /* inbox limit: at most 1000 groups */
#define RC_INBOX_DEFAULT_LIMIT 100u /* inbox without limit lists this many */

/* Message types, client -> server first, then server -> client. */
typedef enum rc_type {
    RC_T_NONE = 0,
    RC_T_HELLO,
    RC_T_JOIN,
    RC_T_LEAVE,
    RC_T_SEND,
    RC_T_HIST,
    RC_T_PING,
    RC_T_REPLAY,
    RC_T_PRESENCE,  /* request, and its reply */
    RC_T_TYPING,    /* request, and the event others receive */
    RC_T_REFRESH,
    RC_T_PUBLISH,   /* admin sessions: send as another user, no membership needed (the Server API) */
    RC_T_READ,      /* read cursor: request */
    RC_T_INBOX,     /* request, and its reply */
    RC_T_WELCOME,
    RC_T_JOINED,
    RC_T_SYNCED,
    RC_T_LEFT,
    RC_T_ACK,
    RC_T_MSG,
    RC_T_PONG,
    RC_T_ERR,
    RC_T_BYE,
    RC_T_ONLINE,    /* event: a user's first session in the group joined */
    RC_T_OFFLINE,   /* event: its last one left */
    RC_T_REFRESHED,
    RC_T_MARKED,    /* reply to read: the stored cursor */
    RC_T_RECEIPT,   /* event: a user's read cursor in the group moved */
    RC_T_COUNT
} rc_type;

/* Error codes of proto/PROTOCOL.md §5, in the order they are listed there. */
typedef enum rc_err {
    RC_OK = 0,
    RC_E_BAD_FRAME,
    RC_E_FRAME_TOO_LARGE,
    RC_E_UNKNOWN_TYPE,
    RC_E_MISSING_FIELD,
    RC_E_BAD_FIELD,
    RC_E_NOT_AUTHENTICATED,
    RC_E_AUTH_FAILED,
    RC_E_FORBIDDEN,
    RC_E_NOT_MEMBER,
    RC_E_RATE_LIMITED,
    RC_E_OVERLOADED,
    RC_E_LIMIT,
    RC_E_SHUTTING_DOWN,
    RC_E_INTERNAL,
    RC_E_COUNT
} rc_err;

/* A byte string that points into someone else's buffer; not NUL-terminated. */
typedef struct rc_str {
    const char *ptr;
    uint32_t len;
} rc_str;

/* Which optional fields a decoded message carries (rc_msg.has). */
enum {
    RC_HAS_RID = 1u << 0,
    RC_HAS_SINCE = 1u << 1,
    RC_HAS_MID = 1u << 2,
    RC_HAS_TOKEN = 1u << 3,
    RC_HAS_BEFORE = 1u << 4,
    RC_HAS_LIMIT = 1u << 5,
    RC_HAS_DUP = 1u << 6,
    RC_HAS_TO = 1u << 7,
    RC_HAS_SEQ = 1u << 8,
    RC_HAS_MSGS = 1u << 9, /* hist reply: msgs present (possibly empty) */
    RC_HAS_ECHO = 1u << 10,     /* hello: echo given */
    RC_HAS_PRESENCE = 1u << 11, /* join: presence given */
    RC_HAS_ONLINE = 1u << 12,   /* joined: online present */
    RC_HAS_USERS = 1u << 13,    /* presence reply: users and n present */
    RC_HAS_RECEIPTS = 1u << 14, /* join: receipts given */
    RC_HAS_READ = 1u << 15,     /* joined: read present */
    RC_HAS_GROUPS = 1u << 16,   /* inbox reply: groups present (possibly empty) */
};

struct rc_msg;

/* One group of an inbox reply (proto/PROTOCOL.md §6.11). */
typedef struct rc_inbox_entry {
    rc_str g;
    uint64_t seq;           /* the group's last seq */
    uint64_t read;          /* the user's read cursor, 0 when none */
    uint64_t unread;        /* seq - read, 0 when the cursor is ahead (the server fills it in) */
    uint64_t ts;            /* unix ms of the last message; 0 and absent without one */
    bool has_last;          /* the last message is present */
    rc_str last_map;        /* encoding: the last `msg` map, MessagePack bytes as stored */
    struct rc_msg *last;    /* decoding: that map decoded, in the decoder's zone */
} rc_inbox_entry;

/* One decoded map, any direction. Only the fields of its type are set. */
typedef struct rc_msg {
    rc_type type;
    uint32_t has;           /* RC_HAS_* bits for optional fields */
    uint64_t rid;           /* request id, echoed in the reply */
    rc_str user;            /* hello: user name (ptr NULL: absent, the token names the user) */
    rc_str token;           /* hello, refresh: token */
    rc_str g;               /* group id */
    rc_str mid;             /* client message id */
    rc_str body;            /* send/msg body (bin or str) */
    bool body_is_str;       /* the body was a MessagePack str, not bin */
    rc_str from;            /* msg: sender */
    rc_str to;              /* replay: recipient of a failed delivery */
    rc_str text;            /* err: `msg`, human text */
    rc_str reason;          /* bye: reason */
    rc_str srv;             /* welcome: server name and version */
    rc_err code;            /* err: code */
    uint64_t since;         /* join: last seq the client saw */
    uint64_t before;        /* hist: only seqs below this */
    uint64_t limit;         /* hist: at most this many */
    uint64_t seq;           /* joined/ack/msg/synced: sequence number */
    uint64_t ts;            /* ack/msg: unix ms */
    uint64_t sid;           /* welcome: session id */
    uint64_t max_frame;     /* welcome: server's max_frame */
    uint64_t exp;           /* refreshed: the token's new expiry, unix seconds */
    bool dup;               /* ack: this mid was sequenced before */
    bool lost;              /* synced: history no longer reaches back to since */
    bool more;              /* hist, synced: the reply stopped at max_reply_bytes; ask again for the rest */
    bool echo;              /* hello: false = this session does not receive its own messages */
    bool presence;          /* join: receive online/offline events of the group */
    bool receipts;          /* join: receive receipt events of the group */
    uint64_t read;          /* joined: this user's read cursor of the group */
    uint64_t online;        /* joined: users online in the group */
    uint64_t n;             /* presence reply: users online in all */
    uint32_t n_users;       /* presence reply: users listed */
    rc_str *users;          /* presence reply: their names, in the decoder's zone */
    uint32_t n_msgs;        /* hist reply: number of messages */
    struct rc_msg *msgs;    /* hist reply: messages, in the decoder's zone */
    uint32_t n_groups;      /* inbox reply: groups listed */
    rc_inbox_entry *groups; /* inbox reply: the groups, in the decoder's zone */
} rc_msg;

/* Decoder state: a msgpack zone reused across frames. */
typedef struct rc_decoder {
    msgpack_zone zone;
    bool zone_ready;
    bool requests; /* decodes what clients send: keys only replies define (hist's msgs) are ignored */
} rc_decoder;

/* ---- names ---- */

const char *rc_type_name(rc_type t);          /* "hello", ... or "?" */
const char *rc_err_name(rc_err e);            /* "E_BAD_FRAME", ... or "OK" */
rc_err rc_err_from_name(const char *s, size_t len); /* RC_E_COUNT if unknown */

/* ---- framing ---- */

/* Reads the big-endian length prefix at p (at least 4 bytes). */
static inline uint32_t rc_frame_len(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline void rc_frame_put_len(uint8_t *p, uint32_t n)
{
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
}

/* Checks a frame length against max_frame: RC_OK, RC_E_BAD_FRAME (zero) or
 * RC_E_FRAME_TOO_LARGE. */
rc_err rc_frame_check_len(uint32_t n, uint32_t max_frame);

/* ---- decoding ---- */

void rc_decoder_init(rc_decoder *d);
/* A decoder for a server's input: a `hist` request's `msgs` key is ignored
 * like any key the request does not define (proto/PROTOCOL.md §4), so a
 * client cannot make the server decode a reply's array. */
void rc_decoder_init_requests(rc_decoder *d);
void rc_decoder_free(rc_decoder *d);

/*
 * Decodes one map (the frame payload without its length prefix) strictly:
 * exactly one map, no trailing bytes, `t` known, required fields present and
 * of the right type and length. On error returns the code, sets out->rid when
 * it could be read (RC_HAS_RID), and points *why at a static human message.
 */
rc_err rc_decode(rc_decoder *d, const uint8_t *buf, size_t len, rc_msg *out, const char **why);

/* ---- encoding ---- */

/* A name (user, group, mid) as §2.1 of proto/PROTOCOL.md has it: 1..max
 * bytes, no 0x00. The codec's rule, for names that arrive outside a map
 * (the Server API's paths and JSON). */
bool rc_name_valid(const char *p, size_t len, size_t max);

/* A growable output buffer; encoders append complete frames (length prefix
 * included) to it. */
typedef struct rc_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} rc_buf;

void rc_buf_init(rc_buf *b);
void rc_buf_free(rc_buf *b);
int rc_buf_reserve(rc_buf *b, size_t extra); /* 0 or -1 (ENOMEM) */
int rc_buf_append(rc_buf *b, const void *p, size_t n);

/* A msgpack_packer that appends to b (the encoder's, and the JSON reader's):
 * the first append that fails sets sink->failed, and nothing more is
 * written. sink must live as long as pk. */
typedef struct rc_buf_sink {
    rc_buf *buf;
    bool failed;
} rc_buf_sink;

void rc_buf_packer_init(msgpack_packer *pk, rc_buf_sink *sink, rc_buf *b);

/*
 * Encodes m (its type and the fields that type carries, optional ones as
 * m->has says) as one frame appended to b. Returns 0, or -1 on allocation
 * failure (b is left as it was).
 */
int rc_encode(rc_buf *b, const rc_msg *m);

/* Shorthands for the frames every component sends. */
int rc_encode_err(rc_buf *b, bool has_rid, uint64_t rid, rc_err code, const char *text);

/* rc_str helpers */
static inline rc_str rc_str_c(const char *s)
{
    rc_str r = { s, 0 };
    while (s && s[r.len])
        r.len++;
    return r;
}
bool rc_str_eq(rc_str a, rc_str b);

#endif
