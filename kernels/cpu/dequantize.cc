#include "kernels/cpu/dequantize.h"

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/quant_blocks.h"

namespace alignserve {
namespace {

// Each function below dequantizes `nb` consecutive blocks. Expressions keep
// gguf-py's evaluation order (e.g. (d * sc) * q, then - (dmin * m)) so that
// float rounding is identical.

void Q4_0Blocks(const BlockQ4_0* b, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = Fp16ToF32(b[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = d * static_cast<float>((b[i].qs[j] & 0xf) - 8);
      y[j + kQK / 2] = d * static_cast<float>((b[i].qs[j] >> 4) - 8);
    }
  }
}

void Q4_1Blocks(const BlockQ4_1* b, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = Fp16ToF32(b[i].d);
    const float m = Fp16ToF32(b[i].m);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = d * static_cast<float>(b[i].qs[j] & 0xf) + m;
      y[j + kQK / 2] = d * static_cast<float>(b[i].qs[j] >> 4) + m;
    }
  }
}

uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

void Q5_0Blocks(const BlockQ5_0* b, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = Fp16ToF32(b[i].d);
    const uint32_t qh = LoadU32(b[i].qh);
    for (int j = 0; j < kQK / 2; ++j) {
      const int lo = (b[i].qs[j] & 0xf) | (((qh >> j) & 1) << 4);
      const int hi = (b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = d * static_cast<float>(lo - 16);
      y[j + kQK / 2] = d * static_cast<float>(hi - 16);
    }
  }
}

void Q5_1Blocks(const BlockQ5_1* b, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = Fp16ToF32(b[i].d);
    const float m = Fp16ToF32(b[i].m);
    const uint32_t qh = LoadU32(b[i].qh);
    for (int j = 0; j < kQK / 2; ++j) {
      const int lo = (b[i].qs[j] & 0xf) | (((qh >> j) & 1) << 4);
      const int hi = (b[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = d * static_cast<float>(lo) + m;
      y[j + kQK / 2] = d * static_cast<float>(hi) + m;
    }
  }
}

void Q8_0Blocks(const BlockQ8_0* b, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = Fp16ToF32(b[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

void Q2_KBlocks(const BlockQ2_K* b, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += kQKK) {
    const float d = Fp16ToF32(b[i].d);
    const float dmin = Fp16ToF32(b[i].dmin);
    for (int e = 0; e < kQKK; ++e) {
      const int g = e / 128, s = (e % 128) / 32, l = e % 32;
      const int q = (b[i].qs[32 * g + l] >> (2 * s)) & 3;
      const uint8_t sc = b[i].scales[e / 16];
      const float dl = d * static_cast<float>(sc & 0xf);
      const float ml = dmin * static_cast<float>(sc >> 4);
      y[e] = dl * static_cast<float>(q) - ml;
    }
  }
}

void Q3_KBlocks(const BlockQ3_K* b, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += kQKK) {
    const float d = Fp16ToF32(b[i].d);
    for (int e = 0; e < kQKK; ++e) {
      const int g = e / 128, s = (e % 128) / 32, l = e % 32;
      const int q2 = (b[i].qs[32 * g + l] >> (2 * s)) & 3;
      const int hbit = (b[i].hmask[l] >> (e / 32)) & 1;
      const float dl = d * static_cast<float>(Q3KScale(b[i].scales, e / 16));
      y[e] = dl * static_cast<float>(q2 - (hbit ? 0 : 4));
    }
  }
}

// Q4_K and Q5_K share everything but the fifth bit (qh == nullptr for Q4_K).
void Q45_KBlock(uint16_t d16, uint16_t dmin16, const uint8_t* scales, const uint8_t* qh,
                const uint8_t* qs, float* y) {
  const float d = Fp16ToF32(d16);
  const float dmin = Fp16ToF32(dmin16);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    KQuantScaleMin(scales, j, &sc, &m);
    const float dl = d * static_cast<float>(sc);
    const float ml = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) {
      int q = (qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0xf;
      if (qh != nullptr) q |= ((qh[l] >> j) & 1) << 4;
      y[32 * j + l] = dl * static_cast<float>(q) - ml;
    }
  }
}

void Q6_KBlocks(const BlockQ6_K* b, int64_t nb, float* y) {
  for (int64_t i = 0; i < nb; ++i, y += kQKK) {
    const float d = Fp16ToF32(b[i].d);
    for (int e = 0; e < kQKK; ++e) {
      const int g = e / 128, h = (e % 128) / 64, s = (e % 128) / 32;
      const int lo = (b[i].ql[64 * g + e % 64] >> (4 * h)) & 0xf;
      const int hi = (b[i].qh[32 * g + e % 32] >> (2 * s)) & 3;
      const float dl = d * static_cast<float>(b[i].scales[e / 16]);
      y[e] = dl * static_cast<float>((lo | (hi << 4)) - 32);
    }
  }
}

}  // namespace

