#!/usr/bin/env python3
"""Independent check of the FP8 KV-cache scales of `--kv-cache fp8` exports.

    check_kv_scales.py MODEL_DIR WINDOWS.json OUT_DIR trtllm|hf

Runs the calibration windows (from `calibrate --dump-windows`) through the float64 forward of
reference_forward.py, takes per layer max |k| (keys after RoPE, as the KV cache holds them) and
max |v| over all tokens, and checks the export against amax / 448 (E4M3 max; modelopt
`get_kv_cache_scaling_factor`):
- trtllm: every rank's `transformer.layers.{stage-local l}.attention.kv_cache_scaling_factor`
  F32 [1] = max(k, v) / 448 (one factor for K and V, replicated over tp ranks);
  config.json quantization.kv_cache_quant_algo == "FP8".
- hf (modelopt unified layout): `model.layers.{l}.self_attn.k_proj.k_scale` and
  `...v_proj.v_scale` F32 [] = k / 448, v / 448; hf_quant_config.json and config.json
  quantization_config name kv_cache_quant_algo "FP8".
Relative tolerance 1e-4 (f32 forward vs float64). Prints JSON; exit 1 on a violation.
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import safetensors

sys.path.insert(0, str(Path(__file__).parent))
from reference_forward import forward, load_weights  # noqa: E402


def load(path):
    with open(path, "rb") as f:
        return {n: (t["dtype"], list(t["shape"]), np.frombuffer(bytes(t["data"]), np.float32)) for n, t in safetensors.deserialize(f.read()) if t["dtype"] == "F32"}


def main():
    model_dir, windows_path, out_dir, layout = sys.argv[1:5]
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    w = load_weights(model_dir)
    amax = {}

    def tap(layer, name, x):
        if name == "kv_cache":
            for c, a in zip("kv", x):
                amax[(layer, c)] = max(amax.get((layer, c), 0.0), float(np.abs(a).max()))

    for win in json.loads(Path(windows_path).read_text()):
        forward(model_dir, win, tap=tap, weights=w)
    n = cfg["num_hidden_layers"]
    problems, worst = [], 0.0

    def close(name, got, want):
        nonlocal worst
        rel = abs(got - want) / want
        worst = max(worst, rel)
        if not rel <= 1e-4:
            problems.append(f"{name}: {got} vs reference {want}")

    if layout == "trtllm":
        c = json.loads((Path(out_dir) / "config.json").read_text())
        if c["quantization"].get("kv_cache_quant_algo") != "FP8":
            problems.append(f"config quantization {c['quantization']}")
        tp, pp = c["mapping"]["tp_size"], c["mapping"]["pp_size"]
        per = n // pp
        for r in range(tp * pp):
            t = load(os.path.join(out_dir, f"rank{r}.safetensors"))
            for local in range(per):
                l = (r // tp) * per + local
                name = f"transformer.layers.{local}.attention.kv_cache_scaling_factor"
                if name not in t or t[name][1] != [1]:
                    problems.append(f"rank{r} {name}: missing or not F32 [1]")
                    continue
                close(f"rank{r} {name}", float(t[name][2][0]), max(amax[(l, "k")], amax[(l, "v")]) / 448.0)
    else:
        q = json.loads((Path(out_dir) / "hf_quant_config.json").read_text())["quantization"]
        qc = json.loads((Path(out_dir) / "config.json").read_text())["quantization_config"]
        if q.get("kv_cache_quant_algo") != "FP8" or qc.get("kv_cache_quant_algo") != "FP8":
            problems.append(f"kv_cache_quant_algo {q} {qc}")
        t = {}
        for f in sorted(os.listdir(out_dir)):
            if f.endswith(".safetensors"):
                t.update(load(os.path.join(out_dir, f)))
        for l in range(n):
            for c in "kv":
                name = f"model.layers.{l}.self_attn.{c}_proj.{c}_scale"
                if name not in t or t[name][1] != []:
                    problems.append(f"{name}: missing or not F32 []")
                    continue
                close(name, float(t[name][2][0]), amax[(l, c)] / 448.0)
    print(json.dumps({"layers": n, "worst_rel_err": worst}))
    if problems:
        print("\n".join(problems[:20]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
