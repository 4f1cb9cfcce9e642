#include "alignment/policy_factory.h"

#include <type_traits>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "alignment/deepconf_policy.h"
#include "alignment/loop_guard_policy.h"
#include "alignment/policy_params.h"
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

}  // namespace

const std::vector<std::string>& ImplementedPolicyNames() {
  static const auto* names =
      new std::vector<std::string>{"deepconf", "self_consistency", "loop_guard"};
  return *names;
}

PolicyOr MakePolicy(std::string_view name, const nlohmann::json& params,
                    const PolicyDeps& /*deps*/) {
  ASSIGN_OR_RETURN(ParsedPolicy parsed, ParsePolicySpec(name, params));
  return std::visit(
      [&parsed](const auto& p) -> PolicyOr {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, DeepConfParams>) {
          return Upcast(DeepConfPolicy::Create(p));
        } else if constexpr (std::is_same_v<T, SelfConsistencyParams>) {
          return Upcast(SelfConsistencyPolicy::Create(p));
        } else if constexpr (std::is_same_v<T, LoopGuardParams>) {
          return Upcast(LoopGuardPolicy::Create(p));
        } else {
          return NotBuiltYet(parsed.name);
        }
      },
      parsed.params);
}

}  // namespace alignserve
