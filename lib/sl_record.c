/* sl_record: see sl_record.h.
 *
 * Character rules are checked by hand (they are ASCII classes, cheaper than a
 * regex and clearer in the error); a payload must be JSON by RFC 8259's
 * grammar (sl_json) and then readable by libbson, so that Sluice accepts
 * only what every reader of the stream can parse and what its downstream
 * BSON writers can store. */
#include "sl_record.h"

#include <bson/bson.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_grpc_codes.h"
#include "sl_json.h"
#include "sl_time.h"
#include "sl_utf8.h"

void sl_record_limits_default(sl_record_limits *lim)
{
    lim->max_payload_bytes = 1024 * 1024;
    lim->max_key_bytes = 1024;
    lim->max_attributes = 64;
    lim->max_attribute_bytes = 4096;
}

bool sl_record_id_valid(const char *id)
{
    size_t n = 0;
    for (const char *p = id; *p; p++, n++) {
        char c = *p;
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok || n >= SL_RECORD_ID_MAX)
            return false;
    }
    return n > 0;
}

bool sl_record_type_valid(const char *type)
{
    size_t n = 0, token = 0;
    for (const char *p = type; *p; p++, n++) {
        char c = *p;
        if (n >= SL_RECORD_TYPE_MAX)
            return false;
        if (c == '.') {
            if (token == 0)
                return false;
            token = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
        token++;
    }
    return n > 0 && token > 0;
}

static bool is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool sl_record_payload_is_object(const uint8_t *payload, size_t len, char *why, size_t whylen)
{
    bson_error_t error;
    bson_t doc;
    size_t i = 0;

    if (!bson_utf8_validate((const char *)payload, len, false)) {
        snprintf(why, whylen, "not valid UTF-8");
        return false;
    }
    while (i < len && is_space(payload[i]))
        i++;
    if (i == len || payload[i] != '{') {
        snprintf(why, whylen, "not a JSON object");
        return false;
    }
    /* libbson's reader is lenient (see sl_json.h): the grammar first, then
     * what BSON can hold. */
    if (!sl_json_valid(payload, len, why, whylen))
        return false;
    if (!bson_init_from_json(&doc, (const char *)payload + i, (ssize_t)(len - i), &error)) {
        snprintf(why, whylen, "%s", error.message);
        return false;
    }
    bson_destroy(&doc);
    return true;
}

static bool has_control(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return true;
    }
    return false;
}

/* The field-by-field checks; each returns 0 or a status code with msg set. */
static int check_id_type(const Sluice__V1__Record *r, const char *where, char *msg, size_t len)
{
    if (r->id[0] != '\0' && !sl_record_id_valid(r->id)) {
        snprintf(msg, len, "%s.id: must be 1 to 128 characters of [A-Za-z0-9._:-] (or empty "
                 "for a server-assigned id)", where);
        return SL_GRPC_INVALID_ARGUMENT;
    }
    if (r->type[0] == '\0') {
        snprintf(msg, len, "%s.type: required", where);
        return SL_GRPC_INVALID_ARGUMENT;
    }
    if (!sl_record_type_valid(r->type)) {
        snprintf(msg, len, "%s.type: must be dot-separated lowercase tokens of [a-z0-9_-]+, at "
                 "most 128 characters (e.g. order.created)", where);
        return SL_GRPC_INVALID_ARGUMENT;
    }
    return 0;
}

static int check_key(const Sluice__V1__Record *r, const sl_record_limits *lim, const char *where,
                     char *msg, size_t len)
{
    size_t n = strlen(r->key);
    if (n > lim->max_key_bytes) {
        snprintf(msg, len, "%s.key: must be at most %zu bytes", where, lim->max_key_bytes);
        return SL_GRPC_INVALID_ARGUMENT;
    }
    if (!bson_utf8_validate(r->key, n, false) || has_control(r->key)) {
        snprintf(msg, len, "%s.key: must be UTF-8 text without control characters", where);
        return SL_GRPC_INVALID_ARGUMENT;
    }
    return 0;
}

static int check_payload(const Sluice__V1__Record *r, const sl_record_limits *lim,
                         const char *where, char *msg, size_t len)
{
    char why[256];
    if (r->payload.len == 0) {
        snprintf(msg, len, "%s.payload: required (a UTF-8 JSON object)", where);
        return SL_GRPC_INVALID_ARGUMENT;
    }
    if (r->payload.len > lim->max_payload_bytes) {
        snprintf(msg, len, "%s.payload: %zu bytes exceeds the limit of %zu bytes", where,
                 r->payload.len, lim->max_payload_bytes);
        return SL_GRPC_RESOURCE_EXHAUSTED;
    }
    if (!sl_record_payload_is_object(r->payload.data, r->payload.len, why, sizeof(why))) {
        snprintf(msg, len, "%s.payload: must be a UTF-8 JSON object (%s)", where, why);
        return SL_GRPC_INVALID_ARGUMENT;
    }
    return 0;
}

