/* Unit tests for sl_record: every validation rule, UUIDv7 ids, and the stream
 * message a record becomes. */
#include <stdlib.h>
#include <string.h>

#include "sl_grpc_codes.h"
#include "sl_record.h"
#include "unit.h"

static sl_record_limits lim;
static char msg[512];

static void make(Sluice__V1__Record *r, const char *type, const char *payload)
{
    sluice__v1__record__init(r);
    r->type = (char *)type;
    r->payload.data = (uint8_t *)payload;
    r->payload.len = payload ? strlen(payload) : 0;
}

static int validate(Sluice__V1__Record *r)
{
    msg[0] = '\0';
    return sl_record_validate(r, &lim, "record", msg, sizeof(msg));
}

static void test_valid_record(void)
{
    Sluice__V1__Record r;
    make(&r, "order.created", "{\"total\": 12.5, \"items\": [1, 2]}");
    CHECK(validate(&r) == 0);
    r.id = "ord-1:2024.x_y";
    CHECK(validate(&r) == 0);
}

static void test_missing_record(void)
{
    CHECK(sl_record_validate(NULL, &lim, "record", msg, sizeof(msg)) == SL_GRPC_INVALID_ARGUMENT);
    CHECK_STR(msg, "record: required");
}

static void test_id_rules(void)
{
    Sluice__V1__Record r;
    char long_id[200];
    make(&r, "a", "{}");
    r.id = "has space";
    CHECK(validate(&r) == SL_GRPC_INVALID_ARGUMENT);
    CHECK(strncmp(msg, "record.id: ", 11) == 0);
    memset(long_id, 'a', 129);
    long_id[129] = '\0';
    r.id = long_id;
    CHECK(validate(&r) == SL_GRPC_INVALID_ARGUMENT);
    long_id[128] = '\0';
    CHECK(validate(&r) == 0);
    r.id = "é";
    CHECK(validate(&r) == SL_GRPC_INVALID_ARGUMENT);
}

static void test_type_rules(void)
{
    Sluice__V1__Record r;
    const char *bad[] = {"", "Order", "order.", ".order", "order..created", "order created",
                         "order.*", "order.>", "ä"};
    make(&r, "a", "{}");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r.type = (char *)bad[i];
        CHECK(validate(&r) == SL_GRPC_INVALID_ARGUMENT);
        CHECK(strncmp(msg, "record.type: ", 13) == 0);
    }
    r.type = "";
    validate(&r);
    CHECK_STR(msg, "record.type: required");
    r.type = "order_v2.created-x.9";
    CHECK(validate(&r) == 0);
}

static void test_type_length(void)
{
    Sluice__V1__Record r;
    char t[200];
    make(&r, "a", "{}");
    memset(t, 'a', 129);
    t[129] = '\0';
    r.type = t;
    CHECK(validate(&r) == SL_GRPC_INVALID_ARGUMENT);
    t[128] = '\0';
    CHECK(validate(&r) == 0);
}

static void test_payload_rules(void)
{
    Sluice__V1__Record r;
    const char *bad[] = {"[1,2]", "\"text\"", "42", "{\"a\":", "{} trailing", "not json", "  ",
                         "{}{}", "{\"a\":1} {\"b\":2}", "{\"a\":\"}\"} x"};
    const char *good[] = {"{\"a\":\"}{\"}", "{\"a\":\"\\\"}\"}\n", "{\"a\":[{}, {\"b\":[]}]} "};
    make(&r, "a", NULL);
    CHECK(validate(&r) == SL_GRPC_INVALID_ARGUMENT);
    CHECK(strncmp(msg, "record.payload: required", 24) == 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        make(&r, "a", bad[i]);
        CHECK(validate(&r) == SL_GRPC_INVALID_ARGUMENT);
        CHECK(strncmp(msg, "record.payload: must be a UTF-8 JSON object (", 44) == 0);
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        make(&r, "a", good[i]);
        CHECK(validate(&r) == 0);
    }
    make(&r, "a", "{\"a\":\"\xff\"}");
    CHECK(validate(&r) == SL_GRPC_INVALID_ARGUMENT);
    make(&r, "a", "  {\"nested\": {\"x\": [null, true]}}\n");
    CHECK(validate(&r) == 0);
}

static void test_payload_limit(void)
{
    Sluice__V1__Record r;
    sl_record_limits small = lim;
    small.max_payload_bytes = 8;
    make(&r, "a", "{\"abc\":1234}");
    CHECK(sl_record_validate(&r, &small, "records[2]", msg, sizeof(msg)) ==
          SL_GRPC_RESOURCE_EXHAUSTED);
    CHECK(strncmp(msg, "records[2].payload: 12 bytes exceeds the limit of 8 bytes", 56) == 0);
}

