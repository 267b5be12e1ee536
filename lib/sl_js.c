/* sl_js: see sl_js.h.
 *
 * Threads: cnats runs its own (socket reader, PubAck delivery, timers, the
 * connection callbacks); sl_js adds one, the provisioner, which sleeps on a
 * condition variable until a (re)connect or its 1 s retry tick. The pending
 * table and the flags are guarded by js->mu. */
#include "sl_js.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_grpc_codes.h"
#include "sl_log.h"
#include "sl_nats.h"
#include "sl_retry.h"
#include "sl_time.h"

struct sl_js {
    sl_js_config cfg;
    natsConnection *nc;
    jsCtx *ctx;

    pthread_mutex_t mu;
    pthread_cond_t cond;
    pthread_t provisioner;
    bool stopping;
    bool stream_ok;
    sl_stream_state stream_state; /* provisioner thread only */
    bool kick; /* provision again: set on (re)connect */
    bool closed; /* cnats' last callback has run */
    int64_t error_logged_ms; /* on_async_error's rate limit */
    uint64_t errors_skipped;

    sl_js_pending **buckets;
    size_t nbuckets; /* a power of two */
};

/* ---- pending table ---------------------------------------------------- */

static size_t bucket_of(sl_js *js, const natsMsg *m)
{
    uintptr_t h = (uintptr_t)m;
    h ^= h >> 17;
    h *= 0x9E3779B97F4A7C15ULL;
    return (size_t)(h >> 20) & (js->nbuckets - 1);
}

static void pending_add(sl_js *js, sl_js_pending *p)
{
    size_t b = bucket_of(js, p->msg);
    pthread_mutex_lock(&js->mu);
    p->next = js->buckets[b];
    js->buckets[b] = p;
    pthread_mutex_unlock(&js->mu);
}

static sl_js_pending *pending_take(sl_js *js, const natsMsg *m)
{
    sl_js_pending **pp, *p = NULL;
    pthread_mutex_lock(&js->mu);
    for (pp = &js->buckets[bucket_of(js, m)]; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->msg == m) {
            p = *pp;
            *pp = p->next;
            break;
        }
    }
    pthread_mutex_unlock(&js->mu);
    return p;
}

/* ---- PubAck handling ---------------------------------------------------- */

/* The one message for a record over the server's max_payload. size is 0
 * when unknown (cnats refused the body). */
static void too_large(char *buf, size_t len, int64_t size, int64_t max)
{
    char what[64] = "";
    if (size > 0)
        snprintf(what, sizeof(what), " of %lld bytes", (long long)size);
    snprintf(buf, len, "record message%s (body and headers) exceeds the NATS server's "
             "max_payload of %lld bytes: not stored, and a retry cannot help", what,
             (long long)max);
}

static void ack_error(sl_js *js, sl_js_ack *ack, const jsPubAckErr *pae, char *buf, size_t len)
{
    ack->code = SL_GRPC_UNAVAILABLE;
    ack->retry_ms = SL_RETRY_UNAVAILABLE_MS;
    if (pae->Err == NATS_MAX_PAYLOAD) {
        ack->code = SL_GRPC_RESOURCE_EXHAUSTED;
        ack->retry_ms = 0;
        too_large(buf, len, 0, sl_js_max_payload(js));
    } else if (pae->Err == NATS_TIMEOUT) {
        snprintf(buf, len, "no PubAck from JetStream in time; the record may or may not be "
                 "stored, retry with the same id");
    } else if (pae->Err == NATS_NO_RESPONDERS) {
        snprintf(buf, len, "JetStream stream not available (no responders)");
    } else if (pae->ErrCode == JSStreamMessageExceedsMaximumErr) {
        ack->code = SL_GRPC_RESOURCE_EXHAUSTED;
        ack->retry_ms = 0;
        snprintf(buf, len, "record exceeds the stream's maximum message size");
    } else if (pae->ErrCode == JSStreamStoreFailedErr && pae->ErrText != NULL &&
               strstr(pae->ErrText, "exceeded") != NULL) {
        /* discard new: "maximum messages/bytes exceeded" */
        ack->code = SL_GRPC_RESOURCE_EXHAUSTED;
        ack->retry_ms = SL_RETRY_STREAM_FULL_MS;
        snprintf(buf, len, "stream is full (%s); not stored, retry later with the same id",
                 pae->ErrText);
    } else if (pae->ErrCode == JSStreamNotMatchErr) {
        ack->retry_ms = SL_RETRY_STREAM_FULL_MS;
        snprintf(buf, len, "the stream's subjects are taken by another stream: not stored "
                 "(an operator must fix the stream configuration)");
    } else {
        snprintf(buf, len, "JetStream publish failed: %s (error %d)",
                 pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err), (int)pae->ErrCode);
    }
    ack->error = buf;
}

