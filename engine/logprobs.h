// Logprobs: what a sequence reports about one position, from that
// position's logits row: the chosen token's log-probability, its rank, and
// the top-n alternatives.
//
// Which logits: the raw model row, before logit_bias, penalties, temperature
// and truncation. This is vLLM's default (logprobs_mode "raw_logprobs") and
// what OpenAI clients expect: the model's own belief, independent of how the
// token was drawn. The same function serves prompt_logprobs (the row of
// position i scored against prompt token i + 1).
// Thread-safety: pure functions.
#ifndef ALIGNSERVE_ENGINE_LOGPROBS_H_
#define ALIGNSERVE_ENGINE_LOGPROBS_H_

#include <cstdint>
#include <span>
#include <vector>

namespace alignserve {

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct PositionLogprobs {
  float logprob = 0.0f;  // of the chosen (sampled or prompt) token
  int32_t rank = 0;      // 1 + the number of tokens with a strictly higher logprob
  // At most n entries, by logprob descending then token id ascending.
  std::vector<TokenLogprob> top;
};

// log(sum(exp(row))), computed stably (max subtracted, double accumulation).
// -inf entries contribute nothing; an all -inf row gives -inf.
double LogSumExp(std::span<const float> row);

// The n largest entries of `row` (n <= row.size()), by value descending then
// index ascending, into *out as (index, value - log_norm). One pass, O(vocab
// * small) with an insertion-sorted window of n; *out is reused, no sort of
// the vocabulary.
void TopLogprobs(std::span<const float> row, double log_norm, int n,
                 std::vector<TokenLogprob>* out);

// Everything above for `token`, with n alternatives (n may be 0).
void ComputePositionLogprobs(std::span<const float> row, int32_t token, int n,
                             PositionLogprobs* out);

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_LOGPROBS_H_
