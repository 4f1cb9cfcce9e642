// The Score hook (DESIGN.md hook 5) through LlmEngine on the default model
// (SmolLM2-135M, CpuBackend). Oracles: the plain prompt_logprobs path for
// the log-probabilities (a request whose prompt is the scoring prompt plus
// the token), plain greedy runs for the owner's tokens, the step counter
// and the other requests' outputs for batching, and exact KV block counts
// (block size 16, prefix cache off) for what scoring leaves behind.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/decoding_policy.h"
#include "engine/llm_engine.h"
#include "tests/engine/policy_test_util.h"

namespace alignserve {
namespace {

using testing::CollectOutputs;
using testing::DrainEngine;
using testing::GreedyParams;
using testing::MakeTestEngine;
using testing::PolicyTestConfig;
using testing::PromptLogprobsOracle;
using testing::SharedModelVocab;
using testing::TestEncode;
using testing::TestOutcomes;
using testing::TestTokenizer;
using testing::UsedTestBlocks;

int32_t BlocksFor(int32_t tokens) {
  return (tokens + testing::kTestBlock - 1) / testing::kTestBlock;
}

const char kJudgeText[] =
    "Question: Is the sky blue on a clear day?\nAnswer given: Yes, it is.\n"
    "Is the answer correct? Answer Yes or No.\nAnswer:";

// " Yes" and " No" are single tokens of SmolLM2's byte-level BPE.
std::vector<int32_t> VerdictIds() {
  const std::vector<int32_t> yes = TestEncode(" Yes");
  const std::vector<int32_t> no = TestEncode(" No");
  REQUIRE(yes.size() == 1);
  REQUIRE(no.size() == 1);
  CHECK(TestTokenizer().TokenId("\xC4\xA0Yes") == yes[0]);  // "ĠYes"
  return {yes[0], no[0]};
}

// Submits one scoring request in its first OnStep; records the results.
class ScoreOncePolicy : public DecodingPolicy {
 public:
  explicit ScoreOncePolicy(ScoreRequest request) : request_(std::move(request)) {}
  void OnStep(PolicyContext& ctx) override {
    if (score_id != 0) return;
    absl::StatusOr<int64_t> id = ctx.Score(request_);
    REQUIRE(id.ok());
    score_id = *id;
  }
  void OnScores(std::span<const ScoreResult> scores, PolicyContext& ctx) override {
    results.insert(results.end(), scores.begin(), scores.end());
  }
  int64_t score_id = 0;
  std::vector<ScoreResult> results;

 private:
  ScoreRequest request_;
};

// At `at` output tokens pauses its sequence and scores prompt + those
// tokens; resumes it in OnScores.
class ScorePartialPolicy : public DecodingPolicy {
 public:
  ScorePartialPolicy(size_t at, std::vector<int32_t> ids) : at_(at), ids_(std::move(ids)) {}
  void OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) override {
    for (TokenView& v : seqs) {
      token_steps.push_back(ctx.step());
      if (v.output_token_ids.size() != at_) continue;
      ScoreRequest request;
      request.prompt_token_ids.assign(ctx.prompt_token_ids().begin(), ctx.prompt_token_ids().end());
      request.prompt_token_ids.insert(request.prompt_token_ids.end(), v.output_token_ids.begin(),
                                      v.output_token_ids.end());
      request.token_ids = ids_;
      scored_prompt = request.prompt_token_ids;
      REQUIRE(ctx.Score(std::move(request)).ok());
      v.decision = TokenDecision::kPause;
      seq_id = v.seq_id;
      paused_at_step = ctx.step();
    }
  }
  void OnScores(std::span<const ScoreResult> scores, PolicyContext& ctx) override {
    REQUIRE(scores.size() == 1);
    result = scores[0];
    REQUIRE(ctx.Resume(seq_id).ok());
    resumed_at_step = ctx.step();
  }
  std::vector<int32_t> scored_prompt;
  ScoreResult result;
  int64_t seq_id = -1, paused_at_step = -1, resumed_at_step = -1;
  std::vector<int64_t> token_steps;

