#include "server/engine_setup.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/kv_memory_planner.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/status_macros.h"
#include "models/model_loader.h"
#include "server/fault_injecting_model.h"
#ifdef ALIGNSERVE_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace alignserve {

void AddEngineFlags(ArgParser& args, EngineFlags* f) {
  args.AddString("model", &f->model, "a .gguf file, a Hugging Face model folder, or 'default'");
  args.AddString("device", &f->device, "cpu, cuda (GPU 0) or cuda:N");
  args.AddFloat("gpu-memory-utilization", &f->gpu_memory_utilization,
                "share of the GPU's memory for weights, activations and the KV cache");
  args.AddInt("num-blocks", &f->num_blocks,
              "KV cache blocks; 0 sizes the cache from GPU memory (or the command's CPU default)");
  args.AddInt("block-size", &f->block_size, "tokens per KV block");
  args.AddInt("max-num-seqs", &f->max_num_seqs, "sequences scheduled per step");
  args.AddInt("max-num-batched-tokens", &f->max_num_batched_tokens, "token budget of one step");
  args.AddInt("max-model-len", &f->max_model_len,
              "longest sequence (prompt + output); 0 is the model's own context length");
  args.AddFloat("kv-cache-gib", &f->kv_cache_gib,
                "KV cache size on the CPU, GiB (GPUs size it from --gpu-memory-utilization)");
  args.AddString("kv-cache-dtype", &f->kv_cache_dtype,
                 "KV cache element type: auto (CPU: f16 with i16 or int8 products, f32 with exact "
                 "ones; bf16 on CUDA), f32, f16 (CPU: half the bytes decode attention reads) or "
                 "bf16");
  args.AddString("cpu-matmul", &f->cpu_matmul,
                 "CPU matrix products: exact (f32, the reference), i16 (activations rounded to 16 "
                 "bits per 32, integer sums: up to 1.7x faster batches, logits within ~1e-2), "
                 "int8 (llama.cpp-style 8-bit activations, logits within ~2) or auto "
                 "(ALIGNSERVE_CPU_MATMUL, else i16 on CPUs with AVX512-VNNI, exact elsewhere)");
  args.AddBool("skip-tokenizer-init", &f->skip_tokenizer_init,
               "load no tokenizer: token ids in and out, no text (a checkpoint without one)");
  args.AddBool("enforce-eager", &f->enforce_eager,
               "run decode steps op by op instead of replaying CUDA graphs (GPU only)");
  args.AddBool("host-sampling", &f->host_sampling,
               "sample on the host even on a GPU (copies each non-greedy logits row to the "
               "host; the default draws on the device and copies only ids and logprobs)");
}

