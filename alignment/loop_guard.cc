#include "alignment/loop_guard.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace alignserve {
namespace {

constexpr uint64_t kPrime = (uint64_t{1} << 61) - 1;
constexpr uint64_t kBase = 0x9E3779B97F4A7C15ull % kPrime;

uint64_t MulMod(uint64_t a, uint64_t b) {
  const unsigned __int128 product = static_cast<unsigned __int128>(a) * b;
  const uint64_t lo = static_cast<uint64_t>(product & kPrime);
  const uint64_t hi = static_cast<uint64_t>(product >> 61);
  uint64_t sum = lo + hi;  // 2^61 == 1 (mod p)
  if (sum >= kPrime) sum -= kPrime;
  return sum;
}

uint64_t AddMod(uint64_t a, uint64_t b) {
  const uint64_t sum = a + b;
  return sum >= kPrime ? sum - kPrime : sum;
}

uint64_t SubMod(uint64_t a, uint64_t b) { return a >= b ? a - b : a + kPrime - b; }

// Token ids map to [1, 2^32]: never 0, so a leading run of id 0 still hashes.
uint64_t Digit(int32_t token) { return static_cast<uint64_t>(static_cast<uint32_t>(token)) + 1; }

}  // namespace

absl::StatusOr<LoopGuard> LoopGuard::Create(const LoopGuardConfig& config) {
  if (config.window < 1 || config.window > kMaxWindow) {
    return absl::InvalidArgumentError(
        absl::StrCat("loop_guard window must be in [1, ", kMaxWindow, "], got ", config.window));
  }
  if (config.ngram < 1 || config.ngram > config.window) {
    return absl::InvalidArgumentError(absl::StrCat(
        "loop_guard ngram must be in [1, window = ", config.window, "], got ", config.ngram));
  }
  if (config.repeats < 2 || config.repeats > kMaxWindow) {
    return absl::InvalidArgumentError(
        absl::StrCat("loop_guard repeats must be in [2, ", kMaxWindow, "], got ", config.repeats));
  }
  return LoopGuard(config);
}

LoopGuard::LoopGuard(const LoopGuardConfig& config)
    : ngram_(config.ngram),
      window_(config.window),
      repeats_(config.repeats),
      hash_mask_(config.hash_mask),
      top_power_(1),
      ring_(static_cast<size_t>(config.window), 0),
      hashes_(static_cast<size_t>(config.window), 0) {
  for (int32_t i = 1; i < ngram_; ++i) top_power_ = MulMod(top_power_, kBase);
}

bool LoopGuard::Add(int32_t token) {
  if (looping_) return true;
  const int64_t p = tokens_;  // this token's position
  // The n-gram starting at p - window leaves the window now.
  if (p - window_ >= 0) Release(hashes_[static_cast<size_t>(p % window_)]);
  // The token leaving the rolling hash is read before its slot is reused
  // (ngram may equal window).
  if (p >= ngram_) rolling_ = SubMod(rolling_, MulMod(Digit(TokenAt(p - ngram_)), top_power_));
  rolling_ = AddMod(MulMod(rolling_, kBase), Digit(token));
  ring_[static_cast<size_t>(p % window_)] = token;
  tokens_ = p + 1;
  if (tokens_ < ngram_) return false;
  const int64_t start = tokens_ - ngram_;
  const uint64_t hash = rolling_ & hash_mask_;
  hashes_[static_cast<size_t>(start % window_)] = hash;
  if (++counts_[hash] >= repeats_ && VerifiedCount(start, hash) >= repeats_) looping_ = true;
  return looping_;
}

void LoopGuard::Release(uint64_t hash) {
  auto it = counts_.find(hash);
  if (it != counts_.end() && --it->second == 0) counts_.erase(it);
}

bool LoopGuard::SameNgram(int64_t a, int64_t b) const {
  for (int32_t i = 0; i < ngram_; ++i) {
    if (TokenAt(a + i) != TokenAt(b + i)) return false;
  }
  return true;
}

int32_t LoopGuard::VerifiedCount(int64_t start, uint64_t hash) const {
  int32_t count = 0;
  // Every n-gram lying wholly in the window [tokens - window, tokens).
  for (int64_t u = std::max<int64_t>(0, tokens_ - window_); u <= tokens_ - ngram_; ++u) {
    if (hashes_[static_cast<size_t>(u % window_)] == hash && SameNgram(u, start)) ++count;
  }
  return count;
}

}  // namespace alignserve
