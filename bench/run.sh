#!/bin/sh
# make bench: every CPU benchmark, each printing ratios against a baseline measured in the
# same run; outputs go to bench/results/*-cpu.txt (GPU: bench/gpu-check.sh on a GPU machine).
# Takes 10-20 minutes on 2 cores (the SD1.5-shaped runs dominate). BENCH_QUICK=1 skips them.
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
B=$BUILD/bench
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -q ' avx512f' /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=SkylakeX   # OpenBLAS 0.3.21 misdetects some AVX-512 CPUs (README)
fi
R=bench/results
mkdir -p "$R"
run() {  # run NAME COMMAND...: print and save to bench/results/NAME-cpu.txt
  name=$1; shift
  echo "== $name: $*"
  { echo "# $(date -u '+%Y-%m-%d %H:%M UTC') $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cores; $*"
    "$@"; } 2>&1 | tee "$R/$name-cpu.txt"
}
PHOTOS=$(BUILD=$BUILD bench/get-photos.sh) && run images "$B/bench_images" "$PHOTOS" 3
run download "$B/bench_download"
run clip "$B/bench_clip" 1 8
run index "$B/bench_index" --n 50000 --nq 500
# the GPU training step's planned device memory at SD1.5 shapes (a host-only planning pass;
# needs a CUDA build, the result file is unet-train-plan.txt)
if "$B/bench_unet_train_plan" > "$R/unet-train-plan.tmp" 2>&1; then
  mv "$R/unet-train-plan.tmp" "$R/unet-train-plan.txt"; cat "$R/unet-train-plan.txt"
else echo "== unet-train-plan: skipped ($(tail -1 "$R/unet-train-plan.tmp"))"; rm -f "$R/unet-train-plan.tmp"; fi
if [ -z "${BENCH_QUICK:-}" ]; then
  run unet "$B/bench_unet" --latent 64 --batch 2
  run train "$B/bench_train"
  BUILD=$BUILD bench/sd15-memory.sh
fi
