#!/usr/bin/env python3
"""Canonical JSON digest of a GGUF file (or of all members of a split GGUF).

Usage:
    gguf_digest.py FILE.gguf [MORE-SPLIT-MEMBERS.gguf ...] [--out DIGEST.json] [--no-stats]

The digest contains
  * every metadata key (file-header pseudo keys "GGUF.*" are left out) with its
    GGUF value type and value.  Arrays with more than 64 items are summarised by
    their length and the sha256 of their canonical JSON (json.dumps(list,
    ensure_ascii=False, separators=(",", ":")) encoded as UTF-8).
  * every tensor: name, shape (numpy order, i.e. reversed ggml ne), ggml type
    name, number of data bytes, sha256 of the raw data bytes as stored in the
    file, and (unless --no-stats) a few float64 statistics of the dequantized
    values (sum, sum of squares, max |x|) so that a comparison against a digest
    alone can still say roughly how far apart two tensors are.

With split members, metadata is taken from each member; keys that differ per
member (split.no) are recorded under "split_members", tensors of all members
are concatenated in member order.

Needs the `gguf` package (llama.cpp's gguf-py); set PYTHONPATH to
<llama.cpp>/gguf-py to use a specific vendored copy.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from typing import Any

import numpy as np

import gguf
from gguf import GGUFReader, GGUFValueType

DIGEST_FORMAT = "ckpt-opt-gguf-digest/1"
ARRAY_INLINE_MAX = 64


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=True)


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def _to_str(arr: np.ndarray) -> Any:
    b = arr.tobytes()
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        # not valid UTF-8: keep it exact and JSON-safe
        return {"invalid_utf8_hex": b.hex()}


def _scalar(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        f = float(v)
        if math.isnan(f) or math.isinf(f):
            return repr(f)
        return f
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return v


def field_entry(field: Any) -> dict[str, Any]:
    types = list(field.types)
    main = types[0]
    if main == GGUFValueType.ARRAY:
        sub = types[-1]
        if len(types) > 2 and types[1] == GGUFValueType.ARRAY:
            # nested arrays: not decoded element-wise; hash the raw parts
            raw = b"".join(np.asarray(p).tobytes() for p in field.parts[1:])
            return {"type": "ARRAY", "elem_type": "ARRAY", "raw_sha256": hashlib.sha256(raw).hexdigest()}
        if sub == GGUFValueType.STRING:
            items = [_to_str(field.parts[i]) for i in field.data]
        else:
            items = [_scalar(x) for i in field.data for x in field.parts[i].tolist()]
        entry: dict[str, Any] = {"type": "ARRAY", "elem_type": sub.name, "len": len(items)}
        if len(items) > ARRAY_INLINE_MAX:
            entry["sha256"] = sha256_json(items)
        else:
            entry["value"] = items
        return entry
    if main == GGUFValueType.STRING:
        return {"type": "STRING", "value": _to_str(field.parts[-1])}
    return {"type": main.name, "value": _scalar(field.parts[-1].tolist()[0])}


def tensor_raw(reader: GGUFReader, t: Any) -> np.ndarray:
    return reader.data[t.data_offset: t.data_offset + t.n_bytes]


def tensor_values(reader: GGUFReader, t: Any) -> np.ndarray:
    """Dequantized float values of a tensor in numpy shape order."""
    qtype = gguf.GGMLQuantizationType(int(t.tensor_type))
    shape = [int(x) for x in reversed(list(t.shape))]
    raw = np.asarray(tensor_raw(reader, t))
    if qtype == gguf.GGMLQuantizationType.F32:
        return raw.view(np.float32).reshape(shape)
    if qtype == gguf.GGMLQuantizationType.F16:
        return raw.view(np.float16).reshape(shape)
    if qtype == gguf.GGMLQuantizationType.F64:
        return raw.view(np.float64).reshape(shape)
    if qtype in (gguf.GGMLQuantizationType.I8, gguf.GGMLQuantizationType.I16,
                 gguf.GGMLQuantizationType.I32, gguf.GGMLQuantizationType.I64):
        dt = {gguf.GGMLQuantizationType.I8: np.int8, gguf.GGMLQuantizationType.I16: np.int16,
              gguf.GGMLQuantizationType.I32: np.int32, gguf.GGMLQuantizationType.I64: np.int64}[qtype]
        return raw.view(dt).reshape(shape)
    # BF16 and block-quantized types: gguf.quants works on the raw byte rows
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    rows = raw.view(np.uint8).reshape(*shape[:-1], shape[-1] // block_size * type_size)
    return gguf.quants.dequantize(rows, qtype).reshape(shape)


def tensor_stats(vals: np.ndarray) -> dict[str, Any]:
    v = np.asarray(vals, dtype=np.float64).ravel()
    if v.size == 0:
        return {"sum": 0.0, "sumsq": 0.0, "absmax": 0.0, "nonfinite": 0}
    finite = np.isfinite(v)
    vf = v[finite]
    return {
        "sum": float(vf.sum()),
        "sumsq": float((vf * vf).sum()),
        "absmax": float(np.abs(vf).max()) if vf.size else 0.0,
        "nonfinite": int((~finite).sum()),
    }


def digest(paths: list[str], stats: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"format": DIGEST_FORMAT, "files": [os.path.basename(p) for p in paths]}
    metadata: dict[str, Any] = {}
    split_members: list[dict[str, Any]] = []
    tensors: list[dict[str, Any]] = []
    for idx, path in enumerate(paths):
        reader = GGUFReader(path, "r")
        member_meta: dict[str, Any] = {}
        for name, field in reader.fields.items():
            if name.startswith("GGUF."):
                if name == "GGUF.version":
                    member_meta[name] = {"type": "UINT32", "value": int(field.parts[-1][0])}
                continue
            member_meta[name] = field_entry(field)
        if idx == 0:
            out["gguf_version"] = member_meta.pop("GGUF.version", {}).get("value")
            metadata = member_meta
        else:
            member_meta.pop("GGUF.version", None)
            diff = {k: v for k, v in member_meta.items() if metadata.get(k) != v}
            missing = sorted(set(metadata) - set(member_meta))
            split_members.append({"file": os.path.basename(path), "differing_keys": diff, "missing_keys": missing})
        for t in reader.tensors:
            qtype = gguf.GGMLQuantizationType(int(t.tensor_type))
            raw = np.asarray(tensor_raw(reader, t))
            entry: dict[str, Any] = {
                "name": t.name,
                "shape": [int(x) for x in reversed(list(t.shape))],
                "type": qtype.name,
                "n_bytes": int(t.n_bytes),
                "sha256": hashlib.sha256(raw.tobytes()).hexdigest(),
            }
            if len(paths) > 1:
                entry["split_member"] = idx
            if stats:
                try:
                    entry["stats"] = tensor_stats(tensor_values(reader, t))
                except (NotImplementedError, ValueError) as e:  # type without numpy dequantizer
                    entry["stats"] = {"error": str(e)}
            tensors.append(entry)
        del reader
    out["metadata"] = dict(sorted(metadata.items()))
    if split_members:
        out["split_members"] = split_members
    out["tensor_count"] = len(tensors)
    out["tensors"] = tensors
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="GGUF file, followed by the other members of a split GGUF, in order")
    ap.add_argument("--out", help="write the digest here instead of stdout")
    ap.add_argument("--no-stats", action="store_true", help="do not compute dequantized value statistics")
    args = ap.parse_args(argv)
    d = digest(args.files, stats=not args.no_stats)
    text = json.dumps(d, ensure_ascii=False, indent=1, sort_keys=False, allow_nan=True) + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
