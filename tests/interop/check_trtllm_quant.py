#!/usr/bin/env python3
"""Independent check of a quantized TensorRT-LLM checkpoint written by
`ckpt-opt convert --format trtllm --quant SCHEME --tp N --pp M`.

    check_trtllm_quant.py HF_DIR OUT_DIR SCHEME

Written from the documented layout alone (FORMATS.md 1.3-1.7: TensorRT-LLM
`docs/source/architecture/checkpoint.md`, `models/llama/convert.py`; modelopt
`export/quant_utils.py`, `export/postprocess.py`), not from our code. Every rank file is read
with the official `safetensors` package; each quantized linear is dequantized with numpy and
compared with the rank's share of the original Hugging Face weight, cut the way TensorRT-LLM
cuts it: `attention.qkv` = cat(q_r, k_r, v_r) with KV heads repeated when n_kv < tp, `mlp.fc`
= gate_proj rows, `mlp.gate` = up_proj rows, `attention.dense` / `mlp.proj` split on columns.

- FP8:  `weight` F8_E4M3 [out, in], `weights_scaling_factor` F32 [] (one scale for the fused
        qkv), `activation_scaling_factor` F32 []; w = e4m3(code) * ws;
        |w - w_hat| <= max(|w| 2^-4, ws 2^-10).
- W8A16: `weight` I8 [out, in], `weights_scaling_factor` F32 [out]; |w - w_hat| <= wsf[row] / 2.
- W8A8_SQ_PER_CHANNEL (TensorRT-LLM `quantization/layers.py` `Int8SmoothQuantLinear`): `weight`
        I8 [out, in] of W diag(s), `weights_scaling_factor` F32 [out], `activation_scaling_factor`
        F32 [] > 0, `prequant_scaling_factor` F32 [in] = 1/s (multiplied into the input of every
        linear); w_hat = code * wsf[row] * pqs[col]; |w - w_hat| <= wsf[row] pqs[col] / 2; the
        norms are the input's, unchanged (nothing is folded into them).
- W4A16_AWQ: `weight` I8 [out/2, in], byte (i, k) = row 2i in the low nibble, row 2i+1 in the
        high nibble (two's complement); `weights_scaling_factor` F32 [out, in/group];
        `prequant_scaling_factor` F32 [in] (AWQ): the effective weight is w_hat * pqs[None, :];
        |w - w_hat| <= s/2 (or |w| - 7 s where the clip search saturated).
- Every bound gets |w| 2^-20 of slack for f32 rounding of w / scale.

config.json must name the quant_algo (and group_size / has_zero_point / pre_quant_scale for
INT4) and list lm_head in exclude_modules. A wrong nibble order, a transposed weight, a wrong
split or a wrong scale layout breaks the bounds. Prints a JSON summary; exit 1 on a violation.

SCHEME `mixed` (or any SCHEME when config.json says `"quant_algo": "MIXED_PRECISION"`): each
linear is checked against its own block in quant_cfg.json beside config.json (TensorRT-LLM
`models/modeling_utils.py` `PretrainedConfig.from_json_file` / `to_layer_quant_config`;
`LayerQuantConfig._get_quant_cfg`: the first key that `fnmatch`es the stage-local module name
wins), FP8 -> fp8, W8A16 -> int8_wo, W8A8_SQ_PER_CHANNEL -> int8_sq, W4A16_AWQ -> int4_awq
(int4_rtn when pre_quant_scale is false); a linear no key matches must hold the input's float
weight share exactly and no scale. quant_cfg.json's kv_cache_quant_algo must equal
config.json's, and no key may match lm_head.
"""
import fnmatch
import json
import os
import sys

import numpy as np
import safetensors

# The element decoders of the HF checker (same directory): bf16/f16/f32 to float, E4M3 codes,
# row-pair INT4 nibbles (low nibble = even row).
from check_quantized_hf import e4m3, to_f32 as to_f64, unpack_int4

NP = {"F32": np.float32, "I8": np.int8, "U8": np.uint8, "F8_E4M3": np.uint8}
ALGO = {"fp8": "FP8", "int8_wo": "W8A16", "int8_sq": "W8A8_SQ_PER_CHANNEL", "int4_awq": "W4A16_AWQ", "int4_rtn": "W4A16_AWQ"}


def load(path):
    with open(path, "rb") as f:
        return {n: (t["dtype"], list(t["shape"]), bytes(t["data"])) for n, t in safetensors.deserialize(f.read())}


