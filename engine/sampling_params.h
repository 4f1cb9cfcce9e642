// SamplingParams: how one sequence turns logits into tokens and when it
// stops, with vLLM / OpenAI semantics. Validated once when a request arrives
// (Validate), then read-only for the sequence's life.
//
// Which stage reads what:
//   Sampler (engine/sampler.h), once per step, in this order:
//     logit_bias, min_tokens masking (EOS and stop_token_ids to -inf),
//     repetition_penalty (prompt + output tokens), presence_penalty and
//     frequency_penalty (output tokens only), temperature, top_k, top_p,
//     min_p, then the draw (seeded by `seed`, keyed by the step).
//     logprobs: from the raw model logits (vLLM's default "raw_logprobs").
//   StopChecker (engine/stop_checker.h): ignore_eos, stop_token_ids, stop,
//     include_stop_str_in_output, min_tokens, max_tokens.
// Thread-safety: a plain value.
#ifndef ALIGNSERVE_ENGINE_SAMPLING_PARAMS_H_
#define ALIGNSERVE_ENGINE_SAMPLING_PARAMS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace alignserve {

struct SamplingParams {
  // Caps enforced by Validate (ROBUSTNESS.md items 6-9).
  static constexpr int kMaxLogprobs = 20;
  static constexpr int kMaxStopStrings = 16;
  static constexpr int kMaxStopStringBytes = 256;
  static constexpr int kMaxLogitBias = 1024;
  static constexpr int kMaxStopTokenIds = 1024;
  static constexpr float kMaxTemperature = 100.0f;
  static constexpr float kMaxRepetitionPenalty = 10.0f;
  static constexpr int kMaxN = 16;
  // Temperatures below this are greedy, as in vLLM (_SAMPLING_EPS).
  static constexpr float kGreedyEpsilon = 1e-5f;

  float temperature = 1.0f;  // [0, 100]; < 1e-5: greedy (argmax, lowest id on ties)
  int top_k = 0;             // 0 or -1: off; else keep logits >= the k-th largest
  float top_p = 1.0f;        // (0, 1]
  float min_p = 0.0f;        // [0, 1]: drop probabilities < min_p * the top one
  // HF semantics: a logit > 0 is divided by it, else multiplied; over the
  // distinct tokens of prompt + output. (0, 10]; 1: off.
  float repetition_penalty = 1.0f;
  // OpenAI semantics over output tokens only: logit[t] -= frequency * count(t)
  // + presence * (count(t) > 0). Each in [-2, 2].
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  // Token id -> added to its logit, each in [-100, 100]; at most 1024 entries.
  std::map<int32_t, float> logit_bias;
  // EOS (unless ignore_eos) and stop_token_ids are masked to -inf, and no stop
  // (token or string) is honoured, until this many tokens were generated.
  int32_t min_tokens = 0;
  int32_t max_tokens = 16;  // >= 1; the context length may cut it shorter
  // Number of top alternatives returned with each sampled token (0..20),
  // plus the sampled token's own logprob; none: no logprobs.
  std::optional<int> logprobs;
  // The same for every prompt position after the first; none: off.
  std::optional<int> prompt_logprobs;
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;  // ids in [0, vocab)
  std::vector<std::string> stop;        // non-empty UTF-8, <= 256 bytes, <= 16 of them
  bool include_stop_str_in_output = false;
  // Drop special tokens from the output text (vLLM's skip_special_tokens);
  // the token ids are unaffected.
  bool skip_special_tokens = true;
  std::optional<uint64_t> seed;  // none: drawn at random once per sequence
  // Parallel sampling (OpenAI `n`): choices generated from one prompt, which
  // is prefilled once and shared copy-on-write; choice i draws with seed + i.
  // [1, kMaxN].
  int n = 1;

  bool greedy() const { return temperature < kGreedyEpsilon; }
  // Any of repetition, presence or frequency penalty is on.
  bool has_penalties() const {
    return repetition_penalty != 1.0f || presence_penalty != 0.0f || frequency_penalty != 0.0f;
  }
  // InvalidArgument naming the field for NaN, Inf or out-of-range values,
  // token ids outside [0, vocab_size), and lists over their caps.
  absl::Status Validate(int vocab_size) const;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_SAMPLING_PARAMS_H_
