// AnswerExtractor: turns one finished trace's text into the answer it votes
// for (self-consistency, DeepConf, ESC / Adaptive-Consistency), or nothing.
// Votes compare answers as strings, so each extractor also normalises what it
// returns ("1,000" and "1000.0" are the same vote).
//
// Built-in extractors, chosen by a spec string (MakeAnswerExtractor):
//   "last_number"     the last integer or decimal in the text, normalised
//                     (NormalizeNumber).
//   "boxed"           the content of the last well-formed \boxed{...} or
//                     \fbox{...}, braces balanced (LaTeX's \{ and \} are
//                     literal and do not count); a content that is a single
//                     number is normalised like last_number.
//   "regex:<pattern>" the first capture group (the whole match when the
//                     pattern has no group) of the last match of an
//                     ECMAScript pattern.
//
// Hostile patterns. Requests carry the regex, so it is bounded: at most 256
// characters, counted repetitions whose bounds multiply to at most 1024 (so
// the compiled automaton stays small), compiled for libstdc++'s polynomial
// (breadth-first) executor so nothing backtracks exponentially; back
// references are rejected. Only the last 8,192 bytes of a text are scanned.
// That executor is O(text * automaton) per search start, so a pattern that
// never matches costs O(text^2 * automaton) in the worst case: about 3.4 s
// for "(a+)+b" over 8,192 "a"s on the 2-core dev machine (Release), versus
// never finishing with the default backtracking executor. Run extraction
// off the engine thread. Its matches are leftmost-longest: lazy quantifiers
// may behave greedily (a documented libstdc++ limitation of that executor).
// A pattern std::regex rejects is InvalidArgument at construction; an error
// while matching yields no answer. No exception leaves this module.
//
// Thread-safety: extractors are immutable after construction; Extract may be
// called from any number of threads at once.
#ifndef ALIGNSERVE_ALIGNMENT_ANSWER_EXTRACTOR_H_
#define ALIGNSERVE_ALIGNMENT_ANSWER_EXTRACTOR_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace alignserve {

class AnswerExtractor {
 public:
  virtual ~AnswerExtractor() = default;

  // The answer `text` votes for, or nullopt when it names none.
  virtual std::optional<std::string> Extract(std::string_view text) const = 0;

  // The spec this extractor was made from ("last_number", "regex:...").
  virtual std::string spec() const = 0;
};

// Limits on user-supplied regex extractors (see the file comment).
inline constexpr size_t kMaxAnswerRegexLength = 256;
inline constexpr size_t kMaxAnswerRegexScanBytes = 8192;
inline constexpr double kMaxAnswerRegexRepeatProduct = 1024;

// "last_number", "boxed" or "regex:<pattern>"; anything else, or a bad
// pattern, is InvalidArgument naming the problem.
absl::StatusOr<std::unique_ptr<AnswerExtractor>> MakeAnswerExtractor(std::string_view spec);

// Canonical form of one number literal: no sign for zero, no '+', no
// thousands commas, no leading zeros in the integer part, no trailing zeros
// in the fraction, no '.' when the fraction is empty; ".5" becomes "0.5".
// Returns nullopt unless `literal` is a whole number literal of the form
// [+-]? (digits (,ddd)* | digits)? (. digits)?  with at least one digit.
std::optional<std::string> NormalizeNumber(std::string_view literal);

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_ANSWER_EXTRACTOR_H_
