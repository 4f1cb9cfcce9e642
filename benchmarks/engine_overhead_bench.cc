// engine_overhead_bench: the engine's host time per decode step with no
// model cost, i.e. what LlmEngine::Step adds around the forward pass
// (schedule, batch layout, sampling, stop checks, detokenizing, Update) and
// what pushing its outputs into request streams costs (as AsyncEngine's
// engine thread does). On a GPU this time is idle device time.
//
//   engine_overhead_bench [--seqs 1,64,256] [--prompt-len 1000]
//                         [--steps 200] [--warmup 20] [--vocab 128256]
//                         [--tokenizer none|default|PATH]
//                         [--sampling both|all|greedy|temperature|device|
//                                     device-penalties] [--no-streams]
//
// The model is a stand-in (NullModel): its forward pass returns, for each
// logits row, an argmax that is a fixed function of the row's input token
// (never a stop token) and, only for the rows the engine asks whole
// (ForwardOptions::host_logits_rows), a copy of one realistic logits row of
// --vocab floats, so the host path pays the row copy and the sampler as it
// would for real. Each run admits --seqs requests of --prompt-len random
// tokens, prefills them, runs --warmup decode steps, then times --steps
// decode steps of all sequences, for greedy requests (the device argmax
// path) and for temperature 0.8 (the host sampling path); `device` draws
// temperature 0.8 rows through the device-sampling path (the stand-in
// answers each DeviceSamplingRow with its argmax, so what is timed is the
// engine building the rows and folding the results back), and
// `device-penalties` adds repetition, presence and frequency penalties (a
// sparse adjustment per distinct prompt and output token, every step).
// Prints mean and p50 / p90 host microseconds per step and mean per
// sequence-step.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/async_engine.h"
#include "engine/llm_engine.h"
#include "engine/request_stream.h"
#include "kernels/cpu/cpu_backend.h"
#include "models/formats/gguf_file.h"
#include "models/model.h"
#include "models/model_loader.h"
#include "models/model_text.h"
#include "server/cli_args.h"

namespace alignserve {
namespace {

using Clock = std::chrono::steady_clock;

// Generated ids stay in [kFirstToken, kFirstToken + token_range): clear of
// the low special tokens of common vocabularies.
constexpr int32_t kFirstToken = 200;

// A KV cache with no memory: NullModel never reads or writes it.
class NullKvCache final : public KvCache {
 public:
  explicit NullKvCache(const KvCacheSpec& spec) : KvCache(spec) {}
  void* k(int layer) override { return nullptr; }
  void* v(int layer) override { return nullptr; }
};

// A Model whose forward pass costs only filling ForwardOutput.
// Thread-safety: one thread, like any Model.
class NullModel final : public Model {
 public:
  // row: [vocab] the logits every host row gets; token_range: how many ids
  // the argmax may take (see kFirstToken).
  NullModel(std::vector<float> row, int32_t token_range)
      : row_(std::move(row)), token_range_(token_range) {
    config_.architecture = "llama";
    config_.vocab_size = static_cast<int>(row_.size());
    config_.hidden_size = 64;
    config_.intermediate_size = 128;
    config_.num_layers = 1;
    config_.num_heads = 1;
    config_.num_kv_heads = 1;
    config_.head_dim = 64;
    config_.max_position_embeddings = 1 << 20;
  }