static int check_attributes(const Sluice__V1__Record *r, const sl_record_limits *lim,
                            const char *where, char *msg, size_t len)
{
    if (r->n_attributes > lim->max_attributes) {
        snprintf(msg, len, "%s.attributes: at most %zu entries", where, lim->max_attributes);
        return SL_GRPC_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < r->n_attributes; i++) {
        const char *k = r->attributes[i]->key, *v = r->attributes[i]->value;
        size_t kn = strlen(k), vn = strlen(v);
        if (kn == 0) {
            snprintf(msg, len, "%s.attributes: keys must not be empty", where);
            return SL_GRPC_INVALID_ARGUMENT;
        }
        if (kn > lim->max_attribute_bytes || vn > lim->max_attribute_bytes) {
            char quoted[65]; /* up to 64 bytes of the key, whole characters */
            sl_utf8_copy(quoted, sizeof(quoted), k, kn);
            snprintf(msg, len, "%s.attributes[\"%s\"]: key and value must be at most %zu "
                     "bytes each", where, quoted, lim->max_attribute_bytes);
            return SL_GRPC_INVALID_ARGUMENT;
        }
        if (!bson_utf8_validate(k, kn, false) || !bson_utf8_validate(v, vn, false)) {
            snprintf(msg, len, "%s.attributes: keys and values must be UTF-8", where);
            return SL_GRPC_INVALID_ARGUMENT;
        }
    }
    return 0;
}

static int check_event_time(const Sluice__V1__Record *r, const char *where, char *msg,
                            size_t len)
{
    /* google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to
     * 9999-12-31T23:59:59.999999999Z. */
    const int64_t min_s = -62135596800LL, max_s = 253402300799LL;
    const Google__Protobuf__Timestamp *t = r->event_time;
    if (t == NULL)
        return 0;
    if (t->nanos < 0 || t->nanos > 999999999) {
        snprintf(msg, len, "%s.event_time.nanos: must be in [0, 999999999]", where);
        return SL_GRPC_INVALID_ARGUMENT;
    }
    if (t->seconds < min_s || t->seconds > max_s) {
        snprintf(msg, len, "%s.event_time.seconds: must be between 0001-01-01 and 9999-12-31",
                 where);
        return SL_GRPC_INVALID_ARGUMENT;
    }
    return 0;
}

int sl_record_validate(const Sluice__V1__Record *r, const sl_record_limits *lim,
                       const char *where, char *msg, size_t msglen)
{
    int code;
    if (r == NULL) {
        snprintf(msg, msglen, "%s: required", where);
        return SL_GRPC_INVALID_ARGUMENT;
    }
    if ((code = check_id_type(r, where, msg, msglen)) != 0)
        return code;
    if ((code = check_key(r, lim, where, msg, msglen)) != 0)
        return code;
    if ((code = check_attributes(r, lim, where, msg, msglen)) != 0)
        return code;
    if ((code = check_event_time(r, where, msg, msglen)) != 0)
        return code;
    return check_payload(r, lim, where, msg, msglen);
}

/* Random bytes from OpenSSL, drawn 4 KiB at a time per thread: one
 * RAND_bytes call per 409 ids instead of one per id. */
static void random_bytes(uint8_t *out, size_t n)
{
    static _Thread_local uint8_t pool[4096];
    static _Thread_local size_t left;
    if (left < n) {
        if (RAND_bytes(pool, sizeof(pool)) != 1) {
            /* only without entropy; ids need uniqueness, not secrecy */
            for (size_t i = 0; i < sizeof(pool); i++)
                pool[i] = (uint8_t)random();
        }
        left = sizeof(pool);
    }
    memcpy(out, pool + sizeof(pool) - left, n);
    left -= n;
}

