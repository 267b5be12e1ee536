/* make_seeds: writes the binary seeds of test/fuzz/corpus (protobuf
 * requests, stream messages, status messages, reflection requests, signed
 * tokens), which are easier to build with the project's own code than by
 * hand. The text seeds (rules, policy, key files, URLs, times, payloads)
 * are written by hand and committed as they are.
 *
 *     build-fuzz/test/fuzz/fuzz-make-seeds test/fuzz/corpus
 *
 * Every file is written again on each run, with the same bytes (but the
 * tokens: an ECDSA signature differs each time, the token means the same):
 * the seeds are the product's current encoding of the same examples. */
#include <bson/bson.h>
#include <errno.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_key.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "sluice/v1/ingest.pb-c.h"

typedef Sluice__V1__Record record;
typedef Grpc__Reflection__V1__ServerReflectionRequest reflection_request;

static const char *root;

/* ---- files ---------------------------------------------------------------- */

static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[1024];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", root, dir);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/%s/%s", root, dir, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* A growing byte buffer. */
typedef struct bytes {
    uint8_t *p;
    size_t n;
} bytes;

static void put(bytes *b, const void *data, size_t len)
{
    b->p = realloc(b->p, b->n + len + 1);
    if (b->p == NULL)
        exit(1);
    memcpy(b->p + b->n, data, len);
    b->n += len;
}

static void put_s(bytes *b, const char *s)
{
    put(b, s, strlen(s));
}

static void put_u64(bytes *b, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        uint8_t c = (uint8_t)(v >> (8 * i));
        put(b, &c, 1);
    }
}

/* ---- records ---------------------------------------------------------------- */

static Google__Protobuf__Timestamp event_time = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
static Sluice__V1__Record__AttributesEntry attr_source = SLUICE__V1__RECORD__ATTRIBUTES_ENTRY__INIT,
                                           attr_region = SLUICE__V1__RECORD__ATTRIBUTES_ENTRY__INIT;
static Sluice__V1__Record__AttributesEntry *attrs[] = {&attr_source, &attr_region};

static record make_record(const char *id, const char *type, const char *payload)
{
    record r = SLUICE__V1__RECORD__INIT;
    r.id = (char *)id;
    r.type = (char *)type;
    r.payload.data = (uint8_t *)payload;
    r.payload.len = strlen(payload);
    return r;
}

static bytes pack_record(const record *r)
{
    bytes b = {0};
    b.n = sluice__v1__record__get_packed_size(r);
    b.p = malloc(b.n + 1);
    sluice__v1__record__pack(r, b.p);
    return b;
}

static void put_varint(bytes *b, uint64_t v)
{
    do {
        uint8_t c = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        put(b, &c, 1);
        v >>= 7;
    } while (v > 0);
}

/* A length-delimited field. */
static void put_field(bytes *b, uint32_t number, const void *data, size_t len)
{
    put_varint(b, (uint64_t)number << 3 | 2);
    put_varint(b, len);
    put(b, data, len);
}

/* An IngestRequest / IngestBatchRequest: field 1, once per record. */
static bytes pack_request(const record *const *rs, size_t n)
{
    bytes b = {0};
    for (size_t i = 0; i < n; i++) {
        bytes r = pack_record(rs[i]);
        put_field(&b, 1, r.p, r.n);
        free(r.p);
    }
    return b;
}

