/* sl_consumer_provision: from nothing to a bound pull subscription. Connects
 * to NATS, waits for the record stream (ingest creates it), creates the
 * dead-letter stream when missing (sl_dlq), creates the durable consumer
 * when missing or brings an existing one to the configured settings, and
 * subscribes (sl_pull). Runs on the sl_consumer_run thread; see
 * sl_consumer_internal.h. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_consumer_internal.h"
#include "sl_dlq.h"
#include "sl_log.h"
#include "sl_nats.h"
#include "sl_record.h"
#include "sl_time.h"

/* ---- the consumer's configuration (pure) ---------------------------------- */

int64_t sl_consumer_max_ack_pending(const sl_consumer_settings *s)
{
    if (s->max_ack_pending > 0)
        return s->max_ack_pending;
    return 2 * s->batch_size * SL_CONSUMER_AUTO_REPLICAS;
}

/* BackOff: the ack waits of successive deliveries that time out (a crash, a
 * stuck write): AckWait, then doubling, SL_CONSUMER_BACKOFF_STEPS values. The first is
 * AckWait itself, since the server takes BackOff[0] as the ack wait of the
 * first delivery. */
static int backoff_fill(const sl_consumer_settings *s, int64_t *out)
{
    int n = 0;
    int64_t v = s->ack_wait_ms * 1000000LL;
    while (n < SL_CONSUMER_BACKOFF_STEPS) {
        out[n++] = v;
        v *= 2;
    }
    return n;
}

void sl_consumer_config_fill(const sl_consumer_settings *s, const char *name,
                             jsConsumerConfig *cc, int64_t backoff[SL_CONSUMER_BACKOFF_STEPS])
{
    jsConsumerConfig_Init(cc);
    cc->Durable = name;
    cc->AckPolicy = js_AckExplicit;
    cc->AckWait = s->ack_wait_ms * 1000000LL;
    /* Unlimited on the server: Sluice counts deliveries itself and
     * dead-letters a message on its last one, so that a message the server
     * would otherwise drop (MaxDeliver reached while its dead letter could
     * not be stored) is delivered again instead. */
    cc->MaxDeliver = -1;
    cc->MaxAckPending = sl_consumer_max_ack_pending(s);
    cc->BackOffLen = backoff_fill(s, backoff);
    cc->BackOff = backoff;
    cc->DeliverPolicy = js_DeliverAll;
    if (s->replay_from_seq > 0) {
        cc->DeliverPolicy = js_DeliverByStartSequence;
        cc->OptStartSeq = (uint64_t)s->replay_from_seq;
    } else if (s->replay_from_ns > 0) {
        cc->DeliverPolicy = js_DeliverByStartTime;
        cc->OptStartTime = s->replay_from_ns;
    }
    if (s->replay_from_seq > 0 || s->replay_from_ns > 0)
        cc->InactiveThreshold = REPLAY_INACTIVE_NS;
}

static void diff_add(sl_consumer_diff *d, int *n, const char *setting, int64_t configured,
                     int64_t existing, bool update)
{
    if (*n < SL_CONSUMER_MAX_DIFFS)
        d[(*n)++] = (sl_consumer_diff){setting, configured, existing, update};
}

static bool backoff_same(const jsConsumerConfig *a, const jsConsumerConfig *b)
{
    if (a->BackOffLen != b->BackOffLen)
        return false;
    for (int i = 0; i < a->BackOffLen; i++) {
        if (a->BackOff[i] != b->BackOff[i])
            return false;
    }
    return true;
}

