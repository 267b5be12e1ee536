/* ingest: see ingest.h.
 *
 * Call state. Every call is an ingest_call, reference-counted by what is
 * outstanding on its behalf: each started gRPC batch and each publish whose
 * PubAck has not come back holds one reference. The call is freed by whoever
 * drops the last one, so nothing can complete into freed memory. The call's
 * mutex guards its fields; completions arrive on gRPC workers and PubAcks on
 * cnats' thread, in any order.
 *
 * Records in a call live in slots. A unary call has one, a batch one per
 * record, a stream a queue of slots: a record takes the slot at `tail` when
 * it is read, results leave from `head` in request order, and the next
 * message is read only while fewer than stream_window are outstanding. That
 * window is the stream's backpressure. The queue is a list of fixed chunks of
 * SLOT_CHUNK slots, taken at the tail and given back at the head as they
 * empty (one spare is kept), so a stream holds memory for what it has in
 * flight, not for its whole window, and a slot never moves while its
 * publish is out. Across all calls, in_flight bounds the records
 * published and not yet acknowledged (RESOURCE_EXHAUSTED beyond). */
#include "ingest.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_grpc_call.h"
#include "sl_grpc_codes.h"
#include "sl_log.h"
#include "sl_metrics.h"
#include "sl_pb_check.h"
#include "sl_retry.h"
#include "sl_time.h"
#include "sl_utf8.h"

#define METHOD_INGEST "/sluice.v1.IngestService/Ingest"
#define METHOD_BATCH "/sluice.v1.IngestService/IngestBatch"
#define METHOD_STREAM "/sluice.v1.IngestService/IngestStream"

typedef enum rpc_kind { RPC_UNARY, RPC_BATCH, RPC_STREAM } rpc_kind;
typedef enum slot_state { SLOT_FREE, SLOT_WAIT, SLOT_DONE } slot_state;

typedef struct ingest_call ingest_call;

typedef struct slot {
    sl_js_pending pending;
    ingest_call *call;
    slot_state state;
    int code; /* 0: stored; otherwise the gRPC status of this record */
    int32_t retry_ms; /* a failure a retry can cure: the client's wait (sl_retry); else 0 */
    int64_t published_ns;
    uint64_t sequence;
    bool duplicate;
    char id[SL_RECORD_ID_MAX + 1];
    /* The stream that stored the record: the configured name, or (should
     * JetStream name another) a copy in stream_copy. A rejected record's
     * message is allocated only when there is one: slots stay small, and a
     * stream holds stream_window of them. */
    const char *stream;
    char *stream_copy;
    char *message;
} slot;

/* Counters for what happens to records, beside the per-method gRPC ones. */
/* A piece of a stream's slot queue: indexes [k * SLOT_CHUNK, (k + 1) *
 * SLOT_CHUNK) for some k. */
#define SLOT_CHUNK 32
typedef struct slot_chunk {
    struct slot_chunk *next;
    slot slots[SLOT_CHUNK];
} slot_chunk;

typedef struct ingest_metrics {
    sl_series *stored, *duplicate;
    sl_metric *records;             /* sluice_ingest_records_total{outcome,code} */
    _Atomic(sl_series *) rejected[17];
    sl_metric *invalid;             /* sluice_ingest_invalid_records_total{field} */
    sl_series *publish_seconds;     /* publish to PubAck */
    sl_series *unauthenticated;     /* sluice_ingest_unauthenticated_calls_total */
} ingest_metrics;

struct ingest_service {
    ingest_config cfg;
    ingest_metrics m;
    sl_grpc_server *srv;
    sl_js *js;
    atomic_long in_flight;
    atomic_bool draining;
    pthread_mutex_t mu; /* guards streams */
    ingest_call *streams;
};

