/*
 * JSON for WebSocket text messages (proto/PROTOCOL.md §1.2; the mapping is
 * in include/ringcast/json.h): a client's JSON object to the MessagePack map
 * rc_decode reads, and a server frame's map to JSON.
 *
 * JSON in. cJSON checks the grammar and gives the shape of the value: how
 * many members each object and array has, so that every MessagePack header
 * is written once, in its shortest form. The strings and numbers themselves
 * are read again from the text, by a cursor that walks it in step with the
 * tree (both go in text order): cJSON keeps a number only as a double, and
 * rids and seqs go up to 2^64-1; it keeps a string only as a C string, and a
 * \u0000 in a body would cut it short. cJSON is also lenient where RFC 8259
 * is not (leading zeros, \u escapes that are not hex, control bytes between
 * tokens or inside strings, a byte order mark): the cursor is strict about
 * every byte cJSON's structure leaves to it, so the two read exactly RFC 8259.
 * cJSON resets a global error position at every parse: io threads parsing at
 * once race on it, which is harmless (nothing here reads it), but
 * ThreadSanitizer would report it.
 *
 * JSON out. A direct writer walks the MessagePack bytes and appends JSON
 * text. It runs once per delivery to every text-mode client, so it builds no
 * tree and allocates nothing but the output.
 */
#include "ringcast/json.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* UTF-8 (RFC 3629, Unicode table 3-7)                                  */
/* ------------------------------------------------------------------ */

/* The sequence at p (n > 0 bytes): its length, and *ok when it is one well
 * formed character. When it is not, the length is that of its maximal
 * subpart (at least 1): the bytes one U+FFFD replaces. */
static size_t utf8_seq(const uint8_t *p, size_t n, bool *ok)
{
    uint8_t b = p[0];
    uint8_t lo = 0x80, hi = 0xbf; /* bounds of the second byte */
    size_t need;                  /* bytes after the first */
    *ok = false;
    if (b < 0x80) {
        *ok = true;
        return 1;
    }
    if (b >= 0xc2 && b <= 0xdf)
        need = 1;
    else if (b >= 0xe0 && b <= 0xef)
        need = 2, lo = b == 0xe0 ? 0xa0 : 0x80, hi = b == 0xed ? 0x9f : 0xbf;
    else if (b >= 0xf0 && b <= 0xf4)
        need = 3, lo = b == 0xf0 ? 0x90 : 0x80, hi = b == 0xf4 ? 0x8f : 0xbf;
    else
        return 1; /* a continuation byte, C0, C1 or F5..FF: never a first byte */
    for (size_t i = 1; i <= need; i++) {
        if (i >= n || p[i] < lo || p[i] > hi)
            return i;
        lo = 0x80, hi = 0xbf;
    }
    *ok = true;
    return need + 1;
}

/* Bytes at the start of p that are well-formed UTF-8. ASCII, most of any
 * chat text, is taken eight bytes at a time. */
static size_t utf8_valid_prefix(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint64_t w;
        if (n - i >= sizeof(w) && (memcpy(&w, p + i, sizeof(w)), (w & 0x8080808080808080ull) == 0)) {
            i += sizeof(w);
            continue;
        }
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        bool ok;
        size_t k = utf8_seq(p + i, n - i, &ok);
        if (!ok)
            break;
        i += k;
    }
    return i;
}

bool rc_utf8_valid(const char *p, size_t n)
{
    return utf8_valid_prefix((const uint8_t *)p, n) == n;
}

/* Writes code point cp (at most U+10FFFF, not a surrogate) as UTF-8 at o,
 * or only counts its bytes when o is NULL. */
