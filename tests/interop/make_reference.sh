#!/usr/bin/env bash
# Convert every fixture with llama.cpp's own converter (vendored in the
# llama-cpp-python sdist) and write golden digests into tests/interop/reference/.
#   tests/interop/make_reference.sh [FIXTURES_DIR] [OUT_DIR]
# Needs the environment from scripts/llama-ref-env.sh.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REF_ROOT="${LLAMA_REF_ROOT:-/work/llama-ref}"
PY="$REF_ROOT/venv/bin/python"
LLAMA_CPP="${LLAMA_CPP_DIR:-$REF_ROOT/src/llama_cpp_python-0.3.36/vendor/llama.cpp}"
FIX="${1:-/work/wt/fixtures/fixtures}"
OUT="${2:-$REF_ROOT/out}"
FIXTURES="${FIXTURES:-llama-gqa qwen2-bias mistral-spm llama-tied}"
OUTTYPES="${OUTTYPES:-f32 f16 bf16 q8_0}"
# chkhsh of the fixtures' GPT-2-style byte-level BPE tokenizer (tokenizer-bpe),
# unknown to llama.cpp; its pre-tokenizer is the GPT-2 regex -> "gpt-2".
CHKHSH_MAP=(--chkhsh b7d2958ade1529fc076a792fe658d676743e82073501e1d2d5fb61998ea84ad0=gpt-2)
mkdir -p "$OUT" "$HERE/reference"
status=0
for fx in $FIXTURES; do
  for ot in $OUTTYPES; do
    gg="$OUT/$fx.$ot.gguf"; log="$OUT/$fx.$ot.log"
    if nice -n 19 "$PY" "$HERE/convert_reference.py" --llama-cpp "$LLAMA_CPP" "${CHKHSH_MAP[@]}" -- \
         "$FIX/$fx" --outtype "$ot" --outfile "$gg" >"$log" 2>&1; then
      PYTHONPATH="$LLAMA_CPP/gguf-py" nice -n 19 "$PY" "$HERE/gguf_digest.py" "$gg" --out "$HERE/reference/$fx.$ot.json"
      echo "ok      $fx $ot -> $gg"
    else
      echo "FAILED  $fx $ot (see $log)"; tail -3 "$log"; status=1
    fi
  done
done
exit $status
