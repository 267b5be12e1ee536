/* sl_consumer: the loop every downstream service runs. It reads the stream
 * through a durable pull consumer, turns each message into one MongoDB
 * document with the service's own (pure) function, writes a whole batch with
 * one unordered bulk insert, and only then settles each message:
 *
 *     stored (or already stored)   -> Ack
 *     transient failure            -> Nak with a delay, exponential back-off
 *     terminal failure, or a
 *     transient one on the last
 *     allowed delivery             -> publish to SLUICE_DLQ (sl_dlq), wait
 *                                     for the PubAck, then Term
 *
 * so a message leaves the consumer only once its document is stored or its
 * dead letter is; nothing is dropped silently. Sluice counts deliveries
 * itself (--max-deliver) and the server's MaxDeliver is unlimited, so a
 * message whose dead letter could not be stored is nak'ed and comes back,
 * instead of being dropped by the server's limit. When MongoDB fails the
 * whole batch (down, timing out), the batch is nak'ed and the loop stops
 * fetching until a ping succeeds again: messages are not delivered, and so
 * do not use up their deliveries, while the store is away. Fetches are
 * bounded in bytes (--fetch-max-bytes), which bounds the memory.
 *
 * Provisioning. On start the loop waits for the stream, creates SLUICE_DLQ
 * (subjects sluice.dlq.>) when missing, and creates the durable consumer
 * when missing (explicit ack, AckWait, MaxDeliver -1, MaxAckPending,
 * BackOff); an existing one is brought to those settings where JetStream
 * allows it, and what it cannot change is reported.
 * Several replicas of a service bind the same durable and share its
 * messages. Replay (--replay-from-seq / --replay-from-time) uses a consumer
 * of its own, "<consumer>-replay-seq-<n>" or "<consumer>-replay-time-<unix
 * seconds>", durable with an inactivity threshold so the server removes it
 * an hour after the last replica stops; the store's duplicate-key rule makes
 * the replay write only what is missing.
 *
 * Threads: sl_consumer_run fetches, builds and settles on the calling
 * thread and runs the bulk inserts on a writer thread of its own, so that
 * the next batch is fetched and built while the current one is written
 * (each batch is still settled only after its own write). It returns after
 * sl_consumer_stop, which any thread may call (typically the
 * signal-watching one): the batches in hand are finished and settled first.
 * The build callback runs on the sl_consumer_run thread. sl_consumer_stats
 * (metric series and atomic flags) is readable from any thread at any time. */
#ifndef SL_CONSUMER_H
#define SL_CONSUMER_H

#include <bson/bson.h>
#include <nats/nats.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sl_config.h"
#include "sl_dlq.h"
#include "sl_metrics.h"
#include "sl_mongo.h"
#include "sl_nats.h"
#include "sluice/v1/ingest.pb-c.h"

/* The settings both services share, filled by sl_config from the table that
 * sl_consumer_options writes. Strings live as long as the process, except
 * what sl_consumer_settings_check reads from files (the NATS settings' and
 * mongodb_uri_owned), which sl_consumer_settings_free releases. */
typedef struct sl_consumer_settings {
    sl_nats_settings nats; /* NATS_URL, NATS_CREDS, NATS_NKEY, NATS_CA, ... */
    const char *mongodb_uri;
    const char *mongodb_uri_file; /* MONGODB_URI_FILE: the URI from a file */
    bool mongodb_uri_given, mongodb_uri_file_given;
    char *mongodb_uri_owned; /* the file's content; mongodb_uri points at it */
    const char *stream;
    const char *consumer;
    const char *replay_from_time; /* "" = no replay by time */
    const char *metrics_listen;
    const char *log_level;
    int64_t batch_size;
    int64_t fetch_max_bytes; /* bytes per fetch (a larger message comes alone) */
    int64_t max_ack_pending; /* 0: sl_consumer_max_ack_pending's default */
    int64_t fetch_wait_ms;
    int64_t ack_wait_ms;
    int64_t max_deliver;
    int64_t replay_from_seq; /* 0 = no replay by sequence */
    int64_t replay_from_ns;  /* replay_from_time parsed by sl_consumer_settings_check */
} sl_consumer_settings;

#define SL_CONSUMER_NOPTIONS (14 + SL_NATS_NOPTIONS)

/* Writes the SL_CONSUMER_NOPTIONS shared options into opts, pointing at s;
 * the service adds its own and the terminating {0} after them.
 * consumer_default and metrics_default are the service's defaults
 * ("transform", "0.0.0.0:9091"). */
void sl_consumer_options(sl_option *opts, sl_consumer_settings *s, const char *consumer_default,
                         const char *metrics_default);

