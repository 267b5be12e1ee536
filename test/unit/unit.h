/* unit.h: the few macros the C unit tests need. A failed CHECK prints the
 * file, line and expression and makes the test return 1; TEST runs one case
 * and prints "ok <name>". */
#ifndef SL_UNIT_H
#define SL_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_failures;

#define CHECK(expr)                                                                  \
    do {                                                                             \
        if (!(expr)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr); \
            unit_failures++;                                                         \
            return;                                                                  \
        }                                                                            \
    } while (0)

#define CHECK_STR(a, b)                                                                \
    do {                                                                               \
        const char *a_ = (a), *b_ = (b);                                               \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                         \
            fprintf(stderr, "%s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__,           \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                           \
            unit_failures++;                                                           \
            return;                                                                    \
        }                                                                              \
    } while (0)

#define TEST(fn)                                              \
    do {                                                      \
        int before_ = unit_failures;                          \
        fn();                                                 \
        printf("%s %s\n", unit_failures == before_ ? "ok" : "FAIL", #fn); \
    } while (0)

#define UNIT_RESULT() (unit_failures == 0 ? 0 : 1)

#endif
