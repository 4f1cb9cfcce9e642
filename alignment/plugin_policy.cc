#include "alignment/plugin_policy.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <unordered_set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "alignment/policy_params.h"

namespace alignserve {
namespace {

constexpr size_t kMaxPluginNameBytes = 64;
constexpr int64_t kErrorBufferBytes = 1024;

// Nothing may unwind out of a plugin (plugin_abi.h); a C++ plugin that
// throws anyway is treated as a failed call instead of tearing down the
// engine thread.
template <typename Fn>
int32_t Guarded(Fn&& fn) {
  try {
    return fn();
  } catch (...) {
    return ALIGNSERVE_POLICY_ERR_INTERNAL;
  }
}

int32_t ToAbiStatus(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return ALIGNSERVE_POLICY_OK;
    case absl::StatusCode::kInvalidArgument:
      return ALIGNSERVE_POLICY_ERR_INVALID_ARGUMENT;
    case absl::StatusCode::kNotFound:
      return ALIGNSERVE_POLICY_ERR_NOT_FOUND;
    case absl::StatusCode::kFailedPrecondition:
      return ALIGNSERVE_POLICY_ERR_FAILED_PRECONDITION;
    case absl::StatusCode::kResourceExhausted:
      return ALIGNSERVE_POLICY_ERR_RESOURCE_EXHAUSTED;
    default:
      return ALIGNSERVE_POLICY_ERR_INTERNAL;
  }
}

int32_t ToAbiFinish(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone:
      return ALIGNSERVE_FINISH_NONE;
    case FinishReason::kStop:
      return ALIGNSERVE_FINISH_STOP;
    case FinishReason::kLength:
      return ALIGNSERVE_FINISH_LENGTH;
    case FinishReason::kAbort:
      return ALIGNSERVE_FINISH_ABORT;
  }
  return ALIGNSERVE_FINISH_NONE;
}

TokenDecision FromAbiDecision(int32_t decision) {
  switch (decision) {
    case ALIGNSERVE_DECISION_STOP:
      return TokenDecision::kStop;
    case ALIGNSERVE_DECISION_ABORT:
      return TokenDecision::kAbort;
    case ALIGNSERVE_DECISION_PAUSE:
      return TokenDecision::kPause;
    default:
      return TokenDecision::kContinue;
  }
}

// Host callbacks: `host` is the PolicyContext of the hook being run.
PolicyContext& Ctx(void* host) { return *static_cast<PolicyContext*>(host); }

double HostFreeBlockFraction(void* host) { return Ctx(host).free_block_fraction(); }

int32_t HostFork(void* host, int64_t seq_id, int32_t count, int64_t* out_ids,
                 int32_t out_capacity) {
  if (count <= 0 || out_ids == nullptr || out_capacity < count) {
    return ALIGNSERVE_POLICY_ERR_INVALID_ARGUMENT;
  }
  absl::StatusOr<std::vector<int64_t>> children = Ctx(host).Fork(seq_id, count);
  if (!children.ok()) return ToAbiStatus(children.status());
  std::copy(children->begin(), children->end(), out_ids);
  return ALIGNSERVE_POLICY_OK;
}

int32_t HostStop(void* host, int64_t seq_id) { return ToAbiStatus(Ctx(host).Stop(seq_id)); }
int32_t HostAbort(void* host, int64_t seq_id) { return ToAbiStatus(Ctx(host).Abort(seq_id)); }
int32_t HostPause(void* host, int64_t seq_id) { return ToAbiStatus(Ctx(host).Pause(seq_id)); }
int32_t HostResume(void* host, int64_t seq_id) { return ToAbiStatus(Ctx(host).Resume(seq_id)); }

int64_t HostText(void* host, int64_t seq_id, char* buffer, int64_t capacity) {
  const std::string_view text = Ctx(host).text(seq_id);
  if (buffer != nullptr && capacity > 0) {
    const size_t n = std::min<size_t>(text.size(), static_cast<size_t>(capacity - 1));
    std::memcpy(buffer, text.data(), n);
    buffer[n] = '\0';
  }
  return static_cast<int64_t>(text.size());
}

AlignservePolicyContext MakeAbiContext(PolicyContext& ctx) {
  AlignservePolicyContext c{};
  c.struct_size = sizeof(c);
  c.host = &ctx;
  c.request_id = ctx.request_id();
  c.step = ctx.step();
  c.free_block_fraction = &HostFreeBlockFraction;
  c.fork = &HostFork;
  c.stop = &HostStop;
  c.abort = &HostAbort;
  c.pause = &HostPause;
  c.resume = &HostResume;
  c.text = &HostText;
  return c;
}

