/* health: see health.h.
 *
 * Watchers are kept in a list under h->mu; the watch thread and the drain
 * take h->mu then each watcher's call lock. A watcher whose reference count
 * fell to zero is being freed by another thread and is left alone; it
 * unlinks itself under h->mu (sl_call_ops.unlink) before its mutex is
 * destroyed and it is freed. */
#include "health.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "sl_grpc_call.h"
#include "sl_grpc_codes.h"
#include "sl_time.h"

#define SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define NOT_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
#define SERVICE_UNKNOWN GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

typedef struct health_call health_call;

struct health_service {
    health_ready_fn ready;
    void *closure;
    atomic_bool draining;
    atomic_long watches;  /* Watch calls open */
    int64_t max_watches;  /* health_service_limit; default HEALTH_MAX_WATCHES */
    pthread_mutex_t mu; /* guards watchers and stopping */
    pthread_cond_t cond;
    bool stopping;
    health_call *watchers;
    pthread_t thread;
};

struct health_call {
    sl_call base;
    health_service *h;
    bool watch;
    bool known;     /* the service name is one we serve */
    bool listed;    /* in h->watchers */
    int last;       /* status last sent; -1 none */
    health_call *prev, *next;
};

static int current_status(health_service *h)
{
    if (atomic_load(&h->draining))
        return NOT_SERVING;
    return h->ready(h->closure) ? SERVING : NOT_SERVING;
}

static uint8_t *pack_status(int status, size_t *len)
{
    Grpc__Health__V1__HealthCheckResponse resp;
    uint8_t *buf;
    grpc__health__v1__health_check_response__init(&resp);
    resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
    *len = grpc__health__v1__health_check_response__get_packed_size(&resp);
    buf = malloc(*len ? *len : 1);
    if (buf != NULL)
        grpc__health__v1__health_check_response__pack(&resp, buf);
    return buf;
}

/* Sends the watcher the status when it changed; ends it when draining. */
static void watch_push_locked(health_call *c)
{
    health_service *h = c->h;
    int status = c->known ? current_status(h) : SERVICE_UNKNOWN;
    size_t len;

    if (c->base.send_busy || c->base.dead || c->base.status_sent)
        return;
    if (status != c->last) {
        uint8_t *buf = pack_status(status, &len);
        c->last = status;
        sl_call_send_locked(&c->base, buf, len, false, 0, NULL);
    } else if (atomic_load(&h->draining)) {
        sl_call_status_locked(&c->base, SL_GRPC_UNAVAILABLE, "server shutting down");
    }
}

static void health_recv(sl_call *b, const uint8_t *data, size_t len)
{
    health_call *c = (health_call *)b;
    Grpc__Health__V1__HealthCheckRequest *req;
    uint8_t *buf;
    size_t n;

    if (data == NULL) {
        if (!c->watch || !c->listed)
            sl_call_status_locked(b, SL_GRPC_INVALID_ARGUMENT, "request: message required");
        return;
    }
    req = grpc__health__v1__health_check_request__unpack(NULL, len, data);
    if (req == NULL) {
        sl_call_status_locked(b, SL_GRPC_INVALID_ARGUMENT, "request: not a HealthCheckRequest");
        return;
    }
    c->known = req->service[0] == '\0' || strcmp(req->service, "sluice.v1.IngestService") == 0;
    grpc__health__v1__health_check_request__free_unpacked(req, NULL);
    if (!c->watch) {
        if (!c->known) {
            sl_call_status_locked(b, SL_GRPC_NOT_FOUND, "unknown service");
            return;
        }
        buf = pack_status(current_status(c->h), &n);
        sl_call_send_locked(b, buf, n, true, SL_GRPC_OK, "");
        return;
    }
    /* A watch: registered for changes; the reference keeps it while listed. */
    pthread_mutex_unlock(&b->mu);
    pthread_mutex_lock(&c->h->mu);
    pthread_mutex_lock(&b->mu);
    c->listed = true;
    c->next = c->h->watchers;
    if (c->next)
        c->next->prev = c;
    c->h->watchers = c;
    pthread_mutex_unlock(&c->h->mu);
    sl_call_recv_locked(b); /* completes when the client goes away */
    watch_push_locked(c);
}

