/* Unit tests for the life of sluice-ingest's services (services/ingest):
 *
 * - Once ingest_service_free returns, nothing reads the service any more:
 *   the HTTP thread renders /metrics, and the in-flight gauge used to read
 *   the freed service (ASan: heap-use-after-free).
 * - health_service_new reports a watch thread it could not start (NULL)
 *   instead of handing back a service whose free joins a thread that never
 *   was; thread creation is made to fail by a default stack size no mmap
 *   can satisfy. */
#include <grpc/grpc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"
#include "ingest.h"
#include "sl_metrics.h"
#include "unit.h"

static sl_grpc_server *server_new(void)
{
    sl_grpc_server_config cfg = {"127.0.0.1:0", 1, 1 << 20, NULL, NULL};
    char err[256];
    return sl_grpc_server_new(&cfg, err, sizeof(err));
}

static void test_gauge_after_free(void)
{
    ingest_config cfg = {"SLUICE", 1000, 16, 64 << 20, 16, 16, 16, {0}, NULL};
    sl_grpc_server *srv = server_new();
    ingest_service *svc;
    char *text;

    CHECK(srv != NULL);
    sl_record_limits_default(&cfg.limits);
    svc = ingest_service_new(&cfg, srv, NULL);
    CHECK(svc != NULL);
    ingest_service_free(svc);
    text = sl_metrics_render(NULL); /* as a scrape racing the shutdown would */
    CHECK(text != NULL);
    CHECK(strstr(text, "\nsluice_ingest_records_in_flight 0\n") != NULL);
    free(text);
    sl_grpc_server_stop(srv, 0, NULL, NULL);
}

static bool always_ready(void *closure)
{
    (void)closure;
    return true;
}

static void test_health_without_thread(void)
{
    sl_grpc_server *srv = server_new();
    pthread_attr_t saved, huge;
    health_service *h;

    CHECK(srv != NULL);
    pthread_getattr_default_np(&saved);
    pthread_attr_init(&huge);
    pthread_attr_setstacksize(&huge, (size_t)1 << 46);
    pthread_setattr_default_np(&huge);
    h = health_service_new(srv, always_ready, NULL);
    pthread_setattr_default_np(&saved);
    pthread_attr_destroy(&huge);
    pthread_attr_destroy(&saved);
    CHECK(h == NULL);
    health_service_free(h);
    sl_grpc_server_stop(srv, 0, NULL, NULL);
}

int main(void)
{
    grpc_init();
    TEST(test_gauge_after_free);
    TEST(test_health_without_thread);
    grpc_shutdown();
    sl_metrics_free_all();
    return UNIT_RESULT();
}
