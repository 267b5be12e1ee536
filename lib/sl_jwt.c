/* sl_jwt: see sl_jwt.h.
 *
 * libjwt (1.10, Debian) verifies the signature; everything else is checked
 * here, on the claims read back as JSON with libbson, because libjwt 1.10
 * reads only integer and string claims and knows nothing of skew or
 * audiences. The key is read with OpenSSL first, to learn which algorithm
 * it is for, and handed to libjwt as a PEM public key. */
#include "sl_jwt.h"

#include <bson/bson.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_file.h"
#include "sl_time.h"

#define TOKEN_MAX 8192

/* exp and nbf of a token, as read from its claims. */
typedef struct jwt_times {
    double exp, nbf;
    bool has_exp, has_nbf;
} jwt_times;

/* One verified token, by the SHA-256 of its text. */
typedef struct jwt_cached {
    unsigned char hash[32];
    jwt_times times;
    char principal[SL_PRINCIPAL_MAX];
    bool used;
} jwt_cached;

struct sl_jwt {
    jwt_alg_t alg;       /* the one algorithm the key is for */
    unsigned char *pem;  /* the public key, PEM, for libjwt */
    int pem_len;
    char *issuer;        /* NULL: not checked */
    char *audience;      /* NULL: not checked */
    /* Verified tokens (direct-mapped, a newer one takes an older one's
     * slot), under cache_mu: the only state that changes after creation. */
    pthread_mutex_t cache_mu;
    jwt_cached *cache;
};

/* ---- the key ----------------------------------------------------------------- */

/* A public key, or the key of a certificate. */
static EVP_PKEY *key_read(const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;

    if (bio == NULL)
        return NULL;
    key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    if (key == NULL) {
        (void)BIO_reset(bio);
        cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (cert != NULL)
            key = X509_get_pubkey(cert);
    }
    X509_free(cert);
    BIO_free(bio);
    return key;
}

static jwt_alg_t key_alg(EVP_PKEY *key)
{
    char group[64];
    size_t glen = 0;

    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
        return JWT_ALG_RS256;
    case EVP_PKEY_EC:
        if (EVP_PKEY_get_group_name(key, group, sizeof(group), &glen) == 1 &&
            (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0))
            return JWT_ALG_ES256;
        return JWT_ALG_INVAL;
    default:
        return JWT_ALG_INVAL;
    }
}

/* The key as a PEM "PUBLIC KEY", the form libjwt verifies with. */
static bool key_pem(EVP_PKEY *key, sl_jwt *j)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;
    bool ok = false;

    if (bio != NULL && PEM_write_bio_PUBKEY(bio, key) == 1) {
        len = BIO_get_mem_data(bio, &data);
        j->pem = malloc((size_t)len + 1);
        if (j->pem != NULL) {
            memcpy(j->pem, data, (size_t)len);
            j->pem[len] = '\0';
            j->pem_len = (int)len;
            ok = true;
        }
    }
    BIO_free(bio);
    return ok;
}

static char *dup_or_null(const char *s)
{
    return s != NULL && *s != '\0' ? strdup(s) : NULL;
}

sl_jwt *sl_jwt_new_pem(const char *pem, size_t len, const char *issuer, const char *audience,
                       char *err, size_t errlen)
{
    EVP_PKEY *key = key_read(pem, len);
    sl_jwt *j = NULL;

    if (key == NULL) {
        snprintf(err, errlen, "not a PEM public key or certificate");
        return NULL;
    }
    j = calloc(1, sizeof(*j));
    if (j != NULL) {
        pthread_mutex_init(&j->cache_mu, NULL);
        j->cache = calloc(SL_JWT_CACHE_SLOTS, sizeof(*j->cache));
        j->alg = key_alg(key);
        j->issuer = dup_or_null(issuer);
        j->audience = dup_or_null(audience);
    }
    if (j == NULL || j->cache == NULL || !key_pem(key, j)) {
        snprintf(err, errlen, "out of memory");
        sl_jwt_free(j);
        j = NULL;
    } else if (j->alg == JWT_ALG_INVAL) {
        snprintf(err, errlen, "the key is neither RSA (RS256) nor EC P-256 (ES256)");
        sl_jwt_free(j);
        j = NULL;
    }
    EVP_PKEY_free(key);
    return j;
}

