/* reflection: gRPC server reflection (grpc.reflection.v1 and v1alpha) for
 * sluice-ingest, so that `grpcurl -plaintext host:50051 list` and
 * `describe` work with no .proto file at hand. The two versions share one
 * wire format, so one implementation (on the v1 messages) serves both. */
#ifndef SLUICE_REFLECTION_H
#define SLUICE_REFLECTION_H

#include "sl_auth.h"
#include "sl_grpc_server.h"
#include "sl_reflect.h"

typedef struct reflection_service reflection_service;

/* Serves the files of index (which must outlive the service) to callers
 * that auth lets in, as IngestService would. */
reflection_service *reflection_service_new(sl_grpc_server *srv, const sl_reflect *index,
                                           sl_auth *auth);
void reflection_service_free(reflection_service *r);

#endif
