/* sluice-ingest: the front door. Reads its configuration, connects to NATS
 * JetStream, serves sluice.v1.IngestService and grpc.health.v1.Health over
 * gRPC, and on SIGTERM or SIGINT stops accepting, answers every call in
 * flight and exits within the grace period.
 *
 * Signals are blocked in every thread and taken synchronously by the main
 * thread with sigwait, so no work happens in a signal handler. */
#include <grpc/grpc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "health.h"
#include "ingest.h"
#include "lag_watch.h"
#include "reflection.h"
#include "sl_config.h"
#include "sl_http.h"
#include "sl_js.h"
#include "sl_log.h"
#include "sl_metrics.h"
#include "sl_nats.h"
#include "sl_record.h"

typedef struct settings {
    const char *listen;
    const char *metrics_listen;
    sl_nats_settings nats; /* NATS_URL, NATS_CREDS, NATS_NKEY, NATS_CA, ... */
    const char *stream;
    const char *log_level;
    int64_t threads;
    int64_t replicas;
    int64_t max_age_ms;
    int64_t max_bytes;
    int64_t duplicate_window_ms;
    int64_t publish_timeout_ms;
    int64_t max_in_flight;
    int64_t stream_window;
    int64_t max_batch;
    int64_t max_payload_bytes;
    int64_t max_message_bytes;
    int64_t shutdown_grace_ms;
    bool discard_new;
    /* which stream settings a flag or the environment gave (sl_stream.h) */
    bool given_replicas, given_max_age, given_max_bytes, given_duplicates, given_discard;
} settings;

static settings cfg;

/* 100 years: durations in nanoseconds stay far from overflow. */
#define MAX_DURATION_MS (36500LL * 86400000LL)

static const sl_option options[] = {
    {"listen", "SLUICE_LISTEN", SL_OPT_STRING, "0.0.0.0:50051", "gRPC listen address", &cfg.listen, 0, 0, NULL},
    {"metrics-listen", "SLUICE_METRICS_LISTEN", SL_OPT_STRING, "0.0.0.0:9090",
     "HTTP address for /metrics, /healthz, /readyz (empty: off)", &cfg.metrics_listen, 0, 0, NULL},
    SL_NATS_OPTIONS(cfg.nats),
    {"stream", "SLUICE_STREAM", SL_OPT_STRING, "SLUICE", "JetStream stream name", &cfg.stream, 0, 0, NULL},
    {"stream-replicas", "SLUICE_STREAM_REPLICAS", SL_OPT_INT, "1",
     "stream replicas (3 on a cluster); when given, applied to an existing stream too",
     &cfg.replicas, 1, 5, &cfg.given_replicas},
    {"stream-max-age", "SLUICE_STREAM_MAX_AGE", SL_OPT_DURATION, "7d",
     "stream retention by age (0: unlimited)", &cfg.max_age_ms, 0, MAX_DURATION_MS,
     &cfg.given_max_age},
    {"stream-max-bytes", "SLUICE_STREAM_MAX_BYTES", SL_OPT_SIZE, "-1",
     "stream retention by size (-1: unlimited)", &cfg.max_bytes, -1, INT64_MAX,
     &cfg.given_max_bytes},
    {"stream-discard-new", "SLUICE_STREAM_DISCARD_NEW", SL_OPT_BOOL, "false",
     "a full stream refuses records (RESOURCE_EXHAUSTED) instead of dropping the oldest",
     &cfg.discard_new, 0, 0, &cfg.given_discard},
    {"duplicate-window", "SLUICE_DUPLICATE_WINDOW", SL_OPT_DURATION, "2m",
     "window in which a repeated record id is stored once", &cfg.duplicate_window_ms, 1,
     MAX_DURATION_MS, &cfg.given_duplicates},
    {"publish-timeout", "SLUICE_PUBLISH_TIMEOUT", SL_OPT_DURATION, "5s",
     "UNAVAILABLE when JetStream has not acknowledged by then", &cfg.publish_timeout_ms, 1,
     3600000, NULL},
    {"max-in-flight", "SLUICE_MAX_IN_FLIGHT", SL_OPT_INT, "16384",
     "records published and not yet acknowledged, all calls together", &cfg.max_in_flight, 1,
     10000000, NULL},
    {"stream-window", "SLUICE_STREAM_WINDOW", SL_OPT_INT, "1024",
     "records in flight per IngestStream call", &cfg.stream_window, 1, 1000000, NULL},
    {"max-batch", "SLUICE_MAX_BATCH", SL_OPT_INT, "1000", "records per IngestBatch call",
     &cfg.max_batch, 1, 1000000, NULL},
    {"max-payload-bytes", "SLUICE_MAX_PAYLOAD_BYTES", SL_OPT_SIZE, "1MiB",
     "largest Record.payload", &cfg.max_payload_bytes, 1, 64 << 20, NULL},
    {"max-message-bytes", "SLUICE_MAX_MESSAGE_BYTES", SL_OPT_SIZE, "16MiB",
     "largest gRPC request message", &cfg.max_message_bytes, 1024, 1 << 30, NULL},
    {"threads", "SLUICE_THREADS", SL_OPT_INT, "0", "gRPC worker threads (0: one per core)",
     &cfg.threads, 0, 1024, NULL},
    {"shutdown-grace", "SLUICE_SHUTDOWN_GRACE", SL_OPT_DURATION, "10s",
     "time to finish calls in flight on SIGTERM", &cfg.shutdown_grace_ms, 0, 0, NULL},
    {"log-level", "SLUICE_LOG_LEVEL", SL_OPT_STRING, "info", "debug, info, warn or error",
     &cfg.log_level, 0, 0, NULL},
    {0}};

