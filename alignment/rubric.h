// Rubric: the prompt template a `judge` reward model reads, and the score
// it yields (issue 5: score = logprob("Yes") - logprob("No") of the verdict
// token).
//
// Template syntax. Plain text with two placeholders, `{prompt}` and
// `{response}`; `{{` and `}}` are literal braces. Any other `{name}`, a `{`
// that never closes, or a lone `}` is InvalidArgument naming the line (1 =
// first). `{response}` is required; `{prompt}` is optional; either may
// appear more than once. Filling substitutes the caller's strings verbatim:
// braces inside a prompt or response are never re-read as placeholders.
//
// Rubric files end with a newline by convention; Load drops exactly one
// trailing "\n" (or "\r\n") so a template whose last line is "Answer:" ends
// right there, and the judge's next token is its verdict. The built-in
// default (helpful and harmless, answer Yes or No) is compiled in as
// Rubric::Default() and kept byte-identical to alignment/rubrics/default.txt
// (a test checks it), so the server needs no data files to run.
//
// Thread-safety: an immutable value after Parse/Load; Fill is const.
#ifndef ALIGNSERVE_ALIGNMENT_RUBRIC_H_
#define ALIGNSERVE_ALIGNMENT_RUBRIC_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace alignserve {

class Rubric {
 public:
  static constexpr size_t kMaxFileBytes = 64 * 1024;

  static absl::StatusOr<Rubric> Parse(std::string_view text);
  // NotFound / InvalidArgument naming the path.
  static absl::StatusOr<Rubric> Load(const std::string& path);
  // The built-in helpfulness-and-harmlessness rubric.
  static const Rubric& Default();
  // The default rubric's template text, as alignment/rubrics/default.txt
  // holds it (trailing newline included).
  static std::string_view DefaultTemplateText();

  std::string Fill(std::string_view prompt, std::string_view response) const;

 private:
  enum class Kind { kLiteral, kPrompt, kResponse };
  struct Piece {
    Kind kind;
    std::string text;  // kLiteral only, braces already unescaped
  };
  explicit Rubric(std::vector<Piece> pieces) : pieces_(std::move(pieces)) {}

  std::vector<Piece> pieces_;
};

// Log-softmax of a row of raw logits, computed stably in double (the maximum
// is subtracted before exponentiating). Output has the input's length.
std::vector<float> LogSoftmax(std::span<const float> logits);

// logprob(yes) - logprob(no) from a log-softmax row (a raw logit row gives
// the same value: the normaliser cancels). NaN when either id is outside
// the row, so a misconfigured judge never wins a best-of-n.
double JudgeScore(std::span<const float> logprobs_row, int32_t yes_token, int32_t no_token);

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_RUBRIC_H_
