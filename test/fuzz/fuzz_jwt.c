/* fuzz_jwt: bearer tokens as sluice-ingest checks them (sl_jwt_verify),
 * against a fixed P-256 key (ES256), once with an issuer and audience
 * configured and once without.
 *
 * The first byte chooses what the rest is:
 *   0  a token, as a client sends it;
 *   1  the claims of a token (JSON) that the harness signs with the key's
 *      private half, so that the checks after the signature (exp, nbf,
 *      iss, aud, sub) are reached with any claims;
 *   2  the same claims signed HS256 with the public key's PEM as the HMAC
 *      secret (the algorithm confusion attack);
 *   3  the same claims with alg "none" and no signature.
 *
 * Oracles: only ES256 tokens are ever accepted; an accepted token's
 * principal is its sub claim as libjwt reads it, 1 to SL_PRINCIPAL_MAX - 1
 * bytes without control characters, and its exp (when it has one) is not
 * more than the skew in the past; a refusal says why in valid UTF-8 and
 * never quotes the token's signature. */
#include <bson/bson.h>
#include <jwt.h>

#include "fuzz.h"
#include "fuzz_key.h"
#include "sl_jwt.h"

#define NOW 1764670000 /* 2025-12-02T10:06:40Z */

static sl_jwt *strict, *open_;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];

    (void)argc;
    (void)argv;
    strict = sl_jwt_new_pem(public_pem, strlen(public_pem), "https://issuer.example", "sluice", err,
                            sizeof(err));
    open_ = sl_jwt_new_pem(public_pem, strlen(public_pem), NULL, NULL, err, sizeof(err));
    FUZZ_CHECK(strict != NULL && open_ != NULL);
    return 0;
}

/* The token for claims (JSON), signed as mode says; NULL when libjwt will
 * not make one of them. */
static char *token_for(int mode, const char *claims)
{
    jwt_t *jwt = NULL;
    char *token = NULL;
    int rc = jwt_new(&jwt);

    if (rc == 0)
        rc = jwt_add_grants_json(jwt, claims);
    if (rc == 0 && mode == 1)
        rc = jwt_set_alg(jwt, JWT_ALG_ES256, (const unsigned char *)private_pem,
                         (int)strlen(private_pem));
    if (rc == 0 && mode == 2)
        rc = jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)public_pem,
                         (int)strlen(public_pem));
    if (rc == 0 && mode == 3)
        rc = jwt_set_alg(jwt, JWT_ALG_NONE, NULL, 0);
    if (rc == 0)
        token = jwt_encode_str(jwt);
    jwt_free(jwt);
    return token;
}

/* What a token that verified says, as libjwt reads it. */
static void claims_of(const char *token, char **sub, double *exp, bool *has_exp)
{
    jwt_t *jwt = NULL;
    const char *s;
    char *e;

    *sub = NULL;
    *has_exp = false;
    FUZZ_CHECK(
        jwt_decode(&jwt, token, (const unsigned char *)public_pem, (int)strlen(public_pem)) == 0);
    if ((s = jwt_get_grant(jwt, "sub")) != NULL)
        *sub = strdup(s);
    if ((e = jwt_get_grants_json(jwt, "exp")) != NULL) {
        char *end;
        *exp = strtod(e, &end);
        *has_exp = end != e;
        free(e);
    }
    jwt_free(jwt);
}

static void verify(sl_jwt *j, const char *token, int mode)
{
    char principal[SL_PRINCIPAL_MAX], why[512] = "", *sub = NULL;
    const char *sig = strrchr(token, '.');
    double exp = 0;
    bool has_exp;
    size_t n;

    if (!sl_jwt_verify(j, token, NOW, principal, why, sizeof(why))) {
        FUZZ_CHECK(why[0] != '\0' && bson_utf8_validate(why, strlen(why), false));
        if (sig != NULL && strlen(sig + 1) >= 8)
            FUZZ_CHECK(strstr(why, sig + 1) == NULL);
        return;
    }
    FUZZ_CHECK(mode == 0 || mode == 1);
    n = strlen(principal);
    FUZZ_CHECK(n > 0 && n < SL_PRINCIPAL_MAX);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)principal[i] >= 0x20 && principal[i] != 0x7f);
    claims_of(token, &sub, &exp, &has_exp);
    FUZZ_CHECK(sub != NULL && strcmp(sub, principal) == 0);
    if (has_exp)
        FUZZ_CHECK(NOW <= exp + SL_JWT_SKEW_S);
    free(sub);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    int mode = fuzz_u8(&in) & 3;
    char *text, *token;

    if (size > 16384)
        return 0;
    text = fuzz_strndup(in.p, in.n);
    token = mode == 0 ? text : token_for(mode, text);
    if (token != NULL) {
        verify(strict, token, mode);
        verify(open_, token, mode);
    }
    if (token != text)
        free(token);
    free(text);
    return 0;
}
