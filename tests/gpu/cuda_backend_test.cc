// CudaBackend op by op against the CPU reference backend: fresh random
// bf16-exact inputs of odd sizes, NaN-poisoned outputs, tolerances of one
// bf16 rounding. Paged attention runs over mixed prefill + decode batches
// with shuffled block tables, GQA ratios 1, 4 and 8, head dims 64 and 128
// and block sizes 16 and 32. Without a CUDA device the GPU cases pass with
// the warning "no CUDA device: skipped".
#include "kernels/cuda/cuda_backend.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <numeric>
#include <utility>

#include "kernels/cpu/cpu_backend.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/kernels/argmax_rows.h"

namespace alignserve {
namespace {

using testing::CheckClose;
using testing::kBf16Output;
using testing::kF32Output;
using testing::RandomBf16Values;
using testing::Side;

std::unique_ptr<CudaBackend> MakeCuda() {
  auto backend = CudaBackend::Create(0);
  REQUIRE(backend.ok());
  return std::move(*backend);
}

// Sequences (start position, new tokens) of a mixed step: prefills from 0,
// chunked prefills and decodes, none of a round length.
struct SeqSpec {
  int start;
  int tokens;
};
constexpr SeqSpec kMixedStep[] = {{0, 37}, {100, 1}, {53, 19}, {0, 1}, {250, 1}, {17, 3}};

// Block tables for the sequences, drawn without repetition from a shuffled
// pool of num_blocks ids.
std::vector<std::vector<int32_t>> BlockTables(std::span<const SeqSpec> seqs, int block_size,
                                              int* num_blocks, std::mt19937& rng) {
  int needed = 0;
  for (const SeqSpec& s : seqs) needed += (s.start + s.tokens + block_size - 1) / block_size;
  *num_blocks = needed + 5;
  std::vector<int32_t> pool(*num_blocks);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  std::vector<std::vector<int32_t>> tables;
  int next = 0;
  for (const SeqSpec& s : seqs) {
    const int n = (s.start + s.tokens + block_size - 1) / block_size;
    tables.emplace_back(pool.begin() + next, pool.begin() + next + n);
    next += n;
  }
  return tables;
}

// The step's layout, or (history) the layout that writes every sequence's
// earlier context [0, start).
BatchLayout Layout(std::span<const SeqSpec> seqs, const std::vector<std::vector<int32_t>>& tables,
                   int block_size, bool history, int vocab, std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> token(0, vocab - 1);
  BatchLayout layout;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int start = history ? 0 : seqs[i].start;
    const int count = history ? seqs[i].start : seqs[i].tokens;
    if (history && count == 0) continue;
    std::vector<int32_t> ids(count);
    for (int32_t& id : ids) id = token(rng);
    layout.AddSequence(ids, start, tables[i], block_size, /*want_logits=*/true);
  }
  layout.Finish();
  return layout;
}

// The cos and sin tables [max_positions, rotary_dim / 2] of plain RoPE
// (base 10000).
std::pair<std::vector<float>, std::vector<float>> RopeCosSin(int max_positions, int rotary_dim) {
  const int half = rotary_dim / 2;
  std::vector<float> cos(max_positions * half), sin(max_positions * half);
  for (int p = 0; p < max_positions; ++p) {
    for (int i = 0; i < half; ++i) {
      const float angle = p * std::pow(10000.0f, -2.0f * i / rotary_dim);
      cos[p * half + i] = std::cos(angle);
      sin[p * half + i] = std::sin(angle);
    }
  }
  return {cos, sin};
}

TEST_CASE("creating a CUDA backend without a device is Unavailable, not a crash") {
  auto backend = CreateCudaBackend(0);
  if (CudaAvailable()) {
    REQUIRE(backend.ok());
    CHECK((*backend)->activation_dtype() == DType::kBF16);
    CHECK(CreateCudaBackend(1 << 20).status().code() == absl::StatusCode::kUnavailable);
  } else {
    REQUIRE_FALSE(backend.ok());
    CHECK(backend.status().code() == absl::StatusCode::kUnavailable);
    CHECK(backend.status().message().find("no CUDA device") != std::string::npos);
  }
}

TEST_CASE("cuda embedding gathers f32, f16 and bf16 table rows") {
  ALIGNSERVE_REQUIRE_CUDA();
  CpuBackend cpu_backend;
  auto cuda = MakeCuda();
  std::mt19937 rng(1);
  const int vocab = 317, dim = 203, block_size = 16;
  int num_blocks = 0;
  const auto tables = BlockTables(kMixedStep, block_size, &num_blocks, rng);
  const BatchLayout layout = Layout(kMixedStep, tables, block_size, false, vocab, rng);
  const int n = layout.num_tokens();
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
    INFO("table " << DTypeName(type));
    Side cpu(cpu_backend), gpu(*cuda);
    const std::vector<float> table = RandomBf16Values(vocab * dim, rng, 3.0f);
    auto cpu_batch = cpu_backend.UploadBatch(layout);
    auto gpu_batch = cuda->UploadBatch(layout);
    REQUIRE(cpu_batch.ok());
    REQUIRE(gpu_batch.ok());
    Tensor cpu_out = cpu.PoisonedAct(n, dim), gpu_out = gpu.PoisonedAct(n, dim);
    REQUIRE(cpu_backend.Embedding(*cpu_batch, cpu.Make(table, vocab, dim, type), cpu_out).ok());
    REQUIRE(cuda->Embedding(*gpu_batch, gpu.Make(table, vocab, dim, type), gpu_out).ok());
    CheckClose(gpu.Read(gpu_out), cpu.Read(cpu_out), kBf16Output);
  }
}

