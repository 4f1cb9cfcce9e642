#!/usr/bin/env python3
"""Writes tests/data/kernels/quant_fixtures.bin: random GGUF blocks of every
type the CPU kernels read, dequantized by gguf-py (gguf.quants), plus f32 ->
f16 / bf16 conversions done by numpy / gguf-py. dequantize_test.cc compares
kernels/cpu/dequantize.cc and fp16.h against these bit for bit.

Run with the oracle environment:
  /root/.cache/alignserve/refvenv/bin/python tests/reference/make_quant_fixtures.py

File layout (little endian):
  magic b"ASQF", u32 version = 1, u32 record count, then per record
  u32 kind, u32 count, u32 in_bytes, u32 out_bytes, in bytes, out bytes.
  kind < 1000: a ggml type id; in = one row of `count` elements in that
    type, out = `count` float32 values from gguf.quants.dequantize.
  kind 1000: in = `count` float32, out = `count` binary16 (numpy astype).
  kind 1001: in = `count` float32, out = `count` bfloat16 (gguf-py BF16).
"""
import os
import struct

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "kernels", "quant_fixtures.bin")

# (type, block bytes, byte offsets of fp16 scale fields inside a block)
QUANT_TYPES = [
    (T.Q4_0, 18, [0]),
    (T.Q4_1, 20, [0, 2]),
    (T.Q5_0, 22, [0]),
    (T.Q5_1, 24, [0, 2]),
    (T.Q8_0, 34, [0]),
    (T.Q2_K, 84, [80, 82]),
    (T.Q3_K, 110, [108]),
    (T.Q4_K, 144, [0, 2]),
    (T.Q5_K, 176, [0, 2]),
    (T.Q6_K, 210, [208]),
]


def sane_fp16(rng, count):
    """Scales as quantizers produce them: signed, magnitudes 2^-14 .. 2."""
    mag = np.exp2(rng.uniform(-14, 1, count))
    sign = np.where(rng.random(count) < 0.5, -1.0, 1.0)
    return (sign * mag).astype(np.float16)


def quant_record(rng, qtype, block_bytes, scale_offsets, elems):
    block_elems, type_size = quants.GGML_QUANT_SIZES[qtype]
    assert type_size == block_bytes
    nb = elems // block_elems
    raw = rng.integers(0, 256, size=(nb, block_bytes), dtype=np.uint8)
    for off in scale_offsets:
        raw[:, off:off + 2] = sane_fp16(rng, nb).view(np.uint8).reshape(nb, 2)
    out = quants.dequantize(raw.reshape(1, -1), qtype).astype(np.float32).reshape(-1)
    assert out.size == elems
    return int(qtype), elems, raw.tobytes(), out.tobytes()


def f16_record():
    """Every binary16 bit pattern."""
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    out = quants.dequantize(bits.view(np.uint8).reshape(1, -1), T.F16).astype(np.float32)
    return int(T.F16), 65536, bits.tobytes(), out.tobytes()


def bf16_record(rng):
    bits = rng.integers(0, 65536, size=4096, dtype=np.uint32).astype(np.uint16)
    bits[:6] = [0x0000, 0x8000, 0x7F80, 0xFF80, 0x0001, 0x7F7F]
    out = quants.dequantize(bits.view(np.uint8).reshape(1, -1), T.BF16).astype(np.float32)
    return int(T.BF16), bits.size, bits.tobytes(), out.tobytes()


def narrowing_inputs(rng):
    """Floats that exercise rounding: random magnitudes over the binary16
    range and beyond, exact ties between neighbours, overflow edges."""
    rand = (np.where(rng.random(6000) < 0.5, -1, 1) *
            np.exp2(rng.uniform(-30, 17, 6000))).astype(np.float32)
    # Ties: midpoints between consecutive binary16 values (exact in f32).
    h = rng.integers(0, 0x7BFF, size=2000, dtype=np.uint32).astype(np.uint16)
    lo = h.view(np.float16).astype(np.float64)
    hi = (h + 1).astype(np.uint16).view(np.float16).astype(np.float64)
    ties = ((lo + hi) / 2).astype(np.float32)
    edges = np.array([0.0, -0.0, 65504.0, 65519.996, 65520.0, 65536.0, 1e9, np.inf, -np.inf,
                      2.0**-24, 2.0**-25, 3 * 2.0**-26, 2.0**-14, 2.0**-14 - 2.0**-25,
                      5.960464477539063e-08, 1.0, -1.0, 0.1],
                     dtype=np.float32)
    return np.concatenate([edges, rand, ties, -ties[:500]]).astype(np.float32)


def main():
    rng = np.random.default_rng(20240611)
    records = [f16_record(), bf16_record(rng)]
    f32 = rng.standard_normal(512).astype(np.float32)
    records.append((int(T.F32), 512, f32.tobytes(), f32.tobytes()))
    for qtype, block_bytes, offsets in QUANT_TYPES:
        records.append(quant_record(rng, qtype, block_bytes, offsets, 1024))

    x = narrowing_inputs(rng)
    records.append((1000, x.size, x.tobytes(), x.astype(np.float16).tobytes()))
    # gguf-py's BF16 rounding on arbitrary bit patterns, NaNs included.
    bits = rng.integers(0, 2**32, size=4096, dtype=np.uint64).astype(np.uint32)
    y = np.concatenate([x, bits.view(np.float32)]).astype(np.float32)
    bf = quants.quantize(y.reshape(1, -1), T.BF16).reshape(-1)
    records.append((1001, y.size, y.tobytes(), bf.tobytes()))

    with open(OUT, "wb") as f:
        f.write(b"ASQF" + struct.pack("<II", 1, len(records)))
        for kind, count, inp, out in records:
            f.write(struct.pack("<IIII", kind, count, len(inp), len(out)))
            f.write(inp)
            f.write(out)
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes, {len(records)} records")


if __name__ == "__main__":
    main()
