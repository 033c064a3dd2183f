#!/usr/bin/env python3
"""Token ids from the Python `tokenizers` package, to compare with ours.

Usage: tokenize_ids.py TOKENIZER_JSON TEXT_FILE
Prints JSON {"plain": ids without special tokens, "special": ids with them}.
"""
import json
import sys

from tokenizers import Tokenizer

tok = Tokenizer.from_file(sys.argv[1])
text = open(sys.argv[2], encoding="utf-8").read()
print(
    json.dumps(
        {
            "plain": tok.encode(text, add_special_tokens=False).ids,
            "special": tok.encode(text, add_special_tokens=True).ids,
        }
    )
)
