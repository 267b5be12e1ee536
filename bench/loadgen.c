/* sluice-loadgen: a load generator for sluice-ingest on the gRPC C core client.
 *
 * It sends a fixed number of identical records (type "bench.event", a JSON
 * object payload of about --payload-bytes, no id so the server assigns one)
 * through one of the three RPCs and counts only acknowledged records:
 *
 *   unary   C callers, each looping one Ingest call at a time;
 *   batch   C callers, each looping one IngestBatch call of B records at a time;
 *   stream  C IngestStream calls, each keeping up to W records in flight.
 *
 * Threads: --threads workers, each owning one completion queue and the
 * callers assigned to it (caller i goes to worker i % threads, and to channel
 * i % connections). A caller's state is touched only by its worker, so nothing
 * but the record counter and the start/stop flags is shared. Records are
 * claimed from one atomic counter, so the total sent is exactly --records
 * however the callers progress; --duration-limit cancels whatever is still
 * running at that time.
 *
 * Latency: unary and stream record each record's time from the start of its
 * send to its result (results of a stream come in request order, so a ring of
 * send times per call finds it); batch records the call's time, which is the
 * latency of every record in it. Latencies go into a fixed log-linear
 * histogram (under 0.4% error), so memory does not grow with --records.
 *
 * The request bytes are packed once and shared by every send (one refcounted
 * slice), so the generator spends its CPU on gRPC, not on protobuf.
 *
 * Security, to measure what it costs: --tls-ca makes every channel TLS,
 * verifying the server with that CA; --token sends `authorization: Bearer
 * <token>` in the initial metadata of every call (so once per IngestStream,
 * once per batch, once per unary record), as a client's per-call credentials
 * would. Both are read once at start. */
#include <getopt.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/v1/ingest.pb-c.h"

#define METHOD_INGEST "/sluice.v1.IngestService/Ingest"
#define METHOD_BATCH "/sluice.v1.IngestService/IngestBatch"
#define METHOD_STREAM "/sluice.v1.IngestService/IngestStream"

#define MAX_CONCURRENCY 100000
#define MAX_RECORDS 1000000000LL
#define NCODES 17 /* gRPC status codes 0..16 */

/* ---- options -------------------------------------------------------------------- */

typedef enum mode { MODE_UNARY, MODE_BATCH, MODE_STREAM } mode;

typedef struct options {
    const char *target;
    mode mode;
    const char *type;
    int concurrency;
    long long records;
    int batch_size;
    int window;
    int payload_bytes;
    double duration_s;
    double duration_limit_s;
    int threads;
    int connections;
    bool json;
    const char *tls_ca; /* PEM file of the server's CA: TLS; NULL: plaintext */
    const char *token;  /* bearer token, or @FILE holding it; NULL: none */
} options;

/* ---- latency histogram -----------------------------------------------------------
 * Microseconds. Values under 256 have a bucket each; above, every power of two
 * is split into 128 equal buckets: bucket = 256 + (shift - 1) * 128 +
 * (v >> shift) - 128, where shift puts v >> shift in [128, 256). */

#define HIST_SUB 128
#define HIST_BUCKETS (2 * HIST_SUB + 56 * HIST_SUB)

typedef struct histogram {
    uint64_t count[HIST_BUCKETS];
    uint64_t total;
    uint64_t max_us;
    double sum_us;
} histogram;

static size_t hist_bucket(uint64_t v)
{
    int msb, shift;
    if (v < 2 * HIST_SUB)
        return (size_t)v;
    msb = 63 - __builtin_clzll(v);
    shift = msb - 7;
    if (shift > 56)
        return HIST_BUCKETS - 1;
    return (size_t)(2 * HIST_SUB + (shift - 1) * HIST_SUB + (int)(v >> shift) - HIST_SUB);
}

/* The middle of bucket b, in microseconds. */
static double hist_value(size_t b)
{
    size_t shift, base;
    if (b < 2 * HIST_SUB)
        return (double)b;
    shift = (b - 2 * HIST_SUB) / HIST_SUB + 1;
    base = (b - 2 * HIST_SUB) % HIST_SUB + HIST_SUB;
    return ((double)(base << shift) + (double)((size_t)1 << shift) / 2.0);
}

static void hist_add(histogram *h, uint64_t us, uint64_t weight)
{
    h->count[hist_bucket(us)] += weight;
    h->total += weight;
    h->sum_us += (double)us * (double)weight;
    if (us > h->max_us)
        h->max_us = us;
}

static void hist_merge(histogram *into, const histogram *from)
{
    for (size_t i = 0; i < HIST_BUCKETS; i++)
        into->count[i] += from->count[i];
    into->total += from->total;
    into->sum_us += from->sum_us;
    if (from->max_us > into->max_us)
        into->max_us = from->max_us;
}

/* q in [0, 1]; 0 when empty. */
static double hist_quantile_ms(const histogram *h, double q)
{
    uint64_t rank, seen = 0;
    if (h->total == 0)
        return 0;
    rank = (uint64_t)(q * (double)h->total);
    if (rank >= h->total)
        rank = h->total - 1;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen > rank)
            return hist_value(i) / 1000.0;
    }
    return (double)h->max_us / 1000.0;
}

/* ---- shared state --------------------------------------------------------------------- */

