// `alignserve generate`: one prompt through the engine (LlmEngine) on the
// CPU or a GPU (--device), its text streamed to stdout as the engine produces it; the
// first step's time is the prompt's, the rest are decode steps.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/llm_engine.h"
#include "kernels/status_macros.h"
#include "models/model_loader.h"
#include "server/cli_args.h"
#include "server/commands.h"
#include "server/engine_setup.h"

namespace alignserve {
namespace {

struct GenerateFlags {
  std::string model = "default";
  std::string device = "cpu";
  std::string cpu_matmul = "auto";
  std::string prompt;
  std::string system;
  bool chat = false;
  int block_size = 16;
  SamplingParams sampling = [] {
    SamplingParams p;
    p.max_tokens = 128;
    return p;
  }();
};

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

absl::StatusOr<std::vector<int32_t>> PromptIds(const GenerateFlags& f, const ModelText& text) {
  if (!f.chat) return text.tokenizer->Encode(f.prompt, text.tokenizer->add_bos_by_default());
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  if (!f.system.empty()) messages.push_back({{"role", "system"}, {"content", f.system}});
  messages.push_back({{"role", "user"}, {"content", f.prompt}});
  absl::StatusOr<std::string> rendered = text.RenderChat(messages);
  if (!rendered.ok()) return rendered.status();
  // The template writes any BOS itself, as apply_chat_template(tokenize=True).
  return text.tokenizer->Encode(*rendered, /*add_bos=*/false);
}

absl::Status Generate(const GenerateFlags& f) {
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, CreateBackend(f.device, f.cpu_matmul));
  RETURN_IF_ERROR(ConfigureKvCacheDtype(*backend, "auto", f.device, f.cpu_matmul));
  const Clock::time_point load_start = Clock::now();
  ASSIGN_OR_RETURN(std::unique_ptr<LoadedModel> loaded, LoadModel(f.model, *backend));
  Model& model = *loaded->model;
  const ModelText& text = loaded->text;
  std::fprintf(stderr, "alignserve: loaded %s (%d layers, hidden %d, vocab %d) in %.2f s\n",
               loaded->name.c_str(), model.config().num_layers, model.config().hidden_size,
               model.config().vocab_size, Seconds(load_start, Clock::now()));
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, PromptIds(f, text));
  if (ids.empty()) return absl::InvalidArgumentError("the prompt is empty");
  const int total =
      std::min<int>(static_cast<int>(ids.size()) + f.sampling.max_tokens, model.max_model_len());
  if (static_cast<int>(ids.size()) >= total) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the prompt has ", ids.size(), " tokens; the model's limit is ", model.max_model_len()));
  }
  EngineConfig config;
  config.scheduler.block_size = f.block_size;
  config.scheduler.num_blocks = (total + f.block_size - 1) / f.block_size;
  config.scheduler.max_model_len = total;
  config.scheduler.max_num_batched_tokens = std::max<int>(2048, static_cast<int>(ids.size()));
  ASSIGN_OR_RETURN(std::unique_ptr<LlmEngine> engine, LlmEngine::Create(model, text, config));
  const size_t prompt_len = ids.size();
  RETURN_IF_ERROR(engine->AddRequest(0, std::move(ids), f.sampling));
  int generated = 0;
  const Clock::time_point t0 = Clock::now();
  Clock::time_point t_first = t0;
  while (engine->HasUnfinished()) {
    ASSIGN_OR_RETURN(std::vector<RequestOutput> outputs, engine->Step());
    for (const RequestOutput& o : outputs) {
      if (generated == 0 && !o.new_token_ids.empty()) t_first = Clock::now();
      generated += static_cast<int>(o.new_token_ids.size());
      std::fputs(o.text.c_str(), stdout);
    }
    std::fflush(stdout);
  }
  std::fputs("\n", stdout);
  const Clock::time_point t_end = Clock::now();
  const double prefill_s = Seconds(t0, t_first), decode_s = Seconds(t_first, t_end);
  std::fprintf(stderr,
               "alignserve: prompt %zu tokens in %.3f s (%.1f tok/s); decode %d tokens in "
               "%.3f s (%.1f tok/s)\n",
               prompt_len, prefill_s, prompt_len / prefill_s, generated - 1, decode_s,
               generated > 1 ? (generated - 1) / decode_s : 0.0);
  return absl::OkStatus();
}

}  // namespace

int RunGenerate(int argc, char** argv) {
  GenerateFlags f;
  ArgParser args("alignserve generate",
                 "Streams one completion of --prompt to stdout, then prints prompt "
                 "and decode speed to stderr.");
  args.AddString("model", &f.model, "a .gguf file, a Hugging Face model folder, or 'default'");
  args.AddString("device", &f.device, "cpu, cuda (GPU 0) or cuda:N");
  args.AddString("cpu-matmul", &f.cpu_matmul,
                 "CPU matrix products: exact, i16, int8 or auto (see 'serve --help')");
  args.AddString("prompt", &f.prompt, "the prompt text");
  args.AddBool("chat", &f.chat, "wrap the prompt as a user turn in the model's chat template");
  args.AddString("system", &f.system, "system message for --chat");
  args.AddInt("max-tokens", &f.sampling.max_tokens, "most tokens to generate");
  args.AddFloat("temperature", &f.sampling.temperature, "sampling temperature; 0 is greedy");
  args.AddFloat("top-p", &f.sampling.top_p, "nucleus sampling mass");
  args.AddInt("top-k", &f.sampling.top_k, "keep the k most likely tokens; 0 is off");
  args.AddFloat("min-p", &f.sampling.min_p, "drop tokens below min-p times the top probability");
  args.AddOptionalUint64("seed", &f.sampling.seed, "RNG seed for reproducible sampling");
  args.AddBool("ignore-eos", &f.sampling.ignore_eos, "keep generating past end-of-sequence tokens");
  absl::Status s = args.Parse(argc, argv, 2);
  if (args.help_requested()) {
    std::fputs(args.Help().c_str(), stdout);
    return 0;
  }
  if (s.ok() && f.prompt.empty()) s = absl::InvalidArgumentError("--prompt is required");
  if (s.ok() && f.sampling.max_tokens <= 0) {
    s = absl::InvalidArgumentError("--max-tokens must be > 0");
  }
  if (s.ok()) s = Generate(f);
  if (!s.ok()) {
    std::fprintf(stderr, "alignserve generate: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace alignserve
