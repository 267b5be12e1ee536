/* sl_consumer: see sl_consumer.h.
 *
 * The file reads top to bottom in the order a message lives through it:
 * settings, provisioning (streams, consumer), fetching, building documents,
 * writing, settling (ack, nak, dead letter), and the run loop that ties
 * them together. Fetching and settling go through sl_pull (see there why
 * not cnats' own natsSubscription_Fetch), dead letters through sl_dlq.
 *
 * Per-batch state lives in two sl_batch, arrays sized once for the batch
 * size and reused for every batch, so the loop allocates nothing of its own
 * per message (cnats, libbson and libmongoc do).
 *
 * Pipelining. The bulk insert, the one step that waits on the store, runs on
 * a writer thread; everything else (fetch, build, settle) stays on the
 * sl_consumer_run thread. While batch k is being inserted, the loop fetches
 * and builds batch k+1; it then waits for k's insert, hands k+1 to the
 * writer, and settles k while k+1 is being inserted. So at most one batch is
 * being written and one built, and every batch is settled after its own
 * write, in the order fetched. The writer touches only the batch it was
 * handed (and the MongoDB pool, which is thread-safe) until it hands it
 * back under wmu.
 *
 * The stop flag is an atomic; the mutex and condition variable exist only so
 * that a stop wakes the loop from its waits at once. */
#include "sl_consumer.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sl_dlq.h"
#include "sl_js.h"
#include "sl_http.h"
#include "sl_log.h"
#include "sl_nats.h"
#include "sl_pull.h"
#include "sl_record.h"
#include "sl_signal.h"
#include "sl_time.h"

#define NAME_MAX_LEN 96
#define ERROR_LEN 512
#define BACKOFF_STEPS 5
#define NAK_DELAY_MAX_MS 60000
#define REPLAY_INACTIVE_NS (3600LL * 1000000000LL)
#define STORE_RETRY_MAX_MS 5000
#define STATS_EVERY_MS 10000
#define NOTICE_EVERY_MS 30000
#define LAG_EVERY_MS 2000
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

/* ---- settings ----------------------------------------------------------- */

void sl_consumer_options(sl_option *o, sl_consumer_settings *s, const char *consumer_default,
                         const char *metrics_default)
{
    size_t i = 0;

    /* clang-format off: one option per entry reads better than one field per line */
    o[i++] = (sl_option){"nats-url",
                         "NATS_URL",
                         SL_OPT_STRING,
                         "nats://127.0.0.1:4222",
                         "NATS server URL(s), comma-separated",
                         &s->nats_url,
                         0,
                         0,
                         NULL};
    o[i++] = (sl_option){"mongodb-uri",
                         "MONGODB_URI",
                         SL_OPT_STRING,
                         "mongodb://127.0.0.1:27017/sluice",
                         "MongoDB URI; the database is its path",
                         &s->mongodb_uri,
                         0,
                         0,
                         NULL};
    o[i++] = (sl_option){"stream",
                         "SLUICE_STREAM",
                         SL_OPT_STRING,
                         "SLUICE",
                         "JetStream stream to read",
                         &s->stream,
                         0,
                         0,
                         NULL};
    o[i++] = (sl_option){"consumer",
                         "SLUICE_CONSUMER",
                         SL_OPT_STRING,
                         consumer_default,
                         "durable consumer, shared by all replicas",
                         &s->consumer,
                         0,
                         0,
                         NULL};
    o[i++] = (sl_option){"batch-size",
                         "SLUICE_BATCH_SIZE",
                         SL_OPT_INT,
                         "256",
                         "messages per fetch and per bulk write",
                         &s->batch_size,
                         1,
                         1000,
                         NULL};
    o[i++] = (sl_option){"fetch-wait",
                         "SLUICE_FETCH_WAIT",
                         SL_OPT_DURATION,
                         "500ms",
                         "longest wait for a batch to fill",
                         &s->fetch_wait_ms,
                         1,
                         60000,
                         NULL};
    o[i++] = (sl_option){"ack-wait",
                         "SLUICE_ACK_WAIT",
                         SL_OPT_DURATION,
                         "30s",
                         "redelivery when unacknowledged this long (doubles per delivery)",
                         &s->ack_wait_ms,
                         1000,
                         3600000,
                         NULL};
    o[i++] = (sl_option){"max-deliver",
                         "SLUICE_MAX_DELIVER",
                         SL_OPT_INT,
                         "10",
                         "deliveries before a failing message goes to " SL_DLQ_STREAM,
                         &s->max_deliver,
                         1,
                         1000,
                         NULL};
    o[i++] = (sl_option){"replay-from-seq",
                         "SLUICE_REPLAY_FROM_SEQ",
                         SL_OPT_INT,
                         "0",
                         "replay on a new consumer from this stream sequence (0: off)",
                         &s->replay_from_seq,
                         0,
                         0,
                         NULL};
    o[i++] = (sl_option){"replay-from-time",
                         "SLUICE_REPLAY_FROM_TIME",
                         SL_OPT_STRING,
                         "",
                         "replay on a new consumer from this RFC 3339 time (empty: off)",
                         &s->replay_from_time,
                         0,
                         0,
                         NULL};
    o[i++] = (sl_option){"metrics-listen",
                         "SLUICE_METRICS_LISTEN",
                         SL_OPT_STRING,
                         metrics_default,
                         "HTTP address for /metrics, /healthz, /readyz",
                         &s->metrics_listen,
                         0,
                         0,
                         NULL};
    o[i++] = (sl_option){"log-level",
                         "SLUICE_LOG_LEVEL",
                         SL_OPT_STRING,
                         "info",
                         "debug, info, warn or error",
                         &s->log_level,
                         0,
                         0,
                         NULL};
    /* clang-format on */
}

