/* Unit tests for sl_config: value parsers, precedence of flag over
 * environment over default, bounds, the one-line errors, and secrets read
 * from files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sl_config.h"
#include "sl_time.h"
#include "unit.h"

static const char *s_listen;
static int64_t s_timeout, s_bytes, s_count;
static bool s_flag, s_timeout_given, s_count_given;

static const sl_option opts[] = {
    {"listen", "UT_LISTEN", SL_OPT_STRING, "0.0.0.0:1", "address", &s_listen, 0, 0, NULL},
    {"timeout", "UT_TIMEOUT", SL_OPT_DURATION, "5s", "timeout", &s_timeout, 1, 0, &s_timeout_given},
    {"bytes", "UT_BYTES", SL_OPT_SIZE, "1MiB", "bytes", &s_bytes, -1, 0, NULL},
    {"count", "UT_COUNT", SL_OPT_INT, "3", "count", &s_count, 1, 10, &s_count_given},
    {"flag", "UT_FLAG", SL_OPT_BOOL, "false", "flag", &s_flag, 0, 0, NULL},
    {0}};

static sl_config_result parse(int argc, char **argv, char *err)
{
    return sl_config_parse(opts, argc, argv, "usage", err, 256);
}

static void test_parsers(void)
{
    int64_t v;
    bool b;
    CHECK(sl_config_parse_duration("250ms", &v) && v == 250);
    CHECK(sl_config_parse_duration("2m", &v) && v == 120000);
    CHECK(sl_config_parse_duration("7d", &v) && v == 7 * 86400000LL);
    CHECK(sl_config_parse_duration("15", &v) && v == 15);
    CHECK(!sl_config_parse_duration("5 s", &v));
    CHECK(!sl_config_parse_duration("-1s", &v));
    CHECK(!sl_config_parse_duration("abc", &v));
    CHECK(sl_config_parse_size("64KiB", &v) && v == 65536);
    CHECK(sl_config_parse_size("8MiB", &v) && v == 8 << 20);
    CHECK(sl_config_parse_size("-1", &v) && v == -1);
    CHECK(!sl_config_parse_size("8XB", &v));
    CHECK(sl_config_parse_bool("Yes", &b) && b);
    CHECK(sl_config_parse_bool("off", &b) && !b);
    CHECK(!sl_config_parse_bool("maybe", &b));
}

static void test_defaults(void)
{
    char err[256];
    char *argv[] = {"prog", NULL};
    unsetenv("UT_LISTEN");
    unsetenv("UT_TIMEOUT");
    CHECK(parse(1, argv, err) == SL_CONFIG_OK);
    CHECK_STR(s_listen, "0.0.0.0:1");
    CHECK(s_timeout == 5000 && s_bytes == 1 << 20 && s_count == 3 && !s_flag);
}

static void test_precedence(void)
{
    char err[256];
    char *argv[] = {"prog", "--timeout=1s", "--flag", NULL};
    char *off[] = {"prog", "--flag=false", NULL};
    setenv("UT_LISTEN", "127.0.0.1:9", 1);
    setenv("UT_TIMEOUT", "9s", 1);
    CHECK(parse(3, argv, err) == SL_CONFIG_OK);
    CHECK_STR(s_listen, "127.0.0.1:9"); /* environment over default */
    CHECK(s_timeout == 1000);           /* flag over environment */
    CHECK(s_flag);                      /* a boolean flag alone is true */
    CHECK(s_timeout_given && !s_count_given);
    unsetenv("UT_TIMEOUT");
    setenv("UT_COUNT", "4", 1);
    CHECK(parse(2, off, err) == SL_CONFIG_OK);
    CHECK(!s_flag && !s_timeout_given && s_count_given); /* the environment gives too */
    unsetenv("UT_COUNT");
    unsetenv("UT_LISTEN");
    unsetenv("UT_TIMEOUT");
}

