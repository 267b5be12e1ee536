/* sl_policy: see sl_policy.h. The file is read with libbson; each entry
 * keeps its principal and a NULL-terminated array of patterns, all owned by
 * the policy. */
#include "sl_policy.h"

#include <bson/bson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_file.h"
#include "sl_pattern.h"

typedef struct entry {
    char *principal;
    char **patterns; /* NULL-terminated */
} entry;

struct sl_policy {
    entry *entries;
    size_t n;
    const entry *everyone; /* the "*" entry, or NULL */
};

static void entry_free(entry *e)
{
    for (char **p = e->patterns; p != NULL && *p != NULL; p++)
        free(*p);
    free(e->patterns);
    free(e->principal);
}

/* The patterns of one entry: an array of valid pattern strings. */
static bool patterns_read(const bson_iter_t *it, entry *e, const char *origin, char *err,
                          size_t errlen)
{
    bson_iter_t arr;
    size_t n = 0, k = 0;

    if (!BSON_ITER_HOLDS_ARRAY(it) || !bson_iter_recurse(it, &arr)) {
        snprintf(err, errlen, "%s: \"%.64s\": expected an array of type patterns", origin,
                 e->principal);
        return false;
    }
    while (bson_iter_next(&arr))
        n++;
    e->patterns = calloc(n + 1, sizeof(*e->patterns));
    if (e->patterns == NULL || !bson_iter_recurse(it, &arr)) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    while (bson_iter_next(&arr)) {
        const char *pat = BSON_ITER_HOLDS_UTF8(&arr) ? bson_iter_utf8(&arr, NULL) : NULL;
        if (pat == NULL || !sl_pattern_valid(pat)) {
            snprintf(err, errlen,
                     "%s: \"%.64s\"[%zu]: not a type pattern (tokens of [a-z0-9_-], \"*\" for "
                     "one token, \">\" for the rest)",
                     origin, e->principal, k);
            return false;
        }
        if ((e->patterns[k++] = strdup(pat)) == NULL) {
            snprintf(err, errlen, "out of memory");
            return false;
        }
    }
    return true;
}

static bool entries_read(sl_policy *p, const bson_t *doc, const char *origin, char *err,
                         size_t errlen)
{
    bson_iter_t it;

    p->entries = calloc(bson_count_keys(doc) + 1, sizeof(*p->entries));
    if (p->entries == NULL || !bson_iter_init(&it, doc)) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    while (bson_iter_next(&it)) {
        entry *e = &p->entries[p->n++];
        const char *who = bson_iter_key(&it);
        if (who[0] == '\0') {
            snprintf(err, errlen, "%s: a principal must not be empty", origin);
            return false;
        }
        if ((e->principal = strdup(who)) == NULL) {
            snprintf(err, errlen, "out of memory");
            return false;
        }
        if (!patterns_read(&it, e, origin, err, errlen))
            return false;
        if (strcmp(who, "*") == 0)
            p->everyone = e;
    }
    return true;
}

sl_policy *sl_policy_parse(const char *text, size_t len, const char *origin, char *err,
                           size_t errlen)
{
    sl_policy *p = calloc(1, sizeof(*p));
    bson_error_t error;
    bson_t doc;
    size_t i = 0;

    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }

    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n'))
        i++;
    if (i == len || text[i] != '{') {
        snprintf(err, errlen, "%s: not a JSON object of principal -> [type patterns]", origin);
        free(p);
        return NULL;
    }
    if (!bson_init_from_json(&doc, text, (ssize_t)len, &error)) {
        snprintf(err, errlen, "%s: not a JSON object of principal -> [type patterns]: %s",
                 origin, error.message);
        free(p);
        return NULL;
    }
    if (!entries_read(p, &doc, origin, err, errlen)) {
        sl_policy_free(p);
        p = NULL;
    }
    bson_destroy(&doc);
    return p;
}

sl_policy *sl_policy_load(const char *path, char *err, size_t errlen)
{
    size_t len = 0;
    char *text = sl_file_read(path, SL_FILE_MAX, &len, err, errlen);
    sl_policy *p = text != NULL ? sl_policy_parse(text, len, path, err, errlen) : NULL;
    free(text);
    return p;
}

void sl_policy_free(sl_policy *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++)
        entry_free(&p->entries[i]);
    free(p->entries);
    free(p);
}

static bool entry_allows(const entry *e, const char *type)
{
    for (char **pat = e->patterns; *pat != NULL; pat++) {
        if (sl_pattern_match(*pat, type))
            return true;
    }
    return false;
}

bool sl_policy_allows(const sl_policy *p, const char *principal, const char *type)
{
    if (p->everyone != NULL && entry_allows(p->everyone, type))
        return true;
    for (size_t i = 0; i < p->n; i++) {
        const entry *e = &p->entries[i];
        if (e != p->everyone && strcmp(e->principal, principal) == 0)
            return entry_allows(e, type);
    }
    return false;
}

size_t sl_policy_count(const sl_policy *p)
{
    return p->n - (p->everyone != NULL);
}
