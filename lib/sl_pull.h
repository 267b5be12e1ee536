/* sl_pull: batches from a JetStream pull consumer, and the acknowledgements
 * that settle them, over plain NATS subscriptions and publishes.
 *
 * Why not natsSubscription_Fetch. The cnats this project builds against
 * (3.4.1, Debian bookworm) sends every pull request of a subscription to the
 * same reply subject and can return from a fetch on its own timer while the
 * server still holds the request. The messages that request brings later
 * queue up in the subscription, and a fetch that starts with some queued can
 * collect more messages than the batch it allocated room for: under load the
 * consumer found up to twice its batch queued before a fetch, got more than
 * a batch of 50 from one (AddressSanitizer caught the overrun of our own
 * array) and once aborted in glibc with "malloc(): unsorted double linked
 * list corrupted". Newer cnats releases tag each request for that reason. This module does the same
 * with the protocol's own means, in a few dozen lines:
 *
 *   - one subscription on "<inbox>.*"; pull request n asks for its messages
 *     on "<inbox>.<n>" by publishing {"batch", "max_bytes", "expires",
 *     "no_wait"} to
 *     $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>;
 *   - messages arrive with their stream subject whatever request brought
 *     them, so every one is taken, never more than the caller's array holds;
 *     a message that arrives after its fetch ended waits for the next fetch;
 *   - status messages (404 no messages, 408 expired, 409, 503) arrive on
 *     the request's own reply subject: those of the current request end it,
 *     stale ones are dropped;
 *   - like natsSubscription_Fetch, a fetch asks first with no_wait (what is
 *     there now); only when nothing is there it waits, up to wait_ms, for
 *     one message, and then asks with no_wait for the rest. So a trickle of
 *     records is not held back until a batch fills, and no request of ours
 *     stays open on the server after a fetch returns.
 *
 * Acknowledgements are the JetStream ack protocol published to a message's
 * reply subject ("+ACK", "-NAK {"delay": ns}", "+TERM", "+WPI"), which is
 * what natsMsg_Ack and friends send; those require a cnats JetStream
 * subscription, which this is not. natsMsg_GetMetaData works as usual.
 *
 * Threads: an sl_pull is used by one thread at a time; the settle functions
 * are safe from any thread. */
#ifndef SL_PULL_H
#define SL_PULL_H

#include <nats/nats.h>
#include <stdint.h>

typedef struct sl_pull sl_pull;

/* Subscribes for stream's consumer on nc (which stays the caller's). The
 * consumer must exist; a fetch on a missing one fails. */
natsStatus sl_pull_open(sl_pull **out, natsConnection *nc, const char *stream,
                        const char *consumer);
void sl_pull_close(sl_pull *p);

/* Fills msgs[0..*n) with at most max messages of at most about max_bytes
 * in all (0: no bound; a single message larger than the bound still comes,
 * alone) within about wait_ms. The messages are the caller's
 * (natsMsg_Destroy). NATS_OK with *n == 0 means nothing came; an error
 * means the server refused the request (consumer deleted, no responders) or
 * the connection failed, and *n messages were still taken. */
natsStatus sl_pull_fetch(sl_pull *p, natsMsg **msgs, int max, int64_t max_bytes,
                         int64_t wait_ms, int *n);

/* ---- pure helpers, exposed for tests ------------------------------------ */

/* What a message received on the subscription is to the current fetch. */
typedef enum sl_pull_kind {
    SL_PULL_DATA,   /* a stream message: take it */
    SL_PULL_END,    /* the current request is over (404, 408, 409 Batch Completed) */
    SL_PULL_ERROR,  /* the current request was refused (409, 503, ...) */
    SL_PULL_FULL,   /* the current request's byte bound is reached (409 MaxBytes) */
    SL_PULL_IGNORE, /* a heartbeat, or a status of an earlier request */
} sl_pull_kind;

/* Classifies m, received while the current request's reply subject is
 * reply. A status message has a Status header and no body; for
 * SL_PULL_ERROR, *status and *desc (NULL when the message has none) are
 * its Status and Description headers, owned by m. Reads m only. */
sl_pull_kind sl_pull_classify(natsMsg *m, const char *reply, const char **status,
                              const char **desc);

/* Settle one message: acknowledge, redeliver after delay_ms, stop
 * redelivering, or restart its ack timer. */
natsStatus sl_pull_ack(natsConnection *nc, natsMsg *m);
natsStatus sl_pull_nak(natsConnection *nc, natsMsg *m, int64_t delay_ms);
natsStatus sl_pull_term(natsConnection *nc, natsMsg *m);
natsStatus sl_pull_in_progress(natsConnection *nc, natsMsg *m);

#endif
