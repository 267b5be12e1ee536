/* sl_nats: see sl_nats.h. */
#include "sl_nats.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const schemes[] = {"nats://", "tls://", "ws://", "wss://"};

/* Where the part after the scheme starts, or url itself without one. */
static const char *after_scheme(const char *url)
{
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t n = strlen(schemes[i]);
        if (strncasecmp(url, schemes[i], n) == 0)
            return url + n;
    }
    return url;
}

static bool port_valid(const char *p)
{
    long v = 0;
    if (*p == '\0')
        return false;
    for (; *p != '\0'; p++) {
        if (!isdigit((unsigned char)*p))
            return false;
        v = v * 10 + (*p - '0');
        if (v > 65535)
            return false;
    }
    return v > 0;
}

static bool host_char(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_';
}

/* host[:port], host an IPv6 literal in brackets or a name/IPv4 address. */
static bool hostport_valid(const char *hp)
{
    const char *p = hp, *colon;

    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (close == NULL || close == p + 1)
            return false;
        p = close + 1;
        return *p == '\0' || (*p == ':' && port_valid(p + 1));
    }
    colon = strchr(p, ':');
    for (const char *q = p; q != (colon ? colon : p + strlen(p)); q++) {
        if (!host_char(*q))
            return false;
    }
    if (colon == p || *p == '\0')
        return false;
    return colon == NULL || port_valid(colon + 1);
}

/* One entry of the list, already trimmed. */
static bool url_valid(const char *url)
{
    const char *rest = after_scheme(url), *at;

    if (strstr(rest, "://") != NULL || strpbrk(rest, "/?# \t") != NULL)
        return false;
    at = strrchr(rest, '@');
    return hostport_valid(at != NULL ? at + 1 : rest);
}

