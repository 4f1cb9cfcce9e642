// Scheduler under thousands of random operations (fixed seeds): requests
// with shared prefixes and salts arrive, steps run, sequences stop, get
// pruned, fork and are aborted (also while their step is in flight), in a
// pool small enough to force preemption and eviction. Some requests carry a
// policy: their stopped sequences keep their blocks until ReleaseRetained,
// and new requests that extend one of them take its blocks over
// (ShareComputedKv), as the engine's scoring requests do.
//
// The oracle is a shadow KV cache: every slot holds a fingerprint of the
// whole token prefix whose K/V it stores. Running each plan writes the
// scheduled tokens' fingerprints after applying its block copies; then every
// scheduled sequence must read, through its block table, exactly its own
// prefix at every position it attends to. That checks paging, chunking,
// copy-on-write, prefix-cache hits and preemption end to end. After every
// step the bookkeeping invariants are checked too.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/decoding_policy.h"
#include "engine/scheduler.h"

namespace alignserve {
namespace {

constexpr int32_t kBlockSize = 4;
constexpr int32_t kNumBlocks = 24;
constexpr int32_t kBudget = 24;
constexpr int32_t kMaxSeqs = 6;
constexpr int32_t kMaxModelLen = 48;
constexpr int32_t kVocab = 6;  // tiny, so random prompts share prefixes often

// Fingerprint of K/V at each position: a hash of the salt and every token up
// to and including that position (what a real K/V row depends on).
std::vector<uint64_t> PrefixFingerprints(const Sequence& seq) {
  uint64_t h = std::hash<std::string_view>()(seq.cache_salt()) | 1;
  std::vector<uint64_t> fps;
  for (const int32_t t : seq.token_ids()) {
    h = (h ^ static_cast<uint64_t>(t + 1)) * 0x100000001b3ull + 0x9e3779b97f4a7c15ull;
    fps.push_back(h);
  }
  return fps;
}

struct Counters {
  int64_t steps = 0, added = 0, rejected = 0, aborted = 0, forked = 0, finished = 0;
  int64_t preemptions = 0, copies = 0, chunked = 0, extended = 0;
};

// Marks a request as a policy request (its stopped sequences are retained).
class NoOpPolicy final : public DecodingPolicy {};

class RandomDriver {
 public:
  explicit RandomDriver(uint32_t seed) : rng_(seed), shadow_(kNumBlocks * kBlockSize, 0) {
    SchedulerConfig config;
    config.max_num_batched_tokens = kBudget;
    config.max_num_seqs = kMaxSeqs;
    config.block_size = kBlockSize;
    config.num_blocks = kNumBlocks;
    config.max_model_len = kMaxModelLen;
    auto s = Scheduler::Create(config);
    REQUIRE(s.ok());
    sched_ = std::move(*s);
  }

  Scheduler& sched() { return *sched_; }
  const Counters& counters() const { return n_; }

  // One engine step with random events around it; arrivals only if `grow`.
  void Step(bool grow) {
    if (grow && Chance(0.5)) AddRandomRequest();
    if (grow && Chance(0.08)) AbortRandomRequest();
    if (grow && Chance(0.05)) ForkRandomSequence();
    const StepPlan plan = sched_->Schedule();
    CheckPlan(plan);
    RunShadow(plan);
    if (grow && Chance(0.03)) AbortRandomRequest();  // while the step is in flight
    auto finished = sched_->Update(MakeOutputs(plan, grow));
    REQUIRE(finished.ok());
    n_.finished += static_cast<int64_t>(finished->size());
    // As the engine's policies do: requests that extend a sequence that just
    // stopped, added while it still holds its blocks; then those go.
    if (grow) {
      for (const auto& g : *finished) {
        for (const auto& seq : g->sequences()) {
          if (!seq->block_table().empty() && Chance(0.5)) ExtendSequence(*seq);
        }
      }
    }
    sched_->ReleaseRetained();
    for (const auto& g : *finished) {
      for (const auto& seq : g->sequences()) CHECK(seq->block_table().empty());
    }
    ++n_.steps;
    CheckBookkeeping();
  }

 private:
  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  int32_t Uniform(int32_t lo, int32_t hi) {
    return std::uniform_int_distribution<int32_t>(lo, hi)(rng_);
  }

  void AddRandomRequest() {
    std::vector<int32_t> prompt(Uniform(1, kMaxModelLen + 4));
    // A shared "system prompt" of 0s makes prefix hits common.
    const int32_t shared = Chance(0.5) ? Uniform(0, static_cast<int32_t>(prompt.size())) : 0;
    for (size_t i = 0; i < prompt.size(); ++i) {
      prompt[i] = static_cast<int32_t>(i) < shared ? 0 : Uniform(0, kVocab - 1);
    }
    RequestParams params;
    params.sampling.max_tokens = Uniform(1, 16);
    params.priority = Uniform(0, 2);
    if (Chance(0.2)) params.cache_salt = "adapter";
    if (Chance(0.3)) params.policy = std::make_shared<NoOpPolicy>();
    const bool fits = static_cast<int32_t>(prompt.size()) + 1 <= kMaxModelLen;
    const auto id = sched_->AddRequest(next_request_++, prompt, params);
    CHECK(id.ok() == fits);
    if (!fits) {
      CHECK(id.status().code() == absl::StatusCode::kInvalidArgument);
      ++n_.rejected;
      return;
    }
    ++n_.added;
  }

