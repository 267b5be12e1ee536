/* sl_time: wall-clock time as nanoseconds since the Unix epoch (an int64:
 * 1677-09-21 to 2262-04-11), and its RFC 3339 text form with nanoseconds
 * (2026-11-28T02:51:33.123456789Z), the form of the Sluice-Received-At
 * header and of every time in the logs. */
#ifndef SL_TIME_H
#define SL_TIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SL_RFC3339_LEN 40

int64_t sl_time_now_ns(void);
int64_t sl_time_mono_ms(void);

/* The CLOCK_REALTIME moment ms milliseconds from now, as
 * pthread_cond_timedwait takes it. */
struct timespec sl_time_deadline(int64_t ms);

/* Writes ns as RFC 3339 UTC with nine fractional digits. */
void sl_time_rfc3339(int64_t ns, char *out, size_t outlen);

/* Nanoseconds since the epoch of seconds + nanos (nanos in [0, 1e9)), or
 * false when that is not a time an int64 of nanoseconds holds. */
bool sl_time_ns_from_unix(int64_t seconds, int64_t nanos, int64_t *ns);

/* Parses RFC 3339 ("2026-11-28T02:51:33Z", optional fraction, Z or +hh:mm).
 * Returns false, leaving *ns alone, when text is not such a time or one
 * outside 1677-09-21T00:12:43.145224192Z .. 2262-04-11T23:47:16.854775807Z. */
bool sl_time_parse_rfc3339(const char *text, int64_t *ns);

#endif
