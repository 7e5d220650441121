/*
 * The HS256 token verifier and minter (include/ringcast/token.h). Tokens
 * are built here independently of the code under test: the JSON by hand,
 * base64url from OpenSSL's EVP_EncodeBlock with the alphabet swapped, the
 * signature with OpenSSL's HMAC. Covers a good token, every refusal (alg
 * none, HS512, RS256, a crit header, a bad signature, expired, nbf and iat
 * in the future beyond the leeway, malformed base64url and JSON, missing
 * sub or exp, a member twice, a NUL in sub, an oversize token), rotation
 * with two secrets, and the groups claim with prefixes.
 */
#include "ringcast/token.h"

#include <CUnit/Basic.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#define SECRET "first-secret-0123456789abcdef"
#define SECRET2 "second-secret-0123456789abcdef"
#define NOW 1700000000u
#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static rc_token_keys keys_of(const char *list)
{
    rc_token_keys k;
    char err[128];
    CU_ASSERT_FATAL(rc_token_keys_parse(&k, list, err, sizeof(err)) == 0);
    return k;
}

/* base64url without padding, from OpenSSL's base64. */
static size_t b64url(const void *p, size_t n, char *out)
{
    unsigned char tmp[16384];
    CU_ASSERT_FATAL(n < sizeof(tmp) / 2);
    int len = EVP_EncodeBlock(tmp, p, (int)n);
    size_t o = 0;
    for (int i = 0; i < len; i++) {
        char c = (char)tmp[i];
        if (c == '=')
            break;
        out[o++] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    out[o] = '\0';
    return o;
}

/* header.claims.signature, signed with secret (NULL: the signature is given as sig). */
static const char *make(const char *header, const char *claims, const char *secret)
{
    static char tok[16384];
    size_t o = b64url(header, strlen(header), tok);
    tok[o++] = '.';
    o += b64url(claims, strlen(claims), tok + o);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)tok, o, mac, &mac_len);
    tok[o++] = '.';
    b64url(mac, mac_len, tok + o);
    return tok;
}

static const char *claims(const char *sub, long long iat, long long exp, const char *more)
{
    static char buf[8192];
    snprintf(buf, sizeof(buf), "{\"sub\":\"%s\",\"iat\":%lld,\"exp\":%lld%s%s}", sub, iat, exp, more ? "," : "",
             more ? more : "");
    return buf;
}

static rc_token_result verify_at(const rc_token_keys *k, const char *tok, uint64_t now, rc_token_claims *c)
{
    return rc_token_verify(k, tok, strlen(tok), now, c);
}

static rc_token_result verify(const char *tok)
{
    rc_token_keys k = keys_of(SECRET);
    rc_token_claims c;
    rc_token_result r = verify_at(&k, tok, NOW, &c);
    rc_token_claims_free(&c);
    return r;
}

static void test_good_token(void)
{
    rc_token_keys k = keys_of(SECRET);
    rc_token_claims c;
    const char *t = make(HS256, claims("alice", NOW - 10, NOW + 60, "\"aud\":\"ignored\""), SECRET);
    CU_ASSERT_EQUAL_FATAL(verify_at(&k, t, NOW, &c), RC_TOKEN_OK);
    CU_ASSERT_EQUAL(c.sub_len, 5);
    CU_ASSERT_NSTRING_EQUAL(c.sub, "alice", 5);
    CU_ASSERT_EQUAL(c.exp, NOW + 60);
    CU_ASSERT(c.groups.all);
    rc_token_claims_free(&c);
    /* header without typ, claims without iat: fine */
    t = make("{\"alg\":\"HS256\"}", "{\"exp\":1700000100,\"sub\":\"bob\"}", SECRET);
    CU_ASSERT_EQUAL(verify(t), RC_TOKEN_OK);
    /* a fractional NumericDate is allowed (RFC 7519 §2) */
    t = make(HS256, "{\"sub\":\"bob\",\"exp\":1700000100.5}", SECRET);
    CU_ASSERT_EQUAL(verify(t), RC_TOKEN_OK);
}

