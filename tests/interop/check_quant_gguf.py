#!/usr/bin/env python3
"""Reads a quantized GGUF of ours with the `gguf` package and checks it against the F32 GGUF of
the same model.

usage: check_quant_gguf.py QUANT.gguf F32.gguf EXPECT.json

EXPECT.json: {"file_type": N, "types": {"tensor name": "Q4_K", ...}, "max_rel_rmse": {"Q4_K": x}}
Checks: general.file_type == N and general.quantization_version == 2; every tensor's type as
expected (tensors not listed must be F32); the same tensor names and shapes as the F32 file;
for the types gguf-py can quantize (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) our bytes equal
gguf.quants.quantize of the F32 tensor; every quantized tensor dequantizes (gguf-py) to finite
values within max_rel_rmse of the F32 tensor. Prints a JSON summary; exits 1 on any failure.
"""
import json
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize, quantize

GGUF_PY_QUANTIZES = {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"}


def field(reader, key):
    f = reader.fields[key]
    return f.parts[f.data[0]].tolist()[0]


def main() -> int:
    quant_path, f32_path, expect_path = sys.argv[1:]
    expect = json.load(open(expect_path))
    q, f = GGUFReader(quant_path), GGUFReader(f32_path)
    errors = []
    if field(q, "general.file_type") != expect["file_type"]:
        errors.append(f"file_type {field(q, 'general.file_type')} != {expect['file_type']}")
    if field(q, "general.quantization_version") != 2:
        errors.append("quantization_version != 2")
    ref = {t.name: t for t in f.tensors}
    if sorted(ref) != sorted(t.name for t in q.tensors):
        errors.append("tensor names differ from the F32 file")
    summary = {"tensors": 0, "byte_equal_tensors": 0, "worst_rel_rmse": {}}
    for t in q.tensors:
        summary["tensors"] += 1
        ty = t.tensor_type.name
        want = expect["types"].get(t.name, "F32")
        if ty != want:
            errors.append(f"{t.name}: {ty}, expected {want}")
            continue
        r = ref.get(t.name)
        if r is None or list(r.shape) != list(t.shape):
            errors.append(f"{t.name}: shape {list(t.shape)} vs F32 file")
            continue
        if ty == "F32":
            continue
        x = np.asarray(r.data, dtype=np.float32).reshape(-1, int(t.shape[0]))
        ours = np.asarray(t.data, dtype=np.uint8).reshape(x.shape[0], -1)
        if ty in GGUF_PY_QUANTIZES:
            theirs = quantize(x, GGMLQuantizationType[ty])
            if not np.array_equal(theirs.reshape(ours.shape), ours):
                differ = int((theirs.reshape(ours.shape) != ours).any(axis=1).sum())
                errors.append(f"{t.name}: {differ} rows differ from gguf.quants.quantize")
            else:
                summary["byte_equal_tensors"] += 1
        y = dequantize(ours, GGMLQuantizationType[ty]).reshape(x.shape)
        if not np.isfinite(y).all():
            errors.append(f"{t.name}: non-finite dequantized values")
            continue
        rel = float(np.sqrt(((y - x) ** 2).sum() / max((x.astype(np.float64) ** 2).sum(), 1e-30)))
        summary["worst_rel_rmse"][ty] = max(summary["worst_rel_rmse"].get(ty, 0.0), rel)
        bound = expect["max_rel_rmse"][ty]
        if rel > bound:
            errors.append(f"{t.name}: relative RMSE {rel:.4f} > {bound} for {ty}")
    summary["errors"] = errors
    print(json.dumps(summary))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
