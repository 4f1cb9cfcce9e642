// LoopGuard: notices a reasoning path that has started repeating itself, so
// a policy can prune it instead of letting it burn tokens to max_tokens.
//
// Definition. After t tokens the window is tokens [t - window, t). The path
// is looping when some n-gram (n = `ngram` consecutive tokens) occurs at
// least `repeats` times entirely inside the window (occurrences may
// overlap: a period-1 loop "x x x ..." repeats its n-gram at every offset).
// A loop of period p is caught after about (repeats - 1) * p + ngram tokens,
// so any period up to (window - ngram) / (repeats - 1) is caught.
//
// Defaults: ngram 32, window 1024, repeats 3. Thirty-two identical tokens
// occurring three times within a thousand is far outside what healthy
// prose or reasoning does (retrieval-style repeats, a quoted line, a
// re-stated equation, are short or rarely verbatim thrice), while a
// degenerate loop reaches it within ~100 tokens of starting.
//
// Cost. O(1) amortised per token: a rolling polynomial hash (mod 2^61 - 1)
// of the last n tokens, a ring of the window's tokens and n-gram hashes,
// and a hash -> occurrence count map with eviction. Only when a hash's
// count reaches `repeats` are the occurrences compared token by token
// (O(window + repeats * ngram), once: the verdict is sticky), so a hash
// collision can delay nothing and never prunes a healthy path.
//
// Thread-safety: a plain value, owned by one sequence's policy state.
#ifndef ALIGNSERVE_ALIGNMENT_LOOP_GUARD_H_
#define ALIGNSERVE_ALIGNMENT_LOOP_GUARD_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace alignserve {

struct LoopGuardConfig {
  int32_t ngram = 32;     // in [1, window]
  int32_t window = 1024;  // in [1, 65536]
  int32_t repeats = 3;    // in [2, 65536]; above window - ngram + 1 it never fires
  // Tests only: ANDed into every hash to force collisions. Keep all ones.
  uint64_t hash_mask = ~uint64_t{0};
};

class LoopGuard {
 public:
  static constexpr int32_t kMaxWindow = 65536;

  // InvalidArgument when a field is outside its range.
  static absl::StatusOr<LoopGuard> Create(const LoopGuardConfig& config);

  // Appends one token; returns looping(). Once looping, further tokens are
  // ignored (the path is to be pruned).
  bool Add(int32_t token);

  bool looping() const { return looping_; }
  int64_t tokens() const { return tokens_; }

 private:
  explicit LoopGuard(const LoopGuardConfig& config);

  // Token at absolute position `pos` (inside the ring).
  int32_t TokenAt(int64_t pos) const { return ring_[static_cast<size_t>(pos % window_)]; }
  // Whether the n-grams starting at a and b are equal, token by token.
  bool SameNgram(int64_t a, int64_t b) const;
  // Counts window occurrences truly equal to the n-gram starting at `start`.
  int32_t VerifiedCount(int64_t start, uint64_t hash) const;
  void Release(uint64_t hash);

  int32_t ngram_;
  int32_t window_;
  int32_t repeats_;
  uint64_t hash_mask_;
  uint64_t top_power_;                             // base^(ngram - 1) mod p
  std::vector<int32_t> ring_;                      // [window] tokens, position t at t % window
  std::vector<uint64_t> hashes_;                   // [window] hash of the n-gram starting there
  absl::flat_hash_map<uint64_t, int32_t> counts_;  // n-gram hash -> occurrences in window
  uint64_t rolling_ = 0;                           // hash of the last min(t, ngram) tokens
  int64_t tokens_ = 0;
  bool looping_ = false;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_LOOP_GUARD_H_
