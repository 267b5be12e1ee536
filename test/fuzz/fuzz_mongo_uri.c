/* fuzz_mongo_uri: MONGODB_URI as sluice-transform and sluice-audit check it
 * at start (sl_mongo_uri_check, libmongoc's URI parser underneath).
 *
 * Oracle: neither the error line for a URI that does not parse nor what
 * libmongoc logs while reading a URI holds its secrets (both reach stderr,
 * and the design keeps secrets out of logs): the password of the userinfo
 * (after "://", between the first ':' and the last '@' before the hosts
 * end) and the value of tlsCertificateKeyFilePassword. With a secret of
 * letters and digits replaced by another, the error and the log must not
 * show the first more often. */
#include <ctype.h>
#include <mongoc/mongoc.h>

#include "fuzz.h"
#include "sl_mongo.h"

#define ERR_LEN 8192

/* What libmongoc logged while checking the URI: it prints to stderr before
 * a service has set its own handler, so it must keep secrets out too. */
static char logged[4096];

static void on_log(mongoc_log_level_t level, const char *domain, const char *message, void *c)
{
    size_t n = strlen(logged);
    (void)level;
    (void)domain;
    (void)c;
    snprintf(logged + n, sizeof(logged) - n, "%s\n", message);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    mongoc_init();
    mongoc_log_set_handler(on_log, NULL);
    return 0;
}

static bool alnum(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]))
            return false;
    }
    return n > 0;
}

/* Checks uri; out gets the error line (if any) and what libmongoc logged. */
static bool check(const char *uri, char out[ERR_LEN])
{
    bool ok;

    logged[0] = out[0] = '\0';
    ok = sl_mongo_uri_check(uri, out, ERR_LEN);
    if (!ok)
        FUZZ_CHECK(out[0] != '\0');
    snprintf(out + strlen(out), ERR_LEN - strlen(out), "\n%s", logged);
    return ok;
}

/* The secret at uri[at..at+n) must not reach the error or the log: with
 * another secret of the same kind in its place (letters and digits, so that
 * the URI parses the same), they must hold the first secret at least as
 * often (as part of other text: masking it there too is allowed). */
static void hidden(const char *uri, bool ok, const char *text, size_t at, size_t n)
{
    char *other, *secret, again[ERR_LEN];

    if (!alnum(uri + at, n))
        return;
    other = fuzz_strndup((const uint8_t *)uri, strlen(uri));
    memset(other + at, uri[at] == 'Z' ? 'Y' : 'Z', n);
    if (check(other, again) == ok) { /* else the secret was not only that */
        secret = fuzz_strndup((const uint8_t *)uri + at, n);
        FUZZ_CHECK(fuzz_count(text, secret) <= fuzz_count(again, secret));
        free(secret);
    }
    free(other);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[ERR_LEN], *uri;
    const char *rest, *opt;
    bool ok;

    if (size > 1024) /* a longer MONGODB_URI is not worth the time */
        return 0;
    uri = fuzz_strndup(data, size);
    ok = check(uri, text);
    if ((rest = strstr(uri, "://")) != NULL) {
        /* user:password@ before the hosts end */
        size_t hosts = strcspn(rest + 3, "/?");
        const char *at = memrchr(rest + 3, '@', hosts), *colon;
        if (at != NULL && (colon = memchr(rest + 3, ':', (size_t)(at - rest - 3))) != NULL)
            hidden(uri, ok, text, (size_t)(colon + 1 - uri), (size_t)(at - colon - 1));
    }
    if ((opt = strcasestr(uri, "tlsCertificateKeyFilePassword=")) != NULL) {
        opt += strlen("tlsCertificateKeyFilePassword=");
        hidden(uri, ok, text, (size_t)(opt - uri), strcspn(opt, "&"));
    }
    free(uri);
    return 0;
}
