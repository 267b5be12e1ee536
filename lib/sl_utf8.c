/* sl_utf8: see sl_utf8.h.
 *
 * The lead byte says how long a sequence claims to be; libbson says whether
 * those bytes are a valid character (its strict rules: no overlong forms,
 * no surrogates, nothing past U+10FFFF, no NUL). A byte that starts no
 * valid character is replaced on its own, and the copy resumes at the next
 * byte, as the Unicode standard recommends. */
#include "sl_utf8.h"

#include <bson/bson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

/* The length a lead byte announces; 0 for a byte no character starts with. */
static size_t sequence_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c >= 0xe0 && c <= 0xef)
        return 3;
    if (c >= 0xf0 && c <= 0xf4)
        return 4;
    return 0;
}

size_t sl_utf8_copy(char *out, size_t outlen, const char *in, size_t inlen)
{
    size_t i = 0, o = 0;

    if (outlen == 0)
        return 0;
    while (i < inlen) {
        size_t n = sequence_len((unsigned char)in[i]);
        bool valid = n > 0 && n <= inlen - i && bson_utf8_validate(in + i, n, false);
        const char *from = valid ? in + i : REPLACEMENT;
        size_t len = valid ? n : sizeof(REPLACEMENT) - 1;

        if (o + len >= outlen)
            break; /* the character does not fit: end before it */
        memcpy(out + o, from, len);
        o += len;
        i += valid ? n : 1;
    }
    out[o] = '\0';
    return o;
}

char *sl_utf8_dup(const char *s)
{
    size_t n = strlen(s), room = 3 * n + 1; /* every byte may become U+FFFD */
    char *out = malloc(room);
    if (out != NULL)
        sl_utf8_copy(out, room, s, n);
    return out;
}
