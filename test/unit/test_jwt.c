/* Unit tests for sl_jwt: keys generated at test time with OpenSSL, tokens
 * signed with libjwt; every refusal a client can meet, and the algorithm
 * confusion attacks (alg none, HS256 signed with the public key). */
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

#include "sl_jwt.h"
#include "unit.h"

#define NOW 1800000000L

typedef struct keypair {
    char *priv, *pub;
    size_t priv_len, pub_len;
} keypair;

static char *bio_string(BIO *bio, size_t *len)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    char *out = malloc((size_t)n + 1);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    *len = (size_t)n;
    return out;
}

static keypair keypair_make(EVP_PKEY *key)
{
    keypair kp;
    BIO *priv = BIO_new(BIO_s_mem()), *pub = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(priv, key, NULL, NULL, 0, NULL, NULL);
    PEM_write_bio_PUBKEY(pub, key);
    kp.priv = bio_string(priv, &kp.priv_len);
    kp.pub = bio_string(pub, &kp.pub_len);
    BIO_free(priv);
    BIO_free(pub);
    EVP_PKEY_free(key);
    return kp;
}

static void keypair_free(keypair *kp)
{
    free(kp->priv);
    free(kp->pub);
}

static keypair rsa, ec, other_rsa;

/* A token signed with alg and key (NULL: alg none) with the given claims
 * (JSON); the caller frees it. */
static char *token(jwt_alg_t alg, const char *key, size_t key_len, const char *claims)
{
    jwt_t *jwt = NULL;
    char *out;
    jwt_new(&jwt);
    jwt_add_grants_json(jwt, claims);
    jwt_set_alg(jwt, alg, (const unsigned char *)key, (int)key_len);
    out = jwt_encode_str(jwt);
    jwt_free(jwt);
    return out;
}

static bool check(sl_jwt *j, const char *tok, char *principal, char *why)
{
    return sl_jwt_verify(j, tok, NOW, principal, why, 256);
}

static void test_rs256_and_es256(void)
{
    char err[256], why[256], who[SL_PRINCIPAL_MAX];
    sl_jwt *jr = sl_jwt_new_pem(rsa.pub, rsa.pub_len, "https://idp", "sluice", err, sizeof(err));
    sl_jwt *je = sl_jwt_new_pem(ec.pub, ec.pub_len, NULL, NULL, err, sizeof(err));
    const char *claims = "{\"sub\":\"billing-svc\",\"iss\":\"https://idp\",\"aud\":[\"x\",\"sluice\"],"
                         "\"exp\":1800000300,\"nbf\":1799999990}";
    char *t1 = token(JWT_ALG_RS256, rsa.priv, rsa.priv_len, claims);
    char *t2 = token(JWT_ALG_ES256, ec.priv, ec.priv_len, "{\"sub\":\"audit-reader\"}");

    CHECK(jr != NULL && je != NULL);
    CHECK(sl_jwt_looks_like(t1) && !sl_jwt_looks_like("an-api-key"));
    CHECK(check(jr, t1, who, why));
    CHECK_STR(who, "billing-svc");
    CHECK(check(je, t2, who, why));
    CHECK_STR(who, "audit-reader");
    /* A key verifies only its own algorithm's tokens. */
    CHECK(!check(je, t1, who, why));
    CHECK(!check(jr, t2, who, why));
    free(t1);
    free(t2);
    sl_jwt_free(jr);
    sl_jwt_free(je);
}

