/* sl_metrics: see sl_metrics.h.
 *
 * The registry is a singly linked list of families, each holding a singly
 * linked list of its series, both appended under registry_lock and walked
 * under it when rendering or looking a series up. Nothing is removed before
 * sl_metrics_free_all, which is why a series pointer can be cached.
 *
 * The hot path never locks. A counter or gauge value, and a histogram's sum,
 * is a double kept as its bit pattern in an _Atomic uint64_t and updated
 * with a compare-and-swap loop; histogram buckets are plain atomic counters,
 * one per bucket and not cumulative, so an observation touches one bucket
 * and the sum. The renderer accumulates the buckets and reports _count as the
 * +Inf bucket, so _count and the buckets of one scrape always agree. Relaxed
 * ordering is enough: each number is independent, and a scrape is a sample
 * in time anyway. */
#include "sl_metrics.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_LABELS 16

typedef enum metric_kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM, KIND_GAUGE_FN } metric_kind;

static const char *const kind_names[] = {"counter", "gauge", "histogram", "gauge"};

/* Allocated by sl_metric_with_values, freed by sl_metrics_free_all. */
struct sl_series {
    sl_series *next;
    const sl_metric *family;
    _Atomic uint64_t value;    /* bits of a double: counter/gauge value, histogram _sum */
    _Atomic uint64_t *buckets; /* histograms: nbounds + 1 counts, the last one +Inf */
    char *values[MAX_LABELS];  /* family->nlabels copies */
};

/* Allocated by family_register, freed by sl_metrics_free_all. Immutable once
 * registered, except series (appended) and fn/closure (replaced), both under
 * registry_lock. */
