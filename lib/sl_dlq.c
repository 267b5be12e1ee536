/* sl_dlq: see sl_dlq.h. */
#include "sl_dlq.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sl_consumer.h"
#include "sl_log.h"
#include "sl_pull.h"
#include "sl_record.h"

#define DLQ_SUBJECTS SL_DLQ_SUBJECT_PREFIX ">"
#define DUPLICATE_WINDOW_NS (120LL * 1000000000LL)
#define ATTEMPTS 3

/* ---- the letter --------------------------------------------------------- */

static bool subject_tail_valid(const char *t)
{
    bool token_start = true;

    if (t == NULL || *t == '\0')
        return false;
    for (; *t != '\0'; t++) {
        if (*t == '.') {
            if (token_start)
                return false;
            token_start = true;
            continue;
        }
        if (*t <= ' ' || *t == '*' || *t == '>' || (unsigned char)*t >= 0x7f)
            return false;
        token_start = false;
    }
    return !token_start;
}

void sl_dlq_subject(const char *consumer, const char *type, char *out, size_t len)
{
    snprintf(out, len, SL_DLQ_SUBJECT_PREFIX "%s.%s", consumer,
             subject_tail_valid(type) ? type : "unknown");
}

/* A header value on one line, short enough for any server limit. */
static void header_text(const char *in, char *out, size_t len)
{
    size_t i = 0;
    for (; in[i] != '\0' && i + 1 < len; i++)
        out[i] = (in[i] == '\r' || in[i] == '\n') ? ' ' : in[i];
    out[i] = '\0';
}

static natsStatus headers_copy(natsMsg *dst, natsMsg *src)
{
    const char **keys = NULL;
    int nkeys = 0;
    natsStatus s = natsMsgHeader_Keys(src, &keys, &nkeys);

    if (s == NATS_NOT_FOUND)
        return NATS_OK;
    for (int k = 0; s == NATS_OK && k < nkeys; k++) {
        const char **values = NULL;
        int nvalues = 0;
        if (strncasecmp(keys[k], "Nats-", 5) == 0)
            continue;
        s = natsMsgHeader_Values(src, keys[k], &values, &nvalues);
        for (int v = 0; s == NATS_OK && v < nvalues; v++)
            s = natsMsgHeader_Add(dst, keys[k], values[v]);
        free((void *)values);
    }
    free((void *)keys);
    return s;
}

natsStatus sl_dlq_msg(natsMsg **out, const sl_dlq_letter *l)
{
    char subject[512], seq[32], id[512], text[1024], key[SL_DELIVERY_KEY_LEN];
    const char *record_id = NULL;
    natsStatus s;

    natsMsgHeader_Get(l->original, SL_HDR_MSG_ID, &record_id);
    sl_dlq_subject(l->consumer, l->type, subject, sizeof(subject));
    snprintf(seq, sizeof(seq), "%" PRIu64, l->stream_seq);
    sl_delivery_key(l->stream, l->stream_seq, l->stream_time_ns, key, sizeof(key));
    snprintf(id, sizeof(id), "%s:%s", l->consumer, key);
    header_text(l->error, text, sizeof(text));
    s = natsMsg_Create(out, subject, NULL, natsMsg_GetData(l->original),
                       natsMsg_GetDataLength(l->original));
    if (s == NATS_OK)
        s = headers_copy(*out, l->original);
    if (s == NATS_OK && record_id != NULL)
        s = natsMsgHeader_Set(*out, SL_HDR_RECORD_ID, record_id);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(*out, SL_HDR_MSG_ID, id);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(*out, SL_HDR_ERROR, text);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(*out, SL_HDR_CONSUMER, l->consumer);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(*out, SL_HDR_STREAM_SEQ, seq);
    if (s != NATS_OK) {
        natsMsg_Destroy(*out);
        *out = NULL;
    }
    return s;
}

/* ---- the stream --------------------------------------------------------- */

static int64_t replicas_of(jsCtx *js, const char *stream)
{
    jsStreamInfo *si = NULL;
    int64_t replicas = 1;

    if (js_GetStreamInfo(&si, js, stream, NULL, NULL) == NATS_OK && si->Config->Replicas > 0)
        replicas = si->Config->Replicas;
    jsStreamInfo_Destroy(si);
    return replicas;
}