int sl_consumer_config_plan(const jsConsumerConfig *target, const jsConsumerConfig *have,
                            jsConsumerConfig *want, sl_consumer_diff *d)
{
    int n = 0;

    *want = *have;
    /* What JetStream changes in place. */
    if (have->AckWait != target->AckWait) {
        diff_add(d, &n, "ack_wait_ms", target->AckWait / 1000000, have->AckWait / 1000000, true);
        want->AckWait = target->AckWait;
    }
    if (have->MaxDeliver != target->MaxDeliver) {
        diff_add(d, &n, "max_deliver", target->MaxDeliver, have->MaxDeliver, true);
        want->MaxDeliver = target->MaxDeliver;
    }
    if (have->MaxAckPending != target->MaxAckPending) {
        diff_add(d, &n, "max_ack_pending", target->MaxAckPending, have->MaxAckPending, true);
        want->MaxAckPending = target->MaxAckPending;
    }
    if (!backoff_same(have, target)) {
        diff_add(d, &n, "backoff_steps", target->BackOffLen, have->BackOffLen, true);
        want->BackOff = target->BackOff;
        want->BackOffLen = target->BackOffLen;
    }
    /* What it does not: reported, kept. */
    if (have->AckPolicy != target->AckPolicy)
        diff_add(d, &n, "ack_policy", target->AckPolicy, have->AckPolicy, false);
    if (have->DeliverPolicy != target->DeliverPolicy)
        diff_add(d, &n, "deliver_policy", target->DeliverPolicy, have->DeliverPolicy, false);
    if (have->OptStartSeq != target->OptStartSeq)
        diff_add(d, &n, "opt_start_seq", (int64_t)target->OptStartSeq, (int64_t)have->OptStartSeq,
                 false);
    return n;
}

/* ---- provisioning: the consumer ------------------------------------------ */

static void diff_log(const sl_consumer *c, const sl_consumer_diff *d, bool updated)
{
    bson_t *f;

    if (d->update && updated)
        f = sl_log_begin(SL_LOG_INFO, "consumer setting updated to the configured value");
    else if (d->update)
        f = sl_log_begin(SL_LOG_ERROR, "consumer setting could not be updated; keeping it");
    else
        f = sl_log_begin(SL_LOG_WARN, "consumer exists with other settings that JetStream "
                                      "cannot change; keeping them");
    if (f == NULL)
        return;
    BSON_APPEND_UTF8(f, "stream", c->set->stream);
    BSON_APPEND_UTF8(f, "consumer", c->name);
    BSON_APPEND_UTF8(f, "setting", d->setting);
    BSON_APPEND_INT64(f, "configured", d->configured);
    BSON_APPEND_INT64(f, "existing", d->existing);
    sl_log_end(f);
}

/* Brings an existing consumer to the configured settings where JetStream
 * allows it (every replica of a service shares it, so the last rollout's
 * settings win) and reports the rest. */
static void consumer_reconcile(sl_consumer *c, const jsConsumerConfig *target,
                               const jsConsumerConfig *have)
{
    sl_consumer_diff d[SL_CONSUMER_MAX_DIFFS];
    jsConsumerConfig want;
    jsErrCode jerr = 0;
    bool any = false, updated = false;
    int n = sl_consumer_config_plan(target, have, &want, d);

    for (int i = 0; i < n; i++)
        any = any || d[i].update;
    if (any) {
        updated = js_UpdateConsumer(NULL, sl_js_ctx(c->js), c->set->stream, &want, NULL,
                                    &jerr) == NATS_OK;
        if (!updated)
            sl_log(SL_LOG_ERROR, "updating consumer %s failed: %s (error %d)", c->name,
                   nats_GetLastError(NULL), (int)jerr);
    }
    for (int i = 0; i < n; i++)
        diff_log(c, &d[i], updated);
    if (have->FilterSubject != NULL && have->FilterSubject[0] != '\0')
        sl_log(SL_LOG_WARN, "consumer %s filters on %s; keeping it", c->name, have->FilterSubject);
    if (have->DeliverSubject != NULL && have->DeliverSubject[0] != '\0')
        sl_log(SL_LOG_ERROR,
               "consumer %s is a push consumer (deliver subject %s); this service "
               "needs a pull consumer: delete it or choose another --consumer",
               c->name, have->DeliverSubject);
}