static void test_algorithms_refused(void)
{
    const char *c = claims("alice", NOW, NOW + 60, NULL);
    CU_ASSERT_EQUAL(verify(make("{\"alg\":\"none\",\"typ\":\"JWT\"}", c, SECRET)), RC_TOKEN_ALGORITHM);
    CU_ASSERT_EQUAL(verify(make("{\"alg\":\"HS512\"}", c, SECRET)), RC_TOKEN_ALGORITHM);
    CU_ASSERT_EQUAL(verify(make("{\"alg\":\"RS256\"}", c, SECRET)), RC_TOKEN_ALGORITHM);
    CU_ASSERT_EQUAL(verify(make("{\"alg\":\"hs256\"}", c, SECRET)), RC_TOKEN_ALGORITHM);
    CU_ASSERT_EQUAL(verify(make("{\"typ\":\"JWT\"}", c, SECRET)), RC_TOKEN_ALGORITHM);
    CU_ASSERT_EQUAL(verify(make("{\"alg\":256}", c, SECRET)), RC_TOKEN_ALGORITHM);
    CU_ASSERT_EQUAL(verify(make("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", c, SECRET)), RC_TOKEN_ALGORITHM);
    /* alg none with an empty signature, as attackers send it */
    char tok[1024];
    char *p = tok;
    p += b64url("{\"alg\":\"none\"}", 14, p);
    *p++ = '.';
    p += b64url(c, strlen(c), p);
    strcpy(p, ".");
    CU_ASSERT_EQUAL(verify(tok), RC_TOKEN_ALGORITHM);
}

static void test_signature(void)
{
    const char *c = claims("alice", NOW, NOW + 60, NULL);
    CU_ASSERT_EQUAL(verify(make(HS256, c, "not-the-server-secret-at-all")), RC_TOKEN_SIGNATURE);
    /* one bit of the signature flipped */
    char tok[1024];
    strcpy(tok, make(HS256, c, SECRET));
    char *last = tok + strlen(tok) - 2;
    *last = *last == 'A' ? 'B' : 'A';
    CU_ASSERT_EQUAL(verify(tok), RC_TOKEN_SIGNATURE);
    /* the claims changed after signing */
    strcpy(tok, make(HS256, c, SECRET));
    const char *good_sig = strrchr(tok, '.');
    char forged[1024];
    size_t o = b64url(HS256, strlen(HS256), forged);
    forged[o++] = '.';
    const char *evil = claims("admin", NOW, NOW + 60, NULL);
    o += b64url(evil, strlen(evil), forged + o);
    strcpy(forged + o, good_sig);
    CU_ASSERT_EQUAL(verify(forged), RC_TOKEN_SIGNATURE);
    /* a signature of the wrong length, an empty one */
    strcpy(tok, make(HS256, c, SECRET));
    tok[strlen(tok) - 4] = '\0';
    CU_ASSERT_EQUAL(verify(tok), RC_TOKEN_SIGNATURE);
    *strrchr(tok, '.') = '\0';
    strcat(tok, ".");
    CU_ASSERT_EQUAL(verify(tok), RC_TOKEN_SIGNATURE);
}

