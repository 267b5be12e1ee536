/* fuzz_nkey: an NKey seed file or .creds file (NATS_NKEY, NATS_CREDS) as
 * every service reads it: the seed found in the text (sl_nkey_find_seed)
 * and the public key derived from it (sl_nkey_user_public: base32, kind,
 * CRC-16, Ed25519 through OpenSSL).
 *
 * Input: the file's text (cut at a NUL byte, as a C string).
 *
 * Oracles: a seed found lies inside the text, is SL_NKEY_SEED_LEN
 * characters starting "SU", alone on its line but for blanks; a public key
 * is "U" and SL_NKEY_PUBLIC_LEN characters of base32, the same every time;
 * a buffer one byte short is refused, never overrun. */
#include <ctype.h>

#include "fuzz.h"
#include "sl_nkey.h"

static bool base32(const char *s)
{
    for (; *s != '\0'; s++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= '2' && *s <= '7')))
            return false;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_strndup(data, size), *seed;
    char pub[SL_NKEY_PUBLIC_LEN + 1], again[SL_NKEY_PUBLIC_LEN + 1];
    const char *at;
    size_t len = 0, tlen = strlen(text);

    at = sl_nkey_find_seed(text, &len);
    if (at != NULL) {
        FUZZ_CHECK(at >= text && at + len <= text + tlen);
        FUZZ_CHECK(len == SL_NKEY_SEED_LEN && at[0] == 'S' && at[1] == 'U');
        FUZZ_CHECK(at == text || at[-1] == '\n' || isspace((unsigned char)at[-1]));
        seed = fuzz_strndup((const uint8_t *)at, len);
    } else {
        seed = fuzz_strndup((const uint8_t *)text, tlen); /* the text as a seed */
    }
    if (sl_nkey_user_public(seed, pub, sizeof(pub))) {
        FUZZ_CHECK(strlen(pub) == SL_NKEY_PUBLIC_LEN && pub[0] == 'U' && base32(pub));
        FUZZ_CHECK(sl_nkey_user_public(seed, again, sizeof(again)) && strcmp(pub, again) == 0);
        FUZZ_CHECK(!sl_nkey_user_public(seed, again, sizeof(again) - 1));
    }
    free(seed);
    free(text);
    return 0;
}
