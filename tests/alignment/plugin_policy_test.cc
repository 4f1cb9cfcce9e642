// Policy plugins through the C ABI: the example plugin
// (examples/policy_plugins, "ban_token") loaded by its built path and run
// end to end on SmolLM2. Oracle: the plain greedy run of the same prompt,
// which emits the token the plugin bans; the plugin's run must never emit it
// and must equal the plain run up to the first place the plain run did.
// Broken libraries, foreign libraries and bad params are errors, never
// crashes; a plugin hook that fails ends its request cleanly.
#include "alignment/plugin_policy.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/alignment/policy_e2e.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

using testing::GreedyParams;
using testing::kTestBlock;
using testing::MakeTestEngine;
using testing::Outcome;
using testing::RunAlone;
using testing::TestEncode;
using testing::UsedTestBlocks;

constexpr int32_t kMaxTokens = 24;

std::shared_ptr<PolicyPlugin> LoadExample() {
  auto plugin = LoadPolicyPlugin(ALIGNSERVE_EXAMPLE_POLICY_PLUGIN);
  INFO(plugin.status().ToString());
  REQUIRE(plugin.ok());
  return *plugin;
}

std::shared_ptr<DecodingPolicy> MakeBan(const nlohmann::json& params) {
  auto policy = LoadExample()->Create(params);
  INFO(policy.status().ToString());
  REQUIRE(policy.ok());
  return *policy;
}

double Figure(const std::vector<std::pair<std::string, double>>& report, const std::string& key) {
  for (const auto& [k, v] : report) {
    if (k == key) return v;
  }
  FAIL("no figure " << key);
  return 0;
}

std::vector<int32_t> Prompt() { return TestEncode("The three primary colors are"); }

// The plain greedy run and a token it emits, with the first position where
// it does (past position 0, so some prefix is shared).
struct Oracle {
  std::vector<int32_t> tokens;
  int32_t banned = -1;
  size_t first_at = 0;
};

Oracle PlainGreedy() {
  const Outcome plain = RunAlone(Prompt(), GreedyParams(kMaxTokens));
  Oracle o;
  o.tokens = plain.choices.at(0).tokens;
  REQUIRE(o.tokens.size() == static_cast<size_t>(kMaxTokens));
  o.banned = o.tokens[3];
  o.first_at =
      static_cast<size_t>(std::find(o.tokens.begin(), o.tokens.end(), o.banned) - o.tokens.begin());
  REQUIRE(o.first_at >= 1);  // a shared prefix, so "equal until then" says something
  return o;
}

TEST_CASE("a plugin that bans a token never emits it and equals plain greedy until then") {
  const Oracle plain = PlainGreedy();
  const Outcome got =
      RunAlone(Prompt(), GreedyParams(kMaxTokens), MakeBan({{"token", plain.banned}}));
  REQUIRE(got.choices.size() == 1);
  const std::vector<int32_t>& tokens = got.choices.at(0).tokens;
  REQUIRE(tokens.size() == static_cast<size_t>(kMaxTokens));
  CHECK(std::count(tokens.begin(), tokens.end(), plain.banned) == 0);
  CHECK(std::equal(tokens.begin(), tokens.begin() + static_cast<long>(plain.first_at),
                   plain.tokens.begin()));
  CHECK(tokens[plain.first_at] != plain.banned);
  CHECK(got.choices.at(0).reason == FinishReason::kLength);
  // One masked row per sampled token: on_logits ran every step.
  CHECK(Figure(got.report, "masked") == kMaxTokens);
  CHECK(Figure(got.report, "sequences") == 1);
}

TEST_CASE("a plugin's expand shares the prompt's blocks and finalize picks one choice") {
  const Oracle plain = PlainGreedy();
  std::vector<int32_t> prompt;
  for (int i = 0; i < 4; ++i) {
    const std::vector<int32_t> part = Prompt();
    prompt.insert(prompt.end(), part.begin(), part.end());
  }
  const int32_t full_prompt_blocks = static_cast<int32_t>(prompt.size()) / kTestBlock;
  REQUIRE(full_prompt_blocks >= 1);
  constexpr int kN = 4;
  constexpr int kMaxLen = 10;
  auto engine = MakeTestEngine();
  RequestParams params;
  params.sampling = GreedyParams(kMaxTokens);
  params.policy = MakeBan({{"token", plain.banned}, {"n", kN}, {"max_len", kMaxLen}});
  REQUIRE(engine->AddRequest(1, prompt, std::move(params)).ok());
  testing::TestOutcomes outcomes;
  int32_t peak_blocks = 0;
  for (int step = 0; engine->HasUnfinished(); ++step) {
    REQUIRE(step < 200);
    auto outputs = engine->Step();
    REQUIRE(outputs.ok());
    peak_blocks = std::max(peak_blocks, UsedTestBlocks(*engine));
    testing::CollectOutputs(*outputs, step, outcomes);
  }
  CHECK(UsedTestBlocks(*engine) == 0);
  // Unshared, kN sequences would hold kN copies of the full prompt blocks.
  const int32_t per_sequence =
      (static_cast<int32_t>(prompt.size()) + kMaxLen + kTestBlock - 1) / kTestBlock;
  CHECK(peak_blocks <= full_prompt_blocks + kN * (per_sequence - full_prompt_blocks));
  CHECK(peak_blocks < kN * per_sequence);

  const testing::TestOutcome& got = outcomes.at(1);
  REQUIRE(got.finished);
  REQUIRE(got.choices.size() == 1);
  const std::vector<int32_t>& tokens = got.choices.at(0).tokens;
  CHECK(tokens.size() == static_cast<size_t>(kMaxLen));
  CHECK(got.choices.at(0).reason == FinishReason::kStop);
  CHECK(std::count(tokens.begin(), tokens.end(), plain.banned) == 0);
  CHECK(Figure(got.report, "sequences") == kN);
  // The first sample masks one row the expand children share; after it,
  // each of kN sequences masks one row per token.
  CHECK(Figure(got.report, "masked") == 1 + kN * (kMaxLen - 1));
}

