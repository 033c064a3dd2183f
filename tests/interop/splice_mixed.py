#!/usr/bin/env python3
"""Builds a mixed-precision checkpoint by splicing two single-scheme exports of one model.

    splice_mixed.py trtllm|hf A_DIR B_DIR OUT_DIR [PATTERN ...]

Every quantized module (one with `weights_scaling_factor` in a TensorRT-LLM rank file, with
`weight_scale` in a Hugging Face folder) whose name matches a PATTERN (fnmatch) takes B's
tensors and B's scheme; every other one keeps A's. All other tensors must be byte-identical in
A and B. The layout written is modelopt's MIXED_PRECISION one, from its documentation, not
from ckpt-opt's code:

- trtllm (TensorRT-LLM `models/modeling_utils.py` `PretrainedConfig.from_json_file` /
  `to_layer_quant_config`; modelopt `export/quant_utils.py` `process_layer_quant_config`):
  config.json's `quantization` = {"quant_algo": "MIXED_PRECISION", "kv_cache_quant_algo",
  "exclude_modules"}; quant_cfg.json = {"quant_algo": "MIXED_PRECISION", "kv_cache_quant_algo",
  "quantized_layers": {module: its scheme's block}} with stage-local module names.
- hf (modelopt `export/unified_export_hf.py`): config.json's `quantization_config` and
  hf_quant_config.json's `quantization` say MIXED_PRECISION and list `quantized_layers` by
  Hugging Face module name; the tensors go to one `model.safetensors`.

Tensors are read with the official `safetensors` package and written by hand (8-byte length,
JSON header padded with spaces to 8 bytes, data in header order). Prints the layers JSON.
"""
import fnmatch
import json
import os
import shutil
import struct
import sys

import safetensors

SCALE = {"trtllm": ".weights_scaling_factor", "hf": ".weight_scale"}
# Fields of a single-scheme block that belong to the whole checkpoint, not to one module.
NOT_PER_MODULE = ("exclude_modules", "kv_cache_quant_algo", "quant_method", "quantized_layers")
SKIPPED = ("config.json", "quant_cfg.json", "hf_quant_config.json", "ckpt-opt.json", "model.safetensors.index.json")


def read(path):
    """(ordered [(name, (dtype, shape, bytes))], metadata) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    order = [k for k in json.loads(raw[8 : 8 + n]) if k != "__metadata__"]
    meta = json.loads(raw[8 : 8 + n]).get("__metadata__")
    tensors = {name: (t["dtype"], list(t["shape"]), bytes(t["data"])) for name, t in safetensors.deserialize(raw)}
    return [(k, tensors[k]) for k in order], meta


def write(path, tensors, meta):
    header, at = {}, 0
    if meta:
        header["__metadata__"] = meta
    for name, (dtype, shape, data) in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(data)]}
        at += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for _, (_, _, data) in tensors:
            f.write(data)


def block(q):
    return {k: v for k, v in q.items() if k not in NOT_PER_MODULE and v is not None}


def splice(a, b, kind, patterns):
    """Tensors of A with B's quantized modules swapped in; {module: "a"|"b"} in order."""
    names_b = dict(b)
    scale = SCALE[kind]
    modules = [n[: -len(scale)] for n, _ in a if n.endswith(scale)]
    take = {m: "b" if any(fnmatch.fnmatchcase(m, p) for p in patterns) else "a" for m in modules}
    owner = lambda n: next((m for m in modules if n.startswith(m + ".")), None)
    out, done = [], set()
    for name, t in a:
        m = owner(name)
        if m is None:
            if names_b.get(name) != t:
                sys.exit(f"{name}: differs between A and B outside the quantized modules")
            out.append((name, t))
        elif take[m] == "a":
            out.append((name, t))
        elif m not in done:
            done.add(m)
            out.extend((n, u) for n, u in b if n.startswith(m + "."))
    return out, take


def main():
    kind, a_dir, b_dir, out_dir, *patterns = sys.argv[1:]
    os.makedirs(out_dir, exist_ok=True)
    cfg_a = json.load(open(os.path.join(a_dir, "config.json")))
    cfg_b = json.load(open(os.path.join(b_dir, "config.json")))
    key = "quantization" if kind == "trtllm" else "quantization_config"
    qa, qb = cfg_a[key], cfg_b[key]
    layers = {}
    if kind == "trtllm":
        files = sorted(f for f in os.listdir(a_dir) if f.startswith("rank") and f.endswith(".safetensors"))
    else:
        files = sorted(f for f in os.listdir(a_dir) if f.endswith(".safetensors"))
    a_all, b_all, meta = [], [], None
    for name in files:
        a, meta_a = read(os.path.join(a_dir, name))
        b, _ = read(os.path.join(b_dir, name))
        if kind == "trtllm":
            tensors, take = splice(a, b, kind, patterns)
            write(os.path.join(out_dir, name), tensors, meta_a)
            for m, src in take.items():
                layers[m] = block(qa if src == "a" else qb)
        else:
            a_all += a
            b_all += b
            meta = meta or meta_a
    if kind == "hf":
        tensors, take = splice(a_all, b_all, kind, patterns)
        write(os.path.join(out_dir, "model.safetensors"), tensors, meta)
        layers = {m: block(qa if src == "a" else qb) for m, src in take.items()}
    for f in os.listdir(a_dir):
        if f not in SKIPPED and not f.endswith(".safetensors") and os.path.isfile(os.path.join(a_dir, f)):
            shutil.copy(os.path.join(a_dir, f), os.path.join(out_dir, f))
    mixed = {"quant_algo": "MIXED_PRECISION", "kv_cache_quant_algo": qa.get("kv_cache_quant_algo")}
    if kind == "trtllm":
        cfg_a[key] = dict(mixed, exclude_modules=qa.get("exclude_modules"))
        side = ("quant_cfg.json", dict(mixed, quantized_layers=layers))
    else:
        q = dict(mixed, exclude_modules=qa.get("exclude_modules"), quantized_layers=layers)
        cfg_a[key] = dict(quant_method="modelopt", **q)
        side = ("hf_quant_config.json", {"producer": {"name": "splice_mixed.py"}, "quantization": q})
    json.dump(cfg_a, open(os.path.join(out_dir, "config.json"), "w"), indent=2)
    json.dump(side[1], open(os.path.join(out_dir, side[0]), "w"), indent=2)
    print(json.dumps(layers))


if __name__ == "__main__":
    main()
