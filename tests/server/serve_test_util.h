// Helpers shared by the end-to-end tests of `alignserve serve` (the real
// binary on loopback, tests/server/server_process.h): one-shot GET and POST,
// OpenAI's error shape, and the "a valid request right after still
// succeeds" check every ROBUSTNESS.md test ends with.
#ifndef ALIGNSERVE_TESTS_SERVER_SERVE_TEST_UTIL_H_
#define ALIGNSERVE_TESTS_SERVER_SERVE_TEST_UTIL_H_

#include <catch2/catch.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/server/http_test_client.h"

namespace alignserve::testing {

// Greedy, six tokens: the answer names Paris.
inline const std::string kGreedy =
    R"({"model":"default","prompt":"The capital of France is","max_tokens":6,"temperature":0})";

inline HttpResponse Post(uint16_t port, const std::string& path, const std::string& body,
                         const std::string& headers = "") {
  HttpTestClient c(port);
  REQUIRE(c.connected());
  REQUIRE(c.Request("POST", path, body, headers));
  return c.Read();
}

inline HttpResponse Get(uint16_t port, const std::string& path, const std::string& headers = "") {
  HttpTestClient c(port);
  REQUIRE(c.connected());
  REQUIRE(c.Request("GET", path, "", headers));
  return c.Read();
}

// Checks that `error` is OpenAI's error object (message, type, param, code).
inline void CheckErrorShape(const nlohmann::json& error) {
  CHECK(error.contains("message"));
  CHECK(error["message"].is_string());
  CHECK(error.contains("type"));
  CHECK(error.contains("param"));
  CHECK(error.contains("code"));
}

// The error body is OpenAI's shape; returns the error object.
inline nlohmann::json ErrorOf(const HttpResponse& r) {
  const nlohmann::json body = nlohmann::json::parse(r.body, nullptr, false);
  REQUIRE(!body.is_discarded());
  REQUIRE(body.contains("error"));
  CheckErrorShape(body["error"]);
  return body["error"];
}

// The `data:` payloads of an SSE body, in order ("[DONE]" included).
inline std::vector<std::string> SseData(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const size_t end = body.find("\n\n", pos);
    out.push_back(body.substr(pos + 6, end - pos - 6));
    if (end == std::string::npos) break;
    pos = end;
  }
  return out;
}

inline void ExpectStillServes(uint16_t port) {
  const HttpResponse r = Post(port, "/v1/completions", kGreedy);
  REQUIRE(r.status == 200);
  CHECK(nlohmann::json::parse(r.body)["choices"][0]["text"].get<std::string>().find("Paris") !=
        std::string::npos);
}

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_SERVER_SERVE_TEST_UTIL_H_
