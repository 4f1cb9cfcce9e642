#include "server/fault_injecting_model.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace alignserve {
namespace {

absl::Status BadEntry(const std::string& entry, const std::string& why) {
  return absl::InvalidArgumentError(
      absl::StrCat(kFaultInjectEnv, ": bad entry '", entry, "': ", why,
                   " (keys: forward_error_every, forward_error_on_token, "
                   "forward_stall_on_token, forward_stall_ms, load_delay_ms)"));
}

bool HoldsToken(const BatchLayout& layout, int32_t token) {
  return token >= 0 && std::find(layout.token_ids.begin(), layout.token_ids.end(), token) !=
                           layout.token_ids.end();
}

}  // namespace

std::string FaultSpec::Describe() const {
  return absl::StrCat("forward_error_every:", forward_error_every,
                      " forward_error_on_token:", forward_error_on_token,
                      " forward_stall_on_token:", forward_stall_on_token,
                      " forward_stall_ms:", forward_stall_ms, " load_delay_ms:", load_delay_ms);
}

absl::StatusOr<FaultSpec> ParseFaultSpec(const std::string& text) {
  FaultSpec spec;
  for (absl::string_view piece : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    const std::string entry(piece);
    const std::vector<std::string> kv = absl::StrSplit(entry, ':');
    int64_t value = 0;
    if (kv.size() != 2 || !absl::SimpleAtoi(kv[1], &value) || value < 0) {
      return BadEntry(entry, "expected key:value with a non-negative integer value");
    }
    const std::string& key = kv[0];
    if (key == "forward_error_every") {
      spec.forward_error_every = value;
    } else if (key == "forward_error_on_token" || key == "forward_stall_on_token") {
      if (value > INT32_MAX) return BadEntry(entry, "token id out of range");
      (key == "forward_error_on_token" ? spec.forward_error_on_token
                                       : spec.forward_stall_on_token) = static_cast<int32_t>(value);
    } else if (key == "forward_stall_ms") {
      spec.forward_stall_ms = value;
    } else if (key == "load_delay_ms") {
      spec.load_delay_ms = value;
    } else {
      return BadEntry(entry, "unknown key");
    }
  }
  return spec;
}

absl::StatusOr<FaultSpec> FaultSpecFromEnv() {
  const char* value = std::getenv(kFaultInjectEnv);
  if (value == nullptr) return FaultSpec{};
  return ParseFaultSpec(value);
}

FaultInjectingModel::FaultInjectingModel(std::unique_ptr<Model> inner, FaultSpec spec)
    : inner_(std::move(inner)), spec_(spec) {}

absl::Status FaultInjectingModel::Forward(const BatchLayout& layout, KvCache& cache,
                                          const ForwardOptions& options, ForwardOutput& out) {
  ++num_forwards_;
  if (spec_.forward_error_every > 0 && num_forwards_ % spec_.forward_error_every == 0) {
    return absl::InternalError(
        absl::StrCat("injected fault: forward pass ", num_forwards_, " failed (test only)"));
  }
  if (HoldsToken(layout, spec_.forward_error_on_token)) {
    return absl::InternalError(absl::StrCat("injected fault: forward pass over token ",
                                            spec_.forward_error_on_token, " failed (test only)"));
  }
  if (HoldsToken(layout, spec_.forward_stall_on_token)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(spec_.forward_stall_ms));
  }
  return inner_->Forward(layout, cache, options, out);
}

}  // namespace alignserve
