// The `policy` extension field of the OpenAI parsers: both spellings build
// one fresh policy per prompt; every bad name, key, param, type or range is
// a 400 with param "policy" and the factory's message; a reward-guided
// policy needs ServeContext::reward_model; n > 1 with a policy names "n".
#include <catch2/catch.hpp>
#include <memory>
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

ServeContext JudgedContext() {
  ServeContext ctx = DefaultContext();
  auto judge = JudgeRewardModel::Create(DefaultModelText().tokenizer.get());
  REQUIRE(judge.ok());
  ctx.reward_model = *judge;
  return ctx;
}

std::string Completion(const json& policy) {
  return json{{"model", "smollm2"}, {"prompt", "Hello"}, {"policy", policy}}.dump();
}

TEST_CASE("a policy object or name builds one fresh policy per prompt") {
  const ServeContext ctx = JudgedContext();
  auto one =
      ParseCompletionRequest(Completion({{"name", "best_of_n"}, {"params", {{"n", 3}}}}), ctx);
  REQUIRE(one.ok());
  CHECK(one->policy_name == "best_of_n");
  REQUIRE(one->policies.size() == 1);
  CHECK(one->policies[0]->Spec().num_sequences == 3);

  json two = {{"prompt", {"a", "b"}}, {"policy", "self_consistency"}};
  auto both = ParseCompletionRequest(two.dump(), ctx);
  REQUIRE(both.ok());
  REQUIRE(both->policies.size() == 2);
  CHECK(both->policies[0] != both->policies[1]);
  CHECK(both->policies[0]->Spec().num_sequences == 16);

  json chat = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}},
               {"policy", {{"name", "loop_guard"}, {"params", nullptr}}}};
  auto c = ParseChatRequest(chat.dump(), ctx);
  REQUIRE(c.ok());
  CHECK(c->policy_name == "loop_guard");
  CHECK(c->policies.size() == 1);

  auto none = ParseCompletionRequest(json{{"prompt", "Hi"}, {"policy", nullptr}}.dump(), ctx);
  REQUIRE(none.ok());
  CHECK(none->policy_name.empty());
  CHECK(none->policies.empty());
}

TEST_CASE("bad policy fields are 400s with param policy and the factory's message") {
  const ServeContext ctx = JudgedContext();
  struct Case {
    json policy;
    absl::StatusCode code;
    std::string in_message;
  };
  const Case cases[] = {
      {"no_such_policy", absl::StatusCode::kInvalidArgument, "unknown alignment policy"},
      {{{"name", "best_of_n"}, {"params", {{"m", 2}}}},
       absl::StatusCode::kInvalidArgument,
       "unknown parameter"},
      {{{"name", "best_of_n"}, {"params", {{"n", 65}}}}, absl::StatusCode::kInvalidArgument, "'n'"},
      {{{"name", "best_of_n"}, {"params", {{"n", "3"}}}},
       absl::StatusCode::kInvalidArgument,
       "'n'"},
      {{{"name", "best_of_n"}, {"params", 3}}, absl::StatusCode::kInvalidArgument, "params"},
      {{{"params", {{"n", 2}}}}, absl::StatusCode::kInvalidArgument, "name"},
      {{{"name", "best_of_n"}, {"extra", 1}}, absl::StatusCode::kInvalidArgument, "extra"},
      {42, absl::StatusCode::kInvalidArgument, "policy"},
      {{{"name", "prm_beam_search"}, {"params", {{"n", 6}, {"beam_width", 4}}}},
       absl::StatusCode::kInvalidArgument,
       "'beam_width'"},
  };
  for (const Case& c : cases) {
    INFO(c.policy.dump());
    auto parsed = ParseCompletionRequest(Completion(c.policy), ctx);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.status().code() == c.code);
    CHECK(ParamOf(parsed.status()) == "policy");
    CHECK(std::string(parsed.status().message()).find(c.in_message) != std::string::npos);
    const ApiError error = ErrorFromStatus(parsed.status());
    CHECK(error.http_status == 400);
    CHECK(error.param == "policy");
  }
  REQUIRE(ParseCompletionRequest(Completion("best_of_n"), ctx).ok());
}

TEST_CASE("best_of_n without a reward model and n above 1 with a policy are 400s") {
  auto no_judge = ParseCompletionRequest(Completion("best_of_n"), DefaultContext());
  REQUIRE(absl::IsInvalidArgument(no_judge.status()));
  CHECK(ParamOf(no_judge.status()) == "policy");
  CHECK(std::string(no_judge.status().message()).find("reward model") != std::string::npos);

  json body = {{"prompt", "Hi"}, {"n", 2}, {"policy", "self_consistency"}};
  auto n = ParseCompletionRequest(body.dump(), JudgedContext());
  REQUIRE(absl::IsInvalidArgument(n.status()));
  CHECK(ParamOf(n.status()) == "n");
}

}  // namespace
}  // namespace alignserve
