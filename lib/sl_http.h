/* sl_http: the small HTTP endpoint every service runs beside its real work,
 * for Prometheus and for Kubernetes probes (libmicrohttpd, its own thread).
 *
 *     GET /metrics  200, text/plain; version=0.0.4, sl_metrics_render()
 *     GET /healthz  200 "ok\n" as long as the process serves at all
 *     GET /readyz   200 "ready\n" when ready() says so, else 503 "<why>\n"
 *
 * Any other path is 404; any method but GET (or HEAD, which HTTP requires
 * alongside it) is 405. Liveness is deliberately trivial: a service that
 * lost NATS or MongoDB is not ready, but restarting it would not help.
 *
 * Abuse. A probe must answer even while someone holds connections open
 * without sending a request (a kubelet that times out restarts a healthy
 * pod). So connections are cheap to hold and quick to drop: up to
 * SL_HTTP_MAX_CONNECTIONS at once (the process's descriptor limit is raised
 * to allow it), at most SL_HTTP_MAX_PER_IP from one address other than
 * loopback (the kubelet probes from the node's address, an abuser from its
 * own), and any connection idle for SL_HTTP_IDLE_TIMEOUT_S seconds, before
 * its request or after its answer, is closed.
 *
 * Threads: requests are served one at a time on libmicrohttpd's internal
 * polling thread (epoll), so ready() and every sl_metric_gauge_fn callback
 * run there. libmicrohttpd's own error messages go to sl_log at warn
 * level. */
#ifndef SL_HTTP_H
#define SL_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define SL_HTTP_MAX_CONNECTIONS 4096
#define SL_HTTP_MAX_PER_IP 64
#define SL_HTTP_IDLE_TIMEOUT_S 5

/* Runs on the HTTP thread for each GET /readyz. Returns true when ready;
 * otherwise may write one line (no newline) into why, which holds whylen
 * bytes and starts empty. */
typedef bool (*sl_ready_fn)(void *closure, char *why, size_t whylen);

typedef struct sl_http sl_http;

/* Binds listen, a numeric address and port ("0.0.0.0:9090", "[::]:9090",
 * "127.0.0.1:0" for any free port), and starts serving. ready may be NULL (always ready); closure
 * must outlive the endpoint. Returns NULL on failure with err set to one line,
 * e.g. "cannot listen on 127.0.0.1:9090: Address already in use". */
sl_http *sl_http_start(const char *listen, sl_ready_fn ready, void *closure, char *err,
                       size_t errlen);

/* The bound port, useful after asking for port 0. */
int sl_http_port(const sl_http *h);

/* Stops serving, waits for the HTTP thread, closes the socket and frees h.
 * NULL is a no-op. */
void sl_http_stop(sl_http *h);

#endif
