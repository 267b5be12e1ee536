/* sl_grpc_server: see sl_grpc_server.h.
 *
 * Accepting: a fixed set of accept slots, each an outstanding
 * grpc_server_request_call. When one completes, its call is routed and the
 * slot is armed again, so that many calls can arrive between two turns of
 * any single worker. */
#include "sl_grpc_server.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_grpc_codes.h"
#include "sl_log.h"
#include "sl_metrics.h"
#include "sl_retry.h"
#include "sl_time.h"
#include "sl_utf8.h"

#define SL_ACCEPT_SLOTS 128
#define SL_MAX_ROUTES 16

struct sl_rpc_stats {
    sl_metric *handled_family;
    char service[128], method[128];
    sl_series *started;
    _Atomic(sl_series *) handled[17]; /* by gRPC code, made on first use */
};

typedef struct route {
    char *method;
    sl_rpc_handler handler;
    void *closure;
    sl_rpc_stats stats;
} route;

typedef struct accept_slot {
    sl_tag tag;
    sl_grpc_server *server;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array metadata;
} accept_slot;

/* A call answered with a bare status (unknown method, early rejection). */
typedef struct status_call {
    sl_tag tag;
    sl_grpc_server *server;
    sl_rpc_stats *stats;
    grpc_call *call;
    grpc_slice details;
    grpc_metadata retry_md; /* grpc-status-details-bin when a retry hint goes along */
    bool has_retry;
    int cancelled;
} status_call;

struct sl_grpc_server {
    grpc_server *server;
    grpc_completion_queue *cq;
    pthread_t *workers;
    int nworkers; /* configured */
    int nstarted; /* running: workers[0 .. nstarted) */
    int port;
    route routes[SL_MAX_ROUTES];
    int nroutes;
    sl_rpc_stats unknown; /* calls to methods nobody serves */
    accept_slot slots[SL_ACCEPT_SLOTS];
    atomic_bool stopping;
    sl_tag shutdown_tag;

    pthread_mutex_t mu; /* guards active and shutdown_done, with cond */
    pthread_cond_t cond;
    int active;
    bool shutdown_done;
};

/* ---- gRPC core's own logs ------------------------------------------------
 * gRPC core logs through gpr_log; its lines become Sluice's JSON lines. While
 * the server binds, its errors are demoted to debug: a failed bind is reported
 * once, by the caller, as one clear line. */

static atomic_bool quiet_grpc_logs;

static void grpc_log_to_sl(gpr_log_func_args *args)
{
    sl_log_level level = args->severity == GPR_LOG_SEVERITY_ERROR ? SL_LOG_WARN
                         : args->severity == GPR_LOG_SEVERITY_INFO ? SL_LOG_INFO
                                                                    : SL_LOG_DEBUG;
    bson_t *f;
    if (atomic_load(&quiet_grpc_logs))
        level = SL_LOG_DEBUG;
    f = sl_log_begin(level, args->message);
    if (f == NULL)
        return;
    BSON_APPEND_UTF8(f, "component", "grpc");
    BSON_APPEND_UTF8(f, "file", args->file);
    BSON_APPEND_INT32(f, "line", args->line);
    sl_log_end(f);
}

/* ---- byte buffers and metadata ------------------------------------------ */

uint8_t *sl_grpc_bb_take(grpc_byte_buffer *bb, size_t *len)
{
    grpc_byte_buffer_reader reader;
    grpc_slice all;
    uint8_t *out = NULL;

    if (bb == NULL)
        return NULL;
    if (grpc_byte_buffer_reader_init(&reader, bb)) {
        all = grpc_byte_buffer_reader_readall(&reader);
        *len = GRPC_SLICE_LENGTH(all);
        out = malloc(*len ? *len : 1);
        if (out != NULL)
            memcpy(out, GRPC_SLICE_START_PTR(all), *len);
        grpc_slice_unref(all);
        grpc_byte_buffer_reader_destroy(&reader);
    }
    grpc_byte_buffer_destroy(bb);
    return out;
}

grpc_byte_buffer *sl_grpc_bb_wrap(uint8_t *data, size_t len)
{
    grpc_slice slice = grpc_slice_new(data, len, free);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return bb;
}