void SinkChoose(void* host, int64_t seq_id) {
  static_cast<PolicyResult*>(host)->choices.push_back(seq_id);
}

void SinkReport(void* host, const char* key, double value) {
  if (key == nullptr) return;
  static_cast<PolicyResult*>(host)->report.emplace_back(key, value);
}

// One request's policy: forwards every hook to the plugin instance. The
// conversion buffers are members reused across steps, so a step allocates
// only while a batch is larger than any before it.
class PluginPolicy final : public DecodingPolicy {
 public:
  PluginPolicy(std::shared_ptr<const PolicyPlugin> plugin, const AlignservePolicyPlugin& table,
               AlignservePolicyInstance* instance, PolicySpec spec)
      : plugin_(std::move(plugin)), table_(table), instance_(instance), spec_(std::move(spec)) {}

  ~PluginPolicy() override { table_.destroy(instance_); }

  PolicySpec Spec() const override { return spec_; }
  void OnStep(PolicyContext& ctx) override;
  void OnLogits(std::span<LogitsView> seqs, PolicyContext& ctx) override;
  void OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) override;
  void OnFinished(std::span<const SequenceEnd> ended, PolicyContext& ctx) override;
  PolicyResult Finalize(std::span<const SequenceResult> seqs) override;

 private:
  // False (and the instance retired) once any hook has failed.
  bool Healthy() const { return error_ == ALIGNSERVE_POLICY_OK; }
  void Record(int32_t status) {
    if (Healthy() && status != ALIGNSERVE_POLICY_OK) error_ = status;
  }
  // After a failure: prune every sequence the policy has seen (NotFound for
  // finished ones is expected), so a group with paused sequences ends too.
  void AbortAll(PolicyContext& ctx) {
    for (const int64_t id : seen_ids_) ctx.Abort(id).IgnoreError();
  }

  const std::shared_ptr<const PolicyPlugin> plugin_;  // keeps the library loaded
  const AlignservePolicyPlugin table_;
  AlignservePolicyInstance* const instance_;  // owned; destroyed by table_.destroy
  const PolicySpec spec_;
  int32_t error_ = ALIGNSERVE_POLICY_OK;
  std::unordered_set<int64_t> seen_ids_;
  std::vector<AlignserveLogitsView> logits_views_;
  std::vector<AlignserveTokenView> token_views_;
  std::vector<AlignserveTokenLogprob> top_logprobs_;  // all views' top-k, concatenated
  std::vector<int32_t> decisions_;
  std::vector<AlignserveSequenceEnd> ends_;
};

void PluginPolicy::OnStep(PolicyContext& ctx) {
  if (Healthy() && table_.on_step != nullptr) {
    const AlignservePolicyContext c = MakeAbiContext(ctx);
    Record(Guarded([&] { return table_.on_step(instance_, &c); }));
  }
  if (!Healthy()) AbortAll(ctx);
}

void PluginPolicy::OnLogits(std::span<LogitsView> seqs, PolicyContext& ctx) {
  if (!Healthy() || table_.on_logits == nullptr) return;
  logits_views_.clear();
  for (const LogitsView& v : seqs) {
    AlignserveLogitsView& a = logits_views_.emplace_back();
    a.seq_id = v.seq_id;
    a.output_token_ids = v.output_token_ids.data();
    a.num_output_tokens = static_cast<int64_t>(v.output_token_ids.size());
    a.logits = v.logits.data();
    a.vocab_size = static_cast<int32_t>(v.logits.size());
    a.force_token = v.force_token;
  }
  const AlignservePolicyContext c = MakeAbiContext(ctx);
  Record(Guarded([&] {
    return table_.on_logits(instance_, logits_views_.data(),
                            static_cast<int64_t>(logits_views_.size()), &c);
  }));
  if (!Healthy()) return;  // the sampler reads the rows as left; OnTokens prunes
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int32_t force = logits_views_[i].force_token;
    seqs[i].force_token = (force >= 0 && force < logits_views_[i].vocab_size) ? force : -1;
  }
}

