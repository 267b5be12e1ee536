/* fuzz_payload_json: Record.payload as ingest judges it,
 * sl_record_payload_is_object (UTF-8, exactly one JSON object, read by
 * libbson), on any bytes.
 *
 * Oracles: what ingest accepts
 *   - is JSON: the RFC 8259 grammar, checked by the small reference reader
 *     below (a test oracle only: it says yes or no and builds nothing);
 *   - and sluice-transform can read it: jq (jv_parse_sized, what
 *     transform_apply runs) parses it into one object. A payload that
 *     passes ingest and fails there would be stored, then dead-lettered by
 *     every transform.
 * The other way round is allowed: ingest may refuse JSON that BSON cannot
 * hold (a NUL in a key, a number beyond a double). */
#include <jv.h>

#include "fuzz.h"
#include "sl_record.h"

/* ---- RFC 8259, strictly ------------------------------------------------ */

typedef struct reader {
    const uint8_t *p, *end;
    int depth;
} reader;

static bool value(reader *r);

static void ws(reader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static bool lit(reader *r, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
        return false;
    r->p += n;
    return true;
}

static bool digits(reader *r)
{
    const uint8_t *start = r->p;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
        r->p++;
    return r->p > start;
}

static bool number(reader *r)
{
    if (r->p < r->end && *r->p == '-')
        r->p++;
    if (r->p < r->end && *r->p == '0')
        r->p++;
    else if (!(r->p < r->end && *r->p >= '1' && *r->p <= '9') || !digits(r))
        return false;
    if (r->p < r->end && *r->p == '.') {
        r->p++;
        if (!digits(r))
            return false;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
            r->p++;
        if (!digits(r))
            return false;
    }
    return true;
}

static bool string(reader *r)
{
    if (r->p >= r->end || *r->p != '"')
        return false;
    for (r->p++; r->p < r->end; r->p++) {
        uint8_t c = *r->p;
        if (c == '"') {
            r->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c != '\\')
            continue; /* UTF-8 is checked as a whole */
        if (++r->p >= r->end)
            return false;
        if (*r->p == 'u') {
            for (int i = 0; i < 4; i++) {
                if (++r->p >= r->end || !strchr("0123456789abcdefABCDEF", *r->p) || *r->p == 0)
                    return false;
            }
        } else if (!strchr("\"\\/bfnrt", *r->p) || *r->p == 0) {
            return false;
        }
    }
    return false;
}

static bool members(reader *r, bool object)
{
    char close = object ? '}' : ']';

    r->p++;
    ws(r);
    if (r->p < r->end && *r->p == close) {
        r->p++;
        return true;
    }
    for (;;) {
        if (object) {
            if (!string(r))
                return false;
            ws(r);
            if (r->p >= r->end || *r->p != ':')
                return false;
            r->p++;
        }
        if (!value(r))
            return false;
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            ws(r);
            continue;
        }
        if (r->p < r->end && *r->p == close) {
            r->p++;
            return true;
        }
        return false;
    }
}

static bool value(reader *r)
{
    bool ok;

    ws(r);
    if (r->p >= r->end)
        return false;
    switch (*r->p) {
    case '{':
    case '[':
        if (++r->depth > 1000)
            return false;
        ok = members(r, *r->p == '{');
        r->depth--;
        break;
    case '"':
        ok = string(r);
        break;
    case 't':
        ok = lit(r, "true");
        break;
    case 'f':
        ok = lit(r, "false");
        break;
    case 'n':
        ok = lit(r, "null");
        break;
    default:
        ok = number(r);
    }
    ws(r);
    return ok;
}

/* One JSON text (RFC 8259) whose value is an object. */
static bool json_object(const uint8_t *data, size_t size)
{
    reader r = {data, data + size, 0};

    ws(&r);
    if (r.p >= r.end || *r.p != '{')
        return false;
    return value(&r) && r.p == r.end;
}

/* ---- the harness ------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[256] = "";
    jv v;

    if (!sl_record_payload_is_object(data, size, why, sizeof(why))) {
        FUZZ_CHECK(why[0] != '\0');
        return 0;
    }
    FUZZ_CHECK(json_object(data, size));
    if (size > INT32_MAX)
        return 0;
    v = jv_parse_sized((const char *)data, (int)size);
    FUZZ_CHECK(jv_is_valid(v));
    FUZZ_CHECK(jv_get_kind(v) == JV_KIND_OBJECT);
    jv_free(v);
    return 0;
}