static void test_times(void)
{
    rc_token_keys k = keys_of(SECRET);
    rc_token_claims c;
    const char *t = make(HS256, claims("alice", NOW - 100, NOW, NULL), SECRET);
    CU_ASSERT_EQUAL(verify_at(&k, t, NOW, &c), RC_TOKEN_EXPIRED);       /* exp is the first second it is not valid */
    CU_ASSERT_EQUAL(verify_at(&k, t, NOW - 1, &c), RC_TOKEN_OK);
    rc_token_claims_free(&c);
    CU_ASSERT_EQUAL(verify_at(&k, t, NOW + 86400, &c), RC_TOKEN_EXPIRED);
    /* nbf: up to RC_TOKEN_LEEWAY_S in the future is fine, more is not */
    t = make(HS256, claims("alice", NOW, NOW + 60, "\"nbf\":1700000005"), SECRET);
    CU_ASSERT_EQUAL(verify_at(&k, t, NOW, &c), RC_TOKEN_OK);
    rc_token_claims_free(&c);
    t = make(HS256, claims("alice", NOW, NOW + 60, "\"nbf\":1700000006"), SECRET);
    CU_ASSERT_EQUAL(verify_at(&k, t, NOW, &c), RC_TOKEN_NOT_YET_VALID);
    CU_ASSERT_EQUAL(verify_at(&k, t, NOW + 1, &c), RC_TOKEN_OK);
    rc_token_claims_free(&c);
    /* iat the same way */
    t = make(HS256, claims("alice", NOW + RC_TOKEN_LEEWAY_S + 1, NOW + 60, NULL), SECRET);
    CU_ASSERT_EQUAL(verify_at(&k, t, NOW, &c), RC_TOKEN_NOT_YET_VALID);
    t = make(HS256, claims("alice", NOW + RC_TOKEN_LEEWAY_S, NOW + 60, NULL), SECRET);
    CU_ASSERT_EQUAL(verify_at(&k, t, NOW, &c), RC_TOKEN_OK);
    rc_token_claims_free(&c);
}