static void health_sent(sl_call *b)
{
    health_call *c = (health_call *)b;
    if (c->watch)
        watch_push_locked(c);
}

/* The last reference is gone: a watcher leaves h->watchers, where the watch
 * thread may be about to lock it (its mutex is destroyed only after this). */
static void health_unlink(sl_call *b)
{
    health_call *c = (health_call *)b;
    health_service *h = c->h;
    if (!c->listed)
        return;
    pthread_mutex_lock(&h->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        h->watchers = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&h->mu);
}

static void health_destroy(sl_call *b)
{
    health_call *c = (health_call *)b;
    if (c->watch)
        atomic_fetch_sub(&c->h->watches, 1);
    free(b);
}

static const sl_call_ops health_ops = {
    .recv = health_recv, .sent = health_sent, .unlink = health_unlink, .destroy = health_destroy};

static void accept_health(health_service *h, const sl_rpc_start *start, bool watch)
{
    health_call *c;
    char msg[128];

    if (watch && atomic_fetch_add(&h->watches, 1) >= h->max_watches) {
        atomic_fetch_sub(&h->watches, 1);
        snprintf(msg, sizeof(msg), "too many Watch calls open (limit %lld); use Check, or "
                 "retry later", (long long)h->max_watches);
        sl_grpc_reply_status_retry(start, GRPC_STATUS_RESOURCE_EXHAUSTED, msg, 1000);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        if (watch)
            atomic_fetch_sub(&h->watches, 1);
        sl_grpc_reply_status(start, GRPC_STATUS_RESOURCE_EXHAUSTED,
                             "out of memory");
        return;
    }
    c->h = h;
    c->watch = watch;
    c->last = -1;
    sl_call_start(&c->base, &health_ops, start);
}

static void handle_check(void *h, const sl_rpc_start *start)
{
    accept_health(h, start, false);
}

static void handle_watch(void *h, const sl_rpc_start *start)
{
    accept_health(h, start, true);
}

static void push_all(health_service *h)
{
    pthread_mutex_lock(&h->mu);
    for (health_call *w = h->watchers; w != NULL; w = w->next) {
        pthread_mutex_lock(&w->base.mu);
        if (w->base.refs > 0) /* refs 0: being freed by another thread */
            watch_push_locked(w);
        pthread_mutex_unlock(&w->base.mu);
    }
    pthread_mutex_unlock(&h->mu);
}

static void *watch_loop(void *arg)
{
    health_service *h = arg;
    for (;;) {
        struct timespec until;
        bool stop;
        push_all(h);
        until = sl_time_deadline(250);
        pthread_mutex_lock(&h->mu);
        if (!h->stopping)
            pthread_cond_timedwait(&h->cond, &h->mu, &until);
        stop = h->stopping;
        pthread_mutex_unlock(&h->mu);
        if (stop)
            return NULL;
    }
}

health_service *health_service_new(sl_grpc_server *srv, health_ready_fn ready, void *closure)
{
    health_service *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->ready = ready;
    h->closure = closure;
    h->max_watches = HEALTH_MAX_WATCHES;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cond, NULL);
    /* The thread first: routed, h is reachable by calls and must stay. */
    if (pthread_create(&h->thread, NULL, watch_loop, h) != 0) {
        pthread_cond_destroy(&h->cond);
        pthread_mutex_destroy(&h->mu);
        free(h);
        return NULL;
    }
    sl_grpc_server_route(srv, "/grpc.health.v1.Health/Check", handle_check, h);
    sl_grpc_server_route(srv, "/grpc.health.v1.Health/Watch", handle_watch, h);
    return h;
}

void health_service_limit(health_service *h, int64_t max_watches)
{
    h->max_watches = max_watches > 0 ? max_watches : HEALTH_MAX_WATCHES;
}

void health_service_drain(health_service *h)
{
    atomic_store(&h->draining, true);
    push_all(h);
}

void health_service_free(health_service *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->mu);
    h->stopping = true;
    pthread_cond_signal(&h->cond);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    pthread_cond_destroy(&h->cond);
    pthread_mutex_destroy(&h->mu);
    free(h);
}
