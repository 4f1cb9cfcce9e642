// CPU paged attention (kernels/cpu/paged_attention.h) on decode batches:
// S sequences, each one query token at the end of a context of C positions,
// K/V spread over a shuffled block pool as the engine leaves them. Reports
// time per call (one layer), the KV bytes it must read and the rate it
// reads them at; each figure is the median of 7 timed repetitions.
//   attention_bench [--seqs 1,8,64] [--context 128,512,1024]
//                   [--heads 9] [--kv-heads 3] [--head-dim 64] [--block-size 16]
//                   [--kv-dtype f32|f16]
// Defaults are SmolLM2-135M's shape and an f32 cache. ALIGNSERVE_NUM_THREADS sizes the pool.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/cpu/fp16.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/thread_pool.h"

namespace alignserve {
namespace {

std::vector<int> ParseList(const char* s) {
  std::vector<int> out;
  for (const char* p = s; *p;) {
    out.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return out;
}

struct Options {
  std::vector<int> seqs{1, 8, 64};
  std::vector<int> contexts{128, 512, 1024};
  int heads = 9, kv_heads = 3, head_dim = 64, block_size = 16;
  DType kv_type = DType::kF32;
};

double MedianSeconds(const std::function<void()>& fn) {
  std::vector<double> t;
  fn();  // warm
  for (int i = 0; i < 7; ++i) {
    const auto a = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void Run(const Options& o, int seqs, int context, ThreadPool& pool) {
  const int blocks_per_seq = (context + o.block_size - 1) / o.block_size;
  const int num_blocks = seqs * blocks_per_seq;
  const int64_t row = static_cast<int64_t>(o.kv_heads) * o.head_dim;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  // f32 or f16 elements (as 2-byte words), random in [-1, 1).
  const size_t elems = static_cast<size_t>(num_blocks) * o.block_size * row;
  const size_t elem_bytes = o.kv_type == DType::kF16 ? 2 : 4;
  std::vector<uint8_t> k_cache(elems * elem_bytes), v_cache(k_cache.size());
  for (std::vector<uint8_t>* cache : {&k_cache, &v_cache}) {
    for (size_t i = 0; i < elems; ++i) {
      const float x = u(rng);
      const uint16_t h = F32ToFp16(x);
      std::memcpy(cache->data() + i * elem_bytes,
                  elem_bytes == 2 ? static_cast<const void*>(&h) : static_cast<const void*>(&x),
                  elem_bytes);
    }
  }
  std::vector<int32_t> pool_ids(num_blocks);
  std::iota(pool_ids.begin(), pool_ids.end(), 0);
  std::shuffle(pool_ids.begin(), pool_ids.end(), rng);
  std::vector<int32_t> tables(pool_ids), positions(seqs), query_start(seqs + 1),
      context_lens(seqs, context);
  std::vector<int64_t> slots(seqs);
  for (int s = 0; s < seqs; ++s) {
    positions[s] = context - 1;
    query_start[s] = s;
    slots[s] = int64_t{tables[s * blocks_per_seq + (context - 1) / o.block_size]} * o.block_size +
               (context - 1) % o.block_size;
  }
  query_start[seqs] = seqs;
  DeviceBatch batch;
  batch.num_tokens = seqs;
  batch.num_seqs = seqs;
  batch.max_blocks_per_seq = blocks_per_seq;
  batch.max_query_len = 1;
  batch.max_context_len = context;
  batch.positions = positions.data();
  batch.query_start = query_start.data();
  batch.context_lens = context_lens.data();
  batch.block_tables = tables.data();
  batch.slot_mapping = slots.data();
  std::vector<float> q(static_cast<size_t>(seqs) * o.heads * o.head_dim), out(q.size());
  for (float& x : q) x = u(rng);
  const cpu::AttentionShape shape{o.heads, o.kv_heads, o.head_dim, o.block_size,
                                  1.0f / std::sqrt(static_cast<float>(o.head_dim))};
  const double sec = MedianSeconds([&] {
    cpu::PagedAttention(batch, shape, q.data(), k_cache.data(), v_cache.data(), o.kv_type,
                        out.data(), pool);
  });
  const double bytes = 2.0 * seqs * context * row * elem_bytes;
  std::printf("%s  seqs %4d  context %5d  %9.1f us/layer  KV %8.2f MB  %6.2f GB/s\n",
              o.kv_type == DType::kF16 ? "f16" : "f32", seqs, context, sec * 1e6, bytes / 1e6,
              bytes / sec / 1e9);
}

}  // namespace
}  // namespace alignserve

int main(int argc, char** argv) {
  alignserve::Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : "";
    if (a == "--help" || a == "-h") {
      std::printf(
          "usage: attention_bench [--seqs 1,8,64] [--context 128,512,1024] [--heads 9]\n"
          "                       [--kv-heads 3] [--head-dim 64] [--block-size 16]\n"
          "                       [--kv-dtype f32|f16]\n"
          "Times one layer of CPU paged attention on decode batches (median of 7).\n"
          "ALIGNSERVE_NUM_THREADS sizes the pool.\n");
      return 0;
    }
    if (a == "--seqs")
      o.seqs = alignserve::ParseList(v), ++i;
    else if (a == "--context")
      o.contexts = alignserve::ParseList(v), ++i;
    else if (a == "--heads")
      o.heads = std::atoi(v), ++i;
    else if (a == "--kv-heads")
      o.kv_heads = std::atoi(v), ++i;
    else if (a == "--head-dim")
      o.head_dim = std::atoi(v), ++i;
    else if (a == "--block-size")
      o.block_size = std::atoi(v), ++i;
    else if (a == "--kv-dtype" && (std::string_view(v) == "f32" || std::string_view(v) == "f16"))
      o.kv_type = std::string_view(v) == "f16" ? alignserve::DType::kF16 : alignserve::DType::kF32,
      ++i;
    else {
      std::fprintf(stderr, "attention_bench: unknown flag %s (see --help)\n", argv[i]);
      return 2;
    }
  }
  alignserve::ThreadPool& pool = alignserve::DefaultThreadPool();
  for (int s : o.seqs) {
    for (int c : o.contexts) alignserve::Run(o, s, c, pool);
  }
  return 0;
}