static size_t utf8_put(uint8_t *o, uint32_t cp)
{
    uint8_t b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (uint8_t)(0xc0 | cp >> 6);
        b[1] = (uint8_t)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (uint8_t)(0xe0 | cp >> 12);
        b[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        b[2] = (uint8_t)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (uint8_t)(0xf0 | cp >> 18);
        b[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
        b[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        b[3] = (uint8_t)(0x80 | (cp & 0x3f));
        n = 4;
    }
    if (o)
        memcpy(o, b, n);
    return n;
}

/* ------------------------------------------------------------------ */
/* JSON in: the cursor over the text                                    */
/* ------------------------------------------------------------------ */

typedef enum tok_kind { TOK_END, TOK_STRING, TOK_NUMBER, TOK_BAD } tok_kind;

/* One string or number of the text. */
typedef struct json_tok {
    tok_kind kind;
    const char *ptr; /* string: after its opening quote; number: its first byte */
    size_t len;      /* string: bytes before its closing quote */
} json_tok;

typedef struct json_cursor {
    const char *p; /* next byte to read */
    const char *end;
} json_cursor;

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Bytes that stand between strings and numbers in JSON: whitespace,
 * structure, and the letters of true, false and null (which cJSON checked). */
static bool between_tokens(char c)
{
    switch (c) {
    case ' ': case '\t': case '\n': case '\r':
    case '{': case '}': case '[': case ']': case ',': case ':':
    case 't': case 'r': case 'u': case 'e': case 'f': case 'a': case 'l': case 's': case 'n':
        return true;
    default:
        return false;
    }
}

static bool is_number_byte(char c)
{
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* The next string or number, TOK_END after the last, TOK_BAD at a byte that
 * may not stand between tokens. Numbers run as far as cJSON's do. */
static json_tok next_token(json_cursor *c)
{
    json_tok t = { TOK_END, NULL, 0 };
    while (c->p < c->end && between_tokens(*c->p))
        c->p++;
    if (c->p == c->end)
        return t;
    if (*c->p == '"') {
        t.ptr = ++c->p;
        while (c->p < c->end && *c->p != '"')
            c->p += *c->p == '\\' && c->end - c->p >= 2 ? 2 : 1; /* a backslash takes the byte after it */
        if (c->p == c->end) {
            t.kind = TOK_BAD;
            return t;
        }
        t.kind = TOK_STRING;
        t.len = (size_t)(c->p++ - t.ptr);
    } else if (*c->p == '-' || (*c->p >= '0' && *c->p <= '9')) {
        t.kind = TOK_NUMBER;
        t.ptr = c->p;
        while (c->p < c->end && is_number_byte(*c->p))
            c->p++;
        t.len = (size_t)(c->p - t.ptr);
    } else {
        t.kind = TOK_BAD;
    }
    return t;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The four hex digits at s as a number, or -1. */
static int32_t hex4(const char *s)
{
    int32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(s[i]);
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* The code point of the \u escape at s (the n bytes after the "\u"), which
 * takes *used bytes; a high surrogate must be followed by a \u low one. -1
 * for anything else. */
static int32_t unicode_escape(const char *s, size_t n, size_t *used)
{
    int32_t cp = n >= 4 ? hex4(s) : -1;
    *used = 4;
    if (cp < 0 || (cp >= 0xdc00 && cp <= 0xdfff))
        return -1;
    if (cp < 0xd800 || cp > 0xdbff)
        return cp;
    int32_t low = n >= 10 && s[4] == '\\' && s[5] == 'u' ? hex4(s + 6) : -1;
    if (low < 0xdc00 || low > 0xdfff)
        return -1;
    *used = 10;
    return 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
}

/* Decodes the content of a JSON string (the n bytes between its quotes)
 * into out, or, with out NULL, only checks it and counts the bytes it
 * stands for. -1 for a control byte, an escape RFC 8259 does not have or a
 * \u that is not a character. The count is n exactly when there is no
 * escape, since every escape is longer than what it stands for. */
static int unescape(const char *s, size_t n, uint8_t *out, size_t *out_len)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20)
            return -1;
        if (c != '\\') {
            if (out)
                out[k] = c;
            k++;
            i++;
            continue;
        }
        if (i + 1 >= n)
            return -1;
        int32_t cp;
        size_t used = 0;
        switch (s[i + 1]) {
        case '"': case '\\': case '/': cp = s[i + 1]; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            cp = unicode_escape(s + i + 2, n - i - 2, &used);
            if (cp < 0)
                return -1;
            break;
        default: return -1;
        }
        i += 2 + used;
        k += utf8_put(out ? out + k : NULL, (uint32_t)cp);
    }
    *out_len = k;
    return 0;
}

/* Where the run of decimal digits that starts at s[i] ends. */
static size_t digits_end(const char *s, size_t i, size_t n)
{
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    return i;
}

/* Checks a number token against RFC 8259's grammar
 * (-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?); *integer when it has
 * neither a fraction nor an exponent. */
static bool number_syntax(const char *s, size_t n, bool *integer)
{
    size_t i = n > 0 && s[0] == '-', d = digits_end(s, i, n);
    if (d == i || (s[i] == '0' && d - i > 1))
        return false; /* no digits, or a leading zero */
    i = d;
    *integer = i == n;
    if (i < n && s[i] == '.') {
        d = digits_end(s, i + 1, n);
        if (d == i + 1)
            return false;
        i = d;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        d = digits_end(s, i, n);
        if (d == i)
            return false;
        i = d;
    }
    return i == n;
}

/* The decimal digits at s as a uint64; false when they do not fit. */
static bool digits_u64(const char *s, size_t n, uint64_t *v)
{
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *v = x;
    return true;
}

/* ------------------------------------------------------------------ */
/* JSON in: the tree walk that writes MessagePack                       */
/* ------------------------------------------------------------------ */

typedef struct json_in {
    json_cursor cur;
    rc_buf_sink sink;
    msgpack_packer pk;
    const char *why;
} json_in;

static rc_err bad_frame(json_in *in, const char *why)
{
    in->why = why;
    return RC_E_BAD_FRAME;
}

/* The next token, which the tree says is a string, a number or the end. A
 * byte cJSON let pass is the client's error; any other disagreement is ours. */
static rc_err take_token(json_in *in, tok_kind want, json_tok *t)
{
    *t = next_token(&in->cur);
    if (t->kind == TOK_BAD)
        return bad_frame(in, "the text is not JSON (RFC 8259): a byte outside a string that JSON does not allow there");
    if (t->kind != want) {
        in->why = "the JSON reader lost step with cJSON's tree";
        return RC_E_INTERNAL;
    }
    return RC_OK;
}

static rc_err put_string(json_in *in)
{
    json_tok t;
    rc_err e = take_token(in, TOK_STRING, &t);
    if (e != RC_OK)
        return e;
    size_t n;
    if (unescape(t.ptr, t.len, NULL, &n) != 0)
        return bad_frame(in, "a JSON string holds a control byte or an escape that is not valid");
    msgpack_pack_str(&in->pk, n);
    if (n == t.len) {
        msgpack_pack_str_body(&in->pk, t.ptr, n);
        return RC_OK;
    }
    rc_buf *b = in->sink.buf;
    if (in->sink.failed || rc_buf_reserve(b, n) != 0) {
        in->sink.failed = true;
        return RC_OK; /* reported at the end, like every other failed write */
    }
    unescape(t.ptr, t.len, b->data + b->len, &n);
    b->len += n;
    return RC_OK;
}

static rc_err put_number(json_in *in, const cJSON *v)
{
    json_tok t;
    rc_err e = take_token(in, TOK_NUMBER, &t);
    if (e != RC_OK)
        return e;
    bool integer;
    if (!number_syntax(t.ptr, t.len, &integer))
        return bad_frame(in, "a number is not written as JSON (RFC 8259) has it");
    bool negative = t.ptr[0] == '-';
    uint64_t mag;
    if (integer && digits_u64(t.ptr + negative, t.len - negative, &mag)) {
        if (!negative) {
            msgpack_pack_uint64(&in->pk, mag);
            return RC_OK;
        }
        if (mag <= (uint64_t)INT64_MAX + 1) {
            msgpack_pack_int64(&in->pk, mag > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)mag);
            return RC_OK;
        }
    }
    msgpack_pack_double(&in->pk, v->valuedouble); /* cJSON read it with strtod, in any locale */
    return RC_OK;
}

/* Writes v and, for an array or object, its members, in text order. */
static rc_err put_value(json_in *in, const cJSON *v)
{
    bool object = false;
    switch (v->type & 0xff) {
    case cJSON_False: msgpack_pack_false(&in->pk); return RC_OK;
    case cJSON_True: msgpack_pack_true(&in->pk); return RC_OK;
    case cJSON_NULL: msgpack_pack_nil(&in->pk); return RC_OK;
    case cJSON_Number: return put_number(in, v);
    case cJSON_String: return put_string(in);
    case cJSON_Array: msgpack_pack_array(&in->pk, (size_t)cJSON_GetArraySize(v)); break;
    case cJSON_Object:
        msgpack_pack_map(&in->pk, (size_t)cJSON_GetArraySize(v));
        object = true;
        break;
    default:
        in->why = "cJSON gave a kind of value it does not parse";
        return RC_E_INTERNAL;
    }
    for (const cJSON *c = v->child; c; c = c->next) {
        rc_err e = object ? put_string(in) : RC_OK; /* the member's key */
        if (e == RC_OK)
            e = put_value(in, c);
        if (e != RC_OK)
            return e;
    }
    return RC_OK;
}

/* False when arrays and objects nest deeper than max anywhere in the text
 * (brackets in strings do not count). Checked before cJSON parses, so that
 * deep text costs one pass and no recursion; on text that is not JSON the
 * answer does not matter, as cJSON rejects it next. */
static bool nesting_within(const char *s, size_t n, unsigned max)
{
    unsigned depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        if (in_string) {
            if (s[i] == '\\')
                i++;
            else if (s[i] == '"')
                in_string = false;
        } else if (s[i] == '"') {
            in_string = true;
        } else if (s[i] == '{' || s[i] == '[') {
            if (++depth > max)
                return false;
        } else if ((s[i] == '}' || s[i] == ']') && depth > 0) {
            depth--;
        }
    }
    return true;
}

