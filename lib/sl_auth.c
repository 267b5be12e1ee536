/* sl_auth: see sl_auth.h.
 *
 * The policy, the API key hashes and the JWT key each live in a reloadable:
 * the file's path and stamp, and the object loaded from it. Checks read the
 * objects under the read lock; a reload builds the new object with no lock
 * held, swaps it in under the write lock, and frees the old one after. */
#include "sl_auth.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sl_apikeys.h"
#include "sl_file.h"
#include "sl_log.h"
#include "sl_policy.h"
#include "sl_time.h"
#include "sl_tls.h"

#define RELOAD_EVERY_MS 1000
#define TOKEN_MAX 8192

typedef void *(*load_fn)(const sl_auth *a, const char *path, char *err, size_t errlen);
typedef void (*free_fn)(void *obj);

typedef struct reloadable {
    const char *what; /* for logs: "policy", ... */
    char *path;       /* NULL: not configured */
    sl_file_stamp stamp;
    void *obj;
    load_fn load;
    free_fn free;
} reloadable;

struct sl_auth {
    bool mutual; /* client certificates required by TLS */
    char *jwt_issuer, *jwt_audience;
    reloadable policy, apikeys, jwt;
    pthread_rwlock_t lock;    /* guards the objects */
    pthread_mutex_t reloading; /* one reload at a time */
    _Atomic int64_t last_check_ms;
};

/* ---- loaders --------------------------------------------------------------- */

static void *policy_load(const sl_auth *a, const char *path, char *err, size_t errlen)
{
    (void)a;
    return sl_policy_load(path, err, errlen);
}

static void policy_free(void *p)
{
    sl_policy_free(p);
}

static void *apikeys_load(const sl_auth *a, const char *path, char *err, size_t errlen)
{
    (void)a;
    return sl_apikeys_load(path, err, errlen);
}

static void apikeys_free(void *k)
{
    sl_apikeys_free(k);
}

static void *jwt_load(const sl_auth *a, const char *path, char *err, size_t errlen)
{
    return sl_jwt_new(path, a->jwt_issuer, a->jwt_audience, err, errlen);
}

static void jwt_free(void *j)
{
    sl_jwt_free(j);
}

/* ---- life ------------------------------------------------------------------ */

static char *dup_or_null(const char *s)
{
    return s != NULL && *s != '\0' ? strdup(s) : NULL;
}

static bool reloadable_init(sl_auth *a, reloadable *r, const char *what, const char *path,
                            load_fn load, free_fn fr, char *err, size_t errlen)
{
    r->what = what;
    r->load = load;
    r->free = fr;
    r->path = dup_or_null(path);
    if (r->path == NULL)
        return true;
    if (!sl_file_stamp_of(r->path, &r->stamp)) {
        snprintf(err, errlen, "%s: cannot be read", r->path);
        return false;
    }
    r->obj = load(a, r->path, err, errlen);
    return r->obj != NULL;
}

static void reloadable_free(reloadable *r)
{
    if (r->obj != NULL)
        r->free(r->obj);
    free(r->path);
}

sl_auth *sl_auth_new(const sl_auth_config *cfg, char *err, size_t errlen)
{
    sl_auth *a = calloc(1, sizeof(*a));

    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_rwlock_init(&a->lock, NULL);
    pthread_mutex_init(&a->reloading, NULL);
    a->mutual = cfg->client_ca != NULL && cfg->client_ca[0] != '\0';
    a->jwt_issuer = dup_or_null(cfg->jwt_issuer);
    a->jwt_audience = dup_or_null(cfg->jwt_audience);
    if (!reloadable_init(a, &a->policy, "policy", cfg->policy_file, policy_load, policy_free,
                         err, errlen) ||
        !reloadable_init(a, &a->apikeys, "API key file", cfg->tokens_file, apikeys_load,
                         apikeys_free, err, errlen) ||
        !reloadable_init(a, &a->jwt, "JWT public key", cfg->jwt_key, jwt_load, jwt_free, err,
                         errlen)) {
        sl_auth_free(a);
        return NULL;
    }
    atomic_store(&a->last_check_ms, sl_time_mono_ms());
    return a;
}

void sl_auth_free(sl_auth *a)
{
    if (a == NULL)
        return;
    reloadable_free(&a->policy);
    reloadable_free(&a->apikeys);
    reloadable_free(&a->jwt);
    free(a->jwt_issuer);
    free(a->jwt_audience);
    pthread_mutex_destroy(&a->reloading);
    pthread_rwlock_destroy(&a->lock);
    free(a);
}

bool sl_auth_required(const sl_auth *a)
{
    return a != NULL && (a->mutual || a->jwt.path != NULL || a->apikeys.path != NULL);
}

bool sl_auth_has_policy(const sl_auth *a)
{
    return a != NULL && a->policy.path != NULL;
}

/* ---- reloading ----------------------------------------------------------------- */

static void reload_one(sl_auth *a, reloadable *r)
{
    char err[512];
    void *obj, *old;

    if (r->path == NULL || !sl_file_changed(r->path, &r->stamp))
        return;
    sl_file_stamp_of(r->path, &r->stamp); /* this version is seen, loaded or not */
    obj = r->load(a, r->path, err, sizeof(err));
    if (obj == NULL) {
        sl_log(SL_LOG_ERROR, "%s changed but does not load; keeping the previous one: %s",
               r->what, err);
        return;
    }
    pthread_rwlock_wrlock(&a->lock);
    old = r->obj;
    r->obj = obj;
    pthread_rwlock_unlock(&a->lock);
    r->free(old);
    sl_log(SL_LOG_INFO, "%s %s changed: reloaded", r->what, r->path);
}

