/* sluice-ingest: the front door. Reads its configuration, connects to NATS
 * JetStream, serves sluice.v1.IngestService and grpc.health.v1.Health over
 * gRPC, and on SIGTERM or SIGINT stops accepting, answers every call in
 * flight and exits within the grace period.
 *
 * Signals are blocked in every thread and taken synchronously by the main
 * thread with sigtimedwait, so no work happens in a signal handler. */
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
#include "sl_tls.h"

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
    const char *tls_cert, *tls_key, *tls_client_ca;
    const char *jwt_key, *jwt_issuer, *jwt_audience, *tokens_file, *policy_file;
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
     "time to finish calls in flight on SIGTERM", &cfg.shutdown_grace_ms, 0, MAX_DURATION_MS, NULL},
    {"log-level", "SLUICE_LOG_LEVEL", SL_OPT_STRING, "info", "debug, info, warn or error",
     &cfg.log_level, 0, 0, NULL},
    {"tls-cert", "SLUICE_TLS_CERT", SL_OPT_STRING, "",
     "PEM certificate chain: with --tls-key the gRPC port speaks TLS only", &cfg.tls_cert, 0, 0,
     NULL},
    {"tls-key", "SLUICE_TLS_KEY", SL_OPT_STRING, "", "PEM private key of --tls-cert",
     &cfg.tls_key, 0, 0, NULL},
    {"tls-client-ca", "SLUICE_TLS_CLIENT_CA", SL_OPT_STRING, "",
     "PEM CA: client certificates required and verified (mTLS)", &cfg.tls_client_ca, 0, 0, NULL},
    {"auth-jwt-public-key", "SLUICE_AUTH_JWT_PUBLIC_KEY", SL_OPT_STRING, "",
     "PEM public key (RS256 or ES256) that bearer JWTs must be signed with", &cfg.jwt_key, 0, 0,
     NULL},
    {"auth-jwt-issuer", "SLUICE_AUTH_JWT_ISSUER", SL_OPT_STRING, "",
     "required iss of bearer JWTs (empty: not checked)", &cfg.jwt_issuer, 0, 0, NULL},
    {"auth-jwt-audience", "SLUICE_AUTH_JWT_AUDIENCE", SL_OPT_STRING, "",
     "required aud of bearer JWTs (empty: not checked)", &cfg.jwt_audience, 0, 0, NULL},
    {"auth-tokens-file", "SLUICE_AUTH_TOKENS_FILE", SL_OPT_STRING, "",
     "API keys: lines of \"<principal> <sha256 hex of the key>\"", &cfg.tokens_file, 0, 0, NULL},
    {"auth-policy", "SLUICE_AUTH_POLICY", SL_OPT_STRING, "",
     "JSON: principal (or *) -> record type patterns it may write", &cfg.policy_file, 0, 0, NULL},
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
    if ((cfg.tls_cert[0] == '\0') != (cfg.tls_key[0] == '\0'))
        return fail("invalid TLS settings: --tls-cert and --tls-key go together");
    if (cfg.tls_client_ca[0] != '\0' && cfg.tls_cert[0] == '\0')
        return fail("invalid --tls-client-ca: client certificates need --tls-cert and --tls-key");
    if ((cfg.jwt_issuer[0] != '\0' || cfg.jwt_audience[0] != '\0') && cfg.jwt_key[0] == '\0')
        return fail("invalid --auth-jwt-issuer/--auth-jwt-audience: they need "
                    "--auth-jwt-public-key");
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
    if (sv->health != NULL)
        health_service_drain(sv->health);
    if (sv->ingest != NULL)
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

/* Everything the process runs, in start order. */
typedef struct process {
    sl_http *http;
    sl_tls *tls;
    sl_auth *auth;
    sl_grpc_server *srv;
    sl_js *js;
    lag_watch *lag;
    services sv;
} process;

/* Stops what runs, then frees what it used. The gRPC server drains first,
 * while /readyz still answers (draining); the HTTP endpoint stops before
 * the services and the JetStream connection its gauges and /readyz read
 * are freed. */
