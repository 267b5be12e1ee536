/* sl_stream: the record stream's settings, and making what exists match
 * them.
 *
 * sl_stream_ensure is what sluice-ingest runs on start and after every
 * reconnect (from sl_js's provisioner thread):
 *
 *   - the stream is missing: it is created with the configured settings.
 *     The first creation a process makes is logged at info. A stream that
 *     this process had seen and that is gone again was deleted behind its
 *     back: it is still created (so that clients keep being answered), but
 *     logged at error with what that means (sequences restart at 1, the
 *     consumers start over on the new stream, the records of the old one
 *     are gone from it), and counted in
 *     sluice_ingest_stream_created_total{reason="recreated"}.
 *   - the stream exists: every setting that JetStream can change in place
 *     (replicas, max age, max bytes, duplicate window, discard policy) and
 *     that the operator gave explicitly (a flag or its environment
 *     variable, not a default) is updated to the configured value, and the
 *     change is logged. Differences in what was left at its default, and in
 *     what JetStream cannot change (storage, retention, subjects), are
 *     logged as warnings and kept. So a second ingest started with default
 *     flags against a cluster never scales the stream down, and a changed
 *     flag in a manifest reaches the stream on the next rollout.
 *
 * The compare and plan steps (sl_stream_plan) are pure, for tests. Threads:
 * one caller at a time per sl_stream_state. */
#ifndef SL_STREAM_H
#define SL_STREAM_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

/* Bits of sl_stream_config.given: which settings an operator chose. */
enum {
    SL_STREAM_GIVEN_REPLICAS = 1 << 0,
    SL_STREAM_GIVEN_MAX_AGE = 1 << 1,
    SL_STREAM_GIVEN_MAX_BYTES = 1 << 2,
    SL_STREAM_GIVEN_DUPLICATES = 1 << 3,
    SL_STREAM_GIVEN_DISCARD = 1 << 4,
};

typedef struct sl_stream_config {
    const char *name;     /* "SLUICE" */
    const char *subjects; /* "sluice.rec.>" */
    int64_t replicas;
    int64_t max_age_ms; /* 0: unlimited */
    int64_t max_bytes;  /* -1: unlimited */
    int64_t duplicate_window_ms;
    bool discard_new; /* a full stream refuses new records instead of dropping old ones */
    unsigned given;   /* SL_STREAM_GIVEN_* */
} sl_stream_config;

/* What a process remembers between calls. Zero-initialize. */
typedef struct sl_stream_state {
    bool seen;              /* the stream existed (or was created) at least once */
    int64_t created_ns;     /* its creation time, as JetStream reports it */
    bool missing_reported;  /* "waiting for it" was logged (provision off) */
} sl_stream_state;

typedef enum sl_stream_status {
    SL_STREAM_READY,   /* exists (perhaps just created or updated) */
    SL_STREAM_MISSING, /* does not exist and provision is off */
    SL_STREAM_FAILED,  /* could not be read or created: try again later */
} sl_stream_status;

/* Reads the stream and creates (provision) or waits for it; see the top. */
sl_stream_status sl_stream_ensure(jsCtx *ctx, const sl_stream_config *cfg, bool provision,
                                  sl_stream_state *st);

/* One difference between the configuration and an existing stream. */
typedef struct sl_stream_diff {
    const char *setting; /* "replicas", "max_age_ms", ... */
    int64_t configured, existing;
    bool update; /* given explicitly and changeable in place */
} sl_stream_diff;

#define SL_STREAM_MAX_DIFFS 8

/* Compares have with cfg: fills diffs (at most SL_STREAM_MAX_DIFFS) and
 * returns how many; want receives have with every diff marked update
 * applied (what to send to js_UpdateStream), sharing have's pointers. */
int sl_stream_plan(const sl_stream_config *cfg, const jsStreamConfig *have, jsStreamConfig *want,
                   sl_stream_diff *diffs);

/* The configuration a new stream is created with. subjects must point at
 * one string that outlives out. */
void sl_stream_config_fill(const sl_stream_config *cfg, const char **subjects,
                           jsStreamConfig *out);

#endif
