/* sl_log: see sl_log.h. The level and service are set once before any thread
 * starts, so they are read without a lock. */
#include "sl_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sl_time.h"

static const char *log_service = "sluice";
static sl_log_level log_min = SL_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void sl_log_init(const char *service, sl_log_level level)
{
    log_service = service;
    log_min = level;
}

bool sl_log_level_parse(const char *text, sl_log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(text, level_names[i]) == 0) {
            *out = (sl_log_level)i;
            return true;
        }
    }
    if (strcmp(text, "warning") == 0) {
        *out = SL_LOG_WARN;
        return true;
    }
    return false;
}

bson_t *sl_log_begin(sl_log_level level, const char *msg)
{
    char ts[SL_RFC3339_LEN];
    bson_t *f;

    if (level < log_min)
        return NULL;
    sl_time_rfc3339(sl_time_now_ns(), ts, sizeof(ts));
    f = bson_new();
    BSON_APPEND_UTF8(f, "ts", ts);
    BSON_APPEND_UTF8(f, "level", level_names[level]);
    BSON_APPEND_UTF8(f, "service", log_service);
    BSON_APPEND_UTF8(f, "msg", msg);
    return f;
}

void sl_log_end(bson_t *fields)
{
    size_t len = 0;
    char *json;

    if (fields == NULL)
        return;
    json = bson_as_relaxed_extended_json(fields, &len);
    if (json != NULL) {
        json[len] = '\n'; /* replaces the terminator: one write per line */
        ssize_t ignored = write(STDERR_FILENO, json, len + 1);
        (void)ignored;
        bson_free(json);
    }
    bson_destroy(fields);
}

void sl_log(sl_log_level level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (level < log_min)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sl_log_end(sl_log_begin(level, msg));
}
