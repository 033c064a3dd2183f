#!/usr/bin/env python3
"""Smoke-test that llama.cpp (through llama-cpp-python) loads and runs a GGUF.

Usage:
    llama_cpp_smoke.py MODEL.gguf HF_TOKENIZER_DIR [--text FILE] [--chars 400]

* loads MODEL.gguf with llama_cpp.Llama(model_path, n_ctx=128, logits_all=True, verbose=False)
* tokenizes the first --chars characters of --text (default
  fixtures/heldout.txt) with llama.cpp (no BOS, no special-token
  parsing) and with the Python `tokenizers` package from HF_TOKENIZER_DIR/tokenizer.json
  (add_special_tokens=False); the id lists must be identical
* evaluates the ids and checks that the logits are finite and have
  n_vocab columns (n_vocab == config.json vocab_size when the HF dir has one)
* prints a JSON summary; exit status 1 on any failure.
--allow-token-mismatch keeps a token-id mismatch from failing the run (it is
still reported); use it only for known converter limitations (see
tests/interop/reference/README.md).
If the text needs more than 128 tokens the model is re-loaded with a context
just large enough (reported as n_ctx).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("hf_dir")
    ap.add_argument("--text", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fixtures", "heldout.txt"))
    ap.add_argument("--chars", type=int, default=400)
    ap.add_argument("--allow-token-mismatch", action="store_true",
                    help="report differing token ids but do not fail on them (still evaluates llama.cpp's ids)")
    args = ap.parse_args(argv)

    import llama_cpp
    from tokenizers import Tokenizer

    with open(args.text, encoding="utf-8") as f:
        text = f.read()[: args.chars]

    summary: dict = {"model": args.model, "hf_dir": args.hf_dir, "chars": len(text),
                     "llama_cpp_python": getattr(llama_cpp, "__version__", "?")}
    errors: list[str] = []

    n_ctx = 128
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=n_ctx, logits_all=True, verbose=False)
    ids_llama = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    tok = Tokenizer.from_file(os.path.join(args.hf_dir, "tokenizer.json"))
    ids_hf = tok.encode(text, add_special_tokens=False).ids

    ids_equal = list(ids_llama) == list(ids_hf)
    summary["n_tokens"] = len(ids_llama)
    summary["n_tokens_hf"] = len(ids_hf)
    summary["ids_equal"] = ids_equal
    if not ids_equal:
        first = next((i for i, (a, b) in enumerate(zip(ids_llama, ids_hf)) if a != b), min(len(ids_llama), len(ids_hf)))
        summary["first_mismatch"] = {
            "index": first,
            "llama": list(ids_llama[max(0, first - 3): first + 5]),
            "hf": list(ids_hf[max(0, first - 3): first + 5]),
            "llama_pieces": [llm.detokenize([i]).decode("utf-8", "replace") for i in ids_llama[max(0, first - 3): first + 5]],
            "hf_pieces": [tok.id_to_token(i) for i in ids_hf[max(0, first - 3): first + 5]],
        }
        if args.allow_token_mismatch:
            summary["warnings"] = ["llama.cpp and HF tokenizers disagree (allowed by --allow-token-mismatch)"]
        else:
            errors.append("llama.cpp and HF tokenizers disagree")

    if len(ids_llama) > n_ctx:
        n_ctx = (len(ids_llama) + 31) // 32 * 32
        del llm
        llm = llama_cpp.Llama(model_path=args.model, n_ctx=n_ctx, logits_all=True, verbose=False)
    summary["n_ctx"] = n_ctx

    n_vocab = llm.n_vocab()
    expected_vocab = None
    cfg_path = os.path.join(args.hf_dir, "config.json")
    if os.path.exists(cfg_path):
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
        expected_vocab = cfg.get("vocab_size") or cfg.get("text_config", {}).get("vocab_size")
    summary["n_vocab"] = n_vocab
    summary["expected_vocab"] = expected_vocab
    if expected_vocab is not None and n_vocab != expected_vocab:
        errors.append(f"n_vocab {n_vocab} != config vocab_size {expected_vocab}")

    if len(ids_llama) == 0:
        errors.append("no tokens")
    else:
        llm.reset()
        llm.eval(list(ids_llama))
        logits = np.array(llm.scores[: llm.n_tokens], dtype=np.float32)
        summary["logits_shape"] = list(logits.shape)
        if logits.shape != (len(ids_llama), n_vocab):
            errors.append(f"logits shape {logits.shape} != ({len(ids_llama)}, {n_vocab})")
        finite = bool(np.isfinite(logits).all())
        summary["logits_finite"] = finite
        if not finite:
            errors.append("non-finite logits")
        summary["last_logits_first5"] = [float(x) for x in logits[-1, :5]]
        summary["last_argmax"] = int(np.argmax(logits[-1]))
        summary["logits_abs_mean"] = float(np.abs(logits).mean())

    summary["errors"] = errors
    summary["ok"] = not errors
    print(json.dumps(summary))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
