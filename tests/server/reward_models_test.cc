// Reward models declared by flags (server/reward_models.h): the
// --reward-model syntax and its errors, and a RewardModelSet built on the
// default model (SmolLM2-135M) with a second judge and the tiny
// sequence-classifier fixture as scorer engines: the names requests can
// use, the default, and the refusals that say what to do.
#include "server/reward_models.h"

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "alignment/judge_reward_model.h"
#include "alignment/self_judge_reward_model.h"
#include "tests/engine/policy_test_util.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

TEST_CASE("--reward-model parses NAME=KIND:PATH lists") {
  auto specs = ParseRewardModelFlag("rm=score_head:/m/Skywork,j2=judge:/m/q.gguf");
  REQUIRE(specs.ok());
  REQUIRE(specs->size() == 2);
  CHECK((*specs)[0].name == "rm");
  CHECK((*specs)[0].kind == "score_head");
  CHECK((*specs)[0].path == "/m/Skywork");
  CHECK((*specs)[1].name == "j2");
  CHECK((*specs)[1].kind == "judge");
  CHECK((*specs)[1].path == "/m/q.gguf");
  // A path may hold ':' after the kind.
  auto windowsish = ParseRewardModelFlag("rm=score_head:C:/models/x");
  REQUIRE(windowsish.ok());
  CHECK(windowsish->at(0).path == "C:/models/x");
  CHECK(ParseRewardModelFlag("")->empty());
}

TEST_CASE("bad --reward-model entries are refused naming the entry") {
  for (const std::string bad :
       {"rm", "rm=score_head", "=judge:/x", "rm=classifier:/x", "rm=judge:", "judge=judge:/x",
        "default=score_head:/x", "none=judge:/x", "a=judge:/x,a=judge:/y"}) {
    INFO(bad);
    auto specs = ParseRewardModelFlag(bad);
    REQUIRE(absl::IsInvalidArgument(specs.status()));
    CHECK(specs.status().message().find("--reward-model") != std::string::npos);
    CHECK(specs.status().message().find("NAME=KIND:PATH") != std::string::npos);
  }
}

TEST_CASE("the reward-model flags are checked together before anything loads") {
  RewardModelFlags f;
  f.reward_models = "rm=score_head:/m/x";
  f.default_reward_model = "rm";
  auto specs = ParseRewardModelFlags(f);
  REQUIRE(specs.ok());
  CHECK(specs->size() == 1);
  f.default_reward_model = "nope";
  auto bad_default = ParseRewardModelFlags(f);
  REQUIRE(absl::IsInvalidArgument(bad_default.status()));
  CHECK(bad_default.status().message().find("--default-reward-model 'nope'") != std::string::npos);
  f.default_reward_model = "judge";
  f.reward_gpu_memory_utilization = 1.0f;
  CHECK(ParseRewardModelFlags(f).status().message().find("--reward-gpu-memory-utilization") !=
        std::string::npos);
  f.reward_gpu_memory_utilization = 0.2f;
  f.reward_kv_cache_gib = 0.0f;
  CHECK(ParseRewardModelFlags(f).status().message().find("--reward-kv-cache-gib") !=
        std::string::npos);
  f.reward_kv_cache_gib = 0.25f;
  f.reward_models = "rm";
  CHECK(absl::IsInvalidArgument(ParseRewardModelFlags(f).status()));
}

EngineFlags ScorerFlags() {
  EngineFlags f;
  f.device = "cpu";
  return f;
}

TEST_CASE("a reward model set offers judge, the declared models and a default") {
  auto specs = ParseRewardModelFlag("j2=judge:" + testing::DefaultModelPath());
  REQUIRE(specs.ok());
  RewardModelFlags flags;
  flags.reward_kv_cache_gib = 0.05f;
  auto scorers = BuildScorerEngines(*specs, ScorerFlags(), flags);
  REQUIRE(scorers.ok());
  auto engine = testing::MakeTestEngine();
  auto set = RewardModelSet::Create(*engine, std::move(*scorers), *specs, Rubric::Default(), "j2");
  REQUIRE(set.ok());
  CHECK((*set)->names() == std::vector<std::string>{"j2", "judge", "self_judge"});
  CHECK(engine->num_scorers() == 1);
  auto by_default = (*set)->Find("");
  auto j2 = (*set)->Find("j2");
  REQUIRE(by_default.ok());
  REQUIRE(j2.ok());
  CHECK(*by_default == *j2);
  CHECK(*(*set)->Find("default") == *j2);
  CHECK(*(*set)->Find("judge") != *j2);
  auto unknown = (*set)->Find("nope");
  REQUIRE(absl::IsInvalidArgument(unknown.status()));
  CHECK(unknown.status().message().find("j2, judge") != std::string::npos);
}

TEST_CASE("self_judge asks the server's question, and is a valid default") {
  auto engine = testing::MakeTestEngine();
  const std::string question = "Is this answer polite? Yes or No.";
  auto set = RewardModelSet::Create(*engine, {}, {}, Rubric::Default(), "self_judge", question);
  REQUIRE(set.ok());
  auto by_default = (*set)->Find("");
  REQUIRE(by_default.ok());
  CHECK(*by_default == *(*set)->Find("self_judge"));
  const auto* self = dynamic_cast<const SelfJudgeRewardModel*>(by_default->get());
  REQUIRE(self != nullptr);
  const std::vector<int32_t> prompt = testing::TestEncode("Say hello.");
  const std::vector<int32_t> ids = self->JudgePrompt(prompt, testing::TestEncode(" Hello!"), "");
  CHECK(testing::TestTokenizer().Decode(ids, false) ==
        "Say hello. Hello!\n\n" + question + "\nAnswer:");
  RewardModelFlags flags;
  flags.default_reward_model = "self_judge";
  CHECK(ParseRewardModelFlags(flags).ok());
}

TEST_CASE("a causal LM declared as score_head, or an unknown default, is refused") {
  RewardModelFlags flags;
  flags.reward_kv_cache_gib = 0.05f;
  {
    auto specs = ParseRewardModelFlag("rm=score_head:" + testing::DefaultModelPath());
    REQUIRE(specs.ok());
    auto scorers = BuildScorerEngines(*specs, ScorerFlags(), flags);
    REQUIRE(scorers.ok());
    auto engine = testing::MakeTestEngine();
    auto set =
        RewardModelSet::Create(*engine, std::move(*scorers), *specs, Rubric::Default(), "judge");
    REQUIRE(absl::IsInvalidArgument(set.status()));
    CHECK(set.status().message().find("declare it as judge") != std::string::npos);
  }
  {
    auto engine = testing::MakeTestEngine();
    auto set = RewardModelSet::Create(*engine, {}, {}, Rubric::Default(), "rm");
    REQUIRE(absl::IsInvalidArgument(set.status()));
    CHECK(set.status().message().find("--default-reward-model 'rm'") != std::string::npos);
  }
  {
    auto specs = ParseRewardModelFlag("rm=score_head:/no/such/folder");
    REQUIRE(specs.ok());
    auto scorers = BuildScorerEngines(*specs, ScorerFlags(), flags);
    REQUIRE_FALSE(scorers.ok());
    CHECK(scorers.status().message().find("--reward-model rm") != std::string::npos);
  }
}

}  // namespace
}  // namespace alignserve
