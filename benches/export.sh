#!/usr/bin/env bash
# TensorRT-LLM export benchmark on the >= 1 GB bf16 bench model (TinyLlama geometry,
# BENCH_LAYERS layers, default 12: about 1.1 GB), BENCH_THREADS threads (default 2), warm
# page cache:
#   calibrate = ckpt-opt calibrate (activation statistics for FP8), timed on its own
#   trtllm-fp8-tp2 = convert MODEL OUT --format trtllm --quant fp8 --tp 2 --calib-stats STATS
#                    (one amax pass over the weights + the streaming export of both ranks)
#   trtllm-bf16-tp2 = convert MODEL OUT --format trtllm --tp 2 (no quantization, for reference)
# Baseline: `cp -r` of the folder the job wrote + `sync` (the same bytes, copied and made
# durable), run in turns with the job (BENCH_REPS rounds, medians). "vs copy" = copy seconds /
# job seconds (the bar is >= 0.7). Peak RSS from
# /usr/bin/time -v; CPU seconds beside wall seconds because the machine's cores are shared.
# Usage: benches/export.sh        results in bench-data/export.md
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
data="$root/bench-data"
threads=${BENCH_THREADS:-2}
layers=${BENCH_LAYERS:-12}
text=${CALIB_TEXT:-$root/../shared/data/calib-text.txt}
[ -f "$text" ] || text="$root/fixtures/heldout.txt"
python=${CKPT_OPT_PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || { bash scripts/python-env.sh; python=$root/.venv/bin/python; }
mkdir -p "$data"
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/ckpt-opt"
model="$data/llama-${layers}l"
[ -f "$model/config.json" ] || "$python" benches/make_bench_model.py "$model" --layers "$layers"
bytes=$(cat "$model"/*.safetensors | wc -c)
results="$data/export.md"
stats="$data/llama-${layers}l.export-stats.safetensors"

measure() { # log -- command...   prints "seconds rss_mib cpu_seconds"
  local log=$1; shift 2
  /usr/bin/time -v "$@" >"$log.out" 2>"$log"
  awk -F': ' '/User time/ {cpu+=$2} /System time/ {cpu+=$2}
              /Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]}
              /Maximum resident set size/ {rss=$2/1024}
              END {printf "%s %.0f %.2f\n", s, rss, cpu}' "$log"
}

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

cat "$model"/*.safetensors >/dev/null
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >"$results"
echo "| job | wall s | CPU s (user+sys) | output GB | output GB/s | copy of output s | vs copy | peak RSS MiB |" >>"$results"
echo "|---|---|---|---|---|---|---|---|" >>"$results"
read -r cal_s cal_rss cal_cpu < <(measure "$data/export-cal.log" -- "$bin" --quiet -j "$threads" calibrate "$model" --data "$text" -o "$stats" --calib-samples 8 --calib-seq-len 128)
echo "| calibrate (8 x 128 tokens) | $cal_s | $cal_cpu | - | - | - | - | $cal_rss |" >>"$results"
# Each job and the copy of what it wrote run in turns, BENCH_REPS rounds (default 5); the row
# gives medians (seconds, CPU seconds) and the largest peak RSS over the rounds.
reps=${BENCH_REPS:-5}
for job in ${BENCH_JOBS:-trtllm-fp8-tp2 trtllm-bf16-tp2}; do
  out="$data/out-$job"
  case $job in
    trtllm-fp8-tp2) args=(--quant fp8 --calib-stats "$stats" --tp 2) ;;
    trtllm-bf16-tp2) args=(--tp 2) ;;
  esac
  : >"$data/$job.rounds"
  for ((round = 1; round <= reps; round++)); do
    rm -rf "$out" "$out-copy"
    sync
    read -r s rss cpu < <(measure "$data/$job.log" -- "$bin" --quiet --no-manifest -j "$threads" convert "$model" "$out" --format trtllm "${args[@]}")
    written=$(cat "$out"/* | wc -c)
    read -r copy_s _ _ < <(measure "$data/export-copy.log" -- bash -c "cp -r '$out' '$out-copy' && sync '$out-copy'/*")
    echo "$s $rss $cpu $copy_s $written" >>"$data/$job.rounds"
  done
  col() { awk -v c="$1" '{print $c}' "$data/$job.rounds" | median; }
  s=$(col 1) cpu=$(col 3) copy_s=$(col 4) written=$(col 5)
  rss=$(awk 'BEGIN{m=0} {if ($2>m) m=$2} END{print m}' "$data/$job.rounds")
  awk -v j="$job" -v s="$s" -v u="$cpu" -v w="$written" -v cp="$copy_s" -v r="$rss" \
    'BEGIN{printf "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2fx | %s |\n", j, s, u, w/1e9, w/1e9/s, cp, cp/s, r}' >>"$results"
  rm -rf "$out" "$out-copy"
done
echo "model: $model ($(awk -v b="$bytes" 'BEGIN{printf "%.2f", b/1e9}') GB bf16), threads $threads, $reps rounds in turns (medians), calibration text $(basename "$text"), load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$results"
cat "$results"
