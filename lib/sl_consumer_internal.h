/* sl_consumer_internal: the state of an sl_consumer, shared by the files that
 * make it up; not for the services (they use sl_consumer.h).
 *
 * The consumer is five files, one job each:
 *
 *   sl_consumer_options.c    the settings both services share: flags, checks,
 *                            the consumer's name
 *   sl_consumer_provision.c  NATS, the dead-letter stream, the durable
 *                            consumer (created, or brought to the settings),
 *                            the pull subscription
 *   sl_consumer_pipeline.c   the write pipeline: building documents, the
 *                            writer thread's bulk insert, the store's health
 *   sl_consumer_settle.c     what becomes of each message after its write:
 *                            ack, nak, or dead letter then term
 *   sl_consumer.c            the loop that fetches and drives the pipeline,
 *                            lag, life cycle
 *   sl_consumer_main.c       a service's whole life around the loop
 *
 * Threads: everything runs on the sl_consumer_run thread except the writer
 * (sl_consumer_pipeline.c), which touches only the batch it was handed and
 * the fields under wmu. */
#ifndef SL_CONSUMER_INTERNAL_H
#define SL_CONSUMER_INTERNAL_H

#include <pthread.h>

#include "sl_consumer.h"
#include "sl_js.h"
#include "sl_pull.h"

#define NAME_MAX_LEN 96
#define ERROR_LEN 512
#define NAK_DELAY_MAX_MS 60000
#define REPLAY_INACTIVE_NS (3600LL * 1000000000LL)
#define STORE_RETRY_MAX_MS 5000
#define STATS_EVERY_MS 10000
#define NOTICE_EVERY_MS 30000
#define LAG_EVERY_MS 2000
#define RETENTION_NOTICE_MS 300000
#define STORE_CHECK_EVERY_MS 5000
#define IN_FLIGHT_FETCH_WAIT_MS 10

/* One batch: the messages of one fetch, the documents built from them, and
 * what the store said about each, in arrays sized once for the batch size
 * and reused. Two batches take turns: while the writer thread inserts one,
 * the loop fetches and builds the other. */
typedef struct sl_batch {
    size_t n;           /* messages held */
    size_t queued;      /* documents to write: write_docs[0..queued) */
    int64_t fetched_ms; /* monotonic; the messages' AckWait runs from about then */
    sl_delivery *del;
    jsMsgMetaData **meta;
    natsMsg **msgs; /* owned until batch_release */
    bson_t *docs;
    const bson_t **write_docs;
    size_t *write_of; /* write_docs[k] is the document of del[write_of[k]] */
    sl_mongo_outcome *write_out;
    sl_mongo_result *result; /* per delivery */
    bool *duplicate;
    char (*error)[ERROR_LEN];

    bool dlq_down; /* a dead letter of this batch failed: nak the others */

    /* The bulk insert's own outcome, set by the writer thread. */
    bool write_ok;
    int64_t write_us;
    char write_err[256];
} sl_batch;

struct sl_consumer {
    sl_consumer_config cfg;
    const sl_consumer_settings *set;
    sl_mongo *mongo;
    sl_js *js;
    sl_pull *pull; /* NULL while not bound */
    char name[NAME_MAX_LEN + 64];

    _Atomic bool stopping;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    sl_consumer_stats stats;

    bool store_ok;
    bool indexes_ok;
    char store_err[256]; /* why the store was last found away */
    int64_t store_retry_ms;
    int fetch_errors;
    int64_t last_notice_ms; /* rate limit for repeated warnings */
    int64_t last_stats_ms;
    double last_stats_delivered;
    int64_t last_lag_ms;
    int64_t last_retention_notice_ms;
    int64_t last_store_ok_ms; /* last time MongoDB answered a write or ping */

    size_t cap;          /* messages per batch */
    sl_batch batch[2];   /* taking turns */
    sl_batch *in_flight; /* handed to the writer, not yet settled; or NULL */

    /* The writer thread and what it shares with the loop, under wmu. */
    pthread_t writer;
    bool writer_started;
    pthread_mutex_t wmu;
    pthread_cond_t wcond;
    sl_batch *wjob; /* handed over and not yet written; NULL when idle */
    bool wquit;
};

/* ---- sl_consumer.c ------------------------------------------------------ */

/* Sleeps up to ms, or less when sl_consumer_stop is called. */
void sl_consumer_pause(sl_consumer *c, int64_t ms);

/* True when a repeated warning should be logged now (first time, then every
 * NOTICE_EVERY_MS); sl_consumer_notice_reset starts over once things are
 * fine. */
bool sl_consumer_notice_due(sl_consumer *c);
void sl_consumer_notice_reset(sl_consumer *c);

/* ---- sl_consumer_provision.c -------------------------------------------- */

/* Opens the NATS connection (no stream provisioning: ingest owns it). */
bool sl_consumer_connect(sl_consumer *c, char *err, size_t errlen);

/* Gets from nothing to a bound subscription; false when some step has to
 * wait (stream missing, NATS away) and will be tried again. */
bool sl_consumer_provision(sl_consumer *c);

/* Drops the subscription; the durable consumer stays on the server. */
void sl_consumer_unbind(sl_consumer *c);

/* ---- sl_consumer_pipeline.c --------------------------------------------- */

bool sl_pipeline_alloc(sl_consumer *c, size_t cap);
void sl_pipeline_free(sl_consumer *c);
bool sl_pipeline_start(sl_consumer *c);
void sl_pipeline_stop(sl_consumer *c);

/* The batch the loop may fetch into: the one not in flight. */
sl_batch *sl_pipeline_free_batch(sl_consumer *c);

/* Builds a document for each of b->msgs[0..b->n). */
void sl_batch_build(sl_consumer *c, sl_batch *b);

/* One step: waits for the batch in flight to be written, hands next (NULL
 * when the fetch brought nothing) to the writer, settles the one written. */
void sl_pipeline_step(sl_consumer *c, sl_batch *next);

/* Writes and settles whatever is in flight: before a pause, and at stop. */
void sl_pipeline_drain(sl_consumer *c);

/* True when MongoDB is known to answer; otherwise probes it and waits. */
bool sl_consumer_store_ready(sl_consumer *c);

/* While idle, a ping every STORE_CHECK_EVERY_MS keeps /readyz truthful. */
void sl_consumer_store_check_idle(sl_consumer *c);

/* ---- sl_consumer_settle.c ----------------------------------------------- */

/* Settles every message of b, whose write is over: ack, nak or dead letter. */
void sl_batch_settle(sl_consumer *c, sl_batch *b);

#endif
