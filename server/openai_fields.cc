#include "server/openai_fields.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace alignserve {

using nlohmann::json;

const char* JsonTypeName(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::string:
      return "string";
    case json::value_t::array:
      return "array";
    case json::value_t::object:
      return "object";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "integer";
    case json::value_t::number_float:
      return "number";
    default:
      return "unknown";
  }
}

const json* FindField(const json& obj, const std::string& name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

namespace {

absl::Status WrongType(const std::string& param, const std::string& what,
                       const std::string& expected, const json& value) {
  return ParamError(absl::StatusCode::kInvalidArgument, param,
                    absl::StrCat(what, " must be ", expected, ", got ", JsonTypeName(value)));
}

}  // namespace

absl::Status ReadBool(const json& obj, const std::string& name, bool* out) {
  const json* v = FindField(obj, name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_boolean()) return WrongType(name, name, "a boolean", *v);
  *out = v->get<bool>();
  return absl::OkStatus();
}

absl::Status ReadString(const json& obj, const std::string& name, std::string* out) {
  const json* v = FindField(obj, name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_string()) return WrongType(name, name, "a string", *v);
  *out = v->get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadNumber(const json& obj, const std::string& name, float* out) {
  const json* v = FindField(obj, name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_number()) return WrongType(name, name, "a number", *v);
  const double d = v->get<double>();
  if (!std::isfinite(d)) {
    return ParamError(absl::StatusCode::kInvalidArgument, name,
                      absl::StrCat(name, " must be a finite number"));
  }
  *out = static_cast<float>(d);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> IntValue(const json& value, const std::string& param,
                                 const std::string& what, int64_t lo, int64_t hi) {
  auto out_of_range = [&]() {
    return ParamError(absl::StatusCode::kInvalidArgument, param,
                      absl::StrCat(what, " must be an integer in [", lo, ", ", hi, "]"));
  };
  int64_t result = 0;
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return out_of_range();
    result = static_cast<int64_t>(u);
  } else if (value.is_number_integer()) {
    result = value.get<int64_t>();
  } else if (value.is_number_float()) {
    const double d = value.get<double>();
    // 2^63 is exactly representable; anything at or past it is out of range.
    if (!std::isfinite(d) || d != std::floor(d) || d >= 9223372036854775808.0 ||
        d < -9223372036854775808.0) {
      return d == std::floor(d) ? out_of_range() : WrongType(param, what, "an integer", value);
    }
    result = static_cast<int64_t>(d);
  } else {
    return WrongType(param, what, "an integer", value);
  }
  if (result < lo || result > hi) return out_of_range();
  return result;
}

absl::Status ReadInt(const json& obj, const std::string& name, int64_t lo, int64_t hi,
                     std::optional<int64_t>* out) {
  const json* v = FindField(obj, name);
  if (v == nullptr) return absl::OkStatus();
  ASSIGN_OR_RETURN(*out, IntValue(*v, name, name, lo, hi));
  return absl::OkStatus();
}

absl::Status ReadInt32(const json& obj, const std::string& name, int32_t* out) {
  std::optional<int64_t> value;
  RETURN_IF_ERROR(ReadInt(obj, name, std::numeric_limits<int32_t>::min(),
                          std::numeric_limits<int32_t>::max(), &value));
  if (value) *out = static_cast<int32_t>(*value);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> TokenIdList(const json& value, const std::string& param,
                                                 const std::string& what, int vocab_size) {
  if (!value.is_array()) return WrongType(param, what, "an array of token ids", value);
  std::vector<int32_t> ids;
  ids.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    const json& item = value[i];
    if (!item.is_number()) {
      return WrongType(param, absl::StrCat(what, "[", i, "]"), "an integer token id", item);
    }
    absl::StatusOr<int64_t> id =
        IntValue(item, param, absl::StrCat(what, "[", i, "]"), std::numeric_limits<int64_t>::min(),
                 std::numeric_limits<int64_t>::max());
    if (!id.ok()) return id.status();
    if (*id < 0 || *id >= vocab_size) {
      return ParamError(absl::StatusCode::kInvalidArgument, param,
                        absl::StrCat(what, " holds token id ", *id, " outside the vocabulary [0, ",
                                     vocab_size, ")"));
    }
    ids.push_back(static_cast<int32_t>(*id));
  }
  return ids;
}

absl::StatusOr<json> ParseRequestObject(std::string_view body) {
  // The parser checks UTF-8 inside strings too (ROBUSTNESS.md item 2).
  json parsed = json::parse(body, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return absl::InvalidArgumentError(
        "the request body is not valid JSON (or its strings are not valid UTF-8)");
  }
  if (!parsed.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request body must be a JSON object, got ", JsonTypeName(parsed)));
  }
  return parsed;
}

absl::StatusOr<std::string> CheckModel(const json& body, const ServeContext& ctx) {
  std::string model = ctx.served_model_name;
  RETURN_IF_ERROR(ReadString(body, "model", &model));
  if (model != ctx.served_model_name) {
    return ParamError(absl::StatusCode::kNotFound, "model",
                      absl::StrCat("The model `", model, "` does not exist."));
  }
  return model;
}

}  // namespace alignserve
