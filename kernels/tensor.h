// Tensor: a non-owning, typed, row-major view of memory on a Backend's
// device. Shapes are outermost first (PyTorch order); the last dimension is
// contiguous. Quantized tensors (DType Q*) store each row as ggml blocks, so
// the last dimension must be a multiple of the block size.
// Thread-safety: a plain value; the memory it views has its owner's rules.
#ifndef ALIGNSERVE_KERNELS_TENSOR_H_
#define ALIGNSERVE_KERNELS_TENSOR_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "kernels/dtype.h"

namespace alignserve {

struct Tensor {
  static constexpr int kMaxRank = 4;

  DType dtype = DType::kF32;
  int rank = 0;
  std::array<int64_t, kMaxRank> shape{};
  void* data = nullptr;

  Tensor() = default;
  Tensor(DType type, std::initializer_list<int64_t> dims, void* ptr) : dtype(type), data(ptr) {
    for (int64_t d : dims) shape[rank++] = d;
  }

  int64_t dim(int i) const { return shape[i < 0 ? rank + i : i]; }
  int64_t elements() const {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= shape[i];
    return n;
  }
  // Rows and columns of the tensor seen as a matrix [rows, cols]: cols is the
  // innermost dimension, rows the product of the others.
  int64_t cols() const { return rank == 0 ? 1 : shape[rank - 1]; }
  int64_t rows() const { return cols() == 0 ? 0 : elements() / cols(); }
  size_t row_bytes() const { return RowBytes(dtype, cols()); }
  size_t bytes() const { return rows() * row_bytes(); }

  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
  // The same memory as a [rows, cols] matrix.
  Tensor View2d(int64_t new_rows, int64_t new_cols) const {
    Tensor t = *this;
    t.rank = 2;
    t.shape[0] = new_rows;
    t.shape[1] = new_cols;
    return t;
  }

  std::string ShapeString() const;
};

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_TENSOR_H_
