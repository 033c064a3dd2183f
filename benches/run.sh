#!/usr/bin/env bash
# Whole-job benchmarks against a named baseline, in one run:
#   baseline  = `cp` of the model's shard files + `sync` of the copies (plain copying of the same
#               bytes, made durable as ckpt-opt makes its outputs durable with fsync)
#   reshard   = ckpt-opt convert MODEL OUT --format hf --max-shard-size 2GB   (same dtype)
#   gguf-f16  = ckpt-opt convert MODEL OUT.gguf --format gguf --dtype f16     (bf16 -> f16 cast)
#   gguf-q8_0, gguf-q4_0, gguf-q4_k_m = ckpt-opt convert MODEL OUT.gguf --format gguf --quant Q
#               (bf16 -> GGML blocks; llama-quantize's job, timed on the bf16 input bytes)
# for two model sizes (BENCH_LAYERS, default "12 24": about 1.1 GB and 2.2 GB of bf16), so peak
# memory can be seen not to grow with the model. Inputs are read once first, so every job
# starts from a warm page cache. Threads: BENCH_THREADS (default 2). Jobs run with --no-manifest
# (the ckpt-opt.json blake3 pass, about 0.4 s per GB, is a separate cost).
# Usage: benches/run.sh            results in bench-data/results.md
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
data="$root/bench-data"
threads=${BENCH_THREADS:-2}
layers_list=${BENCH_LAYERS:-"12 24"}
mkdir -p "$data"
bash scripts/python-env.sh
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-$root/target}/release/ckpt-opt"
results="$data/results.md"
echo "| model | job | seconds | GB/s | vs baseline | peak RSS MiB | CPU s (user+sys) |" >"$results"
echo "|---|---|---|---|---|---|---|" >>"$results"

measure() { # label bytes -- command...
  local label=$1 bytes=$2; shift 3
  local log="$data/time.log"
  /usr/bin/time -v "$@" >/dev/null 2>"$log"
  local secs rss cpu
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$log")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$log")
  # CPU time: on a machine shared with other jobs, wall time overstates a CPU-bound job's cost.
  cpu=$(awk -F': ' '/User time|System time/ {c+=$2} END {printf "%.2f", c}' "$log")
  echo "$label $secs $rss $bytes $cpu"
}

for layers in $layers_list; do
  model="$data/llama-${layers}l"
  [ -f "$model/config.json" ] || .venv/bin/python benches/make_bench_model.py "$model" --layers "$layers"
  bytes=$(cat "$model"/*.safetensors | wc -c)
  gb=$(awk -v b="$bytes" 'BEGIN{printf "%.2f", b/1e9}')
  rm -rf "$data/out-copy" "$data/out-hf" "$data"/out*.gguf
  mkdir -p "$data/out-copy"
  read -r _ base_s base_rss _ base_cpu < <(measure copy "$bytes" -- bash -c "cp '$model'/*.safetensors '$data/out-copy/' && sync '$data'/out-copy/*")
  read -r _ hf_s hf_rss _ hf_cpu < <(measure reshard "$bytes" -- "$bin" --quiet --no-manifest -j "$threads" convert "$model" "$data/out-hf" --format hf --max-shard-size 2GB)
  read -r _ gg_s gg_rss _ gg_cpu < <(measure gguf "$bytes" -- "$bin" --quiet --no-manifest -j "$threads" convert "$model" "$data/out.gguf" --format gguf --dtype f16)
  rows=("baseline(cp+sync) $base_s $base_rss $base_cpu" "reshard $hf_s $hf_rss $hf_cpu" "gguf-f16 $gg_s $gg_rss $gg_cpu")
  for quant in ${BENCH_QUANTS:-q8_0 q4_0 q4_k_m}; do
    rm -f "$data/out-$quant.gguf"
    read -r _ q_s q_rss _ q_cpu < <(measure "$quant" "$bytes" -- "$bin" --quiet --no-manifest -j "$threads" convert "$model" "$data/out-$quant.gguf" --format gguf --quant "$quant")
    rows+=("gguf-$quant $q_s $q_rss $q_cpu")
    rm -f "$data/out-$quant.gguf"
  done
  for row in "${rows[@]}"; do
    read -r job s rss cpu <<<"$row"
    awk -v m="${gb} GB" -v j="$job" -v s="$s" -v b="$bytes" -v base="$base_s" -v r="$rss" -v c="$cpu" \
      'BEGIN{printf "| %s | %s | %.2f | %.2f | %.2fx | %s | %s |\n", m, j, s, b/1e9/s, base/s, r, c}' >>"$results"
  done
  rm -rf "$data/out-copy" "$data/out-hf" "$data"/out*.gguf
done
cat "$results"
