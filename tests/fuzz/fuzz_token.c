/*
 * libFuzzer target: the HS256 token verifier (src/proto/token.c,
 * proto/PROTOCOL.md §6.8), what a client sends in `hello` and `refresh`.
 * The first byte picks how the rest is read:
 *  - even: the rest is a token, verified as it is. Almost nothing gets past
 *    the signature this way, so this half fuzzes the splitting, base64url
 *    and the header's JSON;
 *  - odd: the rest is "HEADER\0CLAIMS", two JSON texts the target signs
 *    itself (base64url from OpenSSL's base64, HMAC from OpenSSL), so the
 *    claims reader is fuzzed behind a good signature.
 *
 * A crash, besides any sanitizer report:
 *  - a result outside rc_token_result, or a different result for the same
 *    token verified again;
 *  - an accepted token whose sub is not 1..64 bytes without 0x00, whose
 *    exp is not after the time it was checked at, or whose header's alg is
 *    not exactly HS256 (checked from the bytes here, without the verifier);
 *  - an accepted token that, one character of its signature changed, is
 *    still accepted;
 *  - an accepted token that, minted again from its claims with
 *    rc_token_mint, does not verify to the same sub and exp.
 */
#include "fuzz.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cjson/cJSON.h>

#include "ringcast/token.h"

#define FUZZ_SECRET "fuzz-secret-0123456789abcdef"
#define FUZZ_SECRET2 "fuzz-second-secret-0123456789"
#define FUZZ_NOW 1700000000u

static size_t b64url(const uint8_t *p, size_t n, char *out)
{
    static unsigned char tmp[RC_MAX_TOKEN * 2];
    if (n > RC_MAX_TOKEN)
        n = RC_MAX_TOKEN;
    int len = EVP_EncodeBlock(tmp, p, (int)n);
    size_t o = 0;
    for (int i = 0; i < len && tmp[i] != '='; i++)
        out[o++] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : (char)tmp[i];
    return o;
}

/* Signs header and claims as a token into out (at least 3 * RC_MAX_TOKEN bytes). */
static size_t sign(const uint8_t *h, size_t hn, const uint8_t *c, size_t cn, char *out)
{
    size_t o = b64url(h, hn, out);
    out[o++] = '.';
    o += b64url(c, cn, out + o);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    HMAC(EVP_sha256(), FUZZ_SECRET, (int)strlen(FUZZ_SECRET), (unsigned char *)out, o, mac, &mac_len);
    out[o++] = '.';
    o += b64url(mac, mac_len, out + o);
    return o;
}

/* The header of an accepted token must say alg HS256: decoded here with
 * OpenSSL's base64 and read with cJSON alone. */
static void check_alg(const char *tok, size_t len)
{
    const char *dot = memchr(tok, '.', len);
    FUZZ_CHECK(dot, "an accepted token has parts");
    static char std[RC_MAX_TOKEN + 4];
    static unsigned char json[RC_MAX_TOKEN];
    size_t n = (size_t)(dot - tok), i;
    for (i = 0; i < n; i++)
        std[i] = tok[i] == '-' ? '+' : tok[i] == '_' ? '/' : tok[i];
    while (i % 4)
        std[i++] = '=';
    int got = EVP_DecodeBlock(json, (const unsigned char *)std, (int)i);
    FUZZ_CHECK(got > 0, "an accepted header is base64url");
    got -= (int)(i - n); /* EVP_DecodeBlock counts the padding as zero bytes */
    cJSON *h = cJSON_ParseWithLength((const char *)json, (size_t)got);
    FUZZ_CHECK(h != NULL, "an accepted header is JSON");
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(h, "alg");
    FUZZ_CHECK(cJSON_IsString(alg) && strcmp(alg->valuestring, "HS256") == 0, "an accepted header says HS256");
    cJSON_Delete(h);
}

static rc_token_result verify(const rc_token_keys *k, const char *tok, size_t len, rc_token_claims *c)
{
    rc_token_result r = rc_token_verify(k, tok, len, FUZZ_NOW, c);
    FUZZ_CHECK(r >= RC_TOKEN_OK && r < RC_TOKEN_RESULTS, "a known result");
    rc_token_claims again;
    FUZZ_CHECK(rc_token_verify(k, tok, len, FUZZ_NOW, &again) == r, "the same token, the same result");
    rc_token_claims_free(&again);
    return r;
}

static void check_accepted(const rc_token_keys *k, char *tok, size_t len, rc_token_claims *c)
{
    FUZZ_CHECK(c->sub_len >= 1 && c->sub_len <= RC_MAX_USER && !memchr(c->sub, '\0', c->sub_len), "sub is a name");
    FUZZ_CHECK(c->exp > FUZZ_NOW, "exp is after now");
    check_alg(tok, len);
    (void)rc_token_group_allowed(&c->groups, rc_str_c("lobby"));

    char *last = tok + len - 1; /* one signature character changed */
    char was = *last;
    *last = was == 'A' ? 'Q' : 'A';
    rc_token_claims tampered;
    FUZZ_CHECK(rc_token_verify(k, tok, len, FUZZ_NOW, &tampered) != RC_TOKEN_OK, "a changed signature is refused");
    *last = was;

    if (c->exp >= (UINT64_C(1) << 53))
        return; /* rc_token_mint writes exp as a JSON number exactly only below 2^53 */
    char sub[RC_MAX_USER + 1], err[128];
    static char again[RC_MAX_TOKEN + 1];
    memcpy(sub, c->sub, c->sub_len);
    sub[c->sub_len] = '\0';
    int n = rc_token_mint((const uint8_t *)FUZZ_SECRET, strlen(FUZZ_SECRET), sub, FUZZ_NOW, c->exp, NULL, again,
                          sizeof(again), err, sizeof(err));
    if (n < 0)
        return; /* a sub whose JSON escapes outgrow RC_MAX_TOKEN */
    rc_token_claims back;
    FUZZ_CHECK(rc_token_verify(k, again, (size_t)n, FUZZ_NOW, &back) == RC_TOKEN_OK, "a minted token verifies");
    FUZZ_CHECK(back.sub_len == c->sub_len && memcmp(back.sub, c->sub, c->sub_len) == 0 && back.exp == c->exp,
               "minted claims read back the same");
    rc_token_claims_free(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static rc_token_keys keys;
    static bool ready;
    if (!ready) {
        char err[128];
        FUZZ_CHECK(rc_token_keys_parse(&keys, FUZZ_SECRET "," FUZZ_SECRET2, err, sizeof(err)) == 0, "keys");
        ready = true;
    }
    if (size < 1 || size > 2 * RC_MAX_TOKEN)
        return 0;
    static char tok[4 * RC_MAX_TOKEN];
    size_t len;
    if (data[0] % 2 == 0) {
        len = size - 1;
        memcpy(tok, data + 1, len);
    } else {
        const uint8_t *h = data + 1, *nul = memchr(h, '\0', size - 1);
        size_t hn = nul ? (size_t)(nul - h) : size - 1;
        const uint8_t *c = nul ? nul + 1 : h + hn;
        len = sign(h, hn, c, (size_t)(data + size - c), tok);
    }
    rc_token_claims claims;
    if (verify(&keys, tok, len, &claims) == RC_TOKEN_OK)
        check_accepted(&keys, tok, len, &claims);
    rc_token_claims_free(&claims);
    return 0;
}
