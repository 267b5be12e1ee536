/* sl_pull: see sl_pull.h. */
#include "sl_pull.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_log.h"
#include "sl_time.h"

#define API_NEXT "$JS.API.CONSUMER.MSG.NEXT."
#define REPLY_MAX 128

struct sl_pull {
    natsConnection *nc;
    natsSubscription *sub;
    natsInbox *inbox;
    char *next_subject;    /* where pull requests go */
    uint64_t request;      /* number of the current request */
    char reply[REPLY_MAX]; /* "<inbox>.<request>" */
    int64_t max_bytes;     /* of the current fetch; 0: no bound */
};

natsStatus sl_pull_open(sl_pull **out, natsConnection *nc, const char *stream, const char *consumer)
{
    sl_pull *p = calloc(1, sizeof(*p));
    char wildcard[REPLY_MAX];
    natsStatus s = p != NULL ? natsInbox_Create(&p->inbox) : NATS_NO_MEMORY;

    if (s == NATS_OK) {
        p->nc = nc;
        snprintf(wildcard, sizeof(wildcard), "%s.*", p->inbox);
        s = natsConnection_SubscribeSync(&p->sub, nc, wildcard);
    }
    /* A batch is bounded by the caller; the byte limit must not drop it. */
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(p->sub, -1, -1);
    if (s == NATS_OK && asprintf(&p->next_subject, API_NEXT "%s.%s", stream, consumer) < 0) {
        p->next_subject = NULL;
        s = NATS_NO_MEMORY;
    }
    if (s != NATS_OK) {
        sl_pull_close(p);
        return s;
    }
    *out = p;
    return NATS_OK;
}

void sl_pull_close(sl_pull *p)
{
    if (p == NULL)
        return;
    if (p->sub != NULL) {
        natsSubscription_Unsubscribe(p->sub);
        natsSubscription_Destroy(p->sub);
    }
    natsInbox_Destroy(p->inbox);
    free(p->next_subject);
    free(p);
}

/* ---- requests ----------------------------------------------------------- */

static natsStatus request_send(sl_pull *p, int batch, int64_t max_bytes, int64_t wait_ms,
                               bool no_wait)
{
    /* The server gives up a little before we do, so its 408 ends the wait. */
    int64_t expires_ns = (int64_t)((wait_ms > 20 ? wait_ms - 10 : wait_ms) * 1000000LL);
    char body[160];

    p->request++;
    snprintf(p->reply, sizeof(p->reply), "%s.%" PRIu64, p->inbox, p->request);
    snprintf(body, sizeof(body), "{\"batch\":%d,\"max_bytes\":%" PRId64 ",\"expires\":%" PRId64
             "%s}", batch, max_bytes > 0 ? max_bytes : 0, expires_ns,
             no_wait ? ",\"no_wait\":true" : "");
    return natsConnection_PublishRequestString(p->nc, p->next_subject, p->reply, body);
}

/* A delivery, as opposed to a status message (which has a Status header and
 * no body; its status is then left in *status). */
static bool is_delivery(natsMsg *m, const char **status)
{
    return natsMsg_GetDataLength(m) > 0 || natsMsgHeader_Get(m, "Status", status) != NATS_OK;
}

sl_pull_kind sl_pull_classify(natsMsg *m, const char *reply, const char **status,
                              const char **desc)
{
    *status = NULL;
    *desc = NULL;
    if (is_delivery(m, status))
        return SL_PULL_DATA;
    if (strcmp(natsMsg_GetSubject(m), reply) != 0 || strncmp(*status, "100", 3) == 0)
        return SL_PULL_IGNORE;
    if (strncmp(*status, "404", 3) == 0 || strncmp(*status, "408", 3) == 0)
        return SL_PULL_END;
    natsMsgHeader_Get(m, "Description", desc);
    if (strncmp(*status, "409", 3) == 0 && *desc != NULL && strstr(*desc, "MaxBytes") != NULL)
        return SL_PULL_FULL;
    /* A request with max_bytes that delivered its whole batch ends so. */
    if (strncmp(*status, "409", 3) == 0 && *desc != NULL &&
        strstr(*desc, "Batch Completed") != NULL)
        return SL_PULL_END;
    return SL_PULL_ERROR;
}

/* Takes messages into msgs until max, the end of the current request, or
 * the deadline (monotonic ms); *full says the request ended at its byte
 * bound. */
