/* sl_apikeys: see sl_apikeys.h. */
#include "sl_apikeys.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_file.h"

#define MAX_ENTRIES 100000

typedef struct entry {
    char principal[SL_PRINCIPAL_MAX];
    unsigned char hash[32];
} entry;

struct sl_apikeys {
    entry *entries;
    size_t n;
};

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool hash_parse(const char *hex, size_t len, unsigned char out[32])
{
    if (len != 64)
        return false;
    for (size_t i = 0; i < 32; i++) {
        int hi = hex_value((unsigned char)hex[2 * i]), lo = hex_value((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

static bool principal_valid(const char *p, size_t len)
{
    if (len == 0 || len >= SL_PRINCIPAL_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f)
            return false;
    }
    return true;
}

/* One line, without its newline: blank, a comment, or an entry. */
static bool line_parse(sl_apikeys *k, const char *line, size_t len, bool *is_entry)
{
    size_t i = 0, p0, p1, h0, h1;

    *is_entry = false;
    while (i < len && isspace((unsigned char)line[i]))
        i++;
    if (i == len || line[i] == '#')
        return true;
    p0 = i;
    while (i < len && !isspace((unsigned char)line[i]))
        i++;
    p1 = i;
    while (i < len && isspace((unsigned char)line[i]))
        i++;
    h0 = i;
    while (i < len && !isspace((unsigned char)line[i]))
        i++;
    h1 = i;
    while (i < len && isspace((unsigned char)line[i]))
        i++;
    if (i != len || !principal_valid(line + p0, p1 - p0) ||
        !hash_parse(line + h0, h1 - h0, k->entries[k->n].hash))
        return false;
    memcpy(k->entries[k->n].principal, line + p0, p1 - p0);
    k->entries[k->n].principal[p1 - p0] = '\0';
    *is_entry = true;
    return true;
}

sl_apikeys *sl_apikeys_parse(const char *text, size_t len, const char *origin, char *err,
                             size_t errlen)
{
    sl_apikeys *k = calloc(1, sizeof(*k));
    size_t lines = 1, cap = 0;

    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    cap = lines < MAX_ENTRIES ? lines : MAX_ENTRIES;
    if (k == NULL || (k->entries = calloc(cap, sizeof(*k->entries))) == NULL) {
        snprintf(err, errlen, "out of memory");
        sl_apikeys_free(k);
        return NULL;
    }
    for (size_t at = 0, lineno = 1; at < len; lineno++) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t n = nl != NULL ? (size_t)(nl - (text + at)) : len - at;
        bool is_entry;
        if (k->n == cap || !line_parse(k, text + at, n, &is_entry)) {
            snprintf(err, errlen,
                     "%s:%zu: expected \"<principal> <sha256 of the key, 64 hex digits>\"",
                     origin, lineno);
            sl_apikeys_free(k);
            return NULL;
        }
        k->n += is_entry;
        at += n + 1;
    }
    return k;
}

sl_apikeys *sl_apikeys_load(const char *path, char *err, size_t errlen)
{
    size_t len = 0;
    char *text = sl_file_read(path, SL_FILE_MAX, &len, err, errlen);
    sl_apikeys *k = text != NULL ? sl_apikeys_parse(text, len, path, err, errlen) : NULL;

    if (text != NULL)
        OPENSSL_cleanse(text, len);
    free(text);
    return k;
}

void sl_apikeys_free(sl_apikeys *k)
{
    if (k == NULL)
        return;
    free(k->entries);
    free(k);
}

size_t sl_apikeys_count(const sl_apikeys *k)
{
    return k->n;
}

bool sl_apikeys_check(const sl_apikeys *k, const char *key, char principal[SL_PRINCIPAL_MAX])
{
    unsigned char hash[32];
    unsigned int hlen = 0;
    const entry *found = NULL;

    if (EVP_Digest(key, strlen(key), hash, &hlen, EVP_sha256(), NULL) != 1 || hlen != 32)
        return false;
    for (size_t i = 0; i < k->n; i++) {
        /* Every entry is compared: no early exit on a match. */
        bool same = CRYPTO_memcmp(hash, k->entries[i].hash, sizeof(hash)) == 0;
        if (same && found == NULL)
            found = &k->entries[i];
    }
    if (found != NULL)
        memcpy(principal, found->principal, strlen(found->principal) + 1);
    return found != NULL;
}
