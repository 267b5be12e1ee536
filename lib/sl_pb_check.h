/* sl_pb_check: the strings of a protobuf message, checked on the wire.
 *
 * protobuf-c hands a string field to C as a NUL-terminated char * without
 * its length, so "a\0b" arrives as "a" and every later check sees only "a";
 * and it does not check UTF-8, which proto3 requires of every string. So
 * Sluice looks at a request's bytes before protobuf-c does: sl_pb_check
 * walks the encoded message with its protobuf-c descriptor, and every field
 * of type string must hold no NUL byte and be valid UTF-8 (libbson's strict
 * reading: no overlong forms, no surrogates, nothing past U+10FFFF). It
 * descends into every field of message type, map entries included.
 *
 * The first string that breaks a rule is reported by its path and the rule,
 * as the rest of Sluice reports a bad field:
 *
 *     record.id: must not contain NUL bytes
 *     records[3].key: must be valid UTF-8
 *     record.attributes: a key must not contain NUL bytes
 *
 * A map is reported as the map (its entries have no meaningful position),
 * naming the key or the value. No byte of the string itself is repeated in
 * the message, so the message is always valid UTF-8.
 *
 * Any bytes can be given. What is not a well-formed message (a truncated
 * varint, a length past the end, field number 0, wire types 3, 4, 6 and 7
 * (groups, which protobuf-c cannot read either), a known string or message
 * field with another wire type, messages nested deeper than SL_PB_MAX_DEPTH)
 * is SL_PB_MALFORMED, with what and at which byte; nothing is ever read out
 * of bounds. Unknown fields are stepped over unread.
 *
 * Pure functions: no allocation, no global state, any thread. */
#ifndef SL_PB_CHECK_H
#define SL_PB_CHECK_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#define SL_PB_MAX_DEPTH 32 /* nested messages below the top one */

typedef enum sl_pb_result {
    SL_PB_OK = 0,
    SL_PB_BAD_STRING, /* msg: "<path>: <rule>" */
    SL_PB_MALFORMED,  /* msg: what is wrong, e.g. "byte 12: truncated varint" */
} sl_pb_result;

/* Checks the message of type desc encoded in data[0..len). On anything but
 * SL_PB_OK, msg (msglen bytes, may be 0) receives one line. */
sl_pb_result sl_pb_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                         char *msg, size_t msglen);

/* Called by sl_pb_check_each for each occurrence of a top-level field that
 * holds a bad string: number is the field's number, index counts that
 * field's occurrences from 0 (for a repeated field, the element), msg is as
 * sl_pb_check writes it. Runs on the caller's thread, before
 * sl_pb_check_each returns. */
typedef void (*sl_pb_fault_fn)(void *closure, uint32_t number, size_t index, const char *msg);

/* As sl_pb_check, but goes on after a bad string: each occurrence of each
 * top-level field is checked on its own, and fault is called once for every
 * one that holds a bad string. For a batch, so that a bad record fails
 * alone. Returns SL_PB_MALFORMED as soon as the bytes are not a message
 * (msg set; faults reported until then stand), else SL_PB_BAD_STRING when
 * fault was called, else SL_PB_OK. */
sl_pb_result sl_pb_check_each(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                              size_t len, sl_pb_fault_fn fault, void *closure, char *msg,
                              size_t msglen);

#endif
