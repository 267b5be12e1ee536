/* sl_auth: who a caller of sluice-ingest is, and what it may write.
 *
 * Authentication is on when any of these is configured (otherwise every
 * call is let in without a principal, and the service warns at start):
 *
 *   SLUICE_TLS_CLIENT_CA        client certificates, verified by TLS; the
 *                               principal is the certificate's subject
 *                               (sl_tls_call_identity)
 *   SLUICE_AUTH_JWT_PUBLIC_KEY  bearer JWTs (sl_jwt), with
 *                               SLUICE_AUTH_JWT_ISSUER / _AUDIENCE
 *   SLUICE_AUTH_TOKENS_FILE     bearer API keys (sl_apikeys)
 *
 * A call's credentials are the `authorization: Bearer <token>` metadata and
 * the TLS client certificate. A bearer token, when sent, decides: it must
 * be valid (a JWT when it has a JWT's shape and a JWT key is configured,
 * else an API key) and its subject is the principal, even on an mTLS
 * connection (the token names the application, the certificate often only
 * the host). Without a token the certificate's subject is the principal.
 * Neither: UNAUTHENTICATED, with a message saying what was missing or wrong
 * and never a secret.
 *
 * Authorization: with SLUICE_AUTH_POLICY (sl_policy) every record's type is
 * checked against the principal's patterns (PERMISSION_DENIED names the
 * principal and the type). Without authentication the principal is empty
 * and only the policy's "*" entry applies.
 *
 * Reloading: the policy, the API key file and the JWT key are read again
 * when their files change (checked at most once a second, by whichever call
 * comes first); a file that does not load is logged and the previous
 * version kept.
 *
 * A NULL sl_auth is one with nothing configured: every call is let in.
 *
 * Threads: every function is safe from any thread; checks take a read lock,
 * a reload swaps under the write lock. */
#ifndef SL_AUTH_H
#define SL_AUTH_H

#include <grpc/grpc.h>
#include <stdbool.h>
#include <stddef.h>

#include "sl_jwt.h" /* SL_PRINCIPAL_MAX */

typedef struct sl_auth_config {
    const char *client_ca;    /* SLUICE_TLS_CLIENT_CA: "" when off */
    const char *jwt_key;      /* SLUICE_AUTH_JWT_PUBLIC_KEY */
    const char *jwt_issuer;   /* SLUICE_AUTH_JWT_ISSUER */
    const char *jwt_audience; /* SLUICE_AUTH_JWT_AUDIENCE */
    const char *tokens_file;  /* SLUICE_AUTH_TOKENS_FILE */
    const char *policy_file;  /* SLUICE_AUTH_POLICY */
} sl_auth_config;

typedef struct sl_auth sl_auth;

/* Loads what cfg names (strings may be NULL or ""); NULL with err set to
 * one line naming the file at fault. */
sl_auth *sl_auth_new(const sl_auth_config *cfg, char *err, size_t errlen);
void sl_auth_free(sl_auth *a);

/* True when calls must authenticate. */
bool sl_auth_required(const sl_auth *a);

/* True when records are checked against a policy. */
bool sl_auth_has_policy(const sl_auth *a);

/* Authenticates a call: 0 with principal set ("" when authentication is
 * off), or GRPC_STATUS_UNAUTHENTICATED with why set. md is the call's
 * request metadata; call its grpc_call (for the TLS peer). */
int sl_auth_authenticate(sl_auth *a, grpc_call *call, const grpc_metadata_array *md,
                         char principal[SL_PRINCIPAL_MAX], char *why, size_t whylen);

/* Authorizes one record: 0, or GRPC_STATUS_PERMISSION_DENIED with why set
 * (naming the principal and the type). where prefixes the message
 * ("record", "records[3]"). */
int sl_auth_authorize(sl_auth *a, const char *principal, const char *type, const char *where,
                      char *why, size_t whylen);

/* The bearer token of md's authorization entry, copied into out; false
 * when there is none (or it is not "Bearer <token>"). Pure. */
bool sl_auth_bearer(const grpc_metadata_array *md, char *out, size_t outlen, bool *malformed);

#endif
