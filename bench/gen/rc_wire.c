/*
 * The strict scanner of a ringcast server map (rc_wire.h).
 *
 * It runs once per delivery on a core the server needs too, so the common
 * case is direct: the encodings a server map is made of (fixstr keys and
 * names, a bin8 or fixstr body, unsigned ints) are read inline, and a key is
 * told by its length and bytes compared as a constant-size block, not
 * looked up. Every other encoding takes the general readers below them,
 * which accept any well-formed MessagePack, so no map is refused for being
 * encoded in another valid way.
 */
#include <string.h>

#include "rc_wire.h"

typedef struct mp_cur {
    const uint8_t *p;
    const uint8_t *end;
} mp_cur;

/* ---- the general readers ---- */

static uint64_t be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Reads a length field of n bytes; -1 if the frame ends first. */
static int mp_len(mp_cur *c, unsigned n, uint64_t *len)
{
    if ((size_t)(c->end - c->p) < n)
        return -1;
    *len = be(c->p, n);
    c->p += n;
    return 0;
}

static int mp_bytes(mp_cur *c, uint64_t n, const uint8_t **s)
{
    if ((uint64_t)(c->end - c->p) < n)
        return -1;
    *s = c->p;
    c->p += n;
    return 0;
}

/* Reads a str (want_bin = false) or bin (true) in any encoding: pointer and length. */
static int mp_strbin(mp_cur *c, bool want_bin, const uint8_t **s, uint32_t *n)
{
    if (c->p >= c->end)
        return -1;
    uint8_t b = *c->p++;
    uint64_t len;
    if (!want_bin && (b & 0xe0) == 0xa0)
        len = b & 0x1f;
    else if (b == (want_bin ? 0xc4 : 0xd9) && mp_len(c, 1, &len) == 0)
        ;
    else if (b == (want_bin ? 0xc5 : 0xda) && mp_len(c, 2, &len) == 0)
        ;
    else if (b == (want_bin ? 0xc6 : 0xdb) && mp_len(c, 4, &len) == 0)
        ;
    else
        return -1;
    *n = (uint32_t)len;
    return mp_bytes(c, len, s);
}

/*
 * Reads the header of a value whose type byte b was consumed: *n payload
 * bytes follow, then *items nested values.
 */
static int mp_header(mp_cur *c, uint8_t b, uint64_t *n, uint64_t *items)
{
    unsigned len_bytes = 0;  /* size of an explicit length field */
    uint64_t extra = 0;      /* bytes after the length field beyond it (ext type) */
    uint64_t per_item = 0;   /* 1 for arrays, 2 for maps: the length counts items */
    *n = *items = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 0;                                   /* fixint, nil, bool */
    if ((b & 0xe0) == 0xa0) {
        *n = b & 0x1f;                              /* fixstr */
        return 0;
    }
    if ((b & 0xf0) == 0x80 || (b & 0xf0) == 0x90) {
        *items = (uint64_t)(b & 0x0f) * ((b & 0xf0) == 0x80 ? 2 : 1);
        return 0;                                   /* fixmap, fixarray */
    }
    switch (b) {
    case 0xcc: case 0xd0: *n = 1; return 0;         /* uint8, int8 */
    case 0xcd: case 0xd1: *n = 2; return 0;
    case 0xca: case 0xce: case 0xd2: *n = 4; return 0;
    case 0xcb: case 0xcf: case 0xd3: *n = 8; return 0;
    case 0xd4: *n = 2; return 0;                    /* fixext 1..16: type + data */
    case 0xd5: *n = 3; return 0;
    case 0xd6: *n = 5; return 0;
    case 0xd7: *n = 9; return 0;
    case 0xd8: *n = 17; return 0;
    case 0xc4: case 0xd9: len_bytes = 1; break;     /* bin8, str8 */
    case 0xc5: case 0xda: len_bytes = 2; break;
    case 0xc6: case 0xdb: len_bytes = 4; break;
    case 0xc7: len_bytes = 1; extra = 1; break;     /* ext8..32: length, type, data */
    case 0xc8: len_bytes = 2; extra = 1; break;
    case 0xc9: len_bytes = 4; extra = 1; break;
    case 0xdc: len_bytes = 2; per_item = 1; break;  /* array16, array32 */
    case 0xdd: len_bytes = 4; per_item = 1; break;
    case 0xde: len_bytes = 2; per_item = 2; break;  /* map16, map32 */
    case 0xdf: len_bytes = 4; per_item = 2; break;
    default: return -1;                             /* 0xc1 is never used */
    }
    uint64_t len;
    if (mp_len(c, len_bytes, &len) < 0)
        return -1;
    if (per_item)
        *items = len * per_item;
    else
        *n = len + extra;
    return 0;
}

/* Skips one value of any type. */
static int mp_skip(mp_cur *c, int depth)
{
    if (c->p >= c->end || depth > RW_MAX_DEPTH)
        return -1;
    uint64_t n, items;
    const uint8_t *skipped;
    if (mp_header(c, *c->p++, &n, &items) < 0 || mp_bytes(c, n, &skipped) < 0)
        return -1;
    for (uint64_t i = 0; i < items; i++)
        if (mp_skip(c, depth + 1) < 0)
            return -1;
    return 0;
}

