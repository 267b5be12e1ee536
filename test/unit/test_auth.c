/* Unit tests for the pieces of authentication and authorization that need
 * no server: API key files (sl_apikeys), the write policy (sl_policy), and
 * file change stamps (sl_file). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sl_apikeys.h"
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

int main(void)
{
    TEST(test_apikeys);
    TEST(test_apikeys_errors);
    TEST(test_policy);
    TEST(test_policy_errors);
    TEST(test_file_stamps);
    return UNIT_RESULT();
}