/* JetStream names: no whitespace, '.', '*', '>', or path separators. */
static bool js_name_valid(const char *name, size_t max)
{
    size_t n = strlen(name);
    return n > 0 && n <= max && strpbrk(name, " \t\r\n.*>/\\") == NULL;
}

static bool nats_url_check(const char *url, char *err, size_t errlen)
{
    sl_nats_servers servers;
    char why[512];

    if (!sl_nats_servers_parse(url, &servers, why, sizeof(why))) {
        snprintf(err, errlen, "invalid --nats-url: %s", why);
        return false;
    }
    sl_nats_servers_free(&servers);
    return true;
}

bool sl_consumer_settings_check(sl_consumer_settings *s, char *err, size_t errlen)
{
    sl_log_level level;

    if (!nats_url_check(s->nats_url, err, errlen))
        return false;
    if (s->mongodb_uri[0] == '\0')
        snprintf(err, errlen, "invalid --mongodb-uri: must not be empty");
    else if (!sl_mongo_uri_check(s->mongodb_uri, err, errlen))
        return false;
    else if (!js_name_valid(s->stream, 255))
        snprintf(err, errlen,
                 "invalid --stream \"%s\": a JetStream name without spaces, "
                 "'.', '*', '>' or slashes",
                 s->stream);
    else if (!js_name_valid(s->consumer, NAME_MAX_LEN))
        snprintf(err, errlen,
                 "invalid --consumer \"%s\": at most %d characters, without "
                 "spaces, '.', '*', '>' or slashes",
                 s->consumer, NAME_MAX_LEN);
    else if (!sl_log_level_parse(s->log_level, &level))
        snprintf(err, errlen, "invalid --log-level \"%s\": expected debug, info, warn or error",
                 s->log_level);
    else if (s->replay_from_seq > 0 && s->replay_from_time[0] != '\0')
        snprintf(err, errlen, "--replay-from-seq and --replay-from-time exclude each other");
    else if (s->replay_from_time[0] != '\0' &&
             (!sl_time_parse_rfc3339(s->replay_from_time, &s->replay_from_ns) ||
              s->replay_from_ns <= 0))
        snprintf(err, errlen,
                 "invalid --replay-from-time \"%s\": expected an RFC 3339 time "
                 "such as 2026-01-02T15:04:05Z",
                 s->replay_from_time);
    else
        return true;
    return false;
}

void sl_consumer_name(const sl_consumer_settings *s, char *out, size_t len)
{
    if (s->replay_from_seq > 0)
        snprintf(out, len, "%s-replay-seq-%" PRId64, s->consumer, s->replay_from_seq);
    else if (s->replay_from_ns > 0 && s->replay_from_ns % 1000000000LL == 0)
        snprintf(out, len, "%s-replay-time-%" PRId64, s->consumer,
                 (int64_t)(s->replay_from_ns / 1000000000LL));
    else if (s->replay_from_ns > 0)
        snprintf(out, len, "%s-replay-time-%" PRId64 "-%09" PRId64, s->consumer,
                 (int64_t)(s->replay_from_ns / 1000000000LL),
                 (int64_t)(s->replay_from_ns % 1000000000LL));
    else
        snprintf(out, len, "%s", s->consumer);
}

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
    /* The server redelivers nothing past MaxDeliver: a nak now would lose it. */
    if (max_deliver > 0 && deliveries >= (uint64_t)max_deliver)
        return SL_SETTLE_DLQ;
    return SL_SETTLE_NAK;
}

