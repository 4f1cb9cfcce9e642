// OpenAiServer: the routes of `alignserve serve` over one AsyncEngine. It
// answers every HttpExchange of the HTTP server: the OpenAI-compatible
// /v1/completions and /v1/chat/completions (whole or streamed as server-sent
// events), /v1/models, /tokenize, /detokenize, and the operational routes
// /health (liveness: server/engine_health.h), /ready (model loaded), /metrics (Prometheus).
// Generation requests may carry the `policy` extension (server/openai_request.h).
//
// Life cycle: it answers from the moment the HTTP server listens; until
// SetEngine it is "loading" (/ready and generation routes 503); after
// SetDraining (SIGTERM) new generation requests get 503 while the ones in
// flight finish. Access: with an API key, every /v1 route needs
// `Authorization: Bearer KEY` (compared in constant time); paths with
// "//", ".." or percent-escapes are refused before routing, so they cannot
// sidestep the check.
// Thread-safety: Handle runs on the HTTP server's threads, concurrently;
// SetEngine / SetDraining from the controlling thread.
#ifndef ALIGNSERVE_SERVER_OPENAI_SERVER_H_
#define ALIGNSERVE_SERVER_OPENAI_SERVER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "alignment/plugin_policy.h"
#include "engine/async_engine.h"
#include "models/model_text.h"
#include "server/admission_counter.h"
#include "server/engine_health.h"
#include "server/http_server.h"
#include "server/openai_request.h"
#include "server/serving_metrics.h"

namespace alignserve {

struct OpenAiServerOptions {
  std::string served_model_name = "default";
  std::string api_key;                            // empty: no authentication
  std::string metrics_prefix = kVllmStylePrefix;  // opens every metric name
  // Browser origins whose cross-origin requests are allowed (CORS); an
  // Origin not listed gets no Access-Control headers. "*" allows any.
  std::vector<std::string> allowed_origins;
  int32_t max_queued_requests = 1024;  // unfinished requests beyond this get 429
  // The queue cap's count, shared with the gRPC front end; null: the server
  // makes its own of max_queued_requests.
  std::shared_ptr<AdmissionCounter> admission;
  // --chat-template, overriding the model's; not owned, outlives the server.
  const ChatTemplate* chat_template = nullptr;
  // Policies loaded by --policy-plugin, by name (the `alignment` field's
  // policy names); not owned, must outlive the server. Null: none.
  const std::map<std::string, std::shared_ptr<PolicyPlugin>>* policy_plugins = nullptr;
  // The policy of requests that name none (--default-policy); empty: none.
  AlignmentSpec default_alignment;
  // /health is 503 when the engine has work but made no progress for this
  // long, or while its forward passes fail (server/engine_health.h).
  std::chrono::milliseconds liveness_timeout{60'000};
};

class OpenAiServer {
 public:
  explicit OpenAiServer(OpenAiServerOptions options);
  ~OpenAiServer();

  // The model is loaded: generation routes open. `engine` and `text` must
  // outlive the server's handling (the caller stops HTTP before freeing them).
  // `reward_model` scores the reward-guided policies of the `policy` field
  // (null: those are a 400).
  void SetEngine(AsyncEngine* engine, const ModelText* text, int max_model_len, int vocab_size,
                 std::shared_ptr<const RewardModel> reward_model = nullptr,
                 const RewardModelSet* reward_models = nullptr);
  // Shutdown began: new generation requests get 503; /ready turns false.
  void SetDraining();

  void Handle(const HttpRequest& request, std::shared_ptr<HttpExchange> exchange);
  // The per-request metrics, for other front ends to record into.
  std::shared_ptr<ServingMetrics> metrics() const { return metrics_; }

 private:
  enum class State { kLoading, kReady, kDraining };
  void HandleGeneration(ApiKind kind, const HttpRequest& request,
                        std::shared_ptr<HttpExchange> exchange);
  void HandleTokenize(const HttpRequest& request, HttpExchange& exchange);
  void HandleDetokenize(const HttpRequest& request, HttpExchange& exchange);
  void HandleModels(HttpExchange& exchange);
  nlohmann::json ModelCard() const;  // one entry of /v1/models
  void HandleHealth(HttpExchange& exchange);
  bool Authorized(const HttpRequest& request) const;
  // The request's Origin when it is allowed, else "".
  std::string AllowedOrigin(const HttpRequest& request) const;

  OpenAiServerOptions options_;
  std::atomic<State> state_{State::kLoading};
  AsyncEngine* engine_ = nullptr;  // set once by SetEngine, before state_ turns kReady
  ServeContext context_;
  std::shared_ptr<ServingMetrics> metrics_;
  EngineHealth health_;
  int64_t created_ = 0;  // unix time the model became ready (for /v1/models)
  // Generation requests accepted and not yet answered (the queue cap).
  std::shared_ptr<AdmissionCounter> admission_;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_OPENAI_SERVER_H_
