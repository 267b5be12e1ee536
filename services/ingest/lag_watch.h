/* lag_watch: sluice-ingest's view of every durable consumer of its stream.
 *
 * A consumer that is down reports nothing about itself, and that is exactly
 * when its unprocessed records grow old. Ingest stays up, so every
 * LAG_WATCH_EVERY_MS a thread of its own lists the stream's consumers
 * (sl_lag) and publishes, per consumer,
 *
 *     sluice_ingest_consumer_oldest_unprocessed_age_seconds{consumer}
 *     sluice_ingest_consumer_pending_messages{consumer}
 *
 * and the stream's sluice_ingest_stream_max_age_seconds, so that one alert
 * (docs/operations.md) fires before retention drops a record no consumer
 * has processed. A consumer that disappears reads 0 from then on.
 *
 * Threads: lag_watch_start starts the thread, lag_watch_stop joins it; the
 * sl_js must outlive it. */
#ifndef LAG_WATCH_H
#define LAG_WATCH_H

#include <stdbool.h>

#include "sl_js.h"

#define LAG_WATCH_EVERY_MS 5000

typedef struct lag_watch lag_watch;

/* Returns NULL when the thread cannot start (logged). */
lag_watch *lag_watch_start(sl_js *js, const char *stream);
void lag_watch_stop(lag_watch *w);

#endif
