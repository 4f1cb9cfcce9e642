#include "alignment/vote.h"

#include <cmath>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"

namespace alignserve {
namespace {

// Accumulates ballots; tallies keep first-occurrence order because ties are
// resolved by it.
class Ballot {
 public:
  void Add(const std::string& answer, double weight, int64_t index) {
    auto [it, inserted] = index_.try_emplace(answer, result_.tallies.size());
    if (inserted) result_.tallies.push_back(AnswerTally{answer, 0, 0, index});
    AnswerTally& tally = result_.tallies[it->second];
    tally.weight += weight;
    ++tally.count;
    result_.total_weight += weight;
  }

  void Skip() { ++result_.skipped; }

  VoteResult Finish() && {
    const AnswerTally* best = nullptr;
    for (const AnswerTally& tally : result_.tallies) {
      // Strictly greater: an equal later answer never displaces an earlier.
      if (best == nullptr || tally.weight > best->weight) best = &tally;
    }
    if (best != nullptr) {
      result_.winner = best->answer;
      result_.share = result_.total_weight > 0 ? best->weight / result_.total_weight : 0;
    }
    return std::move(result_);
  }

 private:
  VoteResult result_;
  absl::flat_hash_map<std::string, size_t> index_;
};

}  // namespace

VoteResult MajorityVote(std::span<const std::optional<std::string>> answers) {
  Ballot ballot;
  for (size_t i = 0; i < answers.size(); ++i) {
    if (answers[i].has_value()) {
      ballot.Add(*answers[i], 1.0, static_cast<int64_t>(i));
    } else {
      ballot.Skip();
    }
  }
  return std::move(ballot).Finish();
}

VoteResult WeightedMajorityVote(std::span<const VoteEntry> entries) {
  Ballot ballot;
  for (size_t i = 0; i < entries.size(); ++i) {
    const VoteEntry& entry = entries[i];
    if (entry.answer.has_value() && std::isfinite(entry.weight) && entry.weight >= 0) {
      ballot.Add(*entry.answer, entry.weight, static_cast<int64_t>(i));
    } else {
      ballot.Skip();
    }
  }
  return std::move(ballot).Finish();
}

}  // namespace alignserve
