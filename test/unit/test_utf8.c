/* Unit tests for sl_utf8: invalid bytes replaced, copies cut on character
 * boundaries. */
#include <bson/bson.h>
#include <stdlib.h>
#include <string.h>

#include "sl_utf8.h"
#include "unit.h"

#define REPL "\xef\xbf\xbd" /* U+FFFD */

static char out[64];

static const char *copy(const char *in, size_t inlen, size_t outlen)
{
    memset(out, 'X', sizeof(out));
    sl_utf8_copy(out, outlen, in, inlen);
    return out;
}

static void test_valid_unchanged(void)
{
    const char *s = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 ok";
    CHECK_STR(copy(s, strlen(s), sizeof(out)), s);
    CHECK(sl_utf8_copy(out, sizeof(out), s, strlen(s)) == strlen(s));
    CHECK_STR(copy("", 0, sizeof(out)), "");
}

static void test_invalid_replaced(void)
{
    CHECK_STR(copy("a\377b", 3, sizeof(out)), "a" REPL "b");
    CHECK_STR(copy("\xc3(", 2, sizeof(out)), REPL "(");
    CHECK_STR(copy("\xed\xa0\x80", 3, sizeof(out)), REPL REPL REPL); /* a surrogate */
    CHECK_STR(copy("\xc0\x80", 2, sizeof(out)), REPL REPL);          /* overlong NUL */
    CHECK_STR(copy("a\0b", 3, sizeof(out)), "a" REPL "b");
    CHECK_STR(copy("\xe2\x82", 2, sizeof(out)), REPL REPL); /* cut short */
}

static void test_cut_on_boundary(void)
{
    const char *euros = "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"; /* 9 bytes */
    CHECK_STR(copy(euros, 9, 10), euros);
    CHECK_STR(copy(euros, 9, 9), "\xe2\x82\xac\xe2\x82\xac");
    CHECK_STR(copy(euros, 9, 7), "\xe2\x82\xac\xe2\x82\xac");
    CHECK_STR(copy(euros, 9, 6), "\xe2\x82\xac");
    CHECK_STR(copy(euros, 9, 1), "");
    CHECK_STR(copy("ab\xff", 3, 5), "ab"); /* no room for the whole U+FFFD */
    out[0] = 'X';
    CHECK(sl_utf8_copy(out, 0, "a", 1) == 0 && out[0] == 'X');
}

static void test_dup(void)
{
    char *d = sl_utf8_dup("x\xf5y");
    CHECK(d != NULL);
    CHECK_STR(d, "x" REPL "y");
    free(d);
}

/* Whatever the bytes and the room, the copy is valid UTF-8 that fits. */
static void test_any_bytes(void)
{
    char in[32];
    srandom(11);
    for (int round = 0; round < 20000; round++) {
        size_t inlen = (size_t)random() % sizeof(in), outlen = (size_t)random() % 40 + 1, n;
        for (size_t i = 0; i < inlen; i++)
            in[i] = (char)random();
        n = sl_utf8_copy(out, outlen, in, inlen);
        CHECK(n < outlen && strlen(out) == n);
        CHECK(bson_utf8_validate(out, n, false));
    }
}

int main(void)
{
    TEST(test_valid_unchanged);
    TEST(test_invalid_replaced);
    TEST(test_cut_on_boundary);
    TEST(test_dup);
    TEST(test_any_bytes);
    return UNIT_RESULT();
}
