#include "models/model_loader.h"

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "models/formats/bounded_json.h"
#include "models/formats/gguf_file.h"
#include "models/formats/safetensors_file.h"
#include "models/llama_model.h"
#include "models/weight_source.h"

namespace alignserve {
namespace {

constexpr char kDefaultModelFile[] = "SmolLM2-135M-Instruct.Q4_1.gguf";

// The forward pass over weights read from any source, whatever its format.
absl::StatusOr<std::unique_ptr<Model>> BuildModel(const WeightSource& source,
                                                  const ModelConfig& config, Backend& backend,
                                                  const ModelOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<LlamaWeights> weights,
                   LoadLlamaWeights(source, config, backend));
  ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model,
                   LlamaModel::Create(config, std::move(weights), backend, options.max_model_len));
  return std::unique_ptr<Model>(std::move(model));
}

absl::Status LoadGguf(LoadedModel& loaded, Backend& backend, const ModelOptions& options) {
  ASSIGN_OR_RETURN(loaded.gguf, GgufFile::Open(loaded.path));
  ASSIGN_OR_RETURN(ModelConfig config, ConfigFromGguf(*loaded.gguf));
  ASSIGN_OR_RETURN(loaded.model,
                   BuildModel(*GgufWeightSource(*loaded.gguf), config, backend, options));
  if (options.load_text) {
    ASSIGN_OR_RETURN(loaded.text, LoadModelTextFromGguf(*loaded.gguf));
  }
  return absl::OkStatus();
}

absl::Status LoadHfFolder(LoadedModel& loaded, Backend& backend, const ModelOptions& options) {
  const std::string config_path = loaded.path + "/config.json";
  ASSIGN_OR_RETURN(nlohmann::json config_json, ReadJsonObjectFile(config_path));
  ASSIGN_OR_RETURN(ModelConfig config, ConfigFromHfJson(config_json, config_path));
  ASSIGN_OR_RETURN(loaded.safetensors, SafetensorsCheckpoint::Open(loaded.path));
  ASSIGN_OR_RETURN(loaded.model, BuildModel(*SafetensorsWeightSource(*loaded.safetensors), config,
                                            backend, options));
  if (options.load_text) {
    ASSIGN_OR_RETURN(loaded.text, LoadModelTextFromFolder(loaded.path));
  }
  return absl::OkStatus();
}

}  // namespace

LoadedModel::~LoadedModel() = default;

std::string ModelCacheDir() {
  if (const char* dir = std::getenv("ALIGNSERVE_MODEL_DIR"); dir && *dir) return dir;
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/root") + "/.cache/alignserve/models";
}

std::string ResolveModelPath(const std::string& path) {
  if (path == "default") return ModelCacheDir() + "/" + kDefaultModelFile;
  return path;
}

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModel(const std::string& path, Backend& backend,
                                                       const ModelOptions& options) {
  auto loaded = std::make_unique<LoadedModel>();
  loaded->path = ResolveModelPath(path);
  std::error_code ec;
  const std::filesystem::path fs_path(loaded->path);
  if (!std::filesystem::exists(fs_path, ec)) {
    if (path == "default") {
      return absl::NotFoundError(
          absl::StrCat("the default model is not in ", loaded->path,
                       "; run scripts/fetch_model.sh (or set ALIGNSERVE_MODEL_DIR) first"));
    }
    return absl::NotFoundError(absl::StrCat(loaded->path, ": no such file or folder"));
  }
  loaded->name = fs_path.filename().string();
  if (std::filesystem::is_directory(fs_path, ec)) {
    RETURN_IF_ERROR(LoadHfFolder(*loaded, backend, options));
  } else {
    RETURN_IF_ERROR(LoadGguf(*loaded, backend, options));
  }
  return loaded;
}

}  // namespace alignserve