  // A request whose prompt is `source`'s tokens and 1-3 more, sharing its
  // computed blocks; it samples once.
  void ExtendSequence(const Sequence& source) {
    std::vector<int32_t> prompt = source.token_ids();
    for (int32_t i = Uniform(1, 3); i > 0; --i) prompt.push_back(Uniform(0, kVocab - 1));
    if (static_cast<int32_t>(prompt.size()) + 1 > kMaxModelLen) return;
    RequestParams params;
    params.sampling.max_tokens = 1;
    params.cache_salt = source.cache_salt();
    const absl::StatusOr<int64_t> child = sched_->AddRequest(next_request_++, prompt, params);
    REQUIRE(child.ok());
    ++n_.added;
    const int32_t shared = sched_->ShareComputedKv(source, *child);
    CHECK(shared == source.num_computed_tokens());
    n_.extended += shared > 0;
  }

  std::vector<const Sequence*> Live() const {
    std::vector<const Sequence*> live = sched_->running();
    const std::vector<const Sequence*> waiting = sched_->waiting();
    live.insert(live.end(), waiting.begin(), waiting.end());
    return live;
  }

  void AbortRandomRequest() {
    const std::vector<const Sequence*> live = Live();
    if (live.empty()) return;
    const int64_t request = live[Uniform(0, static_cast<int32_t>(live.size()) - 1)]->request_id();
    REQUIRE(sched_->Abort(request).ok());
    ++n_.aborted;
  }

  void ForkRandomSequence() {
    const std::vector<const Sequence*> live = Live();
    if (live.empty() || live.size() > 2 * kMaxSeqs) return;
    REQUIRE(sched_->Fork(live[Uniform(0, static_cast<int32_t>(live.size()) - 1)]->seq_id()).ok());
    ++n_.forked;
  }

  StepOutput MakeOutputs(const StepPlan& plan, bool grow) {
    StepOutput out;
    const size_t live = Live().size();
    for (const ScheduledSequence& s : plan.seqs) {
      if (!s.sample) continue;
      if (sched_->FindSequence(s.seq_id) == nullptr && Chance(0.5)) continue;  // aborted
      SequenceOutput o;
      o.seq_id = s.seq_id;
      o.token_id = Uniform(0, kVocab - 1);
      if (Chance(0.05)) o.finish = FinishReason::kStop;
      if (grow && Chance(0.02)) o.finish = FinishReason::kAbort;
      if (grow && live < 2 * kMaxSeqs && Chance(0.05)) {
        o.fork_tokens.assign(Uniform(1, 3), Uniform(0, kVocab - 1));
        n_.forked += static_cast<int64_t>(o.fork_tokens.size());
      }
      out.outputs.push_back(std::move(o));
    }
    return out;
  }

  // Budget, cap, and that every written slot is private to its writer.
  void CheckPlan(const StepPlan& plan) {
    CHECK(plan.num_tokens() <= kBudget);
    CHECK(static_cast<int32_t>(plan.seqs.size()) <= kMaxSeqs);
    n_.preemptions += static_cast<int64_t>(plan.preempted.size());
    n_.copies += static_cast<int64_t>(plan.block_copies.size());
    const BlockPool& pool = sched_->kv_cache().pool();
    std::set<int64_t> slots;
    std::set<int64_t> seq_ids;
    for (const ScheduledSequence& s : plan.seqs) {
      CHECK(seq_ids.insert(s.seq_id).second);
      CHECK(s.num_tokens() > 0);
      const int32_t end = s.start_pos + s.num_tokens();
      REQUIRE(static_cast<int32_t>(s.block_table.size()) == (end + kBlockSize - 1) / kBlockSize);
      const Sequence* seq = sched_->FindSequence(s.seq_id);
      REQUIRE(seq != nullptr);
      CHECK(s.sample == (end == seq->num_tokens()));
      if (!s.sample) ++n_.chunked;
      for (int32_t p = s.start_pos; p < end; ++p) {
        const int32_t block = s.block_table[p / kBlockSize];
        CHECK(pool.ref_count(block) == 1);
        CHECK_FALSE(pool.is_cached(block));
        CHECK(slots.insert(int64_t{block} * kBlockSize + p % kBlockSize).second);
      }
    }
  }

