// KvCacheManager: maps sequences onto BlockPool blocks. It grows block tables
// as sequences compute more tokens, shares blocks between forks and between
// sequences with a common cached prefix, copies a shared block before a
// sequence writes into it (copy-on-write), and returns blocks on free.
//
// Invariants, per sequence holding blocks (between steps):
//   block_table.size() == ceil(num_computed_tokens / block_size);
//   a block is written only by a sequence that holds its only reference, and
//   only at positions >= num_computed_tokens, so cached (full, computed)
//   blocks are never written again;
//   the pool's ref_count of a block == the number of block tables holding it.
// Within a step, AllocateSlots extends the table to cover the scheduled tokens;
// CommitComputed then advances num_computed_tokens once the step has run.
// Owns no device memory: BlockCopy entries are executed by the model runner.
// Thread-safety: owned by the engine thread; not thread-safe.
#ifndef ALIGNSERVE_ENGINE_KV_CACHE_MANAGER_H_
#define ALIGNSERVE_ENGINE_KV_CACHE_MANAGER_H_

#include <cstdint>
#include <vector>

#include "engine/block_pool.h"
#include "engine/sequence.h"
#include "kernels/backend.h"

namespace alignserve {

class KvCacheManager {
 public:
  KvCacheManager(int32_t num_blocks, int32_t block_size, bool enable_prefix_caching = true);

  int32_t block_size() const { return block_size_; }
  int32_t num_blocks() const { return pool_.num_blocks(); }
  bool prefix_caching() const { return enable_prefix_caching_; }
  // Whether seq may take blocks from the prefix cache: caching is on and its
  // request does not ask for prompt logprobs (which need the logits of every
  // prompt position, so it computes its whole prompt, as vLLM does; its
  // blocks are still registered for others).
  bool ReadsPrefixCache(const Sequence& seq) const;

  // Tokens a sequence holding no blocks would take from the prefix cache:
  // whole cached blocks, stopping short of its last token so that one is
  // always computed and yields logits. 0 if caching is off, the sequence
  // holds blocks, or its request asks for prompt logprobs (every prompt
  // position's logits are computed). Changes no pool state (it may extend the sequence's hashes).
  int32_t NumCachedPrefixTokens(Sequence& seq);

  // Reserves K/V slots for the next num_new_tokens uncomputed tokens of seq,
  // all or nothing: on false nothing changed. A sequence holding no blocks
  // first adopts its cached prefix (num_computed_tokens jumps past it, and
  // num_new_tokens counts the tokens after it). Writing into a shared block
  // first moves the sequence to a fresh copy; the {src, dst} pair is appended
  // to `copies`, to run before the step's forward pass.
  bool AllocateSlots(Sequence& seq, int32_t num_new_tokens, std::vector<BlockCopy>& copies);

  // Marks the next n tokens computed (a step wrote their K/V) and registers
  // blocks that became full in the prefix cache. Registering after the step,
  // not at allocation, means a hit never reads K/V still being written.
  void CommitComputed(Sequence& seq, int32_t n);

  // Gives `child` (holding no blocks) every block of `parent`; refcounts up.
  void Fork(const Sequence& parent, Sequence& child);
  // Gives `child` (holding no blocks) the blocks that hold the first n
  // computed tokens of `source`, whose tokens child's first n repeat (the
  // caller checks): refcounts up, child's num_computed_tokens becomes n,
  // and child writes past them copy-on-write. A scoring prompt that
  // extends a sequence computes only what follows it.
  void ShareComputed(const Sequence& source, Sequence& child, int32_t n);
  // Releases every block of seq (its last blocks first, so they are evicted
  // before the shared prefix) and resets num_computed_tokens to 0.
  void Free(Sequence& seq);

  bool CanAllocate(int32_t num_blocks) const { return num_blocks <= NumFreeBlocks(); }
  int32_t NumFreeBlocks() const { return pool_.NumFreeBlocks(); }
  // Fraction of blocks allocatable now, in [0, 1]: policies read it as
  // memory pressure and may halt sequences before the scheduler preempts.
  double FreeFraction() const;
  // Blocks a sequence of num_tokens tokens holds once they are all computed.
  int32_t BlocksFor(int32_t num_tokens) const {
    return (num_tokens + block_size_ - 1) / block_size_;
  }

  const BlockPool& pool() const { return pool_; }

 private:
  // Extends seq's content hashes to cover its full blocks of tokens.
  void UpdateHashes(Sequence& seq);
  // The cached blocks matching seq's leading full blocks (at most
  // (num_tokens - 1) / block_size of them).
  std::vector<BlockPool::CachedBlock> MatchPrefix(Sequence& seq);
  void AdoptPrefix(Sequence& seq, const std::vector<BlockPool::CachedBlock>& prefix);
  // Blocks covering positions [start, end) that seq shares with others.
  int32_t CountSharedInRange(const Sequence& seq, int32_t start, int32_t end) const;
  void CopySharedInRange(Sequence& seq, int32_t start, int32_t end, std::vector<BlockCopy>& copies);

  const int32_t block_size_;
  const bool enable_prefix_caching_;
  BlockPool pool_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_KV_CACHE_MANAGER_H_