static natsStatus stream_create(jsCtx *js, const char *main_stream)
{
    const char *subjects[1] = {DLQ_SUBJECTS};
    jsStreamConfig sc;
    jsErrCode jerr = 0;
    natsStatus s;

    jsStreamConfig_Init(&sc);
    sc.Name = SL_DLQ_STREAM;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Retention = js_LimitsPolicy;
    sc.Replicas = replicas_of(js, main_stream);
    sc.Duplicates = DUPLICATE_WINDOW_NS;
    s = js_AddStream(NULL, js, &sc, NULL, &jerr);
    if (s == NATS_OK)
        sl_log(SL_LOG_INFO, "created stream %s (subjects %s, replicas %lld)", SL_DLQ_STREAM,
               DLQ_SUBJECTS, (long long)sc.Replicas);
    else if (jerr == JSStreamNameExistErr)
        s = NATS_OK; /* another replica was first */
    else
        sl_log(SL_LOG_WARN, "creating stream %s failed: %s (error %d)", SL_DLQ_STREAM,
               nats_GetLastError(NULL), (int)jerr);
    return s;
}

bool sl_dlq_ensure(jsCtx *js, const char *main_stream)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, js, SL_DLQ_STREAM, NULL, &jerr);
    bool ok = s == NATS_OK;

    if (ok) {
        const jsStreamConfig *sc = si->Config;
        bool covers = false;
        for (int i = 0; i < sc->SubjectsLen; i++)
            covers = covers || strcmp(sc->Subjects[i], DLQ_SUBJECTS) == 0;
        if (!covers)
            sl_log(SL_LOG_WARN, "stream %s exists without subjects %s; keeping it", SL_DLQ_STREAM,
                   DLQ_SUBJECTS);
    } else if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
        ok = stream_create(js, main_stream) == NATS_OK;
    }
    jsStreamInfo_Destroy(si);
    return ok;
}

/* ---- publishing --------------------------------------------------------- */

static void letter_log(const sl_dlq_letter *l, uint64_t deliveries, const jsPubAck *pa)
{
    const char *id = NULL;
    bson_t *f = sl_log_begin(SL_LOG_WARN, "dead-lettered");

    if (f == NULL)
        return;
    natsMsgHeader_Get(l->original, SL_HDR_MSG_ID, &id);
    BSON_APPEND_UTF8(f, "consumer", l->consumer);
    BSON_APPEND_INT64(f, "stream_seq", (int64_t)l->stream_seq);
    BSON_APPEND_INT64(f, "deliveries", (int64_t)deliveries);
    BSON_APPEND_UTF8(f, "record_id", id != NULL ? id : "");
    BSON_APPEND_UTF8(f, "type", l->type != NULL ? l->type : "");
    BSON_APPEND_UTF8(f, "error", l->error);
    BSON_APPEND_UTF8(f, "dlq_stream", pa->Stream);
    BSON_APPEND_INT64(f, "dlq_seq", (int64_t)pa->Sequence);
    sl_log_end(f);
}

bool sl_dlq_publish(jsCtx *js, natsConnection *nc, const sl_dlq_letter *l, uint64_t deliveries)
{
    natsStatus s = NATS_ERR;

    for (int attempt = 0; attempt < ATTEMPTS && s != NATS_OK; attempt++) {
        natsMsg *m = NULL;
        jsPubAck *pa = NULL;
        jsErrCode jerr = 0;

        if (attempt > 0) {
            sl_pull_in_progress(nc, l->original);
            sl_dlq_ensure(js, l->stream);
            nats_Sleep(1000);
        }
        s = sl_dlq_msg(&m, l);
        if (s == NATS_OK)
            s = js_PublishMsg(&pa, js, m, NULL, &jerr);
        if (s == NATS_OK)
            letter_log(l, deliveries, pa);
        else
            sl_log(SL_LOG_ERROR, "publishing to %s failed (stream seq %" PRIu64 "): %s",
                   SL_DLQ_STREAM, l->stream_seq, nats_GetLastError(NULL));
        jsPubAck_Destroy(pa);
        natsMsg_Destroy(m);
    }
    return s == NATS_OK;
}
