"""Shared helpers for make_model_fixtures.py: JSON writing, rounding, diffs.

The fixture JSON files are read by the C++ model-runtime tests with
nlohmann::json, so they stay plain: objects, lists of numbers, strings. Lists
of scalars are written on one line each so that a regenerated fixture diffs
readably in git.
"""

import hashlib
import json
import math
import os

import numpy as np
import torch


def round_sig(x, digits):
    """Rounds a float to `digits` significant decimal digits (returns float)."""
    x = float(x)
    if x == 0.0 or not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")


def f32_exact(x):
    """Shortest decimal that parses back to the same float32 as `x`.

    '%.9g' always round-trips an IEEE float32; we try fewer digits first so
    the files stay small while remaining bit-exact for a float32 parser.
    """
    v = np.float32(x)
    for digits in range(6, 10):
        s = f"{float(v):.{digits}g}"
        if np.float32(float(s)) == v:
            return float(s)
    return float(f"{float(v):.9g}")


def _is_scalar_list(value):
    return isinstance(value, list) and all(
        not isinstance(v, (list, dict)) for v in value)


def _dump(value, indent, out):
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        out.append("{\n")
        items = list(value.items())
        for i, (k, v) in enumerate(items):
            out.append(f"{pad} {json.dumps(k)}: ")
            _dump(v, indent + 1, out)
            out.append(",\n" if i + 1 < len(items) else "\n")
        out.append(pad + "}")
    elif isinstance(value, list) and value and not _is_scalar_list(value):
        out.append("[\n")
        for i, v in enumerate(value):
            out.append(pad + " ")
            _dump(v, indent + 1, out)
            out.append(",\n" if i + 1 < len(value) else "\n")
        out.append(pad + "]")
    else:
        out.append(json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False))


def write_json(path, obj):
    """Writes `obj` as UTF-8 JSON: nested structure indented, scalar lists inline."""
    out = []
    _dump(obj, 0, out)
    out.append("\n")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(out))
    return os.path.getsize(path)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def max_abs_diff(a, b):
    """max |a - b| over all elements, computed in float64."""
    return float((a.double() - b.double()).abs().max())


def top2_gap(logits_row):
    """logit(top1) - logit(top2) for one [vocab] row (float)."""
    top = torch.topk(logits_row.double(), 2)
    return float(top.values[0] - top.values[1])


def argmax_first(logits_row):
    """Argmax with ties broken toward the lowest id (torch.argmax semantics)."""
    return int(torch.argmax(logits_row))


def library_versions():
    import transformers
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
    }
