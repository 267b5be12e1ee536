/* sl_dlq: the dead-letter stream, where a downstream consumer puts what it
 * can never store, so that nothing leaves the pipeline silently.
 *
 * Stream SLUICE_DLQ, subjects sluice.dlq.>, created by the first consumer
 * that needs it (with the main stream's replica count) and otherwise left as
 * it is. A dead letter is the original message (same body) on subject
 * sluice.dlq.<consumer>.<type> with:
 *
 *   - the original headers, except the server's own (Nats-*);
 *   - Sluice-Error     why, on one line;
 *   - Sluice-Consumer  the consumer that gave up;
 *   - Sluice-Stream-Seq where the original sits in the main stream;
 *   - Sluice-Record-Id the original Nats-Msg-Id (the record id);
 *   - Nats-Msg-Id      "<consumer>:<stored key>" (sl_delivery_key: stream,
 *                      sequence and the time the stream stored it), so that
 *                      a letter published twice (a crash between PubAck and
 *                      Term) is stored once, while the same record given up
 *                      by two consumers, or a record of a re-created stream
 *                      with the same sequence, is stored again.
 *
 * sl_dlq_msg builds that message and is pure; sl_dlq_publish sends it and
 * waits for the PubAck. Both are safe from any thread; the caller owns
 * everything it passes in. */
#ifndef SL_DLQ_H
#define SL_DLQ_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_DLQ_STREAM "SLUICE_DLQ"
#define SL_DLQ_SUBJECT_PREFIX "sluice.dlq."
#define SL_HDR_ERROR "Sluice-Error"
#define SL_HDR_CONSUMER "Sluice-Consumer"
#define SL_HDR_STREAM_SEQ "Sluice-Stream-Seq"
#define SL_HDR_RECORD_ID "Sluice-Record-Id"

/* One message given up on, as the consumer knows it. */
typedef struct sl_dlq_letter {
    natsMsg *original; /* headers and body are copied from it */
    const char *consumer;
    const char *stream; /* the main stream */
    uint64_t stream_seq;
    int64_t stream_time_ns; /* when the main stream stored it */
    const char *type; /* the record type; NULL or not a subject tail: "unknown" */
    const char *error;
} sl_dlq_letter;

/* "sluice.dlq.<consumer>.<type>"; a type that is not a valid subject tail
 * becomes "unknown". */
void sl_dlq_subject(const char *consumer, const char *type, char *out, size_t len);

/* The dead letter for l; *out is a new message the caller owns. */
natsStatus sl_dlq_msg(natsMsg **out, const sl_dlq_letter *l);

/* Creates the dead-letter stream when missing, with the replica count of
 * main_stream. False when it neither exists nor could be created. */
bool sl_dlq_ensure(jsCtx *js, const char *main_stream);

/* Publishes the letter and waits for the PubAck: true once stored. On
 * failure it tries twice more, a second apart, re-creating the stream in
 * case it was deleted and telling the server (through nc) that the original
 * is still in progress. Logs each letter stored ("dead-lettered") and each
 * failure. */
bool sl_dlq_publish(jsCtx *js, natsConnection *nc, const sl_dlq_letter *l, uint64_t deliveries);

#endif
