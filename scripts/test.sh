#!/usr/bin/env bash
# The whole test suite, as the README and CI run it: the interop Python environment (the
# `gguf` and `safetensors` packages from PyPI), fixture determinism, then every cargo test
# (unit, property, end-to-end through the binary, interop with the Python readers).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/python-env.sh
bash fixtures/check.sh
cargo test --workspace --release
