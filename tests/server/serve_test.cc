// `alignserve serve` end to end: the real binary on loopback with the default
// model, driven by a raw HTTP client. Each ROBUSTNESS.md item of "Request
// bodies", "Access" and the load-and-fault items that need no GPU gets its
// status code and error body checked, followed by a valid request that must
// still succeed.
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
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
using testing::kGreedy;
using testing::Post;
using testing::ServerProcess;

ServerProcess& SharedServer() {
  static ServerProcess* server = new ServerProcess({"--model", "default"});
  return *server;
}

TEST_CASE("serve answers completions, chat, models, tokenize and detokenize") {
  ServerProcess& s = SharedServer();
  INFO(s.log());
  REQUIRE(s.ok());
  CHECK(Get(s.port(), "/ready").status == 200);
  CHECK(Get(s.port(), "/health").status == 200);
  const json models = json::parse(Get(s.port(), "/v1/models").body);
  CHECK(models["data"][0]["id"] == "default");
  CHECK(json::parse(Get(s.port(), "/v1/models/default").body)["id"] == "default");
  const HttpResponse missing = Get(s.port(), "/v1/models/other");
  CHECK(missing.status == 404);
  CHECK(ErrorOf(missing)["code"] == "model_not_found");

  const HttpResponse r = Post(s.port(), "/v1/completions", kGreedy);
  REQUIRE(r.status == 200);
  const json c = json::parse(r.body);
  CHECK(c["object"] == "text_completion");
  CHECK(c["choices"][0]["text"].get<std::string>().find("Paris") != std::string::npos);
  CHECK(c["usage"]["completion_tokens"] == 6);
  CHECK(c["usage"]["total_tokens"] ==
        c["usage"]["prompt_tokens"].get<int>() + c["usage"]["completion_tokens"].get<int>());

  // The same request streamed: the chunks add up to the same text.
  json streamed_request = json::parse(kGreedy);
  streamed_request["stream"] = true;
  const HttpResponse sr = Post(s.port(), "/v1/completions", streamed_request.dump());
  REQUIRE(sr.status == 200);
  CHECK(sr.headers.at("content-type") == "text/event-stream");
  std::string text;
  size_t pos = 0;
  bool done = false;
  while ((pos = sr.body.find("data: ", pos)) != std::string::npos) {
    const size_t end = sr.body.find("\n\n", pos);
    const std::string data = sr.body.substr(pos + 6, end - pos - 6);
    pos = end;
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    text += json::parse(data)["choices"][0]["text"].get<std::string>();
  }
  CHECK(done);
  CHECK(text == c["choices"][0]["text"].get<std::string>());

  // echo + logprobs: the prompt's tokens first, the first without a logprob.
  const json echoed =
      json::parse(Post(s.port(), "/v1/completions",
                       R"({"model":"default","prompt":"The capital of France","max_tokens":2,)"
                       R"("temperature":0,"echo":true,"logprobs":1})")
                      .body);
  const json& lp = echoed["choices"][0]["logprobs"];
  CHECK(lp["tokens"].size() == echoed["usage"]["total_tokens"].get<size_t>());
  CHECK(lp["token_logprobs"][0].is_null());
  CHECK(lp["token_logprobs"][1].get<double>() < 0.0);
  CHECK(echoed["choices"][0]["text"].get<std::string>().rfind("The capital of France", 0) == 0);

  const HttpResponse chat = Post(
      s.port(), "/v1/chat/completions",
      R"({"model":"default","messages":[{"role":"user","content":"What is the capital of France?"}],"max_tokens":12,"temperature":0})");
  REQUIRE(chat.status == 200);
  const json cj = json::parse(chat.body);
  CHECK(cj["object"] == "chat.completion");
  CHECK(cj["choices"][0]["message"]["role"] == "assistant");
  CHECK(cj["choices"][0]["message"]["content"].get<std::string>().find("Paris") !=
        std::string::npos);

  const json ids = json::parse(Post(s.port(), "/tokenize", R"({"prompt":"Hello world"})").body);
  CHECK(ids["count"] == ids["tokens"].size());
  const json back =
      json::parse(Post(s.port(), "/detokenize", json{{"tokens", ids["tokens"]}}.dump()).body);
  CHECK(back["prompt"].get<std::string>().find("Hello world") != std::string::npos);
}

