// LlmEngine on the default model (SmolLM2-135M, CpuBackend): continuous
// batching must not change what a request generates. The oracle for every
// request is the same engine running that request alone; batching,
// preemption by recompute, chunk sizes and the prefix cache must all give
// exactly the same token ids. Outputs are kept short (max_tokens 16..24)
// so the whole file runs in well under a minute on two cores.
#include "engine/llm_engine.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "engine/model_runner.h"
#include "kernels/cpu/cpu_backend.h"
#include "models/model_loader.h"
#include "tests/engine/shared_default_model.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

using testing::SharedModel;

struct Request {
  int64_t id;
  std::vector<int32_t> prompt;
  SamplingParams params;
};

struct Result {
  std::vector<int32_t> tokens;
  std::string text;
  FinishReason reason = FinishReason::kNone;
};

struct Run {
  std::map<int64_t, Result> results;
  EngineStats stats;
};

SamplingParams Greedy(int32_t max_tokens) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.ignore_eos = true;
  p.max_tokens = max_tokens;
  return p;
}

EngineConfig Config(int32_t budget = 2048, int32_t num_blocks = 256, bool prefix_cache = true) {
  EngineConfig c;
  c.scheduler.max_num_batched_tokens = budget;
  c.scheduler.num_blocks = num_blocks;
  c.scheduler.block_size = 16;
  c.scheduler.max_model_len = 512;
  c.scheduler.enable_prefix_caching = prefix_cache;
  return c;
}

const LoadedModel& DefaultModel() { return *SharedModel().loaded; }

std::unique_ptr<LlmEngine> MakeEngine(const EngineConfig& config,
                                      const LoadedModel& model = DefaultModel()) {
  auto engine = LlmEngine::Create(*model.model, model.text, config);
  REQUIRE(engine.ok());
  return std::move(*engine);
}

// Steps until every request finished; checks each request's stream is
// well formed (one token per output, finished exactly once, at the end).
Run Drain(LlmEngine& engine) {
  Run run;
  for (int step = 0; engine.HasUnfinished(); ++step) {
    REQUIRE(step < 10000);
    auto outputs = engine.Step();
    REQUIRE(outputs.ok());
    for (const RequestOutput& o : *outputs) {
      Result& r = run.results[o.request_id];
      REQUIRE(r.reason == FinishReason::kNone);  // nothing after the finish
      REQUIRE(o.new_token_ids.size() == 1);
      r.tokens.push_back(o.new_token_ids[0]);
      r.text += o.text;
      if (o.finished) r.reason = o.finish_reason;
    }
  }
  run.stats = engine.stats();
  CHECK(run.stats.num_free_blocks == run.stats.num_total_blocks);
  return run;
}

Run RunTogether(const EngineConfig& config, const std::vector<Request>& requests,
                const LoadedModel& model = DefaultModel()) {
  auto engine = MakeEngine(config, model);
  for (const Request& r : requests) REQUIRE(engine->AddRequest(r.id, r.prompt, r.params).ok());
  return Drain(*engine);
}

// Each request on a fresh engine, alone (no prefix cache, whole-prompt prefill).
std::map<int64_t, Result> RunAlone(const std::vector<Request>& requests,
                                   const LoadedModel& model = DefaultModel()) {
  std::map<int64_t, Result> out;
  for (const Request& r : requests) {
    Run run = RunTogether(Config(2048, 256, false), {r}, model);
    out[r.id] = run.results.at(r.id);
  }
  return out;
}

const char* const kTexts[] = {
    "The quick brown fox jumps over the lazy dog near the river bank at dawn.",
    "In 1969, astronauts landed on the Moon and walked across its dusty surface.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "A recipe for bread: flour, water, salt and yeast, kneaded and left to rise.",
    "The stock market fell sharply on Tuesday as investors worried about rates.",
    "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n",
    "Mountains in the Alps attract skiers every winter from all over Europe.",
    "Quantum computers use qubits, which can be in superpositions of states.",
    "The library opens at nine and closes at five, except on public holidays.",
    "Shakespeare wrote thirty-seven plays, among them Hamlet and Macbeth.",
    "Rain is expected tomorrow afternoon, with clearing skies by the evening.",
    "To be or not to be, that is the question that every student must answer.",
};