absl::Status CheckEngineFlags(const EngineFlags& f) {
  RETURN_IF_ERROR(RequirePositive("block-size", f.block_size));
  RETURN_IF_ERROR(RequirePositive("max-num-seqs", f.max_num_seqs));
  RETURN_IF_ERROR(RequirePositive("max-num-batched-tokens", f.max_num_batched_tokens));
  if (f.num_blocks < 0) return absl::InvalidArgumentError("--num-blocks must be >= 0");
  if (f.max_model_len < 0) return absl::InvalidArgumentError("--max-model-len must be >= 0");
  if (!(f.kv_cache_gib > 0.0f && f.kv_cache_gib <= 1024.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kv-cache-gib must be in (0, 1024], got ", f.kv_cache_gib));
  }
  RETURN_IF_ERROR(CpuMatmulModeFromFlag(f.cpu_matmul).status());
  if (!KvCacheDtypeFromFlag(f.kv_cache_dtype).ok()) {
    return KvCacheDtypeFromFlag(f.kv_cache_dtype).status();
  }
  if (!(f.gpu_memory_utilization > 0.0f && f.gpu_memory_utilization <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--gpu-memory-utilization must be in (0, 1], got ", f.gpu_memory_utilization));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<DType>> KvCacheDtypeFromFlag(std::string_view value) {
  if (value == "auto") return std::optional<DType>();
  if (value == "f32") return std::optional<DType>(DType::kF32);
  if (value == "f16") return std::optional<DType>(DType::kF16);
  if (value == "bf16") return std::optional<DType>(DType::kBF16);
  return absl::InvalidArgumentError(absl::StrCat(
      "--kv-cache-dtype must be auto, f32, f16 or bf16, got '", std::string(value), "'"));
}

absl::StatusOr<MatmulMode> CpuMatmulModeFromFlag(std::string_view cpu_matmul) {
  if (cpu_matmul == "auto") return ServingMatmulMode();
  absl::StatusOr<MatmulMode> named = MatmulModeFromName(cpu_matmul);
  if (!named.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--cpu-matmul must be auto, exact, i16 or int8, got '", std::string(cpu_matmul), "'"));
  }
  return *named;
}

absl::Status ConfigureKvCacheDtype(Backend& backend, std::string_view kv_cache_dtype,
                                   std::string_view device, std::string_view cpu_matmul) {
  ASSIGN_OR_RETURN(std::optional<DType> kv_dtype, KvCacheDtypeFromFlag(kv_cache_dtype));
  if (!kv_dtype.has_value() && device == "cpu") {
    ASSIGN_OR_RETURN(MatmulMode mode, CpuMatmulModeFromFlag(cpu_matmul));
    if (mode != MatmulMode::kExact) kv_dtype = DType::kF16;
  }
  if (kv_dtype.has_value()) {
    if (absl::Status s = backend.SetKvCacheDtype(*kv_dtype); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--kv-cache-dtype: ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::string_view device,
                                                       std::string_view cpu_matmul) {
  if (device == "cpu") {
    ASSIGN_OR_RETURN(MatmulMode mode, CpuMatmulModeFromFlag(cpu_matmul));
    return std::unique_ptr<Backend>(std::make_unique<CpuBackend>(nullptr, mode));
  }
  int index = 0;
  if (device != "cuda") {
    if (device.substr(0, 5) != "cuda:" ||
        !absl::SimpleAtoi(std::string(device.substr(5)), &index) || index < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--device must be cpu, cuda or cuda:N, got '", std::string(device), "'"));
    }
  }
#ifdef ALIGNSERVE_HAVE_CUDA
  return CreateCudaBackend(index);
#else
  return absl::UnavailableError(
      "this alignserve was built without CUDA (no nvcc at build time); rebuild on a machine "
      "with the CUDA toolkit, or use --device cpu");
#endif
}

absl::StatusOr<std::unique_ptr<LlmEngine>> BuildEngine(const EngineFlags& f, int cpu_num_blocks,
                                                       uint64_t seed, bool fault_injection) {
  RETURN_IF_ERROR(CheckEngineFlags(f));
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, CreateBackend(f.device, f.cpu_matmul));
  RETURN_IF_ERROR(ConfigureKvCacheDtype(*backend, f.kv_cache_dtype, f.device, f.cpu_matmul));
  FaultSpec faults;
  if (fault_injection) {
    ASSIGN_OR_RETURN(faults, FaultSpecFromEnv());
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (faults.load_delay_ms > 0 || faults.any_forward_fault()) {
    std::fprintf(stderr, "alignserve: FAULT INJECTION ON (%s, test only): %s\n", kFaultInjectEnv,
                 faults.Describe().c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(faults.load_delay_ms));
  }
  ModelOptions options;
  options.max_model_len = f.max_model_len;
  options.load_text = !f.skip_tokenizer_init;
  absl::StatusOr<std::unique_ptr<LoadedModel>> loaded = LoadModel(f.model, *backend, options);
  if (!loaded.ok()) {
    if (options.load_text && absl::IsNotFound(loaded.status())) {
      return absl::Status(loaded.status().code(),
                          absl::StrCat(loaded.status().message(),
                                       " (a checkpoint without a tokenizer loads with "
                                       "--skip-tokenizer-init)"));
    }
    return loaded.status();
  }
  if (faults.any_forward_fault()) {
    (*loaded)->model = std::make_unique<FaultInjectingModel>(std::move((*loaded)->model), faults);
  }
  Model& model = *(*loaded)->model;
  // Graphs for decode steps of up to max_num_seqs sequences (256 at most:
  // a graph per batch bucket, and the host's launch cost matters less
  // beyond).
  model.SetDecodeGraphs(f.enforce_eager ? 0 : std::min(f.max_num_seqs, 256));
  std::fprintf(stderr, "alignserve: loaded %s on %s (%d layers, hidden %d, vocab %d) in %.2f s\n",
               (*loaded)->name.c_str(), f.device.c_str(), model.config().num_layers,
               model.config().hidden_size, model.config().vocab_size,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  if (f.device == "cpu") {
    ASSIGN_OR_RETURN(MatmulMode mode, CpuMatmulModeFromFlag(f.cpu_matmul));
    std::fprintf(stderr, "alignserve: CPU products %s, KV cache %s%s\n", MatmulModeName(mode),
                 std::string(DTypeName(backend->kv_cache_dtype())).c_str(),
                 mode == MatmulMode::kExact && backend->kv_cache_dtype() == DType::kF32
                     ? " (the reference numerics)"
                     : " (--cpu-matmul exact --kv-cache-dtype f32 for the reference numerics)");
  }
  EngineConfig config;
  config.seed = seed;
  config.device_sampling = !f.host_sampling;
  config.scheduler.block_size = f.block_size;
  config.scheduler.max_num_seqs = f.max_num_seqs;
  config.scheduler.max_num_batched_tokens = f.max_num_batched_tokens;
  config.scheduler.max_model_len = model.max_model_len();
  config.scheduler.num_blocks = f.num_blocks;
  if (config.scheduler.num_blocks == 0) {
    if (backend->MemoryInfo().ok()) {
      ProfileShape shape{.max_num_batched_tokens = f.max_num_batched_tokens,
                         .max_num_seqs = f.max_num_seqs,
                         .max_model_len = model.max_model_len(),
                         .block_size = f.block_size};
      ASSIGN_OR_RETURN(KvMemoryPlan plan,
                       PlanKvCacheFromMemory(model, shape, f.gpu_memory_utilization));
      std::fprintf(stderr, "alignserve: %s\n", plan.Describe().c_str());
      config.scheduler.num_blocks = plan.num_blocks;
    } else if (cpu_num_blocks > 0) {
      config.scheduler.num_blocks = cpu_num_blocks;
    } else {
      const size_t block_bytes = KvBytesPerBlock(model, f.block_size);
      const double budget = static_cast<double>(f.kv_cache_gib) * (1 << 30);
      config.scheduler.num_blocks =
          static_cast<int>(std::min(budget / static_cast<double>(block_bytes), 1e9));
      std::fprintf(stderr, "alignserve: KV cache: %d blocks of %d tokens (%.2f GiB)\n",
                   config.scheduler.num_blocks, f.block_size, f.kv_cache_gib);
    }
  }
  return LlmEngine::Create(std::move(backend), std::move(*loaded), config);
}

}  // namespace alignserve