bool DequantizeSupports(DType type) {
  switch (type) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
    case DType::kQ8_0:
    case DType::kQ2_K:
    case DType::kQ3_K:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      return true;
    default:
      return false;
  }
}

absl::Status DequantizeRow(DType type, const void* src, int64_t n, float* dst) {
  if (!DequantizeSupports(type)) {
    return absl::InvalidArgumentError(
        absl::StrCat("DequantizeRow: unsupported type ", static_cast<uint32_t>(type)));
  }
  const int block = Info(type).block_elems;
  if (n < 0 || n % block != 0) {
    return absl::InvalidArgumentError(absl::StrCat("DequantizeRow: ", n, " elements of ",
                                                   std::string(DTypeName(type)),
                                                   " is not whole blocks"));
  }
  const int64_t nb = n / block;
  switch (type) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      break;
    case DType::kF16:
    case DType::kBF16: {
      const auto* h = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) {
        uint16_t bits;
        std::memcpy(&bits, h + 2 * i, 2);
        dst[i] = type == DType::kF16 ? Fp16ToF32(bits) : Bf16ToF32(bits);
      }
      break;
    }
    case DType::kQ4_0:
      Q4_0Blocks(static_cast<const BlockQ4_0*>(src), nb, dst);
      break;
    case DType::kQ4_1:
      Q4_1Blocks(static_cast<const BlockQ4_1*>(src), nb, dst);
      break;
    case DType::kQ5_0:
      Q5_0Blocks(static_cast<const BlockQ5_0*>(src), nb, dst);
      break;
    case DType::kQ5_1:
      Q5_1Blocks(static_cast<const BlockQ5_1*>(src), nb, dst);
      break;
    case DType::kQ8_0:
      Q8_0Blocks(static_cast<const BlockQ8_0*>(src), nb, dst);
      break;
    case DType::kQ2_K:
      Q2_KBlocks(static_cast<const BlockQ2_K*>(src), nb, dst);
      break;
    case DType::kQ3_K:
      Q3_KBlocks(static_cast<const BlockQ3_K*>(src), nb, dst);
      break;
    case DType::kQ4_K:
    case DType::kQ5_K: {
      const bool five = type == DType::kQ5_K;
      const auto* p = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < nb; ++i) {
        if (five) {
          const auto* b = reinterpret_cast<const BlockQ5_K*>(p) + i;
          Q45_KBlock(b->d, b->dmin, b->scales, b->qh, b->qs, dst + i * kQKK);
        } else {
          const auto* b = reinterpret_cast<const BlockQ4_K*>(p) + i;
          Q45_KBlock(b->d, b->dmin, b->scales, nullptr, b->qs, dst + i * kQKK);
        }
      }
      break;
    }
    case DType::kQ6_K:
      Q6_KBlocks(static_cast<const BlockQ6_K*>(src), nb, dst);
      break;
    default:
      break;
  }
  return absl::OkStatus();
}

}  // namespace alignserve
