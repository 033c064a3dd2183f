#!/usr/bin/env bash
# Builds the CUDA twin tests and bench here (no GPU or CUDA toolkit needed: cudarc loads libcuda
# and libnvrtc at run time) and copies them, stripped, with scripts/gpu-check.sh into DEST
# (default: .gpu/ in this checkout), for a GPU machine that has a driver and NVRTC but no cargo.
#
#   bash scripts/vendor-for-gpu.sh [DEST]
#   # then, on the GPU machine, from the folder that holds DEST:  bash DEST/gpu-check.sh
#
# Keep DEST untracked (for .gpu/: `echo /.gpu/ >> .git/info/exclude`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/.gpu}
cd "$root"
mkdir -p "$dest/bin"
rm -f "$dest"/bin/*

# Executable paths of the given cargo --no-run build, one per line, from its JSON messages.
executables() {
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["kind"][0], m["target"]["name"], m["executable"])
'
}

copy() { # kind name path
    local out="$dest/bin/$1-$2"
    cp "$3" "$out"
    objcopy --strip-debug "$out" 2>/dev/null || strip --strip-debug "$out"
    echo "vendored $out ($(du -h "$out" | cut -f1))"
}

cargo test --release -p kernels --features cuda --no-run --message-format=json 2>/dev/null \
    | executables | while read -r kind name path; do
        # The library's unit tests (NVRTC compile check) and the twin tests.
        if [ "$kind" = lib ] || [ "$name" = cuda_twins ]; then copy test "$name" "$path"; fi
    done
cargo bench -p kernels --features cuda --bench cuda_quant --no-run --message-format=json \
    2>/dev/null | executables | while read -r kind name path; do
        copy bench "$name" "$path"
    done
# End to end: `convert --device cuda` through the binary must give the CPU's bytes
# (tests/gguf_quant.rs device_choice_never_changes_the_bytes), with the binary built with CUDA.
rm -f "$dest/ckpt-opt" "$dest"/e2e-*
# Likewise for the FP8/INT8/INT4 schemes (tests/quantize.rs device_choice_never_changes_the_
# quantized_bytes).
cargo test --release --features cuda --test gguf_quant --test quantize --no-run \
    --message-format=json 2>/dev/null | executables | while read -r kind name path; do
        case "$kind $name" in
            "test gguf_quant" | "test quantize") cp "$path" "$dest/e2e-$name" ;;
            "bin ckpt-opt") cp "$path" "$dest/ckpt-opt" ;;
            *) continue ;;
        esac
    done
for f in "$dest/ckpt-opt" "$dest"/e2e-*; do
    objcopy --strip-debug "$f" 2>/dev/null || strip --strip-debug "$f"
    echo "vendored $f ($(du -h "$f" | cut -f1))"
done
cp scripts/gpu-check.sh "$dest/gpu-check.sh"
ls -la "$dest" "$dest/bin"