static rc_err json_parse_and_put(json_in *in, const char *text, size_t len)
{
    if (!rc_utf8_valid(text, len))
        return bad_frame(in, "a text message must be UTF-8");
    if (!nesting_within(text, len, RC_MAX_DEPTH))
        return bad_frame(in, "the JSON nests deeper than 32 levels");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!root)
        return bad_frame(in, "the text message is not valid JSON");
    rc_err e = RC_OK;
    while (end < text + len && is_ws(*end))
        end++;
    if (end != text + len)
        e = bad_frame(in, "bytes follow the JSON object in the text message");
    else if (!cJSON_IsObject(root))
        e = bad_frame(in, "a text message must hold one JSON object");
    else
        e = put_value(in, root);
    json_tok t;
    if (e == RC_OK)
        e = take_token(in, TOK_END, &t); /* the bytes after the last string or number */
    cJSON_Delete(root);
    return e;
}

rc_err rc_json_to_msgpack(const char *text, size_t len, rc_buf *out, const char **why)
{
    static const char *unused;
    if (!why)
        why = &unused;
    if (len == 0) {
        *why = "an empty text message holds no JSON object";
        return RC_E_BAD_FRAME;
    }
    json_in in = { .cur = { text, text + len }, .why = "" };
    rc_buf_packer_init(&in.pk, &in.sink, out);
    size_t start = out->len;
    rc_err e = json_parse_and_put(&in, text, len);
    if (e == RC_OK && in.sink.failed) {
        e = RC_E_INTERNAL;
        in.why = "out of memory writing the map";
    }
    if (e != RC_OK)
        out->len = start;
    *why = in.why;
    return e;
}

