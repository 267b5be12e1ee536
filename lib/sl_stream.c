/* sl_stream: see sl_stream.h. */
#include "sl_stream.h"

#include <stdio.h>
#include <string.h>

#include "sl_log.h"
#include "sl_metrics.h"

#define NS_PER_MS 1000000LL

/* Milliseconds to nanoseconds, saturating instead of overflowing. */
static int64_t ms_to_ns(int64_t ms)
{
    if (ms > INT64_MAX / NS_PER_MS)
        return INT64_MAX;
    if (ms < INT64_MIN / NS_PER_MS)
        return INT64_MIN;
    return ms * NS_PER_MS;
}

void sl_stream_config_fill(const sl_stream_config *cfg, const char **subjects,
                           jsStreamConfig *out)
{
    jsStreamConfig_Init(out);
    subjects[0] = cfg->subjects;
    out->Name = cfg->name;
    out->Subjects = subjects;
    out->SubjectsLen = 1;
    out->Storage = js_FileStorage;
    out->Retention = js_LimitsPolicy;
    out->Discard = cfg->discard_new ? js_DiscardNew : js_DiscardOld;
    out->Replicas = cfg->replicas;
    out->Duplicates = ms_to_ns(cfg->duplicate_window_ms);
    out->MaxAge = ms_to_ns(cfg->max_age_ms);
    out->MaxBytes = cfg->max_bytes;
}

/* ---- compare and plan (pure) -------------------------------------------- */

static void diff_add(sl_stream_diff *diffs, int *n, const char *setting, int64_t configured,
                     int64_t existing, bool update)
{
    if (*n >= SL_STREAM_MAX_DIFFS)
        return;
    diffs[(*n)++] = (sl_stream_diff){setting, configured, existing, update};
}

int sl_stream_plan(const sl_stream_config *cfg, const jsStreamConfig *have, jsStreamConfig *want,
                   sl_stream_diff *diffs)
{
    const char *subjects[1];
    jsStreamConfig target;
    unsigned g = cfg->given;
    int n = 0;
    bool u;

    sl_stream_config_fill(cfg, subjects, &target);
    *want = *have;
    if (have->Storage != target.Storage)
        diff_add(diffs, &n, "storage_is_file", 1, 0, false);
    if (have->Retention != target.Retention)
        diff_add(diffs, &n, "retention_is_limits", 1, 0, false);
    if (have->Replicas != target.Replicas) {
        u = (g & SL_STREAM_GIVEN_REPLICAS) != 0;
        diff_add(diffs, &n, "replicas", target.Replicas, have->Replicas, u);
        if (u)
            want->Replicas = target.Replicas;
    }
    if (have->Duplicates != target.Duplicates) {
        u = (g & SL_STREAM_GIVEN_DUPLICATES) != 0;
        diff_add(diffs, &n, "duplicate_window_ms", target.Duplicates / NS_PER_MS,
                 have->Duplicates / NS_PER_MS, u);
        if (u)
            want->Duplicates = target.Duplicates;
    }
    if (have->MaxAge != target.MaxAge) {
        u = (g & SL_STREAM_GIVEN_MAX_AGE) != 0;
        diff_add(diffs, &n, "max_age_ms", target.MaxAge / NS_PER_MS, have->MaxAge / NS_PER_MS, u);
        if (u)
            want->MaxAge = target.MaxAge;
    }
    if (have->MaxBytes != target.MaxBytes) {
        u = (g & SL_STREAM_GIVEN_MAX_BYTES) != 0;
        diff_add(diffs, &n, "max_bytes", target.MaxBytes, have->MaxBytes, u);
        if (u)
            want->MaxBytes = target.MaxBytes;
    }
    if (have->Discard != target.Discard) {
        u = (g & SL_STREAM_GIVEN_DISCARD) != 0;
        diff_add(diffs, &n, "discard_new", target.Discard == js_DiscardNew,
                 have->Discard == js_DiscardNew, u);
        if (u)
            want->Discard = target.Discard;
    }
    return n;
}

/* ---- talking to JetStream ------------------------------------------------- */

static sl_series *created_series(const char *reason)
{
    return sl_metric_with(sl_metric_counter("sluice_ingest_stream_created_total",
                                            "Times this process created the record stream: "
                                            "\"new\" when it had never seen it, \"recreated\" "
                                            "when it had existed and was deleted",
                                            "reason"),
                          reason, NULL);
}

