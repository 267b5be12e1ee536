/* sl_consumer: see sl_consumer.h; sl_consumer_internal.h maps the files.
 *
 * This file holds the loop: it provisions until bound, waits for the store,
 * fetches a batch (sl_pull), builds it and takes a pipeline step with it
 * (sl_consumer_pipeline.c), and every LAG_EVERY_MS asks JetStream how far
 * behind the consumer is. Also the consumer's life cycle and counters.
 *
 * The stop flag is an atomic; the mutex and condition variable exist only so
 * that a stop wakes the loop from its waits at once. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_consumer_internal.h"
#include "sl_lag.h"
#include "sl_log.h"
#include "sl_time.h"

/* ---- waiting and logging ------------------------------------------------ */

void sl_consumer_pause(sl_consumer *c, int64_t ms)
{
    struct timespec until = sl_time_deadline(ms);

    pthread_mutex_lock(&c->mu);
    while (!atomic_load(&c->stopping) && pthread_cond_timedwait(&c->cond, &c->mu, &until) == 0)
        ;
    pthread_mutex_unlock(&c->mu);
}

bool sl_consumer_notice_due(sl_consumer *c)
{
    int64_t now = sl_time_mono_ms();
    if (c->last_notice_ms != 0 && now - c->last_notice_ms < NOTICE_EVERY_MS)
        return false;
    c->last_notice_ms = now;
    return true;
}

void sl_consumer_notice_reset(sl_consumer *c)
{
    c->last_notice_ms = 0;
}

static void stats_log(sl_consumer *c, sl_log_level level, const char *msg)
{
    const sl_consumer_stats *st = &c->stats;
    bson_t *f = sl_log_begin(level, msg);
    if (f == NULL)
        return;
    BSON_APPEND_UTF8(f, "consumer", c->name);
    BSON_APPEND_INT64(f, "delivered", (int64_t)sl_series_value(st->delivered));
    BSON_APPEND_INT64(f, "stored", (int64_t)sl_series_value(st->stored));
    BSON_APPEND_INT64(f, "duplicates", (int64_t)sl_series_value(st->duplicates));
    BSON_APPEND_INT64(f, "naked", (int64_t)sl_series_value(st->naked));
    BSON_APPEND_INT64(f, "dlq", (int64_t)sl_series_value(st->dlq));
    BSON_APPEND_INT64(f, "mongo_errors", (int64_t)sl_series_value(st->mongo_errors));
    sl_log_end(f);
}

static void stats_log_periodic(sl_consumer *c)
{
    int64_t now = sl_time_mono_ms();
    double delivered = sl_series_value(c->stats.delivered);

    if (now - c->last_stats_ms < STATS_EVERY_MS)
        return;
    c->last_stats_ms = now;
    if (delivered == c->last_stats_delivered)
        return;
    c->last_stats_delivered = delivered;
    stats_log(c, SL_LOG_INFO, "consumer stats");
}

/* ---- the loop ----------------------------------------------------------- */

/* Every LAG_EVERY_MS, asks JetStream how far behind the consumer is (see
 * sl_lag.h) and the stream's max age; past half of it, the oldest
 * unprocessed record is in danger of being dropped by retention: an error,
 * logged every RETENTION_NOTICE_MS while it lasts. */
static void lag_update(sl_consumer *c)
{
    int64_t now = sl_time_mono_ms();
    double max_age;
    sl_lag lag;

    if (now - c->last_lag_ms < LAG_EVERY_MS || !sl_js_connected(c->js))
        return;
    c->last_lag_ms = now;
    if (sl_lag_read(sl_js_ctx(c->js), c->set->stream, c->name, sl_time_now_ns(), &lag) !=
        NATS_OK)
        return; /* the fetch loop reports what is wrong */
    max_age = sl_lag_stream_max_age_s(sl_js_ctx(c->js), c->set->stream);
    sl_series_set(c->stats.pending, (double)lag.pending);
    sl_series_set(c->stats.ack_pending, (double)lag.ack_pending);
    sl_series_set(c->stats.redelivered, (double)lag.redelivered);
    sl_series_set(c->stats.oldest_age, lag.oldest_age_s);
    if (max_age >= 0)
        sl_series_set(c->stats.stream_max_age, max_age);
    if (max_age > 0 && lag.oldest_age_s > max_age / 2 &&
        now - c->last_retention_notice_ms >= RETENTION_NOTICE_MS) {
        c->last_retention_notice_ms = now;
        sl_log(SL_LOG_ERROR,
               "the oldest record consumer %s has not processed is %.0f s old; the stream drops records "
               "older than %.0f s whether processed or not: add replicas or fix what holds them "
               "up before then",
               c->name, lag.oldest_age_s, max_age);
    }
}

