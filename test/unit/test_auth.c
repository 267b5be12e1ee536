/* Unit tests for the pieces of authentication and authorization that need
 * no server: API key files (sl_apikeys), the write policy (sl_policy), file
 * change stamps (sl_file), and sl_auth putting them together (bearer
 * metadata, refusals, reloading a changed policy or key file). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sl_apikeys.h"
#include "sl_auth.h"
#include "sl_file.h"
#include "sl_policy.h"
#include "unit.h"

/* 64 hex digits: the shape of a key hash. */
#define SOME_SHA "3da91d3ea1d00ff0c8d6cd5e6b4a16a2b3cda9ba4ac1b2ed9f41c9e6e8e2f0a5"
/* 64 characters, two of them not hex. */
#define NOT_HEX "zz a91d3ea1d00ff0c8d6cd5e6b4a16a2b3cda9ba4ac1b2ed9f41c9e6e8e2f0a5"

static char err[512];

static void hash_hex(const char *key, char out[65])
{
    FILE *p;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "printf %%s '%s' | sha256sum", key);
    p = popen(cmd, "r");
    if (p == NULL || fread(out, 1, 64, p) != 64)
        out[0] = '\0';
    out[64] = '\0';
    if (p != NULL)
        pclose(p);
}

static void test_apikeys(void)
{
    char h1[65], h2[65], text[1024], who[SL_PRINCIPAL_MAX];
    sl_apikeys *k;

    hash_hex("test-key-1", h1);
    hash_hex("test-key-2", h2);
    CHECK(strlen(h1) == 64 && strlen(h2) == 64);
    for (char *c = h2; *c; c++) /* uppercase hex is fine too */
        *c = (char)(*c >= 'a' && *c <= 'f' ? *c - 32 : *c);
    snprintf(text, sizeof(text), "# who  sha256\n\nbilling-svc %s\n  audit-reader\t%s  \n", h1, h2);
    k = sl_apikeys_parse(text, strlen(text), "keys", err, sizeof(err));
    CHECK(k != NULL && sl_apikeys_count(k) == 2);
    CHECK(sl_apikeys_check(k, "test-key-1", who));
    CHECK_STR(who, "billing-svc");
    CHECK(sl_apikeys_check(k, "test-key-2", who));
    CHECK_STR(who, "audit-reader");
    CHECK(!sl_apikeys_check(k, "test-key-3", who));
    CHECK(!sl_apikeys_check(k, "", who));
    CHECK(!sl_apikeys_check(k, h1, who)); /* the hash is not the key */
    sl_apikeys_free(k);
}

static void test_apikeys_errors(void)
{
    const char *bad[] = {"svc abc\n", "svc " SOME_SHA " extra\n", "svc\n",
                         "svc " SOME_SHA "0\n", "ok " SOME_SHA "\nsvc " NOT_HEX "\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(sl_apikeys_parse(bad[i], strlen(bad[i]), "keys.txt", err, sizeof(err)) == NULL);
        CHECK(strncmp(err, "keys.txt:", 9) == 0);
    }
    CHECK(sl_apikeys_load("/nonexistent/keys", err, sizeof(err)) == NULL);
    CHECK(strstr(err, "/nonexistent/keys") != NULL);
}

static void test_policy(void)
{
    const char *text = "{\"billing-svc\": [\"order.*\", \"invoice.>\"],\n"
                       " \"*\": [\"public.>\"], \"nobody\": []}";
    sl_policy *p = sl_policy_parse(text, strlen(text), "policy.json", err, sizeof(err));

    CHECK(p != NULL && sl_policy_count(p) == 2);
    CHECK(sl_policy_allows(p, "billing-svc", "order.created"));
    CHECK(!sl_policy_allows(p, "billing-svc", "order.created.v2"));
    CHECK(sl_policy_allows(p, "billing-svc", "invoice.sent.eu"));
    CHECK(!sl_policy_allows(p, "billing-svc", "invoice"));
    CHECK(sl_policy_allows(p, "billing-svc", "public.news")); /* "*" applies to everyone */
    CHECK(sl_policy_allows(p, "stranger", "public.news"));
    CHECK(!sl_policy_allows(p, "stranger", "order.created"));
    CHECK(!sl_policy_allows(p, "nobody", "order.created"));
    CHECK(!sl_policy_allows(p, "Billing-svc", "order.created")); /* exact principal */
    sl_policy_free(p);
}