typedef struct run {
    const options *opt;
    grpc_channel **channels;
    grpc_slice request; /* the packed request every send shares */
    grpc_slice method;
    grpc_metadata auth;   /* authorization: Bearer <token>, shared by every call */
    size_t nauth;         /* 1 with --token, else 0 */
    atomic_llong claimed; /* records handed out to callers */
    pthread_mutex_t mu;   /* with cond, guards state: the workers start together */
    pthread_cond_t cond;
    enum { RUN_WAIT, RUN_GO, RUN_ABORT } state;
    int64_t start_ns;
    int64_t soft_ns; /* --duration: no new records after it */
    int64_t stop_ns; /* --duration-limit: cancel what still runs */
} run;

typedef struct counts {
    uint64_t acked, errors, calls;
    long long max_in_flight; /* sum of the workers' high-water marks */
    uint64_t by_code[NCODES];
    char first_error[256];
} counts;

typedef struct worker worker;
typedef struct caller caller;

typedef enum tag_kind { TAG_CALL, TAG_SEND, TAG_RECV, TAG_STATUS } tag_kind;

typedef struct tag {
    caller *c;
    tag_kind kind;
} tag;

/* One concurrent caller: a unary/batch loop or one IngestStream call. Owned by
 * its worker; allocated and freed by main. */
struct caller {
    worker *w;
    grpc_channel *channel;
    grpc_call *call; /* NULL between calls */
    tag t_call, t_send, t_recv, t_status;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code status;
    grpc_slice status_details;
    grpc_byte_buffer *send_bb, *recv_bb;
    int64_t call_start_ns;
    long long call_records; /* unary/batch: records in the current call */
    grpc_slice own_request; /* batch: a short last batch, else empty */
    bool has_own_request;
    /* stream */
    int64_t *sent_ns; /* ring of window send times */
    uint64_t sent, answered;
    bool send_busy, recv_busy, status_busy, metadata_sent, half_closed, got_status;
};

struct worker {
    run *r;
    pthread_t thread;
    grpc_completion_queue *cq;
    caller **callers;
    int ncallers;
    int active; /* callers with a call or a call to come */
    bool cancelled;
    int64_t last_ns;                    /* time of the last result */
    long long in_flight, max_in_flight; /* records sent and not yet answered */
    histogram hist;
    counts n;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t elapsed_us(int64_t since_ns, int64_t until_ns)
{
    return until_ns > since_ns ? (uint64_t)(until_ns - since_ns) / 1000 : 0;
}

static const char *code_name(int code)
{
    static const char *names[NCODES] = {"OK",
                                        "CANCELLED",
                                        "UNKNOWN",
                                        "INVALID_ARGUMENT",
                                        "DEADLINE_EXCEEDED",
                                        "NOT_FOUND",
                                        "ALREADY_EXISTS",
                                        "PERMISSION_DENIED",
                                        "RESOURCE_EXHAUSTED",
                                        "FAILED_PRECONDITION",
                                        "ABORTED",
                                        "OUT_OF_RANGE",
                                        "UNIMPLEMENTED",
                                        "INTERNAL",
                                        "UNAVAILABLE",
                                        "DATA_LOSS",
                                        "UNAUTHENTICATED"};
    return code >= 0 && code < NCODES ? names[code] : "UNKNOWN";
}

/* Keeps the first error message seen, for the report. */
static void note_error(counts *n, int code, const char *msg, size_t msglen)
{
    if (n->first_error[0] == '\0')
        snprintf(n->first_error, sizeof(n->first_error), "%s: %.*s", code_name(code),
                 (int)(msglen > 200 ? 200 : msglen), msg ? msg : "");
}

static void count_errors(counts *n, uint64_t records, int code, const char *msg, size_t msglen)
{
    n->errors += records;
    n->by_code[code >= 0 && code < NCODES ? code : GRPC_STATUS_UNKNOWN] += records;
    note_error(n, code, msg, msglen);
}

/* Claims up to want records; returns how many (0: none left, or past
 * --duration). */
static long long claim(run *r, long long want)
{
    long long old;
    if (now_ns() >= r->soft_ns)
        return 0;
    old = atomic_fetch_add(&r->claimed, want);
    if (old >= r->opt->records)
        return 0;
    return old + want > r->opt->records ? r->opt->records - old : want;
}

static void in_flight_add(worker *w, long long n)
{
    w->in_flight += n;
    if (w->in_flight > w->max_in_flight)
        w->max_in_flight = w->in_flight;
}

static bool past_limit(const run *r)
{
    return now_ns() >= r->stop_ns;
}

/* Copies a received message out of its byte buffer; caller frees. */
static uint8_t *bb_take(grpc_byte_buffer *bb, size_t *len)
{
    grpc_byte_buffer_reader rd;
    grpc_slice s;
    uint8_t *out;

    if (!grpc_byte_buffer_reader_init(&rd, bb))
        return NULL;
    s = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    *len = GRPC_SLICE_LENGTH(s);
    out = malloc(*len ? *len : 1);
    if (out != NULL)
        memcpy(out, GRPC_SLICE_START_PTR(s), *len);
    grpc_slice_unref(s);
    return out;
}

/* ---- requests --------------------------------------------------------------------------- */

/* A JSON object of about n bytes: {"bench":"sluice","pad":"xxxx"}. */
static char *make_payload(int n, size_t *len)
{
    static const char head[] = "{\"bench\":\"sluice\",\"pad\":\"";
    static const char tail[] = "\"}";
    size_t fixed = sizeof(head) - 1 + sizeof(tail) - 1;
    size_t pad = (size_t)n > fixed ? (size_t)n - fixed : 0;
    char *p = malloc(fixed + pad + 1);

    if (p == NULL)
        return NULL;
    memcpy(p, head, sizeof(head) - 1);
    memset(p + sizeof(head) - 1, 'x', pad);
    memcpy(p + sizeof(head) - 1 + pad, tail, sizeof(tail));
    *len = fixed + pad;
    return p;
}

static void record_init(Sluice__V1__Record *rec, const options *opt, char *payload, size_t len)
{
    sluice__v1__record__init(rec);
    rec->type = (char *)opt->type;
    rec->payload.data = (uint8_t *)payload;
    rec->payload.len = len;
}

/* Packs the request for one call: an IngestRequest, or an IngestBatchRequest
 * of n records. */
static grpc_slice pack_request(const options *opt, long long n)
{
    Sluice__V1__Record rec;
    Sluice__V1__IngestRequest one;
    Sluice__V1__IngestBatchRequest many;
    Sluice__V1__Record **recs = NULL;
    size_t plen = 0, len;
    char *payload = make_payload(opt->payload_bytes, &plen);
    grpc_slice s = grpc_empty_slice();

    if (payload == NULL)
        return s;
    record_init(&rec, opt, payload, plen);
    if (opt->mode == MODE_BATCH) {
        recs = malloc((size_t)n * sizeof(*recs));
        if (recs == NULL) {
            free(payload);
            return s;
        }
        for (long long i = 0; i < n; i++)
            recs[i] = &rec;
        sluice__v1__ingest_batch_request__init(&many);
        many.n_records = (size_t)n;
        many.records = recs;
        len = sluice__v1__ingest_batch_request__get_packed_size(&many);
        s = grpc_slice_malloc(len);
        sluice__v1__ingest_batch_request__pack(&many, GRPC_SLICE_START_PTR(s));
    } else {
        sluice__v1__ingest_request__init(&one);
        one.record = &rec;
        len = sluice__v1__ingest_request__get_packed_size(&one);
        s = grpc_slice_malloc(len);
        sluice__v1__ingest_request__pack(&one, GRPC_SLICE_START_PTR(s));
    }
    free(recs);
    free(payload);
    return s;
}

/* ---- unary and batch ---------------------------------------------------------------------- */

static void call_finished(caller *c)
{
    grpc_metadata_array_destroy(&c->initial_md);
    grpc_metadata_array_destroy(&c->trailing_md);
    grpc_slice_unref(c->status_details);
    if (c->send_bb != NULL)
        grpc_byte_buffer_destroy(c->send_bb);
    if (c->recv_bb != NULL)
        grpc_byte_buffer_destroy(c->recv_bb);
    if (c->has_own_request)
        grpc_slice_unref(c->own_request);
    c->has_own_request = false;
    c->send_bb = c->recv_bb = NULL;
    grpc_call_unref(c->call);
    c->call = NULL;
}

static grpc_call *create_call(caller *c, gpr_timespec deadline)
{
    run *r = c->w->r;
    return grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, c->w->cq, r->method,
                                    NULL, deadline, NULL);
}

