/* fuzz_policy: the authorization policy file (SLUICE_AUTH_POLICY) as
 * sluice-ingest loads it (sl_policy_parse), and the decisions it then
 * makes (sl_policy_allows) for a few principals and types.
 *
 * The input is the file's bytes, exactly: not NUL-terminated, as a file
 * read into a buffer of its length may come.
 *
 * Oracles: an error says why; a policy decides without crashing, and a
 * principal's decision never depends on anything but the policy (asked
 * twice, the same answer). */
#include "fuzz.h"
#include "sl_policy.h"

static const char *const principals[] = {"billing-svc", "*", "", "audit-reader", "x"};
static const char *const types[] = {
    "order.created", "invoice.paid.v2", "public.news", "a", "*", ">"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size > 0 ? size : 1);
    char err[512] = "";
    sl_policy *p;

    if (text == NULL)
        abort();
    if (size > 0)
        memcpy(text, data, size);
    p = sl_policy_parse(text, size, "policy.json", err, sizeof(err));
    if (p == NULL) {
        FUZZ_CHECK(err[0] != '\0');
    } else {
        (void)sl_policy_count(p);
        for (size_t i = 0; i < sizeof(principals) / sizeof(principals[0]); i++) {
            for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
                bool a = sl_policy_allows(p, principals[i], types[t]);
                FUZZ_CHECK(a == sl_policy_allows(p, principals[i], types[t]));
            }
        }
        sl_policy_free(p);
    }
    free(text);
    return 0;
}