/* Fetches and builds one batch and takes a pipeline step with it; returns
 * how many messages it held. While a write is in flight the fetch waits
 * briefly at most, so that an idle stream does not hold back the settling
 * of the batch being written. */

static int fetch_once(sl_consumer *c)
{
    sl_batch *b = sl_pipeline_free_batch(c);
    int64_t wait = c->set->fetch_wait_ms;
    int n = 0;
    natsStatus s;

    if (c->in_flight != NULL && wait > IN_FLIGHT_FETCH_WAIT_MS)
        wait = IN_FLIGHT_FETCH_WAIT_MS;
    s = sl_pull_fetch(c->pull, b->msgs, (int)c->cap, c->set->fetch_max_bytes, wait, &n);
    if (n > 0) {
        b->n = (size_t)n;
        b->fetched_ms = sl_time_mono_ms();
        sl_series_add(c->stats.delivered, (double)n);
        sl_batch_build(c, b);
    }
    sl_pipeline_step(c, n > 0 ? b : NULL);
    if (s == NATS_OK) {
        c->fetch_errors = 0;
        return n;
    }
    sl_pipeline_drain(c);
    if (sl_consumer_notice_due(c))
        sl_log(SL_LOG_WARN, "fetch from %s failed: %s", c->name, natsStatus_GetText(s));
    /* Consumer deleted, stream recreated, server replaced: bind again. */
    if (++c->fetch_errors >= 3) {
        sl_consumer_unbind(c);
        c->fetch_errors = 0;
    }
    sl_consumer_pause(c, 250);
    return n;
}

/* Nothing is in flight whenever the loop pauses or binds: a fetch that
 * brings nothing, a failed fetch and a failed write all end with the
 * pipeline drained. */
int sl_consumer_run(sl_consumer *c, char *err, size_t errlen)
{
    if (!sl_consumer_connect(c, err, errlen))
        return -1;
    if (!sl_pipeline_start(c)) {
        snprintf(err, errlen, "cannot start the writer thread");
        sl_js_close(c->js);
        c->js = NULL;
        return -1;
    }
    c->last_stats_ms = sl_time_mono_ms();
    while (!atomic_load(&c->stopping)) {
        atomic_store(&c->stats.nats_up, sl_js_connected(c->js));
        /* Lag is measured while the store is away too: that is when it grows. */
        lag_update(c);
        stats_log_periodic(c);
        if (c->pull == NULL && !sl_consumer_provision(c)) {
            sl_consumer_pause(c, 1000);
            continue;
        }
        if (!sl_consumer_store_ready(c))
            continue;
        if (fetch_once(c) == 0)
            sl_consumer_store_check_idle(c);
    }
    sl_pipeline_drain(c);
    sl_pipeline_stop(c);
    if (c->pull != NULL)
        sl_consumer_unbind(c);
    stats_log(c, SL_LOG_INFO, "stopped");
    sl_js_close(c->js);
    c->js = NULL;
    return 0;
}