struct sl_metric {
    sl_metric *next;
    metric_kind kind;
    char *name, *help;
    size_t nlabels;
    char *labels[MAX_LABELS];
    size_t nbounds;
    double *bounds;
    double (*fn)(void *closure);
    void *closure;
    sl_series *series, **series_tail;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static sl_metric *families;
static sl_metric **families_tail = &families;

const double sl_metrics_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const size_t sl_metrics_latency_nbuckets =
    sizeof(sl_metrics_latency_buckets) / sizeof(sl_metrics_latency_buckets[0]);

static _Noreturn void die(const char *what, const char *name)
{
    fprintf(stderr, "sl_metrics: %s: %s\n", name ? name : "(null)", what);
    abort();
}

/* Wraps every allocation: out of memory is fatal, as in Redis's zmalloc. */
static void *must(void *p)
{
    if (p == NULL)
        die("out of memory", "sl_metrics");
    return p;
}

/* ---- names and families ------------------------------------------------ */

static bool name_valid(const char *s, size_t len, bool colon)
{
    if (len == 0 || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || (colon && c == ':');
        if (!ok)
            return false;
    }
    return true;
}

static void labels_parse(sl_metric *m, const char *list)
{
    const char *p = list;

    if (list == NULL || *list == '\0')
        return;
    for (;;) {
        size_t len = strcspn(p, ",");
        if (!name_valid(p, len, false) || (len >= 2 && p[0] == '_' && p[1] == '_') ||
            (m->kind == KIND_HISTOGRAM && len == 2 && memcmp(p, "le", 2) == 0))
            die("invalid label name", m->name);
        if (m->nlabels == MAX_LABELS)
            die("too many labels", m->name);
        m->labels[m->nlabels] = must(strndup(p, len));
        for (size_t i = 0; i < m->nlabels; i++)
            if (strcmp(m->labels[i], m->labels[m->nlabels]) == 0)
                die("duplicate label name", m->name);
        m->nlabels++;
        if (p[len] == '\0')
            break;
        p += len + 1;
    }
}

static void bounds_copy(sl_metric *m, const double *bounds, size_t n)
{
    if (n > 0 && isinf(bounds[n - 1]) && bounds[n - 1] > 0)
        n--;
    m->bounds = must(calloc(n ? n : 1, sizeof(double)));
    for (size_t i = 0; i < n; i++) {
        if (isnan(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            die("histogram bounds must increase strictly", m->name);
        m->bounds[i] = bounds[i];
    }
    m->nbounds = n;
}

static void series_free(sl_series *s, size_t nlabels)
{
    for (size_t i = 0; i < nlabels; i++)
        free(s->values[i]);
    free(s->buckets);
    free(s);
}

static void family_free(sl_metric *m)
{
    for (sl_series *s = m->series, *next; s != NULL; s = next) {
        next = s->next;
        series_free(s, m->nlabels);
    }
    for (size_t i = 0; i < m->nlabels; i++)
        free(m->labels[i]);
    free(m->bounds);
    free(m->name);
    free(m->help);
    free(m);
}

static bool family_same(const sl_metric *a, const sl_metric *b)
{
    if (a->kind != b->kind || a->nlabels != b->nlabels || a->nbounds != b->nbounds)
        return false;
    for (size_t i = 0; i < a->nlabels; i++)
        if (strcmp(a->labels[i], b->labels[i]) != 0)
            return false;
    for (size_t i = 0; i < a->nbounds; i++)
        if (a->bounds[i] != b->bounds[i])
            return false;
    return true;
}

static sl_series *series_create(sl_metric *m, const char *const *values)
{
    sl_series *s = must(calloc(1, sizeof(*s)));

    s->family = m;
    atomic_init(&s->value, 0); /* the bits of +0.0 */
    for (size_t i = 0; i < m->nlabels; i++)
        s->values[i] = must(strdup(values[i]));
    if (m->kind == KIND_HISTOGRAM) {
        s->buckets = must(calloc(m->nbounds + 1, sizeof(*s->buckets)));
        for (size_t i = 0; i <= m->nbounds; i++)
            atomic_init(&s->buckets[i], 0);
    }
    *m->series_tail = s;
    m->series_tail = &s->next;
    return s;
}

/* Builds the family outside the lock (validation may abort), then either
 * appends it or, when the name exists, checks it matches and returns the
 * existing one. */
static sl_metric *family_register(metric_kind kind, const char *name, const char *help,
                                  const char *label_names, const double *bounds, size_t nbounds,
                                  double (*fn)(void *), void *closure)
{
    sl_metric *m = must(calloc(1, sizeof(*m))), *old;

    if (name == NULL || !name_valid(name, strlen(name), true))
        die("invalid metric name", name);
    m->kind = kind;
    m->name = must(strdup(name));
    m->help = must(strdup(help ? help : ""));
    m->fn = fn;
    m->closure = closure;
    m->series_tail = &m->series;
    labels_parse(m, label_names);
    if (kind == KIND_HISTOGRAM)
        bounds_copy(m, bounds, nbounds);

    pthread_mutex_lock(&registry_lock);
    for (old = families; old != NULL && strcmp(old->name, name) != 0; old = old->next)
        ;
    if (old == NULL) {
        *families_tail = m;
        families_tail = &m->next;
        if (m->nlabels == 0 && kind != KIND_GAUGE_FN)
            series_create(m, NULL);
    } else if (family_same(old, m) && kind == KIND_GAUGE_FN) {
        old->fn = fn;
        old->closure = closure;
    }
    pthread_mutex_unlock(&registry_lock);

    if (old == NULL)
        return m;
    if (!family_same(old, m))
        die("registered again with another type, labels or buckets", name);
    family_free(m);
    return old;
}

sl_metric *sl_metric_counter(const char *name, const char *help, const char *label_names)
{
    return family_register(KIND_COUNTER, name, help, label_names, NULL, 0, NULL, NULL);
}

sl_metric *sl_metric_gauge(const char *name, const char *help, const char *label_names)
{
    return family_register(KIND_GAUGE, name, help, label_names, NULL, 0, NULL, NULL);
}

sl_metric *sl_metric_histogram(const char *name, const char *help, const char *label_names,
                               const double *bounds, size_t nbounds)
{
    return family_register(KIND_HISTOGRAM, name, help, label_names, bounds, nbounds, NULL, NULL);
}

void sl_metric_gauge_fn(const char *name, const char *help, double (*fn)(void *closure),
                        void *closure)
{
    if (fn == NULL)
        die("gauge function is NULL", name);
    family_register(KIND_GAUGE_FN, name, help, NULL, NULL, 0, fn, closure);
}

/* ---- series -------------------------------------------------------------- */

sl_series *sl_metric_with_values(sl_metric *m, const char *const *values, size_t nvalues)
{
    sl_series *s;

    if (m->kind == KIND_GAUGE_FN || nvalues != m->nlabels)
        die("wrong number of label values", m->name);
    for (size_t i = 0; i < nvalues; i++)
        if (values[i] == NULL)
            die("NULL label value", m->name);

    pthread_mutex_lock(&registry_lock);
    for (s = m->series; s != NULL; s = s->next) {
        size_t i = 0;
        while (i < nvalues && strcmp(s->values[i], values[i]) == 0)
            i++;
        if (i == nvalues)
            break;
    }
    if (s == NULL)
        s = series_create(m, values);
    pthread_mutex_unlock(&registry_lock);
    return s;
}

sl_series *sl_metric_with(sl_metric *m, ...)
{
    const char *values[MAX_LABELS];
    const char *v;
    size_t n = 0;
    va_list ap;

    va_start(ap, m);
    while ((v = va_arg(ap, const char *)) != NULL) {
        if (n == m->nlabels)
            die("too many label values (missing NULL?)", m->name);
        values[n++] = v;
    }
    va_end(ap);
    return sl_metric_with_values(m, values, n);
}

static double bits_double(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, sizeof(d));
    return d;
}

static uint64_t double_bits(double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof(bits));
    return bits;
}

static void value_add(_Atomic uint64_t *a, double v)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, double_bits(bits_double(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

void sl_series_add(sl_series *s, double v)
{
    if (s->family->kind == KIND_HISTOGRAM)
        die("add on a histogram (use sl_series_observe)", s->family->name);
    if (s->family->kind == KIND_COUNTER && !(v >= 0))
        return;
    value_add(&s->value, v);
}

void sl_series_inc(sl_series *s)
{
    sl_series_add(s, 1);
}

void sl_series_set(sl_series *s, double v)
{
    if (s->family->kind != KIND_GAUGE)
        die("set on a series that is not a gauge", s->family->name);
    atomic_store_explicit(&s->value, double_bits(v), memory_order_relaxed);
}

void sl_series_observe(sl_series *s, double v)
{
    const sl_metric *m = s->family;
    size_t lo = 0, hi = m->nbounds;

    if (m->kind != KIND_HISTOGRAM)
        die("observe on a series that is not a histogram", m->name);
    while (lo < hi) { /* the first bound >= v; NaN compares false and ends at +Inf */
        size_t mid = lo + (hi - lo) / 2;
        if (v <= m->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&s->buckets[lo], 1, memory_order_relaxed);
    value_add(&s->value, v);
}

double sl_series_value(const sl_series *s)
{
    return bits_double(atomic_load_explicit(&s->value, memory_order_relaxed));
}

/* ---- rendering ------------------------------------------------------------ */

typedef struct text {
    char *data;
    size_t len, cap;
} text;

static void text_printf(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_printf(text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->data + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            die("vsnprintf failed", fmt);
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->cap = 2 * t->cap + (size_t)n;
        t->data = must(realloc(t->data, t->cap));
    }
}

/* Escapes \ and newline, and " too inside label values. */
static void text_escaped(text *t, const char *s, bool quote)
{
    for (;;) {
        size_t run = strcspn(s, quote ? "\\\n\"" : "\\\n");
        text_printf(t, "%.*s", (int)run, s);
        s += run;
        if (*s == '\0')
            return;
        text_printf(t, "\\%c", *s == '\n' ? 'n' : *s);
        s++;
    }
}

/* The shortest of %.15g, %.16g, %.17g that reads back as v, so 0.1 is "0.1". */
static const char *number(double v, char out[32])
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, 32, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            break;
    }
    return out;
}

static void sample(text *t, const sl_metric *m, const char *suffix, const sl_series *s,
                   const char *le, const char *value)
{
    size_t n = s ? m->nlabels : 0;

    text_printf(t, "%s%s", m->name, suffix);
    if (n > 0 || le != NULL) {
        text_printf(t, "{");
        for (size_t i = 0; i < n; i++) {
            text_printf(t, "%s%s=\"", i ? "," : "", m->labels[i]);
            text_escaped(t, s->values[i], true);
            text_printf(t, "\"");
        }
        if (le != NULL)
            text_printf(t, "%sle=\"%s\"", n ? "," : "", le);
        text_printf(t, "}");
    }
    text_printf(t, " %s\n", value);
}

static void render_histogram(text *t, const sl_metric *m, const sl_series *s)
{
    char num[32], le[32], count[24];
    uint64_t total = 0;

    for (size_t i = 0; i <= m->nbounds; i++) {
        total += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        snprintf(count, sizeof(count), "%" PRIu64, total);
        sample(t, m, "_bucket", s, i < m->nbounds ? number(m->bounds[i], le) : "+Inf", count);
    }
    sample(t, m, "_sum", s, NULL, number(sl_series_value(s), num));
    sample(t, m, "_count", s, NULL, count);
}

static void render_family(text *t, const sl_metric *m)
{
    char num[32];

    if (m->kind != KIND_GAUGE_FN && m->series == NULL)
        return;
    text_printf(t, "# HELP %s ", m->name);
    text_escaped(t, m->help, false);
    text_printf(t, "\n# TYPE %s %s\n", m->name, kind_names[m->kind]);
    if (m->kind == KIND_GAUGE_FN)
        sample(t, m, "", NULL, NULL, number(m->fn(m->closure), num));
    for (const sl_series *s = m->series; s != NULL; s = s->next) {
        if (m->kind == KIND_HISTOGRAM)
            render_histogram(t, m, s);
        else
            sample(t, m, "", s, NULL, number(sl_series_value(s), num));
    }
}

static void process_metric(text *t, const char *name, const char *type, const char *help,
                           double v)
{
    char num[32];
    text_printf(t, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", name, help, name, type, name,
                number(v, num));
}

/* Seconds since the epoch at boot, from the btime line of /proc/stat. */
static double boot_time(void)
{
    char line[256];
    double btime = -1;
    FILE *f = fopen("/proc/stat", "r");

    if (f == NULL)
        return -1;
    while (btime < 0 && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "btime ", 6) == 0)
            btime = strtod(line + 6, NULL);
    fclose(f);
    return btime;
}

static double open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    double n = -1; /* the directory's own descriptor is not the process's */

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* /proc/self/stat fields (proc(5), 1-based): 14 utime, 15 stime (ticks),
 * 22 starttime (ticks since boot), 23 vsize (bytes), 24 rss (pages). The
 * command name (2) may hold spaces, so fields are counted after its ')'. */
static void render_process(text *t)
{
    char buf[1024], *p, *save = NULL;
    double field[25] = {0}, tick = (double)sysconf(_SC_CLK_TCK), btime = boot_time(), fds;
    struct rlimit rl;
    size_t n = 0;
    FILE *f = fopen("/proc/self/stat", "r");

    if (f != NULL) {
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    if ((p = strrchr(buf, ')')) == NULL)
        return;
    p = strtok_r(p + 1, " ", &save);
    for (int i = 3; p != NULL && i <= 24; i++, p = strtok_r(NULL, " ", &save))
        field[i] = strtod(p, NULL);
    process_metric(t, "process_cpu_seconds_total", "counter",
                   "Total user and system CPU time spent in seconds.",
                   (field[14] + field[15]) / tick);
    process_metric(t, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
                   field[24] * (double)sysconf(_SC_PAGESIZE));
    process_metric(t, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
                   field[23]);
    if (btime >= 0)
        process_metric(t, "process_start_time_seconds", "gauge",
                       "Start time of the process since unix epoch in seconds.",
                       btime + field[22] / tick);
    if ((fds = open_fds()) >= 0)
        process_metric(t, "process_open_fds", "gauge", "Number of open file descriptors.", fds);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        process_metric(t, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
                       rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
}

char *sl_metrics_render(size_t *len)
{
    text t = {.data = must(calloc(1, 4096)), .len = 0, .cap = 4096};

    pthread_mutex_lock(&registry_lock);
    for (const sl_metric *m = families; m != NULL; m = m->next)
        render_family(&t, m);
    pthread_mutex_unlock(&registry_lock);
    render_process(&t);
    if (len != NULL)
        *len = t.len;
    return t.data;
}

void sl_metrics_free_all(void)
{
    sl_metric *m, *next;

    pthread_mutex_lock(&registry_lock);
    m = families;
    families = NULL;
    families_tail = &families;
    pthread_mutex_unlock(&registry_lock);
    for (; m != NULL; m = next) {
        next = m->next;
        family_free(m);
    }
}
