/* test_http: the metrics and probe endpoint over a real socket. The server
 * listens on 127.0.0.1:0 and the test speaks plain HTTP/1.0 to the port it
 * got, so there is no client library in the way. */
#include <arpa/inet.h>
#include <dirent.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "sl_http.h"
#include "sl_metrics.h"
#include "unit.h"

typedef struct response {
    int status;
    char raw[16384];
    const char *body; /* into raw */
} response;

/* Sends request to host:port, reads until the server closes; false on any
 * socket error. */
static bool exchange(int family, int port, const char *request, response *r)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    struct timeval tv = {.tv_sec = 5};
    size_t got = 0;
    ssize_t n;
    socklen_t sslen = family == AF_INET6 ? sizeof(*v6) : sizeof(*v4);
    int fd = socket(family, SOCK_STREAM, 0);

    if (family == AF_INET6) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        v6->sin6_addr = in6addr_loopback;
    } else {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        connect(fd, (struct sockaddr *)&ss, sslen) != 0 ||
        write(fd, request, strlen(request)) != (ssize_t)strlen(request)) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    while (got < sizeof(r->raw) - 1 && (n = read(fd, r->raw + got, sizeof(r->raw) - 1 - got)) > 0)
        got += (size_t)n;
    close(fd);
    r->raw[got] = '\0';
    r->body = strstr(r->raw, "\r\n\r\n");
    r->body = r->body ? r->body + 4 : "";
    return sscanf(r->raw, "HTTP/%*s %d", &r->status) == 1;
}

static bool get(int port, const char *path, response *r)
{
    char request[256];
    snprintf(request, sizeof(request), "GET %s HTTP/1.0\r\n\r\n", path);
    return exchange(AF_INET, port, request, r);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    if (d != NULL)
        closedir(d);
    return n;
}

/* Written by the test thread, read on the HTTP thread. */
typedef struct readiness {
    atomic_bool ready;
} readiness;

static bool check_ready(void *closure, char *why, size_t whylen)
{
    readiness *r = closure;
    bool ready = atomic_load(&r->ready);
    if (!ready)
        snprintf(why, whylen, "nats: not connected");
    return ready;
}

static readiness state;
static sl_http *server;
static int port;

static void test_start_on_port_zero(void)
{
    char err[256] = "";
    server = sl_http_start("127.0.0.1:0", check_ready, &state, err, sizeof(err));
    if (server == NULL)
        fprintf(stderr, "sl_http_start: %s\n", err);
    CHECK(server != NULL);
    port = sl_http_port(server);
    CHECK(port > 0 && port < 65536);
}

static void test_metrics(void)
{
    response r;
    sl_series_add(sl_metric_with(sl_metric_counter("t_http_total", "Test.", "path"), "/x", NULL),
                  3);
    CHECK(get(port, "/metrics", &r));
    CHECK(r.status == 200);
    CHECK(strstr(r.raw, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != NULL);
    CHECK(strstr(r.body, "# TYPE t_http_total counter\nt_http_total{path=\"/x\"} 3\n") != NULL);
    CHECK(strstr(r.body, "\nprocess_open_fds ") != NULL);
}

static void test_healthz(void)
{
    response r;
    CHECK(get(port, "/healthz", &r));
    CHECK(r.status == 200);
    CHECK_STR(r.body, "ok\n");
}

static void test_readyz(void)
{
    response r;
    atomic_store(&state.ready, false);
    CHECK(get(port, "/readyz", &r));
    CHECK(r.status == 503);
    CHECK_STR(r.body, "nats: not connected\n");
    atomic_store(&state.ready, true);
    CHECK(get(port, "/readyz", &r));
    CHECK(r.status == 200);
    CHECK_STR(r.body, "ready\n");
}

static void test_not_found_and_wrong_method(void)
{
    response r;
    CHECK(get(port, "/metrics/extra", &r));
    CHECK(r.status == 404);
    CHECK(exchange(AF_INET, port, "POST /metrics HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", &r));
    CHECK(r.status == 405);
    CHECK(strstr(r.raw, "Allow: GET, HEAD\r\n") != NULL);
    CHECK(exchange(AF_INET, port, "HEAD /healthz HTTP/1.0\r\n\r\n", &r));
    CHECK(r.status == 200);
    CHECK_STR(r.body, "");
}

static void test_port_in_use(void)
{
    char listen[64], err[256] = "", want[128];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    snprintf(want, sizeof(want), "cannot listen on %s: Address already in use", listen);
    CHECK(sl_http_start(listen, NULL, NULL, err, sizeof(err)) == NULL);
    CHECK_STR(err, want);
}

static void test_bad_addresses(void)
{
    const char *bad[] = {"9090", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:http",
                         "localhost:80", "[::1:80"};
    char err[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        CHECK(sl_http_start(bad[i], NULL, NULL, err, sizeof(err)) == NULL);
        CHECK(strncmp(err, "cannot listen on ", 17) == 0 && strchr(err, '\n') == NULL);
    }
}

static void test_ipv6_without_ready_fn(void)
{
    char err[256] = "";
    response r;
    sl_http *h = sl_http_start("[::1]:0", NULL, NULL, err, sizeof(err));
    if (h == NULL) { /* a container without IPv6 */
        printf("skip test_ipv6_without_ready_fn: %s\n", err);
        return;
    }
    bool ok = exchange(AF_INET6, sl_http_port(h), "GET /readyz HTTP/1.0\r\n\r\n", &r);
    sl_http_stop(h);
    CHECK(ok && r.status == 200);
    CHECK_STR(r.body, "ready\n");
}

int main(void)
{
    int fds_before = count_fds();

    TEST(test_start_on_port_zero);
    if (server != NULL) {
        TEST(test_metrics);
        TEST(test_healthz);
        TEST(test_readyz);
        TEST(test_not_found_and_wrong_method);
        TEST(test_port_in_use);
    }
    TEST(test_bad_addresses);
    TEST(test_ipv6_without_ready_fn);
    sl_http_stop(server);
    sl_http_stop(NULL);
    sl_metrics_free_all();
    if (count_fds() != fds_before) {
        fprintf(stderr, "descriptors leaked: %d before, %d after\n", fds_before, count_fds());
        return 1;
    }
    return UNIT_RESULT();
}
