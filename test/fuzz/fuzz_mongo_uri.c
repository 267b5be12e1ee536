/* fuzz_mongo_uri: MONGODB_URI as sluice-transform and sluice-audit check it
 * at start (sl_mongo_uri_check, libmongoc's URI parser underneath).
 *
 * Oracle: the error line for a URI that does not parse never holds its
 * secrets (it is printed on stderr, and the design keeps secrets out of
 * logs): the password of the userinfo (after "://", between the first ':'
 * and the last '@' before the hosts end) and the value of
 * tlsCertificateKeyFilePassword. Each must occur at least once fewer in the
 * error than in the URI (it may also occur elsewhere in it). */
#include <mongoc/mongoc.h>

#include "fuzz.h"
#include "sl_mongo.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    mongoc_init();
    mongoc_log_set_handler(NULL, NULL); /* libmongoc's warnings are not ours */
    return 0;
}

/* secret occurs in the URI; it must occur at least once fewer in err.
 * Secrets with '"' or '*' are skipped: the message's quotes and the
 * "***" of a redaction could make them up. */
static void hidden(const char *uri, const char *err, const char *secret)
{
    if (secret[0] == '\0' || strpbrk(secret, "\"*") != NULL ||
        strstr("invalid MongoDB URI", secret) != NULL)
        return;
    FUZZ_CHECK(fuzz_count(err, secret) < fuzz_count(uri, secret));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[1024] = "", *uri;
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
        char *auth = fuzz_strndup((const uint8_t *)rest + 3, strcspn(rest + 3, "/?"));
        char *at = strrchr(auth, '@'), *colon;
        if (at != NULL) {
            *at = '\0';
            if ((colon = strchr(auth, ':')) != NULL)
                hidden(uri, err, colon + 1);
        }
        free(auth);
    }
    if ((opt = strcasestr(uri, "tlsCertificateKeyFilePassword=")) != NULL) {
        const char *v = opt + strlen("tlsCertificateKeyFilePassword=");
        char *value = fuzz_strndup((const uint8_t *)v, strcspn(v, "&"));
        hidden(uri, err, value);
        free(value);
    }
    free(uri);
    return 0;
}