/* ------------------------------------------------------------------ */
/* JSON out: a reader of MessagePack items                              */
/* ------------------------------------------------------------------ */

typedef enum mp_kind { MP_NIL, MP_BOOL, MP_UINT, MP_INT, MP_FLOAT, MP_STR, MP_BIN, MP_ARRAY, MP_MAP } mp_kind;

/* One item's header: a scalar's value, a str/bin's bytes, a container's count. */
typedef struct mp_item {
    mp_kind kind;
    bool b;
    uint64_t u;     /* uint; array/map: element count */
    int64_t i;
    double f;
    const uint8_t *ptr; /* str, bin */
    uint32_t len;
} mp_item;

typedef struct mp_reader {
    const uint8_t *p;
    size_t left;
} mp_reader;

/* Takes n bytes; false when fewer are left. */
static bool mp_take(mp_reader *r, size_t n, const uint8_t **p)
{
    if (r->left < n)
        return false;
    *p = r->p;
    r->p += n;
    r->left -= n;
    return true;
}

/* Takes an n-byte big-endian unsigned number. */
static bool mp_be(mp_reader *r, unsigned n, uint64_t *v)
{
    const uint8_t *p;
    if (!mp_take(r, n, &p))
        return false;
    *v = 0;
    for (unsigned k = 0; k < n; k++)
        *v = *v << 8 | p[k];
    return true;
}

