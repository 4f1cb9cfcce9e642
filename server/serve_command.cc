// `alignserve serve`: the OpenAI-compatible HTTP server over the engine,
// and beside it the gRPC API (alignserve.v1, server/grpc_server.h) where the
// build has gRPC.
//
// Start-up order follows what operators probe: the HTTP port opens first
// (/health answers, /ready is 503 while the model loads), then the model
// loads and the KV cache is sized, then /ready turns 200. SIGTERM or SIGINT
// drains: the port stops accepting, new generation requests get 503, those
// in flight finish within --shutdown-timeout seconds (then they are
// aborted), and the process exits 0. The gRPC server starts right after
// the HTTP one, reports SERVING on grpc.health.v1 once the model is loaded
// and NOT_SERVING while draining, and stops after the engine has drained.
// The served model is also the judge reward model of the `alignment`
// extension (best_of_n, soft_best_of_n, args, blockwise_cd, prm_beam_search),
// built once the model loads (--judge-rubric); --reward-model declares
// reward models with weights of their own (server/reward_models.h), loaded
// before the served model as scorer engines with their own KV pools. --default-policy gives every
// request that names no policy one; it is checked, with the --policy-plugin libraries loaded,
// before the HTTP port opens.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "alignment/judge_reward_model.h"
#include "alignment/policy_factory.h"
#include "engine/async_engine.h"
#include "kernels/status_macros.h"
#include "server/admission_counter.h"
#include "server/alignment_spec.h"
#include "server/cli_args.h"
#include "server/commands.h"
#include "server/engine_setup.h"
#include "server/http_server.h"
#include "server/openai_server.h"
#include "server/reward_models.h"
#include "server/serving_metrics.h"
#ifdef ALIGNSERVE_HAVE_GRPC
#include "server/grpc_server.h"
#endif

namespace alignserve {
namespace {

struct ServeFlags {
  EngineFlags engine;
  std::string host = "127.0.0.1";
  int port = 8000;
  // -1: off; 0: any free port. The default port is best-effort: when it is
  // taken, serve warns and runs without gRPC; a port given explicitly must bind.
  int grpc_port = 50051;
  bool grpc_port_given = false;
  int grpc_max_unread_events = 1024;
  std::string api_key;
  std::string allowed_origins;    // comma-separated
  std::string served_model_name;  // empty: the model's file or folder name
  int max_queued_requests = 1024;
  int shutdown_timeout = 30;  // seconds
  int http_threads = 2;
  int liveness_timeout = 60;   // seconds
  std::string chat_template;   // a Jinja file replacing the model's template
  std::string judge_rubric;    // the judge's rubric template file; empty: the default
  std::string policy_plugins;  // NAME=path.so[,NAME=path.so...]
  std::string default_policy;  // empty: plain sampling
  std::string default_policy_params = "{}";
  RewardModelFlags rewards;
  std::string metrics_prefix = kVllmStylePrefix;
  int max_request_kib = 8192;
  std::optional<uint64_t> seed;
};

absl::Status CheckFlags(const ServeFlags& f) {
  if (f.port < 0 || f.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--port must be in [0, 65535], got ", f.port));
  }
  if (f.grpc_port < -1 || f.grpc_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--grpc-port must be in [-1, 65535], got ", f.grpc_port));
  }
  RETURN_IF_ERROR(RequirePositive("grpc-max-unread-events", f.grpc_max_unread_events));
  RETURN_IF_ERROR(RequirePositive("max-queued-requests", f.max_queued_requests));
  if (f.shutdown_timeout < 0) return absl::InvalidArgumentError("--shutdown-timeout must be >= 0");
  RETURN_IF_ERROR(RequirePositive("http-threads", f.http_threads));
  RETURN_IF_ERROR(RequirePositive("liveness-timeout", f.liveness_timeout));
  if (!IsValidMetricPrefix(f.metrics_prefix)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics-prefix must be letters, digits, '_' or ':' (not a digit first), got '",
        f.metrics_prefix, "'"));
  }
  RETURN_IF_ERROR(RequirePositive("max-request-kib", f.max_request_kib));
  RETURN_IF_ERROR(ParseRewardModelFlags(f.rewards).status());
  if (f.engine.skip_tokenizer_init) {
    return absl::InvalidArgumentError(
        "serve needs the model's tokenizer for the OpenAI API; drop --skip-tokenizer-init");
  }
  return CheckEngineFlags(f.engine);
}

