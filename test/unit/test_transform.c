/* Unit tests for sluice-transform's logic: type patterns, rule order, jq
 * results and errors, the rules file, jv -> BSON, and the records document
 * built from a stream message. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sl_record.h"
#include "sl_pattern.h"
#include "transform.h"
#include "unit.h"

static char err[1024];

static transform_rules *rules(const char *json)
{
    err[0] = '\0';
    return transform_rules_parse(json, strlen(json), "rules.json", err, sizeof(err));
}

/* Runs payload through the rule for type; the result as compact JSON text
 * (caller frees) or NULL with err set. */
static char *run(transform_rules *r, const char *type, const char *payload)
{
    jv out;
    err[0] = '\0';
    if (!transform_apply(r, type, (const uint8_t *)payload, strlen(payload), &out, err,
                         sizeof(err)))
        return NULL;
    jv text = jv_dump_string(out, 0);
    char *s = strdup(jv_string_value(text));
    jv_free(text);
    return s;
}

static bool run_is(transform_rules *r, const char *type, const char *payload, const char *want)
{
    char *got = run(r, type, payload);
    bool same = got != NULL && strcmp(got, want) == 0;
    if (!same)
        fprintf(stderr, "  %s on %s: got %s, want %s (%s)\n", type, payload, got ? got : "(error)",
                want, err);
    free(got);
    return same;
}

static void test_pattern_exact_and_star(void)
{
    CHECK(sl_pattern_match("order.created", "order.created"));
    CHECK(!sl_pattern_match("order.created", "order.created.v2"));
    CHECK(!sl_pattern_match("order.created", "order"));
    CHECK(sl_pattern_match("order.*", "order.created"));
    CHECK(!sl_pattern_match("order.*", "order"));
    CHECK(!sl_pattern_match("order.*", "order.created.v2"));
    CHECK(!sl_pattern_match("order.*", "orders.created"));
    CHECK(sl_pattern_match("*.created", "order.created"));
    CHECK(sl_pattern_match("*.*", "a.b"));
    CHECK(!sl_pattern_match("*", "a.b"));
    CHECK(sl_pattern_match("*", "a"));
}

static void test_pattern_tail(void)
{
    CHECK(sl_pattern_match("order.>", "order.created"));
    CHECK(sl_pattern_match("order.>", "order.created.v2"));
    CHECK(!sl_pattern_match("order.>", "order"));
    CHECK(!sl_pattern_match("order.>", "invoice.created"));
    CHECK(sl_pattern_match(">", "order"));
    CHECK(sl_pattern_match(">", "a.b.c"));
    CHECK(sl_pattern_match("*.>", "a.b"));
    CHECK(!sl_pattern_match("*.>", "a"));
}

static void test_pattern_valid(void)
{
    CHECK(sl_pattern_valid("order.created"));
    CHECK(sl_pattern_valid("order.*"));
    CHECK(sl_pattern_valid("order.>"));
    CHECK(sl_pattern_valid(">"));
    CHECK(sl_pattern_valid("*.x.*"));
    CHECK(!sl_pattern_valid(""));
    CHECK(!sl_pattern_valid("order."));
    CHECK(!sl_pattern_valid(".order"));
    CHECK(!sl_pattern_valid("order..x"));
    CHECK(!sl_pattern_valid("order.>.x"));
    CHECK(!sl_pattern_valid("order*"));
    CHECK(!sl_pattern_valid("a b"));
}