/* Bytes of the length field (str/bin/array/map) or of the value (numbers)
 * after a first byte in 0xc4..0xdf, by first byte; 0 for those that have
 * neither (nil, bools, reserved, ext). */
static const uint8_t mp_width[0xe0 - 0xc4] = {
    [0xc4 - 0xc4] = 1, 2, 4,                /* bin 8/16/32 */
    [0xca - 0xc4] = 4, 8, 1, 2, 4, 8,       /* float 32/64, uint 8..64 */
    [0xd0 - 0xc4] = 1, 2, 4, 8,             /* int 8..64 */
    [0xd9 - 0xc4] = 1, 2, 4, 2, 4, 2, 4,    /* str 8/16/32, array 16/32, map 16/32 */
};

static bool mp_set_payload(mp_reader *r, mp_item *it, mp_kind kind, uint64_t len)
{
    it->kind = kind;
    it->len = (uint32_t)len;
    return mp_take(r, (size_t)len, &it->ptr);
}

static bool mp_set_count(mp_reader *r, mp_item *it, mp_kind kind, uint64_t n)
{
    it->kind = kind;
    it->u = n;
    return n <= r->left / (kind == MP_MAP ? 2 : 1); /* every element takes a byte at least */
}

/* Reads the next item's header (and a str/bin's bytes). False for a
 * truncated item, the reserved byte 0xc1, or an ext type: JSON has none. */
static bool mp_next(mp_reader *r, mp_item *it)
{
    const uint8_t *p;
    uint64_t v;
    if (!mp_take(r, 1, &p))
        return false;
    uint8_t b = *p;
    if (b <= 0x7f || b >= 0xe0) {
        it->kind = b <= 0x7f ? MP_UINT : MP_INT;
        it->u = b;
        it->i = (int8_t)b;
        return true;
    }
    if (b <= 0x8f)
        return mp_set_count(r, it, MP_MAP, b & 0x0fu);
    if (b <= 0x9f)
        return mp_set_count(r, it, MP_ARRAY, b & 0x0fu);
    if (b <= 0xbf)
        return mp_set_payload(r, it, MP_STR, b & 0x1fu);
    if (b == 0xc0 || b == 0xc2 || b == 0xc3) {
        it->kind = b == 0xc0 ? MP_NIL : MP_BOOL;
        it->b = b == 0xc3;
        return true;
    }
    if (b < 0xc4 || !mp_width[b - 0xc4] || !mp_be(r, mp_width[b - 0xc4], &v))
        return false;
    switch (b) {
    case 0xc4: case 0xc5: case 0xc6: return mp_set_payload(r, it, MP_BIN, v);
    case 0xd9: case 0xda: case 0xdb: return mp_set_payload(r, it, MP_STR, v);
    case 0xdc: case 0xdd: return mp_set_count(r, it, MP_ARRAY, v);
    case 0xde: case 0xdf: return mp_set_count(r, it, MP_MAP, v);
    case 0xca: {
        float f;
        uint32_t w = (uint32_t)v;
        memcpy(&f, &w, sizeof(f));
        it->kind = MP_FLOAT;
        it->f = f;
        return true;
    }
    case 0xcb:
        it->kind = MP_FLOAT;
        memcpy(&it->f, &v, sizeof(it->f));
        return true;
    case 0xd0: it->i = (int8_t)v; break;
    case 0xd1: it->i = (int16_t)v; break;
    case 0xd2: it->i = (int32_t)v; break;
    case 0xd3: it->i = (int64_t)v; break;
    default: /* uint 8..64 */
        it->kind = MP_UINT;
        it->u = v;
        return true;
    }
    it->kind = MP_INT;
    return true;
}