struct ingest_call {
    sl_call base; /* first: an ingest_call is an sl_call */
    ingest_service *svc;
    rpc_kind kind;
    bool reading_done; /* the client half-closed, or the call died */
    char traceparent[SL_TRACEPARENT_MAX + 1]; /* longer values are cut */
    char principal[SL_PRINCIPAL_MAX]; /* the verified caller; "" without authentication */
    slot one; /* the unary call's slot */
    slot *slots; /* unary: &one; batch: one per record */
    size_t nslots;
    /* A stream: the slots from head to tail, in chunks; see the top. */
    slot_chunk *head_chunk, *tail_chunk, *spare_chunk;
    size_t head, tail, waiting;
    ingest_call *prev, *next; /* svc->streams, for drain */
};

static void slot_clear(slot *s);

/* ---- call life ------------------------------------------------------------- */

/* sl_call_ops.unlink: the last reference is gone; a stream leaves
 * svc->streams, where ingest_service_drain may be about to lock it (its
 * mutex is destroyed only after this). */
static void call_unlink(sl_call *b)
{
    ingest_call *c = (ingest_call *)b;
    ingest_service *svc = c->svc;
    if (c->kind != RPC_STREAM)
        return;
    pthread_mutex_lock(&svc->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        svc->streams = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&svc->mu);
}

/* sl_call_ops.destroy: frees the call. */
static void call_destroy(sl_call *b)
{
    ingest_call *c = (ingest_call *)b;
    for (size_t i = 0; i < c->nslots; i++)
        slot_clear(&c->slots[i]);
    if (c->slots != &c->one)
        free(c->slots);
    while (c->head_chunk != NULL) {
        slot_chunk *k = c->head_chunk;
        c->head_chunk = k->next;
        for (size_t i = 0; i < SLOT_CHUNK; i++)
            slot_clear(&k->slots[i]);
        free(k);
    }
    free(c->spare_chunk);
    free(c);
}

/* ---- a stream's slot queue --------------------------------------------------- */

static slot *stream_head(ingest_call *c)
{
    return &c->head_chunk->slots[c->head % SLOT_CHUNK];
}

/* The slot for the next record read, or NULL when no memory is left for it. */
static slot *stream_take_tail(ingest_call *c)
{
    slot_chunk *k;

    if (c->tail % SLOT_CHUNK == 0) { /* the tail chunk is full, or there is none */
        k = c->spare_chunk != NULL ? c->spare_chunk : calloc(1, sizeof(*k));
        if (k == NULL)
            return NULL;
        c->spare_chunk = NULL;
        k->next = NULL;
        if (c->tail_chunk != NULL)
            c->tail_chunk->next = k;
        else
            c->head_chunk = k;
        c->tail_chunk = k;
    }
    return &c->tail_chunk->slots[c->tail++ % SLOT_CHUNK];
}

/* The head slot has been answered and cleared: moves past it, giving its
 * chunk back once the chunk is done. */
static void stream_drop_head(ingest_call *c)
{
    slot_chunk *k = c->head_chunk;

    if (++c->head % SLOT_CHUNK != 0)
        return;
    c->head_chunk = k->next;
    if (c->head_chunk == NULL)
        c->tail_chunk = NULL;
    if (c->spare_chunk == NULL)
        c->spare_chunk = k; /* its slots are all cleared */
    else
        free(k);
}

/* ---- one record -------------------------------------------------------------------- */

static void on_puback(void *closure, const sl_js_ack *ack);

static bool in_flight_acquire(ingest_service *svc)
{
    if (atomic_fetch_add(&svc->in_flight, 1) >= svc->cfg.max_in_flight) {
        atomic_fetch_sub(&svc->in_flight, 1);
        return false;
    }
    return true;
}

/* Frees what a slot holds and zeroes it. */
static void slot_clear(slot *s)
{
    free(s->message);
    free(s->stream_copy);
    memset(s, 0, sizeof(*s));
}

/* The record's answer is an error. message may quote a client's bytes or
 * be cut by a buffer: it is kept as valid UTF-8, which strict clients need
 * to read the response at all. */
static void slot_fail(slot *s, int code, const char *message)
{
    s->state = SLOT_DONE;
    s->code = code;
    s->retry_ms = 0;
    free(s->message);
    s->message = sl_utf8_dup(message);
}