static void test_first_in_file_order_wins(void)
{
    /* ">" first would win everything; here it comes last, after a more and a
     * less specific rule in an order a hash map would not keep. */
    transform_rules *r = rules("{\"order.created\": \"{rule: 1}\","
                               " \"order.*\": \"{rule: 2}\","
                               " \"order.>\": \"{rule: 3}\","
                               " \">\": \"{rule: 4}\"}");
    CHECK(r != NULL);
    CHECK(transform_rules_count(r) == 4);
    CHECK_STR(transform_rules_match(r, "order.created"), "order.created");
    CHECK_STR(transform_rules_match(r, "order.paid"), "order.*");
    CHECK_STR(transform_rules_match(r, "order.paid.late"), "order.>");
    CHECK_STR(transform_rules_match(r, "invoice"), ">");
    CHECK(run_is(r, "order.created", "{}", "{\"rule\":1}"));
    CHECK(run_is(r, "order.paid", "{}", "{\"rule\":2}"));
    CHECK(run_is(r, "order.paid.late", "{}", "{\"rule\":3}"));
    CHECK(run_is(r, "user.signup", "{}", "{\"rule\":4}"));
    transform_rules_free(r);

    r = rules("{\">\": \"{rule: 4}\", \"order.created\": \"{rule: 1}\"}");
    CHECK(r != NULL);
    CHECK(run_is(r, "order.created", "{}", "{\"rule\":4}"));
    transform_rules_free(r);
}

static void test_identity(void)
{
    transform_rules *r = rules("{\"order.*\": \"{total: (.n * 2)}\"}");
    CHECK(r != NULL);
    CHECK(run_is(r, "order.created", "{\"n\": 21}", "{\"total\":42}"));
    CHECK(transform_rules_match(r, "user.signup") == NULL);
    CHECK(run_is(r, "user.signup", "{\"b\":[1,{\"c\":null}],\"a\":\"x\"}",
                 "{\"b\":[1,{\"c\":null}],\"a\":\"x\"}"));
    transform_rules_free(r);

    r = transform_rules_load("", err, sizeof(err));
    CHECK(r != NULL);
    CHECK(transform_rules_count(r) == 0);
    CHECK(run_is(r, "anything", "{\"k\": true}", "{\"k\":true}"));
    transform_rules_free(r);
}

static void test_runtime_error(void)
{
    transform_rules *r = rules("{\"order.*\": \".x.y\", \"fail.*\": \"error(\\\"boom\\\")\"}");
    CHECK(r != NULL);
    CHECK(run(r, "order.created", "{\"x\": 5}") == NULL);
    CHECK(strstr(err, "jq rule \"order.*\"") != NULL);
    CHECK(strstr(err, "Cannot index number") != NULL);
    CHECK(run(r, "fail.now", "{}") == NULL);
    CHECK_STR(err, "jq rule \"fail.*\": boom");
    /* The same state serves the next record normally. */
    CHECK(run(r, "order.created", "{\"x\": {\"y\": 1}}") == NULL);
    CHECK(strstr(err, "the result is number, not an object") != NULL);
    CHECK(run_is(r, "order.created", "{\"x\": {\"y\": {\"z\": 1}}}", "{\"z\":1}"));
    transform_rules_free(r);
}

static void test_result_not_an_object(void)
{
    transform_rules *r = rules("{\"num\": \".n\", \"arr\": \"[.]\", \"none\": \"empty\","
                               " \"many\": \".,.\", \"late\": \".,error(\\\"late\\\")\"}");
    CHECK(r != NULL);
    CHECK(run(r, "num", "{\"n\": 1}") == NULL);
    CHECK_STR(err, "jq rule \"num\": the result is number, not an object");
    CHECK(run(r, "arr", "{}") == NULL);
    CHECK_STR(err, "jq rule \"arr\": the result is array, not an object");
    CHECK(run(r, "none", "{}") == NULL);
    CHECK_STR(err, "jq rule \"none\": the program produced no output");
    CHECK(run(r, "many", "{}") == NULL);
    CHECK(strstr(err, "more than one output") != NULL);
    CHECK(run(r, "late", "{}") == NULL);
    CHECK_STR(err, "jq rule \"late\": late");
    transform_rules_free(r);
}

static void test_payload_not_an_object(void)
{
    transform_rules *r = rules("{}");
    CHECK(r != NULL);
    CHECK(run(r, "t", "[1]") == NULL);
    CHECK_STR(err, "payload is array, not a JSON object");
    CHECK(run(r, "t", "{\"a\":") == NULL);
    CHECK(strncmp(err, "payload is not JSON: ", 21) == 0);
    transform_rules_free(r);
}

