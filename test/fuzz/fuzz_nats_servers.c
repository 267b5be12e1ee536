/* fuzz_nats_servers: NATS_URL as every service reads it
 * (sl_nats_servers_parse: a comma-separated list of server URLs) and logs
 * it (sl_nats_url_redact).
 *
 * Oracles:
 *   - an accepted list has 1 to SL_NATS_MAX_SERVERS entries, none empty,
 *     none with a comma or surrounding blanks;
 *   - no password reaches the redacted list or an error message. A
 *     password is what cnats would send as one: in an entry, after the
 *     scheme's "://", between the first ':' and the last '@'. It must
 *     occur at least once fewer in the output than in the input (it may
 *     also occur elsewhere, as part of a host name, say). An error is
 *     checked on the entry it quotes. */
#include <ctype.h>

#include "fuzz.h"
#include "sl_nats.h"

#define SHOWN 4096

/* Calls check for the password of every comma-separated entry of list. */
static void each_password(const char *list, const char *input, const char *output)
{
    char *copy = fuzz_strndup((const uint8_t *)list, strlen(list)), *save = NULL;

    for (char *e = strtok_r(copy, ",", &save); e != NULL; e = strtok_r(NULL, ",", &save)) {
        char *rest = strstr(e, "://"), *at, *colon;
        rest = rest != NULL ? rest + 3 : e;
        at = strrchr(rest, '@');
        if (at == NULL)
            continue;
        *at = '\0';
        colon = strchr(rest, ':');
        if (colon == NULL || colon[1] == '\0' || strchr(colon + 1, '*') != NULL)
            continue;
        FUZZ_CHECK(fuzz_count(output, colon + 1) < fuzz_count(input, colon + 1));
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512] = "", shown[SHOWN], *list;
    sl_nats_servers servers;

    if (size > 1024) /* a longer NATS_URL is not worth the time */
        return 0;
    list = fuzz_strndup(data, size);

    sl_nats_url_redact(list, shown, sizeof(shown));
    if (strlen(list) < SHOWN)
        each_password(list, list, shown);

    if (sl_nats_servers_parse(list, &servers, err, sizeof(err))) {
        FUZZ_CHECK(servers.n >= 1 && servers.n <= SL_NATS_MAX_SERVERS);
        for (int i = 0; i < servers.n; i++) {
            const char *u = servers.urls[i];
            FUZZ_CHECK(u[0] != '\0' && strchr(u, ',') == NULL);
            FUZZ_CHECK(!isspace((unsigned char)u[0]) && !isspace((unsigned char)u[strlen(u) - 1]));
        }
        sl_nats_servers_free(&servers);
    } else {
        /* the entry an error quotes, without the message's own words */
        const char *end = strstr(err, "\" is not a server URL");
        FUZZ_CHECK(err[0] != '\0');
        if (err[0] == '"' && end != NULL) {
            char *quoted = fuzz_strndup((const uint8_t *)err + 1, (size_t)(end - err - 1));
            each_password(list, list, quoted);
            free(quoted);
        }
    }
    free(list);
    return 0;
}