static void stop(process *p, int64_t grace_ms)
{
    if (p->srv != NULL)
        sl_grpc_server_stop(p->srv, grace_ms, drain_all, &p->sv);
    sl_http_stop(p->http);
    health_service_free(p->sv.health);
    reflection_service_free(p->sv.reflection);
    sl_reflect_free(p->sv.index);
    ingest_service_free(p->sv.ingest);
    sl_auth_free(p->auth);
    sl_tls_free(p->tls);
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

/* TLS for the gRPC port (creds stays NULL without) and who may call. */
static int security_start(process *p, grpc_server_credentials **creds)
{
    sl_auth_config ac = {cfg.tls_client_ca, cfg.jwt_key,     cfg.jwt_issuer,
                         cfg.jwt_audience,  cfg.tokens_file, cfg.policy_file};
    char err[600];

    *creds = NULL;
    if (cfg.tls_cert[0] != '\0') {
        p->tls = sl_tls_new(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca, err, sizeof(err));
        if (p->tls == NULL)
            return fail(err);
        *creds = sl_tls_server_credentials(p->tls);
    }
    p->auth = sl_auth_new(&ac, err, sizeof(err));
    if (p->auth == NULL)
        return fail(err);
    return 0;
}

/* Once serving: what an operator must know about an open or plaintext port. */
static void security_warn(const process *p)
{
    if (!sl_auth_required(p->auth))
        sl_log(SL_LOG_WARN, "authentication is off: anyone who reaches %s may write records "
               "(set SLUICE_TLS_CLIENT_CA, SLUICE_AUTH_JWT_PUBLIC_KEY or SLUICE_AUTH_TOKENS_FILE)",
               cfg.listen);
    else if (p->tls == NULL)
        sl_log(SL_LOG_WARN, "bearer tokens travel in plaintext: set SLUICE_TLS_CERT and "
               "SLUICE_TLS_KEY");
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
    sl_grpc_server_config gc = {cfg.listen, (int)cfg.threads, cfg.max_message_bytes, NULL};
    char err[256];
    natsStatus s;

    grpc_init();
    if (cfg.metrics_listen[0] != '\0') {
        p->http = sl_http_start(cfg.metrics_listen, http_ready, &p->sv, err, sizeof(err));
        if (p->http == NULL)
            return fail(err);
    }
    if (security_start(p, &gc.creds) != 0)
        return 2;
    p->srv = sl_grpc_server_new(&gc, err, sizeof(err));
    if (gc.creds != NULL)
        grpc_server_credentials_release(gc.creds);
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

/* Warns when a valid record can make a message larger than the connected
 * server's max_payload: such records are refused (RESOURCE_EXHAUSTED). Runs
 * once connected, and again when a reconnect finds another max_payload
 * (another member of a cluster); *seen is the last value looked at. */
static void check_max_payload(sl_js *js, const sl_record_limits *lim, int64_t *seen)
{
    int64_t max = sl_js_max_payload(js);
    size_t largest;

    if (max <= 0 || max == *seen)
        return;
    *seen = max;
    largest = sl_record_max_msg_bytes(lim);
    largest += largest < SIZE_MAX - sl_js_header_bytes(js) ? sl_js_header_bytes(js) : 0;
    if (largest > (uint64_t)max)
        sl_log(SL_LOG_WARN,
               "a valid record can make a stream message of %zu bytes (--max-payload-bytes "
               "%zu, plus key, attributes and headers), over the NATS server's max_payload "
               "of %lld bytes: such records get RESOURCE_EXHAUSTED; raise max_payload on "
               "the server or lower --max-payload-bytes",
               largest, lim->max_payload_bytes, (long long)max);
}

/* Routes the services and serves until SIGTERM or SIGINT, looking at the
 * server's max_payload once a second meanwhile. Returns 0, or 2 with one
 * line on stderr when the services cannot start. */
static int serve(process *p, const sigset_t *signals)
{
    ingest_config ic = {cfg.stream,        cfg.publish_timeout_ms, cfg.max_in_flight,
                        cfg.stream_window, cfg.max_batch,         {0},
                        p->auth};
    const struct timespec tick = {1, 0};
    int64_t max_payload = 0;
    char nats[1024];
    int sig;

    sl_record_limits_default(&ic.limits);
    ic.limits.max_payload_bytes = (size_t)cfg.max_payload_bytes;
    /* Serve once the stream is there, so the first call does not race its
     * creation; without NATS, serve anyway (health says NOT_SERVING). */
    if (!sl_js_wait_ready(p->js, 5000))
        sl_log(SL_LOG_WARN, "JetStream not ready yet; serving, calls fail UNAVAILABLE until it is");
    p->sv.ingest = ingest_service_new(&ic, p->srv, p->js);
    p->sv.health = health_service_new(p->srv, js_ready, p->js);
    if (p->sv.ingest == NULL || p->sv.health == NULL)
        return fail("cannot start the gRPC services: out of memory or threads");
    p->sv.index = sl_reflect_new(sl_descriptor_set, sl_descriptor_set_len);
    p->sv.reflection = p->sv.index ? reflection_service_new(p->srv, p->sv.index, p->auth)
                                         : NULL;
    if (!sl_grpc_server_start(p->srv, nats, sizeof(nats)))
        return fail(nats);
    sl_nats_url_redact(cfg.nats.url, nats, sizeof(nats));
    sl_log(SL_LOG_INFO, "listening on %s (%s, %lld threads), metrics on %s, NATS %s, stream %s",
           cfg.listen,
           p->tls == NULL           ? "plaintext"
           : sl_tls_mutual(p->tls) ? "TLS, client certificates required"
                                   : "TLS",
           (long long)cfg.threads, cfg.metrics_listen, nats, cfg.stream);

    security_warn(p);
    check_max_payload(p->js, &ic.limits, &max_payload);
    while ((sig = sigtimedwait(signals, NULL, &tick)) < 0)
        check_max_payload(p->js, &ic.limits, &max_payload);
    sl_log(SL_LOG_INFO, "%s received: draining (grace %lld ms)", strsignal(sig),
           (long long)cfg.shutdown_grace_ms);
    return 0;
}

static int run(const sigset_t *signals)
{
    process p = {0};
    int rc;

    rc = start(&p);
    if (rc == 0)
        rc = serve(&p, signals);
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
