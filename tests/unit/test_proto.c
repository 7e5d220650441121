/*
 * Wire protocol v1 codec (src/proto/codec.c) against the shared test vectors
 * in proto/vectors/ (format: proto/vectors/README.md), then round trips of
 * every message type through rc_encode and rc_decode, and the name tables.
 *
 * The vectors are the contract every client and the server are tested
 * against, so this program refuses to pass vacuously: RC_PROTO_DIR must be
 * set (ctest sets it to the source tree's proto/), every file must exist and
 * hold vectors, and a syntax error in a file is a failure, not a skip.
 *
 * A vector with an `xfail:` line documents a known codec defect: it is
 * reported as XFAIL while it fails, and fails the run (XPASS) once the codec
 * is fixed, so that the marker gets removed.
 */
#include "ringcast/proto.h"

#include <CUnit/Basic.h>
#include <msgpack.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHY_MAX 512u        /* bytes of one failure description */
#define MAX_SUB_MSGS 4096u  /* msgs[i] indexes a vector may describe */
#define BIG_BODY 100000u    /* bytes: a body that needs bin32 / str32 */
#define ROUNDTRIP_TS UINT64_C(1700000000000)

/*
 * Some invalid vectors declare 2^32-1 elements in a few bytes. Until the
 * codec bounds declared counts by the bytes left, msgpack-c asks malloc for
 * up to 96 GiB; under AddressSanitizer that aborts the whole program unless
 * failed allocations return NULL, as they do without it.
 */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

/* ------------------------------------------------------------------ */
/* Vector files                                                         */
/* ------------------------------------------------------------------ */

typedef struct kv {
    char *key;
    char *val;
} kv;

/* One vector: a `name:` line and the lines after it, up to the next name. */
typedef struct vector {
    const char *file;
    unsigned line; /* of its name: line */
    char *name;
    uint8_t *frame; /* malloc'd with exactly frame_len bytes (ASan sees over-reads) */
    size_t frame_len;
    bool has_frame;
    kv *expect;
    size_t n_expect;
    char *error;
    bool has_rid;
    uint64_t rid;
    char *xfail;
    bool has_length, has_max_frame, has_prefix;
    uint64_t length, max_frame;
    uint8_t prefix[RC_FRAME_HEADER];
} vector;

typedef struct vec_file {
    char *path;
    vector *v;
    size_t n;
} vec_file;

typedef struct run_count {
    unsigned ran, passed, xfailed;
} run_count;

static vec_file g_valid, g_invalid, g_lengths;
static run_count g_count_valid, g_count_invalid, g_count_lengths;

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* Decodes hex into a fresh buffer of exactly the decoded size (1 if empty). */
static int hex_decode(const char *s, uint8_t **out, size_t *out_len)
{
    size_t n = strlen(s);
    if (n % 2)
        return -1;
    uint8_t *p = malloc(n / 2 ? n / 2 : 1);
    if (!p)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval((unsigned char)s[2 * i]), lo = hexval((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(p);
            return -1;
        }
        p[i] = (uint8_t)(hi << 4 | lo);
    }
    *out = p;
    *out_len = n / 2;
    return 0;
}

/* Decodes %XX escapes; other bytes stand for themselves. */
static int pct_decode(const char *s, uint8_t **out, size_t *out_len)
{
    size_t n = strlen(s), k = 0;
    uint8_t *p = malloc(n ? n : 1);
    if (!p)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            p[k++] = (uint8_t)s[i];
            continue;
        }
        int hi = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
        int lo = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
            free(p);
            return -1;
        }
        p[k++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    *out = p;
    *out_len = k;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static void vector_free(vector *v)
{
    free(v->name);
    free(v->frame);
    for (size_t i = 0; i < v->n_expect; i++) {
        free(v->expect[i].key);
        free(v->expect[i].val);
    }
    free(v->expect);
    free(v->error);
    free(v->xfail);
}

static void vec_file_free(vec_file *f)
{
    for (size_t i = 0; i < f->n; i++)
        vector_free(&f->v[i]);
    free(f->v);
    free(f->path);
    memset(f, 0, sizeof(*f));
}

/* Splits an `expect:` value into key=value tokens appended to v->expect. */
static int add_expect(vector *v, char *val)
{
    for (char *tok = strtok(val, " \t"); tok; tok = strtok(NULL, " \t")) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok)
            return -1;
        kv *e = realloc(v->expect, (v->n_expect + 1) * sizeof(*e));
        if (!e)
            return -1;
        v->expect = e;
        e[v->n_expect].key = strndup(tok, (size_t)(eq - tok));
        e[v->n_expect].val = strdup(eq + 1);
        if (!e[v->n_expect].key || !e[v->n_expect].val) {
            free(e[v->n_expect].key);
            free(e[v->n_expect].val);
            return -1;
        }
        v->n_expect++;
    }
    return 0;
}

/* Applies one `key: value` line to the current vector; -1 on any error. */
static int apply_line(vector *v, const char *key, char *val)
{
    if (strcmp(key, "frame") == 0) {
        if (v->has_frame || hex_decode(val, &v->frame, &v->frame_len) != 0)
            return -1;
        v->has_frame = true;
    } else if (strcmp(key, "expect") == 0) {
        return add_expect(v, val);
    } else if (strcmp(key, "error") == 0) {
        if (v->error || !(v->error = strdup(val)))
            return -1;
    } else if (strcmp(key, "rid") == 0) {
        if (v->has_rid || parse_u64(val, &v->rid) != 0)
            return -1;
        v->has_rid = true;
    } else if (strcmp(key, "xfail") == 0) {
        if (v->xfail || !*val || !(v->xfail = strdup(val)))
            return -1;
    } else if (strcmp(key, "length") == 0) {
        if (v->has_length || parse_u64(val, &v->length) != 0 || v->length > UINT32_MAX)
            return -1;
        v->has_length = true;
    } else if (strcmp(key, "max_frame") == 0) {
        if (v->has_max_frame || parse_u64(val, &v->max_frame) != 0 || v->max_frame > UINT32_MAX)
            return -1;
        v->has_max_frame = true;
    } else if (strcmp(key, "prefix") == 0) {
        uint8_t *p = NULL;
        size_t n = 0;
        if (v->has_prefix || hex_decode(val, &p, &n) != 0)
            return -1;
        if (n != RC_FRAME_HEADER) {
            free(p);
            return -1;
        }
        memcpy(v->prefix, p, RC_FRAME_HEADER);
        free(p);
        v->has_prefix = true;
    } else {
        return -1;
    }
    return 0;
}

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
}

