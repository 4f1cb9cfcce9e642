// MakePolicy: builds the implemented policies with their parsed parameters
// (visible through their PolicySpec), the reward-guided ones only with a
// reward model, passes ParsePolicySpec's InvalidArgument through, and builds
// every built-in.
#include "alignment/policy_factory.h"

#include <catch2/catch.hpp>
#include <map>
#include <string>

#include "alignment/args_policy.h"
#include "alignment/best_of_n_policy.h"
#include "alignment/blockwise_cd_policy.h"
#include "alignment/plugin_policy.h"
#include "alignment/policy_params.h"
#include "alignment/prm_beam_search_policy.h"

namespace alignserve {
namespace {

using Json = nlohmann::json;

// Scores nothing: the factory only needs a reward model to hand over.
class NullRewardModel final : public RewardModel {
 public:
  absl::StatusOr<int64_t> Submit(const RewardInput&, PolicyContext&) const override {
    return absl::UnimplementedError("not scored in this test");
  }
  double Reward(const ScoreResult&) const override { return 0.0; }
};

PolicyDeps WithReward() {
  PolicyDeps deps;
  deps.reward_model = std::make_shared<NullRewardModel>();
  deps.prompt = "the user's prompt";
  return deps;
}

TEST_CASE("MakePolicy builds the implemented policies with their parameters") {
  auto sc = MakePolicy("self_consistency", Json{{"n", 6}, {"window", 3}, {"answer", "boxed"}}, {});
  REQUIRE(sc.ok());
  CHECK((*sc)->Spec().num_sequences == 6);
  CHECK((*sc)->Spec().top_logprobs == -1);

  auto dc = MakePolicy("deepconf", Json{{"n", 8}, {"n_init", 2}, {"top_k", 7}}, {});
  REQUIRE(dc.ok());
  CHECK((*dc)->Spec().num_sequences == 8);
  CHECK((*dc)->Spec().top_logprobs == 7);

  auto lg = MakePolicy("loop_guard", nullptr, {});
  REQUIRE(lg.ok());
  CHECK((*lg)->Spec().num_sequences == 1);

  auto defaults = MakePolicy("deepconf", nullptr, {});
  REQUIRE(defaults.ok());
  CHECK((*defaults)->Spec().num_sequences == 32);
  CHECK((*defaults)->Spec().top_logprobs == 20);
}

TEST_CASE("MakePolicy passes parameter errors through as InvalidArgument") {
  auto bad = MakePolicy("deepconf", Json{{"percentile", 100}}, {});
  REQUIRE(absl::IsInvalidArgument(bad.status()));
  CHECK(std::string(bad.status().message()).find("percentile") != std::string::npos);
  CHECK(absl::IsInvalidArgument(MakePolicy("no_such_policy", nullptr, {}).status()));
  auto regex = MakePolicy("self_consistency", Json{{"answer", "regex:(a"}}, {});
  REQUIRE(absl::IsInvalidArgument(regex.status()));
  CHECK(std::string(regex.status().message()).find("'answer'") != std::string::npos);
  CHECK(absl::IsInvalidArgument(MakePolicy("deepconf", Json{{"answer", "last"}}, {}).status()));
  CHECK(absl::IsInvalidArgument(MakePolicy("deepconf", Json{{"answer", 3}}, {}).status()));
}

TEST_CASE("MakePolicy builds best_of_n and soft_best_of_n over the given reward model") {
  auto bon = MakePolicy("best_of_n", Json{{"n", 3}}, WithReward());
  REQUIRE(bon.ok());
  CHECK(dynamic_cast<BestOfNPolicy*>(bon->get()) != nullptr);
  CHECK((*bon)->Spec().num_sequences == 3);

  auto soft = MakePolicy("soft_best_of_n", Json{{"n", 5}, {"lambda", 0.5}}, WithReward());
  REQUIRE(soft.ok());
  CHECK(dynamic_cast<BestOfNPolicy*>(soft->get()) != nullptr);
  CHECK((*soft)->Spec().num_sequences == 5);

  auto defaults = MakePolicy("best_of_n", nullptr, WithReward());
  REQUIRE(defaults.ok());
  CHECK((*defaults)->Spec().num_sequences == 4);
  // Each call makes the request its own instance.
  auto again = MakePolicy("best_of_n", nullptr, WithReward());
  REQUIRE(again.ok());
  CHECK(again->get() != defaults->get());
}

TEST_CASE("MakePolicy builds args and blockwise_cd over the given reward model") {
  auto args = MakePolicy("args", Json{{"k", 3}, {"w", 0.5}}, WithReward());
  REQUIRE(args.ok());
  CHECK(dynamic_cast<ArgsPolicy*>(args->get()) != nullptr);
  auto cd = MakePolicy("blockwise_cd", Json{{"k", 2}, {"m", 4}}, WithReward());
  REQUIRE(cd.ok());
  CHECK(dynamic_cast<BlockwiseCdPolicy*>(cd->get()) != nullptr);
  CHECK((*cd)->Spec().num_sequences == 2);
  CHECK((*cd)->Spec().boundary_every == 4);
}

TEST_CASE("MakePolicy builds prm_beam_search over the given reward model") {
  auto beams = MakePolicy("prm_beam_search", Json{{"n", 6}, {"beam_width", 3}, {"delimiter", "\n"}},
                          WithReward());
  REQUIRE(beams.ok());
  CHECK(dynamic_cast<PrmBeamSearchPolicy*>(beams->get()) != nullptr);
  CHECK((*beams)->Spec().num_sequences == 6);
  CHECK((*beams)->Spec().boundary_delimiter == "\n");
  CHECK((*beams)->Spec().boundary_every == 0);
  auto defaults = MakePolicy("prm_beam_search", nullptr, WithReward());
  REQUIRE(defaults.ok());
  CHECK((*defaults)->Spec().num_sequences == 8);
  CHECK((*defaults)->Spec().boundary_delimiter == "\n\n");
  CHECK(absl::IsInvalidArgument(
      MakePolicy("prm_beam_search", Json{{"n", 6}, {"beam_width", 4}}, WithReward()).status()));
}

TEST_CASE("MakePolicy refuses the reward-guided policies without a reward model") {
  for (const char* name :
       {"best_of_n", "soft_best_of_n", "args", "blockwise_cd", "prm_beam_search"}) {
    INFO(name);
    auto made = MakePolicy(name, nullptr, {});
    REQUIRE(absl::IsInvalidArgument(made.status()));
    const std::string message(made.status().message());
    CHECK(message.find(name) != std::string::npos);
    CHECK(message.find("reward model") != std::string::npos);
  }
  // Bad params are reported before the missing reward model.
  auto bad = MakePolicy("best_of_n", Json{{"n", 65}}, {});
  REQUIRE(absl::IsInvalidArgument(bad.status()));
  CHECK(std::string(bad.status().message()).find("'n'") != std::string::npos);
}

TEST_CASE("MakePolicy builds every built-in policy") {
  CHECK(ImplementedPolicyNames() == BuiltinPolicyNames());
  for (const std::string& name : BuiltinPolicyNames()) {
    INFO(name);
    auto made = MakePolicy(name, nullptr, WithReward());
    REQUIRE(made.ok());
    CHECK(*made != nullptr);
  }
  // Parameters are validated first: a bad one is a 400.
  CHECK(absl::IsInvalidArgument(MakePolicy("args", Json{{"k", 0}}, WithReward()).status()));
  CHECK(absl::IsInvalidArgument(MakePolicy("best_of_n", Json{{"n", 0}}, WithReward()).status()));
}

TEST_CASE("the answer parameter of self_consistency and deepconf defaults to last_number") {
  auto sc = ParsePolicySpec("self_consistency", nullptr);
  REQUIRE(sc.ok());
  CHECK(std::get<SelfConsistencyParams>(sc->params).answer == "last_number");
  auto dc = ParsePolicySpec("deepconf", Json{{"answer", "regex:x=(\\d+)"}});
  REQUIRE(dc.ok());
  CHECK(std::get<DeepConfParams>(dc->params).answer == "regex:x=(\\d+)");
}

TEST_CASE("MakePolicy builds a plugin policy by its registered name before the built-ins") {
  auto plugin = LoadPolicyPlugin(ALIGNSERVE_EXAMPLE_POLICY_PLUGIN);
  REQUIRE(plugin.ok());
  const std::map<std::string, std::shared_ptr<PolicyPlugin>> plugins = {{"ban_token", *plugin}};
  PolicyDeps deps;
  deps.plugins = &plugins;
  auto made = MakePolicy("ban_token", Json{{"token", 5}, {"n", 2}}, deps);
  INFO(made.status().ToString());
  REQUIRE(made.ok());
  CHECK((*made)->Spec().num_sequences == 2);
  // The plugin's own validation comes back as a 400-style error.
  CHECK(absl::IsInvalidArgument(MakePolicy("ban_token", Json{{"n", 2}}, deps).status()));
  // Built-ins still resolve; unregistered names are still unknown.
  CHECK(MakePolicy("loop_guard", nullptr, deps).ok());
  CHECK(absl::IsInvalidArgument(MakePolicy("ban_tokens", nullptr, deps).status()));
}

}  // namespace
}  // namespace alignserve