TEST_CASE("a policy keeps its plugin loaded after the plugin handle is dropped") {
  const Oracle plain = PlainGreedy();
  std::shared_ptr<DecodingPolicy> policy;
  {
    auto plugin = LoadExample();
    auto made = plugin->Create({{"token", plain.banned}});
    REQUIRE(made.ok());
    policy = *made;
  }
  const Outcome got = RunAlone(Prompt(), GreedyParams(8), policy);
  CHECK(got.choices.at(0).tokens.size() == 8);
}

TEST_CASE("a plugin hook that fails ends its request with an error figure, blocks freed") {
  const Oracle plain = PlainGreedy();
  const Outcome got = RunAlone(Prompt(), GreedyParams(kMaxTokens),
                               MakeBan({{"token", plain.banned}, {"n", 3}, {"fail_after", 5}}));
  CHECK(got.used_blocks_at_end == 0);
  CHECK(Figure(got.report, "plugin_error") == ALIGNSERVE_POLICY_ERR_INTERNAL);
  for (const auto& [index, choice] : got.choices) CHECK(choice.tokens.empty());
  // The engine serves the next request as before.
  const Outcome after = RunAlone(Prompt(), GreedyParams(kMaxTokens));
  CHECK(after.choices.at(0).tokens == plain.tokens);
}

TEST_CASE("loading a missing file or a library without the entry point is a clear error") {
  auto missing = LoadPolicyPlugin("/nonexistent/dir/no_such_plugin.so");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(missing.status().message()),
             Catch::Contains("/nonexistent/dir/no_such_plugin.so"));

  auto foreign = LoadPolicyPlugin("libm.so.6");
  REQUIRE_FALSE(foreign.ok());
  CHECK(foreign.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(foreign.status().message()),
             Catch::Contains("alignserve_policy_plugin_v1"));

  auto not_elf = LoadPolicyPlugin(testing::SourcePath("alignment/plugin_abi.h"));
  CHECK_FALSE(not_elf.ok());
}

TEST_CASE("bad plugin params are InvalidArgument carrying the plugin's message") {
  auto plugin = LoadExample();
  CHECK(plugin->name() == "ban_token");
  const std::vector<std::pair<nlohmann::json, std::string>> cases = {
      {nlohmann::json::object(), "params.token is required"},
      {{{"token", "seven"}}, "params.token must be an integer"},
      {{{"token", 1.5}}, "params.token must be an integer"},
      {{{"token", 5}, {"n", 0}}, "params.n must be in [1, 1024]"},
      {{{"token", 5}, {"n", 5000}}, "params.n must be in [1, 1024]"},
      {{{"token", 5}, {"colour", 1}}, "unknown param 'colour'"},
      {nlohmann::json::array({1, 2}), "params must be an object"},
      {nlohmann::json(), "params must be an object"},
  };
  for (const auto& [params, message] : cases) {
    INFO(params.dump());
    auto made = plugin->Create(params);
    REQUIRE_FALSE(made.ok());
    CHECK(made.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(made.status().message()), Catch::Contains(message));
    CHECK_THAT(std::string(made.status().message()), Catch::Contains("ban_token"));
  }
}

TEST_CASE("--policy-plugin NAME=path parses, refusing bad and built-in names") {
  auto ok = ParsePolicyPluginFlag("ban=/opt/plugins/ban.so");
  REQUIRE(ok.ok());
  CHECK(ok->first == "ban");
  CHECK(ok->second == "/opt/plugins/ban.so");
  for (const char* bad : {"ban", "=x.so", "ban=", "Ban=x.so", "a-b=x.so", "best_of_n=x.so"}) {
    INFO(bad);
    auto parsed = ParsePolicyPluginFlag(bad);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace alignserve