void sl_consumer_stop(sl_consumer *c)
{
    pthread_mutex_lock(&c->mu);
    atomic_store(&c->stopping, true);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

const sl_consumer_stats *sl_consumer_stats_of(const sl_consumer *c)
{
    return &c->stats;
}

bool sl_consumer_ready(const sl_consumer *c, char *why, size_t whylen)
{
    const sl_consumer_stats *st = &c->stats;

    if (!atomic_load(&st->nats_up))
        snprintf(why, whylen, "not connected to NATS");
    else if (!atomic_load(&st->bound))
        snprintf(why, whylen, "consumer %s not bound (stream %s missing?)", c->name,
                 c->set->stream);
    else if (!atomic_load(&st->store_up))
        snprintf(why, whylen, "MongoDB not reachable");
    else
        return true;
    return false;
}

/* ---- life cycle --------------------------------------------------------- */

/* The consumer's series; registering them twice (a second consumer of the
 * same name in one process) yields the same series. */
static void stats_register(sl_consumer_stats *st, const char *name)
{
    sl_metric *outcome = sl_metric_counter(
        "sluice_consumer_messages_total",
        "Messages settled, by outcome: stored, duplicate (already stored), nak (to be "
        "redelivered), dlq (dead-lettered)",
        "consumer,outcome");
    sl_metric *gauge;

    st->delivered = sl_metric_with(
        sl_metric_counter("sluice_consumer_delivered_total",
                          "Messages fetched from the stream, redeliveries included", "consumer"),
        name, NULL);
    st->stored = sl_metric_with(outcome, name, "stored", NULL);
    st->duplicates = sl_metric_with(outcome, name, "duplicate", NULL);
    st->naked = sl_metric_with(outcome, name, "nak", NULL);
    st->dlq = sl_metric_with(outcome, name, "dlq", NULL);
    st->mongo_errors = sl_metric_with(
        sl_metric_counter("sluice_consumer_mongo_errors_total",
                          "Bulk writes that failed as a whole (the batch was nak'ed)", "consumer"),
        name, NULL);
    st->write_seconds = sl_metric_with(
        sl_metric_histogram("sluice_consumer_mongo_write_seconds",
                            "Time of one unordered bulk insert into MongoDB", "consumer",
                            sl_metrics_latency_buckets, sl_metrics_latency_nbuckets),
        name, NULL);
    gauge = sl_metric_gauge("sluice_consumer_pending_messages",
                            "Messages in the stream not yet delivered to the consumer (JetStream "
                            "NumPending): the consumer's lag",
                            "consumer");
    st->pending = sl_metric_with(gauge, name, NULL);
    gauge = sl_metric_gauge("sluice_consumer_ack_pending_messages",
                            "Messages delivered but not yet acknowledged (JetStream NumAckPending)",
                            "consumer");
    st->ack_pending = sl_metric_with(gauge, name, NULL);
    gauge = sl_metric_gauge("sluice_consumer_oldest_unprocessed_age_seconds",
                            "Age of the oldest record in the stream that the consumer has not "
                            "processed (0 when it has processed everything)",
                            "consumer");
    st->oldest_age = sl_metric_with(gauge, name, NULL);
    gauge = sl_metric_gauge("sluice_consumer_stream_max_age_seconds",
                            "The stream's retention by age (0: unlimited): records older than "
                            "this are dropped, processed or not",
                            "consumer");
    st->stream_max_age = sl_metric_with(gauge, name, NULL);
    gauge = sl_metric_gauge("sluice_consumer_redelivered_messages",
                            "Messages delivered more than once and not yet acknowledged "
                            "(JetStream NumRedelivered)",
                            "consumer");
    st->redelivered = sl_metric_with(gauge, name, NULL);
}

sl_consumer *sl_consumer_new(const sl_consumer_config *cfg, sl_mongo *mongo, char *err,
                             size_t errlen)
{
    sl_consumer *c = calloc(1, sizeof(*c));

    if (c == NULL || !sl_pipeline_alloc(c, (size_t)cfg->settings->batch_size)) {
        snprintf(err, errlen, "out of memory");
        sl_consumer_free(c);
        return NULL;
    }
    c->cfg = *cfg;
    c->set = cfg->settings;
    c->mongo = mongo;
    sl_consumer_name(c->set, c->name, sizeof(c->name));
    stats_register(&c->stats, c->name);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    pthread_mutex_init(&c->wmu, NULL);
    pthread_cond_init(&c->wcond, NULL);
    return c;
}

void sl_consumer_free(sl_consumer *c)
{
    if (c == NULL)
        return;
    if (c->set != NULL) {
        pthread_cond_destroy(&c->wcond);
        pthread_mutex_destroy(&c->wmu);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->mu);
    }
    sl_pipeline_free(c);
    free(c);
}
