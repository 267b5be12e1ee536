/* Unit tests for sl_nats: server lists (one URL or several, comma-separated,
 * as natscli takes them), URLs with the password masked for logs, the
 * credential and TLS settings checked at start, and NKey seeds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sl_nats.h"
#include "sl_nkey.h"
#include "unit.h"

/* A throwaway user key made with `nats auth nkey gen user`, and its public
 * key as `nats auth nkey show` prints it. */
#define SEED "SUALBOORHEQEYFAVUCO65FCYWMT6K6H4BNJLN2Y2N552VFHKKNBW7BANOQ"
#define PUBLIC "UC3YRRMQJQ7GI6Q4C7MLOQQ6FKEW6GDL345POJY3MAKWLAMAS3QVHEQC"

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

    CHECK(sl_nats_servers_parse("nats://u:p@[::1]:4222,nats://u@nats-0.nats-headless:4222", &s, err,
                                sizeof(err)));
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
    /* A user without a password is a token to NATS: a secret too. */
    sl_nats_url_redact("nats://tok3n@host:4222", out, sizeof(out));
    CHECK_STR(out, "nats://***@host:4222");
    sl_nats_url_redact("nats://a:p@h1,nats://h2,b:q@h3:1", out, sizeof(out));
    CHECK_STR(out, "nats://a:***@h1,nats://h2,b:***@h3:1");
    sl_nats_url_redact("nats://a:p@ss@h", out, sizeof(out));
    CHECK_STR(out, "nats://a:***@h");
    /* Too small a buffer truncates, never overflows, never leaks. */
    sl_nats_url_redact("nats://bob:s3cret@host:4222", out, 12);
    CHECK_STR(out, "nats://bob:");
}

static void test_nkey(void)
{
    char pub[SL_NKEY_PUBLIC_LEN + 1];
    char seed[] = SEED;

    CHECK(sl_nkey_user_public(SEED, pub, sizeof(pub)));
    CHECK_STR(pub, PUBLIC);
    /* One changed character breaks the checksum. */
    seed[10] = seed[10] == 'A' ? 'B' : 'A';
    CHECK(!sl_nkey_user_public(seed, pub, sizeof(pub)));
    /* A public key, an account seed, a truncated seed: not a user seed. */
    CHECK(!sl_nkey_user_public(PUBLIC, pub, sizeof(pub)));
    CHECK(!sl_nkey_user_public("SAALBOORHEQEYFAVUCO65FCYWMT6K6H4BNJLN2Y2N552VFHKKNBW7BANOQ", pub,
                               sizeof(pub)));
    CHECK(!sl_nkey_user_public("SUALBOORHEQ", pub, sizeof(pub)));
    CHECK(!sl_nkey_user_public(SEED, pub, 10));
}

static void test_nkey_find_seed(void)
{
    size_t len = 0;
    const char *creds = "-----BEGIN NATS USER JWT-----\neyJ0eXAi.eyJqdGki.RR1P\n"
                        "------END NATS USER JWT------\n\n"
                        "-----BEGIN USER NKEY SEED-----\n" SEED "\n"
                        "------END USER NKEY SEED------\n";
    const char *at = sl_nkey_find_seed(creds, &len);

    CHECK(at != NULL && len == strlen(SEED) && strncmp(at, SEED, len) == 0);
    at = sl_nkey_find_seed(SEED, &len);
    CHECK(at != NULL && len == strlen(SEED));
    at = sl_nkey_find_seed("  " SEED "\r\n", &len);
    CHECK(at != NULL && len == strlen(SEED));
    CHECK(sl_nkey_find_seed("no seed here\n" PUBLIC "\n", &len) == NULL);
}

