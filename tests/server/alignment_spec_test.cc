// A request's alignment and the server's default policy: a request that
// names no policy gets the default (fresh instances per prompt), "none" opts
// out (also of no default at all), n above 1 under a default names the
// opt-out; --default-policy / --default-policy-params are checked at start
// with the policy's own messages naming the flags.
#include "server/alignment_spec.h"

#include <catch2/catch.hpp>
#include <string>

#include "alignment/judge_reward_model.h"
#include "nlohmann/json.hpp"
#include "server/api_error.h"
#include "server/openai_request.h"
#include "tests/server/openai_test_util.h"

namespace alignserve {
namespace {

using nlohmann::json;
using testing::DefaultContext;
using testing::DefaultModelText;

ServeContext WithDefault(const std::string& policy, json params) {
  ServeContext ctx = DefaultContext();
  auto judge = JudgeRewardModel::Create(DefaultModelText().tokenizer.get());
  REQUIRE(judge.ok());
  ctx.reward_model = *judge;
  ctx.default_alignment.policy = policy;
  ctx.default_alignment.params = std::move(params);
  return ctx;
}

TEST_CASE("a request without alignment gets the default policy, one instance per prompt") {
  const ServeContext ctx = WithDefault("best_of_n", {{"n", 2}});
  auto one = ParseCompletionRequest(json{{"prompt", "Hi"}}.dump(), ctx);
  REQUIRE(one.ok());
  CHECK(one->policy_name == "best_of_n");
  REQUIRE(one->policies.size() == 1);
  CHECK(one->policies[0]->Spec().num_sequences == 2);

  auto two = ParseCompletionRequest(json{{"prompt", {"a", "b"}}}.dump(), ctx);
  REQUIRE(two.ok());
  REQUIRE(two->policies.size() == 2);
  CHECK(two->policies[0] != two->policies[1]);

  auto chat =
      ParseChatRequest(json{{"messages", {{{"role", "user"}, {"content", "Hi"}}}}}.dump(), ctx);
  REQUIRE(chat.ok());
  CHECK(chat->policy_name == "best_of_n");

  // A request's own policy wins over the default.
  auto own = ParseCompletionRequest(
      json{{"prompt", "Hi"}, {"alignment", {{"policy", "loop_guard"}}}}.dump(), ctx);
  REQUIRE(own.ok());
  CHECK(own->policy_name == "loop_guard");
}

TEST_CASE("policy none opts out of the default, in both spellings, and with no default") {
  for (const ServeContext& ctx : {WithDefault("best_of_n", {{"n", 2}}), DefaultContext()}) {
    for (const json& body :
         {json{{"prompt", "Hi"}, {"alignment", {{"policy", "none"}}}},
          json{{"prompt", "Hi"}, {"policy", "none"}},
          json{{"prompt", "Hi"}, {"n", 3}, {"alignment", {{"policy", "none"}}}}}) {
      INFO(body.dump());
      auto parsed = ParseCompletionRequest(body.dump(), ctx);
      REQUIRE(parsed.ok());
      CHECK(parsed->policy_name.empty());
      CHECK(parsed->policies.empty());
    }
  }
}

TEST_CASE("n above 1 under a default policy is a 400 on n that names the opt-out") {
  const ServeContext ctx = WithDefault("best_of_n", {{"n", 2}});
  auto parsed = ParseCompletionRequest(json{{"prompt", "Hi"}, {"n", 2}}.dump(), ctx);
  REQUIRE(absl::IsInvalidArgument(parsed.status()));
  CHECK(ParamOf(parsed.status()) == "n");
  CHECK(std::string(parsed.status().message()).find("\"none\"") != std::string::npos);
}

TEST_CASE("an alignment object without a policy or with another reward model is a 400") {
  const ServeContext ctx = WithDefault("", nullptr);
  for (const json& alignment :
       {json{{"policy", ""}}, json{{"policy", "best_of_n"}, {"reward_model", "oracle"}},
        json{{"policy", "best_of_n"}, {"reward_model", 3}}}) {
    INFO(alignment.dump());
    auto parsed =
        ParseCompletionRequest(json{{"prompt", "Hi"}, {"alignment", alignment}}.dump(), ctx);
    REQUIRE(absl::IsInvalidArgument(parsed.status()));
    CHECK(ParamOf(parsed.status()) == "alignment");
  }
  auto judge = ParseCompletionRequest(
      json{{"prompt", "Hi"}, {"alignment", {{"policy", "best_of_n"}, {"reward_model", "judge"}}}}
          .dump(),
      ctx);
  CHECK(judge.ok());
}

TEST_CASE("the default policy flags are checked by building the policy") {
  auto none = ParseDefaultPolicyFlags("", "{}", nullptr);
  REQUIRE(none.ok());
  CHECK(none->policy.empty());
  auto none_named = ParseDefaultPolicyFlags("none", "not json", nullptr);
  REQUIRE(none_named.ok());
  CHECK(none_named->policy.empty());  // no default: "none" is nothing to check

  auto bon = ParseDefaultPolicyFlags("best_of_n", R"({"n": 2})", nullptr);
  REQUIRE(bon.ok());
  CHECK(bon->policy == "best_of_n");
  CHECK(bon->params == json{{"n", 2}});

  struct Case {
    const char* name;
    const char* params;
    const char* in_message;
  };
  const Case cases[] = {
      {"best_of_nn", "{}", "unknown alignment policy"},
      {"best_of_n", R"({"n": 1000})", "'n'"},
      {"best_of_n", R"({"m": 2})", "unknown parameter"},
      {"best_of_n", "[2]", "JSON object"},
      {"best_of_n", "{n: 2}", "JSON object"},
  };
  for (const Case& c : cases) {
    INFO(c.name << " " << c.params);
    auto parsed = ParseDefaultPolicyFlags(c.name, c.params, nullptr);
    REQUIRE(absl::IsInvalidArgument(parsed.status()));
    const std::string message(parsed.status().message());
    CHECK(message.find("--default-policy") != std::string::npos);
    CHECK(message.find(c.in_message) != std::string::npos);
  }
}

}  // namespace
}  // namespace alignserve