TEST_CASE("cuda rms_norm matches the cpu, bf16 and f32 out, in place too") {
  ALIGNSERVE_REQUIRE_CUDA();
  CpuBackend cpu_backend;
  auto cuda = MakeCuda();
  std::mt19937 rng(2);
  for (auto [rows, cols] : {std::pair{1, 64}, {37, 1000}, {5, 4099}}) {
    INFO(rows << " x " << cols);
    Side cpu(cpu_backend), gpu(*cuda);
    const std::vector<float> x = RandomBf16Values(rows * cols, rng, 4.0f);
    const std::vector<float> w = RandomBf16Values(cols, rng, 2.0f);
    Tensor cpu_out = cpu.PoisonedAct(rows, cols);
    REQUIRE(cpu_backend.RmsNorm(cpu.MakeAct(x, rows, cols), cpu.Vector(w), 1e-5f, cpu_out).ok());
    const std::vector<float> want = cpu.Read(cpu_out);

    Tensor gpu_out = gpu.PoisonedAct(rows, cols);
    REQUIRE(cuda->RmsNorm(gpu.MakeAct(x, rows, cols), gpu.Vector(w), 1e-5f, gpu_out).ok());
    CheckClose(gpu.Read(gpu_out), want, kBf16Output);

    Tensor gpu_f32 = gpu.Poisoned(rows, cols, DType::kF32);
    REQUIRE(cuda->RmsNorm(gpu.MakeAct(x, rows, cols), gpu.Vector(w), 1e-5f, gpu_f32).ok());
    CheckClose(gpu.Read(gpu_f32), want, kF32Output);

    Tensor in_place = gpu.MakeAct(x, rows, cols);
    REQUIRE(cuda->RmsNorm(in_place, gpu.Vector(w), 1e-5f, in_place).ok());
    CheckClose(gpu.Read(in_place), want, kBf16Output);
  }
}

TEST_CASE("cuda add_rms_norm updates the residual and normalizes it") {
  ALIGNSERVE_REQUIRE_CUDA();
  CpuBackend cpu_backend;
  auto cuda = MakeCuda();
  std::mt19937 rng(3);
  for (auto [rows, cols] : {std::pair{3, 576}, {29, 2051}}) {
    INFO(rows << " x " << cols);
    Side cpu(cpu_backend), gpu(*cuda);
    const std::vector<float> res = RandomBf16Values(rows * cols, rng, 2.0f);
    const std::vector<float> x = RandomBf16Values(rows * cols, rng, 2.0f);
    const std::vector<float> w = RandomBf16Values(cols, rng, 1.5f);
    Tensor cpu_res = cpu.MakeAct(res, rows, cols), gpu_res = gpu.MakeAct(res, rows, cols);
    Tensor cpu_out = cpu.PoisonedAct(rows, cols), gpu_out = gpu.PoisonedAct(rows, cols);
    REQUIRE(
        cpu_backend.AddRmsNorm(cpu_res, cpu.MakeAct(x, rows, cols), cpu.Vector(w), 1e-6f, cpu_out)
            .ok());
    REQUIRE(
        cuda->AddRmsNorm(gpu_res, gpu.MakeAct(x, rows, cols), gpu.Vector(w), 1e-6f, gpu_out).ok());
    CheckClose(gpu.Read(gpu_res), cpu.Read(cpu_res), kBf16Output);
    // The GPU normalizes the residual as rounded to bf16: two roundings.
    CheckClose(gpu.Read(gpu_out), cpu.Read(cpu_out), {2 * kBf16Output.rel, kBf16Output.abs});
  }
}

