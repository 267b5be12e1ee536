/* health: grpc.health.v1.Health for sluice-ingest, Check and Watch.
 *
 * The answer is SERVING while ready(closure) says so (JetStream reachable and
 * the stream present) and the server is not draining; NOT_SERVING otherwise.
 * The empty service name and "sluice.v1.IngestService" are known; Check on
 * any other name is NOT_FOUND and Watch answers SERVICE_UNKNOWN, as the
 * protocol says. Watch sends the current status at once and again on every
 * change; a thread looks for changes four times a second. */
#ifndef SLUICE_HEALTH_H
#define SLUICE_HEALTH_H

#include <stdbool.h>

#include "sl_grpc_server.h"

typedef struct health_service health_service;
typedef bool (*health_ready_fn)(void *closure);

/* Starts the watch thread and routes Check and Watch of srv to the new
 * service. NULL, with nothing routed, when memory or the thread could not be
 * had. ready runs on gRPC workers and on the watch thread. */
health_service *health_service_new(sl_grpc_server *srv, health_ready_fn ready, void *closure);

/* Watch calls open at once (each holds a stream and a list entry); one more
 * gets RESOURCE_EXHAUSTED. Check is never limited. Call before serving. */
#define HEALTH_MAX_WATCHES 256
void health_service_limit(health_service *h, int64_t max_watches);

/* From now on NOT_SERVING; open watches get it and then end (UNAVAILABLE). */
void health_service_drain(health_service *h);

/* Stops the watch thread and frees; every call must be done. */
void health_service_free(health_service *h);

#endif