/* Starts the caller's next unary or batch call; false when no records are left
 * or the time is up. */
static bool start_unary(caller *c)
{
    run *r = c->w->r;
    const options *opt = r->opt;
    long long want = opt->mode == MODE_BATCH ? opt->batch_size : 1;
    grpc_slice req = r->request;
    grpc_op ops[6];
    gpr_timespec deadline;

    if (c->w->cancelled || past_limit(r))
        return false;
    c->call_records = claim(r, want);
    if (c->call_records == 0)
        return false;
    if (c->call_records < want) {
        c->own_request = pack_request(opt, c->call_records);
        c->has_own_request = true;
        req = c->own_request;
    }
    deadline = gpr_time_add(
        gpr_now(GPR_CLOCK_MONOTONIC),
        gpr_time_from_millis((int64_t)(opt->duration_limit_s * 1000) + 10000, GPR_TIMESPAN));
    c->call = create_call(c, deadline);
    grpc_metadata_array_init(&c->initial_md);
    grpc_metadata_array_init(&c->trailing_md);
    c->status_details = grpc_empty_slice();
    c->send_bb = grpc_raw_byte_buffer_create(&req, 1);
    c->recv_bb = NULL;
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = r->nauth;
    ops[0].data.send_initial_metadata.metadata = &r->auth;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->recv_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
    ops[5].data.recv_status_on_client.status = &c->status;
    ops[5].data.recv_status_on_client.status_details = &c->status_details;
    c->call_start_ns = now_ns();
    if (grpc_call_start_batch(c->call, ops, 6, &c->t_call, NULL) != GRPC_CALL_OK) {
        count_errors(&c->w->n, (uint64_t)c->call_records, GRPC_STATUS_INTERNAL,
                     "grpc_call_start_batch failed", 28);
        call_finished(c);
        return false;
    }
    c->w->n.calls++;
    in_flight_add(c->w, c->call_records);
    return true;
}

/* Counts what one IngestResult says. */
static bool result_acked(counts *n, const Sluice__V1__IngestResult *res)
{
    if (res->outcome_case == SLUICE__V1__INGEST_RESULT__OUTCOME_ACK)
        return true;
    if (res->outcome_case == SLUICE__V1__INGEST_RESULT__OUTCOME_ERROR && res->error != NULL)
        count_errors(n, 1, res->error->code, res->error->message,
                     strlen(res->error->message ? res->error->message : ""));
    else
        count_errors(n, 1, GRPC_STATUS_UNKNOWN, "result with neither ack nor error", 33);
    return false;
}