/* ------------------------------------------------------------------ */
/* JSON out: the writer                                                 */
/* ------------------------------------------------------------------ */

/* rc_buf_append, with the common case (room enough) inlined: the writer
 * appends a dozen small pieces per map entry. */
static inline int put(rc_buf *b, const char *s, size_t n)
{
    if (b->cap - b->len < n && rc_buf_reserve(b, n) != 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

#define PUT_LIT(b, s) put((b), (s), sizeof(s) - 1)

static int put_u64(rc_buf *b, uint64_t v)
{
    char d[20];
    size_t i = sizeof(d);
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return put(b, d + i, sizeof(d) - i);
}

static int put_i64(rc_buf *b, int64_t v)
{
    if (v >= 0)
        return put_u64(b, (uint64_t)v);
    return PUT_LIT(b, "-") || put_u64(b, 0 - (uint64_t)v);
}

/* A float in 17 significant digits, which read back as the same double,
 * with a fraction or an exponent so that it reads back as a float.
 * JSON has no NaN or infinity: those are null. (The server sends no float;
 * this is for completeness, and assumes the C locale, as ringcast keeps.) */
static int put_double(rc_buf *b, double f)
{
    if (!isfinite(f))
        return PUT_LIT(b, "null");
    char s[40];
    int n = snprintf(s, sizeof(s), "%.17g", f);
    if (strspn(s, "-0123456789") == (size_t)n)
        n += snprintf(s + n, sizeof(s) - (size_t)n, ".0");
    return put(b, s, (size_t)n);
}

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* True when one of the eight bytes in w is below 0x20, '"' or '\\' (the
 * bytes a JSON string escapes), by the usual SWAR tests for a zero byte. */
static bool word_needs_escape(uint64_t w)
{
    uint64_t quote = w ^ (ONES * '"'), backslash = w ^ (ONES * '\\');
    uint64_t below_space = (w - ONES * 0x20) & ~w;
    uint64_t zero_quote = (quote - ONES) & ~quote, zero_backslash = (backslash - ONES) & ~backslash;
    return ((below_space | zero_quote | zero_backslash) & HIGHS) != 0;
}

/* Appends bytes that are valid UTF-8, escaped for a JSON string. Text
 * without escapes, most of any chat, is checked eight bytes at a time. */
static int put_escaped(rc_buf *b, const uint8_t *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0; /* start of the bytes not yet written */
    for (size_t i = 0; i < n; i++) {
        uint64_t w;
        while (n - i >= sizeof(w) && (memcpy(&w, p + i, sizeof(w)), !word_needs_escape(w)))
            i += sizeof(w);
        if (i == n)
            break;
        uint8_t c = p[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        char e[6] = { '\\', (char)c, 0, 0, 0, 0 };
        size_t en = 2;
        switch (c) {
        case '"': case '\\': break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        default:
            memcpy(e + 1, "u00", 3);
            e[4] = hex[c >> 4];
            e[5] = hex[c & 0xf];
            en = 6;
        }
        if (put(b, (const char *)p + run, i - run) || put(b, e, en))
            return -1;
        run = i + 1;
    }
    return put(b, (const char *)p + run, n - run);
}

/* Appends any bytes, escaped, with U+FFFD for each maximal subpart of a
 * sequence that is not UTF-8. */
static int put_replaced(rc_buf *b, const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t good = utf8_valid_prefix(p, n);
        if (put_escaped(b, p, good))
            return -1;
        p += good;
        n -= good;
        if (n == 0)
            break;
        bool ok;
        size_t bad = utf8_seq(p, n, &ok);
        if (PUT_LIT(b, "\xef\xbf\xbd"))
            return -1;
        p += bad;
        n -= bad;
    }
    return 0;
}

static int put_text(rc_buf *b, const uint8_t *p, size_t n, bool valid)
{
    return PUT_LIT(b, "\"") || (valid ? put_escaped(b, p, n) : put_replaced(b, p, n)) || PUT_LIT(b, "\"");
}

/* Appends n bytes as a JSON string of base64 (RFC 4648 §4, with padding). */
static int put_base64(rc_buf *b, const uint8_t *p, size_t n)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t out = (n + 2) / 3 * 4 + 2;
    if (rc_buf_reserve(b, out) != 0)
        return -1;
    char *o = (char *)b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        *o++ = abc[w >> 18];
        *o++ = abc[w >> 12 & 0x3f];
        *o++ = i + 1 < n ? abc[w >> 6 & 0x3f] : '=';
        *o++ = i + 2 < n ? abc[w & 0x3f] : '=';
    }
    *o = '"';
    b->len += out;
    return 0;
}