bool sl_grpc_md_get(const grpc_metadata_array *md, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < md->count; i++) {
        const grpc_slice *k = &md->metadata[i].key;
        if (GRPC_SLICE_LENGTH(*k) == klen && memcmp(GRPC_SLICE_START_PTR(*k), key, klen) == 0) {
            const grpc_slice *v = &md->metadata[i].value;
            size_t n = GRPC_SLICE_LENGTH(*v);
            if (n >= outlen)
                n = outlen - 1;
            memcpy(out, GRPC_SLICE_START_PTR(*v), n);
            out[n] = '\0';
            return true;
        }
    }
    return false;
}

grpc_slice sl_grpc_status_slice(const char *message)
{
    char *text = sl_utf8_dup(message != NULL ? message : "");
    if (text == NULL)
        return grpc_empty_slice();
    return grpc_slice_new(text, strlen(text), free);
}

/* ---- per-method counters ------------------------------------------------------ */

static void stats_init(sl_rpc_stats *st, const char *path)
{
    const char *slash = strrchr(path, '/');
    sl_metric *started = sl_metric_counter("grpc_server_started_total",
                                           "RPCs started on the server.",
                                           "grpc_service,grpc_method");
    st->handled_family = sl_metric_counter("grpc_server_handled_total",
                                           "RPCs completed on the server, by status code.",
                                           "grpc_service,grpc_method,grpc_code");
    if (path[0] == '/' && slash != NULL && slash != path) {
        snprintf(st->service, sizeof(st->service), "%.*s", (int)(slash - path - 1), path + 1);
        snprintf(st->method, sizeof(st->method), "%s", slash + 1);
    } else {
        snprintf(st->service, sizeof(st->service), "%s", path);
        snprintf(st->method, sizeof(st->method), "%s", path);
    }
    st->started = sl_metric_with(started, st->service, st->method, NULL);
}

void sl_rpc_stats_handled(sl_rpc_stats *st, int code)
{
    sl_series *s;
    if (st == NULL)
        return;
    if (code < 0 || code > 16)
        code = SL_GRPC_UNKNOWN;
    s = atomic_load(&st->handled[code]);
    if (s == NULL) {
        /* the registry returns the same series to racing threads */
        s = sl_metric_with(st->handled_family, st->service, st->method, sl_grpc_code_name(code),
                           NULL);
        atomic_store(&st->handled[code], s);
    }
    sl_series_inc(s);
}

/* ---- bare status replies -------------------------------------------------- */

static void status_call_done(sl_tag *tag, bool ok)
{
    status_call *sc = (status_call *)tag;
    (void)ok;
    grpc_slice_unref(sc->details);
    if (sc->has_retry)
        grpc_slice_unref(sc->retry_md.value);
    sl_grpc_server_call_done(sc->server, sc->call);
    free(sc);
}

void sl_grpc_reply_status(const sl_rpc_start *start, grpc_status_code code, const char *message)
{
    sl_grpc_reply_status_retry(start, code, message, 0);
}

void sl_grpc_reply_status_retry(const sl_rpc_start *start, grpc_status_code code,
                                const char *message, int64_t retry_ms)
{
    sl_grpc_server *s = start->server;
    grpc_call *call = start->call;
    status_call *sc = calloc(1, sizeof(*sc));
    grpc_op ops[3];

    if (sc == NULL) {
        grpc_call_cancel(call, NULL);
        sl_grpc_server_call_done(s, call);
        return;
    }
    sc->tag.done = status_call_done;
    sc->server = s;
    sc->call = call;
    sc->details = sl_grpc_status_slice(message);
    sl_rpc_stats_handled(start->stats, code);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[1].data.send_status_from_server.status = code;
    ops[1].data.send_status_from_server.status_details = &sc->details;
    if (retry_ms > 0) {
        char *text = grpc_slice_to_c_string(sc->details);
        sc->retry_md.key = grpc_slice_from_static_string("grpc-status-details-bin");
        sc->retry_md.value = sl_retry_status_details(code, text, retry_ms);
        sc->has_retry = true;
        gpr_free(text);
        ops[1].data.send_status_from_server.trailing_metadata_count = 1;
        ops[1].data.send_status_from_server.trailing_metadata = &sc->retry_md;
    }
    ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[2].data.recv_close_on_server.cancelled = &sc->cancelled;
    if (grpc_call_start_batch(call, ops, 3, &sc->tag, NULL) != GRPC_CALL_OK)
        status_call_done(&sc->tag, false);
}