  const ModelConfig& config() const override { return config_; }
  Backend& backend() override { return backend_; }
  bool SupportsDeviceSampling() override { return device_sampling_; }
  void set_device_sampling(bool on) { device_sampling_ = on; }
  int max_model_len() const override { return config_.max_position_embeddings; }
  KvCacheSpec KvSpec(int num_blocks, int block_size) override {
    KvCacheSpec spec;
    spec.num_layers = 1;
    spec.num_blocks = num_blocks;
    spec.block_size = block_size;
    spec.num_kv_heads = 1;
    spec.head_dim = 64;
    return spec;
  }
  absl::StatusOr<std::unique_ptr<KvCache>> AllocateKvCache(int num_blocks,
                                                           int block_size) override {
    return std::unique_ptr<KvCache>(new NullKvCache(KvSpec(num_blocks, block_size)));
  }
  absl::Status Forward(const BatchLayout& layout, KvCache& cache, const ForwardOptions& options,
                       ForwardOutput& out) override {
    const size_t rows = layout.logits_indices.size();
    const size_t vocab = row_.size();
    out.num_rows = static_cast<int>(rows);
    out.argmax.resize(rows);
    out.has_logits.assign(rows, 1);
    for (size_t r = 0; r < rows; ++r) {
      const uint32_t input = static_cast<uint32_t>(layout.token_ids[layout.logits_indices[r]]);
      out.argmax[r] = kFirstToken + static_cast<int32_t>((input * 2654435761u + 12345u) %
                                                         static_cast<uint32_t>(token_range_));
      if (!options.host_logits_rows.empty()) out.has_logits[r] = options.host_logits_rows[r];
    }
    out.logits.resize(rows * vocab);
    for (size_t r = 0; r < rows; ++r) {
      if (out.has_logits[r]) std::memcpy(&out.logits[r * vocab], row_.data(), vocab * 4);
    }
    out.sampled.resize(options.device_rows.size());
    for (size_t i = 0; i < options.device_rows.size(); ++i) {
      out.sampled[i] = DeviceSampleResult{};
      out.sampled[i].token = out.argmax[options.device_rows[i].logits_row];
    }
    out.hidden.clear();
    return absl::OkStatus();
  }

 private:
  ModelConfig config_;
  CpuBackend backend_;
  std::vector<float> row_;
  int32_t token_range_;
  bool device_sampling_ = false;
};

// The request kinds a run times (--sampling).
enum class Mode { kGreedy, kTemperature, kDevice, kDevicePenalties };

const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kGreedy:
      return "greedy";
    case Mode::kTemperature:
      return "temp";
    case Mode::kDevice:
      return "device";
    case Mode::kDevicePenalties:
      return "dev+pen";
  }
  return "?";
}

// N(0, 2) plus a few dozen boosted tokens in the generated range (an LLM's
// next-token row puts most of its mass on tens of tokens); stop tokens get
// -inf so that a draw never ends a sequence.
std::vector<float> MakeRow(int vocab, int32_t token_range, const std::vector<int32_t>& stops) {
  std::mt19937 gen(1);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> row(vocab);
  for (float& v : row) v = normal(gen);
  std::uniform_int_distribution<int32_t> pick(kFirstToken, kFirstToken + token_range - 1);
  for (int i = 0; i < 40; ++i) row[pick(gen)] += 14.0f - 0.3f * i;
  for (int32_t id : stops) {
    if (id >= 0 && id < vocab) row[id] = -std::numeric_limits<float>::infinity();
  }
  return row;
}

struct Flags {
  std::string seqs = "1,64,256";
  int prompt_len = 1000;
  int steps = 200;
  int warmup = 20;
  int vocab = 128256;
  std::string tokenizer = "none";
  std::string sampling = "both";
  bool no_streams = false;
};

struct Figures {
  double mean_us = 0, p50_us = 0, p90_us = 0, max_us = 0;
};

Figures Summarize(std::vector<double> micros) {
  Figures f;
  for (double m : micros) f.mean_us += m;
  f.mean_us /= static_cast<double>(micros.size());
  std::sort(micros.begin(), micros.end());
  f.p50_us = micros[micros.size() / 2];
  f.p90_us = micros[micros.size() * 9 / 10];
  f.max_us = micros.back();
  return f;
}

// Pushes one step's outputs as AsyncEngine::RunStep does.
void PushToStreams(std::vector<RequestOutput>& outputs,
                   std::vector<std::unique_ptr<RequestStream>>& streams) {
  for (RequestOutput& o : outputs) {
    const int64_t id = o.request_id;
    streams[id]->Push(ToStreamEvent(std::move(o)));
  }
  // A consumer keeps the queues short; drain them outside the timed region.
}

