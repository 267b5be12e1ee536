/* fuzz_ingest_request: the bytes of an Ingest or IngestBatch request, as
 * sluice-ingest reads them (services/ingest/ingest.c): the wire check of
 * every string (sl_pb_check, sl_pb_check_each), protobuf-c's unpack,
 * sl_record_validate, and for a valid record the stream message it becomes
 * (sl_record_to_msg).
 *
 * IngestRequest {record = 1} and IngestBatchRequest {repeated records = 1}
 * share their wire form, so every input is read both ways.
 *
 * Oracles, beyond "no crash, no sanitizer report":
 *   - the single and the per-record checks agree on what is a message and
 *     on whether all strings are good; a fault's index names a record that
 *     protobuf-c finds; every message is valid UTF-8;
 *   - a record that passed the wire check unpacks to valid UTF-8 strings;
 *   - the stream message of a valid record has its known fields only (its
 *     body, unpacked, equals the record and passes both checks again) and is
 *     never larger than sl_record_max_msg_bytes, with headers.
 * The limits are small so that inputs reach them. */
#include <bson/bson.h>

#include "fuzz.h"
#include "sl_pb_check.h"
#include "sl_record.h"
#include "sluice/v1/ingest.pb-c.h"

#define REQUEST (&sluice__v1__ingest_request__descriptor)
#define BATCH (&sluice__v1__ingest_batch_request__descriptor)
#define RECORD (&sluice__v1__record__descriptor)

static sl_record_limits limits;
static char principal[SL_PRINCIPAL_MAX];
static char traceparent[SL_TRACEPARENT_MAX + 1];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    nats_Open(-1);
    limits.max_payload_bytes = 512;
    limits.max_key_bytes = 64;
    limits.max_attributes = 4;
    limits.max_attribute_bytes = 32;
    /* the longest values the headers can get, so the bound is tight */
    memset(principal, 'p', sizeof(principal) - 1);
    memset(traceparent, 't', sizeof(traceparent) - 1);
    return 0;
}

static bool utf8(const char *s)
{
    return bson_utf8_validate(s, strlen(s), false);
}

static bool record_strings_utf8(const Sluice__V1__Record *r)
{
    if (!utf8(r->id) || !utf8(r->type) || !utf8(r->key))
        return false;
    for (size_t i = 0; i < r->n_attributes; i++) {
        if (!utf8(r->attributes[i]->key) || !utf8(r->attributes[i]->value))
            return false;
    }
    return true;
}

/* Bytes the headers of m take on the wire: "NATS/1.0\r\n", a
 * "name: value\r\n" line per value, "\r\n". */
static size_t header_bytes(natsMsg *m)
{
    const char **keys = NULL;
    int nkeys = 0;
    size_t n = strlen("NATS/1.0\r\n") + 2;

    if (natsMsgHeader_Keys(m, &keys, &nkeys) != NATS_OK)
        return 0;
    for (int i = 0; i < nkeys; i++) {
        const char **values = NULL;
        int nvalues = 0;
        FUZZ_CHECK(natsMsgHeader_Values(m, keys[i], &values, &nvalues) == NATS_OK);
        for (int v = 0; v < nvalues; v++)
            n += strlen(keys[i]) + 2 + strlen(values[v]) + 2;
        free((void *)values);
    }
    free((void *)keys);
    return n;
}

static bool same_record(const Sluice__V1__Record *a, const Sluice__V1__Record *b, const char *id)
{
    if (strcmp(b->id, id) != 0 || strcmp(a->type, b->type) != 0 || strcmp(a->key, b->key) != 0 ||
        a->payload.len != b->payload.len ||
        (a->payload.len > 0 && memcmp(a->payload.data, b->payload.data, a->payload.len) != 0) ||
        a->n_attributes != b->n_attributes || (a->event_time == NULL) != (b->event_time == NULL))
        return false;
    if (a->event_time != NULL && (a->event_time->seconds != b->event_time->seconds ||
                                  a->event_time->nanos != b->event_time->nanos))
        return false;
    for (size_t i = 0; i < a->n_attributes; i++) {
        if (strcmp(a->attributes[i]->key, b->attributes[i]->key) != 0 ||
            strcmp(a->attributes[i]->value, b->attributes[i]->value) != 0)
            return false;
    }
    return true;
}

