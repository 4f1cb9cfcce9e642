// DecodingPolicy hooks through LlmEngine on the default model (SmolLM2-135M,
// CpuBackend). Each test policy below uses one hook; the oracle is the same
// engine without a policy: plain greedy or seeded runs (n > 1 choice i draws
// what an n = 1 request seeded seed + i draws), the model's own top-2
// logprobs, the tokenizer's Decode, and exact KV block counts derived from
// the prompt length (block size 16, prefix cache off so that freed blocks
// count as free at once).
#include "engine/decoding_policy.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/async_engine.h"
#include "engine/llm_engine.h"
#include "tests/engine/policy_test_util.h"
#include "tests/engine/shared_default_model.h"
#include "tests/engine/test_policies.h"

namespace alignserve {
namespace {

using testing::GreedyParams;
using testing::SeededParams;

using testing::BestOfNPolicy;
using testing::BoundaryPolicy;
using testing::ForceExpandPolicy;
using testing::ForcePolicy;
using testing::ForkPolicy;
using testing::MaskFirstPolicy;
using testing::NoopPolicy;
using testing::ObserverPolicy;
using testing::PausePolicy;
using testing::PrunePolicy;
using testing::SharedModel;
using testing::StopAfterPolicy;

constexpr int32_t kBlock = 16;

EngineConfig Config(int32_t num_blocks = 256) {
  EngineConfig c;
  c.scheduler.max_num_batched_tokens = 2048;
  c.scheduler.num_blocks = num_blocks;
  c.scheduler.block_size = kBlock;
  c.scheduler.max_model_len = 512;
  c.scheduler.enable_prefix_caching = false;
  return c;
}

std::unique_ptr<LlmEngine> MakeEngine(const EngineConfig& config = Config()) {
  auto engine = LlmEngine::Create(*SharedModel().loaded->model, SharedModel().loaded->text, config);
  REQUIRE(engine.ok());
  return std::move(*engine);
}

const Tokenizer& Tok() { return *SharedModel().loaded->text.tokenizer; }
std::vector<int32_t> Encode(const std::string& text) { return Tok().Encode(text, false); }

const char* const kPrompts[] = {
    "The quick brown fox jumps over the lazy dog near the river bank at dawn.",
    "In 1969, astronauts landed on the Moon and walked across its dusty surface.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "A recipe for bread: flour, water, salt and yeast, kneaded and left to rise.",
    "The stock market fell sharply on Tuesday as investors worried about rates.",
    "Mountains in the Alps attract skiers every winter from all over Europe.",
    "Quantum computers use qubits, which can be in superpositions of states.",
    "The library opens at nine and closes at five, except on public holidays.",
    "Shakespeare wrote thirty-seven plays, among them Hamlet and Macbeth.",
};

// One choice as a client would assemble it: streamed deltas for a plain
// request, the whole completion in one output for a policy request.
struct Choice {
  std::vector<int32_t> tokens;
  std::string text;
  FinishReason reason = FinishReason::kNone;
  std::vector<PositionLogprobs> logprobs;
};
struct Outcome {
  std::map<int, Choice> choices;  // by index
  std::vector<std::pair<std::string, double>> report;
  int num_outputs = 0;
  bool finished = false;
};
using Outcomes = std::map<int64_t, Outcome>;

void Collect(const std::vector<RequestOutput>& outputs, Outcomes& out) {
  for (const RequestOutput& o : outputs) {
    Outcome& r = out[o.request_id];
    REQUIRE_FALSE(r.finished);  // nothing after the request's last output
    ++r.num_outputs;
    Choice& c = r.choices[o.index];
    c.tokens.insert(c.tokens.end(), o.new_token_ids.begin(), o.new_token_ids.end());
    c.text += o.text;
    c.logprobs.insert(c.logprobs.end(), o.logprobs.begin(), o.logprobs.end());
    if (o.finish_reason != FinishReason::kNone) c.reason = o.finish_reason;
    if (o.finished) {
      r.finished = true;
      r.report = o.policy_report;
    }
  }
}

Outcomes Drain(LlmEngine& engine, Outcomes out = {}) {
  for (int step = 0; engine.HasUnfinished(); ++step) {
    REQUIRE(step < 2000);
    auto outputs = engine.Step();
    REQUIRE(outputs.ok());
    Collect(*outputs, out);
  }
  const EngineStats stats = engine.stats();
  CHECK(stats.num_free_blocks == stats.num_total_blocks);
  return out;
}

// One request alone on a fresh engine.
Outcome RunAlone(const std::vector<int32_t>& prompt, RequestParams params) {
  auto engine = MakeEngine();
  REQUIRE(engine->AddRequest(1, prompt, std::move(params)).ok());
  Outcomes out = Drain(*engine);
  REQUIRE(out.at(1).finished);
  return out.at(1);
}

Outcome RunAlone(const std::vector<int32_t>& prompt, const SamplingParams& sampling,
                 std::shared_ptr<DecodingPolicy> policy = nullptr) {
  RequestParams params;
  params.sampling = sampling;
  params.policy = std::move(policy);
  return RunAlone(prompt, std::move(params));
}

int32_t BlocksFor(int32_t tokens) { return (tokens + kBlock - 1) / kBlock; }
int32_t UsedBlocks(const LlmEngine& engine) {
  const EngineStats s = engine.stats();
  return s.num_total_blocks - s.num_free_blocks;
}

// ---------------------------------------------------------------------------

TEST_CASE("a do-nothing policy generates what the plain request generates") {
  const std::vector<int32_t> prompt = Encode(kPrompts[0]);
  for (const SamplingParams& sampling : {GreedyParams(16), SeededParams(16, 77)}) {
    const Outcome plain = RunAlone(prompt, sampling);
    const Outcome noop = RunAlone(prompt, sampling, std::make_shared<NoopPolicy>());
    REQUIRE(plain.choices.size() == 1);
    REQUIRE(noop.choices.size() == 1);
    CHECK(noop.num_outputs == 1);  // the whole completion at once
    CHECK(noop.choices.at(0).tokens == plain.choices.at(0).tokens);
    CHECK(noop.choices.at(0).text == plain.choices.at(0).text);
    CHECK(noop.choices.at(0).reason == FinishReason::kLength);
    CHECK(noop.report.empty());
    // Host rows, hidden states and logprobs for the policy change nothing.
    auto observer = std::make_shared<ObserverPolicy>();
    const Outcome observed = RunAlone(prompt, sampling, observer);
    CHECK(observed.choices.at(0).tokens == plain.choices.at(0).tokens);
    CHECK(observer->tokens == plain.choices.at(0).tokens);
    CHECK(observer->boundaries == std::vector<int>{3, 6, 9, 12, 15});
    CHECK(absl::IsFailedPrecondition(observer->fork_in_logits));
    for (size_t i = 0; i < observer->tokens.size(); ++i) {
      CHECK(observer->hidden_sizes[i] == SharedModel().loaded->model->config().hidden_size);
      REQUIRE(observer->top[i].size() == 5);
      if (sampling.greedy()) {  // the greedy token is the top-1 and the row's argmax
        CHECK(observer->top[i][0].token == observer->tokens[i]);
        CHECK(observer->argmax[i] == observer->tokens[i]);
        CHECK(observer->logprobs[i] == observer->top[i][0].logprob);
      }
    }
  }
}

TEST_CASE("plain and policy requests with the same params agree with logprobs asked") {
  SamplingParams sampling = GreedyParams(8);
  sampling.logprobs = 3;
  const std::vector<int32_t> prompt = Encode(kPrompts[1]);
  const Outcome plain = RunAlone(prompt, sampling);
  const Outcome noop = RunAlone(prompt, sampling, std::make_shared<NoopPolicy>());
  REQUIRE(noop.choices.at(0).logprobs.size() == 8);
  for (size_t i = 0; i < 8; ++i) {
    CHECK(noop.choices.at(0).logprobs[i].logprob == plain.choices.at(0).logprobs[i].logprob);
    CHECK(noop.choices.at(0).logprobs[i].top.size() == 3);
  }
}

TEST_CASE("a policy that forces tokens gets exactly those tokens") {
  const std::vector<int32_t> forced = Encode(" Paris is the capital of France, and Rome of Italy.");
  const int32_t n = static_cast<int32_t>(forced.size());
  const Outcome out =
      RunAlone(Encode(kPrompts[2]), GreedyParams(n), std::make_shared<ForcePolicy>(forced));
  CHECK(out.choices.at(0).tokens == forced);
  CHECK(out.choices.at(0).text == Tok().Decode(forced, true));
  CHECK(out.choices.at(0).reason == FinishReason::kLength);
}

TEST_CASE("at the first sample a policy may force the expand children's tokens") {
  const std::vector<int32_t> prompt = Encode(kPrompts[4]);
  const int32_t root = Encode(" The")[0];
  const int32_t child1 = Encode(" Once")[0];
  auto policy = std::make_shared<ForceExpandPolicy>(root, child1);
  const Outcome out = RunAlone(prompt, SeededParams(5, 321), policy);
  REQUIRE(out.choices.size() == 3);
  CHECK(out.choices.at(0).tokens.at(0) == root);
  CHECK(out.choices.at(1).tokens.at(0) == child1);
  // Child 2 draws what a plain request seeded 321 + 2 draws: the forced
  // tokens took no draws from it.
  CHECK(out.choices.at(2).tokens ==
        RunAlone(prompt, SeededParams(5, 321 + 2)).choices.at(0).tokens);
  // The span exists at the first sample only: [num_sequences - 1].
  REQUIRE_FALSE(policy->expand_sizes.empty());
  CHECK(policy->expand_sizes.front() == 2);
  for (size_t i = 1; i < policy->expand_sizes.size(); ++i) CHECK(policy->expand_sizes[i] == 0);
}

TEST_CASE("masking the greedy token yields the second-best token, then greedy from there") {
  const std::vector<int32_t> prompt = Encode(kPrompts[3]);
  SamplingParams with_logprobs = GreedyParams(10);
  with_logprobs.logprobs = 2;
  const Outcome plain = RunAlone(prompt, with_logprobs);
  const std::vector<TokenLogprob>& top2 = plain.choices.at(0).logprobs.at(0).top;
  REQUIRE(top2.size() == 2);
  auto mask = std::make_shared<MaskFirstPolicy>();
  const Outcome masked = RunAlone(prompt, GreedyParams(10), mask);
  CHECK(mask->masked == top2[0].token);
  REQUIRE(masked.choices.at(0).tokens.size() == 10);
  CHECK(masked.choices.at(0).tokens[0] == top2[1].token);
  // The rest is the greedy continuation of prompt + that token.
  std::vector<int32_t> extended = prompt;
  extended.push_back(top2[1].token);
  const Outcome rest = RunAlone(extended, GreedyParams(9));
  CHECK(std::vector<int32_t>(masked.choices.at(0).tokens.begin() + 1,
                             masked.choices.at(0).tokens.end()) == rest.choices.at(0).tokens);
}

TEST_CASE("a Stop decision finishes the sequence at that token with reason stop") {
  const std::vector<int32_t> prompt = Encode(kPrompts[4]);
  const Outcome plain = RunAlone(prompt, GreedyParams(20));
  const Outcome stopped = RunAlone(prompt, GreedyParams(20), std::make_shared<StopAfterPolicy>(5));
  REQUIRE(stopped.choices.at(0).tokens.size() == 5);
  CHECK(stopped.choices.at(0).reason == FinishReason::kStop);
  CHECK(stopped.choices.at(0).tokens ==
        std::vector<int32_t>(plain.choices.at(0).tokens.begin(),
                             plain.choices.at(0).tokens.begin() + 5));
  CHECK(stopped.choices.at(0).text == Tok().Decode(stopped.choices.at(0).tokens, true));
}

TEST_CASE("pruning 3 of 4 frees their blocks in that step; the survivor runs as if alone") {
  const std::vector<int32_t> prompt = Encode(kPrompts[5]);
  const int32_t p = static_cast<int32_t>(prompt.size());
  const SamplingParams sampling = SeededParams(12, 4242);
  auto policy = std::make_shared<PrunePolicy>(4, 3, 2);
  auto engine = MakeEngine();
  RequestParams params;
  params.sampling = sampling;
  params.policy = policy;
  REQUIRE(engine->AddRequest(1, prompt, params).ok());
  Outcomes out;
  int32_t used_before = -1;
  while (engine->HasUnfinished()) {
    const int32_t used = UsedBlocks(*engine);
    auto step = engine->Step();
    REQUIRE(step.ok());
    Collect(*step, out);
    if (policy->pruned_at_step == engine->stats().num_steps) {
      used_before = used;
      // After the step: only the survivor's blocks (computed = p + 2).
      CHECK(UsedBlocks(*engine) == BlocksFor(p + 2));
      const Sequence* survivor = engine->scheduler().FindSequence(policy->ids[2]);
      REQUIRE(survivor != nullptr);
      CHECK(survivor->num_computed_tokens() == p + 2);
      for (int i : {0, 1, 3}) CHECK(engine->scheduler().FindSequence(policy->ids[i]) == nullptr);
    }
  }
  // Before that step (p + 1 computed each): the prompt's full blocks shared,
  // the rest private to each of the 4 (copy-on-write of the partial block).
  const int32_t shared = p / kBlock;
  CHECK(used_before == shared + 4 * (BlocksFor(p + 1) - shared));
  // The stats count the 3 prunes and the blocks only they held.
  CHECK(engine->stats().num_pruned_sequences == 3);
  CHECK(engine->stats().pruned_blocks_freed == 3 * (BlocksFor(p + 2) - shared));
  REQUIRE(policy->ids.size() == 4);
  REQUIRE(policy->ends.size() == 4);
  CHECK(std::count_if(policy->ends.begin(), policy->ends.end(),
                      [](const SequenceEnd& e) { return e.reason == FinishReason::kAbort; }) == 3);
  // Finalize (default) returns the one sequence not pruned.
  REQUIRE(out.at(1).choices.size() == 1);
  SamplingParams alone = sampling;
  alone.seed = 4242 + 2;
  const Outcome oracle = RunAlone(prompt, alone);
  CHECK(out.at(1).choices.at(0).tokens == oracle.choices.at(0).tokens);
  CHECK(out.at(1).choices.at(0).text == oracle.choices.at(0).text);
  CHECK(out.at(1).choices.at(0).reason == FinishReason::kLength);
}

TEST_CASE("expand to 4 shares the prompt's blocks and each draws as its own seed") {
  const std::vector<int32_t> prompt = Encode(kPrompts[6]);
  const int32_t p = static_cast<int32_t>(prompt.size());
  auto engine = MakeEngine();
  RequestParams params;
  params.sampling = SeededParams(6, 99);
  params.policy = std::make_shared<PrunePolicy>(4, 1000, 0);  // never prunes
  REQUIRE(engine->AddRequest(1, prompt, params).ok());
  Outcomes out;
  auto step = engine->Step();  // prefill once, 4 first tokens
  REQUIRE(step.ok());
  CHECK(step->empty());  // a policy request streams nothing
  CHECK(engine->scheduler().running().size() == 4);
  CHECK(UsedBlocks(*engine) == BlocksFor(p));  // 4 sequences, one copy of the prompt
  out = Drain(*engine);
  REQUIRE(out.at(1).choices.size() == 4);
  for (int i = 0; i < 4; ++i) {
    SamplingParams alone = SeededParams(6, 99 + i);
    CHECK(out.at(1).choices.at(i).tokens == RunAlone(prompt, alone).choices.at(0).tokens);
  }
}

TEST_CASE("a later fork of a running sequence shares its blocks and continues it") {
  const std::vector<int32_t> prompt = Encode(kPrompts[7]);
  const int32_t p = static_cast<int32_t>(prompt.size());
  auto policy = std::make_shared<ForkPolicy>(4, 3);
  auto engine = MakeEngine();
  RequestParams params;
  params.sampling = GreedyParams(10);
  params.policy = policy;
  REQUIRE(engine->AddRequest(1, prompt, params).ok());
  Outcomes out;
  int checked = 0;
  while (engine->HasUnfinished()) {
    auto step = engine->Step();
    REQUIRE(step.ok());
    Collect(*step, out);
    if (policy->forked_at_step == engine->stats().num_steps) {
      ++checked;
      // Parent and 3 children hold the same p + 3 computed tokens' blocks, once.
      CHECK(UsedBlocks(*engine) == BlocksFor(p + 3));
      for (const int64_t child : policy->children) {
        const Sequence* seq = engine->scheduler().FindSequence(child);
        REQUIRE(seq != nullptr);
        CHECK(seq->block_table() ==
              engine->scheduler().FindSequence(policy->parent)->block_table());
        CHECK(seq->num_output_tokens() == 4);
      }
    }
  }
  REQUIRE(checked == 1);
  REQUIRE(policy->children.size() == 3);
  // Greedy: every branch continues exactly as the unforked run.
  const Outcome plain = RunAlone(prompt, GreedyParams(10));
  REQUIRE(out.at(1).choices.size() == 4);
  for (const auto& [index, choice] : out.at(1).choices) {
    CHECK(choice.tokens == plain.choices.at(0).tokens);
    CHECK(choice.text == plain.choices.at(0).text);
  }
}

TEST_CASE("boundaries every M tokens fire exactly at multiples of M") {
  auto policy = std::make_shared<BoundaryPolicy>(4, "");
  RunAlone(Encode(kPrompts[8]), GreedyParams(14), policy);
  REQUIRE(policy->flags.size() == 14);
  for (size_t i = 0; i < 14; ++i) CHECK(policy->flags[i] == ((i + 1) % 4 == 0));
}

TEST_CASE("a delimiter boundary fires when the decoded text ends with the delimiter") {
  const std::vector<int32_t> prompt =
      Encode("Write the numbers one to ten in words, separated by commas: one, two,");
  for (const std::string delim : {",", " three"}) {
    auto policy = std::make_shared<BoundaryPolicy>(0, delim);
    RunAlone(prompt, GreedyParams(16), policy);
    int fired = 0;
    std::string before;
    for (size_t i = 0; i < policy->tokens.size(); ++i) {
      const std::string text =
          Tok().Decode(std::span<const int32_t>(policy->tokens.data(), i + 1), true);
      const bool expected = text != before && text.ends_with(delim);
      CHECK(policy->flags[i] == expected);
      fired += expected ? 1 : 0;
      before = text;
    }
    CHECK(fired > 0);
  }
}

TEST_CASE("a paused sequence makes no tokens while others progress, then resumes exactly") {
  const std::vector<int32_t> prompt = Encode(kPrompts[0]);
  const std::vector<int32_t> other = Encode(kPrompts[1]);
  auto policy = std::make_shared<PausePolicy>(3, 5);
  auto engine = MakeEngine();
  RequestParams params;
  params.sampling = GreedyParams(12);
  params.policy = policy;
  REQUIRE(engine->AddRequest(1, prompt, params).ok());
  REQUIRE(engine->AddRequest(2, other, GreedyParams(24)).ok());
  Outcomes out;
  std::vector<int64_t> other_steps;
  int paused_steps = 0;
  while (engine->HasUnfinished()) {
    auto step = engine->Step();
    REQUIRE(step.ok());
    for (const RequestOutput& o : *step) {
      if (o.request_id == 2) other_steps.push_back(engine->stats().num_steps);
    }
    Collect(*step, out);
    if (policy->paused_at_step >= 0 && policy->resumed_at_step < 0) {
      const Sequence* seq = engine->scheduler().FindSequence(policy->seq_id);
      REQUIRE(seq != nullptr);
      ++paused_steps;
      CHECK(seq->paused());
      CHECK(seq->num_output_tokens() == 3);
      CHECK(seq->block_table().size() ==
            static_cast<size_t>(BlocksFor(seq->num_computed_tokens())));
      CHECK(!seq->block_table().empty());
    }
  }
  REQUIRE(policy->paused_at_step >= 0);
  REQUIRE(policy->resumed_at_step == policy->paused_at_step + 5);
  CHECK(paused_steps == 6);  // seen paused after its pausing step and the 5 it sat out
  // No tokens in the steps it was paused; the other request got one in each.
  for (const int64_t s : policy->token_steps) {
    CHECK((s <= policy->paused_at_step || s > policy->resumed_at_step));
  }
  for (int64_t s = policy->paused_at_step + 1; s <= policy->resumed_at_step; ++s) {
    CHECK(std::find(other_steps.begin(), other_steps.end(), s) != other_steps.end());
  }
  CHECK(out.at(1).choices.at(0).tokens == RunAlone(prompt, GreedyParams(12)).choices.at(0).tokens);
  CHECK(out.at(2).choices.at(0).tokens == RunAlone(other, GreedyParams(24)).choices.at(0).tokens);
}

TEST_CASE("a best-of-N policy returns exactly the best sequence and its report") {
  const std::vector<int32_t> prompt = Encode(kPrompts[2]);
  SamplingParams sampling = SeededParams(16, 1234);
  sampling.temperature = 1.2f;
  sampling.top_p = 1.0f;
  const Outcome out = RunAlone(prompt, sampling, std::make_shared<BestOfNPolicy>(4));
  REQUIRE(out.choices.size() == 1);
  // Oracle: plain n = 4 with the same seed, scored the same way.
  SamplingParams plain_n = sampling;
  plain_n.n = 4;
  const Outcome plain = RunAlone(prompt, plain_n);
  REQUIRE(plain.choices.size() == 4);
  int best = 0;
  for (int i = 1; i < 4; ++i) {
    if (BestOfNPolicy::Score(plain.choices.at(i).tokens) >
        BestOfNPolicy::Score(plain.choices.at(best).tokens)) {
      best = i;
    }
  }
  CHECK(out.choices.at(0).tokens == plain.choices.at(best).tokens);
  CHECK(out.choices.at(0).text == plain.choices.at(best).text);
  const std::vector<std::pair<std::string, double>> report = {
      {"best_score", BestOfNPolicy::Score(plain.choices.at(best).tokens)}, {"num_sequences", 4.0}};
  CHECK(out.report == report);
}

TEST_CASE("a policy request batched with 8 plain requests leaves their outputs unchanged") {
  struct Plain {
    std::vector<int32_t> prompt;
    SamplingParams sampling;
  };
  std::vector<Plain> plain;
  for (int i = 0; i < 8; ++i) {
    plain.push_back(
        {Encode(kPrompts[i]), i % 2 == 0 ? GreedyParams(12 + i) : SeededParams(12 + i, 500 + i)});
  }
  auto engine = MakeEngine();
  RequestParams params;
  params.sampling = SeededParams(12, 7);
  params.policy = std::make_shared<PrunePolicy>(4, 5, 1);
  REQUIRE(engine->AddRequest(100, Encode(kPrompts[8]), params).ok());
  for (int i = 0; i < 8; ++i)
    REQUIRE(engine->AddRequest(i, plain[i].prompt, plain[i].sampling).ok());
  const Outcomes together = Drain(*engine);
  for (int i = 0; i < 8; ++i) {
    const Outcome alone = RunAlone(plain[i].prompt, plain[i].sampling);
    CHECK(together.at(i).choices.at(0).tokens == alone.choices.at(0).tokens);
    CHECK(together.at(i).choices.at(0).text == alone.choices.at(0).text);
  }
  RequestParams again = params;
  again.policy = std::make_shared<PrunePolicy>(4, 5, 1);
  CHECK(together.at(100).choices.at(0).tokens ==
        RunAlone(Encode(kPrompts[8]), std::move(again)).choices.at(0).tokens);
}

TEST_CASE("requests with a bad policy are refused") {
  auto engine = MakeEngine();
  RequestParams params;
  params.sampling = GreedyParams(4);
  params.sampling.n = 2;
  params.policy = std::make_shared<NoopPolicy>();
  CHECK(absl::IsInvalidArgument(engine->AddRequest(1, Encode(kPrompts[0]), params)));
  params.sampling.n = 1;
  params.policy = std::make_shared<PrunePolicy>(0, 1, 0);  // num_sequences 0
  CHECK(absl::IsInvalidArgument(engine->AddRequest(2, Encode(kPrompts[0]), params)));
  CHECK_FALSE(engine->HasUnfinished());
}

TEST_CASE("through the AsyncEngine a policy request streams its chosen choice and report") {
  const std::vector<int32_t> prompt = Encode(kPrompts[3]);
  SamplingParams sampling = SeededParams(10, 31);
  const Outcome expected = RunAlone(prompt, sampling, std::make_shared<BestOfNPolicy>(3));
  auto async = AsyncEngine::Create(MakeEngine());
  REQUIRE(async.ok());
  RequestParams params;
  params.sampling = sampling;
  params.policy = std::make_shared<BestOfNPolicy>(3);
  auto stream = (*async)->Submit(prompt, std::move(params));
  REQUIRE(stream.ok());
  std::optional<StreamEvent> e = (*stream)->Next(std::chrono::milliseconds(30000));
  REQUIRE(e.has_value());
  REQUIRE(e->status.ok());
  CHECK(e->finished);  // one event: the whole chosen completion
  CHECK(e->index == 0);
  CHECK(e->token_ids == expected.choices.at(0).tokens);
  CHECK(e->text == expected.choices.at(0).text);
  CHECK(e->policy_report == expected.report);
  CHECK(e->policy_report.size() == 2);
}

}  // namespace
}  // namespace alignserve
