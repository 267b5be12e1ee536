/* sl_apikeys: API keys as bearer tokens, checked against a file of key
 * hashes (SLUICE_AUTH_TOKENS_FILE), so that the keys themselves are never
 * stored with the service:
 *
 *     # principal      sha256 of the key, hex
 *     billing-svc      9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
 *     audit-reader     60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752
 *
 * One entry per line, the principal and the lowercase or uppercase hex
 * SHA-256 of the key separated by blanks; blank lines and lines starting
 * with '#' are skipped. `printf %s "$KEY" | sha256sum` makes the hash.
 *
 * A key is hashed (OpenSSL) and compared with every entry with
 * CRYPTO_memcmp, all of them every time: the time a check takes says
 * nothing about which entry, or how much of one, matched.
 *
 * An sl_apikeys is immutable once loaded: sl_apikeys_check is safe from any
 * number of threads. */
#ifndef SL_APIKEYS_H
#define SL_APIKEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "sl_jwt.h" /* SL_PRINCIPAL_MAX */

typedef struct sl_apikeys sl_apikeys;

/* Parses text (the file's contents); origin names it in errors. Returns
 * NULL with err set to one line naming the line at fault. */
sl_apikeys *sl_apikeys_parse(const char *text, size_t len, const char *origin, char *err,
                             size_t errlen);
sl_apikeys *sl_apikeys_load(const char *path, char *err, size_t errlen);
void sl_apikeys_free(sl_apikeys *k);
size_t sl_apikeys_count(const sl_apikeys *k);

/* True, with the principal, when key's hash is listed. */
bool sl_apikeys_check(const sl_apikeys *k, const char *key, char principal[SL_PRINCIPAL_MAX]);

#endif
