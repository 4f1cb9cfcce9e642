// `alignserve generate` as a user runs it: the real binary, its output, its
// exit codes and its error messages.
#include <sys/wait.h>

#include <array>
#include <catch2/catch.hpp>
#include <cstdio>
#include <string>

namespace {

struct Run {
  int exit_code;
  std::string output;  // stdout, and stderr unless dropped
};

Run Alignserve(const std::string& args, bool keep_stderr = true) {
  const std::string cmd = std::string(ALIGNSERVE_BINARY_DIR) + "/alignserve " + args +
                          (keep_stderr ? " 2>&1" : " 2>/dev/null");
  FILE* pipe = popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

bool Contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST_CASE("generate streams a greedy chat answer and reports its speed") {
  Run r = Alignserve(
      "generate --model default --chat --prompt 'What is the capital of France?' "
      "--temperature 0 --max-tokens 24");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(Contains(r.output, "Paris"));
  CHECK(Contains(r.output, "decode"));
  CHECK(Contains(r.output, "tok/s"));
}

TEST_CASE("seeded sampling is reproducible") {
  const std::string args =
      "generate --model default --prompt 'Once upon a time' --temperature 0.8 --top-p 0.9 "
      "--seed 42 --max-tokens 12 --ignore-eos";
  // stdout only: the speed report on stderr differs run to run.
  Run a = Alignserve(args, false), b = Alignserve(args, false);
  REQUIRE(a.exit_code == 0);
  CHECK(a.output.size() > 12);
  CHECK(a.output == b.output);
}

TEST_CASE("greedy text is the same with exact and i16 products") {
  // The two batch-invariant CPU profiles agree on SmolLM2's greedy text
  // (logits within 1e-2; tests/models/smollm2_parity_test.cc).
  const std::string args =
      "generate --model default --prompt 'The three primary colors are' --temperature 0 "
      "--max-tokens 16 --ignore-eos --cpu-matmul ";
  Run exact = Alignserve(args + "exact", false), i16 = Alignserve(args + "i16", false);
  REQUIRE(exact.exit_code == 0);
  REQUIRE(i16.exit_code == 0);
  CHECK(exact.output.size() > 16);
  CHECK(exact.output == i16.output);
}

TEST_CASE("--help lists every flag") {
  Run r = Alignserve("generate --help");
  CHECK(r.exit_code == 0);
  for (const char* flag :
       {"--model", "--prompt", "--chat", "--max-tokens", "--temperature", "--top-p", "--seed"}) {
    CHECK(Contains(r.output, flag));
  }
  CHECK(Alignserve("--help").exit_code == 0);
}

TEST_CASE("bad invocations fail with a message that says what to do") {
  struct Case {
    const char* args;
    const char* message;
  };
  const Case cases[] = {
      {"generate --model default", "--prompt is required"},
      {"generate --model default --prompt hi --bogus 1", "unknown flag --bogus"},
      {"generate --model /nonexistent/model.gguf --prompt hi", "/nonexistent/model.gguf"},
      {"generate --model default --prompt hi --temperature nan", "--temperature"},
      {"generate --model default --prompt hi --temperature -1", "temperature"},
      {"generate --model default --prompt hi --top-p 0", "top_p"},
      {"generate --model default --prompt hi --max-tokens 0", "--max-tokens"},
      {"generate --model default --prompt hi --cpu-matmul fast",
       "--cpu-matmul must be auto, exact, i16 or int8, got 'fast'"},
      {"bench-offline --model default --cpu-matmul fast",
       "--cpu-matmul must be auto, exact, i16 or int8, got 'fast'"},
      {"frobnicate", "unknown command"},
  };
  for (const Case& c : cases) {
    Run r = Alignserve(c.args);
    INFO(c.args << "\n" << r.output);
    CHECK(r.exit_code != 0);
    CHECK(Contains(r.output, c.message));
  }
}

}  // namespace
