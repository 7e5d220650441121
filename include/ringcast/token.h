/*
 * Signed session tokens (proto/PROTOCOL.md §6.8): JSON Web Tokens (RFC 7519,
 * compact form) signed with HMAC-SHA256, "HS256" (RFC 7518 §3.2), and
 * nothing else.
 *
 * The server checks the token a client gives in `hello` and `refresh`
 * against every secret of `auth_secret` (rc_token_verify); `ringcast token`
 * and the tests make them (rc_token_mint). The HMAC is OpenSSL's, the
 * signature comparison CRYPTO_memcmp (constant time), the JSON of header
 * and claims is read by the strict RFC 8259 reader of the WebSocket text
 * path (include/ringcast/json.h, over cJSON). Pure functions: no I/O, no
 * state beyond what the caller passes.
 *
 * What a token must be, in the order it is checked (the first failure is
 * the result):
 *   - at most RC_MAX_TOKEN bytes, three base64url parts (RFC 7515 §2: no
 *     padding, no other byte), header and claims each one JSON object of
 *     at most RC_TOKEN_MAX_MEMBERS members, no member twice;
 *   - header `alg` exactly "HS256" (`none`, HS512, RS256, ... refused),
 *     no `crit`;
 *   - the signature: 32 bytes, equal to HMAC-SHA256 of "header.claims"
 *     with one of the secrets;
 *   - claims: `sub` a string of 1..RC_MAX_USER bytes without 0x00, `exp` a
 *     number (required), `nbf` and `iat` numbers if present, `groups` an
 *     array of at most RC_TOKEN_MAX_GROUPS strings of 1..RC_MAX_GROUP + 1
 *     bytes without 0x00 if present; other claims are ignored;
 *   - time: now < exp; nbf <= now + RC_TOKEN_LEEWAY_S; iat <= now +
 *     RC_TOKEN_LEEWAY_S.
 */
#ifndef RINGCAST_TOKEN_H
#define RINGCAST_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcast/proto.h"

#define RC_TOKEN_LEEWAY_S 5u       /* seconds of clock difference allowed for nbf and iat */
#define RC_TOKEN_MAX_SECRETS 8u    /* secrets in auth_secret (comma-separated, for rotation) */
#define RC_TOKEN_SECRET_MAX 256u   /* bytes of one secret */
#define RC_TOKEN_SECRET_MIN 16u    /* bytes of one secret at least: a short HMAC key is guessable */
#define RC_TOKEN_MAX_GROUPS 256u   /* entries of the groups claim */
#define RC_TOKEN_MAX_MEMBERS 64u   /* members of the header or the claims object */
#define RC_TOKEN_ALG "HS256"

/* Why a token was refused; rc_token_result_name gives the metric label. */
typedef enum rc_token_result {
    RC_TOKEN_OK = 0,
    RC_TOKEN_TOO_LONG,      /* more than RC_MAX_TOKEN bytes */
    RC_TOKEN_MALFORMED,     /* not three base64url parts of JSON objects, a member twice, too many members */
    RC_TOKEN_ALGORITHM,     /* alg other than HS256 (none included), or a crit header */
    RC_TOKEN_SIGNATURE,     /* no secret gives this signature */
    RC_TOKEN_CLAIMS,        /* sub, exp, nbf, iat or groups missing where required or of the wrong shape */
    RC_TOKEN_EXPIRED,       /* now >= exp */
    RC_TOKEN_NOT_YET_VALID, /* nbf or iat later than now + leeway */
    RC_TOKEN_RESULTS
} rc_token_result;

/* The secrets tokens may be signed with. */
typedef struct rc_token_keys {
    uint32_t n;
    uint32_t len[RC_TOKEN_MAX_SECRETS];
    uint8_t key[RC_TOKEN_MAX_SECRETS][RC_TOKEN_SECRET_MAX];
} rc_token_keys;

/* The groups a token allows: all of them, or a list of names and prefixes
 * (an entry ending in '*' matches every group that starts with the rest). */
typedef struct rc_token_groups {
    bool all;              /* no groups claim: every group */
    uint32_t n;            /* entries */
    uint8_t *packed;       /* n entries, each one length byte then its bytes; malloc'd, NULL when n == 0 */
    uint32_t packed_len;
} rc_token_groups;

/* What a valid token says. */
typedef struct rc_token_claims {
    char sub[RC_MAX_USER];
    uint8_t sub_len;
    uint64_t exp;          /* unix seconds */
    rc_token_groups groups;
} rc_token_claims;

const char *rc_token_result_name(rc_token_result r); /* "malformed", "signature", ... ("ok") */

/* Reads a comma-separated list of secrets (auth_secret). "" gives n == 0
 * (no checking). 0, or -1 with a message in err: an empty entry, more than
 * RC_TOKEN_MAX_SECRETS, one shorter than RC_TOKEN_SECRET_MIN or longer than
 * RC_TOKEN_SECRET_MAX bytes. */
int rc_token_keys_parse(rc_token_keys *k, const char *list, char *err, size_t errlen);

/* Checks the len bytes at token as above at unix time now_s. On
 * RC_TOKEN_OK *out holds the claims (free them with rc_token_claims_free);
 * otherwise *out holds nothing to free. */
rc_token_result rc_token_verify(const rc_token_keys *k, const char *token, size_t len, uint64_t now_s,
                                rc_token_claims *out);
void rc_token_claims_free(rc_token_claims *c);

/* Moves src's groups into dst (dst's are freed first); src allows nothing after. */
void rc_token_groups_move(rc_token_groups *dst, rc_token_groups *src);
void rc_token_groups_free(rc_token_groups *g);
/* True when the groups allow g. */
bool rc_token_group_allowed(const rc_token_groups *gs, rc_str g);

/*
 * Writes an HS256 token for sub, valid from iat_s until exp_s, as a C
 * string into out (cap bytes). groups is NULL (no claim: every group) or a
 * comma-separated list ("" is an empty claim: no group). Returns the length,
 * or -1 with a message in err (a bad argument, cap too small, no memory).
 */
int rc_token_mint(const uint8_t *key, size_t key_len, const char *sub, uint64_t iat_s, uint64_t exp_s,
                  const char *groups, char *out, size_t cap, char *err, size_t errlen);

#endif
