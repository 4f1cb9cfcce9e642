// Sampler: picks one sequence's next token from its logits under its
// SamplingParams. Each sequence owns its RNG, seeded from the request, so a
// seeded request draws the same tokens whatever else shares the batch.
//
// Order of transforms (as vLLM and HF apply them): temperature, top-k,
// top-p, min-p, then a draw from the renormalized distribution; temperature
// 0 is argmax (lowest id on ties).
// Thread-safety: one Sampler per sequence, used by one thread at a time.
#ifndef ALIGNSERVE_ENGINE_SAMPLER_H_
#define ALIGNSERVE_ENGINE_SAMPLER_H_

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "engine/sampling_params.h"

namespace alignserve {

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  int32_t Sample(std::span<const float> logits);

 private:
  struct Candidate {
    int32_t id;
    float logit;
  };

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<Candidate> candidates_;  // reused scratch
  std::vector<double> probs_;
};

int32_t Argmax(std::span<const float> logits);

}  // namespace alignserve

#endif  // ALIGNSERVE_ENGINE_SAMPLER_H_
