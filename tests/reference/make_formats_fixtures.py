#!/usr/bin/env python3
"""Writes the GGUF and safetensors fixtures of tests/models/formats with the
reference writers (gguf-py's GGUFWriter, the safetensors package), so the C++
readers are checked against files they did not write themselves.

Run with the oracle environment:
  /root/.cache/alignserve/refvenv/bin/python tests/reference/make_formats_fixtures.py

Outputs (tests/data/formats/):
  reference_v3.gguf        every value type, nested arrays, alignment 64,
                           tensors F32 / F16 / Q8_0 (raw bytes) / Q4_1 (raw)
  reference_bigendian.gguf a big-endian GGUF, which the reader must reject
  reference.safetensors    F32 / F16 / BF16 / I64 / an empty tensor, metadata
  sharded/                 model.safetensors.index.json and two shards
The expected values are spelled out again in the C++ tests.
"""
import json
import os

import numpy as np
import torch
from gguf import GGUFEndian, GGUFWriter, GGMLQuantizationType
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "formats")


def write_reference_gguf(path, endianess=GGUFEndian.LITTLE):
    w = GGUFWriter(path, arch="testarch", endianess=endianess)
    w.add_custom_alignment(64)
    w.add_uint8("t.u8", 255)
    w.add_int8("t.i8", -128)
    w.add_uint16("t.u16", 65535)
    w.add_int16("t.i16", -32768)
    w.add_uint32("t.u32", 4294967295)
    w.add_int32("t.i32", -2147483648)
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**63))
    w.add_float32("t.f32", 1.5)
    w.add_float64("t.f64", -2.25)
    w.add_bool("t.bool", True)
    w.add_string("t.string", "h\u00e9llo \u4e16\u754c")
    w.add_array("t.int_array", [1, -2, 3])
    w.add_array("t.float_array", [0.5, -1.25])
    w.add_array("t.string_array", ["a", "", "\u00e9t\u00e9"])
    w.add_array("t.bool_array", [True, False, True])
    w.add_array("t.nested", [[1, 2], [3]])
    # ggml order: dims[0] innermost. numpy shape (2, 3) -> GGUF dims {3, 2}.
    w.add_tensor("f32", np.arange(6, dtype=np.float32).reshape(2, 3))
    w.add_tensor("f16", np.arange(4, dtype=np.float16) - 1.5)
    q8 = np.arange(2 * 34, dtype=np.uint8).reshape(2, 34)  # 2 rows of one Q8_0 block
    w.add_tensor("q8", q8, raw_dtype=GGMLQuantizationType.Q8_0)
    q41 = (np.arange(20, dtype=np.uint8) * 3).reshape(1, 20)  # one Q4_1 block
    w.add_tensor("q41", q41, raw_dtype=GGMLQuantizationType.Q4_1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_safetensors():
    tensors = {
        "w.f32": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "w.f16": torch.tensor([1.0, -2.0, 0.5], dtype=torch.float16),
        "w.bf16": torch.tensor([[3.0], [-0.25]], dtype=torch.bfloat16),
        "w.i64": torch.tensor([7, -9], dtype=torch.int64),
        "w.empty": torch.zeros((0, 4), dtype=torch.float32),
    }
    save_file(tensors, os.path.join(OUT, "reference.safetensors"), metadata={"format": "pt"})

    shard_dir = os.path.join(OUT, "sharded")
    os.makedirs(shard_dir, exist_ok=True)
    shards = {
        "model-00001-of-00002.safetensors": {
            "a.weight": torch.arange(4, dtype=torch.float32).reshape(2, 2),
            "b.weight": torch.tensor([5.0], dtype=torch.float32),
        },
        "model-00002-of-00002.safetensors": {
            "c.weight": torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.bfloat16),
        },
    }
    weight_map = {}
    for name, ts in shards.items():
        save_file(ts, os.path.join(shard_dir, name), metadata={"format": "pt"})
        weight_map.update({t: name for t in ts})
    index = {"metadata": {"total_size": 22}, "weight_map": weight_map}
    with open(os.path.join(shard_dir, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)


def main():
    os.makedirs(OUT, exist_ok=True)
    write_reference_gguf(os.path.join(OUT, "reference_v3.gguf"))
    write_reference_gguf(os.path.join(OUT, "reference_bigendian.gguf"), GGUFEndian.BIG)
    write_safetensors()


if __name__ == "__main__":
    main()