TEST_CASE("bad request bodies get 400 in OpenAI's error shape and lose nothing") {
  ServerProcess& s = SharedServer();
  REQUIRE(s.ok());
  struct Case {
    const char* what;
    std::string body;
    int status;
    const char* param;  // "" for none
  };
  const Case cases[] = {
      {"not JSON", "{not json", 400, ""},
      {"not an object", "[1,2]", 400, ""},
      {"wrong type", R"({"model":"default","prompt":"x","max_tokens":"ten"})", 400, "max_tokens"},
      {"empty prompt", R"({"model":"default","prompt":""})", 400, "prompt"},
      {"empty token list", R"({"model":"default","prompt":[]})", 400, "prompt"},
      {"empty messages", R"({"model":"default","messages":[]})", 400, "messages"},
      {"max_tokens 0", R"({"model":"default","prompt":"x","max_tokens":0})", 400, "max_tokens"},
      {"n over the cap", R"({"model":"default","prompt":"x","n":100})", 400, "n"},
      {"negative logprobs", R"({"model":"default","prompt":"x","logprobs":-1})", 400, "logprobs"},
      {"temperature out of range", R"({"model":"default","prompt":"x","temperature":-1})", 400,
       "temperature"},
      {"top_p out of range", R"({"model":"default","prompt":"x","top_p":1.5})", 400, "top_p"},
      {"token id out of vocabulary", R"({"model":"default","prompt":[1,2,999999]})", 400, "prompt"},
      {"negative token id", R"({"model":"default","prompt":[-3]})", 400, "prompt"},
      {"logit_bias id out of vocabulary",
       R"({"model":"default","prompt":"x","logit_bias":{"999999":1}})", 400, "logit_bias"},
      {"stop_token_ids out of vocabulary",
       R"({"model":"default","prompt":"x","stop_token_ids":[999999]})", 400, "stop_token_ids"},
      {"too many stop strings",
       R"({"model":"default","prompt":"x","stop":["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]})",
       400, "stop"},
      {"invalid UTF-8", std::string(R"({"model":"default","prompt":")") + "\xff\xfe" + R"("})", 400,
       ""},
      {"unknown model", R"({"model":"gpt-9","prompt":"x"})", 404, "model"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    const std::string path =
        c.body.find("messages") != std::string::npos ? "/v1/chat/completions" : "/v1/completions";
    const HttpResponse r = Post(s.port(), path, c.body);
    CHECK(r.status == c.status);
    const json e = ErrorOf(r);
    if (*c.param) CHECK(e["param"] == c.param);
    if (c.status == 404) CHECK(e["code"] == "model_not_found");
  }
  ExpectStillServes(s.port());
}

TEST_CASE("a prompt at the context limit is refused naming it; one token short is served") {
  ServerProcess s({"--model", "default", "--max-model-len", "64"});
  REQUIRE(s.ok());
  std::string ids = "[";
  for (int i = 0; i < 64; ++i) ids += std::string(i ? "," : "") + "1000";
  const HttpResponse too_long =
      Post(s.port(), "/v1/completions", R"({"model":"default","prompt":)" + ids + "]}");
  CHECK(too_long.status == 400);
  CHECK(ErrorOf(too_long)["message"].get<std::string>().find("64") != std::string::npos);
  ids = ids.substr(0, ids.size() - 5);  // 63 ids
  const HttpResponse fits = Post(s.port(), "/v1/completions",
                                 R"({"model":"default","max_tokens":1,"prompt":)" + ids + "]}");
  REQUIRE(fits.status == 200);
  CHECK(json::parse(fits.body)["usage"]["completion_tokens"] == 1);
  // max_tokens past the context is clamped and finishes with length.
  const HttpResponse clamped =
      Post(s.port(), "/v1/completions",
           R"({"model":"default","prompt":"Hi","max_tokens":100000,"ignore_eos":true})");
  REQUIRE(clamped.status == 200);
  CHECK(json::parse(clamped.body)["choices"][0]["finish_reason"] == "length");
}