/* Loads dir/name into f. Prints the reason and returns -1 on any error. */
static int load_file(const char *dir, const char *name, vec_file *f)
{
    size_t plen = strlen(dir) + strlen(name) + 2;
    f->path = malloc(plen);
    if (!f->path)
        return -1;
    snprintf(f->path, plen, "%s/%s", dir, name);
    FILE *fp = fopen(f->path, "r");
    if (!fp) {
        fprintf(stderr, "test_proto: cannot open %s: %s\n", f->path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    unsigned lineno = 0;
    int rc = 0;
    while (getline(&line, &cap, fp) >= 0) {
        lineno++;
        chomp(line);
        if (line[0] == '\0' || line[0] == '#')
            continue;
        char *colon = strchr(line, ':');
        if (!colon) {
            rc = -1;
            break;
        }
        *colon = '\0';
        char *val = colon + 1;
        while (*val == ' ' || *val == '\t')
            val++;
        if (strcmp(line, "name") == 0) {
            vector *nv = realloc(f->v, (f->n + 1) * sizeof(*nv));
            if (!nv) {
                rc = -1;
                break;
            }
            f->v = nv;
            memset(&f->v[f->n], 0, sizeof(vector));
            f->v[f->n].file = f->path;
            f->v[f->n].line = lineno;
            f->v[f->n].name = strdup(val);
            f->n++;
            if (!f->v[f->n - 1].name) {
                rc = -1;
                break;
            }
        } else if (f->n == 0 || apply_line(&f->v[f->n - 1], line, val) != 0) {
            rc = -1;
            break;
        }
    }
    free(line);
    fclose(fp);
    if (rc != 0)
        fprintf(stderr, "test_proto: %s:%u: malformed line (see proto/vectors/README.md)\n", f->path, lineno);
    return rc;
}

/* Checks that every vector of a file has the lines its kind needs. */
static int validate_file(const vec_file *f, bool want_frame, bool want_expect, bool want_error,
                         bool want_length)
{
    if (f->n == 0) {
        fprintf(stderr, "test_proto: %s holds no vectors\n", f->path);
        return -1;
    }
    for (size_t i = 0; i < f->n; i++) {
        const vector *v = &f->v[i];
        bool ok = v->has_frame == want_frame && (v->n_expect > 0) == want_expect &&
                  (v->error != NULL) == want_error && v->has_length == want_length &&
                  v->has_max_frame == want_length && (want_length || !v->has_prefix) &&
                  (!v->has_rid || want_error);
        if (!ok) {
            fprintf(stderr, "test_proto: %s:%u: vector \"%s\" lacks or has extra lines for this file\n",
                    v->file, v->line, v->name);
            return -1;
        }
    }
    return 0;
}

static int load_vectors(void)
{
    const char *dir = getenv("RC_PROTO_DIR");
    if (!dir || !*dir) {
        fprintf(stderr, "test_proto: RC_PROTO_DIR is not set; point it at the source tree's proto/ "
                        "(ctest sets it)\n");
        return -1;
    }
    size_t n = strlen(dir) + sizeof("/vectors");
    char *vdir = malloc(n);
    if (!vdir)
        return -1;
    snprintf(vdir, n, "%s/vectors", dir);
    int rc = 0;
    if (load_file(vdir, "valid.txt", &g_valid) != 0 || load_file(vdir, "invalid.txt", &g_invalid) != 0 ||
        load_file(vdir, "lengths.txt", &g_lengths) != 0 ||
        validate_file(&g_valid, true, true, false, false) != 0 ||
        validate_file(&g_invalid, true, false, true, false) != 0 ||
        validate_file(&g_lengths, false, false, true, true) != 0)
        rc = -1;
    free(vdir);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Checking decoded messages against expect tokens                      */
/* ------------------------------------------------------------------ */

typedef enum fkind { FK_TYPE, FK_U64, FK_STR, FK_BODY, FK_BOOL, FK_CODE, FK_COUNT } fkind;

/* An expect key: where its value lives in rc_msg and which has-bit it implies. */
typedef struct fdesc {
    const char *key;
    fkind kind;
    size_t off;
    uint32_t has;
} fdesc;

#define FD(k, kind, field, has) { k, kind, offsetof(rc_msg, field), has }
static const fdesc fdescs[] = {
    FD("t", FK_TYPE, type, 0),
    FD("rid", FK_U64, rid, RC_HAS_RID),
    FD("user", FK_STR, user, 0),
    FD("token", FK_STR, token, RC_HAS_TOKEN),
    FD("g", FK_STR, g, 0),
    FD("mid", FK_STR, mid, RC_HAS_MID),
    FD("body", FK_BODY, body, 0),
    FD("body_is_str", FK_BOOL, body_is_str, 0),
    FD("from", FK_STR, from, 0),
    FD("to", FK_STR, to, RC_HAS_TO),
    FD("msg", FK_STR, text, 0),
    FD("reason", FK_STR, reason, 0),
    FD("srv", FK_STR, srv, 0),
    FD("code", FK_CODE, code, 0),
    FD("since", FK_U64, since, RC_HAS_SINCE),
    FD("before", FK_U64, before, RC_HAS_BEFORE),
    FD("limit", FK_U64, limit, RC_HAS_LIMIT),
    FD("seq", FK_U64, seq, RC_HAS_SEQ),
    FD("ts", FK_U64, ts, 0),
    FD("sid", FK_U64, sid, 0),
    FD("max_frame", FK_U64, max_frame, 0),
    FD("exp", FK_U64, exp, 0),
    FD("dup", FK_BOOL, dup, RC_HAS_DUP),
    FD("lost", FK_BOOL, lost, 0),
    FD("more", FK_BOOL, more, 0),
    FD("n_msgs", FK_COUNT, n_msgs, RC_HAS_MSGS),
    FD("echo", FK_BOOL, echo, RC_HAS_ECHO),
    FD("presence", FK_BOOL, presence, RC_HAS_PRESENCE),
    FD("online", FK_U64, online, RC_HAS_ONLINE),
    FD("n", FK_U64, n, 0),
    FD("n_users", FK_COUNT, n_users, RC_HAS_USERS),
    FD("receipts", FK_BOOL, receipts, RC_HAS_RECEIPTS),
    FD("read", FK_U64, read, RC_HAS_READ),
    FD("n_groups", FK_COUNT, n_groups, RC_HAS_GROUPS),
};
#undef FD

/* The frame a decoded message must point into (decoding never copies). */
typedef struct frame_span {
    const uint8_t *p;
    size_t len;
} frame_span;

static bool in_frame(frame_span fr, rc_str s)
{
    if (s.len == 0)
        return true;
    const uint8_t *p = (const uint8_t *)s.ptr;
    return p >= fr.p && p + s.len <= fr.p + fr.len;
}

/* Puts prefix in front of the failure description why (WHY_MAX bytes). */
static void why_prefix(char *why, const char *prefix)
{
    size_t p = strlen(prefix), w = strlen(why);
    if (p >= WHY_MAX)
        return;
    if (p + w >= WHY_MAX)
        w = WHY_MAX - 1 - p;
    memmove(why + p, why, w);
    memcpy(why, prefix, p);
    why[p + w] = '\0';
}

/* Checks one key=value against m (no msgs[] prefix); ORs the implied has-bit. */
static bool check_field(const rc_msg *m, frame_span fr, const char *key, const char *val, uint32_t *want_has,
                        char *why)
{
    const fdesc *d = NULL;
    for (size_t i = 0; i < sizeof(fdescs) / sizeof(fdescs[0]); i++)
        if (strcmp(fdescs[i].key, key) == 0)
            d = &fdescs[i];
    if (!d) {
        snprintf(why, WHY_MAX, "unknown expect key `%s`", key);
        return false;
    }
    *want_has |= d->has;
    const char *at = (const char *)m + d->off;
    uint64_t u = 0;
    uint8_t *bytes = NULL;
    size_t n = 0;
    bool ok = false;
    switch (d->kind) {
    case FK_TYPE:
        ok = strcmp(rc_type_name(m->type), val) == 0;
        snprintf(why, WHY_MAX, "t: want %s, got %s", val, rc_type_name(m->type));
        break;
    case FK_U64:
        if (parse_u64(val, &u) != 0) {
            snprintf(why, WHY_MAX, "%s: bad number `%s` in the vector", key, val);
            return false;
        }
        ok = *(const uint64_t *)at == u;
        snprintf(why, WHY_MAX, "%s: want %s, got %" PRIu64, key, val, *(const uint64_t *)at);
        break;
    case FK_COUNT:
        if (parse_u64(val, &u) != 0) {
            snprintf(why, WHY_MAX, "%s: bad number `%s` in the vector", key, val);
            return false;
        }
        ok = *(const uint32_t *)at == u;
        snprintf(why, WHY_MAX, "%s: want %s, got %" PRIu32, key, val, *(const uint32_t *)at);
        break;
    case FK_BOOL:
        if (strcmp(val, "0") != 0 && strcmp(val, "1") != 0) {
            snprintf(why, WHY_MAX, "%s: want 0 or 1 in the vector, not `%s`", key, val);
            return false;
        }
        ok = *(const bool *)at == (val[0] == '1');
        snprintf(why, WHY_MAX, "%s: want %s, got %d", key, val, *(const bool *)at);
        break;
    case FK_CODE: {
        rc_err want = rc_err_from_name(val, strlen(val)); /* RC_E_COUNT: not a v1 code */
        ok = m->code == want;
        snprintf(why, WHY_MAX, "code: want %s, got %s (%d)", val, rc_err_name(m->code), (int)m->code);
        break;
    }
    case FK_STR:
    case FK_BODY: {
        int r = d->kind == FK_STR ? pct_decode(val, &bytes, &n) : hex_decode(val, &bytes, &n);
        if (r != 0) {
            snprintf(why, WHY_MAX, "%s: bad encoding `%s` in the vector", key, val);
            return false;
        }
        const rc_str *s = (const rc_str *)at;
        ok = s->len == n && (n == 0 || memcmp(s->ptr, bytes, n) == 0);
        snprintf(why, WHY_MAX, "%s: want `%s`, got %" PRIu32 " bytes `%.*s`", key, val, s->len,
                 (int)(s->len > 80 ? 80 : s->len), s->ptr ? s->ptr : "");
        if (ok && !in_frame(fr, *s)) {
            ok = false;
            snprintf(why, WHY_MAX, "%s: decoded value does not point into the frame", key);
        }
        free(bytes);
        break;
    }
    }
    return ok;
}

/* Checks one groups[i].KEY of an inbox reply: g, seq, read, unread, ts of
 * the entry, or last.KEY of its decoded last message. */
static bool check_entry(const rc_msg *m, frame_span fr, const char *key, const char *val, char *why)
{
    unsigned idx = 0;
    int used = 0;
    if (sscanf(key, "groups[%u].%n", &idx, &used) != 1 || used == 0) {
        snprintf(why, WHY_MAX, "malformed expect key `%s`", key);
        return false;
    }
    if (!m->groups || idx >= m->n_groups) {
        snprintf(why, WHY_MAX, "%s: the decoded inbox has only %" PRIu32 " groups", key, m->n_groups);
        return false;
    }
    const rc_inbox_entry *e = &m->groups[idx];
    const char *sub = key + used;
    if (strncmp(sub, "last.", 5) == 0) {
        uint32_t ignored = 0;
        if (!e->has_last || !e->last) {
            snprintf(why, WHY_MAX, "%s: the entry has no last message", key);
            return false;
        }
        return check_field(e->last, fr, sub + 5, val, &ignored, why);
    }
    if (strcmp(sub, "g") == 0) {
        uint8_t *bytes = NULL;
        size_t n = 0;
        if (pct_decode(val, &bytes, &n) != 0)
            return false;
        bool ok = e->g.len == n && memcmp(e->g.ptr, bytes, n) == 0 && in_frame(fr, e->g);
        free(bytes);
        snprintf(why, WHY_MAX, "%s: want `%s`, got `%.*s`", key, val, (int)e->g.len, e->g.ptr);
        return ok;
    }
    uint64_t want = 0;
    const uint64_t *got = strcmp(sub, "seq") == 0      ? &e->seq
                          : strcmp(sub, "read") == 0   ? &e->read
                          : strcmp(sub, "unread") == 0 ? &e->unread
                          : strcmp(sub, "ts") == 0     ? &e->ts
                                                       : NULL;
    if (!got || parse_u64(val, &want) != 0) {
        snprintf(why, WHY_MAX, "unknown or bad expect `%s=%s`", key, val);
        return false;
    }
    snprintf(why, WHY_MAX, "%s: want %s, got %" PRIu64, key, val, *got);
    return *got == want;
}

/* Checks every expect token of v against m, nested msgs[i].key included, and
 * that exactly the expected optional fields are present (has bits). */
static bool check_expect(const vector *v, const rc_msg *m, char *why)
{
    frame_span fr = { v->frame, v->frame_len };
    uint32_t want_has = 0;
    uint32_t n_sub = m->n_msgs < MAX_SUB_MSGS ? m->n_msgs : MAX_SUB_MSGS;
    uint32_t *sub_has = calloc(n_sub ? n_sub : 1, sizeof(*sub_has));
    bool *sub_seen = calloc(n_sub ? n_sub : 1, sizeof(*sub_seen));
    bool ok = sub_has && sub_seen;
    if (!ok)
        snprintf(why, WHY_MAX, "out of memory");
    for (size_t i = 0; ok && i < v->n_expect; i++) {
        const char *key = v->expect[i].key, *val = v->expect[i].val;
        unsigned idx = 0;
        int used = 0;
        if (strncmp(key, "groups[", 7) == 0) {
            ok = check_entry(m, fr, key, val, why);
        } else if (strncmp(key, "msgs[", 5) != 0) {
            ok = check_field(m, fr, key, val, &want_has, why);
        } else if (sscanf(key, "msgs[%u].%n", &idx, &used) != 1 || used == 0) {
            snprintf(why, WHY_MAX, "malformed expect key `%s`", key);
            ok = false;
        } else if (!m->msgs || idx >= n_sub) {
            snprintf(why, WHY_MAX, "%s: the decoded message has only %" PRIu32 " msgs", key, m->n_msgs);
            ok = false;
        } else {
            sub_seen[idx] = true;
            ok = check_field(&m->msgs[idx], fr, key + used, val, &sub_has[idx], why);
            if (!ok) {
                char prefix[32];
                snprintf(prefix, sizeof(prefix), "msgs[%u].", idx);
                why_prefix(why, prefix);
            }
        }
    }
    if (ok && m->has != want_has) {
        snprintf(why, WHY_MAX, "has bits: want 0x%" PRIx32 ", got 0x%" PRIx32 " (an optional field %s)", want_has,
                 m->has, (m->has & ~want_has) ? "was reported but is not expected" : "is missing");
        ok = false;
    }
    for (uint32_t i = 0; ok && i < n_sub; i++) {
        if (!sub_seen[i]) {
            snprintf(why, WHY_MAX, "msgs[%" PRIu32 "] is decoded but the vector does not describe it", i);
            ok = false;
        } else if (m->msgs[i].has != sub_has[i]) {
            snprintf(why, WHY_MAX, "msgs[%" PRIu32 "] has bits: want 0x%" PRIx32 ", got 0x%" PRIx32, i, sub_has[i],
                     m->msgs[i].has);
            ok = false;
        }
    }
    free(sub_has);
    free(sub_seen);
    return ok;
}

/* ------------------------------------------------------------------ */
/* Running vectors                                                      */
/* ------------------------------------------------------------------ */

/* Records one vector's outcome, honouring its xfail line. */
static void record(const vector *v, bool ok, const char *why, run_count *c)
{
    char msg[WHY_MAX + 512];
    c->ran++;
    if (v->xfail) {
        if (ok) {
            snprintf(msg, sizeof(msg), "XPASS \"%s\": the codec now passes; remove its xfail line in gen.py",
                     v->name);
            CU_assertImplementation(CU_FALSE, v->line, msg, v->file, "", CU_FALSE);
        } else {
            c->xfailed++;
            printf("\n  XFAIL %s:%u \"%s\": %s [%s]", v->file, v->line, v->name, why, v->xfail);
        }
        return;
    }
    if (ok) {
        c->passed++;
        return;
    }
    snprintf(msg, sizeof(msg), "vector \"%s\": %s", v->name, why);
    fprintf(stderr, "\n  FAIL %s:%u %s", v->file, v->line, msg);
    CU_assertImplementation(CU_FALSE, v->line, msg, v->file, "", CU_FALSE);
}

/* Ends the XFAIL/FAIL lines so that CUnit's verdict starts a line of its own. */
static void end_report_lines(const run_count *c)
{
    if (c->passed + c->xfailed != c->ran || c->xfailed)
        printf("\n  ");
    fflush(stdout);
}

static void test_valid_vectors(void)
{
    CU_ASSERT_FATAL(g_valid.n > 0);
    rc_decoder d;
    rc_decoder_init(&d);
    for (size_t i = 0; i < g_valid.n; i++) {
        const vector *v = &g_valid.v[i];
        rc_msg m;
        const char *text = NULL;
        char why[WHY_MAX] = "";
        rc_err e = rc_decode(&d, v->frame, v->frame_len, &m, &text);
        bool ok = e == RC_OK;
        if (!ok)
            snprintf(why, sizeof(why), "rc_decode returned %s (%s)", rc_err_name(e), text ? text : "");
        else
            ok = check_expect(v, &m, why);
        record(v, ok, why, &g_count_valid);
    }
    end_report_lines(&g_count_valid);
    rc_decoder_free(&d);
}

static void test_invalid_vectors(void)
{
    CU_ASSERT_FATAL(g_invalid.n > 0);
    rc_decoder d;
    rc_decoder_init(&d);
    for (size_t i = 0; i < g_invalid.n; i++) {
        const vector *v = &g_invalid.v[i];
        char why[WHY_MAX] = "";
        rc_err want = rc_err_from_name(v->error, strlen(v->error));
        if (want == RC_E_COUNT) {
            snprintf(why, sizeof(why), "unknown error code `%s` in the vector", v->error);
            record(v, false, why, &g_count_invalid);
            continue;
        }
        rc_msg m;
        const char *text = NULL;
        rc_err e = rc_decode(&d, v->frame, v->frame_len, &m, &text);
        bool rid_ok = v->has_rid ? ((m.has & RC_HAS_RID) && m.rid == v->rid) : !(m.has & RC_HAS_RID);
        bool ok = e == want && rid_ok && text && *text;
        if (e != want)
            snprintf(why, sizeof(why), "want %s, got %s (%s)", v->error, rc_err_name(e), text ? text : "");
        else if (!rid_ok && v->has_rid)
            snprintf(why, sizeof(why), "rid %" PRIu64 " must be echoed; got %s %" PRIu64, v->rid,
                     (m.has & RC_HAS_RID) ? "rid" : "no rid", m.rid);
        else if (!rid_ok)
            snprintf(why, sizeof(why), "no rid may be reported; got %" PRIu64, m.rid);
        else if (!ok)
            snprintf(why, sizeof(why), "the error has no human text");
        record(v, ok, why, &g_count_invalid);
    }
    end_report_lines(&g_count_invalid);
    rc_decoder_free(&d);
}

static void test_length_vectors(void)
{
    CU_ASSERT_FATAL(g_lengths.n > 0);
    for (size_t i = 0; i < g_lengths.n; i++) {
        const vector *v = &g_lengths.v[i];
        char why[WHY_MAX] = "";
        rc_err want = strcmp(v->error, "OK") == 0 ? RC_OK : rc_err_from_name(v->error, strlen(v->error));
        rc_err e = rc_frame_check_len((uint32_t)v->length, (uint32_t)v->max_frame);
        bool ok = want != RC_E_COUNT && e == want;
        if (!ok)
            snprintf(why, sizeof(why), "length %" PRIu64 " max_frame %" PRIu64 ": want %s, got %s", v->length,
                     v->max_frame, v->error, rc_err_name(e));
        if (ok && v->has_prefix) {
            uint8_t put[RC_FRAME_HEADER];
            rc_frame_put_len(put, (uint32_t)v->length);
            ok = rc_frame_len(v->prefix) == v->length && memcmp(put, v->prefix, RC_FRAME_HEADER) == 0;
            if (!ok)
                snprintf(why, sizeof(why), "prefix: rc_frame_len gives %" PRIu32 ", want %" PRIu64,
                         rc_frame_len(v->prefix), v->length);
        }
        record(v, ok, why, &g_count_lengths);
    }
    end_report_lines(&g_count_lengths);
}

/* ------------------------------------------------------------------ */
/* Round trips: rc_encode -> rc_decode gives back the same message      */
/* ------------------------------------------------------------------ */

static bool str_same(rc_str a, rc_str b)
{
    return rc_str_eq(a, b);
}

/* Compares every field of rc_msg (unset fields are zero on both sides). */
static bool msg_same(const rc_msg *a, const rc_msg *b, char *why)
{
#define SAME(cond, name)                                                                                   \
    do {                                                                                                   \
        if (!(cond)) {                                                                                     \
            snprintf(why, WHY_MAX, "%s: field %s differs after the round trip", rc_type_name(a->type), name); \
            return false;                                                                                  \
        }                                                                                                  \
    } while (0)
    SAME(a->type == b->type, "type");
    SAME(a->has == b->has, "has");
    SAME(a->rid == b->rid, "rid");
    SAME(str_same(a->user, b->user), "user");
    SAME(str_same(a->token, b->token), "token");
    SAME(str_same(a->g, b->g), "g");
    SAME(str_same(a->mid, b->mid), "mid");
    SAME(str_same(a->body, b->body), "body");
    SAME(a->body_is_str == b->body_is_str, "body_is_str");
    SAME(str_same(a->from, b->from), "from");
    SAME(str_same(a->to, b->to), "to");
    SAME(str_same(a->text, b->text), "msg");
    SAME(str_same(a->reason, b->reason), "reason");
    SAME(str_same(a->srv, b->srv), "srv");
    SAME(a->code == b->code, "code");
    SAME(a->since == b->since, "since");
    SAME(a->before == b->before, "before");
    SAME(a->limit == b->limit, "limit");
    SAME(a->seq == b->seq, "seq");
    SAME(a->ts == b->ts, "ts");
    SAME(a->sid == b->sid, "sid");
    SAME(a->max_frame == b->max_frame, "max_frame");
    SAME(a->exp == b->exp, "exp");
    SAME(a->dup == b->dup, "dup");
    SAME(a->lost == b->lost, "lost");
    SAME(a->more == b->more, "more");
    SAME(a->n_msgs == b->n_msgs, "n_msgs");
#undef SAME
    for (uint32_t i = 0; i < a->n_msgs; i++)
        if (!msg_same(&a->msgs[i], &b->msgs[i], why))
            return false;
    return true;
}

/* Encodes m alone, checks the length prefix, decodes it and compares. */
static void roundtrip_one(rc_decoder *d, const rc_msg *m, const char *label)
{
    rc_buf b;
    rc_buf_init(&b);
    char why[WHY_MAX] = "";
    int r = rc_encode(&b, m);
    CU_ASSERT_EQUAL_FATAL(r, 0);
    CU_ASSERT_FATAL(b.len > RC_FRAME_HEADER);
    CU_ASSERT_EQUAL(rc_frame_len(b.data), b.len - RC_FRAME_HEADER);
    rc_msg out;
    const char *text = NULL;
    rc_err e = rc_decode(d, b.data + RC_FRAME_HEADER, b.len - RC_FRAME_HEADER, &out, &text);
    bool ok = e == RC_OK;
    if (!ok)
        snprintf(why, sizeof(why), "%s: rc_decode returned %s (%s)", label, rc_err_name(e), text ? text : "");
    else if (!msg_same(m, &out, why)) {
        why_prefix(why, ": ");
        why_prefix(why, label);
        ok = false;
    }
    if (!ok)
        fprintf(stderr, "\n  FAIL round trip %s", why);
    CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, __LINE__, ok ? "round trip" : why, __FILE__, "", CU_FALSE);
    rc_buf_free(&b);
}

/* Fixtures: one message of each shape the protocol has. Strings are never
 * {NULL, 0}; an empty string is rc_str_c(""). */
static char g_big_body[BIG_BODY];

#define S(x) rc_str_c(x)
static rc_msg fixture_msg(uint64_t seq, bool str_body, bool with_mid)
{
    rc_msg m = { .type = RC_T_MSG, .has = RC_HAS_SEQ, .g = S("room"), .seq = seq, .from = S("alice"),
                 .ts = ROUNDTRIP_TS + seq, .body = str_body ? S("hi there") : (rc_str){ "\x00\x01\xff", 3 },
                 .body_is_str = str_body };
    if (with_mid) {
        m.has |= RC_HAS_MID;
        m.mid = S("c-0001");
    }
    return m;
}

static void test_roundtrip_requests(void)
{
    char user64[RC_MAX_USER + 1], group128[RC_MAX_GROUP + 1], mid64[RC_MAX_MID + 1], token_max[RC_MAX_TOKEN + 1];
    memset(user64, 'u', RC_MAX_USER);
    user64[RC_MAX_USER] = '\0';
    memset(group128, 'g', RC_MAX_GROUP);
    group128[RC_MAX_GROUP] = '\0';
    memset(mid64, 'm', RC_MAX_MID);
    mid64[RC_MAX_MID] = '\0';
    memset(token_max, 't', RC_MAX_TOKEN);
    token_max[RC_MAX_TOKEN] = '\0';

    const rc_msg cases[] = {
        { .type = RC_T_HELLO, .user = S("alice") },
        { .type = RC_T_HELLO, .has = RC_HAS_RID | RC_HAS_TOKEN, .rid = 1, .user = S(user64), .token = S(token_max) },
        { .type = RC_T_HELLO, .has = RC_HAS_TOKEN, .user = S("a"), .token = S("") },
        { .type = RC_T_HELLO, .has = RC_HAS_RID | RC_HAS_TOKEN, .rid = 1, .token = S(token_max) },
        { .type = RC_T_REFRESH, .has = RC_HAS_RID | RC_HAS_TOKEN, .rid = 2, .token = S(token_max) },
        { .type = RC_T_JOIN, .g = S("room") },
        { .type = RC_T_JOIN, .has = RC_HAS_RID | RC_HAS_SINCE, .rid = 2, .g = S(group128), .since = UINT64_MAX },
        { .type = RC_T_JOIN, .has = RC_HAS_SINCE, .g = S("r"), .since = 0 },
        { .type = RC_T_LEAVE, .has = RC_HAS_RID, .rid = 3, .g = S("room") },
        { .type = RC_T_SEND, .g = S("room"), .body = S("hello"), .body_is_str = true },
        { .type = RC_T_SEND, .has = RC_HAS_RID | RC_HAS_MID, .rid = 4, .g = S("room"),
          .body = { "\x00\xc1\xff", 3 }, .mid = S(mid64) },
        { .type = RC_T_SEND, .g = S("room"), .body = S(""), .body_is_str = false },
        { .type = RC_T_SEND, .g = S("room"), .body = { g_big_body, BIG_BODY }, .body_is_str = false },
        { .type = RC_T_SEND, .g = S("room"), .body = { g_big_body, BIG_BODY }, .body_is_str = true },
        { .type = RC_T_HIST, .g = S("room") },
        { .type = RC_T_HIST, .has = RC_HAS_RID | RC_HAS_BEFORE | RC_HAS_LIMIT, .rid = 5, .g = S("room"),
          .before = 500, .limit = RC_MAX_HIST_LIMIT },
        { .type = RC_T_HIST, .has = RC_HAS_LIMIT, .g = S("room"), .limit = 1 },
        { .type = RC_T_PING },
        { .type = RC_T_PING, .has = RC_HAS_RID, .rid = UINT64_MAX },
        { .type = RC_T_REPLAY, .has = RC_HAS_RID | RC_HAS_SEQ | RC_HAS_TO | RC_HAS_MID, .rid = 6, .g = S("room"),
          .seq = 9, .from = S("alice"), .to = S("bob"), .ts = ROUNDTRIP_TS, .mid = S("c-9"), .body = S("x"),
          .body_is_str = true, .reason = S("slow_consumer") },
        { .type = RC_T_REPLAY, .g = S("room"), .from = S("alice"), .ts = ROUNDTRIP_TS, .body = { "\x01", 1 },
          .reason = S("overloaded") },
    };
    rc_decoder d;
    rc_decoder_init(&d);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char label[64];
        snprintf(label, sizeof(label), "request case %zu (%s)", i, rc_type_name(cases[i].type));
        roundtrip_one(&d, &cases[i], label);
    }
    rc_decoder_free(&d);
}

static void test_roundtrip_server_messages(void)
{
    rc_msg three[3] = { fixture_msg(1, true, false), fixture_msg(2, false, true), fixture_msg(3, true, true) };
    const rc_msg cases[] = {
        { .type = RC_T_WELCOME, .has = RC_HAS_RID, .rid = 1, .sid = 42, .srv = S("ringcast/0.1.0"),
          .max_frame = RC_DEFAULT_MAX_FRAME },
        { .type = RC_T_WELCOME, .sid = 0, .srv = S(""), .max_frame = 16 },
        { .type = RC_T_JOINED, .has = RC_HAS_RID | RC_HAS_SEQ, .rid = 2, .g = S("room"), .seq = 0 },
        { .type = RC_T_SYNCED, .has = RC_HAS_SEQ, .g = S("room"), .seq = 42, .lost = false },
        { .type = RC_T_SYNCED, .has = RC_HAS_RID | RC_HAS_SEQ, .rid = 2, .g = S("room"), .seq = 5000,
          .lost = true },
        { .type = RC_T_SYNCED, .has = RC_HAS_SEQ, .g = S("room"), .seq = 7, .lost = false, .more = true },
        { .type = RC_T_LEFT, .has = RC_HAS_RID, .rid = 3, .g = S("room") },
        { .type = RC_T_ACK, .has = RC_HAS_RID | RC_HAS_SEQ, .rid = 4, .g = S("room"), .seq = 1,
          .ts = ROUNDTRIP_TS },
        { .type = RC_T_ACK, .has = RC_HAS_RID | RC_HAS_SEQ | RC_HAS_DUP, .rid = 4, .g = S("room"), .seq = 1,
          .ts = ROUNDTRIP_TS, .dup = true },
        fixture_msg(1, true, false),
        fixture_msg(UINT64_MAX, false, true),
        { .type = RC_T_HIST, .has = RC_HAS_RID | RC_HAS_MSGS, .rid = 5, .g = S("room"), .n_msgs = 0 },
        { .type = RC_T_HIST, .has = RC_HAS_RID | RC_HAS_MSGS, .rid = 5, .g = S("room"), .n_msgs = 3,
          .msgs = three },
        { .type = RC_T_PONG },
        { .type = RC_T_PONG, .has = RC_HAS_RID, .rid = 7 },
        { .type = RC_T_ERR, .has = RC_HAS_RID, .rid = 8, .code = RC_E_NOT_MEMBER,
          .text = S("join the group before sending to it") },
        { .type = RC_T_BYE, .reason = S("server shutting down") },
        { .type = RC_T_BYE, .reason = S("") },
        { .type = RC_T_REFRESHED, .has = RC_HAS_RID, .rid = 9, .exp = UINT64_MAX },
    };
    rc_decoder d;
    rc_decoder_init(&d);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char label[64];
        snprintf(label, sizeof(label), "server case %zu (%s)", i, rc_type_name(cases[i].type));
        roundtrip_one(&d, &cases[i], label);
    }
    /* err with every code. */
    for (int c = RC_E_BAD_FRAME; c < RC_E_COUNT; c++) {
        rc_msg m = { .type = RC_T_ERR, .code = (rc_err)c, .text = S("say what to do") };
        roundtrip_one(&d, &m, rc_err_name((rc_err)c));
    }
    rc_decoder_free(&d);
}