/* What ingest does with one record that passed the wire check. */
static void record_run(const Sluice__V1__Record *r)
{
    char msg[512], id[SL_UUID_LEN + SL_RECORD_ID_MAX];
    const char *body;
    natsMsg *m = NULL;
    Sluice__V1__Record *back;
    int code, len;

    if (r != NULL)
        FUZZ_CHECK(record_strings_utf8(r));
    code = sl_record_validate(r, &limits, "record", msg, sizeof(msg));
    if (code != 0) {
        FUZZ_CHECK(msg[0] != '\0');
        FUZZ_CHECK(utf8(msg));
        return;
    }
    snprintf(id, sizeof(id), "%s",
             r->id[0] != '\0' ? r->id : "0190c5a2-7d1e-7b3a-9f00-000000000001");
    FUZZ_CHECK(sl_record_to_msg(&m, r, id, 1764670000123456789LL, traceparent, principal) ==
               NATS_OK);
    body = natsMsg_GetData(m);
    len = natsMsg_GetDataLength(m);
    FUZZ_CHECK(header_bytes(m) + (size_t)len <= sl_record_max_msg_bytes(&limits));
    FUZZ_CHECK(sl_pb_check(RECORD, (const uint8_t *)body, (size_t)len, NULL, 0) == SL_PB_OK);
    back = sluice__v1__record__unpack(NULL, (size_t)len, (const uint8_t *)body);
    FUZZ_CHECK(back != NULL);
    FUZZ_CHECK(back->base.n_unknown_fields == 0);
    FUZZ_CHECK(same_record(r, back, id));
    FUZZ_CHECK(sl_record_validate(back, &limits, "record", msg, sizeof(msg)) == 0);
    sluice__v1__record__free_unpacked(back, NULL);
    natsMsg_Destroy(m);
}

typedef struct faults {
    size_t count;
    size_t max_index; /* of field 1 */
    bool any_record;
    bool other;   /* a fault outside the records fails the whole batch */
    bool bad[64]; /* records[i] had a fault (the first 64) */
} faults;

static void on_fault(void *closure, uint32_t number, size_t index, const char *msg)
{
    faults *f = closure;

    FUZZ_CHECK(msg[0] != '\0');
    FUZZ_CHECK(utf8(msg));
    f->count++;
    if (number == 1) {
        f->any_record = true;
        if (index > f->max_index)
            f->max_index = index;
        if (index < 64)
            f->bad[index] = true;
    } else {
        f->other = true;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char one[512] = "", each[512] = "";
    faults f = {0};
    sl_pb_result r1, r2;

    /* Unary and stream: one IngestRequest. */
    r1 = sl_pb_check(REQUEST, data, size, one, sizeof(one));
    FUZZ_CHECK(r1 == SL_PB_OK || r1 == SL_PB_BAD_STRING || r1 == SL_PB_MALFORMED);
    if (r1 != SL_PB_OK)
        FUZZ_CHECK(one[0] != '\0' && utf8(one));
    if (r1 != SL_PB_MALFORMED) {
        Sluice__V1__IngestRequest *req = sluice__v1__ingest_request__unpack(NULL, size, data);
        if (req != NULL && r1 == SL_PB_OK)
            record_run(req->record);
        sluice__v1__ingest_request__free_unpacked(req, NULL);
    }

    /* Batch: each record on its own. */
    r2 = sl_pb_check_each(BATCH, data, size, on_fault, &f, each, sizeof(each));
    FUZZ_CHECK((r1 == SL_PB_OK) == (r2 == SL_PB_OK));
    if (r1 == SL_PB_MALFORMED)
        FUZZ_CHECK(r2 == SL_PB_MALFORMED);
    if (r2 == SL_PB_BAD_STRING)
        FUZZ_CHECK(f.count > 0);
    if (r2 == SL_PB_MALFORMED)
        FUZZ_CHECK(each[0] != '\0' && utf8(each));
    if (r2 != SL_PB_MALFORMED) {
        Sluice__V1__IngestBatchRequest *req =
            sluice__v1__ingest_batch_request__unpack(NULL, size, data);
        if (req != NULL) {
            if (f.any_record)
                FUZZ_CHECK(f.max_index < req->n_records);
            for (size_t i = 0; i < req->n_records && i < 64; i++) {
                if (!f.bad[i] && !f.other)
                    record_run(req->records[i]);
            }
        }
        sluice__v1__ingest_batch_request__free_unpacked(req, NULL);
    }
    return 0;
}
