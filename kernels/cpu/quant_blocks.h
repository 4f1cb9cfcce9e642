// The block layouts of ggml's quantized tensor types, byte for byte as they
// sit in a GGUF file. A row of k elements of type T is k / kElems blocks laid
// end to end. Scales ("d", "dmin", "m") are raw IEEE binary16 bits (see
// fp16.h). The structs are packed (alignment 1) so they may be overlaid on
// any byte offset of a mapped file.
//
// Element order inside a block (what dequantize.cc implements):
//   Q4_0/Q4_1: element j < 16 is the low nibble of qs[j], element j + 16 the
//     high nibble.  Q5_0/Q5_1: as Q4 for the low 4 bits; bit 4 of element j
//     is bit j of the little-endian 32-bit qh.
//   K-quants (256 elements): see the comments on each struct.
// Thread-safety: plain data.
#ifndef ALIGNSERVE_KERNELS_CPU_QUANT_BLOCKS_H_
#define ALIGNSERVE_KERNELS_CPU_QUANT_BLOCKS_H_

#include <cstdint>
#include <cstring>

namespace alignserve {

inline constexpr int kQK = 32;    // elements per block of the 32-wide formats
inline constexpr int kQKK = 256;  // elements per K-quant super-block

#pragma pack(push, 1)

// w = d * (q - 8), q in [0, 15].
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};

// w = d * q + m, q in [0, 15].
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK / 2];
};

// w = d * (q - 16), q in [0, 31].
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};

// w = d * q + m, q in [0, 31].
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};

// w = d * q, q in [-128, 127].
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};

// As Q8_0 plus s = d * sum(qs): the activation format ggml pairs with Q4_1/Q5_1.
struct BlockQ8_1 {
  uint16_t d;
  uint16_t s;
  int8_t qs[kQK];
};

// 16 sub-blocks of 16: w = d * (scales[j] & 15) * q - dmin * (scales[j] >> 4),
// q in [0, 3]; element 128g + 32s + l is bits 2s..2s+1 of qs[32g + l].
struct BlockQ2_K {
  uint8_t scales[kQKK / 16];
  uint8_t qs[kQKK / 4];
  uint16_t d;
  uint16_t dmin;
};

// 16 sub-blocks of 16 with 6-bit signed scales (packed in 12 bytes, minus 32):
// w = d * scale_j * (q2 - (hbit ? 0 : 4)); element 128g + 32s + l takes q2
// from bits 2s.. of qs[32g + l]; element 32j + l takes hbit from bit j of
// hmask[l].
struct BlockQ3_K {
  uint8_t hmask[kQKK / 8];
  uint8_t qs[kQKK / 4];
  uint8_t scales[12];
  uint16_t d;
};

// 8 sub-blocks of 32 with 6-bit scale and min each (packed in 12 bytes):
// w = d * sc_j * q - dmin * m_j, q in [0, 15]; element 64g + l is the low
// nibble of qs[32g + l], element 64g + 32 + l its high nibble.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[kQKK / 2];
};

// As Q4_K with a fifth bit: element 32j + l takes bit j of qh[l].
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[kQKK / 8];
  uint8_t qs[kQKK / 2];
};

// 16 sub-blocks of 16 with int8 scales: w = d * scales[j] * (q - 32),
// q in [0, 63]; element 128g + 64h + l takes its low 4 bits from nibble h of
// ql[64g + l], element 128g + 32s + l its high 2 bits from bits 2s.. of
// qh[32g + l].
struct BlockQ6_K {
  uint8_t ql[kQKK / 2];
  uint8_t qh[kQKK / 4];
  int8_t scales[kQKK / 16];
  uint16_t d;
};

// The K-quant activation format: float scale, sums of each 16 qs.
struct BlockQ8_K {
  float d;
  int8_t qs[kQKK];
  int16_t bsums[kQKK / 16];
};

#pragma pack(pop)

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block.
inline void KQuantScaleMin(const uint8_t* scales, int j, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = scales[j] & 63;
    *m = scales[j + 4] & 63;
  } else {
    *sc = (scales[j + 4] & 0xf) | ((scales[j - 4] >> 6) << 4);
    *m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

// All eight 6-bit scales (out[0..7]) and mins (out[8..15]) of a Q4_K / Q5_K
// block at once, the same values as KQuantScaleMin, with 32-bit word
// operations: bytes 0-3 hold the low 6 bits of scales 0-3 (top 2 bits: high
// bits of scales 4-7), bytes 4-7 the same for mins, bytes 8-11 the low
// nibbles of scales 4-7 (low) and mins 4-7 (high).
inline void UnpackKQuantScalesMins(const uint8_t* scales, uint8_t out[16]) {
  uint32_t a, b, c;
  std::memcpy(&a, scales, 4);
  std::memcpy(&b, scales + 4, 4);
  std::memcpy(&c, scales + 8, 4);
  const uint32_t words[4] = {a & 0x3f3f3f3fu, (c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u),
                             b & 0x3f3f3f3fu, ((c >> 4) & 0x0f0f0f0fu) | ((b >> 2) & 0x30303030u)};
  std::memcpy(out, words, 16);
}

// The signed 6-bit scale of sub-block j (0..15) of a Q3_K block.
inline int Q3KScale(const uint8_t* scales, int j) {
  const int low = j < 8 ? (scales[j] & 0xf) : (scales[j - 8] >> 4);
  const int high = (scales[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
  return (low | (high << 4)) - 32;
}

}  // namespace alignserve

#endif  // ALIGNSERVE_KERNELS_CPU_QUANT_BLOCKS_H_
