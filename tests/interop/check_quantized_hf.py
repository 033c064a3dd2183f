#!/usr/bin/env python3
"""Independent check of a checkpoint written by `ckpt-opt quantize`.

    check_quantized_hf.py ORIGINAL_DIR QUANTIZED_DIR SCHEME [REPORT.json]

Reads both folders with the official `safetensors` package and dequantizes every quantized
linear with numpy, written from the layout descriptions alone (not from our code). Layouts, told
apart by `quantization_config.quant_method`:

modelopt (unified HF checkpoint):
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
transformers "awq" (AutoAWQ GEMM, `awq/modules/linear/gemm.py` `WQLinear_GEMM.from_linear`):
- qweight I32 [in, out/8]: nibble i (bits 4i..4i+3) of word (k, c) is output 8c + ORDER[i],
  ORDER = [0, 2, 4, 6, 1, 3, 5, 7]; qzeros I32 [in/group, out/8] packed alike; scales F16
  [in/group, out]; w = (q - z) * s, bounds as int4.
transformers "fp8" (FineGrainedFP8, `integrations/finegrained_fp8.py` `FP8Linear`):
- weight F8_E4M3 [out, in], weight_scale_inv F32 [ceil(out/128), ceil(in/128)]:
  w = e4m3(code) * weight_scale_inv[r // 128, c // 128], bounds as fp8.

- f32 rounding of the quotient w / scale: every bound gets |w| * 2^-20 of slack.
- SmoothQuant sites folded into a norm: the norm changed to norm / s; the check compares
  w_hat * norm_new against w * norm_old, allowing the bf16 rounding of the new norm (2^-8).
- AWQ scales folded (int4_awq without pre_quant_scale; needs REPORT.json, whose `awq[].scale`
  gives s per searched set): the quantized weight stands for W * s[None, :] (AutoAWQ
  `scale_ln_fcs` / `scale_fc_fc`), further divided by the next set's s along the output rows
  for v_proj (o_proj's s) and up_proj (down_proj's s); the norms, v_proj's bias and
  unquantized v_proj / up_proj must equal the original divided by s up to their dtype's
  rounding (2^-8 relative).

Every other tensor must be byte-identical to the original. A wrong packing order, a transposed
weight or a wrong scale layout breaks the bounds. Prints a JSON summary; exit 1 on a violation.
"""
import json
import os
import sys

import numpy as np
import safetensors

NP = {"F32": np.float32, "I8": np.int8, "U8": np.uint8, "F8_E4M3": np.uint8, "I32": np.int32}


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


AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def unpack_awq(packed):
    """[rows, cols/8] int32 -> [rows, cols] unsigned nibbles in AutoAWQ's GEMM order."""
    p = packed.astype(np.int64) & 0xFFFFFFFF
    out = np.empty((p.shape[0], p.shape[1] * 8), np.float64)
    for i, col in enumerate(AWQ_ORDER):
        out[:, col::8] = (p >> (4 * i)) & 0xF
    return out


def raw(t, np_dtype):
    return np.frombuffer(t[2], np_dtype).reshape(t[1])


def config_problems(qc, hfq, scheme, group):
    method = qc.get("quant_method")
    if method == "awq":
        want = {"quant_method": "awq", "version": "gemm", "bits": 4, "zero_point": True}
        bad = {k: v for k, v in want.items() if qc.get(k) != v} or qc.get("group_size") != group
        return [f"awq quantization_config: {qc}"] if bad or scheme not in ("int4_awq", "int4_rtn") else []
    if method == "fp8":
        ok = (scheme == "fp8" and qc.get("weight_block_size") == [128, 128]
              and qc.get("activation_scheme") == "dynamic")
        return [] if ok else [f"fp8 quantization_config: {qc}"]
    algo = {"fp8": "FP8", "int8_wo": "W8A16", "int8_sq": "W8A8_SQ_PER_CHANNEL",
            "int4_awq": "W4A16_AWQ", "int4_rtn": "W4A16_AWQ"}[scheme]
    if method != "modelopt" or qc.get("quant_algo") != algo or (hfq or {}).get("quant_algo") != algo:
        return [f"quantization config: {qc} / {hfq}"]
    return []


