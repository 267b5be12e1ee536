/* sl_js: the JetStream side of Sluice: one NATS connection that reconnects by
 * itself, the stream provisioned on start, and asynchronous publishing with
 * one callback per message.
 *
 * Publishing. sl_js_publish hands a message to cnats' js_PublishMsgAsync and
 * returns at once; the PubAck (or the error, or the timeout) comes back later
 * through the caller's callback, exactly once, on cnats' PubAck delivery
 * thread. Many messages are in flight at a time and no thread waits for any
 * of them. The caller supplies the sl_js_pending record that ties a message
 * to its callback; it must stay valid until the callback has run. cnats gives
 * back the original natsMsg with each PubAck, so sl_js keeps a small hash
 * table from message to pending record. A message larger than the server's
 * max_payload (body and headers, as NATS counts it) is refused before it is
 * sent, with RESOURCE_EXHAUSTED: cnats checks the body alone, and a server
 * that receives more than max_payload closes the connection, failing every
 * other publish in flight.
 *
 * Provisioning. A background thread runs sl_stream_ensure: it creates the
 * stream when it is missing and brings the settings the operator chose to an
 * existing one (see sl_stream.h). It runs again after each reconnect and
 * whenever a publish finds no stream, so a server that came back empty gets
 * its stream again. sl_js_ready says whether publishing can
 * succeed now (connected, stream present): the health check's answer.
 *
 * Access. The connection uses the service's NATS settings (sl_nats.h):
 * servers, credentials, TLS. What the server refuses later (a subject the
 * user may not publish or subscribe to) comes back asynchronously; sl_js
 * logs it, at most once a second with a count of the ones in between, as
 * an error naming the subject: a missing permission shows in the log, not
 * only as a request that timed out. */
#ifndef SL_JS_H
#define SL_JS_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sl_nats.h"
#include "sl_stream.h"

typedef struct sl_js sl_js;

typedef struct sl_js_config {
    const sl_nats_settings *nats; /* servers, credentials, TLS (checked) */
    const char *client_name;      /* shown by the server, e.g. "sluice-ingest" */
    sl_stream_config stream; /* the record stream (only name matters without provision) */
    bool provision;          /* create the stream when missing, update its settings */
} sl_js_config;

/* The outcome of one publish. code is 0 or a gRPC status code; error explains
 * a failure. All pointers are valid only during the callback. */
typedef struct sl_js_ack {
    int code;
    const char *error;
    const char *stream;
    uint64_t sequence;
    bool duplicate;
    int64_t retry_ms; /* a failure a retry can cure: wait this long first (sl_retry); else 0 */
} sl_js_ack;

/* Runs on cnats' PubAck thread; must not block. */
typedef void (*sl_js_ack_cb)(void *closure, const sl_js_ack *ack);

/* Owned by the caller (usually embedded in its per-record state). */
typedef struct sl_js_pending {
    natsMsg *msg;
    struct sl_js_pending *next;
    sl_js_ack_cb cb;
    void *closure;
} sl_js_pending;

/* Connects (or keeps trying in the background when the server is not up
 * yet) and starts provisioning. max_pending sizes the pending table. */
natsStatus sl_js_open(sl_js **out, const sl_js_config *cfg, size_t max_pending);

/* Stops provisioning, closes the connection and frees everything. Every
 * publish must have called back before. */
void sl_js_close(sl_js *js);

bool sl_js_connected(sl_js *js);
bool sl_js_ready(sl_js *js);

/* The connected server's max_payload in bytes; 0 while not connected. */
int64_t sl_js_max_payload(sl_js *js);

/* The header bytes sl_js_publish adds to every message (Nats-Expected-Stream),
 * to add to a message's own size when comparing it with max_payload. */
size_t sl_js_header_bytes(const sl_js *js);

/* Waits up to timeout_ms for sl_js_ready; returns its last answer. */
bool sl_js_wait_ready(sl_js *js, int64_t timeout_ms);

/* Publishes msg (always consumed) and calls cb(closure, ack) once when the
 * PubAck, an error or timeout_ms passed. Returns 0 when the message is on its
 * way; otherwise a gRPC status code, with nothing in flight and no callback
 * to come, and err describes why: UNAVAILABLE when NATS is not reachable
 * (*retry_ms set to the wait a client should take), RESOURCE_EXHAUSTED when
 * the message exceeds the server's max_payload (*retry_ms 0: no retry can
 * help). */
int sl_js_publish(sl_js *js, natsMsg *msg, int64_t timeout_ms, sl_js_pending *p,
                  sl_js_ack_cb cb, void *closure, char *err, size_t errlen, int64_t *retry_ms);

/* The connection and JetStream context, for consumers that need more than
 * publishing (owned by sl_js). */
natsConnection *sl_js_conn(sl_js *js);
jsCtx *sl_js_ctx(sl_js *js);

#endif