TEST_CASE("oversized bodies, headers and malformed framing are refused") {
  ServerProcess s({"--model", "default", "--max-request-kib", "64"});
  REQUIRE(s.ok());
  const std::string huge =
      R"({"model":"default","prompt":")" + std::string(100 * 1024, 'a') + R"("})";
  CHECK(Post(s.port(), "/v1/completions", huge).status == 413);
  CHECK(Post(s.port(), "/v1/completions", kGreedy, "X-Big: " + std::string(40000, 'b') + "\r\n")
            .status == 431);
  HttpTestClient c(s.port());
  REQUIRE(c.Send("POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n"));
  CHECK(c.Read().status == 400);
  ExpectStillServes(s.port());
}

TEST_CASE("with an API key, /v1 routes need it and path tricks do not bypass it") {
  ServerProcess s({"--model", "default", "--api-key", "sekret-key"});
  REQUIRE(s.ok());
  const std::string good = "Authorization: Bearer sekret-key\r\n";
  for (const std::string& headers :
       {std::string(""), std::string("Authorization: Bearer wrong\r\n"),
        std::string("Authorization: Bearer sekret-ke\r\n"),
        std::string("Authorization: Bearer sekret-key-and-more\r\n")}) {
    INFO(headers);
    const HttpResponse r = Post(s.port(), "/v1/completions", kGreedy, headers);
    CHECK(r.status == 401);
    CHECK(ErrorOf(r)["type"] == "authentication_error");
  }
  for (const char* path :
       {"//v1/completions", "/v1//completions", "/v1/%63ompletions", "/x/../v1/completions"}) {
    INFO(path);
    CHECK(Post(s.port(), path, kGreedy).status >= 400);
    CHECK(Post(s.port(), path, kGreedy).status != 200);
  }
  CHECK(Get(s.port(), "/health").status == 200);
  CHECK(Get(s.port(), "/metrics").status == 200);
  const HttpResponse ok = Post(s.port(), "/v1/completions", kGreedy, good);
  CHECK(ok.status == 200);
}

// Reads kv_cache_usage_perc from /metrics.
double KvUsage(uint16_t port) {
  const std::string metrics = Get(port, "/metrics").body;
  const std::string key = "alignserve:kv_cache_usage_perc{model_name=\"default\"} ";
  const size_t at = metrics.find(key);
  REQUIRE(at != std::string::npos);
  return std::stod(metrics.substr(at + key.size()));
}

TEST_CASE("a client that disconnects mid-stream frees its KV blocks") {
  ServerProcess& s = SharedServer();
  REQUIRE(s.ok());
  CHECK(KvUsage(s.port()) == 0.0);
  {
    HttpTestClient c(s.port());
    REQUIRE(c.Request("POST", "/v1/completions",
                      R"({"model":"default","prompt":"Tell me a long story","max_tokens":2000,)"
                      R"("ignore_eos":true,"stream":true})"));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    CHECK(KvUsage(s.port()) > 0.0);
  }                    // the client goes away mid-stream
  double usage = 1.0;  // freed within a step of noticing the disconnect; 5 s on a loaded machine
  for (int i = 0; i < 100 && usage > 0.0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    usage = KvUsage(s.port());
  }
  CHECK(usage == 0.0);
  ExpectStillServes(s.port());
}

