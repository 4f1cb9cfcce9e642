#include "alignment/policy_factory.h"

#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "alignment/args_policy.h"
#include "alignment/best_of_n_policy.h"
#include "alignment/blockwise_cd_policy.h"
#include "alignment/deepconf_policy.h"
#include "alignment/loop_guard_policy.h"
#include "alignment/plugin_policy.h"
#include "alignment/policy_params.h"
#include "alignment/prm_beam_search_policy.h"
#include "alignment/self_consistency_policy.h"
#include "kernels/status_macros.h"

namespace alignserve {
namespace {

using PolicyOr = absl::StatusOr<std::shared_ptr<DecodingPolicy>>;

template <typename P>
PolicyOr Upcast(absl::StatusOr<std::shared_ptr<P>> made) {
  if (!made.ok()) return made.status();
  return std::shared_ptr<DecodingPolicy>(std::move(*made));
}

PolicyOr NotBuiltYet(const std::string& name) {
  return absl::UnimplementedError(absl::StrCat("alignment policy '", name,
                                               "' is not implemented yet; implemented policies: ",
                                               absl::StrJoin(ImplementedPolicyNames(), ", ")));
}

absl::Status RequireRewardModel(const std::string& name, const PolicyDeps& deps) {
  if (deps.reward_model != nullptr) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "alignment policy '", name, "' needs a reward model and the server has none configured"));
}

// best_of_n and soft_best_of_n (lambda set) share BestOfNPolicy.
PolicyOr MakeBestOfN(const std::string& name, int32_t n, std::optional<double> lambda,
                     const PolicyDeps& deps) {
  RETURN_IF_ERROR(RequireRewardModel(name, deps));
  BestOfNOptions options;
  options.n = n;
  options.lambda = lambda;
  options.prompt = deps.prompt;
  options.tokenizer = deps.tokenizer;
  return std::shared_ptr<DecodingPolicy>(
      std::make_shared<BestOfNPolicy>(std::move(options), deps.reward_model));
}

}  // namespace

const std::vector<std::string>& ImplementedPolicyNames() {
  static const auto* names = new std::vector<std::string>{
      "best_of_n",        "soft_best_of_n",  "args",      "blockwise_cd", "deepconf",
      "self_consistency", "prm_beam_search", "loop_guard"};
  return *names;
}

PolicyOr MakePolicy(std::string_view name, const nlohmann::json& params, const PolicyDeps& deps) {
  // Plugins first: their names are not built-in names (ParsePolicyPluginFlag
  // refuses those), and ParsePolicySpec rejects every other name.
  if (deps.plugins != nullptr) {
    if (auto it = deps.plugins->find(std::string(name)); it != deps.plugins->end()) {
      return it->second->Create(params.is_null() ? nlohmann::json::object() : params);
    }
  }
  ASSIGN_OR_RETURN(ParsedPolicy parsed, ParsePolicySpec(name, params));
  return std::visit(
      [&parsed, &deps](const auto& p) -> PolicyOr {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, BestOfNParams>) {
          return MakeBestOfN(parsed.name, p.n, std::nullopt, deps);
        } else if constexpr (std::is_same_v<T, SoftBestOfNParams>) {
          return MakeBestOfN(parsed.name, p.n, p.lambda, deps);
        } else if constexpr (std::is_same_v<T, ArgsParams>) {
          RETURN_IF_ERROR(RequireRewardModel(parsed.name, deps));
          return Upcast(
              ArgsPolicy::Create(ArgsOptions{p, deps.prompt, deps.tokenizer}, deps.reward_model));
        } else if constexpr (std::is_same_v<T, BlockwiseCdParams>) {
          RETURN_IF_ERROR(RequireRewardModel(parsed.name, deps));
          return Upcast(BlockwiseCdPolicy::Create(
              BlockwiseCdOptions{p, deps.prompt, deps.tokenizer, {}}, deps.reward_model));
        } else if constexpr (std::is_same_v<T, DeepConfParams>) {
          return Upcast(DeepConfPolicy::Create(p));
        } else if constexpr (std::is_same_v<T, SelfConsistencyParams>) {
          return Upcast(SelfConsistencyPolicy::Create(p));
        } else if constexpr (std::is_same_v<T, PrmBeamSearchParams>) {
          RETURN_IF_ERROR(RequireRewardModel(parsed.name, deps));
          return Upcast(PrmBeamSearchPolicy::Create(
              PrmBeamSearchOptions{p, deps.prompt, deps.tokenizer}, deps.reward_model));
        } else if constexpr (std::is_same_v<T, LoopGuardParams>) {
          return Upcast(LoopGuardPolicy::Create(p));
        } else {
          return NotBuiltYet(parsed.name);
        }
      },
      parsed.params);
}

}  // namespace alignserve
