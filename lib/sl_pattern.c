/* sl_pattern: see sl_pattern.h. */
#include "sl_pattern.h"

#include <string.h>

bool sl_pattern_valid(const char *p)
{
    size_t len;

    if (p == NULL || *p == '\0')
        return false;
    for (;;) {
        len = strcspn(p, ".");
        if (len == 0 || strcspn(p, " \t\r\n") < len)
            return false;
        if (memchr(p, '*', len) != NULL && len != 1)
            return false;
        if (memchr(p, '>', len) != NULL)
            return len == 1 && p[1] == '\0'; /* ">" only as the last token */
        if (p[len] == '\0')
            return true;
        p += len + 1;
    }
}

bool sl_pattern_match(const char *p, const char *t)
{
    for (;;) {
        size_t pl = strcspn(p, "."), tl = strcspn(t, ".");

        if (pl == 1 && p[0] == '>')
            return tl > 0;
        if (tl == 0)
            return false;
        if (!(pl == 1 && p[0] == '*') && (pl != tl || strncmp(p, t, pl) != 0))
            return false;
        p += pl;
        t += tl;
        if (*p == '\0' || *t == '\0')
            return *p == '\0' && *t == '\0';
        p++;
        t++;
    }
}