static void test_refusals(void)
{
    char err[256], why[256], who[SL_PRINCIPAL_MAX];
    sl_jwt *j = sl_jwt_new_pem(rsa.pub, rsa.pub_len, "https://idp", "sluice", err, sizeof(err));
    struct {
        const char *claims, *needle;
    } cases[] = {
        {"{\"sub\":\"a\",\"iss\":\"https://idp\",\"aud\":\"sluice\",\"exp\":1799999900}", "expired"},
        {"{\"sub\":\"a\",\"iss\":\"https://idp\",\"aud\":\"sluice\",\"nbf\":1800000100}",
         "not valid before"},
        {"{\"sub\":\"a\",\"iss\":\"https://other\",\"aud\":\"sluice\"}", "issuer"},
        {"{\"sub\":\"a\",\"iss\":\"https://idp\",\"aud\":\"other\"}", "audience"},
        {"{\"sub\":\"a\",\"iss\":\"https://idp\"}", "audience"},
        {"{\"iss\":\"https://idp\",\"aud\":\"sluice\"}", "subject"},
        {"{\"sub\":\"\",\"iss\":\"https://idp\",\"aud\":\"sluice\"}", "subject"},
        {"{\"sub\":\"a\",\"iss\":\"https://idp\",\"aud\":\"sluice\",\"exp\":\"soon\"}", "number"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *t = token(JWT_ALG_RS256, rsa.priv, rsa.priv_len, cases[i].claims);
        bool ok = check(j, t, who, why);
        free(t);
        CHECK(!ok);
        CHECK(strstr(why, cases[i].needle) != NULL);
    }
    /* Within the 60 s skew: still fine. */
    char *t = token(JWT_ALG_RS256, rsa.priv, rsa.priv_len,
                    "{\"sub\":\"a\",\"iss\":\"https://idp\",\"aud\":\"sluice\",\"exp\":1799999950,"
                    "\"nbf\":1800000050}");
    CHECK(check(j, t, who, why));
    free(t);
    sl_jwt_free(j);
}

/* exp and nbf far outside what an int64 of nanoseconds holds: the refusal
 * names them clamped to that range, not converted out of range (undefined
 * behaviour, which on x86-64 turned a far-future nbf into 1677). Found by
 * fuzz_jwt (UBSan: float-cast-overflow). */
static void test_times_out_of_range(void)
{
    char err[256], why[256], who[SL_PRINCIPAL_MAX];
    sl_jwt *j = sl_jwt_new_pem(ec.pub, ec.pub_len, NULL, NULL, err, sizeof(err));
    char *t;

    CHECK(j != NULL);
    t = token(JWT_ALG_ES256, ec.priv, ec.priv_len, "{\"sub\":\"a\",\"nbf\":1e300}");
    CHECK(!check(j, t, who, why));
    CHECK_STR(why, "token not valid before 2262-04-11T23:47:16Z");
    free(t);
    t = token(JWT_ALG_ES256, ec.priv, ec.priv_len, "{\"sub\":\"a\",\"exp\":-52529347200}");
    CHECK(!check(j, t, who, why));
    CHECK_STR(why, "token expired at 1677-09-21T00:12:44Z");
    free(t);
    sl_jwt_free(j);
}

static void test_forgeries(void)
{
    char err[256], why[256], who[SL_PRINCIPAL_MAX];
    sl_jwt *j = sl_jwt_new_pem(rsa.pub, rsa.pub_len, NULL, NULL, err, sizeof(err));
    char *other = token(JWT_ALG_RS256, other_rsa.priv, other_rsa.priv_len, "{\"sub\":\"a\"}");
    char *none = token(JWT_ALG_NONE, NULL, 0, "{\"sub\":\"a\"}");
    /* HS256 "signed" with the public key as the secret: the classic
     * confusion attack on libraries that let the token pick the alg. */
    char *hs = token(JWT_ALG_HS256, rsa.pub, rsa.pub_len, "{\"sub\":\"a\"}");
    char *good = token(JWT_ALG_RS256, rsa.priv, rsa.priv_len, "{\"sub\":\"a\"}");
    char tampered[8192];

    CHECK(!check(j, other, who, why));
    CHECK(strstr(why, "signature") != NULL);
    CHECK(!check(j, none, who, why));
    CHECK(!check(j, hs, who, why));
    /* Another subject in the payload, the signature kept. */
    snprintf(tampered, sizeof(tampered), "%s", good);
    char *dot = strchr(tampered, '.');
    dot[2] = dot[2] == 'A' ? 'B' : 'A';
    CHECK(!check(j, tampered, who, why));
    CHECK(!check(j, "not.a.jwt!", who, why));
    CHECK(!check(j, "", who, why));
    CHECK(strstr(why, "not a JWT") != NULL);
    free(other);
    free(none);
    free(hs);
    free(good);
    sl_jwt_free(j);
}

static void test_bad_keys(void)
{
    char err[256];
    CHECK(sl_jwt_new_pem("nope", 4, NULL, NULL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "PEM") != NULL);
    CHECK(sl_jwt_new("/nonexistent/key.pem", NULL, NULL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "/nonexistent/key.pem") != NULL);
    /* A private key is not what the file should hold, and is refused. */
    CHECK(sl_jwt_new_pem(rsa.priv, rsa.priv_len, NULL, NULL, err, sizeof(err)) == NULL);
}

static void test_cache_keeps_time_checks(void)
{
    char err[256], why[256], who[SL_PRINCIPAL_MAX];
    sl_jwt *j = sl_jwt_new_pem(rsa.pub, rsa.pub_len, NULL, NULL, err, sizeof(err));
    char *t = token(JWT_ALG_RS256, rsa.priv, rsa.priv_len,
                    "{\"sub\":\"cached\",\"exp\":1800000100,\"nbf\":1799999900}");

    CHECK(sl_jwt_verify(j, t, NOW, who, why, sizeof(why)));
    CHECK_STR(who, "cached");
    /* The second time comes from the cache, with the same answer... */
    memset(who, 0, sizeof(who));
    CHECK(sl_jwt_verify(j, t, NOW + 10, who, why, sizeof(why)));
    CHECK_STR(who, "cached");
    /* ...and the cache does not outlive the token. */
    CHECK(!sl_jwt_verify(j, t, NOW + 100 + SL_JWT_SKEW_S + 1, who, why, sizeof(why)));
    CHECK(strstr(why, "expired") != NULL);
    CHECK(!sl_jwt_verify(j, t, NOW - 100 - SL_JWT_SKEW_S - 1, who, why, sizeof(why)));
    CHECK(strstr(why, "not valid before") != NULL);
    free(t);
    sl_jwt_free(j);
}

int main(void)
{
    rsa = keypair_make(EVP_RSA_gen(2048));
    other_rsa = keypair_make(EVP_RSA_gen(2048));
    ec = keypair_make(EVP_EC_gen("P-256"));
    TEST(test_rs256_and_es256);
    TEST(test_refusals);
    TEST(test_times_out_of_range);
    TEST(test_forgeries);
    TEST(test_bad_keys);
    TEST(test_cache_keeps_time_checks);
    keypair_free(&rsa);
    keypair_free(&other_rsa);
    keypair_free(&ec);
    return UNIT_RESULT();
}
