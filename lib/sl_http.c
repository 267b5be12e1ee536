/* sl_http: see sl_http.h.
 *
 * The listening socket is bound here rather than by libmicrohttpd, so a
 * failure reads "cannot listen on <addr>: <strerror>" and the port chosen for
 * ":0" is known; the daemon gets it through MHD_OPTION_LISTEN_SOCKET and
 * closes it in MHD_stop_daemon. MHD_USE_AUTO picks epoll on Linux, so a
 * process with thousands of descriptors is not limited by select's
 * FD_SETSIZE. Each response is built in full (a scrape is a few kilobytes)
 * and handed to libmicrohttpd, which frees it once sent. */
#include "sl_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sl_log.h"
#include "sl_metrics.h"

#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define TEXT_TYPE "text/plain; charset=utf-8"

#define PEERS_SIZE (2 * SL_HTTP_MAX_CONNECTIONS) /* a power of two */

/* Open connections per remote address (loopback not counted), in an open
 * addressing table; only the polling thread touches it. */
typedef struct peer {
    unsigned char addr[16]; /* IPv4 mapped into IPv6 */
    unsigned count;
    bool used;
} peer;

/* Allocated by sl_http_start, freed by sl_http_stop. */
struct sl_http {
    struct MHD_Daemon *daemon;
    sl_ready_fn ready;
    void *closure;
    int port;
    peer peers[PEERS_SIZE];
};

/* ---- connections per address ---------------------------------------------- */

/* The address as 16 bytes; false for loopback (never limited) and for
 * families other than IP. */
static bool peer_key(const struct sockaddr *sa, unsigned char out[16])
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &in->sin_addr, 4);
        return out[12] != 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        static const unsigned char lo6[16] = {[15] = 1};
        memcpy(out, &in6->sin6_addr, 16);
        return memcmp(out, lo6, 16) != 0 &&
               !(IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && out[12] == 127);
    }
    return false;
}

/* The slot of key: its own, or where it goes: the first slot on its probe
 * chain whose address has no connection left (slots stay "used" once taken,
 * so that no chain is ever cut), else the empty one ending the chain. NULL
 * only when every slot holds an address with connections, which the
 * connection limit (half the slots) rules out. */
static peer *peer_slot(sl_http *h, const unsigned char key[16])
{
    uint32_t hash = 2166136261u;
    peer *idle = NULL;

    for (int i = 0; i < 16; i++)
        hash = (hash ^ key[i]) * 16777619u;
    for (size_t i = 0; i < PEERS_SIZE; i++) {
        peer *p = &h->peers[(hash + i) & (PEERS_SIZE - 1)];
        if (p->used && memcmp(p->addr, key, 16) == 0)
            return p;
        if (p->used && p->count == 0 && idle == NULL)
            idle = p;
        if (!p->used)
            return idle != NULL ? idle : p;
    }
    return idle;
}

/* The polling thread, before accepting a connection. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *sa, socklen_t len)
{
    unsigned char key[16];
    peer *p;

    (void)len;
    if (!peer_key(sa, key))
        return MHD_YES;
    p = peer_slot(cls, key);
    return p != NULL && (!p->used || p->count < SL_HTTP_MAX_PER_IP) ? MHD_YES : MHD_NO;
}

/* The polling thread, as a connection starts and closes. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode toe)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    unsigned char key[16];
    peer *p;

    (void)socket_ctx;
    if (ci == NULL || ci->client_addr == NULL || !peer_key(ci->client_addr, key))
        return;
    p = peer_slot(cls, key);
    if (p == NULL)
        return;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        if (!p->used || memcmp(p->addr, key, 16) != 0) {
            memcpy(p->addr, key, 16);
            p->used = true;
            p->count = 0;
        }
        p->count++;
    } else if (p->used && memcmp(p->addr, key, 16) == 0 && p->count > 0) {
        p->count--;
    }
}

/* Room for every connection the endpoint may hold, besides what the rest of
 * the process uses: the soft descriptor limit is raised towards the hard
 * one. */
static void nofile_raise(void)
{
    struct rlimit rl;
    rlim_t want = 4 * SL_HTTP_MAX_CONNECTIONS + 1024;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        sl_log(SL_LOG_WARN, "cannot raise the open file limit: %s", strerror(errno));
}

/* libmicrohttpd's messages, as JSON log lines; runs on any MHD thread. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    size_t n;

    (void)cls;
    vsnprintf(line, sizeof(line), fmt, ap);
    n = strlen(line);
    while (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    sl_log(SL_LOG_WARN, "http: %s", line);
}

/* Splits "host:port" / "[v6]:port" and resolves it; hosts are numeric, so
 * start-up never waits on DNS, and an empty host is every IPv4 interface. */
