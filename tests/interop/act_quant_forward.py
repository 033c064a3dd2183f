#!/usr/bin/env python3
"""Independent float64 evaluation of an FP8 / INT8 (SmoothQuant) checkpoint in modelopt's
unified Hugging Face layout *as deployed*: each quantized linear's input is quantized with its
static `input_scale` before the product (what `ckpt-opt eval --act-quant` simulates).

Usage: act_quant_forward.py MODEL_DIR TEXT WINDOWS [--no-act-quant]
Prints {"nll": mean NLL, "windows": n} with `ckpt-opt eval`'s protocol: TEXT tokenized as one
stream with MODEL_DIR/tokenizer.json (no special tokens), the first WINDOWS non-overlapping
windows of 128 tokens, each run on its own, every token after the first scored.

Written from the layout (modelopt `export/quant_utils.py`: `weight` codes, `weight_scale`,
`input_scale`, `pre_quant_scale`) and the run-time arithmetic, not from our code: a linear with
codes C, weight scale(s), pre-quant scale p (ones when absent) and input scale s computes
    y = Q(x * p) @ dequant(C).T
    FP8:  dequant = e4m3(C) * weight_scale;  Q(v) = e4m3_round(v / s) * s, RNE, saturating at 448
    INT8: dequant = C * weight_scale[row];   Q(v) = clip(round_half_even(v / s), -128, 127) * s
With --no-act-quant, Q is the identity (what `eval` computes by default).

Compare NLL, not logits: a value on a rounding boundary rounds one way in float32 and the other
in float64, and each such flip perturbs every later quantization; perturbing the embeddings by
1e-7 (float32 rounding) moves this script's own NLL by up to 3e-4 on the trained fixture.
"""
import json
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from reference_forward import E4M3_VALUES, forward, load_weights

E4M3_GRID = np.unique(np.abs(E4M3_VALUES[~np.isnan(E4M3_VALUES)]))
CTX = 128


def e4m3_round(v):
    """Nearest E4M3 value of every element (ties to the even code), saturating at ±448."""
    a = np.minimum(np.abs(v), 448.0)
    hi = np.clip(np.searchsorted(E4M3_GRID, a), 1, len(E4M3_GRID) - 1)
    lo_v, hi_v = E4M3_GRID[hi - 1], E4M3_GRID[hi]
    # Grid index = code for the non-negative codes 0..126, so even index = even code.
    pick_hi = (a - lo_v > hi_v - a) | ((a - lo_v == hi_v - a) & (hi % 2 == 0))
    return np.sign(v) * np.where(pick_hi, hi_v, lo_v)


def quantized_linears(w):
    """Replaces each quantized weight in `w` by its dequantized value; returns, by weight name,
    (kind, input scale or None, pre-quant scale or None)."""
    act = {}
    for name in [n for n in w if n.endswith(".weight_scale")]:
        m = name[: -len(".weight_scale")]
        # load_weights gives code values as float64: FP8 decoded, INT8 as integers.
        codes, scale = w[m + ".weight"], w[name]
        if scale.ndim == 1 and scale.size == codes.shape[0]:  # INT8, per output channel
            w[m + ".weight"] = codes * scale.reshape(-1, 1)
            kind = "int8"
        elif scale.size == 1:  # FP8, per tensor
            w[m + ".weight"] = codes * float(scale.reshape(-1)[0])
            kind = "fp8"
        else:
            raise SystemExit(f"{m}: INT4 is weight-only; this check covers FP8 and INT8")
        s = w.get(m + ".input_scale")
        act[m + ".weight"] = (kind, None if s is None else float(s.reshape(-1)[0]), w.get(m + ".pre_quant_scale"))
    return act


def main():
    model_dir, text, windows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    act_quant = "--no-act-quant" not in sys.argv[4:]
    w = load_weights(model_dir)
    act = quantized_linears(w)

    def linear(x, name):
        kind, s, pqs = act.get(name, (None, None, None))
        if pqs is not None:
            x = x * pqs
        if act_quant and s is not None:
            if kind == "fp8":
                x = e4m3_round(x / s) * s
            else:
                x = np.clip(np.round(x / s), -128, 127) * s
        return x @ w[name].T

    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    ids = tok.encode(Path(text).read_text(encoding="utf-8"), add_special_tokens=False).ids
    wins = [ids[i : i + CTX] for i in range(0, len(ids) - CTX + 1, CTX)][:windows]
    total, n = 0.0, 0
    for win in wins:
        logits = forward(model_dir, win, weights=w, linear=linear)[:-1]
        m = logits.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
        total += float((lse - logits[np.arange(len(win) - 1), win[1:]]).sum())
        n += len(win) - 1
    print(json.dumps({"nll": total / n, "windows": len(wins)}))


if __name__ == "__main__":
    main()
