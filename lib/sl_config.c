/* sl_config: see sl_config.h. Parsing is two passes over the same table:
 * first defaults and environment, then getopt_long over argv, so that the
 * precedence (flag > environment > default) falls out of the order. */
#include "sl_config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sl_file.h"

typedef struct unit {
    const char *suffix;
    int64_t factor;
} unit;

static const unit duration_units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"", 1}, {NULL, 0}};

static const unit size_units[] = {{"KiB", 1024},     {"MiB", 1024 * 1024},
                                  {"GiB", 1 << 30},  {"KB", 1000},
                                  {"MB", 1000000},   {"GB", 1000000000},
                                  {"K", 1024},       {"M", 1024 * 1024},
                                  {"G", 1 << 30},    {"B", 1},
                                  {"", 1},           {NULL, 0}};

static bool parse_scaled(const char *text, const unit *units, int64_t *out)
{
    char *end;
    long long v;

    if (text == NULL || *text == '\0')
        return false;
    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || end == text)
        return false;
    for (const unit *u = units; u->suffix != NULL; u++) {
        if (strcmp(end, u->suffix) == 0) {
            if (v != 0 && (v > INT64_MAX / u->factor || v < INT64_MIN / u->factor))
                return false;
            *out = (int64_t)v * u->factor;
            return true;
        }
    }
    return false;
}

bool sl_config_parse_duration(const char *text, int64_t *ms)
{
    int64_t v;
    if (!parse_scaled(text, duration_units, &v) || v < 0)
        return false;
    *ms = v;
    return true;
}

bool sl_config_parse_size(const char *text, int64_t *bytes)
{
    int64_t v;
    if (text != NULL && strcmp(text, "-1") == 0) {
        *bytes = -1;
        return true;
    }
    if (!parse_scaled(text, size_units, &v) || v < 0)
        return false;
    *bytes = v;
    return true;
}

bool sl_config_parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static const char *type_hint(sl_opt_type t)
{
    switch (t) {
    case SL_OPT_INT:
        return "an integer";
    case SL_OPT_DURATION:
        return "a duration such as 250ms, 5s, 2m, 1h";
    case SL_OPT_SIZE:
        return "a size such as 4096, 64KiB, 8MiB or -1";
    case SL_OPT_BOOL:
        return "true or false";
    default:
        return "a string";
    }
}

/* Stores text into o->dst; fills err naming where the value came from. */
static bool assign(const sl_option *o, const char *text, const char *source, char *err,
                   size_t errlen)
{
    int64_t v = 0;
    bool ok = true;

    switch (o->type) {
    case SL_OPT_STRING:
        *(const char **)o->dst = text;
        return true;
    case SL_OPT_BOOL:
        ok = sl_config_parse_bool(text, (bool *)o->dst);
        break;
    case SL_OPT_INT: {
        char *end;
        errno = 0;
        long long ll = strtoll(text, &end, 10);
        ok = errno == 0 && end != text && *end == '\0';
        v = ll;
        break;
    }
    case SL_OPT_DURATION:
        ok = sl_config_parse_duration(text, &v);
        break;
    case SL_OPT_SIZE:
        ok = sl_config_parse_size(text, &v);
        break;
    }
    if (!ok) {
        snprintf(err, errlen, "invalid %s \"%s\": expected %s", source, text, type_hint(o->type));
        return false;
    }
    if (o->type == SL_OPT_BOOL)
        return true;
    if (v < o->min || (o->max != 0 && v > o->max)) {
        if (o->max != 0)
            snprintf(err, errlen, "invalid %s \"%s\": must be between %" PRId64 " and %" PRId64,
                     source, text, o->min, o->max);
        else
            snprintf(err, errlen, "invalid %s \"%s\": must be at least %" PRId64, source, text,
                     o->min);
        return false;
    }
    *(int64_t *)o->dst = v;
    return true;
}

