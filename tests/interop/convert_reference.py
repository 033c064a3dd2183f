#!/usr/bin/env python3
"""Run llama.cpp's convert_hf_to_gguf.py, optionally teaching it extra BPE pre-tokenizer hashes.

Usage:
    convert_reference.py --llama-cpp VENDOR/llama.cpp [--chkhsh HASH=PRE ...] -- CONVERTER-ARGS...

llama.cpp identifies a BPE tokenizer's pre-tokenizer by the sha256 ("chkhsh") of
the token ids it gives for a fixed text, and refuses tokenizers whose hash it
does not know ("BPE pre-tokenizer was not recognized").  Tiny fixture
tokenizers trained by us can never have a known hash, so for them we tell the
converter which llama.cpp pre-tokenizer to record (e.g. a GPT-2 ByteLevel
regex -> "gpt-2").  This wrapper does exactly that and nothing else: it wraps
TextModel.get_vocab_base_pre so that, only when the original raises
NotImplementedError and the hash is in the --chkhsh map, the mapped name is
returned (and a line "chkhsh-override: HASH -> PRE" is logged).  Everything
else is the unmodified vendored converter and its vendored gguf-py.
"""
from __future__ import annotations

import argparse
import logging
import os
import runpy
import sys
from hashlib import sha256


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-cpp", required=True, help="llama.cpp source tree (with convert_hf_to_gguf.py and gguf-py/)")
    ap.add_argument("--chkhsh", action="append", default=[], metavar="HASH=PRE")
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    mapping = dict(item.split("=", 1) for item in args.chkhsh)

    root = os.path.abspath(args.llama_cpp)
    sys.path.insert(0, root)
    sys.path.insert(1, os.path.join(root, "gguf-py"))
    import conversion.base as base  # noqa: E402

    orig = base.TextModel.get_vocab_base_pre
    chktxt = next(c for c in orig.__code__.co_consts if isinstance(c, str) and c.startswith("\n \n\n \n\n\n"))

    def get_vocab_base_pre(self, tokenizer):
        try:
            return orig(self, tokenizer)
        except NotImplementedError:
            chkhsh = sha256(str(tokenizer.encode(chktxt)).encode()).hexdigest()
            if chkhsh in mapping:
                logging.getLogger("hf-to-gguf").warning(f"chkhsh-override: {chkhsh} -> {mapping[chkhsh]}")
                return mapping[chkhsh]
            raise

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre
    script = os.path.join(root, "convert_hf_to_gguf.py")
    sys.argv = [script] + rest
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