/* Checks what the option table cannot: the NATS settings, the MongoDB URI
 * (read from MONGODB_URI_FILE when given), names, the replay settings (at
 * most one, time in RFC 3339). Returns false with err set to one line.
 * What it read from files stays, also after a failure, until
 * sl_consumer_settings_free. */
bool sl_consumer_settings_check(sl_consumer_settings *s, char *err, size_t errlen);

/* Releases what sl_consumer_settings_check read from files. */
void sl_consumer_settings_free(sl_consumer_settings *s);

/* The name of the consumer to bind: the durable, or its replay variant.
 * Writes at most len bytes into out. */
void sl_consumer_name(const sl_consumer_settings *s, char *out, size_t len);

/* One message as the build callback sees it. Everything is owned by the
 * loop and valid only during the callback. */
typedef struct sl_delivery {
    natsMsg *msg;         /* for headers: sl_delivery_header */
    const char *stream;   /* "SLUICE" */
    const char *consumer; /* the consumer's name */
    const char *subject;  /* "sluice.rec.<type>" */
    const uint8_t *data;  /* the protobuf-encoded sluice.v1.Record */
    size_t len;
    uint64_t stream_seq;
    uint64_t deliveries;    /* 1 on the first delivery */
    int64_t stream_time_ns; /* when the stream stored the message */
} sl_delivery;

/* The identity of one stored message, unique across stream lifetimes:
 * "<stream>:<seq>:<stored at, RFC 3339 with ns>", e.g.
 * "SLUICE:42:2026-12-02T09:42:25.123456789Z". The sequence alone is not
 * enough: a stream deleted and created again restarts at 1; the time the
 * stream stored the message (the same on every replica and every
 * redelivery) tells the lifetimes apart. */
#define SL_DELIVERY_KEY_LEN 384
void sl_delivery_key(const char *stream, uint64_t seq, int64_t stored_ns, char *out, size_t len);

/* The value of header name, or NULL when the message has none. */
const char *sl_delivery_header(const sl_delivery *d, const char *name);

/* The record in the body, or NULL with err set when the body is not a
 * sluice.v1.Record. Free with sluice__v1__record__free_unpacked(r, NULL). */
Sluice__V1__Record *sl_delivery_record(const sl_delivery *d, char *err, size_t errlen);

/* The record's id: Record.id, else the Nats-Msg-Id header, else NULL. */
const char *sl_delivery_record_id(const sl_delivery *d, const Sluice__V1__Record *r);

/* When ingest received the record: the Sluice-Received-At header, else the
 * time the stream stored the message. */
int64_t sl_delivery_received_ns(const sl_delivery *d);

/* Turns d into the document to insert (doc is initialized and empty; the
 * callback appends to it, _id first). Returns false for a terminal failure,
 * with err set to one line: the message goes to the dead-letter stream. */
typedef bool (*sl_consumer_build_cb)(void *closure, const sl_delivery *d, bson_t *doc, char *err,
                                     size_t errlen);

typedef struct sl_consumer_index {
    const char *name;
    const char *keys_json; /* {"type": 1, "received_at": 1} */
} sl_consumer_index;

typedef struct sl_consumer_config {
    const char *service; /* "sluice-transform": logs, NATS name */
    const sl_consumer_settings *settings;
    const char *collection;           /* "records" */
    const sl_consumer_index *indexes; /* created when the store is first reached */
    size_t nindexes;
    sl_consumer_build_cb build;
    void *closure; /* passed to build; the caller's */
} sl_consumer_config;

/* What the loop counts, as Prometheus series (sl_metrics) labelled with the
 * consumer's name, and the state readiness is answered from. The series are
 * lock-free; the flags are atomics. Both are readable from any thread. */
typedef struct sl_consumer_stats {
    sl_series *delivered;     /* sluice_consumer_delivered_total: messages fetched */
    sl_series *stored;        /* sluice_consumer_messages_total{outcome="stored"} */
    sl_series *duplicates;    /* ...{outcome="duplicate"}: the document was there */
    sl_series *naked;         /* ...{outcome="nak"}: to be redelivered later */
    sl_series *dlq;           /* ...{outcome="dlq"}: dead-lettered and terminated */
    sl_series *mongo_errors;  /* sluice_consumer_mongo_errors_total: failed bulk writes */
    sl_series *write_seconds; /* sluice_consumer_mongo_write_seconds histogram */
    sl_series *pending;       /* sluice_consumer_pending_messages (JetStream NumPending) */
    sl_series *ack_pending;   /* sluice_consumer_ack_pending_messages (NumAckPending) */
    sl_series *redelivered;   /* sluice_consumer_redelivered_messages (NumRedelivered) */
    sl_series *oldest_age;    /* sluice_consumer_oldest_unprocessed_age_seconds (sl_lag) */
    sl_series *stream_max_age; /* sluice_consumer_stream_max_age_seconds */
    _Atomic bool store_up;    /* MongoDB answers */
    _Atomic bool nats_up;     /* connected to NATS */
    _Atomic bool bound;       /* bound to the consumer */
} sl_consumer_stats;

