#!/usr/bin/env bash
# Idempotent set-up of the llama.cpp reference environment used by tests/interop/.
#
#   scripts/llama-ref-env.sh            # everything (venv, sdist, torch, llama-cpp-python, tools)
#   SKIP_TOOLS=1 scripts/llama-ref-env.sh   # without llama-quantize / llama-gguf-split
#
# Result (LLAMA_REF_ROOT, default /work/llama-ref; nothing inside the repo):
#   venv/                          python venv: torch, transformers, sentencepiece, the vendored gguf-py,
#                                  llama-cpp-python (CPU build)
#   src/llama_cpp_python-$VER/     extracted sdist; vendor/llama.cpp holds convert_hf_to_gguf.py + gguf-py
#   build-py/                      persistent CMake build tree of llama-cpp-python (reused for the tools)
#   bin/llama-quantize, bin/llama-gguf-split
#
# Only PyPI is needed.  torch comes from PyPI (CUDA wheels, ~4.3 GB installed: download.pytorch.org's
# CPU wheels are not reachable here); the converter only uses it on the CPU.
# Heavy steps run under `nice -n 19` with 2 build jobs.
set -euo pipefail
ROOT="${LLAMA_REF_ROOT:-/work/llama-ref}"
VER="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.15.0}"        # converter's requirements pin 2.11.0 (CPU index); 2.15.0 is what PyPI gave us
TRANSFORMERS_SPEC="${TRANSFORMERS_SPEC:-transformers==4.57.6}"  # as pinned by vendor/llama.cpp/requirements
JOBS="${JOBS:-2}"
PYTHON="${PYTHON:-python3}"
NICE=(nice -n 19)
SRC="$ROOT/src/llama_cpp_python-$VER"
LCPP="$SRC/vendor/llama.cpp"
PIP=("$ROOT/venv/bin/pip")
log() { echo "[llama-ref-env $(date +%H:%M:%S)] $*"; }

mkdir -p "$ROOT"/{dl,src,out,bin}

if [ ! -x "$ROOT/venv/bin/python" ]; then
  log "creating venv"; "$PYTHON" -m venv "$ROOT/venv"
  "${PIP[@]}" install -q --upgrade pip
fi

if ! "$ROOT/venv/bin/python" -c "import scikit_build_core, cmake, ninja" 2>/dev/null; then
  log "installing build requirements"
  "${NICE[@]}" "${PIP[@]}" install -q scikit-build-core cmake ninja numpy typing-extensions diskcache jinja2
fi

if [ ! -f "$ROOT/dl/llama_cpp_python-$VER.tar.gz" ]; then
  log "downloading llama-cpp-python $VER sdist"
  (cd "$ROOT/dl" && "${PIP[@]}" download --no-deps --no-binary :all: --no-build-isolation "llama-cpp-python==$VER")
fi
if [ ! -f "$LCPP/convert_hf_to_gguf.py" ]; then
  log "extracting sdist"; tar xzf "$ROOT/dl/llama_cpp_python-$VER.tar.gz" -C "$ROOT/src"
fi

if ! "$ROOT/venv/bin/python" -c "import torch, transformers, sentencepiece, gguf, safetensors, tokenizers" 2>/dev/null; then
  log "installing converter dependencies ($TORCH_SPEC, $TRANSFORMERS_SPEC, vendored gguf-py)"
  "${NICE[@]}" "${PIP[@]}" install -q "$TORCH_SPEC"
  "${NICE[@]}" "${PIP[@]}" install -q "$TRANSFORMERS_SPEC" "sentencepiece>=0.1.98,<0.3.0" "protobuf>=4.21.0,<5.0.0" \
      safetensors tokenizers "$LCPP/gguf-py"
fi

if ! "$ROOT/venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
  log "building llama-cpp-python $VER (CPU only) - this is the slow part"
  start=$(date +%s)
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAVA_BUILD=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" \
    "${NICE[@]}" "${PIP[@]}" install --no-build-isolation --no-deps -C build-dir="$ROOT/build-py" "$SRC"
  log "llama-cpp-python build+install took $(( $(date +%s) - start )) s"
fi

if [ -z "${SKIP_TOOLS:-}" ] && { [ ! -x "$ROOT/bin/llama-quantize" ] || [ ! -x "$ROOT/bin/llama-gguf-split" ]; }; then
  log "building llama-quantize and llama-gguf-split (reusing build-py; only tools are compiled)"
  start=$(date +%s)
  CMAKE="$ROOT/venv/bin/cmake"
  "${NICE[@]}" "$CMAKE" -S "$SRC" -B "$ROOT/build-py" -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=OFF >/dev/null
  "${NICE[@]}" "$CMAKE" --build "$ROOT/build-py" --target llama-quantize llama-gguf-split -j "$JOBS"
  for t in llama-quantize llama-gguf-split; do
    f=$(find "$ROOT/build-py" -type f -name "$t" -perm -u+x | head -1)
    cp "$f" "$ROOT/bin/$t"   # RPATH points at $ROOT/build-py/bin (absolute), keep build-py
  done
  # back to the pip configuration so a later pip rebuild in build-py does not compile every tool
  "${NICE[@]}" "$CMAKE" -S "$SRC" -B "$ROOT/build-py" -DLLAMA_BUILD_TOOLS=OFF >/dev/null
  log "tools took $(( $(date +%s) - start )) s"
fi

log "done.  converter: $LCPP/convert_hf_to_gguf.py ; python: $ROOT/venv/bin/python"
