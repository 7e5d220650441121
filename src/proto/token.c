/*
 * HS256 tokens (include/ringcast/token.h, proto/PROTOCOL.md §6.8).
 *
 * Verification reads as little as it can before the signature is known to
 * be good: the header (for `alg`) and the three parts' shapes. The claims
 * are parsed only once a secret has signed them. JSON goes through
 * rc_json_to_msgpack, the strict reader WebSocket text uses, and the
 * MessagePack it writes is read with msgpack-c: integers come exact (exp up
 * to 2^64-1, not a double), strings with their length (a \u0000 is seen,
 * not a cut), and a member twice is seen too, where cJSON alone would
 * silently take the first.
 */
#include "ringcast/token.h"

#include <math.h>
#include <msgpack.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ringcast/json.h"

#define SIG_LEN 32u        /* HMAC-SHA256 */
#define TOKEN_ZONE 2048u   /* msgpack zone chunk for header or claims */

static const char *const result_names[RC_TOKEN_RESULTS] = {
    [RC_TOKEN_OK] = "ok",
    [RC_TOKEN_TOO_LONG] = "too_long",
    [RC_TOKEN_MALFORMED] = "malformed",
    [RC_TOKEN_ALGORITHM] = "algorithm",
    [RC_TOKEN_SIGNATURE] = "signature",
    [RC_TOKEN_CLAIMS] = "claims",
    [RC_TOKEN_EXPIRED] = "expired",
    [RC_TOKEN_NOT_YET_VALID] = "not_yet_valid",
};

const char *rc_token_result_name(rc_token_result r)
{
    return (r >= RC_TOKEN_OK && r < RC_TOKEN_RESULTS) ? result_names[r] : "?";
}

/* ---- secrets ---- */

int rc_token_keys_parse(rc_token_keys *k, const char *list, char *err, size_t errlen)
{
    memset(k, 0, sizeof(*k));
    if (!list || !*list)
        return 0;
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (k->n == RC_TOKEN_MAX_SECRETS) {
            snprintf(err, errlen, "auth_secret: at most %u secrets", RC_TOKEN_MAX_SECRETS);
            return -1;
        }
        if (n < RC_TOKEN_SECRET_MIN || n > RC_TOKEN_SECRET_MAX) {
            snprintf(err, errlen, "auth_secret: secret %u is %zu bytes; each must be %u..%u bytes", k->n + 1, n,
                     RC_TOKEN_SECRET_MIN, RC_TOKEN_SECRET_MAX);
            return -1;
        }
        memcpy(k->key[k->n], p, n);
        k->len[k->n++] = (uint32_t)n;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

/* ---- base64url (RFC 4648 §5, without padding, as RFC 7515 §2 has it) ---- */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes n characters into out (at least n * 3 / 4 bytes). Strict: only
 * the 64 characters, no padding, no length that leaves a lone character,
 * and the bits past the last byte zero (one text per byte string). Returns
 * the bytes written, or -1. */
static long b64url_decode(const char *s, size_t n, uint8_t *out)
{
    if (n % 4 == 1)
        return -1;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits && (acc & ((1u << bits) - 1)))
        return -1;
    return (long)o;
}

static size_t b64url_encode(const uint8_t *p, size_t n, char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | p[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = alphabet[(acc >> bits) & 63u];
        }
    }
    if (bits)
        out[o++] = alphabet[(acc << (6 - bits)) & 63u];
    return o;
}

/* ---- JSON objects, read as MessagePack ---- */

/* One decoded part: the MessagePack of its JSON and the map msgpack-c built. */
typedef struct part {
    rc_buf mp;
    msgpack_zone zone;
    bool zone_ready;
    msgpack_object_map map;
} part;

static void part_free(part *p)
{
    rc_buf_free(&p->mp);
    if (p->zone_ready)
        msgpack_zone_destroy(&p->zone);
    p->zone_ready = false;
}

static bool key_eq(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && memcmp(k->via.str.ptr, s, n) == 0;
}

