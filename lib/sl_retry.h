/* sl_retry: retry hints. A RESOURCE_EXHAUSTED or UNAVAILABLE that a retry
 * can cure carries a google.rpc.RetryInfo saying how long the client should
 * wait first, the way Google APIs and the gRPC ecosystem's clients expect:
 *
 *   - on a call's status, in the trailing metadata entry
 *     grpc-status-details-bin: a serialized google.rpc.Status (code,
 *     message, details = [Any(RetryInfo)]);
 *   - on one record's result inside IngestBatch or IngestStream, in that
 *     result's google.rpc.Status details.
 *
 * Failures no retry can cure (a record too large, a bad record, a refused
 * principal) carry no RetryInfo: its absence says "do not retry as is".
 *
 * Pure and thread-safe; the caller owns what it gets back. */
#ifndef SL_RETRY_H
#define SL_RETRY_H

#include <grpc/slice.h>
#include <stdint.h>

#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"

/* The delays Sluice asks for. */
#define SL_RETRY_IN_FLIGHT_MS 250    /* --max-in-flight reached */
#define SL_RETRY_UNAVAILABLE_MS 1000 /* JetStream not reachable, no PubAck in time */
#define SL_RETRY_DRAINING_MS 1000    /* this server is shutting down: another will answer */
#define SL_RETRY_STREAM_FULL_MS 5000 /* the stream refuses records (discard new) */

#define SL_RETRY_INFO_TYPE_URL "type.googleapis.com/google.rpc.RetryInfo"

/* Storage for one RetryInfo detail of a Status being packed. */
typedef struct sl_retry_detail {
    Google__Protobuf__Duration delay;
    Google__Rpc__RetryInfo info;
    uint8_t packed[32];
    Google__Protobuf__Any any;
    Google__Protobuf__Any *list[1];
} sl_retry_detail;

/* Adds a RetryInfo of retry_ms to status (which must have no details yet),
 * using d as storage; d must live until status is packed. No-op for
 * retry_ms <= 0. */
void sl_retry_attach(Google__Rpc__Status *status, sl_retry_detail *d, int64_t retry_ms);

/* The grpc-status-details-bin value for a call's status: a serialized
 * google.rpc.Status of code, message and, when retry_ms > 0, a RetryInfo.
 * The caller unrefs the slice. */
grpc_slice sl_retry_status_details(int code, const char *message, int64_t retry_ms);

/* The retry delay a serialized google.rpc.Status asks for, in ms; -1 when
 * it holds no RetryInfo (or is not a Status). For tests and clients. */
int64_t sl_retry_delay_ms(const uint8_t *status, size_t len);

#endif
