/* sl_utf8: text that must be valid UTF-8 whatever went into it.
 *
 * gRPC status messages and the strings of a response are read by strict
 * clients (Go, Python) that refuse a whole response over one invalid byte.
 * What Sluice writes there can hold a client's own bytes (a quoted attribute
 * key) or be cut by a fixed-size buffer in the middle of a character.
 * sl_utf8_copy makes any bytes safe to send: each byte that does not start
 * a valid sequence (libbson's strict reading) becomes U+FFFD, and a copy
 * that does not fit ends before a character, never inside one.
 *
 * Pure functions, any thread. */
#ifndef SL_UTF8_H
#define SL_UTF8_H

#include <stddef.h>

/* Copies in[0..inlen) into out as valid UTF-8 without NUL bytes (a NUL is
 * replaced too), NUL-terminated within outlen bytes. Returns the bytes
 * written, terminator excluded. outlen 0 writes nothing. */
size_t sl_utf8_copy(char *out, size_t outlen, const char *in, size_t inlen);

/* A malloc'd sl_utf8_copy of the string s, whole; NULL without memory. */
char *sl_utf8_dup(const char *s);

#endif
