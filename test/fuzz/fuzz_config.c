/* fuzz_config: configuration values as every service reads them from its
 * flags and environment (sl_config): durations, sizes and booleans on their
 * own, and a whole command line through sl_config_parse (getopt_long over
 * an option table with one option of each type).
 *
 * The input is the command line: arguments separated by NUL bytes, each
 * in a buffer of its own (so that a read of an earlier call's argument is a
 * use after free that AddressSanitizer sees). Each argument is also given
 * to the three value parsers.
 *
 * Oracles: parsed durations are never negative, sizes never below -1; after
 * a successful parse every number is within its option's bounds; an error
 * always says why; a second parse of the same command line gives the same
 * answer. --help output goes to /dev/null. */
#include "fuzz.h"
#include "sl_config.h"

#define MAX_ARGS 16

static const char *name, *listen_at;
static int64_t count, wait_ms, bytes, limit;
static bool flag, flag_given, count_given;

static const sl_option options[] = {
    {"name", "SLUICE_FUZZ_NAME", SL_OPT_STRING, "sluice", "a string", &name, 0, 0, NULL},
    {"listen", "SLUICE_FUZZ_LISTEN", SL_OPT_STRING, "", "another", &listen_at, 0, 0, NULL},
    {"count", "SLUICE_FUZZ_COUNT", SL_OPT_INT, "10", "an integer", &count, 1, 1000, &count_given},
    {"wait", "SLUICE_FUZZ_WAIT", SL_OPT_DURATION, "5s", "a duration", &wait_ms, 0, 0, NULL},
    {"bytes", "SLUICE_FUZZ_BYTES", SL_OPT_SIZE, "8MiB", "a size", &bytes, -1, 0, NULL},
    {"limit", "SLUICE_FUZZ_LIMIT", SL_OPT_SIZE, "1KiB", "a bounded size", &limit, 1, 1 << 20, NULL},
    {"flag", "SLUICE_FUZZ_FLAG", SL_OPT_BOOL, "false", "a boolean", &flag, 0, 0, &flag_given},
    {0}};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (freopen("/dev/null", "w", stdout) == NULL)
        abort();
    return 0;
}

static void values(const char *text)
{
    int64_t v = 0;
    bool b;

    if (sl_config_parse_duration(text, &v))
        FUZZ_CHECK(v >= 0);
    if (sl_config_parse_size(text, &v))
        FUZZ_CHECK(v >= -1);
    (void)sl_config_parse_bool(text, &b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    char *argv[MAX_ARGS + 2];
    char err[256] = "", again[256] = "";
    int argc = 0;
    sl_config_result r;

    argv[argc++] = fuzz_strndup((const uint8_t *)"sluice-fuzz", 11);
    while (in.n > 0 && argc <= MAX_ARGS) {
        size_t len;
        const uint8_t *arg = fuzz_until_byte(&in, '\0', &len);
        argv[argc] = fuzz_strndup(arg, len);
        values(argv[argc]);
        argc++;
    }
    argv[argc] = NULL;

    r = sl_config_parse(options, argc, argv, "usage: sluice-fuzz [options]", err, sizeof(err));
    /* The same command line again: the same answer (nothing of the first
     * parse may carry over into the next). */
    FUZZ_CHECK(sl_config_parse(options, argc, argv, "usage", again, sizeof(again)) == r);
    FUZZ_CHECK(strcmp(err, again) == 0);
    if (r == SL_CONFIG_OK) {
        FUZZ_CHECK(name != NULL && listen_at != NULL);
        FUZZ_CHECK(count >= 1 && count <= 1000);
        FUZZ_CHECK(wait_ms >= 0);
        FUZZ_CHECK(bytes >= -1);
        FUZZ_CHECK(limit >= 1 && limit <= (1 << 20));
    } else if (r == SL_CONFIG_ERROR) {
        FUZZ_CHECK(err[0] != '\0');
    } else {
        FUZZ_CHECK(r == SL_CONFIG_HELP);
    }
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    return 0;
}