// A prompt of exactly `len` tokens: text i followed by the others in turn.
std::vector<int32_t> PromptOfLength(int i, int len) {
  const Tokenizer& tok = *SharedModel().loaded->text.tokenizer;
  std::string text;
  std::vector<int32_t> ids;
  for (int k = 0; static_cast<int>(ids.size()) < len; ++k) {
    text += kTexts[(i + k) % 12];
    text += " ";
    ids = tok.Encode(text, false);
  }
  ids.resize(len);
  return ids;
}

// 12 requests with prompts of 5..120 tokens and 16..24 output tokens.
std::vector<Request> MixedRequests() {
  const int lens[] = {5, 120, 9, 82, 14, 100, 20, 68, 27, 55, 35, 44};
  std::vector<Request> reqs;
  for (int i = 0; i < 12; ++i) {
    reqs.push_back({100 + i, PromptOfLength(i, lens[i]), Greedy(16 + (i * 5) % 9)});
  }
  return reqs;
}

// The alone-results of MixedRequests, computed once for the file.
const std::map<int64_t, Result>& MixedAlone() {
  static const auto* alone = new std::map<int64_t, Result>(RunAlone(MixedRequests()));
  return *alone;
}

void CheckSameTokens(const std::map<int64_t, Result>& got, const std::map<int64_t, Result>& want) {
  REQUIRE(got.size() == want.size());
  for (const auto& [id, w] : want) {
    INFO("request " << id);
    REQUIRE(got.count(id) == 1);
    CHECK(got.at(id).tokens == w.tokens);
    CHECK(got.at(id).text == w.text);
    CHECK(got.at(id).reason == w.reason);
  }
}

// How many of the reference's tokens the other run reproduces, counted up
// to each request's first difference (later tokens continue another
// text), and the reference's token count.
std::pair<size_t, size_t> TokensUntilFirstDifference(const std::map<int64_t, Result>& reference,
                                                     const std::map<int64_t, Result>& other) {
  size_t same = 0, total = 0;
  for (const auto& [id, result] : reference) {
    const std::vector<int32_t>& tokens = other.at(id).tokens;
    total += result.tokens.size();
    size_t i = 0;
    while (i < result.tokens.size() && i < tokens.size() && result.tokens[i] == tokens[i]) ++i;
    same += i;
  }
  return {same, total};
}

TEST_CASE("batched greedy equals each request run alone") {
  const std::vector<Request> reqs = MixedRequests();
  const auto& alone = MixedAlone();
  const Tokenizer& tok = *SharedModel().loaded->text.tokenizer;
  for (const Request& r : reqs) {
    const Result& a = alone.at(r.id);
    REQUIRE(static_cast<int>(a.tokens.size()) == r.params.max_tokens);
    CHECK(a.reason == FinishReason::kLength);
    // The streamed deltas add up to the decoded completion.
    CHECK(a.text == tok.Decode(a.tokens, true));
  }
  Run batched = RunTogether(Config(), reqs);
  CheckSameTokens(batched.results, alone);
  CHECK(batched.stats.num_preemptions == 0);
}

TEST_CASE("preemption by recompute leaves greedy outputs unchanged") {
  // 24 blocks of 16 tokens (384 slots) for 12 sequences of up to 144 tokens.
  Run run = RunTogether(Config(2048, 24), MixedRequests());
  CHECK(run.stats.num_preemptions > 0);
  CheckSameTokens(run.results, MixedAlone());
}

// MixedRequests on `loaded` alone, then batched, preempted (a pool of 24
// blocks) and with chunked prefill (a budget of 16): every run must give
// the alone outputs, which are returned.
std::map<int64_t, Result> CheckBatchInvariant(LoadedModel& loaded) {
  const std::map<int64_t, Result> alone = RunAlone(MixedRequests(), loaded);
  Run batched = RunTogether(Config(), MixedRequests(), loaded);
  CheckSameTokens(batched.results, alone);
  Run preempted = RunTogether(Config(2048, 24), MixedRequests(), loaded);
  CHECK(preempted.stats.num_preemptions > 0);
  CheckSameTokens(preempted.results, alone);
  Run chunked = RunTogether(Config(16), MixedRequests(), loaded);
  CheckSameTokens(chunked.results, alone);
  return alone;
}

