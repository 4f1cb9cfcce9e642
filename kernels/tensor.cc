#include "kernels/tensor.h"

namespace alignserve {

std::string Tensor::ShapeString() const {
  std::string s = std::string(DTypeName(dtype)) + "[";
  for (int i = 0; i < rank; ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace alignserve
