#include "engine/kv_cache_manager.h"

#include <algorithm>
#include <span>

#include "absl/base/internal/raw_logging.h"

namespace alignserve {

KvCacheManager::KvCacheManager(int32_t num_blocks, int32_t block_size, bool enable_prefix_caching)
    : block_size_(block_size), enable_prefix_caching_(enable_prefix_caching), pool_(num_blocks) {}

double KvCacheManager::FreeFraction() const {
  if (num_blocks() == 0) return 0.0;
  return static_cast<double>(NumFreeBlocks()) / num_blocks();
}

void KvCacheManager::UpdateHashes(Sequence& seq) {
  std::vector<uint64_t>& hashes = seq.mutable_kv().block_hashes;
  const std::span<const int32_t> tokens(seq.token_ids());
  const size_t full = static_cast<size_t>(seq.num_tokens() / block_size_);
  for (size_t i = hashes.size(); i < full; ++i) {
    const uint64_t parent = i == 0 ? BlockPool::kRootHash : hashes[i - 1];
    hashes.push_back(BlockPool::HashBlock(parent, tokens.subspan(i * block_size_, block_size_),
                                          seq.cache_salt()));
  }
}

std::vector<BlockPool::CachedBlock> KvCacheManager::MatchPrefix(Sequence& seq) {
  std::vector<BlockPool::CachedBlock> prefix;
  if (!enable_prefix_caching_ || !seq.block_table().empty()) return prefix;
  UpdateHashes(seq);
  if (!ReadsPrefixCache(seq)) return prefix;
  const std::span<const int32_t> tokens(seq.token_ids());
  // The last token is never taken from the cache: its logits are needed.
  const int32_t max_blocks = (seq.num_tokens() - 1) / block_size_;
  uint64_t parent_uid = BlockPool::kRootUid;
  for (int32_t i = 0; i < max_blocks; ++i) {
    const auto hit = pool_.Lookup(seq.kv().block_hashes[i], parent_uid,
                                  tokens.subspan(i * block_size_, block_size_), seq.cache_salt());
    if (!hit) break;
    prefix.push_back(*hit);
    parent_uid = hit->uid;
  }
  return prefix;
}

bool KvCacheManager::ReadsPrefixCache(const Sequence& seq) const {
  return enable_prefix_caching_ && !seq.group().params().sampling.prompt_logprobs.has_value();
}

int32_t KvCacheManager::NumCachedPrefixTokens(Sequence& seq) {
  return static_cast<int32_t>(MatchPrefix(seq).size()) * block_size_;
}

bool KvCacheManager::AllocateSlots(Sequence& seq, int32_t num_new_tokens,
                                   std::vector<BlockCopy>& copies) {
  const std::vector<BlockPool::CachedBlock> prefix = MatchPrefix(seq);
  const int32_t start =
      seq.num_computed_tokens() + static_cast<int32_t>(prefix.size()) * block_size_;
  const int32_t end = start + num_new_tokens;
  const int32_t held = static_cast<int32_t>(seq.block_table().size() + prefix.size());
  const int32_t fresh = std::max(0, BlocksFor(end) - held);
  const int32_t copied = CountSharedInRange(seq, start, end);
  // Reviving an evictable cached block uses up an allocatable block too.
  const int32_t revived = static_cast<int32_t>(std::count_if(
      prefix.begin(), prefix.end(),
      [this](const BlockPool::CachedBlock& c) { return pool_.is_evictable(c.block); }));
  if (fresh + copied + revived > NumFreeBlocks()) return false;

  AdoptPrefix(seq, prefix);
  CopySharedInRange(seq, start, end, copies);
  std::vector<int32_t>& table = seq.mutable_kv().block_table;
  for (int32_t i = 0; i < fresh; ++i) table.push_back(*pool_.Allocate());
  return true;
}

void KvCacheManager::AdoptPrefix(Sequence& seq, const std::vector<BlockPool::CachedBlock>& prefix) {
  if (!enable_prefix_caching_ || !seq.block_table().empty()) return;
  SequenceKvState& kv = seq.mutable_kv();
  const int32_t eligible = (seq.num_tokens() - 1) / block_size_;
  pool_.RecordPrefixQuery(eligible, static_cast<int32_t>(prefix.size()));
  for (const BlockPool::CachedBlock& c : prefix) {
    pool_.AddRef(c.block);
    kv.block_table.push_back(c.block);
    kv.block_uids.push_back(c.uid);
  }
  kv.num_computed_tokens = static_cast<int32_t>(prefix.size()) * block_size_;
}

int32_t KvCacheManager::CountSharedInRange(const Sequence& seq, int32_t start, int32_t end) const {
  const std::vector<int32_t>& table = seq.block_table();
  int32_t shared = 0;
  for (int32_t i = start / block_size_;
       i < BlocksFor(end) && i < static_cast<int32_t>(table.size()); ++i) {
    if (pool_.ref_count(table[i]) > 1) ++shared;
  }
  return shared;
}

void KvCacheManager::CopySharedInRange(Sequence& seq, int32_t start, int32_t end,
                                       std::vector<BlockCopy>& copies) {
  std::vector<int32_t>& table = seq.mutable_kv().block_table;
  for (int32_t i = start / block_size_;
       i < BlocksFor(end) && i < static_cast<int32_t>(table.size()); ++i) {
    if (pool_.ref_count(table[i]) <= 1) continue;
    // A block being written is partial, hence never cached: the copy takes
    // over no prefix-cache identity.
    const int32_t dst = *pool_.Allocate();
    copies.push_back(BlockCopy{table[i], dst});
    pool_.Release(table[i]);
    table[i] = dst;
  }
}

void KvCacheManager::CommitComputed(Sequence& seq, int32_t n) {
  SequenceKvState& kv = seq.mutable_kv();
  kv.num_computed_tokens += n;
  ABSL_RAW_CHECK(
      kv.num_computed_tokens <= seq.num_tokens() &&
          BlocksFor(kv.num_computed_tokens) <= static_cast<int32_t>(kv.block_table.size()),
      "CommitComputed past the allocated slots");
  if (!enable_prefix_caching_) return;
  UpdateHashes(seq);
  const std::span<const int32_t> tokens(seq.token_ids());
  const size_t full = static_cast<size_t>(kv.num_computed_tokens / block_size_);
  for (size_t i = kv.block_uids.size(); i < full; ++i) {
    const uint64_t parent_uid = i == 0 ? BlockPool::kRootUid : kv.block_uids[i - 1];
    kv.block_uids.push_back(pool_.Register(kv.block_table[i], kv.block_hashes[i], parent_uid,
                                           tokens.subspan(i * block_size_, block_size_),
                                           seq.cache_salt()));
  }
}

void KvCacheManager::Fork(const Sequence& parent, Sequence& child) {
  SequenceKvState& kv = child.mutable_kv();
  ABSL_RAW_CHECK(kv.block_table.empty(), "Fork into a sequence holding blocks");
  kv = parent.kv();
  for (const int32_t block : kv.block_table) pool_.AddRef(block);
}

void KvCacheManager::ShareComputed(const Sequence& source, Sequence& child, int32_t n) {
  SequenceKvState& kv = child.mutable_kv();
  const SequenceKvState& src = source.kv();
  ABSL_RAW_CHECK(kv.block_table.empty(), "ShareComputed into a sequence holding blocks");
  ABSL_RAW_CHECK(n > 0 && n <= src.num_computed_tokens && n < child.num_tokens(),
                 "ShareComputed of tokens the source has not computed");
  kv.block_table.assign(src.block_table.begin(), src.block_table.begin() + BlocksFor(n));
  for (const int32_t block : kv.block_table) pool_.AddRef(block);
  kv.num_computed_tokens = n;
  // Full blocks keep their prefix-cache identity; child's own hashes follow
  // its own tokens (they differ from source's past n).
  const size_t full = std::min(static_cast<size_t>(n / block_size_), src.block_uids.size());
  kv.block_uids.assign(src.block_uids.begin(), src.block_uids.begin() + full);
  kv.block_hashes.clear();
  UpdateHashes(child);
}

void KvCacheManager::Free(Sequence& seq) {
  SequenceKvState& kv = seq.mutable_kv();
  for (auto it = kv.block_table.rbegin(); it != kv.block_table.rend(); ++it) pool_.Release(*it);
  kv.block_table.clear();
  kv.block_uids.clear();
  kv.num_computed_tokens = 0;
}

}  // namespace alignserve
