/* fuzz_mongo_reply: the reply of MongoDB (or FerretDB) to a bulk insert, as
 * the consumers read it (sl_mongo_reply_outcomes): per document, stored,
 * to retry, or refused for good, or the batch failed as a whole.
 *
 * Input: the number of documents in the batch (first byte, 1 to 64), then
 * the reply as BSON, which is what libmongoc hands over.
 *
 * Oracle: a reply is taken only when it accounts for every document once:
 * the documents it names in writeErrors are distinct, and with nInserted
 * they make the batch. A document counted as stored that the server did not
 * store would be acknowledged, and lost. */
#include <bson/bson.h>

#include "fuzz.h"
#include "sl_mongo.h"

#define MAX_DOCS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    size_t n = 1 + fuzz_u8(&in) % MAX_DOCS, failed = 0, stored = 0;
    sl_mongo_outcome out[MAX_DOCS];
    bson_iter_t it;
    int64_t inserted = 0;
    bson_t reply;

    if (!bson_init_static(&reply, in.p, in.n))
        return 0;
    if (!sl_mongo_reply_outcomes(&reply, n, out))
        return 0;
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(out[i].result == SL_MONGO_STORED || out[i].result == SL_MONGO_RETRY ||
                   out[i].result == SL_MONGO_REJECTED);
        FUZZ_CHECK(out[i].duplicate == (out[i].code == SL_MONGO_DUPLICATE_KEY));
        FUZZ_CHECK(out[i].result != SL_MONGO_STORED || out[i].code == 0 || out[i].duplicate);
        FUZZ_CHECK(memchr(out[i].error, '\0', sizeof(out[i].error)) != NULL);
        if (out[i].code != 0)
            failed++;
        else
            stored++;
    }
    if (bson_iter_init_find(&it, &reply, "nInserted") && BSON_ITER_HOLDS_NUMBER(&it))
        inserted = bson_iter_as_int64(&it);
    /* the documents without an error are exactly those the server inserted */
    FUZZ_CHECK((int64_t)stored == inserted);
    FUZZ_CHECK(stored + failed == n);
    return 0;
}
