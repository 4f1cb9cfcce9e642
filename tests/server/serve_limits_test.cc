// `alignserve serve` end to end, the ROBUSTNESS.md items serve_test.cc does
// not reach: sampling caps and ranges (6, 7), skip_special_tokens' type,
// stop strings (9), output cut inside a UTF-8 character (2), binding to
// loopback (15), a non-streaming client that disconnects (17), KV cache
// pressure and a prompt that can never fit (19), and SIGTERM's drain: 503
// for new requests, timeout 0 aborts (23). Each checks the status code, the
// error body, and that a valid request right after still succeeds.
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <sstream>
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
using testing::HttpTestClient;
using testing::Post;
using testing::ServerProcess;
using Clock = std::chrono::steady_clock;

ServerProcess& SharedServer() {
  static ServerProcess* server = new ServerProcess({"--model", "default", "--grpc-port", "-1"});
  return *server;
}

// A metric's value from /metrics (the first series whose line starts so).
double Metric(uint16_t port, const std::string& series) {
  const std::string metrics = Get(port, "/metrics").body;
  const size_t at = metrics.find("\n" + series + " ");
  REQUIRE(at != std::string::npos);
  return std::stod(metrics.substr(at + series.size() + 2));
}

const std::string kKvUsage = "alignserve:kv_cache_usage_perc{model_name=\"default\"}";

