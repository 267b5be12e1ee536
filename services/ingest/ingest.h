/* ingest: the sluice.v1.IngestService handlers and gRPC health.
 *
 * An ingest_service joins the gRPC server (sl_grpc_server) to JetStream
 * (sl_js). Each call is a small state machine driven by completion-queue tags
 * and by PubAck callbacks; no thread ever waits for a PubAck. A record's
 * journey: the call authenticated once (sl_auth: principal) -> check its
 * strings on the wire (sl_pb_check) -> decode -> validate (sl_record) ->
 * authorize its type for the principal -> take an in-flight slot -> build
 * the stream message (known fields only, Sluice-Principal set from the
 * verified identity) -> js publish -> PubAck -> answer. The client's answer is
 * sent only from the PubAck (or its failure), which is the product's promise:
 * an ack means JetStream stored the record. */
#ifndef SLUICE_INGEST_H
#define SLUICE_INGEST_H

#include <stdbool.h>
#include <stdint.h>

#include "sl_auth.h"
#include "sl_grpc_server.h"
#include "sl_js.h"
#include "sl_record.h"

typedef struct ingest_config {
    const char *stream;         /* the stream records go to, e.g. "SLUICE" */
    int64_t publish_timeout_ms; /* UNAVAILABLE when no PubAck came by then */
    int64_t max_in_flight;      /* records published and not yet acked, all calls */
    int64_t max_in_flight_bytes; /* their stream messages' bytes, all calls */
    int64_t max_open_streams;   /* IngestStream calls open at once */
    int64_t stream_window;      /* records in flight per IngestStream call */
    int64_t max_batch;          /* records per IngestBatch call */
    sl_record_limits limits;
    sl_auth *auth;              /* who may call and write what (sl_auth); borrowed */
} ingest_config;

typedef struct ingest_service ingest_service;

/* Routes the IngestService methods of srv to a new service that publishes
 * through js. Both must outlive the service. NULL without memory. */
ingest_service *ingest_service_new(const ingest_config *cfg, sl_grpc_server *srv, sl_js *js);

/* Marks the service as draining: health answers NOT_SERVING, and every open
 * IngestStream stops reading, answers what it has read and ends with
 * UNAVAILABLE. Runs as the server's drain callback. */
void ingest_service_drain(void *service);

/* Records published and not yet answered by JetStream. */
int64_t ingest_service_in_flight(ingest_service *svc);

/* Frees the service; every call must be done. Its in-flight gauge reads 0
 * from then on, so a scrape racing the shutdown never reads freed memory. */
void ingest_service_free(ingest_service *svc);

#endif
