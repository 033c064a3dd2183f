#!/usr/bin/env python3
"""Reads a quantized GGUF split set with the PyPI `gguf` package, independently of ckpt-opt.

Usage: check_gguf_split_quant.py FILE_TYPE TYPE[,TYPE...] MEMBER.gguf [MEMBER.gguf ...]

Checks: each member's split.no / split.count; split.tensors.count equals the tensors of all
members; the first member holds general.file_type == FILE_TYPE and
general.quantization_version == 2 (llama.cpp GGML_QNT_VERSION); every listed ggml TYPE is used;
every tensor dequantizes (gguf.quants.dequantize) to finite values of its declared shape.
Prints one summary line.
"""
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    return f.parts[f.data[0]].tolist()[0]


def main():
    file_type = int(sys.argv[1])
    want_types = set(sys.argv[2].split(","))
    members = sys.argv[3:]
    readers = [GGUFReader(m) for m in members]
    count = len(readers)
    total = 0
    seen_types = set()
    for i, r in enumerate(readers):
        assert field(r, "split.no") == i, (members[i], field(r, "split.no"))
        assert field(r, "split.count") == count, (members[i], field(r, "split.count"))
        for t in r.tensors:
            total += 1
            seen_types.add(t.tensor_type.name)
            values = dequantize(t.data, t.tensor_type)
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            assert values.size == int(np.prod(shape)), (t.name, values.shape, shape)
            assert np.isfinite(values).all(), t.name
    first = readers[0]
    assert field(first, "split.tensors.count") == total, (field(first, "split.tensors.count"), total)
    assert field(first, "general.file_type") == file_type, field(first, "general.file_type")
    assert field(first, "general.quantization_version") == 2, field(first, "general.quantization_version")
    missing = want_types - seen_types
    assert not missing, (missing, seen_types)
    print(f"ok: {count} members, {total} tensors, types {sorted(seen_types)}")


if __name__ == "__main__":
    main()
