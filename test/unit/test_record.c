/* Unit tests for sl_record: every validation rule, UUIDv7 ids, and the stream
 * message a record becomes. */
#include <stdint.h>
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

/* JSON requires U+0000 to U+001F to be escaped inside strings; libbson
 * lets most of them through raw, jq (which the transform runs on the
 * stored payload) does not, so such a payload would be stored and then
 * dead-lettered. Found by fuzz_payload_json. */
static void test_payload_raw_control_characters(void)
{
    Sluice__V1__Record r;
    char value[16], key[16];

    for (int c = 1; c < 0x20; c++) {
        snprintf(value, sizeof(value), "{\"a\":\"b%cc\"}", c);
        make(&r, "a", value);
        CHECK(validate(&r) == SL_GRPC_INVALID_ARGUMENT);
        CHECK(strncmp(msg, "record.payload: must be a UTF-8 JSON object (", 44) == 0);
        snprintf(key, sizeof(key), "{\"k%c\":1}", c);
        make(&r, "a", key);
        CHECK(validate(&r) == SL_GRPC_INVALID_ARGUMENT);
    }
    make(&r, "a", "{\"a\":\"b\\u0015c\\n\\t\"}"); /* escaped, as JSON wants */
    CHECK(validate(&r) == 0);
}

/* libbson's reader also takes scalars JSON does not have (NaN, Infinity,
 * a lone n, numbers with leading zeros or an empty fraction after a
 * minus) and elements without commas between them: a payload must be JSON
 * (RFC 8259) for every reader of the stream, and jq refuses some of them.
 * Found by fuzz_payload_json. */
static void test_payload_not_json(void)
{
    Sluice__V1__Record r;
    const char *bad[] = {"NaN", "nan", "Infinity", "-Infinity", "n", "N", "-05", "-09",
                         "-0e+.28", "-000e+28", "01", "tru", "nul", "True", "1.", ".5", "+1",
                         "0x1"};
    const char *good[] = {"0", "-0", "0.5", "-1.5E-3", "1e5", "1E+2", "-1234567890123456789",
                          "true", "false", "null", "[1,-2.5e3,true,null]", "\"NaN -05\""};
    char payload[64];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(payload, sizeof(payload), "{\"a\": %s}", bad[i]);
        make(&r, "a", payload);
        CHECK(validate(&r) == SL_GRPC_INVALID_ARGUMENT);
        CHECK(strncmp(msg, "record.payload: must be a UTF-8 JSON object (", 44) == 0);
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(payload, sizeof(payload), "{\"a\": %s}", good[i]);
        make(&r, "a", payload);
        CHECK(validate(&r) == 0);
    }
    make(&r, "a", "{\"za\":[\"\" \"\" \"\"]}");
    CHECK(validate(&r) == SL_GRPC_INVALID_ARGUMENT);
    make(&r, "a", "{\"\":[8,{\":\":[-11]}\":[8,{\"]}");
    CHECK(validate(&r) == SL_GRPC_INVALID_ARGUMENT);
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

/* A message quotes at most 64 bytes of an attribute key, cut before a
 * character rather than inside one: messages go to strict clients. */
