// Scheduler, table-driven: each scenario lists, step by step, the requests
// that arrive, the plan the scheduler must produce (which sequences, how many
// tokens each, who is preempted) and the state after Update (finished
// requests, running sequences, free blocks). Step outputs are built by hand:
// no model runs.
#include "engine/scheduler.h"

#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <vector>

#include "engine/decoding_policy.h"

// Table rows name only the fields they check; the rest keep their defaults.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace alignserve {
namespace {

struct Chunk {
  int64_t seq_id;
  int32_t num_tokens;
  bool operator==(const Chunk& o) const { return seq_id == o.seq_id && num_tokens == o.num_tokens; }
};
std::ostream& operator<<(std::ostream& os, const Chunk& c) {
  return os << "{seq " << c.seq_id << ", " << c.num_tokens << "}";
}

struct Arrival {
  int64_t request_id;
  std::vector<int32_t> prompt;
  int32_t max_tokens = 16;
  int32_t priority = 0;
  bool prompt_logprobs = false;
};

using Ids = std::vector<int64_t>;

struct Row {
  std::vector<Arrival> arrive;                                 // AddRequest before Schedule
  std::vector<Chunk> chunks;                                   // the plan, in order
  std::vector<int64_t> preempted = {};                         // seq ids preempted by Schedule
  std::vector<int64_t> finished = {};                          // request ids returned by Update
  int32_t free_blocks = -1;                                    // after Update; -1: not checked
  std::optional<std::vector<int64_t>> running = std::nullopt;  // seq ids after Update
  std::map<int64_t, SequenceOutput> outputs = {};              // overrides of the default output
};

std::vector<int32_t> Prompt(int32_t first, int32_t count) {
  std::vector<int32_t> t(count);
  for (int32_t i = 0; i < count; ++i) t[i] = first + i;
  return t;
}

// Default sampled token: a function of the position it will take.
SequenceOutput DefaultOutput(const ScheduledSequence& s) {
  SequenceOutput out;
  out.seq_id = s.seq_id;
  out.token_id = 500 + (s.start_pos + s.num_tokens()) % 100;
  return out;
}

std::vector<Chunk> Chunks(const StepPlan& plan) {
  std::vector<Chunk> chunks;
  for (const ScheduledSequence& s : plan.seqs) chunks.push_back({s.seq_id, s.num_tokens()});
  return chunks;
}

std::vector<int64_t> RunningIds(const Scheduler& s) {
  std::vector<int64_t> ids;
  for (const Sequence* seq : s.running()) ids.push_back(seq->seq_id());
  return ids;
}

std::unique_ptr<Scheduler> Make(int32_t budget, int32_t max_seqs, int32_t block_size,
                                int32_t num_blocks, int32_t max_model_len = 1024,
                                bool prefix_caching = true) {
  SchedulerConfig config;
  config.max_num_batched_tokens = budget;
  config.max_num_seqs = max_seqs;
  config.block_size = block_size;
  config.num_blocks = num_blocks;
  config.max_model_len = max_model_len;
  config.enable_prefix_caching = prefix_caching;
  auto s = Scheduler::Create(config);
  REQUIRE(s.ok());
  return std::move(*s);
}

// Every block the pool has is allocatable (free or evictable) and unreferenced.
void CheckAllBlocksFree(const Scheduler& s) {
  const BlockPool& pool = s.kv_cache().pool();
  CHECK(pool.NumFreeBlocks() == pool.num_blocks());
  for (int32_t b = 0; b < pool.num_blocks(); ++b) CHECK(pool.ref_count(b) == 0);
}

void RunTable(Scheduler& s, const std::vector<Row>& rows) {
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& row = rows[i];
    INFO("step " << i + 1);
    for (const Arrival& a : row.arrive) {
      RequestParams params;
      params.sampling.max_tokens = a.max_tokens;
      params.priority = a.priority;
      if (a.prompt_logprobs) params.sampling.prompt_logprobs = 0;
      REQUIRE(s.AddRequest(a.request_id, a.prompt, params).ok());
    }
    const StepPlan plan = s.Schedule();
    CHECK(Chunks(plan) == row.chunks);
    CHECK(plan.preempted == row.preempted);
    CHECK(plan.num_tokens() <= s.config().max_num_batched_tokens);
    StepOutput out;
    for (const ScheduledSequence& seq : plan.seqs) {
      if (!seq.sample) continue;
      const auto it = row.outputs.find(seq.seq_id);
      out.outputs.push_back(it != row.outputs.end() ? it->second : DefaultOutput(seq));
    }
    auto finished = s.Update(out);
    REQUIRE(finished.ok());
    std::vector<int64_t> finished_ids;
    for (const auto& g : *finished) finished_ids.push_back(g->request_id());
    CHECK(finished_ids == row.finished);
    if (row.free_blocks >= 0) CHECK(s.kv_cache().NumFreeBlocks() == row.free_blocks);
    if (row.running) CHECK(RunningIds(s) == *row.running);
  }
}

