// The default model (SmolLM2-135M-Instruct) loaded once per test binary on
// the CPU backend: loading it per test case costs time.
#ifndef ALIGNSERVE_TESTS_ENGINE_SHARED_DEFAULT_MODEL_H_
#define ALIGNSERVE_TESTS_ENGINE_SHARED_DEFAULT_MODEL_H_

#include <memory>

#include <catch2/catch.hpp>

#include "kernels/cpu/cpu_backend.h"
#include "models/model_loader.h"
#include "tests/test_paths.h"

namespace alignserve::testing {

struct SharedDefaultModel {
  CpuBackend backend;
  std::unique_ptr<LoadedModel> loaded;
};

inline SharedDefaultModel& SharedModel() {
  static SharedDefaultModel* shared = [] {
    auto* s = new SharedDefaultModel;
    auto loaded = LoadModel(DefaultModelPath(), s->backend);
    if (!loaded.ok()) FAIL("cannot load the default model: " << loaded.status());
    s->loaded = std::move(*loaded);
    return s;
  }();
  return *shared;
}

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_ENGINE_SHARED_DEFAULT_MODEL_H_
