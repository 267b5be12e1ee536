/* test_metrics: the registry, the hot-path updates and the text exposition
 * format, checked line by line against what Prometheus expects. */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "sl_metrics.h"
#include "unit.h"

/* True when the rendered text has exactly this line. */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p += n)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

static char *render(void)
{
    size_t len = 0;
    char *text = sl_metrics_render(&len);
    if (text != NULL && strlen(text) != len) {
        free(text);
        return NULL;
    }
    return text;
}

#define CHECK_LINE(line)                                                                         \
    do {                                                                                         \
        char *t_ = render();                                                                     \
        bool ok_ = t_ != NULL && has_line(t_, line);                                             \
        if (!ok_)                                                                                \
            fprintf(stderr, "missing line: %s\n--- rendered:\n%s---\n", line, t_ ? t_ : "(null)"); \
        free(t_);                                                                                \
        CHECK(ok_);                                                                              \
    } while (0)

static void test_counter_without_labels(void)
{
    sl_metric *m = sl_metric_counter("t_plain_total", "A counter.", NULL);
    CHECK_LINE("# HELP t_plain_total A counter.");
    CHECK_LINE("# TYPE t_plain_total counter");
    CHECK_LINE("t_plain_total 0");
    sl_series *s = sl_metric_with(m, NULL);
    sl_series_inc(s);
    sl_series_add(s, 2.5);
    sl_series_add(s, -7); /* counters never go down */
    CHECK_LINE("t_plain_total 3.5");
    CHECK(sl_series_value(s) == 3.5);
}

static void test_same_name_and_labels(void)
{
    sl_metric *a = sl_metric_counter("t_same_total", "h", "method,code");
    sl_metric *b = sl_metric_counter("t_same_total", "other help", "method,code");
    CHECK(a == b);
    sl_series *x = sl_metric_with(a, "GET", "200", NULL);
    const char *v[] = {"GET", "200"};
    CHECK(sl_metric_with_values(b, v, 2) == x);
    CHECK(sl_metric_with(a, "GET", "500", NULL) != x);
    sl_series_add(x, 4);
    CHECK_LINE("t_same_total{method=\"GET\",code=\"200\"} 4");
    CHECK_LINE("t_same_total{method=\"GET\",code=\"500\"} 0");
}

static void test_labelled_family_without_series_renders_nothing(void)
{
    sl_metric_gauge("t_empty", "Nothing yet.", "who");
    char *t = render();
    CHECK(t != NULL);
    bool found = strstr(t, "t_empty") != NULL;
    free(t);
    CHECK(!found);
}

static void test_escaping(void)
{
    sl_metric *m = sl_metric_gauge("t_esc", "Back\\slash and\nnewline \"kept\".", "v");
    sl_series_set(sl_metric_with(m, "a\\b\"c\nd", NULL), 1);
    CHECK_LINE("# HELP t_esc Back\\\\slash and\\nnewline \"kept\".");
    CHECK_LINE("t_esc{v=\"a\\\\b\\\"c\\nd\"} 1");
}

static void test_gauge_numbers(void)
{
    sl_metric *m = sl_metric_gauge("t_num", "Numbers.", "k");
    sl_series *s = sl_metric_with(m, "tenth", NULL);
    sl_series_set(s, 0.1);
    sl_series_add(s, 0.2);
    CHECK_LINE("t_num{k=\"tenth\"} 0.30000000000000004");
    sl_series_add(s, -1);
    CHECK_LINE("t_num{k=\"tenth\"} -0.7");
    sl_series_set(s, 0.1);
    CHECK_LINE("t_num{k=\"tenth\"} 0.1");
    sl_series_set(sl_metric_with(m, "big", NULL), 12345678901234567.0);
    CHECK_LINE("t_num{k=\"big\"} 12345678901234568");
    sl_series_set(sl_metric_with(m, "inf", NULL), INFINITY);
    CHECK_LINE("t_num{k=\"inf\"} +Inf");
    sl_series_set(sl_metric_with(m, "ninf", NULL), -INFINITY);
    CHECK_LINE("t_num{k=\"ninf\"} -Inf");
    sl_series_set(sl_metric_with(m, "nan", NULL), NAN);
    CHECK_LINE("t_num{k=\"nan\"} NaN");
    sl_series_set(sl_metric_with(m, "small", NULL), 1e-5);
    CHECK_LINE("t_num{k=\"small\"} 1e-05");
}