TEST_CASE("a long prompt is prefilled in chunks across three steps, then decodes", "[scheduler]") {
  auto s = Make(/*budget=*/8, /*max_seqs=*/4, /*block_size=*/4, /*num_blocks=*/16);
  const std::vector<Row> steps = {
      {.arrive = {{7, Prompt(1, 20), /*max_tokens=*/2}},
       .chunks = {{0, 8}},
       .free_blocks = 14,
       .running = Ids{0}},
      {.chunks = {{0, 8}}, .free_blocks = 12},
      {.chunks = {{0, 4}}, .free_blocks = 11},  // last chunk: samples output 1
      {.chunks = {{0, 1}}, .finished = {7}, .free_blocks = 16, .running = Ids{}},
  };
  RunTable(*s, steps);
  CheckAllBlocksFree(*s);
}

TEST_CASE("chunks carry positions, tokens and sampling flags and fill a BatchLayout",
          "[scheduler]") {
  auto s = Make(/*budget=*/8, 4, /*block_size=*/4, 16);
  REQUIRE(s->AddRequest(1, Prompt(10, 12), {}).ok());
  StepPlan first = s->Schedule();
  REQUIRE(first.seqs.size() == 1);
  CHECK(first.seqs[0].start_pos == 0);
  CHECK(first.seqs[0].token_ids == Prompt(10, 8));
  CHECK_FALSE(first.seqs[0].sample);
  REQUIRE(s->Update({}).ok());

  REQUIRE(s->AddRequest(2, Prompt(50, 3), {}).ok());
  const StepPlan plan = s->Schedule();
  REQUIRE(plan.seqs.size() == 2);
  const ScheduledSequence& a = plan.seqs[0];
  CHECK(a.start_pos == 8);
  CHECK(a.token_ids == Prompt(18, 4));
  CHECK(a.sample);
  CHECK(a.block_table.size() == 3);
  const ScheduledSequence& b = plan.seqs[1];
  CHECK(b.start_pos == 0);
  CHECK(b.token_ids == Prompt(50, 3));
  CHECK(b.sample);

  const BatchLayout layout = plan.ToBatchLayout();
  CHECK(layout.num_tokens() == 7);
  CHECK(layout.query_start == std::vector<int32_t>{0, 4, 7});
  CHECK(layout.context_lens == std::vector<int32_t>{12, 3});
  CHECK(layout.positions == std::vector<int32_t>{8, 9, 10, 11, 0, 1, 2});
  CHECK(layout.logits_indices == std::vector<int32_t>{3, 6});
  CHECK(layout.max_blocks_per_seq == 3);
  for (int t = 0; t < 4; ++t) {
    CHECK(layout.slot_mapping[t] == int64_t{a.block_table[2]} * 4 + t);
  }
  CHECK(layout.block_tables[3] == b.block_table[0]);
  CHECK(layout.block_tables[4] == 0);  // padding
}

TEST_CASE("running decodes go before prefills, even a higher-priority prefill", "[scheduler]") {
  auto s = Make(/*budget=*/8, 4, /*block_size=*/4, 32);
  const std::vector<Row> steps = {
      {.arrive = {{1, Prompt(1, 2), 10, /*priority=*/5}}, .chunks = {{0, 2}}},
      // Request 2 outranks request 1 but is a prefill: request 1's decode goes first.
      {.arrive = {{2, Prompt(100, 20), 10, /*priority=*/0}},
       .chunks = {{0, 1}, {1, 7}},
       .running = Ids{1, 0}},
      {.chunks = {{0, 1}, {1, 7}}},
      {.chunks = {{0, 1}, {1, 6}}},
      // Both decode now, in priority order.
      {.chunks = {{1, 1}, {0, 1}}},
  };
  RunTable(*s, steps);
}

TEST_CASE("a partial prefill continues before new requests are admitted", "[scheduler]") {
  auto s = Make(/*budget=*/6, 4, /*block_size=*/4, 32);
  const std::vector<Row> steps = {
      {.arrive = {{1, Prompt(1, 10)}}, .chunks = {{0, 6}}},
      {.arrive = {{2, Prompt(50, 3)}}, .chunks = {{0, 4}, {1, 2}}},
      {.chunks = {{0, 1}, {1, 1}}},
  };
  RunTable(*s, steps);
}

TEST_CASE("waiting requests are admitted by priority, then arrival", "[scheduler]") {
  auto s = Make(/*budget=*/4, /*max_seqs=*/1, /*block_size=*/4, 32);
  const std::vector<Row> steps = {
      {.arrive = {{10, Prompt(1, 4), 1, /*priority=*/2},
                  {11, Prompt(20, 4), 1, /*priority=*/0},
                  {12, Prompt(40, 4), 1, /*priority=*/1},
                  {13, Prompt(60, 4), 1, /*priority=*/0}},
       .chunks = {{1, 4}},
       .finished = {11}},
      {.chunks = {{3, 4}}, .finished = {13}},
      {.chunks = {{2, 4}}, .finished = {12}},
      {.chunks = {{0, 4}}, .finished = {10}},
  };
  RunTable(*s, steps);
}