static int put_item(rc_buf *b, mp_reader *r, const mp_item *it, unsigned depth);

static int put_array(rc_buf *b, mp_reader *r, uint64_t n, unsigned depth)
{
    if (PUT_LIT(b, "["))
        return -1;
    for (uint64_t i = 0; i < n; i++) {
        mp_item v;
        if ((i && PUT_LIT(b, ",")) || !mp_next(r, &v) || put_item(b, r, &v, depth))
            return -1;
    }
    return PUT_LIT(b, "]");
}

/* A map's members in frame order. A str or bin value that is not UTF-8 is
 * written in base64 under its key with RC_JSON_B64_SUFFIX appended. */
static int put_map(rc_buf *b, mp_reader *r, uint64_t n, unsigned depth)
{
    if (PUT_LIT(b, "{"))
        return -1;
    for (uint64_t i = 0; i < n; i++) {
        mp_item k, v;
        if ((i && PUT_LIT(b, ",")) || !mp_next(r, &k) || k.kind != MP_STR || !mp_next(r, &v))
            return -1;
        bool text = v.kind == MP_STR || v.kind == MP_BIN;
        bool b64 = text && !rc_utf8_valid((const char *)v.ptr, v.len);
        bool key_valid = rc_utf8_valid((const char *)k.ptr, k.len);
        if (PUT_LIT(b, "\"") || (key_valid ? put_escaped(b, k.ptr, k.len) : put_replaced(b, k.ptr, k.len)) ||
            (b64 && PUT_LIT(b, RC_JSON_B64_SUFFIX)) || PUT_LIT(b, "\":"))
            return -1;
        if (b64 ? put_base64(b, v.ptr, v.len) : text ? put_text(b, v.ptr, v.len, true) : put_item(b, r, &v, depth))
            return -1;
    }
    return PUT_LIT(b, "}");
}

/* Writes one item whose header has been read; its elements follow in r.
 * depth counts the containers that hold it (0 for the top map). */
static int put_item(rc_buf *b, mp_reader *r, const mp_item *it, unsigned depth)
{
    switch (it->kind) {
    case MP_NIL: return PUT_LIT(b, "null");
    case MP_BOOL: return it->b ? PUT_LIT(b, "true") : PUT_LIT(b, "false");
    case MP_UINT: return put_u64(b, it->u);
    case MP_INT: return put_i64(b, it->i);
    case MP_FLOAT: return put_double(b, it->f);
    case MP_STR:
    case MP_BIN: return put_text(b, it->ptr, it->len, rc_utf8_valid((const char *)it->ptr, it->len));
    case MP_ARRAY:
    case MP_MAP:
        if (depth >= RC_MAX_DEPTH)
            return -1;
        return it->kind == MP_MAP ? put_map(b, r, it->u, depth + 1) : put_array(b, r, it->u, depth + 1);
    }
    return -1;
}

int rc_msgpack_to_json(const uint8_t *map, size_t len, rc_buf *out)
{
    mp_reader r = { map, len };
    mp_item top;
    size_t start = out->len;
    /* A typical frame's JSON is a little longer than the frame: one
     * reservation up front saves the doublings on the way. */
    if (rc_buf_reserve(out, len + len / 2 + 16) != 0)
        return -1;
    if (!mp_next(&r, &top) || top.kind != MP_MAP || put_item(out, &r, &top, 0) || r.left != 0) {
        out->len = start;
        return -1;
    }
    return 0;
}