static void diff_log(const sl_stream_config *cfg, const sl_stream_diff *d, bool updated)
{
    bson_t *f;

    if (d->update && updated)
        f = sl_log_begin(SL_LOG_INFO, "stream setting updated to the configured value");
    else if (d->update)
        f = sl_log_begin(SL_LOG_ERROR, "stream setting could not be updated; keeping it");
    else
        f = sl_log_begin(SL_LOG_WARN, "stream exists with other settings; keeping them (give the "
                                      "flag explicitly to change a setting JetStream can change)");
    if (f == NULL)
        return;
    BSON_APPEND_UTF8(f, "stream", cfg->name);
    BSON_APPEND_UTF8(f, "setting", d->setting);
    BSON_APPEND_INT64(f, "configured", d->configured);
    BSON_APPEND_INT64(f, "existing", d->existing);
    sl_log_end(f);
}

/* Brings an existing stream to the configured settings where allowed. */
static void reconcile(jsCtx *ctx, const sl_stream_config *cfg, const jsStreamConfig *have)
{
    sl_stream_diff diffs[SL_STREAM_MAX_DIFFS];
    jsStreamConfig want;
    jsErrCode jerr = 0;
    bool any_update = false, updated = false;
    bool subjects_match =
        have->SubjectsLen == 1 && strcmp(have->Subjects[0], cfg->subjects) == 0;
    int n = sl_stream_plan(cfg, have, &want, diffs);

    if (!subjects_match)
        sl_log(SL_LOG_WARN, "stream %s exists with other subjects (first: %s); keeping them",
               cfg->name, have->SubjectsLen > 0 ? have->Subjects[0] : "none");
    for (int i = 0; i < n; i++)
        any_update = any_update || diffs[i].update;
    if (any_update) {
        natsStatus s = js_UpdateStream(NULL, ctx, &want, NULL, &jerr);
        updated = s == NATS_OK;
        if (!updated)
            sl_log(SL_LOG_ERROR, "updating stream %s failed: %s (error %d)", cfg->name,
                   nats_GetLastError(NULL), (int)jerr);
    }
    for (int i = 0; i < n; i++)
        diff_log(cfg, &diffs[i], updated);
}

static sl_stream_status create(jsCtx *ctx, const sl_stream_config *cfg, sl_stream_state *st)
{
    const char *subjects[1];
    jsStreamConfig sc;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s;

    sl_stream_config_fill(cfg, subjects, &sc);
    s = js_AddStream(&si, ctx, &sc, NULL, &jerr);
    if (s != NATS_OK) {
        sl_log(SL_LOG_WARN, "creating stream %s failed: %s (error %d)", cfg->name,
               nats_GetLastError(NULL), (int)jerr);
        return SL_STREAM_FAILED;
    }
    if (st->seen) {
        sl_log(SL_LOG_ERROR,
               "stream %s was deleted and has been created again: its sequences restart at 1, "
               "the consumers start over on it, and what the old stream held is gone from "
               "JetStream (check the consumers' dead letters and MongoDB for what was processed)",
               cfg->name);
        sl_series_inc(created_series("recreated"));
    } else {
        sl_log(SL_LOG_INFO, "created stream %s (subjects %s, replicas %lld, discard %s)",
               cfg->name, cfg->subjects, (long long)cfg->replicas,
               cfg->discard_new ? "new" : "old");
        sl_series_inc(created_series("new"));
    }
    st->seen = true;
    st->created_ns = si->Created;
    jsStreamInfo_Destroy(si);
    return SL_STREAM_READY;
}

sl_stream_status sl_stream_ensure(jsCtx *ctx, const sl_stream_config *cfg, bool provision,
                                  sl_stream_state *st)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, ctx, cfg->name, NULL, &jerr);

    if (s == NATS_OK) {
        if (st->seen && st->created_ns != si->Created)
            sl_log(SL_LOG_ERROR,
                   "stream %s was deleted and created again (by another process): its "
                   "sequences restarted at 1",
                   cfg->name);
        /* Only the owner of the stream's settings compares and updates. */
        if (provision && (!st->seen || st->created_ns != si->Created))
            reconcile(ctx, cfg, si->Config);
        st->seen = true;
        st->created_ns = si->Created;
        st->missing_reported = false;
        jsStreamInfo_Destroy(si);
        return SL_STREAM_READY;
    }
    if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
        sl_log(SL_LOG_WARN, "reading stream %s failed: %s", cfg->name, natsStatus_GetText(s));
        return SL_STREAM_FAILED;
    }
    if (provision)
        return create(ctx, cfg, st);
    if (!st->missing_reported)
        sl_log(SL_LOG_WARN, "stream %s does not exist (yet); waiting for it", cfg->name);
    st->missing_reported = true;
    return SL_STREAM_MISSING;
}
