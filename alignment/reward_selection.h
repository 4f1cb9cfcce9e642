// Reward selection: which of n scored samples a request returns.
//
//   best-of-n        argmax reward; the lowest index wins ties; a NaN reward
//                    never wins (NaN-only or empty input selects nothing;
//                    -inf is an ordinary, lowest, reward).
//   soft best-of-n   (Verdun, Oesterling, Lakkaraju, Calmon 2025) sample i
//                    with probability exp(r_i / lambda) / sum_j exp(r_j /
//                    lambda), computed with the maximum subtracted so no
//                    exponent overflows. NaN rewards get probability 0;
//                    +inf rewards share all the mass equally; when every
//                    selectable reward is -inf the first one gets it all
//                    (as best-of-n). lambda below (or NaN)
//                    kSoftBestOfNArgmaxLambda (1e-6), including 0, selects
//                    best-of-n's choice with certainty (the lambda -> 0
//                    limit, with its tie rule).
//
// The draw is reproducible: the caller's seed drives std::mt19937_64, whose
// output sequence is fixed by the standard, and the uniform in [0, 1) is
// built from its top 53 bits here rather than by uniform_real_distribution
// (whose algorithm differs between standard libraries).
//
// Thread-safety: pure functions.
#ifndef ALIGNSERVE_ALIGNMENT_REWARD_SELECTION_H_
#define ALIGNSERVE_ALIGNMENT_REWARD_SELECTION_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace alignserve {

inline constexpr double kSoftBestOfNArgmaxLambda = 1e-6;

// Index of the highest non-NaN reward (lowest index on ties), or nullopt.
std::optional<size_t> BestOfN(std::span<const double> rewards);

// Selection probabilities, one per reward, summing to 1; all zero when
// nothing is selectable (empty or all NaN).
std::vector<double> SoftBestOfNProbabilities(std::span<const double> rewards, double lambda);

// One draw from SoftBestOfNProbabilities with `seed`; nullopt when nothing
// is selectable.
std::optional<size_t> SoftBestOfN(std::span<const double> rewards, double lambda, uint64_t seed);

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_REWARD_SELECTION_H_