const char *sl_delivery_header(const sl_delivery *d, const char *name)
{
    const char *v = NULL;
    if (d->msg == NULL || natsMsgHeader_Get(d->msg, name, &v) != NATS_OK)
        return NULL;
    return v;
}

Sluice__V1__Record *sl_delivery_record(const sl_delivery *d, char *err, size_t errlen)
{
    Sluice__V1__Record *r = sluice__v1__record__unpack(NULL, d->len, d->data);
    if (r == NULL)
        snprintf(err, errlen, "body is not a protobuf sluice.v1.Record (%zu bytes)", d->len);
    return r;
}

const char *sl_delivery_record_id(const sl_delivery *d, const Sluice__V1__Record *r)
{
    const char *id = sl_delivery_header(d, SL_HDR_MSG_ID);
    if (r != NULL && r->id != NULL && r->id[0] != '\0')
        return r->id;
    return id != NULL && id[0] != '\0' ? id : NULL;
}

int64_t sl_delivery_received_ns(const sl_delivery *d)
{
    const char *text = sl_delivery_header(d, SL_HDR_RECEIVED_AT);
    int64_t ns;
    if (text != NULL && sl_time_parse_rfc3339(text, &ns))
        return ns;
    return d->stream_time_ns;
}

const char *sl_delivery_type(const sl_delivery *d)
{
    const char *t = sl_delivery_header(d, SL_HDR_TYPE);
    size_t plen = strlen(SL_SUBJECT_PREFIX);

    if (t != NULL && *t != '\0')
        return t;
    if (d->subject != NULL && strncmp(d->subject, SL_SUBJECT_PREFIX, plen) == 0)
        return d->subject + plen;
    return NULL;
}

/* ---- waiting and logging ------------------------------------------------ */

/* Sleeps up to ms, or less when sl_consumer_stop is called. */
static void pause_ms(sl_consumer *c, int64_t ms)
{
    struct timespec until = sl_time_deadline(ms);

    pthread_mutex_lock(&c->mu);
    while (!atomic_load(&c->stopping) && pthread_cond_timedwait(&c->cond, &c->mu, &until) == 0)
        ;
    pthread_mutex_unlock(&c->mu);
}

/* True when a repeated warning should be logged now (first time, then every
 * NOTICE_EVERY_MS); notice_reset starts over once things are fine. */
static bool notice_due(sl_consumer *c)
{
    int64_t now = sl_time_mono_ms();
    if (c->last_notice_ms != 0 && now - c->last_notice_ms < NOTICE_EVERY_MS)
        return false;
    c->last_notice_ms = now;
    return true;
}

static void notice_reset(sl_consumer *c)
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

static void report_difference(const sl_consumer *c, const char *field, int64_t want, int64_t have)
{
    bson_t *f = sl_log_begin(SL_LOG_WARN, "consumer exists with other settings; keeping them");
    if (f == NULL)
        return;
    BSON_APPEND_UTF8(f, "stream", c->set->stream);
    BSON_APPEND_UTF8(f, "consumer", c->name);
    BSON_APPEND_UTF8(f, "setting", field);
    BSON_APPEND_INT64(f, "configured", want);
    BSON_APPEND_INT64(f, "existing", have);
    sl_log_end(f);
}

/* ---- provisioning: the consumer ------------------------------------------ */

/* BackOff: AckWait, then doubling, at most BACKOFF_STEPS values and fewer
 * than MaxDeliver (the server's rule). The first value is AckWait itself,
 * since the server takes BackOff[0] as the ack wait of the first delivery. */
static int backoff_fill(const sl_consumer_settings *s, int64_t *out)
{
    int n = 0;
    int64_t v = s->ack_wait_ms * 1000000LL;
    while (n < BACKOFF_STEPS && n < s->max_deliver - 1) {
        out[n++] = v;
        v *= 2;
    }
    return n;
}

