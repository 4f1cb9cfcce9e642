// The default model's text side (tokenizer + chat template), loaded once per
// test binary straight from the GGUF metadata (no weights), and a
// ServeContext over it for the OpenAI protocol tests.
#ifndef ALIGNSERVE_TESTS_SERVER_OPENAI_TEST_UTIL_H_
#define ALIGNSERVE_TESTS_SERVER_OPENAI_TEST_UTIL_H_

#include <memory>
#include <stdexcept>
#include <string>

#include "models/formats/gguf_file.h"
#include "models/model_text.h"
#include "server/openai_request.h"
#include "tests/test_paths.h"

namespace alignserve::testing {

inline constexpr char kServedName[] = "smollm2";

// A fresh copy each call (for tests that change it, e.g. drop the template).
inline std::unique_ptr<ModelText> LoadDefaultModelText() {
  auto gguf = GgufFile::Open(DefaultModelPath());
  if (!gguf.ok()) throw std::runtime_error(std::string(gguf.status().message()));
  auto text = LoadModelTextFromGguf(**gguf);
  if (!text.ok()) throw std::runtime_error(std::string(text.status().message()));
  return std::make_unique<ModelText>(std::move(*text));
}

inline const ModelText& DefaultModelText() {
  static const ModelText* text = LoadDefaultModelText().release();
  return *text;
}

inline ServeContext DefaultContext(int max_model_len = 2048) {
  ServeContext ctx;
  ctx.text = &DefaultModelText();
  ctx.served_model_name = kServedName;
  ctx.max_model_len = max_model_len;
  ctx.vocab_size = ctx.text->tokenizer->vocab_size();
  return ctx;
}

}  // namespace alignserve::testing

#endif  // ALIGNSERVE_TESTS_SERVER_OPENAI_TEST_UTIL_H_
