/* Unit tests for sl_time: RFC 3339 text and nanoseconds since the epoch,
 * at the edges of what an int64 of nanoseconds holds (1677-09-21 to
 * 2262-04-11). Times outside it, such as google.protobuf.Timestamp's own
 * bounds (years 0001 and 9999), are refused, never overflowed (UBSan
 * aborts the test on a signed overflow). */
#include <stdint.h>
#include <string.h>

#include "sl_time.h"
#include "unit.h"

static void test_format(void)
{
    char out[SL_RFC3339_LEN];
    sl_time_rfc3339(1700000000123456789LL, out, sizeof(out));
    CHECK_STR(out, "2023-11-14T22:13:20.123456789Z");
    sl_time_rfc3339(0, out, sizeof(out));
    CHECK_STR(out, "1970-01-01T00:00:00.000000000Z");
    sl_time_rfc3339(-1, out, sizeof(out));
    CHECK_STR(out, "1969-12-31T23:59:59.999999999Z");
    sl_time_rfc3339(INT64_MAX, out, sizeof(out));
    CHECK_STR(out, "2262-04-11T23:47:16.854775807Z");
    sl_time_rfc3339(INT64_MIN, out, sizeof(out));
    CHECK_STR(out, "1677-09-21T00:12:43.145224192Z");
}

static void test_parse(void)
{
    int64_t ns = 0;
    CHECK(sl_time_parse_rfc3339("2023-11-14T22:13:20.123456789Z", &ns));
    CHECK(ns == 1700000000123456789LL);
    CHECK(sl_time_parse_rfc3339("2023-11-14T23:13:20.5+01:00", &ns));
    CHECK(ns == 1700000000500000000LL);
    CHECK(sl_time_parse_rfc3339("1969-12-31T23:59:59.999999999Z", &ns) && ns == -1);
    CHECK(!sl_time_parse_rfc3339("2023-11-14T22:13:20", &ns));
    CHECK(!sl_time_parse_rfc3339("2023-11-14T22:13:20.Z", &ns));
}

static void test_parse_edges(void)
{
    int64_t ns = 0;
    CHECK(sl_time_parse_rfc3339("2262-04-11T23:47:16.854775807Z", &ns) && ns == INT64_MAX);
    CHECK(sl_time_parse_rfc3339("1677-09-21T00:12:43.145224192Z", &ns) && ns == INT64_MIN);
    ns = 7;
    CHECK(!sl_time_parse_rfc3339("2262-04-11T23:47:16.854775808Z", &ns));
    CHECK(!sl_time_parse_rfc3339("1677-09-21T00:12:43.145224191Z", &ns));
    CHECK(!sl_time_parse_rfc3339("2262-04-11T23:47:16.854775807-00:01", &ns));
    CHECK(ns == 7); /* untouched on failure */
}

static void test_parse_years_9999_and_0001(void)
{
    int64_t ns = 7;
    CHECK(!sl_time_parse_rfc3339("9999-12-31T23:59:59.999999999Z", &ns));
    CHECK(!sl_time_parse_rfc3339("0001-01-01T00:00:00Z", &ns));
    CHECK(!sl_time_parse_rfc3339("2300-01-01T00:00:00+14:00", &ns));
    CHECK(ns == 7);
}

static void test_ns_from_unix(void)
{
    int64_t ns = 7;
    CHECK(sl_time_ns_from_unix(1700000000, 5, &ns) && ns == 1700000000000000005LL);
    CHECK(sl_time_ns_from_unix(-1, 999999999, &ns) && ns == -1);
    CHECK(sl_time_ns_from_unix(9223372036LL, 854775807, &ns) && ns == INT64_MAX);
    CHECK(sl_time_ns_from_unix(-9223372037LL, 145224192, &ns) && ns == INT64_MIN);
    ns = 7;
    CHECK(!sl_time_ns_from_unix(9223372036LL, 854775808, &ns));
    CHECK(!sl_time_ns_from_unix(253402300799LL, 999999999, &ns)); /* 9999-12-31 */
    CHECK(!sl_time_ns_from_unix(-62135596800LL, 0, &ns));         /* 0001-01-01 */
    CHECK(!sl_time_ns_from_unix(INT64_MAX, 0, &ns));
    CHECK(!sl_time_ns_from_unix(INT64_MIN, 0, &ns));
    CHECK(!sl_time_ns_from_unix(0, 1000000000, &ns)); /* nanos out of [0, 1e9) */
    CHECK(!sl_time_ns_from_unix(0, -1, &ns));
    CHECK(ns == 7);
}

int main(void)
{
    TEST(test_format);
    TEST(test_parse);
    TEST(test_parse_edges);
    TEST(test_parse_years_9999_and_0001);
    TEST(test_ns_from_unix);
    return UNIT_RESULT();
}