static void consumer_config_fill(const sl_consumer *c, jsConsumerConfig *cc, int64_t *backoff)
{
    const sl_consumer_settings *s = c->set;

    jsConsumerConfig_Init(cc);
    cc->Durable = c->name;
    cc->AckPolicy = js_AckExplicit;
    cc->AckWait = s->ack_wait_ms * 1000000LL;
    cc->MaxDeliver = s->max_deliver;
    cc->BackOffLen = backoff_fill(s, backoff);
    cc->BackOff = cc->BackOffLen > 0 ? backoff : NULL;
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

static void consumer_compare(const sl_consumer *c, const jsConsumerConfig *want,
                             const jsConsumerConfig *have)
{
    bool backoff_same = want->BackOffLen == have->BackOffLen;
    for (int i = 0; backoff_same && i < want->BackOffLen; i++)
        backoff_same = want->BackOff[i] == have->BackOff[i];

    if (have->AckPolicy != want->AckPolicy)
        report_difference(c, "ack_policy", want->AckPolicy, have->AckPolicy);
    if (have->AckWait != want->AckWait)
        report_difference(c, "ack_wait_ms", want->AckWait / 1000000, have->AckWait / 1000000);
    if (have->MaxDeliver != want->MaxDeliver)
        report_difference(c, "max_deliver", want->MaxDeliver, have->MaxDeliver);
    if (!backoff_same)
        report_difference(c, "backoff_steps", want->BackOffLen, have->BackOffLen);
    if (have->DeliverPolicy != want->DeliverPolicy)
        report_difference(c, "deliver_policy", want->DeliverPolicy, have->DeliverPolicy);
    if (have->OptStartSeq != want->OptStartSeq)
        report_difference(c, "opt_start_seq", (int64_t)want->OptStartSeq,
                          (int64_t)have->OptStartSeq);
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
    int64_t backoff[BACKOFF_STEPS];
    jsErrCode jerr = 0;
    natsStatus s;

    consumer_config_fill(c, &cc, backoff);
    s = js_GetConsumerInfo(&ci, ctx, c->set->stream, c->name, NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr) {
        s = js_AddConsumer(&ci, ctx, c->set->stream, &cc, NULL, &jerr);
        if (s == NATS_OK)
            sl_log(SL_LOG_INFO, "created consumer %s on stream %s", c->name, c->set->stream);
        else /* perhaps a replica created it first: look again */
            s = js_GetConsumerInfo(&ci, ctx, c->set->stream, c->name, NULL, &jerr);
    } else if (s == NATS_OK) {
        consumer_compare(c, &cc, ci->Config);
    }
    if (s != NATS_OK && notice_due(c))
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
        if (notice_due(c))
            sl_log(SL_LOG_WARN, "binding consumer %s failed: %s", c->name, natsStatus_GetText(s));
        return false;
    }
    atomic_store(&c->stats.bound, true);
    sl_log(SL_LOG_INFO,
           "consuming %s through %s (batch %" PRId64 ", fetch wait %" PRId64
           " ms, ack wait %" PRId64 " ms, max deliver %" PRId64 ")",
           c->set->stream, c->name, c->set->batch_size, c->set->fetch_wait_ms, c->set->ack_wait_ms,
           c->set->max_deliver);
    notice_reset(c);
    return true;
}

/* Gets from nothing to a bound subscription; false when some step has to
 * wait (stream missing, NATS away) and will be tried again. */
static bool provision(sl_consumer *c)
{
    if (!sl_js_ready(c->js)) {
        if (notice_due(c))
            sl_log(SL_LOG_WARN, "waiting for NATS and stream %s", c->set->stream);
        return false;
    }
    return sl_dlq_ensure(sl_js_ctx(c->js), c->set->stream) && consumer_ensure(c) &&
           consumer_bind(c);
}

static void unbind(sl_consumer *c)
{
    /* The durable consumer stays on the server; only our interest goes. */
    sl_pull_close(c->pull);
    c->pull = NULL;
    atomic_store(&c->stats.bound, false);
}

/* ---- the store ---------------------------------------------------------- */

static bool indexes_ensure(sl_consumer *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < c->cfg.nindexes; i++) {
        const sl_consumer_index *ix = &c->cfg.indexes[i];
        if (!sl_mongo_ensure_index(c->mongo, c->cfg.collection, ix->name, ix->keys_json, err,
                                   errlen))
            return false;
    }
    return true;
}

/* True when MongoDB is known to answer. Otherwise probes it, and waits with
 * back-off after a failed probe, so the loop fetches nothing while the store
 * is away. */
static bool store_ready(sl_consumer *c)
{
    char err[256];

    if (c->store_ok)
        return true;
    if (sl_mongo_ping(c->mongo, err, sizeof(err)) &&
        (c->indexes_ok || (c->indexes_ok = indexes_ensure(c, err, sizeof(err))))) {
        sl_log(SL_LOG_INFO, "MongoDB reachable (database %s)", sl_mongo_database(c->mongo));
        c->store_ok = true;
        c->store_retry_ms = 0;
        c->last_store_ok_ms = sl_time_mono_ms();
        atomic_store(&c->stats.store_up, true);
        return true;
    }
    if (notice_due(c))
        sl_log(SL_LOG_WARN, "MongoDB not reachable, not fetching until it is: %s", err);
    c->store_retry_ms = c->store_retry_ms == 0 ? 250 : c->store_retry_ms * 2;
    if (c->store_retry_ms > STORE_RETRY_MAX_MS)
        c->store_retry_ms = STORE_RETRY_MAX_MS;
    pause_ms(c, c->store_retry_ms);
    return false;
}

