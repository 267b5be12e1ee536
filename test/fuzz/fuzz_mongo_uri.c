/* fuzz_mongo_uri: MONGODB_URI as sluice-transform and sluice-audit check it
 * at start (sl_mongo_uri_check: libmongoc's URI parser, its log lines
 * dropped, and an error naming the URI in sl_mongo_uri_redact's form), and
 * as they log it (sl_mongo_uri_redact).
 *
 * Oracle: no secret of the URI reaches the error line or the redacted form:
 * the password of the userinfo (after "://", between the first ':' and the
 * last '@') and the values of the secret options of the query
 * (tlsCertificateKeyFilePassword, sslClientCertificateKeyPassword,
 * authMechanismProperties). A secret of letters and digits is replaced by
 * another of the same length, so that the URI parses the same: the texts
 * for the second URI must show the first secret at least as often (as part
 * of other text: masking it there too is allowed). */
#include <ctype.h>
#include <strings.h>

#include "fuzz.h"
#include "sl_mongo.h"

#define TEXT_LEN 4096

static const char *const secret_options[] = {
    "tlsCertificateKeyFilePassword",
    "sslClientCertificateKeyPassword",
    "authMechanismProperties",
};

static bool alnum(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]))
            return false;
    }
    return n > 0;
}

/* Checks uri; out gets the error line (if any) and the redacted form. */
static bool check(const char *uri, char out[TEXT_LEN])
{
    bool ok;
    size_t n;

    out[0] = '\0';
    ok = sl_mongo_uri_check(uri, out, TEXT_LEN / 2);
    if (!ok)
        FUZZ_CHECK(out[0] != '\0');
    n = strlen(out);
    out[n++] = '\n';
    sl_mongo_uri_redact(uri, out + n, TEXT_LEN - n);
    return ok;
}

/* The secret at uri[at..at+n) must not show (see above). */
static void hidden(const char *uri, bool ok, const char *text, size_t at, size_t n)
{
    char *other, *secret, again[TEXT_LEN];

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
    char text[TEXT_LEN], *uri;
    const char *rest, *at, *q;
    bool ok;

    if (size > 1024) /* a longer MONGODB_URI is not worth the time */
        return 0;
    uri = fuzz_strndup(data, size);
    ok = check(uri, text);
    rest = strstr(uri, "://");
    rest = rest != NULL ? rest + 3 : uri;
    if ((at = strrchr(rest, '@')) != NULL) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        if (colon != NULL)
            hidden(uri, ok, text, (size_t)(colon + 1 - uri), (size_t)(at - colon - 1));
        rest = at;
    }
    for (q = strchr(rest, '?'), q = q != NULL ? q + 1 : NULL; q != NULL && *q != '\0';) {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        for (size_t i = 0; eq != NULL && i < sizeof(secret_options) / sizeof(*secret_options);
             i++) {
            if ((size_t)(eq - q) == strlen(secret_options[i]) &&
                strncasecmp(q, secret_options[i], (size_t)(eq - q)) == 0)
                hidden(uri, ok, text, (size_t)(eq + 1 - uri), (size_t)(q + len - eq - 1));
        }
        q += len + (q[len] == '&');
    }
    free(uri);
    return 0;
}