 private:
  size_t at_;
  std::vector<int32_t> ids_;
};

// n sequences; each is scored (a fixed prompt of `prompt_tokens` tokens)
// when it finishes; Finalize records how many scores it had by then.
class ScoreAtFinishPolicy : public DecodingPolicy {
 public:
  ScoreAtFinishPolicy(int n, std::vector<int32_t> prompt) : n_(n), prompt_(std::move(prompt)) {}
  PolicySpec Spec() const override {
    PolicySpec s;
    s.num_sequences = n_;
    return s;
  }
  void OnFinished(std::span<const SequenceEnd> ended, PolicyContext& ctx) override {
    for (size_t i = 0; i < ended.size(); ++i) {
      ScoreRequest request{prompt_, {1, 2}};
      REQUIRE(ctx.Score(std::move(request)).ok());
      ++submitted;
      submitted_at_step = ctx.step();
    }
  }
  void OnScores(std::span<const ScoreResult> scores, PolicyContext& ctx) override {
    for (const ScoreResult& r : scores) received += r.status.ok() ? 1 : 0;
  }
  PolicyResult Finalize(std::span<const SequenceResult> seqs) override {
    finalized_with = received;
    return DecodingPolicy::Finalize(seqs);
  }
  int submitted = 0, received = 0, finalized_with = -1;
  int64_t submitted_at_step = -1;

