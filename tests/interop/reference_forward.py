#!/usr/bin/env python3
"""Independent float64 forward pass of a Hugging Face Llama/Mistral/Qwen2 checkpoint, written from
transformers' modeling_llama.py (no torch): embedding -> N x (RMSNorm -> GQA attention with
rotate-half RoPE -> residual -> RMSNorm -> SwiGLU MLP -> residual) -> RMSNorm -> LM head.

Usage: reference_forward.py MODEL_DIR TOKENS OTHER.f32
  TOKENS: comma-separated ids; OTHER.f32: logits [len(TOKENS), vocab] as little-endian float32.
Prints JSON {"rel_err": |other - ref| / |ref|, "max_abs_err": ..., "ref_norm": ...}.

Weights are read with the `safetensors` package; bf16 (which numpy lacks) is widened via its
bits: uint16 -> uint32 << 16 -> float32.
"""
import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors import safe_open


def load_weights(model_dir):
    out = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        # framework="numpy" cannot represent bf16; read raw bytes via the header instead.
        with safe_open(str(f), framework="numpy") as st:
            names = list(st.keys())
        raw = f.read_bytes()
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + header_len])
        base = 8 + header_len
        for name in names:
            meta = header[name]
            a, b = meta["data_offsets"]
            buf = raw[base + a : base + b]
            dt = meta["dtype"]
            if dt == "BF16":
                bits = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
                arr = bits.view(np.float32)
            elif dt == "F16":
                arr = np.frombuffer(buf, dtype="<f2")
            elif dt == "F32":
                arr = np.frombuffer(buf, dtype="<f4")
            elif dt == "F8_E4M3":
                # The code's value (OCP E4M3FN: bias 7, no infinities, 0x7F/0xFF NaN).
                arr = E4M3_VALUES[np.frombuffer(buf, dtype=np.uint8)]
            elif dt in ("I8", "U8"):
                arr = np.frombuffer(buf, dtype=np.int8 if dt == "I8" else np.uint8)
            else:
                raise SystemExit(f"{f}: {name}: dtype {dt} not handled")
            out[name] = arr.astype(np.float64).reshape(meta["shape"])
    return out


def _e4m3_values():
    b = np.arange(256)
    sign = np.where(b & 0x80, -1.0, 1.0)
    exp, man = (b >> 3) & 0xF, b & 0x7
    mag = np.where(exp == 0, man / 8.0 * 2.0**-6, (1 + man / 8.0) * 2.0 ** (exp - 7.0))
    mag = np.where((b & 0x7F) == 0x7F, np.nan, mag)
    return sign * mag


E4M3_VALUES = _e4m3_values()


def rms_norm(x, w, eps):
    var = np.mean(x * x, axis=-1, keepdims=True)
    return x / np.sqrt(var + eps) * w


def rope_inv_freq(cfg, head_dim):
    base = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    rs = cfg.get("rope_scaling")
    if rs:
        kind = rs.get("rope_type", rs.get("type"))
        if kind == "linear":
            inv = inv / rs["factor"]
        elif kind == "llama3":
            factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
            old = rs["original_max_position_embeddings"]
            wavelen = 2 * math.pi / inv
            scaled = np.where(wavelen > old / low, inv / factor, inv)
            smooth = (old / wavelen - low) / (high - low)
            smoothed = (1 - smooth) * scaled / factor + smooth * scaled
            medium = ~(wavelen < old / high) & ~(wavelen > old / low)
            inv = np.where(medium, smoothed, scaled)
        elif kind != "default":
            raise SystemExit(f"rope_scaling {kind} not handled")
    return inv


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def forward(model_dir, tokens, tap=None, weights=None, linear=None):
    """Logits [len(tokens), vocab]. `tap(layer, name, array)`, when given, sees the activations
    that `reference_calibrate.py` aggregates: "attn_in", "o_in", "mlp_in", "down_in",
    "residual" (a (before, after) pair) per layer, then "final_norm" at layer num_hidden_layers.
    `linear(x, weight_name)`, when given, applies a decoder linear (default `x @ W.T`)."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    w = load_weights(model_dir) if weights is None else weights
    tap = tap or (lambda *_: None)
    lin = linear or (lambda x, name: x @ w[name].T)
    hidden = cfg["hidden_size"]
    n_heads = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads") or n_heads
    head_dim = cfg.get("head_dim") or hidden // n_heads
    eps = cfg.get("rms_norm_eps", 1e-6)
    seq = len(tokens)

    inv = rope_inv_freq(cfg, head_dim)
    freqs = np.outer(np.arange(seq, dtype=np.float64), inv)
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb), np.sin(emb)

    x = w["model.embed_tokens.weight"][tokens]
    mask = np.triu(np.full((seq, seq), -np.inf), k=1)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        x_in = x
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        tap(layer, "attn_in", h)

        def proj(name):
            y = lin(h, p + f"self_attn.{name}.weight")
            bias = w.get(p + f"self_attn.{name}.bias")
            return y if bias is None else y + bias

        q = proj("q_proj").reshape(seq, n_heads, head_dim).transpose(1, 0, 2)
        k = proj("k_proj").reshape(seq, n_kv, head_dim).transpose(1, 0, 2)
        v = proj("v_proj").reshape(seq, n_kv, head_dim).transpose(1, 0, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        tap(layer, "kv_cache", (k, v))
        rep = n_heads // n_kv
        k = np.repeat(k, rep, axis=0)
        v = np.repeat(v, rep, axis=0)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim) + mask
        scores = scores - scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        attn = (probs @ v).transpose(1, 0, 2).reshape(seq, n_heads * head_dim)
        tap(layer, "o_in", attn)
        x = x + lin(attn, p + "self_attn.o_proj.weight")

        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        tap(layer, "mlp_in", h)
        gate = lin(h, p + "mlp.gate_proj.weight")
        up = lin(h, p + "mlp.up_proj.weight")
        act = gate / (1 + np.exp(-gate)) * up
        tap(layer, "down_in", act)
        x = x + lin(act, p + "mlp.down_proj.weight")
        tap(layer, "residual", (x_in, x))

    x = rms_norm(x, w["model.norm.weight"], eps)
    tap(cfg["num_hidden_layers"], "final_norm", x)
    head = w.get("lm_head.weight")
    if head is None or cfg.get("tie_word_embeddings", False):
        head = w["model.embed_tokens.weight"]
    return x @ head.T


def compare(ref, other):
    """Prints the JSON comparison of logits file `other` with the reference logits `ref`."""
    got = np.fromfile(other, dtype="<f4").astype(np.float64)
    if got.size != ref.size:
        raise SystemExit(f"{other}: {got.size} values, reference has {ref.shape}")
    got = got.reshape(ref.shape)
    diff = got - ref
    print(
        json.dumps(
            {
                "rel_err": float(np.linalg.norm(diff) / np.linalg.norm(ref)),
                "max_abs_err": float(np.abs(diff).max()),
                "ref_norm": float(np.linalg.norm(ref)),
                "shape": list(ref.shape),
            }
        )
    )


def main():
    model_dir, tokens, other = sys.argv[1], sys.argv[2], sys.argv[3]
    compare(forward(model_dir, [int(t) for t in tokens.split(",")]), other)


if __name__ == "__main__":
    main()