static char *trim(char *s)
{
    char *end;
    while (isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

bool sl_nats_servers_parse(const char *list, sl_nats_servers *out, char *err, size_t errlen)
{
    char *save = NULL, *tok, shown[256];

    memset(out, 0, sizeof(*out));
    out->buf = strdup(list != NULL ? list : "");
    if (out->buf == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    for (tok = strtok_r(out->buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        char *url = trim(tok);
        if (*url == '\0')
            continue;
        if (out->n == SL_NATS_MAX_SERVERS) {
            snprintf(err, errlen, "more than %d servers", SL_NATS_MAX_SERVERS);
            goto fail;
        }
        if (!url_valid(url)) {
            sl_nats_url_redact(url, shown, sizeof(shown));
            snprintf(err, errlen,
                     "\"%s\" is not a server URL (expected nats://host:port, "
                     "comma-separated for several)",
                     shown);
            goto fail;
        }
        out->urls[out->n++] = url;
    }
    if (out->n > 0)
        return true;
    snprintf(err, errlen, "no server URL given");
fail:
    sl_nats_servers_free(out);
    return false;
}

void sl_nats_servers_free(sl_nats_servers *s)
{
    free(s->buf);
    memset(s, 0, sizeof(*s));
}

/* Appends text[0..n) to out, always terminated, never past outlen. */
static void put(char *out, size_t outlen, size_t *at, const char *text, size_t n)
{
    if (outlen == 0)
        return;
    for (size_t i = 0; i < n && *at + 1 < outlen; i++)
        out[(*at)++] = text[i];
    out[*at] = '\0';
}

/* One entry: user:password@ becomes user:***@, and token@ (a user without
 * a password, which NATS takes as a token) becomes ***@. */
static void redact_one(const char *url, size_t len, char *out, size_t outlen, size_t *at)
{
    const char *rest = after_scheme(url), *end = url + len, *at_sign = NULL, *colon;

    for (const char *p = rest; p < end; p++) {
        if (*p == '@')
            at_sign = p;
    }
    if (at_sign == NULL) {
        put(out, outlen, at, url, len);
        return;
    }
    colon = memchr(rest, ':', (size_t)(at_sign - rest));
    if (colon == NULL) {
        put(out, outlen, at, url, (size_t)(rest - url));
        put(out, outlen, at, "***", 3);
        put(out, outlen, at, at_sign, (size_t)(end - at_sign));
        return;
    }
    put(out, outlen, at, url, (size_t)(colon - url) + 1);
    put(out, outlen, at, "***", 3);
    put(out, outlen, at, at_sign, (size_t)(end - at_sign));
}

void sl_nats_url_redact(const char *url, char *out, size_t outlen)
{
    size_t at = 0;

    put(out, outlen, &at, "", 0);
    if (url == NULL)
        return;
    for (;;) {
        const char *comma = strchr(url, ',');
        size_t len = comma != NULL ? (size_t)(comma - url) : strlen(url);
        redact_one(url, len, out, outlen, &at);
        if (comma == NULL)
            return;
        put(out, outlen, &at, ",", 1);
        url = comma + 1;
    }
}

natsStatus sl_nats_options_set_servers(natsOptions *opts, const char *list)
{
    sl_nats_servers servers;
    char err[256];
    natsStatus s;

    if (!sl_nats_servers_parse(list, &servers, err, sizeof(err)))
        return NATS_INVALID_ARG;
    s = natsOptions_SetServers(opts, servers.urls, servers.n);
    sl_nats_servers_free(&servers);
    return s;
}

/* ---- settings: servers, identity, TLS ----------------------------------- */

#define URL_FLAG "--nats-url (NATS_URL)"
#define URL_FILE_FLAG "--nats-url-file (NATS_URL_FILE)"
#define CREDS_FLAG "--nats-creds (NATS_CREDS)"
#define NKEY_FLAG "--nats-nkey (NATS_NKEY)"
#define CA_FLAG "--nats-ca (NATS_CA)"
#define CERT_FLAG "--nats-cert (NATS_CERT)"
#define KEY_FLAG "--nats-key (NATS_KEY)"

static bool given(const char *v)
{
    return v != NULL && v[0] != '\0';
}

void sl_nats_options(sl_option *o, sl_nats_settings *s)
{
    const sl_option table[SL_NATS_NOPTIONS] = {SL_NATS_OPTIONS(*s)};
    memcpy(o, table, sizeof(table));
}

/* The server list parses; TLS is on when an entry says tls://. */
static bool servers_check(sl_nats_settings *s, char *err, size_t errlen)
{
    sl_nats_servers servers;
    char why[512];

    if (!sl_nats_servers_parse(s->url, &servers, why, sizeof(why))) {
        snprintf(err, errlen, "invalid %s: %s", s->url_owned ? URL_FILE_FLAG : URL_FLAG, why);
        return false;
    }
    for (int i = 0; i < servers.n; i++)
        s->tls = s->tls || strncasecmp(servers.urls[i], "tls://", 6) == 0;
    sl_nats_servers_free(&servers);
    return true;
}

/* Wipes and frees what sl_config_read_file read from a credentials file. */
static void secret_free(char *text)
{
    if (text != NULL) {
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
}

/* The public key of the first user seed in text; false when there is none
 * or it does not decode. */
static bool seed_public(const char *text, char *pub, size_t publen)
{
    char seed[SL_NKEY_SEED_LEN + 1];
    size_t len = 0;
    const char *at = sl_nkey_find_seed(text, &len);
    bool ok;

    if (at == NULL)
        return false;
    memcpy(seed, at, len);
    seed[len] = '\0';
    ok = sl_nkey_user_public(seed, pub, publen);
    OPENSSL_cleanse(seed, sizeof(seed));
    return ok;
}

static bool creds_check(sl_nats_settings *s, char *err, size_t errlen)
{
    char *text = NULL;
    bool ok = sl_config_read_file(CREDS_FLAG, s->creds, &text, err, errlen);

    if (ok && strstr(text, "-----BEGIN NATS USER JWT-----") == NULL) {
        snprintf(err, errlen,
                 "%s %s: no user JWT (a .creds file holds a \"-----BEGIN NATS USER "
                 "JWT-----\" block and the user's seed)",
                 CREDS_FLAG, s->creds);
        ok = false;
    } else if (ok && !seed_public(text, s->nkey_public, sizeof(s->nkey_public))) {
        snprintf(err, errlen, "%s %s: no valid user NKey seed after the JWT", CREDS_FLAG, s->creds);
        ok = false;
    }
    secret_free(text);
    return ok;
}

static bool nkey_check(sl_nats_settings *s, char *err, size_t errlen)
{
    char *text = NULL;
    bool ok = sl_config_read_file(NKEY_FLAG, s->nkey, &text, err, errlen);

    if (ok && !seed_public(text, s->nkey_public, sizeof(s->nkey_public))) {
        snprintf(err, errlen,
                 "%s %s: no valid user NKey seed (a line \"SU...\" of %d characters, as "
                 "`nats auth nkey gen user` writes it)",
                 NKEY_FLAG, s->nkey, SL_NKEY_SEED_LEN);
        ok = false;
    }
    secret_free(text);
    return ok;
}

static bool identity_check(sl_nats_settings *s, char *err, size_t errlen)
{
    if (given(s->creds) && given(s->nkey)) {
        snprintf(err, errlen, "%s and %s exclude each other: give one", CREDS_FLAG, NKEY_FLAG);
        return false;
    }
    if (given(s->creds))
        return creds_check(s, err, errlen);
    if (given(s->nkey))
        return nkey_check(s, err, errlen);
    return true;
}

static natsStatus tls_apply(const sl_nats_settings *s, natsOptions *opts)
{
    natsStatus st = natsOptions_SetSecure(opts, true);
    if (st == NATS_OK && given(s->ca))
        st = natsOptions_LoadCATrustedCertificates(opts, s->ca);
    if (st == NATS_OK && given(s->cert))
        st = natsOptions_LoadCertificatesChain(opts, s->cert, s->key);
    return st;
}

/* A file of the TLS settings exists and can be opened. */
static bool readable(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read %s %s: %s", what, path, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

/* Loads the TLS files into a scratch natsOptions, so that a bad file is
 * found now, with OpenSSL's reason, rather than at the first connect. */
static bool tls_load(const sl_nats_settings *s, char *err, size_t errlen)
{
    natsOptions *opts = NULL;
    natsStatus st = natsOptions_Create(&opts);

    if (st == NATS_OK && given(s->ca)) {
        st = natsOptions_LoadCATrustedCertificates(opts, s->ca);
        if (st != NATS_OK)
            snprintf(err, errlen, "%s %s: no PEM CA certificate OpenSSL can load (%s)", CA_FLAG,
                     s->ca, nats_GetLastError(NULL));
    }
    if (st == NATS_OK && given(s->cert)) {
        st = natsOptions_LoadCertificatesChain(opts, s->cert, s->key);
        if (st != NATS_OK)
            snprintf(err, errlen,
                     "%s %s and %s %s: not a PEM certificate and its private key "
                     "(%s)",
                     CERT_FLAG, s->cert, KEY_FLAG, s->key, nats_GetLastError(NULL));
    } else if (st != NATS_OK && opts == NULL) {
        snprintf(err, errlen, "cannot set up TLS for NATS: %s", natsStatus_GetText(st));
    }
    natsOptions_Destroy(opts);
    return st == NATS_OK;
}

static bool tls_check(sl_nats_settings *s, char *err, size_t errlen)
{
    if (given(s->cert) != given(s->key)) {
        snprintf(err, errlen, "%s and %s go together: give both", CERT_FLAG, KEY_FLAG);
        return false;
    }
    if ((given(s->ca) && !readable(CA_FLAG, s->ca, err, errlen)) ||
        (given(s->cert) && !readable(CERT_FLAG, s->cert, err, errlen)) ||
        (given(s->key) && !readable(KEY_FLAG, s->key, err, errlen)))
        return false;
    if (given(s->ca) || given(s->cert))
        s->tls = true;
    return !s->tls || tls_load(s, err, errlen);
}

bool sl_nats_settings_check(sl_nats_settings *s, char *err, size_t errlen)
{
    sl_nats_settings_free(s); /* what an earlier check read */
    s->nkey_public[0] = '\0';
    s->tls = false;
    if (given(s->url_file)) {
        if (s->url_given) {
            snprintf(err, errlen, "%s and %s exclude each other: give one", URL_FLAG,
                     URL_FILE_FLAG);
            return false;
        }
        if (!sl_config_read_file(URL_FILE_FLAG, s->url_file, &s->url_owned, err, errlen))
            return false;
        s->url = s->url_owned;
    }
    if (servers_check(s, err, errlen) && identity_check(s, err, errlen) &&
        tls_check(s, err, errlen))
        return true;
    sl_nats_settings_free(s);
    return false;
}

natsStatus sl_nats_settings_apply(const sl_nats_settings *s, natsOptions *opts)
{
    natsStatus st = sl_nats_options_set_servers(opts, s->url);

    if (st == NATS_OK && given(s->creds))
        st = natsOptions_SetUserCredentialsFromFiles(opts, s->creds, NULL);
    if (st == NATS_OK && given(s->nkey))
        st = natsOptions_SetNKeyFromSeed(opts, s->nkey_public, s->nkey);
    if (st == NATS_OK && s->tls)
        st = tls_apply(s, opts);
    return st;
}

/* What the first entry of the list with userinfo carries: a user (copied
 * into user) with a password, or a token (user empty). False when no entry
 * has userinfo. */
static bool url_userinfo(const char *list, char *user, size_t userlen)
{
    while (list != NULL && *list != '\0') {
        const char *comma = strchr(list, ',');
        const char *end = comma != NULL ? comma : list + strlen(list);
        const char *rest = after_scheme(list), *at_sign = NULL;

        for (const char *p = rest; p < end; p++) {
            if (*p == '@')
                at_sign = p;
        }
        if (at_sign != NULL) {
            const char *colon = memchr(rest, ':', (size_t)(at_sign - rest));
            int n = colon != NULL ? (int)(colon - rest) : 0;
            while (n > 0 && isspace((unsigned char)*rest)) {
                rest++;
                n--;
            }
            snprintf(user, userlen, "%.*s", n, rest);
            return true;
        }
        list = comma != NULL ? comma + 1 : NULL;
    }
    return false;
}

bool sl_nats_settings_anonymous(const sl_nats_settings *s)
{
    char user[256];
    return !given(s->creds) && !given(s->nkey) && !given(s->cert) &&
           !url_userinfo(s->url, user, sizeof(user));
}

void sl_nats_settings_describe(const sl_nats_settings *s, char *out, size_t outlen)
{
    char shown[1024], who[512], user[256], tls[1024];

    sl_nats_url_redact(s->url, shown, sizeof(shown));
    if (given(s->creds))
        snprintf(who, sizeof(who), "credentials file %s (user %s)", s->creds, s->nkey_public);
    else if (given(s->nkey))
        snprintf(who, sizeof(who), "NKey %s", s->nkey_public);
    else if (url_userinfo(s->url, user, sizeof(user)) && user[0] != '\0')
        snprintf(who, sizeof(who), "user %s (password in the URL)", user);
    else if (url_userinfo(s->url, user, sizeof(user)))
        snprintf(who, sizeof(who), "token in the URL");
    else
        snprintf(who, sizeof(who), "no credentials");
    if (!s->tls)
        snprintf(tls, sizeof(tls), "no TLS");
    else
        snprintf(tls, sizeof(tls), "TLS (CA %s, client certificate %s)",
                 given(s->ca) ? s->ca : "default", given(s->cert) ? s->cert : "none");
    snprintf(out, outlen, "servers %s; %s; %s", shown, who, tls);
}

void sl_nats_settings_free(sl_nats_settings *s)
{
    if (s->url_owned != NULL && s->url == s->url_owned)
        s->url = "";
    secret_free(s->url_owned);
    s->url_owned = NULL;
}

/* ---- the library ---------------------------------------------------------- */

/* Where the detached list stays reachable (volatile: the store is kept). */
static STACK_OF(SSL_COMP) *volatile detached_compression;

void sl_nats_close(void)
{
    nats_Close();
    SSL_COMP_get_compression_methods(); /* make sure OpenSSL's list exists */
    detached_compression = SSL_COMP_set0_compression_methods(NULL);
}