/* Several frames appended to one buffer split back by their length prefixes. */
static void test_encode_concatenated(void)
{
    rc_msg ms[] = {
        { .type = RC_T_PING, .has = RC_HAS_RID, .rid = 1 },
        fixture_msg(7, false, true),
        { .type = RC_T_PONG },
        { .type = RC_T_JOIN, .has = RC_HAS_SINCE, .g = S("room"), .since = 3 },
    };
    const size_t n = sizeof(ms) / sizeof(ms[0]);
    rc_buf b;
    rc_buf_init(&b);
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_EQUAL_FATAL(rc_encode(&b, &ms[i]), 0);
    rc_decoder d;
    rc_decoder_init(&d);
    size_t off = 0, got = 0;
    char why[WHY_MAX] = "";
    while (off + RC_FRAME_HEADER <= b.len) {
        uint32_t len = rc_frame_len(b.data + off);
        CU_ASSERT_EQUAL_FATAL(rc_frame_check_len(len, RC_DEFAULT_MAX_FRAME), RC_OK);
        CU_ASSERT_FATAL(off + RC_FRAME_HEADER + len <= b.len);
        rc_msg out;
        CU_ASSERT_EQUAL(rc_decode(&d, b.data + off + RC_FRAME_HEADER, len, &out, NULL), RC_OK);
        CU_ASSERT_FATAL(got < n);
        CU_ASSERT(msg_same(&ms[got], &out, why));
        off += RC_FRAME_HEADER + len;
        got++;
    }
    CU_ASSERT_EQUAL(off, b.len);
    CU_ASSERT_EQUAL(got, n);
    rc_decoder_free(&d);
    rc_buf_free(&b);
}