 private:
  int n_;
  std::vector<int32_t> prompt_;
};

// ---------------------------------------------------------------------------

TEST_CASE("Score returns the log-softmax of the next-token row after the scoring prompt") {
  const std::vector<int32_t> judge = TestEncode(kJudgeText);
  std::vector<int32_t> ids = VerdictIds();
  ids.push_back(0);
  ids.push_back(SharedModelVocab() - 1);
  auto policy = std::make_shared<ScoreOncePolicy>(ScoreRequest{judge, ids});
  const std::vector<int32_t> prompt = TestEncode("The capital of France is");
  auto engine = MakeTestEngine();
  RequestParams params;
  params.sampling = GreedyParams(6);
  params.policy = policy;
  REQUIRE(engine->AddRequest(1, prompt, params).ok());
  const TestOutcomes out = DrainEngine(*engine);
  REQUIRE(policy->score_id < 0);  // internal ids never clash with clients'
  REQUIRE(policy->results.size() == 1);
  const ScoreResult& r = policy->results[0];
  REQUIRE(r.status.ok());
  CHECK(r.score_id == policy->score_id);
  CHECK(r.step == 1);  // queued in the first OnStep, run in that first step
  const std::vector<float> oracle = PromptLogprobsOracle(judge, ids);
  REQUIRE(r.values.size() == ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    INFO("token " << ids[i] << " hook " << r.values[i] << " oracle " << oracle[i]);
    CHECK(std::abs(r.values[i] - oracle[i]) <= 1e-4f);
  }
  // The owner generated what it generates alone.
  auto alone = MakeTestEngine();
  REQUIRE(alone->AddRequest(1, prompt, GreedyParams(6)).ok());
  CHECK(out.at(1).choices.at(0).tokens == DrainEngine(*alone).at(1).choices.at(0).tokens);
}

TEST_CASE("scoring runs in the same steps as other requests' decodes and leaves no blocks") {
  const std::vector<int32_t> prompt = TestEncode("Write a short poem about the sea and the sky:");
  const std::vector<int32_t> other = TestEncode("List three colours of the rainbow:");
  auto policy = std::make_shared<ScorePartialPolicy>(3, VerdictIds());
  auto engine = MakeTestEngine();
  RequestParams params;
  params.sampling = GreedyParams(10);
  params.policy = policy;
  REQUIRE(engine->AddRequest(1, prompt, params).ok());
  REQUIRE(engine->AddRequest(2, other, GreedyParams(24)).ok());
  TestOutcomes out;
  std::vector<int64_t> other_steps;
  bool checked_blocks = false;
  while (engine->HasUnfinished()) {
    auto step = engine->Step();
    REQUIRE(step.ok());
    const int64_t now = engine->stats().num_steps;
    for (const RequestOutput& o : *step) {
      if (o.request_id == 2) other_steps.push_back(now);
    }
    CollectOutputs(*step, now, out);
    if (policy->paused_at_step >= 0 && now == policy->paused_at_step + 1) {
      // The scoring request ran in this step (checked below) and is gone:
      // only the two requests' own blocks remain, the owner paused.
      checked_blocks = true;
      const Sequence* owner = engine->scheduler().FindSequence(policy->seq_id);
      const Sequence* plain = nullptr;
      for (const Sequence* s : engine->scheduler().running()) {
        if (s->request_id() == 2) plain = s;
      }
      REQUIRE(owner != nullptr);
      REQUIRE(plain != nullptr);
      CHECK(owner->paused());
      CHECK(engine->stats().num_unfinished_requests == 2);
      CHECK(UsedTestBlocks(*engine) ==
            BlocksFor(owner->num_computed_tokens()) + BlocksFor(plain->num_computed_tokens()));
    }
  }
  REQUIRE(checked_blocks);
  REQUIRE(policy->result.status.ok());
  // Queued in the pausing step's OnTokens, run in the next step, delivered
  // at the start of the one after.
  CHECK(policy->result.step == policy->paused_at_step + 1);
  CHECK(policy->resumed_at_step == policy->result.step);
  // Batched: the other request decoded in the very step that scored.
  CHECK(std::find(other_steps.begin(), other_steps.end(), policy->result.step) !=
        other_steps.end());
  for (const int64_t s : policy->token_steps) {
    CHECK((s <= policy->paused_at_step || s > policy->resumed_at_step));
  }
  // The score is the oracle's, the outputs what each generates alone.
  const std::vector<float> oracle = PromptLogprobsOracle(policy->scored_prompt, VerdictIds());
  REQUIRE(policy->result.values.size() == 2);
  for (size_t i = 0; i < 2; ++i) CHECK(std::abs(policy->result.values[i] - oracle[i]) <= 1e-4f);
  auto alone = MakeTestEngine();
  REQUIRE(alone->AddRequest(1, prompt, GreedyParams(10)).ok());
  REQUIRE(alone->AddRequest(2, other, GreedyParams(24)).ok());
  const TestOutcomes expected = DrainEngine(*alone);
  CHECK(out.at(1).choices.at(0).tokens == expected.at(1).choices.at(0).tokens);
  CHECK(out.at(2).choices.at(0).tokens == expected.at(2).choices.at(0).tokens);
}

TEST_CASE("a group whose sequences finished is finalized only after its scores arrive") {
  auto policy = std::make_shared<ScoreAtFinishPolicy>(3, TestEncode(kJudgeText));
  auto engine = MakeTestEngine();
  RequestParams params;
  params.sampling = testing::SeededParams(5, 17);
  params.policy = policy;
  REQUIRE(engine->AddRequest(1, TestEncode("Once upon a time"), params).ok());
  const TestOutcomes out = DrainEngine(*engine);
  CHECK(policy->submitted == 3);
  CHECK(policy->finalized_with == 3);
  REQUIRE(out.at(1).finished);
  CHECK(out.at(1).choices.size() == 3);
  // Finished at step 5; scored in step 6; delivered and finalized in the
  // (empty) step after it.
  CHECK(policy->submitted_at_step == 5);
  CHECK(engine->stats().num_steps == 6);
}

TEST_CASE("aborting a request aborts its scoring requests and frees every block") {
  // A long scoring prompt prefilled in chunks of 32 tokens holds blocks
  // over several steps.
  std::vector<int32_t> long_prompt;
  for (int i = 0; i < 6; ++i) {
    const std::vector<int32_t> part = TestEncode(kJudgeText);
    long_prompt.insert(long_prompt.end(), part.begin(), part.end());
  }
  EngineConfig config = PolicyTestConfig();
  config.scheduler.max_num_batched_tokens = 32;
  auto engine = MakeTestEngine(config);
  auto policy = std::make_shared<ScoreAtFinishPolicy>(2, long_prompt);
  RequestParams params;
  params.sampling = GreedyParams(2);
  params.policy = policy;
  REQUIRE(engine->AddRequest(1, TestEncode("Hello there"), params).ok());
  bool aborted = false;
  for (int step = 0; step < 100 && !aborted; ++step) {
    auto outputs = engine->Step();
    REQUIRE(outputs.ok());
    CHECK(outputs->empty());
    // Both sequences finished; both scoring requests are part-way through
    // their prefill: the group waits outside the scheduler.
    if (policy->submitted == 2 && engine->stats().num_unfinished_requests == 2 &&
        UsedTestBlocks(*engine) > 0) {
      for (const Sequence* s : engine->scheduler().running()) CHECK(s->request_id() < 0);
      REQUIRE(engine->Abort(1).ok());
      aborted = true;
    }
  }
  REQUIRE(aborted);
  CHECK(UsedTestBlocks(*engine) == 0);
  CHECK(engine->stats().num_unfinished_requests == 0);
  CHECK_FALSE(engine->HasUnfinished());
  CHECK(absl::IsNotFound(engine->Abort(1)));
  // The engine serves the next request as usual.
  REQUIRE(engine->AddRequest(2, TestEncode("Hello there"), GreedyParams(3)).ok());
  CHECK(DrainEngine(*engine).at(2).choices.at(0).tokens.size() == 3);
}

TEST_CASE("aborting a paused owner while its score is queued or running frees everything") {
  for (const int steps_after_pause : {0, 1}) {
    auto engine = MakeTestEngine();
    auto policy = std::make_shared<ScorePartialPolicy>(2, VerdictIds());
    RequestParams params;
    params.sampling = GreedyParams(8);
    params.policy = policy;
    REQUIRE(engine->AddRequest(1, TestEncode("Tell me about cats"), params).ok());
    while (policy->paused_at_step < 0) REQUIRE(engine->Step().ok());
    for (int i = 0; i < steps_after_pause; ++i) REQUIRE(engine->Step().ok());
    CHECK(UsedTestBlocks(*engine) > 0);
    REQUIRE(engine->Abort(1).ok());
    CHECK(UsedTestBlocks(*engine) == 0);
    CHECK_FALSE(engine->HasUnfinished());
    auto next = engine->Step();  // a queued score is dropped, not added
    REQUIRE(next.ok());
    CHECK(next->empty());
    CHECK_FALSE(engine->HasUnfinished());
  }
}

// Records the status of each Score call and of each result.
class BadScorePolicy : public DecodingPolicy {
 public:
  explicit BadScorePolicy(std::vector<ScoreRequest> requests) : requests_(std::move(requests)) {}
  void OnStep(PolicyContext& ctx) override {
    if (!calls.empty()) return;
    for (const ScoreRequest& r : requests_) calls.push_back(ctx.Score(r).status());
  }
  void OnScores(std::span<const ScoreResult> scores, PolicyContext& ctx) override {
    for (const ScoreResult& r : scores) results.push_back(r.status);
  }
  std::vector<absl::Status> calls, results;