TEST_CASE("over the queue cap a request gets 429 with Retry-After, never an empty 200") {
  ServerProcess s({"--model", "default", "--max-queued-requests", "1"});
  REQUIRE(s.ok());
  HttpTestClient busy(s.port());
  REQUIRE(
      busy.Request("POST", "/v1/completions",
                   R"({"model":"default","prompt":"Go on","max_tokens":400,"ignore_eos":true})"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const HttpResponse r = Post(s.port(), "/v1/completions", kGreedy);
  CHECK(r.status == 429);
  CHECK(r.headers.count("retry-after") == 1);
  CHECK(ErrorOf(r)["type"] == "rate_limit_error");
  CHECK(busy.Read().status == 200);
  ExpectStillServes(s.port());
}

TEST_CASE("SIGTERM lets the request in flight finish, then the server exits 0") {
  ServerProcess s({"--model", "default", "--shutdown-timeout", "20"});
  REQUIRE(s.ok());
  HttpTestClient c(s.port());
  REQUIRE(c.Request("POST", "/v1/completions",
                    R"({"model":"default","prompt":"Count","max_tokens":64,"ignore_eos":true})"));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::thread stopper([&s] { CHECK(s.Stop(SIGTERM, 30) == 0); });
  const HttpResponse r = c.Read();
  stopper.join();
  REQUIRE(r.status == 200);
  const json body = json::parse(r.body);
  CHECK(body["usage"]["completion_tokens"] == 64);
  CHECK(body["choices"][0]["finish_reason"] == "length");
  CHECK(s.log().find("draining") != std::string::npos);
}

TEST_CASE("metrics count finished requests by reason") {
  ServerProcess& s = SharedServer();
  REQUIRE(s.ok());
  auto successes = [&s] {
    const std::string m = Get(s.port(), "/metrics").body;
    const std::string key =
        "alignserve:request_success_total{model_name=\"default\",finished_reason=\"length\"} ";
    const size_t at = m.find(key);
    REQUIRE(at != std::string::npos);
    return std::stod(m.substr(at + key.size()));
  };
  const double before = successes();
  ExpectStillServes(s.port());
  CHECK(successes() == before + 1);
}

TEST_CASE("CORS: only configured origins are echoed, preflight included") {
  ServerProcess s({"--model", "default", "--allowed-origins", "https://good.example"});
  REQUIRE(s.ok());
  const HttpResponse good =
      Post(s.port(), "/v1/completions", kGreedy, "Origin: https://good.example\r\n");
  REQUIRE(good.status == 200);
  CHECK(good.headers.at("access-control-allow-origin") == "https://good.example");
  const HttpResponse evil =
      Post(s.port(), "/v1/completions", kGreedy, "Origin: https://evil.example\r\n");
  CHECK(evil.status == 200);
  CHECK(evil.headers.count("access-control-allow-origin") == 0);
  HttpTestClient preflight(s.port());
  REQUIRE(preflight.Request("OPTIONS", "/v1/chat/completions", "",
                            "Origin: https://good.example\r\n"
                            "Access-Control-Request-Method: POST\r\n"));
  const HttpResponse allowed = preflight.Read();
  CHECK(allowed.status == 204);
  CHECK(allowed.headers.at("access-control-allow-origin") == "https://good.example");
  CHECK(allowed.headers.at("access-control-allow-methods").find("POST") != std::string::npos);
  HttpTestClient refused(s.port());
  REQUIRE(
      refused.Request("OPTIONS", "/v1/chat/completions", "", "Origin: https://evil.example\r\n"));
  const HttpResponse denied = refused.Read();
  CHECK(denied.status == 403);
  CHECK(denied.headers.count("access-control-allow-origin") == 0);
  // Streamed answers carry the header too.
  json streamed = json::parse(kGreedy);
  streamed["stream"] = true;
  const HttpResponse sse =
      Post(s.port(), "/v1/completions", streamed.dump(), "Origin: https://good.example\r\n");
  CHECK(sse.status == 200);
  CHECK(sse.headers.at("access-control-allow-origin") == "https://good.example");
}

}  // namespace
}  // namespace alignserve