static const char usage[] =
    "Usage: sluice-ingest [options]\n"
    "Accepts records over gRPC (sluice.v1.IngestService) and answers once NATS JetStream\n"
    "has stored them. Every option is also an environment variable; flags win.";

static int fail(const char *line)
{
    fprintf(stderr, "sluice-ingest: %s\n", line);
    return 2;
}

static int configure(int argc, char **argv, sl_log_level *level)
{
    char err[1024];
    switch (sl_config_parse(options, argc, argv, usage, err, sizeof(err))) {
    case SL_CONFIG_HELP:
        exit(0);
    case SL_CONFIG_ERROR:
        return fail(err);
    default:
        break;
    }
    if (!sl_log_level_parse(cfg.log_level, level))
        return fail("invalid --log-level: expected debug, info, warn or error");
    if (cfg.stream[0] == '\0' || strpbrk(cfg.stream, " .*>") != NULL)
        return fail("invalid --stream: a JetStream stream name has no spaces, '.', '*' or '>'");
    if (cfg.threads == 0)
        cfg.threads = sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
    if (cfg.max_age_ms > 0 && cfg.duplicate_window_ms > cfg.max_age_ms)
        return fail("invalid --duplicate-window: must not exceed --stream-max-age");
    if (cfg.max_payload_bytes + 64 * 1024 > cfg.max_message_bytes)
        return fail("invalid --max-message-bytes: must exceed --max-payload-bytes by 64KiB");
    /* Last: it reads the credential files and keeps what it read. */
    if (!sl_nats_settings_check(&cfg.nats, err, sizeof(err)))
        return fail(err);
    return 0;
}

static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

typedef struct services {
    sl_js *js;
    atomic_bool draining;
    ingest_service *ingest;
    health_service *health;
    reflection_service *reflection;
    sl_reflect *index;
} services;

/* The server's drain callback: health turns NOT_SERVING, streams wind down. */
static void drain_all(void *closure)
{
    services *sv = closure;
    atomic_store(&sv->draining, true);
    health_service_drain(sv->health);
    ingest_service_drain(sv->ingest);
}

static bool js_ready(void *js)
{
    return sl_js_ready(js);
}

/* /readyz: the same answer as gRPC health, with the reason when not ready. */
static bool http_ready(void *closure, char *why, size_t whylen)
{
    services *sv = closure;
    if (atomic_load(&sv->draining)) {
        snprintf(why, whylen, "draining: shutting down");
        return false;
    }
    if (sv->js == NULL || !sl_js_ready(sv->js)) {
        snprintf(why, whylen, "JetStream not reachable or stream %s missing", cfg.stream);
        return false;
    }
    return true;
}

static double js_ready_gauge(void *js)
{
    return sl_js_ready(js) ? 1 : 0;
}

/* Everything the process runs, in start order; stop() undoes it in reverse. */
typedef struct process {
    sl_http *http;
    sl_grpc_server *srv;
    sl_js *js;
    lag_watch *lag;
    services sv;
} process;

static void stop(process *p, int64_t grace_ms)
{
    if (p->srv != NULL)
        sl_grpc_server_stop(p->srv, grace_ms, p->sv.ingest ? drain_all : NULL, &p->sv);
    health_service_free(p->sv.health);
    reflection_service_free(p->sv.reflection);
    sl_reflect_free(p->sv.index);
    ingest_service_free(p->sv.ingest);
    sl_http_stop(p->http);
    lag_watch_stop(p->lag);
    sl_js_close(p->js);
    sl_nats_settings_free(&cfg.nats);
    grpc_shutdown();
    sl_nats_close();
    sl_metrics_free_all();
}