  // Executes the plan on the shadow cache and checks what attention reads.
  void RunShadow(const StepPlan& plan) {
    for (const BlockCopy& c : plan.block_copies) {
      std::copy_n(shadow_.begin() + c.src * kBlockSize, kBlockSize,
                  shadow_.begin() + c.dst * kBlockSize);
    }
    for (const ScheduledSequence& s : plan.seqs) {
      const std::vector<uint64_t> fps = PrefixFingerprints(*sched_->FindSequence(s.seq_id));
      for (int32_t p = s.start_pos; p < s.start_pos + s.num_tokens(); ++p) {
        shadow_[Slot(s, p)] = fps[p];
      }
    }
    for (const ScheduledSequence& s : plan.seqs) {
      const std::vector<uint64_t> fps = PrefixFingerprints(*sched_->FindSequence(s.seq_id));
      for (int32_t p = 0; p < s.start_pos + s.num_tokens(); ++p) {
        if (shadow_[Slot(s, p)] != fps[p]) {
          FAIL("seq " << s.seq_id << " reads wrong K/V at position " << p);
        }
      }
    }
  }

  static int64_t Slot(const ScheduledSequence& s, int32_t p) {
    return int64_t{s.block_table[p / kBlockSize]} * kBlockSize + p % kBlockSize;
  }

  // Refcounts equal block-table references; free and referenced are disjoint.
  void CheckBookkeeping() {
    const BlockPool& pool = sched_->kv_cache().pool();
    std::vector<int32_t> refs(kNumBlocks, 0);
    for (const Sequence* seq : sched_->running()) {
      CHECK(seq->status() == SequenceStatus::kRunning);
      CHECK(static_cast<int32_t>(seq->block_table().size()) ==
            (seq->num_computed_tokens() + kBlockSize - 1) / kBlockSize);
      CHECK(seq->num_uncomputed_tokens() >= 1);
      for (const int32_t b : seq->block_table()) ++refs[b];
    }
    for (const Sequence* seq : sched_->waiting()) {
      // Only a sequence that shares another's computed tokens waits with
      // blocks (ShareComputedKv); it holds exactly those.
      CHECK(static_cast<int32_t>(seq->block_table().size()) ==
            (seq->num_computed_tokens() + kBlockSize - 1) / kBlockSize);
      CHECK(seq->num_uncomputed_tokens() >= 1);
      for (const int32_t b : seq->block_table()) ++refs[b];
    }
    int32_t unreferenced = 0;
    for (int32_t b = 0; b < kNumBlocks; ++b) {
      CHECK(pool.ref_count(b) == refs[b]);
      CHECK(pool.is_free(b) + pool.is_evictable(b) + (pool.ref_count(b) > 0) == 1);
      unreferenced += refs[b] == 0;
    }
    CHECK(pool.NumFreeBlocks() == unreferenced);
    CHECK(static_cast<int32_t>(sched_->running().size()) <= 3 * kMaxSeqs);
  }

  std::mt19937 rng_;
  std::unique_ptr<Scheduler> sched_;
  std::vector<uint64_t> shadow_;  // [num_blocks * block_size] fingerprint per slot
  int64_t next_request_ = 0;
  Counters n_;
};

TEST_CASE("random operations keep every KV and scheduling invariant, and drain to empty",
          "[scheduler][random]") {
  for (const uint32_t seed : {1u, 2u, 3u}) {
    INFO("seed " << seed);
    RandomDriver driver(seed);
    for (int step = 0; step < 3000; ++step) driver.Step(/*grow=*/true);
    // No more arrivals: everything must finish, preempted sequences included.
    int drain = 0;
    while (driver.sched().num_unfinished_requests() > 0 && drain < 2000) {
      driver.Step(/*grow=*/false);
      ++drain;
    }
    CHECK(driver.sched().num_unfinished_requests() == 0);
    const BlockPool& pool = driver.sched().kv_cache().pool();
    CHECK(pool.NumFreeBlocks() == kNumBlocks);
    for (int32_t b = 0; b < kNumBlocks; ++b) CHECK(pool.ref_count(b) == 0);

    // The run must have exercised what it claims to test.
    const Counters& n = driver.counters();
    CHECK(n.added > 1000);
    CHECK(n.rejected > 0);
    CHECK(n.aborted > 100);
    CHECK(n.forked > 100);
    CHECK(n.preemptions > 50);
    CHECK(n.copies > 50);
    CHECK(n.chunked > 100);
    CHECK(n.extended > 50);
    CHECK(pool.stats().hit_blocks > 100);
    CHECK(pool.stats().evictions > 100);
    WARN("seed " << seed << ": " << n.steps << " steps, " << n.added << " requests, " << n.finished
                 << " finished, " << n.aborted << " aborts, " << n.forked << " forks, "
                 << n.preemptions << " preemptions, " << n.copies << " block copies, " << n.extended
                 << " extending requests, " << pool.stats().hit_blocks << "/"
                 << pool.stats().queried_blocks << " prefix blocks hit, " << pool.stats().evictions
                 << " evictions, drained in " << drain);
  }
}

}  // namespace
}  // namespace alignserve