/* The same for a failure a retry can cure after retry_ms. */
static void slot_fail_retry(slot *s, int code, const char *message, int64_t retry_ms)
{
    slot_fail(s, code, message);
    s->retry_ms = (int32_t)retry_ms;
}

static const char *slot_message(const slot *s)
{
    return s->message ? s->message : "out of memory";
}

/* Validates r and publishes it; the slot ends SLOT_DONE (answered now) or
 * SLOT_WAIT (answered by on_puback). Called with c->mu held. */
static void submit_locked(ingest_call *c, slot *s, const Sluice__V1__Record *r, const char *where)
{
    ingest_service *svc = c->svc;
    int64_t now = sl_time_mono_ms(), timeout = svc->cfg.publish_timeout_ms, retry_ms = 0;
    natsMsg *msg = NULL;
    char err[512];
    int code;

    slot_clear(s);
    s->call = c;
    s->state = SLOT_DONE;
    /* Only a valid id is ever echoed (an invalid one may not even be text). */
    if (r != NULL && sl_record_id_valid(r->id))
        snprintf(s->id, sizeof(s->id), "%s", r->id);
    code = sl_record_validate(r, &svc->cfg.limits, where, err, sizeof(err));
    if (code == 0)
        code = sl_auth_authorize(svc->cfg.auth, c->principal, r->type, where, err, sizeof(err));
    if (code != 0)
        return slot_fail(s, code, err);
    if (s->id[0] == '\0')
        sl_uuid_v7(s->id);
    if (c->base.deadline_ms != INT64_MAX) {
        if (c->base.deadline_ms - now <= 0)
            return slot_fail(s, SL_GRPC_DEADLINE_EXCEEDED, "deadline passed before publish");
        if (c->base.deadline_ms - now < timeout)
            timeout = c->base.deadline_ms - now;
    }
    if (!in_flight_acquire(svc)) {
        snprintf(err, sizeof(err), "too many records in flight (limit %lld); retry with backoff",
                 (long long)svc->cfg.max_in_flight);
        return slot_fail_retry(s, SL_GRPC_RESOURCE_EXHAUSTED, err, SL_RETRY_IN_FLIGHT_MS);
    }
    if (sl_record_to_msg(&msg, r, s->id, sl_time_now_ns(), c->traceparent, c->principal) !=
        NATS_OK) {
        atomic_fetch_sub(&svc->in_flight, 1);
        return slot_fail(s, SL_GRPC_INTERNAL, "out of memory building the message");
    }
    s->state = SLOT_WAIT;
    s->published_ns = sl_time_now_ns();
    c->waiting++;
    sl_call_ref_locked(&c->base);
    code = sl_js_publish(svc->js, msg, timeout, &s->pending, on_puback, s, err, sizeof(err),
                         &retry_ms);
    if (code != 0) {
        c->waiting--;
        c->base.refs--;
        atomic_fetch_sub(&svc->in_flight, 1);
        slot_fail_retry(s, code, err, retry_ms);
    }
}

static void fill_response(Sluice__V1__IngestResponse *resp, slot *s)
{
    sluice__v1__ingest_response__init(resp);
    resp->id = s->id;
    resp->stream = (char *)(s->stream ? s->stream : "");
    resp->sequence = s->sequence;
    resp->duplicate = s->duplicate;
}

/* Packs one slot as an IngestResult: the PubAck or the record's error. */
static uint8_t *pack_result(slot *s, size_t *len)
{
    Sluice__V1__IngestResult res;
    Sluice__V1__IngestResponse ack;
    Google__Rpc__Status status;
    sl_retry_detail retry;
    uint8_t *buf;

    sluice__v1__ingest_result__init(&res);
    res.id = s->id;
    if (s->code == 0) {
        fill_response(&ack, s);
        res.outcome_case = SLUICE__V1__INGEST_RESULT__OUTCOME_ACK;
        res.ack = &ack;
    } else {
        google__rpc__status__init(&status);
        status.code = s->code;
        status.message = (char *)slot_message(s);
        sl_retry_attach(&status, &retry, s->retry_ms);
        res.outcome_case = SLUICE__V1__INGEST_RESULT__OUTCOME_ERROR;
        res.error = &status;
    }
    *len = sluice__v1__ingest_result__get_packed_size(&res);
    buf = malloc(*len ? *len : 1);
    if (buf != NULL)
        sluice__v1__ingest_result__pack(&res, buf);
    return buf;
}