/* No member twice, keys all strings (JSON has no other), within the bound. */
static bool members_unique(const msgpack_object_map *m)
{
    if (m->size > RC_TOKEN_MAX_MEMBERS)
        return false;
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object_str *a = &m->ptr[i].key.via.str;
        for (uint32_t j = i + 1; j < m->size; j++) {
            const msgpack_object_str *b = &m->ptr[j].key.via.str;
            if (a->size == b->size && (a->size == 0 || memcmp(a->ptr, b->ptr, a->size) == 0))
                return false; /* an empty key has no pointer to compare */
        }
    }
    return true;
}

/* Decodes one base64url part holding a JSON object into p. */
static rc_token_result part_read(part *p, const char *s, size_t n)
{
    memset(p, 0, sizeof(*p));
    rc_buf_init(&p->mp);
    uint8_t *json = malloc(n * 3 / 4 + 1);
    if (!json)
        return RC_TOKEN_MALFORMED;
    long len = b64url_decode(s, n, json);
    rc_err e = len > 0 ? rc_json_to_msgpack((const char *)json, (size_t)len, &p->mp, NULL) : RC_E_BAD_FRAME;
    free(json);
    if (e != RC_OK)
        return RC_TOKEN_MALFORMED;
    p->zone_ready = msgpack_zone_init(&p->zone, TOKEN_ZONE);
    if (!p->zone_ready)
        return RC_TOKEN_MALFORMED;
    msgpack_object obj;
    size_t off = 0;
    if (msgpack_unpack((const char *)p->mp.data, p->mp.len, &off, &p->zone, &obj) != MSGPACK_UNPACK_SUCCESS ||
        obj.type != MSGPACK_OBJECT_MAP)
        return RC_TOKEN_MALFORMED;
    p->map = obj.via.map; /* its entries live in the zone */
    return members_unique(&p->map) ? RC_TOKEN_OK : RC_TOKEN_MALFORMED;
}

static const msgpack_object *member(const msgpack_object_map *m, const char *key)
{
    for (uint32_t i = 0; i < m->size; i++)
        if (key_eq(&m->ptr[i].key, key))
            return &m->ptr[i].val;
    return NULL;
}

/* ---- the checks ---- */

static rc_token_result check_header(const msgpack_object_map *h)
{
    const msgpack_object *alg = member(h, "alg");
    if (!alg || !key_eq(alg, RC_TOKEN_ALG))
        return RC_TOKEN_ALGORITHM;
    if (member(h, "crit"))
        return RC_TOKEN_ALGORITHM; /* an extension this server cannot honour (RFC 7515 §4.1.11) */
    return RC_TOKEN_OK;
}

static rc_token_result check_signature(const rc_token_keys *k, const char *signed_part, size_t signed_len,
                                       const char *sig64, size_t sig64_len)
{
    uint8_t sig[SIG_LEN + 3];
    if (sig64_len > (SIG_LEN * 4 + 2) / 3 + 1 || b64url_decode(sig64, sig64_len, sig) != SIG_LEN)
        return RC_TOKEN_SIGNATURE;
    for (uint32_t i = 0; i < k->n; i++) {
        uint8_t mac[EVP_MAX_MD_SIZE];
        unsigned mac_len = 0;
        if (!HMAC(EVP_sha256(), k->key[i], (int)k->len[i], (const uint8_t *)signed_part, signed_len, mac, &mac_len))
            continue;
        if (mac_len == SIG_LEN && CRYPTO_memcmp(mac, sig, SIG_LEN) == 0)
            return RC_TOKEN_OK;
    }
    return RC_TOKEN_SIGNATURE;
}

/* A NumericDate (RFC 7519 §2): a non-negative number; fractions are cut. */
static bool numeric_date(const msgpack_object *v, uint64_t *out)
{
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *out = v->via.u64;
        return true;
    }
    if ((v->type == MSGPACK_OBJECT_FLOAT64 || v->type == MSGPACK_OBJECT_FLOAT32) && isfinite(v->via.f64) &&
        v->via.f64 >= 0 && v->via.f64 < 18446744073709551616.0) {
        *out = (uint64_t)v->via.f64;
        return true;
    }
    return false;
}

static bool name_ok(const msgpack_object *v, uint32_t max)
{
    return v->type == MSGPACK_OBJECT_STR && v->via.str.size >= 1 && v->via.str.size <= max &&
           !memchr(v->via.str.ptr, '\0', v->via.str.size);
}