static void print_help(const sl_option *opts, const char *usage)
{
    printf("%s\n\nOptions (flag, environment variable, default):\n", usage);
    for (const sl_option *o = opts; o->name != NULL; o++) {
        printf("  --%-24s %-28s %s\n", o->name, o->env ? o->env : "", o->help);
        printf("  %-26s %-28s default: %s\n", "", "", o->def && *o->def ? o->def : "(none)");
    }
    printf("  --%-24s %-28s %s\n", "help", "", "print this help and exit");
}

sl_config_result sl_config_parse(const sl_option *opts, int argc, char **argv,
                                 const char *usage, char *err, size_t errlen)
{
    size_t n = 0;
    struct option *longs;
    sl_config_result res = SL_CONFIG_OK;
    char source[128];
    int c, idx;

    for (const sl_option *o = opts; o->name != NULL; o++, n++) {
        const char *env = o->env ? getenv(o->env) : NULL;
        if (o->def != NULL && !assign(o, o->def, "default", err, errlen))
            return SL_CONFIG_ERROR;
        if (o->given != NULL)
            *o->given = false;
        if (env != NULL && *env != '\0') {
            snprintf(source, sizeof(source), "%s", o->env);
            if (!assign(o, env, source, err, errlen))
                return SL_CONFIG_ERROR;
            if (o->given != NULL)
                *o->given = true;
        }
    }

    longs = calloc(n + 2, sizeof(*longs));
    if (longs == NULL) {
        snprintf(err, errlen, "out of memory");
        return SL_CONFIG_ERROR;
    }
    for (size_t i = 0; i < n; i++) {
        longs[i].name = opts[i].name;
        /* A boolean flag alone means true; a value needs "=": --flag=false. */
        longs[i].has_arg = opts[i].type == SL_OPT_BOOL ? optional_argument : required_argument;
        longs[i].val = 0;
    }
    longs[n].name = "help";
    longs[n].has_arg = no_argument;
    longs[n].val = 'h';

    /* 0, not 1: glibc then also forgets where an earlier parse stopped
     * inside a cluster of short options ("-xh"), which would make this
     * one start there, in the earlier argv. */
    optind = 0;
    opterr = 0;
    while (res == SL_CONFIG_OK && (c = getopt_long(argc, argv, "h", longs, &idx)) != -1) {
        if (c == 'h') {
            print_help(opts, usage);
            res = SL_CONFIG_HELP;
        } else if (c == 0) {
            snprintf(source, sizeof(source), "--%s", opts[idx].name);
            if (!assign(&opts[idx], optarg != NULL ? optarg : "true", source, err, errlen))
                res = SL_CONFIG_ERROR;
            else if (opts[idx].given != NULL)
                *opts[idx].given = true;
        } else {
            snprintf(err, errlen, "unknown or incomplete option \"%s\" (see --help)",
                     argv[optind - 1]);
            res = SL_CONFIG_ERROR;
        }
    }
    if (res == SL_CONFIG_OK && optind < argc) {
        snprintf(err, errlen, "unexpected argument \"%s\" (see --help)", argv[optind]);
        res = SL_CONFIG_ERROR;
    }
    free(longs);
    return res;
}

/* ---- secrets from files ------------------------------------------------- */

bool sl_config_read_file(const char *what, const char *path, char **out, char *err, size_t errlen)
{
    char why[512];
    size_t len = 0;
    char *buf = sl_file_read(path, SL_CONFIG_FILE_MAX, &len, why, sizeof(why));

    *out = NULL;
    if (buf == NULL) {
        snprintf(err, errlen, "cannot read %s %s", what, why);
        return false;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    if (len == 0)
        snprintf(err, errlen, "%s %s: the file is empty", what, path);
    else if (memchr(buf, '\0', len) != NULL)
        snprintf(err, errlen, "%s %s: the file holds a NUL byte", what, path);
    else {
        *out = buf;
        return true;
    }
    explicit_bzero(buf, len); /* a secret, even when refused */
    free(buf);
    return false;
}
