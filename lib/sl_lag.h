/* sl_lag: how far behind a durable consumer is, in messages and in time, as
 * JetStream tells it.
 *
 * Messages: what the stream holds that no replica has been given yet
 * (NumPending) and what is out with a replica, unacknowledged
 * (NumAckPending). Time: the age of the oldest record the consumer has not
 * processed, i.e. the stream's timestamp of the message just above the
 * consumer's ack floor (everything at or below it is acknowledged). That age
 * is what retention races against: a stream that discards by age (or by
 * size) drops a record whether or not a consumer has processed it, so an
 * oldest-unprocessed age that nears the stream's max age is the one signal
 * that comes before data is lost. sluice-transform and sluice-audit report
 * their own consumer's lag; sluice-ingest, which stays up while a consumer
 * is down, reports every durable consumer of its stream.
 *
 * sl_lag_read makes two or three JetStream API requests; call it every few
 * seconds, not per message. Any thread; the caller owns out. */
#ifndef SL_LAG_H
#define SL_LAG_H

#include <nats/nats.h>
#include <stdint.h>

typedef struct sl_lag {
    uint64_t pending;     /* in the stream, not delivered yet */
    uint64_t ack_pending; /* delivered, not acknowledged */
    uint64_t redelivered; /* delivered more than once, not acknowledged */
    double oldest_age_s;  /* age of the oldest unprocessed record; 0 when none */
} sl_lag;

/* Reads the lag of consumer on stream at wall-clock time now_ns. */
natsStatus sl_lag_read(jsCtx *ctx, const char *stream, const char *consumer, int64_t now_ns,
                       sl_lag *out);

/* The same from a consumer info already read (js_Consumers lists them). */
natsStatus sl_lag_from_info(jsCtx *ctx, const char *stream, const jsConsumerInfo *ci,
                            int64_t now_ns, sl_lag *out);

/* The stream's max age in seconds (0: unlimited), or -1 when it cannot be
 * read. */
double sl_lag_stream_max_age_s(jsCtx *ctx, const char *stream);

#endif