void PluginPolicy::OnTokens(std::span<TokenView> seqs, PolicyContext& ctx) {
  for (const TokenView& v : seqs) seen_ids_.insert(v.seq_id);
  if (Healthy() && table_.on_tokens != nullptr) {
    top_logprobs_.clear();
    for (const TokenView& v : seqs) {
      for (const TokenLogprob& t : v.top_logprobs) top_logprobs_.push_back({t.token, t.logprob});
    }
    token_views_.clear();
    size_t top_offset = 0;
    for (const TokenView& v : seqs) {
      AlignserveTokenView& a = token_views_.emplace_back();
      a.seq_id = v.seq_id;
      a.parent_seq_id = v.parent_seq_id;
      a.token = v.token;
      a.boundary = v.boundary ? 1 : 0;
      a.finish_reason = ToAbiFinish(v.finish_reason);
      a.logprob = v.logprob;
      a.top_logprobs = top_logprobs_.data() + top_offset;
      a.num_top_logprobs = static_cast<int64_t>(v.top_logprobs.size());
      top_offset += v.top_logprobs.size();
      a.output_token_ids = v.output_token_ids.data();
      a.num_output_tokens = static_cast<int64_t>(v.output_token_ids.size());
      a.text_delta = v.text_delta.data();
      a.text_delta_len = static_cast<int64_t>(v.text_delta.size());
    }
    decisions_.assign(seqs.size(), ALIGNSERVE_DECISION_CONTINUE);
    const AlignservePolicyContext c = MakeAbiContext(ctx);
    Record(Guarded([&] {
      return table_.on_tokens(instance_, token_views_.data(),
                              static_cast<int64_t>(token_views_.size()), decisions_.data(), &c);
    }));
    if (Healthy()) {
      for (size_t i = 0; i < seqs.size(); ++i) seqs[i].decision = FromAbiDecision(decisions_[i]);
    }
  }
  if (!Healthy()) {
    for (TokenView& v : seqs) v.decision = TokenDecision::kAbort;
    AbortAll(ctx);
  }
}

void PluginPolicy::OnFinished(std::span<const SequenceEnd> ended, PolicyContext& ctx) {
  if (!Healthy() || table_.on_finished == nullptr) return;
  ends_.clear();
  for (const SequenceEnd& e : ended) ends_.push_back({e.seq_id, ToAbiFinish(e.reason)});
  const AlignservePolicyContext c = MakeAbiContext(ctx);
  Record(Guarded([&] {
    return table_.on_finished(instance_, ends_.data(), static_cast<int64_t>(ends_.size()), &c);
  }));
  if (!Healthy()) AbortAll(ctx);
}

PolicyResult PluginPolicy::Finalize(std::span<const SequenceResult> seqs) {
  if (Healthy() && table_.finalize == nullptr) return DecodingPolicy::Finalize(seqs);
  PolicyResult result;
  if (Healthy()) {
    std::vector<AlignserveSequenceResult> results;
    results.reserve(seqs.size());
    for (const SequenceResult& s : seqs) {
      results.push_back({s.seq_id, s.output_token_ids.data(),
                         static_cast<int64_t>(s.output_token_ids.size()), s.text.data(),
                         static_cast<int64_t>(s.text.size()), ToAbiFinish(s.finish_reason)});
    }
    AlignserveFinalizeSink sink{sizeof(AlignserveFinalizeSink), &result, &SinkChoose, &SinkReport};
    Record(Guarded([&] {
      return table_.finalize(instance_, results.data(), static_cast<int64_t>(results.size()),
                             &sink);
    }));
  }
  if (!Healthy()) {
    result.choices.clear();
    result.report.emplace_back("plugin_error", static_cast<double>(error_));
  }
  return result;
}

absl::StatusOr<PolicySpec> ReadSpec(const AlignservePolicyPlugin& table,
                                    const AlignservePolicyInstance* instance) {
  const PolicySpec defaults;
  AlignservePolicySpec s{};
  s.struct_size = sizeof(s);
  s.num_sequences = defaults.num_sequences;
  s.wants_logits = defaults.wants_logits ? 1 : 0;
  s.top_logprobs = defaults.top_logprobs;
  s.boundary_every = defaults.boundary_every;
  if (table.spec != nullptr) {
    const int32_t status = Guarded([&] { return table.spec(instance, &s); });
    if (status != ALIGNSERVE_POLICY_OK) {
      return absl::InvalidArgumentError(absl::StrCat("spec failed with status ", status));
    }
  }
  PolicySpec spec;
  spec.num_sequences = s.num_sequences;
  spec.wants_logits = s.wants_logits != 0;
  spec.top_logprobs = s.top_logprobs;
  spec.boundary_every = s.boundary_every;
  if (s.boundary_delimiter != nullptr) {
    // One byte past the cap is enough for Validate to refuse it.
    const size_t n = strnlen(s.boundary_delimiter, PolicySpec::kMaxDelimiterBytes + 1);
    spec.boundary_delimiter.assign(s.boundary_delimiter, n);
  }
  if (absl::Status valid = spec.Validate(); !valid.ok()) return valid;
  return spec;
}

}  // namespace

