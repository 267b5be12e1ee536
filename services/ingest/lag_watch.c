/* lag_watch: see lag_watch.h. */
#include "lag_watch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sl_lag.h"
#include "sl_log.h"
#include "sl_metrics.h"
#include "sl_time.h"

#define MAX_CONSUMERS 256

/* A consumer seen once keeps its series; one gone since reads 0. */
typedef struct seen {
    char *name;
    sl_series *age, *pending;
    bool present;
} seen;

struct lag_watch {
    sl_js *js;
    const char *stream;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stopping;
    sl_metric *age_family, *pending_family;
    sl_series *max_age;
    seen consumers[MAX_CONSUMERS];
    size_t nconsumers;
};

static seen *seen_find(lag_watch *w, const char *name)
{
    for (size_t i = 0; i < w->nconsumers; i++) {
        if (strcmp(w->consumers[i].name, name) == 0)
            return &w->consumers[i];
    }
    if (w->nconsumers == MAX_CONSUMERS)
        return NULL;
    seen *s = &w->consumers[w->nconsumers];
    s->name = strdup(name);
    if (s->name == NULL)
        return NULL;
    s->age = sl_metric_with(w->age_family, name, NULL);
    s->pending = sl_metric_with(w->pending_family, name, NULL);
    w->nconsumers++;
    return s;
}

static void consumer_report(lag_watch *w, const jsConsumerInfo *ci, int64_t now_ns)
{
    seen *s = ci->Name != NULL ? seen_find(w, ci->Name) : NULL;
    sl_lag lag;

    if (s == NULL || sl_lag_from_info(sl_js_ctx(w->js), w->stream, ci, now_ns, &lag) != NATS_OK)
        return;
    s->present = true;
    sl_series_set(s->age, lag.oldest_age_s);
    sl_series_set(s->pending, (double)(lag.pending + lag.ack_pending));
}

static void report(lag_watch *w)
{
    jsConsumerInfoList *list = NULL;
    int64_t now_ns = sl_time_now_ns();
    double max_age;

    if (!sl_js_ready(w->js))
        return;
    max_age = sl_lag_stream_max_age_s(sl_js_ctx(w->js), w->stream);
    if (max_age >= 0)
        sl_series_set(w->max_age, max_age);
    if (js_Consumers(&list, sl_js_ctx(w->js), w->stream, NULL, NULL) != NATS_OK)
        return;
    for (size_t i = 0; i < w->nconsumers; i++)
        w->consumers[i].present = false;
    for (int i = 0; i < list->Count; i++)
        consumer_report(w, list->List[i], now_ns);
    for (size_t i = 0; i < w->nconsumers; i++) {
        if (!w->consumers[i].present) {
            sl_series_set(w->consumers[i].age, 0);
            sl_series_set(w->consumers[i].pending, 0);
        }
    }
    jsConsumerInfoList_Destroy(list);
}

static void *watch_main(void *arg)
{
    lag_watch *w = arg;

    pthread_mutex_lock(&w->mu);
    while (!w->stopping) {
        struct timespec until = sl_time_deadline(LAG_WATCH_EVERY_MS);
        pthread_mutex_unlock(&w->mu);
        report(w);
        pthread_mutex_lock(&w->mu);
        while (!w->stopping && pthread_cond_timedwait(&w->cond, &w->mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void metrics_init(lag_watch *w)
{
    w->age_family = sl_metric_gauge(
        "sluice_ingest_consumer_oldest_unprocessed_age_seconds",
        "Per durable consumer of the stream: age of the oldest record it has not processed "
        "(0: none, or the consumer is gone). Alert well before the stream's max age.",
        "consumer");
    w->pending_family = sl_metric_gauge(
        "sluice_ingest_consumer_pending_messages",
        "Per durable consumer of the stream: records not yet processed (pending plus "
        "unacknowledged).",
        "consumer");
    w->max_age = sl_metric_with(
        sl_metric_gauge("sluice_ingest_stream_max_age_seconds",
                        "The stream's retention by age (0: unlimited): older records are "
                        "dropped whether or not every consumer processed them.",
                        NULL),
        NULL);
}

lag_watch *lag_watch_start(sl_js *js, const char *stream)
{
    lag_watch *w = calloc(1, sizeof(*w));

    if (w == NULL)
        return NULL;
    w->js = js;
    w->stream = stream;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
    metrics_init(w);
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        sl_log(SL_LOG_ERROR, "cannot start the consumer lag watch thread; lag metrics are off");
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    return w;
}

void lag_watch_stop(lag_watch *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    for (size_t i = 0; i < w->nconsumers; i++)
        free(w->consumers[i].name);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
