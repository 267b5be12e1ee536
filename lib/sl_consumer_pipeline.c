/* sl_consumer_pipeline: the write pipeline. Two sl_batch take turns: while
 * the writer thread inserts one into MongoDB with one unordered bulk write,
 * the loop fetches and builds the other. sl_pipeline_step waits for the
 * write in flight, hands the next batch over, and only then settles the
 * batch whose write is over (sl_consumer_settle.c): so a message is acked
 * after its own document is stored, never before, and batches are settled
 * in the order fetched. When a write fails as a whole the store is away:
 * the loop stops fetching until a ping answers (sl_consumer_store_ready).
 *
 * Per-batch arrays are sized once for the batch size and reused, so the
 * loop allocates nothing of its own per message (cnats, libbson and
 * libmongoc do). The writer touches only the batch it was handed (and the
 * MongoDB pool, which is thread-safe) until it hands it back under wmu. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_consumer_internal.h"
#include "sl_log.h"
#include "sl_time.h"

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
bool sl_consumer_store_ready(sl_consumer *c)
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
    if (sl_consumer_notice_due(c))
        sl_log(SL_LOG_WARN, "MongoDB not reachable, not fetching until it is: %s", err);
    c->store_retry_ms = c->store_retry_ms == 0 ? 250 : c->store_retry_ms * 2;
    if (c->store_retry_ms > STORE_RETRY_MAX_MS)
        c->store_retry_ms = STORE_RETRY_MAX_MS;
    sl_consumer_pause(c, c->store_retry_ms);
    return false;
}

static void store_lost(sl_consumer *c, const char *what, const char *err)
{
    c->store_ok = false;
    snprintf(c->store_err, sizeof(c->store_err), "%s", err);
    atomic_store(&c->stats.store_up, false);
    sl_consumer_notice_reset(c);
    sl_log(SL_LOG_WARN, "%s; fetching paused: %s", what, err);
}

/* While no messages flow no write tells whether MongoDB is there, so a ping
 * does, every STORE_CHECK_EVERY_MS: /readyz stays truthful when idle. */
void sl_consumer_store_check_idle(sl_consumer *c)
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

/* A message delivered more often than --max-deliver without being settled:
 * every delivery before ended without an answer (the process died on it, or
 * its dead letter could not be stored). It goes to the dead-letter stream
 * without another attempt, so that a record that crashes the consumer
 * cannot keep every replica in a crash loop. */
static bool past_last_delivery(const sl_consumer *c, const sl_delivery *d, char *err)
{
    if (d->deliveries <= (uint64_t)c->set->max_deliver)
        return false;
    snprintf(err, ERROR_LEN,
             "delivered %" PRIu64 " times (more than --max-deliver %" PRId64
             ") without being settled",
             d->deliveries, c->set->max_deliver);
    return true;
}

/* Builds a document for each of b->msgs[0..b->n); those that cannot be
 * built are settled as rejected, the others queued for the write. */
void sl_batch_build(sl_consumer *c, sl_batch *b)
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
        if (past_last_delivery(c, &b->del[i], b->error[i])) {
            b->result[i] = SL_MONGO_REJECTED;
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

bool sl_pipeline_start(sl_consumer *c)
{
    c->wquit = false;
    c->writer_started = pthread_create(&c->writer, NULL, writer_main, c) == 0;
    return c->writer_started;
}

/* Lets the writer finish what it holds and end. */
void sl_pipeline_stop(sl_consumer *c)
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

    sl_batch_settle(c, b);
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
void sl_pipeline_step(sl_consumer *c, sl_batch *next)
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
void sl_pipeline_drain(sl_consumer *c)
{
    if (c->in_flight != NULL)
        sl_pipeline_step(c, NULL);
}

/* The batch the loop may fetch into: the one not in flight. */
sl_batch *sl_pipeline_free_batch(sl_consumer *c)
{
    return c->in_flight == &c->batch[0] ? &c->batch[1] : &c->batch[0];
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

bool sl_pipeline_alloc(sl_consumer *c, size_t cap)
{
    c->cap = cap;
    return batch_alloc(&c->batch[0], cap) && batch_alloc(&c->batch[1], cap);
}

void sl_pipeline_free(sl_consumer *c)
{
    batch_free_arrays(&c->batch[0]);
    batch_free_arrays(&c->batch[1]);
}