static void kick_provisioner(sl_js *js, bool lost_stream);

/* cnats' PubAck thread. */
static void on_puback(jsCtx *ctx, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    sl_js *js = closure;
    sl_js_pending *p = pending_take(js, msg);
    sl_js_ack ack = {0};
    char err[256];

    (void)ctx;
    if (p != NULL) {
        if (pa != NULL && (pa->Stream == NULL || strcmp(pa->Stream, js->cfg.stream.name) != 0)) {
            /* The server checks the expected stream; this only guards
             * against a server that ignores the header. */
            ack.code = SL_GRPC_INTERNAL;
            snprintf(err, sizeof(err), "stored by stream %s, not %s",
                     pa->Stream ? pa->Stream : "(none)", js->cfg.stream.name);
            ack.error = err;
        } else if (pa != NULL) {
            ack.stream = pa->Stream;
            ack.sequence = pa->Sequence;
            ack.duplicate = pa->Duplicate;
        } else {
            ack_error(js, &ack, pae, err, sizeof(err));
            if (pae->Err == NATS_NO_RESPONDERS)
                kick_provisioner(js, true); /* the stream is gone: create it again */
        }
        p->cb(p->closure, &ack);
    }
    natsMsg_Destroy(msg);
}

#define EXPECTED_STREAM_HDR "Nats-Expected-Stream" /* set by js_PublishMsgAsync */

size_t sl_js_header_bytes(const sl_js *js)
{
    return strlen(EXPECTED_STREAM_HDR) + 2 + strlen(js->cfg.stream.name) + 2;
}

/* The bytes msg counts against max_payload once published: its body and its
 * headers as cnats encodes them ("NATS/1.0\r\n", "key: value\r\n" per
 * value, "\r\n"), with the header sl_js_publish adds. */
static int64_t publish_bytes(const sl_js *js, natsMsg *msg)
{
    const char **keys = NULL, **values = NULL;
    int nkeys = 0, nvalues = 0;
    int64_t n = natsMsg_GetDataLength(msg) + (int64_t)sl_js_header_bytes(js) + 12;

    if (natsMsgHeader_Keys(msg, &keys, &nkeys) != NATS_OK)
        return n;
    for (int i = 0; i < nkeys; i++) {
        if (natsMsgHeader_Values(msg, keys[i], &values, &nvalues) != NATS_OK)
            continue;
        for (int j = 0; j < nvalues; j++)
            n += (int64_t)(strlen(keys[i]) + 2 + strlen(values[j]) + 2);
        free(values);
    }
    free(keys);
    return n;
}

/* Refuses what the server would refuse by closing the connection. */
static int check_size(sl_js *js, natsMsg *msg, char *err, size_t errlen)
{
    int64_t max = sl_js_max_payload(js), size;

    if (max <= 0)
        return 0;
    if (natsMsg_GetDataLength(msg) > max) {
        too_large(err, errlen, 0, max);
        return SL_GRPC_RESOURCE_EXHAUSTED;
    }
    size = publish_bytes(js, msg);
    if (size > max) {
        too_large(err, errlen, size, max);
        return SL_GRPC_RESOURCE_EXHAUSTED;
    }
    return 0;
}