TEST_CASE("a tiny pool preempts the youngest sequence, which recomputes and finishes",
          "[scheduler]") {
  // 6 blocks of 2 tokens; no prefix cache, so B recomputes everything.
  auto s = Make(/*budget=*/16, 4, /*block_size=*/2, /*num_blocks=*/6, 1024,
                /*prefix_caching=*/false);
  const std::vector<Row> steps = {
      {.arrive = {{1, Prompt(1, 4), 6}, {2, Prompt(20, 4), 6}},
       .chunks = {{0, 4}, {1, 4}},
       .free_blocks = 2},
      {.chunks = {{0, 1}, {1, 1}}, .free_blocks = 0},
      {.chunks = {{0, 1}, {1, 1}}, .free_blocks = 0},
      // A needs a block; B (younger) is preempted and waits. No admission
      // in a step that preempted.
      {.chunks = {{0, 1}}, .preempted = {1}, .free_blocks = 2, .running = Ids{0}},
      // B's 7 tokens need 4 blocks; only 2 are free.
      {.chunks = {{0, 1}}, .free_blocks = 2},
      {.chunks = {{0, 1}}, .finished = {1}, .free_blocks = 6, .running = Ids{}},
      // B recomputes prompt + 3 outputs in one chunk and samples its 4th output.
      {.chunks = {{1, 7}}, .free_blocks = 2, .running = Ids{1}},
      {.chunks = {{1, 1}}, .free_blocks = 2},
      {.chunks = {{1, 1}}, .finished = {2}, .free_blocks = 6},
  };
  RunTable(*s, steps);
  CheckAllBlocksFree(*s);
}

TEST_CASE("with the prefix cache, a preempted sequence recomputes only evicted blocks",
          "[scheduler]") {
  // The same tiny pool as above. B's released blocks stay cached; A's new
  // blocks evict them last-block-first, so B finds its first block again.
  auto s = Make(/*budget=*/16, 4, /*block_size=*/2, /*num_blocks=*/6);
  const std::vector<Row> steps = {
      {.arrive = {{1, Prompt(1, 4), 6}, {2, Prompt(20, 4), 6}},
       .chunks = {{0, 4}, {1, 4}},
       .free_blocks = 2},
      {.chunks = {{0, 1}, {1, 1}}, .free_blocks = 0},
      {.chunks = {{0, 1}, {1, 1}}, .free_blocks = 0},
      {.chunks = {{0, 1}}, .preempted = {1}, .free_blocks = 2},
      {.chunks = {{0, 1}}, .free_blocks = 2},
      {.chunks = {{0, 1}}, .finished = {1}, .free_blocks = 6},
      // 2 of B's 7 tokens come from the cache.
      {.chunks = {{1, 5}}, .free_blocks = 2},
      {.chunks = {{1, 1}}, .free_blocks = 2},
      {.chunks = {{1, 1}}, .finished = {2}, .free_blocks = 6},
  };
  RunTable(*s, steps);
  CHECK(s->kv_cache().pool().stats().hit_blocks == 1);
  CheckAllBlocksFree(*s);
}

TEST_CASE("a preempted sequence keeps its outputs and re-queues ahead of later arrivals",
          "[scheduler]") {
  auto s = Make(/*budget=*/16, 4, /*block_size=*/2, /*num_blocks=*/4, 1024, false);
  REQUIRE(s->AddRequest(1, Prompt(1, 3), {}).ok());
  REQUIRE(s->AddRequest(2, Prompt(10, 3), {}).ok());
  StepPlan plan = s->Schedule();  // 2 blocks each: the pool is full
  REQUIRE(plan.seqs.size() == 2);
  StepOutput out;
  out.outputs = {DefaultOutput(plan.seqs[0]), DefaultOutput(plan.seqs[1])};
  REQUIRE(s->Update(out).ok());
  // Both decode at position 3, inside their second block: no new blocks.
  plan = s->Schedule();
  out.outputs = {DefaultOutput(plan.seqs[0]), DefaultOutput(plan.seqs[1])};
  REQUIRE(s->Update(out).ok());
  REQUIRE(s->AddRequest(3, Prompt(30, 2), {}).ok());  // arrives later than request 2
  plan = s->Schedule();                               // position 4 needs a block
  CHECK(plan.preempted == std::vector<int64_t>{1});
  const Sequence* b = s->FindSequence(1);
  REQUIRE(b != nullptr);
  CHECK(b->status() == SequenceStatus::kPreempted);
  CHECK(b->num_computed_tokens() == 0);
  CHECK(b->block_table().empty());
  CHECK(b->num_output_tokens() == 2);  // kept: recomputed as part of its new prefill
  CHECK(b->num_preemptions() == 1);
  const std::vector<const Sequence*> waiting = s->waiting();
  REQUIRE(waiting.size() == 2);
  CHECK(waiting[0]->seq_id() == 1);  // ahead of request 3
  CHECK(waiting[1]->seq_id() == 2);
}

