#!/usr/bin/env bash
# Tensor-parallel resharding timed against copying the same bytes, in one run:
#   baseline = `cp` of the job's input rank files + `sync` of the copies (ckpt-opt fsyncs too)
#   tp1->tp4 = ckpt-opt reshard TP1 OUT --tp 4       (trtllm -> trtllm: column slices, splits)
#   tp4->tp2 = ckpt-opt reshard TP4 OUT --tp 2       (merges pairs of ranks directly)
# on the bench model (benches/make_bench_model.py, BENCH_LAYERS default "12 24": about 1.1 and
# 2.2 GB of bf16), converted once to a trtllm tp 1 checkpoint. Each job and its baseline run
# BENCH_REPEAT times (default 2) alternately from a warm page cache; the fastest of each is
# kept. Peak RSS from /usr/bin/time -v. Threads: BENCH_THREADS (default 2).
# The jobs run with --no-manifest (the ckpt-opt.json checksums are timed separately).
# Usage: benches/reshard.sh        results in bench-data/reshard.md
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
data="$root/bench-data"
threads=${BENCH_THREADS:-2}
layers_list=${BENCH_LAYERS:-"12 24"}
repeat=${BENCH_REPEAT:-2}
mkdir -p "$data"
python=${CKPT_OPT_PYTHON:-}
if [ -z "$python" ]; then
  bash scripts/python-env.sh
  python="$root/.venv/bin/python"
fi
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/ckpt-opt"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
results="$data/reshard.md"
echo "| model | job | bytes | seconds | GB/s | copy GB/s | vs copy | peak RSS MiB | copy peak RSS MiB |" >"$results"
echo "|---|---|---|---|---|---|---|---|---|" >>"$results"

measure() { # command... ; prints "seconds rssMiB"
  local log="$data/time.log"
  /usr/bin/time -v "$@" >/dev/null 2>"$log"
  awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; secs=s}
              /Maximum resident set size/ {rss=$2/1024}
              END {printf "%s %.0f\n", secs, rss}' "$log"
}

job() { # label input-folder output-folder reshard-args...
  local label=$1 input=$2 out=$3; shift 3
  local bytes best_s="" best_rss=0 copy_s="" copy_rss=0
  bytes=$(cat "$input"/*.safetensors | wc -c)
  cat "$input"/*.safetensors >/dev/null # warm the page cache
  for _ in $(seq "$repeat"); do
    rm -rf "$data/copy" "$out"
    mkdir -p "$data/copy"
    read -r s rss < <(measure bash -c "cp '$input'/*.safetensors '$data/copy/' && sync '$data'/copy/*")
    if [ -z "$copy_s" ] || awk -v a="$s" -v b="$copy_s" 'BEGIN{exit !(a<b)}'; then copy_s=$s; fi
    copy_rss=$(( rss > copy_rss ? rss : copy_rss ))
    rm -rf "$data/copy"
    # --no-manifest: the reshard itself; the manifest's blake3 pass over inputs and outputs is a
    # separate cost (about 0.4 s per GB here), reported in the README.
    read -r s rss < <(measure "$bin" --quiet --no-manifest -j "$threads" reshard "$input" "$out" "$@")
    if [ -z "$best_s" ] || awk -v a="$s" -v b="$best_s" 'BEGIN{exit !(a<b)}'; then best_s=$s; fi
    best_rss=$(( rss > best_rss ? rss : best_rss ))
  done
  awk -v m="$model_label" -v j="$label" -v b="$bytes" -v s="$best_s" -v c="$copy_s" \
      -v r="$best_rss" -v cr="$copy_rss" \
    'BEGIN{printf "| %s | %s | %.0f | %.2f | %.2f | %.2f | %.2fx | %s | %s |\n", m, j, b, s, b/1e9/s, b/1e9/c, c/s, r, cr}' >>"$results"
}

for layers in $layers_list; do
  model="$data/llama-${layers}l"
  [ -f "$model/config.json" ] || "$python" benches/make_bench_model.py "$model" --layers "$layers"
  model_label="$(awk -v b="$(cat "$model"/*.safetensors | wc -c)" 'BEGIN{printf "%.2f GB", b/1e9}') (${layers} layers)"
  tp1="$data/llama-${layers}l-trt-tp1"
  tp4="$data/llama-${layers}l-trt-tp4"
  tp2="$data/llama-${layers}l-trt-tp2"
  rm -rf "$tp1" "$tp4" "$tp2"
  "$bin" --quiet -j "$threads" reshard "$model" "$tp1" --tp 1 >/dev/null
  job "tp1->tp4" "$tp1" "$tp4" --tp 4
  job "tp4->tp2" "$tp4" "$tp2" --tp 2
  rm -rf "$tp1" "$tp4" "$tp2"
done
cat "$results"