static void store_lost(sl_consumer *c, const char *what, const char *err)
{
    c->store_ok = false;
    snprintf(c->store_err, sizeof(c->store_err), "%s", err);
    atomic_store(&c->stats.store_up, false);
    notice_reset(c);
    sl_log(SL_LOG_WARN, "%s; fetching paused: %s", what, err);
}

/* While no messages flow no write tells whether MongoDB is there, so a ping
 * does, every STORE_CHECK_EVERY_MS: /readyz stays truthful when idle. */
static void store_check_idle(sl_consumer *c)
{
    int64_t now = sl_time_mono_ms();
    char err[256];

    if (now - c->last_store_ok_ms < STORE_CHECK_EVERY_MS)
        return;
    if (sl_mongo_ping(c->mongo, err, sizeof(err)))
        c->last_store_ok_ms = sl_time_mono_ms();
    else
        store_lost(c, "MongoDB not reachable", err);
}

/* ---- one batch: build --------------------------------------------------- */

/* Fills b->del[i] from the message; false when it carries no JetStream
 * metadata (it did not come through a consumer and cannot be settled). */
static bool delivery_init(sl_consumer *c, sl_batch *b, size_t i, natsMsg *m)
{
    sl_delivery *d = &b->del[i];
    jsMsgMetaData *md = NULL;

    memset(d, 0, sizeof(*d));
    d->msg = m;
    d->consumer = c->name;
    d->subject = natsMsg_GetSubject(m);
    d->data = (const uint8_t *)natsMsg_GetData(m);
    d->len = (size_t)natsMsg_GetDataLength(m);
    if (natsMsg_GetMetaData(&md, m) != NATS_OK)
        return false;
    b->meta[i] = md;
    d->stream = md->Stream;
    d->stream_seq = md->Sequence.Stream;
    d->deliveries = md->NumDelivered;
    d->stream_time_ns = md->Timestamp;
    return true;
}

/* Builds a document for each of b->msgs[0..b->n); those that cannot be
 * built are settled as rejected, the others queued for the write. */
static void batch_build(sl_consumer *c, sl_batch *b)
{
    b->queued = 0;
    for (size_t i = 0; i < b->n; i++) {
        b->error[i][0] = '\0';
        b->duplicate[i] = false;
        bson_init(&b->docs[i]);
        if (!delivery_init(c, b, i, b->msgs[i])) {
            sl_log(SL_LOG_ERROR, "message without JetStream metadata on %s; ignored",
                   natsMsg_GetSubject(b->msgs[i]));
            b->result[i] = SL_MONGO_RETRY;
            continue;
        }
        if (!c->cfg.build(c->cfg.closure, &b->del[i], &b->docs[i], b->error[i], ERROR_LEN)) {
            b->result[i] = SL_MONGO_REJECTED;
            continue;
        }
        b->result[i] = SL_MONGO_RETRY;
        b->write_docs[b->queued] = &b->docs[i];
        b->write_of[b->queued++] = i;
    }
}

/* ---- one batch: write --------------------------------------------------- */

/* The bulk insert itself: on the writer thread, touching only b. */
static void batch_insert(sl_consumer *c, sl_batch *b)
{
    b->write_ok = true;
    b->write_us = 0;
    b->write_err[0] = '\0';
    if (b->queued > 0)
        b->write_ok =
            sl_mongo_insert_many(c->mongo, c->cfg.collection, b->write_docs, b->queued,
                                 b->write_out, &b->write_us, b->write_err, sizeof(b->write_err));
}

static void *writer_main(void *arg)
{
    sl_consumer *c = arg;
    sl_batch *b;

    pthread_mutex_lock(&c->wmu);
    for (;;) {
        while (c->wjob == NULL && !c->wquit)
            pthread_cond_wait(&c->wcond, &c->wmu);
        if (c->wjob == NULL)
            break;
        b = c->wjob;
        pthread_mutex_unlock(&c->wmu);
        batch_insert(c, b);
        pthread_mutex_lock(&c->wmu);
        c->wjob = NULL; /* b is the loop's again */
        pthread_cond_broadcast(&c->wcond);
    }
    pthread_mutex_unlock(&c->wmu);
    return NULL;
}

static bool writer_start(sl_consumer *c)
{
    c->wquit = false;
    c->writer_started = pthread_create(&c->writer, NULL, writer_main, c) == 0;
    return c->writer_started;
}

/* Lets the writer finish what it holds and end. */
static void writer_stop(sl_consumer *c)
{
    if (!c->writer_started)
        return;
    pthread_mutex_lock(&c->wmu);
    c->wquit = true;
    pthread_cond_broadcast(&c->wcond);
    pthread_mutex_unlock(&c->wmu);
    pthread_join(c->writer, NULL);
    c->writer_started = false;
}

