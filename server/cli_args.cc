#include "server/cli_args.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace alignserve {

absl::Status RequirePositive(const char* flag, int value) {
  if (value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("--", flag, " must be > 0, got ", value));
}

ArgParser::ArgParser(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

void ArgParser::AddString(const std::string& name, std::string* target, const std::string& help) {
  Add({name, help, *target, false, [target](const std::string& v) {
         *target = v;
         return absl::OkStatus();
       }});
}

void ArgParser::AddInt(const std::string& name, int* target, const std::string& help) {
  Add({name, help, std::to_string(*target), false, [name, target](const std::string& v) {
         if (!absl::SimpleAtoi(v, target)) {
           return absl::InvalidArgumentError(absl::StrCat("--", name, " wants an integer, got '",
                                                          v, "'"));
         }
         return absl::OkStatus();
       }});
}

void ArgParser::AddFloat(const std::string& name, float* target, const std::string& help) {
  Add({name, help, absl::StrCat(*target), false, [name, target](const std::string& v) {
         if (!absl::SimpleAtof(v, target) || !std::isfinite(*target)) {
           return absl::InvalidArgumentError(absl::StrCat("--", name, " wants a number, got '",
                                                          v, "'"));
         }
         return absl::OkStatus();
       }});
}

void ArgParser::AddOptionalUint64(const std::string& name, std::optional<uint64_t>* target,
                                  const std::string& help) {
  Add({name, help, target->has_value() ? std::to_string(**target) : "none", false,
       [name, target](const std::string& v) {
         uint64_t value;
         if (!absl::SimpleAtoi(v, &value)) {
           return absl::InvalidArgumentError(
               absl::StrCat("--", name, " wants a non-negative integer, got '", v, "'"));
         }
         *target = value;
         return absl::OkStatus();
       }});
}

void ArgParser::AddBool(const std::string& name, bool* target, const std::string& help) {
  Add({name, help, *target ? "on" : "off", true, [target](const std::string&) {
         *target = true;
         return absl::OkStatus();
       }});
}

const ArgParser::Flag* ArgParser::Find(const std::string& name) const {
  for (const Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

absl::Status ArgParser::Parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_requested_ = true;
      return absl::OkStatus();
    }
    if (arg.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg,
                                                     "' (see --help)"));
    }
    std::string name = arg.substr(2), value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    const Flag* flag = Find(name);
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    if (!flag->is_bool && !has_value) {
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat("--", name,
                                                                        " needs a value"));
      value = argv[++i];
    }
    absl::Status s = flag->set(value);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

std::string ArgParser::Help() const {
  std::string out = absl::StrCat("usage: ", command_, " [flags]\n\n", summary_,
                                 "\n\nflags:\n");
  for (const Flag& f : flags_) {
    std::string left = absl::StrCat("  --", f.name, f.is_bool ? "" : " VALUE");
    if (left.size() < 26) left.resize(26, ' ');
    absl::StrAppend(&out, left, " ", f.help, " (default: ", f.default_text, ")\n");
  }
  return out;
}

}  // namespace alignserve
