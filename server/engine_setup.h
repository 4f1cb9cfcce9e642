// How a command builds its engine: the device it runs on, the model, and the
// size of the KV cache. Shared by generate, bench-offline and serve so that
// every command takes the same flags with the same meaning.
//
// KV cache size: --num-blocks when given; otherwise, on a device with its
// own memory (CUDA), from --gpu-memory-utilization after a profile step
// (engine/kv_memory_planner.h); otherwise (CPU) the command's own default.
// Thread-safety: start-up code, one thread.
#ifndef ALIGNSERVE_SERVER_ENGINE_SETUP_H_
#define ALIGNSERVE_SERVER_ENGINE_SETUP_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/llm_engine.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "server/cli_args.h"

namespace alignserve {

struct EngineFlags {
  std::string model = "default";
  std::string device = "cpu";  // cpu, cuda or cuda:N
  float gpu_memory_utilization = 0.9f;
  int num_blocks = 0;  // 0: sized from memory (CUDA) or by the command (CPU)
  int block_size = 16;
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
  int max_model_len = 0;  // 0: the model's own context length
  bool skip_tokenizer_init = false;
  // Run every step op by op: no CUDA graphs of decode steps (vLLM's flag).
  bool enforce_eager = false;
  float kv_cache_gib = 1.0f;  // KV budget where the device has no memory of its own (CPU)
  // auto (ConfigureKvCacheDtype: f16 on the CPU with i16/int8 products, f32
  // with exact ones; bf16 on CUDA), f32, f16, bf16.
  std::string kv_cache_dtype = "auto";
  // CPU matrix products: auto (ServingMatmulMode(): ALIGNSERVE_CPU_MATMUL,
  // else i16 with AVX512-VNNI, exact without), exact, i16 or int8
  // (kernels/cpu/cpu_backend.h).
  std::string cpu_matmul = "auto";
  // Sample every non-greedy row on the host, also on a GPU (copies whole
  // logits rows; for comparisons).
  bool host_sampling = false;
};

// Declares the flags above on `args` (targets in *f).
void AddEngineFlags(ArgParser& args, EngineFlags* f);
// InvalidArgument naming the first bad flag.
absl::Status CheckEngineFlags(const EngineFlags& f);

// The --kv-cache-dtype value as a type; nullopt for auto (the backend's
// default). InvalidArgument for another name.
absl::StatusOr<std::optional<DType>> KvCacheDtypeFromFlag(std::string_view value);

// The --cpu-matmul value as a mode: auto is ServingMatmulMode() (i16 on
// CPUs with AVX512-VNNI, exact elsewhere, ALIGNSERVE_CPU_MATMUL first).
absl::StatusOr<MatmulMode> CpuMatmulModeFromFlag(std::string_view cpu_matmul);

// Applies --kv-cache-dtype to a fresh backend. auto on the CPU follows the
// products: f16 with i16 or int8 ones (the serving profile: what llama.cpp
// and vLLM's CPU backend keep too), f32 with exact ones (the reference
// numerics); elsewhere the backend's own (bf16 on CUDA).
absl::Status ConfigureKvCacheDtype(Backend& backend, std::string_view kv_cache_dtype,
                                   std::string_view device, std::string_view cpu_matmul);

// "cpu", "cuda" (device 0) or "cuda:N". InvalidArgument for another name
// or a bad cpu_matmul (the --cpu-matmul value; CPU only); Unavailable when
// this build has no CUDA or the machine has no such GPU.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::string_view device,
                                                       std::string_view cpu_matmul = "auto");

// Creates the backend, loads the model, sizes the KV cache and builds the
// engine (which owns backend and model). cpu_num_blocks: the KV blocks to
// use when --num-blocks is 0 and the device has no memory of its own; 0
// sizes them from --kv-cache-gib.
// Progress and the KV plan go to stderr. Test only: ALIGNSERVE_FAULT_INJECT
// (server/fault_injecting_model.h) delays the load and wraps the model in a
// FaultInjectingModel (fault_injection false: never, as for reward models);
// InvalidArgument when its value does not parse.
absl::StatusOr<std::unique_ptr<LlmEngine>> BuildEngine(const EngineFlags& f, int cpu_num_blocks,
                                                       uint64_t seed, bool fault_injection = true);

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_ENGINE_SETUP_H_
