/* fuzz_payload_json: Record.payload as ingest judges it,
 * sl_record_payload_is_object (UTF-8, exactly one JSON object, read by
 * libbson), on any bytes.
 *
 * Oracle: what ingest accepts, sluice-transform must be able to read: jq
 * (jv_parse_sized, what transform_apply runs) parses an accepted payload
 * into one object. A payload that passes ingest and fails there would be
 * stored, then dead-lettered by every transform. (The other way round is
 * allowed: ingest is the stricter of the two, e.g. a NUL in a key, which
 * BSON cannot hold.) */
#include <jv.h>

#include "fuzz.h"
#include "sl_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[256] = "";
    jv v;

    if (!sl_record_payload_is_object(data, size, why, sizeof(why))) {
        FUZZ_CHECK(why[0] != '\0');
        return 0;
    }
    if (size > INT32_MAX)
        return 0;
    v = jv_parse_sized((const char *)data, (int)size);
    FUZZ_CHECK(jv_is_valid(v));
    FUZZ_CHECK(jv_get_kind(v) == JV_KIND_OBJECT);
    jv_free(v);
    return 0;
}
