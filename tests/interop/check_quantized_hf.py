#!/usr/bin/env python3
"""Independent check of a checkpoint written by `ckpt-opt quantize` (modelopt unified HF layout).

    check_quantized_hf.py ORIGINAL_DIR QUANTIZED_DIR SCHEME

Reads both folders with the official `safetensors` package and dequantizes every quantized
linear with numpy, written from the layout description alone (not from our code):

- fp8:  weight F8_E4M3 [out, in], weight_scale F32 [] -> w = e4m3(code) * scale;
        |w - w_hat| <= max(|w| * 2^-4, scale * 2^-10) (3 mantissa bits; subnormal step / 2).
- int8: weight I8 [out, in], weight_scale F32 [out] -> w = code * scale[row];
        |w - w_hat| <= scale[row] / 2.
- int4: weight U8 [out/2, in]: byte (i, k) holds row 2i in the low nibble and row 2i+1 in the
        high nibble, two's complement; weight_scale F32 [out, in/group];
        |w - w_hat| <= scale[row, k // group] / 2, or |w| - 7 scale where AWQ's clip search
        saturated the value (|w| > 7 scale).
- pre_quant_scale F32 [in] (AWQ, SmoothQuant without a norm): the effective weight is
  w_hat * pqs[None, :] and the bound scales by pqs.
- f32 rounding of the quotient w / scale: every bound gets |w| * 2^-20 of slack.
- SmoothQuant sites folded into a norm: the norm changed to norm / s; the check compares
  w_hat * norm_new against w * norm_old, allowing the bf16 rounding of the new norm (2^-8).

Every other tensor must be byte-identical to the original. A wrong packing order, a transposed
weight or a wrong scale layout breaks the bounds. Prints a JSON summary; exit 1 on a violation.
"""
import json
import os
import sys

import numpy as np
import safetensors

NP = {"F32": np.float32, "I8": np.int8, "U8": np.uint8, "F8_E4M3": np.uint8}