static rc_token_result read_groups(const msgpack_object *v, rc_token_groups *out)
{
    memset(out, 0, sizeof(*out));
    if (!v) {
        out->all = true;
        return RC_TOKEN_OK;
    }
    if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size > RC_TOKEN_MAX_GROUPS)
        return RC_TOKEN_CLAIMS;
    uint32_t bytes = 0;
    for (uint32_t i = 0; i < v->via.array.size; i++) {
        if (!name_ok(&v->via.array.ptr[i], RC_MAX_GROUP + 1))
            return RC_TOKEN_CLAIMS;
        bytes += 1 + v->via.array.ptr[i].via.str.size;
    }
    if (bytes) {
        out->packed = malloc(bytes);
        if (!out->packed)
            return RC_TOKEN_CLAIMS;
    }
    for (uint32_t i = 0; i < v->via.array.size; i++) {
        const msgpack_object_str *s = &v->via.array.ptr[i].via.str;
        out->packed[out->packed_len++] = (uint8_t)s->size;
        memcpy(out->packed + out->packed_len, s->ptr, s->size);
        out->packed_len += s->size;
    }
    out->n = v->via.array.size;
    return RC_TOKEN_OK;
}

static rc_token_result check_claims(const msgpack_object_map *c, uint64_t now_s, rc_token_claims *out)
{
    const msgpack_object *sub = member(c, "sub"), *exp = member(c, "exp"), *nbf = member(c, "nbf"),
                         *iat = member(c, "iat");
    uint64_t exp_s = 0, nbf_s = 0, iat_s = 0;
    if (!sub || !name_ok(sub, RC_MAX_USER) || !exp || !numeric_date(exp, &exp_s) ||
        (nbf && !numeric_date(nbf, &nbf_s)) || (iat && !numeric_date(iat, &iat_s)))
        return RC_TOKEN_CLAIMS;
    if (now_s >= exp_s)
        return RC_TOKEN_EXPIRED;
    uint64_t late = now_s + RC_TOKEN_LEEWAY_S;
    if ((nbf && nbf_s > late) || (iat && iat_s > late))
        return RC_TOKEN_NOT_YET_VALID;
    rc_token_result r = read_groups(member(c, "groups"), &out->groups);
    if (r != RC_TOKEN_OK)
        return r;
    memcpy(out->sub, sub->via.str.ptr, sub->via.str.size);
    out->sub_len = (uint8_t)sub->via.str.size;
    out->exp = exp_s;
    return RC_TOKEN_OK;
}

rc_token_result rc_token_verify(const rc_token_keys *k, const char *token, size_t len, uint64_t now_s,
                                rc_token_claims *out)
{
    memset(out, 0, sizeof(*out));
    if (len > RC_MAX_TOKEN)
        return RC_TOKEN_TOO_LONG;
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
        return RC_TOKEN_MALFORMED;
    const char *claims64 = dot1 + 1, *sig64 = dot2 + 1;
    part header, claims;
    rc_token_result r = part_read(&header, token, (size_t)(dot1 - token));
    if (r == RC_TOKEN_OK)
        r = check_header(&header.map);
    part_free(&header);
    if (r != RC_TOKEN_OK)
        return r;
    r = check_signature(k, token, (size_t)(dot2 - token), sig64, len - (size_t)(sig64 - token));
    if (r != RC_TOKEN_OK)
        return r;
    r = part_read(&claims, claims64, (size_t)(dot2 - claims64));
    if (r == RC_TOKEN_OK)
        r = check_claims(&claims.map, now_s, out);
    part_free(&claims);
    if (r != RC_TOKEN_OK)
        rc_token_claims_free(out);
    return r;
}

void rc_token_groups_free(rc_token_groups *g)
{
    free(g->packed);
    memset(g, 0, sizeof(*g));
}

void rc_token_claims_free(rc_token_claims *c)
{
    rc_token_groups_free(&c->groups);
}

void rc_token_groups_move(rc_token_groups *dst, rc_token_groups *src)
{
    rc_token_groups_free(dst);
    *dst = *src;
    memset(src, 0, sizeof(*src));
}