static void test_errors(void)
{
    char err[256];
    char *bad_count[] = {"prog", "--count", "11", NULL};
    char *bad_unit[] = {"prog", "--timeout", "5 parsecs", NULL};
    char *unknown[] = {"prog", "--nope", NULL};
    char *stray[] = {"prog", "extra", NULL};
    CHECK(parse(3, bad_count, err) == SL_CONFIG_ERROR);
    CHECK_STR(err, "invalid --count \"11\": must be between 1 and 10");
    CHECK(parse(3, bad_unit, err) == SL_CONFIG_ERROR);
    CHECK(strstr(err, "--timeout") != NULL && strstr(err, "duration") != NULL);
    CHECK(parse(2, unknown, err) == SL_CONFIG_ERROR);
    CHECK(strstr(err, "--nope") != NULL);
    CHECK(parse(2, stray, err) == SL_CONFIG_ERROR);
    setenv("UT_COUNT", "zero", 1);
    char *none[] = {"prog", NULL};
    CHECK(parse(1, none, err) == SL_CONFIG_ERROR);
    CHECK(strstr(err, "UT_COUNT") != NULL);
    unsetenv("UT_COUNT");
}

/* getopt keeps where it was inside a cluster of short options ("-xh")
 * between calls; a parse that stopped there must not leave the next one
 * to start from it (reading the earlier argv, possibly freed). Found by
 * fuzz_config. */
static void test_parse_again_after_stop(void)
{
    char err[256];
    char first[] = "-xh";
    char *cluster[] = {"prog", first, NULL};
    char *none[] = {"prog", NULL};

    CHECK(parse(2, cluster, err) == SL_CONFIG_ERROR);
    memset(first, '.', 3); /* as if the caller freed it */
    CHECK(parse(1, none, err) == SL_CONFIG_OK);
}

static void test_time(void)
{
    char buf[SL_RFC3339_LEN];
    int64_t ns;
    sl_time_rfc3339(1700000000000000001LL, buf, sizeof(buf));
    CHECK_STR(buf, "2023-11-14T22:13:20.000000001Z");
    CHECK(sl_time_parse_rfc3339("2023-11-14T22:13:20.5Z", &ns) && ns == 1700000000500000000LL);
    CHECK(sl_time_parse_rfc3339("2023-11-14T23:13:20+01:00", &ns) && ns == 1700000000000000000LL);
    CHECK(!sl_time_parse_rfc3339("2023-11-14 22:13:20", &ns));
    CHECK(!sl_time_parse_rfc3339("2023-11-14T22:13:20", &ns));
}

/* Writes text into a fresh temporary file; returns its path (static). */
static const char *temp_file(const char *text, size_t len)
{
    static char path[64];
    int fd;
    snprintf(path, sizeof(path), "/tmp/sl-unit-config-XXXXXX");
    fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    if (write(fd, text, len) != (ssize_t)len)
        path[0] = '\0';
    close(fd);
    return path;
}

static void test_read_file(void)
{
    char err[256], *v = NULL;
    const char *p;

    /* A Kubernetes Secret file usually ends with one newline; it goes. */
    p = temp_file("nats://u:s3cret@h:4222\n", 23);
    CHECK(p != NULL && sl_config_read_file("--nats-url-file", p, &v, err, sizeof(err)));
    CHECK_STR(v, "nats://u:s3cret@h:4222");
    free(v);
    unlink(p);
    p = temp_file("mongodb://h/db\r\n\n", 17);
    CHECK(p != NULL && sl_config_read_file("x", p, &v, err, sizeof(err)));
    CHECK_STR(v, "mongodb://h/db");
    free(v);
    unlink(p);
    /* Empty (or only newlines), or a NUL inside: refused, naming the file,
     * never showing its content. */
    p = temp_file("\n", 1);
    CHECK(p != NULL && !sl_config_read_file("--mongodb-uri-file", p, &v, err, sizeof(err)));
    CHECK(strstr(err, "--mongodb-uri-file") != NULL && strstr(err, p) != NULL);
    CHECK(strstr(err, "empty") != NULL);
    unlink(p);
    p = temp_file("s3cret\0x", 8);
    CHECK(p != NULL && !sl_config_read_file("x", p, &v, err, sizeof(err)));
    CHECK(strstr(err, "s3cret") == NULL);
    unlink(p);
    CHECK(!sl_config_read_file("--nats-url-file (NATS_URL_FILE)", "/nonexistent/url", &v, err,
                               sizeof(err)));
    CHECK_STR(err, "cannot read --nats-url-file (NATS_URL_FILE) /nonexistent/url: "
                   "No such file or directory");
    CHECK(v == NULL);
}

int main(void)
{
    TEST(test_parsers);
    TEST(test_defaults);
    TEST(test_precedence);
    TEST(test_errors);
    TEST(test_parse_again_after_stop);
    TEST(test_time);
    TEST(test_read_file);
    return UNIT_RESULT();
}
