// `alignserve serve` end to end with the `policy` extension (issue 5,
// ROBUSTNESS.md 13): best_of_n scored by the served model as judge returns
// the argmax-reward sample and its report; self_consistency reports its
// samples; a streamed policy request sends the chosen completion and the
// report at the end; bad policies are 400s with param "policy" and the
// server still serves; KV usage returns to idle afterwards; --judge-rubric
// changes what the judge reads, and a bad rubric file stops serve at start.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/server/http_test_client.h"
#include "tests/server/serve_test_util.h"
#include "tests/server/server_process.h"

namespace alignserve {
namespace {

using nlohmann::json;
using testing::ErrorOf;
using testing::ExpectStillServes;
using testing::Get;
using testing::HttpResponse;
using testing::Post;
using testing::ServerProcess;
using testing::SseData;

// The example plugin (examples/policy_plugins) is served as "ban_token".
ServerProcess& SharedServer() {
  static ServerProcess* server =
      new ServerProcess({"--model", "default", "--grpc-port", "-1", "--policy-plugin",
                         std::string("ban_token=") + ALIGNSERVE_EXAMPLE_POLICY_PLUGIN});
  return *server;
}

const std::string kKvUsage = "alignserve:kv_cache_usage_perc{model_name=\"default\"}";

double Metric(uint16_t port, const std::string& series) {
  const std::string metrics = Get(port, "/metrics").body;
  const size_t at = metrics.find("\n" + series + " ");
  REQUIRE(at != std::string::npos);
  return std::stod(metrics.substr(at + series.size() + 2));
}

json BestOfN(bool stream) {
  return {{"model", "default"},
          {"prompt", "Give one tip for staying healthy:"},
          {"max_tokens", 8},
          {"temperature", 0.8},
          {"seed", 1},
          {"stream", stream},
          {"policy", {{"name", "best_of_n"}, {"params", {{"n", 3}}}}}};
}

// The report's rewards reward_0..reward_{n-1} as numbers; chosen_index is
// their argmax (lowest index on ties).
void CheckBestOfNReport(const json& alignment, int n) {
  REQUIRE(alignment.is_object());
  CHECK(alignment["policy"] == "best_of_n");
  const json& report = alignment["report"];
  REQUIRE(report.is_object());
  int argmax = -1;
  double best = 0;
  for (int i = 0; i < n; ++i) {
    const std::string key = "reward_" + std::to_string(i);
    INFO(report.dump());
    REQUIRE(report.contains(key));
    REQUIRE(report[key].is_number());  // every sample was scored by the judge
    const double r = report[key].get<double>();
    if (argmax < 0 || r > best) {
      argmax = i;
      best = r;
    }
  }
  CHECK_FALSE(report.contains("reward_" + std::to_string(n)));
  REQUIRE(report.contains("chosen_index"));
  CHECK(report["chosen_index"].is_number_integer());
  CHECK(report["chosen_index"].get<double>() == argmax);
  CHECK(report["num_sequences"].get<double>() == n);
  CHECK(report["num_scored"].get<double>() == n);
}

TEST_CASE("best_of_n returns one choice and the judge's rewards with their argmax") {
  ServerProcess& s = SharedServer();
  REQUIRE(s.ok());
  const HttpResponse r = Post(s.port(), "/v1/completions", BestOfN(false).dump());
  INFO(r.body);
  REQUIRE(r.status == 200);
  const json body = json::parse(r.body);
  REQUIRE(body["choices"].size() == 1);
  CHECK(body["choices"][0]["index"] == 0);
  CHECK_FALSE(body["choices"][0]["text"].get<std::string>().empty());
  CHECK(body["choices"][0]["finish_reason"] == "length");
  CHECK(body["usage"]["completion_tokens"] == 8);
  CheckBestOfNReport(body["alignment"], 3);
}

TEST_CASE("a seeded best_of_n request is reproducible") {
  ServerProcess& s = SharedServer();
  REQUIRE(s.ok());
  const HttpResponse a = Post(s.port(), "/v1/completions", BestOfN(false).dump());
  const HttpResponse b = Post(s.port(), "/v1/completions", BestOfN(false).dump());
  REQUIRE(a.status == 200);
  REQUIRE(b.status == 200);
  const json ja = json::parse(a.body), jb = json::parse(b.body);
  CHECK(ja["choices"][0]["text"] == jb["choices"][0]["text"]);
  CHECK(ja["alignment"]["report"]["chosen_index"] == jb["alignment"]["report"]["chosen_index"]);
}

TEST_CASE("a streamed best_of_n request sends the chosen completion and the report at the end") {
  ServerProcess& s = SharedServer();
  REQUIRE(s.ok());
  const HttpResponse r = Post(s.port(), "/v1/completions", BestOfN(true).dump());
  INFO(r.body);
  REQUIRE(r.status == 200);
  const std::vector<std::string> data = SseData(r.body);
  REQUIRE(data.size() >= 2);
  CHECK(data.back() == "[DONE]");
  std::string text;
  int with_alignment = 0;
  for (size_t i = 0; i + 1 < data.size(); ++i) {
    const json chunk = json::parse(data[i]);
    REQUIRE(chunk["choices"].size() == 1);
    text += chunk["choices"][0]["text"].get<std::string>();
    if (chunk.contains("alignment")) {
      ++with_alignment;
      CHECK(chunk["choices"][0]["finish_reason"] == "length");
      CheckBestOfNReport(chunk["alignment"], 3);
    }
  }
  CHECK(with_alignment == 1);
  // The same seeded request answers the same text whole or streamed.
  const HttpResponse whole = Post(s.port(), "/v1/completions", BestOfN(false).dump());
  REQUIRE(whole.status == 200);
  CHECK(json::parse(whole.body)["choices"][0]["text"] == text);
}

TEST_CASE("self_consistency on chat reports the samples it used") {
  ServerProcess& s = SharedServer();
  REQUIRE(s.ok());
  const json request = {
      {"model", "default"},
      {"messages", {{{"role", "user"}, {"content", "What is 2 + 3? Answer with a number."}}}},
      {"max_tokens", 6},
      {"temperature", 0.7},
      {"seed", 3},
      {"policy", {{"name", "self_consistency"}, {"params", {{"n", 3}, {"window", 2}}}}}};
  const HttpResponse r = Post(s.port(), "/v1/chat/completions", request.dump());
  INFO(r.body);
  REQUIRE(r.status == 200);
  const json body = json::parse(r.body);
  REQUIRE(body["choices"].size() == 1);
  CHECK(body["choices"][0]["message"]["role"] == "assistant");
  const json& alignment = body["alignment"];
  CHECK(alignment["policy"] == "self_consistency");
  REQUIRE(alignment["report"].contains("samples_used"));
  const double used = alignment["report"]["samples_used"].get<double>();
  CHECK(used >= 1);
  CHECK(used <= 3);
}

TEST_CASE("a plain request has no alignment object") {
  ServerProcess& s = SharedServer();
  REQUIRE(s.ok());
  const HttpResponse r = Post(s.port(), "/v1/completions", testing::kGreedy);
  REQUIRE(r.status == 200);
  CHECK_FALSE(json::parse(r.body).contains("alignment"));
}

TEST_CASE("bad policies are 400s with param policy, and the server still serves") {
  ServerProcess& s = SharedServer();
  REQUIRE(s.ok());
  struct Case {
    const char* what;
    json policy;
    const char* in_message;
  };
  const Case cases[] = {
      {"unknown name", "no_such_policy", "unknown alignment policy"},
      {"unknown param", {{"name", "best_of_n"}, {"params", {{"beams", 2}}}}, "unknown parameter"},
      {"n out of range", {{"name", "best_of_n"}, {"params", {{"n", 1000}}}}, "'n'"},
      {"lambda negative", {{"name", "soft_best_of_n"}, {"params", {{"lambda", -1}}}}, "'lambda'"},
      {"n of the wrong type", {{"name", "best_of_n"}, {"params", {{"n", "3"}}}}, "'n'"},
      {"beam_width not dividing n",
       {{"name", "prm_beam_search"}, {"params", {{"n", 6}, {"beam_width", 4}}}},
       "'beam_width'"},
      {"wrong field type", 7, "policy"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    json request = {
        {"model", "default"}, {"prompt", "Hi"}, {"max_tokens", 2}, {"policy", c.policy}};
    const HttpResponse r = Post(s.port(), "/v1/completions", request.dump());
    INFO(r.body);
    CHECK(r.status == 400);
    const json error = ErrorOf(r);
    CHECK(error["param"] == "policy");
    CHECK(error["type"] == "invalid_request_error");
    CHECK(error["message"].get<std::string>().find(c.in_message) != std::string::npos);
  }
  json chat = {{"model", "default"},
               {"messages", {{{"role", "user"}, {"content", "Hi"}}}},
               {"policy", {{"name", "deepconf"}, {"params", {{"percentile", 100}}}}}};
  const HttpResponse r = Post(s.port(), "/v1/chat/completions", chat.dump());
  CHECK(r.status == 400);
  CHECK(ErrorOf(r)["param"] == "policy");
  json n2 = {{"prompt", "Hi"}, {"n", 2}, {"policy", "best_of_n"}};
  const HttpResponse rn = Post(s.port(), "/v1/completions", n2.dump());
  CHECK(rn.status == 400);
  CHECK(ErrorOf(rn)["param"] == "n");
  ExpectStillServes(s.port());
}

TEST_CASE("KV usage returns to idle after policy requests") {
  ServerProcess& s = SharedServer();
  REQUIRE(s.ok());
  REQUIRE(Post(s.port(), "/v1/completions", BestOfN(false).dump()).status == 200);
  double usage = 1.0;
  for (int i = 0; i < 40 && usage > 0.0; ++i) {
    usage = Metric(s.port(), kKvUsage);
    if (usage > 0.0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(usage == 0.0);
  ExpectStillServes(s.port());
}

TEST_CASE("--judge-rubric scores with the given template") {
  ServerProcess& plain = SharedServer();
  REQUIRE(plain.ok());
  const std::string path = "/tmp/alignserve_rubric_" + std::to_string(getpid()) + ".txt";
  std::ofstream(path) << "Text: {response}\nIs this text written in French? Answer:";
  ServerProcess s({"--model", "default", "--grpc-port", "-1", "--judge-rubric", path});
  INFO(s.log());
  REQUIRE(s.ok());
  const HttpResponse custom = Post(s.port(), "/v1/completions", BestOfN(false).dump());
  const HttpResponse standard = Post(plain.port(), "/v1/completions", BestOfN(false).dump());
  REQUIRE(custom.status == 200);
  REQUIRE(standard.status == 200);
  const json a = json::parse(custom.body)["alignment"], b = json::parse(standard.body)["alignment"];
  CheckBestOfNReport(a, 3);
  // The same seeded samples, read through another rubric: other rewards.
  CHECK(a["report"]["reward_0"] != b["report"]["reward_0"]);
  std::remove(path.c_str());
}

TEST_CASE("an unreadable --judge-rubric file stops serve at start naming the flag") {
  ServerProcess s({"--model", "default", "--grpc-port", "-1", "--judge-rubric",
                   "/nonexistent/alignserve_rubric.txt"},
                  60);
  CHECK(!s.ok());
  CHECK(s.Stop(SIGTERM, 20) == 1);
  CHECK(s.log().find("--judge-rubric") != std::string::npos);
  CHECK(s.log().find("loaded") == std::string::npos);  // before the model loads
}

TEST_CASE("the alignment object serves built-in and plugin policies") {
  ServerProcess& server = SharedServer();
  json body = BestOfN(false);
  body.erase("policy");
  body["alignment"] = {{"policy", "best_of_n"}, {"params", {{"n", 3}}}, {"reward_model", "judge"}};
  const HttpResponse r = Post(server.port(), "/v1/completions", body.dump());
  INFO(r.body);
  REQUIRE(r.status == 200);
  CheckBestOfNReport(json::parse(r.body)["alignment"], 3);

  // Plugin: the greedy text of a plain request, then the same request with
  // its first generated token banned: that token never appears.
  json plain = {{"model", "default"},
                {"prompt", "The capital of France is"},
                {"max_tokens", 6},
                {"temperature", 0},
                {"logprobs", 1}};
  const HttpResponse p = Post(server.port(), "/v1/completions", plain.dump());
  REQUIRE(p.status == 200);
  const json plain_json = json::parse(p.body);
  const std::string first = plain_json["choices"][0]["logprobs"]["tokens"][0];
  const HttpResponse ids =
      Post(server.port(), "/tokenize", json{{"model", "default"}, {"prompt", first}}.dump());
  REQUIRE(ids.status == 200);
  const json tokens = json::parse(ids.body)["tokens"];
  REQUIRE(tokens.size() == 1);
  json banned = plain;
  banned["alignment"] = {{"policy", "ban_token"}, {"params", {{"token", tokens[0]}}}};
  const HttpResponse b = Post(server.port(), "/v1/completions", banned.dump());
  INFO(b.body);
  REQUIRE(b.status == 200);
  const json banned_json = json::parse(b.body);
  CHECK(banned_json["alignment"]["policy"] == "ban_token");
  CHECK(banned_json["alignment"]["report"]["masked"].get<double>() >= 1);
  for (const json& t : banned_json["choices"][0]["logprobs"]["tokens"]) CHECK(t != first);

  // The plugin's own parameter check is a 400 naming the field.
  json bad = banned;
  bad["alignment"]["params"] = {{"n", 2}};
  const HttpResponse e = Post(server.port(), "/v1/completions", bad.dump());
  CHECK(e.status == 400);
  CHECK(ErrorOf(e)["param"] == "alignment");
  ExpectStillServes(server.port());
}

}  // namespace
}  // namespace alignserve
