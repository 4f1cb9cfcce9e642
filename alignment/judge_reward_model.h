// JudgeRewardModel: the `judge` reward model (issue 5). A causal LM reads a
// Rubric (alignment/rubric.h) filled with the prompt and the response and
// its next token is the verdict: reward = logprob("Yes") - logprob("No").
// The scoring runs through the engine the policy runs on (PolicyContext::
// Score), so by default (scorer 0) the judge is the served model and its
// prompts are batched with generation; the rubric's fixed opening is a
// shared prefix-cache hit. A second judge model runs as scorer k >= 1 (an
// engine attached with LlmEngine::AttachScorer), with its own tokenizer.
//
// Tokenization: the filled rubric is encoded with the served model's
// tokenizer, BOS as the tokenizer adds it by default, and with
// parse_special = false, so a prompt or response spelled like a special
// token ("<|im_end|>") cannot break out of the rubric. No chat template is
// applied: the rubric is read as plain text.
// Verdict tokens: the token that follows the filled rubric when " Yes" /
// " No" is appended (with the space when the rubric ends in a non-space
// character, as the default's "Answer:" does; "Yes" / "No" after
// whitespace), found by encoding the text with and without the verdict, so
// merges at the boundary are taken as the tokenizer makes them. On SmolLM2
// these are the single tokens "ĠYes" and "ĠNo".
//
// Thread-safety: immutable after Create; every method is const. The
// tokenizer must outlive the model.
#ifndef ALIGNSERVE_ALIGNMENT_JUDGE_REWARD_MODEL_H_
#define ALIGNSERVE_ALIGNMENT_JUDGE_REWARD_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "alignment/reward_model.h"
#include "alignment/rubric.h"
#include "models/tokenizer/tokenizer.h"

namespace alignserve {

// The first token the tokenizer adds when `word` follows `text` (after a
// space unless text ends in whitespace), both encoded with the given
// options; -1 if it adds none. How a judge finds its verdict tokens.
int32_t VerdictToken(const Tokenizer& tokenizer, const std::string& text, std::string_view word,
                     bool add_bos, bool parse_special);

class JudgeRewardModel final : public RewardModel {
 public:
  // InvalidArgument: a null tokenizer, or verdict tokens that cannot be told
  // apart (the same first token for Yes and No).
  // `tokenizer` is the judge model's; `scorer` the engine that runs it
  // (ScoreRequest::scorer: 0 = the served model).
  static absl::StatusOr<std::shared_ptr<const JudgeRewardModel>> Create(
      const Tokenizer* tokenizer, Rubric rubric = Rubric::Default(), int scorer = 0);
  // The rubric read from a template file (Rubric::Load's errors pass through).
  static absl::StatusOr<std::shared_ptr<const JudgeRewardModel>> CreateFromFile(
      const Tokenizer* tokenizer, const std::string& rubric_path, int scorer = 0);

  // The judge's input for one pair.
  std::vector<int32_t> JudgePrompt(std::string_view prompt, std::string_view response) const;
  int32_t yes_token() const { return yes_token_; }
  int32_t no_token() const { return no_token_; }

  absl::StatusOr<int64_t> Submit(const RewardInput& input, PolicyContext& ctx) const override;
  // logprob(yes) - logprob(no) from the result's two logprobs.
  double Reward(const ScoreResult& result) const override;

 private:
  JudgeRewardModel(const Tokenizer& tokenizer, Rubric rubric, int32_t yes, int32_t no, int scorer)
      : tokenizer_(tokenizer),
        rubric_(std::move(rubric)),
        yes_token_(yes),
        no_token_(no),
        scorer_(scorer) {}

  const Tokenizer& tokenizer_;
  const Rubric rubric_;
  const int32_t yes_token_;
  const int32_t no_token_;
  const int scorer_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_JUDGE_REWARD_MODEL_H_