static void test_policy_errors(void)
{
    struct {
        const char *text, *needle;
    } bad[] = {
        {"[\"a\"]", "not a JSON object"},
        {"{\"svc\": \"order.*\"}", "\"svc\": expected an array"},
        {"{\"svc\": [\"order.**\"]}", "\"svc\"[0]: not a type pattern"},
        {"{\"svc\": [\"order.*\", 3]}", "\"svc\"[1]"},
        {"{\"svc\": [\">.order\"]}", "not a type pattern"},
        {"{\"\": [\"a\"]}", "must not be empty"},
        {"{\"svc\": [\"a\"]", "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sl_policy *p = sl_policy_parse(bad[i].text, strlen(bad[i].text), "policy.json", err,
                                       sizeof(err));
        CHECK(p == NULL);
        CHECK(strstr(err, bad[i].needle) != NULL);
        CHECK(strncmp(err, "policy.json", 11) == 0);
    }
}

static void test_file_stamps(void)
{
    char path[] = "/tmp/sl-file-XXXXXX";
    int fd = mkstemp(path);
    sl_file_stamp st;
    size_t len;
    char *text;

    CHECK(fd >= 0);
    CHECK(write(fd, "one", 3) == 3);
    close(fd);
    CHECK(sl_file_stamp_of(path, &st));
    CHECK(!sl_file_changed(path, &st));
    text = sl_file_read(path, 16, &len, err, sizeof(err));
    CHECK(text != NULL && len == 3 && strcmp(text, "one") == 0);
    free(text);
    CHECK(sl_file_read(path, 2, &len, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "too large") != NULL);
    FILE *f = fopen(path, "w");
    fputs("four", f);
    fclose(f);
    CHECK(sl_file_changed(path, &st));
    unlink(path);
    CHECK(!sl_file_changed(path, &st)); /* gone: keep what was loaded */
}

