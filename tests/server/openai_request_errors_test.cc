// Bad OpenAI request bodies (ROBUSTNESS.md "Request bodies") give the right
// status, HTTP code, OpenAI error shape and "param", never a crash; the
// next valid request still parses.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "server/openai_request.h"
#include "tests/server/openai_test_util.h"

namespace alignserve {
namespace {

using nlohmann::json;
using testing::DefaultContext;

struct BadCase {
  std::string body;
  absl::StatusCode code;
  std::string param;  // "" -> null
};

// A body with `field` set to `value` over a valid completion request.
std::string Completion(const std::string& field, const json& value) {
  json body = {{"model", "smollm2"}, {"prompt", "Hello"}};
  body[field] = value;
  return body.dump();
}

std::string Chat(const std::string& field, const json& value) {
  json body = {{"model", "smollm2"}, {"messages", {{{"role", "user"}, {"content", "Hi"}}}}};
  body[field] = value;
  return body.dump();
}

void CheckRejected(const absl::Status& status, const BadCase& c) {
  INFO(c.body << " -> " << status.ToString());
  REQUIRE_FALSE(status.ok());
  CHECK(status.code() == c.code);
  const ApiError error = ErrorFromStatus(status);
  CHECK(error.param == c.param);
  CHECK(error.http_status == (c.code == absl::StatusCode::kNotFound ? 404 : 400));
  const json body = error.ToJson();
  CHECK(body["error"]["message"] == std::string(status.message()));
  CHECK(body["error"]["type"] == "invalid_request_error");
  CHECK(body["error"]["param"] == (c.param.empty() ? json(nullptr) : json(c.param)));
  // The message names the parameter.
  if (!c.param.empty()) CHECK(std::string(status.message()).find(c.param) != std::string::npos);
}

constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
constexpr auto kUnimplemented = absl::StatusCode::kUnimplemented;

TEST_CASE("bad completion bodies are 400s naming the parameter") {
  const std::vector<BadCase> cases = {
      {"not json", kInvalid, ""},
      {"[1, 2]", kInvalid, ""},
      {"{\"prompt\": \"\xff\xfe\"}", kInvalid, ""},  // invalid UTF-8
      {Completion("temperature", "hot"), kInvalid, "temperature"},
      // nlohmann's parser refuses numbers past double (and NaN is no JSON).
      {R"({"prompt": "x", "temperature": 1e999})", kInvalid, ""},
      {R"({"prompt": "x", "temperature": NaN})", kInvalid, ""},
      {Completion("temperature", -1), kInvalid, "temperature"},
      {Completion("temperature", 101), kInvalid, "temperature"},
      {Completion("top_p", 0), kInvalid, "top_p"},
      {Completion("top_p", 1.5), kInvalid, "top_p"},
      {Completion("top_k", -2), kInvalid, "top_k"},
      {Completion("top_k", 2.5), kInvalid, "top_k"},
      {Completion("top_k", 49153), kInvalid, "top_k"},
      {Completion("min_p", 1.5), kInvalid, "min_p"},
      {Completion("presence_penalty", 3), kInvalid, "presence_penalty"},
      {Completion("frequency_penalty", -2.5), kInvalid, "frequency_penalty"},
      {Completion("repetition_penalty", 0), kInvalid, "repetition_penalty"},
      {Completion("n", 0), kInvalid, "n"},
      {Completion("n", 17), kInvalid, "n"},
      {Completion("n", true), kInvalid, "n"},
      {Completion("max_tokens", 0), kInvalid, "max_tokens"},
      {Completion("max_tokens", -5), kInvalid, "max_tokens"},
      {Completion("max_tokens", "10"), kInvalid, "max_tokens"},
      {Completion("min_tokens", 17), kInvalid, "min_tokens"},  // > max_tokens 16
      {Completion("min_tokens", -1), kInvalid, "min_tokens"},
      {Completion("logprobs", 21), kInvalid, "logprobs"},
      {Completion("logprobs", -1), kInvalid, "logprobs"},
      {Completion("logprobs", true), kInvalid, "logprobs"},
      {Completion("echo", "yes"), kInvalid, "echo"},
      {Completion("stop", 5), kInvalid, "stop"},
      {Completion("stop", {1}), kInvalid, "stop"},
      {Completion("stop", {""}), kInvalid, "stop"},
      {Completion("stop", std::vector<std::string>(17, "a")), kInvalid, "stop"},
      {Completion("stop", std::string(257, 'a')), kInvalid, "stop"},
      {Completion("stop_token_ids", {49152}), kInvalid, "stop_token_ids"},
      {Completion("stop_token_ids", {-1}), kInvalid, "stop_token_ids"},
      {Completion("stop_token_ids", "2"), kInvalid, "stop_token_ids"},
      {Completion("logit_bias", {{"abc", 1}}), kInvalid, "logit_bias"},
      {Completion("logit_bias", {{"1.5", 1}}), kInvalid, "logit_bias"},
      {Completion("logit_bias", {{"49152", 1}}), kInvalid, "logit_bias"},
      {Completion("logit_bias", {{"-3", 1}}), kInvalid, "logit_bias"},
      {Completion("logit_bias", {{"5", 200}}), kInvalid, "logit_bias"},
      {Completion("logit_bias", {{"5", "x"}}), kInvalid, "logit_bias"},
      {Completion("logit_bias", {1, 2}), kInvalid, "logit_bias"},
      {Completion("seed", "x"), kInvalid, "seed"},
      {Completion("seed", 1.5), kInvalid, "seed"},
      {Completion("ignore_eos", "yes"), kInvalid, "ignore_eos"},
      {Completion("skip_special_tokens", 1), kInvalid, "skip_special_tokens"},
      {Completion("stream", "yes"), kInvalid, "stream"},
      {Completion("stream_options", {{"include_usage", true}}), kInvalid, "stream_options"},
      {Completion("user", 5), kInvalid, "user"},
      {Completion("prompt", ""), kInvalid, "prompt"},
      {Completion("prompt", json::array()), kInvalid, "prompt"},
      {Completion("prompt", {json::array()}), kInvalid, "prompt"},
      {Completion("prompt", {"ok", ""}), kInvalid, "prompt"},
      {Completion("prompt", {49152}), kInvalid, "prompt"},
      {Completion("prompt", {-1}), kInvalid, "prompt"},
      {Completion("prompt", {1, "a"}), kInvalid, "prompt"},
      {Completion("prompt", {"a", {1}}), kInvalid, "prompt"},
      {Completion("prompt", 5), kInvalid, "prompt"},
      {Completion("prompt", std::vector<std::string>(65, "a")), kInvalid, "prompt"},
      {R"({"model": "smollm2"})", kInvalid, "prompt"},
      {Completion("model", 7), kInvalid, "model"},
      {Completion("model", "gpt-4"), absl::StatusCode::kNotFound, "model"},
      {Completion("suffix", "tail"), kUnimplemented, "suffix"},
      {Completion("best_of", 2), kUnimplemented, "best_of"},
      {Completion("tools", {{{"type", "function"}}}), kUnimplemented, "tools"},
      {Completion("response_format", {{"type", "json_object"}}), kUnimplemented, "response_format"},
      {Completion("guided_json", json::object()), kUnimplemented, "guided_json"},
  };
  const ServeContext ctx = DefaultContext();
  for (const BadCase& c : cases) CheckRejected(ParseCompletionRequest(c.body, ctx).status(), c);
  // ...and the next valid request still parses.
  CHECK(ParseCompletionRequest(Completion("temperature", 0.5), ctx).ok());
}

TEST_CASE("bad chat bodies are 400s naming the parameter") {
  const std::vector<BadCase> cases = {
      {Chat("messages", json::array()), kInvalid, "messages"},
      {Chat("messages", "hi"), kInvalid, "messages"},
      {Chat("messages", {5}), kInvalid, "messages"},
      {Chat("messages", {{{"content", "hi"}}}), kInvalid, "messages"},
      {Chat("messages", {{{"role", "robot"}, {"content", "hi"}}}), kInvalid, "messages"},
      {Chat("messages", {{{"role", "user"}}}), kInvalid, "messages"},
      {Chat("messages", {{{"role", "user"}, {"content", 5}}}), kInvalid, "messages"},
      {Chat("messages", {{{"role", "tool"}, {"content", "42"}}}), kUnimplemented, "messages"},
      {Chat("messages", {{{"role", "user"},
                          {"content", {{{"type", "image_url"}, {"image_url", {{"url", "x"}}}}}}}}),
       kUnimplemented, "messages"},
      {Chat("messages", {{{"role", "user"}, {"content", {{{"type", "text"}}}}}}), kInvalid,
       "messages"},
      {R"({"model": "smollm2"})", kInvalid, "messages"},
      {Chat("logprobs", 3), kInvalid, "logprobs"},
      {Chat("top_logprobs", 3), kInvalid, "top_logprobs"},  // without logprobs: true
      {Chat("top_logprobs", 21), kInvalid, "top_logprobs"},
      {Chat("max_completion_tokens", 0), kInvalid, "max_completion_tokens"},
      {Chat("max_tokens", -1), kInvalid, "max_tokens"},
      {Chat("model", "other"), absl::StatusCode::kNotFound, "model"},
      {Chat("tools", {{{"type", "function"}}}), kUnimplemented, "tools"},
      {Chat("tool_choice", "required"), kUnimplemented, "tool_choice"},
      {Chat("temperature", "warm"), kInvalid, "temperature"},
  };
  const ServeContext ctx = DefaultContext();
  for (const BadCase& c : cases) CheckRejected(ParseChatRequest(c.body, ctx).status(), c);
  CHECK(ParseChatRequest(Chat("temperature", 0.5), ctx).ok());
}

TEST_CASE("an unknown model is a 404 with OpenAI's message and model_not_found") {
  const absl::Status status = ParseChatRequest(Chat("model", "gpt-4o"), DefaultContext()).status();
  CHECK(status.message() == "The model `gpt-4o` does not exist.");
  const json body = ErrorFromStatus(status).ToJson();
  CHECK(body == json::parse(R"({"error": {"message": "The model `gpt-4o` does not exist.",
      "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})"));
}

TEST_CASE("a prompt that fills the context is a 400 naming the limit") {
  const ServeContext ctx = DefaultContext(/*max_model_len=*/8);
  const absl::Status status =
      ParseCompletionRequest(Completion("prompt", {1, 2, 3, 4, 5, 6, 7, 8}), ctx).status();
  CheckRejected(status, {"8 ids", kInvalid, "prompt"});
  CHECK(std::string(status.message()).find("maximum context length is 8 tokens") !=
        std::string::npos);
  CHECK(std::string(status.message()).find("has 8 tokens") != std::string::npos);

  const absl::Status chat = ParseChatRequest(Chat("max_tokens", 1), ctx).status();
  CheckRejected(chat, {"chat", kInvalid, "messages"});
}

TEST_CASE("max_tokens past the context is a 400 when the server is told to reject it") {
  ServeContext ctx = DefaultContext(/*max_model_len=*/8);
  ctx.reject_max_tokens_past_context = true;
  // Only an explicit max_tokens is refused; the default 16 is fitted.
  auto fitted = ParseCompletionRequest(Completion("prompt", {1, 2, 3}), ctx);
  REQUIRE(fitted.ok());
  CHECK(fitted->params.max_tokens == 5);
  json body = {{"prompt", {1, 2, 3}}, {"max_tokens", 6}};
  CheckRejected(ParseCompletionRequest(body.dump(), ctx).status(), {"", kInvalid, "max_tokens"});
  body["max_tokens"] = 5;
  CHECK(ParseCompletionRequest(body.dump(), ctx).ok());
}

TEST_CASE("chat on a model without a template is a 400") {
  std::unique_ptr<ModelText> text = testing::LoadDefaultModelText();
  text->chat_template.reset();
  ServeContext ctx = DefaultContext();
  ctx.text = text.get();
  CheckRejected(ParseChatRequest(Chat("n", 1), ctx).status(), {"", kInvalid, "messages"});
  // Completions still work.
  CHECK(ParseCompletionRequest(Completion("n", 1), ctx).ok());
}

TEST_CASE("bad tokenize and detokenize bodies") {
  const ServeContext ctx = DefaultContext();
  CheckRejected(ParseTokenizeRequest("{}", ctx).status(), {"{}", kInvalid, "prompt"});
  CheckRejected(ParseTokenizeRequest(R"({"prompt": 5})", ctx).status(), {"", kInvalid, "prompt"});
  CheckRejected(ParseTokenizeRequest(R"({"messages": []})", ctx).status(),
                {"", kInvalid, "messages"});
  CheckRejected(ParseTokenizeRequest(R"({"prompt": "x", "model": "y"})", ctx).status(),
                {"", absl::StatusCode::kNotFound, "model"});
  CheckRejected(ParseDetokenizeRequest(R"({"tokens": [1, 49152]})", ctx).status(),
                {"", kInvalid, "tokens"});
  CheckRejected(ParseDetokenizeRequest(R"({"tokens": "1 2"})", ctx).status(),
                {"", kInvalid, "tokens"});
  CheckRejected(ParseDetokenizeRequest(R"({})", ctx).status(), {"", kInvalid, "tokens"});
}

TEST_CASE("status codes map to OpenAI error types and HTTP codes") {
  struct Row {
    absl::Status status;
    int http;
    std::string type;
  };
  const std::vector<Row> rows = {
      {absl::InvalidArgumentError("x"), 400, "invalid_request_error"},
      {absl::OutOfRangeError("x"), 400, "invalid_request_error"},
      {absl::UnimplementedError("x"), 400, "invalid_request_error"},
      {absl::NotFoundError("x"), 404, "invalid_request_error"},
      {absl::UnauthenticatedError("x"), 401, "authentication_error"},
      {absl::ResourceExhaustedError("x"), 429, "rate_limit_error"},
      {absl::UnavailableError("x"), 503, "service_unavailable_error"},
      {absl::InternalError("x"), 500, "server_error"},
      {absl::UnknownError("x"), 500, "server_error"},
  };
  for (const Row& row : rows) {
    const ApiError e = ErrorFromStatus(row.status);
    CHECK(e.http_status == row.http);
    CHECK(e.type == row.type);
    CHECK(e.message == "x");
    CHECK(e.ToJson()["error"]["param"].is_null());
  }
  // Validate's messages name their field; the param is recovered from them.
  CHECK(ParamOf(WithParamFromMessage(absl::InvalidArgumentError("top_p must be..."))) == "top_p");
  CHECK(ParamOf(WithParamFromMessage(absl::InvalidArgumentError("the prompt is..."))).empty());
}

}  // namespace
}  // namespace alignserve