TEST_CASE("an f16 KV cache: batched, preempted, chunked and alone give the same outputs") {
  CpuBackend backend;
  REQUIRE(backend.SetKvCacheDtype(DType::kF16).ok());
  auto loaded = LoadModel("default", backend);
  REQUIRE(loaded.ok());
  REQUIRE((*loaded)->model->KvSpec(1, 16).dtype == DType::kF16);
  const std::map<int64_t, Result> alone = CheckBatchInvariant(**loaded);
  // Rounding K and V to binary16 moves logits by ~1e-3: greedy ids agree
  // with the exact f32 cache on nearly every token (a near-tie may flip).
  // Counted up to each request's first difference (later tokens continue
  // another text).
  const auto [same, total] = TokensUntilFirstDifference(MixedAlone(), alone);
  INFO(same << " of " << total << " greedy tokens as with the f32 cache");
  CHECK(same >= total * 9 / 10);
}

TEST_CASE(
    "the serving profile (i16 products, f16 KV): batched, preempted, chunked and alone "
    "give the same outputs") {
  // MatMulI16 is batch invariant (kernels/cpu/matmul_i16.h), so the engine's
  // answers must not depend on the batch in this mode either.
  CpuBackend backend(nullptr, MatmulMode::kInt16Activations);
  REQUIRE(backend.SetKvCacheDtype(DType::kF16).ok());
  auto loaded = LoadModel("default", backend);
  REQUIRE(loaded.ok());
  const std::map<int64_t, Result> alone = CheckBatchInvariant(**loaded);
  // Logits move by ~1e-2 against exact products and an f32 cache: greedy
  // ids agree with the reference's up to near-ties (counted to each first
  // difference).
  const auto [same, total] = TokensUntilFirstDifference(MixedAlone(), alone);
  INFO(same << " of " << total << " greedy tokens as with exact products");
  CHECK(same >= total * 9 / 10);
}

TEST_CASE("chunked prefill budgets 16 and 64 give identical outputs") {
  Run small = RunTogether(Config(16), MixedRequests());
  Run large = RunTogether(Config(64), MixedRequests());
  CheckSameTokens(small.results, large.results);
  CheckSameTokens(large.results, MixedAlone());
}

TEST_CASE("prefix cache hits leave outputs unchanged") {
  const std::vector<int32_t> system = PromptOfLength(3, 64);
  const char* const questions[] = {
      "What is the capital of France?", "Name three colours.",       "How do planes fly?",
      "Why is the sky blue?",           "Write a haiku about rain.", "What is 12 times 12?"};
  std::vector<Request> reqs;
  for (int i = 0; i < 6; ++i) {
    std::vector<int32_t> prompt = system;
    for (int32_t t : SharedModel().loaded->text.tokenizer->Encode(questions[i], false)) {
      prompt.push_back(t);
    }
    reqs.push_back({200 + i, prompt, Greedy(16)});
  }
  // Budget 64: the first request's prefill fills step 1, so the shared
  // blocks are computed and registered before the others are admitted.
  Run cached = RunTogether(Config(64, 256, true), reqs);
  Run uncached = RunTogether(Config(64, 256, false), reqs);
  CHECK(cached.stats.prefix_cache_hit_blocks > 0);
  CHECK(uncached.stats.prefix_cache_hit_blocks == 0);
  CheckSameTokens(cached.results, uncached.results);
}

TEST_CASE("seeded sampling draws the same text alone and in a batch") {
  SamplingParams p;
  p.temperature = 0.8f;
  p.top_p = 0.9f;
  p.seed = 1234;
  p.max_tokens = 24;
  p.ignore_eos = true;
  const Request sampled{300, PromptOfLength(5, 30), p};
  const auto alone = RunAlone({sampled});
  std::vector<Request> batch = MixedRequests();
  batch.insert(batch.begin() + 4, sampled);
  Run together = RunTogether(Config(64), batch);
  CHECK(together.results.at(300).tokens == alone.at(300).tokens);
  CHECK(together.results.at(300).text == alone.at(300).text);
  // A different seed draws a different completion (sanity: sampling is on).
  Request other = sampled;
  other.params.seed = 99;
  CHECK(RunAlone({other}).at(300).tokens != alone.at(300).tokens);
}

