/* sl_tls: see sl_tls.h. */
#include "sl_tls.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_file.h"
#include "sl_log.h"
#include "sl_time.h"

#define PEM_MAX (1 << 20)
#define CHECK_EVERY_MS 1000

/* One version of the three files, as read. */
typedef struct tls_files {
    char *cert, *key, *ca; /* ca NULL without client certificates */
    sl_file_stamp cert_st, key_st, ca_st;
} tls_files;

struct sl_tls {
    char *cert_path, *key_path, *ca_path;
    pthread_mutex_t mu;
    tls_files cur;   /* what the server uses now */
    bool handed;     /* the fetcher has handed cur to gRPC */
    int64_t last_check_ms;
};

static void files_free(tls_files *f)
{
    free(f->cert);
    if (f->key != NULL)
        memset(f->key, 0, strlen(f->key));
    free(f->key);
    free(f->ca);
    memset(f, 0, sizeof(*f));
}

/* The private key in key belongs to the first certificate in cert. */
static bool pair_matches(const char *cert, const char *key, char *err, size_t errlen)
{
    BIO *cb = BIO_new_mem_buf(cert, -1), *kb = BIO_new_mem_buf(key, -1);
    X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
    EVP_PKEY *k = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    bool ok = false;

    if (x == NULL)
        snprintf(err, errlen, "no PEM certificate in the certificate file");
    else if (k == NULL)
        snprintf(err, errlen, "no PEM private key in the key file");
    else if (X509_check_private_key(x, k) != 1)
        snprintf(err, errlen, "the private key does not belong to the certificate");
    else
        ok = true;
    EVP_PKEY_free(k);
    X509_free(x);
    BIO_free(cb);
    BIO_free(kb);
    return ok;
}

static bool ca_valid(const char *ca)
{
    BIO *b = BIO_new_mem_buf(ca, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    bool ok = x != NULL;
    X509_free(x);
    BIO_free(b);
    return ok;
}

static char *read_stamped(const char *path, sl_file_stamp *st, char *err, size_t errlen)
{
    size_t len;
    if (!sl_file_stamp_of(path, st)) {
        snprintf(err, errlen, "%s: cannot be read", path);
        return NULL;
    }
    return sl_file_read(path, PEM_MAX, &len, err, errlen);
}

/* Reads and checks the three files into f. */
static bool files_load(const sl_tls *t, tls_files *f, char *err, size_t errlen)
{
    char why[256];

    memset(f, 0, sizeof(*f));
    f->cert = read_stamped(t->cert_path, &f->cert_st, err, errlen);
    f->key = f->cert ? read_stamped(t->key_path, &f->key_st, err, errlen) : NULL;
    if (f->key != NULL && t->ca_path != NULL)
        f->ca = read_stamped(t->ca_path, &f->ca_st, err, errlen);
    if (f->key == NULL || (t->ca_path != NULL && f->ca == NULL))
        goto fail;
    if (!pair_matches(f->cert, f->key, why, sizeof(why))) {
        snprintf(err, errlen, "%s and %s: %s", t->cert_path, t->key_path, why);
        goto fail;
    }
    if (f->ca != NULL && !ca_valid(f->ca)) {
        snprintf(err, errlen, "%s: no PEM certificate", t->ca_path);
        goto fail;
    }
    return true;
fail:
    files_free(f);
    return false;
}

static bool files_changed(const sl_tls *t)
{
    return sl_file_changed(t->cert_path, &t->cur.cert_st) ||
           sl_file_changed(t->key_path, &t->cur.key_st) ||
           (t->ca_path != NULL && sl_file_changed(t->ca_path, &t->cur.ca_st));
}

static char *dup_or_null(const char *s)
{
    return s != NULL && *s != '\0' ? strdup(s) : NULL;
}

sl_tls *sl_tls_new(const char *cert, const char *key, const char *client_ca, char *err,
                   size_t errlen)
{
    sl_tls *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->cert_path = strdup(cert);
    t->key_path = strdup(key);
    t->ca_path = dup_or_null(client_ca);
    pthread_mutex_init(&t->mu, NULL);
    if (t->cert_path == NULL || t->key_path == NULL ||
        (client_ca != NULL && *client_ca != '\0' && t->ca_path == NULL)) {
        snprintf(err, errlen, "out of memory");
        sl_tls_free(t);
        return NULL;
    }
    if (!files_load(t, &t->cur, err, errlen)) {
        sl_tls_free(t);
        return NULL;
    }
    t->last_check_ms = sl_time_mono_ms();
    return t;
}

void sl_tls_free(sl_tls *t)
{
    if (t == NULL)
        return;
    files_free(&t->cur);
    pthread_mutex_destroy(&t->mu);
    free(t->cert_path);
    free(t->key_path);
    free(t->ca_path);
    free(t);
}

bool sl_tls_mutual(const sl_tls *t)
{
    return t->ca_path != NULL;
}

static grpc_ssl_server_certificate_config *config_of(const tls_files *f)
{
    grpc_ssl_pem_key_cert_pair pair = {f->key, f->cert};
    /* The gRPC core (1.51) asserts on a fetched config without client
     * roots, even when it asks for no client certificate; its own chain
     * serves as roots then, never consulted. */
    return grpc_ssl_server_certificate_config_create(f->ca != NULL ? f->ca : f->cert, &pair, 1);
}

/* gRPC's threads, once at start and then on every new connection. */
static grpc_ssl_certificate_config_reload_status fetch(void *closure,
                                                       grpc_ssl_server_certificate_config **config)
{
    sl_tls *t = closure;
    grpc_ssl_certificate_config_reload_status status = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    int64_t now = sl_time_mono_ms();
    tls_files next;
    char err[512];

    pthread_mutex_lock(&t->mu);
    if (!t->handed) {
        *config = config_of(&t->cur);
        t->handed = true;
        status = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
    } else if (now - t->last_check_ms >= CHECK_EVERY_MS) {
        t->last_check_ms = now;
        if (files_changed(t)) {
            if (files_load(t, &next, err, sizeof(err))) {
                files_free(&t->cur);
                t->cur = next;
                *config = config_of(&t->cur);
                status = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
                sl_log(SL_LOG_INFO, "TLS certificate files changed: reloaded (%s)", t->cert_path);
            } else {
                /* Mark this version seen so the error is not logged per
                 * connection; a later change is tried again. */
                sl_file_stamp_of(t->cert_path, &t->cur.cert_st);
                sl_file_stamp_of(t->key_path, &t->cur.key_st);
                if (t->ca_path != NULL)
                    sl_file_stamp_of(t->ca_path, &t->cur.ca_st);
                sl_log(SL_LOG_ERROR, "TLS certificate files changed but do not load, keeping "
                       "the previous ones: %s", err);
            }
        }
    }
    pthread_mutex_unlock(&t->mu);
    return status;
}

grpc_server_credentials *sl_tls_server_credentials(sl_tls *t)
{
    grpc_ssl_client_certificate_request_type req =
        t->ca_path != NULL ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                           : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
    grpc_ssl_server_credentials_options *o =
        grpc_ssl_server_credentials_create_options_using_config_fetcher(req, fetch, t);
    return o != NULL ? grpc_ssl_server_credentials_create_with_options(o) : NULL;
}

/* ---- identity ------------------------------------------------------------ */

static bool copy_name(const unsigned char *s, int len, char out[SL_PRINCIPAL_MAX])
{
    if (s == NULL || len <= 0 || len >= SL_PRINCIPAL_MAX || memchr(s, '\0', (size_t)len))
        return false;
    for (int i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f)
            return false;
    }
    memcpy(out, s, (size_t)len);
    out[len] = '\0';
    return true;
}