/* The field a validation message names: "records[3].payload: ..." ->
 * "payload", "record: required" -> "record". */
static void invalid_field(const char *message, char *out, size_t outlen)
{
    size_t end = strcspn(message, ":");
    const char *dot = memchr(message, '.', end);
    const char *from = dot ? dot + 1 : message;
    size_t n = dot ? strcspn(from, ".[:") : strcspn(message, "[:");
    snprintf(out, outlen, "%.*s", (int)n, from);
}

static void count_result(ingest_service *svc, const slot *s)
{
    ingest_metrics *m = &svc->m;
    sl_series *series;
    char field[64];

    if (s->code == 0) {
        sl_series_inc(s->duplicate ? m->duplicate : m->stored);
        return;
    }
    series = atomic_load(&m->rejected[s->code & 15]);
    if (series == NULL) {
        series = sl_metric_with(m->records, "rejected", sl_grpc_code_name(s->code), NULL);
        atomic_store(&m->rejected[s->code & 15], series);
    }
    sl_series_inc(series);
    if (s->code == SL_GRPC_INVALID_ARGUMENT) {
        invalid_field(slot_message(s), field, sizeof(field));
        sl_series_inc(sl_metric_with(m->invalid, field, NULL));
    }
}

/* Every record's outcome passes here once: counted, and logged with its id
 * and stream sequence. */
static void record_done(ingest_service *svc, const slot *s)
{
    bson_t *f;
    count_result(svc, s);
    if (s->code == 0) {
        f = sl_log_begin(SL_LOG_DEBUG, s->duplicate ? "record duplicate" : "record stored");
        if (f == NULL)
            return;
        BSON_APPEND_UTF8(f, "id", s->id);
        BSON_APPEND_INT64(f, "stream_seq", (int64_t)s->sequence);
    } else {
        f = sl_log_begin(s->code == SL_GRPC_INVALID_ARGUMENT ? SL_LOG_DEBUG : SL_LOG_WARN,
                         "record rejected");
        if (f == NULL)
            return;
        BSON_APPEND_UTF8(f, "id", s->id);
        BSON_APPEND_UTF8(f, "code", sl_grpc_code_name(s->code));
        BSON_APPEND_UTF8(f, "error", slot_message(s));
    }
    sl_log_end(f);
}

/* ---- answering ------------------------------------------------------------------------ */

static void answer_unary_locked(ingest_call *c)
{
    slot *s = &c->one;
    Sluice__V1__IngestResponse resp;
    uint8_t *buf;
    size_t len;

    record_done(c->svc, s);
    if (s->code != 0) {
        sl_call_status_retry_locked(&c->base, s->code, slot_message(s), s->retry_ms);
        return;
    }
    fill_response(&resp, s);
    len = sluice__v1__ingest_response__get_packed_size(&resp);
    buf = malloc(len ? len : 1);
    if (buf == NULL) {
        sl_call_status_locked(&c->base, SL_GRPC_INTERNAL, "out of memory");
        return;
    }
    sluice__v1__ingest_response__pack(&resp, buf);
    if (!c->base.dead)
        sl_call_send_locked(&c->base, buf, len, true, SL_GRPC_OK, "");
    else
        free(buf);
}