TEST_CASE("sampling fields past their caps or ranges are 400s naming the field") {
  ServerProcess& s = SharedServer();
  REQUIRE(s.ok());
  struct Case {
    const char* what;
    std::string body;
    const char* param;  // "" for none (the body is not valid JSON)
  };
  const Case cases[] = {
      {"best_of over n", R"({"prompt":"x","best_of":100})", "best_of"},
      {"negative n", R"({"prompt":"x","n":-1})", "n"},
      {"top_logprobs over the cap",
       R"({"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":50})",
       "top_logprobs"},
      {"logprobs over the cap", R"({"prompt":"x","logprobs":50})", "logprobs"},
      {"negative top_k", R"({"prompt":"x","top_k":-5})", "top_k"},
      {"min_p above 1", R"({"prompt":"x","min_p":2})", "min_p"},
      {"presence_penalty above 2", R"({"prompt":"x","presence_penalty":3})", "presence_penalty"},
      {"frequency_penalty below -2", R"({"prompt":"x","frequency_penalty":-2.5})",
       "frequency_penalty"},
      {"repetition_penalty 0", R"({"prompt":"x","repetition_penalty":0})", "repetition_penalty"},
      {"top_p 0", R"({"prompt":"x","top_p":0})", "top_p"},
      {"temperature overflowing to Inf", R"({"prompt":"x","temperature":1e999})", ""},
      {"skip_special_tokens not a boolean", R"({"prompt":"x","skip_special_tokens":"yes"})",
       "skip_special_tokens"},
      {"a stop string over 256 bytes",
       R"({"prompt":"x","stop":[")" + std::string(600, 'a') + R"("]})", "stop"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    const std::string path =
        c.body.find("messages") != std::string::npos ? "/v1/chat/completions" : "/v1/completions";
    const HttpResponse r = Post(s.port(), path, c.body);
    CHECK(r.status == 400);
    const json e = ErrorOf(r);
    CHECK(e["type"] == "invalid_request_error");
    if (*c.param) CHECK(e["param"] == c.param);
  }
  // Booleans are accepted either way.
  for (const char* value : {"true", "false"}) {
    const HttpResponse r =
        Post(s.port(), "/v1/completions",
             std::string(R"({"prompt":"Hi","max_tokens":2,"skip_special_tokens":)") + value + "}");
    CHECK(r.status == 200);
  }
  ExpectStillServes(s.port());
}

TEST_CASE("a stop string hit by the very first token, with logprobs on, is a 200") {
  ServerProcess& s = SharedServer();
  REQUIRE(s.ok());
  // Greedy "The capital of France is" starts with " Paris".
  const HttpResponse r = Post(s.port(), "/v1/completions",
                              R"({"prompt":"The capital of France is","max_tokens":5,)"
                              R"("temperature":0,"stop":[" Paris"],"logprobs":2})");
  REQUIRE(r.status == 200);
  const json body = json::parse(r.body);
  CHECK(body["choices"][0]["text"] == "");
  CHECK(body["choices"][0]["finish_reason"] == "stop");
  CHECK(body["usage"]["completion_tokens"] == 1);
  ExpectStillServes(s.port());
}

TEST_CASE("output cut inside a UTF-8 character is U+FFFD in valid JSON, streamed or not") {
  ServerProcess& s = SharedServer();
  REQUIRE(s.ok());
  // U+1F389 tokenizes as three byte-level tokens; forcing the first one
  // with max_tokens 1 ends the output inside the character.
  const json ids = json::parse(Post(s.port(), "/tokenize", R"({"prompt":"🎉"})").body)["tokens"];
  REQUIRE(ids.size() >= 2);
  const std::string bias = "{\"" + std::to_string(ids[0].get<int>()) + "\":100}";
  const std::string replacement = "\xEF\xBF\xBD";  // U+FFFD
  const HttpResponse whole =
      Post(s.port(), "/v1/completions",
           R"({"prompt":"Party time","max_tokens":1,"logprobs":1,"logit_bias":)" + bias + "}");
  REQUIRE(whole.status == 200);
  const json body = json::parse(whole.body, nullptr, false);
  REQUIRE(!body.is_discarded());
  CHECK(body["choices"][0]["text"] == replacement);
  CHECK(body["choices"][0]["logprobs"]["tokens"][0] == replacement);

  const HttpResponse streamed =
      Post(s.port(), "/v1/completions",
           R"({"prompt":"Party time","max_tokens":1,"stream":true,"logit_bias":)" + bias + "}");
  REQUIRE(streamed.status == 200);
  std::string text;
  for (const std::string& data : testing::SseData(streamed.body)) {
    if (data == "[DONE]") continue;
    const json chunk = json::parse(data, nullptr, false);
    REQUIRE(!chunk.is_discarded());
    text += chunk["choices"][0]["text"].get<std::string>();
  }
  CHECK(text == replacement);

  const HttpResponse chat =
      Post(s.port(), "/v1/chat/completions",
           R"({"messages":[{"role":"user","content":"Party"}],"max_tokens":1,"logprobs":true,)"
           R"("logit_bias":)" +
               bias + "}");
  REQUIRE(chat.status == 200);
  const json chat_body = json::parse(chat.body, nullptr, false);
  REQUIRE(!chat_body.is_discarded());
  CHECK(chat_body["choices"][0]["message"]["content"] == replacement);
  // The token's own bytes are reported exactly: the cut lead of U+1F389.
  const json bytes = chat_body["choices"][0]["logprobs"]["content"][0]["bytes"];
  REQUIRE(!bytes.empty());
  CHECK(bytes[0] == 0xF0);
  ExpectStillServes(s.port());
}

TEST_CASE("the server listens on 127.0.0.1 only by default") {
  ServerProcess& s = SharedServer();
  REQUIRE(s.ok());
  // /proc/net/tcp: "sl local_address rem_address st ..." with hex IP:port,
  // state 0A = LISTEN; 0100007F is 127.0.0.1.
  std::ifstream tcp("/proc/net/tcp");
  REQUIRE(tcp.good());
  char port_hex[8];
  std::snprintf(port_hex, sizeof(port_hex), "%04X", s.port());
  std::string line;
  std::vector<std::string> listeners;
  while (std::getline(tcp, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    if (state == "0A" && local.size() > 5 && local.substr(local.size() - 4) == port_hex) {
      listeners.push_back(local);
    }
  }
  REQUIRE(listeners.size() == 1);
  CHECK(listeners[0] == std::string("0100007F:") + port_hex);
  CHECK(s.log().find("listening on http://127.0.0.1:") != std::string::npos);
}

TEST_CASE("a non-streaming client that disconnects mid-generation frees its KV blocks") {
  ServerProcess& s = SharedServer();
  REQUIRE(s.ok());
  CHECK(Metric(s.port(), kKvUsage) == 0.0);
  {
    HttpTestClient c(s.port());
    REQUIRE(c.Request("POST", "/v1/completions",
                      R"({"prompt":"Tell me a long story","max_tokens":2000,"ignore_eos":true})"));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    CHECK(Metric(s.port(), kKvUsage) > 0.0);
  }                    // gone before any byte of the answer
  double usage = 1.0;  // freed within a step of noticing the disconnect; 5 s on a loaded machine
  for (int i = 0; i < 100 && usage > 0.0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    usage = Metric(s.port(), kKvUsage);
  }
  CHECK(usage == 0.0);
  ExpectStillServes(s.port());
}

std::string GreedyOf(uint16_t port, const std::string& prompt, int max_tokens) {
  const HttpResponse r = Post(
      port, "/v1/completions",
      json{{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}, {"ignore_eos", true}}
          .dump());
  REQUIRE(r.status == 200);
  const json body = json::parse(r.body);
  CHECK(body["usage"]["completion_tokens"] == max_tokens);
  return body["choices"][0]["text"].get<std::string>();
}

TEST_CASE("under KV pressure requests are preempted, resumed and give the same output") {
  // 8 blocks of 16 tokens: room for 128 tokens in all; four requests of
  // about 55 tokens each need twice that.
  ServerProcess s({"--model", "default", "--grpc-port", "-1", "--num-blocks", "8"});
  INFO(s.log());
  REQUIRE(s.ok());
  const std::vector<std::string> prompts = {"The capital of France is", "Once upon a time",
                                            "My favourite food is", "The best way to learn is"};
  std::vector<std::string> alone;
  for (const std::string& p : prompts) alone.push_back(GreedyOf(s.port(), p, 48));
  const std::string preemptions = "alignserve:num_preemptions_total{model_name=\"default\"}";
  const double preempted_before = Metric(s.port(), preemptions);
  std::vector<std::future<std::string>> together;
  for (const std::string& p : prompts) {
    together.push_back(
        std::async(std::launch::async, [&s, p] { return GreedyOf(s.port(), p, 48); }));
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    INFO(prompts[i]);
    CHECK(together[i].get() == alone[i]);
  }
  CHECK(Metric(s.port(), preemptions) > preempted_before);  // there was pressure

  // A prompt larger than the whole cache can never run: 400, not a 429.
  std::string ids = "[";
  for (int i = 0; i < 200; ++i) ids += std::string(i ? "," : "") + "1000";
  const HttpResponse never =
      Post(s.port(), "/v1/completions", R"({"max_tokens":2,"prompt":)" + ids + "]}");
  CHECK(never.status == 400);
  const json e = ErrorOf(never);
  CHECK(e["type"] == "invalid_request_error");
  CHECK(e["param"] == "prompt");
  CHECK(e["message"].get<std::string>().find("KV cache") != std::string::npos);
  ExpectStillServes(s.port());
}

TEST_CASE("while SIGTERM drains, new requests get 503 and the one in flight finishes") {
  ServerProcess s({"--model", "default", "--grpc-port", "-1", "--shutdown-timeout", "20"});
  REQUIRE(s.ok());
  HttpTestClient keep_alive(s.port());  // connected before the drain
  REQUIRE(keep_alive.Request("GET", "/ready", ""));
  REQUIRE(keep_alive.Read().status == 200);
  HttpTestClient busy(s.port());
  // Long enough to be still in flight when the 503 is checked, 500 ms in,
  // at any decode speed this project reaches on a CPU (~4 ms a token: 4 s).
  REQUIRE(busy.Request("POST", "/v1/completions",
                       R"({"prompt":"Count","max_tokens":1000,"ignore_eos":true})"));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::future<int> exit_code = std::async(std::launch::async, [&s] { return s.Stop(SIGTERM); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  REQUIRE(keep_alive.Request("POST", "/v1/completions", testing::kGreedy));
  const HttpResponse refused = keep_alive.Read();
  CHECK(refused.status == 503);
  CHECK(ErrorOf(refused)["message"].get<std::string>().find("shutting down") != std::string::npos);
  const HttpResponse finished = busy.Read();
  REQUIRE(finished.status == 200);
  CHECK(json::parse(finished.body)["usage"]["completion_tokens"] == 1000);
  CHECK(exit_code.get() == 0);
}

TEST_CASE("SIGTERM with --shutdown-timeout 0 aborts the request in flight and exits at once") {
  ServerProcess s({"--model", "default", "--grpc-port", "-1", "--shutdown-timeout", "0"});
  REQUIRE(s.ok());
  HttpTestClient busy(s.port());
  REQUIRE(busy.Request("POST", "/v1/completions",
                       R"({"prompt":"Count","max_tokens":4000,"ignore_eos":true,"stream":true})"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto t0 = Clock::now();
  CHECK(s.Stop(SIGTERM, 30) == 0);
  CHECK(std::chrono::duration<double>(Clock::now() - t0).count() < 5.0);
  // The stream ended properly (never a hang, never a cut without [DONE]).
  const HttpResponse r = busy.Read(5000);
  REQUIRE(r.status == 200);
  const std::vector<std::string> events = testing::SseData(r.body);
  REQUIRE(!events.empty());
  CHECK(events.back() == "[DONE]");
  CHECK(events.size() < 4000);
}

}  // namespace
}  // namespace alignserve
