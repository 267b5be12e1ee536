// sl_json: see sl_json.h. RapidJSON's SAX reader (Debian's rapidjson-dev)
// does the work: strict RFC 8259 by default (no comments, no trailing
// commas, no NaN or Infinity, no unescaped control characters in strings),
// in iterative mode so that deep nesting costs no C stack, with numbers
// handed over as text so that one beyond a double is still JSON. The handler
// builds nothing; it only counts open brackets against SL_JSON_MAX_DEPTH.
// This file is the one C++ translation unit: everything else calls it
// through the C header.
#include "sl_json.h"

#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include <cstdio>

namespace {

class depth_counter : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, depth_counter> {
  public:
    bool too_deep = false;

    bool Default() { return true; }
    bool StartObject() { return open(); }
    bool StartArray() { return open(); }
    bool EndObject(rapidjson::SizeType) { return close(); }
    bool EndArray(rapidjson::SizeType) { return close(); }

  private:
    size_t depth_ = 0;

    bool open()
    {
        too_deep = ++depth_ > SL_JSON_MAX_DEPTH;
        return !too_deep;
    }
    bool close()
    {
        depth_--;
        return true;
    }
};

constexpr unsigned parse_flags = rapidjson::kParseIterativeFlag |
                                 rapidjson::kParseValidateEncodingFlag |
                                 rapidjson::kParseNumbersAsStringsFlag;

} // namespace

extern "C" bool sl_json_valid(const uint8_t *text, size_t len, char *why, size_t whylen)
{
    static const char empty[1] = {0};
    rapidjson::MemoryStream in(len > 0 ? reinterpret_cast<const char *>(text) : empty, len);
    rapidjson::Reader reader;
    depth_counter handler;
    rapidjson::ParseResult r = reader.Parse<parse_flags>(in, handler);

    if (!r.IsError())
        return true;
    if (whylen > 0) {
        if (handler.too_deep)
            std::snprintf(why, whylen, "byte %zu: nested too deeply (more than %d levels)",
                          r.Offset(), SL_JSON_MAX_DEPTH);
        else
            std::snprintf(why, whylen, "byte %zu: %s", r.Offset(),
                          rapidjson::GetParseError_En(r.Code()));
    }
    return false;
}
