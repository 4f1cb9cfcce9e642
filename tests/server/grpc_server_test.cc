// The gRPC API of `alignserve serve` end to end: the real binary on
// loopback with the default model, driven by the generated C++ stub of
// alignserve.v1 and, for the standard services (health, reflection), by
// wire-compatible messages called by method name. The oracle for outputs is
// the same server's HTTP API: both front ends share the engine and parsers,
// so greedy text and token ids must match exactly.
#include <google/protobuf/descriptor.pb.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/client_unary_call.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "alignserve/v1/alignserve.grpc.pb.h"
#include "grpc_wire.pb.h"
#include "tests/server/http_test_client.h"
#include "tests/server/server_process.h"

namespace alignserve {
namespace {

using nlohmann::json;
using testing::HttpResponse;
using testing::HttpTestClient;
using testing::ServerProcess;
namespace wire = testing::wire;

ServerProcess& SharedServer() {
  static ServerProcess* server = new ServerProcess({"--model", "default", "--grpc-port", "0"});
  return *server;
}

// A server with the limits under test turned tight, and an API key.
ServerProcess& StrictServer() {
  static ServerProcess* server =
      new ServerProcess({"--model", "default", "--grpc-port", "0", "--api-key", "sekret",
                         "--max-request-kib", "64", "--grpc-max-unread-events", "8"});
  return *server;
}

std::shared_ptr<grpc::Channel> ChannelTo(ServerProcess& s,
                                         grpc::ChannelArguments args = grpc::ChannelArguments()) {
  REQUIRE(s.ok());
  REQUIRE(s.grpc_port() != 0);
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(s.grpc_port()),
                                   grpc::InsecureChannelCredentials(), args);
}

std::unique_ptr<v1::AlignServe::Stub> StubTo(ServerProcess& s) {
  return v1::AlignServe::NewStub(ChannelTo(s));
}

void SetDeadline(grpc::ClientContext& ctx, int seconds = 30) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

struct Streamed {
  std::vector<v1::GenerateResponse> messages;
  grpc::Status status;
  std::string Text(int index = 0) const {
    std::string text;
    for (const auto& m : messages) {
      if (m.index() == index) text += m.text();
    }
    return text;
  }
  std::vector<int32_t> Tokens(int index = 0) const {
    std::vector<int32_t> ids;
    for (const auto& m : messages) {
      if (m.index() == index) ids.insert(ids.end(), m.token_ids().begin(), m.token_ids().end());
    }
    return ids;
  }
};

Streamed Generate(v1::AlignServe::Stub& stub, const v1::GenerateRequest& request,
                  const std::string& api_key = "") {
  grpc::ClientContext ctx;
  SetDeadline(ctx);
  if (!api_key.empty()) ctx.AddMetadata("authorization", "Bearer " + api_key);
  Streamed out;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader = stub.Generate(&ctx, request);
  v1::GenerateResponse m;
  while (reader->Read(&m)) out.messages.push_back(m);
  out.status = reader->Finish();
  return out;
}

v1::GenerateRequest GreedyRequest(const std::string& text, int max_tokens) {
  v1::GenerateRequest r;
  r.set_model("default");
  r.set_text(text);
  r.mutable_sampling()->set_max_tokens(max_tokens);
  r.mutable_sampling()->set_temperature(0.0f);
  r.mutable_sampling()->set_ignore_eos(true);
  return r;
}

json HttpPost(uint16_t port, const std::string& path, const json& body,
              const std::string& headers = "") {
  HttpTestClient c(port);
  REQUIRE(c.connected());
  REQUIRE(c.Request("POST", path, body.dump(), headers));
  const HttpResponse r = c.Read();
  REQUIRE(r.status == 200);
  return json::parse(r.body);
}

double KvUsage(uint16_t port) {
  HttpTestClient c(port);
  REQUIRE(c.Request("GET", "/metrics", ""));
  const std::string metrics = c.Read().body;
  const std::string key = "alignserve:kv_cache_usage_perc{model_name=\"default\"} ";
  const size_t at = metrics.find(key);
  REQUIRE(at != std::string::npos);
  return std::stod(metrics.substr(at + key.size()));
}

// alignserve:generation_tokens_total from /metrics (HTTP and gRPC share it).
double GenerationTokens(uint16_t port) {
  HttpTestClient c(port);
  REQUIRE(c.Request("GET", "/metrics", ""));
  const std::string metrics = c.Read().body;
  const std::string key = "alignserve:generation_tokens_total{model_name=\"default\"} ";
  const size_t at = metrics.find(key);
  REQUIRE(at != std::string::npos);
  return std::stod(metrics.substr(at + key.size()));
}

bool WaitForKvUsageZero(uint16_t port, int timeout_ms) {
  for (int waited = 0; waited <= timeout_ms; waited += 50) {
    if (KvUsage(port) == 0.0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

TEST_CASE("gRPC Generate streams the same greedy tokens as the HTTP API") {
  ServerProcess& s = SharedServer();
  INFO(s.log());
  auto stub = StubTo(s);
  const double tokens_before = GenerationTokens(s.port());
  const Streamed out = Generate(*stub, GreedyRequest("The capital of France is", 8));
  REQUIRE(out.status.ok());
  CHECK(GenerationTokens(s.port()) == tokens_before + 8);  // gRPC requests are counted
  CHECK(out.Text().find("Paris") != std::string::npos);
  CHECK(out.Tokens().size() == 8);
  CHECK(out.messages.size() >= 2);  // streamed, not one blob
  const v1::GenerateResponse& last = out.messages.back();
  CHECK(last.finished());
  CHECK(last.finish_reason() == v1::FINISH_REASON_LENGTH);
  CHECK(last.usage().completion_tokens() == 8);
  for (size_t i = 0; i + 1 < out.messages.size(); ++i) CHECK_FALSE(out.messages[i].finished());

  const json http = HttpPost(s.port(), "/v1/completions",
                             {{"model", "default"},
                              {"prompt", "The capital of France is"},
                              {"max_tokens", 8},
                              {"temperature", 0},
                              {"ignore_eos", true}});
  CHECK(out.Text() == http["choices"][0]["text"].get<std::string>());
  CHECK(last.usage().prompt_tokens() == http["usage"]["prompt_tokens"].get<int>());
}

TEST_CASE("gRPC Generate takes token ids and chat messages like the HTTP API") {
  ServerProcess& s = SharedServer();
  auto stub = StubTo(s);
  const json tokenized = HttpPost(s.port(), "/tokenize", {{"prompt", "The capital of France is"}});
  v1::GenerateRequest by_ids = GreedyRequest("", 6);
  for (int id : tokenized["tokens"]) by_ids.mutable_token_ids()->add_ids(id);
  const Streamed ids_out = Generate(*stub, by_ids);
  REQUIRE(ids_out.status.ok());
  CHECK(ids_out.Text() == Generate(*stub, GreedyRequest("The capital of France is", 6)).Text());

  v1::GenerateRequest chat = GreedyRequest("", 12);
  v1::ChatMessage* m = chat.mutable_messages()->add_messages();
  m->set_role("user");
  m->set_content("What is the capital of France?");
  const Streamed chat_out = Generate(*stub, chat);
  REQUIRE(chat_out.status.ok());
  const json http =
      HttpPost(s.port(), "/v1/chat/completions",
               {{"messages", {{{"role", "user"}, {"content", "What is the capital of France?"}}}},
                {"max_tokens", 12},
                {"temperature", 0},
                {"ignore_eos", true}});
  CHECK(chat_out.Text() == http["choices"][0]["message"]["content"].get<std::string>());
}

TEST_CASE("gRPC Generate with n=2 streams choices 0 and 1, with logprobs") {
  ServerProcess& s = SharedServer();
  auto stub = StubTo(s);
  v1::GenerateRequest r = GreedyRequest("Once upon a time", 5);
  r.mutable_sampling()->set_temperature(0.8f);
  r.mutable_sampling()->set_seed(7);
  r.mutable_sampling()->set_n(2);
  r.mutable_sampling()->set_logprobs(3);
  const Streamed out = Generate(*stub, r);
  REQUIRE(out.status.ok());
  std::set<int> indices;
  for (const auto& m : out.messages) {
    indices.insert(m.index());
    REQUIRE(m.logprobs_size() == m.token_ids_size());
    for (int i = 0; i < m.logprobs_size(); ++i) {
      CHECK(m.logprobs(i).token_id() == m.token_ids(i));
      CHECK(m.logprobs(i).top_logprobs_size() == 3);
      CHECK(m.logprobs(i).logprob() <= 0.0f);
      CHECK(m.logprobs(i).rank() >= 1);
    }
  }
  CHECK(indices == std::set<int>{0, 1});
  CHECK(out.Tokens(0).size() == 5);
  CHECK(out.Tokens(1).size() == 5);
  CHECK(out.messages.back().usage().completion_tokens() == 10);
}

TEST_CASE(
    "gRPC invalid parameters get INVALID_ARGUMENT naming the field; unknown model NOT_FOUND") {
  ServerProcess& s = SharedServer();
  auto stub = StubTo(s);
  struct Case {
    std::string field;
    v1::GenerateRequest request;
  };
  std::vector<Case> cases;
  cases.push_back({"temperature", GreedyRequest("Hi", 4)});
  cases.back().request.mutable_sampling()->set_temperature(500.0f);
  cases.push_back({"top_p", GreedyRequest("Hi", 4)});
  cases.back().request.mutable_sampling()->set_top_p(std::numeric_limits<float>::quiet_NaN());
  cases.push_back({"max_tokens", GreedyRequest("Hi", 0)});
  cases.push_back({"n", GreedyRequest("Hi", 4)});
  cases.back().request.mutable_sampling()->set_n(1000);
  cases.push_back({"logprobs", GreedyRequest("Hi", 4)});
  cases.back().request.mutable_sampling()->set_logprobs(50);
  cases.push_back({"logit_bias", GreedyRequest("Hi", 4)});
  (*cases.back().request.mutable_sampling()->mutable_logit_bias())[999999] = 1.0f;
  cases.push_back({"text", GreedyRequest("", 4)});
  cases.push_back({"token_ids", GreedyRequest("", 4)});
  cases.back().request.mutable_token_ids()->add_ids(-3);
  cases.push_back({"input", GreedyRequest("", 4)});
  cases.back().request.clear_input();
  cases.push_back({"messages", GreedyRequest("", 4)});
  cases.back().request.mutable_messages()->add_messages()->set_role("wizard");
  for (const Case& c : cases) {
    INFO(c.field);
    const Streamed out = Generate(*stub, c.request);
    CHECK(out.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(out.status.error_message().rfind(c.field, 0) == 0);
    CHECK(out.messages.empty());
  }
  v1::GenerateRequest unknown = GreedyRequest("Hi", 4);
  unknown.set_model("gpt-17");
  const Streamed out = Generate(*stub, unknown);
  CHECK(out.status.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(out.status.error_message().find("gpt-17") != std::string::npos);
  // ...and the server still serves.
  CHECK(Generate(*stub, GreedyRequest("The capital of France is", 6)).Text().find("Paris") !=
        std::string::npos);
}

TEST_CASE("gRPC Tokenize and Detokenize round-trip and agree with HTTP; ListModels") {
  ServerProcess& s = SharedServer();
  auto stub = StubTo(s);
  const std::string text = "Hello world, ça va? 日本語";
  grpc::ClientContext tctx;
  v1::TokenizeRequest treq;
  treq.set_text(text);
  v1::TokenizeResponse tresp;
  REQUIRE(stub->Tokenize(&tctx, treq, &tresp).ok());
  const json http = HttpPost(s.port(), "/tokenize", {{"prompt", text}});
  CHECK(std::vector<int32_t>(tresp.token_ids().begin(), tresp.token_ids().end()) ==
        http["tokens"].get<std::vector<int32_t>>());
  CHECK(tresp.count() == tresp.token_ids_size());
  CHECK(tresp.max_model_len() == 8192);

  grpc::ClientContext dctx;
  v1::DetokenizeRequest dreq;
  *dreq.mutable_token_ids() = tresp.token_ids();
  v1::DetokenizeResponse dresp;
  REQUIRE(stub->Detokenize(&dctx, dreq, &dresp).ok());
  CHECK(dresp.text() == text);

  grpc::ClientContext bad_ctx;
  v1::DetokenizeRequest bad;
  bad.add_token_ids(49152);
  CHECK(stub->Detokenize(&bad_ctx, bad, &dresp).error_code() == grpc::StatusCode::INVALID_ARGUMENT);

  grpc::ClientContext mctx;
  v1::ListModelsResponse models;
  REQUIRE(stub->ListModels(&mctx, v1::ListModelsRequest(), &models).ok());
  REQUIRE(models.models_size() == 1);
  CHECK(models.models(0).id() == "default");
  CHECK(models.models(0).max_model_len() == 8192);
  CHECK(models.models(0).created() > 0);
}

wire::HealthCheckResponse::ServingStatus Health(ServerProcess& s, const std::string& service,
                                                grpc::Status* status) {
  auto channel = ChannelTo(s);
  grpc::ClientContext ctx;
  SetDeadline(ctx, 10);
  wire::HealthCheckRequest req;
  req.set_service(service);
  wire::HealthCheckResponse resp;
  *status = grpc::internal::BlockingUnaryCall(
      channel.get(),
      grpc::internal::RpcMethod("/grpc.health.v1.Health/Check",
                                grpc::internal::RpcMethod::NORMAL_RPC),
      &ctx, req, &resp);
  return resp.status();
}

TEST_CASE("grpc.health.v1 reports SERVING for the server and the AlignServe service") {
  ServerProcess& s = SharedServer();
  grpc::Status status;
  CHECK(Health(s, "", &status) == wire::HealthCheckResponse::SERVING);
  CHECK(status.ok());
  CHECK(Health(s, "alignserve.v1.AlignServe", &status) == wire::HealthCheckResponse::SERVING);
  CHECK(status.ok());
  Health(s, "no.such.Service", &status);
  CHECK(status.error_code() == grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("server reflection lists alignserve.v1.AlignServe and serves its descriptor") {
  ServerProcess& s = SharedServer();
  auto channel = ChannelTo(s);
  grpc::ClientContext ctx;
  SetDeadline(ctx, 10);
  std::unique_ptr<
      grpc::ClientReaderWriter<wire::ServerReflectionRequest, wire::ServerReflectionResponse>>
      stream(grpc::internal::ClientReaderWriterFactory<wire::ServerReflectionRequest,
                                                       wire::ServerReflectionResponse>::
                 Create(channel.get(),
                        grpc::internal::RpcMethod(
                            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                            grpc::internal::RpcMethod::BIDI_STREAMING),
                        &ctx));
  wire::ServerReflectionRequest list;
  list.set_list_services("");
  REQUIRE(stream->Write(list));
  wire::ServerReflectionResponse resp;
  REQUIRE(stream->Read(&resp));
  std::set<std::string> services;
  for (const auto& svc : resp.list_services_response().service()) services.insert(svc.name());
  CHECK(services.count("alignserve.v1.AlignServe") == 1);

  wire::ServerReflectionRequest file;
  file.set_file_containing_symbol("alignserve.v1.AlignServe");
  REQUIRE(stream->Write(file));
  REQUIRE(stream->Read(&resp));
  REQUIRE(resp.file_descriptor_response().file_descriptor_proto_size() >= 1);
  google::protobuf::FileDescriptorProto fd;
  REQUIRE(fd.ParseFromString(resp.file_descriptor_response().file_descriptor_proto(0)));
  CHECK(fd.package() == "alignserve.v1");
  REQUIRE(fd.service_size() == 1);
  bool generate_streams = false;
  for (const auto& method : fd.service(0).method()) {
    if (method.name() == "Generate") generate_streams = method.server_streaming();
  }
  CHECK(generate_streams);
  stream->WritesDone();
  CHECK(stream->Finish().ok());
}

TEST_CASE("cancelling a gRPC Generate mid-stream frees its KV blocks") {
  ServerProcess& s = SharedServer();
  auto stub = StubTo(s);
  REQUIRE(WaitForKvUsageZero(s.port(), 2000));
  {
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    auto reader = stub->Generate(&ctx, GreedyRequest("Tell me a long story", 2000));
    v1::GenerateResponse m;
    for (int i = 0; i < 3; ++i) REQUIRE(reader->Read(&m));
    CHECK(KvUsage(s.port()) > 0.0);
    ctx.TryCancel();
    while (reader->Read(&m)) {
    }
    CHECK(reader->Finish().error_code() == grpc::StatusCode::CANCELLED);
  }
  CHECK(WaitForKvUsageZero(s.port(), 1000));
  CHECK(Generate(*stub, GreedyRequest("The capital of France is", 6)).status.ok());
}

TEST_CASE("gRPC API key: missing or wrong key is UNAUTHENTICATED; health stays open") {
  ServerProcess& s = StrictServer();
  INFO(s.log());
  auto stub = StubTo(s);
  CHECK(Generate(*stub, GreedyRequest("Hi", 2)).status.error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  CHECK(Generate(*stub, GreedyRequest("Hi", 2), "sekre").status.error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  CHECK(Generate(*stub, GreedyRequest("Hi", 2), "sekret-").status.error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext mctx;
  v1::ListModelsResponse models;
  CHECK(stub->ListModels(&mctx, v1::ListModelsRequest(), &models).error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status status;
  CHECK(Health(s, "", &status) == wire::HealthCheckResponse::SERVING);
  CHECK(Generate(*stub, GreedyRequest("The capital of France is", 6), "sekret")
            .Text()
            .find("Paris") != std::string::npos);
}

TEST_CASE("a gRPC message over the size limit gets RESOURCE_EXHAUSTED (ROBUSTNESS 20)") {
  ServerProcess& s = StrictServer();
  auto stub = StubTo(s);
  const Streamed out = Generate(*stub, GreedyRequest(std::string(100 << 10, 'a'), 2), "sekret");
  CHECK(out.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK(Generate(*stub, GreedyRequest("The capital of France is", 6), "sekret").status.ok());
}

TEST_CASE("a gRPC client that stops reading is cut off; its request is aborted (ROBUSTNESS 20)") {
  ServerProcess& s = StrictServer();
  // A tiny receive window and no BDP probing: the server's writes block
  // after a few messages, so the engine's events pile up unread.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  args.SetInt(GRPC_ARG_MAX_CONCURRENT_STREAMS, 1);
  auto stub = v1::AlignServe::NewStub(ChannelTo(s, args));
  REQUIRE(WaitForKvUsageZero(s.port(), 2000));
  grpc::ClientContext ctx;
  SetDeadline(ctx, 60);
  ctx.AddMetadata("authorization", "Bearer sekret");
  v1::GenerateRequest r = GreedyRequest("Tell me a long story", 1500);
  r.mutable_sampling()->set_logprobs(20);  // large messages
  auto reader = stub->Generate(&ctx, r);
  // Read nothing: the server must give up on us and free the KV cache.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(WaitForKvUsageZero(s.port(), 30000));
  v1::GenerateResponse m;
  int read = 0;
  while (reader->Read(&m)) ++read;
  const grpc::Status status = reader->Finish();
  CHECK(status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK(read < 1500);
  auto fresh = StubTo(s);
  CHECK(Generate(*fresh, GreedyRequest("The capital of France is", 6), "sekret").status.ok());
}

TEST_CASE("HTTP and gRPC share one queue cap: full through either, the other refuses") {
  ServerProcess s({"--model", "default", "--grpc-port", "0", "--max-queued-requests", "1"});
  INFO(s.log());
  auto stub = StubTo(s);
  const std::string long_body =
      R"({"model":"default","prompt":"Go on","max_tokens":300,"ignore_eos":true})";
  SECTION("filled through HTTP, gRPC Generate gets RESOURCE_EXHAUSTED") {
    HttpTestClient busy(s.port());
    REQUIRE(busy.Request("POST", "/v1/completions", long_body));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const Streamed refused = Generate(*stub, GreedyRequest("Hi", 2));
    CHECK(refused.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    CHECK(refused.status.error_message().find("--max-queued-requests 1") != std::string::npos);
    CHECK(refused.messages.empty());
    CHECK(busy.Read().status == 200);
  }
  SECTION("filled through gRPC, HTTP gets 429 with Retry-After") {
    grpc::ClientContext ctx;
    SetDeadline(ctx, 60);
    auto reader = stub->Generate(&ctx, GreedyRequest("Go on", 300));
    v1::GenerateResponse m;
    REQUIRE(reader->Read(&m));  // admitted and running
    HttpTestClient c(s.port());
    REQUIRE(c.Request("POST", "/v1/completions", R"({"model":"default","prompt":"Hi"})"));
    const HttpResponse refused = c.Read();
    CHECK(refused.status == 429);
    CHECK(refused.headers.count("retry-after") == 1);
    const json error = json::parse(refused.body)["error"];
    CHECK(error["type"] == "rate_limit_error");
    CHECK(error["message"].get<std::string>().find("--max-queued-requests 1") != std::string::npos);
    while (reader->Read(&m)) {
    }
    CHECK(reader->Finish().ok());
  }
  // Answered requests no longer count: both front ends admit again at once.
  CHECK(Generate(*stub, GreedyRequest("The capital of France is", 6)).Text().find("Paris") !=
        std::string::npos);
  CHECK(HttpPost(s.port(), "/v1/completions",
                 json{{"model", "default"},
                      {"prompt", "Hi"},
                      {"max_tokens", 2}})["usage"]["completion_tokens"] == 2);
}

TEST_CASE("SIGTERM stops the gRPC server with the HTTP one, exit 0") {
  ServerProcess& s = StrictServer();
  REQUIRE(s.ok());
  CHECK(s.Stop(SIGTERM, 30) == 0);
  CHECK(s.log().find("stopped") != std::string::npos);
}

}  // namespace
}  // namespace alignserve