bool rc_token_group_allowed(const rc_token_groups *gs, rc_str g)
{
    if (gs->all)
        return true;
    const uint8_t *p = gs->packed;
    for (uint32_t i = 0; i < gs->n; i++) {
        uint32_t n = *p++;
        const char *e = (const char *)p;
        p += n;
        if (e[n - 1] == '*') {
            if (g.len >= n - 1 && (n == 1 || memcmp(g.ptr, e, n - 1) == 0))
                return true;
        } else if (g.len == n && memcmp(g.ptr, e, n) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- minting ---- */

/* The claims as JSON: sub, iat, exp, and groups when given. */
static char *claims_json(const char *sub, uint64_t iat_s, uint64_t exp_s, const char *groups)
{
    /* iat and exp as raw decimal text: cJSON prints a number through a
     * double with 15 significant digits when it compares "equal" within a
     * relative epsilon, which rounds integers above 10^15 (a fuzz input
     * found exp 7000000617000001 minted as ...000). */
    char iat[24], exp[24];
    snprintf(iat, sizeof(iat), "%llu", (unsigned long long)iat_s);
    snprintf(exp, sizeof(exp), "%llu", (unsigned long long)exp_s);
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "sub", sub) || !cJSON_AddRawToObject(o, "iat", iat) ||
        !cJSON_AddRawToObject(o, "exp", exp)) {
        cJSON_Delete(o);
        return NULL;
    }
    if (groups) {
        cJSON *a = cJSON_AddArrayToObject(o, "groups");
        for (const char *p = groups; a && *p;) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            char name[RC_MAX_GROUP + 2];
            if (n == 0 || n >= sizeof(name)) {
                a = NULL;
                break;
            }
            memcpy(name, p, n);
            name[n] = '\0';
            cJSON *s = cJSON_CreateString(name);
            if (!s || !cJSON_AddItemToArray(a, s)) {
                cJSON_Delete(s);
                a = NULL;
            }
            p = comma ? comma + 1 : p + n;
        }
        if (!a) {
            cJSON_Delete(o);
            return NULL;
        }
    }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

int rc_token_mint(const uint8_t *key, size_t key_len, const char *sub, uint64_t iat_s, uint64_t exp_s,
                  const char *groups, char *out, size_t cap, char *err, size_t errlen)
{
    static const char header[] = "{\"alg\":\"" RC_TOKEN_ALG "\",\"typ\":\"JWT\"}";
    size_t sub_len = sub ? strlen(sub) : 0;
    if (sub_len < 1 || sub_len > RC_MAX_USER || key_len < 1 || key_len > RC_TOKEN_SECRET_MAX ||
        exp_s > (UINT64_C(1) << 53)) {
        snprintf(err, errlen, "a token needs a user of 1..%u bytes, a secret of 1..%u bytes and an exp below 2^53",
                 RC_MAX_USER, RC_TOKEN_SECRET_MAX);
        return -1;
    }
    char *claims = claims_json(sub, iat_s, exp_s, groups);
    if (!claims) {
        snprintf(err, errlen, "groups must be comma-separated names of 1..%u bytes", RC_MAX_GROUP + 1);
        return -1;
    }
    size_t hl = strlen(header), cl = strlen(claims);
    size_t need = (hl + 2) / 3 * 4 + 1 + (cl + 2) / 3 * 4 + 1 + (SIG_LEN + 2) / 3 * 4 + 1;
    if (cap < need) {
        free(claims);
        snprintf(err, errlen, "the token needs %zu bytes", need);
        return -1;
    }
    size_t o = b64url_encode((const uint8_t *)header, hl, out);
    out[o++] = '.';
    o += b64url_encode((const uint8_t *)claims, cl, out + o);
    free(claims);
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, (const uint8_t *)out, o, mac, &mac_len) || mac_len != SIG_LEN) {
        snprintf(err, errlen, "HMAC-SHA256 failed");
        return -1;
    }
    out[o++] = '.';
    o += b64url_encode(mac, SIG_LEN, out + o);
    out[o] = '\0';
    return (int)o;
}
