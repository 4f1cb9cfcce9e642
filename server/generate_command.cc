// `alignserve generate`: one prompt, streamed, on the CPU backend. A direct
// loop over the model (prefill, then one decode step per token) that shows
// the runtime works end to end and measures prompt and decode speed.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/sampler.h"
#include "kernels/cpu/cpu_backend.h"
#include "models/model_loader.h"
#include "models/tokenizer/incremental_detokenizer.h"
#include "server/cli_args.h"
#include "server/commands.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace alignserve {
namespace {

struct GenerateFlags {
  std::string model = "default";
  std::string prompt;
  std::string system;
  bool chat = false;
  int max_tokens = 128;
  int block_size = 16;
  bool ignore_eos = false;
  SamplingParams sampling;
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
  CpuBackend backend;
  const Clock::time_point load_start = Clock::now();
  ASSIGN_OR_RETURN(std::unique_ptr<LoadedModel> loaded, LoadModel(f.model, backend));
  Model& model = *loaded->model;
  const ModelText& text = loaded->text;
  std::fprintf(stderr, "alignserve: loaded %s (%d layers, hidden %d, vocab %d) in %.2f s\n",
               loaded->name.c_str(), model.config().num_layers, model.config().hidden_size,
               model.config().vocab_size, Seconds(load_start, Clock::now()));
  RETURN_IF_ERROR(f.sampling.Validate(model.config().vocab_size));
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, PromptIds(f, text));
  if (ids.empty()) return absl::InvalidArgumentError("the prompt is empty");
  const int total = std::min<int>(static_cast<int>(ids.size()) + f.max_tokens,
                                  model.max_model_len());
  if (static_cast<int>(ids.size()) >= total) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", ids.size(),
                                                   " tokens; the model's limit is ",
                                                   model.max_model_len()));
  }
  const int num_blocks = (total + f.block_size - 1) / f.block_size;
  ASSIGN_OR_RETURN(std::unique_ptr<KvCache> cache, model.AllocateKvCache(num_blocks, f.block_size));
  std::vector<int32_t> blocks(num_blocks);
  for (int i = 0; i < num_blocks; ++i) blocks[i] = i;

  Sampler sampler(f.sampling);
  IncrementalDetokenizer detok(*text.tokenizer, /*skip_special=*/true);
  std::vector<int32_t> step = ids;
  int pos = 0, generated = 0;
  Clock::time_point t0 = Clock::now(), t_first = t0;
  ForwardOutput out;
  while (pos + static_cast<int>(step.size()) <= total && generated < f.max_tokens) {
    BatchLayout layout;
    layout.AddSequence(step, pos, blocks, f.block_size, /*want_logits=*/true);
    layout.Finish();
    RETURN_IF_ERROR(model.Forward(layout, *cache, false, out));
    pos += static_cast<int>(step.size());
    const int32_t next = sampler.Sample({out.logits.data(), out.logits.size()});
    if (generated++ == 0) t_first = Clock::now();
    if (!f.ignore_eos && text.IsStopToken(next)) break;
    std::fputs(detok.Append(next).c_str(), stdout);
    std::fflush(stdout);
    step = {next};
  }
  std::fputs(detok.Flush().c_str(), stdout);
  std::fputs("\n", stdout);
  const Clock::time_point t_end = Clock::now();
  const double prefill_s = Seconds(t0, t_first), decode_s = Seconds(t_first, t_end);
  std::fprintf(stderr,
               "alignserve: prompt %zu tokens in %.3f s (%.1f tok/s); decode %d tokens in "
               "%.3f s (%.1f tok/s)\n",
               ids.size(), prefill_s, ids.size() / prefill_s, generated - 1, decode_s,
               generated > 1 ? (generated - 1) / decode_s : 0.0);
  return absl::OkStatus();
}

}  // namespace

int RunGenerate(int argc, char** argv) {
  GenerateFlags f;
  ArgParser args("generate", "Streams one completion of --prompt to stdout, then prints prompt "
                             "and decode speed to stderr.");
  args.AddString("model", &f.model, "a .gguf file, a Hugging Face model folder, or 'default'");
  args.AddString("prompt", &f.prompt, "the prompt text");
  args.AddBool("chat", &f.chat, "wrap the prompt as a user turn in the model's chat template");
  args.AddString("system", &f.system, "system message for --chat");
  args.AddInt("max-tokens", &f.max_tokens, "most tokens to generate");
  args.AddFloat("temperature", &f.sampling.temperature, "sampling temperature; 0 is greedy");
  args.AddFloat("top-p", &f.sampling.top_p, "nucleus sampling mass");
  args.AddInt("top-k", &f.sampling.top_k, "keep the k most likely tokens; 0 is off");
  args.AddFloat("min-p", &f.sampling.min_p, "drop tokens below min-p times the top probability");
  args.AddOptionalUint64("seed", &f.sampling.seed, "RNG seed for reproducible sampling");
  args.AddBool("ignore-eos", &f.ignore_eos, "keep generating past end-of-sequence tokens");
  absl::Status s = args.Parse(argc, argv, 2);
  if (args.help_requested()) {
    std::fputs(args.Help().c_str(), stdout);
    return 0;
  }
  if (s.ok() && f.prompt.empty()) s = absl::InvalidArgumentError("--prompt is required");
  if (s.ok() && f.max_tokens <= 0) s = absl::InvalidArgumentError("--max-tokens must be > 0");
  if (s.ok()) s = Generate(f);
  if (!s.ok()) {
    std::fprintf(stderr, "alignserve generate: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace alignserve