static void ingest_request_seeds(void)
{
    record full = make_record("o-1", "order.created",
                              "{\"id\":\"o-1\",\"customer\":\"c-7\",\"items\":[{\"price\":2.5,"
                              "\"qty\":4}]}");
    record minimal = make_record("", "a", "{}");
    record bad_id = make_record("not valid!", "order.created", "{\"n\":1}");
    record bad_payload = make_record("o-2", "order.created", "{\"n\": NaN}");
    const record *one[] = {&full}, *min[] = {&minimal};
    const record *batch[] = {&full, &bad_id, &minimal, &bad_payload};
    bytes b, r = {0}, q = {0};

    full.key = "c-7";
    full.n_attributes = 2;
    full.attributes = attrs;
    full.event_time = &event_time;

    b = pack_request(one, 1);
    write_file("ingest_request", "record-full", b.p, b.n);
    free(b.p);
    b = pack_request(min, 1);
    write_file("ingest_request", "record-minimal", b.p, b.n);
    free(b.p);
    b = pack_request(batch, 4);
    write_file("ingest_request", "batch-four", b.p, b.n);
    free(b.p);

    /* by hand: type "a", a key with a NUL, payload {}, unknown field 77 */
    put_field(&r, 2, "a", 1);
    put_field(&r, 3, "a\0b", 3);
    put_field(&r, 4, "{}", 2);
    put_varint(&r, 77 << 3);
    put_varint(&r, 5);
    put_field(&q, 1, r.p, r.n);
    write_file("ingest_request", "record-nul-in-key", q.p, q.n);
    free(r.p);
    free(q.p);
    /* an attribute value that is not UTF-8 */
    r = (bytes){0};
    q = (bytes){0};
    b = (bytes){0};
    put_field(&b, 1, "k", 1);
    put_field(&b, 2, "\xff", 1);
    put_field(&r, 2, "a", 1);
    put_field(&r, 4, "{}", 2);
    put_field(&r, 5, b.p, b.n);
    put_field(&q, 1, r.p, r.n);
    write_file("ingest_request", "record-bad-utf8-attribute", q.p, q.n);
    /* and the same record cut short */
    write_file("ingest_request", "record-truncated", q.p, q.n - 3);
    free(b.p);
    free(r.p);
    free(q.p);
}

/* ---- stream messages -------------------------------------------------------- */

/* A delivery seed: stream time, sequence, deliveries, subject, headers,
 * body (see fuzz_delivery.c). */
static void delivery_seed(const char *name, const char *type, const char *headers, const record *r)
{
    bytes b = {0}, body = pack_record(r);
    uint8_t deliveries = 1;

    put_u64(&b, 1764670000123456789ULL);
    put_u64(&b, 42);
    put(&b, &deliveries, 1);
    put_s(&b, "sluice.rec.");
    put_s(&b, type);
    put_s(&b, "\n");
    if (headers != NULL) {
        put_s(&b, "NATS/1.0\r\n");
        put_s(&b, headers);
        put_s(&b, "\r\n");
    }
    put(&b, body.p, body.n);
    write_file("delivery", name, b.p, b.n);
    free(body.p);
    free(b.p);
}

static void delivery_seeds(void)
{
    record order = make_record("o-1", "order.created",
                               "{\"id\":\"o-1\",\"internal\":true,\"items\":[{\"price\":2.5,"
                               "\"qty\":4},{\"price\":1}]}");
    record count = make_record("c-1", "count.clicks", "{\"n\":\"ten\"}");
    record multi = make_record("m-1", "multi.out", "{\"a\":{\"x\":1},\"b\":{\"y\":2}}");
    record keys = make_record("k-1", "keys.out", "{\"a.b\":1,\"$c\":2}");
    record text = make_record("t-1", "text.out", "{\"s\":\"\xc3\xa9t\xc3\xa9\"}");
    record none = make_record("n-1", "none.out", "{}");
    record no_id = make_record("", "order.paid", "{\"n\":1}");
    Google__Protobuf__Timestamp far = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    const char *all = "Nats-Msg-Id: o-1\r\nSluice-Type: order.created\r\nSluice-Key: c-7\r\n"
                      "Sluice-Received-At: 2025-12-02T10:06:40.123456789Z\r\n"
                      "Sluice-Principal: billing-svc\r\n"
                      "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n";

    order.key = "c-7";
    order.n_attributes = 2;
    order.attributes = attrs;
    order.event_time = &event_time;
    delivery_seed("order-created", "order.created", all, &order);
    delivery_seed("count-runtime-error", "count.clicks", "Nats-Msg-Id: c-1\r\n", &count);
    delivery_seed("multi-output", "multi.out", "Nats-Msg-Id: m-1\r\n", &multi);
    delivery_seed("dollar-keys", "keys.out", "Nats-Msg-Id: k-1\r\n", &keys);
    delivery_seed("text-result", "text.out", "Nats-Msg-Id: t-1\r\n", &text);
    delivery_seed("no-output", "none.out", "Nats-Msg-Id: n-1\r\n", &none);
    delivery_seed("id-from-header", "order.paid", "Nats-Msg-Id: p-9\r\n", &no_id);
    delivery_seed("no-headers", "order.created", NULL, &order);
    delivery_seed("no-id", "order.paid", "Sluice-Type: order.paid\r\n", &no_id);

    /* what fuzz_delivery found, kept as seeds so that make test replays it */
    far.seconds = 6004146572364790320LL;
    text.event_time = &far;
    delivery_seed("regress-event-time-overflow", "text.out", "Nats-Msg-Id: t-1\r\n", &text);
    delivery_seed("regress-headers-not-utf8", "order.created",
                  "Nats-Msg-Id: o-1\r\nSluice-Principal: billing-\xff\r\ntraceparent: \xc2"
                  "d1\r\n",
                  &order);
    none.payload.len = 0;
    none.payload.data = NULL;
    delivery_seed("regress-empty-payload", "none.out", "Nats-Msg-Id: n-1\r\n", &none);
}