PolicyPlugin::PolicyPlugin(std::string path, void* handle, const AlignservePolicyPlugin& table)
    : path_(std::move(path)),
      handle_(handle),
      table_(table),
      name_(table.name != nullptr ? std::string(table.name, strnlen(table.name, 256)) : "") {}

PolicyPlugin::~PolicyPlugin() { dlclose(handle_); }

absl::StatusOr<std::shared_ptr<DecodingPolicy>> PolicyPlugin::Create(
    const nlohmann::json& params) const {
  const std::string json = params.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  char error[kErrorBufferBytes] = {};
  AlignservePolicyInstance* instance = nullptr;
  const int32_t status = Guarded([&] {
    return table_.create(json.data(), static_cast<int64_t>(json.size()), &instance, error,
                         kErrorBufferBytes);
  });
  error[kErrorBufferBytes - 1] = '\0';
  const std::string where = absl::StrCat("policy plugin '", name_, "' (", path_, ")");
  if (status != ALIGNSERVE_POLICY_OK || instance == nullptr) {
    if (instance != nullptr) table_.destroy(instance);
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": ", error[0] != '\0' ? error : "refused its params", " (status ", status, ")"));
  }
  absl::StatusOr<PolicySpec> spec = ReadSpec(table_, instance);
  if (!spec.ok()) {
    table_.destroy(instance);
    return absl::InvalidArgumentError(
        absl::StrCat(where, " asked for a bad spec: ", spec.status().message()));
  }
  return std::make_shared<PluginPolicy>(shared_from_this(), table_, instance, *std::move(spec));
}

absl::StatusOr<std::shared_ptr<PolicyPlugin>> LoadPolicyPlugin(const std::string& path) {
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load policy plugin ", path, ": ", why ? why : "dlopen failed"));
  }
  dlerror();
  void* symbol = dlsym(handle, ALIGNSERVE_POLICY_ENTRY_SYMBOL);
  if (symbol == nullptr) {
    const char* why = dlerror();
    const std::string message = absl::StrCat(
        path, " is not an alignserve policy plugin of ABI version ", ALIGNSERVE_POLICY_ABI_VERSION,
        ": no symbol ", ALIGNSERVE_POLICY_ENTRY_SYMBOL, " (", why ? why : "not found", ")");
    dlclose(handle);
    return absl::InvalidArgumentError(message);
  }
  const auto entry = reinterpret_cast<AlignservePolicyPluginEntryV1>(symbol);
  const AlignservePolicyHost host{sizeof(AlignservePolicyHost), ALIGNSERVE_POLICY_ABI_VERSION,
                                  PolicySpec::kMaxSequences, PolicySpec::kMaxDelimiterBytes};
  AlignservePolicyPlugin table{};
  table.struct_size = sizeof(table);
  const int32_t status = Guarded([&] { return entry(&host, &table); });
  std::string problem;
  if (status != ALIGNSERVE_POLICY_OK) {
    problem = absl::StrCat(ALIGNSERVE_POLICY_ENTRY_SYMBOL, " failed with status ", status);
  } else if (table.abi_version != ALIGNSERVE_POLICY_ABI_VERSION) {
    problem = absl::StrCat("it reports ABI version ", table.abi_version, ", the server speaks ",
                           ALIGNSERVE_POLICY_ABI_VERSION);
  } else if (table.create == nullptr || table.destroy == nullptr) {
    problem = "it has no create or destroy function";
  }
  if (!problem.empty()) {
    dlclose(handle);
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load policy plugin ", path, ": ", problem));
  }
  return std::make_shared<PolicyPlugin>(path, handle, table);
}

absl::StatusOr<std::pair<std::string, std::string>> ParsePolicyPluginFlag(std::string_view flag) {
  const size_t eq = flag.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == flag.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--policy-plugin expects NAME=path.so, got '", std::string(flag), "'"));
  }
  std::string name(flag.substr(0, eq));
  const bool valid_chars = std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
  if (!valid_chars || name.size() > kMaxPluginNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("--policy-plugin NAME must be [a-z0-9_]+ of at most ", kMaxPluginNameBytes,
                     " bytes, got '", name, "'"));
  }
  const std::vector<std::string>& builtins = BuiltinPolicyNames();
  if (std::find(builtins.begin(), builtins.end(), name) != builtins.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--policy-plugin NAME '", name, "' is a built-in policy"));
  }
  return std::make_pair(std::move(name), std::string(flag.substr(eq + 1)));
}

}  // namespace alignserve