void Drain(std::vector<std::unique_ptr<RequestStream>>& streams) {
  for (auto& s : streams) {
    while (s->TryNext()) {
    }
  }
}

// One configuration; returns false on an engine error.
bool RunOne(NullModel& model, const ModelText& text, const Flags& f, int num_seqs, Mode mode) {
  model.set_device_sampling(mode == Mode::kDevice || mode == Mode::kDevicePenalties);
  const int total_steps = f.warmup + f.steps;
  EngineConfig config;
  config.scheduler.max_num_seqs = num_seqs;
  config.scheduler.max_num_batched_tokens = 8192;
  // Sequences prefilled early decode while the others still prefill.
  const int max_tokens = total_steps + num_seqs * f.prompt_len / 8192 + 16;
  config.scheduler.max_model_len = f.prompt_len + max_tokens + 16;
  config.scheduler.num_blocks =
      num_seqs * (config.scheduler.max_model_len / config.scheduler.block_size + 2) + 16;
  auto engine = LlmEngine::Create(model, text, config);
  if (!engine.ok()) {
    std::fprintf(stderr, "engine_overhead_bench: %s\n",
                 std::string(engine.status().message()).c_str());
    return false;
  }
  SamplingParams params;
  params.temperature = mode == Mode::kGreedy ? 0.0f : 0.8f;
  params.max_tokens = max_tokens;
  if (mode == Mode::kDevicePenalties) {
    params.repetition_penalty = 1.1f;
    params.presence_penalty = 0.1f;
    params.frequency_penalty = 0.2f;
  }
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> pick(kFirstToken, kFirstToken + 30000);
  std::vector<std::unique_ptr<RequestStream>> streams;
  for (int i = 0; i < num_seqs; ++i) {
    std::vector<int32_t> prompt(f.prompt_len);
    for (int32_t& t : prompt) t = pick(rng);
    streams.push_back(std::make_unique<RequestStream>(i));
    if (!(*engine)->AddRequest(i, std::move(prompt), params).ok()) return false;
  }
  // Prefill until a step samples every sequence: from then on all decode.
  for (bool all_sampled = false; !all_sampled;) {
    auto out = (*engine)->Step();
    if (!out.ok()) return false;
    all_sampled = static_cast<int>(out->size()) == num_seqs;
  }
  std::vector<double> micros;
  for (int step = 0; step < total_steps; ++step) {
    const Clock::time_point t0 = Clock::now();
    auto out = (*engine)->Step();
    if (!out.ok()) return false;
    if (!f.no_streams) PushToStreams(*out, streams);
    const Clock::time_point t1 = Clock::now();
    if (step >= f.warmup)
      micros.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    if (static_cast<int>(out->size()) != num_seqs) {
      std::fprintf(stderr, "engine_overhead_bench: step %d produced %zu outputs, not %d\n", step,
                   out->size(), num_seqs);
      return false;
    }
    Drain(streams);
  }
  const Figures fig = Summarize(micros);
  std::printf(
      "%-6s seqs %4d  step mean %9.1f us  p50 %9.1f  p90 %9.1f  max %9.1f  "
      "per seq-step %7.2f us\n",
      ModeName(mode), num_seqs, fig.mean_us, fig.p50_us, fig.p90_us, fig.max_us,
      fig.mean_us / num_seqs);
  std::fflush(stdout);
  return true;
}