static void pull_status_seeds(void)
{
    static const struct {
        const char *name, *text;
    } seeds[] = {
        {"404", "_INBOX.fuzz.7\nNATS/1.0 404 No Messages\r\n\r\n"},
        {"408", "_INBOX.fuzz.7\nNATS/1.0 408 Request Timeout\r\n\r\n"},
        {"409-max-bytes", "_INBOX.fuzz.7\nNATS/1.0 409 Message Size Exceeds MaxBytes\r\n\r\n"},
        {"409-deleted", "_INBOX.fuzz.7\nNATS/1.0 409 Consumer Deleted\r\n\r\n"},
        {"409-batch-completed", "_INBOX.fuzz.7\nNATS/1.0 409 Batch Completed\r\n\r\n"},
        {"100-heartbeat", "_INBOX.fuzz.7\nNATS/1.0 100 Idle Heartbeat\r\n\r\n"},
        {"503", "_INBOX.fuzz.7\nNATS/1.0 503\r\n\r\n"},
        {"404-earlier-request", "_INBOX.fuzz.6\nNATS/1.0 404 No Messages\r\n\r\n"},
        {"delivery", "sluice.rec.a\nNATS/1.0\r\nNats-Msg-Id: x\r\n\r\n\x12\x01\x61\x22\x02{}"},
        {"delivery-no-headers", "sluice.rec.a\n\x12\x01\x61\x22\x02{}"},
    };
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
        write_file("pull_status", seeds[i].name, seeds[i].text, strlen(seeds[i].text));
}

/* ---- reflection ---------------------------------------------------------------- */

static void reflection_seed(const char *name, reflection_request *req)
{
    size_t n = grpc__reflection__v1__server_reflection_request__get_packed_size(req);
    uint8_t *p = malloc(n + 1);

    grpc__reflection__v1__server_reflection_request__pack(req, p);
    write_file("reflection", name, p, n);
    free(p);
}

static void reflection_seeds(void)
{
    reflection_request req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    Grpc__Reflection__V1__ExtensionRequest ext = GRPC__REFLECTION__V1__EXTENSION_REQUEST__INIT;

    req.host = "localhost:50051";
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    req.list_services = "*";
    reflection_seed("list-services", &req);
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
    req.file_by_filename = "sluice/v1/ingest.proto";
    reflection_seed("file-by-filename", &req);
    req.file_by_filename = "nope.proto";
    reflection_seed("file-not-found", &req);
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    req.file_containing_symbol = "sluice.v1.IngestService.IngestBatch";
    reflection_seed("file-containing-symbol", &req);
    req.file_containing_symbol = ".grpc.health.v1.HealthCheckResponse.ServingStatus";
    reflection_seed("nested-enum", &req);
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE;
    req.all_extension_numbers_of_type = "sluice.v1.Record";
    reflection_seed("extension-numbers", &req);
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION;
    ext.containing_type = "sluice.v1.Record";
    ext.extension_number = 100;
    req.file_containing_extension = &ext;
    reflection_seed("file-containing-extension", &req);
}

/* ---- tokens ---------------------------------------------------------------------- */

/* A fuzz_jwt seed: mode byte, then a token (mode 0) or claims. */
static void jwt_seed(const char *name, int mode, const char *text)
{
    bytes b = {0};
    uint8_t m = (uint8_t)mode;

    put(&b, &m, 1);
    put_s(&b, text);
    write_file("jwt", name, b.p, b.n);
    free(b.p);
}