/* ---- accepting -------------------------------------------------------------- */

static void arm_slot(accept_slot *a);

static int64_t deadline_ms(gpr_timespec deadline)
{
    gpr_timespec mono = gpr_convert_clock_type(deadline, GPR_CLOCK_MONOTONIC);
    gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
    int64_t left;

    if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) == 0)
        return INT64_MAX;
    left = gpr_time_to_millis(gpr_time_sub(mono, now));
    return sl_time_mono_ms() + left;
}

static void route_call(accept_slot *a)
{
    sl_grpc_server *s = a->server;
    size_t mlen = GRPC_SLICE_LENGTH(a->details.method);
    char method[256];
    sl_rpc_start start;

    if (mlen >= sizeof(method))
        mlen = sizeof(method) - 1;
    memcpy(method, GRPC_SLICE_START_PTR(a->details.method), mlen);
    method[mlen] = '\0';

    pthread_mutex_lock(&s->mu);
    s->active++;
    pthread_mutex_unlock(&s->mu);

    for (int i = 0; i < s->nroutes; i++) {
        if (strcmp(s->routes[i].method, method) == 0) {
            start.server = s;
            start.call = a->call;
            start.method = method;
            start.metadata = &a->metadata;
            start.deadline_ms = deadline_ms(a->details.deadline);
            start.stats = &s->routes[i].stats;
            sl_series_inc(start.stats->started);
            s->routes[i].handler(s->routes[i].closure, &start);
            return;
        }
    }
    char msg[300];
    snprintf(msg, sizeof(msg), "unknown method %s", method);
    start.server = s;
    start.call = a->call;
    start.stats = &s->unknown;
    sl_series_inc(s->unknown.started);
    sl_grpc_reply_status(&start, GRPC_STATUS_UNIMPLEMENTED, msg);
}

static void accept_done(sl_tag *tag, bool ok)
{
    accept_slot *a = (accept_slot *)tag;
    if (ok && a->call != NULL)
        route_call(a);
    grpc_call_details_destroy(&a->details);
    grpc_metadata_array_destroy(&a->metadata);
    a->call = NULL;
    if (ok && !atomic_load(&a->server->stopping))
        arm_slot(a);
}

static void arm_slot(accept_slot *a)
{
    sl_grpc_server *s = a->server;
    grpc_call_details_init(&a->details);
    grpc_metadata_array_init(&a->metadata);
    if (grpc_server_request_call(s->server, &a->call, &a->details, &a->metadata, s->cq, s->cq,
                                 &a->tag) != GRPC_CALL_OK) {
        grpc_call_details_destroy(&a->details);
        grpc_metadata_array_destroy(&a->metadata);
    }
}

/* ---- workers ------------------------------------------------------------------ */

static void *worker_main(void *arg)
{
    sl_grpc_server *s = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            sl_tag *tag = ev.tag;
            tag->done(tag, ev.success != 0);
        }
    }
    return NULL;
}