static void unary_done(caller *c, bool ok)
{
    worker *w = c->w;
    int64_t t = now_ns();
    uint64_t acked = 0;
    uint8_t *data = NULL;
    size_t len = 0;

    w->last_ns = t;
    in_flight_add(w, -c->call_records);
    if (!ok || c->status != GRPC_STATUS_OK || c->recv_bb == NULL) {
        int code = ok ? (int)c->status : GRPC_STATUS_UNKNOWN;
        count_errors(&w->n, (uint64_t)c->call_records, code,
                     (const char *)GRPC_SLICE_START_PTR(c->status_details),
                     GRPC_SLICE_LENGTH(c->status_details));
    } else if ((data = bb_take(c->recv_bb, &len)) == NULL) {
        count_errors(&w->n, (uint64_t)c->call_records, GRPC_STATUS_INTERNAL, "out of memory", 13);
    } else if (w->r->opt->mode == MODE_UNARY) {
        Sluice__V1__IngestResponse *resp = sluice__v1__ingest_response__unpack(NULL, len, data);
        if (resp != NULL)
            acked = 1;
        else
            count_errors(&w->n, 1, GRPC_STATUS_INTERNAL, "unparsable IngestResponse", 25);
        sluice__v1__ingest_response__free_unpacked(resp, NULL);
    } else {
        Sluice__V1__IngestBatchResponse *resp =
            sluice__v1__ingest_batch_response__unpack(NULL, len, data);
        size_t n = resp != NULL ? resp->n_results : 0;
        for (size_t i = 0; i < n; i++)
            acked += result_acked(&w->n, resp->results[i]);
        if (n < (size_t)c->call_records)
            count_errors(&w->n, (uint64_t)c->call_records - n, GRPC_STATUS_INTERNAL,
                         "IngestBatchResponse with fewer results than records", 51);
        sluice__v1__ingest_batch_response__free_unpacked(resp, NULL);
    }
    free(data);
    if (acked > 0) {
        /* a batch's records all share its latency */
        hist_add(&w->hist, elapsed_us(c->call_start_ns, t), acked);
        w->n.acked += acked;
    }
    call_finished(c);
    if (!start_unary(c))
        w->active--;
}

/* ---- stream -------------------------------------------------------------------------------- */

static bool stream_batch(caller *c, grpc_op *ops, size_t n, tag *t)
{
    if (grpc_call_start_batch(c->call, ops, n, t, NULL) == GRPC_CALL_OK)
        return true;
    grpc_call_cancel(c->call, NULL);
    return false;
}

/* Sends the next record while the window has room, or half-closes once the
 * records are all claimed. */
static void stream_send(caller *c)
{
    run *r = c->w->r;
    grpc_op ops[2];
    size_t n = 0;

    if (c->send_busy || c->half_closed || c->got_status)
        return;
    if (c->sent - c->answered >= (uint64_t)r->opt->window)
        return;
    memset(ops, 0, sizeof(ops));
    if (!c->metadata_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n].data.send_initial_metadata.count = r->nauth;
        ops[n++].data.send_initial_metadata.metadata = &r->auth;
        c->metadata_sent = true;
    }
    if (!c->w->cancelled && claim(r, 1) == 1) {
        c->send_bb = grpc_raw_byte_buffer_create(&r->request, 1);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->send_bb;
        c->sent_ns[c->sent % (uint64_t)r->opt->window] = now_ns();
        c->sent++;
        in_flight_add(c->w, 1);
    } else {
        ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        c->half_closed = true;
    }
    c->send_busy = stream_batch(c, ops, n, &c->t_send);
}

static void stream_recv(caller *c)
{
    grpc_op ops[2];
    size_t n = 0;

    memset(ops, 0, sizeof(ops));
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &c->recv_bb;
    c->recv_busy = stream_batch(c, ops, n, &c->t_recv);
}

/* Opens the caller's IngestStream call: the status and the first receive are
 * posted at once, then sending begins. A batch that fails to start cancels the
 * call, and stream_maybe_finish collects what is left. */
static void stream_start(caller *c)
{
    grpc_op ops[2];

    c->call = create_call(c, gpr_inf_future(GPR_CLOCK_MONOTONIC));
    grpc_metadata_array_init(&c->initial_md);
    grpc_metadata_array_init(&c->trailing_md);
    c->status = GRPC_STATUS_UNKNOWN;
    c->status_details = grpc_empty_slice();
    c->w->n.calls++;
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
    ops[0].data.recv_status_on_client.status = &c->status;
    ops[0].data.recv_status_on_client.status_details = &c->status_details;
    c->status_busy = stream_batch(c, ops, 1, &c->t_status);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[0].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
    ops[1].op = GRPC_OP_RECV_MESSAGE;
    ops[1].data.recv_message.recv_message = &c->recv_bb;
    c->recv_busy = stream_batch(c, ops, 2, &c->t_recv);
    if (c->status_busy && c->recv_busy)
        stream_send(c);
}

/* Ends the stream call once nothing is outstanding; records sent without a
 * result count as errors with the call's status. */