static void answer_batch_locked(ingest_call *c)
{
    Sluice__V1__IngestBatchResponse resp;
    Sluice__V1__IngestResult **results = calloc(c->nslots, sizeof(*results));
    uint8_t **parts = calloc(c->nslots, sizeof(*parts));
    uint8_t *buf = NULL;
    size_t len = 0;
    bool ok = results != NULL && parts != NULL;

    /* Each result is packed on its own and unpacked into the response: the
     * simplest way to reuse pack_result's oneof handling. */
    for (size_t i = 0; ok && i < c->nslots; i++) {
        size_t plen;
        record_done(c->svc, &c->slots[i]);
        parts[i] = pack_result(&c->slots[i], &plen);
        results[i] = parts[i] ? sluice__v1__ingest_result__unpack(NULL, plen, parts[i]) : NULL;
        ok = results[i] != NULL;
    }
    if (ok) {
        sluice__v1__ingest_batch_response__init(&resp);
        resp.n_results = c->nslots;
        resp.results = results;
        len = sluice__v1__ingest_batch_response__get_packed_size(&resp);
        buf = malloc(len ? len : 1);
        if (buf != NULL)
            sluice__v1__ingest_batch_response__pack(&resp, buf);
    }
    for (size_t i = 0; results != NULL && i < c->nslots; i++) {
        if (results[i] != NULL)
            sluice__v1__ingest_result__free_unpacked(results[i], NULL);
        free(parts ? parts[i] : NULL);
    }
    free(results);
    free(parts);
    if (buf == NULL)
        sl_call_status_locked(&c->base, SL_GRPC_INTERNAL, "out of memory");
    else if (!c->base.dead)
        sl_call_send_locked(&c->base, buf, len, true, SL_GRPC_OK, "");
    else
        free(buf);
}

/* Moves a stream forward: sends the head result when it is ready, reads again
 * when the window has room, and ends the call once everything read has been
 * answered and reading is over. */
static void pump_stream_locked(ingest_call *c)
{
    ingest_service *svc = c->svc;
    bool draining = atomic_load(&svc->draining);

    if (c->base.dead || c->base.status_sent || c->base.send_busy)
        return;
    if (c->head < c->tail) {
        slot *s = stream_head(c);
        size_t len;
        uint8_t *buf;
        if (s->state != SLOT_DONE)
            return;
        record_done(c->svc, s);
        buf = pack_result(s, &len);
        slot_clear(s); /* SLOT_FREE */
        stream_drop_head(c);
        if (buf != NULL)
            sl_call_send_locked(&c->base, buf, len, false, 0, NULL);
        if (!c->base.recv_busy && !c->reading_done && !draining)
            sl_call_recv_locked(&c->base);
        return;
    }
    if (c->reading_done)
        sl_call_status_locked(&c->base, SL_GRPC_OK, "");
    else if (draining)
        sl_call_status_retry_locked(&c->base, SL_GRPC_UNAVAILABLE,
                                    "server shutting down: every result received is final; "
                                    "resend the records that got none (same ids are safe)",
                                    SL_RETRY_DRAINING_MS);
}

/* cnats' PubAck thread. */
static void on_puback(void *closure, const sl_js_ack *ack)
{
    slot *s = closure;
    ingest_call *c = s->call;

    atomic_fetch_sub(&c->svc->in_flight, 1);
    sl_series_observe(c->svc->m.publish_seconds, (double)(sl_time_now_ns() - s->published_ns) / 1e9);
    pthread_mutex_lock(&c->base.mu);
    s->state = SLOT_DONE;
    c->waiting--;
    if (ack->code != 0) {
        slot_fail_retry(s, ack->code, ack->error, ack->retry_ms);
    } else {
        const char *name = ack->stream ? ack->stream : "";
        s->sequence = ack->sequence;
        s->duplicate = ack->duplicate;
        if (strcmp(name, c->svc->cfg.stream) == 0)
            s->stream = c->svc->cfg.stream;
        else
            s->stream = s->stream_copy = strdup(name);
    }
    if (c->kind == RPC_UNARY)
        answer_unary_locked(c);
    else if (c->kind == RPC_BATCH && c->waiting == 0)
        answer_batch_locked(c);
    else if (c->kind == RPC_STREAM)
        pump_stream_locked(c);
    sl_call_unref_unlock(&c->base);
}

/* ---- reading requests -------------------------------------------------------------------- *
 *
 * A request's bytes are checked before protobuf-c unpacks them
 * (sl_pb_check): protobuf-c gives strings to C without their length, so
 * "a\0b" would be read, validated and stored as "a". A record whose strings
 * break those rules is rejected on its own, like any invalid record, with
 * no id in its result: none of its strings can be trusted. */