static void test_claims_refused(void)
{
    CU_ASSERT_EQUAL(verify(make(HS256, "{\"sub\":\"alice\"}", SECRET)), RC_TOKEN_CLAIMS); /* no exp */
    CU_ASSERT_EQUAL(verify(make(HS256, "{\"exp\":1700000100}", SECRET)), RC_TOKEN_CLAIMS); /* no sub */
    CU_ASSERT_EQUAL(verify(make(HS256, "{\"sub\":\"alice\",\"exp\":\"1700000100\"}", SECRET)), RC_TOKEN_CLAIMS);
    CU_ASSERT_EQUAL(verify(make(HS256, "{\"sub\":\"alice\",\"exp\":-1}", SECRET)), RC_TOKEN_CLAIMS);
    CU_ASSERT_EQUAL(verify(make(HS256, "{\"sub\":7,\"exp\":1700000100}", SECRET)), RC_TOKEN_CLAIMS);
    CU_ASSERT_EQUAL(verify(make(HS256, "{\"sub\":\"\",\"exp\":1700000100}", SECRET)), RC_TOKEN_CLAIMS);
    CU_ASSERT_EQUAL(verify(make(HS256, claims("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                                              NOW, NOW + 60, NULL), SECRET)),
                    RC_TOKEN_CLAIMS); /* sub of 65 bytes */
    /* \u0000 inside sub would make "alice\0x" a different user to C strings */
    CU_ASSERT_EQUAL(verify(make(HS256, claims("alice\\u0000x", NOW, NOW + 60, NULL), SECRET)), RC_TOKEN_CLAIMS);
    CU_ASSERT_EQUAL(verify(make(HS256, claims("alice", NOW, NOW + 60, "\"nbf\":\"soon\""), SECRET)), RC_TOKEN_CLAIMS);
    CU_ASSERT_EQUAL(verify(make(HS256, claims("alice", NOW, NOW + 60, "\"groups\":\"lobby\""), SECRET)),
                    RC_TOKEN_CLAIMS);
    CU_ASSERT_EQUAL(verify(make(HS256, claims("alice", NOW, NOW + 60, "\"groups\":[\"a\",7]"), SECRET)),
                    RC_TOKEN_CLAIMS);
    CU_ASSERT_EQUAL(verify(make(HS256, claims("alice", NOW, NOW + 60, "\"groups\":[\"\"]"), SECRET)),
                    RC_TOKEN_CLAIMS);
    /* a claim twice: which one counts would be the parser's whim */
    CU_ASSERT_EQUAL(verify(make(HS256, "{\"sub\":\"alice\",\"exp\":1700000100,\"sub\":\"admin\"}", SECRET)),
                    RC_TOKEN_MALFORMED);
    CU_ASSERT_EQUAL(verify(make("{\"alg\":\"HS256\",\"alg\":\"none\"}", claims("a", NOW, NOW + 60, NULL), SECRET)),
                    RC_TOKEN_MALFORMED);
    /* empty member names, twice and once (tests/fuzz/regress/token/empty-member-names) */
    CU_ASSERT_EQUAL(verify(make(HS256, "{\"\":16,\"\":\"g\"}", SECRET)), RC_TOKEN_MALFORMED);
    CU_ASSERT_EQUAL(verify(make("{\"\":1,\"alg\":\"HS256\"}", claims("a", NOW, NOW + 60, "\"\":2"), SECRET)),
                    RC_TOKEN_OK);
}

static void test_malformed(void)
{
    const char *good = make(HS256, claims("alice", NOW, NOW + 60, NULL), SECRET);
    char tok[2048];
    CU_ASSERT_EQUAL(verify(""), RC_TOKEN_MALFORMED);
    CU_ASSERT_EQUAL(verify("abc"), RC_TOKEN_MALFORMED);
    CU_ASSERT_EQUAL(verify("a.b"), RC_TOKEN_MALFORMED);
    CU_ASSERT_EQUAL(verify(".."), RC_TOKEN_MALFORMED);
    snprintf(tok, sizeof(tok), "%s.extra", good); /* four parts (JWE has five) */
    CU_ASSERT_EQUAL(verify(tok), RC_TOKEN_MALFORMED);
    /* padding, standard base64's alphabet, a space */
    char hdr[256];
    b64url(HS256, strlen(HS256), hdr);
    const char *rest = strchr(good, '.');
    snprintf(tok, sizeof(tok), "%s=%s", hdr, rest);
    CU_ASSERT_EQUAL(verify(tok), RC_TOKEN_MALFORMED);
    snprintf(tok, sizeof(tok), "%s", good);
    tok[3] = '+';
    CU_ASSERT_EQUAL(verify(tok), RC_TOKEN_MALFORMED);
    tok[3] = ' ';
    CU_ASSERT_EQUAL(verify(tok), RC_TOKEN_MALFORMED);
    /* a header that is base64url of something other than a JSON object */
    char bad[256];
    size_t o = b64url("[\"alg\",\"HS256\"]", 15, bad);
    snprintf(bad + o, sizeof(bad) - o, "%s", rest);
    CU_ASSERT_EQUAL(verify(bad), RC_TOKEN_MALFORMED);
    o = b64url("{\"alg\":\"HS256\"", 14, bad); /* cut JSON */
    snprintf(bad + o, sizeof(bad) - o, "%s", rest);
    CU_ASSERT_EQUAL(verify(bad), RC_TOKEN_MALFORMED);
    /* claims that are not JSON, properly signed */
    CU_ASSERT_EQUAL(verify(make(HS256, "{sub:alice}", SECRET)), RC_TOKEN_MALFORMED);
    CU_ASSERT_EQUAL(verify(make(HS256, "\"alice\"", SECRET)), RC_TOKEN_MALFORMED);
    /* non-zero bits after the last byte: a second spelling of the same header.
     * A 16-byte header ends in a character with 4 bits to spare. */
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *h16 = "{\"alg\":\"HS256\"} ";
    CU_ASSERT_EQUAL_FATAL(strlen(h16), 16);
    snprintf(tok, sizeof(tok), "%s", make(h16, claims("alice", NOW, NOW + 60, NULL), SECRET));
    CU_ASSERT_EQUAL(verify(tok), RC_TOKEN_OK);
    char *lastc = strchr(tok, '.') - 1;
    *lastc = abc[(strchr(abc, *lastc) - abc) + 1];
    CU_ASSERT_EQUAL(verify(tok), RC_TOKEN_MALFORMED);
}

static void test_oversize(void)
{
    static char big[RC_MAX_TOKEN + 64];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CU_ASSERT_EQUAL(verify(big), RC_TOKEN_TOO_LONG);
    /* a real token grown past the bound by its claims */
    static char pad[RC_MAX_TOKEN];
    memset(pad, 'x', sizeof(pad) - 1);
    char more[RC_MAX_TOKEN + 32];
    snprintf(more, sizeof(more), "\"pad\":\"%s\"", pad);
    CU_ASSERT_EQUAL(verify(make(HS256, claims("alice", NOW, NOW + 60, more), SECRET)), RC_TOKEN_TOO_LONG);
}

static void test_rotation(void)
{
    rc_token_keys k = keys_of(SECRET "," SECRET2);
    CU_ASSERT_EQUAL(k.n, 2);
    rc_token_claims c;
    const char *cl = claims("alice", NOW, NOW + 60, NULL);
    CU_ASSERT_EQUAL(verify_at(&k, make(HS256, cl, SECRET), NOW, &c), RC_TOKEN_OK);
    rc_token_claims_free(&c);
    CU_ASSERT_EQUAL(verify_at(&k, make(HS256, cl, SECRET2), NOW, &c), RC_TOKEN_OK);
    rc_token_claims_free(&c);
    CU_ASSERT_EQUAL(verify_at(&k, make(HS256, cl, "a-third-secret-0123456789"), NOW, &c), RC_TOKEN_SIGNATURE);
    rc_token_keys only2 = keys_of(SECRET2); /* the old secret retired */
    CU_ASSERT_EQUAL(verify_at(&only2, make(HS256, cl, SECRET), NOW, &c), RC_TOKEN_SIGNATURE);
    /* the list itself */
    rc_token_keys bad;
    char err[128];
    CU_ASSERT_EQUAL(rc_token_keys_parse(&bad, "short", err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(rc_token_keys_parse(&bad, SECRET ",", err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(rc_token_keys_parse(&bad, "", err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(bad.n, 0);
}

static bool allowed(const rc_token_claims *c, const char *g)
{
    return rc_token_group_allowed(&c->groups, rc_str_c(g));
}

static void test_groups(void)
{
    rc_token_keys k = keys_of(SECRET);
    rc_token_claims c;
    const char *t =
        make(HS256, claims("alice", NOW, NOW + 60, "\"groups\":[\"lobby\",\"team-*\",\"dm:alice:*\"]"), SECRET);
    CU_ASSERT_EQUAL_FATAL(verify_at(&k, t, NOW, &c), RC_TOKEN_OK);
    CU_ASSERT(!c.groups.all);
    CU_ASSERT_EQUAL(c.groups.n, 3);
    CU_ASSERT(allowed(&c, "lobby"));
    CU_ASSERT(!allowed(&c, "lobby2"));
    CU_ASSERT(!allowed(&c, "lobb"));
    CU_ASSERT(allowed(&c, "team-"));
    CU_ASSERT(allowed(&c, "team-red"));
    CU_ASSERT(!allowed(&c, "team"));
    CU_ASSERT(!allowed(&c, "Team-red"));
    CU_ASSERT(allowed(&c, "dm:alice:bob"));
    CU_ASSERT(!allowed(&c, "dm:bob:alice"));
    rc_token_claims_free(&c);
    /* "*" alone: every group; an empty array: none */
    CU_ASSERT_EQUAL_FATAL(verify_at(&k, make(HS256, claims("a", NOW, NOW + 60, "\"groups\":[\"*\"]"), SECRET), NOW, &c),
                          RC_TOKEN_OK);
    CU_ASSERT(allowed(&c, "anything"));
    rc_token_claims_free(&c);
    CU_ASSERT_EQUAL_FATAL(verify_at(&k, make(HS256, claims("a", NOW, NOW + 60, "\"groups\":[]"), SECRET), NOW, &c),
                          RC_TOKEN_OK);
    CU_ASSERT(!allowed(&c, "lobby"));
    rc_token_claims_free(&c);
    /* a literal '*' elsewhere is an exact character */
    CU_ASSERT_EQUAL_FATAL(verify_at(&k, make(HS256, claims("a", NOW, NOW + 60, "\"groups\":[\"a*b\"]"), SECRET), NOW, &c),
                          RC_TOKEN_OK);
    CU_ASSERT(allowed(&c, "a*b"));
    CU_ASSERT(!allowed(&c, "axb"));
    rc_token_claims_free(&c);
}

static void test_mint_roundtrip(void)
{
    rc_token_keys k = keys_of(SECRET);
    char tok[RC_MAX_TOKEN + 1], err[128];
    int n = rc_token_mint((const uint8_t *)SECRET, strlen(SECRET), "carol \"the\" user", NOW, NOW + 3600,
                          "lobby,team-*", tok, sizeof(tok), err, sizeof(err));
    CU_ASSERT_FATAL(n > 0);
    CU_ASSERT_EQUAL((size_t)n, strlen(tok));
    rc_token_claims c;
    CU_ASSERT_EQUAL_FATAL(verify_at(&k, tok, NOW, &c), RC_TOKEN_OK);
    CU_ASSERT_EQUAL(c.sub_len, strlen("carol \"the\" user"));
    CU_ASSERT_EQUAL(c.exp, NOW + 3600);
    CU_ASSERT(allowed(&c, "team-blue") && allowed(&c, "lobby") && !allowed(&c, "x"));
    rc_token_claims_free(&c);
    /* An exp above 10^15 comes back exactly (no rounding through a double's 15 digits). */
    uint64_t far = UINT64_C(7000000617000001);
    n = rc_token_mint((const uint8_t *)SECRET, strlen(SECRET), "dave", NOW, far, NULL, tok, sizeof(tok), err, sizeof(err));
    CU_ASSERT_FATAL(n > 0);
    CU_ASSERT_EQUAL_FATAL(verify_at(&k, tok, NOW, &c), RC_TOKEN_OK);
    CU_ASSERT_EQUAL(c.exp, far);
    rc_token_claims_free(&c);
    CU_ASSERT_EQUAL(rc_token_mint((const uint8_t *)SECRET, strlen(SECRET), "", NOW, NOW + 1, NULL, tok, sizeof(tok),
                                  err, sizeof(err)),
                    -1);
    CU_ASSERT_EQUAL(rc_token_mint((const uint8_t *)SECRET, strlen(SECRET), "a", NOW, NOW + 1, "a,,b", tok, sizeof(tok),
                                  err, sizeof(err)),
                    -1);
    CU_ASSERT_EQUAL(rc_token_mint((const uint8_t *)SECRET, strlen(SECRET), "a", NOW, NOW + 1, NULL, tok, 20, err,
                                  sizeof(err)),
                    -1);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("token", NULL, NULL);
    if (!s || !CU_add_test(s, "a good token", test_good_token) ||
        !CU_add_test(s, "alg none, HS512, RS256, crit: refused", test_algorithms_refused) ||
        !CU_add_test(s, "bad signatures", test_signature) ||
        !CU_add_test(s, "exp, nbf, iat and the leeway", test_times) ||
        !CU_add_test(s, "claims of the wrong shape", test_claims_refused) ||
        !CU_add_test(s, "malformed base64url and JSON", test_malformed) ||
        !CU_add_test(s, "oversize token", test_oversize) ||
        !CU_add_test(s, "rotation with two secrets", test_rotation) ||
        !CU_add_test(s, "groups claim and prefixes", test_groups) ||
        !CU_add_test(s, "minted tokens verify", test_mint_roundtrip)) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