/* ---- the common encodings, inline ---- */

/* Takes the n bytes of a value whose hdr-byte header starts at c->p. */
static inline int take(mp_cur *c, size_t hdr, size_t n, const uint8_t **s, uint32_t *len)
{
    if ((size_t)(c->end - c->p) < hdr + n)
        return -1;
    *s = c->p + hdr;
    *len = (uint32_t)n;
    c->p += hdr + n;
    return 0;
}

/* A str: every key and name the server writes is a fixstr. */
static inline int mp_str(mp_cur *c, const uint8_t **s, uint32_t *n)
{
    if (c->p < c->end && (*c->p & 0xe0) == 0xa0)
        return take(c, 1, *c->p & 0x1f, s, n);
    return mp_strbin(c, false, s, n);
}

/* A body: bin (bin8 up to 255 bytes) or str. */
static inline int mp_body(mp_cur *c, const uint8_t **s, uint32_t *n)
{
    if (c->end - c->p >= 2 && c->p[0] == 0xc4)
        return take(c, 2, c->p[1], s, n);
    if (c->p < c->end && (*c->p == 0xc5 || *c->p == 0xc6))
        return mp_strbin(c, true, s, n);
    return mp_str(c, s, n);
}

static inline int mp_uint(mp_cur *c, uint64_t *v)
{
    if (c->p >= c->end)
        return -1;
    uint8_t b = *c->p++;
    if (b <= 0x7f) {
        *v = b;
        return 0;
    }
    if (b >= 0xcc && b <= 0xcf)
        return mp_len(c, 1u << (b - 0xcc), v);
    return -1;
}

/* Skips a value: the scalars a server map holds besides the fields read
 * (fixint and uint: ts, rid; fixstr: from, mid) inline, the rest by mp_skip. */
static inline int mp_skip_value(mp_cur *c)
{
    if (c->p >= c->end)
        return -1;
    uint8_t b = *c->p;
    size_t n;
    if (b <= 0x7f)
        n = 1;
    else if ((b & 0xe0) == 0xa0)
        n = 1 + (b & 0x1f);
    else if (b >= 0xcc && b <= 0xcf)
        n = 1 + (1u << (b - 0xcc));
    else
        return mp_skip(c, 0);
    if ((size_t)(c->end - c->p) < n)
        return -1;
    c->p += n;
    return 0;
}

/* ---- the map ---- */

typedef enum rw_key { KEY_OTHER, KEY_T, KEY_G, KEY_SEQ, KEY_BODY, KEY_CODE } rw_key;

#define KEY_EQ(k, lit) (memcmp((k), (lit), sizeof(lit) - 1) == 0) /* k has sizeof(lit) - 1 bytes */

/* The field a key of n bytes names. */
static inline rw_key key_of(const uint8_t *k, uint32_t n)
{
    switch (n) {
    case 1: return k[0] == 't' ? KEY_T : k[0] == 'g' ? KEY_G : KEY_OTHER;
    case 3: return KEY_EQ(k, "seq") ? KEY_SEQ : KEY_OTHER;
    case 4: return KEY_EQ(k, "body") ? KEY_BODY : KEY_EQ(k, "code") ? KEY_CODE : KEY_OTHER;
    case 6: return KEY_EQ(k, "reason") ? KEY_CODE : KEY_OTHER;
    default: return KEY_OTHER;
    }
}

/* Reads the value of key k into f. */
static inline int read_value(mp_cur *c, rw_key k, rw_frame *f)
{
    switch (k) {
    case KEY_T: return mp_str(c, &f->t, &f->t_len);
    case KEY_G: return mp_str(c, &f->g, &f->g_len);
    case KEY_SEQ:
        f->has_seq = true;
        return mp_uint(c, &f->seq);
    case KEY_BODY: return mp_body(c, &f->body, &f->body_len);
    case KEY_CODE: return mp_str(c, &f->code, &f->code_len);
    case KEY_OTHER: break;
    }
    return mp_skip_value(c);
}

int rw_scan(const uint8_t *p, size_t len, rw_frame *f)
{
    memset(f, 0, sizeof *f);
    mp_cur c = { p, p + len };
    if (len == 0)
        return -1;
    uint64_t n;
    uint8_t b = *c.p++;
    if ((b & 0xf0) == 0x80)
        n = b & 0x0f;
    else if (b == 0xde && mp_len(&c, 2, &n) == 0)
        ;
    else if (b == 0xdf && mp_len(&c, 4, &n) == 0)
        ;
    else
        return -1;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *k;
        uint32_t kn;
        if (mp_str(&c, &k, &kn) < 0 || read_value(&c, key_of(k, kn), f) < 0)
            return -1;
    }
    return (c.p == c.end && f->t) ? 0 : -1;
}
