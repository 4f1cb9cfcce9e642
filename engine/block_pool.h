// BlockPool: the paged KV cache's blocks as integer ids [0, num_blocks) with
// reference counts, plus the prefix cache. It owns no device memory: the
// model's KvCache holds the bytes, the pool only decides who owns which id.
//
// Every block is in exactly one of three states:
//   referenced  ref_count > 0 (it may also be in the prefix cache);
//   free        ref_count == 0, not cached: on the free list;
//   evictable   ref_count == 0, cached: on the LRU list, content kept so a
//               later prefix hit can revive it.
// Allocate takes a free block first and evicts the least recently released
// evictable block only when no free one is left. All operations are O(1)
// except the token comparison of a prefix lookup (O(block_size)).
//
// Prefix cache: a FULL block of computed tokens is keyed by a chained content
// hash, HashBlock(parent block's hash, its tokens, salt). A hit must also
// match the stored tokens, salt and the parent's identity (a uid unique to
// each cache entry, never reused), so a hash collision, even a forged one,
// never shares K/V between different prefixes.
// Thread-safety: owned by the engine thread; not thread-safe.
#ifndef ALIGNSERVE_ENGINE_BLOCK_POOL_H_
#define ALIGNSERVE_ENGINE_BLOCK_POOL_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"

namespace alignserve {

// Prefix-cache counters, in blocks (multiply by block_size for tokens).
struct PrefixCacheStats {
  int64_t queried_blocks = 0;  // full blocks of newly admitted sequences looked up
  int64_t hit_blocks = 0;      // of those, found in the cache
  int64_t evictions = 0;       // cached blocks evicted to serve an allocation
  double hit_rate() const {
    return queried_blocks == 0 ? 0.0 : static_cast<double>(hit_blocks) / queried_blocks;
  }
};

class BlockPool {
 public:
  // Hash of the empty prefix, and parent identity of a sequence's first block.
  static constexpr uint64_t kRootHash = 0x9e3779b97f4a7c15ull;
  static constexpr uint64_t kRootUid = 0;

  struct CachedBlock {
    int32_t block;
    uint64_t uid;  // identity of this cache entry; parent_uid of its children
  };

  explicit BlockPool(int32_t num_blocks);

  int32_t num_blocks() const { return static_cast<int32_t>(blocks_.size()); }

  // A block with ref_count 1 and no cached content, or nullopt when every
  // block is referenced. May evict the LRU evictable block.
  std::optional<int32_t> Allocate();
  // Adds a reference to a referenced block, or revives an evictable one.
  void AddRef(int32_t block);
  // Drops a reference; at zero the block becomes evictable if cached, else free.
  void Release(int32_t block);

  int32_t ref_count(int32_t block) const { return blocks_[block].ref_count; }
  bool is_cached(int32_t block) const { return blocks_[block].entry.uid != kRootUid; }
  bool is_evictable(int32_t block) const { return ref_count(block) == 0 && is_cached(block); }
  bool is_free(int32_t block) const { return ref_count(block) == 0 && !is_cached(block); }

  // Blocks Allocate can hand out now: free plus evictable.
  int32_t NumFreeBlocks() const { return static_cast<int32_t>(free_.size()) + num_evictable_; }
  int32_t NumEvictableBlocks() const { return num_evictable_; }
  // Fraction of blocks referenced, in [0, 1].
  double Usage() const;

  static uint64_t HashBlock(uint64_t parent_hash, std::span<const int32_t> tokens,
                            std::string_view salt);

  // The cached block holding exactly `tokens` under `salt` after the prefix
  // whose last block has identity parent_uid; no side effects.
  std::optional<CachedBlock> Lookup(uint64_t hash, uint64_t parent_uid,
                                    std::span<const int32_t> tokens, std::string_view salt) const;
  // Caches a referenced, full, computed block. Returns the identity of its
  // content: a new entry's uid, or the uid of an identical entry that already
  // exists (the block then stays uncached, so each content is cached once).
  uint64_t Register(int32_t block, uint64_t hash, uint64_t parent_uid,
                    std::span<const int32_t> tokens, std::string_view salt);

  void RecordPrefixQuery(int32_t queried_blocks, int32_t hit_blocks);
  const PrefixCacheStats& stats() const { return stats_; }

  // The evictable blocks, next to be evicted first (for tests and metrics).
  std::vector<int32_t> EvictionOrder() const;

 private:
  struct CacheEntry {
    uint64_t uid = kRootUid;  // kRootUid: not cached
    uint64_t hash = 0;
    uint64_t parent_uid = kRootUid;
    std::vector<int32_t> tokens;
    std::string salt;
  };
  struct Block {
    int32_t ref_count = 0;
    int32_t lru_prev = -1;  // links of the evictable list, -1 at the ends
    int32_t lru_next = -1;
    CacheEntry entry;
  };

  void LruPushBack(int32_t block);
  void LruRemove(int32_t block);
  void Uncache(int32_t block);

  std::vector<Block> blocks_;  // [num_blocks]
  std::vector<int32_t> free_;  // stack of free blocks, lowest id on top at start
  int32_t num_evictable_ = 0;  // length of the LRU list
  int32_t lru_head_ = -1;      // least recently released: evicted first
  int32_t lru_tail_ = -1;
  uint64_t next_uid_ = kRootUid + 1;
  absl::flat_hash_map<uint64_t, absl::InlinedVector<int32_t, 1>> by_hash_;  // hash -> cached blocks
  PrefixCacheStats stats_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_BLOCK_POOL_H_
