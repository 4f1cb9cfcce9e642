#include "alignment/policy_params.h"

#include <cmath>
#include <initializer_list>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "alignment/answer_extractor.h"
#include "kernels/status_macros.h"

namespace alignserve {
namespace {

using Json = nlohmann::json;

constexpr size_t kRegexPrefixBytes = 6;  // "regex:"

// User text in a message: at most 64 bytes, JSON-quoted, ASCII only, invalid
// UTF-8 replaced, so the message is always safe to embed in a response.
std::string Quote(std::string_view text) {
  constexpr size_t kMaxShown = 64;
  std::string shown(text.substr(0, kMaxShown));
  if (text.size() > kMaxShown) shown += "...";
  return Json(shown).dump(-1, ' ', /*ensure_ascii=*/true, Json::error_handler_t::replace);
}

std::string Shown(const Json& value) {
  std::string dumped = value.dump(-1, ' ', /*ensure_ascii=*/true, Json::error_handler_t::replace);
  if (dumped.size() > 64) dumped = dumped.substr(0, 64) + "...";
  return dumped;
}

// Reads one policy's params object; every error names policy and parameter.
class ParamReader {
 public:
  ParamReader(std::string_view policy, const Json& params) : policy_(policy), params_(params) {}

  absl::Status CheckNames(std::initializer_list<std::string_view> allowed) const {
    if (params_.is_null()) return absl::OkStatus();
    if (!params_.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "alignment policy '", policy_, "': params must be a JSON object, got ", Shown(params_)));
    }
    for (const auto& [key, value] : params_.items()) {
      bool known = false;
      for (std::string_view name : allowed) known = known || key == name;
      if (!known) {
        return absl::InvalidArgumentError(absl::StrCat(
            "alignment policy '", policy_, "': unknown parameter ", Quote(key),
            "; allowed parameters: ",
            absl::StrJoin(std::vector<std::string>(allowed.begin(), allowed.end()), ", ")));
      }
    }
    return absl::OkStatus();
  }

  bool Has(const char* name) const { return params_.is_object() && params_.contains(name); }

  // Leaves *out untouched when absent.
  absl::Status Int(const char* name, int64_t lo, int64_t hi, int32_t* out,
                   std::string_view hi_text = "") const {
    if (!Has(name)) return absl::OkStatus();
    const Json& v = params_.at(name);
    const std::string range =
        absl::StrCat("an integer in [", lo, ", ",
                     hi_text.empty() ? absl::StrCat(hi) : std::string(hi_text), "]");
    bool ok = v.is_number_integer();
    if (ok && v.is_number_unsigned()) {
      ok = v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
           static_cast<int64_t>(v.get<uint64_t>()) <= hi &&
           static_cast<int64_t>(v.get<uint64_t>()) >= lo;
    } else if (ok) {
      ok = v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
    }
    if (!ok) return Invalid(name, range, v);
    *out = static_cast<int32_t>(v.get<int64_t>());
    return absl::OkStatus();
  }

  // [lo, hi], or open at an end when the flag says so.
  absl::Status Number(const char* name, double lo, double hi, bool lo_open, bool hi_open,
                      double* out) const {
    if (!Has(name)) return absl::OkStatus();
    const Json& v = params_.at(name);
    const std::string range =
        absl::StrCat("a number in ", lo_open ? "(" : "[", lo, ", ", hi, hi_open ? ")" : "]");
    if (!v.is_number()) return Invalid(name, range, v);
    const double x = v.get<double>();
    const bool above = lo_open ? x > lo : x >= lo;
    const bool below = hi_open ? x < hi : x <= hi;
    if (!std::isfinite(x) || !above || !below) return Invalid(name, range, v);
    *out = x;
    return absl::OkStatus();
  }

  absl::Status String(const char* name, size_t max_bytes, std::string* out) const {
    if (!Has(name)) return absl::OkStatus();
    const Json& v = params_.at(name);
    const std::string what = absl::StrCat("a string of 1 to ", max_bytes, " bytes");
    if (!v.is_string()) return Invalid(name, what, v);
    const std::string& s = v.get_ref<const std::string&>();
    if (s.empty() || s.size() > max_bytes) return Invalid(name, what, v);
    *out = s;
    return absl::OkStatus();
  }