static void shutdown_done(sl_tag *tag, bool ok)
{
    sl_grpc_server *s = (sl_grpc_server *)((char *)tag - offsetof(sl_grpc_server, shutdown_tag));
    (void)ok;
    pthread_mutex_lock(&s->mu);
    s->shutdown_done = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

/* ---- life cycle --------------------------------------------------------------- */

#define MAX_ARGS 16

/* Appends an integer channel argument when v is set (> 0), clamped to int. */
static void arg_int(grpc_arg *args, size_t *n, char *key, int64_t v)
{
    if (v <= 0 || *n == MAX_ARGS)
        return;
    args[*n].type = GRPC_ARG_INTEGER;
    args[*n].key = key;
    args[(*n)++].value.integer = v > INT32_MAX ? INT32_MAX : (int)v;
}

/* The server's channel arguments: message sizes, the port kept to this
 * process, and the limits. */
static size_t args_fill(const sl_grpc_server_config *cfg, grpc_arg *args, grpc_resource_quota *quota)
{
    const sl_grpc_limits *l = cfg->limits;
    size_t n = 0;

    arg_int(args, &n, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, cfg->max_message_bytes);
    arg_int(args, &n, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, cfg->max_message_bytes);
    /* gRPC core would share the port with another process (SO_REUSEPORT):
     * a second sluice-ingest must fail to bind, not split the traffic. */
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[n++].value.integer = 0;
    if (l == NULL)
        return n;
    arg_int(args, &n, GRPC_ARG_MAX_CONCURRENT_STREAMS, l->max_concurrent_streams);
    arg_int(args, &n, GRPC_ARG_MAX_CONNECTION_IDLE_MS, l->max_connection_idle_ms);
    arg_int(args, &n, GRPC_ARG_MAX_CONNECTION_AGE_MS, l->max_connection_age_ms);
    arg_int(args, &n, GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, l->max_connection_age_grace_ms);
    arg_int(args, &n, GRPC_ARG_KEEPALIVE_TIME_MS, l->keepalive_time_ms);
    arg_int(args, &n, GRPC_ARG_KEEPALIVE_TIMEOUT_MS, l->keepalive_timeout_ms);
    arg_int(args, &n, GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
            l->min_ping_interval_ms);
    arg_int(args, &n, GRPC_ARG_HTTP2_MAX_PING_STRIKES, l->max_ping_strikes);
    arg_int(args, &n, GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, l->handshake_timeout_ms);
    arg_int(args, &n, GRPC_ARG_MAX_METADATA_SIZE, l->max_metadata_bytes);
    if (quota != NULL && n < MAX_ARGS) {
        args[n].type = GRPC_ARG_POINTER;
        args[n].key = GRPC_ARG_RESOURCE_QUOTA;
        args[n].value.pointer.p = quota;
        args[n++].value.pointer.vtable = grpc_resource_quota_arg_vtable();
    }
    return n;
}

sl_grpc_server *sl_grpc_server_new(const sl_grpc_server_config *cfg, char *err, size_t errlen)
{
    sl_grpc_server *s = calloc(1, sizeof(*s));
    grpc_arg args[MAX_ARGS];
    grpc_channel_args chargs;
    grpc_resource_quota *quota = NULL;
    grpc_server_credentials *creds;
    int port;

    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (cfg->limits != NULL && cfg->limits->memory_bytes > 0) {
        quota = grpc_resource_quota_create("sluice-ingest");
        grpc_resource_quota_resize(quota, (size_t)cfg->limits->memory_bytes);
    }
    chargs.num_args = args_fill(cfg, args, quota);
    chargs.args = args;

    gpr_set_log_function(grpc_log_to_sl);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->nworkers = cfg->threads > 0 ? cfg->threads : 1;
    stats_init(&s->unknown, "/unknown/unknown");
    s->cq = grpc_completion_queue_create_for_next(NULL);
    s->server = grpc_server_create(&chargs, NULL);
    if (quota != NULL)
        grpc_resource_quota_unref(quota); /* the server holds its own reference */
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    creds = cfg->creds != NULL ? cfg->creds : grpc_insecure_server_credentials_create();
    atomic_store(&quiet_grpc_logs, true);
    port = grpc_server_add_http2_port(s->server, cfg->listen, creds);
    atomic_store(&quiet_grpc_logs, false);
    if (cfg->creds == NULL)
        grpc_server_credentials_release(creds);
    s->port = port;
    if (port == 0) {
        snprintf(err, errlen, "cannot listen on %s (address in use or invalid)", cfg->listen);
        grpc_server_destroy(s->server);
        grpc_completion_queue_shutdown(s->cq);
        while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(s->cq);
        free(s);
        return NULL;
    }
    return s;
}

void sl_grpc_server_route(sl_grpc_server *s, const char *method, sl_rpc_handler handler,
                          void *closure)
{
    if (s->nroutes == SL_MAX_ROUTES)
        abort(); /* a programming error: raise SL_MAX_ROUTES */
    s->routes[s->nroutes].method = strdup(method);
    s->routes[s->nroutes].handler = handler;
    s->routes[s->nroutes].closure = closure;
    stats_init(&s->routes[s->nroutes].stats, method);
    s->nroutes++;
}

int sl_grpc_server_port(const sl_grpc_server *s)
{
    return s->port;
}

/* Starts up to n workers; returns 0 or the error of the first that failed. */
static int start_workers(sl_grpc_server *s, int n)
{
    int e = 0;
    s->workers = calloc((size_t)n, sizeof(pthread_t));
    if (s->workers == NULL)
        return ENOMEM;
    while (s->nstarted < n &&
           (e = pthread_create(&s->workers[s->nstarted], NULL, worker_main, s)) == 0)
        s->nstarted++;
    return e;
}

bool sl_grpc_server_start(sl_grpc_server *s, char *err, size_t errlen)
{
    /* Workers first: a server that cannot run them accepts nothing. */
    int e = start_workers(s, s->nworkers);
    if (e != 0) {
        snprintf(err, errlen, "cannot start gRPC worker thread %d of %d: %s", s->nstarted + 1,
                 s->nworkers, strerror(e));
        return false;
    }
    grpc_server_start(s->server);
    for (int i = 0; i < SL_ACCEPT_SLOTS; i++) {
        s->slots[i].tag.done = accept_done;
        s->slots[i].server = s;
        arm_slot(&s->slots[i]);
    }
    return true;
}

grpc_completion_queue *sl_grpc_server_cq(sl_grpc_server *s)
{
    return s->cq;
}

void sl_grpc_server_call_done(sl_grpc_server *s, grpc_call *call)
{
    grpc_call_unref(call);
    pthread_mutex_lock(&s->mu);
    s->active--;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

int sl_grpc_server_active_calls(sl_grpc_server *s)
{
    int n;
    pthread_mutex_lock(&s->mu);
    n = s->active;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* Waits until no call is active or until the monotonic time `until`
 * (INT64_MAX: no limit). Returns the calls still active. */
static int wait_calls(sl_grpc_server *s, int64_t until)
{
    int n;
    pthread_mutex_lock(&s->mu);
    while (s->active > 0 && sl_time_mono_ms() < until) {
        struct timespec ts = sl_time_deadline(50);
        pthread_cond_timedwait(&s->cond, &s->mu, &ts);
    }
    n = s->active;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* Runs completions on the calling thread until the server's shutdown has
 * completed (all = false) or the queue is shut down (all = true): for a
 * stop with no worker thread to do it. */
static void run_queue(sl_grpc_server *s, bool all)
{
    for (;;) {
        gpr_timespec tick =
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(50, GPR_TIMESPAN));
        grpc_event ev;
        bool done;

        pthread_mutex_lock(&s->mu);
        done = s->shutdown_done;
        pthread_mutex_unlock(&s->mu);
        if (done && !all)
            return;
        ev = grpc_completion_queue_next(s->cq, tick, NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            return;
        if (ev.type == GRPC_OP_COMPLETE)
            ((sl_tag *)ev.tag)->done(ev.tag, ev.success != 0);
    }
}

void sl_grpc_server_stop(sl_grpc_server *s, int64_t grace_ms, sl_drain_fn drain, void *closure)
{
    int64_t now = sl_time_mono_ms();
    int left;

    atomic_store(&s->stopping, true);
    if (s->nstarted == 0) { /* never started: a worker to see the shutdown through */
        free(s->workers);
        s->workers = NULL;
        if (start_workers(s, 1) != 0)
            sl_log(SL_LOG_WARN, "no thread for the gRPC shutdown; running it inline");
    }
    s->shutdown_tag.done = shutdown_done;
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
    if (drain != NULL)
        drain(closure);
    left = wait_calls(s, grace_ms < INT64_MAX - now ? now + grace_ms : INT64_MAX);
    if (left > 0) {
        sl_log(SL_LOG_WARN, "grace period over with %d calls active; cancelling them", left);
        grpc_server_cancel_all_calls(s->server);
        wait_calls(s, INT64_MAX);
    }
    if (s->nstarted == 0) {
        run_queue(s, false);
    } else {
        pthread_mutex_lock(&s->mu);
        while (!s->shutdown_done)
            pthread_cond_wait(&s->cond, &s->mu);
        pthread_mutex_unlock(&s->mu);
    }

    grpc_completion_queue_shutdown(s->cq);
    if (s->nstarted == 0)
        run_queue(s, true);
    for (int i = 0; i < s->nstarted; i++)
        pthread_join(s->workers[i], NULL);
    grpc_server_destroy(s->server);
    grpc_completion_queue_destroy(s->cq);
    for (int i = 0; i < s->nroutes; i++)
        free(s->routes[i].method);
    free(s->workers);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
