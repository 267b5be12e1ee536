/* sl_consumer_main: a downstream service's whole life once its settings are
 * read: MongoDB opened, the HTTP endpoint (/metrics, /healthz, /readyz),
 * the signal watcher, the consume loop until SIGTERM or SIGINT, and the
 * cleanup. See sl_consumer.h. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_consumer_internal.h"
#include "sl_http.h"
#include "sl_log.h"
#include "sl_metrics.h"
#include "sl_signal.h"
#include "sl_time.h"

/* ---- a service's main --------------------------------------------------- */

/* The signal watcher's thread. */
static void on_stop_signal(void *closure, int sig)
{
    (void)sig;
    sl_consumer_stop(closure);
}

/* The HTTP thread's /readyz. */
static bool http_ready(void *closure, char *why, size_t whylen)
{
    return sl_consumer_ready(closure, why, whylen);
}

static double ready_gauge(void *closure)
{
    char why[256];
    return sl_consumer_ready(closure, why, sizeof(why)) ? 1 : 0;
}

/* Runs c until a stop signal, with the HTTP endpoint beside it. */
static int serve(sl_consumer *c, char *err, size_t errlen)
{
    const char *listen = c->set->metrics_listen;
    sl_http *http = NULL;
    int rc;

    sl_metric_gauge_fn("sluice_consumer_ready",
                       "1 while connected to NATS, bound to the consumer and MongoDB answers",
                       ready_gauge, c);
    if (listen[0] != '\0' && (http = sl_http_start(listen, http_ready, c, err, errlen)) == NULL)
        return -1;
    if (!sl_signal_watch(on_stop_signal, c)) {
        snprintf(err, errlen, "cannot start the signal thread");
        sl_http_stop(http);
        return -1;
    }
    rc = sl_consumer_run(c, err, errlen);
    sl_signal_unwatch();
    sl_http_stop(http);
    return rc;
}

int sl_consumer_main(const sl_consumer_config *cfg)
{
    const sl_consumer_settings *s = cfg->settings;
    /* Half the AckWait, so that a dead store is an error before the server
     * redelivers; but never so short that a slow store looks dead. */
    int64_t op_timeout_ms = s->ack_wait_ms / 2 > 5000 ? s->ack_wait_ms / 2 : 5000;
    sl_mongo_config mc = {s->mongodb_uri, cfg->service, op_timeout_ms};
    sl_consumer *c = NULL;
    sl_mongo *mongo;
    char err[512];
    int rc = 1;

    mongo = sl_mongo_open(&mc, err, sizeof(err));
    if (mongo == NULL) {
        fprintf(stderr, "%s: %s\n", cfg->service, err);
        return 2;
    }
    c = sl_consumer_new(cfg, mongo, err, sizeof(err));
    if (c != NULL)
        rc = serve(c, err, sizeof(err)) == 0 ? 0 : 1;
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", cfg->service, err);
    sl_consumer_free(c);
    sl_mongo_close(mongo);
    sl_nats_close();
    sl_metrics_free_all();
    return rc;
}
