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

/* The answer to one ServerReflectionRequest, data[0..len), from index: 0
 * with *out (malloc'd, the caller's) and *outlen set to the packed
 * ServerReflectionResponse; or a gRPC status code, with *why set to a
 * static message: INVALID_ARGUMENT when the bytes are not a request,
 * RESOURCE_EXHAUSTED without memory. What a call does with each request;
 * pure, any thread. */
int reflection_answer(const sl_reflect *index, const uint8_t *data, size_t len, uint8_t **out,
                      size_t *outlen, const char **why);

#endif
