/* fuzz_apikeys: the API key file (SLUICE_AUTH_TOKENS_FILE) as sluice-ingest
 * loads it (sl_apikeys_parse: "<principal> <sha256 hex>" lines), and a
 * check of a key against it (sl_apikeys_check).
 *
 * The input is the file's bytes, not NUL-terminated. The key "test" is
 * checked against every file that loads.
 *
 * Oracles: an error names the file and a line; a match's principal is a
 * non-empty string of printable non-blank bytes that occurs in the file. */
#include "fuzz.h"
#include "sl_apikeys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size > 0 ? size : 1);
    char err[512] = "", principal[SL_PRINCIPAL_MAX];
    sl_apikeys *k;

    if (text == NULL)
        abort();
    if (size > 0)
        memcpy(text, data, size);
    k = sl_apikeys_parse(text, size, "keys.txt", err, sizeof(err));
    if (k == NULL) {
        FUZZ_CHECK(strncmp(err, "keys.txt:", 9) == 0 || strcmp(err, "out of memory") == 0);
    } else {
        (void)sl_apikeys_count(k);
        if (sl_apikeys_check(k, "test", principal)) {
            size_t n = strlen(principal);
            FUZZ_CHECK(n > 0 && n < SL_PRINCIPAL_MAX);
            for (size_t i = 0; i < n; i++)
                FUZZ_CHECK((unsigned char)principal[i] > ' ' && principal[i] != 0x7f);
            FUZZ_CHECK(memmem(text, size, principal, n) != NULL);
        }
        sl_apikeys_free(k);
    }
    free(text);
    return 0;
}
