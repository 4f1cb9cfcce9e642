#include "server/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "alignserve/v1/alignserve.grpc.pb.h"
#include "server/admission_counter.h"
#include "server/grpc_generate_call.h"
#include "server/grpc_request.h"
#include "server/grpc_status.h"
#include "server/metrics.h"
#include "server/serial_executor.h"

namespace alignserve {
namespace {

constexpr char kServiceName[] = "alignserve.v1.AlignServe";

// Equal strings, in time that depends on the lengths only.
bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

std::string ListenAddress(const std::string& host, int port) {
  const bool ipv6 = host.find(':') != std::string::npos && host.front() != '[';
  return ipv6 ? absl::StrCat("[", host, "]:", port) : absl::StrCat(host, ":", port);
}

grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context,
                                      const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

}  // namespace

// The AlignServe methods. Each checks access and readiness first, then
// parses through the HTTP API's parsers (server/grpc_request.h).
class AlignServeService final : public v1::AlignServe::CallbackService {
 public:
  AlignServeService(const GrpcServerOptions& options, SerialExecutor& executor)
      : options_(options),
        executor_(executor),
        admission_(options.admission != nullptr
                       ? options.admission
                       : std::make_shared<AdmissionCounter>(options.max_queued_requests)) {
    context_.served_model_name = options.served_model_name;
    context_.chat_template = options.chat_template;
    context_.policy_plugins = options.policy_plugins;
    context_.default_alignment = options.default_alignment;
  }

  void SetEngine(AsyncEngine* engine, const ModelText* text, int max_model_len, int vocab_size,
                 std::shared_ptr<const RewardModel> reward_model,
                 const RewardModelSet* reward_models) {
    engine_ = engine;
    context_.reward_model = std::move(reward_model);
    context_.reward_models = reward_models;
    context_.text = text;
    context_.max_model_len = max_model_len;
    context_.vocab_size = vocab_size;
    created_ = static_cast<int64_t>(std::time(nullptr));
    state_.store(State::kReady);  // publishes the fields above to the handlers
  }
  void SetDraining() { state_.store(State::kDraining); }

