/* Unit tests for sl_json, the RFC 8259 grammar check (RapidJSON) in front of
 * libbson:
 * what libbson lets through although it is not JSON (found by
 * fuzz_payload_json), and Nicolas Seriot's JSONTestSuite, whose files are
 * committed as the fuzzer's seeds (test/fuzz/corpus/payload_json): every
 * y_ file is JSON, no n_ file is, and a payload is accepted exactly when it
 * is a JSON object that BSON can hold. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "sl_json.h"
#include "sl_record.h"
#include "unit.h"

static char why[256];

static bool valid(const char *text)
{
    why[0] = '\0';
    return sl_json_valid((const uint8_t *)text, strlen(text), why, sizeof(why));
}

static void test_values(void)
{
    const char *good[] = {"{}",
                          "[]",
                          "0",
                          "-0",
                          "1.5e-3",
                          "-12E+2",
                          "\"\"",
                          "\"\\u00e9\\n\"",
                          "true",
                          "false",
                          "null",
                          " { \"a\" : [ 1 , { } , [ ] ] } ",
                          "{\"a\":{\"b\":{\"c\":[null]}}}",
                          "\t\r\n[1]\n"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CHECK(valid(good[i]));
}

/* What libbson's reader took. */
static void test_lenient_forms(void)
{
    const char *bad[] = {
        "{\"a\":\"b\x15\"}",
        "{\"a\":n}",
        "{\"a\":N}",
        "{\"a\":NaN}",
        "{\"a\":Infinity}",
        "{\"a\":-Infinity}",
        "{\"a\":-05}",
        "{\"a\":-0e+.28}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":+1}",
        "{\"a\":[\"\" \"\"]}",
        "{\"a\":1 \"b\":2}",
        "{\"\":[8,{\":\":[-11]}\":[8,{\"]}",
        "{\"a\":[1,]}",
        "{\"a\":1,}",
        "{,}",
        "{\"a\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12\"}",
        "{'a':1}",
        "{a:1}",
        "{\"a\":1}}",
        "{} {}",
        "",
        "   ",
        "{\"a\":tru}",
        "{\"a\":nulll}",
        "[1]x",
        "\"abc",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(!valid(bad[i]));
        CHECK(strncmp(why, "byte ", 5) == 0);
    }
    CHECK(!sl_json_valid(NULL, 0, why, sizeof(why))); /* protobuf-c's empty bytes */
    CHECK_STR(why, "byte 0: The document is empty.");
    CHECK(!valid("{\"a\":[1 2]}"));
    CHECK_STR(why, "byte 8: Missing a comma or ']' after an array element.");
    CHECK(!valid("{\"a\":1} x"));
    CHECK_STR(why, "byte 8: The document root must not be followed by other values.");
}

/* Nesting is bounded, and costs no C stack. */
static void test_depth(void)
{
    size_t n = SL_JSON_MAX_DEPTH;
    char *text = malloc(2 * n + 3); /* n opening, n closing, one more of each, NUL */

    CHECK(text != NULL);
    memset(text, '[', n);
    memset(text + n, ']', n);
    text[2 * n] = '\0';
    CHECK(valid(text));
    memmove(text + 1, text, 2 * n + 1);
    text[0] = '[';
    strcat(text, "]");
    CHECK(!valid(text));
    CHECK(strstr(why, "nested too deeply") != NULL);
    free(text);
    /* a far deeper text, as a payload limit allows */
    text = malloc(400001);
    CHECK(text != NULL);
    memset(text, '[', 400000);
    text[400000] = '\0';
    CHECK(!valid(text));
    free(text);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) != NULL) {
        *len = fread(buf, 1, (size_t)n, f);
        buf[*len] = '\0';
    }
    fclose(f);
    return buf;
}

/* y_ files that are objects but that BSON cannot hold. */
static bool bson_cannot_hold(const char *name)
{
    return strcmp(name, "y_object_escaped_null_in_key.json") == 0;
}

static void test_json_test_suite(void)
{
    DIR *dir = opendir(SLUICE_JSON_SUITE_DIR);
    struct dirent *e;
    size_t seen = 0;

    CHECK(dir != NULL);
    while ((e = readdir(dir)) != NULL) {
        char path[1024], reason[256];
        const char *name = e->d_name;
        size_t len = 0;
        char *text;
        bool json, payload, object;

        if (name[0] != 'y' && name[0] != 'n' && name[0] != 'i')
            continue;
        snprintf(path, sizeof(path), "%s/%s", SLUICE_JSON_SUITE_DIR, name);
        text = read_all(path, &len);
        CHECK(text != NULL);
        json = sl_json_valid((const uint8_t *)text, len, why, sizeof(why));
        payload = sl_record_payload_is_object((const uint8_t *)text, len, reason, sizeof(reason));
        object = text[strspn(text, " \t\r\n")] == '{';
        free(text);
        if (name[0] == 'y' && !json)
            fprintf(stderr, "%s: refused: %s\n", name, why);
        if (name[0] == 'n' && payload)
            fprintf(stderr, "%s: accepted as a payload\n", name);
        if (name[0] == 'y')
            CHECK(json);
        if (name[0] == 'y' && object && !bson_cannot_hold(name))
            CHECK(payload);
        if (name[0] == 'n')
            CHECK(!payload);
        seen++;
    }
    closedir(dir);
    CHECK(seen > 300);
}

int main(void)
{
    TEST(test_values);
    TEST(test_lenient_forms);
    TEST(test_depth);
    TEST(test_json_test_suite);
    return UNIT_RESULT();
}