static void stream_maybe_finish(caller *c)
{
    worker *w = c->w;
    if (c->call == NULL || c->send_busy || c->recv_busy || c->status_busy)
        return;
    if (c->sent > c->answered) {
        int code = c->status != GRPC_STATUS_OK ? (int)c->status : GRPC_STATUS_UNKNOWN;
        const char *msg = (const char *)GRPC_SLICE_START_PTR(c->status_details);
        size_t len = GRPC_SLICE_LENGTH(c->status_details);
        if (c->status == GRPC_STATUS_OK) {
            msg = "stream ended OK with records unanswered";
            len = strlen(msg);
        }
        count_errors(&w->n, c->sent - c->answered, code, msg, len);
        in_flight_add(w, -(long long)(c->sent - c->answered));
    } else if (c->status != GRPC_STATUS_OK && !w->cancelled) {
        /* every record was answered, but the call did not end cleanly */
        note_error(&w->n, (int)c->status, (const char *)GRPC_SLICE_START_PTR(c->status_details),
                   GRPC_SLICE_LENGTH(c->status_details));
    }
    call_finished(c);
    w->active--;
}

static void stream_on_recv(caller *c, bool ok)
{
    worker *w = c->w;
    int64_t t = now_ns();
    uint8_t *data;
    size_t len = 0;

    c->recv_busy = false;
    if (!ok || c->recv_bb == NULL) {
        stream_maybe_finish(c); /* the server closed its side */
        return;
    }
    data = bb_take(c->recv_bb, &len);
    grpc_byte_buffer_destroy(c->recv_bb);
    c->recv_bb = NULL;
    w->last_ns = t;
    if (c->answered < c->sent) {
        Sluice__V1__IngestResult *res =
            data ? sluice__v1__ingest_result__unpack(NULL, len, data) : NULL;
        int64_t sent = c->sent_ns[c->answered % (uint64_t)w->r->opt->window];
        c->answered++;
        in_flight_add(w, -1);
        if (res == NULL) {
            count_errors(&w->n, 1, GRPC_STATUS_INTERNAL, "unparsable IngestResult", 23);
        } else if (result_acked(&w->n, res)) {
            w->n.acked++;
            hist_add(&w->hist, elapsed_us(sent, t), 1);
        }
        sluice__v1__ingest_result__free_unpacked(res, NULL);
    } else {
        count_errors(&w->n, 1, GRPC_STATUS_INTERNAL, "result for a record never sent", 30);
    }
    free(data);
    stream_recv(c);
    stream_send(c);
}

/* ---- workers ----------------------------------------------------------------------------- */

static void cancel_all(worker *w)
{
    w->cancelled = true;
    for (int i = 0; i < w->ncallers; i++)
        if (w->callers[i]->call != NULL)
            grpc_call_cancel(w->callers[i]->call, NULL);
}

static void dispatch(tag *t, bool ok)
{
    caller *c = t->c;
    switch (t->kind) {
    case TAG_CALL:
        unary_done(c, ok);
        break;
    case TAG_SEND:
        c->send_busy = false;
        if (c->send_bb != NULL) {
            grpc_byte_buffer_destroy(c->send_bb);
            c->send_bb = NULL;
        }
        if (ok)
            stream_send(c);
        stream_maybe_finish(c);
        break;
    case TAG_RECV:
        stream_on_recv(c, ok);
        break;
    case TAG_STATUS:
        c->status_busy = false;
        c->got_status = true;
        stream_maybe_finish(c);
        break;
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    run *r = w->r;
    bool go;

    pthread_mutex_lock(&r->mu);
    while (r->state == RUN_WAIT)
        pthread_cond_wait(&r->cond, &r->mu);
    go = r->state == RUN_GO;
    pthread_mutex_unlock(&r->mu);
    if (!go)
        return NULL;
    for (int i = 0; i < w->ncallers; i++) {
        caller *c = w->callers[i];
        if (r->opt->mode != MODE_STREAM) {
            w->active += start_unary(c);
        } else {
            stream_start(c);
            w->active++;
            stream_maybe_finish(c); /* only when nothing could be started */
        }
    }
    while (w->active > 0) {
        gpr_timespec until =
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(100, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_next(w->cq, until, NULL);
        if (ev.type == GRPC_OP_COMPLETE)
            dispatch(ev.tag, ev.success != 0);
        if (!w->cancelled && past_limit(r))
            cancel_all(w);
    }
    return NULL;
}

/* ---- setup ------------------------------------------------------------------------------- */

static bool wait_ready(grpc_channel *ch, double timeout_s)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    int64_t until = now_ns() + (int64_t)(timeout_s * 1e9);
    grpc_connectivity_state st;
    bool ready = false;

    for (;;) {
        st = grpc_channel_check_connectivity_state(ch, 1);
        if (st == GRPC_CHANNEL_READY) {
            ready = true;
            break;
        }
        if (now_ns() >= until)
            break;
        grpc_channel_watch_connectivity_state(
            ch, st,
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(200, GPR_TIMESPAN)), cq,
            NULL);
        grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    }
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    return ready;
}

/* The contents of path, NUL-terminated, without trailing newlines; NULL (with
 * a message on stderr) when it cannot be read. Caller frees. */
static char *read_file(const char *path, const char *what)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    char *buf = NULL;
    size_t len = 0;

    if (f != NULL && fstat(fileno(f), &st) == 0 && st.st_size < (64 << 20) &&
        (buf = malloc((size_t)st.st_size + 1)) != NULL) {
        len = fread(buf, 1, (size_t)st.st_size, f);
        buf[len] = '\0';
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            buf[--len] = '\0';
    }
    if (f != NULL)
        fclose(f);
    if (buf == NULL || len == 0) {
        fprintf(stderr, "sluice-loadgen: %s: %s: cannot be read, or empty\n", what, path);
        free(buf);
        return NULL;
    }
    return buf;
}

