// Responses and SSE chunks are exactly OpenAI's JSON shape, field by field
// (the shapes the `openai` Python client's Completion, ChatCompletion and
// ChatCompletionChunk types parse), and SSE framing is byte-exact.
#include "server/openai_response.h"

#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/server/openai_test_util.h"

namespace alignserve {
namespace {

using nlohmann::json;

std::vector<ChoiceOutput> TwoChoices() {
  ChoiceOutput a;
  a.index = 0;
  a.text = " Paris.";
  a.token_ids = {7042, 30};
  a.finish_reason = FinishReason::kStop;
  ChoiceOutput b;
  b.index = 1;
  b.text = " The capital";
  b.token_ids = {378, 3575};
  b.finish_reason = FinishReason::kLength;
  return {a, b};
}

TEST_CASE("a completion response has OpenAI's fields and nothing else") {
  const json response = CompletionResponse("cmpl-abc", 1700000000, "smollm2", TwoChoices(),
                                           Usage{.prompt_tokens = 7, .completion_tokens = 4});
  CHECK(response == json::parse(R"({
    "id": "cmpl-abc", "object": "text_completion", "created": 1700000000, "model": "smollm2",
    "choices": [
      {"index": 0, "text": " Paris.", "logprobs": null, "finish_reason": "stop"},
      {"index": 1, "text": " The capital", "logprobs": null, "finish_reason": "length"}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}})"));
}

TEST_CASE("a chat response has OpenAI's fields and nothing else") {
  const json response = ChatResponse("chatcmpl-abc", 1700000001, "smollm2", TwoChoices(),
                                     Usage{.prompt_tokens = 30, .completion_tokens = 4});
  CHECK(response == json::parse(R"({
    "id": "chatcmpl-abc", "object": "chat.completion", "created": 1700000001,
    "model": "smollm2",
    "choices": [
      {"index": 0, "message": {"role": "assistant", "content": " Paris."}, "logprobs": null,
       "finish_reason": "stop"},
      {"index": 1, "message": {"role": "assistant", "content": " The capital"},
       "logprobs": null, "finish_reason": "length"}],
    "usage": {"prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34}})"));
}

TEST_CASE("finish reasons are OpenAI's strings, and null while running") {
  CHECK(FinishReasonJson(FinishReason::kStop) == "stop");
  CHECK(FinishReasonJson(FinishReason::kLength) == "length");
  CHECK(FinishReasonJson(FinishReason::kAbort) == "abort");
  CHECK(FinishReasonJson(FinishReason::kNone).is_null());
}

TEST_CASE("request ids are prefixed random hex, unique") {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string id = NewRequestId(i % 2 ? ApiKind::kChat : ApiKind::kCompletion);
    const std::string prefix = i % 2 ? "chatcmpl-" : "cmpl-";
    REQUIRE(id.rfind(prefix, 0) == 0);
    const std::string hex = id.substr(prefix.size());
    CHECK(hex.size() == 32);
    CHECK(hex.find_first_not_of("0123456789abcdef") == std::string::npos);
    seen.insert(hex);
  }
  CHECK(seen.size() == 100);
}

TEST_CASE("SSE framing is byte-exact") {
  CHECK(SseEvent(json{{"a", 1}, {"b", "x y"}}) == "data: {\"a\":1,\"b\":\"x y\"}\n\n");
  CHECK(SseDone() == "data: [DONE]\n\n");
  // A newline inside a string is escaped, so an event is always one line.
  CHECK(SseEvent(json{{"t", "a\nb"}}) == "data: {\"t\":\"a\\nb\"}\n\n");
}

TEST_CASE("invalid UTF-8 in output text still gives valid JSON") {
  const std::string event = SseEvent(json{{"text", std::string("ab\xE2\x82")}});
  const std::string payload = event.substr(6, event.size() - 8);
  const json parsed = json::parse(payload, nullptr, false);
  REQUIRE_FALSE(parsed.is_discarded());
  CHECK(parsed["text"] == "ab\xEF\xBF\xBD");
}

TEST_CASE("a completion stream's chunks") {
  const StreamHeader header{"cmpl-1", 1700000002, "smollm2", /*include_usage=*/false};
  CHECK(CompletionChunk(header, 0, " Par", FinishReason::kNone) == json::parse(R"({
    "id": "cmpl-1", "object": "text_completion", "created": 1700000002, "model": "smollm2",
    "choices": [{"index": 0, "text": " Par", "logprobs": null, "finish_reason": null}]})"));
  CHECK(CompletionChunk(header, 2, "is", FinishReason::kLength)["choices"][0] ==
        json::parse(R"({"index": 2, "text": "is", "logprobs": null, "finish_reason": "length"})"));
}

TEST_CASE("a chat stream: role chunk, content chunks, an empty delta with the finish reason") {
  const StreamHeader header{"chatcmpl-1", 1700000003, "smollm2", /*include_usage=*/false};
  CHECK(ChatRoleChunk(header, 0) == json::parse(R"({
    "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000003,
    "model": "smollm2",
    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null,
                 "finish_reason": null}]})"));
  CHECK(ChatContentChunk(header, 1, " Paris", FinishReason::kNone)["choices"] ==
        json::parse(R"([{"index": 1, "delta": {"content": " Paris"}, "logprobs": null,
                         "finish_reason": null}])"));
  CHECK(ChatContentChunk(header, 0, ".", FinishReason::kStop)["choices"][0]["delta"] ==
        json{{"content", "."}});
  CHECK(ChatContentChunk(header, 0, "", FinishReason::kStop)["choices"] ==
        json::parse(R"([{"index": 0, "delta": {}, "logprobs": null,
                         "finish_reason": "stop"}])"));
  // Without include_usage there is no usage key at all.
  CHECK_FALSE(ChatContentChunk(header, 0, "x", FinishReason::kNone).contains("usage"));
}