static void test_histogram(void)
{
    const double bounds[] = {0.1, 1, 10, INFINITY};
    sl_metric *m = sl_metric_histogram("t_latency_seconds", "Latency.", "op", bounds, 4);
    sl_series *s = sl_metric_with(m, "put", NULL);
    sl_series_observe(s, 0.05);
    sl_series_observe(s, 0.1); /* le is inclusive */
    sl_series_observe(s, 0.5);
    sl_series_observe(s, 100);
    CHECK_LINE("# TYPE t_latency_seconds histogram");
    CHECK_LINE("t_latency_seconds_bucket{op=\"put\",le=\"0.1\"} 2");
    CHECK_LINE("t_latency_seconds_bucket{op=\"put\",le=\"1\"} 3");
    CHECK_LINE("t_latency_seconds_bucket{op=\"put\",le=\"10\"} 3");
    CHECK_LINE("t_latency_seconds_bucket{op=\"put\",le=\"+Inf\"} 4");
    CHECK_LINE("t_latency_seconds_sum{op=\"put\"} 100.65");
    CHECK_LINE("t_latency_seconds_count{op=\"put\"} 4");
}

static void test_histogram_latency_preset(void)
{
    CHECK(sl_metrics_latency_nbuckets == 14);
    CHECK(sl_metrics_latency_buckets[0] == 0.0005);
    CHECK(sl_metrics_latency_buckets[sl_metrics_latency_nbuckets - 1] == 10);
    sl_metric *m = sl_metric_histogram("t_preset_seconds", "Preset.", NULL,
                                       sl_metrics_latency_buckets, sl_metrics_latency_nbuckets);
    sl_series_observe(sl_metric_with(m, NULL), 0.003);
    CHECK_LINE("t_preset_seconds_bucket{le=\"0.0005\"} 0");
    CHECK_LINE("t_preset_seconds_bucket{le=\"0.005\"} 1");
    CHECK_LINE("t_preset_seconds_bucket{le=\"+Inf\"} 1");
    CHECK_LINE("t_preset_seconds_sum 0.003");
    CHECK_LINE("t_preset_seconds_count 1");
}

static double pending(void *closure)
{
    return *(double *)closure;
}

static void test_gauge_fn(void)
{
    static double value = 42;
    sl_metric_gauge_fn("t_pending", "Computed at scrape time.", pending, &value);
    CHECK_LINE("# TYPE t_pending gauge");
    CHECK_LINE("t_pending 42");
    value = 7;
    CHECK_LINE("t_pending 7");
}

static void test_process_metrics(void)
{
    char *t = render();
    CHECK(t != NULL);
    bool ok = strstr(t, "\n# TYPE process_cpu_seconds_total counter\n") &&
              strstr(t, "\nprocess_resident_memory_bytes ") &&
              strstr(t, "\nprocess_virtual_memory_bytes ") &&
              strstr(t, "\nprocess_open_fds ") && strstr(t, "\nprocess_max_fds ");
    const char *start = strstr(t, "\nprocess_start_time_seconds ");
    double started = start ? strtod(start + 28, NULL) : 0;
    free(t);
    CHECK(ok);
    CHECK(started > 1.5e9 && started < 4e9);
}

#define THREADS 4
#define ROUNDS 100000

static void *hammer(void *arg)
{
    sl_series **s = arg;
    for (int i = 0; i < ROUNDS; i++) {
        sl_series_inc(s[0]);
        sl_series_add(s[1], 0.5);
        sl_series_observe(s[2], (i % 2) ? 0.5 : 2);
    }
    return NULL;
}

static void test_concurrent_updates(void)
{
    const double bounds[] = {1};
    sl_series *s[3] = {
        sl_metric_with(sl_metric_counter("t_conc_total", "c", NULL), NULL),
        sl_metric_with(sl_metric_gauge("t_conc_gauge", "g", NULL), NULL),
        sl_metric_with(sl_metric_histogram("t_conc_hist", "h", NULL, bounds, 1), NULL),
    };
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&th[i], NULL, hammer, s) == 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK(sl_series_value(s[0]) == THREADS * ROUNDS);
    CHECK(sl_series_value(s[1]) == THREADS * ROUNDS * 0.5);
    CHECK(sl_series_value(s[2]) == THREADS * ROUNDS * 1.25);
    CHECK_LINE("t_conc_hist_bucket{le=\"1\"} 200000");
    CHECK_LINE("t_conc_hist_count 400000");
}

static void test_free_all_then_register_again(void)
{
    sl_metrics_free_all();
    char *t = render();
    CHECK(t != NULL);
    bool clean = strstr(t, "t_plain_total") == NULL && strncmp(t, "# HELP process_", 15) == 0;
    free(t);
    CHECK(clean);
    sl_series_inc(sl_metric_with(sl_metric_counter("t_again_total", "Again.", NULL), NULL));
    CHECK_LINE("t_again_total 1");
}

int main(void)
{
    TEST(test_counter_without_labels);
    TEST(test_same_name_and_labels);
    TEST(test_labelled_family_without_series_renders_nothing);
    TEST(test_escaping);
    TEST(test_gauge_numbers);
    TEST(test_histogram);
    TEST(test_histogram_latency_preset);
    TEST(test_gauge_fn);
    TEST(test_process_metrics);
    TEST(test_concurrent_updates);
    TEST(test_free_all_then_register_again);
    sl_metrics_free_all();
    return UNIT_RESULT();
}
