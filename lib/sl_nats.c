/* sl_nats: see sl_nats.h. */
#include "sl_nats.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const schemes[] = {"nats://", "tls://", "ws://", "wss://"};

/* Where the part after the scheme starts, or url itself without one. */
static const char *after_scheme(const char *url)
{
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t n = strlen(schemes[i]);
        if (strncasecmp(url, schemes[i], n) == 0)
            return url + n;
    }
    return url;
}

static bool port_valid(const char *p)
{
    long v = 0;
    if (*p == '\0')
        return false;
    for (; *p != '\0'; p++) {
        if (!isdigit((unsigned char)*p))
            return false;
        v = v * 10 + (*p - '0');
        if (v > 65535)
            return false;
    }
    return v > 0;
}

static bool host_char(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_';
}

/* host[:port], host an IPv6 literal in brackets or a name/IPv4 address. */
static bool hostport_valid(const char *hp)
{
    const char *p = hp, *colon;

    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (close == NULL || close == p + 1)
            return false;
        p = close + 1;
        return *p == '\0' || (*p == ':' && port_valid(p + 1));
    }
    colon = strchr(p, ':');
    for (const char *q = p; q != (colon ? colon : p + strlen(p)); q++) {
        if (!host_char(*q))
            return false;
    }
    if (colon == p || *p == '\0')
        return false;
    return colon == NULL || port_valid(colon + 1);
}

/* One entry of the list, already trimmed. */
static bool url_valid(const char *url)
{
    const char *rest = after_scheme(url), *at;

    if (strstr(rest, "://") != NULL || strpbrk(rest, "/?# \t") != NULL)
        return false;
    at = strrchr(rest, '@');
    return hostport_valid(at != NULL ? at + 1 : rest);
}

static char *trim(char *s)
{
    char *end;
    while (isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

bool sl_nats_servers_parse(const char *list, sl_nats_servers *out, char *err, size_t errlen)
{
    char *save = NULL, *tok, shown[256];

    memset(out, 0, sizeof(*out));
    out->buf = strdup(list != NULL ? list : "");
    if (out->buf == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    for (tok = strtok_r(out->buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        char *url = trim(tok);
        if (*url == '\0')
            continue;
        if (out->n == SL_NATS_MAX_SERVERS) {
            snprintf(err, errlen, "more than %d servers", SL_NATS_MAX_SERVERS);
            goto fail;
        }
        if (!url_valid(url)) {
            sl_nats_url_redact(url, shown, sizeof(shown));
            snprintf(err, errlen,
                     "\"%s\" is not a server URL (expected nats://host:port, "
                     "comma-separated for several)",
                     shown);
            goto fail;
        }
        out->urls[out->n++] = url;
    }
    if (out->n > 0)
        return true;
    snprintf(err, errlen, "no server URL given");
fail:
    sl_nats_servers_free(out);
    return false;
}

void sl_nats_servers_free(sl_nats_servers *s)
{
    free(s->buf);
    memset(s, 0, sizeof(*s));
}

/* Appends text[0..n) to out, always terminated, never past outlen. */
static void put(char *out, size_t outlen, size_t *at, const char *text, size_t n)
{
    if (outlen == 0)
        return;
    for (size_t i = 0; i < n && *at + 1 < outlen; i++)
        out[(*at)++] = text[i];
    out[*at] = '\0';
}

/* One entry: user:password@ becomes user:***@. */
static void redact_one(const char *url, size_t len, char *out, size_t outlen, size_t *at)
{
    const char *rest = after_scheme(url), *end = url + len, *at_sign = NULL, *colon;

    for (const char *p = rest; p < end; p++) {
        if (*p == '@')
            at_sign = p;
    }
    if (at_sign == NULL) {
        put(out, outlen, at, url, len);
        return;
    }
    colon = memchr(rest, ':', (size_t)(at_sign - rest));
    if (colon == NULL) {
        put(out, outlen, at, url, len);
        return;
    }
    put(out, outlen, at, url, (size_t)(colon - url) + 1);
    put(out, outlen, at, "***", 3);
    put(out, outlen, at, at_sign, (size_t)(end - at_sign));
}

void sl_nats_url_redact(const char *url, char *out, size_t outlen)
{
    size_t at = 0;

    put(out, outlen, &at, "", 0);
    if (url == NULL)
        return;
    for (;;) {
        const char *comma = strchr(url, ',');
        size_t len = comma != NULL ? (size_t)(comma - url) : strlen(url);
        redact_one(url, len, out, outlen, &at);
        if (comma == NULL)
            return;
        put(out, outlen, &at, ",", 1);
        url = comma + 1;
    }
}

natsStatus sl_nats_options_set_servers(natsOptions *opts, const char *list)
{
    sl_nats_servers servers;
    char err[256];
    natsStatus s;

    if (!sl_nats_servers_parse(list, &servers, err, sizeof(err)))
        return NATS_INVALID_ARG;
    s = natsOptions_SetServers(opts, servers.urls, servers.n);
    sl_nats_servers_free(&servers);
    return s;
}
