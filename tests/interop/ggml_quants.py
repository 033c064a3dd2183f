#!/usr/bin/env python3
"""Compares ckpt-opt's GGML block kernels with gguf-py (`gguf.quants`).

usage: ggml_quants.py DATA.f32 COLS DIR TYPE...

DATA.f32 holds little-endian f32 rows of COLS values. For each TYPE, DIR holds our blocks
(TYPE.bin) and our dequantization of them (TYPE.f32). Checks:
  - types gguf-py can quantize (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1): our bytes == gguf.quants.quantize
    of the same f32 rows, block by block (the worst block is printed when any differs);
  - every type: gguf.quants.dequantize of our bytes == our dequantization, bit for bit.
Prints one JSON line per type; exits 1 on any difference.
"""
import json
import sys

import numpy as np
from gguf import GGMLQuantizationType
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

GGUF_PY_QUANTIZES = {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"}


def main() -> int:
    data, cols, folder, *types = sys.argv[1:]
    cols = int(cols)
    x = np.fromfile(data, dtype="<f4").reshape(-1, cols)
    failed = False
    for name in types:
        qtype = GGMLQuantizationType[name]
        block, type_size = GGML_QUANT_SIZES[qtype]
        ours = np.fromfile(f"{folder}/{name}.bin", dtype=np.uint8).reshape(x.shape[0], -1)
        our_deq = np.fromfile(f"{folder}/{name}.f32", dtype="<f4").reshape(x.shape)
        report = {"type": name, "blocks": int(ours.size // type_size)}
        if name in GGUF_PY_QUANTIZES:
            ref = quantize(x, qtype).reshape(-1, type_size)
            mine = ours.reshape(-1, type_size)
            differ = np.nonzero((ref != mine).any(axis=1))[0]
            report["bytes_equal_blocks"] = int(mine.shape[0] - differ.size)
            report["bytes_differing_blocks"] = int(differ.size)
            if differ.size:
                failed = True
                worst = int(differ[0])
                report["first_differing_block"] = {
                    "index": worst,
                    "input": x.reshape(-1, block)[worst].tolist(),
                    "ours": mine[worst].tolist(),
                    "gguf_py": ref[worst].tolist(),
                }
        deq = dequantize(ours, qtype).reshape(x.shape).astype("<f4")
        same = deq.view(np.uint32) == our_deq.view(np.uint32)
        report["dequant_differing_values"] = int((~same).sum())
        if not same.all():
            failed = True
        err = (deq.astype(np.float64) - x) ** 2
        report["rel_rmse"] = float(np.sqrt(err.sum() / (x.astype(np.float64) ** 2).sum()))
        print(json.dumps(report))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
