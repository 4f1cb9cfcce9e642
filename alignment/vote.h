// Vote: majority and weighted-majority voting over the answers a group of
// traces produced (self-consistency, DeepConf's confidence-weighted vote).
//
// Rules, shared by both votes:
//   - an entry with no answer (nullopt) is skipped: it neither votes nor adds
//     to the total;
//   - in a weighted vote an entry whose weight is NaN, infinite or negative is
//     skipped too (and counted in `skipped`), so one bad score cannot swing or
//     poison the result;
//   - ties on weight go to the answer that occurred first, so the result is
//     deterministic and independent of hashing.
// The winner's `share` (its weight over all counted weight) is DeepConf's
// consensus ratio beta; a caller stops early when share >= tau.
//
// Thread-safety: pure functions on their arguments.
#ifndef ALIGNSERVE_ALIGNMENT_VOTE_H_
#define ALIGNSERVE_ALIGNMENT_VOTE_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace alignserve {

// One trace's ballot.
struct VoteEntry {
  std::optional<std::string> answer;
  double weight = 1.0;
};

// One distinct answer's total.
struct AnswerTally {
  std::string answer;
  double weight = 0;        // sum of its entries' weights
  int32_t count = 0;        // number of its entries
  int64_t first_index = 0;  // index of its first entry in the input
};

struct VoteResult {
  // nullopt when no entry counted.
  std::optional<std::string> winner;
  // winner's weight / total counted weight, in [0, 1]; 0 when the total is 0.
  double share = 0;
  // Sum of counted weights.
  double total_weight = 0;
  // Entries skipped: no answer, or (weighted vote) an invalid weight.
  int32_t skipped = 0;
  // One per distinct answer, in order of first occurrence.
  std::vector<AnswerTally> tallies;
};

// Every answered entry weighs 1.
VoteResult MajorityVote(std::span<const std::optional<std::string>> answers);

// Entries weigh their `weight` (finite and >= 0, else skipped).
VoteResult WeightedMajorityVote(std::span<const VoteEntry> entries);

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_VOTE_H_
