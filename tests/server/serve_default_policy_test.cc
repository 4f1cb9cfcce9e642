// `alignserve serve --default-policy` end to end: with best_of_n n=2 as the
// default, a plain completion or chat request returns the alignment
// extension with both judge rewards; "alignment": {"policy": "none"} opts
// out (no extension, n samples allowed); n=2 without the opt-out is a 400
// naming n. A bad --default-policy or --default-policy-params stops serve
// before it listens, with exit code 2 and a message naming the flag.
#include <signal.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

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

ServerProcess& DefaultBestOfN() {
  static ServerProcess* server =
      new ServerProcess({"--model", "default", "--grpc-port", "-1", "--default-policy", "best_of_n",
                         "--default-policy-params", R"({"n": 2})"});
  return *server;
}

json Plain() {
  return {{"model", "default"},
          {"prompt", "Give one tip for staying healthy:"},
          {"max_tokens", 6},
          {"temperature", 0.8},
          {"seed", 5}};
}

void CheckDefaultReport(const json& body) {
  INFO(body.dump());
  REQUIRE(body.contains("alignment"));
  CHECK(body["alignment"]["policy"] == "best_of_n");
  const json& report = body["alignment"]["report"];
  CHECK(report["reward_0"].is_number());
  CHECK(report["reward_1"].is_number());
  CHECK_FALSE(report.contains("reward_2"));
  CHECK(report["num_sequences"] == 2);
  CHECK(report["num_scored"] == 2);
  CHECK(report["chosen_reward"] == report["reward_" + report["chosen_index"].dump()]);
  REQUIRE(body["choices"].size() == 1);
}

TEST_CASE("a plain request gets the default policy and its alignment extension") {
  ServerProcess& s = DefaultBestOfN();
  INFO(s.log());
  REQUIRE(s.ok());
  const HttpResponse r = Post(s.port(), "/v1/completions", Plain().dump());
  INFO(r.body);
  REQUIRE(r.status == 200);
  CheckDefaultReport(json::parse(r.body));

  const json chat = {{"model", "default"},
                     {"messages", {{{"role", "user"}, {"content", "Say hello."}}}},
                     {"max_tokens", 4}};
  const HttpResponse c = Post(s.port(), "/v1/chat/completions", chat.dump());
  INFO(c.body);
  REQUIRE(c.status == 200);
  CheckDefaultReport(json::parse(c.body));
}

TEST_CASE("policy none opts out of the default policy") {
  ServerProcess& s = DefaultBestOfN();
  REQUIRE(s.ok());
  json none = Plain();
  none["alignment"] = {{"policy", "none"}};
  const HttpResponse r = Post(s.port(), "/v1/completions", none.dump());
  INFO(r.body);
  REQUIRE(r.status == 200);
  CHECK_FALSE(json::parse(r.body).contains("alignment"));

  none["n"] = 2;  // plain sampling takes n again
  const HttpResponse two = Post(s.port(), "/v1/completions", none.dump());
  INFO(two.body);
  REQUIRE(two.status == 200);
  CHECK(json::parse(two.body)["choices"].size() == 2);

  json n2 = Plain();
  n2["n"] = 2;
  const HttpResponse refused = Post(s.port(), "/v1/completions", n2.dump());
  CHECK(refused.status == 400);
  const json error = ErrorOf(refused);
  CHECK(error["param"] == "n");
  CHECK(error["message"].get<std::string>().find("\"none\"") != std::string::npos);
  ExpectStillServes(s.port());  // the shared check sends no alignment: it gets the default
}

TEST_CASE("a bad --default-policy or its params stops serve at start naming the flag") {
  struct Case {
    std::vector<std::string> flags;
    const char* in_message;
  };
  const Case cases[] = {
      {{"--default-policy", "best_of_nn"}, "unknown alignment policy"},
      {{"--default-policy", "best_of_n", "--default-policy-params", R"({"n": 1000})"}, "'n'"},
      {{"--default-policy", "best_of_n", "--default-policy-params", "{n: 2}"}, "JSON object"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"--model", "default", "--grpc-port", "-1"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    ServerProcess s(args, 60);
    INFO(s.log());
    CHECK(!s.ok());
    CHECK(s.Stop(SIGTERM, 20) == 2);
    CHECK(s.log().find("--default-policy") != std::string::npos);
    CHECK(s.log().find(c.in_message) != std::string::npos);
    CHECK(s.log().find("listening") == std::string::npos);  // before anything starts
  }
}

}  // namespace
}  // namespace alignserve
