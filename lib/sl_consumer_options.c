/* sl_consumer_options: the settings sluice-transform and sluice-audit share,
 * as a table of sl_option (flags and environment variables), the checks the
 * table cannot express, and the name of the consumer to bind. Pure, apart
 * from sl_consumer_configure, which parses the process's arguments and
 * starts the log. See sl_consumer.h. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_consumer_internal.h"
#include "sl_log.h"
#include "sl_nats.h"
#include "sl_time.h"

/* ---- settings ----------------------------------------------------------- */

void sl_consumer_options(sl_option *o, sl_consumer_settings *s, const char *consumer_default,
                         const char *metrics_default)
{
    size_t i = 0;

    sl_nats_options(o, &s->nats);
    i += SL_NATS_NOPTIONS;
    /* clang-format off: one option per entry reads better than one field per line */
    o[i++] = (sl_option){"mongodb-uri",
                         "MONGODB_URI",
                         SL_OPT_STRING,
                         "mongodb://127.0.0.1:27017/sluice",
                         "MongoDB URI (database: its path; TLS and credentials: its options)",
                         &s->mongodb_uri,
                         0,
                         0,
                         &s->mongodb_uri_given};
    o[i++] = (sl_option){"mongodb-uri-file",
                         "MONGODB_URI_FILE",
                         SL_OPT_STRING,
                         "",
                         "file holding MONGODB_URI (e.g. a Kubernetes Secret), read once at start",
                         &s->mongodb_uri_file,
                         0,
                         0,
                         &s->mongodb_uri_file_given};
    o[i++] = (sl_option){"stream",
                         "SLUICE_STREAM",
                         SL_OPT_STRING,
                         "SLUICE",
                         "JetStream stream to read",
                         &s->stream,
                         0,
                         0,
                         NULL};
    o[i++] = (sl_option){"consumer",
                         "SLUICE_CONSUMER",
                         SL_OPT_STRING,
                         consumer_default,
                         "durable consumer, shared by all replicas",
                         &s->consumer,
                         0,
                         0,
                         NULL};
    o[i++] = (sl_option){"batch-size",
                         "SLUICE_BATCH_SIZE",
                         SL_OPT_INT,
                         "256",
                         "messages per fetch and per bulk write",
                         &s->batch_size,
                         1,
                         1000,
                         NULL};
    o[i++] = (sl_option){"fetch-max-bytes",
                         "SLUICE_FETCH_MAX_BYTES",
                         SL_OPT_SIZE,
                         "8MiB",
                         "bytes per fetch, at most (a single larger message comes alone)",
                         &s->fetch_max_bytes,
                         64 * 1024,
                         1LL << 30,
                         NULL};
    o[i++] = (sl_option){"max-ack-pending",
                         "SLUICE_MAX_ACK_PENDING",
                         SL_OPT_INT,
                         "0",
                         "messages out with all replicas, unacknowledged (0: 2 x batch size x 16)",
                         &s->max_ack_pending,
                         0,
                         10000000,
                         NULL};
    o[i++] = (sl_option){"fetch-wait",
                         "SLUICE_FETCH_WAIT",
                         SL_OPT_DURATION,
                         "500ms",
                         "longest wait for a batch to fill",
                         &s->fetch_wait_ms,
                         1,
                         60000,
                         NULL};
    o[i++] = (sl_option){"ack-wait",
                         "SLUICE_ACK_WAIT",
                         SL_OPT_DURATION,
                         "30s",
                         "redelivery when unacknowledged this long (doubles per delivery)",
                         &s->ack_wait_ms,
                         1000,
                         3600000,
                         NULL};
    o[i++] = (sl_option){"max-deliver",
                         "SLUICE_MAX_DELIVER",
                         SL_OPT_INT,
                         "10",
                         "deliveries before a failing message goes to " SL_DLQ_STREAM,
                         &s->max_deliver,
                         1,
                         1000,
                         NULL};
    o[i++] = (sl_option){"replay-from-seq",
                         "SLUICE_REPLAY_FROM_SEQ",
                         SL_OPT_INT,
                         "0",
                         "replay on a new consumer from this stream sequence (0: off)",
                         &s->replay_from_seq,
                         0,
                         0,
                         NULL};
    o[i++] = (sl_option){"replay-from-time",
                         "SLUICE_REPLAY_FROM_TIME",
                         SL_OPT_STRING,
                         "",
                         "replay on a new consumer from this RFC 3339 time (empty: off)",
                         &s->replay_from_time,
                         0,
                         0,
                         NULL};
    o[i++] = (sl_option){"metrics-listen",
                         "SLUICE_METRICS_LISTEN",
                         SL_OPT_STRING,
                         metrics_default,
                         "HTTP address for /metrics, /healthz, /readyz",
                         &s->metrics_listen,
                         0,
                         0,
                         NULL};
    o[i++] = (sl_option){"log-level",
                         "SLUICE_LOG_LEVEL",
                         SL_OPT_STRING,
                         "info",
                         "debug, info, warn or error",
                         &s->log_level,
                         0,
                         0,
                         NULL};
    /* clang-format on */
}

