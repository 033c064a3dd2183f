#!/usr/bin/env python3
"""Checks a Hugging Face folder we wrote with the official `safetensors` package.

    check_hf_output.py OURS_DIR ORIGINAL_DIR

Every shard is parsed by `safetensors.deserialize` (the package's own reader); the index, when
present, must list exactly the tensors of the shards with their file; and every tensor must
equal the original's (dtype, shape, bytes). Exit 1 with the differences otherwise.
"""
import json
import os
import sys

import safetensors


def load(folder):
    tensors, where = {}, {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            with open(os.path.join(folder, name), "rb") as f:
                for tname, t in safetensors.deserialize(f.read()):
                    tensors[tname] = (t["dtype"], list(t["shape"]), bytes(t["data"]))
                    where[tname] = name
    return tensors, where


def main():
    ours_dir, orig_dir = sys.argv[1], sys.argv[2]
    ours, where = load(ours_dir)
    orig, _ = load(orig_dir)
    problems = []
    index_path = os.path.join(ours_dir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        index = json.load(open(index_path))
        if index["weight_map"] != where:
            problems.append("index weight_map does not match the shards")
        total = sum(len(t[2]) for t in ours.values())
        if index["metadata"]["total_size"] != total:
            problems.append(f"index total_size {index['metadata']['total_size']} != {total}")
    if sorted(ours) != sorted(orig):
        problems.append(f"tensor names differ: only ours {sorted(set(ours) - set(orig))}, only original {sorted(set(orig) - set(ours))}")
    for name in sorted(set(ours) & set(orig)):
        if ours[name][:2] != orig[name][:2]:
            problems.append(f"{name}: dtype/shape {ours[name][:2]} != {orig[name][:2]}")
        elif ours[name][2] != orig[name][2]:
            problems.append(f"{name}: bytes differ")
    for p in problems:
        print(p)
    print(json.dumps({"tensors": len(ours), "problems": len(problems)}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
