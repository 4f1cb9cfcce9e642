// StopChecker: decides, token by token, whether one sequence goes on or
// finishes, and which of its text may be streamed to the client now.
//
// Fed each generated token id with the text delta that the sequence's
// IncrementalDetokenizer (models/tokenizer/incremental_detokenizer.h)
// returned for it. Rules, following vLLM (v1 scheduler check_stop and
// detokenizer stop-string check) and OpenAI:
//   - "stop": EOS (unless ignore_eos) or one of stop_token_ids; the token's
//     own text is dropped unless include_stop_str_in_output. stop_token()
//     names a stop_token_ids hit (EOS leaves it empty, as vLLM's
//     stop_reason = None).
//   - "stop": a stop string anywhere in the text, also across token
//     boundaries. The returned text ends before it (or after it with
//     include_stop_str_in_output); text after it is dropped. Of several
//     matches, the one that ends first wins (then the longest), which is what
//     a character-by-character stream would see, independent of how tokens
//     cut the text.
//   - "length": max_tokens output tokens, or prompt + output reaching the
//     context length (no room for another token).
//   - A stop decided on the same token as "length" wins ("stop" says more).
//   - min_tokens: no stop of either kind is honoured until more than
//     min_tokens tokens exist (the Sampler already masks EOS and stop ids
//     that long); a stop string must then end in text of a later token.
// Streaming: unless include_stop_str_in_output, the longest suffix of the
// text that could still grow into a stop string is held back; it is released
// once it cannot, or when the sequence finishes without a stop string. Text
// deltas are whole UTF-8 characters and stop strings valid UTF-8, so every
// cut lands on a character boundary.
// Thread-safety: one per sequence, one thread at a time.
#ifndef ALIGNSERVE_ENGINE_STOP_CHECKER_H_
#define ALIGNSERVE_ENGINE_STOP_CHECKER_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampling_params.h"
#include "engine/sequence.h"

namespace alignserve {

struct StopDecision {
  FinishReason reason = FinishReason::kNone;  // kNone: go on
  std::string text;                           // safe to stream now (maybe empty)
  bool finished() const { return reason != FinishReason::kNone; }
};

class StopChecker {
 public:
  // params: validated. eos_token_ids: the model's end tokens.
  // prompt_len + generated tokens may not exceed max_model_len.
  StopChecker(const SamplingParams& params, std::vector<int32_t> eos_token_ids, int32_t prompt_len,
              int32_t max_model_len);

  // One generated token and its text delta. After a finishing decision,
  // further calls return {reason, ""}.
  StopDecision Append(int32_t token, std::string_view text_delta);

  FinishReason reason() const { return reason_; }
  // The stop_token_ids entry that stopped the sequence, if one did.
  std::optional<int32_t> stop_token() const { return stop_token_; }
  // The stop string that stopped the sequence, if one did.
  std::optional<std::string> stop_string() const { return stop_string_; }
  // Everything released so far: at finish, the completion's whole text.
  const std::string& output_text() const { return output_text_; }
  int32_t num_output_tokens() const { return num_output_; }
  size_t held_back_bytes() const { return pending_.size(); }
  // The held-back text itself: what a sequence finished from outside (a
  // decoding policy's stop) still owes its completion.
  const std::string& held_back_text() const { return pending_; }

 private:
  // The index of the stop string whose match ends first among those ending
  // in the new delta (pending_[new_from:]); *release: how many bytes of
  // pending_ the completion keeps.
  std::optional<size_t> FindStopString(size_t new_from, size_t* release) const;
  // Length of the longest suffix of pending_ that is a proper prefix of a stop string.
  size_t HoldBackLength() const;
  StopDecision Finish(FinishReason reason, size_t release_bytes);

  SamplingParams params_;
  std::vector<int32_t> eos_token_ids_;
  int32_t prompt_len_;
  int32_t max_model_len_;
  int32_t num_output_ = 0;
  FinishReason reason_ = FinishReason::kNone;
  std::optional<int32_t> stop_token_;
  std::optional<std::string> stop_string_;
  size_t max_stop_bytes_ = 1;  // longest stop string (1 when none)
  std::string pending_;        // received, not yet released
  std::string output_text_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_STOP_CHECKER_H_