/* Writes text into a fresh file under dir; returns the path (caller frees). */
static char *file_in(const char *dir, const char *name, const char *text)
{
    char *path = NULL;
    FILE *f;
    if (asprintf(&path, "%s/%s", dir, name) < 0)
        return NULL;
    f = fopen(path, "w");
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

static void settings_init(sl_nats_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->url = "nats://127.0.0.1:4222";
    s->url_file = s->creds = s->nkey = s->ca = s->cert = s->key = "";
}

static void test_settings_check(void)
{
    char dir[] = "/tmp/sl-unit-nats-XXXXXX", err[512];
    char *seed, *url, *empty, *creds;
    sl_nats_settings s;

    CHECK(mkdtemp(dir) != NULL);
    seed = file_in(dir, "user.nk", SEED "\n");
    url = file_in(dir, "url", "nats://bob:s3cret@h1:4222,nats://bob:s3cret@h2:4222\n");
    empty = file_in(dir, "empty", "just words\n");
    creds = file_in(dir, "user.creds",
                    "-----BEGIN NATS USER JWT-----\neyJ0.eyJq.RR1P\n"
                    "------END NATS USER JWT------\n" SEED "\n");

    /* Nothing set: open, plaintext. */
    settings_init(&s);
    CHECK(sl_nats_settings_check(&s, err, sizeof(err)));
    CHECK(!s.tls && s.nkey_public[0] == '\0');
    sl_nats_settings_free(&s);

    /* The URL from a file, newline trimmed; its password never in an error. */
    settings_init(&s);
    s.url_file = url;
    s.url_file_given = true;
    CHECK(sl_nats_settings_check(&s, err, sizeof(err)));
    CHECK_STR(s.url, "nats://bob:s3cret@h1:4222,nats://bob:s3cret@h2:4222");
    sl_nats_settings_free(&s);
    settings_init(&s);
    s.url_file = url;
    s.url_file_given = s.url_given = true;
    CHECK(!sl_nats_settings_check(&s, err, sizeof(err)));
    CHECK(strstr(err, "--nats-url") != NULL && strstr(err, "--nats-url-file") != NULL);
    sl_nats_settings_free(&s);

    /* An NKey seed: its public key is derived at start. */
    settings_init(&s);
    s.nkey = seed;
    CHECK(sl_nats_settings_check(&s, err, sizeof(err)));
    CHECK_STR(s.nkey_public, PUBLIC);
    sl_nats_settings_free(&s);
    settings_init(&s);
    s.nkey = empty;
    CHECK(!sl_nats_settings_check(&s, err, sizeof(err)));
    CHECK(strstr(err, "NATS_NKEY") != NULL && strstr(err, empty) != NULL);

    /* Credentials files: readable, with a JWT and a seed; not with an NKey. */
    settings_init(&s);
    s.creds = creds;
    CHECK(sl_nats_settings_check(&s, err, sizeof(err)));
    sl_nats_settings_free(&s);
    settings_init(&s);
    s.creds = seed;
    CHECK(!sl_nats_settings_check(&s, err, sizeof(err)));
    CHECK(strstr(err, "NATS_CREDS") != NULL && strstr(err, "JWT") != NULL);
    settings_init(&s);
    s.creds = creds;
    s.nkey = seed;
    CHECK(!sl_nats_settings_check(&s, err, sizeof(err)));
    CHECK(strstr(err, "exclude each other") != NULL);
    settings_init(&s);
    s.creds = "/nonexistent/user.creds";
    CHECK(!sl_nats_settings_check(&s, err, sizeof(err)));
    CHECK_STR(err, "cannot read --nats-creds (NATS_CREDS) /nonexistent/user.creds: "
                   "No such file or directory");

    /* TLS: on with any TLS file or a tls:// URL; certificate and key go
     * together; files must hold PEM that OpenSSL reads. */
    settings_init(&s);
    s.url = "tls://127.0.0.1:4222";
    CHECK(sl_nats_settings_check(&s, err, sizeof(err)) && s.tls);
    sl_nats_settings_free(&s);
    settings_init(&s);
    s.cert = seed;
    CHECK(!sl_nats_settings_check(&s, err, sizeof(err)));
    CHECK(strstr(err, "--nats-cert") != NULL && strstr(err, "--nats-key") != NULL);
    settings_init(&s);
    s.ca = empty;
    CHECK(!sl_nats_settings_check(&s, err, sizeof(err)));
    CHECK(strstr(err, "NATS_CA") != NULL && strstr(err, empty) != NULL);
    settings_init(&s);
    s.ca = "/nonexistent/ca.pem";
    CHECK(!sl_nats_settings_check(&s, err, sizeof(err)));
    CHECK(strstr(err, "cannot read --nats-ca (NATS_CA)") != NULL);

    unlink(seed);
    unlink(url);
    unlink(empty);
    unlink(creds);
    rmdir(dir);
    free(seed);
    free(url);
    free(empty);
    free(creds);
}

static void test_options_table(void)
{
    sl_option o[SL_NATS_NOPTIONS + 1] = {0};
    sl_nats_settings s;
    const char *envs[] = {"NATS_URL", "NATS_URL_FILE", "NATS_CREDS", "NATS_NKEY",
                          "NATS_CA",  "NATS_CERT",     "NATS_KEY"};

    sl_nats_options(o, &s);
    for (size_t i = 0; i < sizeof(envs) / sizeof(envs[0]); i++) {
        bool found = false;
        for (int k = 0; k < SL_NATS_NOPTIONS; k++)
            found = found || (o[k].env != NULL && strcmp(o[k].env, envs[i]) == 0);
        CHECK(found);
    }
    CHECK(o[SL_NATS_NOPTIONS].name == NULL);
}

static void test_describe(void)
{
    sl_nats_settings s;
    char out[512];

    settings_init(&s);
    s.url = "nats://bob:s3cret@h:4222";
    sl_nats_settings_describe(&s, out, sizeof(out));
    CHECK(strstr(out, "s3cret") == NULL && strstr(out, "user bob") != NULL);
    settings_init(&s);
    snprintf(s.nkey_public, sizeof(s.nkey_public), "%s", PUBLIC);
    s.nkey = "/etc/sluice/nats/nkey";
    s.ca = "/etc/sluice/nats/ca.pem";
    s.tls = true;
    sl_nats_settings_describe(&s, out, sizeof(out));
    CHECK(strstr(out, PUBLIC) != NULL && strstr(out, "TLS") != NULL);
    CHECK(strstr(out, "/etc/sluice/nats/ca.pem") != NULL);
    settings_init(&s);
    sl_nats_settings_describe(&s, out, sizeof(out));
    CHECK(strstr(out, "no credentials") != NULL && strstr(out, "no TLS") != NULL);
}

int main(void)
{
    TEST(test_single_and_list);
    TEST(test_rejected);
    TEST(test_redact);
    TEST(test_nkey);
    TEST(test_nkey_find_seed);
    TEST(test_settings_check);
    TEST(test_options_table);
    TEST(test_describe);
    return UNIT_RESULT();
}