static void test_compile_error_names_file(void)
{
    char path[] = "/tmp/sluice-rules-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "{\"order.*\": \".\", \"bad.*\": \"{total: .n * 2}\"}";
    transform_rules *r;

    CHECK(fd >= 0);
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    r = transform_rules_load(path, err, sizeof(err));
    unlink(path);
    CHECK(r == NULL);
    CHECK(strncmp(err, "rules file ", 11) == 0);
    CHECK(strstr(err, path) != NULL);
    CHECK(strstr(err, "\"bad.*\" does not compile") != NULL);
    CHECK(strstr(err, "syntax error") != NULL);
    CHECK(strchr(err, '\n') == NULL);
}

static void test_bad_rules_files(void)
{
    CHECK(rules("[\".\"]") == NULL);
    CHECK(strstr(err, "must be a JSON object") != NULL);
    CHECK(rules("{\"a\": 1}") == NULL);
    CHECK(strstr(err, "must be a jq program") != NULL);
    CHECK(rules("{\"a.>.b\": \".\"}") == NULL);
    CHECK(strstr(err, "is not a type pattern") != NULL);
    CHECK(rules("{\"a\": ") == NULL);
    CHECK(strstr(err, "not valid JSON") != NULL);
    CHECK(transform_rules_load("/nonexistent/rules.json", err, sizeof(err)) == NULL);
    CHECK_STR(err, "rules file /nonexistent/rules.json: No such file or directory");
}

/* A program that imports a module is refused with jq's message: libjq
 * aborted the process in an assertion (jv_array_concat) when it looked for
 * the module without a library path set. Rules load no modules. Found by
 * fuzz_transform_rules, on a seed. */
static void test_rules_import_refused(void)
{
    const char *programs[] = {"{\"a\": \"import \\\"m\\\" as m; .\"}",
                              "{\"a\": \"include \\\"m\\\"; .\"}",
                              "{\"a\": \"import \\\"m\\\" as $m; .\"}"};

    for (size_t i = 0; i < sizeof(programs) / sizeof(programs[0]); i++) {
        CHECK(rules(programs[i]) == NULL);
        CHECK(strstr(err, "does not compile") != NULL);
        CHECK(strstr(err, "module not found: m") != NULL);
    }
}

/* The rules text is bounded by its length, not by a NUL: blanks up to the
 * end of the buffer are not followed into the next page. Found by
 * fuzz_transform_rules (AddressSanitizer: heap-buffer-overflow in strspn). */
static void test_rules_text_bounded_by_length(void)
{
    long page = sysconf(_SC_PAGESIZE);
    char *map = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *end;
    transform_rules *r;

    CHECK(map != MAP_FAILED);
    CHECK(mprotect(map + page, (size_t)page, PROT_NONE) == 0);
    end = map + page; /* the first byte that cannot be read */
    memcpy(end - 4, " \t\n ", 4);
    err[0] = '\0';
    CHECK(transform_rules_parse(end - 4, 4, "rules.json", err, sizeof(err)) == NULL);
    CHECK(strstr(err, "must be a JSON object") != NULL);
    memcpy(end - 3, " {}", 3);
    r = transform_rules_parse(end - 3, 3, "rules.json", err, sizeof(err));
    CHECK(r != NULL && transform_rules_count(r) == 0);
    transform_rules_free(r);
    munmap(map, 2 * (size_t)page);
}

static void test_jv_to_bson(void)
{
    jv v = jv_parse("{\"i\": 3, \"big\": 9007199254740992, \"f\": 1.5, \"neg\": -7,"
                    " \"s\": \"x\\u0000y\", \"t\": true, \"n\": null, \"a\": [1, \"b\", {}]}");
    bson_t doc = BSON_INITIALIZER;
    bson_iter_t it, data;

    CHECK(transform_jv_append(&doc, "data", v, err, sizeof(err)));
    CHECK(bson_iter_init_find(&it, &doc, "data") && bson_iter_recurse(&it, &data));
    CHECK(bson_iter_find(&data, "i") && BSON_ITER_HOLDS_INT32(&data) &&
          bson_iter_int32(&data) == 3);
    CHECK(bson_iter_find(&data, "big") && BSON_ITER_HOLDS_INT64(&data));
    CHECK(bson_iter_find(&data, "f") && BSON_ITER_HOLDS_DOUBLE(&data));
    CHECK(bson_iter_find(&data, "neg") && bson_iter_int32(&data) == -7);
    uint32_t len = 0;
    CHECK(bson_iter_find(&data, "s") && bson_iter_utf8(&data, &len) && len == 3);
    CHECK(bson_iter_find(&data, "t") && bson_iter_bool(&data));
    CHECK(bson_iter_find(&data, "n") && BSON_ITER_HOLDS_NULL(&data));
    CHECK(bson_iter_find(&data, "a") && BSON_ITER_HOLDS_ARRAY(&data));
    char *json = bson_as_relaxed_extended_json(&doc, NULL);
    CHECK(strstr(json, "\"a\" : [ 1, \"b\", {  } ]") != NULL);
    bson_free(json);
    bson_destroy(&doc);
    jv_free(v);
}

static void test_jv_special_numbers(void)
{
    transform_rules *r = rules("{\"x\": \"{nan: nan, inf: infinite}\"}");
    jv out;
    bson_t doc = BSON_INITIALIZER;
    bson_iter_t it;

    CHECK(r != NULL);
    CHECK(transform_apply(r, "x", (const uint8_t *)"{}", 2, &out, err, sizeof(err)));
    CHECK(transform_jv_append(&doc, "data", out, err, sizeof(err)));
    CHECK(bson_iter_init(&it, &doc) && bson_iter_find_descendant(&it, "data.nan", &it));
    CHECK(BSON_ITER_HOLDS_NULL(&it));
    CHECK(bson_iter_init(&it, &doc) && bson_iter_find_descendant(&it, "data.inf", &it));
    CHECK(BSON_ITER_HOLDS_DOUBLE(&it) && isfinite(bson_iter_double(&it)));
    jv_free(out);
    bson_destroy(&doc);
    transform_rules_free(r);
}

static void test_jv_too_deep(void)
{
    char json[512] = "";
    for (int i = 0; i < 120; i++)
        strcat(json, "[");
    for (int i = 0; i < 120; i++)
        strcat(json, "]");
    jv v = jv_parse(json);
    bson_t doc = BSON_INITIALIZER;
    CHECK(!transform_jv_append(&doc, "data", v, err, sizeof(err)));
    CHECK(strstr(err, "nested deeper than 100") != NULL);
    bson_destroy(&doc);
    jv_free(v);
}

/* A stream message as ingest publishes it, wrapped as the consumer loop
 * hands it to the build callback. */
typedef struct fixture {
    natsMsg *msg;
    uint8_t *body;
    sl_delivery d;
} fixture;

static void fixture_make(fixture *f, const char *type, const char *payload, bool full)
{
    Sluice__V1__Record r = SLUICE__V1__RECORD__INIT;
    Sluice__V1__Record__AttributesEntry a = SLUICE__V1__RECORD__ATTRIBUTES_ENTRY__INIT;
    Sluice__V1__Record__AttributesEntry *attrs[1] = {&a};
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    char subject[256];
    size_t len;

    r.id = "rec-1";
    r.type = (char *)type;
    r.payload.data = (uint8_t *)payload;
    r.payload.len = strlen(payload);
    if (full) {
        r.key = "customer-7";
        a.key = "app.version";
        a.value = "1.2";
        r.attributes = attrs;
        r.n_attributes = 1;
        ts.seconds = 1767225600;
        ts.nanos = 250000000;
        r.event_time = &ts;
    }
    len = sluice__v1__record__get_packed_size(&r);
    f->body = malloc(len);
    sluice__v1__record__pack(&r, f->body);
    snprintf(subject, sizeof(subject), "sluice.rec.%s", type);
    natsMsg_Create(&f->msg, subject, NULL, (const char *)f->body, (int)len);
    natsMsgHeader_Set(f->msg, SL_HDR_MSG_ID, "rec-1");
    natsMsgHeader_Set(f->msg, SL_HDR_TYPE, type);
    natsMsgHeader_Set(f->msg, SL_HDR_RECEIVED_AT, "2026-01-01T00:00:01.123456789Z");
    if (full)
        natsMsgHeader_Set(f->msg, SL_HDR_TRACEPARENT,
                          "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    memset(&f->d, 0, sizeof(f->d));
    f->d.msg = f->msg;
    f->d.stream = "SLUICE";
    f->d.consumer = "transform";
    f->d.subject = natsMsg_GetSubject(f->msg);
    f->d.data = f->body;
    f->d.len = len;
    f->d.stream_seq = 42;
    f->d.deliveries = 1;
}

static void fixture_free(fixture *f)
{
    natsMsg_Destroy(f->msg);
    free(f->body);
}

static void test_document_fields(void)
{
    transform_rules *r = rules("{\"order.*\": \"{total: (.n * 2)}\"}");
    bson_t doc = BSON_INITIALIZER;
    fixture f;
    char *json;

    CHECK(r != NULL);
    fixture_make(&f, "order.created", "{\"n\": 21}", true);
    CHECK(transform_document_build(r, &f.d, 1767225602000000000LL, &doc, err, sizeof(err)));
    json = bson_as_canonical_extended_json(&doc, NULL);
    CHECK_STR(json,
              "{ \"_id\" : \"rec-1\", \"type\" : \"order.created\", \"key\" : \"customer-7\", "
              "\"attributes\" : { \"app\xEF\xBC\x8Eversion\" : \"1.2\" }, "
              "\"event_time\" : { \"$date\" : { \"$numberLong\" : \"1767225600250\" } }, "
              "\"received_at\" : { \"$date\" : { \"$numberLong\" : \"1767225601123\" } }, "
              "\"stream_seq\" : { \"$numberLong\" : \"42\" }, "
              "\"principal\" : null, "
              "\"data\" : { \"total\" : { \"$numberInt\" : \"42\" } }, "
              "\"transformed_at\" : { \"$date\" : { \"$numberLong\" : \"1767225602000\" } }, "
              "\"traceparent\" : \"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\" }");
    bson_free(json);
    bson_destroy(&doc);
    fixture_free(&f);
    transform_rules_free(r);
}

static void test_document_minimal(void)
{
    transform_rules *r = rules("{}");
    bson_t doc = BSON_INITIALIZER;
    bson_iter_t it;
    fixture f;

    CHECK(r != NULL);
    fixture_make(&f, "user.signup", "{\"email\": \"a@b\"}", false);
    CHECK(transform_document_build(r, &f.d, 0, &doc, err, sizeof(err)));
    CHECK(bson_iter_init_find(&it, &doc, "key") && BSON_ITER_HOLDS_NULL(&it));
    CHECK(bson_iter_init_find(&it, &doc, "event_time") && BSON_ITER_HOLDS_NULL(&it));
    CHECK(!bson_iter_init_find(&it, &doc, "traceparent"));
    CHECK(bson_iter_init(&it, &doc) && bson_iter_find_descendant(&it, "data.email", &it));
    CHECK_STR(bson_iter_utf8(&it, NULL), "a@b");
    bson_destroy(&doc);
    fixture_free(&f);
    transform_rules_free(r);
}

/* An event_time past what an int64 of milliseconds holds (ingest refuses
 * it, a message written by anything else may hold it) is stored as null;
 * seconds * 1000 overflowed. Found by fuzz_delivery (UBSan:
 * signed-integer-overflow). */
static void test_document_event_time_out_of_range(void)
{
    transform_rules *r = rules("{}");
    Sluice__V1__Record rec = SLUICE__V1__RECORD__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    bson_t doc = BSON_INITIALIZER;
    uint8_t body[128];
    bson_iter_t it;
    fixture f;

    CHECK(r != NULL);
    rec.id = "rec-1";
    rec.type = "a";
    rec.payload.data = (uint8_t *)"{}";
    rec.payload.len = 2;
    rec.event_time = &ts;
    ts.seconds = 6004146572364790320LL;
    fixture_make(&f, "a", "{}", false);
    f.d.len = sluice__v1__record__pack(&rec, body);
    f.d.data = body;
    CHECK(transform_document_build(r, &f.d, 0, &doc, err, sizeof(err)));
    CHECK(bson_iter_init_find(&it, &doc, "event_time") && BSON_ITER_HOLDS_NULL(&it));
    bson_destroy(&doc);
    fixture_free(&f);
    transform_rules_free(r);
}

/* Header values that are not UTF-8 are left out of the document (the
 * principal is null, as audit stores it, the traceparent absent): they
 * made a document with invalid strings, which MongoDB's driver sends as
 * they are and clients then cannot read. Found by fuzz_delivery. */
static void test_document_headers_not_utf8(void)
{
    transform_rules *r = rules("{}");
    bson_t doc = BSON_INITIALIZER;
    bson_iter_t it;
    fixture f;

    CHECK(r != NULL);
    fixture_make(&f, "a", "{}", true);
    natsMsgHeader_Set(f.msg, SL_HDR_PRINCIPAL, "billing-\xff");
    natsMsgHeader_Set(f.msg, SL_HDR_TRACEPARENT, "\xc2" "d1");
    CHECK(transform_document_build(r, &f.d, 0, &doc, err, sizeof(err)));
    CHECK(bson_iter_init_find(&it, &doc, "principal") && BSON_ITER_HOLDS_NULL(&it));
    CHECK(!bson_iter_init_find(&it, &doc, "traceparent"));
    bson_destroy(&doc);
    fixture_free(&f);
    transform_rules_free(r);
}

static void test_document_terminal_errors(void)
{
    transform_rules *r = rules("{\"bad.*\": \".x.y\"}");
    bson_t doc = BSON_INITIALIZER;
    fixture f;

    CHECK(r != NULL);
    fixture_make(&f, "bad.one", "{\"x\": 1}", false);
    CHECK(!transform_document_build(r, &f.d, 0, &doc, err, sizeof(err)));
    CHECK(strstr(err, "jq rule \"bad.*\"") != NULL);
    fixture_free(&f);

    fixture_make(&f, "good", "{\"x\": 1}", false);
    f.d.data = (const uint8_t *)"\xff\xff\xff";
    f.d.len = 3;
    bson_reinit(&doc);
    CHECK(!transform_document_build(r, &f.d, 0, &doc, err, sizeof(err)));
    CHECK(strstr(err, "not a protobuf sluice.v1.Record") != NULL);
    fixture_free(&f);
    bson_destroy(&doc);
    transform_rules_free(r);
}

int main(void)
{
    nats_Open(-1); /* natsMsg needs the library even without a connection */
    TEST(test_pattern_exact_and_star);
    TEST(test_pattern_tail);
    TEST(test_pattern_valid);
    TEST(test_first_in_file_order_wins);
    TEST(test_identity);
    TEST(test_runtime_error);
    TEST(test_result_not_an_object);
    TEST(test_payload_not_an_object);
    TEST(test_compile_error_names_file);
    TEST(test_bad_rules_files);
    TEST(test_rules_text_bounded_by_length);
    TEST(test_rules_import_refused);
    TEST(test_jv_to_bson);
    TEST(test_jv_special_numbers);
    TEST(test_jv_too_deep);
    TEST(test_document_fields);
    TEST(test_document_minimal);
    TEST(test_document_event_time_out_of_range);
    TEST(test_document_headers_not_utf8);
    TEST(test_document_terminal_errors);
    nats_Close();
    return UNIT_RESULT();
}
