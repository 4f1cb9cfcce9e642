// Where tests find their inputs: committed fixtures under tests/data, and the
// default model fetched by scripts/fetch_model.sh.
#ifndef ALIGNSERVE_TESTS_TEST_PATHS_H_
#define ALIGNSERVE_TESTS_TEST_PATHS_H_

#include <cstdlib>
#include <string>

namespace alignserve::testing {

inline std::string SourcePath(const std::string& relative) {
  return std::string(ALIGNSERVE_SOURCE_DIR) + "/" + relative;
}

// The shared test data folder beside the checkout (../shared/data).
inline std::string SharedDataPath(const std::string& name) {
  return std::string(ALIGNSERVE_SOURCE_DIR) + "/../shared/data/" + name;
}

// SmolLM2-135M-Instruct Q4_1 GGUF; ALIGNSERVE_MODEL_DIR overrides the cache.
inline std::string DefaultModelPath() {
  std::string dir;
  if (const char* env = std::getenv("ALIGNSERVE_MODEL_DIR")) {
    dir = env;
  } else {
    const char* home = std::getenv("HOME");
    dir = std::string(home ? home : "/root") + "/.cache/alignserve/models";
  }
  return dir + "/SmolLM2-135M-Instruct.Q4_1.gguf";
}

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_TEST_PATHS_H_