TEST_CASE("abort mid-prefill and mid-decode frees every block") {
  auto engine = MakeEngine(Config(16, 64));
  const int32_t total = engine->stats().num_total_blocks;
  // Mid-prefill: 120 tokens at 16 per step, stopped after two chunks.
  REQUIRE(engine->AddRequest(1, PromptOfLength(0, 120), Greedy(16)).ok());
  for (int i = 0; i < 2; ++i) {
    auto out = engine->Step();
    REQUIRE(out.ok());
    CHECK(out->empty());  // nothing sampled during a prefill
  }
  CHECK(engine->stats().num_free_blocks < total);
  REQUIRE(engine->Abort(1).ok());
  CHECK(engine->stats().num_free_blocks == total);
  CHECK_FALSE(engine->HasUnfinished());
  CHECK(engine->Abort(1).code() == absl::StatusCode::kNotFound);

  // Mid-decode: a short prompt beside another request, aborted after 3 tokens.
  REQUIRE(engine->AddRequest(2, PromptOfLength(1, 40), Greedy(16)).ok());
  REQUIRE(engine->AddRequest(3, PromptOfLength(2, 10), Greedy(16)).ok());
  int produced = 0;
  while (produced < 3) {
    auto out = engine->Step();
    REQUIRE(out.ok());
    for (const RequestOutput& o : *out) produced += o.request_id == 3 ? 1 : 0;
  }
  REQUIRE(engine->Abort(3).ok());
  Run rest = Drain(*engine);  // checks every block is free at the end
  CHECK(rest.results.count(3) == 0);
  CHECK(rest.results.at(2).reason == FinishReason::kLength);
  CHECK(engine->stats().num_free_blocks == total);
}

// A plan step for one sequence: `tokens` at start_pos over block_table.
StepPlan OneSequencePlan(std::vector<int32_t> tokens, int32_t start_pos,
                         std::vector<int32_t> block_table) {
  StepPlan plan;
  plan.block_size = 16;
  ScheduledSequence s;
  s.token_ids = std::move(tokens);
  s.start_pos = start_pos;
  s.block_table = std::move(block_table);
  s.sample = true;
  plan.seqs.push_back(std::move(s));
  return plan;
}

