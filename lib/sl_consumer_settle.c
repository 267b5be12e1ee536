/* sl_consumer_settle: what becomes of each message once its write is over,
 * decided by sl_consumer_settle (pure):
 *
 *     stored (or already stored)    -> Ack
 *     transient failure             -> Nak with a delay, exponential back-off
 *     terminal failure, or a
 *     transient one on the last
 *     delivery                      -> publish to SLUICE_DLQ (sl_dlq), wait for
 *                                      the PubAck, then Term
 *
 * Runs on the sl_consumer_run thread. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_consumer_internal.h"
#include "sl_dlq.h"
#include "sl_log.h"
#include "sl_record.h"
#include "sl_time.h"

/* ---- pure helpers ------------------------------------------------------- */

int64_t sl_consumer_backoff_ms(uint64_t deliveries, int64_t max_ms)
{
    int64_t delay = 1000;
    for (uint64_t i = 1; i < deliveries && delay < max_ms; i++)
        delay *= 2;
    return delay < max_ms ? delay : max_ms;
}

sl_settle sl_consumer_settle(sl_mongo_result result, uint64_t deliveries, int64_t max_deliver)
{
    if (result == SL_MONGO_STORED)
        return SL_SETTLE_ACK;
    if (result == SL_MONGO_REJECTED)
        return SL_SETTLE_DLQ;
    /* The last delivery Sluice allows (the server's own limit is off). */
    if (max_deliver > 0 && deliveries >= (uint64_t)max_deliver)
        return SL_SETTLE_DLQ;
    return SL_SETTLE_NAK;
}

static void settle_log(const sl_delivery *d, const char *msg, const char *error);

/* ---- one batch: settle -------------------------------------------------- */

/* A settle reply that did not leave: the server redelivers the message
 * after its ack wait, and the store's duplicate-key rule makes that
 * harmless. Worth a warning, rate-limited. */
static void settle_sent(sl_consumer *c, natsStatus s, const char *what, const sl_delivery *d)
{
    if (s != NATS_OK && sl_consumer_notice_due(c))
        sl_log(SL_LOG_WARN, "%s for stream seq %" PRIu64 " not sent (%s); it will be redelivered",
               what, d->stream_seq, natsStatus_GetText(s));
}

static void settle_nak(sl_consumer *c, const sl_delivery *d, const char *error)
{
    natsStatus s = sl_pull_nak(sl_js_conn(c->js), d->msg,
                               sl_consumer_backoff_ms(d->deliveries, NAK_DELAY_MAX_MS));
    settle_sent(c, s, "nak", d);
    sl_series_inc(c->stats.naked);
    settle_log(d, "record nak'ed", error);
}

/* Dead-letters message i and terminates it. When the dead letter cannot be
 * stored, the message is nak'ed instead: the server's MaxDeliver is
 * unlimited, so it comes back and is dead-lettered again on its next
 * delivery. Once a dead letter failed, the rest of the batch does not try
 * (and wait) again. */
static void settle_dlq(sl_consumer *c, sl_batch *b, size_t i)
{
    const sl_delivery *d = &b->del[i];
    char error[ERROR_LEN + 64];
    sl_dlq_letter l = {d->msg,          c->name, d->stream, d->stream_seq, d->stream_time_ns,
                       sl_delivery_type(d), error};

    if (b->result[i] == SL_MONGO_RETRY)
        snprintf(error, sizeof(error), "gave up after %" PRIu64 " deliveries: %s", d->deliveries,
                 b->error[i]);
    else
        snprintf(error, sizeof(error), "%s", b->error[i]);
    if (!b->dlq_down && sl_dlq_publish(sl_js_ctx(c->js), sl_js_conn(c->js), &l, d->deliveries)) {
        settle_sent(c, sl_pull_term(sl_js_conn(c->js), d->msg), "term", d);
        sl_series_inc(c->stats.dlq);
        return;
    }
    b->dlq_down = true;
    sl_log(SL_LOG_ERROR,
           "dead letter for stream seq %" PRIu64 " not stored; nak'ed, it will be dead-lettered "
           "on its next delivery",
           d->stream_seq);
    settle_nak(c, d, error);
}

/* One debug line per settled record: its id, stream sequence, trace. */
static void settle_log(const sl_delivery *d, const char *msg, const char *error)
{
    bson_t *f = sl_log_begin(SL_LOG_DEBUG, msg);
    const char *id, *trace;

    if (f == NULL) /* debug is off: no header lookups on the hot path */
        return;
    id = sl_delivery_header(d, SL_HDR_MSG_ID);
    trace = sl_delivery_header(d, SL_HDR_TRACEPARENT);
    BSON_APPEND_UTF8(f, "record_id", id != NULL ? id : "");
    BSON_APPEND_INT64(f, "stream_seq", (int64_t)d->stream_seq);
    BSON_APPEND_INT64(f, "deliveries", (int64_t)d->deliveries);
    if (trace != NULL)
        BSON_APPEND_UTF8(f, "traceparent", trace);
    if (error != NULL)
        BSON_APPEND_UTF8(f, "error", error);
    sl_log_end(f);
}

static void settle_one(sl_consumer *c, sl_batch *b, size_t i)
{
    const sl_delivery *d = &b->del[i];
    sl_consumer_stats *st = &c->stats;

    switch (sl_consumer_settle(b->result[i], d->deliveries, c->set->max_deliver)) {
    case SL_SETTLE_ACK:
        settle_sent(c, sl_pull_ack(sl_js_conn(c->js), d->msg), "ack", d);
        sl_series_inc(b->duplicate[i] ? st->duplicates : st->stored);
        settle_log(d, b->duplicate[i] ? "record already stored" : "record stored", NULL);
        break;
    case SL_SETTLE_NAK:
        settle_nak(c, d, b->error[i]);
        break;
    case SL_SETTLE_DLQ:
        settle_dlq(c, b, i);
        break;
    }
}

void sl_batch_settle(sl_consumer *c, sl_batch *b)
{
    natsStatus s;

    b->dlq_down = false;
    for (size_t i = 0; i < b->n; i++) {
        if (b->meta[i] != NULL)
            settle_one(c, b, i);
    }
    /* Acks are fire-and-forget publishes: make sure the server has them
     * before the next fetch (and before exit). */
    s = natsConnection_FlushTimeout(sl_js_conn(c->js), 5000);
    if (s != NATS_OK && sl_consumer_notice_due(c))
        sl_log(SL_LOG_WARN, "flushing the acknowledgements of a batch failed (%s); what did not "
               "reach the server will be redelivered", natsStatus_GetText(s));
}