  // An answer extractor spec (MakeAnswerExtractor); leaves *out when absent.
  // The extractor's reason may quote the pattern, so it is JSON-escaped.
  absl::Status Answer(std::string* out) const {
    RETURN_IF_ERROR(String("answer", kRegexPrefixBytes + kMaxAnswerRegexLength, out));
    const absl::StatusOr<std::unique_ptr<AnswerExtractor>> made = MakeAnswerExtractor(*out);
    if (made.ok()) return absl::OkStatus();
    const std::string reason =
        Json(std::string(made.status().message()))
            .dump(-1, ' ', /*ensure_ascii=*/true, Json::error_handler_t::replace);
    return Invalid("answer",
                   absl::StrCat("\"last_number\", \"boxed\" or \"regex:<pattern>\" (", reason, ")"),
                   params_.at("answer"));
  }

  absl::Status Invalid(const char* name, std::string_view what, const Json& got) const {
    return absl::InvalidArgumentError(absl::StrCat("alignment policy '", policy_, "': parameter '",
                                                   name, "' must be ", std::string(what), ", got ",
                                                   Shown(got)));
  }

 private:
  std::string policy_;
  const Json& params_;
};

absl::StatusOr<PolicyParams> ParseBestOfN(const ParamReader& r) {
  BestOfNParams p;
  RETURN_IF_ERROR(r.CheckNames({"n"}));
  RETURN_IF_ERROR(r.Int("n", 1, kMaxPolicyN, &p.n));
  return p;
}

absl::StatusOr<PolicyParams> ParseSoftBestOfN(const ParamReader& r) {
  SoftBestOfNParams p;
  RETURN_IF_ERROR(r.CheckNames({"n", "lambda"}));
  RETURN_IF_ERROR(r.Int("n", 1, kMaxPolicyN, &p.n));
  RETURN_IF_ERROR(r.Number("lambda", 0, 1e6, false, false, &p.lambda));
  return p;
}

absl::StatusOr<PolicyParams> ParseArgs(const ParamReader& r) {
  ArgsParams p;
  RETURN_IF_ERROR(r.CheckNames({"k", "w", "temperature"}));
  RETURN_IF_ERROR(r.Int("k", 1, kMaxPolicyN, &p.k));
  RETURN_IF_ERROR(r.Number("w", 0, 1000, false, false, &p.w));
  if (r.Has("temperature")) {
    double t = 1.0;
    RETURN_IF_ERROR(r.Number("temperature", 0, 100, true, false, &t));
    p.temperature = t;
  }
  return p;
}

absl::StatusOr<PolicyParams> ParseBlockwiseCd(const ParamReader& r) {
  BlockwiseCdParams p;
  RETURN_IF_ERROR(r.CheckNames({"k", "m"}));
  RETURN_IF_ERROR(r.Int("k", 1, kMaxPolicyN, &p.k));
  RETURN_IF_ERROR(r.Int("m", 1, 4096, &p.m));
  return p;
}

absl::StatusOr<PolicyParams> ParseDeepConf(const ParamReader& r) {
  DeepConfParams p;
  RETURN_IF_ERROR(
      r.CheckNames({"n", "n_init", "window", "percentile", "top_k", "answer", "consensus"}));
  RETURN_IF_ERROR(r.Int("n", 1, kMaxPolicyN, &p.n));
  p.n_init = std::min(p.n_init, p.n);
  RETURN_IF_ERROR(r.Int("n_init", 1, p.n, &p.n_init, absl::StrCat("n = ", p.n)));
  RETURN_IF_ERROR(r.Int("window", 1, kMaxPolicyWindow, &p.window));
  RETURN_IF_ERROR(r.Number("percentile", 0, 100, true, true, &p.percentile));
  RETURN_IF_ERROR(r.Int("top_k", 1, 20, &p.top_k));
  RETURN_IF_ERROR(r.Answer(&p.answer));
  if (r.Has("consensus")) {
    double tau = 0.95;
    RETURN_IF_ERROR(r.Number("consensus", 0, 1, true, false, &tau));
    p.consensus = tau;
  }
  return p;
}

