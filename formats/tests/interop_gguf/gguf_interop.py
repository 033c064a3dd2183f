"""Helper for formats/tests/gguf_interop.rs: the official gguf-py reader and writer.

  dump FILE...            JSON of what gguf.GGUFReader sees in each file
  write OUT               the reference file (gguf.GGUFWriter); gguf_interop.rs builds the same
  write-split OUT         the same model split with split_max_tensors=2 (no custom alignment)
"""
import json
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q, GGUFValueType as V


def pattern(n):
    return (np.arange(n, dtype=np.uint64) * 7 + 3).astype(np.uint8)


def field_value(f):
    main = f.types[0]
    if main == V.ARRAY and len(f.types) > 2:
        return None  # gguf-py's contents() does not handle nested arrays
    return f.contents()


def dump(paths):
    out = []
    for p in paths:
        r = gguf.GGUFReader(p)
        fields = [
            {"key": k, "types": [int(t) for t in f.types], "value": field_value(f)}
            for k, f in r.fields.items()
            if not k.startswith("GGUF.")
        ]
        tensors = [
            {
                "name": t.name,
                "type": int(t.tensor_type),
                "dims": [int(d) for d in t.shape],
                "n_bytes": int(t.n_bytes),
                "data_offset": int(t.data_offset),
                "hex": np.asarray(t.data).tobytes().hex(),
            }
            for t in r.tensors
        ]
        out.append({"alignment": int(r.alignment), "data_offset": int(r.data_offset),
                    "fields": fields, "tensors": tensors})
    json.dump(out, sys.stdout)


def add_model(w, alignment):
    if alignment:
        w.add_custom_alignment(alignment)
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -5)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 0.25)
    w.add_uint64("t.u64", 2**40 + 1)
    w.add_int64("t.i64", -(2**40))
    w.add_float64("t.f64", 3.141592653589793)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "h\u00e9llo \u2713")
    w.add_array("t.strs", ["a", "bc", ""])
    w.add_key_value("t.u8s", [1, 2, 3], V.ARRAY, sub_type=V.UINT8)
    w.add_array("t.f32s", [0.5, 1.5])
    w.add_array("t.i32s", [1, -2])
    w.add_array("t.nested", [[1, 2], [3]])
    w.add_tensor("tok.weight", (np.arange(24, dtype=np.float32) * 0.5).reshape(3, 8))
    w.add_tensor("ids", np.arange(6, dtype=np.int32).reshape(1, 2, 3))
    # Quantized and half types go in as raw bytes; the byte shape's last dim is converted back.
    w.add_tensor("half", pattern(32).reshape(2, 16), raw_dtype=Q.F16)
    w.add_tensor("q8", pattern(4 * 68).reshape(4, 68), raw_dtype=Q.Q8_0)
    w.add_tensor("q4k", pattern(2 * 144).reshape(2, 144), raw_dtype=Q.Q4_K)
    w.add_tensor("q6k", pattern(210).reshape(1, 210), raw_dtype=Q.Q6_K)


def write(path, split):
    if split:
        w = gguf.GGUFWriter(path, "llama", split_max_tensors=2)
        add_model(w, None)
    else:
        w = gguf.GGUFWriter(path, "llama")
        add_model(w, 64)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "dump":
        dump(args)
    elif cmd == "write":
        write(args[0], False)
    elif cmd == "write-split":
        write(args[0], True)
    else:
        sys.exit(f"unknown command {cmd}")