sl_jwt *sl_jwt_new(const char *key_path, const char *issuer, const char *audience, char *err,
                   size_t errlen)
{
    char why[256];
    size_t len = 0;
    char *pem = sl_file_read(key_path, 64 * 1024, &len, err, errlen);
    sl_jwt *j = NULL;

    if (pem == NULL)
        return NULL;
    j = sl_jwt_new_pem(pem, len, issuer, audience, why, sizeof(why));
    if (j == NULL)
        snprintf(err, errlen, "%s: %s", key_path, why);
    free(pem);
    return j;
}

void sl_jwt_free(sl_jwt *j)
{
    if (j == NULL)
        return;
    free(j->pem);
    free(j->issuer);
    free(j->audience);
    free(j->cache);
    pthread_mutex_destroy(&j->cache_mu);
    free(j);
}

/* ---- the token --------------------------------------------------------------- */

static bool b64url_part(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return n > 0;
}

bool sl_jwt_looks_like(const char *token)
{
    const char *d1 = strchr(token, '.'), *d2;

    if (d1 == NULL || (d2 = strchr(d1 + 1, '.')) == NULL || strchr(d2 + 1, '.') != NULL)
        return false;
    return b64url_part(token, (size_t)(d1 - token)) &&
           b64url_part(d1 + 1, (size_t)(d2 - d1 - 1)) && b64url_part(d2 + 1, strlen(d2 + 1));
}

/* A NumericDate claim: an integer or a number. */
static bool claim_time(const bson_t *claims, const char *name, double *out, bool *present)
{
    bson_iter_t it;

    *present = bson_iter_init_find(&it, claims, name);
    if (!*present)
        return true;
    if (!BSON_ITER_HOLDS_NUMBER(&it))
        return false;
    *out = bson_iter_as_double(&it);
    return true;
}

static bool claim_text_is(const bson_t *claims, const char *name, const char *want)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, claims, name) && BSON_ITER_HOLDS_UTF8(&it) &&
           strcmp(bson_iter_utf8(&it, NULL), want) == 0;
}

static bool audience_holds(const bson_t *claims, const char *want)
{
    bson_iter_t it, el;

    if (!bson_iter_init_find(&it, claims, "aud"))
        return false;
    if (BSON_ITER_HOLDS_UTF8(&it))
        return strcmp(bson_iter_utf8(&it, NULL), want) == 0;
    if (!BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &el))
        return false;
    while (bson_iter_next(&el)) {
        if (BSON_ITER_HOLDS_UTF8(&el) && strcmp(bson_iter_utf8(&el, NULL), want) == 0)
            return true;
    }
    return false;
}

/* A NumericDate as RFC 3339 text for a message. Times an int64 of
 * nanoseconds cannot hold (before 1677, after 2262) are clamped to its
 * ends: converting them would be undefined. */
static void claim_time_text(double s, char *out, size_t len)
{
    const double lo = -9223372036.0, hi = 9223372036.0;
    double clamped = s >= lo ? (s <= hi ? s : hi) : lo; /* NaN: lo */

    sl_time_rfc3339((int64_t)(clamped * 1e9), out, len);
}

/* exp and nbf at now, with the skew: checked on every use, cached or not. */
static bool times_valid(const jwt_times *t, int64_t now, char *why, size_t whylen)
{
    char at[SL_RFC3339_LEN];

    if (t->has_exp && (double)now > t->exp + SL_JWT_SKEW_S) {
        claim_time_text(t->exp, at, sizeof(at));
        snprintf(why, whylen, "token expired at %.19sZ", at);
        return false;
    }
    if (t->has_nbf && (double)now + SL_JWT_SKEW_S < t->nbf) {
        claim_time_text(t->nbf, at, sizeof(at));
        snprintf(why, whylen, "token not valid before %.19sZ", at);
        return false;
    }
    return true;
}

static bool subject_read(const bson_t *claims, char principal[SL_PRINCIPAL_MAX], char *why,
                         size_t whylen)
{
    bson_iter_t it;
    const char *sub;
    uint32_t sublen = 0;

    if (!bson_iter_init_find(&it, claims, "sub") || !BSON_ITER_HOLDS_UTF8(&it) ||
        (sub = bson_iter_utf8(&it, &sublen))[0] == '\0' || sublen >= SL_PRINCIPAL_MAX ||
        strlen(sub) != sublen) {
        snprintf(why, whylen, "token has no usable subject (sub, 1 to %d bytes)",
                 SL_PRINCIPAL_MAX - 1);
        return false;
    }
    for (uint32_t i = 0; i < sublen; i++) {
        if ((unsigned char)sub[i] < 0x20 || sub[i] == 0x7f) {
            snprintf(why, whylen, "token subject (sub) holds control characters");
            return false;
        }
    }
    memcpy(principal, sub, (size_t)sublen + 1);
    return true;
}