static void test_quoted_key_is_utf8(void)
{
    static char k[4200 + 1];
    Sluice__V1__Record r;
    Sluice__V1__Record__AttributesEntry e, *entries[1] = {&e};
    char want[256];

    for (size_t i = 0; i < 4200; i += 3)
        memcpy(k + i, "\xe2\x82\xac", 3);
    make(&r, "a", "{}");
    sluice__v1__record__attributes_entry__init(&e);
    e.key = k;
    e.value = "v";
    r.n_attributes = 1;
    r.attributes = entries;
    CHECK(validate(&r) == SL_GRPC_INVALID_ARGUMENT);
    snprintf(want, sizeof(want), "record.attributes[\"%.63s\"]: key and value must be at most "
             "4096 bytes each", k);
    CHECK_STR(msg, want);
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

/* A record as a client can send it: known fields, plus unknown ones in the
 * record, in event_time and in an attribute entry. */
static const uint8_t with_unknown[] = {
    0x12, 0x01, 'a',                              /* type "a" */
    0x22, 0x02, '{', '}',                         /* payload {} */
    0x2a, 0x0b, 0x0a, 0x01, 'k', 0x12, 0x01, 'v', /* attributes {k: v, */
    0x3a, 0x03, 'x', 'y', 'z',                    /*   field 7 "xyz"} */
    0x32, 0x06, 0x08, 0x05, 0x10, 0x06, 0x48, 0x01, /* event_time {5, 6, field 9} */
    0x9a, 0x06, 0x04, 'j', 'u', 'n', 'k',         /* field 99 "junk" */
};

static void test_to_msg_known_fields_only(void)
{
    Sluice__V1__Record *r = sluice__v1__record__unpack(NULL, sizeof(with_unknown), with_unknown);
    Sluice__V1__Record *back = NULL;
    natsMsg *m = NULL;

    CHECK(r != NULL && r->base.n_unknown_fields == 1);
    CHECK(r->event_time->base.n_unknown_fields == 1);
    CHECK(r->attributes[0]->base.n_unknown_fields == 1);
    CHECK(sl_record_to_msg(&m, r, "id-1", 0, NULL, NULL) == NATS_OK);
    back = sluice__v1__record__unpack(NULL, (size_t)natsMsg_GetDataLength(m),
                                      (const uint8_t *)natsMsg_GetData(m));
    CHECK(back != NULL);
    CHECK(back->base.n_unknown_fields == 0);
    CHECK(back->event_time->base.n_unknown_fields == 0);
    CHECK(back->event_time->seconds == 5 && back->event_time->nanos == 6);
    CHECK(back->n_attributes == 1 && back->attributes[0]->base.n_unknown_fields == 0);
    CHECK_STR(back->attributes[0]->key, "k");
    CHECK_STR(back->attributes[0]->value, "v");
    CHECK_STR(back->id, "id-1");
    CHECK(back->payload.len == 2);
    /* 6 + 3 + 4 + 8 + 6: id, type, payload, the entry, event_time */
    CHECK(natsMsg_GetDataLength(m) == 27);
    sluice__v1__record__free_unpacked(back, NULL);
    sluice__v1__record__free_unpacked(r, NULL);
    natsMsg_Destroy(m);
}

/* What NATS counts against max_payload: the body and the headers as
 * "NATS/1.0\r\n", "key: value\r\n" each, "\r\n". */
static size_t msg_bytes(natsMsg *m)
{
    const char **keys = NULL, **values = NULL;
    int nkeys = 0, nvalues = 0;
    size_t n = (size_t)natsMsg_GetDataLength(m) + 12;
    if (natsMsgHeader_Keys(m, &keys, &nkeys) != NATS_OK)
        return n;
    for (int i = 0; i < nkeys; i++) {
        if (natsMsgHeader_Values(m, keys[i], &values, &nvalues) != NATS_OK)
            continue;
        for (int j = 0; j < nvalues; j++)
            n += strlen(keys[i]) + 2 + strlen(values[j]) + 2;
        free(values);
    }
    free(keys);
    return n;
}

/* The largest record the limits allow fits the bound, and the bound is
 * tight: the same record is within a few bytes of it. */
static void test_max_msg_bytes(void)
{
    static Sluice__V1__Record__AttributesEntry e[64];
    static Sluice__V1__Record__AttributesEntry *entries[64];
    static char payload[1024 * 1024 + 1], key[1025], attr[64][2][4097], id[129], type[129];
    static char traceparent[SL_TRACEPARENT_MAX + 1], principal[SL_PRINCIPAL_MAX];
    Sluice__V1__Record r;
    Google__Protobuf__Timestamp t;
    natsMsg *m = NULL;
    size_t bound = sl_record_max_msg_bytes(&lim), got;

    memset(payload, ' ', sizeof(payload) - 1);
    payload[0] = '{';
    payload[sizeof(payload) - 2] = '}';
    make(&r, type, payload);
    memset(type, 'a', 128);
    memset(id, 'i', 128);
    memset(key, 'k', 1024);
    memset(traceparent, 't', SL_TRACEPARENT_MAX);
    memset(principal, 'p', SL_PRINCIPAL_MAX - 1);
    r.id = id;
    r.key = key;
    for (size_t i = 0; i < 64; i++) {
        memset(attr[i][0], 'a', 4096);
        memset(attr[i][1], 'v', 4096);
        attr[i][0][0] = (char)('0' + i % 10);
        attr[i][0][1] = (char)('0' + i / 10);
        sluice__v1__record__attributes_entry__init(&e[i]);
        e[i].key = attr[i][0];
        e[i].value = attr[i][1];
        entries[i] = &e[i];
    }
    r.n_attributes = 64;
    r.attributes = entries;
    google__protobuf__timestamp__init(&t);
    t.seconds = -62135596800LL;
    t.nanos = 999999999;
    r.event_time = &t;
    CHECK(validate(&r) == 0);
    CHECK(sl_record_to_msg(&m, &r, id, INT64_MAX, traceparent, principal) == NATS_OK);
    got = msg_bytes(m);
    natsMsg_Destroy(m);
    CHECK(got <= bound);
    CHECK(bound - got < 64);
    /* 1 MiB of payload, 512 KiB of attributes, and change */
    CHECK(bound > 1024 * 1024 + 512 * 1024 && bound < 1024 * 1024 + 520 * 1024);
}

/* Limits no configuration allows still give a bound, not a wrapped one. */
static void test_max_msg_bytes_saturates(void)
{
    sl_record_limits huge = lim;
    huge.max_attributes = SIZE_MAX / 1024;
    CHECK(sl_record_max_msg_bytes(&huge) == SIZE_MAX);
    huge = lim;
    huge.max_payload_bytes = SIZE_MAX - 16;
    CHECK(sl_record_max_msg_bytes(&huge) == SIZE_MAX);
    huge = lim;
    huge.max_attribute_bytes = SIZE_MAX / 2;
    CHECK(sl_record_max_msg_bytes(&huge) == SIZE_MAX);
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
    TEST(test_payload_raw_control_characters);
    TEST(test_payload_not_json);
    TEST(test_payload_limit);
    TEST(test_key_and_attributes);
    TEST(test_quoted_key_is_utf8);
    TEST(test_event_time);
    TEST(test_uuid_v7);
    TEST(test_to_msg);
    TEST(test_to_msg_known_fields_only);
    TEST(test_max_msg_bytes);
    TEST(test_max_msg_bytes_saturates);
    nats_Close();
    return UNIT_RESULT();
}