/* rc_encode writes each value the way msgpack-c's own packer does: a frame
 * decoded by msgpack-c and packed again by msgpack_pack_object (its generic
 * packer) comes back byte for byte, for integers at every width boundary
 * and strings and bodies past each length header (fixstr, str 8/16/32,
 * bin 8/16/32), into a buffer that starts empty and grows. */
static void test_encode_matches_msgpack_packer(void)
{
    static const uint64_t ints[] = { 0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295u, 4294967296u, UINT64_MAX };
    static const size_t lens[] = { 0, 1, 31, 32, 255, 256, 65535, 65536 };
    const size_t n_ints = sizeof(ints) / sizeof(ints[0]), n_lens = sizeof(lens) / sizeof(lens[0]);
    char *text = malloc(65536);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    memset(text, 'x', 65536);
    for (size_t i = 0; i < n_ints; i++) {
        for (size_t k = 0; k < n_lens; k++) {
            rc_msg m = { .type = RC_T_MSG, .seq = ints[i], .ts = ints[n_ints - 1 - i] };
            m.g = (rc_str){ text, lens[k] < 200 ? lens[k] : 200 };
            m.from = (rc_str){ text, lens[(k + 3) % n_lens] < 64 ? lens[(k + 3) % n_lens] : 64 };
            m.body = (rc_str){ text, lens[k] };
            m.body_is_str = i % 2;
            m.has = RC_HAS_MID | (k % 2 ? RC_HAS_RID : 0);
            m.mid = S("m-1");
            m.rid = ints[(i + k) % n_ints];
            rc_buf b;
            rc_buf_init(&b);
            CU_ASSERT_EQUAL_FATAL(rc_encode(&b, &m), 0);
            msgpack_unpacked u;
            msgpack_unpacked_init(&u);
            size_t off = 0;
            CU_ASSERT_EQUAL_FATAL(msgpack_unpack_next(&u, (const char *)b.data + RC_FRAME_HEADER, b.len - RC_FRAME_HEADER, &off),
                                  MSGPACK_UNPACK_SUCCESS);
            CU_ASSERT_EQUAL(off, b.len - RC_FRAME_HEADER);
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            CU_ASSERT_EQUAL(msgpack_pack_object(&pk, u.data), 0);
            CU_ASSERT_EQUAL(sb.size, b.len - RC_FRAME_HEADER);
            CU_ASSERT(sb.size == b.len - RC_FRAME_HEADER && memcmp(sb.data, b.data + RC_FRAME_HEADER, sb.size) == 0);
            msgpack_sbuffer_destroy(&sb);
            msgpack_unpacked_destroy(&u);
            rc_buf_free(&b);
        }
    }
    free(text);
}