  GenerateWriter* Generate(grpc::CallbackServerContext* context,
                           const v1::GenerateRequest* request) override {
    grpc::Status admitted = Admit(*context);
    if (!admitted.ok()) return FinishedGenerateWriter(admitted);
    // The count shared with HTTP, not the engine's stats (a step behind).
    absl::StatusOr<AdmissionCounter::Slot> slot = admission_->TryAcquire();
    if (!slot.ok()) return FinishedGenerateWriter(ToGrpcStatus(slot.status()));
    absl::StatusOr<OpenAiRequest> parsed = ParseGrpcGenerate(*request, context_);
    if (!parsed.ok()) {
      slot->Release();
      return FinishedGenerateWriter(ToGrpcStatus(parsed.status()));
    }
    return GenerateCall::Start(std::move(*parsed), *engine_, context_.text->tokenizer.get(),
                               executor_, options_.max_unread_events, options_.metrics,
                               std::move(*slot));
  }

  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override {
    grpc::Status admitted = Admit(*context);
    if (!admitted.ok()) return FinishUnary(context, admitted);
    absl::StatusOr<std::vector<int32_t>> ids = ParseGrpcTokenize(*request, context_);
    if (!ids.ok()) return FinishUnary(context, ToGrpcStatus(ids.status()));
    response->mutable_token_ids()->Add(ids->begin(), ids->end());
    response->set_count(static_cast<int32_t>(ids->size()));
    response->set_max_model_len(context_.max_model_len);
    return FinishUnary(context, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override {
    grpc::Status admitted = Admit(*context);
    if (!admitted.ok()) return FinishUnary(context, admitted);
    absl::StatusOr<std::vector<int32_t>> ids = ParseGrpcDetokenize(*request, context_);
    if (!ids.ok()) return FinishUnary(context, ToGrpcStatus(ids.status()));
    // proto3 strings must be UTF-8; ids may end inside a character.
    response->set_text(ToValidUtf8(context_.text->tokenizer->Decode(*ids, /*skip_special=*/false)));
    return FinishUnary(context, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* /*request*/,
                                       v1::ListModelsResponse* response) override {
    grpc::Status admitted = Admit(*context);
    if (!admitted.ok()) return FinishUnary(context, admitted);
    v1::Model* model = response->add_models();
    model->set_id(options_.served_model_name);
    model->set_created(created_);
    model->set_owned_by("alignserve");
    model->set_max_model_len(context_.max_model_len);
    return FinishUnary(context, grpc::Status::OK);
  }

 private:
  enum class State { kLoading, kReady, kDraining };

  // OK when the caller may use the service now.
  grpc::Status Admit(const grpc::CallbackServerContext& context) const {
    if (!options_.api_key.empty()) {
      constexpr std::string_view kBearer = "Bearer ";
      const auto& metadata = context.client_metadata();
      const auto it = metadata.find("authorization");
      const std::string_view value = it == metadata.end()
                                         ? std::string_view()
                                         : std::string_view(it->second.data(), it->second.size());
      if (value.size() <= kBearer.size() || value.substr(0, kBearer.size()) != kBearer ||
          !ConstantTimeEquals(value.substr(kBearer.size()), options_.api_key)) {
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                            "missing or invalid API key (metadata authorization: Bearer KEY)");
      }
    }
    switch (state_.load()) {
      case State::kLoading:
        return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "the model is still loading; retry soon");
      case State::kDraining:
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down");
      default:
        return grpc::Status::OK;
    }
  }

  const GrpcServerOptions& options_;
  SerialExecutor& executor_;
  std::atomic<State> state_{State::kLoading};
  AsyncEngine* engine_ = nullptr;  // set once by SetEngine, before state_ turns kReady
  ServeContext context_;
  int64_t created_ = 0;
  std::shared_ptr<AdmissionCounter> admission_;
};

GrpcServer::GrpcServer(GrpcServerOptions options)
    : options_(std::move(options)),
      executor_(std::make_unique<SerialExecutor>()),
      service_(std::make_unique<AlignServeService>(options_, *executor_)) {}

GrpcServer::~GrpcServer() { Shutdown(std::chrono::milliseconds(0)); }

absl::Status GrpcServer::Start() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(ListenAddress(options_.host, options_.port),
                           grpc::InsecureServerCredentials(), &port_);
  builder.SetMaxReceiveMessageSize(options_.max_receive_bytes);
  // gRPC sets SO_REUSEPORT by default: a second server on a taken port would
  // "bind" and share its connections. A taken port must fail instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("gRPC: cannot listen on ", ListenAddress(options_.host, options_.port)));
  }
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health != nullptr) health->SetServingStatus(false);
  return absl::OkStatus();
}

void GrpcServer::SetEngine(AsyncEngine* engine, const ModelText* text, int max_model_len,
                           int vocab_size, std::shared_ptr<const RewardModel> reward_model,
                           const RewardModelSet* reward_models) {
  service_->SetEngine(engine, text, max_model_len, vocab_size, std::move(reward_model),
                      reward_models);
  if (server_ == nullptr) return;
  if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) {
    health->SetServingStatus(true);
    health->SetServingStatus(kServiceName, true);
  }
}

void GrpcServer::SetDraining() {
  service_->SetDraining();
  if (server_ == nullptr) return;
  if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) {
    health->SetServingStatus(false);
  }
}

void GrpcServer::Shutdown(std::chrono::milliseconds deadline) {
  if (server_ == nullptr) return;
  server_->Shutdown(std::chrono::system_clock::now() + deadline);
  server_->Wait();
  server_.reset();
  // Runs the calls' last work (OnDone: abort, release) before the engine the
  // caller frees next is gone.
  executor_.reset();
}

}  // namespace alignserve
