/* Unit tests for sl_pb_check: NUL bytes and invalid UTF-8 in string fields,
 * found by path in requests built byte by byte; and bytes that are not a
 * message at all, which must be refused without reading past the end. */
#include <bson/bson.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "sl_pb_check.h"
#include "sluice/v1/ingest.pb-c.h"
#include "unit.h"

#define REQUEST (&sluice__v1__ingest_request__descriptor)
#define BATCH (&sluice__v1__ingest_batch_request__descriptor)

/* An encoded message under construction. */
typedef struct wire {
    uint8_t b[8192];
    size_t n;
} wire;

static void put_byte(wire *w, uint8_t c)
{
    if (w->n < sizeof(w->b))
        w->b[w->n++] = c;
}

static void put_varint(wire *w, uint64_t v)
{
    for (; v >= 0x80; v >>= 7)
        put_byte(w, (uint8_t)(v | 0x80));
    put_byte(w, (uint8_t)v);
}

static void put_bytes(wire *w, uint32_t number, const void *data, size_t len)
{
    put_varint(w, (uint64_t)number << 3 | 2);
    put_varint(w, len);
    for (size_t i = 0; i < len; i++)
        put_byte(w, ((const uint8_t *)data)[i]);
}

static void put_str(wire *w, uint32_t number, const char *s)
{
    put_bytes(w, number, s, strlen(s));
}

static void put_msg(wire *w, uint32_t number, const wire *m)
{
    put_bytes(w, number, m->b, m->n);
}

/* A valid record: type, payload, one attribute, an unknown varint field. */
static wire good_record(void)
{
    wire r = {0}, entry = {0};
    put_str(&r, 2, "order.created");
    put_bytes(&r, 4, "{\"a\":\"\0\xff\"}", 10); /* bytes: anything goes */
    put_str(&entry, 1, "source");
    put_str(&entry, 2, "web");
    put_msg(&r, 5, &entry);
    put_varint(&r, 77 << 3);
    put_varint(&r, 5);
    return r;
}

static wire request_of(const wire *record)
{
    wire q = {0};
    put_msg(&q, 1, record);
    return q;
}

static char msg[256];

static sl_pb_result check(const ProtobufCMessageDescriptor *d, const wire *w)
{
    msg[0] = '\0';
    return sl_pb_check(d, w->b, w->n, msg, sizeof(msg));
}

static void test_valid(void)
{
    wire r = good_record(), q = request_of(&r);
    CHECK(check(REQUEST, &q) == SL_PB_OK);
    CHECK(check(REQUEST, &(wire){0}) == SL_PB_OK); /* the empty message */
}

static void test_nul_in_strings(void)
{
    const char *fields[] = {NULL, "id", "type", "key"};
    char want[64];
    for (uint32_t f = 1; f <= 3; f++) {
        wire r = good_record(), q;
        put_bytes(&r, f, "a\0b", 3);
        q = request_of(&r);
        CHECK(check(REQUEST, &q) == SL_PB_BAD_STRING);
        snprintf(want, sizeof(want), "record.%s: must not contain NUL bytes", fields[f]);
        CHECK_STR(msg, want);
    }
}