/* Channel credentials: TLS with ca_pem as the only root, or plaintext. */
static grpc_channel_credentials *channel_credentials(const char *ca_pem)
{
    if (ca_pem == NULL)
        return grpc_insecure_credentials_create();
    return grpc_ssl_credentials_create(ca_pem, NULL, NULL, NULL);
}

static grpc_channel *open_channel(const char *target, const char *ca_pem)
{
    grpc_arg args[2];
    grpc_channel_args ca = {2, args};
    grpc_channel_credentials *creds = channel_credentials(ca_pem);
    grpc_channel *ch;

    /* A channel of its own for each connection, not one shared subchannel. */
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[0].value.integer = 1;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[1].value.integer = 64 << 20;
    ch = grpc_channel_create(target, creds, &ca);
    grpc_channel_credentials_release(creds);
    return ch;
}

static const char *mode_name(mode m)
{
    return m == MODE_UNARY ? "unary" : m == MODE_BATCH ? "batch" : "stream";
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: sluice-loadgen --target=HOST:PORT --mode=unary|batch|stream [options]\n"
               "Drives sluice-ingest and reports acknowledged records/s and p50/p99 latency.\n"
               "  --target=HOST:PORT     sluice-ingest gRPC address (default 127.0.0.1:50051)\n"
               "  --mode=MODE            unary, batch or stream (default stream)\n"
               "  --concurrency=C        concurrent callers or streams (default 64)\n"
               "  --records=N            records to send in all (default 100000)\n"
               "  --batch-size=B         records per IngestBatch call (default 100)\n"
               "  --window=W             records in flight per IngestStream (default 256)\n"
               "  --payload-bytes=P      size of the JSON payload (default 256)\n"
               "  --type=TYPE            record type (default bench.event)\n"
               "  --duration=S           send no new records after S seconds, let the ones in\n"
               "                         flight finish (default: none; --records bounds the run)\n"
               "  --duration-limit=S     cancel what still runs after S seconds (default 60)\n"
               "  --threads=T            client threads, one completion queue each (default 1)\n"
               "  --connections=K        HTTP/2 connections (default 1)\n"
               "  --tls-ca=PEM           TLS, verifying the server with the CA in this PEM file\n"
               "                         (the target's host must be in the server's certificate)\n"
               "  --token=T              send authorization: Bearer T on every call; @FILE reads\n"
               "                         T from FILE (kept off the command line)\n"
               "  --json                 print one JSON object instead of text\n");
}