static bool consumer_ensure(sl_consumer *c)
{
    jsCtx *ctx = sl_js_ctx(c->js);
    jsConsumerInfo *ci = NULL;
    jsConsumerConfig cc;
    int64_t backoff[SL_CONSUMER_BACKOFF_STEPS];
    jsErrCode jerr = 0;
    natsStatus s;

    sl_consumer_config_fill(c->set, c->name, &cc, backoff);
    s = js_GetConsumerInfo(&ci, ctx, c->set->stream, c->name, NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr) {
        s = js_AddConsumer(&ci, ctx, c->set->stream, &cc, NULL, &jerr);
        if (s == NATS_OK)
            sl_log(SL_LOG_INFO, "created consumer %s on stream %s", c->name, c->set->stream);
        else /* perhaps a replica created it first: look again */
            s = js_GetConsumerInfo(&ci, ctx, c->set->stream, c->name, NULL, &jerr);
    } else if (s == NATS_OK) {
        consumer_reconcile(c, &cc, ci->Config);
    }
    if (s != NATS_OK && sl_consumer_notice_due(c))
        sl_log(SL_LOG_WARN, "consumer %s on stream %s not available: %s (error %d)", c->name,
               c->set->stream, nats_GetLastError(NULL), (int)jerr);
    jsConsumerInfo_Destroy(ci);
    return s == NATS_OK;
}

static bool consumer_bind(sl_consumer *c)
{
    natsStatus s = sl_pull_open(&c->pull, sl_js_conn(c->js), c->set->stream, c->name);

    if (s != NATS_OK) {
        c->pull = NULL;
        if (sl_consumer_notice_due(c))
            sl_log(SL_LOG_WARN, "binding consumer %s failed: %s", c->name, natsStatus_GetText(s));
        return false;
    }
    atomic_store(&c->stats.bound, true);
    sl_log(SL_LOG_INFO,
           "consuming %s through %s (batch %" PRId64 ", fetch wait %" PRId64
           " ms, ack wait %" PRId64 " ms, max deliver %" PRId64 ")",
           c->set->stream, c->name, c->set->batch_size, c->set->fetch_wait_ms, c->set->ack_wait_ms,
           c->set->max_deliver);
    sl_consumer_notice_reset(c);
    return true;
}

/* Gets from nothing to a bound subscription; false when some step has to
 * wait (stream missing, NATS away) and will be tried again. */
bool sl_consumer_provision(sl_consumer *c)
{
    if (!sl_js_ready(c->js)) {
        if (sl_consumer_notice_due(c))
            sl_log(SL_LOG_WARN, "waiting for NATS and stream %s", c->set->stream);
        return false;
    }
    return sl_dlq_ensure(sl_js_ctx(c->js), c->set->stream) && consumer_ensure(c) &&
           consumer_bind(c);
}

void sl_consumer_unbind(sl_consumer *c)
{
    /* The durable consumer stays on the server; only our interest goes. */
    sl_pull_close(c->pull);
    c->pull = NULL;
    atomic_store(&c->stats.bound, false);
}

bool sl_consumer_connect(sl_consumer *c, char *err, size_t errlen)
{
    sl_js_config jc = {
        .nats = &c->set->nats,
        .client_name = c->cfg.service,
        .stream = {.name = c->set->stream, .subjects = SL_STREAM_SUBJECTS},
        .provision = false,
    };
    natsStatus s = sl_js_open(&c->js, &jc, 1);
    char shown[1024];

    if (s == NATS_OK)
        return true;
    sl_nats_url_redact(c->set->nats.url, shown, sizeof(shown));
    snprintf(err, errlen, "cannot use NATS at %s: %s", shown, natsStatus_GetText(s));
    return false;
}

/* Nothing is in flight whenever the loop pauses or binds: a fetch that
 * brings nothing, a failed fetch and a failed write all end with the
 * pipeline drained. */
