// Policy plugins: decoding policies built outside the tree against the C ABI
// of alignment/plugin_abi.h, loaded from a shared object at start-up
// (`--policy-plugin NAME=path.so`) and served like the built-in policies.
//
// LoadPolicyPlugin dlopens the library once; PolicyPlugin::Create makes one
// DecodingPolicy per request whose hooks forward to the plugin's C functions
// (no allocation per token: the views are converted into buffers the
// adapter reuses across steps). Each policy holds a reference to its
// PolicyPlugin, so the library stays loaded while any instance lives.
//
// Thread-safety: LoadPolicyPlugin and PolicyPlugin::Create may run on any
// thread (Create concurrently, as the plugin contract requires instances to
// be independent); the DecodingPolicy hooks run on the engine thread only.
#ifndef ALIGNSERVE_ALIGNMENT_PLUGIN_POLICY_H_
#define ALIGNSERVE_ALIGNMENT_PLUGIN_POLICY_H_

#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "alignment/plugin_abi.h"
#include "engine/decoding_policy.h"
#include "nlohmann/json.hpp"

namespace alignserve {

// One loaded plugin library. Immutable after load.
class PolicyPlugin : public std::enable_shared_from_this<PolicyPlugin> {
 public:
  // Use LoadPolicyPlugin; takes ownership of the dlopen handle.
  PolicyPlugin(std::string path, void* handle, const AlignservePolicyPlugin& table);
  ~PolicyPlugin();

  PolicyPlugin(const PolicyPlugin&) = delete;
  PolicyPlugin& operator=(const PolicyPlugin&) = delete;

  const std::string& path() const { return path_; }
  // The name the plugin gives itself (not the --policy-plugin NAME).
  const std::string& name() const { return name_; }

  // A policy for one request. InvalidArgument: the plugin refused the params
  // (its message) or asked for a spec that fails PolicySpec::Validate.
  absl::StatusOr<std::shared_ptr<DecodingPolicy>> Create(const nlohmann::json& params) const;

 private:
  const std::string path_;
  void* const handle_;  // dlopen handle, closed in the destructor
  const AlignservePolicyPlugin table_;
  const std::string name_;
};

// InvalidArgument with dlerror's text for a file that cannot be opened, has
// no alignserve_policy_plugin_v1, fails its entry point, reports another ABI
// version or leaves create/destroy null. RTLD_NOW | RTLD_LOCAL: every
// undefined symbol is resolved now, nothing leaks into other plugins.
absl::StatusOr<std::shared_ptr<PolicyPlugin>> LoadPolicyPlugin(const std::string& path);

// `NAME=path` of --policy-plugin. NAME: [a-z0-9_]+, at most 64 bytes, and
// not a built-in policy's name (policy_params.h); path non-empty.
absl::StatusOr<std::pair<std::string, std::string>> ParsePolicyPluginFlag(std::string_view flag);

}  // namespace alignserve

#endif  // ALIGNSERVE_ALIGNMENT_PLUGIN_POLICY_H_