/* JetStream names: no whitespace, '.', '*', '>', or path separators. */
static bool js_name_valid(const char *name, size_t max)
{
    size_t n = strlen(name);
    return n > 0 && n <= max && strpbrk(name, " \t\r\n.*>/\\") == NULL;
}

/* MONGODB_URI, or MONGODB_URI_FILE's content: one of the two. */
static bool mongodb_uri_resolve(sl_consumer_settings *s, char *err, size_t errlen)
{
    if (s->mongodb_uri_owned != NULL) { /* read by an earlier check */
        if (s->mongodb_uri == s->mongodb_uri_owned)
            s->mongodb_uri = "";
        free(s->mongodb_uri_owned);
        s->mongodb_uri_owned = NULL;
    }
    if (s->mongodb_uri_file == NULL || s->mongodb_uri_file[0] == '\0')
        return true;
    if (s->mongodb_uri_given) {
        snprintf(err, errlen, "--mongodb-uri (MONGODB_URI) and --mongodb-uri-file "
                 "(MONGODB_URI_FILE) exclude each other: give one");
        return false;
    }
    if (!sl_config_read_file("--mongodb-uri-file (MONGODB_URI_FILE)", s->mongodb_uri_file,
                             &s->mongodb_uri_owned, err, errlen))
        return false;
    s->mongodb_uri = s->mongodb_uri_owned;
    return true;
}

void sl_consumer_settings_free(sl_consumer_settings *s)
{
    sl_nats_settings_free(&s->nats);
    if (s->mongodb_uri_owned != NULL && s->mongodb_uri == s->mongodb_uri_owned)
        s->mongodb_uri = "";
    free(s->mongodb_uri_owned);
    s->mongodb_uri_owned = NULL;
}

bool sl_consumer_settings_check(sl_consumer_settings *s, char *err, size_t errlen)
{
    sl_log_level level;

    if (!sl_nats_settings_check(&s->nats, err, errlen) || !mongodb_uri_resolve(s, err, errlen))
        return false;
    if (s->mongodb_uri[0] == '\0')
        snprintf(err, errlen, "invalid --mongodb-uri: must not be empty");
    else if (!sl_mongo_uri_check(s->mongodb_uri, err, errlen))
        return false;
    else if (!js_name_valid(s->stream, 255))
        snprintf(err, errlen,
                 "invalid --stream \"%s\": a JetStream name without spaces, "
                 "'.', '*', '>' or slashes",
                 s->stream);
    else if (!js_name_valid(s->consumer, NAME_MAX_LEN))
        snprintf(err, errlen,
                 "invalid --consumer \"%s\": at most %d characters, without "
                 "spaces, '.', '*', '>' or slashes",
                 s->consumer, NAME_MAX_LEN);
    else if (!sl_log_level_parse(s->log_level, &level))
        snprintf(err, errlen, "invalid --log-level \"%s\": expected debug, info, warn or error",
                 s->log_level);
    else if (s->replay_from_seq > 0 && s->replay_from_time[0] != '\0')
        snprintf(err, errlen, "--replay-from-seq and --replay-from-time exclude each other");
    else if (s->replay_from_time[0] != '\0' &&
             (!sl_time_parse_rfc3339(s->replay_from_time, &s->replay_from_ns) ||
              s->replay_from_ns <= 0))
        snprintf(err, errlen,
                 "invalid --replay-from-time \"%s\": expected an RFC 3339 time "
                 "such as 2026-01-02T15:04:05Z",
                 s->replay_from_time);
    else
        return true;
    return false;
}

void sl_consumer_name(const sl_consumer_settings *s, char *out, size_t len)
{
    if (s->replay_from_seq > 0)
        snprintf(out, len, "%s-replay-seq-%" PRId64, s->consumer, s->replay_from_seq);
    else if (s->replay_from_ns > 0 && s->replay_from_ns % 1000000000LL == 0)
        snprintf(out, len, "%s-replay-time-%" PRId64, s->consumer,
                 (int64_t)(s->replay_from_ns / 1000000000LL));
    else if (s->replay_from_ns > 0)
        snprintf(out, len, "%s-replay-time-%" PRId64 "-%09" PRId64, s->consumer,
                 (int64_t)(s->replay_from_ns / 1000000000LL),
                 (int64_t)(s->replay_from_ns % 1000000000LL));
    else
        snprintf(out, len, "%s", s->consumer);
}

int sl_consumer_configure(const char *service, const sl_option *opts, const char *usage,
                          sl_consumer_settings *s, int argc, char **argv)
{
    sl_log_level level;
    char err[1024];

    switch (sl_config_parse(opts, argc, argv, usage, err, sizeof(err))) {
    case SL_CONFIG_HELP:
        return 0;
    case SL_CONFIG_ERROR:
        break;
    default:
        if (sl_consumer_settings_check(s, err, sizeof(err))) {
            sl_log_level_parse(s->log_level, &level);
            sl_log_init(service, level);
            return -1;
        }
    }
    fprintf(stderr, "%s: %s\n", service, err);
    return 2;
}