#define NOT_A_REQUEST "request: not a valid sluice.v1.IngestRequest message"
#define NOT_A_BATCH "request: not a valid sluice.v1.IngestBatchRequest message"

/* Checks and unpacks an IngestRequest: NULL when the bytes are not one;
 * otherwise *bad tells whether a string broke the rules (why says which). */
static Sluice__V1__IngestRequest *request_unpack(const uint8_t *data, size_t len, bool *bad,
                                                 char *why, size_t whylen)
{
    sl_pb_result r = sl_pb_check(&sluice__v1__ingest_request__descriptor, data, len, why, whylen);
    *bad = r == SL_PB_BAD_STRING;
    return r == SL_PB_MALFORMED ? NULL : sluice__v1__ingest_request__unpack(NULL, len, data);
}

/* Fails a record before it is validated. */
static void reject_locked(ingest_call *c, slot *s, const char *why)
{
    slot_clear(s);
    s->call = c;
    slot_fail(s, SL_GRPC_INVALID_ARGUMENT, why);
}

static void read_unary_locked(ingest_call *c, const uint8_t *data, size_t len)
{
    char why[512];
    bool bad;
    Sluice__V1__IngestRequest *req = request_unpack(data, len, &bad, why, sizeof(why));

    if (req == NULL) {
        sl_call_status_locked(&c->base, SL_GRPC_INVALID_ARGUMENT, NOT_A_REQUEST);
        return;
    }
    if (bad)
        reject_locked(c, &c->one, why);
    else
        submit_locked(c, &c->one, req->record, "record");
    if (c->one.state == SLOT_DONE)
        answer_unary_locked(c);
    sluice__v1__ingest_request__free_unpacked(req, NULL);
}

/* What sl_pb_check_each found in a batch: records[i] fails alone; a bad
 * string anywhere else fails the request. */
typedef struct batch_faults {
    ingest_call *c;
    char other[512];
} batch_faults;

static void on_batch_fault(void *closure, uint32_t number, size_t index, const char *msg)
{
    batch_faults *bf = closure;
    if (number == 1 && index < bf->c->nslots)
        reject_locked(bf->c, &bf->c->slots[index], msg);
    else if (bf->other[0] == '\0')
        snprintf(bf->other, sizeof(bf->other), "%s", msg);
}

/* Rejects what sl_pb_check_each finds; false when the request as a whole
 * is refused (its status sent). */
static bool batch_check_locked(ingest_call *c, const uint8_t *data, size_t len)
{
    batch_faults bf = {c, ""};
    char why[512];

    if (sl_pb_check_each(&sluice__v1__ingest_batch_request__descriptor, data, len, on_batch_fault,
                         &bf, why, sizeof(why)) == SL_PB_MALFORMED) {
        sl_call_status_locked(&c->base, SL_GRPC_INVALID_ARGUMENT, NOT_A_BATCH);
        return false;
    }
    if (bf.other[0] != '\0') {
        sl_call_status_locked(&c->base, SL_GRPC_INVALID_ARGUMENT, bf.other);
        return false;
    }
    return true;
}

