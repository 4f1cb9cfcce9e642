// OpenAI-compatible request bodies -> engine inputs: /v1/completions,
// /v1/chat/completions, and vLLM's /tokenize and /detokenize. Pure functions
// of the body and the served model; no sockets, no engine.
//
// Every failure is an absl::Status that ErrorFromStatus (server/api_error.h)
// turns into OpenAI's error body, with the offending field as "param":
//   InvalidArgument: not JSON, not an object, wrong types, NaN / Inf, values
//     out of range, empty prompts, token ids outside [0, vocab_size), prompt
//     too long for the context -> 400.
//   Unimplemented: fields this server knows but does not support (suffix,
//     tools, response_format other than text, best_of != n) -> 400.
//   NotFound: a model name other than the served one -> 404.
// Unknown fields are ignored (OpenAI clients send extras).
//
// The `alignment` extension (issue 5, ROBUSTNESS.md 13): "alignment":
// {"policy": NAME, "params": {...}, "reward_model": "judge"} (OpenAI clients
// send it through extra_body), or the shorthand "policy": "NAME" |
// {"name": NAME, "params": {...}}, builds one DecodingPolicy per prompt with
// ApplyAlignment (server/alignment_spec.h), scored by ServeContext::
// reward_model. A request without either gets ServeContext::
// default_alignment (serve --default-policy); policy "none" opts out. Every
// policy error has param "alignment" (or "policy" for the shorthand):
// unknown names, params, types and ranges, and a reward-guided policy
// without a reward model are InvalidArgument; built-in policies not
// implemented yet are Unimplemented (both 400). A policy decides its own
// sample count, so n (and best_of) above 1 with a policy is a 400 with
// param "n".
//
// Null counts as absent for every field. Integer fields accept integral
// floats (5.0), as the OpenAI / vLLM servers' pydantic models do.
//
// max_tokens (ROBUSTNESS.md items 4, 5): a prompt that leaves no room for
// one new token is rejected, naming max_model_len; max_tokens <= 0 is
// rejected; a max_tokens past the context is clamped to max_model_len -
// prompt length (the shortest prompt's, when there are several: the engine
// cuts longer ones at the context), so the choice finishes with "length".
// ServeContext::reject_max_tokens_past_context turns an explicit max_tokens
// past the context into vLLM's 400 instead; defaults (16 for completions,
// the room left for chat) are always fitted.
// Thread-safety: pure functions; ServeContext is read-only (ModelText is safe
// for concurrent const use).
#ifndef ALIGNSERVE_SERVER_OPENAI_REQUEST_H_
#define ALIGNSERVE_SERVER_OPENAI_REQUEST_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "alignment/plugin_policy.h"
#include "alignment/reward_model.h"
#include "engine/decoding_policy.h"
#include "engine/sampling_params.h"
#include "models/model_text.h"
#include "nlohmann/json.hpp"
#include "server/alignment_spec.h"
#include "server/api_error.h"
#include "server/reward_models.h"

namespace alignserve {

// What the parsers need of the served model.
struct ServeContext {
  const ModelText* text = nullptr;  // tokenizer and chat template; not owned
  // --chat-template: renders chats instead of the model's own template; not
  // owned (null: the model's).
  const ChatTemplate* chat_template = nullptr;
  std::string served_model_name;
  int max_model_len = 0;
  int vocab_size = 0;
  // false: max_tokens past the context is clamped (ROBUSTNESS.md 5);
  // true: it is a 400 naming the limit, as vLLM does.
  bool reject_max_tokens_past_context = false;
  // Scores responses for the reward-guided policies (best_of_n, ...): the
  // served model as a judge (alignment/judge_reward_model.h); null: those
  // policies are a 400.
  std::shared_ptr<const RewardModel> reward_model;
  // The reward models a request may name (serve --reward-model, server/
  // reward_models.h); not owned. Null: only "judge", which is reward_model.
  const RewardModelSet* reward_models = nullptr;
  // Policies from --policy-plugin, by name; not owned (null: none).
  const std::map<std::string, std::shared_ptr<PolicyPlugin>>* policy_plugins = nullptr;
  // What a request that names no alignment gets (serve --default-policy);
  // an empty policy: plain sampling.
  AlignmentSpec default_alignment;
};

enum class ApiKind { kCompletion, kChat };

// Caps checked here, before anything reaches the engine.
inline constexpr int kMaxPromptsPerRequest = 64;
inline constexpr int kMaxChatMessages = 4096;

struct OpenAiRequest {
  ApiKind kind = ApiKind::kCompletion;
  std::string model;  // the served name
  // Completions: one per prompt (each submitted separately, each with n
  // choices); chat: exactly one. Each non-empty, ids in [0, vocab_size),
  // size < max_model_len.
  std::vector<std::vector<int32_t>> prompts;
  // The text of each prompt (completions: the string given, or token ids
  // decoded; chat: the rendered template), for echo.
  std::vector<std::string> prompt_texts;
  SamplingParams params;  // Validate()d against vocab_size
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage (stream only)
  bool echo = false;           // completions only
  // Completions: logprobs given (params.logprobs = its value). Chat:
  // logprobs: true (params.logprobs = top_logprobs).
  bool logprobs = false;
  int top_logprobs = 0;
  bool skip_special_tokens = true;  // for detokenizing the output
  std::string user;
  // The `policy` extension: its name ("" for none) and one fresh instance
  // per prompt (policies[i] serves prompts[i]; empty without a policy).
  std::string policy_name;
  std::vector<std::shared_ptr<DecodingPolicy>> policies;
};

absl::StatusOr<OpenAiRequest> ParseCompletionRequest(std::string_view body,
                                                     const ServeContext& ctx);
absl::StatusOr<OpenAiRequest> ParseChatRequest(std::string_view body, const ServeContext& ctx);

// POST /tokenize: {"model"?, "prompt": str, "add_special_tokens"? (true)} or
// {"model"?, "messages": [...], "add_generation_prompt"? (true),
// "add_special_tokens"? (false)} -> the token ids.
absl::StatusOr<std::vector<int32_t>> ParseTokenizeRequest(std::string_view body,
                                                          const ServeContext& ctx);
// {"count": ids.size(), "max_model_len": ..., "tokens": ids}
nlohmann::json TokenizeResponse(const std::vector<int32_t>& ids, const ServeContext& ctx);

// POST /detokenize: {"model"?, "tokens": [ids]} -> the ids, each checked
// against the vocabulary.
absl::StatusOr<std::vector<int32_t>> ParseDetokenizeRequest(std::string_view body,
                                                            const ServeContext& ctx);
// {"prompt": the ids decoded, special tokens kept}
nlohmann::json DetokenizeResponse(const std::vector<int32_t>& ids, const ServeContext& ctx);

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_OPENAI_REQUEST_H_
