// ArgParser: the command-line flags of one alignserve subcommand. Flags are
// declared with their target variable and help text, so `--help` always
// lists every flag with its default. Accepts `--name value` and
// `--name=value`; boolean flags take no value.
// Thread-safety: single-threaded use at start-up.
#ifndef ALIGNSERVE_SERVER_CLI_ARGS_H_
#define ALIGNSERVE_SERVER_CLI_ARGS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace alignserve {

// OK if value > 0, else InvalidArgument "--flag must be > 0, got value".
absl::Status RequirePositive(const char* flag, int value);

class ArgParser {
 public:
  // command: how the user invokes it, e.g. "alignserve generate".
  ArgParser(std::string command, std::string summary);

  void AddString(const std::string& name, std::string* target, const std::string& help);
  void AddInt(const std::string& name, int* target, const std::string& help);
  void AddFloat(const std::string& name, float* target, const std::string& help);
  void AddOptionalUint64(const std::string& name, std::optional<uint64_t>* target,
                         const std::string& help);
  void AddBool(const std::string& name, bool* target, const std::string& help);

  // Parses argv[first..argc). Returns NotFound-free OK, or InvalidArgument
  // naming the bad flag. Sets help_requested() on --help / -h.
  absl::Status Parse(int argc, char** argv, int first);
  bool help_requested() const { return help_requested_; }
  std::string Help() const;

 private:
  struct Flag {
    std::string name;
    std::string help;
    std::string default_text;
    bool is_bool = false;
    std::function<absl::Status(const std::string&)> set;
  };
  void Add(Flag flag) { flags_.push_back(std::move(flag)); }
  const Flag* Find(const std::string& name) const;

  std::string command_;
  std::string summary_;
  std::vector<Flag> flags_;
  bool help_requested_ = false;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_SERVER_CLI_ARGS_H_
