/* sl_lag: see sl_lag.h. */
#include "sl_lag.h"

#include <stdbool.h>

/* The stream timestamp of the first message at or after seq, trying the
 * stream's first sequence when seq itself is gone (deleted, or below what
 * the stream still holds). */
static bool oldest_time(jsCtx *ctx, const char *stream, uint64_t seq, int64_t *ns)
{
    jsStreamInfo *si = NULL;
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetMsg(&m, ctx, stream, seq, NULL, &jerr);

    if (s != NATS_OK && js_GetStreamInfo(&si, ctx, stream, NULL, NULL) == NATS_OK) {
        uint64_t first = si->State.FirstSeq;
        jsStreamInfo_Destroy(si);
        if (first > seq)
            s = js_GetMsg(&m, ctx, stream, first, NULL, &jerr);
    }
    if (s != NATS_OK)
        return false;
    *ns = natsMsg_GetTime(m);
    natsMsg_Destroy(m);
    return true;
}

natsStatus sl_lag_from_info(jsCtx *ctx, const char *stream, const jsConsumerInfo *ci,
                            int64_t now_ns, sl_lag *out)
{
    int64_t ts = 0;

    out->pending = ci->NumPending;
    out->ack_pending = ci->NumAckPending > 0 ? (uint64_t)ci->NumAckPending : 0;
    out->redelivered = ci->NumRedelivered > 0 ? (uint64_t)ci->NumRedelivered : 0;
    out->oldest_age_s = 0;
    if (out->pending == 0 && out->ack_pending == 0)
        return NATS_OK;
    if (!oldest_time(ctx, stream, ci->AckFloor.Stream + 1, &ts))
        return NATS_NOT_FOUND;
    if (now_ns > ts)
        out->oldest_age_s = (double)(now_ns - ts) / 1e9;
    return NATS_OK;
}

natsStatus sl_lag_read(jsCtx *ctx, const char *stream, const char *consumer, int64_t now_ns,
                       sl_lag *out)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, ctx, stream, consumer, NULL, &jerr);

    if (s == NATS_OK)
        s = sl_lag_from_info(ctx, stream, ci, now_ns, out);
    jsConsumerInfo_Destroy(ci);
    return s;
}

double sl_lag_stream_max_age_s(jsCtx *ctx, const char *stream)
{
    jsStreamInfo *si = NULL;
    double age = -1;

    if (js_GetStreamInfo(&si, ctx, stream, NULL, NULL) == NATS_OK) {
        age = (double)si->Config->MaxAge / 1e9;
        jsStreamInfo_Destroy(si);
    }
    return age;
}