def load(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            with open(os.path.join(folder, name), "rb") as f:
                for tname, t in safetensors.deserialize(f.read()):
                    out[tname] = (t["dtype"], list(t["shape"]), bytes(t["data"]))
    return out


def to_f32(t):
    dtype, shape, data = t
    if dtype == "BF16":
        bits = np.frombuffer(data, np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape).astype(np.float64)
    if dtype == "F16":
        return np.frombuffer(data, np.float16).reshape(shape).astype(np.float64)
    return np.frombuffer(data, NP[dtype]).reshape(shape).astype(np.float64)


def e4m3(codes):
    c = codes.astype(np.int64)
    sign = np.where(c & 0x80, -1.0, 1.0)
    e = (c >> 3) & 0xF
    m = (c & 7).astype(np.float64)
    val = np.where(e == 0, m / 8.0 * 2.0**-6, (1.0 + m / 8.0) * 2.0 ** (e - 7.0))
    val = np.where((e == 15) & ((c & 7) == 7), np.nan, val)
    return sign * val


def unpack_int4(packed):
    p = packed.astype(np.int16)
    lo, hi = p & 0xF, p >> 4
    lo = np.where(lo >= 8, lo - 16, lo)
    hi = np.where(hi >= 8, hi - 16, hi)
    out = np.empty((p.shape[0] * 2, p.shape[1]), np.float64)
    out[0::2], out[1::2] = lo, hi
    return out


def main():
    orig_dir, quant_dir, scheme = sys.argv[1], sys.argv[2], sys.argv[3]
    orig, quant = load(orig_dir), load(quant_dir)
    config = json.load(open(os.path.join(quant_dir, "config.json")))
    hfq = json.load(open(os.path.join(quant_dir, "hf_quant_config.json")))["quantization"]
    qc = config["quantization_config"]
    problems = []
    algo = {"fp8": "FP8", "int8_wo": "W8A16", "int8_sq": "W8A8_SQ_PER_CHANNEL",
            "int4_awq": "W4A16_AWQ", "int4_rtn": "W4A16_AWQ"}[scheme]
    if qc.get("quant_method") != "modelopt" or qc.get("quant_algo") != algo or hfq["quant_algo"] != algo:
        problems.append(f"quantization config: {qc} / {hfq}")
    modules = sorted(n[: -len(".weight_scale")] for n in quant if n.endswith(".weight_scale"))
    worst = 0.0
    for m in modules:
        w = to_f32(orig[m + ".weight"])
        code_t, scale = quant[m + ".weight"], to_f32(quant[m + ".weight_scale"])
        codes = np.frombuffer(code_t[2], NP[code_t[0]]).reshape(code_t[1])
        if scheme == "fp8":
            assert code_t[0] == "F8_E4M3" and scale.shape == ()
            w_hat = e4m3(codes) * scale
            bound = np.maximum(np.abs(w) * 2.0**-4, scale * 2.0**-10)
        elif scheme.startswith("int8"):
            assert code_t[0] == "I8" and scale.shape == (w.shape[0],)
            w_hat = codes.astype(np.float64) * scale[:, None]
            bound = np.broadcast_to(scale[:, None] / 2, w.shape)
        else:
            assert code_t[0] == "U8" and list(codes.shape) == [w.shape[0] // 2, w.shape[1]]
            group = w.shape[1] // scale.shape[1]
            per = np.repeat(scale, group, axis=1)
            w_hat = unpack_int4(codes) * per
            # With AWQ's clip search a group's scale may be below amax/7: values beyond 7 * s
            # saturate, so their error is |w| - 7 s (without clipping |w| <= 7 s everywhere).
            pqs = to_f32(quant[m + ".pre_quant_scale"]) if m + ".pre_quant_scale" in quant else 1.0
            bound = np.maximum(per / 2, np.abs(w / pqs) - 7 * per) if np.ndim(pqs) == 0 else \
                np.maximum(per / 2, np.abs(w / pqs[None, :]) - 7 * per)
        # f32 arithmetic (the quotient w / scale, the product w * s) may move a value sitting on
        # a rounding boundary by an ulp: allow |w| * 2^-20 beyond the exact bound.
        bound = bound + np.abs(w) * 2.0**-20
        if m + ".pre_quant_scale" in quant:
            pqs = to_f32(quant[m + ".pre_quant_scale"])
            w_hat, bound = w_hat * pqs[None, :], bound * pqs[None, :]
        layer, kind = m.rsplit(".", 2)[0], m.rsplit(".", 1)[1]
        norm_name = None
        if kind in ("q_proj", "k_proj", "v_proj"):
            norm_name = layer + ".input_layernorm.weight"
        elif kind in ("gate_proj", "up_proj"):
            norm_name = layer + ".post_attention_layernorm.weight"
        if norm_name and orig[norm_name][2] != quant[norm_name][2]:
            n_old, n_new = to_f32(orig[norm_name]), to_f32(quant[norm_name])
            ref = w * n_old[None, :]
            w_hat = w_hat * n_new[None, :]
            bound = bound * np.abs(n_new)[None, :] + np.abs(ref) * 2.0**-8
            w = ref
        err = np.abs(w - w_hat)
        ratio = float(np.max(err / np.maximum(bound * (1 + 1e-6), 1e-30)))
        worst = max(worst, ratio)
        if not np.all(err <= bound * (1 + 1e-6) + 1e-12):
            i = np.unravel_index(np.argmax(err - bound), err.shape)
            problems.append(f"{m}: |w - w_hat| = {err[i]:.3e} > bound {bound[i]:.3e} at {i}")
    allowed = set()
    for m in modules:
        allowed |= {m + s for s in (".weight", ".weight_scale", ".input_scale", ".pre_quant_scale")}
    for name, t in orig.items():
        if name in allowed:
            continue
        if name not in quant:
            problems.append(f"{name}: missing")
        elif quant[name] != t and not (scheme == "int8_sq" and "layernorm" in name):
            problems.append(f"{name}: changed")
    extra = set(quant) - set(orig) - allowed
    if extra:
        problems.append(f"unexpected tensors {sorted(extra)[:3]}")
    print(json.dumps({"quantized": len(modules), "worst_error_over_bound": worst}))
    if problems:
        print("\n".join(problems[:20]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