/* Hands b to the writer, which must be idle. */
static void writer_hand(sl_consumer *c, sl_batch *b)
{
    pthread_mutex_lock(&c->wmu);
    c->wjob = b;
    pthread_cond_broadcast(&c->wcond);
    pthread_mutex_unlock(&c->wmu);
}

/* Waits until the writer has written what it was handed. */
static void writer_wait(sl_consumer *c)
{
    pthread_mutex_lock(&c->wmu);
    while (c->wjob != NULL)
        pthread_cond_wait(&c->wcond, &c->wmu);
    pthread_mutex_unlock(&c->wmu);
}

/* Reads the outcome of b's insert into its per-delivery results. */
static void batch_write_done(sl_consumer *c, sl_batch *b)
{
    if (b->queued == 0)
        return;
    sl_series_observe(c->stats.write_seconds, (double)b->write_us / 1e6);
    if (!b->write_ok) {
        sl_series_inc(c->stats.mongo_errors);
        store_lost(c, "MongoDB write failed; batch nak'ed", b->write_err);
    } else {
        c->last_store_ok_ms = sl_time_mono_ms();
    }
    for (size_t k = 0; k < b->queued; k++) {
        size_t i = b->write_of[k];
        if (!b->write_ok) {
            snprintf(b->error[i], ERROR_LEN, "MongoDB write failed: %s", b->write_err);
            continue;
        }
        b->result[i] = b->write_out[k].result;
        b->duplicate[i] = b->write_out[k].duplicate;
        if (b->result[i] != SL_MONGO_STORED)
            snprintf(b->error[i], ERROR_LEN, "MongoDB refused the document (code %d): %s",
                     (int)b->write_out[k].code, b->write_out[k].error);
    }
}

/* b was built while the batch before it was being written, and that write
 * failed as a whole: b is not written but fails the same way (nak, or dead
 * letter on the last delivery), as it would have moments later. */
static void batch_write_skipped(sl_consumer *c, sl_batch *b)
{
    for (size_t k = 0; k < b->queued; k++)
        snprintf(b->error[b->write_of[k]], ERROR_LEN,
                 "MongoDB write failed for the batch before this one: %s", c->store_err);
}

/* ---- one batch: settle -------------------------------------------------- */

/* Dead-letters message i and terminates it; on the last delivery a
 * retryable failure says so in its error. */
static void settle_dlq(sl_consumer *c, sl_batch *b, size_t i)
{
    const sl_delivery *d = &b->del[i];
    char error[ERROR_LEN + 64];
    sl_dlq_letter l = {d->msg, c->name, d->stream, d->stream_seq, sl_delivery_type(d), error};

    if (b->result[i] == SL_MONGO_RETRY)
        snprintf(error, sizeof(error), "gave up after %" PRIu64 " deliveries: %s", d->deliveries,
                 b->error[i]);
    else
        snprintf(error, sizeof(error), "%s", b->error[i]);
    if (sl_dlq_publish(sl_js_ctx(c->js), sl_js_conn(c->js), &l, d->deliveries)) {
        sl_pull_term(sl_js_conn(c->js), d->msg);
        sl_series_inc(c->stats.dlq);
    } else {
        sl_log(SL_LOG_ERROR,
               "dead letter for stream seq %" PRIu64 " not stored; message "
               "left unacknowledged for redelivery",
               d->stream_seq);
    }
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
        sl_pull_ack(sl_js_conn(c->js), d->msg);
        sl_series_inc(b->duplicate[i] ? st->duplicates : st->stored);
        settle_log(d, b->duplicate[i] ? "record already stored" : "record stored", NULL);
        break;
    case SL_SETTLE_NAK:
        sl_pull_nak(sl_js_conn(c->js), d->msg,
                    sl_consumer_backoff_ms(d->deliveries, NAK_DELAY_MAX_MS));
        sl_series_inc(st->naked);
        settle_log(d, "record nak'ed", b->error[i]);
        break;
    case SL_SETTLE_DLQ:
        settle_dlq(c, b, i);
        break;
    }
}

static void batch_settle(sl_consumer *c, sl_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        if (b->meta[i] != NULL)
            settle_one(c, b, i);
    }
    /* Acks are fire-and-forget publishes: make sure the server has them
     * before the next fetch (and before exit). */
    natsConnection_FlushTimeout(sl_js_conn(c->js), 5000);
}

