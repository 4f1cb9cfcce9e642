// GrpcServer: the gRPC front end of `alignserve serve`: the alignserve.v1
// AlignServe service (proto/alignserve/v1/alignserve.proto) over the same
// AsyncEngine, parsers, chat template, alignment policies (plugins, judge
// reward model, default policy) as the HTTP API, plus the standard
// grpc.health.v1.Health service and server reflection.
//
// Life cycle mirrors OpenAiServer: Start listens at once; until SetEngine
// the AlignServe methods answer UNAVAILABLE and health is NOT_SERVING;
// SetEngine turns health SERVING; SetDraining (SIGTERM) refuses new work
// with UNAVAILABLE and turns health NOT_SERVING while streams in flight
// finish; Shutdown ends the server (streams still open after its deadline
// are cancelled).
// Limits: messages over max_receive_bytes get RESOURCE_EXHAUSTED (from gRPC
// itself); more unfinished requests than max_queued_requests (counted with
// the HTTP front end's, server/admission_counter.h) get RESOURCE_EXHAUSTED; a Generate stream whose
// client stops reading is bounded by max_unread_events (server/grpc_generate_call.h). With an API
// key, every AlignServe method needs metadata "authorization: Bearer KEY"
// (UNAUTHENTICATED otherwise); health and reflection stay open, like the
// HTTP /health.
// Thread-safety: the handlers run on gRPC's threads, concurrently;
// Start / SetEngine / SetDraining / Shutdown from the controlling thread.
#ifndef ALIGNSERVE_SERVER_GRPC_SERVER_H_
#define ALIGNSERVE_SERVER_GRPC_SERVER_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "alignment/plugin_policy.h"
#include "alignment/reward_model.h"
#include "engine/async_engine.h"
#include "models/model_text.h"
#include "server/alignment_spec.h"
#include "server/reward_models.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace alignserve {

class AdmissionCounter;
class ServingMetrics;

struct GrpcServerOptions {
  std::string host = "127.0.0.1";
  int port = 50051;  // 0: any free port (see port())
  std::string served_model_name = "default";
  std::string api_key;  // empty: no authentication
  int max_receive_bytes = 8 << 20;
  int32_t max_queued_requests = 1024;
  // The queue cap's count, shared with the HTTP front end; null: the server
  // makes its own of max_queued_requests.
  std::shared_ptr<AdmissionCounter> admission;
  // --chat-template, overriding the model's; not owned, outlives the server.
  const ChatTemplate* chat_template = nullptr;
  // Events a Generate stream may leave unread while a write is blocked.
  int64_t max_unread_events = 1024;
  // Per-request figures, shared with the HTTP front end (may be null).
  std::shared_ptr<ServingMetrics> metrics;
  // Policies loaded by --policy-plugin, by name; not owned, must outlive the
  // server. Null: none.
  const std::map<std::string, std::shared_ptr<PolicyPlugin>>* policy_plugins = nullptr;
  // The policy of requests that name none (--default-policy); empty: none.
  AlignmentSpec default_alignment;
};

class AlignServeService;
class SerialExecutor;

class GrpcServer {
 public:
  explicit GrpcServer(GrpcServerOptions options);
  ~GrpcServer();  // Shutdown(0) if still running

  // Binds and starts serving (health NOT_SERVING). Unavailable when the
  // address cannot be bound.
  absl::Status Start();
  int port() const { return port_; }

  // The model is loaded: methods open, health turns SERVING. `engine` and
  // `text` must outlive Shutdown. `reward_model` scores the reward-guided
  // policies of GenerateRequest.alignment (null: those are INVALID_ARGUMENT).
  void SetEngine(AsyncEngine* engine, const ModelText* text, int max_model_len, int vocab_size,
                 std::shared_ptr<const RewardModel> reward_model = nullptr,
                 const RewardModelSet* reward_models = nullptr);
  void SetDraining();
  // Waits for open RPCs up to `deadline`, cancels the rest, stops.
  void Shutdown(std::chrono::milliseconds deadline);

 private:
  GrpcServerOptions options_;
  std::unique_ptr<SerialExecutor> executor_;
  std::unique_ptr<AlignServeService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_GRPC_SERVER_H_
