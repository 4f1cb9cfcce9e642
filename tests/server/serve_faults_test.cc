// `alignserve serve` under faults, end to end against the real binary:
// ROBUSTNESS.md 11 (chat-template input that would run away), 21 (an error
// inside a forward pass) and 22 (readiness while the model loads, liveness
// when the engine stops making progress). Forward-pass faults and a slow
// load come from the test-only ALIGNSERVE_FAULT_INJECT hook
// (server/fault_injecting_model.h). Each case checks the status code, the
// error body, and that a valid request right after still succeeds.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

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
using testing::ServerProcessOptions;
using Clock = std::chrono::steady_clock;

// Token ids no test prompt or greedy answer here contains (SmolLM2's
// vocabulary has 49152): a forward pass over kErrorToken fails, one over
// kStallToken sleeps 3 s first.
constexpr int kErrorToken = 40001;
constexpr int kStallToken = 40002;

std::string PromptWith(int token) {
  return json{
      {"model", "default"}, {"prompt", {1000, 2000, token}}, {"max_tokens", 4}, {"temperature", 0}}
      .dump();
}

double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Polls /health until it answers `status` (up to timeout_ms); the last answer.
HttpResponse AwaitHealth(uint16_t port, int status, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  HttpResponse r = Get(port, "/health");
  while (r.status != status && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    r = Get(port, "/health");
  }
  return r;
}

ServerProcess& FaultyServer() {
  static ServerProcess* server = new ServerProcess(
      {"--model", "default", "--liveness-timeout", "1"},
      ServerProcessOptions{.env = {{"ALIGNSERVE_FAULT_INJECT",
                                    "forward_error_on_token:" + std::to_string(kErrorToken) +
                                        ",forward_stall_on_token:" + std::to_string(kStallToken) +
                                        ",forward_stall_ms:3000"}}});
  return *server;
}

TEST_CASE("a forward-pass error is a 500 in OpenAI's shape; /health turns 503 until one succeeds") {
  ServerProcess& s = FaultyServer();
  INFO(s.log());
  REQUIRE(s.ok());
  CHECK(s.log().find("FAULT INJECTION ON") != std::string::npos);
  ExpectStillServes(s.port());
  CHECK(Get(s.port(), "/health").status == 200);

  const auto t0 = Clock::now();
  const HttpResponse failed = Post(s.port(), "/v1/completions", PromptWith(kErrorToken));
  CHECK(SecondsSince(t0) < 10.0);  // answered, not hung
  CHECK(failed.status == 500);
  const json e = ErrorOf(failed);
  CHECK(e["type"] == "server_error");
  CHECK(e["message"].get<std::string>().find("injected fault") != std::string::npos);

  const HttpResponse unhealthy = AwaitHealth(s.port(), 503, 1000);
  CHECK(unhealthy.status == 503);
  CHECK(json::parse(unhealthy.body)["reason"].get<std::string>().find("forward pass failed") !=
        std::string::npos);

  ExpectStillServes(s.port());  // the engine keeps serving
  CHECK(Get(s.port(), "/health").status == 200);
}

TEST_CASE("a forward-pass error mid-stream is an SSE error event, then [DONE]") {
  ServerProcess& s = FaultyServer();
  REQUIRE(s.ok());
  json request = json::parse(PromptWith(kErrorToken));
  request["stream"] = true;
  const HttpResponse r = Post(s.port(), "/v1/completions", request.dump());
  REQUIRE(r.status == 200);  // the status line went out before the step failed
  CHECK(r.headers.at("content-type") == "text/event-stream");
  const std::vector<std::string> events = testing::SseData(r.body);
  REQUIRE(events.size() >= 2);
  CHECK(events.back() == "[DONE]");
  const json error = json::parse(events[events.size() - 2], nullptr, false);
  REQUIRE(error.contains("error"));
  testing::CheckErrorShape(error["error"]);
  CHECK(error["error"]["type"] == "server_error");
  ExpectStillServes(s.port());
}