typedef struct sl_consumer sl_consumer;

/* Creates the consumer (no I/O yet). cfg and everything it points to must
 * outlive it; mongo stays the caller's. Returns NULL with err set. */
sl_consumer *sl_consumer_new(const sl_consumer_config *cfg, sl_mongo *mongo, char *err,
                             size_t errlen);

/* Connects, provisions, and consumes until sl_consumer_stop. Returns 0 after
 * a clean stop, or -1 when provisioning failed for good (err set). */
int sl_consumer_run(sl_consumer *c, char *err, size_t errlen);

/* Asks sl_consumer_run to return after the batch in hand. Any thread. */
void sl_consumer_stop(sl_consumer *c);

/* The live counters, owned by c. Any thread. */
const sl_consumer_stats *sl_consumer_stats_of(const sl_consumer *c);

/* True when the loop can do its work now: connected to NATS, bound to its
 * consumer, MongoDB answering. Otherwise writes the first missing piece into
 * why. Any thread (reads the atomics only): the /readyz answer. */
bool sl_consumer_ready(const sl_consumer *c, char *why, size_t whylen);

/* Frees c; sl_consumer_run must have returned. */
void sl_consumer_free(sl_consumer *c);

/* The start of a service's main once its option table is written (the
 * shared options, its own, the terminating {0}): reads the flags and the
 * environment, checks the shared settings, and starts the log as service.
 * Returns -1 to go on, or the exit status to return at once: 0 after
 * --help, 2 after printing the reason as one line on stderr. */
int sl_consumer_configure(const char *service, const sl_option *opts, const char *usage,
                          sl_consumer_settings *s, int argc, char **argv);

/* The whole life of a service after its configuration is read: opens
 * MongoDB (appname cfg->service), serves /metrics, /healthz and /readyz on
 * settings->metrics_listen (unless empty), runs the consumer until SIGTERM or SIGINT
 * (taken by an sl_signal watcher; the caller has called sl_signal_block
 * before anything started a thread), and cleans up. Returns the process exit
 * status: 0 after a clean stop, 2 for an invalid MongoDB URI, 1 otherwise,
 * with the reason printed as one line on stderr. */
int sl_consumer_main(const sl_consumer_config *cfg);

/* ---- pure helpers, exposed for tests ------------------------------------ */

/* Replicas of one service that --max-ack-pending's default leaves room for:
 * each replica holds at most two batches (one being written, one built). */
#define SL_CONSUMER_AUTO_REPLICAS 16
#define SL_CONSUMER_BACKOFF_STEPS 5
#define SL_CONSUMER_MAX_DIFFS 8

/* MaxAckPending: --max-ack-pending, or 2 x batch size x
 * SL_CONSUMER_AUTO_REPLICAS when that is 0. */
int64_t sl_consumer_max_ack_pending(const sl_consumer_settings *s);

/* The durable consumer's configuration for s, named name. backoff is the
 * storage cc->BackOff points to. */
void sl_consumer_config_fill(const sl_consumer_settings *s, const char *name,
                             jsConsumerConfig *cc, int64_t backoff[SL_CONSUMER_BACKOFF_STEPS]);

/* One difference between the configured and an existing consumer; update
 * when JetStream can change it in place. */
typedef struct sl_consumer_diff {
    const char *setting;
    int64_t configured, existing;
    bool update;
} sl_consumer_diff;

/* Compares have with target: fills d (at most SL_CONSUMER_MAX_DIFFS) and
 * returns how many; want is have with every updatable difference applied
 * (what js_UpdateConsumer gets), sharing pointers with have and target. */
int sl_consumer_config_plan(const jsConsumerConfig *target, const jsConsumerConfig *have,
                            jsConsumerConfig *want, sl_consumer_diff *d);

/* The delay before redelivering a message nak'ed on its n-th delivery:
 * 1 s, 2 s, 4 s ... capped at max_ms. */
int64_t sl_consumer_backoff_ms(uint64_t deliveries, int64_t max_ms);

/* What to do with one message, given what the store said. */
typedef enum sl_settle {
    SL_SETTLE_ACK,
    SL_SETTLE_NAK,
    SL_SETTLE_DLQ,
} sl_settle;

sl_settle sl_consumer_settle(sl_mongo_result result, uint64_t deliveries, int64_t max_deliver);

/* The type of a message: its Sluice-Type header, else the subject after
 * "sluice.rec.", else NULL. */
const char *sl_delivery_type(const sl_delivery *d);

#endif
