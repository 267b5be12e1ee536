/* sl_grpc_server: a gRPC server on the C core (grpc.h), without C++.
 *
 * One completion queue, served by a pool of worker threads that each loop on
 * grpc_completion_queue_next. Every tag put on the queue is an sl_tag: the
 * worker that dequeues it calls tag->done(tag, ok), so a handler's state
 * machine is a set of sl_tag members in its own call struct, each with the
 * function that continues the call. Completions of one call may run on
 * different workers, and a handler's own callbacks (a PubAck, a timer) may
 * run on other threads still: call state needs its own lock.
 *
 * New calls are accepted with grpc_server_request_call (the generic form, no
 * pre-registered methods) and routed by method path to a handler. A handler
 * owns the grpc_call it is given and hands it back with
 * sl_grpc_server_call_done once nothing of it is outstanding; that count is
 * what graceful shutdown waits for. Unknown methods get UNIMPLEMENTED.
 *
 * Shutdown (sl_grpc_server_stop): stop accepting, let the service drain its
 * long-lived calls, wait up to the grace period for every call to finish,
 * cancel the rest, then stop the workers. */
#ifndef SL_GRPC_SERVER_H
#define SL_GRPC_SERVER_H

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_tag {
    void (*done)(struct sl_tag *tag, bool ok);
} sl_tag;

typedef struct sl_grpc_server sl_grpc_server;

/* Per-method counters: grpc_server_started_total and
 * grpc_server_handled_total{grpc_service,grpc_method,grpc_code}, the names
 * the gRPC ecosystem's Prometheus interceptors use. */
typedef struct sl_rpc_stats sl_rpc_stats;

/* Counts a call's final status; any thread, no lock. */
void sl_rpc_stats_handled(sl_rpc_stats *st, int code);

/* What a handler learns of a new call; valid only while the handler runs. */
typedef struct sl_rpc_start {
    sl_grpc_server *server;
    grpc_call *call; /* owned by the handler from now on */
    const char *method;
    const grpc_metadata_array *metadata;
    int64_t deadline_ms; /* on sl_time_mono_ms's clock; INT64_MAX when none */
    sl_rpc_stats *stats; /* the method's counters, for its final status */
} sl_rpc_start;

/* Runs on a worker thread for each new call of its method. */
typedef void (*sl_rpc_handler)(void *closure, const sl_rpc_start *start);

/* Called (on the thread calling sl_grpc_server_stop) once accepting has
 * stopped, so the service can end its long-lived calls. */
typedef void (*sl_drain_fn)(void *closure);

/* What one client connection may hold, and for how long. 0 leaves a
 * setting at gRPC core's default. */
typedef struct sl_grpc_limits {
    int64_t max_concurrent_streams; /* calls at once on one HTTP/2 connection */
    int64_t max_connection_idle_ms; /* a connection without calls is closed (GOAWAY) */
    int64_t max_connection_age_ms;  /* a connection is closed after this long... */
    int64_t max_connection_age_grace_ms; /* ...once its calls had this long to finish */
    int64_t keepalive_time_ms;      /* the server pings an idle connection this often */
    int64_t keepalive_timeout_ms;   /* and drops it without an answer by then */
    int64_t min_ping_interval_ms;   /* pings closer than this from a client are strikes */
    int64_t max_ping_strikes;       /* strikes before GOAWAY (too_many_pings) */
    int64_t memory_bytes;           /* gRPC core's resource quota: transport memory */
    int64_t handshake_timeout_ms;   /* a connection must finish its (TLS) handshake by then */
    int64_t max_metadata_bytes;     /* request headers, all together */
} sl_grpc_limits;

typedef struct sl_grpc_server_config {
    const char *listen;         /* "0.0.0.0:50051" */
    int threads;                /* worker threads, >= 1 */
    int64_t max_message_bytes;  /* largest request accepted */
    grpc_server_credentials *creds; /* the port's (TLS, sl_tls); NULL: plaintext. Borrowed. */
    const sl_grpc_limits *limits;   /* NULL: gRPC core's defaults */
} sl_grpc_server_config;

/* Creates and binds the server (nothing runs yet). NULL on failure, with
 * err set to one line. */
sl_grpc_server *sl_grpc_server_new(const sl_grpc_server_config *cfg, char *err, size_t errlen);

/* Routes "/package.Service/Method" to handler. Call before start. */
void sl_grpc_server_route(sl_grpc_server *s, const char *method, sl_rpc_handler handler,
                          void *closure);

/* Starts the workers and begins accepting. false, with err set to one line
 * and nothing accepted, when a worker thread cannot be started; the server
 * must still be stopped. */
bool sl_grpc_server_start(sl_grpc_server *s, char *err, size_t errlen);

/* The bound port, useful after asking for port 0. */
int sl_grpc_server_port(const sl_grpc_server *s);

grpc_completion_queue *sl_grpc_server_cq(sl_grpc_server *s);

/* Returns a call to the server: unrefs it and counts it finished. */
void sl_grpc_server_call_done(sl_grpc_server *s, grpc_call *call);

/* Number of calls accepted and not yet done. */
int sl_grpc_server_active_calls(sl_grpc_server *s);

/* Graceful stop, as described above; then frees the server. */
void sl_grpc_server_stop(sl_grpc_server *s, int64_t grace_ms, sl_drain_fn drain, void *closure);

/* ---- small helpers for handlers ----------------------------------------- */

/* Copies a received message into one contiguous malloc'd buffer and destroys
 * bb. *len receives its length. NULL when bb is NULL or memory ran out. */
uint8_t *sl_grpc_bb_take(grpc_byte_buffer *bb, size_t *len);

/* Wraps a malloc'd buffer (ownership passes to the byte buffer). */
grpc_byte_buffer *sl_grpc_bb_wrap(uint8_t *data, size_t len);

/* Copies the first value of key from md into out (NUL-terminated, truncated
 * to outlen-1); false when absent. */
bool sl_grpc_md_get(const grpc_metadata_array *md, const char *key, char *out, size_t outlen);

/* The details of a status, as gRPC sends them: message (NULL: none) made
 * valid UTF-8 (sl_utf8), which the protocol requires and strict clients
 * enforce. The caller owns the slice. */
grpc_slice sl_grpc_status_slice(const char *message);

/* Answers a new call with a status and nothing else, then hands it back to
 * the server. For calls a handler rejects before reading anything. */
void sl_grpc_reply_status(const sl_rpc_start *start, grpc_status_code code, const char *message);

/* The same with a RetryInfo of retry_ms (sl_retry) when retry_ms > 0. */
void sl_grpc_reply_status_retry(const sl_rpc_start *start, grpc_status_code code,
                                const char *message, int64_t retry_ms);

#endif
