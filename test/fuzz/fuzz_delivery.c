/* fuzz_delivery: one stream message as the downstream services decode it:
 * sluice-audit's entry (audit_entry_build) and sluice-transform's document
 * (transform_document_build, with a small rule set), each from an
 * sl_delivery whose message is built from the input as cnats builds it from
 * the server's bytes (fuzz_nats.h).
 *
 * Input: stream time (8 bytes, ns), stream sequence (8), deliveries (1),
 * then "<subject>\n", the header block (Nats-Msg-Id, Sluice-Type,
 * Sluice-Received-At, Sluice-Principal, traceparent ...) and the body (a
 * protobuf sluice.v1.Record, whose payload the rules run on).
 *
 * Oracles:
 *   - audit: an entry is built for every body protobuf-c can read, and
 *     MongoDB's driver would accept it (UTF-8, no empty, dotted or $ keys);
 *     its _id is the delivery's key; it never holds the payload;
 *   - transform: for a record whose own strings are what ingest lets
 *     through, the document is one MongoDB's driver accepts (UTF-8, and
 *     attribute keys neither empty, nor dotted, nor starting with '$'),
 *     whatever the headers hold: a header is not the record;
 *   - both: a refusal says why in one line of valid UTF-8, within the
 *     consumer's error buffer (it becomes the dead letter's Sluice-Error). */
#include <bson/bson.h>

#include "audit.h"
#include "fuzz_nats.h"
#include "sl_consumer.h"
#include "sl_json.h"
#include "transform.h"

#define ERROR_LEN 512 /* the consumer's (sl_consumer_internal.h) */
#define NOW_NS 1764670000123456789LL

static transform_rules *rules;

static const char rules_json[] =
    "{\"order.created\": \"{id: .id, total: ([.items[]? | (.price // 0) * (.qty // 1)] | add)}\","
    " \"order.*\": \"del(.internal)\","
    " \"count.>\": \"{n: (.n + 1)}\","
    " \"multi.out\": \".a, .b\","
    " \"none.out\": \"empty\","
    " \"text.out\": \"tostring\","
    " \"keys.out\": \"with_entries(.key |= \\\"$\\\" + .)\","
    " \">\": \".\"}";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[512];

    (void)argc;
    (void)argv;
    fuzz_nats_init();
    rules = transform_rules_parse(rules_json, strlen(rules_json), "rules.json", err, sizeof(err));
    if (rules == NULL)
        fprintf(stderr, "%s\n", err);
    FUZZ_CHECK(rules != NULL);
    return 0;
}

static bool utf8(const char *s)
{
    return bson_utf8_validate(s, strlen(s), false);
}

/* True when every key and string of doc is valid UTF-8 (bson_validate's
 * BSON_VALIDATE_UTF8 looks at keys only, in libbson 1.23). */
static bool doc_utf8(const bson_t *doc)
{
    bson_iter_t it;

    if (!bson_iter_init(&it, doc))
        return false;
    while (bson_iter_next(&it)) {
        if (!utf8(bson_iter_key(&it)))
            return false;
        if (BSON_ITER_HOLDS_UTF8(&it)) {
            uint32_t n;
            const char *v = bson_iter_utf8(&it, &n);
            if (!bson_utf8_validate(v, n, false))
                return false;
        } else if (BSON_ITER_HOLDS_DOCUMENT(&it) || BSON_ITER_HOLDS_ARRAY(&it)) {
            const uint8_t *data;
            uint32_t len;
            bson_t sub;
            if (BSON_ITER_HOLDS_DOCUMENT(&it))
                bson_iter_document(&it, &len, &data);
            else
                bson_iter_array(&it, &len, &data);
            if (!bson_init_static(&sub, data, len) || !doc_utf8(&sub))
                return false;
        }
    }
    return true;
}

static void refusal_check(const char *err)
{
    size_t n = strlen(err);
    FUZZ_CHECK(n > 0 && n < ERROR_LEN);
    FUZZ_CHECK(bson_utf8_validate(err, n, false));
}