int Run(const Flags& f) {
  std::vector<int> seq_counts;
  for (absl::string_view part : absl::StrSplit(f.seqs, ',', absl::SkipEmpty())) {
    int n = 0;
    if (!absl::SimpleAtoi(part, &n) || n <= 0) {
      std::fprintf(stderr, "engine_overhead_bench: bad --seqs entry '%s'\n",
                   std::string(part).c_str());
      return 2;
    }
    seq_counts.push_back(n);
  }
  ModelText text;  // no tokenizer: token ids only (--skip-tokenizer-init)
  text.stop_token_ids = {f.vocab - 1};
  std::unique_ptr<GgufFile> gguf;
  int32_t token_range = std::min(f.vocab - 1, 100000) - kFirstToken;
  if (f.tokenizer != "none") {
    auto opened = GgufFile::Open(ResolveModelPath(f.tokenizer));
    if (!opened.ok()) {
      std::fprintf(stderr, "engine_overhead_bench: %s\n",
                   std::string(opened.status().message()).c_str());
      return 1;
    }
    gguf = std::move(*opened);
    auto loaded = LoadModelTextFromGguf(*gguf);
    if (!loaded.ok() || loaded->tokenizer == nullptr) {
      std::fprintf(stderr, "engine_overhead_bench: no tokenizer in %s\n", f.tokenizer.c_str());
      return 1;
    }
    text = std::move(*loaded);
    // Generated ids must be ids of the tokenizer (ordinary tokens only).
    token_range = std::min(token_range, text.tokenizer->vocab_size() - 1000 - kFirstToken);
  }
  NullModel model(MakeRow(f.vocab, token_range, text.stop_token_ids), token_range);
  std::printf(
      "engine_overhead_bench: vocab %d, prompt %d, %d timed decode steps after %d, "
      "tokenizer %s, streams %s\n",
      f.vocab, f.prompt_len, f.steps, f.warmup, f.tokenizer.c_str(), f.no_streams ? "off" : "on");
  std::vector<Mode> modes;
  if (f.sampling == "both" || f.sampling == "all" || f.sampling == "greedy") {
    modes.push_back(Mode::kGreedy);
  }
  if (f.sampling == "both" || f.sampling == "all" || f.sampling == "temperature") {
    modes.push_back(Mode::kTemperature);
  }
  if (f.sampling == "all" || f.sampling == "device") modes.push_back(Mode::kDevice);
  if (f.sampling == "all" || f.sampling == "device-penalties") {
    modes.push_back(Mode::kDevicePenalties);
  }
  for (Mode mode : modes) {
    for (int n : seq_counts) {
      if (!RunOne(model, text, f, n, mode)) return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace alignserve

int main(int argc, char** argv) {
  alignserve::Flags f;
  alignserve::ArgParser args("engine_overhead_bench",
                             "Host microseconds per engine decode step with a no-cost model.");
  args.AddString("seqs", &f.seqs, "comma-separated numbers of running sequences");
  args.AddInt("prompt-len", &f.prompt_len, "prompt tokens of each request");
  args.AddInt("steps", &f.steps, "timed decode steps per configuration");
  args.AddInt("warmup", &f.warmup, "decode steps run before timing");
  args.AddInt("vocab", &f.vocab, "vocabulary size (length of a logits row)");
  args.AddString("tokenizer", &f.tokenizer,
                 "none (token ids only), 'default' or a .gguf whose tokenizer detokenizes");
  args.AddString("sampling", &f.sampling,
                 "both (greedy and temperature), all, greedy, temperature, device or "
                 "device-penalties");
  args.AddBool("no-streams", &f.no_streams, "do not push outputs into request streams");
  absl::Status s = args.Parse(argc, argv, 1);
  if (args.help_requested()) {
    std::fputs(args.Help().c_str(), stdout);
    return 0;
  }
  const bool sampling_ok = f.sampling == "both" || f.sampling == "all" || f.sampling == "greedy" ||
                           f.sampling == "temperature" || f.sampling == "device" ||
                           f.sampling == "device-penalties";
  if (!s.ok() || f.prompt_len <= 0 || f.steps <= 0 || f.warmup < 0 || f.vocab < 1000 ||
      !sampling_ok) {
    std::fprintf(stderr, "engine_overhead_bench: %s\n",
                 s.ok() ? "prompt-len and steps must be positive, vocab >= 1000, sampling "
                          "both, all, greedy, temperature, device or device-penalties"
                        : std::string(s.message()).c_str());
    return 2;
  }
  return alignserve::Run(f);
}