static natsStatus collect(sl_pull *p, natsMsg **msgs, int max, int *n, int64_t deadline,
                          bool *full)
{
    *full = false;
    while (*n < max) {
        int64_t left = deadline - sl_time_mono_ms();
        const char *status, *desc;
        natsMsg *m = NULL;
        natsStatus s;
        sl_pull_kind kind;

        if (left <= 0)
            return NATS_OK;
        s = natsSubscription_NextMsg(&m, p->sub, left);
        if (s == NATS_TIMEOUT)
            return NATS_OK;
        if (s != NATS_OK)
            return s;
        kind = sl_pull_classify(m, p->reply, &status, &desc);
        if (kind == SL_PULL_DATA) {
            msgs[(*n)++] = m;
            continue;
        }
        if (kind == SL_PULL_ERROR)
            sl_log(SL_LOG_WARN, "pull request refused: %s %s", status, desc != NULL ? desc : "");
        natsMsg_Destroy(m);
        if (kind == SL_PULL_FULL)
            *full = true;
        if (kind == SL_PULL_FULL || kind == SL_PULL_END)
            return NATS_OK;
        if (kind == SL_PULL_ERROR)
            return NATS_ERR;
    }
    return NATS_OK;
}

/* Messages that arrived after an earlier fetch ended (its request was still
 * open on the server): they are deliveries like any other. */
static natsStatus take_queued(sl_pull *p, natsMsg **msgs, int max, int *n)
{
    const char *status = NULL;
    int queued = 0;

    natsSubscription_GetPending(p->sub, &queued, NULL);
    while (queued-- > 0 && *n < max) {
        natsMsg *m = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, p->sub, 1);
        if (s == NATS_TIMEOUT)
            break;
        if (s != NATS_OK)
            return s;
        if (is_delivery(m, &status))
            msgs[(*n)++] = m;
        else
            natsMsg_Destroy(m); /* the status of a request that is over */
    }
    return NATS_OK;
}

/* Sends a request for batch messages and collects them into msgs. A
 * request that ends at its byte bound is a full fetch, unless it brought
 * nothing: then the next message alone is larger than the bound, and it is
 * asked for alone, without one (its size is bounded by the server's
 * max_payload), so that no message can stall the consumer. */
static natsStatus request_collect(sl_pull *p, natsMsg **msgs, int max, int *n, int batch,
                                  int64_t deadline, bool no_wait)
{
    int64_t left = deadline - sl_time_mono_ms();
    int before = *n;
    bool full = false;
    natsStatus s;

    if (left < 1)
        return NATS_OK;
    s = request_send(p, batch, p->max_bytes, left, no_wait);
    if (s == NATS_OK)
        s = collect(p, msgs, max, n, deadline, &full);
    if (s != NATS_OK || !full || *n > before)
        return s;
    sl_log(SL_LOG_WARN, "a message is larger than the fetch bound of %" PRId64
           " bytes; fetching it alone", p->max_bytes);
    s = request_send(p, 1, 0, left, true);
    if (s == NATS_OK)
        s = collect(p, msgs, max, n, deadline, &full);
    return s;
}

natsStatus sl_pull_fetch(sl_pull *p, natsMsg **msgs, int max, int64_t max_bytes,
                         int64_t wait_ms, int *n)
{
    int64_t deadline = sl_time_mono_ms() + wait_ms;
    natsStatus s;

    *n = 0;
    p->max_bytes = max_bytes;
    s = take_queued(p, msgs, max, n);
    if (s == NATS_OK && *n < max) /* what is there now, at once */
        s = request_collect(p, msgs, max, n, max - *n, deadline, true);
    if (s != NATS_OK || *n > 0)
        return s;
    /* Nothing there: wait for one message, then take what came with it.
     * Waiting for one rather than a batch means no request stays open on
     * the server once this fetch returns. */
    s = request_collect(p, msgs, max, n, 1, deadline, false);
    if (s == NATS_OK && *n == 1 && max > 1)
        s = request_collect(p, msgs, max, n, max - 1, deadline, true);
    return s;
}

/* ---- settling ----------------------------------------------------------- */

static natsStatus reply(natsConnection *nc, natsMsg *m, const char *body)
{
    const char *to = natsMsg_GetReply(m);
    if (to == NULL || to[0] == '\0')
        return NATS_INVALID_ARG;
    return natsConnection_PublishString(nc, to, body);
}

natsStatus sl_pull_ack(natsConnection *nc, natsMsg *m)
{
    return reply(nc, m, "+ACK");
}

natsStatus sl_pull_nak(natsConnection *nc, natsMsg *m, int64_t delay_ms)
{
    char body[64];
    snprintf(body, sizeof(body), "-NAK {\"delay\":%" PRId64 "}", (int64_t)(delay_ms * 1000000LL));
    return reply(nc, m, body);
}

natsStatus sl_pull_term(natsConnection *nc, natsMsg *m)
{
    return reply(nc, m, "+TERM");
}

natsStatus sl_pull_in_progress(natsConnection *nc, natsMsg *m)
{
    return reply(nc, m, "+WPI");
}