TEST_CASE("a shared system prompt is served from the prefix cache", "[scheduler]") {
  auto s = Make(/*budget=*/64, 8, /*block_size=*/4, 32);
  const std::vector<int32_t> system = Prompt(1000, 12);  // 3 full blocks
  auto with_suffix = [&](int32_t first) {
    std::vector<int32_t> p = system;
    for (int32_t t : Prompt(first, 3)) p.push_back(t);
    return p;
  };
  const std::vector<Row> steps = {
      {.arrive = {{1, with_suffix(1)}}, .chunks = {{0, 15}}},
      // 12 cached tokens: request 2 computes only its 3-token suffix.
      {.arrive = {{2, with_suffix(50)}}, .chunks = {{0, 1}, {1, 3}}},
  };
  RunTable(*s, steps);
  const Sequence* a = s->FindSequence(0);
  const Sequence* b = s->FindSequence(1);
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  CHECK(b->num_computed_tokens() == 15);
  for (int i = 0; i < 3; ++i) {
    CHECK(b->block_table()[i] == a->block_table()[i]);
    CHECK(s->kv_cache().pool().ref_count(a->block_table()[i]) == 2);
  }
  CHECK(b->block_table()[3] != a->block_table()[3]);
  const PrefixCacheStats& stats = s->kv_cache().pool().stats();
  CHECK(stats.queried_blocks == 6);  // 3 eligible blocks per admission
  CHECK(stats.hit_blocks == 3);
}

TEST_CASE("requests sharing a prefix that arrive together compute it once", "[scheduler]") {
  // Block size 4: a 20-token system prompt is 5 full blocks, at least the
  // default shared_prefix_wait_blocks (4); a 12-token one is 3, below it.
  auto with_suffix = [](int32_t system_len, int32_t first) {
    std::vector<int32_t> p = Prompt(1000, system_len);
    for (int32_t t : Prompt(first, 3)) p.push_back(t);
    return p;
  };
  SECTION("the second waits one step and takes the blocks from the cache") {
    auto s = Make(/*budget=*/64, 8, /*block_size=*/4, 64);
    REQUIRE(s->config().shared_prefix_wait_blocks == 4);
    const std::vector<Row> steps = {
        // Request 2 waits; request 3, which shares nothing, is admitted.
        {.arrive = {{1, with_suffix(20, 1)}, {2, with_suffix(20, 50)}, {3, Prompt(1, 10)}},
         .chunks = {{0, 23}, {2, 10}},
         .running = Ids{0, 2}},
        // First in line now, it computes its 3-token suffix only.
        {.chunks = {{0, 1}, {2, 1}, {1, 3}}, .running = Ids{0, 1, 2}},
    };
    RunTable(*s, steps);
    CHECK(s->FindSequence(1)->num_computed_tokens() == 23);
    CHECK(s->kv_cache().pool().stats().hit_blocks == 5);
  }
  SECTION("a request for prompt logprobs, which reads no cache, does not wait") {
    auto s = Make(/*budget=*/64, 8, /*block_size=*/4, 64);
    const std::vector<Row> steps = {
        {.arrive = {{1, with_suffix(20, 1)},
                    {.request_id = 2, .prompt = with_suffix(20, 50), .prompt_logprobs = true}},
         .chunks = {{0, 23}, {1, 23}}},
    };
    RunTable(*s, steps);
    CHECK(s->kv_cache().pool().stats().hit_blocks == 0);
  }
  SECTION("a short shared run, or the option off, admits both at once") {
    for (const bool off : {false, true}) {
      INFO((off ? "option off" : "3 shared blocks"));
      SchedulerConfig config;
      config.max_num_batched_tokens = 64;
      config.max_num_seqs = 8;
      config.block_size = 4;
      config.num_blocks = 64;
      config.max_model_len = 1024;
      if (off) config.shared_prefix_wait_blocks = 0;
      auto s = Scheduler::Create(config);
      REQUIRE(s.ok());
      const int32_t system_len = off ? 20 : 12;
      const int32_t len = system_len + 3;
      const std::vector<Row> steps = {
          {.arrive = {{1, with_suffix(system_len, 1)}, {2, with_suffix(system_len, 50)}},
           .chunks = {{0, len}, {1, len}}},
      };
      RunTable(**s, steps);
      CHECK((*s)->kv_cache().pool().stats().hit_blocks == 0);
    }
  }
}

TEST_CASE("a fully cached prompt still computes its last token", "[scheduler]") {
  auto s = Make(/*budget=*/64, 8, /*block_size=*/4, 32);
  const std::vector<Row> steps = {
      {.arrive = {{1, Prompt(7, 16), 1}}, .chunks = {{0, 16}}, .finished = {1}},
      // Same 16 tokens: 3 blocks come from the cache, the 4th is recomputed
      // so that the last token yields logits.
      {.arrive = {{2, Prompt(7, 16), 1}}, .chunks = {{1, 4}}, .finished = {2}},
  };
  RunTable(*s, steps);
  CHECK(s->kv_cache().pool().stats().hit_blocks == 3);
  CheckAllBlocksFree(*s);
}

