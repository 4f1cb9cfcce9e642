#include "engine/block_pool.h"

#include <algorithm>

#include "absl/base/internal/raw_logging.h"

namespace alignserve {
namespace {

// splitmix64's finalizer: a cheap, well-mixing 64-bit permutation.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

BlockPool::BlockPool(int32_t num_blocks) : blocks_(num_blocks) {
  free_.reserve(num_blocks);
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

std::optional<int32_t> BlockPool::Allocate() {
  int32_t block;
  if (!free_.empty()) {
    block = free_.back();
    free_.pop_back();
  } else if (lru_head_ >= 0) {
    block = lru_head_;
    LruRemove(block);
    Uncache(block);
    ++stats_.evictions;
  } else {
    return std::nullopt;
  }
  blocks_[block].ref_count = 1;
  return block;
}

void BlockPool::AddRef(int32_t block) {
  Block& b = blocks_[block];
  ABSL_RAW_CHECK(b.ref_count > 0 || is_cached(block), "AddRef on a free block");
  if (b.ref_count == 0) LruRemove(block);
  ++b.ref_count;
}

void BlockPool::Release(int32_t block) {
  Block& b = blocks_[block];
  ABSL_RAW_CHECK(b.ref_count > 0, "Release of an unreferenced block");
  if (--b.ref_count > 0) return;
  if (is_cached(block)) {
    LruPushBack(block);
  } else {
    free_.push_back(block);
  }
}

double BlockPool::Usage() const {
  if (blocks_.empty()) return 0.0;
  return 1.0 - static_cast<double>(NumFreeBlocks()) / num_blocks();
}

uint64_t BlockPool::HashBlock(uint64_t parent_hash, std::span<const int32_t> tokens,
                              std::string_view salt) {
  uint64_t h = Mix(parent_hash);
  for (const char c : salt) h = Mix(h ^ static_cast<unsigned char>(c));
  h = Mix(h ^ salt.size());
  for (const int32_t t : tokens) h = Mix(h ^ static_cast<uint32_t>(t));
  return h;
}

std::optional<BlockPool::CachedBlock> BlockPool::Lookup(uint64_t hash, uint64_t parent_uid,
                                                        std::span<const int32_t> tokens,
                                                        std::string_view salt) const {
  const auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return std::nullopt;
  for (const int32_t block : it->second) {
    const CacheEntry& e = blocks_[block].entry;
    if (e.parent_uid == parent_uid && e.salt == salt &&
        std::equal(e.tokens.begin(), e.tokens.end(), tokens.begin(), tokens.end())) {
      return CachedBlock{block, e.uid};
    }
  }
  return std::nullopt;
}

uint64_t BlockPool::Register(int32_t block, uint64_t hash, uint64_t parent_uid,
                             std::span<const int32_t> tokens, std::string_view salt) {
  ABSL_RAW_CHECK(blocks_[block].ref_count > 0, "Register of an unreferenced block");
  if (is_cached(block)) return blocks_[block].entry.uid;
  if (const auto existing = Lookup(hash, parent_uid, tokens, salt)) return existing->uid;
  CacheEntry& e = blocks_[block].entry;
  e.uid = next_uid_++;
  e.hash = hash;
  e.parent_uid = parent_uid;
  e.tokens.assign(tokens.begin(), tokens.end());
  e.salt.assign(salt);
  by_hash_[hash].push_back(block);
  return e.uid;
}

void BlockPool::RecordPrefixQuery(int32_t queried_blocks, int32_t hit_blocks) {
  stats_.queried_blocks += queried_blocks;
  stats_.hit_blocks += hit_blocks;
}

std::vector<int32_t> BlockPool::EvictionOrder() const {
  std::vector<int32_t> order;
  for (int32_t b = lru_head_; b >= 0; b = blocks_[b].lru_next) order.push_back(b);
  return order;
}

void BlockPool::LruPushBack(int32_t block) {
  Block& b = blocks_[block];
  b.lru_prev = lru_tail_;
  b.lru_next = -1;
  if (lru_tail_ >= 0) {
    blocks_[lru_tail_].lru_next = block;
  } else {
    lru_head_ = block;
  }
  lru_tail_ = block;
  ++num_evictable_;
}

void BlockPool::LruRemove(int32_t block) {
  Block& b = blocks_[block];
  if (b.lru_prev >= 0) {
    blocks_[b.lru_prev].lru_next = b.lru_next;
  } else {
    lru_head_ = b.lru_next;
  }
  if (b.lru_next >= 0) {
    blocks_[b.lru_next].lru_prev = b.lru_prev;
  } else {
    lru_tail_ = b.lru_prev;
  }
  b.lru_prev = b.lru_next = -1;
  --num_evictable_;
}

// Removes a block's entry; children registered under its uid become
// unreachable (uids are never reused) and age out of the LRU list.
void BlockPool::Uncache(int32_t block) {
  CacheEntry& e = blocks_[block].entry;
  auto it = by_hash_.find(e.hash);
  if (it != by_hash_.end()) {
    auto& list = it->second;
    list.erase(std::remove(list.begin(), list.end(), block), list.end());
    if (list.empty()) by_hash_.erase(it);
  }
  e = CacheEntry{};
}

}  // namespace alignserve
