#!/usr/bin/env bash
# Quantization benchmarks on the >= 1 GB bf16 bench model (TinyLlama geometry, BENCH_LAYERS
# layers, default 12: about 1.1 GB), BENCH_THREADS threads (default 2), warm page cache:
#   calibrate  = ckpt-opt calibrate (statistics used by fp8 below), timed on its own
#   fp8        = quantize --quant fp8 --calib-stats STATS       (one amax pass + streaming)
#   int8_wo    = quantize --quant int8_wo                        (no calibration)
#   int4_awq   = quantize --quant int4_awq --calib-data TEXT     (forward pass + AWQ search + streaming)
#   int4_awq_clip = the same with --awq-clip                    (+ the clip search)
# Each job's baseline is `cp -r` of the folder it wrote + `sync` (the same bytes, copied and made
# durable). Throughput is input bytes per second. Calibration and quantization times come from
# the job's JSON report; peak RSS from /usr/bin/time -v.
# CPU seconds are reported beside wall seconds because the machine's 2 cores are shared.
# Usage: benches/quantize.sh        results in bench-data/quantize.md (BENCH_JOBS to pick jobs)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
data="$root/bench-data"
threads=${BENCH_THREADS:-2}
layers=${BENCH_LAYERS:-12}
text=${CALIB_TEXT:-$root/../shared/data/calib-text.txt}
[ -f "$text" ] || text="$root/fixtures/heldout.txt"
samples=${AWQ_SAMPLES:-8}
mkdir -p "$data"
bash scripts/python-env.sh
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/ckpt-opt"
model="$data/llama-${layers}l"
[ -f "$model/config.json" ] || .venv/bin/python benches/make_bench_model.py "$model" --layers "$layers"
bytes=$(cat "$model"/*.safetensors | wc -c)
results="$data/quantize.md"
stats="$data/llama-${layers}l.quant-stats.safetensors"

measure() { # log -- command...   prints "seconds rss_mib cpu_seconds"
  local log=$1; shift 2
  /usr/bin/time -v "$@" >"$log.out" 2>"$log"
  awk -F': ' '/User time/ {cpu+=$2} /System time/ {cpu+=$2}
              /Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]}
              /Maximum resident set size/ {rss=$2/1024}
              END {printf "%s %.0f %.2f\n", s, rss, cpu}' "$log"
}
field() { .venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

cat "$model"/*.safetensors >/dev/null
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >"$results"
echo "| job | wall s | CPU s (user+sys) | calibration s | quantization s | input GB/s | copy of output s | vs copy | peak RSS MiB |" >>"$results"
echo "|---|---|---|---|---|---|---|---|---|" >>"$results"
read -r cal_s cal_rss cal_cpu < <(measure "$data/cal.log" -- "$bin" --quiet -j "$threads" calibrate "$model" --data "$text" -o "$stats" --calib-samples "$samples" --calib-seq-len 128)
echo "| calibrate ($samples x 128 tokens) | $cal_s | $cal_cpu | $cal_s | - | - | - | - | $cal_rss |" >>"$results"
for job in ${BENCH_JOBS:-fp8 int8_wo int4_awq int4_awq_clip}; do
  out="$data/out-$job"
  rm -rf "$out" "$out-copy"
  case $job in
    fp8) extra=(--calib-stats "$stats") ;;
    int8_wo) extra=() ;;
    int4_awq) extra=(--calib-data "$text" --calib-samples "$samples" --calib-seq-len 128) ;;
    int4_awq_clip) extra=(--calib-data "$text" --calib-samples "$samples" --calib-seq-len 128 --awq-clip) ;;
  esac
  read -r s rss cpu < <(measure "$data/$job.log" -- "$bin" -j "$threads" --json quantize "$model" "$out" --quant "${job%_clip}" "${extra[@]}")
  calib=$(field "$data/$job.log.out" calibration_seconds)
  quant=$(field "$data/$job.log.out" quantization_seconds)
  read -r copy_s _ _ < <(measure "$data/copy.log" -- bash -c "cp -r '$out' '$out-copy' && sync '$out-copy'/*")
  awk -v j="$job" -v s="$s" -v u="$cpu" -v c="$calib" -v q="$quant" -v b="$bytes" -v cp="$copy_s" -v r="$rss" \
    'BEGIN{printf "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2fx | %s |\n", j, s, u, c, q, b/1e9/q, cp, cp/q, r}' >>"$results"
  rm -rf "$out" "$out-copy"
done
echo "model: $model ($(awk -v b="$bytes" 'BEGIN{printf "%.2f", b/1e9}') GB bf16), threads $threads, calibration text $(basename "$text")" >>"$results"
cat "$results"