static void test_invalid_utf8(void)
{
    const char *bad[] = {"\xff", "a\xc3", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wire r = good_record(), q;
        put_str(&r, 3, bad[i]);
        q = request_of(&r);
        CHECK(check(REQUEST, &q) == SL_PB_BAD_STRING);
        CHECK_STR(msg, "record.key: must be valid UTF-8");
    }
    {
        wire r = good_record(), q;
        put_str(&r, 3, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
        q = request_of(&r);
        CHECK(check(REQUEST, &q) == SL_PB_OK);
    }
}

static void test_map_entries(void)
{
    wire r = good_record(), e = {0}, q;
    put_bytes(&e, 1, "k\0", 2);
    put_str(&e, 2, "v");
    put_msg(&r, 5, &e);
    q = request_of(&r);
    CHECK(check(REQUEST, &q) == SL_PB_BAD_STRING);
    CHECK_STR(msg, "record.attributes: a key must not contain NUL bytes");

    r = good_record();
    e = (wire){0};
    put_str(&e, 1, "k");
    put_str(&e, 2, "\xfe");
    put_msg(&r, 5, &e);
    q = request_of(&r);
    CHECK(check(REQUEST, &q) == SL_PB_BAD_STRING);
    CHECK_STR(msg, "record.attributes: a value must be valid UTF-8");
}

static void test_unknown_fields_skipped(void)
{
    wire r = good_record(), q;
    put_bytes(&r, 99, "a\0\xff", 3); /* LEN */
    put_varint(&r, 98 << 3 | 1);     /* fixed64 */
    for (int i = 0; i < 8; i++)
        put_byte(&r, 0);
    put_varint(&r, 97 << 3 | 5); /* fixed32 */
    for (int i = 0; i < 4; i++)
        put_byte(&r, 0xff);
    q = request_of(&r);
    put_bytes(&q, 1000, "\0", 1);
    CHECK(check(REQUEST, &q) == SL_PB_OK);
}

static void test_batch_paths(void)
{
    wire good = good_record(), bad = good_record(), batch = {0};
    put_bytes(&bad, 1, "x\0", 2);
    put_msg(&batch, 1, &good);
    put_msg(&batch, 1, &bad);
    CHECK(check(BATCH, &batch) == SL_PB_BAD_STRING);
    CHECK_STR(msg, "records[1].id: must not contain NUL bytes");
}

typedef struct faults {
    size_t n;
    uint32_t number[8];
    size_t index[8];
    char msg[8][128];
} faults;

static void on_fault(void *closure, uint32_t number, size_t index, const char *m)
{
    faults *f = closure;
    if (f->n < 8) {
        f->number[f->n] = number;
        f->index[f->n] = index;
        snprintf(f->msg[f->n], sizeof(f->msg[0]), "%s", m);
    }
    f->n++;
}

static void test_check_each(void)
{
    wire good = good_record(), bad_id = good_record(), bad_attr = good_record(), e = {0};
    wire batch = {0};
    faults f = {0};

    put_bytes(&bad_id, 1, "x\0", 2);
    put_str(&e, 1, "\x80");
    put_msg(&bad_attr, 5, &e);
    put_msg(&batch, 1, &good);
    put_msg(&batch, 1, &bad_id);
    put_msg(&batch, 1, &good);
    put_msg(&batch, 1, &bad_attr);
    put_msg(&batch, 1, &good);
    CHECK(sl_pb_check_each(BATCH, batch.b, batch.n, on_fault, &f, msg, sizeof(msg)) ==
          SL_PB_BAD_STRING);
    CHECK(f.n == 2);
    CHECK(f.number[0] == 1 && f.index[0] == 1);
    CHECK_STR(f.msg[0], "records[1].id: must not contain NUL bytes");
    CHECK(f.number[1] == 1 && f.index[1] == 3);
    CHECK_STR(f.msg[1], "records[3].attributes: a key must be valid UTF-8");

    f.n = 0;
    batch = (wire){0};
    put_msg(&batch, 1, &good);
    CHECK(sl_pb_check_each(BATCH, batch.b, batch.n, on_fault, &f, msg, sizeof(msg)) == SL_PB_OK);
    CHECK(f.n == 0);
}

static void test_malformed(void)
{
    static const struct {
        const char *bytes;
        size_t len;
        const char *why;
    } cases[] = {
        {"\x0a\x80", 2, "byte 1: truncated varint"},
        {"\x0a\005ab", 4, "byte 1: length 5 past the end"},
        {"\x0b", 1, "byte 0: wire type 3 (groups are not read)"},
        {"\x0c", 1, "byte 0: wire type 4 (groups are not read)"},
        {"\x0e", 1, "byte 0: wire type 6"},
        {"\x00\x01", 2, "byte 0: field number 0"},
        {"\x08\x01", 2, "byte 0: record: wire type 0 where a message belongs"},
        {"\x0a\x02\x0a\x80", 4, "byte 3: truncated varint"},
        {"\x0a\x03\x10\x01\x00", 5, "byte 2: record.type: wire type 0 where a string belongs"},
        {"\x0d\x01\x02", 3, "byte 1: truncated fixed32"},
        {"\x09\x01\x02\x03\x04\x05\x06\x07", 8, "byte 1: truncated fixed64"},
        {"\x78\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11, "byte 1: truncated varint"},
        {"\xf8\xff\xff\xff\xff\x01", 6, "byte 0: truncated varint"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        msg[0] = '\0';
        CHECK(sl_pb_check(REQUEST, (const uint8_t *)cases[i].bytes, cases[i].len, msg,
                          sizeof(msg)) == SL_PB_MALFORMED);
        CHECK_STR(msg, cases[i].why);
    }
}

/* google.protobuf.DescriptorProto nests itself (nested_type = 3): the one
 * recursive message at hand. */
static wire nested(int depth)
{
    wire w = {0};
    for (int i = 0; i < depth; i++) {
        wire outer = {0};
        put_msg(&outer, 3, &w);
        w = outer;
    }
    return w;
}

static void test_depth(void)
{
    const ProtobufCMessageDescriptor *d = &google__protobuf__descriptor_proto__descriptor;
    wire ok = nested(SL_PB_MAX_DEPTH), deep = nested(SL_PB_MAX_DEPTH + 1);
    CHECK(check(d, &ok) == SL_PB_OK);
    CHECK(check(d, &deep) == SL_PB_MALFORMED);
    CHECK(strstr(msg, "nested deeper than 32") != NULL);
}

static void test_small_message_buffer(void)
{
    wire r = good_record(), q;
    char tiny[8];
    put_bytes(&r, 1, "\0", 1);
    q = request_of(&r);
    memset(tiny, 'x', sizeof(tiny));
    CHECK(sl_pb_check(REQUEST, q.b, q.n, tiny, sizeof(tiny)) == SL_PB_BAD_STRING);
    CHECK_STR(tiny, "record.");
    CHECK(sl_pb_check(REQUEST, q.b, q.n, NULL, 0) == SL_PB_BAD_STRING);
}

/* Every prefix and thousands of random corruptions of a batch: the result
 * is one of the three, the message one valid line, and (under ASan) no byte
 * outside the input is read: each input is copied to a buffer of its exact
 * size. */
static void test_any_bytes(void)
{
    wire good = good_record(), bad = good_record(), batch = {0};
    faults f;
    put_bytes(&bad, 3, "\xc3", 1);
    put_msg(&batch, 1, &good);
    put_msg(&batch, 1, &bad);
    put_msg(&batch, 1, &good);
    srandom(7);
    for (size_t round = 0; round < 20000; round++) {
        size_t len = round < batch.n ? round : batch.n;
        uint8_t *copy = malloc(len ? len : 1);
        sl_pb_result r;
        memcpy(copy, batch.b, len);
        if (round >= batch.n) {
            for (int k = random() % 4; k >= 0; k--)
                copy[random() % len] = (uint8_t)random();
            len -= (size_t)random() % 3;
        }
        r = sl_pb_check(BATCH, copy, len, msg, sizeof(msg));
        CHECK(r == SL_PB_OK || r == SL_PB_BAD_STRING || r == SL_PB_MALFORMED);
        CHECK(r == SL_PB_OK || bson_utf8_validate(msg, strlen(msg), false));
        f.n = 0;
        r = sl_pb_check_each(BATCH, copy, len, on_fault, &f, msg, sizeof(msg));
        CHECK(r == SL_PB_OK || r == SL_PB_BAD_STRING || r == SL_PB_MALFORMED);
        CHECK(r != SL_PB_BAD_STRING || f.n > 0);
        free(copy);
    }
}

int main(void)
{
    TEST(test_valid);
    TEST(test_nul_in_strings);
    TEST(test_invalid_utf8);
    TEST(test_map_entries);
    TEST(test_unknown_fields_skipped);
    TEST(test_batch_paths);
    TEST(test_check_each);
    TEST(test_malformed);
    TEST(test_depth);
    TEST(test_small_message_buffer);
    TEST(test_any_bytes);
    return UNIT_RESULT();
}
