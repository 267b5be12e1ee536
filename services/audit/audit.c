/* audit: see audit.h. */
#include "audit.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "sl_record.h"

bool audit_sha256_hex(const uint8_t *data, size_t len, char out[AUDIT_SHA256_HEX_LEN])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    out[0] = '\0';
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        return false;
    for (unsigned int i = 0; i < mdlen; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 0xf];
    }
    out[2 * mdlen] = '\0';
    return true;
}

static void append_text_or_null(bson_t *doc, const char *key, const char *value)
{
    if (value != NULL && value[0] != '\0' && bson_utf8_validate(value, strlen(value), false))
        bson_append_utf8(doc, key, -1, value, -1);
    else
        bson_append_null(doc, key, -1);
}

static bool entry_append(bson_t *doc, const sl_delivery *d, const Sluice__V1__Record *rec,
                         int64_t now_ns, char *err, size_t errlen)
{
    char id[SL_DELIVERY_KEY_LEN], sha[AUDIT_SHA256_HEX_LEN];

    if (!audit_sha256_hex(rec->payload.data, rec->payload.len, sha)) {
        snprintf(err, errlen, "SHA-256 of the payload failed");
        return false;
    }
    sl_delivery_key(d->stream, d->stream_seq, d->stream_time_ns, id, sizeof(id));
    BSON_APPEND_UTF8(doc, "_id", id);
    append_text_or_null(doc, "stream", d->stream);
    BSON_APPEND_INT64(doc, "stream_seq", (int64_t)d->stream_seq);
    append_text_or_null(doc, "record_id", sl_delivery_record_id(d, rec));
    append_text_or_null(doc, "type", rec->type[0] != '\0' ? rec->type : sl_delivery_type(d));
    append_text_or_null(doc, "key", rec->key);
    BSON_APPEND_UTF8(doc, "payload_sha256", sha);
    BSON_APPEND_INT64(doc, "payload_bytes", (int64_t)rec->payload.len);
    append_text_or_null(doc, "principal", sl_delivery_header(d, SL_HDR_PRINCIPAL));
    BSON_APPEND_DATE_TIME(doc, "received_at", sl_delivery_received_ns(d) / 1000000);
    BSON_APPEND_DATE_TIME(doc, "audited_at", now_ns / 1000000);
    BSON_APPEND_INT64(doc, "deliveries", (int64_t)d->deliveries);
    return true;
}

bool audit_entry_build(const sl_delivery *d, int64_t now_ns, bson_t *doc, char *err, size_t errlen)
{
    Sluice__V1__Record *rec = sl_delivery_record(d, err, errlen);
    bool ok;

    if (rec == NULL)
        return false;
    ok = entry_append(doc, d, rec, now_ns, err, errlen);
    sluice__v1__record__free_unpacked(rec, NULL);
    return ok;
}
