/* Unit tests for sl_nats: server lists (one URL or several, comma-separated,
 * as natscli takes them) and URLs with the password masked for logs. */
#include <string.h>

#include "sl_nats.h"
#include "unit.h"

static void test_single_and_list(void)
{
    sl_nats_servers s;
    char err[256];

    CHECK(sl_nats_servers_parse("nats://127.0.0.1:4222", &s, err, sizeof(err)));
    CHECK(s.n == 1);
    CHECK_STR(s.urls[0], "nats://127.0.0.1:4222");
    sl_nats_servers_free(&s);

    CHECK(sl_nats_servers_parse(" nats://a:4222, nats://b:4223 ,tls://c,d:4225,", &s, err,
                                sizeof(err)));
    CHECK(s.n == 4);
    CHECK_STR(s.urls[0], "nats://a:4222");
    CHECK_STR(s.urls[1], "nats://b:4223");
    CHECK_STR(s.urls[2], "tls://c");
    CHECK_STR(s.urls[3], "d:4225");
    sl_nats_servers_free(&s);

    CHECK(sl_nats_servers_parse("nats://u:p@[::1]:4222,nats://u@nats-0.nats-headless:4222", &s,
                                err, sizeof(err)));
    CHECK(s.n == 2);
    sl_nats_servers_free(&s);
}

static void test_rejected(void)
{
    sl_nats_servers s;
    char err[256];

    CHECK(!sl_nats_servers_parse("", &s, err, sizeof(err)));
    CHECK(strstr(err, "no server URL") != NULL);
    CHECK(!sl_nats_servers_parse(" , ", &s, err, sizeof(err)));
    CHECK(!sl_nats_servers_parse("nats://a:4222 nats://b:4222", &s, err, sizeof(err)));
    CHECK(!sl_nats_servers_parse("nats://a:99999", &s, err, sizeof(err)));
    CHECK(!sl_nats_servers_parse("nats://a:4222/path", &s, err, sizeof(err)));
    CHECK(!sl_nats_servers_parse("nats://nats://a", &s, err, sizeof(err)));
    /* The error names the entry, but never its password. */
    CHECK(!sl_nats_servers_parse("nats://a:4222,nats://bob:s3cret@b:x", &s, err, sizeof(err)));
    CHECK(strstr(err, "s3cret") == NULL);
    CHECK(strstr(err, "nats://bob:***@b:x") != NULL);
}

static void test_redact(void)
{
    char out[256];

    sl_nats_url_redact("nats://127.0.0.1:4222", out, sizeof(out));
    CHECK_STR(out, "nats://127.0.0.1:4222");
    sl_nats_url_redact("nats://bob:s3cret@host:4222", out, sizeof(out));
    CHECK_STR(out, "nats://bob:***@host:4222");
    sl_nats_url_redact("nats://tok3n@host:4222", out, sizeof(out));
    CHECK_STR(out, "nats://tok3n@host:4222");
    sl_nats_url_redact("nats://a:p@h1,nats://h2,b:q@h3:1", out, sizeof(out));
    CHECK_STR(out, "nats://a:***@h1,nats://h2,b:***@h3:1");
    sl_nats_url_redact("nats://a:p@ss@h", out, sizeof(out));
    CHECK_STR(out, "nats://a:***@h");
    /* Too small a buffer truncates, never overflows, never leaks. */
    sl_nats_url_redact("nats://bob:s3cret@host:4222", out, 12);
    CHECK_STR(out, "nats://bob:");
}

int main(void)
{
    TEST(test_single_and_list);
    TEST(test_rejected);
    TEST(test_redact);
    return UNIT_RESULT();
}
