#!/usr/bin/env bash
# End-to-end `convert --format gguf --quant q4_k_m` from a >= 1 GB bf16 HF bench model, in one
# pass, with and without the ckpt-opt.json manifest (blake3 of inputs and outputs), and
# `verify` of the result; wall time and peak RSS from /usr/bin/time -v.
# Bar (issue 8): under half of llama.cpp's two steps (14.3 s + 39.4 s), peak <= 512 MiB.
# Usage: bash benches/export_gguf.sh   (BENCH_LAYERS=12, BENCH_THREADS=0, BENCH_DIR=bench-data)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${CARGO_TARGET_DIR:-target}/release/ckpt-opt"
PY="${CKPT_OPT_PYTHON:-.venv/bin/python}"
LAYERS="${BENCH_LAYERS:-12}"
THREADS="${BENCH_THREADS:-0}"
DIR="${BENCH_DIR:-bench-data}"
MODEL="$DIR/llama-${LAYERS}l"
OUT="$DIR/export-gguf"
[ -x "$BIN" ] || cargo build --release
[ -d "$MODEL" ] || "$PY" benches/make_bench_model.py "$MODEL" --layers "$LAYERS"
rm -rf "$OUT" && mkdir -p "$OUT"
bytes=$(du -cb "$MODEL"/*.safetensors | tail -1 | cut -f1)

measure() { # label, command...
  local label="$1"; shift
  sync
  /usr/bin/time -v "$@" 2> "$OUT/time.txt" > /dev/null || { cat "$OUT/time.txt"; exit 1; }
  local wall rss user sys
  wall=$(grep "Elapsed (wall clock)" "$OUT/time.txt" | awk '{print $NF}' |
    awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
  rss=$(grep "Maximum resident set size" "$OUT/time.txt" | awk '{print $NF}')
  user=$(grep "User time" "$OUT/time.txt" | awk '{print $NF}')
  sys=$(grep "System time" "$OUT/time.txt" | awk '{print $NF}')
  printf '| %s | %.2f | %.1f | %d MiB |\n' "$label" "$wall" "$(echo "$user + $sys" | bc)" $((rss / 1024))
}

echo "model: $MODEL ($bytes bytes of bf16), threads: $THREADS"
echo "| job | wall s | CPU s | peak RSS |"
echo "|---|---|---|---|"
measure "cp + sync (baseline)" sh -c "cat $MODEL/*.safetensors > $OUT/copy.bin && sync"
rm -f "$OUT/copy.bin"
measure "convert --quant q4_k_m --no-manifest" \
  "$BIN" -q -j "$THREADS" --no-manifest convert "$MODEL" "$OUT/a.gguf" --format gguf --quant q4_k_m
measure "convert --quant q4_k_m (with manifest)" \
  "$BIN" -q -j "$THREADS" convert "$MODEL" "$OUT/b.gguf" --format gguf --quant q4_k_m --split-max-size 200M
measure "verify (split set + manifest checksums)" "$BIN" -q verify "$OUT/b-00001-of-00002.gguf"
ls -l "$OUT"
