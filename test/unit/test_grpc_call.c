/* Unit tests for the gRPC server core and the call life cycle (sl_grpc_server,
 * sl_grpc_call), in process: an sl_grpc_server on a loopback port and a gRPC
 * C-core client calling it.
 *
 * - A call leaves the lists other threads walk (ops->unlink) while its mutex
 *   is still alive: a walker that found it there may still lock it.
 * - Status details reach the client as valid UTF-8.
 * - Worker threads that cannot be created make sl_grpc_server_start fail,
 *   and the server still stops cleanly. Thread creation is made to fail by a
 *   default stack size no mmap can satisfy. */
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sl_grpc_call.h"
#include "sl_grpc_server.h"
#include "sl_metrics.h"
#include "unit.h"

#define METHOD "/test.v1.Test/Call"

/* ---- the server side: a handler that answers the half-close --------------- */

typedef struct test_call {
    sl_call base;
} test_call;

static atomic_int unlink_trylock = -2; /* pthread_mutex_trylock's answer in unlink */
static atomic_bool destroyed;
static const char *status_message = "done";

static void t_recv(sl_call *c, const uint8_t *data, size_t len)
{
    (void)data, (void)len;
    sl_call_status_locked(c, GRPC_STATUS_OK, status_message);
}

static void t_unlink(sl_call *c)
{
    int r = pthread_mutex_trylock(&c->mu);
    if (r == 0)
        pthread_mutex_unlock(&c->mu);
    atomic_store(&unlink_trylock, r);
}

static void t_destroy(sl_call *c)
{
    atomic_store(&destroyed, true);
    free(c);
}

static const sl_call_ops test_ops = {.recv = t_recv, .unlink = t_unlink, .destroy = t_destroy};

static void handle(void *closure, const sl_rpc_start *start)
{
    test_call *c = calloc(1, sizeof(*c));
    (void)closure;
    sl_call_start(&c->base, &test_ops, start);
}

static sl_grpc_server *server_new(void)
{
    sl_grpc_server_config cfg = {"127.0.0.1:0", 2, 1 << 20, NULL, NULL};
    char err[256];
    sl_grpc_server *s = sl_grpc_server_new(&cfg, err, sizeof(err));
    if (s != NULL)
        sl_grpc_server_route(s, METHOD, handle, NULL);
    return s;
}

/* ---- the client side -------------------------------------------------------- */

/* Calls METHOD with no message; returns the status, details into out. */
static grpc_status_code call_server(int port, char *out, size_t outlen)
{
    char target[64];
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_seconds(10, GPR_TIMESPAN));
    grpc_slice method = grpc_slice_from_static_string(METHOD), details = grpc_empty_slice();
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_metadata_array initial, trailing;
    grpc_channel *ch;
    grpc_call *call;
    grpc_op ops[4];

    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    ch = grpc_channel_create(target, creds, NULL);
    call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL, deadline,
                                    NULL);
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[2].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[2].data.recv_initial_metadata.recv_initial_metadata = &initial;
    ops[3].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[3].data.recv_status_on_client.trailing_metadata = &trailing;
    ops[3].data.recv_status_on_client.status = &status;
    ops[3].data.recv_status_on_client.status_details = &details;
    if (grpc_call_start_batch(call, ops, 4, (void *)1, NULL) == GRPC_CALL_OK)
        grpc_completion_queue_next(cq, deadline, NULL);
    snprintf(out, outlen, "%.*s", (int)GRPC_SLICE_LENGTH(details),
             (const char *)GRPC_SLICE_START_PTR(details));

    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    grpc_call_unref(call);
    grpc_channel_destroy(ch);
    grpc_channel_credentials_release(creds);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    return status;
}

static bool wait_destroyed(void)
{
    for (int i = 0; i < 500 && !atomic_load(&destroyed); i++)
        usleep(10000);
    return atomic_load(&destroyed);
}

/* ---- tests -------------------------------------------------------------------- */

static void test_unlink_while_mutex_alive(void)
{
    sl_grpc_server *s = server_new();
    char details[128];
    CHECK(s != NULL);
    CHECK(sl_grpc_server_start(s, details, sizeof(details)));
    atomic_store(&destroyed, false);
    status_message = "done";
    CHECK(call_server(sl_grpc_server_port(s), details, sizeof(details)) == GRPC_STATUS_OK);
    CHECK_STR(details, "done");
    CHECK(wait_destroyed());
    CHECK(atomic_load(&unlink_trylock) == 0);
    sl_grpc_server_stop(s, 1000, NULL, NULL);
}

static void test_status_details_are_utf8(void)
{
    sl_grpc_server *s = server_new();
    char details[128];
    CHECK(s != NULL);
    CHECK(sl_grpc_server_start(s, details, sizeof(details)));
    atomic_store(&destroyed, false);
    status_message = "bad \xff byte, cut \xe2\x82";
    CHECK(call_server(sl_grpc_server_port(s), details, sizeof(details)) == GRPC_STATUS_OK);
    CHECK_STR(details, "bad \xef\xbf\xbd byte, cut \xef\xbf\xbd\xef\xbf\xbd");
    CHECK(wait_destroyed());
    sl_grpc_server_stop(s, 1000, NULL, NULL);
}

/* Until restore_threads, every pthread_create without attributes fails. */
static pthread_attr_t saved_default;

static void break_threads(void)
{
    pthread_attr_t huge;
    pthread_getattr_default_np(&saved_default);
    pthread_attr_init(&huge);
    pthread_attr_setstacksize(&huge, (size_t)1 << 46);
    pthread_setattr_default_np(&huge);
    pthread_attr_destroy(&huge);
}

static void restore_threads(void)
{
    pthread_setattr_default_np(&saved_default);
    pthread_attr_destroy(&saved_default);
}

static void test_start_without_threads(void)
{
    sl_grpc_server *s = server_new();
    char err[256] = "";
    bool started;
    CHECK(s != NULL);
    break_threads();
    started = sl_grpc_server_start(s, err, sizeof(err));
    restore_threads();
    CHECK(!started);
    CHECK(strstr(err, "worker thread") != NULL);
    sl_grpc_server_stop(s, 1000, NULL, NULL); /* returns: nothing left running */
}

/* Even the one thread sl_grpc_server_stop starts for a server that never
 * ran may fail: the stop still completes. */
static void test_stop_without_threads(void)
{
    sl_grpc_server *s = server_new();
    CHECK(s != NULL);
    break_threads();
    sl_grpc_server_stop(s, 1000, NULL, NULL);
    restore_threads();
}

int main(void)
{
    grpc_init();
    TEST(test_unlink_while_mutex_alive);
    TEST(test_status_details_are_utf8);
    TEST(test_start_without_threads);
    TEST(test_stop_without_threads);
    grpc_shutdown();
    sl_metrics_free_all();
    return UNIT_RESULT();
}
