// `alignserve serve --reward-model rm=score_head:PATH` end to end (issue 5):
// the tiny sequence classifier with its own tokenizer and chat template
// (tests/data/models/tiny_reward_chat) scores best_of_n's samples when a
// request names it as alignment.reward_model, and the chosen sample's
// reward is the classifier's score of [prompt, chosen text] computed here
// in-process; an unknown name is a 400 listing the server's reward models;
// an unknown --default-reward-model stops serve at start naming the flag.
// That the classifier's scores are transformers' is
// tests/alignment/score_head_chat_test.cc.
#include <signal.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "alignment/score_head_reward_model.h"
#include "models/model_loader.h"
#include "server/engine_setup.h"
#include "tests/models/model_test_util.h"
#include "tests/server/http_test_client.h"
#include "tests/server/serve_test_util.h"
#include "tests/server/server_process.h"

namespace alignserve {
namespace {

using nlohmann::json;
using testing::ErrorOf;
using testing::ExpectStillServes;
using testing::HttpResponse;
using testing::Post;
using testing::ServerProcess;

const std::string kRewardDir =
    std::string(ALIGNSERVE_SOURCE_DIR) + "/tests/data/models/tiny_reward_chat";
const std::string kRewardFlag = "rm=score_head:" + kRewardDir;
const std::string kPrompt = "Give one tip for staying healthy:";

// The classifier's score of one pair: its last row after the pair's chat,
// from a forward pass on a fresh cache (no engine, no server).
double ClassifierScore(const std::string& prompt, const std::string& response) {
  // The server's own numerics: the default flags' CPU profile.
  auto created = CreateBackend("cpu", "auto");
  REQUIRE(created.ok());
  Backend& backend = **created;
  REQUIRE(ConfigureKvCacheDtype(backend, "auto", "cpu", "auto").ok());
  auto loaded = LoadModel(kRewardDir, backend, ModelOptions{.max_model_len = 0, .load_text = true});
  REQUIRE(loaded.ok());
  auto reward_model = ScoreHeadRewardModel::Create((*loaded)->text, 1, /*scorer=*/1);
  REQUIRE(reward_model.ok());
  auto ids = (*reward_model)->ScorePrompt(prompt, response);
  REQUIRE(ids.ok());
  Model& model = *(*loaded)->model;
  const int blocks = static_cast<int>(ids->size() + 15) / 16;
  auto cache = model.AllocateKvCache(blocks, 16);
  REQUIRE(cache.ok());
  auto rows =
      testing::AllPositionLogits(model, **cache, *ids, testing::ShuffledBlocks(blocks, blocks, 7));
  REQUIRE(rows.ok());
  REQUIRE(rows->size() == ids->size());  // one label
  return rows->back();
}

ServerProcess& RewardServer() {
  static ServerProcess* server =
      new ServerProcess({"--model", "default", "--grpc-port", "-1", "--reward-model", kRewardFlag,
                         "--reward-kv-cache-gib", "0.05"});
  return *server;
}

json BestOfN(const std::string& reward_model) {
  return {{"model", "default"},
          {"prompt", kPrompt},
          {"max_tokens", 8},
          {"temperature", 0.8},
          {"seed", 1},
          {"alignment",
           {{"policy", "best_of_n"}, {"params", {{"n", 3}}}, {"reward_model", reward_model}}}};
}

// reward_0..reward_{n-1}, each finite; chosen_index is their argmax (lowest
// index on ties).
std::vector<double> CheckRewards(const json& alignment, int n) {
  REQUIRE(alignment.is_object());
  CHECK(alignment["policy"] == "best_of_n");
  const json& report = alignment["report"];
  INFO(report.dump());
  std::vector<double> rewards;
  int argmax = 0;
  for (int i = 0; i < n; ++i) {
    const std::string key = "reward_" + std::to_string(i);
    REQUIRE(report.contains(key));
    REQUIRE(report[key].is_number());
    rewards.push_back(report[key].get<double>());
    CHECK(std::isfinite(rewards.back()));
    if (rewards[i] > rewards[argmax]) argmax = i;
  }
  CHECK_FALSE(report.contains("reward_" + std::to_string(n)));
  REQUIRE(report.contains("chosen_index"));
  CHECK(report["chosen_index"].get<double>() == argmax);
  CHECK(report["num_scored"].get<double>() == n);
  return rewards;
}

TEST_CASE("best_of_n scored by a score_head reward model returns its rewards' argmax") {
  ServerProcess& s = RewardServer();
  INFO(s.log());
  REQUIRE(s.ok());
  CHECK(s.log().find("reward model 'rm' (score_head)") != std::string::npos);
  const HttpResponse r = Post(s.port(), "/v1/completions", BestOfN("rm").dump());
  INFO(r.body);
  REQUIRE(r.status == 200);
  const json body = json::parse(r.body);
  REQUIRE(body["choices"].size() == 1);
  CHECK(body["choices"][0]["finish_reason"] == "length");
  const std::vector<double> rm = CheckRewards(body["alignment"], 3);
  const int chosen = body["alignment"]["report"]["chosen_index"];
  const std::string text = body["choices"][0]["text"];
  const double expected = ClassifierScore(kPrompt, text);
  INFO("chosen text '" << text << "': reward " << rm[chosen] << ", in-process " << expected);
  CHECK(std::abs(rm[chosen] - expected) <= 1e-4);

  // The same seeded samples read by the judge (the served model): other
  // rewards, so "rm" really is another model.
  const HttpResponse j = Post(s.port(), "/v1/completions", BestOfN("judge").dump());
  REQUIRE(j.status == 200);
  const std::vector<double> judge = CheckRewards(json::parse(j.body)["alignment"], 3);
  CHECK(rm != judge);
  ExpectStillServes(s.port());
}

TEST_CASE("a request naming an unknown reward model is a 400 listing the server's models") {
  ServerProcess& s = RewardServer();
  REQUIRE(s.ok());
  const HttpResponse r = Post(s.port(), "/v1/completions", BestOfN("nope").dump());
  INFO(r.body);
  CHECK(r.status == 400);
  const json error = ErrorOf(r);
  CHECK(error["type"] == "invalid_request_error");
  CHECK(error["param"] == "alignment");
  const std::string message = error["message"];
  CHECK(message.find("'nope'") != std::string::npos);
  CHECK(message.find("judge, rm") != std::string::npos);
  ExpectStillServes(s.port());
}

TEST_CASE("an unknown --default-reward-model stops serve at start naming the flag") {
  ServerProcess s({"--model", "default", "--grpc-port", "-1", "--reward-model", kRewardFlag,
                   "--default-reward-model", "nope"},
                  60);
  CHECK(!s.ok());
  CHECK(s.Stop(SIGTERM, 20) == 2);  // a flag error: usage
  CHECK(s.log().find("--default-reward-model") != std::string::npos);
  CHECK(s.log().find("'nope'") != std::string::npos);
}

}  // namespace
}  // namespace alignserve
