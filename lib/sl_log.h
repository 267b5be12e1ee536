/* sl_log: structured logs, one JSON object per line on stderr.
 *
 * Every line carries "ts" (RFC 3339, UTC), "level", "service" and "msg";
 * callers add their own fields through a libbson document, so escaping and
 * number formatting are libbson's, never ours:
 *
 *     bson_t *f = sl_log_begin(SL_LOG_INFO, "record stored");
 *     if (f) { BSON_APPEND_UTF8(f, "id", id); sl_log_end(f); }
 *
 * sl_log_begin returns NULL when the level is filtered out, so a disabled
 * line costs one comparison. Safe from any thread: each line is written with
 * a single write(2). */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <bson/bson.h>
#include <stdbool.h>

typedef enum sl_log_level {
    SL_LOG_DEBUG = 0,
    SL_LOG_INFO,
    SL_LOG_WARN,
    SL_LOG_ERROR,
} sl_log_level;

/* Sets the service name and minimum level; call once at start. */
void sl_log_init(const char *service, sl_log_level level);

/* Parses "debug", "info", "warn" or "error". Returns false on anything else. */
bool sl_log_level_parse(const char *text, sl_log_level *out);

/* Starts a line; NULL when the level is filtered out. The caller owns the
 * returned document until sl_log_end, which writes and frees it. */
bson_t *sl_log_begin(sl_log_level level, const char *msg);
void sl_log_end(bson_t *fields);

/* A line with only a formatted message. */
void sl_log(sl_log_level level, const char *fmt, ...) BSON_GNUC_PRINTF(2, 3);

#endif