static void test_encode_rejects_bad_type(void)
{
    rc_buf b;
    rc_buf_init(&b);
    CU_ASSERT_EQUAL_FATAL(rc_encode(&b, &(rc_msg){ .type = RC_T_PING }), 0);
    size_t before = b.len;
    CU_ASSERT_EQUAL(rc_encode(&b, &(rc_msg){ .type = RC_T_NONE }), -1);
    CU_ASSERT_EQUAL(rc_encode(&b, &(rc_msg){ .type = RC_T_COUNT }), -1);
    CU_ASSERT_EQUAL(b.len, before); /* a failed encode leaves the buffer as it was */
    rc_buf_free(&b);
}

static void test_encode_err(void)
{
    rc_decoder d;
    rc_decoder_init(&d);
    for (int c = RC_E_BAD_FRAME; c < RC_E_COUNT; c++) {
        for (int with_rid = 0; with_rid < 2; with_rid++) {
            rc_buf b;
            rc_buf_init(&b);
            const char *text = "a human message that says what to do";
            CU_ASSERT_EQUAL_FATAL(rc_encode_err(&b, with_rid, UINT64_C(77) + (uint64_t)c, (rc_err)c, text), 0);
            CU_ASSERT_EQUAL(rc_frame_len(b.data), b.len - RC_FRAME_HEADER);
            rc_msg m;
            CU_ASSERT_EQUAL_FATAL(rc_decode(&d, b.data + RC_FRAME_HEADER, b.len - RC_FRAME_HEADER, &m, NULL), RC_OK);
            CU_ASSERT_EQUAL(m.type, RC_T_ERR);
            CU_ASSERT_EQUAL(m.code, (rc_err)c);
            CU_ASSERT(rc_str_eq(m.text, rc_str_c(text)));
            if (with_rid) {
                CU_ASSERT_EQUAL(m.has, RC_HAS_RID);
                CU_ASSERT_EQUAL(m.rid, UINT64_C(77) + (uint64_t)c);
            } else {
                CU_ASSERT_EQUAL(m.has, 0);
            }
            rc_buf_free(&b);
        }
    }
    rc_decoder_free(&d);
}

