/* Unit tests for sluice-audit's logic: the payload hash and the entry built
 * from a stream message. */
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "sl_record.h"
#include "unit.h"

static char err[512];

static void test_sha256_hex(void)
{
    char hex[AUDIT_SHA256_HEX_LEN];

    CHECK(audit_sha256_hex((const uint8_t *)"", 0, hex));
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(audit_sha256_hex((const uint8_t *)"abc", 3, hex));
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(audit_sha256_hex((const uint8_t *)"{\"n\":1}", 7, hex));
    CHECK(strlen(hex) == 64);
}

typedef struct fixture {
    natsMsg *msg;
    uint8_t *body;
    sl_delivery d;
} fixture;

static void fixture_make(fixture *f, const char *payload, const char *principal)
{
    Sluice__V1__Record r = SLUICE__V1__RECORD__INIT;
    size_t len;

    r.id = "rec-9";
    r.type = "order.paid";
    r.key = principal != NULL ? "k-1" : "";
    r.payload.data = (uint8_t *)payload;
    r.payload.len = strlen(payload);
    len = sluice__v1__record__get_packed_size(&r);
    f->body = malloc(len);
    sluice__v1__record__pack(&r, f->body);
    natsMsg_Create(&f->msg, "sluice.rec.order.paid", NULL, (const char *)f->body, (int)len);
    natsMsgHeader_Set(f->msg, SL_HDR_MSG_ID, "rec-9");
    natsMsgHeader_Set(f->msg, SL_HDR_TYPE, "order.paid");
    natsMsgHeader_Set(f->msg, SL_HDR_RECEIVED_AT, "2026-01-01T00:00:01.5Z");
    if (principal != NULL)
        natsMsgHeader_Set(f->msg, SL_HDR_PRINCIPAL, principal);
    memset(&f->d, 0, sizeof(f->d));
    f->d.msg = f->msg;
    f->d.stream = "SLUICE";
    f->d.consumer = "audit";
    f->d.subject = natsMsg_GetSubject(f->msg);
    f->d.data = f->body;
    f->d.len = len;
    f->d.stream_seq = 7;
    f->d.stream_time_ns = 1767225601600000000LL;
    f->d.deliveries = 3;
}

static void fixture_free(fixture *f)
{
    natsMsg_Destroy(f->msg);
    free(f->body);
}

static void test_entry_fields(void)
{
    bson_t doc = BSON_INITIALIZER;
    fixture f;
    char *json;

    fixture_make(&f, "abc", "svc-billing");
    CHECK(audit_entry_build(&f.d, 1767225602000000000LL, &doc, err, sizeof(err)));
    json = bson_as_canonical_extended_json(&doc, NULL);
    CHECK_STR(json,
              "{ \"_id\" : \"SLUICE:7:2026-01-01T00:00:01.600000000Z\", \"stream\" : \"SLUICE\", "
              "\"stream_seq\" : { \"$numberLong\" : \"7\" }, "
              "\"record_id\" : \"rec-9\", \"type\" : \"order.paid\", "
              "\"key\" : \"k-1\", "
              "\"payload_sha256\" : "
              "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\", "
              "\"payload_bytes\" : { \"$numberLong\" : \"3\" }, "
              "\"principal\" : \"svc-billing\", "
              "\"received_at\" : { \"$date\" : { \"$numberLong\" : \"1767225601500\" } }, "
              "\"audited_at\" : { \"$date\" : { \"$numberLong\" : \"1767225602000\" } }, "
              "\"deliveries\" : { \"$numberLong\" : \"3\" } }");
    bson_free(json);
    bson_destroy(&doc);
    fixture_free(&f);
}

static void test_entry_never_holds_payload(void)
{
    const char *secret = "{\"card\": \"4111111111111111\"}";
    bson_t doc = BSON_INITIALIZER;
    fixture f;
    char *json;

    fixture_make(&f, secret, NULL);
    CHECK(audit_entry_build(&f.d, 0, &doc, err, sizeof(err)));
    json = bson_as_relaxed_extended_json(&doc, NULL);
    CHECK(strstr(json, "4111") == NULL);
    CHECK(strstr(json, "\"principal\" : null") != NULL);
    CHECK(strstr(json, "\"key\" : null") != NULL);
    bson_free(json);
    bson_destroy(&doc);
    fixture_free(&f);
}

static void test_entry_undecodable(void)
{
    bson_t doc = BSON_INITIALIZER;
    fixture f;

    fixture_make(&f, "{}", NULL);
    f.d.data = (const uint8_t *)"\x0a\xff";
    f.d.len = 2;
    CHECK(!audit_entry_build(&f.d, 0, &doc, err, sizeof(err)));
    CHECK(strstr(err, "not a protobuf sluice.v1.Record") != NULL);
    bson_destroy(&doc);
    fixture_free(&f);
}

static void test_received_at_falls_back_to_stream_time(void)
{
    bson_t doc = BSON_INITIALIZER;
    bson_iter_t it;
    fixture f;

    fixture_make(&f, "{}", NULL);
    natsMsgHeader_Delete(f.msg, SL_HDR_RECEIVED_AT);
    f.d.stream_time_ns = 1767225609000000000LL;
    CHECK(audit_entry_build(&f.d, 0, &doc, err, sizeof(err)));
    CHECK(bson_iter_init_find(&it, &doc, "received_at"));
    CHECK(bson_iter_date_time(&it) == 1767225609000LL);
    bson_destroy(&doc);
    fixture_free(&f);
}

int main(void)
{
    nats_Open(-1); /* natsMsg needs the library even without a connection */
    TEST(test_sha256_hex);
    TEST(test_entry_fields);
    TEST(test_entry_never_holds_payload);
    TEST(test_entry_undecodable);
    TEST(test_received_at_falls_back_to_stream_time);
    nats_Close();
    return UNIT_RESULT();
}