TEST_CASE("a different cache salt never shares blocks", "[scheduler]") {
  auto s = Make(64, 8, 4, 32);
  RequestParams plain;
  RequestParams lora;
  lora.cache_salt = "adapter-a";
  REQUIRE(s->AddRequest(1, Prompt(7, 16), plain).ok());
  REQUIRE(s->Update({}).ok());  // nothing in flight yet: a no-op
  StepPlan plan = s->Schedule();
  StepOutput out{{DefaultOutput(plan.seqs[0])}};
  REQUIRE(s->Update(out).ok());
  REQUIRE(s->AddRequest(2, Prompt(7, 16), lora).ok());
  plan = s->Schedule();
  REQUIRE(plan.seqs.size() == 2);
  CHECK(plan.seqs[1].num_tokens() == 16);
  CHECK(s->kv_cache().pool().stats().hit_blocks == 0);
}

TEST_CASE("fork to n=4 shares the prompt blocks, then copies the shared last block on write",
          "[scheduler]") {
  auto s = Make(/*budget=*/64, 8, /*block_size=*/4, /*num_blocks=*/32);
  SequenceOutput fan_out;
  fan_out.seq_id = 0;
  fan_out.token_id = 900;
  fan_out.fork_tokens = {901, 902, 903};
  const std::vector<Row> steps = {
      // 10 prompt tokens: 2 full blocks and a partial one, sampled 4 ways.
      {.arrive = {{1, Prompt(1, 10), 8}},
       .chunks = {{0, 10}},
       .free_blocks = 29,
       .running = Ids{0, 1, 2, 3},
       .outputs = {{0, fan_out}}},
  };
  RunTable(*s, steps);
  const std::vector<int32_t> parent_blocks = s->FindSequence(0)->block_table();
  REQUIRE(parent_blocks.size() == 3);
  for (int64_t id = 1; id <= 3; ++id) {
    const Sequence* child = s->FindSequence(id);
    CHECK(child->block_table() == parent_blocks);
    CHECK(child->num_computed_tokens() == 10);
    CHECK(child->output_token_ids().back() == 900 + id);
  }
  for (const int32_t b : parent_blocks) CHECK(s->kv_cache().pool().ref_count(b) == 4);

  // Every sequence writes position 10 into the shared third block: the first
  // three get copies, the last one keeps the original.
  StepPlan plan = s->Schedule();
  CHECK(Chunks(plan) == std::vector<Chunk>{{0, 1}, {1, 1}, {2, 1}, {3, 1}});
  REQUIRE(plan.block_copies.size() == 3);
  for (const BlockCopy& c : plan.block_copies) CHECK(c.src == parent_blocks[2]);
  CHECK(plan.seqs[3].block_table == parent_blocks);
  for (int i = 0; i < 3; ++i) {
    CHECK(plan.seqs[i].block_table[2] == plan.block_copies[i].dst);
    CHECK(plan.seqs[i].block_table[0] == parent_blocks[0]);
  }
  CHECK(s->kv_cache().NumFreeBlocks() == 26);
  CHECK(s->kv_cache().pool().ref_count(parent_blocks[0]) == 4);
  CHECK(s->kv_cache().pool().ref_count(parent_blocks[2]) == 1);
  StepOutput out;
  for (const auto& seq : plan.seqs) out.outputs.push_back(DefaultOutput(seq));
  REQUIRE(s->Update(out).ok());

  // Position 11 is in each sequence's own block now: no more copies.
  plan = s->Schedule();
  CHECK(plan.block_copies.empty());
  CHECK(s->kv_cache().NumFreeBlocks() == 26);
}

TEST_CASE("aborting mid-prefill and mid-decode frees every block at once", "[scheduler]") {
  auto s = Make(/*budget=*/4, 4, /*block_size=*/2, 16);
  const std::vector<Row> steps = {
      {.arrive = {{1, Prompt(1, 10)}}, .chunks = {{0, 4}}, .free_blocks = 14},
  };
  RunTable(*s, steps);
  auto aborted = s->Abort(1);
  REQUIRE(aborted.ok());
  CHECK((*aborted)->sequences()[0]->finish_reason() == FinishReason::kAbort);
  CheckAllBlocksFree(*s);
  CHECK(s->num_unfinished_requests() == 0);
  CHECK(s->Abort(1).status().code() == absl::StatusCode::kNotFound);

  const std::vector<Row> decode_steps = {
      {.arrive = {{2, Prompt(100, 3)}}, .chunks = {{1, 3}}},
      {.chunks = {{1, 1}}},
  };
  RunTable(*s, decode_steps);
  CHECK(s->kv_cache().NumFreeBlocks() < 16);
  // Abort while the step is in flight: blocks free now, its output ignored.
  const StepPlan plan = s->Schedule();
  REQUIRE(plan.seqs.size() == 1);
  REQUIRE(s->Abort(2).ok());
  CheckAllBlocksFree(*s);
  StepOutput out{{DefaultOutput(plan.seqs[0])}};
  auto finished = s->Update(out);
  REQUIRE(finished.ok());
  CHECK(finished->empty());
  CheckAllBlocksFree(*s);
}

