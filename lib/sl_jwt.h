/* sl_jwt: bearer tokens that are JWTs, checked against one public key.
 *
 * A token is accepted when, all of:
 *
 *   - its signature verifies (libjwt, OpenSSL) with the configured public
 *     key (PEM), and its header's alg is the one that key is for: RS256
 *     for an RSA key, ES256 for a P-256 key. Every other alg ("none",
 *     HS256, which would take the public key as a shared secret, RS512...)
 *     is refused whatever libjwt says of the signature;
 *   - exp, when present, is not more than SL_JWT_SKEW_S seconds in the past,
 *     and nbf, when present, not more than SL_JWT_SKEW_S in the future;
 *   - iss equals the configured issuer, when one is configured;
 *   - aud (a string, or an array of them) holds the configured audience,
 *     when one is configured;
 *   - sub is a non-empty string: it becomes the principal.
 *
 * A refusal is one line saying what was wrong (expired, wrong audience, bad
 * signature ...) and never the token or a claim's secret parts.
 *
 * Verifying a signature costs about half a millisecond of CPU (libjwt reads
 * the PEM key again each time), so a verified token is remembered, by the
 * SHA-256 of its text, in SL_JWT_CACHE_SLOTS slots: the same token on the
 * next call costs a hash and a look-up, and exp and nbf are still checked
 * against the time of every call. A new key (sl_auth reloads it) starts
 * with an empty cache.
 *
 * sl_jwt_verify is safe from any number of threads; the cache is the only
 * state that changes after sl_jwt_new, under its own mutex. */
#ifndef SL_JWT_H
#define SL_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sl_record.h" /* SL_PRINCIPAL_MAX */

#define SL_JWT_SKEW_S 60
#define SL_JWT_CACHE_SLOTS 1024

typedef struct sl_jwt sl_jwt;

/* Reads the public key (PEM) at key_path; issuer and audience may be NULL
 * or "" for no check. Returns NULL with err set to one line. */
sl_jwt *sl_jwt_new(const char *key_path, const char *issuer, const char *audience, char *err,
                   size_t errlen);

/* The same with the PEM in memory (for tests and key rotation). */
sl_jwt *sl_jwt_new_pem(const char *pem, size_t len, const char *issuer, const char *audience,
                       char *err, size_t errlen);

void sl_jwt_free(sl_jwt *j);

/* Checks token at now (seconds since the epoch). True with the principal
 * (sub) in principal; false with why set to one line. */
bool sl_jwt_verify(sl_jwt *j, const char *token, int64_t now,
                   char principal[SL_PRINCIPAL_MAX], char *why, size_t whylen);

/* True when token has the shape of a JWT (three base64url parts), as
 * opposed to an opaque API key. */
bool sl_jwt_looks_like(const char *token);

#endif