/* At most once every RELOAD_EVERY_MS, by whichever caller comes first. */
static void maybe_reload(sl_auth *a)
{
    int64_t now = sl_time_mono_ms(), last = atomic_load(&a->last_check_ms);

    if (now - last < RELOAD_EVERY_MS || pthread_mutex_trylock(&a->reloading) != 0)
        return;
    atomic_store(&a->last_check_ms, now);
    reload_one(a, &a->policy);
    reload_one(a, &a->apikeys);
    reload_one(a, &a->jwt);
    pthread_mutex_unlock(&a->reloading);
}

/* ---- authentication ------------------------------------------------------------- */

bool sl_auth_bearer(const grpc_metadata_array *md, char *out, size_t outlen, bool *malformed)
{
    *malformed = false;
    for (size_t i = 0; md != NULL && i < md->count; i++) {
        const grpc_slice *k = &md->metadata[i].key, *v = &md->metadata[i].value;
        size_t vlen = GRPC_SLICE_LENGTH(*v);
        const char *val = (const char *)GRPC_SLICE_START_PTR(*v);

        if (GRPC_SLICE_LENGTH(*k) != 13 ||
            strncasecmp((const char *)GRPC_SLICE_START_PTR(*k), "authorization", 13) != 0)
            continue;
        if (vlen < 8 || strncasecmp(val, "Bearer ", 7) != 0 || vlen - 7 >= outlen ||
            memchr(val, '\0', vlen) != NULL) {
            *malformed = true;
            return false;
        }
        memcpy(out, val + 7, vlen - 7);
        out[vlen - 7] = '\0';
        return true;
    }
    return false;
}

/* Checks a bearer token with whatever token method fits it. */
static bool token_check(sl_auth *a, const char *token, char *principal, char *why, size_t whylen)
{
    bool ok = false;

    pthread_rwlock_rdlock(&a->lock);
    if (a->jwt.obj != NULL && sl_jwt_looks_like(token)) {
        ok = sl_jwt_verify(a->jwt.obj, token, sl_time_now_ns() / 1000000000LL, principal, why,
                           whylen);
    } else if (a->apikeys.obj != NULL) {
        ok = sl_apikeys_check(a->apikeys.obj, token, principal);
        if (!ok)
            snprintf(why, whylen, "bearer token is not a known API key%s",
                     a->jwt.obj != NULL ? " and not a JWT" : "");
    } else if (a->jwt.obj != NULL) {
        snprintf(why, whylen, "bearer token is not a JWT");
    } else {
        snprintf(why, whylen, "bearer tokens are not accepted: authenticate with a client "
                              "certificate");
    }
    pthread_rwlock_unlock(&a->lock);
    return ok;
}

static const char *methods(const sl_auth *a)
{
    bool token = a->jwt.path != NULL || a->apikeys.path != NULL;
    if (token && a->mutual)
        return "an authorization: Bearer <token> metadata entry or a client certificate";
    return token ? "an authorization: Bearer <token> metadata entry" : "a client certificate";
}

int sl_auth_authenticate(sl_auth *a, grpc_call *call, const grpc_metadata_array *md,
                         char principal[SL_PRINCIPAL_MAX], char *why, size_t whylen)
{
    char token[TOKEN_MAX + 1];
    bool malformed, ok;

    principal[0] = '\0';
    if (!sl_auth_required(a))
        return 0;
    maybe_reload(a);
    if (sl_auth_bearer(md, token, sizeof(token), &malformed)) {
        ok = token_check(a, token, principal, why, whylen);
        OPENSSL_cleanse(token, sizeof(token));
        return ok ? 0 : GRPC_STATUS_UNAUTHENTICATED;
    }
    if (malformed) {
        snprintf(why, whylen, "authorization metadata must be \"Bearer <token>\" (at most %d "
                              "bytes of token)", TOKEN_MAX);
        return GRPC_STATUS_UNAUTHENTICATED;
    }
    if (a->mutual && call != NULL && sl_tls_call_identity(call, principal))
        return 0;
    snprintf(why, whylen, "missing credentials: send %s", methods(a));
    return GRPC_STATUS_UNAUTHENTICATED;
}

/* ---- authorization -------------------------------------------------------------- */

int sl_auth_authorize(sl_auth *a, const char *principal, const char *type, const char *where,
                      char *why, size_t whylen)
{
    bool allowed;

    if (!sl_auth_has_policy(a))
        return 0;
    maybe_reload(a);
    pthread_rwlock_rdlock(&a->lock);
    allowed = sl_policy_allows(a->policy.obj, principal, type);
    pthread_rwlock_unlock(&a->lock);
    if (allowed)
        return 0;
    if (principal[0] == '\0')
        snprintf(why, whylen, "%s.type: unauthenticated callers may not write records of type "
                 "\"%s\"", where, type);
    else
        snprintf(why, whylen, "%s.type: principal \"%s\" may not write records of type \"%s\"",
                 where, principal, type);
    return GRPC_STATUS_PERMISSION_DENIED;
}
