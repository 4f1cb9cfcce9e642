#include "models/formats/bounded_json.h"

#include <new>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "models/formats/byte_reader.h"
#include "models/formats/mapped_file.h"
#include "kernels/status_macros.h"

namespace alignserve {

int JsonNestingDepth(std::string_view text) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

absl::StatusOr<nlohmann::json> ParseBoundedJson(std::string_view text, std::string_view source,
                                                int max_depth, bool require_object) {
  int depth = JsonNestingDepth(text);
  if (depth > max_depth) {
    return absl::InvalidArgumentError(absl::StrCat(ToAbsl(source), ": JSON nests ", depth,
                                                   " levels deep, more than the ", max_depth,
                                                   " allowed"));
  }
  nlohmann::json json;
  try {
    // allow_exceptions=false turns syntax errors into a discarded value; the
    // catch is for allocation failure on huge documents.
    json = nlohmann::json::parse(text.data(), text.data() + text.size(), nullptr,
                                 /*allow_exceptions=*/false);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat(ToAbsl(source), ": out of memory parsing ", text.size(), " bytes of JSON"));
  }
  if (json.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat(ToAbsl(source), ": not valid JSON (", text.size(), " bytes)"));
  }
  if (require_object && !json.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(ToAbsl(source), ": expected a JSON object, found ", json.type_name()));
  }
  return json;
}

absl::StatusOr<nlohmann::json> ReadJsonObjectFile(const std::string& path, int max_depth) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  std::string_view text(reinterpret_cast<const char*>(file->data()), file->size());
  return ParseBoundedJson(text, path, max_depth, /*require_object=*/true);
}

}  // namespace alignserve