/* ------------------------------------------------------------------ */
/* Names                                                                */
/* ------------------------------------------------------------------ */

static void test_err_names(void)
{
    /* proto/PROTOCOL.md §5, in its order: the enum follows the same order. */
    static const char *const want[RC_E_COUNT] = {
        "OK", "E_BAD_FRAME", "E_FRAME_TOO_LARGE", "E_UNKNOWN_TYPE", "E_MISSING_FIELD", "E_BAD_FIELD",
        "E_NOT_AUTHENTICATED", "E_AUTH_FAILED", "E_FORBIDDEN", "E_NOT_MEMBER", "E_RATE_LIMITED",
        "E_OVERLOADED", "E_LIMIT", "E_SHUTTING_DOWN", "E_INTERNAL",
    };
    for (int e = RC_OK; e < RC_E_COUNT; e++) {
        CU_ASSERT_STRING_EQUAL(rc_err_name((rc_err)e), want[e]);
        if (e != RC_OK)
            CU_ASSERT_EQUAL(rc_err_from_name(want[e], strlen(want[e])), (rc_err)e);
    }
    CU_ASSERT_PTR_NOT_NULL(rc_err_name(RC_E_COUNT));
    CU_ASSERT_EQUAL(rc_err_from_name("OK", 2), RC_E_COUNT); /* OK is not an error code */
    CU_ASSERT_EQUAL(rc_err_from_name("E_NOPE", 6), RC_E_COUNT);
    CU_ASSERT_EQUAL(rc_err_from_name("", 0), RC_E_COUNT);
    CU_ASSERT_EQUAL(rc_err_from_name("e_limit", 7), RC_E_COUNT);          /* case-sensitive */
    CU_ASSERT_EQUAL(rc_err_from_name("E_LIMIT", 5), RC_E_COUNT);          /* a prefix is not a match */
    CU_ASSERT_EQUAL(rc_err_from_name("E_LIMITS", 8), RC_E_COUNT);         /* nor a longer string */
    CU_ASSERT_EQUAL(rc_err_from_name("E_LIMIT-junk", 7), RC_E_LIMIT);     /* only len bytes count */
}

