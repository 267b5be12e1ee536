/* fuzz.h: what the libFuzzer harnesses of test/fuzz share.
 *
 * A harness is one file, fuzz_<name>.c, defining LLVMFuzzerTestOneInput
 * (and, when it needs set-up done once, LLVMFuzzerInitialize). It feeds the
 * input to the code under test the way the service would receive it, and
 * checks what must hold of the result with FUZZ_CHECK: a broken oracle
 * aborts, which libFuzzer reports like a crash and saves the input.
 *
 * An input that carries several values is read front to back with a
 * fuzz_in cursor: fixed-size numbers first, then text fields cut at a
 * delimiter, the rest last. Reading past the end yields zeros and empty
 * fields, never an error, so every input means something.
 *
 * Everything a helper returns with malloc is the caller's to free; the
 * harnesses free all of it, since LeakSanitizer runs too. */
#ifndef SL_FUZZ_H
#define SL_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: oracle failed: %s\n", __FILE__, __LINE__, #cond);              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

typedef struct fuzz_in {
    const uint8_t *p;
    size_t n;
} fuzz_in;

static inline uint8_t fuzz_u8(fuzz_in *in)
{
    uint8_t v = 0;
    if (in->n > 0) {
        v = in->p[0];
        in->p++;
        in->n--;
    }
    return v;
}

/* Little-endian, zero-filled when the input runs out. */
static inline uint64_t fuzz_u64(fuzz_in *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)fuzz_u8(in) << (8 * i);
    return v;
}

/* The bytes up to the first occurrence of delim (which is consumed), or all
 * that is left when there is none. Points into the input. */
static inline const uint8_t *fuzz_until(fuzz_in *in, const char *delim, size_t *len)
{
    size_t dl = strlen(delim);
    const uint8_t *start = in->p;
    const uint8_t *at = dl > 0 && in->n >= dl ? memmem(in->p, in->n, delim, dl) : NULL;

    if (at == NULL) {
        *len = in->n;
        in->p += in->n;
        in->n = 0;
    } else {
        *len = (size_t)(at - start);
        in->p = at + dl;
        in->n -= *len + dl;
    }
    return start;
}

/* The bytes up to the first byte equal to delim (consumed), or the rest. */
static inline const uint8_t *fuzz_until_byte(fuzz_in *in, uint8_t delim, size_t *len)
{
    const uint8_t *start = in->p;
    const uint8_t *at = in->n > 0 ? memchr(in->p, delim, in->n) : NULL;

    *len = at != NULL ? (size_t)(at - start) : in->n;
    in->p += *len + (at != NULL);
    in->n -= *len + (at != NULL);
    return start;
}

/* A malloc'd, NUL-terminated copy of data[0..len) (NUL bytes inside stay:
 * the C string then ends at the first). */
static inline char *fuzz_strndup(const uint8_t *data, size_t len)
{
    char *s = malloc(len + 1);
    if (s == NULL)
        abort();
    if (len > 0)
        memcpy(s, data, len);
    s[len] = '\0';
    return s;
}

/* The text field up to delim, as a C string (malloc'd). */
static inline char *fuzz_text(fuzz_in *in, const char *delim)
{
    size_t len;
    const uint8_t *p = fuzz_until(in, delim, &len);
    return fuzz_strndup(p, len);
}

/* How many times needle occurs in hay (overlapping occurrences count). */
static inline size_t fuzz_count(const char *hay, const char *needle)
{
    size_t n = 0, nl = strlen(needle);
    if (nl == 0)
        return 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

#endif
