// ParseBoundedJson: parses untrusted JSON text (a safetensors header, a
// checkpoint index) without exceptions and with its nesting depth bounded
// before parsing, so hostile input is an error and never a crash, a thrown
// exception, or a gigabyte of nested empty arrays.
//
// Thread-safety: a pure function.
#ifndef ALIGNSERVE_MODELS_FORMATS_BOUNDED_JSON_H_
#define ALIGNSERVE_MODELS_FORMATS_BOUNDED_JSON_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace alignserve {

// The deepest nesting of arrays and objects in `text`, counted outside
// strings. Malformed text still gets a number; the parser rejects it later.
int JsonNestingDepth(std::string_view text);

// Parses `text` as one JSON document. InvalidArgument, prefixed by `source`
// (the file and field), when it nests deeper than `max_depth`, is not valid
// JSON (RFC 8259, UTF-8), or when `require_object` and it is not an object.
absl::StatusOr<nlohmann::json> ParseBoundedJson(std::string_view text, std::string_view source,
                                                int max_depth, bool require_object);

// Reads a whole JSON file (config.json, tokenizer_config.json, an index) as
// one object, with ParseBoundedJson's checks; errors name the file.
absl::StatusOr<nlohmann::json> ReadJsonObjectFile(const std::string& path, int max_depth = 64);

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_FORMATS_BOUNDED_JSON_H_