int sl_js_publish(sl_js *js, natsMsg *msg, int64_t timeout_ms, sl_js_pending *p,
                  sl_js_ack_cb cb, void *closure, char *err, size_t errlen, int64_t *retry_ms)
{
    jsPubOptions po;
    natsStatus s;
    int code = 0;

    *retry_ms = 0;
    if (!sl_js_connected(js)) {
        snprintf(err, errlen, "JetStream not reachable (NATS disconnected); retry with the same id");
        code = SL_GRPC_UNAVAILABLE;
        *retry_ms = SL_RETRY_UNAVAILABLE_MS;
    } else {
        code = check_size(js, msg, err, errlen);
    }
    if (code != 0) {
        natsMsg_Destroy(msg);
        return code;
    }
    jsPubOptions_Init(&po);
    po.MaxWait = timeout_ms > 0 ? timeout_ms : 1;
    /* Only our stream may store it: a PubAck from any other stream that
     * captured the subject would be an OK for a record no consumer reads. */
    po.ExpectStream = js->cfg.stream.name;
    p->msg = msg;
    p->cb = cb;
    p->closure = closure;
    pending_add(js, p);
    s = js_PublishMsgAsync(js->ctx, &msg, &po);
    if (s == NATS_OK)
        return 0;
    /* cnats kept nothing: the message is ours again and no PubAck comes. */
    pending_take(js, p->msg);
    natsMsg_Destroy(msg);
    if (s == NATS_MAX_PAYLOAD) {
        too_large(err, errlen, 0, sl_js_max_payload(js));
        return SL_GRPC_RESOURCE_EXHAUSTED;
    }
    snprintf(err, errlen, "JetStream publish failed: %s", natsStatus_GetText(s));
    *retry_ms = SL_RETRY_UNAVAILABLE_MS;
    return SL_GRPC_UNAVAILABLE;
}

/* ---- stream provisioning ------------------------------------------------ */

static bool ensure_stream(sl_js *js)
{
    return sl_stream_ensure(js->ctx, &js->cfg.stream, js->cfg.provision, &js->stream_state) ==
           SL_STREAM_READY;
}

static void *provision_loop(void *arg)
{
    sl_js *js = arg;
    pthread_mutex_lock(&js->mu);
    while (!js->stopping) {
        if (js->kick || !js->stream_ok) {
            js->kick = false;
            pthread_mutex_unlock(&js->mu);
            bool ok = sl_js_connected(js) && ensure_stream(js);
            pthread_mutex_lock(&js->mu);
            js->stream_ok = ok;
        }
        if (!js->stopping && !js->kick) {
            struct timespec until = sl_time_deadline(1000);
            pthread_cond_timedwait(&js->cond, &js->mu, &until);
        }
    }
    pthread_mutex_unlock(&js->mu);
    return NULL;
}

static void kick_provisioner(sl_js *js, bool lost_stream)
{
    pthread_mutex_lock(&js->mu);
    js->kick = true;
    if (lost_stream)
        js->stream_ok = false;
    pthread_cond_signal(&js->cond);
    pthread_mutex_unlock(&js->mu);
}

/* ---- connection --------------------------------------------------------- */

/* cnats' callback thread. */
static void log_server(natsConnection *nc, const char *what)
{
    char url[256], shown[256];
    if (natsConnection_GetConnectedUrl(nc, url, sizeof(url)) != NATS_OK)
        url[0] = '\0';
    sl_nats_url_redact(url, shown, sizeof(shown));
    sl_log(SL_LOG_INFO, "%s NATS at %s", what, shown);
}

static void on_connected(natsConnection *nc, void *closure)
{
    log_server(nc, "connected to");
    kick_provisioner(closure, false);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    sl_js *js = closure;
    bool stopping;
    pthread_mutex_lock(&js->mu);
    js->stream_ok = false;
    stopping = js->stopping;
    pthread_mutex_unlock(&js->mu);
    if (!stopping)
        sl_log(SL_LOG_WARN, "disconnected from NATS; reconnecting");
}

/* The last callback cnats makes for a connection: sl_js_close waits for it
 * before freeing what the callbacks use. */
static void on_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    sl_js *js = closure;
    pthread_mutex_lock(&js->mu);
    js->closed = true;
    pthread_cond_broadcast(&js->cond);
    pthread_mutex_unlock(&js->mu);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    log_server(nc, "reconnected to");
    kick_provisioner(closure, true);
}

/* cnats' callback thread: what the server refused after the fact, above all
 * permissions violations ("Permissions Violation for Publish to ..."). At
 * most one line a second; the ones in between are counted into the next. */