// Blocks SIGINT and SIGTERM in this thread and every thread it starts later,
// so that sigwait in Serve receives them synchronously.
sigset_t BlockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

// The --chat-template file, parsed with the interpreter's default limits
// (a runaway render is a 400, models/chat/chat_template.h); none when unset.
absl::StatusOr<std::optional<ChatTemplate>> LoadChatTemplate(const std::string& path) {
  if (path.empty()) return std::optional<ChatTemplate>();
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("--chat-template: cannot read ", path));
  std::stringstream source;
  source << in.rdbuf();
  absl::StatusOr<ChatTemplate> parsed = ChatTemplate::Create(source.str());
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(),
                        absl::StrCat("--chat-template ", path, ": ", parsed.status().message()));
  }
  return std::optional<ChatTemplate>(std::move(*parsed));
}

// The --judge-rubric template, read before the model loads so that a bad
// file fails at once; the default rubric when unset.
absl::StatusOr<Rubric> LoadJudgeRubric(const std::string& path) {
  if (path.empty()) return Rubric::Default();
  absl::StatusOr<Rubric> rubric = Rubric::Load(path);
  if (!rubric.ok()) {
    return absl::Status(rubric.status().code(),
                        absl::StrCat("--judge-rubric: ", rubric.status().message()));
  }
  return rubric;
}

