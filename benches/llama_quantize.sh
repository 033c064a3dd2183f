#!/usr/bin/env bash
# ckpt-opt against llama.cpp's own `llama-quantize`, same input, same threads, in one run:
#   input     = the bench model (benches/make_bench_model.py, BENCH_LAYERS default 12: ~1.1 GB
#               bf16) converted once to a GGUF f16 file (what llama-quantize takes)
#   baseline  = `cp` of that file + `sync` (plain copying of the same bytes)
#   for each type (BENCH_QUANTS, default "q8_0 q4_0 q4_k_m"):
#     llama     = llama-quantize IN OUT TYPE THREADS
#     ckpt-opt  = ckpt-opt quantize IN OUT --quant TYPE -j THREADS
#   then the two outputs are compared tensor by tensor (tests/interop/compare_gguf.py: names,
#   types, bytes; tensor order and general.* metadata ignored).
# Each job is timed with /usr/bin/time -v (wall seconds, peak RSS). llama-quantize comes from
# the reference environment (scripts/llama-ref-env.sh) or LLAMA_QUANTIZE=/path; without it the
# script says so and exits 0. Results in bench-data/llama_quantize.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
data="$root/bench-data"
threads=${BENCH_THREADS:-2}
layers=${BENCH_LAYERS:-12}
lq=${LLAMA_QUANTIZE:-${LLAMA_REF_ROOT:-/work/llama-ref}/bin/llama-quantize}
if [ ! -x "$lq" ]; then
  echo "llama-quantize not found (set LLAMA_QUANTIZE or run scripts/llama-ref-env.sh); skipped"
  exit 0
fi
mkdir -p "$data"
bash scripts/python-env.sh
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-$root/target}/release/ckpt-opt"
model="$data/llama-${layers}l"
[ -f "$model/config.json" ] || .venv/bin/python benches/make_bench_model.py "$model" --layers "$layers"
input="$data/llama-${layers}l-f16.gguf"
[ -f "$input" ] || "$bin" --quiet --no-manifest convert "$model" "$input" --format gguf --dtype f16
bytes=$(stat -c %s "$input")
cat "$input" >/dev/null

measure() { # label -- command...
  local label=$1; shift 2
  local log="$data/time.log"
  /usr/bin/time -v "$@" >/dev/null 2>"$log"
  awk -F': ' -v l="$label" '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]}
    /Maximum resident set size/ {r=$2/1024} END {printf "%s %s %.0f\n", l, s, r}' "$log"
}

results="$data/llama_quantize.md"
{
  echo "input: $(awk -v b="$bytes" 'BEGIN{printf "%.2f GB", b/1e9}') GGUF f16, $threads threads, load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| job | seconds | MB/s of input | vs copy | peak RSS MiB | same bytes as llama-quantize |"
  echo "|---|---|---|---|---|---|"
} >"$results"
row() { # job secs rss base same
  awk -v j="$1" -v s="$2" -v r="$3" -v b="$bytes" -v base="$4" -v same="$5" \
    'BEGIN{printf "| %s | %.2f | %.0f | %.2fx | %s | %s |\n", j, s, b/1e6/s, base/s, r, same}' >>"$results"
}
rm -f "$data/copy.gguf"
read -r _ base_s base_rss < <(measure copy -- bash -c "cp '$input' '$data/copy.gguf' && sync '$data/copy.gguf'")
rm -f "$data/copy.gguf"
row "cp + sync" "$base_s" "$base_rss" "$base_s" "-"
for quant in ${BENCH_QUANTS:-q8_0 q4_0 q4_k_m}; do
  upper=$(echo "$quant" | tr '[:lower:]' '[:upper:]')
  rm -f "$data/lq-$quant.gguf" "$data/ck-$quant.gguf"
  read -r _ l_s l_rss < <(measure llama -- "$lq" "$input" "$data/lq-$quant.gguf" "$upper" "$threads")
  read -r _ c_s c_rss < <(measure ckpt -- "$bin" --quiet --no-manifest -j "$threads" quantize "$input" "$data/ck-$quant.gguf" --quant "$quant")
  if .venv/bin/python tests/interop/compare_gguf.py "$data/ck-$quant.gguf" "$data/lq-$quant.gguf" \
      --ignore 'general.*' --ignore-tensor-order >"$data/compare-$quant.log" 2>&1; then same=yes; else same="NO (see compare-$quant.log)"; fi
  row "llama-quantize $quant" "$l_s" "$l_rss" "$base_s" "-"
  row "ckpt-opt quantize $quant" "$c_s" "$c_rss" "$base_s" "$same"
  rm -f "$data/lq-$quant.gguf" "$data/ck-$quant.gguf"
done
cat "$results"
