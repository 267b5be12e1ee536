/* sl_record: everything Sluice knows about one record, apart from I/O.
 *
 * - validation of a client's sluice.v1.Record against the rules of the public
 *   API, each failure a gRPC status code and one message naming the field and
 *   the rule ("record.type: must be dot-separated lowercase tokens ...");
 * - UUIDv7 ids for records that came without one;
 * - the stream message a record becomes: subject sluice.rec.<type>, the
 *   headers Nats-Msg-Id, Sluice-Type, Sluice-Key, Sluice-Received-At and
 *   traceparent, and the protobuf-encoded record (with its id) as body.
 *   The body holds the record's known fields only: whatever unknown fields
 *   a client sent are dropped, so the limits below bound what is stored.
 *
 * All functions are pure and thread-safe; the caller owns everything it
 * passes in and everything it gets back. */
#ifndef SL_RECORD_H
#define SL_RECORD_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/v1/ingest.pb-c.h"

#define SL_RECORD_ID_MAX 128
#define SL_RECORD_TYPE_MAX 128
#define SL_UUID_LEN 37 /* 36 characters and the terminator */
#define SL_SUBJECT_PREFIX "sluice.rec."
#define SL_STREAM_SUBJECTS SL_SUBJECT_PREFIX ">" /* what the stream holds */

#define SL_HDR_MSG_ID "Nats-Msg-Id"
#define SL_HDR_TYPE "Sluice-Type"
#define SL_HDR_KEY "Sluice-Key"
#define SL_HDR_RECEIVED_AT "Sluice-Received-At"
#define SL_HDR_PRINCIPAL "Sluice-Principal"
#define SL_PRINCIPAL_MAX 256 /* bytes of a principal, with its terminator */
#define SL_HDR_TRACEPARENT "traceparent"
#define SL_TRACEPARENT_MAX 127 /* longest traceparent header value a caller passes */

typedef struct sl_record_limits {
    size_t max_payload_bytes;   /* RESOURCE_EXHAUSTED beyond */
    size_t max_key_bytes;       /* Record.key */
    size_t max_attributes;      /* entries in Record.attributes */
    size_t max_attribute_bytes; /* one attribute key or value */
} sl_record_limits;

/* The defaults: 1 MiB payload, 1 KiB key, 64 attributes of up to 4 KiB. */
void sl_record_limits_default(sl_record_limits *lim);

/* Checks r. Returns 0 when it is valid, otherwise a gRPC status code
 * (INVALID_ARGUMENT, or RESOURCE_EXHAUSTED for a payload over the limit) and
 * writes "<where>.<field>: <rule>" into msg. where is "record" or
 * "records[3]"; r may be NULL (an absent record). */
int sl_record_validate(const Sluice__V1__Record *r, const sl_record_limits *lim,
                       const char *where, char *msg, size_t msglen);

/* The rules one by one; true when text satisfies them. */
bool sl_record_id_valid(const char *id);
bool sl_record_type_valid(const char *type);
/* True when payload is UTF-8 text holding exactly one JSON object. When it is
 * not, why (if not NULL) receives the reason. */
bool sl_record_payload_is_object(const uint8_t *payload, size_t len, char *why, size_t whylen);

/* Writes a new random UUIDv7 (RFC 9562) into out, lowercase. */
void sl_uuid_v7(char out[SL_UUID_LEN]);

/* The largest stream message a valid record can become under lim, in the
 * bytes NATS counts against its max_payload (body and headers): the payload
 * limit, plus a 128-character id and type, the key limit, every attribute at
 * its limit, the widest event_time, and the headers sl_record_to_msg sets
 * with a traceparent of SL_TRACEPARENT_MAX bytes and no principal. With the
 * default limits: 1,576,557 bytes (1 MiB + 515 KiB). A publisher adds its
 * own headers on top (sl_js_header_bytes). SIZE_MAX when limits make it
 * larger than a size_t. */
size_t sl_record_max_msg_bytes(const sl_record_limits *lim);

/* Builds the stream message for r with the given id (the client's or a
 * generated one). traceparent and principal may be NULL. On success *out is
 * a new message the caller owns. */
natsStatus sl_record_to_msg(natsMsg **out, const Sluice__V1__Record *r, const char *id,
                            int64_t received_ns, const char *traceparent,
                            const char *principal);

#endif
