/* sl_grpc_call: see sl_grpc_call.h. */
#include "sl_grpc_call.h"

#include <grpc/support/alloc.h>
#include <stdlib.h>
#include <string.h>

#include "sl_log.h"
#include "sl_retry.h"

#define CALL_OF(tag, member) ((sl_call *)((char *)(tag) - offsetof(sl_call, member)))

/* The last reference is gone. The handler unlinks the call first: until
 * then another thread may find it in a list and lock its mutex, so the
 * mutex is destroyed last, just before the memory goes. */
static void call_destroy(sl_call *c)
{
    if (c->ops->unlink != NULL)
        c->ops->unlink(c);
    if (c->status_sent)
        grpc_slice_unref(c->status_details);
    if (c->status_sent && c->retry_ms > 0)
        grpc_slice_unref(c->status_md.value);
    if (c->recv_buf != NULL)
        grpc_byte_buffer_destroy(c->recv_buf);
    sl_grpc_server_call_done(c->server, c->call);
    pthread_mutex_destroy(&c->mu);
    c->ops->destroy(c);
}

void sl_call_ref_locked(sl_call *c)
{
    c->refs++;
}

void sl_call_unref_unlock(sl_call *c)
{
    bool last = --c->refs == 0;
    pthread_mutex_unlock(&c->mu);
    if (last)
        call_destroy(c);
}

static bool start_batch_locked(sl_call *c, grpc_op *ops, size_t n, sl_tag *tag)
{
    grpc_call_error e;
    c->refs++;
    e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        c->refs--;
        c->dead = true;
        sl_log(SL_LOG_ERROR, "grpc_call_start_batch failed: %d", (int)e);
        return false;
    }
    return true;
}

void sl_call_recv_locked(sl_call *c)
{
    grpc_op op;
    if (c->recv_busy || c->dead)
        return;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_buf;
    c->recv_busy = start_batch_locked(c, &op, 1, &c->on_recv);
}

void sl_call_send_locked(sl_call *c, uint8_t *body, size_t len, bool final, int code,
                         const char *message)
{
    grpc_op ops[3];
    size_t n = 0;

    if (c->dead || c->status_sent || c->send_busy) {
        free(body);
        return;
    }
    memset(ops, 0, sizeof(ops));
    if (!c->metadata_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->metadata_sent = true;
    }
    if (body != NULL) {
        c->send_buf = sl_grpc_bb_wrap(body, len);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->send_buf;
    }
    if (final) {
        c->status_details = sl_grpc_status_slice(message);
        c->status_sent = true;
        sl_rpc_stats_handled(c->stats, code);
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = (grpc_status_code)code;
        ops[n].data.send_status_from_server.status_details = &c->status_details;
        if (c->retry_ms > 0) {
            char *text = grpc_slice_to_c_string(c->status_details);
            c->status_md.key = grpc_slice_from_static_string("grpc-status-details-bin");
            c->status_md.value = sl_retry_status_details(code, text, c->retry_ms);
            gpr_free(text);
            ops[n].data.send_status_from_server.trailing_metadata_count = 1;
            ops[n].data.send_status_from_server.trailing_metadata = &c->status_md;
        }
        n++;
    }
    c->send_busy = start_batch_locked(c, ops, n, &c->on_send);
    if (!c->send_busy && c->send_buf != NULL) {
        grpc_byte_buffer_destroy(c->send_buf);
        c->send_buf = NULL;
    }
}

void sl_call_status_locked(sl_call *c, int code, const char *message)
{
    sl_call_send_locked(c, NULL, 0, true, code, message);
}

void sl_call_status_retry_locked(sl_call *c, int code, const char *message, int64_t retry_ms)
{
    if (c->status_sent)
        return;
    c->retry_ms = retry_ms;
    sl_call_send_locked(c, NULL, 0, true, code, message);
    if (!c->status_sent)
        c->retry_ms = 0; /* not sent (busy or dead): the hint goes with it */
}

/* gRPC worker: a RECV_MESSAGE completed. */
static void on_recv(sl_tag *tag, bool ok)
{
    sl_call *c = CALL_OF(tag, on_recv);
    grpc_byte_buffer *bb;
    uint8_t *data = NULL;
    size_t len = 0;

    pthread_mutex_lock(&c->mu);
    c->recv_busy = false;
    bb = c->recv_buf;
    c->recv_buf = NULL;
    if (!ok)
        c->dead = true;
    if (bb != NULL) {
        data = sl_grpc_bb_take(bb, &len);
        if (data == NULL)
            sl_call_status_locked(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
    if (data != NULL || bb == NULL)
        c->ops->recv(c, data, len);
    free(data);
    sl_call_unref_unlock(c);
}

/* gRPC worker: a send batch completed. */
static void on_send(sl_tag *tag, bool ok)
{
    sl_call *c = CALL_OF(tag, on_send);
    pthread_mutex_lock(&c->mu);
    c->send_busy = false;
    if (c->send_buf != NULL) {
        grpc_byte_buffer_destroy(c->send_buf);
        c->send_buf = NULL;
    }
    if (!ok)
        c->dead = true;
    if (c->ops->sent != NULL)
        c->ops->sent(c);
    sl_call_unref_unlock(c);
}

/* gRPC worker: the call is over for the client (status sent or cancelled). */
static void on_close(sl_tag *tag, bool ok)
{
    sl_call *c = CALL_OF(tag, on_close);
    (void)ok;
    pthread_mutex_lock(&c->mu);
    if (c->cancelled) {
        if (!c->status_sent && !c->dead)
            sl_rpc_stats_handled(c->stats, GRPC_STATUS_CANCELLED);
        c->dead = true;
    }
    if (c->ops->closed != NULL)
        c->ops->closed(c);
    sl_call_unref_unlock(c);
}

void sl_call_start(sl_call *c, const sl_call_ops *ops, const sl_rpc_start *start)
{
    grpc_op op;

    c->on_recv.done = on_recv;
    c->on_send.done = on_send;
    c->on_close.done = on_close;
    c->ops = ops;
    c->server = start->server;
    c->call = start->call;
    c->deadline_ms = start->deadline_ms;
    c->stats = start->stats;
    pthread_mutex_init(&c->mu, NULL);

    pthread_mutex_lock(&c->mu);
    c->refs++; /* held while the first batches start */
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    start_batch_locked(c, &op, 1, &c->on_close);
    sl_call_recv_locked(c);
    sl_call_unref_unlock(c);
}