static int listen_resolve(const char *addr, struct addrinfo **ai)
{
    struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV,
                             .ai_socktype = SOCK_STREAM};
    const char *colon = strrchr(addr, ':');
    char host[256], *end;
    size_t hlen;
    long port;

    if (colon == NULL || colon[1] == '\0')
        return EAI_NONAME;
    port = strtol(colon + 1, &end, 10);
    hlen = (size_t)(colon - addr);
    if (*end != '\0' || port < 0 || port > 65535 || hlen >= sizeof(host))
        return EAI_SERVICE;
    if (hlen >= 2 && addr[0] == '[' && addr[hlen - 1] == ']')
        snprintf(host, sizeof(host), "%.*s", (int)hlen - 2, addr + 1);
    else
        snprintf(host, sizeof(host), "%.*s", (int)hlen, hlen ? addr : "0.0.0.0");
    return getaddrinfo(host, colon + 1, &hints, ai);
}

/* A bound, listening socket, or -1 with err set. */
static int listen_socket(const char *addr, int *port, char *err, size_t errlen)
{
    struct addrinfo *ai = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    int one = 1, fd = -1, rc = listen_resolve(addr, &ai);

    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, gai_strerror(rc));
        return -1;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sslen) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    } else if (ss.ss_family == AF_INET6) {
        *port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else {
        *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    freeaddrinfo(ai);
    return fd;
}

/* Queues one response; a MUST_FREE body is ours until MHD accepts it. */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    enum MHD_Result ret;

    if (r == NULL) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    return reply(c, status, TEXT_TYPE, (char *)text, strlen(text), MHD_RESPMEM_PERSISTENT);
}

static enum MHD_Result reply_ready(struct MHD_Connection *c, const sl_http *h)
{
    char why[256] = "", body[258];

    if (h->ready == NULL || h->ready(h->closure, why, sizeof(why)))
        return reply_text(c, MHD_HTTP_OK, "ready\n");
    snprintf(body, sizeof(body), "%s\n", why[0] ? why : "not ready");
    return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, TEXT_TYPE, body, strlen(body),
                 MHD_RESPMEM_MUST_COPY);
}

/* MHD's access handler, on the daemon thread. It is called once with the
 * headers, then once per piece of body, then once more; we answer on that
 * last call, and a body (nothing here takes one) is read and dropped. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state)
{
    static int headers_seen;
    size_t len;
    char *body;

    (void)version;
    (void)upload;
    if (*state == NULL) {
        *state = &headers_seen;
        return MHD_YES;
    }
    if (*upload_size != 0) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    if (strcmp(url, "/metrics") == 0) {
        body = sl_metrics_render(&len);
        return reply(c, MHD_HTTP_OK, METRICS_TYPE, body, len, MHD_RESPMEM_MUST_FREE);
    }
    if (strcmp(url, "/healthz") == 0)
        return reply_text(c, MHD_HTTP_OK, "ok\n");
    if (strcmp(url, "/readyz") == 0)
        return reply_ready(c, cls);
    return reply_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

sl_http *sl_http_start(const char *listen, sl_ready_fn ready, void *closure, char *err,
                       size_t errlen)
{
    sl_http *h = calloc(1, sizeof(*h));
    int fd;

    if (h == NULL) {
        snprintf(err, errlen, "cannot listen on %s: out of memory", listen);
        return NULL;
    }
    h->ready = ready;
    h->closure = closure;
    if ((fd = listen_socket(listen, &h->port, err, errlen)) < 0) {
        free(h);
        return NULL;
    }
    nofile_raise();
    h->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG, 0, on_accept, h,
        on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)SL_HTTP_MAX_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SL_HTTP_IDLE_TIMEOUT_S,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_END);
    if (h->daemon == NULL) {
        /* MHD closes fd on some failure paths and not others; rather than
         * risk closing a descriptor reused meanwhile, it is left open (the
         * caller exits on this error). */
        snprintf(err, errlen, "cannot serve HTTP on %s: libmicrohttpd failed to start", listen);
        free(h);
        return NULL;
    }
    return h;
}

int sl_http_port(const sl_http *h)
{
    return h->port;
}

void sl_http_stop(sl_http *h)
{
    if (h == NULL)
        return;
    MHD_stop_daemon(h->daemon);
    free(h);
}
