#!/usr/bin/env python3
"""Perplexity of a model in other runtimes, with `ckpt-opt eval`'s protocol, to show that what
ckpt-opt writes loads and runs there and computes what our forward pass computes.

Usage:
    runtime_perplexity.py --hf HF_DIR [--gguf MODEL.gguf] [--text FILE] [--ctx 128] [--windows N]

Protocol (src/eval.rs): the text is tokenized as one stream with HF_DIR/tokenizer.json (no
special tokens), cut into non-overlapping windows of --ctx tokens (a last partial window is
dropped), each window run on its own, every token after the first scored against the logits at
the position before it; perplexity = exp(mean NLL).

* transformers: AutoModelForCausalLM.from_pretrained(HF_DIR, dtype=--dtype, default float32) on
  --device (default cpu; `cuda` for layouts whose kernels need a GPU, e.g. FineGrainedFP8);
* llama.cpp (llama-cpp-python): Llama(MODEL.gguf, logits_all=True), fed the same token ids.

Prints one JSON object {"transformers": ppl, "llama_cpp": ppl, "tokens": n, "windows": w}.
Needs the reference environment of scripts/llama-ref-env.sh (torch, transformers,
llama-cpp-python); not part of CI.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np


def windows_of(hf_dir: str, text_path: str, ctx: int, limit: int | None) -> list[list[int]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(hf_dir, "tokenizer.json"))
    with open(text_path, encoding="utf-8") as f:
        ids = tok.encode(f.read(), add_special_tokens=False).ids
    wins = [ids[i:i + ctx] for i in range(0, len(ids) - ctx + 1, ctx)]
    return wins[:limit] if limit else wins


def nll_of_logits(logits: np.ndarray, window: list[int]) -> tuple[float, int]:
    x = logits[:-1].astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(x - m).sum(axis=1)))
    target = np.array(window[1:])
    return float((lse - x[np.arange(len(target)), target]).sum()), len(target)


def transformers_ppl(hf_dir: str, wins: list[list[int]], device: str = "cpu", dtype: str = "float32") -> float:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=getattr(torch, dtype)).to(device)
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for w in wins:
            logits = model(torch.tensor([w], device=device)).logits[0].float().cpu().numpy()
            s, k = nll_of_logits(logits, w)
            total, n = total + s, n + k
    return math.exp(total / n)


def llama_cpp_ppl(gguf: str, wins: list[list[int]], ctx: int) -> float:
    from llama_cpp import Llama

    llm = Llama(model_path=gguf, n_ctx=ctx, logits_all=True, verbose=False, n_threads=2)
    total, n = 0.0, 0
    for w in wins:
        llm.reset()
        llm.eval(w)
        logits = np.array(llm.scores[: len(w)], dtype=np.float32)
        s, k = nll_of_logits(logits, w)
        total, n = total + s, n + k
    return math.exp(total / n)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hf", required=True, help="HF folder (tokenizer.json; model for transformers)")
    ap.add_argument("--gguf", help="GGUF file for llama.cpp")
    ap.add_argument("--no-transformers", action="store_true", help="skip the transformers run")
    ap.add_argument("--text", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fixtures", "heldout.txt"))
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--windows", type=int)
    ap.add_argument("--device", default="cpu", help="torch device of the transformers run (cuda: quantized layouts that need a GPU, e.g. FineGrainedFP8)")
    ap.add_argument("--dtype", default="float32", help="torch dtype of the transformers run")
    args = ap.parse_args()
    wins = windows_of(args.hf, args.text, args.ctx, args.windows)
    out = {"windows": len(wins), "tokens": len(wins) * args.ctx}
    if not args.no_transformers:
        out["transformers"] = transformers_ppl(args.hf, wins, args.device, args.dtype)
    if args.gguf:
        out["llama_cpp"] = llama_cpp_ppl(args.gguf, wins, args.ctx)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