static void jwt_seeds(void)
{
    static const struct {
        const char *name, *claims;
    } claims[] = {
        {"valid", "{\"sub\":\"billing-svc\",\"iss\":\"https://issuer.example\",\"aud\":[\"x\","
                  "\"sluice\"],\"exp\":1764673600,\"nbf\":1764669000,\"iat\":1764669000}"},
        {"expired", "{\"sub\":\"a\",\"iss\":\"https://issuer.example\",\"aud\":\"sluice\","
                    "\"exp\":1764660000}"},
        {"not-yet", "{\"sub\":\"a\",\"nbf\":1764680000.5}"},
        {"no-sub", "{\"iss\":\"https://issuer.example\",\"aud\":\"sluice\"}"},
        {"control-in-sub", "{\"sub\":\"a\\u0007b\"}"},
        {"wrong-audience", "{\"sub\":\"a\",\"iss\":\"https://issuer.example\",\"aud\":\"other\"}"},
    };
    char name[64];

    for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
        jwt_t *jwt = NULL;
        char *token;
        snprintf(name, sizeof(name), "claims-%s", claims[i].name);
        jwt_seed(name, 1, claims[i].claims);
        jwt_new(&jwt);
        jwt_add_grants_json(jwt, claims[i].claims);
        jwt_set_alg(jwt, JWT_ALG_ES256, (const unsigned char *)private_pem,
                    (int)strlen(private_pem));
        token = jwt_encode_str(jwt);
        snprintf(name, sizeof(name), "token-%s", claims[i].name);
        jwt_seed(name, 0, token);
        free(token);
        jwt_free(jwt);
    }
    jwt_seed("claims-hs256-with-public-key", 2, claims[0].claims);
    jwt_seed("claims-alg-none", 3, claims[0].claims);
    jwt_seed("token-not-a-jwt", 0, "an-api-key-0123456789");
}

/* ---- MongoDB replies ------------------------------------------------------------ */

/* A fuzz_mongo_reply seed: the batch size (n - 1), then the reply as BSON. */
static void mongo_reply_seed(const char *name, int n, const char *json)
{
    bson_error_t error;
    bson_t *reply = bson_new_from_json((const uint8_t *)json, -1, &error);
    bytes b = {0};
    uint8_t count = (uint8_t)(n - 1);

    if (reply == NULL) {
        fprintf(stderr, "%s: %s\n", name, error.message);
        exit(1);
    }
    put(&b, &count, 1);
    put(&b, bson_get_data(reply), reply->len);
    write_file("mongo_reply", name, b.p, b.n);
    free(b.p);
    bson_destroy(reply);
}

static void mongo_reply_seeds(void)
{
    mongo_reply_seed("all-inserted", 3, "{\"nInserted\": 3, \"nMatched\": 0}");
    mongo_reply_seed("one-duplicate", 3,
                     "{\"nInserted\": 2, \"writeErrors\": [{\"index\": 1, \"code\": 11000, "
                     "\"errmsg\": \"E11000 duplicate key error\"}]}");
    mongo_reply_seed(
        "refused-and-retry", 4,
        "{\"nInserted\": 2, \"writeErrors\": [{\"index\": 0, \"code\": 2, \"errmsg\": "
        "\"bad value\"}, {\"index\": 3, \"code\": 91, \"errmsg\": \"shutting down\"}]}");
    mongo_reply_seed("write-concern-error", 2,
                     "{\"nInserted\": 2, \"writeConcernErrors\": [{\"code\": 64, \"errmsg\": "
                     "\"waiting for replication timed out\"}]}");
    mongo_reply_seed("not-accounted", 3, "{\"nInserted\": 1, \"writeErrors\": []}");
    mongo_reply_seed("regress-repeated-index", 3,
                     "{\"nInserted\": 1, \"writeErrors\": [{\"index\": 0, \"code\": 2}, "
                     "{\"index\": 0, \"code\": 2}]}");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <test/fuzz/corpus>\n", argv[0]);
        return 2;
    }
    root = argv[1];
    event_time.seconds = 1764670000;
    event_time.nanos = 123000000;
    attr_source.key = "source";
    attr_source.value = "web";
    attr_region.key = "region.eu";
    attr_region.value = "$west";
    ingest_request_seeds();
    delivery_seeds();
    pull_status_seeds();
    reflection_seeds();
    jwt_seeds();
    mongo_reply_seeds();
    return 0;
}
