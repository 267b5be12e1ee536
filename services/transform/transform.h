/* transform: what sluice-transform does to one record, apart from I/O.
 *
 * Rules. The rules file is a JSON object whose keys are type patterns in
 * NATS wildcard syntax and whose values are jq programs:
 *
 *     {"order.created": "{id: .order_id, total: (.items | map(.price) | add)}",
 *      "order.*":       "del(.internal)",
 *      ">":             "."}
 *
 * "*" matches exactly one dot-separated token, ">" one or more trailing
 * tokens; the first key in file order that matches a record's type wins and
 * a type no key matches is stored as sent. The file is read with libbson,
 * which keeps keys in file order (a jv object would not). Every program is
 * compiled once, at load; one that does not compile makes the load fail
 * with the file, the pattern and jq's message. Programs import no modules
 * (jq's library path is empty).
 *
 * Running. A program gets the payload (a JSON object) as input and must
 * produce exactly one JSON object; anything else (payload not an object,
 * jq runtime error, no output, several outputs, a non-object) is a terminal
 * error for that record, reported in one line. The output becomes the
 * document's "data" field, converted jv -> BSON directly (numbers that are
 * integers become int32/int64, others doubles; NaN becomes null and the
 * infinities the largest doubles, as jq itself prints them).
 *
 * Documents. transform_document_build makes the `records` document:
 * {_id: record id, type, key, attributes, event_time, received_at,
 *  stream_seq, principal, data, transformed_at, traceparent (when present)}.
 * principal is the Sluice-Principal header (null without authentication).
 * A header value that is not UTF-8 is left out (principal null, no
 * traceparent): a document must hold text only.
 * Attribute keys are stored with '.' and a leading '$' replaced by their
 * full-width forms (U+FF0E, U+FF04), which both MongoDB and FerretDB accept.
 *
 * Ownership and threads: transform_rules owns its jq states. jq states are
 * not thread-safe, so one transform_rules serves one thread (sluice-transform
 * has one consumer thread). Everything else is pure. */
#ifndef TRANSFORM_H
#define TRANSFORM_H

#include <bson/bson.h>
#include <jv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sl_consumer.h"

typedef struct transform_rules transform_rules;

/* Reads and compiles the rules in path; NULL or "" gives an empty rule set
 * (identity for every type). Returns NULL with err set to one line naming
 * the file. */
transform_rules *transform_rules_load(const char *path, char *err, size_t errlen);

/* The same from text; origin names it in errors (the file's path). */
transform_rules *transform_rules_parse(const char *json, size_t len, const char *origin, char *err,
                                       size_t errlen);

void transform_rules_free(transform_rules *r);

size_t transform_rules_count(const transform_rules *r);

/* The pattern of the first rule matching type, or NULL (identity). */
const char *transform_rules_match(const transform_rules *r, const char *type);

/* Runs the rule for type on payload. On success *out is the resulting
 * object, which the caller frees with jv_free. */
bool transform_apply(transform_rules *r, const char *type, const uint8_t *payload, size_t len,
                     jv *out, char *err, size_t errlen);

/* Appends v (borrowed) under key to doc; false, with err set, for what BSON
 * cannot hold (a key with a NUL, nesting deeper than 100). */
bool transform_jv_append(bson_t *doc, const char *key, jv v, char *err, size_t errlen);

/* The records document for d, transformed_at = now_ns. The build callback
 * of sluice-transform's consumer. */
bool transform_document_build(transform_rules *r, const sl_delivery *d, int64_t now_ns, bson_t *doc,
                              char *err, size_t errlen);

#endif