static void batch_release(sl_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        bson_destroy(&b->docs[i]);
        jsMsgMetaData_Destroy(b->meta[i]);
        b->meta[i] = NULL;
        natsMsg_Destroy(b->msgs[i]);
        b->msgs[i] = NULL;
    }
    b->n = 0;
    b->queued = 0;
}

/* Settles b, whose write is over (or was skipped), and frees it for reuse. */
static void batch_finish(sl_consumer *c, sl_batch *b)
{
    size_t n = b->n;

    batch_settle(c, b);
    batch_release(b);
    sl_log(SL_LOG_DEBUG, "batch of %zu settled", n);
}

/* A batch that waited long for the writer (the write before it was slow)
 * restarts its messages' ack timers, so the server does not redeliver them
 * while they are being written. */
static void batch_touch(sl_consumer *c, sl_batch *b)
{
    if (sl_time_mono_ms() - b->fetched_ms < c->set->ack_wait_ms / 4)
        return;
    for (size_t i = 0; i < b->n; i++) {
        if (b->meta[i] != NULL)
            sl_pull_in_progress(sl_js_conn(c->js), b->del[i].msg);
    }
}

/* ---- the pipeline ------------------------------------------------------- */

/* One step: waits for the batch in flight to be written, hands next (just
 * built; NULL when the fetch brought nothing) to the writer, and settles
 * the batch in flight while next is being written. When the write in flight
 * failed as a whole, the store is away: next is not written but settled
 * like it, and nothing is left in flight. */
static void pipeline_step(sl_consumer *c, sl_batch *next)
{
    sl_batch *prev = c->in_flight;

    c->in_flight = NULL;
    if (prev != NULL) {
        writer_wait(c);
        batch_write_done(c, prev);
    }
    if (next != NULL && c->store_ok) {
        batch_touch(c, next);
        writer_hand(c, next);
        c->in_flight = next;
    } else if (next != NULL) {
        batch_write_skipped(c, next);
    }
    if (prev != NULL)
        batch_finish(c, prev);
    if (next != NULL && c->in_flight != next)
        batch_finish(c, next);
}

/* Writes and settles whatever is in flight: before a pause, and at stop. */
static void pipeline_drain(sl_consumer *c)
{
    if (c->in_flight != NULL)
        pipeline_step(c, NULL);
}

/* The batch the loop may fetch into: the one not in flight. */
static sl_batch *batch_free(sl_consumer *c)
{
    return c->in_flight == &c->batch[0] ? &c->batch[1] : &c->batch[0];
}

/* ---- the loop ----------------------------------------------------------- */

/* Every LAG_EVERY_MS, asks JetStream how far behind the consumer is: what
 * the stream holds that no replica has been given yet, and what is out with
 * a replica but not acknowledged. */
static void lag_update(sl_consumer *c)
{
    int64_t now = sl_time_mono_ms();
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;

    if (now - c->last_lag_ms < LAG_EVERY_MS || !sl_js_connected(c->js))
        return;
    c->last_lag_ms = now;
    if (js_GetConsumerInfo(&ci, sl_js_ctx(c->js), c->set->stream, c->name, NULL, &jerr) !=
        NATS_OK)
        return; /* the fetch loop reports what is wrong */
    sl_series_set(c->stats.pending, (double)ci->NumPending);
    sl_series_set(c->stats.ack_pending, (double)ci->NumAckPending);
    sl_series_set(c->stats.redelivered, (double)ci->NumRedelivered);
    jsConsumerInfo_Destroy(ci);
}

/* Fetches and builds one batch and takes a pipeline step with it; returns
 * how many messages it held. While a write is in flight the fetch waits
 * briefly at most, so that an idle stream does not hold back the settling
 * of the batch being written. */
static int fetch_once(sl_consumer *c)
{
    sl_batch *b = batch_free(c);
    int64_t wait = c->set->fetch_wait_ms;
    int n = 0;
    natsStatus s;

    if (c->in_flight != NULL && wait > IN_FLIGHT_FETCH_WAIT_MS)
        wait = IN_FLIGHT_FETCH_WAIT_MS;
    s = sl_pull_fetch(c->pull, b->msgs, (int)c->cap, wait, &n);
    if (n > 0) {
        b->n = (size_t)n;
        b->fetched_ms = sl_time_mono_ms();
        sl_series_add(c->stats.delivered, (double)n);
        batch_build(c, b);
    }
    pipeline_step(c, n > 0 ? b : NULL);
    if (s == NATS_OK) {
        c->fetch_errors = 0;
        return n;
    }
    pipeline_drain(c);
    if (notice_due(c))
        sl_log(SL_LOG_WARN, "fetch from %s failed: %s", c->name, natsStatus_GetText(s));
    /* Consumer deleted, stream recreated, server replaced: bind again. */
    if (++c->fetch_errors >= 3) {
        unbind(c);
        c->fetch_errors = 0;
    }
    pause_ms(c, 250);
    return n;
}