static void audit_run(const sl_delivery *d)
{
    char err[ERROR_LEN] = "", key[SL_DELIVERY_KEY_LEN];
    Sluice__V1__Record *rec = sluice__v1__record__unpack(NULL, d->len, d->data);
    bson_t doc = BSON_INITIALIZER;
    bson_iter_t it;
    size_t offset;

    if (!audit_entry_build(d, NOW_NS, &doc, err, sizeof(err))) {
        refusal_check(err);
        FUZZ_CHECK(rec == NULL);
    } else {
        FUZZ_CHECK(rec != NULL);
        FUZZ_CHECK(bson_validate(&doc,
                                 BSON_VALIDATE_UTF8 | BSON_VALIDATE_EMPTY_KEYS |
                                     BSON_VALIDATE_DOT_KEYS | BSON_VALIDATE_DOLLAR_KEYS,
                                 &offset));
        FUZZ_CHECK(doc_utf8(&doc));
        sl_delivery_key(d->stream, d->stream_seq, d->stream_time_ns, key, sizeof(key));
        FUZZ_CHECK(bson_iter_init_find(&it, &doc, "_id") && BSON_ITER_HOLDS_UTF8(&it) &&
                   strcmp(bson_iter_utf8(&it, NULL), key) == 0);
        FUZZ_CHECK(bson_iter_init_find(&it, &doc, "payload_bytes") &&
                   bson_iter_as_int64(&it) == (int64_t)rec->payload.len);
        FUZZ_CHECK(!bson_iter_init_find(&it, &doc, "payload"));
    }
    sluice__v1__record__free_unpacked(rec, NULL);
    bson_destroy(&doc);
}

/* True when the record's own strings are what ingest lets through. */
static bool record_clean(const Sluice__V1__Record *r)
{
    if (!utf8(r->id) || !utf8(r->type) || !utf8(r->key))
        return false;
    for (size_t i = 0; i < r->n_attributes; i++) {
        if (r->attributes[i]->key[0] == '\0' || !utf8(r->attributes[i]->key) ||
            !utf8(r->attributes[i]->value))
            return false;
    }
    return true;
}

static void transform_run(const sl_delivery *d)
{
    char err[ERROR_LEN] = "";
    Sluice__V1__Record *rec = sluice__v1__record__unpack(NULL, d->len, d->data);
    bson_t doc = BSON_INITIALIZER, attrs;
    bson_iter_t it;
    const uint8_t *sub;
    uint32_t sublen;
    size_t offset;

    /* libjq 1.6 leaks a string when it parses some text that is not JSON
     * ({"a" "b":1}); ingest stores JSON only, so such payloads are left
     * out rather than leak reports from a library. */
    if (rec != NULL && !sl_json_valid(rec->payload.data, rec->payload.len, err, sizeof(err))) {
        sluice__v1__record__free_unpacked(rec, NULL);
        return;
    }
    err[0] = '\0';
    if (!transform_document_build(rules, d, NOW_NS, &doc, err, sizeof(err))) {
        refusal_check(err);
    } else if (record_clean(rec)) {
        /* what MongoDB's driver checks; the jq output ("data") may hold
         * keys it refuses, a terminal failure of that record by design */
        FUZZ_CHECK(bson_validate(&doc, BSON_VALIDATE_UTF8, &offset) && doc_utf8(&doc));
        FUZZ_CHECK(bson_iter_init_find(&it, &doc, "_id") && BSON_ITER_HOLDS_UTF8(&it));
        FUZZ_CHECK(bson_iter_init_find(&it, &doc, "attributes") && BSON_ITER_HOLDS_DOCUMENT(&it));
        bson_iter_document(&it, &sublen, &sub);
        FUZZ_CHECK(bson_init_static(&attrs, sub, sublen));
        FUZZ_CHECK(bson_validate(
            &attrs, BSON_VALIDATE_EMPTY_KEYS | BSON_VALIDATE_DOT_KEYS | BSON_VALIDATE_DOLLAR_KEYS,
            &offset));
        FUZZ_CHECK(bson_iter_init_find(&it, &doc, "data") && BSON_ITER_HOLDS_DOCUMENT(&it));
    }
    sluice__v1__record__free_unpacked(rec, NULL);
    bson_destroy(&doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    sl_delivery d = {0};
    natsMsg *m;

    if (size > 65536)
        return 0;
    d.stream_time_ns = (int64_t)fuzz_u64(&in);
    d.stream_seq = fuzz_u64(&in);
    d.deliveries = 1 + fuzz_u8(&in);
    if ((m = fuzz_nats_msg(&in)) == NULL)
        return 0;
    d.msg = m;
    d.stream = "SLUICE";
    d.consumer = "fuzz";
    d.subject = natsMsg_GetSubject(m);
    d.data = (const uint8_t *)natsMsg_GetData(m);
    d.len = (size_t)natsMsg_GetDataLength(m);
    audit_run(&d);
    transform_run(&d);
    natsMsg_Destroy(m);
    return 0;
}