static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
                           void *closure)
{
    sl_js *js = closure;
    const char *text = NULL;
    int64_t now = sl_time_mono_ms();
    uint64_t skipped;

    (void)sub;
    pthread_mutex_lock(&js->mu);
    if (now - js->error_logged_ms < 1000 && js->error_logged_ms != 0) {
        js->errors_skipped++;
        pthread_mutex_unlock(&js->mu);
        return;
    }
    js->error_logged_ms = now;
    skipped = js->errors_skipped;
    js->errors_skipped = 0;
    pthread_mutex_unlock(&js->mu);
    if (natsConnection_GetLastError(nc, &text) == NATS_OK || text == NULL || text[0] == '\0')
        text = natsStatus_GetText(err);
    sl_log(SL_LOG_ERROR, "NATS refused: %s%s (%llu more since the last line)", text,
           err == NATS_NOT_PERMITTED ? "; the NATS user lacks this permission" : "",
           (unsigned long long)skipped);
}

/* One line on how this connection identifies itself, nothing secret in
 * it; a warning when it neither identifies nor encrypts. */
static void log_access(const sl_nats_settings *n)
{
    char line[2048];
    sl_nats_settings_describe(n, line, sizeof(line));
    if (sl_nats_settings_anonymous(n) && !n->tls)
        sl_log(SL_LOG_WARN, "NATS: %s: open access, fine for a local run only "
               "(README, \"Security\")", line);
    else
        sl_log(SL_LOG_INFO, "NATS: %s", line);
}

/* The first connect failed with s (why: cnats' text for it); cnats goes on
 * trying in the background. A refusal of the credentials or of TLS is an
 * error, not a wait, and says what to check. */
static void log_not_connected(sl_js *js, natsStatus s, const char *why)
{
    char shown[1024];

    sl_nats_url_redact(js->cfg.nats->url, shown, sizeof(shown));
    if (why == NULL || why[0] == '\0')
        why = natsStatus_GetText(s);
    if (s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED)
        sl_log(SL_LOG_ERROR, "NATS at %s refused the credentials (%s): check NATS_CREDS, "
               "NATS_NKEY or the user in NATS_URL; retrying in the background", shown, why);
    else if (s == NATS_SSL_ERROR || s == NATS_SECURE_CONNECTION_REQUIRED ||
             s == NATS_SECURE_CONNECTION_WANTED)
        sl_log(SL_LOG_ERROR, "NATS at %s: TLS failed (%s): check NATS_CA, NATS_CERT, NATS_KEY "
               "and tls:// in NATS_URL; retrying in the background", shown, why);
    else if (js->cfg.nats->tls && s != NATS_NO_SERVER && s != NATS_TIMEOUT)
        /* With TLS 1.3 a client certificate the server refuses (or misses)
         * shows as the server closing the connection after the handshake. */
        sl_log(SL_LOG_ERROR, "NATS at %s: TLS failed, the server closed the connection (%s): it "
               "may require a client certificate (NATS_CERT, NATS_KEY) it did not get or "
               "accept; retrying in the background", shown, why);
    else
        sl_log(SL_LOG_WARN, "NATS at %s not reachable yet (%s); retrying in the background",
               shown, why);
}

/* Connects once, synchronously, so that a failure comes back with its exact
 * reason; then, if that failed, lets cnats retry in the background (the
 * connected callback says when it made it). A failed connect calls none of
 * the connection callbacks. */
static natsStatus connect_first(sl_js *js, natsOptions *opts)
{
    natsStatus s = natsOptions_SetRetryOnFailedConnect(opts, false, NULL, NULL);

    if (s == NATS_OK)
        s = natsConnection_Connect(&js->nc, opts);
    if (s == NATS_OK) {
        log_server(js->nc, "connected to");
        return NATS_OK;
    }
    if (s == NATS_NO_MEMORY || s == NATS_INVALID_ARG)
        return s;
    log_not_connected(js, s, nats_GetLastError(NULL));
    s = natsOptions_SetRetryOnFailedConnect(opts, true, on_connected, js);
    if (s == NATS_OK)
        s = natsConnection_Connect(&js->nc, opts);
    if (s == NATS_OK)
        log_server(js->nc, "connected to");
    return s == NATS_NOT_YET_CONNECTED ? NATS_OK : s;
}

