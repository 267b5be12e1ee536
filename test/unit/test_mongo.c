/* Unit tests for sl_mongo's URI masking: what may be logged of a
 * MONGODB_URI (the password and the secret options become "***"), and the
 * URI check's error line, which shows the URI masked. */
#include <string.h>

#include "sl_mongo.h"
#include "unit.h"

static void redacts(const char *uri, const char *want)
{
    char out[512];
    sl_mongo_uri_redact(uri, out, sizeof(out));
    CHECK_STR(out, want);
}

static void test_redact_userinfo(void)
{
    redacts("mongodb://127.0.0.1:27017/sluice", "mongodb://127.0.0.1:27017/sluice");
    redacts("mongodb://sluice:s3cret@h:27017/sluice", "mongodb://sluice:***@h:27017/sluice");
    redacts("mongodb+srv://sluice:s3cret@cluster.example.com/sluice?w=majority",
            "mongodb+srv://sluice:***@cluster.example.com/sluice?w=majority");
    redacts("mongodb://sluice:s3cret@m0:27017,m1:27017,m2:27017/sluice?replicaSet=rs0",
            "mongodb://sluice:***@m0:27017,m1:27017,m2:27017/sluice?replicaSet=rs0");
    /* A user alone names, it does not open. */
    redacts("mongodb://sluice@h/sluice?authMechanism=MONGODB-X509",
            "mongodb://sluice@h/sluice?authMechanism=MONGODB-X509");
    redacts("mongodb://:s3cret@h/db", "mongodb://:***@h/db");
    redacts("", "");
}

/* Malformed URIs are the ones printed in errors: a raw '@', '/' or '?' in
 * the password must not let any of it through. */
static void test_redact_malformed(void)
{
    redacts("mongodb://u:s3c@ret@h/db", "mongodb://u:***@h/db");
    redacts("mongodb://u:s3c/ret@h/db", "mongodb://u:***@h/db");
    redacts("mongodb://u:s3c?ret@h/db", "mongodb://u:***@h/db");
    redacts("mongodb://u:s3%cret@h/db", "mongodb://u:***@h/db");
    redacts("mongo://u:s3cret@h", "mongo://u:***@h");
    redacts("u:s3cret@h", "u:***@h");
}

static void test_redact_options(void)
{
    redacts("mongodb://h/db?tls=true&tlsCertificateKeyFile=/etc/c.pem&"
            "tlsCertificateKeyFilePassword=pw2",
            "mongodb://h/db?tls=true&tlsCertificateKeyFile=/etc/c.pem&"
            "tlsCertificateKeyFilePassword=***");
    redacts("mongodb://u:p@h/db?TLSCERTIFICATEKEYFILEPASSWORD=pw2&w=1",
            "mongodb://u:***@h/db?TLSCERTIFICATEKEYFILEPASSWORD=***&w=1");
    redacts("mongodb://h/db?authMechanism=MONGODB-AWS&authMechanismProperties="
            "AWS_SESSION_TOKEN:tok3n",
            "mongodb://h/db?authMechanism=MONGODB-AWS&authMechanismProperties=***");
    redacts("mongodb://h/db?sslClientCertificateKeyPassword=pw3",
            "mongodb://h/db?sslClientCertificateKeyPassword=***");
}

static void test_redact_truncates(void)
{
    char out[16];
    sl_mongo_uri_redact("mongodb://sluice:s3cret@h/db", out, sizeof(out));
    CHECK(strstr(out, "s3") == NULL);
    CHECK(strlen(out) < sizeof(out));
}

static void test_check_masks(void)
{
    char err[512];
    CHECK(sl_mongo_uri_check("mongodb://sluice:s3cret@h/db", err, sizeof(err)));
    CHECK(!sl_mongo_uri_check("mongodb://sluice:s3cret@h:99999/db", err, sizeof(err)));
    CHECK(strstr(err, "s3cret") == NULL);
    CHECK(strstr(err, "mongodb://sluice:***@h:99999/db") != NULL);
    CHECK(!sl_mongo_uri_check("mongodb://sluice:s3%cret@h/db", err, sizeof(err)));
    CHECK(strstr(err, "s3") == NULL);
}

int main(void)
{
    TEST(test_redact_userinfo);
    TEST(test_redact_malformed);
    TEST(test_redact_options);
    TEST(test_redact_truncates);
    TEST(test_check_masks);
    return UNIT_RESULT();
}
