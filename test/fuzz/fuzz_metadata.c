/* fuzz_metadata: the gRPC request metadata sluice-ingest reads from a
 * caller: the bearer token of an `authorization: Bearer <token>` entry
 * (sl_auth_bearer) and the traceparent value it copies into the stream
 * message's headers (sl_grpc_md_get).
 *
 * Input: metadata entries, one per line, "key: value" (a line without ": "
 * is a key with an empty value). Values may hold any byte but '\n'.
 *
 * Oracles: a token is the first authorization entry's value after its
 * "Bearer " (any case), whole, without NUL bytes, shorter than the buffer;
 * an authorization entry that is not that shape is reported as malformed,
 * never taken; a copied value is cut to the buffer and NUL-terminated. */
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <strings.h>

#include "fuzz.h"
#include "sl_auth.h"
#include "sl_grpc_server.h"

#define MAX_ENTRIES 16
#define TOKEN_BUF 8193 /* sl_auth's: TOKEN_MAX + 1 */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    grpc_metadata entries[MAX_ENTRIES];
    grpc_metadata_array md = {0, MAX_ENTRIES, entries};
    char token[TOKEN_BUF], trace[128];
    const grpc_metadata *auth = NULL;
    bool malformed = false, got;

    if (size > 32768)
        return 0;
    while (in.n > 0 && md.count < MAX_ENTRIES) {
        size_t len, klen;
        const uint8_t *line = fuzz_until(&in, "\n", &len), *sep = memmem(line, len, ": ", 2);
        klen = sep != NULL ? (size_t)(sep - line) : len;
        entries[md.count].key = grpc_slice_from_copied_buffer((const char *)line, klen);
        entries[md.count].value =
            sep != NULL ? grpc_slice_from_copied_buffer((const char *)sep + 2, len - klen - 2)
                        : grpc_empty_slice();
        if (auth == NULL && klen == 13 && strncasecmp((const char *)line, "authorization", 13) == 0)
            auth = &entries[md.count];
        md.count++;
    }

    got = sl_auth_bearer(&md, token, sizeof(token), &malformed);
    if (auth == NULL) {
        FUZZ_CHECK(!got && !malformed);
    } else {
        size_t vlen = GRPC_SLICE_LENGTH(auth->value);
        const char *v = (const char *)GRPC_SLICE_START_PTR(auth->value);
        bool shape = vlen > 7 && strncasecmp(v, "Bearer ", 7) == 0 && vlen - 7 < sizeof(token) &&
                     memchr(v, '\0', vlen) == NULL;
        FUZZ_CHECK(got == shape && malformed == !shape);
        if (got)
            FUZZ_CHECK(strlen(token) == vlen - 7 && memcmp(token, v + 7, vlen - 7) == 0);
    }

    if (sl_grpc_md_get(&md, "traceparent", trace, sizeof(trace)))
        FUZZ_CHECK(memchr(trace, '\0', sizeof(trace)) != NULL);

    for (size_t i = 0; i < md.count; i++) {
        grpc_slice_unref(entries[i].key);
        grpc_slice_unref(entries[i].value);
    }
    return 0;
}
