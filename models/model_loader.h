// Opens a model checkpoint, whatever its format, into everything serving
// needs: the config, the weights on a Backend, the forward pass, and the
// files that must stay mapped while the weights view them.
//
// A path is a .gguf file, or a Hugging Face folder (config.json plus
// model.safetensors or a sharded index). "default" names SmolLM2-135M-
// Instruct Q4_1, fetched by scripts/fetch_model.sh into the model cache.
// Thread-safety: LoadModel may run on any thread; the result is then driven
// by one thread.
#ifndef ALIGNSERVE_MODELS_MODEL_LOADER_H_
#define ALIGNSERVE_MODELS_MODEL_LOADER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "models/model.h"
#include "models/model_text.h"

namespace alignserve {

class GgufFile;
class SafetensorsCheckpoint;

struct ModelOptions {
  int max_model_len = 0;  // <= 0: the model's own context length
  // Load the tokenizer and chat template (a HF folder without them, such as
  // a test checkpoint, loads with load_text = false).
  bool load_text = true;
};

struct LoadedModel {
  std::string path;                // resolved path
  std::string name;                // file or folder name, for display and the API
  std::unique_ptr<GgufFile> gguf;  // set for GGUF models
  std::unique_ptr<SafetensorsCheckpoint> safetensors;  // set for HF folders
  std::unique_ptr<Model> model;                        // views the mapped files above
  ModelText text;                                      // tokenizer, chat template, stop tokens

  ~LoadedModel();
};

// The model cache: $ALIGNSERVE_MODEL_DIR, else ~/.cache/alignserve/models.
std::string ModelCacheDir();
// Expands "default" to the default model's path; other paths are unchanged.
std::string ResolveModelPath(const std::string& path);

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModel(const std::string& path, Backend& backend,
                                                       const ModelOptions& options = {});

}  // namespace alignserve

#endif  // ALIGNSERVE_MODELS_MODEL_LOADER_H_
