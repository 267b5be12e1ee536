/* audit: what sluice-audit records about one stream message, apart from I/O.
 *
 * One entry per stream message, keyed by where and when the stream stored it
 * (sl_delivery_key, unique across stream lifetimes):
 *
 *     {_id: "<stream>:<seq>:<stored at>", stream, stream_seq, record_id, type,
 *      key, payload_sha256, payload_bytes, principal, received_at, audited_at,
 *      deliveries}
 *
 * payload_sha256 is the lowercase hex SHA-256 (OpenSSL EVP) of
 * Record.payload, payload_bytes its length; the payload itself is never
 * stored. key and principal are null when the record has none. received_at
 * is the Sluice-Received-At header (the stream's own timestamp if missing),
 * audited_at the time the entry was built, deliveries the delivery count of
 * the delivery that first stored the entry (redeliveries find it there and
 * leave it as it is).
 *
 * Everything here is pure and thread-safe. */
#ifndef AUDIT_H
#define AUDIT_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sl_consumer.h"

#define AUDIT_SHA256_HEX_LEN 65 /* 64 digits and the terminator */

/* Writes the hex SHA-256 of data into out. False only if OpenSSL fails. */
bool audit_sha256_hex(const uint8_t *data, size_t len, char out[AUDIT_SHA256_HEX_LEN]);

/* The audit entry for d, audited_at = now_ns. False, with err set, when the
 * body is not a sluice.v1.Record. The build callback of sluice-audit. */
bool audit_entry_build(const sl_delivery *d, int64_t now_ns, bson_t *doc, char *err, size_t errlen);

#endif