static natsStatus connect_nats(sl_js *js)
{
    natsOptions *opts = NULL;
    natsStatus s = natsOptions_Create(&opts);

    log_access(js->cfg.nats);
    if (s == NATS_OK)
        s = sl_nats_settings_apply(js->cfg.nats, opts);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(opts, on_async_error, js);
    if (s == NATS_OK)
        s = natsOptions_SetName(opts, js->cfg.client_name);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(opts, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(opts, 250);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(opts, 2000);
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(opts, 5000);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(opts, on_disconnected, js);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(opts, on_reconnected, js);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(opts, on_closed, js);
    if (s == NATS_OK)
        s = connect_first(js, opts);
    natsOptions_Destroy(opts);
    return s;
}

static natsStatus open_ctx(sl_js *js)
{
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.AckHandler = on_puback;
    jo.PublishAsync.AckHandlerClosure = js;
    jo.PublishAsync.MaxPending = 0; /* Sluice bounds what is in flight itself */
    jo.Wait = 5000;
    return natsConnection_JetStream(&js->ctx, js->nc, &jo);
}

natsStatus sl_js_open(sl_js **out, const sl_js_config *cfg, size_t max_pending)
{
    sl_js *js = calloc(1, sizeof(*js));
    natsStatus s = NATS_OK;

    if (js == NULL)
        return NATS_NO_MEMORY;
    js->cfg = *cfg;
    for (js->nbuckets = 64; js->nbuckets < max_pending * 2; js->nbuckets <<= 1)
        ;
    js->buckets = calloc(js->nbuckets, sizeof(*js->buckets));
    pthread_mutex_init(&js->mu, NULL);
    pthread_cond_init(&js->cond, NULL);
    js->kick = true;
    if (js->buckets == NULL)
        s = NATS_NO_MEMORY;
    if (s == NATS_OK)
        s = connect_nats(js);
    if (s == NATS_OK)
        s = open_ctx(js);
    if (s == NATS_OK && pthread_create(&js->provisioner, NULL, provision_loop, js) != 0)
        s = NATS_SYS_ERROR;
    if (s != NATS_OK) {
        js->provisioner = 0;
        sl_js_close(js);
        return s;
    }
    *out = js;
    return NATS_OK;
}

void sl_js_close(sl_js *js)
{
    if (js == NULL)
        return;
    pthread_mutex_lock(&js->mu);
    js->stopping = true;
    pthread_cond_signal(&js->cond);
    pthread_mutex_unlock(&js->mu);
    if (js->provisioner)
        pthread_join(js->provisioner, NULL);
    if (js->nc != NULL) {
        natsConnection_Close(js->nc);
        pthread_mutex_lock(&js->mu);
        while (!js->closed)
            pthread_cond_wait(&js->cond, &js->mu);
        pthread_mutex_unlock(&js->mu);
    }
    jsCtx_Destroy(js->ctx);
    natsConnection_Destroy(js->nc);
    pthread_cond_destroy(&js->cond);
    pthread_mutex_destroy(&js->mu);
    free(js->buckets);
    free(js);
}

bool sl_js_connected(sl_js *js)
{
    return js->nc != NULL && natsConnection_Status(js->nc) == NATS_CONN_STATUS_CONNECTED;
}

int64_t sl_js_max_payload(sl_js *js)
{
    return sl_js_connected(js) ? natsConnection_GetMaxPayload(js->nc) : 0;
}

bool sl_js_ready(sl_js *js)
{
    bool ok;
    pthread_mutex_lock(&js->mu);
    ok = js->stream_ok;
    pthread_mutex_unlock(&js->mu);
    return ok && sl_js_connected(js);
}

bool sl_js_wait_ready(sl_js *js, int64_t timeout_ms)
{
    int64_t until = sl_time_mono_ms() + timeout_ms;
    while (!sl_js_ready(js)) {
        if (sl_time_mono_ms() >= until)
            return false;
        nats_Sleep(20);
    }
    return true;
}

natsConnection *sl_js_conn(sl_js *js)
{
    return js->nc;
}

jsCtx *sl_js_ctx(sl_js *js)
{
    return js->ctx;
}