struct MatMulCase {
  int m, k, n;
  DType w_type;
  bool bias;
  DType y_type;
};

TEST_CASE("cuda matmul matches the cpu for bf16, f16 and f32 weights, bias and f32 out") {
  ALIGNSERVE_REQUIRE_CUDA();
  CpuBackend cpu_backend;
  auto cuda = MakeCuda();
  std::mt19937 rng(4);
  const MatMulCase cases[] = {
      {1, 64, 3, DType::kBF16, false, DType::kBF16},
      {7, 200, 129, DType::kBF16, true, DType::kBF16},
      {33, 1000, 515, DType::kBF16, false, DType::kF32},
      {5, 576, 301, DType::kBF16, true, DType::kF32},
      {13, 320, 97, DType::kF32, false, DType::kBF16},
      {3, 192, 250, DType::kF32, true, DType::kF32},
      {9, 136, 77, DType::kF16, true, DType::kBF16},
      // bf16 products of at most 4 rows run the GEMV kernel (cuda_gemv.cu).
      {1, 4096, 1000, DType::kBF16, false, DType::kBF16},
      {2, 136, 77, DType::kBF16, true, DType::kF32},
      {3, 14336, 33, DType::kBF16, false, DType::kBF16},
      {4, 1000, 515, DType::kBF16, true, DType::kBF16},
      {4, 2056, 9, DType::kBF16, false, DType::kF32},
  };
  for (const MatMulCase& c : cases) {
    INFO("m " << c.m << " k " << c.k << " n " << c.n << " w " << DTypeName(c.w_type) << " bias "
              << c.bias << " y " << DTypeName(c.y_type));
    Side cpu(cpu_backend), gpu(*cuda);
    const std::vector<float> x = RandomBf16Values(c.m * c.k, rng);
    const std::vector<float> w = RandomBf16Values(c.n * c.k, rng);
    const std::vector<float> b = RandomBf16Values(c.n, rng);
    Tensor cpu_bias = cpu.Vector(b), gpu_bias = gpu.Vector(b);
    Tensor cpu_y = cpu.PoisonedAct(c.m, c.n), gpu_y = gpu.Poisoned(c.m, c.n, c.y_type);
    REQUIRE(cpu_backend
                .MatMul(cpu.MakeAct(x, c.m, c.k), cpu.Make(w, c.n, c.k, c.w_type),
                        c.bias ? &cpu_bias : nullptr, cpu_y)
                .ok());
    REQUIRE(cuda->MatMul(gpu.MakeAct(x, c.m, c.k), gpu.Make(w, c.n, c.k, c.w_type),
                         c.bias ? &gpu_bias : nullptr, gpu_y)
                .ok());
    const float k_scale = std::sqrt(static_cast<float>(c.k)) / 8;
    const testing::Tolerance tol = c.y_type == DType::kF32
                                       ? testing::Tolerance{1e-4f, 1e-4f * k_scale}
                                       : testing::Tolerance{kBf16Output.rel, 1e-3f * k_scale};
    CheckClose(gpu.Read(gpu_y), cpu.Read(cpu_y), tol);
  }
}

