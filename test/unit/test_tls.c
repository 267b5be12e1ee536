/* Unit tests for sl_tls: the identity a client certificate names (URI SAN,
 * else DNS SAN, else CN) and the checks made on the server's files.
 * Certificates are made at test time with the openssl command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sl_file.h"
#include "sl_tls.h"
#include "unit.h"

static char dir[] = "/tmp/sl-tls-XXXXXX";
static char err[512];

/* A self-signed certificate and key at <dir>/<name>.{crt,key}. */
static int make_cert(const char *name, const char *subject, const char *san)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
             "-subj '%s' %s%s%s -keyout %s/%s.key -out %s/%s.crt 2>/dev/null",
             subject, san ? "-addext 'subjectAltName=" : "", san ? san : "", san ? "'" : "", dir,
             name, dir, name);
    return system(cmd);
}

static char *path(const char *name, const char *ext)
{
    static char buf[4][256];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 256, "%s/%s.%s", dir, name, ext);
    return p;
}

static void identity_of(const char *name, char *out)
{
    size_t len;
    char *pem = sl_file_read(path(name, "crt"), 1 << 20, &len, err, sizeof(err));
    out[0] = '\0';
    if (pem == NULL || !sl_tls_identity_from_pem(pem, len, out))
        strcpy(out, "(none)");
    free(pem);
}

static void test_identity(void)
{
    char who[SL_PRINCIPAL_MAX];

    CHECK(make_cert("uri", "/CN=cn-name", "DNS:dns.example,URI:spiffe://corp/billing,"
                                          "URI:spiffe://corp/second") == 0);
    CHECK(make_cert("dns", "/CN=cn-name", "DNS:billing.svc.cluster.local,DNS:other") == 0);
    CHECK(make_cert("cn", "/O=corp/CN=billing-svc", NULL) == 0);
    CHECK(make_cert("none", "/O=corp", NULL) == 0);
    identity_of("uri", who);
    CHECK_STR(who, "spiffe://corp/billing");
    identity_of("dns", who);
    CHECK_STR(who, "billing.svc.cluster.local");
    identity_of("cn", who);
    CHECK_STR(who, "billing-svc");
    identity_of("none", who);
    CHECK_STR(who, "(none)");
    CHECK(!sl_tls_identity_from_pem("garbage", 7, who));
}

static void test_server_files(void)
{
    sl_tls *t;

    CHECK(make_cert("server", "/CN=localhost", "DNS:localhost,IP:127.0.0.1") == 0);
    t = sl_tls_new(path("server", "crt"), path("server", "key"), NULL, err, sizeof(err));
    CHECK(t != NULL && !sl_tls_mutual(t));
    sl_tls_free(t);
    t = sl_tls_new(path("server", "crt"), path("server", "key"), path("cn", "crt"), err,
                   sizeof(err));
    CHECK(t != NULL && sl_tls_mutual(t));
    sl_tls_free(t);
    /* A key of another certificate. */
    CHECK(sl_tls_new(path("server", "crt"), path("cn", "key"), NULL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "does not belong") != NULL);
    CHECK(sl_tls_new(path("server", "crt"), "/nonexistent.key", NULL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "/nonexistent.key") != NULL);
    CHECK(sl_tls_new(path("server", "crt"), path("server", "key"), path("server", "key"), err,
                     sizeof(err)) == NULL);
    CHECK(strstr(err, "no PEM certificate") != NULL);
}

int main(void)
{
    char cmd[300];
    if (mkdtemp(dir) == NULL)
        return 1;
    TEST(test_identity);
    TEST(test_server_files);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return UNIT_RESULT();
}
