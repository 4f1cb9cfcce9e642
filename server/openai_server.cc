#include "server/openai_server.h"

#include <ctime>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "alignment/policy_factory.h"
#include "server/generation_job.h"

namespace alignserve {
namespace {

void ReplyJson(HttpExchange& exchange, int status, const nlohmann::json& body,
               HttpHeaders headers = {}) {
  exchange.Reply(status, "application/json",
                 body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                 std::move(headers));
}

void ReplyError(HttpExchange& exchange, const ApiError& error, HttpHeaders headers = {}) {
  ReplyJson(exchange, error.http_status, error.ToJson(), std::move(headers));
}

ApiError Error(int status, std::string type, std::string message, std::string code = "") {
  ApiError e;
  e.http_status = status;
  e.type = std::move(type);
  e.message = std::move(message);
  e.code = std::move(code);
  return e;
}

// Equal strings, in time that depends on the lengths only.
bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::string& longer = a.size() >= b.size() ? a : b;
  for (size_t i = 0; i < longer.size(); ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

// The path without the query; "" for paths that could alias a route
// ("//", "..", percent-escapes, no leading slash).
std::string CleanPath(const std::string& target) {
  std::string path = target.substr(0, target.find('?'));
  if (path.empty() || path[0] != '/' || absl::StrContains(path, "//") ||
      absl::StrContains(path, "..") || absl::StrContains(path, "%") ||
      absl::StrContains(path, "\\")) {
    return "";
  }
  if (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

// Every policy a request can name: the built-in ones and the plugins.
std::vector<std::string> ServedPolicies(const OpenAiServerOptions& options) {
  std::vector<std::string> names = ImplementedPolicyNames();
  if (options.policy_plugins != nullptr) {
    for (const auto& [name, plugin] : *options.policy_plugins) names.push_back(name);
  }
  return names;
}

}  // namespace

OpenAiServer::OpenAiServer(OpenAiServerOptions options)
    : options_(std::move(options)),
      metrics_(std::make_shared<ServingMetrics>(options_.served_model_name, options_.metrics_prefix,
                                                ServedPolicies(options_))),
      health_(options_.liveness_timeout),
      admission_(options_.admission != nullptr
                     ? options_.admission
                     : std::make_shared<AdmissionCounter>(options_.max_queued_requests)) {
  context_.served_model_name = options_.served_model_name;
  context_.chat_template = options_.chat_template;
  context_.policy_plugins = options_.policy_plugins;
  context_.default_alignment = options_.default_alignment;
}

OpenAiServer::~OpenAiServer() = default;

void OpenAiServer::SetEngine(AsyncEngine* engine, const ModelText* text, int max_model_len,
                             int vocab_size, std::shared_ptr<const RewardModel> reward_model,
                             const RewardModelSet* reward_models) {
  engine_ = engine;
  context_.reward_model = std::move(reward_model);
  context_.reward_models = reward_models;
  context_.text = text;
  context_.max_model_len = max_model_len;
  context_.vocab_size = vocab_size;
  created_ = static_cast<int64_t>(std::time(nullptr));
  state_.store(State::kReady);  // publishes the fields above to the handler threads
}

void OpenAiServer::SetDraining() { state_.store(State::kDraining); }

bool OpenAiServer::Authorized(const HttpRequest& request) const {
  if (options_.api_key.empty()) return true;
  const std::string header = request.Header("authorization");
  constexpr std::string_view kBearer = "Bearer ";
  if (header.size() <= kBearer.size() || header.compare(0, kBearer.size(), kBearer) != 0) {
    return false;
  }
  return ConstantTimeEquals(header.substr(kBearer.size()), options_.api_key);
}

std::string OpenAiServer::AllowedOrigin(const HttpRequest& request) const {
  const std::string origin = request.Header("origin");
  if (origin.empty()) return "";
  for (const std::string& allowed : options_.allowed_origins) {
    if (allowed == "*" || allowed == origin) return origin;
  }
  return "";
}

void OpenAiServer::Handle(const HttpRequest& request, std::shared_ptr<HttpExchange> exchange) {
  // CORS: only configured origins are echoed (ROBUSTNESS.md 16).
  const std::string origin = AllowedOrigin(request);
  if (!origin.empty()) {
    exchange->AddResponseHeaders({{"Access-Control-Allow-Origin", origin}, {"Vary", "Origin"}});
  }
  if (request.method == "OPTIONS") {  // a browser's preflight
    if (origin.empty()) {
      return ReplyError(*exchange, Error(403, "permission_error", "origin not allowed"));
    }
    return exchange->Reply(204, "text/plain", "",
                           {{"Access-Control-Allow-Methods", "GET, POST, OPTIONS"},
                            {"Access-Control-Allow-Headers", "Authorization, Content-Type"},
                            {"Access-Control-Max-Age", "600"}});
  }
  const std::string path = CleanPath(request.target);
  if (path.empty()) {
    return ReplyError(*exchange, Error(400, "invalid_request_error",
                                       "malformed request path (no '//', '..' or escapes)"));
  }
  const bool get = request.method == "GET", post = request.method == "POST";
  if (path == "/health" && get) return HandleHealth(*exchange);
  if (path == "/ready" && get) {
    const bool ready = state_.load() == State::kReady;
    return ReplyJson(
        *exchange, ready ? 200 : 503,
        {{"status",
          ready ? "ready" : (state_.load() == State::kLoading ? "loading" : "draining")}});
  }
  if (path == "/metrics" && get) {
    if (state_.load() != State::kLoading) metrics_->UpdateFromEngine(engine_->stats());
    return exchange->Reply(200, "text/plain; version=0.0.4; charset=utf-8", metrics_->Render());
  }
  const bool api_route =
      absl::StartsWith(path, "/v1/") || path == "/tokenize" || path == "/detokenize";
  if (!api_route) {
    return ReplyError(*exchange, Error(404, "invalid_request_error",
                                       absl::StrCat("no route ", request.method, " ", path)));
  }
  if (!Authorized(request)) {
    return ReplyError(*exchange,
                      Error(401, "authentication_error",
                            "missing or invalid API key (Authorization: Bearer KEY)"),
                      {{"WWW-Authenticate", "Bearer"}});
  }
  const State state = state_.load();
  if (state != State::kReady) {
    return ReplyError(*exchange,
                      Error(503, "server_error",
                            state == State::kLoading ? "the model is still loading; retry soon"
                                                     : "the server is shutting down"),
                      {{"Retry-After", "1"}});
  }
  if (path == "/v1/models" && get) return HandleModels(*exchange);
  if (absl::StartsWith(path, "/v1/models/") && get) {
    if (path.substr(11) != options_.served_model_name) {
      ApiError e = Error(404, "invalid_request_error",
                         absl::StrCat("The model `", path.substr(11), "` does not exist."),
                         "model_not_found");
      e.param = "model";
      return ReplyError(*exchange, e);
    }
    return ReplyJson(*exchange, 200, ModelCard());
  }
  if (path == "/v1/completions" && post) {
    return HandleGeneration(ApiKind::kCompletion, request, std::move(exchange));
  }
  if (path == "/v1/chat/completions" && post) {
    return HandleGeneration(ApiKind::kChat, request, std::move(exchange));
  }
  if (path == "/tokenize" && post) return HandleTokenize(request, *exchange);
  if (path == "/detokenize" && post) return HandleDetokenize(request, *exchange);
  ReplyError(*exchange, Error(404, "invalid_request_error",
                              absl::StrCat("no route ", request.method, " ", path)));
}

void OpenAiServer::HandleGeneration(ApiKind kind, const HttpRequest& request,
                                    std::shared_ptr<HttpExchange> exchange) {
  // The count shared with gRPC (server/admission_counter.h), not the
  // engine's stats, which lag a step.
  absl::StatusOr<AdmissionCounter::Slot> slot = admission_->TryAcquire();
  if (!slot.ok()) {
    return ReplyError(*exchange,
                      Error(429, "rate_limit_error", std::string(slot.status().message())),
                      {{"Retry-After", "1"}});
  }
  absl::StatusOr<OpenAiRequest> parsed = kind == ApiKind::kChat
                                             ? ParseChatRequest(request.body, context_)
                                             : ParseCompletionRequest(request.body, context_);
  if (!parsed.ok()) {
    slot->Release();  // before the answer: its client may send the next request at once
    return ReplyError(*exchange, ErrorFromStatus(parsed.status()));
  }
  GenerationJob::Start(std::move(*parsed), *engine_, *context_.text, std::move(exchange), metrics_,
                       options_.served_model_name, std::move(*slot));
}

void OpenAiServer::HandleTokenize(const HttpRequest& request, HttpExchange& exchange) {
  absl::StatusOr<std::vector<int32_t>> ids = ParseTokenizeRequest(request.body, context_);
  if (!ids.ok()) return ReplyError(exchange, ErrorFromStatus(ids.status()));
  ReplyJson(exchange, 200, TokenizeResponse(*ids, context_));
}

void OpenAiServer::HandleDetokenize(const HttpRequest& request, HttpExchange& exchange) {
  absl::StatusOr<std::vector<int32_t>> ids = ParseDetokenizeRequest(request.body, context_);
  if (!ids.ok()) return ReplyError(exchange, ErrorFromStatus(ids.status()));
  ReplyJson(exchange, 200, DetokenizeResponse(*ids, context_));
}

nlohmann::json OpenAiServer::ModelCard() const {
  return {{"id", options_.served_model_name},
          {"object", "model"},
          {"created", created_},
          {"owned_by", "alignserve"},
          {"max_model_len", context_.max_model_len}};
}

void OpenAiServer::HandleModels(HttpExchange& exchange) {
  ReplyJson(exchange, 200, {{"object", "list"}, {"data", nlohmann::json::array({ModelCard()})}});
}

// Liveness: the engine thread must keep making progress while it has work,
// and its forward passes must not be failing.
void OpenAiServer::HandleHealth(HttpExchange& exchange) {
  if (state_.load() == State::kLoading) return ReplyJson(exchange, 200, {{"status", "loading"}});
  const ServerLoad load{.in_flight = admission_->in_flight(),
                        .busy_since = admission_->busy_since()};
  const HealthVerdict verdict =
      health_.Check(engine_->stats(), load, std::chrono::steady_clock::now());
  if (!verdict.healthy) {
    return ReplyJson(exchange, 503, {{"status", "unhealthy"}, {"reason", verdict.reason}});
  }
  ReplyJson(exchange, 200, {{"status", "ok"}});
}

}  // namespace alignserve
