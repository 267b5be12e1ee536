/* fuzz_time: RFC 3339 times as Sluice reads them (sl_time_parse_rfc3339:
 * the Sluice-Received-At header of every stream message,
 * --replay-from-time) and writes them (sl_time_rfc3339), and the
 * conversion of google.protobuf.Timestamp-like pairs (sl_time_ns_from_unix).
 *
 * The input is read three ways: as text to parse; its first 8 bytes as a
 * nanosecond count to write; its first 16 as seconds and nanos.
 *
 * Oracles:
 *   - a parsed time, written and parsed again, is the same time, and its
 *     text is the fixed 30-character form;
 *   - every int64 of nanoseconds is written as a time that parses back to
 *     itself (the whole range, 1677 to 2262);
 *   - sl_time_ns_from_unix is exact (checked in 128-bit arithmetic) and
 *     refuses exactly what does not fit an int64. */
#include "fuzz.h"
#include "sl_time.h"

static void round_trip(int64_t ns)
{
    char text[SL_RFC3339_LEN];
    int64_t back = 0;

    sl_time_rfc3339(ns, text, sizeof(text));
    FUZZ_CHECK(strlen(text) == 30 && text[10] == 'T' && text[29] == 'Z');
    FUZZ_CHECK(sl_time_parse_rfc3339(text, &back));
    FUZZ_CHECK(back == ns);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    char *text = fuzz_strndup(data, size);
    int64_t ns = 0, seconds, nanos;
    __int128 exact;

    if (sl_time_parse_rfc3339(text, &ns))
        round_trip(ns);
    free(text);

    round_trip((int64_t)fuzz_u64(&in));

    in = (fuzz_in){data, size};
    seconds = (int64_t)fuzz_u64(&in);
    nanos = (int64_t)fuzz_u64(&in) % 2000000000LL;
    exact = (__int128)seconds * 1000000000 + nanos;
    if (sl_time_ns_from_unix(seconds, nanos, &ns))
        FUZZ_CHECK(nanos >= 0 && nanos < 1000000000LL && (__int128)ns == exact);
    else
        FUZZ_CHECK(nanos < 0 || nanos >= 1000000000LL || exact < INT64_MIN || exact > INT64_MAX);
    return 0;
}
