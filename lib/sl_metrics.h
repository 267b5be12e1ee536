/* sl_metrics: Prometheus metrics for the services, one registry per process.
 *
 * A family (sl_metric) is a name, a help line, a type and the names of its
 * labels; a series (sl_series) is one combination of label values of a
 * family. Families and series are created once, usually at start, and live
 * until sl_metrics_free_all at exit, so callers look a series up once and
 * keep the pointer:
 *
 *     static sl_series *stored;
 *     sl_metric *m = sl_metric_counter("sluice_records_total",
 *                                      "Records by outcome.", "outcome");
 *     stored = sl_metric_with(m, "stored", NULL);
 *     ...
 *     sl_series_inc(stored);            (any thread, no lock)
 *
 * Threads: every call is safe from any thread. Updating a series is a few
 * atomic operations and never takes a lock; creating families and series and
 * rendering take the registry mutex. Families render in creation order,
 * series in creation order within a family; a family without series renders
 * nothing (a family without labels gets its one series at creation).
 *
 * Misuse is a programming error and aborts with a message on stderr: a bad
 * metric or label name, the wrong number of label values, a name registered
 * again with another type or other labels, set or observe on the wrong type.
 * So does running out of memory. */
#ifndef SL_METRICS_H
#define SL_METRICS_H

#include <stddef.h>

typedef struct sl_metric sl_metric; /* a family: name, help, type, label names */
typedef struct sl_series sl_series; /* one labelled series of a family */

/* Register a family, or return the one already registered under that name.
 * Metric names match [a-zA-Z_:][a-zA-Z0-9_:]*; label_names is a comma list
 * ("method,code") of names matching [a-zA-Z_][a-zA-Z0-9_]*, not starting
 * with "__", or NULL for none. The strings are copied. */
sl_metric *sl_metric_counter(const char *name, const char *help, const char *label_names);
sl_metric *sl_metric_gauge(const char *name, const char *help, const char *label_names);

/* bounds are the buckets' upper bounds, strictly increasing; the +Inf bucket
 * is implicit (a trailing +Inf is accepted and dropped). Copied. */
sl_metric *sl_metric_histogram(const char *name, const char *help, const char *label_names,
                               const double *bounds, size_t nbounds);

/* A gauge without labels whose value fn computes at scrape time, on the
 * thread rendering (the HTTP thread), with the registry mutex held: fn must
 * be quick and must not call sl_metric_* or sl_metrics_render. Registering
 * the name again replaces fn and closure; closure must outlive the
 * registration (until it is replaced or sl_metrics_free_all). */
void sl_metric_gauge_fn(const char *name, const char *help, double (*fn)(void *closure),
                        void *closure);

/* The series for these label values (NULL-terminated, exactly as many as the
 * family has label names), created on first use. Values are copied; the
 * pointer stays valid until sl_metrics_free_all. Takes the registry mutex:
 * cache the result rather than call this per event. */
sl_series *sl_metric_with(sl_metric *m, ...);
sl_series *sl_metric_with_values(sl_metric *m, const char *const *values, size_t nvalues);

/* Counters and gauges. A counter never goes down: a negative or NaN add to a
 * counter is ignored. set is for gauges only. */
void sl_series_inc(sl_series *s);
void sl_series_add(sl_series *s, double v);
void sl_series_set(sl_series *s, double v);

/* Histograms: counts v in the first bucket whose bound is >= v (NaN falls in
 * +Inf) and adds it to _sum. */
void sl_series_observe(sl_series *s, double v);

/* The current value of a counter or gauge series, or the _sum of a histogram
 * series; for tests and for services that report their own numbers. */
double sl_series_value(const sl_series *s);

/* Renders every family, then the process_* metrics read from /proc/self, in
 * the Prometheus text exposition format 0.0.4. Returns a malloc'd
 * NUL-terminated string the caller frees; *len (if not NULL) its length. */
char *sl_metrics_render(size_t *len);

/* Frees every family and series; every sl_metric and sl_series pointer is
 * dangling afterwards. For exit, once no thread updates metrics any more and
 * the HTTP endpoint is stopped, so LeakSanitizer stays quiet. */
void sl_metrics_free_all(void);

/* Latency buckets in seconds, 0.0005 to 10. */
extern const double sl_metrics_latency_buckets[];
extern const size_t sl_metrics_latency_nbuckets;

#endif
