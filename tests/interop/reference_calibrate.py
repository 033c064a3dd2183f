#!/usr/bin/env python3
"""Independent float64 computation of `ckpt-opt calibrate`'s statistics, on the float64 forward of
reference_forward.py, compared with a statistics file.

Usage: reference_calibrate.py MODEL_DIR WINDOWS.json STATS.safetensors
  WINDOWS.json: the token windows calibrate ran ([[id, ...], ...], from its --dump-windows).
Prints JSON {"max_rel_err": ..., "max_elementwise_rel_err": ..., "worst": name, "per_tensor": {name: rel_err}, "tensors": n}
where rel_err of a tensor is max|got - ref| / max|ref| (elementwise error relative to the
tensor's scale; max_elementwise_rel_err is |got - ref| / |ref| over nonzero entries), and exits 1 if a tensor is missing, extra or of another shape.

Definitions (README `calibrate`): absmax / mean_abs of |x| over all tokens per channel;
per layer max |k| (keys after RoPE) and max |v| (the KV cache); Minitron a_w = mean over a window's tokens of |x|, importance = sqrt(sum_w a_w^2) (heads / query
groups: L2 over their channels; hidden: summed over every norm output); block influence =
1 - mean over tokens of cos(h_in, h_out).
"""
import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

sys.path.insert(0, str(Path(__file__).parent))
from reference_forward import forward, load_weights  # noqa: E402


def main():
    model_dir, windows_path, stats_path = sys.argv[1:4]
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    n_layers = cfg["num_hidden_layers"]
    n_heads = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads") or n_heads
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_heads
    windows = json.loads(Path(windows_path).read_text())
    w = load_weights(model_dir)

    absmax, sum_abs, sq_mean, kv_absmax = {}, {}, {}, {}
    cos_sum = np.zeros(n_layers)
    tokens = 0

    def tap(layer, name, x):
        if name == "kv_cache":  # keys after RoPE, values: one max |x| each per layer
            for c, a in zip("kv", x):
                kv_absmax[(layer, c)] = max(kv_absmax.get((layer, c), 0.0), float(np.abs(a).max()))
            return
        if name == "residual":
            a, b = x
            cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
            cos_sum[layer] += cos.sum()
            return
        key = (layer, name)
        ax = np.abs(x)
        absmax[key] = np.maximum(absmax.get(key, 0.0), ax.max(0))
        sum_abs[key] = sum_abs.get(key, 0.0) + ax.sum(0)
        sq_mean[key] = sq_mean.get(key, 0.0) + ax.mean(0) ** 2

    for win in windows:
        forward(model_dir, win, tap=tap, weights=w)
        tokens += len(win)

    ref = {}
    site_of = {
        "self_attn.q_proj": "attn_in",
        "self_attn.k_proj": "attn_in",
        "self_attn.v_proj": "attn_in",
        "self_attn.o_proj": "o_in",
        "mlp.gate_proj": "mlp_in",
        "mlp.up_proj": "mlp_in",
        "mlp.down_proj": "down_in",
    }
    hidden = sq_mean[(n_layers, "final_norm")].copy()
    for l in range(n_layers):
        for lin, site in site_of.items():
            ref[f"stats.model.layers.{l}.{lin}.input_absmax"] = absmax[(l, site)]
            ref[f"stats.model.layers.{l}.{lin}.input_mean_abs"] = sum_abs[(l, site)] / tokens
        for c in "kv":
            ref[f"stats.model.layers.{l}.self_attn.{c}_cache_absmax"] = np.array([kv_absmax[(l, c)]])
        ref[f"importance.layers.{l}.ffn"] = np.sqrt(sq_mean[(l, "down_in")])
        per_channel = np.sqrt(sq_mean[(l, "o_in")]).reshape(n_heads, head_dim)
        ref[f"importance.layers.{l}.heads"] = np.linalg.norm(per_channel, axis=1)
        groups = per_channel.reshape(n_kv, n_heads // n_kv, head_dim)
        ref[f"importance.layers.{l}.query_groups"] = np.sqrt((groups**2).sum(axis=(1, 2)))
        hidden = hidden + sq_mean[(l, "attn_in")] + sq_mean[(l, "mlp_in")]
    ref["stats.lm_head.input_absmax"] = absmax[(n_layers, "final_norm")]
    ref["stats.lm_head.input_mean_abs"] = sum_abs[(n_layers, "final_norm")] / tokens
    ref["importance.hidden"] = np.sqrt(hidden)
    ref["block_influence"] = 1.0 - cos_sum / tokens

    got = load_file(stats_path)
    if set(got) != set(ref):
        raise SystemExit(f"tensor names differ: missing {set(ref) - set(got)}, extra {set(got) - set(ref)}")
    per, elem = {}, 0.0
    for name, r in ref.items():
        g = got[name].astype(np.float64)
        if g.shape != r.shape:
            raise SystemExit(f"{name}: shape {g.shape}, reference {r.shape}")
        per[name] = float(np.abs(g - r).max() / np.abs(r).max())
        nz = r != 0
        elem = max(elem, float((np.abs(g - r)[nz] / np.abs(r[nz])).max(initial=0.0)))
    worst = max(per, key=per.get)
    print(json.dumps({"max_rel_err": per[worst], "max_elementwise_rel_err": elem, "worst": worst, "tensors": len(per), "tokens": tokens, "per_tensor": per}))


if __name__ == "__main__":
    main()
