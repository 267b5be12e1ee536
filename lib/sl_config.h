/* sl_config: every setting is a --long-flag and an environment variable;
 * flags win over the environment, the environment over the default.
 *
 * A service declares a table of sl_option, each pointing at the variable it
 * fills, and calls sl_config_parse once at start:
 *
 *     static const sl_option opts[] = {
 *         {"listen", "SLUICE_LISTEN", SL_OPT_STRING, "0.0.0.0:50051",
 *          "gRPC listen address", &cfg.listen},
 *         ...
 *         {0}};
 *
 * Strings point into argv, environ or the table's defaults, all of which live
 * as long as the process: nothing is allocated, nothing needs freeing.
 * Durations accept "250ms", "5s", "2m", "1h", "7d" (a bare number is
 * milliseconds) and are stored as milliseconds; sizes accept "512", "64KiB",
 * "8MiB", "1GiB" and are stored as bytes. A boolean flag given alone
 * (--stream-discard-new) means true; --flag=false turns it off.
 *
 * Secrets as files. A secret such as MONGODB_URI may also be given as a
 * file (MONGODB_URI_FILE, a mounted Kubernetes Secret): the table holds the
 * path as a plain string option, and the service reads it once at start
 * with sl_config_read_file, which returns its own copy (the one allocation
 * here, the caller's to free). */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sl_opt_type {
    SL_OPT_STRING,   /* const char ** */
    SL_OPT_INT,      /* int64_t *, a plain integer */
    SL_OPT_DURATION, /* int64_t *, milliseconds */
    SL_OPT_SIZE,     /* int64_t *, bytes; "-1" means unlimited */
    SL_OPT_BOOL,     /* bool *, true/false/1/0/yes/no */
} sl_opt_type;

typedef struct sl_option {
    const char *name; /* the long flag without "--" */
    const char *env;  /* the environment variable */
    sl_opt_type type;
    const char *def;  /* default, in the same text form as a flag value */
    const char *help;
    void *dst;
    int64_t min, max; /* inclusive bounds for numbers; max 0 = no upper bound */
    bool *given;      /* optional: set true when a flag or the environment gave the value */
} sl_option;

typedef enum sl_config_result {
    SL_CONFIG_OK = 0,
    SL_CONFIG_HELP, /* --help was printed: exit 0 */
    SL_CONFIG_ERROR /* err holds one line: print it, exit 2 */
} sl_config_result;

sl_config_result sl_config_parse(const sl_option *opts, int argc, char **argv,
                                 const char *usage, char *err, size_t errlen);

/* The parsers behind the table, exposed for tests and for callers with
 * values of their own. Each returns false on malformed text. */
bool sl_config_parse_duration(const char *text, int64_t *ms);
bool sl_config_parse_size(const char *text, int64_t *bytes);
bool sl_config_parse_bool(const char *text, bool *out);

/* The longest secret file sl_config_read_file takes. */
#define SL_CONFIG_FILE_MAX (64 * 1024)

/* Reads the file at path (sl_file_read) into *out (allocated; the caller
 * frees it), with trailing newlines ("\n", "\r\n") removed, as a Secret file
 * usually ends with one. Returns false, *out NULL, and err one line naming
 * what (e.g. "--mongodb-uri-file (MONGODB_URI_FILE)") and path, never the
 * content, when the file cannot be read, is empty, larger than
 * SL_CONFIG_FILE_MAX or holds a NUL byte. */
bool sl_config_read_file(const char *what, const char *path, char **out, char *err, size_t errlen);

#endif
