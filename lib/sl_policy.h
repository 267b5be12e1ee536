/* sl_policy: which record types each principal may write.
 *
 * SLUICE_AUTH_POLICY names a JSON file that maps a principal, or "*", to
 * the record type patterns (NATS wildcards, sl_pattern.h) it may write:
 *
 *     {"billing-svc": ["order.*", "invoice.>"],
 *      "*":           ["public.>"]}
 *
 * A principal may write a type when a pattern of its own entry or of the
 * "*" entry (every authenticated principal) matches it; anything else is
 * refused, and a principal with neither entry may write nothing. An empty
 * list is allowed and grants nothing. The file is checked as a whole when
 * loaded: a key that is not a non-empty string, a value that is not an
 * array of valid patterns, is an error naming the principal and the entry.
 *
 * An sl_policy is immutable once loaded: sl_policy_allows is safe from any
 * number of threads. Reloading makes a new one (see sl_auth). */
#ifndef SL_POLICY_H
#define SL_POLICY_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sl_policy sl_policy;

/* Parses text (the file's contents); origin names it in errors. Returns
 * NULL with err set to one line. */
sl_policy *sl_policy_parse(const char *text, size_t len, const char *origin, char *err,
                           size_t errlen);
sl_policy *sl_policy_load(const char *path, char *err, size_t errlen);
void sl_policy_free(sl_policy *p);

/* True when principal may write records of type. */
bool sl_policy_allows(const sl_policy *p, const char *principal, const char *type);

/* Principals with an entry of their own (not counting "*"). */
size_t sl_policy_count(const sl_policy *p);

#endif