/* An inbox reply carries each group's last message as the stored map's
 * bytes; it decodes back into entries with the message decoded. */
static void test_inbox_roundtrip(void)
{
    rc_buf last;
    rc_buf_init(&last);
    rc_msg msg = { .type = RC_T_MSG, .g = rc_str_c("room"), .seq = 5, .from = rc_str_c("bob"), .ts = 1700000000005,
                   .body = rc_str_c("see you"), .body_is_str = true, .has = RC_HAS_MID, .mid = rc_str_c("m5") };
    CU_ASSERT_FATAL(rc_encode(&last, &msg) == 0);
    rc_inbox_entry e[2] = {
        { .g = rc_str_c("room"), .seq = 5, .read = 2, .unread = 3, .ts = 1700000000005, .has_last = true,
          .last_map = { (const char *)last.data + RC_FRAME_HEADER, (uint32_t)(last.len - RC_FRAME_HEADER) } },
        { .g = rc_str_c("quiet"), .seq = 0, .read = 0 },
    };
    rc_msg in = { .type = RC_T_INBOX, .has = RC_HAS_RID | RC_HAS_GROUPS, .rid = 7, .groups = e, .n_groups = 2,
                  .more = true };
    rc_buf b;
    rc_buf_init(&b);
    CU_ASSERT_FATAL(rc_encode(&b, &in) == 0);
    rc_decoder d;
    rc_decoder_init(&d);
    rc_msg out;
    CU_ASSERT_EQUAL_FATAL(rc_decode(&d, b.data + RC_FRAME_HEADER, b.len - RC_FRAME_HEADER, &out, NULL), RC_OK);
    CU_ASSERT_EQUAL(out.type, RC_T_INBOX);
    CU_ASSERT_EQUAL(out.rid, 7);
    CU_ASSERT_TRUE(out.more);
    CU_ASSERT_EQUAL_FATAL(out.n_groups, 2);
    CU_ASSERT(rc_str_eq(out.groups[0].g, rc_str_c("room")));
    CU_ASSERT_EQUAL(out.groups[0].seq, 5);
    CU_ASSERT_EQUAL(out.groups[0].read, 2);
    CU_ASSERT_EQUAL(out.groups[0].unread, 3);
    CU_ASSERT_EQUAL(out.groups[0].ts, 1700000000005);
    CU_ASSERT_FATAL(out.groups[0].has_last);
    CU_ASSERT_EQUAL(out.groups[0].last->type, RC_T_MSG);
    CU_ASSERT(rc_str_eq(out.groups[0].last->body, rc_str_c("see you")));
    CU_ASSERT(rc_str_eq(out.groups[0].last->mid, rc_str_c("m5")));
    CU_ASSERT_EQUAL(out.groups[0].last->seq, 5);
    CU_ASSERT(rc_str_eq(out.groups[1].g, rc_str_c("quiet")));
    CU_ASSERT_FALSE(out.groups[1].has_last);
    CU_ASSERT_EQUAL(out.groups[1].unread, 0);
    /* A decoded reply encodes again (its last messages from their decoded
     * form: fuzz_codec's input in regress/codec/inbox-reply-decoded-last). */
    rc_buf again;
    rc_buf_init(&again);
    CU_ASSERT_FATAL(rc_encode(&again, &out) == 0);
    rc_decoder d2;
    rc_decoder_init(&d2);
    rc_msg back;
    CU_ASSERT_EQUAL_FATAL(rc_decode(&d2, again.data + RC_FRAME_HEADER, again.len - RC_FRAME_HEADER, &back, NULL), RC_OK);
    CU_ASSERT_EQUAL_FATAL(back.n_groups, 2);
    CU_ASSERT_FATAL(back.groups[0].has_last);
    CU_ASSERT(rc_str_eq(back.groups[0].last->body, rc_str_c("see you")));
    CU_ASSERT_EQUAL(back.groups[0].ts, 1700000000005);
    CU_ASSERT_FALSE(back.groups[1].has_last);
    rc_decoder_free(&d2);
    CU_ASSERT(again.len == b.len && memcmp(again.data, b.data, b.len) == 0); /* and to the same bytes */
    rc_buf_free(&again);
    /* a server's decoder takes an inbox request only: groups is ignored */
    rc_decoder_free(&d);
    rc_decoder_init_requests(&d);
    CU_ASSERT_EQUAL_FATAL(rc_decode(&d, b.data + RC_FRAME_HEADER, b.len - RC_FRAME_HEADER, &out, NULL), RC_OK);
    CU_ASSERT_EQUAL(out.n_groups, 0);
    CU_ASSERT_FALSE(out.has & RC_HAS_GROUPS);
    rc_decoder_free(&d);
    rc_buf_free(&b);
    rc_buf_free(&last);
}