// --policy-plugin NAME=path.so[,...]: each library loaded (and its ABI
// version checked) before the model, so a bad one fails at once.
absl::StatusOr<std::map<std::string, std::shared_ptr<PolicyPlugin>>> LoadPolicyPlugins(
    const std::string& flag) {
  std::map<std::string, std::shared_ptr<PolicyPlugin>> plugins;
  for (absl::string_view item : absl::StrSplit(flag, ',', absl::SkipWhitespace())) {
    absl::StatusOr<std::pair<std::string, std::string>> parsed =
        ParsePolicyPluginFlag(std::string_view(item.data(), item.size()));
    absl::StatusOr<std::shared_ptr<PolicyPlugin>> plugin =
        parsed.ok() ? LoadPolicyPlugin(parsed->second)
                    : absl::StatusOr<std::shared_ptr<PolicyPlugin>>(parsed.status());
    if (!plugin.ok()) {
      return absl::Status(plugin.status().code(),
                          absl::StrCat("--policy-plugin: ", plugin.status().message()));
    }
    if (parsed->first == kNoPolicy) {
      return absl::InvalidArgumentError(
          absl::StrCat("--policy-plugin: '", kNoPolicy,
                       "' means no policy in requests; give the plugin another NAME"));
    }
    if (!plugins.emplace(parsed->first, *std::move(plugin)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--policy-plugin: '", parsed->first, "' is given twice"));
    }
    std::fprintf(stderr, "alignserve: policy plugin '%s' loaded from %s\n", parsed->first.c_str(),
                 parsed->second.c_str());
  }
  return plugins;
}

// What serve loaded and checked before it starts: the --policy-plugin
// libraries and the --default-policy they may name.
struct ServePolicies {
  std::map<std::string, std::shared_ptr<PolicyPlugin>> plugins;
  AlignmentSpec default_alignment;
};

absl::Status Serve(const ServeFlags& f, const ServePolicies& policies) {
  const sigset_t stop_signals = BlockStopSignals();
  ASSIGN_OR_RETURN(const std::optional<ChatTemplate> chat_template,
                   LoadChatTemplate(f.chat_template));
  ASSIGN_OR_RETURN(Rubric judge_rubric, LoadJudgeRubric(f.judge_rubric));
  OpenAiServerOptions server_options;
  server_options.chat_template = chat_template ? &*chat_template : nullptr;
  server_options.policy_plugins = &policies.plugins;
  server_options.default_alignment = policies.default_alignment;
  server_options.liveness_timeout = std::chrono::seconds(f.liveness_timeout);
  server_options.api_key = f.api_key;
  server_options.metrics_prefix = f.metrics_prefix;
  server_options.allowed_origins = absl::StrSplit(f.allowed_origins, ',', absl::SkipWhitespace());
  server_options.max_queued_requests = f.max_queued_requests;
  // One count for HTTP and gRPC, so either front end sees the other's requests.
  server_options.admission = std::make_shared<AdmissionCounter>(f.max_queued_requests);
  server_options.served_model_name =
      f.served_model_name.empty() ? f.engine.model : f.served_model_name;
  OpenAiServer api(server_options);
  HttpServerOptions http_options;
  http_options.host = f.host;
  http_options.port = static_cast<uint16_t>(f.port);
  http_options.threads = f.http_threads;
  http_options.max_body_bytes = static_cast<size_t>(f.max_request_kib) << 10;
  HttpServer http(http_options,
                  [&api](const HttpRequest& request, std::shared_ptr<HttpExchange> exchange) {
                    api.Handle(request, std::move(exchange));
                  });
  RETURN_IF_ERROR(http.Start());
  std::fprintf(stderr, "alignserve: listening on http://%s:%u (loading the model)\n",
               f.host.c_str(), http.port());
#ifdef ALIGNSERVE_HAVE_GRPC
  std::unique_ptr<GrpcServer> grpc;
  if (f.grpc_port >= 0) {
    GrpcServerOptions grpc_options;
    grpc_options.host = f.host;
    grpc_options.port = f.grpc_port;
    grpc_options.served_model_name = server_options.served_model_name;
    grpc_options.api_key = f.api_key;
    grpc_options.max_receive_bytes =
        static_cast<int>(std::min<int64_t>(int64_t{f.max_request_kib} << 10, INT32_MAX));
    grpc_options.max_queued_requests = f.max_queued_requests;
    grpc_options.admission = server_options.admission;
    grpc_options.max_unread_events = f.grpc_max_unread_events;
    grpc_options.metrics = api.metrics();
    grpc_options.chat_template = server_options.chat_template;
    grpc_options.policy_plugins = server_options.policy_plugins;
    grpc_options.default_alignment = server_options.default_alignment;
    grpc = std::make_unique<GrpcServer>(grpc_options);
    absl::Status started = grpc->Start();
    if (!started.ok() && f.grpc_port_given) return started;
    if (!started.ok()) {
      std::fprintf(stderr, "alignserve: warning: %s; serving without gRPC (set --grpc-port)\n",
                   std::string(started.message()).c_str());
      grpc.reset();
    } else {
      std::fprintf(stderr, "alignserve: gRPC on %s:%d\n", f.host.c_str(), grpc->port());
    }
  }
#endif

  // Reward models with weights of their own load first: on a GPU they take
  // up to --reward-gpu-memory-utilization, and the served model's
  // --gpu-memory-utilization caps the total.
  ASSIGN_OR_RETURN(const std::vector<RewardModelSpec> reward_specs,
                   ParseRewardModelFlags(f.rewards));
  ASSIGN_OR_RETURN(std::vector<std::unique_ptr<LlmEngine>> scorers,
                   BuildScorerEngines(reward_specs, f.engine, f.rewards));
  ASSIGN_OR_RETURN(std::unique_ptr<LlmEngine> llm, BuildEngine(f.engine, 0, f.seed.value_or(0)));
  const ModelText* text = &llm->text();
  const int max_model_len = llm->config().scheduler.max_model_len;
  const int vocab = llm->vocab_size();
  // The reward models of the `alignment` extension: "judge" (the served
  // model reading the rubric) and each --reward-model, attached to the
  // served engine as scorers; made once and shared by every request.
  ASSIGN_OR_RETURN(
      std::unique_ptr<RewardModelSet> reward_models,
      RewardModelSet::Create(*llm, std::move(scorers), reward_specs, judge_rubric,
                             f.rewards.default_reward_model, f.rewards.self_judge_question));
  for (const RewardModelSpec& spec : reward_specs) {
    std::fprintf(stderr, "alignserve: reward model '%s' (%s) from %s\n", spec.name.c_str(),
                 spec.kind.c_str(), spec.path.c_str());
  }
  ASSIGN_OR_RETURN(const std::shared_ptr<const RewardModel> default_reward,
                   reward_models->Find(""));
  ASSIGN_OR_RETURN(std::unique_ptr<AsyncEngine> engine, AsyncEngine::Create(std::move(llm)));
  api.SetEngine(engine.get(), text, max_model_len, vocab, default_reward, reward_models.get());
#ifdef ALIGNSERVE_HAVE_GRPC
  if (grpc) {
    grpc->SetEngine(engine.get(), text, max_model_len, vocab, default_reward, reward_models.get());
  }
#endif
  std::fprintf(stderr, "alignserve: ready: model '%s' on http://%s:%u/v1 (max_model_len %d)\n",
               server_options.served_model_name.c_str(), f.host.c_str(), http.port(),
               max_model_len);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::fprintf(stderr, "alignserve: %s: draining (up to %d s)\n",
               signal_number == SIGTERM ? "SIGTERM" : "SIGINT", f.shutdown_timeout);
  api.SetDraining();
#ifdef ALIGNSERVE_HAVE_GRPC
  if (grpc) grpc->SetDraining();
#endif
  http.StopAccepting();
  engine->Shutdown(std::chrono::seconds(f.shutdown_timeout));
#ifdef ALIGNSERVE_HAVE_GRPC
  // Every stream has its terminal event now; give them a moment to reach
  // their clients, then cancel what is left.
  if (grpc) grpc->Shutdown(std::chrono::seconds(2));
#endif
  // Let the last events reach their connections before closing them.
  for (int i = 0; i < 100 && http.open_connections() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  http.Stop();
  std::fprintf(stderr, "alignserve: stopped\n");
  return absl::OkStatus();
}

}  // namespace

int RunServe(int argc, char** argv) {
  ServeFlags f;
  ArgParser args("alignserve serve",
                 "Serves the model over an OpenAI-compatible HTTP API (/v1/completions, "
                 "/v1/chat/completions, /v1/models, /tokenize, /detokenize) with /health, "
                 "/ready and Prometheus /metrics, and the alignserve.v1 gRPC API where built. "
                 "A request runs under an alignment policy when it names one (\"alignment\": "
                 "{\"policy\", \"params\", \"reward_model\"}; \"none\": plain sampling) or "
                 "when --default-policy is set. SIGTERM drains and exits 0.");
  AddEngineFlags(args, &f.engine);
  args.AddString("host", &f.host, "address to listen on (127.0.0.1: this machine only)");
  args.AddInt("port", &f.port, "HTTP port (0: any free port, printed at start)");
#ifdef ALIGNSERVE_HAVE_GRPC
  args.AddInt("grpc-port", &f.grpc_port,
              "gRPC port of the alignserve.v1 API (0: any free port, printed at start; -1: off)");
  args.AddInt("grpc-max-unread-events", &f.grpc_max_unread_events,
              "a gRPC Generate stream whose client leaves more engine events unread than this "
              "is aborted with RESOURCE_EXHAUSTED");
#endif
  args.AddString("api-key", &f.api_key,
                 "require 'Authorization: Bearer KEY' on /v1 routes and gRPC calls (empty: no "
                 "key)");
  args.AddString("allowed-origins", &f.allowed_origins,
                 "comma-separated browser origins allowed cross-origin (CORS); '*' for any; "
                 "empty: none");
  args.AddString("served-model-name", &f.served_model_name,
                 "the model name clients send (default: the --model value)");
  args.AddInt("max-queued-requests", &f.max_queued_requests,
              "unfinished requests beyond this are refused with 429 and Retry-After");
  args.AddInt("shutdown-timeout", &f.shutdown_timeout,
              "seconds in-flight requests may run after SIGTERM before they are aborted");
  args.AddInt("http-threads", &f.http_threads, "threads of the HTTP event loop");
  args.AddInt("liveness-timeout", &f.liveness_timeout,
              "GET /health is 503 when the engine has requests but made no progress for this "
              "many seconds, or when its last forward pass failed (for as long, or until one "
              "succeeds)");
  args.AddString("metrics-prefix", &f.metrics_prefix,
                 "opens every /metrics name: 'alignserve:' mirrors vLLM's 'vllm:' names; "
                 "'alignserve_' passes promtool's lint (colons are for recording rules)");
  args.AddString("chat-template", &f.chat_template,
                 "a Jinja chat template file to render chats with instead of the model's own");
  args.AddString("judge-rubric", &f.judge_rubric,
                 "rubric template file of the judge reward model (the served model scoring "
                 "{prompt} and {response} for best_of_n, soft_best_of_n, args, blockwise_cd and "
                 "prm_beam_search); empty: "
                 "the built-in "
                 "helpfulness-and-harmlessness rubric");
  AddRewardModelFlags(args, &f.rewards);
  args.AddString("policy-plugin", &f.policy_plugins,
                 "decoding policies built outside the tree: NAME=path.so[,NAME=path.so...] "
                 "(alignment/plugin_abi.h); requests name them as alignment.policy");
  args.AddString("default-policy", &f.default_policy,
                 absl::StrCat("alignment policy of every HTTP and gRPC request that names none (",
                              absl::StrJoin(ImplementedPolicyNames(), ", "),
                              " or a --policy-plugin NAME); a request opts out with "
                              "\"alignment\": {\"policy\": \"none\"}; empty or none: plain "
                              "sampling"));
  args.AddString("default-policy-params", &f.default_policy_params,
                 "params of --default-policy, a JSON object such as '{\"n\": 4}'; checked at "
                 "start, as a request's alignment.params");
  args.AddInt("max-request-kib", &f.max_request_kib, "largest request body (KiB); larger: 413");
  args.AddOptionalUint64("seed", &f.seed, "base seed of requests that set none; unset: 0");
  absl::Status s = args.Parse(argc, argv, 2);
  if (args.help_requested()) {
    std::fputs(args.Help().c_str(), stdout);
    return 0;
  }
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--grpc-port" || arg.rfind("--grpc-port=", 0) == 0) f.grpc_port_given = true;
  }
  if (s.ok()) s = CheckFlags(f);
  if (!s.ok()) {
    std::fprintf(stderr, "alignserve serve: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  // Loaded before anything listens, so a bad library or default policy fails at once.
  ServePolicies policies;
  absl::StatusOr<std::map<std::string, std::shared_ptr<PolicyPlugin>>> plugins =
      LoadPolicyPlugins(f.policy_plugins);
  if (!plugins.ok()) {
    std::fprintf(stderr, "alignserve serve: %s\n", std::string(plugins.status().message()).c_str());
    return 1;
  }
  policies.plugins = *std::move(plugins);
  absl::StatusOr<AlignmentSpec> default_alignment =
      ParseDefaultPolicyFlags(f.default_policy, f.default_policy_params, &policies.plugins);
  if (!default_alignment.ok()) {
    std::fprintf(stderr, "alignserve serve: %s\n",
                 std::string(default_alignment.status().message()).c_str());
    return 2;  // a flag's value, as CheckFlags' errors
  }
  policies.default_alignment = *std::move(default_alignment);
  s = Serve(f, policies);
  if (!s.ok()) {
    std::fprintf(stderr, "alignserve serve: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace alignserve
