/* sl_grpc_call: the life of one server-side call, shared by every handler.
 *
 * An sl_call is embedded at the start of a handler's own call struct. It
 * owns the grpc_call, one receive and one send in flight at a time, the
 * final status, and a reference count of what is outstanding on the call's
 * behalf: each started batch holds a reference, and so may anything else the
 * handler waits for (a PubAck, a watch). Whoever drops the last reference
 * frees the call, so no completion ever lands in freed memory.
 *
 * The handler supplies sl_call_ops; sl_call runs them with c->mu held, on the
 * gRPC worker that dequeued the completion:
 *   recv(c, data, len)  a message arrived (data NULL: the client half-closed,
 *                       or the call died, then c->dead is set)
 *   sent(c)             a send finished (optional)
 *   closed(c)           the call is over for the client: status sent or
 *                       cancelled (optional)
 *   unlink(c)           the last reference is gone: take the call out of
 *                       any list another thread walks (optional; mu not
 *                       held but still alive, so a walker that found the
 *                       call there can still lock it, see refs == 0 and
 *                       leave it alone)
 *   destroy(c)          free the handler's struct (mu destroyed by then)
 * Anything else that touches the call (another thread) takes c->mu too. */
#ifndef SL_GRPC_CALL_H
#define SL_GRPC_CALL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sl_grpc_server.h"

typedef struct sl_call sl_call;

typedef struct sl_call_ops {
    void (*recv)(sl_call *c, const uint8_t *data, size_t len);
    void (*sent)(sl_call *c);
    void (*closed)(sl_call *c);
    void (*unlink)(sl_call *c);
    void (*destroy)(sl_call *c);
} sl_call_ops;

struct sl_call {
    sl_tag on_recv, on_send, on_close;
    const sl_call_ops *ops;
    sl_grpc_server *server;
    grpc_call *call;
    pthread_mutex_t mu;
    int refs;
    grpc_byte_buffer *recv_buf;
    grpc_byte_buffer *send_buf;
    grpc_slice status_details;
    grpc_metadata status_md; /* grpc-status-details-bin, when retry_ms > 0 */
    int64_t retry_ms;        /* the final status's RetryInfo (sl_retry); 0: none */
    int cancelled; /* written by RECV_CLOSE_ON_SERVER */
    bool metadata_sent, send_busy, recv_busy, status_sent, dead;
    int64_t deadline_ms;
    sl_rpc_stats *stats;
};

/* Takes over start->call and starts receiving. The first message (or the
 * half-close) comes to ops->recv. */
void sl_call_start(sl_call *c, const sl_call_ops *ops, const sl_rpc_start *start);

/* Asks for the next message (one receive at a time). */
void sl_call_recv_locked(sl_call *c);

/* Sends body (malloc'd, consumed; may be NULL) and, when final, the status.
 * One send at a time: callers check c->send_busy first. No-op on a dead
 * call or after the status. */
void sl_call_send_locked(sl_call *c, uint8_t *body, size_t len, bool final, int code,
                         const char *message);

/* A status with no message; no-op when already sent or dead. */
void sl_call_status_locked(sl_call *c, int code, const char *message);

/* The same with a RetryInfo of retry_ms (sl_retry) in the trailing
 * grpc-status-details-bin, when retry_ms > 0. */
void sl_call_status_retry_locked(sl_call *c, int code, const char *message, int64_t retry_ms);

/* References for work outside gRPC batches (e.g. a publish in flight). */
void sl_call_ref_locked(sl_call *c);
/* Drops a reference and unlocks; frees the call when it was the last. */
void sl_call_unref_unlock(sl_call *c);

#endif