def load_hf(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            out.update(load(os.path.join(folder, name)))
    return out


def expected_shares(hf, cfg, tp, tp_rank, layer):
    """HF weight share of each TensorRT-LLM linear of `layer` on `tp_rank`."""
    heads = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads", heads)
    d = cfg.get("head_dim") or cfg["hidden_size"] // heads
    w = lambda n: to_f64(hf[f"model.layers.{layer}.{n}.weight"])
    chunk = lambda a, axis=0: np.split(a, tp, axis=axis)[tp_rank]

    def dup(a):  # TensorRT-LLM convert_utils.dup_kv_weight
        if kv >= tp:
            return a
        r = tp // kv
        return np.repeat(a.reshape(kv, d, -1), r, axis=0).reshape(kv * r * d, -1)

    return {
        "attention.qkv": np.concatenate(
            [chunk(w("self_attn.q_proj")), chunk(dup(w("self_attn.k_proj"))), chunk(dup(w("self_attn.v_proj")))]
        ),
        "attention.dense": chunk(w("self_attn.o_proj"), 1),
        "mlp.fc": chunk(w("mlp.gate_proj")),
        "mlp.gate": chunk(w("mlp.up_proj")),
        "mlp.proj": chunk(w("mlp.down_proj"), 1),
    }


def dequantize(rank, p, scheme, w):
    """(w_hat, bound) of linear `p` of one rank file; asserts names, dtypes and shapes."""
    code = rank[p + ".weight"]
    codes = np.frombuffer(code[2], NP[code[0]]).reshape(code[1])
    if scheme == "fp8":
        assert code[0] == "F8_E4M3" and code[1] == list(w.shape), (p, code[:2])
        ws, act = to_f64(rank[p + ".weights_scaling_factor"]), to_f64(rank[p + ".activation_scaling_factor"])
        assert ws.shape == () and act.shape == () and act > 0, p
        return e4m3(codes) * ws, np.maximum(np.abs(w) * 2.0**-4, ws * 2.0**-10)
    if scheme == "int8_wo":
        assert code[0] == "I8" and code[1] == list(w.shape), (p, code[:2])
        pcs = to_f64(rank[p + ".weights_scaling_factor"])
        assert pcs.shape == (w.shape[0],), (p, pcs.shape)
        return codes.astype(np.float64) * pcs[:, None], np.broadcast_to(pcs[:, None] / 2, w.shape)
    if scheme == "int8_sq":
        assert code[0] == "I8" and code[1] == list(w.shape), (p, code[:2])
        pcs = to_f64(rank[p + ".weights_scaling_factor"])
        act = to_f64(rank[p + ".activation_scaling_factor"])
        pqs = to_f64(rank[p + ".prequant_scaling_factor"])
        assert pcs.shape == (w.shape[0],) and act.shape == () and act > 0, (p, pcs.shape, act)
        assert pqs.shape == (w.shape[1],) and np.all(pqs > 0), (p, pqs.shape)
        w_hat = codes.astype(np.float64) * pcs[:, None] * pqs[None, :]
        return w_hat, pcs[:, None] / 2 * pqs[None, :]
    assert code[0] == "I8" and code[1] == [w.shape[0] // 2, w.shape[1]], (p, code[:2])
    ws = to_f64(rank[p + ".weights_scaling_factor"])
    group = w.shape[1] // ws.shape[1]
    assert ws.shape[0] == w.shape[0] and ws.shape[1] * group == w.shape[1], (p, ws.shape)
    per = np.repeat(ws, group, axis=1)
    w_hat = unpack_int4(codes) * per
    pqs = np.ones(w.shape[1])
    if scheme == "int4_awq":
        pqs = to_f64(rank[p + ".prequant_scaling_factor"])
        assert pqs.shape == (w.shape[1],), (p, pqs.shape)
    else:
        assert p + ".prequant_scaling_factor" not in rank, p
    bound = np.maximum(per / 2, np.abs(w / pqs[None, :]) - 7 * per)
    return w_hat * pqs[None, :], bound * pqs[None, :]


def int4_fields_problem(q, scheme):
    """A single-scheme block whose INT4 fields do not describe `scheme`, else None."""
    if scheme.startswith("int4") and (
        q.get("has_zero_point") is not False or q.get("pre_quant_scale") != (scheme == "int4_awq") or not q.get("group_size")
    ):
        return f"INT4 fields {q}"
    return None


def scheme_of_block(q):
    """The checker's scheme name for a single-scheme block, or None (unquantized / unknown)."""
    algo = q.get("quant_algo")
    if algo == "W4A16_AWQ":
        return "int4_awq" if q.get("pre_quant_scale") else "int4_rtn"
    return {v: k for k, v in ALGO.items() if not k.startswith("int4")}.get(algo)


def mixed_schemes(out_dir, q, problems):
    """module name -> scheme (None: unquantized), from quant_cfg.json."""
    qc = json.load(open(os.path.join(out_dir, "quant_cfg.json")))
    if qc.get("quant_algo") != "MIXED_PRECISION" or qc.get("kv_cache_quant_algo") != q.get("kv_cache_quant_algo"):
        problems.append(f"quant_cfg.json header {({k: v for k, v in qc.items() if k != 'quantized_layers'})}")
    layers = list(qc["quantized_layers"].items())

    def scheme(module):
        for key, block in layers:
            if fnmatch.fnmatch(module, key):
                return scheme_of_block(block) or f"unknown {block}"
        return None

    if scheme("lm_head"):
        problems.append("quant_cfg.json quantizes lm_head")
    for key, block in layers:
        s = scheme_of_block(block)
        why = int4_fields_problem(block, s) if s else f"unknown quant_algo {block}"
        if why:
            problems.append(f"quant_cfg.json {key}: {why}")
    return scheme


def check_unquantized(rank, p, w):
    """A linear no quant_cfg.json key matches: the input's share, bit for bit, no scale."""
    code = rank[p + ".weight"]
    assert p + ".weights_scaling_factor" not in rank, f"{p} holds scales but quant_cfg.json lists it nowhere"
    assert code[0] in ("BF16", "F16", "F32") and code[1] == list(w.shape), (p, code[:2])
    assert np.array_equal(to_f64(code), w), f"{p}: not the input's weight"


def main():
    hf_dir, out_dir, scheme = sys.argv[1:4]
    hf_cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    cfg = json.load(open(os.path.join(out_dir, "config.json")))
    hf = load_hf(hf_dir)
    tp, pp = cfg["mapping"]["tp_size"], cfg["mapping"]["pp_size"]
    q = cfg["quantization"]
    problems = []
    if scheme == "mixed" or q["quant_algo"] == "MIXED_PRECISION":
        if q["quant_algo"] != "MIXED_PRECISION":
            problems.append(f"config quantization {q}")
        scheme_of = mixed_schemes(out_dir, q, problems)
    else:
        if q["quant_algo"] != ALGO[scheme] or "lm_head" not in q["exclude_modules"]:
            problems.append(f"config quantization {q}")
        why = int4_fields_problem(q, scheme)
        if why:
            problems.append(f"config {why}")
        scheme_of = lambda module: scheme
    unquantized = 0
    per_stage = hf_cfg["num_hidden_layers"] // pp
    checked, worst = 0, 0.0
    for r in range(tp * pp):
        rank = load(os.path.join(out_dir, f"rank{r}.safetensors"))
        tp_rank, pp_rank = r % tp, r // tp
        for local in range(per_stage):
            layer = pp_rank * per_stage + local
            for tl_norm, hf_norm in (("input_layernorm", "input_layernorm"), ("post_layernorm", "post_attention_layernorm")):
                got = rank.get(f"transformer.layers.{local}.{tl_norm}.weight")
                if got is None or got[2] != hf[f"model.layers.{layer}.{hf_norm}.weight"][2]:
                    problems.append(f"rank{r} layer {local} {tl_norm}: not the input's norm")
            shares = expected_shares(hf, hf_cfg, tp, tp_rank, layer)
            for kind, w in shares.items():
                p = f"transformer.layers.{local}.{kind}"
                s = scheme_of(p)
                try:
                    if s is None:
                        check_unquantized(rank, p, w)
                        unquantized += 1
                        continue
                    w_hat, bound = dequantize(rank, p, s, w)
                except (AssertionError, KeyError, ValueError) as e:
                    problems.append(f"rank{r} {p}: layout {e}")
                    continue
                bound = bound + np.abs(w) * 2.0**-20
                err = np.abs(w - w_hat)
                worst = max(worst, float(np.max(err / np.maximum(bound, 1e-30))))
                checked += 1
                if not np.all(err <= bound * (1 + 1e-6) + 1e-12):
                    i = np.unravel_index(np.argmax(err - bound), err.shape)
                    problems.append(f"rank{r} {p}: |w - w_hat| = {err[i]:.3e} > bound {bound[i]:.3e} at {i}")
    print(json.dumps({"linears": checked, "unquantized": unquantized, "worst_error_over_bound": worst}))
    if problems:
        print("\n".join(problems[:20]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
