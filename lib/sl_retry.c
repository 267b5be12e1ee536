/* sl_retry: see sl_retry.h. */
#include "sl_retry.h"

#include <stdlib.h>
#include <string.h>

void sl_retry_attach(Google__Rpc__Status *status, sl_retry_detail *d, int64_t retry_ms)
{
    size_t len;

    if (retry_ms <= 0)
        return;
    google__protobuf__duration__init(&d->delay);
    d->delay.seconds = retry_ms / 1000;
    d->delay.nanos = (int32_t)(retry_ms % 1000) * 1000000;
    google__rpc__retry_info__init(&d->info);
    d->info.retry_delay = &d->delay;
    len = google__rpc__retry_info__get_packed_size(&d->info);
    if (len > sizeof(d->packed))
        return; /* cannot happen: a Duration is at most 22 bytes */
    google__rpc__retry_info__pack(&d->info, d->packed);
    google__protobuf__any__init(&d->any);
    d->any.type_url = (char *)SL_RETRY_INFO_TYPE_URL;
    d->any.value.data = d->packed;
    d->any.value.len = len;
    d->list[0] = &d->any;
    status->n_details = 1;
    status->details = d->list;
}

grpc_slice sl_retry_status_details(int code, const char *message, int64_t retry_ms)
{
    Google__Rpc__Status st;
    sl_retry_detail d;
    grpc_slice out;

    google__rpc__status__init(&st);
    st.code = code;
    st.message = (char *)(message != NULL ? message : "");
    sl_retry_attach(&st, &d, retry_ms);
    out = grpc_slice_malloc(google__rpc__status__get_packed_size(&st));
    google__rpc__status__pack(&st, GRPC_SLICE_START_PTR(out));
    return out;
}

int64_t sl_retry_delay_ms(const uint8_t *status, size_t len)
{
    Google__Rpc__Status *st = google__rpc__status__unpack(NULL, len, status);
    int64_t ms = -1;

    for (size_t i = 0; st != NULL && i < st->n_details && ms < 0; i++) {
        const Google__Protobuf__Any *a = st->details[i];
        Google__Rpc__RetryInfo *ri;
        if (a->type_url == NULL || strcmp(a->type_url, SL_RETRY_INFO_TYPE_URL) != 0)
            continue;
        ri = google__rpc__retry_info__unpack(NULL, a->value.len, a->value.data);
        if (ri != NULL && ri->retry_delay != NULL)
            ms = ri->retry_delay->seconds * 1000 + ri->retry_delay->nanos / 1000000;
        google__rpc__retry_info__free_unpacked(ri, NULL);
    }
    if (st != NULL)
        google__rpc__status__free_unpacked(st, NULL);
    return ms;
}