static void md_set(grpc_metadata_array *md, grpc_metadata *one, const char *key, const char *value)
{
    one->key = grpc_slice_from_static_string(key);
    one->value = grpc_slice_from_static_string(value);
    md->count = 1;
    md->capacity = 1;
    md->metadata = one;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_auth_bearer(void)
{
    grpc_metadata_array md = {0};
    grpc_metadata one;
    char tok[64];
    bool malformed;

    CHECK(!sl_auth_bearer(&md, tok, sizeof(tok), &malformed) && !malformed);
    md_set(&md, &one, "authorization", "Bearer abc.def");
    CHECK(sl_auth_bearer(&md, tok, sizeof(tok), &malformed));
    CHECK_STR(tok, "abc.def");
    md_set(&md, &one, "Authorization", "bearer xyz");
    CHECK(sl_auth_bearer(&md, tok, sizeof(tok), &malformed));
    CHECK_STR(tok, "xyz");
    md_set(&md, &one, "authorization", "Basic dXNlcjpwYXNz");
    CHECK(!sl_auth_bearer(&md, tok, sizeof(tok), &malformed) && malformed);
    md_set(&md, &one, "authorization", "Bearer ");
    CHECK(!sl_auth_bearer(&md, tok, sizeof(tok), &malformed) && malformed);
    md_set(&md, &one, "x-other", "Bearer abc");
    CHECK(!sl_auth_bearer(&md, tok, sizeof(tok), &malformed) && !malformed);
}

static void test_auth_keys_and_policy(void)
{
    char dirp[] = "/tmp/sl-auth-XXXXXX", keys[300], policy[300], h1[65], text[256];
    char who[SL_PRINCIPAL_MAX], why[512];
    grpc_metadata_array md = {0};
    grpc_metadata one;
    sl_auth *a;

    CHECK(mkdtemp(dirp) != NULL);
    snprintf(keys, sizeof(keys), "%s/keys", dirp);
    snprintf(policy, sizeof(policy), "%s/policy.json", dirp);
    hash_hex("k-billing", h1);
    snprintf(text, sizeof(text), "billing-svc %s\n", h1);
    write_file(keys, text);
    write_file(policy, "{\"billing-svc\": [\"order.*\"]}");
    sl_auth_config cfg = {"", "", "", "", keys, policy};
    a = sl_auth_new(&cfg, err, sizeof(err));
    CHECK(a != NULL && sl_auth_required(a) && sl_auth_has_policy(a));

    CHECK(sl_auth_authenticate(a, NULL, &md, who, why, sizeof(why)) ==
          GRPC_STATUS_UNAUTHENTICATED);
    CHECK(strstr(why, "missing credentials") != NULL);
    md_set(&md, &one, "authorization", "Bearer k-wrong");
    CHECK(sl_auth_authenticate(a, NULL, &md, who, why, sizeof(why)) ==
          GRPC_STATUS_UNAUTHENTICATED);
    CHECK(strstr(why, "not a known API key") != NULL && strstr(why, "k-wrong") == NULL);
    md_set(&md, &one, "authorization", "Bearer k-billing");
    CHECK(sl_auth_authenticate(a, NULL, &md, who, why, sizeof(why)) == 0);
    CHECK_STR(who, "billing-svc");
    CHECK(sl_auth_authorize(a, who, "order.created", "record", why, sizeof(why)) == 0);
    CHECK(sl_auth_authorize(a, who, "user.created", "records[2]", why, sizeof(why)) ==
          GRPC_STATUS_PERMISSION_DENIED);
    CHECK_STR(why, "records[2].type: principal \"billing-svc\" may not write records of type "
                   "\"user.created\"");

    /* The policy changes on disk: after at most a second, it applies. A
     * broken version is ignored. */
    write_file(policy, "{\"billing-svc\": [\"order.*\", \"user.>\"]}");
    sleep(1);
    usleep(100000);
    CHECK(sl_auth_authorize(a, who, "user.created", "record", why, sizeof(why)) == 0);
    write_file(policy, "{\"billing-svc\": [\"order.**\"]}");
    sleep(1);
    usleep(100000);
    CHECK(sl_auth_authorize(a, who, "user.created", "record", why, sizeof(why)) == 0);
    sl_auth_free(a);
    unlink(keys);
    unlink(policy);
    rmdir(dirp);
}

static void test_auth_off(void)
{
    sl_auth_config cfg = {NULL, NULL, NULL, NULL, NULL, NULL};
    grpc_metadata_array md = {0};
    char who[SL_PRINCIPAL_MAX], why[256];
    sl_auth *a = sl_auth_new(&cfg, err, sizeof(err));

    CHECK(a != NULL && !sl_auth_required(a) && !sl_auth_has_policy(a));
    CHECK(sl_auth_authenticate(a, NULL, &md, who, why, sizeof(why)) == 0 && who[0] == '\0');
    CHECK(sl_auth_authorize(a, who, "any.type", "record", why, sizeof(why)) == 0);
    sl_auth_free(a);
    cfg.policy_file = "/nonexistent/policy.json";
    CHECK(sl_auth_new(&cfg, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "/nonexistent/policy.json") != NULL);
}

int main(void)
{
    TEST(test_apikeys);
    TEST(test_apikeys_errors);
    TEST(test_policy);
    TEST(test_policy_errors);
    TEST(test_file_stamps);
    TEST(test_auth_bearer);
    TEST(test_auth_keys_and_policy);
    TEST(test_auth_off);
    return UNIT_RESULT();
}
