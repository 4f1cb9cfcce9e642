// Decode-graph padding on the CPU (the graphs themselves run on a GPU:
// tests/gpu/cuda_model_test.cc): which steps qualify, the bucket sizes, and
// that a decode step padded to its graph shape gives the real rows the
// logits of the unpadded step while its padding rows store no K/V.
#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "models/decode_graphs.h"
#include "models/model_loader.h"
#include "tests/models/model_test_util.h"
#include "tests/test_paths.h"

namespace alignserve {
namespace {

using testing::MaxAbsDiff;
using testing::SourcePath;

const ModelOptions kNoText{.max_model_len = 0, .load_text = false};

// n decode sequences, sequence s at position 10 + 3 s with blocks
// 1 + s * 8 ... (block 0 belongs to no sequence).
BatchLayout DecodeLayout(int n, int block_size) {
  BatchLayout layout;
  for (int s = 0; s < n; ++s) {
    const int pos = 10 + 3 * s;
    std::vector<int32_t> blocks;
    for (int b = 0; b <= pos / block_size; ++b) blocks.push_back(1 + s * 8 + b);
    layout.AddSequence({7 + s}, pos, blocks, block_size, true);
  }
  layout.Finish();
  return layout;
}

TEST_CASE("only decode steps that sample every sequence once replay graphs") {
  DecodeGraphs graphs(8);
  ForwardOptions plain;
  CHECK(graphs.Eligible(DecodeLayout(3, 4), plain));
  CHECK(graphs.Eligible(DecodeLayout(8, 4), plain));
  CHECK_FALSE(graphs.Eligible(DecodeLayout(9, 4), plain));  // over max_batch
  ForwardOptions hidden;
  hidden.want_hidden = true;
  CHECK_FALSE(graphs.Eligible(DecodeLayout(3, 4), hidden));
  BatchLayout prefill;
  prefill.AddSequence({1, 2, 3}, 0, {1}, 4, true);
  prefill.Finish();
  CHECK_FALSE(graphs.Eligible(prefill, plain));
  BatchLayout all_rows;  // a chunk asking for every row (prompt logprobs)
  all_rows.AddSequence({1, 2}, 0, {1}, 4, true, /*all_logits=*/true);
  all_rows.Finish();
  CHECK_FALSE(graphs.Eligible(all_rows, plain));
  BatchLayout silent;  // a sequence that does not sample
  silent.AddSequence({1}, 5, {1, 2}, 4, false);
  silent.Finish();
  CHECK_FALSE(graphs.Eligible(silent, plain));
  CHECK_FALSE(DecodeGraphs(0).Eligible(DecodeLayout(1, 4), plain));
}

TEST_CASE("graph shapes round batches and block-table widths up to buckets") {
  const std::pair<int, int> batches[] = {{1, 1},   {2, 2},   {3, 4},   {5, 8},    {8, 8},
                                         {9, 16},  {17, 24}, {64, 64}, {65, 80},  {250, 256},
                                         {257, 288}};
  for (auto [n, bucket] : batches) {
    INFO("n = " << n);
    CHECK(DecodeGraphs::ShapeFor(DecodeLayout(n, 64)).batch == bucket);
  }
  BatchLayout wide = DecodeLayout(1, 4);  // position 10: 3 blocks
  CHECK(DecodeGraphs::ShapeFor(wide).width == 16);
  BatchLayout wider;
  wider.AddSequence({1}, 16 * 17, std::vector<int32_t>(18, 1), 16, true);
  wider.Finish();
  CHECK(DecodeGraphs::ShapeFor(wider).width == 32);
}

TEST_CASE("a decode step padded to its graph shape keeps the real rows' logits") {
  CpuBackend backend;
  auto loaded = LoadModel(SourcePath("tests/data/models/tiny_llama3"), backend, kNoText);
  REQUIRE(loaded.ok());
  Model& model = *(*loaded)->model;
  const int vocab = model.config().vocab_size;
  constexpr int kBlockSize = 4;
  auto cache = model.AllocateKvCache(64, kBlockSize);
  REQUIRE(cache.ok());
  // Give every sequence a context: prefill positions [0, pos) with random ids.
  std::mt19937 rng(7);
  const int n = 3;
  const BatchLayout decode = DecodeLayout(n, kBlockSize);
  BatchLayout prefill;
  for (int s = 0; s < n; ++s) {
    const int pos = decode.positions[s];
    std::vector<int32_t> ids(pos);
    for (int32_t& id : ids) id = static_cast<int32_t>(rng() % vocab);
    std::vector<int32_t> blocks(decode.block_tables.begin() + s * decode.max_blocks_per_seq,
                                decode.block_tables.begin() + (s + 1) * decode.max_blocks_per_seq);
    blocks.resize((pos + kBlockSize) / kBlockSize);
    prefill.AddSequence(ids, 0, blocks, kBlockSize, true);
  }
  prefill.Finish();
  ForwardOutput ignored;
  REQUIRE(model.Forward(prefill, **cache, false, ignored).ok());

  ForwardOutput unpadded;
  REQUIRE(model.Forward(decode, **cache, false, unpadded).ok());
  const KvCacheSpec& spec = (*cache)->spec();
  const size_t block_bytes = spec.bytes_per_block_per_layer();
  std::vector<char> block0_before;
  for (int layer = 0; layer < spec.num_layers; ++layer) {
    for (void* base : {(*cache)->k(layer), (*cache)->v(layer)}) {
      const char* p = static_cast<const char*>(base);
      block0_before.insert(block0_before.end(), p, p + block_bytes);
    }
  }

  const DecodeGraphs::Shape shape{8, 16};
  BatchLayout padded;
  DecodeGraphs::Pad(decode, shape, padded);
  REQUIRE(padded.num_seqs() == 8);
  REQUIRE(padded.max_blocks_per_seq == 16);
  CHECK(padded.slot_mapping[n] == kPaddingSlot);
  ForwardOutput out;
  REQUIRE(model.Forward(padded, **cache, false, out).ok());
  REQUIRE(out.num_rows == 8);
  CHECK(MaxAbsDiff(out.logits.data(), unpadded.logits.data(), static_cast<size_t>(n) * vocab) <=
        1e-5f);
  for (int s = 0; s < n; ++s) CHECK(out.argmax[s] == unpadded.argmax[s]);

  // Padding rows read block 0 but never write it.
  std::vector<char> block0_after;
  for (int layer = 0; layer < spec.num_layers; ++layer) {
    for (void* base : {(*cache)->k(layer), (*cache)->v(layer)}) {
      const char* p = static_cast<const char*>(base);
      block0_after.insert(block0_after.end(), p, p + block_bytes);
    }
  }
  CHECK(block0_after == block0_before);
}

}  // namespace
}  // namespace alignserve