static bool parse_int(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static int parse_options(int argc, char **argv, options *o)
{
    static const struct option longs[] = {{"target", required_argument, NULL, 't'},
                                          {"mode", required_argument, NULL, 'm'},
                                          {"concurrency", required_argument, NULL, 'c'},
                                          {"records", required_argument, NULL, 'n'},
                                          {"batch-size", required_argument, NULL, 'b'},
                                          {"window", required_argument, NULL, 'w'},
                                          {"payload-bytes", required_argument, NULL, 'p'},
                                          {"type", required_argument, NULL, 'y'},
                                          {"duration-limit", required_argument, NULL, 'd'},
                                          {"duration", required_argument, NULL, 'D'},
                                          {"threads", required_argument, NULL, 'T'},
                                          {"connections", required_argument, NULL, 'K'},
                                          {"json", no_argument, NULL, 'j'},
                                          {"tls-ca", required_argument, NULL, 'C'},
                                          {"token", required_argument, NULL, 'A'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    long long v = 0;
    char *end;
    int ch, idx = 0;

    *o = (options){.target = "127.0.0.1:50051",
                   .mode = MODE_STREAM,
                   .type = "bench.event",
                   .concurrency = 64,
                   .records = 100000,
                   .batch_size = 100,
                   .window = 256,
                   .payload_bytes = 256,
                   .duration_limit_s = 60.0,
                   .threads = 1,
                   .connections = 1};
    while ((ch = getopt_long(argc, argv, "", longs, &idx)) != -1) {
        bool ok = true;
        switch (ch) {
        case 't':
            o->target = optarg;
            break;
        case 'y':
            o->type = optarg;
            break;
        case 'm':
            if (strcmp(optarg, "unary") == 0)
                o->mode = MODE_UNARY;
            else if (strcmp(optarg, "batch") == 0)
                o->mode = MODE_BATCH;
            else if (strcmp(optarg, "stream") == 0)
                o->mode = MODE_STREAM;
            else
                ok = false;
            break;
        case 'c':
            ok = parse_int(optarg, 1, MAX_CONCURRENCY, &v);
            o->concurrency = (int)v;
            break;
        case 'n':
            ok = parse_int(optarg, 1, MAX_RECORDS, &v);
            o->records = v;
            break;
        case 'b':
            ok = parse_int(optarg, 1, 1000000, &v);
            o->batch_size = (int)v;
            break;
        case 'w':
            ok = parse_int(optarg, 1, 1000000, &v);
            o->window = (int)v;
            break;
        case 'p':
            ok = parse_int(optarg, 0, 64 << 20, &v);
            o->payload_bytes = (int)v;
            break;
        case 'd':
            o->duration_limit_s = strtod(optarg, &end);
            ok = *optarg != '\0' && *end == '\0' && o->duration_limit_s > 0 &&
                 o->duration_limit_s <= 86400;
            break;
        case 'D':
            o->duration_s = strtod(optarg, &end);
            ok = *optarg != '\0' && *end == '\0' && o->duration_s > 0 && o->duration_s <= 86400;
            break;
        case 'T':
            ok = parse_int(optarg, 1, 256, &v);
            o->threads = (int)v;
            break;
        case 'K':
            ok = parse_int(optarg, 1, 1024, &v);
            o->connections = (int)v;
            break;
        case 'j':
            o->json = true;
            break;
        case 'C':
            o->tls_ca = optarg;
            ok = *optarg != '\0';
            break;
        case 'A':
            o->token = optarg;
            ok = *optarg != '\0';
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "sluice-loadgen: invalid --%s: %s\n", longs[idx].name, optarg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sluice-loadgen: unexpected argument: %s\n", argv[optind]);
        return 2;
    }
    if (o->threads > o->concurrency)
        o->threads = o->concurrency;
    if (o->connections > o->concurrency)
        o->connections = o->concurrency;
    return 0;
}

/* ---- report ------------------------------------------------------------------------------ */

static void report(const options *o, const counts *n, const histogram *h, double seconds,
                   size_t request_bytes, bool timed_out)
{
    double rate = seconds > 0 ? (double)n->acked / seconds : 0;
    double p50 = hist_quantile_ms(h, 0.50), p99 = hist_quantile_ms(h, 0.99);
    double mean = h->total ? h->sum_us / (double)h->total / 1000.0 : 0;
    double max = (double)h->max_us / 1000.0;

    if (!o->json) {
        printf("mode %s, concurrency %d, records %lld", mode_name(o->mode), o->concurrency,
               o->records);
        if (o->mode == MODE_BATCH)
            printf(", batch %d", o->batch_size);
        if (o->mode == MODE_STREAM)
            printf(", window %d", o->window);
        printf(", request %zu B, most in flight %lld%s%s\n", request_bytes, n->max_in_flight,
               o->tls_ca ? ", TLS" : "", o->token ? ", bearer token" : "");
        printf("acked %llu in %.3f s: %.0f records/s; latency p50 %.3f ms, p99 %.3f ms, "
               "mean %.3f ms, max %.3f ms; errors %llu%s\n",
               (unsigned long long)n->acked, seconds, rate, p50, p99, mean, max,
               (unsigned long long)n->errors, timed_out ? " (stopped at --duration-limit)" : "");
        for (int i = 0; i < NCODES; i++)
            if (n->by_code[i])
                printf("  %s: %llu\n", code_name(i), (unsigned long long)n->by_code[i]);
        if (n->first_error[0])
            printf("  first error: %s\n", n->first_error);
        return;
    }
    printf(
        "{\"mode\":\"%s\",\"concurrency\":%d,\"batch_size\":%d,\"window\":%d,"
        "\"payload_bytes\":%d,\"request_bytes\":%zu,\"calls\":%llu,\"records\":%llu,"
        "\"seconds\":%.6f,\"records_per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
        "\"mean_ms\":%.3f,\"max_ms\":%.3f,\"errors\":%llu,\"max_in_flight\":%lld,\"timed_out\":%s,"
        "\"tls\":%s,\"token\":%s,\"error_codes\":{",
        mode_name(o->mode), o->concurrency, o->mode == MODE_BATCH ? o->batch_size : 1,
        o->mode == MODE_STREAM ? o->window : 1, o->payload_bytes, request_bytes,
        (unsigned long long)n->calls, (unsigned long long)n->acked, seconds, rate, p50, p99, mean,
        max, (unsigned long long)n->errors, n->max_in_flight, timed_out ? "true" : "false",
        o->tls_ca ? "true" : "false", o->token ? "true" : "false");
    for (int i = 0, first = 1; i < NCODES; i++) {
        if (n->by_code[i]) {
            printf("%s\"%s\":%llu", first ? "" : ",", code_name(i),
                   (unsigned long long)n->by_code[i]);
            first = 0;
        }
    }
    printf("},\"first_error\":\"");
    for (const char *p = n->first_error; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if ((unsigned char)*p < 0x20)
            printf(" ");
        else
            putchar(*p);
    }
    printf("\"}\n");
}

/* Starts the workers together, waits for them all and folds their counts into
 * total and hist; returns the seconds from the start to the last result (or
 * to --duration-limit), or -1 when the threads could not be started. */
static double run_workers(run *r, worker *workers, counts *total, histogram *hist, bool *timed_out)
{
    const options *opt = r->opt;
    int64_t end_ns = 0;
    int started = 0;

    pthread_mutex_lock(&r->mu);
    while (started < opt->threads &&
           pthread_create(&workers[started].thread, NULL, worker_main, &workers[started]) == 0)
        started++;
    r->start_ns = now_ns();
    r->stop_ns = r->start_ns + (int64_t)(opt->duration_limit_s * 1e9);
    r->soft_ns = opt->duration_s > 0 ? r->start_ns + (int64_t)(opt->duration_s * 1e9) : INT64_MAX;
    r->state = started == opt->threads ? RUN_GO : RUN_ABORT;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);

    for (int i = 0; i < started; i++) {
        worker *w = &workers[i];
        pthread_join(w->thread, NULL);
        *timed_out |= w->cancelled;
        if (w->last_ns > end_ns)
            end_ns = w->last_ns;
        hist_merge(hist, &w->hist);
        total->acked += w->n.acked;
        total->errors += w->n.errors;
        total->calls += w->n.calls;
        total->max_in_flight += w->max_in_flight;
        for (int k = 0; k < NCODES; k++)
            total->by_code[k] += w->n.by_code[k];
        if (total->first_error[0] == '\0')
            memcpy(total->first_error, w->n.first_error, sizeof(total->first_error));
    }
    if (r->state == RUN_ABORT)
        return -1;
    if (*timed_out)
        end_ns = r->stop_ns;
    return (double)(end_ns > r->start_ns ? end_ns - r->start_ns : 0) / 1e9;
}

/* Assigns caller i to worker i % threads (main gives it channel i % connections
 * once the channels are open). */
static bool assign_callers(run *r, worker *workers, caller *callers)
{
    const options *opt = r->opt;

    for (int i = 0; i < opt->threads; i++) {
        workers[i].r = r;
        workers[i].cq = grpc_completion_queue_create_for_next(NULL);
        workers[i].callers =
            calloc((size_t)opt->concurrency / (size_t)opt->threads + 1, sizeof(caller *));
        if (workers[i].callers == NULL)
            return false;
    }
    for (int i = 0; i < opt->concurrency; i++) {
        caller *c = &callers[i];
        worker *w = &workers[i % opt->threads];
        c->w = w;
        c->t_call = (tag){c, TAG_CALL};
        c->t_send = (tag){c, TAG_SEND};
        c->t_recv = (tag){c, TAG_RECV};
        c->t_status = (tag){c, TAG_STATUS};
        if (opt->mode == MODE_STREAM &&
            (c->sent_ns = calloc((size_t)opt->window, sizeof(int64_t))) == NULL)
            return false;
        w->callers[w->ncallers++] = c;
    }
    return true;
}

int main(int argc, char **argv)
{
    options opt;
    run r;
    worker *workers = NULL;
    caller *callers = NULL;
    counts total;
    histogram *hist = NULL;
    double seconds;
    bool timed_out = false;
    char *ca_pem = NULL, *token = NULL, *bearer = NULL;
    int rc = parse_options(argc, argv, &opt);

    if (rc != 0)
        return rc;
    if (opt.tls_ca != NULL && (ca_pem = read_file(opt.tls_ca, "--tls-ca")) == NULL)
        return 2;
    if (opt.token != NULL) {
        token = opt.token[0] == '@' ? read_file(opt.token + 1, "--token") : strdup(opt.token);
        if (token == NULL || (bearer = malloc(strlen(token) + 8)) == NULL) {
            free(ca_pem);
            free(token);
            return 2;
        }
        snprintf(bearer, strlen(token) + 8, "Bearer %s", token);
    }
    rc = 1;
    grpc_init();
    memset(&r, 0, sizeof(r));
    memset(&total, 0, sizeof(total));
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cond, NULL);
    r.opt = &opt;
    if (bearer != NULL) {
        r.auth.key = grpc_slice_from_static_string("authorization");
        r.auth.value = grpc_slice_from_copied_string(bearer);
        r.nauth = 1;
    }
    r.method = grpc_slice_from_static_string(opt.mode == MODE_UNARY   ? METHOD_INGEST
                                             : opt.mode == MODE_BATCH ? METHOD_BATCH
                                                                      : METHOD_STREAM);
    r.request = pack_request(&opt, opt.batch_size);
    r.channels = calloc((size_t)opt.connections, sizeof(*r.channels));
    workers = calloc((size_t)opt.threads, sizeof(*workers));
    callers = calloc((size_t)opt.concurrency, sizeof(*callers));
    hist = calloc(1, sizeof(*hist));
    if (GRPC_SLICE_LENGTH(r.request) == 0 || r.channels == NULL || workers == NULL ||
        callers == NULL || hist == NULL || !assign_callers(&r, workers, callers)) {
        fprintf(stderr, "sluice-loadgen: out of memory\n");
        goto done;
    }
    for (int i = 0; i < opt.connections; i++) {
        r.channels[i] = open_channel(opt.target, ca_pem);
        for (int k = i; k < opt.concurrency; k += opt.connections)
            callers[k].channel = r.channels[i];
        if (!wait_ready(r.channels[i], 10.0)) {
            fprintf(stderr, "sluice-loadgen: %s: not connected within 10 s%s\n", opt.target,
                    ca_pem ? " (TLS: does the server's certificate name the target's host and "
                             "chain to --tls-ca?)"
                           : "");
            goto done;
        }
    }
    seconds = run_workers(&r, workers, &total, hist, &timed_out);
    if (seconds < 0) {
        fprintf(stderr, "sluice-loadgen: cannot start a thread\n");
        goto done;
    }
    report(&opt, &total, hist, seconds, GRPC_SLICE_LENGTH(r.request), timed_out);
    rc = total.acked > 0 && total.errors == 0 ? 0 : 1;

done:
    for (int i = 0; workers != NULL && i < opt.threads; i++) {
        if (workers[i].cq == NULL)
            continue;
        grpc_completion_queue_shutdown(workers[i].cq);
        while (grpc_completion_queue_next(workers[i].cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)
                   .type != GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(workers[i].cq);
        free(workers[i].callers);
    }
    for (int i = 0; callers != NULL && i < opt.concurrency; i++)
        free(callers[i].sent_ns);
    for (int i = 0; r.channels != NULL && i < opt.connections; i++)
        if (r.channels[i] != NULL)
            grpc_channel_destroy(r.channels[i]);
    grpc_slice_unref(r.request);
    if (r.nauth)
        grpc_slice_unref(r.auth.value);
    free(ca_pem);
    free(token);
    free(bearer);
    free(r.channels);
    free(workers);
    free(callers);
    free(hist);
    pthread_cond_destroy(&r.cond);
    pthread_mutex_destroy(&r.mu);
    grpc_shutdown();
    return rc;
}