def dequantize(quant, m, method, scheme, w):
    """(w_hat, bound before slack, names of the module's tensors) of module m."""
    if method == "awq":
        qw, qz = quant[m + ".qweight"], quant[m + ".qzeros"]
        sc = to_f32(quant[m + ".scales"])
        assert qw[0] == "I32" and qz[0] == "I32" and quant[m + ".scales"][0] == "F16"
        q = unpack_awq(raw(qw, np.int32)).T
        z = unpack_awq(raw(qz, np.int32)).T
        assert q.shape == w.shape and z.shape == sc.T.shape
        group = w.shape[1] // sc.shape[0]
        per = np.repeat(sc.T, group, axis=1)
        w_hat = (q - np.repeat(z, group, axis=1)) * per
        return w_hat, per, (".qweight", ".qzeros", ".scales")
    code_t = quant[m + ".weight"]
    codes = raw(code_t, NP[code_t[0]])
    if method == "fp8":
        inv = to_f32(quant[m + ".weight_scale_inv"])
        assert code_t[0] == "F8_E4M3" and list(inv.shape) == [-(-w.shape[0] // 128), -(-w.shape[1] // 128)]
        per = np.repeat(np.repeat(inv, 128, axis=0), 128, axis=1)[: w.shape[0], : w.shape[1]]
        return e4m3(codes) * per, per, (".weight", ".weight_scale_inv")
    scale = to_f32(quant[m + ".weight_scale"])
    names = (".weight", ".weight_scale", ".input_scale", ".pre_quant_scale")
    if scheme == "fp8":
        assert code_t[0] == "F8_E4M3" and scale.shape == ()
        return e4m3(codes) * scale, np.broadcast_to(scale, w.shape), names
    if scheme.startswith("int8"):
        assert code_t[0] == "I8" and scale.shape == (w.shape[0],)
        return codes.astype(np.float64) * scale[:, None], np.broadcast_to(scale[:, None], w.shape), names
    assert code_t[0] == "U8" and list(codes.shape) == [w.shape[0] // 2, w.shape[1]]
    group = w.shape[1] // scale.shape[1]
    per = np.repeat(scale, group, axis=1)
    return unpack_int4(codes) * per, per, names


def fold_scales(report):
    """Module -> s of its searched set (report `awq[].scale`)."""
    out = {}
    for c in (report or {}).get("awq", []):
        for m in c["modules"]:
            out[m] = np.array(c["scale"], np.float64)
    return out


def main():
    orig_dir, quant_dir, scheme = sys.argv[1], sys.argv[2], sys.argv[3]
    report = json.load(open(sys.argv[4])) if len(sys.argv) > 4 else None
    orig, quant = load(orig_dir), load(quant_dir)
    config = json.load(open(os.path.join(quant_dir, "config.json")))
    hfq_path = os.path.join(quant_dir, "hf_quant_config.json")
    hfq = json.load(open(hfq_path))["quantization"] if os.path.exists(hfq_path) else None
    qc = config["quantization_config"]
    method = qc.get("quant_method")
    suffix = {"awq": ".qweight", "fp8": ".weight_scale_inv"}.get(method, ".weight_scale")
    modules = sorted(n[: -len(suffix)] for n in quant if n.endswith(suffix))
    group = None
    if modules and scheme.startswith("int4"):
        group = orig[modules[0] + ".weight"][1][1] // to_f32(
            quant[modules[0] + (".scales" if method == "awq" else ".weight_scale")]).shape[-1 if method != "awq" else 0]
    problems = config_problems(qc, hfq, scheme, group)
    if method != "modelopt" and hfq is not None:
        problems.append("hf_quant_config.json beside a transformers layout (vLLM would read it as modelopt)")
    has_pqs = any(n.endswith(".pre_quant_scale") for n in quant)
    folded = scheme == "int4_awq" and not has_pqs
    scales = fold_scales(report)
    if folded and not scales:
        problems.append("int4_awq without pre_quant_scale: give the report to check the folded scales")
    # Tensors a fold divides: (name -> divisor along its first axis).
    divided = {}
    if folded:
        for m, s in scales.items():
            layer, kind = m.rsplit(".", 2)[0], m.rsplit(".", 1)[1]
            if kind in ("q_proj", "k_proj", "v_proj"):
                divided[layer + ".input_layernorm.weight"] = s
            elif kind in ("gate_proj", "up_proj"):
                divided[layer + ".post_attention_layernorm.weight"] = s
            elif kind == "o_proj" and np.any(s != 1.0):
                v = layer + ".self_attn.v_proj"
                divided[v + ".weight"] = s
                divided[v + ".bias"] = s
            elif kind == "down_proj":
                divided[layer + ".mlp.up_proj.weight"] = s
    worst = 0.0
    allowed = set()
    for m in modules:
        w = to_f32(orig[m + ".weight"])
        w_hat, per, names = dequantize(quant, m, method, scheme, w)
        allowed |= {m + n for n in names} | {m + ".weight"}
        if folded:
            w = w * scales.get(m, np.ones(w.shape[1]))[None, :]
            if m + ".weight" in divided:
                w = w / divided[m + ".weight"][:, None]
        if scheme == "fp8":
            bound = np.maximum(np.abs(w) * 2.0**-4, per * 2.0**-10)
        elif scheme.startswith("int8"):
            bound = per / 2
        else:
            # With AWQ's clip search a group's scale may be below amax/7: values beyond 7 * s
            # saturate, so their error is |w| - 7 s (without clipping |w| <= 7 s everywhere).
            pqs = to_f32(quant[m + ".pre_quant_scale"]) if m + ".pre_quant_scale" in quant else 1.0
            bound = np.maximum(per / 2, np.abs(w / (pqs if np.ndim(pqs) == 0 else pqs[None, :])) - 7 * per)
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
        if scheme == "int8_sq" and norm_name and orig[norm_name][2] != quant[norm_name][2]:
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
    for name, t in orig.items():
        if name in allowed:
            continue
        if name not in quant:
            problems.append(f"{name}: missing")
        elif name in divided:
            want = to_f32(t) / divided[name].reshape((-1,) + (1,) * (len(t[1]) - 1))
            got = to_f32(quant[name])
            if quant[name][0] != t[0] or not np.all(np.abs(got - want) <= np.abs(want) * 2.0**-8 + 1e-30):
                problems.append(f"{name}: not the original divided by the folded AWQ scale")
        elif quant[name] != t and not (scheme == "int8_sq" and "layernorm" in name):
            problems.append(f"{name}: changed")
    extra = set(quant) - set(orig) - allowed
    if extra:
        problems.append(f"unexpected tensors {sorted(extra)[:3]}")
    print(json.dumps({"quantized": len(modules), "worst_error_over_bound": worst, "folded": folded}))
    if problems:
        print("\n".join(problems[:20]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
