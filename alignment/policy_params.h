// ParsedPolicy: a built-in decoding policy's name and its typed, validated
// parameters (named apart from engine/decoding_policy.h's PolicySpec, what a
// policy asks of the engine, so that both headers can meet in one file), parsed from the
// `alignment.params` JSON object of a request. Parameter names are part of the API (issue 5) and
// must not change.
//
// Every failure is InvalidArgument with a message naming the policy, the
// parameter and what is allowed, e.g.
//   "alignment policy 'deepconf': parameter 'percentile' must be a number in
//    (0, 100), got 100"
// so the front end can return it verbatim as a 400. Unknown policy names,
// unknown parameter names, wrong JSON types (a bool is not a number; an
// integer parameter must be a JSON integer) and out-of-range values are all
// rejected. A null or absent params object means all defaults.
//
// Caps. Every sample count (n, n_init, k, beam_width) is at most kMaxPolicyN
// = 64: each sample is a sequence holding KV blocks, and 64 is the figure
// the DeepConf target is stated at. top_k is at most 20, the number
// of top logprobs the engine returns (SamplingParams::kMaxLogprobs).
//
// Thread-safety: pure functions; the structs are plain values.
#ifndef ALIGNSERVE_ALIGNMENT_POLICY_PARAMS_H_
#define ALIGNSERVE_ALIGNMENT_POLICY_PARAMS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace alignserve {

inline constexpr int32_t kMaxPolicyN = 64;
inline constexpr int32_t kMaxPolicyWindow = 65536;
inline constexpr int32_t kMaxDelimiterBytes = 64;

// best_of_n: n samples, return the highest reward.
struct BestOfNParams {
  int32_t n = 4;  // [1, 64]
};

// soft_best_of_n: n samples, return i with probability ~ exp(r_i / lambda).
struct SoftBestOfNParams {
  int32_t n = 4;        // [1, 64]
  double lambda = 1.0;  // [0, 1e6]; 0 (and anything < 1e-6) means argmax
};

// args: each step, score the top k tokens' prefixes with the reward model
// and take argmax of logit + w * reward, or sample softmax(score / T).
struct ArgsParams {
  int32_t k = 10;  // [1, 64]
  double w = 1.0;  // [0, 1000]
  // (0, 100]; absent: greedy argmax (ARGS-greedy), present: sampled.
  std::optional<double> temperature;
};

// blockwise_cd: k continuations of m tokens, keep the best, repeat.
struct BlockwiseCdParams {
  int32_t k = 4;   // [1, 64]
  int32_t m = 32;  // [1, 4096] tokens per block
};

// deepconf (online): see alignment/deepconf.h.
struct DeepConfParams {
  int32_t n = 32;            // [1, 64] total traces, warm-up included
  int32_t n_init = 16;       // [1, n]; when absent, min(16, n)
  int32_t window = 2048;     // [1, 65536] tokens per group
  double percentile = 90.0;  // (0, 100); 90 keeps the top 10%, 10 the top 90%
  int32_t top_k = 20;        // [1, 20] logprobs per token confidence
  // Answer extractor spec (alignment/answer_extractor.h): "last_number",
  // "boxed" or "regex:<pattern>"; validated by MakeAnswerExtractor.
  std::string answer = "last_number";
  // The paper's optional early stop at consensus: (0, 1], the winning
  // answer's share of the vote weight at which the remaining traces stop
  // (the paper's tau, 0.95 there); absent: every trace runs.
  std::optional<double> consensus;
};

// self_consistency with early stopping: see alignment/stopping_rules.h.
enum class SelfConsistencyRule { kNone, kEsc, kBeta };
struct SelfConsistencyParams {
  int32_t n = 16;                                        // [1, 64] sample budget
  int32_t window = 5;                                    // [1, n] ESC window
  SelfConsistencyRule rule = SelfConsistencyRule::kEsc;  // "none" | "esc" | "beta"
  std::string answer = "last_number";                    // as DeepConfParams::answer
};

// prm_beam_search: n beams, steps end at `delimiter`; keep the top
// n / beam_width by process reward and expand each beam_width ways.
struct PrmBeamSearchParams {
  int32_t n = 8;                   // [1, 64]
  int32_t beam_width = 2;          // [1, n], and n % beam_width == 0
  std::string delimiter = "\n\n";  // 1 to 64 bytes
};

// loop_guard: see alignment/loop_guard.h (repeats is fixed at 3).
struct LoopGuardParams {
  int32_t ngram = 32;     // [1, window]
  int32_t window = 1024;  // [1, 65536]
};

using PolicyParams =
    std::variant<BestOfNParams, SoftBestOfNParams, ArgsParams, BlockwiseCdParams, DeepConfParams,
                 SelfConsistencyParams, PrmBeamSearchParams, LoopGuardParams>;

struct ParsedPolicy {
  std::string name;
  PolicyParams params;
};

// The built-in policy names, in the order of PolicyParams' alternatives.
const std::vector<std::string>& BuiltinPolicyNames();

// `params` must be a JSON object or null.
absl::StatusOr<ParsedPolicy> ParsePolicySpec(std::string_view name, const nlohmann::json& params);

// "none", "esc", "beta".
std::string_view SelfConsistencyRuleName(SelfConsistencyRule rule);

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_POLICY_PARAMS_H_