static bool claims_check(const sl_jwt *j, const bson_t *claims, int64_t now, jwt_times *t,
                         char principal[SL_PRINCIPAL_MAX], char *why, size_t whylen)
{
    if (!claim_time(claims, "exp", &t->exp, &t->has_exp) ||
        !claim_time(claims, "nbf", &t->nbf, &t->has_nbf)) {
        snprintf(why, whylen, "token exp or nbf is not a number");
        return false;
    }
    if (!times_valid(t, now, why, whylen))
        return false;
    if (j->issuer != NULL && !claim_text_is(claims, "iss", j->issuer)) {
        snprintf(why, whylen, "token issuer (iss) is not the configured issuer");
        return false;
    }
    if (j->audience != NULL && !audience_holds(claims, j->audience)) {
        snprintf(why, whylen, "token audience (aud) does not include the configured audience");
        return false;
    }
    return subject_read(claims, principal, why, whylen);
}

/* ---- the cache of verified tokens ------------------------------------------------ */

static void token_hash(const char *token, unsigned char out[32])
{
    unsigned int len = 0;
    if (EVP_Digest(token, strlen(token), out, &len, EVP_sha256(), NULL) != 1)
        memset(out, 0, 32);
}

/* A verified token seen before: its principal, once its times still hold.
 * The signature, issuer and audience do not change; exp and nbf are checked
 * again against now. */
static int cache_lookup(sl_jwt *j, const unsigned char hash[32], int64_t now,
                        char principal[SL_PRINCIPAL_MAX], char *why, size_t whylen)
{
    jwt_cached *c = &j->cache[(hash[0] | hash[1] << 8) % SL_JWT_CACHE_SLOTS];
    int found = 0; /* 0: not cached, 1: valid, -1: cached but expired */
    jwt_times t;

    pthread_mutex_lock(&j->cache_mu);
    if (c->used && CRYPTO_memcmp(c->hash, hash, 32) == 0) {
        t = c->times;
        memcpy(principal, c->principal, sizeof(c->principal));
        found = 1;
    }
    pthread_mutex_unlock(&j->cache_mu);
    if (found == 1 && !times_valid(&t, now, why, whylen))
        found = -1;
    return found;
}

static void cache_store(sl_jwt *j, const unsigned char hash[32], const jwt_times *t,
                        const char *principal)
{
    jwt_cached *c = &j->cache[(hash[0] | hash[1] << 8) % SL_JWT_CACHE_SLOTS];

    pthread_mutex_lock(&j->cache_mu);
    memcpy(c->hash, hash, 32);
    c->times = *t;
    snprintf(c->principal, sizeof(c->principal), "%s", principal);
    c->used = true;
    pthread_mutex_unlock(&j->cache_mu);
}

bool sl_jwt_verify(sl_jwt *j, const char *token, int64_t now,
                   char principal[SL_PRINCIPAL_MAX], char *why, size_t whylen)
{
    unsigned char hash[32];
    jwt_t *jwt = NULL;
    char *json = NULL;
    bson_t *claims = NULL;
    jwt_times times;
    bool ok = false;
    int cached;

    if (strlen(token) > TOKEN_MAX || !sl_jwt_looks_like(token)) {
        snprintf(why, whylen, "bearer token is not a JWT");
        return false;
    }
    token_hash(token, hash);
    if ((cached = cache_lookup(j, hash, now, principal, why, whylen)) != 0)
        return cached > 0;
    if (jwt_decode(&jwt, token, j->pem, j->pem_len) != 0 || jwt == NULL) {
        snprintf(why, whylen, "token signature does not verify with the configured key");
        goto done;
    }
    if (jwt_get_alg(jwt) != j->alg) {
        snprintf(why, whylen, "token algorithm %s not accepted (the key is for %s)",
                 jwt_alg_str(jwt_get_alg(jwt)), jwt_alg_str(j->alg));
        goto done;
    }
    json = jwt_get_grants_json(jwt, NULL);
    claims = json != NULL ? bson_new_from_json((const uint8_t *)json, -1, NULL) : NULL;
    if (claims == NULL) {
        snprintf(why, whylen, "token claims are not a JSON object");
        goto done;
    }
    ok = claims_check(j, claims, now, &times, principal, why, whylen);
    if (ok)
        cache_store(j, hash, &times, principal);
done:
    bson_destroy(claims);
    free(json);
    jwt_free(jwt);
    return ok;
}
