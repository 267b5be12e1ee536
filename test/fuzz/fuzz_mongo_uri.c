/* fuzz_mongo_uri: MONGODB_URI as sluice-transform and sluice-audit check it
 * at start (sl_mongo_uri_check, libmongoc's URI parser underneath).
 *
 * Oracle: the error line for a URI that does not parse never holds its
 * secrets (it is printed on stderr, and the design keeps secrets out of
 * logs): the password of the userinfo (after "://", between the first ':'
 * and the last '@' before the hosts end) and the value of
 * tlsCertificateKeyFilePassword: with a secret of letters and digits
 * replaced by another, the error must not show the first more often. */
#include <mongoc/mongoc.h>

#include <ctype.h>

#include "fuzz.h"
#include "sl_mongo.h"

#define ERR_LEN 1024

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    mongoc_init();
    mongoc_log_set_handler(NULL, NULL); /* libmongoc's warnings are not ours */
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

/* The secret at uri[at..at+n) must not reach the error: with another secret
 * of the same kind in its place (letters and digits, so that the URI parses
 * the same), the error must hold the first secret at least as often (as
 * part of other text: masking it there too is allowed). */
static void hidden(const char *uri, const char *err, size_t at, size_t n)
{
    char *other, *secret, again[ERR_LEN];

    if (!alnum(uri + at, n))
        return;
    other = fuzz_strndup((const uint8_t *)uri, strlen(uri));
    memset(other + at, uri[at] == 'Z' ? 'Y' : 'Z', n);
    FUZZ_CHECK(!sl_mongo_uri_check(other, again, sizeof(again)));
    secret = fuzz_strndup((const uint8_t *)uri + at, n);
    FUZZ_CHECK(fuzz_count(err, secret) <= fuzz_count(again, secret));
    free(secret);
    free(other);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[ERR_LEN] = "", *uri;
    const char *rest, *opt;

    if (size > 1024) /* a longer MONGODB_URI is not worth the time */
        return 0;
    uri = fuzz_strndup(data, size);
    if (sl_mongo_uri_check(uri, err, sizeof(err))) {
        free(uri);
        return 0;
    }
    FUZZ_CHECK(err[0] != '\0');
    if ((rest = strstr(uri, "://")) != NULL) {
        /* user:password@ before the hosts end */
        size_t hosts = strcspn(rest + 3, "/?");
        const char *at = memrchr(rest + 3, '@', hosts), *colon;
        if (at != NULL && (colon = memchr(rest + 3, ':', (size_t)(at - rest - 3))) != NULL)
            hidden(uri, err, (size_t)(colon + 1 - uri), (size_t)(at - colon - 1));
    }
    if ((opt = strcasestr(uri, "tlsCertificateKeyFilePassword=")) != NULL) {
        opt += strlen("tlsCertificateKeyFilePassword=");
        hidden(uri, err, (size_t)(opt - uri), strcspn(opt, "&"));
    }
    free(uri);
    return 0;
}
