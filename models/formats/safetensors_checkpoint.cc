// SafetensorsCheckpoint (declared in safetensors_file.h): a checkpoint folder
// of one model.safetensors or of shards listed by model.safetensors.index.json.
#include <sys/stat.h>

#include <algorithm>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "models/formats/bounded_json.h"
#include "models/formats/byte_reader.h"
#include "models/formats/safetensors_file.h"

namespace alignserve {
namespace {

using nlohmann::json;

constexpr int kMaxIndexDepth = 16;

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// A shard must be a plain file name inside the checkpoint folder, so an
// index cannot point the loader at /etc/passwd or ../../elsewhere.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

std::string Quote(std::string_view name) {
  constexpr size_t kMaxShown = 80;
  std::string quoted = absl::StrCat("'", absl::CHexEscape(ToAbsl(name.substr(0, kMaxShown))));
  if (name.size() > kMaxShown) absl::StrAppend(&quoted, "...");
  return quoted + "'";
}

// The index's weight_map as tensor name -> shard file name, validated.
absl::StatusOr<std::map<std::string, std::string>> ReadWeightMap(const std::string& index_path) {
  ASSIGN_OR_RETURN(json root, ReadJsonObjectFile(index_path, kMaxIndexDepth));
  auto weight_map = root.find("weight_map");
  if (weight_map == root.end() || !weight_map->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": 'weight_map' is missing or not an object"));
  }
  if (weight_map->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": 'weight_map' names no tensors"));
  }
  std::map<std::string, std::string> shards;
  for (auto it = weight_map->begin(); it != weight_map->end(); ++it) {
    if (!it->is_string() || !IsPlainFileName(it->get_ref<const std::string&>())) {
      std::string shown = it->dump(-1, ' ', false, json::error_handler_t::replace).substr(0, 80);
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": 'weight_map' entry ", Quote(it.key()), " is ", shown,
                       ", not the file name of a shard in the checkpoint folder"));
    }
    shards.emplace(it.key(), it->get<std::string>());
  }
  return shards;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Open(
    const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat(dir, ": not a checkpoint folder"));
  }
  std::unique_ptr<SafetensorsCheckpoint> checkpoint(new SafetensorsCheckpoint(dir));
  std::string index_path = absl::StrCat(dir, "/", ToAbsl(kIndexFile));
  std::string single_path = absl::StrCat(dir, "/", ToAbsl(kSingleFile));
  if (IsRegularFile(index_path)) {
    RETURN_IF_ERROR(checkpoint->OpenSharded(index_path));
  } else if (IsRegularFile(single_path)) {
    RETURN_IF_ERROR(checkpoint->OpenSingle(single_path));
  } else {
    return absl::NotFoundError(
        absl::StrCat(dir, ": has neither ", ToAbsl(kIndexFile), " nor ", ToAbsl(kSingleFile)));
  }
  return checkpoint;
}

absl::Status SafetensorsCheckpoint::OpenSingle(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  for (const SafetensorsTensor& t : file->tensors()) by_name_.emplace(t.name, &t);
  files_.push_back(std::move(file));
  return absl::OkStatus();
}

absl::Status SafetensorsCheckpoint::OpenSharded(const std::string& index_path) {
  ASSIGN_OR_RETURN(auto weight_map, ReadWeightMap(index_path));
  std::map<std::string, const SafetensorsFile*> shards;  // file name -> opened shard
  for (const auto& [tensor, shard] : weight_map) shards.emplace(shard, nullptr);
  for (auto& [shard_name, opened] : shards) {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> shard =
        SafetensorsFile::Open(absl::StrCat(dir_, "/", shard_name));
    if (!shard.ok()) {
      return PrefixError(shard.status(), absl::StrCat(index_path, ": shard ", Quote(shard_name)));
    }
    opened = shard->get();
    files_.push_back(*std::move(shard));
  }
  for (const auto& [tensor_name, shard_name] : weight_map) {
    const SafetensorsFile* shard = shards.at(shard_name);
    const SafetensorsTensor* tensor = shard->FindTensor(tensor_name);
    if (tensor == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": tensor ", Quote(tensor_name), " is mapped to shard ",
                       Quote(shard_name), ", but ", shard->path(), " has no such tensor"));
    }
    by_name_.emplace(tensor->name, tensor);
  }
  return absl::OkStatus();
}

const SafetensorsTensor* SafetensorsCheckpoint::FindTensor(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::vector<std::string_view> SafetensorsCheckpoint::TensorNames() const {
  std::vector<std::string_view> names;
  names.reserve(by_name_.size());
  for (const auto& [name, tensor] : by_name_) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace alignserve