 private:
  std::vector<ScoreRequest> requests_;
};

TEST_CASE("bad scoring requests are refused at once; one that cannot be admitted reports why") {
  const std::vector<int32_t> ok_prompt = TestEncode(kJudgeText);
  const int32_t vocab = SharedModelVocab();
  std::vector<int32_t> too_long(600, 42);   // over max_model_len 512
  std::vector<int32_t> over_pool(200, 42);  // fits 512, not a 8-block pool
  auto policy = std::make_shared<BadScorePolicy>(std::vector<ScoreRequest>{
      {{}, {1}},
      {ok_prompt, {}},
      {ok_prompt, std::vector<int32_t>(ScoreRequest::kMaxTokenIds + 1, 1)},
      {ok_prompt, {vocab}},
      {{-1}, {1}},
      {too_long, {1}},
      {over_pool, {1}},
  });
  auto engine = MakeTestEngine(PolicyTestConfig(/*num_blocks=*/8));
  RequestParams params;
  params.sampling = GreedyParams(3);
  params.policy = policy;
  REQUIRE(engine->AddRequest(1, TestEncode("Hi"), params).ok());
  const TestOutcomes out = DrainEngine(*engine);
  REQUIRE(policy->calls.size() == 7);
  for (size_t i = 0; i < 6; ++i) {
    INFO("request " << i << ": " << policy->calls[i]);
    CHECK(absl::IsInvalidArgument(policy->calls[i]));
  }
  CHECK(policy->calls[6].ok());
  REQUIRE(policy->results.size() == 1);
  CHECK(absl::IsResourceExhausted(policy->results[0]));
  CHECK(out.at(1).choices.at(0).tokens.size() == 3);
}

}  // namespace
}  // namespace alignserve
