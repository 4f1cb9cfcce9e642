// OpenAI-compatible response bodies for /v1/completions and
// /v1/chat/completions: whole responses, and the Server-Sent Events chunks
// of a stream, in exactly OpenAI's JSON shape (the `openai` Python client's
// Completion, ChatCompletion and ChatCompletionChunk types parse them).
//
// A stream is: for chat, one role chunk per choice (delta {role, content:
// ""}), then content chunks; for both, each choice's last chunk carries its
// finish_reason; then, with stream_options.include_usage, one chunk with
// "choices": [] and the usage (every earlier chunk has "usage": null); then
// "data: [DONE]". Every chunk of a stream has the same id, created and model
// (StreamHeader).
//
// Strings are serialised with invalid UTF-8 replaced by U+FFFD, so that a
// body is always valid JSON (ROBUSTNESS.md item 2), whatever the
// detokenizer hands over.
// Thread-safety: pure functions, except NewRequestId (thread-safe).
#ifndef ALIGNSERVE_SERVER_OPENAI_RESPONSE_H_
#define ALIGNSERVE_SERVER_OPENAI_RESPONSE_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/logprobs.h"
#include "engine/sequence.h"
#include "models/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "server/openai_request.h"

namespace alignserve {

struct ChoiceOutput {
  int index = 0;
  std::string text;                // completions: with the prompt first when echo
  std::vector<int32_t> token_ids;  // generated tokens (for usage; not serialised)
  FinishReason finish_reason = FinishReason::kNone;
  // OpenAI's logprobs object for this choice (CompletionLogprobs /
  // ChatLogprobs below), or null.
  nlohmann::json logprobs = nullptr;
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  // {"prompt_tokens", "completion_tokens", "total_tokens"}
  nlohmann::json ToJson() const;
};

// "stop", "length", "abort"; kNone (still running) -> null.
nlohmann::json FinishReasonJson(FinishReason reason);

// "cmpl-" or "chatcmpl-" + 32 random hex digits.
std::string NewRequestId(ApiKind kind);

// {"id", "object": "text_completion", "created", "model",
//  "choices": [{"index", "text", "logprobs", "finish_reason"}], "usage"}
nlohmann::json CompletionResponse(const std::string& id, int64_t created, const std::string& model,
                                  const std::vector<ChoiceOutput>& choices, const Usage& usage);
// {"id", "object": "chat.completion", "created", "model", "choices":
//  [{"index", "message": {"role": "assistant", "content"}, "logprobs",
//  "finish_reason"}], "usage"}
nlohmann::json ChatResponse(const std::string& id, int64_t created, const std::string& model,
                            const std::vector<ChoiceOutput>& choices, const Usage& usage);

// ---- Streaming.
struct StreamHeader {
  std::string id;
  int64_t created = 0;
  std::string model;
  bool include_usage = false;  // adds "usage": null to every non-final chunk
};

// "data: <compact json>\n\n"
std::string SseEvent(const nlohmann::json& chunk);
// "data: [DONE]\n\n"
std::string SseDone();

// {"id", "object": "text_completion", "created", "model", "choices":
//  [{"index", "text", "logprobs", "finish_reason"}]}
nlohmann::json CompletionChunk(const StreamHeader& header, int index, std::string_view text,
                               FinishReason finish_reason,
                               const nlohmann::json& logprobs = nullptr);
// The first chunk of a chat choice: delta {"role": "assistant", "content": ""}.
nlohmann::json ChatRoleChunk(const StreamHeader& header, int index);
// delta {"content": text}; with a finish reason and no text, delta {} (as
// OpenAI's last chunk of a choice).
nlohmann::json ChatContentChunk(const StreamHeader& header, int index, std::string_view text,
                                FinishReason finish_reason,
                                const nlohmann::json& logprobs = nullptr);
// The final chunk when include_usage: "choices": [] and the usage.
nlohmann::json UsageChunk(const StreamHeader& header, ApiKind kind, const Usage& usage);

// ---- Logprobs objects, from the engine's per-position logprobs (one per
// token, in order).
// Completions: {"tokens", "token_logprobs", "top_logprobs": [{token:
// logprob}], "text_offset"}; text_offset counts bytes of the choice's text
// from `text_offset_start` (the echoed prompt's length, or 0).
nlohmann::json CompletionLogprobs(const Tokenizer& tokenizer, std::span<const int32_t> tokens,
                                  std::span<const PositionLogprobs> positions,
                                  int64_t text_offset_start);
// Completions with echo: the prompt's tokens first (the first one with a
// null logprob and null alternatives, as OpenAI and vLLM return it; the
// others from prompt_positions, one per prompt token after the first), then
// the generated ones; text offsets run over both.
nlohmann::json EchoCompletionLogprobs(const Tokenizer& tokenizer,
                                      std::span<const int32_t> prompt_tokens,
                                      std::span<const PositionLogprobs> prompt_positions,
                                      std::span<const int32_t> tokens,
                                      std::span<const PositionLogprobs> positions);
// Chat: {"content": [{"token", "logprob", "bytes", "top_logprobs":
// [{"token", "logprob", "bytes"}]}]}
nlohmann::json ChatLogprobs(const Tokenizer& tokenizer, std::span<const int32_t> tokens,
                            std::span<const PositionLogprobs> positions);

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_OPENAI_RESPONSE_H_
