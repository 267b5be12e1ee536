/* fuzz_transform_rules: the transform rules file (SLUICE_TRANSFORM_RULES)
 * as sluice-transform loads it (transform_rules_parse: a JSON object of
 * type pattern -> jq program, every program compiled by libjq), and the
 * rule each of a few types then gets (transform_rules_match).
 *
 * The input is the file's bytes, exactly: not NUL-terminated. Programs are
 * compiled, never run: the file is the operator's, and a program that
 * loops is a program that loops.
 *
 * Oracles: an error names the file; a loaded rule set matches a type only
 * with one of its patterns, and that pattern matches the type. */
#include "fuzz.h"
#include "sl_pattern.h"
#include "transform.h"

static const char *const types[] = {"order.created", "order.created.v2", "invoice", "a.b.c.d", "x"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size > 0 ? size : 1);
    char err[1024] = "";
    transform_rules *r;

    if (text == NULL)
        abort();
    if (size > 0)
        memcpy(text, data, size);
    r = transform_rules_parse(text, size, "rules.json", err, sizeof(err));
    if (r == NULL) {
        FUZZ_CHECK(strncmp(err, "rules file rules.json", 21) == 0);
    } else {
        (void)transform_rules_count(r);
        for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
            const char *pattern = transform_rules_match(r, types[t]);
            if (pattern != NULL)
                FUZZ_CHECK(sl_pattern_valid(pattern) && sl_pattern_match(pattern, types[t]));
        }
        transform_rules_free(r);
    }
    free(text);
    return 0;
}
