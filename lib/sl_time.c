/* sl_time: see sl_time.h.
 *
 * An int64 of nanoseconds spans 1677-09-21 to 2262-04-11. Every conversion
 * into it goes through sl_time_ns_from_unix, which refuses what does not
 * fit rather than overflow: google.protobuf.Timestamp reaches the years 1
 * and 9999, and so can a time a user types. */
#include "sl_time.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t sl_time_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t sl_time_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

struct timespec sl_time_deadline(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

void sl_time_rfc3339(int64_t ns, char *out, size_t outlen)
{
    time_t secs = (time_t)(ns / 1000000000LL);
    long frac = (long)(ns % 1000000000LL);
    struct tm tm;

    if (frac < 0) {
        frac += 1000000000L;
        secs -= 1;
    }
    gmtime_r(&secs, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

bool sl_time_ns_from_unix(int64_t seconds, int64_t nanos, int64_t *ns)
{
    int64_t whole, sum;

    if (nanos < 0 || nanos >= 1000000000LL)
        return false;
    /* Before the epoch, borrow a second: the earliest time an int64 holds,
     * -9223372037 s + 145224192 ns, has a whole part that alone does not. */
    if (seconds < 0 && nanos > 0) {
        seconds++;
        nanos -= 1000000000LL;
    }
    if (__builtin_mul_overflow(seconds, 1000000000LL, &whole) ||
        __builtin_add_overflow(whole, nanos, &sum))
        return false;
    *ns = sum;
    return true;
}

bool sl_time_parse_rfc3339(const char *text, int64_t *ns)
{
    struct tm tm;
    const char *p;
    int64_t frac = 0;
    int digits = 0;
    long offset = 0;

    memset(&tm, 0, sizeof(tm));
    p = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL)
        return false;
    if (*p == '.') {
        for (p++; isdigit((unsigned char)*p); p++, digits++) {
            if (digits < 9)
                frac = frac * 10 + (*p - '0');
        }
        if (digits == 0)
            return false;
        for (int d = digits; d < 9; d++)
            frac *= 10;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && isdigit((unsigned char)p[1]) &&
               isdigit((unsigned char)p[2]) && p[3] == ':' && isdigit((unsigned char)p[4]) &&
               isdigit((unsigned char)p[5])) {
        offset = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600 + ((p[4] - '0') * 10 + (p[5] - '0')) * 60;
        if (*p == '-')
            offset = -offset;
        p += 6;
    } else {
        return false;
    }
    if (*p != '\0')
        return false;
    return sl_time_ns_from_unix((int64_t)timegm(&tm) - offset, frac, ns);
}