void sl_uuid_v7(char out[SL_UUID_LEN])
{
    uint8_t b[16];
    uint64_t ms = (uint64_t)(sl_time_now_ns() / 1000000);

    random_bytes(b + 6, 10);
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)(ms >> (40 - 8 * i));
    b[6] = (uint8_t)(0x70 | (b[6] & 0x0f));
    b[8] = (uint8_t)(0x80 | (b[8] & 0x3f));
    snprintf(out, SL_UUID_LEN,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

/* ---- the stored message ------------------------------------------------ */

/* Sizes computed from limits saturate at SIZE_MAX rather than wrap. */
static size_t add(size_t a, size_t b)
{
    size_t r;
    return __builtin_add_overflow(a, b, &r) ? SIZE_MAX : r;
}

static size_t mul(size_t a, size_t b)
{
    size_t r;
    return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}

/* Bytes of a base-128 varint holding v. */
static size_t varint_bytes(uint64_t v)
{
    size_t n = 1;
    for (; v >= 0x80; v >>= 7)
        n++;
    return n;
}

/* Bytes of a length-delimited field of len bytes with a field number below
 * 16 (a one-byte tag), as every Record field has. */
static size_t field_bytes(size_t len)
{
    return add(1 + varint_bytes(len), len);
}

/* Bytes of one "name: value\r\n" header line. */
static size_t header_bytes(const char *name, size_t value_len)
{
    return add(strlen(name) + 4, value_len);
}

size_t sl_record_max_msg_bytes(const sl_record_limits *lim)
{
    /* Timestamp: seconds (negative: a 10-byte varint), nanos (5 bytes). */
    const size_t event_time = field_bytes(1 + 10 + 1 + 5);
    const size_t entry = field_bytes(mul(2, field_bytes(lim->max_attribute_bytes)));
    const size_t received_at = sizeof("2006-01-02T15:04:05.000000000Z") - 1;
    const size_t fixed_headers = sizeof("NATS/1.0\r\n") - 1 +
                                 header_bytes(SL_HDR_MSG_ID, SL_RECORD_ID_MAX) +
                                 header_bytes(SL_HDR_TYPE, SL_RECORD_TYPE_MAX) +
                                 header_bytes(SL_HDR_RECEIVED_AT, received_at) +
                                 header_bytes(SL_HDR_TRACEPARENT, SL_TRACEPARENT_MAX) +
                                 header_bytes(SL_HDR_PRINCIPAL, SL_PRINCIPAL_MAX - 1) + 2;
    size_t n = field_bytes(SL_RECORD_ID_MAX) + field_bytes(SL_RECORD_TYPE_MAX) + event_time +
               fixed_headers;

    n = add(n, field_bytes(lim->max_key_bytes));
    n = add(n, header_bytes(SL_HDR_KEY, lim->max_key_bytes));
    n = add(n, field_bytes(lim->max_payload_bytes));
    return add(n, mul(lim->max_attributes, entry));
}

/* Packs the stored form of r, with id in place of its own: a new Record of
 * r's known fields, pointing into r. protobuf-c keeps the unknown fields of
 * what it unpacked (in the record, in event_time, in each attribute entry)
 * and packs them back, so packing the client's record itself would store
 * whatever a client adds beside the fields, unchecked and unbounded. */
static uint8_t *pack_known(const Sluice__V1__Record *r, const char *id, size_t *len)
{
    Sluice__V1__Record rec;
    Google__Protobuf__Timestamp time;
    Sluice__V1__Record__AttributesEntry *entries = NULL, **list = NULL;
    uint8_t *buf = NULL;

    sluice__v1__record__init(&rec);
    rec.id = (char *)id;
    rec.type = r->type;
    rec.key = r->key;
    rec.payload = r->payload;
    if (r->event_time != NULL) {
        google__protobuf__timestamp__init(&time);
        time.seconds = r->event_time->seconds;
        time.nanos = r->event_time->nanos;
        rec.event_time = &time;
    }
    if (r->n_attributes > 0) {
        entries = calloc(r->n_attributes, sizeof(*entries));
        list = calloc(r->n_attributes, sizeof(*list));
        if (entries == NULL || list == NULL)
            goto done;
        for (size_t i = 0; i < r->n_attributes; i++) {
            sluice__v1__record__attributes_entry__init(&entries[i]);
            entries[i].key = r->attributes[i]->key;
            entries[i].value = r->attributes[i]->value;
            list[i] = &entries[i];
        }
        rec.n_attributes = r->n_attributes;
        rec.attributes = list;
    }
    *len = sluice__v1__record__get_packed_size(&rec);
    buf = malloc(*len ? *len : 1);
    if (buf != NULL)
        sluice__v1__record__pack(&rec, buf);
done:
    free(list);
    free(entries);
    return buf;
}

natsStatus sl_record_to_msg(natsMsg **out, const Sluice__V1__Record *r, const char *id,
                            int64_t received_ns, const char *traceparent,
                            const char *principal)
{
    char subject[sizeof(SL_SUBJECT_PREFIX) + SL_RECORD_TYPE_MAX];
    char received[SL_RFC3339_LEN];
    natsMsg *msg = NULL;
    natsStatus s;
    size_t len = 0;
    uint8_t *body = pack_known(r, id, &len);

    if (body == NULL)
        return NATS_NO_MEMORY;
    snprintf(subject, sizeof(subject), SL_SUBJECT_PREFIX "%s", r->type);
    sl_time_rfc3339(received_ns, received, sizeof(received));

    s = natsMsg_Create(&msg, subject, NULL, (const char *)body, (int)len);
    free(body);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(msg, SL_HDR_MSG_ID, id);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(msg, SL_HDR_TYPE, r->type);
    if (s == NATS_OK && r->key[0] != '\0')
        s = natsMsgHeader_Set(msg, SL_HDR_KEY, r->key);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(msg, SL_HDR_RECEIVED_AT, received);
    if (s == NATS_OK && principal != NULL && principal[0] != '\0')
        s = natsMsgHeader_Set(msg, SL_HDR_PRINCIPAL, principal);
    if (s == NATS_OK && traceparent != NULL && traceparent[0] != '\0')
        s = natsMsgHeader_Set(msg, SL_HDR_TRACEPARENT, traceparent);
    if (s != NATS_OK) {
        natsMsg_Destroy(msg);
        return s;
    }
    *out = msg;
    return NATS_OK;
}