TEST_CASE("model runner applies copy-on-write copies before the forward pass") {
  Model& model = *SharedModel().loaded->model;
  auto cache = model.AllocateKvCache(8, 16);
  REQUIRE(cache.ok());
  ModelRunner runner(model, **cache);
  const int vocab = runner.vocab_size();
  const std::vector<int32_t> prompt = PromptOfLength(7, 20);  // fills block 3, part of 4
  ForwardOutput out;
  REQUIRE(runner.Execute(OneSequencePlan(prompt, 0, {3, 4}), out).ok());
  REQUIRE(out.num_rows == 1);
  const int32_t next = Argmax(ModelRunner::Row(out, 0, vocab));
  // Decode in place, over blocks {3, 4}.
  REQUIRE(runner.Execute(OneSequencePlan({next}, 20, {3, 4}), out).ok());
  const std::vector<float> in_place(out.logits.begin(), out.logits.begin() + vocab);
  // The same decode after moving to a copy of block 4 (block 6): the copy
  // must land before the forward pass reads the first 4 tokens of block 6.
  StepPlan cow = OneSequencePlan({next}, 20, {3, 6});
  cow.block_copies.push_back({4, 6});
  REQUIRE(runner.Execute(cow, out).ok());
  const std::vector<float> copied(out.logits.begin(), out.logits.begin() + vocab);
  CHECK(copied == in_place);
  // Without the copy, block 7 holds no context: the logits differ.
  REQUIRE(runner.Execute(OneSequencePlan({next}, 20, {3, 7}), out).ok());
  CHECK(std::vector<float>(out.logits.begin(), out.logits.begin() + vocab) != in_place);
  // A plan naming a block outside the cache is refused, not run.
  CHECK(runner.Execute(OneSequencePlan({next}, 20, {3, 8}), out).code() ==
        absl::StatusCode::kInvalidArgument);
  StepPlan bad_copy = OneSequencePlan({next}, 20, {3, 6});
  bad_copy.block_copies.push_back({4, -1});
  CHECK(runner.Execute(bad_copy, out).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("bad requests are rejected without touching the engine") {
  auto engine = MakeEngine(Config());
  CHECK(engine->AddRequest(1, {}, Greedy(4)).code() == absl::StatusCode::kInvalidArgument);
  CHECK(engine->AddRequest(1, {1, 49152}, Greedy(4)).code() == absl::StatusCode::kInvalidArgument);
  SamplingParams bad = Greedy(4);
  bad.top_p = 0.0f;
  CHECK(engine->AddRequest(1, {1, 2}, bad).code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(engine->AddRequest(1, {1, 2}, Greedy(4)).ok());
  CHECK(engine->AddRequest(1, {1, 2}, Greedy(4)).code() == absl::StatusCode::kAlreadyExists);
  Run run = Drain(*engine);
  CHECK(run.results.at(1).tokens.size() == 4);
}

// ---- Parallel sampling (SamplingParams::n > 1) ----

// Steps an engine holding one n-choice request until it finishes; checks
// that each choice streams one token per output until its finish reason,
// that `finished` comes exactly once, on the request's last output, and
// that every block is free at the end. Returns the choices by index.
std::vector<Result> DrainChoices(LlmEngine& engine, int64_t id, int n, int* closings = nullptr) {
  std::vector<Result> choices(n);
  bool request_done = false;
  for (int step = 0; engine.HasUnfinished(); ++step) {
    REQUIRE(step < 10000);
    auto outputs = engine.Step();
    REQUIRE(outputs.ok());
    for (const RequestOutput& o : *outputs) {
      REQUIRE(o.request_id == id);
      REQUIRE_FALSE(request_done);
      REQUIRE(o.index >= 0);
      REQUIRE(o.index < n);
      Result& r = choices[o.index];
      if (o.new_token_ids.empty()) {
        // A closing output: only for a choice already reported finished.
        REQUIRE(o.finished);
        REQUIRE(r.reason != FinishReason::kNone);
        REQUIRE(o.finish_reason == r.reason);
        if (closings != nullptr) ++*closings;
      } else {
        REQUIRE(r.reason == FinishReason::kNone);  // nothing after the choice's finish
        REQUIRE(o.new_token_ids.size() == 1);
        r.tokens.push_back(o.new_token_ids[0]);
        r.text += o.text;
        r.reason = o.finish_reason;
      }
      request_done = o.finished;
    }
  }
  CHECK(request_done);
  for (const Result& r : choices) CHECK(r.reason != FinishReason::kNone);
  CHECK(engine.stats().num_free_blocks == engine.stats().num_total_blocks);
  return choices;
}

std::vector<Result> RunChoices(const std::vector<int32_t>& prompt, const SamplingParams& p,
                               int* closings = nullptr) {
  auto engine = MakeEngine(Config(2048, 256, false));
  REQUIRE(engine->AddRequest(7, prompt, p).ok());
  return DrainChoices(*engine, 7, p.n, closings);
}

void CheckSameResult(const Result& got, const Result& want) {
  CHECK(got.tokens == want.tokens);
  CHECK(got.text == want.text);
  CHECK(got.reason == want.reason);
}

TEST_CASE("n = 4 greedy gives four copies of the n = 1 greedy output") {
  const std::vector<int32_t> prompt = PromptOfLength(0, 40);
  SamplingParams p = Greedy(10);
  const Result single = RunChoices(prompt, p).at(0);
  REQUIRE(single.tokens.size() == 10);
  p.n = 4;
  const std::vector<Result> choices = RunChoices(prompt, p);
  for (int i = 0; i < 4; ++i) {
    INFO("choice " << i);
    CheckSameResult(choices[i], single);
  }
}

TEST_CASE("n = 4 seeded sampling: choice i equals n = 1 with seed + i, reproducibly") {
  const std::vector<int32_t> prompt = PromptOfLength(2, 30);
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 4242;
  p.max_tokens = 10;
  p.n = 4;
  const std::vector<Result> first = RunChoices(prompt, p);
  const std::vector<Result> second = RunChoices(prompt, p);
  // The oracle: four n = 1 requests seeded 4242 + i, run together so that
  // their decode batches have the same shape as the four choices'. (Run
  // alone, request 0 draws differently from token 6 on: the CPU kernels are
  // not bitwise batch-invariant for 4 rows vs 1, and temperature 1.0 hits a
  // near-tie. That is independent of forking: it happens without n.)
  std::vector<Request> singles;
  for (int i = 0; i < 4; ++i) {
    SamplingParams one = p;
    one.n = 1;
    one.seed = 4242 + i;
    singles.push_back({10 + i, prompt, one});
  }
  const Run oracle = RunTogether(Config(2048, 256, false), singles);
  int distinct_pairs = 0;
  for (int i = 0; i < 4; ++i) {
    INFO("choice " << i);
    CheckSameResult(second[i], first[i]);
    CheckSameResult(first[i], oracle.results.at(10 + i));
    for (int j = 0; j < i; ++j) distinct_pairs += first[i].tokens != first[j].tokens ? 1 : 0;
  }
  CHECK(distinct_pairs > 0);  // the children draw with different seeds
}

TEST_CASE("n = 4 prefills the prompt once and shares its blocks") {
  // 70 prompt tokens in blocks of 16: 5 blocks, the last one partial.
  auto engine = MakeEngine(Config(2048, 64, false));
  const int32_t total = engine->stats().num_total_blocks;
  SamplingParams p = Greedy(8);
  p.n = 4;
  REQUIRE(engine->AddRequest(1, PromptOfLength(4, 70), p).ok());
  auto first = engine->Step();  // whole prefill, then the fork
  REQUIRE(first.ok());
  REQUIRE(first->size() == 4);
  for (int i = 0; i < 4; ++i) CHECK((*first)[i].index == i);
  CHECK(engine->scheduler().running().size() == 4);
  const int32_t prompt_blocks = 5;
  const int32_t used_after_fork = total - engine->stats().num_free_blocks;
  CHECK(used_after_fork == prompt_blocks);  // all four share the same blocks
  auto second = engine->Step();             // each child writes its token: copy-on-write
  REQUIRE(second.ok());
  REQUIRE(second->size() == 4);
  const int32_t used_after_decode = total - engine->stats().num_free_blocks;
  CHECK(used_after_decode <= prompt_blocks + 4);  // far below 4 * 5
  // Two steps ran (one prefill), not four prefills.
  CHECK(engine->stats().num_steps == 2);
  std::vector<Result> rest = DrainChoices(*engine, 1, 4);  // frees every block
  for (const Result& r : rest) CHECK(r.tokens.size() == 6);
}

TEST_CASE("aborting an n = 4 request frees every block") {
  auto engine = MakeEngine(Config(2048, 64, false));
  const int32_t total = engine->stats().num_total_blocks;
  SamplingParams p = Greedy(16);
  p.n = 4;
  REQUIRE(engine->AddRequest(1, PromptOfLength(6, 50), p).ok());
  for (int i = 0; i < 3; ++i) REQUIRE(engine->Step().ok());
  CHECK(engine->scheduler().running().size() == 4);
  CHECK(engine->stats().num_free_blocks < total);
  REQUIRE(engine->Abort(1).ok());
  CHECK(engine->stats().num_free_blocks == total);
  CHECK_FALSE(engine->HasUnfinished());
  CHECK(engine->Abort(1).code() == absl::StatusCode::kNotFound);
}

TEST_CASE("choices that stop at their first token finish and free their blocks") {
  // Every choice is forced to draw token 42, a stop token: the parent stops
  // through the scheduler, the three fork children a step later.
  const std::vector<int32_t> prompt = PromptOfLength(1, 20);
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 7;
  p.max_tokens = 8;
  p.logit_bias[42] = 100.0f;
  p.stop_token_ids = {42};
  p.n = 4;
  int closings = 0;
  const std::vector<Result> choices = RunChoices(prompt, p, &closings);
  for (const Result& r : choices) {
    CHECK(r.tokens == std::vector<int32_t>{42});
    CHECK(r.reason == FinishReason::kStop);
  }
  CHECK(closings == 1);  // the request ended in a step that sampled nothing
  // max_tokens = 1: the scheduler ends every choice at its fork token.
  p.max_tokens = 1;
  p.logit_bias.clear();
  p.stop_token_ids.clear();
  for (const Result& r : RunChoices(prompt, p)) {
    CHECK(r.tokens.size() == 1);
    CHECK(r.reason == FinishReason::kLength);
  }
}

TEST_CASE("n outside [1, 16] is rejected naming n") {
  auto engine = MakeEngine(Config());
  for (const int n : {0, -1, SamplingParams::kMaxN + 1}) {
    SamplingParams p = Greedy(4);
    p.n = n;
    const absl::Status st = engine->AddRequest(1, {1, 2}, p);
    CHECK(st.code() == absl::StatusCode::kInvalidArgument);
    CHECK(st.message().substr(0, 2) == "n ");
  }
  SamplingParams p = Greedy(4);
  p.n = SamplingParams::kMaxN;
  CHECK(engine->AddRequest(1, {1, 2}, p).ok());
}

// A checkpoint without a tokenizer (the tiny Llama-3 test model) serves
// token ids only, as vLLM's skip_tokenizer_init: greedy ids equal
// transformers' generate (the fixture), text stays empty, and stop strings,
// which need a tokenizer, are refused.
TEST_CASE("an engine without a tokenizer generates transformers' greedy ids and no text") {
  CpuBackend backend;
  auto loaded = LoadModel(testing::SourcePath("tests/data/models/tiny_llama3"), backend,
                          {.max_model_len = 0, .load_text = false});
  REQUIRE(loaded.ok());
  REQUIRE((*loaded)->text.tokenizer == nullptr);
  std::ifstream in(testing::SourcePath("tests/data/models/tiny_llama3_logits.json"));
  const nlohmann::json fixture = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  REQUIRE(!fixture.is_discarded());
  const auto prompt = fixture["greedy"]["prompt_ids"].get<std::vector<int32_t>>();
  const auto expected = fixture["greedy"]["new_ids"].get<std::vector<int32_t>>();
  EngineConfig config;
  config.scheduler.num_blocks = 16;
  config.scheduler.max_model_len = 64;
  auto engine = LlmEngine::Create(*(*loaded)->model, (*loaded)->text, config);
  REQUIRE(engine.ok());
  SamplingParams params;
  params.temperature = 0.0f;
  params.max_tokens = static_cast<int>(expected.size());
  params.ignore_eos = true;
  SamplingParams with_stop = params;
  with_stop.stop = {"x"};
  CHECK(absl::IsInvalidArgument((*engine)->AddRequest(7, prompt, with_stop)));
  REQUIRE((*engine)->AddRequest(1, prompt, params).ok());
  std::vector<int32_t> got;
  while ((*engine)->HasUnfinished()) {
    auto outputs = (*engine)->Step();
    REQUIRE(outputs.ok());
    for (const RequestOutput& o : *outputs) {
      got.insert(got.end(), o.new_token_ids.begin(), o.new_token_ids.end());
      CHECK(o.text.empty());
    }
  }
  CHECK(got == expected);
}

// Logprobs ride on the outputs: one entry per sampled token, the greedy
// token ranked first with its top alternative equal to itself.
TEST_CASE("requests that ask for logprobs get them with every token") {
  EngineConfig config;
  config.scheduler.num_blocks = 64;
  auto engine = LlmEngine::Create(*SharedModel().loaded->model, SharedModel().loaded->text, config);
  REQUIRE(engine.ok());
  SamplingParams params;
  params.temperature = 0.0f;
  params.max_tokens = 8;
  params.ignore_eos = true;
  params.logprobs = 3;
  REQUIRE((*engine)->AddRequest(1, {1, 504, 3458, 282, 4649, 314}, params).ok());
  SamplingParams plain = params;
  plain.logprobs.reset();
  REQUIRE((*engine)->AddRequest(2, {1, 504, 3458, 282, 4649, 314}, plain).ok());
  std::vector<int32_t> with, without;
  while ((*engine)->HasUnfinished()) {
    auto outputs = (*engine)->Step();
    REQUIRE(outputs.ok());
    for (const RequestOutput& o : *outputs) {
      if (o.request_id == 2) {
        CHECK(o.logprobs.empty());
        without.insert(without.end(), o.new_token_ids.begin(), o.new_token_ids.end());
        continue;
      }
      REQUIRE(o.logprobs.size() == o.new_token_ids.size());
      for (size_t i = 0; i < o.logprobs.size(); ++i) {
        const PositionLogprobs& lp = o.logprobs[i];
        CHECK(lp.rank == 1);
        CHECK(lp.logprob <= 0.0f);
        REQUIRE(lp.top.size() == 3);
        CHECK(lp.top[0].token == o.new_token_ids[i]);
        CHECK(lp.top[0].logprob == lp.logprob);
        CHECK(lp.top[1].logprob <= lp.top[0].logprob);
      }
      with.insert(with.end(), o.new_token_ids.begin(), o.new_token_ids.end());
    }
  }
  CHECK(with.size() == 8);
  CHECK(with == without);  // the host sampler and the device argmax agree
}

// Prompt logprobs against an independent path: what the engine reported for
// its own greedy tokens during decode must match the prompt logprobs of the
// same tokens re-read as a prompt (prefill); chunked prefill gives the same.
TEST_CASE("prompt logprobs equal the decode logprobs of the same tokens, chunked or not") {
  const std::vector<int32_t> prompt = {1, 504, 3458, 282, 4649, 314, 2365};
  auto run = [](const std::vector<int32_t>& ids, SamplingParams params, int chunk) {
    EngineConfig config;
    config.scheduler.num_blocks = 64;
    config.scheduler.max_num_batched_tokens = chunk;
    auto engine =
        LlmEngine::Create(*SharedModel().loaded->model, SharedModel().loaded->text, config);
    REQUIRE(engine.ok());
    REQUIRE((*engine)->AddRequest(1, ids, params).ok());
    std::vector<RequestOutput> all;
    while ((*engine)->HasUnfinished()) {
      auto outputs = (*engine)->Step();
      REQUIRE(outputs.ok());
      all.insert(all.end(), outputs->begin(), outputs->end());
    }
    return all;
  };
  SamplingParams gen;
  gen.temperature = 0.0f;
  gen.max_tokens = 6;
  gen.ignore_eos = true;
  gen.logprobs = 2;
  std::vector<int32_t> tokens;
  std::vector<PositionLogprobs> decode_logprobs;
  for (const RequestOutput& o : run(prompt, gen, 2048)) {
    CHECK(o.prompt_logprobs.empty());  // not asked for
    tokens.insert(tokens.end(), o.new_token_ids.begin(), o.new_token_ids.end());
    decode_logprobs.insert(decode_logprobs.end(), o.logprobs.begin(), o.logprobs.end());
  }
  REQUIRE(tokens.size() == 6);
  std::vector<int32_t> extended = prompt;
  extended.insert(extended.end(), tokens.begin(), tokens.end());
  SamplingParams read;
  read.temperature = 0.0f;
  read.max_tokens = 1;
  read.prompt_logprobs = 2;
  for (int chunk : {2048, 5, 3}) {
    INFO("chunk " << chunk);
    const std::vector<RequestOutput> outs = run(extended, read, chunk);
    REQUIRE(!outs.empty());
    const std::vector<PositionLogprobs>& pl = outs.front().prompt_logprobs;
    REQUIRE(pl.size() == extended.size() - 1);
    for (size_t i = 1; i < outs.size(); ++i) CHECK(outs[i].prompt_logprobs.empty());
    for (size_t t = 0; t < tokens.size(); ++t) {
      // The generated token t sits at position prompt.size() + t, predicted
      // by the row before it: entry prompt.size() + t - 1.
      const PositionLogprobs& p = pl[prompt.size() + t - 1];
      CHECK(p.rank == 1);
      CHECK(p.top[0].token == tokens[t]);
      CHECK(std::abs(p.logprob - decode_logprobs[t].logprob) < 1e-4);
      CHECK(std::abs(p.top[1].logprob - decode_logprobs[t].top[1].logprob) < 1e-4);
    }
    for (const PositionLogprobs& p : pl) CHECK(p.logprob <= 0.0f);
  }
}

TEST_CASE("a request for prompt logprobs gets all of them when its prompt is cached") {
  // 40 tokens, block size 16: two full blocks would be prefix-cache hits.
  std::vector<int32_t> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back(300 + 7 * i);
  EngineConfig config;
  config.scheduler.num_blocks = 64;
  auto engine = LlmEngine::Create(*SharedModel().loaded->model, SharedModel().loaded->text, config);
  REQUIRE(engine.ok());
  SamplingParams read;
  read.temperature = 0.0f;
  read.max_tokens = 1;
  read.prompt_logprobs = 1;
  std::vector<std::vector<PositionLogprobs>> got;
  for (int64_t id : {1, 2}) {  // the second finds the first's blocks cached
    REQUIRE((*engine)->AddRequest(id, prompt, read).ok());
    while ((*engine)->HasUnfinished()) {
      auto outputs = (*engine)->Step();
      REQUIRE(outputs.ok());
      for (const RequestOutput& o : *outputs) {
        if (!o.prompt_logprobs.empty()) got.push_back(o.prompt_logprobs);
      }
    }
  }
  REQUIRE(got.size() == 2);
  REQUIRE(got[1].size() == prompt.size() - 1);
  for (size_t p = 0; p < got[1].size(); ++p) CHECK(got[1][p].logprob == got[0][p].logprob);
  // Nothing was taken from the cache for it (its blocks were registered).
  CHECK((*engine)->stats().prefix_cache_hit_blocks == 0);
  // A plain request with that prompt does hit them.
  SamplingParams plain = read;
  plain.prompt_logprobs.reset();
  REQUIRE((*engine)->AddRequest(3, prompt, plain).ok());
  while ((*engine)->HasUnfinished()) REQUIRE((*engine)->Step().ok());
  CHECK((*engine)->stats().prefix_cache_hit_blocks == 2);
}

}  // namespace
}  // namespace alignserve