static bool nats_open(sl_consumer *c, char *err, size_t errlen)
{
    sl_js_config jc = {
        .url = c->set->nats_url,
        .client_name = c->cfg.service,
        .stream = {.name = c->set->stream, .subjects = SL_STREAM_SUBJECTS},
        .provision = false,
    };
    natsStatus s = sl_js_open(&c->js, &jc, 1);
    char shown[1024];

    if (s == NATS_OK)
        return true;
    sl_nats_url_redact(c->set->nats_url, shown, sizeof(shown));
    snprintf(err, errlen, "cannot use NATS at %s: %s", shown, natsStatus_GetText(s));
    return false;
}

/* Nothing is in flight whenever the loop pauses or binds: a fetch that
 * brings nothing, a failed fetch and a failed write all end with the
 * pipeline drained. */
int sl_consumer_run(sl_consumer *c, char *err, size_t errlen)
{
    if (!nats_open(c, err, errlen))
        return -1;
    if (!writer_start(c)) {
        snprintf(err, errlen, "cannot start the writer thread");
        sl_js_close(c->js);
        c->js = NULL;
        return -1;
    }
    c->last_stats_ms = sl_time_mono_ms();
    while (!atomic_load(&c->stopping)) {
        atomic_store(&c->stats.nats_up, sl_js_connected(c->js));
        if (c->pull == NULL && !provision(c)) {
            pause_ms(c, 1000);
            continue;
        }
        if (!store_ready(c))
            continue;
        if (fetch_once(c) == 0)
            store_check_idle(c);
        lag_update(c);
        stats_log_periodic(c);
    }
    pipeline_drain(c);
    writer_stop(c);
    if (c->pull != NULL)
        unbind(c);
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
    gauge = sl_metric_gauge("sluice_consumer_redelivered_messages",
                            "Messages delivered more than once and not yet acknowledged "
                            "(JetStream NumRedelivered)",
                            "consumer");
    st->redelivered = sl_metric_with(gauge, name, NULL);
}

static bool batch_alloc(sl_batch *b, size_t cap)
{
    b->msgs = calloc(cap, sizeof(*b->msgs));
    b->del = calloc(cap, sizeof(*b->del));
    b->meta = calloc(cap, sizeof(*b->meta));
    b->docs = calloc(cap, sizeof(*b->docs));
    b->write_docs = calloc(cap, sizeof(*b->write_docs));
    b->write_of = calloc(cap, sizeof(*b->write_of));
    b->write_out = calloc(cap, sizeof(*b->write_out));
    b->result = calloc(cap, sizeof(*b->result));
    b->duplicate = calloc(cap, sizeof(*b->duplicate));
    b->error = calloc(cap, sizeof(*b->error));
    return b->msgs && b->del && b->meta && b->docs && b->write_docs && b->write_of &&
           b->write_out && b->result && b->duplicate && b->error;
}

static void batch_free_arrays(sl_batch *b)
{
    free(b->msgs);
    free(b->del);
    free(b->meta);
    free(b->docs);
    free(b->write_docs);
    free(b->write_of);
    free(b->write_out);
    free(b->result);
    free(b->duplicate);
    free(b->error);
}

static bool arrays_alloc(sl_consumer *c, size_t cap)
{
    c->cap = cap;
    return batch_alloc(&c->batch[0], cap) && batch_alloc(&c->batch[1], cap);
}

sl_consumer *sl_consumer_new(const sl_consumer_config *cfg, sl_mongo *mongo, char *err,
                             size_t errlen)
{
    sl_consumer *c = calloc(1, sizeof(*c));

    if (c == NULL || !arrays_alloc(c, (size_t)cfg->settings->batch_size)) {
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
    batch_free_arrays(&c->batch[0]);
    batch_free_arrays(&c->batch[1]);
    free(c);
}

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

int sl_consumer_configure(const char *service, const sl_option *opts, const char *usage,
                          sl_consumer_settings *s, int argc, char **argv)
{
    sl_log_level level;
    char err[1024];

    switch (sl_config_parse(opts, argc, argv, usage, err, sizeof(err))) {
    case SL_CONFIG_HELP:
        return 0;
    case SL_CONFIG_ERROR:
        break;
    default:
        if (sl_consumer_settings_check(s, err, sizeof(err))) {
            sl_log_level_parse(s->log_level, &level);
            sl_log_init(service, level);
            return -1;
        }
    }
    fprintf(stderr, "%s: %s\n", service, err);
    return 2;
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
    nats_Close();
    sl_metrics_free_all();
    return rc;
}