static void test_type_names(void)
{
    static const char *const want[RC_T_COUNT] = {
        "?",       "hello",  "join",   "leave", "send", "hist", "ping", "replay", "presence", "typing",
        "refresh", "publish", "read",   "inbox",  "welcome", "joined", "synced", "left", "ack", "msg", "pong",
        "err",     "bye",     "online", "offline", "refreshed", "marked", "receipt",
    };
    for (int t = RC_T_NONE; t < RC_T_COUNT; t++)
        CU_ASSERT_STRING_EQUAL(rc_type_name((rc_type)t), want[t]);
    CU_ASSERT_STRING_EQUAL(rc_type_name(RC_T_COUNT), "?");
    for (int a = RC_T_HELLO; a < RC_T_COUNT; a++)
        for (int b = a + 1; b < RC_T_COUNT; b++)
            CU_ASSERT(strcmp(rc_type_name((rc_type)a), rc_type_name((rc_type)b)) != 0);
}

static void test_str_helpers(void)
{
    CU_ASSERT_EQUAL(rc_str_c("abc").len, 3);
    CU_ASSERT_EQUAL(rc_str_c("").len, 0);
    CU_ASSERT_EQUAL(rc_str_c(NULL).len, 0);
    CU_ASSERT(rc_str_eq(rc_str_c("room"), (rc_str){ "roomy", 4 }));
    CU_ASSERT(!rc_str_eq(rc_str_c("room"), rc_str_c("roo")));
    CU_ASSERT(rc_str_eq((rc_str){ NULL, 0 }, rc_str_c("")));
}

/* A server's decoder reads a `hist` with a `msgs` key as the request it is:
 * the key is ignored, its array never decoded; a client's decoder reads the
 * same map as a reply. */
static void test_requests_ignore_reply_keys(void)
{
    enum { N = 1000 };
    static uint8_t frame[64 + N * 8];
    size_t n = 0;
    frame[n++] = 0x83; /* {t: "hist", g: "room", msgs: [N x {t: "msg"}]} */
    memcpy(frame + n, "\xa1t\xa4hist\xa1g\xa4room\xa4msgs\xdd", 20);
    n += 20;
    rc_frame_put_len(frame + n, N);
    n += 4;
    for (int i = 0; i < N; i++) {
        memcpy(frame + n, "\x81\xa1t\xa3msg", 7);
        n += 7;
    }
    rc_decoder d;
    rc_decoder_init_requests(&d);
    rc_msg m;
    const char *why = NULL;
    CU_ASSERT_EQUAL(rc_decode(&d, frame, n, &m, &why), RC_OK);
    CU_ASSERT_EQUAL(m.type, RC_T_HIST);
    CU_ASSERT(rc_str_eq(m.g, rc_str_c("room")));
    CU_ASSERT_FALSE(m.has & RC_HAS_MSGS);
    CU_ASSERT_EQUAL(m.n_msgs, 0);
    rc_decoder_free(&d);

    rc_decoder_init(&d);
    CU_ASSERT_EQUAL(rc_decode(&d, frame, n, &m, &why), RC_E_MISSING_FIELD); /* each element lacks g, seq, ... */
    rc_decoder_free(&d);
}

/* ------------------------------------------------------------------ */

static int add_tests(void)
{
    CU_pSuite s = CU_add_suite("proto_vectors", NULL, NULL);
    if (!s || !CU_add_test(s, "valid maps decode to the expected fields", test_valid_vectors) ||
        !CU_add_test(s, "invalid maps give the expected error and rid", test_invalid_vectors) ||
        !CU_add_test(s, "frame lengths are checked against max_frame", test_length_vectors))
        return -1;
    s = CU_add_suite("proto_encode", NULL, NULL);
    if (!s || !CU_add_test(s, "round trip of every request", test_roundtrip_requests) ||
        !CU_add_test(s, "round trip of every server message", test_roundtrip_server_messages) ||
        !CU_add_test(s, "frames appended to one buffer split back", test_encode_concatenated) ||
        !CU_add_test(s, "rc_encode writes what msgpack-c's packer writes", test_encode_matches_msgpack_packer) ||
        !CU_add_test(s, "encoding an invalid type fails cleanly", test_encode_rejects_bad_type) ||
        !CU_add_test(s, "rc_encode_err with and without rid", test_encode_err))
        return -1;
    s = CU_add_suite("proto_names", NULL, NULL);
    if (!s || !CU_add_test(s, "error code names", test_err_names) ||
        !CU_add_test(s, "type names", test_type_names) ||
        !CU_add_test(s, "inbox reply with last messages round trip", test_inbox_roundtrip) || !CU_add_test(s, "rc_str helpers", test_str_helpers) ||
        !CU_add_test(s, "a server's decoder ignores the keys only replies define", test_requests_ignore_reply_keys))
        return -1;
    return 0;
}

int main(void)
{
    if (load_vectors() != 0) {
        fprintf(stderr, "test_proto: FATAL: cannot load the protocol vectors\n");
        vec_file_free(&g_valid);
        vec_file_free(&g_invalid);
        vec_file_free(&g_lengths);
        return 1;
    }
    for (size_t i = 0; i < BIG_BODY; i++)
        g_big_body[i] = (char)('a' + i % 26);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    if (add_tests() != 0) {
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned f = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();

    unsigned total = g_count_valid.ran + g_count_invalid.ran + g_count_lengths.ran;
    printf("\nproto vectors: %u run (valid %u/%zu, invalid %u/%zu, lengths %u/%zu), %u passed, %u xfail\n", total,
           g_count_valid.ran, g_valid.n, g_count_invalid.ran, g_invalid.n, g_count_lengths.ran, g_lengths.n,
           g_count_valid.passed + g_count_invalid.passed + g_count_lengths.passed,
           g_count_valid.xfailed + g_count_invalid.xfailed + g_count_lengths.xfailed);
    if (total == 0 || total != g_valid.n + g_invalid.n + g_lengths.n) {
        fprintf(stderr, "test_proto: not every vector ran\n");
        f++;
    }
    vec_file_free(&g_valid);
    vec_file_free(&g_invalid);
    vec_file_free(&g_lengths);
    return f ? 1 : 0;
}