static unsigned stream_given(void)
{
    return (cfg.given_replicas ? SL_STREAM_GIVEN_REPLICAS : 0) |
           (cfg.given_max_age ? SL_STREAM_GIVEN_MAX_AGE : 0) |
           (cfg.given_max_bytes ? SL_STREAM_GIVEN_MAX_BYTES : 0) |
           (cfg.given_duplicates ? SL_STREAM_GIVEN_DUPLICATES : 0) |
           (cfg.given_discard ? SL_STREAM_GIVEN_DISCARD : 0);
}

/* Binds the HTTP endpoint and the gRPC port and connects to NATS. */
static int start(process *p)
{
    sl_js_config jc = {
        .nats = &cfg.nats,
        .client_name = "sluice-ingest",
        .stream =
            {
                .name = cfg.stream,
                .subjects = SL_STREAM_SUBJECTS,
                .replicas = cfg.replicas,
                .max_age_ms = cfg.max_age_ms,
                .max_bytes = cfg.max_bytes,
                .duplicate_window_ms = cfg.duplicate_window_ms,
                .discard_new = cfg.discard_new,
                .given = stream_given(),
            },
        .provision = true,
    };
    sl_grpc_server_config gc = {cfg.listen, (int)cfg.threads, cfg.max_message_bytes};
    char err[256];
    natsStatus s;

    grpc_init();
    if (cfg.metrics_listen[0] != '\0') {
        p->http = sl_http_start(cfg.metrics_listen, http_ready, &p->sv, err, sizeof(err));
        if (p->http == NULL)
            return fail(err);
    }
    p->srv = sl_grpc_server_new(&gc, err, sizeof(err));
    if (p->srv == NULL)
        return fail(err);
    s = sl_js_open(&p->js, &jc, (size_t)cfg.max_in_flight);
    if (s != NATS_OK) {
        char shown[200];
        sl_nats_url_redact(cfg.nats.url, shown, sizeof(shown));
        snprintf(err, sizeof(err), "cannot use NATS at %s: %s", shown, natsStatus_GetText(s));
        return fail(err);
    }
    p->sv.js = p->js;
    p->lag = lag_watch_start(p->js, cfg.stream);
    sl_metric_gauge_fn("sluice_ingest_jetstream_ready",
                       "1 while JetStream is reachable and the stream exists.", js_ready_gauge,
                       p->js);
    return 0;
}

/* Routes the services and serves until SIGTERM or SIGINT. */
static void serve(process *p, const sigset_t *signals)
{
    ingest_config ic = {cfg.stream,        cfg.publish_timeout_ms, cfg.max_in_flight,
                        cfg.stream_window, cfg.max_batch,         {0}};
    char nats[1024];
    int sig = 0;

    sl_record_limits_default(&ic.limits);
    ic.limits.max_payload_bytes = (size_t)cfg.max_payload_bytes;
    /* Serve once the stream is there, so the first call does not race its
     * creation; without NATS, serve anyway (health says NOT_SERVING). */
    if (!sl_js_wait_ready(p->js, 5000))
        sl_log(SL_LOG_WARN, "JetStream not ready yet; serving, calls fail UNAVAILABLE until it is");
    p->sv.ingest = ingest_service_new(&ic, p->srv, p->js);
    p->sv.health = health_service_new(p->srv, js_ready, p->js);
    p->sv.index = sl_reflect_new(sl_descriptor_set, sl_descriptor_set_len);
    p->sv.reflection = p->sv.index ? reflection_service_new(p->srv, p->sv.index) : NULL;
    sl_grpc_server_start(p->srv);
    sl_nats_url_redact(cfg.nats.url, nats, sizeof(nats));
    sl_log(SL_LOG_INFO, "listening on %s (%lld threads), metrics on %s, NATS %s, stream %s",
           cfg.listen, (long long)cfg.threads, cfg.metrics_listen, nats, cfg.stream);

    sigwait(signals, &sig);
    sl_log(SL_LOG_INFO, "%s received: draining (grace %lld ms)", strsignal(sig),
           (long long)cfg.shutdown_grace_ms);
}

static int run(const sigset_t *signals)
{
    process p = {0};
    int rc;

    rc = start(&p);
    if (rc == 0)
        serve(&p, signals);
    stop(&p, cfg.shutdown_grace_ms);
    if (rc == 0)
        sl_log(SL_LOG_INFO, "stopped");
    return rc;
}

int main(int argc, char **argv)
{
    sl_log_level level = SL_LOG_INFO;
    sigset_t signals;
    int rc;

    /* First: checking the configuration may start cnats' threads (loading
     * TLS files), and every thread must inherit the blocked signals. */
    block_signals(&signals);
    rc = configure(argc, argv, &level);
    if (rc != 0)
        return rc;
    sl_log_init("sluice-ingest", level);
    return run(&signals);
}