TEST_CASE("requests in flight when a forward pass fails end cleanly; later ones are served") {
  ServerProcess& s = FaultyServer();
  REQUIRE(s.ok());
  // A long stream is running when the poisoned request joins its batch: the
  // failed step fails both (the engine's contract), neither hangs.
  HttpTestClient long_stream(s.port());
  REQUIRE(long_stream.Request(
      "POST", "/v1/completions",
      R"({"model":"default","prompt":"Tell me a story","max_tokens":300,"ignore_eos":true,)"
      R"("temperature":0,"stream":true})"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const HttpResponse failed = Post(s.port(), "/v1/completions", PromptWith(kErrorToken));
  CHECK(failed.status == 500);
  const HttpResponse streamed = long_stream.Read(20000);
  REQUIRE(streamed.status == 200);
  const std::vector<std::string> events = testing::SseData(streamed.body);
  REQUIRE(!events.empty());
  CHECK(events.back() == "[DONE]");
  for (const std::string& data : events) {
    if (data == "[DONE]") continue;
    const json chunk = json::parse(data, nullptr, false);
    REQUIRE(!chunk.is_discarded());
    if (chunk.contains("error")) testing::CheckErrorShape(chunk["error"]);
  }
  ExpectStillServes(s.port());
}

TEST_CASE("a stalled forward pass turns /health 503; it recovers when the step ends") {
  ServerProcess& s = FaultyServer();
  REQUIRE(s.ok());
  ExpectStillServes(s.port());
  REQUIRE(Get(s.port(), "/health").status == 200);
  const auto t0 = Clock::now();
  std::future<HttpResponse> stalled = std::async(std::launch::async, [&s] {
    return Post(s.port(), "/v1/completions", PromptWith(kStallToken));
  });
  // Liveness timeout 1 s, stall 3 s: unhealthy from about 1 s in.
  const HttpResponse stuck = AwaitHealth(s.port(), 503, 2800);
  INFO(stuck.body);
  CHECK(stuck.status == 503);
  CHECK(SecondsSince(t0) >= 0.9);
  CHECK(json::parse(stuck.body)["reason"].get<std::string>().find("no progress") !=
        std::string::npos);
  const HttpResponse done = stalled.get();
  CHECK(done.status == 200);  // the stall ended and the request finished
  CHECK(json::parse(done.body)["usage"]["completion_tokens"] == 4);
  CHECK(AwaitHealth(s.port(), 200, 2000).status == 200);
  ExpectStillServes(s.port());
}

TEST_CASE("when every forward pass fails, requests get 500, /health stays 503, SIGTERM exits 0") {
  ServerProcess s(
      {"--model", "default"},
      ServerProcessOptions{.env = {{"ALIGNSERVE_FAULT_INJECT", "forward_error_every:1"}}});
  INFO(s.log());
  REQUIRE(s.ok());
  for (int i = 0; i < 3; ++i) {
    const HttpResponse r = Post(s.port(), "/v1/completions", testing::kGreedy);
    CHECK(r.status == 500);
    CHECK(ErrorOf(r)["type"] == "server_error");
    CHECK(AwaitHealth(s.port(), 503, 1000).status == 503);
  }
  CHECK(Get(s.port(), "/ready").status == 200);  // loaded; liveness is what fails
  CHECK(s.Stop(SIGTERM, 20) == 0);               // the process does not hang
}

TEST_CASE("a bad ALIGNSERVE_FAULT_INJECT stops serve at start with a message") {
  ServerProcess s({"--model", "default"},
                  ServerProcessOptions{.env = {{"ALIGNSERVE_FAULT_INJECT", "forward_boom:1"}},
                                       .timeout_s = 60});
  CHECK(!s.ok());
  CHECK(s.Stop(SIGTERM, 20) == 1);
  CHECK(s.log().find("ALIGNSERVE_FAULT_INJECT: bad entry 'forward_boom:1'") != std::string::npos);
}

TEST_CASE("/ready is 503 while the model loads and 200 after; /health is 200 throughout") {
  const auto t0 = Clock::now();
  ServerProcess s({"--model", "default"},
                  ServerProcessOptions{.env = {{"ALIGNSERVE_FAULT_INJECT", "load_delay_ms:2500"}},
                                       .wait_for_ready = false});
  INFO(s.log());
  REQUIRE(s.port() != 0);
  int loading_answers = 0;
  bool saw_generation_refused = false;
  HttpResponse ready = Get(s.port(), "/ready");
  while (ready.status == 503 && SecondsSince(t0) < 120) {
    CHECK(json::parse(ready.body)["status"] == "loading");
    ++loading_answers;
    const HttpResponse health = Get(s.port(), "/health");
    CHECK(health.status == 200);
    if (!saw_generation_refused) {
      const HttpResponse refused = Post(s.port(), "/v1/completions", testing::kGreedy);
      if (refused.status == 503) {  // the model may have finished loading meanwhile
        saw_generation_refused = true;
        CHECK(refused.headers.count("retry-after") == 1);
        CHECK(ErrorOf(refused)["message"].get<std::string>().find("loading") != std::string::npos);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ready = Get(s.port(), "/ready");
  }
  CHECK(loading_answers >= 10);  // 2.5 s of load, polled every ~50 ms
  CHECK(saw_generation_refused);
  REQUIRE(ready.status == 200);
  CHECK(json::parse(ready.body)["status"] == "ready");
  CHECK(SecondsSince(t0) >= 2.5);
  CHECK(Get(s.port(), "/health").status == 200);
  REQUIRE(s.WaitReady(60));
  ExpectStillServes(s.port());
}

// A chat template that costs (content length)^2 steps: fine for a short
// message, a runaway for a long one.
const char kQuadraticTemplate[] =
    "{%- for message in messages -%}"
    "{%- set ns = namespace(n=0) -%}"
    "{%- for a in range(message['content']|length) -%}"
    "{%- for b in range(message['content']|length) -%}{%- set ns.n = ns.n + 1 -%}{%- endfor -%}"
    "{%- endfor -%}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant\n{%- endif -%}";

std::string ChatBody(const std::string& content, int max_tokens = 4) {
  return json{{"model", "default"},
              {"messages", {{{"role", "user"}, {"content", content}}}},
              {"max_tokens", max_tokens},
              {"temperature", 0}}
      .dump();
}

TEST_CASE("chat input that makes the template run away is a 400 within its limit, no stall") {
  const std::string path = "/tmp/alignserve_runaway_" + std::to_string(getpid()) + ".jinja";
  std::ofstream(path) << kQuadraticTemplate;
  ServerProcess s({"--model", "default", "--chat-template", path});
  INFO(s.log());
  REQUIRE(s.ok());
  const HttpResponse small =
      Post(s.port(), "/v1/chat/completions", ChatBody("What is the capital of France?"));
  CHECK(small.status == 200);

  // 4000 characters: 16 M template steps against a budget of 1 M (or 1 s).
  const auto t0 = Clock::now();
  std::future<HttpResponse> runaway = std::async(std::launch::async, [&s] {
    return Post(s.port(), "/v1/chat/completions", ChatBody(std::string(4000, 'a')));
  });
  const HttpResponse other = Post(s.port(), "/v1/completions", testing::kGreedy);
  CHECK(other.status == 200);  // served while the template ran
  const HttpResponse r = runaway.get();
  CHECK(SecondsSince(t0) < 5.0);
  CHECK(r.status == 400);
  const json e = ErrorOf(r);
  CHECK(e["type"] == "invalid_request_error");
  CHECK(e["param"] == "messages");
  const std::string message = e["message"].get<std::string>();
  CHECK(message.find("chat template") != std::string::npos);
  CHECK((message.find("step") != std::string::npos || message.find("time") != std::string::npos));
  ExpectStillServes(s.port());
  CHECK(Post(s.port(), "/v1/chat/completions", ChatBody("Hi")).status == 200);
  std::remove(path.c_str());
}

TEST_CASE("a bad --chat-template file stops serve at start naming the file") {
  const std::string path = "/tmp/alignserve_bad_" + std::to_string(getpid()) + ".jinja";
  std::ofstream(path) << "{% for x in %}";
  ServerProcess s({"--model", "default", "--chat-template", path}, 60);
  CHECK(!s.ok());
  CHECK(s.Stop(SIGTERM, 20) == 1);
  CHECK(s.log().find("--chat-template " + path) != std::string::npos);
  std::remove(path.c_str());
}

TEST_CASE("chat input nested a million levels deep, or rendering past 4 MiB, is a 400") {
  ServerProcess s({"--model", "default"});
  REQUIRE(s.ok());
  const int depth = 1000000;
  const std::string nested = R"({"model":"default","messages":[{"role":"user","content":)" +
                             std::string(depth, '[') + std::string(depth, ']') + "}]}";
  const HttpResponse deep = Post(s.port(), "/v1/chat/completions", nested);
  CHECK(deep.status == 400);
  CHECK(ErrorOf(deep)["param"] == "messages");
  ExpectStillServes(s.port());

  // The model's own template: its output would pass the 4 MiB output limit.
  const auto t0 = Clock::now();
  const HttpResponse huge =
      Post(s.port(), "/v1/chat/completions", ChatBody(std::string(5 << 20, 'a')));
  CHECK(SecondsSince(t0) < 10.0);
  CHECK(huge.status == 400);
  const json e = ErrorOf(huge);
  CHECK(e["param"] == "messages");
  CHECK(e["message"].get<std::string>().find("chat template") != std::string::npos);
  ExpectStillServes(s.port());
}

}  // namespace
}  // namespace alignserve