static void read_batch_locked(ingest_call *c, const uint8_t *data, size_t len)
{
    Sluice__V1__IngestBatchRequest *req = sluice__v1__ingest_batch_request__unpack(NULL, len, data);
    char msg[128];

    if (req == NULL) {
        sl_call_status_locked(&c->base, SL_GRPC_INVALID_ARGUMENT, NOT_A_BATCH);
        return;
    }
    if (req->n_records == 0 || req->n_records > (size_t)c->svc->cfg.max_batch) {
        snprintf(msg, sizeof(msg), "records: must hold 1 to %lld records (got %zu)",
                 (long long)c->svc->cfg.max_batch, req->n_records);
        sl_call_status_locked(&c->base, SL_GRPC_INVALID_ARGUMENT, msg);
    } else if ((c->slots = calloc(req->n_records, sizeof(slot))) == NULL) {
        sl_call_status_locked(&c->base, SL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        c->nslots = req->n_records;
        if (batch_check_locked(c, data, len)) {
            for (size_t i = 0; i < req->n_records; i++) {
                if (c->slots[i].state == SLOT_DONE)
                    continue; /* rejected by batch_check_locked */
                snprintf(msg, sizeof(msg), "records[%zu]", i);
                submit_locked(c, &c->slots[i], req->records[i], msg);
            }
            if (c->waiting == 0)
                answer_batch_locked(c);
        }
    }
    sluice__v1__ingest_batch_request__free_unpacked(req, NULL);
}

static void read_stream_locked(ingest_call *c, const uint8_t *data, size_t len)
{
    char why[512];
    bool bad;
    Sluice__V1__IngestRequest *req = request_unpack(data, len, &bad, why, sizeof(why));
    slot *s = stream_take_tail(c);

    if (s == NULL) {
        sluice__v1__ingest_request__free_unpacked(req, NULL);
        sl_call_status_locked(&c->base, SL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (req == NULL)
        reject_locked(c, s, NOT_A_REQUEST);
    else if (bad)
        reject_locked(c, s, why);
    else
        submit_locked(c, s, req->record, "record");
    sluice__v1__ingest_request__free_unpacked(req, NULL);
    if (!c->reading_done && !atomic_load(&c->svc->draining) &&
        c->tail - c->head < (size_t)c->svc->cfg.stream_window)
        sl_call_recv_locked(&c->base);
}

/* sl_call_ops.recv: a request message arrived, or reading is over. */
static void call_recv(sl_call *b, const uint8_t *data, size_t len)
{
    ingest_call *c = (ingest_call *)b;

    if (data == NULL) {
        c->reading_done = true;
        if (c->kind == RPC_STREAM)
            pump_stream_locked(c);
        else
            sl_call_status_locked(b, SL_GRPC_INVALID_ARGUMENT, "request: message required");
        return;
    }
    if (b->status_sent)
        return; /* a stream that already ended while this message was on its way */
    if (c->kind == RPC_UNARY) {
        read_unary_locked(c, data, len);
    } else if (c->kind == RPC_BATCH) {
        read_batch_locked(c, data, len);
    } else {
        read_stream_locked(c, data, len);
        pump_stream_locked(c);
    }
}

/* sl_call_ops.sent: a stream can send its next result. */
static void call_sent(sl_call *b)
{
    ingest_call *c = (ingest_call *)b;
    if (c->kind == RPC_STREAM)
        pump_stream_locked(c);
}

static const sl_call_ops ingest_call_ops = {
    .recv = call_recv, .sent = call_sent, .unlink = call_unlink, .destroy = call_destroy};

/* ---- accepting calls --------------------------------------------------------------------- */

/* Who the caller is, before anything of the call is read; a refusal is
 * counted and answered at once. */
static bool call_authenticate(ingest_service *svc, const sl_rpc_start *start, char *principal)
{
    char why[512];
    int code = sl_auth_authenticate(svc->cfg.auth, start->call, start->metadata, principal, why,
                                    sizeof(why));

    if (code == 0)
        return true;
    sl_series_inc(svc->m.unauthenticated);
    sl_log(SL_LOG_DEBUG, "call refused: %s", why);
    sl_grpc_reply_status(start, (grpc_status_code)code, why);
    return false;
}

static void accept_call(ingest_service *svc, const sl_rpc_start *start, rpc_kind kind)
{
    char principal[SL_PRINCIPAL_MAX];
    ingest_call *c;

    if (!call_authenticate(svc, start, principal))
        return;
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        sl_grpc_reply_status(start, GRPC_STATUS_RESOURCE_EXHAUSTED,
                             "out of memory");
        return;
    }
    c->svc = svc;
    c->kind = kind;
    memcpy(c->principal, principal, sizeof(c->principal));
    if (kind != RPC_STREAM) {
        c->slots = &c->one;
        c->nslots = 1;
    } else {
        pthread_mutex_lock(&svc->mu);
        c->next = svc->streams;
        if (c->next)
            c->next->prev = c;
        svc->streams = c;
        pthread_mutex_unlock(&svc->mu);
    }
    sl_grpc_md_get(start->metadata, "traceparent", c->traceparent, sizeof(c->traceparent));
    sl_call_start(&c->base, &ingest_call_ops, start);
}

static void handle_ingest(void *svc, const sl_rpc_start *start)
{
    accept_call(svc, start, RPC_UNARY);
}

static void handle_batch(void *svc, const sl_rpc_start *start)
{
    accept_call(svc, start, RPC_BATCH);
}

static void handle_stream(void *svc, const sl_rpc_start *start)
{
    accept_call(svc, start, RPC_STREAM);
}

/* ---- the service ---------------------------------------------------------------------------- */

#define IN_FLIGHT_GAUGE "sluice_ingest_records_in_flight"
#define IN_FLIGHT_HELP "Records published and not yet acknowledged by JetStream."

/* The HTTP thread, for each scrape. */
static double in_flight_gauge(void *svc)
{
    return (double)ingest_service_in_flight(svc);
}

/* What the gauge reads once the service is gone. */
static double no_service_gauge(void *closure)
{
    (void)closure;
    return 0;
}

static void metrics_init(ingest_service *svc)
{
    ingest_metrics *m = &svc->m;
    m->records = sl_metric_counter("sluice_ingest_records_total",
                                   "Records answered, by outcome (stored, duplicate, rejected) "
                                   "and gRPC code.",
                                   "outcome,code");
    m->stored = sl_metric_with(m->records, "stored", "OK", NULL);
    m->duplicate = sl_metric_with(m->records, "duplicate", "OK", NULL);
    m->unauthenticated = sl_metric_with(
        sl_metric_counter("sluice_ingest_unauthenticated_calls_total",
                          "Calls refused UNAUTHENTICATED: missing or invalid credentials.", NULL),
        NULL);
    m->invalid = sl_metric_counter("sluice_ingest_invalid_records_total",
                                   "Records rejected by validation, by the field at fault.",
                                   "field");
    m->publish_seconds = sl_metric_with(
        sl_metric_histogram("sluice_ingest_publish_seconds",
                            "Time from JetStream publish to its PubAck (or failure).", NULL,
                            sl_metrics_latency_buckets, sl_metrics_latency_nbuckets),
        NULL);
    sl_metric_gauge_fn(IN_FLIGHT_GAUGE, IN_FLIGHT_HELP, in_flight_gauge, svc);
}

ingest_service *ingest_service_new(const ingest_config *cfg, sl_grpc_server *srv, sl_js *js)
{
    ingest_service *svc = calloc(1, sizeof(*svc));
    if (svc == NULL)
        return NULL;
    svc->cfg = *cfg;
    svc->srv = srv;
    svc->js = js;
    pthread_mutex_init(&svc->mu, NULL);
    metrics_init(svc);
    sl_grpc_server_route(srv, METHOD_INGEST, handle_ingest, svc);
    sl_grpc_server_route(srv, METHOD_BATCH, handle_batch, svc);
    sl_grpc_server_route(srv, METHOD_STREAM, handle_stream, svc);
    return svc;
}

void ingest_service_drain(void *service)
{
    ingest_service *svc = service;
    atomic_store(&svc->draining, true);
    pthread_mutex_lock(&svc->mu);
    for (ingest_call *c = svc->streams; c != NULL; c = c->next) {
        pthread_mutex_lock(&c->base.mu);
        if (c->base.refs > 0) /* refs 0: being freed by another thread */
            pump_stream_locked(c);
        pthread_mutex_unlock(&c->base.mu);
    }
    pthread_mutex_unlock(&svc->mu);
}

int64_t ingest_service_in_flight(ingest_service *svc)
{
    return atomic_load(&svc->in_flight);
}

void ingest_service_free(ingest_service *svc)
{
    if (svc == NULL)
        return;
    /* A scrape calls the gauge with the registry locked, and replacing it
     * takes that lock: once replaced, no scrape can reach svc. */
    sl_metric_gauge_fn(IN_FLIGHT_GAUGE, IN_FLIGHT_HELP, no_service_gauge, NULL);
    pthread_mutex_destroy(&svc->mu);
    free(svc);
}
