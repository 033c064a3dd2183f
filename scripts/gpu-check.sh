#!/usr/bin/env bash
# Runs the vendored CUDA twin tests (with CKPT_OPT_REQUIRE_CUDA=1, so a missing GPU fails) and
# the CUDA bench in quick mode on a GPU machine; see scripts/vendor-for-gpu.sh. Results are
# printed and, when $OUT is set, written there (tests.txt, bench.txt, device.txt).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/out}
mkdir -p "$out"

# cudarc looks for libnvrtc.so, .so.12, .so.11 ...; CUDA 13 ships libnvrtc.so.13 only, so link
# the newest NVRTC found under the usual name.
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so '; then
    lib=$( (ldconfig -p 2>/dev/null | awk '/libnvrtc\.so\.[0-9]+ /{print $NF}';
            ls /usr/local/cuda*/lib64/libnvrtc.so.* /usr/local/cuda*/targets/*/lib/libnvrtc.so.* \
               /usr/lib/x86_64-linux-gnu/libnvrtc.so.* 2>/dev/null) | grep -v builtins | sort -V | tail -1)
    if [ -z "$lib" ]; then # e.g. a pip-installed nvidia-cuda-nvrtc
        lib=$(find / -xdev \( -path /proc -o -path /sys \) -prune -o -name 'libnvrtc.so.*' -print \
              2>/dev/null | grep -v builtins | sort -V | tail -1)
    fi
    if [ -n "$lib" ]; then
        mkdir -p "$here/lib"
        ln -sf "$lib" "$here/lib/libnvrtc.so"
        export LD_LIBRARY_PATH="$here/lib:$(dirname "$(readlink -f "$lib")"):${LD_LIBRARY_PATH:-}"
        echo "libnvrtc: linked $lib"
    else
        echo "libnvrtc: not found"
    fi
fi

{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1; } \
    | tee "$out/device.txt"

status=0
export CKPT_OPT_REQUIRE_CUDA=1
: >"$out/tests.txt"
for t in "$here"/bin/test-*; do
    echo "== $(basename "$t")" | tee -a "$out/tests.txt"
    # The library's own unit tests: only the CUDA ones (NVRTC compile check).
    filter=(); [ "$(basename "$t")" = test-kernels ] && filter=(cuda::)
    "$t" "${filter[@]}" --test-threads=1 --nocapture 2>&1 | tee -a "$out/tests.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
done
for b in "$here"/bin/bench-*; do
    [ -x "$b" ] || continue
    echo "== $(basename "$b")" | tee -a "$out/bench.txt"
    (cd "$(mktemp -d)" && "$b" --bench --noplot --warm-up-time 1 --measurement-time 2) 2>&1 \
        | tee -a "$out/bench.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
done
# End to end through the binary: `--device cuda` gives the CPU's bytes (GGUF types; FP8, INT8
# and INT4 for the hf and trtllm layouts).
for e in "$here"/e2e-*; do
    [ -x "$e" ] || continue
    echo "== $(basename "$e") (convert --device cuda = cpu, byte for byte)" | tee -a "$out/tests.txt"
    (cd "$here/.." && CKPT_OPT_ROOT=$PWD CKPT_OPT_BIN="$here/ckpt-opt" \
        "$e" device_choice --nocapture) 2>&1 | tee -a "$out/tests.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
done
echo "gpu-check: $([ $status = 0 ] && echo PASS || echo FAIL)" | tee -a "$out/tests.txt"
exit $status
