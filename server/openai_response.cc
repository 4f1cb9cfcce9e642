#include "server/openai_response.h"

#include <algorithm>
#include <cstdio>
#include <random>

#include "absl/strings/str_cat.h"
#include "models/tokenizer/utf8.h"

namespace alignserve {
namespace {

using nlohmann::json;

// JSON has no -inf; OpenAI reports impossible tokens as -9999.0.
constexpr double kMinLogprob = -9999.0;

json Logprob(float value) { return std::max(static_cast<double>(value), kMinLogprob); }

// Text for JSON: ill-formed UTF-8 becomes U+FFFD here already, so that the
// token strings of logprobs (pieces of characters) stay readable.
std::string LossyText(std::string_view bytes) {
  std::string out;
  AppendLossyUtf8(bytes, &out);
  return out;
}

json Header(const std::string& id, std::string_view object, int64_t created,
            const std::string& model) {
  return {{"id", id}, {"object", object}, {"created", created}, {"model", model}};
}

json StreamChunk(const StreamHeader& header, std::string_view object, json choice) {
  json chunk = Header(header.id, object, header.created, header.model);
  chunk["choices"] = json::array({std::move(choice)});
  if (header.include_usage) chunk["usage"] = nullptr;
  return chunk;
}

}  // namespace

json Usage::ToJson() const {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

json FinishReasonJson(FinishReason reason) {
  if (reason == FinishReason::kNone) return nullptr;
  return std::string(ToString(reason));
}

std::string NewRequestId(ApiKind kind) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  char hex[33];
  std::snprintf(hex, sizeof(hex), "%016llx%016llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng()));
  return absl::StrCat(kind == ApiKind::kChat ? "chatcmpl-" : "cmpl-", hex);
}

json CompletionResponse(const std::string& id, int64_t created, const std::string& model,
                        const std::vector<ChoiceOutput>& choices, const Usage& usage) {
  json response = Header(id, "text_completion", created, model);
  json out = json::array();
  for (const ChoiceOutput& c : choices) {
    out.push_back({{"index", c.index},
                   {"text", c.text},
                   {"logprobs", c.logprobs},
                   {"finish_reason", FinishReasonJson(c.finish_reason)}});
  }
  response["choices"] = std::move(out);
  response["usage"] = usage.ToJson();
  return response;
}

json ChatResponse(const std::string& id, int64_t created, const std::string& model,
                  const std::vector<ChoiceOutput>& choices, const Usage& usage) {
  json response = Header(id, "chat.completion", created, model);
  json out = json::array();
  for (const ChoiceOutput& c : choices) {
    out.push_back({{"index", c.index},
                   {"message", {{"role", "assistant"}, {"content", c.text}}},
                   {"logprobs", c.logprobs},
                   {"finish_reason", FinishReasonJson(c.finish_reason)}});
  }
  response["choices"] = std::move(out);
  response["usage"] = usage.ToJson();
  return response;
}

std::string SseEvent(const json& chunk) {
  return absl::StrCat("data: ", chunk.dump(-1, ' ', false, json::error_handler_t::replace), "\n\n");
}

std::string SseDone() { return "data: [DONE]\n\n"; }

json CompletionChunk(const StreamHeader& header, int index, std::string_view text,
                     FinishReason finish_reason, const json& logprobs) {
  return StreamChunk(header, "text_completion",
                     {{"index", index},
                      {"text", text},
                      {"logprobs", logprobs},
                      {"finish_reason", FinishReasonJson(finish_reason)}});
}

json ChatRoleChunk(const StreamHeader& header, int index) {
  return StreamChunk(header, "chat.completion.chunk",
                     {{"index", index},
                      {"delta", {{"role", "assistant"}, {"content", ""}}},
                      {"logprobs", nullptr},
                      {"finish_reason", nullptr}});
}

json ChatContentChunk(const StreamHeader& header, int index, std::string_view text,
                      FinishReason finish_reason, const json& logprobs) {
  json delta = json::object();
  if (!text.empty() || finish_reason == FinishReason::kNone) delta["content"] = text;
  return StreamChunk(header, "chat.completion.chunk",
                     {{"index", index},
                      {"delta", std::move(delta)},
                      {"logprobs", logprobs},
                      {"finish_reason", FinishReasonJson(finish_reason)}});
}

json UsageChunk(const StreamHeader& header, ApiKind kind, const Usage& usage) {
  json chunk =
      Header(header.id, kind == ApiKind::kChat ? "chat.completion.chunk" : "text_completion",
             header.created, header.model);
  chunk["choices"] = json::array();
  chunk["usage"] = usage.ToJson();
  return chunk;
}

json CompletionLogprobs(const Tokenizer& tokenizer, std::span<const int32_t> tokens,
                        std::span<const PositionLogprobs> positions, int64_t text_offset_start) {
  json out_tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  int64_t offset = text_offset_start;
  for (size_t i = 0; i < tokens.size() && i < positions.size(); ++i) {
    const std::string bytes = tokenizer.TokenBytes(tokens[i]);
    out_tokens.push_back(LossyText(bytes));
    token_logprobs.push_back(Logprob(positions[i].logprob));
    json alternatives = json::object();
    for (const TokenLogprob& alt : positions[i].top) {
      alternatives[LossyText(tokenizer.TokenBytes(alt.token))] = Logprob(alt.logprob);
    }
    top.push_back(std::move(alternatives));
    offsets.push_back(offset);
    offset += static_cast<int64_t>(bytes.size());
  }
  return {{"tokens", std::move(out_tokens)},
          {"token_logprobs", std::move(token_logprobs)},
          {"top_logprobs", std::move(top)},
          {"text_offset", std::move(offsets)}};
}

json EchoCompletionLogprobs(const Tokenizer& tokenizer, std::span<const int32_t> prompt_tokens,
                            std::span<const PositionLogprobs> prompt_positions,
                            std::span<const int32_t> tokens,
                            std::span<const PositionLogprobs> positions) {
  json out = {{"tokens", json::array()},
              {"token_logprobs", json::array()},
              {"top_logprobs", json::array()},
              {"text_offset", json::array()}};
  int64_t offset = 0;
  if (!prompt_tokens.empty()) {
    const std::string first = tokenizer.TokenBytes(prompt_tokens[0]);
    out["tokens"].push_back(LossyText(first));
    out["token_logprobs"].push_back(nullptr);
    out["top_logprobs"].push_back(nullptr);
    out["text_offset"].push_back(0);
    offset = static_cast<int64_t>(first.size());
  }
  auto append = [&out, &offset, &tokenizer](std::span<const int32_t> ids,
                                            std::span<const PositionLogprobs> lps) {
    const json part = CompletionLogprobs(tokenizer, ids, lps, offset);
    for (const char* key : {"tokens", "token_logprobs", "top_logprobs", "text_offset"}) {
      for (const json& v : part[key]) out[key].push_back(v);
    }
    for (size_t i = 0; i < ids.size() && i < lps.size(); ++i) {
      offset += static_cast<int64_t>(tokenizer.TokenBytes(ids[i]).size());
    }
  };
  if (prompt_tokens.size() > 1) append(prompt_tokens.subspan(1), prompt_positions);
  append(tokens, positions);
  return out;
}

json ChatLogprobs(const Tokenizer& tokenizer, std::span<const int32_t> tokens,
                  std::span<const PositionLogprobs> positions) {
  auto entry = [&tokenizer](int32_t token, float logprob) {
    const std::string bytes = tokenizer.TokenBytes(token);
    json byte_values = json::array();
    for (unsigned char b : bytes) byte_values.push_back(static_cast<int>(b));
    return json{{"token", LossyText(bytes)},
                {"logprob", Logprob(logprob)},
                {"bytes", std::move(byte_values)}};
  };
  json content = json::array();
  for (size_t i = 0; i < tokens.size() && i < positions.size(); ++i) {
    json item = entry(tokens[i], positions[i].logprob);
    json top = json::array();
    for (const TokenLogprob& alt : positions[i].top) top.push_back(entry(alt.token, alt.logprob));
    item["top_logprobs"] = std::move(top);
    content.push_back(std::move(item));
  }
  return {{"content", std::move(content)}};
}

}  // namespace alignserve