absl::StatusOr<PolicyParams> ParseSelfConsistency(const ParamReader& r) {
  SelfConsistencyParams p;
  RETURN_IF_ERROR(r.CheckNames({"n", "window", "rule", "answer"}));
  RETURN_IF_ERROR(r.Int("n", 1, kMaxPolicyN, &p.n));
  p.window = std::min(p.window, p.n);
  RETURN_IF_ERROR(r.Int("window", 1, p.n, &p.window, absl::StrCat("n = ", p.n)));
  std::string rule = "esc";
  RETURN_IF_ERROR(r.String("rule", 16, &rule));
  if (rule == "none") {
    p.rule = SelfConsistencyRule::kNone;
  } else if (rule == "esc") {
    p.rule = SelfConsistencyRule::kEsc;
  } else if (rule == "beta") {
    p.rule = SelfConsistencyRule::kBeta;
  } else {
    return r.Invalid("rule", "one of \"none\", \"esc\", \"beta\"", Json(rule));
  }
  RETURN_IF_ERROR(r.Answer(&p.answer));
  return p;
}

absl::StatusOr<PolicyParams> ParsePrmBeamSearch(const ParamReader& r) {
  PrmBeamSearchParams p;
  RETURN_IF_ERROR(r.CheckNames({"n", "beam_width", "delimiter"}));
  RETURN_IF_ERROR(r.Int("n", 1, kMaxPolicyN, &p.n));
  p.beam_width = std::min(p.beam_width, p.n);
  RETURN_IF_ERROR(r.Int("beam_width", 1, p.n, &p.beam_width, absl::StrCat("n = ", p.n)));
  if (p.n % p.beam_width != 0) {
    const absl::Status bad =
        r.Invalid("beam_width", absl::StrCat("a divisor of n = ", p.n), Json(p.beam_width));
    if (r.Has("beam_width")) return bad;
    // The default (2) meets an odd n the user chose: say which value failed.
    return absl::InvalidArgumentError(
        absl::StrCat(bad.message(), " (the default); give a beam_width that divides n"));
  }
  RETURN_IF_ERROR(r.String("delimiter", kMaxDelimiterBytes, &p.delimiter));
  return p;
}

absl::StatusOr<PolicyParams> ParseLoopGuard(const ParamReader& r) {
  LoopGuardParams p;
  RETURN_IF_ERROR(r.CheckNames({"ngram", "window"}));
  RETURN_IF_ERROR(r.Int("window", 1, kMaxPolicyWindow, &p.window));
  p.ngram = std::min(p.ngram, p.window);
  RETURN_IF_ERROR(r.Int("ngram", 1, p.window, &p.ngram, absl::StrCat("window = ", p.window)));
  return p;
}

}  // namespace

const std::vector<std::string>& BuiltinPolicyNames() {
  static const auto* names = new std::vector<std::string>{
      "best_of_n",        "soft_best_of_n",  "args",      "blockwise_cd", "deepconf",
      "self_consistency", "prm_beam_search", "loop_guard"};
  return *names;
}

absl::StatusOr<ParsedPolicy> ParsePolicySpec(std::string_view name, const nlohmann::json& params) {
  using Parser = absl::StatusOr<PolicyParams> (*)(const ParamReader&);
  static constexpr Parser kParsers[] = {ParseBestOfN,       ParseSoftBestOfN, ParseArgs,
                                        ParseBlockwiseCd,   ParseDeepConf,    ParseSelfConsistency,
                                        ParsePrmBeamSearch, ParseLoopGuard};
  const std::vector<std::string>& names = BuiltinPolicyNames();
  for (size_t i = 0; i < names.size(); ++i) {
    if (name != names[i]) continue;
    ASSIGN_OR_RETURN(PolicyParams parsed, kParsers[i](ParamReader(names[i], params)));
    return ParsedPolicy{names[i], std::move(parsed)};
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown alignment policy ", Quote(name),
                   "; built-in policies: ", absl::StrJoin(names, ", ")));
}

std::string_view SelfConsistencyRuleName(SelfConsistencyRule rule) {
  switch (rule) {
    case SelfConsistencyRule::kNone:
      return "none";
    case SelfConsistencyRule::kEsc:
      return "esc";
    case SelfConsistencyRule::kBeta:
      return "beta";
  }
  return "esc";
}

}  // namespace alignserve