TEST_CASE("cuda matmul refuses quantized weights and mismatched shapes") {
  ALIGNSERVE_REQUIRE_CUDA();
  auto cuda = MakeCuda();
  Side gpu(*cuda);
  Tensor x = gpu.PoisonedAct(2, 64), y = gpu.PoisonedAct(2, 8);
  Tensor q4(DType::kQ4_0, {8, 64}, x.data);
  CHECK(cuda->MatMul(x, q4, nullptr, y).code() == absl::StatusCode::kUnimplemented);
  Tensor w = gpu.PoisonedAct(9, 64);
  CHECK(cuda->MatMul(x, w, nullptr, y).code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("cuda rope rotates q and k like the cpu, both conventions") {
  ALIGNSERVE_REQUIRE_CUDA();
  CpuBackend cpu_backend;
  auto cuda = MakeCuda();
  std::mt19937 rng(5);
  const int max_positions = 300, block_size = 16;
  int num_blocks = 0;
  const auto tables = BlockTables(kMixedStep, block_size, &num_blocks, rng);
  const BatchLayout layout = Layout(kMixedStep, tables, block_size, false, 100, rng);
  const int n = layout.num_tokens();
  for (int head_dim : {64, 128}) {
    for (int rotary_dim : {head_dim, head_dim / 2}) {
      for (bool interleaved : {false, true}) {
        INFO("head_dim " << head_dim << " rotary " << rotary_dim << " interleaved " << interleaved);
        Side cpu(cpu_backend), gpu(*cuda);
        const int q_heads = 8, k_heads = 2;
        const auto [cos, sin] = RopeCosSin(max_positions, rotary_dim);
        const std::vector<float> q = RandomBf16Values(n * q_heads * head_dim, rng);
        const std::vector<float> k = RandomBf16Values(n * k_heads * head_dim, rng);
        std::vector<float> results[2][2];
        for (int side = 0; side < 2; ++side) {
          Side& s = side == 0 ? cpu : gpu;
          auto batch = s.backend().UploadBatch(layout);
          REQUIRE(batch.ok());
          RopeTable rope{s.Vector(cos).as<float>(), s.Vector(sin).as<float>(), max_positions,
                         rotary_dim, interleaved};
          Tensor tq = s.MakeAct(q, n, q_heads * head_dim), tk = s.MakeAct(k, n, k_heads * head_dim);
          REQUIRE(s.backend().Rope(*batch, rope, head_dim, tq, tk).ok());
          results[side][0] = s.Read(tq);
          results[side][1] = s.Read(tk);
        }
        CheckClose(results[1][0], results[0][0], kBf16Output);
        CheckClose(results[1][1], results[0][1], kBf16Output);
      }
    }
  }
}

// The fused op against the CPU's Rope then WriteKv (within a bf16
// rounding) and against CUDA's own two ops (bit for bit): q rotated, the
// rotated k and v in the cache slots of the step, padding rows skipped.
TEST_CASE("cuda rope_and_write_kv equals rope then write_kv") {
  ALIGNSERVE_REQUIRE_CUDA();
  CpuBackend cpu_backend;
  auto cuda = MakeCuda();
  std::mt19937 rng(6);
  const int max_positions = 300, block_size = 16, layers = 2, layer = 1;
  int num_blocks = 0;
  const auto tables = BlockTables(kMixedStep, block_size, &num_blocks, rng);
  BatchLayout layout = Layout(kMixedStep, tables, block_size, false, 100, rng);
  layout.slot_mapping[3] = kPaddingSlot;  // a padding row writes nothing
  const int n = layout.num_tokens();
  for (int head_dim : {64, 128}) {
    for (int rotary_dim : {head_dim, head_dim / 2}) {
      for (bool interleaved : {false, true}) {
        INFO("head_dim " << head_dim << " rotary " << rotary_dim << " interleaved " << interleaved);
        const int q_heads = 8, k_heads = 2, kv_width = k_heads * head_dim;
        const auto [cos, sin] = RopeCosSin(max_positions, rotary_dim);
        const std::vector<float> q = RandomBf16Values(n * q_heads * head_dim, rng);
        const std::vector<float> k = RandomBf16Values(n * kv_width, rng);
        const std::vector<float> v = RandomBf16Values(n * kv_width, rng);
        // [0]: cpu, two ops; [1]: cuda, two ops; [2]: cuda, fused.
        std::vector<float> q_out[3], k_cache[3], v_cache[3];
        for (int run = 0; run < 3; ++run) {
          Backend& backend = run == 0 ? static_cast<Backend&>(cpu_backend) : *cuda;
          Side s(backend);
          auto batch = backend.UploadBatch(layout);
          REQUIRE(batch.ok());
          RopeTable rope{s.Vector(cos).as<float>(), s.Vector(sin).as<float>(), max_positions,
                         rotary_dim, interleaved};
          KvCacheSpec spec{layers, num_blocks, block_size, k_heads, head_dim, s.act()};
          auto cache = backend.AllocateKvCache(spec);
          REQUIRE(cache.ok());
          const size_t bytes = spec.bytes_per_block_per_layer() * num_blocks;
          // Poison the caches: slots the step does not write must stay so.
          const std::vector<uint8_t> poison(bytes, 0xff);
          REQUIRE(backend.CopyToDevice((*cache)->k(layer), poison.data(), bytes).ok());
          REQUIRE(backend.CopyToDevice((*cache)->v(layer), poison.data(), bytes).ok());
          Tensor tq = s.MakeAct(q, n, q_heads * head_dim), tk = s.MakeAct(k, n, kv_width);
          Tensor tv = s.MakeAct(v, n, kv_width);
          if (run == 2) {
            REQUIRE(
                backend.RopeAndWriteKv(*batch, rope, head_dim, tq, tk, tv, **cache, layer).ok());
          } else {
            REQUIRE(backend.Rope(*batch, rope, head_dim, tq, tk).ok());
            REQUIRE(backend.WriteKv(*batch, tk, tv, **cache, layer).ok());
          }
          q_out[run] = s.Read(tq);
          k_cache[run] = s.ReadRaw((*cache)->k(layer), bytes, spec.dtype);
          v_cache[run] = s.ReadRaw((*cache)->v(layer), bytes, spec.dtype);
        }
        CheckClose(q_out[1], q_out[0], kBf16Output);
        REQUIRE(k_cache[1].size() == k_cache[2].size());
        for (size_t i = 0; i < q_out[1].size(); ++i) REQUIRE(q_out[2][i] == q_out[1][i]);
        for (size_t i = 0; i < k_cache[1].size(); ++i) {
          // Bitwise, NaN poison included.
          REQUIRE(std::memcmp(&k_cache[2][i], &k_cache[1][i], sizeof(float)) == 0);
          REQUIRE(std::memcmp(&v_cache[2][i], &v_cache[1][i], sizeof(float)) == 0);
        }
        // Every slot the step wrote holds the cpu's values within a rounding.
        for (int t = 0; t < n; ++t) {
          const int64_t slot = layout.slot_mapping[t];
          if (slot < 0) continue;
          for (int e = 0; e < kv_width; ++e) {
            const size_t at = static_cast<size_t>(slot) * kv_width + e;
            CHECK(k_cache[2][at] == Approx(k_cache[0][at]).margin(2e-2).epsilon(1e-2));
            CHECK(v_cache[2][at] == v_cache[0][at]);  // bf16-exact inputs
          }
        }
      }
    }
  }
}

TEST_CASE("cuda silu_mul and add match the cpu") {
  ALIGNSERVE_REQUIRE_CUDA();
  CpuBackend cpu_backend;
  auto cuda = MakeCuda();
  std::mt19937 rng(6);
  const int rows = 19, cols = 1531;
  Side cpu(cpu_backend), gpu(*cuda);
  const std::vector<float> gate = RandomBf16Values(rows * cols, rng, 6.0f);
  const std::vector<float> up = RandomBf16Values(rows * cols, rng, 2.0f);
  Tensor cpu_out = cpu.PoisonedAct(rows, cols), gpu_out = gpu.PoisonedAct(rows, cols);
  REQUIRE(cpu_backend.SiluMul(cpu.MakeAct(gate, rows, cols), cpu.MakeAct(up, rows, cols), cpu_out)
              .ok());
  REQUIRE(cuda->SiluMul(gpu.MakeAct(gate, rows, cols), gpu.MakeAct(up, rows, cols), gpu_out).ok());
  CheckClose(gpu.Read(gpu_out), cpu.Read(cpu_out), kBf16Output);

  Tensor cpu_x = cpu.MakeAct(gate, rows, cols), gpu_x = gpu.MakeAct(gate, rows, cols);
  REQUIRE(cpu_backend.Add(cpu_x, cpu.MakeAct(up, rows, cols)).ok());
  REQUIRE(cuda->Add(gpu_x, gpu.MakeAct(up, rows, cols)).ok());
  CheckClose(gpu.Read(gpu_x), cpu.Read(cpu_x), kBf16Output);
}

struct AttentionCase {
  int head_dim;
  int group;  // query heads per kv head
  int block_size;
  int kv_heads = 2;
};

// Writes every sequence's history, then the step's K/V, then attends; the
// caches must match exactly (bf16-exact inputs) and the outputs within
// one bf16 rounding.
void CheckAttention(CpuBackend& cpu_backend, CudaBackend& cuda, const AttentionCase& c,
                    std::mt19937& rng, std::span<const SeqSpec> seqs = kMixedStep) {
  const int kv_heads = c.kv_heads, heads = kv_heads * c.group, layers = 2, layer = 1;
  int num_blocks = 0;
  const auto tables = BlockTables(seqs, c.block_size, &num_blocks, rng);
  const BatchLayout history = Layout(seqs, tables, c.block_size, true, 50, rng);
  const BatchLayout step = Layout(seqs, tables, c.block_size, false, 50, rng);
  const int kv_width = kv_heads * c.head_dim, q_width = heads * c.head_dim;
  const std::vector<float> hk = RandomBf16Values(history.num_tokens() * kv_width, rng);
  const std::vector<float> hv = RandomBf16Values(history.num_tokens() * kv_width, rng);
  const std::vector<float> k = RandomBf16Values(step.num_tokens() * kv_width, rng);
  const std::vector<float> v = RandomBf16Values(step.num_tokens() * kv_width, rng);
  const std::vector<float> q = RandomBf16Values(step.num_tokens() * q_width, rng, 2.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  std::vector<float> out[2], k_cache[2];
  for (int side = 0; side < 2; ++side) {
    Backend& backend = side == 0 ? static_cast<Backend&>(cpu_backend) : cuda;
    Side s(backend);
    KvCacheSpec spec{layers, num_blocks, c.block_size, kv_heads, c.head_dim, s.act()};
    auto cache = backend.AllocateKvCache(spec);
    REQUIRE(cache.ok());
    if (history.num_tokens() > 0) {  // none when every sequence starts at 0
      auto hb = backend.UploadBatch(history);
      REQUIRE(hb.ok());
      REQUIRE(backend
                  .WriteKv(*hb, s.MakeAct(hk, history.num_tokens(), kv_width),
                           s.MakeAct(hv, history.num_tokens(), kv_width), **cache, layer)
                  .ok());
    }
    auto sb = backend.UploadBatch(step);
    REQUIRE(sb.ok());
    REQUIRE(backend
                .WriteKv(*sb, s.MakeAct(k, step.num_tokens(), kv_width),
                         s.MakeAct(v, step.num_tokens(), kv_width), **cache, layer)
                .ok());
    Tensor o = s.PoisonedAct(step.num_tokens(), q_width);
    REQUIRE(backend
                .PagedAttention(*sb, s.MakeAct(q, step.num_tokens(), q_width), **cache, layer,
                                heads, scale, o)
                .ok());
    out[side] = s.Read(o);
    k_cache[side] =
        s.ReadRaw((*cache)->k(layer), spec.bytes_per_block_per_layer() * num_blocks, spec.dtype);
  }
  CheckClose(k_cache[1], k_cache[0], {0.0f, 0.0f});
  CheckClose(out[1], out[0], kBf16Output);
}

TEST_CASE("cuda paged attention matches the cpu over mixed prefill and decode batches") {
  ALIGNSERVE_REQUIRE_CUDA();
  CpuBackend cpu_backend;
  auto cuda = MakeCuda();
  std::mt19937 rng(7);
  for (int head_dim : {64, 128}) {
    for (int group : {1, 4, 8}) {
      for (int block_size : {16, 32}) {
        INFO("head_dim " << head_dim << " group " << group << " block_size " << block_size);
        CheckAttention(cpu_backend, *cuda, {head_dim, group, block_size}, rng);
      }
    }
  }
  INFO("head_dim 16, as the tiny test models");
  CheckAttention(cpu_backend, *cuda, {16, 2, 16}, rng);
}

// A wide decode-only step: 140 sequences of one token over histories up to
// 300 tokens x 2 kv heads fill the GPU, so the split-K decode kernel runs
// with one split per sequence.
TEST_CASE("cuda paged attention matches the cpu over a wide decode-only step") {
  ALIGNSERVE_REQUIRE_CUDA();
  CpuBackend cpu_backend;
  auto cuda = MakeCuda();
  std::mt19937 rng(8);
  std::uniform_int_distribution<int> history(0, 300);
  std::vector<SeqSpec> decodes(140);
  for (SeqSpec& s : decodes) s = {history(rng), 1};
  for (int head_dim : {64, 128}) {
    for (int group : {1, 4, 8}) {
      INFO("head_dim " << head_dim << " group " << group);
      CheckAttention(cpu_backend, *cuda, {head_dim, group, 16}, rng, decodes);
    }
  }
}

// A narrow decode-only step with long contexts: 5 sequences x 2 kv heads
// leave the GPU idle, so the decode kernel splits the keys (up to 6 splits
// of 256) and merges the partials; the short sequences see splits with no
// keys at all.
TEST_CASE("cuda paged attention matches the cpu over a narrow long-context decode step") {
  ALIGNSERVE_REQUIRE_CUDA();
  CpuBackend cpu_backend;
  auto cuda = MakeCuda();
  std::mt19937 rng(9);
  const std::vector<SeqSpec> decodes = {{1500, 1}, {700, 1}, {31, 1}, {0, 1}, {257, 1}};
  for (int head_dim : {64, 128}) {
    for (int group : {1, 3, 4, 8}) {
      for (int block_size : {16, 32}) {
        INFO("head_dim " << head_dim << " group " << group << " block_size " << block_size);
        CheckAttention(cpu_backend, *cuda, {head_dim, group, block_size}, rng, decodes);
      }
    }
  }
}

// Prefill chunks through the tensor-core tiled kernel: a whole
// Llama-3-8B-shaped prompt (32 heads, 8 kv heads, head_dim 128) in one
// chunk, whose last key tile is partial.
TEST_CASE("cuda paged attention matches the cpu over a 2000-token prefill chunk") {
  ALIGNSERVE_REQUIRE_CUDA();
  CpuBackend cpu_backend;
  auto cuda = MakeCuda();
  std::mt19937 rng(10);
  const std::vector<SeqSpec> prompt = {{0, 2000}};
  CheckAttention(cpu_backend, *cuda, {128, 4, 16, 8}, rng, prompt);
}

// A chunk continuing a sequence with 700 cached tokens: every query row sees
// the whole history plus its causal part of the chunk (positions 700..999).
TEST_CASE("cuda paged attention matches the cpu over a chunk continuing a long history") {
  ALIGNSERVE_REQUIRE_CUDA();
  CpuBackend cpu_backend;
  auto cuda = MakeCuda();
  std::mt19937 rng(11);
  const std::vector<SeqSpec> chunk = {{700, 300}};
  CheckAttention(cpu_backend, *cuda, {64, 1, 32}, rng, chunk);
}

// Odd chunk lengths with GQA 8 (8 tokens per query tile): a one-token
// chunk, chunks ending mid-tile and a 255-token prefill in one step.
TEST_CASE("cuda paged attention matches the cpu over odd-length chunks with gqa 8") {
  ALIGNSERVE_REQUIRE_CUDA();
  CpuBackend cpu_backend;
  auto cuda = MakeCuda();
  std::mt19937 rng(12);
  const std::vector<SeqSpec> chunks = {{45, 1}, {0, 17}, {300, 130}, {61, 255}};
  for (int head_dim : {64, 128}) {
    for (int block_size : {16, 32}) {
      INFO("head_dim " << head_dim << " block_size " << block_size);
      CheckAttention(cpu_backend, *cuda, {head_dim, 8, block_size}, rng, chunks);
    }
  }
}

TEST_CASE("cuda gather_rows and copy_blocks move exact bytes") {
  ALIGNSERVE_REQUIRE_CUDA();
  auto cuda = MakeCuda();
  std::mt19937 rng(8);
  Side gpu(*cuda);
  const int block_size = 16, cols = 203;
  int num_blocks = 0;
  const auto tables = BlockTables(kMixedStep, block_size, &num_blocks, rng);
  const BatchLayout layout = Layout(kMixedStep, tables, block_size, false, 10, rng);
  auto batch = cuda->UploadBatch(layout);
  REQUIRE(batch.ok());
  const std::vector<float> x = RandomBf16Values(layout.num_tokens() * cols, rng);
  const int rows = static_cast<int>(layout.logits_indices.size());
  Tensor out = gpu.PoisonedAct(rows, cols);
  REQUIRE(cuda->GatherRows(*batch, gpu.MakeAct(x, layout.num_tokens(), cols), out).ok());
  std::vector<float> want;
  for (int32_t r : layout.logits_indices) {
    want.insert(want.end(), x.begin() + r * cols, x.begin() + (r + 1) * cols);
  }
  CheckClose(gpu.Read(out), want, {0.0f, 0.0f});

  KvCacheSpec spec{3, 9, block_size, 2, 64, DType::kBF16};
  auto cache = cuda->AllocateKvCache(spec);
  REQUIRE(cache.ok());
  const size_t layer_elems = spec.bytes_per_block_per_layer() * spec.num_blocks / 2;
  const size_t block_elems = spec.bytes_per_block_per_layer() / 2;
  std::vector<std::vector<float>> before;
  for (int l = 0; l < spec.num_layers; ++l) {
    for (void* p : {(*cache)->k(l), (*cache)->v(l)}) {
      before.push_back(RandomBf16Values(layer_elems, rng));
      const std::vector<char> bytes = testing::Encode(before.back(), DType::kBF16);
      REQUIRE(cuda->CopyToDevice(p, bytes.data(), bytes.size()).ok());
    }
  }
  const BlockCopy copies[] = {{2, 7}, {0, 4}, {8, 1}};
  REQUIRE(cuda->CopyBlocks(copies, **cache).ok());
  int index = 0;
  for (int l = 0; l < spec.num_layers; ++l) {
    for (void* p : {(*cache)->k(l), (*cache)->v(l)}) {
      const std::vector<float>& original = before[index++];
      std::vector<float> expected = original;
      for (const BlockCopy& c : copies) {
        std::copy_n(original.begin() + c.src * block_elems, block_elems,
                    expected.begin() + c.dst * block_elems);
      }
      CheckClose(gpu.ReadRaw(p, layer_elems * 2, DType::kBF16), expected, {0.0f, 0.0f});
    }
  }
  const BlockCopy bad[] = {{0, 9}};
  CHECK(cuda->CopyBlocks(bad, **cache).code() == absl::StatusCode::kOutOfRange);
}

TEST_CASE("cuda ops turn bad indices into errors, not device faults") {
  ALIGNSERVE_REQUIRE_CUDA();
  auto cuda = MakeCuda();
  Side gpu(*cuda);
  BatchLayout layout;
  layout.AddSequence({5, 400}, 0, {3}, 16, true);
  layout.Finish();
  auto batch = cuda->UploadBatch(layout);
  REQUIRE(batch.ok());
  Tensor table = gpu.PoisonedAct(300, 64), out = gpu.PoisonedAct(2, 64);
  CHECK(cuda->Embedding(*batch, table, out).code() == absl::StatusCode::kInvalidArgument);

  KvCacheSpec spec{1, 3, 16, 1, 64, DType::kBF16};
  auto cache = cuda->AllocateKvCache(spec);
  REQUIRE(cache.ok());
  Tensor k = gpu.PoisonedAct(2, 64);
  CHECK(cuda->WriteKv(*batch, k, k, **cache, 0).code() == absl::StatusCode::kOutOfRange);
  CHECK(cuda->PagedAttention(*batch, k, **cache, 0, 1, 1.0f, out).code() ==
        absl::StatusCode::kOutOfRange);

  DeviceBatch stale = *batch;
  BatchLayout next;
  next.AddSequence({1, 2, 3}, 0, {0}, 16, true);
  next.Finish();
  REQUIRE(cuda->UploadBatch(next).ok());
  CHECK(cuda->Embedding(stale, table, out).code() == absl::StatusCode::kFailedPrecondition);

  auto huge = cuda->Allocate(size_t{1} << 50);
  REQUIRE_FALSE(huge.ok());
  CHECK(huge.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK(huge.status().message().find("1125899906842624 bytes") != std::string::npos);
  CHECK(cuda->Synchronize().ok());
}

TEST_CASE("cuda argmax equals the plain scan on vocabulary rows with ties and NaN") {
  ALIGNSERVE_REQUIRE_CUDA();
  auto cuda = MakeCuda();
  std::mt19937 rng(12);
  for (const int64_t cols :
       {int64_t{1}, int64_t{33}, int64_t{1025}, int64_t{49152}, int64_t{128256}, int64_t{152064}}) {
    const int64_t rows = cols > 100000 ? 7 : 19;
    const std::vector<float> x = testing::HardArgmaxRows(rows, cols, rng);
    auto logits_buffer = cuda->Allocate(x.size() * sizeof(float));
    auto ids_buffer = cuda->Allocate(rows * sizeof(int32_t));
    REQUIRE(logits_buffer.ok());
    REQUIRE(ids_buffer.ok());
    REQUIRE(cuda->CopyToDevice((*logits_buffer)->data(), x.data(), x.size() * sizeof(float)).ok());
    // Poison: -1 is never a valid answer.
    std::vector<int32_t> ids(rows, -1);
    REQUIRE(cuda->CopyToDevice((*ids_buffer)->data(), ids.data(), rows * sizeof(int32_t)).ok());
    Tensor logits(DType::kF32, {rows, cols}, (*logits_buffer)->data());
    Tensor out(DType::kI32, {rows, 1}, (*ids_buffer)->data());
    REQUIRE(cuda->ArgMax(logits, out).ok());
    REQUIRE(cuda->Synchronize().ok());
    REQUIRE(cuda->CopyToHost(ids.data(), (*ids_buffer)->data(), rows * sizeof(int32_t)).ok());
    for (int64_t r = 0; r < rows; ++r) {
      INFO("cols " << cols << " row " << r);
      CHECK(ids[r] == testing::OracleArgmax(x.data() + r * cols, cols));
    }
  }
}

}  // namespace
}  // namespace alignserve
