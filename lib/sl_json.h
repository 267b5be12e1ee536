/* sl_json: is this text JSON, by RFC 8259's grammar?
 *
 * libbson reads JSON into BSON, and Sluice relies on it for that, but its
 * reader is lenient: it takes raw control characters inside strings, NaN
 * and Infinity, numbers such as -05 or -0e+.2, a lone n, and elements with
 * no comma between them. What ingest stores is read again by every
 * downstream service (jq in sluice-transform, any client of the stream),
 * and those may refuse what is not JSON. So a payload is first checked here
 * with RapidJSON's strict reader, and only then read by libbson, which
 * judges what BSON can hold (no NUL in a key, at most 100 levels).
 *
 * The check builds nothing: one pass in RapidJSON's iterative mode, so deep
 * nesting costs no C stack, at most SL_JSON_MAX_DEPTH levels. Numbers of any
 * size and precision are JSON (they are read as text). Pure; any thread. */
#ifndef SL_JSON_H
#define SL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SL_JSON_MAX_DEPTH 1024

/* True when text[0..len) is one JSON value, with optional whitespace around
 * it. Otherwise false, with why (whylen bytes) set to one line naming the
 * byte at fault and RapidJSON's reason, e.g. "byte 7: Missing a comma or
 * ']' after an array element.". The line quotes no byte of the text, so it
 * is valid UTF-8 whatever the text holds. */
bool sl_json_valid(const uint8_t *text, size_t len, char *why, size_t whylen);

#ifdef __cplusplus
}
#endif

#endif