TEST_CASE("requests that can never run are rejected at arrival", "[scheduler]") {
  // 4 blocks of 4 tokens = 16 tokens of KV; contexts up to 32.
  auto s = Make(8, 4, /*block_size=*/4, /*num_blocks=*/4, /*max_model_len=*/32);
  RequestParams params;
  CHECK(s->AddRequest(1, Prompt(1, 16), params).status().code() ==
        absl::StatusCode::kResourceExhausted);
  CHECK(s->AddRequest(2, Prompt(1, 15), params).ok());  // 15 + 1 fits exactly

  auto t = Make(8, 4, 4, 64, /*max_model_len=*/20);
  CHECK(t->AddRequest(1, Prompt(1, 20), params).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(t->AddRequest(2, Prompt(1, 19), params).ok());
  CHECK(t->AddRequest(2, Prompt(1, 3), params).status().code() == absl::StatusCode::kAlreadyExists);
  CHECK(t->AddRequest(3, {}, params).status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(t->AddRequest(4, {1, -5}, params).status().code() == absl::StatusCode::kInvalidArgument);
  params.sampling.max_tokens = 0;
  CHECK(t->AddRequest(5, Prompt(1, 3), params).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(t->num_unfinished_requests() == 1);
}

TEST_CASE("a sequence stops at max_model_len with reason length", "[scheduler]") {
  auto s = Make(16, 4, 4, 64, /*max_model_len=*/6);
  RequestParams params;
  params.sampling.max_tokens = 100;  // the context limit comes first
  REQUIRE(s->AddRequest(1, Prompt(1, 4), params).ok());
  std::vector<std::unique_ptr<SequenceGroup>> done;
  for (int step = 0; step < 3 && done.empty(); ++step) {
    const StepPlan plan = s->Schedule();
    StepOutput out{{DefaultOutput(plan.seqs[0])}};
    auto finished = s->Update(out);
    REQUIRE(finished.ok());
    done = std::move(*finished);
  }
  REQUIRE(done.size() == 1);
  const Sequence& seq = *done[0]->sequences()[0];
  CHECK(seq.num_tokens() == 6);
  CHECK(seq.finish_reason() == FinishReason::kLength);
  CheckAllBlocksFree(*s);
}

TEST_CASE("stop and prune decisions finish sequences and free blocks in the same step",
          "[scheduler]") {
  auto s = Make(32, 8, 4, 16);
  SequenceOutput stop{.seq_id = 0, .token_id = 2, .finish = FinishReason::kStop};
  SequenceOutput prune{.seq_id = 1, .token_id = 3, .finish = FinishReason::kAbort};
  const std::vector<Row> steps = {
      {.arrive = {{1, Prompt(1, 5)}, {2, Prompt(10, 5)}},
       .chunks = {{0, 5}, {1, 5}},
       .finished = {1, 2},
       .free_blocks = 16,
       .outputs = {{0, stop}, {1, prune}}},
  };
  RunTable(*s, steps);
}

TEST_CASE("outputs that do not match the plan are rejected without changes", "[scheduler]") {
  auto s = Make(/*budget=*/4, 4, 4, 16);
  REQUIRE(s->AddRequest(1, Prompt(1, 6), {}).ok());
  StepPlan plan = s->Schedule();  // a non-sampled chunk
  StepOutput bogus{{{.seq_id = 0, .token_id = 1}}};
  CHECK(s->Update(bogus).status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(s->Update({}).ok());
  CHECK(s->FindSequence(0)->num_computed_tokens() == 4);
  plan = s->Schedule();  // samples now
  CHECK(s->Update({}).status().code() == absl::StatusCode::kInvalidArgument);
  StepOutput twice{{{.seq_id = 0, .token_id = 1}, {.seq_id = 0, .token_id = 2}}};
  CHECK(s->Update(twice).status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(s->FindSequence(0)->num_tokens() == 6);
  CHECK(s->FindSequence(0)->num_computed_tokens() == 4);
  CHECK(s->Schedule().empty());  // the plan is still in flight
  REQUIRE(s->Update({{DefaultOutput(plan.seqs[0])}}).ok());
  CHECK(s->FindSequence(0)->num_tokens() == 7);
}

// Steps until seq `target` leaves the waiting queue; outputs never stop.
int StepsUntilAdmitted(Scheduler& s, int64_t target, bool flood, int max_steps) {
  int64_t next_request = 1000;
  for (int step = 1; step <= max_steps; ++step) {
    if (flood) {
      for (int k = 0; k < 3; ++k) {
        REQUIRE(s.AddRequest(next_request++, Prompt(1, 6), {}).ok());
      }
    }
    const StepPlan plan = s.Schedule();
    StepOutput out;
    for (const auto& seq : plan.seqs) {
      if (seq.sample) out.outputs.push_back(DefaultOutput(seq));
    }
    REQUIRE(s.Update(out).ok());
    for (const int64_t id : plan.admitted) {
      if (id == target) return step;
    }
  }
  return -1;
}

TEST_CASE("a waiting request is admitted within a bound, however many arrive after it",
          "[scheduler]") {
  // Four requests of 8 prompt + 8 output tokens ahead of the target; the pool
  // holds about three of them at a time, so the target must wait for blocks.
  auto setup = [] {
    auto s = Make(/*budget=*/16, /*max_seqs=*/8, /*block_size=*/4, /*num_blocks=*/12);
    RequestParams params;
    params.sampling.max_tokens = 8;
    for (int64_t r = 0; r < 4; ++r) REQUIRE(s->AddRequest(r, Prompt(10 * r, 8), params).ok());
    REQUIRE(s->AddRequest(99, Prompt(500, 8), params).ok());  // seq id 4
    return s;
  };
  auto quiet = setup();
  const int quiet_steps = StepsUntilAdmitted(*quiet, 4, /*flood=*/false, 200);
  auto flooded = setup();
  const int flooded_steps = StepsUntilAdmitted(*flooded, 4, /*flood=*/true, 200);
  // Bound: the four earlier requests need at most 1 prefill + 8 decode steps
  // each, even one after another.
  REQUIRE(quiet_steps > 1);
  CHECK(quiet_steps <= 4 * 9 + 1);
  CHECK(flooded_steps == quiet_steps);
}

// Runs one step with default outputs; returns the plan.
StepPlan StepWithDefaults(Scheduler& s) {
  StepPlan plan = s.Schedule();
  StepOutput out;
  for (const ScheduledSequence& seq : plan.seqs) {
    if (seq.sample) out.outputs.push_back(DefaultOutput(seq));
  }
  REQUIRE(s.Update(out).ok());
  return plan;
}

TEST_CASE("a paused sequence keeps its blocks, is never a victim and never holds up the queue",
          "[scheduler]") {
  // 4 blocks of 4 tokens, no prefix cache: two 6-token prompts fill the pool.
  auto s = Make(64, 8, 4, 4, 1024, false);
  RequestParams params;
  params.sampling.max_tokens = 16;
  REQUIRE(s->AddRequest(1, Prompt(10, 6), params).ok());  // seq 0
  REQUIRE(s->AddRequest(2, Prompt(20, 6), params).ok());  // seq 1
  CHECK(Chunks(StepWithDefaults(*s)) == std::vector<Chunk>{{0, 6}, {1, 6}});
  CHECK(s->kv_cache().NumFreeBlocks() == 0);
  REQUIRE(s->Pause(1).ok());
  CHECK(s->FindSequence(1)->paused());
  // Seq 0 decodes alone; at position 8 it needs a block, and the only
  // younger sequence is paused, so it preempts itself, not seq 1.
  CHECK(Chunks(StepWithDefaults(*s)) == std::vector<Chunk>{{0, 1}});
  CHECK(Chunks(StepWithDefaults(*s)) == std::vector<Chunk>{{0, 1}});
  const StepPlan preempting = StepWithDefaults(*s);
  CHECK(preempting.seqs.empty());
  CHECK(preempting.preempted == Ids{0});
  CHECK(s->FindSequence(1)->block_table().size() == 2);
  CHECK(s->kv_cache().NumFreeBlocks() == 2);
  // A paused waiting sequence is not the head: a later arrival is admitted.
  REQUIRE(s->Pause(0).ok());
  REQUIRE(s->AddRequest(3, Prompt(30, 3), params).ok());  // seq 2
  const StepPlan admitting = s->Schedule();
  CHECK(Chunks(admitting) == std::vector<Chunk>{{2, 3}});
  CHECK(absl::IsFailedPrecondition(s->Pause(2)));  // the plan is in flight
  CHECK(absl::IsFailedPrecondition(s->FinishSequence(2, FinishReason::kStop).status()));
  StepOutput out;
  out.outputs.push_back(DefaultOutput(admitting.seqs[0]));
  REQUIRE(s->Update(out).ok());
  // Finishing the paused seq 1 frees its blocks at once and ends request 2.
  auto done = s->FinishSequence(1, FinishReason::kAbort);
  REQUIRE(done.ok());
  REQUIRE(*done != nullptr);
  CHECK((*done)->request_id() == 2);
  CHECK((*done)->sequences()[0]->finish_reason() == FinishReason::kAbort);
  CHECK(s->kv_cache().NumFreeBlocks() == 3);
  CHECK(absl::IsNotFound(s->Pause(1)));
  // Resumed, seq 0 recomputes its 9 tokens.
  REQUIRE(s->Resume(0).ok());
  CHECK(Chunks(StepWithDefaults(*s)) == std::vector<Chunk>{{2, 1}, {0, 9}});
  REQUIRE(s->Abort(1).ok());
  REQUIRE(s->Abort(3).ok());
  CheckAllBlocksFree(*s);
}

TEST_CASE("FinishSequence of one fork leaves the group running until the last one ends",
          "[scheduler]") {
  auto s = Make(64, 8, 4, 16, 1024, false);
  RequestParams params;
  params.sampling.max_tokens = 16;
  REQUIRE(s->AddRequest(1, Prompt(10, 5), params).ok());
  StepWithDefaults(*s);
  auto child = s->Fork(0);
  REQUIRE(child.ok());
  CHECK(s->kv_cache().NumFreeBlocks() == 14);  // the child shares both blocks
  auto first = s->FinishSequence(*child, FinishReason::kStop);
  REQUIRE(first.ok());
  CHECK(*first == nullptr);  // seq 0 still runs
  CHECK(s->kv_cache().NumFreeBlocks() == 14);
  CHECK(absl::IsInvalidArgument(s->FinishSequence(0, FinishReason::kNone).status()));
  auto last = s->FinishSequence(0, FinishReason::kStop);
  REQUIRE(last.ok());
  REQUIRE(*last != nullptr);
  CHECK((*last)->sequences().size() == 2);
  CHECK(s->num_unfinished_requests() == 0);
  CheckAllBlocksFree(*s);
}

// A policy that leaves every decision to the defaults: it only marks its
// request as a policy request.
class NoOpPolicy final : public DecodingPolicy {};

TEST_CASE(
    "a policy sequence that stops keeps its blocks until released; a prompt that extends it "
    "takes them, partial block included",
    "[scheduler]") {
  auto s = Make(64, 8, /*block_size=*/4, /*num_blocks=*/16, 1024, /*prefix_caching=*/false);
  RequestParams params;
  params.sampling.max_tokens = 16;
  params.policy = std::make_shared<NoOpPolicy>();
  REQUIRE(s->AddRequest(1, Prompt(10, 5), params).ok());
  StepWithDefaults(*s);  // 5 prompt tokens computed, 1 sampled
  StepWithDefaults(*s);  // 6 computed, 7 tokens: blocks [0..4) and [4..8)
  const std::vector<int32_t> blocks = s->FindSequence(0)->block_table();
  REQUIRE(blocks.size() == 2);
  CHECK(s->kv_cache().NumFreeBlocks() == 14);
  auto done = s->FinishSequence(0, FinishReason::kStop);
  REQUIRE(done.ok());
  REQUIRE(*done != nullptr);
  const Sequence& source = *(*done)->sequences().front();
  CHECK(s->kv_cache().NumFreeBlocks() == 14);  // retained
  CHECK(source.num_computed_tokens() == 6);

  // A scoring prompt: the source's 7 tokens (6 computed) and two more.
  std::vector<int32_t> extended = source.token_ids();
  extended.insert(extended.end(), {77, 78});
  RequestParams one;
  one.sampling.max_tokens = 1;
  const absl::StatusOr<int64_t> child_id = s->AddRequest(2, extended, one);
  REQUIRE(child_id.ok());
  const int64_t child = *child_id;
  std::vector<int32_t> other = extended;
  other[2] = 999;  // differs inside the computed tokens: nothing shared
  const absl::StatusOr<int64_t> unrelated_id = s->AddRequest(3, other, one);
  REQUIRE(unrelated_id.ok());
  const int64_t unrelated = *unrelated_id;
  CHECK(s->ShareComputedKv(source, unrelated) == 0);
  CHECK(s->ShareComputedKv(source, child) == 6);
  CHECK(s->FindSequence(child)->block_table() == blocks);
  CHECK(s->FindSequence(child)->num_computed_tokens() == 6);
  for (const int32_t b : blocks) CHECK(s->kv_cache().pool().ref_count(b) == 2);
  CHECK(s->ShareComputedKv(source, child) == 0);  // it holds blocks now

  // Released: the child owns both blocks and computes only tokens 6..8,
  // writing into the partial block in place (no copy).
  s->ReleaseRetained();
  for (const int32_t b : blocks) CHECK(s->kv_cache().pool().ref_count(b) == 1);
  const StepPlan plan = s->Schedule();
  CHECK(Chunks(plan) == std::vector<Chunk>{{child, 3}, {unrelated, 9}});
  CHECK(plan.block_copies.empty());
  StepOutput out;
  for (const ScheduledSequence& seq : plan.seqs) out.outputs.push_back(DefaultOutput(seq));
  REQUIRE(s->Update(out).ok());
  CHECK(s->num_unfinished_requests() == 0);
  CheckAllBlocksFree(*s);

  // A pruned (aborted) policy sequence frees its blocks at once.
  REQUIRE(s->AddRequest(4, Prompt(10, 5), params).ok());
  const StepPlan prefill = StepWithDefaults(*s);
  REQUIRE(s->FinishSequence(prefill.seqs.front().seq_id, FinishReason::kAbort).ok());
  CheckAllBlocksFree(*s);
}

}  // namespace
}  // namespace alignserve
