// BlockPool: reference counts, the free list, the prefix cache (content
// check on hash collisions) and LRU eviction of cached blocks.
#include "engine/block_pool.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <set>
#include <vector>

namespace alignserve {
namespace {

std::vector<int32_t> Tokens(int32_t first, int32_t count) {
  std::vector<int32_t> t(count);
  for (int32_t i = 0; i < count; ++i) t[i] = first + i;
  return t;
}

// Registers `block` as a root block holding `tokens`; returns its uid.
uint64_t CacheRoot(BlockPool& pool, int32_t block, const std::vector<int32_t>& tokens) {
  return pool.Register(block, BlockPool::HashBlock(BlockPool::kRootHash, tokens, ""),
                       BlockPool::kRootUid, tokens, "");
}

TEST_CASE("allocate hands out every block once, then nothing", "[block_pool]") {
  BlockPool pool(4);
  std::set<int32_t> got;
  for (int i = 0; i < 4; ++i) {
    const auto b = pool.Allocate();
    REQUIRE(b.has_value());
    CHECK(pool.ref_count(*b) == 1);
    CHECK_FALSE(pool.is_free(*b));
    got.insert(*b);
  }
  CHECK(got == std::set<int32_t>{0, 1, 2, 3});
  CHECK_FALSE(pool.Allocate().has_value());
  CHECK(pool.NumFreeBlocks() == 0);
  CHECK(pool.Usage() == 1.0);
}

TEST_CASE("a block returns to the free list only when its last reference drops", "[block_pool]") {
  BlockPool pool(2);
  const int32_t b = *pool.Allocate();
  pool.AddRef(b);
  pool.AddRef(b);
  CHECK(pool.ref_count(b) == 3);
  pool.Release(b);
  pool.Release(b);
  CHECK(pool.ref_count(b) == 1);
  CHECK(pool.NumFreeBlocks() == 1);
  CHECK_FALSE(pool.is_free(b));
  pool.Release(b);
  CHECK(pool.is_free(b));
  CHECK(pool.NumFreeBlocks() == 2);
  CHECK(pool.Usage() == 0.0);
  // Freed blocks are reused.
  const int32_t again = *pool.Allocate();
  const int32_t other = *pool.Allocate();
  CHECK(std::set<int32_t>{again, other} == std::set<int32_t>{0, 1});
}

TEST_CASE("a released cached block stays findable and a hit revives it", "[block_pool]") {
  BlockPool pool(3);
  const std::vector<int32_t> tokens = Tokens(100, 4);
  const uint64_t hash = BlockPool::HashBlock(BlockPool::kRootHash, tokens, "");
  const int32_t b = *pool.Allocate();
  const uint64_t uid = pool.Register(b, hash, BlockPool::kRootUid, tokens, "");
  CHECK(uid != BlockPool::kRootUid);
  pool.Release(b);
  CHECK(pool.is_evictable(b));
  CHECK(pool.NumFreeBlocks() == 3);  // evictable blocks count as allocatable
  CHECK(pool.NumEvictableBlocks() == 1);

  const auto hit = pool.Lookup(hash, BlockPool::kRootUid, tokens, "");
  REQUIRE(hit.has_value());
  CHECK(hit->block == b);
  CHECK(hit->uid == uid);
  pool.AddRef(b);
  CHECK(pool.ref_count(b) == 1);
  CHECK(pool.NumEvictableBlocks() == 0);
  CHECK(pool.NumFreeBlocks() == 2);
}

TEST_CASE("a forged hash collision is caught by the token, salt and parent check", "[block_pool]") {
  BlockPool pool(4);
  const std::vector<int32_t> a = Tokens(0, 4);
  const std::vector<int32_t> b = Tokens(50, 4);
  const uint64_t forged = 42;  // both contents claim the same hash
  const int32_t block_a = *pool.Allocate();
  const uint64_t uid_a = pool.Register(block_a, forged, BlockPool::kRootUid, a, "");

  CHECK_FALSE(pool.Lookup(forged, BlockPool::kRootUid, b, "").has_value());
  CHECK_FALSE(pool.Lookup(forged, BlockPool::kRootUid, a, "lora-x").has_value());
  CHECK_FALSE(pool.Lookup(forged, uid_a, a, "").has_value());  // right tokens, wrong parent
  REQUIRE(pool.Lookup(forged, BlockPool::kRootUid, a, "").has_value());

  // Both colliding contents can be cached side by side and found apart.
  const int32_t block_b = *pool.Allocate();
  const uint64_t uid_b = pool.Register(block_b, forged, BlockPool::kRootUid, b, "");
  CHECK(uid_b != uid_a);
  CHECK(pool.Lookup(forged, BlockPool::kRootUid, a, "")->block == block_a);
  CHECK(pool.Lookup(forged, BlockPool::kRootUid, b, "")->block == block_b);

  // A child cached under a's identity is not reachable through b's.
  const int32_t child = *pool.Allocate();
  const std::vector<int32_t> c = Tokens(9, 4);
  pool.Register(child, 7, uid_a, c, "");
  CHECK(pool.Lookup(7, uid_a, c, "")->block == child);
  CHECK_FALSE(pool.Lookup(7, uid_b, c, "").has_value());
}

TEST_CASE("the chained hash depends on the parent, every token and the salt", "[block_pool]") {
  const std::vector<int32_t> t = Tokens(1, 8);
  const uint64_t h = BlockPool::HashBlock(BlockPool::kRootHash, t, "");
  CHECK(h == BlockPool::HashBlock(BlockPool::kRootHash, t, ""));
  CHECK(h != BlockPool::HashBlock(h, t, ""));
  CHECK(h != BlockPool::HashBlock(BlockPool::kRootHash, t, "adapter"));
  for (size_t i = 0; i < t.size(); ++i) {
    std::vector<int32_t> u = t;
    u[i] += 1;
    CHECK(h != BlockPool::HashBlock(BlockPool::kRootHash, u, ""));
  }
}

TEST_CASE("registering content that is already cached keeps one entry", "[block_pool]") {
  BlockPool pool(3);
  const std::vector<int32_t> t = Tokens(3, 4);
  const int32_t first = *pool.Allocate();
  const int32_t second = *pool.Allocate();
  const uint64_t uid = CacheRoot(pool, first, t);
  CHECK(CacheRoot(pool, second, t) == uid);
  CHECK_FALSE(pool.is_cached(second));
  pool.Release(second);
  CHECK(pool.is_free(second));  // uncached duplicate goes straight to the free list
}

TEST_CASE("free blocks are used before cached ones, which are evicted in LRU order",
          "[block_pool]") {
  BlockPool pool(4);
  std::vector<int32_t> blocks;
  for (int i = 0; i < 3; ++i) {
    blocks.push_back(*pool.Allocate());
    CacheRoot(pool, blocks.back(), Tokens(10 * i, 4));
  }
  // Release in the order 2, 0, 1: that is the eviction order.
  pool.Release(blocks[2]);
  pool.Release(blocks[0]);
  pool.Release(blocks[1]);
  CHECK(pool.EvictionOrder() == std::vector<int32_t>{blocks[2], blocks[0], blocks[1]});
  CHECK(pool.NumFreeBlocks() == 4);

  // Block 3 was never cached: it goes first, evicting nothing.
  CHECK(*pool.Allocate() == 3);
  CHECK(pool.stats().evictions == 0);

  // A hit on blocks[0] takes it off the LRU list: it is never evicted while used.
  pool.AddRef(blocks[0]);
  CHECK(*pool.Allocate() == blocks[2]);
  CHECK_FALSE(pool.is_cached(blocks[2]));
  CHECK_FALSE(pool.Lookup(BlockPool::HashBlock(BlockPool::kRootHash, Tokens(20, 4), ""),
                          BlockPool::kRootUid, Tokens(20, 4), "")
                  .has_value());
  CHECK(*pool.Allocate() == blocks[1]);
  CHECK(pool.stats().evictions == 2);
  CHECK_FALSE(pool.Allocate().has_value());
  // The revived block kept its content.
  CHECK(pool.Lookup(BlockPool::HashBlock(BlockPool::kRootHash, Tokens(0, 4), ""),
                    BlockPool::kRootUid, Tokens(0, 4), "")
            ->block == blocks[0]);
}

TEST_CASE("re-releasing a revived block moves it to the back of the LRU list", "[block_pool]") {
  BlockPool pool(2);
  const int32_t a = *pool.Allocate();
  const int32_t b = *pool.Allocate();
  CacheRoot(pool, a, Tokens(0, 2));
  CacheRoot(pool, b, Tokens(5, 2));
  pool.Release(a);
  pool.Release(b);
  CHECK(pool.EvictionOrder() == std::vector<int32_t>{a, b});
  pool.AddRef(a);   // a prefix hit
  pool.Release(a);  // used recently: now evicted last
  CHECK(pool.EvictionOrder() == std::vector<int32_t>{b, a});
}

TEST_CASE("prefix cache counters count blocks", "[block_pool]") {
  BlockPool pool(1);
  CHECK(pool.stats().hit_rate() == 0.0);
  pool.RecordPrefixQuery(4, 3);
  pool.RecordPrefixQuery(4, 0);
  CHECK(pool.stats().queried_blocks == 8);
  CHECK(pool.stats().hit_blocks == 3);
  CHECK(pool.stats().hit_rate() == Approx(3.0 / 8.0));
}

TEST_CASE("usage is the referenced fraction", "[block_pool]") {
  BlockPool pool(4);
  const int32_t a = *pool.Allocate();
  CHECK(pool.Usage() == Approx(0.25));
  CacheRoot(pool, a, Tokens(0, 2));
  pool.Release(a);  // evictable, not in use
  CHECK(pool.Usage() == 0.0);
}

}  // namespace
}  // namespace alignserve
