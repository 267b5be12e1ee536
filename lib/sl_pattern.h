/* sl_pattern: record type patterns in NATS wildcard syntax, as the transform
 * rules, the authorization policy and the schema index name them:
 *
 *     order.created   exactly that type
 *     order.*         "*" is exactly one dot-separated token (order.created,
 *                     not order nor order.created.v2)
 *     order.>         ">" is one or more trailing tokens, last only
 *     >               every type
 *
 * Pure and thread-safe. */
#ifndef SL_PATTERN_H
#define SL_PATTERN_H

#include <stdbool.h>

/* True when pattern is well formed: non-empty tokens without blanks, "*"
 * and ">" only as whole tokens, ">" only last. */
bool sl_pattern_valid(const char *pattern);

/* True when type matches pattern (which must be valid). */
bool sl_pattern_match(const char *pattern, const char *type);

#endif