/* The first SAN of kind (GEN_URI, GEN_DNS). */
static bool san_first(X509 *x, int kind, char out[SL_PRINCIPAL_MAX])
{
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    bool found = false;

    for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names) && !found; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        if (g->type == kind) {
            const ASN1_IA5STRING *s = kind == GEN_URI ? g->d.uniformResourceIdentifier : g->d.dNSName;
            found = copy_name(ASN1_STRING_get0_data(s), ASN1_STRING_length(s), out);
        }
    }
    GENERAL_NAMES_free(names);
    return found;
}

static bool subject_cn(X509 *x, char out[SL_PRINCIPAL_MAX])
{
    X509_NAME *name = X509_get_subject_name(x);
    int at = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    unsigned char *utf8 = NULL;
    int len;
    bool ok;

    if (at < 0)
        return false;
    len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at)));
    ok = copy_name(utf8, len, out);
    OPENSSL_free(utf8);
    return ok;
}

bool sl_tls_identity_from_pem(const char *pem, size_t len, char out[SL_PRINCIPAL_MAX])
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    bool ok = x != NULL && (san_first(x, GEN_URI, out) || san_first(x, GEN_DNS, out) ||
                            subject_cn(x, out));
    X509_free(x);
    BIO_free(b);
    return ok;
}

bool sl_tls_call_identity(grpc_call *call, char out[SL_PRINCIPAL_MAX])
{
    grpc_auth_context *ctx = grpc_call_auth_context(call);
    grpc_auth_property_iterator it;
    const grpc_auth_property *p;
    bool ok = false;

    if (ctx == NULL)
        return false;
    it = grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_PEM_CERT_PROPERTY_NAME);
    p = grpc_auth_property_iterator_next(&it);
    if (p != NULL && p->value != NULL)
        ok = sl_tls_identity_from_pem(p->value, p->value_length, out);
    grpc_auth_context_release(ctx);
    return ok;
}
