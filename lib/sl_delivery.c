/* sl_delivery: what a build callback can read of one message (see
 * sl_consumer.h): its headers, the record in its body, the record's id, type
 * and receive time, each with the fallback the stream offers when a header
 * is missing. Pure; nothing here allocates except sl_delivery_record. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sl_consumer.h"
#include "sl_record.h"
#include "sl_time.h"

const char *sl_delivery_header(const sl_delivery *d, const char *name)
{
    const char *v = NULL;
    if (d->msg == NULL || natsMsgHeader_Get(d->msg, name, &v) != NATS_OK)
        return NULL;
    return v;
}

Sluice__V1__Record *sl_delivery_record(const sl_delivery *d, char *err, size_t errlen)
{
    Sluice__V1__Record *r = sluice__v1__record__unpack(NULL, d->len, d->data);
    if (r == NULL)
        snprintf(err, errlen, "body is not a protobuf sluice.v1.Record (%zu bytes)", d->len);
    return r;
}

const char *sl_delivery_record_id(const sl_delivery *d, const Sluice__V1__Record *r)
{
    const char *id = sl_delivery_header(d, SL_HDR_MSG_ID);
    if (r != NULL && r->id != NULL && r->id[0] != '\0')
        return r->id;
    return id != NULL && id[0] != '\0' ? id : NULL;
}

int64_t sl_delivery_received_ns(const sl_delivery *d)
{
    const char *text = sl_delivery_header(d, SL_HDR_RECEIVED_AT);
    int64_t ns;
    if (text != NULL && sl_time_parse_rfc3339(text, &ns))
        return ns;
    return d->stream_time_ns;
}

const char *sl_delivery_type(const sl_delivery *d)
{
    const char *t = sl_delivery_header(d, SL_HDR_TYPE);
    size_t plen = strlen(SL_SUBJECT_PREFIX);

    if (t != NULL && *t != '\0')
        return t;
    if (d->subject != NULL && strncmp(d->subject, SL_SUBJECT_PREFIX, plen) == 0)
        return d->subject + plen;
    return NULL;
}

void sl_delivery_key(const char *stream, uint64_t seq, int64_t stored_ns, char *out, size_t len)
{
    char at[SL_RFC3339_LEN];

    sl_time_rfc3339(stored_ns, at, sizeof(at));
    snprintf(out, len, "%s:%" PRIu64 ":%s", stream != NULL ? stream : "", seq, at);
}