static void test_key_and_attributes(void)
{
    Sluice__V1__Record r;
    Sluice__V1__Record__AttributesEntry e, *entries[1] = {&e};
    make(&r, "a", "{}");
    r.key = "line\nbreak";
    CHECK(validate(&r) == SL_GRPC_INVALID_ARGUMENT);
    CHECK(strncmp(msg, "record.key: ", 12) == 0);
    r.key = "customer-42";
    sluice__v1__record__attributes_entry__init(&e);
    e.key = "";
    e.value = "v";
    r.n_attributes = 1;
    r.attributes = entries;
    CHECK(validate(&r) == SL_GRPC_INVALID_ARGUMENT);
    CHECK(strncmp(msg, "record.attributes: ", 19) == 0);
    e.key = "source";
    CHECK(validate(&r) == 0);
}

static void test_event_time(void)
{
    Sluice__V1__Record r;
    Google__Protobuf__Timestamp t;
    make(&r, "a", "{}");
    google__protobuf__timestamp__init(&t);
    r.event_time = &t;
    t.nanos = -1;
    CHECK(validate(&r) == SL_GRPC_INVALID_ARGUMENT);
    CHECK(strncmp(msg, "record.event_time.nanos", 23) == 0);
    t.nanos = 5;
    t.seconds = 253402300800LL;
    CHECK(validate(&r) == SL_GRPC_INVALID_ARGUMENT);
    t.seconds = 1700000000;
    CHECK(validate(&r) == 0);
}

static void test_uuid_v7(void)
{
    char a[SL_UUID_LEN], b[SL_UUID_LEN];
    sl_uuid_v7(a);
    sl_uuid_v7(b);
    CHECK(strlen(a) == 36);
    CHECK(a[8] == '-' && a[13] == '-' && a[18] == '-' && a[23] == '-');
    CHECK(a[14] == '7');
    CHECK(strchr("89ab", a[19]) != NULL);
    CHECK(strcmp(a, b) != 0);
    CHECK(sl_record_id_valid(a));
}

static void test_to_msg(void)
{
    Sluice__V1__Record r, *back;
    natsMsg *m = NULL;
    const char *v = NULL;
    make(&r, "order.created", "{\"a\":1}");
    r.key = "k1";
    CHECK(sl_record_to_msg(&m, &r, "id-1", 1700000000123456789LL, "00-abc-def-01", NULL) ==
          NATS_OK);
    CHECK_STR(natsMsg_GetSubject(m), "sluice.rec.order.created");
    CHECK(natsMsgHeader_Get(m, "Nats-Msg-Id", &v) == NATS_OK);
    CHECK_STR(v, "id-1");
    CHECK(natsMsgHeader_Get(m, "Sluice-Type", &v) == NATS_OK);
    CHECK_STR(v, "order.created");
    CHECK(natsMsgHeader_Get(m, "Sluice-Key", &v) == NATS_OK);
    CHECK_STR(v, "k1");
    CHECK(natsMsgHeader_Get(m, "Sluice-Received-At", &v) == NATS_OK);
    CHECK_STR(v, "2023-11-14T22:13:20.123456789Z");
    CHECK(natsMsgHeader_Get(m, "traceparent", &v) == NATS_OK);
    CHECK(natsMsgHeader_Get(m, "Sluice-Principal", &v) == NATS_NOT_FOUND);
    back = sluice__v1__record__unpack(NULL, (size_t)natsMsg_GetDataLength(m),
                                      (const uint8_t *)natsMsg_GetData(m));
    CHECK(back != NULL);
    CHECK_STR(back->id, "id-1");
    CHECK_STR(back->type, "order.created");
    CHECK(back->payload.len == 7);
    sluice__v1__record__free_unpacked(back, NULL);
    natsMsg_Destroy(m);
    /* The caller's record is untouched. */
    CHECK_STR(r.id, "");
}

int main(void)
{
    sl_record_limits_default(&lim);
    nats_Open(-1); /* natsMsg needs the library initialised */
    TEST(test_valid_record);
    TEST(test_missing_record);
    TEST(test_id_rules);
    TEST(test_type_rules);
    TEST(test_type_length);
    TEST(test_payload_rules);
    TEST(test_payload_limit);
    TEST(test_key_and_attributes);
    TEST(test_event_time);
    TEST(test_uuid_v7);
    TEST(test_to_msg);
    nats_Close();
    return UNIT_RESULT();
}