TEST_CASE("with include_usage every chunk has usage null and the last carries it") {
  const StreamHeader header{"chatcmpl-2", 1700000004, "smollm2", /*include_usage=*/true};
  CHECK(ChatRoleChunk(header, 0)["usage"].is_null());
  CHECK(ChatRoleChunk(header, 0).contains("usage"));
  CHECK(ChatContentChunk(header, 0, "x", FinishReason::kNone).at("usage").is_null());
  CHECK(CompletionChunk(header, 0, "x", FinishReason::kStop).at("usage").is_null());
  CHECK(UsageChunk(header, ApiKind::kChat, Usage{.prompt_tokens = 5, .completion_tokens = 2}) ==
        json::parse(R"({
    "id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1700000004,
    "model": "smollm2", "choices": [],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})"));
  CHECK(UsageChunk(header, ApiKind::kCompletion, Usage{})["object"] == "text_completion");
}

TEST_CASE("logprobs objects in OpenAI's completion and chat shapes") {
  const Tokenizer& tokenizer = *testing::DefaultModelText().tokenizer;
  const int32_t paris = *tokenizer.TokenId("ĠParis");
  const int32_t london = *tokenizer.TokenId("ĠLondon");
  const int32_t dot = *tokenizer.TokenId(".");
  const std::vector<int32_t> tokens = {paris, dot};
  std::vector<PositionLogprobs> positions(2);
  positions[0] = {.logprob = -0.25f, .rank = 1, .top = {{paris, -0.25f}, {london, -2.0f}}};
  positions[1] = {.logprob = -std::numeric_limits<float>::infinity(), .rank = 9, .top = {}};

  const json completion = CompletionLogprobs(tokenizer, tokens, positions, 10);
  CHECK(completion == json::parse(R"({
    "tokens": [" Paris", "."], "token_logprobs": [-0.25, -9999.0],
    "top_logprobs": [{" Paris": -0.25, " London": -2.0}, {}], "text_offset": [10, 16]})"));

  const json chat = ChatLogprobs(tokenizer, tokens, positions);
  CHECK(chat == json::parse(R"({"content": [
    {"token": " Paris", "logprob": -0.25, "bytes": [32, 80, 97, 114, 105, 115],
     "top_logprobs": [{"token": " Paris", "logprob": -0.25, "bytes": [32, 80, 97, 114, 105, 115]},
                      {"token": " London", "logprob": -2.0,
                       "bytes": [32, 76, 111, 110, 100, 111, 110]}]},
    {"token": ".", "logprob": -9999.0, "bytes": [46], "top_logprobs": []}]})"));

  // A choice carries its logprobs object.
  std::vector<ChoiceOutput> choices = TwoChoices();
  choices[0].logprobs = chat;
  CHECK(ChatResponse("c", 0, "m", choices, Usage{})["choices"][0]["logprobs"] == chat);
}

}  // namespace
}  // namespace alignserve
